/* op_batchnorm.c - batch normalisation (2-d [N,C,H,W] and 1-d [N,C] inputs).
 *
 * Training normalises with the batch mean and biased variance and updates the
 * model's running statistics with the unbiased variance (PyTorch semantics);
 * eval normalises with the running statistics. The statistics are one pass per
 * channel with sums of (x - x0) for a per-channel shift x0, which avoids the
 * cancellation of the naive sum/sum-of-squares formula. Forward saves only
 * mean[C] and invstd[C]; backward recomputes xhat on the fly.
 *
 * Shared statistics (g->share, apb train --sync-bn under mpirun): the batch is
 * every process's batch together. Forward: each process reduces its own
 * channel sums as above into a count, mean and sum of squared deviations M2,
 * and the processes' triples are combined in process order with the pairwise
 * update of Chan, Golub and LeVeque (no cancellation, no common shift needed).
 * Backward: the sums of dy and dy * (x - mean) that the dx formula averages are
 * summed over processes in process order; the gamma and beta gradients keep
 * this process's own sums, because the trainer sums parameter gradients over
 * processes afterwards. Both reductions happen between two parallel passes.
 */
#include <math.h>

#include "bn_stats.h"
#include "ops.h"
#include "registry.h"
#include "threads.h"

typedef apb_bn_attr bn_attr;

typedef struct {
    int training; /* mode at forward time: decides the backward formula */
    float *mean;  /* [C] */
    float *invstd; /* [C] */
    int64_t mall; /* shared statistics: values per channel over every process; else 0 */
    double *mine, *all; /* shared: the forward's gather buffers, reused by backward */
} bn_saved;

/* OpenMP over channels only when there is enough work to amortise the team. */
#define BN_PAR_MIN (1 << 16)

static apb_status bn_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                           int dim[APB_MAX_DIM])
{
    if (nin != 3)
        return apb_fail(APB_EINVAL, "batchnorm: %d inputs (x, gamma, beta expected)", nin);
    APB_TRY(apb_bn_check_inputs("batchnorm", in));
    return apb_shape_same(in, nin, attr, ndim, dim);
}

/* y = x * scale + shift over channel c, scale and shift from the saved statistics. */
static void bn_normalize(const float *xd, float *yd, int N, int C, int HW, int c, float gamma,
                         float beta, float mean, float invstd)
{
    float scale = gamma * invstd, shift = beta - mean * scale;
    for (int n = 0; n < N; n++) {
        const float *row = xd + ((size_t)n * C + c) * HW;
        float *yr = yd + ((size_t)n * C + c) * HW;
#pragma omp simd
        for (int p = 0; p < HW; p++)
            yr[p] = row[p] * scale + shift;
    }
}

/* Training forward over the batches of all processes (g->share). Sent per
 * process: [m, mean[C], M2[C]]. */
static apb_status bn_forward_shared(apb_graph *g, apb_var *out, bn_saved *sv, int nt)
{
    const bn_attr *a = out->attr;
    const apb_var *x = out->in[0], *gamma = out->in[1], *beta = out->in[2];
    int N, C, HW;
    apb_bn_dims(x, &N, &C, &HW);
    int64_t m = (int64_t)N * HW;
    int P = g->share->nproc, len = 1 + 2 * C;
    double *mine = apb_graph_alloc(g, sizeof(double) * (size_t)len);
    double *all = apb_graph_alloc(g, sizeof(double) * (size_t)len * (size_t)P);
    if (!mine || !all)
        return APB_ENOMEM;
    const float *xd = x->data;
    float *yd = out->data;
    (void)nt;
    mine[0] = (double)m;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int c = 0; c < C; c++) {
        float x0 = xd[(size_t)c * HW];
        double s1 = 0, s2 = 0;
        for (int n = 0; n < N; n++)
            apb_bn_row_sums(xd + ((size_t)n * C + c) * HW, HW, x0, &s1, &s2);
        double d1 = s1 / (double)m, m2 = s2 - s1 * d1;
        mine[1 + c] = x0 + d1;
        mine[1 + C + c] = m2 > 0 ? m2 : 0;
    }
    g->share->gather(g->share->ctx, mine, len, all);
    double mall = 0;
    for (int c = 0; c < C; c++) {
        double cnt = all[0], mean = all[1 + c], m2 = all[1 + C + c];
        for (int p = 1; p < P; p++) {
            const double *o = all + (size_t)p * len;
            double nb = o[0], tot = cnt + nb, d = o[1 + c] - mean;
            mean += d * nb / tot;
            m2 += o[1 + C + c] + d * d * cnt * nb / tot;
            cnt = tot;
        }
        double var = m2 / cnt;
        if (a->has_state)
            apb_bn_update_running(&a->st, c, mean, var, (int64_t)cnt);
        sv->mean[c] = (float)mean;
        sv->invstd[c] = (float)(1.0 / sqrt(var + (double)a->st.eps));
        mall = cnt;
    }
    sv->mall = (int64_t)mall;
    sv->mine = mine; /* [1 + 2C] >= the 2C sums backward sends */
    sv->all = all;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int c = 0; c < C; c++)
        bn_normalize(xd, yd, N, C, HW, c, gamma->data[c], beta->data[c], sv->mean[c],
                     sv->invstd[c]);
    return APB_OK;
}

