/* test_layers.c - forward values of the layers against naive references, mode
 * semantics (train/eval, no-grad), error messages, and the proof that the stack
 * learns: a small CNN overfits one batch with plain SGD. Gradients themselves are
 * covered by tests/test_gradcheck.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "cpu.h"
#include "im2col.h"
#include "model.h"
#include "sgemm.h"
#include "ops.h"
#include "test.h"
#include "threads.h"

/* Direct 7-loop convolution in double: y[N,M,OH,OW]. */
static void conv_naive(const float *x, const float *w, const float *b, int N, int C, int H, int W,
                       int M, int KH, int KW, int S, int P, float *y)
{
    int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1;
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double s = b ? b[m] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int ih = oh * S - P + kh, iw = ow * S - P + kw;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    s += (double)x[((n * C + c) * H + ih) * W + iw] *
                                         w[((m * C + c) * KH + kh) * KW + kw];
                            }
                    y[((n * M + m) * OH + oh) * OW + ow] = (float)s;
                }
}

static int check_conv(int N, int C, int H, int W, int M, int KH, int KW, int S, int P, int bias)
{
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 20);
    apb_rng r;
    apb_rng_seed(&r, (uint64_t)(N * 131 + C * 17 + KH * 5 + S));
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    apb_var *x = apb_graph_new(&g, 4, (int[]){N, C, H, W}, 0);
    apb_var *w = apb_graph_new(&g, 4, (int[]){M, C, KH, KW}, 0);
    apb_var *b = bias ? apb_graph_new(&g, 1, (int[]){M}, 0) : NULL;
    apb_test_fill_normal(&r, x->data, x->numel, 1.0f);
    apb_test_fill_normal(&r, w->data, w->numel, 0.5f);
    if (b)
        apb_test_fill_normal(&r, b->data, b->numel, 0.5f);
    apb_var *y;
    CHECK_OK(apb_conv2d(&g, x, w, b, S, P, &y));
    int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1;
    CHECK(y->ndim == 4 && y->dim[0] == N && y->dim[1] == M && y->dim[2] == OH && y->dim[3] == OW);
    float *ref = malloc(sizeof(float) * (size_t)y->numel);
    conv_naive(x->data, w->data, b ? b->data : NULL, N, C, H, W, M, KH, KW, S, P, ref);
    int bad = apb_test_close_f32(__FILE__, __LINE__, "conv2d", y->data, ref, (long)y->numel,
                                 1e-4, 1e-4);
    free(ref);
    apb_graph_free(&g);
    apb_arena_free(&step);
    return bad;
}

APB_TEST(test_conv2d_matches_direct_loops)
{
    CHECK(check_conv(2, 3, 9, 8, 5, 3, 3, 2, 1, 1) == 0);  /* stride 2, padding */
    CHECK(check_conv(3, 4, 5, 5, 6, 1, 1, 1, 0, 1) == 0);  /* 1x1 fast path */
    CHECK(check_conv(1, 2, 6, 7, 3, 2, 3, 1, 0, 0) == 0);  /* rectangular kernel, no bias */
    CHECK(check_conv(4, 3, 7, 7, 2, 5, 5, 3, 2, 1) == 0);  /* stride 3, pad 2 */
    CHECK(check_conv(5, 8, 4, 4, 4, 1, 1, 2, 0, 0) == 0);  /* strided 1x1: im2col path */
    return 0;
}

/* The batch-parallel path (N >= threads) and the serial path agree, forward and
 * backward, and backward accumulates into existing gradients. */
APB_TEST(test_conv2d_thread_count_independent)
{
    int saved = apb_threads_get();
    float *res[2][4];
    int64_t nres[4];
    for (int t = 0; t < 2; t++) {
        apb_threads_set(t == 0 ? 1 : 3);
        apb_arena step;
        apb_arena_init(&step, "t", 1 << 20);
        apb_rng r;
        apb_rng_seed(&r, 99);
        apb_graph g;
        apb_graph_init(&g, &step, 1, 1, &r);
        apb_var *x = apb_graph_new(&g, 4, (int[]){7, 3, 6, 5}, 0);
        apb_var *w = apb_graph_new(&g, 4, (int[]){4, 3, 3, 3}, 0);
        apb_var *b = apb_graph_new(&g, 1, (int[]){4}, 0);
        apb_test_fill_normal(&r, x->data, x->numel, 1.0f);
        apb_test_fill_normal(&r, w->data, w->numel, 0.5f);
        apb_test_fill_normal(&r, b->data, b->numel, 0.5f);
        x->requires_grad = w->requires_grad = b->requires_grad = 1;
        apb_var *y;
        CHECK_OK(apb_conv2d(&g, x, w, b, 1, 1, &y));
        float *dy = apb_graph_floats(&g, y->numel);
        apb_test_fill_normal(&r, dy, y->numel, 1.0f);
        CHECK_OK(apb_backward_from(&g, y, dy));
        apb_var *v[4] = {y, x, w, b};
        for (int k = 0; k < 4; k++) {
            nres[k] = v[k]->numel;
            res[t][k] = malloc(sizeof(float) * (size_t)nres[k]);
            memcpy(res[t][k], k == 0 ? y->data : v[k]->grad, sizeof(float) * (size_t)nres[k]);
        }
        apb_graph_free(&g);
        apb_arena_free(&step);
    }
    apb_threads_set(saved);
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        bad |= apb_test_close_f32(__FILE__, __LINE__, "serial vs threaded", res[1][k], res[0][k],
                                  (long)nres[k], 1e-5, 1e-5);
        free(res[0][k]);
        free(res[1][k]);
    }
    CHECK(!bad);
    return 0;
}

