/* spare.c — spare mblks (see spare.h). */
#include "config.h"
#include "spare.h"

#include <errno.h>

#include "alloc.h"
#include "inode.h"
#include "slot.h"

/* Orphan-list entries kept free for files unlinked while open. */
#define ORPHAN_RESERVE 64

bool spare_ok(const struct vol *v)
{
	return v->nspare >= SPARE_RESERVE && v->nspare + SPARE_RESERVE <= SPARE_CAP;
}

int spare_push(struct vol *v, uint64_t addr)
{
	struct vmfs_inode in;
	int rc;

	if (v->nspare >= SPARE_CAP)
		return -EAGAIN;
	rc = inode_init_at(v, addr, 0, 0, 0, 0, &in);
	if (!rc)
		rc = orphan_add(v, addr);
	if (!rc)
		v->spare[v->nspare++] = addr;
	return rc;
}

void spare_forget(struct vol *v, uint64_t addr)
{
	for (unsigned k = 0; k < v->nspare; k++) {
		if (v->spare[k] == addr) {
			v->spare[k] = v->spare[--v->nspare];
			return;
		}
	}
}

int spare_pop(struct vol *v, uint64_t *addr)
{
	int rc;

	if (!v->nspare)
		return -EAGAIN;
	rc = orphan_del(v, v->spare[v->nspare - 1]);
	if (!rc)
		*addr = v->spare[--v->nspare];
	return rc;
}

int spare_rebalance(struct vol *v)
{
	int room = orphan_room(v);
	int rc = 0;

	if (room < 0)
		return room;
	v->spare_mode = false;	/* the real allocator from here */
	while (!rc && v->nspare < SPARE_FILL && room-- > ORPHAN_RESERVE) {
		uint64_t addr;

		rc = alloc_mblk(v, &addr);
		if (rc == -ENOSPC)
			return 0;	/* a full volume simply has fewer spares */
		if (!rc)
			rc = spare_push(v, addr);
	}
	/* Give back the spares of groups this host holds (alloc.h): the
	 * others would only come back to the pool. */
	for (unsigned k = v->nspare; !rc && k-- > 0 && v->nspare > SPARE_FILL;) {
		uint64_t addr = v->spare[k];

		if (!rg_usable(v, (uint32_t)alloc_rg_of(v, addr / v->mpb)))
			continue;
		v->spare[k] = v->spare[v->nspare - 1];
		v->spare[v->nspare - 1] = addr;
		rc = spare_pop(v, &addr);
		if (!rc)
			rc = free_mblk(v, addr);
	}
	return rc;
}
