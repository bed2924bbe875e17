/* ipc.c — vmfs-dlmd's libqb IPC server for libvmfsdlm clients.
 *
 * A request is validated here (ipc_proto.h: size == struct size for the id,
 * strings NUL-terminated inside their arrays, mode <= EX, known flags,
 * HELLO first) and, for lock operations, turned into one CPG message that
 * carries (client_id, req_id).  The response only says "accepted" (0) or
 * why not; the outcome arrives later as an event when the rsm applies the
 * message on this host.  Nothing a client sends can make the daemon fail:
 * every malformed request gets an error response and a log line.
 *
 * Per-client bookkeeping, all main loop only:
 *   pending  requests accepted and not finished (final event not yet sent).
 *            Used to re-send requests lost in a table RESET (partition merge)
 *            and to refuse them when corosync goes away.
 *   backlog  events the client's ring had no room for; retried by a timer,
 *            in order.  A client that lets DLMD_CLIENT_BACKLOG_MAX events
 *            pile up is disconnected (its locks are released, as if it had
 *            died), because dropping one event (a GRANTED) would leave it
 *            waiting forever.
 *
 * Access: uid 0, or the primary gid of the connecting process equal to the
 * configured --group (SO_PEERCRED, as libqb reports it).  The shared memory
 * files of a connection are made root:group 0660 (root 0600 without group).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "io.h"
#include "log.h"

/* libqb's poll handlers carry no context of ours; one daemon per process. */
static struct dlmd *ipc_d;
static qb_loop_timer_handle backlog_timer;	/* main loop only */
static bool backlog_armed;

/* ---------------------------------------------------------------- loop glue */

static int32_t job_add(enum qb_loop_priority p, void *data, qb_loop_job_dispatch_fn fn)
{
	return qb_loop_job_add(ipc_d->loop, p, data, fn);
}

static int32_t dispatch_add(enum qb_loop_priority p, int32_t fd, int32_t evts, void *data,
			    qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_add(ipc_d->loop, p, fd, evts, data, fn);
}

static int32_t dispatch_mod(enum qb_loop_priority p, int32_t fd, int32_t evts, void *data,
			    qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_mod(ipc_d->loop, p, fd, evts, data, fn);
}

static int32_t dispatch_del(int32_t fd)
{
	return qb_loop_poll_del(ipc_d->loop, fd);
}

/* ---------------------------------------------------------------- clients */

static struct dlmd_client *client_by_id(struct dlmd *d, uint32_t id)
{
	struct dlmd_client *c;

	if (id == 0)
		return NULL;
	qb_list_for_each_entry(c, &d->clients, list)
		if (c->client_id == id)
			return c->dead ? NULL : c;
	return NULL;
}

static struct dlmd_pending *pending_find(struct dlmd_client *c, uint32_t req_id)
{
	struct dlmd_pending *p;

	qb_list_for_each_entry(p, &c->pending, list)
		if (p->req_id == req_id)
			return p;
	return NULL;
}

static void pending_free(struct dlmd_client *c, struct dlmd_pending *p)
{
	qb_list_del(&p->list);
	c->n_pending--;
	free(p);
}

/* ---------------------------------------------------------------- events */

static void backlog_timer_fn(void *data);

static void backlog_arm(void)
{
	if (backlog_armed)
		return;
	if (qb_loop_timer_add(ipc_d->loop, QB_LOOP_MED, 5 * 1000000ULL, ipc_d,
			      backlog_timer_fn, &backlog_timer) == 0)
		backlog_armed = true;
}

/* Try to push c's backlog; returns true when it is empty. */
static bool backlog_flush(struct dlmd_client *c)
{
	struct dlmd_backlog *b, *tmp;
	ssize_t rc;

	qb_list_for_each_entry_safe(b, tmp, &c->backlog, list) {
		rc = qb_ipcs_event_send(c->conn, &b->ev, sizeof(b->ev));
		if (rc == -EAGAIN || rc == -ENOBUFS)
			return false;
		if (rc < 0)
			log_warn("client %u: event %d lost: %s", c->client_id, b->ev.hdr.id,
				 strerror((int)-rc));
		qb_list_del(&b->list);
		c->n_backlog--;
		free(b);
	}
	return true;
}

static void backlog_timer_fn(void *data)
{
	struct dlmd *d = data;
	struct dlmd_client *c;
	bool more = false;

	backlog_armed = false;
	qb_list_for_each_entry(c, &d->clients, list)
		if (!c->dead && c->n_backlog && !backlog_flush(c))
			more = true;
	if (more)
		backlog_arm();
}

static void kick_job(void *data)
{
	qb_ipcs_connection_t *conn = data;

	qb_ipcs_disconnect(conn);
	qb_ipcs_connection_unref(conn);
}

