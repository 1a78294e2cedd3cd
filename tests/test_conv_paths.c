/* test_conv_paths.c - conv2d backward on every lowering path against naive loops.
 *
 * op_conv2d.c computes dx three ways: the 1x1 fast path, col2im of W^T*dy (strided
 * convs, rectangular kernels) and, for stride-1 square kernels, an im2col of dy
 * times the flipped, transposed kernel. The generic gradient check only has a few
 * small cases; this test drives each path (serial and batch-parallel) on shapes
 * that hit the im2col "same" and general row code, and compares dx and dW, which
 * backward accumulates onto earlier values, with a direct double-precision sum.
 * dW runs through apb_sgemm_nt_batch (im2col), apb_sgemm_dw3 / apb_sgemm_dw3_same
 * (3x3 "same" and 3x3/2, M a multiple of 16 up to 64, AVX2 or AVX-512) or
 * apb_sgemm_nt_rows (other stride-1 "same" convs, shifted rows of padded planes,
 * AVX-512, M < 48): all are covered by the cases below on this machine's ISA, and
 * the products on every ISA by the last tests.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "cpu.h"
#include "ops.h"
#include "sgemm.h"
#include "test.h"
#include "threads.h"
#include "winograd.h"

/* dx[N,C,H,W] and dw[M,C,KH,KW] of conv(x, w) for upstream dy[N,M,OH,OW], and
 * the sums of the absolute values of their terms (sx, sw: the scale of the
 * rounding error any summation order or transform may make). */
static void conv_backward_naive(const float *x, const float *w, const float *dy, int N, int C,
                                int H, int W, int M, int KH, int KW, int S, int P, float *dx,
                                float *dw, double *sx, double *sw)
{
    int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1;
    double *ax = calloc((size_t)N * C * H * W, sizeof(double));
    double *aw = calloc((size_t)M * C * KH * KW, sizeof(double));
    memset(sx, 0, sizeof(double) * (size_t)N * C * H * W);
    memset(sw, 0, sizeof(double) * (size_t)M * C * KH * KW);
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double g = dy[((n * M + m) * OH + oh) * OW + ow];
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int ih = oh * S - P + kh, iw = ow * S - P + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                int xi = ((n * C + c) * H + ih) * W + iw;
                                int wi = ((m * C + c) * KH + kh) * KW + kw;
                                ax[xi] += g * w[wi];
                                aw[wi] += g * x[xi];
                                sx[xi] += fabs(g * w[wi]);
                                sw[wi] += fabs(g * x[xi]);
                            }
                }
    for (long i = 0; i < (long)N * C * H * W; i++)
        dx[i] = (float)ax[i];
    for (long i = 0; i < (long)M * C * KH * KW; i++)
        dw[i] = (float)aw[i];
    free(ax);
    free(aw);
}

/* got within rounding of want: 1e-4 absolute and relative, plus 4e-6 of the sum
 * of the absolute values of the terms (the Winograd paths' transforms round at
 * that scale: ~1e-6 of it, where the terms cancel; a wrong tap or missing term is
 * off by a whole term). Prints the first miss. */
static int close_scaled(const char *what, const float *got, const float *want, const double *abssum,
                        long n)
{
    for (long i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= 1e-4 + 1e-4 * fabs((double)want[i]) + 4e-6 * abssum[i])) {
            fprintf(stderr, "  %s[%ld] = %.9g, want %.9g (terms' |sum| %.3g)\n", what, i, got[i],
                    want[i], abssum[i]);
            return 1;
        }
    }
    return 0;
}

static int check_backward(int threads, int N, int C, int H, int W, int M, int KH, int KW, int S,
                          int P)
{
    apb_threads_set(threads);
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 20);
    apb_rng r;
    apb_rng_seed(&r, (uint64_t)(H * 1000 + KH * 10 + P));
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    apb_var *x = apb_graph_new(&g, 4, (int[]){N, C, H, W}, 0);
    apb_var *w = apb_graph_new(&g, 4, (int[]){M, C, KH, KW}, 0);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = apb_rng_normal(&r);
    for (int64_t i = 0; i < w->numel; i++)
        w->data[i] = 0.5f * apb_rng_normal(&r);
    x->requires_grad = w->requires_grad = 1;
    apb_var *y;
    CHECK_OK(apb_conv2d(&g, x, w, NULL, S, P, &y));
    /* the forward too: every lowering (im2col, padded planes, phase planes) */
    int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1, bad = 0;
    for (int n = 0; n < N && !bad; n++)
        for (int m = 0; m < M && !bad; m++)
            for (int oh = 0; oh < OH && !bad; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double want = 0, abssum = 0;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < KH; kh++)
                            for (int kw = 0; kw < KW; kw++) {
                                int ih = oh * S - P + kh, iw = ow * S - P + kw;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                                    double t = (double)w->data[((m * C + c) * KH + kh) * KW + kw] *
                                               x->data[((n * C + c) * H + ih) * W + iw];
                                    want += t;
                                    abssum += fabs(t);
                                }
                            }
                    double got = y->data[((n * M + m) * OH + oh) * OW + ow];
                    if (!(fabs(got - want) <= 1e-4 + 1e-4 * fabs(want) + 4e-6 * abssum)) {
                        fprintf(stderr, "  conv y[%d,%d,%d,%d] = %.7g, want %.7g\n", n, m, oh,
                                ow, got, want);
                        bad = 1;
                        break;
                    }
                }
    float *dy = apb_graph_floats(&g, y->numel);
    for (int64_t i = 0; i < y->numel; i++)
        dy[i] = apb_rng_normal(&r);
    /* pre-existing gradients: backward must add onto them */
    x->grad = apb_graph_floats(&g, x->numel);
    w->grad = apb_graph_floats(&g, w->numel);
    for (int64_t i = 0; i < x->numel; i++)
        x->grad[i] = 1.0f;
    for (int64_t i = 0; i < w->numel; i++)
        w->grad[i] = -2.0f;
    CHECK_OK(apb_backward_from(&g, y, dy));
    float *rdx = malloc(sizeof(float) * (size_t)x->numel);
    float *rdw = malloc(sizeof(float) * (size_t)w->numel);
    double *sx = malloc(sizeof(double) * (size_t)x->numel);
    double *sw = malloc(sizeof(double) * (size_t)w->numel);
    conv_backward_naive(x->data, w->data, dy, N, C, H, W, M, KH, KW, S, P, rdx, rdw, sx, sw);
    for (int64_t i = 0; i < x->numel; i++)
        rdx[i] += 1.0f;
    for (int64_t i = 0; i < w->numel; i++)
        rdw[i] -= 2.0f;
    bad |= close_scaled("conv dx", x->grad, rdx, sx, (long)x->numel);
    bad |= close_scaled("conv dw", w->grad, rdw, sw, (long)w->numel);
    if (bad)
        fprintf(stderr, "  threads=%d N=%d C=%d H=%d W=%d M=%d K=%dx%d S=%d P=%d\n", threads, N, C,
                H, W, M, KH, KW, S, P);
    free(rdx);
    free(rdw);
    free(sx);
    free(sw);
    apb_graph_free(&g);
    apb_arena_free(&step);
    return bad;
}

