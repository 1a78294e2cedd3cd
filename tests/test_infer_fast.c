/* test_infer_fast.c - the runtime's fast paths on awkward geometries.
 *
 * The APB residual runs as a direct sparse convolution over zero-padded stride
 * phase planes (infer/apbrt_fast.c); pooling runs a whole output row at a time
 * over stride phases (infer/apbrt_run.c); compressed convs pack several images
 * into one GEMM. Each is checked here on kernel sizes, strides and paddings the
 * model zoo does not have (1x1 stride 2, 5x5 stride 3, 7x7 stride 2 pad 3,
 * 2x2 pad 1, pad 0 with a 3x3 kernel, images narrower than the kernel span),
 * with binary, 2-bit and 8-bit activations (channel counts that are not a
 * multiple of the 8-bit planes' groups of 4):
 * against the naive reference of test_infer_util.h, bit-identical across batch
 * sizes and thread counts, and pooling bit-identical to a row-major float loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt_internal.h"
#include "randmodel.h"
#include "cpu.h"
#include "test.h"
#include "test_infer_util.h"
#include "threads.h"

static int load_fast(const apbrt_model_desc *d, apbrt_model **m)
{
    unsigned char *buf;
    size_t size;
    if (apbrt_serialize(d, &buf, &size) != APB_OK) {
        fprintf(stderr, "  serialize: %s\n", apb_errmsg());
        return 1;
    }
    int rc = apbrt_load_memory(buf, size, m);
    free(buf);
    if (rc)
        fprintf(stderr, "  load: %s\n", apbrt_errmsg());
    return rc != 0;
}

typedef struct {
    int cin, cout, h, w, k, s, p;
} geo;

/* One APB conv (+ BN + activation fused) on a geometry; n samples. */
static int check_conv(const geo *g, int wkind, int akind, int act, apb_rng *r, const char *what)
{
    int OH = (g->h + 2 * g->p - g->k) / g->s + 1, OW = (g->w + 2 * g->p - g->k) / g->s + 1;
    long out = (long)g->cout * OH * OW, in = (long)g->cin * g->h * g->w;
    ti_model t;
    ti_init(&t, g->cin, g->h, g->w, (int)out, 2);
    apbrt_layer_desc *cv =
        ti_conv(&t, r, APBRT_CONV, 0, 1, g->cin, g->cout, g->k, g->s, g->p, wkind, akind, 1, 0.12f);
    if (akind == APBRT_A_U8 || akind == APBRT_A_S8)
        cv->act_step = 0.02f; /* ~100 codes over the inputs' range */
    ti_bn(&t, r, 1, 1, g->cout);
    if (act)
        ti_add(&t, act, 1, 1);
    t.d.output_slot = 1;
    enum { NB = 5 };
    float *x = malloc(sizeof(float) * NB * in), *want = malloc(sizeof(float) * NB * out);
    float *a = malloc(sizeof(float) * NB * out), *b = malloc(sizeof(float) * NB * out);
    float *c = malloc(sizeof(float) * NB * out);
    ti_input(r, x, NB * in);
    x[0] = 0.0f; /* sgn(0) = +1, 2-bit level 2 */
    ti_reference_batch(&t.d, x, NB, want, out);
    int fail = 0;
    apbrt_model *m;
    if (load_fast(&t.d, &m)) {
        fail = 1;
    } else {
        apbrt_layer_info li;
        apbrt_layer_info_get(m, 0, &li);
        if (!strcmp(li.kernel, "sgemm")) {
            fprintf(stderr, "  %s: conv not on a bit kernel\n", what);
            fail = 1;
        }
        int saved = apb_threads_get();
        apbrt_set_threads(1);
        if (apbrt_run(m, x, NB, a))
            fail = 1;
        apbrt_set_threads(2); /* 5 images: chunks of 3 and 2, one per thread */
        if (apbrt_run(m, x, NB, b))
            fail = 1;
        for (int i = 0; i < NB && !fail; i++) /* one image at a time */
            if (apbrt_run(m, x + i * in, 1, c + i * out))
                fail = 1;
        apbrt_set_threads(saved);
        apbrt_free(m);
        double e = ti_relerr(a, want, NB * out);
        if (!fail && !(e <= 1e-5)) {
            fprintf(stderr, "  %s: max relative error %.3g vs the naive reference\n", what, e);
            fail = 1;
        }
        if (!fail && (memcmp(a, b, sizeof(float) * NB * out) || memcmp(a, c, sizeof(float) * NB * out))) {
            fprintf(stderr, "  %s: results depend on the batch size or thread count\n", what);
            fail = 1;
        }
    }
    free(x), free(want), free(a), free(b), free(c);
    ti_free(&t);
    return fail;
}

