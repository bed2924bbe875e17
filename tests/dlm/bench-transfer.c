/* bench-transfer — latency of the disk-lock handoff (TRANSFER_SET).
 *
 * The situation of a live migration's switchover: a client of the source
 * host (the mount, in a migration) holds EX on a resource, the
 * destination's client has an EX request queued behind it, and another
 * client of the source (the hypervisor) calls vmfs_dlm_transfer_set() on
 * that pair.  What the paused guest waits for is that one call.  The
 * holder process has one handle for each role, so the LOST of the moved
 * lock goes to a handle that is not the caller's, as in a migration.
 *
 *   bench-transfer holder N DIR [set|single|warm [IDLE_US [GAP_US]]]
 *                                          host A: N handoffs
 *   bench-transfer waiter DIR              host B: queues the requests
 *
 * "warm" is the switchover of a migration with the ring warm-up: after the
 * IDLE_US of quiet (the ring is cold), vmfs_dlm_warm() as when the guest is
 * paused, then GAP_US (default 20 ms: the final dirty pages are being
 * sent), then the TRANSFER_SET that is timed.  The warm call's own time is
 * printed as warmcall_*.
 *
 * DIR is a directory both hosts see (the cluster's hosts share /tmp); the
 * two processes talk through two FIFOs in it, made by the holder:
 *
 *   holder                               waiter
 *   lock EX (uncontended)
 *   "go\n"            ----------->       lock_async EX; wait for its lkid
 *                     <-----------       "LKID\n"
 *   IDLE_US of quiet (default 20 ms)
 *   [warm: vmfs_dlm_warm(); GAP_US]
 *   t0; transfer_set(mine, epoch, LKID); t1
 *                                        wait for GRANTED; unlock
 *                     <-----------       "ok\n"
 *   ... N times, then "end\n"
 *
 * The holder prints one line of key=value figures (microseconds):
 * xfer_p50_us xfer_p90_us xfer_p99_us xfer_max_us, and the same for the
 * time until the waiter saw its grant (grant_*: t0 to the "ok", which
 * includes the waiter's unlock, so an upper bound).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmfs/dlm.h"

#define LS "bench"
#define RES "xfer"
#define TIMEOUT_MS 10000
#define IDLE_US 20000	/* default idle time before each handoff */
#define GAP_US 20000	/* warm: default time from the warm-up to the handoff */
#define WARM_MS 1000	/* warm: the warm-up asked for (ended by the handoff) */

static unsigned long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

static int cmp_ull(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;

	return x < y ? -1 : x > y;
}

static void print_pct(const char *what, unsigned long long *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_ull);
	printf("%s_p50_us=%llu %s_p90_us=%llu %s_p99_us=%llu %s_max_us=%llu ", what, v[n / 2],
	       what, v[(n * 9) / 10], what, v[(n * 99) / 100], what, v[n - 1]);
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench-transfer: %s: %s\n", what,
		rc < -4000 ? vmfs_dlm_strerror(rc) : strerror(-rc));
	exit(1);
}

/* --- the FIFO pair --------------------------------------------------------- */

struct chan {
	FILE *in;
	FILE *out;
};

static void chan_open(struct chan *c, const char *dir, bool holder)
{
	char a[4096], b[4096];

	snprintf(a, sizeof(a), "%s/xfer-to-waiter", dir);
	snprintf(b, sizeof(b), "%s/xfer-to-holder", dir);
	if (holder) {
		if ((mkfifo(a, 0600) < 0 && errno != EEXIST) ||
		    (mkfifo(b, 0600) < 0 && errno != EEXIST))
			die("mkfifo", -errno);
		/* Same open order on both sides, or each waits for the other. */
		c->out = fopen(a, "w");
		c->in = fopen(b, "r");
	} else {
		/* The holder may not have made them yet. */
		for (int i = 0; i < 1000 && access(a, F_OK) < 0; i++)
			usleep(10000);
		c->in = fopen(a, "r");
		c->out = c->in ? fopen(b, "w") : NULL;
	}
	if (!c->in || !c->out)
		die("open the FIFOs", -errno);
	setvbuf(c->out, NULL, _IOLBF, 0);
}

static void chan_put(struct chan *c, const char *line)
{
	if (fprintf(c->out, "%s\n", line) < 0 || fflush(c->out) != 0)
		die("write to the peer", -EPIPE);
}

static void chan_get(struct chan *c, char *buf, size_t len)
{
	if (!fgets(buf, (int)len, c->in))
		die("the peer went away", -EPIPE);
	buf[strcspn(buf, "\n")] = '\0';
}

/* --- waiter ---------------------------------------------------------------- */

struct wait_state {
	int done;
	struct vmfs_dlm_lksb lksb;
};

static void on_completion(void *arg, const struct vmfs_dlm_lksb *lksb)
{
	struct wait_state *w = arg;

	w->lksb = *lksb;
	w->done = 1;
}

/* Drive h's events until *flag is set. */
static void dispatch_until(vmfs_dlm_t *h, volatile int *flag, volatile uint64_t *lkid)
{
	unsigned long long end = now_us() + TIMEOUT_MS * 1000ULL;

	while (!(flag && *flag) && !(lkid && *lkid)) {
		struct pollfd p = { .fd = vmfs_dlm_fd(h), .events = POLLIN };

		if (now_us() > end)
			die("waiting for the lock manager", VMFS_DLM_ETIMEDOUT);
		if (poll(&p, 1, 100) < 0 && errno != EINTR)
			die("poll", -errno);
		vmfs_dlm_dispatch(h);
	}
}