APB_TEST(conv2d_backward_every_path_matches_naive)
{
    /* {N, C, H, W, M, KH, KW, S, P} */
    static const int cases[][9] = {
        {3, 4, 7, 6, 5, 3, 3, 1, 1},  /* flipped-kernel dx, im2col "same" block */
        {3, 3, 6, 7, 4, 3, 3, 1, 0},  /* flipped, valid conv: dy im2col pads by 2 */
        {2, 2, 8, 5, 3, 5, 5, 1, 2},  /* flipped 5x5 */
        {2, 3, 5, 5, 2, 3, 3, 1, 2},  /* flipped, pad larger than half the kernel */
        {3, 2, 5, 6, 3, 2, 2, 1, 1},  /* flipped even kernel, general im2col rows */
        {3, 3, 6, 5, 4, 3, 2, 1, 1},  /* rectangular: col2im path */
        {3, 4, 9, 8, 6, 3, 3, 2, 1},  /* strided: col2im path */
        {3, 5, 4, 4, 3, 1, 1, 1, 0},  /* 1x1 fast path */
        {2, 17, 8, 8, 16, 3, 3, 1, 1}, /* M = 16: 8-row AVX-512 GEMM panels, dW by dw3 */
        {5, 6, 6, 7, 32, 3, 3, 1, 1},  /* dw3, M = 32: groups of 5 images, ragged rows */
        {3, 3, 5, 4, 64, 3, 3, 1, 1},  /* dw3, M = 64 */
        {2, 2, 9, 3, 48, 3, 3, 1, 1},  /* dw3, M = 48 */
        {2, 3, 6, 6, 16, 5, 5, 1, 2},  /* 5x5 "same", M = 16: dot products, not dw3 */
        {4, 3, 20, 20, 5, 3, 3, 1, 1}, /* dW groups of 3 images + a ragged group of 1 */
        {5, 2, 20, 20, 3, 3, 3, 2, 1}, /* strided dW groups (im2col + nt_batch) */
        {3, 5, 9, 8, 16, 3, 3, 2, 1},  /* 3x3/2: phase planes, dW by dw3, odd height */
        {4, 3, 10, 11, 32, 3, 3, 2, 1}, /* 3x3/2: phase planes, groups of 4, odd width */
        {2, 3, 16, 16, 16, 3, 3, 1, 1}, /* 16-wide rows: in-place kernel, streamed y, dx */
        {2, 4, 32, 32, 16, 3, 3, 2, 1}, /* 3x3/2 to 16-wide rows: in place, streamed */
        {2, 128, 7, 6, 128, 3, 3, 1, 1}, /* Winograd forward and dx: odd height */
        {3, 136, 5, 9, 128, 3, 3, 1, 1}, /* Winograd, odd width (one chunk: 35 tile rows) */
        {1, 128, 1, 2, 144, 3, 3, 1, 1}, /* Winograd on a 1x2 map: one partial tile */
        {1, 64, 32, 32, 64, 3, 3, 1, 1}, /* 64 channels, 1024 pixels: Winograd y, dx; dW by dw3 */
    };
    int saved = apb_threads_get(), bad = 0;
    for (int t = 1; t <= 2; t++)
        for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
            const int *c = cases[i];
            bad |= check_backward(t, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]);
        }
    apb_threads_set(saved);
    CHECK(!bad);
    return 0;
}

/* apb_sgemm_nt_batch / apb_sgemm_nt_rows (the dW products) against apb_sgemm_ref on
 * awkward sizes (M not a multiple of 4, N not of 6, K not of 16, M >= 48 fallback),
 * misaligned pointers, on every ISA level this machine has; they accumulate. */
