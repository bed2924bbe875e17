/* inode.c — inode allocation/free and the extent map of regular files. */
#include "config.h"
#include "inode.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "dir.h"
#include "log.h"
#include "pages.h"

#define XM_PTRS_OFF	16
#define XM_INLINE_OFF	(16 + VMFS_XMAP_NXBLK * 8)

unsigned char inode_dtype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return DT_REG;
	case S_IFDIR: return DT_DIR;
	case S_IFLNK: return DT_LNK;
	case S_IFIFO: return DT_FIFO;
	case S_IFSOCK: return DT_SOCK;
	case S_IFCHR: return DT_CHR;
	case S_IFBLK: return DT_BLK;
	default: return DT_UNKNOWN;
	}
}

int inode_alloc(struct vol *v, uint32_t mode, uint32_t uid, uint32_t gid, uint64_t parent,
		struct vmfs_inode *out)
{
	uint64_t addr;
	int rc = alloc_mblk(v, &addr);

	if (rc)
		return rc;
	return inode_init_at(v, addr, mode, uid, gid, parent, out);
}

int inode_init_at(struct vol *v, uint64_t addr, uint32_t mode, uint32_t uid, uint32_t gid,
		  uint64_t parent, struct vmfs_inode *out)
{
	struct mbuf *mb;
	int64_t t = (int64_t)now_ns();
	int rc = mc_new(v, addr, &mb);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	vmfs_hdr_init(&out->h, VMFS_T_INODE, addr, v->sb.uuid);
	out->mode = mode;
	out->uid = uid;
	out->gid = gid;
	out->nlink = S_ISDIR(mode) ? 2 : mode ? 1 : 0;
	out->atime_ns = out->mtime_ns = out->ctime_ns = out->btime_ns = t;
	out->parent = parent;
	out->igen = (uint64_t)t;
	if (S_ISREG(mode))
		out->iflags = VMFS_IF_INLINE;
	vmfs_inode_encode(out, mb->data);
	mc_dirty(v, mb);
	if (S_ISDIR(mode)) {
		rc = dir_init(v, out);
		if (rc)
			return rc;
		rc = vol_inode_put(v, out);
	}
	return rc;
}

int inode_free(struct vol *v, uint64_t ino)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct xmap m = { 0 };
	int rc;

	if (!in)
		return -ENOMEM;
	rc = vol_inode_get(v, ino, in);
	if (rc)
		goto out;
	if (S_ISREG(in->mode) && (in->iflags & VMFS_IF_PAGES)) {
		rc = pages_free(v, in, 0, VMFS_PAGES_MAX);
		if (rc)
			goto out;
	} else if (S_ISREG(in->mode) && !(in->iflags & VMFS_IF_INLINE)) {
		rc = xmap_load(v, in, &m);
		if (rc)
			goto out;
		rc = xmap_punch(v, &m, 0, UINT32_MAX);
		if (rc)
			goto out;
		rc = xmap_store(v, in, &m);
		if (rc)
			goto out;
	} else if (S_ISDIR(in->mode)) {
		rc = dir_destroy(v, in);
		if (rc)
			goto out;
	}
	rc = free_mblk(v, ino);
out:
	xmap_release(&m);
	free(in);
	return rc;
}

static int need_dir_block(void *arg, uint64_t addr, int type)
{
	struct vol *v = arg;

	(void)type;
	alloc_need_block(v, addr / v->mpb);
	return 0;
}

int inode_release(struct vol *v, uint64_t ino)
{
	struct vmfs_inode *in;
	struct xmap m = { 0 };
	uint32_t split = 0;
	int rc;

	if (!v->rg_locked)
		return inode_free(v, ino);
	in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	rc = vol_inode_get(v, ino, in);
	if (rc)
		goto out;
	/* Every mblk it frees must be in a held group: this is no place for
	 * the spare pool (orphan_process frees the pool's own spares). */
	alloc_need_block(v, ino / v->mpb);
	if (S_ISREG(in->mode) && (in->iflags & VMFS_IF_PAGES)) {
		/* the pages in held groups go now (progress, as the extents'
		 * held tail below); the others' groups are asked for */
		bool freed = false;

		for (uint32_t i = 0; i < VMFS_PAGES_MAX && !rc; i++) {
			uint64_t addr = page_get(in, i);

			if (addr && alloc_need_block(v, addr / v->mpb)) {
				rc = pages_free(v, in, i, i + 1);
				freed = true;
			}
		}
		if (!rc && freed)
			rc = vol_inode_put(v, in);
		if (rc)
			goto out;
	} else if (S_ISREG(in->mode) && !(in->iflags & VMFS_IF_INLINE)) {
		struct vmfs_xmap_hdr xh;
		bool mblks;

		vmfs_xmap_hdr_decode(in->area, &xh);
		for (uint32_t b = 0; b < xh.nxblk && b < VMFS_XMAP_NXBLK; b++)
			alloc_need_block(v, get_le64(in->area + XM_PTRS_OFF + 8 * b) / v->mpb);
		mblks = alloc_need()->n == 0;
		rc = xmap_load(v, in, &m);
		if (rc)
			goto out;
		split = alloc_free_split(v, &m, 0, UINT32_MAX);
		if (split && mblks) {	/* free the held tail now: progress */
			rc = xmap_punch(v, &m, split, UINT32_MAX);
			if (!rc)
				rc = xmap_store(v, in, &m);
			if (!rc && in->size > (uint64_t)split * v->bsize)
				in->size = (uint64_t)split * v->bsize;
			if (!rc)
				rc = vol_inode_put(v, in);
			if (rc)
				goto out;
		}
	} else if (S_ISDIR(in->mode)) {
		rc = dir_walk_blocks(v, in, need_dir_block, v);
		if (rc)
			goto out;
	}
	rc = alloc_need()->n ? VMFS_ENEEDRG : inode_free(v, ino);
out:
	xmap_release(&m);
	free(in);
	return rc;
}

