/* test_i8gemm.c - the binary x 8-bit GEMM (kernels/i8gemm.h): the code rule at
 * its edges, packing against the layout it promises, every ISA level and thread
 * count bit-exact against plain integer dot products on awkward sizes (ragged
 * M and N, K past one int16 chunk, all-255 activations against all-equal
 * weights, the largest sums the int16 partial sums must hold), misaligned rows;
 * the in-place (indirect) form against the packed one; the channel-interleaving
 * quantizer against the code rule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "i8gemm.h"
#include "rng.h"
#include "test.h"
#include "threads.h"

APB_TEST(test_i8_code_rule)
{
    /* r = 1: ties go to the even integer, both clamps, NaN and infinities */
    static const struct {
        float x;
        int is_signed, want;
    } c[] = {{0.5f, 0, 0},    {1.5f, 0, 2},      {2.5f, 0, 2},      {2.4999998f, 0, 2},
             {-0.4f, 0, 0},   {-3.0f, 0, 0},     {254.5f, 0, 254},  {254.6f, 0, 255},
             {300.0f, 0, 255}, {-127.5f, 1, -128}, {-128.4f, 1, -128}, {-200.0f, 1, -128},
             {126.5f, 1, 126}, {126.51f, 1, 127}, {127.9f, 1, 127},  {-0.5f, 1, 0},
             {-1.5f, 1, -2},  {INFINITY, 1, 127}, {-INFINITY, 0, 0}, {NAN, 1, 0},
             {NAN, 0, 0}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        CHECK_MSG(apb_i8_code(c[i].x, 1.0f, c[i].is_signed) == c[i].want, "x=%g signed=%d: %d, want %d",
                  c[i].x, c[i].is_signed, apb_i8_code(c[i].x, 1.0f, c[i].is_signed), c[i].want);
    /* against rint for many values and a step that is not a power of two */
    apb_rng r;
    apb_rng_seed(&r, 3);
    float s = 0.0371f, rs = 1.0f / s;
    for (int i = 0; i < 100000; i++) {
        float x = 6.0f * apb_rng_normal(&r);
        for (int sg = 0; sg < 2; sg++) {
            float t = x * rs, lo = sg ? -128.0f : 0.0f, hi = sg ? 127.0f : 255.0f;
            float want = rintf(t < lo ? lo : t > hi ? hi : t);
            CHECK_MSG(apb_i8_code(x, rs, sg) == (int)want, "x=%.9g signed=%d", x, sg);
        }
    }
    return 0;
}

/* Plain integer dot of row m and column n (codes, zero point removed). */
static long dot_plain(const int8_t *W, long ldw, int m, const int *q, int K, int n)
{
    long s = 0;
    for (int k = 0; k < K; k++)
        s += (long)W[m * ldw + k] * q[(long)n * K + k];
    return s;
}

