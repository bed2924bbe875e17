/* stream.h — the migration stream: framing, checksum, authentication.
 *
 * Every frame on the wire is
 *
 *   header (24 bytes, little-endian)      payload (length bytes)   tag (32)
 *   magic "VMFM" | version | type | length | seq | flags | crc32c
 *
 * crc32c covers the header (crc field zero) and the payload: it tells a
 * corrupted frame (VMFS_PRECOPY_ECHECKSUM) from a forged one.  The tag is
 * HMAC-SHA256 over header and payload under a per-direction session key:
 *
 *   k_s2d = HMAC(psk, "vmfs-precopy s2d" | nonce_src | nonce_dst)
 *   k_d2s = HMAC(psk, "vmfs-precopy d2s" | nonce_src | nonce_dst)
 *
 * Both sides pick a fresh random 32-byte nonce per connection (HELLO,
 * HELLO_ACK), so a frame recorded from another connection never verifies,
 * and `seq` (in the header, so under the tag) counts frames per direction
 * from 0, so a frame replayed or dropped within a connection is refused.
 * HELLO itself is signed with the bare psk (it only carries a nonce).
 *
 * Versions: the header's `version` is the frame format (1, unchanged);
 * HELLO offers a range of protocol versions and HELLO_ACK picks one:
 *   1  one connection, no round barrier;
 *   2  adds SYNC/SYNC_ACK (a barrier at the end of each round, so the
 *      socket buffers may be large without inflating the downtime) and
 *      extra connections: SETUP's JSON asks for "connections": N, the
 *      SETUP_ACK grants n <= N (le32 0, le32 n), then the source opens
 *      n - 1 more connections, each starting with JOIN (le32 lane) signed
 *      with that lane's own keys (the label gets " lane" | le32 lane
 *      appended), seq from 0 per lane and direction.  Pages are striped
 *      by page index (MIG_STRIPE_PAGES per stripe, round robin), so every
 *      page always travels on the same connection and a newer copy can
 *      never overtake an older one.  Extra lanes carry only PAGES, SYNC
 *      and, last, LANE_END; all control frames use lane 0.
 *   3  pages travel in PAGE_RUNS frames instead of PAGES: one 16-byte
 *      entry per run of consecutive pages of one kind (zero or not), not
 *      per page.  PAGES spent 16 bytes of every 4 KiB page on its entry
 *      (0.4% of the stream: 2 MiB of a 512 MiB guest, 17 ms at 1 Gbit/s);
 *      a full batch of consecutive pages now costs one entry, like QEMU's
 *      RAM_SAVE_FLAG_CONTINUE.  Protocol 2 peers still get PAGES.
 *
 * Frame types are numbered and only ever appended to.
 */
#ifndef VMFS_PRECOPY_STREAM_H
#define VMFS_PRECOPY_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"
#include "le_bytes.h"

#define MIG_MAGIC 0x4d464d56u		/* "VMFM" read as little-endian */
#define MIG_VERSION 1u			/* frame format */
#define MIG_PROTO_MIN 1u		/* protocol versions we speak */
#define MIG_PROTO_MAX 3u
#define MIG_MAX_LANES 16u		/* connections per migration */
#define MIG_STRIPE_PAGES 256u		/* pages per stripe (a multiple of 64) */
#define MIG_HDR_LEN 24u
#define MIG_TAG_LEN SHA256_LEN
#define MIG_NONCE_LEN 32u
#define MIG_MAX_PAYLOAD (4u << 20)	/* size cap, checked before reading */
#define MIG_BATCH_PAGES 256u		/* pages per PAGES frame */
#define MIG_REASON_MAX 512u
#define MIG_SOCK_BUF (256 * 1024)	/* socket buffers (the kernel doubles it) */

enum mig_type {
	MIG_HELLO = 1,		/* S->D  le32 vmin, le32 vmax, nonce[32] */
	MIG_HELLO_ACK = 2,	/* D->S  le32 version, nonce[32] */
	MIG_SETUP = 3,		/* S->D  JSON: regions, page size, vm info */
	MIG_SETUP_ACK = 4,	/* D->S  le32 status, reason text */
	MIG_PAGES = 5,		/* S->D  page batch, see mig_pages_* */
	MIG_STATE = 6,		/* S->D  vCPU/device state blob */
	MIG_DONE = 7,		/* S->D  everything sent, VM paused */
	MIG_READY = 8,		/* D->S  state loaded, ready to resume */
	MIG_GO = 9,		/* S->D  switchover done, resume now */
	MIG_RESUMED = 10,	/* D->S  le32 load_ms, le32 resume_ms: the ack */
	MIG_ABORT = 11,		/* both  reason text */
	MIG_ROUND = 12,		/* S->D  le32 round (informational) */
	MIG_SYNC = 13,		/* S->D  le32 round; v2: answer when applied */
	MIG_SYNC_ACK = 14,	/* D->S  le32 round; v2 */
	MIG_JOIN = 15,		/* S->D  le32 lane: first frame of lane >= 1; v2 */
	MIG_LANE_END = 16,	/* S->D  last frame of lane >= 1; v2 */
	MIG_PAGE_RUNS = 17,	/* S->D  page batch as runs, see mig_page_runs_*; v3 */
	MIG_TYPE_MAX = 17,
};

struct mig_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t length;
	uint32_t seq;
	uint32_t flags;		/* reserved, zero */
	uint32_t crc;
};

/* One direction of one connection. */
struct mig_chan {
	int fd;
	uint8_t key[SHA256_LEN];	/* session key for this direction */
	bool keyed;			/* false: HELLO phase, psk used */
	uint32_t seq;			/* next sequence number */
	uint64_t bytes;			/* bytes moved */
};

