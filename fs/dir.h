/* dir.h — hashed directories (linear hashing over 4 KiB buckets).
 *
 * A name hashes (CRC32C seeded per directory) to one bucket; a lookup reads
 * the directory inode, one index block and the bucket's chain (normally one
 * block), whatever the directory size.  When the average load passes
 * DIR_SPLIT_LOAD entries per bucket the next bucket in split order is split
 * in two, so growth costs one bucket rewrite at a time.  Removing an entry
 * marks its record free in place, so readdir positions stay valid.
 * All functions need vol.mu held.
 */
#ifndef VMFS_FS_DIR_H
#define VMFS_FS_DIR_H

#include <stdint.h>

#include "vol.h"

#define DIR_SPLIT_LOAD 48

/* Set up an empty directory in ino (index block + bucket 0). */
int dir_init(struct vol *v, struct vmfs_inode *dir) __attribute__((warn_unused_result));
/* Free every index and bucket block of dir. */
int dir_destroy(struct vol *v, struct vmfs_inode *dir) __attribute__((warn_unused_result));
int dir_lookup(struct vol *v, const struct vmfs_inode *dir, const char *name, uint64_t *ino,
	       uint8_t *dtype) __attribute__((warn_unused_result));
/* Add name -> ino; -EEXIST if present.  Updates and stores dir. */
int dir_add(struct vol *v, struct vmfs_inode *dir, const char *name, uint64_t ino, uint8_t dtype)
	__attribute__((warn_unused_result));
/* Remove name; -ENOENT if absent.  Updates and stores dir. */
int dir_remove(struct vol *v, struct vmfs_inode *dir, const char *name)
	__attribute__((warn_unused_result));
/* Point an existing entry at another inode (rename over an existing name). */
int dir_replace(struct vol *v, struct vmfs_inode *dir, const char *name, uint64_t ino,
		uint8_t dtype) __attribute__((warn_unused_result));

/* Iterate from cookie (0 = start).  cb returns non-zero to stop; the cookie
 * passed to cb resumes after that entry.  Cookies 1 and 2 are reserved for
 * "." and "..", which the caller emits. */
typedef int (*dir_iter_cb)(void *arg, const char *name, uint8_t name_len, uint64_t ino,
			   uint8_t dtype, uint64_t next_cookie);
int dir_iterate(struct vol *v, const struct vmfs_inode *dir, uint64_t cookie, dir_iter_cb cb,
		void *arg) __attribute__((warn_unused_result));

/* For fsck: visit every bucket/index block address of dir. */
typedef int (*dir_block_cb)(void *arg, uint64_t addr, int type);
int dir_walk_blocks(struct vol *v, const struct vmfs_inode *dir, dir_block_cb cb, void *arg)
	__attribute__((warn_unused_result));

#endif
