/* fuse_ops.c — FUSE low-level operations over the vmfs volume.
 *
 * Every handler replies exactly once.  Metadata handlers run under vol.mu
 * (the single-host metadata lock, see vol.h); data handlers hold the
 * vnode's rwlock and let file.c take vol.mu around metadata.  Cluster
 * locks (locking.h, lock sets of cluster.h) are taken first, before the
 * rwlock and vol.mu: PR on an inode to read it, EX to change it, EX on a
 * resource group "a<N>" when blocks may be allocated or freed there (the
 * group the host allocates in, then what the checks of alloc.h ask for:
 * lks_regroup).  Operations that
 * find an inode by name look it up under the directory's lock, add the
 * child's lock without waiting (lks_try_add), and when that fails take the
 * whole set in order and look again.  Permission checks are the kernel's
 * (mount option default_permissions).
 */
#include "config.h"
#include "fuse_ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cluster.h"
#include "alloc.h"
#include "dir.h"
#include "file.h"
#include "fuse_loop.h"
#include "inode.h"
#include "log.h"
#include "pages.h"
#include "spare.h"
#include "vmfs/dlm.h"
#include "vmfs/fs.h"

#define VT_SIZE 4096

static struct fsctx *ctx_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static uint64_t to_disk(struct fsctx *c, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? c->v->sb.root_ino : (uint64_t)ino;
}

static fuse_ino_t to_fuse(struct fsctx *c, uint64_t ino)
{
	return ino == c->v->sb.root_ino ? FUSE_ROOT_ID : (fuse_ino_t)ino;
}

/* ---- vnode table ---- */

static struct vnode *vnode_find_locked(struct fsctx *c, uint64_t ino)
{
	struct vnode *vn = c->vt[(ino * 0x9E3779B97F4A7C15ull >> 40) % c->vsize];

	while (vn && vn->ino != ino)
		vn = vn->next;
	return vn;
}

/* Find or create, adding lookups/opens.  NULL on allocation failure. */
static struct vnode *vnode_get(struct fsctx *c, uint64_t ino, uint64_t lookups, uint32_t opens)
{
	struct vnode *vn;

	pthread_mutex_lock(&c->vmu);
	vn = vnode_find_locked(c, ino);
	if (!vn) {
		size_t h = (ino * 0x9E3779B97F4A7C15ull >> 40) % c->vsize;

		vn = calloc(1, sizeof(*vn));
		if (vn) {
			vn->ino = ino;
			pthread_rwlock_init(&vn->rw, NULL);
			pthread_mutex_init(&vn->fq_mu, NULL);
			pthread_cond_init(&vn->fq_cond, NULL);
			wb_init(&vn->wb);
			pthread_mutex_init(&vn->ra_mu, NULL);
			pthread_cond_init(&vn->ra_cond, NULL);
			vn->next = c->vt[h];
			c->vt[h] = vn;
		}
	}
	if (vn) {
		vn->nlookup += lookups;
		vn->nopen += opens;
	}
	pthread_mutex_unlock(&c->vmu);
	return vn;
}

/* Would dropping lookups/opens leave the vnode unused? */
static bool vnode_last(struct fsctx *c, uint64_t ino, uint64_t lookups, uint32_t opens)
{
	struct vnode *vn;
	bool last;

	pthread_mutex_lock(&c->vmu);
	vn = vnode_find_locked(c, ino);
	last = vn && vn->nlookup <= lookups && vn->nopen <= opens;
	pthread_mutex_unlock(&c->vmu);
	return last;
}

static void vnode_free(struct vnode *vn)
{
	pthread_rwlock_destroy(&vn->rw);
	pthread_mutex_destroy(&vn->fq_mu);
	pthread_cond_destroy(&vn->fq_cond);
	wb_destroy(&vn->wb);
	pthread_mutex_destroy(&vn->ra_mu);
	pthread_cond_destroy(&vn->ra_cond);
	free(vn);
}

/* Drop lookups/opens from the vnode of ino; free the vnode when nothing
 * uses it any more.  With vmu.  True if it was freed. */
static bool vnode_count_down(struct fsctx *c, uint64_t ino, uint64_t lookups, uint32_t opens)
{
	struct vnode *vn = vnode_find_locked(c, ino), **pp;

	if (!vn)
		return false;
	vn->nlookup -= lookups < vn->nlookup ? lookups : vn->nlookup;
	vn->nopen -= opens < vn->nopen ? opens : vn->nopen;
	if (vn->nlookup || vn->nopen)
		return false;
	pp = &c->vt[(ino * 0x9E3779B97F4A7C15ull >> 40) % c->vsize];
	while (*pp != vn)
		pp = &(*pp)->next;
	*pp = vn->next;
	vnode_free(vn);
	return true;
}

/* Does the inode own blocks besides its own mblk?  Then freeing it needs
 * group locks (spare mode cannot free data blocks). */
static bool owns_blocks(const struct vmfs_inode *in)
{
	return S_ISDIR(in->mode) || (S_ISREG(in->mode) && !(in->iflags & VMFS_IF_INLINE));
}

/* The end of an unlinked inode nothing here uses any more, listed on this
 * host's orphan list: freed under the group locks of its blocks
 * (have_alloc: VMFS_ENEEDRG when some are not held, alloc.h) or in spare
 * mode (spare.h: its mblk becomes a spare) when it owns no blocks; else it
 * stays listed (unmount or recovery frees it).  Only the host that
 * unlinked it listed it; any other host's last reference is a stale one
 * (that host freed it already).  With vol.mu and EX on ino. */
static int orphan_end(struct fsctx *c, uint64_t ino, bool have_alloc)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc;

	if (!in || c->v->error || vol_inode_get(c->v, ino, in) || in->nlink != 0 ||
	    orphan_listed(c->v, ino) != 1 ||
	    (!have_alloc && (owns_blocks(in) || !spare_ok(c->v)))) {
		free(in);
		return 0;
	}
	if (!have_alloc) {
		c->v->spare_mode = true;
		rc = orphan_del(c->v, ino);	/* first: a spare of this mblk is listed again */
		if (!rc)
			rc = inode_free(c->v, ino);
		c->v->spare_mode = false;
	} else {
		/* the groups it owns blocks in, or VMFS_ENEEDRG (alloc.h) */
		rc = inode_release(c->v, ino);
		if (!rc)
			rc = orphan_del(c->v, ino);
		if (!rc && c->lk.cluster)
			rc = spare_rebalance(c->v);
	}
	if (rc && rc != VMFS_ENEEDRG)
		log_err("freeing unlinked inode %llu: %s", (unsigned long long)ino,
			vmfs_strerror(rc));
	free(in);
	return rc == VMFS_ENEEDRG ? rc : 0;
}

/* spare_ok() for choosing an operation's locks, before vol.mu. */
static bool spares_ok(struct fsctx *c)
{
	bool ok;

	pthread_mutex_lock(&c->v->mu);
	ok = spare_ok(c->v);
	pthread_mutex_unlock(&c->v->mu);
	return ok;
}

/* Just after taking vol.mu in an operation that planned (*spare) to run on
 * the spare mblks without group locks: spare mode on, true.  Or the spares
 * went to another thread meanwhile: vol.mu and the operation's locks are
 * released, *spare cleared, false: start again with a group lock. */
static bool spare_mode_enter(struct fsctx *c, struct lkset *ls, bool *spare)
{
	if (*spare && !spare_ok(c->v)) {
		pthread_mutex_unlock(&c->v->mu);
		lks_unlock(c, ls);
		lks_init(ls);
		*spare = false;
		return false;
	}
	c->v->spare_mode = *spare;
	return true;
}

/* Would orphan_end() need group locks?  With vol.mu. */
static bool orphan_end_needs_alloc(struct fsctx *c, uint64_t ino)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	bool need = true;

	if (in && c->lk.cluster && spare_ok(c->v) && !vol_inode_get(c->v, ino, in))
		need = owns_blocks(in);
	free(in);
	return need;
}

/* vnode_put() for a caller that holds EX on the inode, or runs
 * single-host; have_alloc: not in spare mode (the groups are checked).
 * True if the inode is left for orphan_reap() (it needs group locks). */
static bool vnode_put_locked(struct fsctx *c, uint64_t ino, uint64_t lookups, uint32_t opens,
			     bool have_alloc)
{
	bool gone, reap = false;

	pthread_mutex_lock(&c->v->mu);
	pthread_mutex_lock(&c->vmu);
	gone = vnode_count_down(c, ino, lookups, opens);
	pthread_mutex_unlock(&c->vmu);
	if (gone)
		reap = orphan_end(c, ino, have_alloc) == VMFS_ENEEDRG;
	pthread_mutex_unlock(&c->v->mu);
	return reap;
}

/* Drop lookups/opens (FORGET, release).  Called without vol.mu and without
 * cluster locks.  Only the last use of an inode this host listed as its
 * orphan ends something, and only that one takes the inode's lock (and
 * group locks, when it cannot become a spare); every other put only
 * counts, with no lock-manager traffic (the kernel forgets inodes all the
 * time).  The check and the count are one step under vol.mu, as is an
 * unlink's "in use here? then orphan" (drop_link), so neither can slip
 * between the other's. */
static void orphan_reap(struct fsctx *c, uint64_t ino);

static void vnode_put(struct fsctx *c, uint64_t ino, uint64_t lookups, uint32_t opens)
{
	struct lkset ls;
	bool need_alloc, reap;

	if (!c->lk.cluster) {
		(void)vnode_put_locked(c, ino, lookups, opens, true);
		return;
	}
	pthread_mutex_lock(&c->v->mu);
	if (!vnode_last(c, ino, lookups, opens) || orphan_listed(c->v, ino) == 0) {
		pthread_mutex_lock(&c->vmu);
		(void)vnode_count_down(c, ino, lookups, opens);
		pthread_mutex_unlock(&c->vmu);
		pthread_mutex_unlock(&c->v->mu);
		return;
	}
	need_alloc = orphan_end_needs_alloc(c, ino);
	pthread_mutex_unlock(&c->v->mu);
	lks_init(&ls);
	lks_want(&ls, VMFS_LK_INODE, ino, VMFS_LK_EX);
	if (need_alloc)
		lks_want_alloc(c, &ls);
	if (lks_lock(c, &ls)) {
		/* Fenced: only count; whoever recovers this slot frees its
		 * orphans. */
		pthread_mutex_lock(&c->vmu);
		(void)vnode_count_down(c, ino, lookups, opens);
		pthread_mutex_unlock(&c->vmu);
		return;
	}
	reap = vnode_put_locked(c, ino, lookups, opens, need_alloc);
	lks_unlock(c, &ls);
	if (reap)
		orphan_reap(c, ino);
}

static bool vnode_in_use(struct fsctx *c, uint64_t ino);

/* After an unlink left an inode nothing uses on the orphan list
 * (drop_link: it owns blocks, or no spare room): end it now, under its
 * lock and those of the groups it has blocks in (found round by round). */
static void orphan_reap(struct fsctx *c, uint64_t ino)
{
	unsigned tries = 0;
	struct lkset ls;
	int rc;

	rc = lk_inode_alloc(c, &ls, ino);
	while (!rc) {		/* else fenced: recovery frees it */
		pthread_mutex_lock(&c->v->mu);
		rc = vnode_in_use(c, ino) ? 0 : orphan_end(c, ino, true);
		if (vol_maybe_commit(c->v))
			log_err("inode %llu: commit after freeing it failed", (unsigned long long)ino);
		pthread_mutex_unlock(&c->v->mu);
		if (rc != VMFS_ENEEDRG)
			break;
		rc = lks_regroup(c, &ls, &tries);	/* the groups of its blocks */
	}
	lks_unlock(c, &ls);
}

/* The vnode of an open file (it exists until the last release). */
static struct vnode *vnode_open_find(struct fsctx *c, uint64_t ino)
{
	struct vnode *vn;

	pthread_mutex_lock(&c->vmu);
	vn = vnode_find_locked(c, ino);
	pthread_mutex_unlock(&c->vmu);
	return vn;
}

/* A read-ahead in flight or done (op_read, ra_start). */
struct readahead {
	struct fsctx *c;
	struct vnode *vn;
	uint64_t off;
	size_t len;		/* the read it stands for: off, len as asked */
	unsigned gen;		/* vn->wgen when it started */
	struct lkset ls;	/* PR on the inode until it completed */
	struct file_io io;
	bool done;		/* under vn->ra_mu */
	int rc;
};

/* Wait for the vnode's read-ahead, if any, and forget it: a write or a
 * block change makes it stale, and a release must not leave it behind. */
static void ra_drop(struct vnode *vn)
{
	struct readahead *ra;

	pthread_mutex_lock(&vn->ra_mu);
	ra = vn->ra;
	vn->ra = NULL;
	while (ra && !ra->done)
		pthread_cond_wait(&vn->ra_cond, &vn->ra_mu);
	pthread_mutex_unlock(&vn->ra_mu);
	if (ra) {
		file_io_release(&ra->io, ra->rc);
		free(ra);
	}
}

/* Exclusive data lock on a vnode: also waits out the READs and WRITEs
 * whose disk I/O is still in flight (they hold vn->aio instead of a
 * shared rw, op_read says why).  They complete without this lock, so
 * the wait ends within the I/O timeout at worst; it is a poll because
 * exclusive users (truncate, fallocate, allocating writes) are rare next
 * to the I/O they wait for. */
static void vnode_wrlock_io(struct vnode *vn)
{
	pthread_rwlock_wrlock(&vn->rw);
	while (atomic_load(&vn->aio) > 0)
		usleep(50);
	atomic_fetch_add(&vn->wgen, 1);	/* the blocks may change */
	ra_drop(vn);
}

/* The same, and no write answered before it completed in flight either
 * (wb.h; fills of new blocks are not in vn->aio): for truncate, fallocate
 * and appends, which may free or zero blocks anywhere in the file. */
static void vnode_wrlock(struct vnode *vn)
{
	vnode_wrlock_io(vn);
	wb_wait_all(&vn->wb);
}

static bool vnode_in_use(struct fsctx *c, uint64_t ino)
{
	struct vnode *vn;
	bool r;

	pthread_mutex_lock(&c->vmu);
	vn = vnode_find_locked(c, ino);
	r = vn && (vn->nlookup || vn->nopen);
	pthread_mutex_unlock(&c->vmu);
	return r;
}

