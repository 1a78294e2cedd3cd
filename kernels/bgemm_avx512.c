/* bgemm_avx512.c - AVX-512 micro-kernels of the binary GEMMs: VPOPCNTQ for the
 * counts, VPTERNLOGQ for the masked XORs.
 *
 * A zmm holds one word of 8 consecutive columns of a B micro-panel; each A word is
 * broadcast, so every lane accumulates a different output and no horizontal sum
 * is needed (any K works without a tail). Register tiles (accumulators out of 32
 * zmm): 1x1 8 rows x 3 panels (24), 1x2 4 x 2 with two counts each (16), 2x2
 * 2 x 2 with four counts each (16). Edge tiles use one-row instances.
 * Per word and 8 outputs: 1x1 xor+popcnt+add; 1x2 xor, ternlog, 2 popcnt,
 * 2 add; 2x2 xor, 3 logic, 4 popcnt, 4 add.
 */
#include <immintrin.h>

#include "bgemm.h"

#define AI static inline __attribute__((always_inline))

/* acc[0..7] += 64-bit lanes of v (each fits int32: at most 64*kc*factor). */
AI void add_out(int32_t *acc, __m512i v)
{
    __m256i o = _mm256_loadu_si256((const __m256i *)acc);
    _mm256_storeu_si256((__m256i *)acc, _mm256_add_epi32(o, _mm512_cvtepi64_epi32(v)));
}

/* acc[0..7] = the lanes of v (ST: the first K block, no zeroed tile to add to),
 * or += them. */
AI void put_out(int32_t *acc, __m512i v, const int ST)
{
    if (ST)
        _mm256_storeu_si256((__m256i *)acc, _mm512_cvtepi64_epi32(v));
    else
        add_out(acc, v);
}

/* B word j of panel p (8 columns) at b + p*kc*8 + j*8 when packed (boff NULL),
 * or at b + boff[j] + p*8 when read in place (apb_bgemm_ind_f32). */
AI void t1x1(const int MR, const int NP, const int ST, int kc, const uint64_t *as, int lda, const uint64_t *b,
             const long *boff, int32_t *acc, int ldacc)
{
    __m512i c[8][3];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++)
            c[r][p] = _mm512_setzero_si512();
    size_t ps = boff ? 8 : (size_t)kc * 8; /* panel stride in words */
    for (int j = 0; j < kc; j++) {
        const uint64_t *bj = boff ? b + boff[j] : b + (size_t)j * 8;
        __m512i bv[3];
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++)
            bv[p] = _mm512_loadu_si512(bj + p * ps);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512i a = _mm512_set1_epi64((long long)as[(size_t)r * lda + j]);
#pragma GCC unroll 3
            for (int p = 0; p < NP; p++)
                c[r][p] = _mm512_add_epi64(c[r][p],
                                           _mm512_popcnt_epi64(_mm512_xor_si512(a, bv[p])));
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++)
            put_out(acc + r * ldacc + p * 8, c[r][p], ST);
}

/* The 1x1 tile of mr <= 8 rows and np <= 3 panels, B packed (boff NULL: panel
 * p at b + p*kc*8) or read in place (panel p at b + p*8 through boff): 8 rows
 * as one register tile, the full one or its last panels; fewer row by row. */
AI void k1x1(int mr, int np, int kc, const uint64_t *as, int lda, const uint64_t *b, const long *boff,
             int32_t *acc, int ldacc, const int ST)
{
    if (mr == 8) {
        if (np == 3)
            t1x1(8, 3, ST, kc, as, lda, b, boff, acc, ldacc);
        else if (np == 2)
            t1x1(8, 2, ST, kc, as, lda, b, boff, acc, ldacc);
        else
            t1x1(8, 1, ST, kc, as, lda, b, boff, acc, ldacc);
        return;
    }
    size_t ps = boff ? 8 : (size_t)kc * 8; /* panel stride in words */
    for (int r = 0; r < mr; r++) {
        const uint64_t *a = as + (size_t)r * lda;
        int32_t *o = acc + r * ldacc;
        int p = 0;
        for (; p + 3 <= np; p += 3)
            t1x1(1, 3, ST, kc, a, lda, b + p * ps, boff, o + p * 8, ldacc);
        for (; p < np; p++)
            t1x1(1, 1, ST, kc, a, lda, b + p * ps, boff, o + p * 8, ldacc);
    }
}

