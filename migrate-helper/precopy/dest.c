/* dest.c — the receiving half: handshake, pre-flight, pages into guest RAM,
 * state load, resume on GO, the acknowledgement.  Anything else discards. */
#include "config.h"
#include "engine.h"

#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "io.h"

#define PAGE VMFS_PRECOPY_PAGE_SIZE
#define STATE_MAX (64u << 20)

/* Timeouts on a peer socket; and no Nagle: the answers (SYNC_ACK, READY,
 * RESUMED) are small frames the source waits for, which Nagle would hold
 * back while an earlier small frame is unacknowledged (not a TCP socket,
 * a socketpair in tests, is fine too). */
static int set_sock_opts(int fd, const struct timeval *tv)
{
	int one = 1;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, sizeof(*tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, tv, sizeof(*tv)))
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

static void refuse(struct vmfs_precopy *m, const char *reason)
{
	uint8_t p[4 + MIG_REASON_MAX];
	size_t n = strlen(reason);
	int rc;

	if (n > MIG_REASON_MAX)
		n = MIG_REASON_MAX;
	put_le32(p, 1);
	memcpy(p + 4, reason, n);
	rc = mig_ctl_send(m, MIG_SETUP_ACK, p, 4 + n);
	(void)rc;	/* the refusal is already the outcome */
}

/* The source's SETUP must describe exactly our regions.  *lanes: how many
 * connections to grant. */
static int check_setup(struct vmfs_precopy *m, const char *txt, size_t len,
		       unsigned *lanes)
{
	char reason[MIG_REASON_MAX] = "";
	json_object *o, *regs, *v;
	struct json_tokener *tok;
	int rc = 0;

	tok = json_tokener_new();
	o = tok ? json_tokener_parse_ex(tok, txt, (int)len) : NULL;
	json_tokener_free(tok);
	if (!o || !json_object_object_get_ex(o, "regions", &regs) ||
	    !json_object_is_type(regs, json_type_array) ||
	    !json_object_object_get_ex(o, "page_size", &v) ||
	    json_object_get_int(v) != (int)PAGE) {
		rc = VMFS_PRECOPY_EPROTO;
		goto out;
	}
	*lanes = 1;
	if (json_object_object_get_ex(o, "connections", &v)) {
		int n = json_object_get_int(v);

		if (!json_object_is_type(v, json_type_int) || n < 1 ||
		    n > (int)MIG_MAX_LANES || m->proto < 2) {
			rc = VMFS_PRECOPY_EPROTO;
			goto out;
		}
		if (m->ops.open_connection)
			*lanes = (unsigned)n;
	}
	if (json_object_array_length(regs) != m->nregions) {
		snprintf(reason, sizeof(reason), "source has %zu RAM regions, we have %u",
			 json_object_array_length(regs), m->nregions);
		goto out;
	}
	for (unsigned i = 0; i < m->nregions; i++) {
		json_object *r = json_object_array_get_idx(regs, i), *g, *s;

		if (!json_object_object_get_ex(r, "gpa", &g) ||
		    !json_object_object_get_ex(r, "size", &s)) {
			rc = VMFS_PRECOPY_EPROTO;
			goto out;
		}
		if ((uint64_t)json_object_get_int64(g) != m->regions[i].gpa ||
		    (uint64_t)json_object_get_int64(s) != m->regions[i].size) {
			snprintf(reason, sizeof(reason),
				 "RAM region %u differs: source %lld bytes at %#llx, "
				 "here %llu bytes at %#llx", i,
				 (long long)json_object_get_int64(s),
				 (long long)json_object_get_int64(g),
				 (unsigned long long)m->regions[i].size,
				 (unsigned long long)m->regions[i].gpa);
			goto out;
		}
	}
	if (m->ops.preflight) {
		json_object *vm = NULL;
		const char *vtxt = "{}";

		if (json_object_object_get_ex(o, "vm", &vm) && vm)
			vtxt = json_object_to_json_string_ext(vm, JSON_C_TO_STRING_PLAIN);
		if (m->ops.preflight(m->opaque, vtxt, reason, sizeof(reason)) &&
		    !reason[0])
			snprintf(reason, sizeof(reason), "refused by the hypervisor");
	}
out:
	json_object_put(o);
	if (!rc && reason[0]) {
		refuse(m, reason);
		mig_fail(m, VMFS_PRECOPY_EREFUSED, "pre-flight: %s", reason);
		rc = VMFS_PRECOPY_EREFUSED;
	}
	return rc;
}

