/* test-rsm-sim.c — a membership simulator driving the real lock state
 * machine (dlm/rsm*.c) without corosync.
 *
 * N simulated hosts, each with its own struct rsm, share a fake CPG bus:
 * one global queue in agreed total order; a message is delivered to every
 * up host of the sender's network group (partition), encoded and decoded
 * through the real wire format.  Membership changes keep virtual
 * synchrony: before a confchg the bus is drained in the old configuration,
 * and messages of a crashed sender still queued are dropped.  A fake clock
 * drives rsm_tick (the leader's FENCED timer).
 *
 * Simulated clients issue random requests, converts (up/down, NOQUEUE,
 * VALBLK), releases, cancels, transfers (current and stale epochs),
 * PERSISTENT + ADOPT, and die; one recovery agent per host answers
 * RSM_EV_RECOVER with RECOVERY_DONE.  Hosts crash and restart (new rsm,
 * same nodeid, client ids start over), partitions split and merge.
 *
 * Checked after every step:
 *  (a) on every resource of every host no two incompatible holders (I1);
 *  (b) once the bus is drained, the synced hosts of a quorate partition
 *      have identical rsm_digest(), and every member is synced (I2);
 *  (c) what each host told its clients matches its table: every lock a
 *      live client believes granted/converting/waiting is so in the table,
 *      and every lock of a live local client in the table is known to it;
 *      GRANTED/BLOCKING/LOST events agree with the table when emitted;
 *      new grants on a resource carry strictly increasing epochs;
 *  (d) on every host that can grant, no queue head is grantable (I4), and
 *      at the end, when all clients stop and release and the cluster
 *      heals, every request has been granted or refused, departed hosts
 *      are purged, and only orphans remain.
 * Plus directed tests of specific behaviours.
 *
 * Plain C: exit 0 = pass, 1 = fail.  Seeds are printed; TEST_SEED=n runs
 * only that seed; TEST_STEPS=n changes the steps per seed.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crc32c.h"
#include "msg.h"
#include "rsm.h"
#include "vmfs/dlm.h"

/* ------------------------------------------------------------------------ */
/* failure reporting                                                         */

static uint64_t cur_seed;
static long cur_step;
static int failures;

static void fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	failures++;
	fprintf(stderr, "FAIL %s:%d (seed %" PRIu64 " step %ld): ", file, line, cur_seed, cur_step);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (failures > 20) {
		fprintf(stderr, "too many failures\n");
		exit(1);
	}
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* ------------------------------------------------------------------------ */
/* random numbers                                                            */

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static uint32_t rndn(uint32_t n)
{
	return n ? (uint32_t)(rnd() % n) : 0;
}

static bool chance(unsigned pct)
{
	return rndn(100) < pct;
}

/* ------------------------------------------------------------------------ */
/* the simulated cluster                                                     */

#define MAXH 5
#define MAXC 6			/* clients per host alive at once */
#define MAXL 16			/* locks a client knows */
#define NRES 5
#define FENCE_DELAY 1000

static const char *const res_ls[NRES] = { "vm", "vm", "vm", "fs", "fs" };
static const char *const res_name[NRES] = { "disk-a", "disk-b", "config", "rg0", "inode-7" };
static const char *const lockspaces[] = { "vm", "fs" };

enum cl_state { CL_WAIT = 1, CL_GRANTED, CL_CONV };

struct cl_lock {
	uint64_t lkid;
	int res;
	enum cl_state state;
	int mode;		/* granted mode */
	int rqmode;
	uint64_t epoch;
	bool release_sent;	/* a release is on the bus */
	uint32_t conv_req;	/* req_id of the queued convert */
	bool persistent;
};

struct client {
	uint32_t id;
	bool alive;
	bool agent;
	bool bulk;		/* outcomes not modelled (bulk-load tests) */
	struct cl_lock locks[MAXL];
	int n;
};

enum op_kind { OP_REQUEST = 1, OP_ADOPT, OP_CONVERT, OP_RELEASE, OP_CANCEL, OP_TRANSFER,
	       OP_REG, OP_RDONE };

/* An operation a client sent, by req_id (unique per host incarnation). */
struct op {
	uint32_t req;
	uint32_t client;
	enum op_kind kind;
	int res;
	uint64_t lkid;
	int mode;
	bool persistent;
	bool done;
};

#define MAXOPS 4096

struct host {
	uint32_t nodeid;
	bool up;
	int group;		/* network partition */
	struct rsm *rsm;
	uint32_t next_client;
	uint32_t next_req;
	struct client cl[MAXC];
	struct op ops[MAXOPS];	/* ring by req id */
	bool quorate, synced;
	int n_resets, n_recover;
};

struct bus_msg {
	uint32_t sender;
	int group;
	size_t len;
	uint8_t *buf;
};

static struct host hosts[MAXH];
static int nhosts;
static uint64_t now_ms;
static struct bus_msg *bus;
static size_t bus_head, bus_n, bus_cap;
static uint64_t max_epoch[MAXH][NRES];	/* per host: highest new-grant epoch per resource */
static bool verbose;

/* statistics for the report line */
static unsigned long st_grants, st_refused, st_transfers_ok, st_transfers_stale, st_lost,
	st_resets, st_crashes, st_partitions, st_snapshots, st_delivered;

static int res_index(const char *ls, const char *name)
{
	for (int i = 0; i < NRES; i++)
		if (strcmp(res_ls[i], ls) == 0 && strcmp(res_name[i], name) == 0)
			return i;
	return -1;
}

static struct client *client_by_id(struct host *h, uint32_t id)
{
	for (int i = 0; i < MAXC; i++)
		if (h->cl[i].alive && h->cl[i].id == id)
			return &h->cl[i];
	return NULL;
}

static struct cl_lock *cl_find(struct client *c, uint64_t lkid)
{
	for (int i = 0; i < c->n; i++)
		if (c->locks[i].lkid == lkid)
			return &c->locks[i];
	return NULL;
}

static void cl_remove(struct client *c, uint64_t lkid)
{
	for (int i = 0; i < c->n; i++)
		if (c->locks[i].lkid == lkid) {
			c->locks[i] = c->locks[--c->n];
			return;
		}
}

static struct cl_lock *cl_add(struct client *c, uint64_t lkid, int res)
{
	struct cl_lock *l = cl_find(c, lkid);

	if (l)
		return l;
	if (c->n == MAXL) {
		fail(__FILE__, __LINE__, "client %u knows too many locks", c->id);
		return &c->locks[0];
	}
	l = &c->locks[c->n++];
	memset(l, 0, sizeof(*l));
	l->lkid = lkid;
	l->res = res;
	l->mode = -1;
	l->rqmode = -1;
	return l;
}

static struct op *op_get(struct host *h, uint32_t req)
{
	struct op *o = &h->ops[req % MAXOPS];

	return req && o->req == req ? o : NULL;
}

/* ------------------------------------------------------------------------ */
/* the bus                                                                   */

static void sim_send(void *ctx, const struct vmfs_msg *m)
{
	struct host *h = ctx;
	struct vmfs_msg copy = *m;
	static uint8_t frame[VMFS_MSG_MAX];
	uint8_t *buf;
	int n;

	copy.ts_ms = now_ms + 1700000000000ull;	/* the caller stamps its wall clock */
	n = vmfs_msg_encode(&copy, frame, sizeof(frame));
	CHECK(n > 0, "encode of %s from the rsm failed: %d", vmfs_msg_type_name(m->type), n);
	if (n <= 0)
		return;
	buf = malloc((size_t)n);
	memcpy(buf, frame, (size_t)n);
	if (m->type == VMFS_MSG_SNAPSHOT && m->u.snapshot.chunk == 0)
		st_snapshots++;
	if (bus_head + bus_n == bus_cap) {
		if (bus_head > 0) {
			memmove(bus, bus + bus_head, bus_n * sizeof(*bus));
			bus_head = 0;
		} else {
			bus_cap = bus_cap ? bus_cap * 2 : 256;
			bus = realloc(bus, bus_cap * sizeof(*bus));
		}
	}
	bus[bus_head + bus_n].sender = h->nodeid;
	bus[bus_head + bus_n].group = h->group;
	bus[bus_head + bus_n].len = (size_t)n;
	bus[bus_head + bus_n].buf = buf;
	bus_n++;
}

static void check_event(struct host *h, const struct rsm_event *ev);

static void sim_event(void *ctx, const struct rsm_event *ev)
{
	check_event(ctx, ev);
}

/* Client-side sends (what the daemon would do for its clients). */
static void client_send(struct host *h, struct vmfs_msg *m)
{
	m->nodeid = h->nodeid;
	sim_send(h, m);
}

static uint32_t new_req(struct host *h, struct client *c, enum op_kind kind, int res,
			uint64_t lkid, int mode)
{
	uint32_t req = ++h->next_req;
	struct op *o = &h->ops[req % MAXOPS];

	memset(o, 0, sizeof(*o));
	o->req = req;
	o->client = c->id;
	o->kind = kind;
	o->res = res;
	o->lkid = lkid;
	o->mode = mode;
	return req;
}

