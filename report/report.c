/* report.c - the accuracy / memory trade-off sweep behind `apb report` (see report.h).
 *
 * Every point is an ordinary training run in its own directory, so the report
 * adds no state of its own: what a point needs to be reused or resumed is its
 * last.ckpt (epoch count, options) and log.csv (test accuracy per epoch). The
 * options a point was trained with are checked against what the report asks, so
 * changing --epochs or --data with an old output directory is an error that says
 * which directory to remove, never a silent mix of two schedules.
 */
#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"
#include "clock.h"
#include "checkpoint.h"
#include "export.h"
#include "fileio.h"
#include "plot.h"
#include "stop.h"
#include "threads.h"
#include "trainer.h"

void apb_report_cfg_default(apb_report_cfg *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data_spec, sizeof c->data_spec, "fashion-mnist");
    snprintf(c->arch, sizeof c->arch, "convnet");
    c->epochs = 1;
    c->seed = 1;
    c->methods = APB_REPORT_ALL;
    c->nbudgets = 3;
    c->budgets[0] = 1.1;
    c->budgets[1] = 1.3;
    c->budgets[2] = 1.6;
    c->nsparsities = 2;
    c->sparsities[0] = 0.5;
    c->sparsities[1] = 0.9;
    c->actbin_budget = 1.3;
    c->int8_budget = 1.5;
    c->latency_runs = 50;
    c->latency_threads = 1;
}

/* ---- option lists -------------------------------------------------------- */

static const struct {
    const char *name, *label;
    unsigned flag;
    int marker;
    unsigned color;
} METHODS[] = {
    {"fp", "full precision", APB_REPORT_FP, APB_MARKER_SQUARE, 0x444444},
    {"binary", "binary", APB_REPORT_BINARY, APB_MARKER_TRIANGLE, 0xd62728},
    {"q2", "2-bit", APB_REPORT_Q2, APB_MARKER_DIAMOND, 0xff7f0e},
    {"prune", "magnitude pruning", APB_REPORT_PRUNE, APB_MARKER_PLUS, 0x2ca02c},
    {"apb", "APB", APB_REPORT_APB, APB_MARKER_CIRCLE, 0x1f77b4},
    {"apb-actbin", "APB + binary act.", APB_REPORT_APB_ACTBIN, APB_MARKER_CROSS, 0x9467bd},
    {"prune-binary", "pruning + binary", APB_REPORT_PRUNE_BINARY, APB_MARKER_DIAMOND, 0x8c564b},
    {"apb-int8", "APB + 8-bit act.", APB_REPORT_APB_INT8, APB_MARKER_SQUARE, 0x17becf},
};
#define NMETHODS ((int)(sizeof METHODS / sizeof METHODS[0]))

static int method_index(const char *name)
{
    for (int i = 0; i < NMETHODS; i++)
        if (!strcmp(METHODS[i].name, name))
            return i;
    return NMETHODS;
}

apb_status apb_report_methods_parse(const char *s, unsigned *methods)
{
    unsigned m = 0;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char tok[32];
        if (len == 0 || len >= sizeof tok)
            return apb_fail(APB_EINVAL, "--methods '%s': empty or overlong entry", s);
        memcpy(tok, p, len);
        tok[len] = 0;
        int i = method_index(tok);
        if (!strcmp(tok, "all"))
            m |= APB_REPORT_ALL;
        else if (i == NMETHODS)
            return apb_fail(APB_EINVAL,
                            "--methods: unknown method '%s' (fp, binary, q2, prune, apb, apb-actbin, "
                            "prune-binary, apb-int8, all)",
                            tok);
        else
            m |= METHODS[i].flag;
        p += len + (e != NULL);
    }
    if (!m)
        return apb_fail(APB_EINVAL, "--methods '%s' names no method", s);
    *methods = m;
    return APB_OK;
}

apb_status apb_report_list_parse(const char *s, double *v, int max, int *n)
{
    int k = 0;
    const char *p = s;
    while (*p) {
        char *e;
        double x = strtod(p, &e);
        if (e == p || (*e && *e != ',') || !isfinite(x) || x <= 0)
            return apb_fail(APB_EINVAL, "'%s': expected positive numbers separated by commas", s);
        if (k == max)
            return apb_fail(APB_EINVAL, "'%s': at most %d values", s, max);
        v[k++] = x;
        p = *e ? e + 1 : e;
    }
    if (k == 0)
        return apb_fail(APB_EINVAL, "empty list");
    *n = k;
    return APB_OK;
}

