/* file.c — regular-file data: read, write, truncate, fallocate, seek.
 * See file.h for the locking contract and the data invariants. */
#include "config.h"
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "inode.h"
#include "log.h"
#include "pages.h"

#define PG 4096u
#define RUP(x) (((x) + PG - 1) & ~(uint64_t)(PG - 1))
#define RDN(x) ((x) & ~(uint64_t)(PG - 1))

static void free_io_buf(void *buf, int rc)
{
	if (rc != -ETIMEDOUT)	/* else the kernel may still use it (diskio.h) */
		free(buf);
}

/* Write len bytes of data (NULL = zeros) at byte boff of block pblk,
 * reading back the partial first/last 4 KiB pages. */
static int blk_write_partial(struct vol *v, uint64_t pblk, uint64_t boff, const void *data,
			     size_t len)
{
	uint64_t base = pblk * v->bsize, a0 = RDN(boff), a1 = RUP(boff + len);
	struct diskio_req r[2];
	int nr = 0, rc;
	uint8_t *buf = diskio_alloc(a1 - a0);

	if (!buf)
		return -ENOMEM;
	if (boff != a0)
		r[nr++] = (struct diskio_req){ buf, PG, base + a0, false };
	if (boff + len != a1 && (a1 - PG != a0 || boff == a0))
		r[nr++] = (struct diskio_req){ buf + (a1 - a0 - PG), PG, base + a1 - PG, false };
	rc = diskio_batch(v->dio, r, nr);
	if (rc)
		goto out;
	if (data)
		memcpy(buf + (boff - a0), data, len);
	else
		memset(buf + (boff - a0), 0, len);
	r[0] = (struct diskio_req){ buf, a1 - a0, base + a0, true };
	rc = diskio_batch(v->dio, r, 1);
out:
	free_io_buf(buf, rc);
	return rc;
}

/* Can the disk take data as it is (O_DIRECT: 4096-aligned address)?
 * WRITE requests arrive that way from the FUSE workers (fuse_loop.h), so
 * whole-page writes go to the disk without a copy. */
static bool io_aligned(const void *data)
{
	return data && (uintptr_t)data % PG == 0;
}

/* Write a whole block: zeros except data at boff. */
static int blk_write_full(struct vol *v, uint64_t pblk, uint64_t boff, const void *data, size_t len)
{
	struct diskio_req r;
	uint8_t *buf;
	int rc;

	if (boff == 0 && len == v->bsize && io_aligned(data)) {
		r = (struct diskio_req){ (void *)data, v->bsize, pblk * v->bsize, true };
		return diskio_batch(v->dio, &r, 1);
	}
	buf = diskio_alloc(v->bsize);
	if (!buf)
		return -ENOMEM;
	memset(buf, 0, v->bsize);
	if (data && len)
		memcpy(buf + boff, data, len);
	r = (struct diskio_req){ buf, v->bsize, pblk * v->bsize, true };
	rc = diskio_batch(v->dio, &r, 1);
	free_io_buf(buf, rc);
	return rc;
}

static int load_reg(struct vol *v, uint64_t ino, struct vmfs_inode *in)
{
	int rc = vol_inode_get(v, ino, in);

	if (rc)
		return vmfs_errno(rc);
	if (S_ISDIR(in->mode))
		return -EISDIR;
	if (!S_ISREG(in->mode))
		return -EINVAL;
	return 0;
}

void file_io_release(struct file_io *io, int rc)
{
	free_io_buf(io->buf, rc);
	free(io->reqs);
	*io = (struct file_io){ 0 };
}

int file_read_prep(struct vol *v, uint64_t ino, uint64_t off, size_t size, struct file_io *io)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct xmap m = { 0 };
	uint8_t *buf = NULL;
	uint64_t a0, a1, pos;
	int rc;

	*io = (struct file_io){ 0 };
	if (!in)
		return -ENOMEM;
	pthread_mutex_lock(&v->mu);
	rc = vol_data_check(v);	/* else a block may be marked over old bytes */
	if (!rc)
		rc = load_reg(v, ino, in);
	if (rc || off >= in->size) {
		pthread_mutex_unlock(&v->mu);
		goto out;
	}
	if (size > in->size - off)
		size = (size_t)(in->size - off);
	if (in->iflags & VMFS_IF_INLINE) {
		buf = malloc(size ? size : 1);
		if (buf)
			memcpy(buf, in->area + off, size);
		pthread_mutex_unlock(&v->mu);
		if (!buf) {
			rc = -ENOMEM;
			goto out;
		}
		io->buf = buf;
		io->data = (char *)buf;
		io->len = size;
		goto out;
	}
	if (!(in->iflags & VMFS_IF_PAGES))
		rc = vmfs_errno(xmap_load(v, in, &m));
	pthread_mutex_unlock(&v->mu);
	if (rc)
		goto out;
	a0 = RDN(off);
	a1 = RUP(off + size);
	buf = diskio_alloc(a1 - a0);
	io->reqs = calloc((in->iflags & VMFS_IF_PAGES) ? pages_of(a1 - a0) : m.n + 2,
			  sizeof(*io->reqs));
	io->buf = buf;
	if (!buf || !io->reqs) {
		rc = -ENOMEM;
		goto out;
	}
	if (in->iflags & VMFS_IF_PAGES)
		pages_read_reqs(in, a0, a1, buf, io->reqs, &io->nr);
	else for (pos = a0; pos < a1;) {
		uint32_t next;
		int i = xmap_find(&m, (uint32_t)(pos / v->bsize), &next);
		uint64_t end;

		if (i < 0) {	/* hole up to the next extent */
			end = next < m.n ? (uint64_t)m.e[next].lblk * v->bsize : a1;
			end = end < a1 ? end : a1;
			memset(buf + (pos - a0), 0, end - pos);
		} else {
			const struct vmfs_extent *e = &m.e[i];

			end = (uint64_t)(e->lblk + e->len) * v->bsize;
			end = end < a1 ? end : a1;
			if (e->flags & VMFS_EXT_UNWRITTEN)
				memset(buf + (pos - a0), 0, end - pos);
			else
				io->reqs[io->nr++] = (struct diskio_req){
					buf + (pos - a0), end - pos,
					(uint64_t)e->pblk * v->bsize + (pos - (uint64_t)e->lblk * v->bsize),
					false };
		}
		pos = end;
	}
	io->data = (char *)buf + (off - a0);
	io->len = size;
