/* fsvol.c — find and open the vmfs volume behind a vmfsctl argument. */
#include "config.h"
#include "fsvol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "mountinfo.h"
#include "vmfsctl.h"

/* Library messages (vol_report_bad and friends) would repeat what the
 * commands print in their own words; keep only the critical ones. */
static void quiet_log(void)
{
	struct vmfs_log_opts lo = { .ident = "vmfsctl", .to_stderr = true,
				    .priority = LOG_CRIT };

	vmfs_log_init(&lo);
}

static int report_open_error(const char *dev, int rc)
{
	switch (rc) {
	case VMFS_EBADMAGIC:
		vmfsctl_err("%s: not a vmfs volume (no vmfs superblock at byte offset 0); "
			    "give a vmfs device, image file or mount point", dev);
		break;
	case VMFS_EBADVERSION:
		vmfsctl_err("%s: vmfs format version not supported by this vmfsctl (it reads "
			    "format %d.x); use a matching vmfsctl", dev, VMFS_VERSION_MAJOR);
		break;
	default:
		if (rc < -2000)
			vmfsctl_err("%s: damaged vmfs superblock at byte offset 0: %s; check it with "
				    "vmfs-fsck", dev, vmfs_strerror(rc));
		else
			vmfsctl_err("%s: cannot open: %s", dev, strerror(-rc));
		break;
	}
	return VMFSCTL_EXIT_FAIL;
}

int fsvol_open(const char *arg, bool mount_only, struct fsvol *fv)
{
	struct stat st;
	char *real = NULL;
	int rc, ret = VMFSCTL_EXIT_FAIL;

	memset(fv, 0, sizeof(*fv));
	if (stat(arg, &st) < 0) {
		vmfsctl_err("%s: %s", arg, strerror(errno));
		return VMFSCTL_EXIT_FAIL;
	}
	rc = vmfs_mountinfo_find(true, st.st_dev, NULL, &fv->device, &fv->mountpoint);
	if (rc < 0) {
		vmfsctl_err("cannot read /proc/self/mountinfo: %s", strerror(-rc));
		goto out;
	}
	if (rc == 1 && fv->device[0] != '/') {
		vmfsctl_err("%s: on a vmfs mount whose source ('%s') does not name its device "
			    "(mounted by an older vmfs-mount); give the device instead", arg,
			    fv->device);
		goto out;
	}
	if (rc == 0 && mount_only) {
		vmfsctl_err("%s: not on a vmfs mount", arg);
		goto out;
	}
	if (rc == 0) {
		if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
			vmfsctl_err("%s: not a vmfs mount, block device or image file", arg);
			goto out;
		}
		/* A device: also say where it is mounted, if it is. */
		real = realpath(arg, NULL);
		rc = vmfs_mountinfo_find(false, 0, real ? real : arg, &fv->device, &fv->mountpoint);
		free(fv->device);
		fv->device = strdup(arg);
		if (!fv->device) {
			vmfsctl_err("out of memory");
			goto out;
		}
	}
	quiet_log();
	fv->log_on = true;
	/* O_DIRECT: another host's heartbeat must not come from our cache.  A
	 * file system that refuses O_DIRECT (tmpfs) holds a local image that
	 * only this host writes, so the page cache is coherent there. */
	rc = vol_open(fv->device, VOL_MOUNT, true, &fv->v, NULL);
	fv->direct = rc == 0;
	if (rc == -EINVAL)
		rc = vol_open(fv->device, VOL_OFFLINE, true, &fv->v, NULL);
	if (rc) {
		ret = report_open_error(fv->device, rc);
		goto out;
	}
	ret = 0;
out:
	free(real);
	if (ret)
		fsvol_close(fv);
	return ret;
}

void fsvol_close(struct fsvol *fv)
{
	vol_close(fv->v);
	if (fv->log_on)
		vmfs_log_fini();
	free(fv->device);
	free(fv->mountpoint);
	memset(fv, 0, sizeof(*fv));
}

void fsvol_uuid_str(const uint8_t u[16], char out[FSVOL_UUID_STR_LEN])
{
	vmfs_uuid_str(u, out);
}

void fsvol_fmt_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double d = (double)bytes;
	unsigned i = 0;

	while (d >= 1024 && i + 1 < sizeof(unit) / sizeof(unit[0])) {
		d /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f %s", d, unit[i]);
}