/* Deliver the head of the bus to every up host of the sender's group. */
static void deliver_one(void)
{
	struct bus_msg bm;

	if (!bus_n)
		return;
	bm = bus[bus_head++];
	bus_n--;
	if (!bus_n)
		bus_head = 0;
	st_delivered++;
	for (int i = 0; i < nhosts; i++) {
		struct host *h = &hosts[i];
		struct vmfs_msg m;
		const char *why;
		int rc;

		if (!h->up || h->group != bm.group)
			continue;
		rc = vmfs_msg_decode(bm.buf, bm.len, bm.sender, &m, &why);
		CHECK(rc == 0, "decode on host %u: %d %s", h->nodeid, rc, why);
		if (rc)
			continue;
		if (verbose && m.type != VMFS_MSG_REQUEST)
			fprintf(stderr, "  host %u <- %s from %u (synced %d)\n", h->nodeid,
				vmfs_msg_type_name(m.type), m.nodeid, rsm_synced(h->rsm));
		rsm_deliver(h->rsm, &m, now_ms);
	}
	free(bm.buf);
}

static void check_all(bool drained);

static void drain(void)
{
	int guard = 0;

	while (bus_n) {
		deliver_one();
		if (++guard > 200000) {
			fail(__FILE__, __LINE__, "bus does not drain");
			break;
		}
	}
}

static void drop_from(uint32_t sender)
{
	size_t j = bus_head;

	for (size_t i = bus_head; i < bus_head + bus_n; i++) {
		if (bus[i].sender == sender) {
			free(bus[i].buf);
			continue;
		}
		bus[j++] = bus[i];
	}
	bus_n = j - bus_head;
}

/* ------------------------------------------------------------------------ */
/* membership                                                                */

static size_t view_of(const struct host *h, uint32_t *ids)
{
	size_t n = 0;

	if (!h->up)
		return 0;
	for (int i = 0; i < nhosts; i++)
		if (hosts[i].up && hosts[i].group == h->group)
			ids[n++] = hosts[i].nodeid;
	return n;
}

static bool in_set(const uint32_t *s, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == id)
			return true;
	return false;
}

/* Deliver confchgs to every up host whose view differs from `before`. */
static void deliver_confchgs(uint32_t before[MAXH][MAXH], const size_t *nbefore)
{
	for (int i = 0; i < nhosts; i++) {
		struct host *h = &hosts[i];
		uint32_t after[MAXH], left[MAXH], joined[MAXH];
		size_t na, nl = 0, nj = 0;

		if (!h->up)
			continue;
		na = view_of(h, after);
		for (size_t k = 0; k < nbefore[i]; k++)
			if (!in_set(after, na, before[i][k]))
				left[nl++] = before[i][k];
		for (size_t k = 0; k < na; k++)
			if (!in_set(before[i], nbefore[i], after[k]))
				joined[nj++] = after[k];
		if (!nl && !nj)
			continue;
		if (verbose)
			fprintf(stderr, "  host %u confchg: %zu members, %zu left, %zu joined\n",
				h->nodeid, na, nl, nj);
		rsm_confchg(h->rsm, after, na, left, nl, joined, nj, now_ms);
	}
}

static void snapshot_views(uint32_t before[MAXH][MAXH], size_t *nbefore)
{
	for (int i = 0; i < nhosts; i++)
		nbefore[i] = view_of(&hosts[i], before[i]);
}

static void host_start(struct host *h)
{
	struct rsm_config cfg;
	struct rsm_ops ops = { .event = sim_event, .send = sim_send };
	char name[32];

	snprintf(name, sizeof(name), "host%u", h->nodeid);
	cfg.nodeid = h->nodeid;
	cfg.name = name;
	cfg.expected_votes = (uint32_t)nhosts;
	cfg.fence_delay_ms = FENCE_DELAY;
	h->rsm = rsm_new(&cfg, &ops, h);
	CHECK(h->rsm != NULL, "rsm_new");
	h->up = true;
	memset(max_epoch[h - hosts], 0, sizeof(max_epoch[0]));
	h->next_client = 0;
	h->next_req = 0;
	h->quorate = h->synced = false;
	memset(h->cl, 0, sizeof(h->cl));
	memset(h->ops, 0, sizeof(h->ops));
}

/* Topology changes: drain in the old configuration first (virtual
 * synchrony), then tell everybody whose view changed. */
static void crash_host(struct host *h)
{
	uint32_t before[MAXH][MAXH];
	size_t nb[MAXH];

	snapshot_views(before, nb);
	drop_from(h->nodeid);
	h->up = false;
	rsm_free(h->rsm);
	h->rsm = NULL;
	drop_from(h->nodeid);	/* nothing new, but keep it obvious */
	drain();
	deliver_confchgs(before, nb);
	st_crashes++;
}

static void restart_host(struct host *h)
{
	uint32_t before[MAXH][MAXH];
	size_t nb[MAXH];

	drain();
	snapshot_views(before, nb);
	host_start(h);
	nb[h - hosts] = 0;
	deliver_confchgs(before, nb);
}

static void set_groups(const int *groups)
{
	uint32_t before[MAXH][MAXH];
	size_t nb[MAXH];

	drain();
	snapshot_views(before, nb);
	for (int i = 0; i < nhosts; i++)
		hosts[i].group = groups[i];
	deliver_confchgs(before, nb);
	st_partitions++;
}

static void sim_init(int n)
{
	uint32_t before[MAXH][MAXH];
	size_t nb[MAXH];

	nhosts = n;
	now_ms = 1000;
	memset(max_epoch, 0, sizeof(max_epoch));
	for (int i = 0; i < n; i++) {
		memset(&hosts[i], 0, sizeof(hosts[i]));
		hosts[i].nodeid = (uint32_t)(i + 1) * 10 + 1;	/* 11, 21, ... */
		hosts[i].group = 0;
	}
	/* Hosts come up one by one, as a cluster boots. */
	for (int i = 0; i < n; i++) {
		snapshot_views(before, nb);
		host_start(&hosts[i]);
		nb[i] = 0;
		deliver_confchgs(before, nb);
		drain();
	}
}

static void sim_fini(void)
{
	drain();
	for (int i = 0; i < nhosts; i++) {
		rsm_free(hosts[i].rsm);
		hosts[i].rsm = NULL;
		hosts[i].up = false;
	}
	free(bus);
	bus = NULL;
	bus_head = bus_n = bus_cap = 0;
}

static void advance(uint64_t ms)
{
	now_ms += ms;
	for (int i = 0; i < nhosts; i++)
		if (hosts[i].up)
			(void)rsm_tick(hosts[i].rsm, now_ms);
}

/* ------------------------------------------------------------------------ */
/* client operations                                                         */

static struct client *new_client(struct host *h, bool agent)
{
	for (int i = 0; i < MAXC; i++) {
		struct client *c = &h->cl[i];

		if (c->alive)
			continue;
		memset(c, 0, sizeof(*c));
		c->alive = true;
		c->id = ++h->next_client;
		c->agent = agent;
		if (agent)
			for (size_t k = 0; k < sizeof(lockspaces) / sizeof(lockspaces[0]); k++) {
				struct vmfs_msg m;

				memset(&m, 0, sizeof(m));
				m.type = VMFS_MSG_RECOVERY_REG;
				m.u.recovery.o.client_id = c->id;
				m.u.recovery.o.req_id = new_req(h, c, OP_REG, -1, 0, -1);
				vmfs_name_set(&m.u.recovery.ls, lockspaces[k]);
				m.u.recovery.on = 1;
				client_send(h, &m);
			}
		return c;
	}
	return NULL;
}

static void client_gone(struct host *h, struct client *c)
{
	struct vmfs_msg m;

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_CLIENT_GONE;
	m.u.client_gone.client_id = c->id;
	if (verbose)
		fprintf(stderr, "  host %u client %u gone\n", h->nodeid, c->id);
	client_send(h, &m);
	c->alive = false;
	c->n = 0;
}

static uint32_t do_request(struct host *h, struct client *c, int res, int mode, unsigned flags,
			   const char *tag)
{
	struct vmfs_msg m;
	uint32_t req;

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_REQUEST;
	req = new_req(h, c, (flags & VMFS_DLM_ADOPT) ? OP_ADOPT : OP_REQUEST, res, 0, mode);
	op_get(h, req)->persistent = flags & VMFS_DLM_PERSISTENT;
	m.u.request.o.client_id = c->id;
	m.u.request.o.req_id = req;
	m.u.request.pid = 1000 + c->id;
	m.u.request.mode = (uint8_t)mode;
	m.u.request.flags = flags;
	vmfs_name_set(&m.u.request.ls, res_ls[res]);
	vmfs_name_set(&m.u.request.res, res_name[res]);
	vmfs_name_set(&m.u.request.program, "sim");
	vmfs_name_set(&m.u.request.tag, tag ? tag : "");
	client_send(h, &m);
	return req;
}

static uint32_t do_convert(struct host *h, struct client *c, struct cl_lock *l, int mode,
			   unsigned flags, const char *lvb)
{
	struct vmfs_msg m;

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_CONVERT;
	m.u.convert.o.client_id = c->id;
	m.u.convert.o.req_id = new_req(h, c, OP_CONVERT, l->res, l->lkid, mode);
	m.u.convert.lkid = l->lkid;
	m.u.convert.mode = (uint8_t)mode;
	m.u.convert.flags = flags;
	if (lvb)
		memcpy(m.u.convert.lvb, lvb, strnlen(lvb, VMFS_DLM_LVB_LEN));
	client_send(h, &m);
	return m.u.convert.o.req_id;
}