out:
	if (rc)
		file_io_release(io, rc);
	xmap_release(&m);
	free(in);
	return rc;
}

int file_read(struct vol *v, uint64_t ino, uint64_t off, size_t size, char **out, size_t *len,
	      void **to_free)
{
	struct file_io io;
	int rc = file_read_prep(v, ino, off, size, &io);

	*len = 0;
	*to_free = NULL;
	if (rc)
		return rc;
	rc = diskio_batch(v->dio, io.reqs, io.nr);
	if (!rc) {
		*out = io.data;
		*len = io.len;
		*to_free = io.buf;
		io.buf = NULL;
	}
	file_io_release(&io, rc);
	return rc;
}

static void touch_mtime(struct vmfs_inode *in)
{
	in->mtime_ns = in->ctime_ns = (int64_t)now_ns();
	in->mode &= ~(uint32_t)S_ISUID;	/* a write drops set-user-ID */
}

/* Overwrites through file_write_fast() record mtime at most once per
 * MTIME_LAZY_NS per inode: each update dirties the inode, which costs a
 * metadata transaction, whose fdatasync waits for every write in flight
 * on the device while it holds vol.mu (tens of ms under a random-write
 * load, so a stamp a second cost 4 KiB random writes 20-30% of their
 * rate).  So the mtime of a file being overwritten lags the last write by
 * up to 10 s, unless the file is fsync'ed or closed: those stamp it
 * (fuse_ops.c stamp_pending), as Linux's lazytime writes timestamps
 * out at fsync.  VMFS likewise does not stamp every guest write.  Writes
 * that allocate, extend or drop set-user-ID still go through
 * touch_mtime(). */
#define MTIME_LAZY_NS 10000000000ll

static bool mtime_due(const struct vmfs_inode *in)
{
	int64_t now = (int64_t)now_ns();

	return (in->mode & S_ISUID) || now - in->mtime_ns >= MTIME_LAZY_NS ||
	       now < in->mtime_ns;	/* clock stepped back */
}

int file_write_prep(struct vol *v, uint64_t ino, const void *data, size_t size, uint64_t off,
		    bool copy, struct file_io *io)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct xmap m = { 0 };
	const void *src;
	int rc;

	*io = (struct file_io){ 0 };
	if (!in)
		return -ENOMEM;
	if (off % PG || size % PG || size == 0) {
		rc = -EAGAIN;
		goto out;
	}
	pthread_mutex_lock(&v->mu);
	rc = load_reg(v, ino, in);
	if (!rc && ((in->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES)) || off + size > in->size ||
		    v->error))
		rc = -EAGAIN;	/* small files take the slow path */
	if (!rc)
		rc = vmfs_errno(xmap_load(v, in, &m));
	pthread_mutex_unlock(&v->mu);
	if (rc)
		goto out;
	io->stamp = mtime_due(in);
	io->reqs = calloc(m.n + 1, sizeof(*io->reqs));
	if (!copy && io_aligned(data)) {
		src = data;	/* straight from the FUSE receive buffer */
	} else {
		io->buf = diskio_alloc(size);
		if (io->buf)
			memcpy(io->buf, data, size);
		src = io->buf;
	}
	if (!src || !io->reqs) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint64_t pos = off; pos < off + size;) {
		int i = xmap_find(&m, (uint32_t)(pos / v->bsize), NULL);
		const struct vmfs_extent *e;
		uint64_t end;

		if (i < 0 || (m.e[i].flags & VMFS_EXT_UNWRITTEN)) {
			rc = -EAGAIN;
			goto out;
		}
		e = &m.e[i];
		end = (uint64_t)(e->lblk + e->len) * v->bsize;
		end = end < off + size ? end : off + size;
		io->reqs[io->nr++] = (struct diskio_req){ (uint8_t *)src + (pos - off), end - pos,
			(uint64_t)e->pblk * v->bsize + (pos - (uint64_t)e->lblk * v->bsize), true };
		pos = end;
	}
