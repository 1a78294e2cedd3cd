/* quant_mask.c - unstructured magnitude pruning (baseline of docs/apb-method.md 3).
 *
 * The op multiplies the weights by a caller-owned 0/1 mask; the mask itself is
 * recomputed by the trainer with apb_prune_mask_update() on its own schedule
 * (e.g. gradual sparsity), so it is an attribute, not a variable.
 * The mask update is a radix select over the bit patterns of |w| (for
 * non-negative floats the bit pattern orders like the value), so it needs no
 * allocation and no sort, and its tie-breaking (lower index first) is exact.
 */
#include <math.h>
#include <string.h>

#include "quant.h"

#define APB_QUANT_PAR_MIN 32768

typedef struct {
    const float *mask; /* [numel of w] */
} apb_quant_mask_attr;

static apb_status quant_mask_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                   int dim[APB_MAX_DIM])
{
    if (nin != 1)
        return apb_fail(APB_EINVAL, "quant_mask: expects 1 input (w), got %d", nin);
    const apb_quant_mask_attr *a = attr;
    if (!a || !a->mask)
        return apb_fail(APB_EINVAL, "quant_mask: no mask given for %s",
                        in[0]->name ? in[0]->name : "weight");
    return apb_shape_same(in, nin, NULL, ndim, dim);
}

static apb_status quant_mask_forward(apb_graph *g, apb_var *out)
{
    const float *mask = ((const apb_quant_mask_attr *)out->attr)->mask;
    const float *x = out->in[0]->data;
    float *y = out->data;
#pragma omp parallel for schedule(static) if (out->numel >= APB_QUANT_PAR_MIN)
    for (int64_t i = 0; i < out->numel; i++)
        y[i] = x[i] * mask[i];
    return APB_OK;
}

static void quant_mask_backward(apb_graph *g, apb_var *out)
{
    apb_var *w = out->in[0];
    if (!w->requires_grad)
        return;
    const float *mask = ((const apb_quant_mask_attr *)out->attr)->mask;
    const float *gy = out->grad;
    float *dw = w->grad;
#pragma omp parallel for schedule(static) if (w->numel >= APB_QUANT_PAR_MIN)
    for (int64_t i = 0; i < w->numel; i++)
        dw[i] += gy[i] * mask[i];
}

const apb_op apb_op_quant_mask = {
    .name = "quant_mask",
    .attr_size = sizeof(apb_quant_mask_attr),
    .flags = APB_OP_STE,
    .shape = quant_mask_shape,
    .forward = quant_mask_forward,
    .backward = quant_mask_backward,
};

apb_status apb_quant_mask(apb_graph *g, apb_var *w, const float *mask, apb_var **q)
{
    apb_quant_mask_attr a = {mask};
    return apb_apply(g, &apb_op_quant_mask, (apb_var *[]){w}, 1, &a, q);
}

static uint32_t abs_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u & 0x7fffffffu;
}

void apb_prune_mask_update(const float *w, int64_t n, float sparsity, float *mask)
{
    double s = sparsity > 0 ? (sparsity < 1 ? sparsity : 1) : 0;
    int64_t keep = (int64_t)llround((1.0 - s) * (double)n);
    if (keep <= 0 || keep >= n) {
        for (int64_t i = 0; i < n; i++)
            mask[i] = keep > 0 ? 1.0f : 0.0f;
        return;
    }
    /* Find the bit pattern T of the keep-th largest |w|, one byte at a time from
     * the top; `need` ends as the number of elements equal to T still to keep. */
    uint32_t prefix = 0, pmask = 0;
    int64_t need = keep;
    for (int shift = 24; shift >= 0; shift -= 8) {
        int64_t hist[256] = {0};
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = abs_bits(w[i]);
            if ((u & pmask) == prefix)
                hist[(u >> shift) & 255]++;
        }
        int b = 255;
        while (hist[b] < need) {
            need -= hist[b];
            b--;
        }
        prefix |= (uint32_t)b << shift;
        pmask |= 255u << shift;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = abs_bits(w[i]);
        int k = u > prefix || (u == prefix && need > 0);
        if (u == prefix && need > 0)
            need--;
        mask[i] = k ? 1.0f : 0.0f;
    }
}
