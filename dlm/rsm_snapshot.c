/* rsm_snapshot.c — the canonical encoding of the lock table.
 *
 * The same bytes are the SNAPSHOT body (chunked by rsm.c) and the input of
 * rsm_digest(), so two hosts with equal tables produce identical bytes:
 * every array is walked in its sorted order, every field is fixed width
 * little-endian, names are u8 length + 64 zero-padded bytes.
 *
 *   u32 magic "RSMT", u32 version
 *   u64 seq, next_lkid, epoch_floor, last_ts
 *   u32 n_departed  { u32 nodeid, u8 state, name }
 *   u32 n_agents    { name ls, u32 nodeid, u32 client_id }
 *   u32 n_recovery  { name ls, u32 nodeid, u8 done, u32 agent_node, u32 agent_client }
 *   u32 n_resources { name ls, name res, u64 epoch, u8 lvb_valid, lvb[32], u32 n_locks,
 *                     n_locks x { u64 lkid, u8 queue, u8 mode, u8 rqmode (0xff = none),
 *                       u32 nodeid, client_id, req_id, pid, flags, u64 epoch, since_ms,
 *                       u8 orphan, u8 recovering, name program, name tag } }
 *
 * Decoding is network input: every field is checked, every invariant the
 * state machine relies on (sorted unique keys, queue/mode consistency, no
 * two incompatible holders) is verified, and a bad snapshot is refused as
 * a whole without touching the live table.
 */
#include "config.h"
#include "rsm_internal.h"

#include <stdlib.h>

#define TBL_MAGIC 0x544d5352u	/* "RSMT" little-endian */
#define TBL_VERSION 1u
#define MODE_NONE 0xffu

static uint8_t mode_byte(int mode)
{
	return mode == NO_MODE ? MODE_NONE : (uint8_t)mode;
}

static void enc_lock(struct wcur *w, const struct rsm_lock *l)
{
	put_u64(w, l->lkid);
	put_u8(w, (uint8_t)l->queue);
	put_u8(w, mode_byte(l->mode));
	put_u8(w, mode_byte(l->rqmode));
	put_u32(w, l->nodeid);
	put_u32(w, l->client_id);
	put_u32(w, l->req_id);
	put_u32(w, l->pid);
	put_u32(w, l->flags);
	put_u64(w, l->epoch);
	put_u64(w, l->since_ms);
	put_u8(w, l->orphan);
	put_u8(w, l->recovering);
	put_cstr(w, l->program, VMFS_DLM_PROG_MAX);
	put_cstr(w, l->tag, VMFS_DLM_TAG_MAX);
}

#define LOCK_WIRE (8 + 3 + 5 * 4 + 2 * 8 + 2 + 2 * NAME_WIRE)
#define RES_WIRE (2 * NAME_WIRE + 8 + 1 + VMFS_DLM_LVB_LEN + 4)
#define DEP_WIRE (4 + 1 + NAME_WIRE)
#define AGENT_WIRE (NAME_WIRE + 8)
#define REC_WIRE (NAME_WIRE + 4 + 1 + 8)

static size_t table_size(const struct rsm_table *t)
{
	return 8 + 32 + 16 + t->n_dep * DEP_WIRE + t->n_agents * AGENT_WIRE +
	       t->n_rec * REC_WIRE + t->n_res * RES_WIRE + t->n_locks * LOCK_WIRE;
}

