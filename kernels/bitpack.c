/* bitpack.c - sign / 2-bit packing of float matrices and fused im2col packing of
 * images, plus the exact zero-padding correction for packed convolutions.
 *
 * The im2col packer never builds a float patch matrix: it packs every input row
 * (c, ih) into bitmaps over the zero-padded width (padding = bit 0), one per
 * stride phase, so the taps of consecutive output pixels are consecutive bits.
 * For each block of 64 output pixels and each K word it gathers the 64 masks
 * "tap k over the block" (64-bit windows) and transposes them (64x64 bits) into
 * the pixels' words. Workspace: caller-provided (_ws variants) or a grow-only
 * thread-local buffer, so steady state allocates nothing. AVX-512 helpers for the
 * compares and the transpose live in bitpack_avx512.c.
 */
#include "bitpack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "cpu.h"
#include "threads.h"
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* Grow-only thread-local workspace for the packers called without one: steady
 * state allocates nothing. */
static void *grow_tls(size_t bytes)
{
    return apb_thread_scratch(APB_TLS_BITPACK, bytes ? bytes : 64);
}

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
    if (apb_isa_active() == APB_ISA_AVX512) {
        apb_bitpack_rows_avx512(rows, K, X, ldx, 1.0f, 1, P, NULL, ld);
        return APB_OK;
    }
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
    if (apb_isa_active() == APB_ISA_AVX512) {
        apb_bitpack_rows_avx512(rows, K, X, ldx, s, 2, sgn, mag, ld);
        return APB_OK;
    }
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

/* In-place transpose of a 64x64 bit matrix, rows = words, column c = bit c:
 * afterwards a[c] bit r = old a[r] bit c. Stage j swaps bit j of the row index
 * with bit j of the column index (elements whose two bits differ trade places),
 * so after the six stages row and column are exchanged. */
static void bit_transpose64(uint64_t *a)
{
    static const uint64_t mk[6] = {UINT64_C(0x00000000FFFFFFFF), UINT64_C(0x0000FFFF0000FFFF),
                                   UINT64_C(0x00FF00FF00FF00FF), UINT64_C(0x0F0F0F0F0F0F0F0F),
                                   UINT64_C(0x3333333333333333), UINT64_C(0x5555555555555555)};
    for (int s = 0, j = 32; s < 6; s++, j >>= 1) {
        uint64_t m = mk[s];
        for (int r0 = 0; r0 < 64; r0 += 2 * j)
            for (int r = r0; r < r0 + j; r++) {
                uint64_t t = ((a[r] >> j) ^ a[r + j]) & m;
                a[r + j] ^= t;
                a[r] ^= t << j;
            }
    }
}

/* n <= 64 bits of a bitmap starting at bit `start` (the bitmap has a spare word
 * after its last used one, so row[w + 1] is always readable). */
static inline uint64_t window(const uint64_t *row, int start, int n)
{
    int w = start >> 6, off = start & 63;
    uint64_t r = row[w] >> off;
    if (off)
        r |= row[w + 1] << (64 - off);
    return n == 64 ? r : r & ((UINT64_C(1) << n) - 1);
}

/* Keeps bits 0, 2, 4, ... of x, packed into the low 32 bits. */
static inline uint64_t even_bits(uint64_t x)
{
    x &= UINT64_C(0x5555555555555555);
    x = (x | (x >> 1)) & UINT64_C(0x3333333333333333);
    x = (x | (x >> 2)) & UINT64_C(0x0F0F0F0F0F0F0F0F);
    x = (x | (x >> 4)) & UINT64_C(0x00FF00FF00FF00FF);
    x = (x | (x >> 8)) & UINT64_C(0x0000FFFF0000FFFF);
    return (x | (x >> 16)) & UINT64_C(0x00000000FFFFFFFF);
}

/* Sign (plane 0) and 2-bit (planes 0 = sgn, 1 = mag) bits of 4 consecutive
 * floats as 4-bit masks, the same rules as quant2(). */
