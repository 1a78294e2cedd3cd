/* quant_act_sign.c - binary activations y = sgn(x) (docs/apb-method.md section 2).
 *
 * Feeds the 1-bit x 1-bit kernel. Backward is the clipped straight-through
 * estimator, or the ApproxSign derivative of Bi-Real Net (a piecewise-linear
 * bump that better matches the shape of sign) when approx is set.
 */
#include <math.h>

#include "quant.h"

#define APB_QUANT_PAR_MIN 32768

typedef struct {
    int approx;
} apb_act_sign_attr;

static apb_status act_sign_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                 int dim[APB_MAX_DIM])
{
    if (nin != 1)
        return apb_fail(APB_EINVAL, "act_sign: expects 1 input, got %d", nin);
    return apb_shape_same(in, nin, NULL, ndim, dim);
}

static apb_status act_sign_forward(apb_graph *g, apb_var *out)
{
    const float *x = out->in[0]->data;
    float *y = out->data;
#pragma omp parallel for schedule(static) if (out->numel >= APB_QUANT_PAR_MIN)
    for (int64_t i = 0; i < out->numel; i++)
        y[i] = apb_sgnf(x[i]);
    return APB_OK;
}

static void act_sign_backward(apb_graph *g, apb_var *out)
{
    apb_var *xv = out->in[0];
    if (!xv->requires_grad)
        return;
    const apb_act_sign_attr *a = out->attr;
    int approx = a ? a->approx : 0;
    const float *x = xv->data, *gy = out->grad;
    float *dx = xv->grad;
#pragma omp parallel for schedule(static) if (out->numel >= APB_QUANT_PAR_MIN)
    for (int64_t i = 0; i < out->numel; i++) {
        float ax = fabsf(x[i]);
        if (approx)
            dx[i] += ax < 1.0f ? gy[i] * (2.0f - 2.0f * ax) : 0.0f;
        else
            dx[i] += ax <= 1.0f ? gy[i] : 0.0f;
    }
}

const apb_op apb_op_act_sign = {
    .name = "act_sign",
    .attr_size = sizeof(apb_act_sign_attr),
    .flags = APB_OP_STE,
    .shape = act_sign_shape,
    .forward = act_sign_forward,
    .backward = act_sign_backward,
};

apb_status apb_act_sign(apb_graph *g, apb_var *x, int approx, apb_var **y)
{
    apb_act_sign_attr a = {approx};
    return apb_apply(g, &apb_op_act_sign, (apb_var *[]){x}, 1, &a, y);
}
