/* winograd_rows.h - the tile-row transforms of Winograd F(2x2, 3x3), included
 * by winograd.c (baseline build), winograd_avx2.c and winograd_avx512.c (built
 * with those ISA flags) with WINO_SUFFIX naming their two entry points. Only
 * additions and subtractions, never contracted (-ffp-contract=off): every build
 * gives the same bits, a wider one just does more per instruction. Not a public
 * header: kernels/winograd.c dispatches by apb_isa_active(). */
#include <stddef.h>
#include <string.h>

#define WINO_CAT2(a, b) a##b
#define WINO_CAT(a, b) WINO_CAT2(a, b)
#define WINO_INPUT WINO_CAT(apb_wino_input_rows, WINO_SUFFIX)
#define WINO_OUTPUT WINO_CAT(apb_wino_output_rows, WINO_SUFFIX)

static int tiles_w(int W) { return (W + 1) / 2; }

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
void WINO_INPUT(const float *x, long sx, int C, int H, int W, long r0, long r1, float *V, float *rows)
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
void WINO_OUTPUT(const float *P, int M, int H, int W, long r0, long r1, int acc, float *y, long sy,
                 float *rows)
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
