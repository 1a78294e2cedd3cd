/* model.c - the layer list once built: forward pass (with BN+ReLU fusion),
 * parameter enumeration, quantizer initialisation, memory accounting, and the
 * names of the quantization kinds. Building a list is builder.c's job; the
 * built-in architectures are in zoo.c.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bits.h"

const char *apb_wquant_name(apb_wquant q)
{
    switch (q) {
    case APB_WQ_FP: return "fp";
    case APB_WQ_APB: return "apb";
    case APB_WQ_BINARY: return "binary";
    case APB_WQ_Q2: return "q2";
    case APB_WQ_PRUNE: return "prune";
    case APB_WQ_PRUNE_BINARY: return "prune-binary";
    }
    return "?";
}

const char *apb_aquant_name(apb_aquant q)
{
    switch (q) {
    case APB_AQ_FP: return "fp";
    case APB_AQ_BINARY: return "binary";
    case APB_AQ_Q2: return "q2";
    case APB_AQ_INT8: return "int8";
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
    else if (!strcmp(s, "prune-binary"))
        *q = APB_WQ_PRUNE_BINARY;
    else if (!strncmp(s, "prune:", 6) || !strncmp(s, "prune-binary:", 13)) {
        size_t at = s[5] == ':' ? 6 : 13;
        char *end;
        double v = strtod(s + at, &end);
        if (*end || end == s + at || !(v > 0 && v < 1))
            return apb_fail(APB_EINVAL, "--quant %s: sparsity must be a number in (0,1), e.g. %.*s0.9",
                            s, (int)at, s);
        *q = at == 6 ? APB_WQ_PRUNE : APB_WQ_PRUNE_BINARY;
        if (sparsity)
            *sparsity = (float)v;
    } else
        return apb_fail(APB_EINVAL, "unknown weight quantization '%s' (fp, apb, binary, q2, prune:S, "
                        "prune-binary:S)", s);
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
    else if (!strcmp(s, "int8"))
        *q = APB_AQ_INT8;
    else
        return apb_fail(APB_EINVAL, "unknown activation quantization '%s' (fp, binary, q2, int8)", s);
    return APB_OK;
}

int apb_layer_compressed(const apb_layer *l)
{
    return (l->kind == APB_L_CONV || l->kind == APB_L_LINEAR) && l->wq != APB_WQ_FP;
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

int apb_model_slot_nonneg(const apb_model *m, int slot)
{
    /* slots are written by exactly one layer, before their readers */
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const apb_layer *l = &m->layers[i];
        if (l->out != slot)
            continue;
        switch (l->kind) {
        case APB_L_RELU: return 1;
        case APB_L_CLIP: return l->lo >= 0.0f; /* e.g. ReLU6 */
        case APB_L_MAXPOOL:
        case APB_L_AVGPOOL:
        case APB_L_FLATTEN:
        case APB_L_GAP:
        case APB_L_DROPOUT: return apb_model_slot_nonneg(m, l->in);
        case APB_L_ADD: return apb_model_slot_nonneg(m, l->in) && apb_model_slot_nonneg(m, l->in2);
        default: return 0;
        }
    }
    return 0; /* the input batch */
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
        } else if (l->wq == APB_WQ_PRUNE || l->wq == APB_WQ_PRUNE_BINARY) {
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
        } else if (l->aq == APB_AQ_INT8) {
            APB_TRY(quant_param(l, &l->astep, "astep", 1));
            l->astep.data[0] = 0.0f; /* calibrated by the first batch (apb_act_int8) */
            l->asigned = !apb_model_slot_nonneg(m, l->in);
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
    case APB_WQ_PRUNE_BINARY:
        return apb_quant_prune_binary(g, &l->w, l->mask, m->cfg.per_channel, wq);
    }
    return apb_fail(APB_EINVAL, "%s: bad weight quantizer", l->name);
}