static inline void bits4(const float *x, float s, int planes, unsigned *b0, unsigned *b1)
{
#ifdef __SSE2__
    __m128 v = _mm_loadu_ps(x);
    if (planes == 1) {
        *b0 = (unsigned)_mm_movemask_ps(_mm_cmplt_ps(v, _mm_setzero_ps()));
        return;
    }
    __m128 q = _mm_div_ps(v, _mm_set1_ps(s));
    *b0 = (unsigned)_mm_movemask_ps(_mm_cmpnge_ps(q, _mm_setzero_ps()));
    *b1 = (unsigned)(_mm_movemask_ps(_mm_cmpnge_ps(q, _mm_set1_ps(-1.0f))) |
                     _mm_movemask_ps(_mm_cmpge_ps(q, _mm_set1_ps(1.0f))));
#else
    unsigned m0 = 0, m1 = 0;
    for (int i = 0; i < 4; i++) {
        if (planes == 1) {
            m0 |= (unsigned)(x[i] < 0.0f) << i;
        } else {
            int l = quant2(x[i], s);
            m0 |= (unsigned)(l <= 1) << i;
            m1 |= (unsigned)(l == 0 || l == 3) << i;
        }
    }
    *b0 = m0;
    *b1 = m1;
#endif
}

static inline void bits1(float x, float s, int planes, unsigned *b0, unsigned *b1)
{
    if (planes == 1) {
        *b0 = x < 0.0f;
        return;
    }
    int l = quant2(x, s);
    *b0 = l <= 1;
    *b1 = l == 0 || l == 3;
}

/* Geometry-derived sizes of the packer's workspace. Row bitmaps: for every plane,
 * input row (c, ih) and phase f < S, the bits of padded columns q*S + f over
 * q < Q = ceil(Wp/S), in RW words (one spare). */
typedef struct {
    int S, Q, RW, FW; /* FW: words of one phase-free padded row (strides > 1) */
    size_t words;     /* bitmap words, all planes, + 2 phase-free rows */
} pack_dims;

static pack_dims dims_of(const apb_conv_geom *g, int planes)
{
    pack_dims d;
    int Wp = g->W + 2 * g->pad;
    d.S = g->stride;
    d.Q = (Wp + d.S - 1) / d.S;
    d.RW = (d.Q + 63) / 64 + 1;
    d.FW = (Wp + 63) / 64 + 1;
    d.words = (size_t)planes * g->C * g->H * d.S * d.RW + 2 * (size_t)d.FW;
    return d;
}

size_t apb_bitpack_conv_ws_bytes(const apb_conv_geom *g, int planes)
{
    if (apb_conv_geom_check(g) != APB_OK || planes < 1 || planes > 2)
        return 0;
    return dims_of(g, planes).words * sizeof(uint64_t) + 64; /* + alignment slack */
}

/* Row bitmaps of the (plane, c, ih, phase) rows r = c*H + ih in [r0, r1).
 * fullbuf: 2*FW words of scratch (a phase-free padded row, strides > 1). */
static void build_bitmaps(const apb_conv_geom *g, const pack_dims *d, const float *x, float s,
                          int planes, uint64_t *bm, int fast, size_t r0, size_t r1,
                          uint64_t *fullbuf)
{
    int W = g->W, P = g->pad, S = d->S, RW = d->RW, Wp = W + 2 * P;
    size_t plane_words = (size_t)g->C * g->H * S * RW;
    /* a padded-width bitmap of one row (phase-free), for strides > 1 */
    uint64_t *full[2] = {fullbuf, fullbuf + d->FW};
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * W;
        uint64_t *o0 = bm + r * S * RW, *o1 = o0 + plane_words;
        memset(o0, 0, sizeof(uint64_t) * S * RW);
        if (planes == 2)
            memset(o1, 0, sizeof(uint64_t) * S * RW);
        uint64_t *f0 = S == 1 ? o0 : full[0], *f1 = S == 1 ? o1 : full[1];
        if (S > 1) {
            memset(full[0], 0, sizeof(uint64_t) * 2 * (size_t)d->FW);
        }
        int iw = 0;
        unsigned b0 = 0, b1 = 0;
        if (fast) {
            apb_bitpack_or_row_avx512(xr, W, s, planes, f0, f1, P);
            iw = W;
        }
        for (; iw + 4 <= W; iw += 4) {
            bits4(xr + iw, s, planes, &b0, &b1);
            int pos = iw + P, w = pos >> 6, off = pos & 63;
            f0[w] |= (uint64_t)b0 << off;
            if (off > 60)
                f0[w + 1] |= (uint64_t)b0 >> (64 - off);
            if (planes == 2) {
                f1[w] |= (uint64_t)b1 << off;
                if (off > 60)
                    f1[w + 1] |= (uint64_t)b1 >> (64 - off);
            }
        }
        for (; iw < W; iw++) {
            bits1(xr[iw], s, planes, &b0, &b1);
            int pos = iw + P;
            f0[pos >> 6] |= (uint64_t)b0 << (pos & 63);
            if (planes == 2)
                f1[pos >> 6] |= (uint64_t)b1 << (pos & 63);
        }
        if (S == 1)
            continue;
        for (int p = 0; p < planes; p++) {
            const uint64_t *f = p ? full[1] : full[0];
            uint64_t *o = p ? o1 : o0;
            if (S == 2) {
                /* phase 0 = even columns, phase 1 = odd columns, 32 per word */
                for (int w = 0; w < (Wp + 63) / 64; w++) {
                    uint64_t e = even_bits(f[w]), od = even_bits(f[w] >> 1);
                    o[w >> 1] |= e << (32 * (w & 1));
                    o[RW + (w >> 1)] |= od << (32 * (w & 1));
                }
            } else {
                for (int col = 0; col < Wp; col++)
                    if ((f[col >> 6] >> (col & 63)) & 1) {
                        int q = col / S;
                        o[(col % S) * RW + (q >> 6)] |= UINT64_C(1) << (q & 63);
                    }
            }
        }
    }
}