APB_TEST(sgemm_nt_batch_matches_reference)
{
    static const int cases[][4] = {{1, 1, 1, 1}, {5, 7, 17, 3}, {16, 13, 33, 2},
                                   {3, 70, 100, 1}, {50, 9, 40, 2}};
    apb_isa saved = apb_isa_active();
    int bad = 0;
    for (int isa = APB_ISA_REF; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
            int M = cases[ci][0], N = cases[ci][1], K = cases[ci][2], nb = cases[ci][3];
            int lda = K + 3, ldb = K + 1;
            long sa = (long)M * lda + 5, sb = (long)N * ldb + 2;
            float *A = malloc(sizeof(float) * (size_t)(nb * sa + 1));
            float *B = malloc(sizeof(float) * (size_t)(nb * sb + 1));
            float *C1 = malloc(sizeof(float) * (size_t)M * N * 2 + 4);
            float *C2 = C1 + (size_t)M * N + 1, *R = malloc(sizeof(float) * (size_t)M * N);
            long *off = malloc(sizeof(long) * (size_t)N);
            apb_rng r;
            apb_rng_seed(&r, (uint64_t)(ci + 10 * isa));
            for (long i = 0; i < nb * sa + 1; i++)
                A[i] = apb_rng_normal(&r);
            for (long i = 0; i < nb * sb + 1; i++)
                B[i] = apb_rng_normal(&r);
            for (int i = 0; i < M * N; i++) /* C2 starts column-reversed, like its result */
                C1[i] = R[i] = 0.25f * (float)(i % 5);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++)
                    C2[i * N + j] = R[i * N + N - 1 - j];
            for (int b = 0; b < nb; b++)
                apb_sgemm_ref(0, 1, M, N, K, 0.5f, A + 1 + b * sa, lda, B + 1 + b * sb, ldb, 1.0f,
                              R, N);
            /* rows of B in reverse order through the offset table */
            for (int j = 0; j < N; j++)
                off[j] = (long)(N - 1 - j) * ldb;
            apb_sgemm_nt_batch(M, N, K, nb, 0.5f, A + 1, lda, sa, B + 1, ldb, sb, C1, N);
            apb_sgemm_nt_rows(M, N, K, nb, 0.5f, A + 1, lda, sa, B + 1, off, sb, C2, N);
            for (int i = 0; i < M; i++) /* undo the reversal */
                for (int j = 0; j < N / 2; j++) {
                    float tmp = C2[i * N + j];
                    C2[i * N + j] = C2[i * N + N - 1 - j];
                    C2[i * N + N - 1 - j] = tmp;
                }
            bad |= apb_test_close_f32(__FILE__, __LINE__, "nt_batch", C1, R, (long)M * N, 1e-4,
                                      1e-4);
            bad |= apb_test_close_f32(__FILE__, __LINE__, "nt_rows", C2, R, (long)M * N, 1e-4,
                                      1e-4);
            if (bad)
                fprintf(stderr, "  isa=%d M=%d N=%d K=%d nb=%d\n", isa, M, N, K, nb);
            free(A);
            free(B);
            free(C1);
            free(R);
            free(off);
        }
    }
    CHECK_OK(apb_isa_force(saved));
    CHECK(!bad);
    return 0;
}

/* apb_sgemm_dw3 (the 3x3 weight gradient) against a double-precision sum on every
 * ISA level: M on the fast path (16..64) and off it (8, 20), row counts that leave
 * a ragged last tile, pixel counts with and without a 16-column tail for the
 * transpose, several images, stride-1 and stride-2 (phase plane) taps; it
 * accumulates. Also: 2 threads give bitwise the result of 1. */
static double dw3_ref(int m, int j, int M, int nb, int OH, int OW, const float *dy, long sdy,
                      const float *X, const long *roff, long sx, long Wp, const long *tap)
{
    double s = 0;
    for (int b = 0; b < nb; b++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                s += (double)dy[b * sdy + ((long)m * OH + oh) * OW + ow] *
                     X[b * sx + roff[j / 3] + (long)oh * Wp + ow + tap[j % 3]];
    return s;
}

static int dw3_case(int M, int R, int nb, int OH, int OW, int phase, uint64_t seed,
                    float *out_first)
{
    long Wp = OW + 2, plane = (long)(OH + 2) * Wp + 2, sx = (R + 3) * plane + 3;
    /* stride-1 taps, or the stride-2 phase-plane taps {0, plane, 1} */
    long t1 = phase ? plane : 1, t2 = phase ? 1 : 2, tap[3] = {0, t1, t2};
    long P = (long)OH * OW, sdy = M * P + 1, J = 3L * R, ldc = J + 2;
    float *X = malloc(sizeof(float) * (size_t)(nb * sx));
    float *dy = malloc(sizeof(float) * (size_t)(nb * sdy));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc));
    long *roff = malloc(sizeof(long) * (size_t)R);
    apb_rng r;
    apb_rng_seed(&r, seed);
    for (long i = 0; i < nb * sx; i++)
        X[i] = apb_rng_normal(&r);
    for (long i = 0; i < nb * sdy; i++)
        dy[i] = apb_rng_normal(&r);
    for (long i = 0; i < M * ldc; i++)
        C[i] = 0.125f * (float)(i % 7);
    for (int q = 0; q < R; q++) /* rows in a scrambled order, as offsets allow */
        roff[q] = ((q * 5) % (R + 2)) * plane + (q % 3) * Wp;
    apb_sgemm_dw3(M, R, nb, OH, OW, 0.5f, dy, sdy, X, roff, sx, Wp, t1, t2, C, (int)ldc);
    int bad = 0;
    for (int m = 0; m < M && !bad; m++)
        for (long j = 0; j < ldc; j++) {
            double want = 0.125 * (double)((m * ldc + j) % 7);
            if (j < J)
                want += 0.5 * dw3_ref(m, (int)j, M, nb, OH, OW, dy, sdy, X, roff, sx, Wp, tap);
            double got = C[m * ldc + j], tol = 1e-4 + 1e-4 * (want < 0 ? -want : want);
            if (!(got - want <= tol && want - got <= tol)) {
                fprintf(stderr,
                        "  dw3 isa=%s M=%d R=%d nb=%d OH=%d OW=%d phase=%d: C[%d,%ld] = %.7g, "
                        "want %.7g\n",
                        apb_isa_name(apb_isa_active()), M, R, nb, OH, OW, phase, m, j, got, want);
                bad = 1;
                break;
            }
        }
    if (out_first)
        memcpy(out_first, C, sizeof(float) * (size_t)(M * ldc));
    free(X), free(dy), free(C), free(roff);
    return bad;
}

