/* alloc.h — block and metadata-slot allocation (resource groups, chunks).
 *
 * Large blocks are allocated from resource groups (RGs).  Metadata mblks
 * (inodes, directory and extent blocks) come from "meta chunks": large
 * blocks in state META whose first mblk is a chunk header with a slot
 * bitmap.  All functions need vol.mu held and change metadata only through
 * the running transaction.
 *
 * Locks, on a shared mount (v->rg_locked): each RG has its own cluster
 * lock "a<i>" (locking.h), covering the RG's header and bitmap and the
 * chunk headers inside its blocks.  A host starts allocating in its own
 * group (slots bit-reversed over the groups, so the first hosts start far
 * apart and mostly hold different locks) and moves on to an empty group
 * when it fills.  The rule, checked here: under vol.mu an RG
 * may be changed only while v->rg_held[i] says this host holds its lock
 * (set when an operation that locked it takes vol.mu, cleared by the
 * lock's blocking callback, which also runs under vol.mu, after it has
 * committed whatever was changed).  An RG lock another operation of this
 * host took and still caches counts: the lock cannot go while we hold
 * vol.mu.
 *
 * So an operation cannot know all its RG locks before it looks at the
 * metadata.  It locks what it expects (lks_want_alloc: the group this
 * host allocates in), then, under vol.mu and before changing anything,
 * asks the checks below whether the RGs it will change are held.  If not,
 * a check lists the missing groups (alloc_need(), for this thread) and
 * returns VMFS_ENEEDRG; the operation releases vol.mu and its RG locks,
 * takes the listed ones with the rest of its set in the canonical order,
 * and starts again (cluster.h lks_regroup).  This is GFS2's
 * gfs2_inplace_reserve / rgrp list, checked instead of planned.
 *
 * Work too large for one lock set (a truncate over more groups than
 * RG_NEED_MAX) is done in steps, each a complete operation: the part
 * whose groups are held is done, and the rest asked for.
 *
 * Frees of mblks in a group this host does not hold go to its spare pool
 * (spare.h) instead: no lock needed, and the pool gives them back to their
 * group when it shrinks under that group's lock.
 */
#ifndef VMFS_FS_ALLOC_H
#define VMFS_FS_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

#include "vol.h"

struct xmap;

/* "Take these RG locks and call again" (see above).  A domain error:
 * vmfs_errno() turns a leaked one into EIO. */
#define VMFS_ENEEDRG (-2990)
#define RG_NEED_MAX 12

struct rg_need {
	unsigned n;
	uint32_t rg[RG_NEED_MAX];
};

/* This thread's list of wanted groups; reset it before an attempt. */
struct rg_need *alloc_need(void);
void alloc_need_reset(void);

/* May RG i be changed now?  Always off a shared mount. */
static inline bool rg_usable(const struct vol *v, uint32_t i)
{
	return !v->rg_locked || (v->rg_held && i < v->sb.nrgs && v->rg_held[i]);
}

/* Set up the per-RG state, sum free space, pick the preferred group
 * (rg_locked must be set first on a shared mount). */
int alloc_init(struct vol *v) __attribute__((warn_unused_result));
/* Sum the groups' free counts into v->free_blocks; groups this host does
 * not hold are read from the disk and not kept (other hosts change them). */
int alloc_recount(struct vol *v) __attribute__((warn_unused_result));

/* Checks, before an operation changes anything: 0, or VMFS_ENEEDRG with
 * alloc_need() filled, or -ENOSPC.
 *   alloc_room        the held groups have want free blocks
 *   alloc_meta_room   n mblks can be allocated (a chunk with room, or a
 *                     free block for a new one)
 *   alloc_mblk_frees  n mblks may be freed (room in the spare pool; else
 *                     the groups of spares it can give back first) */
int alloc_room(struct vol *v, uint64_t want) __attribute__((warn_unused_result));
/* Before an operation that allocates up to want blocks changes anything:
 * if the blocks freed in the running transaction (not reusable before it
 * commits) are what stands between it and the room it needs, commit now.
 * Else a file removed and written again at once found the volume full
 * (ext4 likewise forces a commit on ENOSPC).  0 or the commit's error. */
int alloc_settle(struct vol *v, uint64_t want) __attribute__((warn_unused_result));
int alloc_meta_room(struct vol *v, unsigned n) __attribute__((warn_unused_result));
int alloc_mblk_frees(struct vol *v, uint64_t n) __attribute__((warn_unused_result));
/* Is block b's group held?  If not, it is added to alloc_need(). */
bool alloc_need_block(struct vol *v, uint64_t b);
/* For work done in steps from the end of [from, to): the lowest lblk L
 * such that every data block of m in [L, to) is in a held group; the
 * groups below L are added to alloc_need() (as many as fit, nearest
 * first).  L == from: all held. */
uint32_t alloc_free_split(struct vol *v, const struct xmap *m, uint32_t from, uint32_t to);

/* Allocate up to want contiguous blocks in state (DATA or META), at goal
 * if it is free (goal 0 = no preference), in held groups.  Returns 0 or
 * -ENOSPC. */
int alloc_blocks(struct vol *v, uint64_t goal, uint32_t want, unsigned state,
		 uint64_t *start, uint32_t *got) __attribute__((warn_unused_result));
/* Free data blocks; they become reusable once this transaction commits.
 * Their groups must be held (a check said so). */
int free_blocks(struct vol *v, uint64_t start, uint32_t len) __attribute__((warn_unused_result));
int alloc_mblk(struct vol *v, uint64_t *addr) __attribute__((warn_unused_result));
/* An mblk for file data (a page of a small file, file.h): never one freed
 * in the running transaction, since the caller writes it in place before
 * that free is durable; not in spare mode (-EAGAIN). */
int alloc_page(struct vol *v, uint64_t *addr) __attribute__((warn_unused_result));
/* Free a metadata mblk or a page: to its chunk (in a held group), or to
 * the spare pool (spare mode, or a group this host does not hold). */
int free_mblk(struct vol *v, uint64_t addr) __attribute__((warn_unused_result));
/* Initialise block b (already marked META in its RG) as a chunk header;
 * extra_used marks slots 1..extra_used used too (the RG header). */
int chunk_init(struct vol *v, uint64_t b, uint32_t rg, uint32_t extra_used)
	__attribute__((warn_unused_result));
/* RG index of block b, or -1 if b is outside every group. */
int64_t alloc_rg_of(const struct vol *v, uint64_t b);

#endif
