/* winograd.c - F(4x4, 3x3) convolution and its F(3x3, 4x4) weight gradient (see
 * winograd.h).
 *
 * Transforms (Lavin and Gray's, points 0, 1, -1, 2, -2 and infinity), with d the
 * 6x6 input patch at rows 4th-1.., columns 4tw-1.. (zero outside the image), g the
 * 3x3 kernel and m the 6x6 product tile:
 *   V = B^T d B, U = G g G^T, y = A^T m A (the 4x4 outputs at rows 4th.., 4tw..)
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
 *          0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * 36 multiplies per 16 outputs and channel pair instead of 144 (F(2x2, 3x3): 16
 * per 4). The weight gradient is the same identity read the other way: for a
 * 4x4 tile h of dy and the 6x6 patch d of x under it, the 3x3 sums
 * sum_ij h[i][j] d[i+kh][j+kw] are G^T [(A h A^T) .* (B^T d B)] G.
 * Each transform runs over a chunk's tiles of one channel at a time
 * (winograd_body.h), so its vectors are full on small maps too.
 */
#include "winograd.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "arena.h"
#include "cpu.h"
#include "sgemm.h"
#include "winograd_levels.h"

#define WG(name) apb_wg_##name##_c
#include "winograd_body.h"
#undef WG

/* The transforms at the active ISA level (winograd_body.h). */
static const wg_fns *wg(void)
{
    static const wg_fns c = APB_WG_TABLE(c), avx2 = APB_WG_TABLE(avx2),
                        avx512 = APB_WG_TABLE(avx512);
    apb_isa l = apb_isa_active();
    return l >= APB_ISA_AVX512 ? &avx512 : l >= APB_ISA_AVX2 ? &avx2 : &c;
}

/* The 36 positions of a transformed tile. */
#define XI 36

/* Tiles per chunk: whole tile rows, at least this many. */
#define WINO_TILES 64

static int wino_on = -1;

int apb_wino_enabled(void) { return apb_env_switch("APB_WINOGRAD", &wino_on); }

int apb_wino_enable(int on)
{
    int prev = apb_wino_enabled();
    __atomic_store_n(&wino_on, on ? 1 : 0, __ATOMIC_RELEASE);
    return prev;
}

size_t apb_wino_u_floats(int M, int C) { return (size_t)XI * M * C; }

void apb_wino_weights(int M, int C, const float *w, int flip, float *U, int nthreads)
{
    size_t mc = (size_t)M * C;
    const wg_fns *f = wg();
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) if (nthreads > 1 && mc >= 4096) schedule(static)
#endif
    for (int m = 0; m < M; m++)
        f->weights_row(m, M, C, w, flip, U, mc);
}

/* Tile rows per chunk: about WINO_CHUNK / C tiles (at least WINO_TILES), so a
 * chunk's transformed inputs (36 C floats a tile) stay near 2 MB. */
#define WINO_CHUNK 14336
static int chunk_rows(int C, int W)
{
    int want = WINO_CHUNK / C < WINO_TILES ? WINO_TILES : WINO_CHUNK / C;
    int tw = wg_tiles(W), r = want / tw;
    return r < 1 ? 1 : r;
}

/* A thread's scratch besides V and P: the split patches of one channel (36 a
 * tile; the output's 16 a tile reuse them) and a padded row. */
static size_t split_floats(size_t tc, int W) { return (size_t)XI * tc + 4 * (size_t)wg_tiles(W) + 8; }

size_t apb_wino_work_floats(int C, int M, int W)
{
    size_t tc = (size_t)chunk_rows(C, W) * wg_tiles(W);
    return (size_t)XI * C * tc + (size_t)XI * M * tc + split_floats(tc, W);
}

typedef void (*wg_split_fn)(const float *x0, int H, int W, int th, float *xp, float *D, size_t ds,
                            long t0);

/* Tile rows r0 .. r1-1 (wg_tiles(H) per image) of one channel, whose plane in
 * image n is x0 + n * sx, split into D (split_floats scratch: the per-tile
 * arrays, then the padded row); returns T = (r1 - r0) * wg_tiles(W), the tiles. */
