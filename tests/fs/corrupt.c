/* corrupt.c — find and damage vmfs metadata blocks, for the corruption
 * campaign.  It reads the image itself (no vmfs code), so it also hits
 * blocks the code under test would not look at.
 *   corrupt list IMAGE          print the byte offset of every 4 KiB block
 *                               that starts with the vmfs magic
 *   corrupt sblist IMAGE        the same for superblocks only (type 1 at
 *                               byte 4, little-endian 16 bits)
 *   corrupt flip IMAGE OFF SEED flip 1..8 random bytes of the block at OFF
 *                               (a third of the time inside its header)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	unsigned char blk[4096];
	int fd;

	if (argc == 3 && (!strcmp(argv[1], "list") || !strcmp(argv[1], "sblist"))) {
		int sb_only = !strcmp(argv[1], "sblist");
		off_t off = 0, data;

		fd = open(argv[2], O_RDONLY);
		if (fd < 0)
			return perror(argv[2]), 2;
		/* skip holes: images are sparse */
		while ((data = lseek(fd, off, SEEK_DATA)) >= 0) {
			off = data & ~(off_t)4095;
			if (pread(fd, blk, 4096, off) != 4096)
				break;
			if (!memcmp(blk, "VMFS", 4) && (!sb_only || (blk[4] == 1 && blk[5] == 0)))
				printf("%lld\n", (long long)off);
			off += 4096;
		}
		close(fd);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "flip")) {
		off_t off = strtoll(argv[3], NULL, 0);
		uint64_t s = strtoull(argv[4], NULL, 0) * 2654435761u + 1;
		int n;

		fd = open(argv[2], O_RDWR);
		if (fd < 0 || pread(fd, blk, 4096, off) != 4096)
			return perror(argv[2]), 2;
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		n = 1 + (int)(s % 8);
		for (int i = 0; i < n; i++) {
			unsigned pos, x;

			s ^= s << 13; s ^= s >> 7; s ^= s << 17;
			pos = (unsigned)(s % 3 == 0 ? (s >> 8) % 64 : (s >> 8) % 4096);
			x = (unsigned)((s >> 24) % 255) + 1;	/* never 0: a real change */
			blk[pos] ^= (unsigned char)x;
			printf("flip byte %u of block %lld with 0x%02x\n", pos, (long long)off, x);
		}
		if (pwrite(fd, blk, 4096, off) != 4096)
			return perror("pwrite"), 2;
		close(fd);
		return 0;
	}
	fprintf(stderr, "usage: corrupt list|sblist IMAGE | corrupt flip IMAGE OFFSET SEED\n");
	return 2;
}
