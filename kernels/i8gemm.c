/* i8gemm.c - driver of the binary x 8-bit GEMM: activation packing, tiles over
 * OpenMP, ISA dispatch through one table, the float epilogue (i8gemm.h).
 *
 * Loop nest per tile (MB rows x NB panels of Y, one thread each): for each
 * strip of mr weight rows (kept in L1 across the tile's panels), for each group
 * of np panels, the micro-kernel computes the exact int32 dots into a local
 * tile, then the epilogue writes scale * (dot - corr). No K blocking: a panel
 * is 64 bytes per 4 k, so even K = 4608 streams 74 KB per panel from L2.
 */
#include "i8gemm.h"

#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "threads.h"

#define I8_MB 96 /* rows per tile (a multiple of every table's mr: 4, 6) */
#define I8_NB 8  /* panels per tile (a multiple of every table's np) */
#define I8_PAR_MIN (1L << 18) /* multiply-adds below which one thread runs the call */

/* VNNI kernel allowed (APB_I8_VNNI unset or not "0"), read once */
static int vnni_allowed(void)
{
    static int on = -1;
    return apb_env_switch("APB_I8_VNNI", &on);
}

static const apb_i8_kernels *table(void)
{
    apb_isa isa = apb_isa_active();
    if (isa == APB_ISA_AVX512 && apb_cpu_has_avx512vnni() && vnni_allowed())
        return &apb_i8_kernels_avx512vnni;
    return isa >= APB_ISA_AVX2 ? &apb_i8_kernels_avx2 : &apb_i8_kernels_ref;
}

const char *apb_i8gemm_kernel_name(void) { return table()->name; }

void apb_i8_pack_rows(int N, int K, const float *X, long ldx, float s, int is_signed, uint8_t *B)
{
    int K4 = (K + 3) / 4, np = (N + APB_I8_PANEL - 1) / APB_I8_PANEL;
    long pstride = (long)K4 * 4 * APB_I8_PANEL;
    float r = 1.0f / s;
    int zp = is_signed ? 128 : 0;
    memset(B, 0, (size_t)np * pstride);
#pragma omp parallel for num_threads(apb_threads_get()) if ((long)N * K > 65536) schedule(static)
    for (int n = 0; n < N; n++) {
        uint8_t *bc = B + (n / APB_I8_PANEL) * pstride + 4 * (n % APB_I8_PANEL);
        const float *x = X + n * ldx;
        for (int k = 0; k < K; k++)
            bc[(k >> 2) * 4 * APB_I8_PANEL + (k & 3)] = (uint8_t)(apb_i8_code(x[k], r, is_signed) + zp);
    }
}

void apb_i8_quant4(int n, int nc, const float *x, long ldx, int stride, float s, int is_signed,
                   uint8_t *d, uint8_t *q, long ldq)
{
    float r = 1.0f / s;
    if (nc >= 1 && nc <= 4 && (stride == 1 || stride == 2) && apb_isa_active() == APB_ISA_AVX512) {
        apb_i8_quant4_avx512(n, nc, x, ldx, stride, r, s, is_signed, d, q, ldq);
        return;
    }
    if (nc == 4 && (stride == 1 || stride == 2) && apb_isa_active() >= APB_ISA_AVX2) {
        apb_i8_quant4_avx2(n, x, ldx, stride, r, s, is_signed, d, q, ldq);
        return;
    }
    int zp = is_signed ? 128 : 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < 4; i++) {
            int c = i < nc ? apb_i8_code(x[i * ldx + (long)j * stride], r, is_signed) : 0;
            d[4 * j + i] = (uint8_t)(c + zp);
            if (q && i < nc)
                q[i * ldq + j] = (uint8_t)c;
        }
}

/* The float epilogue of a tile (apb_i8_store_avx2's portable form). */
static void store_ref(int mr, int nc, const int32_t *acc, int ld, const float *scale,
                      const int32_t *corr, float *Y, long ldy)
{
    for (int r = 0; r < mr; r++) {
        float sc = scale ? scale[r] : 1.0f;
        int32_t cr = corr ? corr[r] : 0;
        for (int j = 0; j < nc; j++)
            Y[r * ldy + j] = sc * (float)(acc[r * ld + j] - cr);
    }
}

/* Where B's panels are: panel p = i*ppi + pi (image i) at base + i*istride +
 * pi*pstride, group k4 at boff[k4] (NULL: 64*k4) from there. */
typedef struct {
    const uint8_t *base;
    long istride, pstride;
    int ppi;
    const long *boff;
    int wide; /* weights beyond +-1: no AVX2 kernel (its 16-bit sums hold +-1 only) */
} bdesc;

