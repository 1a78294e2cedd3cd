/* winograd_body.h - the tile transforms of winograd.c (F(4x4, 3x3) and, for the
 * weight gradient, F(3x3, 4x4)), included once per ISA level with WG(name)
 * naming that level's copy (winograd.c, winograd_avx2.c, winograd_avx512.c;
 * chosen by apb_isa_active()). Adds, subtracts and multiplies by constants only,
 * never contracted (-ffp-contract=off): every level gives the same bits.
 *
 * The work is split in two kinds of loops:
 * - a split copies one tile row of one channel into per-tile arrays: D[k][t0 + tw]
 *   is element k of tile tw's patch (36 of a 6x6 input patch, 16 of a 4x4
 *   gradient tile), zero outside the image;
 * - a transform runs over T consecutive tiles of those arrays (a chunk's tile rows
 *   of one channel), so its loop is as long as the chunk, not as a tile row: on
 *   8x8 to 14x14 maps a row has only 2-4 tiles.
 * No include guard: each including file compiles it once. */
#include <stddef.h>
#include <string.h>

/* Named restrict pointers n0 .. n15 (n0 .. n35) = base + k * st, with the
 * qualifier q (const or nothing): an array of row pointers was reloaded per
 * element and kept such loops scalar (session 11). */
#define WG_P(q, n, k, base, st) q float *restrict n##k = (base) + (size_t)(k) * (st)
#define WG_P16(q, n, base, st)                                                                     \
    WG_P(q, n, 0, base, st); WG_P(q, n, 1, base, st); WG_P(q, n, 2, base, st);                    \
    WG_P(q, n, 3, base, st); WG_P(q, n, 4, base, st); WG_P(q, n, 5, base, st);                    \
    WG_P(q, n, 6, base, st); WG_P(q, n, 7, base, st); WG_P(q, n, 8, base, st);                    \
    WG_P(q, n, 9, base, st); WG_P(q, n, 10, base, st); WG_P(q, n, 11, base, st);                  \
    WG_P(q, n, 12, base, st); WG_P(q, n, 13, base, st); WG_P(q, n, 14, base, st);                 \
    WG_P(q, n, 15, base, st)
#define WG_P36(q, n, base, st)                                                                     \
    WG_P16(q, n, base, st); WG_P(q, n, 16, base, st); WG_P(q, n, 17, base, st);                   \
    WG_P(q, n, 18, base, st); WG_P(q, n, 19, base, st); WG_P(q, n, 20, base, st);                 \
    WG_P(q, n, 21, base, st); WG_P(q, n, 22, base, st); WG_P(q, n, 23, base, st);                 \
    WG_P(q, n, 24, base, st); WG_P(q, n, 25, base, st); WG_P(q, n, 26, base, st);                 \
    WG_P(q, n, 27, base, st); WG_P(q, n, 28, base, st); WG_P(q, n, 29, base, st);                 \
    WG_P(q, n, 30, base, st); WG_P(q, n, 31, base, st); WG_P(q, n, 32, base, st);                 \
    WG_P(q, n, 33, base, st); WG_P(q, n, 34, base, st); WG_P(q, n, 35, base, st)

/* Tiles across n pixels (a row's width or a plane's height): 4 outputs each. */
static inline int wg_tiles(int n) { return (n + 3) / 4; }

/* G v on three values (multiplications by the rounded reciprocals, the same at
 * every level): G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6;
 * 1/24 -1/12 1/6; 0 0 1]. */
#define WG_G(a, b, d, u0, u1, u2, u3, u4, u5)                                                      \
    do {                                                                                           \
        float s_ = (a + d) * (-1.0f / 6.0f), t_ = b * (1.0f / 6.0f);                               \
        float p_ = a * (1.0f / 24.0f) + d * (1.0f / 6.0f), q_ = b * (1.0f / 12.0f);                \
        u0 = a * 0.25f;                                                                            \
        u1 = s_ - t_;                                                                              \
        u2 = s_ + t_;                                                                              \
        u3 = p_ + q_;                                                                              \
        u4 = p_ - q_;                                                                              \
        u5 = d;                                                                                    \
    } while (0)

/* U[xi][m][c] = G g G^T (xi = 6 i + j) for the C channels of output m (flip:
 * the kernel of dx, w read as [C][M] and rotated by 180 degrees). The kernels
 * go through a transposed block first, so the transform runs across channels. */
