/* pages.c — small regular files in mblk pages; see pages.h. */
#include "config.h"
#include "pages.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "le_bytes.h"

#define PG VMFS_MBLK

static uint8_t *slot(const struct vmfs_inode *in, uint32_t i)
{
	return (uint8_t *)in->area + VMFS_PAGES_OFF + 8 * i;
}

uint64_t page_get(const struct vmfs_inode *in, uint32_t i)
{
	return i < VMFS_PAGES_MAX ? get_le64(slot(in, i)) : 0;
}

uint32_t pages_count(const struct vmfs_inode *in)
{
	return get_le32(in->area);
}

static void page_set(struct vmfs_inode *in, uint32_t i, uint64_t addr)
{
	uint32_t n = pages_count(in) - (page_get(in, i) != 0) + (addr != 0);

	put_le64(slot(in, i), addr);
	put_le32((uint8_t *)in->area, n);
}

/* After an uncancellable timeout the kernel may still use the buffer. */
static void io_buf_free(void *buf, int rc)
{
	if (rc != -ETIMEDOUT)
		free(buf);
}

static int page_io(struct vol *v, uint64_t addr, void *buf, bool write)
{
	struct diskio_req r = { buf, PG, addr * VMFS_MBLK, write };

	return diskio_batch(v->dio, &r, 1);
}

void pages_read_reqs(const struct vmfs_inode *in, uint64_t a0, uint64_t a1, uint8_t *buf,
		     struct diskio_req *reqs, int *nr)
{
	*nr = 0;
	for (uint64_t pos = a0; pos < a1; pos += PG) {
		uint64_t addr = page_get(in, (uint32_t)(pos / PG));
		uint8_t *p = buf + (pos - a0);

		if (!addr) {
			memset(p, 0, PG);
		} else if (*nr && reqs[*nr - 1].off + reqs[*nr - 1].len == addr * VMFS_MBLK &&
			   (uint8_t *)reqs[*nr - 1].buf + reqs[*nr - 1].len == p) {
			reqs[*nr - 1].len += PG;	/* consecutive pages: one request */
		} else {
			reqs[(*nr)++] = (struct diskio_req){ p, PG, addr * VMFS_MBLK, false };
		}
	}
}

/* Page i: write data over bytes [boff, boff + len) of it (data NULL:
 * zeros), allocating it zero-filled if it is a hole. */
static int page_update(struct vol *v, struct vmfs_inode *in, uint32_t i, uint32_t boff,
		       const uint8_t *data, uint32_t len, uint8_t *buf)
{
	uint64_t addr = page_get(in, i);
	int rc = 0;

	if (addr && (boff || len < PG))
		rc = page_io(v, addr, buf, false);
	else
		memset(buf, 0, PG);
	if (rc)
		return rc;
	if (data)
		memcpy(buf + boff, data, len);
	else
		memset(buf + boff, 0, len);
	if (!addr) {
		rc = alloc_page(v, &addr);
		if (rc)
			return rc;
		rc = page_io(v, addr, buf, true);
		if (rc) {
			int rc2 = free_mblk(v, addr);

			return rc2 ? rc2 : rc;
		}
		page_set(in, i, addr);	/* mapped once its data is there */
		return 0;
	}
	return page_io(v, addr, buf, true);
}

/* Pages of [off, end) (end <= pages_max): data over them, or (data NULL,
 * fill) zeros into the holes only. */
static int pages_put(struct vol *v, struct vmfs_inode *in, const uint8_t *data, uint64_t off,
		     uint64_t end, bool fill)
{
	uint8_t *buf;
	int rc = 0;

	if (end > v->pages_max || !(in->iflags & VMFS_IF_PAGES))
		return -EINVAL;
	buf = diskio_alloc(PG);
	if (!buf)
		return -ENOMEM;
	for (uint64_t pos = off; pos < end && !rc;) {
		uint32_t i = (uint32_t)(pos / PG), boff = (uint32_t)(pos % PG);
		uint32_t n = PG - boff < end - pos ? PG - boff : (uint32_t)(end - pos);

		if (!fill || !page_get(in, i))
			rc = page_update(v, in, i, boff, data ? data + (pos - off) : NULL,
					 fill ? PG - boff : n, buf);
		pos += n;
	}
	io_buf_free(buf, rc);
	return rc;
}

int pages_write(struct vol *v, struct vmfs_inode *in, const uint8_t *data, size_t size,
		uint64_t off)
{
	uint32_t had = pages_of(in->size);
	int rc = pages_put(v, in, data, off, off + size, false);

	/* A failed write beyond the end maps no page there: a later extension
	 * must read zeros, not what this write got to. */
	if (rc && off + size > in->size) {
		int rc2 = pages_free(v, in, had, VMFS_PAGES_MAX);

		rc = rc2 ? rc2 : rc;
	}
	return rc;
}

int pages_fill(struct vol *v, struct vmfs_inode *in, uint64_t off, uint64_t end)
{
	return pages_put(v, in, NULL, off & ~(uint64_t)(PG - 1), end, true);
}

