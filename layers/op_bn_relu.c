/* op_bn_relu.c - batch normalisation followed by ReLU as one op,
 * y = relu(batchnorm(x)), or with a residual input r in between,
 * y = relu(batchnorm(x) + r) (a ResNet block's output), for 2-d [N,C,H,W] and
 * 1-d [N,C] inputs.
 *
 * Why: batchnorm and relu are memory-bound (~1.4 ns per element when the data
 * streams from L3), and as two ops every activation is streamed five times
 * forward (statistics, normalise read + write, relu read + write) and eight times
 * backward. Fused, the forward reads x twice per channel (the second time mostly
 * from L2) and writes y once; the backward reads x and dy and writes dx, and
 * recomputes the relu mask from x instead of keeping the batchnorm output.
 * With a residual the mask comes from y (recomputing it would read r), and dr
 * is written in the first pass (replacing the add's gradient copy) and read
 * back by the second instead of dy and y (when dr is written, not accumulated).
 *
 * The arithmetic is exactly that of op_batchnorm.c followed by op_relu.c: the
 * same shifted one-pass statistics in the same order, the same running-statistic
 * update, z = x * scale + shift with the same float scale and shift, and
 * y = z > 0 ? z : 0 (a = z + r, y = a > 0 ? a : 0 with a residual, as op_add.c
 * adds). The forward is therefore bitwise equal to the separate ops, and so is
 * the mask the backward recomputes (z > 0 exactly where the relu output is
 * > 0), which makes the gradients bitwise equal to theirs as well.
 */
#include <emmintrin.h>
#include <math.h>
#include <stdint.h>

#include "bn_stats.h"
#include "ops.h"
#include "registry.h"
#include "threads.h"

typedef apb_bn_attr bnr_attr;

typedef struct {
    int training;  /* mode at forward time: decides the backward formula */
    float *mean;   /* [C] */
    float *invstd; /* [C] */
    float *scale;  /* [C] gamma * invstd, as the forward used it */
    float *shift;  /* [C] beta - mean * scale */
} bnr_saved;

/* OpenMP over channels only when there is enough work to amortise the team
 * (the same threshold as op_batchnorm.c). */
#define BNR_PAR_MIN (1 << 16)

/* Every pass walks a channel's N rows, C * HW floats apart: the hardware
 * prefetcher does not follow that stride (nor cross into the next 4 KB page), so
 * each pass prefetches the next image's rows of its streams (for writing, with
 * bnr_prefetchw_row) while it works on the current ones: ~5% of a resnet20 step.
 * A hint only: the arithmetic is unchanged. */
static inline void bnr_prefetchw_row(float *row, int HW)
{
    char *p = (char *)row;
    for (size_t b = 0; b < (size_t)HW * sizeof(float); b += 64)
        __builtin_prefetch(p + b, 1, 3);
}

/* Rows written with streaming stores: y and dx are 2-8 MB per op in a training
 * step and are read next by another op, from memory either way; a streaming store
 * skips reading each line before overwriting it. Needs 16-byte aligned rows. */
static int bnr_stream_ok(const float *base, int HW)
{
    return HW % 4 == 0 && ((uintptr_t)base & 15) == 0;
}

static apb_status bnr_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                            int dim[APB_MAX_DIM])
{
    const apb_var *x = in[0];
    char sx[64], sg[64];
    if (nin != 3 && nin != 4)
        return apb_fail(APB_EINVAL, "bn_relu: %d inputs (x, gamma, beta [, residual] expected)", nin);
    APB_TRY(apb_bn_check_inputs("bn_relu", in));
    if (nin == 4) {
        const apb_var *r = in[3];
        if (!apb_dims_equal(r, x))
            return apb_fail(APB_ESHAPE, "bn_relu: residual %s differs from input %s",
                            apb_dims_str(r->ndim, r->dim, sg, sizeof sg),
                            apb_dims_str(x->ndim, x->dim, sx, sizeof sx));
        /* dx and dr are written channel by channel in one pass: they must differ */
        if (r == x)
            return apb_fail(APB_EINVAL, "bn_relu: the residual is the input itself (use add)");
    }
    return apb_shape_same(in, nin, attr, ndim, dim);
}