APB_TEST(sgemm_dw3_matches_reference)
{
    /* {M, R, nb, OH, OW} */
    static const int cases[][5] = {{16, 9, 1, 5, 17}, {16, 1, 2, 1, 1},  {32, 5, 3, 3, 7},
                                   {48, 3, 2, 2, 16}, {64, 7, 2, 4, 4},  {64, 2, 1, 16, 1},
                                   {8, 4, 2, 3, 5},   {20, 3, 1, 2, 9},  {16, 17, 1, 4, 20}};
    apb_isa saved = apb_isa_active();
    int bad = 0;
    for (int isa = APB_ISA_REF; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
            const int *c = cases[ci];
            for (int ph = 0; ph < 2; ph++)
                bad |= dw3_case(c[0], c[1], c[2], c[3], c[4], ph, (uint64_t)(ci + 100 * isa), NULL);
        }
    }
    CHECK_OK(apb_isa_force(saved));
    /* above the threading threshold: 1 and 2 threads agree bit for bit */
    int st = apb_threads_get(), M = 32, R = 48;
    size_t n = (size_t)M * (3 * R + 2);
    float *c1 = malloc(sizeof(float) * n), *c2 = malloc(sizeof(float) * n);
    apb_threads_set(1);
    bad |= dw3_case(M, R, 2, 16, 16, 0, 7, c1);
    apb_threads_set(2);
    bad |= dw3_case(M, R, 2, 16, 16, 0, 7, c2);
    apb_threads_set(st);
    int same = memcmp(c1, c2, sizeof(float) * n) == 0;
    free(c1), free(c2);
    CHECK(same);
    CHECK(!bad);
    return 0;
}

/* apb_sgemm_dw3_same (3x3 pad 1 from the unpadded input) against a double sum on
 * every ISA level: maps of width and height 1, 2, 3 and odd sizes (the edge
 * pixels run separately), all fast-path M and two portable ones, several images;
 * it accumulates. */
APB_TEST(sgemm_dw3_same_matches_reference)
{
    /* {M, C, nb, H, W} */
    static const int cases[][5] = {{16, 3, 1, 5, 7},  {16, 1, 2, 1, 1}, {32, 2, 3, 2, 2},
                                   {48, 1, 2, 3, 3},  {64, 2, 2, 4, 9}, {64, 1, 1, 1, 5},
                                   {16, 6, 1, 8, 32}, {8, 2, 2, 3, 4},  {20, 1, 1, 6, 1},
                                   {32, 3, 2, 7, 6}};
    apb_isa saved = apb_isa_active();
    int bad = 0;
    for (int isa = APB_ISA_REF; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]) && !bad; ci++) {
            int M = cases[ci][0], C = cases[ci][1], nb = cases[ci][2], H = cases[ci][3],
                W = cases[ci][4];
            long P = (long)H * W, sx = C * P + 3, sdy = M * P + 1, ldc = 27L * C / 3 + 1;
            float *x = malloc(sizeof(float) * (size_t)(nb * sx));
            float *dy = malloc(sizeof(float) * (size_t)(nb * sdy));
            float *Cw = malloc(sizeof(float) * (size_t)(M * ldc));
            apb_rng r;
            apb_rng_seed(&r, (uint64_t)(ci + 31 * isa));
            for (long i = 0; i < nb * sx; i++)
                x[i] = apb_rng_normal(&r);
            for (long i = 0; i < nb * sdy; i++)
                dy[i] = apb_rng_normal(&r);
            for (long i = 0; i < M * ldc; i++)
                Cw[i] = 0.25f * (float)(i % 3);
            apb_sgemm_dw3_same(M, C, nb, H, W, 0.5f, dy, sdy, x, sx, Cw, (int)ldc);
            for (int m = 0; m < M && !bad; m++)
                for (int j = 0; j < ldc; j++) {
                    double want = 0.25 * (double)((m * ldc + j) % 3);
                    if (j < 9 * C) {
                        int c = j / 9, kh = j / 3 % 3, kw = j % 3;
                        double sum = 0;
                        for (int b = 0; b < nb; b++)
                            for (int oh = 0; oh < H; oh++)
                                for (int ow = 0; ow < W; ow++) {
                                    int ih = oh + kh - 1, iw = ow + kw - 1;
                                    if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                        sum += (double)dy[b * sdy + m * P + oh * W + ow] *
                                               x[b * sx + c * P + ih * W + iw];
                                }
                        want += 0.5 * sum;
                    }
                    double got = Cw[m * ldc + j];
                    if (!(fabs(got - want) <= 1e-4 + 1e-4 * fabs(want))) {
                        fprintf(stderr,
                                "  dw3_same isa=%s M=%d C=%d nb=%d H=%d W=%d: C[%d,%d] = %.7g, "
                                "want %.7g\n",
                                apb_isa_name(apb_isa_active()), M, C, nb, H, W, m, j, got, want);
                        bad = 1;
                        break;
                    }
                }
            free(x), free(dy), free(Cw);
        }
    }
    CHECK_OK(apb_isa_force(saved));
    CHECK(!bad);
    return 0;
}

/* ---- the AVX2 dw3 tiles against the plain loops ------------------------------ */

/* apb_sgemm_dw3 (stride-1 or phase-plane taps, as dw3_case) at the active ISA level
 * on inputs from `seed`, every operand one float off its allocation's alignment;
 * C is [M][ldc], ldc = 3R + 3, and the columns past 3R must keep their start
 * values (checked by dw_untouched). */
