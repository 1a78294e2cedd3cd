/* spmm_avx512.c - AVX-512 column-chunk kernel of apb_spmm: a 64-column chunk of
 * one output row lives in 4 zmm while the row's nonzeros stream FMAs through it;
 * narrower tail chunks use masked loads/stores (never touching memory past N). */
#include <immintrin.h>

#include "spmm.h"

void apb_spmm_chunk_avx512(const apb_csr *R, int m0, int m1, int n0, int nc, const float *X,
                           int ldx, float *Y, int ldy)
{
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
