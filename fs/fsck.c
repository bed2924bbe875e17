/* fsck.c — vmfs-fsck: check and repair a vmfs volume. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "ondisk.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmfs-fsck [-n] [-y] [-v] [--force] DEVICE\n"
		"\n"
		"Check a vmfs volume; with -y repair it.\n"
		"  -n          check only, change nothing (the default)\n"
		"  -y          repair every problem found\n"
		"  -v          verbose\n"
		"  -f, --force repair even while a host's heartbeat is advancing\n"
		"  -h, --help  this text;  -V, --version\n"
		"Exit status: 0 clean, 1 errors corrected, 4 errors left uncorrected,\n"
		"8 operational error.\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct vmfs_log_opts lo = { .ident = "vmfs-fsck", .to_stderr = true, .priority = LOG_ERR };
	struct check_opts o = { 0 };
	bool no = false;
	int c, rc;

	while ((c = getopt_long(argc, argv, "nyvfhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'n': no = true; break;
		case 'y': o.repair = true; break;
		case 'v': o.verbose = true; break;
		case 'f': o.force = true; break;
		case 'h': usage(stdout); return 0;
		case 'V':
			printf("vmfs-fsck %s (on-disk format %d.%d)\n", PACKAGE_VERSION,
			       VMFS_VERSION_MAJOR, VMFS_VERSION_MINOR);
			return 0;
		default: usage(stderr); return 8;
		}
	}
	if (optind + 1 != argc || (no && o.repair)) {
		usage(stderr);
		return 8;
	}
	/* fsck prints its own findings; library messages only with -v */
	lo.priority = o.verbose ? LOG_WARNING : LOG_CRIT;
	vmfs_log_init(&lo);
	o.progress = isatty(STDERR_FILENO);
	/* Unbuffered reports: a crash (which must not happen) loses nothing. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	rc = vmfs_check(argv[optind], &o);
	vmfs_log_fini();
	return rc;
}
