/* alloc.h — block and metadata-slot allocation (resource groups, chunks).
 *
 * Large blocks are allocated from resource groups, starting at the host's
 * preferred group (slot * nrgs / max_hosts) so hosts mostly work in
 * different groups and, with the lock manager, contend on different RG
 * locks.  Metadata mblks (inodes, directory and extent blocks) come from
 * "meta chunks": large blocks in state META whose first mblk is a chunk
 * header with a slot bitmap.  All functions need vol.mu held and change
 * metadata only through the running transaction.
 */
#ifndef VMFS_FS_ALLOC_H
#define VMFS_FS_ALLOC_H

#include <stdint.h>

#include "vol.h"

/* Read every RG header, sum free space, pick the preferred group. */
/* Sum the groups' free counts into v->free_blocks (other hosts allocate
 * too: recount after a lock handover).  Needs mu. */
int alloc_recount(struct vol *v) __attribute__((warn_unused_result));
int alloc_init(struct vol *v) __attribute__((warn_unused_result));
/* Allocate up to want contiguous blocks in state (DATA or META), at goal
 * if it is free (goal 0 = no preference).  Returns 0 or -ENOSPC. */
int alloc_blocks(struct vol *v, uint64_t goal, uint32_t want, unsigned state,
		 uint64_t *start, uint32_t *got) __attribute__((warn_unused_result));
/* Free data blocks; they become reusable once this transaction commits. */
int free_blocks(struct vol *v, uint64_t start, uint32_t len) __attribute__((warn_unused_result));
int alloc_mblk(struct vol *v, uint64_t *addr) __attribute__((warn_unused_result));
int free_mblk(struct vol *v, uint64_t addr) __attribute__((warn_unused_result));
/* Initialise block b (already marked META in its RG) as a chunk header;
 * extra_used marks slots 1..extra_used used too (the RG header). */
int chunk_init(struct vol *v, uint64_t b, uint32_t rg, uint32_t extra_used)
	__attribute__((warn_unused_result));
/* RG index of block b, or -1 if b is outside every group. */
int64_t alloc_rg_of(const struct vol *v, uint64_t b);

#endif
