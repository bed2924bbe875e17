/* plock.c — cluster-wide POSIX record locks and flock (see plock.h).
 *
 * MAPPING (lockspace = the volume UUID; <ino>, <off> decimal)
 *
 *   request                          lock-manager locks of the owner
 *   -------------------------------  --------------------------------------
 *   F_RDLCK [s,e], e - s < 64        "p<ino>" CR  + "p<ino>.<b>" PR, b in [s,e]
 *   F_WRLCK [s,e], e - s < 64        "p<ino>" CW  + "p<ino>.<b>" EX, b in [s,e]
 *   F_RDLCK longer (or to EOF)       "p<ino>" PR
 *   F_WRLCK longer (or to EOF)       "p<ino>" EX
 *   flock LOCK_SH / LOCK_EX          "f<ino>" PR / EX
 *
 * Short ("byte") ranges are exact: QEMU's image locking (single bytes at
 * 100+ and 200+) conflicts exactly as on a local file system.  The
 * intention locks on "p<ino>" (CR/CW) are compatible with each other, so
 * byte locks only meet at the byte resources; a long ("coarse") range
 * takes "p<ino>" itself, which conflicts with the intention locks as
 * needed (CR-PR compatible: readers share; CW-PR not; EX nothing).
 *
 * OVER-LOCKING (documented, deliberate): a coarse range locks the WHOLE
 * file.  Two owners with disjoint long write ranges conflict; a long read
 * range conflicts with a write byte anywhere in the file; a long write
 * range conflicts with any byte lock.  SQLite's 510-byte shared range is
 * coarse, so its readers and its RESERVED/PENDING byte writers exclude
 * each other more than on a local fs (EAGAIN/busy, never a missed
 * conflict).  One owner holds one "p<ino>" lock whose mode is the join of
 * what its ranges need (CW+PR = PW).
 *
 * PER-OWNER STATE (struct pl_obj, one per (ino, owner), kind 'p'; another
 * kind 'f' for flock): the exact POSIX range list of the owner, each range
 * tagged byte or coarse by the request that set it (a split piece keeps
 * its tag, so an unlock never has to take a lock: unlocking part of a
 * long range keeps "p<ino>" until no coarse range is left); the byte locks
 * held; the "p<ino>" lock.  A request computes the new range list, then
 *   UP:   takes/up-converts what the new list needs that is not held
 *         ("p<ino>" first, then bytes ascending), all NOQUEUE; on refusal
 *         everything taken in this attempt is rolled back;
 *   DOWN: releases/down-converts what the committed list no longer needs
 *         (down-converts are granted at once by the lock manager, quorum
 *         or not, so this step never waits and never fails).
 * Same owner never conflicts with itself (its needs are joined into one
 * lock per resource); two owners — on one host or on two — conflict like
 * two hosts, since every request is its own lock-manager lock and the lock
 * manager compares modes, never owners (dlm/rsm_table.c
 * holders_compatible()).
 *
 * WAITING (F_SETLKW, blocking flock): the UP attempt is NOQUEUE; when a
 * resource refuses, the attempt is rolled back and the worker waits for
 * that one resource alone (a queued lock kept aside and adopted by the
 * next attempt), then retries.  So a waiter never holds part of its own
 * request while it waits: no deadlock that POSIX would not have (a range
 * request is atomic in POSIX).  An up-convert of a lock the owner already
 * holds (read -> write) waits as a queued convert.  While a new lock
 * waits, the owner is not busy (its other threads may lock/unlock); while
 * a convert waits it is.  No deadlock detection: a real POSIX deadlock
 * across hosts waits forever (the kernel would say EDEADLK).  A wait ends
 * with -EIO when the lease is lost or the daemon goes away (the request
 * is cancelled), and with -EINTR when FUSE interrupts the request (the
 * process got a signal: struct plock_intr; the request is cancelled the
 * same way).
 *
 * F_GETLK: local owners' ranges first (exact, with their pid), then a
 * probe of the cluster: the locks the request would need are tried
 * NOQUEUE and released again (a transient lock that may make someone
 * else's simultaneous try fail).  A refused probe reports: F_WRLCK for a
 * read request; for a write request F_RDLCK if a read-mode probe of the
 * same resource passes, else F_WRLCK; range [b,b] for a byte resource,
 * the whole file for "p<ino>"; pid 0.  A waiter queued ahead also counts
 * as a conflict (grants are FIFO).
 *
 * LEASE AND LOSS: while the lease is lost (lease callback 0) or after the
 * daemon is gone (sticky), new lock requests return -EIO; unlocks always
 * succeed (the bookkeeping is dropped; the daemon releases a dead
 * client's locks).  A lock lost without our release (this host fenced and
 * purged, cluster reset) makes the table refuse new requests with -EIO
 * for good: processes here may believe they hold locks someone else now
 * has, and that mount needs a remount anyway.
 *
 * LOCKING: t->mu protects the object table, each object's busy flag and
 * refs, and every range list (written only with mu held by the busy
 * thread, read under mu by getlk).  The byte locks and "p"/"f" lock of an
 * object belong to the thread that set busy.  No lock-manager call is
 * ever made with t->mu held: a completion callback (which takes t->mu) may
 * run inside any lock-manager call of any thread.
 */