/* ---- the sweep ----------------------------------------------------------- */

typedef struct {
    apb_report_point r;
    apb_wquant wq;
    apb_aquant aq;
    float sparsity, budget_bits;
    int epochs;
    float lr;
    int from_fp;
} point_plan;

static int plan_points(const apb_report_cfg *c, point_plan *p, int max)
{
    int n = 0;
    int ft = c->ft_epochs > 0 ? c->ft_epochs : c->epochs;
    float ftlr = c->ft_lr > 0 ? c->ft_lr : c->lr;
#define ADD(meth, pt, q, a, bud)                                                   \
    do {                                                                           \
        if (n < max) {                                                             \
            memset(&p[n], 0, sizeof p[n]);                                         \
            p[n].aq = (apb_aquant)c->act;                                          \
            snprintf(p[n].r.method, sizeof p[n].r.method, "%s", meth);             \
            snprintf(p[n].r.point, sizeof p[n].r.point, "%s", pt);                 \
            snprintf(p[n].r.quant, sizeof p[n].r.quant, "%s", q);                  \
            snprintf(p[n].r.act, sizeof p[n].r.act, "%s", a);                      \
            p[n].r.budget = bud;                                                   \
            p[n].epochs = ft;                                                      \
            p[n].lr = ftlr;                                                        \
            p[n].from_fp = 1;                                                      \
        }                                                                          \
        n++;                                                                       \
    } while (0)
    char pt[32], q[24];
    const char *act = apb_aquant_name((apb_aquant)c->act);
    ADD("fp", "fp", "fp", "fp", 0.0);
    p[0].wq = APB_WQ_FP;
    p[0].aq = APB_AQ_FP;
    p[0].epochs = c->epochs;
    p[0].lr = c->lr;
    p[0].from_fp = 0;
    if (c->methods & APB_REPORT_BINARY) {
        ADD("binary", "binary", "binary", act, 0.0);
        p[n - 1].wq = APB_WQ_BINARY;
    }
    if (c->methods & APB_REPORT_Q2) {
        ADD("q2", "q2", "q2", act, 0.0);
        p[n - 1].wq = APB_WQ_Q2;
    }
    if (c->methods & APB_REPORT_PRUNE)
        for (int i = 0; i < c->nsparsities; i++) {
            snprintf(pt, sizeof pt, "prune%g", c->sparsities[i]);
            snprintf(q, sizeof q, "prune:%g", c->sparsities[i]);
            ADD("prune", pt, q, act, c->sparsities[i]);
            if (n <= max) {
                p[n - 1].wq = APB_WQ_PRUNE;
                p[n - 1].sparsity = (float)c->sparsities[i];
            }
        }
    if (c->methods & APB_REPORT_APB)
        for (int i = 0; i < c->nbudgets; i++) {
            snprintf(pt, sizeof pt, "apb%g", c->budgets[i]);
            ADD("apb", pt, "apb", act, c->budgets[i]);
            if (n <= max) {
                p[n - 1].wq = APB_WQ_APB;
                p[n - 1].budget_bits = (float)c->budgets[i];
            }
        }
    /* the sparsity of these is derived from the budget once the fp start exists
     * (plan_prune_binary) */
    if (c->methods & APB_REPORT_PRUNE_BINARY)
        for (int i = 0; i < c->nbudgets; i++) {
            snprintf(pt, sizeof pt, "prune-binary%g", c->budgets[i]);
            ADD("prune-binary", pt, "prune-binary", act, c->budgets[i]);
            if (n <= max) {
                p[n - 1].wq = APB_WQ_PRUNE_BINARY;
                p[n - 1].budget_bits = (float)c->budgets[i];
            }
        }
    if (c->methods & APB_REPORT_APB_ACTBIN) {
        snprintf(pt, sizeof pt, "apb%g-actbin", c->actbin_budget);
        ADD("apb-actbin", pt, "apb", "binary", c->actbin_budget);
        if (n <= max) {
            p[n - 1].wq = APB_WQ_APB;
            p[n - 1].aq = APB_AQ_BINARY;
            p[n - 1].budget_bits = (float)c->actbin_budget;
        }
    }
    if (c->methods & APB_REPORT_APB_INT8) {
        snprintf(pt, sizeof pt, "apb%g-int8", c->int8_budget);
        ADD("apb-int8", pt, "apb", "int8", c->int8_budget);
        if (n <= max) {
            p[n - 1].wq = APB_WQ_APB;
            p[n - 1].aq = APB_AQ_INT8;
            p[n - 1].budget_bits = (float)c->int8_budget;
        }
    }
#undef ADD
    return n;
}

