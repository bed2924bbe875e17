/* pages.h — small regular files: data in 4 KiB mblk pages (VMFS_IF_PAGES).
 *
 * A VM's directory holds, beside its disks, files of a few KiB to a few
 * hundred KiB (configuration, NVRAM, logs).  A whole large block (1 MiB by
 * default) each would waste most of it, so, as VMFS's sub-blocks and
 * small-file blocks do, a regular file lives in three forms as it grows:
 *
 *   inline   up to VMFS_INO_AREA_SIZE bytes, in the inode itself
 *   pages    up to vol.pages_max (256 KiB, at most block_size / 4): the
 *            inode's area lists one mblk per 4 KiB of the file (ondisk.h);
 *            pages come from the same meta chunks as inodes, so they cost
 *            4 KiB each and share the group locks of alloc.h
 *   extents  large blocks (inode.h); a paged file moves there by copying
 *            its pages into its first block, which holds all of them
 *
 * Truncating to zero makes a file inline again; a file does not go back
 * from extents to pages (a VM disk that shrinks stays in blocks).
 *
 * Pages are written in place, unjournaled, like the data of large blocks:
 * a page is written whole before the transaction that maps it commits,
 * and is never one freed in the running transaction (alloc_page), so a
 * crash leaves every mapped page with the data of its own file.
 *
 * All functions need vol.mu held and change metadata only through the
 * running transaction; they leave storing the inode to the caller. */
#ifndef VMFS_FS_PAGES_H
#define VMFS_FS_PAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "diskio.h"
#include "inode.h"
#include "vol.h"

/* Pages needed for size bytes. */
static inline uint32_t pages_of(uint64_t size)
{
	return (uint32_t)((size + VMFS_MBLK - 1) / VMFS_MBLK);
}

uint64_t page_get(const struct vmfs_inode *in, uint32_t i);
uint32_t pages_count(const struct vmfs_inode *in);	/* pages mapped */

/* Read requests for the file bytes [a0, a1) (page aligned) into buf;
 * holes are zeroed in buf.  reqs has room for pages_of(a1 - a0). */
void pages_read_reqs(const struct vmfs_inode *in, uint64_t a0, uint64_t a1, uint8_t *buf,
		     struct diskio_req *reqs, int *nr);
/* Write data at off (off + size <= pages_max), allocating pages. */
int pages_write(struct vol *v, struct vmfs_inode *in, const uint8_t *data, size_t size,
		uint64_t off) __attribute__((warn_unused_result));
/* Map zeroed pages over the holes of [off, end) (fallocate). */
int pages_fill(struct vol *v, struct vmfs_inode *in, uint64_t off, uint64_t end)
	__attribute__((warn_unused_result));
/* Zero the bytes [from, to) in the pages mapped there. */
int pages_zero(struct vol *v, const struct vmfs_inode *in, uint64_t from, uint64_t to)
	__attribute__((warn_unused_result));
/* Free the pages [first, last). */
int pages_free(struct vol *v, struct vmfs_inode *in, uint32_t first, uint32_t last)
	__attribute__((warn_unused_result));

/* inline -> pages; pages -> extents (m receives the map, block 0). */
int pages_from_inline(struct vol *v, struct vmfs_inode *in) __attribute__((warn_unused_result));
int pages_to_extents(struct vol *v, struct vmfs_inode *in, struct xmap *m)
	__attribute__((warn_unused_result));

/* The checks of alloc.h before a change: room for the pages [off, end)
 * still lacks (plus one for an inline file's first page); room to free
 * the pages [first, last) (pages_free's range). */
int pages_room(struct vol *v, const struct vmfs_inode *in, uint64_t off, uint64_t end)
	__attribute__((warn_unused_result));
int pages_frees_room(struct vol *v, const struct vmfs_inode *in, uint32_t first, uint32_t last)
	__attribute__((warn_unused_result));

/* SEEK_DATA / SEEK_HOLE from off (< size). */
int pages_seek(const struct vmfs_inode *in, uint64_t off, int whence, uint64_t *res);

#endif
