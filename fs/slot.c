/* slot.c — host slots: heartbeat, claim/release, recovery, orphan list. */
#include "config.h"
#include "slot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inode.h"
#include "io.h"
#include "log.h"
#include "spare.h"

int slot_read_hb(struct vol *v, uint32_t slot, struct vmfs_hb *hb)
{
	uint64_t addr = vmfs_slot_addr(&v->sb, slot) + VMFS_SLOT_HB;
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	int rc;

	if (!blk)
		return -ENOMEM;
	rc = diskio_pread(v->dio, blk, VMFS_MBLK, addr * VMFS_MBLK);
	if (!rc) {
		rc = vmfs_hb_decode(blk, addr, v->sb.uuid, hb);
		if (!rc && hb->slot != slot)
			rc = VMFS_EBADFIELD;
	}
	free(blk);
	return rc;
}

int slot_write_hb(struct vol *v, const struct vmfs_hb *hb)
{
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	int rc;

	if (!blk)
		return -ENOMEM;
	vmfs_hb_encode(hb, blk);
	rc = diskio_pwrite(v->dio, blk, VMFS_MBLK, hb->h.self * VMFS_MBLK);
	free(blk);
	return rc;
}

int slot_probe(struct vol *v, bool tolerate_bad, uint64_t *live, uint64_t *dead, uint64_t *bad)
{
	struct vmfs_hb hb;
	uint64_t counter[VMFS_MAX_HOSTS], mid[VMFS_MAX_HOSTS], cand = 0;
	unsigned period = 0;
	int rc;

	*live = *dead = 0;
	if (bad)
		*bad = 0;
	for (uint32_t s = 0; s < v->sb.max_hosts; s++) {
		rc = slot_read_hb(v, s, &hb);
		if (rc) {
			vol_report_bad(v, VMFS_T_HB, vmfs_slot_addr(&v->sb, s) + VMFS_SLOT_HB, rc);
			if (!tolerate_bad || rc > -2000)
				return rc;
			if (bad)
				*bad |= 1ull << s;
			continue;
		}
		if (hb.state != VMFS_HB_LIVE)
			continue;
		cand |= 1ull << s;
		counter[s] = hb.counter;
		mid[s] = hb.mount_id;
		if (hb.period_ms > period)
			period = hb.period_ms;
	}
	if (!cand)
		return 0;
	if (period < v->sb.hb_period_ms)
		period = v->sb.hb_period_ms;
	if (period > 60000)
		period = 60000;
	usleep((useconds_t)period * 1500);
	for (uint32_t s = 0; s < v->sb.max_hosts; s++) {
		if (!(cand & (1ull << s)))
			continue;
		rc = slot_read_hb(v, s, &hb);
		if (!rc && hb.state == VMFS_HB_LIVE && hb.counter == counter[s] && hb.mount_id == mid[s])
			*dead |= 1ull << s;
		else
			*live |= 1ull << s;	/* moved (or changed under us): alive */
	}
	return 0;
}

int slot_claim(struct vol *v, int want, const char *host, uint64_t *recovered)
{
	uint64_t live, dead;
	struct vmfs_hb hb;
	int rc, slot = -1;

	*recovered = 0;
	rc = slot_probe(v, false, &live, &dead, NULL);
	if (rc)
		return rc;
	for (uint32_t s = 0; s < v->sb.max_hosts; s++) {
		if (live & (1ull << s)) {
			log_err("host slot %u is live (its heartbeat advances): another host has this "
				"volume mounted; mounting on several hosts needs the lock manager", s);
			return -EBUSY;
		}
	}
	/* Single host: every journal must be replayed before anything is read. */
	for (uint32_t s = 0; s < v->sb.max_hosts; s++) {
		unsigned n;

		rc = journal_replay(v, s, &n);
		if (rc)
			return rc;
		if (dead & (1ull << s)) {
			log_warn("host slot %u: previous owner died; recovered (%u journal blocks)", s, n);
			*recovered |= 1ull << s;
		}
	}
	for (uint32_t s = 0; s < v->sb.max_hosts && slot < 0; s++) {
		if (want >= 0 && (int)s != want)
			continue;
		rc = slot_read_hb(v, s, &hb);
		if (rc)
			return rc;
		if (hb.state == VMFS_HB_FREE || (dead & (1ull << s)))
			slot = (int)s;
	}
	if (slot < 0) {
		log_err(want >= 0 ? "host slot %d is not free" : "no free host slot (max %d hosts)",
			want >= 0 ? want : (int)v->sb.max_hosts);
		return -EBUSY;
	}
	return slot_take(v, (uint32_t)slot, host);
}

