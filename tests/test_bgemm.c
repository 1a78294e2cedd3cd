/* test_bgemm.c - binary GEMMs and bit packing: identities against plain integer
 * dot products, every ISA level bit-exact against the reference on edge shapes,
 * misaligned operands, fused im2col packing + padding correction against a float
 * convolution with zero padding, thread-count independence. */
#include <stdlib.h>
#include <string.h>

#include "bgemm.h"
#include "bitpack.h"
#include "cpu.h"
#include "im2col.h"
#include "rng.h"
#include "test.h"
#include "threads.h"

/* Level values in kind units: binary +-1, 2-bit {-3,-1,1,3}; as floats for the
 * packers (step 1: x = unit/2 packs to that level). */
static void rand_levels(apb_rng *r, int n, int twobit, int *lv, float *x, int mode)
{
    for (int i = 0; i < n; i++) {
        int v;
        if (mode == 1)
            v = twobit ? 3 : 1;
        else if (mode == 2)
            v = twobit ? -3 : -1;
        else if (twobit)
            v = 2 * (int)apb_rng_below(r, 4) - 3;
        else
            v = apb_rng_below(r, 2) ? 1 : -1;
        lv[i] = v;
        x[i] = twobit ? 0.5f * (float)v : (float)v;
    }
}

typedef struct {
    int rows, K, ld;
    uint64_t *base, *sgn, *mag;
    int *lv;
    float *x;
} opnd;

/* Packs `rows` random rows; planes start one word past a 64-byte boundary and the
 * words past ceil(K/64) hold garbage (the kernels must never read them). */
static int opnd_make(opnd *o, apb_rng *r, int rows, int K, int twobit, int mode)
{
    o->rows = rows;
    o->K = K;
    o->ld = apb_bits_words(K) + 3;
    size_t nw = (size_t)rows * o->ld + 1;
    o->base = malloc(sizeof(uint64_t) * (2 * nw + 2));
    o->lv = malloc(sizeof(int) * ((size_t)rows * K + 1));
    o->x = malloc(sizeof(float) * ((size_t)rows * K + 1));
    if (!o->base || !o->lv || !o->x)
        return 1;
    o->sgn = o->base + 1;
    o->mag = o->sgn + nw;
    rand_levels(r, rows * K, twobit, o->lv, o->x, mode);
    if (twobit) {
        if (apb_bitpack_2bit(rows, K, o->x, K, 1.0f, o->sgn, o->mag, o->ld) != APB_OK)
            return 1;
    } else if (apb_bitpack_sign(rows, K, o->x, K, o->sgn, o->ld) != APB_OK)
        return 1;
    int KW = apb_bits_words(K);
    for (int i = 0; i < rows; i++)
        for (int j = KW; j < o->ld; j++) {
            o->sgn[(size_t)i * o->ld + j] = apb_rng_next(r);
            if (twobit)
                o->mag[(size_t)i * o->ld + j] = apb_rng_next(r);
        }
    if (!twobit)
        o->mag = NULL;
    return 0;
}

static void opnd_free(opnd *o)
{
    free(o->base);
    free(o->lv);
    free(o->x);
}

static apb_bitmat view(const opnd *o) { return (apb_bitmat){o->sgn, o->mag, o->ld}; }

APB_TEST(test_bgemm_identities_vs_integer_dot)
{
    apb_rng r;
    apb_rng_seed(&r, 11);
    int shapes[][3] = {{3, 5, 1}, {4, 3, 63}, {5, 4, 64}, {2, 6, 65}, {3, 3, 127}, {2, 2, 577}};
    for (int kind = 0; kind < APB_BGEMM_KINDS; kind++)
        for (int s = 0; s < 6; s++)
            for (int mode = 0; mode < 3; mode++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                opnd a, b;
                CHECK(!opnd_make(&a, &r, M, K, kind == APB_BGEMM_2X2, mode));
                CHECK(!opnd_make(&b, &r, N, K, kind != APB_BGEMM_1X1, mode == 2 ? 1 : mode));
                int32_t C[64];
                apb_bitmat A = view(&a), B = view(&b);
                CHECK_OK(apb_bgemm_ref((apb_bgemm_kind)kind, M, N, K, &A, &B, NULL, C, N));
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        long d = 0;
                        for (int k = 0; k < K; k++)
                            d += (long)a.lv[m * K + k] * b.lv[n * K + k];
                        CHECK_MSG(C[m * N + n] == d, "kind %s K=%d mode %d (m,n)=(%d,%d): %d vs %ld",
                                  apb_bgemm_kind_name(kind), K, mode, m, n, C[m * N + n], d);
                    }
                opnd_free(&a);
                opnd_free(&b);
            }
    return 0;
}