#include "config.h"
#include "plock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "vmfs/dlm.h"
#include "io.h"
#include "log.h"

#define PL_BYTE_MAX 64		/* ranges up to this many bytes are exact */
#define PL_RANGES_MAX 4096	/* per owner and inode: -ENOLCK beyond */
#define PL_BYTES_MAX 4096
#define PL_BUCKETS 256
#define PL_NONE (-1)		/* no lock held / needed */
#define PL_CANCEL_GRACE_MS 5000	/* after a cancel, wait this long for its outcome */

struct pl_range {
	uint64_t start, end;	/* inclusive */
	short type;		/* F_RDLCK / F_WRLCK */
	bool coarse;		/* set by a long request: lives on "p<ino>" */
};

struct pl_byte {
	uint64_t off;
	int mode;		/* PR or EX (held) */
	struct vmfs_dlm_lksb lk;
};

struct pl_obj {
	struct pl_obj *next;	/* bucket chain; t->mu */
	char kind;		/* 'p' record locks, 'f' flock; constant */
	uint64_t ino, owner;	/* constant */
	pid_t pid;		/* last locker's pid (getlk); t->mu */
	int refs;		/* threads using it; t->mu */
	bool busy;		/* one thread works on the locks; t->mu */
	struct pl_range *r;	/* written with t->mu by the busy thread */
	size_t nr;
	struct pl_byte *b;	/* busy thread only */
	size_t nb, cb;
	int mode;		/* "p<ino>" / "f<ino>" held mode or PL_NONE; busy thread */
	struct vmfs_dlm_lksb lk;
};

struct plock_tab {
	vmfs_dlm_t *h;		/* constant */
	char ls[VMFS_DLM_NAME_MAX + 1];
	pthread_t thr;		/* event thread */
	int stop_fd;		/* eventfd: stop the event thread */
	pthread_mutex_t mu;
	pthread_cond_t cond;	/* an object became idle / a wait completed */
	int lease;		/* -1 unknown, 0 lost, 1 valid; mu */
	bool dead;		/* daemon gone; sticky; mu */
	bool failed;		/* a lock was lost; sticky; mu */
	struct pl_obj *bucket[PL_BUCKETS];	/* mu */
};

/* --- modes ------------------------------------------------------------- */

/* held covers want: everything compatible with held is compatible with
 * want (want is no stronger).  Nothing held covers only nothing. */
static bool covers(int held, int want)
{
	if (want == PL_NONE)
		return true;
	if (held == PL_NONE)
		return false;
	for (int m = VMFS_DLM_NL; m <= VMFS_DLM_EX; m++)
		if (vmfs_dlm_modes_compatible(held, m) && !vmfs_dlm_modes_compatible(want, m))
			return false;
	return true;
}

/* The weakest mode covering both (CW + PR = PW). */
static int join(int a, int b)
{
	if (a == PL_NONE)
		return b;
	if (b == PL_NONE)
		return a;
	for (int m = VMFS_DLM_NL; m <= VMFS_DLM_EX; m++)
		if (covers(m, a) && covers(m, b))
			return m;
	return VMFS_DLM_EX;
}

/* Lock-manager error -> errno of the plock API. */
static int map_err(int err)
{
	switch (err) {
	case 0:
		return 0;
	case VMFS_DLM_EAGAIN:
		return -EAGAIN;
	case VMFS_DLM_ENOQUORUM:
	case VMFS_DLM_EDAEMON:
	case VMFS_DLM_ELOST:
		return -EIO;
	case -ENOMEM:
		return -ENOMEM;
	default:
		return -ENOLCK;
	}
}

static void res_p(char *buf, size_t len, char kind, uint64_t ino)
{
	snprintf(buf, len, "%c%" PRIu64, kind, ino);
}

static void res_byte(char *buf, size_t len, uint64_t ino, uint64_t off)
{
	snprintf(buf, len, "p%" PRIu64 ".%" PRIu64, ino, off);
}

static bool is_short(uint64_t start, uint64_t end)
{
	return end - start < PL_BYTE_MAX;
}

/* --- range lists (pure) ------------------------------------------------- */

/* The owner's list with [start,end] set to type (F_UNLCK: removed). */
static int ranges_apply(const struct pl_range *r, size_t n, uint64_t start, uint64_t end,
			short type, bool coarse, struct pl_range **out, size_t *nout)
{
	struct pl_range *v = malloc((2 * n + 1) * sizeof(*v));
	size_t k = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (r[i].end < start || r[i].start > end) {
			v[k++] = r[i];
			continue;
		}
		if (r[i].start < start) {
			v[k] = r[i];
			v[k++].end = start - 1;
		}
		if (r[i].end > end) {
			v[k] = r[i];
			v[k++].start = end + 1;
		}
	}
	if (type != F_UNLCK)
		v[k++] = (struct pl_range){ start, end, type, coarse };
	if (k > PL_RANGES_MAX) {
		free(v);
		return -ENOLCK;
	}
	*out = v;
	*nout = k;
	return 0;
}

