/* mountinfo.h — finding a vmfs mount in /proc/self/mountinfo (this
 * process's mount namespace): from a file's device number to its volume, or
 * from a volume to where it is mounted. */
#ifndef VMFS_LIB_MOUNTINFO_H
#define VMFS_LIB_MOUNTINFO_H

#include <stdbool.h>
#include <sys/types.h>

/* The type vmfs-mount's FUSE mounts show in mountinfo. */
#define VMFS_FSTYPE "fuse.vmfs"

/* Look through the vmfs mounts for the one with device number dev (by_dev)
 * or with source src (the volume's device or image path).  On a match its
 * source and mount point, unescaped, are malloc'ed into *src_out and
 * *mp_out (either may be NULL when not wanted).  1 found, 0 not, -errno. */
int vmfs_mountinfo_find(bool by_dev, dev_t dev, const char *src, char **src_out, char **mp_out)
	__attribute__((warn_unused_result));

#endif
