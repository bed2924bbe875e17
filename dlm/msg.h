/* msg.h — the cluster messages of vmfs-dlmd (CPG wire format).
 *
 * Every lock operation is one message multicast in CPG agreed order; every
 * daemon applies the same messages in the same order (rsm.c).  Format:
 * little-endian, packed by explicit encode/decode (never by casting a
 * struct onto the wire), a fixed header, a type-specific body, a size cap.
 *
 *   header (32 bytes)
 *     0  u32 magic     VMFS_MSG_MAGIC
 *     4  u16 version   VMFS_MSG_VERSION (receivers drop other versions)
 *     6  u16 type      enum vmfs_msg_type (append only; never renumber)
 *     8  u32 length    whole message, header included
 *    12  u32 nodeid    sender as it claims; must equal CPG's sender
 *    16  u64 ts_ms     sender's wall clock (shown as "since"; never used for decisions)
 *    24  u32 crc       CRC32C of the whole message with this field zero
 *    28  u32 reserved  zero
 *
 * Names travel as u8 length + 64 bytes (zero padded): names may be exactly
 * 64 bytes long, so no terminating NUL on the wire.
 *
 * Validation in vmfs_msg_decode(): magic, version, length (== received
 * bytes, <= VMFS_MSG_MAX, >= the type's fixed size), type known, crc,
 * name lengths <= 64, modes <= EX, sender nodeid == CPG sender.  A message
 * that fails is logged and dropped by the caller; it never reaches rsm.
 */
#ifndef VMFS_DLM_MSG_H
#define VMFS_DLM_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "vmfs/dlm.h"

#define VMFS_MSG_MAGIC 0x4d4c4456u	/* "VDLM" little-endian */
#define VMFS_MSG_VERSION 1
#define VMFS_MSG_HDR_LEN 32
#define VMFS_MSG_MAX (1024 * 1024)	/* snapshot chunks stay under this */
#define VMFS_MSG_NODES_MAX 64

enum vmfs_msg_type {
	VMFS_MSG_NODE_INFO = 1,		/* sent by every member after each confchg */
	VMFS_MSG_REQUEST = 2,		/* new lock request (or ADOPT) */
	VMFS_MSG_CONVERT = 3,
	VMFS_MSG_RELEASE = 4,
	VMFS_MSG_CANCEL = 5,
	VMFS_MSG_TRANSFER = 6,
	VMFS_MSG_CLIENT_GONE = 7,	/* a client of the sender disconnected */
	VMFS_MSG_RECOVERY_REG = 8,	/* client becomes recovery agent of a lockspace */
	VMFS_MSG_RECOVERY_DONE = 9,	/* agent finished replaying a dead node */
	VMFS_MSG_FENCED = 10,		/* leader: fence delay of a departed node passed */
	VMFS_MSG_SNAPSHOT = 11,		/* one chunk of a table snapshot */
	VMFS_MSG_TRANSFER_SET = 12,	/* several TRANSFERs, all or nothing */
	VMFS_MSG_NOOP = 13,		/* ring warm-up traffic: never reaches the rsm */
	VMFS_MSG_TYPE_MAX
};

struct vmfs_name {
	uint8_t len;
	char s[VMFS_DLM_NAME_MAX + 1];	/* NUL-terminated in memory */
};

/* Who asked: every operation names the client (daemon-local id, never
 * reused within one daemon incarnation) and its request id, so the
 * origin daemon can route the outcome back. */
struct vmfs_msg_origin {
	uint32_t client_id;
	uint32_t req_id;
};

struct vmfs_msg_node_info {
	uint32_t expected_votes;	/* from votequorum */
	uint8_t synced;			/* sender's table is authoritative */
	uint64_t seq;			/* messages applied while synced (rsm.c) */
	uint32_t members_hash;		/* hash of the membership the sender saw */
	struct vmfs_name name;		/* host name */
};

struct vmfs_msg_request {
	struct vmfs_msg_origin o;
	uint32_t pid;
	uint8_t mode;
	uint32_t flags;			/* VMFS_DLM_NOQUEUE | PERSISTENT | ADOPT */
	struct vmfs_name ls;
	struct vmfs_name res;
	struct vmfs_name program;	/* len <= VMFS_DLM_PROG_MAX */
	struct vmfs_name tag;		/* len <= VMFS_DLM_TAG_MAX */
};

struct vmfs_msg_convert {
	struct vmfs_msg_origin o;
	uint64_t lkid;
	uint8_t mode;
	uint32_t flags;			/* NOQUEUE, VALBLK */
	uint8_t lvb[VMFS_DLM_LVB_LEN];	/* written on down-convert from PW/EX with VALBLK */
};

