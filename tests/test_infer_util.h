/* test_infer_util.h - builders for random inference models and a naive float
 * reference forward pass, shared by the runtime tests (tests/test_infer*.c).
 *
 * The reference follows the documented semantics literally: per-sample loops,
 * activations quantized with the formulas of apbrt_model.h, zero padding of the
 * quantized input, double accumulation of Q * act(x). It shares no code with
 * the runtime.
 */
#ifndef APB_TEST_INFER_UTIL_H
#define APB_TEST_INFER_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"
#include "apbrt_model.h"
#include "i8gemm.h"
#include "rng.h"

#define TI_MAXL 32

/* A description plus the storage its pointers refer to. */
typedef struct {
    apbrt_model_desc d;
    apbrt_layer_desc L[TI_MAXL];
    float *bufs[4 * TI_MAXL];
    int nbufs;
    const char *names[16];
} ti_model;

static inline float ti_unif(apb_rng *r) { return (float)(apb_rng_uniform(r) * 2.0 - 1.0); }

static inline float *ti_alloc(ti_model *t, long n)
{
    float *p = calloc((size_t)(n ? n : 1), sizeof(float));
    t->bufs[t->nbufs++] = p;
    return p;
}

static inline void ti_free(ti_model *t)
{
    for (int i = 0; i < t->nbufs; i++)
        free(t->bufs[i]);
    t->nbufs = 0;
}

static inline void ti_init(ti_model *t, int c, int h, int w, int classes, int nslots)
{
    memset(t, 0, sizeof *t);
    static const char *nm[] = {"airplane", "auto", "bird", "cat", "deer", "dog", "frog", "horse",
                               "ship", "truck", "c10", "c11", "c12", "c13", "c14", "c15"};
    t->d.in_c = c, t->d.in_h = h, t->d.in_w = w;
    for (int k = 0; k < 3; k++)
        t->d.mean[k] = 0.5f, t->d.std[k] = 0.25f;
    t->d.num_classes = classes;
    t->d.class_names = classes <= 16 ? nm : NULL;
    t->d.nslots = nslots;
    t->d.layers = t->L;
    t->d.model_name = "testnet";
}

static inline apbrt_layer_desc *ti_add(ti_model *t, int kind, int in, int out)
{
    apbrt_layer_desc *L = &t->L[t->d.nlayers++];
    memset(L, 0, sizeof *L);
    L->kind = kind, L->in = in, L->out = out;
    return L;
}

/* Conv/linear with random effective weights of the given kind. APB: a per-layer
 * alpha (repeated per row) when per_row == 0, ~frac_fp of the weights outliers. */
static inline apbrt_layer_desc *ti_conv(ti_model *t, apb_rng *r, int kind, int in, int out, int cin,
                                 int cout, int k, int stride, int pad, int wkind, int akind,
                                 int bias, float frac_fp)
{
    apbrt_layer_desc *L = ti_add(t, kind, in, out);
    L->cin = cin, L->cout = cout, L->kh = L->kw = k, L->stride = stride, L->pad = pad;
    L->wkind = wkind, L->akind = akind;
    L->act_step = 0.5f;
    long K = (long)cin * k * k;
    float *w = ti_alloc(t, cout * K);
    float sc = 1.0f / sqrtf((float)K);
    if (wkind == APBRT_W_FP32) {
        for (long i = 0; i < cout * K; i++)
            w[i] = sc * ti_unif(r);
    } else if (wkind == APBRT_W_APB) {
        float *al = ti_alloc(t, cout);
        float a0 = 0.7f * sc;
        for (int m = 0; m < cout; m++) {
            al[m] = a0;
            for (long j = 0; j < K; j++) {
                float u = (float)apb_rng_uniform(r);
                w[m * K + j] = u < frac_fp ? 3.0f * sc * ti_unif(r)
                                           : (ti_unif(r) < 0.0f ? -a0 : a0);
            }
        }
        L->alpha = al;
        L->compression = APBRT_C_APB, L->scales = 1;
    } else {
        L->compression = APBRT_C_Q2;
        L->wstep = 0.5f * sc;
        for (long i = 0; i < cout * K; i++)
            w[i] = ((float)(apb_rng_next(r) % 4) - 1.5f) * L->wstep;
    }
    L->weight = w;
    if (bias) {
        float *b = ti_alloc(t, cout);
        for (int m = 0; m < cout; m++)
            b[m] = 0.1f * ti_unif(r);
        L->bias = b;
    }
    return L;
}