int slot_take(struct vol *v, uint32_t slot, const char *host)
{
	uint64_t ckpt, last;
	struct vmfs_hb hb;
	bool dirty;
	int rc;

	rc = journal_scan(v, slot, &ckpt, &last, &dirty);
	if (rc)
		return rc;
	v->slot = (int)slot;
	v->seq = last;
	v->clean_seq = dirty ? 0 : last;
	memset(&hb, 0, sizeof(hb));
	vmfs_hdr_init(&hb.h, VMFS_T_HB, vmfs_slot_addr(&v->sb, slot) + VMFS_SLOT_HB, v->sb.uuid);
	hb.slot = slot;
	hb.state = VMFS_HB_LIVE;
	hb.counter = 1;
	hb.wall_ms = now_wall_ms();
	hb.mount_id = now_ns() ^ ((uint64_t)getpid() << 32);
	hb.period_ms = v->sb.hb_period_ms;
	hb.pid = (uint32_t)getpid();
	strncpy(hb.host, host, sizeof(hb.host) - 1);
	rc = slot_write_hb(v, &hb);
	if (!rc)
		rc = diskio_sync(v->dio);
	if (!rc)
		log_info("claimed host slot %u", slot);
	return rc;
}

int slot_advancing(struct vol *v, uint32_t slot, bool *live)
{
	struct vmfs_hb a, b;
	int rc = slot_read_hb(v, slot, &a);

	*live = false;
	if (rc || a.state != VMFS_HB_LIVE)
		return rc;
	usleep((useconds_t)v->sb.hb_period_ms * 1500);
	rc = slot_read_hb(v, slot, &b);
	if (!rc)
		*live = b.state == VMFS_HB_LIVE && b.counter != a.counter;
	return rc;
}

int slot_mark_free(struct vol *v, uint32_t slot)
{
	struct vmfs_hb hb;
	int rc = slot_read_hb(v, slot, &hb);

	if (rc || hb.state == VMFS_HB_FREE)
		return rc;
	hb.state = VMFS_HB_FREE;
	hb.counter++;
	hb.wall_ms = now_wall_ms();
	rc = slot_write_hb(v, &hb);
	if (!rc)
		rc = diskio_sync(v->dio);
	return rc;
}

int slot_release(struct vol *v)
{
	struct vmfs_hb hb;
	int rc;

	if (v->slot < 0)
		return 0;
	rc = slot_read_hb(v, (uint32_t)v->slot, &hb);
	if (rc)
		return rc;
	hb.state = VMFS_HB_FREE;
	hb.counter++;
	hb.wall_ms = now_wall_ms();
	rc = slot_write_hb(v, &hb);
	if (!rc)
		rc = diskio_sync(v->dio);
	return rc;
}

static void *hb_main(void *arg)
{
	struct hb_thread *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		struct timespec dl;
		int rc;

		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_nsec += (long)(t->v->sb.hb_period_ms % 1000) * 1000000L;
		dl.tv_sec += t->v->sb.hb_period_ms / 1000 + dl.tv_nsec / 1000000000L;
		dl.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&t->cond, &t->mu, &dl);
		if (t->stop)
			break;
		if (diskio_fenced(t->v->dio))
			continue;	/* lease lost: the disk is not ours to write */
		t->hb.counter++;
		t->hb.wall_ms = now_wall_ms();
		rc = slot_write_hb(t->v, &t->hb);
		if (rc)
			log_err("host slot %u: heartbeat write failed: %s", t->hb.slot, vmfs_strerror(rc));
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

int hb_start(struct hb_thread *t, struct vol *v)
{
	int rc;

	memset(t, 0, sizeof(*t));
	t->v = v;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cond, NULL);
	rc = slot_read_hb(v, (uint32_t)v->slot, &t->hb);
	if (rc)
		return rc;
	rc = -pthread_create(&t->tid, NULL, hb_main, t);
	if (!rc)
		t->running = true;
	return rc;
}

void hb_stop(struct hb_thread *t)
{
	if (!t->running)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->tid, NULL);
	t->running = false;
}

