/* sgemm.c - the sgemm driver: packing, cache blocking, OpenMP over macro-tiles and
 * run-time choice of the register-blocked micro-kernel (BLIS-style loop nest;
 * AVX-512 uses 8-row instead of 12-row panels when that pads M less, M <= 64).
 * Also the convolution GEMM apb_sgemm_conv (B = shifted rows of a padded image,
 * same loop nest and kernels, so the same sums) and the dot-product NT products.
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
#include <xmmintrin.h>

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

/* Thread-local packing buffers; grow, never shrink (one set per OpenMP worker).
 * Slot 0: the panels of one macro-tile; slot 1: a whole packed A shared by the
 * images of apb_sgemm_conv_batch; slot 2: the transposed gradient of apb_sgemm_dw3.
 * A pthread key frees them when their thread exits (OpenMP retires workers when a
 * team shrinks), so no buffer outlives its thread. */
#define NSLOT 3
static _Thread_local float *tl_buf[NSLOT];
static _Thread_local size_t tl_cap[NSLOT];
static pthread_key_t tl_key[NSLOT];
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static int tl_key_ok;

static void tl_release(void *p) { apb_free_aligned(p); }
static void tl_key_make(void)
{
    tl_key_ok = 1;
    for (int i = 0; i < NSLOT; i++)
        tl_key_ok &= pthread_key_create(&tl_key[i], tl_release) == 0;
}

static float *scratch_slot(int slot, size_t floats)
{
    if (floats > tl_cap[slot]) {
        float *p = apb_alloc_aligned(floats * sizeof(float));
        if (!p)
            return NULL;
        apb_free_aligned(tl_buf[slot]);
        tl_buf[slot] = p;
        tl_cap[slot] = floats;
        pthread_once(&tl_once, tl_key_make);
        if (tl_key_ok)
            pthread_setspecific(tl_key[slot], p);
    }
    return tl_buf[slot];
}

static float *scratch(size_t floats) { return scratch_slot(0, floats); }

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }
static int imin(int a, int b) { return a < b ? a : b; }

/* Micro-panels of width R: for o in [o0, o0+oc) and k in [k0, k0+kc), the value
 * X[(k0+k)*ld + o] when o is the contiguous index of X (kmajor), otherwise
 * X[o*ld + k0+k] (a transpose); p gets ceil(oc/R) panels of [kc][R], zero padded.
 * op(A) packs with kmajor = transa (R = MR), op(B) with kmajor = !transb (R = NR). */
static void pack_panels(const apb_sgemm_kinfo *ki, int kmajor, const float *X, long ld, int o0,
                        int oc, int k0, int kc, int R, float *p)
{
    for (int j0 = 0; j0 < oc; j0 += R) {
        int r = imin(R, oc - j0);
        float *d = p + (long)j0 * kc;
        if (kmajor) { /* each k row gives R consecutive values */
            for (int k = 0; k < kc; k++) {
                const float *s = X + (long)(k0 + k) * ld + o0 + j0;
                float *dk = d + (long)k * R;
                if (r == R && R == 16) { /* constant sizes: inline moves, not a libc call */
                    memcpy(dk, s, sizeof(float) * 16);
                } else if (r == R && R == 8) {
                    memcpy(dk, s, sizeof(float) * 8);
                } else if (r == R) {
                    memcpy(dk, s, sizeof(float) * (size_t)R);
                } else {
                    for (int j = 0; j < r; j++)
                        dk[j] = s[j];
                    for (int j = r; j < R; j++)
                        dk[j] = 0.0f;
                }
            }
        } else if (ki->pack_t) {
            ki->pack_t(X + (long)(o0 + j0) * ld + k0, ld, r, kc, R, d);
        } else {
            for (int j = 0; j < R; j++) {
                if (j < r) {
                    const float *s = X + (long)(o0 + j0 + j) * ld + k0;
                    for (int k = 0; k < kc; k++)
                        d[(long)k * R + j] = s[k];
                } else {
                    for (int k = 0; k < kc; k++)
                        d[(long)k * R + j] = 0.0f;
                }
            }
        }
    }
}