void xmap_release(struct xmap *m)
{
	free(m->e);
	m->e = NULL;
	m->n = m->cap = 0;
}

static int xmap_reserve(struct xmap *m, uint32_t n)
{
	if (n <= m->cap)
		return 0;
	uint32_t cap = m->cap ? m->cap : 16;
	while (cap < n)
		cap *= 2;
	void *p = realloc(m->e, (size_t)cap * sizeof(*m->e));
	if (!p)
		return -ENOMEM;
	m->e = p;
	m->cap = cap;
	return 0;
}

static bool ext_sane(const struct vol *v, const struct vmfs_extent *e)
{
	return e->len > 0 && (e->flags & ~VMFS_EXT_UNWRITTEN) == 0 &&
	       e->pblk >= v->sb.rg_start && (uint64_t)e->pblk + e->len <= v->sb.nblocks &&
	       (uint64_t)e->lblk + e->len <= UINT32_MAX;
}

int xmap_load(struct vol *v, const struct vmfs_inode *ino, struct xmap *m)
{
	struct vmfs_xmap_hdr xh;
	struct vmfs_extblk *xb = NULL;
	uint32_t k = 0;
	int rc;

	m->n = 0;
	if (ino->iflags & (VMFS_IF_INLINE | VMFS_IF_PAGES))
		return 0;	/* no extents */
	vmfs_xmap_hdr_decode(ino->area, &xh);
	if (xh.nextents > VMFS_XMAP_MAX || xh.nxblk > VMFS_XMAP_NXBLK ||
	    (xh.nextents > VMFS_XMAP_INLINE &&
	     xh.nxblk != (xh.nextents - VMFS_XMAP_INLINE + VMFS_EXTBLK_MAX - 1) / VMFS_EXTBLK_MAX) ||
	    (xh.nextents <= VMFS_XMAP_INLINE && xh.nxblk)) {
		vol_report_bad(v, VMFS_T_INODE, ino->h.self, VMFS_EBADFIELD);
		return VMFS_EBADFIELD;
	}
	rc = xmap_reserve(m, xh.nextents);
	if (rc)
		return rc;
	for (; k < xh.nextents && k < VMFS_XMAP_INLINE; k++)
		vmfs_extent_decode(ino->area + XM_INLINE_OFF + VMFS_EXT_SIZE * k, &m->e[k]);
	if (xh.nxblk) {
		xb = malloc(sizeof(*xb));
		if (!xb)
			return -ENOMEM;
	}
	for (uint32_t b = 0; b < xh.nxblk; b++) {
		uint64_t addr = get_le64(ino->area + XM_PTRS_OFF + 8 * b);
		struct mbuf *mb;

		rc = mc_get(v, addr, VMFS_T_EXTBLK, &mb);
		if (rc)
			goto out;
		rc = vmfs_extblk_decode(mb->data, addr, v->sb.uuid, xb);
		if (!rc && (xb->owner != ino->h.self || xb->index != b ||
			    xb->count != (b + 1 < xh.nxblk ? VMFS_EXTBLK_MAX :
					  xh.nextents - VMFS_XMAP_INLINE - b * VMFS_EXTBLK_MAX)))
			rc = VMFS_EBADFIELD;
		if (rc) {
			vol_report_bad(v, VMFS_T_EXTBLK, addr, rc);
			goto out;
		}
		for (uint32_t i = 0; i < xb->count; i++)
			m->e[k++] = xb->ext[i];
	}
	m->n = k;
	/* sorted, non-overlapping, in range: anything else is corruption */
	for (uint32_t i = 0; i < m->n; i++) {
		if (!ext_sane(v, &m->e[i]) ||
		    (i && m->e[i].lblk < m->e[i - 1].lblk + m->e[i - 1].len)) {
			vol_report_bad(v, VMFS_T_INODE, ino->h.self, VMFS_EBADFIELD);
			rc = VMFS_EBADFIELD;
			goto out;
		}
	}
out:
	free(xb);
	if (rc)
		m->n = 0;
	return rc;
}

