/* file.h — regular-file data operations.
 *
 * Locking contract: the caller holds the file's vnode lock (shared for
 * file_read, file_seek and file_write_fast; exclusive for the others).
 * These functions take vol.mu themselves around metadata access and never
 * hold it during data I/O.  A write that fills a hole or an unwritten block
 * allocates it with an unwritten extent in one transaction (no block can be
 * committed as allocated without its extent), writes the data without
 * vol.mu, then marks the extent written (file_write).
 *
 * Data invariants: bytes of a file's last block beyond EOF are zero (holes
 * and unwritten blocks read as zeros; writes into them write the whole
 * block; shrinking zeroes the tail), so extending a file never exposes old
 * data.  Small files (<= VMFS_INO_AREA_SIZE bytes) live inline in the inode
 * and cost no data block.
 */
#ifndef VMFS_FS_FILE_H
#define VMFS_FS_FILE_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "diskio.h"
#include "vol.h"

/* The disk requests of a read or of an aligned overwrite, prepared for
 * the caller to submit (diskio_submit: the FUSE data path answers from
 * the completion); file_read and file_write_fast are these plus
 * diskio_batch.  The vnode lock must be held from the prep until the
 * requests completed (for an asynchronous caller: an in-flight count the
 * exclusive lockers wait for, fuse_ops.c vnode_wrlock).  Release with
 * file_io_release(io, rc) where rc is the I/O's result: after -ETIMEDOUT
 * the buffer stays the kernel's (diskio.h). */
struct file_io {
	struct diskio_req *reqs;
	int nr;			/* 0: nothing to read (EOF, inline, holes) */
	void *buf;		/* owned: read data, or a write's copy; may be NULL */
	char *data;		/* read: the caller's bytes (len of them) inside buf */
	size_t len;
	bool stamp;		/* write: call file_write_stamp once written */
};
int file_read_prep(struct vol *v, uint64_t ino, uint64_t off, size_t size, struct file_io *io)
	__attribute__((warn_unused_result));
/* -EAGAIN as file_write_fast.  copy: take a copy of data (else data is
 * used in place when it is 4096-aligned, and must outlive the I/O). */
int file_write_prep(struct vol *v, uint64_t ino, const void *data, size_t size, uint64_t off,
		    bool copy, struct file_io *io) __attribute__((warn_unused_result));
/* Lazy mtime of an overwrite (file_write_fast says why). */
int file_write_stamp(struct vol *v, uint64_t ino) __attribute__((warn_unused_result));
void file_io_release(struct file_io *io, int rc);

/* Read up to size bytes at off.  *out points into *to_free (free it);
 * *len is the byte count (0 at EOF). */
int file_read(struct vol *v, uint64_t ino, uint64_t off, size_t size, char **out, size_t *len,
	      void **to_free) __attribute__((warn_unused_result));
/* Aligned overwrite of already-written blocks inside EOF; -EAGAIN when the
 * request does not qualify (use file_write under the exclusive lock).
 * Stamps mtime/ctime at most once a second per inode (file.c says why). */
int file_write_fast(struct vol *v, uint64_t ino, const void *data, size_t size, uint64_t off)
	__attribute__((warn_unused_result));
int file_write(struct vol *v, uint64_t ino, const void *data, size_t size, uint64_t off)
	__attribute__((warn_unused_result));
/* Several writes to one file in one pass (file.c file_write_many): their
 * block fills go to the disk in one batch.  rc is FILE_WRITE_TODO on the
 * way in; on the way out 0 or -errno, or still FILE_WRITE_TODO for the
 * writes to do again after the caller regrouped (the call then returns
 * VMFS_ENEEDRG; else 0). */
#define FILE_WRITE_TODO 1
#define FILE_WRITE_FILLING 2	/* inside file_write_many only */
struct file_wreq {
	const void *data;
	size_t size;
	uint64_t off;
	int rc;
};
/* With as, the blocks filled are not written here: their disk requests go
 * to as->submit (without vol.mu), which owns io from then on (release it
 * with file_fill_io_release once the requests completed) and answers 0
 * when they are on their way, after which the blocks are marked written
 * while the data may still be in flight: the caller counts it with
 * vol_data_begin/vol_data_end (vol.h) and keeps its readers off those
 * blocks until it completed.  A failed submit fails the writes (their
 * blocks stay unwritten). */
struct file_fill_io {
	struct diskio_req *reqs;
	void **bounce;		/* per request: its own buffer, or NULL (the caller's data) */
	int nr;
};
void file_fill_io_release(struct file_fill_io *io, int rc);
struct file_fill_submit {
	int (*submit)(void *arg, struct file_fill_io *io);
	void *arg;
};
int file_write_many(struct vol *v, uint64_t ino, struct file_wreq *w, int n,
		    const struct file_fill_submit *as) __attribute__((warn_unused_result));
int file_truncate(struct vol *v, uint64_t ino, uint64_t size) __attribute__((warn_unused_result));
int file_fallocate(struct vol *v, uint64_t ino, int mode, uint64_t off, uint64_t len)
	__attribute__((warn_unused_result));
/* SEEK_DATA / SEEK_HOLE; unwritten extents count as holes. */
int file_seek(struct vol *v, uint64_t ino, uint64_t off, int whence, uint64_t *res)
	__attribute__((warn_unused_result));

#endif
