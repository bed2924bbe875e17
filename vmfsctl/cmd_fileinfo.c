/* cmd_fileinfo.c — vmfsctl fileinfo: a file's inode, sizes and extent
 * map as the shared disk holds them, and who holds its cluster lock.
 *
 * The inode and its extent map are read from the device behind the mount
 * (fs/vol.c, fs/inode.c decode them), so the answer is what every host
 * sees.  Before reading, the mount's root directory is fsync'ed: the mount
 * then commits its running transaction (fsyncdir), and the disk includes
 * this host's latest changes instead of lagging by up to a commit period.
 *
 * Lock naming (the filesystem adopts it when it takes per-file cluster
 * locks; fs/locking.h names the same scheme): the lockspace is the volume
 * UUID in canonical lowercase 8-4-4-4-12 form, the resource of an inode is
 * "i" followed by the inode number in decimal (e.g. "i4242").
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsvol.h"
#include "inode.h"
#include "pages.h"
#include "vmfsctl.h"

#define FUSE_ROOT_INO 1	/* the mount shows the root inode as 1 */

struct fileinfo {
	uint64_t ino;
	struct vmfs_inode *in;
	uint64_t written;	/* blocks mapped by written extents */
	uint64_t unwritten;	/* blocks reserved by fallocate, not yet written */
	uint32_t extents;
	uint32_t pages;		/* a small file's 4 KiB pages (fs/pages.h) */
	char resource[32];
	char lockspace[FSVOL_UUID_STR_LEN];
	/* lock manager view */
	bool daemon_ok;
	char daemon_err[160];
	struct json_object *holders;	/* the resource's "locks" array, or NULL */
	int64_t res_epoch;
};

/* The file's open-lock mode as VMFS names it, from the granted holders
 * (vmfs-mount(8): write opens EX, read-only PR, multi-writer CW/CR). */
static const char *open_mode(const struct fileinfo *fi)
{
	bool ex = false, pr = false, cw = false;
	size_t n;

	if (!fi->daemon_ok)
		return "unknown (vmfs-dlmd not reachable)";
	n = fi->holders ? json_object_array_length(fi->holders) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *l = json_object_array_get_idx(fi->holders, i);
		const char *q = vj_str(l, "queue", ""), *m = vj_str(l, "mode", "");

		if (strcmp(q, "granted") && strcmp(q, "converting"))
			continue;
		ex |= !strcmp(m, "EX");
		pr |= !strcmp(m, "PR");
		cw |= !strcmp(m, "CW") || !strcmp(m, "CR");
	}
	if (ex)
		return "exclusive (open for write on one host)";
	if (cw)
		return "multi-writer";
	if (pr)
		return "read-only shared";
	return "none (not open on any host)";
}

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "file";
	case S_IFDIR: return "directory";
	case S_IFLNK: return "symlink";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	case S_IFCHR: return "char device";
	case S_IFBLK: return "block device";
	default: return "unknown";
	}
}

/* Ask the mount to commit (see the top of the file).  A failure only means
 * the disk may lag the mount by a commit period, so it is not fatal. */
static void flush_mount(const char *mountpoint)
{
	int fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fsync(fd) < 0)
		vmfsctl_err("note: %s: fsync: %s; the disk may lag the mount by a second",
			    mountpoint, strerror(errno));
	close(fd);
}

static int read_inode(struct vol *v, struct fileinfo *fi)
{
	struct xmap m = { 0 };
	int rc;

	pthread_mutex_lock(&v->mu);
	rc = vol_inode_get(v, fi->ino, fi->in);
	if (!rc && S_ISREG(fi->in->mode))
		rc = xmap_load(v, fi->in, &m);	/* empty for an inline file */
	pthread_mutex_unlock(&v->mu);
	for (uint32_t i = 0; !rc && i < m.n; i++) {
		if (m.e[i].flags & VMFS_EXT_UNWRITTEN)
			fi->unwritten += m.e[i].len;
		else
			fi->written += m.e[i].len;
	}
	fi->extents = m.n;
	if (!rc && S_ISREG(fi->in->mode) && (fi->in->iflags & VMFS_IF_PAGES))
		fi->pages = pages_count(fi->in);
	xmap_release(&m);
	return rc;
}

/* Holders of the inode's resource, from vmfs-dlmd's lock table.  An
 * unreachable daemon is a fact to show, not an error of the command. */
