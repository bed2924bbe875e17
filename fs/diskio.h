/* diskio.h — access to the shared disk.
 *
 * Two backends behind one interface: the mount opens the disk O_DIRECT and
 * drives it with libaio (one io_context per calling thread, which reaps its
 * own completions: no hand-off to another thread per request); the offline
 * tools (mkfs, fsck) use plain pread/pwrite.  Buffers for the aio backend
 * must come from diskio_alloc() (4096-aligned), and offsets and lengths must
 * be multiples of 4096.
 *
 * Buffer ownership after a timeout: if a batch does not complete within the
 * I/O timeout and io_cancel() fails, the requests still belong to the kernel
 * and may land (or fill the buffers) at any later time.  diskio_batch() then
 * returns -ETIMEDOUT and the buffers of that batch belong to the kernel for
 * good: the caller must neither free nor reuse them (they are leaked on
 * purpose, and so is the calling thread's io_context, which io_destroy()
 * would block on).  The device is marked failed: every later I/O returns
 * -EIO, because a write that lands late may overwrite newer data.
 */
#ifndef VMFS_FS_DISKIO_H
#define VMFS_FS_DISKIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct diskio;

struct diskio_req {
	void *buf;		/* 4096-aligned for the aio backend */
	size_t len;
	uint64_t off;
	bool write;
};

enum diskio_mode {
	DISKIO_SYNC,		/* pread/pwrite, page cache; offline tools */
	DISKIO_AIO_DIRECT,	/* O_DIRECT + libaio; the mount */
};

int diskio_open(const char *path, enum diskio_mode mode, bool rdonly, struct diskio **out)
	__attribute__((warn_unused_result));
/* Only once no other thread uses the disk any more. */
void diskio_close(struct diskio *d);
uint64_t diskio_size(const struct diskio *d);
int diskio_fd(const struct diskio *d);
/* I/O timeout for the aio backend, milliseconds (default 60000). */
void diskio_set_timeout(struct diskio *d, unsigned ms);
/* Self-fencing (DESIGN.md decision 3): while fenced every request fails
 * with -EIO before it reaches the disk, so a host whose lease lapsed
 * writes nothing more to the shared disk.  Callable from any thread. */
void diskio_fence(struct diskio *d, bool fenced);
bool diskio_fenced(const struct diskio *d);
void *diskio_alloc(size_t len);
/* Perform every request; 0 when all moved fully, else the first error. */
int diskio_batch(struct diskio *d, struct diskio_req *reqs, int n)
	__attribute__((warn_unused_result));
int diskio_pread(struct diskio *d, void *buf, size_t len, uint64_t off)
	__attribute__((warn_unused_result));
int diskio_pwrite(struct diskio *d, const void *buf, size_t len, uint64_t off)
	__attribute__((warn_unused_result));
/* Asynchronous batches (aio backend only).  diskio_submit() queues the
 * requests on a context shared by the whole mount and returns at once;
 * a reaper thread calls done(arg, rc) once every request of the batch
 * completed: rc 0 when all moved fully, else the first error.  This is
 * the FUSE data path's: the worker that received a request goes back to
 * the device at once instead of sleeping until the disk answers, and the
 * reaper answers several completions per wake-up.
 * Returns 0 when done will be called (exactly once: on the reaper thread,
 * or, when the kernel refuses the requests, on whichever thread submitted
 * them, maybe the caller before diskio_submit returns), or a negative
 * errno when nothing was queued (then done is never called): -EIO failed
 * or fenced, -EOPNOTSUPP not the aio backend or no kernel aio context
 * (use diskio_batch), -ENOMEM.  Batches queued by several threads at once
 * go to the kernel in one io_submit (diskio.c: fewer doorbells).
 * Timeouts as for diskio_batch: a batch still out after the I/O timeout
 * gets done(arg, -ETIMEDOUT), its buffers stay the kernel's, the device is
 * failed.  done must not block for long (it holds up every completion). */
typedef void (*diskio_done_fn)(void *arg, int rc);
int diskio_submit(struct diskio *d, const struct diskio_req *reqs, int n, diskio_done_fn done,
		  void *arg) __attribute__((warn_unused_result));
/* Wait until no batch submitted by diskio_submit is outstanding (their
 * done callbacks have returned).  Before diskio_close, and before tearing
 * down whatever the callbacks use. */
void diskio_drain(struct diskio *d);
/* Make completed writes durable (fdatasync: a cache flush on a device). */
int diskio_sync(struct diskio *d) __attribute__((warn_unused_result));

#endif