static void progress(const apb_report_cfg *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void progress(const apb_report_cfg *c, const char *fmt, ...)
{
    if (!c->progress)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->progress(c->progress_ctx, line);
}

/* The training options of one point, as a fresh run would get them. */
static void point_train_cfg(const apb_report_cfg *c, const point_plan *p, const char *dir,
                            int seed_k, apb_train_cfg *t)
{
    apb_train_cfg_default(t);
    snprintf(t->data_spec, sizeof t->data_spec, "%s", c->data_spec);
    snprintf(t->model.arch, sizeof t->model.arch, "%s", c->arch);
    t->model.wq = p->wq;
    t->model.aq = p->aq;
    t->model.prune_sparsity = p->sparsity;
    t->budget_bits = p->wq == APB_WQ_APB ? p->budget_bits : 0;
    t->epochs = p->epochs;
    if (c->batch > 0)
        t->batch = c->batch;
    if (p->lr > 0)
        t->lr = p->lr;
    t->limit_train = c->limit_train;
    t->limit_test = c->limit_test;
    t->threads = c->threads;
    t->seed = c->seed + (uint64_t)seed_k;
    t->quiet = c->quiet;
    snprintf(t->out_dir, sizeof t->out_dir, "%s", dir);
    if (p->from_fp)
        snprintf(t->init_ckpt, sizeof t->init_ckpt, "%s/fp/last.ckpt", c->out_dir);
    snprintf(t->cmdline, sizeof t->cmdline, "apb report --out %s (point %s)", c->out_dir,
             p->r.point);
}

/* An existing checkpoint must come from the same options the report asks for. */
static apb_status check_compatible(const apb_ckpt *ck, const apb_train_cfg *want, const char *dir)
{
    apb_train_cfg *have = malloc(sizeof *have);
    if (!have)
        return apb_fail(APB_ENOMEM, "out of memory");
    apb_train_cfg_default(have);
    apb_status s = apb_train_cfg_from_text(ck->meta.train_opts, have);
    const apb_model_cfg *m = &ck->meta.model;
    const char *what = NULL;
    char hv[600] = "", wv[600] = "";
    if (s)
        what = "options";
    else if (strcmp(m->arch, want->model.arch)) {
        what = "model";
        snprintf(hv, sizeof hv, "%s", m->arch);
        snprintf(wv, sizeof wv, "%s", want->model.arch);
    } else if (m->wq != want->model.wq || m->aq != want->model.aq ||
               fabsf(m->prune_sparsity - want->model.prune_sparsity) > 1e-6f) {
        what = "quantizers";
        snprintf(hv, sizeof hv, "%s/%s", apb_wquant_name(m->wq), apb_aquant_name(m->aq));
        snprintf(wv, sizeof wv, "%s/%s", apb_wquant_name(want->model.wq),
                 apb_aquant_name(want->model.aq));
    } else if (strcmp(have->data_spec, want->data_spec)) {
        what = "data";
        snprintf(hv, sizeof hv, "%s", have->data_spec);
        snprintf(wv, sizeof wv, "%s", want->data_spec);
    } else if (have->epochs != want->epochs || have->batch != want->batch ||
               have->limit_train != want->limit_train || have->limit_test != want->limit_test ||
               have->seed != want->seed || fabsf(have->lr - want->lr) > 1e-7f * want->lr ||
               fabsf(have->budget_bits - want->budget_bits) > 1e-5f) {
        what = "schedule (epochs, batch, lr, limits, seed, budget)";
        snprintf(hv, sizeof hv, "epochs=%d batch=%d lr=%g limit-train=%d limit-test=%d seed=%llu budget=%g",
                 have->epochs, have->batch, have->lr, have->limit_train, have->limit_test,
                 (unsigned long long)have->seed, have->budget_bits);
        snprintf(wv, sizeof wv, "epochs=%d batch=%d lr=%g limit-train=%d limit-test=%d seed=%llu budget=%g",
                 want->epochs, want->batch, want->lr, want->limit_train, want->limit_test,
                 (unsigned long long)want->seed, want->budget_bits);
    }
    free(have);
    if (what)
        return apb_fail(APB_EINVAL,
                        "%s/last.ckpt was trained with other %s (%s, the report asks %s): remove %s or use another --out",
                        dir, what, hv, wv, dir);
    return APB_OK;
}

/* Test accuracy of epoch `epoch` from DIR/log.csv; -1 when absent. */
static double log_accuracy(const char *dir, int epoch)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    unsigned char *d;
    size_t n;
    if (apb_file_read(path, &d, &n)) {
        apb_clear_error();
        return -1;
    }
    double acc = -1;
    char *save = NULL;
    for (char *line = strtok_r((char *)d, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (atoi(line) != epoch)
            continue;
        /* epoch,lr,train_loss,train_acc,test_loss,test_acc,... */
        char *f = line;
        for (int k = 0; k < 5 && f; k++) {
            f = strchr(f, ',');
            if (f)
                f++;
        }
        if (f) {
            char *e;
            double v = strtod(f, &e);
            if (e != f && isfinite(v))
                acc = v;
        }
    }
    free(d);
    return acc;
}

static apb_status evaluate_ckpt(const apb_report_cfg *c, apb_model *m, double *acc)
{
    apb_dataset *ds;
    apb_loader *ld;
    apb_transform t;
    int threads = c->threads > 0 ? c->threads : apb_threads_get();
    APB_TRY(apb_open_data(c->data_spec, "test", c->limit_test, 0, 0, 256, c->seed, threads, &ds,
                          &ld, &t));
    apb_eval_result ev;
    apb_status s = apb_evaluate(m, ld, &ev);
    apb_loader_free(ld);
    apb_dataset_free(ds);
    if (!s)
        *acc = ev.top1;
    return s;
}

/* Median batch-1 latency of the exported model on a zero image (after warm-up). */
static apb_status measure_latency(const char *path, int runs, int threads, double *ms)
{
    apbrt_model *m;
    if (apbrt_load(path, &m))
        return apb_fail(APB_EFORMAT, "%s", apbrt_errmsg());
    int saved = apbrt_get_threads(); /* process-wide: the trainer shares it */
    if (threads > 0)
        apbrt_set_threads(threads);
    int c, h, w;
    apbrt_input_shape(m, &c, &h, &w);
    float *x = calloc((size_t)c * h * w, sizeof *x);          /* [1, C, H, W] */
    float *logits = malloc(sizeof(float) * (size_t)apbrt_num_classes(m)); /* [1, K] */
    double *t = malloc(sizeof(double) * (size_t)runs);
    apb_status s = APB_OK;
    if (!x || !logits || !t)
        s = apb_fail(APB_ENOMEM, "latency: out of memory");
    for (int i = 0; !s && i < 5; i++)
        if (apbrt_run(m, x, 1, logits))
            s = apb_fail(APB_EINVAL, "%s: %s", path, apbrt_errmsg());
    for (int i = 0; !s && i < runs; i++) {
        double t0 = apb_now();
        if (apbrt_run(m, x, 1, logits))
            s = apb_fail(APB_EINVAL, "%s: %s", path, apbrt_errmsg());
        t[i] = apb_now() - t0;
    }
    if (!s)
        *ms = 1000.0 * apb_median(t, runs);
    free(x);
    free(logits);
    free(t);
    apbrt_free(m);
    apbrt_set_threads(saved);
    return s;
}

/* Pruning + binarization at the same memory as APB at budget B: every
 * compressed layer pruned to the one sparsity at which the model costs B bits
 * per compressed weight (apb_prune_binary_sparsity), computed on the model the
 * fp start's geometry gives. APB_EINVAL when B needs no pruning or cannot be
 * met: the caller skips the point. */
static apb_status plan_prune_binary(const apb_report_cfg *c, point_plan *p)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/fp/last.ckpt", c->out_dir);
    apb_ckpt *ck = malloc(sizeof *ck);
    if (!ck)
        return apb_fail(APB_ENOMEM, "out of memory");
    apb_status s = apb_ckpt_load(path, ck);
    if (s) {
        free(ck);
        return s;
    }
    apb_model_cfg mc = ck->meta.model;
    apb_ckpt_free(ck);
    free(ck);
    mc.wq = APB_WQ_PRUNE_BINARY;
    mc.aq = p->aq;
    apb_model *m;
    APB_TRY(apb_model_build(&mc, 1, &m));
    float sp = 0;
    s = apb_prune_binary_sparsity(m, p->budget_bits, &sp);
    apb_model_free(m);
    if (!s) {
        p->sparsity = sp;
        snprintf(p->r.quant, sizeof p->r.quant, "prune-binary:%.4f", sp);
    }
    return s;
}