out:
	if (rc)
		file_io_release(io, rc);
	xmap_release(&m);
	free(in);
	return rc;
}

int file_write_stamp(struct vol *v, uint64_t ino)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc;

	if (!in)
		return -ENOMEM;
	pthread_mutex_lock(&v->mu);
	rc = vol_inode_get(v, ino, in);
	if (!rc) {
		touch_mtime(in);
		rc = vol_inode_put(v, in);
	}
	pthread_mutex_unlock(&v->mu);
	free(in);
	return vmfs_errno(rc);
}

int file_write_fast(struct vol *v, uint64_t ino, const void *data, size_t size, uint64_t off)
{
	struct file_io io;
	int rc = file_write_prep(v, ino, data, size, off, false, &io);

	if (rc)
		return rc;
	rc = diskio_batch(v->dio, io.reqs, io.nr);
	if (!rc && io.stamp)
		rc = file_write_stamp(v, ino);
	file_io_release(&io, rc);
	return rc;
}

/* vmfs_errno(), but VMFS_ENEEDRG goes back to the caller (alloc.h). */
static int step_errno(int rc)
{
	return rc == VMFS_ENEEDRG ? rc : vmfs_errno(rc);
}

/* Before a write or an extension changes anything: do the held groups
 * have room for the blocks [off, end) still lacks, plus an extent block
 * and a new chunk?  (alloc.h; a check only on a shared mount.) */
static int write_room(struct vol *v, const struct vmfs_inode *in, uint64_t off, uint64_t end)
{
	struct xmap m = { 0 };
	uint64_t holes = 0;
	int rc = end > off ? alloc_settle(v, (end - off) / v->bsize + 3) : 0;

	if (rc || !v->rg_locked || end <= off)
		return rc;
	if ((in->iflags & VMFS_IF_INLINE) && end <= VMFS_INO_AREA_SIZE)
		return 0;
	if ((in->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES)) && end <= v->pages_max)
		return pages_room(v, in, off, end);
	if (in->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES)) {	/* to extents */
		rc = (in->iflags & VMFS_IF_PAGES) ?
			pages_frees_room(v, in, 0, VMFS_PAGES_MAX) : 0;
		if (rc)
			return rc;
		holes = (end - 1) / v->bsize - off / v->bsize + 2;
	} else {
		rc = xmap_load(v, in, &m);
		for (uint64_t lb = off / v->bsize; !rc && lb <= (end - 1) / v->bsize; lb++)
			holes += xmap_find(&m, (uint32_t)lb, NULL) < 0;
		xmap_release(&m);
	}
	if (rc)
		return rc;
	/* even without a hole, writing into an unwritten extent splits it:
	 * maybe a new extent block */
	return holes ? alloc_room(v, holes + 2) : alloc_meta_room(v, 2);
}

/* Move inline data into block 0 and switch the inode to an extent map. */
static int inline_to_extents(struct vol *v, struct vmfs_inode *in, struct xmap *m)
{
	uint8_t save[VMFS_INO_AREA_SIZE];
	uint64_t pb;
	uint32_t got;
	int rc;

	memcpy(save, in->area, sizeof(save));
	memset(in->area, 0, sizeof(in->area));
	in->iflags &= ~VMFS_IF_INLINE;
	m->n = 0;
	if (in->size == 0)
		return 0;
	rc = alloc_blocks(v, 0, 1, VMFS_B_DATA, &pb, &got);
	if (rc)
		return rc;
	rc = blk_write_full(v, pb, 0, save, (size_t)in->size);
	if (!rc)
		rc = xmap_insert(m, 0, (uint32_t)pb, 1, 0);
	return rc;
}

/* A block the slow write path fills whole (zeros around the data): an
 * unwritten block, or one it allocates for a hole.  Its extent says
 * unwritten (reads give zeros) until the data is on the disk, so the
 * block can be written after vol.mu is dropped: other metadata work and
 * other files' writes on this host do not wait for it (file_write). */
struct fill {
	uint32_t lb;
	uint64_t pblk, boff;
	size_t len;
	const uint8_t *data;
	unsigned seq;		/* index when added: the order of writing, which
				 * pieces of one block keep when sorted */
};

struct fills {
	struct fill *f;
	unsigned n, cap;
};

