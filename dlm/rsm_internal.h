/* rsm_internal.h — private structures of the replicated lock state machine
 * (rsm.c: membership and sync; rsm_table.c: lock operations and grants;
 * rsm_snapshot.c: the canonical table encoding) and the little-endian
 * cursor family shared with msg.c.
 *
 * Ownership: everything here is touched only from the caller's thread that
 * drives rsm_confchg/rsm_deliver/rsm_tick (the daemon's main loop); the
 * rsm takes no locks.  Fields are marked
 *   [R] replicated: part of the table, identical on every synced host,
 *       encoded in snapshots and covered by rsm_digest();
 *   [L] local: this host's own bookkeeping, never encoded.
 */
#ifndef VMFS_DLM_RSM_INTERNAL_H
#define VMFS_DLM_RSM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>

#include "msg.h"
#include "rsm.h"

#define NAME_WIRE (1 + VMFS_DLM_NAME_MAX)	/* u8 length + 64 bytes */
#define NO_MODE (-1)
#define NQ 3				/* granted, converting, waiting */
#define QIDX(q) ((int)(q) - 1)		/* enum rsm_lock_queue -> array index */

struct rsm_res;

struct rsm_lock {
	uint64_t lkid;			/* [R] assigned from next_lkid at apply time */
	struct rsm_res *res;		/* [R] */
	enum rsm_lock_queue queue;	/* [R] */
	int mode;			/* [R] granted mode, NO_MODE while waiting */
	int rqmode;			/* [R] wanted mode (converting/waiting), else NO_MODE */
	uint64_t epoch;			/* [R] resource epoch of the current grant */
	uint64_t since_ms;		/* [R] ts_ms of the message that granted/queued it */
	uint32_t nodeid;		/* [R] owner's node */
	uint32_t client_id;		/* [R] owner's client on that node; 0 = orphan */
	uint32_t req_id;		/* [R] request id of the pending (or last) op */
	uint32_t pid;			/* [R] */
	uint32_t flags;			/* [R] VMFS_DLM_PERSISTENT ... of the request */
	bool orphan;			/* [R] PERSISTENT lock whose client went away */
	bool recovering;		/* [R] owner incarnation departed; only purge removes it */
	char program[VMFS_DLM_PROG_MAX + 1];	/* [R] */
	char tag[VMFS_DLM_TAG_MAX + 1];		/* [R] */
	struct rsm_lock *prev, *next;	/* [R] position in res->q[queue] (FIFO) */
	int last_bast;			/* [L] last BLOCKING mode sent, NO_MODE if none */
};

struct lqueue {
	struct rsm_lock *head, *tail;
	size_t n;
};

struct rsm_res {
	char ls[VMFS_DLM_NAME_MAX + 1];		/* [R] */
	char name[VMFS_DLM_NAME_MAX + 1];	/* [R] */
	uint64_t epoch;				/* [R] counter: ++ on every grant/transfer */
	bool lvb_valid;				/* [R] */
	uint8_t lvb[VMFS_DLM_LVB_LEN];		/* [R] */
	struct lqueue q[NQ];			/* [R] indexed by QIDX(queue) */
	bool touched;				/* [L] scratch: needs a grant walk */
	size_t touch_idx;			/* [L] scratch: 1 + its place in
						 * rsm_table.touched, 0 if none */
};

enum rsm_dep_state { DEP_LEFT = 1, DEP_FENCED = 2 };

/* A departed node incarnation whose locks are still in the table. */
struct rsm_departed {
	uint32_t nodeid;			/* [R] */
	enum rsm_dep_state state;		/* [R] */
	char name[VMFS_DLM_NAME_MAX + 1];	/* [R] */
	uint64_t left_ms;			/* [L] our clock when we saw it leave (or loaded) */
	bool fenced_sent;			/* [L] we (leader) multicast FENCED this round */
};

struct rsm_agent {				/* all [R] */
	char ls[VMFS_DLM_NAME_MAX + 1];
	uint32_t nodeid;
	uint32_t client_id;
};

struct rsm_recov {				/* all [R] */
	char ls[VMFS_DLM_NAME_MAX + 1];
	uint32_t nodeid;			/* the fenced node */
	bool done;
	uint32_t agent_node, agent_client;	/* 0/0 when none assigned */
};

/* The replicated table.  Everything in it is [R] except the [L] fields
 * named above.  Arrays are kept sorted so that the canonical encoding is a
 * plain walk: resources by (ls, name), locks by lkid, departed by nodeid,
 * agents by (ls, nodeid, client), recoveries by (ls, nodeid). */
