/* test_import.c - `apb import` (issue 15): ONNX files written by the tests
 * through the generated protobuf-c API (tests/onnx_util.h), imported, and
 * checked against a reference computed independently with naive loops.
 *
 * Covered: a residual CNN with BN kept (TrainingMode.PRESERVE) and folded into
 * the convs (eval mode), pooling, flatten / reshape, Gemm / MatMul + Add,
 * Identity, Dropout, Clip; its checkpoint and .apb; the quantization placement
 * rule; graph records (built-in models round trip, damaged records fail
 * cleanly); errors that name the node, op and supported list; truncated and
 * mutated files; and the CLI: import, train --init at 1.5 bits, export, infer.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "apbrt.h"
#include "checkpoint.h"
#include "export.h"
#include "fileio.h"
#include "graph.h"
#include "onnx.h"
#include "onnx_util.h"
#include "test.h"

/* Eval-mode forward of m on x [n, ...] -> malloc'd logits. */
static float *forward(apb_model *m, const float *x, int n)
{
    apb_arena a;
    apb_arena_init(&a, "step", 8 << 20);
    apb_graph g;
    apb_graph_init(&g, &a, 0, 0, NULL);
    long in = (long)m->cfg.in_c * m->cfg.in_h * m->cfg.in_w;
    float *xc = malloc(sizeof(float) * (size_t)(n * in)), *out = NULL;
    memcpy(xc, x, sizeof(float) * (size_t)(n * in));
    apb_var *y;
    if (apb_model_forward(m, &g, xc, n, &y) == APB_OK) {
        out = malloc(sizeof(float) * (size_t)y->numel);
        memcpy(out, y->data, sizeof(float) * (size_t)y->numel);
    } else
        fprintf(stderr, "  forward: %s\n", apb_errmsg());
    apb_graph_free(&g);
    apb_arena_free(&a);
    free(xc);
    return out;
}

static float *rand_input(const tnet *t, int n, uint64_t seed)
{
    apb_rng r;
    apb_rng_seed(&r, seed);
    return tnet_rand(&r, (long)n * t->c * t->h * t->w, 1.0f);
}

static const apb_layer *find_layer(const apb_model *m, const char *name)
{
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, name))
            return &m->layers[i];
    return NULL;
}

static int count_kind(const apb_model *m, apb_layer_kind k)
{
    int c = 0;
    for (int i = 0; i < m->nlayers; i++)
        c += m->layers[i].kind == k;
    return c;
}