/* Mode the list needs on "p<ino>". */
static int need_p(const struct pl_range *r, size_t n)
{
	int m = PL_NONE;

	for (size_t i = 0; i < n; i++) {
		bool w = r[i].type == F_WRLCK;

		m = join(m, r[i].coarse ? (w ? VMFS_DLM_EX : VMFS_DLM_PR)
					: (w ? VMFS_DLM_CW : VMFS_DLM_CR));
	}
	return m;
}

/* Mode the list needs on byte off's own resource. */
static int need_byte(const struct pl_range *r, size_t n, uint64_t off)
{
	for (size_t i = 0; i < n; i++)
		if (!r[i].coarse && r[i].start <= off && off <= r[i].end)
			return r[i].type == F_WRLCK ? VMFS_DLM_EX : VMFS_DLM_PR;
	return PL_NONE;
}

/* --- the table's objects ------------------------------------------------ */

static size_t bucket_of(char kind, uint64_t ino, uint64_t owner)
{
	uint64_t x = ino * 0x9e3779b97f4a7c15ull ^ owner ^ (uint64_t)kind;

	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	return (size_t)(x >> 32) % PL_BUCKETS;
}

/* Find (or create) the object and make it ours (busy).  With t->mu. */
static struct pl_obj *obj_get(struct plock_tab *t, char kind, uint64_t ino, uint64_t owner,
			      bool create)
{
	size_t bk = bucket_of(kind, ino, owner);
	struct pl_obj *o;

	for (o = t->bucket[bk]; o; o = o->next)
		if (o->kind == kind && o->ino == ino && o->owner == owner)
			break;
	if (!o) {
		if (!create)
			return NULL;
		o = calloc(1, sizeof(*o));
		if (!o)
			return NULL;
		o->kind = kind;
		o->ino = ino;
		o->owner = owner;
		o->mode = PL_NONE;
		o->next = t->bucket[bk];
		t->bucket[bk] = o;
	}
	o->refs++;
	while (o->busy)
		pthread_cond_wait(&t->cond, &t->mu);
	o->busy = true;
	return o;
}

/* Give the object up; freed when nobody uses it and it holds nothing.
 * With t->mu. */
static void obj_put(struct plock_tab *t, struct pl_obj *o)
{
	struct pl_obj **pp;

	o->busy = false;
	o->refs--;
	pthread_cond_broadcast(&t->cond);
	if (o->refs || o->nr || o->nb || o->mode != PL_NONE)
		return;
	for (pp = &t->bucket[bucket_of(o->kind, o->ino, o->owner)]; *pp; pp = &(*pp)->next)
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	free(o->r);
	free(o->b);
	free(o);
}

/* Wait until nobody else works on o, then work on it again.  With t->mu. */
static void obj_rebusy(struct plock_tab *t, struct pl_obj *o)
{
	while (o->busy)
		pthread_cond_wait(&t->cond, &t->mu);
	o->busy = true;
}

static struct pl_byte *byte_find(struct pl_obj *o, uint64_t off)
{
	for (size_t i = 0; i < o->nb; i++)
		if (o->b[i].off == off)
			return &o->b[i];
	return NULL;
}

static struct pl_byte *byte_add(struct pl_obj *o, uint64_t off)
{
	if (o->nb == o->cb) {
		size_t nc = o->cb ? 2 * o->cb : 16;
		struct pl_byte *nb;

		if (nc > PL_BYTES_MAX)
			return NULL;
		nb = realloc(o->b, nc * sizeof(*nb));
		if (!nb)
			return NULL;
		o->b = nb;
		o->cb = nc;
	}
	memset(&o->b[o->nb], 0, sizeof(o->b[0]));
	o->b[o->nb].off = off;
	o->b[o->nb].mode = PL_NONE;
	return &o->b[o->nb++];
}

static void byte_remove(struct pl_obj *o, struct pl_byte *b)
{
	*b = o->b[--o->nb];
}

/* New requests are refused with -EIO without a lease or a daemon. */
static int tab_usable(struct plock_tab *t)
{
	int ret;

	pthread_mutex_lock(&t->mu);
	ret = (t->dead || t->failed || t->lease == 0) ? -EIO : 0;
	pthread_mutex_unlock(&t->mu);
	return ret;
}

/* --- lock-manager calls (never with t->mu) ------------------------------ */

static int dlm_try(struct plock_tab *t, const char *res, int mode, const char *tag,
		   struct vmfs_dlm_lksb *lk)
{
	return map_err(vmfs_dlm_lock(t->h, t->ls, res, mode, VMFS_DLM_NOQUEUE, tag, -1, lk));
}

static int dlm_try_convert(struct plock_tab *t, struct vmfs_dlm_lksb *lk, int mode)
{
	return map_err(vmfs_dlm_convert(t->h, lk, mode, VMFS_DLM_NOQUEUE, -1));
}

/* Release or down-convert: cannot wait; a failure means the lock is gone
 * already (daemon dead, lock lost), which is what we wanted anyway. */
static void dlm_drop(struct plock_tab *t, struct vmfs_dlm_lksb *lk)
{
	int ret = vmfs_dlm_unlock(t->h, lk, 0);

	if (ret < 0 && ret != VMFS_DLM_EDAEMON)
		log_ls(LOG_WARNING, t->ls, "plock: release of lock %" PRIu64 ": %s", lk->lkid,
		       vmfs_dlm_strerror(ret));
}

