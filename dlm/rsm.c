/* rsm.c — the replicated lock state machine: membership, sync, quorum,
 * snapshots, timers and inspection.  Lock operations are in rsm_table.c,
 * the canonical table encoding in rsm_snapshot.c.
 *
 * HOST SYNC STATES (one rsm per host; `synced` = table authoritative)
 *
 *   state        | table ops (REQUEST..FENCED) | NODE_INFO            | SNAPSHOT     | confchg
 *   -------------+-----------------------------+----------------------+--------------+-----------
 *   IDLE         | apply (grant iff synced &&  | ignore (stale round) | ignore       | -> WAIT_INFO
 *                |  partition quorate)         |                      |              |
 *   WAIT_INFO    | synced: apply; unsynced:    | record; when all     | ignore       | unsynced: apply
 *                |  buffer                     |  members' are in:    |              |  buffer, then
 *                |                             |  DECISION POINT      |              |  -> WAIT_INFO
 *   AWAIT_SNAP   | buffer                      | ignore               | from base:   | drop buffer
 *                |                             |                      |  assemble;   |  (keep our own
 *                |                             |                      |  last: LOAD  |  ops to answer),
 *                |                             |                      |              |  keep old table
 *                |                             |                      |              |  -> WAIT_INFO
 *   BROKEN       | drop; keep our own to answer| ignore               | ignore       | -> WAIT_INFO
 *   (sticky)     |  after the next round       |                      |              |
 *
 *   DECISION POINT (same stream position everywhere): expected votes E =
 *   max of the members' NODE_INFO values; partition quorate iff
 *   2 * members > E.  base = lowest synced member, else highest seq (ties
 *   to the lowest nodeid).  A member is *identical* to the base if it is
 *   the base or (some member is synced, it is synced and its seq equals
 *   the base's).  Identical members: apply their buffer (an unsynced base
 *   only), synced := quorate, walk every resource, purge what is due; the
 *   base then multicasts its table as SNAPSHOT if anyone is not identical.
 *   Ops dropped in an aborted round are answered (ELOST unless the table
 *   shows their outcome); a CLIENT_GONE of ours that such a round lost is
 *   sent again while the table still holds that client's locks.
 *   Others: drop their buffer (those ops are in the base's table), keep
 *   their own ops aside to answer their clients, -> AWAIT_SNAP.
 *   LOAD: decode and validate (bad -> BROKEN, seq := 0 so a stale table is
 *   never chosen as base), swap tables, synced := quorate, reconcile local
 *   clients (RESET, LOST, late GRANTED/QUEUED/REFUSED), replay the buffer.
 *
 *   The leader (sends FENCED) is the base of the last round when the
 *   partition was quorate; there is none during a round.
 *
 * LOCK STATES (per lock; rsm_table.c)
 *
 *   WAITING --grant--> GRANTED --up-convert queued--> CONVERTING --grant--> GRANTED
 *   WAITING --cancel/release/NOQUEUE/owner gone--> (removed)
 *   CONVERTING --cancel/owner node left--> GRANTED (old mode)
 *   GRANTED --release/transfer away/client gone--> (removed), or orphan (PERSISTENT)
 *   (TRANSFER_SET: several transfers applied in one step, or none of them)
 *   GRANTED --owner node left--> GRANTED+recovering --FENCED, recovery done--> (purged)
 *
 * INVARIANTS
 *   I1  On a resource, the modes of all holders (granted, and the old mode
 *       of converting locks) are pairwise compatible.
 *   I2  Every synced host of a quorate partition that has applied the same
 *       stream has the byte-identical canonical table (rsm_digest).
 *   I3  Grants are FIFO: a new request is granted at once only if both
 *       queues are empty; a waiter is never granted while an earlier
 *       waiter or any converter is still blocked.
 *   I4  After every operation that can unblock (release, down-convert,
 *       cancel, departure, purge, transfer, quorum regained) the grant
 *       walk runs, so no request waits while it could be granted.
 *   I5  Nothing is granted unless the partition is quorate and this
 *       host's table is synced; nothing is purged without quorum.
 *   I6  Only the owning node + client releases/converts/cancels a lock; a
 *       recovering lock (departed incarnation) is owned by nobody and is
 *       removed only by the purge after FENCED and recovery.
 *   I7  Each grant or transfer takes a new resource epoch (never reused
 *       for that resource name, even after the resource is freed); a PW/EX
 *       holder purged after death invalidates the LVB.
 *
 * Unspecified points decided here (also commented where enforced):
 *   - Messages the rsm asks to send carry ts_ms 0; the caller may stamp
 *     its wall clock (it is only shown, never used for decisions).
 *   - The caller runs rsm_tick() on a timer (say every 100-500 ms) as well
 *     as at the deadline it returns: the return value is only meaningful
 *     while this host is leader, and leadership starts inside
 *     rsm_deliver() (the decision point also ticks once by itself).
 *   - A convert that fails is answered REFUSED (the client waits for a
 *     grant or refusal), not DONE: ENOLOCK if not the owner, -EBUSY if a
 *     convert is already queued.  A queued convert is announced QUEUED.
 *   - RELEASE of a waiting/converting lock refuses the pending op with
 *     ECANCELED, then releases what is left; DONE 0 to the releaser.
 *   - NOQUEUE refusals (EAGAIN) still send blocking callbacks, so a
 *     try-lock against a cached lock can succeed on the next try.
 *   - A recovering lock (its node left) belongs to nobody: not released,
 *     converted, cancelled, adopted or transferred, only purged.
 *   - TRANSFER_SET checks every triple with TRANSFER's rules (plus: no lock
 *     named twice, and the targets' modes checked against the holders as
 *     they will be once every `from` of the set is gone) before changing
 *     anything; the first failure is the answer and the table is untouched.
 *     Otherwise all sources go (LOST TRANSFERRED) and all targets are
 *     granted, in triple order, inside one apply; DONE names x[0].to.
 *   - ADOPT ignores the requested mode and takes the lowest-lkid orphan.
 *   - RECOVERY_DONE is accepted from any client of any member.
 *   - A resource is freed when it has no locks and a valid all-zero LVB;
 *     its epoch survives in epoch_floor, so a name never reuses an epoch
 *     as long as some host keeps the table.  If every host holding the
 *     table is lost (all crashed, or cut off while restarted hosts form a
 *     quorum) the new table starts from epoch 1 again.
 *   - LOST(RESET) for local granted/converting locks missing (or now
 *     recovering) after a load; a missing waiting request is REFUSED with
 *     VMFS_DLM_ELOST instead, since it was never a lock.  Own operations
 *     dropped at a decision point are answered from the loaded table
 *     (GRANTED/QUEUED if their lock is there, else REFUSED/DONE ELOST).
 */
