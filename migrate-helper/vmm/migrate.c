/* migrate.c — vmfs-vmm's side of libvmfs-precopy: the callbacks, the
 * vCPU/device state format, the outgoing and incoming migration threads,
 * the switchover hook and the RARP announcement after an incoming resume.
 *
 * Device state (host byte order: both ends run the same vmfs-vmm on x86):
 *   struct vmm_state, then ncpus x accel->cpu_state_size bytes.
 */
#include "config.h"
#include "vmm.h"

#include <errno.h>
#include <json-c/json.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "io.h"
#include "log.h"

#define VMM_STATE_MAGIC 0x54534d56u	/* "VMST" */
#define VMM_STATE_VERSION 2u

struct vmm_state {
	uint32_t magic;
	uint32_t version;
	uint32_t ncpus;
	uint32_t cpu_state_size;
	uint32_t guest_clock_ms;
	uint32_t blk_block, blk_buf, blk_status;
	/* a disk command held back (devices.c), run at the resume */
	uint32_t blk_waiting, blk_cmd, blk_cmd_block, blk_cmd_buf;
	uint32_t serial_len;
	char serial_line[256];		/* an unfinished console line */
	char accel[16];
};

/* --- callbacks --------------------------------------------------------- */

static int cb_log_start(void *opaque)
{
	struct vmm *v = opaque;

	atomic_store(&v->logging, true);
	return v->accel->log_start ? v->accel->log_start(v) : 0;
}

static void cb_log_stop(void *opaque)
{
	struct vmm *v = opaque;

	if (v->accel->log_stop)
		v->accel->log_stop(v);
	atomic_store(&v->logging, false);
}

static int cb_log_sync(void *opaque, unsigned region, uint64_t *bitmap)
{
	(void)region;		/* one region: all of RAM */
	return ram_log_sync(opaque, bitmap);
}

/* The engine switches over next: hand the disks over now, the guest
 * still running but its disk held back (handoff.c). */
static int cb_pre_switchover(void *opaque)
{
	return handoff_before_pause(opaque);
}

static int cb_pause(void *opaque)
{
	struct vmm *v = opaque;
	int rc;

	rc = vm_pause(v);
	if (rc)
		return rc;
	vm_set_state(v, VM_PAUSED);
	/* The engine pauses only to switch over.  When the handoff waits for
	 * the hook (it was not made before the pause, which drained then;
	 * here that drain finds nothing left), drain now - vmfs-mount may
	 * answer a write before it completes, and the destination must find
	 * it on the disk - and warm the lock manager's ring up for the
	 * transfer (handoff.c).  A write that
	 * failed after its answer is lost either way; logged, it does not
	 * hold the VM back. */
	(void)dev_disk_drain(v);
	handoff_paused(v);
	return 0;
}

/* Undoes cb_pre_switchover too, the guest possibly never paused. */
static int cb_resume_source(void *opaque)
{
	struct vmm *v = opaque;

	handoff_resume_source(v);	/* a transfer made already is undone first */
	dev_disk_release(v);		/* the disk is ours again */
	vm_set_state(v, VM_RUNNING);
	vm_resume(v);
	return 0;
}

static int cb_throttle(void *opaque, unsigned percent)
{
	struct vmm *v = opaque;

	atomic_store(&v->throttle, percent);
	log_info("vm %s: throttle %u%%", v->cfg.name, percent);
	return 0;
}

/* Test-only faults (VMFS_VMM_TEST_FAULT, vmfs-vmm(8)): the destination
 * fails after the handoff, before its acknowledgement - the window the
 * source's give-back covers.  "dest-state-kill": die when the device state
 * arrives (the source is paused and its transfer before the pause made, the
 * switchover hook not reached); "dest-resume-kill": die before the resume
 * (after the hook); both SIGKILL, no cleanup.  "dest-resume-stall": never
 * resume nor answer (until killed).  at: "state" or "resume". */
