/* test_sgemm.c - apb_sgemm at every ISA level against apb_sgemm_ref, im2col/col2im
 * against naive loops and as adjoints, and the vector helpers.
 *
 * Shapes straddle every micro-tile and cache-block edge (1, 7, 15, 16, 17, 63, 64,
 * 65, 127, 129, and larger shapes crossing KC, MC and NC), all four transpose
 * cases, alpha/beta variants, operands misaligned by one float and leading
 * dimensions larger than minimal. beta == 0 runs with C full of NaN; padding
 * columns of C (ldc > N) hold a sentinel that must survive.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "im2col.h"
#include "rng.h"
#include "sgemm.h"
#include "test.h"
#include "threads.h"
#include "vec.h"

#define SENTINEL 12345.0f

static void fill(apb_rng *r, float *x, long n)
{
    for (long i = 0; i < n; i++)
        x[i] = 2.0f * apb_rng_uniform(r) - 1.0f;
}

/* One sgemm case on the active level: returns 0 if it matches the reference. */
static int gemm_case(apb_rng *rng, int ta, int tb, int M, int N, int K, float alpha, float beta,
                     int pad, int misalign)
{
    int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
    int lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
    if (lda < 1)
        lda = 1;
    if (ldb < 1)
        ldb = 1;
    if (ldc < 1)
        ldc = 1;
    long na = (long)arows * lda + 1, nb = (long)brows * ldb + 1, nc = (long)M * ldc + 1;
    float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
    float *C = malloc(sizeof(float) * nc), *R = malloc(sizeof(float) * nc);
    CHECK(A && B && C && R);
    fill(rng, A, na);
    fill(rng, B, nb);
    fill(rng, C, nc);
    int o = misalign ? 1 : 0;
    for (long i = 0; i < nc; i++) {
        if (beta == 0.0f)
            C[i] = NAN;
        if (pad && (i - o) >= 0 && (i - o) % ldc >= N)
            C[i] = SENTINEL;
    }
    memcpy(R, C, sizeof(float) * nc);
    apb_sgemm(ta, tb, M, N, K, alpha, A + o, lda, B + o, ldb, beta, C + o, ldc);
    apb_sgemm_ref(ta, tb, M, N, K, alpha, A + o, lda, B + o, ldb, beta, R + o, ldc);
    int bad = 0;
    double atol = 2e-6 * (K + 1) * (fabs(alpha) + 1), maxerr = 0;
    long first = -1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            long p = (long)i * ldc + j + o;
            if (j >= N) {
                if (pad && C[p] != SENTINEL && first < 0)
                    first = p, bad = 2;
                continue;
            }
            double e = fabs((double)C[p] - R[p]);
            if (!(e <= atol + 1e-4 * fabs(R[p]))) {
                if (first < 0)
                    first = p, bad = 1;
            }
            if (e > maxerr)
                maxerr = e;
        }
    if (bad) {
        long p = first - o;
        fprintf(stderr,
                "  isa=%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d misalign=%d: "
                "%s at C[%ld,%ld] got %.7g want %.7g (max err %.3g)\n",
                apb_isa_name(apb_isa_active()), ta, tb, M, N, K, alpha, beta, pad, misalign,
                bad == 2 ? "padding overwritten" : "mismatch", p / ldc, p % ldc, C[first],
                R[first], maxerr);
    }
    free(A), free(B), free(C), free(R);
    return bad != 0;
}

static const int sizes[] = {1, 7, 15, 16, 17, 63, 64, 65, 127, 129};
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))
static const float alphas[] = {1.0f, 0.5f, -1.5f, 2.0f};
static const float betas[] = {0.0f, 1.0f, -0.5f, 0.0f};