void WG(weights_row)(int m, int M, int C, const float *w, int flip, float *U, size_t mc)
{
    enum { B = 64 };
    float gt[9][B], ut[36][B];
    for (int c0 = 0; c0 < C; c0 += B) {
        int nb = C - c0 < B ? C - c0 : B;
        for (int c = 0; c < nb; c++) {
            const float *g = flip ? w + ((size_t)(c0 + c) * M + m) * 9 : w + ((size_t)m * C + c0 + c) * 9;
            for (int k = 0; k < 9; k++)
                gt[k][c] = g[flip ? 8 - k : k];
        }
#pragma omp simd
        for (int c = 0; c < nb; c++) {
            float t00, t10, t20, t30, t40, t50, t01, t11, t21, t31, t41, t51, t02, t12, t22, t32,
                t42, t52; /* t = G g (t_ij: row i, column j) */
            WG_G(gt[0][c], gt[3][c], gt[6][c], t00, t10, t20, t30, t40, t50);
            WG_G(gt[1][c], gt[4][c], gt[7][c], t01, t11, t21, t31, t41, t51);
            WG_G(gt[2][c], gt[5][c], gt[8][c], t02, t12, t22, t32, t42, t52);
#define ROW(i) WG_G(t##i##0, t##i##1, t##i##2, ut[6 * i][c], ut[6 * i + 1][c], ut[6 * i + 2][c],   \
                    ut[6 * i + 3][c], ut[6 * i + 4][c], ut[6 * i + 5][c])
            ROW(0); ROW(1); ROW(2); ROW(3); ROW(4); ROW(5);
#undef ROW
        }
        for (int k = 0; k < 36; k++)
            memcpy(U + (size_t)k * mc + (size_t)m * C + c0, ut[k], sizeof(float) * (size_t)nb);
    }
}

/* D[6 i + j][t0 + tw] = x0[4 th - 1 + i][4 tw - 1 + j] (zero outside the H x W
 * plane x0): the 6x6 input patches of tile row th. xp: scratch of 4 * TW + 8. */
void WG(split_in)(const float *x0, int H, int W, int th, float *xp, float *D, size_t ds, long t0)
{
    int TW = wg_tiles(W), L = 4 * TW + 4;
    for (int i = 0; i < 6; i++) {
        int ih = 4 * th - 1 + i;
        float *restrict p = xp;
        float *restrict d0 = D + (size_t)(6 * i) * ds + t0, *restrict d1 = d0 + ds,
                        *restrict d2 = d1 + ds, *restrict d3 = d2 + ds, *restrict d4 = d3 + ds,
                        *restrict d5 = d4 + ds;
        if (ih < 0 || ih >= H) {
            for (int tw = 0; tw < TW; tw++)
                d0[tw] = d1[tw] = d2[tw] = d3[tw] = d4[tw] = d5[tw] = 0.0f;
            continue;
        }
        /* the padded row: p[k] = x[k - 1], zero at k = 0 and past W */
        p[0] = 0.0f;
        memcpy(p + 1, x0 + (long)ih * W, sizeof(float) * (size_t)W);
        for (int k = W + 1; k < L; k++)
            p[k] = 0.0f;
#pragma omp simd
        for (int tw = 0; tw < TW; tw++) {
            d0[tw] = p[4 * tw];
            d1[tw] = p[4 * tw + 1];
            d2[tw] = p[4 * tw + 2];
            d3[tw] = p[4 * tw + 3];
            d4[tw] = p[4 * tw + 4];
            d5[tw] = p[4 * tw + 5];
        }
    }
}

/* B^T d on six values, B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 * 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]. */
#define WG_BT(d0, d1, d2, d3, d4, d5, r0, r1, r2, r3, r4, r5)                                      \
    do {                                                                                           \
        float a_ = d4 - 4.0f * d2, b_ = d3 - 4.0f * d1, c_ = d4 - d2, e_ = 2.0f * (d3 - d1);        \
        r0 = 4.0f * d0 - 5.0f * d2 + d4;                                                           \
        r1 = a_ + b_;                                                                              \
        r2 = a_ - b_;                                                                              \
        r3 = c_ + e_;                                                                              \
        r4 = c_ - e_;                                                                              \
        r5 = 4.0f * d1 - 5.0f * d3 + d5;                                                           \
    } while (0)

