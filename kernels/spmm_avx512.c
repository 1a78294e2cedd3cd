/* spmm_avx512.c - AVX-512 column-chunk kernel of apb_spmm: a 64-column chunk of
 * one output row lives in 4 zmm while the row's nonzeros stream FMAs through it;
 * narrower tail chunks use masked loads/stores (never touching memory past N).
 * Full chunks run 4 rows at once (16 accumulators): one row alone is a chain of
 * dependent FMAs (4 cycles each); four independent rows hide that latency while
 * each element still sums its row's entries in CSR order. */
#include <immintrin.h>

#include <stdint.h>

#include "spmm.h"

#define AI static inline __attribute__((always_inline))

AI void fma_row(__m512 *a, const apb_csr *R, int64_t e, const float *X, int ldx, int n0)
{
    const float *x = X + (size_t)apb_csr_col(R, e) * ldx + n0;
    __m512 v = _mm512_set1_ps(R->val[e]);
    a[0] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x), a[0]);
    a[1] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + 16), a[1]);
    a[2] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + 32), a[2]);
    a[3] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + 48), a[3]);
}

/* rows m .. m+3, full 64-column chunk; y = row m's chunk, rows ldy apart */
static void rows4(const apb_csr *R, int m, int n0, const float *X, int ldx, float *y0, int ldy)
{
    __m512 a[4][4];
    int64_t e[4], n[4], common = INT64_MAX;
    for (int r = 0; r < 4; r++) {
        float *y = y0 + (size_t)r * ldy;
        for (int i = 0; i < 4; i++)
            a[r][i] = _mm512_loadu_ps(y + 16 * i);
        e[r] = R->row_ptr[m + r];
        n[r] = R->row_ptr[m + r + 1] - e[r];
        if (n[r] < common)
            common = n[r];
    }
    for (int64_t i = 0; i < common; i++) {
        fma_row(a[0], R, e[0] + i, X, ldx, n0);
        fma_row(a[1], R, e[1] + i, X, ldx, n0);
        fma_row(a[2], R, e[2] + i, X, ldx, n0);
        fma_row(a[3], R, e[3] + i, X, ldx, n0);
    }
    for (int r = 0; r < 4; r++) {
        for (int64_t i = common; i < n[r]; i++)
            fma_row(a[r], R, e[r] + i, X, ldx, n0);
        float *y = y0 + (size_t)r * ldy;
        for (int i = 0; i < 4; i++)
            _mm512_storeu_ps(y + 16 * i, a[r][i]);
    }
}

void apb_spmm_chunk_avx512(const apb_csr *R, int m0, int m1, int n0, int nc, const float *X,
                           int ldx, float *Y, int ldy)
{
    if (nc == 64)
        for (; m0 + 4 <= m1; m0 += 4)
            rows4(R, m0, n0, X, ldx, Y + (size_t)m0 * ldy + n0, ldy);
    __mmask16 k[4];
    for (int i = 0; i < 4; i++) {
        int r = nc - 16 * i;
        k[i] = r >= 16 ? (__mmask16)0xFFFF : r <= 0 ? 0 : (__mmask16)((1u << r) - 1);
    }
    for (int m = m0; m < m1; m++) {
        float *y = Y + (size_t)m * ldy + n0;
        __m512 a0 = _mm512_maskz_loadu_ps(k[0], y), a1 = _mm512_maskz_loadu_ps(k[1], y + 16);
        __m512 a2 = _mm512_maskz_loadu_ps(k[2], y + 32), a3 = _mm512_maskz_loadu_ps(k[3], y + 48);
        int64_t e0 = R->row_ptr[m], e1 = R->row_ptr[m + 1];
        if (nc == 64) {
            for (int64_t e = e0; e < e1; e++) {
                const float *x = X + (size_t)apb_csr_col(R, e) * ldx + n0;
                __m512 v = _mm512_set1_ps(R->val[e]);
                a0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(x), a0);
                a1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + 16), a1);
                a2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + 32), a2);
                a3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + 48), a3);
            }
        } else {
            for (int64_t e = e0; e < e1; e++) {
                const float *x = X + (size_t)apb_csr_col(R, e) * ldx + n0;
                __m512 v = _mm512_set1_ps(R->val[e]);
                a0 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k[0], x), a0);
                a1 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k[1], x + 16), a1);
                a2 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k[2], x + 32), a2);
                a3 = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k[3], x + 48), a3);
            }
        }
        _mm512_mask_storeu_ps(y, k[0], a0);
        _mm512_mask_storeu_ps(y + 16, k[1], a1);
        _mm512_mask_storeu_ps(y + 32, k[2], a2);
        _mm512_mask_storeu_ps(y + 48, k[3], a3);
    }
}

