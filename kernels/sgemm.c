/* sgemm.c - the sgemm driver: packing, cache blocking, OpenMP over macro-tiles and
 * run-time choice of the register-blocked micro-kernel (BLIS-style loop nest;
 * AVX-512 uses 8-row instead of 12-row panels when that pads M less, M <= 64).
 *
 * C is cut into at most apb_threads_get() rectangular macro-tiles, one per thread
 * (the larger of M and N is split, so the operand packed twice is the smaller
 * one). Within a tile:
 *   for jc in N by NC:                 B block kc x nc packed, stays in L2
 *     for pc in K by KC:               first K block applies beta, later ones add
 *       pack op(B)[pc:pc+kc, jc:jc+nc] into NR-wide micro-panels
 *       for ic in M by MC:
 *         pack op(A)[ic:ic+mc, pc:pc+kc] into MR-tall micro-panels
 *         for each MR micro-panel of A (stays in L1), for each NR panel of B:
 *           micro-kernel (MR x NR register tile)
 * With at most 2*MR rows in a tile and B not transposed, full-width B panels are
 * read in place instead of packed (the copy would cost as much as the multiply).
 * Packing buffers are thread-local, 64-byte aligned and only ever grow, so steady
 * state makes no allocation. Small problems run on one thread (fork/join costs more
 * than it saves). Results are bitwise identical for any thread count: every C
 * element is summed over K in the same order whatever the tiling.
 */
#include "sgemm.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "arena.h"
#include "cpu.h"
#include "sgemm_internal.h"
#include "threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define REF_MR 4
#define REF_NR 8

/* Portable micro-kernel: the REF level and the model the ISA kernels follow. */
static void kernel_ref_4x8(int kc, const float *pa, const float *pb, long ldpb, float *c,
                           long ldc, float alpha, float beta, int mr, int nr)
{
    float acc[REF_MR][REF_NR] = {{0}};
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < REF_MR; i++)
            for (int j = 0; j < REF_NR; j++)
                acc[i][j] += pa[i] * pb[j];
        pa += REF_MR;
        pb += ldpb;
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float r = alpha * acc[i][j];
            c[i * ldc + j] = beta == 0.0f ? r : r + beta * c[i * ldc + j];
        }
}

static const apb_sgemm_kinfo kinfos[APB_ISA_COUNT] = {
    [APB_ISA_REF] = {REF_MR, REF_NR, 256, 128, 1024, kernel_ref_4x8, NULL},
    [APB_ISA_AVX2] = {6, 16, 256, 144, 1024, apb_sgemm_kernel_avx2_6x16, apb_sgemm_pack_t_avx2},
    [APB_ISA_AVX512] = {12, 32, 384, 240, 768, apb_sgemm_kernel_avx512_12x32,
                        apb_sgemm_pack_t_avx2},
};
/* AVX-512 with 8-row panels, for small M that 12 does not divide (see sgemm_avx512.c). */
static const apb_sgemm_kinfo kinfo_avx512_m8 = {8, 32, 384, 240, 768,
                                                apb_sgemm_kernel_avx512_8x32,
                                                apb_sgemm_pack_t_avx2};

static const apb_sgemm_kinfo *pick_kinfo(int M)
{
    apb_isa isa = apb_isa_active();
    if (isa == APB_ISA_AVX512 && M <= 64 && (M + 7) / 8 * 8 < (M + 11) / 12 * 12)
        return &kinfo_avx512_m8;
    return &kinfos[isa];
}

/* Thread-local packing buffer; grows, never shrinks (one per OpenMP worker). A
 * pthread key frees it when its thread exits (OpenMP retires workers when a team
 * shrinks), so the buffer does not outlive the thread. */
static _Thread_local float *tl_buf;
static _Thread_local size_t tl_cap;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static int tl_key_ok;

static void tl_release(void *p) { apb_free_aligned(p); }
static void tl_key_make(void) { tl_key_ok = pthread_key_create(&tl_key, tl_release) == 0; }