/* V[xi][t] (xi stride vs) = (B^T d B)[xi] for the T patches of D (stride ds). */
void WG(xform_in)(const float *D, size_t ds, size_t T, float *V, size_t vs)
{
    WG_P36(const, s, D, ds);
    WG_P36(, v, V, vs);
#pragma omp simd
    for (size_t t = 0; t < T; t++) {
        float r[6][6]; /* r = B^T d (rows), column j */
        WG_BT(s0[t], s6[t], s12[t], s18[t], s24[t], s30[t], r[0][0], r[1][0], r[2][0], r[3][0], r[4][0], r[5][0]);
        WG_BT(s1[t], s7[t], s13[t], s19[t], s25[t], s31[t], r[0][1], r[1][1], r[2][1], r[3][1], r[4][1], r[5][1]);
        WG_BT(s2[t], s8[t], s14[t], s20[t], s26[t], s32[t], r[0][2], r[1][2], r[2][2], r[3][2], r[4][2], r[5][2]);
        WG_BT(s3[t], s9[t], s15[t], s21[t], s27[t], s33[t], r[0][3], r[1][3], r[2][3], r[3][3], r[4][3], r[5][3]);
        WG_BT(s4[t], s10[t], s16[t], s22[t], s28[t], s34[t], r[0][4], r[1][4], r[2][4], r[3][4], r[4][4], r[5][4]);
        WG_BT(s5[t], s11[t], s17[t], s23[t], s29[t], s35[t], r[0][5], r[1][5], r[2][5], r[3][5], r[4][5], r[5][5]);
        /* columns: the same on each row */
        WG_BT(r[0][0], r[0][1], r[0][2], r[0][3], r[0][4], r[0][5], v0[t], v1[t], v2[t], v3[t], v4[t], v5[t]);
        WG_BT(r[1][0], r[1][1], r[1][2], r[1][3], r[1][4], r[1][5], v6[t], v7[t], v8[t], v9[t], v10[t], v11[t]);
        WG_BT(r[2][0], r[2][1], r[2][2], r[2][3], r[2][4], r[2][5], v12[t], v13[t], v14[t], v15[t], v16[t], v17[t]);
        WG_BT(r[3][0], r[3][1], r[3][2], r[3][3], r[3][4], r[3][5], v18[t], v19[t], v20[t], v21[t], v22[t], v23[t]);
        WG_BT(r[4][0], r[4][1], r[4][2], r[4][3], r[4][4], r[4][5], v24[t], v25[t], v26[t], v27[t], v28[t], v29[t]);
        WG_BT(r[5][0], r[5][1], r[5][2], r[5][3], r[5][4], r[5][5], v30[t], v31[t], v32[t], v33[t], v34[t], v35[t]);
    }
}

/* A^T m on six values, A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]. */
#define WG_AT(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                                              \
    do {                                                                                           \
        float p_ = m1 + m2, q_ = m1 - m2, s_ = m3 + m4, u_ = m3 - m4;                               \
        y0 = m0 + p_ + s_;                                                                         \
        y1 = q_ + 2.0f * u_;                                                                       \
        y2 = p_ + 4.0f * s_;                                                                       \
        y3 = q_ + 8.0f * u_ + m5;                                                                  \
    } while (0)

/* Q[4 a + b][t] (stride qs) = (A^T m A)[a][b] for the T tiles of P (xi stride ps). */
void WG(xform_out)(const float *P, size_t ps, size_t T, float *Q, size_t qs)
{
    WG_P36(const, p, P, ps);
    WG_P16(, q, Q, qs);
#pragma omp simd
    for (size_t t = 0; t < T; t++) {
        float z[4][6]; /* z = A^T m (rows), column j */
        WG_AT(p0[t], p6[t], p12[t], p18[t], p24[t], p30[t], z[0][0], z[1][0], z[2][0], z[3][0]);
        WG_AT(p1[t], p7[t], p13[t], p19[t], p25[t], p31[t], z[0][1], z[1][1], z[2][1], z[3][1]);
        WG_AT(p2[t], p8[t], p14[t], p20[t], p26[t], p32[t], z[0][2], z[1][2], z[2][2], z[3][2]);
        WG_AT(p3[t], p9[t], p15[t], p21[t], p27[t], p33[t], z[0][3], z[1][3], z[2][3], z[3][3]);
        WG_AT(p4[t], p10[t], p16[t], p22[t], p28[t], p34[t], z[0][4], z[1][4], z[2][4], z[3][4]);
        WG_AT(p5[t], p11[t], p17[t], p23[t], p29[t], p35[t], z[0][5], z[1][5], z[2][5], z[3][5]);
        WG_AT(z[0][0], z[0][1], z[0][2], z[0][3], z[0][4], z[0][5], q0[t], q1[t], q2[t], q3[t]);
        WG_AT(z[1][0], z[1][1], z[1][2], z[1][3], z[1][4], z[1][5], q4[t], q5[t], q6[t], q7[t]);
        WG_AT(z[2][0], z[2][1], z[2][2], z[2][3], z[2][4], z[2][5], q8[t], q9[t], q10[t], q11[t]);
        WG_AT(z[3][0], z[3][1], z[3][2], z[3][3], z[3][4], z[3][5], q12[t], q13[t], q14[t], q15[t]);
    }
}