#include "config.h"
#include "rsm_internal.h"

#include <stdlib.h>

#include "crc32c.h"
#include "log.h"

/* --- construction -------------------------------------------------------- */

struct rsm *rsm_new(const struct rsm_config *cfg, const struct rsm_ops *ops, void *ctx)
{
	struct rsm *r;

	if (!cfg || !ops || cfg->nodeid == 0)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->nodeid = cfg->nodeid;
	copy_str(r->name, sizeof(r->name), cfg->name ? cfg->name : "");
	r->expected_cfg = cfg->expected_votes ? cfg->expected_votes : 1;
	r->expected_eff = r->expected_cfg;
	r->fence_delay_ms = cfg->fence_delay_ms;
	r->ops = *ops;
	r->ctx = ctx;
	tbl_init(&r->t);
	return r;
}

void rsm_free(struct rsm *r)
{
	if (!r)
		return;
	tbl_free(&r->t);
	free(r->mem);
	free(r->buf);
	free(r->disc);
	free(r->dead);
	free(r->snap);
	free(r);
}

void rsm_set_expected_votes(struct rsm *r, uint32_t votes)
{
	r->expected_cfg = votes ? votes : 1;
}

/* --- flags and events ------------------------------------------------------ */

static void update_flags(struct rsm *r)
{
	struct rsm_event ev;
	bool q = r->part_quorate && r->synced;

	if (r->synced != r->synced_reported) {
		r->synced_reported = r->synced;
		memset(&ev, 0, sizeof(ev));
		ev.type = RSM_EV_SYNCED;
		ev.synced = r->synced;
		ev.mode = NO_MODE;
		log_info("table %s (seq %llu)", r->synced ? "synced" : "not synced",
			 (unsigned long long)r->t.seq);
		rsm_emit(r, &ev);
	}
	if (q != r->quorate) {
		r->quorate = q;
		memset(&ev, 0, sizeof(ev));
		ev.type = RSM_EV_QUORUM;
		ev.quorate = q;
		ev.mode = NO_MODE;
		log_info("%s", q ? "quorate: lease valid" : "not quorate: lease lost");
		rsm_emit(r, &ev);
	}
}

static void send_msg(struct rsm *r, struct vmfs_msg *m)
{
	m->nodeid = r->nodeid;
	m->ts_ms = 0;
	if (r->ops.send)
		r->ops.send(r->ctx, m);
}