struct rsm_table {
	uint64_t seq;			/* table operations applied while synced */
	uint64_t next_lkid;		/* next lock id (starts at 1) */
	uint64_t epoch_floor;		/* highest epoch of any freed resource */
	uint64_t last_ts;		/* ts_ms of the last applied message */
	struct rsm_res **res;
	size_t n_res, cap_res;
	struct rsm_lock **locks;
	size_t n_locks, cap_locks;
	struct rsm_departed *dep;
	size_t n_dep;
	struct rsm_agent *agents;
	size_t n_agents;
	struct rsm_recov *rec;
	size_t n_rec;
	/* Resources marked for a grant walk (res->touched), in marking
	 * order; scratch, empty between operations.  A list, not a scan of
	 * res[]: with 20 000 resources a scan per release cost ~1.6 ms of
	 * cache misses in every daemon (bench-meta). */
	struct rsm_res **touched;
	size_t n_touched, cap_touched;
	bool touch_lost;		/* the list could not grow: scan res[] */
};

struct rsm_member {			/* all [L], from confchg and NODE_INFO */
	uint32_t nodeid;
	char name[VMFS_DLM_NAME_MAX + 1];
	bool got_info;			/* NODE_INFO of this round applied */
	bool synced;
	uint64_t seq;
	uint32_t expected;
};

enum rsm_sync_state {
	SS_IDLE = 0,		/* no round in progress */
	SS_WAIT_INFO,		/* after confchg: collecting NODE_INFO */
	SS_AWAIT_SNAP,		/* after the decision point: buffering until SNAPSHOT */
	SS_BROKEN,		/* snapshot refused: table unusable until next confchg */
};

struct rsm {
	uint32_t nodeid;			/* [L] config */
	char name[VMFS_DLM_NAME_MAX + 1];
	uint32_t expected_cfg;
	uint64_t fence_delay_ms;
	struct rsm_ops ops;
	void *ctx;

	struct rsm_table t;

	struct rsm_member *mem;			/* [L] current membership, sorted */
	size_t n_mem;
	uint32_t members_hash;
	uint32_t expected_eff;			/* max NODE_INFO value at the last decision */
	bool part_quorate;			/* 2 * n_mem > expected_eff */
	bool synced;
	bool quorate;				/* reported: part_quorate && synced */
	enum rsm_sync_state ss;
	uint32_t base;				/* base of the last round */
	uint32_t leader;			/* 0 when there is none */

	struct vmfs_msg *buf;			/* buffered table operations */
	size_t n_buf, cap_buf;
	struct vmfs_msg *disc;			/* our own ops dropped at a decision
						 * point: answered after the load */
	size_t n_disc, cap_disc;
	bool synced_reported;			/* last SYNCED event value */
	uint32_t *dead;				/* our clients whose CLIENT_GONE we saw, */
	size_t n_dead, cap_dead;		/*   sorted; resent if a loaded table */
						/*   still holds their locks */

	uint8_t *snap;				/* snapshot being assembled */
	size_t snap_len;
	uint32_t snap_next, snap_nchunks;

	uint64_t now_ms;			/* last clock value seen */
};

#define SNAPSHOT_CHUNK (256 * 1024)

/* Bounded copy that always terminates (names were length-checked when
 * decoded; this only guards the in-memory arrays). */
static inline void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* rsm_table.c */
void tbl_init(struct rsm_table *t);
void tbl_free(struct rsm_table *t);
struct rsm_lock *tbl_lock_find(const struct rsm_table *t, uint64_t lkid);
bool rsm_can_grant(const struct rsm *r);
void rsm_apply_op(struct rsm *r, const struct vmfs_msg *m);
void rsm_node_departed(struct rsm *r, uint32_t nodeid, const char *name);
void rsm_walk_all(struct rsm *r);
void rsm_check_purges(struct rsm *r);
void rsm_emit(struct rsm *r, const struct rsm_event *ev);
/* The lock belongs to a client of this host that is still connected. */
bool rsm_local_live(const struct rsm *r, const struct rsm_lock *l);
/* Emit an event about lock l (mode: granted mode for GRANTED/LOST, else the
 * requested one; LVB with GRANTED).  No ownership check: callers decide. */
void rsm_ev_lock(struct rsm *r, enum rsm_event_type type, const struct rsm_lock *l,
		 uint32_t req_id, int err, int reason);
/* Emit the answer to operation origin o. */
void rsm_ev_reply(struct rsm *r, enum rsm_event_type type, const struct vmfs_msg_origin *o,
		  uint64_t lkid, int err);
bool rsm_is_member(const struct rsm *r, uint32_t nodeid);
const char *rsm_node_name(const struct rsm *r, uint32_t nodeid);
int tbl_res_cmp(const char *ls1, const char *n1, const char *ls2, const char *n2);
void tbl_link(struct rsm_res *res, struct rsm_lock *l, enum rsm_lock_queue q);
int tbl_add_lock_sorted(struct rsm_table *t, struct rsm_lock *l);

