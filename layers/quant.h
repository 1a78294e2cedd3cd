/* quant.h - weight and activation quantizers for training (docs/apb-method.md 1-3).
 *
 * Every quantizer is an autograd op (apb_op descriptor) whose backward is a
 * straight-through estimator, so all carry APB_OP_STE: the generic
 * finite-difference check skips them and tests/test_quant.c checks each
 * backward against its formula instead. Each op also has a convenience
 * function that builds its attributes and calls apb_apply().
 *
 *   apb_quant_apb     Automatic Prune Binarization: +-alpha inside the band, w outside
 *   apb_quant_binary  plain binary weights a*sgn(w), a = mean|w| (APB with no outliers)
 *   apb_quant_q2w     uniform 2-bit weights with a learnable LSQ step s
 *   apb_quant_mask    unstructured pruning, q = w * mask (mask caller-owned)
 *   apb_quant_prune_binary  pruning + binarization, q = mask * a * sgn(w)
 *   apb_act_sign      binary activations sgn(x)
 *   apb_act_q2        2-bit symmetric activations with a learnable step s
 *   apb_act_int8      8-bit activations (unsigned after a ReLU, else signed), learnable step s
 *
 * Exactness contract (the inference runtime reproduces these bit for bit, so
 * they are written as float expressions, in the order given):
 *   sgn(x)      = x >= 0.0f ? +1 : -1        (sgn(0) = sgn(-0) = +1)
 *   APB band    = fabsf(fabsf(w) - alpha) < delta
 *   APB value   = band ? (w >= 0.0f ? alpha : -alpha) : w     (exactly +-alpha)
 *   2-bit code  = l = clamp(floorf(x / s) + 2, 0, 3)  (true division, floor not
 *                 round; NaN maps to 0), value = s * ((float)l - 1.5f)
 *   binary a    = (float)(sum |w| in double, in index order / n)  (apb_binary_scale)
 *   8-bit code  = r = 1.0f / s; t = x * r; code = lo if !(t > lo) (NaN: 0), hi if
 *                 t >= hi, else t rounded to nearest, ties to even; [lo, hi] =
 *                 [0, 255] unsigned, [-128, 127] signed; value = (float)code * s
 *                 (apb_i8_code in kernels/i8gemm.h)
 * The inline helpers below are those expressions; layers and tests share them.
 *
 * Weight tensors are [M, ...] with M = dim[0] the output channels; "per channel"
 * means one scalar per slice along dim 0 (K = numel / M weights each).
 */
#ifndef APB_QUANT_H
#define APB_QUANT_H

#include <math.h>
#include <stdint.h>

#include "autograd.h"
#include "i8gemm.h"

extern const apb_op apb_op_quant_apb;
extern const apb_op apb_op_quant_binary;
extern const apb_op apb_op_quant_q2w;
extern const apb_op apb_op_quant_mask;
extern const apb_op apb_op_quant_prune_binary;
extern const apb_op apb_op_act_sign;
extern const apb_op apb_op_act_q2;
extern const apb_op apb_op_act_int8;

/* ---- exact element rules (see the contract above) ---- */

static inline float apb_sgnf(float x) { return x >= 0.0f ? 1.0f : -1.0f; }

static inline int apb_apb_in_band(float w, float alpha, float delta)
{
    return fabsf(fabsf(w) - alpha) < delta;
}

static inline float apb_apb_value(float w, float alpha, float delta)
{
    return apb_apb_in_band(w, alpha, delta) ? (w >= 0.0f ? alpha : -alpha) : w;
}

/* 2-bit level index 0..3 of x for step s (s > 0). */
static inline int apb_q2_level(float x, float s)
{
    float k = floorf(x / s);
    if (!(k >= -2.0f)) /* also NaN */
        return 0;
    if (k > 1.0f)
        return 3;
    return (int)k + 2;
}

static inline float apb_q2_value(float x, float s)
{
    return s * ((float)apb_q2_level(x, s) - 1.5f);
}

/* 8-bit activation value of x: apb_i8_code (kernels/i8gemm.h, the one
 * definition the runtime uses too) times the step; r = 1.0f / s. */