void apb_bgemm_ind_kern_avx512(int mr, int np, int kc, const uint64_t *as, int lda, const uint64_t *src,
                               const long *boff, int32_t *acc, int ldacc)
{
    k1x1(mr, np, kc, as, lda, src, boff, acc, ldacc, 0);
}

void apb_bgemm_ind_kern0_avx512(int mr, int np, int kc, const uint64_t *as, int lda, const uint64_t *src,
                                const long *boff, int32_t *acc, int ldacc)
{
    k1x1(mr, np, kc, as, lda, src, boff, acc, ldacc, 1);
}

/* The table's two entries of kind K from its tile function kK (which takes the
 * store flag last): kern_K adds the sums to the tile, kern0_K stores them (the
 * first K block). CALL(ST) is kK's call. */
#define KERN_PAIR(K, CALL)                                                                                  \
    static void kern_##K(int mr, int np, int kc, const uint64_t *as, const uint64_t *am, int lda,          \
                         const uint64_t *bp, int32_t *acc, int ldacc)                                      \
    {                                                                                                       \
        (void)am;                                                                                           \
        CALL(0);                                                                                            \
    }                                                                                                       \
    static void kern0_##K(int mr, int np, int kc, const uint64_t *as, const uint64_t *am, int lda,         \
                          const uint64_t *bp, int32_t *acc, int ldacc)                                     \
    {                                                                                                       \
        (void)am;                                                                                           \
        CALL(1);                                                                                            \
    }

#define CALL_1X1(ST) k1x1(mr, np, kc, as, lda, bp, NULL, acc, ldacc, ST)
KERN_PAIR(1x1, CALL_1X1)

/* (a ^ s) & g: truth table over (A=a, B=s, C=g) = (0xF0 ^ 0xCC) & 0xAA */
#define TL_XOR_AND 0x28

AI void t1x2(const int MR, const int NP, const int ST, int kc, const uint64_t *as, int lda, const uint64_t *bp,
             int32_t *acc, int ldacc)
{
    __m512i ct[4][2], cm[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++)
            ct[r][p] = cm[r][p] = _mm512_setzero_si512();
    for (int j = 0; j < kc; j++) {
        __m512i s[2], g[2];
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) {
            s[p] = _mm512_loadu_si512(bp + (size_t)p * kc * 16 + j * 16);
            g[p] = _mm512_loadu_si512(bp + (size_t)p * kc * 16 + j * 16 + 8);
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m512i a = _mm512_set1_epi64((long long)as[(size_t)r * lda + j]);
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) {
                __m512i x = _mm512_xor_si512(a, s[p]);
                __m512i t = _mm512_ternarylogic_epi64(a, s[p], g[p], TL_XOR_AND);
                ct[r][p] = _mm512_add_epi64(ct[r][p], _mm512_popcnt_epi64(x));
                cm[r][p] = _mm512_add_epi64(cm[r][p], _mm512_popcnt_epi64(t));
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++)
            put_out(acc + r * ldacc + p * 8, _mm512_add_epi64(ct[r][p], _mm512_slli_epi64(cm[r][p], 1)), ST);
}

AI void k1x2(int mr, int np, int kc, const uint64_t *as, int lda, const uint64_t *bp, int32_t *acc, int ldacc,
             const int ST)
{
    if (mr == 4 && np == 2) {
        t1x2(4, 2, ST, kc, as, lda, bp, acc, ldacc);
        return;
    }
    for (int r = 0; r < mr; r++)
        for (int p = 0; p < np; p++)
            t1x2(1, 1, ST, kc, as + (size_t)r * lda, lda, bp + (size_t)p * kc * 16, acc + r * ldacc + p * 8, ldacc);
}

