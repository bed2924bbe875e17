/* main.c — vmfs-dlmd: options, start-up, the main loop, shutdown.
 *
 * Start-up order matters:
 *   1. options (exit 2 on any error, before anything is touched);
 *   2. daemonize unless -f (then log to syslog);
 *   3. the IPC service: fails with EADDRINUSE when another vmfs-dlmd of
 *      this host (mount namespace) runs, BEFORE we join CPG as a second
 *      process of this node;
 *   4. corosync (cluster.c): if it is not up yet we keep retrying, so the
 *      unit may start before corosync has formed its ring.
 * Shutdown (SIGTERM/SIGINT) goes the other way: the IPC service closes every
 * connection, which multicasts a CLIENT_GONE per client (their locks are
 * released cleanly, PERSISTENT ones stay as orphans), then we leave CPG.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "io.h"
#include "log.h"

#define EXIT_USAGE 2
#define MAX_TIMING_MS (24ULL * 3600 * 1000)

uint64_t dlmd_now_ms(void)
{
	return now_mono_ms();
}

void dlmd_stop(struct dlmd *d)
{
	d->stopping = true;
	qb_loop_stop(d->loop);
}

/* Every lock operation is a hop client -> daemon -> corosync and back; the
 * corosyncs run SCHED_RR, so under load an ordinary-priority daemon is the
 * one that waits to be scheduled (measured: most of the lock path's extra
 * time over a raw CPG multicast is the daemon's wake-ups).  Like sanlock,
 * the daemon asks for a real-time priority below corosync's, by default
 * the lowest one (DLMD_DEFAULT_PRIORITY): the disk-lock handoff of a live
 * migration runs while the guest is paused.  On a loaded 2-CPU host
 * (tests/dlm/bench-transfer.c, back to back) it took at normal priority
 * p50 1.4-1.9 ms, p90 2.5-5 ms (9-10 ms next to two busy processes), at
 * RR 1 p50 1.2-1.5 ms, p90 1.9-2.6 ms (3.5-6 ms): mostly the tail, which
 * is what a paused guest notices.  The daemon only reacts to
 * messages, so it cannot hog a CPU unless it has a bug, and the kernel's
 * real-time throttling leaves other tasks 5% even then.  Failing to get
 * the priority (no CAP_SYS_NICE, a cgroup without real-time budget) is
 * logged, not fatal. */
static void set_priority(int prio)
{
	struct sched_param sp = { .sched_priority = prio };

	if (prio <= 0)
		return;
	if (sched_setscheduler(0, SCHED_RR, &sp) < 0)
		log_warn("cannot set SCHED_RR priority %d: %s; running at normal priority",
			 prio, strerror(errno));
	else
		log_info("running with SCHED_RR priority %d", prio);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vmfs-dlmd [OPTION]...\n"
		"The vmfs distributed lock manager daemon (one per host).\n\n"
		"  -f, --foreground      stay in the foreground, log to stderr\n"
		"      --ipc-name NAME   IPC service name (env VMFS_DLM_IPC_NAME; default %s)\n"
		"      --cpg-name NAME   CPG group name (env VMFS_DLM_CPG_NAME; default %s)\n"
		"      --group GROUP     also accept clients of this group (env VMFS_DLM_GROUP)\n"
		"      --lease MS        lease T_lease (env VMFS_DLM_LEASE_MS;\n"
		"                        default: totem token + consensus)\n"
		"      --fence-delay MS  fence delay T_fence (env VMFS_DLM_FENCE_DELAY_MS;\n"
		"                        default: 2 x lease + 1000)\n"
		"      --name NAME       this host's name (env VMFS_DLM_NAME; default hostname)\n"
		"      --log-file FILE   also log to FILE (env VMFS_DLM_LOG_FILE)\n"
		"      --debug           log debug messages (env VMFS_DLM_DEBUG=1)\n"
		"      --priority N      run with SCHED_RR priority N (1-99), as corosync\n"
		"                        does; 0 = normal scheduling (env VMFS_DLM_PRIORITY;\n"
		"                        default %d)\n"
		"      --warm-interval US  pacing of the ring warm-up NOOPs: 0 = send the\n"
		"                        next when the last came back (default), else one\n"
		"                        every US microseconds, 50-100000\n"
		"                        (env VMFS_DLM_WARM_INTERVAL_US)\n"
		"      --version         print the version and compiled-in features\n"
		"  -h, --help            this text\n",
		VMFS_IPC_DEFAULT_NAME, DLMD_DEFAULT_CPG_NAME, DLMD_DEFAULT_PRIORITY);
}