/* Every ISA level (and the int32 / float outputs) against apb_bgemm_ref. */
APB_TEST(test_bgemm_isa_levels_exact)
{
    apb_rng r;
    apb_rng_seed(&r, 12);
    int shapes[][3] = {{1, 1, 1},     {7, 63, 65},   {63, 7, 127}, {64, 64, 64},
                       {65, 127, 577}, {127, 65, 63}, {7, 511, 511}, {511, 7, 577},
                       {9, 17, 20000}, {300, 100, 64}};
    apb_isa best = apb_isa_detected();
    int amx_saved = apb_bgemm_amx_enable(1);
    /* pass 0: every level (AMX where usable at AVX-512); pass 1: AVX-512 without AMX */
    for (int pass = 0; pass < 2; pass++)
    for (int lvl = pass ? (int)best : APB_ISA_REF; lvl <= (int)best; lvl++) {
        CHECK_OK(apb_isa_force((apb_isa)lvl));
        apb_bgemm_amx_enable(pass == 0);
        for (int kind = 0; kind < APB_BGEMM_KINDS; kind++)
            for (int s = 0; s < 10; s++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                int mode = s == 3 ? 1 : s == 0 ? 2 : 0;
                opnd a, b;
                CHECK(!opnd_make(&a, &r, M, K, kind == APB_BGEMM_2X2, mode));
                CHECK(!opnd_make(&b, &r, N, K, kind != APB_BGEMM_1X1, mode));
                int ldc = N + 1;
                int32_t *want = malloc(sizeof(int32_t) * (size_t)M * ldc);
                int32_t *gotb = malloc(sizeof(int32_t) * ((size_t)M * ldc + 1));
                float *y = malloc(sizeof(float) * ((size_t)M * ldc + 1));
                float *yw = malloc(sizeof(float) * (size_t)M * ldc);
                float *sc = malloc(sizeof(float) * M), *bi = malloc(sizeof(float) * M);
                CHECK(want && gotb && y && yw && sc && bi);
                int32_t *got = gotb + 1; /* misaligned output */
                apb_bitmat A = view(&a), B = view(&b);
                CHECK_OK(apb_bgemm_ref((apb_bgemm_kind)kind, M, N, K, &A, &B, NULL, want, ldc));
                CHECK_OK(apb_bgemm((apb_bgemm_kind)kind, M, N, K, &A, &B, NULL, got, ldc));
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++)
                        CHECK_MSG(got[m * ldc + n] == want[m * ldc + n],
                                  "isa %s kind %s M=%d N=%d K=%d at (%d,%d): %d vs %d",
                                  apb_isa_name((apb_isa)lvl), apb_bgemm_kind_name(kind), M, N, K,
                                  m, n, got[m * ldc + n], want[m * ldc + n]);
                if (mode == 1)
                    CHECK(want[0] == K * (kind == APB_BGEMM_1X1 ? 1 : kind == APB_BGEMM_1X2 ? 3 : 9));
                if (mode == 2)
                    CHECK(want[0] == K * (kind == APB_BGEMM_1X1 ? 1 : kind == APB_BGEMM_1X2 ? 3 : 9));
                for (int m = 0; m < M; m++) {
                    sc[m] = 0.25f + 0.01f * m;
                    bi[m] = (float)m - 3.0f;
                }
                apb_bgemm_epilogue ep = {sc, bi, NULL, 0, 0, 0, NULL, NULL};
                CHECK_OK(apb_bgemm_f32((apb_bgemm_kind)kind, M, N, K, &A, &B, &ep, y + 1, ldc));
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++)
                        yw[m * ldc + n] = sc[m] * (float)want[m * ldc + n] + bi[m];
                for (int m = 0; m < M; m++)
                    CHECK_ARRAY_CLOSE(y + 1 + m * ldc, yw + m * ldc, N, 1e-6, 1e-6);
                free(want), free(gotb), free(y), free(yw), free(sc), free(bi);
                opnd_free(&a);
                opnd_free(&b);
            }
    }
    CHECK_OK(apb_isa_force(best));
    apb_bgemm_amx_enable(amx_saved);
    return 0;
}

