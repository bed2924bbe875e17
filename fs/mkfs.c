/* mkfs.c — vmfs-mkfs: create a vmfs volume on a block device or file. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "log.h"
#include "ondisk.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vmfs-mkfs [--label L] [--max-hosts N] [--block-size S] [--journal-size S]\n"
		"                 [--force] DEVICE\n"
		"\n"
		"Create a vmfs volume on DEVICE (a block device or a regular file).\n"
		"  -L, --label L          volume label (up to 63 bytes)\n"
		"  -H, --max-hosts N      host slots, 1..64 (default 8)\n"
		"  -b, --block-size S     data block size, power of two 64K..64M (default 1M)\n"
		"  -j, --journal-size S   journal per host, 1M..1G (default 16M)\n"
		"  -f, --force            overwrite an existing vmfs or other signature\n"
		"  -q, --quiet            no progress output\n"
		"  -h, --help             this text\n"
		"  -V, --version          version and format\n"
		"Sizes take K, M, G suffixes (powers of 1024).\n");
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "label", required_argument, NULL, 'L' },
		{ "max-hosts", required_argument, NULL, 'H' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "journal-size", required_argument, NULL, 'j' },
		{ "force", no_argument, NULL, 'f' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct vmfs_log_opts lo = { .ident = "vmfs-mkfs", .to_stderr = true, .priority = LOG_WARNING };
	struct format_opts o;
	bool force = false, quiet = false;
	char msg[512] = "", what[128];
	const char *dev;
	uint64_t n;
	int c, rc;

	format_defaults(&o);
	while ((c = getopt_long(argc, argv, "L:H:b:j:fqhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'L':
			o.label = optarg;
			break;
		case 'H':
			if (parse_size(optarg, &n) || n > 1000) {
				fprintf(stderr, "vmfs-mkfs: bad --max-hosts '%s'\n", optarg);
				return 2;
			}
			o.max_hosts = (uint32_t)n;
			break;
		case 'b':
			if (parse_size(optarg, &n) || n > UINT32_MAX) {
				fprintf(stderr, "vmfs-mkfs: bad --block-size '%s'\n", optarg);
				return 2;
			}
			o.block_size = (uint32_t)n;
			break;
		case 'j':
			if (parse_size(optarg, &n)) {
				fprintf(stderr, "vmfs-mkfs: bad --journal-size '%s'\n", optarg);
				return 2;
			}
			o.journal_bytes = n;
			break;
		case 'f':
			force = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("vmfs-mkfs %s (on-disk format %d.%d)\n", PACKAGE_VERSION,
			       VMFS_VERSION_MAJOR, VMFS_VERSION_MINOR);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	dev = argv[optind];
	vmfs_log_init(&lo);
	rc = format_check_opts(&o, msg, sizeof(msg));
	if (rc) {
		fprintf(stderr, "vmfs-mkfs: %s\n", msg);
		return 2;
	}
	rc = format_detect(dev, what, sizeof(what));
	if (rc < 0) {
		fprintf(stderr, "vmfs-mkfs: %s: %s\n", dev, strerror(-rc));
		return 1;
	}
	if (rc > 0 && !force) {
		fprintf(stderr, "vmfs-mkfs: %s contains %s; use --force to overwrite it\n", dev, what);
		return 1;
	}
	o.progress = !quiet && isatty(STDERR_FILENO);
	rc = format_volume(dev, &o, msg, sizeof(msg));
	if (rc) {
		fprintf(stderr, "vmfs-mkfs: %s: %s\n", dev, msg);
		return 1;
	}
	if (!quiet)
		printf("vmfs-mkfs: created vmfs volume \"%s\" on %s (block size %u, %u host slots)\n",
		       o.label ? o.label : "", dev, o.block_size, o.max_hosts);
	vmfs_log_fini();
	return 0;
}