/* Channels per block of the passes: a block's rows of one image are contiguous,
 * so short rows (small maps) are walked in runs of about 2 KB instead of one row
 * per page-strided jump (64-channel 8x8 maps: 8 channels, 40% faster passes). */
static int bnr_block(int C, int HW)
{
    int cb = 512 / (HW > 0 ? HW : 1);
    return cb < 1 ? 1 : cb > 8 ? 8 : cb > C ? C : cb;
}

/* y = relu(x * scale + shift (+ r)) over one row; nts: streaming stores. */
static inline void bnr_fwd_row(const float *row, const float *rr, float *yr, int HW, float scale,
                               float shift, int nts)
{
    if (nts) { /* the same operations, four floats at a time */
        __m128 vs = _mm_set1_ps(scale), vh = _mm_set1_ps(shift), v0 = _mm_setzero_ps();
        if (rr) {
            for (int p = 0; p < HW; p += 4) {
                __m128 z = _mm_add_ps(_mm_mul_ps(_mm_load_ps(row + p), vs), vh);
                __m128 a = _mm_add_ps(z, _mm_load_ps(rr + p));
                _mm_stream_ps(yr + p, _mm_max_ps(a, v0)); /* NaN, -0 -> +0 */
            }
        } else {
            for (int p = 0; p < HW; p += 4) {
                __m128 z = _mm_add_ps(_mm_mul_ps(_mm_load_ps(row + p), vs), vh);
                _mm_stream_ps(yr + p, _mm_max_ps(z, v0));
            }
        }
    } else if (rr) {
#pragma omp simd
        for (int p = 0; p < HW; p++) {
            float z = row[p] * scale + shift;
            float a = z + rr[p];
            yr[p] = a > 0.0f ? a : 0.0f;
        }
    } else {
#pragma omp simd
        for (int p = 0; p < HW; p++) {
            float z = row[p] * scale + shift;
            yr[p] = z > 0.0f ? z : 0.0f;
        }
    }
}

static apb_status bnr_forward(apb_graph *g, apb_var *out)
{
    const bnr_attr *a = out->attr;
    const apb_var *x = out->in[0], *gamma = out->in[1], *beta = out->in[2];
    int N, C, HW;
    apb_bn_dims(x, &N, &C, &HW);
    int64_t m = (int64_t)N * HW;
    APB_TRY(apb_bn_check_mode("bn_relu", g->training, a->has_state, x, m));
    if (g->training && g->share && g->share->nproc > 1)
        return apb_fail(APB_EUNSUPPORTED, "bn_relu: statistics shared between %d processes are "
                        "computed by batchnorm alone: run the graph unfused (apb_model.unfused)",
                        g->share->nproc);
    bnr_saved *sv = apb_graph_alloc(g, sizeof *sv);
    if (!sv)
        return APB_ENOMEM;
    sv->training = g->training;
    sv->mean = apb_graph_floats(g, C);
    sv->invstd = apb_graph_floats(g, C);
    sv->scale = apb_graph_floats(g, C);
    sv->shift = apb_graph_floats(g, C);
    if (!sv->mean || !sv->invstd || !sv->scale || !sv->shift)
        return APB_ENOMEM;
    out->saved = sv;

    const float *xd = x->data, *rd = out->nin == 4 ? out->in[3]->data : NULL;
    float *yd = out->data;
    int training = g->training, nt = (int64_t)C * m >= BNR_PAR_MIN ? apb_threads_get() : 1;
    (void)nt; /* unused without OpenMP */
    int nts = bnr_stream_ok(yd, HW) && (!rd || bnr_stream_ok(rd, HW)) && bnr_stream_ok(xd, HW);
    const apb_bn_state *st = a->has_state ? &a->st : NULL;
    int CB = bnr_block(C, HW), nblk = (C + CB - 1) / CB;
    size_t img = (size_t)C * HW; /* floats from one image to the next */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int bk = 0; bk < nblk; bk++) {
        int c0 = bk * CB, cb = C - c0 < CB ? C - c0 : CB;
        size_t run = (size_t)cb * HW; /* the block's floats in one image */
        double s1[8] = {0}, s2[8] = {0};
        for (int n = 0; training && n < N; n++) { /* statistics: per channel, rows in n order */
            const float *rows = xd + (size_t)n * img + (size_t)c0 * HW;
            if (n + 1 < N)
                apb_bn_prefetch_row(rows + img, (int)run);
            for (int i = 0; i < cb; i++)
                apb_bn_row_sums(rows + (size_t)i * HW, HW, xd[(size_t)(c0 + i) * HW], &s1[i],
                                &s2[i]);
        }
        for (int i = 0; i < cb; i++) {
            int c = c0 + i;
            double mean, var;
            if (training)
                apb_bn_finish_stats(s1[i], s2[i], m, xd[(size_t)c * HW], c, st, &mean, &var);
            else
                apb_bn_channel_stats(xd, N, C, HW, c, 0, st, &mean, &var);
            float invstd = (float)(1.0 / sqrt(var + (double)a->st.eps));
            float scale = gamma->data[c] * invstd, shift = beta->data[c] - (float)mean * scale;
            sv->mean[c] = (float)mean;
            sv->invstd[c] = invstd;
            sv->scale[c] = scale;
            sv->shift[c] = shift;
        }
        for (int n = 0; n < N; n++) {
            size_t off = (size_t)n * img + (size_t)c0 * HW;
            if (n + 1 < N) {
                apb_bn_prefetch_row(xd + off + img, (int)run);
                if (!nts)
                    bnr_prefetchw_row(yd + off + img, (int)run);
                if (rd)
                    apb_bn_prefetch_row(rd + off + img, (int)run);
            }
            for (int i = 0; i < cb; i++) {
                size_t o = off + (size_t)i * HW;
                bnr_fwd_row(xd + o, rd ? rd + o : NULL, yd + o, HW, sv->scale[c0 + i],
                            sv->shift[c0 + i], nts);
            }
        }
    }
    if (nts)
        _mm_sfence();
    return APB_OK;
}

