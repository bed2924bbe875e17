/* stream.c — frame encode/verify and channel I/O for the migration stream. */
#include "config.h"
#include "stream.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "crc32c.h"
#include "io.h"
#include "vmfs/precopy.h"

_Static_assert(MIG_HDR_LEN == 6 * 4, "header is six 32-bit words");
_Static_assert(MIG_BATCH_PAGES <= 0xffff, "a run's page count fits in 16 bits");

unsigned mig_proto_max = MIG_PROTO_MAX;
_Static_assert(MIG_BATCH_PAGES * (MIG_PAGE_ENTRY_LEN + VMFS_PRECOPY_PAGE_SIZE) + 8 <=
	       MIG_MAX_PAYLOAD, "a full page batch fits under the cap");

void mig_hdr_encode(uint8_t out[MIG_HDR_LEN], const struct mig_hdr *h)
{
	put_le32(out, h->magic);
	put_le16(out + 4, h->version);
	put_le16(out + 6, h->type);
	put_le32(out + 8, h->length);
	put_le32(out + 12, h->seq);
	put_le32(out + 16, h->flags);
	put_le32(out + 20, h->crc);
}

void mig_hdr_decode(struct mig_hdr *h, const uint8_t in[MIG_HDR_LEN])
{
	h->magic = get_le32(in);
	h->version = get_le16(in + 4);
	h->type = get_le16(in + 6);
	h->length = get_le32(in + 8);
	h->seq = get_le32(in + 12);
	h->flags = get_le32(in + 16);
	h->crc = get_le32(in + 20);
}

int mig_hdr_check(const struct mig_hdr *h)
{
	if (h->magic != MIG_MAGIC)
		return VMFS_PRECOPY_EBADMAGIC;
	if (h->version != MIG_VERSION)
		return VMFS_PRECOPY_EVERSION;
	if (h->length > MIG_MAX_PAYLOAD)
		return VMFS_PRECOPY_ETOOBIG;
	if (h->type == 0 || h->type > MIG_TYPE_MAX || h->flags != 0)
		return VMFS_PRECOPY_EPROTO;
	return 0;
}

void mig_derive_keys(const void *psk, size_t psk_len,
		     const uint8_t nonce_src[MIG_NONCE_LEN],
		     const uint8_t nonce_dst[MIG_NONCE_LEN], unsigned lane,
		     uint8_t k_s2d[SHA256_LEN], uint8_t k_d2s[SHA256_LEN])
{
	static const char l_s2d[] = "vmfs-precopy s2d", l_d2s[] = "vmfs-precopy d2s";
	static const char l_lane[] = " lane";
	const char *label[2] = { l_s2d, l_d2s };
	uint8_t *out[2] = { k_s2d, k_d2s }, nr[4];
	struct hmac_sha256 h;

	put_le32(nr, lane);
	for (int d = 0; d < 2; d++) {
		hmac_sha256_init(&h, psk, psk_len);
		hmac_sha256_update(&h, label[d], sizeof(l_s2d) - 1);
		/* Lane 0 keeps the v1 derivation; every other lane has keys of
		 * its own, so a frame cannot be moved between connections. */
		if (lane) {
			hmac_sha256_update(&h, l_lane, sizeof(l_lane) - 1);
			hmac_sha256_update(&h, nr, sizeof(nr));
		}
		hmac_sha256_update(&h, nonce_src, MIG_NONCE_LEN);
		hmac_sha256_update(&h, nonce_dst, MIG_NONCE_LEN);
		hmac_sha256_final(&h, out[d]);
	}
}

/* The payload may come in two pieces (see mig_frame_seal). */
static uint32_t frame_crc(const uint8_t *hdr, const uint8_t *a, size_t alen,
			  const uint8_t *b, size_t blen)
{
	static const uint8_t zero[4];
	uint32_t crc = crc32c(0, hdr, MIG_HDR_LEN - 4);

	crc = crc32c(crc, zero, sizeof(zero));
	crc = crc32c(crc, a, alen);
	return blen ? crc32c(crc, b, blen) : crc;
}

void mig_frame_seal(uint8_t *hdr, uint8_t *tag, const uint8_t *key, size_t key_len,
		    uint16_t type, uint32_t seq, const uint8_t *a, size_t alen,
		    const uint8_t *b, size_t blen)
{
	struct mig_hdr h = {
		.magic = MIG_MAGIC, .version = MIG_VERSION, .type = type,
		.length = (uint32_t)(alen + blen), .seq = seq,
	};
	struct hmac_sha256 mac;

	mig_hdr_encode(hdr, &h);
	h.crc = frame_crc(hdr, a, alen, b, blen);
	put_le32(hdr + 20, h.crc);
	hmac_sha256_init(&mac, key, key_len);
	hmac_sha256_update(&mac, hdr, MIG_HDR_LEN);
	if (alen)
		hmac_sha256_update(&mac, a, alen);
	if (blen)
		hmac_sha256_update(&mac, b, blen);
	hmac_sha256_final(&mac, tag);
}

