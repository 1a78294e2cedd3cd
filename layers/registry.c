/* registry.c - the table of differentiable ops and their gradcheck cases.
 *
 * One X(op, case) line per case: X declares apb_case_<case>() (defined next to
 * the op in its own file; the quantizers' cases, whose ops carry APB_OP_STE and
 * are only built, not finite-differenced, are at the end of this file) and adds
 * {&apb_op_<op>, apb_case_<case>} to the table.
 */
#include "registry.h"

#include "ops.h"
#include "quant.h"

#define APB_OP_CASES(X)                 \
    X(conv2d, conv2d_3x3_s2_p1)         \
    X(conv2d, conv2d_1x1)               \
    X(conv2d, conv2d_nobias_batch3)     \
    X(linear, linear)                   \
    X(linear, linear_nobias)            \
    X(batchnorm, batchnorm_2d)          \
    X(batchnorm, batchnorm_1d)          \
    X(relu, relu)                       \
    X(bn_relu, bn_relu_2d)              \
    X(bn_relu, bn_relu_1d)              \
    X(bn_relu, bn_add_relu_2d)          \
    X(hardtanh, hardtanh)               \
    X(clip, clip)                       \
    X(maxpool2d, maxpool2d_k3_s2_p1)    \
    X(maxpool2d, maxpool2d_k2_s2)       \
    X(avgpool2d, avgpool2d_k3_s2_p1)    \
    X(global_avgpool, global_avgpool)   \
    X(flatten, flatten)                 \
    X(add, add)                         \
    X(add, add_same_input)              \
    X(dropout, dropout)                 \
    X(softmax_xent, softmax_xent)       \
    X(softmax_xent, softmax_xent_smooth) \
    X(quant_apb, quant_apb)             \
    X(quant_binary, quant_binary)       \
    X(quant_q2w, quant_q2w)             \
    X(quant_mask, quant_mask)           \
    X(quant_prune_binary, quant_prune_binary) \
    X(act_sign, act_sign)               \
    X(act_q2, act_q2)                   \
    X(act_int8, act_int8_unsigned)      \
    X(act_int8, act_int8_signed)

#define APB_DECLARE_CASE(op, c)                                                        \
    apb_status apb_case_##c(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs, \
                            apb_var **out);
APB_OP_CASES(APB_DECLARE_CASE)

#define APB_TABLE_ENTRY(op, c) {&apb_op_##op, apb_case_##c, #c},
static const apb_op_case registry[] = {APB_OP_CASES(APB_TABLE_ENTRY)};

const apb_op_case *apb_op_registry(int *count)
{
    *count = (int)(sizeof registry / sizeof registry[0]);
    return registry;
}

apb_var *apb_case_normal(apb_graph *g, apb_rng *rng, int ndim, const int *dim, float scale,
                         int requires_grad)
{
    apb_var *v = apb_graph_new(g, ndim, dim, 0);
    if (!v)
        return NULL;
    for (int64_t i = 0; i < v->numel; i++)
        v->data[i] = scale * apb_rng_normal(rng);
    v->requires_grad = requires_grad;
    return v;
}

apb_var *apb_case_distinct(apb_graph *g, apb_rng *rng, int ndim, const int *dim, float spacing,
                           int requires_grad)
{
    apb_var *v = apb_graph_new(g, ndim, dim, 0);
    if (!v)
        return NULL;
    int64_t n = v->numel;
    for (int64_t i = 0; i < n; i++)
        v->data[i] = ((float)(i - n / 2) + 0.5f) * spacing;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = apb_rng_below(rng, (uint32_t)(i + 1));
        float t = v->data[i];
        v->data[i] = v->data[j];
        v->data[j] = t;
    }
    v->requires_grad = requires_grad;
    return v;
}

/* ---- cases for the quantizers (layers/quant*.c, APB_OP_STE) ---- */

