/* model.c - architectures (convnet, vgg-small, resnet20, resnet18), forward pass
 * over the layer list, parameter enumeration and memory accounting.
 *
 * Activation placement: a layer whose input is quantized (binary or 2-bit) is
 * preceded by hardtanh instead of ReLU (sgn of a ReLU output would be constant),
 * and ResNets with quantized activations use a shortcut around every conv
 * (Bi-Real style): unit(x) = BN(conv(q(x))) + shortcut(x).
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *apb_wquant_name(apb_wquant q)
{
    switch (q) {
    case APB_WQ_FP: return "fp";
    case APB_WQ_APB: return "apb";
    case APB_WQ_BINARY: return "binary";
    case APB_WQ_Q2: return "q2";
    case APB_WQ_PRUNE: return "prune";
    }
    return "?";
}

const char *apb_aquant_name(apb_aquant q)
{
    switch (q) {
    case APB_AQ_FP: return "fp";
    case APB_AQ_BINARY: return "binary";
    case APB_AQ_Q2: return "q2";
    }
    return "?";
}

apb_status apb_wquant_parse(const char *s, apb_wquant *q, float *sparsity)
{
    if (!strcmp(s, "fp"))
        *q = APB_WQ_FP;
    else if (!strcmp(s, "apb"))
        *q = APB_WQ_APB;
    else if (!strcmp(s, "binary"))
        *q = APB_WQ_BINARY;
    else if (!strcmp(s, "q2"))
        *q = APB_WQ_Q2;
    else if (!strcmp(s, "prune")) /* as stored in checkpoints; the sparsity is a separate key */
        *q = APB_WQ_PRUNE;
    else if (!strncmp(s, "prune:", 6)) {
        char *end;
        double v = strtod(s + 6, &end);
        if (*end || end == s + 6 || !(v > 0 && v < 1))
            return apb_fail(APB_EINVAL, "--quant %s: sparsity must be a number in (0,1), e.g. prune:0.9", s);
        *q = APB_WQ_PRUNE;
        if (sparsity)
            *sparsity = (float)v;
    } else
        return apb_fail(APB_EINVAL, "unknown weight quantization '%s' (fp, apb, binary, q2, prune:S)", s);
    return APB_OK;
}

apb_status apb_aquant_parse(const char *s, apb_aquant *q)
{
    if (!strcmp(s, "fp"))
        *q = APB_AQ_FP;
    else if (!strcmp(s, "binary"))
        *q = APB_AQ_BINARY;
    else if (!strcmp(s, "q2"))
        *q = APB_AQ_Q2;
    else
        return apb_fail(APB_EINVAL, "unknown activation quantization '%s' (fp, binary, q2)", s);
    return APB_OK;
}

int apb_layer_compressed(const apb_layer *l)
{
    return (l->kind == APB_L_CONV || l->kind == APB_L_LINEAR) && l->wq != APB_WQ_FP;
}

/* ---- building ---------------------------------------------------------- */

typedef struct {
    apb_model *m;
    apb_rng rng;
    apb_status err;
    int counter[16];
} builder;

