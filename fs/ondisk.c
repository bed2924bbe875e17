/* ondisk.c — encode/decode of every vmfs on-disk record.
 *
 * The C structs in ondisk.h have exactly the on-disk layout (natural
 * alignment, explicit padding); the asserts below pin every offset that
 * man/vmfs.5 documents.  The codecs still move each field through
 * put_le*()/get_le*() at offsetof() so the format is little-endian on any
 * host.
 */
#include "config.h"
#include "ondisk.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "crc32c.h"

#define OFF(T, f, o) _Static_assert(offsetof(struct T, f) == (o), #T "." #f " offset")
#define SIZE(T, s) _Static_assert(sizeof(struct T) == (s), #T " size")

SIZE(vmfs_dhdr, 64);
OFF(vmfs_dhdr, magic, 0); OFF(vmfs_dhdr, type, 4); OFF(vmfs_dhdr, version, 6);
OFF(vmfs_dhdr, crc, 8); OFF(vmfs_dhdr, hflags, 12); OFF(vmfs_dhdr, generation, 16);
OFF(vmfs_dhdr, self, 24); OFF(vmfs_dhdr, uuid, 32); OFF(vmfs_dhdr, reserved, 48);

SIZE(vmfs_sb, 264);
OFF(vmfs_sb, major, 64); OFF(vmfs_sb, minor, 66); OFF(vmfs_sb, block_size, 68);
OFF(vmfs_sb, feature_compat, 72); OFF(vmfs_sb, feature_incompat, 80);
OFF(vmfs_sb, feature_ro_compat, 88); OFF(vmfs_sb, uuid, 96); OFF(vmfs_sb, label, 112);
OFF(vmfs_sb, total_bytes, 176); OFF(vmfs_sb, nblocks, 184); OFF(vmfs_sb, max_hosts, 192);
OFF(vmfs_sb, journal_blocks, 196); OFF(vmfs_sb, slots_start, 200);
OFF(vmfs_sb, slot_stride, 208); OFF(vmfs_sb, rg_blocks, 212); OFF(vmfs_sb, rg_start, 216);
OFF(vmfs_sb, nrgs, 224); OFF(vmfs_sb, hb_period_ms, 228); OFF(vmfs_sb, root_ino, 232);
OFF(vmfs_sb, lostfound_ino, 240); OFF(vmfs_sb, mkfs_time_ns, 248);
OFF(vmfs_sb, backup_addr, 256);

SIZE(vmfs_hb, 168);
OFF(vmfs_hb, slot, 64); OFF(vmfs_hb, state, 68); OFF(vmfs_hb, counter, 72);
OFF(vmfs_hb, wall_ms, 80); OFF(vmfs_hb, mount_id, 88); OFF(vmfs_hb, period_ms, 96);
OFF(vmfs_hb, pid, 100); OFF(vmfs_hb, host, 104);

SIZE(vmfs_orphan, 4072);
OFF(vmfs_orphan, count, 64); OFF(vmfs_orphan, ino, 72);

SIZE(vmfs_jhdr, 80);
OFF(vmfs_jhdr, checkpoint_seq, 64); OFF(vmfs_jhdr, log_blocks, 72); OFF(vmfs_jhdr, slot, 76);

SIZE(vmfs_jdesc, 4088);
OFF(vmfs_jdesc, seq, 64); OFF(vmfs_jdesc, nblocks, 72); OFF(vmfs_jdesc, ndesc, 76);
OFF(vmfs_jdesc, index, 80); OFF(vmfs_jdesc, count, 84); OFF(vmfs_jdesc, addr, 88);

SIZE(vmfs_jcommit, 96);
OFF(vmfs_jcommit, seq, 64); OFF(vmfs_jcommit, nblocks, 72); OFF(vmfs_jcommit, ndesc, 76);
OFF(vmfs_jcommit, data_crc, 80); OFF(vmfs_jcommit, commit_time_ns, 88);

SIZE(vmfs_rg, 4096);
OFF(vmfs_rg, index, 64); OFF(vmfs_rg, nblocks, 68); OFF(vmfs_rg, first_block, 72);
OFF(vmfs_rg, free_blocks, 80); OFF(vmfs_rg, bitmap, VMFS_RG_BITMAP_OFF);

