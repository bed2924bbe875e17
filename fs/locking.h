/* locking.h — cluster locks as the filesystem sees them.
 *
 * The mount takes a cluster lock on every resource before touching its
 * metadata (DESIGN.md decision 2): per inode (attributes, directory
 * contents, extent map), per resource group (bitmap), per host slot
 * (heartbeat + journal; held EX by the owner, taken by a survivor to
 * replay).  Locks are cached: unlock() only marks a lock unused; it is
 * really released or downgraded when another host asks for a conflicting
 * mode, at which point the backend calls the blocking callback, which must
 * commit the journal, write back and invalidate everything cached under
 * that lock (and tell the kernel via FUSE notify) before returning.
 *
 * Ordering rule: inode and slot locks are taken before vol.mu and never
 * while holding it (a blocking callback needs vol.mu to flush).  Several
 * inode locks are taken in ascending resource id order.  Resource-group
 * locks are the exception: the allocator picks groups while holding vol.mu,
 * so it takes them with VMFS_LK_TRY and moves on to the next group when
 * another host holds one (a host mostly stays in its preferred groups).
 *
 * Call sites (wired when the lock-manager backend lands; the single-host
 * backend below grants everything, so nothing calls it yet):
 *   lookup/getattr/readdir/read/readlink/getxattr: PR on the inode (and the
 *     parent directory for lookup);
 *   create/mkdir/symlink/link/unlink/rmdir: EX on the parent directory, EX on
 *     the child; rename: EX on both parents and both children, ascending;
 *   setattr/write/fallocate/setxattr: EX on the inode (CW for files opened
 *     multi-writer, decision 7);
 *   alloc_blocks/alloc_mblk/free_*: EX on the group (TRY, see above);
 *   mount: EX on its own slot for the whole mount; recovery: EX on the dead
 *     host's slot while replaying its journal.
 *
 * Backends: "single" (this session) grants everything at once; it is only
 * correct while one host mounts the volume, which the mount enforces with
 * the host-slot heartbeats.  The lock-manager backend will map these calls
 * onto libvmfsdlm (include/vmfs/dlm.h) with the lockspace named after the
 * volume UUID and resource names "i<ino>", "r<rg>", "s<slot>".
 */
#ifndef VMFS_FS_LOCKING_H
#define VMFS_FS_LOCKING_H

#include <stdint.h>

/* The VMS/DLM six modes, numbered as in the lock manager. */
enum vmfs_lk_mode { VMFS_LK_NL = 0, VMFS_LK_CR, VMFS_LK_CW, VMFS_LK_PR, VMFS_LK_PW, VMFS_LK_EX };
enum vmfs_lk_kind { VMFS_LK_INODE = 1, VMFS_LK_RGRP = 2, VMFS_LK_SLOT = 3 };
#define VMFS_LK_TRY 0x1		/* fail with -EAGAIN instead of waiting */

/* Called by the backend when another host wants res in a mode that
 * conflicts with ours: flush and invalidate, then return the mode we can
 * drop to.  Runs on a backend thread without vol.mu held. */
typedef enum vmfs_lk_mode (*vmfs_lk_blocking_cb)(void *arg, enum vmfs_lk_kind kind, uint64_t id,
						 enum vmfs_lk_mode wanted);

struct vmfs_lockops {
	const char *name;
	int (*lock)(void *be, enum vmfs_lk_kind kind, uint64_t id, enum vmfs_lk_mode mode,
		    unsigned flags);
	int (*unlock)(void *be, enum vmfs_lk_kind kind, uint64_t id);
	void (*fini)(void *be);
};

struct vmfs_locking {
	const struct vmfs_lockops *ops;
	void *be;			/* backend state */
	vmfs_lk_blocking_cb blocking;
	void *blocking_arg;
};

/* Single-host backend. */
int vmfs_locking_single_init(struct vmfs_locking *lk, vmfs_lk_blocking_cb cb, void *arg)
	__attribute__((warn_unused_result));

static inline int vmfs_lock(struct vmfs_locking *lk, enum vmfs_lk_kind kind, uint64_t id,
			    enum vmfs_lk_mode mode, unsigned flags)
{
	return lk->ops->lock(lk->be, kind, id, mode, flags);
}

static inline int vmfs_unlock(struct vmfs_locking *lk, enum vmfs_lk_kind kind, uint64_t id)
{
	return lk->ops->unlock(lk->be, kind, id);
}

/* Lock-manager backend (locking_dlm.c): lockspace ls = the volume UUID. */
int vmfs_locking_dlm_init(struct vmfs_locking *lk, const char *ls, vmfs_lk_blocking_cb cb,
			  void *arg) __attribute__((warn_unused_result));

void vmfs_locking_fini(struct vmfs_locking *lk);

#endif