int tbl_encode(const struct rsm_table *t, uint8_t **buf, size_t *len)
{
	size_t size = table_size(t);
	struct wcur w = { .p = NULL, .off = 0, .cap = size, .err = 0 };
	int rc = 0;

	*buf = NULL;
	*len = 0;
	w.p = malloc(size ? size : 1);
	if (!w.p) {
		rc = -ENOMEM;
		goto out;
	}
	put_u32(&w, TBL_MAGIC);
	put_u32(&w, TBL_VERSION);
	put_u64(&w, t->seq);
	put_u64(&w, t->next_lkid);
	put_u64(&w, t->epoch_floor);
	put_u64(&w, t->last_ts);
	put_u32(&w, (uint32_t)t->n_dep);
	for (size_t i = 0; i < t->n_dep; i++) {
		put_u32(&w, t->dep[i].nodeid);
		put_u8(&w, (uint8_t)t->dep[i].state);
		put_cstr(&w, t->dep[i].name, VMFS_DLM_NAME_MAX);
	}
	put_u32(&w, (uint32_t)t->n_agents);
	for (size_t i = 0; i < t->n_agents; i++) {
		put_cstr(&w, t->agents[i].ls, VMFS_DLM_NAME_MAX);
		put_u32(&w, t->agents[i].nodeid);
		put_u32(&w, t->agents[i].client_id);
	}
	put_u32(&w, (uint32_t)t->n_rec);
	for (size_t i = 0; i < t->n_rec; i++) {
		put_cstr(&w, t->rec[i].ls, VMFS_DLM_NAME_MAX);
		put_u32(&w, t->rec[i].nodeid);
		put_u8(&w, t->rec[i].done);
		put_u32(&w, t->rec[i].agent_node);
		put_u32(&w, t->rec[i].agent_client);
	}
	put_u32(&w, (uint32_t)t->n_res);
	for (size_t i = 0; i < t->n_res; i++) {
		const struct rsm_res *res = t->res[i];

		put_cstr(&w, res->ls, VMFS_DLM_NAME_MAX);
		put_cstr(&w, res->name, VMFS_DLM_NAME_MAX);
		put_u64(&w, res->epoch);
		put_u8(&w, res->lvb_valid);
		put_bytes(&w, res->lvb, VMFS_DLM_LVB_LEN);
		put_u32(&w, (uint32_t)(res->q[0].n + res->q[1].n + res->q[2].n));
		for (int q = 0; q < NQ; q++)
			for (const struct rsm_lock *l = res->q[q].head; l; l = l->next)
				enc_lock(&w, l);
	}
	if (w.err || w.off != size) {
		rc = w.err ? w.err : -EINVAL;
		goto out;
	}
	*buf = w.p;
	*len = size;
	w.p = NULL;
out:
	free(w.p);
	return rc;
}

/* A count is plausible only if that many minimal records fit in what is
 * left: a hostile count cannot make us allocate more than the input. */
static bool count_ok(const struct rcur *r, uint32_t n, size_t rec)
{
	return (uint64_t)n * rec <= r->len - r->off;
}

#define BAD(msg) do { *why = (msg); rc = -EINVAL; goto out; } while (0)