/* dz = dy where z > 0 (the relu's gradient; dr = dz too with a residual), then
 * the batchnorm backward on dz:
 * dgamma = sum dz * xhat, dbeta = sum dz, and dx = k * dz (eval) or
 * k * (dz - mean(dz) - xhat * mean(dz * xhat)) (training), k = gamma * invstd. */
/* Backward pass 1 over one row: the relu's dz (from z = x*scale + shift, or from
 * y with a residual; written to drr when rmode == 1, added when 2), and
 * sdy += sum dz, sdyx += sum dz * (x - mean). */
static inline void bnr_bwd_sums(const float *row, const float *dr, const float *yr, float *drr,
                                int HW, int r, int rmode, float scale, float shift, float mean,
                                double *sdy, double *sdyx)
{
    float a1 = 0.0f, a2 = 0.0f;
    if (!r) {
#pragma omp simd reduction(+ : a1, a2)
        for (int p = 0; p < HW; p++) {
            float z = row[p] * scale + shift, d = dr[p]; /* unconditional load: selects vectorize */
            float dz = z > 0.0f ? d : 0.0f;
            a1 += dz;
            a2 += dz * (row[p] - mean);
        }
    } else if (rmode == 0) {
#pragma omp simd reduction(+ : a1, a2)
        for (int p = 0; p < HW; p++) {
            float d = dr[p], dz = yr[p] > 0.0f ? d : 0.0f;
            a1 += dz;
            a2 += dz * (row[p] - mean);
        }
    } else if (rmode == 1) {
#pragma omp simd reduction(+ : a1, a2)
        for (int p = 0; p < HW; p++) {
            float d = dr[p], dz = yr[p] > 0.0f ? d : 0.0f;
            drr[p] = dz;
            a1 += dz;
            a2 += dz * (row[p] - mean);
        }
    } else {
#pragma omp simd reduction(+ : a1, a2)
        for (int p = 0; p < HW; p++) {
            float d = dr[p], dz = yr[p] > 0.0f ? d : 0.0f;
            drr[p] += dz;
            a1 += dz;
            a2 += dz * (row[p] - mean);
        }
    }
    *sdy += a1;
    *sdyx += a2;
}

/* Backward pass 2 over one row: dx = k * (dz - mdy - (x - mean) * mdyx), written
 * (fresh; nts: streaming stores) or added; dz as in pass 1, or read back from drr
 * (rmode == 1). */
