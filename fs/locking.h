/* locking.h — cluster locks as the filesystem sees them.
 *
 * The mount takes a cluster lock on every resource before touching its
 * metadata (DESIGN.md decision 2).  Resources, named inside the lockspace
 * of the volume (its UUID, lowercase):
 *
 *   "m<ino>"   an inode's metadata: attributes, extent map, directory
 *              contents (PR to read, EX to change)
 *   "a<rg>"    a resource group: its header and bitmap and the headers of
 *              the meta chunks inside it (EX to allocate or free there;
 *              alloc.h says how an operation finds which groups it needs;
 *              creates and deletes of files without blocks use this
 *              host's spare mblks instead, spare.h)
 *   "s<slot>"  a host slot: heartbeat, journal, orphan list (EX by the
 *              owner for the whole mount; survivors recover a dead owner's
 *              slot while the lock manager still holds its lock for it).
 *              Never kept cached: released at once, so a mounting host
 *              probing for a free slot is not refused by an idle lock.
 *   "r"        renames across directories (EX): is_ancestor() walks
 *              parent pointers that only such renames change
 *
 * (Per-file open locks "i<ino>" and POSIX locks are separate: openlock.h,
 * plock.h.)
 *
 * Locks are cached: vmfs_unlock() only ends the use; the lock stays with
 * this host until another host asks for a conflicting mode.  Then the
 * backend calls the blocking callback, which commits the running
 * transaction, checkpoints it, marks the journal clean, and drops the
 * clean cached metadata blocks of the kind that lock covers (inode locks:
 * every inode, extent and directory block; "a<N>": that group's header
 * and the chunk headers in its blocks; cluster.c covered_types()), so
 * whatever another host does next
 * starts from the disk.  The rule that must hold: a cached block was read
 * while a lock covering it was held, and that lock has not been released
 * since.  Code that reads a block under no covering lock drops it itself.
 * The group locks have a minimum hold time (locking_dlm.c).
 *
 * Ordering rule (deadlock freedom): every cluster lock an operation needs
 * is taken BEFORE vol.mu and before any vnode rwlock, never while holding
 * them; the blocking callback takes vol.mu, so a thread that waited for a
 * cluster lock under vol.mu could wait for itself across hosts.  Several
 * inode locks are taken in ascending inode order; an operation that finds
 * its inodes by name (lookup, unlink, rename) looks them up first, locks
 * the set in order, and checks the names again (retrying if they moved).
 * Canonical order: "r", inode locks ascending, group locks ascending,
 * slot locks.  Slot locks are also held across other lock sets (a host's
 * own for its whole mount, a dead host's during its recovery): that is
 * safe because nobody waits for a slot lock while holding another lock.
 */
#ifndef VMFS_FS_LOCKING_H
#define VMFS_FS_LOCKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The VMS/DLM six modes, numbered as in the lock manager. */
enum vmfs_lk_mode { VMFS_LK_NL = 0, VMFS_LK_CR, VMFS_LK_CW, VMFS_LK_PR, VMFS_LK_PW, VMFS_LK_EX };
enum vmfs_lk_kind { VMFS_LK_INODE = 1, VMFS_LK_ALLOC = 2, VMFS_LK_SLOT = 3, VMFS_LK_RENAME = 4 };
#define VMFS_LK_TRY 0x1		/* fail with -EAGAIN instead of waiting */

struct vmfs_dlm;

/* A use of a lock, from vmfs_lock() to vmfs_unlock(). */
struct vmfs_lkh {
	enum vmfs_lk_kind kind;
	uint64_t id;
	int mode;
	uint64_t epoch;
	bool held;
	_Alignas(8) char cookie[96];	/* backend state (the lock manager's lksb) */
};

/* Called by the backend when another host wants a lock we hold idle in a
 * mode that conflicts: make the disk the only copy (commit, checkpoint,
 * journal clean) and forget cached metadata.  Returns 0, or a negative
 * errno to keep the lock for now (retried).  Runs on a backend thread
 * without vol.mu held. */
typedef int (*vmfs_lk_blocking_cb)(void *arg, enum vmfs_lk_kind kind, uint64_t id);

struct vmfs_lockops {
	const char *name;
	int (*lock)(void *be, struct vmfs_lkh *h, unsigned flags);
	void (*unlock)(void *be, struct vmfs_lkh *h);
	void (*fini)(void *be);
};

struct vmfs_locking {
	const struct vmfs_lockops *ops;
	void *be;			/* backend state */
	vmfs_lk_blocking_cb blocking;
	void *blocking_arg;
	bool cluster;			/* several hosts may mount the volume */
};

/* Single-host backend: grants everything (the mount refuses while another
 * host's heartbeat is live). */
int vmfs_locking_single_init(struct vmfs_locking *lk, vmfs_lk_blocking_cb cb, void *arg)
	__attribute__((warn_unused_result));
/* Lock-manager backend (locking_dlm.c): lockspace ls = the volume UUID.
 * The hooks run on the backend's event thread (lease, lost, recover must
 * not block: hand work to another thread). */
struct vmfs_lk_hooks {
	/* this host's lease (decision 3): 1 valid, 0 lapsed */
	void (*lease)(void *arg, int valid);
	/* a cached lock was lost (purged after we were fenced, or reset):
	 * cached metadata may be another host's already; the mount must stop */
	void (*lost)(void *arg);
	/* recovery agent: replay node's host slot(s), then call
	 * vmfs_locking_recovery_done() */
	void (*recover)(void *arg, uint32_t nodeid);
};
int vmfs_locking_dlm_init(struct vmfs_locking *lk, const char *ls, vmfs_lk_blocking_cb cb,
			  const struct vmfs_lk_hooks *hooks, void *arg)
	__attribute__((warn_unused_result));
int vmfs_locking_recovery_done(struct vmfs_locking *lk, uint32_t nodeid);
/* The backend's lock-manager handle (NULL for single-host): recovery and
 * inspection share it. */
struct vmfs_dlm *vmfs_locking_dlm_handle(struct vmfs_locking *lk);

/* 0, -EAGAIN (VMFS_LK_TRY and another host holds it), -EIO (no lease or
 * lock manager gone), -ENOMEM. */
static inline int vmfs_lock(struct vmfs_locking *lk, enum vmfs_lk_kind kind, uint64_t id,
			    enum vmfs_lk_mode mode, unsigned flags, struct vmfs_lkh *h)
{
	h->kind = kind;
	h->id = id;
	h->mode = (int)mode;
	h->held = false;
	return lk->ops->lock(lk->be, h, flags);
}

static inline void vmfs_unlock(struct vmfs_locking *lk, struct vmfs_lkh *h)
{
	if (h->held)
		lk->ops->unlock(lk->be, h);
	h->held = false;
}

/* "m42", "a7", "s3", "r" */
void vmfs_lk_resname(enum vmfs_lk_kind kind, uint64_t id, char *buf, size_t len);
int vmfs_lk_parse(const char *res, enum vmfs_lk_kind *kind, uint64_t *id);

void vmfs_locking_fini(struct vmfs_locking *lk);

#endif
