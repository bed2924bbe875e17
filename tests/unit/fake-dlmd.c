/* fake-dlmd.c — see fake-dlmd.h. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qb/qbloop.h>

#include "fake-dlmd.h"

static qb_loop_t *srv_loop;
static fake_dlmd_msg_fn srv_msg_fn;

void fake_dlmd_event_lvb(qb_ipcs_connection_t *c, int id, uint32_t req_id, int err,
			 uint64_t lkid, uint64_t epoch, int mode, const uint8_t *lvb)
{
	struct vmfs_ipc_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.hdr.id = id;
	ev.hdr.size = sizeof(ev);
	ev.req_id = req_id;
	ev.err = err;
	ev.lkid = lkid;
	ev.epoch = epoch;
	ev.mode = mode;
	ev.lvb_valid = 1;
	if (lvb)
		memcpy(ev.lvb, lvb, sizeof(ev.lvb));
	qb_ipcs_event_send(c, &ev, sizeof(ev));
}

void fake_dlmd_event(qb_ipcs_connection_t *c, int id, uint32_t req_id, int err,
		     uint64_t lkid, int mode, int reason, uint32_t nodeid)
{
	struct vmfs_ipc_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.hdr.id = id;
	ev.hdr.size = sizeof(ev);
	ev.req_id = req_id;
	ev.err = err;
	ev.lkid = lkid;
	ev.epoch = lkid ? 1 : 0;
	ev.mode = mode;
	ev.reason = reason;
	ev.lvb_valid = 1;
	memset(ev.lvb, 0xab, sizeof(ev.lvb));
	ev.nodeid = nodeid;
	qb_ipcs_event_send(c, &ev, sizeof(ev));
}

void fake_dlmd_respond(qb_ipcs_connection_t *c, int id, int error, const char *text)
{
	struct vmfs_ipc_response resp;
	struct iovec iov[2];
	size_t len = text ? strlen(text) : 0;

	memset(&resp, 0, sizeof(resp));
	resp.hdr.id = id;
	resp.hdr.error = error;
	resp.hdr.size = (int32_t)(sizeof(resp) + len);
	resp.nodeid = 7;
	resp.client_id = 3;
	snprintf(resp.name, sizeof(resp.name), "fakehost");
	resp.len = (uint32_t)len;
	iov[0].iov_base = &resp;
	iov[0].iov_len = sizeof(resp);
	iov[1].iov_base = (void *)text;
	iov[1].iov_len = len;
	qb_ipcs_response_sendv(c, iov, text ? 2 : 1);
}

void fake_dlmd_disconnect(qb_ipcs_connection_t *c)
{
	/* libqb removes its shared memory files on this path. */
	qb_ipcs_disconnect(c);
}

static int32_t srv_msg(qb_ipcs_connection_t *c, void *data, size_t size)
{
	return srv_msg_fn(c, data, size);
}

static int32_t srv_accept(qb_ipcs_connection_t *c, uid_t uid, gid_t gid)
{
	return 0;
}

static int32_t srv_closed(qb_ipcs_connection_t *c)
{
	/* One client per run: when it goes, so do we. */
	qb_loop_stop(srv_loop);
	return 0;
}

static int32_t srv_job_add(enum qb_loop_priority p, void *data, qb_loop_job_dispatch_fn fn)
{
	return qb_loop_job_add(srv_loop, p, data, fn);
}

static int32_t srv_poll_add(enum qb_loop_priority p, int32_t fd, int32_t events, void *data,
			    qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_add(srv_loop, p, fd, events, data, fn);
}

static int32_t srv_poll_mod(enum qb_loop_priority p, int32_t fd, int32_t events, void *data,
			    qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_mod(srv_loop, p, fd, events, data, fn);
}

static int32_t srv_poll_del(int32_t fd)
{
	return qb_loop_poll_del(srv_loop, fd);
}

static void server_main(const char *name, int ready_fd)
{
	struct qb_ipcs_service_handlers sh = {
		.connection_accept = srv_accept,
		.msg_process = srv_msg,
		.connection_closed = srv_closed,
	};
	struct qb_ipcs_poll_handlers ph = {
		.job_add = srv_job_add,
		.dispatch_add = srv_poll_add,
		.dispatch_mod = srv_poll_mod,
		.dispatch_del = srv_poll_del,
	};
	qb_ipcs_service_t *s;
	char ok = 1;

	srv_loop = qb_loop_create();
	s = qb_ipcs_create(name, 0, QB_IPC_SHM, &sh);
	if (!srv_loop || !s)
		_exit(99);
	qb_ipcs_enforce_buffer_size(s, VMFS_IPC_MAX_MSG);
	qb_ipcs_poll_handlers_set(s, &ph);
	if (qb_ipcs_run(s) != 0)
		_exit(77);
	if (write(ready_fd, &ok, 1) != 1)
		_exit(99);
	close(ready_fd);
	alarm(60);	/* never outlive a hung test */
	qb_loop_run(srv_loop);
	qb_ipcs_destroy(s);
	_exit(0);
}

int fake_dlmd_start(const char *prefix, fake_dlmd_msg_fn msg, pid_t *pid)
{
	char name[64];
	int pipefd[2], status;
	char ok;
	pid_t srv;

	snprintf(name, sizeof(name), "%s-%d", prefix, (int)getpid());
	srv_msg_fn = msg;
	if (pipe(pipefd) < 0)
		return 99;
	srv = fork();
	if (srv < 0)
		return 99;
	if (srv == 0) {
		close(pipefd[0]);
		server_main(name, pipefd[1]);
	}
	close(pipefd[1]);
	if (read(pipefd[0], &ok, 1) != 1) {
		close(pipefd[0]);
		waitpid(srv, &status, 0);
		fprintf(stderr, "fake daemon did not start\n");
		return WIFEXITED(status) && WEXITSTATUS(status) == 77 ? 77 : 99;
	}
	close(pipefd[0]);
	setenv("VMFS_DLM_IPC_NAME", name, 1);
	*pid = srv;
	return 0;
}

void fake_dlmd_wait(pid_t pid)
{
	int status;

	waitpid(pid, &status, 0);
}

/* --- test bookkeeping (parent side) -------------------------------------- */

static int failures;

void check(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", cond ? "ok  " : "FAIL");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (!cond)
		failures++;
}

int check_failures(void)
{
	return failures;
}