/* Random x[nx] and dy[ndy] (malloc'd, seeded), C[nc] = 0.125 * (i % 7). */
static void dw3_operands(long nx, long ndy, uint64_t seed, float **x, float **dy, float *C, long nc)
{
    apb_rng r;
    apb_rng_seed(&r, seed);
    *x = malloc(sizeof(float) * (size_t)nx);
    *dy = malloc(sizeof(float) * (size_t)ndy);
    for (long i = 0; i < nx; i++)
        (*x)[i] = apb_rng_normal(&r);
    for (long i = 0; i < ndy; i++)
        (*dy)[i] = apb_rng_normal(&r);
    for (long i = 0; i < nc; i++)
        C[i] = 0.125f * (float)(i % 7);
}

static void dw3_run(int M, int R, int nb, int OH, int OW, int phase, uint64_t seed, float *C)
{
    long Wp = OW + 2, plane = (long)(OH + 2) * Wp + 2, sx = (R + 3) * plane + 3;
    long t1 = phase ? plane : 1, t2 = phase ? 1 : 2;
    long P = (long)OH * OW, sdy = M * P + 1, ldc = 3L * R + 3;
    long *roff = malloc(sizeof(long) * (size_t)R);
    float *X, *dy;
    dw3_operands(nb * sx + 1, nb * sdy + 1, seed, &X, &dy, C, M * ldc);
    for (int q = 0; q < R; q++) /* scrambled rows, as in dw3_case */
        roff[q] = ((q * 5) % (R + 2)) * plane + (q % 3) * Wp;
    apb_sgemm_dw3(M, R, nb, OH, OW, 0.5f, dy + 1, sdy, X + 1, roff, sx, Wp, t1, t2, C, (int)ldc);
    free(X), free(dy), free(roff);
}

/* apb_sgemm_dw3_same likewise; Cw is [M][9C + 3]. */
static void dw3_same_run(int M, int C, int nb, int H, int W, uint64_t seed, float *Cw)
{
    long P = (long)H * W, sx = C * P + 3, sdy = M * P + 1, ldc = 9L * C + 3;
    float *x, *dy;
    dw3_operands(nb * sx + 1, nb * sdy + 1, seed, &x, &dy, Cw, M * ldc);
    apb_sgemm_dw3_same(M, C, nb, H, W, 0.5f, dy + 1, sdy, x + 1, sx, Cw, (int)ldc);
    free(x), free(dy);
}

/* 1 when a column j >= J of C[M][ldc] lost its start value 0.125 * (i % 7). */
static int dw_untouched(const float *C, int M, long J, long ldc, const char *what)
{
    for (long i = 0; i < M * ldc; i++)
        if (i % ldc >= J && C[i] != 0.125f * (float)(i % 7)) {
            fprintf(stderr, "  %s: C[%ld,%ld] = %.7g written past column %ld\n", what, i / ldc,
                    i % ldc, C[i], J);
            return 1;
        }
    return 0;
}

/* The AVX2 tiles (16 channels x 2 kernel rows, sgemm_dw3_avx2.c) of apb_sgemm_dw3
 * and apb_sgemm_dw3_same against the REF level's plain loops on the same inputs:
 * every fast-path M (1 to 4 channel blocks), odd R (a last tile of one row),
 * several images, rows not a multiple of 8 wide (1 wide included), stride-1 and
 * phase-plane taps, misaligned operands, nothing written past the 3R columns.
 * The loops and the tiles sum each element in the same order (b, oh, ow), so only
 * the rounding of the fused multiply-add differs. Then, above the threading
 * threshold: 2 threads give bitwise the result of 1. Skipped without AVX2. */