/* One pixel block's run inside one output row: pixels n0+i0 .. n0+i0+len-1 are
 * (oh, ow .. ow+len-1). */
typedef struct {
    int oh, ow, len, i0;
} pix_seg;

/* Pixels n0 .. n0+63 (fewer at the end): for each K word, the 64 masks "tap k
 * over the block's pixels" from the row bitmaps (windows of consecutive pixels
 * are contiguous bits of one phase), transposed into the pixels' words. */
static void pack_block(const apb_conv_geom *g, const pack_dims *dp, int planes, const uint64_t *bm,
                       int n0, int N, int OW, int K, int KWd, int ld, uint64_t *out0,
                       uint64_t *out1, int fast)
{
    const pack_dims d = *dp;
    int S = d.S, RW = d.RW, KHW = g->KH * g->KW;
    size_t plane_words = (size_t)g->C * g->H * S * RW;
    uint64_t tm[2][64];
    pix_seg seg[66];
    int cnt = N - n0 < 64 ? N - n0 : 64, nseg = 0;
    for (int i = 0; i < cnt;) {
        int n = n0 + i, oh = n / OW, ow = n % OW;
        int len = OW - ow < cnt - i ? OW - ow : cnt - i;
        seg[nseg++] = (pix_seg){oh, ow, len, i};
        i += len;
    }
    for (int j = 0; j < KWd; j++) {
        int k = j * 64, nb = K - k < 64 ? K - k : 64;
        int c = k / KHW, kh = k / g->KW % g->KH, kw = k % g->KW;
        for (int b = 0; b < nb; b++) {
            uint64_t m0 = 0, m1 = 0;
            size_t rbase = (size_t)c * g->H * S * RW + (size_t)(kw % S) * RW;
            int qoff = kw / S;
            for (int t = 0; t < nseg; t++) {
                int ih = seg[t].oh * S - g->pad + kh;
                if ((unsigned)ih >= (unsigned)g->H)
                    continue;
                const uint64_t *row = bm + rbase + (size_t)ih * S * RW;
                int q0 = seg[t].ow + qoff;
                m0 |= window(row, q0, seg[t].len) << seg[t].i0;
                if (planes == 2)
                    m1 |= window(row + plane_words, q0, seg[t].len) << seg[t].i0;
            }
            tm[0][b] = m0;
            tm[1][b] = m1;
            if (++kw == g->KW) {
                kw = 0;
                if (++kh == g->KH) {
                    kh = 0;
                    c++;
                }
            }
        }
        for (int p = 0; p < planes; p++) {
            uint64_t *t = tm[p], *o = (p ? out1 : out0) + (size_t)n0 * ld + j;
            for (int b = nb; b < 64; b++)
                t[b] = 0;
            if (fast)
                apb_bit_transpose64_avx512(t);
            else
                bit_transpose64(t);
            for (int i = 0; i < cnt; i++)
                o[(size_t)i * ld] = t[i];
        }
    }
    for (int p = 0; p < planes; p++) {
        uint64_t *o = (p ? out1 : out0) + (size_t)n0 * ld;
        for (int i = 0; i < cnt; i++)
            for (int j = KWd; j < ld; j++)
                o[(size_t)i * ld + j] = 0;
    }
}