SIZE(vmfs_chunk, 2176);
OFF(vmfs_chunk, block, 64); OFF(vmfs_chunk, nslots, 72); OFF(vmfs_chunk, free_slots, 76);
OFF(vmfs_chunk, rg, 80); OFF(vmfs_chunk, bitmap, VMFS_CHUNK_BITMAP_OFF);

SIZE(vmfs_inode, 4096);
OFF(vmfs_inode, mode, 64); OFF(vmfs_inode, uid, 68); OFF(vmfs_inode, gid, 72);
OFF(vmfs_inode, nlink, 76); OFF(vmfs_inode, size, 80); OFF(vmfs_inode, nblocks, 88);
OFF(vmfs_inode, atime_ns, 96); OFF(vmfs_inode, mtime_ns, 104); OFF(vmfs_inode, ctime_ns, 112);
OFF(vmfs_inode, btime_ns, 120); OFF(vmfs_inode, parent, 128); OFF(vmfs_inode, igen, 136);
OFF(vmfs_inode, iflags, 144); OFF(vmfs_inode, xattr_len, 148);
OFF(vmfs_inode, area, VMFS_INO_AREA_OFF); OFF(vmfs_inode, xattr, VMFS_INO_XATTR_OFF);

SIZE(vmfs_extent, VMFS_EXT_SIZE);
OFF(vmfs_extent, lblk, 0); OFF(vmfs_extent, pblk, 4); OFF(vmfs_extent, len, 8);
OFF(vmfs_extent, flags, 12);
SIZE(vmfs_xmap_hdr, 16);
OFF(vmfs_xmap_hdr, nextents, 0); OFF(vmfs_xmap_hdr, nxblk, 4);
_Static_assert(16 + VMFS_XMAP_NXBLK * 8 + VMFS_XMAP_INLINE * VMFS_EXT_SIZE <= VMFS_INO_AREA_SIZE,
	       "extent map fits the inode area");
_Static_assert(VMFS_XMAP_INLINE == 111, "inline extents as documented");
_Static_assert(VMFS_PAGES_OFF + 8 * VMFS_PAGES_MAX <= VMFS_INO_AREA_SIZE, "page map fits the area");

SIZE(vmfs_extblk, 4096);
OFF(vmfs_extblk, owner, 64); OFF(vmfs_extblk, index, 72); OFF(vmfs_extblk, count, 76);
OFF(vmfs_extblk, ext, VMFS_EXTBLK_OFF);
_Static_assert(VMFS_EXTBLK_MAX == 251, "extents per extent block as documented");

SIZE(vmfs_dirinfo, VMFS_INO_AREA_SIZE);
OFF(vmfs_dirinfo, level, 0); OFF(vmfs_dirinfo, split, 4); OFF(vmfs_dirinfo, nidx, 8);
OFF(vmfs_dirinfo, nentries, 16); OFF(vmfs_dirinfo, seed, 24); OFF(vmfs_dirinfo, idx, 32);
SIZE(vmfs_diridx, 4096);
OFF(vmfs_diridx, bucket, VMFS_DIRIDX_OFF);
SIZE(vmfs_dirbkt_hdr, 16);
_Static_assert(VMFS_DHDR_SIZE + sizeof(struct vmfs_dirbkt_hdr) == VMFS_DIRBKT_OFF,
	       "dir bucket entries start after the bucket header");
_Static_assert(VMFS_DENT_LEN(VMFS_NAME_MAX) == 272, "largest dir entry");
_Static_assert(VMFS_RG_MAX_BLOCKS == 15872, "blocks per resource group");

const char *vmfs_strerror(int err)
{
	switch (err) {
	case VMFS_EBADMAGIC: return "bad magic";
	case VMFS_EBADVERSION: return "unsupported version or feature";
	case VMFS_EBADCRC: return "checksum mismatch";
	case VMFS_EBADTYPE: return "unexpected record type";
	case VMFS_EBADSELF: return "record at the wrong address";
	case VMFS_EBADUUID: return "record of another volume";
	case VMFS_EBADFIELD: return "field out of range";
	default: return err < 0 ? strerror(-err) : "success";
	}
}

int vmfs_errno(int err)
{
	return err <= -2000 ? -EIO : err;
}