struct vmfs_msg_release {
	struct vmfs_msg_origin o;
	uint64_t lkid;
	uint32_t flags;			/* VALBLK */
	uint8_t lvb[VMFS_DLM_LVB_LEN];
};

struct vmfs_msg_cancel {
	struct vmfs_msg_origin o;
	uint64_t lkid;
};

struct vmfs_msg_transfer {
	struct vmfs_msg_origin o;
	uint64_t from_lkid;
	uint64_t from_epoch;
	uint64_t to_lkid;
};

/* TRANSFER_SET body: origin, u32 count (1..VMFS_MSG_XSET_MAX), then count
 * triples of u64 (from_lkid, from_epoch, to_lkid).  The message length is
 * the fixed part plus 24 bytes per triple (bytes after them are tolerated,
 * as for every type). */
#define VMFS_MSG_XSET_MAX 16

struct vmfs_msg_xfer {
	uint64_t from_lkid;
	uint64_t from_epoch;
	uint64_t to_lkid;
};

struct vmfs_msg_transfer_set {
	struct vmfs_msg_origin o;
	uint32_t n;
	struct vmfs_msg_xfer x[VMFS_MSG_XSET_MAX];
};

/* NOOP: keeps the totem ring busy while a client expects to send a
 * latency-critical request soon (vmfs_dlm_warm(), daemon/warm.c).  Every
 * daemon validates it like any message and then drops it before the rsm:
 * it changes no state and is not counted in the rsm's seq.  seq numbers the
 * sender's warm-up messages (for the log). */
struct vmfs_msg_noop {
	uint32_t seq;
};

struct vmfs_msg_client_gone {
	uint32_t client_id;
};

struct vmfs_msg_recovery {
	struct vmfs_msg_origin o;
	struct vmfs_name ls;
	uint32_t nodeid;		/* RECOVERY_DONE: the recovered node */
	uint8_t on;			/* RECOVERY_REG: 1 register, 0 unregister */
};

struct vmfs_msg_fenced {
	uint32_t nodeid;
};

struct vmfs_msg_snapshot {
	uint32_t members_hash;		/* the membership at the decision point */
	uint32_t chunk;			/* 0 .. nchunks-1 */
	uint32_t nchunks;
	uint32_t len;			/* bytes of data in this chunk */
	const uint8_t *data;		/* points into the received buffer */
};

struct vmfs_msg {
	uint16_t type;
	uint32_t nodeid;	/* sender */
	uint64_t ts_ms;
	union {
		struct vmfs_msg_node_info node_info;
		struct vmfs_msg_request request;
		struct vmfs_msg_convert convert;
		struct vmfs_msg_release release;
		struct vmfs_msg_cancel cancel;
		struct vmfs_msg_transfer transfer;
		struct vmfs_msg_client_gone client_gone;
		struct vmfs_msg_recovery recovery;	/* REG and DONE */
		struct vmfs_msg_fenced fenced;
		struct vmfs_msg_snapshot snapshot;
		struct vmfs_msg_transfer_set transfer_set;
		struct vmfs_msg_noop noop;
	} u;
};

/* Encode m into buf (capacity cap).  Returns the encoded length, or
 * -EMSGSIZE / -EINVAL.  The header's crc is filled in. */
int vmfs_msg_encode(const struct vmfs_msg *m, uint8_t *buf, size_t cap)
	__attribute__((warn_unused_result));

/* Decode and validate buf (len bytes received from CPG sender cpg_nodeid;
 * pass 0 to skip the sender check, e.g. in fuzz tests).  Returns 0 or a
 * negative VMFS_MSG_E* code; *why gets a static explanation for the log.
 * Snapshot data points into buf: keep buf alive while using it. */
int vmfs_msg_decode(const uint8_t *buf, size_t len, uint32_t cpg_nodeid,
		    struct vmfs_msg *m, const char **why)
	__attribute__((warn_unused_result));

#define VMFS_MSG_EMAGIC   (-5001)
#define VMFS_MSG_EVERSION (-5002)
#define VMFS_MSG_ELENGTH  (-5003)
#define VMFS_MSG_ETYPE    (-5004)
#define VMFS_MSG_ECRC     (-5005)
#define VMFS_MSG_EFIELD   (-5006)
#define VMFS_MSG_ESENDER  (-5007)

const char *vmfs_msg_type_name(unsigned type);
int vmfs_name_set(struct vmfs_name *n, const char *s);	/* -ENAMETOOLONG if > 64 */

#endif
