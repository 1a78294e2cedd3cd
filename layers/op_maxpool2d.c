/* op_maxpool2d.c - k x k max pooling with stride and -infinity padding.
 *
 * Forward records, per output, the flat index of the winning input inside its
 * [H,W] plane (first maximum on ties); backward scatters dy there.
 */
#include <stdint.h>

#include "ops.h"
#include "pool2d.h"
#include "registry.h"

typedef apb_pool_attr pool_attr;

static apb_status maxpool_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                int dim[APB_MAX_DIM])
{
    return apb_pool2d_shape("maxpool2d", in[0], attr, ndim, dim);
}

static apb_status maxpool_forward(apb_graph *g, apb_var *out)
{
    const pool_attr *a = out->attr;
    const apb_var *x = out->in[0];
    int H = x->dim[2], W = x->dim[3], OH = out->dim[2], OW = out->dim[3];
    int64_t planes = (int64_t)x->dim[0] * x->dim[1];
    int32_t *idx = apb_graph_alloc(g, sizeof(int32_t) * (size_t)out->numel); /* [N,C,OH,OW] */
    if (!idx)
        return APB_ENOMEM;
    out->saved = idx;
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x->data + pl * H * W;
        float *yp = out->data + pl * OH * OW;
        int32_t *ip = idx + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * a->stride - a->pad, hs = h0 < 0 ? 0 : h0;
            int he = h0 + a->k > H ? H : h0 + a->k;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * a->stride - a->pad, ws = w0 < 0 ? 0 : w0;
                int we = w0 + a->k > W ? W : w0 + a->k;
                int best = hs * W + ws;
                float bv = xp[best];
                for (int h = hs; h < he; h++)
                    for (int w = ws; w < we; w++)
                        if (xp[h * W + w] > bv) {
                            bv = xp[h * W + w];
                            best = h * W + w;
                        }
                yp[oh * OW + ow] = bv;
                ip[oh * OW + ow] = best;
            }
        }
    }
    return APB_OK;
}

static void maxpool_backward(apb_graph *g, apb_var *out)
{
    apb_var *x = out->in[0];
    int HW = x->dim[2] * x->dim[3], OHW = out->dim[2] * out->dim[3];
    const int32_t *idx = out->saved;
    int64_t planes = (int64_t)x->dim[0] * x->dim[1];
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dx = x->grad + pl * HW;
        const float *dy = out->grad + pl * OHW;
        const int32_t *ip = idx + pl * OHW;
        for (int o = 0; o < OHW; o++)
            dx[ip[o]] += dy[o];
    }
}

const apb_op apb_op_maxpool2d = {"maxpool2d", sizeof(pool_attr), 0, maxpool_shape,
                                 maxpool_forward, maxpool_backward};

apb_status apb_maxpool2d(apb_graph *g, apb_var *x, int k, int stride, int pad, apb_var **y)
{
    pool_attr a = {k, stride, pad};
    return apb_apply(g, &apb_op_maxpool2d, &x, 1, &a, y);
}

apb_status apb_case_maxpool2d_k3_s2_p1(apb_graph *g, apb_rng *rng, apb_var **inputs,
                                       int *ninputs, apb_var **out)
{
    inputs[0] = apb_case_distinct(g, rng, 4, (int[]){2, 2, 7, 6}, 0.05f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_maxpool2d(g, inputs[0], 3, 2, 1, out) : APB_ENOMEM;
}

apb_status apb_case_maxpool2d_k2_s2(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                    apb_var **out)
{
    inputs[0] = apb_case_distinct(g, rng, 4, (int[]){2, 3, 5, 4}, 0.05f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_maxpool2d(g, inputs[0], 2, 2, 0, out) : APB_ENOMEM;
}
