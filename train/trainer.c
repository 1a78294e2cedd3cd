/* trainer.c - training loop, evaluation, budget projection (see trainer.h). */
#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "checkpoint.h"
#include "cpu.h"
#include "dist.h"
#include "fileio.h"
#include "optim.h"
#include "stop.h"
#include "threads.h"

void apb_train_cfg_default(apb_train_cfg *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data_spec, sizeof c->data_spec, "fashion-mnist");
    snprintf(c->model.arch, sizeof c->model.arch, "convnet");
    c->epochs = 1;
    c->batch = 128;
    c->lr = 0.05f;
    c->wd = 5e-4f;
    c->momentum = 0.9f;
    c->quant_lr = 1e-4f;
    c->freeze_at = 0.5f;
    c->img_size = 0;
    c->seed = 1;
}

void apb_train_cfg_to_text(const apb_train_cfg *c, char *buf, size_t n)
{
    snprintf(buf, n,
             "data=%s\nepochs=%d\nbatch=%d\nlr=%.9g\nwd=%.9g\nmomentum=%.9g\noptim=%d\nnesterov=%d\n"
             "quant_lr=%.9g\nfreeze_at=%.9g\nbudget_bits=%.9g\nbudget_spread=%d\nbudget_alpha=%d\nlabel_smoothing=%.9g\n"
             "warmup=%.9g\nimg_size=%d\nlimit_train=%d\nlimit_test=%d\nthreads=%d\nseed=%llu\n"
             "init=%s\nval=%d\n",
             c->data_spec, c->epochs, c->batch, c->lr, c->wd, c->momentum, c->optim, c->nesterov,
             c->quant_lr, c->freeze_at, c->budget_bits, c->budget_spread, c->budget_alpha, c->label_smoothing,
             c->warmup, c->img_size, c->limit_train, c->limit_test, c->threads,
             (unsigned long long)c->seed, c->init_ckpt, c->val);
    /* written only when set, so a one-process run's options read as before */
    size_t o = strlen(buf);
    if (c->sync_bn && o < n)
        o += (size_t)snprintf(buf + o, n - o, "sync_bn=1\n");
    if (c->procs > 1 && o < n)
        o += (size_t)snprintf(buf + o, n - o, "procs=%d\n", c->procs);
    if (c->budget_warmup > 0 && o < n)
        o += (size_t)snprintf(buf + o, n - o, "budget_warmup=%.9g\n", c->budget_warmup);
    if (c->bn_reestimate > 0 && o < n)
        snprintf(buf + o, n - o, "bn_reestimate=%d\n", c->bn_reestimate);
}

apb_status apb_train_cfg_from_text(const char *t, apb_train_cfg *c)
{
    char b[1024];
#define GETS(k, dst)                                                                  \
    if (apb_kv_get(t, k, b, sizeof b))                                                \
        snprintf(dst, sizeof dst, "%s", b);
#define GETI(k, dst)                                                                  \
    if (apb_kv_get(t, k, b, sizeof b))                                                \
        dst = atoi(b);
#define GETF(k, dst)                                                                  \
    if (apb_kv_get(t, k, b, sizeof b))                                                \
        dst = strtof(b, NULL);
    if (!apb_kv_get(t, "data", b, sizeof b))
        return apb_fail(APB_EFORMAT, "checkpoint has no training options (data=...)");
    GETS("data", c->data_spec);
    GETI("epochs", c->epochs);
    GETI("batch", c->batch);
    GETF("lr", c->lr);
    GETF("wd", c->wd);
    GETF("momentum", c->momentum);
    GETI("optim", c->optim);
    GETI("nesterov", c->nesterov);
    GETF("quant_lr", c->quant_lr);
    GETF("freeze_at", c->freeze_at);
    GETF("budget_bits", c->budget_bits);
    GETI("budget_spread", c->budget_spread);
    /* checkpoints older than the option trained with a learned alpha */
    c->budget_alpha = 0;
    GETI("budget_alpha", c->budget_alpha);
    GETF("label_smoothing", c->label_smoothing);
    GETF("warmup", c->warmup);
    GETI("img_size", c->img_size);
    GETI("limit_train", c->limit_train);
    GETI("limit_test", c->limit_test);
    GETI("val", c->val);
    GETI("threads", c->threads);
    if (apb_kv_get(t, "seed", b, sizeof b))
        c->seed = strtoull(b, NULL, 10);
    GETS("init", c->init_ckpt);
    c->sync_bn = 0;
    GETI("sync_bn", c->sync_bn);
    c->procs = 1;
    GETI("procs", c->procs);
    c->budget_warmup = 0;
    GETF("budget_warmup", c->budget_warmup);
    c->bn_reestimate = 0;
    GETI("bn_reestimate", c->bn_reestimate);
#undef GETS
#undef GETI
#undef GETF
    return APB_OK;
}

apb_status apb_open_data(const char *spec, const char *split, int limit, int img_size, int train,
                         int batch, uint64_t seed, int threads, apb_dataset **ds, apb_loader **ld,
                         apb_transform *t)
{
    *ds = NULL;
    *ld = NULL;
    return apb_open_data_split(spec, split, limit, 0, 0, img_size, train, batch, seed, threads, ds,
                               ld, t);
}

/* The validation split depends on the data and its size only. */
#define APB_VAL_SEED 0x7A11DA7Eu

apb_status apb_open_data_split(const char *spec, const char *split, int limit, int nval,
                               int keep_val, int img_size, int train, int batch, uint64_t seed,
                               int threads, apb_dataset **ds, apb_loader **ld, apb_transform *t)
{
    return apb_open_data_shard(spec, split, limit, nval, keep_val, img_size, train, batch, seed,
                               threads, 0, 1, ds, ld, t);
}

apb_status apb_open_data_shard(const char *spec, const char *split, int limit, int nval,
                               int keep_val, int img_size, int train, int batch, uint64_t seed,
                               int threads, int rank, int nranks, apb_dataset **ds,
                               apb_loader **ld, apb_transform *t)
{
    *ds = NULL;
    *ld = NULL;
    APB_TRY(apb_dataset_open(spec, split, ds));
    if (limit > 0)
        apb_dataset_limit(*ds, limit);
    apb_status s = nval > 0 ? apb_dataset_holdout(*ds, nval, APB_VAL_SEED, keep_val) : APB_OK;
    if (!s)
        s = apb_transform_default(*ds, train, img_size, t);
    /* training drops the last partial batch (steady batch statistics), except
     * when the whole set is smaller than one batch: it then trains one batch of
     * all images instead of none */
    int drop_last = train && apb_dataset_size(*ds) >= (int64_t)batch * nranks;
    if (!s)
        s = apb_loader_create(*ds, t, batch, train, drop_last, seed, threads, ld);
    if (!s && nranks > 1 && (s = apb_loader_shard(*ld, rank, nranks))) {
        apb_fail_context(s, "%s (%s split)", spec, split);
        apb_loader_free(*ld);
        *ld = NULL;
    }
    if (s) {
        apb_dataset_free(*ds);
        *ds = NULL;
    }
    return s;
}

/* ---- evaluation --------------------------------------------------------- */

/* What an evaluation adds up: loss * batch size, top-1 and top-5 hits, images. */
typedef struct {
    double loss;
    long c1, c5, n;
} eval_sums;

static void eval_finish(const eval_sums *e, apb_eval_result *r)
{
    double loss = e->loss;
    long c1 = e->c1, c5 = e->c5, n = e->n;
    r->n = (int)n;
    r->loss = n ? loss / (double)n : 0;
    r->top1 = n ? 100.0 * (double)c1 / (double)n : 0;
    r->top5 = n ? 100.0 * (double)c5 / (double)n : 0;
}

static apb_status evaluate_sums(apb_model *m, apb_loader *ld, eval_sums *e)
{
    memset(e, 0, sizeof *e);
    apb_arena step;
    apb_arena_init(&step, "step", 32 << 20);
    apb_graph g;
    apb_graph_init(&g, &step, 0, 0, NULL);
    apb_status s = apb_loader_start_epoch(ld, 0);
    double loss = 0;
    long c1 = 0, c5 = 0, n = 0;
    while (!s) {
        const float *x;
        const int *y;
        int bn;
        s = apb_loader_next(ld, &x, &y, &bn);
        if (s || bn == 0)
            break;
        apb_var *logits, *l;
        s = apb_model_forward(m, &g, (float *)x, bn, &logits);
        int correct = 0;
        if (!s)
            s = apb_softmax_xent(&g, logits, y, 0.0f, &l, &correct);
        if (s)
            break;
        loss += (double)l->data[0] * bn;
        c1 += correct;
        int K = logits->dim[1];
        for (int i = 0; i < bn; i++) {
            const float *row = logits->data + (long)i * K;
            int above = 0;
            for (int k = 0; k < K; k++)
                above += row[k] > row[y[i]];
            c5 += above < 5;
        }
        n += bn;
        apb_graph_reset(&g);
    }
    apb_graph_free(&g);
    apb_arena_free(&step);
    if (s)
        return s;
    e->loss = loss;
    e->c1 = c1;
    e->c5 = c5;
    e->n = n;
    return APB_OK;
}

