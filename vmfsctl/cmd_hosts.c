/* cmd_hosts.c — vmfsctl hosts: a vmfs volume's host slots, their
 * heartbeats and journals.
 *
 * Live or dead is decided the way a mount decides it (slot_probe in
 * fs/slot.c, the one place for that rule): a claimed slot whose heartbeat
 * counter advances within 1.5 heartbeat periods is live, one whose counter
 * stands still is dead.  So the command takes about 1.5 periods whenever a
 * slot is claimed.  Format 1.0 records no "being recovered" state: a dead
 * slot with a dirty journal is what the next mount (or vmfs-fsck) recovers.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsvol.h"
#include "io.h"
#include "slot.h"
#include "vmfsctl.h"

enum slot_state { SL_FREE, SL_LIVE, SL_DEAD, SL_DAMAGED };
static const char *const state_name[] = { "free", "live", "dead", "damaged" };

enum jstate { J_CLEAN, J_DIRTY, J_DAMAGED };
static const char *const jstate_name[] = { "clean", "dirty", "damaged" };

struct slotinfo {
	enum slot_state state;
	struct vmfs_hb hb;	/* second sample; valid unless DAMAGED */
	int64_t age_ms;		/* since the last heartbeat write; -1 unknown */
	enum jstate journal;
	int err;		/* why DAMAGED / journal damaged */
};

/* Two samples (inside slot_probe), then the newest record of each slot for
 * what is shown.  Damage to one slot is shown on that slot only. */
static int gather(struct vol *v, struct slotinfo *si, unsigned *sample_ms)
{
	uint64_t live, dead, bad, ckpt, last;
	unsigned long long now;
	bool dirty;
	int rc;

	*sample_ms = 0;
	for (uint32_t s = 0; s < v->sb.max_hosts; s++) {
		/* one claimed slot makes slot_probe sleep; say how long */
		if (!slot_read_hb(v, s, &si[s].hb) && si[s].hb.state == VMFS_HB_LIVE) {
			unsigned p = si[s].hb.period_ms > v->sb.hb_period_ms ?
				si[s].hb.period_ms : v->sb.hb_period_ms;

			if (p > 60000)	/* slot_probe's cap */
				p = 60000;
			if (p * 3 / 2 > *sample_ms)
				*sample_ms = p * 3 / 2;
		}
	}
	rc = slot_probe(v, true, &live, &dead, &bad);
	if (rc)
		return rc;
	now = now_wall_ms();
	for (uint32_t s = 0; s < v->sb.max_hosts; s++) {
		struct slotinfo *p = &si[s];

		p->age_ms = -1;
		/* a slot in bad is read again for the reason (and may have
		 * been rewritten whole since) */
		rc = slot_read_hb(v, s, &p->hb);
		if (rc) {
			p->err = rc;
			p->state = SL_DAMAGED;
		} else if (p->hb.state != VMFS_HB_LIVE) {
			p->state = SL_FREE;	/* also: released between the samples */
		} else if (dead & (1ull << s)) {
			p->state = SL_DEAD;
		} else {
			p->state = SL_LIVE;	/* advanced, or claimed meanwhile */
		}
		if (p->state != SL_DAMAGED && p->hb.wall_ms)
			p->age_ms = now > p->hb.wall_ms ? (int64_t)(now - p->hb.wall_ms) : 0;
		rc = journal_scan(v, s, &ckpt, &last, &dirty);
		if (rc) {
			p->journal = J_DAMAGED;
			if (!p->err)
				p->err = rc;
		} else {
			p->journal = dirty ? J_DIRTY : J_CLEAN;
		}
	}
	return 0;
}

