/* test_infer.c - the inference runtime against a naive float reference.
 *
 * Random models built with the description API (apbrt_model.h) are serialized,
 * loaded and run; logits must match the test's own per-sample reference
 * (test_infer_util.h) within 1e-4 of the logit scale, binary parts bit-exactly,
 * for every weight x activation kind, both execution paths, 1 and 2 threads,
 * batch sizes that reuse the workspace, and a file round trip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt_internal.h"
#include "test.h"
#include "test_infer_util.h"
#include "threads.h"

/* Serializes + loads from memory; ref selects the float reference path. */
static int load_desc(const apbrt_model_desc *d, int ref, apbrt_model **m)
{
    unsigned char *buf;
    size_t size;
    if (apbrt_serialize(d, &buf, &size) != APB_OK) {
        fprintf(stderr, "  serialize: %s\n", apb_errmsg());
        return 1;
    }
    if (ref)
        setenv("APBRT_REFERENCE", "1", 1);
    int rc = apbrt_load_memory(buf, size, m);
    unsetenv("APBRT_REFERENCE");
    free(buf);
    if (rc) {
        fprintf(stderr, "  load: %s\n", apbrt_errmsg());
        return 1;
    }
    return 0;
}

/* Runs n samples through both paths and the naive reference. */
static int check_model(const apbrt_model_desc *d, apb_rng *r, int n, double tol, const char *what)
{
    long in = (long)d->in_c * d->in_h * d->in_w, K = d->num_classes;
    float *x = malloc(n * in * sizeof(float)), *want = malloc(n * K * sizeof(float));
    float *got = malloc(n * K * sizeof(float));
    ti_input(r, x, n * in);
    ti_reference_batch(d, x, n, want, K);
    int fail = 0;
    for (int ref = 0; ref < 2 && !fail; ref++) {
        apbrt_model *m;
        if (load_desc(d, ref, &m)) {
            fail = 1;
            break;
        }
        if (apbrt_uses_reference(m) != ref) {
            fprintf(stderr, "  %s: APBRT_REFERENCE=%d not honoured\n", what, ref);
            fail = 1;
        }
        for (int i = 0; i < apbrt_num_layers(m) && !fail; i++) {
            apbrt_layer_info li;
            apbrt_layer_info_get(m, i, &li);
            const apbrt_layer_desc *L = &d->layers[i];
            int bitk = (L->kind == APBRT_CONV || L->kind == APBRT_LINEAR) &&
                       L->wkind != APBRT_W_FP32 && L->akind != APBRT_A_FP;
            if (bitk && !li.fused && (ref ? strcmp(li.kernel, "sgemm") : !strcmp(li.kernel, "sgemm"))) {
                fprintf(stderr, "  %s: layer %d runs on '%s' in the %s path\n", what, i, li.kernel,
                        ref ? "reference" : "fast");
                fail = 1;
            }
        }
        if (!fail && apbrt_run(m, x, n, got)) {
            fprintf(stderr, "  %s: run: %s\n", what, apbrt_errmsg());
            fail = 1;
        }
        double e = ti_relerr(got, want, n * K);
        if (!fail && !(e <= tol)) {
            fprintf(stderr, "  %s (%s path): max relative error %.3g > %.3g\n", what,
                    ref ? "reference" : "fast", e, tol);
            fail = 1;
        }
        apbrt_free(m);
    }
    free(x);
    free(want);
    free(got);
    return fail;
}

APB_TEST(test_infer_convnet_matches_reference)
{
    apb_rng r;
    apb_rng_seed(&r, 11);
    ti_model t;
    ti_convnet(&t, &r, 3, 12, 10);
    int f = check_model(&t.d, &r, 3, 1e-4, "convnet");
    ti_free(&t);
    CHECK(f == 0);
    return 0;
}

/* One conv of each weight kind x activation kind (awkward K = 13*9 = 117, pad 1,
 * stride 2), then flatten + avgpool-free linear head. */