apb_status apb_evaluate(apb_model *m, apb_loader *ld, apb_eval_result *r)
{
    memset(r, 0, sizeof *r);
    eval_sums e;
    APB_TRY(evaluate_sums(m, ld, &e));
    eval_finish(&e, r);
    return APB_OK;
}

/* apb_evaluate over the shards of every process (data-parallel training): the
 * sums of each process's shard, added in process order, identical everywhere. */
static apb_status evaluate_procs(apb_model *m, apb_loader *ld, apb_eval_result *r)
{
    int P = apb_dist_size();
    if (P == 1)
        return apb_evaluate(m, ld, r);
    memset(r, 0, sizeof *r);
    eval_sums e;
    APB_TRY(evaluate_sums(m, ld, &e));
    double mine[4] = {e.loss, (double)e.c1, (double)e.c5, (double)e.n};
    double *all = malloc(sizeof(double) * 4 * (size_t)P);
    if (!all)
        return apb_fail(APB_ENOMEM, "out of memory for the evaluation sums of %d processes", P);
    apb_status s = apb_dist_gather_f64(mine, 4, all);
    if (!s) {
        e.loss = all[0];
        e.c1 = (long)all[1];
        e.c5 = (long)all[2];
        e.n = (long)all[3];
        for (int p = 1; p < P; p++) {
            e.loss += all[4 * p];
            e.c1 += (long)all[4 * p + 1];
            e.c5 += (long)all[4 * p + 2];
            e.n += (long)all[4 * p + 3];
        }
        eval_finish(&e, r);
    }
    free(all);
    return s;
}

/* ---- budget projection -------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Relative score above which exactly the k largest of v[n] lie (sorts v in place):
 * the k-th score, nudged up past ties with the (k+1)-th so no more than k stay
 * full precision; INFINITY when k == 0. */
static float band_edge(float *v, int64_t n, int64_t k)
{
    if (k <= 0)
        return INFINITY;
    qsort(v, (size_t)n, sizeof(float), cmp_desc);
    float thr = v[k - 1];
    if (k < n && v[k] == thr)
        thr = nextafterf(thr, INFINITY);
    return thr;
}

/* delta = thr * alpha: weights with | |w| - alpha | / alpha >= thr stay full precision. */
static void set_band(apb_layer *l, float thr)
{
    for (int c = 0; c < l->alpha.numel; c++)
        l->delta.data[c] = thr == INFINITY ? 1e30f : thr * l->alpha.data[c];
}

static int is_apb(const apb_layer *l) { return apb_layer_compressed(l) && l->wq == APB_WQ_APB; }

/* Scores | |w| - alpha | / alpha of every APB weight into score[total] (layer order),
 * then the band edge: one over all layers (spread 0) or an equal fraction per layer
 * (spread 1), into thr[nlayers]. */
static void budget_thresholds(apb_model *m, float *score, int64_t total, int64_t S, int spread,
                              float *thr)
{
    int64_t o = 0;
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        if (!is_apb(l))
            continue;
        int na = (int)l->alpha.numel;
        int64_t per = l->w.numel / na;
        for (int64_t j = 0; j < l->w.numel; j++) {
            float a = l->alpha.data[na == 1 ? 0 : j / per];
            score[o++] = fabsf(fabsf(l->w.data[j]) - a) / a;
        }
    }
    if (spread == 0) {
        float t = band_edge(score, total, S);
        for (int i = 0; i < m->nlayers; i++)
            thr[i] = t;
        return;
    }
    double frac = (double)S / (double)total;
    o = 0;
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        if (!is_apb(l))
            continue;
        int64_t n = l->w.numel;
        thr[i] = band_edge(score + o, n, (int64_t)floor(frac * (double)n));
        o += n;
    }
}

/* alpha[c] = mean |w| over the weights of channel c that stay in the band for the
 * edge thr (relative score < thr): the least-squares scale of the binarized weights,
 * i.e. plain binary's scale restricted to them. Unchanged if none stays. */
static void fit_alpha(apb_layer *l, float thr)
{
    int na = (int)l->alpha.numel;
    int64_t per = l->w.numel / na;
    for (int c = 0; c < na; c++) {
        float a = l->alpha.data[c];
        double sum = 0;
        int64_t cnt = 0;
        for (int64_t j = (int64_t)c * per; j < (int64_t)(c + 1) * per; j++) {
            float w = l->w.data[j];
            if (fabsf(fabsf(w) - a) / a < thr) {
                sum += fabs((double)w);
                cnt++;
            }
        }
        if (cnt > 0 && sum > 0)
            l->alpha.data[c] = (float)(sum / (double)cnt);
    }
}

apb_status apb_budget_bits_check(double budget_bits)
{
    if (!(budget_bits >= 1 && budget_bits < 32))
        return apb_fail(APB_EINVAL,
                        "budget %g bits/weight is outside [1, 32): every compressed weight keeps "
                        "at least its sign bit, and 32 bits/weight is the full-precision model",
                        budget_bits);
    return APB_OK;
}

/* The cheapest a budget-mode model can be: every APB weight binarized (its sign
 * bit) plus alpha and delta (64 bits) per APB scale, and the other compressed
 * layers as they are. */
typedef struct {
    int64_t n;      /* weights of compressed layers: the budget is per one of them */
    int64_t napb;   /* weights of APB layers */
    int64_t nalpha; /* APB scales (one per layer, or per output channel) */
    double other;   /* bits of compressed non-APB layers */
} budget_floor;

static void budget_floor_of(const apb_model *m, budget_floor *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < m->nlayers; i++) {
        const apb_layer *l = &m->layers[i];
        if (!apb_layer_compressed(l))
            continue;
        f->n += l->w.numel;
        if (l->wq == APB_WQ_APB) {
            f->nalpha += l->alpha.numel;
            f->napb += l->w.numel;
        } else {
            f->other += l->wq == APB_WQ_BINARY ? (double)l->w.numel + 32 : 2.0 * l->w.numel + 32;
        }
    }
}

/* Bits left for full-precision weights under the budget; a budget that misses
 * the floor by float rounding only (the shown minimum typed back) is exact. */
static apb_status budget_avail(const apb_model *m, double budget_bits, double *avail)
{
    budget_floor f;
    budget_floor_of(m, &f);
    if (f.napb == 0)
        return apb_fail(APB_EINVAL, "--budget-bits needs APB layers (--quant apb)");
    double floor_bits = (double)f.napb + 64.0 * (double)f.nalpha + f.other;
    double min = floor_bits / (double)f.n;
    if (budget_bits < min * (1 - 1e-6))
        return apb_fail(APB_EINVAL,
                        "--budget-bits %g is below this model's minimum %.4f bits/weight: with every "
                        "weight binarized it still needs 1 sign bit per weight plus 64 bits (alpha "
                        "and delta) for each of its %lld APB scales%s, over %lld compressed weights",
                        budget_bits, ceil(min * 1e4) / 1e4, (long long)f.nalpha,
                        f.other > 0 ? " and the bits of its binary/q2 layers" : "", (long long)f.n);
    *avail = budget_bits * (double)f.n - floor_bits;
    return APB_OK;
}

/* apb_budget_project with a warm-up: `warm` in [0, 1] of the gap between the
 * budget's full-precision count and every APB weight is kept on top of it. */
static apb_status budget_project_warm(apb_model *m, double budget_bits, int spread, int fit,
                                      double warm, double *reached)
{
    int64_t total = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (is_apb(&m->layers[i]))
            total += m->layers[i].w.numel;
    double avail;
    APB_TRY(budget_avail(m, budget_bits, &avail));
    apb_model_memory mem;
    apb_model_memory_stats(m, &mem, NULL, NULL);
    int64_t S = avail > 0 ? (int64_t)floor(avail / (32.0 + mem.index_bits)) : 0;
    if (S > total)
        S = total;
    if (warm > 0)
        S += (int64_t)floor((double)(total - S) * (warm < 1 ? warm : 1));
    float *score = malloc(sizeof(float) * (size_t)total);
    float *thr = malloc(sizeof(float) * (size_t)m->nlayers);
    if (!score || !thr) {
        free(score);
        free(thr);
        return apb_fail(APB_ENOMEM, "budget: out of memory");
    }
    if (fit) {
        /* alpha owned by the projection: start from mean|W| (plain binary's scale),
         * then alternate top-S selection and the least-squares alpha of the weights
         * left in the band; two rounds settle it (the set changes by a few weights) */
        for (int i = 0; i < m->nlayers; i++)
            if (is_apb(&m->layers[i]))
                apb_binary_scale(m->layers[i].w.data, m->layers[i].w.numel,
                                 (int)m->layers[i].alpha.numel, m->layers[i].alpha.data);
        for (int round = 0; round < 2; round++) {
            budget_thresholds(m, score, total, S, spread, thr);
            for (int i = 0; i < m->nlayers; i++)
                if (is_apb(&m->layers[i]))
                    fit_alpha(&m->layers[i], thr[i]);
        }
    }
    /* the final edges use the final alpha, so exactly <= S weights stay full precision */
    budget_thresholds(m, score, total, S, spread, thr);
    for (int i = 0; i < m->nlayers; i++)
        if (is_apb(&m->layers[i]))
            set_band(&m->layers[i], thr[i]);
    free(score);
    free(thr);
    apb_model_memory_stats(m, &mem, NULL, NULL);
    if (reached)
        *reached = mem.bits_per_weight;
    return APB_OK;
}

