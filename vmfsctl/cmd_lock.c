/* cmd_lock.c — vmfsctl lock (run a command under a cluster lock, like
 * flock(1)) and vmfsctl transfer (move a granted lock to a pending request).
 *
 * `lock` holds the lock through its own connection to vmfs-dlmd for as
 * long as CMD runs: the IPC fd is close-on-exec, so CMD does not inherit
 * the connection, and if vmfsctl dies the daemon releases the lock (or
 * keeps it as an orphan with --persistent).  If the lock is lost while CMD
 * runs (lease lost, TRANSFER, purge) vmfsctl only warns: it cannot know
 * whether stopping CMD is safer than letting it finish.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmfsctl.h"

struct lock_run {
	const char *ls;
	const char *name;
	uint64_t lkid;
	bool lost;		/* the lock went away without our release */
	bool lease_lost;	/* lease(0) seen and not (yet) regained */
	int lease_news;		/* lease change to report after dispatch: -1 none */
};

static const char *lost_reason(int reason)
{
	switch (reason) {
	case VMFS_DLM_LOST_TRANSFERRED:
		return "transferred to another holder";
	case VMFS_DLM_LOST_PURGED:
		return "purged: this host was fenced by the cluster";
	case VMFS_DLM_LOST_RESET:
		return "the cluster state was replaced after a partition";
	default:
		return "unknown reason";
	}
}

static void on_lost(void *ctx, uint64_t lkid, int reason)
{
	struct lock_run *run = ctx;

	if (lkid != run->lkid || run->lost)
		return;
	run->lost = true;
	vmfsctl_err("warning: lock %s/%s (lkid %" PRIu64 ") lost: %s; the command keeps running "
		    "without it", run->ls, run->name, lkid, lost_reason(reason));
}

/* Only noted here: after the dispatch we know whether the daemon itself
 * went away (lease(0) is then reported too) and say which. */
static void on_lease(void *ctx, int valid)
{
	struct lock_run *run = ctx;

	run->lease_news = valid;
}

static void report_lease(struct lock_run *run, bool daemon_gone)
{
	int valid = run->lease_news;

	run->lease_news = -1;
	if (daemon_gone) {
		run->lease_lost = true;
		vmfsctl_err("warning: connection to vmfs-dlmd lost while holding %s/%s: the lock "
			    "is released and other hosts may take it; the command keeps running",
			    run->ls, run->name);
	} else if (valid == 0 && !run->lease_lost) {
		run->lease_lost = true;
		vmfsctl_err("warning: this host lost its cluster lease while holding %s/%s: other "
			    "hosts may take the lock after the fence delay; the command keeps "
			    "running", run->ls, run->name);
	} else if (valid == 1 && run->lease_lost) {
		run->lease_lost = false;
		vmfsctl_err("lease regained while holding %s/%s", run->ls, run->name);
	}
}

/* Append "held EX by host2 pid 1234 (program sleep, tag vm1) since 05:12:03"
 * for every lock that stands in the way of `mode` on ls/name, looked up
 * with query "locks".  Waiting requests ahead of ours count when no
 * granted lock conflicts (FIFO: a queued EX blocks later requests). */