const char *vmfs_rtype_name(int type)
{
	static const char *const names[VMFS_T_MAX] = {
		[VMFS_T_SB] = "superblock", [VMFS_T_HB] = "heartbeat",
		[VMFS_T_ORPHAN] = "orphan list", [VMFS_T_JHDR] = "journal header",
		[VMFS_T_JDESC] = "journal descriptor", [VMFS_T_JCOMMIT] = "journal commit",
		[VMFS_T_RG] = "resource group", [VMFS_T_CHUNK] = "meta chunk",
		[VMFS_T_INODE] = "inode", [VMFS_T_EXTBLK] = "extent block",
		[VMFS_T_DIRIDX] = "directory index", [VMFS_T_DIRBKT] = "directory bucket",
	};
	if (type <= 0 || type >= VMFS_T_MAX || !names[type])
		return "block";
	return names[type];
}

/* ---- common header ---- */

static uint32_t block_crc(const void *blk)
{
	static const uint8_t zero[4];
	const uint8_t *b = blk;
	uint32_t c = crc32c(0, b, 8);

	c = crc32c(c, zero, 4);
	return crc32c(c, b + 12, VMFS_MBLK - 12);
}

void vmfs_block_seal(void *blk)
{
	put_le32((uint8_t *)blk + 8, block_crc(blk));
}

void vmfs_hdr_init(struct vmfs_dhdr *h, enum vmfs_rtype type, uint64_t self,
		   const uint8_t uuid[16])
{
	memset(h, 0, sizeof(*h));
	h->magic = VMFS_MAGIC;
	h->type = (uint16_t)type;
	h->version = VMFS_VERSION_MAJOR;
	h->self = self;
	if (uuid)
		memcpy(h->uuid, uuid, 16);
}

static void hdr_encode(const struct vmfs_dhdr *h, uint8_t *b)
{
	memset(b, 0, VMFS_MBLK);
	put_le32(b + 0, h->magic);
	put_le16(b + 4, h->type);
	put_le16(b + 6, h->version);
	put_le32(b + 12, h->hflags);
	put_le64(b + 16, h->generation);
	put_le64(b + 24, h->self);
	memcpy(b + 32, h->uuid, 16);
}

static void hdr_decode(const uint8_t *b, struct vmfs_dhdr *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = get_le32(b);
	h->type = get_le16(b + 4);
	h->version = get_le16(b + 6);
	h->crc = get_le32(b + 8);
	h->hflags = get_le32(b + 12);
	h->generation = get_le64(b + 16);
	h->self = get_le64(b + 24);
	memcpy(h->uuid, b + 32, 16);
}

/* Magic, CRC, version: what every block shares.  CRC before version: a
 * flipped version byte is damage (fall back to a backup, repair); only an
 * intact block of a newer major version means "made by a newer vmfs"
 * (refuse). */
static int hdr_common(const uint8_t *b)
{
	if (get_le32(b) != VMFS_MAGIC)
		return VMFS_EBADMAGIC;
	if (get_le32(b + 8) != block_crc(b))
		return VMFS_EBADCRC;
	if (get_le16(b + 6) == 0 || get_le16(b + 6) > VMFS_VERSION_MAJOR)
		return VMFS_EBADVERSION;
	return 0;
}

int vmfs_hdr_check(const void *blk, enum vmfs_rtype type, uint64_t addr, const uint8_t *uuid)
{
	const uint8_t *b = blk;
	int rc = hdr_common(b);

	if (rc)
		return rc;
	if (get_le16(b + 4) != type)
		return VMFS_EBADTYPE;
	if (addr != UINT64_MAX && get_le64(b + 24) != addr)
		return VMFS_EBADSELF;
	if (uuid && memcmp(b + 32, uuid, 16) != 0)
		return VMFS_EBADUUID;
	return 0;
}

int vmfs_hdr_peek_type(const void *blk)
{
	const uint8_t *b = blk;
	int rc = hdr_common(b);

	return rc ? rc : get_le16(b + 4);
}

/* Field movers: T is the struct, b the block, in/out the record. */
#define E16(T, f) put_le16(b + offsetof(struct T, f), in->f)
#define E32(T, f) put_le32(b + offsetof(struct T, f), (uint32_t)in->f)
#define E64(T, f) put_le64(b + offsetof(struct T, f), (uint64_t)in->f)
#define EBYTES(T, f) memcpy(b + offsetof(struct T, f), in->f, sizeof(in->f))
#define D16(T, f) (out->f = get_le16(b + offsetof(struct T, f)))
#define D32(T, f) (out->f = get_le32(b + offsetof(struct T, f)))
#define D64(T, f) (out->f = get_le64(b + offsetof(struct T, f)))
#define DS64(T, f) (out->f = (int64_t)get_le64(b + offsetof(struct T, f)))
#define DBYTES(T, f) memcpy(out->f, b + offsetof(struct T, f), sizeof(out->f))