APB_TEST(test_infer_every_weight_and_act_kind)
{
    apb_rng r;
    apb_rng_seed(&r, 5);
    static const char *wk[] = {"fp32", "apb", "q2"}, *ak[] = {"fp", "bin", "q2"};
    for (int w = 0; w < 3; w++)
        for (int a = 0; a < 3; a++)
            for (int variant = 0; variant < 2; variant++) {
                ti_model t;
                ti_init(&t, 13, 7, 9, 6, 5);
                /* variant 0: conv stride 2 pad 1; variant 1: the quantized layer is linear */
                if (variant == 0) {
                    ti_conv(&t, &r, APBRT_CONV, 0, 1, 13, 9, 3, 2, 1, w, a, 1, 0.08f);
                    ti_add(&t, APBRT_HARDTANH, 1, 2);
                    apbrt_layer_desc *p = ti_add(&t, APBRT_AVGPOOL, 2, 3);
                    p->k = 3, p->pstride = 1, p->ppad = 1;
                    ti_add(&t, APBRT_FLATTEN, 3, 4);
                    ti_conv(&t, &r, APBRT_LINEAR, 4, 1, 9 * 4 * 5, 6, 1, 1, 0, APBRT_W_FP32,
                            APBRT_A_FP, 1, 0);
                } else {
                    ti_add(&t, APBRT_FLATTEN, 0, 1);
                    ti_conv(&t, &r, APBRT_LINEAR, 1, 2, 13 * 7 * 9, 70, 1, 1, 0, w, a, 0, 0.08f);
                    ti_add(&t, APBRT_RELU, 2, 3);
                    ti_conv(&t, &r, APBRT_LINEAR, 3, 1, 70, 6, 1, 1, 0, APBRT_W_FP32, APBRT_A_FP, 1, 0);
                }
                t.d.output_slot = 1;
                char what[64];
                snprintf(what, sizeof what, "%s weights x %s act (%s)", wk[w], ak[a],
                         variant ? "linear" : "conv");
                int f = check_model(&t.d, &r, 2, 1e-4, what);
                ti_free(&t);
                CHECK_MSG(f == 0, "%s", what);
            }
    return 0;
}

/* Binary weights (alpha 1, no outliers) x binary activations: every output is an
 * integer, computed exactly by both paths, zero padding included. */
APB_TEST(test_infer_binary_bit_exact)
{
    apb_rng r;
    apb_rng_seed(&r, 9);
    ti_model t;
    ti_init(&t, 70, 5, 6, 2 * 5 * 6, 2);
    apbrt_layer_desc *L = ti_conv(&t, &r, APBRT_CONV, 0, 1, 70, 2, 3, 1, 1, APBRT_W_APB,
                                  APBRT_A_BIN, 0, 0.0f);
    float *al = (float *)L->alpha;
    float *w = (float *)L->weight;
    for (int m = 0; m < 2; m++)
        al[m] = 1.0f;
    for (long i = 0; i < 2L * 70 * 9; i++)
        w[i] = w[i] < 0 ? -1.0f : 1.0f;
    t.d.output_slot = 1;
    long in = 70 * 5 * 6;
    float x[2 * 70 * 5 * 6], want[2 * 60], got[2 * 60];
    ti_input(&r, x, 2 * in);
    x[0] = 0.0f; /* sgn(0) = +1 */
    ti_reference_batch(&t.d, x, 2, want, 60);
    for (int ref = 0; ref < 2; ref++) {
        apbrt_model *m;
        CHECK(load_desc(&t.d, ref, &m) == 0);
        CHECK_OK(apbrt_run(m, x, 2, got));
        apbrt_free(m);
        for (int i = 0; i < 120; i++)
            CHECK_MSG(got[i] == want[i] && got[i] == rintf(got[i]), "path %d: [%d] %g vs %g", ref, i,
                      got[i], want[i]);
    }
    ti_free(&t);
    return 0;
}

