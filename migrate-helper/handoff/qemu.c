/* qemu.c — `vmfs-migrate qemu`: live-migrate a QEMU guest over QMP and move
 * its disk locks at QEMU's pre-switchover pause (vmfs-migrate(8)).
 *
 * QEMU (7.2) with the migration capability pause-before-switchover stops
 * the guest after the last RAM pass, before it sends the device state, and
 * waits in status "pre-switchover" for `migrate-continue`.  That is the
 * point of DESIGN.md decision 8: the guest is stopped on the source and the
 * destination is alive, so the disk locks can move in one TRANSFER_SET
 * (vmfs_handoff_commit()).  The sequence:
 *
 *   pre-flight      the lock table must show the VM's locks on the source
 *                   and the destination's prepared requests (vmfs-migrate
 *                   prepare, on the destination host); both QEMUs answer,
 *                   the destination is in "inmigrate"
 *   start           capabilities (pause-before-switchover, events),
 *                   parameters, migrate-incoming on the destination if it
 *                   was started with -incoming defer, migrate on the source
 *   follow          query-migrate every POLL_MS, progress lines; the
 *                   destination's QMP socket is watched for EOF (dead QEMU)
 *   pause           destination still answers? commit the handoff;
 *                   migrate-continue; wait for "completed" on the source
 *                   and a running guest on the destination
 *
 * Failure before the commit (refused handoff, QMP error, timeout, dead
 * destination, SIGINT/SIGTERM): migrate_cancel on the source, which
 * resumes the guest there, and `vmfs-migrate abort` for the prepared
 * requests; ownership stays with the source.  Exit 1.
 *
 * Failure after the commit (the destination did not take over): the locks
 * are the destination's and the source's epochs are stale.  If the source
 * host armed return claims on the VM's disk files before the migration
 * (`vmfs-migrate return arm` there: only a process on the source host can,
 * and this one may run on the destination), the disks are given back to
 * them (vmfs_handoff_giveback(), one TRANSFER_SET, or nothing to move if
 * the dead destination released its lock), the source mount re-arms the
 * handles the handoff fenced, and the source guest goes on: QEMU resumed
 * it itself when the migration failed, or it stopped on an I/O error in
 * the moment before the give-back (werror=stop) and gets a `cont`.  Exit
 * 1, as any rollback.  Without return claims the source guest must not
 * run; it is stopped again and needs a person.  Exit 4.
 *
 * Two forms of disks, told apart by the lock table (not by an option):
 *
 *   resources       prepare --lockspace LS RES...: the VM's disk locks are
 *                   lock-manager resources tagged with the VM's name on
 *                   both sides (vmfs_handoff_lookup/commit, one lockspace)
 *   files           prepare PATH...: each disk is a file on a vmfs mount;
 *                   the source's lock is the mount's open lock i<ino> in
 *                   the volume's lockspace, tagged with its first opener
 *                   (e.g. "qemu-system-x86[1234]"), not with the VM, and
 *                   only the destination's claims carry the VM's name.  So
 *                   the lookup starts from the claims, in every lockspace
 *                   (vmfs_handoff_lookup_any/commit_ldisks).
 *
 * With --lockspace the resource form is tried first (its checks are the
 * stricter: the source's locks must be tagged with the VM), then the file
 * form in that lockspace; without it, the file form over every lockspace,
 * which also finds resources tagged with the VM.  The destination QEMU can
 * open a file disk before the handoff because the prepare claimed it (its
 * writes would fail EAGAIN until then; QEMU does not write to an incoming,
 * inactive image), and the source QEMU has flushed when it stops the guest,
 * before the pause (vm_stop), so nothing of the guest's is written after
 * the locks moved.
 *
 * The QMP client here is the minimum this needs: one JSON object per line,
 * commands tagged with an "id", events drained (and ignored: query-migrate
 * is the source of truth, events only wake the loop up).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmfs/dlm.h"
#include "vmfs/handoff.h"
#include "mountinfo.h"
#include "qemu.h"

#define EXIT_OK 0
#define EXIT_FAIL 1		/* nothing changed: the guest runs on the source with its locks */
#define EXIT_USAGE 2
#define EXIT_SPLIT 4		/* locks handed over, migration did not complete */

#define QMP_TIMEOUT_MS 10000	/* one command's answer */
#define POLL_MS 200		/* query-migrate period */
#define FINISH_TIMEOUT_MS 60000	/* migrate-continue -> completed, and the dest running */
#define CANCEL_TIMEOUT_MS 30000	/* migrate_cancel -> source running again */
#define QMP_LINE_MAX 65536

/* --------------------------------------------------------------- QMP */

struct qmp {
	const char *what;	/* "source" / "destination", for messages */
	const char *addr;
	int fd;
	bool eof;
	unsigned next_id;
	size_t len;
	char buf[QMP_LINE_MAX];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ADDR: unix:PATH, tcp:HOST:PORT or a plain PATH. */
static int qmp_connect(struct qmp *q, char *why, size_t why_len)
{
	const char *a = q->addr;
	struct timeval tv = { .tv_sec = QMP_TIMEOUT_MS / 1000 };

	q->fd = -1;
	if (strncmp(a, "tcp:", 4) == 0) {
		char host[256];
		const char *port = strrchr(a + 4, ':');
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
		size_t hl;
		int rc;

		if (!port || port == a + 4 || !port[1] || (hl = (size_t)(port - (a + 4))) >= sizeof(host)) {
			snprintf(why, why_len, "%s QMP address '%s': tcp:HOST:PORT expected", q->what, a);
			return -1;
		}
		memcpy(host, a + 4, hl);
		host[hl] = '\0';
		if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
			memmove(host, host + 1, hl - 2);
			host[hl - 2] = '\0';
		}
		rc = getaddrinfo(host, port + 1, &hints, &res);
		if (rc) {
			snprintf(why, why_len, "%s QMP address '%s': %s", q->what, a, gai_strerror(rc));
			return -1;
		}
		for (ai = res; ai; ai = ai->ai_next) {
			q->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (q->fd < 0)
				continue;
			/* bounds connect() too on Linux */
			setsockopt(q->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			if (connect(q->fd, ai->ai_addr, ai->ai_addrlen) == 0)
				break;
			close(q->fd);
			q->fd = -1;
		}
		freeaddrinfo(res);
	} else {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		const char *path = strncmp(a, "unix:", 5) == 0 ? a + 5 : a;

		if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
			snprintf(why, why_len, "%s QMP socket path '%s': empty or too long", q->what, path);
			return -1;
		}
		strcpy(sa.sun_path, path);
		q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->fd >= 0 && connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(q->fd);
			q->fd = -1;
		}
	}
	if (q->fd < 0) {
		snprintf(why, why_len, "cannot connect to the %s QEMU's QMP at %s: %s", q->what, a,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/* Read what is there, waiting up to timeout_ms for something.  0: got
 * bytes (or nothing within the timeout), -1: EOF or error (q->eof). */
static int qmp_fill(struct qmp *q, int timeout_ms)
{
	struct pollfd p = { .fd = q->fd, .events = POLLIN };
	ssize_t n;

	if (q->eof)
		return -1;
	if (q->len == sizeof(q->buf)) {
		q->eof = true;	/* a line longer than we accept: treat as broken */
		return -1;
	}
	if (poll(&p, 1, timeout_ms) <= 0)
		return 0;
	n = recv(q->fd, q->buf + q->len, sizeof(q->buf) - q->len, MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		q->eof = true;
		return -1;
	}
	if (n > 0)
		q->len += (size_t)n;
	return 0;
}

/* The next complete line as JSON (caller puts it), or NULL. */
static json_object *qmp_take_line(struct qmp *q)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		json_object *o;
		size_t used;

		if (!nl)
			return NULL;
		*nl = '\0';
		o = json_tokener_parse(q->buf);
		used = (size_t)(nl - q->buf) + 1;
		memmove(q->buf, nl + 1, q->len - used);
		q->len -= used;
		if (o && json_object_is_type(o, json_type_object))
			return o;
		json_object_put(o);	/* not an object (or blank): skip */
	}
}