static float *scratch(size_t floats)
{
    if (floats > tl_cap) {
        float *p = apb_alloc_aligned(floats * sizeof(float));
        if (!p)
            return NULL;
        apb_free_aligned(tl_buf);
        tl_buf = p;
        tl_cap = floats;
        pthread_once(&tl_once, tl_key_make);
        if (tl_key_ok)
            pthread_setspecific(tl_key, p);
    }
    return tl_buf;
}

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }
static int imin(int a, int b) { return a < b ? a : b; }

/* op(A)[m0:m0+mc, k0:k0+kc] -> pa: ceil(mc/MR) panels of [kc][MR], zero padded. */
static void pack_a(const apb_sgemm_kinfo *ki, int transa, const float *A, long lda, int m0,
                   int mc, int k0, int kc, float *pa)
{
    const int MR = ki->mr;
    for (int i0 = 0; i0 < mc; i0 += MR) {
        int mr = imin(MR, mc - i0);
        float *d = pa + (long)i0 * kc;
        if (transa) { /* A stored [K, M]: each k row gives MR consecutive values */
            for (int k = 0; k < kc; k++) {
                const float *s = A + (long)(k0 + k) * lda + m0 + i0;
                float *dk = d + (long)k * MR;
                for (int i = 0; i < mr; i++)
                    dk[i] = s[i];
                for (int i = mr; i < MR; i++)
                    dk[i] = 0.0f;
            }
        } else if (ki->pack_t) {
            ki->pack_t(A + (long)(m0 + i0) * lda + k0, lda, mr, kc, MR, d);
        } else {
            for (int i = 0; i < MR; i++) {
                if (i < mr) {
                    const float *s = A + (long)(m0 + i0 + i) * lda + k0;
                    for (int k = 0; k < kc; k++)
                        d[(long)k * MR + i] = s[k];
                } else {
                    for (int k = 0; k < kc; k++)
                        d[(long)k * MR + i] = 0.0f;
                }
            }
        }
    }
}

/* op(B)[k0:k0+kc, n0:n0+nc] -> pb: ceil(nc/NR) panels of [kc][NR], zero padded. */
static void pack_b(const apb_sgemm_kinfo *ki, int transb, const float *B, long ldb, int n0,
                   int nc, int k0, int kc, float *pb)
{
    const int NR = ki->nr;
    for (int j0 = 0; j0 < nc; j0 += NR) {
        int nr = imin(NR, nc - j0);
        float *d = pb + (long)j0 * kc;
        if (!transb) { /* B stored [K, N]: each k row gives NR consecutive values */
            for (int k = 0; k < kc; k++) {
                const float *s = B + (long)(k0 + k) * ldb + n0 + j0;
                float *dk = d + (long)k * NR;
                if (nr == NR) {
                    memcpy(dk, s, sizeof(float) * (size_t)NR);
                } else {
                    for (int j = 0; j < nr; j++)
                        dk[j] = s[j];
                    for (int j = nr; j < NR; j++)
                        dk[j] = 0.0f;
                }
            }
        } else if (ki->pack_t) { /* B stored [N, K]: a transpose, like non-transposed A */
            ki->pack_t(B + (long)(n0 + j0) * ldb + k0, ldb, nr, kc, NR, d);
        } else {
            for (int j = 0; j < NR; j++) {
                if (j < nr) {
                    const float *s = B + (long)(n0 + j0 + j) * ldb + k0;
                    for (int k = 0; k < kc; k++)
                        d[(long)k * NR + j] = s[k];
                } else {
                    for (int k = 0; k < kc; k++)
                        d[(long)k * NR + j] = 0.0f;
                }
            }
        }
    }
}

typedef struct {
    const apb_sgemm_kinfo *ki;
    int transa, transb, K;
    float alpha, beta;
    const float *A, *B;
    long lda, ldb, ldc;
    float *C;
} gemm_args;

/* C[m0:m0+mlen, n0:n0+nlen] on the calling thread. Returns 0, or -1 if the
 * packing buffer could not be allocated (nothing written then). */
