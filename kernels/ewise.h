/* ewise.h - the runtime's elementwise passes (conv epilogues, residual adds,
 * activations, pooling rows) at the ISA level chosen at run time.
 *
 * The same C loops (kernels/ewise_body.h) are compiled for the baseline, AVX2
 * and AVX-512 (ewise.c, ewise_avx2.c, ewise_avx512.c) and picked by
 * apb_isa_active(), so APB_ISA forces any level. They were compiled at the
 * baseline ISA only (SSE2) inside infer/. Every level gives the same bits:
 * each element sees the same float operations in the same order, and the build
 * never contracts a*b + c into an FMA (-ffp-contract=off).
 */
#ifndef APB_EWISE_H
#define APB_EWISE_H

#include <stdint.h>

enum { APB_EW_NONE = 0, APB_EW_RELU, APB_EW_HARDTANH };

/* dst[i] = act(sc * v + sh) with v = src[i] (+ add[i] when add != NULL); the
 * affine step only when affine != 0. dst may equal src. */
void apb_ew_post(long n, const float *src, const float *add, int affine, float sc, float sh, int act,
                 float *dst);
/* apb_ew_post then apb_ew_add_act(add2, act2) on its result, in one pass: dst[i] =
 * act2(post(i) + add2[i]), the same operations per element as the two calls.
 * dst may equal src, add or add2. */
void apb_ew_post2(long n, const float *src, const float *add, int affine, float sc, float sh, int act,
                  const float *add2, int act2, float *dst);
/* dst[i] = act(a[i] + b[i]), or act(a[i]) when b == NULL. dst may equal a or b. */
void apb_ew_add_act(long n, const float *a, const float *b, int act, float *dst);

/* The bit GEMM's epilogue in one pass: y[i] = sc * (float)(base - 2*a[i] + ct[i] -
 * cc[i]) + bi (ct, cc NULL = 0), the integers exact: the bits of apb_ew_dot_int,
 * the corrections, then apb_ew_int_float. */
void apb_ew_dot_float(long n, const int32_t *a, int32_t base, const int32_t *ct, const int32_t *cc,
                      float sc, float bi, float *y);

/* max |x[i]| over i < n (0 for n = 0; NaN ignored): the same at every level. */
float apb_ew_absmax(long n, const float *x);

/* The columns of a stride-phase plane row (conv stride S, padding P, input rows
 * of W, planes of Wq columns) that hold input pixels in phase column b: j in
 * [*jlo, *jhi) where 0 <= j*S + b - P < W; the others are padding. */
static inline void apb_phase_cols(int W, int S, int P, int b, int Wq, int *jlo, int *jhi)
{
    int lo = P - b > 0 ? (P - b + S - 1) / S : 0;
    int hi = W - 1 + P - b >= 0 ? (W - 1 + P - b) / S + 1 : 0;
    hi = hi < Wq ? hi : Wq;
    *jlo = lo < hi ? lo : hi;
    *jhi = hi;
}

/* The binary activation of one H x W channel x as the zero-padded stride-phase
 * byte planes of a conv with stride S and padding P (infer/apbrt_fast.c): S*S
 * planes of Hq x Wq bytes one after another, phase (a, b) holding padded pixel
 * (i*S + a, j*S + b) at (i, j): x >= 0 ? +1 : -1 (sgn(0) = +1, NaN -> -1 as the
 * comparison says), 0 where the pixel is padding. */
void apb_ew_sign_planes(const float *x, int H, int W, int S, int P, int Hq, int Wq, int8_t *out);

/* One output row of a k x k pool (stride s, padding p) of one H x W plane x:
 * y[0..OW) for output row oh, max (mx != 0, padding -inf) or average (padding
 * 0, divided by k*k), every output meeting its taps in row-major order (the
 * training op's bits, signed zeros included). Scratch: ph [s * lp] with
 * lp >= OW + off + k/s + 2 and off = p/s + 2, acc [OW]. */
void apb_ew_pool_row(int k, int s, int p, int H, int W, int OW, int mx, const float *x, int oh,
                     float *y, float *ph, int lp, int off, float *acc);

/* Bit GEMM epilogue pieces (bgemm.c): a[i] = base - 2 a[i] (+ ct[i] when ct is
 * not NULL), exact int32; then y[i] = sc * (float)a[i] + bi (multiply and add
 * rounded separately). */
void apb_ew_dot_int(long n, int32_t *a, int32_t base, const int32_t *ct);
void apb_ew_int_float(long n, const int32_t *a, float sc, float bi, float *y);

/* The 3x3 stride-2 max pool with padding 1 (ResNet's stem pool) of one H x W
 * plane into OH x OW (OH = (H - 1) / 2 + 1, OW likewise): the same values as
 * apb_ew_pool_row row by row (taps in row-major order, a tap replaces the
 * running max only when greater, padded taps skipped). Only where
 * apb_ew_has_pool_kernels() (the AVX-512 level; elsewhere apb_ew_pool_row). */
int apb_ew_has_pool_kernels(void);
void apb_ew_maxpool3s2(int H, int W, const float *x, float *y);
/* The same for the 2x2 stride-2 average pool without padding (ResNet's
 * downsampling shortcut): ((((0 + x00) + x01) + x10) + x11) * (1/4) per output,
 * apb_ew_pool_row's order; OH = H / 2, OW = W / 2. */
void apb_ew_avgpool2s2(int H, int W, const float *x, float *y);

/* The level's name: "c", "avx2", "avx512" (tests). */
const char *apb_ew_level(void);

#endif
