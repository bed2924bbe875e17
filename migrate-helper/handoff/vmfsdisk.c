/* vmfsdisk.c — from a file on a vmfs mount to its open lock (vmfsdisk.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mountinfo.h"
#include "ondisk.h"
#include "vmfsdisk.h"

int vmfsdisk_is_path(const char *arg)
{
	return strchr(arg, '/') != NULL;
}

/* The source (device) of the vmfs mount with device number dev: 1 found,
 * 0 not a vmfs mount, -errno. */
static int mount_source(dev_t dev, char *src, size_t len)
{
	char *s = NULL;
	int rc = vmfs_mountinfo_find(true, dev, NULL, &s, NULL);

	if (rc == 1)
		snprintf(src, len, "%s", s);
	free(s);
	return rc;
}

/* The volume UUID from the superblock at byte 0 of the device.  It never
 * changes once made, so a plain (cached) read is good enough. */
static int volume_uuid(const char *dev, char out[VMFS_UUID_STR_LEN], char *why, size_t len)
{
	void *blk = NULL;
	struct vmfs_sb sb;
	int fd, rc;
	ssize_t got;

	fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, len, "cannot open the volume %s: %s", dev, strerror(errno));
		return rc;
	}
	if (posix_memalign(&blk, 4096, VMFS_MBLK)) {
		close(fd);
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	got = pread(fd, blk, VMFS_MBLK, 0);
	rc = got < 0 ? -errno : 0;
	close(fd);
	if (got != (ssize_t)VMFS_MBLK) {
		snprintf(why, len, "cannot read the superblock of %s: %s", dev,
			 got < 0 ? strerror(-rc) : "short read");
		free(blk);
		return rc ? rc : -EIO;
	}
	rc = vmfs_sb_decode(blk, 0, NULL, &sb);
	free(blk);
	if (rc) {
		snprintf(why, len, "%s: no valid vmfs superblock at byte 0 (%s)", dev,
			 vmfs_strerror(rc));
		return -EIO;
	}
	vmfs_uuid_str(sb.uuid, out);
	return 0;
}

int vmfsdisk_resolve(const char *path, struct vmfsdisk *out, char *why, size_t len)
{
	char src[PATH_MAX], uuid[VMFS_UUID_STR_LEN];
	struct stat st;
	int rc;

	memset(out, 0, sizeof(*out));
	if (strlen(path) >= sizeof(out->path)) {
		snprintf(why, len, "%.64s...: path too long", path);
		return -ENAMETOOLONG;
	}
	snprintf(out->path, sizeof(out->path), "%s", path);
	if (stat(path, &st) < 0) {
		rc = -errno;
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, len, "%s: not a regular file (a VM disk on vmfs is a file)", path);
		return -EINVAL;
	}
	rc = mount_source(st.st_dev, src, sizeof(src));
	if (rc < 0) {
		snprintf(why, len, "cannot read /proc/self/mountinfo: %s", strerror(-rc));
		return rc;
	}
	if (rc == 0) {
		snprintf(why, len, "%s: not on a vmfs mount (a disk is a vmfs file path or a "
			 "lock name without '/')", path);
		return -EINVAL;
	}
	rc = volume_uuid(src, uuid, why, len);
	if (rc)
		return rc;
	snprintf(out->ls, sizeof(out->ls), "%s", uuid);
	/* st_ino is the inode number on disk for every file but the root
	 * (fs/fuse_ops.c to_fuse), so it names the open lock directly. */
	out->ino = (uint64_t)st.st_ino;
	snprintf(out->res, sizeof(out->res), "i%" PRIu64, out->ino);
	return 0;
}
