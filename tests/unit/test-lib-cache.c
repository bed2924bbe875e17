/* test-lib-cache.c — the lock cache of libvmfsdlm (vmfs_dlm_cache_*)
 * against a fake vmfs-dlmd (fake-dlmd.c).
 *
 * The fake grants every LOCK and CONVERT at once (except a convert it was
 * told to hold), keeps a value block per lock, and counts the requests it
 * gets, so a test can tell a cache hit (no request) from a miss.  The test
 * plays "another host" through QUERY requests that the fake turns into
 * events (QUERY itself is not counted):
 *
 *   what       arg            effect
 *   block      "LKID MODE"    BLOCKING(MODE) for lock LKID
 *   lost       "LKID"         LOST(TRANSFERRED) for lock LKID (and a held
 *                             CONVERT of it is refused with ELOST)
 *   holdconv   "LKID"         the next CONVERT of LKID stays queued until
 *                             cancelled (REFUSED(ECANCELED))
 *   stats      -              "locks=.. converts=.. unlocks=.. ..."
 *   die        -              hang up on the client after the response
 *
 * A LOCK of resource "refuse" is refused with VMFS_DLM_EAGAIN.
 *
 * Exit: 0 pass, 1 fail, 77 skip (IPC unavailable), 99 setup error.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmfs/dlm.h"
#include "fake-dlmd.h"
#include "io.h"

/* --- fake daemon (child process) ---------------------------------------- */

#define SRV_FIRST_LKID 100
#define SRV_MAX_LOCKS 1024

static struct {
	int mode;
	uint8_t lvb[VMFS_DLM_LVB_LEN];
} srv_lock_tab[SRV_MAX_LOCKS];
static uint64_t srv_next_lkid = SRV_FIRST_LKID;
static uint64_t srv_epoch;
static unsigned srv_n_lock, srv_n_conv, srv_n_unlock, srv_n_cancel;
static unsigned srv_conv_mode, srv_conv_flags, srv_conv_lvb, srv_unl_flags, srv_unl_lvb;
static uint64_t srv_unl_lkid;
static uint64_t srv_hold_lkid;	/* CONVERT of this lock is held ... */
static uint32_t srv_hold_req;	/* ... this one, until a CANCEL */

static int srv_slot(uint64_t lkid)
{
	if (lkid < SRV_FIRST_LKID || lkid >= SRV_FIRST_LKID + SRV_MAX_LOCKS)
		return -1;
	return (int)(lkid - SRV_FIRST_LKID);
}

static void srv_query(qb_ipcs_connection_t *c, const struct vmfs_ipc_query *q)
{
	unsigned long long lkid = 0;
	char text[256];
	int mode = 0;

	if (strcmp(q->what, "stats") == 0) {
		snprintf(text, sizeof(text),
			 "locks=%u converts=%u unlocks=%u cancels=%u conv_mode=%u conv_flags=%u "
			 "conv_lvb=%u unl_flags=%u unl_lvb=%u unl_lkid=%llu",
			 srv_n_lock, srv_n_conv, srv_n_unlock, srv_n_cancel, srv_conv_mode,
			 srv_conv_flags, srv_conv_lvb, srv_unl_flags, srv_unl_lvb,
			 (unsigned long long)srv_unl_lkid);
		fake_dlmd_respond(c, q->hdr.id, 0, text);
		return;
	}
	sscanf(q->arg, "%llu %d", &lkid, &mode);
	fake_dlmd_respond(c, q->hdr.id, 0, "{}");
	if (strcmp(q->what, "block") == 0)
		fake_dlmd_event(c, VMFS_IPC_EV_BLOCKING, 0, 0, lkid, mode, 0, 0);
	else if (strcmp(q->what, "lost") == 0) {
		fake_dlmd_event(c, VMFS_IPC_EV_LOST, 0, 0, lkid, 0, VMFS_DLM_LOST_TRANSFERRED, 0);
		if (lkid == srv_hold_lkid && srv_hold_req) {
			fake_dlmd_event(c, VMFS_IPC_EV_REFUSED, srv_hold_req, VMFS_DLM_ELOST,
					0, 0, 0, 0);
			srv_hold_lkid = 0;
			srv_hold_req = 0;
		}
	}
	else if (strcmp(q->what, "holdconv") == 0)
		srv_hold_lkid = lkid;
	else if (strcmp(q->what, "die") == 0)
		fake_dlmd_disconnect(c);
}