static void describe_holders(vmfs_dlm_t *h, const char *ls, const char *name, int mode,
			     char *buf, size_t len)
{
	struct json_object *table = NULL, *lss, *locks = NULL;
	size_t i, used = 0;
	int pass;
	char *text = NULL;

	buf[0] = '\0';
	if (vmfs_dlm_query(h, "locks", ls, &text) == 0)
		table = json_tokener_parse(text);
	free(text);
	lss = vj_array(table, "lockspaces");
	for (i = 0; lss && !locks && i < json_object_array_length(lss); i++) {
		struct json_object *l = json_object_array_get_idx(lss, i);
		struct json_object *res = vj_array(l, "resources");
		size_t j;

		if (strcmp(vj_str(l, "name", ""), ls) != 0)
			continue;
		for (j = 0; res && j < json_object_array_length(res); j++) {
			struct json_object *r = json_object_array_get_idx(res, j);

			if (strcmp(vj_str(r, "name", ""), name) == 0)
				locks = vj_array(r, "locks");
		}
	}
	for (pass = 0; locks && pass < 2 && !used; pass++) {
		for (i = 0; i < json_object_array_length(locks) && used < len; i++) {
			struct json_object *l = json_object_array_get_idx(locks, i);
			const char *queue = vj_str(l, "queue", "");
			const char *m = pass == 0 ? vj_str(l, "mode", "?") : vj_str(l, "rqmode", "?");
			const char *tag = vj_str(l, "tag", "");
			char since[32];
			int n;

			if (pass == 0 && strcmp(queue, "waiting") == 0)
				continue;
			if (pass == 1 && strcmp(queue, "waiting") != 0)
				continue;
			if (pass == 0 && vmfs_dlm_modes_compatible(vmfs_dlm_mode_parse(m), mode))
				continue;
			vmfsctl_fmt_time((uint64_t)vj_int(l, "since_ms", 0), since, sizeof(since));
			n = snprintf(buf + used, len - used,
				     "%s%s %s by %s pid %" PRId64 " (program %s%s%s) since %s%s%s",
				     used ? "; " : "", pass == 0 ? "held" : "queued ahead:", m,
				     vj_str(l, "host", "?"), vj_int(l, "pid", 0),
				     vj_str(l, "program", "?"), *tag ? ", tag " : "", tag, since,
				     vj_bool(l, "orphan", false) ? " [orphan]" : "",
				     vj_bool(l, "recovering", false) ? " [recovering]" : "");
			if (n < 0)
				break;
			used += (size_t)n;
		}
	}
	if (!used)
		snprintf(buf, len, "no conflicting holder now (released meanwhile?)");
	json_object_put(table);
}

/* Wait for the child while serving the lock manager's callbacks; forward
 * SIGTERM, SIGHUP and SIGINT to it.  Returns the child's wait status. */
static int supervise(vmfs_dlm_t *h, struct lock_run *run, pid_t child, int sfd)
{
	struct pollfd pfd[2];
	bool dlm_alive = true;
	int status = 0;

	for (;;) {
		struct signalfd_siginfo si;
		pid_t w;
		int n;

		pfd[0].fd = sfd;
		pfd[0].events = POLLIN;
		pfd[1].fd = dlm_alive ? vmfs_dlm_fd(h) : -1;
		pfd[1].events = POLLIN;
		n = poll(pfd, 2, -1);
		if (n < 0 && errno != EINTR)
			break;
		if (pfd[1].revents) {
			if (vmfs_dlm_dispatch(h) == VMFS_DLM_EDAEMON)
				dlm_alive = false;
			if (!dlm_alive || run->lease_news >= 0)
				report_lease(run, !dlm_alive);
		}
		if (pfd[0].revents & POLLIN && read(sfd, &si, sizeof(si)) == sizeof(si) &&
		    si.ssi_signo != SIGCHLD)
			kill(child, (int)si.ssi_signo);
		w = waitpid(child, &status, WNOHANG);
		if (w == child || (w < 0 && errno != EINTR))
			break;
	}
	return status;
}

static void lock_usage(FILE *f)
{
	fprintf(f,
		"usage: vmfsctl lock [--lockspace LS] [--mode MODE] [--nowait | --timeout SEC]\n"
		"                    [--tag TAG] [--persistent] [--print-epoch] NAME [--] CMD [ARG...]\n"
		"Acquire lock NAME (lockspace \"default\", mode EX unless given), run CMD,\n"
		"release, and exit with CMD's status; 75 if the lock was not granted.\n");
}

