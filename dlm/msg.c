/* msg.c — encode/decode of the CPG messages of vmfs-dlmd (format in msg.h).
 *
 * Every field is written and read through one small family of
 * little-endian cursor helpers; each message type has one encode/decode
 * pair, found through a table indexed by type that also gives the type's
 * fixed body size.  A cursor that runs past its end latches an error
 * instead of touching memory, so a decoder can never read out of bounds
 * even if the table's sizes were wrong.
 */
#include "config.h"
#include "msg.h"

#include <errno.h>
#include <string.h>

#include "crc32c.h"
#include "rsm_internal.h"	/* the little-endian cursor family */

#define CRC_OFF 24

/* --- one encode/decode pair per type ------------------------------------ */

struct dec {
	struct rcur *r;
	bool bad;		/* a field failed validation */
	const char *why;
};

static void field_bad(struct dec *d, const char *why)
{
	if (!d->bad) {
		d->bad = true;
		d->why = why;
	}
}

static void put_origin(struct wcur *w, const struct vmfs_msg_origin *o)
{
	put_u32(w, o->client_id);
	put_u32(w, o->req_id);
}

static void get_origin(struct rcur *r, struct vmfs_msg_origin *o)
{
	o->client_id = get_u32(r);
	o->req_id = get_u32(r);
}

static int check_mode(int mode)
{
	return mode >= VMFS_DLM_NL && mode <= VMFS_DLM_EX ? 0 : -EINVAL;
}

static int enc_node_info(struct wcur *w, const struct vmfs_msg *m)
{
	const struct vmfs_msg_node_info *b = &m->u.node_info;

	put_u32(w, b->expected_votes);
	put_u8(w, b->synced ? 1 : 0);
	put_u64(w, b->seq);
	put_u32(w, b->members_hash);
	put_name(w, &b->name, VMFS_DLM_NAME_MAX);
	return 0;
}

static void dec_node_info(struct dec *d, struct vmfs_msg *m)
{
	struct vmfs_msg_node_info *b = &m->u.node_info;
	bool bad = false;

	b->expected_votes = get_u32(d->r);
	b->synced = get_u8(d->r);
	b->seq = get_u64(d->r);
	b->members_hash = get_u32(d->r);
	get_name(d->r, &b->name, VMFS_DLM_NAME_MAX, &bad);
	if (bad)
		field_bad(d, "bad host name");
	if (b->synced > 1)
		field_bad(d, "bad synced flag");
}

static int enc_request(struct wcur *w, const struct vmfs_msg *m)
{
	const struct vmfs_msg_request *b = &m->u.request;

	if (check_mode(b->mode))
		return -EINVAL;
	put_origin(w, &b->o);
	put_u32(w, b->pid);
	put_u8(w, b->mode);
	put_u32(w, b->flags);
	put_name(w, &b->ls, VMFS_DLM_NAME_MAX);
	put_name(w, &b->res, VMFS_DLM_NAME_MAX);
	put_name(w, &b->program, VMFS_DLM_PROG_MAX);
	put_name(w, &b->tag, VMFS_DLM_TAG_MAX);
	return 0;
}

static void dec_request(struct dec *d, struct vmfs_msg *m)
{
	struct vmfs_msg_request *b = &m->u.request;
	bool bad = false;

	get_origin(d->r, &b->o);
	b->pid = get_u32(d->r);
	b->mode = get_u8(d->r);
	b->flags = get_u32(d->r);
	get_name(d->r, &b->ls, VMFS_DLM_NAME_MAX, &bad);
	get_name(d->r, &b->res, VMFS_DLM_NAME_MAX, &bad);
	if (bad)
		field_bad(d, "bad lockspace or resource name");
	get_name(d->r, &b->program, VMFS_DLM_PROG_MAX, &bad);
	if (bad)
		field_bad(d, "bad program name");
	get_name(d->r, &b->tag, VMFS_DLM_TAG_MAX, &bad);
	if (bad)
		field_bad(d, "bad tag");
	if (check_mode(b->mode))
		field_bad(d, "bad mode");
}

static int enc_convert(struct wcur *w, const struct vmfs_msg *m)
{
	const struct vmfs_msg_convert *b = &m->u.convert;

	if (check_mode(b->mode))
		return -EINVAL;
	put_origin(w, &b->o);
	put_u64(w, b->lkid);
	put_u8(w, b->mode);
	put_u32(w, b->flags);
	put_bytes(w, b->lvb, VMFS_DLM_LVB_LEN);
	return 0;
}

static void dec_convert(struct dec *d, struct vmfs_msg *m)
{
	struct vmfs_msg_convert *b = &m->u.convert;

	get_origin(d->r, &b->o);
	b->lkid = get_u64(d->r);
	b->mode = get_u8(d->r);
	b->flags = get_u32(d->r);
	get_bytes(d->r, b->lvb, VMFS_DLM_LVB_LEN);
	if (check_mode(b->mode))
		field_bad(d, "bad mode");
}

