/* test_i8gemm.c - the binary x 8-bit GEMM (kernels/i8gemm.h): the code rule at
 * its edges, packing against the layout it promises, every ISA level and thread
 * count bit-exact against plain integer dot products on awkward sizes (ragged
 * M and N, K past one int16 chunk, all-255 activations against all-equal
 * weights, the largest sums the int16 partial sums must hold), misaligned rows. */
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

APB_TEST(test_i8_pack_taps_layout)
{
    /* columns are windows of a byte image at per-k offsets */
    enum { N = 37, K = 11 };
    uint8_t src[N + 64 + 16];
    long koff[K];
    for (int i = 0; i < (int)sizeof src; i++)
        src[i] = (uint8_t)(i * 7 + 3);
    for (int k = 0; k < K; k++)
        koff[k] = (k * 5) % 64;
    int K4 = (K + 3) / 4;
    uint8_t *B = malloc((size_t)apb_i8_packed_bytes(N, K4));
    apb_i8_pack_taps(N, K, src, koff, B);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < 4 * K4; k++) {
            uint8_t b = B[(n / 16) * (long)K4 * 64 + ((k / 4) * 16 + n % 16) * 4 + k % 4];
            CHECK_MSG(b == (k < K ? src[n + koff[k]] : 0), "n=%d k=%d: %d", n, k, b);
        }
    free(B);
    return 0;
}
