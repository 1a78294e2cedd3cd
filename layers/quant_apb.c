/* quant_apb.c - the APB weight quantizer (docs/apb-method.md section 1).
 *
 * Weights near +-alpha (inside the band of half-width delta) become exactly
 * +-alpha; the rest stay full precision. alpha and delta are learned with the
 * published straight-through estimator (or the direct derivative, an option).
 * Work is split by output channel: forward is elementwise, backward sums per
 * channel in double and then over channels in order, so results do not depend
 * on the number of threads.
 */
#include <math.h>
#include <stdio.h>

#include "quant.h"

/* Parallelise only when the tensor is big enough to pay for the fork. */
#define APB_QUANT_PAR_MIN 32768

typedef struct {
    double *sa; /* [M] sum g*b*sgn(w) per channel */
    double *sd; /* [M] sum g*b*sgn(w)*(alpha-|w|) per channel */
} apb_quant_apb_saved;

static int64_t channels_of(const apb_var *w) { return w->ndim >= 1 ? w->dim[0] : 1; }

static apb_status quant_apb_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                  int dim[APB_MAX_DIM])
{
    if (nin != 3)
        return apb_fail(APB_EINVAL, "quant_apb: expects 3 inputs (w, alpha, delta), got %d", nin);
    const apb_apb_cfg *cfg = attr;
    const apb_var *w = in[0];
    int pc = cfg ? cfg->per_channel : 0;
    int64_t m = pc ? channels_of(w) : 1;
    if (pc && w->ndim < 1)
        return apb_fail(APB_ESHAPE, "quant_apb: per-channel needs a weight with a channel dim");
    if (in[1]->numel != m || in[2]->numel != m) {
        char b[64];
        return apb_fail(APB_ESHAPE,
                        "quant_apb: alpha has %lld values and delta %lld, expected %lld "
                        "(per_channel=%d, weight %s)",
                        (long long)in[1]->numel, (long long)in[2]->numel, (long long)m, pc,
                        apb_dims_str(w->ndim, w->dim, b, sizeof b));
    }
    *ndim = w->ndim;
    for (int i = 0; i < w->ndim; i++)
        dim[i] = w->dim[i];
    return APB_OK;
}

static apb_status quant_apb_forward(apb_graph *g, apb_var *out)
{
    const apb_apb_cfg *cfg = out->attr;
    const apb_var *w = out->in[0];
    const float *alpha = out->in[1]->data, *delta = out->in[2]->data;
    int pc = cfg ? cfg->per_channel : 0;
    int64_t m = channels_of(w), k = w->numel / (m ? m : 1);
    int64_t np = pc ? m : 1;
    for (int64_t c = 0; c < np; c++)
        if (!isfinite(alpha[c]) || !isfinite(delta[c]))
            return apb_fail(APB_ENUMERIC, "quant_apb%s%s: alpha[%lld] = %g, delta[%lld] = %g "
                            "(must be finite)", w->name ? " " : "", w->name ? w->name : "",
                            (long long)c, alpha[c], (long long)c, delta[c]);
    const float *x = w->data;
    float *y = out->data;
#pragma omp parallel for schedule(static) if (w->numel >= APB_QUANT_PAR_MIN)
    for (int64_t c = 0; c < m; c++) {
        float a = alpha[pc ? c : 0], d = delta[pc ? c : 0];
        for (int64_t i = c * k; i < (c + 1) * k; i++)
            y[i] = apb_apb_value(x[i], a, d);
    }
    if (out->requires_grad) {
        apb_quant_apb_saved *s = apb_graph_alloc(g, sizeof *s);
        if (!s)
            return APB_ENOMEM;
        s->sa = apb_graph_alloc(g, (size_t)(2 * m) * sizeof(double));
        if (!s->sa)
            return APB_ENOMEM;
        s->sd = s->sa + m;
        out->saved = s;
    }
    return APB_OK;
}

