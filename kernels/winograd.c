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

static int tiles_w(int W) { return (W + 1) / 2; }

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

/* Even and odd columns of padded row x (W wide, NULL: a zero row):
 * e[k] = x[2k - 1], o[k] = x[2k], zero outside, k <= TW. */
static void split_row(const float *x, int W, int TW, float *e, float *o)
{
    if (!x) {
        memset(e, 0, sizeof(float) * (size_t)(TW + 1));
        memset(o, 0, sizeof(float) * (size_t)(TW + 1));
        return;
    }
    /* valid: e[k] for 1 <= k <= W/2 (2k - 1 < W), o[k] for k < (W + 1)/2 (2k < W) */
    int ke = W / 2 < TW ? W / 2 : TW, ko = (W + 1) / 2 < TW + 1 ? (W + 1) / 2 : TW + 1;
    const float *restrict xs = x;
    float *restrict ee = e, *restrict oo = o;
    ee[0] = 0.0f;
#pragma omp simd
    for (int k = 1; k <= ke; k++)
        ee[k] = xs[2 * k - 1];
    for (int k = ke + 1; k <= TW; k++)
        ee[k] = 0.0f;
#pragma omp simd
    for (int k = 0; k < ko; k++)
        oo[k] = xs[2 * k];
    for (int k = ko; k <= TW; k++)
        oo[k] = 0.0f;
}

/* V[xi][c][t0 + tw] for one tile row of one channel (x0: that channel's plane). */
static void input_row(const float *x0, int H, int W, int th, float *rows, float *V, size_t cs,
                      long t0)
{
    int TW = tiles_w(W), L = TW + 1;
    float *e[4], *o[4];
    for (int r = 0; r < 4; r++) {
        e[r] = rows + (size_t)(2 * r) * L;
        o[r] = rows + (size_t)(2 * r + 1) * L;
        int ih = 2 * th - 1 + r;
        split_row(ih >= 0 && ih < H ? x0 + (long)ih * W : NULL, W, TW, e[r], o[r]);
    }
    /* rows: B^T d, in place: r0 = d0 - d2, r1 = d1 + d2, r2 = d2 - d1, r3 = d1 - d3 */
    for (int h = 0; h < 2; h++) {
        float *d0 = h ? o[0] : e[0], *d1 = h ? o[1] : e[1], *d2 = h ? o[2] : e[2],
              *d3 = h ? o[3] : e[3];
#pragma omp simd
        for (int k = 0; k < L; k++) {
            float a = d0[k], b = d1[k], c = d2[k], d = d3[k];
            d0[k] = a - c;
            d1[k] = b + c;
            d2[k] = c - b;
            d3[k] = b - d;
        }
    }
    /* columns: the same on (E[tw], O[tw], E[tw+1], O[tw+1]) */
    for (int i = 0; i < 4; i++) {
        const float *E = e[i], *O = o[i];
        float *v0 = V + (size_t)(4 * i) * cs + t0, *v1 = v0 + cs, *v2 = v1 + cs, *v3 = v2 + cs;
#pragma omp simd
        for (int tw = 0; tw < TW; tw++) {
            float a = E[tw], b = O[tw], c = E[tw + 1], d = O[tw + 1];
            v0[tw] = a - c;
            v1[tw] = b + c;
            v2[tw] = c - b;
            v3[tw] = b - d;
        }
    }
}

/* y rows 2th, 2th + 1 of one output channel from P[xi][t0 + tw] (xi stride ps). */
static void output_row(const float *P, size_t ps, long t0, int H, int W, int th, int acc,
                       float *y0, float *rows)
{
    int TW = tiles_w(W);
    float *q[4] = {rows, rows + TW, rows + 2 * TW, rows + 3 * TW}; /* y00 y01 y10 y11 */
    /* A^T m A with m = the 16 products of a tile (xi = 4 i + j), as named
     * pointers: an array of them was reloaded per element and kept the loop scalar */
    const float *P0 = P + t0;
#define WP(k) const float *restrict p##k = P0 + (size_t)(k) * ps
    WP(0); WP(1); WP(2); WP(3); WP(4); WP(5); WP(6); WP(7);
    WP(8); WP(9); WP(10); WP(11); WP(12); WP(13); WP(14); WP(15);
#undef WP
    float *restrict q0 = q[0], *restrict q1 = q[1], *restrict q2 = q[2], *restrict q3 = q[3];
#pragma omp simd
    for (int tw = 0; tw < TW; tw++) {
        float a0 = p0[tw] + p4[tw] + p8[tw], a1 = p1[tw] + p5[tw] + p9[tw];
        float a2 = p2[tw] + p6[tw] + p10[tw], a3 = p3[tw] + p7[tw] + p11[tw];
        float b0 = p4[tw] - p8[tw] - p12[tw], b1 = p5[tw] - p9[tw] - p13[tw];
        float b2 = p6[tw] - p10[tw] - p14[tw], b3 = p7[tw] - p11[tw] - p15[tw];
        q0[tw] = a0 + a1 + a2;
        q1[tw] = a1 - a2 - a3;
        q2[tw] = b0 + b1 + b2;
        q3[tw] = b1 - b2 - b3;
    }
    for (int r = 0; r < 2; r++) {
        int oh = 2 * th + r;
        if (oh >= H)
            break;
        float *restrict yr = y0 + (long)oh * W;
        const float *restrict a = q[2 * r], *restrict b = q[2 * r + 1];
        int pairs = W / 2; /* whole tiles; an odd W leaves column W - 1 */
        if (acc) {
#pragma omp simd
            for (int tw = 0; tw < pairs; tw++) {
                yr[2 * tw] += a[tw];
                yr[2 * tw + 1] += b[tw];
            }
            if (W & 1)
                yr[W - 1] += a[pairs];
        } else {
#pragma omp simd
            for (int tw = 0; tw < pairs; tw++) {
                yr[2 * tw] = a[tw];
                yr[2 * tw + 1] = b[tw];
            }
            if (W & 1)
                yr[W - 1] = a[pairs];
        }
    }
}

