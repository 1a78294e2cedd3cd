/* test_int8_stem.c - the opt-in approximate 8-bit first conv (`apb export
 * --int8-stem`, apbrt_model.h S8D; issue 13).
 *
 * What must hold: the file says so (format version 3, written only then; a
 * version-2 header with such a layer is refused by name); the exact mode runs
 * the very FP32 conv of the plain export (logits bit for bit); the integer fast
 * path, the float reference path and every ISA level agree to rounding; each
 * image is quantized with its own step (a batch gives each image's logits bit
 * for bit as when it runs alone, and a bright image does not coarsen a dark
 * one); the approximation stays close to the exact logits; and a model whose
 * first conv is compressed is refused with a message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"
#include "apbrt_internal.h"
#include "cpu.h"
#include "crc32.h"
#include "export.h"
#include "model.h"
#include "randmodel.h"
#include "rng.h"
#include "test.h"

static apb_model *small_model(const char *arch, apb_wquant wq, apb_aquant aq, int h, int quant_first)
{
    apb_model_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
    cfg.in_c = 3, cfg.in_h = h, cfg.in_w = h, cfg.num_classes = 10;
    cfg.wq = wq, cfg.aq = aq, cfg.quant_first = quant_first;
    apb_model *m = NULL;
    if (apb_random_model_cfg(&cfg, 0.02, 7, &m) != APB_OK)
        return NULL;
    return m;
}

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const float *b, long n)
{
    double d = 0, mx = 0;
    for (long i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)b[i]));
    }
    return mx > 0 ? d / mx : d;
}

static int argmax(const float *z, int k)
{
    int b = 0;
    for (int i = 1; i < k; i++)
        b = z[i] > z[b] ? i : b;
    return b;
}

APB_TEST(test_int8_stem_paths_exact_mode_and_per_image_step)
{
    enum { N = 4, K = 10 };
    /* fp weights and activations after the stem: the comparisons see the stem's
     * rounding, not sign flips further on */
    apb_model *tm = small_model("resnet20", APB_WQ_FP, APB_AQ_FP, 32, 0);
    CHECK(tm != NULL);
    unsigned char *b0, *b1;
    size_t s0, s1;
    CHECK_OK(apb_random_model_export_opt(tm, 0, &b0, &s0));
    CHECK_OK(apb_random_model_export_opt(tm, 1, &b1, &s1));
    apb_model_free(tm);
    CHECK(apbrt_rd32(b0 + 8) == 2 && apbrt_rd32(b1 + 8) == 3);
    apbrt_model *m0, *m1;
    CHECK(apbrt_load_memory(b0, s0, &m0) == 0);
    CHECK(apbrt_load_memory(b1, s1, &m1) == 0);
    CHECK(apbrt_approximate_layers(m0) == 0 && apbrt_approximate_layers(m1) == 1);
    apbrt_layer_info li;
    CHECK(apbrt_layer_info_get(m1, 0, &li) == 0);
    CHECK_MSG(!strcmp(li.act, "s8d") && !strcmp(li.kernel, "8x8"), "layer 0: %s / %s", li.act, li.kernel);

    long in = 3 * 32 * 32;
    float *x = malloc(sizeof(float) * N * in);
    float *l0 = malloc(sizeof(float) * N * K), *la = malloc(sizeof(float) * N * K);
    float *lx = malloc(sizeof(float) * N * K), *l1 = malloc(sizeof(float) * K);
    CHECK(x && l0 && la && lx && l1);
    apb_rng r;
    apb_rng_seed(&r, 21);
    /* image 1 is 20x brighter than image 0: per-image steps keep image 0's
     * codes fine; image 3 is all zero (step 1, codes 0) */
    for (long i = 0; i < in; i++) {
        x[i] = (float)apb_rng_normal(&r);
        x[in + i] = 20.0f * (float)apb_rng_normal(&r);
        x[2 * in + i] = (float)apb_rng_uniform(&r) - 0.25f;
        x[3 * in + i] = 0.0f;
    }
    CHECK(apbrt_run(m0, x, N, l0) == 0);
    CHECK(apbrt_run(m1, x, N, la) == 0);
    /* exact mode: the plain file's logits, bit for bit */
    apbrt_set_exact(m1, 1);
    CHECK(apbrt_layer_info_get(m1, 0, &li) == 0 && !strcmp(li.kernel, "sgemm"));
    CHECK(apbrt_run(m1, x, N, lx) == 0);
    CHECK_MSG(memcmp(lx, l0, sizeof(float) * N * K) == 0, "exact mode differs from the plain file");
    apbrt_set_exact(m1, 0);
    /* close to exact, each image on its own scale, same top-1 */
    for (int b = 0; b < N; b++) {
        double e = rel_err(la + b * K, l0 + b * K, K);
        CHECK_MSG(e < 0.03, "image %d: int8 stem logits off by %.3g of the largest", b, e);
        CHECK_MSG(argmax(la + b * K, K) == argmax(l0 + b * K, K), "image %d: top-1 differs", b);
    }
    /* one image at a time: the batch's logits bit for bit */
    for (int b = 0; b < N; b++) {
        CHECK(apbrt_run(m1, x + b * in, 1, l1) == 0);
        CHECK_MSG(memcmp(l1, la + b * K, sizeof(float) * K) == 0, "image %d alone differs", b);
    }
    /* every ISA level, and 1 thread: the same integers, rounding-close logits */
    apb_isa best = apb_isa_detected(), prev = apb_isa_active();
    for (int lvl = APB_ISA_REF; lvl <= (int)best; lvl++) {
        CHECK_OK(apb_isa_force((apb_isa)lvl));
        for (int th = 1; th <= 2; th++) {
            apbrt_set_threads(th);
            CHECK(apbrt_run(m1, x, N, lx) == 0);
            double e = rel_err(lx, la, N * K);
            CHECK_MSG(e < 1e-5, "level %d, %d threads: %.3g from the default path", lvl, th, e);
        }
    }
    CHECK_OK(apb_isa_force(prev));
    apbrt_set_threads(0);
    /* the float reference path computes the same approximation */
    setenv("APBRT_REFERENCE", "1", 1);
    apbrt_model *mr;
    int lr = apbrt_load_memory(b1, s1, &mr);
    unsetenv("APBRT_REFERENCE");
    CHECK(lr == 0 && apbrt_uses_reference(mr));
    CHECK(apbrt_run(mr, x, N, lx) == 0);
    double e = rel_err(lx, la, N * K);
    CHECK_MSG(e < 1e-5, "reference path %.3g from the integer path", e);
    apbrt_free(mr);
    apbrt_free(m0);
    apbrt_free(m1);
    free(b0), free(b1), free(x), free(l0), free(la), free(lx), free(l1);
    return 0;
}

