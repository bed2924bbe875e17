/* vmfs/dlm.h — client API of the vmfs distributed lock manager (libvmfsdlm).
 *
 * A process connects to the vmfs-dlmd of its host over libqb IPC and takes
 * locks on named resources inside named lockspaces.  Every lock operation is
 * one agreed-order message through corosync CPG, applied identically by every
 * host's daemon, so any host can show the whole cluster's lock table.
 *
 * Modes are the VMS/Linux DLM six with the usual compatibility matrix:
 *
 *          NL  CR  CW  PR  PW  EX
 *      NL   y   y   y   y   y   y
 *      CR   y   y   y   y   y   n
 *      CW   y   y   y   n   n   n
 *      PR   y   y   n   y   n   n
 *      PW   y   y   n   n   n   n
 *      EX   y   n   n   n   n   n
 *
 * Every grant (and every TRANSFER) increments a per-resource counter; the
 * value at the time of a grant is the lock's *epoch*, the fencing token that
 * storage writes carry (DESIGN.md decision 4).
 *
 * Threads: a handle may be used from several threads at once; calls are
 * serialised inside the library.  Callbacks run from vmfs_dlm_dispatch() or
 * from inside a synchronous call of the same handle, never concurrently with
 * each other.  A callback may issue asynchronous calls but must not block.
 *
 * Errors: functions return 0 or a negative errno, or one of the VMFS_DLM_E*
 * codes below (distinct negative range).
 */
#ifndef VMFS_DLM_H
#define VMFS_DLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMFS_DLM_NAME_MAX 64	/* lockspace and resource names, bytes */
#define VMFS_DLM_TAG_MAX 63	/* free-form holder tag (e.g. a VM name) */
#define VMFS_DLM_PROG_MAX 31	/* program name recorded with each lock */
#define VMFS_DLM_LVB_LEN 32	/* lock value block */

enum vmfs_dlm_mode {
	VMFS_DLM_NL = 0,
	VMFS_DLM_CR = 1,
	VMFS_DLM_CW = 2,
	VMFS_DLM_PR = 3,
	VMFS_DLM_PW = 4,
	VMFS_DLM_EX = 5,
};

/* Request flags. */
#define VMFS_DLM_NOQUEUE	0x0001u	/* refuse at once (VMFS_DLM_EAGAIN) if not grantable */
#define VMFS_DLM_PERSISTENT	0x0002u	/* survive the client: becomes an orphan */
#define VMFS_DLM_ADOPT		0x0004u	/* take over an orphan of this host */
#define VMFS_DLM_VALBLK		0x0008u	/* release/down-convert: write the LVB */
#define VMFS_DLM_RECOVERY	0x0010u	/* internal use by recovery agents */

/* Domain errors (negative, outside the errno range). */
#define VMFS_DLM_EBASE		(-4000)
#define VMFS_DLM_EAGAIN		(VMFS_DLM_EBASE - 1)	/* NOQUEUE and not grantable */
#define VMFS_DLM_ETIMEDOUT	(VMFS_DLM_EBASE - 2)	/* client-side timeout, request cancelled */
#define VMFS_DLM_ECANCELED	(VMFS_DLM_EBASE - 3)	/* cancelled before grant */
#define VMFS_DLM_ESTALE		(VMFS_DLM_EBASE - 4)	/* epoch no longer current (TRANSFER) */
#define VMFS_DLM_ENOLOCK	(VMFS_DLM_EBASE - 5)	/* no such lock / not owned by caller */
#define VMFS_DLM_ENOQUORUM	(VMFS_DLM_EBASE - 6)	/* this host is not in a quorate partition */
#define VMFS_DLM_EDAEMON	(VMFS_DLM_EBASE - 7)	/* connection to vmfs-dlmd lost */
#define VMFS_DLM_EPROTO		(VMFS_DLM_EBASE - 8)	/* malformed message */
#define VMFS_DLM_EINCOMPAT	(VMFS_DLM_EBASE - 9)	/* TRANSFER target mode conflicts */
#define VMFS_DLM_ELOST		(VMFS_DLM_EBASE - 10)	/* lock lost (transferred away, purged) */