/* Trains (or reuses / resumes) one run of a point (its seed_k-th seed), then
 * measures it into p->r. */
static apb_status run_point(const apb_report_cfg *c, point_plan *p, int seed_k, int idx,
                            int npoints)
{
    char dir[1100], ckpath[1200], apbpath[1200];
    if (seed_k == 0)
        snprintf(dir, sizeof dir, "%s/%s", c->out_dir, p->r.point);
    else
        snprintf(dir, sizeof dir, "%s/%s-seed%llu", c->out_dir, p->r.point,
                 (unsigned long long)(c->seed + (uint64_t)seed_k));
    snprintf(ckpath, sizeof ckpath, "%s/last.ckpt", dir);
    snprintf(apbpath, sizeof apbpath, "%s/model.apb", dir);
    /* a stop asked for between points: the finished ones stay reusable */
    if (apb_stop_requested())
        return apb_fail(APB_ESTOPPED, "stopped before point %s (%d of %d): every point before it "
                        "is complete", p->r.point, idx + 1, npoints);
    apb_train_cfg *t = malloc(sizeof *t);
    apb_ckpt *ck = malloc(sizeof *ck);
    apb_model *m = NULL;
    apb_status s = APB_OK;
    int have_ck = 0;
    if (!t || !ck) {
        s = apb_fail(APB_ENOMEM, "out of memory");
        goto out;
    }
    point_train_cfg(c, p, dir, seed_k, t);
    p->r.epochs = p->epochs;
    if (apb_file_exists(ckpath)) {
        if ((s = apb_ckpt_load(ckpath, ck)))
            goto out;
        have_ck = 1;
        if ((s = check_compatible(ck, t, dir)))
            goto out;
        if (ck->meta.epoch >= p->epochs) {
            p->r.reused = 1;
            progress(c, "[%d/%d] %s: reusing %s (%d epochs done)", idx + 1, npoints, p->r.point,
                     ckpath, ck->meta.epoch);
        } else {
            p->r.resumed = 1;
            progress(c, "[%d/%d] %s: resuming at epoch %d/%d", idx + 1, npoints, p->r.point,
                     ck->meta.epoch + 1, p->epochs);
            char out[1024];
            snprintf(out, sizeof out, "%s", dir);
            int threads = t->threads, quiet = t->quiet;
            apb_train_cfg_default(t);
            snprintf(t->resume_dir, sizeof t->resume_dir, "%s", out);
            t->threads = threads;
            t->quiet = quiet;
        }
    } else {
        progress(c, "[%d/%d] %s: training %d epoch%s (%s weights, %s activations%s%s)", idx + 1,
                 npoints, p->r.point, p->epochs, p->epochs == 1 ? "" : "s", p->r.quant, p->r.act,
                 p->from_fp ? ", from " : "", p->from_fp ? t->init_ckpt : "");
    }
    if (!p->r.reused) {
        if (have_ck) {
            apb_ckpt_free(ck);
            have_ck = 0;
        }
        double t0 = apb_now();
        if ((s = apb_train_run(t, NULL))) {
            apb_fail_context(s, "report point %s", p->r.point);
            goto out;
        }
        progress(c, "[%d/%d] %s: trained in %.0f s", idx + 1, npoints, p->r.point, apb_now() - t0);
        if ((s = apb_ckpt_load(ckpath, ck)))
            goto out;
        have_ck = 1;
    }
    if ((s = apb_ckpt_model(ck, &m)))
        goto out;
    apb_model_memory mem;
    apb_model_memory_stats(m, &mem, NULL, NULL);
    p->r.bits_per_weight = mem.cweights ? mem.bits_per_weight : 32.0;
    p->r.model_bits = mem.bits;
    p->r.test_acc = log_accuracy(dir, ck->meta.epoch);
    if (p->r.test_acc < 0 && (s = evaluate_ckpt(c, m, &p->r.test_acc)))
        goto out;
    if ((s = apb_export_ckpt(ck, apbpath, &p->r.file_bytes)))
        goto out;
    if (c->latency_runs > 0 &&
        (s = measure_latency(apbpath, c->latency_runs,
                            c->latency_threads > 0 ? c->latency_threads : c->threads,
                            &p->r.latency_ms)))
        goto out;
    progress(c, "[%d/%d] %s: test acc %.2f%%, %.4f bits/weight, %.0f model bits, %s %zu bytes, %.3f ms/image (batch 1)",
             idx + 1, npoints, p->r.point, p->r.test_acc, p->r.bits_per_weight, p->r.model_bits,
             apbpath, p->r.file_bytes, p->r.latency_ms);
out:
    if (have_ck)
        apb_ckpt_free(ck);
    apb_model_free(m);
    free(ck);
    free(t);
    return s;
}

