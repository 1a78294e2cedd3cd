/* test_ewise.c - the runtime's elementwise passes (kernels/ewise.h) at every ISA
 * level the machine has: bit for bit a plain scalar loop written here, for every
 * (add, affine, activation) combination, lengths around the vector widths, in
 * place, and pooling rows of every geometry the runtime meets against a naive
 * row-major pool (ties and signed zeros included). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "bitpack.h"
#include "ewise.h"
#include "rng.h"
#include "test.h"

static float act_of(int act, float v)
{
    if (act == APB_EW_RELU)
        return v > 0.0f ? v : 0.0f;
    if (act == APB_EW_HARDTANH)
        return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
    return v;
}

static float val(apb_rng *r, long i)
{
    float v = (float)(apb_rng_uniform(r) * 6.0 - 3.0);
    return i % 7 == 0 ? -0.0f : i % 11 == 0 ? 0.0f : v;
}

APB_TEST(test_ewise_post_every_isa)
{
    static const long lens[] = {0, 1, 7, 15, 16, 17, 31, 33, 64, 100, 1023};
    apb_rng r;
    apb_rng_seed(&r, 90);
    enum { NMAX = 1023 };
    float src[NMAX], add[NMAX], got[NMAX], want[NMAX], inpl[NMAX], inpl2[NMAX];
    for (int i = 0; i < NMAX; i++)
        inpl2[i] = val(&r, i + 5) - 0.5f;
    apb_isa prev = apb_isa_active();
    int levels = 0;
    for (int isa = 0; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        levels++;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (int ad = 0; ad < 2; ad++)
                for (int aff = 0; aff < 2; aff++)
                    for (int act = APB_EW_NONE; act <= APB_EW_HARDTANH; act++) {
                        long n = lens[li];
                        float sc = 0.75f + (float)apb_rng_uniform(&r), sh = -0.3f;
                        for (long i = 0; i < n; i++)
                            src[i] = val(&r, i), add[i] = val(&r, i + 3);
                        for (long i = 0; i < n; i++) {
                            float v = src[i];
                            if (ad)
                                v = v + add[i];
                            if (aff)
                                v = sc * v + sh;
                            want[i] = act_of(act, v);
                        }
                        apb_ew_post(n, src, ad ? add : NULL, aff, sc, sh, act, got);
                        memcpy(inpl, src, sizeof(float) * (size_t)n);
                        apb_ew_post(n, inpl, ad ? add : NULL, aff, sc, sh, act, inpl);
                        CHECK_MSG(memcmp(got, want, sizeof(float) * (size_t)n) == 0 &&
                                      memcmp(inpl, want, sizeof(float) * (size_t)n) == 0,
                                  "post at %s: n %ld add %d affine %d act %d", apb_ew_level(), n, ad, aff, act);
                        /* add_act: act(a + b), and act(a) */
                        for (long i = 0; i < n; i++)
                            want[i] = act_of(act, ad ? src[i] + add[i] : src[i]);
                        apb_ew_add_act(n, src, ad ? add : NULL, act, got);
                        CHECK_MSG(memcmp(got, want, sizeof(float) * (size_t)n) == 0,
                                  "add_act at %s: n %ld add %d act %d", apb_ew_level(), n, ad, act);
                        /* post2: post, then + add2 and act2, in one pass (and in place) */
                        for (int act2 = APB_EW_NONE; act2 <= APB_EW_HARDTANH; act2++) {
                            float w2[NMAX];
                            for (long i = 0; i < n; i++) {
                                float v = ad ? src[i] + add[i] : src[i];
                                if (aff)
                                    v = sc * v + sh;
                                w2[i] = act_of(act2, act_of(act, v) + inpl2[i]);
                            }
                            apb_ew_post2(n, src, ad ? add : NULL, aff, sc, sh, act, inpl2, act2, got);
                            CHECK_MSG(memcmp(got, w2, sizeof(float) * (size_t)n) == 0,
                                      "post2 at %s: n %ld add %d affine %d act %d act2 %d", apb_ew_level(),
                                      n, ad, aff, act, act2);
                        }
                    }
    }
    apb_isa_force(prev);
    CHECK(levels >= 1);
    return 0;
}

/* The binary activation's byte phase planes at every level against the
 * definition, pixel by pixel: strides 1-3, paddings 0-2, maps narrower and
 * wider than a vector, zeros of both signs (+1) and NaN (-1). */