static int32_t srv_msg(qb_ipcs_connection_t *c, void *data, size_t size)
{
	const struct qb_ipc_request_header *hdr = data;
	const struct vmfs_ipc_lock *l = data;
	const struct vmfs_ipc_convert *cv = data;
	const struct vmfs_ipc_unlock *u = data;
	int s;

	switch (hdr->id) {
	case VMFS_IPC_HELLO:
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		fake_dlmd_event(c, VMFS_IPC_EV_LEASE, 0, 0, 0, 0, 0, 1);
		break;
	case VMFS_IPC_LOCK: {
		uint64_t lkid = srv_next_lkid++;

		srv_n_lock++;
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		if (strcmp(l->res, "refuse") == 0) {
			fake_dlmd_event(c, VMFS_IPC_EV_REFUSED, l->req_id, VMFS_DLM_EAGAIN, 0, 0, 0, 0);
			break;
		}
		s = srv_slot(lkid);
		if (s < 0) {
			fake_dlmd_event(c, VMFS_IPC_EV_REFUSED, l->req_id, -ENOMEM, 0, 0, 0, 0);
			break;
		}
		srv_lock_tab[s].mode = (int)l->mode;
		fake_dlmd_event(c, VMFS_IPC_EV_QUEUED, l->req_id, 0, lkid, 0, 0, 0);
		fake_dlmd_event_lvb(c, VMFS_IPC_EV_GRANTED, l->req_id, 0, lkid, ++srv_epoch,
				    (int)l->mode, srv_lock_tab[s].lvb);
		break;
	}
	case VMFS_IPC_CONVERT:
		srv_n_conv++;
		srv_conv_mode = cv->mode;
		srv_conv_flags = cv->flags;
		srv_conv_lvb = cv->lvb[0];
		s = srv_slot(cv->lkid);
		fake_dlmd_respond(c, hdr->id, s < 0 ? VMFS_DLM_ENOLOCK : 0, NULL);
		if (s < 0)
			break;
		if (cv->lkid == srv_hold_lkid) {
			srv_hold_req = cv->req_id;
			break;
		}
		if ((cv->flags & VMFS_DLM_VALBLK) && srv_lock_tab[s].mode >= VMFS_DLM_PW)
			memcpy(srv_lock_tab[s].lvb, cv->lvb, VMFS_DLM_LVB_LEN);
		srv_lock_tab[s].mode = (int)cv->mode;
		fake_dlmd_event_lvb(c, VMFS_IPC_EV_GRANTED, cv->req_id, 0, cv->lkid, ++srv_epoch,
				    (int)cv->mode, srv_lock_tab[s].lvb);
		break;
	case VMFS_IPC_UNLOCK:
		srv_n_unlock++;
		srv_unl_flags = u->flags;
		srv_unl_lvb = u->lvb[0];
		srv_unl_lkid = u->lkid;
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		fake_dlmd_event(c, VMFS_IPC_EV_DONE, u->req_id, 0, u->lkid, 0, 0, 0);
		break;
	case VMFS_IPC_CANCEL:
		srv_n_cancel++;
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		if (u->lkid == srv_hold_lkid && srv_hold_req) {
			fake_dlmd_event(c, VMFS_IPC_EV_DONE, u->req_id, 0, 0, 0, 0, 0);
			fake_dlmd_event(c, VMFS_IPC_EV_REFUSED, srv_hold_req, VMFS_DLM_ECANCELED,
					0, 0, 0, 0);
			srv_hold_lkid = 0;
			srv_hold_req = 0;
		} else {
			fake_dlmd_event(c, VMFS_IPC_EV_DONE, u->req_id, VMFS_DLM_ENOLOCK, 0, 0, 0, 0);
		}
		break;
	case VMFS_IPC_QUERY:
		srv_query(c, data);
		break;
	default:
		fake_dlmd_respond(c, hdr->id, -EINVAL, NULL);
		break;
	}
	return 0;
}

/* --- the test (parent) -------------------------------------------------- */

static vmfs_dlm_t *handle;
static const char *LS = "ls";

