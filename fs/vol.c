/* vol.c — volume open/close, the metadata cache and transaction commit. */
#include "config.h"
#include "vol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define HSIZE 65536
#define CACHE_LIMIT 16384	/* mblks (64 MiB) kept before trimming */

void vol_report_bad(struct vol *v, int type, uint64_t addr, int err)
{
	log_err("%s at byte offset %llu (mblk %llu): %s", vmfs_rtype_name(type),
		(unsigned long long)(addr * VMFS_MBLK), (unsigned long long)addr,
		vmfs_strerror(err));
}

static int read_sb(struct vol *v, uint64_t addr, struct vmfs_sb *sb)
{
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	int rc;

	if (!blk)
		return -ENOMEM;
	rc = diskio_pread(v->dio, blk, VMFS_MBLK, addr * VMFS_MBLK);
	if (!rc)
		rc = vmfs_sb_decode(blk, addr, NULL, sb);
	if (!rc)
		rc = vmfs_sb_check_geometry(sb, diskio_size(v->dio));
	free(blk);
	return rc;
}

int vol_open(const char *path, enum vol_mode mode, bool rdonly, struct vol **out,
	     bool *used_backup)
{
	struct vol *v = calloc(1, sizeof(*v));
	int rc;

	if (used_backup)
		*used_backup = false;
	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->mu, NULL);
	pthread_mutex_init(&v->dmu, NULL);
	pthread_cond_init(&v->dcond, NULL);
	v->mode = mode;
	v->rdonly = rdonly;
	v->slot = -1;
	v->hsize = HSIZE;
	v->cache_limit = CACHE_LIMIT;
	v->htab = calloc(v->hsize, sizeof(*v->htab));
	if (!v->htab) {
		rc = -ENOMEM;
		goto out;
	}
	rc = diskio_open(path, mode == VOL_MOUNT ? DISKIO_AIO_DIRECT : DISKIO_SYNC, rdonly, &v->dio);
	if (rc) {
		log_err("%s: cannot open: %s", path, strerror(-rc));
		goto out;
	}
	if (diskio_size(v->dio) < 2 * VMFS_MBLK) {
		log_err("%s: too small to hold a vmfs volume", path);
		rc = VMFS_EBADMAGIC;
		goto out;
	}
	rc = read_sb(v, VMFS_SB_ADDR, &v->sb);
	if (rc) {
		int rc2;
		uint64_t baddr = diskio_size(v->dio) / VMFS_MBLK - 1;

		vol_report_bad(v, VMFS_T_SB, VMFS_SB_ADDR, rc);
		if (rc < -2000 && mode == VOL_OFFLINE && rc != VMFS_EBADVERSION) {
			rc2 = read_sb(v, baddr, &v->sb);
			if (rc2) {
				vol_report_bad(v, VMFS_T_SB, baddr, rc2);
				goto out;
			}
			log_warn("using the backup superblock at byte offset %llu",
				 (unsigned long long)(baddr * VMFS_MBLK));
			if (used_backup)
				*used_backup = true;
			rc = 0;
		} else {
			goto out;
		}
	}
	v->bsize = v->sb.block_size;
	v->mpb = v->bsize / VMFS_MBLK;
	/* a small file fits in its first block when it grows out of pages */
	if (v->sb.feature_incompat & VMFS_FEATURE_INCOMPAT_PAGES)
		v->pages_max = VMFS_PAGES_MAX * VMFS_MBLK < v->bsize / 4 ?
			VMFS_PAGES_MAX * VMFS_MBLK : v->bsize / 4;
	*out = v;
	return 0;
out:
	vol_close(v);
	return rc;
}

void vol_close(struct vol *v)
{
	if (!v)
		return;
	if (v->htab) {
		for (size_t i = 0; i < v->hsize; i++) {
			struct mbuf *mb = v->htab[i], *n;

			for (; mb; mb = n) {
				n = mb->hnext;
				free(mb->data);
				free(mb);
			}
		}
		free(v->htab);
	}
	free(v->pfree);
	free(v->pmfree);
	free(v->rg_held);
	free(v->rg_hint);
	diskio_close(v->dio);
	pthread_mutex_destroy(&v->mu);
	pthread_mutex_destroy(&v->dmu);
	pthread_cond_destroy(&v->dcond);
	free(v);
}

static size_t hslot(const struct vol *v, uint64_t addr)
{
	return (size_t)((addr * 0x9E3779B97F4A7C15ull) >> 40) & (v->hsize - 1);
}

static struct mbuf *mc_find(struct vol *v, uint64_t addr)
{
	struct mbuf *mb = v->htab[hslot(v, addr)];

	while (mb && mb->addr != addr)
		mb = mb->hnext;
	return mb;
}

static struct mbuf *mc_insert(struct vol *v, uint64_t addr, uint8_t *data)
{
	struct mbuf *mb = calloc(1, sizeof(*mb));
	size_t h = hslot(v, addr);

