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

/* 16 floats of X at x by the plane kind i8: 0 floats; 1 signed bytes (+-1 / 0,
 * binary); 2 unsigned codes times s; 3 signed codes times s (8-bit activations) */
AI __m512 ld16(const void *x, long at, int i8, __m512 s)
{
    if (i8 == 0)
        return _mm512_loadu_ps((const float *)x + at);
    __m128i b = _mm_loadu_si128((const __m128i *)((const uint8_t *)x + at));
    __m512 f = _mm512_cvtepi32_ps(i8 == 2 ? _mm512_cvtepu8_epi32(b) : _mm512_cvtepi8_epi32(b));
    return i8 == 1 ? f : _mm512_mul_ps(f, s);
}

/* a[0..4) += val[e] * the 64 values of X at column col(e) (element ldx*col + n0);
 * the index width (c16: col16) and plane type (i8) are compile-time constants */
AI void fma_row(__m512 *a, const apb_csr *R, int64_t e, const void *X, int ldx, int n0, int c16, int i8,
                __m512 s)
{
    int64_t c = c16 ? (int64_t)R->col16[e] : (int64_t)R->col32[e];
    long at = (long)c * ldx + n0;
    __m512 v = _mm512_set1_ps(R->val[e]);
    a[0] = _mm512_fmadd_ps(v, ld16(X, at, i8, s), a[0]);
    a[1] = _mm512_fmadd_ps(v, ld16(X, at + 16, i8, s), a[1]);
    a[2] = _mm512_fmadd_ps(v, ld16(X, at + 32, i8, s), a[2]);
    a[3] = _mm512_fmadd_ps(v, ld16(X, at + 48, i8, s), a[3]);
}

/* the 4 accumulators of a row: from y, or zero (y NULL) */
AI void load4(__m512 *a, const float *y)
{
    if (y) {
        a[0] = _mm512_loadu_ps(y), a[1] = _mm512_loadu_ps(y + 16);
        a[2] = _mm512_loadu_ps(y + 32), a[3] = _mm512_loadu_ps(y + 48);
    } else {
        a[0] = a[1] = a[2] = a[3] = _mm512_setzero_ps();
    }
}

AI void put4(float *y, const __m512 *a)
{
    _mm512_storeu_ps(y, a[0]), _mm512_storeu_ps(y + 16, a[1]);
    _mm512_storeu_ps(y + 32, a[2]), _mm512_storeu_ps(y + 48, a[3]);
}

/* rows m .. m+3, full 64-column chunk; y = row m's chunk, rows ldy apart, summed
 * into (acc) or from zero. The four rows' entries in lockstep while all have
 * some (16 independent FMA chains), then each row's rest. Every accumulator is
 * a named array indexed by constants only, so all 16 stay in registers (an
 * a[r][i] indexed by a loop's r was kept on the stack by gcc: a store and a
 * reload around each FMA of the rows' tails). */
AI void rows4_t(const apb_csr *R, int m, int n0, const void *X, int ldx, float *y0, int ldy, int acc,
                int c16, int i8, __m512 s)
{
    __m512 a0[4], a1[4], a2[4], a3[4];
    size_t l = (size_t)ldy;
    load4(a0, acc ? y0 : NULL), load4(a1, acc ? y0 + l : NULL);
    load4(a2, acc ? y0 + 2 * l : NULL), load4(a3, acc ? y0 + 3 * l : NULL);
    const int64_t *rp = R->row_ptr + m;
    int64_t e0 = rp[0], e1 = rp[1], e2 = rp[2], e3 = rp[3], e4 = rp[4];
    int64_t common = e1 - e0;
    common = e2 - e1 < common ? e2 - e1 : common;
    common = e3 - e2 < common ? e3 - e2 : common;
    common = e4 - e3 < common ? e4 - e3 : common;
    for (int64_t i = 0; i < common; i++) {
        fma_row(a0, R, e0 + i, X, ldx, n0, c16, i8, s);
        fma_row(a1, R, e1 + i, X, ldx, n0, c16, i8, s);
        fma_row(a2, R, e2 + i, X, ldx, n0, c16, i8, s);
        fma_row(a3, R, e3 + i, X, ldx, n0, c16, i8, s);
    }
    for (int64_t e = e0 + common; e < e1; e++)
        fma_row(a0, R, e, X, ldx, n0, c16, i8, s);
    for (int64_t e = e1 + common; e < e2; e++)
        fma_row(a1, R, e, X, ldx, n0, c16, i8, s);
    for (int64_t e = e2 + common; e < e3; e++)
        fma_row(a2, R, e, X, ldx, n0, c16, i8, s);
    for (int64_t e = e3 + common; e < e4; e++)
        fma_row(a3, R, e, X, ldx, n0, c16, i8, s);
    put4(y0, a0), put4(y0 + l, a1), put4(y0 + 2 * l, a2), put4(y0 + 3 * l, a3);
}

static void rows4(const apb_csr *R, int m, int n0, const float *X, int ldx, float *y0, int ldy)
{
    if (R->idx_bytes == 2)
        rows4_t(R, m, n0, X, ldx, y0, ldy, 1, 1, 0, _mm512_setzero_ps());
    else
        rows4_t(R, m, n0, X, ldx, y0, ldy, 1, 0, 0, _mm512_setzero_ps());
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

/* The direct sparse convolution's chunk (spmm.h) from zero, planes of kind i8 (ld16). */
AI void offset_t(const apb_csr *R, int m0, int m1, const void *X, float *out, int c16, int i8, float step)
{
    __m512 s = _mm512_set1_ps(step);
    int m = m0;
    for (; m + 4 <= m1; m += 4)
        rows4_t(R, m, 0, X, 1, out + (size_t)(m - m0) * APB_SPMM_NC, APB_SPMM_NC, 0, c16, i8, s);
    for (; m < m1; m++) {
        __m512 a[4];
        load4(a, NULL);
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++)
            fma_row(a, R, e, X, 1, 0, c16, i8, s);
        put4(out + (size_t)(m - m0) * APB_SPMM_NC, a);
    }
}

void apb_spmm_offset_avx512(const apb_csr *R, int m0, int m1, const float *X, float *out)
{
    if (R->idx_bytes == 2)
        offset_t(R, m0, m1, X, out, 1, 0, 0.0f);
    else
        offset_t(R, m0, m1, X, out, 0, 0, 0.0f);
}

/* Byte planes (binary activations): 16 bytes widened per vector (vpmovsxbd +
 * vcvtdq2ps); the products are exact, so the same bits as the float planes. */
void apb_spmm_offset_i8_avx512(const apb_csr *R, int m0, int m1, const int8_t *X, float *out)
{
    if (R->idx_bytes == 2)
        offset_t(R, m0, m1, X, out, 1, 1, 0.0f);
    else
        offset_t(R, m0, m1, X, out, 0, 1, 0.0f);
}

/* 8-bit codes: widened, times the step (the float planes' value), then the FMA. */
void apb_spmm_offset_q8_avx512(const apb_csr *R, int m0, int m1, const uint8_t *X, int is_signed,
                               float s, float *out)
{
    int c16 = R->idx_bytes == 2;
    if (is_signed)
        c16 ? offset_t(R, m0, m1, X, out, 1, 3, s) : offset_t(R, m0, m1, X, out, 0, 3, s);
    else
        c16 ? offset_t(R, m0, m1, X, out, 1, 2, s) : offset_t(R, m0, m1, X, out, 0, 2, s);
}