int xmap_store(struct vol *v, struct vmfs_inode *ino, const struct xmap *m)
{
	struct vmfs_xmap_hdr old, xh = { 0 };
	struct vmfs_extblk *xb = NULL, *cur = NULL;
	uint64_t nblocks = 0;
	int rc = 0;

	if (m->n > VMFS_XMAP_MAX)
		return -EFBIG;
	if (ino->iflags & VMFS_IF_PAGES)
		return -EINVAL;	/* pages.h moves a small file to extents */
	if (ino->iflags & VMFS_IF_INLINE)
		memset(&old, 0, sizeof(old));
	else
		vmfs_xmap_hdr_decode(ino->area, &old);
	if (old.nxblk > VMFS_XMAP_NXBLK)
		old.nxblk = 0;
	xh.nextents = m->n;
	xh.nxblk = m->n > VMFS_XMAP_INLINE ?
		(m->n - VMFS_XMAP_INLINE + VMFS_EXTBLK_MAX - 1) / VMFS_EXTBLK_MAX : 0;
	ino->iflags &= ~VMFS_IF_INLINE;
	for (uint32_t i = 0; i < m->n; i++) {
		nblocks += m->e[i].len;
		if (i < VMFS_XMAP_INLINE)
			vmfs_extent_encode(&m->e[i], ino->area + XM_INLINE_OFF + VMFS_EXT_SIZE * i);
	}
	for (uint32_t i = m->n; i < VMFS_XMAP_INLINE; i++)
		memset(ino->area + XM_INLINE_OFF + VMFS_EXT_SIZE * i, 0, VMFS_EXT_SIZE);
	/* surplus overflow blocks go first, so the pointers below are final */
	for (uint32_t b = xh.nxblk; b < old.nxblk; b++) {
		uint64_t addr = get_le64(ino->area + XM_PTRS_OFF + 8 * b);

		rc = free_mblk(v, addr);
		if (rc)
			goto out;
		put_le64(ino->area + XM_PTRS_OFF + 8 * b, 0);
	}
	if (xh.nxblk) {
		xb = calloc(1, sizeof(*xb));
		cur = malloc(sizeof(*cur));
		if (!xb || !cur) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (uint32_t b = 0; b < xh.nxblk; b++) {
		uint32_t first = VMFS_XMAP_INLINE + b * VMFS_EXTBLK_MAX;
		uint32_t cnt = m->n - first < VMFS_EXTBLK_MAX ? m->n - first : VMFS_EXTBLK_MAX;
		uint64_t addr;
		struct mbuf *mb;

		if (b < old.nxblk) {
			addr = get_le64(ino->area + XM_PTRS_OFF + 8 * b);
			rc = mc_get(v, addr, VMFS_T_EXTBLK, &mb);
			if (rc)
				goto out;
			/* skip blocks whose extents did not change */
			if (!vmfs_extblk_decode(mb->data, addr, v->sb.uuid, cur) &&
			    cur->count == cnt && cur->owner == ino->h.self && cur->index == b &&
			    !memcmp(cur->ext, &m->e[first], cnt * sizeof(*m->e)))
				continue;
		} else {
			rc = alloc_mblk(v, &addr);
			if (rc)
				goto out;
			rc = mc_new(v, addr, &mb);
			if (rc)
				goto out;
			put_le64(ino->area + XM_PTRS_OFF + 8 * b, addr);
		}
		memset(xb, 0, sizeof(*xb));
		vmfs_hdr_init(&xb->h, VMFS_T_EXTBLK, addr, v->sb.uuid);
		xb->h.generation = get_le64(mb->data + 16);
		xb->owner = ino->h.self;
		xb->index = b;
		xb->count = cnt;
		memcpy(xb->ext, &m->e[first], cnt * sizeof(*m->e));
		vmfs_extblk_encode(xb, mb->data);
		mc_dirty(v, mb);
	}
	vmfs_xmap_hdr_encode(&xh, ino->area);
	ino->nblocks = nblocks;
out:
	free(xb);
	free(cur);
	return rc;
}

int xmap_find(const struct xmap *m, uint32_t lblk, uint32_t *next)
{
	uint32_t lo = 0, hi = m->n;

	/* first extent with lblk < start, binary search */
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (m->e[mid].lblk <= lblk)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (next)
		*next = lo;
	if (lo > 0 && lblk < m->e[lo - 1].lblk + m->e[lo - 1].len)
		return (int)(lo - 1);
	return -1;
}

static bool mergeable(const struct vmfs_extent *a, const struct vmfs_extent *b)
{
	return a->lblk + a->len == b->lblk && a->pblk + a->len == b->pblk &&
	       a->flags == b->flags && (uint64_t)a->len + b->len < UINT32_MAX;
}

static void xmap_merge_at(struct xmap *m, uint32_t i)
{
	/* merge e[i] with its successor and predecessor when contiguous */
	if (i + 1 < m->n && mergeable(&m->e[i], &m->e[i + 1])) {
		m->e[i].len += m->e[i + 1].len;
		memmove(&m->e[i + 1], &m->e[i + 2], (m->n - i - 2) * sizeof(*m->e));
		m->n--;
	}
	if (i > 0 && mergeable(&m->e[i - 1], &m->e[i])) {
		m->e[i - 1].len += m->e[i].len;
		memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(*m->e));
		m->n--;
	}
}