/* Drop a client from outside any walk of d->clients: qb_ipcs_disconnect()
 * may run closed+destroyed (and free c) at once, and we are often inside
 * such a walk or an rsm callback.  c->dead stops all traffic meanwhile. */
static void client_kick(struct dlmd_client *c, const char *why)
{
	if (c->dead)
		return;
	log_err("client %u (pid %d %s): %s; disconnecting it", c->client_id, (int)c->pid,
		c->program, why);
	c->dead = true;
	qb_ipcs_connection_ref(c->conn);
	if (qb_loop_job_add(c->d->loop, QB_LOOP_HIGH, c->conn, kick_job) != 0) {
		qb_ipcs_connection_unref(c->conn);
		/* it stays connected but gets nothing; it will time out */
		log_err("client %u: cannot schedule the disconnect", c->client_id);
	}
}

static void client_event(struct dlmd_client *c, struct vmfs_ipc_event *ev)
{
	struct dlmd_backlog *b;
	ssize_t rc;

	if (c->dead)
		return;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.error = 0;
	if (c->n_backlog == 0) {
		rc = qb_ipcs_event_send(c->conn, ev, sizeof(*ev));
		if (rc >= 0)
			return;
		if (rc != -EAGAIN && rc != -ENOBUFS) {
			log_warn("client %u (pid %d): cannot send event %d: %s", c->client_id,
				 (int)c->pid, ev->hdr.id, strerror((int)-rc));
			return;
		}
	}
	if (c->n_backlog >= DLMD_CLIENT_BACKLOG_MAX) {
		client_kick(c, "too many events not read");
		return;
	}
	b = malloc(sizeof(*b));
	if (!b) {
		client_kick(c, "out of memory queueing an event");
		return;
	}
	b->ev = *ev;
	qb_list_add_tail(&b->list, &c->backlog);
	c->n_backlog++;
	backlog_arm();
}

static void send_simple(struct dlmd_client *c, int id, uint32_t req_id, int err,
			uint64_t lkid)
{
	struct vmfs_ipc_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.hdr.id = id;
	ev.req_id = req_id;
	ev.err = err;
	ev.lkid = lkid;
	client_event(c, &ev);
}

void dlmd_ipc_lease_broadcast(struct dlmd *d, int valid)
{
	struct dlmd_client *c;
	struct vmfs_ipc_event ev;

	qb_list_for_each_entry(c, &d->clients, list) {
		if (c->dead || !c->hello || c->lease_sent == valid)
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.hdr.id = VMFS_IPC_EV_LEASE;
		ev.nodeid = (uint32_t)valid;
		client_event(c, &ev);
		c->lease_sent = valid;
	}
}

static int ev_id(enum rsm_event_type t)
{
	switch (t) {
	case RSM_EV_QUEUED: return VMFS_IPC_EV_QUEUED;
	case RSM_EV_GRANTED: return VMFS_IPC_EV_GRANTED;
	case RSM_EV_REFUSED: return VMFS_IPC_EV_REFUSED;
	case RSM_EV_DONE: return VMFS_IPC_EV_DONE;
	case RSM_EV_BLOCKING: return VMFS_IPC_EV_BLOCKING;
	case RSM_EV_LOST: return VMFS_IPC_EV_LOST;
	case RSM_EV_RECOVER: return VMFS_IPC_EV_RECOVER;
	default: return 0;
	}
}

/* A pending op the rsm answered with VMFS_DLM_ELOST while loading a
 * snapshot (RSM_EV_RESET): its message was applied only in our old table,
 * which the base's table replaced.  Send it again instead of failing it,
 * when that is still what the client asked for.  Returns true if re-sent. */
static bool resend_lost(struct dlmd *d, struct dlmd_client *c, struct dlmd_pending *p)
{
	struct rsm_lock_view v;
	struct dlmd_pending *q;
	const struct vmfs_msg *m = &p->msg;
	uint64_t lkid = 0;
	int rc;

	if (!d->in_reset || p->resends >= 3)
		return false;
	switch (m->type) {
	case VMFS_MSG_REQUEST:
		/* not if the client meanwhile cancelled the request it knew */
		qb_list_for_each_entry(q, &c->pending, list)
			if (q->msg.type == VMFS_MSG_CANCEL && p->lkid &&
			    q->msg.u.cancel.lkid == p->lkid)
				return false;
		break;
	case VMFS_MSG_CONVERT:
		lkid = m->u.convert.lkid;
		break;
	case VMFS_MSG_RELEASE:
		lkid = m->u.release.lkid;
		break;
	case VMFS_MSG_CANCEL:
		lkid = m->u.cancel.lkid;
		break;
	default:	/* TRANSFER[_SET] (the epoch check keeps it safe), RECOVERY_* */
		break;
	}
	/* an op on a lock that is not ours any more in the new table */
	if (lkid && !(rsm_lock_lookup(d->rsm, lkid, &v) && v.nodeid == d->nodeid &&
		      v.client_id == c->client_id && !v.recovering))
		return false;
	p->resends++;
	rc = dlmd_cluster_send(d, &p->msg);
	if (rc < 0)
		return false;
	if (m->type == VMFS_MSG_REQUEST)
		p->lkid = 0;
	log_info("client %u: re-sent %s req %u lost in a table reset", c->client_id,
		 vmfs_msg_type_name(m->type), p->req_id);
	return true;
}

