/* dir.c — hashed directories; see dir.h for the scheme. */
#include "config.h"
#include "dir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "crc32c.h"
#include "log.h"

#define MAX_CHAIN 65536		/* longer chains can only come from a loop */

static uint32_t dir_hash(const struct vmfs_dirinfo *di, const char *name, size_t len)
{
	return crc32c((uint32_t)di->seed, name, len);
}

static uint32_t nbuckets(const struct vmfs_dirinfo *di)
{
	return (1u << di->level) + di->split;
}

static uint32_t bucket_of(const struct vmfs_dirinfo *di, uint32_t h)
{
	uint32_t b = h & ((1u << di->level) - 1);

	if (b < di->split)
		b = h & ((1u << (di->level + 1)) - 1);
	return b;
}

static int info_check(struct vol *v, const struct vmfs_inode *dir, struct vmfs_dirinfo *di)
{
	vmfs_dirinfo_decode(dir->area, di);
	if (di->level > 20 || di->split >= (1u << di->level) || di->nidx == 0 ||
	    di->nidx > VMFS_DIR_NIDX ||
	    (nbuckets(di) + VMFS_DIRIDX_PTRS - 1) / VMFS_DIRIDX_PTRS > di->nidx) {
		vol_report_bad(v, VMFS_T_INODE, dir->h.self, VMFS_EBADFIELD);
		return VMFS_EBADFIELD;
	}
	return 0;
}

static int idx_load(struct vol *v, const struct vmfs_dirinfo *di, uint32_t i, struct mbuf **mbp,
		    struct vmfs_diridx *x)
{
	uint64_t addr = di->idx[i];
	int rc = mc_get(v, addr, VMFS_T_DIRIDX, mbp);

	if (rc)
		return rc;
	rc = vmfs_diridx_decode((*mbp)->data, addr, v->sb.uuid, x);
	if (rc)
		vol_report_bad(v, VMFS_T_DIRIDX, addr, rc);
	return rc;
}

static int bucket_addr(struct vol *v, const struct vmfs_dirinfo *di, uint32_t b, uint64_t *addr)
{
	struct vmfs_diridx *x = malloc(sizeof(*x));
	struct mbuf *mb;
	int rc;

	if (!x)
		return -ENOMEM;
	rc = idx_load(v, di, b / VMFS_DIRIDX_PTRS, &mb, x);
	if (!rc) {
		*addr = x->bucket[b % VMFS_DIRIDX_PTRS];
		if (*addr == 0) {
			vol_report_bad(v, VMFS_T_DIRIDX, di->idx[b / VMFS_DIRIDX_PTRS], VMFS_EBADFIELD);
			rc = VMFS_EBADFIELD;
		}
	}
	free(x);
	return rc;
}

static int set_bucket_addr(struct vol *v, const struct vmfs_dirinfo *di, uint32_t b, uint64_t addr)
{
	struct vmfs_diridx *x = malloc(sizeof(*x));
	struct mbuf *mb;
	int rc;

	if (!x)
		return -ENOMEM;
	rc = idx_load(v, di, b / VMFS_DIRIDX_PTRS, &mb, x);
	if (!rc) {
		x->bucket[b % VMFS_DIRIDX_PTRS] = addr;
		vmfs_diridx_encode(x, mb->data);
		mc_dirty(v, mb);
	}
	free(x);
	return rc;
}

static int bkt_get(struct vol *v, const struct vmfs_inode *dir, uint64_t addr, struct mbuf **mbp)
{
	struct vmfs_dirbkt_hdr bh;
	int rc = mc_get(v, addr, VMFS_T_DIRBKT, mbp);

	if (rc)
		return rc;
	vmfs_dirbkt_get_hdr((*mbp)->data, &bh);
	if (bh.owner != dir->h.self) {
		vol_report_bad(v, VMFS_T_DIRBKT, addr, VMFS_EBADFIELD);
		return VMFS_EBADFIELD;
	}
	return 0;
}

