/* ops.h - the differentiable layers of apb (public API).
 *
 * Each function below validates its arguments, builds the op's attribute struct
 * and calls apb_apply() with the op descriptor (also exported, so the registry
 * and the gradient check can drive every op generically). Outputs live in the
 * graph's step arena. Dimension letters: N batch, C channels, H height, W width,
 * M output channels / features, F input features, K classes.
 *
 * Example (one conv block):
 *     apb_var *h;
 *     APB_TRY(apb_conv2d(g, x, conv1_w, NULL, 1, 1, &h));
 *     APB_TRY(apb_batchnorm(g, h, bn1_gamma, bn1_beta, &bn1_state, &h));
 *     APB_TRY(apb_relu(g, h, &h));
 *
 * Every op's descriptor name equals its symbol suffix (apb_op_conv2d -> "conv2d");
 * the registry test relies on it to find unregistered ops.
 */
#ifndef APB_OPS_H
#define APB_OPS_H

#include "autograd.h"

extern const apb_op apb_op_conv2d;
extern const apb_op apb_op_linear;
extern const apb_op apb_op_batchnorm;
extern const apb_op apb_op_relu;
extern const apb_op apb_op_bn_relu;
extern const apb_op apb_op_hardtanh;
extern const apb_op apb_op_clip;
extern const apb_op apb_op_maxpool2d;
extern const apb_op apb_op_avgpool2d;
extern const apb_op apb_op_global_avgpool;
extern const apb_op apb_op_flatten;
extern const apb_op apb_op_add;
extern const apb_op apb_op_dropout;
extern const apb_op apb_op_softmax_xent;

/* y[N,M,OH,OW] = conv(x[N,C,H,W], w[M,C,KH,KW]) + b[M] (b may be NULL);
 * OH = (H + 2*pad - KH)/stride + 1, zero padding. */
apb_status apb_conv2d(apb_graph *g, apb_var *x, apb_var *w, apb_var *b, int stride, int pad,
                      apb_var **y);

/* y[N,M] = x[N,F] * w[M,F]^T + b[M] (b may be NULL). */
apb_status apb_linear(apb_graph *g, apb_var *x, apb_var *w, apb_var *b, apb_var **y);

typedef struct {
    float *running_mean, *running_var; /* [C], owned by the model */
    float momentum;                    /* 0.1 */
    float eps;                         /* 1e-5 */
} apb_bn_state;

/* Batch normalisation over x[N,C,H,W] (2d) or x[N,C] (1d), gamma/beta [C].
 * Training (g->training): normalises with the batch mean and biased variance and
 * updates st's running statistics with the unbiased variance (as PyTorch does);
 * st may be NULL in training (no update). Eval: uses the running statistics. */
apb_status apb_batchnorm(apb_graph *g, apb_var *x, apb_var *gamma, apb_var *beta,
                         apb_bn_state *st, apb_var **y);

apb_status apb_relu(apb_graph *g, apb_var *x, apb_var **y);
/* y = relu(batchnorm(x)) as one op (same arguments and modes as apb_batchnorm):
 * bitwise equal to apb_batchnorm followed by apb_relu, values and gradients, with
 * fewer passes over memory. Use it where the batchnorm output feeds only the relu. */
apb_status apb_bn_relu(apb_graph *g, apb_var *x, apb_var *gamma, apb_var *beta,
                       apb_bn_state *st, apb_var **y);
/* y = relu(batchnorm(x) + r), r of x's shape (a residual block's output): bitwise
 * equal to apb_batchnorm, apb_add(bn, r), apb_relu. r must not be x itself. */
apb_status apb_bn_add_relu(apb_graph *g, apb_var *x, apb_var *gamma, apb_var *beta, apb_var *r,
                           apb_bn_state *st, apb_var **y);
/* Clamp to [-1, 1]; gradient 1 strictly inside, 0 outside. */
apb_status apb_hardtanh(apb_graph *g, apb_var *x, apb_var **y);
/* Clamp to [lo, hi] (ReLU6: [0, 6]); gradient 1 strictly inside, 0 outside. */
apb_status apb_clip(apb_graph *g, apb_var *x, float lo, float hi, apb_var **y);

/* Pooling over x[N,C,H,W] with a k x k window; OH = (H + 2*pad - k)/stride + 1,
 * pad <= k/2. Max pooling pads with -infinity; average pooling counts padded
 * zeros (count_include_pad = 1, i.e. always divides by k*k). */
apb_status apb_maxpool2d(apb_graph *g, apb_var *x, int k, int stride, int pad, apb_var **y);
apb_status apb_avgpool2d(apb_graph *g, apb_var *x, int k, int stride, int pad, apb_var **y);
/* y[N,C] = mean over H,W of x[N,C,H,W]. */
apb_status apb_global_avgpool(apb_graph *g, apb_var *x, apb_var **y);
/* y[N, C*H*W] from x[N,C,H,W] (any ndim >= 1). */
apb_status apb_flatten(apb_graph *g, apb_var *x, apb_var **y);
/* y = a + b, same shapes (residual add). */
apb_status apb_add(apb_graph *g, apb_var *a, apb_var *b, apb_var **y);
/* Inverted dropout: in training each element is kept with probability 1-p (mask
 * drawn from g->rng) and scaled by 1/(1-p); in eval (or p == 0) *y = x. */
apb_status apb_dropout(apb_graph *g, apb_var *x, float p, apb_var **y);

/* Mean softmax cross-entropy over the batch: logits[N,K], labels[N] in [0,K).
 * smoothing eps (0 = none) uses targets (1-eps)*onehot + eps/K. *loss is a scalar
 * (ndim 0). If `correct` is non-NULL it receives the number of rows whose argmax
 * (first maximum) equals the label. */
apb_status apb_softmax_xent(apb_graph *g, apb_var *logits, const int *labels, float smoothing,
                            apb_var **loss, int *correct);

#endif
