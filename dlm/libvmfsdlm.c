/* libvmfsdlm.c — client library of vmfs-dlmd (include/vmfs/dlm.h).
 *
 * One handle = one libqb IPC connection to the local daemon.  Requests go
 * out with qb_ipcc_sendv_recv() and get an immediate response (accepted or
 * not); outcomes come later as events carrying our req_id (dlm/ipc_proto.h):
 *
 *   request        events for its req_id
 *   LOCK           [QUEUED{lkid}] then GRANTED{lkid,epoch,mode,lvb} | REFUSED{err}
 *   CONVERT        [QUEUED] then GRANTED | REFUSED{err}
 *   UNLOCK, CANCEL, TRANSFER, TRANSFER_SET, RECOVERY_REG, RECOVERY_DONE
 *                  DONE{err}
 *   (none)         BLOCKING, LOST, RECOVER, LEASE: host- or lock-wide news
 *
 * A cancelled LOCK/CONVERT ends with REFUSED{VMFS_DLM_ECANCELED} for its own
 * req_id (and a DONE for the CANCEL's, which we do not wait for).
 *
 * Threads.  Everything in struct vmfs_dlm is protected by h->lock, and
 * every qb_ipcc_* call is made with it held (libqb connections are not
 * thread-safe).  Waiting is the only thing done without the lock: a thread
 * that must wait for an event takes the *reader* role (at most one thread),
 * drops the lock and poll()s the IPC fd plus h->wake_fd; the others sleep on
 * h->cond.  Whoever holds the lock may drain events (the reader after poll,
 * vmfs_dlm_dispatch() at any time); a drain that completes somebody's
 * request broadcasts h->cond and kicks wake_fd so a reader stuck in poll()
 * looks again.  When the reader gives up its role it broadcasts too, so one
 * of the sleepers takes it over.
 *
 * Callbacks (completion, blocking, lost, lease, recover) are never run
 * while the lock is held: draining only queues them (h->cb_head, FIFO), and
 * deliver_callbacks() runs them with the lock dropped.  h->delivering makes
 * sure one thread at a time delivers, in queue order, so callbacks never
 * run concurrently with each other.  A callback may call the asynchronous
 * functions (they only wait for the daemon's immediate response); a call
 * that would wait for an event from inside a callback of the same handle
 * would wait for itself, so it is refused with -EDEADLK (lock, convert) or
 * returns once the daemon accepted the request (unlock, transfer, recovery
 * calls): see tls_cb_handle.
 *
 * Connection loss is sticky (h->dead): every pending request completes
 * with VMFS_DLM_EDAEMON (asynchronous ones through completion()), every
 * later call returns it, and lease(0) is queued once.
 *
 * The lock cache (vmfs_dlm_cache_*, DESIGN.md decision 2) lives in the
 * same handle under the same lock; its state machine is described above
 * its code ("lock cache" below).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <qb/qbipcc.h>

#include "vmfs/dlm.h"
#include "ipc_proto.h"

/* How long the daemon may take to answer a request (not an outcome: the
 * immediate acceptance).  A missed response would desynchronise the
 * request/response channel, so passing it counts as losing the daemon. */
#define RESPONSE_TIMEOUT_MS 30000

/* How long to wait for a cancel's outcome before sending it again. */
#define CANCEL_RETRY_MS 1000

/* Events handled per drain, so a flood cannot starve the callers. */
#define DRAIN_MAX 256

/* A request whose outcome somebody waits for.  Synchronous ones live on
 * the caller's stack, asynchronous ones are malloc'ed and freed when they
 * complete.  All fields are protected by h->lock. */
struct pending {
	struct pending *next;
	uint32_t req_id;
	int op;				/* VMFS_IPC_LOCK ... */
	bool async;
	bool done;			/* outcome in lksb.status */
	bool queued;			/* QUEUED seen: lksb.lkid valid */
	bool wake_on_queued;		/* the waiter needs the lkid (cancel) */
	struct vmfs_dlm_lksb lksb;
	void *arg;			/* async: completion() argument */
	uint64_t *lkid_out;		/* async lock: caller's lkid, may be NULL */
	/* A request of the lock cache for this entry: the entry learns the
	 * lkid and granted mode as soon as the events arrive (so a BLOCKING
	 * right behind a GRANTED finds it); async ones end in
	 * cache_op_done() instead of completion() and hold a reference of
	 * the entry (a synchronous one's caller holds it). */
	struct cache_entry *ce;
};

enum cb_type {
	CB_COMPLETION = 1,
	CB_BLOCKING,
	CB_LOST,
	CB_LEASE,
	CB_RECOVER,
	CB_CACHE_FLUSH,			/* lock cache: flush + release/demote */
};

/* One callback waiting to be run (FIFO, protected by h->lock). */
struct cb_event {
	struct cb_event *next;
	enum cb_type type;
	void *arg;			/* COMPLETION */
	struct vmfs_dlm_lksb lksb;	/* COMPLETION */
	uint64_t lkid;			/* BLOCKING, LOST */
	int value;			/* BLOCKING: wanted; LOST: reason; LEASE: valid */
	uint32_t nodeid;		/* RECOVER */
	char ls[VMFS_DLM_NAME_MAX + 1];	/* RECOVER */
	struct cache_entry *ce;		/* CACHE_FLUSH; holds a reference */
};

struct vmfs_dlm {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* a pending completed / reader role free */
	qb_ipcc_connection_t *conn;	/* under lock; NULL once closed */
	int ipc_fd;			/* constant after open */
	int wake_fd;			/* eventfd; constant after open */
	char *buf;			/* responses and events, VMFS_IPC_MAX_MSG; under lock */
	uint32_t next_req;		/* under lock */
	uint32_t nodeid;		/* from HELLO; constant after open */
	uint32_t client_id;
	char name[VMFS_DLM_NAME_MAX + 1];
	bool dead;			/* connection lost; sticky */
	bool reader;			/* a thread is in poll() for events */
	bool delivering;		/* a thread is running callbacks */
	int lease;			/* last lease queued: -1 unknown, 0, 1 */
	struct pending *pending;	/* requests with an outcome to come */
	struct cb_event *cb_head;
	struct cb_event **cb_tail;
	struct vmfs_dlm_callbacks cb;	/* under lock; copied before each call */
	void *ctx;
	/* Lock cache, all under lock. */
	struct cache_entry **by_name;	/* hash of (ls, res), by_size buckets */
	/* some entry's flush or release failed and is to be tried again
	 * (cache_retry_failed), and when that was last done */
	bool cache_retry;
	uint64_t cache_retry_ms;
	struct cache_entry **by_lkid;	/* hash of lkid (entries whose lkid is known) */
	size_t by_size;			/* power of two, 0 until the first entry */
	size_t cached;			/* entries in the hashes */
	struct cache_entry *detached;	/* lost/released, still referenced */
	uint64_t cache_gen;		/* bumped on every entry change (waiters) */
	uint64_t cache_next_id;
	unsigned drop_seq;		/* vmfs_dlm_cache_drop_all() rounds */
	int (*flush)(void *ctx, const char *ls, const char *res, int held, int wanted);
	void *flush_ctx;
	struct vmfs_dlm_cache_stats stats;
};

/* The handle whose callback this thread is running, if any. */
static __thread vmfs_dlm_t *tls_cb_handle;

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool str_fits(const char *s, size_t max)
{
	return s && strnlen(s, max + 1) <= max;
}

/* Wake a reader sleeping in poll() and the sleepers on h->cond. */
static void notify(vmfs_dlm_t *h)
{
	uint64_t one = 1;

	pthread_cond_broadcast(&h->cond);
	if (h->reader && write(h->wake_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the reader will wake. */
	}
}

static void cb_queue(vmfs_dlm_t *h, struct cb_event *e)
{
	e->next = NULL;
	*h->cb_tail = e;
	h->cb_tail = &e->next;
}

/* Queue a callback built from the given fields; on allocation failure the
 * callback is dropped (there is no one to report it to). */
static void cb_queue_new(vmfs_dlm_t *h, enum cb_type type, uint64_t lkid, int value,
			 uint32_t nodeid, const char *ls)
{
	struct cb_event *e = calloc(1, sizeof(*e));

	if (!e)
		return;
	e->type = type;
	e->lkid = lkid;
	e->value = value;
	e->nodeid = nodeid;
	if (ls)
		snprintf(e->ls, sizeof(e->ls), "%s", ls);
	cb_queue(h, e);
}

static void pending_unlink(vmfs_dlm_t *h, struct pending *p)
{
	struct pending **pp;

	for (pp = &h->pending; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			p->next = NULL;
			return;
		}
	}
}

static struct pending *pending_find(vmfs_dlm_t *h, uint32_t req_id)
{
	struct pending *p;

	for (p = h->pending; p; p = p->next)
		if (p->req_id == req_id)
			return p;
	return NULL;
}

static void cache_op_done(vmfs_dlm_t *h, struct pending *p);

/* p has its outcome in p->lksb: take it off the list; an asynchronous
 * request becomes a completion callback (or, for the lock cache's own
 * requests, an update of its entry). */