static apb_layer *push(builder *b, apb_layer_kind kind, int in, const char *prefix)
{
    apb_model *m = b->m;
    if (b->err)
        return NULL;
    if (m->nlayers == m->cap) {
        int nc = m->cap ? 2 * m->cap : 32;
        apb_layer *nl = realloc(m->layers, (size_t)nc * sizeof *nl);
        if (!nl) {
            b->err = apb_fail(APB_ENOMEM, "model: out of memory");
            return NULL;
        }
        m->layers = nl;
        m->cap = nc;
    }
    apb_layer *l = &m->layers[m->nlayers++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->in = in;
    l->out = m->nslots++;
    snprintf(l->name, sizeof l->name, "%s%d", prefix, ++b->counter[kind]);
    return l;
}

static int param(builder *b, apb_var *v, const char *lname, const char *what, int ndim, const int *dim)
{
    if (b->err)
        return 0;
    char *name = malloc(64);
    if (!name) {
        b->err = apb_fail(APB_ENOMEM, "model: out of memory");
        return 0;
    }
    snprintf(name, 64, "%s.%s", lname, what);
    apb_status s = apb_param_init(v, name, ndim, dim);
    if (s) {
        free(name);
        b->err = s;
        return 0;
    }
    return 1;
}

/* quantizable: the layer takes part in weight/activation quantization. */
static int conv(builder *b, int in, int cin, int cout, int k, int stride, int pad, int quantizable,
                int quant_input, int bias)
{
    apb_layer *l = push(b, APB_L_CONV, in, "conv");
    if (!l)
        return 0;
    const apb_model_cfg *c = &b->m->cfg;
    l->cin = cin;
    l->cout = cout;
    l->k = k;
    l->stride = stride;
    l->pad = pad;
    l->wq = quantizable ? c->wq : APB_WQ_FP;
    l->aq = quantizable && quant_input ? c->aq : APB_AQ_FP;
    l->has_bias = bias;
    if (!param(b, &l->w, l->name, "weight", 4, (int[]){cout, cin, k, k}))
        return 0;
    float sd = sqrtf(2.0f / (float)(cin * k * k));
    for (int64_t i = 0; i < l->w.numel; i++)
        l->w.data[i] = sd * apb_rng_normal(&b->rng);
    if (bias && !param(b, &l->b, l->name, "bias", 1, (int[]){cout}))
        return 0;
    return l->out;
}

static int linear(builder *b, int in, int cin, int cout, int quantizable, int bias)
{
    apb_layer *l = push(b, APB_L_LINEAR, in, "fc");
    if (!l)
        return 0;
    const apb_model_cfg *c = &b->m->cfg;
    l->cin = cin;
    l->cout = cout;
    l->k = 1;
    l->stride = 1;
    l->wq = quantizable ? c->wq : APB_WQ_FP;
    l->aq = quantizable ? c->aq : APB_AQ_FP;
    l->has_bias = bias;
    if (!param(b, &l->w, l->name, "weight", 2, (int[]){cout, cin}))
        return 0;
    float sd = sqrtf(2.0f / (float)cin);
    for (int64_t i = 0; i < l->w.numel; i++)
        l->w.data[i] = sd * apb_rng_normal(&b->rng);
    if (bias && !param(b, &l->b, l->name, "bias", 1, (int[]){cout}))
        return 0;
    return l->out;
}

static int bn(builder *b, int in, int channels)
{
    apb_layer *l = push(b, APB_L_BN, in, "bn");
    if (!l)
        return 0;
    l->channels = channels;
    if (!param(b, &l->gamma, l->name, "weight", 1, (int[]){channels}) ||
        !param(b, &l->beta, l->name, "bias", 1, (int[]){channels}))
        return 0;
    for (int i = 0; i < channels; i++)
        l->gamma.data[i] = 1.0f;
    l->rmean = calloc((size_t)channels, sizeof(float));
    l->rvar = malloc((size_t)channels * sizeof(float));
    if (!l->rmean || !l->rvar) {
        b->err = apb_fail(APB_ENOMEM, "model: out of memory");
        return 0;
    }
    for (int i = 0; i < channels; i++)
        l->rvar[i] = 1.0f;
    return l->out;
}

static int simple(builder *b, apb_layer_kind kind, int in, const char *prefix)
{
    apb_layer *l = push(b, kind, in, prefix);
    return l ? l->out : 0;
}

static int pool(builder *b, apb_layer_kind kind, int in, int k, int stride, int pad)
{
    apb_layer *l = push(b, kind, in, kind == APB_L_MAXPOOL ? "maxpool" : "avgpool");
    if (!l)
        return 0;
    l->pk = k;
    l->pstride = stride;
    l->ppad = pad;
    return l->out;
}

static int add(builder *b, int x, int y)
{
    apb_layer *l = push(b, APB_L_ADD, x, "add");
    if (!l)
        return 0;
    l->in2 = y;
    return l->out;
}

/* Non-linearity before a layer whose input may be quantized. */
static int act(builder *b, int in, int next_quantizes)
{
    if (next_quantizes && b->m->cfg.aq != APB_AQ_FP)
        return simple(b, APB_L_HARDTANH, in, "hardtanh");
    return simple(b, APB_L_RELU, in, "relu");
}

static void build_convnet(builder *b)
{
    const apb_model_cfg *c = &b->m->cfg;
    int x = conv(b, 0, c->in_c, 32, 3, 1, 1, c->quant_first, c->quant_first, 0);
    x = bn(b, x, 32);
    x = act(b, x, 1);
    x = pool(b, APB_L_MAXPOOL, x, 2, 2, 0);
    x = conv(b, x, 32, 64, 3, 1, 1, 1, 1, 0);
    x = bn(b, x, 64);
    x = act(b, x, 1);
    x = pool(b, APB_L_MAXPOOL, x, 2, 2, 0);
    x = simple(b, APB_L_FLATTEN, x, "flatten");
    x = linear(b, x, 64 * (c->in_h / 4) * (c->in_w / 4), 256, 1, 0);
    x = bn(b, x, 256);
    x = act(b, x, c->quant_last);
    b->m->out_slot = linear(b, x, 256, c->num_classes, c->quant_last, 1);
}

static void build_vgg_small(builder *b)
{
    const apb_model_cfg *c = &b->m->cfg;
    static const int ch[6] = {128, 128, 256, 256, 512, 512};
    int x = 0, cin = c->in_c, h = c->in_h, w = c->in_w;
    for (int i = 0; i < 6; i++) {
        int first = i == 0;
        x = conv(b, x, cin, ch[i], 3, 1, 1, first ? c->quant_first : 1, first ? c->quant_first : 1, 0);
        x = bn(b, x, ch[i]);
        if (i % 2 == 1) {
            x = pool(b, APB_L_MAXPOOL, x, 2, 2, 0);
            h /= 2;
            w /= 2;
        }
        x = act(b, x, i < 5 || c->quant_last);
        cin = ch[i];
    }
    x = simple(b, APB_L_FLATTEN, x, "flatten");
    b->m->out_slot = linear(b, x, 512 * h * w, c->num_classes, c->quant_last, 1);
}

/* Standard basic block (fp activations). */
static int basic_block(builder *b, int x, int cin, int cout, int stride)
{
    const apb_model_cfg *c = &b->m->cfg;
    int h = conv(b, x, cin, cout, 3, stride, 1, 1, 1, 0);
    h = bn(b, h, cout);
    h = act(b, h, 1);
    h = conv(b, h, cout, cout, 3, 1, 1, 1, 1, 0);
    h = bn(b, h, cout);
    int sc = x;
    if (stride != 1 || cin != cout) {
        sc = conv(b, x, cin, cout, 1, stride, 0, !c->fp_shortcut, 0, 0);
        sc = bn(b, sc, cout);
    }
    return act(b, add(b, h, sc), 1);
}

/* Bi-Real unit for quantized activations: BN(conv(q(x))) + shortcut(x).
 * in_h x in_w is the unit's input size. The downsampling shortcut is a 2x2/2
 * average pool + 1x1 conv, which halves an odd side rounding down while the
 * 3x3/2 pad-1 conv rounds up (7 -> 3 vs 4: ResNet-18 at 112x112); an odd input
 * therefore gets a 1x1 stride-2 conv shortcut, which rounds up like the conv. */
static int bireal_unit(builder *b, int x, int cin, int cout, int stride, int in_h, int in_w)
{
    const apb_model_cfg *c = &b->m->cfg;
    int h = conv(b, x, cin, cout, 3, stride, 1, 1, 1, 0);
    h = bn(b, h, cout);
    int sc = x;
    if (stride != 1 || cin != cout) {
        int sstride = 1;
        if (stride != 1 && (in_h % stride == 0 && in_w % stride == 0))
            sc = pool(b, APB_L_AVGPOOL, sc, stride, stride, 0);
        else
            sstride = stride;
        sc = conv(b, sc, cin, cout, 1, sstride, 0, !c->fp_shortcut, 0, 0);
        sc = bn(b, sc, cout);
    }
    return add(b, h, sc);
}

/* *hh x *ww: the block's input size on entry, its output size on return. */
static int res_block(builder *b, int x, int cin, int cout, int stride, int *hh, int *ww)
{
    int ih = *hh, iw = *ww;
    *hh = (ih - 1) / stride + 1; /* 3x3, pad 1 */
    *ww = (iw - 1) / stride + 1;
    if (b->m->cfg.aq == APB_AQ_FP)
        return basic_block(b, x, cin, cout, stride);
    x = bireal_unit(b, x, cin, cout, stride, ih, iw);
    return bireal_unit(b, x, cout, cout, 1, *hh, *ww);
}

static void build_resnet(builder *b, int depth18)
{
    const apb_model_cfg *c = &b->m->cfg;
    int x, cin;
    static const int ch20[3] = {16, 32, 64}, ch18[4] = {64, 128, 256, 512};
    const int *ch = depth18 ? ch18 : ch20;
    int nstage = depth18 ? 4 : 3, nblock = depth18 ? 2 : 3;
    int hh = c->in_h, ww = c->in_w;
    if (depth18 && c->in_h >= 112) {
        x = conv(b, 0, c->in_c, 64, 7, 2, 3, c->quant_first, c->quant_first, 0);
        x = bn(b, x, 64);
        x = act(b, x, 0);
        x = pool(b, APB_L_MAXPOOL, x, 3, 2, 1);
        hh = ((hh + 6 - 7) / 2 + 1 + 2 - 3) / 2 + 1;
        ww = ((ww + 6 - 7) / 2 + 1 + 2 - 3) / 2 + 1;
    } else {
        x = conv(b, 0, c->in_c, ch[0], 3, 1, 1, c->quant_first, c->quant_first, 0);
        x = bn(b, x, ch[0]);
        x = act(b, x, 0);
    }
    cin = ch[0];
    for (int s = 0; s < nstage; s++)
        for (int k = 0; k < nblock; k++) {
            int stride = (s > 0 && k == 0) ? 2 : 1;
            x = res_block(b, x, cin, ch[s], stride, &hh, &ww);
            cin = ch[s];
        }
    if (c->aq != APB_AQ_FP)
        x = act(b, x, 0);
    x = simple(b, APB_L_GAP, x, "gap");
    b->m->out_slot = linear(b, x, cin, c->num_classes, c->quant_last, 1);
}

apb_status apb_model_build(const apb_model_cfg *cfg, uint64_t seed, apb_model **out)
{
    *out = NULL;
    apb_model *m = calloc(1, sizeof *m);
    if (!m)
        return apb_fail(APB_ENOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->nslots = 1;
    builder b = {.m = m};
    apb_rng_seed(&b.rng, seed);
    const char *a = cfg->arch;
    if (cfg->in_c <= 0 || cfg->in_h <= 0 || cfg->in_w <= 0 || cfg->num_classes <= 1) {
        free(m);
        return apb_fail(APB_EINVAL, "model %s: bad input geometry %dx%dx%d or %d classes", a,
                        cfg->in_c, cfg->in_h, cfg->in_w, cfg->num_classes);
    }
    if (!strcmp(a, "convnet")) {
        if (cfg->in_h % 4 || cfg->in_w % 4)
            b.err = apb_fail(APB_EINVAL, "convnet needs input sides divisible by 4, got %dx%d", cfg->in_h, cfg->in_w);
        else
            build_convnet(&b);
    } else if (!strcmp(a, "vgg-small")) {
        if (cfg->in_h % 8 || cfg->in_w % 8)
            b.err = apb_fail(APB_EINVAL, "vgg-small needs input sides divisible by 8, got %dx%d", cfg->in_h, cfg->in_w);
        else
            build_vgg_small(&b);
    } else if (!strcmp(a, "resnet20"))
        build_resnet(&b, 0);
    else if (!strcmp(a, "resnet18"))
        build_resnet(&b, 1);
    else
        b.err = apb_fail(APB_EINVAL, "unknown model '%s' (convnet, vgg-small, resnet20, resnet18)", a);
    if (b.err) {
        apb_model_free(m);
        return b.err;
    }
    b.err = apb_model_init_quant(m);
    if (b.err) {
        apb_model_free(m);
        return b.err;
    }
    *out = m;
    return APB_OK;
}

static void free_param(apb_var *v)
{
    if (v->data) {
        free((char *)v->name);
        apb_param_free(v);
    }
}

void apb_model_free(apb_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        free_param(&l->w);
        free_param(&l->b);
        free_param(&l->alpha);
        free_param(&l->delta);
        free_param(&l->wstep);
        free_param(&l->astep);
        free_param(&l->gamma);
        free_param(&l->beta);
        free(l->mask);
        free(l->rmean);
        free(l->rvar);
    }
    free(m->layers);
    free(m);
}

/* A scalar/vector quantizer parameter "<layer>.<what>", allocated on first use. */
static apb_status quant_param(apb_layer *l, apb_var *v, const char *what, int n)
{
    if (v->data)
        return APB_OK;
    char *name = malloc(64);
    if (!name)
        return apb_fail(APB_ENOMEM, "%s.%s: out of memory", l->name, what);
    snprintf(name, 64, "%s.%s", l->name, what);
    apb_status s = apb_param_init(v, name, 1, (int[]){n});
    if (s)
        free(name);
    return s;
}

/* Quantizer parameters are (re)initialised from the weights; allocated on first use. */
apb_status apb_model_init_quant(apb_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        if (l->kind != APB_L_CONV && l->kind != APB_L_LINEAR)
            continue;
        if (l->wq == APB_WQ_APB) {
            int na = m->cfg.per_channel ? l->cout : 1;
            APB_TRY(quant_param(l, &l->alpha, "alpha", na));
            APB_TRY(quant_param(l, &l->delta, "delta", na));
            apb_apb_init(l->w.data, l->w.numel, na, l->alpha.data, l->delta.data);
        } else if (l->wq == APB_WQ_Q2) {
            APB_TRY(quant_param(l, &l->wstep, "wstep", 1));
            l->wstep.data[0] = apb_q2_init_step(l->w.data, l->w.numel);
        } else if (l->wq == APB_WQ_PRUNE) {
            if (!l->mask && !(l->mask = malloc((size_t)l->w.numel * sizeof(float))))
                return apb_fail(APB_ENOMEM, "%s.mask: out of memory (%lld floats)", l->name,
                                (long long)l->w.numel);
            for (int64_t j = 0; j < l->w.numel; j++)
                l->mask[j] = 1.0f;
        }
        if (l->aq == APB_AQ_Q2) {
            APB_TRY(quant_param(l, &l->astep, "astep", 1));
            /* Inputs of quantized layers come through hardtanh (|x| <= 1):
             * a step of 0.5 puts the four levels at +-0.25, +-0.75. */
            l->astep.data[0] = 0.5f;
        }
    }
    return APB_OK;
}