/* Drain events and stray lines without blocking; -1 if the peer is gone. */
static int qmp_drain(struct qmp *q)
{
	json_object *o;
	int rc = qmp_fill(q, 0);

	while ((o = qmp_take_line(q)))
		json_object_put(o);
	return rc;
}

/* Run cmd with args (consumed; may be NULL).  0 and *ret (a reference the
 * caller puts; ret may be NULL) or -1 with why. */
static int qmp_exec(struct qmp *q, const char *cmd, json_object *args, json_object **ret,
		    char *why, size_t why_len)
{
	json_object *req = json_object_new_object(), *o, *v;
	const char *text;
	unsigned id = ++q->next_id;
	uint64_t deadline = now_ms() + QMP_TIMEOUT_MS;
	size_t off = 0, len;

	if (ret)
		*ret = NULL;
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_int64(id));
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	len = strlen(text);
	while (!q->eof && off <= len) {
		/* the request, then its newline */
		ssize_t n = off < len ? send(q->fd, text + off, len - off, MSG_NOSIGNAL)
				      : send(q->fd, "\n", 1, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			q->eof = true;
		else
			off += (size_t)n;
	}
	json_object_put(req);
	for (;;) {
		uint64_t t = now_ms();

		while ((o = qmp_take_line(q))) {
			if (json_object_object_get_ex(o, "id", &v) &&
			    (unsigned)json_object_get_int64(v) == id)
				goto answer;
			json_object_put(o);	/* an event, or a late answer */
		}
		if (q->eof) {
			snprintf(why, why_len, "%s QEMU closed its QMP connection (%s)", q->what,
				 cmd);
			return -1;
		}
		if (t >= deadline) {
			snprintf(why, why_len, "%s QEMU did not answer %s within %d s", q->what, cmd,
				 QMP_TIMEOUT_MS / 1000);
			return -1;
		}
		qmp_fill(q, (int)(deadline - t));
	}
answer:
	if (json_object_object_get_ex(o, "error", &v)) {
		json_object *d;

		snprintf(why, why_len, "%s QEMU refused %s: %s", q->what, cmd,
			 json_object_object_get_ex(v, "desc", &d) ? json_object_get_string(d)
								  : json_object_to_json_string(v));
		json_object_put(o);
		return -1;
	}
	if (ret && json_object_object_get_ex(o, "return", &v))
		*ret = json_object_get(v);
	json_object_put(o);
	return 0;
}

/* Connect, read the greeting, leave capabilities negotiation mode. */
static int qmp_open(struct qmp *q, char *why, size_t why_len)
{
	uint64_t deadline = now_ms() + QMP_TIMEOUT_MS;
	json_object *g = NULL;

	if (qmp_connect(q, why, why_len))
		return -1;
	while (!(g = qmp_take_line(q))) {
		uint64_t t = now_ms();

		if (q->eof || t >= deadline) {
			snprintf(why, why_len, "no QMP greeting from the %s QEMU at %s (%s)", q->what,
				 q->addr, q->eof ? "connection closed: is another client connected?"
						 : "timeout");
			return -1;
		}
		qmp_fill(q, (int)(deadline - t));
	}
	if (!json_object_object_get_ex(g, "QMP", NULL)) {
		json_object_put(g);
		snprintf(why, why_len, "%s at %s does not speak QMP", q->what, q->addr);
		return -1;
	}
	json_object_put(g);
	return qmp_exec(q, "qmp_capabilities", NULL, NULL, why, why_len);
}

static void qmp_close(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
}

static const char *jstr(json_object *o, const char *key, const char *dflt)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : dflt;
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

/* query-status's "status" into st; -1 with why. */
static int run_state(struct qmp *q, char *st, size_t st_len, char *why, size_t why_len)
{
	json_object *r;

	if (qmp_exec(q, "query-status", NULL, &r, why, why_len))
		return -1;
	snprintf(st, st_len, "%s", jstr(r, "status", "?"));
	json_object_put(r);
	return 0;
}

/* ------------------------------------------------------------- options */

struct opts {
	const char *vm, *ls, *from_host;
	bool ls_given;		/* --lockspace: resources of LS (else every lockspace) */
	const char *src_qmp, *dst_qmp, *uri, *incoming;
	int timeout_ms;		/* start -> pre-switchover */
	int progress_ms;	/* 0: no progress lines */
	int64_t downtime_ms;	/* -1: QEMU's default */
	int64_t bandwidth;	/* bytes/s, -1: QEMU's default */
	bool announce, json;
	bool no_return;		/* --no-return: arm no return claims (arm_returns) */
};

static void usage_qemu(FILE *f)
{
	fprintf(f,
		"usage: vmfs-migrate qemu [--vm] NAME --source-qmp ADDR --dest-qmp ADDR --uri URI\n"
		"           [--incoming URI] [--lockspace LS] [--from-host HOST] [--timeout SEC]\n"
		"           [--downtime-ms MS] [--max-bandwidth BYTES[K|M|G]] [--progress SEC]\n"
		"           [--announce] [--no-return] [--json]\n"
		"Live-migrate a QEMU guest (QMP ADDR: unix:PATH, tcp:HOST:PORT or PATH) and move\n"
		"its disk locks, prepared on the destination with 'vmfs-migrate prepare' (lock\n"
		"names, or files on vmfs mounts), at QEMU's pre-switchover pause.  Without\n"
		"--lockspace every lockspace is searched.  Images on vmfs need\n"
		"auto-read-only=off.  See vmfs-migrate(8).\n");
}

