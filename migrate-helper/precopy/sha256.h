/* sha256.h — SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) for the
 * migration stream.  Internal to libvmfs-precopy; tested against the FIPS
 * examples and the RFC 4231 vectors in tests/migrate/test-sha256.c. */
#ifndef VMFS_PRECOPY_SHA256_H
#define VMFS_PRECOPY_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_BLOCK 64

struct sha256 {
	uint32_t h[8];
	uint64_t total;			/* bytes fed so far */
	uint8_t buf[SHA256_BLOCK];
	size_t used;			/* bytes waiting in buf */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t out[SHA256_LEN]);
void sha256(const void *data, size_t len, uint8_t out[SHA256_LEN]);

struct hmac_sha256 {
	struct sha256 inner;
	struct sha256 outer;
};

void hmac_sha256_init(struct hmac_sha256 *h, const void *key, size_t key_len);
void hmac_sha256_update(struct hmac_sha256 *h, const void *data, size_t len);
void hmac_sha256_final(struct hmac_sha256 *h, uint8_t out[SHA256_LEN]);
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
		 uint8_t out[SHA256_LEN]);

/* Pick the compression function: -1 best available (the default), 0 the
 * portable C rounds, 1 SHA-NI if the CPU has it.  sha256_impl() says which
 * is in use (tests run the vectors through both). */
void sha256_select(int impl);
int sha256_impl(void);

/* Constant-time comparison: 0 when equal.  Tags are compared with this so
 * the time taken does not tell an attacker how many bytes matched. */
int ct_memcmp(const void *a, const void *b, size_t len);

#endif