static apb_status gemm(int M, int N, int K4, const int8_t *W, long ldw, const bdesc *bd,
                       const float *scale, const int32_t *corr, float *Y, long ldy)
{
    if (M == 0 || N == 0)
        return APB_OK;
    const apb_i8_kernels *kt = table();
    if (bd->wide && !kt->wide_ok)
        kt = &apb_i8_kernels_ref;
    void (*store)(int, int, const int32_t *, int, const float *, const int32_t *, float *, long) =
        apb_isa_active() >= APB_ISA_AVX2 ? apb_i8_store_avx2 : store_ref;
    int npan = (N + APB_I8_PANEL - 1) / APB_I8_PANEL;
    int tm = (M + I8_MB - 1) / I8_MB, tn = (npan + I8_NB - 1) / I8_NB, nth = apb_threads_get();
    long tiles = (long)tm * tn;
    /* inside a parallel region (one chunk of images per thread) the caller's
     * thread does the whole product */
    int par = nth > 1 && tiles > 1 && (long)M * N * K4 * 4 >= I8_PAR_MIN && !apb_in_parallel();
#pragma omp parallel for num_threads(nth) if (par) schedule(dynamic, 1)
    for (long t = 0; t < tiles; t++) {
        int32_t acc[8 * 4 * APB_I8_PANEL]; /* mr x np*16 with mr <= 8, np <= 4 (tables: 6x2, 6x4) */
        int m0 = (int)(t / tn) * I8_MB, p0 = (int)(t % tn) * I8_NB;
        int m1 = m0 + I8_MB < M ? m0 + I8_MB : M, p1 = p0 + I8_NB < npan ? p0 + I8_NB : npan;
        for (int m = m0; m < m1; m += kt->mr) {
            int mr = m1 - m < kt->mr ? m1 - m : kt->mr;
            for (int p = p0, np; p < p1; p += np) {
                /* the kernel's panels all lie in one image */
                int img = p / bd->ppi, pi = p % bd->ppi;
                np = p1 - p < kt->np ? p1 - p : kt->np;
                np = bd->ppi - pi < np ? bd->ppi - pi : np;
                int ld = np * APB_I8_PANEL;
                kt->fn(mr, np, K4, W + m * ldw, ldw, bd->base + img * bd->istride + pi * bd->pstride,
                       bd->pstride, bd->boff, acc, ld);
                int n0 = p * APB_I8_PANEL, nc = N - n0 < ld ? N - n0 : ld;
                store(mr, nc, acc, ld, scale ? scale + m : NULL, corr ? corr + m : NULL,
                      Y + m * ldy + n0, ldy);
            }
        }
    }
    return APB_OK;
}

apb_status apb_i8gemm_f32(int M, int N, int K4, const int8_t *W, long ldw, const uint8_t *B,
                          const float *scale, const int32_t *corr, float *Y, long ldy)
{
    if (M < 0 || N < 0 || K4 < 0 || ldw < 4L * K4 || ldy < N)
        return apb_fail(APB_EINVAL, "i8gemm: bad sizes M=%d N=%d K4=%d ldw=%ld ldy=%ld", M, N, K4,
                        ldw, ldy);
    int npan = (N + APB_I8_PANEL - 1) / APB_I8_PANEL;
    bdesc bd = {B, 0, (long)K4 * 4 * APB_I8_PANEL, npan > 0 ? npan : 1, NULL, 0};
    return gemm(M, N, K4, W, ldw, &bd, scale, corr, Y, ldy);
}

static apb_status ind(int M, int ncol, int nimg, int K4, const int8_t *W, long ldw, const uint8_t *src,
                      long istride, const long *boff, const float *scale, const int32_t *corr,
                      float *Y, long ldy, int wide)
{
    if (M < 0 || ncol < 0 || ncol % APB_I8_PANEL || nimg < 0 || K4 < 0 || ldw < 4L * K4 ||
        ldy < (long)ncol * nimg || (long)ncol * nimg > (1L << 30))
        return apb_fail(APB_EINVAL, "i8gemm: bad sizes M=%d ncol=%d nimg=%d K4=%d ldw=%ld ldy=%ld",
                        M, ncol, nimg, K4, ldw, ldy);
    if (ncol == 0)
        return APB_OK;
    bdesc bd = {src, istride, 4 * APB_I8_PANEL, ncol / APB_I8_PANEL, boff, wide};
    return gemm(M, ncol * nimg, K4, W, ldw, &bd, scale, corr, Y, ldy);
}

apb_status apb_i8gemm_ind_f32(int M, int ncol, int nimg, int K4, const int8_t *W, long ldw,
                              const uint8_t *src, long istride, const long *boff,
                              const float *scale, const int32_t *corr, float *Y, long ldy)
{
    return ind(M, ncol, nimg, K4, W, ldw, src, istride, boff, scale, corr, Y, ldy, 0);
}

apb_status apb_i8gemm_ind_f32_w8(int M, int ncol, int nimg, int K4, const int8_t *W, long ldw,
                                 const uint8_t *src, long istride, const long *boff,
                                 const float *scale, const int32_t *corr, float *Y, long ldy)
{
    return ind(M, ncol, nimg, K4, W, ldw, src, istride, boff, scale, corr, Y, ldy, 1);
}

int apb_i8gemm_w8_fast(void) { return table()->wide_ok && table() != &apb_i8_kernels_ref; }
