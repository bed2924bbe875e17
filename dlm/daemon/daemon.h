/* daemon.h — vmfs-dlmd: the lock manager daemon of one host.
 *
 * The daemon is a thin shell around the replicated state machine (rsm.h):
 *
 *   libvmfsdlm clients --IPC (ipc.c)--> struct dlmd --CPG mcast (cluster.c)-->
 *   corosync agreed order --deliver--> rsm_deliver() --events--> ipc.c --> clients
 *
 * Everything runs in ONE thread, the qb_loop main loop (main.c): corosync
 * dispatch, IPC, timers and signals.  So no field below needs a lock; each is
 * marked with who may write it.  The rsm is only ever fed from the CPG
 * dispatch (agreed order) and the tick timer, never from IPC directly: a
 * client request becomes a CPG message and takes effect when it comes back.
 *
 * Lease (DESIGN.md decision 3): local clients are told valid=1 only while
 *   CPG is joined AND votequorum says quorate AND the rsm says quorate AND
 *   the rsm is synced; valid=0 as soon as any of the four is false.
 * dlmd_lease_update() recomputes it after each input that can change one of
 * them and sends VMFS_IPC_EV_LEASE to every client when it flips.
 *
 * Corosync loss: when a corosync dispatch fails (corosync died or expelled
 * us) the daemon drops all cluster handles, tells clients the lease is lost,
 * ends every local lock with LOST(RESET) and every pending request with
 * VMFS_DLM_ENOQUORUM (the other hosts now treat this host as departed and
 * will fence its locks), and retries the connection every
 * DLMD_RECONNECT_MS.  On success it starts over with a fresh rsm, which
 * joins as a new, unsynced member and receives a snapshot.
 *
 * Table reset (partition merge): the rsm loads the quorate side's snapshot,
 * emits RSM_EV_RESET, then itself tells local clients what changed (LOST,
 * late GRANTED/QUEUED, and REFUSED/DONE with VMFS_DLM_ELOST for our ops that
 * only the replaced table had seen).  ipc.c re-sends such a lost op once
 * instead of failing it, when it still makes sense (resend_lost()).
 *
 * The lease and the lock events come from two corosync streams (votequorum
 * and CPG), so a GRANTED may reach a client shortly before lease=1; clients
 * must gate I/O on the lease, not on grants.
 */
#ifndef VMFS_DLMD_DAEMON_H
#define VMFS_DLMD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <qb/qbipcs.h>
#include <qb/qblist.h>
#include <qb/qbloop.h>

#include "vmfs/dlm.h"
#include "dlm/msg.h"
#include "dlm/rsm.h"
#include "dlm/ipc_proto.h"

/* SCHED_RR priority by default: the lowest real-time one, below corosync's
 * 99 (main.c, set_priority()). */
#define DLMD_DEFAULT_PRIORITY 1
#define DLMD_DEFAULT_CPG_NAME "vmfs-dlm"
#define DLMD_BLACKBOX_SIZE (4 * 1024 * 1024)
#define DLMD_RECONNECT_MS 1000		/* corosync reconnect period */
#define DLMD_TICK_MAX_MS 1000		/* longest sleep between rsm_tick()s */
#define DLMD_SENDQ_MAX 65536		/* CPG messages held while corosync says TRY_AGAIN */
#define DLMD_CLIENT_PENDING_MAX 4096	/* in-flight requests per client */
#ifndef DLMD_CLIENT_BACKLOG_MAX		/* overridable to test the slow-client path */
#define DLMD_CLIENT_BACKLOG_MAX 16384	/* undelivered events per client before we drop it */
#endif
#define DLMD_CLIENT_BAD_LOG 20		/* refused requests logged per connection */
#define DLMD_TOKEN_DEFAULT_MS 3000	/* corosync's own default, if cmap has nothing */

/* Command line / environment.  Written by main.c before the loop starts,
 * read-only afterwards (except the derived timings, see cluster.c). */