/* The orphan list of slot: its cached block (*mbp) and a decoded copy
 * (*op, malloc'ed: the list is too big for a stack; the caller frees it). */
static int orphan_load(struct vol *v, uint32_t slot, struct mbuf **mbp, struct vmfs_orphan **op)
{
	uint64_t addr = vmfs_slot_addr(&v->sb, slot) + VMFS_SLOT_ORPHAN;
	struct vmfs_orphan *o = malloc(sizeof(*o));
	int rc;

	*op = NULL;
	if (!o)
		return -ENOMEM;
	rc = mc_get(v, addr, VMFS_T_ORPHAN, mbp);
	if (!rc) {
		rc = vmfs_orphan_decode((*mbp)->data, addr, v->sb.uuid, o);
		if (rc)
			vol_report_bad(v, VMFS_T_ORPHAN, addr, rc);
	}
	if (rc)
		free(o);
	else
		*op = o;
	return rc;
}

/* Write o back into its block (committed with the next transaction). */
static void orphan_store(struct vol *v, struct mbuf *mb, const struct vmfs_orphan *o)
{
	vmfs_orphan_encode(o, mb->data);
	mc_dirty(v, mb);
}

int orphan_add(struct vol *v, uint64_t ino)
{
	struct vmfs_orphan *o;
	struct mbuf *mb;
	int rc = orphan_load(v, (uint32_t)v->slot, &mb, &o);

	if (rc)
		return rc;
	if (o->count == VMFS_ORPHAN_MAX) {
		/* fsck reclaims an unlisted orphan after a crash */
		log_warn("orphan list full; inode %llu not listed", (unsigned long long)ino);
	} else {
		o->ino[o->count++] = ino;
		orphan_store(v, mb, o);
	}
	free(o);
	return 0;
}

int orphan_room(struct vol *v)
{
	struct vmfs_orphan *o;
	struct mbuf *mb;
	int rc = orphan_load(v, (uint32_t)v->slot, &mb, &o);

	if (rc)
		return rc;
	rc = (int)(VMFS_ORPHAN_MAX - o->count);
	free(o);
	return rc;
}

int orphan_listed(struct vol *v, uint64_t ino)
{
	struct vmfs_orphan *o;
	struct mbuf *mb;
	int rc = orphan_load(v, (uint32_t)v->slot, &mb, &o);

	for (uint32_t i = 0; !rc && i < o->count; i++)
		if (o->ino[i] == ino)
			rc = 1;
	free(o);
	return rc;
}

/* Take ino off slot's list, if it is there. */
static int orphan_drop(struct vol *v, uint32_t slot, uint64_t ino)
{
	struct vmfs_orphan *o;
	struct mbuf *mb;
	int rc = orphan_load(v, slot, &mb, &o);

	if (rc)
		return rc;
	for (uint32_t i = 0; i < o->count; i++) {
		if (o->ino[i] != ino)
			continue;
		o->ino[i] = o->ino[--o->count];
		orphan_store(v, mb, o);
		break;
	}
	free(o);
	return 0;
}

int orphan_del(struct vol *v, uint64_t ino)
{
	return orphan_drop(v, (uint32_t)v->slot, ino);
}

int orphan_process(struct vol *v, uint32_t slot)
{
	/* From the end, one at a time, each taken off the list once freed: a
	 * step that needs more group locks (VMFS_ENEEDRG, alloc.h) leaves the
	 * rest listed, the current one (partly freed) included. */
	for (;;) {
		struct vmfs_orphan *o;
		struct vmfs_inode in;
		struct mbuf *mb;
		uint64_t ino;
		int rc = orphan_load(v, slot, &mb, &o);

		if (rc)
			return rc;
		if (o->count == 0) {
			free(o);
			break;
		}
		ino = o->ino[o->count - 1];
		free(o);
		/* Only an inode that is really unlinked may go. */
		if (!vol_inode_get(v, ino, &in) && in.nlink == 0) {
			rc = inode_release(v, ino);
			if (rc)
				return rc;
			log_info("slot %u: freed orphan inode %llu", slot, (unsigned long long)ino);
		}
		rc = orphan_drop(v, slot, ino);	/* reloaded: the free may have changed it */
		if (rc)
			return rc;
		if ((int)slot == v->slot)
			spare_forget(v, ino);
	}
	if ((int)slot == v->slot)
		v->nspare = 0;	/* the spares (spare.h) were on that list: freed */
	return vol_commit(v);
}