static size_t split_rows(wg_split_fn split, const float *x0, long sx, int H, int W, long r0, long r1,
                         float *D)
{
    int TH = wg_tiles(H), TW = wg_tiles(W);
    size_t T = (size_t)(r1 - r0) * TW;
    for (long r = r0; r < r1; r++)
        split(x0 + r / TH * sx, H, W, (int)(r % TH), D + (size_t)XI * T, D, T, (r - r0) * TW);
    return T;
}

/* V[xi][c][t] of tile rows r0 .. r1-1 (images sx apart) for all C channels. */
static void input_rows(const wg_fns *f, const float *x, long sx, int C, int H, int W, long r0,
                       long r1, float *V, float *D)
{
    for (int c = 0; c < C; c++) {
        size_t T = split_rows(f->split_in, x + (long)c * H * W, sx, H, W, r0, r1, D);
        f->xform_in(D, T, T, V + (size_t)c * T, (size_t)C * T);
    }
}

/* y (= or += when acc) from P[xi][m][t] of the same tile rows, all M channels. */
static void output_rows(const wg_fns *f, const float *P, int M, int H, int W, long r0, long r1,
                        int acc, float *y, long sy, float *Q)
{
    int TH = wg_tiles(H), TW = wg_tiles(W);
    size_t T = (size_t)(r1 - r0) * TW;
    for (int m = 0; m < M; m++) {
        f->xform_out(P + (size_t)m * T, (size_t)M * T, T, Q, T);
        for (long r = r0; r < r1; r++) {
            int n = (int)(r / TH), th = (int)(r % TH);
            f->scatter_out(Q, T, (r - r0) * TW, H, W, th, acc, y + n * sy + (long)m * H * W);
        }
    }
}

size_t apb_wino_packed_floats(int M, int C) { return XI * apb_sgemm_apack_floats(M, C); }

void apb_wino_pack(int M, int C, const float *U, float *pu, int nthreads)
{
    size_t pf = apb_sgemm_apack_floats(M, C), mc = (size_t)M * C;
    int nt = nthreads < 1 ? 1 : nthreads;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
#endif
    for (int k = 0; k < XI; k++)
        apb_sgemm_apack(M, C, U + k * mc, C, pu + k * pf);
}

static void wino_run(int N, int C, int H, int W, const float *x, long sx, int M, const float *U,
                     const float *pu, int accumulate, float *y, long sy, float *work, int nthreads)
{
    int TH = wg_tiles(H), TW = wg_tiles(W), rc = chunk_rows(C, W);
    long nrows = (long)N * TH, nchunk = (nrows + rc - 1) / rc;
    size_t wf = apb_wino_work_floats(C, M, W), tc = (size_t)rc * TW, mc = (size_t)M * C;
    size_t pf = apb_sgemm_apack_floats(M, C);
    const wg_fns *f = wg();
    int nt = nthreads < 1 ? 1 : nthreads;
    if (nt > nchunk)
        nt = (int)nchunk;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
#endif
    for (long ch = 0; ch < nchunk; ch++) {
#ifdef _OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        float *V = work + (size_t)tid * wf, *P = V + (size_t)XI * C * tc, *D = P + (size_t)XI * M * tc;
        long r0 = ch * rc, r1 = r0 + rc < nrows ? r0 + rc : nrows;
        size_t T = (size_t)(r1 - r0) * TW; /* tiles in this chunk */
        input_rows(f, x, sx, C, H, W, r0, r1, V, D);
        for (int k = 0; k < XI; k++)
            apb_sgemm_packed(M, (int)T, C, 1.0f, U ? U + k * mc : NULL, C, pu ? pu + k * pf : NULL,
                             V + (size_t)k * C * T, (int)T, 0.0f, P + (size_t)k * M * T, (int)T);
        output_rows(f, P, M, H, W, r0, r1, accumulate, y, sy, D);
    }
}