static void dlm_down(struct plock_tab *t, struct vmfs_dlm_lksb *lk, int mode)
{
	int ret = vmfs_dlm_convert(t->h, lk, mode, 0, -1);

	if (ret < 0 && ret != VMFS_DLM_EDAEMON)
		log_ls(LOG_WARNING, t->ls, "plock: down-convert of lock %" PRIu64 ": %s",
		       lk->lkid, vmfs_dlm_strerror(ret));
}

/* A queued request we wait for.  Freed by whoever drops the last ref: the
 * waiting thread, or the completion callback when the waiter gave up. */
struct pl_wait {
	struct plock_tab *t;
	int refs;			/* t->mu */
	bool done;			/* t->mu */
	bool is_convert;
	int old_mode;			/* convert: mode to go back to if abandoned */
	uint64_t lkid;			/* written by the library (atomic reads) */
	struct vmfs_dlm_lksb lksb;	/* outcome; t->mu */
};

static void on_completion(void *arg, const struct vmfs_dlm_lksb *lksb)
{
	struct pl_wait *w = arg;
	struct plock_tab *t;
	bool last;

	if (!w)		/* the undo of an abandoned convert: nothing to do */
		return;
	t = w->t;
	pthread_mutex_lock(&t->mu);
	w->lksb = *lksb;
	w->done = true;
	last = --w->refs == 0;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->mu);
	if (!last)
		return;
	/* Abandoned (lease lost while waiting) and granted late: undo. */
	if (lksb->status == 0) {
		if (w->is_convert)
			(void)vmfs_dlm_convert_async(t->h, lksb->lkid, w->old_mode, 0, NULL, NULL);
		else
			(void)vmfs_dlm_unlock(t->h, &w->lksb, 0);
	}
	free(w);
}

void plock_intr_init(struct plock_intr *in, struct plock_tab *t)
{
	in->t = t;
	atomic_init(&in->fired, false);
}

void plock_interrupt(struct plock_intr *in)
{
	atomic_store(&in->fired, true);
	if (!in->t)
		return;
	pthread_mutex_lock(&in->t->mu);
	pthread_cond_broadcast(&in->t->cond);
	pthread_mutex_unlock(&in->t->mu);
}

/* Wait for w's outcome; cancel it when the lease is lost, the daemon goes
 * or the request is interrupted, and give up PL_CANCEL_GRACE_MS later (the
 * callback cleans up). */
static int wait_done(struct plock_tab *t, struct pl_wait *w, struct vmfs_dlm_lksb *out,
		     struct plock_intr *intr)
{
	unsigned long long cancel_at = 0;
	bool by_intr = false;
	int ret;

	pthread_mutex_lock(&t->mu);
	for (;;) {
		struct timespec ts;
		bool gone = t->lease == 0 || t->dead || t->failed;

		if (w->done)
			break;
		if ((gone || (intr && atomic_load(&intr->fired))) && !cancel_at) {
			uint64_t lkid = __atomic_load_n(&w->lkid, __ATOMIC_RELAXED);

			if (lkid) {
				by_intr = !gone;
				pthread_mutex_unlock(&t->mu);
				(void)vmfs_dlm_cancel(t->h, lkid);
				pthread_mutex_lock(&t->mu);
				cancel_at = now_mono_ms();
				continue;
			}
		}
		if (cancel_at && now_mono_ms() - cancel_at > PL_CANCEL_GRACE_MS) {
			w->refs--;	/* the callback frees it */
			pthread_mutex_unlock(&t->mu);
			return by_intr ? -EINTR : -EIO;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&t->cond, &t->mu, &ts);
	}
	*out = w->lksb;
	ret = w->lksb.status;
	pthread_mutex_unlock(&t->mu);
	free(w);
	if (ret == VMFS_DLM_ECANCELED)
		return by_intr ? -EINTR : -EIO;	/* we cancel for no other reason */
	return map_err(ret);
}

/* Queue a lock on res and wait for it. */
static int wait_lock(struct plock_tab *t, const char *res, int mode, const char *tag,
		     struct vmfs_dlm_lksb *out, struct plock_intr *intr)
{
	struct pl_wait *w = calloc(1, sizeof(*w));
	int ret;

	if (!w)
		return -ENOMEM;
	w->t = t;
	w->refs = 2;
	ret = vmfs_dlm_lock_async(t->h, t->ls, res, mode, 0, tag, w, &w->lkid);
	if (ret < 0) {
		free(w);
		return map_err(ret);
	}
	return wait_done(t, w, out, intr);
}

/* Queue an up-convert of lk and wait for it; lk->mode updated on grant. */
static int wait_convert(struct plock_tab *t, struct vmfs_dlm_lksb *lk, int old_mode, int mode,
			struct plock_intr *intr)
{
	struct pl_wait *w = calloc(1, sizeof(*w));
	struct vmfs_dlm_lksb got;
	int ret;

	if (!w)
		return -ENOMEM;
	w->t = t;
	w->refs = 2;
	w->is_convert = true;
	w->old_mode = old_mode;
	w->lkid = lk->lkid;
	ret = vmfs_dlm_convert_async(t->h, lk->lkid, mode, 0, NULL, w);
	if (ret < 0) {
		free(w);
		return map_err(ret);
	}
	ret = wait_done(t, w, &got, intr);
	if (ret == 0) {
		lk->mode = got.mode;
		lk->epoch = got.epoch;
	}
	return ret;
}

