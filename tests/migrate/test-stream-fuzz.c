/* test-stream-fuzz.c — the migration stream refuses malformed, corrupted,
 * replayed and unauthenticated input with a clear error, and never crashes:
 * single-bit flips of valid frames, random frames, hostile page batches
 * and page runs (protocol 3, with encode/decode round trips),
 * and a destination engine fed garbage or a wrong-key source; every
 * connection of a multi-connection migration has keys of its own. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"
#include "precopy/stream.h"
#include "vmfs/precopy.h"

static int failures;

#define EXPECT(cond, ...) do { \
	if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); \
		printf(__VA_ARGS__); printf("\n"); failures++; } \
	} while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";

static void test_frames(void)
{
	static uint8_t f[MIG_HDR_LEN + 4096 + MIG_TAG_LEN], g[sizeof(f)];
	uint8_t payload[300];
	struct mig_hdr h;
	size_t n;
	int rc;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)rnd();
	n = mig_frame_build(f, key, sizeof(key), MIG_ROUND, 7, payload, sizeof(payload));
	EXPECT(mig_frame_verify(f, n, key, sizeof(key), 7, &h) == 0, "valid frame refused");
	EXPECT(h.type == MIG_ROUND && h.length == sizeof(payload), "decoded header wrong");
	EXPECT(mig_frame_verify(f, n, key, sizeof(key), 8, &h) == VMFS_PRECOPY_EAUTH,
	       "replayed (wrong seq) frame accepted");
	EXPECT(mig_frame_verify(f, n, (const uint8_t *)"another key, also 32 bytes long!", 32, 7, &h) ==
	       VMFS_PRECOPY_EAUTH, "frame under another key accepted");
	/* Every single-bit flip must be refused. */
	for (size_t bit = 0; bit < n * 8; bit++) {
		memcpy(g, f, n);
		g[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		rc = mig_frame_verify(g, n, key, sizeof(key), 7, &h);
		EXPECT(rc < 0, "bit %zu flipped and accepted", bit);
	}
	/* A tag that is right for a corrupted body is still caught (CRC
	 * first gives the clearer "corrupted" error). */
	memcpy(g, f, n);
	g[MIG_HDR_LEN] ^= 1;
	EXPECT(mig_frame_verify(g, n, key, sizeof(key), 7, &h) == VMFS_PRECOPY_ECHECKSUM,
	       "corruption not reported as checksum error");
	/* Header checks. */
	memcpy(g, f, n);
	put_le32(g, 0x12345678);
	EXPECT(mig_frame_verify(g, n, key, sizeof(key), 7, &h) == VMFS_PRECOPY_EBADMAGIC, "magic");
	memcpy(g, f, n);
	put_le16(g + 4, 2);
	EXPECT(mig_frame_verify(g, n, key, sizeof(key), 7, &h) == VMFS_PRECOPY_EVERSION, "version");
	memcpy(g, f, n);
	put_le32(g + 8, MIG_MAX_PAYLOAD + 1);
	EXPECT(mig_frame_verify(g, n, key, sizeof(key), 7, &h) == VMFS_PRECOPY_ETOOBIG, "cap");
	memcpy(g, f, n);
	put_le16(g + 6, MIG_TYPE_MAX + 1);
	EXPECT(mig_frame_verify(g, n, key, sizeof(key), 7, &h) == VMFS_PRECOPY_EPROTO, "type");
	EXPECT(mig_frame_verify(f, n - 1, key, sizeof(key), 7, &h) < 0, "truncated frame");
	EXPECT(mig_frame_verify(f, 3, key, sizeof(key), 7, &h) < 0, "tiny frame");
	/* Random garbage of random lengths. */
	for (int i = 0; i < 20000; i++) {
		size_t len = rnd() % sizeof(g);

		for (size_t k = 0; k < len; k++)
			g[k] = (uint8_t)rnd();
		if (i % 2)	/* half of them with a plausible header */
			mig_hdr_encode(g, &(struct mig_hdr){ .magic = MIG_MAGIC,
				.version = MIG_VERSION, .type = (uint16_t)(rnd() % (MIG_TYPE_MAX + 2)),
				.length = rnd() % 5000 });
		EXPECT(mig_frame_verify(g, len, key, sizeof(key), 0, &h) < 0,
		       "random frame %d accepted", i);
	}
	printf("ok   frames: bit flips, header checks, random input\n");
}