/* ---- attributes ---- */

static void fill_stat(struct fsctx *c, const struct vmfs_inode *in, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = to_fuse(c, in->h.self);
	st->st_mode = in->mode;
	st->st_nlink = in->nlink;
	st->st_uid = in->uid;
	st->st_gid = in->gid;
	st->st_size = (off_t)in->size;
	st->st_blksize = S_ISREG(in->mode) ? (blksize_t)c->v->bsize : VMFS_MBLK;
	if (S_ISREG(in->mode) && (in->iflags & VMFS_IF_PAGES))
		st->st_blocks = (blkcnt_t)pages_count(in) * (VMFS_MBLK / 512);
	else if (S_ISREG(in->mode) && !(in->iflags & VMFS_IF_INLINE))
		st->st_blocks = (blkcnt_t)(in->nblocks * (c->v->bsize / 512));
	else
		st->st_blocks = (blkcnt_t)((in->size + 511) / 512);
	st->st_atim.tv_sec = in->atime_ns / 1000000000;
	st->st_atim.tv_nsec = in->atime_ns % 1000000000;
	st->st_mtim.tv_sec = in->mtime_ns / 1000000000;
	st->st_mtim.tv_nsec = in->mtime_ns % 1000000000;
	st->st_ctim.tv_sec = in->ctime_ns / 1000000000;
	st->st_ctim.tv_nsec = in->ctime_ns % 1000000000;
}

static void fill_entry(struct fsctx *c, const struct vmfs_inode *in, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = to_fuse(c, in->h.self);
	e->generation = in->igen;
	e->attr_timeout = c->timeout;
	e->entry_timeout = c->timeout;
	fill_stat(c, in, &e->attr);
}

/* Count a lookup while vol.mu is still held, so an unlink cannot free the
 * inode between the directory lookup and the reply. */
static int count_lookup(struct fsctx *c, int rc, uint64_t ino, uint32_t opens)
{
	if (!rc && !vnode_get(c, ino, 1, opens))
		rc = -ENOMEM;
	return rc;
}

/* Reply with an entry already counted by count_lookup, or with the error. */
static void reply_entry_or_err(fuse_req_t req, struct fsctx *c, int rc, const struct vmfs_inode *in)
{
	struct fuse_entry_param e;

	if (rc) {
		fuse_reply_err(req, -vmfs_errno(rc));
		return;
	}
	fill_entry(c, in, &e);
	if (fuse_reply_entry(req, &e) == -ENOENT)	/* interrupted: undo the count */
		vnode_put(c, in->h.self, 1, 0);
}

static int get_dir(struct vol *v, uint64_t ino, struct vmfs_inode *in)
{
	int rc = vol_inode_get(v, ino, in);

	if (!rc && !S_ISDIR(in->mode))
		rc = -ENOTDIR;
	return rc;
}

/* ---- lookup / forget / getattr / setattr ---- */

static int inode_read_locked(struct fsctx *c, uint64_t ino, struct vmfs_inode *in);

/* Look name up in directory dir and return with *ls holding dir (dmode)
 * and the child (cmode), plus whatever *ls already named (taken here too),
 * and *ino the child.  The name is looked up again whenever the locks had
 * to be retaken in order, until both agree. */
static int lookup_locked(struct fsctx *c, uint64_t dir, const char *name, enum vmfs_lk_mode dmode,
			 enum vmfs_lk_mode cmode, struct lkset *ls, uint64_t *ino)
{
	struct vmfs_inode *d = malloc(sizeof(*d));
	struct lkset base = *ls;
	uint64_t prev = 0;
	int rc;

	if (!d)
		return -ENOMEM;
	for (int tries = 0;; tries++) {
		lks_want(ls, VMFS_LK_INODE, dir, dmode);
		if (prev)
			lks_want(ls, VMFS_LK_INODE, prev, cmode);
		rc = lks_lock(c, ls);
		if (rc)
			break;
		pthread_mutex_lock(&c->v->mu);
		rc = get_dir(c->v, dir, d);
		if (!rc)
			rc = dir_lookup(c->v, d, name, ino, NULL);
		pthread_mutex_unlock(&c->v->mu);
		if (!rc && *ino != prev && *ino != dir)
			rc = lks_try_add(c, ls, VMFS_LK_INODE, *ino, cmode);
		if (rc != -EAGAIN || tries == 8) {
			if (rc)
				lks_unlock(c, ls);
			break;
		}
		/* the child is busy elsewhere: take everything in order */
		lks_unlock(c, ls);
		*ls = base;
		prev = *ino;
	}
	free(d);
	return rc == -EAGAIN ? -EIO : rc;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct lkset ls;
	uint64_t ino;
	int rc;

	lks_init(&ls);

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = lookup_locked(c, to_disk(c, parent), name, VMFS_LK_PR, VMFS_LK_PR, &ls, &ino);
	if (!rc) {
		pthread_mutex_lock(&c->v->mu);
		rc = vol_inode_get(c->v, ino, in);
		rc = count_lookup(c, rc, ino, 0);
		pthread_mutex_unlock(&c->v->mu);
		lks_unlock(c, &ls);
	}
	reply_entry_or_err(req, c, rc, in);
	free(in);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct fsctx *c = ctx_of(req);

	vnode_put(c, to_disk(c, ino), nlookup, 0);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	struct fsctx *c = ctx_of(req);

	for (size_t i = 0; i < count; i++)
		vnode_put(c, to_disk(c, f[i].ino), f[i].nlookup, 0);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct stat st;
	int rc;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = inode_read_locked(c, to_disk(c, ino), in);
	if (rc) {
		fuse_reply_err(req, -vmfs_errno(rc));
	} else {
		fill_stat(c, in, &st);
		fuse_reply_attr(req, &st, c->timeout);
	}
	free(in);
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static void op_setattr(fuse_req_t req, fuse_ino_t fino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	uint64_t ino = to_disk(c, fino);
	struct vmfs_inode *in = malloc(sizeof(*in));
	bool reap = false;
	struct lkset ls;
	struct stat st;
	int rc = 0;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	lks_init(&ls);
	lks_want(&ls, VMFS_LK_INODE, ino, VMFS_LK_EX);
	rc = lks_lock(c, &ls);
	if (rc)
		goto out;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		struct vnode *vn = vnode_get(c, ino, 0, 1);
		unsigned tries = 0;

		if (!vn) {
			rc = -ENOMEM;
			goto unlock;
		}
		for (;;) {	/* in steps when it frees in groups not held */
			vnode_wrlock(vn);
			rc = file_truncate(c->v, ino, (uint64_t)attr->st_size);
			pthread_rwlock_unlock(&vn->rw);
			if (rc != VMFS_ENEEDRG)
				break;
			rc = lks_regroup(c, &ls, &tries);
			if (rc)
				break;
		}
		if (vnode_put_locked(c, ino, 0, 1, true))
			reap = true;
		if (rc)
			goto unlock;
	}
	pthread_mutex_lock(&c->v->mu);
	rc = vol_inode_get(c->v, ino, in);
	if (!rc && (to_set & ~FUSE_SET_ATTR_SIZE)) {
		int64_t now = (int64_t)now_ns();

		if (to_set & FUSE_SET_ATTR_MODE)
			in->mode = (in->mode & S_IFMT) | (attr->st_mode & 07777);
		if (to_set & FUSE_SET_ATTR_UID)
			in->uid = attr->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			in->gid = attr->st_gid;
		if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) && !S_ISDIR(in->mode))
			in->mode &= ~(uint32_t)(S_ISUID | S_ISGID);	/* chown drops setid */
		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			in->atime_ns = now;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			in->atime_ns = ts_ns(&attr->st_atim);
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			in->mtime_ns = now;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			in->mtime_ns = ts_ns(&attr->st_mtim);
		in->ctime_ns = (to_set & FUSE_SET_ATTR_CTIME) ? ts_ns(&attr->st_ctim) : now;
		rc = vol_inode_put(c->v, in);
	}
	pthread_mutex_unlock(&c->v->mu);
unlock:
	lks_unlock(c, &ls);
	if (reap)
		orphan_reap(c, ino);
out:
	if (rc) {
		fuse_reply_err(req, -vmfs_errno(rc));
	} else {
		fill_stat(c, in, &st);
		fuse_reply_attr(req, &st, c->timeout);
	}
	free(in);
}

/* ---- creation ---- */

static int do_create(struct fsctx *c, fuse_req_t req, uint64_t parent, const char *name,
		     mode_t mode, const char *link, struct vmfs_inode *out, uint32_t opens)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct vmfs_inode *dir = malloc(sizeof(*dir));
	uint32_t gid = fc->gid;
	unsigned tries = 0;
	struct lkset ls;
	uint64_t dummy;
	bool spare;
	int rc;

	lks_init(&ls);
	if (!dir)
		return -ENOMEM;
	if (strlen(name) > VMFS_NAME_MAX) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if (link && strlen(link) > VMFS_SYMLINK_MAX) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	/* Without group locks when the spare mblks do (spare.h). */
	spare = c->lk.cluster && !S_ISDIR(mode) && spares_ok(c);
again:
	lks_want(&ls, VMFS_LK_INODE, parent, VMFS_LK_EX);
	if (!spare)
		lks_want_alloc(c, &ls);
	rc = lks_lock(c, &ls);
	if (rc)
		goto out;
	pthread_mutex_lock(&c->v->mu);
	if (!spare_mode_enter(c, &ls, &spare))
		goto again;
	rc = c->v->error;
	if (!rc && !spare)
		rc = alloc_meta_room(c->v, 8);
	if (rc == VMFS_ENEEDRG) {
		pthread_mutex_unlock(&c->v->mu);
		rc = lks_regroup(c, &ls, &tries);
		if (rc)
			goto out;
		goto again;
	}
	if (!rc)
		rc = get_dir(c->v, parent, dir);
	if (!rc && dir->nlink == 0)
		rc = -ENOENT;	/* parent was removed */
	if (!rc) {
		rc = dir_lookup(c->v, dir, name, &dummy, NULL);
		rc = rc == 0 ? -EEXIST : rc == -ENOENT ? 0 : rc;
	}
	if (rc)
		goto unlock;
	if (dir->mode & S_ISGID) {	/* BSD group semantics for setgid dirs */
		gid = dir->gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	rc = inode_alloc(c->v, mode, fc->uid, gid, parent, out);
	if (rc)
		goto unlock;
	if (link) {
		memcpy(out->area, link, strlen(link));
		out->size = strlen(link);
		out->iflags = 0;
		rc = vol_inode_put(c->v, out);
		if (rc)
			goto unlock;
	}
	rc = dir_add(c->v, dir, name, out->h.self, inode_dtype(mode));
	if (!rc && S_ISDIR(mode)) {
		dir->nlink++;
		rc = vol_inode_put(c->v, dir);
	}
	c->v->spare_mode = false;
	if (!rc && !spare && c->lk.cluster)
		rc = spare_rebalance(c->v);
	if (!rc)
		rc = vol_maybe_commit(c->v);
	rc = count_lookup(c, rc, out->h.self, opens);
unlock:
	c->v->spare_mode = false;
	pthread_mutex_unlock(&c->v->mu);
	/* Hold the new inode's lock before any other host can learn its
	 * number (the directory is still ours), so what we cached of it is
	 * covered (locking.h).  If another host still caches that lock from
	 * the inode's previous life, wait for it without holding the rest. */
	if (!rc && c->lk.cluster &&
	    lks_try_add(c, &ls, VMFS_LK_INODE, out->h.self, VMFS_LK_EX) == -EAGAIN) {
		lks_unlock(c, &ls);
		if (lk_inode(c, &ls, out->h.self, VMFS_LK_EX))
			log_warn("inode %llu: cannot take its lock after creating it",
				 (unsigned long long)out->h.self);
	}
	lks_unlock(c, &ls);
out:
	free(dir);
	return rc;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode))
		rc = -EOPNOTSUPP;	/* device nodes: no rdev field in format 1.0 */
	else
		rc = do_create(c, req, to_disk(c, parent), name, mode, NULL, in, 0);
	reply_entry_or_err(req, c, rc, in);
	free(in);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = do_create(c, req, to_disk(c, parent), name, S_IFDIR | (mode & 07777), NULL, in, 0);
	reply_entry_or_err(req, c, rc, in);
	free(in);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = do_create(c, req, to_disk(c, parent), name, S_IFLNK | 0777, link, in, 0);
	reply_entry_or_err(req, c, rc, in);
	free(in);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	char buf[VMFS_SYMLINK_MAX + 1];
	int rc;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = inode_read_locked(c, to_disk(c, ino), in);
	if (!rc && !S_ISLNK(in->mode))
		rc = -EINVAL;
	if (!rc && in->size > VMFS_SYMLINK_MAX)
		rc = VMFS_EBADFIELD;
	if (rc) {
		fuse_reply_err(req, -vmfs_errno(rc));
	} else {
		memcpy(buf, in->area, (size_t)in->size);
		buf[in->size] = '\0';
		fuse_reply_readlink(req, buf);
	}
	free(in);
}

