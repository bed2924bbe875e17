/* ondisk.h — the vmfs on-disk format: every record, its layout and its codec.
 *
 * Everything on disk is little-endian.  The disk is addressed in two units:
 *   - the metadata block ("mblk", VMFS_MBLK = 4096 bytes): every metadata
 *     record is exactly one mblk and starts with struct vmfs_dhdr;
 *   - the large block ("block", sb.block_size, default 1 MiB): the unit of
 *     file data allocation.  A large block is either free, file data, or a
 *     "meta chunk" carved into block_size/4096 mblks for inodes, directory
 *     blocks, extent blocks and resource-group headers.
 *
 * Each record has exactly one encode/decode pair below.  Decoders validate
 * the common header and return a distinct domain error for a bad magic,
 * version, type, checksum, self address or volume UUID; encoders fill in the
 * checksum.  man/vmfs.5 documents every field; the _Static_asserts in
 * ondisk.c pin the offsets that the page documents, so change both together.
 */
#ifndef VMFS_FS_ONDISK_H
#define VMFS_FS_ONDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "le_bytes.h"

#define VMFS_MBLK		4096u
#define VMFS_MBLK_SHIFT		12
#define VMFS_MAGIC		0x53464d56u	/* "VMFS" read as LE u32 */
#define VMFS_VERSION_MAJOR	1
#define VMFS_VERSION_MINOR	0

/* Feature flags.  A reader refuses a volume with an unknown incompat bit,
 * mounts read-only with an unknown ro_compat bit, ignores unknown compat
 * bits.
 *   INCOMPAT_PAGES  small regular files keep their data in mblk pages
 *                   listed in the inode (VMFS_IF_PAGES) instead of a large
 *                   block; set by vmfs-mkfs since format 1.0's first
 *                   revision, so a reader that does not know pages
 *                   refuses such a volume instead of misreading files. */
#define VMFS_FEATURE_INCOMPAT_PAGES	0x1ull
#define VMFS_FEATURE_COMPAT_SUPP	0ull
#define VMFS_FEATURE_INCOMPAT_SUPP	VMFS_FEATURE_INCOMPAT_PAGES
#define VMFS_FEATURE_RO_COMPAT_SUPP	0ull

/* Limits of format 1.0. */
#define VMFS_MIN_BLOCK_SIZE	(64u * 1024)
#define VMFS_MAX_BLOCK_SIZE	(64u * 1024 * 1024)
#define VMFS_DEF_BLOCK_SIZE	(1024u * 1024)
#define VMFS_MAX_VOLUME		(16ull << 40)	/* 16 TiB */
#define VMFS_MAX_HOSTS		64
#define VMFS_NAME_MAX		255
#define VMFS_SYMLINK_MAX	2047
#define VMFS_LABEL_LEN		64

/* Fixed mblk addresses. */
#define VMFS_SB_ADDR		0	/* primary superblock */
#define VMFS_SLOTS_ADDR		16	/* first host slot */

/* Record types (numbered; only ever appended to). */
enum vmfs_rtype {
	VMFS_T_SB = 1,		/* superblock (primary and backup) */
	VMFS_T_HB = 2,		/* host slot heartbeat */
	VMFS_T_ORPHAN = 3,	/* host slot orphan list */
	VMFS_T_JHDR = 4,	/* journal header */
	VMFS_T_JDESC = 5,	/* journal transaction descriptor */
	VMFS_T_JCOMMIT = 6,	/* journal commit record */
	VMFS_T_RG = 7,		/* resource group header + block bitmap */
	VMFS_T_CHUNK = 8,	/* meta chunk header + mblk bitmap */
	VMFS_T_INODE = 9,
	VMFS_T_EXTBLK = 10,	/* overflow extent block of a file */
	VMFS_T_DIRIDX = 11,	/* directory bucket index */
	VMFS_T_DIRBKT = 12,	/* directory hash bucket */
	VMFS_T_MAX
};