/* "Same" stride-1 convs run on zero-padded planes (apb_sgemm_conv, no im2col):
 * the forward must stay bitwise equal to im2col + apb_sgemm + bias (what the
 * runtime computes), and dx / dW, written into fresh (uninitialised, here NaN)
 * gradients, must match a double-precision reference; at every ISA level, serial
 * and batch-parallel. {N, C, H, W, M, KS, pad}: 32/16-wide maps (indirect kernel),
 * 8 and 7 wide (gathered panels), M = 16 (dW by dot products) and 64 (packed); the
 * last case (one image) splits the GEMMs themselves over the threads. */
static int check_conv_same(int threads, const int *cs)
{
    int N = cs[0], C = cs[1], H = cs[2], W = cs[3], M = cs[4], KS = cs[5], P = cs[6];
    int K = C * KS * KS, HW = H * W;
    apb_threads_set(threads);
    apb_arena step;
    apb_arena_init(&step, "t", 4 << 20);
    float *poison = apb_arena_alloc(&step, (4 << 20) - 4096);
    CHECK(poison);
    for (size_t i = 0; i < ((4 << 20) - 4096) / sizeof(float); i++)
        poison[i] = NAN;
    apb_arena_reset(&step);
    apb_rng r;
    apb_rng_seed(&r, (uint64_t)(C * 100 + W));
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    apb_var *x = apb_graph_new(&g, 4, (int[]){N, C, H, W}, 0);
    apb_var *w = apb_graph_new(&g, 4, (int[]){M, C, KS, KS}, 0);
    apb_var *b = apb_graph_new(&g, 1, (int[]){M}, 0);
    apb_test_fill_normal(&r, x->data, x->numel, 1.0f);
    apb_test_fill_normal(&r, w->data, w->numel, 0.5f);
    apb_test_fill_normal(&r, b->data, b->numel, 0.5f);
    x->requires_grad = w->requires_grad = b->requires_grad = 1;
    apb_var *y;
    CHECK_OK(apb_conv2d(&g, x, w, b, 1, P, &y));
    float *col = malloc(sizeof(float) * (size_t)K * HW), *ref = malloc(sizeof(float) * M * HW);
    double *dx = calloc((size_t)x->numel, sizeof(double));
    double *dw = calloc((size_t)K * M, sizeof(double));
    float *dy = apb_graph_floats(&g, y->numel), *fdx = malloc(sizeof(float) * x->numel);
    float *fdw = malloc(sizeof(float) * w->numel);
    CHECK(col && ref && dx && dw && dy && fdx && fdw);
    int bad = 0;
    for (int n = 0; n < N && !bad; n++) {
        apb_im2col(x->data + (size_t)n * C * HW, C, H, W, KS, KS, 1, P, col);
        apb_sgemm(0, 0, M, HW, K, 1.0f, w->data, K, col, HW, 0.0f, ref, HW);
        for (int m = 0; m < M; m++)
            for (int p = 0; p < HW; p++)
                ref[m * HW + p] += b->data[m];
        if (memcmp(ref, y->data + (size_t)n * M * HW, sizeof(float) * M * HW)) {
            fprintf(stderr, "  forward of image %d is not bitwise im2col + sgemm\n", n);
            bad = 1;
        }
    }
    apb_test_fill_normal(&r, dy, y->numel, 1.0f);
    CHECK_OK(apb_backward_from(&g, y, dy));
    for (int n = 0; n < N; n++) { /* dx += W^T dy scattered, dW += dy col^T */
        apb_im2col(x->data + (size_t)n * C * HW, C, H, W, KS, KS, 1, P, col);
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int p = 0; p < HW; p++)
                    s += (double)dy[((size_t)n * M + m) * HW + p] * col[(size_t)k * HW + p];
                dw[m * K + k] += s;
            }
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int v = 0; v < W; v++)
                    for (int m = 0; m < M; m++)
                        for (int kh = 0; kh < KS; kh++)
                            for (int kw = 0; kw < KS; kw++) {
                                int oh = h + P - kh, ow = v + P - kw;
                                if (oh >= 0 && oh < H && ow >= 0 && ow < W)
                                    dx[((size_t)n * C + c) * HW + h * W + v] +=
                                        (double)dy[((size_t)n * M + m) * HW + oh * W + ow] *
                                        w->data[((m * C + c) * KS + kh) * KS + kw];
                            }
    }
    for (int64_t i = 0; i < x->numel; i++)
        fdx[i] = (float)dx[i];
    for (int64_t i = 0; i < w->numel; i++)
        fdw[i] = (float)dw[i];
    bad |= apb_test_close_f32(__FILE__, __LINE__, "conv dx", x->grad, fdx, (long)x->numel, 1e-4,
                              1e-4);
    bad |= apb_test_close_f32(__FILE__, __LINE__, "conv dw", w->grad, fdw, (long)w->numel, 1e-4,
                              1e-3);
    if (bad)
        fprintf(stderr, "  threads=%d N=%d C=%d H=%d W=%d M=%d K=%d pad=%d\n", threads, N, C, H, W,
                M, KS, P);
    free(col), free(ref), free(dx), free(dw), free(fdx), free(fdw);
    apb_graph_free(&g);
    apb_arena_free(&step);
    return bad;
}