/* apb_bgemm_epilogue.unit_done's view: each unit's results must be final when
 * it is called, and each result in exactly one unit. */
typedef struct {
    const float *want, *got;
    int ldy;
    unsigned char *seen;
    long bad;
} unit_seen;

static void unit_check(void *ctx, int m0, int m1, int c0, int c1)
{
    unit_seen *u = ctx;
    long bad = 0;
    for (int m = m0; m < m1; m++)
        for (int c = c0; c < c1; c++) {
            size_t i = (size_t)m * u->ldy + c;
            bad += memcmp(&u->want[i], &u->got[i], sizeof(float)) != 0;
#pragma omp atomic
            u->seen[i]++;
        }
#pragma omp atomic
    u->bad += bad;
}

/* Every kind on 1 and 2 threads (and the other of AMX / VPOPCNTQ where both
 * exist), and on 2 the float epilogue with its columns claimed in bands: the
 * same results. */
APB_TEST(test_bgemm_threads_identical)
{
    apb_rng r;
    apb_rng_seed(&r, 13);
    int M = 300, N = 200, K = 700, saved = apb_threads_get();
    for (int kind = 0; kind < APB_BGEMM_KINDS; kind++) {
        opnd a, b;
        CHECK(!opnd_make(&a, &r, M, K, kind == APB_BGEMM_2X2, 0));
        CHECK(!opnd_make(&b, &r, N, K, kind != APB_BGEMM_1X1, 0));
        int32_t *c1 = malloc(sizeof(int32_t) * M * N), *c2 = malloc(sizeof(int32_t) * M * N);
        CHECK(c1 && c2);
        apb_bitmat A = view(&a), B = view(&b);
        apb_threads_set(1);
        CHECK_OK(apb_bgemm((apb_bgemm_kind)kind, M, N, K, &A, &B, NULL, c1, N));
        apb_threads_set(2);
        CHECK_OK(apb_bgemm((apb_bgemm_kind)kind, M, N, K, &A, &B, NULL, c2, N));
        CHECK(memcmp(c1, c2, sizeof(int32_t) * M * N) == 0);
        int amx = apb_bgemm_amx_enable(!apb_bgemm_amx_active()); /* the other path */
        CHECK_OK(apb_bgemm((apb_bgemm_kind)kind, M, N, K, &A, &B, NULL, c2, N));
        apb_bgemm_amx_enable(amx);
        CHECK(memcmp(c1, c2, sizeof(int32_t) * M * N) == 0);
        /* the float epilogue with the columns claimed as rows of 20 (units of 3
         * rows x 64 of M, apb_bgemm_epilogue): the same floats */
        float *y1 = malloc(sizeof(float) * M * N), *y2 = malloc(sizeof(float) * M * N);
        CHECK(y1 && y2);
        apb_bgemm_epilogue e0 = {NULL, NULL, NULL, 0, 0, 0, NULL, NULL}, eb = {NULL, NULL, NULL, 20, 3, 64, NULL, NULL};
        CHECK_OK(apb_bgemm_f32((apb_bgemm_kind)kind, M, N, K, &A, &B, &e0, y1, N));
        CHECK_OK(apb_bgemm_f32((apb_bgemm_kind)kind, M, N, K, &A, &B, &eb, y2, N));
        CHECK(memcmp(y1, y2, sizeof(float) * M * N) == 0);
        /* with a unit callback, on 2 threads and on 1: every result once, after
         * its tiles (the callback sees them written) */
        for (int th = 2; th >= 1; th--) {
            apb_threads_set(th);
            unit_seen us = {y1, y2, N, calloc((size_t)M * N, 1), 0};
            CHECK(us.seen);
            memset(y2, 0xff, sizeof(float) * M * N);
            eb.unit_done = unit_check, eb.ctx = &us;
            CHECK_OK(apb_bgemm_f32((apb_bgemm_kind)kind, M, N, K, &A, &B, &eb, y2, N));
            long bad = us.bad;
            for (long i = 0; i < (long)M * N; i++)
                bad += us.seen[i] != 1;
            free(us.seen);
            CHECK_MSG(bad == 0, "kind %d, %d threads: %ld results not seen exactly once or not ready", kind, th, bad);
            eb.unit_done = NULL, eb.ctx = NULL;
        }
        apb_threads_set(1);
        free(y1), free(y2);
        free(c1), free(c2);
        opnd_free(&a);
        opnd_free(&b);
    }
    apb_threads_set(saved);
    return 0;
}

