/* format.c — lay out and write a new vmfs volume. */
#include "config.h"
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "dir.h"
#include "inode.h"
#include "io.h"
#include "vol.h"

void format_defaults(struct format_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->label = "";
	o->max_hosts = 8;
	o->block_size = VMFS_DEF_BLOCK_SIZE;
	o->journal_bytes = 16ull << 20;
	o->hb_period_ms = 1000;
}

int format_check_opts(const struct format_opts *o, char *msg, size_t msglen)
{
	uint32_t bs = o->block_size;

	if (bs < VMFS_MIN_BLOCK_SIZE || bs > VMFS_MAX_BLOCK_SIZE || (bs & (bs - 1))) {
		snprintf(msg, msglen, "block size must be a power of two from 64K to 64M");
		return -EINVAL;
	}
	if (o->max_hosts < 1 || o->max_hosts > VMFS_MAX_HOSTS) {
		snprintf(msg, msglen, "max hosts must be 1..%d", VMFS_MAX_HOSTS);
		return -EINVAL;
	}
	if (o->journal_bytes < (1u << 20) || o->journal_bytes > (1ull << 30) ||
	    o->journal_bytes % VMFS_MBLK) {
		snprintf(msg, msglen, "journal size must be a multiple of 4K from 1M to 1G");
		return -EINVAL;
	}
	if (o->label && strlen(o->label) >= VMFS_LABEL_LEN) {
		snprintf(msg, msglen, "label longer than %d bytes", VMFS_LABEL_LEN - 1);
		return -EINVAL;
	}
	if (o->hb_period_ms < 100 || o->hb_period_ms > 60000) {
		snprintf(msg, msglen, "heartbeat period must be 100..60000 ms");
		return -EINVAL;
	}
	return 0;
}

struct layout {
	uint64_t total, nblocks, rg_start, backup;
	uint32_t jblocks, stride, rg_blocks, nrgs;
};

/* Compute the layout for a device of dev bytes; -ENOSPC if too small. */
static int layout(const struct format_opts *o, uint64_t dev, struct layout *l)
{
	uint64_t bs = o->block_size, slots_end, n, last;

	memset(l, 0, sizeof(*l));
	l->total = (dev < VMFS_MAX_VOLUME ? dev : VMFS_MAX_VOLUME) & ~(uint64_t)(VMFS_MBLK - 1);
	if (l->total < 1u << 20)
		return -ENOSPC;
	l->backup = l->total / VMFS_MBLK - 1;
	l->nblocks = l->backup * VMFS_MBLK / bs;
	l->jblocks = (uint32_t)(o->journal_bytes / VMFS_MBLK);
	l->stride = l->jblocks + VMFS_SLOT_LOG;
	slots_end = (VMFS_SLOTS_ADDR + (uint64_t)o->max_hosts * l->stride) * VMFS_MBLK;
	l->rg_start = (slots_end + bs - 1) / bs;
	/* at least: one RG header block plus 3 data blocks */
	if (l->nblocks < l->rg_start + 4)
		return -ENOSPC;
	n = l->nblocks - l->rg_start;
	/* Enough groups for every host to prefer its own, each >= 16 blocks. */
	l->rg_blocks = (uint32_t)((n + 2 * o->max_hosts - 1) / (2 * o->max_hosts));
	if (l->rg_blocks < 16)
		l->rg_blocks = 16;
	if (l->rg_blocks > VMFS_RG_MAX_BLOCKS)
		l->rg_blocks = VMFS_RG_MAX_BLOCKS;
	l->nrgs = (uint32_t)((n + l->rg_blocks - 1) / l->rg_blocks);
	last = n - (uint64_t)(l->nrgs - 1) * l->rg_blocks;
	if (last < 2) {	/* a sliver too small for a group: leave it unused */
		l->nrgs--;
		l->nblocks -= last;
	}
	return 0;
}