apb_status apb_budget_project(apb_model *m, double budget_bits, int spread, int fit,
                              double *reached)
{
    return budget_project_warm(m, budget_bits, spread, fit, 0, reached);
}

/* The warm-up's share at training time t (epochs done, fractional). */
static double budget_warm_at(const apb_train_cfg *c, double t)
{
    if (c->budget_warmup <= 0)
        return 0;
    double w = 1 - t / ((double)c->budget_warmup * c->epochs);
    return w > 0 ? w : 0;
}

apb_status apb_bn_reestimate(apb_model *m, apb_loader *ld, int epoch, int n, const apb_graph_share *share)
{
    int has_bn = 0;
    for (int i = 0; i < m->nlayers; i++)
        has_bn |= m->layers[i].rmean != NULL;
    if (!has_bn)
        return APB_OK;
    apb_status s = apb_loader_start_epoch_at(ld, epoch, 0);
    apb_arena step;
    apb_arena_init(&step, "bn-reestimate", 64 << 20);
    apb_rng rng;
    apb_rng_seed(&rng, apb_hash3(0xB4E57ull, (uint64_t)epoch, 0));
    apb_graph g;
    apb_graph_init(&g, &step, 1, 0, &rng);
    g.share = share;
    for (int k = 0; s == APB_OK && k < n; k++) {
        const float *x;
        const int *y;
        int bn;
        apb_var *logits;
        if ((s = apb_loader_next(ld, &x, &y, &bn)) || bn == 0)
            break;
        m->bn_momentum = 1.0f / (float)(k + 1);
        s = apb_model_forward(m, &g, (float *)x, bn, &logits);
        apb_graph_reset(&g);
    }
    m->bn_momentum = 0;
    apb_graph_free(&g);
    apb_arena_free(&step);
    return s;
}

/* ---- training ----------------------------------------------------------- */

typedef struct {
    apb_train_cfg *cfg;
    apb_model *model;
    apb_optim *opt;
    int g_weight, g_nodecay, g_quant, g_band; /* g_band: -1 unless the projection owns alpha */
    apb_rng rng;
    int epoch0;
    double best_acc;
    const apb_dataset *classes; /* for class names in checkpoints */
    apb_transform eval_t;       /* preprocessing recorded in checkpoints */
    char *log;      /* log.csv content so far */
    size_t loglen, logcap;
    /* the position inside an epoch that the next checkpoint records (stop_run);
     * all zero for the usual end-of-epoch checkpoint */
    int step;
    double step_loss, step_seconds;
    long step_correct, step_seen;
    const int *order; /* the epoch's loader order [norder] */
    int norder;
    int wrote_last;   /* last.ckpt was written by this process */
} run_state;

static apb_status log_append(run_state *r, const char *line)
{
    size_t n = strlen(line);
    if (r->loglen + n + 1 > r->logcap) {
        size_t nc = (r->logcap + n + 1) * 2;
        char *p = realloc(r->log, nc);
        if (!p)
            return apb_fail(APB_ENOMEM, "out of memory");
        r->log = p;
        r->logcap = nc;
    }
    memcpy(r->log + r->loglen, line, n + 1);
    r->loglen += n;
    return APB_OK;
}

static const char LOG_HEADER[] =
    "epoch,lr,train_loss,train_acc,test_loss,test_acc,fp_fraction,bits_per_weight,seconds\n";
/* with --val: the same columns, then the validation ones */
static const char LOG_HEADER_VAL[] =
    "epoch,lr,train_loss,train_acc,test_loss,test_acc,fp_fraction,bits_per_weight,seconds,"
    "val_loss,val_acc\n";

/* Keeps the rows of an existing log.csv up to `epochs` (resume). */
static apb_status log_load(run_state *r, const char *path, int epochs)
{
    APB_TRY(log_append(r, r->cfg->val > 0 ? LOG_HEADER_VAL : LOG_HEADER));
    unsigned char *d;
    size_t n;
    if (apb_file_read(path, &d, &n) != APB_OK) {
        apb_clear_error();
        return APB_OK;
    }
    char *line = strtok((char *)d, "\n");
    while (line) {
        int e = atoi(line);
        if (e >= 1 && e <= epochs) {
            log_append(r, line);
            log_append(r, "\n");
        }
        line = strtok(NULL, "\n");
    }
    free(d);
    return APB_OK;
}

/* v is an APB layer's alpha or delta */
static int is_band_param(const apb_model *m, const apb_var *v)
{
    for (int i = 0; i < m->nlayers; i++)
        if (is_apb(&m->layers[i]) && (v == &m->layers[i].alpha || v == &m->layers[i].delta))
            return 1;
    return 0;
}

static apb_status setup_optim(run_state *r)
{
    apb_train_cfg *c = r->cfg;
    apb_opt_kind k = c->optim == 1 ? APB_OPT_ADAM : c->optim == 2 ? APB_OPT_ADAMW : APB_OPT_SGD;
    APB_TRY(apb_optim_create(k, c->lr, c->momentum, c->nesterov, c->wd, &r->opt));
    r->g_weight = 0;
    apb_param_group nd = {.lr_scale = 1, .weight_decay = 0, .kind_override = -1};
    r->g_nodecay = apb_optim_add_group(r->opt, &nd);
    apb_param_group q = {.lr_scale = 1, .weight_decay = 0, .kind_override = APB_OPT_ADAM,
                         .lr_override = c->quant_lr, .min_value = 1e-6f};
    r->g_quant = apb_optim_add_group(r->opt, &q);
    /* budget mode with a fitted alpha: the projection owns APB alpha and delta, so
     * they sit in a group that never steps (its grads are still zeroed) */
    int own_band = c->budget_bits > 0 && c->budget_alpha;
    r->g_band = own_band ? apb_optim_add_group(r->opt, &q) : -1;
    if (own_band)
        apb_optim_set_frozen(r->opt, r->g_band, 1);
    apb_param_ref refs[1024];
    int np = apb_model_params(r->model, refs, 1024);
    if (np > 1024)
        return apb_fail(APB_EINVAL, "model has %d parameter tensors (at most 1024)", np);
    for (int i = 0; i < np && i < 1024; i++) {
        int grp = refs[i].role == APB_P_WEIGHT ? r->g_weight
                  : refs[i].role == APB_P_NODECAY ? r->g_nodecay : r->g_quant;
        if (own_band && grp == r->g_quant && is_band_param(r->model, refs[i].var))
            grp = r->g_band;
        APB_TRY(apb_optim_add_param(r->opt, refs[i].var, grp));
    }
    return APB_OK;
}

/* Gradual magnitude pruning (Zhu & Gupta): the sparsity follows a cubic ramp
 * s(p) = target * (1 - (1 - p)^3) over the first `ramp` steps of the run (the
 * steps before --freeze-at, or all of them), and the masks are recomputed every
 * `prune_every` steps: at least 16 times over the ramp whatever its length
 * (every 50 steps at most, as before for long runs), and at the ramp's last step,
 * where s reaches the target. A run of any length therefore ends at the target
 * sparsity, and no single update jumps by more than ~1/5 of it. */
static long prune_every(long ramp)
{
    long e = ramp / 16;
    return e < 1 ? 1 : e > 50 ? 50 : e;
}

static void prune_update(apb_model *m, long gstep, long ramp)
{
    long every = prune_every(ramp);
    if ((gstep + 1) % every != 0 && gstep + 1 != ramp)
        return;
    double p = (double)(gstep + 1) / (double)ramp;
    p = p > 1 ? 1 : p;
    float s = (float)(m->cfg.prune_sparsity * (1.0 - pow(1.0 - p, 3)));
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        if (l->mask)
            apb_prune_mask_update(l->w.data, l->w.numel, s, l->mask);
    }
}

