/* quant_act_int8.c - 8-bit activations with a learnable step (issue 14), the
 * input quantizer of layers that run on the binary x 8-bit integer GEMM.
 *
 * Codes are unsigned (0..255) where the input cannot be negative (it comes
 * from a ReLU: models/model.c decides by the graph) and signed (-128..127)
 * otherwise; the exact rule is apb_i8_code in quant.h, which the runtime
 * repeats. The step is learned with the LSQ estimator, like the 2-bit
 * quantizer, so it lives in the quantizer parameter group (Adam, --quant-lr,
 * frozen at --freeze-at). Where it starts matters more at 8 bits than how it
 * moves: a step of 0 is calibrated on the first batch the layer sees
 * (apb_i8_init_step), because a data-free guess cannot know the range of a
 * ReLU output after a fine-tuned batch norm.
 */
#include <math.h>

#include "quant.h"

#define APB_QUANT_PAR_MIN 32768
/* Fixed reduction chunks: the sum's order never depends on the thread count. */
#define APB_I8_CHUNKS 64

typedef struct {
    int is_signed;
} apb_act_int8_attr;

float apb_i8_init_step(const float *x, int64_t n, int is_signed)
{
    float hi = is_signed ? 127.0f : 255.0f;
    if (n <= 0)
        return 1.0f;
    int64_t stride = n > 65536 ? (n + 65535) / 65536 : 1;
    double mx = 0;
    for (int64_t i = 0; i < n; i += stride)
        mx = fmax(mx, is_signed ? fabs((double)x[i]) : (double)x[i]);
    if (!(mx > 0) || !isfinite(mx))
        return 1.0f;
    float best = (float)(mx / hi);
    double best_err = INFINITY;
    for (int j = 0; j < 64; j++) {
        /* geometric grid from max/hi down to max/(16 hi): clipping the tail trades
         * a few large errors for finer steps everywhere else */
        float s = (float)(mx / hi * pow(1.0 / 16.0, j / 63.0));
        float r = 1.0f / s;
        if (!(s > 0) || !isfinite(r))
            continue;
        double err = 0;
        for (int64_t i = 0; i < n; i += stride) {
            double e = (double)x[i] - (double)apb_i8_value(x[i], s, r, is_signed);
            err += e * e;
        }
        if (err < best_err) {
            best_err = err;
            best = s;
        }
    }
    return best;
}

static apb_status act_int8_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                                 int dim[APB_MAX_DIM])
{
    if (nin != 2)
        return apb_fail(APB_EINVAL, "act_int8: expects 2 inputs (x, s), got %d", nin);
    if (in[1]->numel != 1)
        return apb_fail(APB_ESHAPE, "act_int8: step s must have 1 value, has %lld",
                        (long long)in[1]->numel);
    return apb_shape_same(in, nin, NULL, ndim, dim);
}

static apb_status act_int8_forward(apb_graph *g, apb_var *out)
{
    const apb_act_int8_attr *a = out->attr;
    apb_var *x = out->in[0], *sv = out->in[1];
    const char *nm = sv->name ? sv->name : "";
    if (sv->data[0] == 0.0f)
        sv->data[0] = apb_i8_init_step(x->data, x->numel, a->is_signed);
    float s = sv->data[0];
    if (!(s > 0) || !isfinite(s) || !isfinite(1.0f / s))
        return apb_fail(APB_EINVAL, "act_int8%s%s: step s = %g (must be finite and > 0)",
                        *nm ? " " : "", nm, s);
    float r = 1.0f / s;
    const float *restrict xd = x->data;
    float *restrict y = out->data;
    const float lo = a->is_signed ? -128.0f : 0.0f, hi = a->is_signed ? 127.0f : 255.0f;
    /* apb_i8_value through the float code, which vectorizes (the same bits) */
#pragma omp parallel for simd schedule(static) if (out->numel >= APB_QUANT_PAR_MIN)
    for (int64_t i = 0; i < out->numel; i++)
        y[i] = apb_i8_codef(xd[i], r, lo, hi) * s;
    return APB_OK;
}

/* sum over n <= 256 elements of g * dq/ds (code - t inside [lo, hi], code
 * outside; NaN inputs code 0 as in apb_i8_code), in float. The selects are
 * written so that gcc if-converts them (t under a select of its own): with the
 * subtraction inside the select the loop stayed scalar. */
static float step_grad_block(const float *restrict xd, const float *restrict gy, int64_t n, float r,
                             float lo, float hi)
{
    float fs = 0.0f;
#pragma omp simd reduction(+ : fs)
    for (int64_t i = 0; i < n; i++) {
        float t = xd[i] * r, u = t > lo ? t : lo;
        u = u < hi ? u : hi; /* t clamped (NaN: lo), so t inside iff u == t */
        float m = u == t ? t : 0.0f;
        fs += gy[i] * (apb_i8_codef(xd[i], r, lo, hi) - m);
    }
    return fs;
}

static void act_int8_backward(apb_graph *g, apb_var *out)
{
    const apb_act_int8_attr *a = out->attr;
    apb_var *x = out->in[0], *sv = out->in[1];
    float s = sv->data[0], r = 1.0f / s;
    float lo = a->is_signed ? -128.0f : 0.0f, hi = a->is_signed ? 127.0f : 255.0f;
    int64_t n = x->numel, chunk = (n + APB_I8_CHUNKS - 1) / APB_I8_CHUNKS;
    const float *xd = x->data, *gy = out->grad;
    float *dx = x->requires_grad ? x->grad : NULL;
    double part[APB_I8_CHUNKS];
#pragma omp parallel for schedule(static) if (n >= APB_QUANT_PAR_MIN)
    for (int c = 0; c < APB_I8_CHUNKS; c++) {
        double acc = 0;
        int64_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        /* branch-free so it vectorizes (code - t is exact in float: |t| <= 255,
         * code within 0.5 of t); g * dq/ds summed in float over fixed blocks of
         * 256, the blocks in double: the order depends on neither the thread
         * count nor the machine (layers/ is built for the baseline ISA) */
        if (dx) {
#pragma omp simd
            for (int64_t i = c * chunk; i < end; i++) {
                float t = xd[i] * r, u = t > lo ? t : lo;
                u = u < hi ? u : hi; /* t clamped (NaN: lo), so t inside iff u == t */
                float g = gy[i]; /* loaded unconditionally: no branch, it vectorizes */
                dx[i] += u == t ? g : 0.0f;
            }
        }
        for (int64_t b = c * chunk; b < end; b += 256)
            acc += step_grad_block(xd + b, gy + b, (b + 256 < end ? b + 256 : end) - b, r, lo, hi);
        part[c] = acc;
    }
    double sum = 0;
    for (int c = 0; c < APB_I8_CHUNKS; c++)
        sum += part[c];
    if (sv->requires_grad && n > 0)
        sv->grad[0] += (float)(sum / sqrt((double)n * hi));
}

const apb_op apb_op_act_int8 = {
    .name = "act_int8",
    .attr_size = sizeof(apb_act_int8_attr),
    .flags = APB_OP_STE,
    .shape = act_int8_shape,
    .forward = act_int8_forward,
    .backward = act_int8_backward,
};

apb_status apb_act_int8(apb_graph *g, apb_var *x, apb_var *s, int is_signed, apb_var **y)
{
    apb_act_int8_attr a = {is_signed != 0};
    return apb_apply(g, &apb_op_act_int8, (apb_var *[]){x, s}, 2, &a, y);
}