/* Page batch: le32 count, le32 zero, count x {le32 region, le32 flags,
 * le64 index}, then 4096 bytes per entry without MIG_PAGE_ZERO. */
#define MIG_PAGE_ZERO 1u
#define MIG_PAGE_ENTRY_LEN 16u
struct mig_page_entry {
	uint32_t region;
	uint32_t flags;
	uint64_t index;
};

/* Run batch (v3): le32 count, le32 zero, count x {le32 region, le16 flags,
 * le16 pages, le64 first index}, then 4096 bytes per page of every run
 * without MIG_PAGE_ZERO, in order; at most MIG_BATCH_PAGES pages in all. */
#define MIG_RUN_ENTRY_LEN 16u

/* The newest protocol version this side offers or accepts (MIG_PROTO_MAX;
 * tests lower it to run an older peer).  Read when an engine is created. */
extern unsigned mig_proto_max;

void mig_hdr_encode(uint8_t out[MIG_HDR_LEN], const struct mig_hdr *h);
void mig_hdr_decode(struct mig_hdr *h, const uint8_t in[MIG_HDR_LEN]);
/* Validate a received header before its payload is read. */
int mig_hdr_check(const struct mig_hdr *h) __attribute__((warn_unused_result));

/* Session keys of lane `lane` (0 = the first connection, as in v1). */
void mig_derive_keys(const void *psk, size_t psk_len,
		     const uint8_t nonce_src[MIG_NONCE_LEN],
		     const uint8_t nonce_dst[MIG_NONCE_LEN], unsigned lane,
		     uint8_t k_s2d[SHA256_LEN], uint8_t k_d2s[SHA256_LEN]);

/* Header, checksum and tag of a frame whose payload is `a` then `b` (either
 * may be empty), without copying the payload: writes the header into
 * hdr[MIG_HDR_LEN] and the tag into tag[MIG_TAG_LEN].  For page batches,
 * whose pages are staged apart from their entries. */
void mig_frame_seal(uint8_t *hdr, uint8_t *tag, const uint8_t *key, size_t key_len,
		    uint16_t type, uint32_t seq, const uint8_t *a, size_t alen,
		    const uint8_t *b, size_t blen);
/* Build a complete frame (header, payload, tag) into `out`, which holds
 * MIG_HDR_LEN + len + MIG_TAG_LEN bytes; returns the frame length. */
size_t mig_frame_build(uint8_t *out, const uint8_t *key, size_t key_len,
		       uint16_t type, uint32_t seq, const void *payload, size_t len);
/* Check a complete received frame: header, checksum, tag, expected seq.
 * On success *h is the decoded header and the payload starts at
 * frame + MIG_HDR_LEN. */
int mig_frame_verify(const uint8_t *frame, size_t frame_len, const uint8_t *key,
		     size_t key_len, uint32_t want_seq, struct mig_hdr *h)
	__attribute__((warn_unused_result));

/* write_full for the peer socket, without SIGPIPE. */
int mig_write_full(int fd, const void *buf, size_t len)
	__attribute__((warn_unused_result));
/* The same for a frame in pieces (one sendmsg for all when it can). */
struct iovec;
int mig_writev_full(int fd, struct iovec *iov, int iovcnt)
	__attribute__((warn_unused_result));

/* Blocking send/receive on a channel.  `buf` for receive holds
 * MIG_HDR_LEN + MIG_MAX_PAYLOAD + MIG_TAG_LEN bytes. */
int mig_send(struct mig_chan *c, const void *psk, size_t psk_len, uint16_t type,
	     const void *payload, size_t len) __attribute__((warn_unused_result));
int mig_recv(struct mig_chan *c, const void *psk, size_t psk_len, uint8_t *buf,
	     struct mig_hdr *h) __attribute__((warn_unused_result));
/* The two halves of mig_recv: read one frame whose header passes
 * mig_hdr_check (not yet authenticated: do not act on it), then verify it
 * with the channel's key and sequence number. */
int mig_recv_raw(int fd, uint8_t *buf, struct mig_hdr *h)
	__attribute__((warn_unused_result));
int mig_recv_verify(struct mig_chan *c, const void *psk, size_t psk_len,
		    const uint8_t *buf, struct mig_hdr *h)
	__attribute__((warn_unused_result));

/* Decode and bounds-check a PAGES payload.  nregions/region_pages describe
 * the registered RAM.  On success *count entries are in `ents` (room for
 * MIG_BATCH_PAGES) and *data points at the first page's bytes. */
int mig_pages_decode(const uint8_t *payload, size_t len, unsigned nregions,
		     const uint64_t *region_pages, struct mig_page_entry *ents,
		     unsigned *count, const uint8_t **data)
	__attribute__((warn_unused_result));
/* The same for a PAGE_RUNS payload: the runs are checked and expanded into
 * one entry per page, so both batch kinds are applied the same way. */
int mig_page_runs_decode(const uint8_t *payload, size_t len, unsigned nregions,
			 const uint64_t *region_pages, struct mig_page_entry *ents,
			 unsigned *count, const uint8_t **data)
	__attribute__((warn_unused_result));
/* Encode `n` page entries (pages of one batch, in sending order) as runs
 * into `out` (room for 8 + n * MIG_RUN_ENTRY_LEN bytes); returns the
 * payload length before the page data. */
size_t mig_page_runs_encode(uint8_t *out, const struct mig_page_entry *ents, unsigned n);


#endif