APB_TEST(test_conv2d_same_padded_path)
{
    static const int cs[][7] = {{2, 3, 6, 32, 16, 3, 1}, {3, 5, 4, 16, 64, 3, 1},
                                {2, 4, 8, 8, 16, 3, 1},  {2, 3, 7, 7, 5, 3, 1},
                                {2, 2, 6, 9, 3, 5, 2},   {1, 16, 32, 32, 16, 3, 1}};
    int saved = apb_threads_get(), bad = 0;
    for (int l = APB_ISA_REF; l <= (int)apb_isa_detected() && !bad; l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        for (int t = 1; t <= 2; t++)
            for (int i = 0; i < (int)(sizeof cs / sizeof cs[0]); i++)
                bad |= check_conv_same(t, cs[i]);
    }
    apb_threads_set(saved);
    CHECK_OK(apb_isa_force(apb_isa_detected()));
    CHECK(!bad);
    return 0;
}

APB_TEST(test_linear_matches_direct)
{
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 16);
    apb_rng r;
    apb_rng_seed(&r, 3);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    int N = 3, F = 11, M = 5;
    apb_var *x = apb_graph_new(&g, 2, (int[]){N, F}, 0), *w = apb_graph_new(&g, 2, (int[]){M, F}, 0);
    apb_var *b = apb_graph_new(&g, 1, (int[]){M}, 0), *y;
    apb_test_fill_normal(&r, x->data, x->numel, 1.0f);
    apb_test_fill_normal(&r, w->data, w->numel, 1.0f);
    apb_test_fill_normal(&r, b->data, b->numel, 1.0f);
    CHECK_OK(apb_linear(&g, x, w, b, &y));
    float ref[15];
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double s = b->data[m];
            for (int f = 0; f < F; f++)
                s += (double)x->data[n * F + f] * w->data[m * F + f];
            ref[n * M + m] = (float)s;
        }
    CHECK(y->ndim == 2 && y->dim[0] == N && y->dim[1] == M);
    CHECK_ARRAY_CLOSE(y->data, ref, N * M, 1e-5, 1e-5);
    apb_var *w2 = apb_graph_new(&g, 2, (int[]){M, F - 1}, 0), *bad;
    CHECK(apb_linear(&g, x, w2, NULL, &bad) == APB_ESHAPE);
    CHECK(strstr(apb_errmsg(), "linear") && strstr(apb_errmsg(), "[5,10]"));
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

APB_TEST(test_pooling_forward)
{
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 16);
    apb_rng r;
    apb_rng_seed(&r, 4);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    /* hand-checked 2x2/stride-2 max pool of one 4x4 plane */
    float xv[16] = {1, 5, 2, 0, -1, 3, 8, 7, 4, 4, -2, -3, 0, 9, -5, -1};
    apb_var *x = apb_graph_input(&g, xv, 4, (int[]){1, 1, 4, 4}), *y;
    CHECK_OK(apb_maxpool2d(&g, x, 2, 2, 0, &y));
    float want[4] = {5, 8, 9, -1};
    CHECK(y->dim[2] == 2 && y->dim[3] == 2);
    CHECK_ARRAY_CLOSE(y->data, want, 4, 0, 0);
    CHECK_OK(apb_avgpool2d(&g, x, 2, 2, 0, &y));
    float wavg[4] = {2, 4.25f, 4.25f, -2.75f};
    CHECK_ARRAY_CLOSE(y->data, wavg, 4, 1e-6, 1e-6);

    /* k3 s2 p1 on an awkward size against naive loops (max pads -inf, avg counts pad) */
    int N = 2, C = 3, H = 7, W = 6, k = 3, S = 2, P = 1;
    int OH = (H + 2 * P - k) / S + 1, OW = (W + 2 * P - k) / S + 1;
    apb_var *x2 = apb_graph_new(&g, 4, (int[]){N, C, H, W}, 0), *ym, *ya, *yg;
    for (int64_t i = 0; i < x2->numel; i++)
        x2->data[i] = apb_rng_normal(&r) - 3.0f; /* mostly negative: -inf padding matters */
    CHECK_OK(apb_maxpool2d(&g, x2, k, S, P, &ym));
    CHECK_OK(apb_avgpool2d(&g, x2, k, S, P, &ya));
    CHECK(ym->dim[2] == OH && ym->dim[3] == OW && ya->dim[2] == OH && ya->dim[3] == OW);
    float *rm = malloc(sizeof(float) * (size_t)ym->numel), *ra = malloc(sizeof(float) * (size_t)ym->numel);
    for (int pl = 0; pl < N * C; pl++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float mx = -INFINITY;
                double s = 0;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        int h = oh * S - P + i, w = ow * S - P + j;
                        if (h < 0 || h >= H || w < 0 || w >= W)
                            continue;
                        float v = x2->data[(pl * H + h) * W + w];
                        mx = v > mx ? v : mx;
                        s += v;
                    }
                rm[(pl * OH + oh) * OW + ow] = mx;
                ra[(pl * OH + oh) * OW + ow] = (float)(s / (k * k));
            }
    int bad = apb_test_close_f32(__FILE__, __LINE__, "maxpool", ym->data, rm, (long)ym->numel, 0, 0) ||
              apb_test_close_f32(__FILE__, __LINE__, "avgpool", ya->data, ra, (long)ya->numel, 1e-6, 1e-6);
    free(rm);
    free(ra);
    CHECK(!bad);
    CHECK_OK(apb_global_avgpool(&g, x, &yg));
    CHECK(yg->ndim == 2 && yg->dim[0] == 1 && yg->dim[1] == 1);
    CHECK_CLOSE(yg->data[0], 31.0 / 16, 1e-6, 0);
    CHECK(apb_maxpool2d(&g, x, 3, 1, 2, &y) == APB_EINVAL); /* pad > k/2 */
    CHECK(apb_maxpool2d(&g, x, 5, 1, 0, &y) == APB_ESHAPE); /* window larger than input */
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

