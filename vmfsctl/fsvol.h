/* fsvol.h — the vmfs volume behind a vmfsctl argument (volume, hosts,
 * fileinfo).
 *
 * An argument is a vmfs mount point, any path on a vmfs mount, or a device
 * (block device or image file).  A mount is traced to its device through
 * /proc/self/mountinfo: vmfs-mount records the device's absolute path as
 * the mount's source (FUSE fsname).  The device is then opened read-only
 * with the fs library (fs/vol.h), O_DIRECT where the file system under an
 * image supports it, so a heartbeat written by another host is never read
 * from a stale page cache.  Nothing here parses on-disk bytes: every record
 * is decoded by fs/ondisk.c through fs/vol.c, fs/slot.c and fs/journal.c.
 */
#ifndef VMFSCTL_FSVOL_H
#define VMFSCTL_FSVOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vol.h"

struct fsvol {
	char *device;		/* the disk, as the mount or the user named it */
	char *mountpoint;	/* where it is mounted in this namespace, or NULL */
	struct vol *v;		/* open read-only; never written */
	bool direct;		/* reads bypass the page cache (O_DIRECT) */
	bool log_on;		/* the fs library's logging is set up */
};

/* Resolve arg and open its volume; with mount_only, arg must be a path on
 * a vmfs mount.  On failure prints why (naming arg or the device, and what
 * to do) and returns the exit status to use; 0 on success. */
int fsvol_open(const char *arg, bool mount_only, struct fsvol *fv)
	__attribute__((warn_unused_result));
void fsvol_close(struct fsvol *fv);

/* The volume UUID as text: canonical lowercase 8-4-4-4-12.  This is also
 * the name of the volume's lockspace in vmfs-dlmd (see vmfsctl(8)). */
#define FSVOL_UUID_STR_LEN 37
void fsvol_uuid_str(const uint8_t uuid[16], char out[FSVOL_UUID_STR_LEN]);

/* "512.0 MiB" style; buf of at least 32 bytes. */
void fsvol_fmt_bytes(uint64_t bytes, char *buf, size_t len);

#endif
