/* spmm.c - CSR storage of the APB residual and sparse x dense products.
 *
 * apb_spmm walks the output in tiles of (row block) x (APB_SPMM_NC columns): the
 * X slab X[:, n0:n0+NC] (K x 256 bytes) stays in L2 while every row of the block
 * streams its nonzeros through it, and the Y chunk stays in registers. Tiles are
 * spread over OpenMP threads; each output element sums its row's entries in CSR
 * order whatever the tiling, so results do not depend on the thread count. The
 * chunk kernel is chosen by apb_isa_active() (portable C / AVX2 / AVX-512).
 */
#include "spmm.h"

#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "threads.h"
#include "arena.h"

apb_status apb_csr_alloc(apb_csr *R, int M, int K, int64_t nnz)
{
    memset(R, 0, sizeof *R);
    if (M < 0 || K < 0 || nnz < 0 || nnz > (int64_t)M * K)
        return apb_fail(APB_EINVAL, "apb_csr_alloc: M=%d K=%d nnz=%lld", M, K, (long long)nnz);
    R->M = M;
    R->K = K;
    R->nnz = nnz;
    R->idx_bytes = K <= 65536 ? 2 : 4;
    R->row_ptr = calloc((size_t)M + 1, sizeof(int64_t));
    R->val = malloc(sizeof(float) * (size_t)(nnz > 0 ? nnz : 1));
    if (R->idx_bytes == 2)
        R->col16 = malloc(sizeof(uint16_t) * (size_t)(nnz > 0 ? nnz : 1));
    else
        R->col32 = malloc(sizeof(uint32_t) * (size_t)(nnz > 0 ? nnz : 1));
    if (!R->row_ptr || !R->val || (!R->col16 && !R->col32)) {
        apb_csr_free(R);
        return apb_fail(APB_ENOMEM, "apb_csr_alloc: M=%d K=%d nnz=%lld", M, K, (long long)nnz);
    }
    return APB_OK;
}

apb_status apb_csr_from_dense(apb_csr *R, int M, int K, const float *Rd, int ldr)
{
    memset(R, 0, sizeof *R);
    if (M < 0 || K < 0 || ldr < K)
        return apb_fail(APB_EINVAL, "apb_csr_from_dense: M=%d K=%d ldr=%d", M, K, ldr);
    int64_t nnz = 0;
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            nnz += Rd[(size_t)m * ldr + k] != 0.0f;
    APB_TRY(apb_csr_alloc(R, M, K, nnz));
    int64_t e = 0;
    for (int m = 0; m < M; m++) {
        for (int k = 0; k < K; k++) {
            float v = Rd[(size_t)m * ldr + k];
            if (v != 0.0f) {
                if (R->col16)
                    R->col16[e] = (uint16_t)k;
                else
                    R->col32[e] = (uint32_t)k;
                R->val[e++] = v;
            }
        }
        R->row_ptr[m + 1] = e;
    }
    return APB_OK;
}

apb_status apb_csr_validate(const apb_csr *R)
{
    if (R->M < 0 || R->K < 0 || (R->idx_bytes != 2 && R->idx_bytes != 4) ||
        (R->idx_bytes == 2 && (!R->col16 || R->K > 65536)) || (R->idx_bytes == 4 && !R->col32))
        return apb_fail(APB_EFORMAT, "csr: M=%d K=%d idx_bytes=%d inconsistent", R->M, R->K,
                        R->idx_bytes);
    if (!R->row_ptr || R->row_ptr[0] != 0 || R->row_ptr[R->M] != R->nnz)
        return apb_fail(APB_EFORMAT, "csr: row_ptr must start at 0 and end at nnz=%lld",
                        (long long)R->nnz);
    for (int m = 0; m < R->M; m++) {
        if (R->row_ptr[m + 1] < R->row_ptr[m])
            return apb_fail(APB_EFORMAT, "csr: row_ptr decreases at row %d", m);
        int prev = -1;
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++) {
            int k = apb_csr_col(R, e);
            if (k <= prev || k >= R->K)
                return apb_fail(APB_EFORMAT, "csr: row %d entry %lld column %d (K=%d, previous %d)",
                                m, (long long)e, k, R->K, prev);
            prev = k;
        }
    }
    return APB_OK;
}

void apb_csr_free(apb_csr *R)
{
    free(R->row_ptr);
    free(R->col16);
    free(R->col32);
    free(R->val);
    memset(R, 0, sizeof *R);
}