static apb_var *case_scalar(apb_graph *g, float v)
{
    apb_var *s = apb_graph_new(g, 1, (int[]){1}, 0);
    if (s) {
        s->data[0] = v;
        s->requires_grad = 1;
    }
    return s;
}

apb_status apb_case_quant_apb(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                              apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 4, (int[]){4, 3, 3, 3}, 0.5f, 1);
    inputs[1] = case_scalar(g, 0.4f);
    inputs[2] = case_scalar(g, 0.3f);
    *ninputs = 3;
    if (!inputs[0] || !inputs[1] || !inputs[2])
        return APB_ENOMEM;
    return apb_quant_apb(g, inputs[0], inputs[1], inputs[2], NULL, out);
}

apb_status apb_case_quant_binary(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                 apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){4, 6}, 0.5f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_quant_binary(g, inputs[0], 0, out) : APB_ENOMEM;
}

apb_status apb_case_quant_q2w(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                              apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){4, 6}, 0.5f, 1);
    inputs[1] = case_scalar(g, 0.3f);
    *ninputs = 2;
    return inputs[0] && inputs[1] ? apb_quant_q2w(g, inputs[0], inputs[1], out) : APB_ENOMEM;
}

apb_status apb_case_quant_mask(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                               apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){4, 6}, 0.5f, 1);
    float *mask = apb_graph_floats(g, 24); /* [24] lives in the step arena until reset */
    *ninputs = 1;
    if (!inputs[0] || !mask)
        return APB_ENOMEM;
    for (int i = 0; i < 24; i++)
        mask[i] = (float)(i % 3 != 0);
    return apb_quant_mask(g, inputs[0], mask, out);
}

apb_status apb_case_quant_prune_binary(apb_graph *g, apb_rng *rng, apb_var **inputs,
                                       int *ninputs, apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){4, 6}, 0.5f, 1);
    float *mask = apb_graph_floats(g, 24); /* [24] lives in the step arena until reset */
    *ninputs = 1;
    if (!inputs[0] || !mask)
        return APB_ENOMEM;
    for (int i = 0; i < 24; i++)
        mask[i] = (float)(i % 4 != 1);
    return apb_quant_prune_binary(g, inputs[0], mask, 1, out);
}

apb_status apb_case_act_sign(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                             apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 4, (int[]){2, 3, 4, 4}, 1.0f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_act_sign(g, inputs[0], 0, out) : APB_ENOMEM;
}

apb_status apb_case_act_q2(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                           apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 4, (int[]){2, 3, 4, 4}, 1.0f, 1);
    inputs[1] = case_scalar(g, 0.5f);
    *ninputs = 2;
    return inputs[0] && inputs[1] ? apb_act_q2(g, inputs[0], inputs[1], out) : APB_ENOMEM;
}

/* Steps of 1/32 and 1/64 put the inputs over most of the code range, with some
 * clamped at either end (set explicitly, so every draw has them). */
apb_status apb_case_act_int8_unsigned(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                      apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 4, (int[]){2, 3, 4, 4}, 3.0f, 1);
    inputs[1] = case_scalar(g, 1.0f / 32.0f);
    *ninputs = 2;
    if (!inputs[0] || !inputs[1])
        return APB_ENOMEM;
    inputs[0]->data[0] = 9.0f; /* above the range [0, 255/32] whatever the draw */
    return apb_act_int8(g, inputs[0], inputs[1], 0, out);
}

apb_status apb_case_act_int8_signed(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                    apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){5, 7}, 1.0f, 1);
    inputs[1] = case_scalar(g, 1.0f / 64.0f);
    *ninputs = 2;
    if (!inputs[0] || !inputs[1])
        return APB_ENOMEM;
    inputs[0]->data[0] = 3.0f; /* outside [-128/64, 127/64] whatever the draw */
    inputs[0]->data[1] = -3.0f;
    return apb_act_int8(g, inputs[0], inputs[1], 1, out);
}
