/* test-msg.c — the CPG wire format (dlm/msg.c) and the mode helpers
 * (dlm/modes.c): round trip of every message type, every validation error
 * with its distinct code, and a fuzz loop that must never crash.
 *
 * Plain C: exit 0 = pass, 1 = fail.  The fuzz seed is printed; TEST_SEED=n
 * replays it, TEST_FUZZ_ITERS=n changes the iteration count.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crc32c.h"
#include "msg.h"
#include "vmfs/dlm.h"

static int failures;

#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		failures++;						\
		fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
	}								\
} while (0)

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: small, fast, reproducible across platforms */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static uint32_t rndn(uint32_t n)
{
	return n ? (uint32_t)(rnd() % n) : 0;
}

/* Independent of msg.c: the header layout as documented in msg.h. */
static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void fix_crc(uint8_t *buf, size_t len)
{
	wr32(buf + 24, 0);
	wr32(buf + 24, crc32c(0, buf, len));
}

static void rnd_name(struct vmfs_name *n, size_t max)
{
	char s[VMFS_DLM_NAME_MAX + 1];
	size_t len = rndn((uint32_t)max + 1);

	for (size_t i = 0; i < len; i++)
		s[i] = (char)('a' + rndn(26));
	s[len] = '\0';
	if (vmfs_name_set(n, s))
		abort();
}

static uint8_t snap_data[300];

static void make_msg(struct vmfs_msg *m, unsigned type)
{
	memset(m, 0, sizeof(*m));
	m->type = (uint16_t)type;
	m->nodeid = 1 + rndn(100);
	m->ts_ms = rnd();
	switch (type) {
	case VMFS_MSG_NODE_INFO:
		m->u.node_info.expected_votes = rndn(9);
		m->u.node_info.synced = (uint8_t)rndn(2);
		m->u.node_info.seq = rnd();
		m->u.node_info.members_hash = (uint32_t)rnd();
		rnd_name(&m->u.node_info.name, VMFS_DLM_NAME_MAX);
		break;
	case VMFS_MSG_REQUEST:
		m->u.request.o.client_id = (uint32_t)rnd();
		m->u.request.o.req_id = (uint32_t)rnd();
		m->u.request.pid = (uint32_t)rnd();
		m->u.request.mode = (uint8_t)rndn(6);
		m->u.request.flags = (uint32_t)rndn(32);
		rnd_name(&m->u.request.ls, VMFS_DLM_NAME_MAX);
		rnd_name(&m->u.request.res, VMFS_DLM_NAME_MAX);
		rnd_name(&m->u.request.program, VMFS_DLM_PROG_MAX);
		rnd_name(&m->u.request.tag, VMFS_DLM_TAG_MAX);
		break;
	case VMFS_MSG_CONVERT:
		m->u.convert.o.client_id = (uint32_t)rnd();
		m->u.convert.o.req_id = (uint32_t)rnd();
		m->u.convert.lkid = rnd();
		m->u.convert.mode = (uint8_t)rndn(6);
		m->u.convert.flags = (uint32_t)rndn(32);
		for (int i = 0; i < VMFS_DLM_LVB_LEN; i++)
			m->u.convert.lvb[i] = (uint8_t)rnd();
		break;
	case VMFS_MSG_RELEASE:
		m->u.release.o.client_id = (uint32_t)rnd();
		m->u.release.o.req_id = (uint32_t)rnd();
		m->u.release.lkid = rnd();
		m->u.release.flags = (uint32_t)rndn(32);
		for (int i = 0; i < VMFS_DLM_LVB_LEN; i++)
			m->u.release.lvb[i] = (uint8_t)rnd();
		break;
	case VMFS_MSG_CANCEL:
		m->u.cancel.o.client_id = (uint32_t)rnd();
		m->u.cancel.o.req_id = (uint32_t)rnd();
		m->u.cancel.lkid = rnd();
		break;
	case VMFS_MSG_TRANSFER:
		m->u.transfer.o.client_id = (uint32_t)rnd();
		m->u.transfer.o.req_id = (uint32_t)rnd();
		m->u.transfer.from_lkid = rnd();
		m->u.transfer.from_epoch = rnd();
		m->u.transfer.to_lkid = rnd();
		break;
	case VMFS_MSG_CLIENT_GONE:
		m->u.client_gone.client_id = (uint32_t)rnd();
		break;
	case VMFS_MSG_TRANSFER_SET:
		m->u.transfer_set.o.client_id = (uint32_t)rnd();
		m->u.transfer_set.o.req_id = (uint32_t)rnd();
		m->u.transfer_set.n = 1 + rndn(VMFS_MSG_XSET_MAX);
		for (uint32_t i = 0; i < m->u.transfer_set.n; i++) {
			m->u.transfer_set.x[i].from_lkid = rnd();
			m->u.transfer_set.x[i].from_epoch = rnd();
			m->u.transfer_set.x[i].to_lkid = rnd();
		}
		break;
	case VMFS_MSG_RECOVERY_REG:
	case VMFS_MSG_RECOVERY_DONE:
		m->u.recovery.o.client_id = (uint32_t)rnd();
		m->u.recovery.o.req_id = (uint32_t)rnd();
		rnd_name(&m->u.recovery.ls, VMFS_DLM_NAME_MAX);
		m->u.recovery.nodeid = (uint32_t)rnd();
		m->u.recovery.on = (uint8_t)rndn(2);
		break;
	case VMFS_MSG_FENCED:
		m->u.fenced.nodeid = 1 + rndn(1000);
		break;
	case VMFS_MSG_SNAPSHOT:
		m->u.snapshot.members_hash = (uint32_t)rnd();
		m->u.snapshot.nchunks = 1 + rndn(5);
		m->u.snapshot.chunk = rndn(m->u.snapshot.nchunks);
		m->u.snapshot.len = rndn(sizeof(snap_data) + 1);
		for (size_t i = 0; i < sizeof(snap_data); i++)
			snap_data[i] = (uint8_t)rnd();
		m->u.snapshot.data = snap_data;
		break;
	case VMFS_MSG_NOOP:
		m->u.noop.seq = (uint32_t)rnd();
		break;
	default:
		abort();
	}
}