static void op_link(fuse_req_t req, fuse_ino_t fino, fuse_ino_t newparent, const char *newname)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in)), *dir = malloc(sizeof(*dir));
	uint64_t ino = to_disk(c, fino), dummy;
	unsigned tries = 0;
	struct lkset ls;
	int rc;

	if (!in || !dir) {
		free(in);
		free(dir);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	lks_init(&ls);
	lks_want(&ls, VMFS_LK_INODE, ino, VMFS_LK_EX);
	lks_want(&ls, VMFS_LK_INODE, to_disk(c, newparent), VMFS_LK_EX);
	lks_want_alloc(c, &ls);	/* the directory may grow */
	rc = lks_lock(c, &ls);
	if (rc) {
		reply_entry_or_err(req, c, rc, in);
		free(in);
		free(dir);
		return;
	}
again:
	pthread_mutex_lock(&c->v->mu);
	rc = c->v->error;
	if (!rc)
		rc = alloc_meta_room(c->v, 4);
	if (rc == VMFS_ENEEDRG) {
		pthread_mutex_unlock(&c->v->mu);
		rc = lks_regroup(c, &ls, &tries);
		if (!rc)
			goto again;
		pthread_mutex_lock(&c->v->mu);
	}
	if (!rc)
		rc = vol_inode_get(c->v, ino, in);
	if (!rc && S_ISDIR(in->mode))
		rc = -EPERM;
	if (!rc && in->nlink == 0)
		rc = -ENOENT;
	if (!rc && in->nlink >= 65000)
		rc = -EMLINK;
	if (!rc)
		rc = get_dir(c->v, to_disk(c, newparent), dir);
	if (!rc) {
		rc = dir_lookup(c->v, dir, newname, &dummy, NULL);
		rc = rc == 0 ? -EEXIST : rc == -ENOENT ? 0 : rc;
	}
	if (!rc)
		rc = dir_add(c->v, dir, newname, ino, inode_dtype(in->mode));
	if (!rc) {
		in->nlink++;
		in->ctime_ns = (int64_t)now_ns();
		rc = vol_inode_put(c->v, in);
	}
	if (!rc)
		rc = vol_maybe_commit(c->v);
	rc = count_lookup(c, rc, ino, 0);
	pthread_mutex_unlock(&c->v->mu);
	lks_unlock(c, &ls);
	reply_entry_or_err(req, c, rc, in);
	free(in);
	free(dir);
}

/* ---- removal ---- */

/* Drop one link of child; list it as an orphan at nlink 0 (it is freed at
 * the last forget/release, or at the next mount after a crash). */
/* Drop a link of child.  Its last link: still in use here, it goes on the
 * orphan list (the last vnode_put ends it); else it is freed when it owns
 * no blocks (in spare mode or not) or single-host (have_alloc); else it
 * goes on the orphan list and *reap says the caller must end it with
 * orphan_reap() once its locks are released. */
static int drop_link(struct fsctx *c, struct vmfs_inode *child, bool have_alloc, bool *reap)
{
	int rc;

	if (S_ISDIR(child->mode))
		child->nlink = 0;
	else if (child->nlink)
		child->nlink--;
	child->ctime_ns = (int64_t)now_ns();
	rc = vol_inode_put(c->v, child);
	if (rc || child->nlink)
		return rc;
	if (vnode_in_use(c, child->h.self))
		return orphan_add(c->v, child->h.self);
	/* A shared mount frees blocks only under their groups' locks, which
	 * orphan_reap() finds (alloc.h); an mblk alone can go now. */
	if ((have_alloc && !c->v->rg_locked) || !owns_blocks(child))
		return inode_free(c->v, child->h.self);
	*reap = true;
	return orphan_add(c->v, child->h.self);
}

static int dir_is_empty(const struct vmfs_inode *dir)
{
	struct vmfs_dirinfo di;

	vmfs_dirinfo_decode(dir->area, &di);
	return di.nentries == 0;
}

/* Removing the last name of a file another host has open would free
 * blocks under its feet (its open is invisible to our orphan list), so, as
 * on VMFS, that is refused with EBUSY.  Probes the open lock: an EX open
 * lock is grantable only if no other host holds one.  Called with the
 * inode's EX lock held, without vol.mu. */
static int busy_elsewhere(fuse_req_t req, struct fsctx *c, uint64_t ino)
{
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct ol_ref *ref = NULL;
	char why[256] = "";
	int rc;

	if (!c->ol)
		return 0;
	if (!in)
		return -ENOMEM;
	pthread_mutex_lock(&c->v->mu);
	rc = vol_inode_get(c->v, ino, in);
	pthread_mutex_unlock(&c->v->mu);
	if (rc || !S_ISREG(in->mode) || in->nlink > 1) {
		free(in);
		return 0;	/* errors are found again by the caller */
	}
	free(in);
	rc = openlock_open(c->ol, ino, true, false, fuse_req_ctx(req)->pid, "unlink", &ref, why,
			   sizeof(why));
	if (!rc) {
		openlock_close(ref);
		return 0;
	}
	if (rc == -EBUSY)
		log_warn("removing inode %llu refused: %s", (unsigned long long)ino, why);
	return rc;
}

static void do_remove(fuse_req_t req, fuse_ino_t parent, const char *name, bool isdir)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *dir = malloc(sizeof(*dir)), *ch = malloc(sizeof(*ch));
	bool spare, reap = false;
	unsigned tries = 0;
	struct lkset ls;
	uint64_t ino;
	int rc;

	lks_init(&ls);
	if (!dir || !ch) {
		rc = -ENOMEM;
		goto out;
	}
	/* Without group locks when the spare mblks do (spare.h);
	 * a file that owns blocks is then freed by orphan_reap(). */
	spare = c->lk.cluster && !isdir && spares_ok(c);
again:
	if (!spare)
		lks_want_alloc(c, &ls);
	rc = lookup_locked(c, to_disk(c, parent), name, VMFS_LK_EX, VMFS_LK_EX, &ls, &ino);
	if (rc)
		goto out;
	if (!isdir) {
		rc = busy_elsewhere(req, c, ino);
		if (rc) {
			lks_unlock(c, &ls);
			goto out;
		}
	}
	pthread_mutex_lock(&c->v->mu);
	if (!spare_mode_enter(c, &ls, &spare))
		goto again;
	rc = c->v->error;
	if (!rc && !spare)	/* chain blocks and an inode, maybe not ours */
		rc = alloc_mblk_frees(c->v, 16);
	if (rc == VMFS_ENEEDRG) {
		struct rg_need nd = *alloc_need();

		pthread_mutex_unlock(&c->v->mu);
		lks_unlock(c, &ls);
		lks_init(&ls);
		if (++tries > 100) {
			rc = -EIO;
			goto out;
		}
		for (unsigned k = 0; k < nd.n; k++)
			lks_want(&ls, VMFS_LK_ALLOC, nd.rg[k], VMFS_LK_EX);
		goto again;
	}
	if (!rc)
		rc = get_dir(c->v, to_disk(c, parent), dir);
	if (!rc)
		rc = dir_lookup(c->v, dir, name, &ino, NULL);
	if (!rc)
		rc = vol_inode_get(c->v, ino, ch);
	if (!rc && isdir && !S_ISDIR(ch->mode))
		rc = -ENOTDIR;
	if (!rc && !isdir && S_ISDIR(ch->mode))
		rc = -EISDIR;
	if (!rc && isdir && !dir_is_empty(ch))
		rc = -ENOTEMPTY;
	if (!rc)
		rc = dir_remove(c->v, dir, name);
	if (!rc && isdir) {
		dir->nlink--;
		rc = vol_inode_put(c->v, dir);
	}
	if (!rc)
		rc = drop_link(c, ch, !spare, &reap);
	c->v->spare_mode = false;
	if (!rc && !spare && c->lk.cluster)
		rc = spare_rebalance(c->v);
	if (!rc)
		rc = vol_maybe_commit(c->v);
	pthread_mutex_unlock(&c->v->mu);
	lks_unlock(c, &ls);
	if (!rc && reap)
		orphan_reap(c, ino);
out:
	fuse_reply_err(req, -vmfs_errno(rc));
	free(dir);
	free(ch);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, false);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, true);
}

/* Is anc an ancestor of (or equal to) ino?  Walks parent pointers.  The
 * inodes on the way are read under "r" only, which covers their parent
 * pointers but not the rest: they are not kept in the cache, where a later
 * use under their own lock would take them for current (vol.h,
 * vol_handover). */
static int is_ancestor(struct vol *v, uint64_t anc, uint64_t ino, struct vmfs_inode *tmp)
{
	for (int depth = 0; depth < 4096; depth++) {
		int rc;

		if (ino == anc)
			return 1;
		if (ino == v->sb.root_ino)
			return 0;
		rc = vol_inode_get(v, ino, tmp);
		mc_forget(v, ino);
		if (rc)
			return rc;
		ino = tmp->parent;
	}
	return VMFS_EBADFIELD;	/* a parent loop */
}

/* The names' current inodes (0 if absent). */
static int rename_names(struct fsctx *c, uint64_t parent, const char *name, uint64_t newparent,
			const char *newname, uint64_t *sino, uint64_t *dino)
{
	struct vmfs_inode *d = malloc(sizeof(*d));
	int rc;

	if (!d)
		return -ENOMEM;
	pthread_mutex_lock(&c->v->mu);
	rc = get_dir(c->v, parent, d);
	if (!rc)
		rc = dir_lookup(c->v, d, name, sino, NULL);
	if (!rc)
		rc = get_dir(c->v, newparent, d);
	if (!rc) {
		rc = dir_lookup(c->v, d, newname, dino, NULL);
		if (rc == -ENOENT) {
			*dino = 0;
			rc = 0;
		}
	}
	pthread_mutex_unlock(&c->v->mu);
	free(d);
	return rc;
}

/* Rename's locks: both directories, both names' inodes, the group this
 * host allocates in and those a check asked for (gr: a directory may grow,
 * a replaced inode without blocks is freed) and, across directories, "r"
 * (see is_ancestor). */
static int rename_lock(struct fsctx *c, uint64_t parent, const char *name, uint64_t newparent,
		       const char *newname, struct lkset *ls, const struct rg_need *gr)
{
	uint64_t sino = 0, dino = 0, psino = 0, pdino = 0;
	int rc;

	for (int tries = 0;; tries++) {
		lks_init(ls);
		if (parent != newparent)
			lks_want(ls, VMFS_LK_RENAME, 0, VMFS_LK_EX);
		lks_want(ls, VMFS_LK_INODE, parent, VMFS_LK_EX);
		lks_want(ls, VMFS_LK_INODE, newparent, VMFS_LK_EX);
		lks_want_alloc(c, ls);
		for (unsigned k = 0; k < gr->n; k++)
			lks_want(ls, VMFS_LK_ALLOC, gr->rg[k], VMFS_LK_EX);
		if (psino)
			lks_want(ls, VMFS_LK_INODE, psino, VMFS_LK_EX);
		if (pdino)
			lks_want(ls, VMFS_LK_INODE, pdino, VMFS_LK_EX);
		rc = lks_lock(c, ls);
		if (rc)
			return rc;
		rc = rename_names(c, parent, name, newparent, newname, &sino, &dino);
		if (!rc && sino != psino)
			rc = lks_try_add(c, ls, VMFS_LK_INODE, sino, VMFS_LK_EX);
		if (!rc && dino && dino != pdino)
			rc = lks_try_add(c, ls, VMFS_LK_INODE, dino, VMFS_LK_EX);
		if (rc != -EAGAIN)
			break;
		lks_unlock(c, ls);
		if (tries == 8)
			return -EIO;
		psino = sino;
		pdino = dino;
	}
	if (rc)
		lks_unlock(c, ls);
	return rc;
}

static void op_rename(fuse_req_t req, fuse_ino_t fparent, const char *name, fuse_ino_t fnewparent,
		      const char *newname, unsigned int flags)
{
	struct fsctx *c = ctx_of(req);
	struct vol *v = c->v;
	uint64_t parent = to_disk(c, fparent), newparent = to_disk(c, fnewparent), sino, dino = 0;
	struct vmfs_inode *src = malloc(sizeof(*src)), *dst = malloc(sizeof(*dst));
	struct vmfs_inode *dir = malloc(sizeof(*dir)), *tmp = malloc(sizeof(*tmp));
	struct rg_need groups = { 0 };
	unsigned tries = 0;
	struct lkset ls;
	bool sdir, reap = false;
	uint64_t reap_ino = 0;
	int rc;

	lks_init(&ls);
	if (!src || !dst || !dir || !tmp) {
		rc = -ENOMEM;
		goto out;
	}
	if (flags & ~RENAME_NOREPLACE) {
		rc = -EINVAL;	/* RENAME_EXCHANGE / WHITEOUT not supported */
		goto out;
	}
	if (strlen(newname) > VMFS_NAME_MAX) {
		rc = -ENAMETOOLONG;
		goto out;
	}
again:
	rc = rename_lock(c, parent, name, newparent, newname, &ls, &groups);
	if (rc)
		goto out;
	rc = rename_names(c, parent, name, newparent, newname, &sino, &dino);
	if (!rc && dino && dino != sino)
		rc = busy_elsewhere(req, c, dino);
	if (rc) {
		lks_unlock(c, &ls);
		goto out;
	}
	dino = 0;
	pthread_mutex_lock(&v->mu);
	rc = v->error;
	if (!rc)
		rc = alloc_mblk_frees(v, 16);
	if (!rc)
		rc = alloc_meta_room(v, 4);
	if (rc == VMFS_ENEEDRG) {	/* alloc.h: again, with those groups too */
		groups = *alloc_need();
		pthread_mutex_unlock(&v->mu);
		lks_unlock(c, &ls);
		if (++tries <= 100)
			goto again;
		rc = -EIO;
		goto out;
	}
	if (!rc)
		rc = get_dir(v, parent, dir);
	if (!rc)
		rc = dir_lookup(v, dir, name, &sino, NULL);
	if (!rc)
		rc = vol_inode_get(v, sino, src);
	if (!rc)
		rc = get_dir(v, newparent, dir);
	if (!rc && dir->nlink == 0)
		rc = -ENOENT;
	if (!rc) {
		rc = dir_lookup(v, dir, newname, &dino, NULL);
		if (rc == -ENOENT) {
			dino = 0;
			rc = 0;
		}
	}
	if (rc)
		goto unlock;
	sdir = S_ISDIR(src->mode);
	if (dino == sino)
		goto unlock;	/* same inode: POSIX says do nothing */
	if (dino && (flags & RENAME_NOREPLACE)) {
		rc = -EEXIST;
		goto unlock;
	}
	if (dino) {
		rc = vol_inode_get(v, dino, dst);
		if (rc)
			goto unlock;
		if (sdir && !S_ISDIR(dst->mode))
			rc = -ENOTDIR;
		else if (!sdir && S_ISDIR(dst->mode))
			rc = -EISDIR;
		else if (sdir && !dir_is_empty(dst))
			rc = -ENOTEMPTY;
		if (rc)
			goto unlock;
	}
	if (sdir && newparent != parent) {
		rc = is_ancestor(v, sino, newparent, tmp);
		if (rc == 1)
			rc = -EINVAL;	/* into its own subtree */
		if (rc)
			goto unlock;
	}
	/* new name first, so a failure leaves the old name in place */
	rc = get_dir(v, newparent, dir);
	if (!rc)
		rc = dino ? dir_replace(v, dir, newname, sino, inode_dtype(src->mode)) :
			dir_add(v, dir, newname, sino, inode_dtype(src->mode));
	if (!rc)
		rc = get_dir(v, parent, dir);
	if (!rc)
		rc = dir_remove(v, dir, name);
	if (rc)
		goto unlock;
	if (sdir && newparent != parent) {
		dir->nlink--;		/* old parent loses the child's ".." */
		rc = vol_inode_put(v, dir);
		if (!rc && !dino) {
			rc = get_dir(v, newparent, dir);
			if (!rc) {
				dir->nlink++;
				rc = vol_inode_put(v, dir);
			}
		}
	} else if (sdir && dino) {
		/* same parent, a directory replaced: one ".." fewer */
		dir->nlink--;
		rc = vol_inode_put(v, dir);
	}
	if (!rc) {
		rc = vol_inode_get(v, sino, src);
		if (!rc) {
			src->parent = newparent;
			src->ctime_ns = (int64_t)now_ns();
			rc = vol_inode_put(v, src);
		}
	}
	if (!rc && dino) {
		rc = vol_inode_get(v, dino, dst);
		if (!rc)
			rc = drop_link(c, dst, true, &reap);
		reap_ino = dino;
	}
	if (!rc)
		rc = vol_maybe_commit(v);
unlock:
	pthread_mutex_unlock(&v->mu);
	lks_unlock(c, &ls);
	if (!rc && reap)
		orphan_reap(c, reap_ino);
out:
	fuse_reply_err(req, -vmfs_errno(rc));
	free(src);
	free(dst);
	free(dir);
	free(tmp);
}

