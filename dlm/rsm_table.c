/* rsm_table.c — the lock table and the lock operations of the replicated
 * state machine: request, convert, release, cancel, transfer, client gone,
 * recovery agents, departure, fencing and purge.  The states, events and
 * invariants are described at the top of rsm.c; this file enforces
 * invariants I1-I7 there.
 *
 * Every function here is deterministic in (table, message, membership,
 * quorum): no clock, no randomness, no iteration over unordered containers.
 * Events for local clients are the only output that differs between hosts.
 */
#include "config.h"
#include "rsm_internal.h"

#include <stdlib.h>

#include "log.h"

/* --- small containers ---------------------------------------------------- */

void tbl_init(struct rsm_table *t)
{
	memset(t, 0, sizeof(*t));
	t->next_lkid = 1;
}

void tbl_free(struct rsm_table *t)
{
	for (size_t i = 0; i < t->n_locks; i++)
		free(t->locks[i]);
	for (size_t i = 0; i < t->n_res; i++)
		free(t->res[i]);
	free(t->locks);
	free(t->res);
	free(t->dep);
	free(t->agents);
	free(t->rec);
	free(t->touched);
	tbl_init(t);
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *p;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

int tbl_res_cmp(const char *ls1, const char *n1, const char *ls2, const char *n2)
{
	int c = strcmp(ls1, ls2);

	return c ? c : strcmp(n1, n2);
}

/* Binary search; *pos receives the insertion point when not found. */
static struct rsm_res *res_find(const struct rsm_table *t, const char *ls,
				const char *name, size_t *pos)
{
	size_t lo = 0, hi = t->n_res;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = tbl_res_cmp(t->res[mid]->ls, t->res[mid]->name, ls, name);

		if (c == 0) {
			if (pos)
				*pos = mid;
			return t->res[mid];
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (pos)
		*pos = lo;
	return NULL;
}

static struct rsm_res *res_get(struct rsm_table *t, const char *ls, const char *name)
{
	struct rsm_res *res;
	size_t pos;

	res = res_find(t, ls, name, &pos);
	if (res)
		return res;
	if (grow((void **)&t->res, &t->cap_res, t->n_res + 1, sizeof(*t->res)))
		return NULL;
	res = calloc(1, sizeof(*res));
	if (!res)
		return NULL;
	copy_str(res->ls, sizeof(res->ls), ls);
	copy_str(res->name, sizeof(res->name), name);
	/* A resource that was freed and comes back must never hand out an
	 * epoch it handed out before (decision 4), so it starts above every
	 * epoch of any freed resource. */
	res->epoch = t->epoch_floor;
	res->lvb_valid = true;
	memmove(&t->res[pos + 1], &t->res[pos], (t->n_res - pos) * sizeof(*t->res));
	t->res[pos] = res;
	t->n_res++;
	return res;
}

/* Mark res for the next grant walk (walk_touched).  On failure to grow the
 * list, the walk of everything (rsm_walk_all) is the fallback. */
static void res_touch(struct rsm_table *t, struct rsm_res *res)
{
	res->touched = true;
	if (res->touch_idx)
		return;		/* listed (walk() may have run on it since) */
	if (grow((void **)&t->touched, &t->cap_touched, t->n_touched + 1, sizeof(*t->touched))) {
		t->touch_lost = true;
		return;
	}
	t->touched[t->n_touched++] = res;
	res->touch_idx = t->n_touched;
}

static bool lvb_zero(const uint8_t *lvb)
{
	for (int i = 0; i < VMFS_DLM_LVB_LEN; i++)
		if (lvb[i])
			return false;
	return true;
}

/* Decision: a resource is freed when it has no locks and its value block
 * is in the state a new resource starts in (valid, all zero).  A written
 * or invalidated LVB keeps it alive, so DLM value-block semantics hold
 * across "nobody holds it"; epochs survive through epoch_floor. */
static void res_maybe_free(struct rsm_table *t, struct rsm_res *res)
{
	size_t pos;

	for (int i = 0; i < NQ; i++)
		if (res->q[i].n)
			return;
	if (!res->lvb_valid || !lvb_zero(res->lvb))
		return;
	if (!res_find(t, res->ls, res->name, &pos))
		return;
	if (res->epoch > t->epoch_floor)
		t->epoch_floor = res->epoch;
	memmove(&t->res[pos], &t->res[pos + 1], (t->n_res - pos - 1) * sizeof(*t->res));
	t->n_res--;
	if (res->touch_idx)
		t->touched[res->touch_idx - 1] = NULL;	/* walk_touched skips it */
	free(res);
}

static size_t lock_pos(const struct rsm_table *t, uint64_t lkid, bool *found)
{
	size_t lo = 0, hi = t->n_locks;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (t->locks[mid]->lkid == lkid) {
			*found = true;
			return mid;
		}
		if (t->locks[mid]->lkid < lkid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

struct rsm_lock *tbl_lock_find(const struct rsm_table *t, uint64_t lkid)
{
	bool found;
	size_t pos = lock_pos(t, lkid, &found);

	return found ? t->locks[pos] : NULL;
}

int tbl_add_lock_sorted(struct rsm_table *t, struct rsm_lock *l)
{
	bool found;
	size_t pos;

	if (grow((void **)&t->locks, &t->cap_locks, t->n_locks + 1, sizeof(*t->locks)))
		return -ENOMEM;
	pos = lock_pos(t, l->lkid, &found);
	if (found)
		return -EEXIST;
	memmove(&t->locks[pos + 1], &t->locks[pos], (t->n_locks - pos) * sizeof(*t->locks));
	t->locks[pos] = l;
	t->n_locks++;
	return 0;
}

void tbl_link(struct rsm_res *res, struct rsm_lock *l, enum rsm_lock_queue q)
{
	struct lqueue *lq = &res->q[QIDX(q)];

	l->res = res;
	l->queue = q;
	l->next = NULL;
	l->prev = lq->tail;
	if (lq->tail)
		lq->tail->next = l;
	else
		lq->head = l;
	lq->tail = l;
	lq->n++;
}

static void unlink_lock(struct rsm_lock *l)
{
	struct lqueue *lq = &l->res->q[QIDX(l->queue)];

	if (l->prev)
		l->prev->next = l->next;
	else
		lq->head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	else
		lq->tail = l->prev;
	lq->n--;
	l->prev = l->next = NULL;
}

static void move_lock(struct rsm_lock *l, enum rsm_lock_queue q)
{
	unlink_lock(l);
	tbl_link(l->res, l, q);
}

/* Remove from its queue and the lkid index and free; the resource is
 * marked for a grant walk (the caller frees it if it became empty). */
static void destroy_lock(struct rsm_table *t, struct rsm_lock *l)
{
	bool found;
	size_t pos = lock_pos(t, l->lkid, &found);

	if (found)
		memmove(&t->locks[pos], &t->locks[pos + 1],
			(t->n_locks - pos - 1) * sizeof(*t->locks));
	if (found)
		t->n_locks--;
	unlink_lock(l);
	res_touch(t, l->res);
	free(l);
}

/* A copy of the lock index to iterate over while locks are removed. */
static struct rsm_lock **locks_copy(const struct rsm_table *t, size_t *n)
{
	struct rsm_lock **snap = malloc((t->n_locks ? t->n_locks : 1) * sizeof(*snap));

	*n = t->n_locks;
	if (snap && t->n_locks)
		memcpy(snap, t->locks, t->n_locks * sizeof(*snap));
	return snap;
}

/* --- membership helpers -------------------------------------------------- */

bool rsm_is_member(const struct rsm *r, uint32_t nodeid)
{
	for (size_t i = 0; i < r->n_mem; i++)
		if (r->mem[i].nodeid == nodeid)
			return true;
	return false;
}

const char *rsm_node_name(const struct rsm *r, uint32_t nodeid)
{
	for (size_t i = 0; i < r->n_mem; i++)
		if (r->mem[i].nodeid == nodeid && r->mem[i].name[0])
			return r->mem[i].name;
	for (size_t i = 0; i < r->t.n_dep; i++)
		if (r->t.dep[i].nodeid == nodeid)
			return r->t.dep[i].name;
	return "";
}

/* Grants need a quorate partition and an authoritative table (I5). */
bool rsm_can_grant(const struct rsm *r)
{
	return r->part_quorate && r->synced;
}

void rsm_emit(struct rsm *r, const struct rsm_event *ev)
{
	if (r->ops.event)
		r->ops.event(r->ctx, ev);
}

bool rsm_local_live(const struct rsm *r, const struct rsm_lock *l)
{
	return l->nodeid == r->nodeid && l->client_id != 0 && !l->recovering;
}

void rsm_ev_lock(struct rsm *r, enum rsm_event_type type, const struct rsm_lock *l,
		 uint32_t req_id, int err, int reason)
{
	struct rsm_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.client_id = l->client_id;
	ev.req_id = req_id;
	ev.lkid = l->lkid;
	ev.epoch = l->epoch;
	ev.mode = type == RSM_EV_GRANTED || type == RSM_EV_LOST ? l->mode : l->rqmode;
	ev.err = err;
	ev.reason = reason;
	if (type == RSM_EV_GRANTED) {
		ev.lvb_valid = l->res->lvb_valid;
		memcpy(ev.lvb, l->res->lvb, VMFS_DLM_LVB_LEN);
	}
	rsm_emit(r, &ev);
}

void rsm_ev_reply(struct rsm *r, enum rsm_event_type type, const struct vmfs_msg_origin *o,
		  uint64_t lkid, int err)
{
	struct rsm_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.client_id = o->client_id;
	ev.req_id = o->req_id;
	ev.lkid = lkid;
	ev.err = err;
	ev.mode = NO_MODE;
	rsm_emit(r, &ev);
}

/* An event about a lock, to its owner if that is a live local client. */
static void emit_lock(struct rsm *r, enum rsm_event_type type, const struct rsm_lock *l,
		      uint32_t req_id, int err)
{
	if (rsm_local_live(r, l))
		rsm_ev_lock(r, type, l, req_id, err, 0);
}

/* An answer to the sender of an operation (only if it is us). */
static void emit_reply(struct rsm *r, const struct vmfs_msg *m,
		       const struct vmfs_msg_origin *o, enum rsm_event_type type,
		       uint64_t lkid, int err)
{
	if (m->nodeid == r->nodeid)
		rsm_ev_reply(r, type, o, lkid, err);
}

/* --- grant logic ---------------------------------------------------------- */

/* Every lock that holds a grant (granted queue, and the old mode of the
 * converting ones) other than `self` is compatible with `mode`. */
static bool holders_compatible(const struct rsm_res *res, int mode, const struct rsm_lock *self)
{
	for (int q = QIDX(RSM_Q_GRANTED); q <= QIDX(RSM_Q_CONVERTING); q++)
		for (const struct rsm_lock *l = res->q[q].head; l; l = l->next)
			if (l != self && !vmfs_dlm_modes_compatible(l->mode, mode))
				return false;
	return true;
}

/* Down-convert: everything compatible with the old mode is compatible with
 * the new one, so granting it at once can never break I1. */
static bool is_down(int from, int to)
{
	for (int m = VMFS_DLM_NL; m <= VMFS_DLM_EX; m++)
		if (vmfs_dlm_modes_compatible(from, m) && !vmfs_dlm_modes_compatible(to, m))
			return false;
	return true;
}

static void grant(struct rsm *r, struct rsm_lock *l, int mode)
{
	l->mode = mode;
	l->rqmode = NO_MODE;
	l->epoch = ++l->res->epoch;
	l->since_ms = r->t.last_ts;
	l->last_bast = NO_MODE;
	if (l->queue != RSM_Q_GRANTED)
		move_lock(l, RSM_Q_GRANTED);
	emit_lock(r, RSM_EV_GRANTED, l, l->req_id, 0);
}

/* Blocking callbacks: each local holder incompatible with `want` learns
 * the wanted mode, once per (lock, mode) in a row. */
static void notify_holders(struct rsm *r, struct rsm_res *res, const struct rsm_lock *head,
			   int want)
{
	for (int q = QIDX(RSM_Q_GRANTED); q <= QIDX(RSM_Q_CONVERTING); q++)
		for (struct rsm_lock *l = res->q[q].head; l; l = l->next) {
			struct rsm_event ev;

			if (l == head || vmfs_dlm_modes_compatible(l->mode, want))
				continue;
			if (!rsm_local_live(r, l) || l->last_bast == want)
				continue;
			l->last_bast = want;
			memset(&ev, 0, sizeof(ev));
			ev.type = RSM_EV_BLOCKING;
			ev.client_id = l->client_id;
			ev.lkid = l->lkid;
			ev.epoch = l->epoch;
			ev.mode = want;
			rsm_emit(r, &ev);
		}
}

static void notify_head(struct rsm *r, struct rsm_res *res)
{
	struct rsm_lock *head = res->q[QIDX(RSM_Q_CONVERTING)].head;

	if (!head)
		head = res->q[QIDX(RSM_Q_WAITING)].head;
	if (head)
		notify_holders(r, res, head, head->rqmode);
}

/* The grant walk (I3, I4): converters in FIFO order, then waiters, granting
 * while possible and stopping at the first that cannot be granted. */
static void walk(struct rsm *r, struct rsm_res *res)
{
	struct rsm_lock *l;

	res->touched = false;
	if (rsm_can_grant(r)) {
		while ((l = res->q[QIDX(RSM_Q_CONVERTING)].head) &&
		       holders_compatible(res, l->rqmode, l))
			grant(r, l, l->rqmode);
		if (!res->q[QIDX(RSM_Q_CONVERTING)].head)
			while ((l = res->q[QIDX(RSM_Q_WAITING)].head) &&
			       holders_compatible(res, l->rqmode, NULL))
				grant(r, l, l->rqmode);
	}
	notify_head(r, res);
	res_maybe_free(&r->t, res);
}

static int touched_cmp(const void *a, const void *b)
{
	const struct rsm_res *x = *(struct rsm_res *const *)a, *y = *(struct rsm_res *const *)b;

	if (!x || !y)
		return !x - !y;
	return tbl_res_cmp(x->ls, x->name, y->ls, y->name);
}

/* Walk every resource marked touched, in resource order (the order the
 * events go out in must not depend on how they were marked). */
static void walk_touched(struct rsm *r)
{
	struct rsm_table *t = &r->t;
	size_t n = t->n_touched;

	if (t->touch_lost) {
		/* the list could not grow: scan them all, as before the list */
		t->touch_lost = false;
		for (size_t i = 0; i < t->n_touched; i++)
			if (t->touched[i])
				t->touched[i]->touch_idx = 0;
		t->n_touched = 0;
		for (size_t i = 0; i < t->n_res;) {
			struct rsm_res *res = t->res[i];
			size_t before = t->n_res;

			if (res->touched) {
				walk(r, res);
				if (t->n_res < before)
					continue;	/* freed: the next one slid into i */
			}
			i++;
		}
		return;
	}
	if (n > 1)
		qsort(t->touched, n, sizeof(*t->touched), touched_cmp);
	for (size_t i = 0; i < n; i++)
		if (t->touched[i])
			t->touched[i]->touch_idx = i + 1;
	/* walk() touches only its own resource and may free it (which
	 * clears its entry) */
	for (size_t i = 0; i < n; i++)
		if (t->touched[i] && t->touched[i]->touched)
			walk(r, t->touched[i]);
	for (size_t i = 0; i < n; i++)
		if (t->touched[i])
			t->touched[i]->touch_idx = 0;
	/* anything marked while we walked stays for the next walk */
	t->n_touched -= n;
	if (t->n_touched)
		memmove(t->touched, t->touched + n, t->n_touched * sizeof(*t->touched));
	for (size_t i = 0; i < t->n_touched; i++)
		if (t->touched[i])
			t->touched[i]->touch_idx = i + 1;
}

void rsm_walk_all(struct rsm *r)
{
	for (size_t i = 0; i < r->t.n_res; i++)
		res_touch(&r->t, r->t.res[i]);
	walk_touched(r);
}

/* --- operations ------------------------------------------------------------ */

/* Release/convert/cancel need the owner (I6); a recovering lock belongs to
 * a dead incarnation whose client ids may be reused, so nobody owns it. */
static struct rsm_lock *owned_lock(struct rsm *r, const struct vmfs_msg *m,
				   const struct vmfs_msg_origin *o, uint64_t lkid)
{
	struct rsm_lock *l = tbl_lock_find(&r->t, lkid);

	if (!l || l->recovering || l->nodeid != m->nodeid || l->client_id == 0 ||
	    l->client_id != o->client_id)
		return NULL;
	return l;
}

static void op_adopt(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_request *q = &m->u.request;
	struct rsm_res *res = res_find(&r->t, q->ls.s, q->res.s, NULL);
	struct rsm_lock *l = NULL;

	if (res)
		for (int i = 0; i < NQ && !l; i++)
			for (struct rsm_lock *c = res->q[i].head; c; c = c->next)
				if (c->orphan && !c->recovering && c->nodeid == m->nodeid &&
				    (!l || c->lkid < l->lkid))
					l = c;
	if (!l) {
		emit_reply(r, m, &q->o, RSM_EV_REFUSED, 0, VMFS_DLM_ENOLOCK);
		return;
	}
	/* Mode and epoch are kept: the adopter continues the same grant. */
	l->orphan = false;
	l->client_id = q->o.client_id;
	l->req_id = q->o.req_id;
	l->pid = q->pid;
	copy_str(l->program, sizeof(l->program), q->program.s);
	copy_str(l->tag, sizeof(l->tag), q->tag.s);
	l->last_bast = NO_MODE;
	emit_lock(r, RSM_EV_GRANTED, l, l->req_id, 0);
}

static void op_request(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_request *q = &m->u.request;
	struct rsm_res *res;
	struct rsm_lock *l;
	uint64_t lkid;

	if (q->flags & VMFS_DLM_ADOPT) {
		op_adopt(r, m);
		return;
	}
	if (!q->ls.len || !q->res.len || q->o.client_id == 0) {
		emit_reply(r, m, &q->o, RSM_EV_REFUSED, 0, -EINVAL);
		return;
	}
	/* The id is consumed even if the request is refused below, so that
	 * next_lkid stays a pure function of the message stream. */
	lkid = r->t.next_lkid++;
	res = res_get(&r->t, q->ls.s, q->res.s);
	l = calloc(1, sizeof(*l));
	if (l)
		l->lkid = lkid;
	if (!res || !l || tbl_add_lock_sorted(&r->t, l)) {
		/* Out of memory diverges this host from the others; the only
		 * safe reaction is to stop claiming an authoritative table. */
		log_err("out of memory applying REQUEST; table now unsynced");
		free(l);
		r->synced = false;
		return;
	}
	l->mode = NO_MODE;
	l->rqmode = q->mode;
	l->nodeid = m->nodeid;
	l->client_id = q->o.client_id;
	l->req_id = q->o.req_id;
	l->pid = q->pid;
	l->flags = q->flags & (VMFS_DLM_PERSISTENT | VMFS_DLM_NOQUEUE);
	l->since_ms = r->t.last_ts;
	l->last_bast = NO_MODE;
	copy_str(l->program, sizeof(l->program), q->program.s);
	copy_str(l->tag, sizeof(l->tag), q->tag.s);
	tbl_link(res, l, RSM_Q_WAITING);

	if (rsm_can_grant(r) && res->q[QIDX(RSM_Q_WAITING)].n == 1 &&
	    !res->q[QIDX(RSM_Q_CONVERTING)].n && holders_compatible(res, q->mode, NULL)) {
		grant(r, l, q->mode);
		return;
	}
	if (q->flags & VMFS_DLM_NOQUEUE) {
		int err = rsm_can_grant(r) ? VMFS_DLM_EAGAIN : VMFS_DLM_ENOQUORUM;

		/* Tell cached holders anyway: a try-lock against a cached
		 * lock could otherwise never succeed (GFS2's TRY_1CB). */
		struct rsm_lock gone;

		if (err == VMFS_DLM_EAGAIN)
			notify_holders(r, res, l, q->mode);
		/* Events go out once the table shows their outcome. */
		gone = *l;
		destroy_lock(&r->t, l);
		res_maybe_free(&r->t, res);
		emit_lock(r, RSM_EV_REFUSED, &gone, gone.req_id, err);
		return;
	}
	emit_lock(r, RSM_EV_QUEUED, l, l->req_id, 0);
	notify_head(r, res);
}

static void op_convert(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_convert *c = &m->u.convert;
	struct rsm_lock *l = owned_lock(r, m, &c->o, c->lkid);
	struct rsm_res *res;

	/* Decision: a failed convert is REFUSED (the convert's completion),
	 * not DONE, because the client waits for a grant-or-refusal. */
	if (!l) {
		emit_reply(r, m, &c->o, RSM_EV_REFUSED, c->lkid, VMFS_DLM_ENOLOCK);
		return;
	}
	if (l->queue != RSM_Q_GRANTED) {
		emit_reply(r, m, &c->o, RSM_EV_REFUSED, c->lkid, -EBUSY);
		return;
	}
	res = l->res;
	l->req_id = c->o.req_id;
	if (is_down(l->mode, c->mode)) {
		/* Always granted at once, quorum or not: it hands out nothing.
		 * The epoch is kept (not a new grant). */
		if ((c->flags & VMFS_DLM_VALBLK) && l->mode >= VMFS_DLM_PW) {
			memcpy(res->lvb, c->lvb, VMFS_DLM_LVB_LEN);
			res->lvb_valid = true;
		}
		if (l->mode != c->mode)
			l->last_bast = NO_MODE;
		l->mode = c->mode;
		emit_lock(r, RSM_EV_GRANTED, l, l->req_id, 0);
		res_touch(&r->t, res);
		walk(r, res);
		return;
	}
	if (rsm_can_grant(r) && !res->q[QIDX(RSM_Q_CONVERTING)].n &&
	    holders_compatible(res, c->mode, l)) {
		grant(r, l, c->mode);
		/* Modes are not a chain: CW->PR is an up-convert that can
		 * still unblock a waiting PR (found by the simulator). */
		walk(r, res);
		return;
	}
	if (c->flags & VMFS_DLM_NOQUEUE) {
		int err = rsm_can_grant(r) ? VMFS_DLM_EAGAIN : VMFS_DLM_ENOQUORUM;

		if (err == VMFS_DLM_EAGAIN)
			notify_holders(r, res, l, c->mode);
		l->rqmode = c->mode;	/* for the event's mode */
		emit_lock(r, RSM_EV_REFUSED, l, l->req_id, err);
		l->rqmode = NO_MODE;
		return;
	}
	l->rqmode = c->mode;
	move_lock(l, RSM_Q_CONVERTING);
	emit_lock(r, RSM_EV_QUEUED, l, l->req_id, 0);
	notify_head(r, res);
}

/* End the pending part of a lock: a waiting request is removed, a
 * converting one goes back to granted at its old mode.  The owner's
 * pending op is refused with err (if the owner is local and alive).
 * Returns true if the lock still exists. */
static bool end_pending(struct rsm *r, struct rsm_lock *l, int err, bool tell)
{
	if (l->queue == RSM_Q_WAITING) {
		struct rsm_lock gone = *l;

		destroy_lock(&r->t, l);
		if (tell)
			emit_lock(r, RSM_EV_REFUSED, &gone, gone.req_id, err);
		return false;
	}
	if (l->queue == RSM_Q_CONVERTING) {
		int want = l->rqmode;

		l->rqmode = NO_MODE;
		move_lock(l, RSM_Q_GRANTED);
		res_touch(&r->t, l->res);
		if (tell) {
			l->rqmode = want;	/* the event names the refused mode */
			emit_lock(r, RSM_EV_REFUSED, l, l->req_id, err);
			l->rqmode = NO_MODE;
		}
	}
	return true;
}

static void op_release(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_release *rl = &m->u.release;
	struct rsm_lock *l = owned_lock(r, m, &rl->o, rl->lkid);

	if (!l) {
		emit_reply(r, m, &rl->o, RSM_EV_DONE, rl->lkid, VMFS_DLM_ENOLOCK);
		return;
	}
	/* Releasing a pending request ends it as cancelled, then releases
	 * whatever grant is left. */
	if (end_pending(r, l, VMFS_DLM_ECANCELED, true)) {
		if ((rl->flags & VMFS_DLM_VALBLK) && l->mode >= VMFS_DLM_PW) {
			memcpy(l->res->lvb, rl->lvb, VMFS_DLM_LVB_LEN);
			l->res->lvb_valid = true;
		}
		destroy_lock(&r->t, l);
	}
	emit_reply(r, m, &rl->o, RSM_EV_DONE, rl->lkid, 0);
	walk_touched(r);
}

static void op_cancel(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_cancel *c = &m->u.cancel;
	struct rsm_lock *l = owned_lock(r, m, &c->o, c->lkid);

	if (!l || l->queue == RSM_Q_GRANTED) {
		/* A granted lock cannot be cancelled: the client releases it. */
		emit_reply(r, m, &c->o, RSM_EV_DONE, c->lkid, VMFS_DLM_ENOLOCK);
		return;
	}
	res_touch(&r->t, l->res);
	end_pending(r, l, VMFS_DLM_ECANCELED, true);
	emit_reply(r, m, &c->o, RSM_EV_DONE, c->lkid, 0);
	walk_touched(r);
}

static void op_transfer(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_transfer *x = &m->u.transfer;
	struct rsm_lock *from = tbl_lock_find(&r->t, x->from_lkid);
	struct rsm_lock *to = tbl_lock_find(&r->t, x->to_lkid);
	struct rsm_res *res;
	struct rsm_event ev;
	bool local;
	int err = 0;

	/* Decision: a recovering lock is not transferable; its holder may
	 * still be writing until fenced (decision 3), so only the purge
	 * after FENCED + recovery hands it on. */
	if (!from || from->recovering)
		err = VMFS_DLM_ENOLOCK;
	else if (from->queue != RSM_Q_GRANTED || from->epoch != x->from_epoch)
		err = VMFS_DLM_ESTALE;
	else if (!to || to->queue != RSM_Q_WAITING || to->res != from->res || to == from)
		err = VMFS_DLM_ENOLOCK;
	else if (!rsm_can_grant(r))
		err = VMFS_DLM_ENOQUORUM;
	if (err)
		goto out;
	res = from->res;
	/* holders_compatible() skips only one lock, so check with `from`
	 * out of the way: it is about to be removed anyway. */
	{
		bool ok = true;

		for (int q = QIDX(RSM_Q_GRANTED); q <= QIDX(RSM_Q_CONVERTING) && ok; q++)
			for (const struct rsm_lock *h = res->q[q].head; h; h = h->next)
				if (h != from && !vmfs_dlm_modes_compatible(h->mode, to->rqmode)) {
					ok = false;
					break;
				}
		if (!ok) {
			err = VMFS_DLM_EINCOMPAT;
			goto out;
		}
	}
	/* One step: from disappears and to holds the resource, with a new
	 * epoch, so there is no moment where neither or both hold it. */
	memset(&ev, 0, sizeof(ev));
	ev.type = RSM_EV_LOST;
	ev.client_id = from->client_id;
	ev.lkid = from->lkid;
	ev.epoch = from->epoch;
	ev.mode = from->mode;
	ev.reason = VMFS_DLM_LOST_TRANSFERRED;
	local = rsm_local_live(r, from);
	destroy_lock(&r->t, from);
	grant(r, to, to->rqmode);
	if (local)
		rsm_emit(r, &ev);
	walk(r, res);
out:
	emit_reply(r, m, &x->o, RSM_EV_DONE, x->to_lkid, err);
}

/* TRANSFER_SET: every triple is checked as op_transfer() checks its one,
 * against the table as it is before the message, and only if all pass are
 * they applied, in triple order, without any grant walk in between (a walk
 * could hand a later triple's resource to somebody else).  So a migration's
 * disk locks move together or not at all.  Extra rules a set needs:
 *   - no lock appears twice in the set (as a source or a target): -EINVAL;
 *   - a target's mode must be compatible with every holder of its resource
 *     that is not a source of the set, and with the other targets of the set
 *     on the same resource (they become holders in the same step). */
static int xset_check(struct rsm *r, const struct vmfs_msg_transfer_set *xs,
		      struct rsm_lock **from, struct rsm_lock **to)
{
	for (uint32_t i = 0; i < xs->n; i++) {
		const struct vmfs_msg_xfer *x = &xs->x[i];

		for (uint32_t j = 0; j < i; j++) {
			const struct vmfs_msg_xfer *y = &xs->x[j];

			if (x->from_lkid == y->from_lkid || x->from_lkid == y->to_lkid ||
			    x->to_lkid == y->from_lkid || x->to_lkid == y->to_lkid)
				return -EINVAL;
		}
		from[i] = tbl_lock_find(&r->t, x->from_lkid);
		to[i] = tbl_lock_find(&r->t, x->to_lkid);
		/* Same order of checks, and the same errors, as TRANSFER. */
		if (!from[i] || from[i]->recovering)
			return VMFS_DLM_ENOLOCK;
		if (from[i]->queue != RSM_Q_GRANTED || from[i]->epoch != x->from_epoch)
			return VMFS_DLM_ESTALE;
		if (!to[i] || to[i]->queue != RSM_Q_WAITING || to[i]->res != from[i]->res ||
		    to[i] == from[i])
			return VMFS_DLM_ENOLOCK;
		if (!rsm_can_grant(r))
			return VMFS_DLM_ENOQUORUM;
	}
	for (uint32_t i = 0; i < xs->n; i++) {
		const struct rsm_res *res = from[i]->res;
		int want = to[i]->rqmode;

		for (int q = QIDX(RSM_Q_GRANTED); q <= QIDX(RSM_Q_CONVERTING); q++)
			for (const struct rsm_lock *h = res->q[q].head; h; h = h->next) {
				bool leaving = false;

				for (uint32_t j = 0; j < xs->n && !leaving; j++)
					leaving = h == from[j];
				if (!leaving && !vmfs_dlm_modes_compatible(h->mode, want))
					return VMFS_DLM_EINCOMPAT;
			}
		for (uint32_t j = 0; j < xs->n; j++)
			if (j != i && to[j]->res == res &&
			    !vmfs_dlm_modes_compatible(to[j]->rqmode, want))
				return VMFS_DLM_EINCOMPAT;
	}
	return 0;
}

static void op_transfer_set(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_transfer_set *xs = &m->u.transfer_set;
	struct rsm_lock *from[VMFS_MSG_XSET_MAX], *to[VMFS_MSG_XSET_MAX];
	int err = -EINVAL;

	if (xs->n >= 1 && xs->n <= VMFS_MSG_XSET_MAX)
		err = xset_check(r, xs, from, to);
	if (err)
		goto out;
	/* One step for the whole set (I7: each target takes a new epoch). */
	for (uint32_t i = 0; i < xs->n; i++) {
		struct rsm_event ev;
		bool local;

		memset(&ev, 0, sizeof(ev));
		ev.type = RSM_EV_LOST;
		ev.client_id = from[i]->client_id;
		ev.lkid = from[i]->lkid;
		ev.epoch = from[i]->epoch;
		ev.mode = from[i]->mode;
		ev.reason = VMFS_DLM_LOST_TRANSFERRED;
		local = rsm_local_live(r, from[i]);
		destroy_lock(&r->t, from[i]);
		grant(r, to[i], to[i]->rqmode);
		if (local)
			rsm_emit(r, &ev);
	}
	walk_touched(r);	/* every resource of the set was touched by destroy_lock() */
out:
	emit_reply(r, m, &xs->o, RSM_EV_DONE, xs->n ? xs->x[0].to_lkid : 0, err);
}

/* --- recovery agents ------------------------------------------------------- */

static int agent_cmp(const struct rsm_agent *a, const char *ls, uint32_t node, uint32_t client)
{
	int c = strcmp(a->ls, ls);

	if (c)
		return c;
	if (a->nodeid != node)
		return a->nodeid < node ? -1 : 1;
	if (a->client_id != client)
		return a->client_id < client ? -1 : 1;
	return 0;
}

/* The lowest member node's lowest client registered for ls (agents of
 * departed nodes are removed at departure, so all are members). */
static const struct rsm_agent *agent_pick(const struct rsm *r, const char *ls)
{
	for (size_t i = 0; i < r->t.n_agents; i++)
		if (strcmp(r->t.agents[i].ls, ls) == 0 && rsm_is_member(r, r->t.agents[i].nodeid))
			return &r->t.agents[i];
	return NULL;
}

static void emit_recover(struct rsm *r, const struct rsm_recov *rc)
{
	struct rsm_event ev;

	if (rc->agent_node != r->nodeid)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.type = RSM_EV_RECOVER;
	ev.client_id = rc->agent_client;
	ev.ls = rc->ls;
	ev.nodeid = rc->nodeid;
	ev.mode = NO_MODE;
	rsm_emit(r, &ev);
}

/* Give a pending recovery to the next agent; with none left, the
 * lockspace has nobody who could replay anything and is done. */
static void recov_assign(struct rsm *r, struct rsm_recov *rc)
{
	const struct rsm_agent *a = agent_pick(r, rc->ls);

	if (!a) {
		rc->done = true;
		rc->agent_node = rc->agent_client = 0;
		log_ls(LOG_INFO, rc->ls, "no recovery agent for node %u: done", rc->nodeid);
		return;
	}
	rc->agent_node = a->nodeid;
	rc->agent_client = a->client_id;
	emit_recover(r, rc);
}

static void purge_node(struct rsm *r, uint32_t nodeid);

/* Remove agents matching (node, client) (client 0 = all of the node) and
 * reassign the recoveries they were working on. */
static void agents_remove(struct rsm *r, uint32_t node, uint32_t client, const char *ls)
{
	size_t j = 0;

	for (size_t i = 0; i < r->t.n_agents; i++) {
		struct rsm_agent *a = &r->t.agents[i];

		if (a->nodeid == node && (client == 0 || a->client_id == client) &&
		    (!ls || strcmp(a->ls, ls) == 0))
			continue;
		r->t.agents[j++] = *a;
	}
	if (j == r->t.n_agents)
		return;
	r->t.n_agents = j;
	for (size_t i = 0; i < r->t.n_rec; i++) {
		struct rsm_recov *rc = &r->t.rec[i];

		if (!rc->done && rc->agent_node == node &&
		    (client == 0 || rc->agent_client == client))
			recov_assign(r, rc);
	}
	rsm_check_purges(r);
}

static void op_recovery_reg(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_recovery *q = &m->u.recovery;
	size_t pos = 0;

	if (!q->ls.len || q->o.client_id == 0) {
		emit_reply(r, m, &q->o, RSM_EV_DONE, 0, -EINVAL);
		return;
	}
	if (!q->on) {
		agents_remove(r, m->nodeid, q->o.client_id, q->ls.s);
		emit_reply(r, m, &q->o, RSM_EV_DONE, 0, 0);
		return;
	}
	while (pos < r->t.n_agents &&
	       agent_cmp(&r->t.agents[pos], q->ls.s, m->nodeid, q->o.client_id) < 0)
		pos++;
	if (pos == r->t.n_agents ||
	    agent_cmp(&r->t.agents[pos], q->ls.s, m->nodeid, q->o.client_id) != 0) {
		struct rsm_agent *na = realloc(r->t.agents, (r->t.n_agents + 1) * sizeof(*na));

		if (!na) {
			emit_reply(r, m, &q->o, RSM_EV_DONE, 0, -ENOMEM);
			r->synced = false;
			return;
		}
		r->t.agents = na;
		memmove(&na[pos + 1], &na[pos], (r->t.n_agents - pos) * sizeof(*na));
		memset(&na[pos], 0, sizeof(*na));
		copy_str(na[pos].ls, sizeof(na[pos].ls), q->ls.s);
		na[pos].nodeid = m->nodeid;
		na[pos].client_id = q->o.client_id;
		r->t.n_agents++;
	}
	emit_reply(r, m, &q->o, RSM_EV_DONE, 0, 0);
}

static void op_recovery_done(struct rsm *r, const struct vmfs_msg *m)
{
	const struct vmfs_msg_recovery *q = &m->u.recovery;
	int err = VMFS_DLM_ENOLOCK;

	/* Decision: accepted from any client (an operator tool may have to
	 * finish a recovery whose agent is stuck). */
	for (size_t i = 0; i < r->t.n_rec; i++) {
		struct rsm_recov *rc = &r->t.rec[i];

		if (rc->nodeid == q->nodeid && strcmp(rc->ls, q->ls.s) == 0 && !rc->done) {
			rc->done = true;
			err = 0;
		}
	}
	emit_reply(r, m, &q->o, RSM_EV_DONE, 0, err);
	if (!err)
		rsm_check_purges(r);
}

/* --- departures, fencing, purge ------------------------------------------ */

static struct rsm_departed *dep_find(struct rsm_table *t, uint32_t nodeid)
{
	for (size_t i = 0; i < t->n_dep; i++)
		if (t->dep[i].nodeid == nodeid)
			return &t->dep[i];
	return NULL;
}

static void recov_drop_node(struct rsm_table *t, uint32_t nodeid)
{
	size_t j = 0;

	for (size_t i = 0; i < t->n_rec; i++)
		if (t->rec[i].nodeid != nodeid)
			t->rec[j++] = t->rec[i];
	t->n_rec = j;
}

void rsm_node_departed(struct rsm *r, uint32_t nodeid, const char *name)
{
	struct rsm_departed *d;
	struct rsm_lock **snap;
	size_t n, held = 0;

	/* Iterate over a copy: end_pending() removes from the index. */
	snap = locks_copy(&r->t, &n);
	if (!snap) {
		log_err("out of memory handling departure of node %u", nodeid);
		r->synced = false;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct rsm_lock *l = snap[i];

		if (l->nodeid != nodeid)
			continue;
		if (l->recovering) {
			held++;
			continue;
		}
		res_touch(&r->t, l->res);
		if (!end_pending(r, l, 0, false))
			continue;
		l->recovering = true;
		held++;
	}
	free(snap);
	agents_remove(r, nodeid, 0, NULL);

	d = dep_find(&r->t, nodeid);
	if (!d && held) {
		struct rsm_departed *nd = realloc(r->t.dep, (r->t.n_dep + 1) * sizeof(*nd));
		size_t pos = 0;

		if (!nd) {
			r->synced = false;
			return;
		}
		r->t.dep = nd;
		while (pos < r->t.n_dep && nd[pos].nodeid < nodeid)
			pos++;
		memmove(&nd[pos + 1], &nd[pos], (r->t.n_dep - pos) * sizeof(*nd));
		d = &nd[pos];
		memset(d, 0, sizeof(*d));
		d->nodeid = nodeid;
		r->t.n_dep++;
	}
	if (d) {
		/* A second departure while an older incarnation is still being
		 * recovered starts over: the newer locks were never fenced. */
		d->state = DEP_LEFT;
		d->left_ms = r->now_ms;
		d->fenced_sent = false;
		if (name && name[0])
			copy_str(d->name, sizeof(d->name), name);
		recov_drop_node(&r->t, nodeid);
		log_node(LOG_INFO, nodeid, "left holding %zu locks; recovering", held);
	}
	walk_touched(r);
}

static void op_fenced(struct rsm *r, const struct vmfs_msg *m)
{
	uint32_t nodeid = m->u.fenced.nodeid;
	struct rsm_departed *d = dep_find(&r->t, nodeid);

	/* Without quorum nobody is purged; the leader sends it again. */
	if (!r->part_quorate || !d || d->state != DEP_LEFT)
		return;
	d->state = DEP_FENCED;
	log_node(LOG_INFO, nodeid, "fenced");
	/* One recovery per lockspace where the node holds locks, in sorted
	 * order (locks are visited by resource order). */
	for (size_t i = 0; i < r->t.n_res; i++) {
		struct rsm_res *res = r->t.res[i];
		bool holds = false, have = false;

		for (int q = 0; q < NQ && !holds; q++)
			for (struct rsm_lock *l = res->q[q].head; l; l = l->next)
				if (l->nodeid == nodeid && l->recovering) {
					holds = true;
					break;
				}
		if (!holds)
			continue;
		for (size_t k = 0; k < r->t.n_rec; k++)
			if (r->t.rec[k].nodeid == nodeid && strcmp(r->t.rec[k].ls, res->ls) == 0)
				have = true;
		if (have)
			continue;
		{
			struct rsm_recov *nr = realloc(r->t.rec, (r->t.n_rec + 1) * sizeof(*nr));
			size_t pos = 0;

			if (!nr) {
				r->synced = false;
				return;
			}
			r->t.rec = nr;
			while (pos < r->t.n_rec &&
			       (strcmp(nr[pos].ls, res->ls) < 0 ||
				(strcmp(nr[pos].ls, res->ls) == 0 && nr[pos].nodeid < nodeid)))
				pos++;
			memmove(&nr[pos + 1], &nr[pos], (r->t.n_rec - pos) * sizeof(*nr));
			memset(&nr[pos], 0, sizeof(*nr));
			copy_str(nr[pos].ls, sizeof(nr[pos].ls), res->ls);
			nr[pos].nodeid = nodeid;
			r->t.n_rec++;
			recov_assign(r, &nr[pos]);
		}
	}
	rsm_check_purges(r);
}

static void purge_node(struct rsm *r, uint32_t nodeid)
{
	struct rsm_lock **snap;
	size_t n, purged = 0;

	snap = locks_copy(&r->t, &n);
	if (!snap) {
		r->synced = false;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct rsm_lock *l = snap[i];

		if (l->nodeid != nodeid || !l->recovering)
			continue;
		/* The holder may have changed the protected data without
		 * writing the value block back (I7). */
		if (l->mode >= VMFS_DLM_PW)
			l->res->lvb_valid = false;
		destroy_lock(&r->t, l);
		purged++;
	}
	free(snap);
	recov_drop_node(&r->t, nodeid);
	for (size_t i = 0; i < r->t.n_dep; i++)
		if (r->t.dep[i].nodeid == nodeid) {
			memmove(&r->t.dep[i], &r->t.dep[i + 1],
				(r->t.n_dep - i - 1) * sizeof(*r->t.dep));
			r->t.n_dep--;
			break;
		}
	log_node(LOG_INFO, nodeid, "purged %zu locks", purged);
	walk_touched(r);
}

/* Purge every fenced node whose recoveries are all done (quorate only). */
void rsm_check_purges(struct rsm *r)
{
	size_t i = 0;

	if (!r->part_quorate)
		return;
	while (i < r->t.n_dep) {
		struct rsm_departed *d = &r->t.dep[i];
		bool all = true;

		if (d->state == DEP_FENCED) {
			for (size_t k = 0; k < r->t.n_rec; k++)
				if (r->t.rec[k].nodeid == d->nodeid && !r->t.rec[k].done)
					all = false;
			if (all) {
				purge_node(r, d->nodeid);
				continue;	/* dep[] shifted */
			}
		}
		i++;
	}
}

static void op_client_gone(struct rsm *r, const struct vmfs_msg *m)
{
	uint32_t cid = m->u.client_gone.client_id;
	struct rsm_lock **snap;
	size_t n;

	snap = locks_copy(&r->t, &n);
	if (!snap) {
		r->synced = false;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct rsm_lock *l = snap[i];

		/* Recovering locks are a dead incarnation's: its client ids
		 * mean nothing to the current one. */
		if (l->nodeid != m->nodeid || l->client_id != cid || cid == 0 || l->recovering)
			continue;
		res_touch(&r->t, l->res);
		if (!end_pending(r, l, 0, false))
			continue;
		if (l->flags & VMFS_DLM_PERSISTENT) {
			l->orphan = true;
			l->client_id = 0;
			l->req_id = 0;
		} else {
			destroy_lock(&r->t, l);
		}
	}
	free(snap);
	if (cid)
		agents_remove(r, m->nodeid, cid, NULL);
	walk_touched(r);
}

/* Table operations in agreed order.  NODE_INFO and SNAPSHOT are sync
 * control and handled by rsm.c, never here. */
void rsm_apply_op(struct rsm *r, const struct vmfs_msg *m)
{
	static void (*const ops[VMFS_MSG_TYPE_MAX])(struct rsm *, const struct vmfs_msg *) = {
		[VMFS_MSG_REQUEST] = op_request,
		[VMFS_MSG_CONVERT] = op_convert,
		[VMFS_MSG_RELEASE] = op_release,
		[VMFS_MSG_CANCEL] = op_cancel,
		[VMFS_MSG_TRANSFER] = op_transfer,
		[VMFS_MSG_TRANSFER_SET] = op_transfer_set,
		[VMFS_MSG_CLIENT_GONE] = op_client_gone,
		[VMFS_MSG_RECOVERY_REG] = op_recovery_reg,
		[VMFS_MSG_RECOVERY_DONE] = op_recovery_done,
		[VMFS_MSG_FENCED] = op_fenced,
	};

	if (m->type >= VMFS_MSG_TYPE_MAX || !ops[m->type])
		return;
	if (!rsm_is_member(r, m->nodeid)) {
		/* Virtual synchrony delivers a sender's messages before the
		 * confchg that removes it, so this is a confused caller. */
		log_warn("dropping %s from non-member %u", vmfs_msg_type_name(m->type), m->nodeid);
		return;
	}
	log_debug("apply %s from %u", vmfs_msg_type_name(m->type), m->nodeid);
	/* Grants made outside a message (departure, quorum regained) are
	 * stamped with the last applied message's time: replicated, unlike
	 * any local clock. */
	r->t.last_ts = m->ts_ms;
	if (r->synced)
		r->t.seq++;
	ops[m->type](r, m);
}
