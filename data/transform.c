/* transform.c - per-sample geometry and normalization: crop with padding, flip,
 * shorter-side resize + center crop, random-resized-crop, conversion to float.
 *
 * Every geometric transform is expressed as one mapping from output pixels to a
 * source rectangle, sampled once with bilinear interpolation (align_corners =
 * false, as PIL / torchvision). A region of the source's own size at an integer
 * offset gives interpolation weights of exactly 0, so plain crops and identity
 * transforms reproduce the stored pixels bit for bit. Random choices come from
 * one apb_rng seeded by the caller's key, drawn in a fixed order (region, crop
 * offset, flip), so a sample depends on (seed, epoch, index) only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dataset.h"
#include "rng.h"

static float uniform_in(apb_rng *r, float a, float b) { return a + (b - a) * apb_rng_uniform(r); }

/* torchvision RandomResizedCrop.get_params: 10 tries at a random area fraction
 * and log-uniform aspect ratio, then a center crop clamped to the ratio range. */
static void rrc_region(apb_rng *r, const apb_transform *t, int sw, int sh, int *x, int *y,
                       int *w, int *h)
{
    double area = (double)sw * sh;
    double lr0 = log(t->rrc_ratio[0]), lr1 = log(t->rrc_ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * uniform_in(r, t->rrc_scale[0], t->rrc_scale[1]);
        double ar = exp(uniform_in(r, (float)lr0, (float)lr1));
        int cw = (int)lround(sqrt(target * ar));
        int ch = (int)lround(sqrt(target / ar));
        if (cw > 0 && cw <= sw && ch > 0 && ch <= sh) {
            *y = (int)apb_rng_below(r, (uint32_t)(sh - ch + 1));
            *x = (int)apb_rng_below(r, (uint32_t)(sw - cw + 1));
            *w = cw;
            *h = ch;
            return;
        }
    }
    double in_ratio = (double)sw / sh;
    int cw = sw, ch = sh;
    if (in_ratio < t->rrc_ratio[0]) {
        ch = (int)lround(cw / t->rrc_ratio[0]);
    } else if (in_ratio > t->rrc_ratio[1]) {
        cw = (int)lround(ch * t->rrc_ratio[1]);
    }
    if (cw < 1) cw = 1;
    if (ch < 1) ch = 1;
    if (cw > sw) cw = sw;
    if (ch > sh) ch = sh;
    *x = (sw - cw) / 2;
    *y = (sh - ch) / 2;
    *w = cw;
    *h = ch;
}

/* torchvision Resize(int): the short side becomes t->resize_short, the long
 * side is scaled with it and truncated. */
static void resized_size(const apb_transform *t, int sw, int sh, int *W2, int *H2)
{
    *W2 = sw <= sh ? t->resize_short : (int)((long)t->resize_short * sw / sh);
    *H2 = sh <= sw ? t->resize_short : (int)((long)t->resize_short * sh / sw);
}

apb_status apb_transform_check(const apb_transform *t)
{
    if (t->out_c != 1 && t->out_c != 3)
        return apb_fail(APB_EINVAL, "transform: out_c = %d, expected 1 or 3", t->out_c);
    if (t->out_h <= 0 || t->out_w <= 0 || t->out_h > 8192 || t->out_w > 8192)
        return apb_fail(APB_EINVAL, "transform: output size %dx%d out of range 1..8192",
                        t->out_h, t->out_w);
    if (t->crop_pad < 0 || t->resize_short < 0)
        return apb_fail(APB_EINVAL, "transform: negative crop_pad (%d) or resize_short (%d)",
                        t->crop_pad, t->resize_short);
    if (t->rrc && !(t->rrc_scale[0] > 0 && t->rrc_scale[0] <= t->rrc_scale[1] &&
                    t->rrc_scale[1] <= 1 && t->rrc_ratio[0] > 0 &&
                    t->rrc_ratio[0] <= t->rrc_ratio[1]))
        return apb_fail(APB_EINVAL, "transform: bad random-resized-crop ranges scale [%g, %g] ratio [%g, %g]",
                        t->rrc_scale[0], t->rrc_scale[1], t->rrc_ratio[0], t->rrc_ratio[1]);
    for (int c = 0; c < t->out_c; c++)
        if (!(t->std[c] > 0) || !isfinite(t->mean[c]))
            return apb_fail(APB_EINVAL, "transform: channel %d has mean %g std %g (std must be > 0)",
                            c, t->mean[c], t->std[c]);
    return APB_OK;
}

/* Tap table for one axis: output o -> source taps i0, i1 with weight f of i1;
 * i0 = -1 marks a zero (padding) output. */
typedef struct {
    int i0, i1;
    float f;
} apb_tap;

