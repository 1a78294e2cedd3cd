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

#ifdef _OPENMP
#include <omp.h>
#endif

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

void apb_i8_pack_taps(int N, int K, const uint8_t *src, const long *koff, uint8_t *B)
{
    int K4 = (K + 3) / 4, np = (N + APB_I8_PANEL - 1) / APB_I8_PANEL;
    long pstride = (long)K4 * 4 * APB_I8_PANEL;
    static const uint8_t zero[APB_I8_PANEL];
    /* split over the threads when large and not already inside a parallel
     * region (images packed concurrently); panels are disjoint */
    int nth = apb_threads_get();
#ifdef _OPENMP
    if (omp_get_level() > 0)
        nth = 1;
#endif
    if ((long)np * K4 < 4096)
        nth = 1;
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
    for (int p = 0; p < np; p++) {
        uint8_t *bp = B + p * pstride;
        const uint8_t *base = src + (long)p * APB_I8_PANEL;
        for (int k4 = 0; k4 < K4; k4++) {
            const uint8_t *r0 = base + koff[4 * k4];
            const uint8_t *r1 = 4 * k4 + 1 < K ? base + koff[4 * k4 + 1] : zero;
            const uint8_t *r2 = 4 * k4 + 2 < K ? base + koff[4 * k4 + 2] : zero;
            const uint8_t *r3 = 4 * k4 + 3 < K ? base + koff[4 * k4 + 3] : zero;
            uint8_t *o = bp + k4 * 4 * APB_I8_PANEL;
#pragma omp simd
            for (int j = 0; j < APB_I8_PANEL; j++) {
                o[4 * j] = r0[j];
                o[4 * j + 1] = r1[j];
                o[4 * j + 2] = r2[j];
                o[4 * j + 3] = r3[j];
            }
        }
    }
}

apb_status apb_i8gemm_f32(int M, int N, int K4, const int8_t *W, long ldw, const uint8_t *B,
                          const float *scale, const int32_t *corr, float *Y, long ldy)
{
    if (M < 0 || N < 0 || K4 < 0 || ldw < 4L * K4 || ldy < N)
        return apb_fail(APB_EINVAL, "i8gemm: bad sizes M=%d N=%d K4=%d ldw=%ld ldy=%ld", M, N, K4,
                        ldw, ldy);
    if (M == 0 || N == 0)
        return APB_OK;
    const apb_i8_kernels *kt = table();
    long pstride = (long)K4 * 4 * APB_I8_PANEL;
    int npan = (N + APB_I8_PANEL - 1) / APB_I8_PANEL;
    int tm = (M + I8_MB - 1) / I8_MB, tn = (npan + I8_NB - 1) / I8_NB, nth = apb_threads_get();
    long tiles = (long)tm * tn;
    int par = nth > 1 && tiles > 1 && (long)M * N * K4 * 4 >= I8_PAR_MIN;
#pragma omp parallel for num_threads(nth) if (par) schedule(dynamic, 1)
    for (long t = 0; t < tiles; t++) {
        int32_t acc[8 * 4 * APB_I8_PANEL]; /* mr x np*16 with mr <= 8, np <= 4 (tables: 6x2, 6x4) */
        int m0 = (int)(t / tn) * I8_MB, p0 = (int)(t % tn) * I8_NB;
        int m1 = m0 + I8_MB < M ? m0 + I8_MB : M, p1 = p0 + I8_NB < npan ? p0 + I8_NB : npan;
        for (int m = m0; m < m1; m += kt->mr) {
            int mr = m1 - m < kt->mr ? m1 - m : kt->mr;
            for (int p = p0; p < p1; p += kt->np) {
                int np = p1 - p < kt->np ? p1 - p : kt->np, ld = np * APB_I8_PANEL;
                kt->fn(mr, np, K4, W + m * ldw, ldw, B + p * pstride, pstride, acc, ld);
                int n0 = p * APB_I8_PANEL, nc = N - n0 < ld ? N - n0 : ld;
                for (int r = 0; r < mr; r++) {
                    float sc = scale ? scale[m + r] : 1.0f;
                    int32_t cr = corr ? corr[m + r] : 0;
                    float *y = Y + (m + r) * ldy + n0;
                    const int32_t *a = acc + r * ld;
                    for (int j = 0; j < nc; j++)
                        y[j] = sc * (float)(a[j] - cr);
                }
            }
        }
    }
    return APB_OK;
}