static inline apbrt_layer_desc *ti_bn(ti_model *t, apb_rng *r, int in, int out, int ch)
{
    apbrt_layer_desc *L = ti_add(t, APBRT_BN, in, out);
    float *s = ti_alloc(t, ch), *h = ti_alloc(t, ch);
    for (int c = 0; c < ch; c++)
        s[c] = 0.5f + 0.5f * (float)apb_rng_uniform(r), h[c] = 0.2f * ti_unif(r);
    L->scale = s, L->shift = h, L->channels = ch;
    return L;
}

static inline float ti_q(float x, int akind, float s)
{
    if (akind == APBRT_A_BIN)
        return x >= 0.0f ? 1.0f : -1.0f;
    if (akind == APBRT_A_Q2) {
        float l = floorf(x / s) + 2.0f;
        l = l < 0 ? 0 : (l > 3 ? 3 : l);
        return (l - 1.5f) * s;
    }
    if (akind == APBRT_A_U8 || akind == APBRT_A_S8)
        return (float)apb_i8_code(x, 1.0f / s, akind == APBRT_A_S8) * s;
    return x;
}

/* Naive forward of one sample; returns 0, logits [num_classes]. */
static inline void ti_reference(const apbrt_model_desc *d, const float *x, float *logits)
{
    int ns = d->nslots;
    float *S[64];
    int sc[64], sh[64], sw[64];
    for (int s = 0; s < ns; s++)
        S[s] = NULL;
    long n0 = (long)d->in_c * d->in_h * d->in_w;
    S[0] = malloc(n0 * sizeof(float));
    memcpy(S[0], x, n0 * sizeof(float));
    sc[0] = d->in_c, sh[0] = d->in_h, sw[0] = d->in_w;
    for (int i = 0; i < d->nlayers; i++) {
        const apbrt_layer_desc *L = &d->layers[i];
        const float *a = S[L->in];
        int C = sc[L->in], H = sh[L->in], W = sw[L->in], OC = C, OH = H, OW = W;
        float *y = NULL;
        switch (L->kind) {
        case APBRT_CONV:
        case APBRT_LINEAR: {
            int kh = L->kind == APBRT_CONV ? L->kh : 1, kw = kh;
            int st = L->kind == APBRT_CONV ? L->stride : 1, pd = L->kind == APBRT_CONV ? L->pad : 0;
            int cin = L->cin;
            if (L->kind == APBRT_LINEAR)
                H = W = 1;
            OC = L->cout;
            OH = (H + 2 * pd - kh) / st + 1, OW = (W + 2 * pd - kw) / st + 1;
            y = malloc((size_t)OC * OH * OW * sizeof(float));
            for (int m = 0; m < OC; m++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) {
                        double acc = 0;
                        for (int c = 0; c < cin; c++)
                            for (int p = 0; p < kh; p++)
                                for (int q = 0; q < kw; q++) {
                                    int ih = oh * st - pd + p, iw = ow * st - pd + q;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                        continue;
                                    float v = ti_q(a[((long)c * H + ih) * W + iw], L->akind, L->act_step);
                                    acc += (double)L->weight[(long)m * cin * kh * kw + (c * kh + p) * kw + q] * v;
                                }
                        float o = (float)acc;
                        if (L->bias)
                            o += L->bias[m];
                        y[((long)m * OH + oh) * OW + ow] = o;
                    }
            break;
        }
        case APBRT_BN:
            y = malloc((size_t)C * H * W * sizeof(float));
            for (long c = 0; c < C; c++)
                for (long j = 0; j < (long)H * W; j++)
                    y[c * H * W + j] = L->scale[c] * a[c * H * W + j] + L->shift[c];
            break;
        case APBRT_RELU:
        case APBRT_HARDTANH:
        case APBRT_CLIP:
        case APBRT_ADD:
            y = malloc((size_t)C * H * W * sizeof(float));
            for (long j = 0; j < (long)C * H * W; j++) {
                float v = a[j];
                if (L->kind == APBRT_RELU)
                    v = v > 0 ? v : 0;
                else if (L->kind == APBRT_HARDTANH)
                    v = v < -1 ? -1 : (v > 1 ? 1 : v);
                else if (L->kind == APBRT_CLIP)
                    v = v < L->lo ? L->lo : (v > L->hi ? L->hi : v);
                else
                    v = v + S[L->in2][j];
                y[j] = v;
            }
            break;
        case APBRT_MAXPOOL:
        case APBRT_AVGPOOL:
            OH = (H + 2 * L->ppad - L->k) / L->pstride + 1;
            OW = (W + 2 * L->ppad - L->k) / L->pstride + 1;
            y = malloc((size_t)C * OH * OW * sizeof(float));
            for (int c = 0; c < C; c++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) {
                        double acc = L->kind == APBRT_MAXPOOL ? -INFINITY : 0;
                        for (int p = 0; p < L->k; p++)
                            for (int q = 0; q < L->k; q++) {
                                int ih = oh * L->pstride - L->ppad + p, iw = ow * L->pstride - L->ppad + q;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                double v = a[((long)c * H + ih) * W + iw];
                                acc = L->kind == APBRT_MAXPOOL ? (v > acc ? v : acc) : acc + v;
                            }
                        if (L->kind == APBRT_AVGPOOL)
                            acc /= L->k * L->k;
                        y[((long)c * OH + oh) * OW + ow] = (float)acc;
                    }
            break;
        case APBRT_GAP:
            OH = OW = 1;
            y = malloc((size_t)C * sizeof(float));
            for (int c = 0; c < C; c++) {
                double acc = 0;
                for (long j = 0; j < (long)H * W; j++)
                    acc += a[(long)c * H * W + j];
                y[c] = (float)(acc / (H * W));
            }
            break;
        case APBRT_FLATTEN:
            OC = C * H * W, OH = OW = 1;
            y = malloc((size_t)OC * sizeof(float));
            memcpy(y, a, (size_t)OC * sizeof(float));
            break;
        }
        free(S[L->out]);
        S[L->out] = y;
        sc[L->out] = OC, sh[L->out] = OH, sw[L->out] = OW;
    }
    memcpy(logits, S[d->output_slot], (size_t)d->num_classes * sizeof(float));
    for (int s = 0; s < ns; s++)
        free(S[s]);
}

