/* vmfs-migrate.c — the disk-lock handoff helper of a live migration
 * (vmfs-migrate(8); library: include/vmfs/handoff.h).
 *
 *   vmfs-migrate prepare --vm NAME [--lockspace LS] [--timeout SEC] RES...
 *       destination; stays running: prints "prepared" once every request is
 *       queued, then waits.  Exit 0 when the handoff gave it the locks (they
 *       stay as PERSISTENT orphans of this host, for the hypervisor to
 *       ADOPT), 3 when aborted (SIGTERM, SIGINT, `abort`), 1 on failure.
 *   vmfs-migrate handoff [--vm] NAME [--lockspace LS] [--from-host H]
 *                        [--epoch RES=E ...]
 *       either host: one TRANSFER_SET of every disk lock of NAME, conditional
 *       on the epochs read from the table or, with --epoch, on the epochs
 *       the source VM's handles carry.
 *   vmfs-migrate abort [--vm] NAME [--lockspace LS] [--timeout SEC]
 *       destination: ends this host's prepare of NAME; ownership stays.
 *       source, after a handoff the destination did not acknowledge: gives
 *       the disks back to this host's return claims (one TRANSFER_SET).
 *   vmfs-migrate return arm --vm NAME PATH... | drop PATH... | state PATH...
 *       source: the return claims on the VM's disk files (the way back
 *       after a handoff; include/vmfs/handoff.h).
 *   vmfs-migrate status [--vm] NAME [--lockspace LS] [--from-host H]
 *       what handoff would move, without moving it.
 *   vmfs-migrate qemu [--vm] NAME --source-qmp A --dest-qmp A --uri URI ...
 *       a QEMU live migration over QMP with the handoff at QEMU's
 *       pre-switchover pause (qemu.c).
 *
 * Why prepare is a long-running process: the lock manager drops a waiting
 * request when its client goes away, PERSISTENT or not (only granted
 * PERSISTENT locks become orphans), so the destination's pending claims
 * live exactly as long as the process that made them.  That is also what
 * makes `abort` robust: killing the prepare (even with SIGKILL) removes
 * its requests.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmfs/dlm.h"
#include "vmfs/handoff.h"
#include "qemu.h"
#include "vmfsdisk.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_ABORTED 3

#define PROGRAM "vmfs-migrate"

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void err(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs(PROGRAM ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmfs-migrate prepare --vm NAME [--lockspace LS] [--timeout SEC] RES...\n"
		"       vmfs-migrate prepare --vm NAME [--timeout SEC] PATH...   (files on vmfs)\n"
		"       vmfs-migrate handoff [--vm] NAME [--lockspace LS] [--from-host HOST]\n"
		"                            [--epoch RES=EPOCH ...]\n"
		"       vmfs-migrate abort [--vm] NAME [--lockspace LS] [--timeout SEC]\n"
		"       vmfs-migrate return arm --vm NAME PATH... | drop PATH... | state PATH...\n"
		"       vmfs-migrate status [--vm] NAME [--lockspace LS] [--from-host HOST] [PATH...]\n"
		"       vmfs-migrate qemu [--vm] NAME --source-qmp ADDR --dest-qmp ADDR --uri URI\n"
		"                         [OPTIONS...]   ('vmfs-migrate qemu --help')\n"
		"Move every disk lock of a VM (EX locks tagged with its name) from the source\n"
		"host to the destination host in one lock-manager message.  See vmfs-migrate(8).\n");
}

struct epoch_arg {
	const char *res;
	uint64_t epoch;
};

struct args {
	struct epoch_arg epochs[VMFS_HANDOFF_DISKS_MAX];	/* handoff --epoch RES=E */
	int n_epochs;
	const char *vm;
	const char *ls;
	bool ls_given;		/* --lockspace: only that one (else every lockspace) */
	const char *from_host;
	int timeout_ms;		/* -1: none */
	char **rest;		/* prepare: the resources */
	int n_rest;
};

static int parse_seconds(const char *s, int *ms)
{
	char *end;
	double sec = strtod(s, &end);

	if (*end || end == s || !(sec >= 0) || sec > INT_MAX / 1000)
		return -1;
	*ms = (int)(sec * 1000 + 0.5);
	return 0;
}

/* Options of every subcommand; a positional NAME is the VM for all but
 * prepare (so `PROG handoff NAME` works, as vmfs-vmm --handoff-exec calls). */
static int parse_ex(int argc, char **argv, bool prepare, bool with_paths, struct args *a);

static int parse(int argc, char **argv, bool prepare, struct args *a)
{
	return parse_ex(argc, argv, prepare, false, a);
}