static uint32_t do_release(struct host *h, struct client *c, uint64_t lkid, unsigned flags,
			   const char *lvb)
{
	struct vmfs_msg m;
	struct cl_lock *l = cl_find(c, lkid);

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_RELEASE;
	m.u.release.o.client_id = c->id;
	m.u.release.o.req_id = new_req(h, c, OP_RELEASE, l ? l->res : -1, lkid, -1);
	m.u.release.lkid = lkid;
	m.u.release.flags = flags;
	if (lvb)
		memcpy(m.u.release.lvb, lvb, strnlen(lvb, VMFS_DLM_LVB_LEN));
	if (l)
		l->release_sent = true;
	client_send(h, &m);
	return m.u.release.o.req_id;
}

static uint32_t do_cancel(struct host *h, struct client *c, uint64_t lkid)
{
	struct vmfs_msg m;

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_CANCEL;
	m.u.cancel.o.client_id = c->id;
	m.u.cancel.o.req_id = new_req(h, c, OP_CANCEL, -1, lkid, -1);
	m.u.cancel.lkid = lkid;
	client_send(h, &m);
	return m.u.cancel.o.req_id;
}

static uint32_t do_transfer(struct host *h, struct client *c, uint64_t from, uint64_t epoch,
			    uint64_t to)
{
	struct vmfs_msg m;

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_TRANSFER;
	m.u.transfer.o.client_id = c->id;
	m.u.transfer.o.req_id = new_req(h, c, OP_TRANSFER, -1, to, -1);
	m.u.transfer.from_lkid = from;
	m.u.transfer.from_epoch = epoch;
	m.u.transfer.to_lkid = to;
	client_send(h, &m);
	return m.u.transfer.o.req_id;
}

/* Several transfers in one message (all or nothing). */
static uint32_t do_transfer_set(struct host *h, struct client *c, const struct vmfs_msg_xfer *x,
				uint32_t n)
{
	struct vmfs_msg m;

	memset(&m, 0, sizeof(m));
	m.type = VMFS_MSG_TRANSFER_SET;
	m.u.transfer_set.o.client_id = c->id;
	m.u.transfer_set.o.req_id = new_req(h, c, OP_TRANSFER, -1, x[0].to_lkid, -1);
	m.u.transfer_set.n = n;
	memcpy(m.u.transfer_set.x, x, n * sizeof(*x));
	client_send(h, &m);
	return m.u.transfer_set.o.req_id;
}

/* ------------------------------------------------------------------------ */
/* events: apply to the client model and check against the table (c)        */

static int last_err[MAXH];		/* last REFUSED/DONE error per host */
static struct rsm_event last_ev[MAXH];
static int n_blocking[MAXH];

static void check_event(struct host *h, const struct rsm_event *ev)
{
	int hi = (int)(h - hosts);
	struct client *c = ev->client_id ? client_by_id(h, ev->client_id) : NULL;
	struct op *o = op_get(h, ev->req_id);
	struct rsm_lock_view v;
	bool have = ev->lkid && rsm_lock_lookup(h->rsm, ev->lkid, &v);
	struct cl_lock *l;

	last_ev[hi] = *ev;
	if (o && ev->type != RSM_EV_LOST && ev->type != RSM_EV_BLOCKING)
		o->done = true;		/* every operation gets an answer */
	if (verbose)
		fprintf(stderr, "  host %u ev %d client %u req %u lkid %" PRIu64 " mode %d err %d\n",
			h->nodeid, ev->type, ev->client_id, ev->req_id, ev->lkid, ev->mode, ev->err);
	switch (ev->type) {
	case RSM_EV_QUORUM:
		h->quorate = ev->quorate;
		CHECK(rsm_quorate(h->rsm) == ev->quorate, "QUORUM event vs rsm_quorate");
		return;
	case RSM_EV_SYNCED:
		h->synced = ev->synced;
		return;
	case RSM_EV_RESET:
		h->n_resets++;
		st_resets++;
		/* The table may now come from a partition whose members all
		 * restarted empty while we were cut off (the history is only
		 * as durable as the hosts holding it): epochs start over. */
		memset(max_epoch[hi], 0, sizeof(max_epoch[hi]));
		return;
	case RSM_EV_RECOVER:
		h->n_recover++;
		c = client_by_id(h, ev->client_id);
		/* A dead agent may still be asked until its CLIENT_GONE is
		 * applied; then the rsm moves the recovery on. */
		CHECK(!c || c->agent, "RECOVER for client %u that is no agent", ev->client_id);
		if (c && c->agent) {
			struct vmfs_msg m;

			memset(&m, 0, sizeof(m));
			m.type = VMFS_MSG_RECOVERY_DONE;
			m.u.recovery.o.client_id = c->id;
			m.u.recovery.o.req_id = new_req(h, c, OP_RDONE, -1, 0, -1);
			vmfs_name_set(&m.u.recovery.ls, ev->ls);
			m.u.recovery.nodeid = ev->nodeid;
			client_send(h, &m);
		}
		return;
	default:
		break;
	}
	if (!c || c->bulk)
		return;		/* a client that died meanwhile: the daemon drops it */

	switch (ev->type) {
	case RSM_EV_QUEUED:
		CHECK(have && (v.queue == RSM_Q_WAITING || v.queue == RSM_Q_CONVERTING) &&
		      v.nodeid == h->nodeid && v.client_id == c->id,
		      "QUEUED lkid %" PRIu64 " not queued for this client", ev->lkid);
		if (!have)
			return;
		l = cl_find(c, ev->lkid);
		if (!l)
			l = cl_add(c, ev->lkid, o ? o->res : -1);
		if (v.queue == RSM_Q_WAITING) {
			l->state = CL_WAIT;
		} else {
			l->state = CL_CONV;
			l->mode = v.mode;
			l->conv_req = ev->req_id;
		}
		l->rqmode = v.rqmode;
		if (o && o->kind == OP_REQUEST)
			l->persistent = o->persistent;
		return;
	case RSM_EV_GRANTED:
		st_grants++;
		CHECK(have && v.queue == RSM_Q_GRANTED && v.mode == ev->mode &&
		      v.epoch == ev->epoch && v.nodeid == h->nodeid && v.client_id == c->id,
		      "GRANTED lkid %" PRIu64 " mode %d epoch %" PRIu64 " not so in the table",
		      ev->lkid, ev->mode, ev->epoch);
		l = cl_find(c, ev->lkid);
		if (!l) {
			l = cl_add(c, ev->lkid, o ? o->res : -1);
			if (o && o->kind == OP_REQUEST)
				l->persistent = o->persistent;
			if (o && o->kind == OP_ADOPT)
				l->persistent = true;
		}
		if (l->res < 0 && o)
			l->res = o->res;
		/* A grant of a waiting request or an up-convert is a new epoch:
		 * it must be above every epoch handed out on that resource. */
		if (l->res >= 0 && (l->state == CL_WAIT || l->state == 0) &&
		    (!o || o->kind == OP_REQUEST)) {
			CHECK(ev->epoch > max_epoch[hi][l->res], "host %u: epoch %" PRIu64
			      " not above %" PRIu64 " on %s", h->nodeid, ev->epoch,
			      max_epoch[hi][l->res], res_name[l->res]);
		}
		if (l->res >= 0 && ev->epoch > max_epoch[hi][l->res])
			max_epoch[hi][l->res] = ev->epoch;
		l->state = CL_GRANTED;
		l->mode = ev->mode;
		l->rqmode = -1;
		l->epoch = ev->epoch;
		if (o && o->kind == OP_TRANSFER)
			st_transfers_ok++;
		return;
	case RSM_EV_REFUSED:
		st_refused++;
		last_err[hi] = ev->err;
		CHECK(ev->err != 0, "REFUSED without error");
		l = ev->lkid ? cl_find(c, ev->lkid) : NULL;
		if (o && (o->kind == OP_REQUEST || o->kind == OP_ADOPT)) {
			CHECK(ev->err == VMFS_DLM_EAGAIN || ev->err == VMFS_DLM_ENOQUORUM ||
			      ev->err == VMFS_DLM_ECANCELED || ev->err == VMFS_DLM_ENOLOCK ||
			      ev->err == VMFS_DLM_ELOST,
			      "unexpected request refusal %d", ev->err);
			if (l && l->state == CL_WAIT)
				cl_remove(c, ev->lkid);
			/* (after a table reset the same lkid may name another
			 * request of ours: lock ids of two partitions collide) */
			CHECK(!have || v.client_id != c->id || v.nodeid != h->nodeid ||
			      v.queue != RSM_Q_WAITING || ev->err == VMFS_DLM_ELOST ||
			      v.lkid != ev->lkid, "refused request still waiting");
		} else if (o && o->kind == OP_CONVERT) {
			/* -EBUSY for a second convert leaves the first queued */
			if (l && l->state == CL_CONV && l->conv_req == ev->req_id) {
				l->state = CL_GRANTED;
				l->rqmode = -1;
			}
		} else if (l) {
			/* refusal of the pending op of a lock (cancel/release) */
			if (l->state == CL_WAIT)
				cl_remove(c, ev->lkid);
			else if (l->state == CL_CONV) {
				l->state = CL_GRANTED;
				l->rqmode = -1;
			}
		}
		return;
	case RSM_EV_DONE:
		last_err[hi] = ev->err;
		if (o && o->kind == OP_RELEASE && ev->err == 0)
			cl_remove(c, o->lkid);
		if (o && o->kind == OP_TRANSFER) {
			if (ev->err == 0)
				st_transfers_ok++;
			else if (ev->err == VMFS_DLM_ESTALE)
				st_transfers_stale++;
		}
		return;
	case RSM_EV_BLOCKING:
		n_blocking[hi]++;
		CHECK(have && (v.queue == RSM_Q_GRANTED || v.queue == RSM_Q_CONVERTING) &&
		      !vmfs_dlm_modes_compatible(v.mode, ev->mode) && v.client_id == c->id,
		      "BLOCKING lkid %" PRIu64 " wanted %d inconsistent", ev->lkid, ev->mode);
		return;
	case RSM_EV_LOST:
		st_lost++;
		CHECK(!have || v.client_id != c->id || v.recovering || v.nodeid != h->nodeid,
		      "LOST lkid %" PRIu64 " still ours in the table", ev->lkid);
		cl_remove(c, ev->lkid);
		return;
	default:
		return;
	}
}

