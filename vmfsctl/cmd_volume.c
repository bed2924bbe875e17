/* cmd_volume.c — vmfsctl volume: a vmfs volume's identity, geometry and
 * free space, read from its superblock and resource groups. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "fsvol.h"
#include "slot.h"
#include "vmfsctl.h"

struct volinfo {
	uint64_t data_blocks;	/* blocks the allocator manages (as df counts) */
	uint64_t free_blocks;	/* sum of the resource groups' free counts */
	uint32_t claimed;	/* slots whose heartbeat record says LIVE */
	uint32_t unreadable;	/* slots whose heartbeat could not be decoded */
};

static int gather(struct vol *v, struct volinfo *vi)
{
	struct vmfs_hb hb;
	int rc;

	memset(vi, 0, sizeof(*vi));
	vi->data_blocks = v->sb.nblocks - v->sb.rg_start;
	/* The resource-group headers keep each group's free count; the
	 * allocator sums them the same way when a mount starts. */
	pthread_mutex_lock(&v->mu);
	rc = alloc_init(v);
	vi->free_blocks = v->free_blocks;
	pthread_mutex_unlock(&v->mu);
	if (rc)
		return rc;
	for (uint32_t s = 0; s < v->sb.max_hosts; s++) {
		if (slot_read_hb(v, s, &hb))
			vi->unreadable++;
		else if (hb.state == VMFS_HB_LIVE)
			vi->claimed++;
	}
	return 0;
}

static void print_json(const struct fsvol *fv, const struct volinfo *vi)
{
	const struct vmfs_sb *sb = &fv->v->sb;
	struct json_object *o = json_object_new_object();
	char uuid[FSVOL_UUID_STR_LEN], ver[16];

	fsvol_uuid_str(sb->uuid, uuid);
	snprintf(ver, sizeof(ver), "%u.%u", sb->major, sb->minor);
	json_object_object_add(o, "device", json_object_new_string(fv->device));
	json_object_object_add(o, "mountpoint",
			       fv->mountpoint ? json_object_new_string(fv->mountpoint) : NULL);
	json_object_object_add(o, "label", json_object_new_string(sb->label));
	json_object_object_add(o, "uuid", json_object_new_string(uuid));
	json_object_object_add(o, "format_version", json_object_new_string(ver));
	json_object_object_add(o, "size_bytes", json_object_new_int64((int64_t)sb->total_bytes));
	json_object_object_add(o, "block_size", json_object_new_int64(sb->block_size));
	json_object_object_add(o, "total_blocks", json_object_new_int64((int64_t)vi->data_blocks));
	json_object_object_add(o, "free_blocks", json_object_new_int64((int64_t)vi->free_blocks));
	json_object_object_add(o, "capacity_bytes",
			       json_object_new_int64((int64_t)(vi->data_blocks * sb->block_size)));
	json_object_object_add(o, "free_bytes",
			       json_object_new_int64((int64_t)(vi->free_blocks * sb->block_size)));
	json_object_object_add(o, "max_hosts", json_object_new_int64(sb->max_hosts));
	json_object_object_add(o, "hosts_in_use", json_object_new_int64(vi->claimed));
	json_object_object_add(o, "resource_groups", json_object_new_int64(sb->nrgs));
	json_object_object_add(o, "journal_bytes",
			       json_object_new_int64((int64_t)sb->journal_blocks * VMFS_MBLK));
	json_object_object_add(o, "heartbeat_period_ms", json_object_new_int64(sb->hb_period_ms));
	json_object_object_add(o, "created_ms",
			       json_object_new_int64((int64_t)(sb->mkfs_time_ns / 1000000)));
	vmfsctl_print_json(o);
	json_object_put(o);
}

static void print_human(const struct fsvol *fv, const struct volinfo *vi)
{
	const struct vmfs_sb *sb = &fv->v->sb;
	char uuid[FSVOL_UUID_STR_LEN], a[32], b[32], when[40];
	uint64_t cap = vi->data_blocks * sb->block_size, fr = vi->free_blocks * sb->block_size;

	fsvol_uuid_str(sb->uuid, uuid);
	vmfsctl_fmt_time(sb->mkfs_time_ns / 1000000, when, sizeof(when));
	printf("device:      %s%s%s\n", fv->device, fv->mountpoint ? ", mounted on " : "",
	       fv->mountpoint ? fv->mountpoint : "");
	printf("label:       %s\n", sb->label[0] ? sb->label : "(none)");
	printf("uuid:        %s\n", uuid);
	printf("format:      %u.%u, created %s\n", sb->major, sb->minor, when);
	fsvol_fmt_bytes(sb->total_bytes, a, sizeof(a));
	printf("size:        %s (%" PRIu64 " bytes)\n", a, sb->total_bytes);
	fsvol_fmt_bytes(cap, a, sizeof(a));
	fsvol_fmt_bytes(fr, b, sizeof(b));
	printf("capacity:    %s in %" PRIu64 " blocks (%u resource groups)\n", a, vi->data_blocks,
	       sb->nrgs);
	printf("free:        %s in %" PRIu64 " blocks (%.0f%%)\n", b, vi->free_blocks,
	       vi->data_blocks ? 100.0 * (double)vi->free_blocks / (double)vi->data_blocks : 0.0);
	fsvol_fmt_bytes(sb->block_size, a, sizeof(a));
	printf("block size:  %s (%u bytes)\n", a, sb->block_size);
	printf("hosts:       %u of %u slots in use", vi->claimed, sb->max_hosts);
	if (vi->unreadable)
		printf(", %u unreadable", vi->unreadable);
	printf(" (live or dead: vmfsctl hosts)\n");
}

int cmd_volume(int argc, char **argv)
{
	struct fsvol fv = { 0 };
	struct volinfo vi;
	const char *arg = NULL;
	bool json = false;
	int rc, ret;

	ret = vmfsctl_one_arg_json(argc, argv, "volume", &arg, &json);
	if (ret >= 0)
		return ret;
	ret = fsvol_open(arg, false, &fv);
	if (ret)
		goto out;
	rc = gather(fv.v, &vi);
	if (rc) {
		vmfsctl_err("%s: cannot read the resource groups: %s; check the volume with "
			    "vmfs-fsck", fv.device, vmfs_strerror(rc));
		ret = VMFSCTL_EXIT_FAIL;
		goto out;
	}
	if (json)
		print_json(&fv, &vi);
	else
		print_human(&fv, &vi);
out:
	fsvol_close(&fv);
	return ret;
}
