/* check.c — vmfs-fsck's checker.
 *
 * One pass, repeated until clean (at most MAX_PASSES):
 *   1. superblocks: primary vs backup;
 *   2. host slots: heartbeat, orphan list, journal header; a dead owner's
 *      journal is replayed;
 *   3. tree walk from the root marking every reachable metadata mblk
 *      (inodes, directory index/bucket blocks, extent blocks); bad entries
 *      are removed, damaged directories and files remembered;
 *   4. file extents marked as data; extents that collide are remembered;
 *   5. lost inodes (allocated in a chunk but unreachable): nlink 0 =
 *      orphan, freed; otherwise walked and reconnected to /lost+found;
 *   6. link counts and parent pointers;
 *   7. allocation maps (RG bitmaps, chunk slot bitmaps) compared with what
 *      was marked, and rebuilt from it;
 *   8. fixes that allocate (reset damaged directories, reconnect lost
 *      inodes, recreate root or lost+found) run after the maps are right.
 * A pass that fixed anything is followed by another, so the result of
 * "fsck -y" is verified by the same code that a second fsck runs.
 * Nothing here trusts a field before checking it: every block goes through
 * the codecs, every address through range checks.
 */
#include "config.h"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "dir.h"
#include "inode.h"
#include "log.h"
#include "pages.h"
#include "slot.h"
#include "vol.h"

#define MAX_PASSES 4

enum { KI_VISITED = 1, KI_DIR = 2, KI_DAMAGED = 4, KI_LOST = 8, KI_REG = 16 };

struct kino {			/* what the walk learned about one inode */
	uint64_t ino;		/* 0 = empty hash slot */
	uint32_t refs;		/* directory entries naming it */
	uint32_t subdirs;
	uint64_t found_in;	/* directory of the first entry */
	uint32_t flags;
	uint32_t ndrop;		/* extents to drop (collisions) */
	uint32_t *drop;		/* their lblk */
};

struct kslot {			/* computed mblk usage of one meta block */
	uint64_t block;		/* UINT64_MAX = empty */
	uint8_t *bits;
};

struct ck {
	struct vol *v;
	const struct check_opts *o;
	unsigned problems, fixed;
	uint8_t *bstate;	/* per large block: VMFS_B_* computed */
	struct kslot *ks;
	size_t nks, capks;
	struct kino *ki;
	size_t nki, capki;
	uint64_t *queue;	/* directories to walk */
	size_t qn, qcap;
	uint64_t *files;	/* regular files for the extent phase */
	size_t fn, fcap, fdone;
	uint64_t *lost;		/* unreachable inodes with links, to reconnect */
	size_t ln, lcap;
	uint8_t *rg_bad;	/* per RG: on-disk header unusable */
	bool root_bad, lf_bad;
	uint64_t live_slots;
};

