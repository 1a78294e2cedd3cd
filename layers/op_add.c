/* op_add.c - elementwise y = a + b of equal shapes (residual connections). */
#include <string.h>

#include "ops.h"
#include "registry.h"
#include "elementwise.h"

static apb_status add_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                            int dim[APB_MAX_DIM])
{
    const apb_var *a = in[0], *b = in[1];
    char sa[64], sb[64];
    if (nin != 2 || !apb_dims_equal(a, b))
        return apb_fail(APB_ESHAPE, "add: shapes %s and %s differ",
                        apb_dims_str(a->ndim, a->dim, sa, sizeof sa),
                        apb_dims_str(b->ndim, b->dim, sb, sizeof sb));
    return apb_shape_same(in, nin, attr, ndim, dim);
}

static apb_status add_forward(apb_graph *g, apb_var *out)
{
    int64_t n = out->numel;
    int nt = apb_ew_threads(n);
    (void)nt; /* unused without OpenMP */
    const float *a = out->in[0]->data, *b = out->in[1]->data;
    float *y = out->data;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += APB_EW_BLOCK) {
        int64_t e = n - i0 < APB_EW_BLOCK ? n : i0 + APB_EW_BLOCK;
#pragma omp simd
        for (int64_t i = i0; i < e; i++)
            y[i] = a[i] + b[i];
    }
    return APB_OK;
}

static void add_backward(apb_graph *g, apb_var *out)
{
    int64_t n = out->numel;
    int nt = apb_ew_threads(n);
    (void)nt; /* unused without OpenMP */
    const float *dy = out->grad;
    int handed = 0;
    for (int k = 0; k < 2; k++) { /* a + a: both passes land in the same buffer */
        apb_var *v = out->in[k];
        if (!v->requires_grad)
            continue;
        int fresh = apb_grad_take_fresh(v);
        if (fresh && !handed) {
            /* First contribution is dy itself: hand the buffer over instead of
             * copying it (out's gradient is dead once its op has run backward;
             * a + a then accumulates its second pass into that buffer). Only
             * once: two different inputs must not share one gradient buffer. */
            v->grad = out->grad;
            handed = 1;
            continue;
        }
        float *dv = v->grad;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t i0 = 0; i0 < n; i0 += APB_EW_BLOCK) {
            int64_t e = n - i0 < APB_EW_BLOCK ? n : i0 + APB_EW_BLOCK;
            if (fresh)
                memcpy(dv + i0, dy + i0, sizeof(float) * (size_t)(e - i0));
            else
#pragma omp simd
                for (int64_t i = i0; i < e; i++)
                    dv[i] += dy[i];
        }
    }
}

const apb_op apb_op_add = {"add", 0, APB_OP_GRAD_WRITE, add_shape, add_forward,
                            add_backward};

apb_status apb_add(apb_graph *g, apb_var *a, apb_var *b, apb_var **y)
{
    apb_var *in[2] = {a, b};
    return apb_apply(g, &apb_op_add, in, 2, NULL, y);
}

apb_status apb_case_add(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                        apb_var **out)
{
    int dim[4] = {2, 3, 3, 5};
    inputs[0] = apb_case_normal(g, rng, 4, dim, 1.0f, 1);
    inputs[1] = apb_case_normal(g, rng, 4, dim, 1.0f, 1);
    *ninputs = 2;
    return inputs[0] && inputs[1] ? apb_add(g, inputs[0], inputs[1], out) : APB_ENOMEM;
}

apb_status apb_case_add_same_input(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                   apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){4, 6}, 1.0f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_add(g, inputs[0], inputs[0], out) : APB_ENOMEM;
}