static int check_bn(int ndim, const int *dim)
{
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 16);
    apb_rng r;
    apb_rng_seed(&r, 5);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    int N = dim[0], C = dim[1], HW = ndim == 4 ? dim[2] * dim[3] : 1, m = N * HW;
    apb_var *x = apb_graph_new(&g, ndim, dim, 0), *gm = apb_graph_new(&g, 1, &C, 0);
    apb_var *bt = apb_graph_new(&g, 1, &C, 0), *y;
    float rmean[8], rvar[8];
    for (int64_t i = 0; i < x->numel; i++) /* channel c has mean ~ 10*c: tests the shift */
        x->data[i] = 3.0f * apb_rng_normal(&r) + 10.0f * (float)((i / HW) % C);
    for (int c = 0; c < C; c++) {
        gm->data[c] = 1.0f + 0.5f * (float)c;
        bt->data[c] = 0.25f * (float)c - 0.5f;
        rmean[c] = 0.0f;
        rvar[c] = 1.0f;
    }
    apb_bn_state st = {rmean, rvar, 0.1f, 1e-5f};
    CHECK_OK(apb_batchnorm(&g, x, gm, bt, &st, &y));
    for (int c = 0; c < C; c++) {
        double s = 0, s2 = 0;
        for (int n = 0; n < N; n++)
            for (int p = 0; p < HW; p++)
                s += x->data[(n * C + c) * HW + p];
        double mean = s / m;
        for (int n = 0; n < N; n++)
            for (int p = 0; p < HW; p++) {
                double d = x->data[(n * C + c) * HW + p] - mean;
                s2 += d * d;
            }
        double var = s2 / m;
        for (int n = 0; n < N; n++)
            for (int p = 0; p < HW; p++) {
                int i = (n * C + c) * HW + p;
                double want = gm->data[c] * (x->data[i] - mean) / sqrt(var + 1e-5) + bt->data[c];
                CHECK_CLOSE(y->data[i], want, 1e-4, 1e-4);
            }
        CHECK_CLOSE(rmean[c], 0.1 * mean, 1e-5, 1e-5);
        CHECK_CLOSE(rvar[c], 0.9 + 0.1 * s2 / (m - 1), 1e-5, 1e-5); /* unbiased */
    }
    /* eval: running statistics, no batch dependence */
    g.training = 0;
    CHECK_OK(apb_batchnorm(&g, x, gm, bt, &st, &y));
    for (int64_t i = 0; i < x->numel; i++) {
        int c = (int)((i / HW) % C);
        double want = gm->data[c] * (x->data[i] - rmean[c]) / sqrt(rvar[c] + 1e-5) + bt->data[c];
        CHECK_CLOSE(y->data[i], want, 1e-5, 1e-5);
    }
    /* eval backward treats the statistics as constants: dx = gamma * dy / sqrt(rv + eps) */
    x->requires_grad = gm->requires_grad = 1;
    CHECK_OK(apb_batchnorm(&g, x, gm, bt, &st, &y));
    float *dy = apb_graph_floats(&g, y->numel);
    apb_test_fill_normal(&r, dy, y->numel, 1.0f);
    CHECK_OK(apb_backward_from(&g, y, dy));
    for (int64_t i = 0; i < x->numel; i++) {
        int c = (int)((i / HW) % C);
        CHECK_CLOSE(x->grad[i], gm->data[c] * dy[i] / sqrt(rvar[c] + 1e-5), 1e-5, 1e-6);
    }
    CHECK(apb_batchnorm(&g, x, gm, bt, NULL, &y) == APB_EINVAL); /* eval needs running stats */
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

APB_TEST(test_batchnorm_train_and_eval)
{
    CHECK(check_bn(4, (int[]){3, 4, 3, 5}) == 0);
    CHECK(check_bn(2, (int[]){7, 6}) == 0);
    /* one value per channel cannot be normalised in training */
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 16);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, NULL);
    apb_var *x = apb_graph_new(&g, 2, (int[]){1, 3}, 1), *gm = apb_graph_new(&g, 1, (int[]){3}, 1);
    apb_var *y;
    CHECK(apb_batchnorm(&g, x, gm, gm, NULL, &y) == APB_ESHAPE);
    CHECK(strstr(apb_errmsg(), "batchnorm") && strstr(apb_errmsg(), "[1,3]"));
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