static int fill_add(struct fills *fl, uint32_t lb, uint64_t pblk, uint64_t boff,
		    const uint8_t *data, size_t len)
{
	if (fl->n == fl->cap) {
		unsigned cap = fl->cap ? fl->cap * 2 : 4;
		struct fill *f = realloc(fl->f, cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		fl->f = f;
		fl->cap = cap;
	}
	fl->f[fl->n] = (struct fill){ lb, pblk, boff, len, data, fl->n };
	fl->n++;
	return 0;
}

/* Slow write path; vol.mu held.  Blocks to fill whole are left to fl. */
static int write_locked(struct vol *v, struct vmfs_inode *in, const uint8_t *data, size_t size,
			uint64_t off, struct fills *fl)
{
	struct xmap m = { 0 };
	uint64_t end = off + size;
	int rc;

	if (end > VMFS_MAX_VOLUME || end < off)
		return -EFBIG;
	if ((in->iflags & VMFS_IF_INLINE) && end <= VMFS_INO_AREA_SIZE) {
		memcpy(in->area + off, data, size);
		if (end > in->size)
			in->size = end;
		return 0;
	}
	if ((in->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES)) && end <= v->pages_max) {
		rc = (in->iflags & VMFS_IF_INLINE) ? pages_from_inline(v, in) : 0;
		if (!rc)
			rc = pages_write(v, in, data, size, off);
		if (!rc && end > in->size)
			in->size = end;
		return rc;
	}
	if (in->iflags & VMFS_IF_INLINE)
		rc = inline_to_extents(v, in, &m);
	else if (in->iflags & VMFS_IF_PAGES)
		rc = pages_to_extents(v, in, &m);
	else
		rc = xmap_load(v, in, &m);
	for (uint64_t pos = off; !rc && pos < end;) {
		uint32_t lb = (uint32_t)(pos / v->bsize), next;
		uint64_t boff = pos % v->bsize, n = v->bsize - boff;
		int i = xmap_find(&m, lb, &next);

		if (n > end - pos)
			n = end - pos;
		if (i >= 0 && !(m.e[i].flags & VMFS_EXT_UNWRITTEN)) {
			uint64_t pb = m.e[i].pblk + (lb - m.e[i].lblk);

			rc = blk_write_partial(v, pb, boff, data + (pos - off), (size_t)n);
		} else if (i >= 0) {	/* unwritten: write it whole, then mark written */
			uint64_t pb = m.e[i].pblk + (lb - m.e[i].lblk);

			rc = fill_add(fl, lb, pb, boff, data + (pos - off), (size_t)n);
		} else {		/* hole: allocate next to the previous block */
			uint64_t goal = 0, pb;
			uint32_t got;

			if (next > 0) {
				const struct vmfs_extent *p = &m.e[next - 1];

				goal = (uint64_t)p->pblk + p->len + (lb - (p->lblk + p->len));
				if (goal >= v->sb.nblocks)
					goal = 0;
			}
			if (m.n >= VMFS_XMAP_MAX) {
				rc = -EFBIG;
				break;
			}
			rc = alloc_blocks(v, goal, 1, VMFS_B_DATA, &pb, &got);
			if (!rc)
				rc = xmap_insert(&m, lb, (uint32_t)pb, 1, VMFS_EXT_UNWRITTEN);
			if (!rc)
				rc = fill_add(fl, lb, pb, boff, data + (pos - off), (size_t)n);
		}
		pos += n;
	}
	/* Even after an error, store what was mapped so blocks are not lost. */
	if (!(in->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES))) {
		int rc2 = xmap_store(v, in, &m);

		rc = rc ? rc : rc2;
	}
	if (!rc && end > in->size)
		in->size = end;
	xmap_release(&m);
	return rc;
}

