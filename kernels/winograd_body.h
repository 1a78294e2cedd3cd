/* winograd_body.h - the row transforms of winograd.c, included once per ISA
 * level with WG(name) naming that level's copy (winograd.c, winograd_avx2.c;
 * chosen by apb_isa_active()). Adds, subtracts and halvings
 * only, never contracted (-ffp-contract=off): every level gives the same bits.
 * No include guard: each including file compiles it once. */
#include <stddef.h>
#include <string.h>

static inline int wg_tiles_w(int W) { return (W + 1) / 2; }

/* U[xi][m][c] = G g G^T for the C channels of output m (flip: the kernel of
 * dx, w read as [C][M] and rotated by 180 degrees). */
void WG(weights_row)(int m, int M, int C, const float *w, int flip, float *U, size_t mc)
{
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

/* Even and odd columns of padded row x (W wide, NULL: a zero row):
 * e[k] = x[2k - 1], o[k] = x[2k], zero outside, k <= TW. */
static void wg_split_row(const float *x, int W, int TW, float *e, float *o)
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
void WG(input_row)(const float *x0, int H, int W, int th, float *rows, float *V, size_t cs,
                      long t0)
{
    int TW = wg_tiles_w(W), L = TW + 1;
    float *e[4], *o[4];
    for (int r = 0; r < 4; r++) {
        e[r] = rows + (size_t)(2 * r) * L;
        o[r] = rows + (size_t)(2 * r + 1) * L;
        int ih = 2 * th - 1 + r;
        wg_split_row(ih >= 0 && ih < H ? x0 + (long)ih * W : NULL, W, TW, e[r], o[r]);
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
void WG(output_row)(const float *P, size_t ps, long t0, int H, int W, int th, int acc,
                       float *y0, float *rows)
{
    int TW = wg_tiles_w(W);
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

/* Ug[xi][t0 + tw] (xi stride us) for tile row th of one channel's gradient dy0
 * ([H][W]): the 2x2 tile g at rows 2th, 2th + 1 and columns 2tw, 2tw + 1 (zero
 * outside) as G' g G'^T, G' = [1 0; 1/2 1/2; 1/2 -1/2; 0 -1]. */
void WG(grad_row)(const float *dy0, int H, int W, int th, float *rows, float *U, size_t us,
                     long t0)
{
    int TW = wg_tiles_w(W), pairs = W / 2;
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
void WG(dw_output_row)(const float *S, size_t mc, int C, int m, float *dw)
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

