/* wb.h — writes answered before their disk write completed, per file.
 *
 * vmfs-mount answers a large overwrite of a file open for exclusive write,
 * and a pass of writes filling new blocks of it, as soon as the disk
 * writes are submitted (fuse_ops.c write_early, write_fill), so the FUSE
 * round trip of the next request overlaps the disk write of this one: at
 * queue depth 1 each request otherwise waited for both in turn.  The data
 * is in the kernel's hands, on its way to the disk, as in a disk's
 * volatile write cache.  What keeps that invisible:
 *   - a read or write of this host that overlaps a write in flight waits
 *     for it (wb_wait_overlap, with the file's data lock held so nothing
 *     is marked written between the wait and the read), so this host
 *     reads what it wrote and two writes to one place land in the order
 *     they were answered; a fill's range is its whole blocks, which it
 *     writes whole and marks written before its data is on the disk;
 *   - a commit waits for the data of every block marked so (vol.h
 *     vol_data_begin), so no transaction makes a block written first;
 *   - fsync, fdatasync, close (FLUSH), the last release and the drain
 *     ioctl (VMFS_IOC_DRAIN) wait for every write in flight (wb_drain),
 *     and so do truncate, fallocate and appends (wb_wait_all), which may
 *     free or zero blocks anywhere in the file;
 *   - a fill whose data is lost after its answer leaves a block marked
 *     written over old bytes: the volume fails (vol_data_end), so that
 *     mark is never committed and reads get EIO;
 *   - only files held under the exclusive open lock qualify: no other host
 *     can open them until this host closes them (drained first) or a
 *     migration's handoff moves the lock, before which the hypervisor
 *     drains (vmfs-vmm at its pause; QEMU flushes every disk when it stops
 *     the VM);
 *   - a write that fails after its answer is reported, once, by the next
 *     fsync, fdatasync or close of the file (as the page cache reports a
 *     failed writeback), and logged.
 * At most WB_MAX writes (or passes of fills) of a file are in flight this
 * way; past that a write is answered once on the disk, which bounds the
 * memory held.
 */
#ifndef VMFS_FS_WB_H
#define VMFS_FS_WB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define WB_MAX 4

struct wb_range {
	uint64_t off, len;
	struct wb_range *next;
};

struct wb_file {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct wb_range *list;	/* in flight, protected by mu */
	atomic_int n;		/* entries on list; read without mu to skip waits */
	int err;		/* first failure not reported yet, protected by mu */
};

void wb_init(struct wb_file *f);
void wb_destroy(struct wb_file *f);
/* Wait until no write in flight overlaps [off, off + len).  Callers hold
 * the vnode's data lock (shared or exclusive), so no fill marks blocks
 * written in between; a fill takes it exclusively and so waits only once,
 * before it counts its own range. */
void wb_wait_overlap(struct wb_file *f, uint64_t off, uint64_t len);
/* Count r = [off, off + len) in flight; false (nothing counted) when
 * WB_MAX are already. */
bool wb_begin(struct wb_file *f, struct wb_range *r, uint64_t off, uint64_t len);
/* r's disk write finished with rc (0 or -errno).  After this call f may be
 * freed by a waiter: the caller must not touch it again. */
void wb_end(struct wb_file *f, struct wb_range *r, int rc);
/* Wait until no write is in flight (their failures stay to report). */
void wb_wait_all(struct wb_file *f);
/* Wait for every write in flight; their first failure not yet reported
 * (then reported: the next call returns 0), or 0. */
int wb_drain(struct wb_file *f) __attribute__((warn_unused_result));

#endif