APB_TEST(test_ewise_sign_planes_every_isa)
{
    static const int dims[][2] = {{1, 1}, {3, 5}, {7, 7}, {8, 17}, {14, 14}, {9, 70}};
    enum { XMAX = 9 * 70, OMAX = 9 * 76 * 76 };
    static float x[XMAX];
    static int8_t got[OMAX + 64];
    apb_rng r;
    apb_rng_seed(&r, 93);
    for (int i = 0; i < XMAX; i++)
        x[i] = i % 13 == 5 ? NAN : val(&r, i);
    apb_isa prev = apb_isa_active();
    int levels = 0, checked = 0;
    for (int isa = 0; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        levels++;
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (int S = 1; S <= 3; S++)
                for (int P = 0; P <= 2; P++) {
                    int H = dims[di][0], W = dims[di][1];
                    int Hq = (H + 2 * P + S - 1) / S, Wq = (W + 2 * P + S - 1) / S;
                    long plane = (long)Hq * Wq;
                    memset(got, 77, sizeof got);
                    apb_ew_sign_planes(x, H, W, S, P, Hq, Wq, got);
                    for (int a = 0; a < S; a++)
                        for (int b = 0; b < S; b++)
                            for (int i = 0; i < Hq; i++)
                                for (int j = 0; j < Wq; j++) {
                                    int row = i * S + a - P, col = j * S + b - P;
                                    int want = row < 0 || row >= H || col < 0 || col >= W ? 0
                                               : x[row * W + col] >= 0.0f ? 1 : -1;
                                    long at = (a * S + b) * plane + (long)i * Wq + j;
                                    CHECK_MSG(got[at] == want,
                                              "sign planes at %s: %dx%d S %d P %d phase (%d,%d) (%d,%d): %d, want %d",
                                              apb_ew_level(), H, W, S, P, a, b, i, j, got[at], want);
                                    checked++;
                                }
                    CHECK_MSG(got[S * S * plane] == 77, "sign planes at %s wrote past its planes",
                              apb_ew_level());
                }
    }
    apb_isa_force(prev);
    CHECK(levels >= 1 && checked > 1000);
    return 0;
}

/* The bit GEMM epilogue pieces at every level against scalar loops. */
APB_TEST(test_ewise_gemm_epilogue_every_isa)
{
    enum { N = 203 };
    int32_t a[N], b[N], ct[N], want[N];
    float y[N], yw[N];
    apb_rng r;
    apb_rng_seed(&r, 95);
    apb_isa prev = apb_isa_active();
    for (int isa = 0; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        for (long n = 0; n <= N; n += 29) {
            int32_t base = (int32_t)(apb_rng_next(&r) % 5000);
            for (long i = 0; i < n; i++)
                a[i] = (int32_t)(apb_rng_next(&r) % 4000), ct[i] = (int32_t)(apb_rng_next(&r) % 200) - 100;
            for (int wc = 0; wc < 2; wc++) {
                memcpy(b, a, sizeof(int32_t) * (size_t)n);
                for (long i = 0; i < n; i++)
                    want[i] = base - 2 * a[i] + (wc ? ct[i] : 0);
                apb_ew_dot_int(n, b, base, wc ? ct : NULL);
                CHECK_MSG(memcmp(b, want, sizeof(int32_t) * (size_t)n) == 0, "dot_int at %s n %ld", apb_ew_level(), n);
                float sc = 0.01f + (float)apb_rng_uniform(&r), bi = wc ? -0.37f : 0.0f;
                for (long i = 0; i < n; i++)
                    yw[i] = sc * (float)want[i] + bi;
                apb_ew_int_float(n, want, sc, bi, y);
                CHECK_MSG(memcmp(y, yw, sizeof(float) * (size_t)n) == 0, "int_float at %s n %ld", apb_ew_level(), n);
                /* dot_float: both steps and a column correction cc in one pass */
                for (int wcc = 0; wcc < 2; wcc++) {
                    int32_t cc[N];
                    for (long i = 0; i < n; i++) {
                        cc[i] = wcc && i % 3 == 0 ? (int32_t)(apb_rng_next(&r) % 50) - 25 : 0;
                        yw[i] = sc * (float)(want[i] - cc[i]) + bi;
                    }
                    apb_ew_dot_float(n, a, base, wc ? ct : NULL, wcc ? cc : NULL, sc, bi, y);
                    CHECK_MSG(memcmp(y, yw, sizeof(float) * (size_t)n) == 0, "dot_float at %s n %ld ct %d cc %d",
                              apb_ew_level(), n, wc, wcc);
                }
            }
        }
    }
    apb_isa_force(prev);
    return 0;
}

