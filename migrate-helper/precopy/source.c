/* source.c — the sending half: handshake, pre-copy rounds, convergence,
 * switchover and rollback.  See the state table in engine.c. */
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
#include <sys/uio.h>
#include <time.h>

#include "io.h"

#define PAGE VMFS_PRECOPY_PAGE_SIZE

/* Switchover bookkeeping of one run. */
struct src_run {
	unsigned round;
	bool paused;
	bool prepared;		/* ops.pre_switchover was called */
	bool handed_off;	/* switchover hook succeeded */
	uint64_t round_bytes_total, round_ms_total;	/* for the bandwidth */
	uint64_t last_sync_ms;
};

static int set_timeouts(int fd, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	int one = 1;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return -errno;
	/* Control frames are small and answered at once; not a TCP socket
	 * (a socketpair in tests) is fine too. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* SO_SNDTIMEO bounds each send() call, and a send that moved part of
	 * a frame starts the clock again: after a link cut the source waited
	 * the buffer fill plus twice the timeout (~24 s for 10 s).  The kernel
	 * drops a connection whose data stays unacknowledged this long. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
	return 0;
}

/* Protocol 1 has no round barrier: keep little in flight, since what sits
 * in socket buffers is not yet on the destination, is not counted by the
 * bandwidth estimate and would all have to drain while the VM is paused.
 * From protocol 2 on each round ends with SYNC, so the kernel's buffer
 * autotuning is left alone: large buffers let it send while this thread
 * checksums and signs the next frame (the two used to take turns). */
static void set_v1_buffers(int fd)
{
	int sndbuf = MIG_SOCK_BUF;

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
}

static int recv_expect(struct vmfs_precopy *m, uint16_t type, struct mig_hdr *h)
{
	int rc = mig_ctl_recv(m, h);

	if (rc)
		return rc;
	if (h->type == MIG_ABORT) {
		size_t n = h->length < MIG_REASON_MAX ? h->length : MIG_REASON_MAX;

		mig_fail(m, VMFS_PRECOPY_EPEER, "destination: %.*s", (int)n,
			 (const char *)m->buf + MIG_HDR_LEN);
		return VMFS_PRECOPY_EPEER;
	}
	if (h->type != type)
		return VMFS_PRECOPY_EPROTO;
	return 0;
}

/* Lanes 1..n-1: connect, key, JOIN. */
static int open_lanes(struct vmfs_precopy *m, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		struct mig_lane *l = &m->lanes[i];
		uint8_t join[4];
		int fd, rc;

		l->m = m;
		l->index = i;
		rc = mig_lane_alloc(l, true);
		if (rc)
			return rc;
		fd = m->ops.open_connection(m->opaque, i);
		if (fd < 0) {
			mig_fail(m, fd, "opening connection %u", i);
			return fd;
		}
		pthread_mutex_lock(&m->lock);
		atomic_store(&m->lane_fd[i], fd);
		pthread_mutex_unlock(&m->lock);
		m->nlanes = i + 1;	/* from here on mig_lanes_close closes it */
		if (atomic_load(&m->cancel))
			return -ECANCELED;
		rc = set_timeouts(fd, m->p.io_timeout_ms);
		if (rc)
			return rc;
		l->tx->fd = l->rx->fd = fd;
		mig_derive_keys(m->psk, m->p.psk_len, m->nonce_src, m->nonce_dst, i,
				l->tx->key, l->rx->key);
		l->tx->keyed = l->rx->keyed = true;
		put_le32(join, i);
		rc = mig_send(l->tx, m->psk, m->p.psk_len, MIG_JOIN, join, sizeof(join));
		if (rc)
			return mig_io_error(m, rc);
		mig_account(m, MIG_HDR_LEN + sizeof(join) + MIG_TAG_LEN);
	}
	return 0;
}