/* ------------------------------------------------------------------------ */
/* invariants                                                                */

struct res_check {
	struct host *h;
	bool can_grant;
};

static void check_resource(void *arg, const struct rsm_resource_view *v)
{
	struct res_check *rc = arg;
	const struct rsm_lock_view *head = NULL, *conv = NULL, *wait = NULL;

	/* (a) I1 */
	for (size_t i = 0; i < v->n_locks; i++) {
		const struct rsm_lock_view *a = &v->locks[i];

		if (a->queue == RSM_Q_WAITING)
			continue;
		CHECK(a->epoch <= v->epoch, "lock epoch above resource epoch");
		for (size_t k = i + 1; k < v->n_locks; k++) {
			const struct rsm_lock_view *b = &v->locks[k];

			if (b->queue == RSM_Q_WAITING)
				continue;
			CHECK(vmfs_dlm_modes_compatible(a->mode, b->mode),
			      "host %u %s/%s: %s lkid %" PRIu64 " and %s lkid %" PRIu64 " both held",
			      rc->h->nodeid, v->ls, v->name, vmfs_dlm_mode_name(a->mode), a->lkid,
			      vmfs_dlm_mode_name(b->mode), b->lkid);
		}
		if (a->queue == RSM_Q_CONVERTING && !conv)
			conv = a;
	}
	for (size_t i = 0; i < v->n_locks && !wait; i++)
		if (v->locks[i].queue == RSM_Q_WAITING)
			wait = &v->locks[i];
	/* (d) I4: the head of the queues is not grantable */
	head = conv ? conv : wait;
	if (rc->can_grant && head) {
		bool blocked = false;

		for (size_t i = 0; i < v->n_locks; i++) {
			const struct rsm_lock_view *a = &v->locks[i];

			if (a == head || a->queue == RSM_Q_WAITING)
				continue;
			if (!vmfs_dlm_modes_compatible(a->mode, head->rqmode))
				blocked = true;
		}
		CHECK(blocked, "host %u %s/%s: head lkid %" PRIu64 " (%s) grantable but waiting",
		      rc->h->nodeid, v->ls, v->name, head->lkid, vmfs_dlm_mode_name(head->rqmode));
		if (!blocked)
			for (size_t i = 0; i < v->n_locks; i++)
				fprintf(stderr, "   lkid %" PRIu64 " node %u client %u q %d mode %d "
					"rq %d epoch %" PRIu64 "%s%s\n", v->locks[i].lkid,
					v->locks[i].nodeid, v->locks[i].client_id, v->locks[i].queue,
					v->locks[i].mode, v->locks[i].rqmode, v->locks[i].epoch,
					v->locks[i].orphan ? " orphan" : "",
					v->locks[i].recovering ? " recovering" : "");
	}
	/* (c) every lock of a live local client is known to it */
	for (size_t i = 0; i < v->n_locks; i++) {
		const struct rsm_lock_view *a = &v->locks[i];
		struct client *c;
		struct cl_lock *l;

		if (a->nodeid != rc->h->nodeid || !a->client_id || a->recovering ||
		    !rsm_synced(rc->h->rsm))
			continue;
		c = client_by_id(rc->h, a->client_id);
		if (!c || c->bulk)
			continue;	/* CLIENT_GONE still on the bus */
		l = cl_find(c, a->lkid);
		CHECK(l != NULL, "host %u: lkid %" PRIu64 " of client %u unknown to it",
		      rc->h->nodeid, a->lkid, c->id);
		if (!l)
			continue;
		CHECK((a->queue == RSM_Q_GRANTED && l->state == CL_GRANTED && l->mode == a->mode &&
		       l->epoch == a->epoch) ||
		      (a->queue == RSM_Q_CONVERTING && l->state == CL_CONV && l->mode == a->mode) ||
		      (a->queue == RSM_Q_WAITING && l->state == CL_WAIT),
		      "host %u: lkid %" PRIu64 " queue %d mode %d, client thinks state %d mode %d",
		      rc->h->nodeid, a->lkid, a->queue, a->mode, l->state, l->mode);
	}
}

static void check_clients(struct host *h)
{
	if (!rsm_synced(h->rsm))
		return;
	for (int i = 0; i < MAXC; i++) {
		struct client *c = &h->cl[i];

		if (!c->alive)
			continue;
		for (int k = 0; k < c->n; k++) {
			struct rsm_lock_view v;
			bool have = rsm_lock_lookup(h->rsm, c->locks[k].lkid, &v);

			CHECK(have && v.nodeid == h->nodeid && v.client_id == c->id && !v.recovering,
			      "host %u client %u believes it has lkid %" PRIu64 " (state %d)",
			      h->nodeid, c->id, c->locks[k].lkid, c->locks[k].state);
		}
	}
}

static void dump_res(void *arg, const struct rsm_resource_view *v)
{
	struct host *h = arg;

	fprintf(stderr, "  [%u] %s/%s epoch %" PRIu64 " lvb %d %.8s\n", h->nodeid, v->ls, v->name,
		v->epoch, v->lvb_valid, (const char *)v->lvb);
	for (size_t i = 0; i < v->n_locks; i++)
		fprintf(stderr, "  [%u]   lkid %" PRIu64 " node %u client %u q %d mode %d rq %d "
			"epoch %" PRIu64 " since %" PRIu64 " flags %x%s%s\n", h->nodeid,
			v->locks[i].lkid, v->locks[i].nodeid, v->locks[i].client_id,
			v->locks[i].queue, v->locks[i].mode, v->locks[i].rqmode, v->locks[i].epoch,
			v->locks[i].since_ms, v->locks[i].flags, v->locks[i].orphan ? " orphan" : "",
			v->locks[i].recovering ? " recovering" : "");
}

static void dump_node(void *arg, const struct rsm_node_view *v)
{
	struct host *h = arg;

	fprintf(stderr, "  [%u] node %u %s state %d\n", h->nodeid, v->nodeid, v->name, v->state);
}

static void dump_rec(void *arg, const char *ls, uint32_t nodeid, uint32_t agent)
{
	struct host *h = arg;

	fprintf(stderr, "  [%u] recovery %s node %u agent %u\n", h->nodeid, ls, nodeid, agent);
}

static void dump_table(struct host *h)
{
	rsm_foreach_node(h->rsm, dump_node, h);
	rsm_foreach_recovery(h->rsm, dump_rec, h);
	rsm_foreach_resource(h->rsm, NULL, dump_res, h);
}

static void check_all(bool drained)
{
	for (int i = 0; i < nhosts; i++) {
		struct host *h = &hosts[i];
		struct res_check rc = { .h = h };

		if (!h->up)
			continue;
		rc.can_grant = rsm_quorate(h->rsm) && rsm_synced(h->rsm);
		CHECK(h->quorate == rsm_quorate(h->rsm), "host %u: QUORUM events out of step",
		      h->nodeid);
		CHECK(h->synced == rsm_synced(h->rsm), "host %u: SYNCED events out of step",
		      h->nodeid);
		rsm_foreach_resource(h->rsm, NULL, check_resource, &rc);
		check_clients(h);
	}
	if (!drained)
		return;
	/* (b) per group: a quorate partition is all synced, one digest */
	for (int i = 0; i < nhosts; i++) {
		struct host *a = &hosts[i];
		int members = 0;

		if (!a->up)
			continue;
		for (int k = 0; k < nhosts; k++)
			if (hosts[k].up && hosts[k].group == a->group)
				members++;
		if (2 * members > nhosts) {
			CHECK(rsm_synced(a->rsm) && rsm_quorate(a->rsm),
			      "host %u in a quorate partition of %d but synced %d quorate %d",
			      a->nodeid, members, rsm_synced(a->rsm), rsm_quorate(a->rsm));
		} else {
			CHECK(!rsm_quorate(a->rsm), "host %u quorate in a minority", a->nodeid);
		}
		for (int k = i + 1; k < nhosts; k++) {
			struct host *b = &hosts[k];

			if (!b->up || b->group != a->group || !rsm_synced(a->rsm) ||
			    !rsm_synced(b->rsm))
				continue;
			CHECK(rsm_digest(a->rsm) == rsm_digest(b->rsm),
			      "hosts %u and %u: different tables (seq %" PRIu64 " / %" PRIu64 ")",
			      a->nodeid, b->nodeid, rsm_seq(a->rsm), rsm_seq(b->rsm));
			if (verbose && rsm_digest(a->rsm) != rsm_digest(b->rsm)) {
				dump_table(a);
				dump_table(b);
			}
		}
	}
}