/* Threads for one image's pass of `work` units: 1 below 2^17 units, and 1 inside
 * any parallel region (also an inactive, if-false one: a nested team would be
 * created anew each call). */
static int image_threads(double work)
{
    int nth = apb_threads_get();
#ifdef _OPENMP
    if (omp_get_level() > 0)
        nth = 1;
#endif
    return work < (1 << 17) ? 1 : nth;
}

/* planes: 1 (sign) or 2 (sgn, mag). For each block of 64 output pixels and each
 * K word, builds the 64 masks "tap k over the block's pixels" from the row
 * bitmaps (windows of consecutive pixels are contiguous bits of one phase) and
 * transposes them into the 64 pixels' words. */
static apb_status conv_pack(const apb_conv_geom *g, const float *x, float s, int planes,
                            uint64_t *out0, uint64_t *out1, int ld, void *ws, size_t ws_bytes)
{
    APB_TRY(apb_conv_geom_check(g));
    int K = g->C * g->KH * g->KW, KWd = apb_bits_words(K);
    if (ld < KWd)
        return apb_fail(APB_EINVAL, "conv pack: ld=%d words < ceil(K/64)=%d (K=%d)", ld, KWd, K);
    if (planes == 2 && (!(s > 0.0f) || !isfinite(s)))
        return apb_fail(APB_EINVAL, "conv pack 2-bit: step s=%g must be finite and > 0", s);
    pack_dims d = dims_of(g, planes);
    size_t need = d.words * sizeof(uint64_t);
    if (!ws) {
        ws = grow_tls(need);
        if (!ws)
            return apb_fail(APB_ENOMEM, "conv pack: %zu bytes of row bitmaps", need);
    } else if (ws_bytes < need + 64) {
        return apb_fail(APB_EINVAL, "conv pack: workspace %zu bytes < %zu needed", ws_bytes,
                        need + 64);
    } else {
        ws = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    }
    uint64_t *bm = ws;
    int fast = apb_isa_active() == APB_ISA_AVX512;
    int OH = apb_conv_geom_oh(g), OW = apb_conv_geom_ow(g), N = OH * OW;
    /* One image is split over the threads (bitmap rows, then blocks of 64
     * pixels) when it is large enough; each part writes only its own words, so
     * the packed bits are the same for any thread count. Inside a parallel
     * region (images packed concurrently) it stays on the calling thread. */
    int nth = 2 * d.FW > 144 ? 1 : image_threads((double)N * K / 2); /* split from 2^18 taps */
    size_t rows = (size_t)g->C * g->H;
    uint64_t *fulls = bm + d.words - 2 * (size_t)d.FW;
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        uint64_t own[144];
        uint64_t *fb = nth > 1 ? own : fulls; /* own phase-free row per thread */
#pragma omp for schedule(static)
        for (long r = 0; r < (long)rows; r++)
            build_bitmaps(g, &d, x, s, planes, bm, fast, (size_t)r, (size_t)r + 1, fb);
#pragma omp for schedule(static)
        for (int n0 = 0; n0 < N; n0 += 64)
            pack_block(g, &d, planes, bm, n0, N, OW, K, KWd, ld, out0, out1, fast);
    }
    return APB_OK;
}

apb_status apb_bitpack_conv_sign(const apb_conv_geom *g, const float *x, uint64_t *P, int ld)
{
    return conv_pack(g, x, 1.0f, 1, P, NULL, ld, NULL, 0);
}

apb_status apb_bitpack_conv_2bit(const apb_conv_geom *g, const float *x, float s, uint64_t *sgn,
                                 uint64_t *mag, int ld)
{
    return conv_pack(g, x, s, 2, sgn, mag, ld, NULL, 0);
}

apb_status apb_bitpack_conv_sign_ws(const apb_conv_geom *g, const float *x, uint64_t *P, int ld,
                                    void *ws, size_t ws_bytes)
{
    if (!ws)
        return apb_fail(APB_EINVAL, "apb_bitpack_conv_sign_ws: NULL workspace");
    return conv_pack(g, x, 1.0f, 1, P, NULL, ld, ws, ws_bytes);
}