static int new_bucket(struct vol *v, const struct vmfs_inode *dir, uint64_t *addr)
{
	struct mbuf *mb;
	int rc = alloc_mblk(v, addr);

	if (rc)
		return rc;
	rc = mc_new(v, *addr, &mb);
	if (rc)
		return rc;
	vmfs_dirbkt_init(mb->data, *addr, v->sb.uuid, dir->h.self);
	mc_dirty(v, mb);
	return 0;
}

static int new_index(struct vol *v, struct vmfs_dirinfo *di)
{
	struct vmfs_diridx *x = calloc(1, sizeof(*x));
	struct mbuf *mb;
	uint64_t addr;
	int rc;

	if (!x)
		return -ENOMEM;
	rc = alloc_mblk(v, &addr);
	if (!rc)
		rc = mc_new(v, addr, &mb);
	if (!rc) {
		vmfs_hdr_init(&x->h, VMFS_T_DIRIDX, addr, v->sb.uuid);
		vmfs_diridx_encode(x, mb->data);
		mc_dirty(v, mb);
		di->idx[di->nidx++] = addr;
	}
	free(x);
	return rc;
}

int dir_init(struct vol *v, struct vmfs_inode *dir)
{
	struct vmfs_dirinfo di;
	uint64_t b0;
	int rc;

	memset(&di, 0, sizeof(di));
	di.seed = dir->h.self * 0x9E3779B97F4A7C15ull;
	rc = new_index(v, &di);
	if (!rc)
		rc = new_bucket(v, dir, &b0);
	if (!rc)
		rc = set_bucket_addr(v, &di, 0, b0);
	if (!rc)
		vmfs_dirinfo_encode(&di, dir->area);
	return rc;
}

int dir_walk_blocks(struct vol *v, const struct vmfs_inode *dir, dir_block_cb cb, void *arg)
{
	struct vmfs_dirinfo di;
	int rc = info_check(v, dir, &di);

	if (rc)
		return rc;
	for (uint32_t b = 0; b < nbuckets(&di); b++) {
		uint64_t addr;
		unsigned n = 0;

		rc = bucket_addr(v, &di, b, &addr);
		if (rc)
			return rc;
		while (addr) {
			struct mbuf *mb;
			struct vmfs_dirbkt_hdr bh;

			if (++n > MAX_CHAIN)
				return VMFS_EBADFIELD;
			rc = bkt_get(v, dir, addr, &mb);
			if (rc)
				return rc;
			vmfs_dirbkt_get_hdr(mb->data, &bh);
			rc = cb(arg, addr, VMFS_T_DIRBKT);
			if (rc)
				return rc;
			addr = bh.next;
		}
	}
	for (uint32_t i = 0; i < di.nidx; i++) {
		rc = cb(arg, di.idx[i], VMFS_T_DIRIDX);
		if (rc)
			return rc;
	}
	return 0;
}

static int collect_cb(void *arg, uint64_t addr, int type)
{
	struct { uint64_t *a; size_t n, cap; } *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *p = realloc(c->a, cap * sizeof(*c->a));

		if (!p)
			return -ENOMEM;
		c->a = p;
		c->cap = cap;
	}
	c->a[c->n++] = addr;
	return 0;
}

int dir_destroy(struct vol *v, struct vmfs_inode *dir)
{
	struct { uint64_t *a; size_t n, cap; } c = { 0 };
	int rc = dir_walk_blocks(v, dir, collect_cb, &c);

	for (size_t i = 0; !rc && i < c.n; i++)
		rc = free_mblk(v, c.a[i]);
	free(c.a);
	return rc;
}