/* ---- output files -------------------------------------------------------- */

static int cmp_points(const void *a, const void *b)
{
    const apb_report_point *x = a, *y = b;
    int mx = method_index(x->method), my = method_index(y->method);
    if (mx != my)
        return mx - my;
    return (x->bits_per_weight > y->bits_per_weight) - (x->bits_per_weight < y->bits_per_weight);
}

typedef struct {
    char *s;
    size_t n, cap;
    int err;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->err = 1;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *p = realloc(b->s, nc);
        if (!p) {
            b->err = 1;
            return;
        }
        b->s = p;
        b->cap = nc;
    }
}

static apb_status csv_text(const apb_report *r, char **text)
{
    sbuf b = {0};
    sb_printf(&b, "method,point,quant,act,budget,test_acc,bits_per_weight,model_bits,file_bytes,"
                  "test_acc_std,seeds,latency_ms_b1\n");
    for (int i = 0; i < r->n; i++) {
        const apb_report_point *p = &r->points[i];
        sb_printf(&b, "%s,%s,%s,%s,%g,%.2f,%.4f,%.0f,%zu,%.2f,%d,%.4f\n", p->method, p->point,
                  p->quant, p->act, p->budget, p->test_acc, p->bits_per_weight, p->model_bits,
                  p->file_bytes, p->test_acc_std, p->nseeds, p->latency_ms);
    }
    if (b.err) {
        free(b.s);
        return apb_fail(APB_ENOMEM, "out of memory for the report");
    }
    *text = b.s;
    return APB_OK;
}