struct dlmd_config {
	const char *ipc_name;		/* libqb IPC service name */
	const char *cpg_name;		/* CPG group name (<= CPG_MAX_NAME_LENGTH) */
	const char *group;		/* group allowed to connect, or NULL (root only) */
	gid_t gid;			/* resolved `group` */
	bool have_gid;
	const char *log_file;
	bool foreground;
	bool debug;
	int rr_priority;		/* SCHED_RR priority, 0 = normal scheduling */
	char name[VMFS_DLM_NAME_MAX + 1];	/* this host's name */
	/* 0 = derive from corosync's totem token (cluster.c, at each connect) */
	uint64_t lease_ms_opt;
	uint64_t fence_delay_ms_opt;
	uint32_t warm_interval_us;	/* ring warm-up pacing, 0 = chained (warm.c) */
};

/* One request a client sent that has not reached its final event yet.
 * Owned by its client (client->pending); main loop only. */
struct dlmd_pending {
	struct qb_list_head list;	/* in client->pending, oldest first */
	uint32_t req_id;
	uint64_t lkid;			/* REQUEST: known after QUEUED */
	unsigned resends;		/* times re-sent after a RESET lost it */
	struct vmfs_msg msg;		/* as sent, to re-send after a RESET */
};

/* One event that qb_ipcs_event_send() could not queue yet (client's event
 * ring full).  Owned by client->backlog; main loop only. */
struct dlmd_backlog {
	struct qb_list_head list;
	struct vmfs_ipc_event ev;
};

/* One IPC connection.  Created in connection_created, freed in
 * connection_destroyed (the libqb context pointer points to it); main loop
 * only. */
struct dlmd_client {
	struct qb_list_head list;	/* in dlmd.clients */
	struct dlmd *d;			/* back pointer, not owned */
	qb_ipcs_connection_t *conn;	/* libqb owns it; valid until destroyed */
	uint32_t client_id;		/* never reused within one daemon run */
	pid_t pid;			/* from the connection stats */
	uid_t uid;
	gid_t gid;
	bool hello;			/* HELLO accepted: other requests allowed */
	bool dead;			/* disconnecting: send nothing more */
	uint32_t n_bad;			/* refused requests so far (log rate limit) */
	char program[VMFS_DLM_PROG_MAX + 1];	/* from HELLO */
	struct qb_list_head pending;	/* struct dlmd_pending, owned */
	unsigned n_pending;
	struct qb_list_head backlog;	/* struct dlmd_backlog, owned */
	unsigned n_backlog;
	int lease_sent;			/* last lease value sent (-1 = none) */
	uint64_t warm_until_us;		/* ring warm-up deadline (monotonic), 0 = none */
	uint32_t last_req_id;		/* of the last request sent to the cluster */
	uint32_t warm_mark;		/* last_req_id when the warm-up was asked for */
};

/* A CPG message waiting for corosync to accept it (CS_ERR_TRY_AGAIN). */
struct dlmd_sendq_item {
	struct qb_list_head list;
	size_t len;
	uint8_t buf[];			/* encoded message */
};

struct dlmd {
	struct dlmd_config cfg;		/* main.c; read-only after start */
	qb_loop_t *loop;		/* main.c; owned */
	bool stopping;			/* SIGTERM/SIGINT seen */

	/* --- cluster (cluster.c; main loop only) --- */
	uint32_t nodeid;		/* from cpg_local_get(); 0 before the first connect */
	struct rsm *rsm;		/* owned; NULL while corosync is unreachable */
	cpg_handle_t cpg;		/* 0 when not connected */
	int cpg_fd;			/* -1 when not in the loop */
	bool cpg_joined;		/* our own join was confirmed by a confchg */
	bool cpg_broken;		/* confchg failed inside dispatch: tear down after it */
	votequorum_handle_t vq;		/* 0 when not connected */
	int vq_fd;
	bool vq_quorate;
	uint32_t expected_votes;	/* from votequorum */
	uint32_t token_ms;		/* totem token timeout (cmap) */
	uint32_t consensus_ms;		/* totem consensus timeout (cmap) */
	uint64_t lease_ms;		/* effective T_lease */
	uint64_t fence_delay_ms;	/* effective T_fence */
	uint32_t *members;		/* current CPG members (nodeids), owned */
	size_t n_members;
	qb_loop_timer_handle tick_timer;	/* rsm_tick */
	bool tick_armed;
	qb_loop_timer_handle reconnect_timer;
	bool reconnect_armed;
	unsigned connect_failures;	/* in a row; rate-limits the warning */
	qb_loop_timer_handle sendq_timer;
	bool sendq_armed;
	struct qb_list_head sendq;	/* struct dlmd_sendq_item, owned, FIFO */
	unsigned n_sendq;
	uint64_t n_delivered;		/* statistics */
	uint64_t n_dropped;		/* messages that failed validation */
	uint64_t n_try_again;		/* sends corosync deferred (flow control) */
	int lease;			/* last computed lease (0/1) */
	bool in_reset;			/* between RSM_EV_RESET and the end of that deliver */