APB_TEST(test_softmax_xent_values)
{
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 16);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, NULL);
    float z[6] = {1, 2, 3, 0, 0, 0};
    apb_var *x = apb_graph_input(&g, z, 2, (int[]){2, 3}), *loss;
    int correct = -1;
    /* row 0: logsumexp(1,2,3) - 3; row 1: log 3 */
    double lse = 3.0 + log(1.0 + exp(-1.0) + exp(-2.0));
    CHECK_OK(apb_softmax_xent(&g, x, (int[]){2, 0}, 0.0f, &loss, &correct));
    CHECK(loss->ndim == 0 && loss->numel == 1);
    CHECK_CLOSE(loss->data[0], (lse - 3.0 + log(3.0)) / 2, 1e-6, 1e-7);
    CHECK(correct == 2); /* row 1 ties: the first maximum (class 0) counts */
    /* smoothing 0.1 over K = 3: targets 0.9*onehot + 0.1/3 */
    CHECK_OK(apb_softmax_xent(&g, x, (int[]){2, 0}, 0.1f, &loss, &correct));
    CHECK_CLOSE(loss->data[0], (lse - 0.9 * 3.0 - 0.1 / 3 * 6.0 + log(3.0)) / 2, 1e-6, 1e-7);
    CHECK_OK(apb_softmax_xent(&g, x, (int[]){0, 1}, 0.0f, &loss, &correct));
    CHECK(correct == 0);
    /* an out-of-range label is an error naming it */
    CHECK(apb_softmax_xent(&g, x, (int[]){1, 3}, 0.0f, &loss, NULL) == APB_EINVAL);
    CHECK_MSG(strstr(apb_errmsg(), "label 3") && strstr(apb_errmsg(), "sample 1"), "%s",
              apb_errmsg());
    CHECK(apb_softmax_xent(&g, x, (int[]){-1, 0}, 0.0f, &loss, NULL) == APB_EINVAL);
    /* gradient of the mean loss: (p - onehot)/N */
    x->requires_grad = 1;
    CHECK_OK(apb_softmax_xent(&g, x, (int[]){2, 0}, 0.0f, &loss, NULL));
    CHECK_OK(apb_backward(&g, loss));
    CHECK_CLOSE(x->grad[2], (exp(3.0 - lse) - 1.0) / 2, 1e-5, 1e-6);
    CHECK_CLOSE(x->grad[4], (1.0 / 3) / 2, 1e-5, 1e-6);
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

APB_TEST(test_eval_mode_records_nothing)
{
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 16);
    apb_rng r;
    apb_rng_seed(&r, 6);
    apb_graph g;
    apb_graph_init(&g, &step, 0, 0, &r); /* eval, no-grad */
    apb_var w, gm, bt;
    CHECK_OK(apb_param_init(&w, "w", 4, (int[]){4, 2, 3, 3}));
    CHECK_OK(apb_param_init(&gm, "g", 1, (int[]){4}));
    CHECK_OK(apb_param_init(&bt, "b", 1, (int[]){4}));
    float rm[4] = {0}, rv[4] = {1, 1, 1, 1};
    apb_bn_state st = {rm, rv, 0.1f, 1e-5f};
    apb_var *x = apb_graph_new(&g, 4, (int[]){2, 2, 6, 6}, 0), *h, *d;
    apb_test_fill_normal(&r, x->data, x->numel, 1.0f);
    CHECK_OK(apb_conv2d(&g, x, &w, NULL, 1, 1, &h));
    CHECK_OK(apb_batchnorm(&g, h, &gm, &bt, &st, &h));
    CHECK_OK(apb_relu(&g, h, &h));
    CHECK_OK(apb_dropout(&g, h, 0.5f, &d));
    CHECK(d == h); /* identity in eval */
    CHECK_OK(apb_maxpool2d(&g, h, 2, 2, 0, &h));
    CHECK(g.ntape == 0 && h->requires_grad == 0);
    CHECK(rm[0] == 0.0f && rv[0] == 1.0f); /* eval never touches running stats */
    CHECK(apb_backward_from(&g, h, h->data) == APB_EINVAL);
    /* shape errors name the op and the shapes */
    apb_var *w3 = apb_graph_new(&g, 4, (int[]){4, 3, 3, 3}, 1);
    CHECK(apb_conv2d(&g, x, w3, NULL, 1, 1, &h) == APB_ESHAPE);
    CHECK_MSG(strstr(apb_errmsg(), "conv2d") && strstr(apb_errmsg(), "[2,2,6,6]") &&
                  strstr(apb_errmsg(), "[4,3,3,3]"), "%s", apb_errmsg());
    CHECK(apb_add(&g, x, w3, &h) == APB_ESHAPE);
    apb_param_free(&w);
    apb_param_free(&gm);
    apb_param_free(&bt);
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

APB_TEST(test_dropout_training)
{
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 16);
    apb_rng r;
    apb_rng_seed(&r, 8);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    apb_var *x = apb_graph_new(&g, 2, (int[]){50, 100}, 0), *y, *y2;
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = 1.0f + (float)(i % 7);
    CHECK_OK(apb_dropout(&g, x, 0.25f, &y));
    int zeros = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        if (y->data[i] == 0.0f)
            zeros++;
        else
            CHECK_CLOSE(y->data[i], x->data[i] / 0.75, 1e-6, 0);
    }
    CHECK_MSG(zeros > 1100 && zeros < 1400, "%d of 5000 dropped, expected ~1250", zeros);
    apb_rng_seed(&r, 8);
    CHECK_OK(apb_dropout(&g, x, 0.25f, &y2));
    CHECK(memcmp(y->data, y2->data, sizeof(float) * 5000) == 0); /* mask from g->rng only */
    CHECK(apb_dropout(&g, x, 1.0f, &y) == APB_EINVAL);
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

/* THE PROOF: conv(1->8,3x3,p1)-BN-ReLU-maxpool2, conv(8->16,3x3,p1)-BN-ReLU-maxpool2,
 * flatten, linear(16*7*7 -> 10) memorises one fixed batch of 32 random 1x28x28
 * images with random labels (loss < 0.05 within 200 steps) under plain SGD. */
