/* wb-order — writes answered before they complete (fs/wb.h) stay in order.
 *
 *   wb-order FILE [ROUNDS]
 *
 * FILE (on a vmfs mount, at least 8 MiB, written whole) is overwritten in
 * rounds, 1 MiB synchronous O_DIRECT writes, which vmfs-mount answers at
 * submission.  Each round writes blocks 0..7 with the round's pattern,
 * then block 0 again with pattern + 1 right behind its first write (two
 * writes to one place must land in the order they were answered), then
 * reads every block back at once, through this and a second descriptor,
 * and checks the latest pattern (a read waits for the writes it overlaps).
 * Then it reads blocks 0 and 1 in order, which makes vmfs-mount read
 * block 2 ahead, writes block 2 with pattern + 1 and reads it: the write
 * must make what was read ahead stale.
 * Then VMFS_IOC_DRAIN and fdatasync must succeed.  Exit 0, or 1 with the
 * first mismatch on stderr.
 *
 *   wb-order FILE 0 --check ROUNDS
 *
 * only checks that FILE holds what ROUNDS rounds left (after a remount).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmfs/fs.h"

#define BLK (1u << 20)
#define NBLK 8
/* What block k holds after a round with pattern pat: blocks 0 and 2 were
 * written again with pat + 1. */
#define WANT(pat, k) ((k) == 0 || (k) == 2 ? (pat) + 1 : (pat))

static void fill(uint8_t *b, unsigned pat, unsigned blk)
{
	for (size_t i = 0; i < BLK; i += 8) {
		uint64_t v = ((uint64_t)pat << 32) | ((uint64_t)blk << 24) | (i >> 3);

		memcpy(b + i, &v, 8);
	}
}

static int check(int fd, uint8_t *b, uint8_t *want, unsigned pat, unsigned blk, const char *via)
{
	ssize_t n = pread(fd, b, BLK, (off_t)blk * BLK);

	if (n != (ssize_t)BLK) {
		fprintf(stderr, "wb-order: read of block %u via %s: %s\n", blk, via,
			n < 0 ? strerror(errno) : "short");
		return 1;
	}
	fill(want, pat, blk);
	if (memcmp(b, want, BLK)) {
		uint64_t got;

		memcpy(&got, b, 8);
		fprintf(stderr, "wb-order: block %u via %s: pattern %u expected, found %llu\n",
			blk, via, pat, (unsigned long long)(got >> 32));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned rounds = argc > 2 ? (unsigned)atoi(argv[2]) : 50;
	uint8_t *b, *want;
	int fd, fd2;

	if (argc < 2) {
		fprintf(stderr, "usage: wb-order FILE [ROUNDS]\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_DIRECT);
	fd2 = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd < 0 || fd2 < 0 || posix_memalign((void **)&b, 4096, BLK) ||
	    posix_memalign((void **)&want, 4096, BLK)) {
		fprintf(stderr, "wb-order: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	if (argc > 4 && !strcmp(argv[3], "--check")) {
		unsigned pat = (unsigned)atoi(argv[4]) * 2;

		for (unsigned k = 0; k < NBLK; k++)
			if (check(fd, b, want, WANT(pat, k), k, "the file"))
				return 1;
		printf("wb-order: %s holds round %s\n", argv[1], argv[4]);
		return 0;
	}
	for (unsigned r = 1; r <= rounds; r++) {
		unsigned pat = r * 2;

		for (unsigned k = 0; k < NBLK; k++) {
			fill(b, pat, k);
			if (pwrite(fd, b, BLK, (off_t)k * BLK) != (ssize_t)BLK)
				goto werr;
			if (k == 0) {	/* the same place again, right behind */
				fill(b, pat + 1, 0);
				if (pwrite(fd, b, BLK, 0) != (ssize_t)BLK)
					goto werr;
			}
		}
		for (unsigned k = 0; k < NBLK; k++)
			if (check(k % 2 ? fd2 : fd, b, want, k ? pat : pat + 1, k,
				  k % 2 ? "a second descriptor" : "the writer"))
				return 1;
		/* read-ahead: 0 then 1 in order reads 2 ahead */
		if (check(fd, b, want, pat + 1, 0, "the writer") ||
		    check(fd, b, want, pat, 1, "the writer"))
			return 1;
		fill(b, pat + 1, 2);
		if (pwrite(fd, b, BLK, 2 * (off_t)BLK) != (ssize_t)BLK)
			goto werr;
		if (check(fd, b, want, pat + 1, 2, "the writer after a read-ahead"))
			return 1;
	}
	if (ioctl(fd, VMFS_IOC_DRAIN)) {
		fprintf(stderr, "wb-order: VMFS_IOC_DRAIN: %s\n", strerror(errno));
		return 1;
	}
	if (fdatasync(fd) || close(fd2) || close(fd)) {
		fprintf(stderr, "wb-order: fdatasync/close: %s\n", strerror(errno));
		return 1;
	}
	printf("wb-order: %u rounds in order\n", rounds);
	return 0;
werr:
	fprintf(stderr, "wb-order: write: %s\n", strerror(errno));
	return 1;
}