size_t mig_frame_build(uint8_t *out, const uint8_t *key, size_t key_len,
		       uint16_t type, uint32_t seq, const void *payload, size_t len)
{
	if (payload && len && out + MIG_HDR_LEN != payload)
		memmove(out + MIG_HDR_LEN, payload, len);
	mig_frame_seal(out, out + MIG_HDR_LEN + len, key, key_len, type, seq,
		       out + MIG_HDR_LEN, len, NULL, 0);
	return MIG_HDR_LEN + len + MIG_TAG_LEN;
}

int mig_frame_verify(const uint8_t *frame, size_t frame_len, const uint8_t *key,
		     size_t key_len, uint32_t want_seq, struct mig_hdr *h)
{
	uint8_t tag[MIG_TAG_LEN];
	int rc;

	if (frame_len < MIG_HDR_LEN + MIG_TAG_LEN)
		return VMFS_PRECOPY_EPROTO;
	mig_hdr_decode(h, frame);
	rc = mig_hdr_check(h);
	if (rc)
		return rc;
	if ((size_t)h->length + MIG_HDR_LEN + MIG_TAG_LEN != frame_len)
		return VMFS_PRECOPY_EPROTO;
	if (frame_crc(frame, frame + MIG_HDR_LEN, h->length, NULL, 0) != h->crc)
		return VMFS_PRECOPY_ECHECKSUM;
	hmac_sha256(key, key_len, frame, MIG_HDR_LEN + h->length, tag);
	if (ct_memcmp(tag, frame + MIG_HDR_LEN + h->length, MIG_TAG_LEN))
		return VMFS_PRECOPY_EAUTH;
	/* Under the tag, so a mismatch is a replay or a dropped frame. */
	if (h->seq != want_seq)
		return VMFS_PRECOPY_EAUTH;
	return 0;
}

static void chan_key(const struct mig_chan *c, const void *psk, size_t psk_len,
		     const uint8_t **key, size_t *len)
{
	if (c->keyed) {
		*key = c->key;
		*len = sizeof(c->key);
	} else {
		*key = psk;
		*len = psk_len;
	}
}

