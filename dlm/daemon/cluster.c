/* cluster.c — vmfs-dlmd's side of corosync: CPG, votequorum, cmap.
 *
 * CPG delivers, in agreed order, membership changes and messages; both go
 * to the rsm unchanged in order (after decode + validation for messages).
 * The rsm's outgoing messages are encoded here and multicast with
 * CPG_TYPE_AGREED.  Corosync may refuse a send with CS_ERR_TRY_AGAIN (flow
 * control); such messages wait in d->sendq and every later message queues
 * behind them, so our own messages keep their order.
 *
 * Connection state (one row per state; every transition is logged):
 *
 *   state         | dispatch error / HUP | reconnect timer     | SIGTERM
 *   --------------+----------------------+---------------------+---------
 *   DISCONNECTED  | -                    | connect: ok->JOINING| exit
 *                 |                      |  fail->DISCONNECTED |
 *   JOINING       | -> DISCONNECTED      | -                   | exit
 *   JOINED        | -> DISCONNECTED      | -                   | leave, exit
 *
 * JOINING -> JOINED when a confchg lists our own (nodeid, pid) as member.
 * Invariants: (1) d->rsm != NULL iff connected (JOINING or JOINED);
 * (2) every transition to DISCONNECTED ends every local lock and pending
 * request first (ipc.c), because the other hosts now see us as departed;
 * (3) the lease is 1 only in JOINED (see daemon.h).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <corosync/cmap.h>

#include "daemon.h"
#include "io.h"
#include "log.h"

static uint8_t enc_buf[VMFS_MSG_MAX];	/* main loop only */

static int cluster_connect(struct dlmd *d);
static void cluster_lost(struct dlmd *d, const char *why);
static void tick_schedule(struct dlmd *d, int64_t ms);

bool dlmd_cluster_connected(const struct dlmd *d)
{
	return d->rsm != NULL;
}

/* ---------------------------------------------------------------- lease */

void dlmd_lease_update(struct dlmd *d)
{
	int valid = d->rsm && d->cpg_joined && d->vq_quorate &&
		    rsm_quorate(d->rsm) && rsm_synced(d->rsm);

	if (valid != d->lease) {
		log_info("lease %s (cpg %s, votequorum %s, rsm %s/%s)",
			 valid ? "valid" : "LOST",
			 d->cpg_joined ? "joined" : "not joined",
			 d->vq_quorate ? "quorate" : "not quorate",
			 d->rsm && rsm_quorate(d->rsm) ? "quorate" : "not quorate",
			 d->rsm && rsm_synced(d->rsm) ? "synced" : "not synced");
		d->lease = valid;
	}
	/* ipc.c only sends to clients whose last value differs, so calling it
	 * unconditionally also serves clients that said HELLO meanwhile. */
	dlmd_ipc_lease_broadcast(d, valid);
}

/* ---------------------------------------------------------------- send */

static void sendq_timer_fn(void *data);

static void sendq_arm(struct dlmd *d)
{
	if (d->sendq_armed)
		return;
	/* 1 ms: corosync's flow control clears within a token rotation */
	if (qb_loop_timer_add(d->loop, QB_LOOP_HIGH, 1000000ULL, d, sendq_timer_fn,
			      &d->sendq_timer) == 0)
		d->sendq_armed = true;
}

static void sendq_clear(struct dlmd *d)
{
	struct dlmd_sendq_item *it, *tmp;

	qb_list_for_each_entry_safe(it, tmp, &d->sendq, list) {
		qb_list_del(&it->list);
		free(it);
	}
	d->n_sendq = 0;
	if (d->sendq_armed) {
		qb_loop_timer_del(d->loop, d->sendq_timer);
		d->sendq_armed = false;
	}
}

/* 0 sent, -EAGAIN try later, -EIO broken. */
static int mcast(struct dlmd *d, const uint8_t *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	cs_error_t err;

	err = cpg_mcast_joined(d->cpg, CPG_TYPE_AGREED, &iov, 1);
	if (err == CS_OK)
		return 0;
	if (err == CS_ERR_TRY_AGAIN) {
		d->n_try_again++;
		return -EAGAIN;
	}
	/* The dispatch path notices a dead corosync (HUP on the fd) and
	 * tears down; tearing down here could be inside cpg_dispatch. */
	log_err("cpg_mcast_joined: error %d", (int)err);
	return -EIO;
}

