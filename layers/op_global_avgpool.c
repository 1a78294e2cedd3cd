/* op_global_avgpool.c - y[N,C] = mean over H,W of x[N,C,H,W] (the head of resnets). */
#include "ops.h"
#include "registry.h"

static apb_status gap_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                            int dim[APB_MAX_DIM])
{
    const apb_var *x = in[0];
    char sx[64];
    if (x->ndim != 4)
        return apb_fail(APB_ESHAPE, "global_avgpool: input %s is not [N,C,H,W]",
                        apb_dims_str(x->ndim, x->dim, sx, sizeof sx));
    *ndim = 2;
    dim[0] = x->dim[0];
    dim[1] = x->dim[1];
    return APB_OK;
}

static apb_status gap_forward(apb_graph *g, apb_var *out)
{
    const apb_var *x = out->in[0];
    int HW = x->dim[2] * x->dim[3];
    float inv = 1.0f / (float)HW;
    for (int64_t r = 0; r < out->numel; r++) {
        const float *row = x->data + r * HW;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int p = 0; p < HW; p++)
            s += row[p];
        out->data[r] = s * inv;
    }
    return APB_OK;
}

static void gap_backward(apb_graph *g, apb_var *out)
{
    apb_var *x = out->in[0];
    int HW = x->dim[2] * x->dim[3];
    float inv = 1.0f / (float)HW;
    for (int64_t r = 0; r < out->numel; r++) {
        float d = out->grad[r] * inv, *row = x->grad + r * HW;
#pragma omp simd
        for (int p = 0; p < HW; p++)
            row[p] += d;
    }
}

const apb_op apb_op_global_avgpool = {"global_avgpool", 0, 0, gap_shape, gap_forward,
                                      gap_backward};

apb_status apb_global_avgpool(apb_graph *g, apb_var *x, apb_var **y)
{
    return apb_apply(g, &apb_op_global_avgpool, &x, 1, NULL, y);
}

apb_status apb_case_global_avgpool(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                   apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 4, (int[]){2, 3, 4, 5}, 1.0f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_global_avgpool(g, inputs[0], out) : APB_ENOMEM;
}
