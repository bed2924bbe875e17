/* plock-probe — drives one POSIX-lock table (fs/plock.c) as a mount would,
 * for the cluster tests.
 *
 *   plock-probe LOCKSPACE INO 'CMD; CMD; ...'
 *
 * Commands (S, E: byte offsets, E may be "eof"; each prints one line
 * "[wall-ms] CMD -> RESULT" on stdout, flushed):
 *   r S E | w S E | u S E     F_SETLK read / write / unlock [S,E]
 *   R S E | W S E             F_SETLKW (waits)
 *   g r|w S E                 F_GETLK -> "unlck" or "rdlck|wrlck S E pid P"
 *   fs | fx | fS | fX | fu    flock LOCK_SH|NB, LOCK_EX|NB, LOCK_SH, LOCK_EX, LOCK_UN
 *   owner N                   following requests use lock owner N (default 1)
 *   intr SEC                  the next request is interrupted SEC seconds after
 *                             it starts (as FUSE INTERRUPT does on a signal)
 *   release | frelease        plock_release_owner / plock_release_flock
 *   sleep SEC                 (fractions allowed)
 *   touch PATH                create PATH (tells a test "done so far")
 *   waitfile PATH             wait until PATH exists
 *   pidfile PATH              write this process's pid to PATH
 *   hold                      sleep until killed (locks stay held)
 * A command may end with "=RESULT" (ok, EAGAIN, EIO, unlck, wrlck, rdlck,
 * or for getlk the whole "wrlck 100 100"...): on a mismatch the probe
 * prints "MISMATCH" and exits 1.  Exit 0 when every command ran.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "log.h"
#include "plock.h"

static const char *errname(int err)
{
	switch (err) {
	case 0: return "ok";
	case -EAGAIN: return "EAGAIN";
	case -EINTR: return "EINTR";
	case -EIO: return "EIO";
	case -EINVAL: return "EINVAL";
	case -ENOLCK: return "ENOLCK";
	case -EDEADLK: return "EDEADLK";
	case -ENOMEM: return "ENOMEM";
	default: return strerror(-err);
	}
}

static int parse_off(const char *s, uint64_t *v)
{
	char *end;

	if (!s)
		return -1;
	if (!strcmp(s, "eof")) {
		*v = PLOCK_EOF;
		return 0;
	}
	errno = 0;
	*v = strtoull(s, &end, 0);
	return (errno || *end || end == s) ? -1 : 0;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* "intr SEC": a thread interrupts the next request SEC seconds after it
 * starts (or does nothing if the request ended first). */
static double intr_after = -1;
static struct plock_intr intr;
static pthread_t intr_tid;
static bool intr_running;

static void *intr_main(void *arg)
{
	struct timespec ts = { .tv_sec = (time_t)intr_after,
			       .tv_nsec = (long)((intr_after - (time_t)intr_after) * 1e9) };

	(void)arg;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	plock_interrupt(&intr);
	return NULL;
}

static struct plock_intr *intr_arm(struct plock_tab *t)
{
	plock_intr_init(&intr, t);
	if (intr_after < 0)
		return &intr;
	if (pthread_create(&intr_tid, NULL, intr_main, NULL) == 0)
		intr_running = true;
	intr_after = -1;
	return &intr;
}

static void intr_disarm(void)
{
	if (intr_running)
		pthread_join(intr_tid, NULL);	/* plock_interrupt after the end: harmless */
	intr_running = false;
}