uint64_t format_min_size(const struct format_opts *o)
{
	uint64_t bs = o->block_size, slots_end;
	uint64_t jb = o->journal_bytes / VMFS_MBLK;

	slots_end = (VMFS_SLOTS_ADDR + (uint64_t)o->max_hosts * (jb + VMFS_SLOT_LOG)) * VMFS_MBLK;
	return ((slots_end + bs - 1) / bs + 4) * bs + VMFS_MBLK;
}

int format_detect(const char *path, char *what, size_t len)
{
	size_t n = 72 * 1024;
	uint8_t *b = calloc(1, n);
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	ssize_t got;

	if (!b || fd < 0) {
		rc = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	got = pread(fd, b, n, 0);
	if (got < 0) {
		rc = -errno;
		goto out;
	}
	/* a short device reads as zeros past its end: no false positives */
	if (get_le32(b) == VMFS_MAGIC && get_le16(b + 4) == VMFS_T_SB)
		snprintf(what, len, "a vmfs volume (label \"%.63s\")", (char *)b + 112), rc = 1;
	else if (get_le16(b + 1024 + 56) == 0xEF53)
		snprintf(what, len, "an ext2/ext3/ext4 filesystem"), rc = 1;
	else if (!memcmp(b, "XFSB", 4))
		snprintf(what, len, "an XFS filesystem"), rc = 1;
	else if (!memcmp(b + 65536 + 64, "_BHRfS_M", 8))
		snprintf(what, len, "a btrfs filesystem"), rc = 1;
	else if (!memcmp(b + 4096 - 10, "SWAPSPACE2", 10) || !memcmp(b + 4096 - 10, "SWAP-SPACE", 10))
		snprintf(what, len, "a swap area"), rc = 1;
	else if (!memcmp(b, "LUKS\xba\xbe", 6))
		snprintf(what, len, "a LUKS encrypted volume"), rc = 1;
	else if (!memcmp(b + 512, "EFI PART", 8))
		snprintf(what, len, "a GPT partition table"), rc = 1;
	else if (!memcmp(b + 32769, "CD001", 5))
		snprintf(what, len, "an ISO9660 filesystem"), rc = 1;
	else if (b[510] == 0x55 && b[511] == 0xAA)
		snprintf(what, len, "an MBR partition table or boot sector"), rc = 1;
out:
	if (fd >= 0)
		close(fd);
	free(b);
	return rc;
}

static int put_block(int fd, uint64_t addr, const void *blk)
{
	return pwrite_full(fd, blk, VMFS_MBLK, (off_t)(addr * VMFS_MBLK));
}

static void gen_uuid(uint8_t u[16])
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read_full(fd, u, 16)) {
		uint64_t t = now_ns();

		for (int i = 0; i < 16; i++)
			u[i] = (uint8_t)(t >> (8 * (i % 8))) ^ (uint8_t)(i * 37);
	}
	if (fd >= 0)
		close(fd);
	u[6] = (u[6] & 0x0f) | 0x40;	/* version 4 */
	u[8] = (u[8] & 0x3f) | 0x80;
}

static int write_static(int fd, const struct format_opts *o, const struct layout *l,
			struct vmfs_sb *sb, char *msg, size_t msglen)
{
	uint8_t *blk = calloc(1, VMFS_MBLK);
	uint32_t mpb = o->block_size / VMFS_MBLK;
	int rc = -ENOMEM;

