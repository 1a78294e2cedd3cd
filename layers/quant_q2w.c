/* quant_q2w.c - uniform 2-bit weights with a learnable step (LSQ), the "2-bit
 * model" baseline of docs/apb-method.md section 3, plus the 2-bit reference
 * kernels shared with the 2-bit activation op (quant_act_q2.c).
 *
 * Both use the same four symmetric levels {-3s/2, -s/2, +s/2, +3s/2} and the
 * LSQ estimator (Esser et al., "Learned Step Size Quantization", ICLR 2020):
 * the floor is treated as the identity, so inside the range dq/ds is the
 * rounding residual (l - 1.5) - x/s and outside it is the clamped level; the
 * step gradient is scaled by 1/sqrt(n * Qp) to keep its magnitude comparable
 * to the weight gradients.
 */
#include <math.h>

#include "quant.h"

#define APB_QUANT_PAR_MIN 32768
/* Fixed reduction chunks: the sum's order never depends on the thread count. */
#define APB_Q2_CHUNKS 64

void apb_q2_forward(const float *x, int64_t n, float s, float *y)
{
#pragma omp parallel for schedule(static) if (n >= APB_QUANT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = apb_q2_value(x[i], s);
}

double apb_q2_backward(const float *x, const float *g, int64_t n, float s, float *dx)
{
    double part[APB_Q2_CHUNKS];
    int64_t chunk = (n + APB_Q2_CHUNKS - 1) / APB_Q2_CHUNKS;
#pragma omp parallel for schedule(static) if (n >= APB_QUANT_PAR_MIN)
    for (int c = 0; c < APB_Q2_CHUNKS; c++) {
        double acc = 0;
        int64_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (int64_t i = c * chunk; i < end; i++) {
            /* inside the range exactly when the quotient needs no clamp */
            float t = x[i] / s;
            int inside = t >= -2.0f && t < 2.0f;
            double lv = apb_q2_level(x[i], s) - 1.5;
            if (dx)
                dx[i] += inside ? g[i] : 0.0f;
            acc += (double)g[i] * (inside ? lv - (double)x[i] / (double)s : lv);
        }
        part[c] = acc;
    }
    double sum = 0;
    for (int c = 0; c < APB_Q2_CHUNKS; c++)
        sum += part[c];
    return sum;
}

float apb_q2_init_step(const float *x, int64_t n)
{
    if (n <= 0)
        return 1.0f;
    int64_t stride = n > 65536 ? (n + 65535) / 65536 : 1;
    double sabs = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i += stride, cnt++)
        sabs += fabs((double)x[i]);
    double s0 = 2.0 * (sabs / (double)cnt) / sqrt((double)APB_Q2_QP);
    if (!(s0 > 0) || !isfinite(s0))
        return 1.0f;
    float best = (float)s0;
    double best_err = INFINITY;
    for (int j = 0; j < 64; j++) {
        float s = (float)(s0 * (0.25 + 1.75 * j / 63.0));
        if (!(s > 0))
            continue;
        double err = 0;
        for (int64_t i = 0; i < n; i += stride) {
            double e = (double)x[i] - (double)apb_q2_value(x[i], s);
            err += e * e;
        }
        if (err < best_err) {
            best_err = err;
            best = s;
        }
    }
    return best;
}

/* ---- the weight op ---- */

static apb_status q2_shape(const char *name, apb_var *const *in, int nin, int *ndim,
                           int dim[APB_MAX_DIM])
{
    if (nin != 2)
        return apb_fail(APB_EINVAL, "%s: expects 2 inputs (x, s), got %d", name, nin);
    if (in[1]->numel != 1)
        return apb_fail(APB_ESHAPE, "%s: step s must have 1 value, has %lld", name,
                        (long long)in[1]->numel);
    return apb_shape_same(in, nin, NULL, ndim, dim);
}

static apb_status quant_q2w_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                  int dim[APB_MAX_DIM])
{
    return q2_shape("quant_q2w", in, nin, ndim, dim);
}

static apb_status quant_q2w_forward(apb_graph *g, apb_var *out)
{
    float s = out->in[1]->data[0];
    if (!(s > 0) || !isfinite(s))
        return apb_fail(APB_EINVAL, "quant_q2w%s%s: step s = %g (must be finite and > 0)",
                        out->in[0]->name ? " " : "", out->in[0]->name ? out->in[0]->name : "",
                        s);
    apb_q2_forward(out->in[0]->data, out->numel, s, out->data);
    return APB_OK;
}

static void quant_q2w_backward(apb_graph *g, apb_var *out)
{
    apb_var *w = out->in[0], *sv = out->in[1];
    double ds = apb_q2_backward(w->data, out->grad, w->numel, sv->data[0],
                                w->requires_grad ? w->grad : NULL);
    if (sv->requires_grad && w->numel > 0)
        sv->grad[0] += (float)(ds / sqrt((double)w->numel * APB_Q2_QP));
}

const apb_op apb_op_quant_q2w = {
    .name = "quant_q2w",
    .attr_size = 0,
    .flags = APB_OP_STE,
    .shape = quant_q2w_shape,
    .forward = quant_q2w_forward,
    .backward = quant_q2w_backward,
};

apb_status apb_quant_q2w(apb_graph *g, apb_var *w, apb_var *s, apb_var **q)
{
    return apb_apply(g, &apb_op_quant_q2w, (apb_var *[]){w, s}, 2, NULL, q);
}
