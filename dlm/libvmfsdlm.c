/* libvmfsdlm.c — client library of vmfs-dlmd (include/vmfs/dlm.h).
 *
 * One handle = one libqb IPC connection to the local daemon.  Requests go
 * out with qb_ipcc_sendv_recv() and get an immediate response (accepted or
 * not); outcomes come later as events carrying our req_id (dlm/ipc_proto.h):
 *
 *   request        events for its req_id
 *   LOCK           [QUEUED{lkid}] then GRANTED{lkid,epoch,mode,lvb} | REFUSED{err}
 *   CONVERT        [QUEUED] then GRANTED | REFUSED{err}
 *   UNLOCK, CANCEL, TRANSFER, RECOVERY_REG, RECOVERY_DONE
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
};

enum cb_type {
	CB_COMPLETION = 1,
	CB_BLOCKING,
	CB_LOST,
	CB_LEASE,
	CB_RECOVER,
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

/* p has its outcome in p->lksb: take it off the list; an asynchronous
 * request becomes a completion callback. */
static void pending_finish(vmfs_dlm_t *h, struct pending *p)
{
	struct cb_event *e;

	pending_unlink(h, p);
	p->done = true;
	if (!p->async)
		return;
	e = calloc(1, sizeof(*e));
	if (e) {
		e->type = CB_COMPLETION;
		e->arg = p->arg;
		e->lksb = p->lksb;
		cb_queue(h, e);
	}
	free(p);
}

/* The daemon is gone: fail everything that waits, once. */
static void conn_lost(vmfs_dlm_t *h)
{
	if (h->dead)
		return;
	h->dead = true;
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

/* Apply one event; anything malformed or unexpected is dropped.  The
 * daemon is the same build, so a bad event means a bug or a stranger on
 * the other end: never worth crashing the client for. */
static void handle_event(vmfs_dlm_t *h, const void *buf, ssize_t len)
{
	const struct vmfs_ipc_event *ev = buf;
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
		cb_queue_new(h, CB_BLOCKING, ev->lkid, ev->mode, 0, NULL);
		return;
	case VMFS_IPC_EV_LOST:
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

/* Wait (with h->lock) until p is done, or p has its lkid when
 * p->wake_on_queued, or deadline (monotonic ms, 0 = none) passes.
 * Returns 0 or -ETIMEDOUT.  Drives the event stream meanwhile. */
static int wait_pending(vmfs_dlm_t *h, struct pending *p, uint64_t deadline)
{
	for (;;) {
		uint64_t now;
		int timeout;

		if (p->done || (p->wake_on_queued && p->queued))
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

int vmfs_dlm_dispatch(vmfs_dlm_t *h)
{
	int ret;

	if (!h)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	if (!h->dead)
		drain(h);
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

int vmfs_dlm_lock(vmfs_dlm_t *h, const char *ls, const char *res, int mode,
		  unsigned flags, const char *tag, int timeout_ms,
		  struct vmfs_dlm_lksb *lksb)
{
	struct vmfs_ipc_lock req;
	struct pending p;
	int ret;

	if (!h || !lksb || !str_fits(ls, VMFS_DLM_NAME_MAX) || !*ls ||
	    !str_fits(res, VMFS_DLM_NAME_MAX) || !*res ||
	    mode < VMFS_DLM_NL || mode > VMFS_DLM_EX ||
	    (tag && !str_fits(tag, VMFS_DLM_TAG_MAX)))
		return -EINVAL;
	if (tls_cb_handle == h)
		return -EDEADLK;
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

	pthread_mutex_lock(&h->lock);
	ret = submit(h, &p, &req, sizeof(req), &req.req_id);
	if (ret < 0)
		goto out;
	if (wait_pending(h, &p, deadline_of(timeout_ms)) == -ETIMEDOUT)
		ret = cancel_timed_out(h, &p);
	else
		ret = p.lksb.status;
	if (ret == 0)
		*lksb = p.lksb;
	else
		lksb->status = ret;
out:
	deliver_callbacks(h);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int vmfs_dlm_convert(vmfs_dlm_t *h, struct vmfs_dlm_lksb *lksb, int mode,
		     unsigned flags, int timeout_ms)
{
	struct vmfs_ipc_convert req;
	struct pending p;
	int ret;

	if (!h || !lksb || !lksb->lkid || mode < VMFS_DLM_NL || mode > VMFS_DLM_EX)
		return -EINVAL;
	if (tls_cb_handle == h)
		return -EDEADLK;
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

	pthread_mutex_lock(&h->lock);
	ret = submit(h, &p, &req, sizeof(req), &req.req_id);
	if (ret < 0)
		goto out;
	if (wait_pending(h, &p, deadline_of(timeout_ms)) == -ETIMEDOUT)
		ret = cancel_timed_out(h, &p);
	else
		ret = p.lksb.status;
	if (ret == 0) {
		lksb->epoch = p.lksb.epoch;
		lksb->mode = p.lksb.mode;
		lksb->lvb_valid = p.lksb.lvb_valid;
		memcpy(lksb->lvb, p.lksb.lvb, VMFS_DLM_LVB_LEN);
	}
	lksb->status = ret;
out:
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
