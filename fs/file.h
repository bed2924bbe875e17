/* file.h — regular-file data operations.
 *
 * Locking contract: the caller holds the file's vnode lock (shared for
 * file_read, file_seek and file_write_fast; exclusive for the others).
 * These functions take vol.mu themselves around metadata access and never
 * hold it during data I/O, except when a write fills a hole or an unwritten
 * block: then the block is written under vol.mu so the allocation, the data
 * and the extent all land in the same transaction (no block can be committed
 * as allocated without its extent).
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

#include "vol.h"

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
int file_truncate(struct vol *v, uint64_t ino, uint64_t size) __attribute__((warn_unused_result));
int file_fallocate(struct vol *v, uint64_t ino, int mode, uint64_t off, uint64_t len)
	__attribute__((warn_unused_result));
/* SEEK_DATA / SEEK_HOLE; unwritten extents count as holes. */
int file_seek(struct vol *v, uint64_t ino, uint64_t off, int whence, uint64_t *res)
	__attribute__((warn_unused_result));

#endif