/* rsm_snapshot.c */
int tbl_encode(const struct rsm_table *t, uint8_t **buf, size_t *len);
int tbl_decode(const uint8_t *buf, size_t len, struct rsm_table *out, const char **why);

/* --- little-endian cursors --------------------------------------------- */

struct wcur {
	uint8_t *p;
	size_t off, cap;
	int err;		/* latched -EMSGSIZE on overflow */
};

struct rcur {
	const uint8_t *p;
	size_t off, len;
	int err;		/* latched VMFS_MSG_ELENGTH on underflow */
};

static inline uint8_t *w_room(struct wcur *w, size_t n)
{
	uint8_t *q;

	if (w->err)
		return NULL;
	if (n > w->cap - w->off) {
		w->err = -EMSGSIZE;
		return NULL;
	}
	q = w->p + w->off;
	w->off += n;
	return q;
}

static inline void put_le(struct wcur *w, uint64_t v, size_t n)
{
	uint8_t *q = w_room(w, n);

	if (!q)
		return;
	for (size_t i = 0; i < n; i++)
		q[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_u8(struct wcur *w, uint8_t v) { put_le(w, v, 1); }
static inline void put_u16(struct wcur *w, uint16_t v) { put_le(w, v, 2); }
static inline void put_u32(struct wcur *w, uint32_t v) { put_le(w, v, 4); }
static inline void put_u64(struct wcur *w, uint64_t v) { put_le(w, v, 8); }

static inline void put_bytes(struct wcur *w, const void *b, size_t n)
{
	uint8_t *q = w_room(w, n);

	if (q && n)
		memcpy(q, b, n);
}

/* u8 length + 64 bytes, zero padded.  The in-memory length must agree with
 * the string so that a sender cannot smuggle bytes past the NUL. */
static inline void put_name(struct wcur *w, const struct vmfs_name *n, size_t max)
{
	uint8_t *q;

	if (n->len > max || strnlen(n->s, VMFS_DLM_NAME_MAX + 1) != n->len) {
		if (!w->err)
			w->err = -EINVAL;
		return;
	}
	q = w_room(w, NAME_WIRE);
	if (!q)
		return;
	q[0] = n->len;
	memset(q + 1, 0, VMFS_DLM_NAME_MAX);
	memcpy(q + 1, n->s, n->len);
}

static inline const uint8_t *r_take(struct rcur *r, size_t n)
{
	const uint8_t *q;

	if (r->err || n > r->len - r->off) {
		r->err = VMFS_MSG_ELENGTH;
		return NULL;
	}
	q = r->p + r->off;
	r->off += n;
	return q;
}

static inline uint64_t get_le(struct rcur *r, size_t n)
{
	const uint8_t *q = r_take(r, n);
	uint64_t v = 0;

	if (!q)
		return 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)q[i] << (8 * i);
	return v;
}

static inline uint8_t get_u8(struct rcur *r) { return (uint8_t)get_le(r, 1); }
static inline uint16_t get_u16(struct rcur *r) { return (uint16_t)get_le(r, 2); }
static inline uint32_t get_u32(struct rcur *r) { return (uint32_t)get_le(r, 4); }
static inline uint64_t get_u64(struct rcur *r) { return get_le(r, 8); }

static inline void get_bytes(struct rcur *r, void *b, size_t n)
{
	const uint8_t *q = r_take(r, n);

	if (q)
		memcpy(b, q, n);
	else
		memset(b, 0, n);
}

/* A name longer than max, or with a NUL inside its length (two wire names
 * that would compare equal as C strings), is a field error. */
static inline void get_name(struct rcur *r, struct vmfs_name *n, size_t max, bool *bad)
{
	const uint8_t *q = r_take(r, NAME_WIRE);

	memset(n, 0, sizeof(*n));
	if (!q)
		return;
	if (q[0] > max || memchr(q + 1, 0, q[0])) {
		*bad = true;
		return;
	}
	n->len = q[0];
	memcpy(n->s, q + 1, n->len);
	n->s[n->len] = '\0';
}

/* Plain C strings as names on the wire (u8 length + 64 bytes). */
static inline void put_cstr(struct wcur *w, const char *s, size_t max)
{
	struct vmfs_name n;

	if (strlen(s) > max || vmfs_name_set(&n, s)) {
		if (!w->err)
			w->err = -EINVAL;
		return;
	}
	put_name(w, &n, max);
}

static inline void get_cstr(struct rcur *r, char *dst, size_t max, bool *bad)
{
	struct vmfs_name n;

	get_name(r, &n, max, bad);
	memcpy(dst, n.s, (size_t)n.len + 1);
}

#endif
