/* test-ondisk.c — codec round trips, the distinct decode errors, the extent
 * map helpers, and the documented layout read back byte by byte. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "fs/inode.h"
#include "fs/ondisk.h"

static int failures;

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n",	\
				__FILE__, __LINE__, #cond);		\
			failures++;					\
		}							\
	} while (0)

static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static const uint8_t other[16] = { 9 };

static void test_sb(void)
{
	uint8_t blk[VMFS_MBLK];
	struct vmfs_sb sb, out;

	memset(&sb, 0, sizeof(sb));
	vmfs_hdr_init(&sb.h, VMFS_T_SB, 0, uuid);
	sb.major = VMFS_VERSION_MAJOR;
	sb.minor = 7;	/* a newer minor still decodes */
	sb.block_size = 1 << 20;
	memcpy(sb.uuid, uuid, 16);
	strcpy(sb.label, "datastore1");
	sb.total_bytes = 1ull << 30;
	sb.nblocks = 1023;
	sb.max_hosts = 8;
	sb.root_ino = 4242;
	vmfs_sb_encode(&sb, blk);
	CHECK(vmfs_sb_decode(blk, 0, uuid, &out) == 0);
	CHECK(out.minor == 7 && out.block_size == 1 << 20 && out.root_ino == 4242);
	CHECK(strcmp(out.label, "datastore1") == 0);
	/* documented offsets, read independently of the codec */
	CHECK(get_le32(blk) == 0x53464d56 && memcmp(blk, "VMFS", 4) == 0);
	CHECK(get_le16(blk + 4) == VMFS_T_SB);
	CHECK(get_le32(blk + 68) == 1u << 20);
	CHECK(memcmp(blk + 112, "datastore1", 10) == 0);
	CHECK(get_le64(blk + 232) == 4242);
	/* CRC32C over the block with the crc field zeroed */
	{
		uint8_t copy[VMFS_MBLK];

		memcpy(copy, blk, sizeof(copy));
		memset(copy + 8, 0, 4);
		CHECK(get_le32(blk + 8) == crc32c(0, copy, sizeof(copy)));
	}
	/* distinct errors */
	blk[0] ^= 1;
	CHECK(vmfs_sb_decode(blk, 0, uuid, &out) == VMFS_EBADMAGIC);
	blk[0] ^= 1;
	blk[200] ^= 0x40;
	CHECK(vmfs_sb_decode(blk, 0, uuid, &out) == VMFS_EBADCRC);
	blk[200] ^= 0x40;
	CHECK(vmfs_sb_decode(blk, 0, other, &out) == VMFS_EBADUUID);
	CHECK(vmfs_sb_decode(blk, 5, uuid, &out) == VMFS_EBADSELF);
	put_le16(blk + 6, VMFS_VERSION_MAJOR + 1);
	vmfs_block_seal(blk);
	CHECK(vmfs_sb_decode(blk, 0, uuid, &out) == VMFS_EBADVERSION);
	sb.major = VMFS_VERSION_MAJOR + 1;	/* superblock major too */
	vmfs_sb_encode(&sb, blk);
	CHECK(vmfs_sb_decode(blk, 0, uuid, &out) == VMFS_EBADVERSION);
	sb.major = VMFS_VERSION_MAJOR;
	sb.feature_incompat = VMFS_FEATURE_INCOMPAT_SUPP << 1;	/* unknown incompat feature */
	vmfs_sb_encode(&sb, blk);
	CHECK(vmfs_sb_decode(blk, 0, uuid, &out) == VMFS_EBADVERSION);
	CHECK(strcmp(vmfs_strerror(VMFS_EBADCRC), "checksum mismatch") == 0);
	CHECK(vmfs_errno(VMFS_EBADCRC) == -EIO && vmfs_errno(-ENOENT) == -ENOENT);
}