static void test_fault(struct vmm *v, const char *at)
{
	const char *f = getenv("VMFS_VMM_TEST_FAULT");
	char stage[32];
	size_t n = (size_t)snprintf(stage, sizeof(stage), "dest-%s-", at);

	if (!f || strncmp(f, stage, n))
		return;		/* none, or another stage's */
	if (!strcmp(f + n, "kill")) {
		log_warn("vm %s: VMFS_VMM_TEST_FAULT=%s: dying now", v->cfg.name, f);
		raise(SIGKILL);
	} else if (!strcmp(f, "dest-resume-stall")) {
		log_warn("vm %s: VMFS_VMM_TEST_FAULT=%s: stalling before the resume", v->cfg.name,
			 f);
		for (;;)
			pause();
	}
}

static int cb_save_state(void *opaque, void **buf, size_t *len)
{
	struct vmm *v = opaque;
	size_t csz = v->accel->cpu_state_size;
	size_t total = sizeof(struct vmm_state) + v->ncpus * csz;
	struct vmm_state *s = calloc(1, total);
	int rc;

	if (!s)
		return -ENOMEM;
	s->magic = VMM_STATE_MAGIC;
	s->version = VMM_STATE_VERSION;
	s->ncpus = v->ncpus;
	s->cpu_state_size = (uint32_t)csz;
	s->guest_clock_ms = guest_clock_ms(v);
	snprintf(s->accel, sizeof(s->accel), "%s", v->accel->name);
	pthread_mutex_lock(&v->dev_lock);
	s->blk_block = v->blk_block;
	s->blk_buf = v->blk_buf;
	s->blk_status = v->blk_status;
	s->blk_waiting = v->blk_waiting;
	s->blk_cmd = v->blk_pending.cmd;
	s->blk_cmd_block = v->blk_pending.block;
	s->blk_cmd_buf = v->blk_pending.buf;
	s->serial_len = (uint32_t)v->serial_len;
	memcpy(s->serial_line, v->serial_line, v->serial_len);
	pthread_mutex_unlock(&v->dev_lock);
	for (unsigned i = 0; i < v->ncpus; i++) {
		rc = v->accel->save_cpu(&v->cpus[i], (uint8_t *)(s + 1) + i * csz);
		if (rc) {
			free(s);
			return rc;
		}
	}
	if (v->cfg.verify_ram) {
		char hex[65];

		ram_digest(v, hex);
		pthread_mutex_lock(&v->mig_lock);
		memcpy(v->ram_digest, hex, sizeof(hex));
		pthread_mutex_unlock(&v->mig_lock);
		log_info("vm %s: RAM sha256 at switchover %s", v->cfg.name, hex);
	}
	*buf = s;
	*len = total;
	return 0;
}

static int cb_load_state(void *opaque, const void *buf, size_t len)
{
	struct vmm *v = opaque;
	const struct vmm_state *s = buf;
	size_t csz = v->accel->cpu_state_size;
	int rc;

	test_fault(v, "state");
	if (len < sizeof(*s) || s->magic != VMM_STATE_MAGIC ||
	    s->version != VMM_STATE_VERSION || s->ncpus != v->ncpus ||
	    s->cpu_state_size != csz || len != sizeof(*s) + v->ncpus * csz ||
	    s->serial_len > sizeof(s->serial_line) || s->blk_waiting > 1 ||
	    strncmp(s->accel, v->accel->name, sizeof(s->accel)))
		return -EINVAL;
	for (unsigned i = 0; i < v->ncpus; i++) {
		rc = v->accel->load_cpu(&v->cpus[i], (const uint8_t *)(s + 1) + i * csz);
		if (rc)
			return rc;
	}
	pthread_mutex_lock(&v->dev_lock);
	v->blk_block = s->blk_block;
	v->blk_buf = s->blk_buf;
	v->blk_status = s->blk_status;
	v->blk_waiting = s->blk_waiting;
	v->blk_pending = (struct blk_request){ .cmd = s->blk_cmd, .block = s->blk_cmd_block,
					       .buf = s->blk_cmd_buf };
	v->serial_len = s->serial_len;
	memcpy(v->serial_line, s->serial_line, s->serial_len);
	pthread_mutex_unlock(&v->dev_lock);
	guest_clock_set(v, s->guest_clock_ms);
	if (v->cfg.verify_ram) {
		char hex[65];

		ram_digest(v, hex);
		pthread_mutex_lock(&v->mig_lock);
		memcpy(v->ram_digest, hex, sizeof(hex));
		pthread_mutex_unlock(&v->mig_lock);
		log_info("vm %s: RAM sha256 as received %s", v->cfg.name, hex);
	}
	return 0;
}