/* ti_reference of n samples, x's one after another (the model's input size
 * apart), their outputs out floats apart in want. */
static inline void ti_reference_batch(const apbrt_model_desc *d, const float *x, int n, float *want,
                                      long out)
{
    long in = (long)d->in_c * d->in_h * d->in_w;
    for (int b = 0; b < n; b++)
        ti_reference(d, x + b * in, want + b * out);
}

static inline void ti_input(apb_rng *r, float *x, long n)
{
    for (long i = 0; i < n; i++)
        x[i] = 2.0f * ti_unif(r);
}

/* max |a-b| / max(1e-6, max |b|) */
static inline double ti_relerr(const float *a, const float *b, long n)
{
    double e = 0, s = 1e-6;
    for (long i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return e / s;
}

/* The convnet-like model of the issue: conv(fp) -> BN -> relu -> maxpool ->
 * conv(APB, binary act, pad 1) -> BN -> conv(APB, 2-bit act, stride 2, pad 1),
 * a 1x1 stride-2 fp shortcut, residual ADD -> GAP -> linear(fp). */
static inline void ti_convnet(ti_model *t, apb_rng *r, int C, int HW, int classes)
{
    ti_init(t, C, HW, HW, classes, 10);
    ti_conv(t, r, APBRT_CONV, 0, 1, C, 8, 3, 1, 1, APBRT_W_FP32, APBRT_A_FP, 1, 0);
    ti_bn(t, r, 1, 2, 8);
    ti_add(t, APBRT_RELU, 2, 2);
    apbrt_layer_desc *p = ti_add(t, APBRT_MAXPOOL, 2, 3);
    p->k = 2, p->pstride = 2;
    ti_conv(t, r, APBRT_CONV, 3, 4, 8, 16, 3, 1, 1, APBRT_W_APB, APBRT_A_BIN, 0, 0.1f);
    ti_bn(t, r, 4, 4, 16);
    ti_conv(t, r, APBRT_CONV, 4, 5, 16, 16, 3, 2, 1, APBRT_W_APB, APBRT_A_Q2, 0, 0.05f);
    ti_conv(t, r, APBRT_CONV, 3, 6, 8, 16, 1, 2, 0, APBRT_W_FP32, APBRT_A_FP, 0, 0);
    apbrt_layer_desc *a = ti_add(t, APBRT_ADD, 5, 7);
    a->in2 = 6;
    ti_add(t, APBRT_GAP, 7, 8);
    ti_conv(t, r, APBRT_LINEAR, 8, 9, 16, classes, 1, 1, 0, APBRT_W_FP32, APBRT_A_FP, 1, 0);
    t->d.output_slot = 9;
}

#endif