APB_TEST(sgemm_levels_awkward_sizes)
{
    apb_rng rng;
    apb_rng_seed(&rng, 7);
    int fails = 0;
    for (int l = APB_ISA_REF; l <= (int)apb_isa_detected(); l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        for (int t = 0; t < 4; t++)
            for (int s = 0; s < NSIZES; s++) {
                /* M walks all sizes; N and K are other sizes at fixed offsets. */
                int M = sizes[s], N = sizes[(s + 3 + t) % NSIZES], K = sizes[(s + 7 + 2 * t) % NSIZES];
                int v = (s + t) % 4;
                fails += gemm_case(&rng, t & 1, t >> 1, M, N, K, alphas[v], betas[v], s % 3,
                                   (s + t) & 1);
                fails += gemm_case(&rng, t & 1, t >> 1, N, K, M, alphas[3 - v], betas[3 - v],
                                   (s + 1) % 3, (s + t + 1) & 1);
            }
        if (fails)
            break;
    }
    CHECK_OK(apb_isa_force(apb_isa_detected()));
    CHECK_MSG(fails == 0, "%d sgemm cases differ from the reference", fails);
    return 0;
}

APB_TEST(sgemm_levels_blocked_sizes)
{
    /* Larger than every KC (384), MC (240) and, with N = 1100, NC (1024); M = 20
     * reads a non-transposed B in place (ragged last panel, several K blocks). */
    static const int shapes[][3] = {{300, 257, 519}, {37, 1100, 50}, {250, 33, 800}, {20, 301, 700}};
    apb_rng rng;
    apb_rng_seed(&rng, 11);
    int fails = 0;
    for (int l = APB_ISA_REF; l <= (int)apb_isa_detected(); l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        for (int s = 0; s < 4; s++)
            for (int t = 0; t < 4; t++) {
                int v = (s + t) % 4;
                fails += gemm_case(&rng, t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2],
                                   alphas[v], betas[v], t == 2 ? 5 : 0, t & 1);
            }
        if (fails)
            break;
    }
    CHECK_OK(apb_isa_force(apb_isa_detected()));
    CHECK_MSG(fails == 0, "%d sgemm cases differ from the reference", fails);
    return 0;
}

APB_TEST(sgemm_degenerate)
{
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1};
    float C[4] = {NAN, NAN, NAN, NAN};
    /* K == 0, beta == 0: C becomes zero without reading the NaNs. */
    apb_sgemm(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 0.0f, C, 2);
    for (int i = 0; i < 4; i++)
        CHECK(C[i] == 0.0f);
    /* K == 0 scales by beta; alpha == 0 too (and does not read A or B). */
    float D[4] = {1, 2, 3, 4};
    apb_sgemm(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 2.0f, D, 2);
    CHECK(D[0] == 2.0f && D[3] == 8.0f);
    apb_sgemm(0, 0, 2, 2, 3, 0.0f, NULL, 3, NULL, 2, 0.5f, D, 2);
    CHECK(D[0] == 1.0f && D[3] == 4.0f);
    /* M == 0 or N == 0: nothing is touched. */
    apb_sgemm(0, 0, 0, 2, 3, 1.0f, A, 3, B, 2, 0.0f, NULL, 2);
    apb_sgemm(0, 0, 2, 0, 3, 1.0f, A, 3, B, 1, 0.0f, NULL, 1);
    /* 1x1x1 */
    float c = NAN;
    apb_sgemm(1, 1, 1, 1, 1, 3.0f, A + 1, 1, B + 3, 1, 0.0f, &c, 1);
    CHECK_CLOSE(c, 6.0, 0, 0);
    return 0;
}

APB_TEST(sgemm_threads_agree)
{
    int saved = apb_threads_get();
    apb_rng rng;
    apb_rng_seed(&rng, 3);
    /* Split by M (tall) and by N (wide), both above the threading threshold. */
    static const int shapes[][3] = {{300, 257, 519}, {20, 700, 300}};
    for (int s = 0; s < 2; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
        float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
        CHECK(A && B && C1 && C2);
        fill(&rng, A, (long)M * K);
        fill(&rng, B, (long)K * N);
        apb_threads_set(1);
        apb_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C1, N);
        apb_threads_set(2);
        apb_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C2, N);
        apb_threads_set(saved);
        int r = apb_test_close_f32(__FILE__, __LINE__, "C(2 threads)", C2, C1, (long)M * N, 1e-6,
                                   1e-6);
        free(A), free(B), free(C1), free(C2);
        if (r)
            return 1;
    }
    return 0;
}