#define DECODE_PROLOGUE(rtype)						\
	const uint8_t *b = blk;						\
	int rc = vmfs_hdr_check(blk, rtype, addr, uuid);		\
	if (rc)								\
		return rc;						\
	memset(out, 0, sizeof(*out));					\
	hdr_decode(b, &out->h)

/* ---- superblock ---- */
void vmfs_sb_encode(const struct vmfs_sb *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E16(vmfs_sb, major); E16(vmfs_sb, minor); E32(vmfs_sb, block_size);
	E64(vmfs_sb, feature_compat); E64(vmfs_sb, feature_incompat);
	E64(vmfs_sb, feature_ro_compat); EBYTES(vmfs_sb, uuid); EBYTES(vmfs_sb, label);
	E64(vmfs_sb, total_bytes); E64(vmfs_sb, nblocks); E32(vmfs_sb, max_hosts);
	E32(vmfs_sb, journal_blocks); E64(vmfs_sb, slots_start); E32(vmfs_sb, slot_stride);
	E32(vmfs_sb, rg_blocks); E64(vmfs_sb, rg_start); E32(vmfs_sb, nrgs);
	E32(vmfs_sb, hb_period_ms); E64(vmfs_sb, root_ino); E64(vmfs_sb, lostfound_ino);
	E64(vmfs_sb, mkfs_time_ns); E64(vmfs_sb, backup_addr);
	vmfs_block_seal(b);
}

int vmfs_sb_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_sb *out)
{
	DECODE_PROLOGUE(VMFS_T_SB);
	D16(vmfs_sb, major); D16(vmfs_sb, minor); D32(vmfs_sb, block_size);
	D64(vmfs_sb, feature_compat); D64(vmfs_sb, feature_incompat);
	D64(vmfs_sb, feature_ro_compat); DBYTES(vmfs_sb, uuid); DBYTES(vmfs_sb, label);
	out->label[VMFS_LABEL_LEN - 1] = '\0';
	D64(vmfs_sb, total_bytes); D64(vmfs_sb, nblocks); D32(vmfs_sb, max_hosts);
	D32(vmfs_sb, journal_blocks); D64(vmfs_sb, slots_start); D32(vmfs_sb, slot_stride);
	D32(vmfs_sb, rg_blocks); D64(vmfs_sb, rg_start); D32(vmfs_sb, nrgs);
	D32(vmfs_sb, hb_period_ms); D64(vmfs_sb, root_ino); D64(vmfs_sb, lostfound_ino);
	D64(vmfs_sb, mkfs_time_ns); D64(vmfs_sb, backup_addr);
	/* Major must match; a newer minor only adds compat features. */
	if (out->major != VMFS_VERSION_MAJOR)
		return VMFS_EBADVERSION;
	if (out->feature_incompat & ~VMFS_FEATURE_INCOMPAT_SUPP)
		return VMFS_EBADVERSION;
	if (memcmp(out->uuid, out->h.uuid, 16) != 0)
		return VMFS_EBADFIELD;
	return 0;
}

int vmfs_sb_check_geometry(const struct vmfs_sb *sb, uint64_t dev_bytes)
{
	uint64_t bs = sb->block_size, slots_end, rg_end;

	if (bs < VMFS_MIN_BLOCK_SIZE || bs > VMFS_MAX_BLOCK_SIZE || (bs & (bs - 1)))
		return VMFS_EBADFIELD;
	if (sb->max_hosts == 0 || sb->max_hosts > VMFS_MAX_HOSTS)
		return VMFS_EBADFIELD;
	if (sb->total_bytes > VMFS_MAX_VOLUME || (dev_bytes && sb->total_bytes > dev_bytes))
		return VMFS_EBADFIELD;
	if (sb->journal_blocks < 16 || sb->slot_stride != sb->journal_blocks + VMFS_SLOT_LOG)
		return VMFS_EBADFIELD;
	if (sb->slots_start != VMFS_SLOTS_ADDR)
		return VMFS_EBADFIELD;
	slots_end = (sb->slots_start + (uint64_t)sb->max_hosts * sb->slot_stride) * VMFS_MBLK;
	if (sb->rg_start * bs < slots_end)
		return VMFS_EBADFIELD;
	if (sb->rg_blocks < 2 || sb->rg_blocks > VMFS_RG_MAX_BLOCKS || sb->nrgs == 0)
		return VMFS_EBADFIELD;
	rg_end = sb->rg_start + (uint64_t)(sb->nrgs - 1) * sb->rg_blocks;
	if (rg_end >= sb->nblocks || sb->nblocks > sb->total_bytes / bs)
		return VMFS_EBADFIELD;
	/* The last RG may be short but must hold its header block and one more. */
	if (sb->nblocks - rg_end < 2)
		return VMFS_EBADFIELD;
	if (sb->backup_addr * VMFS_MBLK + VMFS_MBLK > sb->total_bytes ||
	    sb->backup_addr * VMFS_MBLK < sb->nblocks * bs)
		return VMFS_EBADFIELD;
	if (sb->hb_period_ms < 100 || sb->hb_period_ms > 60000)
		return VMFS_EBADFIELD;
	if (sb->root_ino == 0 || sb->root_ino >= sb->nblocks * (bs / VMFS_MBLK))
		return VMFS_EBADFIELD;
	if (sb->lostfound_ino >= sb->nblocks * (bs / VMFS_MBLK))
		return VMFS_EBADFIELD;
	return 0;
}

