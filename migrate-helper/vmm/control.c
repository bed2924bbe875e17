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

int control_client(const char *path, int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 10 };
	static char buf[4 << 20];	/* status grows with the throughput samples */
	char cmd[CMD_MAX];
	size_t len = 0;
	int fd, rc = 1;

	if (argc < 1 || strlen(path) >= sizeof(sa.sun_path)) {
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
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "vmfs-vmm: %s: %s\n", path, strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write_full(fd, cmd, strlen(cmd)))
		goto out;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			break;
	}
	buf[len] = 0;
	fputs(buf, stdout);
	rc = strstr(buf, "\"ok\":false") ? 1 : 0;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}
