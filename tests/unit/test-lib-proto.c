/* test-lib-proto.c — libvmfsdlm against a fake vmfs-dlmd.
 *
 * A child process (fake-dlmd.c) runs a small libqb IPC server that speaks
 * dlm/ipc_proto.h and answers according to the resource name of each LOCK
 * request, so the library's side of the protocol is exercised without
 * corosync:
 *
 *   grant     QUEUED, GRANTED                      plain success
 *   garbage   malformed events first, then GRANTED the library must drop them
 *   refuse    REFUSED(VMFS_DLM_EAGAIN)             NOQUEUE refused
 *   queue     QUEUED; a CANCEL gives REFUSED(ECANCELED) + DONE
 *   race      QUEUED; a CANCEL gives GRANTED + DONE(ENOLOCK): the grant won
 *   notify    GRANTED, BLOCKING(PR), LOST(TRANSFERRED)
 *   die       the server exits after accepting the request
 *
 * QUERY "unlocks" answers {"unlocks": N} (UNLOCKs seen), anything else a
 * fixed document.  TRANSFER is refused with ESTALE unless from_epoch == 1;
 * TRANSFER_SET unless every from_epoch == 1 and every to == from + 1.
 *
 * Exit: 0 pass, 1 fail, 77 skip (IPC unavailable), 99 setup error.
 */
#include "config.h"

#include <errno.h>
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

static uint64_t srv_next_lkid = 100;
static unsigned srv_unlocks;
/* The LOCK waiting for a CANCEL ("queue" or "race"). */
static uint32_t srv_wait_req;
static uint64_t srv_wait_lkid;
static int srv_wait_race;

/* Every way an event can be wrong that the library must survive. */
static void srv_garbage(qb_ipcs_connection_t *c, uint32_t req_id)
{
	struct vmfs_ipc_event ev;
	char big[8192];

	/* Header only. */
	memset(&ev, 0, sizeof(ev));
	ev.hdr.id = VMFS_IPC_EV_GRANTED;
	ev.hdr.size = sizeof(ev.hdr);
	qb_ipcs_event_send(c, &ev, sizeof(ev.hdr));
	/* Size field lies. */
	ev.hdr.size = 12345;
	ev.req_id = req_id;
	qb_ipcs_event_send(c, &ev, sizeof(ev));
	/* Right size, but the struct is followed by junk. */
	memset(big, 0x5a, sizeof(big));
	ev.hdr.size = sizeof(big);
	memcpy(big, &ev, sizeof(ev));
	qb_ipcs_event_send(c, big, sizeof(big));
	/* Unknown event id. */
	fake_dlmd_event(c, 999, req_id, 0, 5, VMFS_DLM_EX, 0, 0);
	/* GRANTED for a request nobody made, and with an impossible mode. */
	fake_dlmd_event(c, VMFS_IPC_EV_GRANTED, req_id + 1000, 0, 5, VMFS_DLM_EX, 0, 0);
	fake_dlmd_event(c, VMFS_IPC_EV_GRANTED, req_id, 0, 5, 99, 0, 0);
	/* DONE answering a LOCK (wrong kind of outcome). */
	fake_dlmd_event(c, VMFS_IPC_EV_DONE, req_id, 0, 5, 0, 0, 0);
	/* RECOVER whose lockspace name is not terminated. */
	memset(&ev, 0, sizeof(ev));
	ev.hdr.id = VMFS_IPC_EV_RECOVER;
	ev.hdr.size = sizeof(ev);
	memset(ev.ls, 'x', sizeof(ev.ls));
	qb_ipcs_event_send(c, &ev, sizeof(ev));
	/* BLOCKING with an impossible mode. */
	fake_dlmd_event(c, VMFS_IPC_EV_BLOCKING, 0, 0, 5, -3, 0, 0);
}