/* What the fake daemon saw. */
struct srv_stats {
	unsigned locks, converts, unlocks, cancels;
	unsigned conv_mode, conv_flags, conv_lvb, unl_flags, unl_lvb;
	unsigned long long unl_lkid;
};

static struct srv_stats srv_stats(void)
{
	struct srv_stats s;
	char *text = NULL;

	memset(&s, 0, sizeof(s));
	if (vmfs_dlm_query(handle, "stats", NULL, &text) == 0 && text)
		sscanf(text, "locks=%u converts=%u unlocks=%u cancels=%u conv_mode=%u "
		       "conv_flags=%u conv_lvb=%u unl_flags=%u unl_lvb=%u unl_lkid=%llu",
		       &s.locks, &s.converts, &s.unlocks, &s.cancels, &s.conv_mode,
		       &s.conv_flags, &s.conv_lvb, &s.unl_flags, &s.unl_lvb, &s.unl_lkid);
	free(text);
	return s;
}

/* Requests that change the lock table (what a cache hit must not send). */
static unsigned srv_requests(void)
{
	struct srv_stats s = srv_stats();

	return s.locks + s.converts + s.unlocks + s.cancels;
}

static void srv_ctl(const char *what, uint64_t lkid, int mode)
{
	char arg[VMFS_DLM_NAME_MAX + 1];
	char *text = NULL;

	snprintf(arg, sizeof(arg), "%" PRIu64 " %d", lkid, mode);
	if (vmfs_dlm_query(handle, what, arg, &text) != 0)
		check(0, "control query %s", what);
	free(text);
}

static struct vmfs_dlm_cache_stats cstats(void)
{
	struct vmfs_dlm_cache_stats st;

	memset(&st, 0, sizeof(st));
	vmfs_dlm_cache_stats(handle, &st);
	return st;
}

/* What the callbacks saw. */
struct seen {
	int flush_calls;
	char flush_res[VMFS_DLM_NAME_MAX + 1];
	int flush_held, flush_wanted;
	int flush_rc;			/* what flush returns */
	int flush_try_get;		/* once: try cache_get from inside flush */
	int get_hit_in_flush, get_miss_in_flush;
	int blocking_calls;
	int lost_calls;
	uint64_t lost_lkid;
};

static struct seen seen;

static int on_flush(void *ctx, const char *ls, const char *res, int held, int wanted)
{
	seen.flush_calls++;
	snprintf(seen.flush_res, sizeof(seen.flush_res), "%s", res);
	seen.flush_held = held;
	seen.flush_wanted = wanted;
	if (seen.flush_try_get) {
		struct vmfs_dlm_lksb lk;

		seen.flush_try_get = 0;
		seen.get_hit_in_flush = vmfs_dlm_cache_get(handle, LS, "a", VMFS_DLM_PR, 0, NULL,
							   0, &lk);
		if (seen.get_hit_in_flush == 0)
			vmfs_dlm_cache_put(handle, &lk);
		seen.get_miss_in_flush = vmfs_dlm_cache_get(handle, LS, "not-cached",
							    VMFS_DLM_PR, 0, NULL, 0, &lk);
	}
	return seen.flush_rc;
}

static void on_blocking(void *ctx, uint64_t lkid, int wanted)
{
	seen.blocking_calls++;
}

static void on_lost(void *ctx, uint64_t lkid, int reason)
{
	seen.lost_calls++;
	seen.lost_lkid = lkid;
}

/* Dispatch until cond holds or ms pass. */
#define PUMP_UNTIL_MS(cond, ms)						\
	do {								\
		uint64_t end_ = now_mono_ms() + (ms);			\
		while (!(cond) && now_mono_ms() < end_) {			\
			struct pollfd p_ = { .fd = vmfs_dlm_fd(handle), .events = POLLIN }; \
			poll(&p_, 1, 20);				\
			vmfs_dlm_dispatch(handle);			\
		}							\
	} while (0)
#define PUMP_UNTIL(cond) PUMP_UNTIL_MS(cond, 3000)

static int get(const char *res, int mode, unsigned flags, struct vmfs_dlm_lksb *lk)
{
	memset(lk, 0, sizeof(*lk));
	return vmfs_dlm_cache_get(handle, LS, res, mode, flags, "test", 5000, lk);
}