static bool name_eq(const struct vmfs_name *a, const struct vmfs_name *b)
{
	return a->len == b->len && memcmp(a->s, b->s, a->len) == 0 && b->s[b->len] == '\0';
}

static bool origin_eq(const struct vmfs_msg_origin *a, const struct vmfs_msg_origin *b)
{
	return a->client_id == b->client_id && a->req_id == b->req_id;
}

static bool msg_eq(const struct vmfs_msg *a, const struct vmfs_msg *b)
{
	if (a->type != b->type || a->nodeid != b->nodeid || a->ts_ms != b->ts_ms)
		return false;
	switch (a->type) {
	case VMFS_MSG_NODE_INFO: {
		const struct vmfs_msg_node_info *x = &a->u.node_info, *y = &b->u.node_info;

		return x->expected_votes == y->expected_votes && x->synced == y->synced &&
		       x->seq == y->seq && x->members_hash == y->members_hash &&
		       name_eq(&x->name, &y->name);
	}
	case VMFS_MSG_REQUEST: {
		const struct vmfs_msg_request *x = &a->u.request, *y = &b->u.request;

		return origin_eq(&x->o, &y->o) && x->pid == y->pid && x->mode == y->mode &&
		       x->flags == y->flags && name_eq(&x->ls, &y->ls) &&
		       name_eq(&x->res, &y->res) && name_eq(&x->program, &y->program) &&
		       name_eq(&x->tag, &y->tag);
	}
	case VMFS_MSG_CONVERT: {
		const struct vmfs_msg_convert *x = &a->u.convert, *y = &b->u.convert;

		return origin_eq(&x->o, &y->o) && x->lkid == y->lkid && x->mode == y->mode &&
		       x->flags == y->flags && memcmp(x->lvb, y->lvb, sizeof(x->lvb)) == 0;
	}
	case VMFS_MSG_RELEASE: {
		const struct vmfs_msg_release *x = &a->u.release, *y = &b->u.release;

		return origin_eq(&x->o, &y->o) && x->lkid == y->lkid && x->flags == y->flags &&
		       memcmp(x->lvb, y->lvb, sizeof(x->lvb)) == 0;
	}
	case VMFS_MSG_CANCEL:
		return origin_eq(&a->u.cancel.o, &b->u.cancel.o) &&
		       a->u.cancel.lkid == b->u.cancel.lkid;
	case VMFS_MSG_TRANSFER: {
		const struct vmfs_msg_transfer *x = &a->u.transfer, *y = &b->u.transfer;

		return origin_eq(&x->o, &y->o) && x->from_lkid == y->from_lkid &&
		       x->from_epoch == y->from_epoch && x->to_lkid == y->to_lkid;
	}
	case VMFS_MSG_CLIENT_GONE:
		return a->u.client_gone.client_id == b->u.client_gone.client_id;
	case VMFS_MSG_TRANSFER_SET: {
		const struct vmfs_msg_transfer_set *x = &a->u.transfer_set, *y = &b->u.transfer_set;

		if (!origin_eq(&x->o, &y->o) || x->n != y->n || x->n > VMFS_MSG_XSET_MAX)
			return false;
		for (uint32_t i = 0; i < x->n; i++)
			if (x->x[i].from_lkid != y->x[i].from_lkid ||
			    x->x[i].from_epoch != y->x[i].from_epoch ||
			    x->x[i].to_lkid != y->x[i].to_lkid)
				return false;
		return true;
	}
	case VMFS_MSG_RECOVERY_REG:
	case VMFS_MSG_RECOVERY_DONE: {
		const struct vmfs_msg_recovery *x = &a->u.recovery, *y = &b->u.recovery;

		return origin_eq(&x->o, &y->o) && name_eq(&x->ls, &y->ls) &&
		       x->nodeid == y->nodeid && x->on == y->on;
	}
	case VMFS_MSG_FENCED:
		return a->u.fenced.nodeid == b->u.fenced.nodeid;
	case VMFS_MSG_SNAPSHOT: {
		const struct vmfs_msg_snapshot *x = &a->u.snapshot, *y = &b->u.snapshot;

		return x->members_hash == y->members_hash && x->chunk == y->chunk &&
		       x->nchunks == y->nchunks && x->len == y->len &&
		       (x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
	}
	case VMFS_MSG_NOOP:
		return a->u.noop.seq == b->u.noop.seq;
	default:
		return false;
	}
}

/* Encode a fresh message of `type`; returns the length. */
static int encode_one(unsigned type, struct vmfs_msg *m, uint8_t *buf, size_t cap)
{
	int n;

	make_msg(m, type);
	n = vmfs_msg_encode(m, buf, cap);
	if (n < 0) {
		fprintf(stderr, "encode %s failed: %d\n", vmfs_msg_type_name(type), n);
		abort();
	}
	return n;
}

static void test_round_trip(void)
{
	static uint8_t buf[4096];

	for (unsigned type = 1; type < VMFS_MSG_TYPE_MAX; type++)
		for (int rep = 0; rep < 200; rep++) {
			struct vmfs_msg m, d;
			const char *why;
			int n = encode_one(type, &m, buf, sizeof(buf));
			int rc = vmfs_msg_decode(buf, (size_t)n, m.nodeid, &d, &why);

			CHECK(rc == 0, "%s: decode %d (%s)", vmfs_msg_type_name(type), rc, why);
			CHECK(rc || msg_eq(&m, &d), "%s: round trip differs", vmfs_msg_type_name(type));
			CHECK(buf[0] == 'V' && buf[1] == 'D' && buf[2] == 'L' && buf[3] == 'M',
			      "magic bytes on the wire");
			CHECK(buf[8] == (uint8_t)n && buf[9] == (uint8_t)(n >> 8), "length field");
		}
	CHECK(strcmp(vmfs_msg_type_name(VMFS_MSG_TRANSFER), "TRANSFER") == 0, "type name");
	CHECK(strcmp(vmfs_msg_type_name(VMFS_MSG_TRANSFER_SET), "TRANSFER_SET") == 0,
	      "type name transfer set");
	CHECK(VMFS_MSG_TRANSFER_SET == 12, "types are append-only");
	CHECK(VMFS_MSG_NOOP == 13 && strcmp(vmfs_msg_type_name(VMFS_MSG_NOOP), "NOOP") == 0,
	      "NOOP: type 13, named");
	CHECK(strcmp(vmfs_msg_type_name(0), "UNKNOWN") == 0, "type 0 name");
	CHECK(strcmp(vmfs_msg_type_name(999), "UNKNOWN") == 0, "type 999 name");
}

static int decode_rc(const uint8_t *buf, size_t len, uint32_t sender)
{
	struct vmfs_msg d;
	const char *why = NULL;
	int rc = vmfs_msg_decode(buf, len, sender, &d, &why);

	CHECK(why != NULL && why[0], "every outcome has a why");
	return rc;
}

/* Offsets of REQUEST body fields (header 32): origin 8, pid 4, mode 1,
 * flags 4, then ls, res, program, tag as u8 len + 64. */
#define REQ_MODE 44
#define REQ_LS 49
#define REQ_RES (REQ_LS + 65)
#define REQ_PROG (REQ_RES + 65)
#define REQ_TAG (REQ_PROG + 65)

static void test_validation(void)
{
	uint8_t buf[4096], bad[4096];
	struct vmfs_msg m;
	int n, rc;

	n = encode_one(VMFS_MSG_REQUEST, &m, buf, sizeof(buf));
	CHECK(n == 32 + 8 + 4 + 1 + 4 + 4 * 65, "REQUEST size %d", n);
	CHECK(decode_rc(buf, (size_t)n, m.nodeid) == 0, "valid");
	CHECK(decode_rc(buf, (size_t)n, 0) == 0, "sender check skipped with 0");

	memcpy(bad, buf, (size_t)n);
	bad[0] ^= 1;
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EMAGIC, "bad magic");

	memcpy(bad, buf, (size_t)n);
	wr16(bad + 4, 2);
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EVERSION, "bad version");

	CHECK(decode_rc(buf, (size_t)n - 1, 0) == VMFS_MSG_ELENGTH, "truncated");
	CHECK(decode_rc(buf, 10, 0) == VMFS_MSG_ELENGTH, "shorter than header");
	CHECK(decode_rc(NULL, 0, 0) == VMFS_MSG_ELENGTH, "empty");
	memcpy(bad, buf, (size_t)n);
	wr32(bad + 8, (uint32_t)n + 1);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_ELENGTH, "length field mismatch");
	/* A length that matches what was received but is below the type's
	 * fixed size. */
	memcpy(bad, buf, (size_t)n);
	wr32(bad + 8, 40);
	fix_crc(bad, 40);
	CHECK(decode_rc(bad, 40, 0) == VMFS_MSG_ELENGTH, "below fixed size");
	/* Over the cap. */
	{
		size_t big = VMFS_MSG_MAX + 8;
		uint8_t *b = calloc(1, big);

		memcpy(b, buf, (size_t)n);
		wr32(b + 8, (uint32_t)big);
		fix_crc(b, big);
		CHECK(decode_rc(b, big, 0) == VMFS_MSG_ELENGTH, "over VMFS_MSG_MAX");
		free(b);
	}

	memcpy(bad, buf, (size_t)n);
	bad[n - 1] ^= 0x40;
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_ECRC, "bad crc (body)");
	memcpy(bad, buf, (size_t)n);
	bad[25] ^= 0x01;
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_ECRC, "bad crc (crc field)");

	memcpy(bad, buf, (size_t)n);
	wr16(bad + 6, 99);
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_ETYPE, "unknown type");
	wr16(bad + 6, 0);
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_ETYPE, "type 0");

	memcpy(bad, buf, (size_t)n);
	bad[REQ_LS] = 65;
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "ls length 65");
	memcpy(bad, buf, (size_t)n);
	bad[REQ_RES] = 200;
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "res length 200");
	memcpy(bad, buf, (size_t)n);
	bad[REQ_PROG] = VMFS_DLM_PROG_MAX + 1;
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "program too long");
	memcpy(bad, buf, (size_t)n);
	bad[REQ_TAG] = VMFS_DLM_TAG_MAX + 1;
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "tag too long");
	memcpy(bad, buf, (size_t)n);
	bad[REQ_LS] = 3;
	bad[REQ_LS + 2] = 0;
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "NUL inside a name");
	/* Exactly 64 bytes is legal. */
	memcpy(bad, buf, (size_t)n);
	bad[REQ_LS] = 64;
	memset(bad + REQ_LS + 1, 'x', 64);
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == 0, "64-byte name");

	memcpy(bad, buf, (size_t)n);
	bad[REQ_MODE] = 6;
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "mode 6");

	CHECK(decode_rc(buf, (size_t)n, m.nodeid + 1) == VMFS_MSG_ESENDER, "wrong sender");

	/* CONVERT mode */
	n = encode_one(VMFS_MSG_CONVERT, &m, buf, sizeof(buf));
	buf[32 + 8 + 8] = 0xff;
	fix_crc(buf, (size_t)n);
	CHECK(decode_rc(buf, (size_t)n, 0) == VMFS_MSG_EFIELD, "convert mode 255");

	/* SNAPSHOT chunk numbers and length */
	n = encode_one(VMFS_MSG_SNAPSHOT, &m, buf, sizeof(buf));
	memcpy(bad, buf, (size_t)n);
	wr32(bad + 32 + 4, 7);
	wr32(bad + 32 + 8, 7);
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "chunk >= nchunks");
	memcpy(bad, buf, (size_t)n);
	wr32(bad + 32 + 12, m.u.snapshot.len + 1);
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "chunk len beyond message");

	/* TRANSFER_SET: count 0 or above the cap, a body shorter than its
	 * count says, and the length: fixed part + 24 per triple. */
	n = encode_one(VMFS_MSG_TRANSFER_SET, &m, buf, sizeof(buf));
	CHECK(n == 32 + 12 + 24 * (int)m.u.transfer_set.n, "transfer set length %d", n);
	memcpy(bad, buf, (size_t)n);
	wr32(bad + 32 + 8, 0);
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "transfer set count 0");
	memcpy(bad, buf, (size_t)n);
	wr32(bad + 32 + 8, VMFS_MSG_XSET_MAX + 1);
	fix_crc(bad, (size_t)n);
	CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_EFIELD, "transfer set count 17");
	if (m.u.transfer_set.n < VMFS_MSG_XSET_MAX) {
		memcpy(bad, buf, (size_t)n);
		wr32(bad + 32 + 8, m.u.transfer_set.n + 1);
		fix_crc(bad, (size_t)n);
		CHECK(decode_rc(bad, (size_t)n, 0) == VMFS_MSG_ELENGTH,
		      "transfer set count beyond the body");
	}
	make_msg(&m, VMFS_MSG_TRANSFER_SET);
	m.u.transfer_set.n = 0;
	CHECK(vmfs_msg_encode(&m, buf, sizeof(buf)) == -EINVAL, "encode transfer set of 0");
	m.u.transfer_set.n = VMFS_MSG_XSET_MAX + 1;
	CHECK(vmfs_msg_encode(&m, buf, sizeof(buf)) == -EINVAL, "encode transfer set of 17");

	/* Encoder refuses what the decoder would refuse. */
	make_msg(&m, VMFS_MSG_REQUEST);
	m.u.request.mode = 6;
	CHECK(vmfs_msg_encode(&m, buf, sizeof(buf)) == -EINVAL, "encode bad mode");
	make_msg(&m, VMFS_MSG_REQUEST);
	m.u.request.ls.len = 65;
	CHECK(vmfs_msg_encode(&m, buf, sizeof(buf)) == -EINVAL, "encode bad name len");
	make_msg(&m, VMFS_MSG_REQUEST);
	CHECK(vmfs_name_set(&m.u.request.program, "a-program-name-longer-than-31-bytes") == 0,
	      "name_set");
	CHECK(vmfs_msg_encode(&m, buf, sizeof(buf)) == -EINVAL, "encode long program");
	make_msg(&m, VMFS_MSG_REQUEST);
	CHECK(vmfs_msg_encode(&m, buf, 100) == -EMSGSIZE, "encode small buffer");
	m.type = 77;
	CHECK(vmfs_msg_encode(&m, buf, sizeof(buf)) == -EINVAL, "encode unknown type");
	{
		struct vmfs_name nm;
		char s[80];

		memset(s, 'y', 65);
		s[65] = '\0';
		CHECK(vmfs_name_set(&nm, s) == -ENAMETOOLONG, "name 65");
		s[64] = '\0';
		CHECK(vmfs_name_set(&nm, s) == 0 && nm.len == 64, "name 64");
	}
	rc = 0;
	(void)rc;
}

