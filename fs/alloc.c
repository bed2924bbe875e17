/* alloc.c — resource-group block allocator and meta-chunk slot allocator. */
#include "config.h"
#include "alloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "inode.h"
#include "log.h"
#include "spare.h"

static __thread struct rg_need need;

struct rg_need *alloc_need(void)
{
	return &need;
}

void alloc_need_reset(void)
{
	need.n = 0;
}

/* Ask for RG i; false once the list is full. */
static bool need_add(uint32_t i)
{
	for (unsigned k = 0; k < need.n; k++)
		if (need.rg[k] == i)
			return true;
	if (need.n == RG_NEED_MAX)
		return false;
	need.rg[need.n++] = i;
	return true;
}

int64_t alloc_rg_of(const struct vol *v, uint64_t b)
{
	if (b < v->sb.rg_start || b >= v->sb.nblocks)
		return -1;
	return (int64_t)((b - v->sb.rg_start) / v->sb.rg_blocks);
}

static int rg_load(struct vol *v, uint32_t i, struct mbuf **mbp, struct vmfs_rg *rg)
{
	uint64_t addr = vmfs_rg_addr(&v->sb, i);
	int rc = mc_get(v, addr, VMFS_T_RG, mbp);

	if (rc)
		return rc;
	rc = vmfs_rg_decode((*mbp)->data, addr, v->sb.uuid, rg);
	if (!rc && (rg->index != i || rg->first_block != vmfs_rg_first_block(&v->sb, i)))
		rc = VMFS_EBADFIELD;
	if (rc)
		vol_report_bad(v, VMFS_T_RG, addr, rc);
	else if (v->rg_hint)
		v->rg_hint[i] = rg->free_blocks;
	return rc;
}

static void rg_store(struct vol *v, struct mbuf *mb, const struct vmfs_rg *rg)
{
	vmfs_rg_encode(rg, mb->data);
	mc_dirty(v, mb);
}

int alloc_recount(struct vol *v)
{
	struct vmfs_rg *rg = malloc(sizeof(*rg));
	uint64_t sum = 0;
	int rc = 0;

	if (!rg)
		return -ENOMEM;
	for (uint32_t i = 0; i < v->sb.nrgs; i++) {
		struct mbuf *mb;

		rc = rg_load(v, i, &mb, rg);
		if (rc)
			goto out;
		sum += rg->free_blocks;
		if (!rg_usable(v, i))	/* read under no lock: not for keeping */
			mc_forget(v, vmfs_rg_addr(&v->sb, i));
	}
	v->free_blocks = sum;
	v->free_stale = false;
	v->recount_ns = now_ns();
out:
	free(rg);
	return rc;
}

/* Where host slot starts: slots bit-reversed, so the first hosts to mount
 * (slots 0, 1, 2, 3...) start at 0, 1/2, 1/4, 3/4... of the volume, far
 * apart whatever the number of slots the volume has. */
static uint32_t pref_group(int slot, uint32_t max_hosts, uint32_t nrgs)
{
	unsigned bits = 0;
	uint32_t r = 0;

	while ((1u << bits) < max_hosts)
		bits++;
	for (unsigned b = 0; b < bits; b++)
		if ((uint32_t)slot & (1u << b))
			r |= 1u << (bits - 1 - b);
	return (uint32_t)((uint64_t)r * nrgs >> bits) % nrgs;
}

int alloc_init(struct vol *v)
{
	if (!v->rg_held)
		v->rg_held = calloc(v->sb.nrgs, sizeof(*v->rg_held));
	if (!v->rg_hint)
		v->rg_hint = calloc(v->sb.nrgs, sizeof(*v->rg_hint));
	if (!v->rg_held || !v->rg_hint)
		return -ENOMEM;
	v->rg_pref = v->slot >= 0 ? pref_group(v->slot, v->sb.max_hosts, v->sb.nrgs) : 0;
	v->rg_cur = v->rg_pref;
	v->chunk_hint = 0;
	return alloc_recount(v);
}

int alloc_settle(struct vol *v, uint64_t want)
{
	uint64_t pending = 0;

	if (!v->npfree || v->rdonly)
		return 0;
	for (size_t i = 0; i < v->npfree; i++)
		pending += v->pfree[i].len;
	if (pending > v->free_blocks || want > v->free_blocks - pending)
		return vol_commit(v);
	return 0;
}

