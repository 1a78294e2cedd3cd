/* quant_binary.c - plain binary weights a*sgn(w) (the "plain binary" baseline of
 * docs/apb-method.md section 3: APB with no full-precision outliers).
 *
 * The scale a = mean|w| (per layer or per output channel) is recomputed in every
 * forward and treated as a constant in backward; the weight gradient is the
 * identity STE, as for APB, so the two differ only in the outliers.
 */
#include <math.h>
#include <stdio.h>

#include "quant.h"

#define APB_QUANT_PAR_MIN 32768

typedef struct {
    int per_channel;
} apb_quant_binary_attr;

static apb_status quant_binary_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                     int dim[APB_MAX_DIM])
{
    if (nin != 1)
        return apb_fail(APB_EINVAL, "quant_binary: expects 1 input (w), got %d", nin);
    const apb_quant_binary_attr *a = attr;
    if (a && a->per_channel && in[0]->ndim < 1)
        return apb_fail(APB_ESHAPE, "quant_binary: per-channel needs a weight with a channel dim");
    return apb_shape_same(in, nin, NULL, ndim, dim);
}

void apb_binary_scale(const float *w, int64_t n, int m, float *a)
{
    if (m < 1)
        m = 1;
    int64_t k = n / m;
    for (int c = 0; c < m; c++) {
        double s = 0;
        for (int64_t i = c * k; i < (c + 1) * k; i++)
            s += fabs((double)w[i]);
        a[c] = (float)(k ? s / (double)k : 0.0);
    }
}

static apb_status quant_binary_forward(apb_graph *g, apb_var *out)
{
    const apb_quant_binary_attr *at = out->attr;
    const apb_var *w = out->in[0];
    int pc = at ? at->per_channel : 0;
    int m = pc ? w->dim[0] : 1;
    int64_t k = m ? w->numel / m : 0;
    float *a = apb_graph_floats(g, m > 0 ? m : 1);
    if (!a)
        return APB_ENOMEM;
    apb_binary_scale(w->data, w->numel, m, a);
    out->saved = a; /* the scales, for inspection; backward does not need them */
    const float *x = w->data;
    float *y = out->data;
#pragma omp parallel for schedule(static) if (w->numel >= APB_QUANT_PAR_MIN)
    for (int c = 0; c < m; c++)
        for (int64_t i = c * k; i < (c + 1) * k; i++)
            y[i] = x[i] >= 0.0f ? a[c] : -a[c];
    return APB_OK;
}

static void quant_binary_backward(apb_graph *g, apb_var *out)
{
    apb_var *w = out->in[0];
    if (!w->requires_grad)
        return;
    const float *gy = out->grad;
    float *dw = w->grad;
#pragma omp parallel for schedule(static) if (w->numel >= APB_QUANT_PAR_MIN)
    for (int64_t i = 0; i < w->numel; i++)
        dw[i] += gy[i];
}

const apb_op apb_op_quant_binary = {
    .name = "quant_binary",
    .attr_size = sizeof(apb_quant_binary_attr),
    .flags = APB_OP_STE,
    .shape = quant_binary_shape,
    .forward = quant_binary_forward,
    .backward = quant_binary_backward,
};

apb_status apb_quant_binary(apb_graph *g, apb_var *w, int per_channel, apb_var **q)
{
    apb_quant_binary_attr a = {per_channel};
    return apb_apply(g, &apb_op_quant_binary, (apb_var *[]){w}, 1, &a, q);
}
