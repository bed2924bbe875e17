/* fsx.c — random file operations against a reference model (fsx style).
 *
 * usage: fsx [-s SEED] [-n OPS] [-l MAXLEN] [-v] [-k MODEL] FILE
 * With -k the file is kept and the expected contents are written to MODEL
 * (outside the filesystem under test), so a caller can compare after a
 * remount.
 *
 * Operations: write (any offset/length, often unaligned, sometimes far past
 * EOF), read and compare, truncate up/down, fallocate (allocate, keep-size,
 * punch hole), SEEK_DATA/SEEK_HOLE sanity, fsync, close+reopen.  The model
 * is a byte array of the expected contents.  Every failure prints the seed
 * and the operation number; the same seed replays the same sequence.
 * Exit 0 = all good, 1 = mismatch/error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_state;
static uint64_t rnd(void)
{
	/* xorshift64*: deterministic per seed on every platform */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}
static uint64_t rndn(uint64_t n) { return n ? rnd() % n : 0; }

static unsigned char *model;
static uint64_t msize, maxlen;
static const char *path;
static int fd = -1, verbose;
static unsigned long opno;
static uint64_t seed;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fsx: FAILED at op %lu (seed %" PRIu64 "): ", opno, seed);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nfsx: replay with: fsx -s %" PRIu64 " ...\n", seed);
	exit(1);
}

static void xpwrite(const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);

		if (n < 0)
			fail("pwrite(%zu @ %lld): %s", len, (long long)off, strerror(errno));
		done += (size_t)n;
	}
}

static void check_range(uint64_t off, uint64_t len)
{
	unsigned char *buf = malloc(len ? len : 1);
	uint64_t done = 0;

	if (!buf)
		fail("out of memory");
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0)
			fail("pread(%" PRIu64 " @ %" PRIu64 "): %s", len, off, strerror(errno));
		if (n == 0)
			break;
		done += (uint64_t)n;
	}
	if (done != len)
		fail("short read: %" PRIu64 " of %" PRIu64 " @ %" PRIu64 " (model size %" PRIu64 ")",
		     done, len, off, msize);
	for (uint64_t i = 0; i < len; i++)
		if (buf[i] != model[off + i])
			fail("data mismatch at byte %" PRIu64 ": file 0x%02x model 0x%02x (read %" PRIu64
			     " @ %" PRIu64 ")", off + i, buf[i], model[off + i], len, off);
	free(buf);
}

static void check_size(void)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		fail("fstat: %s", strerror(errno));
	if ((uint64_t)st.st_size != msize)
		fail("size %lld, model %" PRIu64, (long long)st.st_size, msize);
}

static void op_write(void)
{
	uint64_t off, len = 1 + rndn(rnd() % 4 ? 70000 : 2 * 1024 * 1024);
	unsigned char *buf;

	if (rnd() % 8 == 0)
		off = rndn(maxlen);			/* anywhere, maybe far past EOF */
	else
		off = rndn(msize + 1);
	if (rnd() % 3 == 0) {				/* aligned I/O, the VM image case */
		off &= ~4095ull;
		len = (len + 4095) & ~4095ull;
	}
	if (off + len > maxlen)
		len = maxlen - off;
	if (len == 0)
		return;
	buf = malloc(len);
	for (uint64_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(rnd() >> 56);
	if (verbose)
		printf("%lu write %" PRIu64 " @ %" PRIu64 "\n", opno, len, off);
	xpwrite(buf, len, (off_t)off);
	memcpy(model + off, buf, len);
	if (off + len > msize)
		msize = off + len;
	free(buf);
}

static void op_read(void)
{
	uint64_t off = rndn(msize + 1), len = rndn(rnd() % 4 ? 70000 : 2 * 1024 * 1024);

	if (off + len > msize)
		len = msize - off;
	if (verbose)
		printf("%lu read %" PRIu64 " @ %" PRIu64 "\n", opno, len, off);
	check_range(off, len);
}

static void op_truncate(void)
{
	/* now and then to zero: a small file starts again inline */
	uint64_t ns = rnd() % 8 == 0 ? 0 : rnd() % 2 ? rndn(msize + 1) : rndn(maxlen);

	if (verbose)
		printf("%lu truncate %" PRIu64 " -> %" PRIu64 "\n", opno, msize, ns);
	if (ftruncate(fd, (off_t)ns) < 0)
		fail("ftruncate(%" PRIu64 "): %s", ns, strerror(errno));
	if (ns > msize)
		memset(model + msize, 0, ns - msize);
	else
		memset(model + ns, 0, msize - ns);	/* keeps later extensions zero */
	msize = ns;
}

static void op_fallocate(void)
{
	uint64_t off = rndn(msize + 1), len = 1 + rndn(3 * 1024 * 1024);
	int mode;

	if (off + len > maxlen)
		len = maxlen - off;
	if (len == 0)
		return;
	switch (rndn(3)) {
	case 0: mode = 0; break;
	case 1: mode = FALLOC_FL_KEEP_SIZE; break;
	default: mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; break;
	}
	if (verbose)
		printf("%lu fallocate mode %d %" PRIu64 " @ %" PRIu64 "\n", opno, mode, len, off);
	if (fallocate(fd, mode, (off_t)off, (off_t)len) < 0)
		fail("fallocate(mode %d, %" PRIu64 " @ %" PRIu64 "): %s", mode, len, off,
		     strerror(errno));
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		uint64_t end = off + len < msize ? off + len : msize;

		if (end > off)
			memset(model + off, 0, end - off);
	} else if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > msize) {
		memset(model + msize, 0, off + len - msize);
		msize = off + len;
	}
}

