/* cluster.c — vmfs-mount and the lock manager (cluster.h, locking.h).
 *
 * Recovery of a dead host (DESIGN.md decision 3), as seen from here:
 *
 *   lock manager: host X left -> its locks stay granted, "recovering"
 *        (nobody can take X's inode, group or slot locks)
 *     -> fence delay passed (X's lease has surely lapsed: it stopped I/O)
 *     -> RECOVER(X) to one survivor's mount (the lowest registered agent)
 *   that mount: find X's slot(s) (the "s<n>" locks X holds), wait until the
 *        slot's heartbeat has stopped advancing, replay its journal and free
 *        its orphans under their groups' locks, mark the slot FREE, tell the
 *        lock manager "done"
 *   lock manager: purge X's locks -> waiters (e.g. another host's open of a
 *        file X had open) are granted.
 *
 * Why replaying is safe while X's locks are still held for it: what X's
 * journal can contain is only changes under locks X held at its death
 * (every handover marks the journal clean first, vol_handover()), and
 * those locks are exactly the ones nobody can take until the purge.
 */
#include "config.h"
#include "cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "alloc.h"
#include "log.h"
#include "vmfs/dlm.h"

/* ---- lock sets ---- */

static int kind_rank(enum vmfs_lk_kind k)
{
	switch (k) {
	case VMFS_LK_RENAME: return 0;
	case VMFS_LK_INODE: return 1;
	case VMFS_LK_ALLOC: return 2;
	default: return 3;
	}
}