static int fill_cmp(const void *a, const void *b)
{
	const struct fill *x = a, *y = b;

	if (x->pblk != y->pblk)
		return x->pblk < y->pblk ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void file_fill_io_release(struct file_fill_io *io, int rc)
{
	for (int k = 0; io->bounce && k < io->nr; k++)
		if (io->bounce[k])
			free_io_buf(io->bounce[k], rc);
	free(io->bounce);
	free(io->reqs);
	*io = (struct file_fill_io){ 0 };
}

/* The disk requests that write the blocks of fl whole; vol.mu not held.
 * Writes of one batch may fill the same block (two small writes into one
 * new block): it gets one buffer with every piece in the order written.
 * A block filled whole from a 4096-aligned buffer is written from it. */
static int fills_build(struct vol *v, struct fills *fl, struct file_fill_io *io)
{
	int rc = 0;

	*io = (struct file_fill_io){ calloc(fl->n, sizeof(*io->reqs)),
				     calloc(fl->n, sizeof(*io->bounce)), 0 };
	if (!io->reqs || !io->bounce) {
		file_fill_io_release(io, 0);
		return -ENOMEM;
	}
	qsort(fl->f, fl->n, sizeof(*fl->f), fill_cmp);
	for (unsigned k = 0; !rc && k < fl->n; k++) {
		const struct fill *f = &fl->f[k];
		bool alone = (k == 0 || fl->f[k - 1].pblk != f->pblk) &&
			     (k + 1 == fl->n || fl->f[k + 1].pblk != f->pblk);
		struct diskio_req *r = io->reqs;
		uint8_t *buf;

		if (alone && f->boff == 0 && f->len == v->bsize && io_aligned(f->data)) {
			r[io->nr++] = (struct diskio_req){ (void *)f->data, v->bsize,
							   f->pblk * v->bsize, true };
			continue;
		}
		if (k > 0 && fl->f[k - 1].pblk == f->pblk) {
			buf = r[io->nr - 1].buf;	/* another piece of the same block */
		} else {
			buf = io->bounce[io->nr] = diskio_alloc(v->bsize);
			if (!buf) {
				rc = -ENOMEM;
				break;
			}
			memset(buf, 0, v->bsize);
			r[io->nr++] = (struct diskio_req){ buf, v->bsize, f->pblk * v->bsize, true };
		}
		memcpy(buf + f->boff, f->data, f->len);
	}
	if (rc)
		file_fill_io_release(io, 0);
	return rc;
}

/* Write the blocks of fl whole, in one batch, or hand them to as. */
static int fills_write(struct vol *v, struct fills *fl, const struct file_fill_submit *as)
{
	struct file_fill_io io;
	int rc = fills_build(v, fl, &io);

	if (rc)
		return rc;
	if (as)
		return as->submit(as->arg, &io);
	rc = diskio_batch(v->dio, io.reqs, io.nr);
	file_fill_io_release(&io, rc);
	return rc;
}

/* The filled blocks hold their data: mark them written.  vol.mu held.
 * The caller's exclusive vnode and inode locks kept the map as it was;
 * a block found otherwise is left alone. */
static int fills_mark(struct vol *v, uint64_t ino, struct vmfs_inode *in, const struct fills *fl)
{
	struct xmap m = { 0 };
	int rc = v->error ? v->error : load_reg(v, ino, in);

	if (!rc && (in->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES)))
		return 0;
	if (!rc)
		rc = xmap_load(v, in, &m);
	for (unsigned k = 0; !rc && k < fl->n; k++) {
		int i = xmap_find(&m, fl->f[k].lb, NULL);

		if (i >= 0 && (m.e[i].flags & VMFS_EXT_UNWRITTEN) &&
		    m.e[i].pblk + (fl->f[k].lb - m.e[i].lblk) == fl->f[k].pblk)
			rc = xmap_set_flags(&m, fl->f[k].lb, 0);
	}
	if (!rc)
		rc = xmap_store(v, in, &m);
	if (!rc)
		rc = vol_inode_put(v, in);
	xmap_release(&m);
	return rc;
}

/* Three steps when writes fill blocks (holes, unwritten extents): under
 * vol.mu allocate them with unwritten extents and grow the file; write
 * their data without vol.mu, all in one batch; under vol.mu again mark
 * them written.  A crash or an error between the steps leaves allocated
 * blocks that read as zeros, never another file's old data.
 *
 * The writes of w are done in order; each gets its own result in rc
 * (0 or -errno).  When a write needs other groups (VMFS_ENEEDRG), it and
 * the writes after it keep rc = FILE_WRITE_TODO and so does the call's
 * result: the caller regroups and calls again with them.  A failed last
 * step leaves every write of the call to do again, which finds its
 * blocks allocated and fills them again. */
int file_write_many(struct vol *v, uint64_t ino, struct file_wreq *w, int n,
		    const struct file_fill_submit *as)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct fills fl = { 0 };
	bool wrote = false;
	int rc;

	if (!in)
		return -ENOMEM;
	pthread_mutex_lock(&v->mu);
	rc = v->error ? v->error : load_reg(v, ino, in);
	for (int k = 0; !rc && k < n; k++) {
		unsigned before = fl.n;
		int wrc;

		if (w[k].rc != FILE_WRITE_TODO)
			continue;
		wrc = write_room(v, in, w[k].off, w[k].off + w[k].size);
		if (!wrc) {
			wrc = write_locked(v, in, w[k].data, w[k].size, w[k].off, &fl);
			wrote = true;
		}
		if (wrc)	/* its blocks allocated so far stay, unwritten */
			fl.n = before;
		if (wrc == VMFS_ENEEDRG) {
			rc = wrc;
			break;
		}
		w[k].rc = wrc ? step_errno(wrc) : FILE_WRITE_FILLING;
	}
	if (wrote) {
		int rc2;

		touch_mtime(in);
		rc2 = vol_inode_put(v, in);
		rc = rc2 ? rc2 : rc;
	}
	if (!rc && !fl.n)
		rc = vol_maybe_commit(v);
	pthread_mutex_unlock(&v->mu);
	if (fl.n && (!rc || rc == VMFS_ENEEDRG)) {
		int frc = fills_write(v, &fl, as);

		pthread_mutex_lock(&v->mu);
		if (!frc)
			frc = fills_mark(v, ino, in, &fl);
		if (!frc)
			frc = vol_maybe_commit(v);
		pthread_mutex_unlock(&v->mu);
		if (frc == VMFS_ENEEDRG)
			rc = frc;
		for (int j = 0; j < n; j++)
			if (w[j].rc == FILE_WRITE_FILLING && frc)
				w[j].rc = frc == VMFS_ENEEDRG ? FILE_WRITE_TODO : step_errno(frc);
	}
	/* what is left: done, or stopped by an error of the whole call */
	for (int j = 0; j < n; j++) {
		bool failed = rc && rc != VMFS_ENEEDRG;

		if (w[j].rc == FILE_WRITE_FILLING)
			w[j].rc = failed ? step_errno(rc) : 0;
		else if (w[j].rc == FILE_WRITE_TODO && failed)
			w[j].rc = step_errno(rc);
	}
	free(fl.f);
	free(in);
	return rc == VMFS_ENEEDRG ? rc : 0;
}