static void test_pages(void)
{
	static uint8_t p[8 + 300 * MIG_PAGE_ENTRY_LEN + 4 * 4096];
	struct mig_page_entry ents[MIG_BATCH_PAGES];
	const uint64_t rpages[2] = { 16, 4 };
	const uint8_t *data;
	unsigned n;

	/* Valid: one normal page, one zero page. */
	put_le32(p, 2);
	put_le32(p + 4, 0);
	put_le32(p + 8, 0); put_le32(p + 12, 0); put_le64(p + 16, 15);
	put_le32(p + 24, 1); put_le32(p + 28, MIG_PAGE_ZERO); put_le64(p + 32, 3);
	EXPECT(mig_pages_decode(p, 40 + 4096, 2, rpages, ents, &n, &data) == 0 && n == 2 &&
	       data == p + 40, "valid batch refused");
	EXPECT(mig_pages_decode(p, 40 + 4095, 2, rpages, ents, &n, &data) < 0, "short data");
	EXPECT(mig_pages_decode(p, 40 + 8192, 2, rpages, ents, &n, &data) < 0, "extra data");
	put_le64(p + 16, 16);
	EXPECT(mig_pages_decode(p, 40 + 4096, 2, rpages, ents, &n, &data) < 0, "index range");
	put_le64(p + 16, 15);
	put_le32(p + 8, 2);
	EXPECT(mig_pages_decode(p, 40 + 4096, 2, rpages, ents, &n, &data) < 0, "region range");
	put_le32(p + 8, 0);
	put_le32(p + 12, 4);
	EXPECT(mig_pages_decode(p, 40 + 4096, 2, rpages, ents, &n, &data) < 0, "flags");
	put_le32(p + 12, 0);
	put_le32(p, 0);
	EXPECT(mig_pages_decode(p, 8, 2, rpages, ents, &n, &data) < 0, "empty batch");
	put_le32(p, MIG_BATCH_PAGES + 1);
	EXPECT(mig_pages_decode(p, sizeof(p), 2, rpages, ents, &n, &data) < 0, "count cap");
	put_le32(p, 0xffffffffu);
	EXPECT(mig_pages_decode(p, sizeof(p), 2, rpages, ents, &n, &data) < 0, "count overflow");
	for (int i = 0; i < 20000; i++) {
		size_t len = rnd() % sizeof(p);

		for (size_t k = 0; k < len; k++)
			p[k] = (uint8_t)rnd();
		if (len >= 4)
			put_le32(p, rnd() % 4);
		if (mig_pages_decode(p, len, 2, rpages, ents, &n, &data) == 0) {
			/* Only a consistent batch may pass; check it is. */
			for (unsigned k = 0; k < n; k++)
				EXPECT(ents[k].region < 2 && ents[k].index < rpages[ents[k].region],
				       "out-of-range entry accepted");
		}
	}
	printf("ok   page batches: ranges, lengths, random input\n");
}

/* Page runs (protocol 3): encode/decode round trips, every bound, random
 * input. */
