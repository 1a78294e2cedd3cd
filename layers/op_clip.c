/* op_clip.c - clamp to [lo, hi] (ReLU6 is [0, 6]); gradient 1 strictly inside,
 * 0 outside, as hardtanh (op_hardtanh.c, the [-1, 1] case, kept for its speed
 * and its role in front of binary activations). Imported networks use it. */
#include "ops.h"
#include "registry.h"
#include "elementwise.h"

typedef struct {
    float lo, hi;
} clip_attr;

static apb_status clip_forward(apb_graph *g, apb_var *out)
{
    const clip_attr *a = out->attr;
    int64_t n = out->numel;
    int nt = apb_ew_threads(n);
    (void)nt; /* unused without OpenMP */
    const float *x = out->in[0]->data;
    float *y = out->data;
    float lo = a->lo, hi = a->hi;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += APB_EW_BLOCK) {
        int64_t e = n - i0 < APB_EW_BLOCK ? n : i0 + APB_EW_BLOCK;
#pragma omp simd
        for (int64_t i = i0; i < e; i++)
            y[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
    }
    return APB_OK;
}

static void clip_backward(apb_graph *g, apb_var *out)
{
    const clip_attr *a = out->attr;
    int64_t n = out->numel;
    const float *x = out->in[0]->data, *dy = out->grad;
    float *dx = out->in[0]->grad;
    float lo = a->lo, hi = a->hi;
    for (int64_t i = 0; i < n; i++)
        dx[i] += (x[i] > lo) & (x[i] < hi) ? dy[i] : 0.0f;
}

const apb_op apb_op_clip = {"clip", sizeof(clip_attr), 0, apb_shape_same, clip_forward, clip_backward};

apb_status apb_clip(apb_graph *g, apb_var *x, float lo, float hi, apb_var **y)
{
    clip_attr a = {lo, hi};
    return apb_apply(g, &apb_op_clip, &x, 1, &a, y);
}

apb_status apb_case_clip(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs, apb_var **out)
{
    /* 60 values in (-1.5, 1.5) clamped to [-0.5, 1]: both sides and the inside */
    inputs[0] = apb_case_distinct(g, rng, 2, (int[]){6, 10}, 0.05f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_clip(g, inputs[0], -0.5f, 1.0f, out) : APB_ENOMEM;
}