int file_write(struct vol *v, uint64_t ino, const void *data, size_t size, uint64_t off)
{
	struct file_wreq w = { data, size, off, FILE_WRITE_TODO };
	int rc = file_write_many(v, ino, &w, 1, NULL);

	return rc ? rc : w.rc;
}

/* Zero [from, block end) of the block holding byte from, if written. */
static int zero_tail(struct vol *v, const struct xmap *m, uint64_t from, uint64_t to)
{
	uint32_t lb = (uint32_t)(from / v->bsize);
	int i = xmap_find(m, lb, NULL);
	uint64_t boff = from % v->bsize, lim = (uint64_t)(lb + 1) * v->bsize;

	if (i < 0 || (m->e[i].flags & VMFS_EXT_UNWRITTEN) || (boff == 0 && to >= lim))
		return 0;
	if (to > lim)
		to = lim;
	if (to <= from)
		return 0;
	return blk_write_partial(v, m->e[i].pblk + (lb - m->e[i].lblk), boff, NULL,
				 (size_t)(to - from));
}

/* Before a truncate (to == UINT32_MAX) or a hole punch frees the blocks of
 * [from, to): 0 when this host holds every group they are in.  Else
 * VMFS_ENEEDRG, after freeing the part [split, to) whose groups all are
 * held, a step that is complete in itself (alloc.h): a truncate's size
 * goes down to split with it. */
static int free_step(struct vol *v, struct vmfs_inode *in, struct xmap *m, uint32_t from,
		     uint32_t to)
{
	bool truncate = to == UINT32_MAX;
	struct vmfs_xmap_hdr xh;
	uint32_t split;
	int rc;

	if (!v->rg_locked || to <= from)
		return 0;
	vmfs_xmap_hdr_decode(in->area, &xh);
	rc = alloc_mblk_frees(v, xh.nxblk + !truncate);
	if (!rc && !truncate)	/* a hole inside an extent splits it */
		rc = alloc_meta_room(v, 2);
	if (rc)
		return rc;
	split = alloc_free_split(v, m, from, to);
	if (split == from)
		return 0;
	if (split < to) {
		rc = xmap_punch(v, m, split, to - split);
		if (!rc)
			rc = xmap_store(v, in, m);
		if (rc)
			return rc;
	}
	if (truncate && (uint64_t)split * v->bsize < in->size) {
		in->size = (uint64_t)split * v->bsize;
		touch_mtime(in);
	}
	rc = vol_inode_put(v, in);
	return rc ? rc : VMFS_ENEEDRG;
}

/* After an error part-way through a change: store the inode anyway, so
 * what was mapped or freed before the error stays consistent with the
 * allocation maps (else blocks or pages leak, or are freed twice); an
 * error storing it comes first. */
static int put_after_error(struct vol *v, const struct vmfs_inode *in, int rc)
{
	int rc2 = vol_inode_put(v, in);

	return rc2 ? rc2 : rc;
}

/* A truncate that keeps a small file in pages (size <= pages_max). */
static int truncate_pages(struct vol *v, struct vmfs_inode *in, uint64_t size)
{
	int rc = 0;

	/* not growing: pages past the new end go, fallocated ones too */
	if (size <= in->size) {
		rc = pages_frees_room(v, in, pages_of(size), VMFS_PAGES_MAX);
		if (!rc)
			rc = pages_free(v, in, pages_of(size), VMFS_PAGES_MAX);
		if (!rc && size % PG)	/* an extension must read zeros */
			rc = pages_zero(v, in, size, RUP(size));
		if (rc)
			return rc;
	}
	in->size = size;
	if (size == 0) {		/* empty again: back to inline */
		memset(in->area, 0, sizeof(in->area));
		in->iflags = (in->iflags & ~VMFS_IF_PAGES) | VMFS_IF_INLINE;
	}
	return 0;
}

