/* bitpack_avx512.c - AVX-512 helpers of the packers (bitpack.c): float -> bit
 * comparisons 16 at a time (compare into a mask register) and the 64x64 bit
 * transpose of the fused im2col packer in eight zmm.
 *
 * Results are bit-identical to the portable code in bitpack.c: the comparisons
 * are the same IEEE predicates on the same x / s quotients.
 */
#include <immintrin.h>
#include <string.h>

#include "bitpack.h"
#include "ewise.h"

/* 16 floats -> sign bits (planes 1) or sgn / mag bits (planes 2); see quant2(). */
static inline void bits16(const float *x, __mmask16 ld, float s, int planes, __mmask16 *b0,
                          __mmask16 *b1)
{
    __m512 v = _mm512_maskz_loadu_ps(ld, x);
    if (planes == 1) {
        *b0 = _mm512_mask_cmp_ps_mask(ld, v, _mm512_setzero_ps(), _CMP_LT_OQ);
        return;
    }
    __m512 q = _mm512_div_ps(v, _mm512_set1_ps(s));
    *b0 = _mm512_mask_cmp_ps_mask(ld, q, _mm512_setzero_ps(), _CMP_NGE_UQ);
    *b1 = _mm512_mask_cmp_ps_mask(ld, q, _mm512_set1_ps(-1.0f), _CMP_NGE_UQ) |
          _mm512_mask_cmp_ps_mask(ld, q, _mm512_set1_ps(1.0f), _CMP_GE_OQ);
}

void apb_bitpack_or_row_avx512(const float *x, int n, float s, int planes, uint64_t *d0,
                               uint64_t *d1, int off)
{
    for (int i = 0; i < n; i += 16) {
        int r = n - i;
        __mmask16 ld = r >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << r) - 1), b0, b1 = 0;
        bits16(x + i, ld, s, planes, &b0, &b1);
        int pos = off + i, w = pos >> 6, o = pos & 63;
        d0[w] |= (uint64_t)b0 << o;
        if (o > 48)
            d0[w + 1] |= (uint64_t)b0 >> (64 - o);
        if (planes == 2) {
            d1[w] |= (uint64_t)b1 << o;
            if (o > 48)
                d1[w + 1] |= (uint64_t)b1 >> (64 - o);
        }
    }
}

void apb_bitpack_rows_avx512(int rows, int K, const float *X, int ldx, float s, int planes,
                             uint64_t *P0, uint64_t *P1, int ld)
{
    int KW = apb_bits_words(K);
    for (int r = 0; r < rows; r++) {
        const float *x = X + (size_t)r * ldx;
        uint64_t *p0 = P0 + (size_t)r * ld, *p1 = planes == 2 ? P1 + (size_t)r * ld : NULL;
        for (int j = 0; j < KW; j++) {
            uint64_t w0 = 0, w1 = 0;
            for (int q = 0; q < 4; q++) {
                int k = j * 64 + q * 16, rem = K - k;
                if (rem <= 0)
                    break;
                __mmask16 m = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1), b0,
                          b1 = 0;
                bits16(x + k, m, s, planes, &b0, &b1);
                w0 |= (uint64_t)b0 << (16 * q);
                w1 |= (uint64_t)b1 << (16 * q);
            }
            p0[j] = w0;
            if (p1)
                p1[j] = w1;
        }
        for (int j = KW; j < ld; j++) {
            p0[j] = 0;
            if (p1)
                p1[j] = 0;
        }
    }
}

/* a[c] bit r <- a[r] bit c; the same six index-bit swaps as the portable code.
 * Swaps of row-index bits 5..3 pair whole registers; bits 2..0 pair lanes. */
void apb_bit_transpose64_avx512(uint64_t *a)
{
    __m512i z[8];
    for (int i = 0; i < 8; i++)
        z[i] = _mm512_loadu_si512(a + 8 * i);
    static const uint64_t mk[6] = {0x00000000FFFFFFFFull, 0x0000FFFF0000FFFFull,
                                   0x00FF00FF00FF00FFull, 0x0F0F0F0F0F0F0F0Full,
                                   0x3333333333333333ull, 0x5555555555555555ull};
#define XSTAGE(J, D, MI)                                                                         \
    do {                                                                                         \
        const __m512i m = _mm512_set1_epi64((long long)mk[MI]);                                 \
        for (int r0 = 0; r0 < 8; r0 += 2 * (D))                                                  \
            for (int r = r0; r < r0 + (D); r++) {                                                \
                __m512i t = _mm512_ternarylogic_epi64(_mm512_srli_epi64(z[r], J), z[r + (D)], m, \
                                                      0x28);                                     \
                z[r + (D)] = _mm512_xor_si512(z[r + (D)], t);                                    \
                z[r] = _mm512_xor_si512(z[r], _mm512_slli_epi64(t, J));                          \
            }                                                                                    \
    } while (0)
    XSTAGE(32, 4, 0);
    XSTAGE(16, 2, 1);
    XSTAGE(8, 1, 2);
#undef XSTAGE
#define LSTAGE(J, MI, HI)                                                                     \
    do {                                                                                      \
        const __m512i idx = _mm512_xor_si512(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),       \
                                             _mm512_set1_epi64(J));                           \
        const __m512i m = _mm512_set1_epi64((long long)mk[MI]);                               \
        const __m512i sel = _mm512_mask_xor_epi64(m, (__mmask8)(HI), m,                       \
                                                  _mm512_set1_epi64(-1));                      \
        for (int i = 0; i < 8; i++) {                                                         \
            __m512i p = _mm512_permutexvar_epi64(idx, z[i]);                                  \
            __m512i sh = _mm512_mask_srli_epi64(_mm512_slli_epi64(p, J), (__mmask8)(HI), p, J); \
            z[i] = _mm512_ternarylogic_epi64(sel, z[i], sh, 0xCA);                            \
        }                                                                                     \
    } while (0)
    LSTAGE(4, 3, 0xF0);
    LSTAGE(2, 4, 0xCC);
    LSTAGE(1, 5, 0xAA);