static int handshake(struct vmfs_precopy *m, unsigned *lanes)
{
	uint8_t ack[4 + 2 * MIG_NONCE_LEN], grant[8];
	const uint8_t *p = m->buf + MIG_HDR_LEN;
	unsigned vmin, vmax;
	struct mig_hdr h;
	int rc;

	rc = mig_ctl_recv(m, &h);
	if (rc)
		return rc;
	if (h.type != MIG_HELLO || h.length != 8 + MIG_NONCE_LEN)
		return VMFS_PRECOPY_EPROTO;
	/* The newest version both sides speak. */
	vmin = get_le32(p);
	vmax = get_le32(p + 4);
	if (vmax > m->proto_max)
		vmax = m->proto_max;
	if (vmin > vmax || vmax < MIG_PROTO_MIN)
		return VMFS_PRECOPY_EVERSION;
	m->proto = vmax;
	if (m->proto < 2) {
		/* See set_v1_buffers() in source.c: little in flight. */
		int rcvbuf = MIG_SOCK_BUF;

		(void)setsockopt(m->rx.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	}
	put_le32(ack, m->proto);
	if (getrandom(ack + 4, MIG_NONCE_LEN, 0) != MIG_NONCE_LEN)
		return -EIO;
	memcpy(ack + 4 + MIG_NONCE_LEN, p + 8, MIG_NONCE_LEN);
	rc = mig_ctl_send(m, MIG_HELLO_ACK, ack, sizeof(ack));
	if (rc)
		return rc;
	memcpy(m->nonce_src, ack + 4 + MIG_NONCE_LEN, MIG_NONCE_LEN);
	memcpy(m->nonce_dst, ack + 4, MIG_NONCE_LEN);
	mig_derive_keys(m->psk, m->p.psk_len, m->nonce_src, m->nonce_dst, 0,
			m->rx.key, m->tx.key);
	m->tx.keyed = m->rx.keyed = true;
	/* SETUP is the first frame under the session key: it proves the
	 * source holds the psk and saw our fresh nonce. */
	rc = mig_ctl_recv(m, &h);
	if (rc)
		return rc;
	if (h.type != MIG_SETUP)
		return VMFS_PRECOPY_EPROTO;
	rc = check_setup(m, (const char *)p, h.length, lanes);
	if (rc)
		return rc;
	put_le32(grant, 0);
	put_le32(grant + 4, *lanes);
	return mig_ctl_send(m, MIG_SETUP_ACK, grant, m->proto >= 2 ? 8 : 4);
}

/* PAGES, or PAGE_RUNS from protocol 3 on (a peer that negotiated less
 * never sends them). */
static int apply_pages(struct vmfs_precopy *m, const struct mig_lane *l,
		       const struct mig_hdr *h, const uint64_t *region_pages)
{
	struct mig_page_entry ents[MIG_BATCH_PAGES];
	const uint8_t *data;
	unsigned n, zeros = 0;
	int rc;

	if (h->type == MIG_PAGE_RUNS && m->proto < 3)
		return VMFS_PRECOPY_EPROTO;
	rc = (h->type == MIG_PAGE_RUNS ? mig_page_runs_decode : mig_pages_decode)(
		l->buf + MIG_HDR_LEN, h->length, m->nregions, region_pages, ents, &n, &data);
	if (rc)
		return rc;
	/* A page on the wrong connection could overtake a newer copy of
	 * itself: the source never does that, so refuse it. */
	if (m->nlanes > 1) {
		for (unsigned i = 0; i < n; i++)
			if (ents[i].index / MIG_STRIPE_PAGES % m->nlanes != l->index)
				return VMFS_PRECOPY_EPROTO;
	}
	for (unsigned i = 0; i < n; i++) {
		uint8_t *dst = m->regions[ents[i].region].host + ents[i].index * PAGE;

		if (ents[i].flags & MIG_PAGE_ZERO) {
			/* Only touch the page if it is not zero already, so an
			 * untouched destination page stays unallocated. */
			const uint64_t *w = (const uint64_t *)(void *)dst;

			for (unsigned k = 0; k < PAGE / 8; k++) {
				if (w[k]) {
					memset(dst, 0, PAGE);
					break;
				}
			}
			zeros++;
		} else {
			memcpy(dst, data, PAGE);
			data += PAGE;
		}
	}
	pthread_mutex_lock(&m->lock);
	m->st.zero_pages += zeros;
	m->st.normal_pages += n - zeros;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

struct lane_ctx {
	struct mig_lane *l;
	const uint64_t *rpages;
};

/* Lanes >= 1: PAGES and SYNC until LANE_END. */
static int lane_loop(struct mig_lane *l, const uint64_t *rpages)
{
	struct vmfs_precopy *m = l->m;
	struct mig_hdr h;
	int rc;

	for (;;) {
		uint64_t before = l->rx->bytes;

		rc = mig_recv(l->rx, m->psk, m->p.psk_len, l->buf, &h);
		if (rc)
			return mig_io_error(m, rc);
		mig_account(m, l->rx->bytes - before);
		switch (h.type) {
		case MIG_PAGES:
		case MIG_PAGE_RUNS:
			rc = apply_pages(m, l, &h, rpages);
			break;
		case MIG_SYNC:
			if (h.length != 4) {
				rc = VMFS_PRECOPY_EPROTO;
				break;
			}
			rc = mig_send(l->tx, m->psk, m->p.psk_len, MIG_SYNC_ACK,
				      l->buf + MIG_HDR_LEN, 4);
			if (rc)
				rc = mig_io_error(m, rc);
			break;
		case MIG_LANE_END:
			return h.length ? VMFS_PRECOPY_EPROTO : 0;
		default:
			rc = VMFS_PRECOPY_EPROTO;
			break;
		}
		if (rc)
			return rc;
	}
}

static void *lane_thread(void *arg)
{
	struct lane_ctx *c = arg;
	struct mig_lane *l = c->l;
	int rc = lane_loop(l, c->rpages);

	l->rc = rc;
	if (rc && !atomic_load(&l->m->cancel)) {
		mig_fail(l->m, rc, "connection %u", l->index);
		/* Wake the run thread, which then fails the migration. */
		mig_lanes_shutdown(l->m, true);
	}
	return NULL;
}

/* Accept lanes 1..n-1 (in any order: JOIN says which is which) and start
 * a thread on each. */
static int open_lanes(struct vmfs_precopy *m, unsigned n, struct lane_ctx *ctx,
		      const uint64_t *rpages)
{
	struct timeval tv = { .tv_sec = m->p.io_timeout_ms / 1000,
			      .tv_usec = (m->p.io_timeout_ms % 1000) * 1000 };
	uint8_t *buf = m->buf;

	for (unsigned k = 1; k < n; k++) {
		struct mig_lane *l;
		struct mig_chan rx = { 0 };
		struct mig_hdr h;
		unsigned i;
		int fd, rc;

		fd = m->ops.open_connection(m->opaque, k);
		if (fd < 0) {
			mig_fail(m, fd, "accepting connection %u of %u", k + 1, n);
			return fd;
		}
		rc = set_sock_opts(fd, &tv);
		if (rc) {
			close(fd);
			return rc;
		}
		/* JOIN names its lane, but only that lane's keys verify it. */
		rc = mig_recv_raw(fd, buf, &h);
		if (rc) {
			close(fd);
			return mig_io_error(m, rc);
		}
		i = h.length == 4 ? get_le32(buf + MIG_HDR_LEN) : 0;
		if (h.type != MIG_JOIN || i < 1 || i >= n || m->lanes[i].m) {
			close(fd);
			return VMFS_PRECOPY_EPROTO;
		}
		rx.fd = fd;
		rx.keyed = true;
		mig_derive_keys(m->psk, m->p.psk_len, m->nonce_src, m->nonce_dst, i,
				rx.key, m->lanes[i].own_tx.key);
		rc = mig_recv_verify(&rx, m->psk, m->p.psk_len, buf, &h);
		if (rc) {
			close(fd);
			return rc;
		}
		l = &m->lanes[i];
		l->m = m;
		l->index = i;
		pthread_mutex_lock(&m->lock);
		atomic_store(&m->lane_fd[i], fd);
		pthread_mutex_unlock(&m->lock);
		rc = mig_lane_alloc(l, false);
		if (rc)
			return rc;
		*l->rx = rx;
		l->tx->fd = fd;
		l->tx->keyed = true;
		mig_account(m, MIG_HDR_LEN + 4 + MIG_TAG_LEN);
	}
	/* Stripes are assigned by lane count: only now is it final. */
	m->nlanes = n;
	pthread_mutex_lock(&m->lock);
	m->st.proto = m->proto;
	m->st.connections = n;
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 1; i < n; i++) {
		struct mig_lane *l = &m->lanes[i];
		int rc;

		ctx[i] = (struct lane_ctx){ .l = l, .rpages = rpages };
		rc = pthread_create(&l->thread, NULL, lane_thread, &ctx[i]);
		if (rc)
			return -rc;
		l->thread_running = true;
	}
	return 0;
}

/* Before the state is loaded: every lane delivered all its pages. */
static int join_lanes(struct vmfs_precopy *m)
{
	int rc = 0;

	for (unsigned i = 1; i < m->nlanes; i++) {
		struct mig_lane *l = &m->lanes[i];

		if (l->thread_running) {
			pthread_join(l->thread, NULL);
			l->thread_running = false;
		}
		if (l->rc && !rc)
			rc = l->rc;
	}
	return rc;
}

int mig_dest_run(struct vmfs_precopy *m)
{
	struct lane_ctx ctx[MIG_MAX_LANES];
	unsigned lanes = 1;
	uint8_t *state = NULL;
	uint64_t *rpages = NULL;
	size_t state_len = 0;
	bool ready = false;
	uint64_t t_load = 0;
	struct mig_hdr h;
	struct timeval tv = { .tv_sec = m->p.io_timeout_ms / 1000,
			      .tv_usec = (m->p.io_timeout_ms % 1000) * 1000 };
	int rc;

	mig_set_status(m, VMFS_PRECOPY_SETUP);
	rpages = calloc(m->nregions, sizeof(*rpages));
	if (!rpages) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < m->nregions; i++)
		rpages[i] = m->regions[i].pages;
	rc = set_sock_opts(m->rx.fd, &tv);
	if (rc)
		goto out;
	rc = handshake(m, &lanes);
	if (rc)
		goto out;
	rc = open_lanes(m, lanes, ctx, rpages);
	if (rc)
		goto out;
	pthread_mutex_lock(&m->lock);
	m->st.setup_done_ms = now_mono_ms();
	pthread_mutex_unlock(&m->lock);
	mig_set_status(m, VMFS_PRECOPY_ACTIVE);
	for (;;) {
		rc = mig_ctl_recv(m, &h);
		if (rc)
			goto out;
		switch (h.type) {
		case MIG_PAGES:
		case MIG_PAGE_RUNS:
			rc = ready ? VMFS_PRECOPY_EPROTO :
			     apply_pages(m, &m->lanes[0], &h, rpages);
			break;
		case MIG_SYNC:
			if (h.length != 4 || ready || m->proto < 2) {
				rc = VMFS_PRECOPY_EPROTO;
				break;
			}
			rc = mig_ctl_send(m, MIG_SYNC_ACK, m->buf + MIG_HDR_LEN, 4);
			break;
		case MIG_ROUND:
			if (h.length != 4 || ready) {
				rc = VMFS_PRECOPY_EPROTO;
				break;
			}
			pthread_mutex_lock(&m->lock);
			m->st.peer_round = get_le32(m->buf + MIG_HDR_LEN);
			pthread_mutex_unlock(&m->lock);
			break;
		case MIG_STATE: {
			uint8_t *n;

			if (ready || state_len + h.length > STATE_MAX) {
				rc = VMFS_PRECOPY_EPROTO;
				break;
			}
			n = realloc(state, state_len + h.length + 1);
			if (!n) {
				rc = -ENOMEM;
				break;
			}
			state = n;
			memcpy(state + state_len, m->buf + MIG_HDR_LEN, h.length);
			state_len += h.length;
			mig_set_status(m, VMFS_PRECOPY_DEVICE);
			break;
		}
		case MIG_DONE:
			if (ready || !state) {
				rc = VMFS_PRECOPY_EPROTO;
				break;
			}
			rc = join_lanes(m);
			if (rc)
				break;
			t_load = now_mono_ms();
			rc = m->ops.load_state(m->opaque, state, state_len);
			if (rc) {
				const char *why = "loading the vCPU/device state failed";

				mig_fail(m, rc, "load state");
				rc = mig_ctl_send(m, MIG_ABORT, why, strlen(why));
				rc = VMFS_PRECOPY_EREFUSED;
				break;
			}
			t_load = now_mono_ms() - t_load;
			ready = true;
			rc = mig_ctl_send(m, MIG_READY, NULL, 0);
			break;
		case MIG_GO: {
			uint8_t ack[8];
			uint64_t t0 = now_mono_ms();

			if (!ready || h.length) {
				rc = VMFS_PRECOPY_EPROTO;
				break;
			}
			rc = m->ops.resume(m->opaque);
			if (rc) {
				mig_fail(m, rc, "resume");
				break;
			}
			put_le32(ack, (uint32_t)t_load);
			put_le32(ack + 4, (uint32_t)(now_mono_ms() - t0));
			/* The VM runs here now whatever happens to the ack
			 * (see "Known window" in engine.c). */
			rc = mig_ctl_send(m, MIG_RESUMED, ack, sizeof(ack));
			if (rc)
				mig_fail(m, rc, "sending the resume acknowledgement");
			pthread_mutex_lock(&m->lock);
			m->st.peer_load_ms = (uint32_t)t_load;
			m->st.resume_ms = now_mono_ms() - t0;
			pthread_mutex_unlock(&m->lock);
			rc = 0;
			goto out;
		}
		case MIG_ABORT: {
			size_t n = h.length < MIG_REASON_MAX ? h.length : MIG_REASON_MAX;

			mig_fail(m, VMFS_PRECOPY_EPEER, "source: %.*s", (int)n,
				 (const char *)m->buf + MIG_HDR_LEN);
			rc = VMFS_PRECOPY_EPEER;
			break;
		}
		default:
			rc = VMFS_PRECOPY_EPROTO;
			break;
		}
		if (rc)
			goto out;
	}
out:
	if (rc)
		mig_lanes_shutdown(m, false);
	{
		int lrc = mig_lanes_close(m);

		/* A lane that failed first shut lane 0 down: report its error,
		 * not the consequence. */
		if (lrc && rc && (rc > VMFS_PRECOPY_EBADMAGIC || rc < VMFS_PRECOPY_EPEER))
			rc = lrc;
	}
	free(state);
	free(rpages);
	if (rc) {
		/* Tell the source why, unless the link itself failed or the
		 * source is the one who gave up.  Without a shared key the
		 * source cannot verify this and reports an authentication
		 * failure, which is the right message there too. */
		if (rc <= VMFS_PRECOPY_EBADMAGIC && rc >= VMFS_PRECOPY_EPEER &&
		    rc != VMFS_PRECOPY_EPEER && rc != VMFS_PRECOPY_EREFUSED) {
			const char *why = vmfs_precopy_strerror(rc);
			int src = mig_ctl_send(m, MIG_ABORT, why, strlen(why));

			(void)src;
		}
		mig_fail(m, rc, "incoming migration");
		pthread_mutex_lock(&m->lock);
		m->st.status = rc == -ECANCELED ? VMFS_PRECOPY_CANCELLED : VMFS_PRECOPY_FAILED;
		pthread_mutex_unlock(&m->lock);
	} else {
		mig_set_status(m, VMFS_PRECOPY_COMPLETED);
	}
	return rc;
}