/* --- UP and DOWN --------------------------------------------------------- */

/* One change made by an UP attempt, to undo on refusal. */
struct pl_step {
	bool is_p;
	uint64_t off;		/* byte */
	int old_mode;		/* PL_NONE: the lock is new */
};

/* Where an UP attempt was refused. */
struct pl_block {
	char res[VMFS_DLM_NAME_MAX + 1];
	int mode;		/* wanted */
	bool is_p;
	uint64_t off;
	bool convert;		/* the owner holds it at a weaker mode */
};

/* A lock taken while waiting, kept aside for the next attempt. */
struct pl_extra {
	bool held;
	char res[VMFS_DLM_NAME_MAX + 1];
	int mode;
	struct vmfs_dlm_lksb lk;
};

/* Take or up-convert one resource of o to `want` (NOQUEUE, or use the
 * extra lock if it is this resource at this mode). */
static int up_one(struct plock_tab *t, const char *res, const char *tag,
		  int *held, struct vmfs_dlm_lksb *lk, int want, struct pl_extra *x)
{
	int ret;

	if (*held == PL_NONE) {
		if (x->held && x->mode == want && !strcmp(x->res, res)) {
			*lk = x->lk;
			x->held = false;
			*held = want;
			return 0;
		}
		ret = dlm_try(t, res, want, tag, lk);
	} else {
		ret = dlm_try_convert(t, lk, want);
	}
	if (ret == 0)
		*held = want;
	return ret;
}

/* Undo the steps of a refused attempt (down-converts and releases: they
 * cannot wait). */
static void up_rollback(struct plock_tab *t, struct pl_obj *o, struct pl_step *s, size_t n)
{
	while (n--) {
		struct vmfs_dlm_lksb *lk;
		int *held;
		struct pl_byte *b = NULL;

		if (s[n].is_p) {
			lk = &o->lk;
			held = &o->mode;
		} else {
			b = byte_find(o, s[n].off);
			if (!b)
				continue;
			lk = &b->lk;
			held = &b->mode;
		}
		if (s[n].old_mode == PL_NONE) {
			dlm_drop(t, lk);
			if (b)
				byte_remove(o, b);
			else
				*held = PL_NONE;
		} else {
			dlm_down(t, lk, s[n].old_mode);
			*held = s[n].old_mode;
		}
	}
}

/* Make o hold what the list rn needs on "p<ino>" and on the bytes of
 * [start,end] (byte requests only).  0, or -EAGAIN with *blk filled in
 * (nothing of this attempt kept), or another error. */
static int up_phase(struct plock_tab *t, struct pl_obj *o, const struct pl_range *rn, size_t nn,
		    bool bytes, uint64_t start, uint64_t end, const char *tag,
		    struct pl_extra *x, struct pl_block *blk)
{
	struct pl_step steps[PL_BYTE_MAX + 1];
	size_t ns = 0;
	char res[VMFS_DLM_NAME_MAX + 1];
	int want, ret;

	want = need_p(rn, nn);
	if (!covers(o->mode, want)) {
		int target = join(o->mode, want);

		res_p(res, sizeof(res), 'p', o->ino);
		steps[ns] = (struct pl_step){ .is_p = true, .old_mode = o->mode };
		ret = up_one(t, res, tag, &o->mode, &o->lk, target, x);
		if (ret < 0) {
			if (ret == -EAGAIN) {
				snprintf(blk->res, sizeof(blk->res), "%s", res);
				blk->mode = target;
				blk->is_p = true;
				blk->convert = o->mode != PL_NONE;
			}
			return ret;
		}
		ns++;
	}
	for (uint64_t off = start; bytes; off++) {
		struct pl_byte *b;

		want = need_byte(rn, nn, off);
		b = byte_find(o, off);
		if (!covers(b ? b->mode : PL_NONE, want)) {
			bool added = false;

			if (!b) {
				b = byte_add(o, off);
				if (!b) {
					ret = -ENOLCK;
					goto fail;
				}
				added = true;
			}
			res_byte(res, sizeof(res), o->ino, off);
			steps[ns] = (struct pl_step){ .off = off, .old_mode = b->mode };
			ret = up_one(t, res, tag, &b->mode, &b->lk, want, x);
			if (ret < 0) {
				if (ret == -EAGAIN) {
					snprintf(blk->res, sizeof(blk->res), "%s", res);
					blk->mode = want;
					blk->is_p = false;
					blk->off = off;
					blk->convert = !added;
				}
				if (added)
					byte_remove(o, b);
				goto fail;
			}
			ns++;
		}
		if (off == end)
			break;
	}
	return 0;
fail:
	up_rollback(t, o, steps, ns);
	return ret;
}