APB_TEST(test_bgemm_quant2_levels)
{
    float s = 0.5f;
    CHECK(apb_quant2_level(-0.51f, s) == 0);
    CHECK(apb_quant2_level(-0.5f, s) == 1);
    CHECK(apb_quant2_level(-0.01f, s) == 1);
    CHECK(apb_quant2_level(0.0f, s) == 2);
    CHECK(apb_quant2_level(0.49f, s) == 2);
    CHECK(apb_quant2_level(0.5f, s) == 3);
    CHECK(apb_quant2_level(100.0f, s) == 3);
    CHECK(apb_quant2_level(-100.0f, s) == 0);
    /* tail bits are zero, sign of 0 is +1 */
    float x[70];
    for (int i = 0; i < 70; i++)
        x[i] = i == 3 || i == 69 ? -1.0f : i == 5 ? 0.0f : 1.0f;
    uint64_t p[2];
    CHECK_OK(apb_bitpack_sign(1, 70, x, 70, p, 2));
    CHECK(p[0] == (UINT64_C(1) << 3) && p[1] == (UINT64_C(1) << 5));
    return 0;
}

/* Level value (in units) of a float under the kind's activation encoding. */
static int act_unit(float v, int twobit, float s)
{
    if (!twobit)
        return v < 0.0f ? -1 : 1;
    return 2 * apb_quant2_level(v, s) - 3;
}

/* Weights [M, K] of a conv packed as the kind needs: 2-bit planes (step 0.8) or signs. */
static apb_status pack_weights(int wtwo, int M, int K, const float *wf, uint64_t *ws, uint64_t *wm,
                               int ld)
{
    return wtwo ? apb_bitpack_2bit(M, K, wf, K, 0.8f, ws, wm, ld)
                : apb_bitpack_sign(M, K, wf, K, ws, ld);
}