static int handshake(struct vmfs_precopy *m)
{
	uint8_t hello[8 + MIG_NONCE_LEN], nonce_d[MIG_NONCE_LEN];
	const uint8_t *p = m->buf + MIG_HDR_LEN;
	unsigned want = m->p.connections ? m->p.connections : 1, granted = 1;
	json_object *o = NULL, *regs;
	struct mig_hdr h;
	int rc;

	if (getrandom(hello + 8, MIG_NONCE_LEN, 0) != MIG_NONCE_LEN)
		return -EIO;
	put_le32(hello, MIG_PROTO_MIN);
	put_le32(hello + 4, m->proto_max);
	rc = mig_ctl_send(m, MIG_HELLO, hello, sizeof(hello));
	if (rc)
		goto out;
	rc = recv_expect(m, MIG_HELLO_ACK, &h);
	if (rc)
		goto out;
	/* HELLO_ACK: le32 version, nonce_d, our nonce echoed (binds it to
	 * this connection; it is signed with the psk). */
	if (h.length != 4 + 2 * MIG_NONCE_LEN ||
	    memcmp(p + 4 + MIG_NONCE_LEN, hello + 8, MIG_NONCE_LEN)) {
		rc = VMFS_PRECOPY_EPROTO;
		goto out;
	}
	if (get_le32(p) < MIG_PROTO_MIN || get_le32(p) > m->proto_max) {
		rc = VMFS_PRECOPY_EVERSION;
		goto out;
	}
	m->proto = get_le32(p);
	if (m->proto < 2) {
		set_v1_buffers(m->tx.fd);
		want = 1;
	}
	if (!m->ops.open_connection)
		want = 1;
	memcpy(nonce_d, p + 4, MIG_NONCE_LEN);
	memcpy(m->nonce_src, hello + 8, MIG_NONCE_LEN);
	memcpy(m->nonce_dst, nonce_d, MIG_NONCE_LEN);
	mig_derive_keys(m->psk, m->p.psk_len, hello + 8, nonce_d, 0, m->tx.key, m->rx.key);
	m->tx.keyed = m->rx.keyed = true;

	o = json_object_new_object();
	regs = json_object_new_array();
	for (unsigned i = 0; i < m->nregions; i++) {
		json_object *r = json_object_new_object();

		json_object_object_add(r, "gpa", json_object_new_int64((int64_t)m->regions[i].gpa));
		json_object_object_add(r, "size", json_object_new_int64((int64_t)m->regions[i].size));
		json_object_array_add(regs, r);
	}
	json_object_object_add(o, "page_size", json_object_new_int(PAGE));
	json_object_object_add(o, "regions", regs);
	json_object_object_add(o, "vm", m->vm_info ? json_tokener_parse(m->vm_info) : NULL);
	if (want > 1)
		json_object_object_add(o, "connections", json_object_new_int((int)want));
	{
		const char *txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		size_t len = strlen(txt);

		if (len > 1024) {
			rc = -E2BIG;
			goto out;
		}
		rc = mig_ctl_send(m, MIG_SETUP, txt, len);
		if (rc)
			goto out;
	}
	rc = recv_expect(m, MIG_SETUP_ACK, &h);
	if (rc)
		goto out;
	if (h.length < 4 || h.length > 4 + MIG_REASON_MAX) {
		rc = VMFS_PRECOPY_EPROTO;
		goto out;
	}
	if (get_le32(p) != 0) {
		mig_fail(m, VMFS_PRECOPY_EREFUSED, "pre-flight: %.*s",
			 (int)(h.length - 4), (const char *)p + 4);
		rc = VMFS_PRECOPY_EREFUSED;
		goto out;
	}
	/* v2 grants connections: le32 0, le32 n (1 <= n <= what we asked). */
	if (m->proto >= 2) {
		if (h.length != 8 || get_le32(p + 4) < 1 || get_le32(p + 4) > want) {
			rc = VMFS_PRECOPY_EPROTO;
			goto out;
		}
		granted = get_le32(p + 4);
	}
	pthread_mutex_lock(&m->lock);
	m->st.proto = m->proto;
	m->st.connections = granted;
	pthread_mutex_unlock(&m->lock);
	rc = open_lanes(m, granted);
out:
	json_object_put(o);
	return rc;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;

	for (unsigned i = 0; i < PAGE / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* Sleep so the active phase stays under max_bandwidth (all lanes
 * together); wakes for cancel. */
static void cap_bandwidth(struct vmfs_precopy *m)
{
	uint64_t due, now, max = m->p.max_bandwidth;

	if (!max)
		return;
	due = m->active_start_ms + atomic_load(&m->active_bytes) * 1000 / max;
	while ((now = now_mono_ms()) < due && !atomic_load(&m->cancel)) {
		uint64_t ms = due - now > 50 ? 50 : due - now;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)ms * 1000000 };

		nanosleep(&ts, NULL);
	}
}

/* Count a frame that went out on the lane. */
static void sent_frame(struct mig_lane *l, size_t flen)
{
	l->tx->seq++;
	l->tx->bytes += flen;
	mig_account(l->m, flen);
}