static apb_status check(const char *fn, const apb_csr *R, int N, int ldx, int ldy, int xt)
{
    if (N < 0)
        return apb_fail(APB_EINVAL, "%s: N=%d", fn, N);
    if (xt ? ldx < R->K : ldx < N)
        return apb_fail(APB_EINVAL, "%s: ldx=%d too small (K=%d, N=%d)", fn, ldx, R->K, N);
    if (ldy < N)
        return apb_fail(APB_EINVAL, "%s: ldy=%d < N=%d", fn, ldy, N);
    return APB_OK;
}

apb_status apb_spmm_ref(const apb_csr *R, int N, const float *X, int ldx, float *Y, int ldy)
{
    APB_TRY(check("apb_spmm_ref", R, N, ldx, ldy, 0));
    for (int m = 0; m < R->M; m++)
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++) {
            const float *x = X + (size_t)apb_csr_col(R, e) * ldx;
            float v = R->val[e], *y = Y + (size_t)m * ldy;
            for (int n = 0; n < N; n++)
                y[n] += v * x[n];
        }
    return APB_OK;
}

/* Portable chunk kernel: the row chunk is kept in a local array. */
static void chunk_c(const apb_csr *R, int m0, int m1, int n0, int nc, const float *X, int ldx,
                    float *Y, int ldy)
{
    float acc[APB_SPMM_NC];
    for (int m = m0; m < m1; m++) {
        float *y = Y + (size_t)m * ldy + n0;
        for (int n = 0; n < nc; n++)
            acc[n] = y[n];
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++) {
            const float *x = X + (size_t)apb_csr_col(R, e) * ldx + n0;
            float v = R->val[e];
            for (int n = 0; n < nc; n++)
                acc[n] += v * x[n];
        }
        for (int n = 0; n < nc; n++)
            y[n] = acc[n];
    }
}

#define SP_MB 32

/* Slab path (AVX-512): the X columns of a chunk, X[:, n0:n0+64], are first
 * copied to a contiguous per-thread slab [K, 64] (zero past N). Read in place,
 * rows of a wide X are ldx*4 bytes apart: every entry then touches its own page
 * and, for strides near a multiple of 4 KB, the same few L1 sets, so the chunk
 * kernel waits on L2 for most entries. The copy costs one pass over X per chunk
 * and task; the kernel and the per-element operations are the chunk kernel's. */
static int slab_on = 1;

int apb_spmm_slab_enable(int on)
{
    int prev = slab_on;
    slab_on = on != 0;
    return prev;
}

static int spmm_slab(const apb_csr *R, int N, const float *X, int ldx, float *Y, int ldy)
{
    int tn = (N + APB_SPMM_NC - 1) / APB_SPMM_NC, nth = apb_threads_get();
    if ((double)R->nnz * N < 1e5)
        nth = 1;
    /* few chunks (small N): split the rows instead, each task copies its slab */
    int tm = tn >= nth ? 1 : (nth + tn - 1) / tn;
    int mb = ((R->M + tm - 1) / tm + 3) & ~3;
    tm = (R->M + mb - 1) / mb;
    int nt = tn * tm, failed = 0;
    if (nth > nt)
        nth = nt;
    size_t bytes = (size_t)R->K * APB_SPMM_NC * sizeof(float);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        float *slab = apb_thread_scratch(APB_TLS_SPMM, bytes);
        if (!slab) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < nt; t++) {
            if (!slab)
                continue;
            int n0 = (t / tm) * APB_SPMM_NC, m0 = (t % tm) * mb;
            int nc = N - n0 < APB_SPMM_NC ? N - n0 : APB_SPMM_NC;
            int m1 = R->M - m0 < mb ? R->M : m0 + mb;
            for (int k = 0; k < R->K; k++) {
                float *d = slab + (size_t)k * APB_SPMM_NC;
                memcpy(d, X + (size_t)k * ldx + n0, (size_t)nc * sizeof(float));
                if (nc < APB_SPMM_NC)
                    memset(d + nc, 0, (size_t)(APB_SPMM_NC - nc) * sizeof(float));
            }
            apb_spmm_chunk_avx512(R, m0, m1, 0, nc, slab, APB_SPMM_NC, Y + n0, ldy);
        }
    }
    return failed;
}