/* ------------------------------------------------------------------------ */
/* random workload                                                           */

struct find_ctx {
	int res;
	uint64_t lkid, epoch;
	int n;
};

static void pick_granted(void *arg, const struct rsm_resource_view *v)
{
	struct find_ctx *f = arg;

	if (res_index(v->ls, v->name) != f->res)
		return;
	for (size_t i = 0; i < v->n_locks; i++)
		if (v->locks[i].queue == RSM_Q_GRANTED && rndn((uint32_t)++f->n) == 0) {
			f->lkid = v->locks[i].lkid;
			f->epoch = v->locks[i].epoch;
		}
}

static struct client *random_client(struct host *h)
{
	int alive[MAXC], n = 0;

	for (int i = 0; i < MAXC; i++)
		if (h->cl[i].alive && !h->cl[i].agent)
			alive[n++] = i;
	return n ? &h->cl[alive[rndn((uint32_t)n)]] : NULL;
}

static void random_client_op(struct host *h)
{
	struct client *c = random_client(h);
	struct cl_lock *l;
	unsigned flags;
	int r;

	if (!c || (c->n == 0 && chance(30))) {
		if (!c || chance(10))
			c = new_client(h, false);
		if (!c)
			return;
	}
	l = c->n ? &c->locks[rndn((uint32_t)c->n)] : NULL;
	r = (int)rndn(100);
	if (r < 35 || !l) {
		flags = 0;
		if (chance(20))
			flags |= VMFS_DLM_NOQUEUE;
		if (chance(10))
			flags |= VMFS_DLM_PERSISTENT;
		if (chance(5))
			flags = VMFS_DLM_ADOPT;
		if (c->n < MAXL - 4)
			do_request(h, c, (int)rndn(NRES), (int)rndn(6), flags, "vm-tag");
		return;
	}
	if (l->release_sent)
		return;
	if (r < 55) {
		if (l->state == CL_GRANTED) {
			char lvb[VMFS_DLM_LVB_LEN + 1];

			snprintf(lvb, sizeof(lvb), "v%" PRIu64, rnd() % 1000);
			do_release(h, c, l->lkid, chance(50) ? VMFS_DLM_VALBLK : 0, lvb);
		}
		return;
	}
	if (r < 75) {
		if (l->state == CL_GRANTED)
			do_convert(h, c, l, (int)rndn(6),
				   (chance(20) ? VMFS_DLM_NOQUEUE : 0) |
				   (chance(50) ? VMFS_DLM_VALBLK : 0), "conv-lvb");
		return;
	}
	if (r < 88) {
		do_cancel(h, c, l->lkid);
		return;
	}
	/* TRANSFER_SET: for each of our waiting requests (one per resource),
	 * some granted lock of its resource; now and then a stale epoch, a
	 * duplicate or a non-waiting target, which must refuse the whole set. */
	if (chance(40)) {
		struct vmfs_msg_xfer x[VMFS_MSG_XSET_MAX];
		bool used[NRES] = { false };
		uint32_t n = 0;

		for (int i = 0; i < c->n && n < VMFS_MSG_XSET_MAX; i++) {
			struct cl_lock *w = &c->locks[i];
			struct find_ctx f;

			if (w->state != CL_WAIT || w->res < 0 || used[w->res])
				continue;
			memset(&f, 0, sizeof(f));
			f.res = w->res;
			rsm_foreach_resource(h->rsm, res_ls[w->res], pick_granted, &f);
			if (!f.lkid)
				continue;
			used[w->res] = true;
			x[n].from_lkid = f.lkid;
			x[n].from_epoch = chance(10) ? f.epoch - 1 : f.epoch;
			x[n].to_lkid = w->lkid;
			n++;
		}
		if (n && n < VMFS_MSG_XSET_MAX && chance(5)) {
			x[n] = x[0];		/* a lock named twice */
			n++;
		}
		if (n)
			do_transfer_set(h, c, x, n);
		return;
	}
	/* TRANSFER: any granted lock of the resource to our waiting request. */
	if (l->state == CL_WAIT && l->res >= 0) {
		struct find_ctx f = { .res = l->res };

		rsm_foreach_resource(h->rsm, res_ls[l->res], pick_granted, &f);
		if (f.lkid)
			do_transfer(h, c, f.lkid, chance(15) ? f.epoch - 1 : f.epoch, l->lkid);
	}
}

static int ngroups_up(void)
{
	bool seen[MAXH + 1] = { false };
	int n = 0;

	for (int i = 0; i < nhosts; i++)
		if (!seen[hosts[i].group]) {
			seen[hosts[i].group] = true;
			n++;
		}
	return n;
}

static bool calm;	/* few crashes and partitions: contention builds up */

static void random_step(void)
{
	int r = (int)rndn(1000);
	struct host *h = &hosts[rndn((uint32_t)nhosts)];

	if (calm && r >= 885 && r < 935 && !chance(10))
		r = 0;

	if (r < 560) {
		if (h->up)
			random_client_op(h);
	} else if (r < 800) {
		for (int k = (int)rndn(6); k >= 0; k--)
			deliver_one();
	} else if (r < 840) {
		advance(50 + rndn(400));
	} else if (r < 870) {
		if (h->up) {
			struct client *c = random_client(h);

			if (c)
				client_gone(h, c);
		}
	} else if (r < 885) {
		/* the agent dies; a new one registers */
		if (h->up)
			for (int i = 0; i < MAXC; i++)
				if (h->cl[i].alive && h->cl[i].agent) {
					client_gone(h, &h->cl[i]);
					new_client(h, true);
					break;
				}
	} else if (r < 893) {
		int up = 0;

		for (int i = 0; i < nhosts; i++)
			up += hosts[i].up;
		if (h->up && up > 1)
			crash_host(h);
	} else if (r < 910) {
		if (!h->up) {
			restart_host(h);
			if (chance(70))
				new_client(h, true);
		}
	} else if (r < 916) {
		int groups[MAXH];

		for (int i = 0; i < nhosts; i++)
			groups[i] = hosts[i].group;
		groups[h - hosts] = (int)(1 + rndn((uint32_t)nhosts));
		if (chance(50))
			groups[rndn((uint32_t)nhosts)] = groups[h - hosts];
		set_groups(groups);
	} else if (r < 935) {
		if (ngroups_up() > 1) {
			int groups[MAXH];

			for (int i = 0; i < nhosts; i++)
				groups[i] = hosts[i].group == h->group ? 0 : hosts[i].group;
			if (chance(60))
				memset(groups, 0, sizeof(groups));
			set_groups(groups);
		}
	} else {
		drain();
	}
}

struct count_ctx {
	size_t locks, pending, non_orphan, recovering;
};

static void count_locks(void *arg, const struct rsm_resource_view *v)
{
	struct count_ctx *c = arg;

	for (size_t i = 0; i < v->n_locks; i++) {
		c->locks++;
		if (v->locks[i].queue != RSM_Q_GRANTED)
			c->pending++;
		if (!v->locks[i].orphan)
			c->non_orphan++;
		if (v->locks[i].recovering)
			c->recovering++;
	}
}

static void count_nodes(void *arg, const struct rsm_node_view *v)
{
	int *departed = arg;

	if (v->state != RSM_NODE_MEMBER)
		(*departed)++;
}

/* (d): heal, let fencing and recovery finish, stop every client. */
static void final_liveness(void)
{
	int groups[MAXH] = { 0 };

	set_groups(groups);
	for (int i = 0; i < nhosts; i++)
		if (!hosts[i].up) {
			restart_host(&hosts[i]);
			new_client(&hosts[i], true);
		}
	drain();
	for (int round = 0; round < 6; round++) {
		advance(FENCE_DELAY + 10);
		drain();
	}
	check_all(true);
	/* Clients stop: release what they hold, cancel what they wait for,
	 * until nothing is left (cancel races with grants, so repeat). */
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < nhosts; i++)
			for (int k = 0; k < MAXC; k++) {
				struct client *c = &hosts[i].cl[k];

				if (!c->alive)
					continue;
				for (int j = 0; j < c->n; j++) {
					struct cl_lock *l = &c->locks[j];

					if (l->state == CL_GRANTED && !l->release_sent)
						do_release(&hosts[i], c, l->lkid, 0, NULL);
					else if (l->state != CL_GRANTED)
						do_cancel(&hosts[i], c, l->lkid);
				}
			}
		drain();
		check_all(true);
	}
	for (int i = 0; i < nhosts; i++)
		for (int k = 0; k < MAXOPS; k++) {
			struct op *o = &hosts[i].ops[k];
			struct client *c = o->req ? client_by_id(&hosts[i], o->client) : NULL;

			CHECK(!c || o->done || c->bulk || hosts[i].next_req - o->req >= MAXOPS,
			      "host %u: op %u (kind %d) of client %u never answered",
			      hosts[i].nodeid, o->req, o->kind, o->client);
		}
	for (int i = 0; i < nhosts; i++) {
		struct count_ctx cc = { 0 };
		int departed = 0;

		rsm_foreach_resource(hosts[i].rsm, NULL, count_locks, &cc);
		rsm_foreach_node(hosts[i].rsm, count_nodes, &departed);
		CHECK(cc.pending == 0, "host %u: %zu requests still pending at the end",
		      hosts[i].nodeid, cc.pending);
		CHECK(cc.non_orphan == 0, "host %u: %zu non-orphan locks left after release",
		      hosts[i].nodeid, cc.non_orphan);
		if (verbose && cc.non_orphan)
			dump_table(&hosts[i]);
		CHECK(cc.recovering == 0 && departed == 0,
		      "host %u: %zu recovering locks, %d departed nodes left", hosts[i].nodeid,
		      cc.recovering, departed);
		CHECK(rsm_synced(hosts[i].rsm) && rsm_quorate(hosts[i].rsm), "host %u not synced",
		      hosts[i].nodeid);
	}
}