/* Send the frame mig_frame_build() left in the lane's buffer. */
static int send_built(struct mig_lane *l, size_t flen)
{
	int rc = mig_write_full(l->tx->fd, l->buf, flen);

	if (rc)
		return mig_io_error(l->m, rc);
	sent_frame(l, flen);
	return 0;
}

/* A small frame on a lane. */
static int lane_ctl_send(struct mig_lane *l, uint16_t type, const void *p, size_t len)
{
	struct vmfs_precopy *m = l->m;
	uint64_t before = l->tx->bytes;
	int rc = mig_send(l->tx, m->psk, m->p.psk_len, type, p, len);

	if (rc)
		return mig_io_error(m, rc);
	mig_account(m, l->tx->bytes - before);
	return 0;
}

/* Send one page batch of `n` staged entries: PAGE_RUNS from protocol 3
 * on, PAGES before.  The entries are encoded in the lane's buffer behind
 * the header and the pages stay in the stage buffer: the frame is sealed
 * over both and sent in pieces (one sendmsg), so the pages are not copied
 * a second time. */
static int flush_batch(struct mig_lane *l, const struct mig_page_entry *ents,
		       unsigned n, unsigned normal, struct mig_round *r)
{
	struct vmfs_precopy *m = l->m;
	uint8_t *payload = l->buf + MIG_HDR_LEN, *tag;
	size_t elen, dlen = (size_t)normal * PAGE, flen;
	uint16_t type = m->proto >= 3 ? MIG_PAGE_RUNS : MIG_PAGES;
	struct iovec iov[3];
	int rc;

	if (!n)
		return 0;
	if (type == MIG_PAGE_RUNS) {
		elen = mig_page_runs_encode(payload, ents, n);
	} else {
		elen = 8 + (size_t)n * MIG_PAGE_ENTRY_LEN;
		put_le32(payload, n);
		put_le32(payload + 4, 0);
		for (unsigned i = 0; i < n; i++) {
			uint8_t *e = payload + 8 + (size_t)i * MIG_PAGE_ENTRY_LEN;

			put_le32(e, ents[i].region);
			put_le32(e + 4, ents[i].flags);
			put_le64(e + 8, ents[i].index);
		}
	}
	tag = payload + elen;
	mig_frame_seal(l->buf, tag, l->tx->key, sizeof(l->tx->key), type, l->tx->seq,
		       payload, elen, l->stage, dlen);
	iov[0] = (struct iovec){ .iov_base = l->buf, .iov_len = MIG_HDR_LEN + elen };
	iov[1] = (struct iovec){ .iov_base = l->stage, .iov_len = dlen };
	iov[2] = (struct iovec){ .iov_base = tag, .iov_len = MIG_TAG_LEN };
	flen = MIG_HDR_LEN + elen + dlen + MIG_TAG_LEN;
	rc = mig_writev_full(l->tx->fd, iov, 3);
	if (rc)
		return mig_io_error(m, rc);
	sent_frame(l, flen);
	r->bytes += flen;
	atomic_fetch_add(&m->active_bytes, flen);
	cap_bandwidth(m);
	return 0;
}

/* Send every page of this lane's stripes whose bit is set, clearing the
 * bits.  Stripes are whole bitmap words, so lanes never share a word.
 * The page is copied into the stage buffer first so checksum and tag
 * match what is sent even if the guest writes it meanwhile (that write
 * re-dirties it). */
static int lane_send_dirty(struct mig_lane *l, struct mig_round *r)
{
	struct vmfs_precopy *m = l->m;
	struct mig_page_entry ents[MIG_BATCH_PAGES];
	const uint64_t sw = MIG_STRIPE_PAGES / 64;	/* words per stripe */
	unsigned n = 0, normal = 0;
	int rc = 0;

	for (unsigned ri = 0; ri < m->nregions; ri++) {
		struct mig_region *reg = &m->regions[ri];
		uint64_t words = (reg->pages + 63) / 64;

		for (uint64_t s0 = (uint64_t)l->index * sw; s0 < words;
		     s0 += (uint64_t)m->nlanes * sw) {
			for (uint64_t w = s0; w < s0 + sw && w < words; w++) {
				while (reg->dirty[w]) {
					unsigned b = (unsigned)__builtin_ctzll(reg->dirty[w]);
					uint64_t idx = w * 64 + b;
					uint8_t *st = l->stage + (size_t)normal * PAGE;

					reg->dirty[w] &= reg->dirty[w] - 1;
					if (idx >= reg->pages)
						break;
					ents[n].region = ri;
					ents[n].index = idx;
					memcpy(st, reg->host + idx * PAGE, PAGE);
					if (page_is_zero(st)) {
						ents[n].flags = MIG_PAGE_ZERO;
						r->zero_pages++;
					} else {
						ents[n].flags = 0;
						normal++;
					}
					r->pages++;
					if (++n == MIG_BATCH_PAGES) {
						rc = flush_batch(l, ents, n, normal, r);
						if (rc)
							return rc;
						n = normal = 0;
					}
				}
			}
			if (atomic_load(&m->cancel))
				return -ECANCELED;
		}
	}
	return flush_batch(l, ents, n, normal, r);
}