/* ---- heartbeat ---- */
void vmfs_hb_encode(const struct vmfs_hb *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E32(vmfs_hb, slot); E32(vmfs_hb, state); E64(vmfs_hb, counter); E64(vmfs_hb, wall_ms);
	E64(vmfs_hb, mount_id); E32(vmfs_hb, period_ms); E32(vmfs_hb, pid); EBYTES(vmfs_hb, host);
	vmfs_block_seal(b);
}

int vmfs_hb_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_hb *out)
{
	DECODE_PROLOGUE(VMFS_T_HB);
	D32(vmfs_hb, slot); D32(vmfs_hb, state); D64(vmfs_hb, counter); D64(vmfs_hb, wall_ms);
	D64(vmfs_hb, mount_id); D32(vmfs_hb, period_ms); D32(vmfs_hb, pid); DBYTES(vmfs_hb, host);
	out->host[sizeof(out->host) - 1] = '\0';
	if (out->state > VMFS_HB_LIVE || out->slot >= VMFS_MAX_HOSTS)
		return VMFS_EBADFIELD;
	return 0;
}

/* ---- orphan list ---- */
void vmfs_orphan_encode(const struct vmfs_orphan *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E32(vmfs_orphan, count);
	for (uint32_t i = 0; i < in->count && i < VMFS_ORPHAN_MAX; i++)
		put_le64(b + offsetof(struct vmfs_orphan, ino) + 8 * i, in->ino[i]);
	vmfs_block_seal(b);
}

int vmfs_orphan_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_orphan *out)
{
	DECODE_PROLOGUE(VMFS_T_ORPHAN);
	D32(vmfs_orphan, count);
	if (out->count > VMFS_ORPHAN_MAX)
		return VMFS_EBADFIELD;
	for (uint32_t i = 0; i < out->count; i++)
		out->ino[i] = get_le64(b + offsetof(struct vmfs_orphan, ino) + 8 * i);
	return 0;
}

/* ---- journal ---- */
void vmfs_jhdr_encode(const struct vmfs_jhdr *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E64(vmfs_jhdr, checkpoint_seq); E32(vmfs_jhdr, log_blocks); E32(vmfs_jhdr, slot);
	vmfs_block_seal(b);
}

int vmfs_jhdr_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_jhdr *out)
{
	DECODE_PROLOGUE(VMFS_T_JHDR);
	D64(vmfs_jhdr, checkpoint_seq); D32(vmfs_jhdr, log_blocks); D32(vmfs_jhdr, slot);
	if (out->slot >= VMFS_MAX_HOSTS)
		return VMFS_EBADFIELD;
	return 0;
}

void vmfs_jdesc_encode(const struct vmfs_jdesc *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E64(vmfs_jdesc, seq); E32(vmfs_jdesc, nblocks); E32(vmfs_jdesc, ndesc);
	E32(vmfs_jdesc, index); E32(vmfs_jdesc, count);
	for (uint32_t i = 0; i < in->count && i < VMFS_JDESC_MAX; i++)
		put_le64(b + offsetof(struct vmfs_jdesc, addr) + 8 * i, in->addr[i]);
	vmfs_block_seal(b);
}

