/* slot.h — host slots: heartbeat, claim/release, recovery, orphan list.
 *
 * A slot is LIVE while its owner's heartbeat counter advances every
 * hb_period_ms.  A LIVE slot whose counter does not move for 1.5 periods
 * belongs to a dead host.  Single-host rule (until the lock manager): a
 * mount refuses while any other slot is live, and recovers every dead
 * slot itself (journal replay, orphan list) before claiming one.
 */
#ifndef VMFS_FS_SLOT_H
#define VMFS_FS_SLOT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vol.h"

int slot_read_hb(struct vol *v, uint32_t slot, struct vmfs_hb *hb) __attribute__((warn_unused_result));
int slot_write_hb(struct vol *v, const struct vmfs_hb *hb) __attribute__((warn_unused_result));

/* Read every heartbeat; if any is LIVE, wait 1.5 periods and read again.
 * Bit i of *live is set for slots whose counter advanced, of *dead for LIVE
 * slots whose counter stood still.  Heartbeat damage is reported and
 * returned unless tolerate_bad (then *bad gets the slot bits). */
int slot_probe(struct vol *v, bool tolerate_bad, uint64_t *live, uint64_t *dead, uint64_t *bad)
	__attribute__((warn_unused_result));

/* Mount-time: probe, refuse if another host is live, replay every dirty
 * journal, claim want (or the first free slot if want < 0) and mark it
 * live.  Sets v->slot and v->seq.  *recovered gets slots to clean up after
 * alloc_init (orphan lists). */
int slot_claim(struct vol *v, int want, const char *host, uint64_t *recovered)
	__attribute__((warn_unused_result));
int slot_release(struct vol *v) __attribute__((warn_unused_result));

/* Cluster mode (the lock manager arbitrates slots through the locks
 * "s<slot>", see locking.h; the caller holds that lock):
 * slot_take marks slot LIVE as ours and sets v->slot, v->seq;
 * slot_advancing reads the heartbeat twice, 1.5 periods apart (at once
 * when it is not LIVE) and says whether its counter moved;
 * slot_mark_free marks a recovered slot FREE. */
int slot_take(struct vol *v, uint32_t slot, const char *host) __attribute__((warn_unused_result));
int slot_advancing(struct vol *v, uint32_t slot, bool *live) __attribute__((warn_unused_result));
int slot_mark_free(struct vol *v, uint32_t slot) __attribute__((warn_unused_result));

/* Heartbeat writer thread of a claimed slot. */
struct hb_thread {
	struct vol *v;
	pthread_t tid;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool stop, running;
	struct vmfs_hb hb;	/* protected by mu */
};
int hb_start(struct hb_thread *t, struct vol *v) __attribute__((warn_unused_result));
void hb_stop(struct hb_thread *t);

/* Orphans: inodes with nlink 0 that are still open.  Listed in the slot so
 * a crash does not leak them.  Need vol.mu. */
int orphan_add(struct vol *v, uint64_t ino) __attribute__((warn_unused_result));
int orphan_del(struct vol *v, uint64_t ino) __attribute__((warn_unused_result));
/* 1 if ino is on this host's orphan list, 0 if not, or an error. */
int orphan_listed(struct vol *v, uint64_t ino) __attribute__((warn_unused_result));
/* Free entries left in this host's orphan list, or a negative error. */
int orphan_room(struct vol *v) __attribute__((warn_unused_result));
/* Free every inode listed by slot and empty the list. */
int orphan_process(struct vol *v, uint32_t slot) __attribute__((warn_unused_result));

#endif
