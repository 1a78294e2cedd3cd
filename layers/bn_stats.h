/* bn_stats.h - the per-channel statistics step shared by batchnorm
 * (op_batchnorm.c) and the fused batchnorm + ReLU (op_bn_relu.c).
 *
 * Both ops must compute bitwise the same mean, variance and running statistics
 * (the fused op replaces the pair at graph execution, and the exported runtime is
 * compared bit for bit with the training graph), so the arithmetic lives here once.
 * Training mode: values shifted by the channel's first value (less cancellation),
 * float sums per image row (vectorized), double across images; the biased
 * variance normalises, the unbiased one enters the running average. */
#ifndef APB_BN_STATS_H
#define APB_BN_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"

/* Attributes of both ops: running statistics (owned by the model) when present. */
typedef struct {
    apb_bn_state st;
    int has_state;
} apb_bn_attr;

/* x [N, C, H, W] or [N, C]: HW = H*W or 1. */
static inline void apb_bn_dims(const apb_var *x, int *N, int *C, int *HW)
{
    *N = x->dim[0];
    *C = x->dim[1];
    *HW = x->ndim == 4 ? x->dim[2] * x->dim[3] : 1;
}

/* Shape rules of x, gamma, beta (in[0..2]) shared by batchnorm and bn_relu;
 * messages start with the op's name. */
static inline apb_status apb_bn_check_inputs(const char *op, apb_var *const *in)
{
    const apb_var *x = in[0];
    char sx[64], sg[64], sb[64];
    if (x->ndim != 4 && x->ndim != 2)
        return apb_fail(APB_ESHAPE, "%s: input %s is neither [N,C,H,W] nor [N,C]", op,
                        apb_dims_str(x->ndim, x->dim, sx, sizeof sx));
    for (int i = 1; i < 3; i++)
        if (in[i]->ndim != 1 || in[i]->dim[0] != x->dim[1])
            return apb_fail(APB_ESHAPE, "%s: gamma %s / beta %s do not match input %s", op,
                            apb_dims_str(in[1]->ndim, in[1]->dim, sg, sizeof sg),
                            apb_dims_str(in[2]->ndim, in[2]->dim, sb, sizeof sb),
                            apb_dims_str(x->ndim, x->dim, sx, sizeof sx));
    return APB_OK;
}

/* Forward mode rules: training needs more than one value per channel, eval
 * needs running statistics. */
static inline apb_status apb_bn_check_mode(const char *op, int training, int has_state,
                                           const apb_var *x, int64_t m)
{
    char sx[64];
    if (training && m < 2)
        return apb_fail(APB_ESHAPE, "%s: training needs more than one value per channel, input %s",
                        op, apb_dims_str(x->ndim, x->dim, sx, sizeof sx));
    if (!training && !has_state)
        return apb_fail(APB_EINVAL, "%s: eval mode needs running statistics (state is NULL)", op);
    return APB_OK;
}

/* Prefetch one image's row of a channel: the next image's row is C*HW floats
 * away, a jump the hardware prefetcher does not follow. A hint only. */
static inline void apb_bn_prefetch_row(const float *row, int HW)
{
    const char *p = (const char *)row;
    for (size_t b = 0; b < (size_t)HW * sizeof(float); b += 64)
        __builtin_prefetch(p + b, 0, 3);
}

/* One row of the training statistics: s1 += sum (x - x0), s2 += sum (x - x0)^2,
 * summed in float over the row (vectorized), added in double. */
static inline void apb_bn_row_sums(const float *row, int HW, float x0, double *s1, double *s2)
{
    float a1 = 0.0f, a2 = 0.0f;
#pragma omp simd reduction(+ : a1, a2)
    for (int p = 0; p < HW; p++) {
        float d = row[p] - x0;
        a1 += d;
        a2 += d * d;
    }
    *s1 += a1;
    *s2 += a2;
}

/* Running statistics of channel c after a batch of m values with mean and
 * biased variance var (the unbiased variance enters the average). */
static inline void apb_bn_update_running(const apb_bn_state *st, int c, double mean, double var,
                                         int64_t m)
{
    float mo = st->momentum;
    st->running_mean[c] = (1.0f - mo) * st->running_mean[c] + mo * (float)mean;
    st->running_var[c] = (1.0f - mo) * st->running_var[c] +
                         mo * (float)(var * (double)m / (double)(m - 1));
}

/* Batch mean and biased variance of channel c from its row sums over m values
 * (shifted by x0), and the running statistics updated when st is non-NULL. */
static inline void apb_bn_finish_stats(double s1, double s2, int64_t m, float x0, int c,
                                       const apb_bn_state *st, double *mean_out, double *var_out)
{
    double d1 = s1 / (double)m;
    double mean = x0 + d1, var = s2 / (double)m - d1 * d1;
    if (var < 0)
        var = 0;
    if (st)
        apb_bn_update_running(st, c, mean, var, m);
    *mean_out = mean;
    *var_out = var;
}

/* Statistics of channel c of x[N, C, HW] (m = N*HW values). Training: batch mean
 * and biased variance, and the running statistics updated when st is non-NULL;
 * eval: the running statistics. */
static inline void apb_bn_channel_stats(const float *xd, int N, int C, int HW, int c, int training,
                                        const apb_bn_state *st, double *mean_out, double *var_out)
{
    if (!training) {
        *mean_out = st->running_mean[c];
        *var_out = st->running_var[c];
        return;
    }
    float x0 = xd[(size_t)c * HW];
    double s1 = 0, s2 = 0;
    for (int n = 0; n < N; n++) {
        const float *row = xd + ((size_t)n * C + c) * HW;
        if (n + 1 < N)
            apb_bn_prefetch_row(row + (size_t)C * HW, HW);
        apb_bn_row_sums(row, HW, x0, &s1, &s2);
    }
    apb_bn_finish_stats(s1, s2, (int64_t)N * HW, x0, c, st, mean_out, var_out);
}

/* Coefficients of the input gradient of channel c,
 *   dx = k * (dy - mdy - (x - mean) * mdyx),
 * training: the batch-statistics formula; eval: dx = k * dy. */
typedef struct {
    float k, mdy, mdyx;
} apb_bn_dx_coef;

/* The per-channel end of a backward, shared by batchnorm and bn_relu once they
 * have reduced sdy = sum dy and sdyx = sum dy * (x - mean) over channel c (dy is
 * the gradient reaching the normalisation): writes or adds the gamma and beta
 * gradients (fresh: the first contribution, written) and returns the dx
 * coefficients. */
static inline apb_bn_dx_coef apb_bn_channel_grads(apb_var *gamma, apb_var *beta, int c,
                                                  int gfresh, int bfresh, int training,
                                                  float invstd, double sdy, double sdyx,
                                                  int64_t m)
{
    sdyx *= invstd; /* sum dy * xhat */
    if (gamma->requires_grad)
        gamma->grad[c] = (gfresh ? 0.0f : gamma->grad[c]) + (float)sdyx;
    if (beta->requires_grad)
        beta->grad[c] = (bfresh ? 0.0f : beta->grad[c]) + (float)sdy;
    apb_bn_dx_coef q;
    q.k = gamma->data[c] * invstd;
    q.mdy = training ? (float)(sdy / (double)m) : 0.0f;
    q.mdyx = training ? (float)(sdyx / (double)m) * invstd : 0.0f;
    return q;
}

#endif
