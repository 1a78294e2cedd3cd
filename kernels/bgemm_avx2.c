/* bgemm_avx2.c - AVX2 micro-kernels of the binary GEMMs (no VPOPCNTQ: nibble
 * look-up popcount with VPSHUFB).
 *
 * Same panel scheme as the AVX-512 file: a panel word of 8 columns is two ymm;
 * A words are broadcast. Byte counts come from two VPSHUFB look-ups (low and high
 * nibble); scaled tables (2*pop, 8*pop) fold the identity's weights into the
 * look-up for free. Byte accumulators are widened with VPSADBW when they could
 * overflow: 1x1 every 31 words (<= 8 per word per byte), 1x2 every 10 (<= 24),
 * 2x2 every word (<= 104 after an offset that keeps bytes non-negative).
 * The 1x1 kernel takes nibble-split operands (bgemm.h, split1x1).
 */
#include <immintrin.h>

#include "bgemm.h"

#define AI static inline __attribute__((always_inline))

AI __m256i lut_bytes(int f)
{
    return _mm256_setr_epi8(0, f, f, 2 * f, f, 2 * f, 2 * f, 3 * f, f, 2 * f, 2 * f, 3 * f,
                            2 * f, 3 * f, 3 * f, 4 * f, 0, f, f, 2 * f, f, 2 * f, 2 * f, 3 * f,
                            f, 2 * f, 2 * f, 3 * f, 2 * f, 3 * f, 3 * f, 4 * f);
}

/* Per-byte popcount of x times the table's factor. */
AI __m256i pcb(__m256i x, __m256i lut, __m256i m0f)
{
    __m256i lo = _mm256_and_si256(x, m0f);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m0f);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* acc[0..3] += the four 64-bit lanes of v minus `off` each. */
AI void add_out(int32_t *acc, __m256i v, long long off)
{
    v = _mm256_sub_epi64(v, _mm256_set1_epi64x(off));
    __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m128i lo = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, idx));
    __m128i o = _mm_loadu_si128((const __m128i *)acc);
    _mm_storeu_si128((__m128i *)acc, _mm_add_epi32(o, lo));
}

/* 1x1 on nibble-split operands (bgemm.h): a word's popcount is the look-up of
 * its lo nibbles plus that of its hi nibbles, and XOR commutes with the split,
 * so the kernel does two XORs, two VPSHUFB and two adds per 4 words, against
 * the unsplit form's extra AND, shift, AND. Three rows: their 3 x 2 byte
 * accumulators, B's four halves, the table and A's two broadcasts fit the 16
 * ymm (four rows needed B as memory operands, 6 loads per row and word instead
 * of 3.3); byte counts go to acc every 31 words. */
AI void t1x1(const int MR, int kc, const uint64_t *al, const uint64_t *ah, int lda,
             const uint64_t *bp, int32_t *acc, int ldacc)
{
    const __m256i lut = lut_bytes(1), z = _mm256_setzero_si256();
    for (int j0 = 0; j0 < kc; j0 += 31) {
        int j1 = kc - j0 < 31 ? kc : j0 + 31;
        __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z;
        for (int j = j0; j < j1; j++) {
            const __m256i *b = (const __m256i *)(bp + j * 16); /* lo 0-3, lo 4-7, hi 0-3, hi 4-7 */
            __m256i bl0 = _mm256_loadu_si256(b), bl1 = _mm256_loadu_si256(b + 1);
            __m256i bh0 = _mm256_loadu_si256(b + 2), bh1 = _mm256_loadu_si256(b + 3);
#define APB_T1X1_ROW(r, c0, c1)                                                                   \
    do {                                                                                          \
        __m256i l = _mm256_set1_epi64x((long long)al[(size_t)(r) * lda + j]);                     \
        __m256i h = _mm256_set1_epi64x((long long)ah[(size_t)(r) * lda + j]);                     \
        c0 = _mm256_add_epi8(c0, _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_xor_si256(l, bl0)), \
                                                 _mm256_shuffle_epi8(lut, _mm256_xor_si256(h, bh0)))); \
        c1 = _mm256_add_epi8(c1, _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_xor_si256(l, bl1)), \
                                                 _mm256_shuffle_epi8(lut, _mm256_xor_si256(h, bh1)))); \
    } while (0)
            APB_T1X1_ROW(0, c00, c01);
            if (MR > 1)
                APB_T1X1_ROW(1, c10, c11);
            if (MR > 2)
                APB_T1X1_ROW(2, c20, c21);