APB_TEST(test_infer_fast_residual_geometries)
{
    static const geo gs[] = {
        {5, 6, 9, 11, 3, 1, 1},  {4, 7, 10, 7, 3, 2, 1}, {3, 5, 13, 12, 5, 3, 2},
        {6, 9, 5, 6, 1, 1, 0},   {5, 4, 8, 9, 1, 2, 0},  {3, 8, 17, 15, 7, 2, 3},
        {7, 5, 6, 6, 3, 1, 0},   {4, 6, 7, 9, 2, 2, 1},  {70, 3, 4, 5, 3, 1, 1},
        {2, 3, 3, 2, 3, 1, 2},
        /* 64k input channels: the input is packed along channels first */
        {64, 6, 9, 11, 3, 1, 1}, {128, 5, 10, 7, 3, 2, 1}, {64, 3, 7, 6, 5, 3, 2},
        {64, 4, 5, 6, 1, 1, 0},  {64, 5, 3, 2, 3, 1, 2},
        /* the residual's chunks: rows longer than a chunk (Wq > 64), several
         * bands of rows, more channels than one block */
        {3, 4, 5, 70, 3, 1, 1},  {2, 3, 4, 141, 3, 2, 1}, {3, 20, 41, 19, 3, 1, 1},
    };
    apb_rng r;
    apb_rng_seed(&r, 77);
    apb_isa prev = apb_isa_active();
    int fails = 0;
    for (int isa = 0; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++)
            for (int a = 0; a < 3; a++) {
                char what[128];
                const geo *g = &gs[i];
                /* 8-bit: unsigned and signed codes on alternate geometries */
                int ak = a == 0 ? APBRT_A_BIN : a == 1 ? APBRT_A_Q2 : i % 2 ? APBRT_A_S8 : APBRT_A_U8;
                static const char *an[] = {"fp", "binary", "2-bit", "u8", "s8"};
                snprintf(what, sizeof what, "isa %d, %s act, %dx%dx%d -> %d, k%d s%d p%d", isa, an[ak],
                         g->cin, g->h, g->w, g->cout, g->k, g->s, g->p);
                int act = i % 3 == 0 ? 0 : i % 3 == 1 ? APBRT_RELU : APBRT_HARDTANH;
                int f = check_conv(g, APBRT_W_APB, ak, act, &r, what);
                CHECK_MSG(f == 0, "%s", what);
                fails += f;
                if (a < 2 && g->cin % 64 == 0) { /* 2-bit weights (2x2 kernel): both weight planes reordered */
                    snprintf(what, sizeof what, "isa %d, q2 weights, %s act, %dx%dx%d -> %d, k%d s%d p%d",
                             isa, a ? "2-bit" : "binary", g->cin, g->h, g->w, g->cout, g->k, g->s, g->p);
                    f = check_conv(g, APBRT_W_Q2, a ? APBRT_A_Q2 : APBRT_A_BIN, act, &r, what);
                    CHECK_MSG(f == 0, "%s", what);
                    fails += f;
                }
            }
    }
    apb_isa_force(prev);
    CHECK(fails == 0);
    return 0;
}

/* Batches large enough that the deep-layer GEMM packs several images (and not a
 * multiple of the images per GEMM) give exactly the per-image results. */