apb_status apb_bitpack_conv_2bit_ws(const apb_conv_geom *g, const float *x, float s,
                                    uint64_t *sgn, uint64_t *mag, int ld, void *ws,
                                    size_t ws_bytes)
{
    if (!ws)
        return apb_fail(APB_EINVAL, "apb_bitpack_conv_2bit_ws: NULL workspace");
    return conv_pack(g, x, s, 2, sgn, mag, ld, ws, ws_bytes);
}

/* ---- channel-packed images -------------------------------------------------- */

/* 8x8 bit matrix in a word, element (i, j) at bit 8i + j: returns its transpose. */
static inline uint64_t transpose8(uint64_t x)
{
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
    x ^= t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
    x ^= t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
    x ^= t ^ (t << 28);
    return x;
}

/* Bits of n <= 8 consecutive values (bit j = value j): sign, or sgn / mag. */
static inline void bits8(const float *x, int n, float s, int planes, unsigned *b0, unsigned *b1)
{
    unsigned m0 = 0, m1 = 0;
    if (planes == 1) {
#ifdef __SSE2__
        if (n == 8) {
            __m128 z = _mm_setzero_ps();
            *b0 = (unsigned)_mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(x), z)) |
                  (unsigned)_mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(x + 4), z)) << 4;
            return;
        }
#endif
        for (int j = 0; j < n; j++)
            m0 |= (unsigned)(x[j] < 0.0f) << j;
    } else {
        for (int j = 0; j < n; j++) {
            int l = quant2(x[j], s);
            m0 |= (unsigned)(l <= 1) << j;
            m1 |= (unsigned)(l == 0 || l == 3) << j;
        }
    }
    *b0 = m0;
    *b1 = m1;
}

/* Row i of the padded bit image (see bitpack.h). */
static void chan_row(const apb_conv_geom *g, const float *x, float s, int planes, int i,
                     uint64_t *Z0, uint64_t *Z1)
{
    int C = g->C, H = g->H, W = g->W, P = g->pad, Cw = C / 64, Wp = W + 2 * P;
    size_t o = (size_t)i * Wp * Cw;
    int h = i - P;
    if (h < 0 || h >= H) {
        memset(Z0 + o, 0, (size_t)Wp * Cw * sizeof *Z0);
        if (planes == 2)
            memset(Z1 + o, 0, (size_t)Wp * Cw * sizeof *Z1);
        return;
    }
    for (int pl = 0; pl < planes; pl++) {
        uint64_t *Z = pl ? Z1 : Z0;
        memset(Z + o, 0, (size_t)P * Cw * sizeof *Z);
        memset(Z + o + (size_t)(P + W) * Cw, 0, (size_t)P * Cw * sizeof *Z);
    }
    int fast = apb_isa_active() >= APB_ISA_AVX2;
    for (int gw = 0; gw < Cw; gw++)
        for (int w0 = 0; w0 < W; w0 += 8) {
            int n = W - w0 < 8 ? W - w0 : 8;
            if (fast && n == 8) {
                size_t zo = o + (size_t)(P + w0) * Cw + gw;
                apb_bitpack_chan_block_avx2(x + ((size_t)64 * gw * H + h) * W + w0, (size_t)H * W, s,
                                            planes, Z0 + zo, planes == 2 ? Z1 + zo : NULL, (size_t)Cw);
                continue;
            }
            uint64_t a0[8] = {0}, a1[8] = {0}; /* the n pixels' words */
            for (int q = 0; q < 8; q++) {
                uint64_t u0 = 0, u1 = 0; /* byte i: channel 64gw + 8q + i over the pixels */
                for (int ci = 0; ci < 8; ci++) {
                    const float *xr = x + ((size_t)(64 * gw + 8 * q + ci) * H + h) * W + w0;
                    unsigned m0, m1 = 0;
                    bits8(xr, n, s, planes, &m0, &m1);
                    u0 |= (uint64_t)m0 << (8 * ci);
                    u1 |= (uint64_t)m1 << (8 * ci);
                }
                u0 = transpose8(u0); /* byte j: pixel j over the 8 channels */
                for (int j = 0; j < n; j++)
                    a0[j] |= (u0 >> (8 * j) & 0xFF) << (8 * q);
                if (planes == 2) {
                    u1 = transpose8(u1);
                    for (int j = 0; j < n; j++)
                        a1[j] |= (u1 >> (8 * j) & 0xFF) << (8 * q);
                }
            }
            for (int j = 0; j < n; j++) {
                Z0[o + (size_t)(P + w0 + j) * Cw + gw] = a0[j];
                if (planes == 2)
                    Z1[o + (size_t)(P + w0 + j) * Cw + gw] = a1[j];
            }
        }
}