static int run_waiter(const char *dir)
{
	struct vmfs_dlm_callbacks cb = { .completion = on_completion };
	struct chan c;
	vmfs_dlm_t *h;
	char line[64];
	int rc;

	rc = vmfs_dlm_open("bench-transfer", &h);
	if (rc < 0)
		die("connect to vmfs-dlmd", rc);
	vmfs_dlm_set_callbacks(h, &cb, NULL);
	chan_open(&c, dir, false);
	for (;;) {
		struct wait_state w = { 0 };
		volatile uint64_t lkid = 0;

		chan_get(&c, line, sizeof(line));
		if (strcmp(line, "end") == 0)
			break;
		rc = vmfs_dlm_lock_async(h, LS, RES, VMFS_DLM_EX, 0, "bench-waiter", &w,
					 (uint64_t *)&lkid);
		if (rc < 0)
			die("lock_async", rc);
		dispatch_until(h, NULL, &lkid);
		snprintf(line, sizeof(line), "%" PRIu64, (uint64_t)lkid);
		chan_put(&c, line);
		dispatch_until(h, &w.done, NULL);
		if (w.lksb.status < 0)
			die("the queued request", w.lksb.status);
		rc = vmfs_dlm_unlock(h, &w.lksb, 0);
		if (rc < 0)
			die("unlock", rc);
		chan_put(&c, "ok");
	}
	vmfs_dlm_close(h);
	return 0;
}

/* --- holder ---------------------------------------------------------------- */

static int run_holder(int n, const char *dir, bool single, bool warm, int idle_us, int gap_us)
{
	unsigned long long *xfer = calloc((size_t)n, sizeof(*xfer));
	unsigned long long *grant = calloc((size_t)n, sizeof(*grant));
	unsigned long long *wcall = calloc((size_t)n, sizeof(*wcall));
	struct chan c;
	vmfs_dlm_t *h, *hc;	/* holds the lock / calls the transfer */
	char line[64];
	int rc;

	if (!xfer || !grant || !wcall || n < 1)
		return 2;
	rc = vmfs_dlm_open("bench-transfer", &h);
	if (rc == 0)
		rc = vmfs_dlm_open("bench-transfer", &hc);
	if (rc < 0)
		die("connect to vmfs-dlmd", rc);
	chan_open(&c, dir, true);
	for (int i = 0; i < n; i++) {
		struct vmfs_dlm_lksb lk;
		struct vmfs_dlm_transfer t;
		unsigned long long t0;
		char *end;

		rc = vmfs_dlm_lock(h, LS, RES, VMFS_DLM_EX, 0, "bench-holder", TIMEOUT_MS, &lk);
		if (rc < 0)
			die("lock", rc);
		chan_put(&c, "go");
		chan_get(&c, line, sizeof(line));
		t.from = lk.lkid;
		t.from_epoch = lk.epoch;
		t.to = strtoull(line, &end, 10);
		if (*end || !t.to)
			die("bad lkid from the waiter", -EPROTO);
		/* In a migration the destination queued its request long
		 * before the switchover: let its traffic settle. */
		if (idle_us > 0)
			usleep((useconds_t)idle_us);
		if (warm) {
			/* the guest is paused now; the handoff comes after the
			 * final pages */
			t0 = now_us();
			rc = vmfs_dlm_warm(hc, WARM_MS);
			wcall[i] = now_us() - t0;
			if (rc < 0)
				die("warm", rc);
			if (gap_us > 0)
				usleep((useconds_t)gap_us);
		}
		t0 = now_us();
		rc = single ? vmfs_dlm_transfer(hc, t.from, t.from_epoch, t.to)
			    : vmfs_dlm_transfer_set(hc, &t, 1);
		xfer[i] = now_us() - t0;
		if (rc < 0)
			die("transfer", rc);
		chan_get(&c, line, sizeof(line));
		grant[i] = now_us() - t0;
		/* The LOST of our lock, so it does not pile up. */
		vmfs_dlm_dispatch(h);
	}
	chan_put(&c, "end");
	print_pct("xfer", xfer, (size_t)n);
	print_pct("grant", grant, (size_t)n);
	if (warm)
		print_pct("warmcall", wcall, (size_t)n);
	printf("n=%d\n", n);
	vmfs_dlm_close(hc);
	vmfs_dlm_close(h);
	free(xfer);
	free(grant);
	free(wcall);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && argc <= 7 && strcmp(argv[1], "holder") == 0 &&
	    (argc == 4 || strcmp(argv[4], "set") == 0 || strcmp(argv[4], "single") == 0 ||
	     strcmp(argv[4], "warm") == 0) &&
	    (argc < 7 || strcmp(argv[4], "warm") == 0))
		return run_holder(atoi(argv[2]), argv[3], argc >= 5 && strcmp(argv[4], "single") == 0,
				  argc >= 5 && strcmp(argv[4], "warm") == 0,
				  argc >= 6 ? atoi(argv[5]) : IDLE_US,
				  argc == 7 ? atoi(argv[6]) : GAP_US);
	if (argc == 3 && strcmp(argv[1], "waiter") == 0)
		return run_waiter(argv[2]);
	fprintf(stderr, "usage: bench-transfer holder N DIR [set|single|warm [IDLE_US [GAP_US]]] "
		"| waiter DIR\n");
	return 2;
}