/* ---- files ---- */

static int xa_find(const struct vmfs_inode *in, const char *name, uint32_t *off, uint32_t *rlen);

/* Read an inode under PR on it. */
static int inode_read_locked(struct fsctx *c, uint64_t ino, struct vmfs_inode *in)
{
	struct lkset ls;
	int rc = lk_inode(c, &ls, ino, VMFS_LK_PR);

	if (rc)
		return rc;
	pthread_mutex_lock(&c->v->mu);
	rc = vol_inode_get(c->v, ino, in);
	pthread_mutex_unlock(&c->v->mu);
	lks_unlock(c, &ls);
	return rc;
}

/* The opener's program name, for the open lock's holder tag. */
static void req_program(fuse_req_t req, pid_t pid, char *buf, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(buf, len, "?");
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0) {
		snprintf(buf, len, "?");
		return;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

/* Is the file opted into multi-writer mode (VMFS_XATTR_MULTIWRITER = "1")? */
static bool is_multiwriter(const struct vmfs_inode *in)
{
	uint32_t off, rl;

	if (xa_find(in, VMFS_XATTR_MULTIWRITER, &off, &rl))
		return false;
	return get_le16(in->xattr + off + 2) == 1 && in->xattr[off + 4 + in->xattr[off]] == '1';
}

/* What a FUSE file handle (fi->fh) carries in cluster mode: the open lock,
 * and the lock owners that took record locks through it.  OFD locks belong
 * to the open file, and the kernel names no owner when the file is
 * released, so the handle remembers them (plock_release_owner at release). */
#define FH_OWNERS 8
struct fh {
	struct ol_ref *ol;		/* NULL when not a regular file */
	bool solo;			/* not multi-writer: no other host can
					 * write the file while it is open here
					 * (solo_ok) */
	pthread_mutex_t mu;
	uint64_t owners[FH_OWNERS];	/* protected by mu */
	int nowners;
};

static struct fh *fh_of(const struct fuse_file_info *fi)
{
	return (struct fh *)(uintptr_t)fi->fh;
}

static void fh_note_owner(struct fuse_file_info *fi, uint64_t owner)
{
	struct fh *f = fh_of(fi);

	if (!f)
		return;
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < f->nowners; i++)
		if (f->owners[i] == owner)
			goto out;
	if (f->nowners < FH_OWNERS)
		f->owners[f->nowners++] = owner;
	else
		log_warn("a file handle with more than %d lock owners: the extra ones keep their "
			 "OFD locks until they unlock", FH_OWNERS);
out:
	pthread_mutex_unlock(&f->mu);
}

/* Take the per-file open lock (openlock.h) for this open; fi->fh keeps it.
 * 0, -EBUSY (another host holds the file; logged with the holder). */
static int open_lock(fuse_req_t req, struct fsctx *c, uint64_t ino, const struct vmfs_inode *in,
		     struct fuse_file_info *fi)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	bool write = (fi->flags & O_ACCMODE) != O_RDONLY;
	char prog[32], why[256] = "";
	struct fh *f;
	int rc = 0;

	fi->fh = 0;
	if (!c->lk.cluster)
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->mu, NULL);
	if (c->ol && S_ISREG(in->mode)) {
		req_program(req, fc->pid, prog, sizeof(prog));
		bool multi = is_multiwriter(in);

		rc = openlock_open(c->ol, ino, write, multi, fc->pid, prog, &f->ol, why,
				   sizeof(why));
		f->solo = !multi;
		if (rc == -EBUSY)
			log_warn("open of inode %llu for %s by %s[%d] refused: %s",
				 (unsigned long long)ino, write ? "write" : "read", prog,
				 (int)fc->pid, why);
	}
	if (rc) {
		pthread_mutex_destroy(&f->mu);
		free(f);
		return rc;
	}
	fi->fh = (uint64_t)(uintptr_t)f;
	return 0;
}

/* End of an open: its record-lock owners' locks, its open lock. */
static void open_unlock(struct fsctx *c, uint64_t ino, struct fuse_file_info *fi)
{
	struct fh *f = fh_of(fi);

	if (!f)
		return;
	for (int i = 0; c->pl && i < f->nowners; i++)
		plock_release_owner(c->pl, ino, f->owners[i]);
	if (f->ol)
		openlock_close(f->ol);
	pthread_mutex_destroy(&f->mu);
	free(f);
	fi->fh = 0;
}

/* May this handle write (epoch fencing, decision 4)? */
static int may_write(struct fuse_file_info *fi)
{
	struct fh *f = fh_of(fi);

	return f && f->ol ? openlock_check(f->ol) : 0;
}

/* The VM name an xattr value carries (1 to VMFS_DLM_TAG_MAX bytes, not
 * NUL-terminated) into vm as a string; -EINVAL when it does not fit. */
static int xattr_vm_name(const char *value, size_t size, char vm[VMFS_DLM_TAG_MAX + 1])
{
	if (size == 0 || size > VMFS_DLM_TAG_MAX)
		return -EINVAL;
	memcpy(vm, value, size);
	vm[size] = '\0';
	return 0;
}

/* setxattr/removexattr of VMFS_XATTR_INCOMING (value NULL): register or
 * drop an incoming migration's claim on the file (openlock_prepare). */
static int xattr_incoming(fuse_req_t req, struct fsctx *c, uint64_t ino, const char *value,
			  size_t size)
{
	char vm[VMFS_DLM_TAG_MAX + 1];

	if (fuse_req_ctx(req)->uid != 0)
		return -EPERM;
	if (!c->ol)
		return -EOPNOTSUPP;
	if (!value)
		return openlock_unprepare(c->ol, ino);
	if (xattr_vm_name(value, size, vm))
		return -EINVAL;
	return openlock_prepare(c->ol, ino, vm);
}

/* setxattr/removexattr/getxattr (buf) of VMFS_XATTR_RETURN: the source's
 * return claim on a file open here (openlock_return_arm/_drop/_state). */
static int xattr_return(fuse_req_t req, struct fsctx *c, uint64_t ino, const char *value,
			size_t size, char *buf, size_t buflen)
{
	char vm[VMFS_DLM_TAG_MAX + 1];

	if (!c->ol)
		return -EOPNOTSUPP;
	if (buf)
		return openlock_return_state(c->ol, ino, buf, buflen);
	if (fuse_req_ctx(req)->uid != 0)
		return -EPERM;
	if (!value)
		return openlock_return_drop(c->ol, ino);
	if (xattr_vm_name(value, size, vm))
		return -EINVAL;
	return openlock_return_arm(c->ol, ino, vm);
}

/* Answer an OPEN with direct I/O and parallel direct writes.  No page
 * cache: VM images need it off so no host serves stale pages once several
 * hosts share the volume (DESIGN.md decision 6).  Parallel direct writes
 * (FOPEN_PARALLEL_DIRECT_WRITES): without them the kernel holds the inode
 * lock exclusively across each direct write, so the synchronous writers
 * of one file (QEMU's default aio=threads, fio psync) went one at a time;
 * with them, writes inside EOF hold it shared and reach us together, and
 * overwrites run in parallel here (op_write).  Writes that extend the file
 * stay exclusive in the kernel.  libfuse 3.14's fuse_file_info has no bit
 * for that flag (later versions have one), so this sends the bytes
 * fuse_reply_open() would, with the flag added. */
static int reply_open(fuse_req_t req, uint64_t fh)
{
	struct fuse_open_out out = {
		.fh = fh, .open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES,
	};

	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}

static void op_open(fuse_req_t req, fuse_ino_t fino, struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	uint64_t ino = to_disk(c, fino);
	struct vmfs_inode *in = malloc(sizeof(*in));
	int rc = in ? inode_read_locked(c, ino, in) : -ENOMEM;

	if (!rc)
		rc = open_lock(req, c, ino, in, fi);
	free(in);
	if (rc) {
		fuse_reply_err(req, -vmfs_errno(rc));
		return;
	}
	if (!vnode_get(c, ino, 0, 1)) {
		open_unlock(c, ino, fi);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (reply_open(req, fi->fh) == -ENOENT) {
		open_unlock(c, ino, fi);
		vnode_put(c, ino, 0, 1);
	}
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct fuse_entry_param e;
	int rc;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = do_create(c, req, to_disk(c, parent), name, S_IFREG | (mode & 07777), NULL, in, 1);
	if (rc) {
		fuse_reply_err(req, -vmfs_errno(rc));
		free(in);
		return;
	}
	rc = open_lock(req, c, in->h.self, in, fi);
	if (rc) {
		/* Created but another host opened it first: the name stays. */
		vnode_put(c, in->h.self, 1, 1);
		fuse_reply_err(req, -vmfs_errno(rc));
		free(in);
		return;
	}
	fill_entry(c, in, &e);
	fi->direct_io = 1;	/* as reply_open; not parallel: a new file grows */
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		open_unlock(c, in->h.self, fi);
		vnode_put(c, in->h.self, 1, 1);
	}
	free(in);
}

/* READs and small overwrites are answered from the disk completion
 * (diskio_submit): the worker goes back for the next request instead of
 * sleeping until the disk answers, and the reaper answers several
 * completions per wake-up.  4 KiB at a queue depth of 32 (bench-fs.sh):
 * the daemon's context switches per request went from 1.4 to 0.8 and its
 * CPU per request from 50-95 to 40-55 us; that was what 4 KiB I/O cost.
 * What a request in flight holds until it is answered: its cluster
 * lock on the inode (so no other host frees or reuses the blocks under
 * it), a count on the vnode (vn->aio, so truncate, fallocate and
 * allocating writes of this host wait for it: vnode_wrlock), its buffer,
 * and the kernel's reference on the open file (no RELEASE before the
 * answer, so vn stays).  Its vnode rwlock is let go at submission: a
 * pthread rwlock cannot be unlocked by the reaper thread. */
struct aio_op {
	fuse_req_t req;
	struct fsctx *c;
	struct vnode *vn;
	struct lkset ls;	/* PR on the inode, released on completion */
	struct file_io io;
	size_t size;		/* write: the byte count to acknowledge */
	bool write;
	/* write_early: answered at submission; the receive buffer the data
	 * is in (fuse_loop_take_buffer) and the range in flight (wb.h) */
	void *rbuf;
	struct wb_range wbr;
};

/* The end of a write answered at submission (write_early).  Its failure
 * waits in vn->wb for the next fsync or close. */
static void early_done(struct aio_op *a, int rc)
{
	struct vnode *vn = a->vn;

	if (rc)
		log_err("inode %llu: a write of %zu bytes at %llu answered before it completed "
			"failed: %s (reported at the next fsync or close)",
			(unsigned long long)vn->ino, a->size, (unsigned long long)a->wbr.off,
			strerror(-vmfs_errno(rc)));
	file_io_release(&a->io, rc);
	if (rc != -ETIMEDOUT)	/* else the kernel keeps it (diskio.h) */
		fuse_loop_buffer_put(a->rbuf);
	atomic_fetch_sub(&vn->aio, 1);
	wb_end(&vn->wb, &a->wbr, rc);	/* last: a drain may free vn now */
	free(a);
}

/* Completion, on the diskio reaper thread. */
static void aio_op_done(void *arg, int rc)
{
	struct aio_op *a = arg;

	lks_unlock(a->c, &a->ls);
	if (a->rbuf) {
		early_done(a, rc);
		return;
	}
	atomic_fetch_sub(&a->vn->aio, 1);	/* before the answer: vn may go then */
	if (rc)
		fuse_reply_err(a->req, -vmfs_errno(rc));
	else if (a->write)
		fuse_reply_write(a->req, a->size);
	else
		fuse_reply_buf(a->req, a->io.data, a->io.len);
	file_io_release(&a->io, rc);
	free(a);
}

/* Submit a prepared aio_op (vn->aio already counted).  0: answered from
 * the completion, a is gone; else the caller answers with the result of
 * the I/O done here synchronously (no aio context) or the error. */
static int aio_op_submit(struct aio_op *a)
{
	struct diskio *d = a->c->v->dio;
	int rc = diskio_submit(d, a->io.reqs, a->io.nr, aio_op_done, a);

	if (rc == -EOPNOTSUPP)
		rc = diskio_batch(d, a->io.reqs, a->io.nr);
	else if (!rc)
		return 0;
	atomic_fetch_sub(&a->vn->aio, 1);
	return rc ? rc : 1;
}