static apb_status bn_forward(apb_graph *g, apb_var *out)
{
    const bn_attr *a = out->attr;
    const apb_var *x = out->in[0], *gamma = out->in[1], *beta = out->in[2];
    int N, C, HW;
    apb_bn_dims(x, &N, &C, &HW);
    int64_t m = (int64_t)N * HW;
    APB_TRY(apb_bn_check_mode("batchnorm", g->training, a->has_state, x, m));
    bn_saved *sv = apb_graph_alloc(g, sizeof *sv);
    if (!sv)
        return APB_ENOMEM;
    sv->training = g->training;
    sv->mean = apb_graph_floats(g, C);
    sv->invstd = apb_graph_floats(g, C);
    if (!sv->mean || !sv->invstd)
        return APB_ENOMEM;
    out->saved = sv;

    const float *xd = x->data;
    float *yd = out->data;
    int training = g->training, nt = (int64_t)C * m >= BN_PAR_MIN ? apb_threads_get() : 1;
    (void)nt; /* unused without OpenMP */
    sv->mall = 0;
    if (training && g->share && g->share->nproc > 1)
        return bn_forward_shared(g, out, sv, nt);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int c = 0; c < C; c++) {
        double mean, var;
        apb_bn_channel_stats(xd, N, C, HW, c, training, a->has_state ? &a->st : NULL,
                             &mean, &var);
        float invstd = (float)(1.0 / sqrt(var + (double)a->st.eps));
        sv->mean[c] = (float)mean;
        sv->invstd[c] = invstd;
        float scale = gamma->data[c] * invstd, shift = beta->data[c] - (float)mean * scale;
        for (int n = 0; n < N; n++) {
            const float *row = xd + ((size_t)n * C + c) * HW;
            float *yr = yd + ((size_t)n * C + c) * HW;
#pragma omp simd
            for (int p = 0; p < HW; p++)
                yr[p] = row[p] * scale + shift;
        }
    }
    return APB_OK;
}

/* dx over channel c from the coefficients (fresh: written). */
static void bn_dx(const float *xd, const float *dy, float *gx, int N, int C, int HW, int c,
                  int fresh, apb_bn_dx_coef q, float mean)
{
    float k = q.k, mdy = q.mdy, mdyx = q.mdyx;
    for (int n = 0; n < N; n++) {
        const float *row = xd + ((size_t)n * C + c) * HW, *dr = dy + ((size_t)n * C + c) * HW;
        float *dx = gx + ((size_t)n * C + c) * HW;
        if (fresh) {
#pragma omp simd
            for (int p = 0; p < HW; p++)
                dx[p] = k * (dr[p] - mdy - (row[p] - mean) * mdyx);
        } else {
#pragma omp simd
            for (int p = 0; p < HW; p++)
                dx[p] += k * (dr[p] - mdy - (row[p] - mean) * mdyx);
        }
    }
}

/* sum dy and sum dy * (x - mean) over channel c of this process's batch. */
static void bn_grad_sums(const float *xd, const float *dy, int N, int C, int HW, int c, float mean,
                         double *sdy_out, double *sdyx_out)
{
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < N; n++) {
        const float *row = xd + ((size_t)n * C + c) * HW, *dr = dy + ((size_t)n * C + c) * HW;
        float a1 = 0.0f, a2 = 0.0f;
#pragma omp simd reduction(+ : a1, a2)
        for (int p = 0; p < HW; p++) {
            a1 += dr[p];
            a2 += dr[p] * (row[p] - mean);
        }
        sdy += a1;
        sdyx += a2;
    }
    *sdy_out = sdy;
    *sdyx_out = sdyx;
}

