/* test_spmm.c - CSR residual storage and sparse x dense products against a dense
 * double-precision reference at 0, 50, 99 and 100% sparsity, every ISA level,
 * 16- and 32-bit indices, pixel-major variant, thread-count independence. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "rng.h"
#include "spmm.h"
#include "test.h"
#include "threads.h"

static float *sparse_dense(apb_rng *r, int M, int K, double density)
{
    float *d = calloc((size_t)M * K, sizeof(float));
    for (size_t i = 0; d && i < (size_t)M * K; i++)
        if (apb_rng_uniform(r) < density)
            d[i] = apb_rng_normal(r);
    return d;
}

/* Y0 + Rd * X in double, compared with got. */
static int check_prod(const float *Rd, int M, int K, int N, const float *X, int ldx,
                      const float *Y0, const float *got, int ldy, const char *what)
{
    float *want = malloc(sizeof(float) * (size_t)M * ldy);
    if (!want)
        return 1;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = Y0[(size_t)m * ldy + n];
            for (int k = 0; k < K; k++)
                s += (double)Rd[(size_t)m * K + k] * X[(size_t)k * ldx + n];
            want[(size_t)m * ldy + n] = (float)s;
        }
    int bad = 0;
    for (int m = 0; m < M && !bad; m++)
        bad = apb_test_close_f32(__FILE__, __LINE__, what, got + (size_t)m * ldy,
                                 want + (size_t)m * ldy, N, 1e-4, 1e-4);
    free(want);
    return bad;
}

APB_TEST(test_spmm_vs_dense_all_levels)
{
    apb_rng r;
    apb_rng_seed(&r, 21);
    double dens[] = {1.0, 0.5, 0.01, 0.0};
    int Ns[] = {1, 7, 64, 65, 130};
    int M = 37, K = 300;
    apb_isa best = apb_isa_detected();
    for (int di = 0; di < 4; di++) {
        float *Rd = sparse_dense(&r, M, K, dens[di]);
        CHECK(Rd);
        apb_csr R;
        CHECK_OK(apb_csr_from_dense(&R, M, K, Rd, K));
        CHECK_OK(apb_csr_validate(&R));
        CHECK(R.idx_bytes == 2 && R.col16);
        if (dens[di] == 0.0)
            CHECK(R.nnz == 0);
        if (dens[di] == 1.0)
            CHECK(R.nnz == (int64_t)M * K);
        for (int ni = 0; ni < 5; ni++) {
            int N = Ns[ni], ldx = N + 3, ldy = N + 2;
            float *X = malloc(sizeof(float) * ((size_t)K * ldx + 1));
            float *Xt = malloc(sizeof(float) * (size_t)N * (K + 1));
            float *Y0 = malloc(sizeof(float) * (size_t)M * ldy);
            float *Y = malloc(sizeof(float) * ((size_t)M * ldy + 1));
            CHECK(X && Xt && Y0 && Y);
            float *Xm = X + 1; /* misaligned */
            for (size_t i = 0; i < (size_t)K * ldx; i++)
                Xm[i] = apb_rng_normal(&r);
            for (int k = 0; k < K; k++)
                for (int n = 0; n < N; n++)
                    Xt[(size_t)n * (K + 1) + k] = Xm[(size_t)k * ldx + n];
            for (size_t i = 0; i < (size_t)M * ldy; i++)
                Y0[i] = apb_rng_normal(&r);
            memcpy(Y, Y0, sizeof(float) * M * ldy);
            CHECK_OK(apb_spmm_ref(&R, N, Xm, ldx, Y, ldy));
            if (check_prod(Rd, M, K, N, Xm, ldx, Y0, Y, ldy, "spmm_ref"))
                return 1;
            for (int lvl = APB_ISA_REF; lvl <= (int)best; lvl++) {
                CHECK_OK(apb_isa_force((apb_isa)lvl));
                memcpy(Y + 1, Y0, sizeof(float) * M * ldy);
                CHECK_OK(apb_spmm(&R, N, Xm, ldx, Y + 1, ldy));
                if (check_prod(Rd, M, K, N, Xm, ldx, Y0, Y + 1, ldy, apb_isa_name((apb_isa)lvl)))
                    return 1;
            }
            CHECK_OK(apb_isa_force(best));
            memcpy(Y, Y0, sizeof(float) * M * ldy);
            CHECK_OK(apb_spmm_xt(&R, N, Xt, K + 1, Y, ldy));
            if (check_prod(Rd, M, K, N, Xm, ldx, Y0, Y, ldy, "spmm_xt"))
                return 1;
            free(X), free(Xt), free(Y0), free(Y);
        }
        apb_csr_free(&R);
        free(Rd);
    }
    return 0;
}

