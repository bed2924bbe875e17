/* check.h — the consistency checker behind vmfs-fsck. */
#ifndef VMFS_FS_CHECK_H
#define VMFS_FS_CHECK_H

#include <stdbool.h>

struct check_opts {
	bool repair;	/* -y: fix what can be fixed */
	bool verbose;	/* -v */
	bool force;	/* repair even while a heartbeat advances */
	bool progress;	/* phase messages on a terminal */
};

/* e2fsck exit codes. */
enum {
	CHECK_CLEAN = 0,
	CHECK_CORRECTED = 1,
	CHECK_UNCORRECTED = 4,
	CHECK_OPERROR = 8,
};

/* Check (and with repair, fix) the volume on dev.  Returns an exit code. */
int vmfs_check(const char *dev, const struct check_opts *o);

#endif