apb_status apb_report_markdown(const apb_report *r, char **text)
{
    sbuf b = {0};
    size_t fp_bytes = 0;
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->points[i].method, "fp"))
            fp_bytes = r->points[i].file_bytes;
    sb_printf(&b, "| method | point | weights | act | budget / sparsity | test acc (%%) | bits/weight | model KiB (formula) | file bytes | fp file / file | latency ms (b1, %d thr) |\n",
              r->latency_threads);
    sb_printf(&b, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < r->n; i++) {
        const apb_report_point *p = &r->points[i];
        char budget[32] = "-", ratio[32] = "-", acc[48];
        if (p->nseeds > 1)
            snprintf(acc, sizeof acc, "%.2f ± %.2f (%d)", p->test_acc, p->test_acc_std, p->nseeds);
        else
            snprintf(acc, sizeof acc, "%.2f", p->test_acc);
        if (p->budget > 0)
            snprintf(budget, sizeof budget, "%g", p->budget);
        if (fp_bytes && p->file_bytes)
            snprintf(ratio, sizeof ratio, "%.1fx", (double)fp_bytes / (double)p->file_bytes);
        sb_printf(&b, "| %s | %s | %s | %s | %s | %s | %.4f | %.1f | %zu | %s | %.3f |\n",
                  p->method, p->point, p->quant, p->act, budget, acc, p->bits_per_weight,
                  p->model_bits / 8192.0, p->file_bytes, ratio, p->latency_ms);
    }
    if (b.err) {
        free(b.s);
        return apb_fail(APB_ENOMEM, "out of memory for the report");
    }
    *text = b.s;
    return APB_OK;
}