int apb_model_params(apb_model *m, apb_param_ref *out, int max)
{
    int n = 0;
#define ADD(v, role)                                                  \
    do {                                                              \
        if ((v).data) {                                               \
            if (n < max)                                              \
                out[n] = (apb_param_ref){&(v), role, l};              \
            n++;                                                      \
        }                                                             \
    } while (0)
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        ADD(l->w, APB_P_WEIGHT);
        ADD(l->b, APB_P_NODECAY);
        ADD(l->gamma, APB_P_NODECAY);
        ADD(l->beta, APB_P_NODECAY);
        ADD(l->alpha, APB_P_QUANT);
        ADD(l->delta, APB_P_QUANT);
        ADD(l->wstep, APB_P_QUANT);
        ADD(l->astep, APB_P_QUANT);
    }
#undef ADD
    return n;
}

/* ---- forward ----------------------------------------------------------- */

static apb_status quant_weight(apb_model *m, apb_graph *g, apb_layer *l, apb_var **wq)
{
    apb_apb_cfg ac = {m->cfg.per_channel, m->cfg.direct_alpha_grad};
    switch (l->wq) {
    case APB_WQ_FP: *wq = &l->w; return APB_OK;
    case APB_WQ_APB: return apb_quant_apb(g, &l->w, &l->alpha, &l->delta, &ac, wq);
    case APB_WQ_BINARY: return apb_quant_binary(g, &l->w, m->cfg.per_channel, wq);
    case APB_WQ_Q2: return apb_quant_q2w(g, &l->w, &l->wstep, wq);
    case APB_WQ_PRUNE: return apb_quant_mask(g, &l->w, l->mask, wq);
    }
    return apb_fail(APB_EINVAL, "%s: bad weight quantizer", l->name);
}