/* Completion of a read-ahead, on the diskio reaper thread. */
static void ra_done(void *arg, int rc)
{
	struct readahead *ra = arg;
	struct vnode *vn = ra->vn;

	lks_unlock(ra->c, &ra->ls);
	atomic_fetch_sub(&vn->aio, 1);
	pthread_mutex_lock(&vn->ra_mu);
	ra->rc = rc;
	ra->done = true;	/* ra_drop may free it, and a release vn, now */
	pthread_cond_broadcast(&vn->ra_cond);
	pthread_mutex_unlock(&vn->ra_mu);
}

/* Is this host the only one that can write the file while this handle
 * has it open (single host, or not multi-writer: the open lock of a write
 * open anywhere excludes every other host's)?  Then its writes may be
 * answered before they complete (wb.h), and its reads read ahead: what was
 * read ahead can change only through this host's writes, which bump wgen. */
static bool solo_ok(struct fsctx *c, struct fuse_file_info *fi)
{
	const struct fh *f = fh_of(fi);

	return !c->lk.cluster || (f && f->solo);
}

/* After answering a large read of [off, off + size) at the position the
 * previous one ended, with no other read or write of the file being
 * served (a queue-depth-1 reader: deeper queues keep the disk busy
 * themselves): read [off + size, + size) now, so that the next request
 * finds it read or on its way (op_read).  The disk is driven O_DIRECT,
 * as the reader asked; only the wait moves. */
static void ra_start(struct fsctx *c, struct vnode *vn, uint64_t ino, uint64_t off, size_t size)
{
	struct readahead *ra;
	bool seq, out = false;
	int rc;

	pthread_mutex_lock(&vn->ra_mu);
	seq = vn->ra_next == off && !vn->ra;
	vn->ra_next = off + size;
	pthread_mutex_unlock(&vn->ra_mu);
	if (!seq || atomic_load(&vn->reading) > 1)
		return;
	ra = calloc(1, sizeof(*ra));
	if (!ra)
		return;
	*ra = (struct readahead){ .c = c, .vn = vn, .off = off + size, .len = size,
				  .gen = atomic_load(&vn->wgen) };
	/* After gen: a write that began before is still being served or in
	 * flight (or was counted in vn->wb, which the prep waits for); one
	 * that begins after bumps wgen and so makes this read-ahead stale. */
	if (atomic_load(&vn->writing) || atomic_load(&vn->aio) ||
	    lk_inode(c, &ra->ls, ino, VMFS_LK_PR)) {
		free(ra);
		return;
	}
	pthread_rwlock_rdlock(&vn->rw);
	wb_wait_overlap(&vn->wb, ra->off, size);
	rc = file_read_prep(c->v, ino, ra->off, size, &ra->io);
	if (!rc && ra->io.nr) {
		atomic_fetch_add(&vn->aio, 1);
		out = true;
	}
	pthread_rwlock_unlock(&vn->rw);
	if (!out) {		/* holes or EOF: read already (or failed) */
		lks_unlock(c, &ra->ls);
		ra->rc = rc;
		ra->done = true;
	}
	pthread_mutex_lock(&vn->ra_mu);
	if (vn->ra) {		/* another reader started one meanwhile */
		pthread_mutex_unlock(&vn->ra_mu);
		if (out) {	/* not submitted: give back what it holds */
			atomic_fetch_sub(&vn->aio, 1);
			lks_unlock(c, &ra->ls);
		}
		file_io_release(&ra->io, 0);
		free(ra);
		return;
	}
	vn->ra = ra;
	pthread_mutex_unlock(&vn->ra_mu);
	if (out && (rc = diskio_submit(c->v->dio, ra->io.reqs, ra->io.nr, ra_done, ra)))
		ra_done(ra, rc);	/* nothing queued: stale, dropped by the next */
}

/* The read-ahead for [off, off + size) if there is one and nothing was
 * written since it started, waited for; else NULL (one that does not
 * match is dropped). */
static struct readahead *ra_take(struct vnode *vn, uint64_t off, size_t size)
{
	struct readahead *ra;

	pthread_mutex_lock(&vn->ra_mu);
	ra = vn->ra;
	if (!ra || ra->off != off || ra->len != size) {
		pthread_mutex_unlock(&vn->ra_mu);
		if (ra)
			ra_drop(vn);
		return NULL;
	}
	vn->ra = NULL;
	while (!ra->done)
		pthread_cond_wait(&vn->ra_cond, &vn->ra_mu);
	pthread_mutex_unlock(&vn->ra_mu);
	if (ra->rc || ra->gen != atomic_load(&vn->wgen) || atomic_load(&vn->writing)) {
		file_io_release(&ra->io, ra->rc);
		free(ra);
		return NULL;
	}
	return ra;
}

static void op_read(fuse_req_t req, fuse_ino_t fino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	uint64_t ino = to_disk(c, fino);
	struct vnode *vn = vnode_open_find(c, ino);
	struct aio_op *a = calloc(1, sizeof(*a));
	bool out = false, large = size > VMFS_AIO_MAX;
	int rc;

	if (!vn || !a) {
		fuse_reply_err(req, vn ? ENOMEM : EBADF);
		free(a);
		return;
	}
	*a = (struct aio_op){ .req = req, .c = c, .vn = vn };
	if (large) {
		struct readahead *ra;

		atomic_fetch_add(&vn->reading, 1);
		ra = ra_take(vn, (uint64_t)off, size);
		if (ra) {
			/* the next one first: the disk reads it while this
			 * answer is copied out and the next request comes */
			if (solo_ok(c, fi))
				ra_start(c, vn, ino, (uint64_t)off, size);
			fuse_reply_buf(req, ra->io.data, ra->io.len);
			file_io_release(&ra->io, 0);
			free(ra);
			free(a);
			goto done;
		}
	}
	rc = lk_inode(c, &a->ls, ino, VMFS_LK_PR);
	if (rc)
		goto reply;
	pthread_rwlock_rdlock(&vn->rw);
	/* read what was written: wb.h; under rw, where no fill can mark a
	 * block written after the wait and before the prep */
	wb_wait_overlap(&vn->wb, (uint64_t)off, size);
	rc = file_read_prep(c->v, ino, (uint64_t)off, size, &a->io);
	if (!rc && a->io.nr && large) {
		rc = diskio_batch(c->v->dio, a->io.reqs, a->io.nr);	/* in place */
	} else if (!rc && a->io.nr) {
		atomic_fetch_add(&vn->aio, 1);
		out = true;
	}
	pthread_rwlock_unlock(&vn->rw);
	if (out) {
		rc = aio_op_submit(a);
		if (rc == 0)
			return;
		rc = rc < 0 ? rc : 0;
	}
	lks_unlock(c, &a->ls);
	if (large && !rc && solo_ok(c, fi))
		ra_start(c, vn, ino, (uint64_t)off, size);
reply:
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, a->io.data, a->io.len);
	file_io_release(&a->io, rc);
	free(a);
	if (!large)
		return;
done:
	/* after the answer the kernel's reference on the open file may go,
	 * but vn stays while reading counts this request (ra_quiesce) */
	atomic_fetch_sub(&vn->reading, 1);
}

/* Start an overwrite of size bytes at off as an aio_op: PR on the inode,
 * vn->rw held shared (the caller lets it go), the writes in flight it
 * overlaps done (wb.h), its disk requests prepared (file_write_prep; copy
 * as there), and the lazy mtime stamped before the data (it records the
 * write either way).  0 and *out, or -errno with nothing held (-EAGAIN:
 * not an aligned overwrite of written blocks). */
static int write_op_start(fuse_req_t req, struct fsctx *c, struct vnode *vn, uint64_t ino,
			  const char *buf, size_t size, off_t off, bool copy, struct aio_op **out)
{
	struct aio_op *a = calloc(1, sizeof(*a));
	int rc;

	if (!a)
		return -ENOMEM;
	*a = (struct aio_op){ .req = req, .c = c, .vn = vn, .size = size, .write = true };
	rc = lk_inode(c, &a->ls, ino, VMFS_LK_PR);
	if (rc) {
		free(a);
		return rc;
	}
	pthread_rwlock_rdlock(&vn->rw);
	wb_wait_overlap(&vn->wb, (uint64_t)off, size);
	rc = file_write_prep(c->v, ino, buf, size, (uint64_t)off, copy, &a->io);
	if (!rc && a->io.stamp)
		rc = file_write_stamp(c->v, ino);
	if (rc) {
		pthread_rwlock_unlock(&vn->rw);
		lks_unlock(c, &a->ls);
		file_io_release(&a->io, rc);
		free(a);
		return rc;
	}
	*out = a;
	return 0;
}

/* A small aligned overwrite, answered from the completion (op_read says
 * how).  -EAGAIN when it does not qualify (op_write's other paths). */
static int write_async(fuse_req_t req, struct fsctx *c, struct vnode *vn, uint64_t ino,
		       const char *buf, size_t size, off_t off)
{
	struct aio_op *a;
	int rc = write_op_start(req, c, vn, ino, buf, size, off, true, &a);

	if (rc)
		return rc;
	atomic_fetch_add(&vn->aio, 1);
	pthread_rwlock_unlock(&vn->rw);
	rc = aio_op_submit(a);
	if (rc == 0)
		return 0;
	rc = rc < 0 ? rc : 0;
	if (!rc)
		fuse_reply_write(req, size);	/* done synchronously */
	lks_unlock(c, &a->ls);
	file_io_release(&a->io, rc);
	free(a);
	return rc == 0 ? 1 : rc;
}

/* op_write: a large write through a handle that may not answer early
 * (solo_ok): an overwrite done the synchronous way (file_write_fast). */
#define WRITE_SYNC 1

/* Tests only: VMFS_TEST_WB_DELAY_MS (read at mount) holds each write
 * answered at submission back that long before it goes to the disk, as a
 * slow disk would, so that a read or write which does not wait for it
 * finds the old data (tests/fs/wb-order.c).  Without it this machine's
 * disk answered too fast for the test to tell. */
static unsigned wb_test_delay_ms;

struct wb_delayed {
	struct diskio *d;
	struct diskio_req *r;
	int nr;
	diskio_done_fn done;
	void *arg;
};

static void *wb_delayed_submit(void *arg)
{
	struct wb_delayed dl = *(struct wb_delayed *)arg;
	int rc;

	free(arg);
	usleep(wb_test_delay_ms * 1000u);
	rc = diskio_submit(dl.d, dl.r, dl.nr, dl.done, dl.arg);
	if (rc)
		dl.done(dl.arg, rc);
	return NULL;
}

/* diskio_submit for the writes answered at submission, or its test delay. */
static int wb_submit(struct diskio *d, struct diskio_req *r, int nr, diskio_done_fn done,
		     void *arg)
{
	struct wb_delayed *dl;
	pthread_attr_t at;
	pthread_t t;
	int rc;

	if (!wb_test_delay_ms)
		return diskio_submit(d, r, nr, done, arg);
	dl = malloc(sizeof(*dl));
	if (!dl)
		return -ENOMEM;
	*dl = (struct wb_delayed){ d, r, nr, done, arg };
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	rc = -pthread_create(&t, &at, wb_delayed_submit, dl);
	pthread_attr_destroy(&at);
	if (rc)
		free(dl);
	return rc;
}

/* A large overwrite of a file held exclusive, answered as soon as its disk
 * write is submitted (wb.h says what keeps that safe).  The data goes to
 * the disk from the worker's receive buffer, which the write takes
 * (fuse_loop_take_buffer) and gives back on completion.  With WB_MAX
 * writes of the file in flight, or the data not in a receive buffer, it
 * is written in place before the answer.  0: answered; -EAGAIN: not an
 * overwrite of written blocks (write_fill); else the error to answer. */
static int write_early(fuse_req_t req, struct fsctx *c, struct vnode *vn, uint64_t ino,
		       const char *buf, size_t size, off_t off)
{
	struct aio_op *a;
	bool early = false;
	int rc = write_op_start(req, c, vn, ino, buf, size, off, false, &a);

	if (rc)
		return rc;
	/* counted in flight only now: the prep waited for those it overlaps */
	if (wb_begin(&vn->wb, &a->wbr, (uint64_t)off, size)) {
		a->rbuf = fuse_loop_take_buffer(buf);
		early = a->rbuf != NULL;
		if (!early)
			wb_end(&vn->wb, &a->wbr, 0);
	}
	if (early)
		atomic_fetch_add(&vn->aio, 1);
	else			/* WB_MAX in flight, or not a receive buffer */
		rc = diskio_batch(c->v->dio, a->io.reqs, a->io.nr);
	pthread_rwlock_unlock(&vn->rw);
	if (early) {
		rc = wb_submit(c->v->dio, a->io.reqs, a->io.nr, aio_op_done, a);
		if (!rc) {	/* a is the completion's now, maybe gone already */
			fuse_reply_write(req, size);
			return 0;
		}
		if (rc == -EOPNOTSUPP)	/* no kernel aio context: in place */
			rc = diskio_batch(c->v->dio, a->io.reqs, a->io.nr);
		atomic_fetch_sub(&vn->aio, 1);
		if (rc != -ETIMEDOUT)	/* else the kernel keeps the buffer (diskio.h) */
			fuse_loop_buffer_put(a->rbuf);
		wb_end(&vn->wb, &a->wbr, 0);	/* not in flight; rc is answered now */
	}
	lks_unlock(c, &a->ls);
	file_io_release(&a->io, rc);
	free(a);
	if (!rc)
		fuse_reply_write(req, size);
	return rc;
}

/* The number of unlinked inodes on this host's orphan list. */
static int orphans_here(struct fsctx *c)
{
	int room;

	pthread_mutex_lock(&c->v->mu);
	room = orphan_room(c->v);
	pthread_mutex_unlock(&c->v->mu);
	return room < 0 ? 0 : VMFS_ORPHAN_MAX - room;
}

/* An allocation said ENOSPC while this host lists unlinked files: their
 * blocks come free at the kernel's last RELEASE or FORGET of each, and
 * both are asynchronous (close() returns before the release reaches us),
 * so "close; unlink a; fallocate b" can find a's blocks still taken.  Wait
 * a little for the list to shrink, as ext4 retries an allocation after a
 * journal commit; true: try again.  A file unlinked while still open stays
 * listed, so the wait is bounded per request. */