static apb_status write_plot(const apb_report_cfg *c, const apb_report *r)
{
    apb_plot_series s[NMETHODS];
    double *x = malloc(sizeof(double) * (size_t)r->n * 3), *y = x + r->n, *e = y + r->n;
    if (!x)
        return apb_fail(APB_ENOMEM, "out of memory for the report");
    int ns = 0, k = 0, any_err = 0;
    double xmax = 40; /* room above fp's 32; wider when a point lies beyond (never drop one) */
    for (int i = 0; i < r->n; i++)
        if (r->points[i].bits_per_weight * 1.25 > xmax)
            xmax = r->points[i].bits_per_weight * 1.25;
    for (int mi = 0; mi < NMETHODS; mi++) {
        int first = k;
        for (int i = 0; i < r->n; i++)
            if (method_index(r->points[i].method) == mi) {
                x[k] = r->points[i].bits_per_weight;
                y[k] = r->points[i].test_acc;
                e[k] = r->points[i].test_acc_std;
                any_err |= e[k] > 0;
                k++;
            }
        if (k == first)
            continue;
        s[ns] = (apb_plot_series){.label = METHODS[mi].label, .n = k - first, .x = x + first,
                                  .y = y + first, .marker = METHODS[mi].marker,
                                  .color = METHODS[mi].color, .connect = k - first > 1,
                                  .yerr = e + first};
        ns++;
    }
    for (int i = 0; i < ns && !any_err; i++)
        s[i].yerr = NULL;
    char title[700];
    int nseeds = c->seeds > 1 ? c->seeds : 1;
    char ylabel[96];
    if (any_err)
        snprintf(ylabel, sizeof ylabel, "test top-1 (%%), mean +-1 std of %d seeds", nseeds);
    else
        snprintf(ylabel, sizeof ylabel, "test top-1 accuracy (%%)");
    snprintf(title, sizeof title, "%s on %s%s%s: accuracy vs memory", c->arch, c->data_spec,
             c->act != APB_AQ_FP ? ", act. " : "",
             c->act != APB_AQ_FP ? apb_aquant_name((apb_aquant)c->act) : "");
    apb_plot_opts o = {.title = title,
                       .xlabel = "bits per weight (compressed layers, paper formula; fp = 32)",
                       .ylabel = ylabel,
                       .width = 900,
                       .height = 600,
                       .log_x = 1,
                       .xmin = 0.8,
                       .xmax = xmax};
    apb_status st = apb_plot_png(r->png_path, &o, s, ns);
    free(x);
    return st;
}

static apb_status write_outputs(const apb_report_cfg *c, apb_report *r)
{
    char *csv = NULL, *md = NULL;
    apb_status s = csv_text(r, &csv);
    if (!s)
        s = apb_file_write_atomic(r->csv_path, csv, strlen(csv));
    if (!s)
        s = apb_report_markdown(r, &md);
    if (!s)
        s = apb_file_write_atomic(r->md_path, md, strlen(md));
    if (!s)
        s = write_plot(c, r);
    free(csv);
    free(md);
    return s;
}