#undef APB_T1X1_ROW
        }
        add_out(acc, _mm256_sad_epu8(c00, z), 0);
        add_out(acc + 4, _mm256_sad_epu8(c01, z), 0);
        if (MR > 1) {
            add_out(acc + ldacc, _mm256_sad_epu8(c10, z), 0);
            add_out(acc + ldacc + 4, _mm256_sad_epu8(c11, z), 0);
        }
        if (MR > 2) {
            add_out(acc + 2 * ldacc, _mm256_sad_epu8(c20, z), 0);
            add_out(acc + 2 * ldacc + 4, _mm256_sad_epu8(c21, z), 0);
        }
    }
}

static void kern_1x1(int mr, int np, int kc, const uint64_t *al, const uint64_t *ah, int lda,
                     const uint64_t *bp, int32_t *acc, int ldacc)
{
    for (int p = 0; p < np; p++) {
        const uint64_t *b = bp + (size_t)p * kc * 16;
        int r = 0;
        for (; r + 3 <= mr; r += 3)
            t1x1(3, kc, al + (size_t)r * lda, ah + (size_t)r * lda, lda, b,
                 acc + r * ldacc + p * 8, ldacc);
        for (; r < mr; r++)
            t1x1(1, kc, al + (size_t)r * lda, ah + (size_t)r * lda, lda, b,
                 acc + r * ldacc + p * 8, ldacc);
    }
}

AI void t1x2(const int MR, int kc, const uint64_t *as, int lda, const uint64_t *bp, int32_t *acc,
             int ldacc)
{
    const __m256i lut1 = lut_bytes(1), lut2 = lut_bytes(2), m0f = _mm256_set1_epi8(0x0f);
    const __m256i z = _mm256_setzero_si256();
    __m256i s[2][2];
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++)
        s[r][0] = s[r][1] = z;
    for (int j0 = 0; j0 < kc; j0 += 10) {
        int j1 = kc - j0 < 10 ? kc : j0 + 10;
        __m256i c[2][2];
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++)
            c[r][0] = c[r][1] = z;
        for (int j = j0; j < j1; j++) {
            __m256i sg[2], g[2];
            sg[0] = _mm256_loadu_si256((const __m256i *)(bp + j * 16));
            sg[1] = _mm256_loadu_si256((const __m256i *)(bp + j * 16 + 4));
            g[0] = _mm256_loadu_si256((const __m256i *)(bp + j * 16 + 8));
            g[1] = _mm256_loadu_si256((const __m256i *)(bp + j * 16 + 12));
#pragma GCC unroll 2
            for (int r = 0; r < MR; r++) {
                __m256i a = _mm256_set1_epi64x((long long)as[(size_t)r * lda + j]);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    __m256i x = _mm256_xor_si256(a, sg[h]);
                    __m256i t = _mm256_and_si256(x, g[h]);
                    c[r][h] = _mm256_add_epi8(
                        c[r][h], _mm256_add_epi8(pcb(x, lut1, m0f), pcb(t, lut2, m0f)));
                }
            }
        }
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++) {
            s[r][0] = _mm256_add_epi64(s[r][0], _mm256_sad_epu8(c[r][0], z));
            s[r][1] = _mm256_add_epi64(s[r][1], _mm256_sad_epu8(c[r][1], z));
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++) {
        add_out(acc + r * ldacc, s[r][0], 0);
        add_out(acc + r * ldacc + 4, s[r][1], 0);
    }
}