/* The round barrier (v2): SYNC at the end of a round; the destination
 * answers once it has applied everything this lane sent before it.  The
 * answer is not waited for at once: the next round goes out behind the
 * SYNC and its SYNC_ACK is read at the end of that round (it arrived long
 * before), so the link does not idle at every round boundary for the
 * pipeline to drain, the destination to apply the last batch and the ack
 * to come back (a few ms each, ~10 ms on a loaded host; at 50 MiB/s
 * dirty every idle ms costs ~1.7 ms, the pages dirtied meanwhile being
 * sent again).  Only the switchover decision waits for it: see drain(). */
static int lane_sync_send(struct mig_lane *l, unsigned round)
{
	uint8_t rp[4];
	int rc;

	put_le32(rp, round);
	rc = lane_ctl_send(l, MIG_SYNC, rp, sizeof(rp));
	if (rc)
		return rc;
	l->sync_pending = true;
	l->sync_round = round;
	return 0;
}

/* Read the SYNC_ACK of the lane's pending SYNC (waiting for it). */
static int lane_sync_wait(struct mig_lane *l)
{
	struct vmfs_precopy *m = l->m;
	uint64_t before = l->rx->bytes;
	unsigned round = l->sync_round;
	struct mig_hdr h;
	int rc;

	l->sync_pending = false;
	rc = mig_recv(l->rx, m->psk, m->p.psk_len, l->buf, &h);
	if (rc)
		return mig_io_error(m, rc);
	mig_account(m, l->rx->bytes - before);
	if (h.type == MIG_ABORT) {
		size_t n = h.length < MIG_REASON_MAX ? h.length : MIG_REASON_MAX;

		mig_fail(m, VMFS_PRECOPY_EPEER, "destination: %.*s", (int)n,
			 (const char *)l->buf + MIG_HDR_LEN);
		return VMFS_PRECOPY_EPEER;
	}
	if (h.type != MIG_SYNC_ACK || h.length != 4 ||
	    get_le32(l->buf + MIG_HDR_LEN) != round)
		return VMFS_PRECOPY_EPROTO;
	return 0;
}

enum lane_end { LANE_SYNC, LANE_NOSYNC, LANE_LAST };

struct lane_job {
	struct mig_lane *l;
	unsigned round;
	enum lane_end end;
};

/* One lane's share of a round: its pages, the answer to the previous
 * round's barrier, then this round's barrier or, in the final round,
 * LANE_END (lanes >= 1; lane 0 goes on with STATE). */
static int lane_round(struct mig_lane *l, unsigned round, enum lane_end end)
{
	int rc;

	memset(&l->r, 0, sizeof(l->r));
	rc = lane_send_dirty(l, &l->r);
	if (!rc && l->sync_pending)
		rc = lane_sync_wait(l);
	if (!rc && end == LANE_SYNC)
		rc = lane_sync_send(l, round);
	if (!rc && end == LANE_LAST && l->index)
		rc = lane_ctl_send(l, MIG_LANE_END, NULL, 0);
	/* Record which connection failed first (the others then only see
	 * their sockets shut down), and wake them: the round is lost. */
	if (rc && !atomic_load(&l->m->cancel)) {
		mig_fail(l->m, rc, "connection %u", l->index);
		/* Lane 0 stays up when it failed itself: rollback tells the
		 * destination why over it. */
		mig_lanes_shutdown(l->m, l->index != 0);
	}
	return rc;
}

static void *lane_thread(void *arg)
{
	struct lane_job *j = arg;

	j->l->rc = lane_round(j->l, j->round, j->end);
	return NULL;
}

/* Send the dirty pages over all lanes, each lane in a thread of its own
 * (lane 0 in this one), and add their counts to `r`. */