/* Domain errors, kept apart from -errno values. */
enum vmfs_err {
	VMFS_EBADMAGIC = -2001,
	VMFS_EBADVERSION = -2002,
	VMFS_EBADCRC = -2003,
	VMFS_EBADTYPE = -2004,
	VMFS_EBADSELF = -2005,	/* block found at the wrong address */
	VMFS_EBADUUID = -2006,	/* block of another (older) volume */
	VMFS_EBADFIELD = -2007,	/* a field out of its documented range */
};
const char *vmfs_strerror(int err);
/* Map a domain error to the errno a syscall should see (EIO). */
int vmfs_errno(int err);
const char *vmfs_rtype_name(int type);

/* ---- common header: the first 64 bytes of every metadata record ---- */
struct vmfs_dhdr {
	uint32_t magic;		/*  0 VMFS_MAGIC */
	uint16_t type;		/*  4 enum vmfs_rtype */
	uint16_t version;	/*  6 format major version */
	uint32_t crc;		/*  8 CRC32C of the 4096 bytes with this field 0 */
	uint32_t hflags;	/* 12 reserved, 0 */
	uint64_t generation;	/* 16 bumped on every rewrite */
	uint64_t self;		/* 24 mblk address the record belongs at */
	uint8_t uuid[16];	/* 32 volume UUID */
	uint8_t reserved[16];	/* 48 0 */
};
#define VMFS_DHDR_SIZE 64

/* ---- superblock ---- */
struct vmfs_sb {
	struct vmfs_dhdr h;
	uint16_t major, minor;
	uint32_t block_size;
	uint64_t feature_compat, feature_incompat, feature_ro_compat;
	uint8_t uuid[16];
	char label[VMFS_LABEL_LEN];	/* NUL-padded */
	uint64_t total_bytes;		/* bytes of the device in use */
	uint64_t nblocks;		/* large blocks in the volume */
	uint32_t max_hosts;
	uint32_t journal_blocks;	/* mblks of log per slot */
	uint64_t slots_start;		/* mblk of slot 0 */
	uint32_t slot_stride;		/* mblks per slot */
	uint32_t rg_blocks;		/* large blocks per resource group */
	uint64_t rg_start;		/* large block of RG 0 */
	uint32_t nrgs;
	uint32_t hb_period_ms;
	uint64_t root_ino;		/* mblk of the root inode */
	uint64_t lostfound_ino;		/* mblk of /lost+found */
	uint64_t mkfs_time_ns;
	uint64_t backup_addr;		/* mblk of the backup superblock */
};

/* ---- host slot: heartbeat ---- */
enum vmfs_hb_state { VMFS_HB_FREE = 0, VMFS_HB_LIVE = 1 };
struct vmfs_hb {
	struct vmfs_dhdr h;
	uint32_t slot;
	uint32_t state;			/* enum vmfs_hb_state */
	uint64_t counter;		/* advances every period while live */
	uint64_t wall_ms;		/* wall clock of the last write */
	uint64_t mount_id;		/* random per mount */
	uint32_t period_ms;
	uint32_t pid;
	char host[64];			/* NUL-padded host name */
};

/* ---- host slot: orphan list (inodes unlinked while still open) ---- */
#define VMFS_ORPHAN_MAX 500
struct vmfs_orphan {
	struct vmfs_dhdr h;
	uint32_t count;
	uint64_t ino[VMFS_ORPHAN_MAX];
};

/* ---- journal ---- */
struct vmfs_jhdr {
	struct vmfs_dhdr h;
	uint64_t checkpoint_seq;	/* highest seq known applied in place */
	uint32_t log_blocks;		/* mblks of log after this header */
	uint32_t slot;
};

#define VMFS_JDESC_MAX 500
struct vmfs_jdesc {
	struct vmfs_dhdr h;
	uint64_t seq;
	uint32_t nblocks;		/* data blocks in the whole transaction */
	uint32_t ndesc;			/* descriptor blocks in the transaction */
	uint32_t index;			/* this descriptor's index */
	uint32_t count;			/* addresses in this descriptor */
	uint64_t addr[VMFS_JDESC_MAX];	/* target mblk of each data block */
};

