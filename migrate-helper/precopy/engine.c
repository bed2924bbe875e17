/* engine.c — object life cycle, state machine, statistics of libvmfs-precopy.
 *
 * Migration phases (source side; the destination mirrors them)
 * ============================================================
 *
 *  state \ event | connected | setup ok  | converged /  | READY +     | RESUMED   | error, cancel,
 *                |           |           | guard=force  | hook ok, GO | (the ack) | timeout, ABORT
 *  --------------+-----------+-----------+--------------+-------------+-----------+----------------
 *  NONE          | SETUP     |     -     |      -       |      -      |     -     | FAILED
 *  SETUP         |     -     | ACTIVE    |      -       |      -      |     -     | FAILED/CANCELLED
 *  ACTIVE        |     -     |     -     | DEVICE(pause)|      -      |     -     | FAILED/CANCELLED
 *  DEVICE        |     -     |     -     |      -       | DEVICE(go)  | COMPLETED | resume on source,
 *                |           |           |              |             |           | FAILED/CANCELLED
 *  COMPLETED     | sticky: the VM belongs to the destination, nothing undoes it
 *  FAILED        | sticky (the ERROR state): the VM runs on the source
 *  CANCELLED     | sticky: as FAILED, by request
 *
 *  Guard (max rounds, max time, no progress) in ACTIVE: cancel -> FAILED
 *  with VMFS_PRECOPY_ENOCONVERGE (default) or force -> DEVICE.
 *
 * Invariants
 *  1. The VM runs in exactly one place outside DEVICE: on the source in
 *     SETUP, ACTIVE, FAILED, CANCELLED; on the destination in COMPLETED.
 *  2. The source pauses the VM only on the way into DEVICE and, whenever it
 *     leaves DEVICE for anything but COMPLETED, it resumes it (after the
 *     switchover_abort hook if the switchover hook had succeeded).
 *  3. The destination resumes only after GO, which the source sends only
 *     after READY (state loaded) and a successful switchover hook.
 *  4. RESUMED is the point of no return: the source leaves the VM paused
 *     for good only after reading it.  Cancel after GO is ignored.
 *  5. A page is sent after the dirty-log sync that cleared its bit, so a
 *     write racing with the copy leaves the bit set for the next round.
 *  6. No frame is acted on before its checksum, tag and sequence number
 *     verified; HELLO is the only frame signed with the bare key.
 *  7. Once COMPLETED, FAILED or CANCELLED, the status never changes again.
 *
 * Known window (two generals): if the ack is lost after the destination
 * resumed, the source times out and resumes too.  Disk safety then rests on
 * the lock handoff's fencing epochs (DESIGN.md decision 4): the
 * switchover_abort hook asks for the disks back, which fails if the
 * destination already wrote under the new epoch, and the source's writes
 * get EIO.
 */
#include "config.h"
#include "engine.h"

#include <errno.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"

static bool status_final(enum vmfs_precopy_status s)
{
	return s == VMFS_PRECOPY_COMPLETED || s == VMFS_PRECOPY_FAILED ||
	       s == VMFS_PRECOPY_CANCELLED;
}

/* The constructor proper: the caller's params and ops are `psize` and
 * `osize` bytes long (shorter for binaries built against an older header:
 * the fields they lack read as zero). */