APB_TEST(test_infer_fast_batched_gemm)
{
    apb_rng r;
    apb_rng_seed(&r, 78);
    geo g = {16, 24, 5, 5, 3, 1, 1}; /* 25 pixels: 81 images per GEMM */
    int OH = 5, OW = 5;
    long out = (long)g.cout * OH * OW, in = (long)g.cin * g.h * g.w;
    ti_model t;
    ti_init(&t, g.cin, g.h, g.w, (int)out, 2);
    ti_conv(&t, &r, APBRT_CONV, 0, 1, g.cin, g.cout, 3, 1, 1, APBRT_W_APB, APBRT_A_Q2, 0, 0.05f);
    ti_bn(&t, &r, 1, 1, g.cout);
    t.d.output_slot = 1;
    enum { NB = 90 };
    float *x = malloc(sizeof(float) * NB * in), *a = malloc(sizeof(float) * NB * out);
    float *b = malloc(sizeof(float) * out);
    ti_input(&r, x, NB * in);
    apbrt_model *m;
    CHECK(load_fast(&t.d, &m) == 0);
    CHECK_OK(apbrt_run(m, x, NB, a));
    for (int i = 0; i < NB; i += 7) {
        CHECK_OK(apbrt_run(m, x + i * in, 1, b));
        CHECK_MSG(memcmp(a + i * out, b, sizeof(float) * out) == 0, "image %d of %d", i, NB);
    }
    /* micro-batches (apbrt_run): by default as many images as keep the largest
     * activation (here the output, 24x5x5 floats) under 64 MB, i.e. all 90; split
     * into passes of 13 (7 passes, the last short) the results stay the same */
    long want = (64L << 20) / (24 * 5 * 5 * 4);
    CHECK(apbrt_microbatch(m) == (want > 4096 ? 4096 : (int)want)); /* at most 4096 */
    float *c = malloc(sizeof(float) * NB * out);
    CHECK(c);
    setenv("APBRT_MICROBATCH", "13", 1);
    CHECK(apbrt_microbatch(m) == 13);
    int rc = apbrt_run(m, x, NB, c);
    unsetenv("APBRT_MICROBATCH");
    CHECK_OK(rc);
    CHECK(memcmp(a, c, sizeof(float) * NB * out) == 0);
    free(c);
    apbrt_free(m);
    free(x), free(a), free(b);
    ti_free(&t);
    return 0;
}

/* The elementwise ops (add, hardtanh, clip, relu) on a pass large enough to be
 * split over the threads (more than 2^18 values): bit for bit the naive
 * reference, at 1 and 2 threads. */
APB_TEST(test_infer_fast_elementwise_split)
{
    enum { C = 4, H = 64, W = 64, NB = 20 };
    long per = (long)C * H * W;
    ti_model t;
    ti_init(&t, C, H, W, (int)per, 5);
    apbrt_layer_desc *a = ti_add(&t, APBRT_ADD, 0, 1);
    a->in2 = 0;
    ti_add(&t, APBRT_HARDTANH, 1, 2);
    apbrt_layer_desc *c = ti_add(&t, APBRT_CLIP, 2, 3);
    c->lo = -0.5f, c->hi = 0.75f;
    ti_add(&t, APBRT_RELU, 3, 4);
    t.d.output_slot = 4;
    apb_rng r;
    apb_rng_seed(&r, 80);
    float *x = malloc(sizeof(float) * NB * per), *want = malloc(sizeof(float) * NB * per);
    float *y1 = malloc(sizeof(float) * NB * per), *y2 = malloc(sizeof(float) * NB * per);
    ti_input(&r, x, NB * per);
    ti_reference_batch(&t.d, x, NB, want, per);
    apbrt_model *m;
    CHECK(load_fast(&t.d, &m) == 0);
    CHECK(apbrt_microbatch(m) >= NB); /* one pass: NB * per > 2^18 values per op */
    int saved = apb_threads_get();
    apbrt_set_threads(1);
    int rc1 = apbrt_run(m, x, NB, y1);
    apbrt_set_threads(2);
    int rc2 = apbrt_run(m, x, NB, y2);
    apbrt_set_threads(saved);
    CHECK_OK(rc1);
    CHECK_OK(rc2);
    CHECK(memcmp(y1, want, sizeof(float) * NB * per) == 0);
    CHECK(memcmp(y2, want, sizeof(float) * NB * per) == 0);
    apbrt_free(m);
    free(x), free(want), free(y1), free(y2);
    ti_free(&t);
    return 0;
}