struct vmfs_jcommit {
	struct vmfs_dhdr h;
	uint64_t seq;
	uint32_t nblocks;
	uint32_t ndesc;
	uint32_t data_crc;		/* CRC32C over descriptors+data, in order */
	uint64_t commit_time_ns;
};

/* ---- resource group: header + 2-bit block bitmap ---- */
enum vmfs_bstate { VMFS_B_FREE = 0, VMFS_B_DATA = 1, VMFS_B_META = 2, VMFS_B_RSVD = 3 };
#define VMFS_RG_BITMAP_OFF	128
#define VMFS_RG_MAX_BLOCKS	((VMFS_MBLK - VMFS_RG_BITMAP_OFF) * 4)
struct vmfs_rg {
	struct vmfs_dhdr h;
	uint32_t index;
	uint32_t nblocks;		/* blocks in this group */
	uint64_t first_block;
	uint32_t free_blocks;
	uint32_t reserved0;
	uint8_t reserved[40];
	uint8_t bitmap[VMFS_MBLK - VMFS_RG_BITMAP_OFF];
};
unsigned vmfs_rg_get(const struct vmfs_rg *rg, uint32_t i);
void vmfs_rg_set(struct vmfs_rg *rg, uint32_t i, unsigned state);

/* ---- meta chunk header + 1-bit mblk bitmap ---- */
#define VMFS_CHUNK_BITMAP_OFF	128
#define VMFS_CHUNK_MAX_SLOTS	(VMFS_MAX_BLOCK_SIZE / VMFS_MBLK)
struct vmfs_chunk {
	struct vmfs_dhdr h;
	uint64_t block;			/* large block this chunk occupies */
	uint32_t nslots;
	uint32_t free_slots;
	uint32_t rg;
	uint32_t reserved0;
	uint8_t reserved[40];
	uint8_t bitmap[VMFS_CHUNK_MAX_SLOTS / 8];
};

/* ---- inode ---- */
#define VMFS_INO_AREA_OFF	256
#define VMFS_INO_XATTR_OFF	3072
#define VMFS_INO_AREA_SIZE	(VMFS_INO_XATTR_OFF - VMFS_INO_AREA_OFF)	/* 2816 */
#define VMFS_INO_XATTR_SIZE	(VMFS_MBLK - VMFS_INO_XATTR_OFF)		/* 1024 */
#define VMFS_IF_INLINE		0x1u	/* regular file data lives in area */
#define VMFS_IF_PAGES		0x2u	/* regular file data lives in mblk pages */
#define VMFS_IF_KNOWN		(VMFS_IF_INLINE | VMFS_IF_PAGES)

struct vmfs_inode {
	struct vmfs_dhdr h;
	uint32_t mode, uid, gid, nlink;
	uint64_t size;
	uint64_t nblocks;		/* large blocks owned by the file */
	int64_t atime_ns, mtime_ns, ctime_ns, btime_ns;
	uint64_t parent;		/* directories: parent inode */
	uint64_t igen;			/* inode generation (NFS-style) */
	uint32_t iflags;
	uint32_t xattr_len;		/* bytes used in xattr */
	uint8_t reserved[104];
	uint8_t area[VMFS_INO_AREA_SIZE];
	uint8_t xattr[VMFS_INO_XATTR_SIZE];
};

/* A file extent, in large blocks.  16 bytes on disk. */
#define VMFS_EXT_UNWRITTEN 0x1u
struct vmfs_extent {
	uint32_t lblk;		/* first file block */
	uint32_t pblk;		/* first volume block; must be in a DATA state */
	uint32_t len;		/* blocks */
	uint32_t flags;		/* VMFS_EXT_* */
};
#define VMFS_EXT_SIZE		16
/* Extent map layout inside inode.area for a non-inline regular file. */
#define VMFS_XMAP_NXBLK		128	/* overflow extent-block pointers */
#define VMFS_XMAP_INLINE	((VMFS_INO_AREA_SIZE - 16 - VMFS_XMAP_NXBLK * 8) / VMFS_EXT_SIZE)
#define VMFS_EXTBLK_OFF		80
#define VMFS_EXTBLK_MAX		((VMFS_MBLK - VMFS_EXTBLK_OFF) / VMFS_EXT_SIZE)
#define VMFS_XMAP_MAX		(VMFS_XMAP_INLINE + VMFS_XMAP_NXBLK * VMFS_EXTBLK_MAX)

