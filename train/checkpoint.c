/* checkpoint.c - checkpoint writer/reader (format in checkpoint.h). */
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "fileio.h"
#include "graph.h"

static const char MAGIC[8] = {'A', 'P', 'B', 'C', 'K', 'P', 'T', '1'};

const char *apb_kv_get(const char *text, const char *key, char *buf, size_t n)
{
    size_t kl = strlen(key);
    const char *p = text;
    while (p && *p) {
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            const char *v = p + kl + 1, *e = strchr(v, '\n');
            size_t len = e ? (size_t)(e - v) : strlen(v);
            if (len >= n)
                len = n - 1;
            memcpy(buf, v, len);
            buf[len] = 0;
            return buf;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NULL;
}

typedef struct {
    apb_atomic_file af;
    uint32_t crc;
} writer;

static apb_status put(writer *w, const void *d, size_t n)
{
    w->crc = apb_crc32(w->crc, d, n);
    return apb_atomic_write(&w->af, d, n);
}

static apb_status put_rec(writer *w, const char *name, const void *d, size_t bytes)
{
    uint32_t nl = (uint32_t)strlen(name);
    uint64_t b = bytes;
    APB_TRY(put(w, &nl, 4));
    APB_TRY(put(w, name, nl));
    APB_TRY(put(w, &b, 8));
    return put(w, d, bytes);
}

static void header_text(const apb_ckpt_meta *meta, char *h, size_t n)
{
    const apb_model_cfg *c = &meta->model;
    char rng[80];
    snprintf(rng, sizeof rng, "%016llx%016llx%016llx%016llx", (unsigned long long)meta->rng.s[0],
             (unsigned long long)meta->rng.s[1], (unsigned long long)meta->rng.s[2],
             (unsigned long long)meta->rng.s[3]);
    snprintf(h, n,
             "arch=%s\nwq=%s\naq=%s\nquant_first=%d\nquant_last=%d\nfp_shortcut=%d\nper_channel=%d\n"
             "direct_alpha_grad=%d\napprox_sign=%d\nin_c=%d\nin_h=%d\nin_w=%d\nnum_classes=%d\n"
             "prune_sparsity=%.9g\nepoch=%d\nbest_acc=%.17g\nrng=%s\n"
             "mean=%.9g,%.9g,%.9g\nstd=%.9g,%.9g,%.9g\nresize_short=%d\nnames=structural\nclasses=%s\n"
             "cmdline=%s\n%s",
             c->arch, apb_wquant_name(c->wq), apb_aquant_name(c->aq), c->quant_first, c->quant_last,
             c->fp_shortcut, c->per_channel, c->direct_alpha_grad, c->approx_sign, c->in_c, c->in_h,
             c->in_w, c->num_classes, c->prune_sparsity, meta->epoch, meta->best_acc, rng,
             meta->mean[0], meta->mean[1], meta->mean[2], meta->std[0], meta->std[1], meta->std[2],
             meta->resize_short, meta->classes, meta->cmdline, meta->train_opts);
}

apb_status apb_ckpt_save(const char *path, const apb_ckpt_meta *meta, const apb_model *m,
                         const apb_ckpt_blob *extra, int nextra)
{
    char *h = malloc((1 << 18));
    if (!h)
        return apb_fail(APB_ENOMEM, "%s: out of memory", path);
    header_text(meta, h, (1 << 18));
    writer w = {.crc = 0};
    apb_status s = apb_atomic_open(&w.af, path);
    if (s) {
        free(h);
        return s;
    }
    uint32_t hl = (uint32_t)strlen(h);
    s = put(&w, MAGIC, 8);
    if (!s)
        s = put(&w, &hl, 4);
    if (!s)
        s = put(&w, h, hl);
    free(h);
    apb_param_ref refs[1024];
    int np = apb_model_params((apb_model *)m, refs, 1024);
    if (np > 1024 && !s)
        s = apb_fail(APB_EINVAL, "%s: model has %d parameter tensors (at most 1024)", path, np);
    for (int i = 0; i < np && !s; i++)
        s = put_rec(&w, refs[i].var->name, refs[i].var->data, sizeof(float) * (size_t)refs[i].var->numel);
    for (int i = 0; i < m->nlayers && !s; i++) {
        const apb_layer *l = &m->layers[i];
        char nm[96];
        if (l->kind == APB_L_BN) {
            snprintf(nm, sizeof nm, "%s.running_mean", l->name);
            s = put_rec(&w, nm, l->rmean, sizeof(float) * (size_t)l->channels);
            snprintf(nm, sizeof nm, "%s.running_var", l->name);
            if (!s)
                s = put_rec(&w, nm, l->rvar, sizeof(float) * (size_t)l->channels);
        }
        if (l->mask && !s) {
            snprintf(nm, sizeof nm, "%s.mask", l->name);
            s = put_rec(&w, nm, l->mask, sizeof(float) * (size_t)l->w.numel);
        }
    }
    if (!s) {
        char *gt;
        size_t gl;
        s = apb_graph_write(m, &gt, &gl);
        if (!s) {
            s = put_rec(&w, APB_CKPT_GRAPH, gt, gl);
            free(gt);
        }
    }
    for (int i = 0; i < nextra && !s; i++)
        s = put_rec(&w, extra[i].name, extra[i].data, extra[i].bytes);
    if (!s) {
        uint32_t crc = w.crc;
        s = apb_atomic_write(&w.af, &crc, 4);
    }
    if (s) {
        apb_atomic_abort(&w.af);
        return apb_fail_context(s, "writing checkpoint %s", path);
    }
    return apb_atomic_commit(&w.af);
}

void apb_ckpt_free(apb_ckpt *ck)
{
    for (int i = 0; i < ck->nrec; i++)
        free((char *)ck->rec[i].name);
    free(ck->file);
    free(ck->rec);
    memset(ck, 0, sizeof *ck);
}

static apb_status parse_int(const char *path, const char *h, const char *key, int *v)
{
    char b[64];
    if (!apb_kv_get(h, key, b, sizeof b))
        return apb_fail(APB_EFORMAT, "%s: checkpoint header lacks '%s'", path, key);
    char *e;
    long x = strtol(b, &e, 10);
    if (*e || e == b || x < -1000000000L || x > 1000000000L)
        return apb_fail(APB_EFORMAT, "%s: checkpoint header: bad %s '%s'", path, key, b);
    *v = (int)x;
    return APB_OK;
}

/* A run directory given where a checkpoint is expected (`--ckpt runs/apb`,
 * `--init runs/fp`) is the commonest slip: point at the checkpoint it holds, so
 * every command that loads one gives the same hint. */
static apb_status ckpt_dir_error(const char *path)
{
    static const char *const names[] = {"best.ckpt", "last.ckpt"};
    size_t n = strlen(path);
    const char *sep = n && path[n - 1] == '/' ? "" : "/";
    for (int i = 0; i < 2; i++) {
        char cand[1100];
        snprintf(cand, sizeof cand, "%s%s%s", path, sep, names[i]);
        if (apb_file_exists(cand) && !apb_is_directory(cand))
            return apb_fail(APB_EIO, "%s: is a directory, not a checkpoint; did you mean %s?",
                            path, cand);
    }
    return apb_fail(APB_EIO, "%s: is a directory, not a checkpoint (it holds no best.ckpt or last.ckpt)",
                    path);
}

apb_status apb_ckpt_load(const char *path, apb_ckpt *ck)
{
    memset(ck, 0, sizeof *ck);
    snprintf(ck->path, sizeof ck->path, "%s", path);
    if (apb_is_directory(path))
        return ckpt_dir_error(path);
    APB_TRY(apb_file_read(path, &ck->file, &ck->size));
    const unsigned char *f = ck->file;
    size_t n = ck->size;
    apb_status s = APB_OK;
    if (n < 16 || memcmp(f, MAGIC, 8) != 0) {
        s = apb_fail(APB_EFORMAT, "%s: not an apb checkpoint (bad magic)", path);
        goto fail;
    }
    uint32_t crc_stored;
    memcpy(&crc_stored, f + n - 4, 4);
    if (apb_crc32(0, f, n - 4) != crc_stored) {
        s = apb_fail(APB_EFORMAT, "%s: checkpoint is corrupt or truncated (CRC mismatch)", path);
        goto fail;
    }
    uint32_t hl;
    memcpy(&hl, f + 8, 4);
    if (hl >= (1 << 18) || 12 + (size_t)hl > n - 4) {
        s = apb_fail(APB_EFORMAT, "%s: checkpoint header length %u out of range", path, hl);
        goto fail;
    }
    char *h = malloc(hl + 1);
    if (!h) {
        s = apb_fail(APB_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    memcpy(h, f + 12, hl);
    h[hl] = 0;
    apb_ckpt_meta *me = &ck->meta;
    apb_model_cfg *c = &me->model;
    char b[2048];
    if (!apb_kv_get(h, "arch", c->arch, sizeof c->arch) || !apb_kv_get(h, "wq", b, sizeof b) ||
        apb_wquant_parse(b, &c->wq, NULL) || !apb_kv_get(h, "aq", b, sizeof b) ||
        apb_aquant_parse(b, &c->aq)) {
        s = apb_fail(APB_EFORMAT, "%s: checkpoint header lacks a valid arch/wq/aq", path);
        free(h);
        goto fail;
    }
    if ((s = parse_int(path, h, "quant_first", &c->quant_first)) ||
        (s = parse_int(path, h, "quant_last", &c->quant_last)) ||
        (s = parse_int(path, h, "fp_shortcut", &c->fp_shortcut)) ||
        (s = parse_int(path, h, "per_channel", &c->per_channel)) ||
        (s = parse_int(path, h, "direct_alpha_grad", &c->direct_alpha_grad)) ||
        (s = parse_int(path, h, "approx_sign", &c->approx_sign)) ||
        (s = parse_int(path, h, "in_c", &c->in_c)) || (s = parse_int(path, h, "in_h", &c->in_h)) ||
        (s = parse_int(path, h, "in_w", &c->in_w)) ||
        (s = parse_int(path, h, "num_classes", &c->num_classes)) ||
        (s = parse_int(path, h, "epoch", &me->epoch))) {
        free(h);
        goto fail;
    }
    if (apb_kv_get(h, "prune_sparsity", b, sizeof b))
        c->prune_sparsity = strtof(b, NULL);
    if (apb_kv_get(h, "best_acc", b, sizeof b))
        me->best_acc = strtod(b, NULL);
    if (apb_kv_get(h, "rng", b, sizeof b) && strlen(b) == 64)
        for (int i = 0; i < 4; i++) {
            char part[17];
            memcpy(part, b + 16 * i, 16);
            part[16] = 0;
            me->rng.s[i] = strtoull(part, NULL, 16);
        }
    apb_kv_get(h, "cmdline", me->cmdline, sizeof me->cmdline);
    apb_kv_get(h, "classes", me->classes, sizeof me->classes);
    if (apb_kv_get(h, "mean", b, sizeof b))
        sscanf(b, "%f,%f,%f", &me->mean[0], &me->mean[1], &me->mean[2]);
    if (apb_kv_get(h, "std", b, sizeof b))
        sscanf(b, "%f,%f,%f", &me->std[0], &me->std[1], &me->std[2]);
    if (apb_kv_get(h, "resize_short", b, sizeof b))
        me->resize_short = atoi(b);
    me->structural_names = apb_kv_get(h, "names", b, sizeof b) && !strcmp(b, "structural");
    /* everything after cmdline is the training options */
    const char *opts = strstr(h, "\ncmdline=");
    if (opts && (opts = strchr(opts + 1, '\n')))
        snprintf(me->train_opts, sizeof me->train_opts, "%s", opts + 1);
    free(h);
    if (c->in_c <= 0 || c->in_c > 4 || c->in_h <= 0 || c->in_h > 4096 || c->in_w <= 0 ||
        c->in_w > 4096 || c->num_classes < 2 || c->num_classes > 100000) {
        s = apb_fail(APB_EFORMAT, "%s: checkpoint header: implausible geometry %dx%dx%d / %d classes",
                     path, c->in_c, c->in_h, c->in_w, c->num_classes);
        goto fail;
    }
    size_t off = 12 + hl, end = n - 4;
    int cap = 0;
    while (off < end) {
        uint32_t nl;
        uint64_t bytes;
        if (end - off < 4) {
            s = apb_fail(APB_EFORMAT, "%s: truncated record at byte %zu", path, off);
            goto fail;
        }
        memcpy(&nl, f + off, 4);
        if (nl == 0 || nl > 256 || end - off - 4 < (size_t)nl + 8) {
            s = apb_fail(APB_EFORMAT, "%s: bad record name length %u at byte %zu", path, nl, off);
            goto fail;
        }
        const char *name = (const char *)f + off + 4;
        memcpy(&bytes, f + off + 4 + nl, 8);
        size_t data_off = off + 4 + nl + 8;
        if (bytes > end - data_off) {
            s = apb_fail(APB_EFORMAT, "%s: record '%.*s' claims %llu bytes, only %zu left", path,
                         (int)nl, name, (unsigned long long)bytes, end - data_off);
            goto fail;
        }
        if (ck->nrec == cap) {
            cap = cap ? cap * 2 : 64;
            apb_ckpt_blob *r = realloc(ck->rec, sizeof *r * (size_t)cap);
            if (!r) {
                s = apb_fail(APB_ENOMEM, "%s: out of memory", path);
                goto fail;
            }
            ck->rec = r;
        }
        /* names are stored without a terminator: keep a terminated copy */
        char *nm = malloc(nl + 1);
        if (!nm) {
            s = apb_fail(APB_ENOMEM, "%s: out of memory", path);
            goto fail;
        }
        memcpy(nm, name, nl);
        nm[nl] = 0;
        ck->rec[ck->nrec++] = (apb_ckpt_blob){nm, (size_t)bytes, f + data_off};
        off = data_off + (size_t)bytes;
    }
    return APB_OK;
fail:
    apb_ckpt_free(ck);
    return s;
}

const apb_ckpt_blob *apb_ckpt_find(const apb_ckpt *ck, const char *name)
{
    for (int i = 0; i < ck->nrec; i++)
        if (!strcmp(ck->rec[i].name, name))
            return &ck->rec[i];
    return NULL;
}

/* The record name of tensor `what` of layer l in this checkpoint. */
static const char *rec_name(const apb_ckpt *ck, const apb_layer *l, const char *what, char *buf,
                            size_t n)
{
    snprintf(buf, n, "%s.%s", ck->meta.structural_names ? l->name : l->legacy, what);
    return buf;
}

/* Tensor `what` of layer l into dst [count]. Missing: an error when `required`,
 * else *missing is set and dst keeps its values. A size mismatch is always an
 * error naming the layer and both element counts. */
static apb_status fill(const apb_ckpt *ck, const apb_layer *l, const char *what, float *dst,
                       int64_t count, int required, int *missing)
{
    char name[128];
    rec_name(ck, l, what, name, sizeof name);
    const apb_ckpt_blob *b = apb_ckpt_find(ck, name);
    if (!b) {
        if (required)
            return apb_fail(APB_EFORMAT, "%s: checkpoint has no tensor '%s' (layer %s)", ck->path,
                            name, l->name);
        *missing = 1;
        return APB_OK;
    }
    if (b->bytes != sizeof(float) * (size_t)count) {
        if (b->bytes % sizeof(float))
            return apb_fail(APB_EFORMAT, "%s: tensor '%s' has %zu bytes, not a whole number of floats",
                            ck->path, name, b->bytes);
        char shape[96] = "";
        if (l->kind == APB_L_CONV && !strcmp(what, "weight"))
            snprintf(shape, sizeof shape, " (%d output x %d input channels x %dx%d)", l->cout, l->cin,
                     l->k, l->k);
        else if (l->kind == APB_L_LINEAR && !strcmp(what, "weight"))
            snprintf(shape, sizeof shape, " (%d outputs x %d inputs)", l->cout, l->cin);
        return apb_fail(APB_EFORMAT, "%s: layer %s: tensor '%s' has %zu elements in the checkpoint, "
                        "the model needs %lld%s", ck->path, l->name, name, b->bytes / sizeof(float),
                        (long long)count, shape);
    }
    memcpy(dst, b->data, b->bytes);
    return APB_OK;
}

apb_status apb_ckpt_fill_model(const apb_ckpt *ck, apb_model *m, int strict, char *fresh,
                               size_t fresh_n)
{
    apb_param_ref refs[1024];
    int np = apb_model_params(m, refs, 1024);
    if (np > 1024)
        return apb_fail(APB_EINVAL, "model has too many parameters (%d)", np);
    if (fresh && fresh_n)
        fresh[0] = 0;
    int missing_quant = 0, loaded = 0;
    const apb_layer *last_listed = NULL;
    for (int i = 0; i < np; i++) {
        const apb_layer *l = refs[i].layer;
        const char *what = refs[i].var->name + strlen(l->name) + 1;
        int miss = 0;
        APB_TRY(fill(ck, l, what, refs[i].var->data, refs[i].var->numel, strict, &miss));
        loaded += !miss;
        if (!miss)
            continue;
        if (refs[i].role == APB_P_QUANT) {
            missing_quant = 1;
        } else if (fresh && l != last_listed) {
            size_t len = strlen(fresh);
            snprintf(fresh + len, fresh_n - len, "%s%s", len ? ", " : "", l->name);
            last_listed = l;
        }
    }
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        int miss = 0;
        if (l->kind == APB_L_BN) {
            APB_TRY(fill(ck, l, "running_mean", l->rmean, l->channels, strict, &miss));
            APB_TRY(fill(ck, l, "running_var", l->rvar, l->channels, strict, &miss));
        }
        if (l->mask)
            APB_TRY(fill(ck, l, "mask", l->mask, l->w.numel, strict, &miss));
    }
    if (!loaded && np)
        return apb_fail(APB_EFORMAT, "%s: holds none of the model's %d tensors (first: '%s')", ck->path,
                        np, refs[0].var->name);
    return missing_quant ? apb_model_init_quant(m) : APB_OK;
}

/* The model of arch "graph" that ck's graph record describes, for cfg. */
static apb_status graph_model(const apb_ckpt *ck, const apb_model_cfg *cfg, uint64_t seed,
                              apb_model **out)
{
    const apb_ckpt_blob *g = apb_ckpt_find(ck, APB_CKPT_GRAPH);
    if (!g)
        return apb_fail(APB_EFORMAT, "%s: model of arch 'graph' without a graph record ('%s')",
                        ck->path, APB_CKPT_GRAPH);
    return apb_graph_build(cfg, g->data, g->bytes, ck->path, seed, out);
}

apb_status apb_ckpt_build_model(apb_model_cfg *cfg, uint64_t seed, const apb_ckpt *ck,
                                const char *init_path, apb_model **out)
{
    *out = NULL;
    if (cfg->arch[0] && strcmp(cfg->arch, "graph"))
        return apb_model_build(cfg, seed, out);
    if (ck)
        return graph_model(ck, cfg, seed, out);
    if (!init_path || !init_path[0])
        return apb_fail(APB_EINVAL, "no --model given, and no --init checkpoint to take one from");
    apb_ckpt ic;
    APB_TRY(apb_ckpt_load(init_path, &ic));
    const apb_model_cfg *im = &ic.meta.model;
    apb_status s = APB_OK;
    if (!cfg->arch[0])
        snprintf(cfg->arch, sizeof cfg->arch, "%s", im->arch);
    if (strcmp(cfg->arch, "graph"))
        s = apb_model_build(cfg, seed, out);
    else if (cfg->in_c != im->in_c || cfg->in_h != im->in_h || cfg->in_w != im->in_w ||
             cfg->num_classes != im->num_classes)
        s = apb_fail(APB_EINVAL, "--init %s: its graph takes %dx%dx%d inputs in %d classes, the data "
                     "gives %dx%dx%d in %d classes (--img-size sets the side of folder datasets)",
                     init_path, im->in_c, im->in_h, im->in_w, im->num_classes, cfg->in_c, cfg->in_h,
                     cfg->in_w, cfg->num_classes);
    else
        s = graph_model(&ic, cfg, seed, out);
    apb_ckpt_free(&ic);
    return s;
}

apb_status apb_ckpt_model(const apb_ckpt *ck, apb_model **out)
{
    if (!strcmp(ck->meta.model.arch, "graph"))
        APB_TRY(graph_model(ck, &ck->meta.model, 0, out));
    else
        APB_TRY(apb_model_build(&ck->meta.model, 0, out));
    apb_status s = apb_ckpt_fill_model(ck, *out, 1, NULL, 0);
    if (s) {
        apb_model_free(*out);
        *out = NULL;
    }
    return s;
}

int apb_ckpt_class_names(const apb_ckpt_meta *meta, char *buf, size_t n, const char **names,
                         int max)
{
    snprintf(buf, n, "%s", meta->classes);
    int k = 0;
    char *p = buf;
    while (*p && k < max) {
        names[k++] = p;
        char *e = strchr(p, '|');
        if (!e)
            break;
        *e = 0;
        p = e + 1;
    }
    return k;
}