static int push_msg(struct vmfs_msg **arr, size_t *n, size_t *cap, const struct vmfs_msg *m)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 32;
		struct vmfs_msg *p = realloc(*arr, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*arr = p;
		*cap = ncap;
	}
	(*arr)[(*n)++] = *m;
	return 0;
}

static struct rsm_member *member(struct rsm *r, uint32_t nodeid)
{
	for (size_t i = 0; i < r->n_mem; i++)
		if (r->mem[i].nodeid == nodeid)
			return &r->mem[i];
	return NULL;
}

#define DEAD_MAX 65536	/* remembered dead clients; the oldest ids go first */

/* Client ids grow within an incarnation, so the array stays sorted by
 * appending; when full, the lowest (oldest) ids are forgotten. */
static void dead_add(struct rsm *r, uint32_t id)
{
	if (r->n_dead && r->dead[r->n_dead - 1] >= id)
		return;
	if (r->n_dead == DEAD_MAX) {
		memmove(r->dead, r->dead + DEAD_MAX / 2, (DEAD_MAX / 2) * sizeof(*r->dead));
		r->n_dead = DEAD_MAX / 2;
	}
	if (r->n_dead == r->cap_dead) {
		size_t ncap = r->cap_dead ? r->cap_dead * 2 : 64;
		uint32_t *p = realloc(r->dead, ncap * sizeof(*p));

		if (!p)
			return;
		r->dead = p;
		r->cap_dead = ncap;
	}
	r->dead[r->n_dead++] = id;
}