static int send_dirty(struct vmfs_precopy *m, struct src_run *s, struct mig_round *r,
		      enum lane_end end)
{
	struct lane_job jobs[MIG_MAX_LANES];
	int rc, lrc = 0;

	if (m->proto < 2 && end == LANE_SYNC)
		end = LANE_NOSYNC;
	for (unsigned i = 1; i < m->nlanes; i++) {
		struct mig_lane *l = &m->lanes[i];

		jobs[i] = (struct lane_job){ .l = l, .round = s->round, .end = end };
		l->rc = pthread_create(&l->thread, NULL, lane_thread, &jobs[i]);
		if (l->rc) {
			l->rc = -l->rc;
			mig_lanes_shutdown(m, false);
			break;
		}
		l->thread_running = true;
	}
	rc = lane_round(&m->lanes[0], s->round, end);
	for (unsigned i = 0; i < m->nlanes; i++) {
		struct mig_lane *l = &m->lanes[i];

		if (i && l->thread_running) {
			pthread_join(l->thread, NULL);
			l->thread_running = false;
		}
		if (i && l->rc && !lrc)
			lrc = l->rc;
		r->pages += l->r.pages;
		r->zero_pages += l->r.zero_pages;
		r->bytes += l->r.bytes;
	}
	/* Lane 0's error first: it is the one that can carry the peer's
	 * reason; the other lanes then only saw their socket shut down. */
	if (atomic_load(&m->cancel))
		return -ECANCELED;
	return rc ? rc : lrc;
}

/* Wait for the answers to every lane's pending SYNC: from then on all that
 * was sent is applied on the destination (nothing is in flight). */
static int drain(struct vmfs_precopy *m)
{
	for (unsigned i = 0; i < m->nlanes; i++) {
		struct mig_lane *l = &m->lanes[i];
		int rc = l->sync_pending ? lane_sync_wait(l) : 0;

		if (rc) {
			if (!atomic_load(&m->cancel))
				mig_fail(m, rc, "connection %u", i);
			return atomic_load(&m->cancel) ? -ECANCELED : rc;
		}
	}
	return 0;
}

/* Read and clear the dirty log into the to-send bitmaps; count the pages. */
static int sync_dirty(struct vmfs_precopy *m, uint64_t *count)
{
	int rc;

	*count = 0;
	for (unsigned ri = 0; ri < m->nregions; ri++) {
		struct mig_region *reg = &m->regions[ri];

		rc = m->ops.log_sync(m->opaque, ri, reg->dirty);
		if (rc)
			return rc;
		for (uint64_t w = 0; w < (reg->pages + 63) / 64; w++)
			*count += (uint64_t)__builtin_popcountll(reg->dirty[w]);
	}
	return 0;
}

static int do_round(struct vmfs_precopy *m, struct src_run *s, uint64_t *dirty)
{
	struct mig_round r = { .round = s->round };
	uint64_t t0 = now_mono_ms(), now;
	uint8_t rp[4];
	int rc;

	put_le32(rp, s->round);
	rc = mig_ctl_send(m, MIG_ROUND, rp, sizeof(rp));
	if (rc)
		return rc;
	rc = send_dirty(m, s, &r, LANE_SYNC);
	if (rc)
		return rc;
	rc = sync_dirty(m, dirty);
	if (rc)
		return rc;
	now = now_mono_ms();
	r.ms = now - t0;
	r.dirty_after = *dirty;
	s->round_bytes_total += r.bytes;
	s->round_ms_total += r.ms;
	pthread_mutex_lock(&m->lock);
	m->st.zero_pages += r.zero_pages;
	m->st.normal_pages += r.pages - r.zero_pages;
	m->st.remaining = *dirty * PAGE;
	/* Cumulative throughput into the sockets, scanning included.  The
	 * barrier is not waited for (lane_sync_send), so it runs ahead of
	 * delivery by what is in flight (a few MiB): converged() decides on
	 * the delivered rate. */
	m->st.bandwidth = s->round_bytes_total * 1000 /
			  (s->round_ms_total ? s->round_ms_total : 1);
	m->st.dirty_rate = *dirty * PAGE * 1000 /
			   (now > s->last_sync_ms ? now - s->last_sync_ms : 1);
	m->st.expected_downtime_ms = m->st.bandwidth ?
		m->st.remaining * 1000 / m->st.bandwidth : 0;
	pthread_mutex_unlock(&m->lock);
	s->last_sync_ms = now;
	rc = mig_push_round(m, &r);
	mig_progress(m, s->round);
	return rc;
}

