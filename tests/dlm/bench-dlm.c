/* bench-dlm — lock manager benchmarks and their raw-CPG baseline.
 *
 *   bench-dlm cpg-rtt N [US]     agreed multicast to own delivery, N times
 *   bench-dlm cpg-member SEC     join the bench CPG group and stay SEC s
 *   bench-dlm lock-rtt N [US]    uncontended EX acquire (+ release), N times
 *                                (US: idle microseconds before each, as
 *                                bench-transfer leaves before a handoff)
 *   bench-dlm cached-rtt N       cache_get + cache_put of one cached EX lock,
 *                                N times (after one miss, not measured)
 *   bench-dlm pingpong SEC RES   acquire/release RES in a loop for SEC s
 *   bench-dlm throughput SEC T   T threads, own handle and resource each
 *
 * Each prints one line of key=value figures (microseconds, counts) that
 * bench-dlm.sh turns into ratios against the CPG baseline of the same run.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <corosync/cpg.h>

#include "io.h"
#include "vmfs/dlm.h"

static unsigned long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static int cmp_ull(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;

	return x < y ? -1 : x > y;
}

static void print_pct(const char *what, unsigned long long *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_ull);
	printf("%s_p50_us=%llu %s_p99_us=%llu ", what, v[n / 2], what, v[(n * 99) / 100]);
}

/* Same keys as print_pct() (whole microseconds) plus _ns ones: a cache
 * hit takes well under a microsecond. */
static void print_pct_ns(const char *what, unsigned long long *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_ull);
	printf("%s_p50_us=%llu %s_p99_us=%llu %s_p50_ns=%llu %s_p99_ns=%llu ", what,
	       v[n / 2] / 1000, what, v[(n * 99) / 100] / 1000, what, v[n / 2], what,
	       v[(n * 99) / 100]);
}

/* --- raw CPG ----------------------------------------------------------- */

static volatile int delivered;
static uint32_t my_nodeid;

static void cpg_deliver(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid,
			uint32_t pid, void *msg, size_t len)
{
	if (nodeid == my_nodeid && pid == (uint32_t)getpid())
		delivered++;
}

static int cpg_join_bench(cpg_handle_t *h)
{
	cpg_callbacks_t cb = { .cpg_deliver_fn = cpg_deliver };
	struct cpg_name g;
	cs_error_t err;

	strcpy(g.value, "vmfs-bench");
	g.length = strlen(g.value);
	if ((err = cpg_initialize(h, &cb)) != CS_OK) {
		fprintf(stderr, "bench-dlm: cpg_initialize: error %d (is corosync running?)\n", err);
		return -1;
	}
	cpg_local_get(*h, &my_nodeid);
	while ((err = cpg_join(*h, &g)) == CS_ERR_TRY_AGAIN)
		usleep(1000);
	if (err != CS_OK) {
		fprintf(stderr, "bench-dlm: cpg_join: error %d\n", err);
		return -1;
	}
	return 0;
}

static int bench_cpg_rtt(int n, int idle_us)
{
	unsigned long long *lat = calloc((size_t)n, sizeof(*lat));
	char payload[128] = "bench";
	struct iovec iov = { payload, sizeof(payload) };
	cpg_handle_t h;
	int fd;

	if (!lat || cpg_join_bench(&h) < 0)
		return 1;
	cpg_fd_get(h, &fd);
	usleep(200000);	/* let the join settle */
	for (int i = 0; i < n; i++) {
		int want = delivered + 1;
		unsigned long long t0;
		cs_error_t err;

		if (idle_us > 0)
			usleep((useconds_t)idle_us);
		t0 = now_us();
		while ((err = cpg_mcast_joined(h, CPG_TYPE_AGREED, &iov, 1)) == CS_ERR_TRY_AGAIN)
			usleep(100);
		if (err != CS_OK) {
			fprintf(stderr, "bench-dlm: cpg_mcast_joined: error %d\n", err);
			return 1;
		}
		while (delivered < want) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			if (poll(&p, 1, 5000) <= 0) {
				fprintf(stderr, "bench-dlm: no delivery within 5 s\n");
				return 1;
			}
			cpg_dispatch(h, CS_DISPATCH_ALL);
		}
		lat[i] = now_us() - t0;
	}
	print_pct("cpg", lat, (size_t)n);
	printf("\n");
	cpg_finalize(h);
	free(lat);
	return 0;
}

