/* checkpoint.c - checkpoint writer/reader (format in checkpoint.h). */
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "fileio.h"
#include "graph.h"

/* version 1: one CRC over the file; version 2: a CRC per section (checkpoint.h) */
static const char MAGIC1[8] = {'A', 'P', 'B', 'C', 'K', 'P', 'T', '1'};
static const char MAGIC2[8] = {'A', 'P', 'B', 'C', 'K', 'P', 'T', '2'};

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
    uint32_t crc;  /* of everything written so far (the trailer's) */
    uint32_t nrec;
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
    uint32_t crc = apb_crc32(apb_crc32(apb_crc32(apb_crc32(0, &nl, 4), name, nl), &b, 8), d, bytes);
    w->nrec++;
    APB_TRY(put(w, &nl, 4));
    APB_TRY(put(w, name, nl));
    APB_TRY(put(w, &b, 8));
    APB_TRY(put(w, &crc, 4));
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
             "step=%d\nstep_loss=%.17g\nstep_correct=%ld\nstep_seen=%ld\nstep_seconds=%.6f\n"
             "mean=%.9g,%.9g,%.9g\nstd=%.9g,%.9g,%.9g\nresize_short=%d\nnames=structural\nclasses=%s\n"
             "cmdline=%s\n%s",
             c->arch, apb_wquant_name(c->wq), apb_aquant_name(c->aq), c->quant_first, c->quant_last,
             c->fp_shortcut, c->per_channel, c->direct_alpha_grad, c->approx_sign, c->in_c, c->in_h,
             c->in_w, c->num_classes, c->prune_sparsity, meta->epoch, meta->best_acc, rng,
             meta->step, meta->step_loss, meta->step_correct, meta->step_seen, meta->step_seconds,
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
    uint32_t hcrc = apb_crc32(apb_crc32(apb_crc32(0, MAGIC2, 8), &hl, 4), h, hl);
    s = put(&w, MAGIC2, 8);
    if (!s)
        s = put(&w, &hl, 4);
    if (!s)
        s = put(&w, &hcrc, 4);
    if (!s)
        s = put(&w, h, hl);
    free(h);
    apb_param_ref refs[1024];
    int np = m ? apb_model_params((apb_model *)m, refs, 1024) : 0;
    if (np > 1024 && !s)
        s = apb_fail(APB_EINVAL, "%s: model has %d parameter tensors (at most 1024)", path, np);
    for (int i = 0; i < np && !s; i++)
        s = put_rec(&w, refs[i].var->name, refs[i].var->data, sizeof(float) * (size_t)refs[i].var->numel);
    for (int i = 0; m && i < m->nlayers && !s; i++) {
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
    if (!s && m) { /* no model: a checkpoint of extra records only */
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
        uint32_t nrec = w.nrec;
        s = put(&w, &nrec, 4);
    }
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

/* The name of a record as stored, printable (a damaged one may hold anything). */
static const char *shown_name(const unsigned char *p, size_t nl, char *buf, size_t n)
{
    size_t k = 0;
    for (; k < nl && k + 1 < n && k < 64; k++)
        buf[k] = p[k] >= 32 && p[k] < 127 ? (char)p[k] : '?';
    buf[k] = 0;
    return buf;
}

static apb_status add_record(apb_ckpt *ck, int *cap, const unsigned char *name, uint32_t nl,
                             const unsigned char *data, size_t bytes)
{
    if (ck->nrec == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        apb_ckpt_blob *r = realloc(ck->rec, sizeof *r * (size_t)*cap);
        if (!r)
            return apb_fail(APB_ENOMEM, "%s: out of memory", ck->path);
        ck->rec = r;
    }
    /* names are stored without a terminator: keep a terminated copy */
    char *nm = malloc(nl + 1);
    if (!nm)
        return apb_fail(APB_ENOMEM, "%s: out of memory", ck->path);
    memcpy(nm, name, nl);
    nm[nl] = 0;
    ck->rec[ck->nrec++] = (apb_ckpt_blob){nm, bytes, data};
    return APB_OK;
}

/* The header text at f + hoff [hl] into ck->meta. */
static apb_status parse_header(apb_ckpt *ck, size_t hoff, uint32_t hl)
{
    const char *path = ck->path;
    const unsigned char *f = ck->file;
    apb_status s = APB_OK;
    char *h = malloc(hl + 1);
    if (!h)
        return apb_fail(APB_ENOMEM, "%s: out of memory", path);
    memcpy(h, f + hoff, hl);
    h[hl] = 0;
    apb_ckpt_meta *me = &ck->meta;
    apb_model_cfg *c = &me->model;
    char b[2048];
    if (!apb_kv_get(h, "arch", c->arch, sizeof c->arch) || !apb_kv_get(h, "wq", b, sizeof b) ||
        apb_wquant_parse(b, &c->wq, NULL) || !apb_kv_get(h, "aq", b, sizeof b) ||
        apb_aquant_parse(b, &c->aq)) {
        s = apb_fail(APB_EFORMAT, "%s: checkpoint header lacks a valid arch/wq/aq", path);
        free(h);
        return s;
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
        return s;
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
    if (apb_kv_get(h, "step", b, sizeof b) && (s = parse_int(path, h, "step", &me->step))) {
        free(h);
        return s;
    }
    if (apb_kv_get(h, "step_loss", b, sizeof b))
        me->step_loss = strtod(b, NULL);
    if (apb_kv_get(h, "step_correct", b, sizeof b))
        me->step_correct = strtol(b, NULL, 10);
    if (apb_kv_get(h, "step_seen", b, sizeof b))
        me->step_seen = strtol(b, NULL, 10);
    if (apb_kv_get(h, "step_seconds", b, sizeof b))
        me->step_seconds = strtod(b, NULL);
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
        c->in_w > 4096 || c->num_classes < 2 || c->num_classes > 100000)
        return apb_fail(APB_EFORMAT, "%s: checkpoint header: implausible geometry %dx%dx%d / %d classes",
                        path, c->in_c, c->in_h, c->in_w, c->num_classes);
    if (me->epoch < 0 || me->step < 0 || me->step_correct < 0 || me->step_seen < me->step_correct)
        return apb_fail(APB_EFORMAT, "%s: checkpoint header: implausible position epoch=%d step=%d "
                        "(%ld of %ld correct)", path, me->epoch, me->step, me->step_correct,
                        me->step_seen);
    return APB_OK;
}

/* Records of a version-1 file in [off, end): lengths only (the file CRC is checked). */
static apb_status records_v1(apb_ckpt *ck, size_t off, size_t end)
{
    const unsigned char *f = ck->file;
    const char *path = ck->path;
    int cap = 0;
    while (off < end) {
        uint32_t nl;
        uint64_t bytes;
        if (end - off < 4)
            return apb_fail(APB_EFORMAT, "%s: truncated record at byte %zu", path, off);
        memcpy(&nl, f + off, 4);
        if (nl == 0 || nl > 256 || end - off - 4 < (size_t)nl + 8)
            return apb_fail(APB_EFORMAT, "%s: bad record name length %u at byte %zu", path, nl, off);
        const char *name = (const char *)f + off + 4;
        memcpy(&bytes, f + off + 4 + nl, 8);
        size_t data_off = off + 4 + nl + 8;
        if (bytes > end - data_off)
            return apb_fail(APB_EFORMAT, "%s: record '%.*s' claims %llu bytes, only %zu left", path,
                            (int)nl, name, (unsigned long long)bytes, end - data_off);
        APB_TRY(add_record(ck, &cap, f + off + 4, nl, f + data_off, (size_t)bytes));
        off = data_off + (size_t)bytes;
    }
    return APB_OK;
}

/* Records of a version-2 file in [off, end), each with its length and CRC
 * checked; errors name the record (number, offset and name as stored). */
static apb_status records_v2(apb_ckpt *ck, size_t off, size_t end)
{
    const unsigned char *f = ck->file;
    const char *path = ck->path;
    int cap = 0;
    char shown[80];
    while (off < end) {
        int k = ck->nrec + 1;
        const char *prev = ck->nrec ? ck->rec[ck->nrec - 1].name : "the header";
        uint32_t nl, crc;
        uint64_t bytes;
        if (end - off < 4)
            return apb_fail(APB_EFORMAT, "%s: record %d (at byte %zu, after %s): truncated", path, k,
                            off, prev);
        memcpy(&nl, f + off, 4);
        if (nl == 0 || nl > 256 || end - off - 4 < (size_t)nl + 12)
            return apb_fail(APB_EFORMAT, "%s: record %d (at byte %zu, after %s): name length %u out "
                            "of range or record truncated", path, k, off, prev, nl);
        const unsigned char *name = f + off + 4;
        memcpy(&bytes, name + nl, 8);
        memcpy(&crc, name + nl + 8, 4);
        size_t data_off = off + 4 + nl + 12;
        shown_name(name, nl, shown, sizeof shown);
        if (bytes > end - data_off)
            return apb_fail(APB_EFORMAT, "%s: record %d '%s' (at byte %zu) claims %llu bytes, only %zu "
                            "left: truncated or corrupt", path, k, shown, off,
                            (unsigned long long)bytes, end - data_off);
        uint32_t want = apb_crc32(apb_crc32(0, f + off, 4 + (size_t)nl + 8), f + data_off, (size_t)bytes);
        if (want != crc)
            return apb_fail(APB_EFORMAT, "%s: record %d '%s' (at byte %zu, %llu bytes): checksum "
                            "mismatch, the file is corrupt", path, k, shown, off,
                            (unsigned long long)bytes);
        APB_TRY(add_record(ck, &cap, name, nl, f + data_off, (size_t)bytes));
        off = data_off + (size_t)bytes;
    }
    return APB_OK;
}

/* Validates ck->file [ck->size] (owned by ck) and fills ck. */
static apb_status parse_file(apb_ckpt *ck)
{
    const unsigned char *f = ck->file;
    size_t n = ck->size;
    const char *path = ck->path;
    int v2 = n >= 8 && memcmp(f, MAGIC2, 8) == 0;
    if (n < 16 || (!v2 && memcmp(f, MAGIC1, 8) != 0))
        return apb_fail(APB_EFORMAT, "%s: not an apb checkpoint (bad magic%s)", path,
                        n < 16 ? ", or shorter than 16 bytes" : "");
    uint32_t hl, crc;
    memcpy(&hl, f + 8, 4);
    if (!v2) {
        memcpy(&crc, f + n - 4, 4);
        if (apb_crc32(0, f, n - 4) != crc)
            return apb_fail(APB_EFORMAT, "%s: checkpoint is corrupt or truncated (CRC mismatch)", path);
        if (hl >= (1 << 18) || 12 + (size_t)hl > n - 4)
            return apb_fail(APB_EFORMAT, "%s: checkpoint header length %u out of range", path, hl);
        APB_TRY(parse_header(ck, 12, hl));
        return records_v1(ck, 12 + hl, n - 4);
    }
    /* the header (16 bytes + text) and the trailer (8 bytes) must fit */
    if (n < 24 || hl >= (1 << 18) || (size_t)hl > n - 24)
        return apb_fail(APB_EFORMAT, "%s: header length %u out of range for a %zu-byte file "
                        "(truncated or corrupt)", path, hl, n);
    memcpy(&crc, f + 12, 4);
    if (apb_crc32(apb_crc32(0, f, 12), f + 16, hl) != crc)
        return apb_fail(APB_EFORMAT, "%s: header (%u bytes): checksum mismatch, the file is corrupt",
                        path, hl);
    APB_TRY(parse_header(ck, 16, hl));
    APB_TRY(records_v2(ck, 16 + (size_t)hl, n - 8));
    uint32_t nrec;
    memcpy(&nrec, f + n - 8, 4);
    memcpy(&crc, f + n - 4, 4);
    if (nrec != (uint32_t)ck->nrec)
        return apb_fail(APB_EFORMAT, "%s: trailer counts %u records, the file holds %d: truncated or "
                        "corrupt", path, nrec, ck->nrec);
    if (apb_crc32(0, f, n - 4) != crc)
        return apb_fail(APB_EFORMAT, "%s: trailer: file checksum mismatch, the file is corrupt", path);
    return APB_OK;
}

apb_status apb_ckpt_load(const char *path, apb_ckpt *ck)
{
    memset(ck, 0, sizeof *ck);
    snprintf(ck->path, sizeof ck->path, "%s", path);
    if (apb_is_directory(path))
        return ckpt_dir_error(path);
    APB_TRY(apb_file_read(path, &ck->file, &ck->size));
    apb_status s = parse_file(ck);
    if (s)
        apb_ckpt_free(ck);
    return s;
}

apb_status apb_ckpt_load_memory(const void *data, size_t size, const char *path, apb_ckpt *ck)
{
    memset(ck, 0, sizeof *ck);
    snprintf(ck->path, sizeof ck->path, "%s", path);
    ck->file = malloc(size ? size : 1);
    if (!ck->file)
        return apb_fail(APB_ENOMEM, "%s: out of memory for %zu bytes", path, size);
    memcpy(ck->file, data, size);
    ck->size = size;
    apb_status s = parse_file(ck);
    if (s)
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
    /* every parameter must be stored in the file: a header claiming a larger
     * model is refused before its tensors are allocated */
    apb_model_cfg cfg = ck->meta.model;
    cfg.max_params = (int64_t)(ck->size / sizeof(float));
    apb_status s = !strcmp(cfg.arch, "graph") ? graph_model(ck, &cfg, 0, out)
                                              : apb_model_build(&cfg, 0, out);
    if (s)
        return apb_fail_context(s, "%s", ck->path);
    (*out)->cfg.max_params = 0;
    s = apb_ckpt_fill_model(ck, *out, 1, NULL, 0);
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
