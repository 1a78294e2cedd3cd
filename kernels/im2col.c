/* im2col.c - im2col / col2im (see im2col.h for the layout).
 *
 * For each (c, kh, kw) row block the valid output columns form one interval
 * [lo, hi) (input column inside the image) and the valid output rows one interval
 * [rlo, rhi), computed once, so the inner loops have no bounds tests.
 *
 * The common training case is a stride-1 "same" convolution (OW == W, e.g. 3x3 pad
 * 1): there the whole (c, kh, kw) block is the input plane shifted by one constant
 * offset, so it is filled by a single contiguous copy and then the few padded
 * columns and rows are zeroed. Other shapes go row by row with inline loops (rows
 * are short, 8..32 floats in small CNNs, where a libc call per row costs more than
 * the copy itself).
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

/* Stride-1, OW == W block: dst[oh*W + ow] = src[(oh - P + kh)*W + ow - P + kw] inside
 * the image, 0 outside. One shifted copy over the valid rows, then the padded
 * columns of those rows and the padded rows are zeroed. */
static void block_same_s1(const float *x, int H, int W, int OH, int P, int kh, int kw, int lo,
                          int hi, float *restrict dst)
{
    long off = (long)(kh - P) * W + (kw - P);
    int rlo = P - kh > 0 ? P - kh : 0, rhi = H + P - kh < OH ? H + P - kh : OH;
    if (rhi < rlo)
        rhi = rlo;
    /* Destination index range whose source index lies inside x; the parts of the
     * valid rows left out are padded columns and are zeroed below anyway. */
    long a = (long)rlo * W, b = (long)rhi * W;
    if (a + off < 0)
        a = -off;
    if (b + off > (long)H * W)
        b = (long)H * W - off;
    if (b > a)
        memcpy(dst + a, x + a + off, sizeof(float) * (size_t)(b - a));
    memset(dst, 0, sizeof(float) * (size_t)rlo * W);
    memset(dst + (long)rhi * W, 0, sizeof(float) * (size_t)(OH - rhi) * W);
    if (lo > 0 || hi < W)
        for (int oh = rlo; oh < rhi; oh++) {
            float *d = dst + (long)oh * W;
            for (int ow = 0; ow < lo; ow++)
                d[ow] = 0.0f;
            for (int ow = hi; ow < W; ow++)
                d[ow] = 0.0f;
        }
}

void apb_im2col(const float *x, int C, int H, int W, int KH, int KW, int stride, int pad,
                float *col)
{
    int OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    int same = stride == 1 && OW == W;
    for (int c = 0; c < C; c++) {
        const float *xc = x + (long)c * H * W;
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                float *restrict dst = col + (long)((c * KH + kh) * KW + kw) * OH * OW;
                int lo, hi;
                valid_cols(W, OW, stride, pad, kw, &lo, &hi);
                if (same) {
                    block_same_s1(xc, H, W, OH, pad, kh, kw, lo, hi, dst);
                    continue;
                }
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * stride - pad + kh;
                    float *restrict d = dst + (long)oh * OW;
                    if (ih < 0 || ih >= H) {
                        for (int ow = 0; ow < OW; ow++)
                            d[ow] = 0.0f;
                        continue;
                    }
                    const float *restrict src = xc + (long)ih * W - pad + kw;
                    for (int ow = 0; ow < lo; ow++)
                        d[ow] = 0.0f;
                    if (stride == 1)
                        for (int ow = lo; ow < hi; ow++)
                            d[ow] = src[ow];
                    else
                        for (int ow = lo; ow < hi; ow++)
                            d[ow] = src[ow * stride];
                    for (int ow = hi; ow < OW; ow++)
                        d[ow] = 0.0f;
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
                int lo, hi;
                valid_cols(W, OW, stride, pad, kw, &lo, &hi);
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H || hi <= lo)
                        continue;
                    float *restrict d = dx + ((long)c * H + ih) * W + (lo * stride - pad + kw);
                    const float *restrict s = src + (long)oh * OW + lo;
                    if (stride == 1)
                        for (int ow = 0; ow < hi - lo; ow++)
                            d[ow] += s[ow];
                    else
                        for (int ow = 0; ow < hi - lo; ow++)
                            d[ow * stride] += s[ow];
                }
            }
}