static void test_records(void)
{
	uint8_t blk[VMFS_MBLK];
	struct vmfs_hb hb, hb2;
	struct vmfs_jdesc *jd = calloc(1, sizeof(*jd)), *jd2 = calloc(1, sizeof(*jd2));
	struct vmfs_rg *rg = calloc(1, sizeof(*rg)), *rg2 = calloc(1, sizeof(*rg2));
	struct vmfs_inode *in = calloc(1, sizeof(*in)), *in2 = calloc(1, sizeof(*in2));
	struct vmfs_extblk *xb = calloc(1, sizeof(*xb)), *xb2 = calloc(1, sizeof(*xb2));

	memset(&hb, 0, sizeof(hb));
	vmfs_hdr_init(&hb.h, VMFS_T_HB, 16, uuid);
	hb.slot = 3;
	hb.state = VMFS_HB_LIVE;
	hb.counter = 99;
	strcpy(hb.host, "hostA");
	vmfs_hb_encode(&hb, blk);
	CHECK(vmfs_hb_decode(blk, 16, uuid, &hb2) == 0 && hb2.counter == 99 && hb2.slot == 3);
	CHECK(strcmp(hb2.host, "hostA") == 0);
	CHECK(vmfs_jhdr_decode(blk, 16, uuid, NULL) == VMFS_EBADTYPE);

	vmfs_hdr_init(&jd->h, VMFS_T_JDESC, 19, uuid);
	jd->seq = 5;
	jd->nblocks = 2;
	jd->ndesc = 1;
	jd->count = 2;
	jd->addr[0] = 100;
	jd->addr[1] = 200;
	vmfs_jdesc_encode(jd, blk);
	CHECK(vmfs_jdesc_decode(blk, 19, uuid, jd2) == 0 && jd2->addr[1] == 200 && jd2->seq == 5);
	put_le32(blk + 84, VMFS_JDESC_MAX + 1);	/* count out of range */
	vmfs_block_seal(blk);
	CHECK(vmfs_jdesc_decode(blk, 19, uuid, jd2) == VMFS_EBADFIELD);

	vmfs_hdr_init(&rg->h, VMFS_T_RG, 77, uuid);
	rg->nblocks = 100;
	rg->free_blocks = 98;
	vmfs_rg_set(rg, 0, VMFS_B_META);
	vmfs_rg_set(rg, 5, VMFS_B_DATA);
	vmfs_rg_set(rg, 6, VMFS_B_RSVD);
	vmfs_rg_set(rg, 6, VMFS_B_FREE);
	vmfs_rg_encode(rg, blk);
	CHECK(vmfs_rg_decode(blk, 77, uuid, rg2) == 0);
	CHECK(vmfs_rg_get(rg2, 0) == VMFS_B_META && vmfs_rg_get(rg2, 5) == VMFS_B_DATA);
	CHECK(vmfs_rg_get(rg2, 6) == VMFS_B_FREE && vmfs_rg_get(rg2, 4) == VMFS_B_FREE);
	CHECK(blk[VMFS_RG_BITMAP_OFF] == VMFS_B_META);	/* 2 bits per block, LSB first */
	CHECK(blk[VMFS_RG_BITMAP_OFF + 1] == (VMFS_B_DATA << 2));

	vmfs_hdr_init(&in->h, VMFS_T_INODE, 4096, uuid);
	in->mode = 0100644;
	in->nlink = 1;
	in->size = 5;
	in->iflags = VMFS_IF_INLINE;
	in->mtime_ns = -5;	/* before 1970 */
	memcpy(in->area, "hello", 5);
	vmfs_inode_encode(in, blk);
	CHECK(vmfs_inode_decode(blk, 4096, uuid, in2) == 0);
	CHECK(in2->mtime_ns == -5 && memcmp(in2->area, "hello", 5) == 0);
	CHECK(memcmp(blk + VMFS_INO_AREA_OFF, "hello", 5) == 0);
	in->size = VMFS_INO_AREA_SIZE + 1;	/* inline data cannot be that big */
	vmfs_inode_encode(in, blk);
	CHECK(vmfs_inode_decode(blk, 4096, uuid, in2) == VMFS_EBADFIELD);
	/* a small file in pages (ondisk.h): 256 KiB at most, a count that
	 * fits the map, regular files only, not inline at once */
	memset(in->area, 0, sizeof(in->area));
	in->iflags = VMFS_IF_PAGES;
	in->size = (uint64_t)VMFS_PAGES_MAX * VMFS_MBLK;
	put_le32(in->area, 1);
	put_le64(in->area + VMFS_PAGES_OFF + 8 * 3, 777);
	vmfs_inode_encode(in, blk);
	CHECK(vmfs_inode_decode(blk, 4096, uuid, in2) == 0);
	CHECK(get_le64(blk + VMFS_INO_AREA_OFF + VMFS_PAGES_OFF + 24) == 777);
	in->size++;
	vmfs_inode_encode(in, blk);
	CHECK(vmfs_inode_decode(blk, 4096, uuid, in2) == VMFS_EBADFIELD);
	in->size = 5;
	put_le32(in->area, VMFS_PAGES_MAX + 1);
	vmfs_inode_encode(in, blk);
	CHECK(vmfs_inode_decode(blk, 4096, uuid, in2) == VMFS_EBADFIELD);
	put_le32(in->area, 1);
	in->iflags = VMFS_IF_PAGES | VMFS_IF_INLINE;
	vmfs_inode_encode(in, blk);
	CHECK(vmfs_inode_decode(blk, 4096, uuid, in2) == VMFS_EBADFIELD);
	in->iflags = VMFS_IF_PAGES;
	in->mode = 040755;
	vmfs_inode_encode(in, blk);
	CHECK(vmfs_inode_decode(blk, 4096, uuid, in2) == VMFS_EBADFIELD);
	in->mode = 0100644;
	in->iflags = 0x80;	/* unknown flag */
	vmfs_inode_encode(in, blk);
	CHECK(vmfs_inode_decode(blk, 4096, uuid, in2) == VMFS_EBADFIELD);

	vmfs_hdr_init(&xb->h, VMFS_T_EXTBLK, 300, uuid);
	xb->owner = 4096;
	xb->count = 2;
	xb->ext[1] = (struct vmfs_extent){ 10, 20, 30, VMFS_EXT_UNWRITTEN };
	vmfs_extblk_encode(xb, blk);
	CHECK(vmfs_extblk_decode(blk, 300, uuid, xb2) == 0);
	CHECK(xb2->ext[1].pblk == 20 && xb2->ext[1].flags == VMFS_EXT_UNWRITTEN);
	CHECK(get_le32(blk + VMFS_EXTBLK_OFF + 16 + 4) == 20);

	free(jd); free(jd2); free(rg); free(rg2); free(in); free(in2); free(xb); free(xb2);
}