int xmap_insert(struct xmap *m, uint32_t lblk, uint32_t pblk, uint32_t len, uint32_t flags)
{
	uint32_t pos;
	int rc;

	if (xmap_find(m, lblk, &pos) >= 0)
		return -EEXIST;
	rc = xmap_reserve(m, m->n + 1);
	if (rc)
		return rc;
	memmove(&m->e[pos + 1], &m->e[pos], (m->n - pos) * sizeof(*m->e));
	m->e[pos] = (struct vmfs_extent){ .lblk = lblk, .pblk = pblk, .len = len, .flags = flags };
	m->n++;
	xmap_merge_at(m, pos);
	return 0;
}

int xmap_set_flags(struct xmap *m, uint32_t lblk, uint32_t flags)
{
	int i = xmap_find(m, lblk, NULL);
	struct vmfs_extent e;
	uint32_t off;
	int rc;

	if (i < 0)
		return -ENOENT;
	e = m->e[i];
	if (e.flags == flags)
		return 0;
	rc = xmap_reserve(m, m->n + 2);
	if (rc)
		return rc;
	off = lblk - e.lblk;
	/* split e into [before][lblk][after] */
	memmove(&m->e[i + 3], &m->e[i + 1], (m->n - (uint32_t)i - 1) * sizeof(*m->e));
	m->n += 2;
	m->e[i] = (struct vmfs_extent){ e.lblk, e.pblk, off, e.flags };
	m->e[i + 1] = (struct vmfs_extent){ lblk, e.pblk + off, 1, flags };
	m->e[i + 2] = (struct vmfs_extent){ lblk + 1, e.pblk + off + 1, e.len - off - 1, e.flags };
	/* drop empty pieces */
	for (int k = i + 2; k >= i; k--) {
		if (m->e[k].len == 0) {
			memmove(&m->e[k], &m->e[k + 1], (m->n - (uint32_t)k - 1) * sizeof(*m->e));
			m->n--;
		}
	}
	for (uint32_t k = (uint32_t)i; k < m->n && m->e[k].lblk <= lblk + 1; k++) {
		if (m->e[k].lblk == lblk) {
			xmap_merge_at(m, k);
			break;
		}
	}
	return 0;
}

int xmap_punch(struct vol *v, struct xmap *m, uint32_t lblk, uint64_t len)
{
	uint64_t end = (uint64_t)lblk + len;
	uint32_t i = 0;
	int rc;

	while (i < m->n) {
		struct vmfs_extent *e = &m->e[i];
		uint64_t es = e->lblk, ee = (uint64_t)e->lblk + e->len;
		uint64_t cs = es > lblk ? es : lblk, ce = ee < end ? ee : end;

		if (ce <= cs) {
			i++;
			continue;
		}
		rc = free_blocks(v, e->pblk + (cs - es), (uint32_t)(ce - cs));
		if (rc)
			return rc;
		if (cs == es && ce == ee) {		/* whole extent */
			memmove(e, e + 1, (m->n - i - 1) * sizeof(*e));
			m->n--;
		} else if (cs == es) {			/* head */
			e->pblk += (uint32_t)(ce - es);
			e->lblk = (uint32_t)ce;
			e->len = (uint32_t)(ee - ce);
			i++;
		} else if (ce == ee) {			/* tail */
			e->len = (uint32_t)(cs - es);
			i++;
		} else {				/* middle: split */
			struct vmfs_extent tail = { (uint32_t)ce, e->pblk + (uint32_t)(ce - es),
						    (uint32_t)(ee - ce), e->flags };

			rc = xmap_reserve(m, m->n + 1);
			if (rc)
				return rc;
			e = &m->e[i];
			e->len = (uint32_t)(cs - es);
			memmove(&m->e[i + 2], &m->e[i + 1], (m->n - i - 1) * sizeof(*e));
			m->e[i + 1] = tail;
			m->n++;
			i += 2;
		}
	}
	return 0;
}