static void axis_taps(apb_tap *tab, int n_out, int shift, int flip, double r0, double rlen,
                      int n_src)
{
    double step = rlen / n_out;
    for (int o = 0; o < n_out; o++) {
        int u = (flip ? n_out - 1 - o : o) + shift;
        if (u < 0 || u >= n_out) {
            tab[o].i0 = -1;
            tab[o].i1 = -1;
            tab[o].f = 0;
            continue;
        }
        double s = r0 + (u + 0.5) * step - 0.5;
        if (s < 0)
            s = 0;
        if (s > n_src - 1)
            s = n_src - 1;
        int i0 = (int)s;
        double f = s - i0;
        int i1 = i0 + 1 < n_src ? i0 + 1 : i0;
        tab[o].i0 = i0;
        tab[o].i1 = i1;
        tab[o].f = (float)f;
    }
}

apb_status apb_transform_apply(const apb_transform *t, const unsigned char *src, int sc, int sh,
                               int sw, long cs, long ys, long xs, uint64_t key, float *out)
{
    APB_TRY(apb_transform_check(t));
    if ((sc != 1 && sc != 3) || sh <= 0 || sw <= 0)
        return apb_fail(APB_EINVAL, "transform: source image %dx%dx%d, expected 1 or 3 channels and a positive size",
                        sc, sh, sw);
    const int OC = t->out_c, OH = t->out_h, OW = t->out_w;
    apb_rng r;
    apb_rng_seed(&r, key);

    /* Source rectangle (rx, ry, rw, rh) that is stretched onto OH x OW. */
    double rx = 0, ry = 0, rw = sw, rh = sh;
    if (t->rrc) {
        int x, y, w, h;
        rrc_region(&r, t, sw, sh, &x, &y, &w, &h);
        rx = x, ry = y, rw = w, rh = h;
    } else if (t->resize_short > 0) {
        if (t->center_crop) {
            int W2, H2;
            resized_size(t, sw, sh, &W2, &H2);
            double fx = (double)sw / W2, fy = (double)sh / H2;
            int left = (int)lround((W2 - OW) / 2.0), top = (int)lround((H2 - OH) / 2.0);
            rx = left * fx, rw = OW * fx;
            ry = top * fy, rh = OH * fy;
        }
    } else if (t->center_crop && sw >= OW && sh >= OH) {
        rx = (sw - OW) / 2, rw = OW;
        ry = (sh - OH) / 2, rh = OH;
    }
    int dx = 0, dy = 0, flip = 0;
    if (t->crop_pad > 0) {
        uint32_t span = 2u * (uint32_t)t->crop_pad + 1u;
        dy = (int)apb_rng_below(&r, span) - t->crop_pad;
        dx = (int)apb_rng_below(&r, span) - t->crop_pad;
    }
    if (t->hflip)
        flip = (int)(apb_rng_next(&r) >> 63);

    apb_tap *tx = malloc(sizeof(apb_tap) * (size_t)(OW + OH));
    if (!tx)
        return apb_fail(APB_ENOMEM, "transform: out of memory for %dx%d taps", OH, OW);
    apb_tap *ty = tx + OW;
    axis_taps(tx, OW, dx, flip, rx, rw, sw);
    axis_taps(ty, OH, dy, 0, ry, rh, sh);

    /* Unscaled region at an integer offset (identity, plain crops, pad-crop):
     * every tap weight is 0, so read one pixel through a per-channel table of
     * the same (v / 255 - mean) / std values the general path computes. */
    int direct = rw == OW && rh == OH && rx == (int)rx && ry == (int)ry && !(OC == 1 && sc == 3);
    if (direct) {
        for (int oc = 0; oc < OC; oc++) {
            float lut[256], mean = t->mean[oc], sd = t->std[oc];
            for (int v = 0; v < 256; v++)
                lut[v] = ((float)v / 255.0f - mean) / sd;
            const unsigned char *p = src + (sc == 1 ? 0 : oc) * cs;
            float *o = out + (size_t)oc * OH * OW;
            for (int oy = 0; oy < OH; oy++) {
                float *orow = o + (size_t)oy * OW;
                if (ty[oy].i0 < 0) {
                    for (int ox = 0; ox < OW; ox++)
                        orow[ox] = lut[0];
                    continue;
                }
                const unsigned char *row = p + ty[oy].i0 * ys;
                for (int ox = 0; ox < OW; ox++)
                    orow[ox] = tx[ox].i0 < 0 ? lut[0] : lut[row[tx[ox].i0 * xs]];
            }
        }
        free(tx);
        return APB_OK;
    }

    if (OC == sc) {
        /* Pixel-major: the taps' addresses are shared by all channels, and an
         * interleaved source is read once, in order. */
        float mul[3], add[3], zero[3];
        for (int c = 0; c < OC; c++) {
            mul[c] = 1.0f / (255.0f * t->std[c]);
            add[c] = -t->mean[c] / t->std[c];
            zero[c] = (0.0f - t->mean[c]) / t->std[c];
        }
        const size_t plane = (size_t)OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            const apb_tap *ay = &ty[oy];
            float *orow = out + (size_t)oy * OW;
            const unsigned char *r0 = src + (ay->i0 < 0 ? 0 : ay->i0) * ys;
            const unsigned char *r1 = src + (ay->i0 < 0 ? 0 : ay->i1) * ys;
            float fy = ay->f;
            for (int ox = 0; ox < OW; ox++) {
                const apb_tap *ax = &tx[ox];
                if (ay->i0 < 0 || ax->i0 < 0) {
                    for (int c = 0; c < OC; c++)
                        orow[c * plane + ox] = zero[c];
                    continue;
                }
                long a0 = ax->i0 * xs, a1 = ax->i1 * xs;
                float fx = ax->f;
                for (int c = 0; c < OC; c++) {
                    const unsigned char *q0 = r0 + c * cs, *q1 = r1 + c * cs;
                    float a = q0[a0] + fx * (float)(q0[a1] - q0[a0]);
                    float b = q1[a0] + fx * (float)(q1[a1] - q1[a0]);
                    orow[c * plane + ox] = (a + fy * (b - a)) * mul[c] + add[c];
                }
            }
        }
        free(tx);
        return APB_OK;
    }

    static const float gray_w[3] = {0.299f, 0.587f, 0.114f};
    for (int oc = 0; oc < OC; oc++) {
        /* Interpolated values are not reproducible from stored pixels anyway,
         * so the two divisions become one multiply-add here. */
        float mean = t->mean[oc], sd = t->std[oc];
        float zero = (0.0f - mean) / sd, mul = 1.0f / (255.0f * sd), add = -mean / sd;
        int nsrc = (OC == 1 && sc == 3) ? 3 : 1;
        float *o = out + (size_t)oc * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            const apb_tap *ay = &ty[oy];
            float *orow = o + (size_t)oy * OW;
            if (ay->i0 < 0) {
                for (int ox = 0; ox < OW; ox++)
                    orow[ox] = zero;
                continue;
            }
            for (int ox = 0; ox < OW; ox++) {
                const apb_tap *ax = &tx[ox];
                if (ax->i0 < 0) {
                    orow[ox] = zero;
                    continue;
                }
                float v = 0;
                for (int k = 0; k < nsrc; k++) {
                    int ch = nsrc == 3 ? k : (sc == 1 ? 0 : oc);
                    const unsigned char *p = src + ch * cs;
                    const unsigned char *r0 = p + ay->i0 * ys, *r1 = p + ay->i1 * ys;
                    float a = r0[ax->i0 * xs] + ax->f * (float)(r0[ax->i1 * xs] - r0[ax->i0 * xs]);
                    float b = r1[ax->i0 * xs] + ax->f * (float)(r1[ax->i1 * xs] - r1[ax->i0 * xs]);
                    float pix = a + ay->f * (b - a);
                    v += nsrc == 3 ? gray_w[k] * pix : pix;
                }
                orow[ox] = v * mul + add;
            }
        }
    }
    free(tx);
    return APB_OK;
}