static inline void bnr_bwd_dx(const float *row, const float *dr, const float *yr,
                              const float *drr, float *dx, int HW, int r, int rmode, int fresh,
                              int nts, float k, float mdy, float mdyx, float mean, float scale,
                              float shift)
{
    if (nts) { /* the same operations as below, four floats at a time */
        __m128 vk = _mm_set1_ps(k), vm = _mm_set1_ps(mdy), vx = _mm_set1_ps(mdyx);
        __m128 vmean = _mm_set1_ps(mean), v0 = _mm_setzero_ps();
        __m128 vs = _mm_set1_ps(scale), vh = _mm_set1_ps(shift);
        const float *dzr = rmode == 1 ? drr : NULL;
        for (int p = 0; p < HW; p += 4) {
            __m128 dz;
            if (dzr) {
                dz = _mm_load_ps(dzr + p);
            } else { /* dz = (z or y) > 0 ? dy : 0 */
                __m128 z = r ? _mm_load_ps(yr + p)
                             : _mm_add_ps(_mm_mul_ps(_mm_load_ps(row + p), vs), vh);
                dz = _mm_and_ps(_mm_cmpgt_ps(z, v0), _mm_load_ps(dr + p));
            }
            __m128 t = _mm_mul_ps(_mm_sub_ps(_mm_load_ps(row + p), vmean), vx);
            _mm_stream_ps(dx + p, _mm_mul_ps(vk, _mm_sub_ps(_mm_sub_ps(dz, vm), t)));
        }
    } else if (rmode == 1) { /* dr holds dz already: two streams instead of three */
        const float *dz = drr;
        if (fresh) {
#pragma omp simd
            for (int p = 0; p < HW; p++)
                dx[p] = k * (dz[p] - mdy - (row[p] - mean) * mdyx);
        } else {
#pragma omp simd
            for (int p = 0; p < HW; p++)
                dx[p] += k * (dz[p] - mdy - (row[p] - mean) * mdyx);
        }
    } else if (r) {
        if (fresh) {
#pragma omp simd
            for (int p = 0; p < HW; p++) {
                float d = dr[p], dz = yr[p] > 0.0f ? d : 0.0f;
                dx[p] = k * (dz - mdy - (row[p] - mean) * mdyx);
            }
        } else {
#pragma omp simd
            for (int p = 0; p < HW; p++) {
                float d = dr[p], dz = yr[p] > 0.0f ? d : 0.0f;
                dx[p] += k * (dz - mdy - (row[p] - mean) * mdyx);
            }
        }
    } else if (fresh) {
#pragma omp simd
        for (int p = 0; p < HW; p++) {
            float z = row[p] * scale + shift, d = dr[p];
            float dz = z > 0.0f ? d : 0.0f;
            dx[p] = k * (dz - mdy - (row[p] - mean) * mdyx);
        }
    } else {
#pragma omp simd
        for (int p = 0; p < HW; p++) {
            float z = row[p] * scale + shift, d = dr[p];
            float dz = z > 0.0f ? d : 0.0f;
            dx[p] += k * (dz - mdy - (row[p] - mean) * mdyx);
        }
    }
}