static void print_json(const struct fsvol *fv, const struct slotinfo *si, unsigned sample_ms)
{
	const struct vmfs_sb *sb = &fv->v->sb;
	struct json_object *o = json_object_new_object(), *arr = json_object_new_array();
	char uuid[FSVOL_UUID_STR_LEN];

	fsvol_uuid_str(sb->uuid, uuid);
	json_object_object_add(o, "device", json_object_new_string(fv->device));
	json_object_object_add(o, "mountpoint",
			       fv->mountpoint ? json_object_new_string(fv->mountpoint) : NULL);
	json_object_object_add(o, "uuid", json_object_new_string(uuid));
	json_object_object_add(o, "heartbeat_period_ms", json_object_new_int64(sb->hb_period_ms));
	json_object_object_add(o, "sample_interval_ms", json_object_new_int64(sample_ms));
	for (uint32_t s = 0; s < sb->max_hosts; s++) {
		const struct slotinfo *p = &si[s];
		struct json_object *e = json_object_new_object();
		bool known = p->state != SL_DAMAGED;

		json_object_object_add(e, "slot", json_object_new_int64(s));
		json_object_object_add(e, "state", json_object_new_string(state_name[p->state]));
		json_object_object_add(e, "host", known && p->hb.host[0] ?
				       json_object_new_string(p->hb.host) : NULL);
		json_object_object_add(e, "pid", known && p->hb.pid ?
				       json_object_new_int64(p->hb.pid) : NULL);
		json_object_object_add(e, "counter", known ?
				       json_object_new_int64((int64_t)p->hb.counter) : NULL);
		json_object_object_add(e, "age_ms", p->age_ms >= 0 ?
				       json_object_new_int64(p->age_ms) : NULL);
		json_object_object_add(e, "journal", json_object_new_string(jstate_name[p->journal]));
		json_object_object_add(e, "error", p->err ?
				       json_object_new_string(vmfs_strerror(p->err)) : NULL);
		json_object_array_add(arr, e);
	}
	json_object_object_add(o, "slots", arr);
	vmfsctl_print_json(o);
	json_object_put(o);
}

static void print_human(const struct fsvol *fv, const struct slotinfo *si, unsigned sample_ms)
{
	const struct vmfs_sb *sb = &fv->v->sb;
	char uuid[FSVOL_UUID_STR_LEN];

	fsvol_uuid_str(sb->uuid, uuid);
	printf("volume \"%s\" %s on %s%s%s\n", sb->label, uuid, fv->device,
	       fv->mountpoint ? ", mounted on " : "", fv->mountpoint ? fv->mountpoint : "");
	printf("heartbeat period %u ms", sb->hb_period_ms);
	if (sample_ms)
		printf(", sampled %u ms apart", sample_ms);
	printf("\n%-4s  %-7s  %-20s  %-8s  %-10s  %-8s  %s\n", "slot", "state", "host", "pid",
	       "counter", "age", "journal");
	for (uint32_t s = 0; s < sb->max_hosts; s++) {
		const struct slotinfo *p = &si[s];
		char age[24] = "-", pid[16] = "-", counter[24] = "-";

		if (p->age_ms >= 0)
			snprintf(age, sizeof(age), "%.1fs", (double)p->age_ms / 1000);
		if (p->state != SL_DAMAGED) {
			if (p->hb.pid)
				snprintf(pid, sizeof(pid), "%u", p->hb.pid);
			snprintf(counter, sizeof(counter), "%" PRIu64, p->hb.counter);
		}
		printf("%-4u  %-7s  %-20s  %-8s  %-10s  %-8s  %s", s, state_name[p->state],
		       p->state != SL_DAMAGED && p->hb.host[0] ? p->hb.host : "-", pid, counter, age,
		       jstate_name[p->journal]);
		if (p->state == SL_DEAD && p->journal == J_DIRTY)
			printf("  (the next mount recovers it)");
		if (p->err)
			printf("  (%s; run vmfs-fsck)", vmfs_strerror(p->err));
		printf("\n");
	}
}

int cmd_hosts(int argc, char **argv)
{
	struct slotinfo *si = NULL;
	struct fsvol fv = { 0 };
	unsigned sample_ms;
	const char *arg = NULL;
	bool json = false;
	int rc, ret;

	ret = vmfsctl_one_arg_json(argc, argv, "hosts", &arg, &json);
	if (ret >= 0)
		return ret;
	ret = fsvol_open(arg, false, &fv);
	if (ret)
		goto out;
	si = calloc(fv.v->sb.max_hosts, sizeof(*si));
	if (!si) {
		vmfsctl_err("out of memory");
		ret = VMFSCTL_EXIT_FAIL;
		goto out;
	}
	rc = gather(fv.v, si, &sample_ms);
	if (rc) {
		vmfsctl_err("%s: cannot read the host slots: %s", fv.device, vmfs_strerror(rc));
		ret = VMFSCTL_EXIT_FAIL;
		goto out;
	}
	if (json)
		print_json(&fv, si, sample_ms);
	else
		print_human(&fv, si, sample_ms);
out:
	free(si);
	fsvol_close(&fv);
	return ret;
}