static void kern_1x2(int mr, int np, int kc, const uint64_t *as, const uint64_t *am, int lda,
                     const uint64_t *bp, int32_t *acc, int ldacc)
{
    for (int p = 0; p < np; p++) {
        const uint64_t *b = bp + (size_t)p * kc * 16;
        int r = 0;
        for (; r + 2 <= mr; r += 2)
            t1x2(2, kc, as + (size_t)r * lda, lda, b, acc + r * ldacc + p * 8, ldacc);
        for (; r < mr; r++)
            t1x2(1, kc, as + (size_t)r * lda, lda, b, acc + r * ldacc + p * 8, ldacc);
    }
}

AI void t2x2(const int MR, int kc, const uint64_t *as, const uint64_t *am, int lda,
             const uint64_t *bp, int32_t *acc, int ldacc)
{
    const __m256i lut1 = lut_bytes(1), lut2 = lut_bytes(2), lut8 = lut_bytes(8);
    const __m256i m0f = _mm256_set1_epi8(0x0f), z = _mm256_setzero_si256();
    const __m256i k16 = _mm256_set1_epi8(16);
    __m256i s[2][2];
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++)
        s[r][0] = s[r][1] = z;
    for (int j = 0; j < kc; j++) {
        __m256i b[2], v[2];
        b[0] = _mm256_loadu_si256((const __m256i *)(bp + j * 16));
        b[1] = _mm256_loadu_si256((const __m256i *)(bp + j * 16 + 4));
        v[0] = _mm256_loadu_si256((const __m256i *)(bp + j * 16 + 8));
        v[1] = _mm256_loadu_si256((const __m256i *)(bp + j * 16 + 12));
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++) {
            __m256i a = _mm256_set1_epi64x((long long)as[(size_t)r * lda + j]);
            __m256i u = _mm256_set1_epi64x((long long)am[(size_t)r * lda + j]);
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i x = _mm256_xor_si256(a, b[h]);
                __m256i t1 = _mm256_and_si256(x, _mm256_xor_si256(u, v[h]));
                __m256i uv = _mm256_and_si256(u, v[h]);
                __m256i t2 = _mm256_and_si256(x, uv);
                /* per byte: X + 2*T1 + 8*T2 + (16 - 2*P), in [0, 104] */
                __m256i pos = _mm256_add_epi8(pcb(x, lut1, m0f),
                                              _mm256_add_epi8(pcb(t1, lut2, m0f), pcb(t2, lut8, m0f)));
                __m256i w = _mm256_add_epi8(pos, _mm256_sub_epi8(k16, pcb(uv, lut2, m0f)));
                s[r][h] = _mm256_add_epi64(s[r][h], _mm256_sad_epu8(w, z));
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++) {
        /* remove the offset: 16 per byte, 8 bytes per lane, per word */
        add_out(acc + r * ldacc, s[r][0], 128LL * kc);
        add_out(acc + r * ldacc + 4, s[r][1], 128LL * kc);
    }
}

static void kern_2x2(int mr, int np, int kc, const uint64_t *as, const uint64_t *am, int lda,
                     const uint64_t *bp, int32_t *acc, int ldacc)
{
    for (int p = 0; p < np; p++) {
        const uint64_t *b = bp + (size_t)p * kc * 16;
        int r = 0;
        for (; r + 2 <= mr; r += 2)
            t2x2(2, kc, as + (size_t)r * lda, am + (size_t)r * lda, lda, b,
                 acc + r * ldacc + p * 8, ldacc);
        for (; r < mr; r++)
            t2x2(1, kc, as + (size_t)r * lda, am + (size_t)r * lda, lda, b,
                 acc + r * ldacc + p * 8, ldacc);
    }
}

const apb_bgemm_kernels apb_bgemm_kernels_avx2 = {
    .fn = {kern_1x1, kern_1x2, kern_2x2},
    .mr = {3, 2, 2},
    .np = {1, 1, 1},
    .split1x1 = 1,
};