	if (!blk)
		goto out;
	/* wipe the first 64 KiB: old signatures must not survive */
	for (uint64_t a = 0; a < VMFS_SLOTS_ADDR; a++) {
		rc = put_block(fd, a, blk);
		if (rc)
			goto out;
	}
	for (uint32_t s = 0; s < o->max_hosts; s++) {
		uint64_t base = VMFS_SLOTS_ADDR + (uint64_t)s * l->stride;
		struct vmfs_hb hb;
		struct vmfs_orphan *orph = calloc(1, sizeof(*orph));
		struct vmfs_jhdr jh;

		if (!orph) {
			rc = -ENOMEM;
			goto out;
		}
		memset(&hb, 0, sizeof(hb));
		vmfs_hdr_init(&hb.h, VMFS_T_HB, base + VMFS_SLOT_HB, sb->uuid);
		hb.slot = s;
		hb.period_ms = o->hb_period_ms;
		vmfs_hb_encode(&hb, blk);
		rc = put_block(fd, base + VMFS_SLOT_HB, blk);
		vmfs_hdr_init(&orph->h, VMFS_T_ORPHAN, base + VMFS_SLOT_ORPHAN, sb->uuid);
		vmfs_orphan_encode(orph, blk);
		free(orph);
		if (!rc)
			rc = put_block(fd, base + VMFS_SLOT_ORPHAN, blk);
		memset(&jh, 0, sizeof(jh));
		vmfs_hdr_init(&jh.h, VMFS_T_JHDR, base + VMFS_SLOT_JHDR, sb->uuid);
		jh.log_blocks = l->jblocks;
		jh.slot = s;
		vmfs_jhdr_encode(&jh, blk);
		if (!rc)
			rc = put_block(fd, base + VMFS_SLOT_JHDR, blk);
		memset(blk, 0, VMFS_MBLK);
		if (!rc)
			rc = put_block(fd, base + VMFS_SLOT_LOG, blk);
		if (rc)
			goto out;
	}
	for (uint32_t i = 0; i < l->nrgs; i++) {
		uint64_t first = l->rg_start + (uint64_t)i * l->rg_blocks;
		uint32_t nb = (uint32_t)(l->nblocks - first < l->rg_blocks ? l->nblocks - first : l->rg_blocks);
		struct vmfs_rg *rg = calloc(1, sizeof(*rg));
		struct vmfs_chunk *c = calloc(1, sizeof(*c));

		if (!rg || !c) {
			free(rg);
			free(c);
			rc = -ENOMEM;
			goto out;
		}
		vmfs_hdr_init(&c->h, VMFS_T_CHUNK, first * mpb, sb->uuid);
		c->block = first;
		c->nslots = mpb;
		c->rg = i;
		c->bitmap[0] = 0x3;	/* chunk header + RG header */
		c->free_slots = mpb - 2;
		vmfs_chunk_encode(c, blk);
		rc = put_block(fd, first * mpb, blk);
		vmfs_hdr_init(&rg->h, VMFS_T_RG, first * mpb + 1, sb->uuid);
		rg->index = i;
		rg->nblocks = nb;
		rg->first_block = first;
		vmfs_rg_set(rg, 0, VMFS_B_META);
		rg->free_blocks = nb - 1;
		vmfs_rg_encode(rg, blk);
		if (!rc)
			rc = put_block(fd, first * mpb + 1, blk);
		free(rg);
		free(c);
		if (rc)
			goto out;
		if (o->progress && (i % 64 == 0 || i + 1 == l->nrgs))
			fprintf(stderr, "\rwriting resource groups: %u/%u", i + 1, l->nrgs);
	}
	if (o->progress)
		fputc('\n', stderr);
	rc = 0;
out:
	if (rc)
		snprintf(msg, msglen, "write failed: %s", strerror(-rc));
	free(blk);
	return rc;
}

static int write_sb(int fd, struct vmfs_sb *sb)
{
	uint8_t blk[VMFS_MBLK];
	int rc;

	sb->h.self = VMFS_SB_ADDR;
	vmfs_sb_encode(sb, blk);
	rc = put_block(fd, VMFS_SB_ADDR, blk);
	if (rc)
		return rc;
	sb->h.self = sb->backup_addr;
	vmfs_sb_encode(sb, blk);
	rc = put_block(fd, sb->backup_addr, blk);
	sb->h.self = VMFS_SB_ADDR;
	if (!rc && fdatasync(fd) < 0)
		rc = -errno;
	return rc;
}

