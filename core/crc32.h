/* crc32.h - CRC-32 (IEEE 802.3, reflected, as zlib/PNG) for file sections.
 * Kept in core so the deployable runtime needs no zlib. */
#ifndef APB_CRC32_H
#define APB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Start with crc = 0; feed chunks by passing the previous result. */
uint32_t apb_crc32(uint32_t crc, const void *data, size_t len);

#endif
