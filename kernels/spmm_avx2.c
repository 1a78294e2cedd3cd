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

void apb_spmm_offset_avx2(const apb_csr *R, int m0, int m1, const float *X, float *out)
{
    for (int m = m0; m < m1; m++) {
        /* named accumulators: an array of __m256 is kept on the stack by gcc */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++) {
            const float *x = X + apb_csr_col(R, e);
            __m256 v = _mm256_set1_ps(R->val[e]);
            a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x), a0);
            a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 8), a1);
            a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 16), a2);
            a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 24), a3);
            a4 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 32), a4);
            a5 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 40), a5);
            a6 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 48), a6);
            a7 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 56), a7);
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

/* 8 floats from 8 bytes */
static inline __m256 cvt8(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

void apb_spmm_offset_i8_avx2(const apb_csr *R, int m0, int m1, const int8_t *X, float *out)
{
    for (int m = m0; m < m1; m++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++) {
            const int8_t *x = X + apb_csr_col(R, e);
            __m256 v = _mm256_set1_ps(R->val[e]);
            a0 = _mm256_fmadd_ps(v, cvt8(x), a0);
            a1 = _mm256_fmadd_ps(v, cvt8(x + 8), a1);
            a2 = _mm256_fmadd_ps(v, cvt8(x + 16), a2);
            a3 = _mm256_fmadd_ps(v, cvt8(x + 24), a3);
            a4 = _mm256_fmadd_ps(v, cvt8(x + 32), a4);
            a5 = _mm256_fmadd_ps(v, cvt8(x + 40), a5);
            a6 = _mm256_fmadd_ps(v, cvt8(x + 48), a6);
            a7 = _mm256_fmadd_ps(v, cvt8(x + 56), a7);
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

/* 8 floats code * s from 8 code bytes (signed or not) */
static inline __m256 q8x8(const uint8_t *p, int sg, __m256 s)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
    __m256i c = sg ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(c), s);
}

void apb_spmm_offset_q8_avx2(const apb_csr *R, int m0, int m1, const uint8_t *X, int is_signed,
                             float step, float *out)
{
    const __m256 s = _mm256_set1_ps(step);
    for (int m = m0; m < m1; m++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++) {
            const uint8_t *x = X + apb_csr_col(R, e);
            __m256 v = _mm256_set1_ps(R->val[e]);
            a0 = _mm256_fmadd_ps(v, q8x8(x, is_signed, s), a0);
            a1 = _mm256_fmadd_ps(v, q8x8(x + 8, is_signed, s), a1);
            a2 = _mm256_fmadd_ps(v, q8x8(x + 16, is_signed, s), a2);
            a3 = _mm256_fmadd_ps(v, q8x8(x + 24, is_signed, s), a3);
            a4 = _mm256_fmadd_ps(v, q8x8(x + 32, is_signed, s), a4);
            a5 = _mm256_fmadd_ps(v, q8x8(x + 40, is_signed, s), a5);
            a6 = _mm256_fmadd_ps(v, q8x8(x + 48, is_signed, s), a6);
            a7 = _mm256_fmadd_ps(v, q8x8(x + 56, is_signed, s), a7);
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