/* Root directory and lost+found, through the normal inode/dir code. */
static int make_tree(const char *path, struct vmfs_sb *sb, int fd, char *msg, size_t msglen)
{
	struct vmfs_inode *root = malloc(sizeof(*root)), *lf = malloc(sizeof(*lf));
	struct vol *v = NULL;
	int rc;

	if (!root || !lf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = vol_open(path, VOL_OFFLINE, false, &v, NULL);
	if (!rc)
		rc = alloc_init(v);
	if (!rc)
		rc = inode_alloc(v, S_IFDIR | 0755, 0, 0, 0, root);
	if (!rc) {
		root->parent = root->h.self;
		rc = inode_alloc(v, S_IFDIR | 0700, 0, 0, root->h.self, lf);
	}
	if (!rc)
		rc = dir_add(v, root, "lost+found", lf->h.self, 4 /* DT_DIR */);
	if (!rc) {
		root->nlink = 3;
		rc = vol_inode_put(v, root);
	}
	if (!rc)
		rc = vol_commit(v);
	if (rc) {
		snprintf(msg, msglen, "creating the root directory failed: %s", vmfs_strerror(rc));
		goto out;
	}
	sb->root_ino = root->h.self;
	sb->lostfound_ino = lf->h.self;
	rc = write_sb(fd, sb);
	if (rc)
		snprintf(msg, msglen, "writing the superblock failed: %s", strerror(-rc));
out:
	vol_close(v);
	free(root);
	free(lf);
	return rc;
}

int format_volume(const char *path, const struct format_opts *o, char *msg, size_t msglen)
{
	struct vmfs_sb sb;
	struct layout l;
	struct stat st;
	uint64_t dev;
	int fd, rc;

	rc = format_check_opts(o, msg, msglen);
	if (rc)
		return rc;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(msg, msglen, "cannot open: %s", strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		if (end < 0) {
			rc = -errno;
			goto out;
		}
		dev = (uint64_t)end;
	} else if (S_ISREG(st.st_mode)) {
		dev = (uint64_t)st.st_size;
	} else {
		rc = -ENODEV;
		snprintf(msg, msglen, "not a block device or regular file");
		goto out;
	}
	rc = layout(o, dev, &l);
	if (rc) {
		snprintf(msg, msglen, "device too small: %llu bytes; these options need at least "
			 "%llu bytes (%llu MiB)", (unsigned long long)dev,
			 (unsigned long long)format_min_size(o),
			 (unsigned long long)((format_min_size(o) + (1 << 20) - 1) >> 20));
		goto out;
	}
	memset(&sb, 0, sizeof(sb));
	gen_uuid(sb.uuid);
	vmfs_hdr_init(&sb.h, VMFS_T_SB, VMFS_SB_ADDR, sb.uuid);
	sb.major = VMFS_VERSION_MAJOR;
	sb.minor = VMFS_VERSION_MINOR;
	sb.feature_incompat = VMFS_FEATURE_INCOMPAT_PAGES;
	sb.block_size = o->block_size;
	if (o->label)
		strncpy(sb.label, o->label, sizeof(sb.label) - 1);
	sb.total_bytes = l.total;
	sb.nblocks = l.nblocks;
	sb.max_hosts = o->max_hosts;
	sb.journal_blocks = l.jblocks;
	sb.slots_start = VMFS_SLOTS_ADDR;
	sb.slot_stride = l.stride;
	sb.rg_blocks = l.rg_blocks;
	sb.rg_start = l.rg_start;
	sb.nrgs = l.nrgs;
	sb.hb_period_ms = o->hb_period_ms;
	sb.mkfs_time_ns = now_ns();
	sb.backup_addr = l.backup;
	/* placeholder until the root exists; the superblock is rewritten */
	sb.root_ino = l.rg_start * (o->block_size / VMFS_MBLK) + 2;
	rc = write_static(fd, o, &l, &sb, msg, msglen);
	if (!rc)
		rc = write_sb(fd, &sb);
	if (!rc)
		rc = make_tree(path, &sb, fd, msg, msglen);
out:
	if (rc && !msg[0])
		snprintf(msg, msglen, "%s", vmfs_strerror(rc));
	close(fd);
	return rc;
}