static void query_locks(struct fileinfo *fi)
{
	struct json_object *table = NULL, *lss;
	vmfs_dlm_t *h = NULL;
	char *text = NULL;
	int rc;

	rc = vmfs_dlm_open("vmfsctl", &h);
	if (rc) {
		snprintf(fi->daemon_err, sizeof(fi->daemon_err), "vmfs-dlmd not reachable: %s",
			 vmfsctl_strerror(rc));
		return;
	}
	rc = vmfs_dlm_query(h, "locks", fi->lockspace, &text);
	if (rc < 0) {
		snprintf(fi->daemon_err, sizeof(fi->daemon_err), "query to vmfs-dlmd failed: %s",
			 vmfsctl_strerror(rc));
		goto out;
	}
	table = json_tokener_parse(text);
	if (!table) {
		snprintf(fi->daemon_err, sizeof(fi->daemon_err),
			 "vmfs-dlmd answered with invalid JSON");
		goto out;
	}
	fi->daemon_ok = true;
	lss = vj_array(table, "lockspaces");
	for (size_t i = 0; lss && i < json_object_array_length(lss); i++) {
		struct json_object *ls = json_object_array_get_idx(lss, i);
		struct json_object *res = vj_array(ls, "resources");

		if (strcmp(vj_str(ls, "name", ""), fi->lockspace) != 0)
			continue;
		for (size_t j = 0; res && j < json_object_array_length(res); j++) {
			struct json_object *r = json_object_array_get_idx(res, j);
			struct json_object *locks = vj_array(r, "locks");

			if (strcmp(vj_str(r, "name", ""), fi->resource) != 0 || !locks)
				continue;
			fi->holders = json_object_get(locks);
			fi->res_epoch = vj_int(r, "epoch", 0);
		}
	}
out:
	json_object_put(table);
	free(text);
	vmfs_dlm_close(h);
}

static void print_json(const char *path, const struct fsvol *fv, const struct fileinfo *fi)
{
	const struct vmfs_inode *in = fi->in;
	uint32_t bs = fv->v->sb.block_size;
	struct json_object *o = json_object_new_object(), *lk = json_object_new_object();

	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "device", json_object_new_string(fv->device));
	json_object_object_add(o, "mountpoint", json_object_new_string(fv->mountpoint));
	json_object_object_add(o, "volume_uuid", json_object_new_string(fi->lockspace));
	json_object_object_add(o, "volume_label", json_object_new_string(fv->v->sb.label));
	json_object_object_add(o, "inode", json_object_new_int64((int64_t)fi->ino));
	json_object_object_add(o, "type", json_object_new_string(type_name(in->mode)));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)in->size));
	json_object_object_add(o, "allocated_bytes",
			       json_object_new_int64((int64_t)((fi->written + fi->unwritten) * bs +
							       (uint64_t)fi->pages * VMFS_MBLK)));
	json_object_object_add(o, "allocated_blocks",
			       json_object_new_int64((int64_t)(fi->written + fi->unwritten)));
	json_object_object_add(o, "unwritten_blocks", json_object_new_int64((int64_t)fi->unwritten));
	json_object_object_add(o, "extents", json_object_new_int64(fi->extents));
	json_object_object_add(o, "inline", json_object_new_boolean(
				       S_ISREG(in->mode) && (in->iflags & VMFS_IF_INLINE)));
	json_object_object_add(o, "pages", json_object_new_int64(fi->pages));
	json_object_object_add(o, "block_size", json_object_new_int64(bs));
	json_object_object_add(o, "nlink", json_object_new_int64(in->nlink));
	json_object_object_add(o, "generation", json_object_new_int64((int64_t)in->igen));

	json_object_object_add(lk, "taken_by_fs", json_object_new_boolean(true));
	json_object_object_add(lk, "mode", json_object_new_string(open_mode(fi)));
	json_object_object_add(lk, "lockspace", json_object_new_string(fi->lockspace));
	json_object_object_add(lk, "resource", json_object_new_string(fi->resource));
	json_object_object_add(lk, "daemon_reachable", json_object_new_boolean(fi->daemon_ok));
	json_object_object_add(lk, "error", fi->daemon_ok ? NULL :
			       json_object_new_string(fi->daemon_err));
	json_object_object_add(lk, "epoch", fi->holders ? json_object_new_int64(fi->res_epoch) : NULL);
	json_object_object_add(lk, "holders", fi->daemon_ok ? (fi->holders ?
			       json_object_get(fi->holders) : json_object_new_array()) : NULL);
	json_object_object_add(o, "lock", lk);
	vmfsctl_print_json(o);
	json_object_put(o);
}