static void run_seed(uint64_t seed, long steps)
{
	int n = 3 + (int)(seed % 3);

	calm = seed % 2 == 0;
	cur_seed = seed;
	rng = seed * 0x9e3779b97f4a7c15ull + 1;
	cur_step = 0;
	sim_init(n);
	check_all(true);
	for (int i = 0; i < nhosts; i++)
		new_client(&hosts[i], true);
	drain();
	for (cur_step = 1; cur_step <= steps; cur_step++) {
		random_step();
		check_all(bus_n == 0);
		if (failures)
			break;
	}
	if (!failures)
		final_liveness();
	sim_fini();
}

/* ------------------------------------------------------------------------ */
/* directed tests                                                            */

/* The last lock this client knows on res, or NULL. */
static struct cl_lock *lock_on(struct client *c, int res)
{
	for (int i = c->n - 1; i >= 0; i--)
		if (c->locks[i].res == res)
			return &c->locks[i];
	return NULL;
}

static void directed_fifo(void)
{
	struct client *a, *b, *c;
	struct cl_lock *la, *lb, *lc;

	cur_seed = 0;
	sim_init(3);
	a = new_client(&hosts[0], false);
	b = new_client(&hosts[1], false);
	c = new_client(&hosts[2], false);
	do_request(&hosts[0], a, 0, VMFS_DLM_PR, 0, NULL);
	drain();
	do_request(&hosts[1], b, 0, VMFS_DLM_EX, 0, NULL);
	drain();
	do_request(&hosts[2], c, 0, VMFS_DLM_PR, 0, NULL);
	drain();
	la = lock_on(a, 0);
	lb = lock_on(b, 0);
	lc = lock_on(c, 0);
	CHECK(la && la->state == CL_GRANTED, "fifo: first PR granted");
	CHECK(lb && lb->state == CL_WAIT, "fifo: EX waits");
	CHECK(lc && lc->state == CL_WAIT, "fifo: later PR must not overtake the queued EX");
	CHECK(n_blocking[0] == 1 && last_ev[0].type == RSM_EV_BLOCKING &&
	      last_ev[0].mode == VMFS_DLM_EX, "fifo: PR holder told EX is wanted");
	do_release(&hosts[0], a, la->lkid, 0, NULL);
	drain();
	CHECK(lb->state == CL_GRANTED && lc->state == CL_WAIT, "fifo: EX granted next");
	do_release(&hosts[1], b, lb->lkid, 0, NULL);
	drain();
	CHECK(lc->state == CL_GRANTED, "fifo: PR granted last");
	check_all(true);
	sim_fini();
	memset(n_blocking, 0, sizeof(n_blocking));
}

static void directed_lvb_blocking(void)
{
	struct client *a, *b;
	struct cl_lock *la, *lb;
	uint64_t e1;

	sim_init(3);
	a = new_client(&hosts[0], false);
	b = new_client(&hosts[1], false);
	do_request(&hosts[0], a, 1, VMFS_DLM_EX, 0, NULL);
	drain();
	la = lock_on(a, 1);
	CHECK(la && la->state == CL_GRANTED, "lvb: EX granted");
	CHECK(last_ev[0].lvb_valid, "lvb: a new resource's LVB is valid");
	e1 = la->epoch;
	/* down-convert EX->PR writes the LVB */
	do_convert(&hosts[0], a, la, VMFS_DLM_PR, VMFS_DLM_VALBLK, "hello-lvb");
	drain();
	CHECK(la->mode == VMFS_DLM_PR && la->epoch == e1, "lvb: down-convert keeps the epoch");
	do_request(&hosts[1], b, 1, VMFS_DLM_CR, 0, NULL);
	drain();
	lb = lock_on(b, 1);
	CHECK(lb && lb->state == CL_GRANTED && last_ev[1].lvb_valid &&
	      memcmp(last_ev[1].lvb, "hello-lvb", 9) == 0, "lvb: value read by the next grant");
	CHECK(lb->epoch > e1, "lvb: new grant, new epoch");
	/* b wants EX: a (PR) gets a blocking callback for EX, once */
	do_convert(&hosts[1], b, lb, VMFS_DLM_EX, 0, NULL);
	drain();
	CHECK(lb->state == CL_CONV, "blocking: up-convert queued");
	CHECK(n_blocking[0] == 1 && last_ev[0].type == RSM_EV_BLOCKING &&
	      last_ev[0].lkid == la->lkid && last_ev[0].mode == VMFS_DLM_EX,
	      "blocking: holder told the wanted mode EX");
	do_release(&hosts[0], a, la->lkid, VMFS_DLM_VALBLK, "ignored-from-PR");
	drain();
	CHECK(lb->state == CL_GRANTED && lb->mode == VMFS_DLM_EX, "up-convert granted");
	CHECK(last_ev[1].lvb_valid && memcmp(last_ev[1].lvb, "hello-lvb", 9) == 0,
	      "lvb: a release from PR does not write the LVB");
	/* holder of EX dies: after fencing the LVB is invalid */
	a = new_client(&hosts[0], false);
	do_request(&hosts[0], a, 1, VMFS_DLM_PR, 0, NULL);
	drain();
	crash_host(&hosts[1]);
	drain();
	advance(FENCE_DELAY + 1);
	drain();
	la = lock_on(a, 1);
	CHECK(la && la->state == CL_GRANTED && !last_ev[0].lvb_valid,
	      "lvb: invalid after the EX holder was purged");
	check_all(true);
	sim_fini();
	memset(n_blocking, 0, sizeof(n_blocking));
}

static void directed_transfer(void)
{
	struct client *a, *b, *x;
	struct cl_lock *la, *lb;
	uint64_t e;

	sim_init(3);
	a = new_client(&hosts[0], false);
	b = new_client(&hosts[1], false);
	x = new_client(&hosts[2], false);
	do_request(&hosts[0], a, 0, VMFS_DLM_EX, 0, "vm1");
	drain();
	do_request(&hosts[1], b, 0, VMFS_DLM_EX, 0, "vm1");
	drain();
	la = lock_on(a, 0);
	lb = lock_on(b, 0);
	CHECK(la && la->state == CL_GRANTED && lb && lb->state == CL_WAIT, "transfer setup");
	if (!la || !lb)
		goto out;
	e = la->epoch;
	/* stale epoch is refused */
	do_transfer(&hosts[2], x, la->lkid, e + 7, lb->lkid);
	drain();
	CHECK(last_err[2] == VMFS_DLM_ESTALE, "transfer: stale epoch refused (%d)", last_err[2]);
	CHECK(lb->state == CL_WAIT && la->state == CL_GRANTED, "transfer: nothing moved");
	do_transfer(&hosts[2], x, la->lkid, e, lb->lkid);
	drain();
	CHECK(last_err[2] == 0, "transfer: done 0 (%d)", last_err[2]);
	CHECK(last_ev[0].type == RSM_EV_LOST && last_ev[0].reason == VMFS_DLM_LOST_TRANSFERRED,
	      "transfer: source told LOST(TRANSFERRED)");
	CHECK(lock_on(a, 0) == NULL, "transfer: source lock gone");
	CHECK(lb->state == CL_GRANTED && lb->epoch == e + 1, "transfer: target granted, epoch+1");
	/* the old epoch is stale now */
	do_request(&hosts[0], a, 0, VMFS_DLM_EX, 0, "vm1");
	drain();
	la = lock_on(a, 0);
	do_transfer(&hosts[2], x, lb->lkid, e, la->lkid);
	drain();
	CHECK(last_err[2] == VMFS_DLM_ESTALE, "transfer back with the old epoch refused");
	check_all(true);
out:
	sim_fini();
}

/* A hash of every lock (id, queue, modes, epoch, owner) and resource epoch:
 * unlike rsm_digest() it ignores the op counter and timestamps, so it shows
 * whether an operation changed any lock. */
static void locks_sig_visit(void *arg, const struct rsm_resource_view *v)
{
	uint64_t *h = arg;

	*h = (*h ^ v->epoch) * 0x100000001b3ull;
	for (size_t i = 0; i < v->n_locks; i++) {
		const struct rsm_lock_view *l = &v->locks[i];

		*h = (*h ^ l->lkid) * 0x100000001b3ull;
		*h = (*h ^ ((uint64_t)l->queue << 48 ^ (uint64_t)(l->mode + 1) << 40 ^
			    (uint64_t)(l->rqmode + 1) << 32 ^ l->nodeid)) * 0x100000001b3ull;
		*h = (*h ^ l->epoch) * 0x100000001b3ull;
	}
}

static uint64_t locks_sig(struct host *h)
{
	uint64_t sig = 0xcbf29ce484222325ull;

	rsm_foreach_resource(h->rsm, NULL, locks_sig_visit, &sig);
	return sig;
}

