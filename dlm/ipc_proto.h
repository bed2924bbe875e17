/* ipc_proto.h — libvmfsdlm <-> vmfs-dlmd over libqb IPC (same host).
 *
 * Requests use qb_ipcc_sendv_recv(): every request gets an immediate
 * response {hdr, error, ...} saying whether the daemon accepted it (local
 * validation: sizes, names, modes, ownership).  Lock outcomes arrive later
 * as events (qb_ipcs_event_send) carrying the client's req_id: the outcome
 * of a lock operation is decided only when its CPG message is applied.
 *
 * Both sides are the same build on the same host, so structs travel as
 * they are, but every field is still checked by the daemon: the header's
 * size must equal the struct size for its id, strings must be
 * NUL-terminated within their arrays, modes <= EX.  The first request of a
 * connection must be HELLO with the matching VMFS_IPC_VERSION.
 */
#ifndef VMFS_DLM_IPC_PROTO_H
#define VMFS_DLM_IPC_PROTO_H

#include <stdint.h>
#include <qb/qbipc_common.h>

#include "vmfs/dlm.h"

#define VMFS_IPC_DEFAULT_NAME "vmfs-dlm"
#define VMFS_IPC_VERSION 1
#define VMFS_IPC_MAX_MSG (4 * 1024 * 1024)	/* largest response (a lock table) */

enum vmfs_ipc_req_id {
	VMFS_IPC_HELLO = 1,
	VMFS_IPC_LOCK,
	VMFS_IPC_CONVERT,
	VMFS_IPC_UNLOCK,
	VMFS_IPC_CANCEL,
	VMFS_IPC_TRANSFER,
	VMFS_IPC_RECOVERY_REG,
	VMFS_IPC_RECOVERY_DONE,
	VMFS_IPC_QUERY,
	VMFS_IPC_TRANSFER_SET,		/* appended: ids are never renumbered */
	VMFS_IPC_WARM,
	VMFS_IPC_REQ_MAX
};

enum vmfs_ipc_event_id {
	VMFS_IPC_EV_QUEUED = 100,	/* req applied, waiting; lkid known */
	VMFS_IPC_EV_GRANTED,
	VMFS_IPC_EV_REFUSED,
	VMFS_IPC_EV_DONE,
	VMFS_IPC_EV_BLOCKING,
	VMFS_IPC_EV_LOST,
	VMFS_IPC_EV_RECOVER,
	VMFS_IPC_EV_LEASE,
};

struct vmfs_ipc_hello {
	struct qb_ipc_request_header hdr;
	uint32_t version;
	char program[VMFS_DLM_PROG_MAX + 1];
};

struct vmfs_ipc_lock {
	struct qb_ipc_request_header hdr;
	uint32_t req_id;
	uint32_t mode;
	uint32_t flags;
	char ls[VMFS_DLM_NAME_MAX + 1];
	char res[VMFS_DLM_NAME_MAX + 1];
	char tag[VMFS_DLM_TAG_MAX + 1];
};

struct vmfs_ipc_convert {
	struct qb_ipc_request_header hdr;
	uint32_t req_id;
	uint32_t mode;
	uint32_t flags;
	uint64_t lkid;
	uint8_t lvb[VMFS_DLM_LVB_LEN];
};

/* UNLOCK (flags, lvb) and CANCEL (lkid only) */
struct vmfs_ipc_unlock {
	struct qb_ipc_request_header hdr;
	uint32_t req_id;
	uint32_t flags;
	uint64_t lkid;
	uint8_t lvb[VMFS_DLM_LVB_LEN];
};

struct vmfs_ipc_transfer {
	struct qb_ipc_request_header hdr;
	uint32_t req_id;
	uint64_t from_lkid;
	uint64_t from_epoch;
	uint64_t to_lkid;
};

/* TRANSFER_SET: n (1..VMFS_DLM_TRANSFER_SET_MAX) triples, all or nothing;
 * entries past n must be zero.  Answered by one DONE. */
struct vmfs_ipc_transfer_set {
	struct qb_ipc_request_header hdr;
	uint32_t req_id;
	uint32_t n;
	struct vmfs_dlm_transfer x[VMFS_DLM_TRANSFER_SET_MAX];
};

/* WARM: keep the totem ring busy for ms (0 = stop; <= VMFS_DLM_WARM_MAX_MS);
 * flags must be 0.  Only the immediate response: no event follows. */
struct vmfs_ipc_warm {
	struct qb_ipc_request_header hdr;
	uint32_t ms;
	uint32_t flags;
};

/* RECOVERY_REG (ls) and RECOVERY_DONE (ls, nodeid) */
struct vmfs_ipc_recovery {
	struct qb_ipc_request_header hdr;
	uint32_t req_id;
	uint32_t nodeid;
	char ls[VMFS_DLM_NAME_MAX + 1];
};

struct vmfs_ipc_query {
	struct qb_ipc_request_header hdr;
	char what[16];			/* "status", "locks", "log" */
	char arg[VMFS_DLM_NAME_MAX + 1];	/* lockspace filter or "" */
};

/* Response to every request.  For HELLO: nodeid, client_id, name.  For
 * QUERY: `len` bytes of JSON (or text) follow the struct. */
struct vmfs_ipc_response {
	struct qb_ipc_response_header hdr;	/* hdr.error = 0 or negative code */
	uint32_t nodeid;
	uint32_t client_id;
	char name[VMFS_DLM_NAME_MAX + 1];
	uint32_t len;
	/* followed by len bytes for QUERY */
};

/* Every event. */
struct vmfs_ipc_event {
	struct qb_ipc_response_header hdr;	/* hdr.id = enum vmfs_ipc_event_id */
	uint32_t req_id;
	int32_t err;
	uint64_t lkid;
	uint64_t epoch;
	int32_t mode;
	int32_t reason;
	uint32_t lvb_valid;
	uint8_t lvb[VMFS_DLM_LVB_LEN];
	uint32_t nodeid;			/* RECOVER: node; LEASE: valid (0/1) */
	char ls[VMFS_DLM_NAME_MAX + 1];		/* RECOVER */
};

#endif