#undef LSTAGE
    for (int i = 0; i < 8; i++)
        _mm512_storeu_si512(a + 8 * i, z[i]);
}

/* apb_chan_planes (bitpack.h): per phase row, 16 pixels a step: their words
 * (a load of 16 when they are adjacent, else two gathers; the magnitude
 * plane's likewise), then per channel bit tests -> 16 bytes. Lanes outside the
 * image store 0 and read nothing. */
static inline void load16(const uint64_t *z0, long step, __mmask16 v, __m512i idx, __m512i *wl, __m512i *wh)
{
    if (step == 1) {
        *wl = _mm512_maskz_loadu_epi64((__mmask8)v, z0);
        *wh = _mm512_maskz_loadu_epi64((__mmask8)(v >> 8), z0 + 8);
    } else {
        *wl = _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), (__mmask8)v, idx, z0, 8);
        *wh = _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), (__mmask8)(v >> 8), idx, z0 + 8 * step, 8);
    }
}

static inline __mmask16 test16(__m512i wl, __m512i wh, __m512i bit)
{
    return (__mmask16)(_mm512_test_epi64_mask(wl, bit) | (unsigned)_mm512_test_epi64_mask(wh, bit) << 8);
}

void apb_chan_planes_avx512(const apb_conv_geom *g, const uint64_t *Z, const uint64_t *Zm, int c0, int c1,
                            int i0, int i1, int8_t *out)
{
    int S = g->stride, P = g->pad, H = g->H, W = g->W, Cw = g->C / 64, Wp = W + 2 * P;
    int Hq = (H + 2 * P + S - 1) / S, Wq = (W + 2 * P + S - 1) / S, cw = c0 / 64;
    long plane = (long)Hq * Wq, cpl = (long)S * S * plane, step = (long)S * Cw;
    const __m128i one = _mm_set1_epi8(1), three = _mm_set1_epi8(3), zero = _mm_setzero_si128();
    const __m512i idx = _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(step));
    for (int a = 0; a < S; a++)
        for (int b = 0; b < S; b++) {
            int jlo, jhi;
            apb_phase_cols(W, S, P, b, Wq, &jlo, &jhi);
            for (int i = i0; i < (i1 < Hq ? i1 : Hq); i++) {
                int8_t *d = out + (long)(a * S + b) * plane + (long)i * Wq;
                int pi = i * S + a;
                if (pi < P || pi >= H + P || jlo >= jhi) {
                    for (int c = c0; c < c1; c++)
                        memset(d + (c - c0) * cpl, 0, (size_t)Wq);
                    continue;
                }
                size_t ro = (size_t)pi * Wp * Cw + cw;
                for (int j0 = 0; j0 < Wq; j0 += 16) {
                    int lo = jlo - j0 < 0 ? 0 : jlo - j0 > 16 ? 16 : jlo - j0;
                    int hi = jhi - j0 < 0 ? 0 : jhi - j0 > 16 ? 16 : jhi - j0;
                    __mmask16 v = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
                    __mmask16 st = (__mmask16)(Wq - j0 >= 16 ? 0xFFFF : (1u << (Wq - j0)) - 1);
                    __m512i wl = _mm512_setzero_si512(), wh = wl, ml = wl, mh = wl;
                    /* lane t: pixel j0 + t, word (j0 + t)*S + b - (lane 0's) from the row */
                    size_t o = ro + ((size_t)j0 * S + b) * Cw;
                    if (v) {
                        load16(Z + o, step, v, idx, &wl, &wh);
                        if (Zm)
                            load16(Zm + o, step, v, idx, &ml, &mh);
                    }
                    for (int c = c0; c < c1; c++) {
                        __m512i bit = _mm512_set1_epi64((long long)(1ull << (c & 63)));
                        __m128i r = one;
                        if (Zm) /* magnitude bit: 3 */
                            r = _mm_mask_blend_epi8(test16(ml, mh, bit), one, three);
                        r = _mm_mask_sub_epi8(r, test16(wl, wh, bit), zero, r); /* sign bit: negative */
                        _mm_mask_storeu_epi8(d + (c - c0) * cpl + j0, st, _mm_maskz_mov_epi8(v, r));
                    }
                }
            }
        }
}
