/* winograd.c - F(2x2, 3x3) convolution (see winograd.h).
 *
 * Transforms, with d the 4x4 input patch at rows 2th-1.., columns 2tw-1.. (zero
 * outside the image) and m the 4x4 product tile:
 *   B^T d:  rows d0 - d2, d1 + d2, d2 - d1, d1 - d3 (and the same on columns)
 *   G g G^T with G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T m A with A^T = [1 1 1 0; 0 1 -1 -1]
 * The input transform runs on whole rows: with E[k] = x[2k - 1] and O[k] = x[2k]
 * (the even and odd columns of the padded row), tile tw's four columns are E[tw],
 * O[tw], E[tw + 1], O[tw + 1], so every step is a contiguous loop over tw. The
 * output transform writes the 2x2 results back the same way.
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

/* The row transforms at the active ISA level (winograd_body.h): the AVX2 copy
 * from AVX2 up. An AVX-512 copy was measured on Zen 5 (session 14,
 * docs/TRAINING_SPEED.md) and dropped: its rows (4 to 28 tiles) are mostly
 * scalar remainder at 16 lanes, 1.0-3.7x slower than AVX2's on maps of 28 and
 * less, and no faster above. */
static const wg_fns *wg(void)
{
    static const wg_fns c = APB_WG_TABLE(c), avx2 = APB_WG_TABLE(avx2);
    return apb_isa_active() >= APB_ISA_AVX2 ? &avx2 : &c;
}


/* Tiles per chunk: whole tile rows, about this many tiles. */
#define WINO_TILES 128

static int wino_on = -1;

int apb_wino_enabled(void) { return apb_env_switch("APB_WINOGRAD", &wino_on); }

int apb_wino_enable(int on)
{
    int prev = apb_wino_enabled();
    __atomic_store_n(&wino_on, on ? 1 : 0, __ATOMIC_RELEASE);
    return prev;
}

size_t apb_wino_u_floats(int M, int C) { return (size_t)16 * M * C; }

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

/* Tile rows per chunk: about 32768 / C tiles (at least WINO_TILES), so a
 * chunk's transformed inputs stay near 512 KB, and narrow layers get GEMMs with
 * enough columns (measured: 128 tiles at C = 64 left the Winograd forward slower
 * than the direct one, docs/TRAINING_SPEED.md). */
static int chunk_rows(int C, int W)
{
    int want = 32768 / C < WINO_TILES ? WINO_TILES : 32768 / C;
    int tw = wg_tiles_w(W), r = want / tw;
    return r < 1 ? 1 : r;
}

size_t apb_wino_work_floats(int C, int M, int W)
{
    size_t tc = (size_t)chunk_rows(C, W) * wg_tiles_w(W);
    size_t rows = (size_t)8 * (wg_tiles_w(W) + 1); /* input_row's E/O of 4 rows (output_row: 4 TW) */
    return (size_t)16 * C * tc + (size_t)16 * M * tc + rows;
}

/* V[xi][c][t] of tile rows r0 .. r1-1 (rows TH per image, images sx apart) for
 * all C channels; T = (r1 - r0) * TW tiles; rows: scratch of 8 * (TW + 1). */
static void input_rows(const float *x, long sx, int C, int H, int W, long r0, long r1, float *V,
                       float *rows)
{
    int TH = (H + 1) / 2, TW = wg_tiles_w(W);
    size_t T = (size_t)(r1 - r0) * TW;
    const wg_fns *f = wg();
    for (long r = r0; r < r1; r++) {
        int n = (int)(r / TH), th = (int)(r % TH);
        for (int c = 0; c < C; c++)
            f->input_row(x + n * sx + (long)c * H * W, H, W, th, rows, V + (size_t)c * T, C * T,
                      (r - r0) * TW);
    }
}

/* y (= or += when acc) from P[xi][m][t] of the same tile rows, all M channels. */
static void output_rows(const float *P, int M, int H, int W, long r0, long r1, int acc, float *y,
                        long sy, float *rows)
{
    int TH = (H + 1) / 2, TW = wg_tiles_w(W);
    size_t T = (size_t)(r1 - r0) * TW;
    const wg_fns *f = wg();
    for (long r = r0; r < r1; r++) {
        int n = (int)(r / TH), th = (int)(r % TH);
        for (int m = 0; m < M; m++)
            f->output_row(P + (size_t)m * T, M * T, (r - r0) * TW, H, W, th, acc,
                       y + n * sy + (long)m * H * W, rows);
    }
}

size_t apb_wino_packed_floats(int M, int C) { return 16 * apb_sgemm_apack_floats(M, C); }