static int run_tile(const gemm_args *g, int m0, int mlen, int n0, int nlen)
{
    const apb_sgemm_kinfo *ki = g->ki;
    const int MR = ki->mr, NR = ki->nr;
    int kcmax = imin(ki->kc, g->K), ncmax = imin(ki->nc, nlen), mcmax = imin(ki->mc, mlen);
    size_t nb = round_up((size_t)ncmax, NR) * kcmax, na = round_up((size_t)mcmax, MR) * kcmax;
    float *buf = scratch(round_up(nb, 16) + na);
    if (!buf)
        return -1;
    float *pb = buf, *pa = buf + round_up(nb, 16);
    /* With few rows, packed B would be read only once or twice: cheaper to read a
     * non-transposed B in place, as copying a 3136 x 128 B (1.6 MB) would cost more
     * than the multiply (e.g. M=10, N=128, K=3136 from a linear layer). */
    int direct = !g->transb && mlen <= 2 * MR;
    for (int jc = 0; jc < nlen; jc += ncmax) {
        int nc = imin(ncmax, nlen - jc);
        for (int pc = 0; pc < g->K; pc += kcmax) {
            int kc = imin(kcmax, g->K - pc);
            float beta = pc == 0 ? g->beta : 1.0f;
            if (direct) /* only the ragged last panel needs packing (zero padding) */
                pack_b(ki, 0, g->B, g->ldb, n0 + jc + nc / NR * NR, nc % NR, pc, kc, pb);
            else
                pack_b(ki, g->transb, g->B, g->ldb, n0 + jc, nc, pc, kc, pb);
            for (int ic = 0; ic < mlen; ic += mcmax) {
                int mc = imin(mcmax, mlen - ic);
                pack_a(ki, g->transa, g->A, g->lda, m0 + ic, mc, pc, kc, pa);
                for (int ir = 0; ir < mc; ir += MR) {
                    float *c = g->C + (long)(m0 + ic + ir) * g->ldc + n0 + jc;
                    const float *a = pa + (long)ir * kc;
                    int mr = imin(MR, mc - ir);
                    for (int jr = 0; jr < nc; jr += NR) {
                        int nr = imin(NR, nc - jr);
                        if (direct && nr == NR)
                            ki->kernel(kc, a, g->B + (long)pc * g->ldb + n0 + jc + jr, g->ldb,
                                       c + jr, g->ldc, g->alpha, beta, mr, nr);
                        else
                            ki->kernel(kc, a, direct ? pb : pb + (long)jr * kc, NR, c + jr,
                                       g->ldc, g->alpha, beta, mr, nr);
                    }
                }
            }
        }
    }
    return 0;
}

/* C = beta * C (beta == 0: C = 0 without reading it). */
static void scale_c(int M, int N, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (long)i * ldc;
        if (beta == 0.0f)
            memset(c, 0, sizeof(float) * (size_t)N);
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++)
                c[j] *= beta;
    }
}

void apb_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    gemm_args g = {pick_kinfo(M), transa, transb, K, alpha, beta, A, B,
                   lda, ldb, ldc, C};
    const int MR = g.ki->mr, NR = g.ki->nr;

    /* Threads: only when there is enough work to pay for the fork/join. */
    int nt = 1;
    double flops = 2.0 * M * N * K;
    if (flops >= 4e6) {
        nt = apb_threads_get();
#ifdef _OPENMP
        if (omp_in_parallel())
            nt = 1;
#endif
    }
    /* Split the larger dimension (in micro-tiles) among the threads. */
    int tm = 1, tn = 1;
    if (nt > 1) {
        long mt = (M + MR - 1) / MR, ntl = (N + NR - 1) / NR;
        if (mt * MR >= ntl * NR)
            tm = (int)(mt < nt ? mt : nt);
        else
            tn = (int)(ntl < nt ? ntl : nt);
        nt = tm * tn;
    }
    int msz = (int)round_up((size_t)((M + tm - 1) / tm), MR);
    int nsz = (int)round_up((size_t)((N + tn - 1) / tn), NR);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
