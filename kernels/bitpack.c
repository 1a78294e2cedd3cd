/* bitpack.c - sign / 2-bit packing of float matrices and fused im2col packing of
 * images, plus the exact zero-padding correction for packed convolutions.
 *
 * The im2col packer never builds a float patch matrix: it first packs every input
 * row (c, ih) into a bitmap over the zero-padded width (padding = bit 0), then a
 * pixel's K bits are the concatenation, for each (c, kh), of a KW-bit window of
 * one row bitmap (or 0 when ih is in the padding). Windows are at most 64 bits
 * (KW <= 64), appended through a 128-bit shift register.
 */
#include "bitpack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* clamp(floor(q) + 2, 0, 3) for q = x/s, written as three comparisons (no libm
 * call, vectorizes); identical for every non-NaN q. NaN compares false: level 0. */
static inline int quant2(float x, float s)
{
    float q = x / s;
    return (q >= -1.0f) + (q >= 0.0f) + (q >= 1.0f);
}

int apb_quant2_level(float x, float s) { return quant2(x, s); }

static apb_status check_rows(const char *fn, int rows, int K, int ldx, int ld)
{
    if (rows < 0 || K < 0)
        return apb_fail(APB_EINVAL, "%s: negative shape rows=%d K=%d", fn, rows, K);
    if (ldx < K)
        return apb_fail(APB_EINVAL, "%s: ldx=%d < K=%d", fn, ldx, K);
    if (ld < apb_bits_words(K))
        return apb_fail(APB_EINVAL, "%s: ld=%d words < ceil(K/64)=%d for K=%d", fn, ld,
                        apb_bits_words(K), K);
    return APB_OK;
}

apb_status apb_bitpack_sign(int rows, int K, const float *X, int ldx, uint64_t *P, int ld)
{
    APB_TRY(check_rows("apb_bitpack_sign", rows, K, ldx, ld));
    for (int r = 0; r < rows; r++) {
        const float *x = X + (size_t)r * ldx;
        uint64_t *p = P + (size_t)r * ld;
        for (int j = 0; j < ld; j++) {
            uint64_t w = 0;
            int k0 = j * 64, n = K - k0 < 64 ? K - k0 : 64;
            int b = 0;
#ifdef __SSE2__
            /* baseline x86-64: 4 compares per movemask (no ISA flag needed) */
            for (; b + 4 <= n; b += 4)
                w |= (uint64_t)_mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(x + k0 + b),
                                                            _mm_setzero_ps()))
                     << b;
#endif
            for (; b < n; b++)
                w |= (uint64_t)(x[k0 + b] < 0.0f) << b;
            p[j] = w;
        }
    }
    return APB_OK;
}

apb_status apb_bitpack_2bit(int rows, int K, const float *X, int ldx, float s, uint64_t *sgn,
                            uint64_t *mag, int ld)
{
    APB_TRY(check_rows("apb_bitpack_2bit", rows, K, ldx, ld));
    if (!(s > 0.0f) || !isfinite(s))
        return apb_fail(APB_EINVAL, "apb_bitpack_2bit: step s=%g must be finite and > 0", s);
    for (int r = 0; r < rows; r++) {
        const float *x = X + (size_t)r * ldx;
        for (int j = 0; j < ld; j++) {
            uint64_t ws = 0, wm = 0;
            int k0 = j * 64, n = K - k0 < 64 ? K - k0 : 64;
            for (int b = 0; b < n; b++) {
                float v = x[k0 + b];
                int l = quant2(v, s);
                ws |= (uint64_t)(l <= 1) << b;
                wm |= (uint64_t)(l == 0 || l == 3) << b;
            }
            sgn[(size_t)r * ld + j] = ws;
            mag[(size_t)r * ld + j] = wm;
        }
    }
    return APB_OK;
}

int apb_conv_geom_oh(const apb_conv_geom *g) { return (g->H + 2 * g->pad - g->KH) / g->stride + 1; }
int apb_conv_geom_ow(const apb_conv_geom *g) { return (g->W + 2 * g->pad - g->KW) / g->stride + 1; }

apb_status apb_conv_geom_check(const apb_conv_geom *g)
{
    if (g->C <= 0 || g->H <= 0 || g->W <= 0 || g->KH <= 0 || g->KW <= 0 || g->stride <= 0 ||
        g->pad < 0)
        return apb_fail(APB_EINVAL,
                        "conv geometry C=%d H=%d W=%d KH=%d KW=%d stride=%d pad=%d: sizes must "
                        "be positive (pad >= 0)",
                        g->C, g->H, g->W, g->KH, g->KW, g->stride, g->pad);
    if (g->KH > 64 || g->KW > 64)
        return apb_fail(APB_EUNSUPPORTED, "conv geometry: kernel %dx%d larger than 64", g->KH,
                        g->KW);
    if (g->H + 2 * g->pad < g->KH || g->W + 2 * g->pad < g->KW)
        return apb_fail(APB_ESHAPE, "conv geometry: kernel %dx%d larger than padded input %dx%d",
                        g->KH, g->KW, g->H + 2 * g->pad, g->W + 2 * g->pad);
    return APB_OK;
}