/* Release / down-convert everything the committed list does not need. */
static void down_phase(struct plock_tab *t, struct pl_obj *o)
{
	int want;

	for (size_t i = 0; i < o->nb;) {
		struct pl_byte *b = &o->b[i];

		want = need_byte(o->r, o->nr, b->off);
		if (want == PL_NONE) {
			dlm_drop(t, &b->lk);
			byte_remove(o, b);
			continue;
		}
		if (want != b->mode) {
			dlm_down(t, &b->lk, want);
			b->mode = want;
		}
		i++;
	}
	want = need_p(o->r, o->nr);
	if (o->mode != PL_NONE && want == PL_NONE) {
		dlm_drop(t, &o->lk);
		o->mode = PL_NONE;
	} else if (want != o->mode) {
		dlm_down(t, &o->lk, want);
		o->mode = want;
	}
}

/* --- record locks ------------------------------------------------------- */

int plock_setlk(struct plock_tab *t, uint64_t ino, uint64_t owner, pid_t pid, short type,
		uint64_t start, uint64_t end, bool wait, struct plock_intr *intr)
{
	struct pl_extra x = { .held = false };
	struct pl_range *rn = NULL;
	struct pl_obj *o;
	char tag[VMFS_DLM_TAG_MAX + 1];
	bool bytes = is_short(start, end);
	size_t nn;
	int ret;

	if (!t)
		return -ENOLCK;
	if (end < start || (type != F_RDLCK && type != F_WRLCK && type != F_UNLCK))
		return -EINVAL;
	if (type != F_UNLCK && (ret = tab_usable(t)) < 0)
		return ret;
	snprintf(tag, sizeof(tag), "pid %d", (int)pid);

	pthread_mutex_lock(&t->mu);
	o = obj_get(t, 'p', ino, owner, type != F_UNLCK);
	if (!o) {
		pthread_mutex_unlock(&t->mu);
		return type == F_UNLCK ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&t->mu);

	for (;;) {
		struct pl_block blk;

		ret = ranges_apply(o->r, o->nr, start, end, type, !bytes, &rn, &nn);
		if (ret < 0)
			break;
		if (type == F_UNLCK)
			break;
		ret = up_phase(t, o, rn, nn, bytes, start, end, tag, &x, &blk);
		if (ret != -EAGAIN || !wait)
			break;
		free(rn);
		rn = NULL;
		if (x.held) {	/* adopted by nobody: the list changed under us */
			dlm_drop(t, &x.lk);
			x.held = false;
		}
		if (blk.convert) {
			/* The owner's own lock goes up: wait as a queued
			 * convert, the owner stays busy. */
			struct vmfs_dlm_lksb *lk = blk.is_p ? &o->lk : &byte_find(o, blk.off)->lk;
			int *held = blk.is_p ? &o->mode : &byte_find(o, blk.off)->mode;

			ret = wait_convert(t, lk, *held, blk.mode, intr);
			if (ret < 0)
				break;
			*held = blk.mode;
		} else {
			/* A new lock: wait for it aside, the owner free for
			 * its other threads meanwhile. */
			pthread_mutex_lock(&t->mu);
			o->busy = false;
			pthread_cond_broadcast(&t->cond);
			pthread_mutex_unlock(&t->mu);
			ret = wait_lock(t, blk.res, blk.mode, tag, &x.lk, intr);
			pthread_mutex_lock(&t->mu);
			obj_rebusy(t, o);
			pthread_mutex_unlock(&t->mu);
			if (ret < 0)
				break;
			x.held = true;
			snprintf(x.res, sizeof(x.res), "%s", blk.res);
			x.mode = blk.mode;
		}
		if ((ret = tab_usable(t)) < 0)
			break;
	}
	if (x.held)
		dlm_drop(t, &x.lk);

	pthread_mutex_lock(&t->mu);
	if (ret == 0) {
		free(o->r);
		o->r = rn;
		o->nr = nn;
		rn = NULL;
		if (type != F_UNLCK)
			o->pid = pid;
	}
	pthread_mutex_unlock(&t->mu);
	free(rn);
	down_phase(t, o);
	pthread_mutex_lock(&t->mu);
	obj_put(t, o);
	pthread_mutex_unlock(&t->mu);
	return ret;
}

void plock_release_owner(struct plock_tab *t, uint64_t ino, uint64_t owner)
{
	int ret;

	if (!t)
		return;
	ret = plock_setlk(t, ino, owner, 0, F_UNLCK, 0, PLOCK_EOF, false, NULL);
	if (ret < 0)	/* only -ENOMEM can get here; the locks stay held */
		log_ls(LOG_WARNING, t->ls, "plock: release of owner %" PRIx64 " on inode %" PRIu64
		       ": %s", owner, ino, strerror(-ret));
}

/* A local owner's range conflicting with the request, with t->mu. */
static bool local_conflict(struct plock_tab *t, uint64_t ino, uint64_t owner, short type,
			   uint64_t start, uint64_t end, struct pl_range *hit, pid_t *pid)
{
	for (size_t bk = 0; bk < PL_BUCKETS; bk++)
		for (struct pl_obj *o = t->bucket[bk]; o; o = o->next) {
			if (o->kind != 'p' || o->ino != ino || o->owner == owner)
				continue;
			for (size_t i = 0; i < o->nr; i++) {
				const struct pl_range *r = &o->r[i];

				if (r->end < start || r->start > end)
					continue;
				if (type != F_WRLCK && r->type != F_WRLCK)
					continue;
				*hit = *r;
				*pid = o->pid;
				return true;
			}
		}
	return false;
}