APB_TEST(test_cnn_overfits_one_batch)
{
    enum { B = 32, NP = 8 };
    apb_rng r;
    apb_rng_seed(&r, 2024);
    apb_var p[NP]; /* conv1.w, bn1.g, bn1.b, conv2.w, bn2.g, bn2.b, fc.w, fc.b */
    CHECK_OK(apb_param_init(&p[0], "conv1.weight", 4, (int[]){8, 1, 3, 3}));
    CHECK_OK(apb_param_init(&p[1], "bn1.weight", 1, (int[]){8}));
    CHECK_OK(apb_param_init(&p[2], "bn1.bias", 1, (int[]){8}));
    CHECK_OK(apb_param_init(&p[3], "conv2.weight", 4, (int[]){16, 8, 3, 3}));
    CHECK_OK(apb_param_init(&p[4], "bn2.weight", 1, (int[]){16}));
    CHECK_OK(apb_param_init(&p[5], "bn2.bias", 1, (int[]){16}));
    CHECK_OK(apb_param_init(&p[6], "fc.weight", 2, (int[]){10, 16 * 7 * 7}));
    CHECK_OK(apb_param_init(&p[7], "fc.bias", 1, (int[]){10}));
    apb_test_fill_normal(&r, p[0].data, p[0].numel, sqrtf(2.0f / 9));
    apb_test_fill_normal(&r, p[3].data, p[3].numel, sqrtf(2.0f / 72));
    apb_test_fill_normal(&r, p[6].data, p[6].numel, sqrtf(1.0f / 784));
    for (int c = 0; c < 16; c++)
        p[1].data[c % 8] = p[4].data[c] = 1.0f;
    float rm1[8] = {0}, rv1[8], rm2[16] = {0}, rv2[16];
    for (int c = 0; c < 16; c++)
        rv1[c % 8] = rv2[c] = 1.0f;
    apb_bn_state bn1 = {rm1, rv1, 0.1f, 1e-5f}, bn2 = {rm2, rv2, 0.1f, 1e-5f};

    float *images = malloc(sizeof(float) * B * 28 * 28);
    int labels[B];
    apb_test_fill_normal(&r, images, B * 28 * 28, 1.0f);
    for (int n = 0; n < B; n++)
        labels[n] = (int)apb_rng_below(&r, 10);

    apb_arena step;
    apb_arena_init(&step, "step", 8 << 20);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    float lr = 0.1f, loss0 = 0, lossv = 1e9f;
    int steps = 0, correct = 0;
    for (steps = 1; steps <= 200 && lossv >= 0.05f; steps++) {
        apb_graph_reset(&g);
        apb_var *x = apb_graph_input(&g, images, 4, (int[]){B, 1, 28, 28}), *h, *loss;
        CHECK_OK(apb_conv2d(&g, x, &p[0], NULL, 1, 1, &h));
        CHECK_OK(apb_batchnorm(&g, h, &p[1], &p[2], &bn1, &h));
        CHECK_OK(apb_relu(&g, h, &h));
        CHECK_OK(apb_maxpool2d(&g, h, 2, 2, 0, &h));
        CHECK_OK(apb_conv2d(&g, h, &p[3], NULL, 1, 1, &h));
        CHECK_OK(apb_batchnorm(&g, h, &p[4], &p[5], &bn2, &h));
        CHECK_OK(apb_relu(&g, h, &h));
        CHECK_OK(apb_maxpool2d(&g, h, 2, 2, 0, &h));
        CHECK_OK(apb_flatten(&g, h, &h));
        CHECK_OK(apb_linear(&g, h, &p[6], &p[7], &h));
        CHECK_OK(apb_softmax_xent(&g, h, labels, 0.0f, &loss, &correct));
        CHECK_OK(apb_backward(&g, loss));
        lossv = loss->data[0];
        if (steps == 1)
            loss0 = lossv;
        for (int k = 0; k < NP; k++)
            for (int64_t i = 0; i < p[k].numel; i++) {
                p[k].data[i] -= lr * p[k].grad[i];
                p[k].grad[i] = 0.0f;
            }
    }
    steps--;
    fprintf(stderr, "  cnn: loss %.3f -> %.4f in %d steps, %d/%d correct, step arena peak %zu KiB\n",
            loss0, lossv, steps, correct, B, step.peak >> 10);
    apb_graph_free(&g);
    apb_arena_free(&step);
    for (int k = 0; k < NP; k++)
        apb_param_free(&p[k]);
    free(images);
    CHECK(loss0 > 1.5f); /* starts near log(10): the labels are not trivially fit */
    CHECK_MSG(lossv < 0.05f, "loss %.4f after %d steps", lossv, steps);
    CHECK(correct == B);
    return 0;
}

/* ---- fused batchnorm + relu (layers/op_bn_relu.c) ---- */

/* One run of relu(batchnorm(x) [+ r]) on fixed data, fused or as separate ops,
 * forward in `training` mode and backward from a fixed dy. Copies y, the running
 * statistics after the step and dx, dgamma, dbeta, dr into out (malloc'd block:
 * y | rmean | rvar | dx | dgamma | dbeta | dr). When `count` is non-NULL it gets
 * the number of bn_relu ops on the tape. */