void dlmd_ipc_rsm_event(struct dlmd *d, const struct rsm_event *e)
{
	struct dlmd_client *c;
	struct dlmd_pending *p = NULL;
	struct vmfs_ipc_event ev;
	int id;

	if (e->type == RSM_EV_RESET) {
		/* the rsm now answers everything that changed (LOST, GRANTED,
		 * REFUSED/DONE with ELOST for our dropped ops); see resend_lost() */
		log_info("lock table replaced by a snapshot: reconciling local clients");
		d->in_reset = true;
		return;
	}
	id = ev_id(e->type);
	if (!id)
		return;		/* QUORUM / SYNCED: cluster.c updates the lease */
	c = client_by_id(d, e->client_id);
	if (!c) {
		/* its CLIENT_GONE is on the way; the rsm will clean up */
		log_debug("event %d for gone client %u dropped", id, e->client_id);
		return;
	}
	if (e->req_id) {
		p = pending_find(c, e->req_id);
		/* a request c sent after its warm-up call was applied: the one
		 * the warm-up was for (req_ids grow; the cast handles the wrap) */
		if (c->warm_until_us && (int32_t)(e->req_id - c->warm_mark) > 0)
			dlmd_warm_client_done(c, false);
	}
	switch (e->type) {
	case RSM_EV_QUEUED:
		if (p)
			p->lkid = e->lkid;
		break;
	case RSM_EV_GRANTED:
		if (p)
			pending_free(c, p);
		break;
	case RSM_EV_REFUSED:
	case RSM_EV_DONE:
		if (p && e->err == VMFS_DLM_ELOST && resend_lost(d, c, p))
			return;
		if (p)
			pending_free(c, p);
		break;
	default:
		break;
	}
	memset(&ev, 0, sizeof(ev));
	ev.hdr.id = id;
	ev.req_id = e->req_id;
	ev.err = e->err;
	ev.lkid = e->lkid;
	ev.epoch = e->epoch;
	ev.mode = e->mode;
	ev.reason = e->reason;
	ev.lvb_valid = e->lvb_valid;
	memcpy(ev.lvb, e->lvb, sizeof(ev.lvb));
	ev.nodeid = e->nodeid;
	if (e->ls)
		snprintf(ev.ls, sizeof(ev.ls), "%s", e->ls);
	client_event(c, &ev);
}

/* dlmd_ipc_cluster_lost(): LOST(RESET) for each granted or converting lock
 * of a local client in the table we had before corosync went away. */
static void lost_visit(void *arg, const struct rsm_resource_view *r)
{
	struct dlmd *d = arg;
	struct dlmd_client *c;
	struct vmfs_ipc_event ev;

	for (size_t i = 0; i < r->n_locks; i++) {
		const struct rsm_lock_view *v = &r->locks[i];

		if (v->nodeid != d->nodeid || v->client_id == 0 ||
		    v->queue == RSM_Q_WAITING)
			continue;
		c = client_by_id(d, v->client_id);
		if (!c)
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.hdr.id = VMFS_IPC_EV_LOST;
		ev.lkid = v->lkid;
		ev.reason = VMFS_DLM_LOST_RESET;
		client_event(c, &ev);
	}
}

void dlmd_ipc_cluster_lost(struct dlmd *d, const struct rsm *old)
{
	struct dlmd_client *c;
	struct dlmd_pending *p, *tmp;

	rsm_foreach_resource(old, NULL, lost_visit, d);
	qb_list_for_each_entry(c, &d->clients, list) {
		qb_list_for_each_entry_safe(p, tmp, &c->pending, list) {
			int id = (p->msg.type == VMFS_MSG_REQUEST ||
				  p->msg.type == VMFS_MSG_CONVERT) ? VMFS_IPC_EV_REFUSED
								   : VMFS_IPC_EV_DONE;

			send_simple(c, id, p->req_id, VMFS_DLM_ENOQUORUM, p->lkid);
			pending_free(c, p);
		}
	}
}

/* ---------------------------------------------------------------- requests */

