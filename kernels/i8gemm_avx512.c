/* i8gemm_avx512.c - AVX512-VNNI micro-kernel of the binary x 8-bit GEMM
 * (i8gemm.h), used at APB_ISA_AVX512 where the CPU has AVX512-VNNI.
 *
 * 6 rows x 4 panels (64 columns): per group of 4 k, four zmm loads of the
 * panels (16 columns x 4 activation bytes each, VPDPBUSD's u8 operand) and, per
 * row, the row's 4 weight bytes broadcast to every lane (the s8 operand); 24
 * VPDPBUSD accumulate exact int32 sums (each adds at most 4*255 in magnitude;
 * K <= 2^22 keeps every sum far inside int32). 24 accumulators + 4 panels + 1
 * broadcast fit the 32 zmm registers.
 *
 * Written without an AVX-512 machine; first run in session 14 on AMD Zen 5,
 * where tests/test_i8gemm.c found it bit for bit the reference at
 * APB_ISA=avx512. APB_I8_VNNI=0 turns it off (the AVX2 kernel then runs at that
 * level).
 */
#include <immintrin.h>

#include "avx512_util.h"
#include "i8gemm.h"

#define MR 6
#define NP 4

static inline int32_t load32(const int8_t *p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* The accumulators are named, not an array, so they stay in registers. */
#define ROW_DECL(r)                                                                  \
    __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = c##r##0, c##r##2 = c##r##0, \
            c##r##3 = c##r##0
#define ROW_STEP(r)                                                                  \
    do {                                                                             \
        __m512i wv = _mm512_set1_epi32(load32(w##r + 4 * k4));                       \
        c##r##0 = _mm512_dpbusd_epi32(c##r##0, x0, wv);                              \
        c##r##1 = _mm512_dpbusd_epi32(c##r##1, x1, wv);                              \
        c##r##2 = _mm512_dpbusd_epi32(c##r##2, x2, wv);                              \
        c##r##3 = _mm512_dpbusd_epi32(c##r##3, x3, wv);                              \
    } while (0)
#define ROW_STORE(r)                                                                 \
    do {                                                                             \
        if (r < mr) {                                                                \
            int32_t *o = acc + r * ldacc;                                            \
            __m512i v[NP] = {c##r##0, c##r##1, c##r##2, c##r##3};                    \
            for (int p = 0; p < np; p++)                                             \
                _mm512_storeu_si512(o + p * APB_I8_PANEL, v[p]);                     \
        }                                                                            \
    } while (0)

__attribute__((target("avx512f,avx512vnni")))
static void kern_vnni(int mr, int np, int K4, const int8_t *w, long ldw, const uint8_t *b,
                      long pstride, const long *boff, int32_t *acc, int ldacc)
{
    /* rows and panels past mr / np repeat the first one; their sums are dropped */
    const int8_t *w0 = w, *w1 = w + (1 < mr ? 1 : 0) * ldw, *w2 = w + (2 < mr ? 2 : 0) * ldw;
    const int8_t *w3 = w + (3 < mr ? 3 : 0) * ldw, *w4 = w + (4 < mr ? 4 : 0) * ldw;
    const int8_t *w5 = w + (5 < mr ? 5 : 0) * ldw;
    const uint8_t *b0 = b, *b1 = b + (1 < np ? 1 : 0) * pstride, *b2 = b + (2 < np ? 2 : 0) * pstride;
    const uint8_t *b3 = b + (3 < np ? 3 : 0) * pstride;
    ROW_DECL(0);
    ROW_DECL(1);
    ROW_DECL(2);
    ROW_DECL(3);
    ROW_DECL(4);
    ROW_DECL(5);
    for (int k4 = 0; k4 < K4; k4++) {
        long o = boff ? boff[k4] : 64L * k4; /* packed or in place (i8gemm.h) */
        __m512i x0 = _mm512_loadu_si512(b0 + o), x1 = _mm512_loadu_si512(b1 + o);
        __m512i x2 = _mm512_loadu_si512(b2 + o), x3 = _mm512_loadu_si512(b3 + o);
        ROW_STEP(0);
        ROW_STEP(1);
        ROW_STEP(2);
        ROW_STEP(3);
        ROW_STEP(4);
        ROW_STEP(5);
    }
    ROW_STORE(0);
    ROW_STORE(1);
    ROW_STORE(2);
    ROW_STORE(3);
    ROW_STORE(4);
    ROW_STORE(5);
}

const apb_i8_kernels apb_i8_kernels_avx512vnni = {kern_vnni, MR, NP, "avx512-vnni", 1};

/* 16 codes of apb_i8_code from x[t * st] for t < cnt (st 1 or 2; nothing else
 * is read, the other lanes are 0): NaN -> 0, clamp, round half to even by the
 * same 1.5 * 2^23 add and subtract as the AVX2 codes8. */
static inline __m512i codes16(const float *x, int st, int cnt, __m512 r, __m512 lo, __m512 hi)
{
    __m512 v;
    if (st == 1)
        v = _mm512_maskz_loadu_ps(apb_mask16(cnt), x);
    else
        apb_deint32_ps(x, 2 * cnt - 1, 0.0f, &v, NULL);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 t = _mm512_mul_ps(v, r);
    t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, t, _CMP_ORD_Q), t);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
    t = _mm512_sub_ps(_mm512_add_ps(t, magic), magic);
    return _mm512_cvttps_epi32(t);
}

void apb_i8_quant4_avx512(int n, int nc, const float *x, long ldx, int stride, float rs, float s,
                          int is_signed, uint8_t *d, uint8_t *q, long ldq)
{
    const __m512 r = _mm512_set1_ps(rs);
    const __m512 lo = _mm512_set1_ps(is_signed ? -128.0f : 0.0f);
    const __m512 hi = _mm512_set1_ps(is_signed ? 127.0f : 255.0f);
    const __m512i zp = _mm512_set1_epi32(is_signed ? 128 : 0);
    for (int j = 0; j < n; j += 16) {
        int cnt = n - j < 16 ? n - j : 16;
        __mmask16 live = apb_mask16(cnt);
        __m512i word = _mm512_setzero_si512();
        for (int i = 0; i < 4; i++) {
            if (i >= nc) { /* channels past C: the zero point */
                word = _mm512_or_si512(word, _mm512_slli_epi32(zp, 8 * i));
                continue;
            }
            __m512i c = codes16(x + i * ldx + (long)j * stride, stride, cnt, r, lo, hi);
            if (q)
                _mm512_mask_cvtepi32_storeu_epi8(q + i * ldq + j, live, c);
            word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_add_epi32(c, zp), 8 * i));
        }
        _mm512_mask_storeu_epi32(d + 4 * j, live, word);
    }
}