struct vmfs_xmap_hdr {		/* first 16 bytes of area */
	uint32_t nextents;
	uint32_t nxblk;
	uint64_t reserved;
};
struct vmfs_extblk {
	struct vmfs_dhdr h;
	uint64_t owner;		/* inode */
	uint32_t index;		/* position in the owner's list */
	uint32_t count;
	struct vmfs_extent ext[VMFS_EXTBLK_MAX];
};

/* Page map inside inode.area of a small regular file (VMFS_IF_PAGES):
 * le32 npages (non-zero entries), le32 0, le64 0, then le64 page[i] = the
 * mblk holding file bytes [i*4096, (i+1)*4096), 0 = a hole (reads zeros).
 * Pages are whole mblks of a meta chunk, raw data without a header.  Only
 * entries below the page count of the size may be non-zero. */
#define VMFS_PAGES_MAX		64	/* 256 KiB; at most block_size / 4 */
#define VMFS_PAGES_OFF		16

/* Directory layout in inode.area: linear hashing over buckets. */
#define VMFS_DIR_NIDX		((VMFS_INO_AREA_SIZE - 32) / 8)	/* 348 */
#define VMFS_DIRIDX_OFF		64
#define VMFS_DIRIDX_PTRS	((VMFS_MBLK - VMFS_DIRIDX_OFF) / 8)	/* 504 */
struct vmfs_dirinfo {
	uint32_t level;		/* buckets = 2^level + split */
	uint32_t split;
	uint32_t nidx;		/* index blocks in use */
	uint32_t reserved;
	uint64_t nentries;
	uint64_t seed;		/* hash seed */
	uint64_t idx[VMFS_DIR_NIDX];
};
struct vmfs_diridx {
	struct vmfs_dhdr h;
	uint64_t bucket[VMFS_DIRIDX_PTRS];
};

#define VMFS_DIRBKT_OFF		80	/* first entry */
/* Entry: le64 ino, le32 hash, le16 rec_len, u8 name_len, u8 dtype, name,
 * padded to 8.  ino 0 = free space.  Records tile the block exactly. */
#define VMFS_DENT_HDR		16
#define VMFS_DENT_LEN(n)	((VMFS_DENT_HDR + (n) + 7u) & ~7u)
struct vmfs_dirbkt_hdr {
	uint64_t owner;		/* directory inode */
	uint64_t next;		/* overflow bucket, 0 = none */
};

/* ---- codecs ----
 * decode(blk, addr, uuid, out): addr is the expected self address (or
 * UINT64_MAX to skip), uuid the expected volume UUID (or NULL to skip).
 * encode(in, blk): writes all 4096 bytes and the CRC. */
void vmfs_hdr_init(struct vmfs_dhdr *h, enum vmfs_rtype type, uint64_t self,
		   const uint8_t uuid[16]);
int vmfs_hdr_check(const void *blk, enum vmfs_rtype type, uint64_t addr,
		   const uint8_t *uuid) __attribute__((warn_unused_result));
/* Peek at the type of a block whose header is valid (or -error). */
int vmfs_hdr_peek_type(const void *blk);
void vmfs_block_seal(void *blk);	/* recompute the CRC in place */

#define VMFS_CODEC(name, T)						\
	void vmfs_##name##_encode(const struct T *in, void *blk);	\
	int vmfs_##name##_decode(const void *blk, uint64_t addr,	\
				 const uint8_t *uuid, struct T *out)	\
		__attribute__((warn_unused_result))