int pages_zero(struct vol *v, const struct vmfs_inode *in, uint64_t from, uint64_t to)
{
	uint8_t *buf = diskio_alloc(PG);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t pos = from; pos < to && !rc;) {
		uint32_t i = (uint32_t)(pos / PG), boff = (uint32_t)(pos % PG);
		uint32_t n = PG - boff < to - pos ? PG - boff : (uint32_t)(to - pos);
		uint64_t addr = page_get(in, i);

		if (addr) {
			rc = page_io(v, addr, buf, false);
			if (!rc) {
				memset(buf + boff, 0, n);
				rc = page_io(v, addr, buf, true);
			}
		}
		pos += n;
	}
	io_buf_free(buf, rc);
	return rc;
}

int pages_free(struct vol *v, struct vmfs_inode *in, uint32_t first, uint32_t last)
{
	int rc = 0;

	for (uint32_t i = first; i < last && i < VMFS_PAGES_MAX && !rc; i++) {
		uint64_t addr = page_get(in, i);

		if (!addr)
			continue;
		rc = free_mblk(v, addr);
		if (!rc)
			page_set(in, i, 0);
	}
	return rc;
}

int pages_from_inline(struct vol *v, struct vmfs_inode *in)
{
	uint8_t save[VMFS_INO_AREA_SIZE];
	uint64_t size = in->size;
	int rc;

	if (!(in->iflags & VMFS_IF_INLINE) || !v->pages_max)
		return -EINVAL;
	memcpy(save, in->area, sizeof(save));
	memset(in->area, 0, sizeof(in->area));
	in->iflags = (in->iflags & ~VMFS_IF_INLINE) | VMFS_IF_PAGES;
	if (size == 0)
		return 0;
	rc = pages_put(v, in, save, 0, size, false);
	if (rc) {	/* back as it was: nothing was mapped */
		memcpy(in->area, save, sizeof(save));
		in->iflags = (in->iflags & ~VMFS_IF_PAGES) | VMFS_IF_INLINE;
	}
	return rc;
}

int pages_to_extents(struct vol *v, struct vmfs_inode *in, struct xmap *m)
{
	uint32_t n = pages_of(v->pages_max), got;	/* all within block 0 */
	uint64_t pb;
	uint8_t *blk;
	int rc;

	m->n = 0;
	if (pages_count(in) == 0)
		goto switched;
	blk = diskio_alloc(v->bsize);
	if (!blk)
		return -ENOMEM;
	memset(blk, 0, v->bsize);
	rc = 0;
	for (uint32_t i = 0; i < n && i < VMFS_PAGES_MAX && !rc; i++)
		if (page_get(in, i))
			rc = page_io(v, page_get(in, i), blk + (size_t)i * PG, false);
	if (!rc)
		rc = alloc_blocks(v, 0, 1, VMFS_B_DATA, &pb, &got);
	if (!rc) {
		struct diskio_req r = { blk, v->bsize, pb * v->bsize, true };

		rc = diskio_batch(v->dio, &r, 1);
		if (rc) {
			int rc2 = free_blocks(v, pb, 1);

			rc = rc2 ? rc2 : rc;
		}
	}
	io_buf_free(blk, rc);
	if (rc)
		return rc;
	rc = pages_free(v, in, 0, VMFS_PAGES_MAX);
	if (!rc)
		rc = xmap_insert(m, 0, (uint32_t)pb, 1, 0);
	if (rc)
		return rc;
switched:
	memset(in->area, 0, sizeof(in->area));
	in->iflags &= ~VMFS_IF_PAGES;
	return 0;
}

int pages_room(struct vol *v, const struct vmfs_inode *in, uint64_t off, uint64_t end)
{
	unsigned need = (in->iflags & VMFS_IF_INLINE) ? 1 : 0;

	for (uint64_t i = off / PG; i < pages_of(end); i++)
		need += (in->iflags & VMFS_IF_INLINE) || !page_get(in, (uint32_t)i);
	/* free slots freed in this transaction do not count (alloc_page) */
	return need ? alloc_meta_room(v, need + (unsigned)v->npmfree) : 0;
}

int pages_frees_room(struct vol *v, const struct vmfs_inode *in, uint32_t first, uint32_t last)
{
	uint32_t n = 0;

	for (uint32_t i = first; i < last && i < VMFS_PAGES_MAX; i++)
		n += page_get(in, i) != 0;
	return n ? alloc_mblk_frees(v, n) : 0;
}

int pages_seek(const struct vmfs_inode *in, uint64_t off, int whence, uint64_t *res)
{
	uint64_t pos = off;

	while (pos < in->size && (page_get(in, (uint32_t)(pos / PG)) != 0) != (whence == SEEK_DATA))
		pos = (pos / PG + 1) * PG;
	if (pos >= in->size) {
		if (whence == SEEK_DATA)
			return -ENXIO;
		pos = in->size;
	}
	*res = pos;
	return 0;
}
