/* sgemm_avx2.c - AVX2+FMA sgemm micro-kernel (6 x 16 register tile) and a
 * transposing pack for row-major op(A) panels.
 *
 * The kernel keeps 12 ymm accumulators (6 rows x 2 vectors of 8 columns), loads
 * one packed B row (2 ymm) and broadcasts 6 A values per k: 15 of 16 registers.
 * Edges use maskload/maskstore so C is never touched outside mr x nr.
 * The pack transposes 4 rows x 8 k at a time with unpack/shuffle, which is several
 * times faster than the scalar strided copy for the common non-transposed A.
 * Both are also used by the AVX-512 level (the pack is ISA-neutral in effect).
 * Contract: see sgemm_internal.h.
 */
#include <immintrin.h>

#include "sgemm_internal.h"

#define KMR 6
#define KNR 16

static __m256i edge_mask(int n)
{
    /* lane j active iff j < n (n clipped to [0,8]) */
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n < 0 ? 0 : n > 8 ? 8 : n), idx);
}

/* IND == 0: B row k at pb + k*ldpb (16 consecutive floats). IND == 1: its two
 * 8-float halves at pb + boff[k] and pb1 + boff[k] (the indirect kernel reading a
 * convolution's im2col matrix from the padded image); the arithmetic is the same
 * either way, so are the results. */
static inline __attribute__((always_inline)) void
kernel_body(const int IND, int kc, const float *pa, const float *pb, long ldpb, const float *pb1,
            const long *boff, float *c, long ldc, float alpha, float beta, int mr, int nr)
{
    __m256 acc[KMR][2];
#pragma GCC unroll 6
    for (int i = 0; i < KMR; i++) {
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
    }
    for (int i = 0; i < mr; i++)
        _mm_prefetch((const char *)(c + (long)i * ldc), _MM_HINT_T0);
    for (int k = 0; k < kc; k++) {
        __m256 b0, b1;
        if (IND) {
            b0 = _mm256_loadu_ps(pb + boff[k]);
            b1 = _mm256_loadu_ps(pb1 + boff[k]);
        } else {
            b0 = _mm256_loadu_ps(pb);
            b1 = _mm256_loadu_ps(pb + 8);
        }
#pragma GCC unroll 6
        for (int i = 0; i < KMR; i++) {
            __m256 a = _mm256_broadcast_ss(pa + i);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
        pa += KMR;
        if (!IND)
            pb += ldpb;
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (mr == KMR && nr == KNR) {
#pragma GCC unroll 6
        for (int i = 0; i < KMR; i++) {
            float *ci = c + i * ldc;
            __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
                r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
            }
            _mm256_storeu_ps(ci, r0);
            _mm256_storeu_ps(ci + 8, r1);
        }
        return;
    }
    __m256i m0 = edge_mask(nr), m1 = edge_mask(nr - 8);
#pragma GCC unroll 6
    for (int i = 0; i < KMR; i++) {
        if (i >= mr)
            break;
        float *ci = c + i * ldc;
        __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m0), r0);
            r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m1), r1);
        }
        _mm256_maskstore_ps(ci, m0, r0);
        _mm256_maskstore_ps(ci + 8, m1, r1);
    }
}

void apb_sgemm_kernel_avx2_6x16(int kc, const float *pa, const float *pb, long ldpb,
                                float *c, long ldc, float alpha, float beta, int mr, int nr)
{
    kernel_body(0, kc, pa, pb, ldpb, NULL, NULL, c, ldc, alpha, beta, mr, nr);
}

void apb_sgemm_ikernel_avx2_6x16(int kc, const float *pa, const float *b0, const float *b1,
                                 const long *boff, float *c, long ldc, float alpha, float beta,
                                 int mr, int nr)
{
    kernel_body(1, kc, pa, b0, 0, b1, boff, c, ldc, alpha, beta, mr, nr);
}

/* 4 rows x 8 k of src -> dst[k*MR + 0..3] for k = 0..7 */
static inline void transpose_4x8(const float *s, long lda, int MR, float *d)
{
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lda);
    __m256 r2 = _mm256_loadu_ps(s + 2 * lda), r3 = _mm256_loadu_ps(s + 3 * lda);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    _mm_storeu_ps(d + 0 * MR, _mm256_castps256_ps128(u0));
    _mm_storeu_ps(d + 1 * MR, _mm256_castps256_ps128(u1));
    _mm_storeu_ps(d + 2 * MR, _mm256_castps256_ps128(u2));
    _mm_storeu_ps(d + 3 * MR, _mm256_castps256_ps128(u3));
    _mm_storeu_ps(d + 4 * MR, _mm256_extractf128_ps(u0, 1));
    _mm_storeu_ps(d + 5 * MR, _mm256_extractf128_ps(u1, 1));
    _mm_storeu_ps(d + 6 * MR, _mm256_extractf128_ps(u2, 1));
    _mm_storeu_ps(d + 7 * MR, _mm256_extractf128_ps(u3, 1));
}

void apb_sgemm_pack_t_avx2(const float *src, long lda, int mr, int kc, int MRp, float *dst)
{
    int i = 0;
    for (; i + 4 <= mr; i += 4) {
        const float *s = src + (long)i * lda;
        int k = 0;
        for (; k + 8 <= kc; k += 8)
            transpose_4x8(s + k, lda, MRp, dst + (long)k * MRp + i);
        for (; k < kc; k++)
            for (int r = 0; r < 4; r++)
                dst[(long)k * MRp + i + r] = s[(long)r * lda + k];
    }
    for (; i < mr; i++) {
        const float *s = src + (long)i * lda;
        for (int k = 0; k < kc; k++)
            dst[(long)k * MRp + i] = s[k];
    }
    for (; i < MRp; i++)
        for (int k = 0; k < kc; k++)
            dst[(long)k * MRp + i] = 0.0f;
}