static void print_holder(struct json_object *l)
{
	const char *tag = vj_str(l, "tag", "");

	printf("             %-10s %-3s  %s  pid %" PRId64 "  %s", vj_str(l, "queue", "?"),
	       vj_str(l, "mode", vj_str(l, "rqmode", "?")), vj_str(l, "host", "?"),
	       vj_int(l, "pid", 0), vj_str(l, "program", "?"));
	if (*tag)
		printf("  tag=%s", tag);
	if (vj_int(l, "epoch", 0))
		printf("  epoch %" PRId64, vj_int(l, "epoch", 0));
	printf("  lkid %" PRId64 "\n", vj_int(l, "lkid", 0));
}

static void print_human(const char *path, const struct fsvol *fv, const struct fileinfo *fi)
{
	const struct vmfs_inode *in = fi->in;
	uint32_t bs = fv->v->sb.block_size;
	uint64_t alloc = fi->written + fi->unwritten;
	size_t n = fi->holders ? json_object_array_length(fi->holders) : 0;

	printf("file:        %s\n", path);
	printf("volume:      \"%s\" %s on %s, mounted on %s\n", fv->v->sb.label, fi->lockspace,
	       fv->device, fv->mountpoint);
	printf("inode:       %" PRIu64 " (%s, generation %" PRIu64 ")\n", fi->ino,
	       type_name(in->mode), in->igen);
	printf("size:        %" PRIu64 " bytes\n", in->size);
	if (!S_ISREG(in->mode))
		printf("allocated:   0 bytes (not a regular file: no data blocks)\n");
	else if (in->iflags & VMFS_IF_INLINE)
		printf("allocated:   0 bytes (data inline in the inode)\n");
	else if (in->iflags & VMFS_IF_PAGES)
		printf("allocated:   %u bytes (a small file: %u pages of 4 KiB)\n",
		       fi->pages * VMFS_MBLK, fi->pages);
	else
		printf("allocated:   %" PRIu64 " bytes (%" PRIu64 " blocks: %" PRIu64 " written, %"
		       PRIu64 " unwritten; %u extents)\n", alloc * bs, alloc, fi->written,
		       fi->unwritten, fi->extents);
	printf("block size:  %u bytes\n", bs);
	printf("links:       %u\n", in->nlink);
	printf("open lock:   %s\n", open_mode(fi));
	printf("             lockspace %s, resource %s\n", fi->lockspace, fi->resource);
	if (!fi->daemon_ok)
		printf("holders:     unknown (%s)\n", fi->daemon_err);
	else if (!n)
		printf("holders:     none\n");
	else
		printf("holders:     %zu (resource epoch %" PRId64 ")\n", n, fi->res_epoch);
	for (size_t i = 0; i < n; i++)
		print_holder(json_object_array_get_idx(fi->holders, i));
}

int cmd_fileinfo(int argc, char **argv)
{
	struct fileinfo fi = { 0 };
	struct fsvol fv = { 0 };
	const char *path;
	struct stat st;
	const char *arg = NULL;
	bool json = false;
	int rc, ret;

	ret = vmfsctl_one_arg_json(argc, argv, "fileinfo", &arg, &json);
	if (ret >= 0)
		return ret;
	path = arg;
	ret = fsvol_open(path, true, &fv);
	if (ret)
		goto out;
	/* st_ino is the inode number on disk, except the root's */
	if (stat(path, &st) < 0) {
		vmfsctl_err("%s: %s", path, strerror(errno));
		ret = VMFSCTL_EXIT_FAIL;
		goto out;
	}
	fi.ino = st.st_ino == FUSE_ROOT_INO ? fv.v->sb.root_ino : (uint64_t)st.st_ino;
	fi.in = malloc(sizeof(*fi.in));
	if (!fi.in) {
		vmfsctl_err("out of memory");
		ret = VMFSCTL_EXIT_FAIL;
		goto out;
	}
	flush_mount(fv.mountpoint);
	rc = read_inode(fv.v, &fi);
	if (rc) {
		vmfsctl_err("%s: cannot read inode %" PRIu64 " (byte offset %" PRIu64 ") on %s: %s",
			    path, fi.ino, fi.ino * VMFS_MBLK, fv.device, vmfs_strerror(rc));
		ret = VMFSCTL_EXIT_FAIL;
		goto out;
	}
	if (fi.in->size != (uint64_t)st.st_size)
		vmfsctl_err("note: %s: the mount reports %lld bytes, the disk %" PRIu64
			    " (a change not yet committed)", path, (long long)st.st_size, fi.in->size);
	fsvol_uuid_str(fv.v->sb.uuid, fi.lockspace);
	snprintf(fi.resource, sizeof(fi.resource), "i%" PRIu64, fi.ino);
	query_locks(&fi);
	if (json)
		print_json(path, &fv, &fi);
	else
		print_human(path, &fv, &fi);
out:
	json_object_put(fi.holders);
	free(fi.in);
	fsvol_close(&fv);
	return ret;
}