/* Training backward with statistics over every process (bn_forward_shared). */
static void bn_backward_shared(apb_graph *g, apb_var *out)
{
    const bn_saved *sv = out->saved;
    apb_var *x = out->in[0], *gamma = out->in[1], *beta = out->in[2];
    int N, C, HW;
    apb_bn_dims(x, &N, &C, &HW);
    int64_t m = (int64_t)N * HW;
    const float *xd = x->data, *dy = out->grad;
    int nt = (int64_t)C * m >= BN_PAR_MIN ? apb_threads_get() : 1;
    (void)nt;
    int P = g->share->nproc;
    double *mine = sv->mine, *all = sv->all;
    int fresh = x->requires_grad && apb_grad_take_fresh(x);
    int gfresh = gamma->requires_grad && apb_grad_take_fresh(gamma);
    int bfresh = beta->requires_grad && apb_grad_take_fresh(beta);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int c = 0; c < C; c++)
        bn_grad_sums(xd, dy, N, C, HW, c, sv->mean[c], &mine[c], &mine[C + c]);
    g->share->gather(g->share->ctx, mine, 2 * C, all);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int c = 0; c < C; c++) {
        double gdy = all[c], gdyx = all[C + c];
        for (int p = 1; p < P; p++) {
            gdy += all[(size_t)p * 2 * C + c];
            gdyx += all[(size_t)p * 2 * C + C + c];
        }
        float invstd = sv->invstd[c];
        /* this process's own sums into gamma and beta (summed over processes later) */
        apb_bn_channel_grads(gamma, beta, c, gfresh, bfresh, 1, invstd, mine[c], mine[C + c], m);
        /* the coefficients from the sums over every process */
        double gx = gdyx * invstd;
        apb_bn_dx_coef q = {gamma->data[c] * invstd, (float)(gdy / (double)sv->mall),
                            (float)(gx / (double)sv->mall) * invstd};
        if (x->requires_grad)
            bn_dx(xd, dy, x->grad, N, C, HW, c, fresh, q, sv->mean[c]);
    }
}

static void bn_backward(apb_graph *g, apb_var *out)
{
    const bn_saved *sv = out->saved;
    if (sv->mall > 0) {
        bn_backward_shared(g, out);
        return;
    }
    apb_var *x = out->in[0], *gamma = out->in[1], *beta = out->in[2];
    int N, C, HW;
    apb_bn_dims(x, &N, &C, &HW);
    int64_t m = (int64_t)N * HW;
    const float *xd = x->data, *dy = out->grad;
    int nt = (int64_t)C * m >= BN_PAR_MIN ? apb_threads_get() : 1;
    (void)nt;
    int fresh = x->requires_grad && apb_grad_take_fresh(x);
    int gfresh = gamma->requires_grad && apb_grad_take_fresh(gamma);
    int bfresh = beta->requires_grad && apb_grad_take_fresh(beta);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int c = 0; c < C; c++) {
        float mean = sv->mean[c], invstd = sv->invstd[c];
        double sdy, sdyx;
        bn_grad_sums(xd, dy, N, C, HW, c, mean, &sdy, &sdyx);
        apb_bn_dx_coef q = apb_bn_channel_grads(gamma, beta, c, gfresh, bfresh, sv->training,
                                                invstd, sdy, sdyx, m);
        if (x->requires_grad)
            bn_dx(xd, dy, x->grad, N, C, HW, c, fresh, q, mean);
    }
}

const apb_op apb_op_batchnorm = {"batchnorm", sizeof(bn_attr), APB_OP_GRAD_WRITE, bn_shape,
                                 bn_forward, bn_backward};

apb_status apb_batchnorm(apb_graph *g, apb_var *x, apb_var *gamma, apb_var *beta,
                         apb_bn_state *st, apb_var **y)
{
    bn_attr a = {{0}, 0};
    if (st) {
        a.st = *st;
        a.has_state = 1;
    } else {
        a.st.momentum = 0.1f;
        a.st.eps = 1e-5f;
    }
    apb_var *in[3] = {x, gamma, beta};
    return apb_apply(g, &apb_op_batchnorm, in, 3, &a, y);
}

static apb_status bn_case(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                          apb_var **out, int ndim, const int *dim)
{
    int C = dim[1];
    inputs[0] = apb_case_normal(g, rng, ndim, dim, 1.5f, 1);
    inputs[1] = apb_case_normal(g, rng, 1, &C, 0.5f, 1);
    inputs[2] = apb_case_normal(g, rng, 1, &C, 0.5f, 1);
    *ninputs = 3;
    apb_bn_state st = {apb_graph_zeros(g, C), apb_graph_floats(g, C), 0.1f, 1e-5f};
    if (!inputs[0] || !inputs[1] || !inputs[2] || !st.running_mean || !st.running_var)
        return APB_ENOMEM;
    for (int c = 0; c < C; c++) {
        inputs[1]->data[c] += 1.0f;
        st.running_var[c] = 1.0f;
    }
    return apb_batchnorm(g, inputs[0], inputs[1], inputs[2], &st, out);
}

apb_status apb_case_batchnorm_2d(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                 apb_var **out)
{
    return bn_case(g, rng, inputs, ninputs, out, 4, (int[]){3, 4, 3, 2});
}

apb_status apb_case_batchnorm_1d(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                 apb_var **out)
{
    return bn_case(g, rng, inputs, ninputs, out, 2, (int[]){6, 5});
}