/* Find name in bucket chain b: returns 0 and the block/offset, or -ENOENT. */
static int chain_find(struct vol *v, const struct vmfs_inode *dir, const struct vmfs_dirinfo *di,
		      const char *name, size_t len, uint32_t h, struct mbuf **mbp, uint32_t *offp)
{
	uint64_t addr;
	unsigned n = 0;
	int rc = bucket_addr(v, di, bucket_of(di, h), &addr);

	if (rc)
		return rc;
	while (addr) {
		struct vmfs_dirbkt_hdr bh;
		struct mbuf *mb;

		if (++n > MAX_CHAIN)
			return VMFS_EBADFIELD;
		rc = bkt_get(v, dir, addr, &mb);
		if (rc)
			return rc;
		for (uint32_t off = VMFS_DIRBKT_OFF; off < VMFS_MBLK;) {
			struct vmfs_dent d;

			vmfs_dent_decode(mb->data, off, &d);
			if (d.ino && d.hash == h && d.name_len == len && !memcmp(d.name, name, len)) {
				*mbp = mb;
				*offp = off;
				return 0;
			}
			off += d.rec_len;
		}
		vmfs_dirbkt_get_hdr(mb->data, &bh);
		addr = bh.next;
	}
	return -ENOENT;
}

int dir_lookup(struct vol *v, const struct vmfs_inode *dir, const char *name, uint64_t *ino,
	       uint8_t *dtype)
{
	struct vmfs_dirinfo di;
	size_t len = strlen(name);
	struct mbuf *mb;
	uint32_t off;
	int rc;

	if (len > VMFS_NAME_MAX)
		return -ENAMETOOLONG;
	rc = info_check(v, dir, &di);
	if (rc)
		return rc;
	rc = chain_find(v, dir, &di, name, len, dir_hash(&di, name, len), &mb, &off);
	if (!rc) {
		struct vmfs_dent d;

		vmfs_dent_decode(mb->data, off, &d);
		*ino = d.ino;
		if (dtype)
			*dtype = d.dtype;
	}
	return rc;
}

/* Place an entry somewhere in bucket b's chain (no duplicate check). */
static int chain_insert(struct vol *v, const struct vmfs_inode *dir, const struct vmfs_dirinfo *di,
			uint32_t b, const char *name, size_t len, uint32_t h, uint64_t ino,
			uint8_t dtype)
{
	uint32_t need = VMFS_DENT_LEN(len);
	struct mbuf *mb = NULL;
	uint64_t addr, nb;
	unsigned n = 0;
	int rc = bucket_addr(v, di, b, &addr);

	if (rc)
		return rc;
	while (addr) {
		struct vmfs_dirbkt_hdr bh;

		if (++n > MAX_CHAIN)
			return VMFS_EBADFIELD;
		rc = bkt_get(v, dir, addr, &mb);
		if (rc)
			return rc;
		for (uint32_t off = VMFS_DIRBKT_OFF; off < VMFS_MBLK;) {
			struct vmfs_dent d;
			uint32_t used;

			vmfs_dent_decode(mb->data, off, &d);
			used = d.ino ? VMFS_DENT_LEN(d.name_len) : 0;
			if (d.rec_len >= used + need) {
				uint16_t rest = (uint16_t)(d.rec_len - used);

				if (used)	/* shrink the live record, take its slack */
					vmfs_dent_encode(mb->data, off, d.ino, d.hash, (uint16_t)used,
							 d.name, d.name_len, d.dtype);
				off += used;
				vmfs_dent_encode(mb->data, off, ino, h, rest, name, (uint8_t)len, dtype);
				mc_dirty(v, mb);
				return 0;
			}
			off += d.rec_len;
		}
		vmfs_dirbkt_get_hdr(mb->data, &bh);
		addr = bh.next;
	}
	/* every block of the chain is full: append an overflow block */
	rc = new_bucket(v, dir, &nb);
	if (rc)
		return rc;
	vmfs_dirbkt_set_next(mb->data, nb);
	mc_dirty(v, mb);
	rc = mc_get(v, nb, VMFS_T_DIRBKT, &mb);
	if (rc)
		return rc;
	vmfs_dent_encode(mb->data, VMFS_DIRBKT_OFF, ino, h, VMFS_MBLK - VMFS_DIRBKT_OFF, name,
			 (uint8_t)len, dtype);
	mc_dirty(v, mb);
	return 0;
}

struct saved_ent {
	uint64_t ino;
	uint32_t hash;
	uint8_t len, dtype;
	char name[VMFS_NAME_MAX + 1];
};