/* A VM with two disks moves at once: one stale epoch, a lock named twice or
 * a target on the wrong resource refuses the whole set with nothing moved;
 * the right set moves both locks in one step. */
static void directed_transfer_set(void)
{
	struct client *a, *b, *x, *w;
	struct cl_lock *la0, *la1, *lb0, *lb1, *lw;
	struct vmfs_msg_xfer t[3];
	uint64_t e0, e1, d;

	sim_init(3);
	a = new_client(&hosts[0], false);
	b = new_client(&hosts[1], false);
	x = new_client(&hosts[2], false);
	w = new_client(&hosts[2], false);
	do_request(&hosts[0], a, 0, VMFS_DLM_EX, 0, "vm1");
	do_request(&hosts[0], a, 1, VMFS_DLM_EX, 0, "vm1");
	drain();
	do_request(&hosts[1], b, 0, VMFS_DLM_EX, VMFS_DLM_PERSISTENT, "vm1");
	do_request(&hosts[1], b, 1, VMFS_DLM_EX, VMFS_DLM_PERSISTENT, "vm1");
	drain();
	do_request(&hosts[2], w, 1, VMFS_DLM_PR, 0, NULL);	/* queued behind */
	drain();
	la0 = lock_on(a, 0);
	la1 = lock_on(a, 1);
	lb0 = lock_on(b, 0);
	lb1 = lock_on(b, 1);
	lw = lock_on(w, 1);
	CHECK(la0 && la1 && lb0 && lb1 && lw && la0->state == CL_GRANTED &&
	      la1->state == CL_GRANTED && lb0->state == CL_WAIT && lb1->state == CL_WAIT &&
	      lw->state == CL_WAIT, "transfer set: setup");
	if (!la0 || !la1 || !lb0 || !lb1 || !lw)
		goto out;
	e0 = la0->epoch;
	e1 = la1->epoch;
	t[0] = (struct vmfs_msg_xfer){ la0->lkid, e0, lb0->lkid };
	t[1] = (struct vmfs_msg_xfer){ la1->lkid, e1 - 1, lb1->lkid };	/* stale */
	d = locks_sig(&hosts[0]);
	do_transfer_set(&hosts[2], x, t, 2);
	drain();
	CHECK(last_err[2] == VMFS_DLM_ESTALE, "transfer set: stale epoch refused (%d)",
	      last_err[2]);
	CHECK(la0->state == CL_GRANTED && la1->state == CL_GRANTED && lb0->state == CL_WAIT &&
	      lb1->state == CL_WAIT, "transfer set: nothing moved after a stale epoch");
	CHECK(locks_sig(&hosts[0]) == d, "transfer set: table unchanged after refusal");
	/* a lock named twice */
	t[1] = (struct vmfs_msg_xfer){ la1->lkid, e1, lb0->lkid };
	do_transfer_set(&hosts[2], x, t, 2);
	drain();
	CHECK(last_err[2] == -EINVAL, "transfer set: duplicate lock refused (%d)", last_err[2]);
	/* target on another resource */
	t[0] = (struct vmfs_msg_xfer){ la0->lkid, e0, lb1->lkid };
	t[1] = (struct vmfs_msg_xfer){ la1->lkid, e1, lb0->lkid };
	do_transfer_set(&hosts[2], x, t, 2);
	drain();
	CHECK(last_err[2] == VMFS_DLM_ENOLOCK, "transfer set: crossed targets refused (%d)",
	      last_err[2]);
	CHECK(locks_sig(&hosts[0]) == d && locks_sig(&hosts[1]) == d,
	      "transfer set: table unchanged after refusals");
	/* the right set */
	t[0] = (struct vmfs_msg_xfer){ la0->lkid, e0, lb0->lkid };
	t[1] = (struct vmfs_msg_xfer){ la1->lkid, e1, lb1->lkid };
	do_transfer_set(&hosts[2], x, t, 2);
	drain();
	CHECK(last_err[2] == 0, "transfer set: done 0 (%d)", last_err[2]);
	CHECK(lock_on(a, 0) == NULL && lock_on(a, 1) == NULL, "transfer set: sources gone");
	CHECK(lb0->state == CL_GRANTED && lb0->epoch == e0 + 1 && lb1->state == CL_GRANTED &&
	      lb1->epoch == e1 + 1, "transfer set: both targets granted, epoch+1");
	CHECK(lw->state == CL_WAIT, "transfer set: the waiter behind still waits");
	/* the sources' epochs are stale now: a second handoff is refused */
	do_request(&hosts[0], a, 0, VMFS_DLM_EX, 0, "vm1");
	do_request(&hosts[0], a, 1, VMFS_DLM_EX, 0, "vm1");
	drain();
	la0 = lock_on(a, 0);
	la1 = lock_on(a, 1);
	if (la0 && la1) {
		t[0] = (struct vmfs_msg_xfer){ lb0->lkid, e0, la0->lkid };
		t[1] = (struct vmfs_msg_xfer){ lb1->lkid, e1 + 1, la1->lkid };
		do_transfer_set(&hosts[2], x, t, 2);
		drain();
		CHECK(last_err[2] == VMFS_DLM_ESTALE, "transfer set back with an old epoch refused");
		CHECK(lb0->state == CL_GRANTED && lb1->state == CL_GRANTED,
		      "transfer set back: nothing moved");
	}
	check_all(true);
out:
	sim_fini();
}

static void directed_orphan(void)
{
	struct client *a, *b, *c;
	struct cl_lock *la;
	struct rsm_lock_view v;
	uint64_t lkid, epoch;

	sim_init(3);
	a = new_client(&hosts[0], false);
	do_request(&hosts[0], a, 2, VMFS_DLM_EX, VMFS_DLM_PERSISTENT, NULL);
	drain();
	la = lock_on(a, 2);
	CHECK(la && la->state == CL_GRANTED, "orphan: granted");
	if (!la)
		goto out;
	lkid = la->lkid;
	epoch = la->epoch;
	client_gone(&hosts[0], a);
	drain();
	CHECK(rsm_lock_lookup(hosts[1].rsm, lkid, &v) && v.orphan && v.client_id == 0 &&
	      v.queue == RSM_Q_GRANTED, "orphan: kept as orphan everywhere");
	c = new_client(&hosts[1], false);
	do_request(&hosts[1], c, 2, VMFS_DLM_EX, VMFS_DLM_ADOPT, NULL);
	drain();
	CHECK(last_err[1] == VMFS_DLM_ENOLOCK, "adopt from another host refused");
	b = new_client(&hosts[0], false);
	do_request(&hosts[0], b, 2, VMFS_DLM_NL, VMFS_DLM_ADOPT, "adopter");
	drain();
	CHECK(last_ev[0].type == RSM_EV_GRANTED && last_ev[0].lkid == lkid &&
	      last_ev[0].epoch == epoch && last_ev[0].mode == VMFS_DLM_EX,
	      "adopt: same lock, mode and epoch");
	CHECK(rsm_lock_lookup(hosts[2].rsm, lkid, &v) && !v.orphan && v.client_id == b->id &&
	      strcmp(v.tag, "adopter") == 0, "adopt: new owner recorded");
	check_all(true);
out:
	sim_fini();
}

static void directed_quorum_partition(void)
{
	struct client *a, *b;
	int groups[MAXH] = { 1, 0, 0, 0, 0 };
	uint64_t d_major;

	sim_init(3);
	a = new_client(&hosts[0], false);
	b = new_client(&hosts[1], false);
	set_groups(groups);
	CHECK(!rsm_quorate(hosts[0].rsm) && rsm_quorate(hosts[1].rsm), "partition quorum");
	do_request(&hosts[0], a, 3, VMFS_DLM_EX, VMFS_DLM_NOQUEUE, NULL);
	drain();
	CHECK(last_err[0] == VMFS_DLM_ENOQUORUM, "no quorum: NOQUEUE refused ENOQUORUM");
	do_request(&hosts[0], a, 3, VMFS_DLM_EX, 0, NULL);
	drain();
	CHECK(lock_on(a, 3) && lock_on(a, 3)->state == CL_WAIT, "no quorum: request waits");
	do_request(&hosts[1], b, 3, VMFS_DLM_EX, 0, NULL);
	drain();
	CHECK(lock_on(b, 3) && lock_on(b, 3)->state == CL_GRANTED, "majority grants");
	d_major = rsm_digest(hosts[1].rsm);
	memset(groups, 0, sizeof(groups));
	set_groups(groups);
	drain();
	CHECK(rsm_digest(hosts[0].rsm) == d_major && rsm_digest(hosts[2].rsm) == d_major,
	      "merge: everybody has the quorate side's table");
	CHECK(hosts[0].n_resets == 1 && !lock_on(a, 3), "merge: minority reset, request ended");
	check_all(true);
	sim_fini();
}