static int bench_cpg_member(int sec)
{
	cpg_handle_t h;
	int fd;
	unsigned long long end = now_us() + (unsigned long long)sec * 1000000ULL;

	if (cpg_join_bench(&h) < 0)
		return 1;
	cpg_fd_get(h, &fd);
	while (now_us() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 200) > 0)
			cpg_dispatch(h, CS_DISPATCH_ALL);
	}
	cpg_finalize(h);
	return 0;
}

/* --- lock manager ------------------------------------------------------ */

static vmfs_dlm_t *open_or_die(void)
{
	vmfs_dlm_t *h;
	int rc = vmfs_dlm_open("bench-dlm", &h);

	if (rc < 0) {
		fprintf(stderr, "bench-dlm: cannot connect to vmfs-dlmd: %s\n", vmfs_dlm_strerror(rc));
		exit(1);
	}
	return h;
}

static int bench_lock_rtt(int n, int idle_us)
{
	unsigned long long *acq = calloc((size_t)n, sizeof(*acq));
	unsigned long long *cyc = calloc((size_t)n, sizeof(*cyc));
	vmfs_dlm_t *h = open_or_die();
	char res[64];

	if (!acq || !cyc)
		return 1;
	snprintf(res, sizeof(res), "rtt-%d", (int)getpid());
	for (int i = 0; i < n; i++) {
		struct vmfs_dlm_lksb lk;
		unsigned long long t0;
		int rc;

		if (idle_us > 0)
			usleep((useconds_t)idle_us);
		t0 = now_us();
		rc = vmfs_dlm_lock(h, "bench", res, VMFS_DLM_EX, 0, NULL, 10000, &lk);
		if (rc < 0) {
			fprintf(stderr, "bench-dlm: lock: %s\n", vmfs_dlm_strerror(rc));
			return 1;
		}
		acq[i] = now_us() - t0;
		rc = vmfs_dlm_unlock(h, &lk, 0);
		if (rc < 0) {
			fprintf(stderr, "bench-dlm: unlock: %s\n", vmfs_dlm_strerror(rc));
			return 1;
		}
		cyc[i] = now_us() - t0;
	}
	print_pct("acquire", acq, (size_t)n);
	print_pct("cycle", cyc, (size_t)n);
	printf("\n");
	vmfs_dlm_close(h);
	free(acq);
	free(cyc);
	return 0;
}

/* Re-acquiring a cached lock: DESIGN.md decision 2 says no message. */
static int bench_cached_rtt(int n)
{
	unsigned long long *acq = calloc((size_t)n, sizeof(*acq));
	unsigned long long *cyc = calloc((size_t)n, sizeof(*cyc));
	vmfs_dlm_t *h = open_or_die();
	struct vmfs_dlm_cache_stats st;
	struct vmfs_dlm_lksb lk;
	char res[64];
	int rc;

	if (!acq || !cyc)
		return 1;
	snprintf(res, sizeof(res), "cached-%d", (int)getpid());
	/* The miss that puts it in the cache. */
	rc = vmfs_dlm_cache_get(h, "bench", res, VMFS_DLM_EX, 0, NULL, 10000, &lk);
	if (rc == 0)
		rc = vmfs_dlm_cache_put(h, &lk);
	if (rc < 0) {
		fprintf(stderr, "bench-dlm: cache_get: %s\n", vmfs_dlm_strerror(rc));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		unsigned long long t0 = now_ns();

		rc = vmfs_dlm_cache_get(h, "bench", res, VMFS_DLM_EX, 0, NULL, 10000, &lk);
		if (rc < 0) {
			fprintf(stderr, "bench-dlm: cache_get: %s\n", vmfs_dlm_strerror(rc));
			return 1;
		}
		acq[i] = now_ns() - t0;
		rc = vmfs_dlm_cache_put(h, &lk);
		if (rc < 0) {
			fprintf(stderr, "bench-dlm: cache_put: %s\n", vmfs_dlm_strerror(rc));
			return 1;
		}
		cyc[i] = now_ns() - t0;
	}
	vmfs_dlm_cache_stats(h, &st);
	print_pct_ns("acquire", acq, (size_t)n);
	print_pct_ns("cycle", cyc, (size_t)n);
	printf("hits=%llu misses=%llu\n", (unsigned long long)st.hits,
	       (unsigned long long)st.misses);
	vmfs_dlm_cache_drop_all(h);
	vmfs_dlm_close(h);
	free(acq);
	free(cyc);
	return 0;
}