static void bnr_backward(apb_graph *g, apb_var *out)
{
    const bnr_saved *sv = out->saved;
    apb_var *x = out->in[0], *gamma = out->in[1], *beta = out->in[2];
    int N, C, HW;
    apb_bn_dims(x, &N, &C, &HW);
    int64_t m = (int64_t)N * HW;
    const float *xd = x->data, *dy = out->grad;
    int nt = (int64_t)C * m >= BNR_PAR_MIN ? apb_threads_get() : 1;
    (void)nt;
    int fresh = x->requires_grad && apb_grad_take_fresh(x);
    int gfresh = gamma->requires_grad && apb_grad_take_fresh(gamma);
    int bfresh = beta->requires_grad && apb_grad_take_fresh(beta);
    apb_var *r = out->nin == 4 ? out->in[3] : NULL;
    /* residual gradient: 0 none, 1 write (fresh), 2 accumulate */
    int rmode = r && r->requires_grad ? (apb_grad_take_fresh(r) ? 1 : 2) : 0;
    const float *yd = out->data;
    float *rg = rmode ? r->grad : NULL;
    /* streaming stores for a fresh dx (see bnr_stream_ok) */
    int nts = fresh && bnr_stream_ok(x->grad, HW) && bnr_stream_ok(xd, HW) &&
              bnr_stream_ok(dy, HW) && bnr_stream_ok(yd, HW) &&
              (rmode != 1 || bnr_stream_ok(r->grad, HW));
    int CB = bnr_block(C, HW), nblk = (C + CB - 1) / CB;
    size_t img = (size_t)C * HW;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int bk = 0; bk < nblk; bk++) {
        int c0 = bk * CB, cb = C - c0 < CB ? C - c0 : CB;
        size_t run = (size_t)cb * HW;
        double sdy[8] = {0}, sdyx[8] = {0};
        for (int n = 0; n < N; n++) { /* per channel, rows in n order */
            size_t off = (size_t)n * img + (size_t)c0 * HW;
            if (n + 1 < N) {
                apb_bn_prefetch_row(xd + off + img, (int)run);
                apb_bn_prefetch_row(dy + off + img, (int)run);
                if (r)
                    apb_bn_prefetch_row(yd + off + img, (int)run);
            }
            for (int i = 0; i < cb; i++) {
                int c = c0 + i;
                size_t o = off + (size_t)i * HW;
                bnr_bwd_sums(xd + o, dy + o, yd + o, rg ? rg + o : NULL, HW, r != NULL, rmode,
                             sv->scale[c], sv->shift[c], sv->mean[c], &sdy[i], &sdyx[i]);
            }
        }
        float k[8], mdy[8], mdyx[8];
        for (int i = 0; i < cb; i++) {
            apb_bn_dx_coef q = apb_bn_channel_grads(gamma, beta, c0 + i, gfresh, bfresh,
                                                    sv->training, sv->invstd[c0 + i], sdy[i],
                                                    sdyx[i], m);
            k[i] = q.k;
            mdy[i] = q.mdy;
            mdyx[i] = q.mdyx;
        }
        if (!x->requires_grad)
            continue;
        for (int n = 0; n < N; n++) {
            size_t off = (size_t)n * img + (size_t)c0 * HW;
            if (n + 1 < N) {
                apb_bn_prefetch_row(xd + off + img, (int)run);
                if (!nts)
                    bnr_prefetchw_row(x->grad + off + img, (int)run);
                if (rmode == 1) {
                    apb_bn_prefetch_row(rg + off + img, (int)run);
                } else {
                    apb_bn_prefetch_row(dy + off + img, (int)run);
                    if (r)
                        apb_bn_prefetch_row(yd + off + img, (int)run);
                }
            }
            for (int i = 0; i < cb; i++) {
                int c = c0 + i;
                size_t o = off + (size_t)i * HW;
                bnr_bwd_dx(xd + o, dy + o, yd + o, rg ? rg + o : NULL, x->grad + o, HW, r != NULL,
                           rmode, fresh, nts, k[i], mdy[i], mdyx[i], sv->mean[c], sv->scale[c],
                           sv->shift[c]);
            }
        }
    }
    if (nts)
        _mm_sfence();
}

const apb_op apb_op_bn_relu = {"bn_relu", sizeof(bnr_attr), APB_OP_GRAD_WRITE, bnr_shape,
                               bnr_forward, bnr_backward};

apb_status apb_bn_relu(apb_graph *g, apb_var *x, apb_var *gamma, apb_var *beta,
                       apb_bn_state *st, apb_var **y)
{
    bnr_attr a = {{0}, 0};
    if (st) {
        a.st = *st;
        a.has_state = 1;
    } else {
        a.st.momentum = 0.1f;
        a.st.eps = 1e-5f;
    }
    apb_var *in[3] = {x, gamma, beta};
    return apb_apply(g, &apb_op_bn_relu, in, 3, &a, y);
}

apb_status apb_bn_add_relu(apb_graph *g, apb_var *x, apb_var *gamma, apb_var *beta, apb_var *r,
                           apb_bn_state *st, apb_var **y)
{
    bnr_attr a = {{0}, 0};
    if (st) {
        a.st = *st;
        a.has_state = 1;
    } else {
        a.st.momentum = 0.1f;
        a.st.eps = 1e-5f;
    }
    apb_var *in[4] = {x, gamma, beta, r};
    return apb_apply(g, &apb_op_bn_relu, in, 4, &a, y);
}

