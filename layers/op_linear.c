/* op_linear.c - fully connected layer y[N,M] = x[N,F] * w[M,F]^T + b[M].
 *
 * Three sgemm calls (forward, dx, dw) on the whole batch; apb_sgemm parallelises.
 */
#include "ops.h"
#include "registry.h"
#include "sgemm.h"

static apb_status linear_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                               int dim[APB_MAX_DIM])
{
    const apb_var *x = in[0], *w = in[1], *b = nin > 2 ? in[2] : NULL;
    char sx[64], sw[64], sb[64];
    if (nin < 2 || nin > 3)
        return apb_fail(APB_EINVAL, "linear: %d inputs (x, w[, b] expected)", nin);
    if (x->ndim != 2 || w->ndim != 2 || x->dim[1] != w->dim[1])
        return apb_fail(APB_ESHAPE, "linear: input %s and weight %s do not fit (want [N,F] and [M,F])",
                        apb_dims_str(x->ndim, x->dim, sx, sizeof sx),
                        apb_dims_str(w->ndim, w->dim, sw, sizeof sw));
    if (b && (b->ndim != 1 || b->dim[0] != w->dim[0]))
        return apb_fail(APB_ESHAPE, "linear: bias %s does not match weight %s",
                        apb_dims_str(b->ndim, b->dim, sb, sizeof sb),
                        apb_dims_str(w->ndim, w->dim, sw, sizeof sw));
    *ndim = 2;
    dim[0] = x->dim[0];
    dim[1] = w->dim[0];
    return APB_OK;
}

static apb_status linear_forward(apb_graph *g, apb_var *out)
{
    const apb_var *x = out->in[0], *w = out->in[1], *b = out->nin > 2 ? out->in[2] : NULL;
    int N = x->dim[0], F = x->dim[1], M = w->dim[0];
    float *y = out->data;
    apb_sgemm(0, 1, N, M, F, 1.0f, x->data, F, w->data, F, 0.0f, y, M);
    if (b)
        for (int n = 0; n < N; n++)
            for (int m = 0; m < M; m++)
                y[(size_t)n * M + m] += b->data[m];
    return APB_OK;
}

static void linear_backward(apb_graph *g, apb_var *out)
{
    apb_var *x = out->in[0], *w = out->in[1], *b = out->nin > 2 ? out->in[2] : NULL;
    int N = x->dim[0], F = x->dim[1], M = w->dim[0];
    const float *dy = out->grad; /* [N,M] */
    if (x->requires_grad) /* dx[N,F] += dy[N,M] * w[M,F] */
        apb_sgemm(0, 0, N, F, M, 1.0f, dy, M, w->data, F, 1.0f, x->grad, F);
    if (w->requires_grad) /* dw[M,F] += dy^T[M,N] * x[N,F] */
        apb_sgemm(1, 0, M, F, N, 1.0f, dy, M, x->data, F, 1.0f, w->grad, F);
    if (b && b->requires_grad)
        for (int n = 0; n < N; n++)
            for (int m = 0; m < M; m++)
                b->grad[m] += dy[(size_t)n * M + m];
}

const apb_op apb_op_linear = {"linear", 0, 0, linear_shape, linear_forward, linear_backward};

apb_status apb_linear(apb_graph *g, apb_var *x, apb_var *w, apb_var *b, apb_var **y)
{
    apb_var *in[3] = {x, w, b};
    return apb_apply(g, &apb_op_linear, in, b ? 3 : 2, NULL, y);
}

static apb_status linear_case(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                              apb_var **out, int bias)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){3, 7}, 1.0f, 1);
    inputs[1] = apb_case_normal(g, rng, 2, (int[]){5, 7}, 0.5f, 1);
    inputs[2] = bias ? apb_case_normal(g, rng, 1, (int[]){5}, 0.5f, 1) : NULL;
    *ninputs = bias ? 3 : 2;
    for (int i = 0; i < *ninputs; i++)
        if (!inputs[i])
            return APB_ENOMEM;
    return apb_linear(g, inputs[0], inputs[1], inputs[2], out);
}

apb_status apb_case_linear(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                           apb_var **out)
{
    return linear_case(g, rng, inputs, ninputs, out, 1);
}

apb_status apb_case_linear_nobias(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                  apb_var **out)
{
    return linear_case(g, rng, inputs, ninputs, out, 0);
}
