/* rsm.h — the replicated lock state machine (DESIGN.md decision 1).
 *
 * One `struct rsm` per host holds that host's copy of the cluster lock table.
 * It is pure: no corosync, no IPC, no clock of its own.  The caller (the
 * daemon, or the simulator in tests/unit) feeds it, in CPG agreed order:
 *   - rsm_confchg()  membership changes (members after, left, joined);
 *   - rsm_deliver()  every decoded, validated message (msg.h);
 * and calls rsm_tick() now and then with its monotonic clock.  Because every
 * host applies the same inputs in the same order, grant decisions are
 * deterministic and identical everywhere.  The rsm talks back through
 * rsm_ops: events for *local* clients (grant, blocking, lost, ...) and
 * messages it wants multicast (NODE_INFO, SNAPSHOT, FENCED).
 *
 * Sync (joins and partition merges) — see the state table in rsm.c:
 *   after every confchg each member multicasts NODE_INFO {synced, seq,
 *   members_hash}.  When NODE_INFO of every current member has been applied
 *   (the *decision point*, the same stream position on every host):
 *     - if some member is synced: base = the lowest synced member;
 *     - else: base = highest seq, ties to the lowest nodeid.
 *   Every member that is not identical to the base (not synced, or all but
 *   the base when none is) clears its table and buffers later messages; the
 *   base encodes its table *at the decision point* and multicasts it as
 *   SNAPSHOT chunks; a receiver loads it and replays the buffered messages.
 *   When the partition is quorate at the decision point, everybody ends up
 *   synced.  A synced host whose partition loses quorum becomes unsynced.
 *   A confchg during a sync restarts the round.
 *
 * Quorum is computed from the daemon membership: quorate iff
 * 2 * members > expected_votes (max of the NODE_INFO values seen).  Without
 * quorum nothing is granted and nobody is purged.
 *
 * Departure: locks of a node that left stay granted, marked recovering; its
 * waiting and converting requests are dropped.  The leader (lowest synced
 * member of a quorate partition) multicasts FENCED{node} once fence_delay_ms
 * has passed on its own clock since it saw the departure.  After FENCED the
 * lockspaces where the node held locks need recovery: the lowest member with
 * a registered recovery agent for the lockspace gets RSM_EV_RECOVER; a
 * lockspace with no agent anywhere is done at once.  When every lockspace
 * reported RECOVERY_DONE, the node's locks are purged (LVBs of PW/EX locks
 * marked invalid) and waiting requests are granted.
 */
#ifndef VMFS_DLM_RSM_H
#define VMFS_DLM_RSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct rsm;

enum rsm_event_type {
	RSM_EV_QUEUED = 1,	/* local request applied, waiting: lkid known */
	RSM_EV_GRANTED,		/* local request/convert granted (also TRANSFER target, ADOPT) */
	RSM_EV_REFUSED,		/* local request/convert ended without grant: err */
	RSM_EV_DONE,		/* local release/cancel/transfer/recovery op applied: err */
	RSM_EV_BLOCKING,	/* local granted lock blocks a request for `mode` */
	RSM_EV_LOST,		/* local lock gone without release: reason */
	RSM_EV_RECOVER,		/* local agent client must recover `nodeid` in `ls` */
	RSM_EV_QUORUM,		/* quorate changed: `quorate` */
	RSM_EV_RESET,		/* table replaced by a snapshot: reconcile local clients */
	RSM_EV_SYNCED,		/* this host became synced (or not): `synced` */
};

struct rsm_event {
	enum rsm_event_type type;
	uint32_t client_id;	/* local client concerned (0 for host-wide events) */
	uint32_t req_id;	/* the request this answers (0 if none) */
	uint64_t lkid;
	uint64_t epoch;
	int mode;		/* granted mode, or wanted mode for BLOCKING */
	int err;		/* 0 or VMFS_DLM_E* / -errno */
	int reason;		/* LOST: enum vmfs_dlm_lost_reason */
	bool lvb_valid;
	uint8_t lvb[VMFS_DLM_LVB_LEN];
	const char *ls;		/* RECOVER */
	uint32_t nodeid;	/* RECOVER */
	bool quorate;		/* QUORUM */
	bool synced;		/* SYNCED */
};