/* Gradcheck cases: the finite differences step inputs by 1e-2, so every value
 * entering the relu must stay clear of its kink. Per channel, beta is set to
 * minus the middle of the widest gap between neighbouring values of
 * gamma * xhat (+ r), away from the extremes so that both sides of the kink
 * are exercised; the case fails loudly if that gap is too narrow. */
static apb_status bnr_case(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                           apb_var **out, int ndim, const int *dim, int residual)
{
    int N = dim[0], C = dim[1], HW = ndim == 4 ? dim[2] * dim[3] : 1, m = N * HW;
    inputs[0] = apb_case_normal(g, rng, ndim, dim, 1.5f, 1);
    inputs[1] = apb_case_normal(g, rng, 1, &C, 0.3f, 1);
    inputs[2] = apb_graph_new(g, 1, &C, 0);
    inputs[3] = residual ? apb_case_normal(g, rng, ndim, dim, 0.5f, 1) : NULL;
    float *z = apb_graph_floats(g, m); /* [m] one channel's values */
    *ninputs = residual ? 4 : 3;
    apb_bn_state st = {apb_graph_zeros(g, C), apb_graph_floats(g, C), 0.1f, 1e-5f};
    if (!inputs[0] || !inputs[1] || !inputs[2] || (residual && !inputs[3]) || !z ||
        !st.running_mean || !st.running_var)
        return APB_ENOMEM;
    inputs[2]->requires_grad = 1;
    const float *x = inputs[0]->data, *rd = residual ? inputs[3]->data : NULL;
    for (int c = 0; c < C; c++) {
        float *gm = &inputs[1]->data[c];
        *gm += *gm < 0 ? -1.0f : 1.0f; /* |gamma| >= 1: wide gaps */
        st.running_var[c] = 1.0f;
        double s1 = 0, s2 = 0;
        for (int n = 0; n < N; n++)
            for (int p = 0; p < HW; p++)
                s1 += x[((size_t)n * C + c) * HW + p];
        double mean = s1 / m;
        for (int n = 0; n < N; n++)
            for (int p = 0; p < HW; p++) {
                double d = x[((size_t)n * C + c) * HW + p] - mean;
                s2 += d * d;
            }
        double invstd = 1.0 / sqrt(s2 / m + 1e-5);
        int k = 0;
        for (int n = 0; n < N; n++)
            for (int p = 0; p < HW; p++) {
                size_t i = ((size_t)n * C + c) * HW + p;
                z[k++] = (float)((x[i] - mean) * invstd * *gm + (rd ? rd[i] : 0.0f));
            }
        for (int i = 1; i < m; i++) /* insertion sort: a few dozen values */
            for (int j = i; j > 0 && z[j - 1] > z[j]; j--) {
                float t = z[j];
                z[j] = z[j - 1];
                z[j - 1] = t;
            }
        int lo = m / 4 > 0 ? m / 4 : 1, best = lo;
        for (int i = lo; i < m - lo; i++)
            if (z[i] - z[i - 1] > z[best] - z[best - 1])
                best = i;
        if (z[best] - z[best - 1] < 0.2f)
            return apb_fail(APB_EINVAL, "bn_relu case: channel %d has no gap of 0.2 around the kink (widest %g)",
                            c, (double)(z[best] - z[best - 1]));
        inputs[2]->data[c] = -0.5f * (z[best] + z[best - 1]);
    }
    if (residual)
        return apb_bn_add_relu(g, inputs[0], inputs[1], inputs[2], inputs[3], &st, out);
    return apb_bn_relu(g, inputs[0], inputs[1], inputs[2], &st, out);
}

apb_status apb_case_bn_relu_2d(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                               apb_var **out)
{
    return bnr_case(g, rng, inputs, ninputs, out, 4, (int[]){3, 4, 3, 2}, 0);
}

apb_status apb_case_bn_relu_1d(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                               apb_var **out)
{
    return bnr_case(g, rng, inputs, ninputs, out, 2, (int[]){6, 5}, 0);
}

apb_status apb_case_bn_add_relu_2d(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                   apb_var **out)
{
    return bnr_case(g, rng, inputs, ninputs, out, 4, (int[]){3, 4, 3, 2}, 1);
}
