/* test-alloc.c — the resource-group locks' side of fs/alloc.c, on a real
 * (offline) volume with the group locks "in force" (rg_locked) and the
 * held set set by hand, as the blocking callback and lks_lock would:
 * where hosts start (bit-reversed slots), what the checks ask for when a
 * group is missing or full (empty groups first), that allocation stays in
 * held groups and a free in a group not held is refused without a change,
 * where a step of a large free splits, and that an mblk freed in a group
 * not held becomes a spare.
 * Usage: test-alloc [DIR] (default $TMPDIR or /tmp). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/alloc.h"
#include "fs/format.h"
#include "fs/inode.h"
#include "fs/spare.h"

static int failures;

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "FAIL line %d: ", __LINE__);            \
			fprintf(stderr, __VA_ARGS__);                           \
			fputc('\n', stderr);                                    \
			failures++;                                             \
		}                                                               \
	} while (0)

static bool needs(uint32_t rg)
{
	const struct rg_need *n = alloc_need();

	for (unsigned k = 0; k < n->n; k++)
		if (n->rg[k] == rg)
			return true;
	return false;
}

static int64_t group_of_slot(const char *path, int slot)
{
	struct vol *v;
	int64_t rc;

	if (vol_open(path, VOL_OFFLINE, false, &v, NULL))
		return -1;
	v->slot = slot;
	v->rg_locked = true;
	rc = alloc_init(v) ? -1 : (int64_t)v->rg_pref;
	vol_close(v);
	return rc;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char path[4096], msg[256];
	struct format_opts o;
	struct vol *v;
	uint64_t b, b2, addr;
	uint32_t got, nrgs, g, other, split;
	struct xmap m = { 0 };
	unsigned spares;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/test-alloc.%d.img", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 2ll << 30)) {
		perror(path);
		return 99;
	}
	close(fd);
	format_defaults(&o);
	o.max_hosts = 64;		/* small groups, many of them */
	o.journal_bytes = 1 << 20;
	if (format_volume(path, &o, msg, sizeof(msg))) {
		fprintf(stderr, "format: %s\n", msg);
		unlink(path);
		return 99;
	}

	/* where hosts start: slots 0, 1, 2, 3 at 0, 1/2, 1/4, 3/4 */
	if (vol_open(path, VOL_OFFLINE, false, &v, NULL)) {
		unlink(path);
		return 99;
	}
	nrgs = v->sb.nrgs;
	vol_close(v);
	CHECK(nrgs >= 64, "only %u groups", nrgs);
	CHECK(group_of_slot(path, 0) == 0, "slot 0 starts at %lld", (long long)group_of_slot(path, 0));
	CHECK(group_of_slot(path, 1) == nrgs / 2, "slot 1 starts at %lld of %u",
	      (long long)group_of_slot(path, 1), nrgs);
	CHECK(group_of_slot(path, 2) == nrgs / 4, "slot 2 starts at %lld of %u",
	      (long long)group_of_slot(path, 2), nrgs);
	CHECK(group_of_slot(path, 3) == 3 * nrgs / 4, "slot 3 starts at %lld of %u",
	      (long long)group_of_slot(path, 3), nrgs);

	if (vol_open(path, VOL_OFFLINE, false, &v, NULL)) {
		unlink(path);
		return 99;
	}
	pthread_mutex_lock(&v->mu);
	v->slot = 1;
	v->rg_locked = true;
	rc = alloc_init(v);
	CHECK(rc == 0, "alloc_init: %d", rc);
	g = v->rg_pref;

	/* nothing held: nothing allocated, the own group asked for */
	alloc_need_reset();
	rc = alloc_room(v, 1);
	CHECK(rc == VMFS_ENEEDRG && needs(g), "room with no group held: %d, asks for own group %d",
	      rc, needs(g));
	rc = alloc_blocks(v, 0, 1, VMFS_B_DATA, &b, &got);
	CHECK(rc == -ENOSPC, "allocation with no group held: %d", rc);

	/* the own group held: allocation lands there */
	v->rg_held[g] = 1;
	alloc_need_reset();
	CHECK(alloc_room(v, 2) == 0, "room in the own group");
	rc = alloc_blocks(v, 0, 2, VMFS_B_DATA, &b, &got);
	CHECK(rc == 0 && alloc_rg_of(v, b) == g, "allocated %llu in group %lld, not %u (rc %d)",
	      (unsigned long long)b, (long long)alloc_rg_of(v, b), g, rc);

	/* a free in a group not held: refused, nothing changed, group asked */
	other = (g + 7) % nrgs;
	v->rg_held[other] = 1;
	rc = alloc_blocks(v, vmfs_rg_first_block(&v->sb, other) + 1, 1, VMFS_B_DATA, &b2, &got);
	CHECK(rc == 0 && alloc_rg_of(v, b2) == other, "allocation at a goal in group %u", other);
	v->rg_held[other] = 0;
	alloc_need_reset();
	rc = free_blocks(v, b2, 1);
	CHECK(rc == VMFS_ENEEDRG && needs(other), "free in a group not held: %d", rc);
	v->rg_held[other] = 1;
	alloc_need_reset();
	rc = free_blocks(v, b2, 1);
	CHECK(rc == 0, "the same free with the group held: %d", rc);

	/* the own group full: the next empty group is asked for, skipping
	 * one another host is using (partly full) */
	for (;;) {
		rc = alloc_blocks(v, 0, 64, VMFS_B_DATA, &b2, &got);
		if (rc || alloc_rg_of(v, b2) != g)
			break;
	}
	for (uint32_t i = 0; i < nrgs; i++)
		v->rg_held[i] = i == g;
	v->rg_cur = g;
	v->rg_hint[(g + 1) % nrgs] = 3;		/* partly used elsewhere */
	alloc_need_reset();
	rc = alloc_room(v, 1);
	CHECK(rc == VMFS_ENEEDRG && !needs((g + 1) % nrgs) && needs((g + 2) % nrgs),
	      "own group full: %d, asks for the partly used next %d, the empty one after %d", rc,
	      needs((g + 1) % nrgs), needs((g + 2) % nrgs));

	/* a large free in steps: extents in held A, not held B, held C (by
	 * logical block): the step frees from the end down to B's end */
	{
		uint32_t A = g, B = (g + 3) % nrgs, C = (g + 4) % nrgs;

		v->rg_held[A] = v->rg_held[C] = 1;
		v->rg_held[B] = 0;
		rc = xmap_insert(&m, 0, (uint32_t)vmfs_rg_first_block(&v->sb, A) + 2, 2, 0);
		if (!rc)
			rc = xmap_insert(&m, 10, (uint32_t)vmfs_rg_first_block(&v->sb, B) + 2, 3, 0);
		if (!rc)
			rc = xmap_insert(&m, 20, (uint32_t)vmfs_rg_first_block(&v->sb, C) + 2, 4, 0);
		CHECK(rc == 0, "xmap_insert: %d", rc);
		alloc_need_reset();
		split = alloc_free_split(v, &m, 0, UINT32_MAX);
		CHECK(split == 13 && needs(B) && !needs(A) && !needs(C),
		      "split %u (want 13), asks B %d A %d C %d", split, needs(B), needs(A), needs(C));
		v->rg_held[B] = 1;
		alloc_need_reset();
		split = alloc_free_split(v, &m, 0, UINT32_MAX);
		CHECK(split == 0 && alloc_need()->n == 0, "all held: split %u", split);
		xmap_release(&m);
	}

	/* an mblk freed in a group not held becomes a spare of this host */
	for (uint32_t i = 0; i < nrgs; i++)
		v->rg_held[i] = i == g;
	rc = alloc_mblk(v, &addr);
	CHECK(rc == 0 && alloc_rg_of(v, addr / v->mpb) == g, "mblk %llu in group %lld (rc %d)",
	      (unsigned long long)addr, (long long)alloc_rg_of(v, addr / v->mpb), rc);
	v->rg_held[g] = 0;
	spares = v->nspare;
	rc = free_mblk(v, addr);
	CHECK(rc == 0 && v->nspare == spares + 1 && v->spare[v->nspare - 1] == addr,
	      "mblk freed in a group not held: rc %d, spares %u -> %u", rc, spares, v->nspare);
	/* and the pool gives it back only under its group's lock */
	v->nspare = SPARE_CAP - 1;
	for (unsigned k = 0; k < v->nspare; k++)
		v->spare[k] = addr;
	alloc_need_reset();
	rc = alloc_mblk_frees(v, 4);
	CHECK(rc == VMFS_ENEEDRG && needs(g), "pool full: %d, asks for the spares' group %d", rc,
	      needs(g));
	v->nspare = 0;

	/* a page of a small file (fs/pages.h) is written in place at once: it
	 * is never an mblk freed in the running transaction (a crash would
	 * leave the freeing file mapping new data); metadata may reuse it */
	v->rg_held[g] = 1;
	{
		uint64_t a1, a2, p;
		bool reused = false;

		rc = alloc_mblk(v, &a1);
		if (!rc)
			rc = alloc_mblk(v, &a2);
		if (!rc)
			rc = free_mblk(v, a1);
		if (!rc)
			rc = free_mblk(v, a2);
		CHECK(rc == 0, "alloc/free mblks: %d", rc);
		for (int k = 0; k < 4 && !rc; k++) {
			rc = alloc_page(v, &p);
			reused |= p == a1 || p == a2;
		}
		CHECK(rc == 0 && !reused, "a page reused an mblk freed in this transaction (rc %d)", rc);
		rc = alloc_mblk(v, &p);
		CHECK(rc == 0 && (p == a1 || p == a2), "metadata does not reuse the freed mblk (%llu)",
		      (unsigned long long)p);
		rc = vol_commit(v);
		CHECK(rc == 0 && v->npmfree == 0, "commit: %d, pending %zu", rc, v->npmfree);
		v->spare_mode = true;
		CHECK(alloc_page(v, &p) == -EAGAIN, "a page in spare mode");
		v->spare_mode = false;
	}

	pthread_mutex_unlock(&v->mu);
	vol_close(v);
	unlink(path);
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("test-alloc: resource-group checks OK (%u groups)\n", nrgs);
	return 0;
}