static void pending_finish(vmfs_dlm_t *h, struct pending *p)
{
	struct cb_event *e;

	pending_unlink(h, p);
	p->done = true;
	if (!p->async)
		return;
	if (p->ce) {
		cache_op_done(h, p);
		free(p);
		return;
	}
	e = calloc(1, sizeof(*e));
	if (e) {
		e->type = CB_COMPLETION;
		e->arg = p->arg;
		e->lksb = p->lksb;
		cb_queue(h, e);
	}
	free(p);
}

static void cache_forget_all(vmfs_dlm_t *h);

/* The daemon is gone: fail everything that waits, once. */
static void conn_lost(vmfs_dlm_t *h)
{
	if (h->dead)
		return;
	h->dead = true;
	cache_forget_all(h);
	while (h->pending) {
		struct pending *p = h->pending;

		p->lksb.status = VMFS_DLM_EDAEMON;
		pending_finish(h, p);
	}
	if (h->lease != 0) {
		h->lease = 0;
		cb_queue_new(h, CB_LEASE, 0, 0, 0, NULL);
	}
	notify(h);
}

/* --- lock cache: state ---------------------------------------------------
 *
 * A cached lock is one cluster lock of this handle on (ls, res), kept
 * granted after its users put it back, until another host's request
 * conflicts with it (BLOCKING) or the owner drops it.  Users of the handle
 * take *uses* of it: a use of mode m needs the granted mode to cover m and
 * m to be compatible with every other use (holds[]), so the cache is also
 * a local lock between the threads of the process.
 *
 * States of an entry (at most one request of the cache is in flight per
 * entry; the state says which):
 *
 *   ACQUIRING    a getter's LOCK request is in flight
 *   GRANTED      granted at lksb.mode; holds[] count the uses
 *   CONVERTING   a getter's up-CONVERT is in flight (lksb.mode still held)
 *   FLUSH_QUEUED a release was decided; the flush job waits in the
 *                callback queue
 *   FLUSHING     flush() is running (with h->lock dropped)
 *   RELEASING    our UNLOCK is in flight (asynchronous)
 *   DEMOTING     our down-CONVERT is in flight (asynchronous)
 *   + detached   (flag) lost or released: out of the hashes, on
 *                h->detached until its last reference and use are gone
 *
 *   state \ event  get             put (last use)  BLOCKING(w)     LOST
 *   ACQUIRING      wait            -               demand|=w       detach
 *   GRANTED        hit | convert   if demand:      demand|=w; if   detach
 *                  | wait          FLUSH_QUEUED    idle: FLUSH_Q.
 *   CONVERTING     wait            -               demand|=w (*)   detach
 *   FLUSH_QUEUED.. wait            -               demand|=w       detach
 *   DEMOTING
 *
 *   outcome         ACQUIRING/CONVERTING -> GRANTED (use taken) or
 *                   error (entry removed / old mode kept);
 *                   flush job: FLUSH_QUEUED -> FLUSHING -> RELEASING |
 *                   DEMOTING, or GRANTED + flush_failed when flush() fails;
 *                   RELEASING -> removed; DEMOTING -> GRANTED (demand that
 *                   the new mode satisfies is cleared; the rest may queue
 *                   the next flush job at once).
 *   (*) a converter whose lock is demanded while nobody else uses it
 *       cancels its convert and lets the lock go: two hosts converting
 *       PR->EX would otherwise wait for each other for ever (the daemon
 *       sends BLOCKING to a converting lock only when it blocks the head
 *       of the convert queue).
 *
 * Invariants:
 *   I1  a hit happens only in GRANTED, with no unmet demand (unless the
 *       last flush failed, see below), the wanted mode covered by the
 *       granted mode and compatible with every use;
 *   I2  flush() runs from the callback queue only, so never concurrently
 *       with another callback, and only while the entry has no use (the
 *       FLUSHING state turns getters away);
 *   I3  the entry's memory lives while it is in a hash, or has a use, or
 *       a reference (an in-flight request or a queued flush job);
 *   I4  a demand the remote host waits for is never forgotten: it stays in
 *       `demand` until a mode that satisfies it is granted, or the lock is
 *       gone.  A failed flush keeps it; the release is tried again at the
 *       next last put, new BLOCKING or drop of the entry.
 * The daemon sends BLOCKING once per (lock, wanted mode) between grants,
 * so losing one would leave the other host waiting for ever (I4).
 */
enum cache_state {
	CS_ACQUIRING = 1,
	CS_GRANTED,
	CS_CONVERTING,
	CS_FLUSH_QUEUED,
	CS_FLUSHING,
	CS_RELEASING,
	CS_DEMOTING,
};

#define N_MODES (VMFS_DLM_EX + 1)
#define CACHE_MIN_BUCKETS 64
/* Internal result of a convert that gave way to a conversion deadlock. */
#define CACHE_YIELD 1

/* One cached lock.  Everything is protected by h->lock. */
struct cache_entry {
	struct cache_entry *name_next;	/* by_name chain, or h->detached */
	struct cache_entry *lkid_next;	/* by_lkid chain */
	uint64_t id;			/* unique per handle (waiters compare) */
	uint32_t hash;			/* of (ls, res) */
	enum cache_state state;
	bool detached;
	bool in_lkid;			/* in h->by_lkid */
	bool valblk;			/* a user asked for VMFS_DLM_VALBLK */
	bool lvb_dirty;			/* lksb.lvb changed by a PW/EX use, not written */
	bool flush_failed;		/* last flush (or release) failed: retry */
	bool drop;			/* the owner asked for a release */
	int flush_rc;			/* result of the failed attempt */
	unsigned drop_seq;		/* drop_all round that last queued it */
	unsigned demand;		/* bit per mode other hosts wait for */
	int holds[N_MODES];		/* uses per mode */
	int nholds;
	int refs;			/* in-flight requests + queued flush jobs */
	struct vmfs_dlm_lksb lksb;	/* lkid, epoch, granted mode, lvb */
	char ls[VMFS_DLM_NAME_MAX + 1];
	char res[VMFS_DLM_NAME_MAX + 1];
};

/* Does a lock granted at `held` cover a use of mode `want`?  Covering is
 * being at least as strong for every other mode: whatever conflicts with
 * want also conflicts with held. */
static bool mode_covers(int held, int want)
{
	for (int m = VMFS_DLM_NL; m <= VMFS_DLM_EX; m++)
		if (vmfs_dlm_modes_compatible(held, m) && !vmfs_dlm_modes_compatible(want, m))
			return false;
	return true;
}

/* The weakest mode covering both a and b (EX covers everything). */
static int mode_join(int a, int b)
{
	for (int m = VMFS_DLM_NL; m < VMFS_DLM_EX; m++)
		if (mode_covers(m, a) && mode_covers(m, b))
			return m;
	return VMFS_DLM_EX;
}

static bool compatible_with_all(int mode, unsigned mask)
{
	for (int m = VMFS_DLM_NL; m <= VMFS_DLM_EX; m++)
		if ((mask & (1u << m)) && !vmfs_dlm_modes_compatible(mode, m))
			return false;
	return true;
}

/* Keep only the demand that the granted mode still blocks. */
static void cache_trim_demand(struct cache_entry *e)
{
	for (int m = VMFS_DLM_NL; m <= VMFS_DLM_EX; m++)
		if (vmfs_dlm_modes_compatible(e->lksb.mode, m))
			e->demand &= ~(1u << m);
}

/* The mode passed to flush() as "wanted": the strongest one demanded. */
static int cache_wanted(const struct cache_entry *e)
{
	if (e->drop)
		return VMFS_DLM_EX;
	for (int m = VMFS_DLM_EX; m > VMFS_DLM_NL; m--)
		if (e->demand & (1u << m))
			return m;
	return VMFS_DLM_EX;
}

/* Mode to go down to for the demand, or -1 to release.  Only PW, PR and
 * CW are worth keeping: a CR or NL lock protects no cached data. */
static int cache_demote_target(int held, unsigned demand)
{
	static const int keep[] = { VMFS_DLM_PW, VMFS_DLM_PR, VMFS_DLM_CW };

	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		if (keep[i] != held && mode_covers(held, keep[i]) &&
		    compatible_with_all(keep[i], demand))
			return keep[i];
	return -1;
}

/* Can a new use of `mode` share the entry with the current uses? */
static bool cache_use_ok(const struct cache_entry *e, int mode)
{
	for (int m = VMFS_DLM_NL; m <= VMFS_DLM_EX; m++)
		if (e->holds[m] && !vmfs_dlm_modes_compatible(mode, m))
			return false;
	return true;
}

static uint32_t cache_hash(const char *ls, const char *res)
{
	uint32_t x = 2166136261u;	/* FNV-1a over "ls\0res" */

	for (; *ls; ls++)
		x = (x ^ (uint8_t)*ls) * 16777619u;
	x = (x ^ 0) * 16777619u;
	for (; *res; res++)
		x = (x ^ (uint8_t)*res) * 16777619u;
	return x;
}

static size_t lkid_bucket(const vmfs_dlm_t *h, uint64_t lkid)
{
	return (size_t)((lkid * 0x9e3779b97f4a7c15ull) >> 32) & (h->by_size - 1);
}

/* Someone may wait for an entry to change: wake them. */
static void cache_changed(vmfs_dlm_t *h)
{
	h->cache_gen++;
	notify(h);
}

static struct cache_entry *cache_find(vmfs_dlm_t *h, const char *ls, const char *res)
{
	uint32_t hash = cache_hash(ls, res);
	struct cache_entry *e;

