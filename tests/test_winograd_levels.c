/* test_winograd_levels.c - the Winograd row transforms (kernels/winograd_body.h)
 * compiled for AVX2 (which serves AVX2 and AVX-512) give the portable copy's
 * bits, where the machine runs AVX2: weights (and flipped), input rows (odd and even widths, rows
 * past the image), output rows (written and accumulated), gradient rows and the
 * weight-gradient output. */
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
    static const wg_fns tabs[2] = {APB_WG_TABLE(c), APB_WG_TABLE(avx2)};
    static const int geo[][2] = {{7, 7}, {8, 8}, {14, 13}, {5, 37}, {28, 28}};
    apb_rng r;
    apb_rng_seed(&r, 92);
    if (apb_isa_detected() < APB_ISA_AVX2) {
        fprintf(stderr, "  no AVX2 here: the AVX2 copy cannot run, nothing to compare\n");
        return APB_TEST_SKIP;
    }
    int levels = 1; /* the AVX2 copy */
    enum { M = 5, C = 19 };
    size_t mc = (size_t)M * C;
    float *w = malloc(sizeof(float) * mc * 9), *U0 = malloc(sizeof(float) * 16 * mc);
    float *U1 = malloc(sizeof(float) * 16 * mc), *dw0 = malloc(sizeof(float) * mc * 9);
    float *dw1 = malloc(sizeof(float) * mc * 9);
    fill(&r, w, mc * 9);
    for (int lv = 1; lv <= levels; lv++) {
        for (int flip = 0; flip < 2; flip++) {
            for (int m = 0; m < M; m++) {
                tabs[0].weights_row(m, M, C, w, flip, U0, mc);
                tabs[lv].weights_row(m, M, C, w, flip, U1, mc);
            }
            CHECK_MSG(same(U0, U1, 16 * mc), "weights at level %d, flip %d", lv, flip);
        }
        fill(&r, U0, 16 * mc); /* S for the weight-gradient output */
        fill(&r, dw0, mc * 9);
        memcpy(dw1, dw0, sizeof(float) * mc * 9);
        for (int m = 0; m < M; m++) {
            tabs[0].dw_output_row(U0, mc, C, m, dw0);
            tabs[lv].dw_output_row(U0, mc, C, m, dw1);
        }
        CHECK_MSG(same(dw0, dw1, mc * 9), "dw output at level %d", lv);
        for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
            int H = geo[g][0], W = geo[g][1], TW = (W + 1) / 2, TH = (H + 1) / 2;
            size_t cs = (size_t)TW + 3, rs = (size_t)8 * (TW + 1);
            float *x = malloc(sizeof(float) * H * W), *rows = malloc(sizeof(float) * rs);
            float *V0 = malloc(sizeof(float) * 16 * cs), *V1 = malloc(sizeof(float) * 16 * cs);
            float *y0 = malloc(sizeof(float) * H * W), *y1 = malloc(sizeof(float) * H * W);
            fill(&r, x, (size_t)H * W);
            for (int th = 0; th < TH; th++) {
                memset(V0, 0, sizeof(float) * 16 * cs);
                memset(V1, 0, sizeof(float) * 16 * cs);
                tabs[0].input_row(x, H, W, th, rows, V0, cs, 1);
                tabs[lv].input_row(x, H, W, th, rows, V1, cs, 1);
                CHECK_MSG(same(V0, V1, 16 * cs), "input row at level %d: %dx%d row %d", lv, H, W, th);
                memset(V0, 0, sizeof(float) * 16 * cs);
                memset(V1, 0, sizeof(float) * 16 * cs);
                tabs[0].grad_row(x, H, W, th, rows, V0, cs, 2);
                tabs[lv].grad_row(x, H, W, th, rows, V1, cs, 2);
                CHECK_MSG(same(V0, V1, 16 * cs), "grad row at level %d: %dx%d row %d", lv, H, W, th);
                fill(&r, V0, 16 * cs); /* products P */
                for (int acc = 0; acc < 2; acc++) {
                    fill(&r, y0, (size_t)H * W);
                    memcpy(y1, y0, sizeof(float) * H * W);
                    tabs[0].output_row(V0, cs, 1, H, W, th, acc, y0, rows);
                    tabs[lv].output_row(V0, cs, 1, H, W, th, acc, y1, rows);
                    CHECK_MSG(same(y0, y1, (size_t)H * W), "output row at level %d: %dx%d row %d acc %d", lv,
                              H, W, th, acc);
                }
            }
            free(x), free(rows), free(V0), free(V1), free(y0), free(y1);
        }
    }
    free(w), free(U0), free(U1), free(dw0), free(dw1);
    return 0;
}