	if (!mb)
		return NULL;
	mb->addr = addr;
	mb->data = data;
	mb->hnext = v->htab[h];
	v->htab[h] = mb;
	v->ncached++;
	return mb;
}

static bool addr_valid(const struct vol *v, uint64_t addr)
{
	return addr != 0 && addr < v->sb.total_bytes / VMFS_MBLK;
}

int mc_get(struct vol *v, uint64_t addr, int type, struct mbuf **out)
{
	struct mbuf *mb = mc_find(v, addr);
	uint8_t *data;
	int rc;

	if (mb) {
		if (get_le16(mb->data + 4) != type) {
			vol_report_bad(v, type, addr, VMFS_EBADTYPE);
			return VMFS_EBADTYPE;
		}
		*out = mb;
		return 0;
	}
	if (!addr_valid(v, addr)) {
		vol_report_bad(v, type, addr, VMFS_EBADFIELD);
		return VMFS_EBADFIELD;
	}
	data = diskio_alloc(VMFS_MBLK);
	if (!data)
		return -ENOMEM;
	rc = diskio_pread(v->dio, data, VMFS_MBLK, addr * VMFS_MBLK);
	if (!rc)
		rc = type == VMFS_T_DIRBKT ? vmfs_dirbkt_check(data, addr, v->sb.uuid) :
			vmfs_hdr_check(data, type, addr, v->sb.uuid);
	if (rc) {
		if (rc < -2000)
			vol_report_bad(v, type, addr, rc);
		free(data);
		return rc;
	}
	mb = mc_insert(v, addr, data);
	if (!mb) {
		free(data);
		return -ENOMEM;
	}
	*out = mb;
	return 0;
}

int mc_new(struct vol *v, uint64_t addr, struct mbuf **out)
{
	struct mbuf *mb = mc_find(v, addr);

	if (!addr_valid(v, addr))
		return VMFS_EBADFIELD;
	if (!mb) {
		uint8_t *data = diskio_alloc(VMFS_MBLK);

		if (!data)
			return -ENOMEM;
		mb = mc_insert(v, addr, data);
		if (!mb) {
			free(data);
			return -ENOMEM;
		}
	}
	memset(mb->data, 0, VMFS_MBLK);
	*out = mb;
	return 0;
}

void mc_dirty(struct vol *v, struct mbuf *mb)
{
	put_le64(mb->data + 16, get_le64(mb->data + 16) + 1);
	vmfs_block_seal(mb->data);
	if (!mb->dirty) {
		mb->dirty = true;
		mb->dnext = v->dirty;
		v->dirty = mb;
		v->ndirty++;
	}
}

void mc_forget(struct vol *v, uint64_t addr)
{
	struct mbuf **pp = &v->htab[hslot(v, addr)];

	for (; *pp; pp = &(*pp)->hnext) {
		struct mbuf *mb = *pp;

		if (mb->addr == addr && !mb->dirty) {
			*pp = mb->hnext;
			free(mb->data);
			free(mb);
			v->ncached--;
			return;
		}
	}
}

void mc_trim(struct vol *v)
{
	size_t target = v->cache_limit * 3 / 4;

	if (v->ncached <= v->cache_limit)
		return;
	for (size_t i = 0; i < v->hsize && v->ncached > target; i++) {
		struct mbuf **pp = &v->htab[i];

		while (*pp) {
			struct mbuf *mb = *pp;

			if (mb->dirty) {
				pp = &mb->hnext;
				continue;
			}
			*pp = mb->hnext;
			free(mb->data);
			free(mb);
			v->ncached--;
		}
	}
}

static void mc_drop_clean_in(struct vol *v, uint32_t types, uint64_t lo, uint64_t hi)
{
	for (size_t i = 0; i < v->hsize; i++) {
		struct mbuf **pp = &v->htab[i];

		while (*pp) {
			struct mbuf *mb = *pp;
			unsigned type = get_le16(mb->data + 4);

			if (mb->dirty || (type < 32 && !(types & VMFS_MC_TYPE(type))) ||
			    mb->addr < lo || mb->addr >= hi) {
				pp = &mb->hnext;
				continue;
			}
			*pp = mb->hnext;
			free(mb->data);
			free(mb);
			v->ncached--;
		}
	}
}

void mc_drop_clean_types(struct vol *v, uint32_t types)
{
	mc_drop_clean_in(v, types, 0, UINT64_MAX);
}

void mc_drop_clean(struct vol *v)
{
	mc_drop_clean_types(v, VMFS_MC_ALL);
}

int vol_handover(struct vol *v, uint32_t types)
{
	return vol_handover_in(v, types, 0, UINT64_MAX);
}

