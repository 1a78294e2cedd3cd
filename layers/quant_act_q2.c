/* quant_act_q2.c - 2-bit symmetric activations with a learnable step
 * (docs/apb-method.md section 2), feeding the 1-bit x 2-bit kernel.
 *
 * Same quantizer and LSQ estimator as the 2-bit weights (quant_q2w.c holds the
 * shared reference kernels); only the gradient scale counts activations, over
 * the whole tensor including the batch. After a ReLU the caller shifts by
 * 1.5s to get unsigned levels; export folds that shift into a bias.
 */
#include <math.h>

#include "quant.h"

static apb_status act_q2_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                               int dim[APB_MAX_DIM])
{
    if (nin != 2)
        return apb_fail(APB_EINVAL, "act_q2: expects 2 inputs (x, s), got %d", nin);
    if (in[1]->numel != 1)
        return apb_fail(APB_ESHAPE, "act_q2: step s must have 1 value, has %lld",
                        (long long)in[1]->numel);
    return apb_shape_same(in, nin, NULL, ndim, dim);
}

static apb_status act_q2_forward(apb_graph *g, apb_var *out)
{
    float s = out->in[1]->data[0];
    if (!(s > 0) || !isfinite(s))
        return apb_fail(APB_EINVAL, "act_q2%s%s: step s = %g (must be finite and > 0)",
                        out->in[1]->name ? " " : "", out->in[1]->name ? out->in[1]->name : "",
                        s);
    apb_q2_forward(out->in[0]->data, out->numel, s, out->data);
    return APB_OK;
}

static void act_q2_backward(apb_graph *g, apb_var *out)
{
    apb_var *x = out->in[0], *sv = out->in[1];
    double ds = apb_q2_backward(x->data, out->grad, x->numel, sv->data[0],
                                x->requires_grad ? x->grad : NULL);
    if (sv->requires_grad && x->numel > 0)
        sv->grad[0] += (float)(ds / sqrt((double)x->numel * APB_Q2_QP));
}

const apb_op apb_op_act_q2 = {
    .name = "act_q2",
    .attr_size = 0,
    .flags = APB_OP_STE,
    .shape = act_q2_shape,
    .forward = act_q2_forward,
    .backward = act_q2_backward,
};

apb_status apb_act_q2(apb_graph *g, apb_var *x, apb_var *s, apb_var **y)
{
    return apb_apply(g, &apb_op_act_q2, (apb_var *[]){x, s}, 2, NULL, y);
}