static void test_hit(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	unsigned r0;
	int ret;

	ret = get("a", VMFS_DLM_EX, 0, &lk);
	check(ret == 0 && lk.lkid && lk.mode == VMFS_DLM_EX, "miss takes a lock: %d", ret);
	check(vmfs_dlm_cache_put(handle, &lk) == 0, "put");
	r0 = srv_requests();
	ret = get("a", VMFS_DLM_PR, 0, &lk2);
	check(ret == 0 && lk2.lkid == lk.lkid && lk2.mode == VMFS_DLM_PR && lk2.epoch == lk.epoch,
	      "cached EX serves a PR use: %d", ret);
	check(srv_requests() == r0, "hit sends no request");
	vmfs_dlm_cache_put(handle, &lk2);
	ret = get("a", VMFS_DLM_EX, 0, &lk2);
	check(ret == 0 && lk2.lkid == lk.lkid && srv_requests() == r0, "EX again: hit");
	vmfs_dlm_cache_put(handle, &lk2);
	check(cstats().hits == 2 && cstats().misses == 1, "stats: 2 hits, 1 miss");
	check(vmfs_dlm_cache_put(handle, &lk2) == VMFS_DLM_ENOLOCK, "put of no use refused");
	ret = get("refuse", VMFS_DLM_EX, VMFS_DLM_NOQUEUE, &lk);
	check(ret == VMFS_DLM_EAGAIN, "NOQUEUE miss refused: %d", ret);
	ret = get("refuse", VMFS_DLM_EX, VMFS_DLM_NOQUEUE, &lk);
	check(ret == VMFS_DLM_EAGAIN, "a refusal is not cached: %d", ret);
	ret = vmfs_dlm_cache_get(handle, LS, "a", VMFS_DLM_EX, VMFS_DLM_PERSISTENT, NULL, 0, &lk);
	check(ret == -EINVAL, "PERSISTENT refused for cached locks: %d", ret);
}

static void test_convert(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	struct srv_stats s;
	unsigned r0;
	int ret;

	ret = get("b", VMFS_DLM_PR, 0, &lk);
	vmfs_dlm_cache_put(handle, &lk);
	r0 = srv_requests();
	ret = get("b", VMFS_DLM_EX, 0, &lk2);
	s = srv_stats();
	check(ret == 0 && lk2.lkid == lk.lkid && lk2.mode == VMFS_DLM_EX && lk2.epoch > lk.epoch,
	      "PR cached, EX wanted: same lock, new epoch: %d", ret);
	check(srv_requests() == r0 + 1 && s.conv_mode == VMFS_DLM_EX, "one CONVERT to EX");
	check(cstats().converts == 1, "stats: 1 convert");
	vmfs_dlm_cache_put(handle, &lk2);
}

static void test_blocking_idle(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	struct srv_stats s0, s;
	int ret;

	ret = get("c", VMFS_DLM_EX, 0, &lk);
	vmfs_dlm_cache_put(handle, &lk);
	s0 = srv_stats();
	memset(&seen, 0, sizeof(seen));
	seen.flush_try_get = 1;
	srv_ctl("block", lk.lkid, VMFS_DLM_EX);
	PUMP_UNTIL(cstats().releases_on_blocking == 1);
	s = srv_stats();
	check(seen.flush_calls == 1 && strcmp(seen.flush_res, "c") == 0 &&
	      seen.flush_held == VMFS_DLM_EX && seen.flush_wanted == VMFS_DLM_EX,
	      "BLOCKING(EX) on idle lock: flush(c, EX, EX) (%d calls)", seen.flush_calls);
	check(s.unlocks == s0.unlocks + 1 && s.unl_lkid == lk.lkid, "then released");
	check(cstats().releases_on_blocking == 1, "stats: 1 release on blocking");
	check(seen.blocking_calls == 0, "user's blocking callback not called for cached locks");
	check(seen.get_hit_in_flush == 0, "cache_get hit from inside flush: %d",
	      seen.get_hit_in_flush);
	check(seen.get_miss_in_flush == -EDEADLK, "cache_get miss from inside flush: %d",
	      seen.get_miss_in_flush);
	ret = get("c", VMFS_DLM_EX, 0, &lk2);
	check(ret == 0 && lk2.lkid != lk.lkid, "next get takes a new lock");
	vmfs_dlm_cache_put(handle, &lk2);
}