static void set_guard(struct vmfs_precopy *m, const char *why)
{
	pthread_mutex_lock(&m->lock);
	snprintf(m->st.guard, sizeof(m->st.guard), "%s", why);
	pthread_mutex_unlock(&m->lock);
}

/* Auto-converge: one more step of throttle (20%, up to 90%); true if the
 * VMM applied it. */
static bool throttle_up(struct vmfs_precopy *m, unsigned *throttle)
{
	if (!m->p.auto_converge || !m->ops.throttle || *throttle >= 90)
		return false;
	*throttle = *throttle + 20 > 90 ? 90 : *throttle + 20;
	if (m->ops.throttle(m->opaque, *throttle))
		return false;
	pthread_mutex_lock(&m->lock);
	m->st.throttle = *throttle;
	pthread_mutex_unlock(&m->lock);
	return true;
}

/* The round looks converged: wait until nothing is in flight (drain), take
 * the dirty log again (what the guest wrote meanwhile is left for the
 * paused round too) and decide on the bandwidth actually delivered, from
 * the first page sent to the last one applied.  True: switch over now. */
static int converged(struct vmfs_precopy *m, struct src_run *s, uint64_t *dirty,
		     bool *yes)
{
	uint64_t now, bw, remaining;
	int rc = drain(m);

	*yes = false;
	if (rc)
		return rc;
	rc = sync_dirty(m, dirty);
	if (rc)
		return rc;
	now = now_mono_ms();
	s->last_sync_ms = now;	/* the next dirty rate counts from here */
	remaining = *dirty * PAGE;
	bw = s->round_bytes_total * 1000 /
	     (now > m->active_start_ms ? now - m->active_start_ms : 1);
	pthread_mutex_lock(&m->lock);
	m->st.remaining = remaining;
	m->st.bandwidth = bw;
	m->st.expected_downtime_ms = bw ? remaining * 1000 / bw : 0;
	pthread_mutex_unlock(&m->lock);
	*yes = remaining <= bw * m->p.downtime_ms / 1000;
	return 0;
}

/* Pre-copy rounds until converged; 0 = switch over now. */
static int precopy(struct vmfs_precopy *m, struct src_run *s)
{
	uint64_t dirty, best = UINT64_MAX, bw, remaining, sent;
	unsigned stalled = 0, throttle = 0, hot = 0;
	bool raised;
	int rc;

	/* Round 1 sends everything: mark every page. */
	for (unsigned ri = 0; ri < m->nregions; ri++) {
		struct mig_region *reg = &m->regions[ri];

		memset(reg->dirty, 0xff, (reg->pages + 63) / 64 * sizeof(uint64_t));
	}
	m->active_start_ms = s->last_sync_ms = now_mono_ms();
	atomic_store(&m->active_bytes, 0);
	for (s->round = 1;; s->round++) {
		sent = s->round_bytes_total;
		rc = do_round(m, s, &dirty);
		if (rc)
			return rc;
		sent = s->round_bytes_total - sent;
		pthread_mutex_lock(&m->lock);
		bw = m->st.bandwidth;
		remaining = m->st.remaining;
		pthread_mutex_unlock(&m->lock);
		if (remaining <= bw * m->p.downtime_ms / 1000) {
			uint64_t now_dirty;
			bool yes;

			/* Not yet: the throttle and no-progress logic below
			 * go on with the round's own figures (the ones taken
			 * after the drain also hold what the guest wrote
			 * while it lasted, and would read as no progress). */
			rc = converged(m, s, &now_dirty, &yes);
			if (rc || yes)
				return rc;
		}
		/* Converging, but slowly: each round leaves dirty / sent of
		 * the one before, so the rounds (and the bytes sent again)
		 * grow as 1 / (1 - ratio).  Like QEMU's auto-converge
		 * (throttle-trigger-threshold 50), throttle when the guest
		 * dirtied more than half of what two rounds running sent.
		 * bench-migrate.sh, 512 MiB at 50 MiB/s on a loaded host: a
		 * ratio of ~0.74 took 18 rounds and 5x the RAM on the wire. */
		hot = dirty * PAGE * 2 > sent ? hot + 1 : 0;
		raised = hot >= 2 && throttle_up(m, &throttle);
		if (raised)
			hot = 0;
		if (remaining < best) {
			best = remaining;
			stalled = 0;
		} else {
			stalled++;
			/* Give the throttle a chance before the no-progress
			 * guard counts (one step per round). */
			if (raised || throttle_up(m, &throttle))
				stalled = 0;
		}
		if (s->round >= m->p.max_rounds)
			set_guard(m, "max_rounds");
		else if (m->p.max_time_ms &&
			 now_mono_ms() - m->active_start_ms >= m->p.max_time_ms)
			set_guard(m, "max_time");
		else if (stalled >= m->p.no_progress_rounds)
			set_guard(m, "no_progress");
		else
			continue;
		if (m->p.force_switchover)
			return drain(m);	/* in flight: not while paused */
		mig_fail(m, VMFS_PRECOPY_ENOCONVERGE, "pre-copy, %s", m->st.guard);
		return VMFS_PRECOPY_ENOCONVERGE;
	}
}