static int cb_resume_dest(void *opaque)
{
	struct vmm *v = opaque;
	struct vmfs_bootinfo *bi = (void *)(v->ram + GUEST_BOOTINFO_GPA);

	test_fault(v, "resume");

	/* Tells the guest it moved; it then verifies its memory. */
	__atomic_add_fetch(&bi->resume_count, 1, __ATOMIC_SEQ_CST);
	dev_disk_release(v);	/* a command the source held back runs here */
	vm_set_state(v, VM_RUNNING);
	vm_resume(v);
	net_announce(v);	/* net.c: RARP through the tap and/or --announce-if */
	return 0;
}

/* The switchover hook: the disk-lock handoff (handoff.c). */
static int cb_switchover(void *opaque)
{
	return handoff_switchover(opaque);
}

static void cb_switchover_abort(void *opaque)
{
	handoff_abort(opaque);
}

/* The disk's identity, equal on every host that sees the same file: on a
 * vmfs mount its trusted.vmfs.id ("<volume UUID>/i<ino>", vmfs-mount(8));
 * elsewhere device:inode (one host) - plus the size either way. */
static int disk_identity(const char *path, char *out, size_t len)
{
	char id[128];
	struct stat sb;
	ssize_t n;

	if (!path) {
		snprintf(out, len, "none");
		return 0;
	}
	if (stat(path, &sb))
		return -errno;
	n = getxattr(path, "trusted.vmfs.id", id, sizeof(id) - 1);
	if (n > 0) {
		id[n] = '\0';
		snprintf(out, len, "%s:%lld", id, (long long)sb.st_size);
	} else {
		snprintf(out, len, "%llu:%llu:%lld", (unsigned long long)sb.st_dev,
			 (unsigned long long)sb.st_ino, (long long)sb.st_size);
	}
	return 0;
}

static char *vm_info(struct vmm *v)
{
	json_object *o = json_object_new_object();
	char mac[18], disk[192] = "";
	char *txt;

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", v->cfg.mac[0],
		 v->cfg.mac[1], v->cfg.mac[2], v->cfg.mac[3], v->cfg.mac[4], v->cfg.mac[5]);
	if (disk_identity(v->cfg.disk, disk, sizeof(disk)))
		snprintf(disk, sizeof(disk), "unavailable");
	json_object_object_add(o, "name", json_object_new_string(v->cfg.name));
	json_object_object_add(o, "accel", json_object_new_string(v->accel->name));
	json_object_object_add(o, "vcpus", json_object_new_int((int)v->ncpus));
	json_object_object_add(o, "ram", json_object_new_int64((int64_t)v->ram_size));
	json_object_object_add(o, "mac", json_object_new_string(mac));
	/* the VM network: the bridge its tap is a port of ("" = none) */
	json_object_object_add(o, "network", json_object_new_string(
		v->cfg.bridge ? v->cfg.bridge : ""));
	json_object_object_add(o, "disk", json_object_new_string(v->cfg.disk ? v->cfg.disk : ""));
	json_object_object_add(o, "disk_id", json_object_new_string(disk));
	txt = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return txt;
}