static void srv_lock(qb_ipcs_connection_t *c, const struct vmfs_ipc_lock *l)
{
	uint64_t lkid = srv_next_lkid++;

	fake_dlmd_respond(c, l->hdr.id, 0, NULL);
	if (strcmp(l->res, "die") == 0) {
		fake_dlmd_disconnect(c);
		return;
	}
	if (strcmp(l->res, "refuse") == 0) {
		fake_dlmd_event(c, VMFS_IPC_EV_REFUSED, l->req_id, VMFS_DLM_EAGAIN, 0, 0, 0, 0);
		return;
	}
	if (strcmp(l->res, "garbage") == 0)
		srv_garbage(c, l->req_id);
	fake_dlmd_event(c, VMFS_IPC_EV_QUEUED, l->req_id, 0, lkid, 0, 0, 0);
	if (strcmp(l->res, "queue") == 0 || strcmp(l->res, "race") == 0) {
		srv_wait_req = l->req_id;
		srv_wait_lkid = lkid;
		srv_wait_race = strcmp(l->res, "race") == 0;
		return;
	}
	fake_dlmd_event(c, VMFS_IPC_EV_GRANTED, l->req_id, 0, lkid, (int)l->mode, 0, 0);
	if (strcmp(l->res, "notify") == 0) {
		fake_dlmd_event(c, VMFS_IPC_EV_BLOCKING, 0, 0, lkid, VMFS_DLM_PR, 0, 0);
		fake_dlmd_event(c, VMFS_IPC_EV_LOST, 0, 0, lkid, 0, VMFS_DLM_LOST_TRANSFERRED, 0);
	}
}

static int32_t srv_msg(qb_ipcs_connection_t *c, void *data, size_t size)
{
	const struct qb_ipc_request_header *hdr = data;
	const struct vmfs_ipc_unlock *u = data;
	const struct vmfs_ipc_transfer *t = data;
	const struct vmfs_ipc_query *q = data;
	char text[64];

	switch (hdr->id) {
	case VMFS_IPC_HELLO:
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		fake_dlmd_event(c, VMFS_IPC_EV_LEASE, 0, 0, 0, 0, 0, 1);
		break;
	case VMFS_IPC_LOCK:
		srv_lock(c, data);
		break;
	case VMFS_IPC_CONVERT: {
		const struct vmfs_ipc_convert *cv = data;

		fake_dlmd_respond(c, hdr->id, 0, NULL);
		fake_dlmd_event(c, VMFS_IPC_EV_GRANTED, cv->req_id, 0, cv->lkid, (int)cv->mode, 0, 0);
		break;
	}
	case VMFS_IPC_UNLOCK:
		srv_unlocks++;
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		fake_dlmd_event(c, VMFS_IPC_EV_DONE, u->req_id, 0, u->lkid, 0, 0, 0);
		break;
	case VMFS_IPC_CANCEL:
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		if (u->lkid != srv_wait_lkid) {
			fake_dlmd_event(c, VMFS_IPC_EV_DONE, u->req_id, VMFS_DLM_ENOLOCK, 0, 0, 0, 0);
		} else if (srv_wait_race) {
			fake_dlmd_event(c, VMFS_IPC_EV_GRANTED, srv_wait_req, 0, u->lkid, VMFS_DLM_EX, 0, 0);
			fake_dlmd_event(c, VMFS_IPC_EV_DONE, u->req_id, VMFS_DLM_ENOLOCK, 0, 0, 0, 0);
		} else {
			fake_dlmd_event(c, VMFS_IPC_EV_DONE, u->req_id, 0, 0, 0, 0, 0);
			fake_dlmd_event(c, VMFS_IPC_EV_REFUSED, srv_wait_req, VMFS_DLM_ECANCELED, 0, 0, 0, 0);
		}
		srv_wait_lkid = 0;
		break;
	case VMFS_IPC_TRANSFER:
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		fake_dlmd_event(c, VMFS_IPC_EV_DONE, t->req_id,
			  t->from_epoch == 1 ? 0 : VMFS_DLM_ESTALE, 0, 0, 0, 0);
		break;
	case VMFS_IPC_TRANSFER_SET: {
		const struct vmfs_ipc_transfer_set *ts = data;
		int err = 0;

		if (size != sizeof(*ts) || ts->n < 1 || ts->n > VMFS_DLM_TRANSFER_SET_MAX) {
			fake_dlmd_respond(c, hdr->id, VMFS_DLM_EPROTO, NULL);
			break;
		}
		for (uint32_t i = 0; i < ts->n; i++)
			if (ts->x[i].from_epoch != 1 || ts->x[i].to != ts->x[i].from + 1)
				err = VMFS_DLM_ESTALE;
		fake_dlmd_respond(c, hdr->id, 0, NULL);
		fake_dlmd_event(c, VMFS_IPC_EV_DONE, ts->req_id, err, 0, 0, 0, 0);
		break;
	}
	case VMFS_IPC_QUERY:
		if (strcmp(q->what, "unlocks") == 0)
			snprintf(text, sizeof(text), "{\"unlocks\": %u}", srv_unlocks);
		else
			snprintf(text, sizeof(text), "{\"version\": 1}");
		fake_dlmd_respond(c, hdr->id, 0, text);
		break;
	default:
		fake_dlmd_respond(c, hdr->id, -EINVAL, NULL);
		break;
	}
	return 0;
}

