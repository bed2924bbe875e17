/* locking_dlm.c — the lock-manager backend of locking.h.
 *
 * Every fs lock is a use of a libvmfsdlm cached lock (include/vmfs/dlm.h,
 * "Cached locks"): re-taking a lock this host holds costs no message; when
 * another host wants it, the library calls flush() below once the lock is
 * idle, which runs the filesystem's blocking callback (commit, checkpoint,
 * forget the cache) and then lets the library release or demote the lock.
 *
 * One event thread polls the handle, so blocking callbacks, lease changes
 * and recovery requests are seen even while no FUSE request runs.  A flush
 * the filesystem cannot do right now (it returns an error) leaves the lock
 * with us; the event thread tries again shortly with cache_drop, so the
 * other host is not kept waiting for ever.
 */
#include "config.h"
#include "locking.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "vmfs/dlm.h"

_Static_assert(sizeof(struct vmfs_dlm_lksb) <= sizeof(((struct vmfs_lkh *)0)->cookie),
	       "vmfs_lkh.cookie must hold a lock status block");

#define RETRY_MS 20

/* Minimum hold time of the resource-group locks "a<N>" (GFS2's glock
 * hold time, the same idea): a host that was just granted one keeps its
 * group locks this long before honouring another host's demand.  A
 * handover costs a commit, a checkpoint and a cache drop on one side and
 * re-reading the group on the other; when hosts were allocating in the
 * same group without a hold time (one allocator lock then) they handed it
 * back and forth once per file (measured: 3 hosts together did a quarter
 * of what one host does alone).  With it each host batches the operations
 * of a whole hold.  The price: another host waits up to this long for a
 * group.  (One clock for all groups: "since this host last got a group
 * lock after giving one up".) */
#define ALLOC_HOLD_MS 50

struct dlm_be {
	vmfs_dlm_t *h;
	char ls[VMFS_DLM_NAME_MAX + 1];
	struct vmfs_locking *lk;
	struct vmfs_lk_hooks hooks;
	void *arg;
	atomic_int lease_ok;
	atomic_bool alloc_fresh;	/* next group lock follows a handover */
	atomic_uint handovers[5];	/* per vmfs_lk_kind: locks given up */
	_Atomic uint64_t alloc_since;	/* ms: when this host got a group lock */
	pthread_t tid;
	int wake[2];			/* pipe: stop the event thread */
	bool running;
	pthread_mutex_t mu;		/* retry list */
	/* Locks whose flush was deferred, to try again shortly.  It grows as
	 * needed: a deferral that is not recorded is never retried, and the
	 * other host waits for ever (a host can defer as many group locks as
	 * it holds, when they are demanded within their hold time). */
	char (*retry)[VMFS_DLM_NAME_MAX + 1];
	int nretry, retry_cap;
};

