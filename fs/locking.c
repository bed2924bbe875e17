/* locking.c — resource names, and the single-host locking backend: every
 * request is granted at once and no blocking callback ever fires, because
 * no other host can hold a lock (the mount refuses to start while another
 * host's heartbeat is live). */
#include "config.h"
#include "locking.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

void vmfs_lk_resname(enum vmfs_lk_kind kind, uint64_t id, char *buf, size_t len)
{
	switch (kind) {
	case VMFS_LK_INODE:
		snprintf(buf, len, "m%" PRIu64, id);
		break;
	case VMFS_LK_ALLOC:
		snprintf(buf, len, "a%" PRIu64, id);
		break;
	case VMFS_LK_SLOT:
		snprintf(buf, len, "s%" PRIu64, id);
		break;
	case VMFS_LK_RENAME:
		snprintf(buf, len, "r");
		break;
	default:
		snprintf(buf, len, "?");
	}
}

int vmfs_lk_parse(const char *res, enum vmfs_lk_kind *kind, uint64_t *id)
{
	char *end;

	if (res[0] == 'r' && res[1] == 0) {
		*kind = VMFS_LK_RENAME;
		*id = 0;
		return 0;
	}
	if ((res[0] != 'm' && res[0] != 's' && res[0] != 'a') || res[1] < '0' || res[1] > '9')
		return -EINVAL;
	errno = 0;
	*id = strtoull(res + 1, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*kind = res[0] == 'm' ? VMFS_LK_INODE : res[0] == 'a' ? VMFS_LK_ALLOC : VMFS_LK_SLOT;
	return 0;
}

static int single_lock(void *be, struct vmfs_lkh *h, unsigned flags)
{
	if (h->mode > VMFS_LK_EX || h->kind < VMFS_LK_INODE || h->kind > VMFS_LK_RENAME)
		return -EINVAL;
	h->held = true;
	h->epoch = 0;
	return 0;
}

static void single_unlock(void *be, struct vmfs_lkh *h)
{
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
	lk->cluster = false;
	return 0;
}

void vmfs_locking_fini(struct vmfs_locking *lk)
{
	if (lk->ops)
		lk->ops->fini(lk->be);
	lk->ops = NULL;
}
