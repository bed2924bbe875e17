/* openlock.c — per-file open locks (see openlock.h for the contract).
 *
 * One struct ol_lock per lock-manager lock this mount holds (or requests)
 * on an inode; the table maps ino -> the inode's *current* lock.  Every
 * open is an ol_ref on that lock and counts in nopen[mode it needs].
 *
 * States of an ol_lock (fields: in_table, pending, fenced; busy is an
 * orthogonal "a thread is in a lock-manager call for it" bit):
 *
 *   HELD      granted at lksb.mode, in the table.  Opens attach when the
 *             held mode covers theirs, else one NOQUEUE up-convert.
 *   INCOMING  openlock_prepare()'s EX request, queued (pending), in the
 *             table; opens attach (check() -EAGAIN); completion() turns it
 *             into HELD (granted) or FENCED (refused/cancelled with opens
 *             attached) or drops it (refused, no opens).
 *   FENCED    lost without our release (LOST callback, or an INCOMING that
 *             failed with opens attached): out of the table, sticky (but
 *             see RETURN below); lives until its last ref closes.  New
 *             opens of the ino take a new lock.
 *   (gone)    released at last close / unprepare, freed.
 *
 * RETURN claim (openlock_return_arm(), the source of a live migration): a
 * second lock-manager request of a HELD EX lock, same mode, tagged
 * VMFS_HANDOFF_RETURN_TAG + VM, queued behind the lock itself (ret_armed,
 * ret_out).
 * It waits there while we hold the file, and behind the destination once
 * the handoff's TRANSFER moved our lock away (LOST, reason TRANSFERRED:
 * the lock becomes FENCED with lost_xfer set).  When it is granted (the
 * destination's lock transferred back to it, or released because the
 * destination closed or died) and the lock is FENCED *by that transfer*,
 * the lock is re-armed: the grant becomes its lksb, fenced is cleared and
 * it goes back into the table, so the handles opened under it (the paused
 * VM's, which did no I/O in between) may write again.  In every other
 * case a granted return claim is released at once.  It is cancelled at the
 * last close, by openlock_return_drop(), or when the tab goes away.
 *
 *   event \ lock        HELD (armed)          FENCED, lost_xfer      FENCED, other
 *   return granted      release it (**)       RE-ARM -> HELD         release it
 *   return refused      disarm                disarm                 disarm
 *   last close          cancel, unlock        cancel, free later     cancel
 *   drop                cancel                cancel                 cancel
 *   (**) cannot happen for EX: our own lock stands in front of it.
 *
 *   event \ state      HELD                 INCOMING               FENCED
 *   open (covered)     attach               attach (any mode)      (not in table)
 *   open (stronger)    convert NOQUEUE      attach                 -
 *   close (last)       unlock -> gone       stays while prepared   free at 0 refs
 *   close (stronger)   down-convert         -                      -
 *   lost(lkid)         -> FENCED            (cannot happen)        -
 *   completion ok      -                    -> HELD                -
 *   completion error   -                    -> FENCED / gone       -
 *   unprepare          unlock if no opens   cancel, wait outcome   -
 *
 * Invariants:
 *   I1  At most one ol_lock per ino is in the table; only it takes opens.
 *   I2  The table mutex t->mu is never held across a *synchronous* lock
 *       manager call: those may run our callbacks in the calling thread,
 *       and the callbacks take t->mu.  While a thread is in such a call
 *       for a lock, l->busy is set and other threads wait on t->cond
 *       before touching that lock's mode.  Asynchronous calls (lock_async,
 *       cancel) and calls from inside a callback never run callbacks, so
 *       they may be made with t->mu held.
 *   I3  An ol_lock is freed only when it is out of the table, has no refs,
 *       is not busy, no completion() for it is outstanding (async_out,
 *       ret_out) and it is off t->returns (I5).
 *   I4  fenced is sticky: check() reports -EIO; the ONLY thing that
 *       clears it is the grant of the lock's own armed return claim after
 *       the lock was transferred away (lost_xfer).  A lock lost for any
 *       other reason (purge after this host was fenced, cluster reset,
 *       daemon gone) or an INCOMING that failed is never re-armed, and
 *       neither is a lock whose lkid moved again since (only the LOST of
 *       lksb.lkid sets lost_xfer; any other fence clears it), nor one
 *       whose host lost its lease after the transfer (on_lease clears it).
 *   I5  A lock with an armed or outstanding return claim is on t->returns
 *       (ret_listed) until the claim's outcome arrived and it is disarmed;
 *       that list, not the table, is how drop and free find FENCED ones.
 *
 * Why not the lock cache (vmfs_dlm_cache_*): a cached lock is released on
 * demand, so a migration destination's queued request would take the disk
 * without the handoff's epoch check (include/vmfs/handoff.h).
 */
#include "config.h"
#include "openlock.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vmfs/dlm.h"
#include "vmfs/handoff.h"
#include "log.h"

#define OL_BUCKETS 256		/* hash buckets (open files of one mount) */
#define OL_LOST_RING 16		/* LOST events for lkids not yet in the table */
#define OL_QUEUE_WAIT_MS 10000	/* prepare/unprepare: wait for the daemon's answer */

/* The argument of an asynchronous request: which of the lock's two
 * requests a completion is for. */
enum ol_req { OL_REQ_INCOMING, OL_REQ_RETURN };
struct ol_cb {
	enum ol_req kind;		/* constant */
	struct ol_lock *l;		/* constant */
};