	if (!h->by_size)
		return NULL;
	for (e = h->by_name[hash & (h->by_size - 1)]; e; e = e->name_next)
		if (e->hash == hash && strcmp(e->res, res) == 0 && strcmp(e->ls, ls) == 0)
			return e;
	return NULL;
}

static struct cache_entry *cache_find_lkid(vmfs_dlm_t *h, uint64_t lkid)
{
	struct cache_entry *e;

	if (!h->by_size || !lkid)
		return NULL;
	for (e = h->by_lkid[lkid_bucket(h, lkid)]; e; e = e->lkid_next)
		if (e->lksb.lkid == lkid)
			return e;
	return NULL;
}

/* Grow both hashes to nb buckets (a power of two).  On allocation failure
 * the old ones stay: longer chains, nothing lost. */
static void cache_rehash(vmfs_dlm_t *h, size_t nb)
{
	struct cache_entry **bn = calloc(nb, sizeof(*bn)), **bl = calloc(nb, sizeof(*bl));
	size_t old = h->by_size, i;

	if (!bn || !bl) {
		free(bn);
		free(bl);
		return;
	}
	h->by_size = nb;
	for (i = 0; i < old; i++) {
		while (h->by_name[i]) {
			struct cache_entry *e = h->by_name[i];

			h->by_name[i] = e->name_next;
			e->name_next = bn[e->hash & (nb - 1)];
			bn[e->hash & (nb - 1)] = e;
		}
		while (h->by_lkid[i]) {
			struct cache_entry *e = h->by_lkid[i];
			size_t b = lkid_bucket(h, e->lksb.lkid);

			h->by_lkid[i] = e->lkid_next;
			e->lkid_next = bl[b];
			bl[b] = e;
		}
	}
	free(h->by_name);
	free(h->by_lkid);
	h->by_name = bn;
	h->by_lkid = bl;
}

static struct cache_entry *cache_new(vmfs_dlm_t *h, const char *ls, const char *res)
{
	struct cache_entry *e;
	size_t b;

	if (h->cached >= 2 * h->by_size)
		cache_rehash(h, h->by_size ? 2 * h->by_size : CACHE_MIN_BUCKETS);
	if (!h->by_size)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->id = ++h->cache_next_id;
	e->hash = cache_hash(ls, res);
	e->state = CS_ACQUIRING;
	strcpy(e->ls, ls);
	strcpy(e->res, res);
	b = e->hash & (h->by_size - 1);
	e->name_next = h->by_name[b];
	h->by_name[b] = e;
	h->cached++;
	return e;
}

/* The lkid of e's lock became known. */
static void cache_set_lkid(vmfs_dlm_t *h, struct cache_entry *e, uint64_t lkid)
{
	size_t b;

	if (e->in_lkid || e->detached || !lkid)
		return;
	e->lksb.lkid = lkid;
	b = lkid_bucket(h, lkid);
	e->lkid_next = h->by_lkid[b];
	h->by_lkid[b] = e;
	e->in_lkid = true;
}

static void cache_free_if_unused(vmfs_dlm_t *h, struct cache_entry *e)
{
	struct cache_entry **pp;

	if (!e->detached || e->nholds || e->refs)
		return;
	for (pp = &h->detached; *pp; pp = &(*pp)->name_next) {
		if (*pp == e) {
			*pp = e->name_next;
			break;
		}
	}
	free(e);
}

/* Take e out of the hashes: its lock is gone (or going) and a later get
 * must take a new one.  Frees it unless it is still used or referenced. */
static void cache_detach(vmfs_dlm_t *h, struct cache_entry *e)
{
	struct cache_entry **pp;

	if (e->detached)
		return;
	for (pp = &h->by_name[e->hash & (h->by_size - 1)]; *pp; pp = &(*pp)->name_next) {
		if (*pp == e) {
			*pp = e->name_next;
			break;
		}
	}
	if (e->in_lkid) {
		for (pp = &h->by_lkid[lkid_bucket(h, e->lksb.lkid)]; *pp; pp = &(*pp)->lkid_next) {
			if (*pp == e) {
				*pp = e->lkid_next;
				break;
			}
		}
		e->in_lkid = false;
	}
	h->cached--;
	e->detached = true;
	e->name_next = h->detached;
	h->detached = e;
	cache_free_if_unused(h, e);
}

static void cache_unref(vmfs_dlm_t *h, struct cache_entry *e)
{
	e->refs--;
	cache_free_if_unused(h, e);
}

/* The connection is gone, and with it every lock of ours (the daemon
 * drops them): nothing may be flushed any more, since another host may
 * own the data already.  Uses still running end with VMFS_DLM_ELOST. */
static void cache_forget_all(vmfs_dlm_t *h)
{
	for (size_t b = 0; b < h->by_size; b++)
		while (h->by_name[b])
			cache_detach(h, h->by_name[b]);
	cache_changed(h);
}

/* If e is idle and someone (another host, or our owner) wants it gone,
 * queue the flush job: flush() must run from the callback queue (I2). */
static void cache_check_release(vmfs_dlm_t *h, struct cache_entry *e)
{
	struct cb_event *ev;

	if (e->detached || e->state != CS_GRANTED || e->nholds)
		return;
	cache_trim_demand(e);
	if (!e->demand && !e->drop)
		return;
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return;	/* tried again at the next put, BLOCKING or drop */
	ev->type = CB_CACHE_FLUSH;
	ev->ce = e;
	e->refs++;
	e->state = CS_FLUSH_QUEUED;
	cb_queue(h, ev);
}

/* Another host waits for `wanted` on cached lock e. */
static void cache_on_blocking(vmfs_dlm_t *h, struct cache_entry *e, int wanted)
{
	if (vmfs_dlm_modes_compatible(e->lksb.mode, wanted))
		return;	/* already satisfied by a demotion */
	e->demand |= 1u << wanted;
	cache_check_release(h, e);
	cache_changed(h);
}

/* An asynchronous release or demotion of e ended (p->lksb). */
static void cache_op_done(vmfs_dlm_t *h, struct pending *p)
{
	struct cache_entry *e = p->ce;
	int st = p->lksb.status;

	if (e->detached)
		goto out;
	if (st == 0 && p->op == VMFS_IPC_UNLOCK) {
		if (e->drop)
			h->stats.drops++;
		else
			h->stats.releases_on_blocking++;
		cache_detach(h, e);
	} else if (st == 0) {
		e->lksb.mode = p->lksb.mode;
		e->lksb.epoch = p->lksb.epoch;
		e->lksb.lvb_valid = p->lksb.lvb_valid;
		memcpy(e->lksb.lvb, p->lksb.lvb, VMFS_DLM_LVB_LEN);
		e->lvb_dirty = false;	/* written by the convert (VALBLK) */
		e->state = CS_GRANTED;
		h->stats.downconverts_on_blocking++;
		cache_trim_demand(e);
		cache_check_release(h, e);
	} else if (st == VMFS_DLM_ENOLOCK || st == VMFS_DLM_ELOST || st == VMFS_DLM_EDAEMON) {
		cache_detach(h, e);	/* the lock is gone either way */
	} else {
		/* Still ours at the old mode: keep the demand (I4). */
		e->state = CS_GRANTED;
		e->flush_failed = true;
		e->flush_rc = st;
		e->drop = false;
		h->cache_retry = true;
	}
	cache_changed(h);
out:
	cache_unref(h, e);
}

static void cache_flush_job(vmfs_dlm_t *h, struct cache_entry *e);

/* Apply one event; anything malformed or unexpected is dropped.  The
 * daemon is the same build, so a bad event means a bug or a stranger on
 * the other end: never worth crashing the client for. */
