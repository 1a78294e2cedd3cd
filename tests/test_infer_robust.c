/* test_infer_robust.c - the .apb loader must turn every damaged file into a clean
 * error that names the file, never a crash (also run under ASan/UBSan).
 *
 * Deterministic mutation fuzzing of a valid model: every truncation length,
 * every single-bit flip of a sample of positions (caught by the CRCs or the
 * zero-padding rule), and field mutations with the CRCs recomputed, so the
 * structural checks behind the CRCs (absurd sizes, offsets, counts, slots,
 * indices) are exercised too. fuzz/run.sh runs the same loader under libFuzzer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt_internal.h"
#include "test.h"
#include "test_apb_crc.h"
#include "test_infer_util.h"

static const char *NAME = "fuzzed-model.apb";

static int make_model(unsigned char **buf, size_t *size)
{
    apb_rng r;
    apb_rng_seed(&r, 77);
    ti_model t;
    ti_convnet(&t, &r, 3, 8, 10);
    apb_status st = apbrt_serialize(&t.d, buf, size);
    ti_free(&t);
    return st != APB_OK;
}

/* Loads; on failure the message must name the file. Returns 1 if loaded. */
static int try_load(const unsigned char *buf, size_t size, int *bad_msg)
{
    apbrt_model *m = NULL;
    int rc = apbrt_load_memory_named(buf, size, NAME, &m);
    if (rc) {
        if (m || !strstr(apbrt_errmsg(), NAME))
            *bad_msg = 1;
        return 0;
    }
    int c, h, w;
    apbrt_input_shape(m, &c, &h, &w);
    long in = (long)c * h * w;
    if (in <= 100000) { /* a mutation that still validates must also run */
        float *x = calloc((size_t)in, sizeof(float));
        float *lg = calloc((size_t)apbrt_num_classes(m), sizeof(float));
        if (x && lg && apbrt_run(m, x, 1, lg) != 0 && !strstr(apbrt_errmsg(), "memory"))
            *bad_msg = 1;
        free(x);
        free(lg);
    }
    apbrt_free(m);
    return 1;
}

APB_TEST(test_infer_robust_header_and_truncation)
{
    unsigned char *buf;
    size_t size;
    CHECK(make_model(&buf, &size) == 0);
    int bad = 0;
    CHECK(try_load(buf, size, &bad) == 1 && !bad);
    unsigned char *c = malloc(size);
    /* every truncation */
    for (size_t n = 0; n < size; n++) {
        memcpy(c, buf, n);
        CHECK_MSG(try_load(c, n, &bad) == 0, "truncated to %zu bytes loaded", n);
        CHECK_MSG(!bad, "truncated to %zu: message '%s'", n, apbrt_errmsg());
    }
    /* truncated at each section boundary with the header's size patched, so the
     * failure comes from the section table, not the size field */
    uint32_t nsec = apbrt_rd32(buf + 24);
    for (uint32_t k = 0; k < nsec; k++) {
        uint64_t off = apbrt_rd64(buf + 64 + k * 32 + 8);
        memcpy(c, buf, size);
        apbrt_wr64(c + 16, off);
        ta_fix_crcs(c, (size_t)off);
        CHECK(try_load(c, (size_t)off, &bad) == 0 && !bad);
    }
    /* wrong magic / version */
    memcpy(c, buf, size);
    c[0] ^= 0x20;
    CHECK(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "magic"));
    for (uint32_t v = 0; v <= APBRT_VERSION + 1; v += APBRT_VERSION + 1) { /* 0 and one too new */
        memcpy(c, buf, size);
        apbrt_wr32(c + 8, v);
        ta_fix_crcs(c, size);
        CHECK(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "version"));
    }
    /* a missing file names the path */
    apbrt_model *m;
    CHECK(apbrt_load("build/test-tmp/does-not-exist.apb", &m) != 0 && m == NULL);
    CHECK(strstr(apbrt_errmsg(), "does-not-exist.apb") != NULL);
    free(c);
    free(buf);
    return 0;
}

APB_TEST(test_infer_robust_bit_flips_caught)
{
    unsigned char *buf;
    size_t size;
    CHECK(make_model(&buf, &size) == 0);
    unsigned char *c = malloc(size);
    memcpy(c, buf, size);
    apb_rng r;
    apb_rng_seed(&r, 1234);
    int bad = 0;
    /* every byte of the header and table, then random positions elsewhere */
    size_t tend = 64 + 32 * (size_t)apbrt_rd32(buf + 24);
    for (int it = 0; it < 3000; it++) {
        size_t pos = it < (int)tend ? (size_t)it : apb_rng_below(&r, (uint32_t)size);
        unsigned char bit = (unsigned char)(1u << apb_rng_below(&r, 8));
        c[pos] ^= bit;
        CHECK_MSG(try_load(c, size, &bad) == 0, "flip at byte %zu bit %u was not detected", pos, bit);
        CHECK_MSG(!bad, "flip at %zu: message '%s'", pos, apbrt_errmsg());
        c[pos] ^= bit;
    }
    free(c);
    free(buf);
    return 0;
}