#define ENOSPC_WAIT_MS 500
static bool enospc_retry(struct fsctx *c, int rc, unsigned *waited_ms)
{
	int before = rc == -ENOSPC && *waited_ms < ENOSPC_WAIT_MS ? orphans_here(c) : 0;

	while (before > 0 && *waited_ms < ENOSPC_WAIT_MS) {
		usleep(5000);
		*waited_ms += 5;
		if (orphans_here(c) < before)
			return true;
	}
	return false;
}

/* An allocating write waiting for its turn (write_fill). */
struct fill_wait {
	struct file_wreq w;
	bool lead;		/* woken to take the turn, not done */
	void *rbuf;		/* its receive buffer, taken: may go to a fill_early */
	bool given;		/* rbuf belongs to a fill_early now */
	void *copy;		/* its data, copied when rbuf went before it was done */
	struct fill_wait *next;
};

#define FILL_BATCH_MAX 32	/* writes in one pass: 32 MiB at most */

/* A pass whose writers were answered when its fills were submitted (wb.h:
 * a file held exclusive).  The blocks are marked written at once, so until
 * the data is on the disk the pass keeps the file's range in vn->wb (this
 * host's readers and writers wait for it) and the volume counts it
 * (vol_data_begin: no commit before it).  It owns its writers' receive
 * buffers until every submission completed. */
struct fill_early {
	struct fsctx *c;
	struct vnode *vn;
	atomic_int refs;	/* the pass itself, and each submission in flight */
	atomic_int rc;		/* the first failure of a submission */
	bool registered;	/* wbr is in vn->wb */
	struct wb_range wbr;
	void *rbuf[FILL_BATCH_MAX];
	int nrbuf;
};

struct fill_sub {
	struct fill_early *fe;
	struct file_fill_io io;
};

static void fill_early_put(struct fill_early *fe)
{
	struct vnode *vn = fe->vn;
	int rc = atomic_load(&fe->rc);

	if (atomic_fetch_sub(&fe->refs, 1) != 1)
		return;
	for (int k = 0; k < fe->nrbuf; k++)
		if (rc != -ETIMEDOUT)	/* else the kernel may keep them (diskio.h) */
			fuse_loop_buffer_put(fe->rbuf[k]);
	if (fe->registered)
		wb_end(&vn->wb, &fe->wbr, rc);	/* a drain may free vn now */
	free(fe);
}

/* Completion of a submission, on the diskio reaper thread. */
static void fill_sub_done(void *arg, int rc)
{
	struct fill_sub *sub = arg;
	struct fill_early *fe = sub->fe;

	if (rc) {
		int none = 0;

		atomic_compare_exchange_strong(&fe->rc, &none, rc);
		log_err("inode %llu: filling blocks answered before they were written failed: %s",
			(unsigned long long)fe->vn->ino, strerror(-vmfs_errno(rc)));
	}
	file_fill_io_release(&sub->io, rc);
	vol_data_end(fe->c->v, rc);
	free(sub);
	fill_early_put(fe);
}

/* file_write_many's hand-off (struct file_fill_submit) for a fill_early. */
static int fill_submit(void *arg, struct file_fill_io *io)
{
	struct fill_early *fe = arg;
	struct vol *v = fe->c->v;
	struct fill_sub *sub = malloc(sizeof(*sub));
	int rc;

	if (!sub) {
		file_fill_io_release(io, 0);
		return -ENOMEM;
	}
	*sub = (struct fill_sub){ fe, *io };
	atomic_fetch_add(&fe->refs, 1);
	vol_data_begin(v);	/* before the blocks are marked written */
	rc = wb_submit(v->dio, sub->io.reqs, sub->io.nr, fill_sub_done, sub);
	if (!rc)
		return 0;
	if (rc == -EOPNOTSUPP) {	/* no kernel aio context: in place */
		rc = diskio_batch(v->dio, sub->io.reqs, sub->io.nr);
		if (!rc) {
			fill_sub_done(sub, 0);
			return 0;
		}
		if (rc == -ETIMEDOUT)
			atomic_store(&fe->rc, rc);	/* the buffers stay the kernel's */
	}
	vol_data_end(v, 0);	/* nothing will be marked */
	file_fill_io_release(&sub->io, rc);
	free(sub);
	atomic_fetch_sub(&fe->refs, 1);	/* the pass holds one: not the last */
	return rc;
}

/* One pass of the turn's holder: lock, wait for the writes in flight in
 * the blocks it touches, do every write of w still to do
 * (file_write_many: one disk batch for the blocks they fill), unlock.
 * With fe, the fills are submitted and the writes done at that point
 * (unless WB_MAX writes of the file are in flight already: then as
 * without).  A write that failed with ENOSPC while this host's unlinked
 * files free blocks is set to do again (enospc_retry). */
static void fill_pass(struct fsctx *c, struct vnode *vn, uint64_t ino, struct file_wreq *w,
		      int n, unsigned *waited, struct fill_early *fe)
{
	struct file_fill_submit as = { fill_submit, fe };
	uint64_t lo = UINT64_MAX, hi = 0, bs = c->v->bsize;
	struct lkset ls;
	int rc;

	for (int k = 0; k < n; k++) {	/* whole blocks: a fill writes them whole */
		uint64_t b0 = w[k].off / bs * bs, b1 = (w[k].off + w[k].size + bs - 1) / bs * bs;

		if (w[k].rc != FILE_WRITE_TODO)
			continue;
		if (b0 < lo)
			lo = b0;
		if (b1 > hi)
			hi = b1;
	}
	rc = lk_inode_alloc(c, &ls, ino);
	if (!rc) {
		for (unsigned tries = 0;;) {	/* until the groups held have room */
			vnode_wrlock_io(vn);
			if (tries == 0 && hi > lo) {
				/* once: later the range in flight may be ours */
				wb_wait_overlap(&vn->wb, lo, hi - lo);
				if (fe)
					fe->registered = wb_begin(&vn->wb, &fe->wbr, lo, hi - lo);
			}
			rc = file_write_many(c->v, ino, w, n,
					     fe && fe->registered ? &as : NULL);
			pthread_rwlock_unlock(&vn->rw);
			if (rc != VMFS_ENEEDRG || (rc = lks_regroup(c, &ls, &tries)))
				break;
		}
		lks_unlock(c, &ls);
	}
	for (int k = 0; k < n; k++) {
		if (w[k].rc == FILE_WRITE_TODO)
			w[k].rc = rc;	/* the locks failed */
		if (w[k].rc == -ENOSPC && enospc_retry(c, -ENOSPC, waited))
			w[k].rc = FILE_WRITE_TODO;
	}
}

/* A pass's fill_early when every write in it may be answered before its
 * data is on the disk (its receive buffer taken, not given before). */
static struct fill_early *fill_early_new(struct fsctx *c, struct vnode *vn,
					 struct fill_wait *const *b, int n)
{
	struct fill_early *fe;

	for (int k = 0; k < n; k++)
		if (!b[k]->rbuf || b[k]->given)
			return NULL;
	fe = calloc(1, sizeof(*fe));
	if (fe) {
		fe->c = c;
		fe->vn = vn;
		atomic_init(&fe->refs, 1);
	}
	return fe;
}

/* After the pass of fe: its writers' buffers go with it.  A writer still
 * to do (ENOSPC, to retry) keeps a copy of its data for the next pass. */
static void fill_early_take(struct fill_early *fe, struct fill_wait *const *b,
			    const struct file_wreq *w, int n)
{
	for (int k = 0; k < n; k++) {
		b[k]->given = true;
		fe->rbuf[fe->nrbuf++] = b[k]->rbuf;
		if (w[k].rc != FILE_WRITE_TODO)
			continue;
		b[k]->copy = malloc(w[k].size);
		if (b[k]->copy)
			memcpy(b[k]->copy, w[k].data, w[k].size);
		else
			b[k]->w.rc = -ENOMEM;
		b[k]->w.data = b[k]->copy;
	}
}

/* A write that allocates, grows the file or fills unwritten blocks.  It
 * needs the file's inode lock in EX and its vnode lock exclusively, so
 * such writes to one file go one at a time: at queue depth 8, each waited
 * for the one before it and for that one's disk write.  Instead the writer
 * holding the turn takes every write queued behind it into its pass, so
 * their blocks go to the disk in one batch, and then hands the turn to the
 * oldest write still waiting.  Each writer answers its own request.  On a
 * file held exclusive (early) each takes its receive buffer, and a pass
 * of such writes is answered when its fills are submitted (fill_early),
 * so the next request's trip through FUSE overlaps this one's disk write.
 * fq_mu guards the queue and every fill_wait on it or in a pass. */
static int write_fill(struct fsctx *c, struct vnode *vn, uint64_t ino, const char *buf,
		      size_t size, uint64_t off, bool early)
{
	struct fill_wait me = { { buf, size, off, FILE_WRITE_TODO }, false,
				early ? fuse_loop_take_buffer(buf) : NULL, false, NULL, NULL };
	struct fill_wait *b[FILL_BATCH_MAX];
	struct file_wreq w[FILL_BATCH_MAX];
	unsigned waited = 0;
	int n = 1;

	fuse_loop_may_block();	/* allocation: journal, maybe the DLM */
	pthread_mutex_lock(&vn->fq_mu);
	if (vn->fq_busy) {
		struct fill_wait **pp = &vn->fq;

		while (*pp)
			pp = &(*pp)->next;
		*pp = &me;
		while (me.w.rc == FILE_WRITE_TODO && !me.lead)
			pthread_cond_wait(&vn->fq_cond, &vn->fq_mu);
		if (!me.lead) {
			pthread_mutex_unlock(&vn->fq_mu);
			goto out;
		}
	}
	vn->fq_busy = true;
	b[0] = &me;
	while (me.w.rc == FILE_WRITE_TODO) {
		struct fill_early *fe;

		/* those queued while the previous pass ran come along */
		while (n < FILL_BATCH_MAX && vn->fq) {
			b[n++] = vn->fq;
			vn->fq = vn->fq->next;
		}
		for (int k = 0; k < n; k++)
			w[k] = b[k]->w;
		fe = fill_early_new(c, vn, b, n);
		pthread_mutex_unlock(&vn->fq_mu);
		fill_pass(c, vn, ino, w, n, &waited, fe);
		pthread_mutex_lock(&vn->fq_mu);
		int left = 0;	/* the done ones go; mine stays first while to do */

		if (fe)
			fill_early_take(fe, b, w, n);
		for (int k = 0; k < n; k++) {
			if (b[k]->w.rc != -ENOMEM || !fe)
				b[k]->w.rc = w[k].rc;
			if (b[k]->w.rc == FILE_WRITE_TODO)
				b[left++] = b[k];
		}
		n = left;
		if (fe)
			fill_early_put(fe);	/* the pass's own reference */
		pthread_cond_broadcast(&vn->fq_cond);
	}
	/* mine is done: the others still to do wait again, at the front */
	for (int k = n - 1; k >= 0; k--) {
		b[k]->next = vn->fq;
		vn->fq = b[k];
	}
	if (vn->fq) {
		struct fill_wait *head = vn->fq;

		vn->fq = head->next;
		head->lead = true;	/* it takes the turn; fq_busy stays */
		pthread_cond_broadcast(&vn->fq_cond);
	} else {
		vn->fq_busy = false;
	}
	pthread_mutex_unlock(&vn->fq_mu);
out:
	if (me.rbuf && !me.given && me.w.rc != -ETIMEDOUT)
		fuse_loop_buffer_put(me.rbuf);
	free(me.copy);
	return me.w.rc;
}

/* Writes: an overwrite of allocated blocks changes only data and mtime,
 * so it runs under PR on the inode (in parallel with this host's other
 * writes, and with other hosts' on multi-writer files; mtime is last
 * writer wins).  Anything that allocates, grows or appends takes EX on
 * the inode and the group it allocates in. */
static void write_do(fuse_req_t req, fuse_ino_t fino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	uint64_t ino = to_disk(c, fino);
	struct vnode *vn = vnode_open_find(c, ino);
	struct lkset ls;
	int rc;

	if (!vn) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = may_write(fi);
	if (rc)
		goto reply;
	if (fi->flags & O_APPEND) {
		/* direct_io: the kernel passes the offset it saw; take EOF here */
		struct vmfs_inode *in = malloc(sizeof(*in));

		rc = in ? lk_inode_alloc(c, &ls, ino) : -ENOMEM;
		if (rc) {
			free(in);
			goto reply;
		}
		for (unsigned tries = 0;;) {
			vnode_wrlock(vn);
			pthread_mutex_lock(&c->v->mu);
			rc = vol_inode_get(c->v, ino, in);
			pthread_mutex_unlock(&c->v->mu);
			if (!rc)
				rc = file_write(c->v, ino, buf, size, in->size);
			pthread_rwlock_unlock(&vn->rw);
			if (rc != VMFS_ENEEDRG || (rc = lks_regroup(c, &ls, &tries)))
				break;
		}
		lks_unlock(c, &ls);
		free(in);
		goto reply;
	}
	/* an overwrite may leave mtime lazy; set before the answer, after
	 * which the file may be released and vn gone */
	atomic_store(&vn->unstamped, true);
	if (size <= VMFS_AIO_MAX) {
		rc = write_async(req, c, vn, ino, buf, size, off);
		if (rc >= 0)
			return;		/* answered, now or on completion */
	} else {
		rc = solo_ok(c, fi) ? write_early(req, c, vn, ino, buf, size, off) : WRITE_SYNC;
		if (rc == 0)
			return;		/* answered; its disk write goes on */
	}
	if (rc == WRITE_SYNC) {
		rc = lk_inode(c, &ls, ino, VMFS_LK_PR);
		if (rc)
			goto reply;
		pthread_rwlock_rdlock(&vn->rw);
		wb_wait_overlap(&vn->wb, (uint64_t)off, size);
		rc = file_write_fast(c->v, ino, buf, size, (uint64_t)off);
		pthread_rwlock_unlock(&vn->rw);
		lks_unlock(c, &ls);
	}
	if (rc == -EAGAIN)
		rc = write_fill(c, vn, ino, buf, size, (uint64_t)off, solo_ok(c, fi));
reply:
	/* buf may be the worker's receive buffer, written to the disk as is
	 * (fuse_loop.h): after an uncancellable timeout the kernel keeps it */
	if (rc == -ETIMEDOUT)
		fuse_loop_abandon_buffer();
	if (rc)
		fuse_reply_err(req, -vmfs_errno(rc));
	else
		fuse_reply_write(req, size);
}