/* y0 rows 4 th .. 4 th + 3 (those < H) of one channel = (or += when acc) the 4x4
 * tiles Q[4 a + b][t0 + tw] (stride qs) of tile row th. */
void WG(scatter_out)(const float *Q, size_t qs, long t0, int H, int W, int th, int acc, float *y0)
{
    int full = W / 4, rest = W - 4 * full;
    for (int a = 0; a < 4; a++) {
        int oh = 4 * th + a;
        if (oh >= H)
            break;
        float *restrict yr = y0 + (long)oh * W;
        const float *restrict b0 = Q + (size_t)(4 * a) * qs + t0, *restrict b1 = b0 + qs,
                              *restrict b2 = b1 + qs, *restrict b3 = b2 + qs;
        if (acc) {
#pragma omp simd
            for (int tw = 0; tw < full; tw++) {
                yr[4 * tw] += b0[tw];
                yr[4 * tw + 1] += b1[tw];
                yr[4 * tw + 2] += b2[tw];
                yr[4 * tw + 3] += b3[tw];
            }
        } else {
#pragma omp simd
            for (int tw = 0; tw < full; tw++) {
                yr[4 * tw] = b0[tw];
                yr[4 * tw + 1] = b1[tw];
                yr[4 * tw + 2] = b2[tw];
                yr[4 * tw + 3] = b3[tw];
            }
        }
        const float *bl[3] = {b0, b1, b2}; /* the last, partial tile */
        for (int b = 0; b < rest; b++) {
            if (acc)
                yr[4 * full + b] += bl[b][full];
            else
                yr[4 * full + b] = bl[b][full];
        }
    }
}

/* D[4 a + b][t0 + tw] = dy0[4 th + a][4 tw + b] (zero outside the H x W plane):
 * the 4x4 gradient tiles of tile row th. xp: scratch of 4 * TW + 8. */
void WG(split_grad)(const float *dy0, int H, int W, int th, float *xp, float *D, size_t ds, long t0)
{
    int TW = wg_tiles(W);
    for (int a = 0; a < 4; a++) {
        int ih = 4 * th + a;
        float *restrict d0 = D + (size_t)(4 * a) * ds + t0, *restrict d1 = d0 + ds,
                        *restrict d2 = d1 + ds, *restrict d3 = d2 + ds;
        if (ih >= H) {
            for (int tw = 0; tw < TW; tw++)
                d0[tw] = d1[tw] = d2[tw] = d3[tw] = 0.0f;
            continue;
        }
        const float *src = dy0 + (long)ih * W;
        if (W & 3) { /* a partial last tile: read a zero-filled copy */
            memcpy(xp, src, sizeof(float) * (size_t)W);
            for (int k = W; k < 4 * TW; k++)
                xp[k] = 0.0f;
            src = xp;
        }
        const float *restrict p = src;
#pragma omp simd
        for (int tw = 0; tw < TW; tw++) {
            d0[tw] = p[4 * tw];
            d1[tw] = p[4 * tw + 1];
            d2[tw] = p[4 * tw + 2];
            d3[tw] = p[4 * tw + 3];
        }
    }
}

/* A h on four values (A = (A^T)^T, 6 x 4): h0, h0+h1+h2+h3, h0-h1+h2-h3,
 * h0+2h1+4h2+8h3, h0-2h1+4h2-8h3, h3. */
#define WG_A(h0, h1, h2, h3, u0, u1, u2, u3, u4, u5)                                               \
    do {                                                                                           \
        float e_ = h0 + h2, o_ = h1 + h3, f_ = h0 + 4.0f * h2, g_ = 2.0f * h1 + 8.0f * h3;          \
        u0 = h0;                                                                                   \
        u1 = e_ + o_;                                                                              \
        u2 = e_ - o_;                                                                              \
        u3 = f_ + g_;                                                                              \
        u4 = f_ - g_;                                                                              \
        u5 = h3;                                                                                   \
    } while (0)

