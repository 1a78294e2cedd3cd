/* export.c - model -> apbrt_model_desc -> .apb (see export.h). */
#include "export.h"

#include "fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The eps apb_model_forward gives every batch norm (models/model.c). */
static const float bn_eps = 1e-5f;

static float *own(apb_export *ex, size_t n)
{
    if (ex->nbufs == ex->capbufs) {
        int nc = ex->capbufs ? 2 * ex->capbufs : 64;
        float **b = realloc(ex->bufs, sizeof *b * (size_t)nc);
        if (!b)
            return NULL;
        ex->bufs = b;
        ex->capbufs = nc;
    }
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (p)
        ex->bufs[ex->nbufs++] = p;
    return p;
}

void apb_export_free(apb_export *ex)
{
    for (int i = 0; i < ex->nbufs; i++)
        free(ex->bufs[i]);
    free(ex->bufs);
    free(ex->layers);
    free(ex->names);
    free(ex->namebuf);
    memset(ex, 0, sizeof *ex);
}

apb_status apb_export_build(apb_model *m, const char *const *class_names, int nclasses,
                            const float mean[3], const float std[3], int resize_short,
                            apb_export *ex)
{
    memset(ex, 0, sizeof *ex);
    ex->layers = calloc((size_t)m->nlayers, sizeof *ex->layers);
    int *phys = malloc(sizeof(int) * (size_t)m->nslots);     /* model slot -> runtime slot */
    int *last = malloc(sizeof(int) * (size_t)m->nslots);     /* last layer reading a model slot */
    int *busy = calloc((size_t)m->nslots + 1, sizeof(int));  /* runtime slot in use */
    int *alias = malloc(sizeof(int) * (size_t)m->nslots);    /* dropout readers -> its input */
    apb_status s = APB_OK;
    if (!ex->layers || !phys || !last || !busy || !alias) {
        s = apb_fail(APB_ENOMEM, "export: out of memory");
        goto out;
    }
    for (int i = 0; i < m->nslots; i++)
        last[i] = -1;
    /* dropout is the identity in eval: route its readers to its input */
    for (int i = 0; i < m->nslots; i++)
        alias[i] = i;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind == APB_L_DROPOUT)
            alias[m->layers[i].out] = alias[m->layers[i].in];
    for (int i = 0; i < m->nlayers; i++) {
        const apb_layer *l = &m->layers[i];
        if (l->kind == APB_L_DROPOUT)
            continue;
        last[alias[l->in]] = i;
        if (l->kind == APB_L_ADD)
            last[alias[l->in2]] = i;
    }
    last[alias[m->out_slot]] = m->nlayers; /* the logits live to the end */
    phys[0] = 0;
    busy[0] = 1;
    int nphys = 1, nl = 0;
    for (int i = 0; i < m->nlayers && !s; i++) {
        apb_layer *l = &m->layers[i];
        if (l->kind == APB_L_DROPOUT)
            continue;
        apbrt_layer_desc *d = &ex->layers[nl++];
        d->in = phys[alias[l->in]];
        d->in2 = l->kind == APB_L_ADD ? phys[alias[l->in2]] : 0;
        /* lowest free slot that is not an input of this layer (the runtime never
         * computes in place), then release inputs whose last reader this is */
        int o = -1;
        for (int k = 1; k < nphys; k++)
            if (!busy[k] && k != d->in && k != d->in2) {
                o = k;
                break;
            }
        if (o < 0)
            o = nphys++;
        busy[o] = 1;
        phys[l->out] = o;
        d->out = o;
        if (last[alias[l->in]] == i && alias[l->in] != 0)
            busy[phys[alias[l->in]]] = 0;
        if (l->kind == APB_L_ADD && last[alias[l->in2]] == i && alias[l->in2] != 0)
            busy[phys[alias[l->in2]]] = 0;
        switch (l->kind) {
        case APB_L_CONV:
        case APB_L_LINEAR: {
            d->kind = l->kind == APB_L_CONV ? APBRT_CONV : APBRT_LINEAR;
            d->cin = l->cin;
            d->cout = l->cout;
            d->kh = d->kw = l->kind == APB_L_CONV ? l->k : 1;
            d->stride = l->kind == APB_L_CONV ? l->stride : 1;
            d->pad = l->kind == APB_L_CONV ? l->pad : 0;
            d->akind = l->aq == APB_AQ_BINARY ? APBRT_A_BIN : l->aq == APB_AQ_Q2 ? APBRT_A_Q2
                     : l->aq == APB_AQ_INT8 ? (l->asigned ? APBRT_A_S8 : APBRT_A_U8) : APBRT_A_FP;
            if (l->aq == APB_AQ_Q2 || l->aq == APB_AQ_INT8)
                d->act_step = l->astep.data[0];
            if (l->aq == APB_AQ_INT8 && d->act_step == 0.0f) {
                s = apb_fail(APB_EINVAL, "export: %s: the 8-bit activation step was never "
                             "calibrated (train or evaluate the model on data first)", l->name);
                break;
            }
            float *w = own(ex, (size_t)l->w.numel);
            if (!w) {
                s = apb_fail(APB_ENOMEM, "export: out of memory");
                break;
            }
            if ((s = apb_layer_effective_weight(l, &m->cfg, w)))
                break;
            d->weight = w;
            if (l->wq == APB_WQ_APB || l->wq == APB_WQ_BINARY) {
                float *a = own(ex, (size_t)l->cout);
                if (!a) {
                    s = apb_fail(APB_ENOMEM, "export: out of memory");
                    break;
                }
                if (l->wq == APB_WQ_APB) {
                    for (int c = 0; c < l->cout; c++)
                        a[c] = l->alpha.data[l->alpha.numel == 1 ? 0 : c];
                } else {
                    int na = m->cfg.per_channel ? l->cout : 1;
                    float tmp[1];
                    float *sc = na == 1 ? tmp : a;
                    apb_binary_scale(l->w.data, l->w.numel, na, sc);
                    if (na == 1)
                        for (int c = 0; c < l->cout; c++)
                            a[c] = tmp[0];
                }
                d->wkind = APBRT_W_APB;
                d->alpha = a;
                d->compression = l->wq == APB_WQ_APB ? APBRT_C_APB : APBRT_C_BINARY;
                d->scales = l->wq == APB_WQ_APB ? (int)l->alpha.numel : m->cfg.per_channel ? l->cout : 1;
            } else if (l->wq == APB_WQ_Q2) {
                d->wkind = APBRT_W_Q2;
                d->wstep = l->wstep.data[0];
                d->compression = APBRT_C_Q2;
            } else {
                d->wkind = APBRT_W_FP32;
                if (l->wq == APB_WQ_PRUNE || l->wq == APB_WQ_PRUNE_BINARY) {
                    d->compression = l->wq == APB_WQ_PRUNE ? APBRT_C_PRUNED : APBRT_C_PRUNE_BINARY;
                    for (int64_t j = 0; j < l->w.numel; j++)
                        d->kept += l->mask[j] != 0;
                    if (l->wq == APB_WQ_PRUNE_BINARY)
                        d->scales = m->cfg.per_channel ? l->cout : 1;
                }
            }
            d->bias = l->has_bias ? l->b.data : NULL;
            break;
        }
        case APB_L_BN: {
            d->kind = APBRT_BN;
            d->channels = l->channels;
            float *sc = own(ex, (size_t)l->channels), *sh = own(ex, (size_t)l->channels);
            if (!sc || !sh) {
                s = apb_fail(APB_ENOMEM, "export: out of memory");
                break;
            }
            /* The training graph's eval-mode expressions (layers/op_batchnorm.c),
             * operation for operation, so the runtime's y = scale*x + shift is
             * the training value bit for bit (a sign taken right after it
             * cannot flip on a rounding difference). */
            for (int c = 0; c < l->channels; c++) {
                float invstd = (float)(1.0 / sqrt((double)l->rvar[c] + (double)bn_eps));
                sc[c] = l->gamma.data[c] * invstd;
                sh[c] = l->beta.data[c] - l->rmean[c] * sc[c];
            }
            d->scale = sc;
            d->shift = sh;
            break;
        }
        case APB_L_RELU: d->kind = APBRT_RELU; break;
        case APB_L_HARDTANH: d->kind = APBRT_HARDTANH; break;
        case APB_L_CLIP:
            d->kind = APBRT_CLIP;
            d->lo = l->lo;
            d->hi = l->hi;
            break;
        case APB_L_MAXPOOL:
        case APB_L_AVGPOOL:
            d->kind = l->kind == APB_L_MAXPOOL ? APBRT_MAXPOOL : APBRT_AVGPOOL;
            d->k = l->pk;
            d->pstride = l->pstride;
            d->ppad = l->ppad;
            break;
        case APB_L_GAP: d->kind = APBRT_GAP; break;
        case APB_L_FLATTEN: d->kind = APBRT_FLATTEN; break;
        case APB_L_ADD: d->kind = APBRT_ADD; break;
        case APB_L_DROPOUT: break;
        }
    }
    if (s)
        goto out;
    apbrt_model_desc *md = &ex->desc;
    md->in_c = m->cfg.in_c;
    md->in_h = m->cfg.in_h;
    md->in_w = m->cfg.in_w;
    for (int c = 0; c < 3; c++) {
        md->mean[c] = mean[c];
        md->std[c] = std[c] > 0 ? std[c] : 1;
    }
    md->resize_short = resize_short;
    md->num_classes = m->cfg.num_classes;
    ex->names = calloc((size_t)m->cfg.num_classes, sizeof(char *));
    ex->namebuf = malloc((size_t)m->cfg.num_classes * 16 + 1);
    if (!ex->names || !ex->namebuf) {
        s = apb_fail(APB_ENOMEM, "export: out of memory");
        goto out;
    }
    for (int c = 0; c < m->cfg.num_classes; c++) {
        if (class_names && c < nclasses && class_names[c] && class_names[c][0])
            ex->names[c] = class_names[c];
        else {
            snprintf(ex->namebuf + 16 * c, 16, "%d", c);
            ex->names[c] = ex->namebuf + 16 * c;
        }
    }
    md->class_names = ex->names;
    md->nslots = nphys;
    md->nlayers = nl;
    md->layers = ex->layers;
    md->output_slot = phys[alias[m->out_slot]];
    md->model_name = m->cfg.arch;
