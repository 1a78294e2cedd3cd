/* ewise_avx512.c - ewise.h's loops compiled for AVX-512 (kernels/ewise_body.h). */
#include "ewise.h"
#include "ewise_levels.h"

#define EW(name) apb_ew_##name##_avx512
#include "ewise_body.h"

#include <immintrin.h>

/* apb_ew_maxpool3s2 (ewise.h): 16 outputs a step. Of input row i, outputs ow0 ..
 * ow0+15 need columns 2ow - 1, 2ow, 2ow + 1: the odd columns of the previous
 * step shifted by one lane, and the even and odd columns of 32 floats (two
 * loads, deinterleaved); columns outside the row read -inf, which never
 * replaces the running max (the same as skipping the tap). _mm512_max_ps(t, acc)
 * is t > acc ? t : acc, the comparison of the row-major loop. */
void apb_ew_maxpool3s2_avx512(int H, int W, const float *x, float *y)
{
    int OH = (H - 1) / 2 + 1, OW = (W - 1) / 2 + 1;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int oh = 0; oh < OH; oh++) {
        float *yr = y + (long)oh * OW;
        for (int ow0 = 0; ow0 < OW; ow0 += 16) {
            int cnt = OW - ow0 < 16 ? OW - ow0 : 16;
            __m512 acc = ninf;
            for (int kh = 0; kh < 3; kh++) {
                int i = 2 * oh - 1 + kh;
                if (i < 0 || i >= H)
                    continue;
                const float *xr = x + (long)i * W;
                int c0 = 2 * ow0; /* columns c0 .. c0 + 31 */
                int left = W - c0;
                __mmask16 m0 = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
                __mmask16 m1 = left >= 32 ? (__mmask16)0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
                __m512 l0 = _mm512_mask_loadu_ps(ninf, m0, xr + c0), l1 = _mm512_mask_loadu_ps(ninf, m1, xr + c0 + 16);
                __m512 e = _mm512_permutex2var_ps(l0, ev, l1), o = _mm512_permutex2var_ps(l0, od, l1);
                /* column 2ow - 1: o shifted up one lane, lane 0 = column c0 - 1 */
                __m512 prev = _mm512_set1_ps(c0 >= 1 ? xr[c0 - 1] : -INFINITY);
                __m512 a = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(o), _mm512_castps_si512(prev), 15));
                acc = _mm512_max_ps(a, acc);
                acc = _mm512_max_ps(e, acc);
                acc = _mm512_max_ps(o, acc);
            }
            _mm512_mask_storeu_ps(yr + ow0, (__mmask16)((1u << cnt) - 1), acc);
        }
    }
}

/* apb_ew_avgpool2s2 (ewise.h): 16 outputs a step from two deinterleaved rows. */
void apb_ew_avgpool2s2_avx512(int H, int W, const float *x, float *y)
{
    int OH = H / 2, OW = W / 2;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 q = _mm512_set1_ps(1.0f / 4.0f);
    for (int oh = 0; oh < OH; oh++)
        for (int ow0 = 0; ow0 < OW; ow0 += 16) {
            int cnt = OW - ow0 < 16 ? OW - ow0 : 16, c0 = 2 * ow0, left = 2 * cnt;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            __mmask16 m1 = left >= 32 ? (__mmask16)0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            __m512 acc = _mm512_setzero_ps();
            for (int kh = 0; kh < 2; kh++) {
                const float *xr = x + (long)(2 * oh + kh) * W + c0;
                __m512 l0 = _mm512_maskz_loadu_ps(m0, xr), l1 = _mm512_maskz_loadu_ps(m1, xr + 16);
                acc = _mm512_add_ps(acc, _mm512_permutex2var_ps(l0, ev, l1));
                acc = _mm512_add_ps(acc, _mm512_permutex2var_ps(l0, od, l1));
            }
            _mm512_mask_storeu_ps(y + (long)oh * OW + ow0, (__mmask16)((1u << cnt) - 1), _mm512_mul_ps(acc, q));
        }
}