APB_TEST(test_ewise_pool_row_every_isa)
{
    static const int gs[][5] = {
        /* H, W, k, s, p */
        {112, 112, 3, 2, 1}, {9, 11, 3, 2, 1}, {8, 8, 2, 2, 0}, {10, 13, 3, 1, 1},
        {11, 10, 5, 3, 2},   {7, 7, 4, 1, 2},  {56, 56, 2, 2, 0}, {3, 37, 3, 2, 1},
    };
    apb_rng r;
    apb_rng_seed(&r, 91);
    apb_isa prev = apb_isa_active();
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++) {
        int H = gs[gi][0], W = gs[gi][1], k = gs[gi][2], s = gs[gi][3], p = gs[gi][4];
        int OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
        int off = p / s + 2, lp = OW + off + k / s + 2;
        float *x = malloc(sizeof(float) * H * W), *ph = malloc(sizeof(float) * (s * lp + OW));
        float *y = malloc(sizeof(float) * OW), *want = malloc(sizeof(float) * OW);
        for (long i = 0; i < (long)H * W; i++)
            x[i] = val(&r, i);
        for (long i = 0; i < (long)H * W; i += 5)
            x[i] = x[i / 2]; /* ties */
        for (int isa = 0; isa <= (int)apb_isa_detected(); isa++) {
            CHECK_OK(apb_isa_force((apb_isa)isa));
            for (int mx = 0; mx < 2; mx++)
                for (int oh = 0; oh < OH; oh++) {
                    for (int ow = 0; ow < OW; ow++) {
                        float acc = mx ? -INFINITY : 0.0f;
                        for (int i = oh * s - p; i < oh * s - p + k; i++)
                            for (int j = ow * s - p; j < ow * s - p + k; j++) {
                                if (i < 0 || i >= H || j < 0 || j >= W)
                                    continue;
                                float v = x[(long)i * W + j];
                                acc = mx ? (v > acc ? v : acc) : acc + v;
                            }
                        want[ow] = mx ? acc : acc * (1.0f / (float)(k * k));
                    }
                    apb_ew_pool_row(k, s, p, H, W, OW, mx, x, oh, y, ph, lp, off, ph + (long)s * lp);
                    int bad = -1;
                    for (int ow = 0; ow < OW && bad < 0; ow++)
                        if (memcmp(&y[ow], &want[ow], sizeof(float)))
                            bad = ow;
                    CHECK_MSG(bad < 0, "%s at %s: H%d W%d k%d s%d p%d row %d [%d] %g vs %g",
                              mx ? "max" : "avg", apb_ew_level(), H, W, k, s, p, oh, bad,
                              bad < 0 ? 0.0 : y[bad], bad < 0 ? 0.0 : want[bad]);
                }
        }
        free(x), free(ph), free(y), free(want);
    }
    apb_isa_force(prev);
    return 0;
}

/* The stem pool's own kernel (3x3, stride 2, padding 1) and the shortcut's
 * (2x2 average, stride 2) where the level has them:
 * bit for bit apb_ew_pool_row at the portable level, on odd and even sizes,
 * planes narrower than a vector step, ties and signed zeros. */