static void test_modes(void)
{
	static const char *const names[] = { "NL", "CR", "CW", "PR", "PW", "EX" };
	/* The matrix of dlm.h, written out independently. */
	static const int compat[6][6] = {
		{ 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 1, 0 }, { 1, 1, 1, 0, 0, 0 },
		{ 1, 1, 0, 1, 0, 0 }, { 1, 1, 0, 0, 0, 0 }, { 1, 0, 0, 0, 0, 0 },
	};

	for (int a = 0; a < 6; a++) {
		char lower[3] = { (char)(names[a][0] | 0x20), (char)(names[a][1] | 0x20), 0 };

		CHECK(strcmp(vmfs_dlm_mode_name(a), names[a]) == 0, "name %d", a);
		CHECK(vmfs_dlm_mode_parse(names[a]) == a, "parse %s", names[a]);
		CHECK(vmfs_dlm_mode_parse(lower) == a, "parse %s", lower);
		for (int b = 0; b < 6; b++)
			CHECK(vmfs_dlm_modes_compatible(a, b) == compat[a][b], "compat %d %d", a, b);
	}
	CHECK(vmfs_dlm_mode_parse("XX") == -1 && vmfs_dlm_mode_parse("") == -1 &&
	      vmfs_dlm_mode_parse(NULL) == -1 && vmfs_dlm_mode_parse("EXX") == -1, "parse bad");
	CHECK(vmfs_dlm_modes_compatible(-1, 0) == 0 && vmfs_dlm_modes_compatible(0, 6) == 0,
	      "compat out of range");
	for (int e = VMFS_DLM_ELOST; e <= VMFS_DLM_EAGAIN; e++) {
		const char *s = vmfs_dlm_strerror(e);

		CHECK(s && strncmp(s, "Unknown", 7) != 0, "strerror %d: %s", e, s);
	}
	CHECK(strcmp(vmfs_dlm_strerror(-ENOENT), strerror(ENOENT)) == 0, "strerror errno");
}