/* with_paths: after the VM name, PATH arguments are allowed (status). */
static int parse_ex(int argc, char **argv, bool prepare, bool with_paths, struct args *a)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "lockspace", required_argument, NULL, 'l' },
		{ "from-host", required_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 'w' },
		{ "epoch", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(a, 0, sizeof(*a));
	a->ls = VMFS_HANDOFF_DEFAULT_LS;
	a->timeout_ms = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v:l:f:w:e:h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': {
			char *eq = strrchr(optarg, '='), *end;
			unsigned long long e;

			if (!eq || eq == optarg || !eq[1] || a->n_epochs == VMFS_HANDOFF_DISKS_MAX) {
				err("--epoch wants RES=EPOCH (at most %d), not '%s'",
				    VMFS_HANDOFF_DISKS_MAX, optarg);
				return EXIT_USAGE;
			}
			errno = 0;
			e = strtoull(eq + 1, &end, 10);
			if (errno || *end || eq[1] == '-') {
				err("--epoch %s: the epoch must be a number", optarg);
				return EXIT_USAGE;
			}
			*eq = '\0';
			a->epochs[a->n_epochs].res = optarg;
			a->epochs[a->n_epochs].epoch = e;
			a->n_epochs++;
			break;
		}
		case 'v':
			a->vm = optarg;
			break;
		case 'l':
			a->ls = optarg;
			a->ls_given = true;
			break;
		case 'f':
			a->from_host = optarg;
			break;
		case 'w':
			if (parse_seconds(optarg, &a->timeout_ms)) {
				err("--timeout wants seconds, not '%s'", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	a->rest = argv + optind;
	a->n_rest = argc - optind;
	if (!prepare && !a->vm && (a->n_rest == 1 || (with_paths && a->n_rest > 1))) {
		a->vm = a->rest[0];
		a->rest++;
		a->n_rest--;
	}
	if (!a->vm || !*a->vm || strlen(a->vm) > VMFS_DLM_TAG_MAX) {
		err("the VM name (--vm NAME) is required, 1 to %d bytes", VMFS_DLM_TAG_MAX);
		return EXIT_USAGE;
	}
	if (!*a->ls || strlen(a->ls) > VMFS_DLM_NAME_MAX) {
		err("--lockspace must be 1 to %d bytes", VMFS_DLM_NAME_MAX);
		return EXIT_USAGE;
	}
	if (prepare && a->n_epochs) {
		err("--epoch belongs to handoff and status");
		return EXIT_USAGE;
	}
	if (prepare ? a->n_rest < 1 : (a->n_rest != 0 && !with_paths)) {
		usage(stderr);
		return EXIT_USAGE;
	}
	return 0;
}

static int connect_dlm(vmfs_dlm_t **h)
{
	int rc = vmfs_dlm_open(PROGRAM, h);

	if (rc < 0) {
		err("cannot connect to vmfs-dlmd: %s (is it running on this host?)",
		    vmfs_dlm_strerror(rc));
		return EXIT_FAIL;
	}
	return 0;
}

/* --- disks that are files on vmfs mounts ------------------------------------
 *
 * The claim is the destination mount's (setxattr trusted.vmfs.incoming =
 * VM, fs/fuse_ops.h): it outlives this process, so the prepare withdraws it
 * (removexattr) when it ends without a handoff, and records the paths in
 * RUNDIR/VM.prepare so that `abort` can withdraw them itself if the prepare
 * was killed without a chance to (SIGKILL). */

#define RUNDIR_DEFAULT "/run/vmfs-migrate"

static bool is_prepare_process(pid_t pid);

static uint64_t mono_ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *rundir(void)
{
	const char *d = getenv("VMFS_MIGRATE_RUNDIR");

	return d && *d ? d : RUNDIR_DEFAULT;
}

static int state_path(const char *vm, char *out, size_t len)
{
	if (strchr(vm, '/') || vm[0] == '.')
		return -EINVAL;
	if ((size_t)snprintf(out, len, "%s/%s.prepare", rundir(), vm) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* Where this host's claim on one file stands in the lock table. */
enum claim { CLAIM_NONE, CLAIM_WAITING, CLAIM_GRANTED };

/* The claim tagged vm on host me on ls/res, from a parsed "locks" table. */
static enum claim claim_of(json_object *table, const char *ls, const char *res, const char *me,
			   const char *vm)
{
	json_object *lss, *v;
	enum claim c = CLAIM_NONE;

	lss = json_object_object_get_ex(table, "lockspaces", &v) ? v : NULL;
	for (size_t i = 0; lss && i < json_object_array_length(lss); i++) {
		json_object *l = json_object_array_get_idx(lss, i), *rs;

		if (!json_object_object_get_ex(l, "name", &v) ||
		    strcmp(json_object_get_string(v), ls) != 0 ||
		    !json_object_object_get_ex(l, "resources", &rs))
			continue;
		for (size_t j = 0; j < json_object_array_length(rs); j++) {
			json_object *r = json_object_array_get_idx(rs, j), *locks;

			if (!json_object_object_get_ex(r, "name", &v) ||
			    strcmp(json_object_get_string(v), res) != 0 ||
			    !json_object_object_get_ex(r, "locks", &locks))
				continue;
			for (size_t k = 0; k < json_object_array_length(locks); k++) {
				json_object *lk = json_object_array_get_idx(locks, k), *f;
				const char *q;

				if (!json_object_object_get_ex(lk, "tag", &f) ||
				    strcmp(json_object_get_string(f), vm) != 0 ||
				    !json_object_object_get_ex(lk, "host", &f) ||
				    strcmp(json_object_get_string(f), me) != 0 ||
				    !json_object_object_get_ex(lk, "queue", &f))
					continue;
				q = json_object_get_string(f);
				if (strcmp(q, "waiting") == 0)
					c = CLAIM_WAITING;
				else if (c == CLAIM_NONE)
					c = CLAIM_GRANTED;
			}
		}
	}
	return c;
}

/* The claims of the n disks: st[i].  0 or a lock-manager error. */
static int claims(vmfs_dlm_t *h, const struct vmfsdisk *d, int n, const char *me,
		  const char *vm, enum claim *st)
{
	json_object *table;
	char *text = NULL;
	int rc = vmfs_dlm_query(h, "locks", NULL, &text);

	if (rc < 0)
		return rc;
	table = json_tokener_parse(text);
	free(text);
	if (!table)
		return VMFS_DLM_EPROTO;
	for (int i = 0; i < n; i++)
		st[i] = claim_of(table, d[i].ls, d[i].res, me, vm);
	json_object_put(table);
	return 0;
}

/* Withdraw the claims on paths[0..n) that still wait (a granted one is the
 * handoff's result: left alone).  st may be NULL: withdraw all. */
static void withdraw(const struct vmfsdisk *d, int n, const enum claim *st)
{
	for (int i = 0; i < n; i++) {
		if (st && st[i] == CLAIM_GRANTED)
			continue;
		if (removexattr(d[i].path, VMFSDISK_XATTR_INCOMING) < 0 && errno != ENOENT &&
		    errno != ENODATA)
			err("%s: cannot withdraw the claim (removexattr %s): %s", d[i].path,
			    VMFSDISK_XATTR_INCOMING, strerror(errno));
	}
}

static int state_write(const char *vm, const struct vmfsdisk *d, int n)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *f;

	if (state_path(vm, path, sizeof(path)) < 0)
		return -EINVAL;
	if (mkdir(rundir(), 0700) < 0 && errno != EEXIST)
		return -errno;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "pid %d\n", (int)getpid());
	for (int i = 0; i < n; i++)
		fprintf(f, "disk %s\n", d[i].path);
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		int e = -errno;

		unlink(tmp);
		return e;
	}
	return 0;
}