struct ol_lock {
	struct openlock_tab *t;		/* constant */
	struct ol_lock *next;		/* hash chain; under t->mu */
	uint64_t ino;			/* constant */
	char res[24];			/* "i<ino>"; constant */
	struct vmfs_dlm_lksb lksb;	/* lkid, epoch, mode held; under t->mu */
	/* prepare's request: the library stores the lkid here (under its own
	 * lock) once the daemon queued it; read with atomic loads. */
	uint64_t async_lkid;
	unsigned nopen[VMFS_DLM_EX + 1];	/* opens per mode needed; under t->mu */
	unsigned refs;			/* sum of nopen; under t->mu */
	bool in_table;			/* under t->mu */
	bool busy;			/* see I2; under t->mu */
	bool fenced;			/* sticky (I4); under t->mu */
	bool pending;			/* INCOMING, not granted yet; under t->mu */
	bool async_out;			/* completion() to come (I3); under t->mu */
	bool prepared;			/* between prepare and unprepare; under t->mu */
	char vm[VMFS_DLM_TAG_MAX + 1];	/* prepare's tag; constant while prepared */
	struct ol_cb cb_in, cb_ret;	/* completion arguments; constant */
	/* return claim (RETURN above) */
	uint64_t ret_lkid;		/* stored by the library once queued; atomic loads */
	bool ret_armed;			/* wanted: between arm and drop/close; under t->mu */
	bool ret_out;			/* its completion() to come (I3); under t->mu */
	bool ret_listed;		/* on t->returns (I5); under t->mu */
	bool lost_xfer;			/* fenced by the TRANSFER of lksb.lkid (I4); under t->mu */
	bool ret_back;			/* re-armed by it; reported until drop/arm; under t->mu */
	struct ol_lock *ret_next;	/* t->returns chain; under t->mu */
	char ret_vm[VMFS_DLM_TAG_MAX + 1];	/* under t->mu */
};

struct ol_ref {
	struct ol_lock *l;		/* constant */
	int mode;			/* the mode this open needs; constant */
};

struct openlock_tab {
	pthread_mutex_t mu;
	pthread_cond_t cond;		/* busy cleared / completion arrived */
	vmfs_dlm_t *h;			/* constant; the library serialises calls */
	char ls[VMFS_DLM_NAME_MAX + 1];	/* constant */
	pthread_t thread;		/* event thread */
	int stop_fd;			/* eventfd: tells the event thread to leave */
	bool lease_ok;			/* under mu */
	bool dead;			/* daemon connection lost, sticky; under mu */
	struct ol_lock *bucket[OL_BUCKETS];	/* under mu */
	struct ol_lock *returns;	/* locks with a return claim (I5); under mu */
	uint64_t lost_ring[OL_LOST_RING];	/* under mu */
	unsigned lost_next;		/* under mu */
};

/* --- modes --------------------------------------------------------------- */

static int mode_for(bool write, bool multiwriter)
{
	if (write)
		return multiwriter ? VMFS_DLM_CW : VMFS_DLM_EX;
	return multiwriter ? VMFS_DLM_CR : VMFS_DLM_PR;
}

/* Does holding `held` give everything `want` gives (the lock manager's
 * covering order; CW and PR/PW are not comparable). */
static bool mode_covers(int held, int want)
{
	switch (held) {
	case VMFS_DLM_EX: return true;
	case VMFS_DLM_PW: return want != VMFS_DLM_CW && want != VMFS_DLM_EX;
	case VMFS_DLM_PR: return want == VMFS_DLM_PR || want == VMFS_DLM_CR || want == VMFS_DLM_NL;
	case VMFS_DLM_CW: return want == VMFS_DLM_CW || want == VMFS_DLM_CR || want == VMFS_DLM_NL;
	case VMFS_DLM_CR: return want == VMFS_DLM_CR || want == VMFS_DLM_NL;
	default: return want == VMFS_DLM_NL;
	}
}

/* The weakest mode covering both (CW with PR: EX). */
static int mode_join(int a, int b)
{
	if (mode_covers(a, b))
		return a;
	if (mode_covers(b, a))
		return b;
	return VMFS_DLM_EX;
}

/* The mode l must be held at: the join of its opens' modes, EX while
 * prepared (the incoming VM's claim); -1 when nothing needs it. */
static int lock_needed(const struct ol_lock *l)
{
	int m = VMFS_DLM_NL, i;

	if (!l->refs && !l->prepared)
		return -1;
	for (i = VMFS_DLM_NL; i <= VMFS_DLM_EX; i++)
		if (l->nopen[i])
			m = mode_join(m, i);
	return l->prepared ? VMFS_DLM_EX : m;
}

static const char *mode_words(int mode)
{
	switch (mode) {
	case VMFS_DLM_EX: return "exclusive";
	case VMFS_DLM_PR: return "read-only shared";
	case VMFS_DLM_CW: return "multi-writer";
	case VMFS_DLM_CR: return "multi-writer read-only";
	default: return vmfs_dlm_mode_name(mode);
	}
}

/* --- table (all under t->mu) ---------------------------------------------- */

static struct ol_lock **bucket_of(struct openlock_tab *t, uint64_t ino)
{
	return &t->bucket[(ino * 0x9e3779b97f4a7c15ull) >> 56 & (OL_BUCKETS - 1)];
}

static struct ol_lock *tab_find(struct openlock_tab *t, uint64_t ino)
{
	struct ol_lock *l;

	for (l = *bucket_of(t, ino); l; l = l->next)
		if (l->ino == ino)
			return l;
	return NULL;
}

static struct ol_lock *tab_find_lkid(struct openlock_tab *t, uint64_t lkid)
{
	for (size_t i = 0; i < OL_BUCKETS; i++)
		for (struct ol_lock *l = t->bucket[i]; l; l = l->next)
			if (l->lksb.lkid == lkid ||
			    __atomic_load_n(&l->async_lkid, __ATOMIC_ACQUIRE) == lkid)
				return l;
	return NULL;
}

static void tab_insert(struct openlock_tab *t, struct ol_lock *l)
{
	struct ol_lock **b = bucket_of(t, l->ino);

	l->next = *b;
	*b = l;
	l->in_table = true;
}

static void tab_remove(struct openlock_tab *t, struct ol_lock *l)
{
	struct ol_lock **p;

	if (!l->in_table)
		return;
	for (p = bucket_of(t, l->ino); *p; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			break;
		}
	}
	l->next = NULL;
	l->in_table = false;
}

/* Wait on t->cond for at most ms.  With t->mu. */
static void cond_wait_ms(struct openlock_tab *t, long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&t->cond, &t->mu, &ts);
}

/* I3. */
static void lock_maybe_free(struct ol_lock *l)
{
	if (!l->in_table && !l->refs && !l->busy && !l->async_out && !l->ret_out &&
	    !l->ret_listed)
		free(l);
}

