/* bitpack_avx2.c - AVX2 helper of the channel packer (bitpack.c): the sign (or
 * 2-bit sgn / mag) bits of 64 channels x 8 consecutive pixels, turned into the 8 pixels' channel words.
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

/* Pixel j's 64-bit word from the 64 per-channel masks m[c] (bit j = pixel j). */
static inline void words8(const unsigned char *m, uint64_t *out, size_t ostride)
{
    __m256i lo = _mm256_load_si256((const __m256i *)m), hi = _mm256_load_si256((const __m256i *)(m + 32));
    for (int j = 0; j < 8; j++) {
        __m128i sh = _mm_cvtsi32_si128(7 - j);
        uint32_t a = (uint32_t)_mm256_movemask_epi8(_mm256_sll_epi16(lo, sh));
        uint32_t b = (uint32_t)_mm256_movemask_epi8(_mm256_sll_epi16(hi, sh));
        out[(size_t)j * ostride] = (uint64_t)a | (uint64_t)b << 32;
    }
}

void apb_bitpack_chan_block_avx2(const float *x, size_t cstride, float s, int planes,
                                 uint64_t *out0, uint64_t *out1, size_t ostride)
{
    __attribute__((aligned(32))) unsigned char m0[64], m1[64];
    const __m256 z = _mm256_setzero_ps();
    if (planes == 1) {
        for (int c = 0; c < 64; c++)
            m0[c] = (unsigned char)_mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_loadu_ps(x + (size_t)c * cstride), z, _CMP_LT_OQ));
    } else {
        /* the 2-bit rule of quant2() on q = x / s: sgn = !(q >= 0), mag = !(q >= -1) | (q >= 1) */
        const __m256 vs = _mm256_set1_ps(s), m1f = _mm256_set1_ps(-1.0f), p1f = _mm256_set1_ps(1.0f);
        for (int c = 0; c < 64; c++) {
            __m256 q = _mm256_div_ps(_mm256_loadu_ps(x + (size_t)c * cstride), vs);
            m0[c] = (unsigned char)_mm256_movemask_ps(_mm256_cmp_ps(q, z, _CMP_NGE_UQ));
            m1[c] = (unsigned char)_mm256_movemask_ps(
                _mm256_or_ps(_mm256_cmp_ps(q, m1f, _CMP_NGE_UQ), _mm256_cmp_ps(q, p1f, _CMP_GE_OQ)));
        }
        words8(m1, out1, ostride);
    }
    words8(m0, out0, ostride);
}
