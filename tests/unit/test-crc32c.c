/* test-crc32c — both CRC32C implementations against the standard check
 * value, known vectors, and each other on random buffers at every
 * alignment and length (seed printed; TEST_SEED replays). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crc32c.h"

static int failures;

static void expect(const char *what, uint32_t got, uint32_t want)
{
	if (got != want) {
		printf("FAIL %s: got %08x want %08x\n", what, got, want);
		failures++;
	}
}

int main(void)
{
	static uint8_t buf[4096 + 16];
	uint8_t zeros[32] = { 0 }, ones[32];
	unsigned seed = getenv("TEST_SEED") ? (unsigned)atoi(getenv("TEST_SEED")) : (unsigned)time(NULL);

	printf("seed %u, hardware crc32c: %s\n", seed, crc32c_hw_available() ? "yes" : "no");
	memset(ones, 0xff, sizeof(ones));
	/* RFC 3720 B.4 vectors and the usual check value of "123456789". */
	expect("check", crc32c(0, "123456789", 9), 0xe3069283);
	expect("zeros", crc32c(0, zeros, 32), 0x8a9136aa);
	expect("ones", crc32c(0, ones, 32), 0x62a8ab43);
	expect("sw check", crc32c_sw(0, "123456789", 9), 0xe3069283);
	expect("hw check", crc32c_hw(0, "123456789", 9), 0xe3069283);
	/* Continuation: crc of a+b == crc(crc(a), b). */
	expect("split", crc32c(crc32c(0, "12345", 5), "6789", 4), 0xe3069283);

	srand(seed);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand();
	for (int n = 0; n < 3000; n++) {
		size_t off = (size_t)rand() % 16, len = (size_t)rand() % 4096;
		char what[64];

		snprintf(what, sizeof(what), "random off %zu len %zu", off, len);
		expect(what, crc32c_hw(7, buf + off, len), crc32c_sw(7, buf + off, len));
	}
	printf("%s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