int cmd_lock(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "lockspace", required_argument, NULL, 'l' },
		{ "mode", required_argument, NULL, 'm' },
		{ "nowait", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 'w' },
		{ "tag", required_argument, NULL, 't' },
		{ "persistent", no_argument, NULL, 'p' },
		{ "print-epoch", no_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct lock_run run = { .ls = "default", .lease_news = -1 };
	struct vmfs_dlm_callbacks cb = { .lost = on_lost, .lease = on_lease };
	struct vmfs_dlm_lksb lksb;
	const char *tag = NULL, *prog;
	sigset_t mask, oldmask;
	vmfs_dlm_t *h = NULL;
	int mode = VMFS_DLM_EX, timeout_ms = -1, sfd = -1, c, ret, status;
	bool print_epoch = false, have_timeout = false;
	unsigned flags = 0;
	char **cmd;
	pid_t child;

	/* '+': options end at NAME, so CMD's own options are left alone. */
	while ((c = getopt_long(argc, argv, "+l:m:nw:t:pEh", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			run.ls = optarg;
			break;
		case 'm':
			mode = vmfs_dlm_mode_parse(optarg);
			if (mode < 0) {
				vmfsctl_err("unknown lock mode '%s' (use NL, CR, CW, PR, PW or EX)",
					    optarg);
				return VMFSCTL_EXIT_USAGE;
			}
			break;
		case 'n':
			flags |= VMFS_DLM_NOQUEUE;
			break;
		case 'w': {
			char *end;
			double sec = strtod(optarg, &end);

			if (*end || end == optarg || !(sec >= 0) || sec > INT_MAX / 1000) {
				vmfsctl_err("--timeout wants seconds (e.g. 5 or 0.5), not '%s'",
					    optarg);
				return VMFSCTL_EXIT_USAGE;
			}
			timeout_ms = (int)(sec * 1000 + 0.5);
			have_timeout = true;
			break;
		}
		case 't':
			tag = optarg;
			break;
		case 'p':
			flags |= VMFS_DLM_PERSISTENT;
			break;
		case 'E':
			print_epoch = true;
			break;
		case 'h':
			lock_usage(stdout);
			return VMFSCTL_EXIT_OK;
		default:
			lock_usage(stderr);
			return VMFSCTL_EXIT_USAGE;
		}
	}
	if ((flags & VMFS_DLM_NOQUEUE) && have_timeout) {
		vmfsctl_err("--nowait and --timeout exclude each other");
		return VMFSCTL_EXIT_USAGE;
	}
	if (optind >= argc) {
		lock_usage(stderr);
		return VMFSCTL_EXIT_USAGE;
	}
	run.name = argv[optind++];
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (optind >= argc) {
		vmfsctl_err("lock %s: no command given (vmfsctl lock NAME -- CMD [ARG...])", run.name);
		return VMFSCTL_EXIT_USAGE;
	}
	cmd = argv + optind;
	if (!*run.ls || strlen(run.ls) > VMFS_DLM_NAME_MAX || !*run.name ||
	    strlen(run.name) > VMFS_DLM_NAME_MAX) {
		vmfsctl_err("lockspace and lock names must be 1 to %d bytes", VMFS_DLM_NAME_MAX);
		return VMFSCTL_EXIT_USAGE;
	}
	if (tag && strlen(tag) > VMFS_DLM_TAG_MAX) {
		vmfsctl_err("--tag is longer than %d bytes", VMFS_DLM_TAG_MAX);
		return VMFSCTL_EXIT_USAGE;
	}

	/* The lock is recorded under CMD's name: that is what people look
	 * for in `vmfsctl locks`. */
	prog = strrchr(cmd[0], '/');
	prog = prog ? prog + 1 : cmd[0];
	ret = vmfsctl_connect(prog, &h);
	if (ret)
		goto out;
	vmfs_dlm_set_callbacks(h, &cb, &run);

	memset(&lksb, 0, sizeof(lksb));
	ret = vmfs_dlm_lock(h, run.ls, run.name, mode, flags, tag, timeout_ms, &lksb);
	if (ret == VMFS_DLM_EAGAIN || ret == VMFS_DLM_ETIMEDOUT) {
		char holders[1024], within[48] = "";

		describe_holders(h, run.ls, run.name, mode, holders, sizeof(holders));
		if (ret == VMFS_DLM_ETIMEDOUT)
			snprintf(within, sizeof(within), " within %g s", timeout_ms / 1000.0);
		vmfsctl_err("lock %s/%s not granted%s: %s", run.ls, run.name, within, holders);
		ret = VMFSCTL_EXIT_TEMPFAIL;
		goto out;
	}
	if (ret < 0) {
		vmfsctl_err("lock %s/%s (%s) failed: %s", run.ls, run.name,
			    vmfs_dlm_mode_name(mode), vmfsctl_strerror(ret));
		ret = VMFSCTL_EXIT_FAIL;
		goto out;
	}
	run.lkid = lksb.lkid;
	if (print_epoch)
		fprintf(stderr, "epoch %" PRIu64 "\n", lksb.epoch);

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, &oldmask);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		vmfsctl_err("signalfd: %s", strerror(errno));
		ret = VMFSCTL_EXIT_FAIL;
		goto release;
	}
	fflush(NULL);
	child = fork();
	if (child < 0) {
		vmfsctl_err("cannot fork to run %s: %s", cmd[0], strerror(errno));
		ret = VMFSCTL_EXIT_FAIL;
		goto release;
	}
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		execvp(cmd[0], cmd);
		vmfsctl_err("cannot run %s: %s", cmd[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	status = supervise(h, &run, child, sfd);
	if (WIFEXITED(status))
		ret = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		ret = 128 + WTERMSIG(status);
	else
		ret = VMFSCTL_EXIT_FAIL;
release:
	if (!run.lost) {
		int r = vmfs_dlm_unlock(h, &lksb, 0);

		if (r < 0 && r != VMFS_DLM_EDAEMON)
			vmfsctl_err("warning: releasing lock %s/%s failed: %s", run.ls, run.name,
				    vmfsctl_strerror(r));
	}
out:
	if (sfd >= 0)
		close(sfd);
	vmfs_dlm_close(h);
	return ret;
}

static int parse_u64(const char *s, const char *what, uint64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *s == '-') {
		vmfsctl_err("%s must be a number, not '%s'", what, s);
		return -EINVAL;
	}
	return 0;
}