/* Pooling against a row-major float loop, bit for bit (max and average). */
APB_TEST(test_infer_fast_pool_rows)
{
    static const int gs[][6] = {
        /* C, H, W, k, s, p */
        {3, 9, 11, 3, 2, 1}, {2, 8, 8, 2, 2, 0}, {2, 10, 13, 3, 1, 1}, {1, 11, 10, 5, 3, 2},
        {2, 7, 7, 4, 1, 2},  {1, 3, 5000, 3, 2, 1}, {1, 2, 9000, 3, 1, 1},
    };
    apb_rng r;
    apb_rng_seed(&r, 79);
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
        for (int kind = APBRT_MAXPOOL; kind <= APBRT_AVGPOOL; kind++) {
            int C = gs[gi][0], H = gs[gi][1], W = gs[gi][2], k = gs[gi][3], s = gs[gi][4],
                p = gs[gi][5];
            int OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
            long in = (long)C * H * W, out = (long)C * OH * OW;
            ti_model t;
            ti_init(&t, C, H, W, (int)out, 2);
            apbrt_layer_desc *L = ti_add(&t, kind, 0, 1);
            L->k = k, L->pstride = s, L->ppad = p;
            t.d.output_slot = 1;
            float *x = malloc(sizeof(float) * in), *got = malloc(sizeof(float) * out);
            float *want = malloc(sizeof(float) * out);
            ti_input(&r, x, in);
            for (long i = 0; i < in; i += 5)
                x[i] = x[i / 2]; /* ties */
            if (gi % 2) /* signed zeros decide: the first in row-major order wins, as in training */
                for (long i = 0; i < in; i++)
                    x[i] = i % 3 == 0 ? -0.0f : i % 3 == 1 ? 0.0f : -fabsf(x[i]);
            for (int c = 0; c < C; c++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) {
                        float acc = kind == APBRT_MAXPOOL ? -INFINITY : 0.0f;
                        for (int i = oh * s - p; i < oh * s - p + k; i++)
                            for (int j = ow * s - p; j < ow * s - p + k; j++) {
                                if (i < 0 || i >= H || j < 0 || j >= W)
                                    continue;
                                float v = x[((long)c * H + i) * W + j];
                                acc = kind == APBRT_MAXPOOL ? (v > acc ? v : acc) : acc + v;
                            }
                        want[((long)c * OH + oh) * OW + ow] =
                            kind == APBRT_MAXPOOL ? acc : acc * (1.0f / (float)(k * k));
                    }
            apbrt_model *m;
            CHECK(load_fast(&t.d, &m) == 0);
            CHECK_OK(apbrt_run(m, x, 1, got));
            apbrt_free(m);
            long bad = -1;
            for (long i = 0; i < out && bad < 0; i++)
                if (memcmp(&got[i], &want[i], sizeof(float)))
                    bad = i;
            CHECK_MSG(bad < 0, "%s C%d H%d W%d k%d s%d p%d: [%ld] %.9g vs %.9g",
                      kind == APBRT_MAXPOOL ? "maxpool" : "avgpool", C, H, W, k, s, p, bad,
                      bad < 0 ? 0.0 : got[bad], bad < 0 ? 0.0 : want[bad]);
            free(x), free(got), free(want);
            ti_free(&t);
        }
    return 0;
}