static int gemm_case(apb_rng *r, int M, int N, int K, int mode, int is_signed)
{
    int K4 = (K + 3) / 4;
    long ldw = 4L * K4 + 4; /* room to start rows off a 4-byte boundary */
    int8_t *wbase = calloc((size_t)M * ldw + 8, 1), *W = wbase + 1;
    float *X = malloc(sizeof(float) * ((size_t)N * K + 1));
    int *q = malloc(sizeof(int) * ((size_t)N * K + 1));
    long pb = apb_i8_packed_bytes(N, K4);
    uint8_t *B = malloc((size_t)pb + 1);
    int32_t *C = malloc(sizeof(int32_t) * ((size_t)M * N + 1)), *corr = malloc(sizeof(int32_t) * (size_t)M);
    float *Y = malloc(sizeof(float) * ((size_t)M * N + 1)), *scale = malloc(sizeof(float) * (size_t)M);
    int fail = 0;
    float s = 0.05f;
    for (int m = 0; m < M; m++) {
        corr[m] = 0;
        scale[m] = 0.5f + (float)m;
        for (int k = 0; k < K; k++) {
            int v = mode ? (mode == 1 ? 1 : -1) : (apb_rng_below(r, 2) ? 1 : -1);
            W[m * ldw + k] = (int8_t)v;
            corr[m] += is_signed ? 128 * v : 0;
        }
    }
    for (long i = 0; i < (long)N * K; i++) {
        float x = mode ? (is_signed ? -1000.0f : 1000.0f) : 8.0f * apb_rng_normal(r);
        X[i] = x;
        q[i] = apb_i8_code(x, 1.0f / s, is_signed);
    }
    apb_i8_pack_rows(N, K, X, K, s, is_signed, B);
    /* the layout: byte of column n, element k */
    for (int n = 0; n < N && !fail; n++)
        for (int k = 0; k < K; k++) {
            uint8_t b = B[(n / 16) * (long)K4 * 64 + ((k / 4) * 16 + n % 16) * 4 + k % 4];
            if (b != (uint8_t)(q[(long)n * K + k] + (is_signed ? 128 : 0))) {
                fprintf(stderr, "  packed byte n=%d k=%d is %d, code %d\n", n, k, b, q[(long)n * K + k]);
                fail = 1;
                break;
            }
        }
    apb_i8gemm_ref(M, N, K4, W, ldw, B, C, N);
    for (int m = 0; m < M && !fail; m++)
        for (int n = 0; n < N; n++)
            if (C[m * N + n] - corr[m] != dot_plain(W, ldw, m, q, K, n)) {
                fprintf(stderr, "  ref M=%d N=%d K=%d: [%d,%d] %d, plain %ld\n", M, N, K, m, n,
                        C[m * N + n] - corr[m], dot_plain(W, ldw, m, q, K, n));
                fail = 1;
                break;
            }
    apb_isa prev = apb_isa_active();
    for (int isa = 0; isa <= (int)apb_isa_detected() && !fail; isa++)
        for (int th = 1; th <= 2 && !fail; th++) {
            apb_isa_force((apb_isa)isa);
            apb_threads_set(th);
            for (long i = 0; i < (long)M * N; i++)
                Y[i] = NAN;
            if (apb_i8gemm_f32(M, N, K4, W, ldw, B, scale, corr, Y, N) != APB_OK) {
                fail = 1;
                break;
            }
            for (long i = 0; i < (long)M * N; i++) {
                int m = (int)(i / N);
                float want = scale[m] * (float)(C[i] - corr[m]);
                if (memcmp(&Y[i], &want, sizeof want)) {
                    fprintf(stderr, "  %s (%s) threads=%d M=%d N=%d K=%d mode=%d signed=%d: [%d,%ld] %g, want %g\n",
                            apb_isa_name((apb_isa)isa), apb_i8gemm_kernel_name(), th, M, N, K, mode,
                            is_signed, m, i % N, Y[i], want);
                    fail = 1;
                    break;
                }
            }
        }
    apb_isa_force(prev);
    apb_threads_set(0);
    free(wbase);
    free(X);
    free(q);
    free(B);
    free(C);
    free(corr);
    free(Y);
    free(scale);
    return fail;
}

APB_TEST(test_i8gemm_every_isa_exact)
{
    apb_rng r;
    apb_rng_seed(&r, 11);
    static const int shapes[][3] = {{1, 1, 1},    {3, 5, 7},     {4, 16, 4},    {5, 17, 13},
                                    {9, 33, 64},  {64, 49, 576}, {67, 130, 261}, {8, 20, 4608},
                                    {130, 9, 300}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int sg = 0; sg < 2; sg++)
            CHECK_MSG(gemm_case(&r, shapes[i][0], shapes[i][1], shapes[i][2], 0, sg) == 0,
                      "shape %zu signed %d", i, sg);
    /* the largest sums: all codes at the top of the range against all-equal weights,
     * K = 4608 (18 int16 chunks of 64 groups) */
    for (int mode = 1; mode <= 2; mode++)
        for (int sg = 0; sg < 2; sg++)
            CHECK(gemm_case(&r, 6, 21, 4608, mode, sg) == 0);
    return 0;
}

/* apb_i8_quant4 at every ISA level: the interleaved bytes and the code planes
 * against apb_i8_code, strides 1 and 2, 1 to 4 channels, lengths around the
 * vector width, ties, clamps, NaN and infinities; nothing outside the rows
 * written. */