void apb_wino_pack(int M, int C, const float *U, float *pu, int nthreads)
{
    size_t pf = apb_sgemm_apack_floats(M, C), mc = (size_t)M * C;
    int nt = nthreads < 1 ? 1 : nthreads;
    (void)nt;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
#endif
    for (int k = 0; k < 16; k++)
        apb_sgemm_apack(M, C, U + k * mc, C, pu + k * pf);
}

static void wino_run(int N, int C, int H, int W, const float *x, long sx, int M, const float *U,
                     const float *pu, int accumulate, float *y, long sy, float *work, int nthreads)
{
    int TH = (H + 1) / 2, TW = wg_tiles_w(W), rc = chunk_rows(C, W);
    long nrows = (long)N * TH, nchunk = (nrows + rc - 1) / rc;
    size_t wf = apb_wino_work_floats(C, M, W), tc = (size_t)rc * TW, mc = (size_t)M * C;
    size_t pf = apb_sgemm_apack_floats(M, C);
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
        float *V = work + (size_t)tid * wf, *P = V + (size_t)16 * C * tc, *rows = P + (size_t)16 * M * tc;
        long r0 = ch * rc, r1 = r0 + rc < nrows ? r0 + rc : nrows;
        size_t T = (size_t)(r1 - r0) * TW; /* tiles in this chunk */
        input_rows(x, sx, C, H, W, r0, r1, V, rows);
        for (int k = 0; k < 16; k++)
            apb_sgemm_packed(M, (int)T, C, 1.0f, U ? U + k * mc : NULL, C, pu ? pu + k * pf : NULL,
                             V + (size_t)k * C * T, (int)T, 0.0f, P + (size_t)k * M * T, (int)T);
        output_rows(P, M, H, W, r0, r1, accumulate, y, sy, rows);
    }
}

void apb_wino_conv(int N, int C, int H, int W, const float *x, long sx, int M, const float *U,
                   int accumulate, float *y, long sy, float *work, int nthreads)
{
    if (N <= 0 || C <= 0 || M <= 0 || H <= 0 || W <= 0)
        return;
    /* the 16 U matrices packed once for every chunk's GEMMs (sgemm.h); without
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

/* ---- weight gradient, F(3x3, 2x2) ---- */

/* Tile rows per chunk of the weight gradient: about 262144 / (C + M) tiles (at
 * least WINO_TILES), so the transformed x and dy of a chunk stay near 16 MB and
 * each GEMM's reduction runs over hundreds of tiles. */
static int dw_chunk_rows(int C, int M, int W)
{
    int want = 262144 / (C + M);
    if (want < WINO_TILES)
        want = WINO_TILES;
    int r = want / wg_tiles_w(W);
    return r < 1 ? 1 : r;
}

size_t apb_wino_dw_work_floats(int C, int M, int W, int nthreads)
{
    size_t tc = (size_t)dw_chunk_rows(C, M, W) * wg_tiles_w(W);
    size_t rows = (size_t)8 * (wg_tiles_w(W) + 1);
    int nt = nthreads < 1 ? 1 : nthreads;
    return (size_t)16 * M * C + (size_t)16 * (C + M) * tc + (size_t)nt * rows;
}

void apb_wino_dw(int N, int C, int H, int W, const float *x, long sx, int M, const float *dy,
                 long sdy, float *dw, float *work, int nthreads)
{
    if (N <= 0 || C <= 0 || M <= 0 || H <= 0 || W <= 0)
        return;
    int TH = (H + 1) / 2, TW = wg_tiles_w(W), rc = dw_chunk_rows(C, M, W);
    long nrows = (long)N * TH, nchunk = (nrows + rc - 1) / rc;
    size_t mc = (size_t)M * C, tc = (size_t)rc * TW, rs = (size_t)8 * (TW + 1);
    float *S = work, *V = S + 16 * mc, *U = V + (size_t)16 * C * tc, *rows = U + (size_t)16 * M * tc;
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
            float *rw = rows + (size_t)omp_get_thread_num() * rs;
#pragma omp for schedule(static)
#else
            float *rw = rows;
#endif
            for (int q = 0; q < C + M; q++) /* channel q: x's (q < C), then dy's */
                for (long r = r0; r < r1; r++) {
                    int n = (int)(r / TH), th = (int)(r % TH);
                    long t0 = (r - r0) * TW;
                    if (q < C)
                        f->input_row(x + n * sx + (long)q * H * W, H, W, th, rw, V + (size_t)q * T,
                                  C * T, t0);
                    else
                        f->grad_row(dy + n * sdy + (long)(q - C) * H * W, H, W, th, rw,
                                 U + (size_t)(q - C) * T, M * T, t0);
                }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int k = 0; k < 16; k++) /* one thread per GEMM: sums independent of nt */
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