struct rsm_ops {
	/* An event for a local client or the local host. */
	void (*event)(void *ctx, const struct rsm_event *ev);
	/* Multicast this message (the caller encodes and sends it; the rsm sees
	 * it again only when it is delivered). */
	void (*send)(void *ctx, const struct vmfs_msg *m);
};

struct rsm_config {
	uint32_t nodeid;		/* this host */
	const char *name;		/* this host's name */
	uint32_t expected_votes;	/* from votequorum; >= 1 */
	uint64_t fence_delay_ms;	/* T_fence (decision 3) */
};

struct rsm *rsm_new(const struct rsm_config *cfg, const struct rsm_ops *ops, void *ctx);
void rsm_free(struct rsm *r);

/* Membership change, in agreed order with the messages.  Arrays of nodeids. */
void rsm_confchg(struct rsm *r, const uint32_t *members, size_t n_members,
		 const uint32_t *left, size_t n_left,
		 const uint32_t *joined, size_t n_joined, uint64_t now_ms);

/* Apply one validated message (sender = m->nodeid). */
void rsm_deliver(struct rsm *r, const struct vmfs_msg *m, uint64_t now_ms);

/* Timers: the leader sends FENCED when a departed node's delay has passed.
 * Returns the ms until the next deadline (or -1 if none). */
int64_t rsm_tick(struct rsm *r, uint64_t now_ms);

/* Update expected votes from votequorum (sent with the next NODE_INFO). */
void rsm_set_expected_votes(struct rsm *r, uint32_t votes);

/* --- Inspection (read-only; valid until the next deliver/confchg) --- */

bool rsm_quorate(const struct rsm *r);
bool rsm_synced(const struct rsm *r);
uint64_t rsm_seq(const struct rsm *r);

enum rsm_node_state { RSM_NODE_MEMBER = 1, RSM_NODE_LEFT, RSM_NODE_FENCED };

struct rsm_node_view {
	uint32_t nodeid;
	const char *name;
	enum rsm_node_state state;
	bool synced;		/* from its last NODE_INFO */
};

enum rsm_lock_queue { RSM_Q_GRANTED = 1, RSM_Q_CONVERTING, RSM_Q_WAITING };

struct rsm_lock_view {
	uint64_t lkid;
	enum rsm_lock_queue queue;
	int mode;		/* granted mode (-1 while waiting) */
	int rqmode;		/* requested mode (converting/waiting), else -1 */
	uint64_t epoch;		/* of the current grant; 0 if never granted */
	uint32_t nodeid;
	const char *node_name;
	uint32_t client_id;	/* 0 when orphaned */
	uint32_t pid;
	const char *program;
	const char *tag;
	uint64_t since_ms;	/* wall clock of the grant (or of the request) */
	uint32_t flags;		/* VMFS_DLM_PERSISTENT ... */
	bool orphan;
	bool recovering;	/* holder's node left; awaiting fence + recovery */
};

struct rsm_resource_view {
	const char *ls;
	const char *name;
	uint64_t epoch;		/* resource counter */
	bool lvb_valid;
	uint8_t lvb[VMFS_DLM_LVB_LEN];
	size_t n_locks;
	const struct rsm_lock_view *locks;	/* granted, then converting, then waiting, FIFO */
};

/* Visit nodes / resources (sorted by lockspace, then name). */
void rsm_foreach_node(const struct rsm *r,
		      void (*fn)(void *arg, const struct rsm_node_view *v), void *arg);
void rsm_foreach_resource(const struct rsm *r, const char *ls_filter,
			  void (*fn)(void *arg, const struct rsm_resource_view *v), void *arg);
/* One lock by id; false if unknown. */
bool rsm_lock_lookup(const struct rsm *r, uint64_t lkid, struct rsm_lock_view *out);
/* Lockspaces awaiting recovery of a node: visit (ls, nodeid, agent nodeid). */
void rsm_foreach_recovery(const struct rsm *r,
			  void (*fn)(void *arg, const char *ls, uint32_t nodeid,
				     uint32_t agent_node), void *arg);

/* Canonical encoding of the table (the snapshot body); two hosts with
 * equal tables produce identical bytes.  Caller frees *buf. */
int rsm_encode_table(const struct rsm *r, uint8_t **buf, size_t *len);
/* 64-bit digest of rsm_encode_table(): cheap equality check for tests. */
uint64_t rsm_digest(const struct rsm *r);

#endif