static void problem(struct ck *k, bool fixable, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void problem(struct ck *k, bool fixable, const char *fmt, ...)
{
	va_list ap;

	k->problems++;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (k->o->repair && fixable) {
		k->fixed++;
		printf(" (fixed)\n");
	} else {
		printf("%s\n", fixable ? "" : " (cannot fix)");
	}
}

static int push(uint64_t **a, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 256;
		void *p = realloc(*a, c * sizeof(**a));

		if (!p)
			return -ENOMEM;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = x;
	return 0;
}

/* ---- hash tables (open addressing) ---- */

static size_t hmix(uint64_t x, size_t cap)
{
	return (size_t)((x * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static struct kino *kino_get(struct ck *k, uint64_t ino)
{
	if ((k->nki + 1) * 2 > k->capki) {
		size_t cap = k->capki ? k->capki * 2 : 1024;
		struct kino *n = calloc(cap, sizeof(*n));

		if (!n)
			return NULL;
		for (size_t i = 0; i < k->capki; i++) {
			size_t h;

			if (!k->ki[i].ino)
				continue;
			for (h = hmix(k->ki[i].ino, cap); n[h].ino; h = (h + 1) & (cap - 1))
				;
			n[h] = k->ki[i];
		}
		free(k->ki);
		k->ki = n;
		k->capki = cap;
	}
	for (size_t h = hmix(ino, k->capki);; h = (h + 1) & (k->capki - 1)) {
		if (k->ki[h].ino == ino)
			return &k->ki[h];
		if (!k->ki[h].ino) {
			k->ki[h].ino = ino;
			k->nki++;
			return &k->ki[h];
		}
	}
}

static struct kslot *kslot_get(struct ck *k, uint64_t block, bool create)
{
	if (create && (k->nks + 1) * 2 > k->capks) {
		size_t cap = k->capks ? k->capks * 2 : 256;
		struct kslot *n = malloc(cap * sizeof(*n));

		if (!n)
			return NULL;
		for (size_t i = 0; i < cap; i++)
			n[i].block = UINT64_MAX;
		for (size_t i = 0; i < k->capks; i++) {
			size_t h;

			if (k->ks[i].block == UINT64_MAX)
				continue;
			for (h = hmix(k->ks[i].block, cap); n[h].block != UINT64_MAX; h = (h + 1) & (cap - 1))
				;
			n[h] = k->ks[i];
		}
		free(k->ks);
		k->ks = n;
		k->capks = cap;
	}
	if (!k->capks)
		return NULL;
	for (size_t h = hmix(block, k->capks);; h = (h + 1) & (k->capks - 1)) {
		if (k->ks[h].block == block)
			return &k->ks[h];
		if (k->ks[h].block == UINT64_MAX) {
			if (!create)
				return NULL;
			k->ks[h].block = block;
			k->ks[h].bits = calloc(1, k->v->mpb / 8 + 1);
			if (!k->ks[h].bits)
				return NULL;
			k->nks++;
			return &k->ks[h];
		}
	}
}

static bool in_rgs(const struct vol *v, uint64_t block)
{
	return block >= v->sb.rg_start && block < v->sb.nblocks;
}

/* Mark mblk addr as reachable metadata.  1 = newly marked, 0 = already
 * marked (claimed twice), <0 = impossible address. */
static int mark_mblk(struct ck *k, uint64_t addr)
{
	uint64_t b = addr / k->v->mpb;
	uint32_t s = (uint32_t)(addr % k->v->mpb);
	struct kslot *ks;

	if (!in_rgs(k->v, b) || s == 0 || k->bstate[b] == VMFS_B_DATA)
		return -1;
	ks = kslot_get(k, b, true);
	if (!ks)
		return -ENOMEM;
	k->bstate[b] = VMFS_B_META;
	if (ks->bits[s / 8] & (1u << (s % 8)))
		return 0;
	ks->bits[s / 8] |= (uint8_t)(1u << (s % 8));
	return 1;
}

static bool marked(struct ck *k, uint64_t addr)
{
	struct kslot *ks = kslot_get(k, addr / k->v->mpb, false);
	uint32_t s = (uint32_t)(addr % k->v->mpb);

	return ks && (ks->bits[s / 8] & (1u << (s % 8)));
}

/* ---- phase 1 and 2: superblocks and host slots ---- */

/* Same superblock apart from the header (self address, generation). */
static bool sb_same(const struct vmfs_sb *a, const struct vmfs_sb *b)
{
	struct vmfs_sb t = *a;

	t.h = b->h;
	return memcmp(&t, b, sizeof(t)) == 0;
}

static int check_sb(struct ck *k, bool used_backup)
{
	struct vol *v = k->v;
	uint8_t *a = diskio_alloc(VMFS_MBLK), *b = diskio_alloc(VMFS_MBLK);
	struct vmfs_sb bk;
	int rc = 0;

	if (!a || !b) {
		rc = -ENOMEM;
		goto out;
	}
	if (used_backup)
		problem(k, true, "primary superblock damaged; restored from the backup");
	/* the backup must decode and match the primary */
	rc = diskio_pread(v->dio, b, VMFS_MBLK, v->sb.backup_addr * VMFS_MBLK);
	if (rc)
		goto out;
	if (used_backup || vmfs_sb_decode(b, v->sb.backup_addr, v->sb.uuid, &bk) ||
	    !sb_same(&v->sb, &bk)) {
		if (!used_backup)
			problem(k, true, "backup superblock at byte offset %" PRIu64 " damaged or stale",
				v->sb.backup_addr * VMFS_MBLK);
		if (k->o->repair) {
			struct vmfs_sb s = v->sb;

			s.h.self = VMFS_SB_ADDR;
			vmfs_sb_encode(&s, a);
			rc = diskio_pwrite(v->dio, a, VMFS_MBLK, 0);
			s.h.self = v->sb.backup_addr;
			vmfs_sb_encode(&s, a);
			if (!rc)
				rc = diskio_pwrite(v->dio, a, VMFS_MBLK, v->sb.backup_addr * VMFS_MBLK);
		}
	}
out:
	free(a);
	free(b);
	return rc;
}

static int write_blk(struct ck *k, const uint8_t *blk, uint64_t addr)
{
	return diskio_pwrite(k->v->dio, blk, VMFS_MBLK, addr * VMFS_MBLK);
}

static int check_slots(struct ck *k, uint64_t dead)
{
	struct vol *v = k->v;
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	int rc = 0;

	if (!blk)
		return -ENOMEM;
	for (uint32_t s = 0; s < v->sb.max_hosts && !rc; s++) {
		uint64_t base = vmfs_slot_addr(&v->sb, s);
		struct vmfs_hb hb;
		struct vmfs_orphan *orph = malloc(sizeof(*orph));
		struct vmfs_jhdr jh;
		uint64_t ckpt, last;
		bool dirty;
		int r;

		if (!orph) {
			rc = -ENOMEM;
			break;
		}
		r = slot_read_hb(v, s, &hb);
		if (r || (dead & (1ull << s))) {
			if (r)
				problem(k, true, "host slot %u: heartbeat at byte offset %" PRIu64 ": %s", s,
					(base + VMFS_SLOT_HB) * VMFS_MBLK, vmfs_strerror(r));
			else
				problem(k, true, "host slot %u: owner \"%s\" died without releasing it", s,
					hb.host);
			if (k->o->repair) {
				memset(&hb, 0, sizeof(hb));
				vmfs_hdr_init(&hb.h, VMFS_T_HB, base + VMFS_SLOT_HB, v->sb.uuid);
				hb.slot = s;
				hb.period_ms = v->sb.hb_period_ms;
				vmfs_hb_encode(&hb, blk);
				rc = write_blk(k, blk, base + VMFS_SLOT_HB);
			}
		}
		r = diskio_pread(v->dio, blk, VMFS_MBLK, (base + VMFS_SLOT_ORPHAN) * VMFS_MBLK);
		if (!r)
			r = vmfs_orphan_decode(blk, base + VMFS_SLOT_ORPHAN, v->sb.uuid, orph);
		if (!rc && (r || (orph->count && !(k->live_slots & (1ull << s))))) {
			/* orphans of a slot nobody uses: phase 5 frees them */
			if (r)
				problem(k, true, "host slot %u: orphan list at byte offset %" PRIu64 ": %s",
					s, (base + VMFS_SLOT_ORPHAN) * VMFS_MBLK, vmfs_strerror(r));
			if (k->o->repair) {
				memset(orph, 0, sizeof(*orph));
				vmfs_hdr_init(&orph->h, VMFS_T_ORPHAN, base + VMFS_SLOT_ORPHAN, v->sb.uuid);
				vmfs_orphan_encode(orph, blk);
				rc = write_blk(k, blk, base + VMFS_SLOT_ORPHAN);
				mc_forget(v, base + VMFS_SLOT_ORPHAN);
			}
		}
		free(orph);
		r = diskio_pread(v->dio, blk, VMFS_MBLK, (base + VMFS_SLOT_JHDR) * VMFS_MBLK);
		if (!r)
			r = vmfs_jhdr_decode(blk, base + VMFS_SLOT_JHDR, v->sb.uuid, &jh);
		if (!r && (jh.slot != s || jh.log_blocks != v->sb.journal_blocks))
			r = VMFS_EBADFIELD;
		if (!rc && r) {
			problem(k, true, "host slot %u: journal header at byte offset %" PRIu64 ": %s", s,
				(base + VMFS_SLOT_JHDR) * VMFS_MBLK, vmfs_strerror(r));
			if (k->o->repair) {
				/* an empty log, so no stale transaction is ever replayed */
				memset(blk, 0, VMFS_MBLK);
				rc = write_blk(k, blk, base + VMFS_SLOT_LOG);
				if (!rc)
					rc = journal_mark_clean(v, s, 0);
			}
			continue;
		}
		if (rc || (k->live_slots & (1ull << s)))
			continue;
		r = journal_scan(v, s, &ckpt, &last, &dirty);
		if (r) {
			problem(k, true, "host slot %u: journal transaction damaged: %s; discarded", s,
				vmfs_strerror(r));
			if (k->o->repair) {
				memset(blk, 0, VMFS_MBLK);
				rc = write_blk(k, blk, base + VMFS_SLOT_LOG);
				if (!rc)
					rc = journal_mark_clean(v, s, ckpt);
			}
		} else if (dirty) {
			unsigned n;

			problem(k, true, "host slot %u: journal holds a committed transaction; replayed", s);
			if (k->o->repair)
				rc = journal_replay(v, s, &n);
		}
	}
	free(blk);
	return rc;
}

/* ---- phase 3: the tree walk ---- */

struct ent {
	char name[VMFS_NAME_MAX + 1];
	uint64_t ino;
	uint8_t dtype;
};
struct ents {
	struct ent *e;
	size_t n, cap;
};

static int collect(void *arg, const char *name, uint8_t len, uint64_t ino, uint8_t dtype,
		   uint64_t next)
{
	struct ents *es = arg;

	if (es->n == es->cap) {
		size_t c = es->cap ? es->cap * 2 : 64;
		void *p = realloc(es->e, c * sizeof(*es->e));

		if (!p)
			return 1;
		es->e = p;
		es->cap = c;
	}
	memcpy(es->e[es->n].name, name, len);
	es->e[es->n].name[len] = '\0';
	es->e[es->n].ino = ino;
	es->e[es->n].dtype = dtype;
	es->n++;
	return 0;
}

static int mark_dirblk(void *arg, uint64_t addr, int type)
{
	struct ck *k = arg;
	int r = mark_mblk(k, addr);

	return r == 1 ? 0 : VMFS_EBADFIELD;	/* claimed twice: damaged */
}

/* A small file's pages (pages.h): every one a slot of a meta chunk that
 * nothing else claims, the count right, none past pages_max (pages past
 * the size are fallocated ones, zeros); then marked.
 * Else the file is damaged (emptied). */
static int mark_pages(struct ck *k, uint64_t ino, const struct vmfs_inode *in, struct kino *ki)
{
	struct vol *v = k->v;
	const char *why = NULL;
	uint32_t n = 0;

	if (!v->pages_max)
		why = "the volume has no small-file pages";
	for (uint32_t i = 0; i < VMFS_PAGES_MAX && !why; i++) {
		uint64_t addr = page_get(in, i), b = addr / v->mpb;

		if (!addr)
			continue;
		n++;
		if ((uint64_t)i * VMFS_MBLK >= v->pages_max)
			why = "a page past the small-file limit";
		else if (!in_rgs(v, b) || addr % v->mpb == 0 || k->bstate[b] == VMFS_B_DATA)
			why = "a page at an impossible address";
		else if (marked(k, addr))
			why = "a page owned elsewhere";
		for (uint32_t j = 0; j < i && !why; j++)
			if (page_get(in, j) == addr)
				why = "a page listed twice";
	}
	if (!why && n != pages_count(in))
		why = "wrong page count";
	if (why) {
		ki->flags |= KI_DAMAGED;
		problem(k, true, "file inode %" PRIu64 ": %s; file emptied", ino, why);
		return 0;
	}
	for (uint32_t i = 0; i < VMFS_PAGES_MAX; i++)
		if (page_get(in, i) && mark_mblk(k, page_get(in, i)) != 1)
			return VMFS_EBADFIELD;
	return 0;
}

/* Validate and mark a newly reached inode (no entries followed yet). */
static int visit_inode(struct ck *k, uint64_t ino, struct vmfs_inode *in, struct kino *ki)
{
	struct vol *v = k->v;

	ki->flags |= KI_VISITED;
	if (mark_mblk(k, ino) != 1)
		return VMFS_EBADFIELD;
	if (S_ISDIR(in->mode)) {
		ki->flags |= KI_DIR;
		if (dir_walk_blocks(v, in, mark_dirblk, k)) {
			ki->flags |= KI_DAMAGED;
			problem(k, true, "directory inode %" PRIu64 ": damaged index or buckets; "
				"its entries go to lost+found", ino);
			return 0;
		}
		return push(&k->queue, &k->qn, &k->qcap, ino);
	}
	if (S_ISREG(in->mode)) {
		struct xmap m = { 0 };
		struct vmfs_xmap_hdr xh;
		int rc = 0;

		ki->flags |= KI_REG;
		if (in->iflags & VMFS_IF_INLINE)
			return 0;
		if (in->iflags & VMFS_IF_PAGES)
			return mark_pages(k, ino, in, ki);
		vmfs_xmap_hdr_decode(in->area, &xh);
		if (xmap_load(v, in, &m) == 0) {
			for (uint32_t b = 0; b < xh.nxblk && !rc; b++)
				if (mark_mblk(k, get_le64(in->area + 16 + 8 * b)) != 1)
					rc = VMFS_EBADFIELD;
		} else {
			rc = VMFS_EBADFIELD;
		}
		xmap_release(&m);
		if (rc) {
			ki->flags |= KI_DAMAGED;
			problem(k, true, "file inode %" PRIu64 ": damaged extent map; file emptied", ino);
			return 0;
		}
		return push(&k->files, &k->fn, &k->fcap, ino);
	}
	if (S_ISLNK(in->mode) && in->size > VMFS_SYMLINK_MAX) {
		ki->flags |= KI_DAMAGED;
		problem(k, true, "symlink inode %" PRIu64 ": bad length; emptied", ino);
	}
	return 0;
}

static int walk_dir(struct ck *k, uint64_t dino)
{
	struct vol *v = k->v;
	struct vmfs_inode *dir = malloc(sizeof(*dir)), *in = malloc(sizeof(*in));
	struct ents es = { 0 };
	struct kino *dk;
	int rc;

	if (!dir || !in) {
		rc = -ENOMEM;
		goto out;
	}
	rc = vol_inode_get(v, dino, dir);
	if (rc)
		goto out;
	if (dir_iterate(v, dir, 0, collect, &es)) {
		dk = kino_get(k, dino);
		if (dk && !(dk->flags & KI_DAMAGED)) {
			dk->flags |= KI_DAMAGED;
			problem(k, true, "directory inode %" PRIu64 ": unreadable entries; its entries go "
				"to lost+found", dino);
		}
		rc = 0;
		goto out;
	}
	for (size_t i = 0; i < es.n; i++) {
		struct ent *e = &es.e[i];
		struct kino *ki;
		int r = vol_inode_get(v, e->ino, in);
		const char *why = NULL;

		if (r)
			why = vmfs_strerror(r);
		else if (e->ino == v->sb.root_ino)
			why = "names the root directory";
		ki = why ? NULL : kino_get(k, e->ino);
		if (!why && !ki) {
			rc = -ENOMEM;
			goto out;
		}
		if (!why && (ki->flags & KI_VISITED) && S_ISDIR(in->mode))
			why = "second link to a directory";
		if (!why && !(ki->flags & KI_VISITED) && (in->nlink == 0 || in->mode == 0))
			why = "inode is unlinked";
		if (why) {
			problem(k, true, "directory inode %" PRIu64 ": entry \"%s\" -> %" PRIu64 ": %s; "
				"entry removed", dino, e->name, e->ino, why);
			if (k->o->repair) {
				rc = vol_inode_get(v, dino, dir);
				if (!rc)
					rc = dir_remove(v, dir, e->name);
				if (rc)
					goto out;
			}
			continue;
		}
		if (e->dtype != inode_dtype(in->mode)) {
			problem(k, true, "directory inode %" PRIu64 ": entry \"%s\" has the wrong type",
				dino, e->name);
			if (k->o->repair) {
				rc = vol_inode_get(v, dino, dir);
				if (!rc)
					rc = dir_replace(v, dir, e->name, e->ino, inode_dtype(in->mode));
				if (rc)
					goto out;
			}
		}
		ki->refs++;
		if (ki->flags & KI_VISITED)
			continue;
		ki->found_in = dino;
		if (S_ISDIR(in->mode)) {
			dk = kino_get(k, dino);
			if (!dk) {
				rc = -ENOMEM;
				goto out;
			}
			dk->subdirs++;
		}
		rc = visit_inode(k, e->ino, in, ki);
		if (rc == VMFS_EBADFIELD) {
			/* inode block claimed by other metadata too */
			problem(k, true, "inode %" PRIu64 " overlaps other metadata; entry \"%s\" removed",
				e->ino, e->name);
			ki->refs--;
			ki->flags &= ~(uint32_t)KI_VISITED;
			rc = 0;
			if (k->o->repair) {
				rc = vol_inode_get(v, dino, dir);
				if (!rc)
					rc = dir_remove(v, dir, e->name);
			}
		}
		if (rc)
			goto out;
	}
out:
	free(es.e);
	free(dir);
	free(in);
	return rc;
}

static int walk_from(struct ck *k, uint64_t start)
{
	int rc = 0;

	while (!rc && k->qn > 0) {
		uint64_t d = k->queue[--k->qn];

		rc = walk_dir(k, d);
	}
	(void)start;
	return rc;
}

/* ---- phase 4: extents ---- */

static int check_extents(struct ck *k)
{
	struct vol *v = k->v;
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc = 0;

	if (!in)
		return -ENOMEM;
	for (size_t f = k->fdone; f < k->fn && !rc; f++, k->fdone = f) {
		struct kino *ki = kino_get(k, k->files[f]);
		struct xmap m = { 0 };
		uint64_t total = 0;

		if (!ki) {
			rc = -ENOMEM;
			break;
		}
		if (vol_inode_get(v, k->files[f], in) || xmap_load(v, in, &m))
			continue;	/* checked in visit_inode */
		for (uint32_t i = 0; i < m.n; i++) {
			const struct vmfs_extent *e = &m.e[i];
			bool clash = false;

			for (uint32_t j = 0; j < e->len; j++)
				if (k->bstate[e->pblk + j] != VMFS_B_FREE)
					clash = true;
			if (clash) {
				uint32_t *p = realloc(ki->drop, (ki->ndrop + 1) * sizeof(*p));

				if (!p) {
					rc = -ENOMEM;
					break;
				}
				ki->drop = p;
				ki->drop[ki->ndrop++] = e->lblk;
				problem(k, true, "file inode %" PRIu64 ": extent at file block %u uses blocks "
					"owned elsewhere; dropped", k->files[f], e->lblk);
				continue;
			}
			for (uint32_t j = 0; j < e->len; j++)
				k->bstate[e->pblk + j] = VMFS_B_DATA;
			total += e->len;
		}
		if (!ki->ndrop && total != in->nblocks) {
			problem(k, true, "file inode %" PRIu64 ": block count %" PRIu64 " should be %" PRIu64,
				k->files[f], in->nblocks, total);
			if (k->o->repair) {
				in->nblocks = total;
				rc = vol_inode_put(v, in);
			}
		}
		xmap_release(&m);
	}
	free(in);
	return rc;
}

/* ---- phase 5: lost inodes ---- */

static int chunk_read(struct ck *k, uint64_t b, struct vmfs_chunk *c)
{
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	int rc;

	if (!blk)
		return -ENOMEM;
	rc = diskio_pread(k->v->dio, blk, VMFS_MBLK, b * k->v->mpb * VMFS_MBLK);
	if (!rc)
		rc = vmfs_chunk_decode(blk, b * k->v->mpb, k->v->sb.uuid, c);
	if (!rc && (c->block != b || c->nslots != k->v->mpb))
		rc = VMFS_EBADFIELD;
	free(blk);
	return rc;
}

static int rg_read(struct ck *k, uint32_t i, struct vmfs_rg *rg)
{
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	uint64_t addr = vmfs_rg_addr(&k->v->sb, i), first = vmfs_rg_first_block(&k->v->sb, i);
	int rc;

	if (!blk)
		return -ENOMEM;
	rc = diskio_pread(k->v->dio, blk, VMFS_MBLK, addr * VMFS_MBLK);
	if (!rc)
		rc = vmfs_rg_decode(blk, addr, k->v->sb.uuid, rg);
	if (!rc && (rg->index != i || rg->first_block != first ||
		    rg->nblocks != (k->v->sb.nblocks - first < k->v->sb.rg_blocks ?
				    k->v->sb.nblocks - first : k->v->sb.rg_blocks)))
		rc = VMFS_EBADFIELD;
	free(blk);
	return rc;
}

/* Is block b a meta chunk on disk?  From its RG bitmap, or (RG damaged)
 * from a valid chunk header there. */
static bool ondisk_meta(struct ck *k, const struct vmfs_rg *rg, bool rg_ok, uint64_t b,
			struct vmfs_chunk *c, bool *chunk_ok)
{
	/* with a good bitmap only its META blocks cost a read */
	if (rg_ok && vmfs_rg_get(rg, (uint32_t)(b - rg->first_block)) != VMFS_B_META) {
		*chunk_ok = false;
		return false;
	}
	*chunk_ok = chunk_read(k, b, c) == 0;
	return rg_ok || *chunk_ok;
}

/* Quiet probe: does addr hold a valid inode record? */
static bool is_inode_blk(struct ck *k, uint64_t addr)
{
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	bool r = false;

	if (blk && !diskio_pread(k->v->dio, blk, VMFS_MBLK, addr * VMFS_MBLK))
		r = vmfs_hdr_check(blk, VMFS_T_INODE, addr, k->v->sb.uuid) == 0;
	free(blk);
	return r;
}

static int find_lost(struct ck *k)
{
	struct vol *v = k->v;
	struct vmfs_rg *rg = malloc(sizeof(*rg));
	struct vmfs_chunk *c = malloc(sizeof(*c));
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc = 0;

	if (!rg || !c || !in) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < v->sb.nrgs && !rc; i++) {
		bool rg_ok = rg_read(k, i, rg) == 0, cok;
		uint64_t first = vmfs_rg_first_block(&v->sb, i);
		uint64_t nb = v->sb.nblocks - first < v->sb.rg_blocks ? v->sb.nblocks - first :
			v->sb.rg_blocks;

		for (uint64_t b = first; b < first + nb && !rc; b++) {
			if (k->bstate[b] == VMFS_B_DATA)
				continue;
			if (!ondisk_meta(k, rg, rg_ok, b, c, &cok) || !cok)
				continue;
			for (uint32_t s = 1; s < c->nslots && !rc; s++) {
				uint64_t addr = b * v->mpb + s;
				struct kino *ki;

				if (!(c->bitmap[s / 8] & (1u << (s % 8))) || marked(k, addr))
					continue;
				if (!is_inode_blk(k, addr) || vol_inode_get(v, addr, in))
					continue;	/* not an inode: a leaked block, maps fix it */
				if (in->nlink == 0) {
					problem(k, true, "orphan inode %" PRIu64 " (unlinked) freed", addr);
					continue;
				}
				ki = kino_get(k, addr);
				if (!ki) {
					rc = -ENOMEM;
					break;
				}
				if (ki->flags & KI_VISITED)
					continue;
				ki->flags |= KI_LOST;
				rc = push(&k->lost, &k->ln, &k->lcap, addr);
			}
		}
	}
	/* directories first, so their subtrees come along with them */
	for (int pass = 0; pass < 2 && !rc; pass++) {
		for (size_t j = 0; j < k->ln && !rc; j++) {
			struct kino *ki = kino_get(k, k->lost[j]);

			if (!ki || vol_inode_get(v, k->lost[j], in)) {
				rc = ki ? 0 : -ENOMEM;
				continue;
			}
			if ((pass == 0) != !!S_ISDIR(in->mode) || (ki->flags & KI_VISITED))
				continue;
			problem(k, true, "inode %" PRIu64 " is not in any directory; moved to lost+found",
				k->lost[j]);
			rc = visit_inode(k, k->lost[j], in, ki);
			if (rc == VMFS_EBADFIELD) {
				ki->flags &= ~(uint32_t)(KI_VISITED | KI_LOST);
				rc = 0;
				continue;
			}
			if (!rc)
				rc = walk_from(k, k->lost[j]);
		}
	}
out:
	free(rg);
	free(c);
	free(in);
	return rc;
}

/* ---- phase 6: link counts ---- */

static int check_links(struct ck *k)
{
	struct vol *v = k->v;
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc = 0;

	if (!in)
		return -ENOMEM;
	for (size_t i = 0; i < k->capki && !rc; i++) {
		struct kino *ki = &k->ki[i];
		uint32_t want;
		uint64_t parent;
		bool dirty = false;

		if (!ki->ino || !(ki->flags & KI_VISITED) || (ki->flags & KI_LOST))
			continue;	/* lost ones get their links when reconnected */
		if (vol_inode_get(v, ki->ino, in))
			continue;
		if (ki->flags & KI_DIR) {
			want = 2 + ki->subdirs;
			parent = ki->ino == v->sb.root_ino ? ki->ino : ki->found_in;
			if (in->parent != parent) {
				problem(k, true, "directory inode %" PRIu64 ": parent pointer wrong", ki->ino);
				in->parent = parent;
				dirty = true;
			}
		} else {
			want = ki->refs;
		}
		if (in->nlink != want) {
			problem(k, true, "inode %" PRIu64 ": link count %u should be %u", ki->ino,
				in->nlink, want);
			in->nlink = want;
			dirty = true;
		}
		if (dirty && k->o->repair)
			rc = vol_inode_put(v, in);
	}
	free(in);
	return rc;
}

/* ---- phase 7: allocation maps ---- */

static int check_maps(struct ck *k, bool *changed)
{
	struct vol *v = k->v;
	struct vmfs_rg *rg = malloc(sizeof(*rg)), *want = malloc(sizeof(*want));
	struct vmfs_chunk *c = malloc(sizeof(*c)), *cw = malloc(sizeof(*cw));
	int rc = 0;

	*changed = false;
	if (!rg || !want || !c || !cw) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < v->sb.nrgs && !rc; i++) {
		uint64_t first = vmfs_rg_first_block(&v->sb, i);
		uint32_t nb = (uint32_t)(v->sb.nblocks - first < v->sb.rg_blocks ?
					 v->sb.nblocks - first : v->sb.rg_blocks);
		bool rg_ok = rg_read(k, i, rg) == 0, cok;
		unsigned diff = 0;

		memset(want, 0, sizeof(*want));
		vmfs_hdr_init(&want->h, VMFS_T_RG, vmfs_rg_addr(&v->sb, i), v->sb.uuid);
		want->index = i;
		want->nblocks = nb;
		want->first_block = first;
		for (uint32_t j = 0; j < nb && !rc; j++) {
			uint64_t b = first + j;
			unsigned st = k->bstate[b];
			struct kslot *ks;

			/* keep empty chunks that are intact; the RG header's chunk always */
			if (j == 0)
				st = VMFS_B_META;
			else if (st == VMFS_B_FREE && ondisk_meta(k, rg, rg_ok, b, c, &cok) && cok)
				st = VMFS_B_META;
			vmfs_rg_set(want, j, st);
			if (st == VMFS_B_FREE)
				want->free_blocks++;
			if (!rg_ok || vmfs_rg_get(rg, j) != st)
				diff++;
			if (st != VMFS_B_META)
				continue;
			/* the chunk's slot bitmap */
			memset(cw, 0, sizeof(*cw));
			vmfs_hdr_init(&cw->h, VMFS_T_CHUNK, b * v->mpb, v->sb.uuid);
			cw->block = b;
			cw->nslots = v->mpb;
			cw->rg = i;
			ks = kslot_get(k, b, false);
			cw->bitmap[0] = j == 0 ? 0x3 : 0x1;
			if (ks)
				for (uint32_t s = 0; s < v->mpb / 8; s++)
					cw->bitmap[s] |= ks->bits[s];
			cw->free_slots = 0;
			for (uint32_t s = 0; s < v->mpb; s++)
				if (!(cw->bitmap[s / 8] & (1u << (s % 8))))
					cw->free_slots++;
			cok = chunk_read(k, b, c) == 0;
			if (!cok || c->free_slots != cw->free_slots || c->rg != i ||
			    memcmp(c->bitmap, cw->bitmap, v->mpb / 8)) {
				problem(k, true, "meta chunk at byte offset %" PRIu64 ": %s",
					b * v->bsize, cok ? "slot bitmap wrong" : "header damaged");
				*changed = true;
				if (k->o->repair) {
					uint8_t blk[VMFS_MBLK];

					cw->h.generation = cok ? c->h.generation + 1 : 1;
					vmfs_chunk_encode(cw, blk);
					rc = write_blk(k, blk, b * v->mpb);
					mc_forget(v, b * v->mpb);
				}
			}
		}
		if (!rc && (diff || !rg_ok || rg->free_blocks != want->free_blocks)) {
			problem(k, true, "resource group %u at byte offset %" PRIu64 ": %s (%u blocks differ)",
				i, vmfs_rg_addr(&v->sb, i) * VMFS_MBLK,
				rg_ok ? "bitmap wrong" : "header damaged", diff);
			*changed = true;
			if (k->o->repair) {
				uint8_t blk[VMFS_MBLK];

				want->h.generation = rg_ok ? rg->h.generation + 1 : 1;
				vmfs_rg_encode(want, blk);
				rc = write_blk(k, blk, vmfs_rg_addr(&v->sb, i));
				mc_forget(v, vmfs_rg_addr(&v->sb, i));
			}
		}
	}
out:
	free(rg);
	free(want);
	free(c);
	free(cw);
	return rc;
}

/* ---- phase 8: fixes that allocate ---- */

static int ensure_dirs(struct ck *k, struct vmfs_inode *root, struct vmfs_inode *lf)
{
	struct vol *v = k->v;
	uint64_t ino;
	int rc = 0;
	bool sb_dirty = false;

	if (k->root_bad) {
		rc = inode_alloc(v, S_IFDIR | 0755, 0, 0, 0, root);
		if (rc)
			return rc;
		root->parent = root->h.self;
		rc = vol_inode_put(v, root);
		v->sb.root_ino = root->h.self;
		sb_dirty = true;
	} else {
		rc = vol_inode_get(v, v->sb.root_ino, root);
	}
	if (rc)
		return rc;
	if (dir_lookup(v, root, "lost+found", &ino, NULL) == 0 && !vol_inode_get(v, ino, lf) &&
	    S_ISDIR(lf->mode)) {
		if (ino != v->sb.lostfound_ino) {
			v->sb.lostfound_ino = ino;
			sb_dirty = true;
		}
	} else {
		problem(k, true, "/lost+found missing; created");
		if (dir_remove(v, root, "lost+found") == 0)	/* a non-directory */
			problem(k, true, "/lost+found is not a directory; replaced");
		rc = inode_alloc(v, S_IFDIR | 0700, 0, 0, root->h.self, lf);
		if (!rc)
			rc = dir_add(v, root, "lost+found", lf->h.self, DT_DIR);
		if (!rc) {
			root->nlink++;
			rc = vol_inode_put(v, root);
		}
		v->sb.lostfound_ino = lf->h.self;
		sb_dirty = true;
	}
	if (!rc && sb_dirty) {
		uint8_t blk[VMFS_MBLK];
		struct vmfs_sb s = v->sb;

		s.h.self = VMFS_SB_ADDR;
		vmfs_sb_encode(&s, blk);
		rc = write_blk(k, blk, VMFS_SB_ADDR);
		s.h.self = v->sb.backup_addr;
		vmfs_sb_encode(&s, blk);
		if (!rc)
			rc = write_blk(k, blk, v->sb.backup_addr);
	}
	return rc;
}

static int apply_fixes(struct ck *k)
{
	struct vol *v = k->v;
	struct vmfs_inode *in = malloc(sizeof(*in)), *root = malloc(sizeof(*root));
	struct vmfs_inode *lf = malloc(sizeof(*lf));
	int rc;

	if (!in || !root || !lf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = alloc_init(v);	/* the maps are right now */
	if (rc)
		goto out;
	for (size_t i = 0; i < k->capki && !rc; i++) {
		struct kino *ki = &k->ki[i];

		if (!ki->ino || !(ki->flags & KI_VISITED))
			continue;
		if (ki->flags & KI_DAMAGED) {
			rc = vol_inode_get(v, ki->ino, in);
			if (rc)
				break;
			if (ki->flags & KI_DIR) {
				rc = dir_init(v, in);	/* fresh, empty; old blocks are free */
				in->nlink = 2;
			} else {
				memset(in->area, 0, sizeof(in->area));
				in->size = 0;
				in->nblocks = 0;
				in->iflags = S_ISREG(in->mode) ? VMFS_IF_INLINE : 0;
			}
			if (!rc)
				rc = vol_inode_put(v, in);
		} else if (ki->ndrop) {
			struct xmap m = { 0 };

			rc = vol_inode_get(v, ki->ino, in);
			if (!rc)
				rc = xmap_load(v, in, &m);
			for (uint32_t d = 0; !rc && d < ki->ndrop; d++) {
				int x = xmap_find(&m, ki->drop[d], NULL);

				if (x >= 0) {	/* unmap without freeing: not ours */
					memmove(&m.e[x], &m.e[x + 1], (m.n - (uint32_t)x - 1) * sizeof(*m.e));
					m.n--;
				}
			}
			if (!rc)
				rc = xmap_store(v, in, &m);
			if (!rc)
				rc = vol_inode_put(v, in);
			xmap_release(&m);
		}
	}
	if (rc)
		goto out;
	rc = ensure_dirs(k, root, lf);
	for (size_t j = 0; j < k->ln && !rc; j++) {
		struct kino *ki = kino_get(k, k->lost[j]);
		char name[32];

		if (!ki || !(ki->flags & KI_LOST) || !(ki->flags & KI_VISITED) || ki->refs)
			continue;
		rc = vol_inode_get(v, k->lost[j], in);
		if (rc)
			break;
		snprintf(name, sizeof(name), "#%" PRIu64, k->lost[j]);
		rc = vol_inode_get(v, lf->h.self, lf);
		if (!rc)
			rc = dir_add(v, lf, name, k->lost[j], inode_dtype(in->mode));
		if (!rc && S_ISDIR(in->mode)) {
			in->parent = lf->h.self;
			rc = vol_inode_put(v, in);
			if (!rc) {
				rc = vol_inode_get(v, lf->h.self, lf);
				lf->nlink++;
				if (!rc)
					rc = vol_inode_put(v, lf);
			}
		}
		if (rc == -EEXIST)
			rc = 0;
	}
	if (!rc)
		rc = vol_commit(v);
out:
	free(in);
	free(root);
	free(lf);
	return rc;
}

/* ---- driver ---- */

static void ck_reset(struct ck *k)
{
	for (size_t i = 0; i < k->capks; i++)
		if (k->ks[i].block != UINT64_MAX)
			free(k->ks[i].bits);
	free(k->ks);
	for (size_t i = 0; i < k->capki; i++)
		free(k->ki[i].drop);
	free(k->ki);
	free(k->queue);
	free(k->files);
	free(k->lost);
	free(k->bstate);
	free(k->rg_bad);
	k->ks = NULL;
	k->ki = NULL;
	k->queue = k->files = k->lost = NULL;
	k->bstate = k->rg_bad = NULL;
	k->nks = k->capks = k->nki = k->capki = 0;
	k->qn = k->qcap = k->fn = k->fcap = k->fdone = k->ln = k->lcap = 0;
	k->problems = k->fixed = 0;
	k->root_bad = k->lf_bad = false;
}

static void phase(const struct ck *k, const char *what)
{
	if (k->o->progress)
		fprintf(stderr, "vmfs-fsck: %s\n", what);
}

static int one_pass(struct ck *k, uint64_t dead)
{
	struct vol *v = k->v;
	struct vmfs_inode *root = malloc(sizeof(*root));
	struct kino *ki;
	bool changed;
	int rc;

	if (!root)
		return -ENOMEM;
	k->bstate = calloc(v->sb.nblocks, 1);
	if (!k->bstate) {
		rc = -ENOMEM;
		goto out;
	}
	phase(k, "checking host slots and journals");
	rc = check_slots(k, dead);
	if (rc)
		goto out;
	phase(k, "walking the directory tree");
	if (vol_inode_get(v, v->sb.root_ino, root) || !S_ISDIR(root->mode)) {
		problem(k, true, "root directory inode at byte offset %" PRIu64 " damaged; recreated",
			v->sb.root_ino * VMFS_MBLK);
		k->root_bad = true;
	} else {
		ki = kino_get(k, v->sb.root_ino);
		if (!ki) {
			rc = -ENOMEM;
			goto out;
		}
		rc = visit_inode(k, v->sb.root_ino, root, ki);
		if (rc == VMFS_EBADFIELD) {
			problem(k, true, "root inode overlaps other metadata; recreated");
			k->root_bad = true;
			rc = 0;
		}
		if (!rc)
			rc = walk_from(k, v->sb.root_ino);
	}
	if (rc)
		goto out;
	phase(k, "checking file extents");
	rc = check_extents(k);
	if (rc)
		goto out;
	phase(k, "looking for lost inodes");
	rc = find_lost(k);
	if (!rc)
		rc = check_extents(k);	/* files found under lost directories */
	if (rc)
		goto out;
	phase(k, "checking link counts");
	rc = check_links(k);
	if (!rc && k->o->repair)
		rc = vol_commit(v);
	if (rc)
		goto out;
	phase(k, "checking allocation maps");
	rc = check_maps(k, &changed);
	if (rc)
		goto out;
	if (k->o->repair && (k->fixed || changed))
		rc = apply_fixes(k);
out:
	free(root);
	return rc;
}

int vmfs_check(const char *dev, const struct check_opts *o)
{
	struct ck k;
	struct vol *v = NULL;
	uint64_t live = 0, dead = 0, bad = 0;
	bool used_backup;
	int rc, result = CHECK_CLEAN;

	memset(&k, 0, sizeof(k));
	k.o = o;
	rc = vol_open(dev, VOL_OFFLINE, !o->repair, &v, &used_backup);
	if (rc) {
		printf("vmfs-fsck: %s: no usable vmfs superblock (%s)\n", dev, vmfs_strerror(rc));
		return CHECK_OPERROR;
	}
	k.v = v;
	v->cache_limit = 1u << 20;	/* fsck reads far more than it keeps */
	rc = slot_probe(v, true, &live, &dead, &bad);
	if (rc) {
		printf("vmfs-fsck: cannot read the host slots: %s\n", vmfs_strerror(rc));
		result = CHECK_OPERROR;
		goto out;
	}
	k.live_slots = live;
	if (live) {
		printf("vmfs-fsck: host slot(s) 0x%" PRIx64 " have an advancing heartbeat: the volume "
		       "is in use\n", live);
		if (o->repair && !o->force) {
			printf("vmfs-fsck: refusing to repair a volume in use (use --force)\n");
			result = CHECK_OPERROR;
			goto out;
		}
	}
	rc = check_sb(&k, used_backup);
	if (rc)
		goto operr;
	for (int pass = 0; pass < MAX_PASSES; pass++) {
		unsigned problems;

		rc = one_pass(&k, pass == 0 ? dead : 0);
		problems = k.problems + (pass == 0 && used_backup ? 1 : 0);
		if (rc)
			goto operr;
		if (o->verbose || problems)
			printf("vmfs-fsck: pass %d: %u problem(s)%s\n", pass + 1, problems,
			       o->repair && problems ? ", fixed" : "");
		if (!problems) {
			if (pass > 0)
				result = CHECK_CORRECTED;
			break;
		}
		if (!o->repair) {
			result = CHECK_UNCORRECTED;
			break;
		}
		result = CHECK_UNCORRECTED;	/* until a clean pass proves otherwise */
		used_backup = false;
		ck_reset(&k);
		/* drop everything cached: the fixes rewrote blocks directly */
		vol_close(v);
		v = NULL;
		rc = vol_open(dev, VOL_OFFLINE, false, &v, NULL);
		if (rc)
			goto operr;
		k.v = v;
		v->cache_limit = 1u << 20;
	}
	if (result == CHECK_CLEAN && o->verbose)
		printf("vmfs-fsck: %s: clean\n", dev);
	goto out;
operr:
	printf("vmfs-fsck: %s: %s\n", dev, vmfs_strerror(rc));
	result = CHECK_OPERROR;
out:
	ck_reset(&k);
	vol_close(v);
	return result;
}