int file_truncate(struct vol *v, uint64_t ino, uint64_t size)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct xmap m = { 0 };
	int rc;

	if (!in)
		return -ENOMEM;
	if (size > VMFS_MAX_VOLUME) {
		free(in);
		return -EFBIG;
	}
	pthread_mutex_lock(&v->mu);
	rc = v->error ? v->error : load_reg(v, ino, in);
	if (rc)
		goto out;
	if (in->iflags & VMFS_IF_INLINE) {
		if (size <= VMFS_INO_AREA_SIZE) {
			if (size < in->size)
				memset(in->area + size, 0, (size_t)(in->size - size));
			in->size = size;
			goto store;
		}
		if (size <= v->pages_max) {
			rc = write_room(v, in, 0, 1 + VMFS_INO_AREA_SIZE);
			if (!rc)
				rc = pages_from_inline(v, in);
			if (rc)
				goto out;
			in->size = size;
			goto store;
		}
		rc = write_room(v, in, 0, 1 + VMFS_INO_AREA_SIZE);
		if (!rc)
			rc = inline_to_extents(v, in, &m);
	} else if (in->iflags & VMFS_IF_PAGES) {
		if (size <= v->pages_max) {
			rc = truncate_pages(v, in, size);
			if (rc)
				goto put_out;
			goto store;
		}
		rc = write_room(v, in, 0, 1 + (uint64_t)v->pages_max);
		if (!rc)
			rc = pages_to_extents(v, in, &m);
		if (rc)
			goto put_out;
	} else {
		rc = xmap_load(v, in, &m);
		if (!rc && size < in->size)
			rc = free_step(v, in, &m, (uint32_t)((size + v->bsize - 1) / v->bsize),
				       UINT32_MAX);
	}
	if (rc)
		goto out;
	if (size < in->size) {
		uint64_t keep = (size + v->bsize - 1) / v->bsize;

		rc = xmap_punch(v, &m, (uint32_t)keep, UINT32_MAX);
		if (!rc && size % v->bsize)
			rc = zero_tail(v, &m, size, (uint64_t)keep * v->bsize);
		if (rc)
			goto out;
	}
	rc = xmap_store(v, in, &m);
	if (rc)
		goto out;
	in->size = size;
	if (size == 0 && m.n == 0) {	/* empty again: back to inline */
		memset(in->area, 0, sizeof(in->area));
		in->iflags |= VMFS_IF_INLINE;
	}
store:
	touch_mtime(in);
	rc = vol_inode_put(v, in);
	if (!rc)
		rc = vol_maybe_commit(v);
	goto out;
put_out:
	rc = put_after_error(v, in, rc);
out:
	pthread_mutex_unlock(&v->mu);
	xmap_release(&m);
	free(in);
	return step_errno(rc);
}

static int punch_locked(struct vol *v, struct xmap *m, uint64_t off, uint64_t end)
{
	uint64_t B = v->bsize, b0 = (off + B - 1) / B, b1 = end / B;
	int rc = 0;

	if (b1 > b0) {
		rc = xmap_punch(v, m, (uint32_t)b0, b1 - b0);
		if (rc)
			return rc;
	}
	/* partial edges: zero the bytes, keep the blocks */
	if (off / B == (end - 1) / B)
		return zero_tail(v, m, off, end);
	if (off % B)
		rc = zero_tail(v, m, off, (off / B + 1) * B);
	if (!rc && end % B)
		rc = zero_tail(v, m, b1 * B, end);
	return rc;
}

/* A hole punch in a small file: whole pages go, the edges are zeroed. */
static int punch_pages(struct vol *v, struct vmfs_inode *in, uint64_t off, uint64_t end)
{
	uint32_t first = pages_of(off), last = (uint32_t)(end / PG);
	int rc = pages_frees_room(v, in, first, last);

	if (!rc)
		rc = pages_free(v, in, first, last);
	if (!rc)		/* only the partial edges are still mapped */
		rc = pages_zero(v, in, off, end);
	return rc;
}