static void test_blocking_in_use(void)
{
	struct vmfs_dlm_lksb lk;
	struct srv_stats s0;
	uint64_t rel0 = cstats().releases_on_blocking;

	get("d", VMFS_DLM_EX, 0, &lk);
	s0 = srv_stats();
	memset(&seen, 0, sizeof(seen));
	srv_ctl("block", lk.lkid, VMFS_DLM_EX);
	PUMP_UNTIL_MS(0, 200);
	check(seen.flush_calls == 0 && srv_stats().unlocks == s0.unlocks,
	      "BLOCKING while in use: nothing happens yet");
	check(vmfs_dlm_cache_put(handle, &lk) == 0, "last put");
	PUMP_UNTIL(cstats().releases_on_blocking == rel0 + 1);
	check(seen.flush_calls == 1 && strcmp(seen.flush_res, "d") == 0,
	      "flush at the last put");
	check(srv_stats().unlocks == s0.unlocks + 1, "released after the put");
}

static void test_downconvert(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	struct srv_stats s;
	unsigned r0;
	int ret;

	ret = get("e", VMFS_DLM_EX, VMFS_DLM_VALBLK, &lk);
	check(ret == 0, "EX with VALBLK: %d", ret);
	lk.lvb[0] = 0x42;
	vmfs_dlm_cache_put(handle, &lk);
	memset(&seen, 0, sizeof(seen));
	srv_ctl("block", lk.lkid, VMFS_DLM_PR);
	PUMP_UNTIL(cstats().downconverts_on_blocking == 1);
	s = srv_stats();
	check(seen.flush_calls == 1 && seen.flush_held == VMFS_DLM_EX &&
	      seen.flush_wanted == VMFS_DLM_PR, "BLOCKING(PR) on EX: flush(EX, PR)");
	check(s.conv_mode == VMFS_DLM_PR && (s.conv_flags & VMFS_DLM_VALBLK) && s.conv_lvb == 0x42,
	      "down-converted to PR, value block written (mode %u lvb %#x)", s.conv_mode,
	      s.conv_lvb);
	r0 = srv_requests();
	ret = get("e", VMFS_DLM_PR, 0, &lk2);
	check(ret == 0 && lk2.lkid == lk.lkid && (uint8_t)lk2.lvb[0] == 0x42 &&
	      srv_requests() == r0, "PR still cached after the demotion: hit with the lvb");
	vmfs_dlm_cache_put(handle, &lk2);
	ret = get("e", VMFS_DLM_EX, 0, &lk2);
	check(ret == 0 && srv_requests() == r0 + 1 && srv_stats().conv_mode == VMFS_DLM_EX,
	      "EX again: one convert");
	vmfs_dlm_cache_put(handle, &lk2);
}

static void test_lost(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	int ret;

	get("f", VMFS_DLM_EX, 0, &lk);
	vmfs_dlm_cache_put(handle, &lk);
	memset(&seen, 0, sizeof(seen));
	srv_ctl("lost", lk.lkid, 0);
	PUMP_UNTIL(cstats().lost == 1);
	check(seen.lost_calls == 1 && seen.lost_lkid == lk.lkid, "lost() still reported");
	ret = get("f", VMFS_DLM_EX, 0, &lk2);
	check(ret == 0 && lk2.lkid != lk.lkid, "lost lock left the cache: new lock");
	srv_ctl("lost", lk2.lkid, 0);
	PUMP_UNTIL(cstats().lost == 2);
	ret = vmfs_dlm_cache_put(handle, &lk2);
	check(ret == VMFS_DLM_ELOST, "put of a use whose lock was lost: %d", ret);
	ret = get("f", VMFS_DLM_PR, 0, &lk);
	check(ret == 0 && lk.lkid != lk2.lkid, "and the next get takes a new one");
	vmfs_dlm_cache_put(handle, &lk);
}

/* --- concurrent users --------------------------------------------------- */

#define N_THREADS 4
#define N_ITER 300

static int readers, writers;	/* uses inside, by kind */
static int exclusion_broken;

