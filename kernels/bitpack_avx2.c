/* bitpack_avx2.c - AVX2 helper of the channel packer (bitpack.c): the sign bits
 * of 64 channels x 8 consecutive pixels, turned into the 8 pixels' channel words.
 *
 * Each channel's 8 pixels are one compare + VMOVMSKPS (byte c of a 64-byte
 * array: bit j = pixel j). Pixel j's word is then bit j of every byte: shifting
 * the 16-bit lanes left by 7 - j brings it to bit 7 of each byte (the bits that
 * cross from the low byte into the high byte land below bit 7 and are never
 * read), and VPMOVMSKB collects bit 7 of 32 bytes at once. Bit-identical to the
 * portable code: the same (x < 0) predicate (false for -0.0 and NaN).
 */
#include <immintrin.h>

#include "bitpack.h"

void apb_bitpack_chan_block_avx2(const float *x, size_t cstride, uint64_t *out, size_t ostride)
{
    __attribute__((aligned(32))) unsigned char m[64];
    const __m256 z = _mm256_setzero_ps();
    for (int c = 0; c < 64; c++)
        m[c] = (unsigned char)_mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_loadu_ps(x + (size_t)c * cstride), z, _CMP_LT_OQ));
    __m256i lo = _mm256_load_si256((const __m256i *)m), hi = _mm256_load_si256((const __m256i *)(m + 32));
    for (int j = 0; j < 8; j++) {
        __m128i sh = _mm_cvtsi32_si128(7 - j);
        uint32_t a = (uint32_t)_mm256_movemask_epi8(_mm256_sll_epi16(lo, sh));
        uint32_t b = (uint32_t)_mm256_movemask_epi8(_mm256_sll_epi16(hi, sh));
        out[(size_t)j * ostride] = (uint64_t)a | (uint64_t)b << 32;
    }
}