APB_TEST(test_spmm_wide_k_uint32_and_threads)
{
    apb_rng r;
    apb_rng_seed(&r, 22);
    int M = 5, K = 70000, N = 9;
    float *Rd = sparse_dense(&r, M, K, 0.002);
    float *X = malloc(sizeof(float) * (size_t)K * N);
    float *Y0 = calloc((size_t)M * N, sizeof(float)), *Y = calloc((size_t)M * N, sizeof(float));
    CHECK(Rd && X && Y0 && Y);
    Rd[(size_t)2 * K + K - 1] = 1.5f; /* the last column must index correctly */
    for (size_t i = 0; i < (size_t)K * N; i++)
        X[i] = apb_rng_normal(&r);
    apb_csr R;
    CHECK_OK(apb_csr_from_dense(&R, M, K, Rd, K));
    CHECK(R.idx_bytes == 4 && R.col32 && !R.col16);
    CHECK_OK(apb_csr_validate(&R));
    CHECK_OK(apb_spmm(&R, N, X, N, Y, N));
    if (check_prod(Rd, M, K, N, X, N, Y0, Y, N, "wide K"))
        return 1;
    apb_csr_free(&R);
    /* 1 vs 2 threads bitwise identical on a problem big enough to split */
    int M2 = 200, K2 = 500, N2 = 300, saved = apb_threads_get();
    float *R2 = sparse_dense(&r, M2, K2, 0.1);
    float *X2 = malloc(sizeof(float) * (size_t)K2 * N2);
    float *y1 = calloc((size_t)M2 * N2, sizeof(float)), *y2 = calloc((size_t)M2 * N2, sizeof(float));
    CHECK(R2 && X2 && y1 && y2);
    for (size_t i = 0; i < (size_t)K2 * N2; i++)
        X2[i] = apb_rng_normal(&r);
    CHECK_OK(apb_csr_from_dense(&R, M2, K2, R2, K2));
    apb_threads_set(1);
    CHECK_OK(apb_spmm(&R, N2, X2, N2, y1, N2));
    apb_threads_set(2);
    CHECK_OK(apb_spmm(&R, N2, X2, N2, y2, N2));
    apb_threads_set(saved);
    CHECK(memcmp(y1, y2, sizeof(float) * M2 * N2) == 0);
    /* a corrupt CSR is rejected with a message */
    R.col16[0] = (uint16_t)K2;
    CHECK(apb_csr_validate(&R) == APB_EFORMAT);
    apb_csr_free(&R);
    free(Rd), free(X), free(Y0), free(Y), free(R2), free(X2), free(y1), free(y2);
    return 0;
}

/* The slab path (X chunk copied to a contiguous [K, 64] buffer first, AVX-512)
 * gives bitwise the results of the chunk kernel reading X in place, including
 * X rows 4 KB apart, partial chunks, few chunks split by rows, 1 and 2 threads. */
APB_TEST(test_spmm_slab_matches_in_place)
{
    if (apb_isa_detected() < APB_ISA_AVX512) {
        printf("  (no AVX-512 here: the slab path is not used)\n");
        return 0;
    }
    apb_rng r;
    apb_rng_seed(&r, 24);
    struct { int M, K, N, ldx; double d; } cs[] = {
        {300, 700, 33, 40, 0.05}, {37, 300, 130, 1024, 0.5}, {130, 260, 1, 1, 0.2}, {9, 70, 64, 64, 1.0}};
    int saved = apb_threads_get();
    CHECK_OK(apb_isa_force(APB_ISA_AVX512));
    for (int ci = 0; ci < 4; ci++) {
        int M = cs[ci].M, K = cs[ci].K, N = cs[ci].N, ldx = cs[ci].ldx, ldy = N + 3;
        float *Rd = sparse_dense(&r, M, K, cs[ci].d);
        float *X = malloc(sizeof(float) * (size_t)K * ldx);
        float *Y0 = malloc(sizeof(float) * (size_t)M * ldy);
        float *Ya = malloc(sizeof(float) * (size_t)M * ldy), *Yb = malloc(sizeof(float) * (size_t)M * ldy);
        CHECK(Rd && X && Y0 && Ya && Yb);
        for (size_t i = 0; i < (size_t)K * ldx; i++)
            X[i] = apb_rng_normal(&r);
        for (size_t i = 0; i < (size_t)M * ldy; i++)
            Y0[i] = apb_rng_normal(&r);
        apb_csr R;
        CHECK_OK(apb_csr_from_dense(&R, M, K, Rd, K));
        int prev = apb_spmm_slab_enable(0);
        memcpy(Ya, Y0, sizeof(float) * M * ldy);
        CHECK_OK(apb_spmm(&R, N, X, ldx, Ya, ldy));
        if (check_prod(Rd, M, K, N, X, ldx, Y0, Ya, ldy, "in place"))
            return 1;
        apb_spmm_slab_enable(1);
        for (int th = 1; th <= 2; th++) {
            apb_threads_set(th);
            memcpy(Yb, Y0, sizeof(float) * M * ldy);
            CHECK_OK(apb_spmm(&R, N, X, ldx, Yb, ldy));
            CHECK_MSG(memcmp(Ya, Yb, sizeof(float) * M * ldy) == 0,
                      "case %d (M=%d K=%d N=%d ldx=%d) threads %d: slab differs", ci, M, K, N, ldx, th);
        }
        apb_spmm_slab_enable(prev);
        apb_threads_set(saved);
        apb_csr_free(&R);
        free(Rd), free(X), free(Y0), free(Ya), free(Yb);
    }
    CHECK_OK(apb_isa_force(apb_isa_detected()));
    return 0;
}