/* Naive im2col straight from the definition in im2col.h. */
static void im2col_naive(const float *x, int C, int H, int W, int KH, int KW, int S, int P,
                         float *col)
{
    int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) {
                        int ih = oh * S - P + kh, iw = ow * S - P + kw;
                        col[(long)((c * KH + kh) * KW + kw) * OH * OW + oh * OW + ow] =
                            (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[((long)c * H + ih) * W + iw]
                                                                     : 0.0f;
                    }
}

/* {C, H, W, KH, KW, stride, pad} */
static const int convs[][7] = {{3, 8, 8, 3, 3, 1, 1}, {2, 7, 9, 3, 3, 2, 1}, {4, 5, 5, 1, 1, 1, 0},
                               {1, 6, 11, 5, 5, 1, 2}, {3, 9, 7, 3, 2, 2, 0}, {2, 4, 4, 3, 3, 1, 2},
                               {1, 1, 1, 1, 1, 1, 0},  {5, 13, 13, 3, 3, 3, 1}, {2, 10, 3, 5, 3, 1, 1},
                               {2, 4, 2, 3, 5, 1, 2},  {1, 3, 3, 1, 1, 2, 1},  {3, 6, 6, 3, 3, 2, 3}};
#define NCONVS ((int)(sizeof convs / sizeof convs[0]))

APB_TEST(im2col_matches_naive_and_col2im_is_adjoint)
{
    apb_rng rng;
    apb_rng_seed(&rng, 5);
    for (int t = 0; t < NCONVS; t++) {
        int C = convs[t][0], H = convs[t][1], W = convs[t][2], KH = convs[t][3], KW = convs[t][4];
        int S = convs[t][5], P = convs[t][6];
        int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1;
        long nx = (long)C * H * W, ncol = (long)C * KH * KW * OH * OW;
        float *x = malloc(sizeof(float) * nx), *col = malloc(sizeof(float) * ncol);
        float *want = malloc(sizeof(float) * ncol), *u = malloc(sizeof(float) * ncol);
        float *dx = malloc(sizeof(float) * nx);
        CHECK(x && col && want && u && dx);
        fill(&rng, x, nx);
        fill(&rng, u, ncol);
        for (long i = 0; i < ncol; i++)
            col[i] = NAN; /* every entry must be written */
        apb_im2col(x, C, H, W, KH, KW, S, P, col);
        im2col_naive(x, C, H, W, KH, KW, S, P, want);
        if (apb_test_close_f32(__FILE__, __LINE__, "im2col", col, want, ncol, 0, 0)) {
            fprintf(stderr, "  case %d: C=%d H=%d W=%d K=%dx%d S=%d P=%d\n", t, C, H, W, KH, KW, S, P);
            return 1;
        }
        /* <col2im(u), x> == <u, im2col(x)>; col2im accumulates onto dx = 1. */
        for (long i = 0; i < nx; i++)
            dx[i] = 1.0f;
        apb_col2im(u, C, H, W, KH, KW, S, P, dx);
        double lhs = 0, rhs = 0, base = 0;
        for (long i = 0; i < nx; i++)
            lhs += (double)(dx[i] - 1.0f) * x[i], base += fabs(x[i]);
        for (long i = 0; i < ncol; i++)
            rhs += (double)u[i] * col[i];
        CHECK_CLOSE(lhs, rhs, 1e-5, 1e-5 * (base + 1) * KH * KW);
        free(x), free(col), free(want), free(u), free(dx);
    }
    return 0;
}