/* --- the test (parent) -------------------------------------------------- */

struct seen {
	int lease_calls, lease_last;
	int blocking_calls, blocking_wanted;
	int lost_calls, lost_reason;
	int recover_calls;
	int completions;
	void *completion_arg;
	struct vmfs_dlm_lksb completion_lksb;
	int deadlk;		/* result of a sync call from inside a callback */
	int in_callback;	/* overlap detector */
	int overlap;
};

static struct seen seen;
static vmfs_dlm_t *handle;

static void cb_enter(void)
{
	if (__atomic_fetch_add(&seen.in_callback, 1, __ATOMIC_SEQ_CST))
		seen.overlap++;
}

static void cb_leave(void)
{
	__atomic_fetch_sub(&seen.in_callback, 1, __ATOMIC_SEQ_CST);
}

static void on_completion(void *arg, const struct vmfs_dlm_lksb *lksb)
{
	cb_enter();
	seen.completions++;
	seen.completion_arg = arg;
	seen.completion_lksb = *lksb;
	cb_leave();
}

static void on_blocking(void *ctx, uint64_t lkid, int wanted)
{
	struct vmfs_dlm_lksb lksb;

	cb_enter();
	seen.blocking_calls++;
	seen.blocking_wanted = wanted;
	seen.deadlk = vmfs_dlm_lock(handle, "ls", "grant", VMFS_DLM_EX, 0, NULL, -1, &lksb);
	cb_leave();
}

static void on_lost(void *ctx, uint64_t lkid, int reason)
{
	cb_enter();
	seen.lost_calls++;
	seen.lost_reason = reason;
	cb_leave();
}

static void on_lease(void *ctx, int valid)
{
	cb_enter();
	seen.lease_calls++;
	seen.lease_last = valid;
	cb_leave();
}

static void on_recover(void *ctx, const char *ls, uint32_t nodeid)
{
	cb_enter();
	seen.recover_calls++;
	cb_leave();
}

/* Dispatch until cond holds or ms pass. */
#define PUMP_UNTIL_MS(h, cond, ms)					\
	do {								\
		uint64_t end_ = now_mono_ms() + (ms);			\
		while (!(cond) && now_mono_ms() < end_) {			\
			struct pollfd p_ = { .fd = vmfs_dlm_fd(h), .events = POLLIN }; \
			poll(&p_, 1, 50);				\
			vmfs_dlm_dispatch(h);				\
		}							\
	} while (0)
#define PUMP_UNTIL(h, cond) PUMP_UNTIL_MS(h, cond, 2000)

#define N_THREADS 4
#define N_ITER 100

static void *lock_thread(void *arg)
{
	long bad = 0;
	int i;

	for (i = 0; i < N_ITER; i++) {
		struct vmfs_dlm_lksb lksb;

		memset(&lksb, 0, sizeof(lksb));
		if (vmfs_dlm_lock(handle, "ls", "grant", VMFS_DLM_PR, 0, NULL, 5000, &lksb) != 0 ||
		    lksb.lkid == 0 || vmfs_dlm_unlock(handle, &lksb, 0) != 0)
			bad++;
	}
	return (void *)bad;
}

static volatile int dispatcher_stop;

static void *dispatch_thread(void *arg)
{
	while (!dispatcher_stop) {
		struct pollfd p = { .fd = vmfs_dlm_fd(handle), .events = POLLIN };

		poll(&p, 1, 10);
		vmfs_dlm_dispatch(handle);
	}
	return NULL;
}