static struct ol_lock *lock_new(struct openlock_tab *t, uint64_t ino)
{
	struct ol_lock *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->t = t;
	l->ino = ino;
	l->cb_in = (struct ol_cb){ .kind = OL_REQ_INCOMING, .l = l };
	l->cb_ret = (struct ol_cb){ .kind = OL_REQ_RETURN, .l = l };
	snprintf(l->res, sizeof(l->res), "i%" PRIu64, ino);
	return l;
}

/* Wait until no thread is in a lock-manager call for ino's lock, and
 * return that lock (or NULL).  With t->mu. */
static struct ol_lock *tab_find_idle(struct openlock_tab *t, uint64_t ino)
{
	struct ol_lock *l;

	while ((l = tab_find(t, ino)) && l->busy)
		pthread_cond_wait(&t->cond, &t->mu);
	return l;
}

static void lock_unbusy(struct openlock_tab *t, struct ol_lock *l)
{
	l->busy = false;
	pthread_cond_broadcast(&t->cond);
}

/* A LOST that came before the lkid was stored (it may be delivered inside
 * the very vmfs_dlm_lock() call that granted it). */
static bool lost_early(struct openlock_tab *t, uint64_t lkid)
{
	for (size_t i = 0; i < OL_LOST_RING; i++)
		if (t->lost_ring[i] == lkid)
			return true;
	return false;
}

static const char *lost_reason(int reason)
{
	switch (reason) {
	case VMFS_DLM_LOST_TRANSFERRED: return "transferred to another holder (migration handoff)";
	case VMFS_DLM_LOST_PURGED: return "purged: this host was fenced by the cluster";
	case VMFS_DLM_LOST_RESET: return "the cluster state was replaced after a partition";
	default: return "unknown reason";
	}
}

/* With t->mu.  Logs once per lock (fenced is sticky). */
static void lock_fence(struct openlock_tab *t, struct ol_lock *l, const char *why)
{
	tab_remove(t, l);
	if (l->fenced)
		return;
	l->fenced = true;
	log_warn("ls %s: open lock of inode %" PRIu64 " (lkid %" PRIu64 ", epoch %" PRIu64
		 ") lost: %s; its %u open handle(s) now fail with EIO", t->ls, l->ino,
		 l->lksb.lkid, l->lksb.epoch, why, l->refs);
}

/* --- lock-manager callbacks (t->mu taken here: see I2) -------------------- */

static void on_lost(void *ctx, uint64_t lkid, int reason)
{
	struct openlock_tab *t = ctx;
	struct ol_lock *l;

	pthread_mutex_lock(&t->mu);
	l = tab_find_lkid(t, lkid);
	if (l) {
		/* I4: only the transfer of the lock itself may be undone by its
		 * return claim, and only if nothing else fenced it before. */
		l->lost_xfer = !l->fenced && reason == VMFS_DLM_LOST_TRANSFERRED &&
			       lkid == l->lksb.lkid;
		lock_fence(t, l, lost_reason(reason));
		if (l->ret_armed && l->lost_xfer)
			log_info("ls %s: inode %" PRIu64 ": return claim for '%s' (lkid %" PRIu64
				 ") now waits behind the new holder", t->ls, l->ino, l->ret_vm,
				 __atomic_load_n(&l->ret_lkid, __ATOMIC_ACQUIRE));
		lock_maybe_free(l);
	} else {
		t->lost_ring[t->lost_next++ % OL_LOST_RING] = lkid;
	}
	pthread_mutex_unlock(&t->mu);
}

static void on_lease(void *ctx, int valid)
{
	struct openlock_tab *t = ctx;

	pthread_mutex_lock(&t->mu);
	if (!valid && t->lease_ok)
		log_warn("ls %s: cluster lease lost: open files are not writable (EIO) until it "
			 "is back", t->ls);
	else if (valid && !t->lease_ok)
		log_warn("ls %s: cluster lease regained", t->ls);
	/* I4: a lease lost while a return claim waits may have cost this
	 * host its locks (purge): what the claim would bring back is not
	 * known to be the lock the handoff took, so it re-arms nothing. */
	for (struct ol_lock *l = t->returns; !valid && l; l = l->ret_next)
		l->lost_xfer = false;
	t->lease_ok = valid != 0;
	pthread_mutex_unlock(&t->mu);
}

/* --- return claims (RETURN in the header comment; all under t->mu) ------- */

static void ret_list_add(struct openlock_tab *t, struct ol_lock *l)
{
	if (l->ret_listed)
		return;
	l->ret_next = t->returns;
	t->returns = l;
	l->ret_listed = true;
}

/* I5: off the list once disarmed and its outcome is in. */
static void ret_list_settle(struct openlock_tab *t, struct ol_lock *l)
{
	struct ol_lock **p;

	if (!l->ret_listed || l->ret_armed || l->ret_out || l->ret_back)
		return;
	for (p = &t->returns; *p; p = &(*p)->ret_next) {
		if (*p == l) {
			*p = l->ret_next;
			break;
		}
	}
	l->ret_next = NULL;
	l->ret_listed = false;
}

static struct ol_lock *ret_find(struct openlock_tab *t, uint64_t ino)
{
	for (struct ol_lock *l = t->returns; l; l = l->ret_next)
		if (l->ino == ino && (l->ret_armed || l->ret_back))
			return l;
	return NULL;
}

/* Withdraw l's return claim: asynchronous (I2), its completion() settles
 * it (a grant that wins the race is released there: ret_armed is false). */
static void ret_cancel(struct openlock_tab *t, struct ol_lock *l)
{
	uint64_t lkid = __atomic_load_n(&l->ret_lkid, __ATOMIC_ACQUIRE);

	l->ret_armed = false;
	l->ret_back = false;
	if (l->ret_out && lkid && !t->dead) {
		int rc = vmfs_dlm_cancel(t->h, lkid);

		if (rc < 0 && rc != VMFS_DLM_ENOLOCK)
			log_warn("ls %s: inode %" PRIu64 ": cannot cancel the return claim (lkid %"
				 PRIu64 "): %s", t->ls, l->ino, lkid, vmfs_dlm_strerror(rc));
	}
	ret_list_settle(t, l);
}