#define CALL_1X2(ST) k1x2(mr, np, kc, as, lda, bp, acc, ldacc, ST)
KERN_PAIR(1x2, CALL_1X2)

/* x & (u ^ v) over (A=x, B=u, C=v): 0xF0 & (0xCC ^ 0xAA) */
#define TL_AND_XOR 0x60
/* x & u & v */
#define TL_AND3 0x80

AI void t2x2(const int MR, const int NP, const int ST, int kc, const uint64_t *as, const uint64_t *am, int lda,
             const uint64_t *bp, int32_t *acc, int ldacc)
{
    __m512i cx[2][2], c1[2][2], c2[2][2], cp[2][2];
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++)
            cx[r][p] = c1[r][p] = c2[r][p] = cp[r][p] = _mm512_setzero_si512();
    for (int j = 0; j < kc; j++) {
        __m512i b[2], v[2];
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) {
            b[p] = _mm512_loadu_si512(bp + (size_t)p * kc * 16 + j * 16);
            v[p] = _mm512_loadu_si512(bp + (size_t)p * kc * 16 + j * 16 + 8);
        }
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++) {
            __m512i a = _mm512_set1_epi64((long long)as[(size_t)r * lda + j]);
            __m512i u = _mm512_set1_epi64((long long)am[(size_t)r * lda + j]);
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) {
                __m512i x = _mm512_xor_si512(a, b[p]);
                __m512i t1 = _mm512_ternarylogic_epi64(x, u, v[p], TL_AND_XOR);
                __m512i t2 = _mm512_ternarylogic_epi64(x, u, v[p], TL_AND3);
                __m512i uv = _mm512_and_si512(u, v[p]);
                cx[r][p] = _mm512_add_epi64(cx[r][p], _mm512_popcnt_epi64(x));
                c1[r][p] = _mm512_add_epi64(c1[r][p], _mm512_popcnt_epi64(t1));
                c2[r][p] = _mm512_add_epi64(c2[r][p], _mm512_popcnt_epi64(t2));
                cp[r][p] = _mm512_add_epi64(cp[r][p], _mm512_popcnt_epi64(uv));
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) {
            /* L = X + 2*T1 + 8*T2 - 2*P */
            __m512i l = _mm512_add_epi64(cx[r][p], _mm512_slli_epi64(c1[r][p], 1));
            l = _mm512_add_epi64(l, _mm512_slli_epi64(c2[r][p], 3));
            l = _mm512_sub_epi64(l, _mm512_slli_epi64(cp[r][p], 1));
            put_out(acc + r * ldacc + p * 8, l, ST);
        }
}

AI void k2x2(int mr, int np, int kc, const uint64_t *as, const uint64_t *am, int lda, const uint64_t *bp,
             int32_t *acc, int ldacc, const int ST)
{
    if (mr == 2 && np == 2) {
        t2x2(2, 2, ST, kc, as, am, lda, bp, acc, ldacc);
        return;
    }
    for (int r = 0; r < mr; r++)
        for (int p = 0; p < np; p++)
            t2x2(1, 1, ST, kc, as + (size_t)r * lda, am + (size_t)r * lda, lda, bp + (size_t)p * kc * 16,
                 acc + r * ldacc + p * 8, ldacc);
}

#define CALL_2X2(ST) k2x2(mr, np, kc, as, am, lda, bp, acc, ldacc, ST)
KERN_PAIR(2x2, CALL_2X2)

const apb_bgemm_kernels apb_bgemm_kernels_avx512 = {
    .fn = {kern_1x1, kern_1x2, kern_2x2},
    .fn0 = {kern0_1x1, kern0_1x2, kern0_2x2},
    .mr = {8, 4, 2},
    .np = {3, 2, 2},
};
