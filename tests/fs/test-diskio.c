/* test-diskio.c — the aio backend of fs/diskio.c: many threads, each with
 * its own io_context, write and read back batches (some larger than one
 * context's depth, so they are split); threads exit and new ones start
 * (their contexts are released and made again); fencing fails every I/O;
 * the disk is closed and reopened from the same thread.  The same rounds
 * again through diskio_submit (the shared context and its reaper): each
 * callback runs exactly once with the batch's result; a fenced submit
 * fails at once and never calls back; diskio_drain waits for them all.
 * Usage: test-diskio [DIR] (default $TMPDIR or /tmp: must support O_DIRECT,
 * else the test is skipped). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/diskio.h"

#define NTHREADS 8
#define SLICE (2u << 20)	/* bytes per thread */
#define PG 4096u

static struct diskio *disk;
static int failures;
static pthread_mutex_t fmu = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, int rc)
{
	pthread_mutex_lock(&fmu);
	fprintf(stderr, "FAIL: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	failures++;
	pthread_mutex_unlock(&fmu);
}

/* diskio_submit with a wait for its callback: the batch's result. */
struct acb {
	atomic_int calls;
	atomic_int rc;
};

static void acb_done(void *arg, int rc)
{
	struct acb *a = arg;

	atomic_store(&a->rc, rc);
	atomic_fetch_add(&a->calls, 1);
}

static int io(struct diskio_req *reqs, int n, bool async)
{
	struct acb a = { 0 };
	int rc;

	if (!async)
		return diskio_batch(disk, reqs, n);
	rc = diskio_submit(disk, reqs, n, acb_done, &a);
	if (rc)
		return rc;
	for (int i = 0; atomic_load(&a.calls) == 0; i++) {
		if (i > 60 * 10000)
			return -ETIMEDOUT;	/* the callback never came */
		usleep(100);
	}
	usleep(1000);	/* a second call would come about now */
	if (atomic_load(&a.calls) != 1) {
		fail("a batch's callback ran more than once", EPROTO);
		return -EPROTO;
	}
	return atomic_load(&a.rc);
}

/* Thread t, round r: write its slice as n requests of PG (n = 1, 7, 150:
 * 150 is more than one context's depth), read it back, compare. */
static void *worker(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg & 0xff, round = ((unsigned)(uintptr_t)arg >> 8) & 0xff;
	bool async = (uintptr_t)arg >> 16;
	static const int counts[] = { 1, 7, 150 };

	for (unsigned k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		int n = counts[k], rc;
		struct diskio_req *w = calloc((size_t)n, sizeof(*w)), *r = calloc((size_t)n, sizeof(*r));

		if (!w || !r) {
			fail("calloc", ENOMEM);
			free(w);
			free(r);
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			uint64_t off = (uint64_t)t * SLICE + (uint64_t)((i * 37) % (SLICE / PG)) * PG;

			w[i] = (struct diskio_req){ diskio_alloc(PG), PG, off, true };
			r[i] = (struct diskio_req){ diskio_alloc(PG), PG, off, false };
			if (!w[i].buf || !r[i].buf)
				abort();
			memset(w[i].buf, (int)(t * 31 + round * 7 + k + 1), PG);
			memcpy(w[i].buf, &off, sizeof(off));
		}
		rc = io(w, n, async);
		if (rc)
			fail("write batch", rc);
		rc = rc ? rc : io(r, n, async);
		if (rc)
			fail("read batch", rc);
		/* the offsets of one batch are distinct (37 is prime to 512) */
		for (int i = 0; !rc && i < n; i++)
			if (memcmp(w[i].buf, r[i].buf, PG)) {
				fail("data read back differs", EIO);
				break;
			}
		for (int i = 0; i < n; i++) {
			free(w[i].buf);
			free(r[i].buf);
		}
		free(w);
		free(r);
	}
	return NULL;
}

static int run_threads(unsigned round)
{
	pthread_t th[NTHREADS];

	for (unsigned t = 0; t < NTHREADS; t++)
		if (pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)(t | round << 8)))
			return -1;
	for (unsigned t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char path[4096];
	void *buf = diskio_alloc(PG);
	int fd, rc;

	snprintf(path, sizeof(path), "%s/test-diskio.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, (off_t)NTHREADS * SLICE) < 0 || !buf) {
		perror("test file");
		return 99;
	}
	close(fd);
	fd = open(path, O_RDWR | O_DIRECT);
	if (fd < 0) {
		printf("SKIP: %s does not support O_DIRECT\n", dir);
		unlink(path);
		return 77;
	}
	close(fd);
	for (unsigned pass = 0; pass < 2; pass++) {	/* reopen from the same thread */
		rc = diskio_open(path, DISKIO_AIO_DIRECT, false, &disk);
		if (rc) {
			fail("diskio_open", rc);
			break;
		}
		if (run_threads(pass * 2) || run_threads(pass * 2 + 1))	/* new threads */
			fail("pthread_create", EAGAIN);
		if (run_threads((pass * 2) | 1u << 8) || run_threads((pass * 2 + 1) | 1u << 8))
			fail("pthread_create", EAGAIN);	/* the same through diskio_submit */
		diskio_drain(disk);
		rc = diskio_pread(disk, buf, PG, 0);	/* the main thread's context */
		if (rc)
			fail("pread from the main thread", rc);
		diskio_fence(disk, true);
		rc = diskio_pread(disk, buf, PG, 0);
		if (rc != -EIO)
			fail("a fenced read did not fail with EIO", rc ? rc : EINVAL);
		{
			struct diskio_req r = { buf, PG, 0, false };
			struct acb a = { 0 };

			rc = diskio_submit(disk, &r, 1, acb_done, &a);
			if (rc != -EIO)
				fail("a fenced submit did not fail with EIO", rc ? rc : EINVAL);
			diskio_drain(disk);
			if (atomic_load(&a.calls))
				fail("a refused submit called back", EPROTO);
		}
		diskio_fence(disk, false);
		rc = diskio_pwrite(disk, buf, PG, PG);
		if (rc)
			fail("write after unfencing", rc);
		diskio_close(disk);
	}
	free(buf);
	unlink(path);
	if (failures)
		return 1;
	printf("PASS: %d threads x %d rounds x 2 opens, batch and submit\n", NTHREADS, 2);
	return 0;
}