static int enc_release(struct wcur *w, const struct vmfs_msg *m)
{
	const struct vmfs_msg_release *b = &m->u.release;

	put_origin(w, &b->o);
	put_u64(w, b->lkid);
	put_u32(w, b->flags);
	put_bytes(w, b->lvb, VMFS_DLM_LVB_LEN);
	return 0;
}

static void dec_release(struct dec *d, struct vmfs_msg *m)
{
	struct vmfs_msg_release *b = &m->u.release;

	get_origin(d->r, &b->o);
	b->lkid = get_u64(d->r);
	b->flags = get_u32(d->r);
	get_bytes(d->r, b->lvb, VMFS_DLM_LVB_LEN);
}

static int enc_cancel(struct wcur *w, const struct vmfs_msg *m)
{
	put_origin(w, &m->u.cancel.o);
	put_u64(w, m->u.cancel.lkid);
	return 0;
}

static void dec_cancel(struct dec *d, struct vmfs_msg *m)
{
	get_origin(d->r, &m->u.cancel.o);
	m->u.cancel.lkid = get_u64(d->r);
}

static int enc_transfer(struct wcur *w, const struct vmfs_msg *m)
{
	const struct vmfs_msg_transfer *b = &m->u.transfer;

	put_origin(w, &b->o);
	put_u64(w, b->from_lkid);
	put_u64(w, b->from_epoch);
	put_u64(w, b->to_lkid);
	return 0;
}

static void dec_transfer(struct dec *d, struct vmfs_msg *m)
{
	struct vmfs_msg_transfer *b = &m->u.transfer;

	get_origin(d->r, &b->o);
	b->from_lkid = get_u64(d->r);
	b->from_epoch = get_u64(d->r);
	b->to_lkid = get_u64(d->r);
}

static int enc_transfer_set(struct wcur *w, const struct vmfs_msg *m)
{
	const struct vmfs_msg_transfer_set *b = &m->u.transfer_set;

	if (b->n == 0 || b->n > VMFS_MSG_XSET_MAX)
		return -EINVAL;
	put_origin(w, &b->o);
	put_u32(w, b->n);
	for (uint32_t i = 0; i < b->n; i++) {
		put_u64(w, b->x[i].from_lkid);
		put_u64(w, b->x[i].from_epoch);
		put_u64(w, b->x[i].to_lkid);
	}
	return 0;
}

static void dec_transfer_set(struct dec *d, struct vmfs_msg *m)
{
	struct vmfs_msg_transfer_set *b = &m->u.transfer_set;

	get_origin(d->r, &b->o);
	b->n = get_u32(d->r);
	if (b->n == 0 || b->n > VMFS_MSG_XSET_MAX) {
		field_bad(d, "bad transfer count");
		b->n = 0;
		return;
	}
	/* A short body latches the cursor error: "truncated body". */
	for (uint32_t i = 0; i < b->n; i++) {
		b->x[i].from_lkid = get_u64(d->r);
		b->x[i].from_epoch = get_u64(d->r);
		b->x[i].to_lkid = get_u64(d->r);
	}
}

static int enc_client_gone(struct wcur *w, const struct vmfs_msg *m)
{
	put_u32(w, m->u.client_gone.client_id);
	return 0;
}

static void dec_client_gone(struct dec *d, struct vmfs_msg *m)
{
	m->u.client_gone.client_id = get_u32(d->r);
}

static int enc_recovery(struct wcur *w, const struct vmfs_msg *m)
{
	const struct vmfs_msg_recovery *b = &m->u.recovery;

	put_origin(w, &b->o);
	put_name(w, &b->ls, VMFS_DLM_NAME_MAX);
	put_u32(w, b->nodeid);
	put_u8(w, b->on ? 1 : 0);
	return 0;
}

static void dec_recovery(struct dec *d, struct vmfs_msg *m)
{
	struct vmfs_msg_recovery *b = &m->u.recovery;
	bool bad = false;

	get_origin(d->r, &b->o);
	get_name(d->r, &b->ls, VMFS_DLM_NAME_MAX, &bad);
	b->nodeid = get_u32(d->r);
	b->on = get_u8(d->r);
	if (bad)
		field_bad(d, "bad lockspace name");
	if (b->on > 1)
		field_bad(d, "bad on flag");
}

static int enc_fenced(struct wcur *w, const struct vmfs_msg *m)
{
	put_u32(w, m->u.fenced.nodeid);
	return 0;
}