/* Every WRITE: counted in vn->writing while served and in vn->wgen, which
 * makes a read-ahead stale (ra_take), and the read-ahead dropped.  vn
 * stays until writing is 0 again (op_release waits). */
static void op_write(fuse_req_t req, fuse_ino_t fino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	struct vnode *vn = vnode_open_find(c, to_disk(c, fino));

	if (vn) {
		atomic_fetch_add(&vn->writing, 1);
		atomic_fetch_add(&vn->wgen, 1);
		ra_drop(vn);
	}
	write_do(req, fino, buf, size, off, fi);
	if (vn)
		atomic_fetch_sub(&vn->writing, 1);
}

/* Wait for the writes to ino answered before they completed (wb.h);
 * the first of them that failed and was not reported yet, or 0. */
static int drain_writes(struct fsctx *c, uint64_t ino)
{
	struct vnode *vn = vnode_open_find(c, ino);

	return vn ? wb_drain(&vn->wb) : 0;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	int rc;

	/* close() of a descriptor drops its owner's POSIX locks */
	if (c->pl)
		plock_release_owner(c->pl, to_disk(c, ino), fi->lock_owner);
	/* and reports a failed write, as after a failed writeback */
	rc = drain_writes(c, to_disk(c, ino));
	fuse_reply_err(req, -vmfs_errno(rc));
}

/* Stamp the mtime an overwrite left lazy (file.c MTIME_LAZY_NS), at
 * fsync and at close, under PR on the inode as the overwrite itself. */
static void stamp_pending(struct fsctx *c, uint64_t ino)
{
	struct vnode *vn = vnode_open_find(c, ino);
	struct lkset ls;

	if (!vn || !atomic_exchange(&vn->unstamped, false))
		return;
	if (lk_inode(c, &ls, ino, VMFS_LK_PR))
		return;		/* fenced: nothing is written any more */
	if (file_write_stamp(c->v, ino))
		log_warn("inode %llu: could not record its modification time",
			 (unsigned long long)ino);
	lks_unlock(c, &ls);
}

/* Before a release may free the vnode: the reads and writes still served
 * after their answer (op_read starts a read-ahead then, op_write counts
 * itself out) are done, and the read-ahead is dropped. */
static void ra_quiesce(struct fsctx *c, uint64_t ino)
{
	struct vnode *vn = vnode_open_find(c, ino);

	if (!vn)
		return;
	while (atomic_load(&vn->reading) || atomic_load(&vn->writing))
		usleep(50);
	ra_drop(vn);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);

	/* before the open lock can go to another host: the writes in flight
	 * (their failures were logged; close reported what it could) */
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		if (drain_writes(c, to_disk(c, ino)))
			log_warn("inode %llu: closed with a failed write not reported to the "
				 "program", (unsigned long long)to_disk(c, ino));
		stamp_pending(c, to_disk(c, ino));
	}
	ra_quiesce(c, to_disk(c, ino));
	if (c->pl && fi->flock_release)
		plock_release_flock(c->pl, to_disk(c, ino), fi->lock_owner);
	open_unlock(c, to_disk(c, ino), fi);
	vnode_put(c, to_disk(c, ino), 0, 1);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	int rc, wrc;

	/* Data went to the disk O_DIRECT before each write was answered
	 * (also those answered from the completion, op_read: the answer
	 * waits for the disk), except the large writes answered at
	 * submission (wb.h), waited for here.  So every write fsync must
	 * cover is on the disk then; writes still in flight were not
	 * acknowledged and need not be covered.  The commit makes the
	 * metadata durable and its fdatasync the data. */
	wrc = drain_writes(c, to_disk(c, ino));
	if (!datasync)
		stamp_pending(c, to_disk(c, ino));
	vol_presync(c->v);
	pthread_mutex_lock(&c->v->mu);
	if (c->v->ndirty) {
		rc = vol_commit(c->v);
		pthread_mutex_unlock(&c->v->mu);
	} else {		/* nothing to commit: the sync needs no vol.mu */
		rc = c->v->error;
		pthread_mutex_unlock(&c->v->mu);
		if (!rc)
			rc = diskio_sync(c->v->dio);
	}
	fuse_reply_err(req, -vmfs_errno(wrc ? wrc : rc));
}

/* ioctl: VMFS_IOC_DRAIN (vmfs/fs.h) waits for the file's writes answered
 * before they completed, without the cache flush of an fdatasync: what a
 * hypervisor does before a migration's handoff moves the disk's lock. */
static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		     size_t in_bufsz, size_t out_bufsz)
{
	struct fsctx *c = ctx_of(req);
	int rc;

	(void)arg, (void)fi, (void)flags, (void)in_buf, (void)in_bufsz, (void)out_bufsz;
	if (cmd != VMFS_IOC_DRAIN) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	rc = drain_writes(c, to_disk(c, ino));
	if (rc)
		fuse_reply_err(req, -vmfs_errno(rc));
	else
		fuse_reply_ioctl(req, 0, NULL, 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t fino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	uint64_t ino = to_disk(c, fino);
	struct vnode *vn = vnode_open_find(c, ino);
	struct lkset ls;
	int rc;

	if (!vn) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	rc = may_write(fi);
	for (unsigned waited = 0; !rc;) {
		rc = lk_inode_alloc(c, &ls, ino);
		for (unsigned tries = 0; !rc;) {	/* in steps over groups (alloc.h) */
			vnode_wrlock(vn);
			rc = file_fallocate(c->v, ino, mode, (uint64_t)off, (uint64_t)len);
			pthread_rwlock_unlock(&vn->rw);
			if (rc != VMFS_ENEEDRG) {
				lks_unlock(c, &ls);
				break;
			}
			rc = lks_regroup(c, &ls, &tries);
		}
		if (!enospc_retry(c, rc, &waited))
			break;
		rc = 0;		/* orphans ended: again */
	}
	fuse_reply_err(req, -vmfs_errno(rc));
}

static void op_lseek(fuse_req_t req, fuse_ino_t fino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	uint64_t ino = to_disk(c, fino), res = 0;
	struct vnode *vn = vnode_open_find(c, ino);
	struct lkset ls;
	int rc;

	if (!vn) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	rc = lk_inode(c, &ls, ino, VMFS_LK_PR);
	if (!rc) {
		pthread_rwlock_rdlock(&vn->rw);
		rc = file_seek(c->v, ino, (uint64_t)off, whence, &res);
		pthread_rwlock_unlock(&vn->rw);
		lks_unlock(c, &ls);
	}
	if (rc)
		fuse_reply_err(req, -vmfs_errno(rc));
	else
		fuse_reply_lseek(req, (off_t)res);
}

/* ---- directories ---- */

struct rd {
	fuse_req_t req;
	struct fsctx *c;
	char *buf;
	size_t size, used;
};

static int rd_add(void *arg, const char *name, uint8_t name_len, uint64_t ino, uint8_t dtype,
		  uint64_t next)
{
	struct rd *r = arg;
	char nm[VMFS_NAME_MAX + 1];
	struct stat st;
	size_t n;

	memcpy(nm, name, name_len);
	nm[name_len] = '\0';
	memset(&st, 0, sizeof(st));
	st.st_ino = to_fuse(r->c, ino);
	st.st_mode = (mode_t)dtype << 12;
	n = fuse_add_direntry(r->req, r->buf + r->used, r->size - r->used, nm, &st, (off_t)next);
	if (n > r->size - r->used)
		return 1;	/* full: this entry is returned next time */
	r->used += n;
	return 0;
}

static void op_readdir(fuse_req_t req, fuse_ino_t fino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct rd r = { req, c, malloc(size), size, 0 };
	struct lkset ls;
	int rc;

	if (!in || !r.buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = lk_inode(c, &ls, to_disk(c, fino), VMFS_LK_PR);
	if (rc)
		goto out;
	pthread_mutex_lock(&c->v->mu);
	rc = get_dir(c->v, to_disk(c, fino), in);
	if (!rc && off < 1 && rd_add(&r, ".", 1, in->h.self, DT_DIR, 1))
		goto unlock;
	if (!rc && off < 2 && rd_add(&r, "..", 2, in->parent ? in->parent : in->h.self, DT_DIR, 2))
		goto unlock;
	if (!rc)
		rc = dir_iterate(c->v, in, (uint64_t)off, rd_add, &r);
unlock:
	pthread_mutex_unlock(&c->v->mu);
	lks_unlock(c, &ls);
out:
	if (rc)
		fuse_reply_err(req, -vmfs_errno(rc));
	else
		fuse_reply_buf(req, r.buf, r.used);
	free(r.buf);
	free(in);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fsctx *c = ctx_of(req);
	struct statvfs st;

	memset(&st, 0, sizeof(st));
	/* No lock: the groups' counts as last written, at most 5 s old
	 * (other hosts allocate in their groups without telling us), as
	 * GFS2's statfs without its exact mode.  A recount reads every group
	 * this host does not hold. */
	pthread_mutex_lock(&c->v->mu);
	if ((c->v->free_stale || now_ns() - c->v->recount_ns > 5000000000ull) &&
	    alloc_recount(c->v))
		log_warn("statfs: cannot recount free blocks");
	st.f_bsize = c->v->bsize;
	st.f_frsize = c->v->bsize;
	st.f_blocks = c->v->sb.nblocks - c->v->sb.rg_start;
	st.f_bfree = c->v->free_blocks;
	st.f_bavail = c->v->free_blocks;
	st.f_files = st.f_blocks * c->v->mpb;
	st.f_ffree = st.f_bfree * c->v->mpb;
	st.f_favail = st.f_ffree;
	st.f_namemax = VMFS_NAME_MAX;
	pthread_mutex_unlock(&c->v->mu);
	fuse_reply_statfs(req, &st);
}

/* ---- xattrs: user.* only, packed records in the inode's xattr area:
 * u8 name_len, u8 0, le16 value_len, name, value ---- */

static int xa_find(const struct vmfs_inode *in, const char *name, uint32_t *off, uint32_t *rlen)
{
	size_t nl = strlen(name);

	for (uint32_t o = 0; o + 4 <= in->xattr_len;) {
		uint32_t n = in->xattr[o], vl = get_le16(in->xattr + o + 2), l = 4 + n + vl;

		if (n == 0 || o + l > in->xattr_len)
			return VMFS_EBADFIELD;
		if (n == nl && !memcmp(in->xattr + o + 4, name, n)) {
			*off = o;
			*rlen = l;
			return 0;
		}
		o += l;
	}
	return -ENODATA;
}

static int xa_check_name(const char *name)
{
	if (strncmp(name, "user.", 5) != 0)
		return -EOPNOTSUPP;
	if (strlen(name) > 255 || strlen(name) == 5)
		return -ERANGE;
	return 0;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	uint32_t off, rl;
	size_t nl = strlen(name);
	int rc = xa_check_name(name);

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	struct lkset ls;

	lks_init(&ls);
	if (!strcmp(name, VMFS_XATTR_INCOMING)) {
		rc = xattr_incoming(req, c, to_disk(c, ino), value, size);
		goto out;
	}
	if (!strcmp(name, VMFS_XATTR_RETURN)) {
		rc = xattr_return(req, c, to_disk(c, ino), value, size, NULL, 0);
		goto out;
	}
	if (!rc && size > 65535)
		rc = -E2BIG;
	if (!rc)
		rc = lk_inode(c, &ls, to_disk(c, ino), VMFS_LK_EX);
	if (rc)
		goto out;
	pthread_mutex_lock(&c->v->mu);
	rc = c->v->error;
	if (!rc)
		rc = vol_inode_get(c->v, to_disk(c, ino), in);
	if (rc)
		goto unlock;
	rc = xa_find(in, name, &off, &rl);
	if (rc == 0 && (flags & XATTR_CREATE)) {
		rc = -EEXIST;
		goto unlock;
	}
	if (rc == -ENODATA && (flags & XATTR_REPLACE))
		goto unlock;
	if (rc && rc != -ENODATA)
		goto unlock;
	if (rc == 0) {	/* drop the old record */
		memmove(in->xattr + off, in->xattr + off + rl, in->xattr_len - off - rl);
		in->xattr_len -= rl;
		memset(in->xattr + in->xattr_len, 0, rl);
	}
	if (in->xattr_len + 4 + nl + size > VMFS_INO_XATTR_SIZE) {
		rc = -ENOSPC;
		goto unlock;
	}
	off = in->xattr_len;
	in->xattr[off] = (uint8_t)nl;
	in->xattr[off + 1] = 0;
	put_le16(in->xattr + off + 2, (uint16_t)size);
	memcpy(in->xattr + off + 4, name, nl);
	memcpy(in->xattr + off + 4 + nl, value, size);
	in->xattr_len += (uint32_t)(4 + nl + size);
	in->ctime_ns = (int64_t)now_ns();
	rc = vol_inode_put(c->v, in);
unlock:
	pthread_mutex_unlock(&c->v->mu);
	lks_unlock(c, &ls);
out:
	fuse_reply_err(req, -vmfs_errno(rc));
	free(in);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	uint32_t off = 0, rl = 0, vl = 0;
	int rc;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!strcmp(name, VMFS_XATTR_ID)) {
		char id[VMFS_UUID_STR_LEN + 24];
		int n = snprintf(id, sizeof(id), "%s/i%llu", c->ls,
				 (unsigned long long)to_disk(c, ino));

		if (size == 0)
			fuse_reply_xattr(req, (size_t)n);
		else if (size < (size_t)n)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, id, (size_t)n);
		free(in);
		return;
	}
	if (!strcmp(name, VMFS_XATTR_RETURN)) {
		char st[VMFS_DLM_TAG_MAX + 16];
		size_t n;

		rc = xattr_return(req, c, to_disk(c, ino), NULL, 0, st, sizeof(st));
		n = rc ? 0 : strlen(st);
		if (rc)
			fuse_reply_err(req, -rc);
		else if (size == 0)
			fuse_reply_xattr(req, n);
		else if (size < n)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, st, n);
		free(in);
		return;
	}
	if (strncmp(name, "user.", 5) != 0) {
		rc = -ENODATA;
		goto out;
	}
	rc = inode_read_locked(c, to_disk(c, ino), in);
	if (!rc)
		rc = xa_find(in, name, &off, &rl);
	if (!rc) {
		vl = get_le16(in->xattr + off + 2);
		if (size == 0) {
			fuse_reply_xattr(req, vl);
			free(in);
			return;
		}
		if (size < vl) {
			rc = -ERANGE;
		} else {
			fuse_reply_buf(req, (char *)in->xattr + off + 4 + in->xattr[off], vl);
			free(in);
			return;
		}
	}