/* APBRT_WINOGRAD=1 (read at load): an fp32 3x3 conv of 128 -> 128 channels runs
 * by Winograd ("wino" in the layer info), within rounding of the direct path
 * (not its bits), the same bits for 1 and 2 threads and one image at a time; a
 * 64-channel conv and a default load stay on the direct path. */
APB_TEST(test_infer_winograd_opt_in)
{
    apb_rng r;
    apb_rng_seed(&r, 81);
    for (int wide = 0; wide < 2; wide++) {
        int C = wide ? 128 : 64, M = wide ? 128 : 64, H = 9, W = 10;
        long in = (long)C * H * W, out = (long)M * H * W;
        ti_model t;
        ti_init(&t, C, H, W, (int)out, 2);
        ti_conv(&t, &r, APBRT_CONV, 0, 1, C, M, 3, 1, 1, APBRT_W_FP32, APBRT_A_FP, 1, 0);
        ti_bn(&t, &r, 1, 1, M);
        t.d.output_slot = 1;
        enum { NB = 3 };
        float *x = malloc(sizeof(float) * NB * in), *d = malloc(sizeof(float) * NB * out);
        float *a = malloc(sizeof(float) * NB * out), *b = malloc(sizeof(float) * NB * out);
        CHECK(x && d && a && b);
        ti_input(&r, x, NB * in);
        apbrt_model *md, *mw;
        CHECK(load_fast(&t.d, &md) == 0);
        setenv("APBRT_WINOGRAD", "1", 1);
        int lw = load_fast(&t.d, &mw);
        unsetenv("APBRT_WINOGRAD");
        CHECK(lw == 0);
        apbrt_layer_info li;
        apbrt_layer_info_get(md, 0, &li);
        CHECK_MSG(strcmp(li.kernel, "sgemm") == 0, "default load: %s", li.kernel);
        apbrt_layer_info_get(mw, 0, &li);
        CHECK_MSG(strcmp(li.kernel, wide ? "wino" : "sgemm") == 0, "opt-in, %d channels: %s", C,
                  li.kernel);
        int saved = apb_threads_get();
        apbrt_set_threads(1);
        CHECK_OK(apbrt_run(md, x, NB, d));
        CHECK_OK(apbrt_run(mw, x, NB, a));
        apbrt_set_threads(2);
        CHECK_OK(apbrt_run(mw, x, NB, b));
        CHECK(memcmp(a, b, sizeof(float) * NB * out) == 0);
        for (int i = 0; i < NB; i++) {
            CHECK_OK(apbrt_run(mw, x + i * in, 1, b));
            CHECK(memcmp(a + i * out, b, sizeof(float) * out) == 0);
        }
        apbrt_set_threads(saved);
        double e = ti_relerr(a, d, NB * out);
        CHECK_MSG(e <= 1e-5, "Winograd vs direct: relative error %.3g", e);
        /* another ISA level after the load: the packed weights are made again */
        CHECK_OK(apb_isa_force(APB_ISA_REF));
        int rc = apbrt_run(mw, x, NB, b);
        CHECK_OK(apb_isa_force(apb_isa_detected()));
        CHECK_OK(rc);
        CHECK_MSG(ti_relerr(b, d, NB * out) <= 1e-5, "Winograd at the portable level");
        if (wide)
            CHECK_MSG(memcmp(a, d, sizeof(float) * NB * out) != 0, "Winograd gave the direct bits");
        else
            CHECK(memcmp(a, d, sizeof(float) * NB * out) == 0);
        apbrt_free(md);
        apbrt_free(mw);
        free(x), free(d), free(a), free(b);
        ti_free(&t);
    }
    return 0;
}

/* A conv's residual add (and the activation after it) run in the conv's
 * epilogue: the add into the conv's own slot, into the other operand's slot
 * (which the GEMM must not overwrite first), with its operands either way round,
 * after a bit conv, an 8-bit conv and an fp conv. Every add shows as fused; the
 * logits are bit for bit those with the adds as layers of their own
 * (APBRT_NOFUSE_ADD=1, read at load), on the fast and the reference path, at 1
 * and 2 threads, and within rounding of the naive reference. */