static float *bnr_run(int ndim, const int *dim, int training, int residual, int fused, int *count)
{
    apb_arena step;
    apb_arena_init(&step, "bnr", 8 << 20);
    /* fresh gradients land in NaN-poisoned memory: an unwritten element shows */
    float *poison = apb_arena_alloc(&step, (8 << 20) - 4096);
    for (size_t i = 0; poison && i < ((8 << 20) - 4096) / sizeof(float); i++)
        poison[i] = NAN;
    apb_arena_reset(&step);
    apb_rng r;
    apb_rng_seed(&r, 77);
    apb_graph g;
    apb_graph_init(&g, &step, training, 1, &r);
    int C = dim[1];
    apb_var *x = apb_graph_new(&g, ndim, dim, 0), *gm = apb_graph_new(&g, 1, &C, 0);
    apb_var *bt = apb_graph_new(&g, 1, &C, 0), *res = apb_graph_new(&g, ndim, dim, 0), *y;
    int64_t n = x->numel;
    float *rm = malloc(sizeof(float) * (size_t)C), *rv = malloc(sizeof(float) * (size_t)C);
    int HW = ndim == 4 ? dim[2] * dim[3] : 1;
    for (int64_t i = 0; i < n; i++) /* per-channel offsets: tests the shifted statistics */
        x->data[i] = 2.0f * apb_rng_normal(&r) + 3.0f * (float)((i / HW) % C) - 4.0f;
    apb_test_fill_normal(&r, res->data, n, 1.0f);
    for (int c = 0; c < C; c++) {
        gm->data[c] = 1.0f + 0.5f * apb_rng_normal(&r);
        bt->data[c] = 0.5f * apb_rng_normal(&r);
        rm[c] = 2.0f * (float)c - 3.0f;
        rv[c] = 0.5f + (float)c;
    }
    x->requires_grad = gm->requires_grad = bt->requires_grad = res->requires_grad = 1;
    apb_bn_state st = {rm, rv, 0.1f, 1e-5f};
    apb_status s;
    if (fused)
        s = residual ? apb_bn_add_relu(&g, x, gm, bt, res, &st, &y) : apb_bn_relu(&g, x, gm, bt, &st, &y);
    else {
        s = apb_batchnorm(&g, x, gm, bt, &st, &y);
        if (!s && residual)
            s = apb_add(&g, y, res, &y);
        if (!s)
            s = apb_relu(&g, y, &y);
    }
    float *dy = s ? NULL : apb_graph_floats(&g, n);
    for (int64_t i = 0; dy && i < n; i++)
        dy[i] = apb_rng_normal(&r);
    if (count) { /* before backward, which frees the tape's vars */
        *count = 0;
        for (int k = 0; k < g.ntape; k++)
            *count += g.tape[k]->op == &apb_op_bn_relu;
    }
    if (!s)
        s = apb_backward_from(&g, y, dy);
    float *out = NULL;
    if (!s) {
        out = malloc(sizeof(float) * (size_t)(4 * n + 4 * C));
        float *o = out;
        memcpy(o, y->data, sizeof(float) * (size_t)n), o += n;
        memcpy(o, rm, sizeof(float) * (size_t)C), o += C;
        memcpy(o, rv, sizeof(float) * (size_t)C), o += C;
        memcpy(o, x->grad, sizeof(float) * (size_t)n), o += n;
        memcpy(o, gm->grad, sizeof(float) * (size_t)C), o += C;
        memcpy(o, bt->grad, sizeof(float) * (size_t)C), o += C;
        if (residual)
            memcpy(o, res->grad, sizeof(float) * (size_t)n);
        else
            memset(o, 0, sizeof(float) * (size_t)n);
    } else {
        fprintf(stderr, "  bnr_run: %s\n", apb_errmsg());
    }
    apb_graph_free(&g);
    apb_arena_free(&step);
    free(rm);
    free(rv);
    return out;
}

/* Fused forward values, running statistics and gradients are bitwise those of
 * batchnorm (+ add) + relu: same arithmetic per element, same reduction order,
 * and the recomputed relu mask is exactly the relu's. Train and
 * eval, with and without residual, 2-d and 1-d, awkward sizes and one large
 * enough to run over channels in parallel, at 1 and 2 threads. */
APB_TEST(test_bn_relu_matches_unfused)
{
    static const int shapes[][5] = {{4, 3, 5, 7, 3}, {2, 9, 6, 0, 0}, {4, 16, 17, 17, 20}};
    int saved = apb_threads_get();
    for (int th = 1; th <= 2; th++) {
        apb_threads_set(th);
        for (int sh = 0; sh < 3; sh++) {
            int ndim = shapes[sh][0];
            const int *dim = shapes[sh] + 1;
            int64_t n = ndim == 4 ? (int64_t)dim[0] * dim[1] * dim[2] * dim[3] : (int64_t)dim[0] * dim[1];
            int C = dim[1];
            for (int mode = 0; mode < 4; mode++) {
                int training = mode & 1, residual = mode >> 1, cnt = -1;
                float *a = bnr_run(ndim, dim, training, residual, 1, &cnt);
                float *b = bnr_run(ndim, dim, training, residual, 0, NULL);
                CHECK(a && b);
                CHECK_MSG(cnt == 1, "fused run recorded %d bn_relu ops", cnt);
                int64_t fwd = n + 2 * C; /* y, running mean, running var */
                if (apb_test_close_f32(__FILE__, __LINE__, "bn_relu forward", a, b, (long)fwd, 0, 0) ||
                    apb_test_close_f32(__FILE__, __LINE__, "bn_relu gradients", a + fwd, b + fwd,
                                       (long)(2 * n + 2 * C), 0, 0)) {
                    fprintf(stderr, "  shape %d, training %d, residual %d, %d threads\n", sh,
                            training, residual, th);
                    apb_threads_set(saved);
                    return 1;
                }
                int relu_active = 0;
                for (int64_t i = 0; i < n; i++)
                    relu_active += a[i] > 0.0f;
                CHECK(relu_active > 0 && relu_active < n); /* both sides of the kink */
                free(a);
                free(b);
            }
        }
    }
    apb_threads_set(saved);
    return 0;
}