/* Lock status block: filled in on grant. */
struct vmfs_dlm_lksb {
	uint64_t lkid;		/* cluster-wide lock id */
	uint64_t epoch;		/* fencing token of this grant */
	int status;		/* 0, or the error that ended the request */
	int mode;		/* granted mode */
	int lvb_valid;		/* 0 if the last PW/EX holder died without writing */
	char lvb[VMFS_DLM_LVB_LEN];
};

/* Why a lock went away without the holder releasing it. */
enum vmfs_dlm_lost_reason {
	VMFS_DLM_LOST_TRANSFERRED = 1,	/* moved to another holder by TRANSFER */
	VMFS_DLM_LOST_PURGED = 2,	/* this host was fenced; lock purged */
	VMFS_DLM_LOST_RESET = 3,	/* cluster state replaced after a partition */
};

typedef struct vmfs_dlm vmfs_dlm_t;

struct vmfs_dlm_callbacks {
	/* An asynchronous request/convert completed (granted or refused:
	 * lksb->status says which).  arg is the request's own argument. */
	void (*completion)(void *arg, const struct vmfs_dlm_lksb *lksb);
	/* Lock lkid blocks a request for mode `wanted` by someone else. */
	void (*blocking)(void *ctx, uint64_t lkid, int wanted);
	/* Lock lkid is gone without a release by us. */
	void (*lost)(void *ctx, uint64_t lkid, int reason);
	/* This host's lease: 1 = in the quorate partition, 0 = lost. */
	void (*lease)(void *ctx, int valid);
	/* Recovery agents only: replay node's state in lockspace ls, then
	 * call vmfs_dlm_recovery_done(). */
	void (*recover)(void *ctx, const char *ls, uint32_t nodeid);
};

/* Connect to the local vmfs-dlmd.  program is recorded with every lock
 * (truncated to VMFS_DLM_PROG_MAX).  The IPC service name is
 * $VMFS_DLM_IPC_NAME or "vmfs-dlm". */
int vmfs_dlm_open(const char *program, vmfs_dlm_t **out);
void vmfs_dlm_close(vmfs_dlm_t *h);
void vmfs_dlm_set_callbacks(vmfs_dlm_t *h, const struct vmfs_dlm_callbacks *cb, void *ctx);

/* Pollable fd: readable when events are pending; then call dispatch. */
int vmfs_dlm_fd(vmfs_dlm_t *h);
int vmfs_dlm_dispatch(vmfs_dlm_t *h);

/* This host's identity as the daemon knows it. */
int vmfs_dlm_local_node(vmfs_dlm_t *h, uint32_t *nodeid, char name[VMFS_DLM_NAME_MAX + 1]);

/* Synchronous calls.  timeout_ms < 0 waits forever; on timeout the request
 * is cancelled and VMFS_DLM_ETIMEDOUT returned.  tag may be NULL. */
int vmfs_dlm_lock(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
		  unsigned flags, const char *tag, int timeout_ms,
		  struct vmfs_dlm_lksb *lksb);
int vmfs_dlm_convert(vmfs_dlm_t *h, struct vmfs_dlm_lksb *lksb, int mode,
		     unsigned flags, int timeout_ms);
/* Release; with VMFS_DLM_VALBLK the lksb's lvb is written (PW/EX only). */
int vmfs_dlm_unlock(vmfs_dlm_t *h, struct vmfs_dlm_lksb *lksb, unsigned flags);
/* Move granted lock `from` (ours or another host's, with epoch
 * `from_epoch`) to the pending request `to`; fails with VMFS_DLM_ESTALE
 * when from's epoch is no longer current. */