static bool dead_has(const struct rsm *r, uint32_t id)
{
	size_t lo = 0, hi = r->n_dead;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->dead[mid] == id)
			return true;
		if (r->dead[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* A CLIENT_GONE of ours may have been applied only by a partition whose
 * table was then replaced; if the loaded table still has locks or agent
 * registrations of that client, say it again. */
static void resend_client_gone(struct rsm *r)
{
	uint32_t last = 0;

	for (size_t i = 0; i < r->t.n_locks; i++) {
		const struct rsm_lock *l = r->t.locks[i];
		struct vmfs_msg m;

		if (l->nodeid != r->nodeid || l->recovering || !l->client_id ||
		    l->client_id == last || !dead_has(r, l->client_id))
			continue;
		last = l->client_id;
		memset(&m, 0, sizeof(m));
		m.type = VMFS_MSG_CLIENT_GONE;
		m.u.client_gone.client_id = l->client_id;
		log_info("client %u is gone but the loaded table has its locks: telling again",
			 l->client_id);
		send_msg(r, &m);
	}
	for (size_t i = 0; i < r->t.n_agents; i++) {
		const struct rsm_agent *a = &r->t.agents[i];
		struct vmfs_msg m;

		if (a->nodeid != r->nodeid || !dead_has(r, a->client_id))
			continue;
		memset(&m, 0, sizeof(m));
		m.type = VMFS_MSG_CLIENT_GONE;
		m.u.client_gone.client_id = a->client_id;
		send_msg(r, &m);
	}
}

/* Set aside our own buffered operations, to be answered later. */
static void keep_own(struct rsm *r)
{
	for (size_t i = 0; i < r->n_buf; i++)
		if (r->buf[i].nodeid == r->nodeid &&
		    push_msg(&r->disc, &r->n_disc, &r->cap_disc, &r->buf[i])) {
			log_err("out of memory keeping dropped operations");
			break;
		}
}

/* The sticky error state: the table is not usable until the next
 * confchg starts a round; seq 0 keeps it from being chosen as base over
 * any host with real history.  Our own pending ops are kept to be
 * answered after the next round. */
static void go_broken(struct rsm *r)
{
	keep_own(r);
	r->n_buf = 0;
	free(r->snap);
	r->snap = NULL;
	r->snap_len = 0;
	r->ss = SS_BROKEN;
	r->synced = false;
	r->t.seq = 0;
	update_flags(r);
}

/* Apply what an unsynced host buffered during the round, in order. */
static void flush_buffer(struct rsm *r)
{
	size_t n = r->n_buf;

	r->n_buf = 0;
	for (size_t i = 0; i < n; i++)
		rsm_apply_op(r, &r->buf[i]);
}

/* --- snapshots ------------------------------------------------------------- */

static void send_snapshot(struct rsm *r)
{
	uint8_t *buf;
	size_t len, nchunks;
	int rc;

	rc = tbl_encode(&r->t, &buf, &len);
	if (rc) {
		/* The others stay in AWAIT_SNAP until the next confchg;
		 * nothing better is possible without memory. */
		log_err("cannot encode table for snapshot: %d", rc);
		return;
	}
	nchunks = (len + SNAPSHOT_CHUNK - 1) / SNAPSHOT_CHUNK;
	if (nchunks == 0)
		nchunks = 1;
	log_info("sending snapshot: %zu bytes in %zu chunks, seq %llu", len, nchunks,
		 (unsigned long long)r->t.seq);
	for (size_t i = 0; i < nchunks; i++) {
		struct vmfs_msg m;
		size_t off = i * SNAPSHOT_CHUNK;
		size_t n = len - off < SNAPSHOT_CHUNK ? len - off : SNAPSHOT_CHUNK;

		memset(&m, 0, sizeof(m));
		m.type = VMFS_MSG_SNAPSHOT;
		m.u.snapshot.members_hash = r->members_hash;
		m.u.snapshot.chunk = (uint32_t)i;
		m.u.snapshot.nchunks = (uint32_t)nchunks;
		m.u.snapshot.len = (uint32_t)n;
		m.u.snapshot.data = buf + off;
		send_msg(r, &m);
	}
	free(buf);
}

static bool same_lock(const struct rsm_lock *a, const struct rsm_lock *b)
{
	return a->nodeid == b->nodeid && a->client_id == b->client_id &&
	       !b->recovering && strcmp(a->res->ls, b->res->ls) == 0 &&
	       strcmp(a->res->name, b->res->name) == 0;
}

static const struct rsm_lock *find_by_req(const struct rsm_table *t, uint32_t node,
					  uint32_t client, uint32_t req)
{
	for (size_t i = 0; i < t->n_locks; i++) {
		const struct rsm_lock *l = t->locks[i];

		if (l->nodeid == node && l->client_id == client && l->req_id == req)
			return l;
	}
	return NULL;
}

/* Our own operations dropped at a decision point (or buffered when a
 * round was aborted) are answered from the table we now have: their
 * outcome is whatever the base decided, which the table shows for
 * requests and converts; for the rest it is unknown (ELOST). */
static void answer_dropped(struct rsm *r)
{
	const struct rsm_table *t = &r->t;

	for (size_t i = 0; i < r->n_disc; i++) {
		const struct vmfs_msg *m = &r->disc[i];

		switch (m->type) {
		case VMFS_MSG_REQUEST:
			if (!find_by_req(t, r->nodeid, m->u.request.o.client_id,
					 m->u.request.o.req_id))
				rsm_ev_reply(r, RSM_EV_REFUSED, &m->u.request.o, 0, VMFS_DLM_ELOST);
			break;
		case VMFS_MSG_CONVERT:
			if (!find_by_req(t, r->nodeid, m->u.convert.o.client_id,
					 m->u.convert.o.req_id))
				rsm_ev_reply(r, RSM_EV_REFUSED, &m->u.convert.o, m->u.convert.lkid,
					 VMFS_DLM_ELOST);
			break;
		case VMFS_MSG_RELEASE:
			rsm_ev_reply(r, RSM_EV_DONE, &m->u.release.o, m->u.release.lkid,
				 tbl_lock_find(t, m->u.release.lkid) ? VMFS_DLM_ELOST : 0);
			break;
		case VMFS_MSG_CANCEL:
			rsm_ev_reply(r, RSM_EV_DONE, &m->u.cancel.o, m->u.cancel.lkid, VMFS_DLM_ELOST);
			break;
		case VMFS_MSG_TRANSFER:
			rsm_ev_reply(r, RSM_EV_DONE, &m->u.transfer.o, m->u.transfer.to_lkid,
				 VMFS_DLM_ELOST);
			break;
		case VMFS_MSG_TRANSFER_SET:
			rsm_ev_reply(r, RSM_EV_DONE, &m->u.transfer_set.o, m->u.transfer_set.x[0].to_lkid,
				 VMFS_DLM_ELOST);
			break;
		case VMFS_MSG_RECOVERY_REG:
		case VMFS_MSG_RECOVERY_DONE:
			rsm_ev_reply(r, RSM_EV_DONE, &m->u.recovery.o, 0, VMFS_DLM_ELOST);
			break;
		default:
			break;
		}
	}
	r->n_disc = 0;
}

/* After a load: tell local clients how the new table differs from what
 * they were told, and answer our own operations that were dropped at the
 * decision point (their outcome is whatever the base's table says). */
static void reconcile(struct rsm *r, const struct rsm_table *old)
{
	const struct rsm_table *t = &r->t;
	bool had = r->n_disc > 0;
	struct rsm_event ev;

	for (size_t i = 0; i < old->n_locks && !had; i++)
		had = rsm_local_live(r, old->locks[i]);
	for (size_t i = 0; i < old->n_agents && !had; i++)
		had = old->agents[i].nodeid == r->nodeid;
	if (had) {
		memset(&ev, 0, sizeof(ev));
		ev.type = RSM_EV_RESET;
		ev.mode = NO_MODE;
		rsm_emit(r, &ev);
	}
	for (size_t i = 0; i < old->n_locks; i++) {
		const struct rsm_lock *o = old->locks[i];
		const struct rsm_lock *n;

		if (!rsm_local_live(r, o))
			continue;
		n = tbl_lock_find(t, o->lkid);
		if (!n || !same_lock(o, n)) {
			if (o->queue == RSM_Q_WAITING)
				rsm_ev_lock(r, RSM_EV_REFUSED, o, o->req_id, VMFS_DLM_ELOST, 0);
			else
				rsm_ev_lock(r, RSM_EV_LOST, o, 0, 0, VMFS_DLM_LOST_RESET);
			continue;
		}
		if (n->queue == RSM_Q_GRANTED &&
		    (o->queue != RSM_Q_GRANTED || o->mode != n->mode || o->epoch != n->epoch))
			rsm_ev_lock(r, RSM_EV_GRANTED, n, n->req_id, 0, 0);
		else if (n->queue == RSM_Q_CONVERTING && o->queue == RSM_Q_GRANTED)
			rsm_ev_lock(r, RSM_EV_QUEUED, n, n->req_id, 0, 0);
	}
	for (size_t i = 0; i < t->n_locks; i++) {
		const struct rsm_lock *n = t->locks[i];
		const struct rsm_lock *o;

		if (!rsm_local_live(r, n))
			continue;
		o = tbl_lock_find(old, n->lkid);
		if (o && rsm_local_live(r, o) && same_lock(o, n))
			continue;
		rsm_ev_lock(r, n->queue == RSM_Q_GRANTED ? RSM_EV_GRANTED : RSM_EV_QUEUED, n, n->req_id, 0, 0);
	}
	answer_dropped(r);
	for (size_t i = 0; i < t->n_rec; i++) {
		const struct rsm_recov *c = &t->rec[i];

		if (!c->done && c->agent_node == r->nodeid) {
			memset(&ev, 0, sizeof(ev));
			ev.type = RSM_EV_RECOVER;
			ev.client_id = c->agent_client;
			ev.ls = c->ls;
			ev.nodeid = c->nodeid;
			ev.mode = NO_MODE;
			rsm_emit(r, &ev);
		}
	}
}

static void load_snapshot(struct rsm *r)
{
	struct rsm_table nt, old;
	const char *why;
	int rc;

	rc = tbl_decode(r->snap, r->snap_len, &nt, &why);
	free(r->snap);
	r->snap = NULL;
	r->snap_len = 0;
	if (rc) {
		log_err("snapshot from node %u refused: %s; staying unsynced", r->base, why);
		go_broken(r);
		return;
	}
	old = r->t;
	r->t = nt;
	/* The fence timer is local: it runs from when we learned of the
	 * departure, which for a loaded table is now. */
	for (size_t i = 0; i < r->t.n_dep; i++) {
		r->t.dep[i].left_ms = r->now_ms;
		r->t.dep[i].fenced_sent = false;
	}
	r->ss = SS_IDLE;
	r->synced = r->part_quorate;
	log_info("loaded snapshot from node %u: %zu resources, %zu locks, seq %llu",
		 r->base, r->t.n_res, r->t.n_locks, (unsigned long long)r->t.seq);
	reconcile(r, &old);
	tbl_free(&old);
	update_flags(r);
	flush_buffer(r);
	resend_client_gone(r);
}

static void on_snapshot(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_snapshot *s = &m->u.snapshot;
	uint8_t *p;

	if (r->ss != SS_AWAIT_SNAP || m->nodeid != r->base ||
	    s->members_hash != r->members_hash)
		return;
	if (s->chunk == 0) {
		free(r->snap);
		r->snap = NULL;
		r->snap_len = 0;
		r->snap_next = 0;
		r->snap_nchunks = s->nchunks;
	}
	if (s->chunk != r->snap_next || s->nchunks != r->snap_nchunks ||
	    r->snap_len + s->len > (size_t)s->nchunks * VMFS_MSG_MAX) {
		log_err("snapshot chunk %u/%u out of sequence; staying unsynced",
			s->chunk, s->nchunks);
		go_broken(r);
		return;
	}
	p = realloc(r->snap, r->snap_len + s->len + 1);
	if (!p) {
		log_err("out of memory assembling snapshot");
		go_broken(r);
		return;
	}
	r->snap = p;
	if (s->len)
		memcpy(r->snap + r->snap_len, s->data, s->len);
	r->snap_len += s->len;
	r->snap_next++;
	if (r->snap_next == r->snap_nchunks)
		load_snapshot(r);
}

/* --- sync rounds ---------------------------------------------------------- */

static void decision_point(struct rsm *r)
{
	const struct rsm_member *b = NULL, *me;
	uint32_t e = 1;
	bool any_synced, need = false, ident_me;

	for (size_t i = 0; i < r->n_mem; i++)
		if (r->mem[i].expected > e)
			e = r->mem[i].expected;
	r->expected_eff = e;
	r->part_quorate = 2 * r->n_mem > e;

	for (size_t i = 0; i < r->n_mem && !b; i++)
		if (r->mem[i].synced)
			b = &r->mem[i];
	any_synced = b != NULL;
	if (!b)
		for (size_t i = 0; i < r->n_mem; i++)
			if (!b || r->mem[i].seq > b->seq)
				b = &r->mem[i];
	r->base = b->nodeid;

#define IDENT(m) ((m) == b || (any_synced && (m)->synced && (m)->seq == b->seq))
	for (size_t i = 0; i < r->n_mem; i++)
		if (!IDENT(&r->mem[i]))
			need = true;
	me = member(r, r->nodeid);
	ident_me = me && IDENT(me);
#undef IDENT
	r->leader = r->part_quorate ? r->base : 0;
	log_debug("decision point: base %u, quorate %d, snapshot %s", r->base,
		  r->part_quorate, need ? "needed" : "not needed");

	if (ident_me) {
		flush_buffer(r);
		r->synced = r->part_quorate;
		r->ss = SS_IDLE;
		update_flags(r);
		if (rsm_can_grant(r)) {
			rsm_walk_all(r);
			rsm_check_purges(r);
		}
		if (r->base == r->nodeid && need)
			send_snapshot(r);
		if (r->n_disc) {
			/* Our ops were lost with an aborted round: RESET tells
			 * the caller the ELOST answers that follow may be
			 * re-sent, as after a load. */
			struct rsm_event ev;

			memset(&ev, 0, sizeof(ev));
			ev.type = RSM_EV_RESET;
			ev.mode = NO_MODE;
			rsm_emit(r, &ev);
			answer_dropped(r);
		}
		/* A base that died before its snapshot arrived takes the ops
		 * applied after its decision point with it; a CLIENT_GONE of
		 * ours may be among them. */
		if (r->n_dead)
			resend_client_gone(r);
		/* A new leader sends what is already due at once rather than
		 * waiting for the caller's next tick. */
		(void)rsm_tick(r, r->now_ms);
		return;
	}
	/* Our buffered ops are in the base's table already; keep our own
	 * to answer our clients once the snapshot is loaded. */
	keep_own(r);
	r->n_buf = 0;
	r->synced = false;
	r->ss = SS_AWAIT_SNAP;
	r->snap_next = 0;
	r->snap_nchunks = 0;
	update_flags(r);
}

static void on_node_info(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_node_info *ni = &m->u.node_info;
	struct rsm_member *mb = member(r, m->nodeid);

	/* A NODE_INFO of another membership is a leftover of an earlier
	 * round; the hash keeps it from completing this one. */
	if (!mb || ni->members_hash != r->members_hash || r->ss != SS_WAIT_INFO)
		return;
	mb->got_info = true;
	mb->synced = ni->synced;
	mb->seq = ni->seq;
	mb->expected = ni->expected_votes;
	copy_str(mb->name, sizeof(mb->name), ni->name.s);
	for (size_t i = 0; i < r->n_mem; i++)
		if (!r->mem[i].got_info)
			return;
	decision_point(r);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void rsm_confchg(struct rsm *r, const uint32_t *members, size_t n_members,
		 const uint32_t *left, size_t n_left,
		 const uint32_t *joined, size_t n_joined, uint64_t now_ms)
{
	struct rsm_member *nm;
	struct vmfs_msg m;
	char (*names)[VMFS_DLM_NAME_MAX + 1] = NULL;
	uint8_t le[4];
	uint32_t h = 0;

	(void)joined;
	(void)n_joined;
	r->now_ms = now_ms;
	log_info("membership: %zu members, %zu left, %zu joined", n_members, n_left, n_joined);

	/* Finish the old round as the old configuration would have. */
	if (r->ss == SS_WAIT_INFO && !r->synced) {
		flush_buffer(r);
	} else if (r->ss == SS_AWAIT_SNAP) {
		log_warn("membership changed before the snapshot arrived; retrying");
		keep_own(r);
	}
	r->n_buf = 0;
	free(r->snap);
	r->snap = NULL;
	r->snap_len = 0;

	if (n_left) {
		names = calloc(n_left, sizeof(*names));
		for (size_t i = 0; names && i < n_left; i++) {
			const struct rsm_member *om = member(r, left[i]);

			if (om)
				copy_str(names[i], sizeof(names[i]), om->name);
		}
	}

	nm = calloc(n_members ? n_members : 1, sizeof(*nm));
	if (!nm) {
		log_err("out of memory on membership change");
		free(names);
		r->synced = false;
		update_flags(r);
		return;
	}
	for (size_t i = 0; i < n_members; i++) {
		const struct rsm_member *om = member(r, members[i]);

		nm[i].nodeid = members[i];
		if (om)
			copy_str(nm[i].name, sizeof(nm[i].name), om->name);
	}
	qsort(nm, n_members, sizeof(*nm), cmp_u32);	/* nodeid is the first field */
	for (size_t i = 0; i < n_members; i++) {
		le[0] = (uint8_t)nm[i].nodeid;
		le[1] = (uint8_t)(nm[i].nodeid >> 8);
		le[2] = (uint8_t)(nm[i].nodeid >> 16);
		le[3] = (uint8_t)(nm[i].nodeid >> 24);
		h = crc32c(h, le, sizeof(le));
	}
	free(r->mem);
	r->mem = nm;
	r->n_mem = n_members;
	r->members_hash = h;
	if (member(r, r->nodeid))
		copy_str(member(r, r->nodeid)->name, sizeof(nm[0].name), r->name);

	/* Quorum with the new member count (and the last agreed E) before the
	 * departures: their grant walk must see the new partition. */
	r->part_quorate = 2 * r->n_mem > r->expected_eff;
	if (!r->part_quorate)
		r->synced = false;
	r->leader = 0;
	r->ss = SS_WAIT_INFO;
	update_flags(r);

	for (size_t i = 0; i < n_left; i++)
		if (left[i] != r->nodeid)
			rsm_node_departed(r, left[i], names ? names[i] : "");
	free(names);
	for (size_t i = 0; i < r->t.n_dep; i++)
		r->t.dep[i].fenced_sent = false;

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_NODE_INFO;
	m.u.node_info.expected_votes = r->expected_cfg;
	m.u.node_info.synced = r->synced;
	m.u.node_info.seq = r->t.seq;
	m.u.node_info.members_hash = r->members_hash;
	vmfs_name_set(&m.u.node_info.name, r->name);
	send_msg(r, &m);
}

void rsm_deliver(struct rsm *r, const struct vmfs_msg *m, uint64_t now_ms)
{
	r->now_ms = now_ms;
	/* Ring warm-up traffic (daemon/warm.c): the daemon drops it before
	 * us; ignored here too, so it can never change the table or seq. */
	if (m->type == VMFS_MSG_NOOP)
		return;
	if (m->type == VMFS_MSG_CLIENT_GONE && m->nodeid == r->nodeid)
		dead_add(r, m->u.client_gone.client_id);
	switch (m->type) {
	case VMFS_MSG_NODE_INFO:
		on_node_info(r, m);
		return;
	case VMFS_MSG_SNAPSHOT:
		on_snapshot(r, m);
		return;
	default:
		break;
	}
	if (r->ss == SS_BROKEN) {
		if (m->nodeid == r->nodeid &&
		    push_msg(&r->disc, &r->n_disc, &r->cap_disc, m))
			log_err("out of memory keeping dropped operations");
		return;
	}
	if (r->ss == SS_AWAIT_SNAP || (r->ss == SS_WAIT_INFO && !r->synced)) {
		if (push_msg(&r->buf, &r->n_buf, &r->cap_buf, m)) {
			log_err("out of memory buffering; staying unsynced");
			go_broken(r);
		}
		return;
	}
	rsm_apply_op(r, m);
	update_flags(r);	/* an out-of-memory in apply drops synced */
}

int64_t rsm_tick(struct rsm *r, uint64_t now_ms)
{
	int64_t next = -1;

	r->now_ms = now_ms;
	if (r->leader != r->nodeid || !r->quorate || r->ss != SS_IDLE)
		return -1;
	for (size_t i = 0; i < r->t.n_dep; i++) {
		struct rsm_departed *d = &r->t.dep[i];
		uint64_t due = d->left_ms + r->fence_delay_ms;

		if (d->state != DEP_LEFT || d->fenced_sent)
			continue;
		if (now_ms >= due) {
			struct vmfs_msg m;

			memset(&m, 0, sizeof(m));
			m.type = VMFS_MSG_FENCED;
			m.u.fenced.nodeid = d->nodeid;
			d->fenced_sent = true;
			log_node(LOG_INFO, d->nodeid, "fence delay passed; sending FENCED");
			send_msg(r, &m);
		} else if (next < 0 || (int64_t)(due - now_ms) < next) {
			next = (int64_t)(due - now_ms);
		}
	}
	return next;
}

/* --- inspection -------------------------------------------------------------- */

bool rsm_quorate(const struct rsm *r) { return r->quorate; }
bool rsm_synced(const struct rsm *r) { return r->synced; }
uint64_t rsm_seq(const struct rsm *r) { return r->t.seq; }

void rsm_foreach_node(const struct rsm *r,
		      void (*fn)(void *arg, const struct rsm_node_view *v), void *arg)
{
	struct rsm_node_view v;

	for (size_t i = 0; i < r->n_mem; i++) {
		v.nodeid = r->mem[i].nodeid;
		v.name = r->mem[i].name;
		v.state = RSM_NODE_MEMBER;
		v.synced = r->mem[i].nodeid == r->nodeid ? r->synced : r->mem[i].synced;
		fn(arg, &v);
	}
	/* A node that rejoined while its old incarnation is still being
	 * recovered is visited twice: as member and as LEFT/FENCED. */
	for (size_t i = 0; i < r->t.n_dep; i++) {
		v.nodeid = r->t.dep[i].nodeid;
		v.name = r->t.dep[i].name;
		v.state = r->t.dep[i].state == DEP_LEFT ? RSM_NODE_LEFT : RSM_NODE_FENCED;
		v.synced = false;
		fn(arg, &v);
	}
}

static void lock_view(const struct rsm *r, const struct rsm_lock *l, struct rsm_lock_view *v)
{
	v->lkid = l->lkid;
	v->queue = l->queue;
	v->mode = l->mode;
	v->rqmode = l->rqmode;
	v->epoch = l->epoch;
	v->nodeid = l->nodeid;
	v->node_name = rsm_node_name(r, l->nodeid);
	v->client_id = l->client_id;
	v->pid = l->pid;
	v->program = l->program;
	v->tag = l->tag;
	v->since_ms = l->since_ms;
	v->flags = l->flags;
	v->orphan = l->orphan;
	v->recovering = l->recovering;
}

void rsm_foreach_resource(const struct rsm *r, const char *ls_filter,
			  void (*fn)(void *arg, const struct rsm_resource_view *v), void *arg)
{
	for (size_t i = 0; i < r->t.n_res; i++) {
		const struct rsm_res *res = r->t.res[i];
		struct rsm_resource_view v;
		struct rsm_lock_view *lv;
		size_t n = res->q[0].n + res->q[1].n + res->q[2].n, k = 0;

		if (ls_filter && strcmp(ls_filter, res->ls) != 0)
			continue;
		lv = calloc(n ? n : 1, sizeof(*lv));
		if (!lv) {
			log_err("out of memory listing resources");
			return;
		}
		for (int q = 0; q < NQ; q++)
			for (const struct rsm_lock *l = res->q[q].head; l; l = l->next)
				lock_view(r, l, &lv[k++]);
		v.ls = res->ls;
		v.name = res->name;
		v.epoch = res->epoch;
		v.lvb_valid = res->lvb_valid;
		memcpy(v.lvb, res->lvb, VMFS_DLM_LVB_LEN);
		v.n_locks = n;
		v.locks = lv;
		fn(arg, &v);
		free(lv);
	}
}

bool rsm_lock_lookup(const struct rsm *r, uint64_t lkid, struct rsm_lock_view *out)
{
	const struct rsm_lock *l = tbl_lock_find(&r->t, lkid);

	if (!l)
		return false;
	lock_view(r, l, out);
	return true;
}

void rsm_foreach_recovery(const struct rsm *r,
			  void (*fn)(void *arg, const char *ls, uint32_t nodeid,
				     uint32_t agent_node), void *arg)
{
	for (size_t i = 0; i < r->t.n_rec; i++)
		if (!r->t.rec[i].done)
			fn(arg, r->t.rec[i].ls, r->t.rec[i].nodeid, r->t.rec[i].agent_node);
}

int rsm_encode_table(const struct rsm *r, uint8_t **buf, size_t *len)
{
	return tbl_encode(&r->t, buf, len);
}

/* FNV-1a over the canonical encoding: equality check, not security. */
uint64_t rsm_digest(const struct rsm *r)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t *buf;
	size_t len;

	if (tbl_encode(&r->t, &buf, &len))
		return 0;
	for (size_t i = 0; i < len; i++) {
		h ^= buf[i];
		h *= 0x100000001b3ull;
	}
	free(buf);
	return h;
}