APB_TEST(test_bn_relu_errors)
{
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 16);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, NULL);
    apb_var *x = apb_graph_new(&g, 4, (int[]){2, 3, 2, 2}, 1), *gm = apb_graph_new(&g, 1, (int[]){3}, 1);
    apb_var *r = apb_graph_new(&g, 4, (int[]){2, 3, 2, 1}, 1), *y;
    CHECK(apb_bn_add_relu(&g, x, gm, gm, r, NULL, &y) == APB_ESHAPE);
    CHECK(strstr(apb_errmsg(), "bn_relu") && strstr(apb_errmsg(), "[2,3,2,1]"));
    CHECK(apb_bn_add_relu(&g, x, gm, gm, x, NULL, &y) == APB_EINVAL);
    apb_var *one = apb_graph_new(&g, 2, (int[]){1, 3}, 1);
    CHECK(apb_bn_relu(&g, one, gm, gm, NULL, &y) == APB_ESHAPE); /* one value per channel */
    g.training = 0;
    CHECK(apb_bn_relu(&g, x, gm, gm, NULL, &y) == APB_EINVAL); /* eval needs running stats */
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

/* apb_model_forward fuses BN + ReLU and BN + ADD + ReLU where the BN output has no
 * other reader; the fused model gives bitwise the same logits, running
 * statistics and parameter gradients as the same model run op by op (the
 * backward visits the ops in the same order, so every gradient sum is formed in
 * the same order), at 1 and 2 threads. */
static int model_fused_vs_unfused(const char *arch, int in_hw, int batch, int want_fused)
{
    apb_model_cfg cfg = {0};
    snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
    cfg.in_c = 3;
    cfg.in_h = cfg.in_w = in_hw;
    cfg.num_classes = 10;
    apb_model *m[2];
    CHECK_OK(apb_model_build(&cfg, 11, &m[0]));
    CHECK_OK(apb_model_build(&cfg, 11, &m[1]));
    m[1]->unfused = 1;
    int64_t in = (int64_t)batch * 3 * in_hw * in_hw;
    float *x = malloc(sizeof(float) * (size_t)in);
    int labels[64];
    apb_rng r;
    apb_rng_seed(&r, 3);
    apb_test_fill_normal(&r, x, in, 1.0f);
    for (int i = 0; i < batch; i++)
        labels[i] = i % 10;
    float *logits[2] = {0};
    int nfused[2] = {0}, bad = 0;
    for (int k = 0; k < 2; k++) {
        apb_arena step;
        apb_arena_init(&step, "step", 64 << 20);
        apb_graph g;
        apb_graph_init(&g, &step, 1, 1, &r);
        apb_var *y, *loss;
        CHECK_OK(apb_model_forward(m[k], &g, x, batch, &y));
        logits[k] = malloc(sizeof(float) * (size_t)y->numel);
        memcpy(logits[k], y->data, sizeof(float) * (size_t)y->numel);
        CHECK_OK(apb_softmax_xent(&g, y, labels, 0.0f, &loss, NULL));
        for (int t = 0; t < g.ntape; t++) /* (backward frees the tape's vars) */
            nfused[k] += g.tape[t]->op == &apb_op_bn_relu;
        CHECK_OK(apb_backward(&g, loss));
        apb_graph_free(&g);
        apb_arena_free(&step);
    }
    CHECK_MSG(nfused[0] == want_fused && nfused[1] == 0, "%s: %d fused ops (want %d), unfused %d",
              arch, nfused[0], want_fused, nfused[1]);
    bad |= apb_test_close_f32(__FILE__, __LINE__, arch, logits[0], logits[1], (long)batch * 10, 0, 0);
    apb_param_ref p0[256], p1[256];
    int np = apb_model_params(m[0], p0, 256);
    CHECK(np == apb_model_params(m[1], p1, 256) && np <= 256);
    for (int i = 0; i < np && !bad; i++)
        bad |= apb_test_close_f32(__FILE__, __LINE__, p0[i].var->name, p0[i].var->grad,
                                  p1[i].var->grad, (long)p0[i].var->numel, 0, 0);
    for (int i = 0; i < m[0]->nlayers && !bad; i++) {
        const apb_layer *a = &m[0]->layers[i], *b = &m[1]->layers[i];
        if (a->kind != APB_L_BN)
            continue;
        bad |= apb_test_close_f32(__FILE__, __LINE__, a->name, a->rmean, b->rmean, a->channels, 0, 0);
        bad |= apb_test_close_f32(__FILE__, __LINE__, a->name, a->rvar, b->rvar, a->channels, 0, 0);
    }
    free(logits[0]);
    free(logits[1]);
    free(x);
    apb_model_free(m[0]);
    apb_model_free(m[1]);
    return bad;
}

APB_TEST(test_model_bn_relu_fusion)
{
    int saved = apb_threads_get(), bad = 0;
    for (int th = 1; th <= 2 && !bad; th++) {
        apb_threads_set(th);
        /* resnet20: stem + 9 first-conv BNs fuse with their ReLU, 9 block outputs
         * fuse BN + ADD + ReLU; convnet: two conv BNs and the 1-d BN of the fc;
         * vgg-small: the BNs followed by a pool first (i odd) stay separate */
        bad |= model_fused_vs_unfused("resnet20", 8, 4, 19);
        bad |= model_fused_vs_unfused("convnet", 8, 6, 3);
        bad |= model_fused_vs_unfused("vgg-small", 8, 2, 3);
        if (bad)
            fprintf(stderr, "  at %d threads\n", th);
    }
    apb_threads_set(saved);
    return bad;
}