static void dec_fenced(struct dec *d, struct vmfs_msg *m)
{
	m->u.fenced.nodeid = get_u32(d->r);
	if (m->u.fenced.nodeid == 0)
		field_bad(d, "bad node id");
}

static int enc_snapshot(struct wcur *w, const struct vmfs_msg *m)
{
	const struct vmfs_msg_snapshot *b = &m->u.snapshot;

	if (b->nchunks == 0 || b->chunk >= b->nchunks || (b->len && !b->data))
		return -EINVAL;
	put_u32(w, b->members_hash);
	put_u32(w, b->chunk);
	put_u32(w, b->nchunks);
	put_u32(w, b->len);
	put_bytes(w, b->data, b->len);
	return 0;
}

static void dec_snapshot(struct dec *d, struct vmfs_msg *m)
{
	struct vmfs_msg_snapshot *b = &m->u.snapshot;

	b->members_hash = get_u32(d->r);
	b->chunk = get_u32(d->r);
	b->nchunks = get_u32(d->r);
	b->len = get_u32(d->r);
	if (b->nchunks == 0 || b->chunk >= b->nchunks) {
		field_bad(d, "bad snapshot chunk number");
		return;
	}
	if (b->len > d->r->len - d->r->off) {
		field_bad(d, "snapshot chunk longer than message");
		return;
	}
	b->data = r_take(d->r, b->len);
}

static int enc_noop(struct wcur *w, const struct vmfs_msg *m)
{
	put_u32(w, m->u.noop.seq);
	return 0;
}

static void dec_noop(struct dec *d, struct vmfs_msg *m)
{
	m->u.noop.seq = get_u32(d->r);
}

struct msg_type_desc {
	const char *name;
	size_t body;		/* fixed body bytes (snapshot: before the data;
				 * transfer set: before the triples) */
	int (*enc)(struct wcur *w, const struct vmfs_msg *m);
	void (*dec)(struct dec *d, struct vmfs_msg *m);
};

static const struct msg_type_desc types[VMFS_MSG_TYPE_MAX] = {
	[VMFS_MSG_NODE_INFO] = { "NODE_INFO", 4 + 1 + 8 + 4 + NAME_WIRE,
				 enc_node_info, dec_node_info },
	[VMFS_MSG_REQUEST] = { "REQUEST", 8 + 4 + 1 + 4 + 4 * NAME_WIRE,
			       enc_request, dec_request },
	[VMFS_MSG_CONVERT] = { "CONVERT", 8 + 8 + 1 + 4 + VMFS_DLM_LVB_LEN,
			       enc_convert, dec_convert },
	[VMFS_MSG_RELEASE] = { "RELEASE", 8 + 8 + 4 + VMFS_DLM_LVB_LEN,
			       enc_release, dec_release },
	[VMFS_MSG_CANCEL] = { "CANCEL", 8 + 8, enc_cancel, dec_cancel },
	[VMFS_MSG_TRANSFER] = { "TRANSFER", 8 + 3 * 8, enc_transfer, dec_transfer },
	[VMFS_MSG_CLIENT_GONE] = { "CLIENT_GONE", 4, enc_client_gone, dec_client_gone },
	[VMFS_MSG_RECOVERY_REG] = { "RECOVERY_REG", 8 + NAME_WIRE + 4 + 1,
				    enc_recovery, dec_recovery },
	[VMFS_MSG_RECOVERY_DONE] = { "RECOVERY_DONE", 8 + NAME_WIRE + 4 + 1,
				     enc_recovery, dec_recovery },
	[VMFS_MSG_FENCED] = { "FENCED", 4, enc_fenced, dec_fenced },
	[VMFS_MSG_SNAPSHOT] = { "SNAPSHOT", 16, enc_snapshot, dec_snapshot },
	[VMFS_MSG_TRANSFER_SET] = { "TRANSFER_SET", 8 + 4, enc_transfer_set,
				    dec_transfer_set },
	[VMFS_MSG_NOOP] = { "NOOP", 4, enc_noop, dec_noop },
};

#define XSET_TRIPLE 24	/* bytes per TRANSFER_SET triple after the fixed body */

static const struct msg_type_desc *type_desc(unsigned type)
{
	if (type == 0 || type >= VMFS_MSG_TYPE_MAX || !types[type].enc)
		return NULL;
	return &types[type];
}

const char *vmfs_msg_type_name(unsigned type)
{
	const struct msg_type_desc *t = type_desc(type);

	return t ? t->name : "UNKNOWN";
}

int vmfs_name_set(struct vmfs_name *n, const char *s)
{
	size_t len = s ? strlen(s) : 0;

	memset(n, 0, sizeof(*n));
	if (len > VMFS_DLM_NAME_MAX)
		return -ENAMETOOLONG;
	n->len = (uint8_t)len;
	if (len)
		memcpy(n->s, s, len);
	return 0;
}