static void sleep_sec(double sec)
{
	struct timespec ts = { (time_t)sec, (long)((sec - (double)(time_t)sec) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Run one command; *result receives its outcome text.  -1: bad command. */
static int run(struct plock_tab *t, uint64_t ino, uint64_t *owner, char *cmd, char *result,
	       size_t rlen)
{
	char *argv[8];
	int argc = 0, ret;
	char *save = NULL;
	uint64_t s = 0, e = 0;

	for (char *tok = strtok_r(cmd, " \t", &save); tok && argc < 8;
	     tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	if (argc == 0)
		return -1;
	snprintf(result, rlen, "ok");
	if (strlen(argv[0]) == 1 && strchr("rwuRW", argv[0][0])) {
		char c = argv[0][0];
		short type = (c == 'r' || c == 'R') ? F_RDLCK : (c == 'u' ? F_UNLCK : F_WRLCK);

		if (argc != 3 || parse_off(argv[1], &s) || parse_off(argv[2], &e))
			return -1;
		ret = plock_setlk(t, ino, *owner, getpid(), type, s, e, c == 'R' || c == 'W',
				  intr_arm(t));
		intr_disarm();
		snprintf(result, rlen, "%s", errname(ret));
	} else if (!strcmp(argv[0], "g")) {
		short type;
		pid_t pid = -1;

		if (argc != 4 || parse_off(argv[2], &s) || parse_off(argv[3], &e))
			return -1;
		type = argv[1][0] == 'w' ? F_WRLCK : F_RDLCK;
		ret = plock_getlk(t, ino, *owner, &type, &s, &e, &pid);
		if (ret < 0)
			snprintf(result, rlen, "%s", errname(ret));
		else if (type == F_UNLCK)
			snprintf(result, rlen, "unlck");
		else if (e == PLOCK_EOF)
			snprintf(result, rlen, "%s %" PRIu64 " eof pid %d",
				 type == F_WRLCK ? "wrlck" : "rdlck", s, (int)pid);
		else
			snprintf(result, rlen, "%s %" PRIu64 " %" PRIu64 " pid %d",
				 type == F_WRLCK ? "wrlck" : "rdlck", s, e, (int)pid);
	} else if (argv[0][0] == 'f' && strlen(argv[0]) == 2) {
		int op;

		switch (argv[0][1]) {
		case 's': op = LOCK_SH | LOCK_NB; break;
		case 'x': op = LOCK_EX | LOCK_NB; break;
		case 'S': op = LOCK_SH; break;
		case 'X': op = LOCK_EX; break;
		case 'u': op = LOCK_UN; break;
		default: return -1;
		}
		ret = plock_flock(t, ino, *owner, op, intr_arm(t));
		intr_disarm();
		snprintf(result, rlen, "%s", errname(ret));
	} else if (!strcmp(argv[0], "intr") && argc == 2) {
		intr_after = atof(argv[1]);
	} else if (!strcmp(argv[0], "owner") && argc == 2) {
		*owner = strtoull(argv[1], NULL, 0);
	} else if (!strcmp(argv[0], "release")) {
		plock_release_owner(t, ino, *owner);
	} else if (!strcmp(argv[0], "frelease")) {
		plock_release_flock(t, ino, *owner);
	} else if (!strcmp(argv[0], "sleep") && argc == 2) {
		sleep_sec(atof(argv[1]));
	} else if (!strcmp(argv[0], "touch") && argc == 2) {
		int fd = open(argv[1], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

		if (fd < 0)
			snprintf(result, rlen, "%s", strerror(errno));
		else
			close(fd);
	} else if (!strcmp(argv[0], "pidfile") && argc == 2) {
		char buf[32];
		int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

		if (fd < 0 || (ret = write_full(fd, buf, (size_t)n)) < 0)
			snprintf(result, rlen, "%s", fd < 0 ? strerror(errno) : strerror(-ret));
		if (fd >= 0)
			close(fd);
	} else if (!strcmp(argv[0], "waitfile") && argc == 2) {
		while (access(argv[1], F_OK) < 0)
			sleep_sec(0.05);
	} else if (!strcmp(argv[0], "hold")) {
		for (;;)
			pause();
	} else {
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct vmfs_log_opts lo = { .ident = "plock-probe", .to_stderr = true,
				    .priority = LOG_INFO };
	struct plock_tab *t;
	uint64_t ino, owner = 1;
	char *script, *save = NULL;
	int ret, rc = 0;

	if (argc != 4 || parse_off(argv[2], &ino)) {
		fprintf(stderr, "usage: plock-probe LOCKSPACE INO 'CMD; CMD; ...'\n");
		return 2;
	}
	vmfs_log_init(&lo);
	ret = plock_tab_new(argv[1], &t);
	if (ret < 0) {
		fprintf(stderr, "plock-probe: plock_tab_new: %s\n", strerror(-ret));
		return 1;
	}
	script = strdup(argv[3]);
	for (char *c = strtok_r(script, ";", &save); c; c = strtok_r(NULL, ";", &save)) {
		char shown[256], result[128], *expect;

		c = trim(c);
		if (!*c)
			continue;
		expect = strchr(c, '=');
		if (expect) {
			*expect++ = '\0';
			expect = trim(expect);
			c = trim(c);
		}
		snprintf(shown, sizeof(shown), "%s", c);
		if (run(t, ino, &owner, c, result, sizeof(result)) < 0) {
			fprintf(stderr, "plock-probe: bad command: %s\n", shown);
			rc = 2;
			break;
		}
		printf("[%llu] %s -> %s\n", now_wall_ms(), shown, result);
		fflush(stdout);
		if (expect && strcmp(expect, result) != 0 &&
		    !(strncmp(result, expect, strlen(expect)) == 0 && result[strlen(expect)] == ' ')) {
			printf("MISMATCH: %s: expected %s, got %s\n", shown, expect, result);
			fflush(stdout);
			rc = 1;
			break;
		}
	}
	free(script);
	plock_tab_free(t);
	vmfs_log_fini();
	return rc;
}
