/* vmfsdisk.h — a VM disk given as the path of a file on a vmfs mount.
 *
 * vmfs-mount holds one open lock per open file (fs/openlock.h): lockspace =
 * the volume UUID, resource "i<ino>".  A migration names such a disk by its
 * path; this finds the lock behind it, so the handoff can look the holder up
 * in the lock table.  The claim itself is made through the mount (setxattr
 * "trusted.vmfs.incoming"), never by us: the mount owns the file's lock.
 */
#ifndef VMFS_MIGRATE_VMFSDISK_H
#define VMFS_MIGRATE_VMFSDISK_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "vmfs/dlm.h"

#define VMFSDISK_XATTR_INCOMING "trusted.vmfs.incoming"	/* as fs/fuse_ops.h */

struct vmfsdisk {
	char path[PATH_MAX];
	char ls[VMFS_DLM_NAME_MAX + 1];		/* the volume UUID, lowercase */
	char res[VMFS_DLM_NAME_MAX + 1];	/* "i<ino>" */
	uint64_t ino;
};

/* A disk argument is a path when it contains a '/' (lock-manager resource
 * names of the old form never do). */
int vmfsdisk_is_path(const char *arg);

/* Resolve path (a regular file on a vmfs mount).  0, or a negative errno
 * with `why` saying what is wrong (not on a vmfs mount, not a regular
 * file, volume unreadable...). */
int vmfsdisk_resolve(const char *path, struct vmfsdisk *out, char *why, size_t why_len)
	__attribute__((warn_unused_result));

#endif
