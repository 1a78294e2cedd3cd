/* builder.c - the layer-list builder behind every model (see builder.h). */
#include "builder.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

apb_status apb_builder_begin(apb_builder *b, const apb_model_cfg *cfg, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    if (cfg->in_c <= 0 || cfg->in_h <= 0 || cfg->in_w <= 0 || cfg->num_classes <= 1)
        return b->err = apb_fail(APB_EINVAL, "model %s: bad input geometry %dx%dx%d or %d classes",
                                 cfg->arch, cfg->in_c, cfg->in_h, cfg->in_w, cfg->num_classes);
    if (!(b->m = calloc(1, sizeof *b->m)))
        return b->err = apb_fail(APB_ENOMEM, "model: out of memory");
    b->m->cfg = *cfg;
    b->m->nslots = 1;
    apb_rng_seed(&b->rng, seed);
    return APB_OK;
}

apb_status apb_builder_error(apb_builder *b, apb_status s)
{
    if (!b->err)
        b->err = s;
    return b->err;
}

void apb_builder_scope(apb_builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->scope, sizeof b->scope, fmt, ap);
    va_end(ap);
}

apb_status apb_builder_finish(apb_builder *b, int out_slot, apb_model **out)
{
    *out = NULL;
    if (!b->err) {
        b->m->out_slot = out_slot;
        b->err = apb_model_init_quant(b->m);
    }
    if (b->err) {
        apb_model_free(b->m);
        b->m = NULL;
        return b->err;
    }
    *out = b->m;
    b->m = NULL;
    return APB_OK;
}

/* Appends a layer reading slot `in`; names it (see builder.h). */
static apb_layer *push(apb_builder *b, apb_layer_kind kind, int in, const char *prefix,
                       const char *name)
{
    apb_model *m = b->m;
    if (b->err)
        return NULL;
    if (in < 0 || in >= m->nslots) {
        b->err = apb_fail(APB_EINVAL, "model %s: %s%s%s reads slot %d, which no layer writes",
                          m->cfg.arch, name ? b->scope : "", name ? name : prefix, name ? "" : " layer", in);
        return NULL;
    }
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
    snprintf(l->legacy, sizeof l->legacy, "%s%d", prefix, ++b->counter[kind]);
    if (name) {
        int len = snprintf(l->name, sizeof l->name, "%s%s", b->scope, name);
        if (len >= (int)sizeof l->name) {
            b->err = apb_fail(APB_EINVAL, "model %s: layer name '%s%s' longer than %d characters",
                              m->cfg.arch, b->scope, name, (int)sizeof l->name - 1);
            return NULL;
        }
    } else
        memcpy(l->name, l->legacy, sizeof l->name);
    return l;
}

static int param(apb_builder *b, apb_var *v, const char *lname, const char *what, int ndim,
                 const int *dim)
{
    if (b->err)
        return 0;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)
        numel *= dim[d] > 0 ? dim[d] : 1;
    b->nparams += numel;
    int64_t max = b->m->cfg.max_params;
    if (max > 0 && b->nparams > max) {
        b->err = apb_fail(APB_EFORMAT, "model %s %dx%dx%d: at layer %s it needs more than %lld "
                          "parameter values, more than the file describing it holds", b->m->cfg.arch,
                          b->m->cfg.in_c, b->m->cfg.in_h, b->m->cfg.in_w, lname, (long long)max);
        return 0;
    }
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

int apb_build_conv(apb_builder *b, const char *name, int in, int cin, int cout, int k, int stride,
                   int pad, int quantizable, int quant_input, int bias)
{
    apb_layer *l = push(b, APB_L_CONV, in, "conv", name);
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
    l->quantizable = quantizable != 0;
    l->quant_input = quant_input != 0;
    l->has_bias = bias;
    if (!param(b, &l->w, l->name, "weight", 4, (int[]){cout, cin, k, k}))
        return 0;
    float sd = sqrtf(2.0f / (float)(cin * k * k));
    for (int64_t i = 0; i < l->w.numel && !b->no_init; i++)
        l->w.data[i] = sd * apb_rng_normal(&b->rng);
    if (bias && !param(b, &l->b, l->name, "bias", 1, (int[]){cout}))
        return 0;
    return l->out;
}