static int parse_num(const char *s, double scale, double max, int64_t *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || !(v >= 0))
		return -1;
	switch (*end) {
	case 'k': case 'K': v *= 1024; end++; break;
	case 'm': case 'M': v *= 1024 * 1024; end++; break;
	case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
	default: break;
	}
	if (*end)
		return -1;
	v *= scale;
	if (v > max)
		return -1;
	*out = (int64_t)(v + 0.5);
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "lockspace", required_argument, NULL, 'l' },
		{ "from-host", required_argument, NULL, 'f' },
		{ "source-qmp", required_argument, NULL, 's' },
		{ "src-qmp", required_argument, NULL, 's' },
		{ "dest-qmp", required_argument, NULL, 'd' },
		{ "dst-qmp", required_argument, NULL, 'd' },
		{ "uri", required_argument, NULL, 'u' },
		{ "incoming", required_argument, NULL, 'i' },
		{ "timeout", required_argument, NULL, 'w' },
		{ "progress", required_argument, NULL, 'p' },
		{ "downtime-ms", required_argument, NULL, 'D' },
		{ "max-bandwidth", required_argument, NULL, 'B' },
		{ "announce", no_argument, NULL, 'a' },
		{ "no-return", no_argument, NULL, 'R' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	int64_t v;

	memset(o, 0, sizeof(*o));
	o->ls = VMFS_HANDOFF_DEFAULT_LS;
	o->timeout_ms = 600 * 1000;
	o->progress_ms = 1000;
	o->downtime_ms = -1;
	o->bandwidth = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "v:l:f:s:d:u:i:w:p:D:B:ajh", lo, NULL)) != -1) {
		switch (c) {
		case 'v': o->vm = optarg; break;
		case 'l': o->ls = optarg; o->ls_given = true; break;
		case 'f': o->from_host = optarg; break;
		case 's': o->src_qmp = optarg; break;
		case 'd': o->dst_qmp = optarg; break;
		case 'u': o->uri = optarg; break;
		case 'i': o->incoming = optarg; break;
		case 'a': o->announce = true; break;
		case 'R': o->no_return = true; break;
		case 'j': o->json = true; break;
		case 'w':
		case 'p':
			/* seconds (no K/M/G), at most a day */
			if (strpbrk(optarg, "kKmMgG") || parse_num(optarg, 1000, 86400000, &v) ||
			    (c == 'w' && v == 0)) {
				fprintf(stderr, "vmfs-migrate qemu: --%s wants seconds%s, not '%s'\n",
					c == 'w' ? "timeout" : "progress", c == 'w' ? " (> 0)" : "",
					optarg);
				return EXIT_USAGE;
			}
			*(c == 'w' ? &o->timeout_ms : &o->progress_ms) = (int)v;
			break;
		case 'D':
			if (strpbrk(optarg, "kKmMgG") || parse_num(optarg, 1, 2000000, &o->downtime_ms)) {
				fprintf(stderr, "vmfs-migrate qemu: --downtime-ms wants milliseconds "
					"(at most 2000000), not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'B':
			if (parse_num(optarg, 1, (double)INT64_MAX / 2, &o->bandwidth) || o->bandwidth == 0) {
				fprintf(stderr, "vmfs-migrate qemu: --max-bandwidth wants bytes per "
					"second (K, M, G: binary multiples), not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage_qemu(stdout);
			exit(EXIT_OK);
		default:
			usage_qemu(stderr);
			return EXIT_USAGE;
		}
	}
	if (!o->vm && optind == argc - 1)
		o->vm = argv[optind++];
	if (optind != argc) {
		usage_qemu(stderr);
		return EXIT_USAGE;
	}
	if (!o->vm || !*o->vm || strlen(o->vm) > VMFS_DLM_TAG_MAX) {
		fprintf(stderr, "vmfs-migrate qemu: the VM name (--vm NAME) is required, 1 to %d bytes\n",
			VMFS_DLM_TAG_MAX);
		return EXIT_USAGE;
	}
	if (!*o->ls || strlen(o->ls) > VMFS_DLM_NAME_MAX) {
		fprintf(stderr, "vmfs-migrate qemu: --lockspace must be 1 to %d bytes\n",
			VMFS_DLM_NAME_MAX);
		return EXIT_USAGE;
	}
	if (!o->src_qmp || !o->dst_qmp || !o->uri || !*o->uri) {
		fprintf(stderr, "vmfs-migrate qemu: --source-qmp, --dest-qmp and --uri are required\n");
		return EXIT_USAGE;
	}
	return 0;
}

/* ---------------------------------------------------------------- a run */

struct run {
	struct opts o;
	struct qmp src, dst;
	vmfs_dlm_t *h;
	int sfd;
	FILE *out;		/* progress and messages: stdout, or stderr with --json */
	struct vmfs_handoff_ldisk disks[VMFS_HANDOFF_DISKS_MAX];
	size_t n_disks;
	bool by_tag;		/* the resource form: source locks tagged with the VM */
	bool started, handed_over, was_running;
	uint64_t t0, handoff_ms;
	json_object *last;	/* the source's last query-migrate answer */
	const char *result;	/* completed, cancelled, failed-after-handoff */
	char abort_note[256];	/* what became of the prepared requests */
	char error[1024];
	char *armed[VMFS_HANDOFF_DISKS_MAX];	/* return claims this run armed */
	size_t n_armed;
};

static void note(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(r->out, fmt, ap);
	va_end(ap);
	fputc('\n', r->out);
	fflush(r->out);
}

static void fmt_bytes(char *b, size_t len, double v)
{
	if (v >= 1024.0 * 1024 * 1024)
		snprintf(b, len, "%.2f GiB", v / (1024.0 * 1024 * 1024));
	else if (v >= 1024.0 * 1024)
		snprintf(b, len, "%.1f MiB", v / (1024.0 * 1024));
	else if (v >= 1024.0)
		snprintf(b, len, "%.1f KiB", v / 1024.0);
	else
		snprintf(b, len, "%.0f B", v);
}

static void progress(struct run *r, json_object *m)
{
	json_object *ram = NULL;
	char tx[32], rem[32], dirty[32];

	json_object_object_get_ex(m, "ram", &ram);
	fmt_bytes(tx, sizeof(tx), (double)jint(ram, "transferred"));
	fmt_bytes(rem, sizeof(rem), (double)jint(ram, "remaining"));
	fmt_bytes(dirty, sizeof(dirty),
		  (double)jint(ram, "dirty-pages-rate") * (double)(jint(ram, "page-size") ?: 4096));
	note(r, "%s: %-14s %6.1f s  transferred %s  remaining %s  dirty %s/s  %.1f Mbit/s",
	     r->o.vm, jstr(m, "status", "?"), (double)(now_ms() - r->t0) / 1000, tx, rem, dirty,
	     ram && json_object_object_get_ex(ram, "mbps", NULL) ?
		     json_object_get_double(json_object_object_get(ram, "mbps")) : 0.0);
}

/* The prepared requests: `vmfs-migrate abort` semantics, by running this
 * program's abort (one place for finding and ending the prepare process).
 * It succeeds only on the destination host; elsewhere it says where. */
static void abort_prepared(struct run *r)
{
	char self[PATH_MAX], me[VMFS_DLM_NAME_MAX + 1];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	uint32_t nodeid;
	pid_t pid;
	int st = 0;

	/* The claims on files are the destination mount's, recorded in that
	 * host's run directory: an abort here would find nothing and say so. */
	if (r->h && r->n_disks && vmfs_dlm_local_node(r->h, &nodeid, me) == 0 &&
	    strcmp(me, r->disks[0].d.to_host) != 0) {
		snprintf(r->abort_note, sizeof(r->abort_note),
			 "%s is prepared on %s, not on this host (%s): run 'vmfs-migrate abort %s' "
			 "there", r->o.vm, r->disks[0].d.to_host, me, r->o.vm);
		note(r, "%s", r->abort_note);
		return;
	}
	if (n <= 0) {
		snprintf(r->abort_note, sizeof(r->abort_note),
			 "cannot find this program to run its abort: run 'vmfs-migrate abort %s' "
			 "on the destination host", r->o.vm);
		note(r, "%s", r->abort_note);
		return;
	}
	self[n] = '\0';
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		sigset_t all;

		/* our signals are blocked for the signalfd; exec keeps the mask */
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		/* with --json, stdout carries only the summary */
		if (r->o.json)
			dup2(STDERR_FILENO, STDOUT_FILENO);
		if (r->o.ls_given)
			execl(self, "vmfs-migrate", "abort", "--vm", r->o.vm, "--lockspace",
			      r->o.ls, (char *)NULL);
		else
			execl(self, "vmfs-migrate", "abort", "--vm", r->o.vm, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		snprintf(r->abort_note, sizeof(r->abort_note),
			 "the prepared requests of %s were not cancelled from here: run "
			 "'vmfs-migrate abort %s' on the destination host", r->o.vm, r->o.vm);
	else
		snprintf(r->abort_note, sizeof(r->abort_note),
			 "nothing of %s stays prepared on this host", r->o.vm);
	note(r, "%s", r->abort_note);
}

/* Before the handoff: cancel the migration so that QEMU resumes the guest
 * on the source, and end the prepare.  Always returns EXIT_FAIL. */
static int fail_before_handoff(struct run *r)
{
	char why[512], st[32] = "?";
	uint64_t deadline = now_ms() + CANCEL_TIMEOUT_MS;

	r->result = "cancelled";
	fprintf(stderr, "vmfs-migrate qemu: %s\n", r->error);
	if (r->started && !r->src.eof) {
		if (qmp_exec(&r->src, "migrate_cancel", NULL, NULL, why, sizeof(why)))
			note(r, "%s", why);
		/* wait for the cancel to finish: status cancelled/failed */
		for (;;) {
			json_object *m = NULL;
			const char *s;

			if (qmp_exec(&r->src, "query-migrate", NULL, &m, why, sizeof(why))) {
				note(r, "%s", why);
				break;
			}
			s = jstr(m, "status", "");
			if (strcmp(s, "cancelled") == 0 || strcmp(s, "failed") == 0 ||
			    strcmp(s, "completed") == 0 || !*s) {
				if (strcmp(s, "completed") == 0) {
					/* cannot happen with the pause: the handoff did not
					 * run, so the guest must not run anywhere */
					json_object_put(m);
					r->result = "switched-without-handoff";
					snprintf(r->error + strlen(r->error),
						 sizeof(r->error) - strlen(r->error),
						 "; and QEMU completed the migration anyway");
					return EXIT_SPLIT;
				}
				json_object_put(m);
				break;
			}
			json_object_put(m);
			if (now_ms() >= deadline) {
				note(r, "the source QEMU did not finish the cancel within %d s",
				     CANCEL_TIMEOUT_MS / 1000);
				break;
			}
			usleep(100 * 1000);
		}
		/* QEMU restarts the guest itself if it ran before; make sure */
		if (run_state(&r->src, st, sizeof(st), why, sizeof(why)) == 0 && r->was_running &&
		    strcmp(st, "running") != 0 &&
		    qmp_exec(&r->src, "cont", NULL, NULL, why, sizeof(why)) == 0)
			(void)run_state(&r->src, st, sizeof(st), why, sizeof(why));
		note(r, "migration of %s cancelled: the source guest is %s", r->o.vm, st);
	}
	abort_prepared(r);
	return EXIT_FAIL;
}

/* After a failed switchover: the disks back to the source host's return
 * claims (qemu.c head comment).  0 when they are back, -1 (said why) when
 * they stay with the destination. */
static int give_back(struct run *r)
{
	struct vmfs_handoff_ldisk back[VMFS_HANDOFF_DISKS_MAX];
	const char *src = r->disks[0].d.from_host;
	char why[512];
	size_t n = 0;
	int rc;

	if (strlen(r->o.vm) > VMFS_HANDOFF_RETURN_VM_MAX) {
		note(r, "no give-back: the VM name is over %d bytes, too long for a return claim",
		     VMFS_HANDOFF_RETURN_VM_MAX);
		return -1;
	}
	rc = vmfs_handoff_giveback(r->h, r->o.vm, src, r->disks, r->n_disks, back,
				   VMFS_HANDOFF_DISKS_MAX, &n, why, sizeof(why));
	if (rc == VMFS_HANDOFF_ENOPREPARE) {
		note(r, "no give-back: %s armed no return claim for %s (run 'vmfs-migrate return "
		     "arm --vm %s PATH...' there before migrating)", src, r->o.vm, r->o.vm);
		return -1;
	}
	if (rc < 0) {
		note(r, "cannot give the disks of %s back to %s: %s", r->o.vm, src, why);
		return -1;
	}
	for (size_t i = 0; i < n && i < VMFS_HANDOFF_DISKS_MAX; i++)
		note(r, "given back %s/%s: %s -> %s", back[i].ls, back[i].d.res,
		     back[i].d.from_host, back[i].d.to_host);
	/* before drop_returns drops the claims: vmfs/handoff.h */
	for (size_t i = 0; i < r->n_armed; i++) {
		char st[128] = "";

		/* on a timeout the lock is back all the same: the guest
		 * resumes, its writes fail until the mount catches up */
		if (vmfs_handoff_return_wait(r->armed[i], 5000, st, sizeof(st)))
			note(r, "%s: the mount did not re-arm the image within 5 s (return "
			     "claim: %s)", r->armed[i], st[0] ? st : "none");
	}
	note(r, "the disks of %s are back on %s (%s)", r->o.vm, src, why);
	return 0;
}

/* Whether the source QEMU may have handed the guest over: its migration
 * completed (the destination got everything and may have run the guest and
 * written to its disks: the source's copy is then stale and must not run,
 * give-back or not), or its state cannot be read.  A migration still
 * waiting at the pause is cancelled first; one that is ending is waited for. */
static bool source_may_have_switched(struct run *r)
{
	char why[512];
	uint64_t deadline = now_ms() + CANCEL_TIMEOUT_MS;

	while (!r->src.eof && now_ms() < deadline) {
		json_object *m = NULL;
		const char *s;
		bool done;

		if (qmp_exec(&r->src, "query-migrate", NULL, &m, why, sizeof(why)))
			break;
		s = jstr(m, "status", "");
		if (strcmp(s, "completed") == 0) {
			json_object_put(m);
			return true;
		}
		done = strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
		if (strcmp(s, "pre-switchover") == 0 &&
		    qmp_exec(&r->src, "migrate_cancel", NULL, NULL, why, sizeof(why)))
			note(r, "%s", why);
		json_object_put(m);
		if (done)
			return false;
		usleep(100 * 1000);
	}
	return true;
}

/* The source guest after the give-back: running again.  QEMU restarts it
 * when a migration fails; a write in the moment between that and the
 * give-back failed with EIO, which stops a guest whose drives have
 * werror=stop ("io-error"): `cont` retries it, now on re-armed handles. */
static void resume_source(struct run *r, char *st, size_t st_len)
{
	char why[512];
	uint64_t deadline = now_ms() + CANCEL_TIMEOUT_MS;

	while (!r->src.eof && run_state(&r->src, st, st_len, why, sizeof(why)) == 0 &&
	       strcmp(st, "running") != 0 && r->was_running && now_ms() < deadline) {
		/* still migrating: QEMU has not ended the failed migration yet */
		if (strcmp(st, "finish-migrate") != 0 &&
		    qmp_exec(&r->src, "cont", NULL, NULL, why, sizeof(why)))
			note(r, "cont on the source: %s", why);
		usleep(100 * 1000);
	}
}

/* After the handoff: give the disks back and let the source run on, or,
 * without return claims, stop it (stale epochs). */
static int fail_after_handoff(struct run *r)
{
	char why[512], st[32] = "?";

	r->result = "failed-after-handoff";
	fprintf(stderr, "vmfs-migrate qemu: %s\n", r->error);
	if (!r->handed_over) {
		/* QEMU switched over without pausing: the guest runs on the
		 * destination while the source host still owns the disks */
		r->result = "switched-without-handoff";
		fprintf(stderr, "vmfs-migrate qemu: %s now runs on the destination but its disk "
			"locks are still with %s: stop it there, or move the locks with "
			"'vmfs-migrate handoff %s'\n", r->o.vm,
			r->n_disks ? r->disks[0].d.from_host : "the source", r->o.vm);
		return EXIT_SPLIT;
	}
	if (!r->src.eof && !source_may_have_switched(r) && give_back(r) == 0) {
		r->result = "given-back";
		resume_source(r, st, sizeof(st));
		note(r, "migration of %s failed after the handoff; the disks were given back and "
		     "the source guest is %s", r->o.vm, st);
		return EXIT_FAIL;
	}
	if (!r->src.eof && run_state(&r->src, st, sizeof(st), why, sizeof(why)) == 0 &&
	    strcmp(st, "running") == 0 && qmp_exec(&r->src, "stop", NULL, NULL, why, sizeof(why)) == 0)
		snprintf(st, sizeof(st), "stopped again");
	fprintf(stderr,
		"vmfs-migrate qemu: the disk locks of %s are with %s since the handoff but the "
		"guest did not start there; the source guest is %s and must not run (its "
		"epochs are stale): recover by hand, see vmfs-migrate(8) BUGS\n",
		r->o.vm, r->n_disks ? r->disks[0].d.to_host : "the destination", st);
	return EXIT_SPLIT;
}

static void add_cap(json_object *caps, const char *name)
{
	json_object *c = json_object_new_object();

	json_object_object_add(c, "capability", json_object_new_string(name));
	json_object_object_add(c, "state", json_object_new_boolean(1));
	json_object_array_add(caps, c);
}

/* migrate-set-capabilities' arguments: events, and on the source the pause */
static json_object *caps_args(bool source)
{
	json_object *a = json_object_new_object(), *caps = json_object_new_array();

	add_cap(caps, "events");
	if (source)
		add_cap(caps, "pause-before-switchover");
	json_object_object_add(a, "capabilities", caps);
	return a;
}

/* The VM's disks as the lock table has them now (qemu.c head comment: the
 * resource form, then the file form).  Sets r->by_tag.  0 or an error with
 * why. */
static int lookup(struct run *r, struct vmfs_handoff_ldisk *d, size_t *n, char *why,
		  size_t why_len)
{
	struct vmfs_handoff_disk res[VMFS_HANDOFF_DISKS_MAX];
	int rc;

	*n = 0;
	if (r->o.ls_given) {
		rc = vmfs_handoff_lookup(r->h, r->o.vm, r->o.ls, r->o.from_host, res,
					 VMFS_HANDOFF_DISKS_MAX, n, why, why_len);
		if (rc == 0) {
			r->by_tag = true;
			for (size_t i = 0; i < *n; i++) {
				snprintf(d[i].ls, sizeof(d[i].ls), "%s", r->o.ls);
				d[i].d = res[i];
			}
			return 0;
		}
		/* no lock tagged with the VM: files (held by their opener) */
		if (rc != VMFS_HANDOFF_ENOSOURCE)
			return rc;
	}
	r->by_tag = false;
	return vmfs_handoff_lookup_any(r->h, r->o.vm, r->o.ls_given ? r->o.ls : NULL,
				       r->o.from_host, d, VMFS_HANDOFF_DISKS_MAX, n, why, why_len);
}

/* The handoff at the pause: look up again (fresh epochs; an abort since the
 * start shows here), refuse if the disks are not those of the pre-flight,
 * and move them all in one transfer.  0 or an error with why. */
static int commit(struct run *r, char *why, size_t why_len)
{
	struct vmfs_handoff_ldisk d[VMFS_HANDOFF_DISKS_MAX];
	bool by_tag = r->by_tag;
	size_t n;
	int rc;

	rc = lookup(r, d, &n, why, why_len);
	if (rc < 0)
		return rc;
	if (r->by_tag != by_tag || n != r->n_disks) {
		snprintf(why, why_len, "the disks of %s changed during the migration (%zu at the "
			 "start, %zu now)", r->o.vm, r->n_disks, n);
		return VMFS_HANDOFF_EAMBIGUOUS;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(d[i].ls, r->disks[i].ls) != 0 ||
		    strcmp(d[i].d.res, r->disks[i].d.res) != 0 ||
		    strcmp(d[i].d.to_host, r->disks[i].d.to_host) != 0) {
			/* bounded: lockspaces are UUIDs, resources "i<ino>" */
			snprintf(why, why_len, "the disks of %.64s changed during the migration: "
				 "%.40s/%.24s prepared on %.64s at the start, now %.40s/%.24s on "
				 "%.64s", r->o.vm,
				 r->disks[i].ls, r->disks[i].d.res, r->disks[i].d.to_host,
				 d[i].ls, d[i].d.res, d[i].d.to_host);
			return VMFS_HANDOFF_EAMBIGUOUS;
		}
	rc = vmfs_handoff_commit_ldisks(r->h, d, n, why, why_len);
	if (rc < 0)
		return rc;
	memcpy(r->disks, d, n * sizeof(d[0]));
	return 0;
}

/* Run on the source host, arm the return claims the give-back needs
 * (qemu.c head comment) on the source QEMU's writable images that are
 * files on this host's vmfs mounts, unless --no-return.  Elsewhere those
 * paths are not this host's files and nothing is armed: then only claims
 * armed beforehand (`vmfs-migrate return arm` on the source) count. */
static void arm_returns(struct run *r)
{
	json_object *blk = NULL;
	char why[512];
	size_t n = 0;

	if (r->o.no_return)
		return;
	if (qmp_exec(&r->src, "query-block", NULL, &blk, why, sizeof(why))) {
		note(r, "no return claims armed: query-block: %s", why);
		return;
	}
	for (size_t i = 0; json_object_is_type(blk, json_type_array) &&
			   i < json_object_array_length(blk) && n < VMFS_HANDOFF_DISKS_MAX; i++) {
		json_object *ins, *ro;
		const char *file;
		struct stat sb;

		if (!json_object_object_get_ex(json_object_array_get_idx(blk, i), "inserted", &ins))
			continue;
		file = jstr(ins, "file", NULL);
		if (!file || (json_object_object_get_ex(ins, "ro", &ro) && json_object_get_boolean(ro)))
			continue;
		/* a file of this host's vmfs mounts */
		if (stat(file, &sb) || !S_ISREG(sb.st_mode) ||
		    vmfs_mountinfo_find(true, sb.st_dev, NULL, NULL, NULL) != 1)
			continue;
		r->armed[n] = strdup(file);
		if (r->armed[n])
			n++;
	}
	json_object_put(blk);
	if (!n) {
		note(r, "no return claims armed: the source QEMU's images are not files on this "
		     "host's vmfs mounts (run this on the source host, or 'vmfs-migrate return arm' "
		     "there, for a give-back after a failed switchover)");
		return;
	}
	if (vmfs_handoff_return_arm(r->o.vm, (const char *const *)r->armed, n, why, sizeof(why))) {
		note(r, "no return claims armed: %s", why);
		for (size_t i = 0; i < n; i++)
			free(r->armed[i]);
		return;
	}
	r->n_armed = n;
	note(r, "return claims of %s armed on %zu image(s) here", r->o.vm, n);
}

/* The claims arm_returns() armed go at the end of every run: after a
 * completed migration one left waiting behind the destination's lock would
 * later be granted to this host, whose QEMU is stale; after a give-back it
 * has become the source's lock and dropping the claim keeps the lock. */
static void drop_returns(struct run *r)
{
	if (r->n_armed && vmfs_handoff_return_drop((const char *const *)r->armed, r->n_armed))
		note(r, "dropping the return claims of %s failed: 'vmfs-migrate return drop' them",
		     r->o.vm);
	for (size_t i = 0; i < r->n_armed; i++)
		free(r->armed[i]);
	r->n_armed = 0;
}

/* Pre-flight and start.  0, or -1 with r->error. */
static int start(struct run *r)
{
	char why[512], st[32];
	json_object *a, *m = NULL;
	int rc;

	rc = lookup(r, r->disks, &r->n_disks, why, sizeof(why));
	if (rc < 0) {
		snprintf(r->error, sizeof(r->error), "disk locks of %s not ready for a handoff: %s",
			 r->o.vm, why);
		return -1;
	}
	for (size_t i = 0; i < r->n_disks; i++)
		note(r, "%s/%s: held by %s (epoch %" PRIu64 "), prepared on %s", r->disks[i].ls,
		     r->disks[i].d.res, r->disks[i].d.from_host, r->disks[i].d.from_epoch,
		     r->disks[i].d.to_host);
	if (qmp_open(&r->src, why, sizeof(why)) || qmp_open(&r->dst, why, sizeof(why)) ||
	    run_state(&r->src, st, sizeof(st), why, sizeof(why)))
		goto qmp_err;
	if (strcmp(st, "running") != 0 && strcmp(st, "paused") != 0) {
		snprintf(r->error, sizeof(r->error),
			 "the source QEMU is in state '%s', not running or paused", st);
		return -1;
	}
	r->was_running = strcmp(st, "running") == 0;
	arm_returns(r);
	if (run_state(&r->dst, st, sizeof(st), why, sizeof(why)))
		goto qmp_err;
	if (strcmp(st, "inmigrate") != 0) {
		snprintf(r->error, sizeof(r->error),
			 "the destination QEMU is in state '%s': start it with -incoming", st);
		return -1;
	}
	/* the source pauses before the switchover; events on both sides */
	if (qmp_exec(&r->src, "migrate-set-capabilities", caps_args(true), NULL, why, sizeof(why)) ||
	    qmp_exec(&r->dst, "migrate-set-capabilities", caps_args(false), NULL, why, sizeof(why)))
		goto qmp_err;
	if (r->o.downtime_ms >= 0 || r->o.bandwidth > 0) {
		a = json_object_new_object();
		if (r->o.downtime_ms >= 0)
			json_object_object_add(a, "downtime-limit", json_object_new_int64(r->o.downtime_ms));
		if (r->o.bandwidth > 0)
			json_object_object_add(a, "max-bandwidth", json_object_new_int64(r->o.bandwidth));
		if (qmp_exec(&r->src, "migrate-set-parameters", a, NULL, why, sizeof(why)))
			goto qmp_err;
	}
	/* -incoming defer: no listening address yet */
	if (qmp_exec(&r->dst, "query-migrate", NULL, &m, why, sizeof(why)))
		goto qmp_err;
	if (!json_object_object_get_ex(m, "socket-address", NULL) &&
	    !json_object_object_get_ex(m, "status", NULL)) {
		const char *in = r->o.incoming ? r->o.incoming : r->o.uri;

		a = json_object_new_object();
		json_object_object_add(a, "uri", json_object_new_string(in));
		if (qmp_exec(&r->dst, "migrate-incoming", a, NULL, why, sizeof(why))) {
			json_object_put(m);
			goto qmp_err;
		}
		note(r, "destination listening on %s", in);
	} else if (r->o.incoming) {
		note(r, "destination already listening (-incoming): --incoming %s not used",
		     r->o.incoming);
	}
	json_object_put(m);
	a = json_object_new_object();
	json_object_object_add(a, "uri", json_object_new_string(r->o.uri));
	r->t0 = now_ms();
	r->started = true;	/* from here a failure cancels */
	if (qmp_exec(&r->src, "migrate", a, NULL, why, sizeof(why)))
		goto qmp_err;
	note(r, "migrating %s to %s", r->o.vm, r->o.uri);
	return 0;
qmp_err:
	snprintf(r->error, sizeof(r->error), "%s", why);
	return -1;
}

/* Follow the migration until the pause.  1: paused in pre-switchover,
 * 0: it completed without the pause (error set), -1: failed (error set). */
static int follow(struct run *r)
{
	uint64_t deadline = r->t0 + (uint64_t)r->o.timeout_ms, next_print = 0;
	char why[512], last_status[32] = "";

	for (;;) {
		struct pollfd p[3] = {
			{ .fd = r->src.fd, .events = POLLIN },
			{ .fd = r->dst.fd, .events = POLLIN },
			{ .fd = r->sfd, .events = POLLIN },
		};
		json_object *m = NULL;
		const char *s;
		uint64_t t;

		if (poll(p, 3, POLL_MS) > 0 && (p[2].revents & POLLIN)) {
			struct signalfd_siginfo si;

			if (read(r->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				snprintf(r->error, sizeof(r->error), "interrupted by signal %u",
					 si.ssi_signo);
				return -1;
			}
		}
		if (qmp_drain(&r->dst) < 0) {
			snprintf(r->error, sizeof(r->error),
				 "the destination QEMU went away during the migration");
			return -1;
		}
		if (qmp_drain(&r->src) < 0 ||
		    qmp_exec(&r->src, "query-migrate", NULL, &m, why, sizeof(why))) {
			snprintf(r->error, sizeof(r->error), "%s",
				 r->src.eof ? "the source QEMU went away during the migration" : why);
			return -1;
		}
		json_object_put(r->last);
		r->last = m;
		s = jstr(m, "status", "?");
		t = now_ms();
		if (r->o.progress_ms && (strcmp(s, last_status) != 0 || t >= next_print)) {
			progress(r, m);
			next_print = t + (uint64_t)r->o.progress_ms;
		}
		snprintf(last_status, sizeof(last_status), "%s", s);
		if (strcmp(s, "pre-switchover") == 0)
			return 1;
		if (strcmp(s, "completed") == 0) {
			snprintf(r->error, sizeof(r->error),
				 "QEMU switched over without the pre-switchover pause: the disk locks "
				 "of %s did not move", r->o.vm);
			return 0;
		}
		if (strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0 ||
		    strcmp(s, "cancelling") == 0) {
			snprintf(r->error, sizeof(r->error), "the migration %s%s%s", s,
				 json_object_object_get_ex(m, "error-desc", NULL) ? ": " : "",
				 jstr(m, "error-desc", ""));
			return -1;
		}
		if (t >= deadline) {
			snprintf(r->error, sizeof(r->error),
				 "no switchover within %d s (status %s): see --timeout, "
				 "--max-bandwidth, --downtime-ms", r->o.timeout_ms / 1000, s);
			return -1;
		}
	}
}

/* Test-only fault (VMFS_MIGRATE_TEST_FAULT, vmfs-migrate(8)):
 * "dest-quit-after-handoff" makes the destination QEMU quit right after the
 * handoff, before migrate-continue: a destination lost in the window that
 * only the give-back closes. */
static void test_fault(struct run *r)
{
	const char *f = getenv("VMFS_MIGRATE_TEST_FAULT");
	char why[512];
	uint64_t deadline = now_ms() + QMP_TIMEOUT_MS;

	if (!f || strcmp(f, "dest-quit-after-handoff") != 0)
		return;
	note(r, "VMFS_MIGRATE_TEST_FAULT=%s: the destination QEMU quits", f);
	if (qmp_exec(&r->dst, "quit", NULL, NULL, why, sizeof(why)) && !r->dst.eof)
		note(r, "quit: %s", why);
	while (!r->dst.eof && now_ms() < deadline) {
		json_object *o;

		if (qmp_fill(&r->dst, 100) < 0)
			break;
		while ((o = qmp_take_line(&r->dst)))
			json_object_put(o);	/* the SHUTDOWN event */
	}
}

/* The pause: the guest is stopped on the source.  Move the locks, then let
 * QEMU switch over.  Returns the exit status. */
static int switchover(struct run *r)
{
	char why[512], st[32];
	uint64_t t, deadline, stats_deadline;
	int rc;

	/* the destination must still be there to take the guest */
	if (qmp_drain(&r->dst) < 0 || run_state(&r->dst, st, sizeof(st), why, sizeof(why))) {
		snprintf(r->error, sizeof(r->error), "the destination QEMU is gone at the switchover%s%s",
			 r->dst.eof ? "" : ": ", r->dst.eof ? "" : why);
		return fail_before_handoff(r);
	}
	t = now_ms();
	rc = commit(r, why, sizeof(why));
	r->handoff_ms = now_ms() - t;
	if (rc < 0) {
		snprintf(r->error, sizeof(r->error), "handoff of %s refused: %s", r->o.vm, why);
		return fail_before_handoff(r);
	}
	r->handed_over = true;
	for (size_t i = 0; i < r->n_disks; i++)
		note(r, "%s/%s: %s -> %s, epoch %" PRIu64 " -> %" PRIu64, r->disks[i].ls, r->disks[i].d.res,
		     r->disks[i].d.from_host, r->disks[i].d.to_host, r->disks[i].d.from_epoch,
		     r->disks[i].d.epoch);
	note(r, "handed over %s: %zu disk lock%s in %" PRIu64 " ms", r->o.vm, r->n_disks,
	     r->n_disks == 1 ? "" : "s", r->handoff_ms);
	test_fault(r);
	/* a destination that died while the locks moved: give them back
	 * while the source still waits at the pause, images active */
	if (qmp_drain(&r->dst) < 0) {
		snprintf(r->error, sizeof(r->error), "the destination QEMU went away at the handoff");
		return fail_after_handoff(r);
	}
	json_object *a = json_object_new_object();

	json_object_object_add(a, "state", json_object_new_string("pre-switchover"));
	if (qmp_exec(&r->src, "migrate-continue", a, NULL, why, sizeof(why))) {
		snprintf(r->error, sizeof(r->error), "%s", why);
		return fail_after_handoff(r);
	}
	deadline = now_ms() + FINISH_TIMEOUT_MS;
	stats_deadline = 0;
	for (;;) {
		json_object *m = NULL;
		const char *s;

		if (qmp_exec(&r->src, "query-migrate", NULL, &m, why, sizeof(why))) {
			snprintf(r->error, sizeof(r->error), "after the handoff: %s", why);
			return fail_after_handoff(r);
		}
		json_object_put(r->last);
		r->last = m;
		s = jstr(m, "status", "?");
		/* QEMU says "completed" a moment before it fills in its
		 * total-time and downtime: ask again for the summary */
		if (strcmp(s, "completed") == 0) {
			if (!stats_deadline)
				stats_deadline = now_ms() + 1000;
			if (jint(m, "total-time") || now_ms() >= stats_deadline)
				break;
		}
		if (strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0 || now_ms() >= deadline) {
			snprintf(r->error, sizeof(r->error), "after the handoff the migration %s%s%s%s",
				 now_ms() >= deadline ? "did not complete; status " : "", s,
				 json_object_object_get_ex(m, "error-desc", NULL) ? ": " : "",
				 jstr(m, "error-desc", ""));
			return fail_after_handoff(r);
		}
		usleep(20 * 1000);
	}
	/* the destination loads the device state and starts the guest */
	for (;;) {
		if (run_state(&r->dst, st, sizeof(st), why, sizeof(why))) {
			snprintf(r->error, sizeof(r->error), "after the handoff: %s", why);
			return fail_after_handoff(r);
		}
		if (strcmp(st, r->was_running ? "running" : "paused") == 0)
			break;
		if (strcmp(st, "inmigrate") != 0 && strcmp(st, "paused") != 0) {
			snprintf(r->error, sizeof(r->error),
				 "after the handoff the destination guest is in state '%s'", st);
			return fail_after_handoff(r);
		}
		if (now_ms() >= deadline) {
			snprintf(r->error, sizeof(r->error),
				 "the destination guest is still '%s' %d s after the switchover", st,
				 FINISH_TIMEOUT_MS / 1000);
			return fail_after_handoff(r);
		}
		usleep(20 * 1000);
	}
	if (r->o.announce) {
		/* QEMU announces on resume already; this repeats it (RARP, GARP) */
		a = json_object_new_object();
		json_object_object_add(a, "initial", json_object_new_int(50));
		json_object_object_add(a, "max", json_object_new_int(550));
		json_object_object_add(a, "rounds", json_object_new_int(5));
		json_object_object_add(a, "step", json_object_new_int(100));
		if (qmp_exec(&r->dst, "announce-self", a, NULL, why, sizeof(why)))
			note(r, "%s (the guest runs; only the extra announcement failed)", why);
	}
	r->result = "completed";
	return EXIT_OK;
}

static void summary(struct run *r, int status)
{
	json_object *ram = NULL;
	int64_t total = r->last ? jint(r->last, "total-time") : 0;
	int64_t down = r->last ? jint(r->last, "downtime") : 0;
	int64_t tx;
	uint64_t wall = r->t0 ? now_ms() - r->t0 : 0;
	const char *from = r->n_disks ? r->disks[0].d.from_host : "?";
	const char *to = r->n_disks ? r->disks[0].d.to_host : "?";

	if (r->last)
		json_object_object_get_ex(r->last, "ram", &ram);
	tx = jint(ram, "transferred");
	if (r->o.json) {
		json_object *o = json_object_new_object(), *ds = json_object_new_array();

		json_object_object_add(o, "vm", json_object_new_string(r->o.vm));
		json_object_object_add(o, "result", json_object_new_string(r->result));
		json_object_object_add(o, "exit", json_object_new_int(status));
		json_object_object_add(o, "source_host", json_object_new_string(from));
		json_object_object_add(o, "dest_host", json_object_new_string(to));
		json_object_object_add(o, "handed_over", json_object_new_boolean(r->handed_over));
		json_object_object_add(o, "wall_ms", json_object_new_int64((int64_t)wall));
		json_object_object_add(o, "total_ms", json_object_new_int64(total));
		json_object_object_add(o, "downtime_ms", json_object_new_int64(down));
		json_object_object_add(o, "handoff_ms", json_object_new_int64((int64_t)r->handoff_ms));
		json_object_object_add(o, "transferred", json_object_new_int64(tx));
		for (size_t i = 0; i < r->n_disks; i++) {
			json_object *d = json_object_new_object();

			json_object_object_add(d, "lockspace", json_object_new_string(r->disks[i].ls));
			json_object_object_add(d, "resource", json_object_new_string(r->disks[i].d.res));
			json_object_object_add(d, "from_host", json_object_new_string(r->disks[i].d.from_host));
			json_object_object_add(d, "to_host", json_object_new_string(r->disks[i].d.to_host));
			json_object_object_add(d, "from_epoch", json_object_new_int64((int64_t)r->disks[i].d.from_epoch));
			if (r->handed_over)
				json_object_object_add(d, "epoch", json_object_new_int64((int64_t)r->disks[i].d.epoch));
			json_object_array_add(ds, d);
		}
		json_object_object_add(o, "disks", ds);
		if (r->error[0])
			json_object_object_add(o, "error", json_object_new_string(r->error));
		if (r->abort_note[0])
			json_object_object_add(o, "prepared", json_object_new_string(r->abort_note));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
		return;
	}
	if (status == EXIT_OK) {
		char b[32];

		fmt_bytes(b, sizeof(b), (double)tx);
		printf("migrated %s: %s -> %s in %.2f s, downtime %" PRId64 " ms (handoff %" PRIu64
		       " ms), transferred %s\n", r->o.vm, from, to, (double)total / 1000, down,
		       r->handoff_ms, b);
	} else if (status == EXIT_FAIL) {
		printf("not migrated: %s stays on the source%s%s\n", r->o.vm,
		       r->n_disks ? " with its disk locks on " : "", r->n_disks ? from : "");
	}
}

int vmfs_migrate_qemu(int argc, char **argv)
{
	struct run r;
	sigset_t mask;
	int rc, status;

	memset(&r, 0, sizeof(r));
	r.src.fd = r.dst.fd = r.sfd = -1;
	r.src.what = "source";
	r.dst.what = "destination";
	rc = parse_opts(argc, argv, &r.o);
	if (rc)
		return rc;
	r.src.addr = r.o.src_qmp;
	r.dst.addr = r.o.dst_qmp;
	r.out = r.o.json ? stderr : stdout;
	r.result = "cancelled";
	/* a signal cancels the migration (read in the loop, not async) */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	r.sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (r.sfd < 0) {
		fprintf(stderr, "vmfs-migrate qemu: signalfd: %s\n", strerror(errno));
		return EXIT_FAIL;
	}
	rc = vmfs_dlm_open("vmfs-migrate", &r.h);
	if (rc < 0) {
		snprintf(r.error, sizeof(r.error),
			 "cannot connect to vmfs-dlmd: %s (is it running on this host?)",
			 vmfs_dlm_strerror(rc));
		status = fail_before_handoff(&r);
	} else if (start(&r)) {
		status = fail_before_handoff(&r);
	} else {
		rc = follow(&r);
		if (rc == 1)
			status = switchover(&r);
		else if (rc == 0)
			status = fail_after_handoff(&r);
		else
			status = fail_before_handoff(&r);
	}
	drop_returns(&r);
	summary(&r, status);
	json_object_put(r.last);
	qmp_close(&r.src);
	qmp_close(&r.dst);
	vmfs_dlm_close(r.h);
	close(r.sfd);
	return status;
}
