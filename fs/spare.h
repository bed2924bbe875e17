/* spare.h — spare mblks: creating and deleting small files on a shared
 * volume without the allocator lock.
 *
 * Every create allocates an inode mblk (and now and then a directory
 * bucket), every final unlink frees one, and both change a chunk header,
 * which the cluster-wide lock of its resource group covers (locking.h).  Hosts
 * creating files at the same time would hand that lock back and forth.
 * So, as OCFS2 gives each node its own inode allocator, each host keeps a
 * pool of mblks allocated for itself:
 *
 *   spare_rebalance  with group locks: bring the pool to SPARE_FILL, allocating
 *                    mblks (each written as an inode of mode 0, nlink 0, and
 *                    listed on this host's orphan list, slot.h) or freeing
 *   spare mode       an operation that runs without them sets vol.spare_mode
 *                    under vol.mu: alloc_mblk() then pops a spare (unlisted;
 *                    the caller writes the block whole) and free_mblk()
 *                    pushes the mblk back as a spare; data blocks cannot be
 *                    allocated or freed in spare mode (-EAGAIN)
 *
 * An operation may run in spare mode only when spare_ok(): the pool holds
 * at least SPARE_RESERVE spares and room for SPARE_RESERVE more, more than
 * any single create or unlink of a file without blocks takes or gives
 * (an inode, a directory split: a new bucket, an index block, a chain).
 *
 * Crash safety comes from the orphan list: spares are unlinked inodes on
 * it, so whoever recovers this slot, the next mount of it, and unmount
 * (which processes the list) free them like any orphan, and fsck treats
 * them as orphans.  Nobody else can reach a spare: it has no name and its
 * mblk is marked used.  The pool in memory (vol.spare) mirrors the
 * spares listed on disk; it starts empty at mount, when the list of this
 * slot has just been processed, and orphan_process() of this slot (unmount)
 * empties it with the list.  Functions need vol.mu held and change
 * metadata through the running transaction. */
#ifndef VMFS_FS_SPARE_H
#define VMFS_FS_SPARE_H

#include <stdbool.h>
#include <stdint.h>

#include "vol.h"

#define SPARE_CAP ((unsigned)(sizeof(((struct vol *)0)->spare) / sizeof(uint64_t)))
#define SPARE_FILL (SPARE_CAP / 2)
#define SPARE_RESERVE 8

/* May an operation run in spare mode now? */
bool spare_ok(const struct vol *v);
/* Bring the pool to SPARE_FILL (allocating in held groups, giving back
 * only spares of held groups: alloc.h); not in spare mode.  Leaves room on the orphan
 * list for files unlinked while open. */
int spare_rebalance(struct vol *v) __attribute__((warn_unused_result));
/* alloc_mblk()/free_mblk() in spare mode. */
int spare_pop(struct vol *v, uint64_t *addr) __attribute__((warn_unused_result));
int spare_push(struct vol *v, uint64_t addr) __attribute__((warn_unused_result));
/* The orphan list no longer has addr (orphan_process freed it): out of
 * the pool too, if it was a spare. */
void spare_forget(struct vol *v, uint64_t addr);

#endif