static void test_runs(void)
{
	static uint8_t p[8 + 300 * MIG_RUN_ENTRY_LEN + 4 * 4096];
	struct mig_page_entry in[MIG_BATCH_PAGES], ents[MIG_BATCH_PAGES];
	const uint64_t rpages[2] = { 300, 4 };
	const uint8_t *data;
	unsigned n;
	size_t elen;

	/* Round trips of random batches: runs of random length and kind,
	 * sometimes a gap or a region change between them. */
	for (int i = 0; i < 2000; i++) {
		unsigned cnt = 1 + rnd() % MIG_BATCH_PAGES, normal = 0;
		uint64_t idx = rnd() % 8;
		uint32_t reg = 0, fl = 0;

		for (unsigned k = 0; k < cnt; k++) {
			if (rnd() % 8 == 0)
				fl ^= MIG_PAGE_ZERO;
			if (rnd() % 16 == 0)
				idx += 1 + rnd() % 3;
			if (idx >= rpages[reg]) {	/* wrap into the other region */
				reg ^= 1;
				idx = 0;
			}
			in[k] = (struct mig_page_entry){ .region = reg, .flags = fl, .index = idx++ };
			normal += !fl;
		}
		elen = mig_page_runs_encode(p, in, cnt);
		EXPECT(elen >= 8 + MIG_RUN_ENTRY_LEN && elen <= 8 + (size_t)cnt * MIG_RUN_ENTRY_LEN,
		       "encoded length %zu for %u pages", elen, cnt);
		if (elen + (size_t)normal * 4096 > sizeof(p))
			continue;	/* pages beyond the buffer: the entries checked */
		EXPECT(mig_page_runs_decode(p, elen + (size_t)normal * 4096, 2, rpages, ents, &n,
					    &data) == 0 && n == cnt && data == p + elen &&
		       !memcmp(ents, in, cnt * sizeof(*in)), "round trip %d (%u pages)", i, cnt);
	}
	/* One run of consecutive pages is one entry. */
	for (unsigned k = 0; k < MIG_BATCH_PAGES; k++)
		in[k] = (struct mig_page_entry){ .region = 0, .flags = MIG_PAGE_ZERO, .index = 10 + k };
	EXPECT(mig_page_runs_encode(p, in, MIG_BATCH_PAGES) == 8 + MIG_RUN_ENTRY_LEN &&
	       get_le32(p) == 1 && get_le16(p + 14) == MIG_BATCH_PAGES, "a full batch is not one run");
	/* Bounds: two runs, 3 normal pages at 297..299 of region 0 and one
	 * zero page at 3 of region 1. */
#define RUN(i, reg, fl, cnt, idx) (put_le32(p + 8 + (i) * 16, reg), put_le16(p + 12 + (i) * 16, fl), \
	put_le16(p + 14 + (i) * 16, cnt), put_le64(p + 16 + (i) * 16, idx))
	put_le32(p, 2);
	put_le32(p + 4, 0);
	RUN(0, 0, 0, 3, 297);
	RUN(1, 1, MIG_PAGE_ZERO, 1, 3);
	EXPECT(mig_page_runs_decode(p, 40 + 3 * 4096, 2, rpages, ents, &n, &data) == 0 && n == 4 &&
	       ents[2].index == 299 && ents[3].region == 1, "valid runs refused");
	EXPECT(mig_page_runs_decode(p, 40 + 3 * 4096 - 1, 2, rpages, ents, &n, &data) < 0, "short");
	EXPECT(mig_page_runs_decode(p, 40 + 4 * 4096, 2, rpages, ents, &n, &data) < 0, "extra");
	RUN(0, 0, 0, 4, 297);
	EXPECT(mig_page_runs_decode(p, 40 + 4 * 4096, 2, rpages, ents, &n, &data) < 0,
	       "run past the region's end");
	RUN(0, 0, 0, 1, 0xffffffffffffffffull);
	EXPECT(mig_page_runs_decode(p, 40 + 4096, 2, rpages, ents, &n, &data) < 0, "index overflow");
	RUN(0, 0, 0, 0, 1);
	EXPECT(mig_page_runs_decode(p, 40, 2, rpages, ents, &n, &data) < 0, "empty run");
	RUN(0, 2, 0, 1, 1);
	EXPECT(mig_page_runs_decode(p, 40 + 4096, 2, rpages, ents, &n, &data) < 0, "region");
	RUN(0, 0, 2, 1, 1);
	EXPECT(mig_page_runs_decode(p, 40 + 4096, 2, rpages, ents, &n, &data) < 0, "flags");
	RUN(0, 0, MIG_PAGE_ZERO, 200, 0);
	RUN(1, 0, MIG_PAGE_ZERO, 57, 200);
	EXPECT(mig_page_runs_decode(p, 40, 2, rpages, ents, &n, &data) < 0,
	       "more than a batch of pages");
	RUN(1, 0, MIG_PAGE_ZERO, 56, 200);
	EXPECT(mig_page_runs_decode(p, 40, 2, rpages, ents, &n, &data) == 0 &&
	       n == MIG_BATCH_PAGES, "a full batch in two runs refused");
	put_le32(p + 4, 1);
	EXPECT(mig_page_runs_decode(p, 40, 2, rpages, ents, &n, &data) < 0, "reserved word");
	put_le32(p + 4, 0);
	put_le32(p, 0);
	EXPECT(mig_page_runs_decode(p, 8, 2, rpages, ents, &n, &data) < 0, "no runs");
	put_le32(p, 0xffffffffu);
	EXPECT(mig_page_runs_decode(p, sizeof(p), 2, rpages, ents, &n, &data) < 0, "count overflow");