/* Linear hashing: split bucket di->split into itself and a new bucket. */
static int dir_split(struct vol *v, struct vmfs_inode *dir, struct vmfs_dirinfo *di)
{
	uint32_t s = di->split, nbk = (1u << di->level) + di->split;
	struct saved_ent *ents = NULL;
	size_t n = 0, cap = 0;
	uint64_t addr, first, newb;
	unsigned chain = 0;
	int rc;

	if (nbk / VMFS_DIRIDX_PTRS >= VMFS_DIR_NIDX || di->level >= 20)
		return 0;	/* table at its maximum: chains grow instead */
	if (nbk / VMFS_DIRIDX_PTRS >= di->nidx) {
		rc = new_index(v, di);
		if (rc)
			return rc;
	}
	rc = bucket_addr(v, di, s, &first);
	if (rc)
		return rc;
	/* take every entry out of the old chain, freeing overflow blocks */
	for (addr = first; addr;) {
		struct vmfs_dirbkt_hdr bh;
		struct mbuf *mb;

		if (++chain > MAX_CHAIN)
			return VMFS_EBADFIELD;
		rc = bkt_get(v, dir, addr, &mb);
		if (rc)
			goto out;
		for (uint32_t off = VMFS_DIRBKT_OFF; off < VMFS_MBLK;) {
			struct vmfs_dent d;

			vmfs_dent_decode(mb->data, off, &d);
			if (d.ino) {
				if (n == cap) {
					size_t nc = cap ? cap * 2 : 128;
					void *p = realloc(ents, nc * sizeof(*ents));

					if (!p) {
						rc = -ENOMEM;
						goto out;
					}
					ents = p;
					cap = nc;
				}
				ents[n].ino = d.ino;
				ents[n].hash = d.hash;
				ents[n].len = d.name_len;
				ents[n].dtype = d.dtype;
				memcpy(ents[n].name, d.name, d.name_len);
				n++;
			}
			off += d.rec_len;
		}
		vmfs_dirbkt_get_hdr(mb->data, &bh);
		if (addr == first) {
			uint64_t gen = get_le64(mb->data + 16);

			vmfs_dirbkt_init(mb->data, first, v->sb.uuid, dir->h.self);
			put_le64(mb->data + 16, gen);
			mc_dirty(v, mb);
		} else {
			rc = free_mblk(v, addr);
			if (rc)
				goto out;
		}
		addr = bh.next;
	}
	rc = new_bucket(v, dir, &newb);
	if (!rc)
		rc = set_bucket_addr(v, di, nbk, newb);
	if (rc)
		goto out;
	if (++di->split == (1u << di->level)) {
		di->level++;
		di->split = 0;
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = chain_insert(v, dir, di, bucket_of(di, ents[i].hash), ents[i].name, ents[i].len,
				  ents[i].hash, ents[i].ino, ents[i].dtype);
out:
	free(ents);
	return rc;
}

int dir_add(struct vol *v, struct vmfs_inode *dir, const char *name, uint64_t ino, uint8_t dtype)
{
	struct vmfs_dirinfo di;
	size_t len = strlen(name);
	struct mbuf *mb;
	uint32_t off, h;
	int rc;

	if (len > VMFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (len == 0)
		return -EINVAL;
	rc = info_check(v, dir, &di);
	if (rc)
		return rc;
	h = dir_hash(&di, name, len);
	rc = chain_find(v, dir, &di, name, len, h, &mb, &off);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return rc;
	rc = chain_insert(v, dir, &di, bucket_of(&di, h), name, len, h, ino, dtype);
	if (rc)
		return rc;
	di.nentries++;
	if (di.nentries > (uint64_t)nbuckets(&di) * DIR_SPLIT_LOAD) {
		rc = dir_split(v, dir, &di);
		if (rc)
			return rc;
	}
	vmfs_dirinfo_encode(&di, dir->area);
	dir->mtime_ns = dir->ctime_ns = (int64_t)now_ns();
	return vol_inode_put(v, dir);
}

int dir_remove(struct vol *v, struct vmfs_inode *dir, const char *name)
{
	struct vmfs_dirinfo di;
	struct vmfs_dent d, nx;
	size_t len = strlen(name);
	struct mbuf *mb;
	uint32_t off;
	uint16_t rl;
	int rc;

	if (len > VMFS_NAME_MAX)
		return -ENAMETOOLONG;
	rc = info_check(v, dir, &di);
	if (rc)
		return rc;
	rc = chain_find(v, dir, &di, name, len, dir_hash(&di, name, len), &mb, &off);
	if (rc)
		return rc;
	vmfs_dent_decode(mb->data, off, &d);
	rl = d.rec_len;
	/* absorb a free successor so free space does not fragment forever */
	if (off + rl < VMFS_MBLK) {
		vmfs_dent_decode(mb->data, off + rl, &nx);
		if (!nx.ino)
			rl = (uint16_t)(rl + nx.rec_len);
	}
	memset(mb->data + off, 0, VMFS_DENT_LEN(d.name_len) < rl ? VMFS_DENT_LEN(d.name_len) : rl);
	vmfs_dent_encode(mb->data, off, 0, 0, rl, "", 0, 0);
	mc_dirty(v, mb);
	if (di.nentries)
		di.nentries--;
	vmfs_dirinfo_encode(&di, dir->area);
	dir->mtime_ns = dir->ctime_ns = (int64_t)now_ns();
	return vol_inode_put(v, dir);
}

int dir_replace(struct vol *v, struct vmfs_inode *dir, const char *name, uint64_t ino,
		uint8_t dtype)
{
	struct vmfs_dirinfo di;
	struct vmfs_dent d;
	size_t len = strlen(name);
	struct mbuf *mb;
	uint32_t off;
	int rc;

	rc = info_check(v, dir, &di);
	if (rc)
		return rc;
	rc = chain_find(v, dir, &di, name, len, dir_hash(&di, name, len), &mb, &off);
	if (rc)
		return rc;
	vmfs_dent_decode(mb->data, off, &d);
	vmfs_dent_encode(mb->data, off, ino, d.hash, d.rec_len, d.name, d.name_len, dtype);
	mc_dirty(v, mb);
	dir->mtime_ns = dir->ctime_ns = (int64_t)now_ns();
	return vol_inode_put(v, dir);
}

int dir_iterate(struct vol *v, const struct vmfs_inode *dir, uint64_t cookie, dir_iter_cb cb,
		void *arg)
{
	struct vmfs_dirinfo di;
	uint32_t b0 = 0, c0 = 0, o0 = 0;
	int rc = info_check(v, dir, &di);

	if (rc)
		return rc;
	if (cookie >= 3) {
		b0 = (uint32_t)(cookie >> 32);
		c0 = (uint32_t)(cookie >> 13) & 0x7ffff;
		o0 = (uint32_t)cookie & 0x1fff;
	}
	for (uint32_t b = b0; b < nbuckets(&di); b++) {
		uint64_t addr;
		uint32_t c = 0;

		rc = bucket_addr(v, &di, b, &addr);
		if (rc)
			return rc;
		for (; addr; c++) {
			struct vmfs_dirbkt_hdr bh;
			struct mbuf *mb;

			if (c > MAX_CHAIN)
				return VMFS_EBADFIELD;
			rc = bkt_get(v, dir, addr, &mb);
			if (rc)
				return rc;
			vmfs_dirbkt_get_hdr(mb->data, &bh);
			if (b == b0 && c < c0) {
				addr = bh.next;
				continue;
			}
			for (uint32_t off = VMFS_DIRBKT_OFF; off < VMFS_MBLK;) {
				struct vmfs_dent d;

				vmfs_dent_decode(mb->data, off, &d);
				if (d.ino && !(b == b0 && c == c0 && off < o0)) {
					uint64_t next = (uint64_t)b << 32 | (uint64_t)c << 13 |
						(off + d.rec_len);

					if (cb(arg, d.name, d.name_len, d.ino, d.dtype, next))
						return 0;
				}
				off += d.rec_len;
			}
			addr = bh.next;
		}
	}
	return 0;
}