static void sendq_flush(struct dlmd *d)
{
	struct dlmd_sendq_item *it, *tmp;
	int rc;

	qb_list_for_each_entry_safe(it, tmp, &d->sendq, list) {
		rc = mcast(d, it->buf, it->len);
		if (rc == -EAGAIN) {
			sendq_arm(d);
			return;
		}
		qb_list_del(&it->list);
		d->n_sendq--;
		free(it);
	}
}

static void sendq_timer_fn(void *data)
{
	struct dlmd *d = data;

	d->sendq_armed = false;
	if (d->cpg)
		sendq_flush(d);
}

int dlmd_cluster_send(struct dlmd *d, struct vmfs_msg *m)
{
	struct dlmd_sendq_item *it;
	int len, rc;

	if (!d->cpg)
		return VMFS_DLM_ENOQUORUM;
	m->nodeid = d->nodeid;
	m->ts_ms = now_wall_ms();
	len = vmfs_msg_encode(m, enc_buf, sizeof(enc_buf));
	if (len < 0) {
		log_err("cannot encode %s: %s", vmfs_msg_type_name(m->type), strerror(-len));
		return len;
	}
	if (d->n_sendq == 0) {
		rc = mcast(d, enc_buf, (size_t)len);
		if (rc != -EAGAIN)
			return rc;
	}
	if (d->n_sendq >= DLMD_SENDQ_MAX) {
		log_err("send queue full (%u messages): corosync not accepting", d->n_sendq);
		return -ENOBUFS;
	}
	it = malloc(sizeof(*it) + (size_t)len);
	if (!it)
		return -ENOMEM;
	it->len = (size_t)len;
	memcpy(it->buf, enc_buf, (size_t)len);
	qb_list_add_tail(&it->list, &d->sendq);
	d->n_sendq++;
	sendq_arm(d);
	return 0;
}

/* ---------------------------------------------------------------- rsm ops */

static void rsm_ev(void *ctx, const struct rsm_event *ev)
{
	struct dlmd *d = ctx;

	dlmd_ipc_rsm_event(d, ev);
	if (ev->type == RSM_EV_QUORUM || ev->type == RSM_EV_SYNCED ||
	    ev->type == RSM_EV_RESET)
		dlmd_lease_update(d);
}

static void rsm_send(void *ctx, const struct vmfs_msg *m)
{
	struct dlmd *d = ctx;
	struct vmfs_msg copy = *m;
	int rc;

	rc = dlmd_cluster_send(d, &copy);
	if (rc < 0)
		log_err("cannot send %s: %d", vmfs_msg_type_name(m->type), rc);
}

static const struct rsm_ops dlmd_rsm_ops = {
	.event = rsm_ev,
	.send = rsm_send,
};

/* ---------------------------------------------------------------- CPG */

static struct dlmd *cpg_ctx(cpg_handle_t h)
{
	void *ctx = NULL;

	if (cpg_context_get(h, &ctx) != CS_OK)
		return NULL;
	return ctx;
}

static void cpg_deliver(cpg_handle_t h, const struct cpg_name *group, uint32_t nodeid,
			uint32_t pid, void *buf, size_t len)
{
	struct dlmd *d = cpg_ctx(h);
	struct vmfs_msg m;
	const char *why = "?";
	int rc;

	if (!d || !d->rsm)
		return;
	rc = vmfs_msg_decode(buf, len, nodeid, &m, &why);
	if (rc < 0) {
		d->n_dropped++;
		log_node(LOG_WARNING, nodeid, "pid %u: dropped malformed message (%zu bytes): %s (%d)",
			 pid, len, why, rc);
		return;
	}
	if (m.type == VMFS_MSG_NOOP) {
		/* ring warm-up traffic: valid, and of no concern to the rsm */
		dlmd_warm_delivered(d, &m);
		return;
	}
	d->n_delivered++;
	rsm_deliver(d->rsm, &m, dlmd_now_ms());
	d->in_reset = false;
	/* Fence deadlines start at a departure (confchg) or a snapshot load,
	 * and the leader changes at a decision point; lock operations never
	 * move a deadline, so they need no timer work. */
	switch (m.type) {
	case VMFS_MSG_NODE_INFO:
	case VMFS_MSG_SNAPSHOT:
	case VMFS_MSG_FENCED:
	case VMFS_MSG_RECOVERY_DONE:
		tick_schedule(d, 0);
		break;
	default:
		break;
	}
}