/* Appends n <= 64 bits to a packed row through a 128-bit shift register. */
typedef struct {
    uint64_t *out;
    unsigned __int128 acc;
    int fill;
} bitsink;

static inline void sink_put(bitsink *s, uint64_t bits, int n)
{
    s->acc |= (unsigned __int128)bits << s->fill;
    s->fill += n;
    if (s->fill >= 64) {
        *s->out++ = (uint64_t)s->acc;
        s->acc >>= 64;
        s->fill -= 64;
    }
}

static inline uint64_t window(const uint64_t *row, int start, int n)
{
    int w = start >> 6, off = start & 63;
    unsigned __int128 v = row[w];
    if (off + n > 64)
        v |= (unsigned __int128)row[w + 1] << 64;
    uint64_t r = (uint64_t)(v >> off);
    return n == 64 ? r : r & ((UINT64_C(1) << n) - 1);
}

/* planes: 1 (sign) or 2 (sgn, mag). Row bitmaps cover the padded width Wp = W+2P
 * plus one spare word so window() may read row[w+1]. */
static apb_status conv_pack(const apb_conv_geom *g, const float *x, float s, int planes,
                            uint64_t *out0, uint64_t *out1, int ld)
{
    APB_TRY(apb_conv_geom_check(g));
    int K = g->C * g->KH * g->KW;
    if (ld < apb_bits_words(K))
        return apb_fail(APB_EINVAL, "conv pack: ld=%d words < ceil(K/64)=%d (K=%d)", ld,
                        apb_bits_words(K), K);
    if (planes == 2 && (!(s > 0.0f) || !isfinite(s)))
        return apb_fail(APB_EINVAL, "conv pack 2-bit: step s=%g must be finite and > 0", s);
    int OH = apb_conv_geom_oh(g), OW = apb_conv_geom_ow(g);
    int Wp = g->W + 2 * g->pad, rw = (Wp + 63) / 64 + 1;
    size_t nrow = (size_t)g->C * g->H;
    uint64_t *bm = calloc(nrow * rw * planes, sizeof(uint64_t));
    if (!bm)
        return apb_fail(APB_ENOMEM, "conv pack: %zu bytes for row bitmaps",
                        nrow * rw * planes * sizeof(uint64_t));
    for (size_t r = 0; r < nrow; r++) {
        const float *xr = x + r * g->W;
        uint64_t *b0 = bm + r * rw * planes, *b1 = b0 + rw;
        for (int iw = 0; iw < g->W; iw++) {
            int col = iw + g->pad;
            if (planes == 1) {
                b0[col >> 6] |= (uint64_t)(xr[iw] < 0.0f) << (col & 63);
            } else {
                int l = quant2(xr[iw], s);
                b0[col >> 6] |= (uint64_t)(l <= 1) << (col & 63);
                b1[col >> 6] |= (uint64_t)(l == 0 || l == 3) << (col & 63);
            }
        }
    }
    for (int oh = 0; oh < OH; oh++) {
        for (int ow = 0; ow < OW; ow++) {
            size_t n = (size_t)oh * OW + ow;
            for (int p = 0; p < planes; p++) {
                uint64_t *o = (p == 0 ? out0 : out1) + n * ld;
                bitsink sk = {o, 0, 0};
                for (int c = 0; c < g->C; c++) {
                    for (int kh = 0; kh < g->KH; kh++) {
                        int ih = oh * g->stride - g->pad + kh;
                        uint64_t bits = 0;
                        if (ih >= 0 && ih < g->H)
                            bits = window(bm + ((size_t)c * g->H + ih) * rw * planes + p * rw,
                                          ow * g->stride, g->KW);
                        sink_put(&sk, bits, g->KW);
                    }
                }
                if (sk.fill > 0)
                    *sk.out++ = (uint64_t)sk.acc;
                for (int j = (int)(sk.out - o); j < ld; j++)
                    o[j] = 0;
            }
        }
    }
    free(bm);
    return APB_OK;
}

apb_status apb_bitpack_conv_sign(const apb_conv_geom *g, const float *x, uint64_t *P, int ld)
{
    return conv_pack(g, x, 1.0f, 1, P, NULL, ld);
}

apb_status apb_bitpack_conv_2bit(const apb_conv_geom *g, const float *x, float s, uint64_t *sgn,
                                 uint64_t *mag, int ld)
{
    return conv_pack(g, x, s, 2, sgn, mag, ld);
}

/* Valid-tap mask along one axis for output position o: bit t set when the tap
 * o*S - P + t lies inside [0, len). */
static uint64_t axis_mask(int o, int S, int P, int ksz, int len)
{
    uint64_t m = 0;
    for (int t = 0; t < ksz; t++) {
        int i = o * S - P + t;
        if (i >= 0 && i < len)
            m |= UINT64_C(1) << t;
    }
    return m;
}

static int find_or_add(uint64_t *list, int *n, uint64_t v)
{
    for (int i = 0; i < *n; i++)
        if (list[i] == v)
            return i;
    list[*n] = v;
    return (*n)++;
}

static inline int popc(uint64_t x) { return __builtin_popcountll(x); }