/* Pre-flight on the destination (the seed's step 1). */
static int cb_preflight(void *opaque, const char *info, char *reason, size_t len)
{
	struct vmm *v = opaque;
	json_object *o = json_tokener_parse(info), *x;
	char *mine = vm_info(v);
	json_object *m = mine ? json_tokener_parse(mine) : NULL;
	static const char *const keys[] = { "accel", "vcpus", "ram", "mac", "network",
					    "disk_id" };
	static const char *const what[] = {
		"the accelerator differs", "the vCPU count differs",
		"the RAM size differs", "the VM's network (MAC) is not configured here",
		"the VM's network (the bridge of its tap) is not the same here",
		"the VM's disk is not the same file here (not on the shared volume?)",
	};
	int rc = 0;

	if (!o || !m) {
		snprintf(reason, len, "unreadable VM description");
		rc = -EINVAL;
		goto out;
	}
	for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_object *y;

		if (!json_object_object_get_ex(o, keys[i], &x) ||
		    !json_object_object_get_ex(m, keys[i], &y) ||
		    strcmp(json_object_get_string(x), json_object_get_string(y))) {
			snprintf(reason, len, "%s: source %s, destination %s", what[i],
				 x ? json_object_get_string(x) : "?",
				 json_object_object_get_ex(m, keys[i], &y) ?
				 json_object_get_string(y) : "?");
			rc = -EINVAL;
			goto out;
		}
	}
out:
	json_object_put(o);
	json_object_put(m);
	free(mine);
	return rc;
}

static void progress(void *opaque, const struct vmfs_precopy_progress *p)
{
	struct vmm *v = opaque;

	log_debug("vm %s: migration %s round %u sent %llu remaining %llu bw %llu B/s",
		  v->cfg.name, vmfs_precopy_status_name(p->status), p->round,
		  (unsigned long long)p->transferred, (unsigned long long)p->remaining,
		  (unsigned long long)p->bandwidth);
}

/* Outgoing: between pre-copy rounds, also the handoff's lookup, so the
 * pause pays only the transfer (handoff.c). */
static void source_progress(void *opaque, const struct vmfs_precopy_progress *p)
{
	if (p->status == VMFS_PRECOPY_ACTIVE)
		handoff_refresh(opaque);
	progress(opaque, p);
}

static int tcp_connect(const char *host, const char *port);

/* Extra connections of an outgoing migration: to the same HOST:PORT. */
static int cb_connect_more(void *opaque, unsigned lane)
{
	struct vmm *v = opaque;
	char host[128], port[16];

	pthread_mutex_lock(&v->mig_lock);
	snprintf(host, sizeof(host), "%s", v->mig_peer_host);
	snprintf(port, sizeof(port), "%s", v->mig_peer_port);
	pthread_mutex_unlock(&v->mig_lock);
	(void)lane;
	return tcp_connect(host, port);
}

/* Extra connections of an incoming migration: the next ones on the
 * listening socket, waiting at most 10 s for each. */
static int cb_accept_more(void *opaque, unsigned lane)
{
	struct vmm *v = opaque;
	struct pollfd pfd = { .fd = v->incoming_fd, .events = POLLIN };
	int rc, fd;

	(void)lane;
	do
		rc = poll(&pfd, 1, 10000);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	fd = accept4(v->incoming_fd, NULL, NULL, SOCK_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static const struct vmfs_precopy_ops source_ops = {
	.log_start = cb_log_start,
	.log_stop = cb_log_stop,
	.log_sync = cb_log_sync,
	.pre_switchover = cb_pre_switchover,
	.pause = cb_pause,
	.resume = cb_resume_source,
	.save_state = cb_save_state,
	.throttle = cb_throttle,
	.switchover = cb_switchover,
	.switchover_abort = cb_switchover_abort,
	.progress = source_progress,
	.open_connection = cb_connect_more,
};

static const struct vmfs_precopy_ops dest_ops = {
	.load_state = cb_load_state,
	.resume = cb_resume_dest,
	.preflight = cb_preflight,
	.progress = progress,
	.open_connection = cb_accept_more,
};

/* --- outgoing ------------------------------------------------------------ */

struct out_job {
	struct vmm *v;
	char host[128];
	char port[16];
};

static int tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, rc;

	rc = getaddrinfo(host, port, &hints, &res);
	if (rc)
		return -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (!connect(fd, ai->ai_addr, ai->ai_addrlen))
			break;
		rc = -errno;
		close(fd);
		fd = rc;
	}
	freeaddrinfo(res);
	return fd;
}

