/* crc32c.h — CRC32C (Castagnoli), used by every on-disk record and wire frame. */
#ifndef VMFS_LIB_CRC32C_H
#define VMFS_LIB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c(0, buf, len) gives the standard CRC32C; feed the result back in to
 * continue over more bytes. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations behind crc32c(), for tests and benchmarks. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);	/* = sw without SSE4.2 */
int crc32c_hw_available(void);

#endif