static void test_dirbkt(void)
{
	uint8_t blk[VMFS_MBLK];
	struct vmfs_dent d;

	vmfs_dirbkt_init(blk, 50, uuid, 7);
	CHECK(vmfs_dirbkt_check(blk, 50, uuid) == 0);
	vmfs_dent_decode(blk, VMFS_DIRBKT_OFF, &d);
	CHECK(d.ino == 0 && d.rec_len == VMFS_MBLK - VMFS_DIRBKT_OFF);
	vmfs_dent_encode(blk, VMFS_DIRBKT_OFF, 99, 1234, 24, "abc", 3, 8);
	vmfs_dent_encode(blk, VMFS_DIRBKT_OFF + 24, 0, 0, VMFS_MBLK - VMFS_DIRBKT_OFF - 24, "", 0, 0);
	vmfs_block_seal(blk);
	CHECK(vmfs_dirbkt_check(blk, 50, uuid) == 0);
	/* a record running past the block is caught before anyone walks it */
	put_le16(blk + VMFS_DIRBKT_OFF + 12, 4000);
	vmfs_block_seal(blk);
	CHECK(vmfs_dirbkt_check(blk, 50, uuid) == VMFS_EBADFIELD);
	put_le16(blk + VMFS_DIRBKT_OFF + 12, 16);	/* too short for its name */
	vmfs_block_seal(blk);
	CHECK(vmfs_dirbkt_check(blk, 50, uuid) == VMFS_EBADFIELD);
}

static void test_xmap(void)
{
	struct xmap m = { 0 };

	CHECK(xmap_insert(&m, 0, 100, 1, 0) == 0);
	CHECK(xmap_insert(&m, 1, 101, 1, 0) == 0);	/* merges */
	CHECK(m.n == 1 && m.e[0].len == 2);
	CHECK(xmap_insert(&m, 5, 200, 3, VMFS_EXT_UNWRITTEN) == 0);
	CHECK(m.n == 2);
	CHECK(xmap_insert(&m, 6, 300, 1, 0) == -EEXIST);
	CHECK(xmap_find(&m, 6, NULL) == 1 && xmap_find(&m, 3, NULL) == -1);
	CHECK(xmap_set_flags(&m, 6, 0) == 0);		/* split in three */
	CHECK(m.n == 4 && m.e[2].lblk == 6 && m.e[2].len == 1 && m.e[2].flags == 0);
	CHECK(xmap_set_flags(&m, 5, 0) == 0);		/* merges with 6 */
	CHECK(m.n == 3 && m.e[1].lblk == 5 && m.e[1].len == 2 && m.e[1].pblk == 200);
	CHECK(xmap_set_flags(&m, 7, 0) == 0);
	CHECK(m.n == 2 && m.e[1].len == 3 && m.e[1].flags == 0);
	xmap_release(&m);
}

int main(void)
{
	test_sb();
	test_records();
	test_dirbkt();
	test_xmap();
	if (failures) {
		fprintf(stderr, "test-ondisk: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test-ondisk: all checks passed\n");
	return 0;
}