static void state_remove(const char *vm)
{
	char path[PATH_MAX];

	if (state_path(vm, path, sizeof(path)) == 0)
		unlink(path);
}

/* prepare with PATH arguments (every disk a file on a vmfs mount). */
static int prepare_files(const struct args *a, vmfs_dlm_t *h, int sfd)
{
	struct vmfsdisk *d = calloc((size_t)a->n_rest, sizeof(*d));
	enum claim st[VMFS_HANDOFF_DISKS_MAX];
	char me[VMFS_DLM_NAME_MAX + 1], why[512];
	uint32_t nodeid;
	int rc, set = 0, ret = EXIT_FAIL, waited = 0;
	uint64_t deadline = 0;

	if (!d) {
		err("out of memory");
		return EXIT_FAIL;
	}
	if (a->ls_given)
		err("--lockspace is ignored for files: a file's lockspace is its volume's UUID");
	if (state_path(a->vm, why, sizeof(why)) < 0) {
		err("a VM whose disks are files needs a name without '/' and not starting "
		    "with '.' (it names %s/NAME.prepare)", rundir());
		goto out;
	}
	for (int i = 0; i < a->n_rest; i++) {
		if (!vmfsdisk_is_path(a->rest[i])) {
			err("%s: a lock name among file paths: give every disk of %s as a file "
			    "path, or every one as a lock name", a->rest[i], a->vm);
			goto out;
		}
		rc = vmfsdisk_resolve(a->rest[i], &d[i], why, sizeof(why));
		if (rc < 0) {
			err("prepare of %s: %s", a->vm, why);
			goto out;
		}
		for (int j = 0; j < i; j++)
			if (strcmp(d[i].ls, d[j].ls) == 0 && strcmp(d[i].res, d[j].res) == 0) {
				err("%s and %s are the same file", d[j].path, d[i].path);
				goto out;
			}
	}
	rc = vmfs_dlm_local_node(h, &nodeid, me);
	if (rc < 0) {
		err("cannot ask vmfs-dlmd for this host's name: %s", vmfs_dlm_strerror(rc));
		goto out;
	}
	rc = state_write(a->vm, d, a->n_rest);
	if (rc < 0) {
		err("cannot record the prepare in %s: %s", rundir(), strerror(-rc));
		goto out;
	}
	for (; set < a->n_rest; set++) {
		if (setxattr(d[set].path, VMFSDISK_XATTR_INCOMING, a->vm, strlen(a->vm), 0) == 0)
			continue;
		switch (errno) {
		case EBUSY:
			err("%s: the mount refused the claim (EBUSY): the file is open on this "
			    "host, or prepared for another VM", d[set].path);
			break;
		case EOPNOTSUPP:
			err("%s: the vmfs mount has no lock manager (mount it with -o cluster)",
			    d[set].path);
			break;
		case EPERM:
			err("%s: only root may claim a file for an incoming VM", d[set].path);
			break;
		default:
			err("%s: setxattr %s: %s", d[set].path, VMFSDISK_XATTR_INCOMING,
			    strerror(errno));
			break;
		}
		goto undo;
	}
	/* The mount answers once the claim is queued; check the table anyway, so
	 * "prepared" means a handoff started now finds every claim. */
	for (;;) {
		bool all = true;

		rc = claims(h, d, a->n_rest, me, a->vm, st);
		if (rc < 0) {
			err("cannot read the lock table: %s", vmfs_dlm_strerror(rc));
			goto undo;
		}
		for (int i = 0; i < a->n_rest; i++)
			all &= st[i] != CLAIM_NONE;
		if (all)
			break;
		if (waited >= 10000) {
			for (int i = 0; i < a->n_rest; i++)
				if (st[i] == CLAIM_NONE)
					err("%s: the claim is not in the lock table (%s/%s) after "
					    "10 s", d[i].path, d[i].ls, d[i].res);
			goto undo;
		}
		usleep(50 * 1000);
		waited += 50;
	}
	for (int i = 0; i < a->n_rest; i++)
		printf("%s: %s/%s %s\n", d[i].path, d[i].ls, d[i].res,
		       st[i] == CLAIM_WAITING ? "queued behind its holder" :
		       "was free: granted to this host at once");
	printf("prepared %s: %d disk%s queued\n", a->vm, a->n_rest, a->n_rest == 1 ? "" : "s");
	fflush(stdout);
	if (a->timeout_ms >= 0)
		deadline = mono_ms_now() + (uint64_t)a->timeout_ms;
	for (;;) {
		struct pollfd pfd = { .fd = sfd, .events = POLLIN };
		bool all = true;

		rc = claims(h, d, a->n_rest, me, a->vm, st);
		if (rc < 0) {
			err("cannot read the lock table: %s; withdrawing", vmfs_dlm_strerror(rc));
			goto undo;
		}
		for (int i = 0; i < a->n_rest; i++) {
			if (st[i] == CLAIM_NONE) {
				err("%s: the claim of %s vanished (withdrawn, or the mount went "
				    "away); withdrawing the rest", d[i].path, a->vm);
				goto undo;
			}
			all &= st[i] == CLAIM_GRANTED;
		}
		if (all) {
			printf("handed over: %s's disks are this host's (the mount holds their "
			       "locks for the VM's opens)\n", a->vm);
			ret = EXIT_OK;
			state_remove(a->vm);
			goto out;
		}
		if (deadline && mono_ms_now() >= deadline) {
			err("no handoff of %s within the timeout; withdrawing", a->vm);
			goto undo;
		}
		if (poll(&pfd, 1, 200) > 0 && (pfd.revents & POLLIN)) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				/* a claim granted meanwhile is the handoff's: keep it */
				if (claims(h, d, a->n_rest, me, a->vm, st) < 0)
					memset(st, 0, sizeof(st));
				all = true;
				for (int i = 0; i < a->n_rest; i++)
					all &= st[i] == CLAIM_GRANTED;
				if (all) {
					printf("abort came too late: the handoff of %s already "
					       "happened\n", a->vm);
					ret = EXIT_OK;
					state_remove(a->vm);
					goto out;
				}
				withdraw(d, set, st);
				state_remove(a->vm);
				printf("aborted: %s stays with its source\n", a->vm);
				ret = EXIT_ABORTED;
				goto out;
			}
		}
	}