static void *user_thread(void *arg)
{
	long bad = 0;

	for (int i = 0; i < N_ITER; i++) {
		int mode = (i % 5 == 0) ? VMFS_DLM_EX : VMFS_DLM_PR;
		struct vmfs_dlm_lksb lk;

		if (get("g", mode, 0, &lk) != 0) {
			bad++;
			continue;
		}
		if (mode == VMFS_DLM_EX) {
			if (__atomic_add_fetch(&writers, 1, __ATOMIC_SEQ_CST) != 1 ||
			    __atomic_load_n(&readers, __ATOMIC_SEQ_CST))
				__atomic_add_fetch(&exclusion_broken, 1, __ATOMIC_SEQ_CST);
			sched_yield();
			__atomic_sub_fetch(&writers, 1, __ATOMIC_SEQ_CST);
		} else {
			__atomic_add_fetch(&readers, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&writers, __ATOMIC_SEQ_CST))
				__atomic_add_fetch(&exclusion_broken, 1, __ATOMIC_SEQ_CST);
			sched_yield();
			__atomic_sub_fetch(&readers, 1, __ATOMIC_SEQ_CST);
		}
		if (vmfs_dlm_cache_put(handle, &lk) != 0)
			bad++;
	}
	return (void *)bad;
}

static void test_concurrent(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	pthread_t th[N_THREADS];
	uint64_t rel0 = cstats().releases_on_blocking;
	long bad = 0;
	unsigned l0;
	int ret;

	/* Two uses at once when the modes allow it. */
	l0 = srv_stats().locks;
	ret = get("g", VMFS_DLM_PR, 0, &lk);
	ret |= get("g", VMFS_DLM_PR, 0, &lk2);
	check(ret == 0 && lk.lkid == lk2.lkid && srv_stats().locks == l0 + 1,
	      "two PR uses share one lock");
	ret = vmfs_dlm_cache_get(handle, LS, "g", VMFS_DLM_EX, 0, NULL, 100, &lk2);
	check(ret == VMFS_DLM_ETIMEDOUT, "EX use waits for the PR uses (timed out): %d", ret);
	{
		uint64_t t0 = now_mono_ms();

		/* a NOQUEUE use never waits, not even for a use of its own
		 * handle: its caller may hold what that use waits for */
		ret = vmfs_dlm_cache_get(handle, LS, "g", VMFS_DLM_EX, VMFS_DLM_NOQUEUE, NULL,
					 5000, &lk2);
		check(ret == VMFS_DLM_EAGAIN && now_mono_ms() - t0 < 1000,
		      "NOQUEUE EX use refused at once beside PR uses: %d after %llu ms", ret,
		      (unsigned long long)(now_mono_ms() - t0));
	}
	vmfs_dlm_cache_put(handle, &lk);
	vmfs_dlm_cache_put(handle, &lk);

	/* Threads mixing PR and EX uses; another host wants it meanwhile. */
	memset(&seen, 0, sizeof(seen));
	for (int i = 0; i < N_THREADS; i++)
		pthread_create(&th[i], NULL, user_thread, NULL);
	usleep(2000);
	srv_ctl("block", lk.lkid, VMFS_DLM_EX);
	for (int i = 0; i < N_THREADS; i++) {
		void *r;

		pthread_join(th[i], &r);
		bad += (long)r;
	}
	check(bad == 0, "%d threads x %d PR/EX uses: %ld failed", N_THREADS, N_ITER, bad);
	check(exclusion_broken == 0, "EX uses never overlapped another use (%d)",
	      exclusion_broken);
	PUMP_UNTIL(cstats().releases_on_blocking == rel0 + 1);
	check(cstats().releases_on_blocking == rel0 + 1 && seen.flush_calls == 1,
	      "the demand was served between uses (flush %d)", seen.flush_calls);
}

/* --- conversion deadlock, flush errors, drop ---------------------------- */

static void *block_later(void *arg)
{
	usleep(100000);
	srv_ctl("block", *(uint64_t *)arg, VMFS_DLM_EX);
	return NULL;
}