APB_TEST(vec_helpers)
{
    enum { N = 37 };
    float x[N], y[N], z[N], w[N];
    apb_rng rng;
    apb_rng_seed(&rng, 9);
    fill(&rng, x, N);
    fill(&rng, y, N);
    memcpy(z, y, sizeof z);
    apb_vec_axpy(N, 0.5f, x, z);
    for (int i = 0; i < N; i++)
        CHECK_CLOSE(z[i], y[i] + 0.5f * x[i], 1e-6, 1e-7);
    for (int i = 0; i < N; i++)
        w[i] = NAN;
    apb_vec_axpby(N, 2.0f, x, 0.0f, w);
    for (int i = 0; i < N; i++)
        CHECK_CLOSE(w[i], 2.0f * x[i], 0, 0);
    memcpy(w, y, sizeof w);
    apb_vec_axpby(N, 2.0f, x, -1.0f, w);
    for (int i = 0; i < N; i++)
        CHECK_CLOSE(w[i], 2.0f * x[i] - y[i], 1e-6, 1e-7);
    memcpy(w, x, sizeof w);
    apb_vec_scale(N, -3.0f, w);
    for (int i = 0; i < N; i++)
        CHECK_CLOSE(w[i], -3.0f * x[i], 0, 0);
    apb_vec_set(N - 1, 4.0f, w);
    CHECK(w[0] == 4.0f && w[N - 2] == 4.0f && w[N - 1] == -3.0f * x[N - 1]);
    memcpy(w, x, sizeof w);
    apb_vec_add(N, w, y, w); /* in place */
    for (int i = 0; i < N; i++)
        CHECK_CLOSE(w[i], x[i] + y[i], 0, 0);
    apb_vec_mul(N, x, y, z);
    for (int i = 0; i < N; i++)
        CHECK_CLOSE(z[i], x[i] * y[i], 0, 0);
    double d = 0, s = 0;
    for (int i = 0; i < N; i++)
        d += (double)x[i] * y[i], s += x[i];
    CHECK_CLOSE(apb_vec_dot(N, x, y), d, 1e-5, 1e-6);
    CHECK_CLOSE(apb_vec_sum(N, x), s, 1e-5, 1e-6);
    CHECK_CLOSE(apb_vec_dot(5, x, y), (double)x[0] * y[0] + (double)x[1] * y[1] + (double)x[2] * y[2] +
                                          (double)x[3] * y[3] + (double)x[4] * y[4], 1e-6, 1e-7);
    CHECK(apb_vec_sum(0, x) == 0.0f && apb_vec_dot(0, x, y) == 0.0f);
    return 0;
}

/* apb_sgemm_conv must give bitwise the results of apb_sgemm on the explicit im2col
 * matrix (the training forward relies on it to match the runtime), at every ISA
 * level, thread count and K blocking, also for a batch sharing one packed A.
 * {C, H, W, K(side), pad, M}: segments of 32, 16 (indirect kernel), 8, 7, 33
 * (gathered panels); K = 576 and 630 cross KC. */