static void handle_event(vmfs_dlm_t *h, const void *buf, ssize_t len)
{
	const struct vmfs_ipc_event *ev = buf;
	struct cache_entry *ce;
	struct pending *p;
	char ls[VMFS_DLM_NAME_MAX + 1];

	if (len != (ssize_t)sizeof(*ev) || ev->hdr.size != (int32_t)sizeof(*ev))
		return;
	switch (ev->hdr.id) {
	case VMFS_IPC_EV_QUEUED:
		p = pending_find(h, ev->req_id);
		if (!p || ev->lkid == 0)
			return;
		p->queued = true;
		p->lksb.lkid = ev->lkid;
		if (p->lkid_out)
			*p->lkid_out = ev->lkid;
		if (p->ce)
			cache_set_lkid(h, p->ce, ev->lkid);
		if (p->wake_on_queued)
			notify(h);
		return;
	case VMFS_IPC_EV_GRANTED:
		p = pending_find(h, ev->req_id);
		if (!p || (p->op != VMFS_IPC_LOCK && p->op != VMFS_IPC_CONVERT))
			return;
		if (ev->mode < VMFS_DLM_NL || ev->mode > VMFS_DLM_EX || ev->lkid == 0)
			return;
		p->lksb.lkid = ev->lkid;
		p->lksb.epoch = ev->epoch;
		p->lksb.mode = ev->mode;
		p->lksb.status = 0;
		p->lksb.lvb_valid = ev->lvb_valid != 0;
		memcpy(p->lksb.lvb, ev->lvb, VMFS_DLM_LVB_LEN);
		if (p->lkid_out)
			*p->lkid_out = ev->lkid;
		/* A getter's lock or convert: the entry must know its lkid and
		 * mode before the next event, which may be a BLOCKING for it. */
		if (p->ce && !p->async && !p->ce->detached) {
			cache_set_lkid(h, p->ce, ev->lkid);
			p->ce->lksb.mode = ev->mode;
		}
		pending_finish(h, p);
		notify(h);
		return;
	case VMFS_IPC_EV_REFUSED:
	case VMFS_IPC_EV_DONE:
		p = pending_find(h, ev->req_id);
		if (!p)
			return;	/* e.g. the DONE of a CANCEL nobody waits for */
		if ((ev->hdr.id == VMFS_IPC_EV_REFUSED) !=
		    (p->op == VMFS_IPC_LOCK || p->op == VMFS_IPC_CONVERT))
			return;
		/* A refusal without a reason would read as success. */
		p->lksb.status = ev->err < 0 ? ev->err :
			(ev->hdr.id == VMFS_IPC_EV_REFUSED ? VMFS_DLM_EPROTO : 0);
		pending_finish(h, p);
		notify(h);
		return;
	case VMFS_IPC_EV_BLOCKING:
		if (ev->mode < VMFS_DLM_NL || ev->mode > VMFS_DLM_EX)
			return;
		/* Cached locks are the cache's business, not the user's. */
		ce = cache_find_lkid(h, ev->lkid);
		if (ce)
			cache_on_blocking(h, ce, ev->mode);
		else
			cb_queue_new(h, CB_BLOCKING, ev->lkid, ev->mode, 0, NULL);
		return;
	case VMFS_IPC_EV_LOST:
		/* Gone from the cache at once; the user hears of it too
		 * (a use may be running under it). */
		ce = cache_find_lkid(h, ev->lkid);
		if (ce) {
			h->stats.lost++;
			cache_detach(h, ce);
			cache_changed(h);
		}
		cb_queue_new(h, CB_LOST, ev->lkid, ev->reason, 0, NULL);
		return;
	case VMFS_IPC_EV_RECOVER:
		if (!memchr(ev->ls, '\0', sizeof(ev->ls)))
			return;
		memcpy(ls, ev->ls, sizeof(ls));
		cb_queue_new(h, CB_RECOVER, 0, 0, ev->nodeid, ls);
		return;
	case VMFS_IPC_EV_LEASE:
		h->lease = ev->nodeid != 0;
		cb_queue_new(h, CB_LEASE, 0, h->lease, 0, NULL);
		return;
	default:
		return;
	}
}

/* Read every pending event without blocking.  Called with h->lock. */
static void drain(vmfs_dlm_t *h)
{
	ssize_t n;
	int i;

	for (i = 0; i < DRAIN_MAX && !h->dead; i++) {
		n = qb_ipcc_event_recv(h->conn, h->buf, VMFS_IPC_MAX_MSG, 0);
		if (n == -EAGAIN || n == -ETIMEDOUT || n == 0)
			return;
		if (n < 0) {
			if (n == -EINTR)
				continue;
			conn_lost(h);
			return;
		}
		handle_event(h, h->buf, n);
	}
}

/* Run queued callbacks, in order, with h->lock dropped around each.
 * Called and returns with h->lock held.  A no-op if another thread is
 * delivering (it will also run what we queued) or if we are inside one
 * of this handle's callbacks (the outer loop will). */
static void deliver_callbacks(vmfs_dlm_t *h)
{
	if (h->delivering || tls_cb_handle == h)
		return;
	h->delivering = true;
	while (h->cb_head) {
		struct cb_event *e = h->cb_head;
		struct vmfs_dlm_callbacks cb = h->cb;
		void *ctx = h->ctx;
		vmfs_dlm_t *prev = tls_cb_handle;

		h->cb_head = e->next;
		if (!h->cb_head)
			h->cb_tail = &h->cb_head;
		if (e->type == CB_CACHE_FLUSH) {
			/* Needs the lock around flush(); drops it itself. */
			cache_flush_job(h, e->ce);
			free(e);
			continue;
		}
		pthread_mutex_unlock(&h->lock);
		tls_cb_handle = h;
		switch (e->type) {
		case CB_COMPLETION:
			if (cb.completion)
				cb.completion(e->arg, &e->lksb);
			break;
		case CB_BLOCKING:
			if (cb.blocking)
				cb.blocking(ctx, e->lkid, e->value);
			break;
		case CB_LOST:
			if (cb.lost)
				cb.lost(ctx, e->lkid, e->value);
			break;
		case CB_LEASE:
			if (cb.lease)
				cb.lease(ctx, e->value);
			break;
		case CB_RECOVER:
			if (cb.recover)
				cb.recover(ctx, e->ls, e->nodeid);
			break;
		case CB_CACHE_FLUSH:	/* run above, with the lock */
			break;
		}
		tls_cb_handle = prev;
		free(e);
		pthread_mutex_lock(&h->lock);
	}
	h->delivering = false;
}

/* Send one request and read its immediate response.  With h->lock.
 * Returns the response's error, or VMFS_DLM_EDAEMON / VMFS_DLM_EPROTO. */
static int transact(vmfs_dlm_t *h, void *req, size_t len, struct vmfs_ipc_response **resp_out,
		    size_t *resp_len)
{
	struct qb_ipc_request_header *hdr = req;
	struct vmfs_ipc_response *resp = (struct vmfs_ipc_response *)h->buf;
	struct iovec iov = { .iov_base = req, .iov_len = len };
	ssize_t n;
	int tries;

	if (h->dead)
		return VMFS_DLM_EDAEMON;
	hdr->size = (int32_t)len;
	for (tries = 0;; tries++) {
		n = qb_ipcc_sendv_recv(h->conn, &iov, 1, h->buf, VMFS_IPC_MAX_MSG,
				       RESPONSE_TIMEOUT_MS);
		/* -EAGAIN: the request ring was full (flow control), nothing
		 * was sent; the response part retries by itself. */
		if (n == -EINTR || (n == -EAGAIN && tries < RESPONSE_TIMEOUT_MS)) {
			if (n == -EAGAIN)
				usleep(1000);
			continue;
		}
		break;
	}
	if (n < 0) {
		conn_lost(h);
		return VMFS_DLM_EDAEMON;
	}
	if (n < (ssize_t)sizeof(*resp) || resp->hdr.size != (int32_t)n ||
	    resp->hdr.id != hdr->id)
		return VMFS_DLM_EPROTO;
	if (resp->hdr.error < 0)
		return resp->hdr.error;
	if (resp_out)
		*resp_out = resp;
	if (resp_len)
		*resp_len = (size_t)n;
	return 0;
}

static uint32_t new_req_id(vmfs_dlm_t *h)
{
	if (++h->next_req == 0)
		h->next_req = 1;
	return h->next_req;
}

/* Send the request with a new req_id and, once the daemon accepted it,
 * register p to receive its outcome.  With h->lock.  req points at a struct
 * whose req_id field is set here (every outcome-bearing request has one).
 * Registering after the response is safe: events are read only by
 * drain(), under the lock we hold, so none can be missed meanwhile; and a
 * refused request leaves nothing registered (no completion() either).
 * noinline: synchronous callers pass a pending on their stack and always
 * take it off the list before returning (pending_finish() or
 * pending_unlink()); inlined, GCC cannot see that and warns
 * (-Wdangling-pointer). */
static __attribute__((noinline)) int submit(vmfs_dlm_t *h, struct pending *p, void *req,
					    size_t len, uint32_t *req_id)
{
	int ret;

	p->req_id = new_req_id(h);
	*req_id = p->req_id;
	ret = transact(h, req, len, NULL, NULL);
	if (ret < 0)
		return ret;
	p->next = h->pending;
	h->pending = p;
	return 0;
}

/* Wait (with h->lock) until ready(h, arg) holds or deadline (monotonic
 * ms, 0 = none) passes.  Returns 0 or -ETIMEDOUT.  Drives the event stream
 * meanwhile; whatever makes ready() true must call notify(). */
static int wait_until(vmfs_dlm_t *h, bool (*ready)(vmfs_dlm_t *h, void *arg), void *arg,
		      uint64_t deadline)
{
	for (;;) {
		uint64_t now;
		int timeout;

		if (ready(h, arg))
			return 0;
		now = mono_ms();
		if (deadline && now >= deadline)
			return -ETIMEDOUT;
		timeout = deadline ? (int)(deadline - now) : -1;
		if (!h->reader) {
			struct pollfd pfd[2] = {
				{ .fd = h->ipc_fd, .events = POLLIN },
				{ .fd = h->wake_fd, .events = POLLIN },
			};
			uint64_t cnt;
			int n;

			h->reader = true;
			pthread_mutex_unlock(&h->lock);
			n = poll(pfd, 2, timeout);
			if (pfd[1].revents & POLLIN && read(h->wake_fd, &cnt, sizeof(cnt)) < 0) {
				/* Nothing to do: the counter was reset by someone. */
			}
			pthread_mutex_lock(&h->lock);
			h->reader = false;
			if (n > 0 && (pfd[0].revents & POLLIN))
				drain(h);
			/* Hang-up: the events sent before it were read above;
			 * without this check poll() would return at once forever. */
			if (n > 0 && (pfd[0].revents & (POLLHUP | POLLERR | POLLNVAL)))
				conn_lost(h);
			/* Let a sleeper take over reading if we leave now. */
			pthread_cond_broadcast(&h->cond);
			deliver_callbacks(h);
		} else if (deadline) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += timeout / 1000;
			ts.tv_nsec += (long)(timeout % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&h->cond, &h->lock, &ts);
		} else {
			pthread_cond_wait(&h->cond, &h->lock);
		}
	}
}