/* op(A)[m0:m0+mc, k0:k0+kc] -> pa: ceil(mc/MR) panels of [kc][MR], zero padded. */
static void pack_a(const apb_sgemm_kinfo *ki, int transa, const float *A, long lda, int m0,
                   int mc, int k0, int kc, float *pa)
{
    pack_panels(ki, transa, A, lda, m0, mc, k0, kc, ki->mr, pa);
}

/* op(B)[k0:k0+kc, n0:n0+nc] -> pb: ceil(nc/NR) panels of [kc][NR], zero padded. */
static void pack_b(const apb_sgemm_kinfo *ki, int transb, const float *B, long ldb, int n0,
                   int nc, int k0, int kc, float *pb)
{
    pack_panels(ki, !transb, B, ldb, n0, nc, k0, kc, ki->nr, pb);
}

typedef struct {
    const apb_sgemm_kinfo *ki;
    int transa, transb, K;
    float alpha, beta;
    const float *A, *B;
    long lda, ldb, ldc;
    float *C;
    const float *apack; /* all of A packed (apb_sgemm_apack), or NULL */
    long mpad;          /* M rounded up to MR */
    const float *bpack; /* all of op(B) packed (apb_sgemm_bpack), or NULL */
    long npad;          /* N rounded up to NR */
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
    int direct = !g->transb && mlen <= 2 * MR && !g->bpack;
    for (int jc = 0; jc < nlen; jc += ncmax) {
        int nc = imin(ncmax, nlen - jc);
        for (int pc = 0; pc < g->K; pc += kcmax) {
            int kc = imin(kcmax, g->K - pc);
            float beta = pc == 0 ? g->beta : 1.0f;
            if (g->bpack) /* block pc at pc * npad, columns n0 + jc (a multiple of NR) */
                pb = (float *)g->bpack + (long)pc * g->npad + (long)(n0 + jc) * kc;
            else if (direct) /* only the ragged last panel needs packing (zero padding) */
                pack_b(ki, 0, g->B, g->ldb, n0 + jc + nc / NR * NR, nc % NR, pc, kc, pb);
            else
                pack_b(ki, g->transb, g->B, g->ldb, n0 + jc, nc, pc, kc, pb);
            for (int ic = 0; ic < mlen; ic += mcmax) {
                int mc = imin(mcmax, mlen - ic);
                const float *pap = pa;
                if (g->apack) /* block pc at pc * mpad, rows m0 + ic (a multiple of MR) */
                    pap = g->apack + (long)pc * g->mpad + (long)(m0 + ic) * kc;
                else
                    pack_a(ki, g->transa, g->A, g->lda, m0 + ic, mc, pc, kc, pa);
                for (int ir = 0; ir < mc; ir += MR) {
                    float *c = g->C + (long)(m0 + ic + ir) * g->ldc + n0 + jc;
                    const float *a = pap + (long)ir * kc;
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

/* Threads for a product of 2*M*N*K*nb flops: only when there is enough work to pay
 * for the fork/join, and never inside an enclosing parallel region, active or not
 * (a nested team would be created anew on every call). The larger dimension, in
 * micro-tiles, is split: *tm x *tn tiles of *msz rows x *nsz columns. */
typedef struct {
    int tm, tn, msz, nsz;
} thread_split;

static thread_split split_threads(int M, int N, double flops, int MR, int NR)
{
    int nt = 1;
    if (flops >= 4e6) {
        nt = apb_threads_get();
#ifdef _OPENMP
        if (omp_get_level() > 0)
            nt = 1;
#endif
    }
    thread_split sp = {1, 1, 0, 0};
    if (nt > 1) {
        long mt = (M + MR - 1) / MR, ntl = (N + NR - 1) / NR;
        if (mt * MR >= ntl * NR)
            sp.tm = (int)(mt < nt ? mt : nt);
        else
            sp.tn = (int)(ntl < nt ? ntl : nt);
    }
    sp.msz = (int)round_up((size_t)((M + sp.tm - 1) / sp.tm), MR);
    sp.nsz = (int)round_up((size_t)((N + sp.tn - 1) / sp.tn), NR);
    return sp;
}

/* The reference product reading A from its packed form (apb_sgemm_packed with
 * A = NULL, when the packing scratch for B cannot be had): element (m, k) of
 * block pc sits at apack + pc*mpad + (m/MR)*MR*kc + (k - pc)*MR + m%MR. */
static void ref_packed(const gemm_args *g, int m0, int ml, int n0, int nl)
{
    int MR = g->ki->mr, NR = g->ki->nr, kcmax = imin(g->ki->kc, g->K);
    for (int m = m0; m < m0 + ml; m++)
        for (int n = n0; n < n0 + nl; n++) {
            float acc = 0.0f;
            for (int pc = 0; pc < g->K; pc += kcmax) {
                int kc = imin(kcmax, g->K - pc);
                for (int k = 0; k < kc; k++) {
                    float a = g->A ? (g->transa ? g->A[(long)(pc + k) * g->lda + m]
                                                : g->A[(long)m * g->lda + pc + k])
                                   : g->apack[(long)pc * g->mpad + (long)(m / MR) * MR * kc +
                                              (long)k * MR + m % MR];
                    float b = g->B ? (g->transb ? g->B[(long)n * g->ldb + pc + k]
                                                : g->B[(long)(pc + k) * g->ldb + n])
                                   : g->bpack[(long)pc * g->npad + (long)(n / NR) * NR * kc +
                                              (long)k * NR + n % NR];
                    acc += a * b;
                }
            }
            float *c = g->C + (long)m * g->ldc + n;
            *c = g->beta == 0.0f ? g->alpha * acc : g->alpha * acc + g->beta * *c;
        }
}

static void sgemm_run(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *apack, const float *B, int ldb, const float *bpack,
                      float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    gemm_args g = {pick_kinfo(M), transa, transb, K, alpha, beta, A, B,
                   lda, ldb, ldc, C, apack, 0, bpack, 0};
    g.mpad = (long)round_up((size_t)M, (size_t)g.ki->mr);
    g.npad = (long)round_up((size_t)N, (size_t)g.ki->nr);
    const int MR = g.ki->mr, NR = g.ki->nr;

    thread_split sp = split_threads(M, N, 2.0 * M * N * K, MR, NR);
    int tm = sp.tm, tn = sp.tn, msz = sp.msz, nsz = sp.nsz, nt = tm * tn;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
#endif
    for (int t = 0; t < tm * tn; t++) {
        int m0 = (t / tn) * msz, n0 = (t % tn) * nsz;
        if (m0 >= M || n0 >= N)
            continue;
        int ml = imin(msz, M - m0), nl = imin(nsz, N - n0);
        if (run_tile(&g, m0, ml, n0, nl) == 0)
            continue;
        if (A && B) /* no memory to pack: unblocked reference */
            apb_sgemm_ref(transa, transb, ml, nl, K, alpha,
                          transa ? A + m0 : A + (long)m0 * lda, lda,
                          transb ? B + (long)n0 * ldb : B + n0, ldb, beta,
                          C + (long)m0 * ldc + n0, ldc);
        else
            ref_packed(&g, m0, ml, n0, nl);
    }
}

void apb_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    sgemm_run(transa, transb, M, N, K, alpha, A, lda, NULL, B, ldb, NULL, beta, C, ldc);
}

size_t apb_sgemm_apack_floats(int M, int K)
{
    const apb_sgemm_kinfo *ki = pick_kinfo(M);
    return M > 0 && K > 0 ? round_up((size_t)M, (size_t)ki->mr) * (size_t)K : 0;
}

void apb_sgemm_apack(int M, int K, const float *A, int lda, float *pa)
{
    const apb_sgemm_kinfo *ki = pick_kinfo(M);
    size_t mpad = round_up((size_t)M, (size_t)ki->mr);
    int kcmax = imin(ki->kc, K);
    for (int pc = 0; M > 0 && pc < K; pc += kcmax)
        pack_a(ki, 0, A, lda, 0, M, pc, imin(kcmax, K - pc), pa + (size_t)pc * mpad);
}

void apb_sgemm_packed(int M, int N, int K, float alpha, const float *A, int lda, const float *pa,
                      const float *B, int ldb, float beta, float *C, int ldc)
{
    sgemm_run(0, 0, M, N, K, alpha, A, lda, pa, B, ldb, NULL, beta, C, ldc);
}

/* B's packing depends on the level's NR and K block only, not on M (both
 * AVX-512 tiles have NR = 32 and the same K block). */
size_t apb_sgemm_bpack_floats(int N, int K)
{
    const apb_sgemm_kinfo *ki = pick_kinfo(1);
    return N > 0 && K > 0 ? round_up((size_t)N, (size_t)ki->nr) * (size_t)K : 0;
}

void apb_sgemm_bpack(int transb, int N, int K, const float *B, int ldb, float *pb)
{
    const apb_sgemm_kinfo *ki = pick_kinfo(1);
    size_t npad = round_up((size_t)N, (size_t)ki->nr);
    int kcmax = imin(ki->kc, K);
    for (int pc = 0; N > 0 && pc < K; pc += kcmax)
        pack_b(ki, transb, B, ldb, 0, N, pc, imin(kcmax, K - pc), pb + (size_t)pc * npad);
}

void apb_sgemm_packed_b(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, const float *pb, float beta, float *C,
                        int ldc)
{
    const apb_sgemm_kinfo *k1 = pick_kinfo(1), *km = pick_kinfo(M);
    if (km->nr != k1->nr || km->kc != k1->kc) /* not the packing's blocking: pack as usual */
        pb = NULL;
    sgemm_run(transa, transb, M, N, K, alpha, A, lda, NULL, B, ldb, pb, beta, C, ldc);
}

/* ---- convolution GEMM with an implicit (indirect) B ------------------------
 * B[k][j] = B[boff[k] + (j / seg) * segld + j % seg]: the im2col matrix of a
 * stride-1 convolution read from a zero-padded image. The loop nest, kernels and
 * K blocking are those of run_tile, so every C element is the same sum in the
 * same order as apb_sgemm on the explicit matrix. */
typedef struct {
    const apb_sgemm_kinfo *ki;
    apb_sgemm_ikernel_fn ik; /* indirect kernel, or NULL: panels are packed */
    const float *apack;      /* all of A packed (block pc at pc*mpad), or NULL */
    long mpad;               /* M rounded up to MR */
    int K, seg;
    long segld, lda, ldc;
    float alpha, beta;
    const float *A, *B;
    const long *boff;
    float *C;
} conv_args;

static long conv_col(const conv_args *g, int j)
{
    return (long)(j / g->seg) * g->segld + j % g->seg;
}

/* Implicit B[k0:k0+kc, n0:n0+nc] -> pb: ceil(nc/NR) panels of [kc][NR], zero padded.
 * Each panel is cut once into runs of columns contiguous in the image. */
static void pack_b_conv(const conv_args *g, int NR, int n0, int nc, int k0, int kc, float *pb)
{
    for (int j0 = 0; j0 < nc; j0 += NR) {
        int nr = imin(NR, nc - j0), nrun = 0, rd[32], rl[32];
        long rs[32];
        for (int j = 0; j < nr;) { /* NR <= 32 */
            int col = (n0 + j0 + j) % g->seg, len = imin(g->seg - col, nr - j);
            rd[nrun] = j;
            rs[nrun] = conv_col(g, n0 + j0 + j);
            rl[nrun++] = len;
            j += len;
        }
        float *d = pb + (long)j0 * kc;
        /* Full panels of equal runs (8-wide maps: 4 runs of 8): fixed-size copies,
         * which the compiler turns into vector moves. */
        int L = rl[0], same = nr == NR && NR % L == 0 && (L == 8 || L == 16);
        for (int r = 1; same && r < nrun; r++)
            same = rl[r] == L;
        if (same) {
            for (int k = 0; k < kc; k++) {
                const float *s = g->B + g->boff[k0 + k];
                float *dk = d + (long)k * NR;
                if (L == 8)
                    for (int r = 0; r < nrun; r++)
                        memcpy(dk + 8 * r, s + rs[r], 8 * sizeof(float));
                else
                    for (int r = 0; r < nrun; r++)
                        memcpy(dk + 16 * r, s + rs[r], 16 * sizeof(float));
            }
            continue;
        }
        for (int k = 0; k < kc; k++) {
            const float *s = g->B + g->boff[k0 + k];
            float *dk = d + (long)k * NR;
            for (int r = 0; r < nrun; r++)
                for (int j = 0; j < rl[r]; j++)
                    dk[rd[r] + j] = s[rs[r] + j];
            for (int j = nr; j < NR; j++)
                dk[j] = 0.0f;
        }
    }
}

static int run_tile_conv(const conv_args *g, int m0, int mlen, int n0, int nlen)
{
    const apb_sgemm_kinfo *ki = g->ki;
    const int MR = ki->mr, NR = ki->nr;
    int kcmax = imin(ki->kc, g->K), ncmax = imin(ki->nc, nlen), mcmax = imin(ki->mc, mlen);
    size_t nb = g->ik ? 0 : round_up((size_t)ncmax, NR) * kcmax;
    size_t na = round_up((size_t)mcmax, MR) * kcmax;
    float *buf = scratch(round_up(nb, 16) + na);
    if (!buf)
        return -1;
    float *pb = buf, *pa = buf + round_up(nb, 16);
    for (int jc = 0; jc < nlen; jc += ncmax) {
        int nc = imin(ncmax, nlen - jc);
        for (int pc = 0; pc < g->K; pc += kcmax) {
            int kc = imin(kcmax, g->K - pc);
            float beta = pc == 0 ? g->beta : 1.0f;
            if (!g->ik)
                pack_b_conv(g, NR, n0 + jc, nc, pc, kc, pb);
            for (int ic = 0; ic < mlen; ic += mcmax) {
                int mc = imin(mcmax, mlen - ic);
                if (g->apack)
                    pa = (float *)g->apack + (long)pc * g->mpad + (long)(m0 + ic) * kc;
                else
                    pack_a(ki, 0, g->A, g->lda, m0 + ic, mc, pc, kc, pa);
                float *c0 = g->C + (long)(m0 + ic) * g->ldc + n0 + jc;
                if (g->ik) { /* B panel outer: its kc rows stay in L1 across the A panels */
                    for (int jr = 0; jr < nc; jr += NR) {
                        int nr = imin(NR, nc - jr), j = n0 + jc + jr;
                        const float *b0 = g->B + conv_col(g, j);
                        const float *b1 = nr > NR / 2 ? g->B + conv_col(g, j + NR / 2) : b0;
                        for (int ir = 0; ir < mc; ir += MR)
                            g->ik(kc, pa + (long)ir * kc, b0, b1, g->boff + pc,
                                  c0 + (long)ir * g->ldc + jr, g->ldc, g->alpha, beta,
                                  imin(MR, mc - ir), nr);
                    }
                    continue;
                }
                for (int ir = 0; ir < mc; ir += MR)
                    for (int jr = 0; jr < nc; jr += NR)
                        ki->kernel(kc, pa + (long)ir * kc, pb + (long)jr * kc, NR,
                                   c0 + (long)ir * g->ldc + jr, g->ldc, g->alpha, beta,
                                   imin(MR, mc - ir), imin(NR, nc - jr));
            }
        }
    }
    return 0;
}

/* The AVX2 indirect kernel (reads B from the image, no packing): on unless
 * APB_SGEMM_IND=0, for A/B runs (the same results either way, bit for bit). */
static int ind_avx2_allowed(void)
{
    static int on = -1;
    return apb_env_switch("APB_SGEMM_IND", &on);
}

static void conv_batch(int nb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, long sb, const long *boff, int seg, long segld, float beta,
                       float *C, long sc, int ldc, int stream)
{
    if (M <= 0 || N <= 0 || nb <= 0)
        return;
    if (K <= 0 || alpha == 0.0f) {
        for (int b = 0; b < nb; b++)
            scale_c(M, N, beta, C + b * sc, ldc);
        return;
    }
    conv_args g = {pick_kinfo(M), NULL, NULL, 0, K, seg, segld, lda, ldc, alpha, beta, A, B,
                   boff, C};
    const int MR = g.ki->mr, NR = g.ki->nr;
    /* The indirect kernel loads NR/2-float halves, which must not cross a segment.
     * AVX2: only for M <= 64, where a packed panel serves few A strips (resnet20:
     * +7% per step, median of 8 paired runs; vgg-small, M >= 128: -2%) */
    if (apb_isa_active() == APB_ISA_AVX2 && NR == 16 && seg % 8 == 0 && M <= 64 && ind_avx2_allowed()) {
        g.ik = apb_sgemm_ikernel_avx2_6x16;
    } else if (apb_isa_active() == APB_ISA_AVX512 && seg % 16 == 0) {
        if (stream)
            g.ik = MR == 8 ? apb_sgemm_ikernel_avx512_8x32_stream
                           : apb_sgemm_ikernel_avx512_12x32_stream;
        else
            g.ik = MR == 8 ? apb_sgemm_ikernel_avx512_8x32 : apb_sgemm_ikernel_avx512_12x32;
    }
    /* A is the same for every image: pack it once, in the K blocks run_tile_conv
     * uses (if that buffer cannot be had, each tile packs its own). */
    g.mpad = (long)round_up((size_t)M, MR);
    if (nb > 1) {
        float *pa = scratch_slot(1, apb_sgemm_apack_floats(M, K));
        if (pa)
            apb_sgemm_apack(M, K, A, lda, pa);
        g.apack = pa;
    }

    thread_split sp = split_threads(M, N, 2.0 * M * N * K * nb, MR, NR);
    int tm = sp.tm, tn = sp.tn, msz = sp.msz, nsz = sp.nsz;
#ifdef _OPENMP
#pragma omp parallel for num_threads(tm * tn) if (tm * tn > 1) schedule(static)
#endif
    for (int t = 0; t < tm * tn; t++) {
        int m0 = (t / tn) * msz, n0 = (t % tn) * nsz;
        if (m0 >= M || n0 >= N)
            continue;
        int ml = imin(msz, M - m0), nl = imin(nsz, N - n0);
        for (int b = 0; b < nb; b++) {
            conv_args gb = g;
            gb.B = B + b * sb;
            gb.C = C + b * sc;
            if (run_tile_conv(&gb, m0, ml, n0, nl) == 0)
                continue;
            for (int i = m0; i < m0 + ml; i++) /* no memory to pack: unblocked, in double */
                for (int j = n0; j < n0 + nl; j++) {
                    double acc = 0;
                    for (int k = 0; k < K; k++)
                        acc += (double)A[(long)i * lda + k] * gb.B[boff[k] + conv_col(&gb, j)];
                    float r = alpha * (float)acc, *c = gb.C + (long)i * ldc + j;
                    *c = beta == 0.0f ? r : r + beta * *c;
                }
        }
        if (g.ik && stream) /* order the streaming stores before the team ends */
            _mm_sfence();
    }
}

void apb_sgemm_conv_batch(int nb, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, long sb, const long *boff, int seg, long segld,
                          float beta, float *C, long sc, int ldc)
{
    conv_batch(nb, M, N, K, alpha, A, lda, B, sb, boff, seg, segld, beta, C, sc, ldc, 0);
}

void apb_sgemm_conv_batch_stream(int nb, int M, int N, int K, float alpha, const float *A,
                                 int lda, const float *B, long sb, const long *boff, int seg,
                                 long segld, float beta, float *C, long sc, int ldc)
{
    conv_batch(nb, M, N, K, alpha, A, lda, B, sb, boff, seg, segld, beta, C, sc, ldc, 1);
}

void apb_sgemm_conv(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    const long *boff, int seg, long segld, float beta, float *C, int ldc)
{
    apb_sgemm_conv_batch(1, M, N, K, alpha, A, lda, B, 0, boff, seg, segld, beta, C, 0, ldc);
}

/* Threads for a product of the given flops split into `units` independent parts:
 * as split_threads, never inside an enclosing parallel region. */
static int team_size(double flops, int units)
{
    int nt = 1;
    if (flops >= 4e6) {
        nt = apb_threads_get();
#ifdef _OPENMP
        if (omp_get_level() > 0) /* any enclosing region, see split_threads */
            nt = 1;
#endif
        if (nt > units)
            nt = units;
    }
    return nt;
}

/* Tiles of the dot-product NT product (AVX-512 only), optionally threaded over
 * 6-row blocks of B. */
static void nt_tiles(int M, int N, int K, int nb, float alpha, const float *A, int lda, long sa,
                     const float *B, const long *boff, long sb, float *C, int ldc)
{
    /* B rows outer, A rows inner: a 6-row block of B stays in L1 while all of A
     * (typically dy, the smaller operand) streams past it. */
    int nj = (N + 5) / 6, nt = team_size(2.0 * M * N * K * nb, nj);
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

/* ---- 3-wide convolution weight gradient (see sgemm.h) ---------------------- */
int apb_sgemm_dw3_fast(int M)
{
    return apb_isa_active() >= APB_ISA_AVX2 && M % 16 == 0 && M >= 16 && M <= 64;
}

/* The fast path's register tiles: MT channels (a block of dyT) by RT kernel rows.
 * AVX-512: all M channels, 8, 4 or 2 rows (sgemm_avx512.c); AVX2: 16 channels by 2
 * rows (sgemm_dw3_avx2.c). Tile t covers channel block t / nrb, rows from
 * (t % nrb) * RT; every C element belongs to one tile. */
typedef struct {
    int wide; /* 1: AVX-512 tiles */
    int MT, RT, nrb, ntile, nt;
} dw3_tiles;

/* The fast path's prologue: transposes the nb gradients dy_b[M][P] into dyT_b
 * (AVX-512: [P][M]; AVX2: [M/16][P][16]) and picks the tiles and the team size. */
static dw3_tiles dw3_setup(int M, int R, int nb, long P, const float *dy, long sdy, float *dyT)
{
    dw3_tiles d;
    d.wide = apb_isa_active() == APB_ISA_AVX512;
    for (int b = 0; b < nb; b++) {
        if (d.wide)
            apb_transpose16_avx512(M, (int)P, dy + b * sdy, P, dyT + b * P * M);
        else
            apb_transpose16_avx2(M, (int)P, dy + b * sdy, P, dyT + b * P * M);
    }
    d.MT = d.wide ? M : 16;
    d.RT = !d.wide ? 2 : M == 16 ? 8 : M == 32 ? 4 : 2;
    d.nrb = (R + d.RT - 1) / d.RT;
    d.ntile = M / d.MT * d.nrb;
    d.nt = team_size(2.0 * M * 3 * R * P * nb, d.ntile);
    return d;
}

void apb_sgemm_dw3(int M, int R, int nb, int OH, int OW, float alpha, const float *dy, long sdy,
                   const float *X, const long *roff, long sx, long Wp, long t1, long t2,
                   float *C, int ldc)
{
    if (M <= 0 || R <= 0 || nb <= 0 || OH <= 0 || OW <= 0)
        return;
    long P = (long)OH * OW;
    float *dyT = apb_sgemm_dw3_fast(M) ? scratch_slot(2, (size_t)nb * P * M) : NULL;
    const long tap[3] = {0, t1, t2};
    if (!dyT) { /* portable (or no memory for the transpose): plain loops */
        for (int m = 0; m < M; m++)
            for (int r = 0; r < R; r++)
                for (int kw = 0; kw < 3; kw++) {
                    float acc = 0.0f;
                    for (int b = 0; b < nb; b++)
                        for (int oh = 0; oh < OH; oh++) {
                            const float *d = dy + b * sdy + (long)m * P + (long)oh * OW;
                            const float *x = X + b * sx + roff[r] + (long)oh * Wp + tap[kw];
                            for (int ow = 0; ow < OW; ow++)
                                acc += d[ow] * x[ow];
                        }
                    C[(long)m * ldc + 3 * r + kw] += alpha * acc;
                }
        return;
    }
    dw3_tiles d = dw3_setup(M, R, nb, P, dy, sdy, dyT);
#ifdef _OPENMP
#pragma omp parallel for num_threads(d.nt) if (d.nt > 1) schedule(static)
#endif
    for (int t = 0; t < d.ntile; t++) {
        int mb = t / d.nrb, r0 = t % d.nrb * d.RT, nr = imin(d.RT, R - r0);
        float *Ct = C + (long)mb * d.MT * ldc + 3 * r0;
        if (d.wide)
            apb_sgemm_dw3_tile_avx512(M, nr, nb, OH, OW, dyT, P * M, X, roff + r0, sx, Wp, t1,
                                      t2, alpha, Ct, ldc);
        else
            apb_sgemm_dw3_tile_avx2(nr, nb, OH, OW, dyT + mb * P * d.MT, P * M, X, roff + r0, sx,
                                    Wp, t1, t2, alpha, Ct, ldc);
    }
}

void apb_sgemm_dw3_same(int M, int C, int nb, int H, int W, float alpha, const float *dy,
                        long sdy, const float *x, long sx, float *Cw, int ldc)
{
    if (M <= 0 || C <= 0 || nb <= 0 || H <= 0 || W <= 0)
        return;
    long P = (long)H * W;
    int R = 3 * C;
    float *dyT = apb_sgemm_dw3_fast(M) ? scratch_slot(2, (size_t)nb * P * M + (size_t)W) : NULL;
    if (!dyT) { /* portable (or no memory for the transpose): plain loops */
        for (int m = 0; m < M; m++)
            for (int c = 0; c < C; c++)
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++) {
                        float acc = 0.0f;
                        for (int b = 0; b < nb; b++)
                            for (int oh = 0; oh < H; oh++) {
                                int ih = oh + kh - 1;
                                if (ih < 0 || ih >= H)
                                    continue;
                                const float *d = dy + b * sdy + (long)m * P + (long)oh * W;
                                const float *xr = x + b * sx + (long)c * P + (long)ih * W;
                                for (int ow = 0; ow < W; ow++) {
                                    int iw = ow + kw - 1;
                                    if (iw >= 0 && iw < W)
                                        acc += d[ow] * xr[iw];
                                }
                            }
                        Cw[(long)m * ldc + (c * 3 + kh) * 3 + kw] += alpha * acc;
                    }
        return;
    }
    float *zrow = dyT + (size_t)nb * P * M;
    memset(zrow, 0, sizeof(float) * (size_t)W);
    dw3_tiles d = dw3_setup(M, R, nb, P, dy, sdy, dyT);
#ifdef _OPENMP
#pragma omp parallel for num_threads(d.nt) if (d.nt > 1) schedule(static)
#endif
    for (int t = 0; t < d.ntile; t++) {
        int mb = t / d.nrb, r0 = t % d.nrb * d.RT, nr = imin(d.RT, R - r0), rkh[8];
        long coff[8];
        for (int i = 0; i < nr; i++) {
            coff[i] = (long)((r0 + i) / 3) * P;
            rkh[i] = (r0 + i) % 3;
        }
        float *Ct = Cw + (long)mb * d.MT * ldc + 3 * r0;
        if (d.wide)
            apb_sgemm_dw3e_tile_avx512(M, nr, nb, H, W, dyT, P * M, x, coff, rkh, sx, zrow, alpha,
                                       Ct, ldc);
        else
            apb_sgemm_dw3e_tile_avx2(nr, nb, H, W, dyT + mb * P * d.MT, P * M, x, coff, rkh, sx,
                                     zrow, alpha, Ct, ldc);
    }
}