static bool in_list(const uint32_t *a, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] == v)
			return true;
	return false;
}

/* CPG reports processes; the rsm wants nodes.  A second process of one node
 * in our group (a stray daemon, a test tool) must not make the rsm see that
 * node join or leave twice, so collapse to unique nodeids and derive
 * left/joined from the node-level member lists. */
static void cpg_confchg(cpg_handle_t h, const struct cpg_name *group,
			const struct cpg_address *mem, size_t n_mem,
			const struct cpg_address *left, size_t n_left,
			const struct cpg_address *joined, size_t n_joined)
{
	struct dlmd *d = cpg_ctx(h);
	uint32_t *members = NULL, *l = NULL, *j = NULL;
	size_t nm = 0, nl = 0, nj = 0;
	bool self = false;

	if (!d || !d->rsm)
		return;
	members = calloc(n_mem + 1, sizeof(*members));
	l = calloc(n_left + 1, sizeof(*l));
	j = calloc(n_joined + 1, sizeof(*j));
	if (!members || !l || !j) {
		/* cannot apply this confchg: our table would diverge */
		log_err("out of memory in confchg; leaving the cluster");
		goto fail;
	}
	for (size_t i = 0; i < n_mem; i++) {
		if (mem[i].nodeid == d->nodeid && mem[i].pid == (uint32_t)getpid())
			self = true;
		else if (mem[i].nodeid == d->nodeid)
			log_warn("another process (pid %u) of this node joined CPG group %s",
				 mem[i].pid, d->cfg.cpg_name);
		if (!in_list(members, nm, mem[i].nodeid))
			members[nm++] = mem[i].nodeid;
	}
	for (size_t i = 0; i < n_left; i++) {
		if (left[i].nodeid == d->nodeid && left[i].pid == (uint32_t)getpid()) {
			log_err("CPG removed us from the group (reason %u)", left[i].reason);
			goto fail;
		}
		if (!in_list(members, nm, left[i].nodeid) && !in_list(l, nl, left[i].nodeid))
			l[nl++] = left[i].nodeid;
	}
	for (size_t i = 0; i < n_joined; i++)
		if (!in_list(d->members, d->n_members, joined[i].nodeid) &&
		    !in_list(j, nj, joined[i].nodeid))
			j[nj++] = joined[i].nodeid;
	/* our own join: the rsm needs to see us in `joined` */
	if (self && !d->cpg_joined && !in_list(j, nj, d->nodeid))
		j[nj++] = d->nodeid;
	if (!self) {
		log_err("confchg without us as member");
		goto fail;
	}

	log_info("confchg: %zu members, %zu left, %zu joined", nm, nl, nj);
	for (size_t i = 0; i < nl; i++)
		log_node(LOG_INFO, l[i], "left");
	for (size_t i = 0; i < nj; i++)
		log_node(LOG_INFO, j[i], "joined");

	if (!d->cpg_joined)
		log_info("joined CPG group %s as node %u", d->cfg.cpg_name, d->nodeid);
	d->cpg_joined = true;
	free(d->members);
	d->members = members;
	d->n_members = nm;
	members = NULL;
	rsm_confchg(d->rsm, d->members, d->n_members, l, nl, j, nj, dlmd_now_ms());
	d->in_reset = false;
	dlmd_lease_update(d);
	tick_schedule(d, 0);
	free(l);
	free(j);
	return;
fail:
	free(members);
	free(l);
	free(j);
	/* can't tear down inside cpg_dispatch: the poll fn does it */
	d->cpg_broken = true;
	d->cpg_joined = false;
	dlmd_lease_update(d);
}