static void retry_add(struct dlm_be *b, const char *res)
{
	pthread_mutex_lock(&b->mu);
	for (int i = 0; i < b->nretry; i++)
		if (!strcmp(b->retry[i], res))
			goto out;
	if (b->nretry == b->retry_cap) {
		int cap = b->retry_cap ? b->retry_cap * 2 : 32;
		void *p = realloc(b->retry, (size_t)cap * sizeof(b->retry[0]));

		if (!p) {
			log_err("lock %s: flush deferred and no memory to retry it: another host "
				"may wait for it until this host's next use of it", res);
			goto out;
		}
		b->retry = p;
		b->retry_cap = cap;
	}
	snprintf(b->retry[b->nretry++], sizeof(b->retry[0]), "%s", res);
out:
	pthread_mutex_unlock(&b->mu);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int flush(void *ctx, const char *ls, const char *res, int held, int wanted)
{
	struct dlm_be *b = ctx;
	enum vmfs_lk_kind kind;
	uint64_t id;
	int rc;

	if (vmfs_lk_parse(res, &kind, &id))
		return 0;	/* not ours: nothing cached under it */
	/* Only an EX hold waits out its time.  A shared one must give way at
	 * once: two hosts holding a lock PR and both converting to EX each wait
	 * for the other, and the library breaks that tie by having one give
	 * way, which it will not do after a failed (deferred) flush. */
	if (kind == VMFS_LK_ALLOC && held == VMFS_DLM_EX && !atomic_load(&b->alloc_fresh) &&
	    now_ms() - atomic_load(&b->alloc_since) < ALLOC_HOLD_MS) {
		retry_add(b, res);	/* the hold time is not over */
		return -EAGAIN;
	}
	rc = b->lk->blocking ? b->lk->blocking(b->lk->blocking_arg, kind, id) : 0;
	if (rc == 0 && kind == VMFS_LK_ALLOC)
		atomic_store(&b->alloc_fresh, true);
	if (rc == 0 && (unsigned)kind < 5)
		atomic_fetch_add(&b->handovers[kind], 1);
	if (rc < 0) {
		log_debug("lock %s wanted %s by another host: flush deferred (%d)", res,
			  vmfs_dlm_mode_name(wanted), rc);
		retry_add(b, res);
	}
	return rc;
}

static void cb_lost(void *ctx, uint64_t lkid, int reason)
{
	struct dlm_be *b = ctx;

	log_err("lock manager: cached lock %llu lost (%s); the mount stops writing",
		(unsigned long long)lkid,
		reason == VMFS_DLM_LOST_PURGED ? "this host was fenced" :
		reason == VMFS_DLM_LOST_RESET ? "cluster state reset" : "transferred");
	if (b->hooks.lost)
		b->hooks.lost(b->arg);
}

static void cb_lease(void *ctx, int valid)
{
	struct dlm_be *b = ctx;

	if (atomic_exchange(&b->lease_ok, valid) != valid)
		log_warn("lease %s", valid ? "valid again" : "LOST: requests fail with EIO");
	if (b->hooks.lease)
		b->hooks.lease(b->arg, valid);
}

static void cb_recover(void *ctx, const char *ls, uint32_t nodeid)
{
	struct dlm_be *b = ctx;

	if (strcmp(ls, b->ls))
		return;
	if (b->hooks.recover)
		b->hooks.recover(b->arg, nodeid);
	else
		vmfs_dlm_recovery_done(b->h, ls, nodeid);
}

static void cb_completion(void *arg, const struct vmfs_dlm_lksb *lksb)
{
}

static void cb_blocking(void *ctx, uint64_t lkid, int wanted)
{
}

static void retry_flushes(struct dlm_be *b)
{
	char (*res)[VMFS_DLM_NAME_MAX + 1];
	int n;

	/* take the list: a flush that fails again adds to a new one */
	pthread_mutex_lock(&b->mu);
	res = b->retry;
	n = b->nretry;
	b->retry = NULL;
	b->nretry = b->retry_cap = 0;
	pthread_mutex_unlock(&b->mu);
	for (int i = 0; i < n; i++) {
		int rc = vmfs_dlm_cache_drop(b->h, b->ls, res[i]);

		/* -EBUSY: in use again; its last put flushes it.  A failed flush
		 * put it back on the list by itself. */
		if (rc && rc != -EBUSY && rc != VMFS_DLM_ENOLOCK && rc != -EAGAIN)
			log_debug("lock %s: retried release: %s", res[i], vmfs_dlm_strerror(rc));
	}
	free(res);
}

static void *event_main(void *arg)
{
	struct dlm_be *b = arg;

	for (;;) {
		struct pollfd p[2] = { { vmfs_dlm_fd(b->h), POLLIN, 0 }, { b->wake[0], POLLIN, 0 } };
		int timeout, rc;

		pthread_mutex_lock(&b->mu);
		timeout = b->nretry ? RETRY_MS : 1000;
		pthread_mutex_unlock(&b->mu);
		rc = poll(p, 2, timeout);
		if (rc < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		rc = vmfs_dlm_dispatch(b->h);
		if (rc == VMFS_DLM_EDAEMON) {
			/* lease(0) was delivered; nothing more will come */
			p[0].fd = -1;
			poll(&p[1], 1, -1);
			break;
		}
		retry_flushes(b);
	}
	return NULL;
}

static int map_err(int rc, const char *res)
{
	if (rc == VMFS_DLM_EAGAIN)
		return -EAGAIN;
	if (rc == -ENOMEM)
		return rc;
	log_err("lock %s: %s", res, vmfs_dlm_strerror(rc));
	return -EIO;
}

static int dlm_lock(void *be, struct vmfs_lkh *h, unsigned flags)
{
	struct dlm_be *b = be;
	struct vmfs_dlm_lksb *lksb = (struct vmfs_dlm_lksb *)(void *)h->cookie;
	char res[VMFS_DLM_NAME_MAX + 1];
	int rc;

	if (!atomic_load(&b->lease_ok))
		return -EIO;
	vmfs_lk_resname(h->kind, h->id, res, sizeof(res));
	memset(lksb, 0, sizeof(*lksb));
	rc = vmfs_dlm_cache_get(b->h, b->ls, res, h->mode,
				(flags & VMFS_LK_TRY) ? VMFS_DLM_NOQUEUE : 0, NULL, -1, lksb);
	if (rc)
		return map_err(rc, res);
	h->epoch = lksb->epoch;
	h->held = true;
	if (h->kind == VMFS_LK_ALLOC && atomic_exchange(&b->alloc_fresh, false))
		atomic_store(&b->alloc_since, now_ms());
	return 0;
}

static void dlm_unlock(void *be, struct vmfs_lkh *h)
{
	struct dlm_be *b = be;
	struct vmfs_dlm_lksb *lksb = (struct vmfs_dlm_lksb *)(void *)h->cookie;
	int rc = vmfs_dlm_cache_put(b->h, lksb);

	if (rc && rc != VMFS_DLM_EDAEMON)
		log_warn("lock release: %s", vmfs_dlm_strerror(rc));
	if (!rc && h->kind == VMFS_LK_SLOT) {
		char res[VMFS_DLM_NAME_MAX + 1];

		vmfs_lk_resname(h->kind, h->id, res, sizeof(res));
		rc = vmfs_dlm_cache_drop(b->h, b->ls, res);
		if (rc && rc != -EBUSY && rc != VMFS_DLM_ENOLOCK && rc != VMFS_DLM_EDAEMON)
			log_warn("releasing lock %s: %s", res, vmfs_dlm_strerror(rc));
	}
}

static void dlm_fini(void *be)
{
	struct dlm_be *b = be;

	if (!b)
		return;
	if (b->running) {
		if (write(b->wake[1], "x", 1) != 1)
			log_warn("cannot wake the lock event thread");
		pthread_join(b->tid, NULL);
	}
	log_info("metadata locks handed over to other hosts: %u inode, %u allocator, "
		 "%u rename, %u slot", atomic_load(&b->handovers[VMFS_LK_INODE]),
		 atomic_load(&b->handovers[VMFS_LK_ALLOC]), atomic_load(&b->handovers[VMFS_LK_RENAME]),
		 atomic_load(&b->handovers[VMFS_LK_SLOT]));
	/* Release (flushing first) every cached lock, so other hosts need not
	 * wait for the lock manager to notice we are gone. */
	if (b->h) {
		int rc = vmfs_dlm_cache_drop_all(b->h);

		if (rc && rc != VMFS_DLM_EDAEMON)
			log_warn("releasing cached locks: %s", vmfs_dlm_strerror(rc));
		vmfs_dlm_close(b->h);
	}
	close(b->wake[0]);
	close(b->wake[1]);
	pthread_mutex_destroy(&b->mu);
	free(b->retry);
	free(b);
}

static const struct vmfs_lockops dlm_ops = {
	.name = "lock manager",
	.lock = dlm_lock,
	.unlock = dlm_unlock,
	.fini = dlm_fini,
};

int vmfs_locking_dlm_init(struct vmfs_locking *lk, const char *ls, vmfs_lk_blocking_cb cb,
			  const struct vmfs_lk_hooks *hooks, void *arg)
{
	static const struct vmfs_dlm_callbacks cbs = {
		.completion = cb_completion,
		.blocking = cb_blocking,
		.lost = cb_lost,
		.lease = cb_lease,
		.recover = cb_recover,
	};
	struct dlm_be *b = calloc(1, sizeof(*b));
	int rc;

	if (!b)
		return -ENOMEM;
	if (pipe2(b->wake, O_CLOEXEC)) {
		free(b);
		return -errno;
	}
	pthread_mutex_init(&b->mu, NULL);
	snprintf(b->ls, sizeof(b->ls), "%s", ls);
	b->lk = lk;
	if (hooks)
		b->hooks = *hooks;
	b->arg = arg;
	atomic_store(&b->lease_ok, 1);
	atomic_store(&b->alloc_fresh, true);
	lk->ops = &dlm_ops;
	lk->be = b;
	lk->blocking = cb;
	lk->blocking_arg = arg;
	lk->cluster = true;
	rc = vmfs_dlm_open("vmfs-mount", &b->h);
	if (rc) {
		log_err("cannot connect to vmfs-dlmd: %s", vmfs_dlm_strerror(rc));
		b->h = NULL;
		goto fail;
	}
	vmfs_dlm_set_callbacks(b->h, &cbs, b);
	vmfs_dlm_cache_set_flush(b->h, flush, b);
	if (hooks && hooks->recover) {
		rc = vmfs_dlm_recovery_register(b->h, ls);
		if (rc) {
			log_err("cannot register as recovery agent of %s: %s", ls,
				vmfs_dlm_strerror(rc));
			goto fail;
		}
	}
	rc = -pthread_create(&b->tid, NULL, event_main, b);
	if (rc)
		goto fail;
	b->running = true;
	return 0;
fail:
	dlm_fini(b);
	lk->ops = NULL;
	lk->be = NULL;
	return rc < 0 && rc > -4096 ? rc : -EIO;
}

struct vmfs_dlm *vmfs_locking_dlm_handle(struct vmfs_locking *lk)
{
	return lk->ops == &dlm_ops ? ((struct dlm_be *)lk->be)->h : NULL;
}

int vmfs_locking_recovery_done(struct vmfs_locking *lk, uint32_t nodeid)
{
	struct dlm_be *b = lk->ops == &dlm_ops ? lk->be : NULL;

	return b ? vmfs_dlm_recovery_done(b->h, b->ls, nodeid) : 0;
}