/* A file with an S8D layer must say version 3: a version-2 header (CRC fixed)
 * is refused by name, not misread. */
APB_TEST(test_int8_stem_needs_version_3)
{
    apb_model *tm = small_model("convnet", APB_WQ_APB, APB_AQ_BINARY, 28, 0);
    CHECK(tm != NULL);
    unsigned char *b;
    size_t n;
    CHECK_OK(apb_random_model_export_opt(tm, 1, &b, &n));
    apb_model_free(tm);
    apbrt_model *m;
    CHECK(apbrt_load_memory(b, n, &m) == 0);
    apbrt_free(m);
    apbrt_wr32(b + 8, 2);
    apbrt_wr32(b + 36, apb_crc32(0, b, 36));
    CHECK(apbrt_load_memory(b, n, &m) != 0);
    CHECK_MSG(strstr(apbrt_errmsg(), "version 3"), "%s", apbrt_errmsg());
    free(b);
    return 0;
}

/* Only a full-precision first conv can be made approximate. */
APB_TEST(test_int8_stem_refuses_compressed_first_conv)
{
    apb_model *tm = small_model("convnet", APB_WQ_APB, APB_AQ_BINARY, 28, 1);
    CHECK(tm != NULL);
    unsigned char *b = NULL;
    size_t n;
    CHECK(apb_random_model_export_opt(tm, 1, &b, &n) != APB_OK);
    CHECK_MSG(strstr(apb_errmsg(), "--int8-stem") && strstr(apb_errmsg(), "first conv"), "%s", apb_errmsg());
    apb_model_free(tm);
    free(b);
    return 0;
}