APB_TEST(test_infer_threads_and_batches)
{
    apb_rng r;
    apb_rng_seed(&r, 21);
    ti_model t;
    ti_convnet(&t, &r, 3, 16, 10);
    apbrt_model *m;
    CHECK(load_desc(&t.d, 0, &m) == 0);
    long in = 3 * 16 * 16;
    float x[5 * 3 * 16 * 16], a[50], b[50], c[50];
    ti_input(&r, x, 5 * in);
    int saved = apb_threads_get();
    apbrt_set_threads(1);
    CHECK_OK(apbrt_run(m, x, 5, a));
    apbrt_set_threads(2);
    CHECK_OK(apbrt_run(m, x, 5, b));
    apbrt_set_threads(saved);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* Smaller batches reuse the workspace and give the same rows. */
    CHECK_OK(apbrt_run(m, x + 2 * in, 2, c));
    CHECK(memcmp(c, a + 20, 20 * sizeof(float)) == 0);
    CHECK_OK(apbrt_run(m, x, 1, c));
    CHECK(memcmp(c, a, 10 * sizeof(float)) == 0);
    /* Profiling accumulates time in the layers that ran. */
    apbrt_set_profile(m, 1);
    CHECK_OK(apbrt_run(m, x, 5, c));
    double total = 0;
    for (int i = 0; i < apbrt_num_layers(m); i++) {
        apbrt_layer_info li;
        CHECK(apbrt_layer_info_get(m, i, &li) == 0);
        total += li.seconds;
        CHECK(li.seconds >= 0);
    }
    CHECK(total > 0);
    apbrt_free(m);
    ti_free(&t);
    return 0;
}

APB_TEST(test_infer_file_round_trip_and_getters)
{
    apb_rng r;
    apb_rng_seed(&r, 3);
    ti_model t;
    ti_convnet(&t, &r, 3, 8, 10);
    t.d.resize_short = 36;
    t.d.mean[1] = 0.45f;
    char path[600];
    snprintf(path, sizeof path, "%s/m.apb", apb_test_tmpdir());
    CHECK_OK(apbrt_save(&t.d, path));
    apbrt_model *m;
    CHECK_MSG(apbrt_load(path, &m) == 0, "%s", apbrt_errmsg());
    int c, h, w;
    apbrt_input_shape(m, &c, &h, &w);
    CHECK(c == 3 && h == 8 && w == 8);
    CHECK(apbrt_num_classes(m) == 10);
    CHECK(strcmp(apbrt_class_name(m, 3), "cat") == 0);
    CHECK(apbrt_class_name(m, 10) == NULL);
    CHECK(strcmp(apbrt_model_name(m), "testnet") == 0);
    CHECK(apbrt_resize_short(m) == 36);
    float mean[3], sd[3];
    apbrt_normalization(m, mean, sd);
    CHECK(mean[1] == 0.45f && sd[2] == 0.25f);
    FILE *f = fopen(path, "rb");
    CHECK(f);
    fseek(f, 0, SEEK_END);
    long fsz = ftell(f);
    fclose(f);
    CHECK((long)apbrt_file_size(m) == fsz);
    /* The per-layer byte counts plus header, table and metadata cover the file. */
    size_t sum = 0;
    for (int i = 0; i < apbrt_num_layers(m); i++) {
        apbrt_layer_info li;
        CHECK(apbrt_layer_info_get(m, i, &li) == 0);
        sum += li.bytes;
    }
    CHECK(sum < (size_t)fsz && sum > (size_t)fsz / 2);
    float x[2 * 3 * 64], a[20], want[20];
    ti_input(&r, x, 2 * 3 * 64);
    CHECK_OK(apbrt_run(m, x, 2, a));
    ti_reference_batch(&t.d, x, 2, want, 10);
    CHECK(ti_relerr(a, want, 20) <= 1e-4);
    apbrt_free(m);
    ti_free(&t);
    return 0;
}