static void directed_departure(void)
{
	struct client *agent, *a, *c;
	struct rsm_lock_view v;
	struct cl_lock *lc;
	uint64_t lkid;

	sim_init(3);
	agent = new_client(&hosts[0], true);
	a = new_client(&hosts[2], false);
	c = new_client(&hosts[1], false);
	drain();
	do_request(&hosts[2], a, 4, VMFS_DLM_EX, 0, NULL);
	drain();
	lkid = lock_on(a, 4)->lkid;
	crash_host(&hosts[2]);
	do_request(&hosts[1], c, 4, VMFS_DLM_PW, 0, NULL);
	drain();
	lc = lock_on(c, 4);
	CHECK(rsm_lock_lookup(hosts[0].rsm, lkid, &v) && v.recovering && v.queue == RSM_Q_GRANTED,
	      "departed host's lock kept, recovering");
	CHECK(lc && lc->state == CL_WAIT, "no grant before the fence delay");
	advance(FENCE_DELAY / 2);
	drain();
	CHECK(lc->state == CL_WAIT && rsm_lock_lookup(hosts[1].rsm, lkid, &v),
	      "still held half way through the fence delay");
	/* Recovery must wait for the agent's DONE: hold it back by killing
	 * the event's answer — take the agent's host's bus message out. */
	advance(FENCE_DELAY / 2 + 1);
	CHECK(bus_n == 1, "leader sent FENCED");
	deliver_one();		/* FENCED: agent gets RECOVER and queues DONE */
	CHECK(hosts[0].n_recover == 1, "agent told to recover (%d)", hosts[0].n_recover);
	CHECK(lc->state == CL_WAIT && rsm_lock_lookup(hosts[1].rsm, lkid, &v),
	      "still held until RECOVERY_DONE");
	drain();
	CHECK(lc->state == CL_GRANTED, "granted after purge");
	CHECK(!rsm_lock_lookup(hosts[0].rsm, lkid, &v), "purged");
	(void)agent;
	/* the crashed host comes back and gets the table */
	restart_host(&hosts[2]);
	drain();
	CHECK(rsm_synced(hosts[2].rsm) && rsm_digest(hosts[2].rsm) == rsm_digest(hosts[0].rsm),
	      "join: snapshot loaded");
	check_all(true);
	sim_fini();
}

static void directed_bad_snapshot(void)
{
	/* A join whose snapshot is corrupted on the way: the joiner refuses
	 * it without crashing and stays unsynced; the others are unaffected. */
	uint8_t *buf;
	size_t len;

	sim_init(3);
	CHECK(rsm_encode_table(hosts[0].rsm, &buf, &len) == 0, "encode");
	free(buf);
	crash_host(&hosts[2]);
	{
		uint32_t before[MAXH][MAXH];
		size_t nb[MAXH];

		snapshot_views(before, nb);
		host_start(&hosts[2]);
		nb[2] = 0;
		deliver_confchgs(before, nb);
	}
	/* deliver NODE_INFOs, then corrupt the SNAPSHOT chunk body (and fix
	 * the frame's crc so it reaches the rsm) */
	while (bus_n) {
		struct bus_msg *bm = &bus[bus_head];

		if (bm->len > 32 + 16 && bm->buf[6] == VMFS_MSG_SNAPSHOT) {
			uint8_t *p = bm->buf;

			p[32 + 16 + 4] ^= 0xff;		/* the table version */
			p[24] = p[25] = p[26] = p[27] = 0;
			{
				uint32_t crc = crc32c(0, p, bm->len);

				p[24] = (uint8_t)crc;
				p[25] = (uint8_t)(crc >> 8);
				p[26] = (uint8_t)(crc >> 16);
				p[27] = (uint8_t)(crc >> 24);
			}
		}
		deliver_one();
	}
	CHECK(!rsm_synced(hosts[2].rsm) && rsm_synced(hosts[0].rsm), "bad snapshot refused");
	/* the next membership change repairs it */
	crash_host(&hosts[1]);
	drain();
	CHECK(rsm_synced(hosts[2].rsm) && rsm_digest(hosts[2].rsm) == rsm_digest(hosts[0].rsm),
	      "repaired by the next round");
	sim_fini();
}

/* A table larger than one SNAPSHOT chunk reaches a joiner intact. */
static void directed_big_snapshot(void)
{
	struct client *a;
	struct vmfs_msg m;
	size_t len;
	uint8_t *buf;

	sim_init(3);
	a = new_client(&hosts[0], false);
	a->bulk = true;
	for (int i = 0; i < 3000; i++) {
		char name[32];

		memset(&m, 0, sizeof(m));
		m.type = VMFS_MSG_REQUEST;
		m.u.request.o.client_id = a->id;
		m.u.request.o.req_id = 0;	/* outcomes not tracked by the model */
		m.u.request.mode = VMFS_DLM_PR;
		m.u.request.flags = VMFS_DLM_PERSISTENT;
		snprintf(name, sizeof(name), "big-%05d", i);
		vmfs_name_set(&m.u.request.ls, "bulk");
		vmfs_name_set(&m.u.request.res, name);
		vmfs_name_set(&m.u.request.program, "sim");
		client_send(&hosts[0], &m);
	}
	drain();
	/* the model does not know these locks: make them orphans */
	client_gone(&hosts[0], a);
	drain();
	CHECK(rsm_encode_table(hosts[0].rsm, &buf, &len) == 0 && len > 2 * 256 * 1024,
	      "big table: %zu bytes", len);
	free(buf);
	st_snapshots = 0;
	crash_host(&hosts[2]);
	drain();
	restart_host(&hosts[2]);
	drain();
	CHECK(st_snapshots == 1 && rsm_synced(hosts[2].rsm) &&
	      rsm_digest(hosts[2].rsm) == rsm_digest(hosts[0].rsm),
	      "big table: multi-chunk snapshot loaded");
	sim_fini();
}

/* Corrupt snapshot bodies (frame crc fixed so they reach the rsm): the
 * joiner must never crash, and must either refuse or load a table that
 * still satisfies the invariants. */
static void directed_snapshot_fuzz(int iters)
{
	for (int it = 0; it < iters; it++) {
		struct client *a, *b;

		sim_init(3);
		a = new_client(&hosts[0], true);
		b = new_client(&hosts[1], false);
		for (int k = 0; k < 6; k++) {
			do_request(&hosts[0], a, k % NRES, (int)rndn(6), VMFS_DLM_PERSISTENT, "t");
			do_request(&hosts[1], b, (k + 2) % NRES, (int)rndn(6), 0, NULL);
		}
		drain();
		crash_host(&hosts[2]);
		drain();
		{
			uint32_t before[MAXH][MAXH];
			size_t nb[MAXH];

			snapshot_views(before, nb);
			host_start(&hosts[2]);
			nb[2] = 0;
			deliver_confchgs(before, nb);
		}
		while (bus_n) {
			struct bus_msg *bm = &bus[bus_head];

			if (bm->len > 32 + 16 && bm->buf[6] == VMFS_MSG_SNAPSHOT) {
				uint8_t *p = bm->buf;
				int flips = 1 + (int)rndn(3);
				uint32_t crc;

				for (int f = 0; f < flips; f++)
					p[32 + 16 + rndn((uint32_t)(bm->len - 48))] ^=
						(uint8_t)(1u << rndn(8));
				memset(p + 24, 0, 4);
				crc = crc32c(0, p, bm->len);
				p[24] = (uint8_t)crc;
				p[25] = (uint8_t)(crc >> 8);
				p[26] = (uint8_t)(crc >> 16);
				p[27] = (uint8_t)(crc >> 24);
			}
			deliver_one();
		}
		/* whatever was loaded must still be a valid table */
		{
			struct res_check rc = { .h = &hosts[2], .can_grant = false };

			if (rsm_synced(hosts[2].rsm))
				rsm_foreach_resource(hosts[2].rsm, NULL, check_resource, &rc);
		}
		sim_fini();
	}
}

int main(void)
{
	const char *env_seed = getenv("TEST_SEED");
	const char *env_steps = getenv("TEST_STEPS");
	long steps = env_steps ? atol(env_steps) : 2000;
	uint64_t base = env_seed ? strtoull(env_seed, NULL, 0) : (uint64_t)time(NULL);
	int nseeds = env_seed ? 1 : 8;
	clock_t t0 = clock();

	verbose = getenv("TEST_VERBOSE") != NULL;
	directed_fifo();
	directed_lvb_blocking();
	directed_transfer();
	directed_transfer_set();
	directed_orphan();
	directed_quorum_partition();
	directed_departure();
	directed_bad_snapshot();
	directed_big_snapshot();
	rng = 12345;
	directed_snapshot_fuzz(300);
	if (failures) {
		fprintf(stderr, "test-rsm-sim: directed tests failed\n");
		return 1;
	}
	printf("test-rsm-sim: directed tests ok\n");
	for (int s = 0; s < nseeds && !failures; s++) {
		uint64_t seed = base + (uint64_t)s;

		printf("test-rsm-sim: seed %" PRIu64 " (replay with TEST_SEED=%" PRIu64
		       "), %ld steps, %d hosts, %s\n", seed, seed, steps, 3 + (int)(seed % 3),
		       seed % 2 == 0 ? "calm" : "chaotic");
		fflush(stdout);
		run_seed(seed, steps);
	}
	printf("test-rsm-sim: %lu grants, %lu refusals, %lu transfers ok, %lu stale, %lu lost, "
	       "%lu resets, %lu crashes, %lu partition changes, %lu snapshots, %lu messages, "
	       "%.1f s cpu\n", st_grants, st_refused, st_transfers_ok, st_transfers_stale, st_lost,
	       st_resets, st_crashes, st_partitions, st_snapshots, st_delivered,
	       (double)(clock() - t0) / CLOCKS_PER_SEC);
	if (failures) {
		fprintf(stderr, "test-rsm-sim: %d failures\n", failures);
		return 1;
	}
	printf("test-rsm-sim: ok\n");
	return 0;
}