APB_TEST(test_ewise_maxpool3s2_equals_rows)
{
    static const int hw[][2] = {{112, 112}, {7, 9}, {1, 1}, {2, 33}, {31, 30}, {5, 64}, {9, 65}};
    apb_rng r;
    apb_rng_seed(&r, 94);
    apb_isa prev = apb_isa_active();
    int ran = 0;
    for (size_t gi = 0; gi < sizeof hw / sizeof hw[0]; gi++) {
        int H = hw[gi][0], W = hw[gi][1], OH = (H - 1) / 2 + 1, OW = (W - 1) / 2 + 1;
        int off = 2, lp = OW + off + 1 + 2;
        float *x = malloc(sizeof(float) * H * W), *want = malloc(sizeof(float) * OH * OW);
        float *got = malloc(sizeof(float) * OH * OW), *ph = malloc(sizeof(float) * (2 * lp + OW));
        for (long i = 0; i < (long)H * W; i++)
            x[i] = val(&r, i);
        for (long i = 0; i < (long)H * W; i += 3)
            x[i] = x[i / 2]; /* ties */
        CHECK_OK(apb_isa_force(APB_ISA_REF));
        for (int oh = 0; oh < OH; oh++)
            apb_ew_pool_row(3, 2, 1, H, W, OW, 1, x, oh, want + (long)oh * OW, ph, lp, off, ph + 2 * lp);
        for (int isa = 0; isa <= (int)apb_isa_detected(); isa++) {
            CHECK_OK(apb_isa_force((apb_isa)isa));
            if (!apb_ew_has_pool_kernels())
                continue;
            ran++;
            memset(got, 0, sizeof(float) * OH * OW);
            apb_ew_maxpool3s2(H, W, x, got);
            CHECK_MSG(memcmp(got, want, sizeof(float) * OH * OW) == 0, "%dx%d at %s", H, W, apb_ew_level());
            if (H < 2 || W < 2)
                continue;
            /* the 2x2 stride-2 average pool */
            int AH = H / 2, AW = W / 2, alp = AW + 2 + 1 + 2;
            float *aw = malloc(sizeof(float) * AH * AW), *ag = malloc(sizeof(float) * AH * AW);
            float *aph = malloc(sizeof(float) * (2 * alp + AW));
            apb_isa_force(APB_ISA_REF);
            for (int oh = 0; oh < AH; oh++)
                apb_ew_pool_row(2, 2, 0, H, W, AW, 0, x, oh, aw + (long)oh * AW, aph, alp, 2, aph + 2 * alp);
            apb_isa_force((apb_isa)isa);
            apb_ew_avgpool2s2(H, W, x, ag);
            CHECK_MSG(memcmp(ag, aw, sizeof(float) * AH * AW) == 0, "avg %dx%d at %s", H, W, apb_ew_level());
            free(aw), free(ag), free(aph);
        }
        free(x), free(want), free(got), free(ph);
    }
    apb_isa_force(prev);
    if (!ran) {
        fprintf(stderr, "  no level of this machine has the kernel (AVX-512): nothing to compare\n");
        return APB_TEST_SKIP;
    }
    return 0;
}

/* apb_chan_planes (bitpack.h) from a channel-packed image gives the bytes
 * apb_ew_sign_planes gives from the floats (binary), and the 2-bit codes 2l - 3
 * of the levels the packer took from them (0 at padding), for 64 and 128
 * channels, strides 1 and 2, paddings 0 and 1, maps wider and narrower than a
 * vector step, zeros of both signs; a block of 16 channels writes only its
 * channels' planes, and two calls over parts of the phase rows give the whole. */