static apb_status quant_input(apb_model *m, apb_graph *g, apb_layer *l, apb_var *x, apb_var **y)
{
    switch (l->aq) {
    case APB_AQ_FP: *y = x; return APB_OK;
    case APB_AQ_BINARY: return apb_act_sign(g, x, m->cfg.approx_sign, y);
    case APB_AQ_Q2: return apb_act_q2(g, x, &l->astep, y);
    case APB_AQ_INT8: return apb_act_int8(g, x, &l->astep, l->asigned, y);
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

static void bn_state(const apb_model *m, apb_layer *l)
{
    l->bn.running_mean = l->rmean;
    l->bn.running_var = l->rvar;
    l->bn.momentum = m->bn_momentum > 0 ? m->bn_momentum : 0.1f;
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
            bn_state(m, l);
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
        case APB_L_CLIP: s = apb_clip(g, in, l->lo, l->hi, &y); break;
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

/* Compressed bits of the model's compressed layers, all pruned + binarized to
 * sparsity s (kept = round((1 - s) n), as apb_prune_mask_update keeps). */
static double prune_binary_cbits(const apb_model *m, double s, int ib, int64_t *cw)
{
    double bits = 0;
    *cw = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const apb_layer *l = &m->layers[i];
        if (!apb_layer_compressed(l))
            continue;
        int64_t n = l->w.numel, kept = (int64_t)llround((1.0 - s) * (double)n);
        bits += apb_bits_prune_binary(n, kept, ib, m->cfg.per_channel ? l->cout : 1);
        *cw += n;
    }
    return bits;
}

apb_status apb_prune_binary_sparsity(const apb_model *m, double budget, float *sparsity)
{
    int64_t largest = 1, cw;
    for (int i = 0; i < m->nlayers; i++)
        if (apb_layer_compressed(&m->layers[i]) && m->layers[i].w.numel > largest)
            largest = m->layers[i].w.numel;
    int ib = apb_index_bits(largest);
    double lo = 1e-4, hi = 1 - 1e-4; /* cbits falls as s grows */
    if (prune_binary_cbits(m, lo, ib, &cw) <= budget * (double)cw)
        return apb_fail(APB_EINVAL, "pruning + binarization: %g bits/weight is reached without "
                        "pruning (that is plain binary)", budget);
    if (!cw || prune_binary_cbits(m, hi, ib, &cw) > budget * (double)cw)
        return apb_fail(APB_EINVAL, "pruning + binarization: %g bits/weight is below what "
                        "pruning 99.99%% of the weights costs", budget);
    for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (lo + hi);
        if (prune_binary_cbits(m, mid, ib, &cw) <= budget * (double)cw)
            hi = mid;
        else
            lo = mid;
    }
    *sparsity = (float)hi;
    /* the float may round below hi: step up until the budget holds */
    while (prune_binary_cbits(m, *sparsity, ib, &cw) > budget * (double)cw)
        *sparsity = nextafterf(*sparsity, 1.0f);
    return APB_OK;
}

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
    int ib = apb_index_bits(largest);
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
                bits = apb_bits_apb(n, fp, ib, (int)l->alpha.numel);
                break;
            case APB_WQ_BINARY: bits = apb_bits_binary(n, m->cfg.per_channel ? l->cout : 1); break;
            case APB_WQ_Q2: bits = apb_bits_q2(n); break;
            case APB_WQ_PRUNE: {
                for (int64_t j = 0; j < n; j++)
                    fp += l->mask[j] != 0;
                bits = apb_bits_pruned(fp, ib);
                break;
            }
            case APB_WQ_PRUNE_BINARY: {
                int64_t kept = 0;
                for (int64_t j = 0; j < n; j++)
                    kept += l->mask[j] != 0;
                bits = apb_bits_prune_binary(n, kept, ib, m->cfg.per_channel ? l->cout : 1);
                break;
            }
            }
            if (l->has_bias)
                bits += 32.0 * l->cout;
            int astep = l->aq == APB_AQ_Q2 || l->aq == APB_AQ_INT8; /* one f32 step */
            if (astep)
                bits += 32;
            if (apb_layer_compressed(l)) {
                mem->cweights += n;
                mem->fp_count += fp;
                /* weights only: the bias and the activation step are not compressed */
                mem->cbits += bits - (l->has_bias ? 32.0 * l->cout : 0) - (astep ? 32 : 0);
            }
        } else if (l->kind == APB_L_BN) {
            bits = 32.0 * 2 * l->channels; /* folded into a scale and a shift for inference */
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