int vmfs_dlm_transfer(vmfs_dlm_t *h, uint64_t from, uint64_t from_epoch, uint64_t to);

/* Several transfers in ONE lock-manager message, all or nothing (e.g. every
 * disk lock of a migrating VM): every triple is checked with the rules of
 * vmfs_dlm_transfer() before anything changes, and only if all pass are
 * all applied in the same step; otherwise the first failure is returned
 * (VMFS_DLM_ESTALE, VMFS_DLM_ENOLOCK, VMFS_DLM_EINCOMPAT,
 * VMFS_DLM_ENOQUORUM; -EINVAL if a lock is named twice) and nothing moved.
 * n is 1 .. VMFS_DLM_TRANSFER_SET_MAX.  Since VMFS_DLM_3. */
#define VMFS_DLM_TRANSFER_SET_MAX 16
struct vmfs_dlm_transfer {
	uint64_t from;		/* granted lock */
	uint64_t from_epoch;	/* its current epoch (the fencing token) */
	uint64_t to;		/* pending request on the same resource */
};
int vmfs_dlm_transfer_set(vmfs_dlm_t *h, const struct vmfs_dlm_transfer *t, size_t n);

/* Ring warm-up: make the local vmfs-dlmd keep corosync's totem ring busy
 * for up to ms milliseconds (1 .. VMFS_DLM_WARM_MAX_MS; 0 stops it), so
 * that this handle's next lock request goes out at once instead of paying
 * the idle ring's token hold.  When the ring has been quiet for a few ms,
 * the representative holds the token (totem.hold); a request then waits
 * for a token-hold-cancel and a token rotation before it is even sent, so
 * a handoff costs 1.5-2 ms instead of about 0.5.  Call it a little before
 * a latency-critical request whose moment you know (a live migration calls
 * it when it pauses the guest, then sends TRANSFER_SET 10-30 ms later).
 *
 * The warm-up ends at the deadline, when the daemon applies the first
 * request of this handle made after the call (lock, convert, unlock,
 * transfer...; not a late grant of an older one), when the
 * handle is closed, or on vmfs_dlm_warm(h, 0); a new call replaces the
 * deadline.  While it lasts the daemon multicasts small NOOP messages that
 * every daemon validates and ignores (no lock changes): a few thousand per
 * second at most, costing some CPU on every host.  Returns once the daemon
 * has accepted it and handed its first NOOP to corosync (0.2-0.9 ms on a
 * loaded host; no event follows): 0, or
 * -EINVAL (ms out of range), VMFS_DLM_ENOQUORUM (not in the cluster),
 * VMFS_DLM_EDAEMON.  Since VMFS_DLM_4. */
#define VMFS_DLM_WARM_MAX_MS 1000
int vmfs_dlm_warm(vmfs_dlm_t *h, unsigned ms);

/* Asynchronous calls: the request is queued in the cluster; *lkid is set
 * when the daemon has applied it (0 if not yet known); completion() is
 * called with arg when it is granted or refused. */
int vmfs_dlm_lock_async(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
			unsigned flags, const char *tag, void *arg, uint64_t *lkid);
int vmfs_dlm_convert_async(vmfs_dlm_t *h, uint64_t lkid, int mode, unsigned flags,
			   const char *lvb, void *arg);
int vmfs_dlm_cancel(vmfs_dlm_t *h, uint64_t lkid);

/* Recovery hooks: register this client as the recovery agent of ls (the
 * filesystem replays a dead host's journal), and report a node done. */
int vmfs_dlm_recovery_register(vmfs_dlm_t *h, const char *ls);
int vmfs_dlm_recovery_done(vmfs_dlm_t *h, const char *ls, uint32_t nodeid);

/* Inspection: what = "status", "locks" or "log"; arg = a lockspace or
 * NULL.  *json receives a malloc'ed JSON document (text for "log"). */
