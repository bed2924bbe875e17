/* vmfs/fs.h — requests a program can make of a file on a vmfs mount.
 *
 * VMFS_IOC_DRAIN: ioctl(fd, VMFS_IOC_DRAIN) returns once every write to
 * the file that vmfs-mount answered has reached the disk, where other
 * hosts see it.  vmfs-mount answers a large write (an overwrite, or one
 * filling new blocks) of a file open for exclusive write when its disk
 * write is submitted, not completed
 * (vmfs-mount(8), "Writes in flight"); fsync and close wait for those
 * writes too, but a hypervisor that hands a disk's lock to another host
 * (live migration) drains first, and this costs no cache flush.  0, or -1
 * with errno: EIO (a write in flight failed; reported once), ENOTTY (not
 * a file on vmfs: nothing to drain). */
#ifndef VMFS_FS_H
#define VMFS_FS_H

#include <sys/ioctl.h>

#define VMFS_IOC_DRAIN _IO('v', 0x01)

#endif