static int split_hostport(const char *uri, char *host, size_t hl, char *port, size_t pl)
{
	const char *colon;

	if (!strncmp(uri, "tcp:", 4))
		uri += 4;
	colon = strrchr(uri, ':');
	if (!colon || colon == uri || (size_t)(colon - uri) >= hl || strlen(colon + 1) >= pl ||
	    !colon[1])
		return -EINVAL;
	memcpy(host, uri, (size_t)(colon - uri));
	host[colon - uri] = 0;
	strcpy(port, colon + 1);
	return 0;
}

static void *outgoing_thread(void *arg)
{
	struct out_job *job = arg;
	struct vmm *v = job->v;
	int fd, rc;

	fd = tcp_connect(job->host, job->port);
	if (fd < 0) {
		log_err("vm %s: migrate to %s:%s: %s", v->cfg.name, job->host, job->port,
			strerror(-fd));
		rc = fd;
	} else {
		log_info("vm %s: migrating to %s:%s", v->cfg.name, job->host, job->port);
		rc = vmfs_precopy_run(v->mig, fd);
		close(fd);
	}
	if (rc == 0) {
		vm_set_state(v, VM_POSTMIGRATE);
		log_info("vm %s: migration completed, the VM runs on %s:%s",
			 v->cfg.name, job->host, job->port);
	} else {
		log_err("vm %s: migration failed, the VM keeps running here: %s",
			v->cfg.name, fd < 0 ? strerror(-fd) : vmfs_precopy_last_error(v->mig));
	}
	handoff_end(v);
	pthread_mutex_lock(&v->mig_lock);
	v->mig_running = false;
	pthread_mutex_unlock(&v->mig_lock);
	free(job);
	return NULL;
}

static int apply_kv(struct vmfs_precopy_params *p, char *kv)
{
	char *eq = strchr(kv, '=');
	unsigned long long x;
	char *end;

	if (!eq)
		return -EINVAL;
	*eq = 0;
	errno = 0;
	x = strtoull(eq + 1, &end, 0);
	if (errno || *end)
		return -EINVAL;
	if (!strcmp(kv, "downtime-ms"))
		p->downtime_ms = (unsigned)x;
	else if (!strcmp(kv, "max-bandwidth"))
		p->max_bandwidth = x;
	else if (!strcmp(kv, "max-rounds"))
		p->max_rounds = (unsigned)x;
	else if (!strcmp(kv, "max-time-ms"))
		p->max_time_ms = (unsigned)x;
	else if (!strcmp(kv, "force"))
		p->force_switchover = x != 0;
	else if (!strcmp(kv, "auto-converge"))
		p->auto_converge = x != 0;
	else if (!strcmp(kv, "connections") && x >= 1 && x <= 16)
		p->connections = (unsigned)x;
	else if (!strcmp(kv, "io-timeout-ms") && x >= 500 && x <= 600000)
		p->io_timeout_ms = (unsigned)x;
	else
		return -EINVAL;
	return 0;
}