static inline float apb_i8_value(float x, float s, float r, int is_signed)
{
    return (float)apb_i8_code(x, r, is_signed) * s;
}

/* ---- APB weights ---- */

typedef struct {
    int per_channel;       /* alpha, delta have M entries (dim 0 of w) instead of 1 */
    int direct_alpha_grad; /* 0: published estimator (default), 1: direct derivative */
} apb_apb_cfg;

/* Q(w) = alpha*sgn(w) where | |w| - alpha | < delta, else w.
 * w [M,...]; alpha, delta [1] or [M] (per_channel). cfg NULL = all defaults.
 * Backward (apb-method.md section 1), g = dL/dQ, b = band indicator, sums and n
 * per output channel when per_channel, over the whole layer otherwise:
 *   dL/dw     += g                                   (identity STE, every weight)
 *   dL/dalpha += -(1/n) sum(g*b*sgn(w))              published (default)
 *             += +sum(g*b*sgn(w))                    direct_alpha_grad
 *   dL/ddelta += (1/(n*delta)) sum(g*b*sgn(w)*(alpha-|w|))
 * Sums are accumulated in double per channel, then over channels in order, so
 * the result does not depend on the thread count. Forward fails (APB_ENUMERIC)
 * on a non-finite alpha or delta. */
apb_status apb_quant_apb(apb_graph *g, apb_var *w, apb_var *alpha, apb_var *delta,
                         const apb_apb_cfg *cfg, apb_var **q);
/* alpha = mean|W|, delta = 3*std(W) (population std), per layer (m = 1) or per
 * channel (m = channels, n divisible by m). w [n]; alpha, delta [m]. */
void apb_apb_init(const float *w, int64_t n, int m, float *alpha, float *delta);
/* Number of full-precision (outside the band) weights for the current alpha/delta. */
int64_t apb_apb_count_fp(const float *w, int64_t n, int m, const float *alpha,
                         const float *delta);

/* ---- plain binary weights ---- */

/* Q(w) = a*sgn(w), a = mean|w| per layer (or per channel along dim 0), computed in
 * forward and treated as a constant. Backward: dL/dw += g, the identity STE,
 * unclipped - the same weight estimator as APB, so the binary baseline differs
 * from APB only in having no outliers (weight decay keeps latent weights bounded). */
apb_status apb_quant_binary(apb_graph *g, apb_var *w, int per_channel, apb_var **q);
/* The scale used by apb_quant_binary: a[c] = mean |w| over channel c (m = 1: the
 * whole tensor), double accumulation in index order. w [n]; a [m]. */
void apb_binary_scale(const float *w, int64_t n, int m, float *a);

/* ---- uniform 2-bit (weights and activations share the same quantizer) ---- */

/* LSQ gradient-scale denominator: the 2-bit code spans Qp = 3 steps (l = 0..3). */
#define APB_Q2_QP 3

/* q = s*(clamp(floorf(w/s), -2, 1) + 0.5), i.e. apb_q2_value. w any shape, s [1], s > 0.
 * Backward (LSQ, Esser et al. 2020, with floor treated as the identity):
 *   inside (-2 <= floorf(w/s) <= 1):  dL/dw += g,  dq/ds = (l - 1.5) - w/s
 *   outside:                          dL/dw += 0,  dq/ds = l - 1.5  (= -1.5 or +1.5)
 *   dL/ds += sum(g * dq/ds) / sqrt(n * APB_Q2_QP),  n = numel(w).
 * Forward fails (APB_EINVAL) unless s is finite and > 0. */
apb_status apb_quant_q2w(apb_graph *g, apb_var *w, apb_var *s, apb_var **q);
/* Initial step for x [n]: the s minimising the quantization MSE sum (x - q(x))^2
 * over a grid of 64 candidates s0 * (0.25 .. 2.0), s0 = 2*mean|x|/sqrt(APB_Q2_QP)
 * (the LSQ rule), evaluated on at most 65536 evenly strided elements.
 * Returns 1 when x is all zero (no scale information). */