/* Is there another lock of l's inode in the table (I1)? */
static bool ino_taken(struct openlock_tab *t, const struct ol_lock *l)
{
	struct ol_lock *o = tab_find(t, l->ino);

	return o && o != l;
}

/* The return claim's outcome.  Granted: re-arm l if (and only if) I4
 * allows, else give the grant back at once. */
static void ret_completion(struct openlock_tab *t, struct ol_lock *l,
			   const struct vmfs_dlm_lksb *lksb)
{
	struct vmfs_dlm_lksb grant = *lksb;
	const char *no = NULL;

	l->ret_out = false;
	if (lksb->status != 0) {
		if (l->ret_armed)
			log_warn("ls %s: inode %" PRIu64 ": return claim for '%s' ended: %s", t->ls,
				 l->ino, l->ret_vm, vmfs_dlm_strerror(lksb->status));
		l->ret_armed = false;
		ret_list_settle(t, l);
		return;
	}
	if (!l->ret_armed)
		no = "withdrawn";
	else if (!l->fenced)
		no = "the file's own lock is still held";
	else if (!l->lost_xfer)
		no = "the file's lock was lost for another reason than a transfer";
	else if (!l->refs)
		no = "no handle is left to re-arm";
	else if (lost_early(t, lksb->lkid))
		no = "lost as soon as granted";
	else if (ino_taken(t, l))
		no = "the file was opened again under a new lock";
	l->ret_armed = false;
	ret_list_settle(t, l);
	if (no) {
		log_info("ls %s: inode %" PRIu64 ": return claim for '%s' granted (lkid %" PRIu64
			 "), released again: %s", t->ls, l->ino, l->ret_vm, lksb->lkid, no);
		/* From a callback this only waits for the daemon's
		 * acceptance, so t->mu may be held (I2). */
		(void)vmfs_dlm_unlock(t->h, &grant, 0);
		return;
	}
	log_warn("ls %s: inode %" PRIu64 ": the lock came back to this host for '%s' (lkid %"
		 PRIu64 " epoch %" PRIu64 " -> lkid %" PRIu64 " epoch %" PRIu64 "): its %u "
		 "handle(s) fenced by the transfer may write again", t->ls, l->ino, l->ret_vm,
		 l->lksb.lkid, l->lksb.epoch, lksb->lkid, lksb->epoch, l->refs);
	l->lksb = *lksb;
	l->fenced = false;
	l->lost_xfer = false;
	l->ret_back = true;
	ret_list_add(t, l);
	tab_insert(t, l);
}

/* prepare's request was granted (handoff TRANSFER, or the file was free)
 * or ended (cancelled, refused, daemon gone); or a return claim's. */
static void on_completion(void *arg, const struct vmfs_dlm_lksb *lksb)
{
	struct ol_cb *c = arg;
	struct ol_lock *l = c->l;
	struct openlock_tab *t = l->t;

	pthread_mutex_lock(&t->mu);
	if (c->kind == OL_REQ_RETURN) {
		ret_completion(t, l, lksb);
		pthread_cond_broadcast(&t->cond);
		lock_maybe_free(l);
		pthread_mutex_unlock(&t->mu);
		return;
	}
	l->async_out = false;
	l->pending = false;
	if (lksb->status == 0) {
		l->lksb = *lksb;
		if (lost_early(t, lksb->lkid)) {
			lock_fence(t, l, "lost as soon as granted");
		} else if (!l->prepared && !l->refs) {
			/* Unprepared while the grant was on its way: give it
			 * back.  From a callback this only waits for the
			 * daemon's acceptance, so t->mu may be held (I2). */
			tab_remove(t, l);
			(void)vmfs_dlm_unlock(t->h, &l->lksb, 0);
		} else {
			log_info("ls %s: incoming open lock of inode %" PRIu64 " for '%s' granted "
				 "(lkid %" PRIu64 ", epoch %" PRIu64 ")", t->ls, l->ino, l->vm,
				 lksb->lkid, lksb->epoch);
		}
	} else if (l->refs) {
		lock_fence(t, l, vmfs_dlm_strerror(lksb->status));
	} else {
		tab_remove(t, l);
	}
	pthread_cond_broadcast(&t->cond);
	lock_maybe_free(l);
	pthread_mutex_unlock(&t->mu);
}

static void *event_thread(void *arg)
{
	struct openlock_tab *t = arg;
	bool alive = true;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = t->stop_fd, .events = POLLIN },
			{ .fd = alive ? vmfs_dlm_fd(t->h) : -1, .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_err("ls %s: open-lock event thread: poll: %s", t->ls, strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		if (p[1].revents && vmfs_dlm_dispatch(t->h) == VMFS_DLM_EDAEMON) {
			alive = false;
			pthread_mutex_lock(&t->mu);
			if (!t->dead)
				log_warn("ls %s: connection to vmfs-dlmd lost: every open lock is "
					 "gone, open files fail with EIO", t->ls);
			t->dead = true;
			pthread_mutex_unlock(&t->mu);
		}
	}
	return NULL;
}

/* --- holders, for -EBUSY's reason ----------------------------------------- */

static const char *js(struct json_object *o, const char *key, const char *def)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return def;
}

static int64_t ji(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) &&
	    (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		return json_object_get_int64(v);
	return 0;
}

static struct json_object *ja(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array))
		return v;
	return NULL;
}