static int dec_locks(struct rcur *r, struct rsm_table *t, struct rsm_res *res,
		     uint32_t n, const char **why)
{
	int last_q = RSM_Q_GRANTED;
	int rc = 0;

	for (uint32_t k = 0; k < n; k++) {
		struct rsm_lock *l = calloc(1, sizeof(*l));
		uint8_t q, mode, rqmode, orphan, recov;
		bool bad = false;

		if (!l) {
			rc = -ENOMEM;
			goto out;
		}
		l->lkid = get_u64(r);
		q = get_u8(r);
		mode = get_u8(r);
		rqmode = get_u8(r);
		l->nodeid = get_u32(r);
		l->client_id = get_u32(r);
		l->req_id = get_u32(r);
		l->pid = get_u32(r);
		l->flags = get_u32(r);
		l->epoch = get_u64(r);
		l->since_ms = get_u64(r);
		orphan = get_u8(r);
		recov = get_u8(r);
		get_cstr(r, l->program, VMFS_DLM_PROG_MAX, &bad);
		get_cstr(r, l->tag, VMFS_DLM_TAG_MAX, &bad);
		l->mode = mode == MODE_NONE ? NO_MODE : mode;
		l->rqmode = rqmode == MODE_NONE ? NO_MODE : rqmode;
		l->orphan = orphan;
		l->recovering = recov;
		l->last_bast = NO_MODE;
		if (r->err || bad || orphan > 1 || recov > 1 || l->lkid == 0 ||
		    l->lkid >= t->next_lkid || l->nodeid == 0 ||
		    (mode > VMFS_DLM_EX && mode != MODE_NONE) ||
		    (rqmode > VMFS_DLM_EX && rqmode != MODE_NONE) ||
		    q < RSM_Q_GRANTED || q > RSM_Q_WAITING || q < last_q ||
		    l->orphan != (l->client_id == 0) || l->epoch > res->epoch ||
		    (q == RSM_Q_GRANTED && (l->mode == NO_MODE || l->rqmode != NO_MODE)) ||
		    (q == RSM_Q_CONVERTING && (l->mode == NO_MODE || l->rqmode == NO_MODE)) ||
		    (q == RSM_Q_WAITING && (l->mode != NO_MODE || l->rqmode == NO_MODE ||
					    l->orphan || l->recovering))) {
			free(l);
			BAD("bad lock record");
		}
		last_q = q;
		/* Appended here, sorted and checked for duplicates once the
		 * whole table is read (inserting in order would be quadratic). */
		if (t->n_locks == t->cap_locks) {
			size_t ncap = t->cap_locks ? 2 * t->cap_locks : 64;
			struct rsm_lock **nl = realloc(t->locks, ncap * sizeof(*nl));

			if (!nl) {
				free(l);
				rc = -ENOMEM;
				goto out;
			}
			t->locks = nl;
			t->cap_locks = ncap;
		}
		t->locks[t->n_locks++] = l;
		tbl_link(res, l, (enum rsm_lock_queue)q);
	}
out:
	return rc;
}

static int lock_cmp(const void *a, const void *b)
{
	const struct rsm_lock *x = *(const struct rsm_lock *const *)a;
	const struct rsm_lock *y = *(const struct rsm_lock *const *)b;

	return x->lkid < y->lkid ? -1 : x->lkid > y->lkid;
}

/* I1 on the loaded table: no two holders with incompatible modes. */
static bool holders_ok(const struct rsm_res *res)
{
	for (int qa = 0; qa < 2; qa++)
		for (const struct rsm_lock *a = res->q[qa].head; a; a = a->next)
			for (int qb = 0; qb < 2; qb++)
				for (const struct rsm_lock *b = res->q[qb].head; b; b = b->next)
					if (a != b && !vmfs_dlm_modes_compatible(a->mode, b->mode))
						return false;
	return true;
}

