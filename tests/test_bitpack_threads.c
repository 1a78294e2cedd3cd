/* test_bitpack_threads.c - fused conv packing of ONE large image split over
 * threads (kernels/bitpack.c: bitmap rows, then blocks of 64 pixels): the packed
 * words must equal a naive per-tap construction and be identical for 1 and 2
 * threads, for sign and 2-bit packing, strides 1 and 2, at every ISA level
 * (the AVX-512 compare and transpose helpers included). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bitpack.h"
#include "cpu.h"
#include "rng.h"
#include "test.h"
#include "threads.h"

/* naive: bit (n, k) of the planes, padded taps 0 */
static void naive(const apb_conv_geom *g, const float *x, float s, int two, uint64_t *sg,
                  uint64_t *mg, int ld)
{
    int OH = apb_conv_geom_oh(g), OW = apb_conv_geom_ow(g), K = g->C * g->KH * g->KW;
    memset(sg, 0, sizeof(uint64_t) * (size_t)OH * OW * ld);
    if (two)
        memset(mg, 0, sizeof(uint64_t) * (size_t)OH * OW * ld);
    for (int n = 0; n < OH * OW; n++)
        for (int k = 0; k < K; k++) {
            int c = k / (g->KH * g->KW), kh = k / g->KW % g->KH, kw = k % g->KW;
            int ih = n / OW * g->stride - g->pad + kh, iw = n % OW * g->stride - g->pad + kw;
            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                continue;
            float v = x[((size_t)c * g->H + ih) * g->W + iw];
            uint64_t bit = UINT64_C(1) << (k & 63);
            size_t w = (size_t)n * ld + (k >> 6);
            if (!two) {
                if (v < 0.0f)
                    sg[w] |= bit;
            } else {
                int l = apb_quant2_level(v, s);
                if (l <= 1)
                    sg[w] |= bit;
                if (l == 0 || l == 3)
                    mg[w] |= bit;
            }
        }
}

APB_TEST(test_bitpack_conv_one_image_over_threads)
{
    apb_conv_geom gs[] = {{64, 30, 30, 3, 3, 1, 1}, {48, 65, 63, 3, 3, 2, 1}, {3, 96, 96, 7, 7, 2, 3}};
    apb_rng r;
    apb_rng_seed(&r, 5);
    int saved = apb_threads_get();
    apb_isa best = apb_isa_detected();
    for (int gi = 0; gi < 3; gi++) {
        const apb_conv_geom *g = &gs[gi];
        int K = g->C * g->KH * g->KW, ld = apb_bits_ld(K);
        long N = (long)apb_conv_geom_oh(g) * apb_conv_geom_ow(g);
        CHECK_MSG(N * K >= (1 << 18), "geometry %d too small to be split over threads", gi);
        size_t xs = (size_t)g->C * g->H * g->W, ws = (size_t)N * ld;
        float *x = malloc(sizeof(float) * xs);
        uint64_t *want[2] = {malloc(8 * ws), malloc(8 * ws)};
        uint64_t *got[2][2] = {{malloc(8 * ws), malloc(8 * ws)}, {malloc(8 * ws), malloc(8 * ws)}};
        CHECK(x && want[0] && want[1] && got[0][0] && got[0][1] && got[1][0] && got[1][1]);
        for (size_t i = 0; i < xs; i++)
            x[i] = apb_rng_normal(&r);
        x[5] = 0.0f; /* sgn(0) = +1 */
        /* the special values take the same bits on every path */
        x[9] = NAN, x[10] = -0.0f, x[11] = INFINITY, x[12] = -INFINITY, x[xs - 1] = NAN;
        for (int two = 0; two < 2; two++) {
            float s = 0.6f;
            naive(g, x, s, two, want[0], want[1], ld);
            for (int lvl = APB_ISA_REF; lvl <= (int)best; lvl++) {
                CHECK_OK(apb_isa_force((apb_isa)lvl));
                for (int th = 1; th <= 2; th++) {
                    apb_threads_set(th);
                    if (two)
                        CHECK_OK(apb_bitpack_conv_2bit(g, x, s, got[th - 1][0], got[th - 1][1], ld));
                    else
                        CHECK_OK(apb_bitpack_conv_sign(g, x, got[th - 1][0], ld));
                    for (int p = 0; p <= two; p++)
                        CHECK_MSG(memcmp(got[th - 1][p], want[p], 8 * ws) == 0,
                                  "geometry %d %s plane %d isa %s threads %d differs from naive", gi,
                                  two ? "2-bit" : "sign", p, apb_isa_name((apb_isa)lvl), th);
                }
            }
        }
        apb_threads_set(saved);
        CHECK_OK(apb_isa_force(best));
        free(x), free(want[0]), free(want[1]);
        for (int i = 0; i < 4; i++)
            free(got[i / 2][i % 2]);
    }
    return 0;
}