static int precopy_new(struct vmfs_precopy **out, enum vmfs_precopy_role role,
		       const struct vmfs_precopy_params *params, size_t psize,
		       const struct vmfs_precopy_ops *ops_in, size_t osize, void *opaque)
{
	struct vmfs_precopy_params pp = { 0 };
	struct vmfs_precopy_ops oo = { 0 };
	const struct vmfs_precopy_params *params_c = &pp;
	const struct vmfs_precopy_ops *ops = &oo;
	struct vmfs_precopy *m;

	*out = NULL;
	if (role != VMFS_PRECOPY_SOURCE && role != VMFS_PRECOPY_DEST)
		return -EINVAL;
	if (!params || !ops_in)
		return -EINVAL;
	memcpy(&pp, params, psize);
	memcpy(&oo, ops_in, osize);
	params = params_c;
	if (!params->psk || params->psk_len < 16)
		return -EINVAL;
	if (params->connections > MIG_MAX_LANES)
		return -EINVAL;
	if (role == VMFS_PRECOPY_SOURCE &&
	    (!ops->log_start || !ops->log_sync || !ops->pause || !ops->resume ||
	     !ops->save_state))
		return -EINVAL;
	if (role == VMFS_PRECOPY_DEST && (!ops->load_state || !ops->resume))
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->role = role;
	m->proto_max = mig_proto_max;
	m->p = *params;
	if (!m->p.downtime_ms)
		m->p.downtime_ms = 300;
	if (!m->p.max_rounds)
		m->p.max_rounds = 30;
	if (!m->p.no_progress_rounds)
		m->p.no_progress_rounds = 5;
	if (!m->p.io_timeout_ms)
		m->p.io_timeout_ms = 10000;
	m->psk = malloc(params->psk_len);
	m->buf = malloc(MIG_HDR_LEN + MIG_MAX_PAYLOAD + MIG_TAG_LEN);
	if (!m->psk || !m->buf) {
		vmfs_precopy_free(m);
		return -ENOMEM;
	}
	memcpy(m->psk, params->psk, params->psk_len);
	m->p.psk = m->psk;
	m->ops = *ops;
	m->opaque = opaque;
	atomic_init(&m->cancel, 0);
	atomic_init(&m->fd, -1);
	atomic_init(&m->past_go, 0);
	atomic_init(&m->active_bytes, 0);
	for (unsigned i = 0; i < MIG_MAX_LANES; i++)
		atomic_init(&m->lane_fd[i], -1);
	m->proto = 1;
	m->nlanes = 1;
	pthread_mutex_init(&m->lock, NULL);
	*out = m;
	return 0;
}

/* vmfs_precopy_new: in a PIC build (the shared library) the .symver
 * below makes this the default version, VMFS_PRECOPY_3. */
#if defined(PIC) && defined(__ELF__)
#define vmfs_precopy_new vmfs_precopy_new_v3
int vmfs_precopy_new(struct vmfs_precopy **out, enum vmfs_precopy_role role,
		     const struct vmfs_precopy_params *params,
		     const struct vmfs_precopy_ops *ops, void *opaque);
#endif
int vmfs_precopy_new(struct vmfs_precopy **out, enum vmfs_precopy_role role,
		     const struct vmfs_precopy_params *params,
		     const struct vmfs_precopy_ops *ops, void *opaque)
{
	return precopy_new(out, role, params, sizeof(*params), ops, sizeof(*ops), opaque);
}
#undef vmfs_precopy_new

/* Binaries of older headers: VMFS_PRECOPY_1's params end before
 * `connections` and its ops before `open_connection`; VMFS_PRECOPY_2's ops
 * end before `pre_switchover`.  Only the shared library carries these. */
int vmfs_precopy_new_v1(struct vmfs_precopy **out, enum vmfs_precopy_role role,
			const struct vmfs_precopy_params *params,
			const struct vmfs_precopy_ops *ops, void *opaque);
int vmfs_precopy_new_v1(struct vmfs_precopy **out, enum vmfs_precopy_role role,
			const struct vmfs_precopy_params *params,
			const struct vmfs_precopy_ops *ops, void *opaque)
{
	return precopy_new(out, role, params,
			   offsetof(struct vmfs_precopy_params, connections), ops,
			   offsetof(struct vmfs_precopy_ops, open_connection), opaque);
}
int vmfs_precopy_new_v2(struct vmfs_precopy **out, enum vmfs_precopy_role role,
			const struct vmfs_precopy_params *params,
			const struct vmfs_precopy_ops *ops, void *opaque);
int vmfs_precopy_new_v2(struct vmfs_precopy **out, enum vmfs_precopy_role role,
			const struct vmfs_precopy_params *params,
			const struct vmfs_precopy_ops *ops, void *opaque)
{
	return precopy_new(out, role, params, sizeof(*params), ops,
			   offsetof(struct vmfs_precopy_ops, pre_switchover), opaque);
}
#if defined(PIC) && defined(__ELF__)
__asm__(".symver vmfs_precopy_new_v1,vmfs_precopy_new@VMFS_PRECOPY_1");
__asm__(".symver vmfs_precopy_new_v2,vmfs_precopy_new@VMFS_PRECOPY_2");
__asm__(".symver vmfs_precopy_new_v3,vmfs_precopy_new@@VMFS_PRECOPY_3");
#endif

void mig_lanes_init(struct vmfs_precopy *m)
{
	struct mig_lane *l = &m->lanes[0];

	l->m = m;
	l->index = 0;
	l->tx = &m->tx;
	l->rx = &m->rx;
	l->buf = m->buf;
	l->stage = m->stage;
	m->nlanes = 1;
}