int vmfs_dlm_query(vmfs_dlm_t *h, const char *what, const char *arg, char **json);

/* Cached locks (DESIGN.md decision 2, GFS2 glock style).
 *
 * vmfs_dlm_cache_get() takes a *use* of the handle's cached lock on
 * (ls, res): served at once, with no message, when the lock is cached at
 * a mode covering `mode` (EX covers all; PW: PW PR CR NL; PR: PR CR NL;
 * CW: CW CR NL; CR: CR NL) and `mode` is compatible with the handle's
 * other uses of it; converted up when cached at a weaker mode; taken anew
 * otherwise.  A use that conflicts with another use of the same handle
 * waits for it, so the cache also excludes the process's own threads.
 * flags: VMFS_DLM_NOQUEUE (VMFS_DLM_EAGAIN at once instead of any wait:
 * for another host, for a conflicting use of this handle, or for the
 * lock to finish changing), VMFS_DLM_VALBLK (a PW/EX use may change
 * lksb->lvb; it is written when the lock is released or demoted).
 * lksb->mode is the mode of the use (the lock may be held stronger).
 *
 * vmfs_dlm_cache_put() ends the use; the lock stays granted and idle.
 * When another host wants a conflicting mode, the library calls the
 * flush function on an idle lock (or after its last put), then releases
 * it or down-converts it to the strongest of PW, PR, CW that the held mode
 * covers and the wanted mode allows (EX or PW held, PR wanted: PR).  The
 * blocking callback is not called for cached locks; lost is (a lost lock,
 * or every lock when the daemon is gone, leaves the cache unflushed: its
 * data may be another host's already).  flush runs like a callback (never
 * concurrently with one; no synchronous lock call); returning a negative
 * value keeps the lock and retries later.
 * Blocking events are only seen while someone reads the handle's events
 * (vmfs_dlm_dispatch() or a synchronous call).  Never pass a cached lksb
 * to vmfs_dlm_unlock() or vmfs_dlm_convert(). */
struct vmfs_dlm_cache_stats {
	uint64_t hits;			/* served with no message */
	uint64_t misses;		/* new lock taken */
	uint64_t converts;		/* cached lock converted up */
	uint64_t releases_on_blocking;	/* released for another host */
	uint64_t downconverts_on_blocking;	/* demoted for another host */
	uint64_t drops;			/* released by cache_drop*() */
	uint64_t flush_errors;		/* flush returned an error */
	uint64_t lost;			/* cached locks lost */
	uint64_t cached;		/* locks in the cache now */
	uint64_t reserved[7];		/* zero; room for more without an ABI break */
};

int vmfs_dlm_cache_get(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
		       unsigned flags, const char *tag, int timeout_ms,
		       struct vmfs_dlm_lksb *lksb);
int vmfs_dlm_cache_put(vmfs_dlm_t *h, struct vmfs_dlm_lksb *lksb);
void vmfs_dlm_cache_set_flush(vmfs_dlm_t *h,
			      int (*flush)(void *ctx, const char *ls, const char *res,
					   int held_mode, int wanted_mode),
			      void *ctx);
/* Release idle cached locks now (flush first, wanted_mode EX): 0,
 * VMFS_DLM_ENOLOCK (not cached), -EBUSY (in use), or flush's error. */
int vmfs_dlm_cache_drop(vmfs_dlm_t *h, const char *ls, const char *res);
int vmfs_dlm_cache_drop_all(vmfs_dlm_t *h);
int vmfs_dlm_cache_stats(vmfs_dlm_t *h, struct vmfs_dlm_cache_stats *st);

const char *vmfs_dlm_strerror(int err);
const char *vmfs_dlm_mode_name(int mode);
int vmfs_dlm_mode_parse(const char *name);	/* -1 if unknown */
int vmfs_dlm_modes_compatible(int a, int b);

#ifdef __cplusplus
}
#endif
#endif