void apb_spmm_offset_avx512(const apb_csr *R, int m0, int m1, const float *X, float *out)
{
    int m = m0;
    for (; m + 4 <= m1; m += 4) {
        float *y = out + (size_t)(m - m0) * APB_SPMM_NC;
        for (int i = 0; i < 4 * APB_SPMM_NC; i += 16)
            _mm512_storeu_ps(y + i, _mm512_setzero_ps());
        rows4(R, m, 0, X, 1, y, APB_SPMM_NC);
    }
    for (; m < m1; m++) {
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++)
            fma_row(a, R, e, X, 1, 0);
        float *y = out + (size_t)(m - m0) * APB_SPMM_NC;
        for (int i = 0; i < 4; i++)
            _mm512_storeu_ps(y + 16 * i, a[i]);
    }
}

/* ---- byte planes (binary activations): 16 floats from 16 bytes per vector ---- */

AI __m512 cvt16(const int8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

AI void fma_row8(__m512 *a, const apb_csr *R, int64_t e, const int8_t *X)
{
    const int8_t *x = X + apb_csr_col(R, e);
    __m512 v = _mm512_set1_ps(R->val[e]);
    a[0] = _mm512_fmadd_ps(v, cvt16(x), a[0]);
    a[1] = _mm512_fmadd_ps(v, cvt16(x + 16), a[1]);
    a[2] = _mm512_fmadd_ps(v, cvt16(x + 32), a[2]);
    a[3] = _mm512_fmadd_ps(v, cvt16(x + 48), a[3]);
}

/* rows m .. m+3 from zero into out (rows APB_SPMM_NC apart), as rows4 */
static void rows4_i8(const apb_csr *R, int m, const int8_t *X, float *out)
{
    __m512 a[4][4];
    int64_t e[4], n[4], common = INT64_MAX;
    for (int r = 0; r < 4; r++) {
        for (int i = 0; i < 4; i++)
            a[r][i] = _mm512_setzero_ps();
        e[r] = R->row_ptr[m + r];
        n[r] = R->row_ptr[m + r + 1] - e[r];
        if (n[r] < common)
            common = n[r];
    }
    for (int64_t i = 0; i < common; i++) {
        fma_row8(a[0], R, e[0] + i, X);
        fma_row8(a[1], R, e[1] + i, X);
        fma_row8(a[2], R, e[2] + i, X);
        fma_row8(a[3], R, e[3] + i, X);
    }
    for (int r = 0; r < 4; r++) {
        for (int64_t i = common; i < n[r]; i++)
            fma_row8(a[r], R, e[r] + i, X);
        float *y = out + (size_t)r * APB_SPMM_NC;
        for (int i = 0; i < 4; i++)
            _mm512_storeu_ps(y + 16 * i, a[r][i]);
    }
}

void apb_spmm_offset_i8_avx512(const apb_csr *R, int m0, int m1, const int8_t *X, float *out)
{
    int m = m0;
    for (; m + 4 <= m1; m += 4)
        rows4_i8(R, m, X, out + (size_t)(m - m0) * APB_SPMM_NC);
    for (; m < m1; m++) {
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++)
            fma_row8(a, R, e, X);
        float *y = out + (size_t)(m - m0) * APB_SPMM_NC;
        for (int i = 0; i < 4; i++)
            _mm512_storeu_ps(y + 16 * i, a[i]);
    }
}