static void fmt_time(uint64_t wall_ms, char *buf, size_t len)
{
	time_t s = (time_t)(wall_ms / 1000);
	struct tm tm;

	if (!wall_ms || !localtime_r(&s, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "?");
}

/* Append to buf who stands in the way of `mode` on l's resource: granted
 * locks that conflict with it, or (FIFO, the lock manager's rule I3) the
 * waiting requests ahead of ours when no granted one does.  Our own lock
 * (an up-convert) is skipped.  Without t->mu (a synchronous query). */
static void describe_holders(struct openlock_tab *t, const char *res, uint64_t own_lkid,
			     int mode, char *buf, size_t len)
{
	struct json_object *table = NULL, *lss, *locks = NULL;
	size_t used = 0;
	char *text = NULL;

	if (vmfs_dlm_query(t->h, "locks", t->ls, &text) == 0)
		table = json_tokener_parse(text);
	free(text);
	lss = ja(table, "lockspaces");
	for (size_t i = 0; lss && !locks && i < json_object_array_length(lss); i++) {
		struct json_object *lsp = json_object_array_get_idx(lss, i);
		struct json_object *rs = ja(lsp, "resources");

		if (strcmp(js(lsp, "name", ""), t->ls) != 0)
			continue;
		for (size_t j = 0; rs && j < json_object_array_length(rs); j++) {
			struct json_object *r = json_object_array_get_idx(rs, j);

			if (strcmp(js(r, "name", ""), res) == 0)
				locks = ja(r, "locks");
		}
	}
	for (int pass = 0; locks && pass < 2 && !used; pass++) {
		for (size_t i = 0; i < json_object_array_length(locks) && used < len; i++) {
			struct json_object *o = json_object_array_get_idx(locks, i);
			bool waiting = strcmp(js(o, "queue", ""), "waiting") == 0;
			int m = vmfs_dlm_mode_parse(js(o, pass ? "rqmode" : "mode", "?"));
			const char *tag = js(o, "tag", "");
			char since[32];
			int n;

			if ((uint64_t)ji(o, "lkid") == own_lkid || waiting != (pass == 1))
				continue;
			if (pass == 0 && m >= 0 && vmfs_dlm_modes_compatible(m, mode))
				continue;
			fmt_time((uint64_t)ji(o, "since_ms"), since, sizeof(since));
			n = snprintf(buf + used, len - used,
				     "%s%s %s by %s (%s pid %" PRId64 "%s%s%s) since %s", used ? "; " : "",
				     pass ? "waited for" : "held", m >= 0 ? mode_words(m) : "?",
				     js(o, "host", "?"), js(o, "program", "?"), ji(o, "pid"),
				     *tag ? ", tag '" : "", tag, *tag ? "'" : "", since);
			if (n < 0)
				break;
			used += (size_t)n;
		}
	}
	if (!used)
		snprintf(buf, len, "a conflicting holder (gone again, or the lock table could not "
			 "be read)");
	json_object_put(table);
}

/* --- errors --------------------------------------------------------------- */

static void why_set(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void why_set(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* A lock manager error as the errno the opener sees (the reason in why). */
static int map_err(int err, uint64_t ino, char *why, size_t whylen)
{
	switch (err) {
	case -ENOMEM:
		return -ENOMEM;
	case VMFS_DLM_EDAEMON:
		/* t->dead is set by the event thread, which sees it too. */
		why_set(why, whylen, "inode %" PRIu64 ": vmfs-dlmd is not reachable", ino);
		return -EIO;
	case VMFS_DLM_ENOQUORUM:
		why_set(why, whylen, "inode %" PRIu64 ": this host is not in the quorate part of "
			"the cluster", ino);
		return -EIO;
	default:
		why_set(why, whylen, "inode %" PRIu64 ": lock manager: %s", ino,
			vmfs_dlm_strerror(err));
		return -EIO;
	}
}

/* --- public --------------------------------------------------------------- */

int openlock_tab_new(const char *ls, struct openlock_tab **out)
{
	static const struct vmfs_dlm_callbacks cb = {
		.completion = on_completion,
		.lost = on_lost,
		.lease = on_lease,
	};
	struct openlock_tab *t;
	int ret;

	*out = NULL;
	if (!ls || !*ls || strlen(ls) > VMFS_DLM_NAME_MAX)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cond, NULL);
	snprintf(t->ls, sizeof(t->ls), "%s", ls);
	/* Assumed until the daemon says otherwise: without quorum it grants
	 * nothing anyway, and it reports a lease loss as an event. */
	t->lease_ok = true;
	t->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (t->stop_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = vmfs_dlm_open("vmfs-mount", &t->h);
	if (ret < 0) {
		log_err("ls %s: open locks: cannot connect to vmfs-dlmd: %s", ls,
			vmfs_dlm_strerror(ret));
		ret = ret == -ENOMEM ? -ENOMEM : -EIO;
		goto fail;
	}
	vmfs_dlm_set_callbacks(t->h, &cb, t);
	ret = -pthread_create(&t->thread, NULL, event_thread, t);
	if (ret)
		goto fail;
	*out = t;
	return 0;
fail:
	vmfs_dlm_close(t->h);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->mu);
	free(t);
	return ret;
}

/* Every ref must be closed before (the mount frees the table at unmount,
 * after the kernel released every open file). */
void openlock_tab_free(struct openlock_tab *t)
{
	uint64_t one = 1;
	static const struct vmfs_dlm_callbacks none = { 0 };

	if (!t)
		return;
	if (write(t->stop_fd, &one, sizeof(one)) != sizeof(one))
		log_err("ls %s: cannot stop the open-lock event thread", t->ls);
	else
		pthread_join(t->thread, NULL);
	/* From here on the calls below run callbacks in this thread; none of
	 * ours must see the table being taken apart. */
	vmfs_dlm_set_callbacks(t->h, &none, NULL);
	/* Return claims: withdrawn (closing the handle would drop them too);
	 * the fenced locks that only this list knows go with them. */
	while (t->returns) {
		struct ol_lock *l = t->returns;

		t->returns = l->ret_next;
		if (l->ret_out && !t->dead)
			(void)vmfs_dlm_cancel(t->h, __atomic_load_n(&l->ret_lkid,
								 __ATOMIC_ACQUIRE));
		l->ret_listed = l->ret_out = l->ret_armed = l->ret_back = false;
		if (!l->in_table)
			free(l);
	}
	/* Release what is held; closing the handle would too (the daemon
	 * drops a client's locks), this only makes it explicit. */
	for (size_t i = 0; i < OL_BUCKETS; i++) {
		struct ol_lock *l;

		while ((l = t->bucket[i])) {
			tab_remove(t, l);
			if (l->async_out)
				(void)vmfs_dlm_cancel(t->h, __atomic_load_n(&l->async_lkid,
									 __ATOMIC_ACQUIRE));
			else if (l->lksb.lkid && !l->fenced && !t->dead)
				(void)vmfs_dlm_unlock(t->h, &l->lksb, 0);
			if (l->refs)
				log_err("ls %s: inode %" PRIu64 ": %u open handle(s) left at unmount",
					t->ls, l->ino, l->refs);
			/* async_out ones: no callback comes after close */
			free(l);
		}
	}
	vmfs_dlm_close(t->h);
	close(t->stop_fd);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* Take a new lock for ino (no lock in the table).  With t->mu; drops it
 * around the call. */
static int open_new_lock(struct openlock_tab *t, uint64_t ino, int mode, const char *tag,
			 struct ol_lock **out, char *why, size_t whylen)
{
	struct vmfs_dlm_lksb lksb;
	struct ol_lock *l = lock_new(t, ino);
	int ret;

	if (!l)
		return -ENOMEM;
	l->busy = true;
	tab_insert(t, l);
	pthread_mutex_unlock(&t->mu);
	memset(&lksb, 0, sizeof(lksb));
	ret = vmfs_dlm_lock(t->h, t->ls, l->res, mode, VMFS_DLM_NOQUEUE, tag, -1, &lksb);
	if (ret == VMFS_DLM_EAGAIN) {
		char holders[400];

		describe_holders(t, l->res, 0, mode, holders, sizeof(holders));
		why_set(why, whylen, "inode %" PRIu64 " is %s", ino, holders);
		ret = -EBUSY;
	} else if (ret < 0) {
		ret = map_err(ret, ino, why, whylen);
	}
	pthread_mutex_lock(&t->mu);
	lock_unbusy(t, l);
	if (ret == 0) {
		l->lksb = lksb;
		if (lost_early(t, lksb.lkid))
			lock_fence(t, l, "lost as soon as granted");
	}
	if (ret < 0 || l->fenced) {
		tab_remove(t, l);
		lock_maybe_free(l);
		if (ret == 0) {
			why_set(why, whylen, "inode %" PRIu64 ": lock lost as soon as granted", ino);
			ret = -EIO;
		}
		return ret;
	}
	*out = l;
	return 0;
}

/* Convert l up so that it covers mode too.  With t->mu, l idle; drops it
 * around the call.  NOQUEUE: on a conflict the lock keeps its mode, and
 * so do the opens already under it. */
static int open_convert_up(struct openlock_tab *t, struct ol_lock *l, int mode, char *why,
			   size_t whylen)
{
	struct vmfs_dlm_lksb lksb = l->lksb;
	int want = mode_join(l->lksb.mode, mode), ret;

	l->busy = true;
	pthread_mutex_unlock(&t->mu);
	ret = vmfs_dlm_convert(t->h, &lksb, want, VMFS_DLM_NOQUEUE, -1);
	if (ret == VMFS_DLM_EAGAIN) {
		char holders[400];

		describe_holders(t, l->res, lksb.lkid, want, holders, sizeof(holders));
		why_set(why, whylen, "inode %" PRIu64 " is open %s on this host and cannot become "
			"%s: %s", l->ino, mode_words(l->lksb.mode), mode_words(want), holders);
		ret = -EBUSY;
	} else if (ret < 0) {
		ret = map_err(ret, l->ino, why, whylen);
	}
	pthread_mutex_lock(&t->mu);
	lock_unbusy(t, l);
	if (ret == 0 && !l->fenced) {
		l->lksb.mode = lksb.mode;
		l->lksb.epoch = lksb.epoch;
	}
	if (l->fenced && ret == 0) {
		why_set(why, whylen, "inode %" PRIu64 ": lock lost while converting", l->ino);
		ret = -EIO;
	}
	return ret;
}

int openlock_open(struct openlock_tab *t, uint64_t ino, bool write, bool multiwriter, pid_t pid,
		  const char *program, struct ol_ref **out, char *why, size_t whylen)
{
	int mode = mode_for(write, multiwriter), ret = 0;
	char tag[VMFS_DLM_TAG_MAX + 1];
	struct ol_ref *r;
	struct ol_lock *l;

	*out = NULL;
	why_set(why, whylen, "%s", "");
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->mode = mode;
	snprintf(tag, sizeof(tag), "%s[%ld]", program && *program ? program : "?", (long)pid);

	pthread_mutex_lock(&t->mu);
	for (;;) {
		if (t->dead) {
			why_set(why, whylen, "inode %" PRIu64 ": connection to vmfs-dlmd lost", ino);
			ret = -EIO;
			break;
		}
		if (!t->lease_ok) {
			why_set(why, whylen, "inode %" PRIu64 ": this host has no cluster lease", ino);
			ret = -EIO;
			break;
		}
		l = tab_find_idle(t, ino);
		if (!l) {
			ret = open_new_lock(t, ino, mode, tag, &l, why, whylen);
			break;
		}
		/* An incoming claim (EX, pending or granted) covers every
		 * mode; a held lock covers what it covers. */
		if (l->pending || mode_covers(l->lksb.mode, mode))
			break;
		ret = open_convert_up(t, l, mode, why, whylen);
		/* Lost meanwhile: the next round takes a new lock. */
		if (ret != -EIO || !l->fenced || t->dead)
			break;
		lock_maybe_free(l);
		ret = 0;
	}
	if (ret == 0) {
		l->nopen[mode]++;
		l->refs++;
		r->l = l;
		*out = r;
	} else {
		free(r);
	}
	pthread_mutex_unlock(&t->mu);
	return ret;
}

int openlock_check(const struct ol_ref *r)
{
	struct ol_lock *l = r->l;
	struct openlock_tab *t = l->t;
	int ret = 0;

	pthread_mutex_lock(&t->mu);
	if (l->fenced || t->dead || !t->lease_ok)
		ret = -EIO;
	else if (l->pending)
		ret = -EAGAIN;
	pthread_mutex_unlock(&t->mu);
	return ret;
}

/* The lock's epoch: the grant's, or the latest convert's (same lock,
 * same owner); 0 while an incoming request is not granted. */
uint64_t openlock_epoch(const struct ol_ref *r)
{
	struct ol_lock *l = r->l;
	uint64_t e;

	pthread_mutex_lock(&l->t->mu);
	e = l->pending ? 0 : l->lksb.epoch;
	pthread_mutex_unlock(&l->t->mu);
	return e;
}

/* Bring l to what its remaining users need: release it, or down-convert.
 * With t->mu, l idle and in the table; drops it around the call. */
static void lock_settle(struct openlock_tab *t, struct ol_lock *l)
{
	int need = lock_needed(l), ret;
	struct vmfs_dlm_lksb lksb = l->lksb;

	if (l->pending || l->fenced || (need >= 0 && need == l->lksb.mode))
		return;
	l->busy = true;
	pthread_mutex_unlock(&t->mu);
	if (need < 0)
		ret = vmfs_dlm_unlock(t->h, &lksb, 0);
	else
		ret = vmfs_dlm_convert(t->h, &lksb, need, 0, -1);
	pthread_mutex_lock(&t->mu);
	lock_unbusy(t, l);
	if (ret < 0 && ret != VMFS_DLM_EDAEMON && !l->fenced)
		log_warn("ls %s: inode %" PRIu64 ": %s of the open lock failed: %s", t->ls, l->ino,
			 need < 0 ? "release" : "down-convert", vmfs_dlm_strerror(ret));
	if (need < 0) {
		/* Released (or gone anyway): new opens take a new lock. */
		tab_remove(t, l);
	} else if (ret == 0 && !l->fenced) {
		l->lksb.mode = lksb.mode;
		l->lksb.epoch = lksb.epoch;
	}
}

void openlock_close(struct ol_ref *r)
{
	struct ol_lock *l;
	struct openlock_tab *t;

	if (!r)
		return;
	l = r->l;
	t = l->t;
	pthread_mutex_lock(&t->mu);
	while (l->busy)
		pthread_cond_wait(&t->cond, &t->mu);
	l->nopen[r->mode]--;
	l->refs--;
	free(r);
	/* The last handle: the VM is gone from this host, so is its claim to
	 * the file (cancelled before the lock is released, or it would be
	 * granted in its place). */
	if (!l->refs && (l->ret_armed || l->ret_back))
		ret_cancel(t, l);
	if (l->in_table && !t->dead)
		lock_settle(t, l);
	lock_maybe_free(l);
	pthread_mutex_unlock(&t->mu);
}

/* A request queued behind the source's lock.  If nobody holds the file,
 * it is granted at once and kept: the file was free, so the incoming VM
 * simply owns it (refusing would make a migration fail over a disk that
 * the source had closed).  Returns once the cluster queued or granted it. */
int openlock_prepare(struct openlock_tab *t, uint64_t ino, const char *vm)
{
	struct ol_lock *l;
	int ret;

	if (!vm || !*vm || strlen(vm) > VMFS_DLM_TAG_MAX)
		return -EINVAL;
	pthread_mutex_lock(&t->mu);
	if (t->dead || !t->lease_ok) {
		ret = -EIO;
		goto out;
	}
	l = tab_find_idle(t, ino);
	if (l) {
		/* Same VM again: nothing to do.  Otherwise this host holds
		 * or claims the file already (its own opens, or another
		 * incoming VM): that is not a migration target. */
		ret = l->prepared && strcmp(l->vm, vm) == 0 ? 0 : -EBUSY;
		if (ret)
			log_warn("ls %s: inode %" PRIu64 ": cannot prepare incoming '%s': %s", t->ls,
				 ino, vm, l->prepared ? "prepared for another VM" : "open on this host");
		goto out;
	}
	l = lock_new(t, ino);
	if (!l) {
		ret = -ENOMEM;
		goto out;
	}
	snprintf(l->vm, sizeof(l->vm), "%s", vm);
	l->prepared = l->pending = l->async_out = true;
	tab_insert(t, l);
	/* Asynchronous: runs no callback, so t->mu may stay held (I2). */
	ret = vmfs_dlm_lock_async(t->h, t->ls, l->res, VMFS_DLM_EX, 0, vm, &l->cb_in,
				  &l->async_lkid);
	if (ret < 0) {
		l->async_out = false;
		tab_remove(t, l);
		lock_maybe_free(l);
		ret = map_err(ret, ino, NULL, 0);
		goto out;
	}
	/* The handoff looks the request up in the cluster table: return
	 * once it is there (queued: lkid known; or already completed).  busy
	 * keeps l alive meanwhile (I3) and other threads off it. */
	l->busy = true;
	for (int waited = 0; l->async_out && waited < OL_QUEUE_WAIT_MS &&
	     !__atomic_load_n(&l->async_lkid, __ATOMIC_ACQUIRE); waited += 10)
		cond_wait_ms(t, 10);
	lock_unbusy(t, l);
	if (!l->async_out && !l->pending && l->prepared && l->lksb.lkid && !l->fenced) {
		log_info("ls %s: incoming '%s': inode %" PRIu64 " was free, now held (epoch %"
			 PRIu64 ")", t->ls, vm, ino, l->lksb.epoch);
		ret = 0;
	} else if (l->async_out) {
		ret = 0;	/* queued (or still on its way: completion() settles it) */
	} else {
		ret = -EIO;	/* refused at once (no quorum, daemon gone) */
	}
	lock_maybe_free(l);
out:
	pthread_mutex_unlock(&t->mu);
	return ret;
}

int openlock_unprepare(struct openlock_tab *t, uint64_t ino)
{
	struct ol_lock *l;
	int ret = 0;

	pthread_mutex_lock(&t->mu);
	l = tab_find_idle(t, ino);
	if (!l || !l->prepared) {
		ret = -ENOENT;
		goto out;
	}
	l->prepared = false;
	if (l->async_out) {
		uint64_t lkid = 0;
		int waited = 0;

		/* busy keeps l alive (I3) while we wait for its outcome. */
		l->busy = true;
		/* The lkid comes with the daemon's QUEUED event. */
		for (; l->async_out && waited < OL_QUEUE_WAIT_MS &&
		     !(lkid = __atomic_load_n(&l->async_lkid, __ATOMIC_ACQUIRE)); waited += 10)
			cond_wait_ms(t, 10);
		if (l->async_out && lkid) {
			/* Asynchronous (I2); a grant that wins the race is
			 * handed back by on_completion() unless opens use it. */
			ret = vmfs_dlm_cancel(t->h, lkid);
			if (ret < 0)
				ret = map_err(ret, ino, NULL, 0);
		}
		for (; !ret && l->async_out && waited < 2 * OL_QUEUE_WAIT_MS; waited += 100)
			cond_wait_ms(t, 100);
		if (!ret && l->async_out)
			ret = -ETIMEDOUT;
		lock_unbusy(t, l);
		lock_maybe_free(l);
		goto out;
	}
	if (l->in_table && !l->busy)
		lock_settle(t, l);
	lock_maybe_free(l);
out:
	pthread_mutex_unlock(&t->mu);
	return ret;
}

/* The source's return claim (RETURN in the header comment). */
int openlock_return_arm(struct openlock_tab *t, uint64_t ino, const char *vm)
{
	char tag[VMFS_DLM_TAG_MAX + 1];
	struct ol_lock *l;
	int ret;

	if (!vm || !*vm || strlen(vm) > VMFS_HANDOFF_RETURN_VM_MAX)
		return -EINVAL;
	snprintf(tag, sizeof(tag), "%s%s", VMFS_HANDOFF_RETURN_TAG, vm);
	pthread_mutex_lock(&t->mu);
	if (t->dead || !t->lease_ok) {
		ret = -EIO;
		goto out;
	}
	l = tab_find_idle(t, ino);
	/* A granted incoming claim is this host's lock like any other (the VM
	 * that came here leaves again); a pending one is not ours yet. */
	if (!l || !l->refs || l->pending) {
		log_warn("ls %s: inode %" PRIu64 ": no return claim for '%s': %s", t->ls, ino, vm,
			 !l || !l->refs ? "the file is not open on this host" :
			 "it waits for an incoming VM's handoff here");
		ret = -ENOENT;
		goto out;
	}
	if (l->ret_armed) {
		ret = strcmp(l->ret_vm, vm) == 0 ? 0 : -EBUSY;
		goto out;
	}
	l->ret_back = false;	/* a previous migration's, superseded */
	if (l->lksb.mode != VMFS_DLM_EX) {
		/* a shared lock's claim would be granted at once beside it;
		 * and only exclusive locks are handed over */
		log_warn("ls %s: inode %" PRIu64 ": no return claim for '%s': the file is open %s "
			 "here, not exclusive", t->ls, ino, vm, mode_words(l->lksb.mode));
		ret = -EINVAL;
		goto out;
	}
	/* The previous claim's cancel still on its way: its completion must
	 * not be taken for the new one's. */
	l->busy = true;
	for (int waited = 0; l->ret_out && waited < OL_QUEUE_WAIT_MS; waited += 10)
		cond_wait_ms(t, 10);
	if (l->ret_out) {
		lock_unbusy(t, l);
		ret = -ETIMEDOUT;
		goto out;
	}
	snprintf(l->ret_vm, sizeof(l->ret_vm), "%s", vm);
	__atomic_store_n(&l->ret_lkid, 0, __ATOMIC_RELEASE);
	l->ret_armed = l->ret_out = true;
	ret_list_add(t, l);
	/* Asynchronous: runs no callback, so t->mu may stay held (I2). */
	ret = vmfs_dlm_lock_async(t->h, t->ls, l->res, l->lksb.mode, 0, tag, &l->cb_ret,
				  &l->ret_lkid);
	if (ret < 0) {
		l->ret_armed = l->ret_out = false;
		ret_list_settle(t, l);
		lock_unbusy(t, l);
		ret = map_err(ret, ino, NULL, 0);
		goto out;
	}
	/* A give-back looks the claim up in the cluster table: return once
	 * it is there. */
	for (int waited = 0; l->ret_out && waited < OL_QUEUE_WAIT_MS &&
	     !__atomic_load_n(&l->ret_lkid, __ATOMIC_ACQUIRE); waited += 10)
		cond_wait_ms(t, 10);
	lock_unbusy(t, l);
	if (l->ret_armed && __atomic_load_n(&l->ret_lkid, __ATOMIC_ACQUIRE)) {
		log_info("ls %s: inode %" PRIu64 ": return claim for '%s' queued (lkid %" PRIu64
			 ") behind lkid %" PRIu64, t->ls, ino, vm,
			 __atomic_load_n(&l->ret_lkid, __ATOMIC_ACQUIRE), l->lksb.lkid);
		ret = 0;
	} else {
		if (l->ret_armed)
			ret_cancel(t, l);
		ret = -EIO;	/* refused, or not queued in time */
	}
	lock_maybe_free(l);
out:
	pthread_mutex_unlock(&t->mu);
	return ret;
}

int openlock_return_drop(struct openlock_tab *t, uint64_t ino)
{
	struct ol_lock *l;
	int ret = 0;

	pthread_mutex_lock(&t->mu);
	l = ret_find(t, ino);
	if (!l) {
		ret = -ENOENT;
		goto out;
	}
	ret_cancel(t, l);
	/* Wait for its outcome, so that "dropped" means nothing of it is
	 * left in the cluster (ret_out keeps l alive meanwhile, I3). */
	for (int waited = 0; l->ret_out && !t->dead && waited < OL_QUEUE_WAIT_MS; waited += 10)
		cond_wait_ms(t, 10);
	if (l->ret_out && !t->dead)
		ret = -ETIMEDOUT;
	lock_maybe_free(l);
out:
	pthread_mutex_unlock(&t->mu);
	return ret;
}

int openlock_return_state(struct openlock_tab *t, uint64_t ino, char *buf, size_t len)
{
	struct ol_lock *l;
	int ret = 0;

	pthread_mutex_lock(&t->mu);
	l = ret_find(t, ino);
	if (!l)
		ret = -ENODATA;
	else if (l->ret_back)
		snprintf(buf, len, "returned %s", l->ret_vm);
	else
		snprintf(buf, len, "%s %s", l->fenced ? "waiting" : "armed", l->ret_vm);
	pthread_mutex_unlock(&t->mu);
	return ret;
}