/* apb_spmm_offset_kernel at every ISA level: for rows [m0, m1) of a CSR whose
 * columns are element offsets, out[(m - m0)*64 + n] = sum_e val[e] * X[col(e) + n]
 * from 0 in CSR order, per element exactly (a fused multiply-add chain at the
 * AVX levels, multiply then add in the portable kernel); rows of other tasks and
 * the words past each row's 64 are left alone. */
APB_TEST(test_spmm_offset_chunk_every_level_exact)
{
    apb_rng r;
    apb_rng_seed(&r, 33);
    int M = 11, K = 900; /* K: the offset range */
    float *Rd = sparse_dense(&r, M, K, 0.02);
    float *X = malloc(sizeof(float) * (K + APB_SPMM_NC));
    float *out = malloc(sizeof(float) * (M + 1) * APB_SPMM_NC);
    CHECK(Rd && X && out);
    for (int i = 0; i < K + APB_SPMM_NC; i++)
        X[i] = apb_rng_normal(&r);
    for (int k = 0; k < K; k++) /* one dense row, one empty row */
        Rd[3 * K + k] = apb_rng_normal(&r), Rd[5 * K + k] = 0.0f;
    apb_csr R;
    CHECK_OK(apb_csr_from_dense(&R, M, K, Rd, K));
    apb_isa best = apb_isa_detected();
    int cases[][2] = {{0, M}, {2, 7}, {3, 4}, {5, 6}, {6, 11}};
    for (int lvl = APB_ISA_REF; lvl <= (int)best; lvl++) {
        CHECK_OK(apb_isa_force((apb_isa)lvl));
        apb_spmm_offset_fn fn = apb_spmm_offset_kernel();
        for (int c = 0; c < 5; c++) {
            int m0 = cases[c][0], m1 = cases[c][1];
            for (int i = 0; i < (M + 1) * APB_SPMM_NC; i++)
                out[i] = 12345.0f;
            fn(&R, m0, m1, X, out);
            for (int m = m0; m < m1; m++)
                for (int n = 0; n < APB_SPMM_NC; n++) {
                    float s = 0.0f;
                    for (int64_t e = R.row_ptr[m]; e < R.row_ptr[m + 1]; e++) {
                        float v = R.val[e], x = X[apb_csr_col(&R, e) + n];
                        s = lvl == APB_ISA_REF ? s + v * x : fmaf(v, x, s);
                    }
                    float got = out[(size_t)(m - m0) * APB_SPMM_NC + n];
                    if (memcmp(&got, &s, sizeof s)) {
                        fprintf(stderr, "level %d rows [%d,%d) m=%d n=%d: %.9g want %.9g\n", lvl,
                                m0, m1, m, n, got, s);
                        CHECK(0);
                    }
                }
            CHECK(out[(size_t)(m1 - m0) * APB_SPMM_NC] == 12345.0f);
        }
    }
    CHECK_OK(apb_isa_force(best));
    apb_csr_free(&R);
    free(Rd);
    free(X);
    free(out);
    return 0;
}

/* One plane kind's chunk kernel (1: binary bytes +1 / -1 / 0, apb_spmm_offset_i8;
 * 2: unsigned 8-bit codes, 3: signed ones, times a step, apb_spmm_offset_q8)
 * against apb_spmm_offset_kernel on the same values as floats, element by
 * element, at every ISA level; the float kernel against its definition. */