APB_TEST(sgemm_conv_equals_sgemm_on_im2col)
{
    static const int cs[][6] = {{16, 32, 32, 3, 1, 16}, {32, 16, 16, 3, 1, 32}, {64, 8, 8, 3, 1, 64},
                                {3, 9, 7, 3, 1, 13},    {2, 5, 33, 5, 2, 20},  {70, 5, 16, 3, 1, 24},
                                {4, 6, 6, 1, 0, 5},     {5, 7, 16, 3, 0, 9},
                                {2, 4, 16, 3, 1, 250}, /* M > MC: several A blocks */
                                {4, 5, 8, 3, 1, 12}};  /* N = 40: a last panel of 8 columns */
    int saved = apb_threads_get();
    apb_rng rng;
    apb_rng_seed(&rng, 21);
    int fails = 0;
    for (int l = APB_ISA_REF; l <= (int)apb_isa_detected(); l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        for (int t = 0; t < (int)(sizeof cs / sizeof cs[0]); t++) {
            int C = cs[t][0], H = cs[t][1], W = cs[t][2], KS = cs[t][3], P = cs[t][4], M = cs[t][5];
            int Hp = H + 2 * P, Wp = W + 2 * P, OH = Hp - KS + 1, OW = Wp - KS + 1;
            int K = C * KS * KS, N = OH * OW;
            long plane = (long)Hp * Wp + 3;
            float *x = malloc(sizeof(float) * C * H * W), *xp = calloc((size_t)C * plane, 4);
            float *col = malloc(sizeof(float) * K * N), *A = malloc(sizeof(float) * M * K);
            float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
            long *boff = malloc(sizeof(long) * K);
            CHECK(x && xp && col && A && C1 && C2 && boff);
            fill(&rng, x, (long)C * H * W);
            fill(&rng, A, (long)M * K);
            for (int c = 0; c < C; c++)
                for (int i = 0; i < H; i++)
                    memcpy(xp + c * plane + (long)(i + P) * Wp + P, x + ((long)c * H + i) * W,
                           sizeof(float) * W);
            for (int c = 0; c < C; c++)
                for (int kh = 0; kh < KS; kh++)
                    for (int kw = 0; kw < KS; kw++)
                        boff[(c * KS + kh) * KS + kw] = c * plane + (long)kh * Wp + kw;
            apb_im2col(x, C, H, W, KS, KS, 1, P, col);
            for (int v = 0; v < 4; v++) {
                float alpha = v & 1 ? 0.5f : 1.0f, beta = v & 2 ? 1.0f : 0.0f;
                apb_threads_set(1 + (v & 1));
                fill(&rng, C1, (long)M * N);
                memcpy(C2, C1, sizeof(float) * M * N);
                apb_sgemm(0, 0, M, N, K, alpha, A, K, col, N, beta, C1, N);
                apb_sgemm_conv(M, N, K, alpha, A, K, xp, boff, OW, Wp, beta, C2, N);
                if (memcmp(C1, C2, sizeof(float) * M * N)) {
                    fprintf(stderr, "  isa=%s case %d v=%d: not bitwise equal\n",
                            apb_isa_name(apb_isa_active()), t, v);
                    apb_test_close_f32(__FILE__, __LINE__, "C", C2, C1, (long)M * N, 0, 0);
                    fails++;
                }
            }
            /* a batch of 3 images (one packing of A): copies of xp, each image as above */
            float *xp3 = malloc(sizeof(float) * 3 * C * plane);
            float *C3 = malloc(sizeof(float) * 3 * M * N);
            CHECK(xp3 && C3);
            for (int b = 0; b < 3; b++)
                memcpy(xp3 + (size_t)b * C * plane, xp, sizeof(float) * C * plane);
            for (int th = 1; th <= 2; th++) {
                apb_threads_set(th);
                apb_sgemm(0, 0, M, N, K, 1.0f, A, K, col, N, 0.0f, C1, N);
                apb_sgemm_conv_batch(3, M, N, K, 1.0f, A, K, xp3, C * plane, boff, OW, Wp, 0.0f, C3,
                                     (long)M * N, N);
                for (int b = 0; b < 3; b++)
                    if (memcmp(C1, C3 + (size_t)b * M * N, sizeof(float) * M * N)) {
                        fprintf(stderr, "  isa=%s case %d image %d threads %d: batch differs\n",
                                apb_isa_name(apb_isa_active()), t, b, th);
                        fails++;
                    }
            }
            free(xp3), free(C3);
            apb_threads_set(saved);
            free(x), free(xp), free(col), free(A), free(C1), free(C2), free(boff);
        }
    }
    CHECK_OK(apb_isa_force(apb_isa_detected()));
    CHECK_MSG(fails == 0, "%d apb_sgemm_conv cases differ from apb_sgemm", fails);
    return 0;
}

/* apb_sgemm_packed with A packed once by apb_sgemm_apack gives apb_sgemm(0, 0)'s
 * bits at every ISA level and thread count, K across the K blocks and M across
 * the row blocks, alpha/beta cases; A = NULL reads only pa, pa = NULL packs as usual. */