apb_status apb_report_run(const apb_report_cfg *c, apb_report *out)
{
    memset(out, 0, sizeof *out);
    if (!c->out_dir[0])
        return apb_fail(APB_EINVAL, "--out DIR is required");
    if (c->epochs < 1 || c->ft_epochs < 0)
        return apb_fail(APB_EINVAL, "--epochs must be >= 1 (got %d, ft %d)", c->epochs,
                        c->ft_epochs);
    if (c->latency_runs < 0)
        return apb_fail(APB_EINVAL, "--latency-runs must be >= 0 (got %d)", c->latency_runs);
    if (c->seeds < 0 || c->seeds > 100)
        return apb_fail(APB_EINVAL, "--seeds %d is not in 1..100", c->seeds);
    if (c->act != APB_AQ_FP && c->act != APB_AQ_BINARY && c->act != APB_AQ_Q2 && c->act != APB_AQ_INT8)
        return apb_fail(APB_EINVAL, "activation kind %d is not fp, binary, q2 or int8", c->act);
    if ((c->methods & APB_REPORT_APB) && c->nbudgets < 1)
        return apb_fail(APB_EINVAL, "APB needs at least one budget");
    if ((c->methods & APB_REPORT_PRUNE) && c->nsparsities < 1)
        return apb_fail(APB_EINVAL, "pruning needs at least one sparsity");
    for (int i = 0; i < c->nsparsities; i++)
        if (!(c->sparsities[i] > 0 && c->sparsities[i] < 1))
            return apb_fail(APB_EINVAL, "sparsity %g is not in (0, 1)", c->sparsities[i]);
    /* the same rule as `apb train --budget-bits` */
    apb_status bs;
    for (int i = 0; i < c->nbudgets; i++)
        if ((bs = apb_budget_bits_check(c->budgets[i])))
            return bs;
    if ((c->methods & APB_REPORT_APB_ACTBIN) && (bs = apb_budget_bits_check(c->actbin_budget)))
        return bs;
    if ((c->methods & APB_REPORT_APB_INT8) && (bs = apb_budget_bits_check(c->int8_budget)))
        return bs;
    APB_TRY(apb_mkdirs(c->out_dir));
    int max = 5 + c->nsparsities + 2 * c->nbudgets; /* fp, binary, q2, actbin, int8 + lists */
    point_plan *plan = calloc((size_t)max, sizeof *plan);
    out->points = calloc((size_t)max, sizeof *out->points);
    if (!plan || !out->points) {
        free(plan);
        free(out->points);
        out->points = NULL;
        return apb_fail(APB_ENOMEM, "out of memory for the report");
    }
    int n = plan_points(c, plan, max);
    /* two points may not share a directory (e.g. --budgets 1.3,1.30) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(plan[i].r.point, plan[j].r.point)) {
                apb_status s = apb_fail(APB_EINVAL, "point '%s' is listed twice",
                                        plan[i].r.point);
                free(plan);
                apb_report_free(out);
                return s;
            }
    out->latency_threads = c->latency_threads > 0 ? c->latency_threads
                           : c->threads > 0      ? c->threads
                                                 : apb_threads_get();
    snprintf(out->csv_path, sizeof out->csv_path, "%s/tradeoff.csv", c->out_dir);
    snprintf(out->md_path, sizeof out->md_path, "%s/tradeoff.md", c->out_dir);
    snprintf(out->png_path, sizeof out->png_path, "%s/tradeoff.png", c->out_dir);
    apb_status s = APB_OK;
    int nseeds = c->seeds > 1 ? c->seeds : 1;
    double *acc = malloc(sizeof(double) * (size_t)nseeds);
    if (!acc)
        s = apb_fail(APB_ENOMEM, "out of memory for the report");
    for (int i = 0; i < n && !s; i++) {
        /* the fp point is the common start of every other one: trained once */
        int runs = plan[i].from_fp ? nseeds : 1;
        apb_report_point first = {0};
        if (plan[i].wq == APB_WQ_PRUNE_BINARY && (s = plan_prune_binary(c, &plan[i]))) {
            if (s != APB_EINVAL)
                break;
            progress(c, "[%d/%d] %s: skipped: %s", i + 1, n, plan[i].r.point, apb_errmsg());
            apb_clear_error();
            s = APB_OK;
            continue;
        }
        for (int k = 0; k < runs && !s; k++) {
            s = run_point(c, &plan[i], k, i, n);
            acc[k] = plan[i].r.test_acc;
            if (k == 0)
                first = plan[i].r;
        }
        if (s)
            break;
        /* sizes and latency are those of the first seed (budget mode and pruning
         * hit their targets exactly); the accuracy is the mean over seeds */
        plan[i].r = first;
        plan[i].r.nseeds = runs;
        double mean = 0, var = 0;
        for (int k = 0; k < runs; k++)
            mean += acc[k] / runs;
        for (int k = 0; k < runs; k++)
            var += (acc[k] - mean) * (acc[k] - mean);
        plan[i].r.test_acc = mean;
        plan[i].r.test_acc_std = runs > 1 ? sqrt(var / (runs - 1)) : 0;
        if (runs > 1)
            progress(c, "%s: test acc %.2f +- %.2f %% over %d seeds", plan[i].r.point, mean,
                     plan[i].r.test_acc_std, runs);
        if (i > 0 || (c->methods & APB_REPORT_FP))
            out->points[out->n++] = plan[i].r;
    }
    free(acc);
    free(plan);
    if (!s) {
        qsort(out->points, (size_t)out->n, sizeof *out->points, cmp_points);
        s = write_outputs(c, out);
    }
    if (s)
        apb_report_free(out);
    return s;
}

void apb_report_free(apb_report *r)
{
    free(r->points);
    r->points = NULL;
    r->n = 0;
}