/* VM paused: final pages, state, DONE; wait READY; hook; GO; wait the ack. */
static int switchover(struct vmfs_precopy *m, struct src_run *s)
{
	struct mig_round r = { .round = s->round + 1 };
	uint64_t t0, t1, t2, t3, dirty;
	void *state = NULL;
	size_t state_len = 0;
	struct mig_hdr h;
	int rc;

	if (m->ops.pre_switchover) {
		/* The VM still runs: its time is not downtime. */
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		s->prepared = true;
		rc = m->ops.pre_switchover(m->opaque);
		clock_gettime(CLOCK_MONOTONIC, &b);
		pthread_mutex_lock(&m->lock);
		m->st.pre_switchover_us = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000 +
					  (uint64_t)(b.tv_nsec - a.tv_nsec) / 1000;
		pthread_mutex_unlock(&m->lock);
		if (rc) {
			mig_fail(m, rc, "pre-switchover");
			goto out;
		}
	}
	mig_set_status(m, VMFS_PRECOPY_DEVICE);
	t0 = now_mono_ms();
	rc = m->ops.pause(m->opaque);
	if (rc) {
		mig_fail(m, rc, "pause");
		goto out;
	}
	s->paused = true;
	pthread_mutex_lock(&m->lock);
	m->st.pause_ms = t0;
	pthread_mutex_unlock(&m->lock);
	/* Whatever the guest dirtied since the last sync, plus what is left. */
	rc = sync_dirty(m, &dirty);
	if (rc)
		goto out;
	m->p.max_bandwidth = 0;		/* the cap does not apply while paused */
	/* Lanes >= 1 end with LANE_END: the destination joins them before it
	 * loads the state, so every page is in place by then. */
	rc = send_dirty(m, s, &r, LANE_LAST);
	if (rc)
		goto out;
	pthread_mutex_lock(&m->lock);
	m->st.zero_pages += r.zero_pages;
	m->st.normal_pages += r.pages - r.zero_pages;
	m->st.remaining = 0;
	pthread_mutex_unlock(&m->lock);
	t1 = now_mono_ms();
	r.ms = t1 - t0;
	rc = mig_push_round(m, &r);
	if (rc)
		goto out;

	rc = m->ops.save_state(m->opaque, &state, &state_len);
	if (rc) {
		mig_fail(m, rc, "save vCPU/device state");
		goto out;
	}
	if (state_len > MIG_MAX_PAYLOAD) {
		rc = -E2BIG;
		goto out;
	}
	{
		size_t flen = mig_frame_build(m->buf, m->tx.key, sizeof(m->tx.key),
					      MIG_STATE, m->tx.seq, state, state_len);

		rc = send_built(&m->lanes[0], flen);
		if (rc)
			goto out;
	}
	rc = mig_ctl_send(m, MIG_DONE, NULL, 0);
	if (rc)
		goto out;
	rc = recv_expect(m, MIG_READY, &h);
	if (rc)
		goto out;
	t2 = now_mono_ms();

	if (atomic_load(&m->cancel)) {
		rc = -ECANCELED;
		goto out;
	}
	if (m->ops.switchover) {
		rc = m->ops.switchover(m->opaque);
		if (rc) {
			mig_fail(m, VMFS_PRECOPY_EHANDOFF, "switchover hook (%d)", rc);
			rc = VMFS_PRECOPY_EHANDOFF;
			goto out;
		}
		s->handed_off = true;
	}
	t3 = now_mono_ms();

	/* From GO on, cancel is ignored (invariant 4). */
	pthread_mutex_lock(&m->lock);
	if (atomic_load(&m->cancel))
		rc = -ECANCELED;
	else
		atomic_store(&m->past_go, 1);
	pthread_mutex_unlock(&m->lock);
	if (rc)
		goto out;
	rc = mig_ctl_send(m, MIG_GO, NULL, 0);
	if (rc)
		goto out;
	rc = recv_expect(m, MIG_RESUMED, &h);
	if (rc)
		goto out;
	if (h.length != 8) {
		rc = VMFS_PRECOPY_EPROTO;
		goto out;
	}
	/* The ack: the point of no return. */
	{
		uint64_t now = now_mono_ms();

		pthread_mutex_lock(&m->lock);
		m->st.final_pages_ms = t1 - t0;
		m->st.device_state_ms = t2 - t1;
		m->st.handoff_ms = t3 - t2;
		m->st.resume_ms = now - t3;
		m->st.downtime_ms = now - t0;
		m->st.peer_load_ms = get_le32(m->buf + MIG_HDR_LEN);
		m->st.peer_resume_ms = get_le32(m->buf + MIG_HDR_LEN + 4);
		pthread_mutex_unlock(&m->lock);
	}
out:
	free(state);
	return rc;
}

