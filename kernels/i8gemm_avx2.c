/* i8gemm_avx2.c - AVX2 micro-kernel of the binary x 8-bit GEMM (i8gemm.h).
 *
 * 4 rows x 16 columns (one panel, two ymm of 8 columns x 4 bytes). Per group of
 * 4 k: VPMADDUBSW(activation bytes (u8), broadcast weight bytes (s8)) gives
 * 16-bit sums of 2 products, each |.| <= 2*255 (weights are +-1 or 0), so 64
 * groups add up to at most 32640 and fit int16 without saturating; every 64
 * groups VPMADDWD with ones widens the 8 partial sums into the int32 tile.
 * That is 2 instructions per 32 multiply-adds instead of 3.
 */
#include <immintrin.h>

#include "i8gemm.h"

#define MR 4
#define CHUNK 64 /* k4 groups per int16 accumulation */

static inline int32_t load32(const int8_t *p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* c[0..15] += the int32 pair sums of the int16 partials (lo: columns 0-7, hi: 8-15) */
static inline void widen_add(int32_t *c, __m256i lo, __m256i hi)
{
    const __m256i ones = _mm256_set1_epi16(1);
    _mm256_storeu_si256((__m256i *)c,
                        _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)c), _mm256_madd_epi16(lo, ones)));
    _mm256_storeu_si256((__m256i *)(c + 8), _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(c + 8)),
                                                              _mm256_madd_epi16(hi, ones)));
}

static void kern_avx2(int mr, int np, int K4, const int8_t *w, long ldw, const uint8_t *b,
                      long pstride, int32_t *acc, int ldacc)
{
    const int8_t *wr[MR];
    for (int r = 0; r < MR; r++)
        wr[r] = w + (r < mr ? r : 0) * ldw;
    /* the int32 sums live in acc (memory): in registers they would crowd out the
     * eight int16 accumulators the inner loop needs (the compiler then spilled one) */
    int32_t spare[(MR - 1) * 2 * APB_I8_PANEL];
    for (int p = 0; p < np; p++) {
        const uint8_t *bp = b + p * pstride;
        int32_t *c[MR];
        for (int r = 0; r < MR; r++) {
            c[r] = r < mr ? acc + r * ldacc + p * APB_I8_PANEL : spare + (r - 1) * 2 * APB_I8_PANEL;
            __builtin_memset(c[r], 0, APB_I8_PANEL * sizeof(int32_t));
        }
        for (int k0 = 0; k0 < K4; k0 += CHUNK) {
            int k1 = k0 + CHUNK < K4 ? k0 + CHUNK : K4;
            __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00;
            __m256i a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int k4 = k0; k4 < k1; k4++) {
                __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + k4 * 64));
                __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + k4 * 64 + 32));
                __m256i w0 = _mm256_set1_epi32(load32(wr[0] + 4 * k4));
                __m256i w1 = _mm256_set1_epi32(load32(wr[1] + 4 * k4));
                a00 = _mm256_add_epi16(a00, _mm256_maddubs_epi16(b0, w0));
                a01 = _mm256_add_epi16(a01, _mm256_maddubs_epi16(b1, w0));
                a10 = _mm256_add_epi16(a10, _mm256_maddubs_epi16(b0, w1));
                a11 = _mm256_add_epi16(a11, _mm256_maddubs_epi16(b1, w1));
                __m256i w2 = _mm256_set1_epi32(load32(wr[2] + 4 * k4));
                __m256i w3 = _mm256_set1_epi32(load32(wr[3] + 4 * k4));
                a20 = _mm256_add_epi16(a20, _mm256_maddubs_epi16(b0, w2));
                a21 = _mm256_add_epi16(a21, _mm256_maddubs_epi16(b1, w2));
                a30 = _mm256_add_epi16(a30, _mm256_maddubs_epi16(b0, w3));
                a31 = _mm256_add_epi16(a31, _mm256_maddubs_epi16(b1, w3));
            }
            widen_add(c[0], a00, a01);
            widen_add(c[1], a10, a11);
            widen_add(c[2], a20, a21);
            widen_add(c[3], a30, a31);
        }
    }
}

const apb_i8_kernels apb_i8_kernels_avx2 = {kern_avx2, MR, 2, "avx2"};