static apb_status quant_input(apb_model *m, apb_graph *g, apb_layer *l, apb_var *x, apb_var **y)
{
    switch (l->aq) {
    case APB_AQ_FP: *y = x; return APB_OK;
    case APB_AQ_BINARY: return apb_act_sign(g, x, m->cfg.approx_sign, y);
    case APB_AQ_Q2: return apb_act_q2(g, x, &l->astep, y);
    }
    return apb_fail(APB_EINVAL, "%s: bad activation quantizer", l->name);
}

/* Number of references to `slot` by layers j0.. (an ADD reading it twice counts 2). */
static int slot_readers(const apb_model *m, int j0, int slot, int *first)
{
    int n = 0;
    for (int j = m->nlayers - 1; j >= j0; j--) {
        const apb_layer *o = &m->layers[j];
        int k = (o->in == slot) + (o->kind == APB_L_ADD && o->in2 == slot);
        if (k) {
            n += k;
            *first = j;
        }
    }
    return n;
}

/* How apb_model_forward runs BN layer i: FUSE_RELU when its output is read only
 * by layer i + 1, a ReLU; FUSE_ADD_RELU when it is read only by an ADD (layer
 * *add_at, the other operand another slot) whose output is read only by the
 * next layer, a ReLU: the BN is then deferred to the ADD and the three run as
 * one op. Slots are written by exactly one layer, so counting readers suffices. */
