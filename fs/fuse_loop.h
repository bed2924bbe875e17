/* fuse_loop.h — the FUSE worker pool of vmfs-mount.
 *
 * Why not fuse_session_loop_mt(): its workers receive requests into
 * buffers libfuse mallocs, where the data of a WRITE starts 80 bytes in
 * (struct fuse_in_header + struct fuse_write_in).  The disk is opened
 * O_DIRECT and takes only 4096-aligned buffers, so every write was copied
 * once more, 1 MiB at a time.  Here each worker owns a receive buffer laid
 * out so that byte 80 falls on a page boundary: op_write hands the data to
 * the disk as it came from the kernel.  Every other request takes the
 * ordinary libfuse path (fuse_session_process_buf).
 *
 * The buffer of a request belongs to its worker until the handler
 * returns, so handlers must not keep pointers into it, with two
 * exceptions: a handler may take the buffer (fuse_loop_take_buffer), to
 * keep a WRITE's data in flight to the disk after it answered; and a write
 * that timed out and could not be cancelled leaves the buffer to the
 * kernel for good (diskio.h), the handler then calls
 * fuse_loop_abandon_buffer().  Either way the worker takes a new one.
 */
#ifndef VMFS_FS_FUSE_LOOP_H
#define VMFS_FS_FUSE_LOOP_H

#include "fuse_ops.h"

/* Serve se with nthreads workers until it exits (unmount, signal).
 * 0, or -errno when reading the FUSE device failed. */
int fuse_loop_run(struct fuse_session *se, int nthreads) __attribute__((warn_unused_result));

/* From a request handler on a worker: the current receive buffer may
 * still be read by the kernel; never reuse it.  No-op on other threads. */
void fuse_loop_abandon_buffer(void);

/* From a request handler on a worker: take ownership of the receive
 * buffer that data points into.  Returns the allocation to give back with
 * fuse_loop_buffer_put() (from any thread) once nothing reads it, or NULL
 * when data is not in the calling worker's buffer (another thread, or
 * libfuse's own loop): then the buffer is not the caller's to keep. */
void *fuse_loop_take_buffer(const void *data);
void fuse_loop_buffer_put(void *base);

/* From a request handler on a worker: it is about to block (a small
 * WRITE that must allocate).  A parked worker takes over waiting for
 * requests if none does.  No-op on other threads. */
void fuse_loop_may_block(void);

#endif