static apb_status save_ckpt(run_state *r, const char *name, int epoch, double best)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", r->cfg->out_dir, name);
    apb_ckpt_meta *meta = calloc(1, sizeof *meta);
    if (!meta)
        return apb_fail(APB_ENOMEM, "out of memory");
    meta->model = r->model->cfg;
    apb_train_cfg_to_text(r->cfg, meta->train_opts, sizeof meta->train_opts);
    snprintf(meta->cmdline, sizeof meta->cmdline, "%s", r->cfg->cmdline);
    meta->epoch = epoch;
    meta->best_acc = best;
    meta->rng = r->rng;
    meta->step = r->step;
    meta->step_loss = r->step_loss;
    meta->step_correct = r->step_correct;
    meta->step_seen = r->step_seen;
    meta->step_seconds = r->step_seconds;
    for (int c = 0; c < 3; c++) {
        meta->mean[c] = r->eval_t.mean[c];
        meta->std[c] = r->eval_t.std[c];
    }
    meta->resize_short = r->eval_t.resize_short;
    size_t o = 0;
    for (int c = 0; c < apb_dataset_num_classes(r->classes); c++) {
        const char *nm = apb_dataset_class_name(r->classes, c);
        size_t len = strlen(nm);
        if (strpbrk(nm, "|\n") || o + len + 2 > sizeof meta->classes) {
            free(meta);
            return apb_fail(APB_EINVAL,
                            "class %d name '%s': contains '|' or a newline, or the %d class names exceed %zu bytes",
                            c, nm, apb_dataset_num_classes(r->classes), sizeof meta->classes);
        }
        o += (size_t)snprintf(meta->classes + o, sizeof meta->classes - o, "%s%s", c ? "|" : "", nm);
    }
    size_t os = apb_optim_state_size(r->opt);
    void *ob = malloc(os ? os : 1);
    apb_status s = ob ? apb_optim_state_save(r->opt, ob, os) : apb_fail(APB_ENOMEM, "out of memory");
    if (!s) {
        /* inside an epoch, the order it was stopped in: a resume checks that the
         * data still gives it (same files, same count), else it could not be exact */
        apb_ckpt_blob extra[2] = {{"optim.state", os, ob},
                                  {"loader.order", sizeof(int) * (size_t)r->norder, r->order}};
        s = apb_ckpt_save(path, meta, r->model, extra, r->step > 0 ? 2 : 1);
    }
    free(ob);
    free(meta);
    return s;
}

static int env_int(const char *name)
{
    const char *e = getenv(name);
    return e ? atoi(e) : 0;
}

/* DIR/last.ckpt, or an error that says why there is nothing to resume. */
static apb_status load_run_ckpt(const char *dir, apb_ckpt *ck)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    if (!apb_file_exists(path))
        return apb_fail(APB_EINVAL, "%s holds no run to resume: %s does not exist (it is written "
                        "when the first epoch finishes)", dir, path);
    return apb_ckpt_load(path, ck);
}

/* ---- data-parallel processes (dist.h; docs/DISTRIBUTED.md) ------------ */

/* DIR/last.ckpt read by process 0 and sent to the others, so the run folder
 * needs to exist on process 0's machine only. Every process calls it. */
static apb_status load_run_ckpt_shared(const char *dir, apb_ckpt *ck)
{
    if (apb_dist_size() == 1)
        return load_run_ckpt(dir, ck);
    char path[1200];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    unsigned char *data = NULL;
    size_t n = 0;
    apb_status s = APB_OK;
    if (apb_dist_rank() == 0) {
        if (!apb_file_exists(path))
            s = load_run_ckpt(dir, ck); /* its message */
        else
            s = apb_file_read(path, &data, &n);
    }
    int64_t len = s ? -1 : (int64_t)n;
    APB_TRY(apb_dist_bcast(&len, sizeof len, 0));
    if (len < 0) {
        free(data);
        return s ? s : apb_fail(APB_EIO, "process 0 could not read %s (its message is above)", path);
    }
    if (apb_dist_rank() != 0 && !(data = malloc(len ? (size_t)len : 1)))
        s = apb_fail(APB_ENOMEM, "out of memory for %s (%lld bytes)", path, (long long)len);
    /* all processes must join the copy or none: agree on the buffers first */
    int64_t short_of_memory = s != APB_OK;
    APB_TRY(apb_dist_sum_i64(&short_of_memory, 1));
    if (short_of_memory) {
        free(data);
        return s ? s : apb_fail(APB_ENOMEM, "another process has no memory for %s", path);
    }
    s = apb_dist_bcast(data, (size_t)len, 0);
    if (!s)
        s = apb_ckpt_load_memory(data, (size_t)len, path, ck);
    free(data);
    return s;
}

/* --sync-bn: batchnorm's gather (autograd.h apb_graph_share). A collective
 * that fails inside backward cannot be returned: the job ends. */
static void share_gather(void *ctx, const double *mine, int n, double *all)
{
    (void)ctx;
    if (apb_dist_gather_f64(mine, n, all) != APB_OK) {
        fprintf(stderr, "apb train: process %d: batchnorm statistics: %s\n", apb_dist_rank(),
                apb_errmsg());
        apb_dist_abort(1);
    }
}

/* The gradients of every optimizer parameter, flattened in parameter order
 * into one buffer, summed over processes (apb_dist_sum_f32: process order, in
 * buckets) and put back. */
typedef struct {
    apb_param_ref refs[1024];
    int np;
    float *flat; /* [total] */
    int64_t total;
} grad_sync;

static apb_status grad_sync_init(grad_sync *gs, apb_model *m)
{
    gs->np = apb_model_params(m, gs->refs, 1024);
    if (gs->np > 1024)
        return apb_fail(APB_EINVAL, "model has %d parameter tensors (at most 1024)", gs->np);
    gs->total = 0;
    for (int i = 0; i < gs->np; i++)
        gs->total += gs->refs[i].var->numel;
    gs->flat = malloc(sizeof(float) * (size_t)(gs->total ? gs->total : 1));
    if (!gs->flat)
        return apb_fail(APB_ENOMEM, "out of memory for the %lld gradients of all processes",
                        (long long)gs->total);
    return APB_OK;
}

/* Copies every parameter's gradient (grads) or value into gs->flat (to_flat)
 * or back out of it, in parameter order. */
static void grad_sync_copy(grad_sync *gs, int grads, int to_flat)
{
    int64_t o = 0;
    for (int i = 0; i < gs->np; i++) {
        apb_var *v = gs->refs[i].var;
        float *t = grads ? v->grad : v->data;
        size_t bytes = sizeof(float) * (size_t)v->numel;
        if (to_flat)
            memcpy(gs->flat + o, t, bytes);
        else
            memcpy(t, gs->flat + o, bytes);
        o += v->numel;
    }
}

static apb_status grad_sync_sum(grad_sync *gs)
{
    grad_sync_copy(gs, 1, 1);
    APB_TRY(apb_dist_sum_f32(gs->flat, gs->total));
    grad_sync_copy(gs, 1, 0);
    return APB_OK;
}

/* Process 0's parameter values to every process (after the first step of a
 * fresh run: an 8-bit activation step is calibrated on the first batch each
 * process sees, quant_act_int8.c). */
static apb_status grad_sync_bcast_params(grad_sync *gs)
{
    grad_sync_copy(gs, 0, 1);
    APB_TRY(apb_dist_bcast(gs->flat, sizeof(float) * (size_t)gs->total, 0));
    grad_sync_copy(gs, 0, 0);
    return APB_OK;
}

/* Process 0's batchnorm running statistics to every process: with statistics
 * per process (no --sync-bn) each process's running averages follow its own
 * batches; at every epoch end all take process 0's, so evaluation, the
 * checkpoint and a resumed run (which loads process 0's) agree. */
static apb_status bcast_bn_stats(apb_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        if (!l->rmean)
            continue;
        APB_TRY(apb_dist_bcast(l->rmean, sizeof(float) * (size_t)l->channels, 0));
        APB_TRY(apb_dist_bcast(l->rvar, sizeof(float) * (size_t)l->channels, 0));
    }
    return APB_OK;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

/* 64-bit FNV-1a of every parameter, prune mask and (with_bn) batchnorm
 * running statistic of the model, in layer order. */
static uint64_t model_hash(apb_model *m, const grad_sync *gs, int with_bn)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (int i = 0; i < gs->np; i++)
        h = fnv1a(h, gs->refs[i].var->data, sizeof(float) * (size_t)gs->refs[i].var->numel);
    for (int i = 0; i < m->nlayers; i++) {
        const apb_layer *l = &m->layers[i];
        if (l->mask)
            h = fnv1a(h, l->mask, sizeof(float) * (size_t)l->w.numel);
        if (with_bn && l->rmean) {
            h = fnv1a(h, l->rmean, sizeof(float) * (size_t)l->channels);
            h = fnv1a(h, l->rvar, sizeof(float) * (size_t)l->channels);
        }
    }
    return h;
}