APB_TEST(sgemm_dw3_avx2_matches_plain_loops)
{
    if (apb_isa_detected() < APB_ISA_AVX2) {
        fprintf(stderr, "  skipped: this CPU has no AVX2\n");
        return APB_TEST_SKIP;
    }
    /* {M, R, nb, OH, OW} for apb_sgemm_dw3 */
    static const int c3[][5] = {{16, 7, 3, 5, 7},  {32, 5, 2, 9, 13}, {48, 3, 1, 11, 3},
                                {64, 9, 2, 3, 10}, {16, 2, 4, 1, 1},  {32, 1, 2, 7, 1},
                                {48, 8, 2, 6, 15}, {64, 1, 1, 2, 17}};
    /* {M, C, nb, H, W} for apb_sgemm_dw3_same */
    static const int cs[][5] = {{16, 3, 2, 7, 9},  {32, 2, 3, 5, 13}, {48, 1, 2, 1, 6},
                                {64, 2, 1, 11, 1}, {16, 1, 3, 1, 1},  {32, 3, 1, 2, 2},
                                {48, 2, 2, 9, 10}, {64, 3, 2, 6, 15}};
    apb_isa saved = apb_isa_active();
    int bad = 0;
    for (int ci = 0; ci < (int)(sizeof c3 / sizeof c3[0]); ci++)
        for (int ph = 0; ph < 2; ph++) {
            int M = c3[ci][0], R = c3[ci][1], nb = c3[ci][2], OH = c3[ci][3], OW = c3[ci][4];
            long ldc = 3L * R + 3, n = M * ldc;
            float *want = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
            CHECK_OK(apb_isa_force(APB_ISA_REF));
            CHECK(!apb_sgemm_dw3_fast(M)); /* the reference is the plain loops */
            dw3_run(M, R, nb, OH, OW, ph, (uint64_t)(ci + 7), want);
            CHECK_OK(apb_isa_force(APB_ISA_AVX2));
            CHECK_MSG(apb_sgemm_dw3_fast(M), "M=%d not on the AVX2 fast path", M);
            dw3_run(M, R, nb, OH, OW, ph, (uint64_t)(ci + 7), got);
            int b = apb_test_close_f32(__FILE__, __LINE__, "dw3 avx2", got, want, n, 1e-5, 1e-5);
            b |= dw_untouched(got, M, 3L * R, ldc, "dw3 avx2");
            if (b)
                fprintf(stderr, "  M=%d R=%d nb=%d OH=%d OW=%d phase=%d\n", M, R, nb, OH, OW, ph);
            bad |= b;
            free(want), free(got);
        }
    for (int ci = 0; ci < (int)(sizeof cs / sizeof cs[0]); ci++) {
        int M = cs[ci][0], C = cs[ci][1], nb = cs[ci][2], H = cs[ci][3], W = cs[ci][4];
        long ldc = 9L * C + 3, n = M * ldc;
        float *want = malloc(sizeof(float) * (size_t)n), *got = malloc(sizeof(float) * (size_t)n);
        CHECK_OK(apb_isa_force(APB_ISA_REF));
        dw3_same_run(M, C, nb, H, W, (uint64_t)(ci + 50), want);
        CHECK_OK(apb_isa_force(APB_ISA_AVX2));
        dw3_same_run(M, C, nb, H, W, (uint64_t)(ci + 50), got);
        int b = apb_test_close_f32(__FILE__, __LINE__, "dw3_same avx2", got, want, n, 1e-5, 1e-5);
        b |= dw_untouched(got, M, 9L * C, ldc, "dw3_same avx2");
        if (b)
            fprintf(stderr, "  M=%d C=%d nb=%d H=%d W=%d\n", M, C, nb, H, W);
        bad |= b;
        free(want), free(got);
    }
    /* Thread counts. Above team_size's 4e6 flops, so 2 threads split the tiles:
     * dw3 M = 48 (3 channel blocks x 11 row pairs, the split inside a block),
     * dw3_same M = 64 (4 blocks x 8 row pairs). Each also against the loops. */
    int st = apb_threads_get();
    for (int k = 0; k < 2; k++) {
        int M = k ? 64 : 48;
        long ldc = k ? 9L * 5 + 3 : 3L * 21 + 3, n = M * ldc;
        float *c[3];
        for (int i = 0; i < 3; i++)
            c[i] = malloc(sizeof(float) * (size_t)n);
        for (int i = 0; i < 3; i++) { /* REF 1 thread, AVX2 1 thread, AVX2 2 threads */
            CHECK_OK(apb_isa_force(i ? APB_ISA_AVX2 : APB_ISA_REF));
            apb_threads_set(i == 2 ? 2 : 1);
            if (k)
                dw3_same_run(M, 5, 3, 17, 17, 99, c[i]);
            else
                dw3_run(M, 21, 3, 16, 16, 1, 98, c[i]);
        }
        apb_threads_set(st);
        bad |= apb_test_close_f32(__FILE__, __LINE__, k ? "dw3_same 1 thread" : "dw3 1 thread",
                                  c[1], c[0], n, 1e-5, 1e-5);
        if (memcmp(c[1], c[2], sizeof(float) * (size_t)n) != 0) {
            fprintf(stderr, "  %s: 2 threads differ from 1 (bitwise)\n", k ? "dw3_same" : "dw3");
            bad = 1;
        }
        for (int i = 0; i < 3; i++)
            free(c[i]);
    }
    CHECK_OK(apb_isa_force(saved));
    CHECK(!bad);
    return 0;
}

/* y of one 3x3 "same" conv of x[N][C][H][W] with w[M][C][3][3], a fresh graph in
 * training (or eval) mode, threads as given; also dx for dy = 1 in training. */
static float *wino_run(int training, int threads, int N, int C, int H, int W, int M,
                       const float *xv, const float *wv, float **dx, float **dw)
{
    apb_threads_set(threads);
    apb_arena step;
    apb_arena_init(&step, "t", 1 << 20);
    apb_graph g;
    apb_graph_init(&g, &step, training, training, NULL);
    apb_var *x = apb_graph_new(&g, 4, (int[]){N, C, H, W}, 0);
    apb_var *w = apb_graph_new(&g, 4, (int[]){M, C, 3, 3}, 0);
    memcpy(x->data, xv, sizeof(float) * (size_t)x->numel);
    memcpy(w->data, wv, sizeof(float) * (size_t)w->numel);
    x->requires_grad = w->requires_grad = training;
    apb_var *y = NULL;
    float *out = NULL;
    if (apb_conv2d(&g, x, w, NULL, 1, 1, &y) == APB_OK) {
        out = malloc(sizeof(float) * (size_t)y->numel);
        memcpy(out, y->data, sizeof(float) * (size_t)y->numel);
        if (training && dx) {
            float *dy = apb_graph_floats(&g, y->numel);
            for (int64_t i = 0; i < y->numel; i++)
                dy[i] = (float)((i % 7) - 3);
            *dx = NULL;
            if (dw)
                *dw = NULL;
            if (apb_backward_from(&g, y, dy) == APB_OK) {
                *dx = malloc(sizeof(float) * (size_t)x->numel);
                memcpy(*dx, x->grad, sizeof(float) * (size_t)x->numel);
                if (dw) {
                    *dw = malloc(sizeof(float) * (size_t)w->numel);
                    memcpy(*dw, w->grad, sizeof(float) * (size_t)w->numel);
                }
            }
        }
    }
    apb_graph_free(&g);
    apb_arena_free(&step);
    return out;
}

/* Winograd (training-mode wide "same" convs): the forward and dx do not depend on
 * the thread count (bitwise); it really runs (training differs from eval in the
 * last bits, and equals the direct path when turned off); eval mode never uses
 * it (bitwise the direct path, which the runtime equals). */