static void test_convert_deadlock(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	struct srv_stats s0, s;
	pthread_t th;
	int ret;

	get("j", VMFS_DLM_PR, 0, &lk);
	vmfs_dlm_cache_put(handle, &lk);
	s0 = srv_stats();
	memset(&seen, 0, sizeof(seen));
	/* Another host converts PR->EX ahead of ours: ours stays queued and
	 * our PR blocks theirs. */
	srv_ctl("holdconv", lk.lkid, 0);
	pthread_create(&th, NULL, block_later, &lk.lkid);
	ret = get("j", VMFS_DLM_EX, 0, &lk2);
	pthread_join(th, NULL);
	s = srv_stats();
	check(ret == 0 && lk2.mode == VMFS_DLM_EX && lk2.lkid != lk.lkid,
	      "conversion deadlock: gave the lock up and took it anew: %d", ret);
	check(s.cancels == s0.cancels + 1 && s.unlocks == s0.unlocks + 1 &&
	      s.locks == s0.locks + 1, "cancel, release, lock (%u %u %u)",
	      s.cancels - s0.cancels, s.unlocks - s0.unlocks, s.locks - s0.locks);
	check(seen.flush_calls == 1 && seen.flush_held == VMFS_DLM_PR, "flushed before");
	vmfs_dlm_cache_put(handle, &lk2);
}

static void *lose_later(void *arg)
{
	usleep(100000);
	srv_ctl("lost", *(uint64_t *)arg, 0);
	return NULL;
}

static void test_lost_converting(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	uint64_t lost0 = cstats().lost;
	pthread_t th;
	int ret;

	get("m", VMFS_DLM_PR, 0, &lk);
	vmfs_dlm_cache_put(handle, &lk);
	srv_ctl("holdconv", lk.lkid, 0);
	pthread_create(&th, NULL, lose_later, &lk.lkid);
	ret = get("m", VMFS_DLM_EX, 0, &lk2);
	pthread_join(th, NULL);
	check(ret == VMFS_DLM_ELOST && cstats().lost == lost0 + 1,
	      "lock lost while converting up: %d", ret);
	ret = get("m", VMFS_DLM_EX, 0, &lk2);
	check(ret == 0 && lk2.lkid != lk.lkid, "next get takes a new lock: %d", ret);
	vmfs_dlm_cache_put(handle, &lk2);
}

/* Cache res in EX, unused, and have another host demand it while flush()
 * answers frc: that one flush fails and the lock stays (*u0: the daemon's
 * unlock count before). */
static void block_failing(const char *res, int frc, struct vmfs_dlm_lksb *lk, unsigned *u0)
{
	uint64_t err0 = cstats().flush_errors;

	get(res, VMFS_DLM_EX, 0, lk);
	vmfs_dlm_cache_put(handle, lk);
	memset(&seen, 0, sizeof(seen));
	seen.flush_rc = frc;
	*u0 = srv_stats().unlocks;
	srv_ctl("block", lk->lkid, VMFS_DLM_EX);
	PUMP_UNTIL(cstats().flush_errors == err0 + 1);
	check(cstats().flush_errors == err0 + 1 && srv_stats().unlocks == *u0,
	      "failed flush keeps the lock");
}

static void test_flush_error(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	uint64_t rel0 = cstats().releases_on_blocking;
	unsigned u0;
	int ret;

	block_failing("i", -EIO, &lk, &u0);
	ret = get("i", VMFS_DLM_EX, 0, &lk2);
	check(ret == 0 && lk2.lkid == lk.lkid, "still usable: %d", ret);
	seen.flush_rc = 0;
	vmfs_dlm_cache_put(handle, &lk2);
	PUMP_UNTIL(cstats().releases_on_blocking == rel0 + 1);
	check(seen.flush_calls == 2 && srv_stats().unlocks == u0 + 1,
	      "released when the next put retries (flush %d)", seen.flush_calls);
}

/* A failed flush is tried again by dispatch alone, with no further use
 * of the lock (libvmfsdlm.c cache_retry_failed).  In vmfs-mount it was the
 * release message after a flush() that worked (the daemon's queue full)
 * that failed, and another host waited for the lock for good; here flush()
 * fails, which takes the same way back. */
static void test_flush_retry(void)
{
	struct vmfs_dlm_lksb lk;
	uint64_t rel0 = cstats().releases_on_blocking;
	unsigned u0;

	block_failing("r", -EAGAIN, &lk, &u0);
	seen.flush_rc = 0;
	PUMP_UNTIL(cstats().releases_on_blocking == rel0 + 1);
	check(cstats().releases_on_blocking == rel0 + 1 && srv_stats().unlocks == u0 + 1,
	      "released by a retry without another use (flush %d)", seen.flush_calls);
}

