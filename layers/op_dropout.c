/* op_dropout.c - inverted dropout.
 *
 * Training: each element is kept with probability 1-p, drawn from g->rng, and
 * scaled by 1/(1-p), so eval needs no rescaling; the scale mask is saved for
 * backward. Eval (or p == 0): the wrapper returns x itself and records nothing.
 */
#include "ops.h"
#include "registry.h"

typedef struct {
    float p;
} dropout_attr;

static apb_status dropout_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                int dim[APB_MAX_DIM])
{
    const dropout_attr *a = attr;
    if (!(a->p >= 0.0f && a->p < 1.0f))
        return apb_fail(APB_EINVAL, "dropout: p = %g outside [0, 1)", (double)a->p);
    return apb_shape_same(in, nin, NULL, ndim, dim);
}

static apb_status dropout_forward(apb_graph *g, apb_var *out)
{
    int64_t n = out->numel;
    const dropout_attr *a = out->attr;
    const float *x = out->in[0]->data;
    float *y = out->data;
    out->saved = NULL;
    if (!g->training || a->p == 0.0f) {
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i];
        return APB_OK;
    }
    if (!g->rng)
        return apb_fail(APB_EINVAL, "dropout: training graph has no random generator");
    float *mask = apb_graph_floats(g, out->numel); /* [numel] 0 or 1/(1-p) */
    if (!mask)
        return APB_ENOMEM;
    float keep = 1.0f / (1.0f - a->p);
    for (int64_t i = 0; i < n; i++) {
        mask[i] = apb_rng_uniform(g->rng) >= a->p ? keep : 0.0f;
        y[i] = x[i] * mask[i];
    }
    out->saved = mask;
    return APB_OK;
}

static void dropout_backward(apb_graph *g, apb_var *out)
{
    int64_t n = out->numel;
    const float *mask = out->saved, *dy = out->grad;
    float *dx = out->in[0]->grad;
    if (!mask) { /* forward ran in eval mode: identity */
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i];
        return;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dx[i] += dy[i] * mask[i];
}

const apb_op apb_op_dropout = {"dropout", sizeof(dropout_attr), APB_OP_RANDOM, dropout_shape,
                               dropout_forward, dropout_backward};

apb_status apb_dropout(apb_graph *g, apb_var *x, float p, apb_var **y)
{
    if (!(p >= 0.0f && p < 1.0f))
        return apb_fail(APB_EINVAL, "dropout: p = %g outside [0, 1)", (double)p);
    if (!g->training || p == 0.0f) {
        *y = x;
        return APB_OK;
    }
    dropout_attr a = {p};
    return apb_apply(g, &apb_op_dropout, &x, 1, &a, y);
}

apb_status apb_case_dropout(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                            apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){4, 10}, 1.0f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_dropout(g, inputs[0], 0.3f, out) : APB_ENOMEM;
}