APB_TEST(test_infer_fast_fused_residual_add)
{
    enum { C = 64, H = 9, W = 9, NB = 3, K = 7 };
    static const int akinds[] = {APBRT_A_BIN, APBRT_A_Q2, APBRT_A_U8, APBRT_A_FP};
    long in = (long)C * H * W;
    apb_rng r;
    apb_rng_seed(&r, 81);
    float *x = malloc(sizeof(float) * NB * in), *want = malloc(sizeof(float) * NB * K);
    float *got[2][2][2]; /* [fused][reference][threads - 1] */
    for (int i = 0; i < 8; i++)
        (&got[0][0][0])[i] = malloc(sizeof(float) * NB * K);
    ti_input(&r, x, NB * in);
    for (size_t ai = 0; ai < sizeof akinds / sizeof akinds[0]; ai++) {
        int ak = akinds[ai], wk = ak == APBRT_A_FP ? APBRT_W_FP32 : APBRT_W_APB;
        ti_model t;
        ti_init(&t, C, H, W, K, 5);
        ti_conv(&t, &r, APBRT_CONV, 0, 1, C, C, 3, 1, 1, wk, ak, 0, 0.02f);
        ti_bn(&t, &r, 1, 1, C);
        ti_add(&t, APBRT_HARDTANH, 1, 1);
        ti_conv(&t, &r, APBRT_CONV, 1, 2, C, C, 3, 1, 1, wk, ak, 0, 0.02f);
        ti_bn(&t, &r, 2, 2, C);
        apbrt_layer_desc *a = ti_add(&t, APBRT_ADD, 2, 2); /* into the conv's slot */
        a->in2 = 1;
        ti_add(&t, APBRT_HARDTANH, 2, 2);
        ti_conv(&t, &r, APBRT_CONV, 2, 4, C, C, 1, 2, 0, APBRT_W_FP32, APBRT_A_FP, 0, 0.0f);
        ti_conv(&t, &r, APBRT_CONV, 2, 3, C, C, 3, 2, 1, wk, ak, 0, 0.02f);
        ti_bn(&t, &r, 3, 3, C);
        a = ti_add(&t, APBRT_ADD, 4, 4); /* into the other operand's slot, operands swapped */
        a->in2 = 3;
        ti_add(&t, APBRT_RELU, 4, 4);
        ti_add(&t, APBRT_FLATTEN, 4, 3);
        ti_conv(&t, &r, APBRT_LINEAR, 3, 4, C * 5 * 5, K, 1, 1, 0, APBRT_W_FP32, APBRT_A_FP, 1, 0.0f);
        t.d.output_slot = 4;
        ti_reference_batch(&t.d, x, NB, want, K);
        int saved = apb_threads_get();
        for (int fu = 0; fu < 2; fu++)
            for (int ref = 0; ref < 2; ref++) {
                if (!fu)
                    setenv("APBRT_NOFUSE_ADD", "1", 1);
                if (ref)
                    setenv("APBRT_REFERENCE", "1", 1);
                apbrt_model *m;
                int lf = load_fast(&t.d, &m);
                unsetenv("APBRT_NOFUSE_ADD");
                unsetenv("APBRT_REFERENCE");
                CHECK(lf == 0);
                int nadd = 0, nfused = 0;
                for (int i = 0; i < apbrt_num_layers(m); i++) {
                    apbrt_layer_info li;
                    apbrt_layer_info_get(m, i, &li);
                    if (t.L[i].kind == APBRT_ADD) {
                        nadd++;
                        nfused += li.fused;
                    }
                }
                CHECK_MSG(nadd == 2 && nfused == (fu ? 2 : 0), "akind %d fuse %d ref %d: %d of %d adds fused",
                          ak, fu, ref, nfused, nadd);
                for (int th = 1; th <= 2; th++) {
                    apbrt_set_threads(th);
                    CHECK_OK(apbrt_run(m, x, NB, got[fu][ref][th - 1]));
                }
                apbrt_set_threads(saved);
                apbrt_free(m);
                double e = ti_relerr(got[fu][ref][0], want, NB * K);
                CHECK_MSG(e <= 1e-4, "akind %d fuse %d ref %d: relative error %.3g", ak, fu, ref, e);
            }
        for (int ref = 0; ref < 2; ref++)
            for (int th = 0; th < 2; th++)
                CHECK_MSG(memcmp(got[1][ref][th], got[0][ref][th], sizeof(float) * NB * K) == 0,
                          "akind %d ref %d threads %d: fused adds change the logits", ak, ref, th + 1);
        ti_free(&t);
    }
    for (int i = 0; i < 8; i++)
        free((&got[0][0][0])[i]);
    free(x), free(want);
    return 0;
}

