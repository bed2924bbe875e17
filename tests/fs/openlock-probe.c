/* openlock-probe — drives fs/openlock.c (the mount's per-file open locks)
 * from a shell test, without a mount: one table per probe process, as one
 * vmfs-mount has.  Driven like tests/dlm/dlm-probe through
 * tests/dlm/probe.sh: commands on stdin, one outcome per line on stdout.
 *
 *   openlock-probe NAME            lockspace from $OL_LS (default "ol-test")
 *   -> "ready pid=P"  or  "tab-failed err=TEXT" (exit 1)
 *
 *   open ID INO rw|ro [multi] [prog=NAME] [pid=N]
 *        -> "opened ID epoch=E"  |  "refused ID err=EBUSY why=TEXT"
 *   check ID          -> "check ID rc=OK|EIO|EAGAIN|..."
 *   waitcheck ID RC SEC   check every 50 ms until rc is RC or SEC pass;
 *                     -> "check ID rc=..." (the last value)
 *   epoch ID          -> "epoch ID E"
 *   close ID          -> "closed ID"
 *   prepare INO VM    -> "prepared INO" | "prepare-failed INO err=TEXT"
 *   unprepare INO     -> "unprepared INO" | "unprepare-failed INO err=TEXT"
 *   quit
 * The table logs (lost locks, lease) go to stderr.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "openlock.h"
#include "log.h"

#define MAX_REFS 64

struct probe_ref {
	char id[32];
	struct ol_ref *r;
};

static struct probe_ref refs[MAX_REFS];

static struct probe_ref *find(const char *id)
{
	for (int i = 0; i < MAX_REFS; i++)
		if (refs[i].r && strcmp(refs[i].id, id) == 0)
			return &refs[i];
	return NULL;
}

static const char *errname(int rc)
{
	switch (rc) {
	case 0: return "OK";
	case -EIO: return "EIO";
	case -EAGAIN: return "EAGAIN";
	case -EBUSY: return "EBUSY";
	case -ENOENT: return "ENOENT";
	case -EINVAL: return "EINVAL";
	case -ENOMEM: return "ENOMEM";
	case -ETIMEDOUT: return "ETIMEDOUT";
	default: return strerror(-rc);
	}
}

static void cmd_open(struct openlock_tab *t, char **arg, int n)
{
	const char *prog = "openlock-probe";
	pid_t pid = getpid();
	bool multi = false, write;
	struct probe_ref *p = NULL;
	char why[512];
	uint64_t ino;
	int rc;

	if (n < 3 || (strcmp(arg[2], "rw") && strcmp(arg[2], "ro"))) {
		printf("usage: open ID INO rw|ro [multi] [prog=NAME] [pid=N]\n");
		return;
	}
	ino = strtoull(arg[1], NULL, 0);
	write = strcmp(arg[2], "rw") == 0;
	for (int i = 3; i < n; i++) {
		if (strcmp(arg[i], "multi") == 0)
			multi = true;
		else if (strncmp(arg[i], "prog=", 5) == 0)
			prog = arg[i] + 5;
		else if (strncmp(arg[i], "pid=", 4) == 0)
			pid = (pid_t)atol(arg[i] + 4);
	}
	for (int i = 0; i < MAX_REFS && !p; i++)
		if (!refs[i].r)
			p = &refs[i];
	if (!p || find(arg[0])) {
		printf("refused %s err=probe why=too many refs or duplicate id\n", arg[0]);
		return;
	}
	rc = openlock_open(t, ino, write, multi, pid, prog, &p->r, why, sizeof(why));
	if (rc) {
		printf("refused %s err=%s why=%s\n", arg[0], errname(rc), why);
		return;
	}
	snprintf(p->id, sizeof(p->id), "%s", arg[0]);
	printf("opened %s epoch=%" PRIu64 "\n", arg[0], openlock_epoch(p->r));
}

static void cmd_waitcheck(const struct probe_ref *p, const char *want, double sec)
{
	int rc = openlock_check(p->r);

	for (int i = 0; i < sec * 20 && strcmp(errname(rc), want) != 0; i++) {
		usleep(50000);
		rc = openlock_check(p->r);
	}
	printf("check %s rc=%s\n", p->id, errname(rc));
}

int main(int argc, char **argv)
{
	struct vmfs_log_opts lo = {
		.ident = argc > 1 ? argv[1] : "openlock-probe",
		.to_stderr = true,
		.priority = LOG_INFO,
	};
	struct openlock_tab *t;
	const char *ls = getenv("OL_LS");
	char line[1024];
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	setvbuf(stderr, NULL, _IOLBF, 0);
	vmfs_log_init(&lo);
	rc = openlock_tab_new(ls && *ls ? ls : "ol-test", &t);
	if (rc) {
		printf("tab-failed err=%s\n", errname(rc));
		return 1;
	}
	printf("ready pid=%ld\n", (long)getpid());
	while (fgets(line, sizeof(line), stdin)) {
		char *arg[16], *save = NULL, *tok;
		int n = 0;
		struct probe_ref *p;

		for (tok = strtok_r(line, " \t\n", &save); tok && n < 16;
		     tok = strtok_r(NULL, " \t\n", &save))
			arg[n++] = tok;
		if (!n)
			continue;
		if (strcmp(arg[0], "quit") == 0)
			break;
		if (strcmp(arg[0], "open") == 0) {
			cmd_open(t, arg + 1, n - 1);
		} else if (strcmp(arg[0], "prepare") == 0 && n == 3) {
			rc = openlock_prepare(t, strtoull(arg[1], NULL, 0), arg[2]);
			if (rc)
				printf("prepare-failed %s err=%s\n", arg[1], errname(rc));
			else
				printf("prepared %s\n", arg[1]);
		} else if (strcmp(arg[0], "unprepare") == 0 && n == 2) {
			rc = openlock_unprepare(t, strtoull(arg[1], NULL, 0));
			if (rc)
				printf("unprepare-failed %s err=%s\n", arg[1], errname(rc));
			else
				printf("unprepared %s\n", arg[1]);
		} else if (n >= 2 && (p = find(arg[1])) != NULL) {
			if (strcmp(arg[0], "check") == 0) {
				printf("check %s rc=%s\n", p->id, errname(openlock_check(p->r)));
			} else if (strcmp(arg[0], "waitcheck") == 0 && n == 4) {
				cmd_waitcheck(p, arg[2], atof(arg[3]));
			} else if (strcmp(arg[0], "epoch") == 0) {
				printf("epoch %s %" PRIu64 "\n", p->id, openlock_epoch(p->r));
			} else if (strcmp(arg[0], "close") == 0) {
				openlock_close(p->r);
				p->r = NULL;
				printf("closed %s\n", arg[1]);
			} else {
				printf("unknown command %s\n", arg[0]);
			}
		} else {
			printf("unknown command or id: %s%s%s\n", arg[0], n > 1 ? " " : "",
			       n > 1 ? arg[1] : "");
		}
	}
	for (int i = 0; i < MAX_REFS; i++)
		openlock_close(refs[i].r);
	openlock_tab_free(t);
	vmfs_log_fini();
	return 0;
}
