/* op_flatten.c - x[N, ...] -> y[N, prod(...)] (a copy; backward adds dy back). */
#include <string.h>

#include "ops.h"
#include "registry.h"

static apb_status flatten_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                int dim[APB_MAX_DIM])
{
    const apb_var *x = in[0];
    char sx[64];
    if (x->ndim < 1)
        return apb_fail(APB_ESHAPE, "flatten: input %s has no batch dimension",
                        apb_dims_str(x->ndim, x->dim, sx, sizeof sx));
    *ndim = 2;
    dim[0] = x->dim[0];
    dim[1] = (int)apb_dims_numel(x->ndim - 1, x->dim + 1);
    return APB_OK;
}

static apb_status flatten_forward(apb_graph *g, apb_var *out)
{
    memcpy(out->data, out->in[0]->data, sizeof(float) * (size_t)out->numel);
    return APB_OK;
}

static void flatten_backward(apb_graph *g, apb_var *out)
{
    int64_t n = out->numel;
    float *dx = out->in[0]->grad;
    const float *dy = out->grad;
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dx[i] += dy[i];
}

const apb_op apb_op_flatten = {"flatten", 0, 0, flatten_shape, flatten_forward,
                               flatten_backward};

apb_status apb_flatten(apb_graph *g, apb_var *x, apb_var **y)
{
    return apb_apply(g, &apb_op_flatten, &x, 1, NULL, y);
}

apb_status apb_case_flatten(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                            apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 4, (int[]){3, 2, 3, 4}, 1.0f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_flatten(g, inputs[0], out) : APB_ENOMEM;
}
