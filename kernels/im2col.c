/* im2col.c - im2col / col2im (see im2col.h for the layout). */
#include "im2col.h"

#include <string.h>

void apb_im2col(const float *x, int C, int H, int W, int KH, int KW, int stride, int pad,
                float *col)
{
    int OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                float *dst = col + (long)((c * KH + kh) * KW + kw) * OH * OW;
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * stride - pad + kh;
                    float *d = dst + (long)oh * OW;
                    if (ih < 0 || ih >= H) {
                        memset(d, 0, sizeof(float) * OW);
                        continue;
                    }
                    const float *src = x + ((long)c * H + ih) * W;
                    for (int ow = 0; ow < OW; ow++) {
                        int iw = ow * stride - pad + kw;
                        d[ow] = (iw >= 0 && iw < W) ? src[iw] : 0.0f;
                    }
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
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H)
                        continue;
                    float *d = dx + ((long)c * H + ih) * W;
                    const float *s = src + (long)oh * OW;
                    for (int ow = 0; ow < OW; ow++) {
                        int iw = ow * stride - pad + kw;
                        if (iw >= 0 && iw < W)
                            d[iw] += s[ow];
                    }
                }
            }
}
