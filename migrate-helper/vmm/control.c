/* control.c — the control socket: one command line in, one JSON line out.
 *
 *   status                       VM and migration state
 *   migrate HOST:PORT [k=v ...]  start a migration (downtime-ms, max-bandwidth,
 *                                max-rounds, max-time-ms, force=0|1,
 *                                auto-converge=0|1, connections=1..16)
 *   cancel                       cancel the running migration
 *   stop                         stop the VM and exit
 */
#include "config.h"
#include "vmm.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "io.h"
#include "log.h"

#define CMD_MAX 512

int control_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 8)) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

static json_object *status_json(struct vmm *v)
{
	json_object *o = json_object_new_object();
	char *mig = NULL;

	pthread_mutex_lock(&v->mig_lock);
	json_object_object_add(o, "name", json_object_new_string(v->cfg.name));
	json_object_object_add(o, "state", json_object_new_string(vm_state_name(v->state)));
	json_object_object_add(o, "accel", json_object_new_string(v->accel->name));
	json_object_object_add(o, "vcpus", json_object_new_int((int)v->ncpus));
	json_object_object_add(o, "ram_mib", json_object_new_int64((int64_t)(v->ram_size >> 20)));
	if (v->cfg.incoming)
		json_object_object_add(o, "incoming_port", json_object_new_int((int)v->incoming_port));
	if (v->ram_digest[0])
		json_object_object_add(o, "ram_sha256", json_object_new_string(v->ram_digest));
	pthread_mutex_unlock(&v->mig_lock);
	pthread_mutex_lock(&v->dev_lock);
	json_object_object_add(o, "serial_lines", json_object_new_int64((int64_t)v->serial_lines));
	json_object_object_add(o, "guest_status", json_object_new_int64(v->guest_status));
	pthread_mutex_unlock(&v->dev_lock);
	json_object_object_add(o, "guest_clock_ms", json_object_new_int64(guest_clock_ms(v)));
	if (v->tap_fd >= 0) {	/* fixed once running: no lock */
		json_object_object_add(o, "tap", json_object_new_string(v->tap_name));
		json_object_object_add(o, "bridge", v->cfg.bridge ?
				       json_object_new_string(v->cfg.bridge) : NULL);
	}
	handoff_json(v, o);
	if (migration_json(v, &mig) == 0 && mig) {
		json_object_object_add(o, "migration", json_tokener_parse(mig));
		free(mig);
	} else {
		json_object_object_add(o, "migration", NULL);
	}
	return o;
}

static json_object *reply_err(const char *msg)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	return o;
}

static json_object *reply_ok(void)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}

static json_object *dispatch(struct vmm *v, char *line)
{
	char *save = NULL, *cmd = strtok_r(line, " \t\r\n", &save);
	char err[256];

	if (!cmd)
		return reply_err("empty command");
	if (!strcmp(cmd, "status"))
		return status_json(v);
	if (!strcmp(cmd, "migrate")) {
		char *rest = save ? save : (char *)"";

		if (migrate_start(v, rest, err, sizeof(err)))
			return reply_err(err);
		return reply_ok();
	}
	if (!strcmp(cmd, "cancel")) {
		migrate_cancel(v);
		return reply_ok();
	}
	if (!strcmp(cmd, "stop")) {
		atomic_store(&v->exit_requested, true);
		return reply_ok();
	}
	snprintf(err, sizeof(err), "unknown command '%s' (status, migrate, cancel, stop)", cmd);
	return reply_err(err);
}

/* One poll round: accept and answer at most one client. */
void control_serve(struct vmm *v, int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	struct timeval tv = { .tv_sec = 2 };
	char line[CMD_MAX + 1];
	json_object *reply;
	const char *txt;
	size_t len = 0;
	int fd, wrc;

	if (poll(&p, 1, 200) <= 0)
		return;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	/* A client that never sends its line must not stall the VMM. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (len < CMD_MAX) {
		ssize_t n = read(fd, line + len, CMD_MAX - len);

		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(line, '\n', len))
			break;
	}
	line[len] = 0;
	reply = dispatch(v, line);
	txt = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN);
	wrc = write_full(fd, txt, strlen(txt));
	if (!wrc)
		wrc = write_full(fd, "\n", 1);
	(void)wrc;	/* the client went away: nothing to tell it */
	json_object_put(reply);
	close(fd);
}