static int offset_bytes_case(int M, int K, double dens, uint64_t seed, int kind)
{
    apb_rng r;
    apb_rng_seed(&r, seed);
    float *Rd = sparse_dense(&r, M, K, dens), s = 0.0371f;
    float *X = malloc(sizeof(float) * (K + APB_SPMM_NC));
    uint8_t *Q = malloc(K + APB_SPMM_NC);
    float *want = malloc(sizeof(float) * (M + 1) * APB_SPMM_NC);
    float *got = malloc(sizeof(float) * (M + 1) * APB_SPMM_NC);
    CHECK(Rd && X && Q && want && got);
    for (int i = 0; i < K + APB_SPMM_NC; i++) {
        uint64_t u = apb_rng_next(&r);
        int c = kind == 1 ? (u % 5 == 0 ? 0 : u % 5 <= 2 ? 1 : -1)
                : kind == 2 ? (int)(u % 256) : (int)(u % 256) - 128;
        Q[i] = (uint8_t)c;
        X[i] = kind == 1 ? (float)c : (float)c * s;
    }
    for (int k = 0; k < K; k += K / 700 + 1) /* one dense-ish row, one empty row */
        Rd[(size_t)4 * K + k] = apb_rng_normal(&r);
    for (int k = 0; k < K; k++)
        Rd[(size_t)7 * K + k] = 0.0f;
    apb_csr R;
    CHECK_OK(apb_csr_from_dense(&R, M, K, Rd, K));
    CHECK(R.idx_bytes == (K <= 65536 ? 2 : 4));
    apb_isa best = apb_isa_detected(), prev = apb_isa_active();
    int cases[][2] = {{0, M}, {1, 9}, {4, 5}, {7, 8}, {8, 13}};
    int compared = 0;
    for (int lvl = APB_ISA_REF; lvl <= (int)best; lvl++) {
        CHECK_OK(apb_isa_force((apb_isa)lvl));
        apb_spmm_offset_fn fn = apb_spmm_offset_kernel();
        apb_spmm_offset_i8_fn fn8 = apb_spmm_offset_i8_kernel();
        apb_spmm_offset_q8_fn fq = apb_spmm_offset_q8_kernel();
        for (int c = 0; c < 5; c++) {
            int m0 = cases[c][0], m1 = cases[c][1];
            for (int i = 0; i < (M + 1) * APB_SPMM_NC; i++)
                got[i] = 12345.0f;
            fn(&R, m0, m1, X, want);
            if (kind == 1)
                fn8(&R, m0, m1, (const int8_t *)Q, got);
            else
                fq(&R, m0, m1, Q, kind == 3, s, got);
            for (int m = m0; m < m1; m++) /* the float kernel against its definition */
                for (int n = 0; n < APB_SPMM_NC; n++) {
                    float sum = 0.0f;
                    for (int64_t e = R.row_ptr[m]; e < R.row_ptr[m + 1]; e++) {
                        float v = R.val[e], x = X[apb_csr_col(&R, e) + n];
                        sum = lvl == APB_ISA_REF ? sum + v * x : fmaf(v, x, sum);
                    }
                    CHECK_MSG(!memcmp(&sum, &want[(m - m0) * APB_SPMM_NC + n], sizeof sum),
                              "K %d level %d m %d n %d: float kernel %.9g, want %.9g", K, lvl, m, n,
                              want[(m - m0) * APB_SPMM_NC + n], sum);
                }
            for (int i = 0; i < (m1 - m0) * APB_SPMM_NC; i++, compared++)
                CHECK_MSG(!memcmp(&got[i], &want[i], sizeof(float)),
                          "K %d kind %d level %d rows [%d,%d) at %d: %.9g want %.9g", K, kind, lvl, m0,
                          m1, i, got[i], want[i]);
            CHECK(got[(size_t)(m1 - m0) * APB_SPMM_NC] == 12345.0f);
        }
    }
    CHECK_OK(apb_isa_force(prev));
    CHECK(compared > 1000);
    apb_csr_free(&R);
    free(Rd), free(X), free(Q), free(want), free(got);
    return 0;
}

/* apb_spmm_offset_i8_kernel at every ISA level: over byte planes of +1, -1 and 0
 * (binary activations with padding), each element is bit for bit what
 * apb_spmm_offset_kernel gives on the same values as floats at the same level
 * (the products are exact); rows of other tasks and the words past each row's
 * 64 are left alone. Rows of 1-4 entries and a dense one exercise the 4-row
 * kernel's uneven tails; K = 70000 the 32-bit column indices (the runtime's
 * offsets into a layer's planes usually need them). */
APB_TEST(test_spmm_offset_i8_equals_float_planes)
{
    CHECK(offset_bytes_case(13, 700, 0.01, 34, 1) == 0);
    CHECK(offset_bytes_case(13, 70000, 0.0002, 35, 1) == 0);
    return 0;
}

/* apb_spmm_offset_q8_kernel: 8-bit codes (unsigned, or signed bytes) times a
 * step give, element by element, what apb_spmm_offset_kernel gives on the float
 * planes code * s, at every ISA level, for 16- and 32-bit column indices. */
APB_TEST(test_spmm_offset_q8_equals_float_planes)
{
    for (int sg = 0; sg < 2; sg++) {
        CHECK(offset_bytes_case(13, 700, 0.01, 36 + sg, 2 + sg) == 0);
        CHECK(offset_bytes_case(13, 70000, 0.0002, 38 + sg, 2 + sg) == 0);
    }
    return 0;
}