undo:
	withdraw(d, set, NULL);
	state_remove(a->vm);
out:
	free(d);
	return ret;
}

/* abort of a file prepare: end the prepare process, and if it could not
 * withdraw (it was killed), withdraw from the recorded paths.  1 when there
 * was a file prepare of vm on this host, 0 when none, -1 on failure. */
static int abort_files(const struct args *a, int limit)
{
	char path[PATH_MAX], *line = NULL;
	struct vmfsdisk d[VMFS_HANDOFF_DISKS_MAX];
	size_t cap = 0;
	pid_t pid = 0;
	int n = 0, waited = 0;
	FILE *f;

	if (state_path(a->vm, path, sizeof(path)) < 0)
		return 0;
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "pid ", 4) == 0)
			pid = (pid_t)atoi(line + 4);
		else if (strncmp(line, "disk ", 5) == 0 && n < VMFS_HANDOFF_DISKS_MAX)
			snprintf(d[n++].path, sizeof(d[0].path), "%s", line + 5);
	}
	free(line);
	fclose(f);
	if (pid > 0 && is_prepare_process(pid)) {
		if (kill(pid, SIGTERM) < 0 && errno != ESRCH)
			err("cannot signal prepare process %d: %s", (int)pid, strerror(errno));
		while (is_prepare_process(pid) && waited < limit) {
			usleep(50 * 1000);
			waited += 50;
		}
		if (is_prepare_process(pid)) {
			err("prepare process %d of %s still runs after %d ms", (int)pid, a->vm,
			    limit);
			return -1;
		}
	}
	/* Gone without withdrawing (SIGKILL, crash): do it here.  The state file
	 * is removed by a prepare that ended on its own. */
	if (access(path, F_OK) == 0) {
		withdraw(d, n, NULL);
		unlink(path);
	}
	return 1;
}

/* --- prepare ---------------------------------------------------------------- */

