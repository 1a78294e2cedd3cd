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

/* Branch-free and vectorised (which side of |x| <= 1 an activation falls on is
 * a coin flip: as a branch it cost ~12% of a resnet20 APB + binary step). The
 * gradient is written when the engine hands it over fresh (0.0f + v: the bits
 * of adding v to the zeroed buffer), accumulated otherwise. */
#define SIGN_BLOCK 4096
static void act_sign_backward(apb_graph *g, apb_var *out)
{
    apb_var *xv = out->in[0];
    if (!xv->requires_grad)
        return;
    const apb_act_sign_attr *a = out->attr;
    int approx = a ? a->approx : 0, fresh = apb_grad_take_fresh(xv);
    const float *x = xv->data, *gy = out->grad;
    float *dx = xv->grad;
    int64_t n = out->numel;
#pragma omp parallel for schedule(static) if (n >= APB_QUANT_PAR_MIN)
    for (int64_t i0 = 0; i0 < n; i0 += SIGN_BLOCK) {
        int64_t e = n - i0 < SIGN_BLOCK ? n : i0 + SIGN_BLOCK;
        float v[SIGN_BLOCK];
        if (approx) {
#pragma omp simd
            for (int64_t i = i0; i < e; i++) {
                float ax = fabsf(x[i]), g = gy[i] * (2.0f - 2.0f * ax);
                v[i - i0] = ax < 1.0f ? g : 0.0f;
            }
        } else {
            /* gy loaded before the select: with the load inside it, gcc kept a
             * branch per element and no vectors (13% of a resnet20 APB + binary
             * step, session 12) */
#pragma omp simd
            for (int64_t i = i0; i < e; i++) {
                float g = gy[i];
                v[i - i0] = fabsf(x[i]) <= 1.0f ? g : 0.0f;
            }
        }
        if (fresh) {
#pragma omp simd
            for (int64_t i = i0; i < e; i++)
                dx[i] = 0.0f + v[i - i0];
        } else {
#pragma omp simd
            for (int64_t i = i0; i < e; i++)
                dx[i] += v[i - i0];
        }
    }
}

const apb_op apb_op_act_sign = {
    .name = "act_sign",
    .attr_size = sizeof(apb_act_sign_attr),
    .flags = APB_OP_STE | APB_OP_GRAD_WRITE,
    .shape = act_sign_shape,
    .forward = act_sign_forward,
    .backward = act_sign_backward,
};

apb_status apb_act_sign(apb_graph *g, apb_var *x, int approx, apb_var **y)
{
    apb_act_sign_attr a = {approx};
    return apb_apply(g, &apb_op_act_sign, (apb_var *[]){x}, 1, &a, y);
}