apb_status apb_spmm(const apb_csr *R, int N, const float *X, int ldx, float *Y, int ldy)
{
    APB_TRY(check("apb_spmm", R, N, ldx, ldy, 0));
    if (R->M == 0 || N == 0 || R->nnz == 0)
        return APB_OK;
    if (apb_isa_active() == APB_ISA_AVX512 && slab_on &&
        spmm_slab(R, N, X, ldx, Y, ldy) == 0)
        return APB_OK;
    apb_spmm_chunk_fn fn = chunk_c;
    if (apb_isa_active() == APB_ISA_AVX512)
        fn = apb_spmm_chunk_avx512;
    else if (apb_isa_active() == APB_ISA_AVX2)
        fn = apb_spmm_chunk_avx2;
    int tm = (R->M + SP_MB - 1) / SP_MB, tn = (N + APB_SPMM_NC - 1) / APB_SPMM_NC;
    int nt = tm * tn, nth = apb_threads_get();
    if ((double)R->nnz * N < 1e5)
        nth = 1;
    if (nth > nt)
        nth = nt;
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(dynamic, 1)
    for (int t = 0; t < nt; t++) {
        /* column chunk outer so consecutive tiles share the X slab */
        int n0 = (t / tm) * APB_SPMM_NC, m0 = (t % tm) * SP_MB;
        int nc = N - n0 < APB_SPMM_NC ? N - n0 : APB_SPMM_NC;
        int m1 = R->M - m0 < SP_MB ? R->M : m0 + SP_MB;
        fn(R, m0, m1, n0, nc, X, ldx, Y, ldy);
    }
    return APB_OK;
}

/* The value of plane element n by kind: 0 floats, 1 signed bytes (binary: +-1 /
 * 0), 2 unsigned codes times s, 3 signed codes times s. */
static inline float plane_val(const void *x, long n, int kind, float s)
{
    switch (kind) {
    case 0: return ((const float *)x)[n];
    case 1: return (float)((const int8_t *)x)[n];
    case 2: return (float)((const uint8_t *)x)[n] * s;
    default: return (float)((const int8_t *)x)[n] * s;
    }
}

/* The portable chunk kernel over any plane kind: multiply, then add. */
static void offset_any_c(const apb_csr *R, int m0, int m1, const void *X, int kind, float s,
                         float *out)
{
    size_t vsz = kind ? 1 : sizeof(float);
    for (int m = m0; m < m1; m++) {
        float *y = out + (size_t)(m - m0) * APB_SPMM_NC;
        for (int n = 0; n < APB_SPMM_NC; n++)
            y[n] = 0.0f;
        for (int64_t e = R->row_ptr[m]; e < R->row_ptr[m + 1]; e++) {
            const char *x = (const char *)X + (size_t)apb_csr_col(R, e) * vsz;
            float v = R->val[e];
            for (int n = 0; n < APB_SPMM_NC; n++)
                y[n] += v * plane_val(x, n, kind, s);
        }
    }
}

static void offset_c(const apb_csr *R, int m0, int m1, const float *X, float *out)
{
    offset_any_c(R, m0, m1, X, 0, 0.0f, out);
}

static void offset_i8_c(const apb_csr *R, int m0, int m1, const int8_t *X, float *out)
{
    offset_any_c(R, m0, m1, X, 1, 0.0f, out);
}

static void offset_q8_c(const apb_csr *R, int m0, int m1, const uint8_t *X, int is_signed, float s,
                        float *out)
{
    offset_any_c(R, m0, m1, X, is_signed ? 3 : 2, s, out);
}

apb_spmm_offset_q8_fn apb_spmm_offset_q8_kernel(void)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: return apb_spmm_offset_q8_avx512;
    case APB_ISA_AVX2: return apb_spmm_offset_q8_avx2;
    default: return offset_q8_c;
    }
}

apb_spmm_offset_i8_fn apb_spmm_offset_i8_kernel(void)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: return apb_spmm_offset_i8_avx512;
    case APB_ISA_AVX2: return apb_spmm_offset_i8_avx2;
    default: return offset_i8_c;
    }
}

apb_spmm_offset_fn apb_spmm_offset_kernel(void)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: return apb_spmm_offset_avx512;
    case APB_ISA_AVX2: return apb_spmm_offset_avx2;
    default: return offset_c;
    }
}

apb_status apb_spmm_xt(const apb_csr *R, int N, const float *Xt, int ldxt, float *Y, int ldy)
{
    APB_TRY(check("apb_spmm_xt", R, N, ldxt, ldy, 1));
    if (R->M == 0 || N == 0 || R->nnz == 0)
        return APB_OK;
    int nth = apb_threads_get();
    if ((double)R->nnz * N < 1e5)
        nth = 1;
    /* each pixel row of Xt (K floats) is read once per block of 8 pixels */
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
    for (int m = 0; m < R->M; m++) {
        int64_t e0 = R->row_ptr[m], e1 = R->row_ptr[m + 1];
        float *y = Y + (size_t)m * ldy;
        for (int n = 0; n < N; n++) {
            const float *x = Xt + (size_t)n * ldxt;
            float s = y[n];
            for (int64_t e = e0; e < e1; e++)
                s += R->val[e] * x[apb_csr_col(R, e)];
            y[n] = s;
        }
    }
    return APB_OK;
}
