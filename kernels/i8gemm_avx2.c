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

static void kern_avx2(int mr, int np, int K4, const int8_t *w, long ldw, const uint8_t *b,
                      long pstride, int32_t *acc, int ldacc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    for (int p = 0; p < np; p++) {
        const uint8_t *bp = b + p * pstride;
        const int8_t *wr[MR];
        for (int r = 0; r < MR; r++)
            wr[r] = w + (r < mr ? r : 0) * ldw;
        __m256i s32[MR][2];
        for (int r = 0; r < MR; r++)
            s32[r][0] = s32[r][1] = _mm256_setzero_si256();
        for (int k0 = 0; k0 < K4; k0 += CHUNK) {
            int k1 = k0 + CHUNK < K4 ? k0 + CHUNK : K4;
            __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00;
            __m256i a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int k4 = k0; k4 < k1; k4++) {
                __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + k4 * 64));
                __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + k4 * 64 + 32));
                int32_t v0, v1, v2, v3;
                __builtin_memcpy(&v0, wr[0] + 4 * k4, 4);
                __builtin_memcpy(&v1, wr[1] + 4 * k4, 4);
                __builtin_memcpy(&v2, wr[2] + 4 * k4, 4);
                __builtin_memcpy(&v3, wr[3] + 4 * k4, 4);
                __m256i w0 = _mm256_set1_epi32(v0), w1 = _mm256_set1_epi32(v1);
                __m256i w2 = _mm256_set1_epi32(v2), w3 = _mm256_set1_epi32(v3);
                a00 = _mm256_add_epi16(a00, _mm256_maddubs_epi16(b0, w0));
                a01 = _mm256_add_epi16(a01, _mm256_maddubs_epi16(b1, w0));
                a10 = _mm256_add_epi16(a10, _mm256_maddubs_epi16(b0, w1));
                a11 = _mm256_add_epi16(a11, _mm256_maddubs_epi16(b1, w1));
                a20 = _mm256_add_epi16(a20, _mm256_maddubs_epi16(b0, w2));
                a21 = _mm256_add_epi16(a21, _mm256_maddubs_epi16(b1, w2));
                a30 = _mm256_add_epi16(a30, _mm256_maddubs_epi16(b0, w3));
                a31 = _mm256_add_epi16(a31, _mm256_maddubs_epi16(b1, w3));
            }
            s32[0][0] = _mm256_add_epi32(s32[0][0], _mm256_madd_epi16(a00, ones));
            s32[0][1] = _mm256_add_epi32(s32[0][1], _mm256_madd_epi16(a01, ones));
            s32[1][0] = _mm256_add_epi32(s32[1][0], _mm256_madd_epi16(a10, ones));
            s32[1][1] = _mm256_add_epi32(s32[1][1], _mm256_madd_epi16(a11, ones));
            s32[2][0] = _mm256_add_epi32(s32[2][0], _mm256_madd_epi16(a20, ones));
            s32[2][1] = _mm256_add_epi32(s32[2][1], _mm256_madd_epi16(a21, ones));
            s32[3][0] = _mm256_add_epi32(s32[3][0], _mm256_madd_epi16(a30, ones));
            s32[3][1] = _mm256_add_epi32(s32[3][1], _mm256_madd_epi16(a31, ones));
        }
        for (int r = 0; r < mr; r++) {
            _mm256_storeu_si256((__m256i *)(acc + r * ldacc + p * 16), s32[r][0]);
            _mm256_storeu_si256((__m256i *)(acc + r * ldacc + p * 16 + 8), s32[r][1]);
        }
    }
}

const apb_i8_kernels apb_i8_kernels_avx2 = {kern_avx2, MR, 2, "avx2"};