int vol_handover_in(struct vol *v, uint32_t types, uint64_t lo, uint64_t hi)
{
	int rc = vol_commit(v);

	if (rc)
		return rc;
	if (v->slot >= 0 && v->clean_seq != v->seq) {
		/* journal_mark_clean syncs the checkpoint writes first */
		rc = journal_mark_clean(v, (uint32_t)v->slot, v->seq);
		if (rc)
			return rc;
		v->ckpt_unsynced = false;
		v->clean_seq = v->seq;
	}
	mc_drop_clean_in(v, types, lo, hi);
	if (types & VMFS_MC_ALLOC) {
		v->chunk_hint = 0;
		v->free_stale = true;
	}
	return 0;
}

int vol_inode_get(struct vol *v, uint64_t ino, struct vmfs_inode *out)
{
	struct mbuf *mb;
	int rc = mc_get(v, ino, VMFS_T_INODE, &mb);

	if (rc)
		return rc;
	rc = vmfs_inode_decode(mb->data, ino, v->sb.uuid, out);
	if (rc)
		vol_report_bad(v, VMFS_T_INODE, ino, rc);
	return rc;
}

int vol_inode_put(struct vol *v, const struct vmfs_inode *in)
{
	struct mbuf *mb;
	int rc = mc_get(v, in->h.self, VMFS_T_INODE, &mb);

	if (rc)
		return rc;
	vmfs_inode_encode(in, mb->data);
	mc_dirty(v, mb);
	return 0;
}

static int commit_in_place(struct vol *v)
{
	int rc = 0;

	for (struct mbuf *mb = v->dirty, *n; mb; mb = n) {
		n = mb->dnext;
		if (!rc)
			rc = diskio_pwrite(v->dio, mb->data, VMFS_MBLK, mb->addr * VMFS_MBLK);
		mb->dirty = false;
		mb->dnext = NULL;
	}
	v->dirty = NULL;
	v->ndirty = 0;
	if (!rc)
		rc = diskio_sync(v->dio);
	return rc;
}

void vol_presync(struct vol *v)
{
	uint64_t seq;
	bool need;

	pthread_mutex_lock(&v->mu);
	need = v->ckpt_unsynced && v->mode == VOL_MOUNT && !v->error;
	seq = v->seq;
	pthread_mutex_unlock(&v->mu);
	if (!need || diskio_sync(v->dio))
		return;		/* a failure is the commit's to report */
	pthread_mutex_lock(&v->mu);
	if (v->seq == seq)	/* nothing was written in place since */
		v->ckpt_unsynced = false;
	pthread_mutex_unlock(&v->mu);
}

void vol_data_begin(struct vol *v)
{
	pthread_mutex_lock(&v->dmu);
	v->data_inflight++;
	pthread_mutex_unlock(&v->dmu);
}

void vol_data_end(struct vol *v, int rc)
{
	if (rc)
		atomic_store(&v->data_lost, true);
	pthread_mutex_lock(&v->dmu);
	v->data_inflight--;
	pthread_cond_broadcast(&v->dcond);
	pthread_mutex_unlock(&v->dmu);
}

int vol_data_check(const struct vol *v)
{
	return atomic_load(&v->data_lost) ? -EIO : 0;
}

/* mu held: wait for the data of the fills marked written (vol_data_begin). */
static int data_wait(struct vol *v)
{
	pthread_mutex_lock(&v->dmu);
	while (v->data_inflight)
		pthread_cond_wait(&v->dcond, &v->dmu);
	pthread_mutex_unlock(&v->dmu);
	if (!vol_data_check(v))
		return 0;
	log_err("the data of a write answered before it reached the disk was lost, and its "
		"block is marked written in the running transaction: the volume is now "
		"read-only and that transaction is never committed");
	v->error = -EIO;
	return -EIO;
}

int vol_commit(struct vol *v)
{
	int rc;

	if (v->error)
		return v->error;
	if (v->rdonly)
		return v->ndirty ? -EROFS : 0;
	/* also with nothing dirty: a handover (vol_handover) lets another
	 * host change the blocks, which must not have a write in flight */
	if (data_wait(v))
		return -EIO;
	rc = v->mode == VOL_OFFLINE ? commit_in_place(v) : journal_commit(v);
	if (rc) {
		/* The cache no longer matches the disk: stop changing anything. */
		if (diskio_fenced(v->dio))	/* decision 3: as it must */
			log_warn("this host is fenced (no lease): %zu changed metadata blocks "
				 "stay off the disk; whoever recovers this host's slot replays "
				 "its journal up to the last commit", v->ndirty);
		else
			log_err("transaction commit failed: %s; the volume is now read-only",
				vmfs_strerror(rc));
		v->error = -EIO;
		return -EIO;
	}
	v->npfree = 0;
	v->npmfree = 0;
	return 0;
}

int vol_maybe_commit(struct vol *v)
{
	if (v->ndirty > v->sb.journal_blocks / 4 || v->npfree > 4096 || v->npmfree > 4096)
		return vol_commit(v);
	return 0;
}