/* Binary convs of 64 input channels at stride 1 read the channel-packed image in
 * place (apb_bgemm_ind_f32, wide output rows): bit for bit the packed GEMM
 * (APBRT_IND=0 against =1, read at each run), with and without outliers and
 * padding, odd maps, M not a multiple of the kernel's 8 rows, batch 1 and 3,
 * 1 and 2 threads (one image on 2: also with apbrt_bands_off, the stages
 * unfused); and within rounding of the naive reference. */
APB_TEST(test_infer_fast_inplace_binary_conv)
{
    static const int gs[][6] = {
        /* M, H, W, k, p, outliers (per mille) */
        {64, 9, 11, 3, 1, 20}, {13, 7, 7, 3, 1, 0}, {24, 5, 13, 3, 0, 30}, {40, 6, 6, 1, 0, 10},
        {72, 12, 3, 3, 1, 5},
        /* large enough for a GEMM on both threads: units claimed (post_bands) */
        {64, 30, 30, 3, 1, 20}, {96, 22, 25, 3, 1, 0},
    };
    enum { NB = 3, K = 5 };
    apb_rng r;
    apb_rng_seed(&r, 82);
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++) {
        int M = gs[gi][0], H = gs[gi][1], W = gs[gi][2], k = gs[gi][3], p = gs[gi][4];
        int OH = H + 2 * p - k + 1, OW = W + 2 * p - k + 1;
        long in = 64L * H * W;
        ti_model t;
        ti_init(&t, 64, H, W, K, 4);
        ti_conv(&t, &r, APBRT_CONV, 0, 1, 64, M, k, 1, p, APBRT_W_APB, APBRT_A_BIN, 0, gs[gi][5] / 1000.0f);
        ti_bn(&t, &r, 1, 1, M);
        ti_add(&t, APBRT_HARDTANH, 1, 1);
        ti_add(&t, APBRT_FLATTEN, 1, 2);
        ti_conv(&t, &r, APBRT_LINEAR, 2, 3, M * OH * OW, K, 1, 1, 0, APBRT_W_FP32, APBRT_A_FP, 1, 0.0f);
        t.d.output_slot = 3;
        float *x = malloc(sizeof(float) * NB * in), *want = malloc(sizeof(float) * NB * K);
        float *a = malloc(sizeof(float) * NB * K), *b = malloc(sizeof(float) * NB * K);
        float *c = malloc(sizeof(float) * K);
        ti_input(&r, x, NB * in);
        ti_reference_batch(&t.d, x, NB, want, K);
        apbrt_model *m;
        CHECK(load_fast(&t.d, &m) == 0);
        CHECK_MSG(apbrt_fast_inplace_ready(&m->layers[0]), "M%d %dx%d k%d p%d: the conv is not prepared in place",
                  M, H, W, k, p);
        int saved = apb_threads_get();
        for (int th = 1; th <= 2; th++)
            for (int n = 1; n <= NB; n += NB - 1) {
                apbrt_set_threads(th);
                setenv("APBRT_IND", "0", 1);
                int r0 = apbrt_run(m, x, n, a);
                setenv("APBRT_IND", "1", 1);
                int r1 = apbrt_run(m, x, n, b);
                unsetenv("APBRT_IND");
                /* one image on 2 threads: the fused units against the stages apart */
                apbrt_bands_off = 1;
                int r2 = th == 2 && n == 1 ? apbrt_run(m, x, n, c) : 0;
                apbrt_bands_off = 0;
                apbrt_set_threads(saved);
                CHECK_OK(r0);
                CHECK_OK(r1);
                CHECK_OK(r2);
                CHECK_MSG(memcmp(a, b, sizeof(float) * n * K) == 0,
                          "M%d %dx%d k%d p%d, %d images, %d threads: in place != packed", M, H, W, k, p, n, th);
                CHECK_MSG(!(th == 2 && n == 1) || memcmp(c, b, sizeof(float) * K) == 0,
                          "M%d %dx%d k%d p%d: stages apart != fused", M, H, W, k, p);
                double e = ti_relerr(b, want, (long)n * K);
                CHECK_MSG(e <= 1e-4, "M%d %dx%d k%d p%d: relative error %.3g", M, H, W, k, p, e);
            }
        apbrt_free(m);
        free(x), free(want), free(a), free(b), free(c);
        ti_free(&t);
    }
    return 0;
}