out:
    free(phys);
    free(last);
    free(busy);
    free(alias);
    if (s)
        apb_export_free(ex);
    return s;
}

apb_status apb_export_int8_stem(apb_export *ex)
{
    for (int i = 0; i < ex->desc.nlayers; i++) {
        apbrt_layer_desc *L = &ex->layers[i];
        if (L->kind != APBRT_CONV)
            continue;
        if (L->in != 0 || L->wkind != APBRT_W_FP32 || L->akind != APBRT_A_FP)
            return apb_fail(APB_EINVAL,
                            "--int8-stem: the first conv (layer %d) must read the network input with "
                            "full-precision weights and input (it has weight kind %d, input kind %d)",
                            i, L->wkind, L->akind);
        L->akind = APBRT_A_S8D;
        return APB_OK;
    }
    return apb_fail(APB_EINVAL, "--int8-stem: the model has no conv");
}

apb_status apb_export_model(apb_model *m, const apb_ckpt *ck, const char *out_path, size_t *bytes)
{
    return apb_export_model_opt(m, ck, out_path, 0, bytes);
}

apb_status apb_export_model_opt(apb_model *m, const apb_ckpt *ck, const char *out_path,
                                int int8_stem, size_t *bytes)
{
    char *buf = malloc(sizeof ck->meta.classes);
    const char **names = malloc(sizeof(char *) * 100000);
    apb_status s = APB_OK;
    if (!buf || !names) {
        s = apb_fail(APB_ENOMEM, "export: out of memory");
        goto out;
    }
    int nc = apb_ckpt_class_names(&ck->meta, buf, sizeof ck->meta.classes, names, 100000);
    apb_export ex;
    s = apb_export_build(m, names, nc, ck->meta.mean, ck->meta.std, ck->meta.resize_short, &ex);
    if (s)
        goto out;
    unsigned char *file = NULL;
    size_t size = 0;
    if (int8_stem)
        s = apb_export_int8_stem(&ex);
    if (!s)
        s = apbrt_serialize(&ex.desc, &file, &size);
    if (!s) {
        s = apb_file_write_atomic(out_path, file, size);
        free(file);
        if (bytes)
            *bytes = size;
    }
    apb_export_free(&ex);
out:
    if (s)
        apb_fail_context(s, "exporting %s to %s", ck->path, out_path);
    free(buf);
    free(names);
    return s;
}

apb_status apb_export_ckpt(const apb_ckpt *ck, const char *out_path, size_t *bytes)
{
    apb_model *m;
    APB_TRY(apb_ckpt_model(ck, &m));
    apb_status s = apb_export_model(m, ck, out_path, bytes);
    apb_model_free(m);
    return s;
}
