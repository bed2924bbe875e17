/* warm.c — ring warm-up (vmfs_dlm_warm(), IPC WARM): keep corosync's totem
 * ring busy while a local client is about to send a latency-critical
 * request (the disk-lock handoff of a live migration, sent while the guest
 * is paused).
 *
 * Why: when the ring has carried nothing for a few ms, totem's
 * representative holds the token (totem.hold).  A node that then wants to
 * send must first get the hold cancelled and wait for the token to come
 * round, so a lone message after some quiet costs 1.2-1.6 ms of agreed
 * multicast where one on a busy ring costs about 0.25 ms
 * (tests/dlm/bench-transfer.sh).  A migration knows the moment: it pauses
 * the guest, sends the last dirty pages (10-30 ms), then hands the locks
 * over; so at the pause it asks us to keep the ring warm.
 *
 * How: while any client's warm-up lasts we multicast tiny NOOP messages
 * (dlm/msg.h).  Every daemon validates them like any message and drops them
 * before the rsm (cluster.c): they change nothing.  Two pacings, chosen by
 * --warm-interval (cfg.warm_interval_us):
 *   0 (default)  chained: the next NOOP is sent when our previous one is
 *                delivered back to us, so exactly one is on its way round
 *                at any time and the token never goes idle; the rate
 *                adapts to the ring (about one per token rotation).
 *   N us         one NOOP every N us, whether or not the last came back.
 * A watchdog (WARM_TICK_MS) ends expired warm-ups and restarts a chain
 * whose NOOP never came back (a membership change can drop it).
 *
 * A client's warm-up (client->warm_until_us) ends at its deadline, when the
 * rsm applies a request that client sent after asking (ipc.c: the first
 * event with a later req_id; that is the request the warm-up was for, not
 * the late grant of an older one), when it disconnects,
 * or when it asks again with 0 ms.  The total is bounded by
 * VMFS_DLM_WARM_MAX_MS per request, so a client that forgets cannot keep
 * the ring busy for long; one that keeps asking can (it is root or in the
 * daemon's group, like every client).
 *
 * Everything here runs in the main loop (daemon.h).
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"

#define WARM_TICK_MS 20			/* watchdog period while warm */
#define WARM_LOST_US (100 * 1000)	/* a chained NOOP not back by then is lost */

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

/* Any live client still warming at `now`?  Clients are few (tens). */
static bool warm_wanted(struct dlmd *d, uint64_t now)
{
	struct dlmd_client *c;

	qb_list_for_each_entry(c, &d->clients, list)
		if (!c->dead && c->warm_until_us > now)
			return true;
	return false;
}

static void warm_timer_fn(void *data);

static void warm_timer_arm(struct dlmd *d, uint64_t us)
{
	if (d->warm_timer_armed)
		return;
	if (qb_loop_timer_add(d->loop, QB_LOOP_HIGH, us * 1000ULL, d, warm_timer_fn,
			      &d->warm_timer) == 0)
		d->warm_timer_armed = true;
	else
		log_err("cannot arm the warm-up timer");
}

static void warm_stop(struct dlmd *d, const char *why)
{
	if (!d->warm_on)
		return;
	d->warm_on = false;
	log_debug("ring warm-up ends (%s) after %u NOOPs", why, d->warm_seq);
}

/* Multicast one NOOP.  false when it could not be sent. */
static bool send_noop(struct dlmd *d, uint64_t now)
{
	struct vmfs_msg m;
	int rc;

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_NOOP;
	m.u.noop.seq = ++d->warm_seq;
	rc = dlmd_cluster_send(d, &m);
	if (rc < 0) {
		log_warn("ring warm-up: cannot send a NOOP (%d); stopping", rc);
		d->warm_inflight = false;
		warm_stop(d, "send failed");
		return false;
	}
	d->warm_inflight = true;
	d->warm_sent_us = now;
	d->n_warm_noops++;
	return true;
}

static void warm_timer_fn(void *data)
{
	struct dlmd *d = data;
	uint64_t now = now_us();
	uint32_t iv = d->cfg.warm_interval_us;

	d->warm_timer_armed = false;
	if (!d->warm_on)
		return;
	if (!dlmd_cluster_connected(d) || !warm_wanted(d, now)) {
		warm_stop(d, dlmd_cluster_connected(d) ? "no client warming" : "cluster lost");
		return;
	}
	if (iv) {
		if (!send_noop(d, now))
			return;
		warm_timer_arm(d, iv);
		return;
	}
	/* chained: restart a chain whose NOOP never came back */
	if (!d->warm_inflight || now - d->warm_sent_us >= WARM_LOST_US) {
		if (d->warm_inflight)
			log_info("ring warm-up: NOOP %u not delivered within %d ms; sending another",
				 d->warm_seq, WARM_LOST_US / 1000);
		if (!send_noop(d, now))
			return;
	}
	warm_timer_arm(d, WARM_TICK_MS * 1000ULL);
}

int dlmd_warm_request(struct dlmd *d, struct dlmd_client *c, uint32_t ms)
{
	uint64_t now = now_us();

	if (ms > VMFS_DLM_WARM_MAX_MS)
		return -EINVAL;
	if (ms == 0) {
		c->warm_until_us = 0;	/* the watchdog stops the rest */
		return 0;
	}
	if (!dlmd_cluster_connected(d) || !d->cpg_joined)
		return VMFS_DLM_ENOQUORUM;
	c->warm_until_us = now + (uint64_t)ms * 1000ULL;
	c->warm_mark = c->last_req_id;	/* only a later request ends it */
	d->n_warm_requests++;
	if (d->warm_on)
		return 0;
	d->warm_on = true;
	d->warm_seq = 0;
	log_debug("ring warm-up for client %u (%s): %u ms", c->client_id, c->program, ms);
	/* The first NOOP at once: a loop job was measured to start the chain
	 * late (the handoff then met the cold first NOOP); the price is a
	 * corosync round trip in the caller's vmfs_dlm_warm(). */
	if (!d->warm_inflight && !send_noop(d, now))
		return 0;	/* logged; the request will simply go cold */
	warm_timer_arm(d, d->cfg.warm_interval_us ? d->cfg.warm_interval_us
						  : WARM_TICK_MS * 1000ULL);
	return 0;
}

void dlmd_warm_delivered(struct dlmd *d, const struct vmfs_msg *m)
{
	uint64_t now;

	d->n_noops_seen++;
	if (m->nodeid != d->nodeid)
		return;
	/* ours: the chain goes on only while someone still wants it */
	d->warm_inflight = false;
	if (!d->warm_on || d->cfg.warm_interval_us)
		return;
	now = now_us();
	if (!warm_wanted(d, now)) {
		warm_stop(d, "done");
		return;
	}
	send_noop(d, now);
}

void dlmd_warm_client_done(struct dlmd_client *c, bool gone)
{
	if (c->warm_until_us && c->warm_until_us > now_us()) {
		if (gone)
			c->d->n_warm_by_gone++;
		else
			c->d->n_warm_by_request++;
	}
	c->warm_until_us = 0;
}

void dlmd_warm_reset(struct dlmd *d)
{
	if (d->warm_timer_armed) {
		qb_loop_timer_del(d->loop, d->warm_timer);
		d->warm_timer_armed = false;
	}
	d->warm_inflight = false;
	warm_stop(d, "cluster connection closed");
}
