/* fuse_ops.h — the FUSE low-level operations of vmfs-mount. */
#ifndef VMFS_FS_FUSE_OPS_H
#define VMFS_FS_FUSE_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "locking.h"
#include "openlock.h"
#include "plock.h"
#include "slot.h"
#include "vol.h"
#include "wb.h"

/* Extended attributes with a meaning to vmfs-mount (documented in
 * vmfs-mount(8)):
 *   user.vmfs.multiwriter = "1"   opt the file into multi-writer open locks
 *   trusted.vmfs.incoming = VM    (root, destination of a live migration)
 *                                 queue this host's claim on the file's open
 *                                 lock for VM; removing it withdraws the claim
 *   trusted.vmfs.return = VM      (root, source of a live migration) queue
 *                                 the return claim of the file open here
 *                                 (openlock_return_arm); read: its state
 *   trusted.vmfs.id (read only)   "<volume UUID>/i<ino>": the file's identity
 *                                 on every host, also its open lock's name */
#define VMFS_XATTR_MULTIWRITER "user.vmfs.multiwriter"
#define VMFS_XATTR_ID "trusted.vmfs.id"
#define VMFS_XATTR_INCOMING "trusted.vmfs.incoming"
#define VMFS_XATTR_RETURN "trusted.vmfs.return"

/* An inode the kernel knows about.  Refcounted by lookups (nlookup, FUSE
 * forget) and opens (nopen); freed from the table when both reach 0, and
 * its disk inode freed then too if it was unlinked (nlink 0). */
struct vnode {
	uint64_t ino;		/* disk inode address; immutable */
	uint64_t nlookup;	/* protected by fsctx.vmu */
	uint32_t nopen;		/* protected by fsctx.vmu */
	pthread_rwlock_t rw;	/* data: shared for read/aligned overwrite, exclusive
				 * for allocating writes, truncate, fallocate */
	atomic_int aio;		/* READs/WRITEs whose disk I/O is in flight without
				 * rw (answered on completion, fuse_ops.c op_read);
				 * exclusive holders of rw wait for 0 (vnode_wrlock) */
	atomic_bool unstamped;	/* overwritten since mtime was last stamped (file.c
				 * MTIME_LAZY_NS): fsync and close stamp it */
	struct wb_file wb;	/* writes answered before their disk write
				 * completed (wb.h); also counted in aio */
	/* Read-ahead for a sequential reader (fuse_ops.c ra_start): the
	 * request after its last one, read while the answer to that one
	 * travels back.  Valid while wgen stays what it was at its start. */
	pthread_mutex_t ra_mu;
	pthread_cond_t ra_cond;
	struct readahead *ra;	/* protected by ra_mu */
	uint64_t ra_next;	/* where the last large read ended, under ra_mu */
	atomic_uint wgen;	/* bumped by every write and every block change */
	atomic_int writing;	/* WRITEs being served */
	atomic_int reading;	/* large READs being served */
	/* Allocating writes (fuse_ops.c write_fill): one at a time holds the
	 * locks and does every write queued behind it in the same pass. */
	pthread_mutex_t fq_mu;
	pthread_cond_t fq_cond;
	struct fill_wait *fq;	/* waiting, oldest first */
	bool fq_busy;		/* a write holds the turn */
	struct vnode *next;	/* hash chain, protected by fsctx.vmu */
};

/* The periodic commit's interval, seconds (-o commit=S).  Every commit
 * starts with a device cache flush (journal invariant 2: the data the
 * changes map is durable first), and under sequential allocating writes
 * that flush took 0.2-0.6 s here (strace -T, a virtual disk), during which
 * the disk serves the writes slowly.  5 s is ext4's default; fsync and
 * fdatasync still commit at once, another host's lock demand commits what
 * it covers, and a full quarter of the journal commits early. */
#define FSCTX_COMMIT_S 5

struct fsctx {
	struct vol *v;
	struct vmfs_locking lk;
	struct hb_thread hb;
	double timeout;			/* entry/attr cache, seconds */
	pthread_mutex_t vmu;		/* vnode table; taken after vol.mu, never before */
	struct vnode **vt;
	size_t vsize;
	/* periodic commit: every commit_s seconds (FSCTX_COMMIT_S, -o commit) */
	unsigned commit_s;
	pthread_t committer;
	pthread_mutex_t cmu;
	pthread_cond_t ccond;
	bool cstop, crunning;
	/* cluster mode (cluster.c) */
	char ls[VMFS_UUID_STR_LEN];	/* lockspace = volume UUID */
	struct openlock_tab *ol;	/* per-file open locks, NULL single-host */
	struct plock_tab *pl;		/* POSIX locks, NULL single-host */
	atomic_bool lost;		/* a cached lock was lost: fenced for good */
	struct vmfs_lkh slot_lk[VMFS_MAX_HOSTS]; /* s<n> held: ours + being recovered */
	pthread_t rec_tid;		/* recovery worker */
	pthread_mutex_t rmu;
	pthread_cond_t rcond;
	uint32_t rq[16];		/* nodes to recover, protected by rmu */
	int nrq;
	bool rstop, rrunning;
	/* F_SETLKW and flock waits, each on its own thread (fuse_ops.c
	 * lock_wait_start), listed so that unmount can interrupt them */
	pthread_mutex_t wmu;
	pthread_cond_t wcond;
	struct lock_wait *waits;
};

/* FUSE worker threads (mount.c) and the kernel's limit on asynchronous
 * requests in flight (op_init): a little above the workers, so a worker
 * that finishes finds the next request already queued. */
#define VMFS_FUSE_WORKERS 16
#define VMFS_FUSE_MAX_BACKGROUND (VMFS_FUSE_WORKERS * 2)

/* READs and WRITEs up to this size are answered from the disk completion
 * (fuse_ops.c op_read), and the worker pool does not expect them to block
 * (fuse_loop.c).  Only small requests: for them the per-request cost is
 * what counts.  Larger writes stay synchronous because their data goes to
 * the disk from the worker's receive buffer without a copy (fuse_loop.h),
 * which an asynchronous write could not do (the worker reuses that
 * buffer); larger reads because answering them from the reaper cost more
 * CPU per request than from the worker (1 MiB QD1: ~600 against ~450 us,
 * and 25% less throughput), whatever the reason (cache, allocator
 * arenas). */
#define VMFS_AIO_MAX (64u << 10)

extern const struct fuse_lowlevel_ops vmfs_fuse_ops;

int fsctx_init(struct fsctx *c, struct vol *v) __attribute__((warn_unused_result));
int fsctx_start_committer(struct fsctx *c) __attribute__((warn_unused_result));
void fsctx_stop_committer(struct fsctx *c);
void fsctx_fini(struct fsctx *c);
/* Interrupt every F_SETLKW or flock still waiting and wait until each has
 * answered: before the session and the lock table go. */
void fsctx_end_lock_waits(struct fsctx *c);

#endif