int mig_write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		/* MSG_NOSIGNAL: a peer that went away is an error to roll back
		 * from, not a SIGPIPE that kills the hypervisor. */
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			return write_full(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int mig_writev_full(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt) {
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = writev(fd, iov, iovcnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		/* A partial send: skip what went, go on with the rest. */
		while (iovcnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int mig_send(struct mig_chan *c, const void *psk, size_t psk_len, uint16_t type,
	     const void *payload, size_t len)
{
	uint8_t small[MIG_HDR_LEN + 1024 + MIG_TAG_LEN];
	const uint8_t *key;
	size_t klen, n;
	int rc;

	/* Large payloads are built in place by the caller (see source.c); this
	 * path is for control frames only. */
	if (len > 1024)
		return -EMSGSIZE;
	chan_key(c, psk, psk_len, &key, &klen);
	n = mig_frame_build(small, key, klen, type, c->seq, payload, len);
	rc = mig_write_full(c->fd, small, n);
	if (rc)
		return rc;
	c->seq++;
	c->bytes += n;
	return 0;
}

int mig_recv_raw(int fd, uint8_t *buf, struct mig_hdr *h)
{
	int rc;

	rc = read_full(fd, buf, MIG_HDR_LEN);
	if (rc)
		return rc;
	mig_hdr_decode(h, buf);
	/* Refuse before reading (or allocating for) the payload. */
	rc = mig_hdr_check(h);
	if (rc)
		return rc;
	return read_full(fd, buf + MIG_HDR_LEN, h->length + MIG_TAG_LEN);
}

int mig_recv(struct mig_chan *c, const void *psk, size_t psk_len, uint8_t *buf,
	     struct mig_hdr *h)
{
	int rc = mig_recv_raw(c->fd, buf, h);

	return rc ? rc : mig_recv_verify(c, psk, psk_len, buf, h);
}

int mig_recv_verify(struct mig_chan *c, const void *psk, size_t psk_len,
		    const uint8_t *buf, struct mig_hdr *h)
{
	const uint8_t *key;
	size_t klen;
	int rc;

	chan_key(c, psk, psk_len, &key, &klen);
	rc = mig_frame_verify(buf, MIG_HDR_LEN + h->length + MIG_TAG_LEN, key, klen,
			      c->seq, h);
	if (rc)
		return rc;
	c->seq++;
	c->bytes += MIG_HDR_LEN + h->length + MIG_TAG_LEN;
	return 0;
}

/* Common checks of one decoded page (either batch kind). */
static bool page_ok(const struct mig_page_entry *e, unsigned nregions,
		    const uint64_t *region_pages)
{
	return e->region < nregions && e->index < region_pages[e->region] &&
	       !(e->flags & ~MIG_PAGE_ZERO);
}

int mig_pages_decode(const uint8_t *payload, size_t len, unsigned nregions,
		     const uint64_t *region_pages, struct mig_page_entry *ents,
		     unsigned *count, const uint8_t **data)
{
	size_t need;
	unsigned n, normal = 0;

	if (len < 8)
		return VMFS_PRECOPY_EPROTO;
	n = get_le32(payload);
	if (n == 0 || n > MIG_BATCH_PAGES || get_le32(payload + 4) != 0)
		return VMFS_PRECOPY_EPROTO;
	need = 8 + (size_t)n * MIG_PAGE_ENTRY_LEN;
	if (len < need)
		return VMFS_PRECOPY_EPROTO;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = payload + 8 + (size_t)i * MIG_PAGE_ENTRY_LEN;

		ents[i].region = get_le32(e);
		ents[i].flags = get_le32(e + 4);
		ents[i].index = get_le64(e + 8);
		if (!page_ok(&ents[i], nregions, region_pages))
			return VMFS_PRECOPY_EPROTO;
		if (!(ents[i].flags & MIG_PAGE_ZERO))
			normal++;
	}
	if (len != need + (size_t)normal * VMFS_PRECOPY_PAGE_SIZE)
		return VMFS_PRECOPY_EPROTO;
	*count = n;
	*data = payload + need;
	return 0;
}

int mig_page_runs_decode(const uint8_t *payload, size_t len, unsigned nregions,
			 const uint64_t *region_pages, struct mig_page_entry *ents,
			 unsigned *count, const uint8_t **data)
{
	size_t need;
	unsigned nruns, n = 0, normal = 0;

	if (len < 8)
		return VMFS_PRECOPY_EPROTO;
	nruns = get_le32(payload);
	if (nruns == 0 || nruns > MIG_BATCH_PAGES || get_le32(payload + 4) != 0)
		return VMFS_PRECOPY_EPROTO;
	need = 8 + (size_t)nruns * MIG_RUN_ENTRY_LEN;
	if (len < need)
		return VMFS_PRECOPY_EPROTO;
	for (unsigned i = 0; i < nruns; i++) {
		const uint8_t *e = payload + 8 + (size_t)i * MIG_RUN_ENTRY_LEN;
		struct mig_page_entry first = {
			.region = get_le32(e), .flags = get_le16(e + 4),
			.index = get_le64(e + 8),
		};
		unsigned pages = get_le16(e + 6);

		/* Checking the first page and that the last is in the region
		 * too covers every page of the run, without overflow. */
		if (pages == 0 || pages > MIG_BATCH_PAGES - n ||
		    !page_ok(&first, nregions, region_pages) ||
		    pages > region_pages[first.region] - first.index)
			return VMFS_PRECOPY_EPROTO;
		for (unsigned k = 0; k < pages; k++) {
			ents[n] = first;
			ents[n++].index = first.index + k;
		}
		if (!(first.flags & MIG_PAGE_ZERO))
			normal += pages;
	}
	if (len != need + (size_t)normal * VMFS_PRECOPY_PAGE_SIZE)
		return VMFS_PRECOPY_EPROTO;
	*count = n;
	*data = payload + need;
	return 0;
}

size_t mig_page_runs_encode(uint8_t *out, const struct mig_page_entry *ents, unsigned n)
{
	uint8_t *e = out + 8;
	unsigned nruns = 0;

	for (unsigned i = 0; i < n; ) {
		unsigned k = 1;

		/* A run: same region and kind, consecutive indexes. */
		while (i + k < n && ents[i + k].region == ents[i].region &&
		       ents[i + k].flags == ents[i].flags &&
		       ents[i + k].index == ents[i].index + k)
			k++;
		put_le32(e, ents[i].region);
		put_le16(e + 4, (uint16_t)ents[i].flags);
		put_le16(e + 6, (uint16_t)k);
		put_le64(e + 8, ents[i].index);
		e += MIG_RUN_ENTRY_LEN;
		nruns++;
		i += k;
	}
	put_le32(out, nruns);
	put_le32(out + 4, 0);
	return (size_t)(e - out);
}