enum { FUSE_NONE, FUSE_RELU, FUSE_ADD_RELU };

static int bn_fusion(const apb_model *m, int i, int *add_at)
{
    const apb_layer *l = &m->layers[i];
    int j = -1, k = -1;
    if (m->unfused || l->kind != APB_L_BN || m->out_slot == l->out ||
        slot_readers(m, i + 1, l->out, &j) != 1)
        return FUSE_NONE;
    const apb_layer *o = &m->layers[j];
    if (o->kind == APB_L_RELU)
        return j == i + 1 ? FUSE_RELU : FUSE_NONE;
    if (o->kind != APB_L_ADD || j + 1 >= m->nlayers || m->out_slot == o->out ||
        slot_readers(m, j + 1, o->out, &k) != 1 || k != j + 1 ||
        m->layers[k].kind != APB_L_RELU || (o->in == l->out ? o->in2 : o->in) == l->in)
        return FUSE_NONE; /* (bn(x) + x: the residual must not be the BN's input) */
    *add_at = j;
    return FUSE_ADD_RELU;
}

static void bn_state(apb_layer *l)
{
    l->bn.running_mean = l->rmean;
    l->bn.running_var = l->rvar;
    l->bn.momentum = 0.1f;
    l->bn.eps = 1e-5f;
}

