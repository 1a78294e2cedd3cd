/* op_relu.c - rectified linear unit y = max(x, 0); gradient 1 where y > 0. */
#include "ops.h"
#include "registry.h"
#include "elementwise.h"

static apb_status relu_forward(apb_graph *g, apb_var *out)
{
    int64_t n = out->numel;
    int nt = apb_ew_threads(n);
    (void)nt; /* unused without OpenMP */
    const float *x = out->in[0]->data;
    float *y = out->data;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += APB_EW_BLOCK) {
        int64_t e = n - i0 < APB_EW_BLOCK ? n : i0 + APB_EW_BLOCK;
#pragma omp simd
        for (int64_t i = i0; i < e; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    }
    return APB_OK;
}

static void relu_backward(apb_graph *g, apb_var *out)
{
    int64_t n = out->numel;
    int nt = apb_ew_threads(n);
    (void)nt; /* unused without OpenMP */
    const float *y = out->data, *dy = out->grad;
    float *dx = out->in[0]->grad;
    int fresh = apb_grad_take_fresh(out->in[0]);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += APB_EW_BLOCK) {
        int64_t e = n - i0 < APB_EW_BLOCK ? n : i0 + APB_EW_BLOCK;
        if (fresh) {
#pragma omp simd
            for (int64_t i = i0; i < e; i++) {
                float d = dy[i]; /* unconditional load: the select vectorizes */
                dx[i] = y[i] > 0.0f ? d : 0.0f;
            }
        } else {
#pragma omp simd
            for (int64_t i = i0; i < e; i++) {
                float d = dy[i];
                dx[i] += y[i] > 0.0f ? d : 0.0f;
            }
        }
    }
}

const apb_op apb_op_relu = {"relu", 0, APB_OP_GRAD_WRITE, apb_shape_same, relu_forward,
                             relu_backward};

apb_status apb_relu(apb_graph *g, apb_var *x, apb_var **y)
{
    return apb_apply(g, &apb_op_relu, &x, 1, NULL, y);
}

apb_status apb_case_relu(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                         apb_var **out)
{
    inputs[0] = apb_case_distinct(g, rng, 4, (int[]){2, 3, 4, 5}, 0.05f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_relu(g, inputs[0], out) : APB_ENOMEM;
}