/* One triple: TRANSFER, as ever.  Several: one TRANSFER_SET, all or
 * nothing (vmfs_dlm_transfer_set()). */
int cmd_transfer(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "lockspace", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmfs_dlm_transfer t[VMFS_DLM_TRANSFER_SET_MAX];
	vmfs_dlm_t *h = NULL;
	const char *hint;
	size_t n;
	int c, ret;

	while ((c = getopt_long(argc, argv, "l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			/* Lock ids are cluster-wide; accepted for symmetry. */
			break;
		case 'h':
			printf("usage: vmfsctl transfer [--lockspace LS] FROM_LKID FROM_EPOCH TO_LKID "
			       "[FROM_LKID FROM_EPOCH TO_LKID ...]\n"
			       "Several triples move together in one message, or none moves.\n");
			return VMFSCTL_EXIT_OK;
		default:
			return vmfsctl_usage("transfer");
		}
	}
	if (argc - optind < 3 || (argc - optind) % 3)
		return vmfsctl_usage("transfer");
	n = (size_t)(argc - optind) / 3;
	if (n > VMFS_DLM_TRANSFER_SET_MAX) {
		vmfsctl_err("at most %d transfers in one message", VMFS_DLM_TRANSFER_SET_MAX);
		return VMFSCTL_EXIT_USAGE;
	}
	for (size_t i = 0; i < n; i++) {
		char **a = argv + optind + 3 * i;

		if (parse_u64(a[0], "FROM_LKID", &t[i].from) ||
		    parse_u64(a[1], "FROM_EPOCH", &t[i].from_epoch) ||
		    parse_u64(a[2], "TO_LKID", &t[i].to))
			return VMFSCTL_EXIT_USAGE;
	}
	ret = vmfsctl_connect("vmfsctl", &h);
	if (ret)
		goto out;
	if (n == 1)
		ret = vmfs_dlm_transfer(h, t[0].from, t[0].from_epoch, t[0].to);
	else
		ret = vmfs_dlm_transfer_set(h, t, n);
	if (ret == 0) {
		for (size_t i = 0; i < n; i++)
			printf("lock %" PRIu64 " (epoch %" PRIu64 ") transferred to lock %" PRIu64 "\n",
			       t[i].from, t[i].from_epoch, t[i].to);
		goto out;
	}
	switch (ret) {
	case VMFS_DLM_ESTALE:
		hint = "it was granted or transferred again since; read the current epoch with "
		       "'vmfsctl locks'";
		break;
	case VMFS_DLM_ENOLOCK:
		hint = "FROM must be a granted lock and TO a pending request on the same resource; "
		       "see 'vmfsctl locks'";
		break;
	case VMFS_DLM_EINCOMPAT:
		hint = "TO's requested mode conflicts with the other holders";
		break;
	case -EINVAL:
		hint = n > 1 ? "a lock is named twice in the set" : "bad lock ids";
		break;
	default:
		hint = "see 'vmfsctl locks' and 'vmfsctl log'";
		break;
	}
	if (n == 1)
		vmfsctl_err("transfer of lock %" PRIu64 " (epoch %" PRIu64 ") to lock %" PRIu64
			    " refused: %s \u2014 %s", t[0].from, t[0].from_epoch, t[0].to,
			    vmfsctl_strerror(ret), hint);
	else
		vmfsctl_err("transfer of %zu locks refused, none moved: %s \u2014 %s", n,
			    vmfsctl_strerror(ret), hint);
	ret = VMFSCTL_EXIT_FAIL;
out:
	vmfs_dlm_close(h);
	return ret;
}