APB_TEST(test_bgemm_conv_padding_exact)
{
    apb_rng r;
    apb_rng_seed(&r, 14);
    apb_conv_geom geoms[] = {{3, 7, 6, 3, 3, 1, 1}, {5, 9, 8, 3, 3, 2, 1}, {2, 5, 5, 5, 5, 1, 2},
                             {4, 6, 6, 1, 1, 1, 0}, {3, 8, 10, 3, 2, 2, 3}, {70, 4, 4, 3, 3, 1, 1},
                             /* pixel blocks spanning rows / rows wider than 64 / strides 2, 3 */
                             {3, 5, 70, 3, 3, 1, 1}, {2, 9, 130, 3, 3, 2, 1}, {2, 7, 20, 3, 3, 3, 1},
                             {9, 3, 3, 3, 3, 1, 1}};
    apb_isa best = apb_isa_detected();
    for (int gi = 0; gi < 10; gi++) {
        apb_conv_geom g = geoms[gi];
        int M = 11, K = g.C * g.KH * g.KW, OH = apb_conv_geom_oh(&g), OW = apb_conv_geom_ow(&g);
        int N = OH * OW, ld = apb_bits_ld(K);
        float s = 0.7f;
        float *x = malloc(sizeof(float) * g.C * g.H * g.W);
        float *col = malloc(sizeof(float) * (size_t)K * N);
        float *wf = malloc(sizeof(float) * (size_t)M * K);
        uint64_t *ws = calloc((size_t)M * ld, 8), *wm = calloc((size_t)M * ld, 8);
        uint64_t *bs = calloc((size_t)N * ld, 8), *bm = calloc((size_t)N * ld, 8);
        uint64_t *rs = calloc((size_t)N * ld, 8), *rm = calloc((size_t)N * ld, 8);
        float *colt = malloc(sizeof(float) * (size_t)K * N);
        int32_t *C = malloc(sizeof(int32_t) * M * N);
        CHECK(x && col && wf && ws && wm && bs && bm && rs && rm && colt && C);
        for (int i = 0; i < g.C * g.H * g.W; i++)
            x[i] = 2.0f * apb_rng_normal(&r);
        for (int i = 0; i < M * K; i++)
            wf[i] = apb_rng_normal(&r);
        apb_im2col(x, g.C, g.H, g.W, g.KH, g.KW, g.stride, g.pad, col);
        for (int k = 0; k < K; k++)
            for (int n = 0; n < N; n++)
                colt[(size_t)n * K + k] = col[(size_t)k * N + n];
        for (int kind = 0; kind < APB_BGEMM_KINDS; kind++) {
            int wtwo = kind == APB_BGEMM_2X2, atwo = kind != APB_BGEMM_1X1;
            CHECK_OK(pack_weights(wtwo, M, K, wf, ws, wm, ld));
            if (atwo) {
                CHECK_OK(apb_bitpack_conv_2bit(&g, x, s, bs, bm, ld));
                CHECK_OK(apb_bitpack_2bit(N, K, colt, K, s, rs, rm, ld));
                CHECK(memcmp(bm, rm, sizeof(uint64_t) * N * ld) == 0);
            } else {
                CHECK_OK(apb_bitpack_conv_sign(&g, x, bs, ld));
                CHECK_OK(apb_bitpack_sign(N, K, colt, K, rs, ld));
            }
            /* fused packing == im2col then pack (padded taps: 0 packs as bits 0) */
            CHECK_MSG(memcmp(bs, rs, sizeof(uint64_t) * N * ld) == 0, "geom %d kind %d", gi, kind);
            {
                /* caller workspace variant: same bits; a short workspace is refused */
                size_t wsb = apb_bitpack_conv_ws_bytes(&g, atwo ? 2 : 1);
                CHECK(wsb > 0);
                void *wsp = malloc(wsb + 1);
                uint64_t *b2 = calloc((size_t)N * ld, 8), *m2 = calloc((size_t)N * ld, 8);
                CHECK(wsp && b2 && m2);
                if (atwo) {
                    CHECK_OK(apb_bitpack_conv_2bit_ws(&g, x, s, b2, m2, ld, (char *)wsp + 1, wsb));
                    CHECK(memcmp(m2, bm, sizeof(uint64_t) * N * ld) == 0);
                    CHECK(apb_bitpack_conv_2bit_ws(&g, x, s, b2, m2, ld, wsp, wsb - 1) != APB_OK);
                } else {
                    CHECK_OK(apb_bitpack_conv_sign_ws(&g, x, b2, ld, (char *)wsp + 1, wsb));
                    CHECK(apb_bitpack_conv_sign_ws(&g, x, b2, ld, wsp, wsb - 1) != APB_OK);
                }
                CHECK(memcmp(b2, bs, sizeof(uint64_t) * N * ld) == 0);
                free(wsp), free(b2), free(m2);
            }
            apb_bitconv_pad pad;
            CHECK_OK(apb_bitconv_pad_init(&pad, &g, M, ws, wtwo ? wm : NULL, ld));
            CHECK(g.pad > 0 || pad.n_patterns == 1);
            apb_bitmat A = {ws, wtwo ? wm : NULL, ld}, B = {bs, atwo ? bm : NULL, ld};
            /* every level with the default AMX choice, then the top level with
             * AMX off (the pure VPOPCNTQ kernels at AVX-512) */
            for (int lvl = APB_ISA_REF; lvl <= (int)best + 1; lvl++) {
                CHECK_OK(apb_isa_force(lvl <= (int)best ? (apb_isa)lvl : best));
                int amx_prev = apb_bgemm_amx_enable(lvl <= (int)best ? -1 : 0);
                apb_status st = apb_bgemm((apb_bgemm_kind)kind, M, N, K, &A, &B, &pad, C, N);
                apb_bgemm_amx_enable(amx_prev);
                CHECK_OK(st);
                /* float convolution with zero padding of the quantized values */
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double d = 0;
                        for (int k = 0; k < K; k++) {
                            int oh = n / OW, ow = n % OW, c = k / (g.KH * g.KW);
                            int kh = k / g.KW % g.KH, kw = k % g.KW;
                            int ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
                            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W)
                                continue; /* zero padding */
                            float xv = x[(c * g.H + ih) * g.W + iw];
                            int wv = wtwo ? 2 * apb_quant2_level(wf[m * K + k], 0.8f) - 3
                                          : (wf[m * K + k] < 0 ? -1 : 1);
                            d += (double)wv * act_unit(xv, atwo, s);
                        }
                        CHECK_MSG(C[m * N + n] == (int32_t)d,
                                  "geom %d kind %s isa %s%s (m,n)=(%d,%d): %d vs %g", gi,
                                  apb_bgemm_kind_name(kind),
                                  apb_isa_name(lvl <= (int)best ? (apb_isa)lvl : best),
                                  lvl > (int)best ? " (AMX off)" : "", m, n, C[m * N + n], d);
                    }
            }
            apb_bitconv_pad_free(&pad);
        }
        free(x), free(col), free(wf), free(ws), free(wm), free(bs), free(bm), free(rs), free(rm);
        free(colt), free(C);
    }
    CHECK_OK(apb_isa_force(best));
    return 0;
}