static void test_drop(void)
{
	struct vmfs_dlm_lksb lk;
	struct vmfs_dlm_cache_stats st;
	unsigned u0;
	int ret;

	get("h", VMFS_DLM_EX, 0, &lk);
	vmfs_dlm_cache_put(handle, &lk);
	memset(&seen, 0, sizeof(seen));
	u0 = srv_stats().unlocks;
	ret = vmfs_dlm_cache_drop(handle, LS, "h");
	check(ret == 0 && seen.flush_calls == 1 && seen.flush_wanted == VMFS_DLM_EX &&
	      srv_stats().unlocks == u0 + 1, "drop: flush(.., EX) then release: %d", ret);
	ret = vmfs_dlm_cache_drop(handle, LS, "h");
	check(ret == VMFS_DLM_ENOLOCK, "drop of an uncached lock: %d", ret);
	get("h", VMFS_DLM_EX, 0, &lk);
	ret = vmfs_dlm_cache_drop(handle, LS, "h");
	check(ret == -EBUSY, "drop of a lock in use: %d", ret);
	vmfs_dlm_cache_put(handle, &lk);
	st = cstats();
	check(st.cached > 1, "%llu locks cached", (unsigned long long)st.cached);
	u0 = srv_stats().unlocks;
	ret = vmfs_dlm_cache_drop_all(handle);
	check(ret == 0 && cstats().cached == 0 && srv_stats().unlocks == u0 + st.cached,
	      "drop_all released them all: %d", ret);
}

/* The daemon goes away with locks in the cache and one in use. */
static void test_daemon_gone(void)
{
	struct vmfs_dlm_lksb lk, lk2;
	char *text = NULL;
	int ret;

	get("k", VMFS_DLM_EX, 0, &lk);
	vmfs_dlm_cache_put(handle, &lk);
	get("l", VMFS_DLM_PR, 0, &lk2);
	vmfs_dlm_query(handle, "die", NULL, &text);
	free(text);
	PUMP_UNTIL(vmfs_dlm_dispatch(handle) == VMFS_DLM_EDAEMON);
	ret = get("k", VMFS_DLM_EX, 0, &lk);
	check(ret == VMFS_DLM_EDAEMON, "no hit once the daemon is gone: %d", ret);
	ret = vmfs_dlm_cache_put(handle, &lk2);
	check(ret == VMFS_DLM_ELOST, "the use in progress ends as lost: %d", ret);
	check(cstats().cached == 0, "the cache is empty");
	memset(&seen, 0, sizeof(seen));
	ret = vmfs_dlm_cache_drop_all(handle);
	check(ret == 0 && seen.flush_calls == 0, "nothing left to flush: %d", ret);
}

static void run_tests(void)
{
	struct vmfs_dlm_callbacks cb = { .blocking = on_blocking, .lost = on_lost };
	int ret;

	ret = vmfs_dlm_open("test-lib-cache", &handle);
	check(ret == 0, "open: %d", ret);
	if (ret)
		return;
	vmfs_dlm_set_callbacks(handle, &cb, NULL);
	vmfs_dlm_cache_set_flush(handle, on_flush, NULL);

	test_hit();
	test_convert();
	test_blocking_idle();
	test_blocking_in_use();
	test_downconvert();
	test_lost();
	test_concurrent();
	test_convert_deadlock();
	test_lost_converting();
	test_flush_error();
	test_flush_retry();
	test_drop();
	test_daemon_gone();
	vmfs_dlm_close(handle);
}

int main(void)
{
	pid_t srv;
	int ret;

	setvbuf(stderr, NULL, _IONBF, 0);
	signal(SIGPIPE, SIG_IGN);
	ret = fake_dlmd_start("vmfs-test-lib-cache", srv_msg, &srv);
	if (ret)
		return ret;

	run_tests();

	fake_dlmd_wait(srv);
	fprintf(stderr, "%s: %d failure(s)\n", check_failures() ? "FAIL" : "PASS", check_failures());
	return check_failures() ? 1 : 0;
}