#undef RUN
	for (int i = 0; i < 20000; i++) {
		size_t len = rnd() % sizeof(p);

		for (size_t k = 0; k < len; k++)
			p[k] = (uint8_t)rnd();
		if (len >= 8) {
			put_le32(p, 1 + rnd() % 4);
			put_le32(p + 4, 0);
		}
		if (mig_page_runs_decode(p, len, 2, rpages, ents, &n, &data) == 0) {
			EXPECT(n <= MIG_BATCH_PAGES, "too many pages accepted");
			for (unsigned k = 0; k < n; k++)
				EXPECT(ents[k].region < 2 && ents[k].index < rpages[ents[k].region],
				       "out-of-range run accepted");
		}
	}
	printf("ok   page runs: round trips, ranges, lengths, random input\n");
}

/* --- engine level: a destination fed garbage, a source with a wrong key --- */

static uint8_t ram_src[64 * 4096], ram_dst[64 * 4096];

static int nop_load(void *o, const void *b, size_t l) { (void)o; (void)b; (void)l; return 0; }
static int nop_resume(void *o) { (void)o; return 0; }
static int nop_pause(void *o) { (void)o; return 0; }
static int nop_log_start(void *o) { (void)o; return 0; }
static int nop_log_sync(void *o, unsigned r, uint64_t *b) { (void)o; (void)r; (void)b; return 0; }
static int nop_save(void *o, void **b, size_t *l)
{
	(void)o;
	*b = calloc(1, 16);
	*l = 16;
	return *b ? 0 : -ENOMEM;
}

static const struct vmfs_precopy_ops dst_ops = { .load_state = nop_load, .resume = nop_resume };
static const struct vmfs_precopy_ops src_ops = {
	.log_start = nop_log_start, .log_sync = nop_log_sync, .pause = nop_pause,
	.resume = nop_resume, .save_state = nop_save,
};

struct dest_arg {
	int fd;
	const char *psk;
	int rc;
	char error[256];
};

static void *dest_main(void *p)
{
	struct dest_arg *a = p;
	struct vmfs_precopy_params pr = { .psk = a->psk, .psk_len = strlen(a->psk),
					  .io_timeout_ms = 3000 };
	struct vmfs_precopy *m;

	a->rc = vmfs_precopy_new(&m, VMFS_PRECOPY_DEST, &pr, &dst_ops, NULL);
	if (a->rc)
		return NULL;
	a->rc = vmfs_precopy_add_region(m, 0, sizeof(ram_dst), ram_dst);
	if (!a->rc)
		a->rc = vmfs_precopy_run(m, a->fd);
	snprintf(a->error, sizeof(a->error), "%s", vmfs_precopy_last_error(m));
	vmfs_precopy_free(m);
	shutdown(a->fd, SHUT_RDWR);
	return NULL;
}

static void test_dest_garbage(void)
{
	static uint8_t junk[8192];

	for (int round = 0; round < 40; round++) {
		struct dest_arg a = { .psk = "destination-key-0123456789" };
		int sv[2], wrc;
		pthread_t t;
		size_t len = 1 + rnd() % sizeof(junk);

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			abort();
		a.fd = sv[1];
		for (size_t k = 0; k < len; k++)
			junk[k] = (uint8_t)rnd();
		if (round % 3 == 1)	/* a real-looking HELLO header, bad tag */
			mig_hdr_encode(junk, &(struct mig_hdr){ .magic = MIG_MAGIC,
				.version = MIG_VERSION, .type = MIG_HELLO,
				.length = 8 + MIG_NONCE_LEN });
		if (round % 3 == 2)	/* absurd length */
			mig_hdr_encode(junk, &(struct mig_hdr){ .magic = MIG_MAGIC,
				.version = MIG_VERSION, .type = MIG_PAGES,
				.length = 0xfffffff0u });
		pthread_create(&t, NULL, dest_main, &a);
		wrc = write_full(sv[0], junk, len);
		(void)wrc;	/* the destination may hang up early */
		shutdown(sv[0], SHUT_WR);
		pthread_join(t, NULL);
		EXPECT(a.rc < 0, "garbage round %d accepted", round);
		EXPECT(a.error[0], "garbage round %d: no error text", round);
		close(sv[0]);
		close(sv[1]);
	}
	printf("ok   destination refuses garbage streams\n");
}

