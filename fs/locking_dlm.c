/* locking_dlm.c — the lock-manager backend of locking.h (in progress). */
#include "config.h"
#include "locking.h"

#include <errno.h>

int vmfs_locking_dlm_init(struct vmfs_locking *lk, const char *ls, vmfs_lk_blocking_cb cb, void *arg)
{
	(void)lk; (void)ls; (void)cb; (void)arg;
	return -ENOSYS;
}
