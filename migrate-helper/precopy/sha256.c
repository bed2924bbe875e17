/* sha256.c — SHA-256 and HMAC-SHA256, written from FIPS 180-4 and RFC 2104. */
#include "config.h"
#include "sha256.h"

#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHANI_PATH 1
#endif

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

static void compress_generic(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, k;

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = h[0]; b = h[1]; c = h[2]; d = h[3];
	e = h[4]; f = h[5]; g = h[6]; k = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) +
			      ((e & f) ^ (~e & g)) + K[i] + w[i];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) +
			      ((a & b) ^ (a & c) ^ (b & c));
		k = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d;
	h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

#ifdef HAVE_SHANI_PATH
/* The SHA extensions (SHA-NI) do two rounds per sha256rnds2 on the state
 * kept as ABEF/CDGH; the message schedule uses sha256msg1/msg2.  Several
 * times faster than the C rounds, which matters: every migrated byte is
 * MACed on both hosts. */
__attribute__((target("sha,sse4.1")))
static void compress_shani(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);
	__m128i st0, st1, tmp, abef, cdgh, w[4], msg;

	tmp = _mm_loadu_si128((const __m128i *)(const void *)&h[0]);	/* DCBA */
	st1 = _mm_loadu_si128((const __m128i *)(const void *)&h[4]);	/* HGFE */
	tmp = _mm_shuffle_epi32(tmp, 0xb1);				/* CDAB */
	st1 = _mm_shuffle_epi32(st1, 0x1b);				/* EFGH */
	st0 = _mm_alignr_epi8(tmp, st1, 8);				/* ABEF */
	st1 = _mm_blend_epi16(st1, tmp, 0xf0);				/* CDGH */
	/* All blocks of one update with the state in registers; the group
	 * loop unrolled so the schedule w[] stays in registers too (a
	 * frame's MAC is thousands of blocks: this is the hot loop). */
	for (; nblocks; nblocks--, p += SHA256_BLOCK) {
		abef = st0;
		cdgh = st1;
#pragma GCC unroll 16
		for (int g = 0; g < 16; g++) {
			__m128i cur;

			if (g < 4) {
				cur = _mm_shuffle_epi8(_mm_loadu_si128(
					(const __m128i *)(const void *)(p + 16 * g)), bswap);
			} else {
				/* W[t..t+3] from the groups t-16, t-12, t-8..t-5, t-4..t-1. */
				cur = _mm_sha256msg1_epu32(w[g & 3], w[(g + 1) & 3]);
				cur = _mm_add_epi32(cur, _mm_alignr_epi8(w[(g + 3) & 3],
									 w[(g + 2) & 3], 4));
				cur = _mm_sha256msg2_epu32(cur, w[(g + 3) & 3]);
			}
			w[g & 3] = cur;
			msg = _mm_add_epi32(cur, _mm_loadu_si128(
				(const __m128i *)(const void *)&K[4 * g]));
			st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
			msg = _mm_shuffle_epi32(msg, 0x0e);
			st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
		}
		st0 = _mm_add_epi32(st0, abef);
		st1 = _mm_add_epi32(st1, cdgh);
	}
	tmp = _mm_shuffle_epi32(st0, 0x1b);				/* FEBA */
	st1 = _mm_shuffle_epi32(st1, 0xb1);				/* DCHG */
	st0 = _mm_blend_epi16(tmp, st1, 0xf0);				/* DCBA */
	st1 = _mm_alignr_epi8(st1, tmp, 8);				/* HGFE */
	_mm_storeu_si128((__m128i *)(void *)&h[0], st0);
	_mm_storeu_si128((__m128i *)(void *)&h[4], st1);
}

static bool cpu_has_shani(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 29)))
		return false;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return false;
	return (c & (1u << 19)) && (c & (1u << 9));	/* SSE4.1, SSSE3 */
}
#endif

/* -1 unknown, 0 generic, 1 SHA-NI; a benign race sets it to one value. */
static int use_shani = -1;

void sha256_select(int impl)
{
#ifdef HAVE_SHANI_PATH
	use_shani = impl < 0 ? (cpu_has_shani() ? 1 : 0) : (impl && cpu_has_shani());
#else
	(void)impl;
	use_shani = 0;
#endif
}

int sha256_impl(void)
{
	if (use_shani < 0)
		sha256_select(-1);
	return use_shani;
}

static void compress(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
#ifdef HAVE_SHANI_PATH
	if (sha256_impl() == 1) {
		compress_shani(h, p, nblocks);
		return;
	}
#endif
	for (; nblocks; nblocks--, p += SHA256_BLOCK)
		compress_generic(h, p);
}

void sha256_init(struct sha256 *s)
{
	static const uint32_t iv[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};

	memcpy(s->h, iv, sizeof(iv));
	s->total = 0;
	s->used = 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	s->total += len;
	if (s->used) {
		size_t take = SHA256_BLOCK - s->used;

		if (take > len)
			take = len;
		memcpy(s->buf + s->used, p, take);
		s->used += take;
		p += take;
		len -= take;
		if (s->used < SHA256_BLOCK)
			return;
		compress(s->h, s->buf, 1);
		s->used = 0;
	}
	if (len >= SHA256_BLOCK) {
		size_t n = len / SHA256_BLOCK;

		compress(s->h, p, n);
		p += n * SHA256_BLOCK;
		len -= n * SHA256_BLOCK;
	}
	memcpy(s->buf, p, len);
	s->used = len;
}

void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN])
{
	uint64_t bits = s->total * 8;
	uint8_t pad[SHA256_BLOCK + 8] = { 0x80 };
	size_t padlen = (s->used < 56) ? 56 - s->used : 120 - s->used;

	for (int i = 0; i < 8; i++)
		pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(s, pad, padlen + 8);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}

void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN])
{
	struct sha256 s;

	sha256_init(&s);
	sha256_update(&s, data, len);
	sha256_final(&s, out);
}

void hmac_sha256_init(struct hmac_sha256 *h, const void *key, size_t key_len)
{
	uint8_t k[SHA256_BLOCK] = { 0 }, pad[SHA256_BLOCK];

	/* Keys longer than a block are hashed first (RFC 2104 section 2). */
	if (key_len > SHA256_BLOCK)
		sha256(key, key_len, k);
	else if (key_len)
		memcpy(k, key, key_len);
	for (int i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	sha256_init(&h->inner);
	sha256_update(&h->inner, pad, sizeof(pad));
	for (int i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	sha256_init(&h->outer);
	sha256_update(&h->outer, pad, sizeof(pad));
}

void hmac_sha256_update(struct hmac_sha256 *h, const void *data, size_t len)
{
	sha256_update(&h->inner, data, len);
}

void hmac_sha256_final(struct hmac_sha256 *h, uint8_t out[SHA256_LEN])
{
	uint8_t ih[SHA256_LEN];

	sha256_final(&h->inner, ih);
	sha256_update(&h->outer, ih, sizeof(ih));
	sha256_final(&h->outer, out);
}

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		 uint8_t out[SHA256_LEN])
{
	struct hmac_sha256 h;

	hmac_sha256_init(&h, key, key_len);
	hmac_sha256_update(&h, data, len);
	hmac_sha256_final(&h, out);
}

int ct_memcmp(const void *a, const void *b, size_t len)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;

	for (size_t i = 0; i < len; i++)
		d |= x[i] ^ y[i];
	return d;
}
