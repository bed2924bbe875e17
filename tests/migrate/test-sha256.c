/* test-sha256.c — SHA-256 (FIPS 180-4 examples) and HMAC-SHA256 (RFC 4231
 * test cases 1-7) of the migration stream. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "precopy/sha256.h"

static int failures;

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void check(const char *name, const uint8_t *got, size_t n, const char *want)
{
	char h[2 * SHA256_LEN + 1];

	hex(got, n, h);
	if (strcmp(h, want)) {
		printf("FAIL %s\n  got  %s\n  want %s\n", name, h, want);
		failures++;
	} else {
		printf("ok   %s\n", name);
	}
}

static void fill(uint8_t *b, uint8_t v, size_t n)
{
	memset(b, v, n);
}

static void vectors(void)
{
	uint8_t d[SHA256_LEN], key[131], data[200];
	struct sha256 s;
	char *million;

	sha256("abc", 3, d);
	check("sha256 abc", d, 32,
	      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha256("", 0, d);
	check("sha256 empty", d, 32,
	      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, d);
	check("sha256 448 bits", d, 32,
	      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	million = malloc(1000000);
	if (!million)
		exit(99);
	memset(million, 'a', 1000000);
	/* Fed in odd-sized pieces to exercise the block buffering. */
	sha256_init(&s);
	for (size_t off = 0; off < 1000000;) {
		size_t n = 1000000 - off < 997 ? 1000000 - off : 997;

		sha256_update(&s, million + off, n);
		off += n;
	}
	sha256_final(&s, d);
	check("sha256 million a", d, 32,
	      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);

	fill(key, 0x0b, 20);
	hmac_sha256(key, 20, "Hi There", 8, d);
	check("rfc4231 1", d, 32,
	      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
	check("rfc4231 2", d, 32,
	      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	fill(key, 0xaa, 20);
	fill(data, 0xdd, 50);
	hmac_sha256(key, 20, data, 50, d);
	check("rfc4231 3", d, 32,
	      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
	for (int i = 0; i < 25; i++)
		key[i] = (uint8_t)(i + 1);
	fill(data, 0xcd, 50);
	hmac_sha256(key, 25, data, 50, d);
	check("rfc4231 4", d, 32,
	      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
	fill(key, 0x0c, 20);
	hmac_sha256(key, 20, "Test With Truncation", 20, d);
	check("rfc4231 5 (128-bit truncation)", d, 16, "a3b6167473100ee06e0c796c2955552b");
	fill(key, 0xaa, 131);
	hmac_sha256(key, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54, d);
	check("rfc4231 6", d, 32,
	      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	{
		static const char m[] = "This is a test using a larger than block-size key "
			"and a larger than block-size data. The key needs to be hashed "
			"before being used by the HMAC algorithm.";

		hmac_sha256(key, 131, m, sizeof(m) - 1, d);
		check("rfc4231 7", d, 32,
		      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
	}
}

int main(void)
{
	/* Both compression functions against the same vectors. */
	sha256_select(0);
	printf("== portable C rounds\n");
	vectors();
	sha256_select(1);
	if (sha256_impl() == 1) {
		printf("== SHA-NI\n");
		vectors();
	} else {
		printf("== SHA-NI: not on this CPU\n");
	}
	if (ct_memcmp("abc", "abc", 3) || !ct_memcmp("abc", "abd", 3)) {
		printf("FAIL ct_memcmp\n");
		failures++;
	}
	return failures ? 1 : 0;
}