static void quant_apb_backward(apb_graph *g, apb_var *out)
{
    const apb_apb_cfg *cfg = out->attr;
    apb_var *w = out->in[0], *av = out->in[1], *dv = out->in[2];
    const float *gy = out->grad, *x = w->data;
    int pc = cfg ? cfg->per_channel : 0;
    int direct = cfg ? cfg->direct_alpha_grad : 0;
    int64_t m = channels_of(w), k = w->numel / (m ? m : 1);

    float *dw = w->requires_grad ? w->grad : NULL;
    int need_ad = av->requires_grad || dv->requires_grad;
    if ((!dw && !need_ad) || w->numel == 0)
        return;

    /* one pass: identity STE for w, per-channel band sums for alpha and delta */
    apb_quant_apb_saved *s = out->saved;
    const float *alpha = av->data, *delta = dv->data;
#pragma omp parallel for schedule(static) if (w->numel >= APB_QUANT_PAR_MIN)
    for (int64_t c = 0; c < m; c++) {
        int64_t lo = c * k, hi = (c + 1) * k;
        if (dw)
            for (int64_t i = lo; i < hi; i++)
                dw[i] += gy[i];
        if (!need_ad)
            continue;
        float a = alpha[pc ? c : 0], d = delta[pc ? c : 0];
        /* branch-free (the band test is unpredictable), four fixed partial
         * sums to break the add latency chain; order is still deterministic */
        double sa[4] = {0, 0, 0, 0}, sd[4] = {0, 0, 0, 0};
        int64_t i = lo;
        for (; i + 4 <= hi; i += 4)
            for (int j = 0; j < 4; j++) {
                float xv = x[i + j];
                float bs = apb_apb_in_band(xv, a, d) ? (xv >= 0.0f ? 1.0f : -1.0f) : 0.0f;
                double t = (double)gy[i + j] * bs;
                sa[j] += t;
                sd[j] += t * ((double)a - fabs((double)xv));
            }
        for (; i < hi; i++) {
            float xv = x[i];
            float bs = apb_apb_in_band(xv, a, d) ? (xv >= 0.0f ? 1.0f : -1.0f) : 0.0f;
            double t = (double)gy[i] * bs;
            sa[0] += t;
            sd[0] += t * ((double)a - fabs((double)xv));
        }
        s->sa[c] = (sa[0] + sa[1]) + (sa[2] + sa[3]);
        s->sd[c] = (sd[0] + sd[1]) + (sd[2] + sd[3]);
    }
    if (!need_ad)
        return;

    int64_t np = pc ? m : 1;
    double n = pc ? (double)k : (double)w->numel;
    for (int64_t p = 0; p < np; p++) {
        double sa = 0, sd = 0;
        if (pc) {
            sa = s->sa[p];
            sd = s->sd[p];
        } else {
            for (int64_t c = 0; c < m; c++) {
                sa += s->sa[c];
                sd += s->sd[c];
            }
        }
        if (av->requires_grad)
            av->grad[p] += (float)(direct ? sa : -sa / n);
        if (dv->requires_grad)
            dv->grad[p] += (float)(sd / (n * (double)delta[p]));
    }
}

const apb_op apb_op_quant_apb = {
    .name = "quant_apb",
    .attr_size = sizeof(apb_apb_cfg),
    .flags = APB_OP_STE,
    .shape = quant_apb_shape,
    .forward = quant_apb_forward,
    .backward = quant_apb_backward,
};

apb_status apb_quant_apb(apb_graph *g, apb_var *w, apb_var *alpha, apb_var *delta,
                         const apb_apb_cfg *cfg, apb_var **q)
{
    apb_apb_cfg def = {0, 0};
    return apb_apply(g, &apb_op_quant_apb, (apb_var *[]){w, alpha, delta}, 3,
                     cfg ? cfg : &def, q);
}

void apb_apb_init(const float *w, int64_t n, int m, float *alpha, float *delta)
{
    if (m < 1)
        m = 1;
    int64_t k = n / m;
    for (int c = 0; c < m; c++) {
        double sabs = 0, s = 0, s2 = 0;
        for (int64_t i = c * k; i < (c + 1) * k; i++) {
            sabs += fabs((double)w[i]);
            s += w[i];
        }
        double mean = k ? s / k : 0;
        for (int64_t i = c * k; i < (c + 1) * k; i++)
            s2 += ((double)w[i] - mean) * ((double)w[i] - mean);
        alpha[c] = (float)(k ? sabs / k : 0);
        delta[c] = (float)(3.0 * sqrt(k ? s2 / k : 0));
    }
}

int64_t apb_apb_count_fp(const float *w, int64_t n, int m, const float *alpha,
                         const float *delta)
{
    if (m < 1)
        m = 1;
    int64_t k = n / m, fp = 0;
    for (int c = 0; c < m; c++)
        for (int64_t i = c * k; i < (c + 1) * k; i++)
            fp += !apb_apb_in_band(w[i], alpha[c], delta[c]);
    return fp;
}