int vmfs_jdesc_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_jdesc *out)
{
	DECODE_PROLOGUE(VMFS_T_JDESC);
	D64(vmfs_jdesc, seq); D32(vmfs_jdesc, nblocks); D32(vmfs_jdesc, ndesc);
	D32(vmfs_jdesc, index); D32(vmfs_jdesc, count);
	if (out->count > VMFS_JDESC_MAX || out->index >= out->ndesc ||
	    out->nblocks > (uint64_t)out->ndesc * VMFS_JDESC_MAX)
		return VMFS_EBADFIELD;
	for (uint32_t i = 0; i < out->count; i++)
		out->addr[i] = get_le64(b + offsetof(struct vmfs_jdesc, addr) + 8 * i);
	return 0;
}

void vmfs_jcommit_encode(const struct vmfs_jcommit *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E64(vmfs_jcommit, seq); E32(vmfs_jcommit, nblocks); E32(vmfs_jcommit, ndesc);
	E32(vmfs_jcommit, data_crc); E64(vmfs_jcommit, commit_time_ns);
	vmfs_block_seal(b);
}

int vmfs_jcommit_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_jcommit *out)
{
	DECODE_PROLOGUE(VMFS_T_JCOMMIT);
	D64(vmfs_jcommit, seq); D32(vmfs_jcommit, nblocks); D32(vmfs_jcommit, ndesc);
	D32(vmfs_jcommit, data_crc); D64(vmfs_jcommit, commit_time_ns);
	return 0;
}

/* ---- resource group ---- */
unsigned vmfs_rg_get(const struct vmfs_rg *rg, uint32_t i)
{
	return (rg->bitmap[i / 4] >> (2 * (i % 4))) & 3u;
}

void vmfs_rg_set(struct vmfs_rg *rg, uint32_t i, unsigned state)
{
	uint8_t m = (uint8_t)(3u << (2 * (i % 4)));

	rg->bitmap[i / 4] = (uint8_t)((rg->bitmap[i / 4] & ~m) | ((state & 3u) << (2 * (i % 4))));
}

void vmfs_rg_encode(const struct vmfs_rg *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E32(vmfs_rg, index); E32(vmfs_rg, nblocks); E64(vmfs_rg, first_block);
	E32(vmfs_rg, free_blocks); EBYTES(vmfs_rg, bitmap);
	vmfs_block_seal(b);
}

int vmfs_rg_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_rg *out)
{
	DECODE_PROLOGUE(VMFS_T_RG);
	D32(vmfs_rg, index); D32(vmfs_rg, nblocks); D64(vmfs_rg, first_block);
	D32(vmfs_rg, free_blocks); DBYTES(vmfs_rg, bitmap);
	if (out->nblocks > VMFS_RG_MAX_BLOCKS || out->free_blocks > out->nblocks)
		return VMFS_EBADFIELD;
	return 0;
}

/* ---- meta chunk ---- */
void vmfs_chunk_encode(const struct vmfs_chunk *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E64(vmfs_chunk, block); E32(vmfs_chunk, nslots); E32(vmfs_chunk, free_slots);
	E32(vmfs_chunk, rg); EBYTES(vmfs_chunk, bitmap);
	vmfs_block_seal(b);
}

int vmfs_chunk_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_chunk *out)
{
	DECODE_PROLOGUE(VMFS_T_CHUNK);
	D64(vmfs_chunk, block); D32(vmfs_chunk, nslots); D32(vmfs_chunk, free_slots);
	D32(vmfs_chunk, rg); DBYTES(vmfs_chunk, bitmap);
	if (out->nslots < 2 || out->nslots > VMFS_CHUNK_MAX_SLOTS || out->free_slots >= out->nslots)
		return VMFS_EBADFIELD;
	return 0;
}

/* ---- inode ---- */
void vmfs_inode_encode(const struct vmfs_inode *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E32(vmfs_inode, mode); E32(vmfs_inode, uid); E32(vmfs_inode, gid); E32(vmfs_inode, nlink);
	E64(vmfs_inode, size); E64(vmfs_inode, nblocks); E64(vmfs_inode, atime_ns);
	E64(vmfs_inode, mtime_ns); E64(vmfs_inode, ctime_ns); E64(vmfs_inode, btime_ns);
	E64(vmfs_inode, parent); E64(vmfs_inode, igen); E32(vmfs_inode, iflags);
	E32(vmfs_inode, xattr_len); EBYTES(vmfs_inode, area); EBYTES(vmfs_inode, xattr);
	vmfs_block_seal(b);
}