static int32_t cpg_poll_fn(int32_t fd, int32_t revents, void *data)
{
	struct dlmd *d = data;
	cs_error_t err;

	const char *why = NULL;

	err = cpg_dispatch(d->cpg, CS_DISPATCH_ALL);
	if (err != CS_OK && err != CS_ERR_TRY_AGAIN)
		why = "cpg_dispatch failed";
	else if (d->cpg_broken)
		why = "cannot follow the CPG membership";
	else if (revents & (POLLHUP | POLLERR))
		why = "CPG connection hung up";
	if (why) {
		d->cpg_fd = -1;		/* the loop drops it when we return -1 */
		cluster_lost(d, why);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- votequorum */

static struct dlmd *vq_ctx(votequorum_handle_t h)
{
	void *ctx = NULL;

	if (votequorum_context_get(h, &ctx) != CS_OK)
		return NULL;
	return ctx;
}

static void vq_quorum_fn(votequorum_handle_t h, uint64_t context, uint32_t quorate,
			 uint32_t n, votequorum_node_t nodes[])
{
	struct dlmd *d = vq_ctx(h);

	if (!d)
		return;
	if (d->vq_quorate != !!quorate)
		log_info("votequorum: %s (%u nodes)", quorate ? "quorate" : "NOT quorate", n);
	d->vq_quorate = !!quorate;
	dlmd_lease_update(d);
}

static void vq_expected_fn(votequorum_handle_t h, uint64_t context, uint32_t expected)
{
	struct dlmd *d = vq_ctx(h);

	if (!d || expected == 0)
		return;
	if (expected != d->expected_votes)
		log_info("votequorum: expected votes %u", expected);
	d->expected_votes = expected;
	if (d->rsm)
		rsm_set_expected_votes(d->rsm, expected);
}

static int32_t vq_poll_fn(int32_t fd, int32_t revents, void *data)
{
	struct dlmd *d = data;
	cs_error_t err;

	err = votequorum_dispatch(d->vq, CS_DISPATCH_ALL);
	if (err != CS_OK && err != CS_ERR_TRY_AGAIN) {
		d->vq_fd = -1;
		cluster_lost(d, "votequorum_dispatch failed");
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- timers */

static void tick_fn(void *data)
{
	struct dlmd *d = data;
	int64_t next = -1;

	d->tick_armed = false;
	if (d->rsm)
		next = rsm_tick(d->rsm, dlmd_now_ms());
	tick_schedule(d, next < 0 ? DLMD_TICK_MAX_MS : next);
}

/* (Re)arm the tick timer to fire in ms (0 = as soon as the loop runs). */
static void tick_schedule(struct dlmd *d, int64_t ms)
{
	if (ms > DLMD_TICK_MAX_MS)
		ms = DLMD_TICK_MAX_MS;
	if (ms < 0)
		ms = 0;
	if (d->tick_armed) {
		qb_loop_timer_del(d->loop, d->tick_timer);
		d->tick_armed = false;
	}
	if (d->stopping)
		return;
	if (qb_loop_timer_add(d->loop, QB_LOOP_MED, (uint64_t)ms * 1000000ULL, d, tick_fn,
			      &d->tick_timer) == 0)
		d->tick_armed = true;
	else
		log_err("cannot arm the tick timer");
}

static void reconnect_fn(void *data)
{
	struct dlmd *d = data;

	d->reconnect_armed = false;
	if (d->stopping || d->rsm)
		return;
	if (cluster_connect(d) < 0) {
		if (qb_loop_timer_add(d->loop, QB_LOOP_LOW, DLMD_RECONNECT_MS * 1000000ULL, d,
				      reconnect_fn, &d->reconnect_timer) == 0)
			d->reconnect_armed = true;
	}
}

/* ---------------------------------------------------------------- connect */

/* T_lease = token + consensus (DESIGN.md decision 3: a host that has not
 * heard from the quorate partition for that long has been expelled by
 * totem); T_fence = 2 * T_lease + 1 s of slack for the worst-case I/O. */
static void read_timings(struct dlmd *d)
{
	cmap_handle_t cm = 0;
	uint32_t token = 0, consensus = 0;

	if (cmap_initialize(&cm) == CS_OK) {
		if (cmap_get_uint32(cm, "runtime.config.totem.token", &token) != CS_OK &&
		    cmap_get_uint32(cm, "totem.token", &token) != CS_OK)
			token = 0;
		if (cmap_get_uint32(cm, "runtime.config.totem.consensus", &consensus) != CS_OK)
			consensus = 0;
		cmap_finalize(cm);
	}
	if (!token) {
		log_warn("cmap has no totem.token; assuming %u ms", DLMD_TOKEN_DEFAULT_MS);
		token = DLMD_TOKEN_DEFAULT_MS;
	}
	if (!consensus)
		consensus = token + token / 5;	/* corosync's default: 1.2 x token */
	d->token_ms = token;
	d->consensus_ms = consensus;
	d->lease_ms = d->cfg.lease_ms_opt ? d->cfg.lease_ms_opt : (uint64_t)token + consensus;
	d->fence_delay_ms = d->cfg.fence_delay_ms_opt ? d->cfg.fence_delay_ms_opt
						      : 2 * d->lease_ms + 1000;
	if (d->fence_delay_ms <= d->lease_ms)
		log_warn("fence delay %llu ms <= lease %llu ms: a departed host may still "
			 "write while its locks are handed out",
			 (unsigned long long)d->fence_delay_ms, (unsigned long long)d->lease_ms);
	log_info("totem token %u ms, consensus %u ms: lease %llu ms, fence delay %llu ms",
		 token, consensus, (unsigned long long)d->lease_ms,
		 (unsigned long long)d->fence_delay_ms);
}

static void cluster_teardown(struct dlmd *d)
{
	if (d->cpg_fd >= 0)
		qb_loop_poll_del(d->loop, d->cpg_fd);
	if (d->vq_fd >= 0)
		qb_loop_poll_del(d->loop, d->vq_fd);
	d->cpg_fd = d->vq_fd = -1;
	if (d->cpg)
		cpg_finalize(d->cpg);
	if (d->vq)
		votequorum_finalize(d->vq);
	d->cpg = 0;
	d->vq = 0;
	d->cpg_joined = false;
	d->cpg_broken = false;
	d->vq_quorate = false;
	sendq_clear(d);
	dlmd_warm_reset(d);
	free(d->members);
	d->members = NULL;
	d->n_members = 0;
}

static int cluster_connect(struct dlmd *d)
{
	static votequorum_callbacks_t vq_cb = {
		.votequorum_quorum_notify_fn = vq_quorum_fn,
		.votequorum_expectedvotes_notify_fn = vq_expected_fn,
	};
	cpg_model_v1_data_t model = {
		.model = CPG_MODEL_V1,
		.cpg_deliver_fn = cpg_deliver,
		.cpg_confchg_fn = cpg_confchg,
	};
	struct cpg_name group = { 0 };
	struct votequorum_info info;
	struct rsm_config cfg;
	unsigned int nodeid = 0;
	cs_error_t err;
	int rc = 0, tries;

	err = cpg_model_initialize(&d->cpg, CPG_MODEL_V1, (cpg_model_data_t *)&model, d);
	if (err != CS_OK) {
		/* once a minute is enough while corosync stays down */
		qb_log(d->connect_failures % 60 ? LOG_DEBUG : LOG_WARNING,
		       "cannot connect to corosync CPG (error %d); is corosync running?",
		       (int)err);
		d->connect_failures++;
		d->cpg = 0;
		rc = -ENOTCONN;
		goto out;
	}
	d->connect_failures = 0;
	read_timings(d);
	err = cpg_local_get(d->cpg, &nodeid);
	if (err != CS_OK || nodeid == 0) {
		log_err("cpg_local_get: error %d", (int)err);
		rc = -ENOTCONN;
		goto out;
	}
	if (d->nodeid && d->nodeid != nodeid)
		log_warn("our nodeid changed from %u to %u", d->nodeid, nodeid);
	d->nodeid = nodeid;

	err = votequorum_initialize(&d->vq, &vq_cb);
	if (err != CS_OK) {
		log_err("cannot connect to votequorum (error %d); is the votequorum "
			"provider configured?", (int)err);
		d->vq = 0;
		rc = -ENOTCONN;
		goto out;
	}
	votequorum_context_set(d->vq, d);
	memset(&info, 0, sizeof(info));
	err = votequorum_getinfo(d->vq, nodeid, &info);
	if (err != CS_OK) {
		log_err("votequorum_getinfo: error %d", (int)err);
		rc = -ENOTCONN;
		goto out;
	}
	d->expected_votes = info.node_expected_votes ? info.node_expected_votes : 1;
	d->vq_quorate = !!(info.flags & VOTEQUORUM_INFO_QUORATE);
	err = votequorum_trackstart(d->vq, 0, CS_TRACK_CHANGES);
	if (err != CS_OK) {
		log_err("votequorum_trackstart: error %d", (int)err);
		rc = -ENOTCONN;
		goto out;
	}

	cfg = (struct rsm_config){
		.nodeid = nodeid,
		.name = d->cfg.name,
		.expected_votes = d->expected_votes,
		.fence_delay_ms = d->fence_delay_ms,
	};
	d->rsm = rsm_new(&cfg, &dlmd_rsm_ops, d);
	if (!d->rsm) {
		rc = -ENOMEM;
		goto out;
	}

	group.length = (uint32_t)strlen(d->cfg.cpg_name);
	memcpy(group.value, d->cfg.cpg_name, group.length);
	for (tries = 0; tries < 50; tries++) {
		err = cpg_join(d->cpg, &group);
		if (err != CS_ERR_TRY_AGAIN)
			break;
		usleep(100 * 1000);	/* corosync is busy forming a ring; startup only */
	}
	if (err != CS_OK) {
		log_err("cpg_join %s: error %d", d->cfg.cpg_name, (int)err);
		rc = -ENOTCONN;
		goto out;
	}
	if (cpg_fd_get(d->cpg, &d->cpg_fd) != CS_OK ||
	    votequorum_fd_get(d->vq, &d->vq_fd) != CS_OK) {
		d->cpg_fd = d->vq_fd = -1;
		rc = -ENOTCONN;
		goto out;
	}
	if (qb_loop_poll_add(d->loop, QB_LOOP_HIGH, d->cpg_fd, POLLIN, d, cpg_poll_fn) < 0) {
		d->cpg_fd = -1;
		rc = -EIO;
		goto out;
	}
	if (qb_loop_poll_add(d->loop, QB_LOOP_HIGH, d->vq_fd, POLLIN, d, vq_poll_fn) < 0) {
		d->vq_fd = -1;
		rc = -EIO;
		goto out;
	}
	log_info("connected to corosync: node %u (%s), expected votes %u, votequorum %s",
		 nodeid, d->cfg.name, d->expected_votes,
		 d->vq_quorate ? "quorate" : "not quorate");
	tick_schedule(d, 0);
out:
	if (rc < 0) {
		cluster_teardown(d);
		if (d->rsm) {
			rsm_free(d->rsm);
			d->rsm = NULL;
		}
	}
	return rc;
}

static void cluster_lost(struct dlmd *d, const char *why)
{
	struct rsm *old = d->rsm;

	log_err("lost corosync (%s): lease lost; reconnecting every %d ms", why,
		DLMD_RECONNECT_MS);
	cluster_teardown(d);
	d->rsm = NULL;
	dlmd_lease_update(d);
	if (old) {
		dlmd_ipc_cluster_lost(d, old);
		rsm_free(old);
	}
	if (!d->stopping && !d->reconnect_armed &&
	    qb_loop_timer_add(d->loop, QB_LOOP_LOW, DLMD_RECONNECT_MS * 1000000ULL, d,
			      reconnect_fn, &d->reconnect_timer) == 0)
		d->reconnect_armed = true;
}

int dlmd_cluster_start(struct dlmd *d)
{
	d->lease = 0;
	/* Start even without corosync: clients can connect and see "no
	 * lease", and we join as soon as corosync is up. */
	if (cluster_connect(d) < 0 &&
	    qb_loop_timer_add(d->loop, QB_LOOP_LOW, DLMD_RECONNECT_MS * 1000000ULL, d,
			      reconnect_fn, &d->reconnect_timer) == 0)
		d->reconnect_armed = true;
	return 0;
}

void dlmd_cluster_stop(struct dlmd *d)
{
	struct rsm *old = d->rsm;

	if (d->reconnect_armed)
		qb_loop_timer_del(d->loop, d->reconnect_timer);
	if (d->tick_armed)
		qb_loop_timer_del(d->loop, d->tick_timer);
	d->reconnect_armed = d->tick_armed = false;
	/* the CLIENT_GONEs of the closed connections must leave before we do */
	for (int i = 0; i < 100 && d->cpg && d->n_sendq; i++) {
		sendq_flush(d);
		if (d->n_sendq)
			usleep(10 * 1000);
	}
	if (d->n_sendq)
		log_warn("%u messages not sent at shutdown", d->n_sendq);
	if (d->cpg && d->cpg_joined) {
		struct cpg_name group = { 0 };

		group.length = (uint32_t)strlen(d->cfg.cpg_name);
		memcpy(group.value, d->cfg.cpg_name, group.length);
		cpg_leave(d->cpg, &group);
	}
	cluster_teardown(d);
	d->rsm = NULL;
	if (old)
		rsm_free(old);
	d->lease = 0;
}