int migrate_start(struct vmm *v, const char *args, char *err, size_t errlen)
{
	struct vmfs_precopy_params p = {
		.psk = v->psk, .psk_len = v->psk_len,
		.downtime_ms = v->cfg.downtime_ms, .max_bandwidth = v->cfg.max_bandwidth,
		.max_rounds = v->cfg.max_rounds, .force_switchover = v->cfg.force_switchover,
		.auto_converge = v->cfg.auto_converge,
		.connections = v->cfg.migrate_connections,
	};
	char buf[256], *save = NULL, *tok;
	struct vmfs_precopy *m = NULL;
	struct out_job *job = NULL;
	char *info = NULL;
	int rc;

	snprintf(buf, sizeof(buf), "%s", args);
	tok = strtok_r(buf, " \t\r\n", &save);
	job = calloc(1, sizeof(*job));
	if (!job) {
		rc = -ENOMEM;
		goto out;
	}
	job->v = v;
	if (!tok || split_hostport(tok, job->host, sizeof(job->host), job->port,
				   sizeof(job->port))) {
		snprintf(err, errlen, "usage: migrate HOST:PORT [downtime-ms=N] "
			 "[max-bandwidth=BYTES] [max-rounds=N] [max-time-ms=N] [force=0|1] "
			 "[auto-converge=0|1] [connections=1..16] [io-timeout-ms=N]");
		rc = -EINVAL;
		goto out;
	}
	while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
		if (apply_kv(&p, tok)) {
			snprintf(err, errlen, "bad migration parameter '%s'", tok);
			rc = -EINVAL;
			goto out;
		}
	}
	if (!v->psk_len) {
		snprintf(err, errlen, "no --psk-file was given");
		rc = -EINVAL;
		goto out;
	}
	pthread_mutex_lock(&v->mig_lock);
	if (v->state != VM_RUNNING || v->mig_running) {
		snprintf(err, errlen, "cannot migrate: VM is %s%s", vm_state_name(v->state),
			 v->mig_running ? " and a migration is running" : "");
		pthread_mutex_unlock(&v->mig_lock);
		rc = -EBUSY;
		goto out;
	}
	pthread_mutex_unlock(&v->mig_lock);
	rc = vmfs_precopy_new(&m, VMFS_PRECOPY_SOURCE, &p, &source_ops, v);
	if (!rc)
		rc = vmfs_precopy_add_region(m, 0, v->ram_size, v->ram);
	info = vm_info(v);
	if (!rc)
		rc = info ? vmfs_precopy_set_vm_info(m, info) : -ENOMEM;
	if (rc) {
		snprintf(err, errlen, "cannot set up the migration: %s", strerror(-rc));
		goto out;
	}
	/* the lock manager connection and this host's name, before the pause */
	rc = handoff_begin(v, err, errlen);
	if (rc)
		goto out;
	/* The previous migration's object was kept for status; a finished
	 * thread is joined before its object goes. */
	pthread_mutex_lock(&v->mig_lock);
	if (v->mig_joinable) {
		pthread_join(v->mig_thread, NULL);
		v->mig_joinable = false;
	}
	vmfs_precopy_free(v->mig);
	v->mig = m;
	m = NULL;
	snprintf(v->mig_peer_host, sizeof(v->mig_peer_host), "%s", job->host);
	snprintf(v->mig_peer_port, sizeof(v->mig_peer_port), "%s", job->port);
	v->mig_running = true;
	rc = pthread_create(&v->mig_thread, NULL, outgoing_thread, job);
	if (rc) {
		v->mig_running = false;
		rc = -rc;
		handoff_end(v);
	} else {
		v->mig_joinable = true;
		job = NULL;
	}
	pthread_mutex_unlock(&v->mig_lock);
	if (rc)
		snprintf(err, errlen, "cannot start the migration thread");
out:
	free(info);
	free(job);
	vmfs_precopy_free(m);
	return rc;
}

void migrate_cancel(struct vmm *v)
{
	pthread_mutex_lock(&v->mig_lock);
	if (v->mig && v->mig_running)
		vmfs_precopy_cancel(v->mig);
	pthread_mutex_unlock(&v->mig_lock);
}