/* Would o's lock lk (held at *held) go to `want`?  Try it NOQUEUE and put
 * everything back.  0 (grantable), -EAGAIN, or an error. */
static int probe_one(struct plock_tab *t, const char *res, int held, struct vmfs_dlm_lksb *lk,
		     int want)
{
	struct vmfs_dlm_lksb tmp;
	int target = join(held, want);
	int ret;

	if (target == held)
		return 0;
	if (held == PL_NONE) {
		ret = dlm_try(t, res, target, "getlk", &tmp);
		if (ret == 0)
			dlm_drop(t, &tmp);
		return ret;
	}
	ret = dlm_try_convert(t, lk, target);
	if (ret == 0)
		dlm_down(t, lk, held);
	return ret;
}

int plock_getlk(struct plock_tab *t, uint64_t ino, uint64_t owner, short *type,
		uint64_t *start, uint64_t *end, pid_t *pid)
{
	char res[VMFS_DLM_NAME_MAX + 1];
	struct pl_range hit;
	struct pl_obj *o;
	bool bytes;
	bool wr;
	int ret;

	if (!t)
		return -ENOLCK;
	if (!type || !start || !end || !pid || *end < *start ||
	    (*type != F_RDLCK && *type != F_WRLCK))
		return -EINVAL;
	if ((ret = tab_usable(t)) < 0)
		return ret;
	wr = *type == F_WRLCK;
	bytes = is_short(*start, *end);

	pthread_mutex_lock(&t->mu);
	if (local_conflict(t, ino, owner, *type, *start, *end, &hit, pid)) {
		pthread_mutex_unlock(&t->mu);
		*type = hit.type;
		*start = hit.start;
		*end = hit.end;
		return 0;
	}
	o = obj_get(t, 'p', ino, owner, true);
	pthread_mutex_unlock(&t->mu);
	if (!o)
		return -ENOMEM;

	/* "p<ino>", then the bytes; the first refusal is the answer. */
	res_p(res, sizeof(res), 'p', ino);
	ret = probe_one(t, res, o->mode, &o->lk,
			bytes ? (wr ? VMFS_DLM_CW : VMFS_DLM_CR) : (wr ? VMFS_DLM_EX : VMFS_DLM_PR));
	if (ret == -EAGAIN) {
		short ctype = F_WRLCK;

		if (wr && probe_one(t, res, o->mode, &o->lk,
				    bytes ? VMFS_DLM_CR : VMFS_DLM_PR) == 0)
			ctype = F_RDLCK;
		*type = ctype;
		*start = 0;
		*end = PLOCK_EOF;
		*pid = 0;
		ret = 0;
		goto out;
	}
	for (uint64_t off = *start; ret == 0 && bytes; off++) {
		struct pl_byte *b = byte_find(o, off);
		int held = b ? b->mode : PL_NONE;

		res_byte(res, sizeof(res), ino, off);
		ret = probe_one(t, res, held, b ? &b->lk : NULL, wr ? VMFS_DLM_EX : VMFS_DLM_PR);
		if (ret == -EAGAIN) {
			short ctype = F_WRLCK;

			if (wr && probe_one(t, res, held, b ? &b->lk : NULL, VMFS_DLM_PR) == 0)
				ctype = F_RDLCK;
			*type = ctype;
			*start = *end = off;
			*pid = 0;
			ret = 0;
			goto out;
		}
		if (off == *end)
			break;
	}
	if (ret == 0)
		*type = F_UNLCK;
out:
	pthread_mutex_lock(&t->mu);
	obj_put(t, o);
	pthread_mutex_unlock(&t->mu);
	return ret;
}

/* --- flock ---------------------------------------------------------------- */

int plock_flock(struct plock_tab *t, uint64_t ino, uint64_t owner, int op,
		struct plock_intr *intr)
{
	bool nb = op & LOCK_NB;
	char res[VMFS_DLM_NAME_MAX + 1];
	struct pl_obj *o;
	int want, ret = 0;

	if (!t)
		return -ENOLCK;
	op &= ~LOCK_NB;
	if (op == LOCK_UN) {
		plock_release_flock(t, ino, owner);
		return 0;
	}
	if (op != LOCK_SH && op != LOCK_EX)
		return -EINVAL;
	if ((ret = tab_usable(t)) < 0)
		return ret;
	want = op == LOCK_EX ? VMFS_DLM_EX : VMFS_DLM_PR;
	res_p(res, sizeof(res), 'f', ino);

	pthread_mutex_lock(&t->mu);
	o = obj_get(t, 'f', ino, owner, true);
	pthread_mutex_unlock(&t->mu);
	if (!o)
		return -ENOMEM;