int mig_lane_alloc(struct mig_lane *l, bool stage)
{
	l->tx = &l->own_tx;
	l->rx = &l->own_rx;
	l->buf = malloc(MIG_HDR_LEN + MIG_MAX_PAYLOAD + MIG_TAG_LEN);
	l->stage = stage ? malloc((size_t)MIG_BATCH_PAGES * VMFS_PRECOPY_PAGE_SIZE) : NULL;
	if (!l->buf || (stage && !l->stage))
		return -ENOMEM;
	return 0;
}

void mig_lanes_shutdown(struct vmfs_precopy *m, bool lane0)
{
	int fd = atomic_load(&m->fd);

	if (lane0 && fd >= 0)
		shutdown(fd, SHUT_RDWR);
	for (unsigned i = 1; i < MIG_MAX_LANES; i++) {
		fd = atomic_load(&m->lane_fd[i]);
		if (fd >= 0)
			shutdown(fd, SHUT_RDWR);
	}
}

int mig_lanes_close(struct vmfs_precopy *m)
{
	int rc = 0;

	for (unsigned i = 1; i < MIG_MAX_LANES; i++) {
		struct mig_lane *l = &m->lanes[i];
		int fd;

		if (l->thread_running) {
			pthread_join(l->thread, NULL);
			l->thread_running = false;
			if (l->rc && !rc)
				rc = l->rc;
		}
		/* Under the lock: cancel may be shutting it down right now. */
		pthread_mutex_lock(&m->lock);
		fd = atomic_exchange(&m->lane_fd[i], -1);
		pthread_mutex_unlock(&m->lock);
		if (fd >= 0)
			close(fd);
		free(l->buf);
		free(l->stage);
		l->buf = l->stage = NULL;
	}
	m->nlanes = 1;
	return rc;
}

/* Destination RAM is faulted in while the destination waits for the
 * source.  On first touch the kernel allocates and zeroes every page; done
 * by the receive path that was most of the destination's CPU time during a
 * migration (perf, 512 MiB guest: clear_page ~60%), in series with
 * receiving, verifying and applying pages.  MADV_POPULATE_WRITE (Linux 5.14)
 * keeps what the pages hold; it goes in chunks so free() need not wait for
 * a whole region.  Best effort: without it pages fault in on receive. */
#define PREFAULT_CHUNK (32u << 20)

struct prefault_job {
	struct vmfs_precopy *m;
	uint8_t *host;
	uint64_t size;
};

static void *prefault_thread(void *arg)
{
	struct prefault_job *j = arg;

#ifdef MADV_POPULATE_WRITE
	for (uint64_t off = 0; off < j->size && !atomic_load(&j->m->prefault_stop);
	     off += PREFAULT_CHUNK) {
		uint64_t len = j->size - off < PREFAULT_CHUNK ? j->size - off : PREFAULT_CHUNK;

		if (madvise(j->host + off, len, MADV_POPULATE_WRITE))
			break;	/* EINVAL on older kernels, ENOMEM: leave the rest */
	}
#endif
	free(j);
	return NULL;
}

static void prefault_start(struct vmfs_precopy *m, uint8_t *host, uint64_t size)
{
	struct prefault_job *j = malloc(sizeof(*j));
	pthread_t *t = realloc(m->prefault, (m->nprefault + 1) * sizeof(*t));

	if (t)
		m->prefault = t;
	if (!j || !t) {
		free(j);
		return;
	}
	*j = (struct prefault_job){ .m = m, .host = host, .size = size };
	if (pthread_create(&m->prefault[m->nprefault], NULL, prefault_thread, j)) {
		free(j);
		return;
	}
	m->nprefault++;
}