float apb_q2_init_step(const float *x, int64_t n);
/* Reference kernels behind both 2-bit ops. y[i] = apb_q2_value(x[i], s).
 * apb_q2_backward accumulates dx[i] += g[i]*inside(x[i]) (dx may be NULL) and
 * returns sum(g*dq/ds) unscaled, summed in double over fixed chunks (thread-count
 * independent). x, y, g, dx [n]. */
void apb_q2_forward(const float *x, int64_t n, float s, float *y);
double apb_q2_backward(const float *x, const float *g, int64_t n, float s, float *dx);

/* ---- pruning ---- */

/* q = w * mask; mask is a caller-owned float array of 0/1 with w's numel that must
 * stay alive until backward has run. Backward dL/dw += g*mask. */
apb_status apb_quant_mask(apb_graph *g, apb_var *w, const float *mask, apb_var **q);
/* mask[i] = 1 for the round((1-sparsity)*n) largest |w[i]|, 0 elsewhere; ties
 * are broken by lower index first. sparsity is clamped to [0, 1]. No allocation
 * (radix select on the float bit patterns, 4 passes + 1). w, mask [n]. */
void apb_prune_mask_update(const float *w, int64_t n, float sparsity, float *mask);

/* ---- pruning + binarization ---- */

/* q = mask ? a[c] * sgn(w) : 0 with a[c] = mean |w| over the kept weights of
 * channel c (per_channel) or of the tensor, 0 when none is kept; mask as for
 * apb_quant_mask. Backward dL/dw += g * mask (identity STE on kept weights). */
apb_status apb_quant_prune_binary(apb_graph *g, apb_var *w, const float *mask, int per_channel,
                                  apb_var **q);
/* The scale apb_quant_prune_binary uses: a[c] = (float)(sum of |w| over kept
 * weights in double, index order / kept count). w, mask [n]; a [m]. */
void apb_prune_binary_scale(const float *w, const float *mask, int64_t n, int m, float *a);

/* ---- activations ---- */

/* y = sgn(x) (+1 at 0). Backward: clipped STE dL/dx += g*1(|x| <= 1), or the
 * ApproxSign (Bi-Real Net) derivative g*max(0, 2 - 2|x|) when approx != 0. */
apb_status apb_act_sign(apb_graph *g, apb_var *x, int approx, apb_var **y);

/* 2-bit symmetric activation with a learnable step s [1]: y = apb_q2_value(x, s),
 * levels {-3s/2, -s/2, +s/2, +3s/2}. Backward is the same LSQ estimator as
 * apb_quant_q2w: dL/dx += g inside [-2s, 2s), 0 outside; dL/ds += sum(g*dq/ds) /
 * sqrt(numel(x) * APB_Q2_QP) with numel over the whole tensor (batch included). */
apb_status apb_act_q2(apb_graph *g, apb_var *x, apb_var *s, apb_var **y);

/* 8-bit activation with a learnable step s [1]: y = apb_i8_value(x, s, 1.0f/s,
 * is_signed), codes 0..255 (unsigned, for inputs that cannot be negative) or
 * -128..127 (signed). Backward (LSQ, rounding treated as the identity), with
 * t = x * (1/s) and [lo, hi] the code range:
 *   lo <= t <= hi:  dL/dx += g,  dq/ds = code - t
 *   outside:        dL/dx += 0,  dq/ds = code (lo or hi)
 *   dL/ds += sum(g * dq/ds) / sqrt(numel(x) * hi), numel over the whole tensor.
 * Calibration: a step of exactly 0 means "not set yet"; forward then first sets
 * s = apb_i8_init_step(x) (the first batch the layer sees) and uses it. Forward
 * fails (APB_EINVAL) when s is negative or not finite. */
apb_status apb_act_int8(apb_graph *g, apb_var *x, apb_var *s, int is_signed, apb_var **y);
/* The step minimising sum (x - q(x))^2 over 64 candidates between max|x|/hi
 * (no clipping) and 1/16 of it, on at most 65536 evenly strided elements of
 * x [n]. Returns 1 when x is all zero or not finite (no scale information). */
float apb_i8_init_step(const float *x, int64_t n, int is_signed);

#endif