out:
	fuse_reply_err(req, -vmfs_errno(rc));
	free(in);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	char list[VMFS_INO_XATTR_SIZE];
	size_t len = 0;
	int rc;

	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = inode_read_locked(c, to_disk(c, ino), in);
	for (uint32_t o = 0; !rc && o + 4 <= in->xattr_len;) {
		uint32_t n = in->xattr[o], l = 4 + n + get_le16(in->xattr + o + 2);

		if (n == 0 || o + l > in->xattr_len || len + n + 1 > sizeof(list)) {
			rc = VMFS_EBADFIELD;
			break;
		}
		memcpy(list + len, in->xattr + o + 4, n);
		len += n;
		list[len++] = '\0';
		o += l;
	}
	if (rc)
		fuse_reply_err(req, -vmfs_errno(rc));
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, len);
	free(in);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fsctx *c = ctx_of(req);
	struct vmfs_inode *in = malloc(sizeof(*in));
	struct lkset ls;
	uint32_t off, rl;
	int rc;

	lks_init(&ls);
	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (!strcmp(name, VMFS_XATTR_INCOMING)) {
		rc = xattr_incoming(req, c, to_disk(c, ino), NULL, 0);
		goto out;
	}
	if (!strcmp(name, VMFS_XATTR_RETURN)) {
		rc = xattr_return(req, c, to_disk(c, ino), NULL, 0, NULL, 0);
		goto out;
	}
	if (strncmp(name, "user.", 5) != 0) {
		rc = -ENODATA;
		goto out;
	}
	rc = lk_inode(c, &ls, to_disk(c, ino), VMFS_LK_EX);
	if (rc)
		goto out;
	pthread_mutex_lock(&c->v->mu);
	rc = c->v->error;
	if (!rc)
		rc = vol_inode_get(c->v, to_disk(c, ino), in);
	if (!rc)
		rc = xa_find(in, name, &off, &rl);
	if (!rc) {
		memmove(in->xattr + off, in->xattr + off + rl, in->xattr_len - off - rl);
		in->xattr_len -= rl;
		memset(in->xattr + in->xattr_len, 0, rl);
		in->ctime_ns = (int64_t)now_ns();
		rc = vol_inode_put(c->v, in);
	}
	pthread_mutex_unlock(&c->v->mu);
	lks_unlock(c, &ls);
out:
	fuse_reply_err(req, -vmfs_errno(rc));
	free(in);
}

/* ---- POSIX record locks and flock: cluster-wide through plock.h when the
 * lock manager is there; otherwise the kernel keeps them (local only). ---- */

static void flock_range(const struct flock *l, uint64_t *start, uint64_t *end)
{
	*start = (uint64_t)l->l_start;
	*end = l->l_len == 0 ? PLOCK_EOF : (uint64_t)(l->l_start + l->l_len - 1);
}

static void op_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock)
{
	struct fsctx *c = ctx_of(req);
	uint64_t start, end;
	short type = lock->l_type;
	pid_t pid = 0;
	int rc;

	flock_range(lock, &start, &end);
	rc = plock_getlk(c->pl, to_disk(c, ino), fi->lock_owner, &type, &start, &end, &pid);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	lock->l_type = type;
	if (type != F_UNLCK) {
		lock->l_whence = SEEK_SET;
		lock->l_start = (off_t)start;
		lock->l_len = end == PLOCK_EOF ? 0 : (off_t)(end - start + 1);
		lock->l_pid = pid;
	}
	fuse_reply_lock(req, lock);
}

/* FUSE INTERRUPT of a waiting F_SETLKW or flock: its process got a
 * signal (libfuse calls this from the thread that read the interrupt). */
static void on_lock_interrupt(fuse_req_t req, void *data)
{
	(void)req;
	plock_interrupt(data);
}

/* A blocking F_SETLKW or flock that cannot be granted at once waits on a
 * thread of its own, not on a FUSE worker: waiters can outnumber the
 * workers, and 20 processes waiting for one flock held all 16 and hung
 * the mount (the holder's unlock found no worker to take it). */
struct lock_wait {
	fuse_req_t req;
	struct fsctx *c;
	uint64_t ino, owner, start, end;
	pid_t pid;
	short type;		/* fcntl: F_RDLCK or F_WRLCK */
	int flock_op;		/* flock: LOCK_SH or LOCK_EX; 0 for fcntl */
	struct plock_intr in;
	struct lock_wait *prev, *next;	/* fsctx.waits, protected by wmu */
};

static void *lock_wait_main(void *arg)
{
	struct lock_wait *w = arg;
	struct fsctx *c = w->c;
	int rc;

	if (w->flock_op)
		rc = plock_flock(c->pl, w->ino, w->owner, w->flock_op, &w->in);
	else
		rc = plock_setlk(c->pl, w->ino, w->owner, w->pid, w->type, w->start, w->end, true,
				 &w->in);
	fuse_req_interrupt_func(w->req, NULL, NULL);	/* w->in goes */
	fuse_reply_err(w->req, -rc);
	pthread_mutex_lock(&c->wmu);
	if (w->prev)
		w->prev->next = w->next;
	else
		c->waits = w->next;
	if (w->next)
		w->next->prev = w->prev;
	pthread_cond_broadcast(&c->wcond);
	pthread_mutex_unlock(&c->wmu);
	free(w);
	return NULL;
}

/* Wait for the lock described by proto and answer its request, from a new
 * thread (on this worker when none can be started). */
static void lock_wait_start(const struct lock_wait *proto)
{
	struct lock_wait *w = malloc(sizeof(*w));
	struct fsctx *c = proto->c;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (!w) {
		fuse_reply_err(proto->req, ENOLCK);
		return;
	}
	*w = *proto;
	plock_intr_init(&w->in, c->pl);
	pthread_mutex_lock(&c->wmu);
	w->prev = NULL;
	w->next = c->waits;
	if (c->waits)
		c->waits->prev = w;
	c->waits = w;
	pthread_mutex_unlock(&c->wmu);
	fuse_req_interrupt_func(w->req, on_lock_interrupt, &w->in);
	/* the worker's signal mask (all blocked) is inherited */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256u << 10);
	rc = pthread_create(&tid, &attr, lock_wait_main, w);
	pthread_attr_destroy(&attr);
	if (rc) {
		log_warn("cannot start a lock-wait thread (%s): waiting on a FUSE worker",
			 strerror(rc));
		lock_wait_main(w);
	}
}

void fsctx_end_lock_waits(struct fsctx *c)
{
	pthread_mutex_lock(&c->wmu);
	for (struct lock_wait *w = c->waits; w; w = w->next)
		plock_interrupt(&w->in);
	while (c->waits)
		pthread_cond_wait(&c->wcond, &c->wmu);
	pthread_mutex_unlock(&c->wmu);
}

static void op_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock,
		     int sleep)
{
	struct fsctx *c = ctx_of(req);
	uint64_t start, end;
	int rc;

	flock_range(lock, &start, &end);
	if (lock->l_type != F_UNLCK)
		fh_note_owner(fi, fi->lock_owner);
	rc = plock_setlk(c->pl, to_disk(c, ino), fi->lock_owner, fuse_req_ctx(req)->pid,
			 lock->l_type, start, end, false, NULL);
	if (rc == -EAGAIN && sleep) {
		lock_wait_start(&(struct lock_wait){ .req = req, .c = c, .ino = to_disk(c, ino),
						     .owner = fi->lock_owner, .start = start,
						     .end = end, .pid = fuse_req_ctx(req)->pid,
						     .type = lock->l_type });
		return;
	}
	fuse_reply_err(req, -rc);
}

static void op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	struct fsctx *c = ctx_of(req);
	bool wait = !(op & LOCK_NB) && (op & ~LOCK_NB) != LOCK_UN;
	int rc;

	rc = plock_flock(c->pl, to_disk(c, ino), fi->lock_owner, op | (wait ? LOCK_NB : 0), NULL);
	if (rc == -EWOULDBLOCK && wait) {
		lock_wait_start(&(struct lock_wait){ .req = req, .c = c, .ino = to_disk(c, ino),
						     .owner = fi->lock_owner, .flock_op = op });
		return;
	}
	fuse_reply_err(req, -rc);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fsctx *c = userdata;

	/* The kernel cuts a larger direct I/O into max_write pieces (reads:
	 * max_pages, 1 MiB).  Smaller pieces would reach us in parallel from
	 * asynchronous callers (libaio, io_uring) but one after the other
	 * from synchronous ones (pwritev, as QEMU's default aio=threads does):
	 * 256 KiB took fio libaio 1 MiB QD1 from 0.45x to 0.65x of the raw
	 * disk but fio psync from 0.45x to 0.2x.  So one block, 1 MiB. */
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	/* Asynchronous direct I/O (FUSE_CAP_ASYNC_DIO, on by default) goes
	 * out as "background" requests, of which the kernel keeps at most
	 * max_background in flight (default 12): a guest's queue depth of 32
	 * would reach us as 12.  Allow a little more than the worker pool
	 * (mount.c) so a freed worker finds the next request waiting. */
	conn->max_background = VMFS_FUSE_MAX_BACKGROUND;
	conn->congestion_threshold = VMFS_FUSE_MAX_BACKGROUND * 3 / 4;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* the kernel's page-cache features stay off: all file I/O is direct */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/* Requests are read into the workers' buffers, where WRITE data lands
	 * page-aligned for the disk (fuse_loop.h); a splice would leave it in
	 * a pipe and cost a copy into an unaligned buffer instead. */
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
	/* Cluster mode: fcntl and flock locks come to us (plock.h); else the
	 * kernel keeps them, which is right for a single host. */
	if (c->pl) {
		if (conn->capable & FUSE_CAP_POSIX_LOCKS)
			conn->want |= FUSE_CAP_POSIX_LOCKS;
		if (conn->capable & FUSE_CAP_FLOCK_LOCKS)
			conn->want |= FUSE_CAP_FLOCK_LOCKS;
	} else {
		conn->want &= ~(unsigned)(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	}
}

const struct fuse_lowlevel_ops vmfs_fuse_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.ioctl = op_ioctl,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.readdir = op_readdir,
	.fsyncdir = op_fsync,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
	.getlk = op_getlk,
	.setlk = op_setlk,
	.flock = op_flock,
};

/* ---- context, periodic commit ---- */

static void *committer_main(void *arg)
{
	struct fsctx *c = arg;

	pthread_mutex_lock(&c->cmu);
	while (!c->cstop) {
		struct timespec dl;

		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += c->commit_s;
		pthread_cond_timedwait(&c->ccond, &c->cmu, &dl);
		if (c->cstop)
			break;
		pthread_mutex_unlock(&c->cmu);
		vol_presync(c->v);
		pthread_mutex_lock(&c->v->mu);
		/* vol_commit says why it failed; the volume is read-only
		 * after that, so it is not tried again */
		if (c->v->ndirty && !c->v->error && vol_commit(c->v))
			log_debug("periodic commit failed");
		mc_trim(c->v);
		pthread_mutex_unlock(&c->v->mu);
		pthread_mutex_lock(&c->cmu);
	}
	pthread_mutex_unlock(&c->cmu);
	return NULL;
}

int fsctx_init(struct fsctx *c, struct vol *v)
{
	memset(c, 0, sizeof(*c));
	c->v = v;
	c->timeout = 1.0;
	c->commit_s = FSCTX_COMMIT_S;
	if (getenv("VMFS_TEST_WB_DELAY_MS"))
		wb_test_delay_ms = (unsigned)atoi(getenv("VMFS_TEST_WB_DELAY_MS"));
	vmfs_uuid_str(v->sb.uuid, c->ls);
	c->vsize = VT_SIZE;
	c->vt = calloc(c->vsize, sizeof(*c->vt));
	if (!c->vt)
		return -ENOMEM;
	pthread_mutex_init(&c->vmu, NULL);
	pthread_mutex_init(&c->cmu, NULL);
	pthread_cond_init(&c->ccond, NULL);
	pthread_mutex_init(&c->wmu, NULL);
	pthread_cond_init(&c->wcond, NULL);
	return vmfs_locking_single_init(&c->lk, NULL, c);
}

int fsctx_start_committer(struct fsctx *c)
{
	int rc = -pthread_create(&c->committer, NULL, committer_main, c);

	if (!rc)
		c->crunning = true;
	return rc;
}

void fsctx_stop_committer(struct fsctx *c)
{
	if (!c->crunning)
		return;
	pthread_mutex_lock(&c->cmu);
	c->cstop = true;
	pthread_cond_signal(&c->ccond);
	pthread_mutex_unlock(&c->cmu);
	pthread_join(c->committer, NULL);
	c->crunning = false;
}

void fsctx_fini(struct fsctx *c)
{
	if (c->vt) {
		for (size_t i = 0; i < c->vsize; i++) {
			for (struct vnode *vn = c->vt[i], *n; vn; vn = n) {
				n = vn->next;
				vnode_free(vn);
			}
		}
		free(c->vt);
	}
	if (c->ol)
		openlock_tab_free(c->ol);
	if (c->pl)
		plock_tab_free(c->pl);
	for (size_t s = 0; s < VMFS_MAX_HOSTS; s++)
		vmfs_unlock(&c->lk, &c->slot_lk[s]);
	vmfs_locking_fini(&c->lk);
	pthread_mutex_destroy(&c->vmu);
	pthread_mutex_destroy(&c->cmu);
	pthread_cond_destroy(&c->ccond);
	pthread_mutex_destroy(&c->wmu);
	pthread_cond_destroy(&c->wcond);
}
