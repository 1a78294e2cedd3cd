/* spmm_avx2.c - AVX2 column-chunk kernels of apb_spmm: the 64-column chunk of one
 * output row is processed as two 32-column halves in 4 ymm each (8 of 16
 * registers), FMAs streaming the row's nonzeros; tails use vmaskmov.
 * apb_spmm_offset_avx2 (the direct sparse convolution, always 64 readable
 * columns) keeps the whole chunk in 8 ymm: 8 independent FMA chains, enough to
 * cover the FMA latency, where one 4-register half waits on it. */
#include <immintrin.h>

#include "spmm.h"

static void half(const apb_csr *R, int m, int n0, int nc, const float *X, int ldx, float *Y,
                 int ldy)
{
    __m256i k[4];
    for (int i = 0; i < 4; i++) {
        int r = nc - 8 * i;
        k[i] = _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    float *y = Y + (size_t)m * ldy + n0;
    __m256 a0 = _mm256_maskload_ps(y, k[0]), a1 = _mm256_maskload_ps(y + 8, k[1]);
    __m256 a2 = _mm256_maskload_ps(y + 16, k[2]), a3 = _mm256_maskload_ps(y + 24, k[3]);
    int64_t e0 = R->row_ptr[m], e1 = R->row_ptr[m + 1];
    if (nc >= 32) {
        for (int64_t e = e0; e < e1; e++) {
            const float *x = X + (size_t)apb_csr_col(R, e) * ldx + n0;
            __m256 v = _mm256_set1_ps(R->val[e]);
            a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x), a0);
            a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 8), a1);
            a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 16), a2);
            a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 24), a3);
        }
    } else {
        for (int64_t e = e0; e < e1; e++) {
            const float *x = X + (size_t)apb_csr_col(R, e) * ldx + n0;
            __m256 v = _mm256_set1_ps(R->val[e]);
            a0 = _mm256_fmadd_ps(v, _mm256_maskload_ps(x, k[0]), a0);
            a1 = _mm256_fmadd_ps(v, _mm256_maskload_ps(x + 8, k[1]), a1);
            a2 = _mm256_fmadd_ps(v, _mm256_maskload_ps(x + 16, k[2]), a2);
            a3 = _mm256_fmadd_ps(v, _mm256_maskload_ps(x + 24, k[3]), a3);
        }
    }
    _mm256_maskstore_ps(y, k[0], a0);
    _mm256_maskstore_ps(y + 8, k[1], a1);
    _mm256_maskstore_ps(y + 16, k[2], a2);
    _mm256_maskstore_ps(y + 24, k[3], a3);
}

void apb_spmm_chunk_avx2(const apb_csr *R, int m0, int m1, int n0, int nc, const float *X,
                         int ldx, float *Y, int ldy)
{
    for (int m = m0; m < m1; m++) {
        half(R, m, n0, nc < 32 ? nc : 32, X, ldx, Y, ldy);
        if (nc > 32)
            half(R, m, n0 + 32, nc - 32, X, ldx, Y, ldy);
    }
}

/* 8 floats of plane element `at` on, by kind: 0 floats, 1 signed bytes (binary),
 * 2 unsigned codes times s, 3 signed codes times s */
static inline __attribute__((always_inline)) __m256 ld8(const void *X, long at, int kind, __m256 s)
{
    if (kind == 0)
        return _mm256_loadu_ps((const float *)X + at);
    __m128i b = _mm_loadl_epi64((const __m128i *)((const uint8_t *)X + at));
    __m256 f = _mm256_cvtepi32_ps(kind == 2 ? _mm256_cvtepu8_epi32(b) : _mm256_cvtepi8_epi32(b));
    return kind == 1 ? f : _mm256_mul_ps(f, s);
}

/* The whole 64-column chunk in 8 named ymm (an __m256 array was kept on the
 * stack by gcc): 8 independent FMA chains. */
static inline __attribute__((always_inline)) void offset_t(const apb_csr *R, int m0, int m1, const void *X,
                                                           int kind, float step, float *out)
{
    const __m256 s = _mm256_set1_ps(step);
    for (int m = m0; m < m1; m++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++) {
            long at = (long)apb_csr_col(R, e);
            __m256 v = _mm256_set1_ps(R->val[e]);
            a0 = _mm256_fmadd_ps(v, ld8(X, at, kind, s), a0);
            a1 = _mm256_fmadd_ps(v, ld8(X, at + 8, kind, s), a1);
            a2 = _mm256_fmadd_ps(v, ld8(X, at + 16, kind, s), a2);
            a3 = _mm256_fmadd_ps(v, ld8(X, at + 24, kind, s), a3);
            a4 = _mm256_fmadd_ps(v, ld8(X, at + 32, kind, s), a4);
            a5 = _mm256_fmadd_ps(v, ld8(X, at + 40, kind, s), a5);
            a6 = _mm256_fmadd_ps(v, ld8(X, at + 48, kind, s), a6);
            a7 = _mm256_fmadd_ps(v, ld8(X, at + 56, kind, s), a7);
        }
        float *y = out + (size_t)(m - m0) * APB_SPMM_NC;
        _mm256_storeu_ps(y, a0);
        _mm256_storeu_ps(y + 8, a1);
        _mm256_storeu_ps(y + 16, a2);
        _mm256_storeu_ps(y + 24, a3);
        _mm256_storeu_ps(y + 32, a4);
        _mm256_storeu_ps(y + 40, a5);
        _mm256_storeu_ps(y + 48, a6);
        _mm256_storeu_ps(y + 56, a7);
    }
}

void apb_spmm_offset_avx2(const apb_csr *R, int m0, int m1, const float *X, float *out)
{
    offset_t(R, m0, m1, X, 0, 0.0f, out);
}

void apb_spmm_offset_i8_avx2(const apb_csr *R, int m0, int m1, const int8_t *X, float *out)
{
    offset_t(R, m0, m1, X, 1, 0.0f, out);
}

void apb_spmm_offset_q8_avx2(const apb_csr *R, int m0, int m1, const uint8_t *X, int is_signed,
                             float s, float *out)
{
    if (is_signed)
        offset_t(R, m0, m1, X, 3, s, out);
    else
        offset_t(R, m0, m1, X, 2, s, out);
}