int file_fallocate(struct vol *v, uint64_t ino, int mode, uint64_t off, uint64_t len)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct xmap m = { 0 };
	uint64_t end = off + len;
	int rc, more = 0;

	if (!in)
		return -ENOMEM;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) {
		free(in);
		return -EOPNOTSUPP;
	}
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) {
		free(in);
		return -EINVAL;
	}
	if (end > VMFS_MAX_VOLUME || end < off) {
		free(in);
		return -EFBIG;
	}
	pthread_mutex_lock(&v->mu);
	rc = v->error ? v->error : load_reg(v, ino, in);
	if (rc)
		goto out;
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		if (end > in->size)
			end = in->size;
		if (end <= off)
			goto store;
		if (in->iflags & VMFS_IF_INLINE) {
			memset(in->area + off, 0, (size_t)(end - off));
			goto store;
		}
		if (in->iflags & VMFS_IF_PAGES) {
			rc = punch_pages(v, in, off, end);
			if (rc)
				goto put_out;
			goto store;
		}
		rc = xmap_load(v, in, &m);
		if (!rc)
			rc = free_step(v, in, &m, (uint32_t)((off + v->bsize - 1) / v->bsize),
				       (uint32_t)(end / v->bsize));
		if (rc)
			goto out;
		rc = punch_locked(v, &m, off, end);
		if (!rc)
			rc = xmap_store(v, in, &m);
		goto store;
	}
	/* The groups held may not have room for it all: what they have is
	 * allocated, and the rest asked for (alloc.h) */
	more = write_room(v, in, off, end);
	if (more && more != VMFS_ENEEDRG && more != -ENOSPC) {
		rc = more;
		goto out;
	}
	if ((in->iflags & VMFS_IF_INLINE) && end <= VMFS_INO_AREA_SIZE)
		goto size;
	if ((in->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES)) && end <= v->pages_max) {
		rc = (in->iflags & VMFS_IF_INLINE) ? pages_from_inline(v, in) : 0;
		if (!rc)
			rc = pages_fill(v, in, off, end);
		if (rc)		/* what was filled stays mapped (zeros) */
			goto put_out;
		goto size;
	}
	if (in->iflags & VMFS_IF_INLINE)
		rc = inline_to_extents(v, in, &m);
	else if (in->iflags & VMFS_IF_PAGES)
		rc = pages_to_extents(v, in, &m);
	else
		rc = xmap_load(v, in, &m);
	for (uint64_t lb = off / v->bsize; !rc && lb < (end + v->bsize - 1) / v->bsize;) {
		uint32_t next, got;
		uint64_t pb, want, hole_end;
		int i = xmap_find(&m, (uint32_t)lb, &next);

		if (i >= 0) {
			lb = (uint64_t)m.e[i].lblk + m.e[i].len;
			continue;
		}
		hole_end = next < m.n ? m.e[next].lblk : UINT32_MAX;
		want = ((end + v->bsize - 1) / v->bsize < hole_end ?
			(end + v->bsize - 1) / v->bsize : hole_end) - lb;
		if (m.n >= VMFS_XMAP_MAX) {
			rc = -EFBIG;
			break;
		}
		rc = alloc_blocks(v, 0, want > 65536 ? 65536 : (uint32_t)want, VMFS_B_DATA, &pb, &got);
		if (rc == -ENOSPC && more == VMFS_ENEEDRG)
			rc = VMFS_ENEEDRG;	/* this step is done */
		if (!rc)
			rc = xmap_insert(&m, (uint32_t)lb, (uint32_t)pb, got, VMFS_EXT_UNWRITTEN);
		lb += got;
	}
	{
		int rc2 = xmap_store(v, in, &m);

		rc = rc ? rc : rc2;
	}
	if (rc)		/* -ENOSPC, or a step done (VMFS_ENEEDRG): what was
			 * allocated stays mapped; the size waits */
		goto put_out;
size:
	if (!rc && !(mode & FALLOC_FL_KEEP_SIZE) && end > in->size)
		in->size = end;
store:
	if (!rc) {
		in->ctime_ns = (int64_t)now_ns();
		if (mode & FALLOC_FL_PUNCH_HOLE)
			in->mtime_ns = in->ctime_ns;
		rc = vol_inode_put(v, in);
	}
	if (!rc)
		rc = vol_maybe_commit(v);
	goto out;
put_out:
	rc = put_after_error(v, in, rc);
out:
	pthread_mutex_unlock(&v->mu);
	xmap_release(&m);
	free(in);
	return step_errno(rc);
}

int file_seek(struct vol *v, uint64_t ino, uint64_t off, int whence, uint64_t *res)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct xmap m = { 0 };
	int rc;

	if (!in)
		return -ENOMEM;
	pthread_mutex_lock(&v->mu);
	rc = load_reg(v, ino, in);
	if (!rc && off >= in->size)
		rc = -ENXIO;
	if (!rc && !(in->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES)))
		rc = vmfs_errno(xmap_load(v, in, &m));
	pthread_mutex_unlock(&v->mu);
	if (rc)
		goto out;
	if (in->iflags & VMFS_IF_INLINE) {
		*res = whence == SEEK_DATA ? off : in->size;
		goto out;
	}
	if (in->iflags & VMFS_IF_PAGES) {
		rc = pages_seek(in, off, whence, res);
		goto out;
	}
	if (whence == SEEK_DATA) {
		uint32_t next;
		int i = xmap_find(&m, (uint32_t)(off / v->bsize), &next);

		if (i >= 0 && !(m.e[i].flags & VMFS_EXT_UNWRITTEN)) {
			*res = off;
			goto out;
		}
		if (i >= 0)
			next = (uint32_t)i + 1;
		while (next < m.n && (m.e[next].flags & VMFS_EXT_UNWRITTEN))
			next++;
		if (next >= m.n || (uint64_t)m.e[next].lblk * v->bsize >= in->size)
			rc = -ENXIO;
		else
			*res = (uint64_t)m.e[next].lblk * v->bsize;
	} else {
		uint64_t pos = off;

		for (;;) {
			int i = xmap_find(&m, (uint32_t)(pos / v->bsize), NULL);

			if (i < 0 || (m.e[i].flags & VMFS_EXT_UNWRITTEN))
				break;
			pos = (uint64_t)(m.e[i].lblk + m.e[i].len) * v->bsize;
			if (pos >= in->size)
				break;
		}
		*res = pos < in->size ? pos : in->size;
	}
out:
	xmap_release(&m);
	free(in);
	return rc;
}
