/* ewise_avx512.c - ewise.h's loops compiled for AVX-512 (kernels/ewise_body.h). */
#include "ewise.h"
#include "ewise_levels.h"

#define EW(name) apb_ew_##name##_avx512
#define EW_OWN_SIGN_PLANES
#include "ewise_body.h"

#include "avx512_util.h"

/* d[0 .. n) = sgn(src[t * S]) as bytes, S = 1 or 2: 16 a step, the last one masked
 * (no element of src past the last one it uses is read). */
static void sign_row(const float *src, long n, int S, int8_t *d)
{
    const __m128i one = _mm_set1_epi8(1), neg = _mm_set1_epi8(-1);
    for (long t = 0; t < n; t += 16) {
        int r = n - t < 16 ? (int)(n - t) : 16;
        __m512 v;
        if (S == 1)
            v = _mm512_maskz_loadu_ps(apb_mask16(r), src + t);
        else
            apb_deint32_ps(src + 2 * t, 2 * r - 1, 0.0f, &v, NULL);
        __mmask16 ge = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
        _mm_mask_storeu_epi8(d + t, apb_mask16(r), _mm_mask_blend_epi8(ge, neg, one));
    }
}

/* apb_ew_sign_planes (ewise.h): the rows of strides 1 and 2 by sign_row (others:
 * the portable rows). _CMP_GE_OQ: sgn(0) = +1, NaN -> -1. */
void apb_ew_sign_planes_avx512(const float *x, int H, int W, int S, int P, int Hq, int Wq, int8_t *out)
{
    sign_planes_rows(x, H, W, S, P, Hq, Wq, out, S <= 2 ? sign_row : sign_row_portable);
}

/* apb_ew_maxpool3s2 (ewise.h): 16 outputs a step. Of input row i, outputs ow0 ..
 * ow0+15 need columns 2ow - 1, 2ow, 2ow + 1: the odd columns shifted by one
 * lane, and the even and odd columns of 32 floats; columns outside the row read
 * -inf, which never replaces the running max (the same as skipping the tap).
 * _mm512_max_ps(t, acc) is t > acc ? t : acc, the comparison of the row-major
 * loop. */
void apb_ew_maxpool3s2_avx512(int H, int W, const float *x, float *y)
{
    int OH = (H - 1) / 2 + 1, OW = (W - 1) / 2 + 1;
    for (int oh = 0; oh < OH; oh++)
        for (int ow0 = 0; ow0 < OW; ow0 += 16) {
            __m512 acc = _mm512_set1_ps(-INFINITY);
            for (int kh = 0; kh < 3; kh++) {
                int i = 2 * oh - 1 + kh, c0 = 2 * ow0; /* columns c0 .. c0 + 31 */
                if (i < 0 || i >= H)
                    continue;
                const float *xr = x + (long)i * W;
                __m512 e, o;
                apb_deint32_ps(xr + c0, W - c0 < 32 ? W - c0 : 32, -INFINITY, &e, &o);
                /* column 2ow - 1: o shifted up one lane, lane 0 = column c0 - 1 */
                __m512 prev = _mm512_set1_ps(c0 >= 1 ? xr[c0 - 1] : -INFINITY);
                __m512 a = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(o), _mm512_castps_si512(prev), 15));
                acc = _mm512_max_ps(a, acc);
                acc = _mm512_max_ps(e, acc);
                acc = _mm512_max_ps(o, acc);
            }
            _mm512_mask_storeu_ps(y + (long)oh * OW + ow0, apb_mask16(OW - ow0), acc);
        }
}

/* apb_ew_avgpool2s2 (ewise.h): 16 outputs a step from two deinterleaved rows. */
void apb_ew_avgpool2s2_avx512(int H, int W, const float *x, float *y)
{
    int OH = H / 2, OW = W / 2;
    const __m512 q = _mm512_set1_ps(1.0f / 4.0f);
    for (int oh = 0; oh < OH; oh++)
        for (int ow0 = 0; ow0 < OW; ow0 += 16) {
            int cnt = OW - ow0 < 16 ? OW - ow0 : 16;
            __m512 acc = _mm512_setzero_ps(), e, o;
            for (int kh = 0; kh < 2; kh++) {
                apb_deint32_ps(x + (long)(2 * oh + kh) * W + 2 * ow0, 2 * cnt, 0.0f, &e, &o);
                acc = _mm512_add_ps(acc, e);
                acc = _mm512_add_ps(acc, o);
            }
            _mm512_mask_storeu_ps(y + (long)oh * OW + ow0, apb_mask16(cnt), _mm512_mul_ps(acc, q));
        }
}
