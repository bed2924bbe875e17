/* locking.c — the single-host locking backend: every request is granted at
 * once and no blocking callback ever fires, because no other host can hold
 * a lock (the mount refuses to start while another host's heartbeat is
 * live). */
#include "config.h"
#include "locking.h"

#include <errno.h>
#include <stddef.h>

static int single_lock(void *be, enum vmfs_lk_kind kind, uint64_t id, enum vmfs_lk_mode mode,
		       unsigned flags)
{
	if (mode > VMFS_LK_EX || kind < VMFS_LK_INODE || kind > VMFS_LK_SLOT)
		return -EINVAL;
	return 0;
}

static int single_unlock(void *be, enum vmfs_lk_kind kind, uint64_t id)
{
	return 0;
}

static void single_fini(void *be)
{
}

static const struct vmfs_lockops single_ops = {
	.name = "single-host",
	.lock = single_lock,
	.unlock = single_unlock,
	.fini = single_fini,
};

int vmfs_locking_single_init(struct vmfs_locking *lk, vmfs_lk_blocking_cb cb, void *arg)
{
	lk->ops = &single_ops;
	lk->be = NULL;
	lk->blocking = cb;
	lk->blocking_arg = arg;
	return 0;
}

void vmfs_locking_fini(struct vmfs_locking *lk)
{
	if (lk->ops)
		lk->ops->fini(lk->be);
	lk->ops = NULL;
}