#endif
    for (int t = 0; t < tm * tn; t++) {
        int m0 = (t / tn) * msz, n0 = (t % tn) * nsz;
        if (m0 >= M || n0 >= N)
            continue;
        int ml = imin(msz, M - m0), nl = imin(nsz, N - n0);
        if (run_tile(&g, m0, ml, n0, nl) != 0) /* no memory to pack: unblocked reference */
            apb_sgemm_ref(transa, transb, ml, nl, K, alpha,
                          transa ? A + m0 : A + (long)m0 * lda, lda,
                          transb ? B + (long)n0 * ldb : B + n0, ldb, beta,
                          C + (long)m0 * ldc + n0, ldc);
    }
}

/* Tiles of the dot-product NT product (AVX-512 only), optionally threaded over
 * 6-row blocks of B. */
static void nt_tiles(int M, int N, int K, int nb, float alpha, const float *A, int lda, long sa,
                     const float *B, const long *boff, long sb, float *C, int ldc)
{
    /* B rows outer, A rows inner: a 6-row block of B stays in L1 while all of A
     * (typically dy, the smaller operand) streams past it. */
    int nj = (N + 5) / 6, nt = 1;
    if (2.0 * M * N * K * nb >= 4e6) {
        nt = apb_threads_get();
#ifdef _OPENMP
        if (omp_in_parallel())
            nt = 1;
#endif
        if (nt > nj)
            nt = nj;
    }
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
#endif
    for (int jb = 0; jb < nj; jb++) {
        int j0 = jb * 6, nr = imin(6, N - j0);
        for (int i0 = 0; i0 < M; i0 += 4)
            apb_sgemm_nt_tile_avx512(K, nb, alpha, A + (long)i0 * lda, lda, sa, imin(4, M - i0),
                                     B, boff + j0, sb, nr, C + (long)i0 * ldc + j0, ldc);
    }
}

void apb_sgemm_nt_rows(int M, int N, int K, int nb, float alpha, const float *A, int lda,
                       long sa, const float *B, const long *boff, long sb, float *C, int ldc)
{
    if (M <= 0 || N <= 0 || K <= 0 || nb <= 0)
        return;
    if (apb_isa_active() == APB_ISA_AVX512) {
        nt_tiles(M, N, K, nb, alpha, A, lda, sa, B, boff, sb, C, ldc);
        return;
    }
    for (int b = 0; b < nb; b++) /* portable: plain dot products */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                const float *a = A + b * sa + (long)i * lda, *r = B + b * sb + boff[j];
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int k = 0; k < K; k++)
                    acc += a[k] * r[k];
                C[(long)i * ldc + j] += alpha * acc;
            }
}

void apb_sgemm_nt_batch(int M, int N, int K, int nb, float alpha, const float *A, int lda,
                        long sa, const float *B, int ldb, long sb, float *C, int ldc)
{
    if (M <= 0 || N <= 0 || K <= 0 || nb <= 0)
        return;
    /* Without AVX-512, and from M = 48 on (the transposing packs are then a small
     * share of the work and the packed kernel reuses its registers better: 114 vs
     * 69 GFLOP/s at 64x576x64), the packed GEMM image by image is faster. */
    if (apb_isa_active() != APB_ISA_AVX512 || M >= 48) {
        for (int b = 0; b < nb; b++)
            apb_sgemm(0, 1, M, N, K, alpha, A + b * sa, lda, B + b * sb, ldb, 1.0f, C, ldc);
        return;
    }
    long off[64];
    for (int j0 = 0; j0 < N; j0 += 64) {
        int n = imin(64, N - j0);
        for (int j = 0; j < n; j++)
            off[j] = (long)j * ldb;
        nt_tiles(M, n, K, nb, alpha, A, lda, sa, B + (long)j0 * ldb, off, sb, C + j0, ldc);
    }
}