static const size_t req_size[VMFS_IPC_REQ_MAX] = {
	[VMFS_IPC_HELLO] = sizeof(struct vmfs_ipc_hello),
	[VMFS_IPC_LOCK] = sizeof(struct vmfs_ipc_lock),
	[VMFS_IPC_CONVERT] = sizeof(struct vmfs_ipc_convert),
	[VMFS_IPC_UNLOCK] = sizeof(struct vmfs_ipc_unlock),
	[VMFS_IPC_CANCEL] = sizeof(struct vmfs_ipc_unlock),
	[VMFS_IPC_TRANSFER] = sizeof(struct vmfs_ipc_transfer),
	[VMFS_IPC_RECOVERY_REG] = sizeof(struct vmfs_ipc_recovery),
	[VMFS_IPC_RECOVERY_DONE] = sizeof(struct vmfs_ipc_recovery),
	[VMFS_IPC_QUERY] = sizeof(struct vmfs_ipc_query),
	[VMFS_IPC_TRANSFER_SET] = sizeof(struct vmfs_ipc_transfer_set),
	[VMFS_IPC_WARM] = sizeof(struct vmfs_ipc_warm),
};

static const char *const req_name[VMFS_IPC_REQ_MAX] = {
	[VMFS_IPC_HELLO] = "HELLO",
	[VMFS_IPC_LOCK] = "LOCK",
	[VMFS_IPC_CONVERT] = "CONVERT",
	[VMFS_IPC_UNLOCK] = "UNLOCK",
	[VMFS_IPC_CANCEL] = "CANCEL",
	[VMFS_IPC_TRANSFER] = "TRANSFER",
	[VMFS_IPC_RECOVERY_REG] = "RECOVERY_REG",
	[VMFS_IPC_RECOVERY_DONE] = "RECOVERY_DONE",
	[VMFS_IPC_QUERY] = "QUERY",
	[VMFS_IPC_TRANSFER_SET] = "TRANSFER_SET",
	[VMFS_IPC_WARM] = "WARM",
};