apb_status apb_bitpack_chan(const apb_conv_geom *g, const float *x, float s, int planes,
                            uint64_t *Z0, uint64_t *Z1)
{
    APB_TRY(apb_conv_geom_check(g));
    if (!apb_chan_ok(g))
        return apb_fail(APB_EINVAL, "channel pack: C=%d is not a multiple of 64", g->C);
    if (planes == 2 && (!(s > 0.0f) || !isfinite(s)))
        return apb_fail(APB_EINVAL, "channel pack 2-bit: step s=%g must be finite and > 0", s);
    int rows = g->H + 2 * g->pad;
    int nth = image_threads((double)g->C * g->H * g->W);
    /* rows claimed (threads.h): each thread the band of rows its GEMM reads
     * next, a held-up one's finished by the others */
    apb_claims cl;
    apb_claims_init(&cl, rows, nth);
#pragma omp parallel num_threads(nth) if (nth > 1)
    for (long i; (i = apb_claim(&cl, apb_thread_num())) >= 0;)
        chan_row(g, x, s, planes, (int)i, Z0, Z1);
    return APB_OK;
}

int apb_chan_planes_ok(void) { return apb_isa_active() == APB_ISA_AVX512; }

void apb_chan_planes(const apb_conv_geom *g, const uint64_t *Z, const uint64_t *Zm, int c0, int c1, int i0,
                     int i1, int8_t *out)
{
    apb_chan_planes_avx512(g, Z, Zm, c0, c1, i0, i1, out);
}

apb_status apb_bitpack_chan_im2col(const apb_conv_geom *g, const uint64_t *Z, uint64_t *P, int ld)
{
    APB_TRY(apb_conv_geom_check(g));
    if (!apb_chan_ok(g))
        return apb_fail(APB_EINVAL, "channel im2col: C=%d is not a multiple of 64", g->C);
    int Cw = g->C / 64, KH = g->KH, KW = g->KW, S = g->stride, Wp = g->W + 2 * g->pad;
    int OH = apb_conv_geom_oh(g), OW = apb_conv_geom_ow(g);
    if (ld < KH * KW * Cw)
        return apb_fail(APB_EINVAL, "channel im2col: ld=%d words < %d", ld, KH * KW * Cw);
    size_t run = (size_t)KW * Cw;
    int nth = image_threads((double)OH * OW * KH * run * 8);
    apb_claims cl; /* output rows claimed, as apb_bitpack_chan's */
    apb_claims_init(&cl, OH, nth);
#pragma omp parallel num_threads(nth) if (nth > 1)
    for (long i; (i = apb_claim(&cl, apb_thread_num())) >= 0;)
        for (int oh = (int)i, ow = 0; ow < OW; ow++) {
            uint64_t *d = P + ((size_t)oh * OW + ow) * ld;
            for (int kh = 0; kh < KH; kh++)
                memcpy(d + kh * run, Z + ((size_t)(oh * S + kh) * Wp + (size_t)ow * S) * Cw,
                       run * sizeof *d);
        }
    return APB_OK;
}

void apb_bitpack_reorder_hwc(const apb_conv_geom *g, int M, const uint64_t *src, uint64_t *dst,
                             int ld)
{
    int C = g->C, KH = g->KH, KW = g->KW;
    memset(dst, 0, (size_t)M * ld * sizeof *dst);
    for (int m = 0; m < M; m++) {
        const uint64_t *a = src + (size_t)m * ld;
        uint64_t *b = dst + (size_t)m * ld;
        for (int c = 0; c < C; c++)
            for (int t = 0; t < KH * KW; t++) {
                long k = (long)c * KH * KW + t, k2 = (long)t * C + c;
                b[k2 >> 6] |= (a[k >> 6] >> (k & 63) & 1) << (k2 & 63);
            }
    }
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