APB_TEST(conv2d_winograd_threads_and_modes)
{
    enum { N = 3, C = 128, H = 9, W = 10, M = 128 };
    long nx = (long)N * C * H * W, nw = (long)M * C * 9, ny = (long)N * M * H * W;
    float *xv = malloc(sizeof(float) * (size_t)nx), *wv = malloc(sizeof(float) * (size_t)nw);
    apb_rng r;
    apb_rng_seed(&r, 44);
    apb_test_fill_normal(&r, xv, nx, 1.0f);
    apb_test_fill_normal(&r, wv, nw, 0.05f);
    int saved = apb_threads_get(), was = apb_wino_enable(1), bad = 0;
    float *dx1 = NULL, *dx2 = NULL, *dxd = NULL, *dw1 = NULL, *dw2 = NULL, *dwd = NULL;
    float *y1 = wino_run(1, 1, N, C, H, W, M, xv, wv, &dx1, &dw1);
    float *y2 = wino_run(1, 2, N, C, H, W, M, xv, wv, &dx2, &dw2);
    float *ye = wino_run(0, 2, N, C, H, W, M, xv, wv, NULL, NULL);
    apb_wino_enable(0);
    float *yd = wino_run(1, 2, N, C, H, W, M, xv, wv, &dxd, &dwd);
    float *yde = wino_run(0, 1, N, C, H, W, M, xv, wv, NULL, NULL);
    apb_wino_enable(was);
    apb_threads_set(saved);
    if (!y1 || !y2 || !ye || !yd || !yde || !dx1 || !dx2 || !dxd || !dw1 || !dw2 || !dwd) {
        bad = 1;
    } else {
        bad |= apb_test_close_f32(__FILE__, __LINE__, "winograd y, 2 threads vs 1", y2, y1, ny, 0, 0);
        bad |= apb_test_close_f32(__FILE__, __LINE__, "winograd dx, 2 threads vs 1", dx2, dx1, nx, 0, 0);
        bad |= apb_test_close_f32(__FILE__, __LINE__, "eval y = direct", ye, yd, ny, 0, 0);
        bad |= apb_test_close_f32(__FILE__, __LINE__, "eval y, 1 thread = direct", yde, yd, ny, 0, 0);
        bad |= apb_test_close_f32(__FILE__, __LINE__, "winograd y ~ direct", y1, yd, ny, 1e-4, 1e-4);
        bad |= apb_test_close_f32(__FILE__, __LINE__, "winograd dx ~ direct", dx1, dxd, nx, 1e-4, 1e-4);
        bad |= apb_test_close_f32(__FILE__, __LINE__, "winograd dw, 2 threads vs 1", dw2, dw1, nw, 0, 0);
        /* dW sums 3 * 9 * 10 products of |dy| <= 3 per element, about 300 in
         * absolute value: fp32 rounding of that scale (F(3x3, 4x4)'s transforms
         * multiply by up to 8 and divide by 24) is a few 1e-4 on sums that cancel */
        bad |= apb_test_close_f32(__FILE__, __LINE__, "winograd dw ~ direct", dw1, dwd, nw, 1e-3, 5e-4);
        long diff = 0, dwdiff = 0;
        for (long i = 0; i < nw; i++)
            dwdiff += dw1[i] != dwd[i];
        if (dwdiff == 0) {
            fprintf(stderr, "  training dw is bitwise the direct path: Winograd dW did not run\n");
            bad = 1;
        }
        for (long i = 0; i < ny; i++)
            diff += y1[i] != yd[i];
        if (diff == 0) {
            fprintf(stderr, "  training y is bitwise the direct path: Winograd did not run\n");
            bad = 1;
        }
    }
    free(y1), free(y2), free(ye), free(yd), free(yde), free(dx1), free(dx2), free(dxd);
    free(dw1), free(dw2), free(dwd);
    /* close to the direct path at every ISA level here (the GEMMs differ) */
    apb_isa isa0 = apb_isa_active();
    for (int isa = APB_ISA_REF; isa <= (int)apb_isa_detected() && !bad; isa++) {
        if (apb_isa_force((apb_isa)isa) != APB_OK)
            continue;
        apb_wino_enable(1);
        float *dxw = NULL, *dxn = NULL, *dww = NULL, *dwn = NULL;
        float *yw = wino_run(1, 2, N, C, H, W, M, xv, wv, &dxw, &dww);
        apb_wino_enable(0);
        float *yn = wino_run(1, 2, N, C, H, W, M, xv, wv, &dxn, &dwn);
        char what[64];
        snprintf(what, sizeof what, "winograd y at %s", apb_isa_name((apb_isa)isa));
        bad |= !yw || !yn || !dxw || !dxn || !dww || !dwn ||
               apb_test_close_f32(__FILE__, __LINE__, what, yw, yn, ny, 1e-4, 1e-4) ||
               apb_test_close_f32(__FILE__, __LINE__, what, dxw, dxn, nx, 1e-4, 1e-4) ||
               apb_test_close_f32(__FILE__, __LINE__, what, dww, dwn, nw, 1e-3, 5e-4);
        free(yw), free(yn), free(dxw), free(dxn), free(dww), free(dwn);
    }
    apb_isa_force(isa0);
    apb_wino_enable(was);
    apb_threads_set(saved);
    free(xv), free(wv);
    CHECK(!bad);
    return 0;
}

/* apb_wino_conv_packed (the runtime's opt-in path, U packed once at load by
 * apb_wino_pack) gives apb_wino_conv's bits (training's path, U packed per call)
 * at every ISA level, for = and +=, odd sizes, one and two threads; both are
 * within rounding of a plain 3x3 correlation (so a packing both share is right).
 * Two chunks (14336 / 130 = 110 tiles: 27 tile rows of 4 tiles; 14 images of 2
 * tile rows), the second starting inside image 13, so two threads really run. */