/* Max |a - b| over n values, relative to max |b|. */
static double rel_err(const float *a, const float *b, long n)
{
    double e = 0, s = 1e-30;
    for (long i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return e / s;
}

APB_TEST(test_import_residual_cnn_matches_reference)
{
    enum { N = 3 };
    for (int variant = 0; variant < 2; variant++)
        for (int folded = 0; folded < 2; folded++) {
            tnet t;
            tnet_resnet(&t, 3, 12, 12, 5, variant, 11 + (uint64_t)variant);
            float *x = rand_input(&t, N, 5), want[N * 5], ref_unfolded[N * 5];
            CHECK(tnet_ref(&t, x, N, ref_unfolded) == 0);
            if (folded)
                tnet_fold_bn(&t);
            CHECK(tnet_ref(&t, x, N, want) == 0);
            CHECK_ARRAY_CLOSE(want, ref_unfolded, N * 5, 1e-5, 1e-5); /* the folding itself */
            unsigned char *buf;
            size_t len;
            tnet_onnx(&t, NULL, NULL, &buf, &len);
            apb_model *m;
            apb_onnx_info info;
            CHECK_OK(apb_onnx_import(buf, len, "resid.onnx", &m, &info));
            printf("  variant %d, BN %s: %d nodes -> %d layers, %d BN kept\n", variant,
                   folded ? "folded" : "kept", info.nodes, info.layers, info.bn_kept);
            CHECK(info.opset == 13 && info.bn_kept == (folded ? 0 : 4));
            CHECK(count_kind(m, APB_L_BN) == info.bn_kept);
            CHECK(!strcmp(m->cfg.arch, "graph") && m->cfg.in_c == 3 && m->cfg.in_h == 12 &&
                  m->cfg.num_classes == 5);
            CHECK(count_kind(m, APB_L_HARDTANH) == (variant == 1) && count_kind(m, APB_L_CLIP) == (variant == 1));
            CHECK(count_kind(m, APB_L_LINEAR) == 1 && count_kind(m, APB_L_ADD) == 1);
            /* the placement rule (onnx.h) */
            const apb_layer *c1 = find_layer(m, "conv1"), *b1 = find_layer(m, "layer1.0.conv1"),
                            *ds = find_layer(m, "layer1.0.downsample.0"), *fc = &m->layers[m->nlayers - 1];
            CHECK(c1 && b1 && ds && fc->kind == APB_L_LINEAR);
            CHECK(!c1->quantizable && b1->quantizable && b1->quant_input);
            CHECK(ds->quantizable && !ds->quant_input && !fc->quantizable);

            float *got = forward(m, x, N);
            CHECK(got != NULL);
            CHECK_ARRAY_CLOSE(got, want, N * 5, 1e-5, 1e-5);

            /* the checkpoint: same logits bit for bit */
            char onnx[600], ck[600];
            snprintf(onnx, sizeof onnx, "%s/m%d%d.onnx", apb_test_tmpdir(), variant, folded);
            snprintf(ck, sizeof ck, "%s/m%d%d.ckpt", apb_test_tmpdir(), variant, folded);
            CHECK_OK(apb_file_write_atomic(onnx, buf, len));
            apb_import_opts o = {{0.5f, 0.4f, 0.3f}, {0.2f, 0.25f, 0.3f}, 14, NULL};
            CHECK_OK(apb_import_onnx(onnx, &o, ck, NULL, NULL));
            apb_ckpt c;
            CHECK_OK(apb_ckpt_load(ck, &c));
            CHECK(!strcmp(c.meta.model.arch, "graph") && c.meta.resize_short == 14 &&
                  c.meta.mean[1] == 0.4f && c.meta.std[2] == 0.3f);
            apb_model *m2;
            CHECK_OK(apb_ckpt_model(&c, &m2));
            float *got2 = forward(m2, x, N);
            CHECK(got2 && !memcmp(got, got2, sizeof(float) * N * 5));

            /* the runtime */
            unsigned char *ab;
            size_t as;
            apb_export ex;
            CHECK_OK(apb_export_build(m2, NULL, 0, c.meta.mean, c.meta.std, 14, &ex));
            CHECK_OK(apbrt_serialize(&ex.desc, &ab, &as));
            apb_export_free(&ex);
            apbrt_model *rm;
            CHECK_MSG(apbrt_load_memory(ab, as, &rm) == 0, "%s", apbrt_errmsg());
            float rt[N * 5];
            CHECK_MSG(apbrt_run(rm, x, N, rt) == 0, "%s", apbrt_errmsg());
            int nclip = 0;
            for (int i = 0; i < apbrt_num_layers(rm); i++) {
                apbrt_layer_info li;
                apbrt_layer_info_get(rm, i, &li);
                nclip += !strcmp(li.kind, "clip");
            }
            CHECK(nclip == (variant == 1));
            double re = rel_err(rt, want, N * 5);
            CHECK_MSG(re <= 1e-5, "runtime vs reference: max relative error %.3g", re);
            apbrt_free(rm);
            free(ab);
            if (variant == 1) { /* the writer refuses empty clip bounds */
                CHECK_OK(apb_export_build(m2, NULL, 0, c.meta.mean, c.meta.std, 14, &ex));
                for (int i = 0; i < ex.desc.nlayers; i++)
                    if (ex.layers[i].kind == APBRT_CLIP)
                        ex.layers[i].lo = ex.layers[i].hi;
                CHECK(apbrt_serialize(&ex.desc, &ab, &as) != APB_OK && strstr(apb_errmsg(), "clip"));
                apb_export_free(&ex);
            }
            free(got2);
            apb_model_free(m2);
            apb_ckpt_free(&c);
            free(got);
            apb_model_free(m);
            free(buf);
            free(x);
            tnet_free(&t);
        }
    return 0;
}

/* ---- errors ---- */

typedef struct {
    const char *node; /* node to change ("" = none) */
    const char *attr; /* attribute to set on it */
    int64_t v;
    int opset;        /* != 0: replace the opset */
} tweak;

static void apply_tweak(twriter *w, void *arg)
{
    const tweak *k = arg;
    if (k->opset)
        w->opset.version = k->opset;
    for (size_t i = 0; i < w->graph.n_node; i++) {
        Onnx__NodeProto *nd = w->graph.node[i];
        if (strcmp(nd->name, k->node))
            continue;
        for (size_t j = 0; j < nd->n_attribute; j++)
            if (!strcmp(nd->attribute[j]->name, k->attr)) {
                Onnx__AttributeProto *a = nd->attribute[j];
                if (a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
                    a->ints[0] = k->v; /* first entry only: asymmetric */
                else
                    a->i = k->v;
                return;
            }
        tw_attr_i(w, nd, k->attr, k->v);
    }
}

/* Imports t (tweaked by k); the error must contain every string of `want`. */
static int expect_error(const tnet *t, const tweak *k, const char *const *want, int nwant)
{
    unsigned char *buf;
    size_t len;
    tnet_onnx(t, k ? apply_tweak : NULL, (void *)k, &buf, &len);
    apb_model *m = NULL;
    apb_status s = apb_onnx_import(buf, len, "bad.onnx", &m, NULL);
    free(buf);
    if (s == APB_OK) {
        fprintf(stderr, "  import succeeded; expected an error with '%s'\n", want[0]);
        apb_model_free(m);
        return 1;
    }
    const char *msg = apb_errmsg();
    printf("  %s\n", msg);
    for (int i = 0; i < nwant; i++)
        if (!strstr(msg, want[i])) {
            fprintf(stderr, "  error lacks '%s': %s\n", want[i], msg);
            return 1;
        }
    return m != NULL;
}

APB_TEST(test_import_errors_name_node_and_reason)
{
    tnet t;
    tnet_resnet(&t, 3, 12, 12, 5, 0, 3);
    /* an unsupported op in the middle of the graph: after the stem ReLU */
    top *o = &t.ops[2];
    o->op = T_OTHER;
    snprintf(o->name, sizeof o->name, "act");
    snprintf(o->name2, sizeof o->name2, "Sigmoid");
    CHECK(expect_error(&t, NULL, (const char *[]){"bad.onnx", "'/act/op2'", "(Sigmoid)", "unsupported op",
                                                   "Conv, BatchNormalization, Relu, Clip, MaxPool"}, 5) == 0);
    o->op = T_RELU;
    CHECK(expect_error(&t, &(tweak){"/layer1.0.conv1/op4", "group", 2, 0},
                       (const char *[]){"'/layer1.0.conv1/op4'", "(Conv)", "group 2"}, 3) == 0);
    CHECK(expect_error(&t, &(tweak){"/layer1.0.conv1/op4", "pads", 0, 0},
                       (const char *[]){"(Conv)", "pads 0,1,1,1"}, 2) == 0);
    CHECK(expect_error(&t, &(tweak){"/layer1.0.conv1/op4", "dilations", 2, 0},
                       (const char *[]){"(Conv)", "dilations 2,1"}, 2) == 0);
    CHECK(expect_error(&t, &(tweak){"/bn1/op1", "training_mode", 1, 0},
                       (const char *[]){"(BatchNormalization)", "training_mode 1"}, 2) == 0);
    CHECK(expect_error(&t, &(tweak){"/x/op13", "count_include_pad", 0, 0},
                       (const char *[]){"(AveragePool)", "count_include_pad 0"}, 2) == 0);
    CHECK(expect_error(&t, &(tweak){"", "", 0, 10}, (const char *[]){"bad.onnx", "opset 10", "11 to 17"}, 3) == 0);
    CHECK(expect_error(&t, &(tweak){"", "", 0, 18}, (const char *[]){"opset 18"}, 1) == 0);
    /* ceil_mode 1 where it changes nothing (12 -> 6 either way) imports */
    unsigned char *buf;
    size_t len;
    tnet_onnx(&t, apply_tweak, &(tweak){"/x/op3", "ceil_mode", 1, 0}, &buf, &len);
    apb_model *m;
    CHECK_OK(apb_onnx_import(buf, len, "ceil.onnx", &m, NULL));
    apb_model_free(m);
    free(buf);
    tnet_free(&t);
    return 0;
}

/* ---- damaged files ---- */

/* Imports buf[0..len): an error must name the file; a success must run. */
static int damaged_ok(const unsigned char *buf, size_t len, int *loaded)
{
    apb_model *m = NULL;
    apb_status s = apb_onnx_import(buf, len, "damaged.onnx", &m, NULL);
    if (s) {
        if (m || !strstr(apb_errmsg(), "damaged.onnx")) {
            fprintf(stderr, "  error without the file name, or a model with it: %s\n", apb_errmsg());
            return 1;
        }
        return 0;
    }
    (*loaded)++;
    long in = (long)m->cfg.in_c * m->cfg.in_h * m->cfg.in_w;
    float *x = calloc((size_t)in, sizeof(float)), *y = forward(m, x, 1);
    int bad = y == NULL;
    free(x);
    free(y);
    apb_model_free(m);
    return bad;
}

APB_TEST(test_import_truncated_and_mutated_files)
{
    tnet t;
    tnet_resnet(&t, 3, 12, 12, 5, 1, 21);
    unsigned char *buf;
    size_t len;
    tnet_onnx(&t, NULL, NULL, &buf, &len);
    int loaded = 0, tried = 0;
    /* every length over the header and the first nodes, then every 11th */
    for (size_t l = 0; l < len; l += l < 1024 ? 1 : 11, tried++) {
        unsigned char *cut = malloc(l ? l : 1); /* exact size: ASan sees overreads */
        memcpy(cut, buf, l);
        int bad = damaged_ok(cut, l, &loaded);
        free(cut);
        CHECK_MSG(!bad, "truncated to %zu of %zu bytes", l, len);
    }
    CHECK_MSG(loaded == 0, "%d truncated files imported", loaded);
    printf("  %d truncations of %zu bytes: all rejected with the file named\n", tried, len);
    apb_rng r;
    apb_rng_seed(&r, 99);
    unsigned char *mut = malloc(len);
    for (int i = 0; i < 2000; i++) {
        memcpy(mut, buf, len);
        int nflip = 1 + (i % 4);
        for (int k = 0; k < nflip; k++) {
            size_t at = (size_t)(apb_rng_uniform(&r) * (double)len) % len;
            unsigned char v = (unsigned char)(1 + (int)(apb_rng_uniform(&r) * 255.0f) % 255);
            mut[at] = i % 3 == 0 ? v : mut[at] ^ v;
        }
        CHECK_MSG(!damaged_ok(mut, len, &loaded), "mutation %d", i);
    }
    printf("  2000 mutated files: %d still import (weights changed) and run, the others are rejected\n",
           loaded);
    /* messages nested 30,000 deep (graph -> node -> attribute -> graph ...):
     * protobuf-c alone would overflow the stack */
    size_t cap = 1 << 20, pos = cap;
    unsigned char *deep = malloc(cap);
    for (int level = 0; level < 3 * 30000 + 1; level++) {
        static const unsigned char tags[3] = {(6 << 3) | 2, (5 << 3) | 2, (1 << 3) | 2};
        unsigned char vb[10];
        size_t l = cap - pos, nv = 0;
        do {
            vb[nv++] = (unsigned char)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
            l >>= 7;
        } while (l);
        pos -= nv;
        memcpy(deep + pos, vb, nv);
        deep[--pos] = level == 3 * 30000 ? (7 << 3) | 2 : tags[level % 3];
    }
    CHECK(!damaged_ok(deep + pos, cap - pos, &loaded));
    CHECK_MSG(strstr(apb_errmsg(), "nested"), "%s", apb_errmsg());
    free(deep);
    /* nothing like protobuf at all */
    for (size_t i = 0; i < len; i++)
        mut[i] = (unsigned char)(apb_rng_uniform(&r) * 256.0f);
    CHECK(!damaged_ok(mut, len, &loaded));
    free(mut);
    free(buf);
    tnet_free(&t);
    return 0;
}

/* ---- graph records ---- */

static int same_record(const apb_model *m, const char *what)
{
    char *t1, *t2;
    size_t l1, l2;
    if (apb_graph_write(m, &t1, &l1)) {
        fprintf(stderr, "  %s: %s\n", what, apb_errmsg());
        return 1;
    }
    apb_model *b;
    if (apb_graph_build(&m->cfg, t1, l1, what, 1, &b)) {
        fprintf(stderr, "  %s: %s\n", what, apb_errmsg());
        free(t1);
        return 1;
    }
    int bad = apb_graph_write(b, &t2, &l2) != APB_OK || l1 != l2 || memcmp(t1, t2, l1);
    if (bad)
        fprintf(stderr, "  %s: the rebuilt layer list differs:\n%s\n---\n%.*s\n", what, t1, (int)l2, t2);
    for (int i = 0; i < m->nlayers && !bad; i++) {
        const apb_layer *x = &m->layers[i], *y = &b->layers[i];
        bad = x->wq != y->wq || x->aq != y->aq || x->kind != y->kind;
        if (bad)
            fprintf(stderr, "  %s: layer %s rebuilt with other quantizers\n", what, x->name);
    }
    free(t1);
    if (!bad)
        free(t2);
    apb_model_free(b);
    return bad;
}

APB_TEST(test_import_graph_records)
{
    /* built-in models: record -> builder -> the same list and quantizers */
    static const struct {
        const char *arch;
        int c, h;
        apb_wquant wq;
        apb_aquant aq;
        int qlast;
    } cs[] = {
        {"convnet", 1, 28, APB_WQ_FP, APB_AQ_FP, 0},     {"convnet", 1, 28, APB_WQ_APB, APB_AQ_BINARY, 0},
        {"convnet", 1, 28, APB_WQ_Q2, APB_AQ_Q2, 1},     {"resnet20", 3, 32, APB_WQ_APB, APB_AQ_FP, 0},
        {"resnet20", 3, 32, APB_WQ_BINARY, APB_AQ_FP, 1},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        apb_model_cfg cfg = {.wq = cs[i].wq, .aq = cs[i].aq, .in_c = cs[i].c, .in_h = cs[i].h,
                             .in_w = cs[i].h, .num_classes = 10, .quant_last = cs[i].qlast};
        snprintf(cfg.arch, sizeof cfg.arch, "%s", cs[i].arch);
        apb_model *m;
        CHECK_OK(apb_model_build(&cfg, 3, &m));
        CHECK_MSG(!same_record(m, cs[i].arch), "%s", cs[i].arch);
        apb_model_free(m);
    }
    /* an imported graph under other configurations: the placement rules */
    tnet t;
    tnet_resnet(&t, 3, 12, 12, 5, 0, 4);
    unsigned char *buf;
    size_t len;
    tnet_onnx(&t, NULL, NULL, &buf, &len);
    apb_model *m;
    CHECK_OK(apb_onnx_import(buf, len, "g.onnx", &m, NULL));
    free(buf);
    tnet_free(&t);
    char *rec;
    size_t rl;
    CHECK_OK(apb_graph_write(m, &rec, &rl));
    apb_model_cfg cfg = m->cfg;
    cfg.wq = APB_WQ_APB;
    cfg.aq = APB_AQ_BINARY;
    apb_model *q;
    CHECK_OK(apb_graph_build(&cfg, rec, rl, "g.ckpt", 1, &q));
    const apb_layer *c1 = find_layer(q, "conv1"), *b1 = find_layer(q, "layer1.0.conv1"),
                    *b2 = find_layer(q, "layer1.0.conv2"), *ds = find_layer(q, "layer1.0.downsample.0"),
                    *fc = find_layer(q, "fc");
    CHECK(c1->wq == APB_WQ_FP && c1->aq == APB_AQ_FP && fc->wq == APB_WQ_FP && fc->aq == APB_AQ_FP);
    CHECK(b1->wq == APB_WQ_APB && b1->aq == APB_AQ_BINARY && b2->aq == APB_AQ_BINARY);
    CHECK(ds->wq == APB_WQ_APB && ds->aq == APB_AQ_FP);
    /* stem ReLU (through the max pool) and the one inside the block feed binary
     * inputs: hardtanh; the block's output ReLU feeds only the average pool */
    CHECK(count_kind(q, APB_L_HARDTANH) == 2 && count_kind(q, APB_L_RELU) == 1);
    apb_model_free(q);
    cfg.quant_first = cfg.quant_last = cfg.fp_shortcut = 1;
    CHECK_OK(apb_graph_build(&cfg, rec, rl, "g.ckpt", 1, &q));
    c1 = find_layer(q, "conv1"), ds = find_layer(q, "layer1.0.downsample.0"), fc = find_layer(q, "fc");
    CHECK(c1->wq == APB_WQ_APB && c1->aq == APB_AQ_BINARY && fc->wq == APB_WQ_APB && fc->aq == APB_AQ_BINARY);
    CHECK(ds->wq == APB_WQ_FP);
    CHECK(count_kind(q, APB_L_HARDTANH) == 3); /* the last ReLU now feeds a binary fc */
    apb_model_free(q);
    /* damaged records fail with the file and line named */
    int rejected = 0;
    for (size_t l = 0; l < rl; l++) {
        char *cut = malloc(l ? l : 1);
        memcpy(cut, rec, l);
        apb_status s = apb_graph_build(&m->cfg, cut, l, "cut.ckpt", 1, &q);
        free(cut);
        CHECK_MSG(s != APB_OK && strstr(apb_errmsg(), "cut.ckpt"), "record cut at %zu: %s", l,
                  s ? apb_errmsg() : "accepted");
        rejected++;
    }
    static const char *bad[] = {"apb-graph 1\nconv name=a in=0 cin=3 cout=4 k=3 stride=1 pad=1 bias=0 q=1\nout=1\n",
                                "apb-graph 1\nrelu name=a in=1\nout=1\n",
                                "apb-graph 1\nconv name=a in=0 cin=3 cout=99999 k=64 stride=1 pad=1 bias=0 q=1 qi=1\nout=1\n",
                                "apb-graph 1\nmaxpool name=a in=0 k=2 stride=2 pad=2\nout=1\n",
                                "apb-graph 1\nrelu name=a in=0 in=0\nout=1\n",
                                "apb-graph 1\nsoftmax name=a in=0\nout=1\n",
                                "apb-graph 1\nrelu name=a in=0\nout=2\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(apb_graph_build(&m->cfg, bad[i], strlen(bad[i]), "bad.ckpt", 1, &q) != APB_OK,
                  "accepted: %s", bad[i]);
        printf("  %s\n", apb_errmsg());
    }
    free(rec);
    apb_model_free(m);
    printf("  %d truncated records rejected\n", rejected);
    return 0;
}

/* ---- the command line ---- */

/* system(); a failure is printed unless the command is expected to fail. */
static int expect_fail;
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if ((!WIFEXITED(st) || WEXITSTATUS(st)) && !expect_fail)
        fprintf(stderr, "  exit %d: %s\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int file_has(const char *path, const char *s)
{
    unsigned char *d;
    size_t n;
    if (apb_file_read(path, &d, &n))
        return 0;
    char *z = malloc(n + 1);
    memcpy(z, d, n);
    z[n] = 0;
    int has = strstr(z, s) != NULL;
    if (!has)
        fprintf(stderr, "  %s lacks '%s':\n%s\n", path, s, z);
    free(z);
    free(d);
    return has;
}

/* The user's journey on Fashion-MNIST: a PyTorch-style residual CNN imported,
 * fine-tuned to APB at 1.5 bits from the imported weights, exported, run. */
APB_TEST(test_import_cli_train_export_infer)
{
    const char *dir = apb_test_tmpdir(), *apb = apb_test_cli();
    char onnx[600], labels[600], ck[600];
    snprintf(onnx, sizeof onnx, "%s/fm.onnx", dir);
    snprintf(labels, sizeof labels, "%s/labels.txt", dir);
    snprintf(ck, sizeof ck, "%s/fm.ckpt", dir);
    tnet t;
    tnet_resnet(&t, 1, 28, 28, 10, 0, 8);
    unsigned char *buf;
    size_t len;
    tnet_onnx(&t, NULL, NULL, &buf, &len);
    CHECK_OK(apb_file_write_atomic(onnx, buf, len));
    free(buf);
    tnet_free(&t);
    static const char names[] = "tshirt\ntrouser\npullover\ndress\ncoat\nsandal\nshirt\nsneaker\nbag\nboot\n";
    CHECK_OK(apb_file_write_atomic(labels, names, strlen(names)));
    CHECK(run("%s import %s --out %s --labels %s --mean 0.2860 --std 0.3530 > %s/import.txt", apb, onnx, ck,
              labels, dir) == 0);
    char out[700];
    snprintf(out, sizeof out, "%s/import.txt", dir);
    CHECK(file_has(out, "input 1x28x28, 10 classes") && file_has(out, "4 batch norms kept"));
    /* a broken file: exit 1, the file named */
    expect_fail = 1;
    int rc = run("%s import %s --out %s/x.ckpt 2> %s/err.txt", apb, labels, dir, dir);
    expect_fail = 0;
    CHECK(rc == 1);
    snprintf(out, sizeof out, "%s/err.txt", dir);
    CHECK(file_has(out, "labels.txt") && file_has(out, "not an ONNX model"));
    CHECK(run("%s eval --ckpt %s --data fashion-mnist --limit-test 200 > /dev/null", apb, ck) == 0);
    /* fine-tune: no --model, the checkpoint's graph */
    CHECK(run("%s train --init %s --quant apb --budget-bits 1.5 --data fashion-mnist --limit-train 512 "
              "--limit-test 256 --epochs 1 --batch 64 --threads 2 --seed 3 --quiet --force --out %s/run",
              apb, ck, dir) == 0);
    char last[700];
    snprintf(last, sizeof last, "%s/run/last.ckpt", dir);
    apb_ckpt c;
    CHECK_OK(apb_ckpt_load(last, &c));
    apb_model *m;
    CHECK_OK(apb_ckpt_model(&c, &m));
    apb_ckpt_free(&c);
    CHECK(!strcmp(m->cfg.arch, "graph") && m->cfg.wq == APB_WQ_APB);
    apb_model_memory mem;
    apb_model_memory_stats(m, &mem, NULL, NULL);
    int ncomp = 0;
    for (int i = 0; i < m->nlayers; i++)
        ncomp += apb_layer_compressed(&m->layers[i]);
    printf("  fine-tuned graph: %d APB layers, %.4f bits/weight\n", ncomp, mem.bits_per_weight);
    CHECK(ncomp == 3 && mem.bits_per_weight <= 1.5 + 1e-9);
    apb_model_free(m);
    CHECK(run("%s export --ckpt %s --out %s/fm.apb > /dev/null", apb, last, dir) == 0);
    CHECK(run("%s info %s/fm.apb > %s/info.txt", apb, dir, dir) == 0);
    snprintf(out, sizeof out, "%s/info.txt", dir);
    CHECK(file_has(out, "apb/fp"));
    CHECK(run("%s infer %s/fm.apb --data fashion-mnist --limit-test 256 > %s/infer.txt", apb, dir, dir) == 0);
    snprintf(out, sizeof out, "%s/infer.txt", dir);
    CHECK(file_has(out, "top1="));
    /* the imported model itself, exported: its class names are the labels */
    CHECK(run("%s export --ckpt %s --out %s/imp.apb > /dev/null", apb, ck, dir) == 0);
    CHECK(run("%s info %s/imp.apb > %s/info2.txt", apb, dir, dir) == 0);
    snprintf(out, sizeof out, "%s/info2.txt", dir);
    CHECK(file_has(out, "mean 0.286"));
    return 0;
}