VMFS_CODEC(sb, vmfs_sb);
VMFS_CODEC(hb, vmfs_hb);
VMFS_CODEC(orphan, vmfs_orphan);
VMFS_CODEC(jhdr, vmfs_jhdr);
VMFS_CODEC(jdesc, vmfs_jdesc);
VMFS_CODEC(jcommit, vmfs_jcommit);
VMFS_CODEC(rg, vmfs_rg);
VMFS_CODEC(chunk, vmfs_chunk);
VMFS_CODEC(inode, vmfs_inode);
VMFS_CODEC(extblk, vmfs_extblk);
VMFS_CODEC(diridx, vmfs_diridx);
#undef VMFS_CODEC

/* Sub-records inside inode.area. */
void vmfs_extent_encode(const struct vmfs_extent *e, uint8_t *p);
void vmfs_extent_decode(const uint8_t *p, struct vmfs_extent *e);
void vmfs_xmap_hdr_encode(const struct vmfs_xmap_hdr *x, uint8_t *area);
void vmfs_xmap_hdr_decode(const uint8_t *area, struct vmfs_xmap_hdr *x);
void vmfs_dirinfo_encode(const struct vmfs_dirinfo *d, uint8_t *area);
void vmfs_dirinfo_decode(const uint8_t *area, struct vmfs_dirinfo *d);

/* Directory buckets are edited in place (raw block bytes); these check and
 * walk them.  check validates header and every record's bounds. */
int vmfs_dirbkt_check(const void *blk, uint64_t addr, const uint8_t *uuid)
	__attribute__((warn_unused_result));
void vmfs_dirbkt_init(void *blk, uint64_t addr, const uint8_t uuid[16], uint64_t owner);
void vmfs_dirbkt_get_hdr(const void *blk, struct vmfs_dirbkt_hdr *bh);
void vmfs_dirbkt_set_next(void *blk, uint64_t next);
struct vmfs_dent {
	uint64_t ino;
	uint32_t hash;
	uint16_t rec_len;
	uint8_t name_len;
	uint8_t dtype;
	const char *name;	/* points into the block, not NUL-terminated */
};
void vmfs_dent_decode(const void *blk, uint32_t off, struct vmfs_dent *d);
void vmfs_dent_encode(void *blk, uint32_t off, uint64_t ino, uint32_t hash,
		      uint16_t rec_len, const char *name, uint8_t name_len, uint8_t dtype);

/* Derived geometry of a superblock. */
static inline uint64_t vmfs_slot_addr(const struct vmfs_sb *sb, uint32_t slot)
{ return sb->slots_start + (uint64_t)slot * sb->slot_stride; }
#define VMFS_SLOT_HB		0	/* mblk offsets inside a slot */
#define VMFS_SLOT_ORPHAN	1
#define VMFS_SLOT_JHDR		2
#define VMFS_SLOT_LOG		3
static inline uint32_t vmfs_mblks_per_block(const struct vmfs_sb *sb)
{ return sb->block_size / VMFS_MBLK; }
static inline uint64_t vmfs_block_to_mblk(const struct vmfs_sb *sb, uint64_t b)
{ return b * vmfs_mblks_per_block(sb); }
/* RG i's header lives in mblk 1 of its first block (mblk 0 is the chunk
 * header of that block, which is always a meta chunk). */
static inline uint64_t vmfs_rg_first_block(const struct vmfs_sb *sb, uint32_t i)
{ return sb->rg_start + (uint64_t)i * sb->rg_blocks; }
static inline uint64_t vmfs_rg_addr(const struct vmfs_sb *sb, uint32_t i)
{ return vmfs_block_to_mblk(sb, vmfs_rg_first_block(sb, i)) + 1; }
/* Validate a decoded superblock's geometry against a device size. */
int vmfs_sb_check_geometry(const struct vmfs_sb *sb, uint64_t dev_bytes)
	__attribute__((warn_unused_result));

/* The volume UUID as text, lowercase (also the lock-manager lockspace of
 * the volume, DESIGN.md decision 2). */
#define VMFS_UUID_STR_LEN 37
void vmfs_uuid_str(const uint8_t u[16], char out[VMFS_UUID_STR_LEN]);

#endif