/* A batch is split where the maps get small (apbrt_run.c, run_batch): the
 * layers before run whole images, one per thread in copies of the model of
 * their own, and hand their last tensors to the rest, which runs the whole
 * batch. Random ResNet-18s at 64x64 (the split falls inside: its stem's 64 x 32
 * x 32 maps are past the limit) with binary, 8-bit and float activations, a
 * batch of 5 on 1, 2 (and 3) threads, profiled or not: the same logits bit for
 * bit as the unsplit batch and as the images one at a time. */
APB_TEST(test_infer_split_batch_equals_whole)
{
    static const struct {
        apb_wquant wq;
        apb_aquant aq;
    } kinds[] = {{APB_WQ_APB, APB_AQ_BINARY}, {APB_WQ_APB, APB_AQ_INT8}, {APB_WQ_FP, APB_AQ_FP}};
    enum { NB = 5, CL = 10 };
    long in = 3L * 64 * 64;
    float *x = malloc(sizeof(float) * NB * in), *a = malloc(sizeof(float) * NB * CL);
    float *b = malloc(sizeof(float) * NB * CL), *c = malloc(sizeof(float) * NB * CL);
    CHECK(x && a && b && c);
    apb_rng r;
    apb_rng_seed(&r, 95);
    ti_input(&r, x, NB * in);
    int saved = apb_threads_get();
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
        unsigned char *buf;
        size_t size;
        CHECK_OK(apb_random_model_file("resnet18", kinds[ki].wq, kinds[ki].aq, 3, 64, 64, CL, 0.02, 3, &buf,
                                       &size));
        apbrt_model *m;
        CHECK(apbrt_load_memory(buf, size, &m) == 0);
        free(buf);
        for (int th = 1; th <= (ki == 0 ? 3 : 2); th++) {
            apbrt_set_threads(th);
            apbrt_set_profile(m, th == 2);
            apbrt_set_split(0);
            int r0 = apbrt_run(m, x, NB, a);
            apbrt_set_split(1);
            int r1 = apbrt_run(m, x, NB, b);
            int r2 = 0;
            for (int i = 0; i < NB; i++)
                r2 |= apbrt_run(m, x + i * in, 1, c + i * CL);
            apbrt_set_threads(saved);
            CHECK(r0 == 0 && r1 == 0 && r2 == 0);
            CHECK_MSG(!memcmp(a, b, sizeof(float) * NB * CL), "kind %zu, %d threads: split batch != whole", ki, th);
            CHECK_MSG(!memcmp(a, c, sizeof(float) * NB * CL), "kind %zu, %d threads: batch != single images", ki,
                      th);
        }
        apbrt_layer_info li;
        CHECK(apbrt_layer_info_get(m, 0, &li) == 0 && li.seconds > 0.0);
        apbrt_free(m);
    }
    free(x), free(a), free(b), free(c);
    return 0;
}