APB_TEST(test_chan_planes_equal_float_planes)
{
    if (!apb_chan_planes_ok())
        return 0; /* AVX-512 only: the runtime takes the float planes elsewhere */
    static const int dims[][3] = {{64, 7, 7}, {64, 12, 19}, {128, 14, 14}, {64, 3, 33}};
    apb_rng r;
    apb_rng_seed(&r, 94);
    int checked = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (int S = 1; S <= 2; S++)
            for (int P = 0; P <= 1; P++) {
                int C = dims[di][0], H = dims[di][1], W = dims[di][2];
                apb_conv_geom g = {C, H, W, 3, 3, S, P};
                int Hq = (H + 2 * P + S - 1) / S, Wq = (W + 2 * P + S - 1) / S;
                long cpl = (long)S * S * Hq * Wq;
                float *x = malloc(sizeof(float) * (size_t)C * H * W);
                uint64_t *Z = malloc(sizeof(uint64_t) * apb_chan_words(&g));
                uint64_t *Zm = malloc(sizeof(uint64_t) * apb_chan_words(&g));
                int8_t *want = malloc((size_t)(C * cpl)), *got = malloc((size_t)(C * cpl) + 64);
                CHECK(x && Z && Zm && want && got);
                for (long i = 0; i < (long)C * H * W; i++)
                    x[i] = val(&r, i);
                for (int two = 0; two <= 1; two++) {
                    float s = 0.7f; /* 2-bit step: levels at -s, 0, s */
                    CHECK_OK(apb_bitpack_chan(&g, x, s, two ? 2 : 1, Z, two ? Zm : NULL));
                    for (int c = 0; c < C; c++) {
                        apb_ew_sign_planes(x + (long)c * H * W, H, W, S, P, Hq, Wq, want + c * cpl);
                        for (long q = 0; two && q < cpl; q++) { /* the same positions, the level's code */
                            int a = (int)(q / (Hq * Wq)) / S, b = (int)(q / (Hq * Wq)) % S;
                            int row = (int)(q % (Hq * Wq)) / Wq * S + a - P, col = (int)(q % Wq) * S + b - P;
                            if (want[c * cpl + q] == 0)
                                continue; /* padding */
                            float t = x[((long)c * H + row) * W + col] / s;
                            want[c * cpl + q] = (int8_t)(2 * ((t >= -1.0f) + (t >= 0.0f) + (t >= 1.0f)) - 3);
                        }
                    }
                    memset(got, 77, (size_t)(C * cpl) + 64);
                    for (int c0 = 0; c0 < C; c0 += 16) {
                        apb_chan_planes(&g, Z, two ? Zm : NULL, c0, c0 + 16, 0, 1 << 30, got + c0 * cpl);
                        if (c0 == 16) /* the first two blocks written, the rest untouched */
                            CHECK(got[32 * cpl] == 77);
                    }
                    for (long i = 0; i < C * cpl; i++, checked++)
                        CHECK_MSG(got[i] == want[i], "%s, C %d %dx%d S %d P %d: byte %ld (channel %ld) %d, want %d",
                                  two ? "2-bit" : "binary", C, H, W, S, P, i, i / cpl, got[i], want[i]);
                    CHECK(got[C * cpl] == 77);
                    /* by phase rows, as a team cuts them: [Hq/3, Hq) then [0, Hq/3) */
                    memset(got, 77, (size_t)(C * cpl) + 64);
                    for (int c0 = 0; c0 < C; c0 += 16) {
                        apb_chan_planes(&g, Z, two ? Zm : NULL, c0, c0 + 16, Hq / 3, Hq, got + c0 * cpl);
                        if (Hq / 3 > 0) /* rows before the range untouched (phase 0, first row) */
                            CHECK(got[c0 * cpl] == 77);
                        apb_chan_planes(&g, Z, two ? Zm : NULL, c0, c0 + 16, 0, Hq / 3, got + c0 * cpl);
                    }
                    CHECK_MSG(!memcmp(got, want, (size_t)(C * cpl)), "%s, C %d %dx%d S %d P %d: by rows",
                              two ? "2-bit" : "binary", C, H, W, S, P);
                }
                free(x), free(Z), free(Zm), free(want), free(got);
            }
    CHECK(checked > 100000);
    return 0;
}

/* apb_ew_absmax at every level: the largest |x| of the scalar loop, NaN ignored,
 * 0 for an empty or all-zero input, every length around the vector widths. */
APB_TEST(test_ewise_absmax_every_isa)
{
    enum { NMAX = 300 };
    float x[NMAX];
    apb_rng r;
    apb_rng_seed(&r, 96);
    apb_isa prev = apb_isa_active();
    int cases = 0;
    for (int isa = 0; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        for (long n = 0; n <= NMAX; n += n < 40 ? 1 : 37) {
            for (long i = 0; i < n; i++)
                x[i] = i % 17 == 3 ? NAN : val(&r, i) * (i % 5 == 1 ? 100.0f : 1.0f);
            if (n > 10)
                x[n / 2] = -1e30f; /* the largest, negative */
            float want = 0.0f;
            for (long i = 0; i < n; i++)
                want = fabsf(x[i]) > want ? fabsf(x[i]) : want;
            float got = apb_ew_absmax(n, x);
            CHECK_MSG(got == want, "absmax at %s, n %ld: %g, want %g", apb_ew_level(), n, got, want);
            cases++;
        }
        for (long i = 0; i < 20; i++)
            x[i] = i % 2 ? -0.0f : 0.0f;
        CHECK(apb_ew_absmax(20, x) == 0.0f);
    }
    apb_isa_force(prev);
    CHECK(cases > 40);
    return 0;
}