void migrate_shutdown(struct vmm *v)
{
	bool join;

	migrate_cancel(v);
	pthread_mutex_lock(&v->mig_lock);
	if (v->incoming_fd >= 0)
		shutdown(v->incoming_fd, SHUT_RDWR);	/* wakes accept() */
	join = v->mig_joinable;
	v->mig_joinable = false;
	pthread_mutex_unlock(&v->mig_lock);
	if (join)
		pthread_join(v->mig_thread, NULL);
	if (v->incoming_fd >= 0)
		close(v->incoming_fd);
	v->incoming_fd = -1;
	vmfs_precopy_free(v->mig);
	v->mig = NULL;
}

int migration_json(struct vmm *v, char **json)
{
	int rc = 0;

	*json = NULL;
	pthread_mutex_lock(&v->mig_lock);
	if (v->mig)
		rc = vmfs_precopy_stats_json(v->mig, json);
	pthread_mutex_unlock(&v->mig_lock);
	return rc;
}

/* --- incoming ------------------------------------------------------------ */

int incoming_setup(struct vmm *v)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[128], port[16];
	int fd, one = 1, rc;

	if (split_hostport(v->cfg.incoming, host, sizeof(host), port, sizeof(port))) {
		log_err("--incoming wants HOST:PORT");
		return -EINVAL;
	}
	if (getaddrinfo(host, port, &hints, &res)) {
		log_err("--incoming %s: cannot resolve", v->cfg.incoming);
		return -EINVAL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 16) ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		rc = -errno;
		close(fd);
		goto out;
	}
	v->incoming_fd = fd;
	v->incoming_port = ntohs(ss.ss_family == AF_INET6 ?
				 ((struct sockaddr_in6 *)&ss)->sin6_port :
				 ((struct sockaddr_in *)&ss)->sin_port);
	rc = 0;
out:
	freeaddrinfo(res);
	if (rc)
		log_err("--incoming %s: %s", v->cfg.incoming, strerror(-rc));
	return rc;
}

static void *incoming_thread(void *arg)
{
	struct vmm *v = arg;
	int fd, rc;

	fd = accept4(v->incoming_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		log_err("vm %s: incoming: %s", v->cfg.name, strerror(errno));
		goto out;
	}
	log_info("vm %s: incoming migration connected", v->cfg.name);
	rc = vmfs_precopy_run(v->mig, fd);
	close(fd);
	if (rc == 0) {
		log_info("vm %s: incoming migration completed, the VM runs here",
			 v->cfg.name);
	} else {
		/* The source keeps the VM; what arrived here is discarded. */
		log_err("vm %s: incoming migration failed, discarded: %s", v->cfg.name,
			vmfs_precopy_last_error(v->mig));
	}
out:
	pthread_mutex_lock(&v->mig_lock);
	v->mig_running = false;
	if (rc) {
		v->exit_code = 1;
		v->state = VM_STOPPED;
	}
	pthread_mutex_unlock(&v->mig_lock);
	if (rc)
		atomic_store(&v->exit_requested, true);
	return NULL;
}

int incoming_start(struct vmm *v)
{
	struct vmfs_precopy_params p = { .psk = v->psk, .psk_len = v->psk_len };
	int rc;

	rc = vmfs_precopy_new(&v->mig, VMFS_PRECOPY_DEST, &p, &dest_ops, v);
	if (!rc)
		rc = vmfs_precopy_add_region(v->mig, 0, v->ram_size, v->ram);
	if (rc)
		return rc;
	pthread_mutex_lock(&v->mig_lock);
	v->mig_running = true;
	rc = -pthread_create(&v->mig_thread, NULL, incoming_thread, v);
	v->mig_joinable = rc == 0;
	pthread_mutex_unlock(&v->mig_lock);
	return rc;
}