int alloc_room(struct vol *v, uint64_t want)
{
	struct vmfs_rg *rg;
	uint64_t have = 0;
	int rc = 0;

	if (!v->rg_locked)
		return 0;
	rg = malloc(sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	for (uint32_t i = 0; i < v->sb.nrgs && have < want; i++) {
		struct mbuf *mb;

		if (!rg_usable(v, i))
			continue;
		rc = rg_load(v, i, &mb, rg);
		if (rc)
			goto out;
		have += rg->free_blocks;
	}
	if (have >= want)
		goto out;
	/* Not enough in the held groups: ask for the next ones that had room
	 * when last seen, from the one this host allocates in; empty ones
	 * first, as a group partly used is likely another host's current one. */
	for (int pass = 0; pass < 2 && have < want; pass++) {
		for (uint32_t k = 0; k < v->sb.nrgs && have < want; k++) {
			uint32_t i = (v->rg_cur + k) % v->sb.nrgs;
			uint64_t size = v->sb.nblocks - vmfs_rg_first_block(&v->sb, i);

			if (size > v->sb.rg_blocks)
				size = v->sb.rg_blocks;
			if (rg_usable(v, i) || v->rg_hint[i] == 0 ||
			    (pass == 0 && v->rg_hint[i] < size - 1))	/* - 1: its header */
				continue;
			if (!need_add(i))
				break;
			have += v->rg_hint[i];
		}
	}
	if (need.n)
		rc = VMFS_ENEEDRG;
	else if (now_ns() - v->recount_ns > 1000000000ull && !alloc_recount(v))
		rc = alloc_room(v, want);	/* other hosts may have freed some */
	else
		rc = -ENOSPC;
out:
	free(rg);
	return rc;
}

/* Add the groups of blocks [start, start+len) that are not held. */
static bool need_range(struct vol *v, uint64_t start, uint64_t len, bool *all_held)
{
	int64_t a = alloc_rg_of(v, start), b = alloc_rg_of(v, start + len - 1);

	if (a < 0 || b < 0)
		return true;	/* a damaged extent: free_blocks reports it */
	for (int64_t i = a; i <= b; i++) {
		if (rg_usable(v, (uint32_t)i))
			continue;
		*all_held = false;
		if (!need_add((uint32_t)i))
			return false;
	}
	return true;
}

bool alloc_need_block(struct vol *v, uint64_t b)
{
	bool held = true;

	need_range(v, b, 1, &held);
	return held;
}

uint32_t alloc_free_split(struct vol *v, const struct xmap *m, uint32_t from, uint32_t to)
{
	uint32_t split = from;
	bool all = true;

	if (!v->rg_locked)
		return from;
	for (uint32_t k = m->n; k-- > 0;) {
		const struct vmfs_extent *e = &m->e[k];
		uint64_t s = e->lblk > from ? e->lblk : from;
		uint64_t t = (uint64_t)e->lblk + e->len < to ? (uint64_t)e->lblk + e->len : to;
		bool before = all;

		if (t <= s)
			continue;
		if (!need_range(v, e->pblk + (s - e->lblk), t - s, &all))
			break;
		if (before && !all)	/* the first extent (from the end) not held */
			split = (uint32_t)t;
	}
	return all ? from : split;
}

int alloc_mblk_frees(struct vol *v, uint64_t n)
{
	if (!v->rg_locked || v->spare_mode || SPARE_CAP - v->nspare >= n)
		return 0;
	/* The pool is too full to take them: let it give spares back to
	 * their groups first (spare_rebalance), under their locks. */
	for (unsigned k = 0; k < v->nspare; k++) {
		uint32_t i = (uint32_t)alloc_rg_of(v, v->spare[k] / v->mpb);

		if (!rg_usable(v, i) && !need_add(i))
			break;
	}
	if (need.n)
		return VMFS_ENEEDRG;
	return spare_rebalance(v);
}

static bool pending(const struct vol *v, uint64_t b)
{
	for (size_t i = 0; i < v->npfree; i++)
		if (b >= v->pfree[i].start && b < v->pfree[i].start + v->pfree[i].len)
			return true;
	return false;
}

/* Take a run inside RG i beginning at index first; returns blocks taken. */
static uint32_t take_run(struct vol *v, struct vmfs_rg *rg, uint32_t first, uint32_t want,
			 unsigned state)
{
	uint32_t n = 0;

	while (first + n < rg->nblocks && n < want &&
	       vmfs_rg_get(rg, first + n) == VMFS_B_FREE &&
	       !pending(v, rg->first_block + first + n)) {
		vmfs_rg_set(rg, first + n, state);
		n++;
	}
	rg->free_blocks -= n;
	return n;
}

int alloc_blocks(struct vol *v, uint64_t goal, uint32_t want, unsigned state,
		 uint64_t *start, uint32_t *got)
{
	struct vmfs_rg *rg;
	int64_t grg = goal ? alloc_rg_of(v, goal) : -1;
	uint32_t first_rg;
	int rc = -ENOSPC;

	if (grg >= 0 && !rg_usable(v, (uint32_t)grg))
		grg = -1;
	first_rg = grg >= 0 ? (uint32_t)grg : v->rg_cur % v->sb.nrgs;

	if (v->spare_mode) {	/* a caller's bug: spare.h */
		log_err("data blocks wanted in spare mode (no group lock)");
		return -EAGAIN;
	}
	rg = malloc(sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	if (want == 0)
		want = 1;
	for (uint32_t k = 0; k < v->sb.nrgs; k++) {
		uint32_t i = (first_rg + k) % v->sb.nrgs;
		struct mbuf *mb;
		uint32_t n = 0, j = 0;

		if (!rg_usable(v, i))
			continue;
		rc = rg_load(v, i, &mb, rg);
		if (rc)
			goto out;
		rc = -ENOSPC;
		if (rg->free_blocks == 0)
			continue;
		/* The goal first: it keeps a growing file contiguous. */
		if (k == 0 && grg >= 0) {
			j = (uint32_t)(goal - rg->first_block);
			n = take_run(v, rg, j, want, state);
		}
		if (n == 0)
			for (j = 0; j < rg->nblocks; j++)
				if (vmfs_rg_get(rg, j) == VMFS_B_FREE &&
				    !pending(v, rg->first_block + j)) {
					n = take_run(v, rg, j, want, state);
					break;
				}
		if (n == 0)
			continue;
		rg_store(v, mb, rg);
		v->free_blocks -= n;
		if (v->rg_hint)
			v->rg_hint[i] = rg->free_blocks;
		if (grg < 0 || i != (uint32_t)grg)
			v->rg_cur = i;	/* where room was: start there next time */
		*start = rg->first_block + j;
		*got = n;
		rc = 0;
		break;
	}
out:
	free(rg);
	return rc;
}

int free_blocks(struct vol *v, uint64_t start, uint32_t len)
{
	struct vmfs_rg *rg;
	int rc = 0;

	if (v->spare_mode) {	/* a caller's bug: spare.h */
		log_err("data blocks freed in spare mode (no group lock)");
		return -EAGAIN;
	}
	rg = malloc(sizeof(*rg));

	if (!rg)
		return -ENOMEM;
	while (len > 0) {
		int64_t i = alloc_rg_of(v, start);
		struct mbuf *mb;
		uint32_t j, n;

		if (i < 0) {
			rc = VMFS_EBADFIELD;
			goto out;
		}
		if (!rg_usable(v, (uint32_t)i)) {	/* a caller's bug: no check */
			log_err("freeing block %llu of resource group %lld without its lock",
				(unsigned long long)start, (long long)i);
			need_add((uint32_t)i);
			rc = VMFS_ENEEDRG;
			goto out;
		}
		rc = rg_load(v, (uint32_t)i, &mb, rg);
		if (rc)
			goto out;
		j = (uint32_t)(start - rg->first_block);
		for (n = 0; n < len && j + n < rg->nblocks; n++) {
			if (vmfs_rg_get(rg, j + n) != VMFS_B_DATA) {
				log_err("freeing block %llu which is not allocated data",
					(unsigned long long)(start + n));
				rc = VMFS_EBADFIELD;
				goto out;
			}
			vmfs_rg_set(rg, j + n, VMFS_B_FREE);
		}
		rg->free_blocks += n;
		rg_store(v, mb, rg);
		v->free_blocks += n;
		if (v->rg_hint)
			v->rg_hint[i] = rg->free_blocks;
		if (v->mode == VOL_MOUNT) {
			if (v->npfree == v->pfree_cap) {
				size_t cap = v->pfree_cap ? v->pfree_cap * 2 : 64;
				void *p = realloc(v->pfree, cap * sizeof(*v->pfree));

				if (!p) {
					rc = -ENOMEM;
					goto out;
				}
				v->pfree = p;
				v->pfree_cap = cap;
			}
			v->pfree[v->npfree].start = start;
			v->pfree[v->npfree].len = n;
			v->npfree++;
		}
		start += n;
		len -= n;
	}
out:
	free(rg);
	return rc;
}

static int chunk_load(struct vol *v, uint64_t b, struct mbuf **mbp, struct vmfs_chunk *c)
{
	uint64_t addr = b * v->mpb;
	int rc = mc_get(v, addr, VMFS_T_CHUNK, mbp);

	if (rc)
		return rc;
	rc = vmfs_chunk_decode((*mbp)->data, addr, v->sb.uuid, c);
	if (!rc && (c->block != b || c->nslots != v->mpb))
		rc = VMFS_EBADFIELD;
	if (rc)
		vol_report_bad(v, VMFS_T_CHUNK, addr, rc);
	return rc;
}

int chunk_init(struct vol *v, uint64_t b, uint32_t rg, uint32_t extra_used)
{
	struct vmfs_chunk *c = calloc(1, sizeof(*c));
	struct mbuf *mb;
	int rc;

	if (!c)
		return -ENOMEM;
	rc = mc_new(v, b * v->mpb, &mb);
	if (rc)
		goto out;
	vmfs_hdr_init(&c->h, VMFS_T_CHUNK, b * v->mpb, v->sb.uuid);
	c->block = b;
	c->nslots = v->mpb;
	c->rg = rg;
	for (uint32_t s = 0; s <= extra_used; s++)
		c->bitmap[s / 8] |= (uint8_t)(1u << (s % 8));
	c->free_slots = v->mpb - 1 - extra_used;
	vmfs_chunk_encode(c, mb->data);
	mc_dirty(v, mb);
out:
	free(c);
	return rc;
}

static bool mblk_pending(const struct vol *v, uint64_t addr)
{
	for (size_t i = 0; i < v->npmfree; i++)
		if (v->pmfree[i] == addr)
			return true;
	return false;
}

/* Take a free slot of chunk b; for a data page (vol.h pmfree) not one
 * freed in the running transaction. */
static int chunk_take(struct vol *v, uint64_t b, uint64_t *addr, bool page)
{
	struct vmfs_chunk *c = malloc(sizeof(*c));
	uint32_t free_seen = 0;
	struct mbuf *mb;
	int rc;

	if (!c)
		return -ENOMEM;
	rc = chunk_load(v, b, &mb, c);
	if (rc)
		goto out;
	rc = -ENOSPC;
	if (c->free_slots == 0)
		goto out;
	for (uint32_t s = 1; s < c->nslots; s++) {
		if (c->bitmap[s / 8] & (1u << (s % 8)))
			continue;
		free_seen++;
		if (page && mblk_pending(v, b * v->mpb + s))
			continue;
		c->bitmap[s / 8] |= (uint8_t)(1u << (s % 8));
		c->free_slots--;
		vmfs_chunk_encode(c, mb->data);
		mc_dirty(v, mb);
		*addr = b * v->mpb + s;
		rc = 0;
		break;
	}
	if (rc && !free_seen)	/* count said free but bitmap is full: header is inconsistent */
		rc = VMFS_EBADFIELD;
out:
	free(c);
	return rc;
}

int alloc_meta_room(struct vol *v, unsigned n)
{
	int rc;

	if (!v->rg_locked || v->spare_mode)
		return 0;
	if (v->chunk_hint && rg_usable(v, (uint32_t)alloc_rg_of(v, v->chunk_hint))) {
		struct vmfs_chunk *c = malloc(sizeof(*c));
		struct mbuf *mb;

		if (!c)
			return -ENOMEM;
		rc = chunk_load(v, v->chunk_hint, &mb, c);
		n = !rc && c->free_slots >= n ? 0 : n;
		free(c);
		if (rc)
			return rc;
		if (n == 0)
			return 0;
	}
	/* a new chunk; a full volume may still have slots in old ones, which
	 * alloc_mblk() finds (or says -ENOSPC itself) */
	rc = alloc_room(v, 1 + n / (v->mpb - 1));
	return rc == -ENOSPC ? 0 : rc;
}

static int take_mblk(struct vol *v, uint64_t *addr, bool page)
{
	struct vmfs_rg *rg = NULL;
	uint64_t b;
	uint32_t got;
	int rc;

	if (v->chunk_hint && !rg_usable(v, (uint32_t)alloc_rg_of(v, v->chunk_hint)))
		v->chunk_hint = 0;
	if (v->chunk_hint) {
		rc = chunk_take(v, v->chunk_hint, addr, page);
		if (rc != -ENOSPC)
			return rc;
		v->chunk_hint = 0;
	}
	/* Look for room in the chunks of the group this host allocates in;
	 * on a shared mount, of any group it holds. */
	rg = malloc(sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	for (uint32_t k = 0; k < (v->rg_locked ? v->sb.nrgs : 1); k++) {
		uint32_t i = (v->rg_cur + k) % v->sb.nrgs;
		struct mbuf *mb;

		if (!rg_usable(v, i))
			continue;
		rc = rg_load(v, i, &mb, rg);
		if (rc)
			goto out;
		for (uint32_t j = 0; j < rg->nblocks; j++) {
			if (vmfs_rg_get(rg, j) != VMFS_B_META)
				continue;
			rc = chunk_take(v, rg->first_block + j, addr, page);
			if (rc == 0) {
				v->chunk_hint = rg->first_block + j;
				goto out;
			}
			if (rc != -ENOSPC)
				goto out;
		}
	}
	rc = alloc_blocks(v, 0, 1, VMFS_B_META, &b, &got);
	if (rc)
		goto out;
	rc = chunk_init(v, b, (uint32_t)alloc_rg_of(v, b), 0);
	if (rc)
		goto out;
	v->chunk_hint = b;
	rc = chunk_take(v, b, addr, page);
out:
	free(rg);
	return rc;
}

int alloc_mblk(struct vol *v, uint64_t *addr)
{
	if (v->spare_mode)
		return spare_pop(v, addr);
	return take_mblk(v, addr, false);
}

int alloc_page(struct vol *v, uint64_t *addr)
{
	if (v->spare_mode)
		return -EAGAIN;
	return take_mblk(v, addr, true);
}

int free_mblk(struct vol *v, uint64_t addr)
{
	struct vmfs_chunk *c = malloc(sizeof(*c));
	uint64_t b = addr / v->mpb;
	uint32_t s = (uint32_t)(addr % v->mpb);
	int64_t rg = alloc_rg_of(v, b);
	struct mbuf *mb;
	int rc;

	if (v->spare_mode) {
		free(c);
		return spare_push(v, addr);
	}
	if (rg >= 0 && !rg_usable(v, (uint32_t)rg)) {
		/* Not our group: keep it as a spare (alloc.h); alloc_mblk_frees
		 * made room in the pool. */
		free(c);
		if (v->nspare < SPARE_CAP)
			return spare_push(v, addr);
		log_err("freeing mblk %llu: its group is not held and the spare pool is full",
			(unsigned long long)addr);
		need_add((uint32_t)rg);
		return VMFS_ENEEDRG;
	}
	if (!c)
		return -ENOMEM;
	rc = chunk_load(v, b, &mb, c);
	if (rc)
		goto out;
	if (s == 0 || !(c->bitmap[s / 8] & (1u << (s % 8)))) {
		log_err("freeing mblk %llu which is not allocated", (unsigned long long)addr);
		rc = VMFS_EBADFIELD;
		goto out;
	}
	if (v->npmfree == v->pmfree_cap) {
		size_t cap = v->pmfree_cap ? v->pmfree_cap * 2 : 64;
		uint64_t *p = realloc(v->pmfree, cap * sizeof(*p));

		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		v->pmfree = p;
		v->pmfree_cap = cap;
	}
	v->pmfree[v->npmfree++] = addr;
	c->bitmap[s / 8] &= (uint8_t)~(1u << (s % 8));
	c->free_slots++;
	vmfs_chunk_encode(c, mb->data);
	mc_dirty(v, mb);
	if (!v->chunk_hint)
		v->chunk_hint = b;
out:
	free(c);
	return rc;
}