static void op_seek(void)
{
	uint64_t off = rndn(msize + 1);
	off_t d = lseek(fd, (off_t)off, SEEK_DATA), h = lseek(fd, (off_t)off, SEEK_HOLE);

	if (verbose)
		printf("%lu seek @ %" PRIu64 " data %lld hole %lld\n", opno, off, (long long)d,
		       (long long)h);
	if (off >= msize) {
		if (d != -1 || errno != ENXIO)
			fail("SEEK_DATA at/after EOF %" PRIu64 " gave %lld", off, (long long)d);
		return;
	}
	/* holes must read as zeros; data between off and the data offset too */
	if (h < (off_t)off || (uint64_t)h > msize)
		fail("SEEK_HOLE(%" PRIu64 ") = %lld, size %" PRIu64, off, (long long)h, msize);
	for (uint64_t i = off; d >= 0 && i < (uint64_t)d && i < msize; i++)
		if (model[i])
			fail("SEEK_DATA(%" PRIu64 ") = %lld skips nonzero byte %" PRIu64, off,
			     (long long)d, i);
	if (d < 0) {
		for (uint64_t i = off; i < msize; i++)
			if (model[i])
				fail("SEEK_DATA(%" PRIu64 ") = ENXIO but byte %" PRIu64 " is data", off, i);
	}
}

static void reopen(void)
{
	if (fd >= 0 && close(fd) < 0)
		fail("close: %s", strerror(errno));
	fd = open(path, O_RDWR);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
}

int main(int argc, char **argv)
{
	unsigned long nops = 2000;
	const char *keep = NULL;
	int c;

	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	maxlen = 24ull << 20;
	while ((c = getopt(argc, argv, "s:n:l:vk:")) != -1) {
		switch (c) {
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'n': nops = strtoul(optarg, NULL, 0); break;
		case 'l': maxlen = strtoull(optarg, NULL, 0); break;
		case 'v': verbose = 1; break;
		case 'k': keep = optarg; break;
		default:
			fprintf(stderr, "usage: fsx [-s SEED] [-n OPS] [-l MAXLEN] [-v] [-k MODEL] FILE\n");
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: fsx [-s SEED] [-n OPS] [-l MAXLEN] [-v] [-k MODEL] FILE\n");
		return 2;
	}
	path = argv[optind];
	rng_state = seed ? seed : 1;
	printf("fsx: seed %" PRIu64 ", %lu ops, max length %" PRIu64 ", file %s\n", seed, nops,
	       maxlen, path);
	model = calloc(1, maxlen);
	if (!model)
		return 1;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("create %s: %s", path, strerror(errno));
	for (opno = 1; opno <= nops; opno++) {
		uint64_t r = rndn(100);

		if (r < 35)
			op_write();
		else if (r < 55)
			op_read();
		else if (r < 63)
			op_truncate();
		else if (r < 73)
			op_fallocate();
		else if (r < 83)
			op_seek();
		else if (r < 88) {
			if ((rnd() % 2 ? fsync(fd) : fdatasync(fd)) < 0)
				fail("fsync: %s", strerror(errno));
		} else if (r < 92) {
			reopen();
		} else {
			check_size();
			check_range(0, msize);
		}
	}
	check_size();
	check_range(0, msize);
	if (keep) {
		/* save the model next to the file so a later run can compare */
		FILE *f = fopen(keep, "w");

		if (!f || fwrite(model, 1, msize, f) != msize || fclose(f))
			fail("writing the model %s", keep);
	} else if (unlink(path) < 0) {
		fail("unlink: %s", strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	printf("fsx: %lu ops OK (seed %" PRIu64 ", final size %" PRIu64 ")\n", nops, seed, msize);
	free(model);
	return 0;
}