/* --- the header ---------------------------------------------------------- */

int vmfs_msg_encode(const struct vmfs_msg *m, uint8_t *buf, size_t cap)
{
	const struct msg_type_desc *t = type_desc(m->type);
	struct wcur w = { .p = buf, .off = 0, .cap = cap, .err = 0 };
	size_t total;
	int rc;

	if (!t)
		return -EINVAL;
	total = VMFS_MSG_HDR_LEN + t->body;
	if (m->type == VMFS_MSG_SNAPSHOT)
		total += m->u.snapshot.len;
	if (m->type == VMFS_MSG_TRANSFER_SET) {
		if (m->u.transfer_set.n == 0 || m->u.transfer_set.n > VMFS_MSG_XSET_MAX)
			return -EINVAL;
		total += (size_t)m->u.transfer_set.n * XSET_TRIPLE;
	}
	if (total > VMFS_MSG_MAX || total > cap)
		return -EMSGSIZE;

	put_u32(&w, VMFS_MSG_MAGIC);
	put_u16(&w, VMFS_MSG_VERSION);
	put_u16(&w, m->type);
	put_u32(&w, (uint32_t)total);
	put_u32(&w, m->nodeid);
	put_u64(&w, m->ts_ms);
	put_u32(&w, 0);		/* crc, filled in below */
	put_u32(&w, 0);		/* reserved */
	rc = t->enc(&w, m);
	if (rc == 0)
		rc = w.err;
	if (rc)
		return rc;
	if (w.off != total)
		return -EINVAL;	/* table size and encoder disagree: a bug */
	{
		uint32_t crc = crc32c(0, buf, total);
		struct wcur c = { .p = buf + CRC_OFF, .off = 0, .cap = 4, .err = 0 };

		put_u32(&c, crc);
	}
	return (int)total;
}

int vmfs_msg_decode(const uint8_t *buf, size_t len, uint32_t cpg_nodeid,
		    struct vmfs_msg *m, const char **why)
{
	struct rcur r = { .p = buf, .off = 0, .len = len, .err = 0 };
	struct dec d = { .r = &r, .bad = false, .why = NULL };
	const struct msg_type_desc *t;
	uint32_t magic, length, crc, want;
	uint16_t version;
	uint8_t zero[4] = { 0, 0, 0, 0 };
	int rc = 0;

	memset(m, 0, sizeof(*m));
	*why = "ok";
	if (!buf || len < VMFS_MSG_HDR_LEN) {
		*why = "shorter than the header";
		rc = VMFS_MSG_ELENGTH;
		goto out;
	}
	magic = get_u32(&r);
	version = get_u16(&r);
	m->type = get_u16(&r);
	length = get_u32(&r);
	m->nodeid = get_u32(&r);
	m->ts_ms = get_u64(&r);
	crc = get_u32(&r);
	(void)get_u32(&r);	/* reserved: ignored so it can be given a use later */

	if (magic != VMFS_MSG_MAGIC) {
		*why = "bad magic";
		rc = VMFS_MSG_EMAGIC;
		goto out;
	}
	if (version != VMFS_MSG_VERSION) {
		*why = "unsupported version";
		rc = VMFS_MSG_EVERSION;
		goto out;
	}
	if (length != len || length > VMFS_MSG_MAX) {
		*why = "length field does not match the received size";
		rc = VMFS_MSG_ELENGTH;
		goto out;
	}
	t = type_desc(m->type);
	if (!t) {
		*why = "unknown message type";
		rc = VMFS_MSG_ETYPE;
		goto out;
	}
	if (len < VMFS_MSG_HDR_LEN + t->body) {
		*why = "shorter than its type's fixed size";
		rc = VMFS_MSG_ELENGTH;
		goto out;
	}
	want = crc32c(0, buf, CRC_OFF);
	want = crc32c(want, zero, sizeof(zero));
	want = crc32c(want, buf + CRC_OFF + 4, len - CRC_OFF - 4);
	if (crc != want) {
		*why = "bad checksum";
		rc = VMFS_MSG_ECRC;
		goto out;
	}
	if (cpg_nodeid && m->nodeid != cpg_nodeid) {
		*why = "sender node id differs from the CPG sender";
		rc = VMFS_MSG_ESENDER;
		goto out;
	}
	/* Bytes after a type's fixed body are tolerated (a later minor
	 * version may append fields); the body decoder ignores them. */
	t->dec(&d, m);
	if (r.err) {
		*why = "truncated body";
		rc = VMFS_MSG_ELENGTH;
		goto out;
	}
	if (d.bad) {
		*why = d.why;
		rc = VMFS_MSG_EFIELD;
		goto out;
	}
out:
	return rc;
}