APB_TEST(sgemm_packed_a_equals_sgemm)
{
    static const int cs[][3] = {{7, 33, 5}, {64, 130, 300}, {250, 40, 600}, {13, 1, 257}};
    int saved = apb_threads_get(), fails = 0;
    apb_rng rng;
    apb_rng_seed(&rng, 22);
    for (int l = APB_ISA_REF; l <= (int)apb_isa_detected(); l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        for (int t = 0; t < (int)(sizeof cs / sizeof cs[0]); t++) {
            int M = cs[t][0], N = cs[t][1], K = cs[t][2], lda = K + 3;
            float *A = malloc(sizeof(float) * M * lda), *B = malloc(sizeof(float) * K * N);
            float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
            float *pa = malloc(sizeof(float) * apb_sgemm_apack_floats(M, K));
            CHECK(A && B && C1 && C2 && pa);
            fill(&rng, A, (long)M * lda);
            fill(&rng, B, (long)K * N);
            apb_sgemm_apack(M, K, A, lda, pa);
            for (int v = 0; v < 4; v++) {
                float alpha = v & 1 ? 0.5f : 1.0f, beta = v & 2 ? 1.0f : 0.0f;
                apb_threads_set(1 + (v & 1));
                fill(&rng, C1, (long)M * N);
                memcpy(C2, C1, sizeof(float) * M * N);
                apb_sgemm(0, 0, M, N, K, alpha, A, lda, B, N, beta, C1, N);
                apb_sgemm_packed(M, N, K, alpha, v == 1 ? NULL : A, lda, v == 3 ? NULL : pa, B, N,
                                 beta, C2, N);
                if (memcmp(C1, C2, sizeof(float) * M * N)) {
                    fprintf(stderr, "  isa=%s case %d v=%d: packed A differs\n",
                            apb_isa_name(apb_isa_active()), t, v);
                    fails++;
                }
            }
            free(A), free(B), free(C1), free(C2), free(pa);
        }
    }
    apb_threads_set(saved);
    CHECK_OK(apb_isa_force(apb_isa_detected()));
    CHECK_MSG(fails == 0, "%d packed-A products differ from apb_sgemm", fails);
    return 0;
}

/* apb_sgemm_packed_b with op(B) packed once by apb_sgemm_bpack gives apb_sgemm's
 * bits at every ISA level, for both transposes of A and B, M from 1 (a linear
 * layer at batch 1) to several row blocks, 1 and 2 threads; B = NULL reads only
 * the packed form. */
APB_TEST(sgemm_packed_b_equals_sgemm)
{
    static const int cs[][3] = {{1, 1000, 512}, {3, 37, 300}, {16, 130, 600}, {250, 33, 40},
                                {16, 2000, 200}}; /* N split over threads and past a column block */
    int saved = apb_threads_get(), fails = 0;
    apb_rng rng;
    apb_rng_seed(&rng, 23);
    for (int l = APB_ISA_REF; l <= (int)apb_isa_detected(); l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        for (int t = 0; t < (int)(sizeof cs / sizeof cs[0]); t++)
            for (int tr = 0; tr < 4; tr++) {
                int M = cs[t][0], N = cs[t][1], K = cs[t][2], ta = tr & 1, tb = tr >> 1;
                int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2;
                long asz = (long)(ta ? K : M) * lda, bsz = (long)(tb ? N : K) * ldb;
                float *A = malloc(sizeof(float) * asz), *B = malloc(sizeof(float) * bsz);
                float *C1 = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N);
                float *pb = malloc(sizeof(float) * apb_sgemm_bpack_floats(N, K));
                CHECK(A && B && C1 && C2 && pb);
                fill(&rng, A, asz);
                fill(&rng, B, bsz);
                apb_sgemm_bpack(tb, N, K, B, ldb, pb);
                for (int v = 0; v < 3; v++) {
                    float beta = v == 2 ? 1.0f : 0.0f;
                    apb_threads_set(1 + (v & 1));
                    fill(&rng, C1, (long)M * N);
                    memcpy(C2, C1, sizeof(float) * M * N);
                    apb_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C1, N);
                    apb_sgemm_packed_b(ta, tb, M, N, K, 1.0f, A, lda, v == 1 ? NULL : B, ldb, pb,
                                       beta, C2, N);
                    if (memcmp(C1, C2, sizeof(float) * M * N)) {
                        fprintf(stderr, "  isa=%s case %d trans %d v=%d: packed B differs\n",
                                apb_isa_name(apb_isa_active()), t, tr, v);
                        fails++;
                    }
                }
                free(A), free(B), free(C1), free(C2), free(pb);
            }
    }
    apb_threads_set(saved);
    CHECK_OK(apb_isa_force(apb_isa_detected()));
    CHECK_MSG(fails == 0, "%d packed-B products differ from apb_sgemm", fails);
    return 0;
}