APB_TEST(test_i8_quant4_every_isa)
{
    enum { LD = 80, QL = 40 };
    float x[4 * LD];
    apb_rng r;
    apb_rng_seed(&r, 12);
    float s = 0.0371f, rs = 1.0f / s;
    apb_isa prev = apb_isa_active();
    int fails = 0;
    for (int isa = 0; isa <= (int)apb_isa_detected(); isa++) {
        CHECK_OK(apb_isa_force((apb_isa)isa));
        for (int pass = 0; pass < 2; pass++) {
            if (!pass) {
                for (int i = 0; i < 4 * LD; i++)
                    x[i] = 6.0f * apb_rng_normal(&r);
                /* both clamps, NaN, infinities */
                x[3] = NAN, x[LD + 5] = INFINITY, x[2 * LD + 8] = -INFINITY, x[3 * LD + 1] = 1e9f;
                x[7] = -1e9f, x[LD + 10] = NAN;
            }
            for (int sg = 0; sg < 2; sg++)
                for (int st = 1; st <= 2; st++)
                    for (int nc = 1; nc <= 4; nc++)
                        for (int n = 0; n <= 35 && fails < 5; n++) {
                            float step = pass ? 0.5f : s, rr = pass ? 2.0f : rs;
                            if (pass) /* exact ties: x * 2 = k + 1/2 */
                                for (int i = 0; i < 4 * LD; i++)
                                    x[i] = (float)((int)(apb_rng_next(&r) % 600) - 300) * 0.25f;
                            uint8_t d[4 * QL + 8];
                            uint8_t q[4 * QL + 8];
                            memset(d, 0xEE, sizeof d);
                            memset(q, 0xEE, sizeof q);
                            apb_i8_quant4(n, nc, x, LD, st, step, sg, d, q, QL);
                            int zp = sg ? 128 : 0;
                            for (int j = 0; j < n; j++)
                                for (int i = 0; i < 4; i++) {
                                    int c = i < nc ? apb_i8_code(x[i * LD + j * st], rr, sg) : 0;
                                    uint8_t want = (uint8_t)c;
                                    if (d[4 * j + i] != (uint8_t)(c + zp) || (i < nc && q[i * QL + j] != want) ||
                                        (i >= nc && q[i * QL + j] != 0xEE)) {
                                        fprintf(stderr, "  isa %d st %d nc %d n %d signed %d [%d,%d]: byte %d q %d, want %d %d\n",
                                                isa, st, nc, n, sg, i, j, d[4 * j + i], q[i * QL + j], c + zp, want);
                                        fails++;
                                    }
                                }
                            for (int i = 4 * n; i < (int)sizeof d; i++)
                                if (d[i] != 0xEE) {
                                    fprintf(stderr, "  byte %d past the row written\n", i);
                                    fails++;
                                    break;
                                }
                            for (int i = 0; i < 4; i++)
                                if (q[i * QL + n] != 0xEE) {
                                    fprintf(stderr, "  value past row %d written\n", i);
                                    fails++;
                                }
                        }
        }
    }
    apb_isa_force(prev);
    CHECK(fails == 0);
    return 0;
}

/* The in-place GEMM against the packed one on the same columns, gathered: a
 * 3x3 convolution over channel-blocked planes of several images (columns per
 * image a multiple of 16, tiles and the kernels' panel groups crossing image
 * ends), every ISA level, 1 and 2 threads, bit for bit. */
APB_TEST(test_i8gemm_in_place_equals_packed)
{
    apb_rng r;
    apb_rng_seed(&r, 13);
    static const int cases[][4] = {/* M, groups, columns per image, images */
                                   {7, 3, 16, 1}, {13, 16, 48, 5}, {64, 8, 112, 3}, {100, 2, 32, 9}};
    apb_isa prev = apb_isa_active();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int M = cases[ci][0], G = cases[ci][1], ncol = cases[ci][2], nimg = cases[ci][3];
        int T = 9, K4 = G * T, N = ncol * nimg;
        long plane = ncol + 40, istride = 4 * (G * plane + 64);
        long ldw = 4L * K4;
        int8_t *W = malloc((size_t)(M * ldw));
        uint8_t *src = malloc((size_t)(istride * nimg));
        long *boff = malloc(sizeof(long) * K4);
        uint8_t *B = malloc((size_t)apb_i8_packed_bytes(N, K4));
        float *Y0 = malloc(sizeof(float) * M * N), *Y1 = malloc(sizeof(float) * M * N);
        float *scale = malloc(sizeof(float) * M);
        int32_t *corr = malloc(sizeof(int32_t) * M);
        for (long i = 0; i < M * ldw; i++)
            W[i] = (int8_t)((int)apb_rng_below(&r, 3) - 1);
        for (long i = 0; i < istride * nimg; i++)
            src[i] = (uint8_t)apb_rng_next(&r);
        for (int m = 0; m < M; m++)
            scale[m] = 0.25f + 0.01f * m, corr[m] = (int32_t)apb_rng_below(&r, 1000) - 500;
        for (int g = 0; g < G; g++)
            for (int t = 0; t < T; t++)
                boff[g * T + t] = 4 * (g * plane + (t / 3) * 13 + t % 3);
        /* gather: column n = i*ncol + j, group k4 */
        for (int n = 0; n < N; n++)
            for (int k4 = 0; k4 < K4; k4++)
                memcpy(B + (n / 16) * (long)K4 * 64 + (k4 * 16 + n % 16) * 4,
                       src + (n / ncol) * istride + 4L * (n % ncol) + boff[k4], 4);
        for (int isa = 0; isa <= (int)apb_isa_detected(); isa++)
            for (int th = 1; th <= 2; th++) {
                CHECK_OK(apb_isa_force((apb_isa)isa));
                apb_threads_set(th);
                for (long i = 0; i < (long)M * N; i++)
                    Y0[i] = NAN, Y1[i] = NAN;
                CHECK_OK(apb_i8gemm_f32(M, N, K4, W, ldw, B, scale, corr, Y0, N));
                CHECK_OK(apb_i8gemm_ind_f32(M, ncol, nimg, K4, W, ldw, src, istride, boff, scale, corr,
                                            Y1, N));
                CHECK_MSG(memcmp(Y0, Y1, sizeof(float) * M * N) == 0, "case %zu isa %d threads %d", ci,
                          isa, th);
            }
        /* sizes it refuses */
        CHECK(apb_i8gemm_ind_f32(M, 20, 1, K4, W, ldw, src, istride, boff, scale, corr, Y1, N) ==
              APB_EINVAL);
        free(W), free(src), free(boff), free(B), free(Y0), free(Y1), free(scale), free(corr);
    }
    apb_isa_force(prev);
    apb_threads_set(0);
    return 0;
}