/* Structural mutations behind valid CRCs: absurd sizes, counts, offsets,
 * slots, kinds, CSR indices. Must never crash; failures must name the file. */
APB_TEST(test_infer_robust_mutations_behind_crc)
{
    unsigned char *buf;
    size_t size;
    CHECK(make_model(&buf, &size) == 0);
    unsigned char *c = malloc(size);
    apb_rng r;
    apb_rng_seed(&r, 99);
    static const uint32_t absurd[] = {0, 1, 2, 3, 4, 7, 64, 65535, 65536, 0x7fffffff,
                                      0x80000000u, 0xffffffffu, 0xfffffffeu, 1u << 20, 1u << 28};
    int bad = 0, loaded = 0, n = 0;
    uint32_t nsec = apbrt_rd32(buf + 24);
    for (int it = 0; it < 4000; it++) {
        memcpy(c, buf, size);
        int nm = 1 + (int)apb_rng_below(&r, 3);
        for (int j = 0; j < nm; j++) {
            size_t pos;
            uint32_t sel = apb_rng_below(&r, 4);
            if (sel == 0) /* header field */
                pos = 4 * apb_rng_below(&r, 10);
            else if (sel == 1) /* section table word */
                pos = 64 + 4 * apb_rng_below(&r, nsec * 8);
            else /* anywhere, word aligned (records, META, CSR arrays) */
                pos = 4 * apb_rng_below(&r, (uint32_t)(size / 4));
            if (pos + 4 > size)
                continue;
            uint32_t v = apb_rng_below(&r, 2) ? absurd[apb_rng_below(&r, sizeof absurd / sizeof absurd[0])]
                                               : apbrt_rd32(c + pos) + (apb_rng_below(&r, 2) ? 1 : -1);
            apbrt_wr32(c + pos, v);
        }
        ta_fix_crcs(c, size);
        loaded += try_load(c, size, &bad);
        n++;
        CHECK_MSG(!bad, "mutation %d: message '%s'", it, apbrt_errmsg());
    }
    /* Most mutations must be rejected, and the loader must still accept some
     * (a mutated weight value is a valid model): both sides are exercised. */
    CHECK_MSG(loaded > 0 && loaded < n / 2, "%d of %d mutated files loaded", loaded, n);
    free(c);
    free(buf);
    return 0;
}

/* The graph section's offset and size, from the section table. */
static int graph_section(const unsigned char *b, uint64_t *off, uint64_t *sz)
{
    uint32_t nsec = apbrt_rd32(b + 24);
    for (uint32_t k = 0; k < nsec; k++) {
        const unsigned char *e = b + 64 + k * 32;
        if (apbrt_rd32(e) == APBRT_SEC_GRAPH) {
            *off = apbrt_rd64(e + 8);
            *sz = apbrt_rd64(e + 16);
            return 1;
        }
    }
    return 0;
}

/* Version 1 files (no accounting words 21-23) still load and run; in them the
 * words must be zero, and in version 2 they must agree with the storage kind. */
APB_TEST(test_infer_robust_version1_and_accounting_words)
{
    unsigned char *buf;
    size_t size;
    CHECK(make_model(&buf, &size) == 0);
    CHECK(apbrt_rd32(buf + 8) == 2); /* version 3 only for files with an S8D layer */
    uint64_t goff, gsz;
    CHECK(graph_section(buf, &goff, &gsz) && gsz % APBRT_REC_SIZE == 0);
    unsigned char *c = malloc(size);
    CHECK(c != NULL);
    memcpy(c, buf, size);
    int apb_layers = 0;
    for (uint64_t r = goff; r < goff + gsz; r += APBRT_REC_SIZE) {
        apb_layers += apbrt_rd32(c + r + 84) == APBRT_C_APB;
        for (int k = 21; k < 24; k++)
            apbrt_wr32(c + r + 4 * k, 0);
    }
    CHECK_MSG(apb_layers > 0, "the test model has no APB layer marked in word 21");
    apbrt_wr32(c + 8, 1);
    ta_fix_crcs(c, size);
    int bad = 0;
    CHECK_MSG(try_load(c, size, &bad) == 1 && !bad, "version 1 file refused: %s", apbrt_errmsg());
    /* version 1 with an accounting word set: refused */
    apbrt_wr32(c + goff + 84, APBRT_C_APB);
    ta_fix_crcs(c, size);
    CHECK(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "reserved"));
    /* version 2: pruned accounting on APB storage is inconsistent */
    memcpy(c, buf, size);
    for (uint64_t r = goff; r < goff + gsz; r += APBRT_REC_SIZE)
        if (apbrt_rd32(c + r + 84) == APBRT_C_APB) {
            apbrt_wr32(c + r + 84, APBRT_C_PRUNED);
            break;
        }
    ta_fix_crcs(c, size);
    CHECK(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "pruning"));
    free(c);
    free(buf);
    return 0;
}