/* The weights must be the same bits on every process: compares the hashes
 * (`when` says at which point of the run, for the message). */
static apb_status check_same_weights(apb_model *m, const grad_sync *gs, int with_bn,
                                     const char *when)
{
    int P = apb_dist_size();
    uint64_t mine = model_hash(m, gs, with_bn), all[1024], *h = P <= 1024 ? all : NULL;
    if (!h && !(h = malloc(sizeof(uint64_t) * (size_t)P)))
        return apb_fail(APB_ENOMEM, "out of memory for %d hashes", P);
    apb_status s = apb_dist_gather_u64(&mine, 1, h);
    char bad[256] = "";
    int nbad = 0;
    for (int p = 1; p < P && !s; p++) {
        if (h[p] == h[0])
            continue;
        if (nbad++ < 8)
            snprintf(bad + strlen(bad), sizeof bad - strlen(bad), "%s%d (%016llx)", nbad > 1 ? ", " : "",
                     p, (unsigned long long)h[p]);
    }
    if (!s && nbad)
        s = apb_fail(APB_ENUMERIC,
                     "%s: the model differs between processes: process 0 has hash %016llx, process%s %s%s: "
                     "they no longer take the same steps (different builds, libraries or CPUs "
                     "across machines?); stopped without writing a checkpoint",
                     when, (unsigned long long)h[0], nbad > 1 ? "es" : "", bad, nbad > 8 ? ", ..." : "");
    if (h != all)
        free(h);
    return s;
}

/* The stop request of any process (the largest signal number) in *sig, on
 * every process. Before the forward pass, which updates batchnorm's running
 * statistics: a stop must leave the model as the last finished step left it. */
static apb_status agree_stop(int *sig)
{
    int P = apb_dist_size();
    double mine = *sig, one[256], *all = P <= 256 ? one : malloc(sizeof(double) * (size_t)P);
    if (!all)
        return apb_fail(APB_ENOMEM, "out of memory for %d stop requests", P);
    apb_status s = apb_dist_gather_f64(&mine, 1, all);
    for (int p = 0; p < P && !s; p++)
        *sig = all[p] > *sig ? (int)all[p] : *sig;
    if (all != one)
        free(all);
    return s;
}

/* Setup is over on every process, with or without an error: the lowest
 * process that failed (its message is the one to print), or -1. */
static int agree_setup(int failed)
{
    int P = apb_dist_size();
    uint64_t mine = (uint64_t)failed, one[1024], *all = P <= 1024 ? one : malloc(sizeof(uint64_t) * (size_t)P);
    if (!all || apb_dist_gather_u64(&mine, 1, all) != APB_OK) {
        fprintf(stderr, "apb train: process %d: cannot agree on the start: %s\n", apb_dist_rank(),
                apb_errmsg());
        apb_dist_abort(1);
    }
    int low = -1;
    for (int p = 0; p < P && low < 0; p++)
        if (all[p])
            low = p;
    if (all != one)
        free(all);
    return low;
}

/* The options a resumed run continues with: those stored in its checkpoint. */
static apb_status cfg_from_ckpt(const apb_ckpt *ck, const char *dir, apb_train_cfg *c)
{
    apb_train_cfg_default(c);
    c->model = ck->meta.model;
    apb_status s = apb_train_cfg_from_text(ck->meta.train_opts, c);
    if (s)
        return apb_fail_context(s, "%s", ck->path);
    snprintf(c->resume_dir, sizeof c->resume_dir, "%s", dir);
    snprintf(c->out_dir, sizeof c->out_dir, "%s", dir);
    snprintf(c->cmdline, sizeof c->cmdline, "%s", ck->meta.cmdline);
    return APB_OK;
}

apb_status apb_train_load_run(const char *dir, apb_train_cfg *c, int *epochs_done,
                              double *best_acc)
{
    apb_ckpt ck;
    APB_TRY(load_run_ckpt(dir, &ck));
    apb_status s = cfg_from_ckpt(&ck, dir, c);
    *epochs_done = ck.meta.epoch;
    *best_acc = ck.meta.best_acc;
    apb_ckpt_free(&ck);
    return s;
}

/* What a run writes into its folder. */
static const char *const RUN_FILES[] = {"last.ckpt", "best.ckpt", "log.csv"};
#define NRUN_FILES (int)(sizeof RUN_FILES / sizeof RUN_FILES[0])

apb_status apb_train_out_check(const char *dir)
{
    char found[64] = "";
    for (int i = 0; i < NRUN_FILES; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, RUN_FILES[i]);
        if (apb_file_exists(path))
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%s", found[0] ? ", " : "",
                     RUN_FILES[i]);
    }
    if (!found[0])
        return APB_OK;
    return apb_fail(APB_EINVAL,
                    "--out %s already holds a run (%s): continue it with `apb train --resume %s`, "
                    "choose another --out, or add --force to train a new run over it",
                    dir, found, dir);
}

/* A fresh run must not replace the checkpoint it starts from, whatever path
 * names it (./, symbolic or hard links): compared by device and inode. */
static apb_status check_init_not_output(const apb_train_cfg *c)
{
    struct stat si;
    if (!c->init_ckpt[0] || stat(c->init_ckpt, &si) != 0)
        return APB_OK; /* loading it reports a missing file */
    for (int i = 0; i < NRUN_FILES; i++) {
        char path[1200];
        struct stat so;
        snprintf(path, sizeof path, "%s/%s", c->out_dir, RUN_FILES[i]);
        if (stat(path, &so) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
            return apb_fail(APB_EINVAL,
                            "--init %s is the %s this run would write into --out %s: choose another "
                            "--out (or copy the checkpoint elsewhere and --init the copy)",
                            c->init_ckpt, RUN_FILES[i], c->out_dir);
    }
    return APB_OK;
}

/* A run stopped inside an epoch goes on only in the order it was stopped in. */
static apb_status check_order(const apb_ckpt *ck, const apb_loader *ld, int epoch)
{
    const apb_ckpt_blob *b = apb_ckpt_find(ck, "loader.order");
    int n;
    const int *order = apb_loader_order(ld, &n);
    if (!b)
        return apb_fail(APB_EFORMAT, "%s: stopped inside epoch %d but holds no loader.order record",
                        ck->path, epoch + 1);
    if (b->bytes != sizeof(int) * (size_t)n || memcmp(b->data, order, b->bytes))
        return apb_fail(APB_EINVAL,
                        "%s: the training data gives epoch %d another order than the one the run was "
                        "stopped in (%zu images then, %d now): the data changed, so the run cannot go "
                        "on exactly; restore the data or train a new run",
                        ck->path, epoch + 1, b->bytes / sizeof(int), n);
    return APB_OK;
}

static const char *signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a stop request";
}

/* A stop was requested before batch b of epoch `epoch` (0-based): write
 * last.ckpt with the position inside the epoch when steps were taken since the
 * last one (dirty), and return APB_ESTOPPED saying what DIR/last.ckpt holds. */
static apb_status stop_run(run_state *r, apb_loader *ld, int epoch, int b, int nb, int dirty,
                           double loss_sum, long correct, long seen, double seconds, int resumed)
{
    int sig = apb_stop_requested();
    const char *dir = r->cfg->out_dir;
    if (!dirty) {
        if (resumed || r->wrote_last)
            return apb_fail(APB_ESTOPPED, "stopped by %s in epoch %d after batch %d of %d: %s/last.ckpt "
                            "already holds this point", signal_name(sig), epoch + 1, b, nb, dir);
        return apb_fail(APB_ESTOPPED, "stopped by %s before the first step: nothing to resume",
                        signal_name(sig));
    }
    r->step = b;
    r->step_loss = loss_sum;
    r->step_correct = correct;
    r->step_seen = seen;
    r->step_seconds = seconds;
    r->order = apb_loader_order(ld, &r->norder);
    /* test hook: a second signal while this checkpoint is being written */
    if (getenv("APB_DEBUG_SIGNAL_IN_SAVE"))
        apb_fileio_fault(3, 0, sig, NULL);
    /* processes: the sums and the position are everyone's; process 0 writes */
    apb_status s = apb_dist_rank() == 0 ? save_ckpt(r, "last.ckpt", epoch, r->best_acc) : APB_OK;
    if (s)
        return apb_fail_context(s, "stopping on %s", signal_name(sig));
    return apb_fail(APB_ESTOPPED, "stopped by %s in epoch %d after batch %d of %d: %s/last.ckpt holds "
                    "this point", signal_name(sig), epoch + 1, b, nb, dir);
}

