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

#define WINO_SUFFIX _c
#include "winograd_rows.h"

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
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) if (nthreads > 1 && mc >= 4096) schedule(static)
#endif
    for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++) {
            float g[3][3], t[4][3];
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++)
                    g[kh][kw] = flip ? w[((size_t)c * M + m) * 9 + (2 - kh) * 3 + (2 - kw)]
                                     : w[((size_t)m * C + c) * 9 + kh * 3 + kw];
            for (int j = 0; j < 3; j++) { /* t = G g */
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) { /* u = t G^T */
                float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                              0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int j = 0; j < 4; j++)
                    U[(size_t)(i * 4 + j) * mc + (size_t)m * C + c] = u[j];
            }
        }
}

/* Tile rows per chunk: about 32768 / C tiles (at least WINO_TILES), so a
 * chunk's transformed inputs stay near 512 KB, and narrow layers get GEMMs with
 * enough columns (measured: 128 tiles at C = 64 left the Winograd forward slower
 * than the direct one, docs/TRAINING_SPEED.md). */
static int chunk_rows(int C, int W)
{
    int want = 32768 / C < WINO_TILES ? WINO_TILES : 32768 / C;
    int tw = tiles_w(W), r = want / tw;
    return r < 1 ? 1 : r;
}

size_t apb_wino_work_floats(int C, int M, int W)
{
    size_t tc = (size_t)chunk_rows(C, W) * tiles_w(W);
    size_t rows = (size_t)8 * (tiles_w(W) + 1); /* input_row's E/O of 4 rows (output_row: 4 TW) */
    return (size_t)16 * C * tc + (size_t)16 * M * tc + rows;
}

/* The row transforms at the active ISA level (winograd_rows.h: the same bits at
 * every level). */
typedef struct {
    void (*in)(const float *, long, int, int, int, long, long, float *, float *);
    void (*out)(const float *, int, int, int, long, long, int, float *, long, float *);
} wino_rows;

static wino_rows rows_active(void)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: return (wino_rows){apb_wino_input_rows_avx512, apb_wino_output_rows_avx512};
    case APB_ISA_AVX2: return (wino_rows){apb_wino_input_rows_avx2, apb_wino_output_rows_avx2};
    default: return (wino_rows){apb_wino_input_rows_c, apb_wino_output_rows_c};
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
                     const float *pu, int accumulate, float *y, long sy, float *work, int nthreads);

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

static void wino_run(int N, int C, int H, int W, const float *x, long sx, int M, const float *U,
                     const float *pu, int accumulate, float *y, long sy, float *work, int nthreads)
{
    wino_rows tf = rows_active();
    int TH = (H + 1) / 2, TW = tiles_w(W), rc = chunk_rows(C, W);
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
        tf.in(x, sx, C, H, W, r0, r1, V, rows);
        for (int k = 0; k < 16; k++)
            apb_sgemm_packed(M, (int)T, C, 1.0f, U ? U + k * mc : NULL, C, pu ? pu + k * pf : NULL,
                             V + (size_t)k * C * T, (int)T, 0.0f, P + (size_t)k * M * T, (int)T);
        tf.out(P, M, H, W, r0, r1, accumulate, y, sy, rows);
    }
}