int apb_build_linear(apb_builder *b, const char *name, int in, int cin, int cout, int quantizable,
                     int bias)
{
    apb_layer *l = push(b, APB_L_LINEAR, in, "fc", name);
    if (!l)
        return 0;
    const apb_model_cfg *c = &b->m->cfg;
    l->cin = cin;
    l->cout = cout;
    l->k = 1;
    l->stride = 1;
    l->wq = quantizable ? c->wq : APB_WQ_FP;
    l->aq = quantizable ? c->aq : APB_AQ_FP;
    l->quantizable = l->quant_input = quantizable != 0;
    l->has_bias = bias;
    if (!param(b, &l->w, l->name, "weight", 2, (int[]){cout, cin}))
        return 0;
    float sd = sqrtf(2.0f / (float)cin);
    for (int64_t i = 0; i < l->w.numel && !b->no_init; i++)
        l->w.data[i] = sd * apb_rng_normal(&b->rng);
    if (bias && !param(b, &l->b, l->name, "bias", 1, (int[]){cout}))
        return 0;
    return l->out;
}

int apb_build_bn(apb_builder *b, const char *name, int in, int channels)
{
    apb_layer *l = push(b, APB_L_BN, in, "bn", name);
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

static const char *kind_prefix(apb_layer_kind kind)
{
    switch (kind) {
    case APB_L_RELU: return "relu";
    case APB_L_HARDTANH: return "hardtanh";
    case APB_L_FLATTEN: return "flatten";
    case APB_L_GAP: return "gap";
    case APB_L_MAXPOOL: return "maxpool";
    case APB_L_AVGPOOL: return "avgpool";
    default: return "layer";
    }
}

int apb_build_simple(apb_builder *b, const char *name, apb_layer_kind kind, int in)
{
    if (kind != APB_L_RELU && kind != APB_L_HARDTANH && kind != APB_L_FLATTEN && kind != APB_L_GAP) {
        apb_builder_error(b, apb_fail(APB_EINVAL, "apb_build_simple: layer kind %d has attributes", (int)kind));
        return 0;
    }
    apb_layer *l = push(b, kind, in, kind_prefix(kind), name);
    return l ? l->out : 0;
}

int apb_build_pool(apb_builder *b, const char *name, apb_layer_kind kind, int in, int k, int stride,
                   int pad)
{
    if (kind != APB_L_MAXPOOL && kind != APB_L_AVGPOOL) {
        apb_builder_error(b, apb_fail(APB_EINVAL, "apb_build_pool: layer kind %d is not a pool", (int)kind));
        return 0;
    }
    apb_layer *l = push(b, kind, in, kind_prefix(kind), name);
    if (!l)
        return 0;
    l->pk = k;
    l->pstride = stride;
    l->ppad = pad;
    return l->out;
}

int apb_build_add(apb_builder *b, const char *name, int x, int y)
{
    apb_layer *l = push(b, APB_L_ADD, x, "add", name);
    if (!l)
        return 0;
    if (y < 0 || y >= b->m->nslots - 1) {
        apb_builder_error(b, apb_fail(APB_EINVAL, "model %s: %s adds slot %d, which no layer writes",
                                      b->m->cfg.arch, l->name, y));
        return 0;
    }
    l->in2 = y;
    return l->out;
}

int apb_build_clip(apb_builder *b, const char *name, int in, float lo, float hi)
{
    if (b->err)
        return 0;
    if (!(isfinite(lo) && isfinite(hi) && lo < hi)) {
        apb_builder_error(b, apb_fail(APB_EINVAL, "model %s: clip bounds [%g, %g]: finite with lo < hi",
                                      b->m->cfg.arch, lo, hi));
        return 0;
    }
    apb_layer *l = push(b, APB_L_CLIP, in, "clip", name);
    if (!l)
        return 0;
    l->lo = lo;
    l->hi = hi;
    return l->out;
}

int apb_build_dropout(apb_builder *b, const char *name, int in, float p)
{
    if (b->err)
        return 0;
    if (!(p >= 0.0f && p < 1.0f)) {
        apb_builder_error(b, apb_fail(APB_EINVAL, "model %s: dropout probability %g outside [0, 1)",
                                      b->m->cfg.arch, p));
        return 0;
    }
    apb_layer *l = push(b, APB_L_DROPOUT, in, "dropout", name);
    if (!l)
        return 0;
    l->p = p;
    return l->out;
}

int apb_build_act(apb_builder *b, const char *name, int in, int next_quantizes)
{
    if (b->err)
        return 0;
    apb_aquant aq = b->m->cfg.aq;
    if (next_quantizes && aq != APB_AQ_FP && aq != APB_AQ_INT8)
        return apb_build_simple(b, name, APB_L_HARDTANH, in);
    return apb_build_simple(b, name, APB_L_RELU, in);
}