/* U[xi][t] (stride us) = (A h A^T)[xi] for the T gradient tiles of D (stride ds). */
void WG(xform_grad)(const float *D, size_t ds, size_t T, float *U, size_t us)
{
    WG_P16(const, s, D, ds);
    WG_P36(, u, U, us);
#pragma omp simd
    for (size_t t = 0; t < T; t++) {
        float r[6][4]; /* r = A h (rows), column b */
        WG_A(s0[t], s4[t], s8[t], s12[t], r[0][0], r[1][0], r[2][0], r[3][0], r[4][0], r[5][0]);
        WG_A(s1[t], s5[t], s9[t], s13[t], r[0][1], r[1][1], r[2][1], r[3][1], r[4][1], r[5][1]);
        WG_A(s2[t], s6[t], s10[t], s14[t], r[0][2], r[1][2], r[2][2], r[3][2], r[4][2], r[5][2]);
        WG_A(s3[t], s7[t], s11[t], s15[t], r[0][3], r[1][3], r[2][3], r[3][3], r[4][3], r[5][3]);
        WG_A(r[0][0], r[0][1], r[0][2], r[0][3], u0[t], u1[t], u2[t], u3[t], u4[t], u5[t]);
        WG_A(r[1][0], r[1][1], r[1][2], r[1][3], u6[t], u7[t], u8[t], u9[t], u10[t], u11[t]);
        WG_A(r[2][0], r[2][1], r[2][2], r[2][3], u12[t], u13[t], u14[t], u15[t], u16[t], u17[t]);
        WG_A(r[3][0], r[3][1], r[3][2], r[3][3], u18[t], u19[t], u20[t], u21[t], u22[t], u23[t]);
        WG_A(r[4][0], r[4][1], r[4][2], r[4][3], u24[t], u25[t], u26[t], u27[t], u28[t], u29[t]);
        WG_A(r[5][0], r[5][1], r[5][2], r[5][3], u30[t], u31[t], u32[t], u33[t], u34[t], u35[t]);
    }
}

/* G^T s on six values: the three kernel taps,
 *   G^T = [1/4 -1/6 -1/6 1/24 1/24 0; 0 -1/6 1/6 1/12 -1/12 0; 0 -1/6 -1/6 1/6 1/6 1]. */
#define WG_GT(s0, s1, s2, s3, s4, s5, k0, k1, k2)                                                 \
    do {                                                                                           \
        float p_ = s1 + s2, q_ = s1 - s2, a_ = s3 + s4, b_ = s3 - s4;                               \
        k0 = s0 * 0.25f - p_ * (1.0f / 6.0f) + a_ * (1.0f / 24.0f);                                \
        k1 = b_ * (1.0f / 12.0f) - q_ * (1.0f / 6.0f);                                             \
        k2 = (a_ - p_) * (1.0f / 6.0f) + s5;                                                       \
    } while (0)

/* dw[m][c][3][3] += G^T S[.][m][c] G for the C channels of row m (S: [36][M][C]). */
void WG(dw_output_row)(const float *S, size_t mc, int C, int m, float *dw)
{
    enum { B = 64 };
    float kt[9][B]; /* a block's 3x3 results, across channels */
    for (int c0 = 0; c0 < C; c0 += B) {
        int nb = C - c0 < B ? C - c0 : B;
        const float *S0 = S + (size_t)m * C + c0;
        WG_P36(const, s, S0, mc);
#pragma omp simd
        for (int c = 0; c < nb; c++) {
            float r00, r10, r20, r01, r11, r21, r02, r12, r22, r03, r13, r23, r04, r14, r24, r05,
                r15, r25; /* r = G^T s (r_aj: row a, column j) */
            WG_GT(s0[c], s6[c], s12[c], s18[c], s24[c], s30[c], r00, r10, r20);
            WG_GT(s1[c], s7[c], s13[c], s19[c], s25[c], s31[c], r01, r11, r21);
            WG_GT(s2[c], s8[c], s14[c], s20[c], s26[c], s32[c], r02, r12, r22);
            WG_GT(s3[c], s9[c], s15[c], s21[c], s27[c], s33[c], r03, r13, r23);
            WG_GT(s4[c], s10[c], s16[c], s22[c], s28[c], s34[c], r04, r14, r24);
            WG_GT(s5[c], s11[c], s17[c], s23[c], s29[c], s35[c], r05, r15, r25);
            WG_GT(r00, r01, r02, r03, r04, r05, kt[0][c], kt[1][c], kt[2][c]);
            WG_GT(r10, r11, r12, r13, r14, r15, kt[3][c], kt[4][c], kt[5][c]);
            WG_GT(r20, r21, r22, r23, r24, r25, kt[6][c], kt[7][c], kt[8][c]);
        }
        float *d = dw + ((size_t)m * C + c0) * 9;
        for (int c = 0; c < nb; c++)
            for (int k = 0; k < 9; k++)
                d[(size_t)c * 9 + k] += kt[k][c];
    }
}