int vmfs_inode_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_inode *out)
{
	DECODE_PROLOGUE(VMFS_T_INODE);
	D32(vmfs_inode, mode); D32(vmfs_inode, uid); D32(vmfs_inode, gid); D32(vmfs_inode, nlink);
	D64(vmfs_inode, size); D64(vmfs_inode, nblocks); DS64(vmfs_inode, atime_ns);
	DS64(vmfs_inode, mtime_ns); DS64(vmfs_inode, ctime_ns); DS64(vmfs_inode, btime_ns);
	D64(vmfs_inode, parent); D64(vmfs_inode, igen); D32(vmfs_inode, iflags);
	D32(vmfs_inode, xattr_len); DBYTES(vmfs_inode, area); DBYTES(vmfs_inode, xattr);
	if (out->xattr_len > VMFS_INO_XATTR_SIZE || out->size > VMFS_MAX_VOLUME)
		return VMFS_EBADFIELD;
	if ((out->iflags & VMFS_IF_INLINE) && out->size > VMFS_INO_AREA_SIZE)
		return VMFS_EBADFIELD;
	if ((out->iflags & ~VMFS_IF_KNOWN) ||
	    ((out->iflags & VMFS_IF_PAGES) &&
	     (!S_ISREG(out->mode) || (out->iflags & VMFS_IF_INLINE) ||
	      out->size > (uint64_t)VMFS_PAGES_MAX * VMFS_MBLK ||
	      get_le32(out->area) > VMFS_PAGES_MAX)))
		return VMFS_EBADFIELD;
	return 0;
}

/* ---- extents ---- */
void vmfs_extent_encode(const struct vmfs_extent *e, uint8_t *p)
{
	put_le32(p, e->lblk); put_le32(p + 4, e->pblk); put_le32(p + 8, e->len);
	put_le32(p + 12, e->flags);
}

void vmfs_extent_decode(const uint8_t *p, struct vmfs_extent *e)
{
	e->lblk = get_le32(p); e->pblk = get_le32(p + 4); e->len = get_le32(p + 8);
	e->flags = get_le32(p + 12);
}

void vmfs_xmap_hdr_encode(const struct vmfs_xmap_hdr *x, uint8_t *area)
{
	put_le32(area, x->nextents); put_le32(area + 4, x->nxblk); put_le64(area + 8, 0);
}

void vmfs_xmap_hdr_decode(const uint8_t *area, struct vmfs_xmap_hdr *x)
{
	x->nextents = get_le32(area); x->nxblk = get_le32(area + 4); x->reserved = 0;
}

void vmfs_extblk_encode(const struct vmfs_extblk *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	E64(vmfs_extblk, owner); E32(vmfs_extblk, index); E32(vmfs_extblk, count);
	for (uint32_t i = 0; i < in->count && i < VMFS_EXTBLK_MAX; i++)
		vmfs_extent_encode(&in->ext[i], b + VMFS_EXTBLK_OFF + VMFS_EXT_SIZE * i);
	vmfs_block_seal(b);
}

int vmfs_extblk_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_extblk *out)
{
	DECODE_PROLOGUE(VMFS_T_EXTBLK);
	D64(vmfs_extblk, owner); D32(vmfs_extblk, index); D32(vmfs_extblk, count);
	if (out->count > VMFS_EXTBLK_MAX || out->index >= VMFS_XMAP_NXBLK)
		return VMFS_EBADFIELD;
	for (uint32_t i = 0; i < out->count; i++)
		vmfs_extent_decode(b + VMFS_EXTBLK_OFF + VMFS_EXT_SIZE * i, &out->ext[i]);
	return 0;
}

/* ---- directories ---- */
void vmfs_dirinfo_encode(const struct vmfs_dirinfo *d, uint8_t *area)
{
	memset(area, 0, VMFS_INO_AREA_SIZE);
	put_le32(area, d->level); put_le32(area + 4, d->split); put_le32(area + 8, d->nidx);
	put_le64(area + 16, d->nentries); put_le64(area + 24, d->seed);
	for (uint32_t i = 0; i < d->nidx && i < VMFS_DIR_NIDX; i++)
		put_le64(area + 32 + 8 * i, d->idx[i]);
}