static void version(void)
{
	printf("vmfs-dlmd %s\n", PACKAGE_VERSION);
	printf("features: cpg-agreed votequorum cmap libqb-ipc json-query blackbox "
	       "reconnect ipc-protocol-%d cluster-protocol-%d%s\n",
	       VMFS_IPC_VERSION, VMFS_MSG_VERSION,
#if defined(__SANITIZE_ADDRESS__)
	       " asan"
#else
	       ""
#endif
	);
}

static int parse_ms(const char *opt, const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v == 0 || v > MAX_TIMING_MS) {
		fprintf(stderr, "vmfs-dlmd: %s: '%s' is not a number of milliseconds "
			"between 1 and %llu\n", opt, s, MAX_TIMING_MS);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int parse_priority(const char *opt, const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > 99) {
		fprintf(stderr, "vmfs-dlmd: %s: '%s' is not a priority between 0 and 99\n",
			opt, s);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

/* 0 (chained) or 50 us .. 100 ms: below 50 us it would only flood corosync. */
static int parse_interval(const char *opt, const char *s, uint32_t *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || (v != 0 && (v < 50 || v > 100000))) {
		fprintf(stderr, "vmfs-dlmd: %s: '%s' is not 0 or a number of microseconds "
			"between 50 and 100000\n", opt, s);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

static int check_name(const char *opt, const char *s, size_t max)
{
	if (!s[0] || strlen(s) > max) {
		fprintf(stderr, "vmfs-dlmd: %s: name must have 1 to %zu bytes\n", opt, max);
		return -EINVAL;
	}
	return 0;
}

enum {
	OPT_IPC_NAME = 256, OPT_CPG_NAME, OPT_GROUP, OPT_FENCE_DELAY, OPT_LEASE,
	OPT_LOG_FILE, OPT_DEBUG, OPT_NAME, OPT_VERSION, OPT_PRIORITY, OPT_WARM_INTERVAL,
};

static const struct option long_opts[] = {
	{ "foreground", no_argument, NULL, 'f' },
	{ "ipc-name", required_argument, NULL, OPT_IPC_NAME },
	{ "cpg-name", required_argument, NULL, OPT_CPG_NAME },
	{ "group", required_argument, NULL, OPT_GROUP },
	{ "fence-delay", required_argument, NULL, OPT_FENCE_DELAY },
	{ "lease", required_argument, NULL, OPT_LEASE },
	{ "log-file", required_argument, NULL, OPT_LOG_FILE },
	{ "debug", no_argument, NULL, OPT_DEBUG },
	{ "priority", required_argument, NULL, OPT_PRIORITY },
	{ "warm-interval", required_argument, NULL, OPT_WARM_INTERVAL },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Environment first, then options on top.  0, or -EINVAL (message printed),
 * or 1 when --help/--version was handled. */
static int parse_config(int argc, char **argv, struct dlmd_config *cfg)
{
	const char *name = getenv("VMFS_DLM_NAME");
	const char *lease = getenv("VMFS_DLM_LEASE_MS");
	const char *fence = getenv("VMFS_DLM_FENCE_DELAY_MS");
	const char *dbg = getenv("VMFS_DLM_DEBUG");
	const char *prio = getenv("VMFS_DLM_PRIORITY");
	const char *warm = getenv("VMFS_DLM_WARM_INTERVAL_US");
	struct group *gr;
	int opt;

	cfg->rr_priority = DLMD_DEFAULT_PRIORITY;
	cfg->ipc_name = getenv("VMFS_DLM_IPC_NAME");
	cfg->cpg_name = getenv("VMFS_DLM_CPG_NAME");
	cfg->group = getenv("VMFS_DLM_GROUP");
	cfg->log_file = getenv("VMFS_DLM_LOG_FILE");
	cfg->debug = dbg && dbg[0] && strcmp(dbg, "0") != 0;
	if (lease && *lease && parse_ms("VMFS_DLM_LEASE_MS", lease, &cfg->lease_ms_opt) < 0)
		return -EINVAL;
	if (fence && *fence &&
	    parse_ms("VMFS_DLM_FENCE_DELAY_MS", fence, &cfg->fence_delay_ms_opt) < 0)
		return -EINVAL;
	if (prio && *prio && parse_priority("VMFS_DLM_PRIORITY", prio, &cfg->rr_priority) < 0)
		return -EINVAL;
	if (warm && *warm &&
	    parse_interval("VMFS_DLM_WARM_INTERVAL_US", warm, &cfg->warm_interval_us) < 0)
		return -EINVAL;

	while ((opt = getopt_long(argc, argv, "fh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			cfg->foreground = true;
			break;
		case OPT_IPC_NAME:
			cfg->ipc_name = optarg;
			break;
		case OPT_CPG_NAME:
			cfg->cpg_name = optarg;
			break;
		case OPT_GROUP:
			cfg->group = optarg;
			break;
		case OPT_FENCE_DELAY:
			if (parse_ms("--fence-delay", optarg, &cfg->fence_delay_ms_opt) < 0)
				return -EINVAL;
			break;
		case OPT_LEASE:
			if (parse_ms("--lease", optarg, &cfg->lease_ms_opt) < 0)
				return -EINVAL;
			break;
		case OPT_LOG_FILE:
			cfg->log_file = optarg;
			break;
		case OPT_DEBUG:
			cfg->debug = true;
			break;
		case OPT_PRIORITY:
			if (parse_priority("--priority", optarg, &cfg->rr_priority) < 0)
				return -EINVAL;
			break;
		case OPT_WARM_INTERVAL:
			if (parse_interval("--warm-interval", optarg, &cfg->warm_interval_us) < 0)
				return -EINVAL;
			break;
		case OPT_NAME:
			name = optarg;
			break;
		case OPT_VERSION:
			version();
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		default:
			fprintf(stderr, "Try 'vmfs-dlmd --help'.\n");
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmfs-dlmd: unexpected argument '%s'\nTry 'vmfs-dlmd --help'.\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!cfg->ipc_name || !*cfg->ipc_name)
		cfg->ipc_name = VMFS_IPC_DEFAULT_NAME;
	if (!cfg->cpg_name || !*cfg->cpg_name)
		cfg->cpg_name = DLMD_DEFAULT_CPG_NAME;
	if (check_name("--ipc-name", cfg->ipc_name, 100) < 0 ||
	    check_name("--cpg-name", cfg->cpg_name, CPG_MAX_NAME_LENGTH - 1) < 0)
		return -EINVAL;
	if (cfg->group && *cfg->group) {
		gr = getgrnam(cfg->group);
		if (!gr) {
			fprintf(stderr, "vmfs-dlmd: --group: no such group '%s'\n", cfg->group);
			return -EINVAL;
		}
		cfg->gid = gr->gr_gid;
		cfg->have_gid = true;
	} else {
		cfg->group = NULL;
	}
	if (name && *name) {
		if (check_name("--name", name, VMFS_DLM_NAME_MAX) < 0)
			return -EINVAL;
		snprintf(cfg->name, sizeof(cfg->name), "%s", name);
	} else {
		char host[HOST_NAME_MAX + 1] = "";

		if (gethostname(host, sizeof(host)) < 0 || !host[0])
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		/* the cluster names hosts with at most 64 bytes */
		snprintf(cfg->name, sizeof(cfg->name), "%.*s", VMFS_DLM_NAME_MAX, host);
	}
	if (cfg->lease_ms_opt && cfg->fence_delay_ms_opt &&
	    cfg->fence_delay_ms_opt <= cfg->lease_ms_opt) {
		fprintf(stderr, "vmfs-dlmd: --fence-delay (%llu ms) must exceed --lease "
			"(%llu ms): a departed host may write until its lease ends\n",
			(unsigned long long)cfg->fence_delay_ms_opt,
			(unsigned long long)cfg->lease_ms_opt);
		return -EINVAL;
	}
	return 0;
}

static int32_t sig_stop(int32_t sig, void *data)
{
	struct dlmd *d = data;

	log_info("signal %d: shutting down", sig);
	dlmd_stop(d);
	return 0;
}

/* SIGHUP would kill a foreground daemon whose terminal goes away, with
 * its clients' locks left to the fence delay: ignore it, visibly. */
static int32_t sig_hup(int32_t sig, void *data)
{
	log_info("SIGHUP ignored (stop with SIGTERM)");
	return 0;
}

int main(int argc, char **argv)
{
	static struct dlmd dlmd;	/* static: one daemon per process, 0-initialised */
	struct dlmd *d = &dlmd;
	qb_loop_signal_handle sh;
	struct vmfs_log_opts lo;
	int rc, status = EXIT_FAILURE;

	rc = parse_config(argc, argv, &d->cfg);
	if (rc == 1)
		return 0;
	if (rc < 0)
		return EXIT_USAGE;

	if (!d->cfg.foreground && daemon(0, 0) < 0) {
		fprintf(stderr, "vmfs-dlmd: cannot daemonize: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	memset(&lo, 0, sizeof(lo));
	lo.ident = "vmfs-dlmd";
	lo.to_stderr = d->cfg.foreground;
	lo.to_syslog = !d->cfg.foreground;
	lo.file = d->cfg.log_file;
	lo.priority = d->cfg.debug ? LOG_DEBUG : LOG_INFO;
	lo.blackbox_size = DLMD_BLACKBOX_SIZE;
	vmfs_log_init(&lo);
	log_info("vmfs-dlmd %s starting: host %s, ipc %s, cpg %s", PACKAGE_VERSION,
		 d->cfg.name, d->cfg.ipc_name, d->cfg.cpg_name);

	qb_list_init(&d->sendq);
	qb_list_init(&d->clients);
	d->cpg_fd = d->vq_fd = -1;
	/* a client that vanishes mid-write must not kill us */
	signal(SIGPIPE, SIG_IGN);
	set_priority(d->cfg.rr_priority);
	d->loop = qb_loop_create();
	if (!d->loop) {
		log_err("cannot create the main loop");
		goto out;
	}
	qb_loop_signal_add(d->loop, QB_LOOP_HIGH, SIGTERM, d, sig_stop, &sh);
	qb_loop_signal_add(d->loop, QB_LOOP_HIGH, SIGINT, d, sig_stop, &sh);
	qb_loop_signal_add(d->loop, QB_LOOP_LOW, SIGHUP, d, sig_hup, &sh);

	if (dlmd_ipc_start(d) < 0)
		goto out;
	if (dlmd_cluster_start(d) < 0)
		goto out;
	qb_loop_run(d->loop);
	status = EXIT_SUCCESS;
	log_info("stopped");
out:
	d->stopping = true;
	dlmd_ipc_stop(d);
	dlmd_cluster_stop(d);
	if (d->loop)
		qb_loop_destroy(d->loop);
	vmfs_log_fini();
	return status;
}