/* Channel packing (apb_bitpack_chan + apb_bitpack_chan_im2col) gives, in the
 * order (kh, kw, c), exactly the bits the naive im2col packing gives in the order
 * (c, kh, kw): compared through apb_bitpack_reorder_hwc, which must also move
 * every weight bit. Image widths not a multiple of 8, strides 1-3, pads 0-2, an
 * image narrower than the kernel span, 1 and 2 threads, special values. */
APB_TEST(test_bitpack_chan_matches_im2col_order)
{
    apb_conv_geom gs[] = {{64, 30, 30, 3, 3, 1, 1}, {128, 13, 11, 3, 3, 2, 1}, {64, 9, 7, 5, 5, 3, 2},
                          {64, 6, 5, 1, 1, 1, 0},   {192, 2, 3, 3, 3, 1, 2},  {64, 56, 56, 3, 3, 1, 1}};
    apb_rng r;
    apb_rng_seed(&r, 6);
    int saved = apb_threads_get();
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++) {
        const apb_conv_geom *g = &gs[gi];
        int K = g->C * g->KH * g->KW, ld = apb_bits_ld(K);
        long N = (long)apb_conv_geom_oh(g) * apb_conv_geom_ow(g);
        size_t xs = (size_t)g->C * g->H * g->W, ws = (size_t)N * ld, zw = apb_chan_words(g);
        float *x = malloc(sizeof(float) * xs);
        uint64_t *want[2] = {malloc(8 * ws), malloc(8 * ws)}, *re = malloc(8 * ws);
        uint64_t *z[2] = {malloc(8 * zw), malloc(8 * zw)}, *got[2] = {malloc(8 * ws), malloc(8 * ws)};
        CHECK(x && want[0] && want[1] && re && z[0] && z[1] && got[0] && got[1]);
        for (size_t i = 0; i < xs; i++)
            x[i] = apb_rng_normal(&r);
        x[5] = 0.0f, x[9] = NAN, x[10] = -0.0f, x[11] = INFINITY, x[12] = -INFINITY, x[xs - 1] = NAN;
        for (int two = 0; two < 2; two++) {
            float s = 0.6f;
            naive(g, x, s, two, want[0], want[1], ld);
            for (int th = 1; th <= 2 * (1 + (int)apb_isa_detected()); th++) {
                /* threads 1, 2, then again at the next ISA level */
                CHECK_OK(apb_isa_force((apb_isa)((th - 1) / 2)));
                apb_threads_set(2 - th % 2);
                CHECK_OK(apb_bitpack_chan(g, x, s, two ? 2 : 1, z[0], z[1]));
                for (int p = 0; p <= two; p++) {
                    CHECK_OK(apb_bitpack_chan_im2col(g, z[p], got[p], ld));
                    /* the naive rows moved to (kh, kw, c): the words up to K must agree */
                    apb_bitpack_reorder_hwc(g, (int)N, want[p], re, ld);
                    int kw = apb_bits_words(K), bad = 0;
                    for (long n = 0; n < N && !bad; n++)
                        bad = memcmp(re + n * ld, got[p] + n * ld, 8 * (size_t)kw) != 0;
                    CHECK_MSG(!bad, "geometry %zu %s plane %d threads %d differs from naive", gi,
                              two ? "2-bit" : "sign", p, th);
                }
            }
        }
        /* the reorder is a permutation: every bit set once, none lost */
        long ones_a = 0, ones_b = 0;
        apb_bitpack_reorder_hwc(g, (int)N, want[0], re, ld);
        for (size_t i = 0; i < ws; i++) {
            ones_a += __builtin_popcountll(want[0][i]);
            ones_b += __builtin_popcountll(re[i]);
        }
        CHECK_MSG(ones_a == ones_b && ones_a > 0, "reorder: %ld bits in, %ld out", ones_a, ones_b);
        apb_threads_set(saved);
        CHECK_OK(apb_isa_force(apb_isa_detected()));
        free(x), free(want[0]), free(want[1]), free(re), free(z[0]), free(z[1]), free(got[0]), free(got[1]);
    }
    /* not a multiple of 64 channels: refused with the reason */
    apb_conv_geom bad = {48, 4, 4, 3, 3, 1, 1};
    uint64_t zz[64];
    apb_status s = apb_bitpack_chan(&bad, NULL, 1.0f, 1, zz, NULL);
    CHECK_MSG(s == APB_EINVAL && strstr(apb_errmsg(), "multiple of 64"), "status %d: %s", s, apb_errmsg());
    return 0;
}