/* Paper-formula bits and the APB storage: n + s*(32 + idx) + 64. */
APB_TEST(test_infer_layer_info_bits)
{
    apb_rng r;
    apb_rng_seed(&r, 4);
    ti_model t;
    ti_init(&t, 4, 5, 5, 8 * 25, 2);
    apbrt_layer_desc *L = ti_conv(&t, &r, APBRT_CONV, 0, 1, 4, 8, 3, 1, 1, APBRT_W_APB,
                                  APBRT_A_FP, 1, 0.0f);
    float *w = (float *)L->weight;
    w[5] = 0.9f, w[100] = -0.0f, w[200] = 1e-3f; /* 3 outliers (-0.0 -> sgn +1 -> residual) */
    t.d.output_slot = 1;
    apbrt_model *m;
    CHECK(load_desc(&t.d, 0, &m) == 0);
    apbrt_layer_info li;
    CHECK(apbrt_layer_info_get(m, 0, &li) == 0);
    CHECK(strcmp(li.kind, "conv") == 0 && strcmp(li.weights, "apb") == 0);
    CHECK(li.params == 8 * 36 && li.fp_params == 3 && li.bias == 8 && li.compressed);
    /* n = 288, idx = floor(log2 288) + 1 = 9 */
    CHECK_CLOSE(li.weight_bits, 288 + 3 * (32 + 9) + 64, 0, 0);
    CHECK_CLOSE(li.bits, li.weight_bits + 8 * 32, 0, 0);
    CHECK(li.out_c == 8 && li.out_h == 5 && li.out_w == 5);
    CHECK(apbrt_layer_info_get(m, 1, &li) != 0);
    apbrt_free(m);
    ti_free(&t);
    return 0;
}

/* The writer rejects descriptions the format cannot represent. */
APB_TEST(test_infer_serialize_rejects_bad_descriptions)
{
    apb_rng r;
    apb_rng_seed(&r, 8);
    ti_model t;
    ti_init(&t, 3, 6, 6, 10, 4);
    apbrt_layer_desc *L = ti_conv(&t, &r, APBRT_CONV, 0, 1, 3, 4, 3, 1, 1, APBRT_W_Q2, APBRT_A_FP, 0, 0);
    ti_add(&t, APBRT_GAP, 1, 2);
    ti_conv(&t, &r, APBRT_LINEAR, 2, 3, 4, 10, 1, 1, 0, APBRT_W_FP32, APBRT_A_FP, 1, 0);
    t.d.output_slot = 3;
    unsigned char *buf;
    size_t size;
    CHECK_OK(apbrt_serialize(&t.d, &buf, &size));
    free(buf);
    ((float *)L->weight)[7] = 0.3f * L->wstep; /* not a 2-bit level */
    CHECK(apbrt_serialize(&t.d, &buf, &size) != APB_OK);
    CHECK(strstr(apb_errmsg(), "layer 0") != NULL);
    ((float *)L->weight)[7] = 0.5f * L->wstep;
    t.L[1].in = 2; /* reads a slot nobody wrote */
    CHECK(apbrt_serialize(&t.d, &buf, &size) != APB_OK);
    CHECK(strstr(apb_errmsg(), "slot 2") != NULL);
    t.L[1].in = 1;
    t.L[1].kind = APBRT_FLATTEN; /* the linear layer now gets 4*6*6 features, not 4 */
    CHECK(apbrt_serialize(&t.d, &buf, &size) != APB_OK);
    CHECK(strstr(apb_errmsg(), "cin=4") != NULL);
    t.L[1].kind = APBRT_GAP;
    t.d.num_classes = 9; /* output does not hold the logits */
    CHECK(apbrt_serialize(&t.d, &buf, &size) != APB_OK);
    ti_free(&t);
    return 0;
}