static void run_tests(void)
{
	struct vmfs_dlm_callbacks cb = {
		.completion = on_completion, .blocking = on_blocking, .lost = on_lost,
		.lease = on_lease, .recover = on_recover,
	};
	struct vmfs_dlm_lksb lksb;
	char name[VMFS_DLM_NAME_MAX + 1];
	pthread_t th[N_THREADS], disp;
	uint64_t t0, lkid = 0;
	uint32_t nodeid = 0;
	char *json = NULL;
	int ret, i, arg = 42;
	long bad = 0;

	ret = vmfs_dlm_open("test-lib", &handle);
	check(ret == 0, "open: %d", ret);
	if (ret)
		return;
	vmfs_dlm_set_callbacks(handle, &cb, NULL);
	vmfs_dlm_local_node(handle, &nodeid, name);
	check(nodeid == 7 && strcmp(name, "fakehost") == 0, "HELLO identity: %u %s", nodeid, name);
	PUMP_UNTIL(handle, seen.lease_calls);
	check(seen.lease_calls == 1 && seen.lease_last == 1, "lease(1) delivered by dispatch");

	ret = vmfs_dlm_lock(handle, "ls", "grant", VMFS_DLM_EX, 0, "t", -1, &lksb);
	check(ret == 0 && lksb.lkid && lksb.epoch == 1 && lksb.mode == VMFS_DLM_EX &&
	      lksb.lvb_valid && (uint8_t)lksb.lvb[0] == 0xab, "lock granted: %d lkid %llu", ret,
	      (unsigned long long)lksb.lkid);
	ret = vmfs_dlm_convert(handle, &lksb, VMFS_DLM_PR, 0, 1000);
	check(ret == 0 && lksb.mode == VMFS_DLM_PR, "convert to PR: %d", ret);

	ret = vmfs_dlm_lock(handle, "ls", "garbage", VMFS_DLM_EX, 0, NULL, 2000, &lksb);
	check(ret == 0 && lksb.mode == VMFS_DLM_EX, "malformed events dropped, lock granted: %d",
	      ret);
	PUMP_UNTIL_MS(handle, 0, 200);
	check(seen.recover_calls == 0 && seen.blocking_calls == 0,
	      "no callback from malformed events");

	ret = vmfs_dlm_lock(handle, "ls", "refuse", VMFS_DLM_EX, VMFS_DLM_NOQUEUE, NULL, -1, &lksb);
	check(ret == VMFS_DLM_EAGAIN, "NOQUEUE refused: %d", ret);

	t0 = now_mono_ms();
	ret = vmfs_dlm_lock(handle, "ls", "queue", VMFS_DLM_EX, 0, NULL, 200, &lksb);
	check(ret == VMFS_DLM_ETIMEDOUT && now_mono_ms() - t0 >= 200,
	      "timeout cancels: %d after %llu ms", ret, (unsigned long long)(now_mono_ms() - t0));

	ret = vmfs_dlm_query(handle, "unlocks", NULL, &json);
	check(ret == 0 && json && strcmp(json, "{\"unlocks\": 0}") == 0, "query: %s",
	      json ? json : "(null)");
	free(json);
	ret = vmfs_dlm_lock(handle, "ls", "race", VMFS_DLM_EX, 0, NULL, 100, &lksb);
	check(ret == VMFS_DLM_ETIMEDOUT, "cancel lost the race: %d", ret);
	ret = vmfs_dlm_query(handle, "unlocks", NULL, &json);
	check(ret == 0 && json && strcmp(json, "{\"unlocks\": 1}") == 0,
	      "the late grant was released: %s", json ? json : "(null)");
	free(json);

	ret = vmfs_dlm_lock(handle, "ls", "notify", VMFS_DLM_EX, 0, NULL, -1, &lksb);
	check(ret == 0, "lock notify: %d", ret);
	PUMP_UNTIL(handle, seen.lost_calls);
	check(seen.blocking_calls == 1 && seen.blocking_wanted == VMFS_DLM_PR,
	      "blocking(PR) delivered");
	check(seen.lost_calls == 1 && seen.lost_reason == VMFS_DLM_LOST_TRANSFERRED,
	      "lost(TRANSFERRED) delivered");
	check(seen.deadlk == -EDEADLK, "sync lock inside a callback refused: %d", seen.deadlk);

	ret = vmfs_dlm_lock_async(handle, "ls", "grant", VMFS_DLM_CR, 0, NULL, &arg, &lkid);
	check(ret == 0, "lock_async accepted: %d", ret);
	PUMP_UNTIL(handle, seen.completions);
	check(seen.completions == 1 && seen.completion_arg == &arg &&
	      seen.completion_lksb.status == 0 && seen.completion_lksb.mode == VMFS_DLM_CR &&
	      lkid == seen.completion_lksb.lkid, "completion(arg, lksb) with the lkid");

	ret = vmfs_dlm_transfer(handle, 5, 2, 6);
	check(ret == VMFS_DLM_ESTALE, "stale transfer refused: %d", ret);
	ret = vmfs_dlm_transfer(handle, 5, 1, 6);
	check(ret == 0, "transfer done: %d", ret);
	{
		struct vmfs_dlm_transfer ts[VMFS_DLM_TRANSFER_SET_MAX + 1];

		for (i = 0; i < VMFS_DLM_TRANSFER_SET_MAX + 1; i++)
			ts[i] = (struct vmfs_dlm_transfer){ 10 + 2 * (uint64_t)i, 1, 11 + 2 * (uint64_t)i };
		ret = vmfs_dlm_transfer_set(handle, ts, 3);
		check(ret == 0, "transfer set of 3 done: %d", ret);
		ret = vmfs_dlm_transfer_set(handle, ts, VMFS_DLM_TRANSFER_SET_MAX);
		check(ret == 0, "transfer set of 16 done: %d", ret);
		ts[1].from_epoch = 2;
		ret = vmfs_dlm_transfer_set(handle, ts, 3);
		check(ret == VMFS_DLM_ESTALE, "transfer set with a stale epoch refused: %d", ret);
		check(vmfs_dlm_transfer_set(handle, ts, 0) == -EINVAL &&
		      vmfs_dlm_transfer_set(handle, ts, VMFS_DLM_TRANSFER_SET_MAX + 1) == -EINVAL &&
		      vmfs_dlm_transfer_set(handle, NULL, 1) == -EINVAL,
		      "transfer set: bad counts refused by the library");
	}

	/* Threads: sync calls from several threads plus a dispatcher. */
	pthread_create(&disp, NULL, dispatch_thread, NULL);
	for (i = 0; i < N_THREADS; i++)
		pthread_create(&th[i], NULL, lock_thread, NULL);
	for (i = 0; i < N_THREADS; i++) {
		void *r;

		pthread_join(th[i], &r);
		bad += (long)r;
	}
	dispatcher_stop = 1;
	pthread_join(disp, NULL);
	check(bad == 0, "%d threads x %d lock+unlock: %ld failed", N_THREADS, N_ITER, bad);
	check(seen.overlap == 0, "callbacks never ran concurrently");

	/* Connection loss. */
	ret = vmfs_dlm_lock(handle, "ls", "die", VMFS_DLM_EX, 0, NULL, 5000, &lksb);
	check(ret == VMFS_DLM_EDAEMON, "daemon gone during a lock: %d", ret);
	PUMP_UNTIL(handle, seen.lease_last == 0);
	check(seen.lease_calls == 2 && seen.lease_last == 0, "lease(0) reported once (%d calls)",
	      seen.lease_calls);
	ret = vmfs_dlm_lock(handle, "ls", "grant", VMFS_DLM_EX, 0, NULL, -1, &lksb);
	check(ret == VMFS_DLM_EDAEMON, "later call fails: %d", ret);
	check(vmfs_dlm_dispatch(handle) == VMFS_DLM_EDAEMON, "dispatch reports the loss");
	check(seen.lease_calls == 2, "lease(0) not repeated");
	vmfs_dlm_close(handle);
}

int main(void)
{
	pid_t srv;
	int ret;

	setvbuf(stderr, NULL, _IONBF, 0);
	signal(SIGPIPE, SIG_IGN);
	ret = fake_dlmd_start("vmfs-test-lib", srv_msg, &srv);
	if (ret)
		return ret;

	run_tests();

	/* The server stops when its client is gone; alarm() bounds it. */
	fake_dlmd_wait(srv);
	fprintf(stderr, "%s: %d failure(s)\n", check_failures() ? "FAIL" : "PASS", check_failures());
	return check_failures() ? 1 : 0;
}
