/* test_apb_crc.h - recomputing the CRCs of a (mutated) .apb file, so that
 * mutations reach the loader's structural checks behind the checksums: absurd
 * sizes, offsets, counts, slots and indices (docs/FORMAT.md).
 * Shared by tests/test_infer_robust.c and fuzz/fuzz_load.c.
 */
#ifndef APB_TEST_APB_CRC_H
#define APB_TEST_APB_CRC_H

#include <stddef.h>
#include <stdint.h>

#include "apbrt_internal.h"
#include "crc32.h"

/* Recomputes every section CRC, the table CRC and the header CRC (as far as the
 * mutated header/table still point inside the buffer). */
static inline void ta_fix_crcs(unsigned char *b, size_t size)
{
    if (size < 64)
        return;
    uint32_t nsec = apbrt_rd32(b + 24);
    if (nsec > 100000 || 64 + (uint64_t)nsec * 32 > size)
        nsec = 0;
    for (uint32_t k = 0; k < nsec; k++) {
        unsigned char *e = b + 64 + k * 32;
        uint64_t off = apbrt_rd64(e + 8), sz = apbrt_rd64(e + 16);
        if (off <= size && sz <= size - off)
            apbrt_wr32(e + 24, apb_crc32(0, b + off, (size_t)sz));
    }
    apbrt_wr32(b + 32, apb_crc32(0, b + 64, (size_t)nsec * 32));
    apbrt_wr32(b + 36, apb_crc32(0, b, 36));
}

#endif