void apb_wino_conv(int N, int C, int H, int W, const float *x, long sx, int M, const float *U,
                   int accumulate, float *y, long sy, float *work, int nthreads)
{
    if (N <= 0 || C <= 0 || M <= 0 || H <= 0 || W <= 0)
        return;
    /* the 36 U matrices packed once for every chunk's GEMMs (sgemm.h); without
     * the memory each GEMM packs its own, with the same results */
    float *pu = apb_thread_scratch(APB_TLS_WINO, sizeof(float) * apb_wino_packed_floats(M, C));
    if (pu)
        apb_wino_pack(M, C, U, pu, nthreads);
    wino_run(N, C, H, W, x, sx, M, U, pu, accumulate, y, sy, work, nthreads);
}

void apb_wino_conv_packed(int N, int C, int H, int W, const float *x, long sx, int M,
                          const float *pu, int accumulate, float *y, long sy, float *work,
                          int nthreads)
{
    if (N <= 0 || C <= 0 || M <= 0 || H <= 0 || W <= 0)
        return;
    wino_run(N, C, H, W, x, sx, M, NULL, pu, accumulate, y, sy, work, nthreads);
}

/* ---- weight gradient, F(3x3, 4x4) ---- */

/* Tile rows per chunk of the weight gradient: about WINO_DW_CHUNK / (C + M)
 * tiles (at least WINO_TILES), so the transformed x and dy of a chunk stay near
 * 16 MB and each GEMM's reduction runs over hundreds of tiles. */
#define WINO_DW_CHUNK 116508
static int dw_chunk_rows(int C, int M, int W)
{
    int want = WINO_DW_CHUNK / (C + M);
    if (want < WINO_TILES)
        want = WINO_TILES;
    int r = want / wg_tiles(W);
    return r < 1 ? 1 : r;
}

size_t apb_wino_dw_work_floats(int C, int M, int W, int nthreads)
{
    size_t tc = (size_t)dw_chunk_rows(C, M, W) * wg_tiles(W);
    int nt = nthreads < 1 ? 1 : nthreads;
    return (size_t)XI * M * C + (size_t)XI * (C + M) * tc + (size_t)nt * split_floats(tc, W);
}

void apb_wino_dw(int N, int C, int H, int W, const float *x, long sx, int M, const float *dy,
                 long sdy, float *dw, float *work, int nthreads)
{
    if (N <= 0 || C <= 0 || M <= 0 || H <= 0 || W <= 0)
        return;
    int TH = wg_tiles(H), TW = wg_tiles(W), rc = dw_chunk_rows(C, M, W);
    long nrows = (long)N * TH, nchunk = (nrows + rc - 1) / rc;
    size_t mc = (size_t)M * C, tc = (size_t)rc * TW, rs = split_floats(tc, W);
    float *S = work, *V = S + XI * mc, *U = V + (size_t)XI * C * tc, *sp = U + (size_t)XI * M * tc;
    int nt = nthreads < 1 ? 1 : nthreads;
    const wg_fns *f = wg();
    (void)nt;
    for (long ch = 0; ch < nchunk; ch++) {
        long r0 = ch * rc, r1 = r0 + rc < nrows ? r0 + rc : nrows;
        size_t T = (size_t)(r1 - r0) * TW;
        float beta = ch ? 1.0f : 0.0f;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
        {
#ifdef _OPENMP
            float *D = sp + (size_t)omp_get_thread_num() * rs;
#pragma omp for schedule(static)
#else
            float *D = sp;
#endif
            for (int q = 0; q < C + M; q++) { /* channel q: x's (q < C), then dy's */
                if (q < C) {
                    split_rows(f->split_in, x + (long)q * H * W, sx, H, W, r0, r1, D);
                    f->xform_in(D, T, T, V + (size_t)q * T, (size_t)C * T);
                } else {
                    split_rows(f->split_grad, dy + (long)(q - C) * H * W, sdy, H, W, r0, r1, D);
                    f->xform_grad(D, T, T, U + (size_t)(q - C) * T, (size_t)M * T);
                }
            }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int k = 0; k < XI; k++) /* one thread per GEMM: sums independent of nt */
                apb_sgemm(0, 1, M, C, (int)T, 1.0f, U + (size_t)k * M * T, (int)T,
                          V + (size_t)k * C * T, (int)T, beta, S + k * mc, C);
        }
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1 && mc >= 4096) schedule(static)
#endif
    for (int m = 0; m < M; m++)
        f->dw_output_row(S, mc, C, m, dw);
}