/* The AMX path's blockings (A or B expanded whole, several K blocks, ragged M
 * and N, thread units shrunk for 2 threads) and epilogues (padding correction,
 * float output, misaligned C) against the reference, with AMX off, automatic and
 * forced, 1 and 2 threads. */
APB_TEST(test_bgemm_amx_paths_exact)
{
    apb_rng r;
    apb_rng_seed(&r, 15);
    /* C H W KH KW stride pad, M: N > M (A whole) and N <= M (B whole), K from
     * 81 (2 words) to 630 (10 words: 2 K blocks) and 1152 (3 K blocks) */
    struct {
        apb_conv_geom g;
        int M;
    } cs[] = {{{9, 12, 11, 3, 3, 1, 1}, 40},  {{70, 6, 5, 3, 3, 1, 1}, 75},
              {{64, 8, 8, 3, 3, 1, 1}, 100}, {{128, 9, 7, 3, 3, 2, 1}, 33},
              {{5, 20, 20, 3, 3, 1, 0}, 17},
              /* big enough for 2 threads (M*N*words >= 65536) in both layouts */
              {{16, 24, 24, 3, 3, 1, 1}, 70}, {{200, 6, 6, 3, 3, 1, 1}, 130}};
    apb_isa best = apb_isa_detected();
    int saved_thr = apb_threads_get(), amx_saved = apb_bgemm_amx_enable(-1);
    CHECK_OK(apb_isa_force(best));
    for (int ci = 0; ci < 7; ci++) {
        apb_conv_geom g = cs[ci].g;
        int M = cs[ci].M, K = g.C * g.KH * g.KW, N = apb_conv_geom_oh(&g) * apb_conv_geom_ow(&g);
        int ld = apb_bits_ld(K), ldc = N + 3;
        float *x = malloc(sizeof(float) * g.C * g.H * g.W), *wf = malloc(sizeof(float) * M * K);
        uint64_t *ws = calloc((size_t)M * ld, 8), *wm = calloc((size_t)M * ld, 8);
        uint64_t *bs = calloc((size_t)N * ld, 8), *bm = calloc((size_t)N * ld, 8);
        int32_t *want = malloc(sizeof(int32_t) * M * ldc);
        int32_t *gotb = malloc(sizeof(int32_t) * (M * ldc + 1));
        float *yb = malloc(sizeof(float) * (M * ldc + 1)), *sc = malloc(sizeof(float) * M);
        float *bi = malloc(sizeof(float) * M);
        CHECK(x && wf && ws && wm && bs && bm && want && gotb && yb && sc && bi);
        for (int i = 0; i < g.C * g.H * g.W; i++)
            x[i] = 2.0f * apb_rng_normal(&r);
        for (int i = 0; i < M * K; i++)
            wf[i] = apb_rng_normal(&r);
        for (int m = 0; m < M; m++) {
            sc[m] = 0.125f + 0.03f * m;
            bi[m] = 0.5f * m - 7.0f;
        }
        for (int kind = 0; kind < APB_BGEMM_KINDS; kind++) {
            int wtwo = kind == APB_BGEMM_2X2, atwo = kind != APB_BGEMM_1X1;
            CHECK_OK(pack_weights(wtwo, M, K, wf, ws, wm, ld));
            if (atwo)
                CHECK_OK(apb_bitpack_conv_2bit(&g, x, 0.7f, bs, bm, ld));
            else
                CHECK_OK(apb_bitpack_conv_sign(&g, x, bs, ld));
            apb_bitconv_pad pad;
            CHECK_OK(apb_bitconv_pad_init(&pad, &g, M, ws, wtwo ? wm : NULL, ld));
            apb_bitmat A = {ws, wtwo ? wm : NULL, ld}, B = {bs, atwo ? bm : NULL, ld};
            for (int usepad = 0; usepad < 2; usepad++) {
                const apb_bitconv_pad *pp = usepad || g.pad == 0 ? &pad : NULL;
                CHECK_OK(apb_bgemm_ref((apb_bgemm_kind)kind, M, N, K, &A, &B, pp, want, ldc));
                for (int mode = 0; mode < 3; mode++) /* AMX off, automatic, forced */
                    for (int th = 1; th <= 2; th++) {
                        apb_bgemm_amx_enable(mode == 0 ? 0 : mode == 1 ? -1 : 1);
                        apb_threads_set(th);
                        CHECK(mode == 0 || !apb_bgemm_amx_active() ||
                              apb_bgemm_amx_chosen((apb_bgemm_kind)kind, M, N, K) == 1);
                        int32_t *got = gotb + 1;
                        memset(gotb, 0x5a, sizeof(int32_t) * (M * ldc + 1));
                        CHECK_OK(apb_bgemm((apb_bgemm_kind)kind, M, N, K, &A, &B, pp, got, ldc));
                        for (int m = 0; m < M; m++)
                            for (int n = 0; n < N; n++)
                                CHECK_MSG(got[m * ldc + n] == want[m * ldc + n],
                                          "case %d kind %s pad %d amx mode %d threads %d "
                                          "(m,n)=(%d,%d): %d vs %d",
                                          ci, apb_bgemm_kind_name(kind), usepad, mode, th, m, n,
                                          got[m * ldc + n], want[m * ldc + n]);
                        for (int m = 0; m < M; m++) /* padding columns of C untouched */
                            for (int n = N; n < ldc && m + 1 < M; n++)
                                CHECK(got[m * ldc + n] == 0x5a5a5a5a);
                        apb_bgemm_epilogue ep = {sc, bi, pp, 0, 0, 0, NULL, NULL};
                        float *y = yb + 1;
                        CHECK_OK(apb_bgemm_f32((apb_bgemm_kind)kind, M, N, K, &A, &B, &ep, y, ldc));
                        for (int m = 0; m < M; m++)
                            for (int n = 0; n < N; n++) {
                                float e = sc[m] * (float)want[m * ldc + n] + bi[m];
                                CHECK_MSG(y[m * ldc + n] == e,
                                          "f32 case %d kind %s pad %d amx mode %d threads %d "
                                          "(m,n)=(%d,%d): %g vs %g",
                                          ci, apb_bgemm_kind_name(kind), usepad, mode, th, m, n,
                                          (double)y[m * ldc + n], (double)e);
                            }
                    }
            }
            apb_bitconv_pad_free(&pad);
        }
        free(x), free(wf), free(ws), free(wm), free(bs), free(bm), free(want), free(gotb), free(yb);
        free(sc), free(bi);
    }
    apb_bgemm_amx_enable(amx_saved);
    apb_threads_set(saved_thr);
    return 0;
}

