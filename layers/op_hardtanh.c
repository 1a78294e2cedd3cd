/* op_hardtanh.c - clamp to [-1, 1]; gradient 1 strictly inside, 0 outside.
 * (Its usual role here: the clipped input of a binary activation.) */
#include "ops.h"
#include "registry.h"
#include "elementwise.h"

static apb_status ht_forward(apb_graph *g, apb_var *out)
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
            y[i] = x[i] < -1.0f ? -1.0f : (x[i] > 1.0f ? 1.0f : x[i]);
    }
    return APB_OK;
}

static void ht_backward(apb_graph *g, apb_var *out)
{
    int64_t n = out->numel;
    int nt = apb_ew_threads(n);
    (void)nt; /* unused without OpenMP */
    const float *x = out->in[0]->data, *dy = out->grad;
    float *dx = out->in[0]->grad;
    int fresh = apb_grad_take_fresh(out->in[0]);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += APB_EW_BLOCK) {
        int64_t e = n - i0 < APB_EW_BLOCK ? n : i0 + APB_EW_BLOCK;
        if (fresh) {
#pragma omp simd
            for (int64_t i = i0; i < e; i++) {
                float d = dy[i], v = x[i]; /* unconditional loads: the select vectorizes */
                dx[i] = (v > -1.0f) & (v < 1.0f) ? d : 0.0f;
            }
        } else {
#pragma omp simd
            for (int64_t i = i0; i < e; i++) {
                float d = dy[i], v = x[i];
                dx[i] += (v > -1.0f) & (v < 1.0f) ? d : 0.0f;
            }
        }
    }
}

const apb_op apb_op_hardtanh = {"hardtanh", 0, APB_OP_GRAD_WRITE, apb_shape_same, ht_forward,
                                 ht_backward};

apb_status apb_hardtanh(apb_graph *g, apb_var *x, apb_var **y)
{
    return apb_apply(g, &apb_op_hardtanh, &x, 1, NULL, y);
}

apb_status apb_case_hardtanh(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                             apb_var **out)
{
    /* 60 values in (-1.5, 1.5): both clamped sides and the inside are covered */
    inputs[0] = apb_case_distinct(g, rng, 2, (int[]){6, 10}, 0.05f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_hardtanh(g, inputs[0], out) : APB_ENOMEM;
}