int tbl_decode(const uint8_t *buf, size_t len, struct rsm_table *t, const char **why)
{
	struct rcur r = { .p = buf, .off = 0, .len = len, .err = 0 };
	uint32_t n;
	bool bad = false;
	int rc = 0;

	tbl_init(t);
	*why = "ok";
	if (get_u32(&r) != TBL_MAGIC)
		BAD("bad table magic");
	if (get_u32(&r) != TBL_VERSION)
		BAD("unsupported table version");
	t->seq = get_u64(&r);
	t->next_lkid = get_u64(&r);
	t->epoch_floor = get_u64(&r);
	t->last_ts = get_u64(&r);
	if (r.err || t->next_lkid == 0)
		BAD("bad table header");

	n = get_u32(&r);
	if (!count_ok(&r, n, DEP_WIRE))
		BAD("bad departed count");
	t->dep = calloc(n ? n : 1, sizeof(*t->dep));
	if (!t->dep) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct rsm_departed *d = &t->dep[i];
		uint8_t st;

		d->nodeid = get_u32(&r);
		st = get_u8(&r);
		get_cstr(&r, d->name, VMFS_DLM_NAME_MAX, &bad);
		d->state = st;
		if (r.err || bad || d->nodeid == 0 || (st != DEP_LEFT && st != DEP_FENCED) ||
		    (i && d->nodeid <= t->dep[i - 1].nodeid))
			BAD("bad departed record");
		t->n_dep++;
	}

	n = get_u32(&r);
	if (!count_ok(&r, n, AGENT_WIRE))
		BAD("bad agent count");
	t->agents = calloc(n ? n : 1, sizeof(*t->agents));
	if (!t->agents) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct rsm_agent *a = &t->agents[i];

		get_cstr(&r, a->ls, VMFS_DLM_NAME_MAX, &bad);
		a->nodeid = get_u32(&r);
		a->client_id = get_u32(&r);
		if (r.err || bad || !a->ls[0] || !a->nodeid || !a->client_id)
			BAD("bad agent record");
		if (i) {
			const struct rsm_agent *p = &t->agents[i - 1];
			int c = strcmp(p->ls, a->ls);

			if (c > 0 || (c == 0 && (p->nodeid > a->nodeid ||
				     (p->nodeid == a->nodeid && p->client_id >= a->client_id))))
				BAD("agents not sorted");
		}
		t->n_agents++;
	}

	n = get_u32(&r);
	if (!count_ok(&r, n, REC_WIRE))
		BAD("bad recovery count");
	t->rec = calloc(n ? n : 1, sizeof(*t->rec));
	if (!t->rec) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct rsm_recov *c = &t->rec[i];
		uint8_t done;

		get_cstr(&r, c->ls, VMFS_DLM_NAME_MAX, &bad);
		c->nodeid = get_u32(&r);
		done = get_u8(&r);
		c->done = done;
		c->agent_node = get_u32(&r);
		c->agent_client = get_u32(&r);
		if (r.err || bad || !c->ls[0] || !c->nodeid || done > 1 ||
		    (c->agent_node == 0) != (c->agent_client == 0))
			BAD("bad recovery record");
		if (i) {
			const struct rsm_recov *p = &t->rec[i - 1];
			int cmp = strcmp(p->ls, c->ls);

			if (cmp > 0 || (cmp == 0 && p->nodeid >= c->nodeid))
				BAD("recoveries not sorted");
		}
		t->n_rec++;
	}

	n = get_u32(&r);
	if (!count_ok(&r, n, RES_WIRE))
		BAD("bad resource count");
	t->res = calloc(n ? n : 1, sizeof(*t->res));
	if (!t->res) {
		rc = -ENOMEM;
		goto out;
	}
	t->cap_res = n ? n : 1;
	for (uint32_t i = 0; i < n; i++) {
		struct rsm_res *res = calloc(1, sizeof(*res));
		uint8_t valid;
		uint32_t nl;

		if (!res) {
			rc = -ENOMEM;
			goto out;
		}
		t->res[t->n_res++] = res;	/* owned by t from here on */
		get_cstr(&r, res->ls, VMFS_DLM_NAME_MAX, &bad);
		get_cstr(&r, res->name, VMFS_DLM_NAME_MAX, &bad);
		res->epoch = get_u64(&r);
		valid = get_u8(&r);
		res->lvb_valid = valid;
		get_bytes(&r, res->lvb, VMFS_DLM_LVB_LEN);
		nl = get_u32(&r);
		if (r.err || bad || !res->ls[0] || !res->name[0] || valid > 1)
			BAD("bad resource record");
		if (i && tbl_res_cmp(t->res[i - 1]->ls, t->res[i - 1]->name,
				     res->ls, res->name) >= 0)
			BAD("resources not sorted");
		if (!count_ok(&r, nl, LOCK_WIRE))
			BAD("bad lock count");
		rc = dec_locks(&r, t, res, nl, why);
		if (rc)
			goto out;
		if (!holders_ok(res))
			BAD("incompatible holders in snapshot");
	}
	if (r.err)
		BAD("truncated table");
	if (t->n_locks)
		qsort(t->locks, t->n_locks, sizeof(*t->locks), lock_cmp);
	for (size_t i = 1; i < t->n_locks; i++)
		if (t->locks[i - 1]->lkid == t->locks[i]->lkid)
			BAD("duplicate lock id");
	if (r.off != len)
		BAD("trailing bytes after table");
out:
	if (rc == -ENOMEM)
		*why = "out of memory";
	if (rc)
		tbl_free(t);
	return rc;
}