/* apb_i8gemm_ind_f32_w8 (weights anywhere in [-127, 127], the approximate 8-bit
 * first conv) at every ISA level and 1 and 2 threads: every element is scale *
 * (float)(dot - corr) of the exact integer dot. The activations are large codes
 * and the weights near +-127, where the AVX2 kernel's 16-bit partial sums would
 * saturate: that level must not use it. */
APB_TEST(test_i8gemm_w8_wide_weights_exact)
{
    apb_rng r;
    apb_rng_seed(&r, 14);
    int M = 13, G = 5, T = 9, K4 = G * T, ncol = 48, nimg = 2, N = ncol * nimg;
    long plane = ncol + 40, istride = 4 * (G * plane + 64), ldw = 4L * K4;
    int8_t *W = malloc((size_t)(M * ldw));
    uint8_t *src = malloc((size_t)(istride * nimg));
    long *boff = malloc(sizeof(long) * K4);
    float *Y = malloc(sizeof(float) * M * N), *want = malloc(sizeof(float) * M * N);
    float *scale = malloc(sizeof(float) * M);
    int32_t *corr = malloc(sizeof(int32_t) * M);
    CHECK(W && src && boff && Y && want && scale && corr);
    for (long i = 0; i < M * ldw; i++)
        W[i] = (int8_t)(i % 3 ? 127 - (int)apb_rng_below(&r, 8) : (int)apb_rng_below(&r, 255) - 127);
    for (long i = 0; i < istride * nimg; i++)
        src[i] = (uint8_t)(200 + apb_rng_below(&r, 56));
    for (int m = 0; m < M; m++)
        scale[m] = 0.001f * (m + 1), corr[m] = (int32_t)apb_rng_below(&r, 100000) - 50000;
    for (int g = 0; g < G; g++)
        for (int t = 0; t < T; t++)
            boff[g * T + t] = 4 * (g * plane + (t / 3) * 13 + t % 3);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int32_t dot = 0;
            for (int k4 = 0; k4 < K4; k4++)
                for (int q = 0; q < 4; q++)
                    dot += (int32_t)W[m * ldw + 4 * k4 + q] *
                           src[(n / ncol) * istride + 4L * (n % ncol) + boff[k4] + q];
            want[(long)m * N + n] = scale[m] * (float)(dot - corr[m]);
        }
    apb_isa prev = apb_isa_active();
    for (int isa = 0; isa <= (int)apb_isa_detected(); isa++)
        for (int th = 1; th <= 2; th++) {
            CHECK_OK(apb_isa_force((apb_isa)isa));
            apb_threads_set(th);
            for (long i = 0; i < (long)M * N; i++)
                Y[i] = NAN;
            CHECK_OK(apb_i8gemm_ind_f32_w8(M, ncol, nimg, K4, W, ldw, src, istride, boff, scale, corr, Y, N));
            CHECK_MSG(memcmp(Y, want, sizeof(float) * M * N) == 0, "isa %d threads %d (kernel %s)", isa,
                      th, apb_i8gemm_kernel_name());
        }
    apb_isa_force(prev);
    apb_threads_set(0);
    free(W), free(src), free(boff), free(Y), free(want), free(scale), free(corr);
    return 0;
}