static int cmd_prepare(int argc, char **argv)
{
	struct vmfs_handoff_disk got[VMFS_HANDOFF_DISKS_MAX];
	struct vmfs_handoff *p = NULL;
	struct args a;
	char why[512];
	sigset_t mask;
	vmfs_dlm_t *h = NULL;
	int rc, sfd = -1, ret = EXIT_FAIL;
	uint64_t deadline = 0;

	rc = parse(argc, argv, true, &a);
	if (rc)
		return rc;
	if (a.n_rest > VMFS_HANDOFF_DISKS_MAX) {
		err("%d disks: at most %d per VM", a.n_rest, VMFS_HANDOFF_DISKS_MAX);
		return EXIT_USAGE;
	}
	/* Signals are read from a signalfd, so an abort cannot interrupt the
	 * library half-way. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		err("signalfd: %s", strerror(errno));
		return EXIT_FAIL;
	}
	if (connect_dlm(&h))
		goto out;
	for (int i = 0; i < a.n_rest; i++)
		if (vmfsdisk_is_path(a.rest[i])) {
			ret = prepare_files(&a, h, sfd);
			goto out;
		}
	rc = vmfs_handoff_prepare(h, a.vm, a.ls, (const char *const *)a.rest, (size_t)a.n_rest,
				  a.timeout_ms, &p, why, sizeof(why));
	if (rc < 0) {
		err("prepare of %s failed: %s", a.vm, why);
		goto out;
	}
	printf("prepared %s: %d disk%s queued in lockspace %s\n", a.vm, a.n_rest,
	       a.n_rest == 1 ? "" : "s", a.ls);
	fflush(stdout);
	if (a.timeout_ms >= 0) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 +
			   (uint64_t)a.timeout_ms;
	}
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = vmfs_dlm_fd(h), .events = POLLIN },
			{ .fd = sfd, .events = POLLIN },
		};
		int timeout = -1;

		rc = vmfs_handoff_poll(p, got, VMFS_HANDOFF_DISKS_MAX);
		if (rc == 1) {
			for (int i = 0; i < a.n_rest; i++)
				printf("received %s/%s lkid %" PRIu64 " epoch %" PRIu64 "\n", a.ls,
				       got[i].res, got[i].to_lkid, got[i].epoch);
			printf("handed over: %s's disk locks are held by this host (orphans "
			       "until the hypervisor adopts them)\n", a.vm);
			vmfs_handoff_free(p);
			p = NULL;
			ret = EXIT_OK;
			goto out;
		}
		if (rc < 0) {
			err("prepare of %s ended: %s; cancelling the rest", a.vm,
			    vmfs_handoff_strerror(rc));
			break;
		}
		if (deadline) {
			struct timespec ts;
			uint64_t now;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
			if (now >= deadline) {
				err("no handoff of %s within the timeout; cancelling", a.vm);
				break;
			}
			timeout = (int)(deadline - now);
		}
		if (pfd[0].fd < 0) {
			err("connection to vmfs-dlmd lost");
			break;
		}
		rc = poll(pfd, 2, timeout);
		if (rc < 0 && errno != EINTR) {
			err("poll: %s", strerror(errno));
			break;
		}
		if (rc > 0 && (pfd[1].revents & POLLIN)) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				rc = vmfs_handoff_abort(p);
				p = NULL;
				if (rc == -EALREADY) {
					printf("abort came too late: the handoff of %s already "
					       "happened\n", a.vm);
					ret = EXIT_OK;
				} else {
					printf("aborted: %s stays with its source\n", a.vm);
					ret = EXIT_ABORTED;
				}
				goto out;
			}
		}
		if (rc > 0 && pfd[0].revents) {
			rc = vmfs_dlm_dispatch(h);
			if (rc == VMFS_DLM_EDAEMON) {
				err("connection to vmfs-dlmd lost: the prepared requests are gone");
				break;
			}
		}
	}
	if (p) {
		(void)vmfs_handoff_abort(p);
		p = NULL;
	}
out:
	if (p)
		vmfs_handoff_free(p);
	vmfs_dlm_close(h);
	if (sfd >= 0)
		close(sfd);
	return ret;
}

/* --- handoff / status ----------------------------------------------------- */

/* status PATH...: every lock and request on each file's open lock. */
static void print_file_locks(vmfs_dlm_t *h, const char *path)
{
	struct vmfsdisk d;
	json_object *table, *lss, *v;
	char why[512], *text = NULL;
	int rc, shown = 0;

	rc = vmfsdisk_resolve(path, &d, why, sizeof(why));
	if (rc < 0) {
		err("%s", why);
		return;
	}
	rc = vmfs_dlm_query(h, "locks", d.ls, &text);
	if (rc < 0) {
		err("cannot read the lock table: %s", vmfs_dlm_strerror(rc));
		return;
	}
	table = json_tokener_parse(text);
	free(text);
	lss = table && json_object_object_get_ex(table, "lockspaces", &v) ? v : NULL;
	for (size_t i = 0; lss && i < json_object_array_length(lss); i++) {
		json_object *l = json_object_array_get_idx(lss, i), *rs;

		if (!json_object_object_get_ex(l, "name", &v) ||
		    strcmp(json_object_get_string(v), d.ls) != 0 ||
		    !json_object_object_get_ex(l, "resources", &rs))
			continue;
		for (size_t j = 0; j < json_object_array_length(rs); j++) {
			json_object *r = json_object_array_get_idx(rs, j), *locks;

			if (!json_object_object_get_ex(r, "name", &v) ||
			    strcmp(json_object_get_string(v), d.res) != 0 ||
			    !json_object_object_get_ex(r, "locks", &locks))
				continue;
			for (size_t k = 0; k < json_object_array_length(locks); k++) {
				json_object *lk = json_object_array_get_idx(locks, k), *f;
				const char *fld[4] = { "queue", "mode", "host", "tag" }, *val[4];

				for (int m = 0; m < 4; m++)
					val[m] = json_object_object_get_ex(lk, fld[m], &f) ?
						 json_object_get_string(f) : "?";
				printf("%s: %s/%s %s %s on %s tag %s lkid %" PRIu64 " epoch %" PRIu64
				       "\n", path, d.ls, d.res, val[0], val[1], val[2], val[3],
				       json_object_object_get_ex(lk, "lkid", &f) ?
				       json_object_get_uint64(f) : 0,
				       json_object_object_get_ex(lk, "epoch", &f) ?
				       json_object_get_uint64(f) : 0);
				shown++;
			}
		}
	}
	if (!shown)
		printf("%s: %s/%s not locked by anyone\n", path, d.ls, d.res);
	json_object_put(table);
}

static int cmd_handoff(int argc, char **argv, bool dry)
{
	struct vmfs_handoff_ldisk d[VMFS_HANDOFF_DISKS_MAX];
	struct args a;
	vmfs_dlm_t *h = NULL;
	char why[512];
	size_t n = 0;
	int rc, ret = EXIT_FAIL;

	rc = parse_ex(argc, argv, false, dry, &a);
	if (rc)
		return rc;
	if (connect_dlm(&h))
		return EXIT_FAIL;
	for (int i = 0; dry && i < a.n_rest; i++)
		print_file_locks(h, a.rest[i]);
	/* Without --lockspace every lockspace is searched: disks that are files
	 * on vmfs mounts are in their volume's lockspace. */
	rc = vmfs_handoff_lookup_any(h, a.vm, a.ls_given ? a.ls : NULL, a.from_host, d,
				     VMFS_HANDOFF_DISKS_MAX, &n, why, sizeof(why));
	/* --epoch: the epochs the source VM's handles carry replace the
	 * table's, so the move is conditional on them.  RES or LS/RES. */
	for (int i = 0; rc == 0 && i < a.n_epochs; i++) {
		bool found = false;

		for (size_t k = 0; k < n; k++) {
			size_t ll = strlen(d[k].ls);
			const char *r = a.epochs[i].res;

			if (strncmp(r, d[k].ls, ll) == 0 && r[ll] == '/')
				r += ll + 1;
			if (strcmp(d[k].d.res, r) == 0) {
				d[k].d.from_epoch = a.epochs[i].epoch;
				found = true;
			}
		}
		if (!found) {
			snprintf(why, sizeof(why), "--epoch names %s, which is not a disk lock of %s",
				 a.epochs[i].res, a.vm);
			rc = -EINVAL;
		}
	}
	if (rc == 0 && !dry)
		rc = vmfs_handoff_commit_ldisks(h, d, n, why, sizeof(why));
	if (rc < 0) {
		if (dry) {
			printf("%s is not ready for a handoff: %s\n", a.vm, why);
			ret = a.n_rest ? EXIT_OK : EXIT_FAIL;
		} else {
			err("handoff of %s refused: %s; nothing changed", a.vm, why);
		}
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct vmfs_handoff_disk *x = &d[i].d;

		if (dry)
			printf("%s/%s: lkid %" PRIu64 " on %s (epoch %" PRIu64 ") -> request %"
			       PRIu64 " on %s\n", d[i].ls, x->res, x->from_lkid, x->from_host,
			       x->from_epoch, x->to_lkid, x->to_host);
		else
			printf("%s/%s: %s -> %s, lkid %" PRIu64 " -> %" PRIu64 ", epoch %" PRIu64
			       " -> %" PRIu64 "\n", d[i].ls, x->res, x->from_host, x->to_host,
			       x->from_lkid, x->to_lkid, x->from_epoch, x->epoch);
	}
	if (!dry)
		printf("handed over %s: %zu disk lock%s moved to %s in one transfer\n", a.vm, n,
		       n == 1 ? "" : "s", n ? d[0].d.to_host : "?");
	ret = EXIT_OK;
out:
	vmfs_dlm_close(h);
	return ret;
}

/* --- abort -------------------------------------------------------------- */

/* The prepare processes of vm on this host: waiting requests tagged vm,
 * made by a client named vmfs-migrate on host `me`.  Fills pids (distinct),
 * counts waiting requests of vm elsewhere and locks granted. */
struct pending_scan {
	pid_t pids[VMFS_HANDOFF_DISKS_MAX];
	int n_pids;
	int here;		/* waiting requests of vm on this host */
	int here_foreign;	/* ... not made by vmfs-migrate */
	int elsewhere;		/* waiting requests of vm on other hosts */
	char other_host[VMFS_DLM_NAME_MAX + 1];
	char owner[VMFS_DLM_NAME_MAX + 1];	/* a host holding a lock of vm */
};

static int scan(vmfs_dlm_t *h, const struct args *a, const char *me, struct pending_scan *s)
{
	json_object *table, *lss, *v;
	char *text = NULL;
	int rc;

	memset(s, 0, sizeof(*s));
	rc = vmfs_dlm_query(h, "locks", a->ls, &text);
	if (rc < 0)
		return rc;
	table = json_tokener_parse(text);
	free(text);
	if (!table)
		return VMFS_DLM_EPROTO;
	lss = json_object_object_get_ex(table, "lockspaces", &v) ? v : NULL;
	for (size_t i = 0; lss && i < json_object_array_length(lss); i++) {
		json_object *l = json_object_array_get_idx(lss, i), *res;

		if (!json_object_object_get_ex(l, "name", &v) ||
		    strcmp(json_object_get_string(v), a->ls) != 0 ||
		    !json_object_object_get_ex(l, "resources", &res))
			continue;
		for (size_t j = 0; j < json_object_array_length(res); j++) {
			json_object *r = json_object_array_get_idx(res, j), *locks;

			if (!json_object_object_get_ex(r, "locks", &locks))
				continue;
			for (size_t k = 0; k < json_object_array_length(locks); k++) {
				json_object *lk = json_object_array_get_idx(locks, k), *f;
				const char *tag = "", *queue = "", *host = "", *prog = "";
				pid_t pid = 0;

				if (json_object_object_get_ex(lk, "tag", &f))
					tag = json_object_get_string(f);
				if (json_object_object_get_ex(lk, "queue", &f))
					queue = json_object_get_string(f);
				if (json_object_object_get_ex(lk, "host", &f))
					host = json_object_get_string(f);
				if (json_object_object_get_ex(lk, "program", &f))
					prog = json_object_get_string(f);
				if (json_object_object_get_ex(lk, "pid", &f))
					pid = (pid_t)json_object_get_int64(f);
				if (strcmp(tag, a->vm) != 0)
					continue;
				if (strcmp(queue, "granted") == 0) {
					snprintf(s->owner, sizeof(s->owner), "%s", host);
					continue;
				}
				if (strcmp(queue, "waiting") != 0)
					continue;
				if (strcmp(host, me) != 0) {
					s->elsewhere++;
					snprintf(s->other_host, sizeof(s->other_host), "%s", host);
					continue;
				}
				s->here++;
				if (strcmp(prog, PROGRAM) != 0 || pid <= 0) {
					s->here_foreign++;
					continue;
				}
				bool seen = false;

				for (int m = 0; m < s->n_pids; m++)
					seen |= s->pids[m] == pid;
				if (!seen && s->n_pids < VMFS_HANDOFF_DISKS_MAX)
					s->pids[s->n_pids++] = pid;
			}
		}
	}
	json_object_put(table);
	return 0;
}

/* /proc/PID/comm is "vmfs-migrate": the pid was not reused meanwhile. */
static bool is_prepare_process(pid_t pid)
{
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	return strcmp(comm, PROGRAM) == 0;
}

/* abort on the source: 1 when the disks were given back (or were back),
 * 0 when there is no return claim of vm here, -1 on failure. */
static int giveback(vmfs_dlm_t *h, const char *vm, const char *me)
{
	struct vmfs_handoff_ldisk d[VMFS_HANDOFF_DISKS_MAX];
	char why[512];
	size_t n = 0;
	int rc;

	if (strlen(vm) > VMFS_HANDOFF_RETURN_VM_MAX)
		return 0;
	rc = vmfs_handoff_giveback(h, vm, me, NULL, 0, d, VMFS_HANDOFF_DISKS_MAX, &n, why,
				   sizeof(why));
	if (rc == VMFS_HANDOFF_ENOPREPARE)
		return 0;
	if (rc < 0) {
		err("cannot give the disks of %s back to %s: %s", vm, me, why);
		return -1;
	}
	for (size_t i = 0; i < n && i < VMFS_HANDOFF_DISKS_MAX; i++)
		printf("given back %s/%s: %s -> %s (lkid %" PRIu64 " -> %" PRIu64 ")\n", d[i].ls,
		       d[i].d.res, d[i].d.from_host, d[i].d.to_host, d[i].d.from_lkid,
		       d[i].d.to_lkid);
	printf("aborted: %s's disks are back on %s (%s)\n", vm, me, why);
	return 1;
}

static int cmd_abort(int argc, char **argv)
{
	struct pending_scan s;
	struct args a;
	vmfs_dlm_t *h = NULL;
	char me[VMFS_DLM_NAME_MAX + 1];
	uint32_t nodeid;
	int rc, ret = EXIT_FAIL, waited = 0, limit;

	rc = parse(argc, argv, false, &a);
	if (rc)
		return rc;
	limit = a.timeout_ms >= 0 ? a.timeout_ms : 10000;
	rc = abort_files(&a, limit);
	if (rc < 0)
		return EXIT_FAIL;
	if (rc > 0) {
		printf("aborted: the claims on %s's disk files are withdrawn; they stay with "
		       "their source\n", a.vm);
		return EXIT_OK;
	}
	if (connect_dlm(&h))
		return EXIT_FAIL;
	rc = vmfs_dlm_local_node(h, &nodeid, me);
	if (rc < 0) {
		err("cannot ask vmfs-dlmd for this host's name: %s", vmfs_dlm_strerror(rc));
		goto out;
	}
	/* The source after a handoff that was not acknowledged: its return
	 * claims wait behind the destination's locks.  Give the disks back. */
	rc = giveback(h, a.vm, me);
	if (rc != 0) {
		ret = rc > 0 ? EXIT_OK : EXIT_FAIL;
		goto out;
	}
	rc = scan(h, &a, me, &s);
	if (rc < 0) {
		err("cannot read the lock table: %s", vmfs_dlm_strerror(rc));
		goto out;
	}
	if (s.here == 0) {
		if (s.elsewhere) {
			err("%s is prepared on %s, not here: run the abort there", a.vm,
			    s.other_host);
			goto out;
		}
		printf("nothing prepared for %s on %s; its disk locks are %s%s\n", a.vm, me,
		       s.owner[0] ? "held by " : "not held by anyone",
		       s.owner[0] ? s.owner : "");
		ret = EXIT_OK;
		goto out;
	}
	if (s.here_foreign) {
		err("%d request%s tagged %s on this host %s not made by vmfs-migrate prepare: "
		    "cancel them in the program that made them", s.here_foreign,
		    s.here_foreign == 1 ? "" : "s", a.vm, s.here_foreign == 1 ? "was" : "were");
		goto out;
	}
	for (int i = 0; i < s.n_pids; i++)
		if (is_prepare_process(s.pids[i]) && kill(s.pids[i], SIGTERM) < 0 && errno != ESRCH)
			err("cannot signal prepare process %d: %s", (int)s.pids[i], strerror(errno));
	/* Its requests are gone when it exits (or when it cancelled them). */
	for (;;) {
		rc = scan(h, &a, me, &s);
		if (rc < 0) {
			err("cannot read the lock table: %s", vmfs_dlm_strerror(rc));
			goto out;
		}
		if (s.here == 0)
			break;
		if (waited >= limit) {
			err("the prepared requests of %s are still queued after %d ms", a.vm, limit);
			goto out;
		}
		usleep(50 * 1000);
		waited += 50;
	}
	printf("aborted: %s's disk locks stay %s%s\n", a.vm, s.owner[0] ? "with " : "unheld",
	       s.owner);
	ret = EXIT_OK;
out:
	vmfs_dlm_close(h);
	return ret;
}

/* --- return claims (source) ------------------------------------------------ */

static int cmd_return(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *vm = NULL, *what;
	char why[512];
	int c, rc, ret = EXIT_OK;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	what = argv[1];
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "v:h", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			vm = optarg;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind + 1;
	argv += optind + 1;
	if (argc < 1 || argc > VMFS_HANDOFF_DISKS_MAX) {
		err("return %s: give 1 to %d disk file paths", what, VMFS_HANDOFF_DISKS_MAX);
		return EXIT_USAGE;
	}
	if (strcmp(what, "arm") == 0) {
		if (!vm || !*vm || strlen(vm) > VMFS_HANDOFF_RETURN_VM_MAX) {
			err("return arm: --vm NAME is required, 1 to %d bytes",
			    VMFS_HANDOFF_RETURN_VM_MAX);
			return EXIT_USAGE;
		}
		rc = vmfs_handoff_return_arm(vm, (const char *const *)argv, (size_t)argc, why,
					     sizeof(why));
		if (rc < 0) {
			err("return arm of %s: %s", vm, why);
			return EXIT_FAIL;
		}
		printf("armed %s on %d disk%s\n", vm, argc, argc == 1 ? "" : "s");
	} else if (strcmp(what, "drop") == 0) {
		rc = vmfs_handoff_return_drop((const char *const *)argv, (size_t)argc);
		if (rc < 0) {
			err("return drop: %s", strerror(-rc));
			return EXIT_FAIL;
		}
		printf("dropped\n");
	} else if (strcmp(what, "state") == 0) {
		for (int i = 0; i < argc; i++) {
			rc = vmfs_handoff_return_state(argv[i], why, sizeof(why));
			if (rc == -ENODATA) {
				printf("%s: none\n", argv[i]);
			} else if (rc < 0) {
				err("%s: %s", argv[i], strerror(-rc));
				ret = EXIT_FAIL;
			} else {
				printf("%s: %s\n", argv[i], why);
			}
		}
	} else {
		err("return: arm, drop or state, not '%s'", what);
		return EXIT_USAGE;
	}
	return ret;
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("vmfs-migrate %s (lock transfer sets of up to %d disks)\n", PACKAGE_VERSION,
		       VMFS_HANDOFF_DISKS_MAX);
		return EXIT_OK;
	}
	if (strcmp(cmd, "prepare") == 0)
		return cmd_prepare(argc - 1, argv + 1);
	if (strcmp(cmd, "handoff") == 0)
		return cmd_handoff(argc - 1, argv + 1, false);
	if (strcmp(cmd, "status") == 0)
		return cmd_handoff(argc - 1, argv + 1, true);
	if (strcmp(cmd, "abort") == 0)
		return cmd_abort(argc - 1, argv + 1);
	if (strcmp(cmd, "qemu") == 0)
		return vmfs_migrate_qemu(argc - 1, argv + 1);
	if (strcmp(cmd, "return") == 0)
		return cmd_return(argc - 1, argv + 1);
	err("unknown command '%s'", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
