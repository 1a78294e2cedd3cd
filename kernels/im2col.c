/* im2col.c - im2col / col2im (see im2col.h for the layout).
 *
 * For each (c, kh, kw, oh) row the valid output columns form one interval
 * [lo, hi) (input column inside the image), computed once, so the inner loops
 * have no bounds tests: zeros outside it, and for stride 1 a plain memcpy (the
 * common 3x3 / pad 1 case), a strided gather otherwise.
 */
#include "im2col.h"

#include <string.h>

/* First ow with ow*S - P + kw >= 0, and first ow with ow*S - P + kw >= W, clipped to [0, OW]. */
static void valid_cols(int W, int OW, int S, int P, int kw, int *lo, int *hi)
{
    int a = P - kw, b = W + P - kw; /* need a <= ow*S < b */
    int l = a <= 0 ? 0 : (a + S - 1) / S;
    int h = b <= 0 ? 0 : (b + S - 1) / S;
    *lo = l > OW ? OW : l;
    *hi = h > OW ? OW : h < *lo ? *lo : h;
}

void apb_im2col(const float *x, int C, int H, int W, int KH, int KW, int stride, int pad,
                float *col)
{
    int OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                float *dst = col + (long)((c * KH + kh) * KW + kw) * OH * OW;
                int lo, hi;
                valid_cols(W, OW, stride, pad, kw, &lo, &hi);
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * stride - pad + kh;
                    float *d = dst + (long)oh * OW;
                    if (ih < 0 || ih >= H) {
                        memset(d, 0, sizeof(float) * OW);
                        continue;
                    }
                    const float *src = x + ((long)c * H + ih) * W;
                    memset(d, 0, sizeof(float) * lo);
                    if (hi > lo && stride == 1)
                        memcpy(d + lo, src + (lo - pad + kw), sizeof(float) * (hi - lo));
                    else
                        for (int ow = lo; ow < hi; ow++)
                            d[ow] = src[ow * stride - pad + kw];
                    memset(d + hi, 0, sizeof(float) * (OW - hi));
                }
            }
}

void apb_col2im(const float *col, int C, int H, int W, int KH, int KW, int stride, int pad,
                float *dx)
{
    int OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                const float *src = col + (long)((c * KH + kh) * KW + kw) * OH * OW;
                int lo, hi;
                valid_cols(W, OW, stride, pad, kw, &lo, &hi);
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H || hi <= lo)
                        continue;
                    float *d = dx + ((long)c * H + ih) * W + (lo * stride - pad + kw);
                    const float *s = src + (long)oh * OW + lo;
                    if (stride == 1)
                        for (int ow = 0; ow < hi - lo; ow++)
                            d[ow] += s[ow];
                    else
                        for (int ow = 0; ow < hi - lo; ow++)
                            d[ow * stride] += s[ow];
                }
            }
}
