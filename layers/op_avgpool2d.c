/* op_avgpool2d.c - k x k average pooling with stride and zero padding.
 *
 * count_include_pad = 1 (PyTorch's default): every window divides by k*k, padded
 * zeros included, so the op is linear with a constant per-window weight.
 */
#include "ops.h"
#include "pool2d.h"
#include "registry.h"

typedef apb_pool_attr pool_attr;

static apb_status avgpool_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                int dim[APB_MAX_DIM])
{
    return apb_pool2d_shape("avgpool2d", in[0], attr, ndim, dim);
}

static apb_status avgpool_forward(apb_graph *g, apb_var *out)
{
    const pool_attr *a = out->attr;
    const apb_var *x = out->in[0];
    int H = x->dim[2], W = x->dim[3], OH = out->dim[2], OW = out->dim[3];
    int64_t planes = (int64_t)x->dim[0] * x->dim[1];
    float inv = 1.0f / (float)(a->k * a->k);
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x->data + pl * H * W;
        float *yp = out->data + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * a->stride - a->pad, hs = h0 < 0 ? 0 : h0;
            int he = h0 + a->k > H ? H : h0 + a->k;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * a->stride - a->pad, ws = w0 < 0 ? 0 : w0;
                int we = w0 + a->k > W ? W : w0 + a->k;
                float s = 0.0f;
                for (int h = hs; h < he; h++)
                    for (int w = ws; w < we; w++)
                        s += xp[h * W + w];
                yp[oh * OW + ow] = s * inv;
            }
        }
    }
    return APB_OK;
}

static void avgpool_backward(apb_graph *g, apb_var *out)
{
    const pool_attr *a = out->attr;
    apb_var *x = out->in[0];
    int H = x->dim[2], W = x->dim[3], OH = out->dim[2], OW = out->dim[3];
    int64_t planes = (int64_t)x->dim[0] * x->dim[1];
    float inv = 1.0f / (float)(a->k * a->k);
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dx = x->grad + pl * H * W;
        const float *dy = out->grad + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * a->stride - a->pad, hs = h0 < 0 ? 0 : h0;
            int he = h0 + a->k > H ? H : h0 + a->k;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * a->stride - a->pad, ws = w0 < 0 ? 0 : w0;
                int we = w0 + a->k > W ? W : w0 + a->k;
                float d = dy[oh * OW + ow] * inv;
                for (int h = hs; h < he; h++)
                    for (int w = ws; w < we; w++)
                        dx[h * W + w] += d;
            }
        }
    }
}

const apb_op apb_op_avgpool2d = {"avgpool2d", sizeof(pool_attr), 0, avgpool_shape,
                                 avgpool_forward, avgpool_backward};

apb_status apb_avgpool2d(apb_graph *g, apb_var *x, int k, int stride, int pad, apb_var **y)
{
    pool_attr a = {k, stride, pad};
    return apb_apply(g, &apb_op_avgpool2d, &x, 1, &a, y);
}

apb_status apb_case_avgpool2d_k3_s2_p1(apb_graph *g, apb_rng *rng, apb_var **inputs,
                                       int *ninputs, apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 4, (int[]){2, 2, 7, 6}, 1.0f, 1);
    *ninputs = 1;
    return inputs[0] ? apb_avgpool2d(g, inputs[0], 3, 2, 1, out) : APB_ENOMEM;
}
