/* cluster.h — what vmfs-mount does with the lock manager: lock sets for
 * FUSE operations, the blocking callback, slot claiming, recovery of dead
 * hosts, leases and self-fencing (DESIGN.md decisions 2 and 3).
 *
 * Lock sets: an operation names every lock it needs (lks_want), takes them
 * in the canonical order of locking.h (lks_lock), works under vol.mu, and
 * ends the uses (lks_unlock).  lks_try_add takes one more lock while
 * others are held, without waiting (-EAGAIN: release all, lks_lock the
 * whole set in order, and check again what was looked up).  With the
 * single-host backend all of this costs a few function calls.
 */
#ifndef VMFS_FS_CLUSTER_H
#define VMFS_FS_CLUSTER_H

#include <stdint.h>

#include "alloc.h"
#include "fuse_ops.h"
#include "locking.h"

#define LKS_MAX (8 + RG_NEED_MAX)

struct lkset {
	int n;
	struct vmfs_lkh h[LKS_MAX];
};

static inline void lks_init(struct lkset *s)
{
	s->n = 0;
}

void lks_want(struct lkset *s, enum vmfs_lk_kind kind, uint64_t id, enum vmfs_lk_mode mode);
int lks_lock(struct fsctx *c, struct lkset *s) __attribute__((warn_unused_result));
int lks_try_add(struct fsctx *c, struct lkset *s, enum vmfs_lk_kind kind, uint64_t id,
		enum vmfs_lk_mode mode) __attribute__((warn_unused_result));
void lks_unlock(struct fsctx *c, struct lkset *s);

/* The lock of the resource group this host allocates in (alloc.h). */
void lks_want_alloc(struct fsctx *c, struct lkset *s);
/* A step answered VMFS_ENEEDRG (alloc.h): with vol.mu released, release
 * the set, add the groups alloc_need() lists (dropping the set's other
 * group locks if they would not fit), lock the set again in order and
 * reset alloc_need().  tries counts the rounds; gives up with -EIO after
 * very many (a bug: every round must make progress). */
int lks_regroup(struct fsctx *c, struct lkset *s, unsigned *tries)
	__attribute__((warn_unused_result));

/* Convenience: one inode lock. */
int lk_inode(struct fsctx *c, struct lkset *s, uint64_t ino, enum vmfs_lk_mode mode)
	__attribute__((warn_unused_result));
/* The inode in EX and the group this host allocates in: where a change
 * that may allocate or free the inode's blocks starts (lks_regroup adds
 * the groups it turns out to need). */
int lk_inode_alloc(struct fsctx *c, struct lkset *s, uint64_t ino)
	__attribute__((warn_unused_result));

/* Mount: connect to vmfs-dlmd for the volume's lockspace (its UUID),
 * register as recovery agent, claim a host slot under its lock, replay
 * journals of slots nobody holds.  -ENOTCONN when vmfs-dlmd is not
 * reachable (the caller decides whether single-host mode is allowed). */
int cluster_mount(struct fsctx *c, int want_slot, const char *host, uint64_t *recovered)
	__attribute__((warn_unused_result));
/* After alloc_init: free the orphans of the recovered slots, release their
 * locks. */
int cluster_finish_recovery(struct fsctx *c, uint64_t recovered) __attribute__((warn_unused_result));
/* orphan_process(slot) under the group locks it asks for (alloc.h), with
 * ls held too (its group locks change).  Without vol.mu. */
int cluster_free_orphans(struct fsctx *c, struct lkset *ls, uint32_t slot)
	__attribute__((warn_unused_result));
/* Unmount: release every cached lock but our slot's (flushing first), so
 * other hosts are not kept waiting; then the slot is marked free and its
 * lock goes with fsctx_fini(). */
void cluster_drop_locks(struct fsctx *c);
/* Unmount: stop the recovery worker (the locks go with vmfs_locking_fini). */
void cluster_stop(struct fsctx *c);

#endif