apb_status apb_bitconv_pad_init(apb_bitconv_pad *p, const apb_conv_geom *g, int M,
                                const uint64_t *w_sgn, const uint64_t *w_mag, int ldw)
{
    memset(p, 0, sizeof *p);
    APB_TRY(apb_conv_geom_check(g));
    int K = g->C * g->KH * g->KW, KWd = apb_bits_words(K);
    if (M < 0 || ldw < KWd)
        return apb_fail(APB_EINVAL, "apb_bitconv_pad_init: M=%d, ldw=%d (need >= %d for K=%d)", M,
                        ldw, KWd, K);
    int OH = apb_conv_geom_oh(g), OW = apb_conv_geom_ow(g), N = OH * OW;
    uint64_t full_h = g->KH == 64 ? ~UINT64_C(0) : (UINT64_C(1) << g->KH) - 1;
    uint64_t full_w = g->KW == 64 ? ~UINT64_C(0) : (UINT64_C(1) << g->KW) - 1;
    uint64_t *hm = malloc(sizeof(uint64_t) * (OH + OW + 2));
    p->pattern = malloc(sizeof(int32_t) * (size_t)(N > 0 ? N : 1));
    if (!hm || !p->pattern) {
        free(hm);
        apb_bitconv_pad_free(p);
        return apb_fail(APB_ENOMEM, "apb_bitconv_pad_init: N=%d", N);
    }
    uint64_t *wm = hm + OH + 1;
    int nh = 0, nw = 0;
    find_or_add(hm, &nh, full_h); /* class 0 = interior on each axis */
    find_or_add(wm, &nw, full_w);
    int *ohc = malloc(sizeof(int) * (OH + OW));
    if (!ohc) {
        free(hm);
        apb_bitconv_pad_free(p);
        return apb_fail(APB_ENOMEM, "apb_bitconv_pad_init");
    }
    int *owc = ohc + OH;
    for (int oh = 0; oh < OH; oh++)
        ohc[oh] = find_or_add(hm, &nh, axis_mask(oh, g->stride, g->pad, g->KH, g->H));
    for (int ow = 0; ow < OW; ow++)
        owc[ow] = find_or_add(wm, &nw, axis_mask(ow, g->stride, g->pad, g->KW, g->W));
    /* pattern id per (h class, w class) pair: (0,0) -> 0, others numbered on use */
    int *pid = malloc(sizeof(int) * nh * nw);
    if (!pid) {
        free(hm), free(ohc);
        apb_bitconv_pad_free(p);
        return apb_fail(APB_ENOMEM, "apb_bitconv_pad_init");
    }
    for (int i = 0; i < nh * nw; i++)
        pid[i] = -1;
    pid[0] = 0;
    int np = 1;
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            int *q = &pid[ohc[oh] * nw + owc[ow]];
            if (*q < 0)
                *q = np++;
            p->pattern[oh * OW + ow] = *q;
        }
    p->M = M;
    p->N = N;
    p->n_patterns = np;
    p->corr = calloc((size_t)np * (M > 0 ? M : 1), sizeof(int32_t));
    uint64_t *pad = calloc((size_t)(KWd + 1), sizeof(uint64_t));
    if (!p->corr || !pad) {
        free(hm), free(ohc), free(pid), free(pad);
        apb_bitconv_pad_free(p);
        return apb_fail(APB_ENOMEM, "apb_bitconv_pad_init: %d patterns x M=%d", np, M);
    }
    for (int ih = 0; ih < nh; ih++)
        for (int iw = 0; iw < nw; iw++) {
            int id = pid[ih * nw + iw];
            if (id <= 0)
                continue;
            /* packed plane of the padded taps of this pattern */
            memset(pad, 0, sizeof(uint64_t) * (KWd + 1));
            for (int c = 0; c < g->C; c++)
                for (int kh = 0; kh < g->KH; kh++)
                    for (int kw = 0; kw < g->KW; kw++) {
                        int inside = ((hm[ih] >> kh) & 1) && ((wm[iw] >> kw) & 1);
                        int k = (c * g->KH + kh) * g->KW + kw;
                        if (!inside)
                            pad[k >> 6] |= UINT64_C(1) << (k & 63);
                    }
            for (int m = 0; m < M; m++) {
                const uint64_t *s = w_sgn + (size_t)m * ldw;
                const uint64_t *u = w_mag ? w_mag + (size_t)m * ldw : NULL;
                long sum = 0;
                for (int j = 0; j < KWd; j++) {
                    uint64_t q = pad[j];
                    /* wval = (1-2s)(1+2u) = 1 + 2u - 2s - 4su */
                    sum += popc(q) - 2 * popc(q & s[j]);
                    if (u)
                        sum += 2 * popc(q & u[j]) - 4 * popc(q & s[j] & u[j]);
                }
                p->corr[(size_t)id * M + m] = (int32_t)sum;
            }
        }
    free(hm), free(ohc), free(pid), free(pad);
    return APB_OK;
}

void apb_bitconv_pad_free(apb_bitconv_pad *p)
{
    free(p->pattern);
    free(p->corr);
    memset(p, 0, sizeof *p);
}
