/* quant_prune_binary.c - pruning combined with binarization, the baseline the
 * APB claim is made against (docs/METHOD.md "Pruning + binarization").
 *
 * q = mask * a * sgn(w): the weights the 0/1 mask keeps become +-a with
 * a = mean |w| over the kept weights (per layer or per output channel), the
 * others 0. The mask is caller-owned and recomputed by the trainer on the
 * pruning schedule (apb_prune_mask_update, magnitude), as for plain pruning.
 * Like plain binary, the scale is recomputed in every forward and treated as a
 * constant in backward; the weight gradient is the identity STE on the kept
 * weights and 0 on the pruned ones (dL/dw = g * mask), as plain pruning has it.
 */
#include <math.h>

#include "quant.h"

#define APB_QUANT_PAR_MIN 32768

typedef struct {
    const float *mask; /* [numel of w] */
    int per_channel;
} apb_quant_prune_binary_attr;

static apb_status quant_prune_binary_shape(apb_var *const *in, int nin, const void *attr,
                                           int *ndim, int dim[APB_MAX_DIM])
{
    if (nin != 1)
        return apb_fail(APB_EINVAL, "quant_prune_binary: expects 1 input (w), got %d", nin);
    const apb_quant_prune_binary_attr *a = attr;
    if (!a || !a->mask)
        return apb_fail(APB_EINVAL, "quant_prune_binary: no mask given for %s",
                        in[0]->name ? in[0]->name : "weight");
    if (a->per_channel && in[0]->ndim < 1)
        return apb_fail(APB_ESHAPE, "quant_prune_binary: per-channel needs a channel dim");
    return apb_shape_same(in, nin, NULL, ndim, dim);
}

void apb_prune_binary_scale(const float *w, const float *mask, int64_t n, int m, float *a)
{
    if (m < 1)
        m = 1;
    int64_t k = n / m;
    for (int c = 0; c < m; c++) {
        double s = 0;
        int64_t kept = 0;
        for (int64_t i = c * k; i < (c + 1) * k; i++)
            if (mask[i] != 0.0f) {
                s += fabs((double)w[i]);
                kept++;
            }
        a[c] = (float)(kept ? s / (double)kept : 0.0);
    }
}

static apb_status quant_prune_binary_forward(apb_graph *g, apb_var *out)
{
    const apb_quant_prune_binary_attr *at = out->attr;
    const apb_var *w = out->in[0];
    int m = at->per_channel ? w->dim[0] : 1;
    int64_t k = m ? w->numel / m : 0;
    float *a = apb_graph_floats(g, m > 0 ? m : 1);
    if (!a)
        return APB_ENOMEM;
    apb_prune_binary_scale(w->data, at->mask, w->numel, m, a);
    out->saved = a;
    const float *x = w->data, *mask = at->mask;
    float *y = out->data;
#pragma omp parallel for schedule(static) if (w->numel >= APB_QUANT_PAR_MIN)
    for (int c = 0; c < m; c++)
        for (int64_t i = c * k; i < (c + 1) * k; i++)
            y[i] = mask[i] != 0.0f ? (x[i] >= 0.0f ? a[c] : -a[c]) : 0.0f;
    return APB_OK;
}

static void quant_prune_binary_backward(apb_graph *g, apb_var *out)
{
    apb_var *w = out->in[0];
    if (!w->requires_grad)
        return;
    const float *mask = ((const apb_quant_prune_binary_attr *)out->attr)->mask;
    const float *gy = out->grad;
    float *dw = w->grad;
#pragma omp parallel for schedule(static) if (w->numel >= APB_QUANT_PAR_MIN)
    for (int64_t i = 0; i < w->numel; i++)
        dw[i] += gy[i] * mask[i];
}

const apb_op apb_op_quant_prune_binary = {
    .name = "quant_prune_binary",
    .attr_size = sizeof(apb_quant_prune_binary_attr),
    .flags = APB_OP_STE,
    .shape = quant_prune_binary_shape,
    .forward = quant_prune_binary_forward,
    .backward = quant_prune_binary_backward,
};

apb_status apb_quant_prune_binary(apb_graph *g, apb_var *w, const float *mask, int per_channel,
                                  apb_var **q)
{
    apb_quant_prune_binary_attr a = {mask, per_channel};
    return apb_apply(g, &apb_op_quant_prune_binary, (apb_var *[]){w}, 1, &a, q);
}