/* One command, its JSON answer in buf (NUL-terminated).  0, or -1 when the
 * socket failed (said on stderr). */
static int client_request(const char *path, const char *cmd, char *buf, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 10 };
	size_t len = 0;
	int fd, rc = -1;

	strcpy(sa.sun_path, path);	/* length checked by the caller */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "vmfs-vmm: %s: %s (is the VM running, with --ctrl %s?)\n", path,
			strerror(errno), path);
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write_full(fd, cmd, strlen(cmd)))
		goto out;
	for (;;) {
		ssize_t n = read(fd, buf + len, size - 1 - len);

		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == size - 1)
			break;
	}
	rc = 0;
out:
	buf[len] = 0;
	if (fd >= 0)
		close(fd);
	return rc;
}

static uint64_t field_u64(json_object *o, const char *k)
{
	json_object *x;

	return json_object_object_get_ex(o, k, &x) ? (uint64_t)json_object_get_int64(x) : 0;
}

/* `migrate` on a terminal: follow the migration with one progress line,
 * rewritten every 200 ms, then the outcome.  0 when it completed. */
static int client_follow(const char *path, char *buf, size_t size)
{
	const char *status = "starting";
	int rc = 1;

	for (;;) {
		json_object *st, *m = NULL, *x;

		if (client_request(path, "status\n", buf, size))
			return 1;
		st = json_tokener_parse(buf);
		if (st && json_object_object_get_ex(st, "migration", &m) && m &&
		    json_object_object_get_ex(m, "status", &x))
			status = json_object_get_string(x);
		if (m)
			printf("\r%-9s round %2" PRIu64 "  sent %8.1f MiB  %5" PRIu64
			       " Mbit/s  remaining %8.1f MiB  %6.1f s\033[K", status,
			       field_u64(m, "rounds"), field_u64(m, "transferred_bytes") / 1048576.0,
			       field_u64(m, "throughput_mbps"),
			       field_u64(m, "remaining_bytes") / 1048576.0,
			       field_u64(m, "total_time_ms") / 1000.0);
		fflush(stdout);
		if (m && (!strcmp(status, "completed") || !strcmp(status, "failed") ||
			  !strcmp(status, "cancelled"))) {
			printf("\n");
			if (!strcmp(status, "completed")) {
				printf("downtime %" PRIu64 " ms\n", field_u64(m, "downtime_ms"));
				rc = 0;
			} else if (json_object_object_get_ex(m, "error", &x)) {
				printf("%s\n", json_object_get_string(x));
			}
			json_object_put(st);
			return rc;
		}
		json_object_put(st);
		usleep(200 * 1000);
	}
}

int control_client(const char *path, int argc, char **argv)
{
	static char buf[4 << 20];	/* status grows with the throughput samples */
	char cmd[CMD_MAX];
	int rc;

	if (argc < 1 || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "usage: vmfs-vmm --client SOCKET status|migrate HOST:PORT|cancel|stop\n");
		return 2;
	}
	cmd[0] = 0;
	for (int i = 0; i < argc; i++) {
		if (strlen(cmd) + strlen(argv[i]) + 2 >= sizeof(cmd))
			return 2;
		strcat(cmd, argv[i]);
		strcat(cmd, i + 1 < argc ? " " : "\n");
	}
	if (client_request(path, cmd, buf, sizeof(buf)))
		return 1;
	rc = strstr(buf, "\"ok\":false") ? 1 : 0;
	/* A person starting a migration sees it through (a script, whose
	 * stdout is not a terminal, gets the answer at once as before). */
	if (!rc && !strcmp(argv[0], "migrate") && isatty(STDOUT_FILENO))
		return client_follow(path, buf, sizeof(buf));
	fputs(buf, stdout);
	return rc;
}
