/* inode.h — inode life cycle and the extent map of regular files.
 * All functions need vol.mu held. */
#ifndef VMFS_FS_INODE_H
#define VMFS_FS_INODE_H

#include <stdint.h>
#include <sys/types.h>

#include "vol.h"

/* In-memory extent map: sorted by lblk, non-overlapping. */
struct xmap {
	struct vmfs_extent *e;
	uint32_t n, cap;
};

int inode_alloc(struct vol *v, uint32_t mode, uint32_t uid, uint32_t gid, uint64_t parent,
		struct vmfs_inode *out) __attribute__((warn_unused_result));
/* A fresh inode in the already allocated mblk addr (written whole).  Mode
 * 0 makes a spare (nlink 0, see spare.h). */
int inode_init_at(struct vol *v, uint64_t addr, uint32_t mode, uint32_t uid, uint32_t gid,
		  uint64_t parent, struct vmfs_inode *out) __attribute__((warn_unused_result));
/* Release everything the inode owns (data, extent blocks, directory
 * blocks) and its own mblk. */
int inode_free(struct vol *v, uint64_t ino) __attribute__((warn_unused_result));
/* inode_free() of an unlinked inode only this host can reach (an orphan)
 * on a shared mount: 0 once freed; VMFS_ENEEDRG (alloc.h) when groups
 * it owns blocks in are not held, after freeing the data blocks at the
 * end of the file that are in held groups (a truncate: a step). */
int inode_release(struct vol *v, uint64_t ino) __attribute__((warn_unused_result));
/* dtype (DT_*) for a mode */
unsigned char inode_dtype(uint32_t mode);

int xmap_load(struct vol *v, const struct vmfs_inode *ino, struct xmap *m)
	__attribute__((warn_unused_result));
/* Write m into ino's area and overflow blocks (allocating or freeing them),
 * recompute ino->nblocks.  The caller then stores ino. */
int xmap_store(struct vol *v, struct vmfs_inode *ino, const struct xmap *m)
	__attribute__((warn_unused_result));
void xmap_release(struct xmap *m);
/* Index of the extent containing lblk, or -1; *next = index of the first
 * extent starting after lblk (m->n if none). */
int xmap_find(const struct xmap *m, uint32_t lblk, uint32_t *next);
/* Map [lblk, lblk+len) (which must be a hole) to pblk with flags. */
int xmap_insert(struct xmap *m, uint32_t lblk, uint32_t pblk, uint32_t len, uint32_t flags)
	__attribute__((warn_unused_result));
/* Change the flags of the single block lblk (splitting extents). */
int xmap_set_flags(struct xmap *m, uint32_t lblk, uint32_t flags)
	__attribute__((warn_unused_result));
/* Unmap [lblk, lblk+len) and free its blocks. */
int xmap_punch(struct vol *v, struct xmap *m, uint32_t lblk, uint64_t len)
	__attribute__((warn_unused_result));

#endif