static bool pending_ready(vmfs_dlm_t *h, void *arg)
{
	struct pending *p = arg;

	return p->done || (p->wake_on_queued && p->queued);
}

/* Wait until p is done, or p has its lkid when p->wake_on_queued. */
static int wait_pending(vmfs_dlm_t *h, struct pending *p, uint64_t deadline)
{
	return wait_until(h, pending_ready, p, deadline);
}

/* --- connection ---------------------------------------------------------- */

int vmfs_dlm_open(const char *program, vmfs_dlm_t **out)
{
	struct vmfs_ipc_hello hello;
	struct vmfs_ipc_response *resp;
	pthread_condattr_t ca;
	const char *name;
	vmfs_dlm_t *h;
	int32_t fd;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->wake_fd = -1;
	h->lease = -1;
	h->cb_tail = &h->cb_head;
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);

	h->buf = malloc(VMFS_IPC_MAX_MSG);
	if (!h->buf) {
		ret = -ENOMEM;
		goto out;
	}
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->wake_fd < 0) {
		ret = -errno;
		goto out;
	}
	name = getenv("VMFS_DLM_IPC_NAME");
	if (!name || !*name)
		name = VMFS_IPC_DEFAULT_NAME;
	errno = 0;
	h->conn = qb_ipcc_connect(name, VMFS_IPC_MAX_MSG);
	if (!h->conn) {
		ret = errno ? -errno : -ECONNREFUSED;
		goto out;
	}
	ret = qb_ipcc_fd_get(h->conn, &fd);
	if (ret < 0)
		goto out;
	h->ipc_fd = fd;
	/* A child that execs must not keep our connection (and so our
	 * locks) alive after we exit. */
	fcntl(h->ipc_fd, F_SETFD, fcntl(h->ipc_fd, F_GETFD) | FD_CLOEXEC);

	memset(&hello, 0, sizeof(hello));
	hello.hdr.id = VMFS_IPC_HELLO;
	hello.version = VMFS_IPC_VERSION;
	if (!program || !*program)
		program = program_invocation_short_name;
	snprintf(hello.program, sizeof(hello.program), "%s", program);
	pthread_mutex_lock(&h->lock);
	ret = transact(h, &hello, sizeof(hello), &resp, NULL);
	if (ret == 0) {
		h->nodeid = resp->nodeid;
		h->client_id = resp->client_id;
		memcpy(h->name, resp->name, sizeof(h->name));
		h->name[VMFS_DLM_NAME_MAX] = '\0';
	}
	pthread_mutex_unlock(&h->lock);
	if (ret < 0)
		goto out;
	*out = h;
	h = NULL;
out:
	if (h)
		vmfs_dlm_close(h);
	return ret;
}

void vmfs_dlm_close(vmfs_dlm_t *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	if (h->conn)
		qb_ipcc_disconnect(h->conn);
	h->conn = NULL;
	while (h->pending) {
		struct pending *p = h->pending;

		h->pending = p->next;
		if (p->async)
			free(p);
	}
	while (h->cb_head) {
		struct cb_event *e = h->cb_head;

		h->cb_head = e->next;
		free(e);
	}
	/* The daemon drops the connection's locks; the cache only forgets. */
	for (size_t b = 0; b < h->by_size; b++) {
		while (h->by_name[b]) {
			struct cache_entry *e = h->by_name[b];

			h->by_name[b] = e->name_next;
			free(e);
		}
	}
	while (h->detached) {
		struct cache_entry *e = h->detached;

		h->detached = e->name_next;
		free(e);
	}
	free(h->by_name);
	free(h->by_lkid);
	pthread_mutex_unlock(&h->lock);
	if (h->wake_fd >= 0)
		close(h->wake_fd);
	free(h->buf);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void vmfs_dlm_set_callbacks(vmfs_dlm_t *h, const struct vmfs_dlm_callbacks *cb, void *ctx)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	if (cb)
		h->cb = *cb;
	else
		memset(&h->cb, 0, sizeof(h->cb));
	h->ctx = ctx;
	pthread_mutex_unlock(&h->lock);
}

int vmfs_dlm_fd(vmfs_dlm_t *h)
{
	if (!h)
		return -EINVAL;
	return h->ipc_fd;
}

/* A flush or release that failed keeps its lock and the demand (I4) and
 * must be tried again, or the other host waits until this one happens to
 * use the lock again.  The owner retries a flush() of its own that failed
 * (vmfs_dlm_cache_drop), but not the release message after a flush() that
 * worked and could not be sent (-EAGAIN: the daemon's queue was full, seen
 * under heavy allocation on 3 hosts): every dispatch, at most every
 * CACHE_RETRY_MS, queues the flush again of each such entry not in use.
 * With h->lock. */
#define CACHE_RETRY_MS 20
static void cache_retry_failed(vmfs_dlm_t *h)
{
	bool left = false;
	uint64_t now;

	if (!h->cache_retry || (now = mono_ms()) - h->cache_retry_ms < CACHE_RETRY_MS)
		return;
	h->cache_retry_ms = now;
	for (size_t b = 0; b < h->by_size; b++) {
		for (struct cache_entry *e = h->by_name[b]; e; e = e->name_next) {
			if (!e->flush_failed || e->state != CS_GRANTED)
				continue;
			cache_check_release(h, e);	/* not while in use: its put does */
			/* still waiting: no memory for the job (or a job failed
			 * again: that sets cache_retry itself) */
			left |= e->state == CS_GRANTED && !e->nholds && e->demand;
		}
	}
	h->cache_retry = left;
}

int vmfs_dlm_dispatch(vmfs_dlm_t *h)
{
	int ret;

	if (!h)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	if (!h->dead)
		drain(h);
	cache_retry_failed(h);
	deliver_callbacks(h);
	ret = h->dead ? VMFS_DLM_EDAEMON : 0;
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_local_node(vmfs_dlm_t *h, uint32_t *nodeid, char name[VMFS_DLM_NAME_MAX + 1])
{
	if (!h)
		return -EINVAL;
	if (nodeid)
		*nodeid = h->nodeid;
	if (name)
		memcpy(name, h->name, VMFS_DLM_NAME_MAX + 1);
	return 0;
}

/* --- locks ------------------------------------------------------------- */

static uint64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? 0 : mono_ms() + (uint64_t)timeout_ms + (timeout_ms == 0);
}

/* Release lock lkid and wait for the outcome.  With h->lock. */
static int unlock_locked(vmfs_dlm_t *h, uint64_t lkid, unsigned flags, const char *lvb,
			 bool wait)
{
	struct vmfs_ipc_unlock req;
	struct pending p;
	int ret;

	memset(&req, 0, sizeof(req));
	memset(&p, 0, sizeof(p));
	req.hdr.id = VMFS_IPC_UNLOCK;
	req.flags = flags;
	req.lkid = lkid;
	if (lvb)
		memcpy(req.lvb, lvb, VMFS_DLM_LVB_LEN);
	p.op = VMFS_IPC_UNLOCK;
	ret = submit(h, &p, &req, sizeof(req), &req.req_id);
	if (ret < 0)
		return ret;
	if (!wait) {
		pending_unlink(h, &p);
		return 0;
	}
	wait_pending(h, &p, 0);
	return p.lksb.status;
}

/* The deadline of a LOCK/CONVERT passed: cancel it and settle the race
 * with a grant.  With h->lock; p is still pending.  A lock granted in the
 * race is released again, so the caller holds nothing; a convert granted
 * in the race is kept (the lock was ours before and still is). */
static int cancel_timed_out(vmfs_dlm_t *h, struct pending *p)
{
	struct vmfs_ipc_unlock req;
	int ret;

	/* A lock request has no lkid until the daemon applied it. */
	p->wake_on_queued = true;
	wait_pending(h, p, 0);
	p->wake_on_queued = false;
	while (!p->done) {
		memset(&req, 0, sizeof(req));
		req.hdr.id = VMFS_IPC_CANCEL;
		req.req_id = new_req_id(h);
		req.lkid = p->lksb.lkid;
		ret = transact(h, &req, sizeof(req), NULL, NULL);
		/* Accepted or refused (e.g. the grant came first), the
		 * request's own outcome decides; a refused cancel of a
		 * request that stays queued is sent again. */
		(void)ret;
		wait_pending(h, p, mono_ms() + CANCEL_RETRY_MS);
	}
	ret = p->lksb.status;
	if (ret == VMFS_DLM_ECANCELED)
		return VMFS_DLM_ETIMEDOUT;
	if (ret < 0)
		return ret;
	if (p->op == VMFS_IPC_CONVERT)
		return 0;
	ret = unlock_locked(h, p->lksb.lkid, 0, NULL, true);
	return ret == VMFS_DLM_EDAEMON ? ret : VMFS_DLM_ETIMEDOUT;
}

/* Take a lock and wait for the outcome (arguments checked).  With h->lock.
 * ce: the cache entry the lock is for, or NULL. */