static int lkh_cmp(const void *a, const void *b)
{
	const struct vmfs_lkh *x = a, *y = b;
	int rx = kind_rank(x->kind), ry = kind_rank(y->kind);

	if (rx != ry)
		return rx < ry ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

void lks_want(struct lkset *s, enum vmfs_lk_kind kind, uint64_t id, enum vmfs_lk_mode mode)
{
	for (int i = 0; i < s->n; i++) {
		if (s->h[i].kind == kind && s->h[i].id == id) {
			if ((int)mode > s->h[i].mode)
				s->h[i].mode = (int)mode;
			return;
		}
	}
	if (s->n == LKS_MAX) {
		log_err("lock set overflow (bug)");
		abort();
	}
	memset(&s->h[s->n], 0, sizeof(s->h[0]));
	s->h[s->n].kind = kind;
	s->h[s->n].id = id;
	s->h[s->n].mode = (int)mode;
	s->n++;
}

static int fenced(struct fsctx *c)
{
	return atomic_load(&c->lost) || diskio_fenced(c->v->dio) ? -EIO : 0;
}

static bool group_held_ex(const struct vmfs_lkh *h)
{
	return h->kind == VMFS_LK_ALLOC && h->held && h->mode == VMFS_LK_EX;
}

/* Note the group locks of h[0..n) as held (alloc.h): under vol.mu, once
 * granted, so the blocking callback (also under vol.mu) cannot miss it. */
static void mark_groups(struct fsctx *c, const struct vmfs_lkh *h, int n)
{
	struct vol *v = c->v;
	bool any = false;

	for (int i = 0; i < n && !any; i++)
		any = group_held_ex(&h[i]);
	if (!any || !v->rg_locked)
		return;
	pthread_mutex_lock(&v->mu);
	for (int i = 0; i < n; i++)
		if (group_held_ex(&h[i]) && v->rg_held && h[i].id < v->sb.nrgs)
			v->rg_held[h[i].id] = 1;
	pthread_mutex_unlock(&v->mu);
}

int lks_lock(struct fsctx *c, struct lkset *s)
{
	int rc = fenced(c);

	alloc_need_reset();	/* what the operation's checks ask for next */
	if (rc)
		return rc;
	qsort(s->h, (size_t)s->n, sizeof(s->h[0]), lkh_cmp);
	for (int i = 0; i < s->n; i++) {
		if (s->h[i].held)
			continue;
		rc = vmfs_lock(&c->lk, s->h[i].kind, s->h[i].id, (enum vmfs_lk_mode)s->h[i].mode, 0,
			       &s->h[i]);
		if (rc) {
			lks_unlock(c, s);
			return rc;
		}
	}
	mark_groups(c, s->h, s->n);
	return 0;
}

void lks_want_alloc(struct fsctx *c, struct lkset *s)
{
	uint32_t rg;

	pthread_mutex_lock(&c->v->mu);
	rg = c->v->rg_cur;
	pthread_mutex_unlock(&c->v->mu);
	lks_want(s, VMFS_LK_ALLOC, rg, VMFS_LK_EX);
}

int lks_regroup(struct fsctx *c, struct lkset *s, unsigned *tries)
{
	const struct rg_need *nd = alloc_need();

	lks_unlock(c, s);
	if (++*tries > 10000) {
		log_err("resource-group locks: no progress after %u rounds (bug)", *tries);
		return -EIO;
	}
	if (s->n + (int)nd->n > LKS_MAX) {
		/* keep the other locks; the groups asked for replace the set's */
		for (int i = 0; i < s->n;)
			if (s->h[i].kind == VMFS_LK_ALLOC)
				s->h[i] = s->h[--s->n];
			else
				i++;
	}
	for (unsigned k = 0; k < nd->n; k++)
		lks_want(s, VMFS_LK_ALLOC, nd->rg[k], VMFS_LK_EX);
	log_debug("resource-group locks: round %u asks for %u more", *tries, nd->n);
	alloc_need_reset();
	return lks_lock(c, s);
}

int lks_try_add(struct fsctx *c, struct lkset *s, enum vmfs_lk_kind kind, uint64_t id,
		enum vmfs_lk_mode mode)
{
	struct vmfs_lkh *h;
	int rc;

	for (int i = 0; i < s->n; i++)
		if (s->h[i].held && s->h[i].kind == kind && s->h[i].id == id &&
		    s->h[i].mode >= (int)mode)
			return 0;
	lks_want(s, kind, id, mode);
	for (h = s->h; h->kind != kind || h->id != id; h++)
		;
	if (h->held)		/* held weaker: no upgrade while holding others */
		return -EAGAIN;
	rc = vmfs_lock(&c->lk, kind, id, mode, VMFS_LK_TRY, h);
	if (rc) {
		/* forget the entry so lks_unlock does not see a half state */
		*h = s->h[--s->n];
	} else {
		mark_groups(c, h, 1);
	}
	return rc;
}

void lks_unlock(struct fsctx *c, struct lkset *s)
{
	for (int i = s->n - 1; i >= 0; i--)
		vmfs_unlock(&c->lk, &s->h[i]);
}

int lk_inode(struct fsctx *c, struct lkset *s, uint64_t ino, enum vmfs_lk_mode mode)
{
	lks_init(s);
	lks_want(s, VMFS_LK_INODE, ino, mode);
	return lks_lock(c, s);
}

int lk_inode_alloc(struct fsctx *c, struct lkset *s, uint64_t ino)
{
	lks_init(s);
	lks_want(s, VMFS_LK_INODE, ino, VMFS_LK_EX);
	lks_want_alloc(c, s);
	return lks_lock(c, s);
}

/* ---- callbacks from the lock manager ---- */

/* The cached blocks a lock covers, so that its handover forgets only those:
 * a block stays cached only while a lock covering it has been held since
 * it was read.  Inode locks cover inode, extent and directory blocks (a
 * handover of one forgets those of every inode: simpler, and still
 * correct); a group's lock covers its header and the chunk headers in its
 * blocks (only those are forgotten, fs_blocking); "r"
 * covers the parent pointers in inodes.  Blocks read under no covering
 * lock (orphans freed under group locks, recovery) are dropped by
 * whoever read them, at once. */
static uint32_t covered_types(enum vmfs_lk_kind kind)
{
	switch (kind) {
	case VMFS_LK_ALLOC: return VMFS_MC_ALLOC;
	case VMFS_LK_INODE:
	case VMFS_LK_RENAME: return VMFS_MC_INODES;
	default: return VMFS_MC_ALL;
	}
}

static int fs_blocking(void *arg, enum vmfs_lk_kind kind, uint64_t id)
{
	struct fsctx *c = arg;
	int rc;

	if (atomic_load(&c->lost))
		return -EIO;
	pthread_mutex_lock(&c->v->mu);
	if (kind == VMFS_LK_ALLOC && id < c->v->sb.nrgs) {
		/* a group's lock covers its header and the chunks in its blocks */
		uint64_t lo = vmfs_rg_first_block(&c->v->sb, (uint32_t)id) * c->v->mpb;

		rc = vol_handover_in(c->v, covered_types(kind), lo,
				     lo + (uint64_t)c->v->sb.rg_blocks * c->v->mpb);
		if (!rc && c->v->rg_held)
			c->v->rg_held[id] = 0;	/* alloc.h: no more changes there */
	} else {
		rc = vol_handover(c->v, covered_types(kind));
	}
	pthread_mutex_unlock(&c->v->mu);
	if (rc)
		log_err("cannot hand a lock over: %s (kept; retried)", vmfs_strerror(rc));
	return rc ? -EIO : 0;
}

static void fs_lease(void *arg, int valid)
{
	struct fsctx *c = arg;

	/* Decision 3: without a lease this host must not touch the disk. */
	diskio_fence(c->v->dio, !valid || atomic_load(&c->lost));
}

static void fs_lost(void *arg)
{
	struct fsctx *c = arg;

	atomic_store(&c->lost, true);
	diskio_fence(c->v->dio, true);
	log_err("this host lost cluster locks it cached: every request now fails with EIO; "
		"unmount and mount again");
}

static void fs_recover(void *arg, uint32_t nodeid)
{
	struct fsctx *c = arg;

	pthread_mutex_lock(&c->rmu);
	if (c->nrq < (int)(sizeof(c->rq) / sizeof(c->rq[0])))
		c->rq[c->nrq++] = nodeid;
	else
		log_err("recovery queue full; node %u is recovered later", nodeid);
	pthread_cond_signal(&c->rcond);
	pthread_mutex_unlock(&c->rmu);
}

/* ---- recovery of dead hosts ---- */

/* Slots whose lock "s<n>" node holds (recovering) in our lockspace. */
static int slots_of_node(struct fsctx *c, uint32_t nodeid, uint64_t *slots)
{
	vmfs_dlm_t *h = vmfs_locking_dlm_handle(&c->lk);
	json_object *root = NULL, *lss, *res;
	char *text = NULL;
	int rc;

	*slots = 0;
	rc = vmfs_dlm_query(h, "locks", c->ls, &text);
	if (rc)
		return -EIO;
	root = json_tokener_parse(text);
	if (!root || !json_object_object_get_ex(root, "lockspaces", &lss)) {
		rc = -EPROTO;
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(lss); i++) {
		json_object *ls = json_object_array_get_idx(lss, i), *name;

		if (!json_object_object_get_ex(ls, "name", &name) ||
		    strcmp(json_object_get_string(name), c->ls) ||
		    !json_object_object_get_ex(ls, "resources", &res))
			continue;
		for (size_t j = 0; j < json_object_array_length(res); j++) {
			json_object *r = json_object_array_get_idx(res, j), *rn, *locks;
			enum vmfs_lk_kind kind;
			uint64_t id;

			if (!json_object_object_get_ex(r, "name", &rn) ||
			    vmfs_lk_parse(json_object_get_string(rn), &kind, &id) ||
			    kind != VMFS_LK_SLOT || id >= VMFS_MAX_HOSTS ||
			    !json_object_object_get_ex(r, "locks", &locks))
				continue;
			for (size_t k = 0; k < json_object_array_length(locks); k++) {
				json_object *l = json_object_array_get_idx(locks, k), *nid;

				if (json_object_object_get_ex(l, "nodeid", &nid) &&
				    (uint32_t)json_object_get_int64(nid) == nodeid)
					*slots |= 1ull << id;
			}
		}
	}
out:
	json_object_put(root);
	free(text);
	return rc;
}

/* Recovery, part 1, while the lock manager still holds the dead host's
 * locks for it: wait until slot s's heartbeat has stopped, replay its
 * journal.  No lock is taken here: the dead host may hold any of them
 * (its group locks too), and they are only purged once we report done. */
static int recover_journal(struct fsctx *c, uint32_t s)
{
	struct vol *v = c->v;
	unsigned n = 0;
	bool live = true;
	int rc, waited = 0;

	/* Decision 3: the lock manager waited the fence delay; the disk must
	 * also show that the host stopped. */
	for (;;) {
		rc = slot_advancing(v, s, &live);
		if (rc || !live)
			break;
		if (waited++ % 10 == 0)
			log_warn("host slot %u: its owner left the cluster but its heartbeat still "
				 "advances; waiting before recovering it", s);
	}
	if (rc)
		return rc;
	pthread_mutex_lock(&v->mu);
	rc = journal_replay(v, s, &n);
	if (!rc)
		mc_drop_clean(v);	/* the replay wrote behind the cache */
	pthread_mutex_unlock(&v->mu);
	if (!rc)
		log_warn("host slot %u: %u journal blocks of its dead owner replayed", s, n);
	else
		log_err("host slot %u: journal replay failed: %s", s, vmfs_strerror(rc));
	return rc;
}

/* Part 2, after the purge: free the dead host's orphans (unlinked files it
 * still had open) under their groups' locks and the slot's own lock, and
 * mark the slot FREE.  If we die first, whoever next claims the slot (or
 * probes it at mount) sees it LIVE-but-dead and does this. */
int cluster_free_orphans(struct fsctx *c, struct lkset *ls, uint32_t slot)
{
	struct vol *v = c->v;
	unsigned tries = 0;

	for (;;) {
		int rc;

		pthread_mutex_lock(&v->mu);
		alloc_need_reset();
		rc = orphan_process(v, slot);
		mc_drop_clean(v);	/* the orphans' inodes were read under no inode lock */
		pthread_mutex_unlock(&v->mu);
		if (rc != VMFS_ENEEDRG)
			return rc;
		rc = lks_regroup(c, ls, &tries);
		if (rc)
			return rc;
	}
}

static int recover_orphans(struct fsctx *c, uint32_t s)
{
	struct vol *v = c->v;
	struct lkset slot, ls;
	int rc;

	/* The slot's lock is held throughout, apart from the group locks the
	 * frees ask for (which lks_regroup releases and takes again): released
	 * in between, a mounting host could claim the slot.  Taking group
	 * locks with a slot lock held is safe: nobody waits for a slot lock
	 * while holding a group lock (claims and recoveries hold none then),
	 * and every host holds its own slot's lock while it works anyway. */
	lks_init(&slot);
	lks_want(&slot, VMFS_LK_SLOT, s, VMFS_LK_EX);
	rc = lks_lock(c, &slot);
	if (rc)
		return rc;
	lks_init(&ls);
	rc = cluster_free_orphans(c, &ls, s);
	pthread_mutex_lock(&v->mu);
	if (!rc)
		rc = vol_commit(v);
	if (!rc)
		rc = slot_mark_free(v, s);
	pthread_mutex_unlock(&v->mu);
	lks_unlock(c, &ls);
	lks_unlock(c, &slot);
	if (rc)
		log_err("host slot %u: freeing its orphans failed: %s", s, vmfs_strerror(rc));
	return rc;
}

static void recover_node(struct fsctx *c, uint32_t nodeid)
{
	uint64_t slots;
	int rc = slots_of_node(c, nodeid, &slots);

	if (rc) {
		log_err("recovery of node %u: cannot read the lock table: %s", nodeid, strerror(-rc));
		return;		/* not done: its locks stay; nothing is corrupted */
	}
	for (uint32_t s = 0; s < VMFS_MAX_HOSTS; s++)
		if ((slots & (1ull << s)) && recover_journal(c, s))
			return;	/* keep its locks: better stuck than corrupt */
	rc = vmfs_locking_recovery_done(&c->lk, nodeid);
	if (rc) {
		log_err("recovery of node %u: cannot report done: %s", nodeid, vmfs_dlm_strerror(rc));
		return;
	}
	log_info("recovery of node %u: journals replayed (slots %#llx); its locks are released",
		 nodeid, (unsigned long long)slots);
	for (uint32_t s = 0; s < VMFS_MAX_HOSTS; s++)
		if (slots & (1ull << s))
			(void)recover_orphans(c, s);
}

static void *recovery_main(void *arg)
{
	struct fsctx *c = arg;

	pthread_mutex_lock(&c->rmu);
	while (!c->rstop) {
		uint32_t node;

		if (c->nrq == 0) {
			pthread_cond_wait(&c->rcond, &c->rmu);
			continue;
		}
		node = c->rq[0];
		memmove(c->rq, c->rq + 1, sizeof(c->rq[0]) * (size_t)--c->nrq);
		pthread_mutex_unlock(&c->rmu);
		recover_node(c, node);
		pthread_mutex_lock(&c->rmu);
	}
	pthread_mutex_unlock(&c->rmu);
	return NULL;
}

/* ---- mount / unmount ---- */

int cluster_mount(struct fsctx *c, int want, const char *host, uint64_t *recovered)
{
	static const struct vmfs_lk_hooks hooks = {
		.lease = fs_lease,
		.lost = fs_lost,
		.recover = fs_recover,
	};
	struct vol *v = c->v;
	int rc, chosen = -1;

	*recovered = 0;
	vmfs_uuid_str(v->sb.uuid, c->ls);
	pthread_mutex_init(&c->rmu, NULL);
	pthread_cond_init(&c->rcond, NULL);
	vmfs_locking_fini(&c->lk);
	rc = vmfs_locking_dlm_init(&c->lk, c->ls, fs_blocking, &hooks, c);
	if (rc) {
		if (vmfs_locking_single_init(&c->lk, NULL, c))
			abort();	/* cannot fail */
		return -ENOTCONN;
	}
	/* Other hosts change metadata: the kernel must ask us every time
	 * (file data is never cached: direct_io). */
	c->timeout = 0;
	rc = -pthread_create(&c->rec_tid, NULL, recovery_main, c);
	if (rc)
		return rc;
	c->rrunning = true;
	rc = openlock_tab_new(c->ls, &c->ol);
	if (!rc)
		rc = plock_tab_new(c->ls, &c->pl);
	if (rc == -ENOSYS) {
		log_warn("per-file open locks / POSIX locks not available in this build");
		rc = 0;
	}
	if (rc) {
		log_err("cannot set up open/POSIX locks: %s", strerror(-rc));
		return rc;
	}
	for (uint32_t s = 0; s < v->sb.max_hosts; s++) {
		struct vmfs_hb hb;
		unsigned n = 0;
		bool live;

		rc = vmfs_lock(&c->lk, VMFS_LK_SLOT, s, VMFS_LK_EX, VMFS_LK_TRY, &c->slot_lk[s]);
		if (rc == -EAGAIN)
			continue;	/* a member's, or being recovered */
		if (rc)
			return rc;
		rc = slot_advancing(v, s, &live);
		if (!rc && live) {
			log_err("host slot %u: its heartbeat advances but no cluster member holds "
				"its lock: a host outside this cluster (or mounted with -o local) "
				"uses the volume; refusing", s);
			rc = -EBUSY;
		}
		if (!rc)
			rc = slot_read_hb(v, s, &hb);
		if (!rc) {
			pthread_mutex_lock(&v->mu);
			rc = journal_replay(v, s, &n);
			pthread_mutex_unlock(&v->mu);
		}
		if (rc)
			return rc;
		if (hb.state == VMFS_HB_LIVE) {
			log_warn("host slot %u: previous owner died; %u journal blocks replayed", s, n);
			*recovered |= 1ull << s;
		}
		if (chosen < 0 && (want < 0 || want == (int)s))
			chosen = (int)s;
		else if (!(*recovered & (1ull << s)))
			vmfs_unlock(&c->lk, &c->slot_lk[s]);
	}
	if (chosen < 0) {
		log_err(want >= 0 ? "host slot %d is in use by another host" :
			"no free host slot (all %d in use)",
			want >= 0 ? want : (int)v->sb.max_hosts);
		return -EBUSY;
	}
	*recovered |= 1ull << chosen;	/* its orphans too */
	return slot_take(v, (uint32_t)chosen, host);
}

int cluster_finish_recovery(struct fsctx *c, uint64_t recovered)
{
	struct vol *v = c->v;
	struct lkset ls;
	int rc;

	lks_init(&ls);
	rc = 0;
	for (uint32_t s = 0; !rc && s < v->sb.max_hosts; s++) {
		if (!(recovered & (1ull << s)))
			continue;
		rc = cluster_free_orphans(c, &ls, s);
		pthread_mutex_lock(&v->mu);
		if (!rc && (int)s != v->slot)
			rc = slot_mark_free(v, s);
		pthread_mutex_unlock(&v->mu);
	}
	pthread_mutex_lock(&v->mu);
	if (!rc)
		rc = vol_commit(v);
	pthread_mutex_unlock(&v->mu);
	lks_unlock(c, &ls);
	for (uint32_t s = 0; s < v->sb.max_hosts; s++)
		if ((int)s != v->slot)
			vmfs_unlock(&c->lk, &c->slot_lk[s]);
	return rc;
}

void cluster_drop_locks(struct fsctx *c)
{
	vmfs_dlm_t *h = vmfs_locking_dlm_handle(&c->lk);
	int rc;

	if (c->ol) {
		openlock_tab_free(c->ol);
		c->ol = NULL;
	}
	if (c->pl) {
		plock_tab_free(c->pl);
		c->pl = NULL;
	}
	if (!h)
		return;
	rc = vmfs_dlm_cache_drop_all(h);
	if (rc && rc != -EBUSY && rc != VMFS_DLM_EDAEMON)	/* -EBUSY: the slot's, in use */
		log_warn("releasing cached locks: %s", vmfs_dlm_strerror(rc));
}

void cluster_stop(struct fsctx *c)
{
	if (!c->rrunning)
		return;
	pthread_mutex_lock(&c->rmu);
	c->rstop = true;
	pthread_cond_signal(&c->rcond);
	pthread_mutex_unlock(&c->rmu);
	pthread_join(c->rec_tid, NULL);
	c->rrunning = false;
}