	/* --- ring warm-up (warm.c; main loop only) --- */
	bool warm_on;			/* some client asked; NOOPs are being sent */
	bool warm_inflight;		/* a NOOP of ours is on its way round */
	uint32_t warm_seq;		/* NOOPs sent in this warm-up */
	uint64_t warm_sent_us;		/* when the last one was sent */
	qb_loop_timer_handle warm_timer;
	bool warm_timer_armed;
	uint64_t n_warm_requests;	/* statistics */
	uint64_t n_warm_noops;		/* NOOPs we sent */
	uint64_t n_noops_seen;		/* NOOPs delivered, every sender's */
	uint64_t n_warm_by_request;	/* client warm-ups ended by its request */
	uint64_t n_warm_by_gone;	/* ... by its disconnection */

	/* --- IPC (ipc.c; main loop only) --- */
	qb_ipcs_service_t *ipcs;	/* owned */
	struct qb_list_head clients;	/* struct dlmd_client, owned via libqb */
	unsigned n_clients;
	uint32_t next_client_id;	/* monotonic; 0 is never used */
};

/* main.c */
void dlmd_stop(struct dlmd *d);
uint64_t dlmd_now_ms(void);	/* monotonic, for the rsm */

/* cluster.c */
int dlmd_cluster_start(struct dlmd *d) __attribute__((warn_unused_result));
void dlmd_cluster_stop(struct dlmd *d);
/* Encode and multicast m (sender fields filled in here).  0, or
 * VMFS_DLM_ENOQUORUM when not connected, or -errno. */
int dlmd_cluster_send(struct dlmd *d, struct vmfs_msg *m) __attribute__((warn_unused_result));
bool dlmd_cluster_connected(const struct dlmd *d);
void dlmd_lease_update(struct dlmd *d);

/* warm.c: the ring warm-up (vmfs_dlm_warm).  request: 0, -EINVAL (ms too
 * large), VMFS_DLM_ENOQUORUM.  delivered: a NOOP came back (any sender).
 * client_done: a request c sent after asking was applied, or c is going.  reset: corosync
 * connection closed. */
int dlmd_warm_request(struct dlmd *d, struct dlmd_client *c, uint32_t ms)
	__attribute__((warn_unused_result));
void dlmd_warm_delivered(struct dlmd *d, const struct vmfs_msg *m);
void dlmd_warm_client_done(struct dlmd_client *c, bool gone);
void dlmd_warm_reset(struct dlmd *d);

/* ipc.c */
int dlmd_ipc_start(struct dlmd *d) __attribute__((warn_unused_result));
void dlmd_ipc_stop(struct dlmd *d);
/* rsm events for local clients (called from the rsm's ops.event). */
void dlmd_ipc_rsm_event(struct dlmd *d, const struct rsm_event *ev);
/* Send the lease event to every client whose last value differs. */
void dlmd_ipc_lease_broadcast(struct dlmd *d, int valid);
/* Corosync lost: end every local lock and request (see daemon.h top). */
void dlmd_ipc_cluster_lost(struct dlmd *d, const struct rsm *old);

/* query.c: build the QUERY answer.  *out is malloc'ed (JSON, or text for
 * "log"); 0, -EINVAL for an unknown `what`, -ENOMEM. */
int dlmd_query(struct dlmd *d, const char *what, const char *arg, char **out, size_t *len)
	__attribute__((warn_unused_result));

#endif