void vmfs_dirinfo_decode(const uint8_t *area, struct vmfs_dirinfo *d)
{
	memset(d, 0, sizeof(*d));
	d->level = get_le32(area); d->split = get_le32(area + 4); d->nidx = get_le32(area + 8);
	d->nentries = get_le64(area + 16); d->seed = get_le64(area + 24);
	for (uint32_t i = 0; i < d->nidx && i < VMFS_DIR_NIDX; i++)
		d->idx[i] = get_le64(area + 32 + 8 * i);
}

void vmfs_diridx_encode(const struct vmfs_diridx *in, void *blk)
{
	uint8_t *b = blk;

	hdr_encode(&in->h, b);
	for (uint32_t i = 0; i < VMFS_DIRIDX_PTRS; i++)
		put_le64(b + VMFS_DIRIDX_OFF + 8 * i, in->bucket[i]);
	vmfs_block_seal(b);
}

int vmfs_diridx_decode(const void *blk, uint64_t addr, const uint8_t *uuid, struct vmfs_diridx *out)
{
	DECODE_PROLOGUE(VMFS_T_DIRIDX);
	for (uint32_t i = 0; i < VMFS_DIRIDX_PTRS; i++)
		out->bucket[i] = get_le64(b + VMFS_DIRIDX_OFF + 8 * i);
	return 0;
}

void vmfs_dirbkt_init(void *blk, uint64_t addr, const uint8_t uuid[16], uint64_t owner)
{
	struct vmfs_dhdr h;
	uint8_t *b = blk;

	vmfs_hdr_init(&h, VMFS_T_DIRBKT, addr, uuid);
	hdr_encode(&h, b);
	put_le64(b + 64, owner);
	put_le64(b + 72, 0);
	/* one free record spanning the whole entry area */
	vmfs_dent_encode(b, VMFS_DIRBKT_OFF, 0, 0, VMFS_MBLK - VMFS_DIRBKT_OFF, "", 0, 0);
	vmfs_block_seal(b);
}

void vmfs_dirbkt_get_hdr(const void *blk, struct vmfs_dirbkt_hdr *bh)
{
	const uint8_t *b = blk;

	bh->owner = get_le64(b + 64);
	bh->next = get_le64(b + 72);
}

void vmfs_dirbkt_set_next(void *blk, uint64_t next)
{
	put_le64((uint8_t *)blk + 72, next);
}

void vmfs_dent_decode(const void *blk, uint32_t off, struct vmfs_dent *d)
{
	const uint8_t *p = (const uint8_t *)blk + off;

	d->ino = get_le64(p);
	d->hash = get_le32(p + 8);
	d->rec_len = get_le16(p + 12);
	d->name_len = p[14];
	d->dtype = p[15];
	d->name = (const char *)p + VMFS_DENT_HDR;
}

void vmfs_dent_encode(void *blk, uint32_t off, uint64_t ino, uint32_t hash,
		      uint16_t rec_len, const char *name, uint8_t name_len, uint8_t dtype)
{
	uint8_t *p = (uint8_t *)blk + off;

	put_le64(p, ino);
	put_le32(p + 8, hash);
	put_le16(p + 12, rec_len);
	p[14] = name_len;
	p[15] = dtype;
	memmove(p + VMFS_DENT_HDR, name, name_len);	/* may be in place */
}

int vmfs_dirbkt_check(const void *blk, uint64_t addr, const uint8_t *uuid)
{
	int rc = vmfs_hdr_check(blk, VMFS_T_DIRBKT, addr, uuid);
	uint32_t off = VMFS_DIRBKT_OFF;

	if (rc)
		return rc;
	/* Records must tile the entry area exactly, each big enough for its
	 * name, so walkers never step outside the block. */
	while (off < VMFS_MBLK) {
		struct vmfs_dent d;

		if (VMFS_MBLK - off < VMFS_DENT_HDR)
			return VMFS_EBADFIELD;
		vmfs_dent_decode(blk, off, &d);
		if (d.rec_len < VMFS_DENT_HDR || d.rec_len % 8 || d.rec_len > VMFS_MBLK - off)
			return VMFS_EBADFIELD;
		if (d.ino && (d.name_len == 0 || VMFS_DENT_LEN(d.name_len) > d.rec_len))
			return VMFS_EBADFIELD;
		off += d.rec_len;
	}
	return 0;
}

void vmfs_uuid_str(const uint8_t u[16], char out[VMFS_UUID_STR_LEN])
{
	snprintf(out, VMFS_UUID_STR_LEN,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}
