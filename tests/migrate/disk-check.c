/* disk-check.c — read the test guest's disk records straight from the file
 * (independently of vmfs-vmm) and check they are continuous: every
 * sequence number from the lowest to the highest present exactly once, in
 * its own block, with a valid check word, and none lost across migrations.
 * Usage: disk-check DISK [MIN_RESUMES]
 * Prints: records=N first=A last=B resumes=R; exits 1 on a gap. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "guest-abi.h"

int main(int argc, char **argv)
{
	struct guest_record r;
	uint8_t *blk;
	struct stat sb;
	uint64_t blocks, n = 0;
	uint32_t lo = UINT32_MAX, hi = 0, max_resume = 0;
	unsigned min_resumes = argc > 2 ? (unsigned)atoi(argv[2]) : 0;
	int fd, bad = 0;

	if (argc < 2)
		return 99;
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &sb))
		return 99;
	blocks = (uint64_t)sb.st_size / GUEST_BLK_SIZE;
	blk = malloc(GUEST_BLK_SIZE);
	if (!blk)
		return 99;
	for (uint64_t b = 0; b < blocks; b++) {
		if (pread_full(fd, blk, GUEST_BLK_SIZE, (off_t)(b * GUEST_BLK_SIZE)))
			return 99;
		memcpy(&r, blk, sizeof(r));
		if (r.magic != GUEST_REC_MAGIC)
			continue;
		if ((r.magic ^ r.seq ^ r.run_id ^ r.time_ms ^ r.resume_count) != r.check ||
		    r.seq % blocks != b) {
			printf("block %llu: bad record (seq %u)\n", (unsigned long long)b, r.seq);
			bad++;
			continue;
		}
		n++;
		if (r.seq < lo)
			lo = r.seq;
		if (r.seq > hi)
			hi = r.seq;
		if (r.resume_count > max_resume)
			max_resume = r.resume_count;
	}
	if (!n) {
		printf("no records\n");
		return 1;
	}
	/* The ring has not wrapped when hi < blocks: then lo must be 0. */
	if (hi < blocks && lo != 0) {
		printf("records before %u are missing\n", lo);
		bad++;
	}
	if ((uint64_t)(hi - lo) + 1 != n) {
		printf("gap: %llu records for sequence %u..%u\n", (unsigned long long)n, lo, hi);
		bad++;
	}
	if (max_resume < min_resumes) {
		printf("newest record saw %u resumes, expected at least %u\n", max_resume,
		       min_resumes);
		bad++;
	}
	printf("records=%llu first=%u last=%u resumes=%u\n", (unsigned long long)n, lo, hi,
	       max_resume);
	free(blk);
	close(fd);
	return bad ? 1 : 0;
}