/* Undo everything the run changed on the source: invariant 2. */
static void rollback(struct vmfs_precopy *m, struct src_run *s, int err)
{
	const char *why = vmfs_precopy_strerror(err);
	int rc;

	if (err != -ECONNRESET && err != -EPIPE && err != -ETIMEDOUT &&
	    err != VMFS_PRECOPY_EPEER && atomic_load(&m->fd) >= 0) {
		/* Best effort: tell the destination to discard.  A cancelled
		 * socket is already shut down and this fails quietly. */
		int tmp = mig_send(&m->tx, m->psk, m->p.psk_len, MIG_ABORT, why,
				   strlen(why));
		(void)tmp;
	}
	if (s->handed_off && m->ops.switchover_abort)
		m->ops.switchover_abort(m->opaque);
	if (s->paused) {
		uint64_t t = now_mono_ms();

		rc = m->ops.resume(m->opaque);
		if (rc)
			mig_fail(m, rc, "resume on the source after failure");
		pthread_mutex_lock(&m->lock);
		m->st.downtime_ms = now_mono_ms() - m->st.pause_ms;
		m->st.resume_ms = now_mono_ms() - t;
		pthread_mutex_unlock(&m->lock);
	} else if (s->prepared) {
		/* Never paused: resume only undoes ops.pre_switchover. */
		rc = m->ops.resume(m->opaque);
		if (rc)
			mig_fail(m, rc, "undo the pre-switchover on the source");
	}
}

int mig_source_run(struct vmfs_precopy *m)
{
	struct src_run s = { 0 };
	bool logging = false;
	int rc;

	mig_set_status(m, VMFS_PRECOPY_SETUP);
	m->stage = malloc((size_t)MIG_BATCH_PAGES * PAGE);
	if (!m->stage) {
		rc = -ENOMEM;
		goto out;
	}
	m->lanes[0].stage = m->stage;
	rc = set_timeouts(m->tx.fd, m->p.io_timeout_ms);
	if (rc)
		goto out;
	rc = handshake(m);
	if (rc)
		goto out;
	rc = m->ops.log_start(m->opaque);
	if (rc) {
		mig_fail(m, rc, "start dirty logging");
		goto out;
	}
	logging = true;
	/* Pages dirtied before logging started are sent in round 1 anyway. */
	{
		uint64_t ignored;

		rc = sync_dirty(m, &ignored);
		if (rc)
			goto out;
	}
	pthread_mutex_lock(&m->lock);
	m->st.setup_done_ms = now_mono_ms();
	pthread_mutex_unlock(&m->lock);
	mig_set_status(m, VMFS_PRECOPY_ACTIVE);
	rc = precopy(m, &s);
	if (rc)
		goto out;
	rc = switchover(m, &s);
out:
	if (logging && m->ops.throttle && m->st.throttle)
		(void)m->ops.throttle(m->opaque, 0);
	if (rc) {
		if (rc == -ECANCELED || atomic_load(&m->cancel)) {
			rc = -ECANCELED;
			mig_fail(m, rc, "migration");
		} else {
			mig_fail(m, rc, "migration");
		}
		rollback(m, &s, rc);
	}
	if (logging && m->ops.log_stop)
		m->ops.log_stop(m->opaque);
	(void)mig_lanes_close(m);	/* their errors were reported above */
	mig_set_status(m, rc == 0 ? VMFS_PRECOPY_COMPLETED :
		       rc == -ECANCELED ? VMFS_PRECOPY_CANCELLED : VMFS_PRECOPY_FAILED);
	return rc;
}