/* V[xi][c][t] of tile rows r0 .. r1-1 (rows TH per image, images sx apart) for
 * all C channels; T = (r1 - r0) * TW tiles; rows: scratch of 8 * (TW + 1). */
static void input_rows(const float *x, long sx, int C, int H, int W, long r0, long r1, float *V,
                       float *rows)
{
    int TH = (H + 1) / 2, TW = tiles_w(W);
    size_t T = (size_t)(r1 - r0) * TW;
    for (long r = r0; r < r1; r++) {
        int n = (int)(r / TH), th = (int)(r % TH);
        for (int c = 0; c < C; c++)
            input_row(x + n * sx + (long)c * H * W, H, W, th, rows, V + (size_t)c * T, C * T,
                      (r - r0) * TW);
    }
}

/* y (= or += when acc) from P[xi][m][t] of the same tile rows, all M channels. */
static void output_rows(const float *P, int M, int H, int W, long r0, long r1, int acc, float *y,
                        long sy, float *rows)
{
    int TH = (H + 1) / 2, TW = tiles_w(W);
    size_t T = (size_t)(r1 - r0) * TW;
    for (long r = r0; r < r1; r++) {
        int n = (int)(r / TH), th = (int)(r % TH);
        for (int m = 0; m < M; m++)
            output_row(P + (size_t)m * T, M * T, (r - r0) * TW, H, W, th, acc,
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
    int r = want / tiles_w(W);
    return r < 1 ? 1 : r;
}

size_t apb_wino_dw_work_floats(int C, int M, int W, int nthreads)
{
    size_t tc = (size_t)dw_chunk_rows(C, M, W) * tiles_w(W);
    size_t rows = (size_t)8 * (tiles_w(W) + 1);
    int nt = nthreads < 1 ? 1 : nthreads;
    return (size_t)16 * M * C + (size_t)16 * (C + M) * tc + (size_t)nt * rows;
}

/* Ug[xi][t0 + tw] (xi stride us) for tile row th of one channel's gradient dy0
 * ([H][W]): the 2x2 tile g at rows 2th, 2th + 1 and columns 2tw, 2tw + 1 (zero
 * outside) as G' g G'^T, G' = [1 0; 1/2 1/2; 1/2 -1/2; 0 -1]. */
static void grad_row(const float *dy0, int H, int W, int th, float *rows, float *U, size_t us,
                     long t0)
{
    int TW = tiles_w(W), pairs = W / 2;
    float *e[2] = {rows, rows + 2 * TW}, *o[2] = {rows + TW, rows + 3 * TW};
    for (int r = 0; r < 2; r++) {
        int ih = 2 * th + r;
        float *restrict ee = e[r], *restrict oo = o[r];
        if (ih >= H) {
            memset(ee, 0, sizeof(float) * (size_t)TW);
            memset(oo, 0, sizeof(float) * (size_t)TW);
            continue;
        }
        const float *restrict xr = dy0 + (long)ih * W;
#pragma omp simd
        for (int k = 0; k < pairs; k++) {
            ee[k] = xr[2 * k];
            oo[k] = xr[2 * k + 1];
        }
        if (W & 1) { /* the last tile has one column */
            ee[pairs] = xr[W - 1];
            oo[pairs] = 0.0f;
        }
    }
    float *U0 = U + t0;
#define UP(k) float *restrict u##k = U0 + (size_t)(k) * us
    UP(0); UP(1); UP(2); UP(3); UP(4); UP(5); UP(6); UP(7);
    UP(8); UP(9); UP(10); UP(11); UP(12); UP(13); UP(14); UP(15);
#undef UP
    const float *restrict a0 = e[0], *restrict b0 = o[0], *restrict a1 = e[1], *restrict b1 = o[1];
#pragma omp simd
    for (int tw = 0; tw < TW; tw++) {
        /* rows: t_i = (a, b) per column pair: g0, (g0 + g1)/2, (g0 - g1)/2, -g1 */
        float ta[4] = {a0[tw], 0.5f * (a0[tw] + a1[tw]), 0.5f * (a0[tw] - a1[tw]), -a1[tw]};
        float tb[4] = {b0[tw], 0.5f * (b0[tw] + b1[tw]), 0.5f * (b0[tw] - b1[tw]), -b1[tw]};
        /* columns: the same on (a, b) of each row */
        u0[tw] = ta[0], u1[tw] = 0.5f * (ta[0] + tb[0]), u2[tw] = 0.5f * (ta[0] - tb[0]), u3[tw] = -tb[0];
        u4[tw] = ta[1], u5[tw] = 0.5f * (ta[1] + tb[1]), u6[tw] = 0.5f * (ta[1] - tb[1]), u7[tw] = -tb[1];
        u8[tw] = ta[2], u9[tw] = 0.5f * (ta[2] + tb[2]), u10[tw] = 0.5f * (ta[2] - tb[2]), u11[tw] = -tb[2];
        u12[tw] = ta[3], u13[tw] = 0.5f * (ta[3] + tb[3]), u14[tw] = 0.5f * (ta[3] - tb[3]),
        u15[tw] = -tb[3];
    }
}

/* dw[m][c][3][3] += A'^T S[.][m][c] A' for the C channels of row m (S: [16][M][C]). */
static void dw_output_row(const float *S, size_t mc, int C, int m, float *dw)
{
    const float *S0 = S + (size_t)m * C;
#define SP(k) const float *restrict s##k = S0 + (size_t)(k) * mc
    SP(0); SP(1); SP(2); SP(3); SP(4); SP(5); SP(6); SP(7);
    SP(8); SP(9); SP(10); SP(11); SP(12); SP(13); SP(14); SP(15);
#undef SP
    float *restrict d = dw + (size_t)m * C * 9;
#pragma omp simd
    for (int c = 0; c < C; c++) {
        /* rows: r0 = s0 + s1 + s2, r1 = s1 - s2, r2 = s1 + s2 + s3 (per column j) */
        float r0[4], r1[4], r2[4];
        r0[0] = s0[c] + s4[c] + s8[c], r1[0] = s4[c] - s8[c], r2[0] = s4[c] + s8[c] + s12[c];
        r0[1] = s1[c] + s5[c] + s9[c], r1[1] = s5[c] - s9[c], r2[1] = s5[c] + s9[c] + s13[c];
        r0[2] = s2[c] + s6[c] + s10[c], r1[2] = s6[c] - s10[c], r2[2] = s6[c] + s10[c] + s14[c];
        r0[3] = s3[c] + s7[c] + s11[c], r1[3] = s7[c] - s11[c], r2[3] = s7[c] + s11[c] + s15[c];
        float *dc = d + (size_t)c * 9;
        dc[0] += r0[0] + r0[1] + r0[2], dc[1] += r0[1] - r0[2], dc[2] += r0[1] + r0[2] + r0[3];
        dc[3] += r1[0] + r1[1] + r1[2], dc[4] += r1[1] - r1[2], dc[5] += r1[1] + r1[2] + r1[3];
        dc[6] += r2[0] + r2[1] + r2[2], dc[7] += r2[1] - r2[2], dc[8] += r2[1] + r2[2] + r2[3];
    }
}

void apb_wino_dw(int N, int C, int H, int W, const float *x, long sx, int M, const float *dy,
                 long sdy, float *dw, float *work, int nthreads)
{
    if (N <= 0 || C <= 0 || M <= 0 || H <= 0 || W <= 0)
        return;
    int TH = (H + 1) / 2, TW = tiles_w(W), rc = dw_chunk_rows(C, M, W);
    long nrows = (long)N * TH, nchunk = (nrows + rc - 1) / rc;
    size_t mc = (size_t)M * C, tc = (size_t)rc * TW, rs = (size_t)8 * (TW + 1);
    float *S = work, *V = S + 16 * mc, *U = V + (size_t)16 * C * tc, *rows = U + (size_t)16 * M * tc;
    int nt = nthreads < 1 ? 1 : nthreads;
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
                        input_row(x + n * sx + (long)q * H * W, H, W, th, rw, V + (size_t)q * T,
                                  C * T, t0);
                    else
                        grad_row(dy + n * sdy + (long)(q - C) * H * W, H, W, th, rw,
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
        dw_output_row(S, mc, C, m, dw);
}