/* apb_bgemm_ind_f32 (B read in place through word offsets) at every ISA level
 * and 1 and 2 threads: the same floats as apb_bgemm_f32 on B packed row by row
 * from those offsets, with a padding correction and a scale; several images,
 * M and columns that are not multiples of the kernel's 8 x 24, K of 1 to 10
 * words (whole words: bgemm.h). */
APB_TEST(test_bgemm_ind_equals_packed)
{
    static const int cases[][4] = {{13, 50, 2, 128}, {8, 24, 1, 64}, {37, 97, 3, 640}, {64, 200, 2, 576},
                                   {64, 232, 1, 576}, {40, 300, 1, 640}};
    /* one image: columns as rows of g, claimed in units of ur rows x mb of M
     * (apb_bgemm_epilogue), g not always dividing the columns */
    static const int bands[][3] = {{0, 0, 0}, {58, 2, 0}, {29, 1, 32}, {7, 3, 16}, {300, 1, 8}};
    apb_rng r;
    apb_rng_seed(&r, 93);
    apb_isa prev = apb_isa_active();
    int saved = apb_threads_get();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int M = cases[ci][0], ncol = cases[ci][1], nimg = cases[ci][2], K = cases[ci][3];
        int KW = apb_bits_words(K), ld = apb_bits_ld(K);
        long istride = 3L * KW + ncol + 64;
        long *boff = malloc(sizeof(long) * KW);
        for (int j = 0; j < KW; j++)
            boff[j] = (long)(KW - 1 - j) * 3 + (j % 2); /* any order, overlapping windows */
        uint64_t *src = calloc((size_t)nimg * istride + 64, 8), *A = calloc((size_t)M * ld, 8);
        uint64_t *B = calloc((size_t)nimg * ncol * ld, 8);
        uint64_t tail = K % 64 ? (1ull << (K % 64)) - 1 : ~0ull;
        for (long i = 0; i < (long)nimg * istride; i++)
            src[i] = apb_rng_next(&r);
        for (int m = 0; m < M; m++)
            for (int j = 0; j < KW; j++)
                A[(size_t)m * ld + j] = apb_rng_next(&r) & (j == KW - 1 ? tail : ~0ull);
        for (int b = 0; b < nimg; b++)
            for (int q = 0; q < ncol; q++)
                for (int j = 0; j < KW; j++)
                    B[((size_t)b * ncol + q) * ld + j] = src[b * istride + boff[j] + q] & (j == KW - 1 ? tail : ~0ull);
        int32_t *pat = malloc(sizeof(int32_t) * ncol), *corr = malloc(sizeof(int32_t) * 3 * M);
        float *scale = malloc(sizeof(float) * M);
        for (int q = 0; q < ncol; q++)
            pat[q] = q % 5 == 0 ? (q % 3) : 0;
        for (int i = 0; i < 3 * M; i++)
            corr[i] = i < M ? 0 : (int32_t)(apb_rng_next(&r) % 41) - 20;
        for (int m = 0; m < M; m++)
            scale[m] = 0.25f + (float)apb_rng_uniform(&r);
        apb_bitconv_pad pad1 = {M, ncol, 3, pat, corr};
        int32_t *patn = malloc(sizeof(int32_t) * nimg * ncol);
        for (int i = 0; i < nimg * ncol; i++)
            patn[i] = pat[i % ncol];
        apb_bitconv_pad padn = {M, nimg * ncol, 3, patn, corr};
        float *want = malloc(sizeof(float) * M * nimg * ncol), *got = malloc(sizeof(float) * M * nimg * ncol);
        apb_bitmat Am = {A, NULL, ld}, Bm = {B, NULL, ld};
        apb_bgemm_epilogue epn = {scale, NULL, &padn, 0, 0, 0, NULL, NULL}, ep1 = {scale, NULL, &pad1, 0, 0, 0, NULL, NULL};
        CHECK_OK(apb_bgemm_f32(APB_BGEMM_1X1, M, nimg * ncol, K, &Am, &Bm, &epn, want, nimg * ncol));
        for (int lvl = 0; lvl <= (int)apb_isa_detected(); lvl++)
            for (int th = 1; th <= 2; th++)
                for (int bi = 0; bi < (nimg == 1 ? 5 : 1); bi++) {
                    CHECK_OK(apb_isa_force((apb_isa)lvl));
                    apb_threads_set(th);
                    memset(got, 0xff, sizeof(float) * M * nimg * ncol);
                    apb_bgemm_epilogue ep = ep1;
                    ep.grain = bands[bi][0], ep.band_rows = bands[bi][1], ep.band_m = bands[bi][2];
                    apb_status st = apb_bgemm_ind_f32(M, ncol, nimg, K, &Am, src, istride, boff, &ep, got,
                                                      nimg * ncol, ncol);
                    apb_threads_set(saved);
                    CHECK_OK(st);
                    CHECK_MSG(memcmp(got, want, sizeof(float) * M * nimg * ncol) == 0,
                              "level %d, %d threads, M%d ncol %d images %d K%d, bands %d", lvl, th, M, ncol,
                              nimg, K, bi);
                }
        apb_isa_force(prev);
        free(boff), free(src), free(A), free(B), free(pat), free(corr), free(scale), free(patn), free(want),
            free(got);
    }
    apb_isa_force(prev);
    return 0;
}