apb_status apb_model_forward(apb_model *m, apb_graph *g, float *x, int n, apb_var **logits)
{
    apb_var **slot = apb_graph_alloc(g, sizeof(apb_var *) * (size_t)m->nslots);
    if (!slot)
        return APB_ENOMEM;
    memset(slot, 0, sizeof(apb_var *) * (size_t)m->nslots);
    slot[0] = apb_graph_input(g, x, 4, (int[]){n, m->cfg.in_c, m->cfg.in_h, m->cfg.in_w});
    /* deferred[j]: the BN layer fused into ADD layer j (-1: none) */
    int *deferred = apb_graph_alloc(g, sizeof(int) * (size_t)(m->nlayers + 1));
    if (!slot[0] || !deferred)
        return APB_ENOMEM;
    for (int i = 0; i < m->nlayers; i++)
        deferred[i] = -1;
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        apb_var *in = slot[l->in], *y = NULL, *wq, *xq;
        apb_status s = APB_OK;
        switch (l->kind) {
        case APB_L_CONV:
        case APB_L_LINEAR:
            s = quant_weight(m, g, l, &wq);
            if (!s)
                s = quant_input(m, g, l, in, &xq);
            if (!s)
                s = l->kind == APB_L_CONV
                        ? apb_conv2d(g, xq, wq, l->has_bias ? &l->b : NULL, l->stride, l->pad, &y)
                        : apb_linear(g, xq, wq, l->has_bias ? &l->b : NULL, &y);
            break;
        case APB_L_BN: {
            int at = -1, f = bn_fusion(m, i, &at);
            bn_state(l);
            if (f == FUSE_ADD_RELU && deferred[at] < 0) {
                deferred[at] = i; /* runs at the ADD, once its other operand exists */
                continue;
            }
            if (f == FUSE_RELU) {
                s = apb_bn_relu(g, in, &l->gamma, &l->beta, &l->bn, &y);
                if (s)
                    return apb_fail_context(s, "layers %s + %s (fused)", l->name,
                                            m->layers[i + 1].name);
                slot[l->out] = y; /* read only by the ReLU (bn_fusion) */
                l = &m->layers[++i];
            } else {
                s = apb_batchnorm(g, in, &l->gamma, &l->beta, &l->bn, &y);
            }
            break;
        }
        case APB_L_RELU: s = apb_relu(g, in, &y); break;
        case APB_L_HARDTANH: s = apb_hardtanh(g, in, &y); break;
        case APB_L_MAXPOOL: s = apb_maxpool2d(g, in, l->pk, l->pstride, l->ppad, &y); break;
        case APB_L_AVGPOOL: s = apb_avgpool2d(g, in, l->pk, l->pstride, l->ppad, &y); break;
        case APB_L_GAP: s = apb_global_avgpool(g, in, &y); break;
        case APB_L_FLATTEN: s = apb_flatten(g, in, &y); break;
        case APB_L_ADD:
            if (deferred[i] >= 0) {
                apb_layer *b = &m->layers[deferred[i]];
                apb_var *r = slot[l->in == b->out ? l->in2 : l->in];
                s = apb_bn_add_relu(g, slot[b->in], &b->gamma, &b->beta, r, &b->bn, &y);
                if (s)
                    return apb_fail_context(s, "layers %s + %s + %s (fused)", b->name, l->name,
                                            m->layers[i + 1].name);
                slot[l->out] = y; /* read only by the ReLU (bn_fusion) */
                l = &m->layers[++i];
            } else {
                s = apb_add(g, in, slot[l->in2], &y);
            }
            break;
        case APB_L_DROPOUT: s = apb_dropout(g, in, l->p, &y); break;
        }
        if (s)
            return apb_fail_context(s, "layer %s", l->name);
        slot[l->out] = y;
    }
    *logits = slot[m->out_slot];
    return APB_OK;
}