apb_status apb_train_run(apb_train_cfg *cfg, double *final_acc)
{
    apb_status s = APB_OK;
    run_state r = {.cfg = cfg};
    apb_dataset *dtr = NULL, *dte = NULL, *dva = NULL;
    apb_loader *ltr = NULL, *lte = NULL, *lva = NULL;
    apb_transform ttr, tte, tva;
    apb_ckpt ck = {0};
    int have_ck = 0;
    apb_arena step;
    apb_arena_init(&step, "step", 64 << 20);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r.rng);
    /* data-parallel: P processes, this one is `rank`; P == 1 is the plain run */
    int P = apb_dist_size(), rank = apb_dist_rank();
    int started = 0; /* every process has passed the set-up (agree_setup) */
    int shared = P == 1; /* the error returned was reached by every process together */
    grad_sync gs = {.flat = NULL};
    apb_graph_share share = {P, share_gather, NULL};
    apb_rng step_rng; /* P > 1: this process's dropout randomness for the step */
    FILE *losslog = NULL;
    cfg->err_shared = cfg->err_print = 1;

    if (cfg->resume_dir[0]) {
        int threads = cfg->threads, quiet = cfg->quiet, epochs = cfg->resume_epochs;
        if ((s = load_run_ckpt_shared(cfg->resume_dir, &ck)))
            goto done;
        have_ck = 1;
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", cfg->resume_dir);
        if ((s = cfg_from_ckpt(&ck, dir, cfg)))
            goto done;
        if (threads > 0)
            cfg->threads = threads;
        cfg->quiet = quiet;
        if (epochs > 0 && epochs < cfg->epochs) {
            s = apb_fail(APB_EINVAL, "--epochs %d: the run in %s has %d epochs; a run can be extended, not shortened",
                         epochs, dir, cfg->epochs);
            goto done;
        }
        /* the total is part of the stored options, so later resumes keep it */
        if (epochs > 0)
            cfg->epochs = epochs;
        if (cfg->procs != P) {
            s = apb_fail(APB_EINVAL, "%s was trained by %d process%s: resume it with the same number "
                         "(%s), not %d", ck.path, cfg->procs, cfg->procs > 1 ? "es" : "",
                         cfg->procs > 1 ? "mpirun -np N apb train --resume DIR" : "apb train --resume DIR without mpirun",
                         P);
            goto done;
        }
    } else if ((s = check_init_not_output(cfg))) {
        goto done;
    } else {
        cfg->procs = P;
    }
    if (cfg->budget_bits != 0 && (s = apb_budget_bits_check(cfg->budget_bits))) {
        s = apb_fail_context(s, "--budget-bits");
        goto done;
    }
    if (cfg->budget_warmup > 0 && cfg->budget_bits <= 0) {
        s = apb_fail(APB_EINVAL, "--budget-warmup needs a budget (--quant apb --budget-bits B)");
        goto done;
    }
    if (cfg->threads > 0)
        apb_threads_set(cfg->threads);
    int threads = apb_threads_get();
    if (cfg->epochs < 1 || cfg->batch < 1) {
        s = apb_fail(APB_EINVAL, "--epochs and --batch must be >= 1");
        goto done;
    }
    if (cfg->val < 0) {
        s = apb_fail(APB_EINVAL, "--val %d: the validation split is a number of images >= 0", cfg->val);
        goto done;
    }
    /* with P processes each loader serves this process's part of every global
     * batch; evaluation is sharded the same way and its sums reduced */
    if ((s = apb_open_data_shard(cfg->data_spec, "train", cfg->limit_train, cfg->val, 0,
                                 cfg->img_size, 1, cfg->batch, cfg->seed, threads, rank, P, &dtr,
                                 &ltr, &ttr)))
        goto done;
    if (cfg->val > 0 &&
        (s = apb_open_data_shard(cfg->data_spec, "train", cfg->limit_train, cfg->val, 1,
                                 cfg->img_size, 0, cfg->batch < 256 ? cfg->batch : 256, cfg->seed,
                                 threads, rank, P, &dva, &lva, &tva)))
        goto done;
    if ((s = apb_open_data_shard(cfg->data_spec, "test", cfg->limit_test, 0, 0, cfg->img_size, 0,
                                 cfg->batch < 256 ? cfg->batch : 256, cfg->seed, threads, rank, P,
                                 &dte, &lte, &tte)))
        goto done;
    r.classes = dtr;
    r.eval_t = tte;
    cfg->model.in_c = ttr.out_c;
    cfg->model.in_h = ttr.out_h;
    cfg->model.in_w = ttr.out_w;
    cfg->model.num_classes = apb_dataset_num_classes(dtr);
    if (have_ck && (ck.meta.model.in_c != cfg->model.in_c || ck.meta.model.in_h != cfg->model.in_h ||
                    ck.meta.model.in_w != cfg->model.in_w ||
                    ck.meta.model.num_classes != cfg->model.num_classes)) {
        s = apb_fail(APB_EINVAL, "%s: checkpoint geometry does not match the data", ck.path);
        goto done;
    }
    if ((s = apb_ckpt_build_model(&cfg->model, cfg->seed, have_ck ? &ck : NULL, cfg->init_ckpt,
                                  &r.model)))
        goto done;
    if (cfg->init_ckpt[0] && !have_ck) {
        apb_ckpt ic;
        if ((s = apb_ckpt_load(cfg->init_ckpt, &ic)))
            goto done;
        const apb_model_cfg *im = &ic.meta.model;
        char fresh[4096];
        if (strcmp(im->arch, cfg->model.arch))
            s = apb_fail(APB_EINVAL, "--init %s holds a %s model, not %s", cfg->init_ckpt, im->arch,
                         cfg->model.arch);
        else if (im->in_c != cfg->model.in_c)
            s = apb_fail(APB_EINVAL, "--init %s: input channels %d vs %d (the checkpoint's model "
                         "takes %dx%dx%d images, this data gives %dx%dx%d)", cfg->init_ckpt,
                         im->in_c, cfg->model.in_c, im->in_c, im->in_h, im->in_w, cfg->model.in_c,
                         cfg->model.in_h, cfg->model.in_w);
        else if (im->num_classes != cfg->model.num_classes)
            s = apb_fail(APB_EINVAL, "--init %s: classes %d vs %d (checkpoint vs this data)",
                         cfg->init_ckpt, im->num_classes, cfg->model.num_classes);
        if (!s)
            s = apb_ckpt_fill_model(&ic, r.model, 0, fresh, sizeof fresh);
        apb_ckpt_free(&ic);
        if (s)
            goto done;
        if (fresh[0] && !cfg->quiet)
            fprintf(stderr, "apb train: --init %s: not in the checkpoint, freshly initialised: %s\n",
                    cfg->init_ckpt, fresh);
        /* alpha = mean|W|, delta = 3 std(W) from the loaded weights */
        if ((s = apb_model_init_quant(r.model)))
            goto done;
    }
    apb_rng_seed(&r.rng, apb_hash3(cfg->seed, 0xD209, 0));
    if ((s = setup_optim(&r)))
        goto done;
    if (have_ck) {
        if ((s = apb_ckpt_fill_model(&ck, r.model, 1, NULL, 0)))
            goto done;
        const apb_ckpt_blob *ob = apb_ckpt_find(&ck, "optim.state");
        if (!ob) {
            s = apb_fail(APB_EFORMAT, "%s: no optimizer state", ck.path);
            goto done;
        }
        if ((s = apb_optim_state_load(r.opt, ob->data, ob->bytes)))
            goto done;
        r.rng = ck.meta.rng;
        r.epoch0 = ck.meta.epoch;
        r.best_acc = ck.meta.best_acc;
    }
    /* a run stopped inside an epoch goes on at its next batch */
    int step0 = have_ck && ck.meta.epoch < cfg->epochs ? ck.meta.step : 0;
    /* the model's own budget floor, before the folder exists: a refused run leaves none */
    double avail;
    if (cfg->budget_bits != 0 && (s = budget_avail(r.model, cfg->budget_bits, &avail)))
        goto done;
    if (P > 1) {
        if ((s = grad_sync_init(&gs, r.model)))
            goto done;
        /* the fused bn_relu has no shared statistics; unfused is bitwise the same */
        if (cfg->sync_bn) {
            r.model->unfused = 1;
            g.share = &share;
        }
        g.rng = &step_rng;
    }
    /* process 0 alone writes the run folder */
    if (rank == 0 && (s = apb_mkdirs(cfg->out_dir)))
        goto done;
    char logpath[1200];
    snprintf(logpath, sizeof logpath, "%s/log.csv", cfg->out_dir);
    if ((s = have_ck && rank == 0 ? log_load(&r, logpath, r.epoch0)
                                  : log_append(&r, cfg->val > 0 ? LOG_HEADER_VAL : LOG_HEADER)))
        goto done;
    const char *losslog_path = getenv("APB_DEBUG_LOSS_LOG");
    if (losslog_path && rank == 0 && !(losslog = fopen(losslog_path, "a"))) {
        s = apb_fail(APB_EIO, "APB_DEBUG_LOSS_LOG=%s: cannot open it for appending", losslog_path);
        goto done;
    }
    if (P > 1) {
        int low = agree_setup(0);
        started = 1;
        if (low >= 0) {
            s = apb_fail(APB_EINVAL, "process %d of %d could not start training (its message is above)",
                         low, P);
            cfg->err_print = 0;
            shared = 1;
            goto done;
        }
    }
    started = 1;

    int nb = apb_loader_batches_per_epoch(ltr);
    int freeze_epoch = (int)ceil(cfg->freeze_at * cfg->epochs);
    long prune_ramp = (long)ceil((cfg->freeze_at > 0 ? cfg->freeze_at : 1) * cfg->epochs * nb);
    if (prune_ramp < 1)
        prune_ramp = 1;
    int has_quant = 0, has_prune = 0;
    for (int i = 0; i < r.model->nlayers; i++) {
        has_quant |= r.model->layers[i].alpha.data != NULL;
        has_prune |= r.model->layers[i].mask != NULL;
    }
    int tty = isatty(2) && !cfg->quiet;
    int kill_at = env_int("APB_DEBUG_KILL_AT_STEP");
    /* test hook: raise SIGINT (APB_DEBUG_SIGNAL=TERM: SIGTERM) before global step N,
     * so a stop goes through the command's real handler at a known step */
    const char *sig_env = getenv("APB_DEBUG_SIGNAL_AT_STEP");
    long sig_at = sig_env ? atol(sig_env) : -1;
    int sig_kind = getenv("APB_DEBUG_SIGNAL") && !strcmp(getenv("APB_DEBUG_SIGNAL"), "TERM") ? SIGTERM : SIGINT;
    /* with processes, the kill and signal hooks hit one of them when
     * APB_DEBUG_KILL_RANK / APB_DEBUG_SIGNAL_RANK names it (all by default), and
     * APB_DEBUG_PERTURB_RANK=R changes one weight of process R after its first
     * step, so that the check of identical weights must fire */
    int kill_rank = getenv("APB_DEBUG_KILL_RANK") ? env_int("APB_DEBUG_KILL_RANK") : rank;
    int sig_rank = getenv("APB_DEBUG_SIGNAL_RANK") ? env_int("APB_DEBUG_SIGNAL_RANK") : rank;
    int perturb = P > 1 && getenv("APB_DEBUG_PERTURB_RANK") && env_int("APB_DEBUG_PERTURB_RANK") == rank;
    int dirty = 0; /* steps taken since last.ckpt was written */
    if (step0 > 0 && !cfg->quiet)
        fprintf(stderr, "apb train: %s/last.ckpt was stopped inside epoch %d: going on at batch %d of %d\n",
                cfg->out_dir, r.epoch0 + 1, step0 + 1, nb);
    if (!cfg->quiet) {
        apb_model_memory mem;
        apb_model_memory_stats(r.model, &mem, NULL, NULL);
        fprintf(stderr, "apb train: %s %s/%s on %s: %d train / %d test images, %d classes, %lld weights (%lld compressed), threads=%d isa=%s\n",
                cfg->model.arch, apb_wquant_name(cfg->model.wq), apb_aquant_name(cfg->model.aq),
                cfg->data_spec, apb_dataset_size(dtr), apb_dataset_size(dte), cfg->model.num_classes,
                (long long)mem.weights, (long long)mem.cweights, threads, apb_isa_name(apb_isa_active()));
        if (P > 1)
            fprintf(stderr, "apb train: %d processes x batch %d = %d images per step, batchnorm statistics %s\n",
                    P, cfg->batch, P * cfg->batch, cfg->sync_bn ? "over all processes (--sync-bn)" : "per process");
    }
    double acc = 0;
    for (int epoch = r.epoch0; epoch < cfg->epochs; epoch++) {
        int first = epoch == r.epoch0 ? step0 : 0; /* batches already done */
        double t0 = apb_now() - (first ? ck.meta.step_seconds : 0);
        int frozen = has_quant && epoch >= freeze_epoch;
        apb_optim_set_frozen(r.opt, r.g_quant, frozen);
        /* Budget mode keeps the model at its budget all along: delta is projected at
         * every epoch start and every 50 steps (alpha still learns until the freeze),
         * so the weights never train with more outliers than they may keep. A
         * resumed epoch already had its start (the checkpoint holds its delta). */
        if (has_quant && cfg->budget_bits > 0 && first == 0) {
            double reached;
            if ((s = budget_project_warm(r.model, cfg->budget_bits, cfg->budget_spread, cfg->budget_alpha,
                                         budget_warm_at(cfg, epoch), &reached)))
                goto done;
        }
        if ((s = apb_loader_start_epoch_at(ltr, epoch, first))) {
            if (first)
                apb_fail_context(s, "%s", ck.path);
            goto done;
        }
        if (first && (s = check_order(&ck, ltr, epoch)))
            goto done;
        double loss_sum = first ? ck.meta.step_loss : 0;
        long correct = first ? ck.meta.step_correct : 0, seen = first ? ck.meta.step_seen : 0;
        float lr = first ? apb_sched_lr(APB_SCHED_COSINE, cfg->lr, (double)((long)epoch * nb + first - 1) / nb,
                                        cfg->epochs, cfg->warmup, 0, 0)
                         : cfg->lr;
        for (int b = first;; b++) {
            const float *x;
            const int *y;
            int bn;
            long gstep = (long)epoch * nb + b;
            if (sig_at >= 0 && gstep == sig_at && sig_rank == rank)
                raise(sig_kind);
            /* the step before has finished: the place to stop; processes decide
             * together (a signal may have reached only some of them, or reached
             * them on both sides of this point) */
            int stop = apb_stop_requested();
            if (P > 1 && (s = agree_stop(&stop)))
                goto done;
            if (stop) {
                if (P > 1) {
                    apb_stop_request(stop); /* a process that saw no signal stops as if it had */
                    shared = 1;
                    if (dirty && (s = check_same_weights(r.model, &gs, 0, "at the stop")))
                        goto done;
                }
                s = stop_run(&r, ltr, epoch, b, nb, dirty, loss_sum, correct, seen, apb_now() - t0,
                             have_ck);
                if (s != APB_ESTOPPED)
                    shared = P == 1; /* process 0 could not write the checkpoint */
                goto done;
            }
            if ((s = apb_loader_next(ltr, &x, &y, &bn)))
                goto done;
            if (bn == 0)
                break;
            if (kill_at > 0 && gstep == kill_at && kill_rank == rank)
                _exit(137); /* test hook: simulate a kill mid-epoch */
            double t = (double)gstep / nb;
            lr = apb_sched_lr(APB_SCHED_COSINE, cfg->lr, t, cfg->epochs, cfg->warmup, 0, 0);
            apb_optim_set_lr(r.opt, lr);
            if (has_prune)
                prune_update(r.model, gstep, prune_ramp);
            apb_var *logits, *loss;
            int corr = 0;
            if (P > 1) /* dropout differs between processes, and is kept by (step, process) */
                apb_rng_seed(&step_rng, apb_hash3(cfg->seed, 0xD15D0000ull + (uint64_t)rank, (uint64_t)gstep));
            if ((s = apb_model_forward(r.model, &g, (float *)x, bn, &logits)))
                goto done;
            s = apb_softmax_xent(&g, logits, y, cfg->label_smoothing, &loss, &corr);
            if (s && s != APB_ENUMERIC)
                goto done;
            float lv = s ? NAN : loss->data[0];
            /* this step over all processes: loss * images, hits, images */
            double step_loss = (double)lv * bn;
            long step_correct = corr, step_seen = bn;
            if (P > 1) {
                /* the step's sums, added in process order so every process has
                 * the same bits */
                double mine[3] = {step_loss, corr, bn}, all1[3 * 64];
                double *all = P <= 64 ? all1 : apb_graph_alloc(&g, sizeof(double) * 3 * (size_t)P);
                if (!all || (s = apb_dist_gather_f64(mine, 3, all))) {
                    s = all ? s : APB_ENOMEM;
                    goto done;
                }
                step_loss = all[0];
                step_correct = (long)all[1];
                step_seen = (long)all[2];
                for (int p = 1; p < P; p++) {
                    step_loss += all[3 * p];
                    step_correct += (long)all[3 * p + 1];
                    step_seen += (long)all[3 * p + 2];
                }
                lv = (float)(step_loss / (double)step_seen);
                shared = !isfinite(step_loss); /* the error below, when it comes, is everyone's */
            }
            if (!isfinite(P > 1 ? step_loss : lv)) {
                if (epoch > 0)
                    s = apb_fail(APB_ENUMERIC,
                                 "loss is %s at epoch %d batch %d (lr %.4g); stopped. The last good checkpoint %s/last.ckpt (epoch %d) is intact",
                                 isnan(lv) ? "NaN" : "infinite", epoch + 1, b + 1, lr, cfg->out_dir, epoch);
                else
                    s = apb_fail(APB_ENUMERIC,
                                 "loss is %s at epoch 1 batch %d (lr %.4g); stopped before any checkpoint was written",
                                 isnan(lv) ? "NaN" : "infinite", b + 1, lr);
                goto done;
            }
            if (P == 1) {
                if ((s = apb_backward(&g, loss)))
                    goto done;
            } else {
                /* this process's share of the step's mean loss, so that every
                 * gradient (and --sync-bn's sums) is in units of the whole step */
                float w = (float)((double)bn / (double)step_seen);
                if ((s = apb_backward_from(&g, loss, &w)) || (s = grad_sync_sum(&gs)))
                    goto done;
            }
            apb_optim_step(r.opt);
            if (P > 1 && gstep == 0 && !have_ck && (s = grad_sync_bcast_params(&gs)))
                goto done;
            if (perturb) {
                gs.refs[0].var->data[0] += 1e-3f;
                perturb = 0;
            }
            dirty = 1;
            /* (every 10 steps while the warm-up shrinks the full-precision set) */
            double warm = budget_warm_at(cfg, (double)(gstep + 1) / nb);
            int warm_ended = warm == 0 && budget_warm_at(cfg, (double)gstep / nb) > 0; /* at once */
            if (has_quant && cfg->budget_bits > 0 &&
                (b % (warm > 0 ? 10 : 50) == (warm > 0 ? 9 : 49) || warm_ended) &&
                (s = budget_project_warm(r.model, cfg->budget_bits, cfg->budget_spread, cfg->budget_alpha,
                                         warm, NULL)))
                goto done;
            apb_graph_reset(&g);
            loss_sum += step_loss;
            correct += step_correct;
            seen += step_seen;
            if (losslog)
                fprintf(losslog, "%ld %.9g\n", gstep, step_loss / (double)step_seen);
            if (tty && (b % 5 == 0 || b == nb - 1)) {
                double el = apb_now() - t0, ips = seen / (el > 0 ? el : 1e-9);
                double eta = (nb - b - 1) * (el / (b + 1));
                int w = 24, fill = (int)((double)(b + 1) / nb * w);
                fprintf(stderr, "\repoch %d/%d [%.*s%*s] %d/%d  %.0f img/s  loss %.4f  acc %.2f%%  ETA %.0fs ",
                        epoch + 1, cfg->epochs, fill, "########################", w - fill, "", b + 1, nb,
                        ips, loss_sum / seen, 100.0 * correct / seen, eta);
            }
        }
        if (tty)
            fprintf(stderr, "\n");
        /* The step memory goes back to the system while the epoch is evaluated
         * (and its batchnorm re-estimated), which take arenas of their own: the
         * peak is the larger of training and evaluation, not their sum. */
        apb_graph_reset(&g);
        apb_arena_free(&step);
        if (has_quant && cfg->budget_bits > 0) {
            double reached;
            if ((s = budget_project_warm(r.model, cfg->budget_bits, cfg->budget_spread, cfg->budget_alpha,
                                         budget_warm_at(cfg, epoch + 1), &reached)))
                goto done;
        }
        /* BN re-estimation once the band is frozen (the model evaluated and saved
         * below is the one the statistics were measured on) */
        int64_t skipped = apb_loader_skipped(ltr); /* the epoch's, before the loader replays it */
        int reest = cfg->bn_reestimate > 0 && (!has_quant || frozen);
        if (reest && (s = apb_bn_reestimate(r.model, ltr, epoch, cfg->bn_reestimate, g.share)))
            goto done;
        if (seen == 0) {
            /* no result rather than a NaN one in the log and the checkpoint */
            s = apb_fail(APB_EINVAL, "epoch %d trained no batch (%d training images, --batch %d)",
                         epoch + 1, apb_dataset_size(dtr), cfg->batch);
            shared = 1; /* seen counts every process's images */
            goto done;
        }
        if (P > 1) {
            if (!cfg->sync_bn && (s = bcast_bn_stats(r.model)))
                goto done;
            char when[64];
            snprintf(when, sizeof when, "after epoch %d", epoch + 1);
            if ((s = check_same_weights(r.model, &gs, 1, when))) {
                shared = 1;
                goto done;
            }
        }
        double train_s = apb_now() - t0;
        apb_eval_result ev, va = {0};
        if ((s = evaluate_procs(r.model, lte, &ev)))
            goto done;
        if (lva && (s = evaluate_procs(r.model, lva, &va)))
            goto done;
        double secs = apb_now() - t0;
        apb_model_memory mem;
        apb_model_memory_stats(r.model, &mem, NULL, NULL);
        acc = ev.top1;
        /* with a validation split, the choice of best.ckpt never looks at the test set */
        double sel = lva ? va.top1 : ev.top1;
        int best = sel > r.best_acc;
        if (best)
            r.best_acc = sel;
        /* a model with no compressed layer is all full precision: 32 bits, not 0 */
        int all_fp = mem.cweights == 0;
        double fp_frac = all_fp ? 1.0 : mem.fp_fraction;
        double bpw = all_fp ? 32.0 : mem.bits_per_weight;
        char line[512];
        int ll = snprintf(line, sizeof line, "%d,%.6g,%.6f,%.4f,%.6f,%.4f,%.6f,%.6f,%.2f", epoch + 1,
                          lr, loss_sum / seen, 100.0 * correct / seen, ev.loss, ev.top1, fp_frac,
                          bpw, secs);
        if (lva)
            snprintf(line + ll, sizeof line - (size_t)ll, ",%.6f,%.4f\n", va.loss, va.top1);
        else
            snprintf(line + ll, sizeof line - (size_t)ll, "\n");
        if (rank == 0 && (s = log_append(&r, line)))
            goto done;
        char size[64];
        if (all_fp)
            snprintf(size, sizeof size, "fp weights 100%% | 32 bits/weight (fp)");
        else
            snprintf(size, sizeof size, "fp weights %.3f%% | %.3f bits/weight", 100 * fp_frac, bpw);
        char vtxt[64] = "";
        if (lva)
            snprintf(vtxt, sizeof vtxt, " | val loss %.4f acc %.2f%%", va.loss, va.top1);
        if (!cfg->quiet)
            printf("epoch %d/%d: train loss %.4f acc %.2f%%%s | test loss %.4f acc %.2f%% | %s | %.1f img/s | %.1fs\n",
                   epoch + 1, cfg->epochs, loss_sum / seen, 100.0 * correct / seen, vtxt, ev.loss,
                   ev.top1, size, seen / train_s, secs);
        fflush(stdout);
        /* last.ckpt is the commit point: what it records (best_acc) is on disk first */
        if (rank == 0 && best && (s = save_ckpt(&r, "best.ckpt", epoch + 1, r.best_acc)))
            goto done;
        if (rank == 0 && (s = apb_file_write_atomic(logpath, r.log, r.loglen)))
            goto done;
        if (rank == 0 && (s = save_ckpt(&r, "last.ckpt", epoch + 1, r.best_acc)))
            goto done;
        r.wrote_last = 1;
        dirty = 0;
        if (P > 1 && (s = apb_dist_sum_i64(&skipped, 1)))
            goto done;
        if (skipped && !cfg->quiet)
            fprintf(stderr, "apb train: %lld undecodable files skipped this epoch\n", (long long)skipped);
    }
    if (cfg->budget_bits > 0 && !cfg->quiet) {
        apb_model_memory mem;
        apb_model_memory_stats(r.model, &mem, NULL, NULL);
        printf("budget: asked %.4f bits/weight, reached %.4f (%.2f%% of budget)\n", cfg->budget_bits,
               mem.bits_per_weight, 100.0 * mem.bits_per_weight / cfg->budget_bits);
    }
    if (final_acc)
        *final_acc = acc;
done:
    if (s && P > 1) {
        if (!started) { /* failed in the set-up: the others wait in agree_setup */
            int low = agree_setup(1);
            shared = 1;
            cfg->err_print = low == rank;
        } else if (shared) {
            cfg->err_print = cfg->err_print && rank == 0;
        }
        cfg->err_shared = shared;
    }
    if (losslog)
        fclose(losslog);
    free(gs.flat);
    if (have_ck)
        apb_ckpt_free(&ck);
    apb_graph_free(&g);
    apb_arena_free(&step);
    if (r.opt)
        apb_optim_free(r.opt);
    apb_model_free(r.model);
    apb_loader_free(ltr);
    apb_loader_free(lte);
    apb_loader_free(lva);
    apb_dataset_free(dtr);
    apb_dataset_free(dte);
    apb_dataset_free(dva);
    free(r.log);
    return s;
}