apb_status apb_image_preprocess(const unsigned char *rgb, int w, int h, const apb_transform *t,
                                float *out)
{
    if (!rgb)
        return apb_fail(APB_EINVAL, "apb_image_preprocess: no image");
    return apb_transform_apply(t, rgb, 3, h, w, 1, 3L * w, 3, 0, out);
}

void apb_transform_describe(const apb_transform *t, int sw, int sh, char *buf, size_t n)
{
    const int OH = t->out_h, OW = t->out_w;
    /* the same branches as the source rectangle of apb_transform_apply */
    if (t->rrc) {
        snprintf(buf, n, "%dx%d randomly cropped and resized to %dx%d", sw, sh, OW, OH);
    } else if (t->resize_short > 0 && t->center_crop) {
        int W2, H2;
        resized_size(t, sw, sh, &W2, &H2);
        int resized = W2 != sw || H2 != sh, cropped = W2 != OW || H2 != OH;
        if (resized && cropped)
            snprintf(buf, n, "%dx%d resized to %dx%d and center-cropped to %dx%d", sw, sh, W2, H2,
                     OW, OH);
        else if (resized)
            snprintf(buf, n, "%dx%d resized to %dx%d", sw, sh, W2, H2);
        else if (cropped)
            snprintf(buf, n, "%dx%d center-cropped to %dx%d", sw, sh, OW, OH);
        else
            snprintf(buf, n, "%s", "");
    } else if (sw == OW && sh == OH) {
        snprintf(buf, n, "%s", "");
    } else if (t->resize_short == 0 && t->center_crop && sw >= OW && sh >= OH) {
        snprintf(buf, n, "%dx%d center-cropped to %dx%d", sw, sh, OW, OH);
    } else {
        snprintf(buf, n, "%dx%d stretched to %dx%d", sw, sh, OW, OH);
    }
}