static int lock_locked(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
		       unsigned flags, const char *tag, uint64_t deadline,
		       struct vmfs_dlm_lksb *lksb, struct cache_entry *ce)
{
	struct vmfs_ipc_lock req;
	struct pending p;
	int ret;

	memset(&req, 0, sizeof(req));
	memset(&p, 0, sizeof(p));
	req.hdr.id = VMFS_IPC_LOCK;
	req.mode = (uint32_t)mode;
	req.flags = flags;
	strcpy(req.ls, ls);
	strcpy(req.res, res);
	if (tag)
		strcpy(req.tag, tag);
	p.op = VMFS_IPC_LOCK;
	p.ce = ce;

	ret = submit(h, &p, &req, sizeof(req), &req.req_id);
	if (ret < 0)
		goto out;
	if (wait_pending(h, &p, deadline) == -ETIMEDOUT)
		ret = cancel_timed_out(h, &p);
	else
		ret = p.lksb.status;
out:
	if (ret == 0)
		*lksb = p.lksb;
	else
		lksb->status = ret;
	return ret;
}

int vmfs_dlm_lock(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
		  unsigned flags, const char *tag, int timeout_ms,
		  struct vmfs_dlm_lksb *lksb)
{
	int ret;

	if (!h || !lksb || !str_fits(ls, VMFS_DLM_NAME_MAX) || !*ls ||
	    !str_fits(res, VMFS_DLM_NAME_MAX) || !*res ||
	    mode < VMFS_DLM_NL || mode > VMFS_DLM_EX ||
	    (tag && !str_fits(tag, VMFS_DLM_TAG_MAX)))
		return -EINVAL;
	if (tls_cb_handle == h)
		return -EDEADLK;
	pthread_mutex_lock(&h->lock);
	ret = lock_locked(h, ls, res, mode, flags, tag, deadline_of(timeout_ms), lksb, NULL);
	deliver_callbacks(h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

struct convert_wait {
	struct pending *p;
	struct cache_entry *ce;
};

/* A cache converter gives way when its lock is demanded by another host
 * while no use of ours holds it (conversion deadlock, see the cache).
 * Not after a failed flush: giving way retries the flush, and a flush that
 * keeps failing would turn that into a loop of converts and cancels. */
static bool convert_ready(vmfs_dlm_t *h, void *arg)
{
	struct convert_wait *cw = arg;
	struct cache_entry *e = cw->ce;

	return cw->p->done ||
	       (e && !e->detached && e->demand && !e->nholds && !e->flush_failed);
}

/* Convert lksb's lock and wait for the outcome.  With h->lock.  ce: the
 * cache entry, or NULL; with it the convert may be cancelled and
 * CACHE_YIELD returned (the lock kept its old mode). */
static int convert_locked(vmfs_dlm_t *h, struct vmfs_dlm_lksb *lksb, int mode,
			  unsigned flags, uint64_t deadline, struct cache_entry *ce)
{
	struct vmfs_ipc_convert req;
	struct convert_wait cw;
	struct pending p;
	int ret;

	memset(&req, 0, sizeof(req));
	memset(&p, 0, sizeof(p));
	req.hdr.id = VMFS_IPC_CONVERT;
	req.mode = (uint32_t)mode;
	req.flags = flags;
	req.lkid = lksb->lkid;
	memcpy(req.lvb, lksb->lvb, VMFS_DLM_LVB_LEN);
	p.op = VMFS_IPC_CONVERT;
	p.lksb.lkid = lksb->lkid;
	p.queued = true;	/* the lkid is known: cancel can go at once */
	p.ce = ce;
	cw.p = &p;
	cw.ce = ce;

	ret = submit(h, &p, &req, sizeof(req), &req.req_id);
	if (ret < 0)
		goto out;
	if (wait_until(h, convert_ready, &cw, deadline) == -ETIMEDOUT) {
		ret = cancel_timed_out(h, &p);
	} else if (!p.done) {
		ret = cancel_timed_out(h, &p);
		if (ret == VMFS_DLM_ETIMEDOUT)
			ret = CACHE_YIELD;
	} else {
		ret = p.lksb.status;
	}
	if (ret == 0) {
		lksb->epoch = p.lksb.epoch;
		lksb->mode = p.lksb.mode;
		lksb->lvb_valid = p.lksb.lvb_valid;
		memcpy(lksb->lvb, p.lksb.lvb, VMFS_DLM_LVB_LEN);
	}
out:
	lksb->status = ret;
	return ret;
}

int vmfs_dlm_convert(vmfs_dlm_t *h, struct vmfs_dlm_lksb *lksb, int mode,
		     unsigned flags, int timeout_ms)
{
	int ret;

	if (!h || !lksb || !lksb->lkid || mode < VMFS_DLM_NL || mode > VMFS_DLM_EX)
		return -EINVAL;
	if (tls_cb_handle == h)
		return -EDEADLK;
	pthread_mutex_lock(&h->lock);
	ret = convert_locked(h, lksb, mode, flags, deadline_of(timeout_ms), NULL);
	deliver_callbacks(h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_unlock(vmfs_dlm_t *h, struct vmfs_dlm_lksb *lksb, unsigned flags)
{
	int ret;

	if (!h || !lksb || !lksb->lkid)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	ret = unlock_locked(h, lksb->lkid, flags,
			    (flags & VMFS_DLM_VALBLK) ? lksb->lvb : NULL, tls_cb_handle != h);
	deliver_callbacks(h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

/* Send a request answered by one DONE and wait for it (or only for the
 * acceptance when called from a callback).  With h->lock. */
static int request_done(vmfs_dlm_t *h, int op, void *req, size_t len, uint32_t *req_id)
{
	struct pending p;
	int ret;

	memset(&p, 0, sizeof(p));
	p.op = op;
	ret = submit(h, &p, req, len, req_id);
	if (ret < 0)
		return ret;
	if (tls_cb_handle == h) {
		pending_unlink(h, &p);
		return 0;
	}
	wait_pending(h, &p, 0);
	return p.lksb.status;
}

int vmfs_dlm_transfer(vmfs_dlm_t *h, uint64_t from, uint64_t from_epoch, uint64_t to)
{
	struct vmfs_ipc_transfer req;
	int ret;

	if (!h || !from || !to)
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	req.hdr.id = VMFS_IPC_TRANSFER;
	req.from_lkid = from;
	req.from_epoch = from_epoch;
	req.to_lkid = to;
	pthread_mutex_lock(&h->lock);
	ret = request_done(h, VMFS_IPC_TRANSFER, &req, sizeof(req), &req.req_id);
	deliver_callbacks(h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_transfer_set(vmfs_dlm_t *h, const struct vmfs_dlm_transfer *t, size_t n)
{
	struct vmfs_ipc_transfer_set req;
	int ret;

	if (!h || !t || n == 0 || n > VMFS_DLM_TRANSFER_SET_MAX)
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	req.hdr.id = VMFS_IPC_TRANSFER_SET;
	req.n = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		if (!t[i].from || !t[i].to)
			return -EINVAL;
		req.x[i] = t[i];
	}
	pthread_mutex_lock(&h->lock);
	ret = request_done(h, VMFS_IPC_TRANSFER_SET, &req, sizeof(req), &req.req_id);
	deliver_callbacks(h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

/* --- asynchronous calls ------------------------------------------------ */

int vmfs_dlm_lock_async(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
			unsigned flags, const char *tag, void *arg, uint64_t *lkid)
{
	struct vmfs_ipc_lock req;
	struct pending *p;
	int ret;

	if (!h || !str_fits(ls, VMFS_DLM_NAME_MAX) || !*ls ||
	    !str_fits(res, VMFS_DLM_NAME_MAX) || !*res ||
	    mode < VMFS_DLM_NL || mode > VMFS_DLM_EX ||
	    (tag && !str_fits(tag, VMFS_DLM_TAG_MAX)))
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(&req, 0, sizeof(req));
	req.hdr.id = VMFS_IPC_LOCK;
	req.mode = (uint32_t)mode;
	req.flags = flags;
	strcpy(req.ls, ls);
	strcpy(req.res, res);
	if (tag)
		strcpy(req.tag, tag);
	p->op = VMFS_IPC_LOCK;
	p->async = true;
	p->arg = arg;
	p->lkid_out = lkid;
	if (lkid)
		*lkid = 0;

	pthread_mutex_lock(&h->lock);
	ret = submit(h, p, &req, sizeof(req), &req.req_id);
	/* Refused: no completion() will come; p is ours to free. */
	if (ret < 0)
		free(p);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_convert_async(vmfs_dlm_t *h, uint64_t lkid, int mode, unsigned flags,
			   const char *lvb, void *arg)
{
	struct vmfs_ipc_convert req;
	struct pending *p;
	int ret;

	if (!h || !lkid || mode < VMFS_DLM_NL || mode > VMFS_DLM_EX)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(&req, 0, sizeof(req));
	req.hdr.id = VMFS_IPC_CONVERT;
	req.mode = (uint32_t)mode;
	req.flags = flags;
	req.lkid = lkid;
	if (lvb)
		memcpy(req.lvb, lvb, VMFS_DLM_LVB_LEN);
	p->op = VMFS_IPC_CONVERT;
	p->async = true;
	p->arg = arg;
	p->lksb.lkid = lkid;
	p->queued = true;

	pthread_mutex_lock(&h->lock);
	ret = submit(h, p, &req, sizeof(req), &req.req_id);
	if (ret < 0)
		free(p);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_cancel(vmfs_dlm_t *h, uint64_t lkid)
{
	struct vmfs_ipc_unlock req;
	int ret;

	if (!h || !lkid)
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	req.hdr.id = VMFS_IPC_CANCEL;
	req.lkid = lkid;
	pthread_mutex_lock(&h->lock);
	/* The outcome is the cancelled request's own completion; the DONE
	 * of the cancel itself finds no pending and is dropped. */
	req.req_id = new_req_id(h);
	ret = transact(h, &req, sizeof(req), NULL, NULL);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

/* --- recovery and inspection ------------------------------------------- */

static int recovery_call(vmfs_dlm_t *h, int op, const char *ls, uint32_t nodeid)
{
	struct vmfs_ipc_recovery req;
	int ret;

	if (!h || !str_fits(ls, VMFS_DLM_NAME_MAX) || !*ls)
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	req.hdr.id = op;
	req.nodeid = nodeid;
	strcpy(req.ls, ls);
	pthread_mutex_lock(&h->lock);
	ret = request_done(h, op, &req, sizeof(req), &req.req_id);
	deliver_callbacks(h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_recovery_register(vmfs_dlm_t *h, const char *ls)
{
	return recovery_call(h, VMFS_IPC_RECOVERY_REG, ls, 0);
}

int vmfs_dlm_recovery_done(vmfs_dlm_t *h, const char *ls, uint32_t nodeid)
{
	return recovery_call(h, VMFS_IPC_RECOVERY_DONE, ls, nodeid);
}

/* Only the acceptance is waited for: no event answers a WARM, so nothing
 * is registered as pending. */
int vmfs_dlm_warm(vmfs_dlm_t *h, unsigned ms)
{
	struct vmfs_ipc_warm req;
	int ret;

	if (!h || ms > VMFS_DLM_WARM_MAX_MS)
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	req.hdr.id = VMFS_IPC_WARM;
	req.ms = ms;
	pthread_mutex_lock(&h->lock);
	ret = transact(h, &req, sizeof(req), NULL, NULL);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_query(vmfs_dlm_t *h, const char *what, const char *arg, char **json)
{
	struct vmfs_ipc_query req;
	struct vmfs_ipc_response *resp;
	size_t len = 0;
	char *text;
	int ret;

	if (!h || !json || !what || strnlen(what, sizeof(req.what)) >= sizeof(req.what) ||
	    (arg && !str_fits(arg, VMFS_DLM_NAME_MAX)))
		return -EINVAL;
	*json = NULL;
	memset(&req, 0, sizeof(req));
	req.hdr.id = VMFS_IPC_QUERY;
	strcpy(req.what, what);
	if (arg)
		strcpy(req.arg, arg);
	pthread_mutex_lock(&h->lock);
	ret = transact(h, &req, sizeof(req), &resp, &len);
	if (ret < 0)
		goto out;
	if (resp->len > len - sizeof(*resp)) {
		ret = VMFS_DLM_EPROTO;
		goto out;
	}
	text = malloc((size_t)resp->len + 1);
	if (!text) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(text, (const char *)resp + sizeof(*resp), resp->len);
	text[resp->len] = '\0';
	*json = text;
out:
	pthread_mutex_unlock(&h->lock);
	return ret;
}

/* --- lock cache: requests and API ---------------------------------------- */

/* Send the release (target < 0) or demotion of idle entry e, without
 * waiting: the outcome comes to cache_op_done().  With h->lock.  The
 * value block goes with it when a PW/EX use changed it. */
static int cache_send_release(vmfs_dlm_t *h, struct cache_entry *e, int target)
{
	bool write_lvb = e->valblk && e->lvb_dirty && e->lksb.mode >= VMFS_DLM_PW;
	struct pending *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	p->async = true;
	p->ce = e;
	p->lksb.lkid = e->lksb.lkid;
	if (target < 0) {
		struct vmfs_ipc_unlock req;

		memset(&req, 0, sizeof(req));
		req.hdr.id = VMFS_IPC_UNLOCK;
		req.flags = write_lvb ? VMFS_DLM_VALBLK : 0;
		req.lkid = e->lksb.lkid;
		memcpy(req.lvb, e->lksb.lvb, VMFS_DLM_LVB_LEN);
		p->op = VMFS_IPC_UNLOCK;
		ret = submit(h, p, &req, sizeof(req), &req.req_id);
	} else {
		struct vmfs_ipc_convert req;

		memset(&req, 0, sizeof(req));
		req.hdr.id = VMFS_IPC_CONVERT;
		req.mode = (uint32_t)target;
		req.flags = write_lvb ? VMFS_DLM_VALBLK : 0;
		req.lkid = e->lksb.lkid;
		memcpy(req.lvb, e->lksb.lvb, VMFS_DLM_LVB_LEN);
		p->op = VMFS_IPC_CONVERT;
		p->queued = true;
		ret = submit(h, p, &req, sizeof(req), &req.req_id);
	}
	if (ret < 0) {
		free(p);
		return ret;
	}
	e->refs++;
	e->state = target < 0 ? CS_RELEASING : CS_DEMOTING;
	return 0;
}

/* The flush job of e, run from deliver_callbacks() with h->lock held (it
 * drops it around flush()); owns one reference of e. */
static void cache_flush_job(vmfs_dlm_t *h, struct cache_entry *e)
{
	int (*flush)(void *, const char *, const char *, int, int) = h->flush;
	void *fctx = h->flush_ctx;
	int held, wanted, target, ret = 0;

	if (e->detached || e->state != CS_FLUSH_QUEUED)
		goto out;
	e->state = CS_FLUSHING;
	held = e->lksb.mode;
	wanted = cache_wanted(e);
	cache_changed(h);
	if (flush) {
		vmfs_dlm_t *prev = tls_cb_handle;

		/* e stays allocated meanwhile (our reference, I3), and its
		 * names never change. */
		pthread_mutex_unlock(&h->lock);
		tls_cb_handle = h;
		ret = flush(fctx, e->ls, e->res, held, wanted);
		tls_cb_handle = prev;
		pthread_mutex_lock(&h->lock);
	}
	if (e->detached)
		goto out;	/* lost while flushing: nothing to release */
	if (ret >= 0) {
		/* Demand may have grown while flush() ran: decide now. */
		cache_trim_demand(e);
		target = e->drop ? -1 : cache_demote_target(held, e->demand);
		ret = cache_send_release(h, e, target);
		if (ret == VMFS_DLM_ENOLOCK || ret == VMFS_DLM_EDAEMON) {
			cache_detach(h, e);
			ret = 0;
		}
	} else {
		h->stats.flush_errors++;
	}
	if (ret < 0) {
		/* Keep the lock and the demand (I4); tried again later
		 * (cache_retry_failed). */
		e->state = CS_GRANTED;
		e->flush_failed = true;
		e->flush_rc = ret;
		e->drop = false;
		h->cache_retry = true;
	} else {
		e->flush_failed = false;
	}
	cache_changed(h);
out:
	cache_unref(h, e);
}

static void cache_user_lksb(const struct cache_entry *e, int mode, struct vmfs_dlm_lksb *out)
{
	*out = e->lksb;
	out->mode = mode;
	out->status = 0;
}

static void cache_take_use(vmfs_dlm_t *h, struct cache_entry *e, int mode, unsigned flags,
			   struct vmfs_dlm_lksb *lksb)
{
	e->holds[mode]++;
	e->nholds++;
	if (flags & VMFS_DLM_VALBLK)
		e->valblk = true;
	cache_user_lksb(e, mode, lksb);
}

/* No entry for (ls, res): take a new lock for it.  With h->lock. */
static int cache_acquire(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
			 unsigned flags, const char *tag, uint64_t deadline,
			 struct vmfs_dlm_lksb *lksb)
{
	struct vmfs_dlm_lksb lk;
	struct cache_entry *e = cache_new(h, ls, res);
	int ret;

	if (!e)
		return -ENOMEM;
	e->refs++;
	h->stats.misses++;
	memset(&lk, 0, sizeof(lk));
	ret = lock_locked(h, ls, res, mode, flags & VMFS_DLM_NOQUEUE, tag, deadline, &lk, e);
	if (ret == 0 && e->detached)
		ret = VMFS_DLM_ELOST;	/* lost before we woke up */
	if (ret < 0) {
		cache_detach(h, e);
	} else {
		e->lksb = lk;
		e->state = CS_GRANTED;
		cache_take_use(h, e, mode, flags, lksb);
	}
	cache_changed(h);
	cache_unref(h, e);
	return ret;
}

/* e is GRANTED at a mode not covering `mode`: convert it up.  With
 * h->lock.  Returns 0 (use taken), an error, or CACHE_YIELD (the caller
 * looks again: the lock is being released). */
static int cache_upconvert(vmfs_dlm_t *h, struct cache_entry *e, int mode, unsigned flags,
			   uint64_t deadline, struct vmfs_dlm_lksb *lksb)
{
	struct vmfs_dlm_lksb lk = e->lksb;
	int target = mode;
	int ret;

	/* The current uses keep what they have. */
	for (int m = VMFS_DLM_NL; m <= VMFS_DLM_EX; m++)
		if (e->holds[m])
			target = mode_join(target, m);
	e->state = CS_CONVERTING;
	e->refs++;
	cache_changed(h);
	ret = convert_locked(h, &lk, target, flags & VMFS_DLM_NOQUEUE, deadline, e);
	if (e->detached) {
		ret = ret < 0 ? ret : VMFS_DLM_ELOST;
		goto out;
	}
	e->state = CS_GRANTED;
	if (ret == 0) {
		e->lksb.mode = lk.mode;
		e->lksb.epoch = lk.epoch;
		/* A value block we changed and have not written is newer
		 * than the one the grant carries (we held PW or EX all along). */
		if (!e->lvb_dirty) {
			e->lksb.lvb_valid = lk.lvb_valid;
			memcpy(e->lksb.lvb, lk.lvb, VMFS_DLM_LVB_LEN);
		}
		h->stats.converts++;
		cache_trim_demand(e);
		cache_take_use(h, e, mode, flags, lksb);
	} else {
		e->lksb.mode = lk.mode;	/* the old one: a refused convert keeps it */
		cache_check_release(h, e);
	}
out:
	cache_changed(h);
	cache_unref(h, e);
	return ret;
}

static bool gen_changed(vmfs_dlm_t *h, void *arg)
{
	return h->cache_gen != *(uint64_t *)arg;
}

/* Run queued callbacks (flush jobs among them), then wait until some
 * cache entry changed since the caller last looked (with h->lock held
 * throughout until now).  Returns 0 or VMFS_DLM_ETIMEDOUT. */
static int cache_wait(vmfs_dlm_t *h, uint64_t deadline)
{
	uint64_t gen = h->cache_gen;

	deliver_callbacks(h);
	return wait_until(h, gen_changed, &gen, deadline) ? VMFS_DLM_ETIMEDOUT : 0;
}

int vmfs_dlm_cache_get(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
		       unsigned flags, const char *tag, int timeout_ms,
		       struct vmfs_dlm_lksb *lksb)
{
	bool in_cb;
	uint64_t deadline;
	int ret;

	if (!h || !lksb || !str_fits(ls, VMFS_DLM_NAME_MAX) || !*ls ||
	    !str_fits(res, VMFS_DLM_NAME_MAX) || !*res ||
	    mode < VMFS_DLM_NL || mode > VMFS_DLM_EX ||
	    (tag && !str_fits(tag, VMFS_DLM_TAG_MAX)) ||
	    (flags & ~(VMFS_DLM_NOQUEUE | VMFS_DLM_VALBLK)))
		return -EINVAL;
	/* From a callback only a hit can be served: anything else waits. */
	in_cb = tls_cb_handle == h;
	deadline = deadline_of(timeout_ms);
	pthread_mutex_lock(&h->lock);
	for (;;) {
		struct cache_entry *e;

		if (h->dead) {
			ret = VMFS_DLM_EDAEMON;
			break;
		}
		e = cache_find(h, ls, res);
		if (!e && !in_cb) {
			ret = cache_acquire(h, ls, res, mode, flags, tag, deadline, lksb);
			break;
		}
		if (e && e->state == CS_GRANTED && (!e->demand || e->flush_failed) &&
		    cache_use_ok(e, mode)) {
			if (mode_covers(e->lksb.mode, mode)) {
				h->stats.hits++;
				cache_take_use(h, e, mode, flags, lksb);
				ret = 0;
				break;
			}
			if (!in_cb) {
				ret = cache_upconvert(h, e, mode, flags, deadline, lksb);
				if (ret == CACHE_YIELD)
					continue;
				break;
			}
		}
		if (in_cb) {
			ret = -EDEADLK;
			break;
		}
		if (flags & VMFS_DLM_NOQUEUE) {
			/* Not grantable now: another use of ours conflicts, the
			 * lock is changing, or another host wants it.  A NOQUEUE
			 * caller may hold locks it took in another order (a
			 * filesystem's "try, else retake all in order"); waiting
			 * here for a thread that waits for those would be a
			 * deadlock no lock manager can see. */
			ret = VMFS_DLM_EAGAIN;
			break;
		}
		ret = cache_wait(h, deadline);
		if (ret < 0)
			break;
	}
	if (ret < 0)
		lksb->status = ret;
	deliver_callbacks(h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

/* The entry a user's lksb came from: in the hashes, or lost meanwhile. */
static struct cache_entry *cache_of_use(vmfs_dlm_t *h, const struct vmfs_dlm_lksb *lksb)
{
	struct cache_entry *e = cache_find_lkid(h, lksb->lkid);

	if (e)
		return e;
	for (e = h->detached; e; e = e->name_next)
		if (e->lksb.lkid == lksb->lkid && e->holds[lksb->mode])
			return e;
	return NULL;
}

int vmfs_dlm_cache_put(vmfs_dlm_t *h, struct vmfs_dlm_lksb *lksb)
{
	struct cache_entry *e;
	int ret = 0;

	if (!h || !lksb || !lksb->lkid || lksb->mode < VMFS_DLM_NL || lksb->mode > VMFS_DLM_EX)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	e = cache_of_use(h, lksb);
	if (!e || !e->holds[lksb->mode]) {
		ret = VMFS_DLM_ENOLOCK;
		goto out;
	}
	/* Only a PW or EX use can have changed the value block: no other
	 * use of those modes runs beside it. */
	if (lksb->mode >= VMFS_DLM_PW && e->valblk &&
	    memcmp(e->lksb.lvb, lksb->lvb, VMFS_DLM_LVB_LEN) != 0) {
		memcpy(e->lksb.lvb, lksb->lvb, VMFS_DLM_LVB_LEN);
		e->lksb.lvb_valid = 1;
		e->lvb_dirty = true;
	}
	e->holds[lksb->mode]--;
	e->nholds--;
	if (e->detached) {
		ret = VMFS_DLM_ELOST;
		cache_free_if_unused(h, e);
	} else {
		cache_check_release(h, e);
	}
	cache_changed(h);
	deliver_callbacks(h);
out:
	pthread_mutex_unlock(&h->lock);
	return ret;
}

void vmfs_dlm_cache_set_flush(vmfs_dlm_t *h,
			      int (*flush)(void *ctx, const char *ls, const char *res,
					   int held_mode, int wanted_mode),
			      void *ctx)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->flush = flush;
	h->flush_ctx = ctx;
	pthread_mutex_unlock(&h->lock);
}

/* Queue the release of e if it is idle; true if it was queued or is on
 * its way out already. */
static bool cache_drop_one(vmfs_dlm_t *h, struct cache_entry *e)
{
	if (e->state == CS_GRANTED && !e->nholds) {
		e->drop = true;
		cache_check_release(h, e);
	}
	return e->state == CS_FLUSH_QUEUED || e->state == CS_FLUSHING ||
	       e->state == CS_RELEASING;
}

int vmfs_dlm_cache_drop(vmfs_dlm_t *h, const char *ls, const char *res)
{
	bool in_cb;
	uint64_t id = 0;
	int ret;

	if (!h || !str_fits(ls, VMFS_DLM_NAME_MAX) || !*ls ||
	    !str_fits(res, VMFS_DLM_NAME_MAX) || !*res)
		return -EINVAL;
	in_cb = tls_cb_handle == h;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		struct cache_entry *e = cache_find(h, ls, res);

		if (!e) {
			/* Not cached, or our release of it is done. */
			ret = id ? 0 : VMFS_DLM_ENOLOCK;
			break;
		}
		if (id == e->id && e->state == CS_GRANTED && e->flush_failed) {
			ret = e->flush_rc;	/* this drop's attempt failed */
			break;
		}
		if (e->nholds || e->state == CS_ACQUIRING || e->state == CS_CONVERTING) {
			ret = -EBUSY;
			break;
		}
		if (cache_drop_one(h, e))
			id = e->id;
		if (in_cb) {
			/* The outer delivery loop runs the job; no waiting. */
			ret = 0;
			break;
		}
		cache_wait(h, 0);
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_cache_drop_all(vmfs_dlm_t *h)
{
	unsigned seq;
	bool in_cb;
	int ret = 0;

	if (!h)
		return -EINVAL;
	in_cb = tls_cb_handle == h;
	pthread_mutex_lock(&h->lock);
	seq = ++h->drop_seq;
	for (;;) {
		bool waiting = false;

		for (size_t b = 0; b < h->by_size; b++) {
			for (struct cache_entry *e = h->by_name[b]; e; e = e->name_next) {
				if (e->nholds || e->state == CS_ACQUIRING ||
				    e->state == CS_CONVERTING) {
					ret = -EBUSY;
					continue;
				}
				if (e->drop_seq == seq && e->state == CS_GRANTED) {
					/* Tried in this call and failed. */
					if (e->flush_failed && ret == 0)
						ret = e->flush_rc;
					continue;
				}
				if (e->state == CS_GRANTED)
					e->drop_seq = seq;
				waiting |= cache_drop_one(h, e) || e->state == CS_DEMOTING;
			}
		}
		if (!waiting || in_cb)
			break;
		cache_wait(h, 0);
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_cache_stats(vmfs_dlm_t *h, struct vmfs_dlm_cache_stats *st)
{
	if (!h || !st)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	*st = h->stats;
	st->cached = h->cached;
	pthread_mutex_unlock(&h->lock);
	return 0;
}