/* 8-bit input quantizers (word 11 = 3 U8 / 4 S8, step in word 12): load and run
 * in version 2; a step that is 0, negative or whose reciprocal overflows, an
 * unknown kind, or a version-1 file naming them are refused with the reason. */
APB_TEST(test_infer_robust_int8_kinds)
{
    unsigned char *buf;
    size_t size;
    CHECK(make_model(&buf, &size) == 0);
    uint64_t goff, gsz;
    CHECK(graph_section(buf, &goff, &gsz));
    uint64_t rec = 0;
    for (uint64_t r = goff; r < goff + gsz && !rec; r += APBRT_REC_SIZE)
        if (apbrt_rd32(buf + r + 40) == APBRT_W_APB)
            rec = r;
    CHECK_MSG(rec, "the test model has no APB layer");
    unsigned char *c = malloc(size);
    CHECK(c != NULL);
    int bad = 0;
    for (int kind = APBRT_A_U8; kind <= APBRT_A_S8; kind++) {
        memcpy(c, buf, size);
        apbrt_wr32(c + rec + 44, (uint32_t)kind);
        apbrt_wrf(c + rec + 48, 0.05f);
        ta_fix_crcs(c, size);
        CHECK_MSG(try_load(c, size, &bad) == 1 && !bad, "kind %d refused: %s", kind, apbrt_errmsg());
        static const float bad_steps[] = {0.0f, -0.05f, 1e-39f};
        for (int k = 0; k < 3; k++) {
            apbrt_wrf(c + rec + 48, bad_steps[k]);
            ta_fix_crcs(c, size);
            CHECK_MSG(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "step"),
                      "step %g: %s", bad_steps[k], apbrt_errmsg());
        }
    }
    memcpy(c, buf, size);
    apbrt_wr32(c + rec + 44, APBRT_A_S8D + 1);
    ta_fix_crcs(c, size);
    CHECK(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "activation kind"));
    /* S8D (the approximate 8-bit first conv): version 3 only, FP32 weights only */
    memcpy(c, buf, size);
    apbrt_wr32(c + rec + 44, APBRT_A_S8D);
    ta_fix_crcs(c, size);
    CHECK_MSG(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "version 3"), "%s",
              apbrt_errmsg());
    apbrt_wr32(c + 8, 3);
    ta_fix_crcs(c, size);
    CHECK_MSG(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "FP32 weights"), "%s",
              apbrt_errmsg());
    /* ... and a conv only: not the FP32 linear layer */
    uint64_t lin = 0;
    for (uint64_t r = goff; r < goff + gsz; r += APBRT_REC_SIZE)
        if (apbrt_rd32(buf + r) == APBRT_LINEAR && apbrt_rd32(buf + r + 40) == APBRT_W_FP32)
            lin = r;
    CHECK_MSG(lin, "the test model has no FP32 linear layer");
    memcpy(c, buf, size);
    apbrt_wr32(c + lin + 44, APBRT_A_S8D);
    apbrt_wr32(c + 8, 3);
    ta_fix_crcs(c, size);
    CHECK_MSG(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "needs a conv"), "%s",
              apbrt_errmsg());
    memcpy(c, buf, size);
    for (uint64_t r = goff; r < goff + gsz; r += APBRT_REC_SIZE)
        for (int k = 21; k < 24; k++)
            apbrt_wr32(c + r + 4 * k, 0);
    apbrt_wr32(c + rec + 44, APBRT_A_U8);
    apbrt_wrf(c + rec + 48, 0.05f);
    apbrt_wr32(c + 8, 1);
    ta_fix_crcs(c, size);
    CHECK(try_load(c, size, &bad) == 0 && !bad && strstr(apbrt_errmsg(), "version 2"));
    free(c);
    free(buf);
    return 0;
}