APB_TEST(winograd_packed_weights_same_bits)
{
    enum { N = 14, C = 130, H = 7, W = 13, M = 129 };
    long nx = (long)N * C * H * W, ny = (long)N * M * H * W;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * M * C * 9);
    float *U = malloc(sizeof(float) * apb_wino_u_floats(M, C));
    float *y1 = malloc(sizeof(float) * ny), *y2 = malloc(sizeof(float) * ny);
    size_t wf = 2 * apb_wino_work_floats(C, M, W);
    float *work = malloc(sizeof(float) * wf);
    CHECK(x && w && U && y1 && y2 && work);
    apb_rng r;
    apb_rng_seed(&r, 45);
    apb_test_fill_normal(&r, x, nx, 1.0f);
    apb_test_fill_normal(&r, w, (long)M * C * 9, 0.05f);
    float *yr = malloc(sizeof(float) * ny); /* the plain correlation, in double */
    CHECK(yr);
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++)
            for (int oh = 0; oh < H; oh++)
                for (int ow = 0; ow < W; ow++) {
                    double sum = 0;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++) {
                                int ih = oh + kh - 1, iw = ow + kw - 1;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    sum += (double)w[((m * C + c) * 3 + kh) * 3 + kw] *
                                           x[((long)(n * C + c) * H + ih) * W + iw];
                            }
                    yr[((long)(n * M + m) * H + oh) * W + ow] = (float)sum;
                }
    apb_isa best = apb_isa_detected();
    for (int l = APB_ISA_REF; l <= (int)best; l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        float *pu = malloc(sizeof(float) * apb_wino_packed_floats(M, C));
        CHECK(pu);
        apb_wino_weights(M, C, w, 0, U, 1);
        apb_wino_pack(M, C, U, pu, 2);
        for (int v = 0; v < 4; v++) {
            int acc = v & 1, nt = 1 + (v >> 1);
            for (long i = 0; i < ny; i++)
                y1[i] = y2[i] = (float)(i % 7);
            apb_wino_conv(N, C, H, W, x, (long)C * H * W, M, U, acc, y1, (long)M * H * W, work, nt);
            apb_wino_conv_packed(N, C, H, W, x, (long)C * H * W, M, pu, acc, y2, (long)M * H * W,
                                 work, nt);
            CHECK_MSG(memcmp(y1, y2, sizeof(float) * ny) == 0, "level %d, case %d", l, v);
            if (!acc)
                CHECK(apb_test_close_f32(__FILE__, __LINE__, "packed Winograd ~ direct", y2, yr,
                                         ny, 1e-4, 1e-4) == 0);
        }
        free(pu);
    }
    CHECK_OK(apb_isa_force(best));
    free(x), free(w), free(U), free(y1), free(y2), free(work), free(yr);
    return 0;
}

/* apb_wino_dw (F(3x3, 4x4)) against the plain weight-gradient sum in double: odd
 * H and W (partial tiles in the last row and column), a shape that takes two
 * chunks (C + M small: 116508 / 32 = 3640 tiles, 910 tile rows of 4 tiles per
 * chunk, 230 images of 4 tile rows, so the second chunk starts inside image 227),
 * the sum added to what dw held; one and two threads give the same bits at every
 * ISA level. */
APB_TEST(winograd_dw_equals_direct_sum)
{
    enum { N = 230, C = 16, H = 13, W = 13, M = 16 };
    long nx = (long)N * C * H * W, ny = (long)N * M * H * W, nw = (long)M * C * 9;
    float *x = malloc(sizeof(float) * nx), *dy = malloc(sizeof(float) * ny);
    float *d1 = malloc(sizeof(float) * nw), *d2 = malloc(sizeof(float) * nw);
    float *dr = malloc(sizeof(float) * nw);
    size_t wf = apb_wino_dw_work_floats(C, M, W, 2);
    float *work = malloc(sizeof(float) * wf);
    CHECK(x && dy && d1 && d2 && dr && work);
    apb_rng r;
    apb_rng_seed(&r, 46);
    apb_test_fill_normal(&r, x, nx, 1.0f);
    apb_test_fill_normal(&r, dy, ny, 0.1f);
    for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    double sum = 0.25; /* the value dw holds before the call */
                    for (int n = 0; n < N; n++)
                        for (int oh = 0; oh < H; oh++)
                            for (int ow = 0; ow < W; ow++) {
                                int ih = oh + kh - 1, iw = ow + kw - 1;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    sum += (double)dy[((long)(n * M + m) * H + oh) * W + ow] *
                                           x[((long)(n * C + c) * H + ih) * W + iw];
                            }
                    dr[((m * C + c) * 3 + kh) * 3 + kw] = (float)sum;
                }
    apb_isa best = apb_isa_detected();
    for (int l = APB_ISA_REF; l <= (int)best; l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        for (long i = 0; i < nw; i++)
            d1[i] = d2[i] = 0.25f;
        apb_wino_dw(N, C, H, W, x, (long)C * H * W, M, dy, (long)M * H * W, d1, work, 1);
        apb_wino_dw(N, C, H, W, x, (long)C * H * W, M, dy, (long)M * H * W, d2, work, 2);
        CHECK_MSG(memcmp(d1, d2, sizeof(float) * nw) == 0, "level %d: 1 vs 2 threads", l);
        /* each element sums ~ 39000 products of size ~0.1: absolute bound */
        CHECK(apb_test_close_f32(__FILE__, __LINE__, "Winograd dW ~ direct", d1, dr, nw, 1e-4,
                                 2e-3) == 0);
    }
    CHECK_OK(apb_isa_force(best));
    free(x), free(dy), free(d1), free(d2), free(dr), free(work);
    return 0;
}