void vmfs_precopy_free(struct vmfs_precopy *m)
{
	if (!m)
		return;
	atomic_store(&m->prefault_stop, 1);
	for (unsigned i = 0; i < m->nprefault; i++)
		pthread_join(m->prefault[i], NULL);
	free(m->prefault);
	for (unsigned i = 0; i < m->nregions; i++)
		free(m->regions[i].dirty);
	free(m->regions);
	free(m->vm_info);
	if (m->psk)
		memset(m->psk, 0, m->p.psk_len);
	free(m->psk);
	free(m->buf);
	free(m->stage);
	free(m->st.rounds);
	free(m->st.samples);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

int vmfs_precopy_add_region(struct vmfs_precopy *m, uint64_t gpa, uint64_t size,
			    void *host)
{
	struct mig_region *r;
	uint64_t words;

	if (m->ran || !host || !size || size % VMFS_PRECOPY_PAGE_SIZE ||
	    gpa % VMFS_PRECOPY_PAGE_SIZE)
		return -EINVAL;
	r = realloc(m->regions, (m->nregions + 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	m->regions = r;
	r = &m->regions[m->nregions];
	memset(r, 0, sizeof(*r));
	r->gpa = gpa;
	r->size = size;
	r->pages = size / VMFS_PRECOPY_PAGE_SIZE;
	r->host = host;
	if (m->role == VMFS_PRECOPY_SOURCE) {
		words = (r->pages + 63) / 64;
		r->dirty = calloc(words, sizeof(uint64_t));
		if (!r->dirty)
			return -ENOMEM;
	}
	m->nregions++;
	if (m->role == VMFS_PRECOPY_DEST)
		prefault_start(m, host, size);
	return 0;
}

int vmfs_precopy_set_vm_info(struct vmfs_precopy *m, const char *json)
{
	char *copy = strdup(json ? json : "{}");

	if (!copy)
		return -ENOMEM;
	free(m->vm_info);
	m->vm_info = copy;
	return 0;
}

int vmfs_precopy_run(struct vmfs_precopy *m, int fd)
{
	int rc;

	if (m->ran || !m->nregions || fd < 0)
		return -EINVAL;
	m->ran = true;
	m->tx.fd = fd;
	m->rx.fd = fd;
	pthread_mutex_lock(&m->lock);
	m->st.start_ms = now_mono_ms();
	m->st.sample_start_ms = m->st.start_ms;
	pthread_mutex_unlock(&m->lock);
	atomic_store(&m->fd, fd);
	/* A cancel that came before the fd was published. */
	if (atomic_load(&m->cancel))
		shutdown(fd, SHUT_RDWR);
	mig_lanes_init(m);
	if (m->role == VMFS_PRECOPY_SOURCE)
		rc = mig_source_run(m);
	else
		rc = mig_dest_run(m);
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->fd, -1);
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_lock(&m->lock);
	m->st.end_ms = now_mono_ms();
	pthread_mutex_unlock(&m->lock);
	mig_progress(m, 0);
	return rc;
}

void vmfs_precopy_cancel(struct vmfs_precopy *m)
{
	pthread_mutex_lock(&m->lock);
	if (!atomic_load(&m->past_go) && !status_final(m->st.status)) {
		atomic_store(&m->cancel, 1);
		/* Wakes a run or lane thread blocked on the peer; the run
		 * thread then rolls back. */
		mig_lanes_shutdown(m, true);
	}
	pthread_mutex_unlock(&m->lock);
}

enum vmfs_precopy_status vmfs_precopy_status(struct vmfs_precopy *m)
{
	enum vmfs_precopy_status s;

	pthread_mutex_lock(&m->lock);
	s = m->st.status;
	pthread_mutex_unlock(&m->lock);
	return s;
}

const char *vmfs_precopy_last_error(struct vmfs_precopy *m)
{
	return m->error;
}

void mig_set_status(struct vmfs_precopy *m, enum vmfs_precopy_status s)
{
	pthread_mutex_lock(&m->lock);
	if (!status_final(m->st.status))	/* invariant 7 */
		m->st.status = s;
	pthread_mutex_unlock(&m->lock);
}

void mig_fail(struct vmfs_precopy *m, int rc, const char *fmt, ...)
{
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&m->lock);
	if (!m->error[0])
		snprintf(m->error, sizeof(m->error), "%s: %s", what,
			 vmfs_precopy_strerror(rc));
	pthread_mutex_unlock(&m->lock);
}

int mig_io_error(struct vmfs_precopy *m, int rc)
{
	if (atomic_load(&m->cancel))
		return -ECANCELED;
	if (rc == -EAGAIN || rc == -EWOULDBLOCK)
		return -ETIMEDOUT;
	if (rc == -EIO)		/* read_full's end of file */
		return -ECONNRESET;
	return rc;
}

int mig_ctl_send(struct vmfs_precopy *m, uint16_t type, const void *p, size_t len)
{
	uint64_t before = m->tx.bytes;
	int rc = mig_send(&m->tx, m->psk, m->p.psk_len, type, p, len);

	if (rc)
		return mig_io_error(m, rc);
	mig_account(m, m->tx.bytes - before);
	return 0;
}

int mig_ctl_recv(struct vmfs_precopy *m, struct mig_hdr *h)
{
	uint64_t before = m->rx.bytes;
	int rc = mig_recv(&m->rx, m->psk, m->p.psk_len, m->buf, h);

	if (rc)
		return mig_io_error(m, rc);
	mig_account(m, m->rx.bytes - before);
	return 0;
}

static void push_sample(struct mig_stats *st, uint64_t now)
{
	struct mig_sample *s;

	if (st->nsamples == st->samples_cap) {
		unsigned cap = st->samples_cap ? st->samples_cap * 2 : 256;

		s = realloc(st->samples, cap * sizeof(*s));
		if (!s)
			return;		/* samples are best effort */
		st->samples = s;
		st->samples_cap = cap;
	}
	s = &st->samples[st->nsamples++];
	s->t_ms = now - st->start_ms;
	s->bytes = st->sample_bytes;
	s->interval_ms = now - st->sample_start_ms;
	st->sample_bytes = 0;
	st->sample_start_ms = now;
}

void mig_account(struct vmfs_precopy *m, uint64_t bytes)
{
	uint64_t now = now_mono_ms();

	pthread_mutex_lock(&m->lock);
	m->st.transferred += bytes;
	m->st.sample_bytes += bytes;
	if (now - m->st.sample_start_ms >= MIG_SAMPLE_MS)
		push_sample(&m->st, now);
	pthread_mutex_unlock(&m->lock);
}

int mig_push_round(struct vmfs_precopy *m, const struct mig_round *r)
{
	struct mig_round *n;
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	if (m->st.nrounds == m->st.rounds_cap) {
		unsigned cap = m->st.rounds_cap ? m->st.rounds_cap * 2 : 16;

		n = realloc(m->st.rounds, cap * sizeof(*n));
		if (!n) {
			rc = -ENOMEM;
			goto out;
		}
		m->st.rounds = n;
		m->st.rounds_cap = cap;
	}
	m->st.rounds[m->st.nrounds++] = *r;
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void mig_progress(struct vmfs_precopy *m, unsigned round)
{
	struct vmfs_precopy_progress p;

	if (!m->ops.progress)
		return;
	pthread_mutex_lock(&m->lock);
	p.status = m->st.status;
	p.round = round ? round : m->st.nrounds;
	p.transferred = m->st.transferred;
	p.remaining = m->st.remaining;
	p.bandwidth = m->st.bandwidth;
	p.dirty_rate = m->st.dirty_rate;
	pthread_mutex_unlock(&m->lock);
	m->ops.progress(m->opaque, &p);
}

const char *vmfs_precopy_status_name(enum vmfs_precopy_status s)
{
	static const char *const names[] = {
		[VMFS_PRECOPY_NONE] = "none",
		[VMFS_PRECOPY_SETUP] = "setup",
		[VMFS_PRECOPY_ACTIVE] = "active",
		[VMFS_PRECOPY_DEVICE] = "device",
		[VMFS_PRECOPY_COMPLETED] = "completed",
		[VMFS_PRECOPY_FAILED] = "failed",
		[VMFS_PRECOPY_CANCELLED] = "cancelled",
	};

	if ((unsigned)s < sizeof(names) / sizeof(names[0]))
		return names[s];
	return "unknown";
}

const char *vmfs_precopy_strerror(int err)
{
	switch (err) {
	case VMFS_PRECOPY_EBADMAGIC:
		return "not a vmfs migration stream (bad magic)";
	case VMFS_PRECOPY_EVERSION:
		return "unsupported migration stream version";
	case VMFS_PRECOPY_ECHECKSUM:
		return "frame checksum mismatch (corrupted in transit)";
	case VMFS_PRECOPY_EAUTH:
		return "authentication failed (wrong pre-shared key, or a replayed frame)";
	case VMFS_PRECOPY_ETOOBIG:
		return "frame larger than the size cap";
	case VMFS_PRECOPY_EPROTO:
		return "malformed frame or protocol violation";
	case VMFS_PRECOPY_ENOCONVERGE:
		return "pre-copy did not converge (guard tripped)";
	case VMFS_PRECOPY_EREFUSED:
		return "refused by the destination";
	case VMFS_PRECOPY_EHANDOFF:
		return "switchover hook refused the handoff";
	case VMFS_PRECOPY_EPEER:
		return "peer aborted the migration";
	default:
		return strerror(err < 0 ? -err : err);
	}
}

static void add_u64(json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

int vmfs_precopy_stats_json(struct vmfs_precopy *m, char **json)
{
	json_object *o = json_object_new_object(), *a, *d, *r;
	struct mig_stats *st = &m->st;
	uint64_t now = now_mono_ms(), end;
	int rc = 0;

	*json = NULL;
	if (!o)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	end = st->end_ms ? st->end_ms : now;
	json_object_object_add(o, "role", json_object_new_string(
		m->role == VMFS_PRECOPY_SOURCE ? "source" : "destination"));
	json_object_object_add(o, "status",
			       json_object_new_string(vmfs_precopy_status_name(st->status)));
	add_u64(o, "total_time_ms", st->start_ms ? end - st->start_ms : 0);
	add_u64(o, "setup_time_ms",
		st->setup_done_ms ? st->setup_done_ms - st->start_ms : 0);
	add_u64(o, "expected_downtime_ms", st->expected_downtime_ms);
	add_u64(o, "downtime_ms", st->downtime_ms);
	add_u64(o, "transferred_bytes", st->transferred);
	add_u64(o, "remaining_bytes", st->remaining);
	add_u64(o, "zero_pages", st->zero_pages);
	add_u64(o, "normal_pages", st->normal_pages);
	add_u64(o, "normal_bytes", st->normal_pages * VMFS_PRECOPY_PAGE_SIZE);
	add_u64(o, "dirty_rate_bytes_per_s", st->dirty_rate);
	add_u64(o, "throughput_bytes_per_s", st->bandwidth);
	add_u64(o, "throughput_mbps", st->bandwidth * 8 / 1000000);
	add_u64(o, "throttle_percent", st->throttle);
	add_u64(o, "rounds", m->role == VMFS_PRECOPY_SOURCE ? st->nrounds : st->peer_round);
	add_u64(o, "connections", st->connections ? st->connections : 1);
	add_u64(o, "protocol", st->proto);
	if (st->guard[0])
		json_object_object_add(o, "guard", json_object_new_string(st->guard));
	if (m->error[0])
		json_object_object_add(o, "error", json_object_new_string(m->error));
	d = json_object_new_object();
	add_u64(d, "final_pages_ms", st->final_pages_ms);
	add_u64(d, "device_state_ms", st->device_state_ms);
	add_u64(d, "handoff_ms", st->handoff_ms);
	/* not downtime: the VM was still running (ops.pre_switchover) */
	add_u64(o, "pre_switchover_us", st->pre_switchover_us);
	add_u64(d, "resume_ms", st->resume_ms);
	add_u64(d, "peer_load_ms", st->peer_load_ms);
	add_u64(d, "peer_resume_ms", st->peer_resume_ms);
	json_object_object_add(o, "downtime_breakdown", d);
	a = json_object_new_array();
	for (unsigned i = 0; i < st->nrounds; i++) {
		r = json_object_new_object();
		add_u64(r, "round", st->rounds[i].round);
		add_u64(r, "pages", st->rounds[i].pages);
		add_u64(r, "zero_pages", st->rounds[i].zero_pages);
		add_u64(r, "bytes", st->rounds[i].bytes);
		add_u64(r, "ms", st->rounds[i].ms);
		add_u64(r, "dirty_pages_after", st->rounds[i].dirty_after);
		json_object_array_add(a, r);
	}
	json_object_object_add(o, "per_round", a);
	/* Samples as [t_ms, Mbit/s] pairs, ready to plot. */
	a = json_object_new_array();
	for (unsigned i = 0; i < st->nsamples; i++) {
		const struct mig_sample *s = &st->samples[i];
		json_object *pt = json_object_new_array();
		uint64_t iv = s->interval_ms ? s->interval_ms : 1;

		json_object_array_add(pt, json_object_new_int64((int64_t)s->t_ms));
		json_object_array_add(pt, json_object_new_double(
			(double)s->bytes * 8.0 / 1000.0 / (double)iv));
		json_object_array_add(a, pt);
	}
	json_object_object_add(o, "throughput_samples_mbps", a);
	pthread_mutex_unlock(&m->lock);
	*json = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	if (!*json)
		rc = -ENOMEM;
	json_object_put(o);
	return rc;
}