/* A string field is valid iff it has a NUL inside its array. */
static bool str_ok(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

/* A broken or hostile client must not fill the log: the first
 * DLMD_CLIENT_BAD_LOG refused requests of a connection are logged. */
static bool log_bad(struct dlmd_client *c)
{
	if (c->n_bad == UINT32_MAX)
		return false;
	if (++c->n_bad == DLMD_CLIENT_BAD_LOG)
		log_warn("client %u (pid %d): further refused requests are not logged",
			 c->client_id, (int)c->pid);
	return c->n_bad < DLMD_CLIENT_BAD_LOG;
}

static void respond(struct dlmd_client *c, int32_t id, int32_t err, const char *body,
		    size_t len)
{
	struct vmfs_ipc_response r;
	struct iovec iov[2];
	ssize_t rc;

	memset(&r, 0, sizeof(r));
	r.hdr.id = id;
	r.hdr.error = err;
	r.hdr.size = (int32_t)(sizeof(r) + len);
	r.nodeid = c->d->nodeid;
	r.client_id = c->client_id;
	snprintf(r.name, sizeof(r.name), "%s", c->d->cfg.name);
	r.len = (uint32_t)len;
	iov[0].iov_base = &r;
	iov[0].iov_len = sizeof(r);
	iov[1].iov_base = (void *)body;
	iov[1].iov_len = len;
	rc = qb_ipcs_response_sendv(c->conn, iov, len ? 2 : 1);
	if (rc == -EMSGSIZE && len) {
		/* the client's ring is smaller than ours */
		log_warn("client %u: %zu byte answer does not fit its buffer", c->client_id,
			 len);
		r.hdr.error = -EMSGSIZE;
		r.hdr.size = sizeof(r);
		r.len = 0;
		rc = qb_ipcs_response_sendv(c->conn, iov, 1);
	}
	if (rc < 0)
		log_warn("client %u (pid %d): cannot send response: %s", c->client_id,
			 (int)c->pid, strerror((int)-rc));
}

static void name_copy(struct vmfs_name *n, const char *s)
{
	/* callers checked the length; a failure here would be our bug */
	if (vmfs_name_set(n, s) < 0)
		n->len = 0;
}

/* Queue m as client c's request req_id: multicast it and remember it. */
static int submit(struct dlmd_client *c, struct vmfs_msg *m, uint32_t req_id, uint64_t lkid)
{
	struct dlmd *d = c->d;
	struct dlmd_pending *p;
	int rc;

	if (!dlmd_cluster_connected(d))
		return VMFS_DLM_ENOQUORUM;
	if (c->n_pending >= DLMD_CLIENT_PENDING_MAX)
		return -ENOBUFS;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	rc = dlmd_cluster_send(d, m);
	if (rc < 0) {
		free(p);
		return rc;
	}
	p->req_id = req_id;
	p->lkid = lkid;
	p->msg = *m;
	c->last_req_id = req_id;
	qb_list_add_tail(&p->list, &c->pending);
	c->n_pending++;
	return 0;
}

/* Local ownership check: lkid must be a lock of this client in our table. */
static int check_owner(struct dlmd_client *c, uint64_t lkid)
{
	struct rsm_lock_view v;

	if (!c->d->rsm)
		return VMFS_DLM_ENOQUORUM;
	if (lkid == 0 || !rsm_lock_lookup(c->d->rsm, lkid, &v))
		return VMFS_DLM_ENOLOCK;
	if (v.nodeid != c->d->nodeid || v.client_id != c->client_id)
		return VMFS_DLM_ENOLOCK;
	return 0;
}

static int do_hello(struct dlmd_client *c, const struct vmfs_ipc_hello *h)
{
	if (c->hello)
		return -EALREADY;
	if (h->version != VMFS_IPC_VERSION) {
		if (log_bad(c))
			log_warn("client pid %d: IPC version %u, we speak %u", (int)c->pid,
				 h->version, VMFS_IPC_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (!str_ok(h->program, sizeof(h->program)))
		return VMFS_DLM_EPROTO;
	snprintf(c->program, sizeof(c->program), "%s", h->program);
	c->hello = true;
	log_debug("client %u: pid %d uid %u program %s", c->client_id, (int)c->pid,
		  (unsigned)c->uid, c->program);
	return 0;
}

static int do_lock(struct dlmd_client *c, const struct vmfs_ipc_lock *q)
{
	const uint32_t ok_flags = VMFS_DLM_NOQUEUE | VMFS_DLM_PERSISTENT | VMFS_DLM_ADOPT |
				  VMFS_DLM_RECOVERY;
	struct vmfs_msg m;

	if (q->mode > VMFS_DLM_EX || (q->flags & ~ok_flags))
		return -EINVAL;
	if (!str_ok(q->ls, sizeof(q->ls)) || !str_ok(q->res, sizeof(q->res)) ||
	    !str_ok(q->tag, sizeof(q->tag)))
		return VMFS_DLM_EPROTO;
	if (!q->ls[0] || !q->res[0])
		return -EINVAL;
	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_REQUEST;
	m.u.request.o.client_id = c->client_id;
	m.u.request.o.req_id = q->req_id;
	m.u.request.pid = (uint32_t)c->pid;
	m.u.request.mode = (uint8_t)q->mode;
	m.u.request.flags = q->flags;
	name_copy(&m.u.request.ls, q->ls);
	name_copy(&m.u.request.res, q->res);
	name_copy(&m.u.request.program, c->program);
	name_copy(&m.u.request.tag, q->tag);
	return submit(c, &m, q->req_id, 0);
}

static int do_convert(struct dlmd_client *c, const struct vmfs_ipc_convert *q)
{
	struct vmfs_msg m;
	int rc;

	if (q->mode > VMFS_DLM_EX || (q->flags & ~(VMFS_DLM_NOQUEUE | VMFS_DLM_VALBLK)))
		return -EINVAL;
	rc = check_owner(c, q->lkid);
	if (rc < 0)
		return rc;
	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_CONVERT;
	m.u.convert.o.client_id = c->client_id;
	m.u.convert.o.req_id = q->req_id;
	m.u.convert.lkid = q->lkid;
	m.u.convert.mode = (uint8_t)q->mode;
	m.u.convert.flags = q->flags;
	memcpy(m.u.convert.lvb, q->lvb, sizeof(m.u.convert.lvb));
	return submit(c, &m, q->req_id, q->lkid);
}

static int do_unlock(struct dlmd_client *c, const struct vmfs_ipc_unlock *q, bool cancel)
{
	struct vmfs_msg m;
	int rc;

	if (q->flags & ~(cancel ? 0u : VMFS_DLM_VALBLK))
		return -EINVAL;
	rc = check_owner(c, q->lkid);
	if (rc < 0)
		return rc;
	memset(&m, 0, sizeof(m));
	if (cancel) {
		m.type = VMFS_MSG_CANCEL;
		m.u.cancel.o.client_id = c->client_id;
		m.u.cancel.o.req_id = q->req_id;
		m.u.cancel.lkid = q->lkid;
	} else {
		m.type = VMFS_MSG_RELEASE;
		m.u.release.o.client_id = c->client_id;
		m.u.release.o.req_id = q->req_id;
		m.u.release.lkid = q->lkid;
		m.u.release.flags = q->flags;
		memcpy(m.u.release.lvb, q->lvb, sizeof(m.u.release.lvb));
	}
	return submit(c, &m, q->req_id, q->lkid);
}

static int do_transfer(struct dlmd_client *c, const struct vmfs_ipc_transfer *q)
{
	struct vmfs_msg m;

	/* No lookup here: `from` may be another host's lock (the migration
	 * source) whose grant this daemon has not applied yet when the lkid
	 * reaches us by another path; the rsm checks both locks, the epoch
	 * and the modes in agreed order. */
	if (!q->from_lkid || !q->to_lkid || q->from_lkid == q->to_lkid)
		return VMFS_DLM_ENOLOCK;
	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_TRANSFER;
	m.u.transfer.o.client_id = c->client_id;
	m.u.transfer.o.req_id = q->req_id;
	m.u.transfer.from_lkid = q->from_lkid;
	m.u.transfer.from_epoch = q->from_epoch;
	m.u.transfer.to_lkid = q->to_lkid;
	return submit(c, &m, q->req_id, 0);
}

/* TRANSFER_SET: like TRANSFER, no lookup (the sources are another host's
 * locks); only the shape is checked here, the rsm checks every triple in
 * agreed order and applies all or none. */
static int do_transfer_set(struct dlmd_client *c, const struct vmfs_ipc_transfer_set *q)
{
	struct vmfs_msg m;

	if (q->n == 0 || q->n > VMFS_DLM_TRANSFER_SET_MAX)
		return -EINVAL;
	for (uint32_t i = q->n; i < VMFS_DLM_TRANSFER_SET_MAX; i++)
		if (q->x[i].from || q->x[i].from_epoch || q->x[i].to)
			return VMFS_DLM_EPROTO;
	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_TRANSFER_SET;
	m.u.transfer_set.o.client_id = c->client_id;
	m.u.transfer_set.o.req_id = q->req_id;
	m.u.transfer_set.n = q->n;
	for (uint32_t i = 0; i < q->n; i++) {
		if (!q->x[i].from || !q->x[i].to || q->x[i].from == q->x[i].to)
			return VMFS_DLM_ENOLOCK;
		m.u.transfer_set.x[i].from_lkid = q->x[i].from;
		m.u.transfer_set.x[i].from_epoch = q->x[i].from_epoch;
		m.u.transfer_set.x[i].to_lkid = q->x[i].to;
	}
	return submit(c, &m, q->req_id, 0);
}

static int do_recovery(struct dlmd_client *c, const struct vmfs_ipc_recovery *q, bool done)
{
	struct vmfs_msg m;

	if (!str_ok(q->ls, sizeof(q->ls)))
		return VMFS_DLM_EPROTO;
	if (!q->ls[0] || (done && q->nodeid == 0))
		return -EINVAL;
	memset(&m, 0, sizeof(m));
	m.type = done ? VMFS_MSG_RECOVERY_DONE : VMFS_MSG_RECOVERY_REG;
	m.u.recovery.o.client_id = c->client_id;
	m.u.recovery.o.req_id = q->req_id;
	name_copy(&m.u.recovery.ls, q->ls);
	m.u.recovery.nodeid = done ? q->nodeid : 0;
	m.u.recovery.on = 1;
	return submit(c, &m, q->req_id, 0);
}

static void do_query(struct dlmd_client *c, const struct vmfs_ipc_query *q)
{
	char *out = NULL;
	size_t len = 0;
	int rc;

	if (!str_ok(q->what, sizeof(q->what)) || !str_ok(q->arg, sizeof(q->arg))) {
		respond(c, VMFS_IPC_QUERY, VMFS_DLM_EPROTO, NULL, 0);
		return;
	}
	rc = dlmd_query(c->d, q->what, q->arg[0] ? q->arg : NULL, &out, &len);
	if (rc == 0 && sizeof(struct vmfs_ipc_response) + len > VMFS_IPC_MAX_MSG) {
		log_warn("query %s: answer of %zu bytes exceeds the %d byte IPC limit", q->what,
			 len, VMFS_IPC_MAX_MSG);
		rc = -EMSGSIZE;
	}
	if (rc < 0)
		respond(c, VMFS_IPC_QUERY, rc, NULL, 0);
	else
		respond(c, VMFS_IPC_QUERY, 0, out, len);
	free(out);
}

/* Every request, in storage aligned for any of them: libqb hands us a
 * pointer into its ring buffer that is only 4-byte aligned after a request
 * of odd size, and these structs want 8. */
union ipc_req {
	struct qb_ipc_request_header hdr;
	struct vmfs_ipc_hello hello;
	struct vmfs_ipc_lock lock;
	struct vmfs_ipc_convert convert;
	struct vmfs_ipc_unlock unlock;
	struct vmfs_ipc_transfer transfer;
	struct vmfs_ipc_recovery recovery;
	struct vmfs_ipc_query query;
	struct vmfs_ipc_transfer_set transfer_set;
	struct vmfs_ipc_warm warm;
};

/* `size` is what the client wrote in its header (libqb passes hdr->size,
 * not the bytes received), so it proves nothing by itself: we copy at most
 * sizeof(union ipc_req) bytes, and the ring is mapped far beyond any chunk,
 * so a lying client only makes us read its own stale ring bytes, which are
 * then validated like any others. */
static int32_t ipc_msg_process(qb_ipcs_connection_t *conn, void *data, size_t size)
{
	struct dlmd_client *c = qb_ipcs_context_get(conn);
	union ipc_req q;
	int32_t id = -1;
	int rc;

	if (!c) {
		/* connection_created failed to allocate; nothing to answer with */
		qb_ipcs_disconnect(conn);
		return 0;
	}
	if (size < sizeof(q.hdr)) {
		if (log_bad(c))
			log_warn("client %u (pid %d): %zu byte request, shorter than a header",
			 c->client_id, (int)c->pid, size);
		rc = VMFS_DLM_EPROTO;
		goto out;
	}
	memcpy(&q.hdr, data, sizeof(q.hdr));
	id = q.hdr.id;
	if (id <= 0 || id >= VMFS_IPC_REQ_MAX) {
		if (log_bad(c))
			log_warn("client %u (pid %d): unknown request id %d", c->client_id, (int)c->pid,
			 (int)id);
		rc = VMFS_DLM_EPROTO;
		goto out;
	}
	if (size != req_size[id] || (size_t)q.hdr.size != size || size > sizeof(q)) {
		if (log_bad(c))
			log_warn("client %u (pid %d): %s of %zu bytes, expected %zu",
				 c->client_id, (int)c->pid, req_name[id], size, req_size[id]);
		rc = VMFS_DLM_EPROTO;
		goto out;
	}
	memcpy(&q, data, size);
	if (id != VMFS_IPC_HELLO && !c->hello) {
		if (log_bad(c))
			log_warn("client %u (pid %d): %s before HELLO", c->client_id, (int)c->pid,
			 req_name[id]);
		rc = VMFS_DLM_EPROTO;
		goto out;
	}
	switch (id) {
	case VMFS_IPC_HELLO:
		rc = do_hello(c, &q.hello);
		if (rc == 0) {
			respond(c, id, 0, NULL, 0);
			/* the first lease event, so the client never has to guess */
			dlmd_ipc_lease_broadcast(c->d, c->d->lease);
			return 0;
		}
		break;
	case VMFS_IPC_LOCK:
		rc = do_lock(c, &q.lock);
		break;
	case VMFS_IPC_CONVERT:
		rc = do_convert(c, &q.convert);
		break;
	case VMFS_IPC_UNLOCK:
		rc = do_unlock(c, &q.unlock, false);
		break;
	case VMFS_IPC_CANCEL:
		rc = do_unlock(c, &q.unlock, true);
		break;
	case VMFS_IPC_TRANSFER:
		rc = do_transfer(c, &q.transfer);
		break;
	case VMFS_IPC_TRANSFER_SET:
		rc = do_transfer_set(c, &q.transfer_set);
		break;
	case VMFS_IPC_WARM:
		/* flags: none defined yet, so a later one is refused, not ignored */
		rc = q.warm.flags ? -EINVAL : dlmd_warm_request(c->d, c, q.warm.ms);
		break;
	case VMFS_IPC_RECOVERY_REG:
		rc = do_recovery(c, &q.recovery, false);
		break;
	case VMFS_IPC_RECOVERY_DONE:
		rc = do_recovery(c, &q.recovery, true);
		break;
	case VMFS_IPC_QUERY:
		do_query(c, &q.query);
		return 0;
	default:
		rc = VMFS_DLM_EPROTO;
		break;
	}
	if (rc < 0 && rc != VMFS_DLM_ENOQUORUM && rc != VMFS_DLM_ENOLOCK && log_bad(c))
		log_info("client %u (pid %d %s): %s refused: %d", c->client_id, (int)c->pid,
			 c->program, req_name[id], rc);
out:
	respond(c, id, rc, NULL, 0);
	return 0;
}

/* ---------------------------------------------------------------- connections */

static int32_t ipc_accept(qb_ipcs_connection_t *conn, uid_t uid, gid_t gid)
{
	struct dlmd *d = ipc_d;

	if (d->stopping)
		return -ESHUTDOWN;
	if (uid == 0) {
		qb_ipcs_connection_auth_set(conn, 0, d->cfg.have_gid ? d->cfg.gid : 0,
					    d->cfg.have_gid ? 0660 : 0600);
		return 0;
	}
	if (d->cfg.have_gid && gid == d->cfg.gid) {
		qb_ipcs_connection_auth_set(conn, 0, d->cfg.gid, 0660);
		return 0;
	}
	log_warn("refused IPC connection from uid %u gid %u: not root%s%s", (unsigned)uid,
		 (unsigned)gid, d->cfg.have_gid ? " nor group " : "",
		 d->cfg.have_gid ? d->cfg.group : "");
	return -EACCES;
}

static void ipc_created(qb_ipcs_connection_t *conn)
{
	struct dlmd *d = ipc_d;
	struct qb_ipcs_connection_stats st;
	struct dlmd_client *c;

	c = calloc(1, sizeof(*c));
	if (!c) {
		log_err("out of memory for a new client");
		qb_ipcs_disconnect(conn);
		return;
	}
	c->d = d;
	c->conn = conn;
	c->client_id = ++d->next_client_id;
	if (c->client_id == 0)	/* 2^32 connections: skip 0, never reuse live ids */
		c->client_id = ++d->next_client_id;
	memset(&st, 0, sizeof(st));
	if (qb_ipcs_connection_stats_get(conn, &st, 0) == 0)
		c->pid = st.client_pid;
	c->lease_sent = -1;
	qb_list_init(&c->pending);
	qb_list_init(&c->backlog);
	qb_list_add_tail(&c->list, &d->clients);
	d->n_clients++;
	qb_ipcs_context_set(conn, c);
	log_debug("client %u connected (pid %d)", c->client_id, (int)c->pid);
}

/* Closed: the client is gone (exit, crash or we dropped it).  Its locks are
 * released cluster-wide by one CLIENT_GONE (PERSISTENT ones become orphans). */
static int32_t ipc_closed(qb_ipcs_connection_t *conn)
{
	struct dlmd_client *c = qb_ipcs_context_get(conn);
	struct vmfs_msg m;
	int rc;

	if (!c)
		return 0;
	c->dead = true;
	dlmd_warm_client_done(c, true);
	log_debug("client %u (pid %d %s) disconnected", c->client_id, (int)c->pid,
		  c->program);
	if (c->hello && dlmd_cluster_connected(c->d)) {
		memset(&m, 0, sizeof(m));
		m.type = VMFS_MSG_CLIENT_GONE;
		m.u.client_gone.client_id = c->client_id;
		rc = dlmd_cluster_send(c->d, &m);
		if (rc < 0)
			log_err("client %u: cannot announce its exit (%d): its locks stay "
				"until this host leaves the cluster", c->client_id, rc);
	}
	return 0;
}

static void client_free(struct dlmd_client *c)
{
	struct dlmd_pending *p, *tp;
	struct dlmd_backlog *b, *tb;

	qb_list_for_each_entry_safe(p, tp, &c->pending, list)
		pending_free(c, p);
	qb_list_for_each_entry_safe(b, tb, &c->backlog, list) {
		qb_list_del(&b->list);
		free(b);
	}
	free(c);
}

static void ipc_destroyed(qb_ipcs_connection_t *conn)
{
	struct dlmd_client *c = qb_ipcs_context_get(conn);

	if (!c)
		return;
	qb_ipcs_context_set(conn, NULL);
	qb_list_del(&c->list);
	c->d->n_clients--;
	client_free(c);
}

int dlmd_ipc_start(struct dlmd *d)
{
	static struct qb_ipcs_service_handlers sh = {
		.connection_accept = ipc_accept,
		.connection_created = ipc_created,
		.msg_process = ipc_msg_process,
		.connection_closed = ipc_closed,
		.connection_destroyed = ipc_destroyed,
	};
	static struct qb_ipcs_poll_handlers ph = {
		.job_add = job_add,
		.dispatch_add = dispatch_add,
		.dispatch_mod = dispatch_mod,
		.dispatch_del = dispatch_del,
	};
	int rc;

	ipc_d = d;
	d->ipcs = qb_ipcs_create(d->cfg.ipc_name, 0, QB_IPC_SHM, &sh);
	if (!d->ipcs) {
		rc = errno ? -errno : -ENOMEM;
		log_err("cannot create IPC service %s: %s", d->cfg.ipc_name, strerror(-rc));
		return rc;
	}
	qb_ipcs_poll_handlers_set(d->ipcs, &ph);
	/* QUERY answers (a whole lock table) must fit in one response */
	qb_ipcs_enforce_buffer_size(d->ipcs, VMFS_IPC_MAX_MSG);
	rc = qb_ipcs_run(d->ipcs);
	if (rc < 0) {
		log_err("cannot start IPC service %s: %s%s", d->cfg.ipc_name, strerror(-rc),
			rc == -EADDRINUSE ? " (is another vmfs-dlmd running?)" : "");
		qb_ipcs_destroy(d->ipcs);
		d->ipcs = NULL;
		return rc;
	}
	log_info("IPC service %s ready%s%s", d->cfg.ipc_name,
		 d->cfg.have_gid ? ", group " : "", d->cfg.have_gid ? d->cfg.group : "");
	return 0;
}

void dlmd_ipc_stop(struct dlmd *d)
{
	if (backlog_armed) {
		qb_loop_timer_del(d->loop, backlog_timer);
		backlog_armed = false;
	}
	if (d->ipcs) {
		/* disconnects every client: each sends its CLIENT_GONE */
		qb_ipcs_destroy(d->ipcs);
		d->ipcs = NULL;
	}
}