static void test_fuzz(void)
{
	const char *env = getenv("TEST_SEED");
	const char *it = getenv("TEST_FUZZ_ITERS");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
	long iters = it ? atol(it) : 150000;
	static uint8_t buf[4096], buf2[4096];
	unsigned long accepted = 0;

	printf("test-msg fuzz: seed %" PRIu64 " (replay with TEST_SEED=%" PRIu64 "), %ld iterations\n",
	       seed, seed, iters);
	fflush(stdout);
	rng_state = seed ? seed : 1;
	for (long i = 0; i < iters; i++) {
		struct vmfs_msg m, d;
		const char *why;
		size_t len;
		int rc;

		switch (rndn(4)) {
		case 0:		/* random bytes, random length */
			len = rndn(600);
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rnd();
			if (len >= 32 && rndn(2)) {
				/* plausible header so deeper checks run */
				wr32(buf, VMFS_MSG_MAGIC);
				wr16(buf + 4, VMFS_MSG_VERSION);
				wr16(buf + 6, (uint16_t)rndn(VMFS_MSG_TYPE_MAX + 2));
				wr32(buf + 8, (uint32_t)len);
				fix_crc(buf, len);
			}
			break;
		default: {	/* mutations of a valid message */
			int n = encode_one(1 + rndn(VMFS_MSG_TYPE_MAX - 1), &m, buf, sizeof(buf));
			int flips = 1 + (int)rndn(4);

			len = (size_t)n;
			for (int k = 0; k < flips; k++)
				buf[rndn((uint32_t)len)] ^= (uint8_t)(1u << rndn(8));
			if (rndn(4) == 0)
				len = rndn((uint32_t)len + 1);
			if (len >= 32 && rndn(3)) {
				/* keep the header consistent so the body decoders
				 * see the mutation */
				wr32(buf + 8, (uint32_t)len);
				fix_crc(buf, len);
			}
			break;
		}
		}
		rc = vmfs_msg_decode(buf, len, 0, &m, &why);
		if (rc != 0)
			continue;
		accepted++;
		/* What decodes must re-encode, and decode to the same thing. */
		rc = vmfs_msg_encode(&m, buf2, sizeof(buf2));
		CHECK(rc > 0, "re-encode of an accepted message failed: %d (seed %" PRIu64 ")", rc,
		      seed);
		if (rc > 0) {
			int rc2 = vmfs_msg_decode(buf2, (size_t)rc, 0, &d, &why);

			CHECK(rc2 == 0 && msg_eq(&m, &d), "re-decode differs (seed %" PRIu64 ")", seed);
		}
	}
	printf("test-msg fuzz: %lu of %ld inputs accepted\n", accepted, iters);
}

int main(void)
{
	rng_state = 0x9e3779b97f4a7c15ull;
	test_modes();
	test_round_trip();
	test_validation();
	test_fuzz();
	if (failures) {
		fprintf(stderr, "test-msg: %d failures\n", failures);
		return 1;
	}
	printf("test-msg: ok\n");
	return 0;
}
