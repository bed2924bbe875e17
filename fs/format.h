/* format.h — creating a volume (the core of vmfs-mkfs). */
#ifndef VMFS_FS_FORMAT_H
#define VMFS_FS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct format_opts {
	const char *label;
	uint32_t max_hosts;		/* 1..64, default 8 */
	uint32_t block_size;		/* power of two, 64 KiB..64 MiB, default 1 MiB */
	uint64_t journal_bytes;		/* per host, default 16 MiB, min 1 MiB */
	uint32_t hb_period_ms;		/* default 1000 */
	bool progress;			/* print progress on stderr */
};

void format_defaults(struct format_opts *o);
/* Validate options; fills a message on error. */
int format_check_opts(const struct format_opts *o, char *msg, size_t msglen)
	__attribute__((warn_unused_result));
/* Smallest device the options fit on. */
uint64_t format_min_size(const struct format_opts *o);
/* Describe a recognizable signature in the first bytes of path
 * (vmfs, ext2/3/4, xfs, btrfs, swap, LUKS, GPT, MBR, ISO9660); returns 1
 * with a description, 0 if none, or -errno. */
int format_detect(const char *path, char *what, size_t len) __attribute__((warn_unused_result));
/* Write a new volume.  Returns 0 or -errno / domain error; *msg explains. */
int format_volume(const char *path, const struct format_opts *o, char *msg, size_t msglen)
	__attribute__((warn_unused_result));

#endif