static long lock_loop(vmfs_dlm_t *h, const char *res, int sec)
{
	unsigned long long end = now_us() + (unsigned long long)sec * 1000000ULL;
	long count = 0;

	while (now_us() < end) {
		struct vmfs_dlm_lksb lk;
		if (vmfs_dlm_lock(h, "bench", res, VMFS_DLM_EX, 0, NULL, 30000, &lk) < 0)
			return -1;
		if (vmfs_dlm_unlock(h, &lk, 0) < 0)
			return -1;
		count++;
	}
	return count;
}

static int bench_pingpong(int sec, const char *res)
{
	vmfs_dlm_t *h = open_or_die();
	long c = lock_loop(h, res, sec);

	if (c < 0)
		return 1;
	printf("acquisitions=%ld seconds=%d\n", c, sec);
	vmfs_dlm_close(h);
	return 0;
}

struct tp_arg {
	int sec;
	int idx;
	long count;
};

static void *tp_thread(void *p)
{
	struct tp_arg *a = p;
	vmfs_dlm_t *h = open_or_die();
	char res[64];

	snprintf(res, sizeof(res), "tp-%d-%d", (int)getpid(), a->idx);
	a->count = lock_loop(h, res, a->sec);
	vmfs_dlm_close(h);
	return NULL;
}

static int bench_throughput(int sec, int threads)
{
	pthread_t tid[64];
	struct tp_arg args[64];
	long total = 0;

	if (threads < 1 || threads > 64)
		return 2;
	for (int i = 0; i < threads; i++) {
		args[i] = (struct tp_arg){ .sec = sec, .idx = i };
		pthread_create(&tid[i], NULL, tp_thread, &args[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		if (args[i].count < 0)
			return 1;
		total += args[i].count;
	}
	printf("ops=%ld seconds=%d threads=%d\n", total, sec, threads);
	return 0;
}

int main(int argc, char **argv)
{
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "cpg-rtt") == 0)
		return bench_cpg_rtt(atoi(argv[2]), argc == 4 ? atoi(argv[3]) : 0);
	if (argc == 3 && strcmp(argv[1], "cpg-member") == 0)
		return bench_cpg_member(atoi(argv[2]));
	if ((argc == 3 || argc == 4) && strcmp(argv[1], "lock-rtt") == 0)
		return bench_lock_rtt(atoi(argv[2]), argc == 4 ? atoi(argv[3]) : 0);
	if (argc == 3 && strcmp(argv[1], "cached-rtt") == 0)
		return bench_cached_rtt(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "pingpong") == 0)
		return bench_pingpong(atoi(argv[2]), argv[3]);
	if (argc == 4 && strcmp(argv[1], "throughput") == 0)
		return bench_throughput(atoi(argv[2]), atoi(argv[3]));
	fprintf(stderr, "usage: bench-dlm cpg-rtt N [IDLE_US] | cpg-member SEC | lock-rtt N [IDLE_US] |"
		" cached-rtt N | pingpong SEC RES | throughput SEC THREADS\n");
	return 2;
}