apb_status apb_layer_effective_weight(apb_layer *l, const apb_model_cfg *cfg, float *out)
{
    apb_arena a;
    apb_arena_init(&a, "scratch", (size_t)l->w.numel * 8 + 4096);
    apb_graph g;
    apb_graph_init(&g, &a, 0, 0, NULL);
    apb_model tmp = {.cfg = *cfg};
    apb_var *q;
    apb_status s = quant_weight(&tmp, &g, l, &q);
    if (!s)
        memcpy(out, q->data, sizeof(float) * (size_t)l->w.numel);
    apb_graph_free(&g);
    apb_arena_free(&a);
    return s;
}

/* ---- memory accounting (apb-method.md section 4) ----------------------- */

void apb_model_memory_stats(const apb_model *m, apb_model_memory *mem, double *layer_bits,
                            int64_t *layer_fp)
{
    memset(mem, 0, sizeof *mem);
    int64_t largest = 1;
    for (int i = 0; i < m->nlayers; i++) {
        const apb_layer *l = &m->layers[i];
        if (apb_layer_compressed(l) && l->w.numel > largest)
            largest = l->w.numel;
    }
    int ib = 0;
    while (((int64_t)1 << ib) <= largest)
        ib++; /* floor(log2(largest)) + 1 */
    mem->index_bits = ib;
    for (int i = 0; i < m->nlayers; i++) {
        const apb_layer *l = &m->layers[i];
        double bits = 0;
        int64_t fp = 0;
        if (l->kind == APB_L_CONV || l->kind == APB_L_LINEAR) {
            int64_t n = l->w.numel;
            mem->weights += n;
            switch (l->wq) {
            case APB_WQ_FP: bits = 32.0 * n; break;
            case APB_WQ_APB:
                fp = apb_apb_count_fp(l->w.data, n, (int)l->alpha.numel, l->alpha.data, l->delta.data);
                bits = (double)n + (double)fp * (32 + ib) + 64.0 * (double)l->alpha.numel;
                break;
            case APB_WQ_BINARY: bits = (double)n + 32.0; break;
            case APB_WQ_Q2: bits = 2.0 * n + 32.0; break;
            case APB_WQ_PRUNE: {
                for (int64_t j = 0; j < n; j++)
                    fp += l->mask[j] != 0;
                bits = (double)fp * (32 + ib);
                break;
            }
            }
            if (l->has_bias)
                bits += 32.0 * l->cout;
            if (l->aq == APB_AQ_Q2)
                bits += 32;
            if (apb_layer_compressed(l)) {
                mem->cweights += n;
                mem->fp_count += fp;
                mem->cbits += bits - (l->has_bias ? 32.0 * l->cout : 0);
            }
        } else if (l->kind == APB_L_BN) {
            bits = 32.0 * 4 * l->channels; /* gamma, beta, running mean and variance */
        }
        mem->bits += bits;
        if (layer_bits)
            layer_bits[i] = bits;
        if (layer_fp)
            layer_fp[i] = fp;
    }
    mem->bits_per_weight = mem->cweights ? mem->cbits / (double)mem->cweights : 0;
    mem->fp_fraction = mem->cweights ? (double)mem->fp_count / (double)mem->cweights : 0;
}
