/* io.h — the one place where short reads/writes and EINTR are handled. */
#ifndef VMFS_LIB_IO_H
#define VMFS_LIB_IO_H

#include <stddef.h>
#include <sys/types.h>

/* Each returns 0 when all bytes moved, -errno on error, and -EIO for a
 * premature end of file (a short read that will not complete). */
int read_full(int fd, void *buf, size_t len) __attribute__((warn_unused_result));
int write_full(int fd, const void *buf, size_t len) __attribute__((warn_unused_result));
int pread_full(int fd, void *buf, size_t len, off_t off) __attribute__((warn_unused_result));
int pwrite_full(int fd, const void *buf, size_t len, off_t off) __attribute__((warn_unused_result));

/* Monotonic and wall clocks in milliseconds. */
unsigned long long now_mono_ms(void);
unsigned long long now_wall_ms(void);

#endif