	if (o->mode == want) {
		ret = 0;
	} else if (o->mode == PL_NONE) {
		ret = dlm_try(t, res, want, "flock", &o->lk);
		if (ret == -EAGAIN && !nb)
			ret = wait_lock(t, res, want, "flock", &o->lk, intr);
		if (ret == 0)
			o->mode = want;
	} else if (covers(o->mode, want)) {
		dlm_down(t, &o->lk, want);
		o->mode = want;
	} else {
		/* SH -> EX.  Non-blocking: try the convert, keep SH if it is
		 * refused.  Blocking: as Linux does, drop SH first and queue
		 * for EX (two SH holders upgrading would deadlock as
		 * converters). */
		ret = dlm_try_convert(t, &o->lk, want);
		if (ret == 0) {
			o->mode = want;
		} else if (ret == -EAGAIN && !nb) {
			dlm_drop(t, &o->lk);
			o->mode = PL_NONE;
			ret = wait_lock(t, res, want, "flock", &o->lk, intr);
			if (ret == 0)
				o->mode = want;
		}
	}
	pthread_mutex_lock(&t->mu);
	obj_put(t, o);
	pthread_mutex_unlock(&t->mu);
	return ret;
}

void plock_release_flock(struct plock_tab *t, uint64_t ino, uint64_t owner)
{
	struct pl_obj *o;

	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	o = obj_get(t, 'f', ino, owner, false);
	pthread_mutex_unlock(&t->mu);
	if (!o)
		return;
	if (o->mode != PL_NONE) {
		dlm_drop(t, &o->lk);
		o->mode = PL_NONE;
	}
	pthread_mutex_lock(&t->mu);
	obj_put(t, o);
	pthread_mutex_unlock(&t->mu);
}

/* --- table and event thread ------------------------------------------------ */

static void on_lost(void *ctx, uint64_t lkid, int reason)
{
	struct plock_tab *t = ctx;

	log_ls(LOG_ERR, t->ls, "plock: lock %" PRIu64 " lost (reason %d): refusing new "
	       "POSIX/flock locks on this mount", lkid, reason);
	pthread_mutex_lock(&t->mu);
	t->failed = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->mu);
}

static void on_lease(void *ctx, int valid)
{
	struct plock_tab *t = ctx;

	pthread_mutex_lock(&t->mu);
	if (t->lease != valid)
		log_ls(valid ? LOG_INFO : LOG_WARNING, t->ls, "plock: lease %s",
		       valid ? "valid" : "lost: new POSIX/flock locks fail with EIO");
	t->lease = valid;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->mu);
}

/* Reads the handle's events, so completions, lost locks and the lease are
 * seen even when no FUSE worker is inside a lock-manager call. */
static void *event_thread(void *arg)
{
	struct plock_tab *t = arg;
	struct pollfd pfd[2] = {
		{ .fd = vmfs_dlm_fd(t->h), .events = POLLIN },
		{ .fd = t->stop_fd, .events = POLLIN },
	};

	for (;;) {
		int n = poll(pfd, 2, 1000);

		if (n < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN)
			break;
		if (vmfs_dlm_dispatch(t->h) == VMFS_DLM_EDAEMON) {
			pthread_mutex_lock(&t->mu);
			if (!t->dead)
				log_ls(LOG_ERR, t->ls, "plock: lock manager connection lost: "
				       "new POSIX/flock locks fail with EIO");
			t->dead = true;
			pthread_cond_broadcast(&t->cond);
			pthread_mutex_unlock(&t->mu);
			break;
		}
	}
	return NULL;
}

int plock_tab_new(const char *ls, struct plock_tab **out)
{
	struct vmfs_dlm_callbacks cb = {
		.completion = on_completion,
		.lost = on_lost,
		.lease = on_lease,
	};
	pthread_condattr_t ca;
	struct plock_tab *t;
	int ret;

	*out = NULL;
	if (!ls || !*ls || strlen(ls) > VMFS_DLM_NAME_MAX)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	snprintf(t->ls, sizeof(t->ls), "%s", ls);
	t->lease = -1;
	t->stop_fd = -1;
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cond, &ca);
	pthread_condattr_destroy(&ca);

	ret = vmfs_dlm_open("vmfs-mount", &t->h);
	if (ret < 0) {
		log_ls(LOG_ERR, ls, "plock: cannot connect to vmfs-dlmd: %s",
		       vmfs_dlm_strerror(ret));
		if (ret <= VMFS_DLM_EBASE)	/* a domain error: no usable daemon */
			ret = -EIO;
		goto fail;
	}
	vmfs_dlm_set_callbacks(t->h, &cb, t);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->stop_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = -pthread_create(&t->thr, NULL, event_thread, t);
	if (ret < 0)
		goto fail;
	*out = t;
	return 0;
fail:
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	if (t->h)
		vmfs_dlm_close(t->h);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->mu);
	free(t);
	return ret;
}

/* Closing the connection releases every lock of the table at once. */
void plock_tab_free(struct plock_tab *t)
{
	uint64_t one = 1;

	if (!t)
		return;
	if (write(t->stop_fd, &one, sizeof(one)) < 0)
		log_ls(LOG_WARNING, t->ls, "plock: cannot stop the event thread: %m");
	else
		pthread_join(t->thr, NULL);
	vmfs_dlm_close(t->h);
	for (size_t bk = 0; bk < PL_BUCKETS; bk++)
		while (t->bucket[bk]) {
			struct pl_obj *o = t->bucket[bk];

			t->bucket[bk] = o->next;
			free(o->r);
			free(o->b);
			free(o);
		}
	close(t->stop_fd);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->mu);
	free(t);
}
