/* test_winograd_levels.c - the Winograd tile transforms (kernels/winograd_body.h)
 * compiled for AVX2 and AVX-512 give the portable copy's bits at every level the
 * machine runs: weights (and flipped), input splits (odd and even widths, rows
 * past the image) and transforms, output transforms and scatters (written and
 * accumulated), gradient splits and transforms and the weight-gradient output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "rng.h"
#include "test.h"
#include "winograd_levels.h"

static void fill(apb_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(apb_rng_uniform(r) * 4.0 - 2.0);
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

APB_TEST(test_winograd_transforms_every_isa)
{
    static const wg_fns tabs[3] = {APB_WG_TABLE(c), APB_WG_TABLE(avx2), APB_WG_TABLE(avx512)};
    static const int geo[][2] = {{7, 7}, {8, 8}, {14, 13}, {5, 37}, {28, 28}, {3, 2}};
    apb_rng r;
    apb_rng_seed(&r, 92);
    int levels = (int)apb_isa_detected(); /* the highest copy this machine runs */
    if (levels < 1) {
        fprintf(stderr, "  no AVX2 here: only the portable copy runs, nothing to compare\n");
        return APB_TEST_SKIP;
    }
    enum { M = 5, C = 19, T = 37 };
    size_t mc = (size_t)M * C;
    float *w = malloc(sizeof(float) * mc * 9), *U0 = malloc(sizeof(float) * 36 * mc);
    float *U1 = malloc(sizeof(float) * 36 * mc), *dw0 = malloc(sizeof(float) * mc * 9);
    float *dw1 = malloc(sizeof(float) * mc * 9);
    float *D = malloc(sizeof(float) * 36 * T), *V0 = malloc(sizeof(float) * 36 * (T + 3));
    float *V1 = malloc(sizeof(float) * 36 * (T + 3));
    CHECK(w && U0 && U1 && dw0 && dw1 && D && V0 && V1);
    fill(&r, w, mc * 9);
    for (int lv = 1; lv <= levels; lv++) {
        for (int flip = 0; flip < 2; flip++) {
            for (int m = 0; m < M; m++) {
                tabs[0].weights_row(m, M, C, w, flip, U0, mc);
                tabs[lv].weights_row(m, M, C, w, flip, U1, mc);
            }
            CHECK_MSG(same(U0, U1, 36 * mc), "weights at level %d, flip %d", lv, flip);
        }
        fill(&r, U0, 36 * mc); /* S for the weight-gradient output */
        fill(&r, dw0, mc * 9);
        memcpy(dw1, dw0, sizeof(float) * mc * 9);
        for (int m = 0; m < M; m++) {
            tabs[0].dw_output_row(U0, mc, C, m, dw0);
            tabs[lv].dw_output_row(U0, mc, C, m, dw1);
        }
        CHECK_MSG(same(dw0, dw1, mc * 9), "dw output at level %d", lv);
        /* the transforms over T tiles (an odd count: vector bodies and tails) */
        fill(&r, D, 36 * T);
        memset(V0, 0, sizeof(float) * 36 * (T + 3));
        memset(V1, 0, sizeof(float) * 36 * (T + 3));
        tabs[0].xform_in(D, T, T, V0 + 1, T + 3);
        tabs[lv].xform_in(D, T, T, V1 + 1, T + 3);
        CHECK_MSG(same(V0, V1, 36 * (T + 3)), "input transform at level %d", lv);
        tabs[0].xform_out(D, T, T, V0 + 2, T + 1);
        tabs[lv].xform_out(D, T, T, V1 + 2, T + 1);
        CHECK_MSG(same(V0, V1, 36 * (T + 3)), "output transform at level %d", lv);
        tabs[0].xform_grad(D, T, T, V0, T + 2);
        tabs[lv].xform_grad(D, T, T, V1, T + 2);
        CHECK_MSG(same(V0, V1, 36 * (T + 3)), "gradient transform at level %d", lv);
        for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
            int H = geo[g][0], W = geo[g][1], TW = (W + 3) / 4, TH = (H + 3) / 4;
            size_t cs = (size_t)TW + 3, n = (size_t)36 * cs;
            float *x = malloc(sizeof(float) * H * W), *xp = malloc(sizeof(float) * (4 * TW + 8));
            float *S0 = malloc(sizeof(float) * n), *S1 = malloc(sizeof(float) * n);
            float *y0 = malloc(sizeof(float) * H * W), *y1 = malloc(sizeof(float) * H * W);
            CHECK(x && xp && S0 && S1 && y0 && y1);
            fill(&r, x, (size_t)H * W);
            for (int th = 0; th < TH; th++) {
                memset(S0, 0, sizeof(float) * n);
                memset(S1, 0, sizeof(float) * n);
                tabs[0].split_in(x, H, W, th, xp, S0, cs, 1);
                tabs[lv].split_in(x, H, W, th, xp, S1, cs, 1);
                CHECK_MSG(same(S0, S1, n), "input split at level %d: %dx%d row %d", lv, H, W, th);
                memset(S0, 0, sizeof(float) * n);
                memset(S1, 0, sizeof(float) * n);
                tabs[0].split_grad(x, H, W, th, xp, S0, cs, 2);
                tabs[lv].split_grad(x, H, W, th, xp, S1, cs, 2);
                CHECK_MSG(same(S0, S1, n), "gradient split at level %d: %dx%d row %d", lv, H, W, th);
                fill(&r, S0, n); /* 16 output tiles Q */
                for (int acc = 0; acc < 2; acc++) {
                    fill(&r, y0, (size_t)H * W);
                    memcpy(y1, y0, sizeof(float) * H * W);
                    tabs[0].scatter_out(S0, cs, 1, H, W, th, acc, y0);
                    tabs[lv].scatter_out(S0, cs, 1, H, W, th, acc, y1);
                    CHECK_MSG(same(y0, y1, (size_t)H * W), "output scatter at level %d: %dx%d row %d acc %d",
                              lv, H, W, th, acc);
                }
            }
            free(x), free(xp), free(S0), free(S1), free(y0), free(y1);
        }
    }
    free(w), free(U0), free(U1), free(dw0), free(dw1), free(D), free(V0), free(V1);
    return 0;
}