static void test_wrong_key(void)
{
	struct dest_arg a = { .psk = "destination-key-0123456789" };
	struct vmfs_precopy_params pr = { .psk = "the-source-has-another-key", .psk_len = 26,
					  .io_timeout_ms = 3000 };
	struct vmfs_precopy *m;
	pthread_t t;
	int sv[2], rc;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		abort();
	a.fd = sv[1];
	pthread_create(&t, NULL, dest_main, &a);
	rc = vmfs_precopy_new(&m, VMFS_PRECOPY_SOURCE, &pr, &src_ops, NULL);
	EXPECT(rc == 0, "new");
	rc = vmfs_precopy_add_region(m, 0, sizeof(ram_src), ram_src);
	EXPECT(rc == 0, "add_region");
	rc = vmfs_precopy_run(m, sv[0]);
	pthread_join(t, NULL);
	EXPECT(rc < 0, "source with the wrong key succeeded");
	EXPECT(a.rc == VMFS_PRECOPY_EAUTH, "destination: %d, want EAUTH", a.rc);
	EXPECT(strstr(a.error, "authentication failed"), "destination error text: %s", a.error);
	EXPECT(vmfs_precopy_status(m) == VMFS_PRECOPY_FAILED, "source status");
	printf("ok   wrong key: destination says \"%s\"; source says \"%s\"\n",
	       a.error, vmfs_precopy_last_error(m));
	vmfs_precopy_free(m);
	close(sv[0]);
	close(sv[1]);
}

/* Lane keys: distinct per lane and direction, lane 0 as in protocol 1, so
 * a frame moved to another connection (or reflected) does not verify. */
static void test_lane_keys(void)
{
	static const char psk[] = "a shared key of enough length";
	uint8_t ns[MIG_NONCE_LEN], nd[MIG_NONCE_LEN];
	uint8_t k[4][2][SHA256_LEN], f[MIG_HDR_LEN + 4 + MIG_TAG_LEN], pl[4] = { 1, 0, 0, 0 };
	struct mig_hdr h;
	size_t n;

	memset(ns, 1, sizeof(ns));
	memset(nd, 2, sizeof(nd));
	for (unsigned l = 0; l < 4; l++)
		mig_derive_keys(psk, sizeof(psk) - 1, ns, nd, l, k[l][0], k[l][1]);
	for (unsigned a = 0; a < 8; a++)
		for (unsigned b = a + 1; b < 8; b++)
			EXPECT(memcmp(k[a / 2][a % 2], k[b / 2][b % 2], SHA256_LEN),
			       "lane key %u equals %u", a, b);
	n = mig_frame_build(f, k[1][0], SHA256_LEN, MIG_JOIN, 0, pl, sizeof(pl));
	EXPECT(mig_frame_verify(f, n, k[1][0], SHA256_LEN, 0, &h) == 0, "JOIN refused");
	for (unsigned l = 0; l < 4; l++)
		EXPECT(l == 1 || mig_frame_verify(f, n, k[l][0], SHA256_LEN, 0, &h) ==
		       VMFS_PRECOPY_EAUTH, "lane 1 frame verifies on lane %u", l);
	EXPECT(mig_frame_verify(f, n, k[1][1], SHA256_LEN, 0, &h) == VMFS_PRECOPY_EAUTH,
	       "lane 1 frame verifies reflected");
	printf("ok   lane keys: per connection and direction\n");
}

int main(void)
{
	test_lane_keys();
	test_frames();
	test_pages();
	test_runs();
	test_dest_garbage();
	test_wrong_key();
	return failures ? 1 : 0;
}
