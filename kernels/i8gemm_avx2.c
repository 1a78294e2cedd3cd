/* i8gemm_avx2.c - AVX2 micro-kernel of the binary x 8-bit GEMM (i8gemm.h).
 *
 * 6 rows x 16 columns (one panel, two ymm of 8 columns x 4 bytes). Per group of
 * 4 k: VPMADDUBSW(activation bytes (u8), broadcast weight bytes (s8)) gives
 * 16-bit sums of 2 products, each |.| <= 2*255 (weights are +-1 or 0), so 64
 * groups add up to at most 32640 and fit int16 without saturating; every 64
 * groups VPMADDWD with ones widens the 12 partial sums into the int32 tile.
 * That is 2 instructions per 32 multiply-adds instead of 3.
 *
 * The group loop is inline assembly: twelve int16 accumulators, the two B
 * halves, one weight broadcast and one product fill the 16 ymm registers
 * exactly, and gcc 12 did not keep even the 4-row form's eight accumulators in
 * registers (it spilled one and copied the others every group: 64 -> ~100 G
 * multiply-adds/s per core at ResNet-18's shapes once fixed, docs/KERNELS.md).
 */
#include <immintrin.h>

#include "i8gemm.h"

#define MR 6
#define CHUNK 64 /* k4 groups per int16 accumulation */

/* offsets of a packed panel's groups within one chunk */
static const long packed_off[CHUNK] = {
#define O4(i) 64 * (i), 64 * (i + 1), 64 * (i + 2), 64 * (i + 3)
    O4(0),  O4(4),  O4(8),  O4(12), O4(16), O4(20), O4(24), O4(28),
    O4(32), O4(36), O4(40), O4(44), O4(48), O4(52), O4(56), O4(60)
#undef O4
};

static inline int32_t load32(const int8_t *p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* c[0..15] += the int32 pair sums of the int16 partials (lo: columns 0-7, hi: 8-15) */
static inline void widen_add(int32_t *c, __m256i lo, __m256i hi)
{
    const __m256i ones = _mm256_set1_epi16(1);
    _mm256_storeu_si256((__m256i *)c,
                        _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)c), _mm256_madd_epi16(lo, ones)));
    _mm256_storeu_si256((__m256i *)(c + 8), _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(c + 8)),
                                                              _mm256_madd_epi16(hi, ones)));
}

/* One weight row r of a group: broadcast its 4 bytes, multiply both B halves,
 * add into the row's two int16 accumulators (ymm 4 + 2r, 5 + 2r). */
#define ROW(addr, lo, hi)                                                      \
    "vpbroadcastd " addr ", %%ymm2\n\t"                                        \
    "vpmaddubsw %%ymm2, %%ymm0, %%ymm3\n\t"                                    \
    "vpaddw %%ymm3, %%ymm" #lo ", %%ymm" #lo "\n\t"                            \
    "vpmaddubsw %%ymm2, %%ymm1, %%ymm3\n\t"                                    \
    "vpaddw %%ymm3, %%ymm" #hi ", %%ymm" #hi "\n\t"

/* n >= 1 groups of a 6 x 16 tile: part[2r], part[2r + 1] = the int16 sums of
 * row r (weights at w + r*ld, 4 bytes per group) against the panel's columns
 * 0-7 and 8-15 (group g's 64 bytes at b + off[g]: in place, or packed with
 * off[g] = 64*g). */
static void chunk_6x16(long n, const uint8_t *b, const long *off, const int8_t *w, long ld,
                       __m256i *part)
{
    const long *oend = off + n;
    long ld3 = 3 * ld, ld5 = 5 * ld, o;
    __asm__ volatile("vpxor %%xmm4, %%xmm4, %%xmm4\n\t"
                     "vmovdqa %%ymm4, %%ymm5\n\t"
                     "vmovdqa %%ymm4, %%ymm6\n\t"
                     "vmovdqa %%ymm4, %%ymm7\n\t"
                     "vmovdqa %%ymm4, %%ymm8\n\t"
                     "vmovdqa %%ymm4, %%ymm9\n\t"
                     "vmovdqa %%ymm4, %%ymm10\n\t"
                     "vmovdqa %%ymm4, %%ymm11\n\t"
                     "vmovdqa %%ymm4, %%ymm12\n\t"
                     "vmovdqa %%ymm4, %%ymm13\n\t"
                     "vmovdqa %%ymm4, %%ymm14\n\t"
                     "vmovdqa %%ymm4, %%ymm15\n\t"
                     "1:\n\t"
                     "mov (%[off]), %[o]\n\t"
                     "vmovdqu (%[b],%[o],1), %%ymm0\n\t"
                     "vmovdqu 32(%[b],%[o],1), %%ymm1\n\t"
                     ROW("(%[w])", 4, 5) ROW("(%[w],%[ld],1)", 6, 7) ROW("(%[w],%[ld],2)", 8, 9)
                     ROW("(%[w],%[ld3],1)", 10, 11) ROW("(%[w],%[ld],4)", 12, 13)
                     ROW("(%[w],%[ld5],1)", 14, 15)
                     "add $8, %[off]\n\t"
                     "add $4, %[w]\n\t"
                     "cmp %[oend], %[off]\n\t"
                     "jb 1b\n\t"
                     "vmovdqu %%ymm4, (%[p])\n\t"
                     "vmovdqu %%ymm5, 32(%[p])\n\t"
                     "vmovdqu %%ymm6, 64(%[p])\n\t"
                     "vmovdqu %%ymm7, 96(%[p])\n\t"
                     "vmovdqu %%ymm8, 128(%[p])\n\t"
                     "vmovdqu %%ymm9, 160(%[p])\n\t"
                     "vmovdqu %%ymm10, 192(%[p])\n\t"
                     "vmovdqu %%ymm11, 224(%[p])\n\t"
                     "vmovdqu %%ymm12, 256(%[p])\n\t"
                     "vmovdqu %%ymm13, 288(%[p])\n\t"
                     "vmovdqu %%ymm14, 320(%[p])\n\t"
                     "vmovdqu %%ymm15, 352(%[p])\n\t"
                     : [off] "+r"(off), [w] "+r"(w), [o] "=&r"(o)
                     : [b] "r"(b), [ld] "r"(ld), [ld3] "r"(ld3), [ld5] "r"(ld5), [oend] "r"(oend),
                       [p] "r"(part)
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc",
                       "memory");
}
#undef ROW

static void kern_avx2(int mr, int np, int K4, const int8_t *w, long ldw, const uint8_t *b,
                      long pstride, const long *boff, int32_t *acc, int ldacc)
{
    int32_t spare[(MR - 1) * APB_I8_PANEL]; /* sums of rows past mr */
    int8_t wt[MR * 4 * CHUNK];              /* a chunk of a short strip's rows, zero padded */
    __m256i part[2 * MR];
    for (int p = 0; p < np; p++) {
        const uint8_t *bp = b + p * pstride;
        int32_t *c[MR];
        for (int r = 0; r < MR; r++) {
            c[r] = r < mr ? acc + r * ldacc + p * APB_I8_PANEL : spare + (r - 1) * APB_I8_PANEL;
            __builtin_memset(c[r], 0, APB_I8_PANEL * sizeof(int32_t));
        }
        for (int k0 = 0; k0 < K4; k0 += CHUNK) {
            int n = K4 - k0 < CHUNK ? K4 - k0 : CHUNK;
            const int8_t *wk = w + 4 * k0;
            long ld = ldw;
            if (mr < MR) { /* rows past mr would read past W: copy the chunk */
                __builtin_memset(wt, 0, sizeof wt);
                for (int r = 0; r < mr; r++)
                    __builtin_memcpy(wt + r * 4 * CHUNK, wk + r * ldw, 4 * (size_t)n);
                wk = wt;
                ld = 4 * CHUNK;
            }
            if (boff)
                chunk_6x16(n, bp, boff + k0, wk, ld, part);
            else
                chunk_6x16(n, bp + (long)k0 * 64, packed_off, wk, ld, part);
            for (int r = 0; r < MR; r++)
                widen_add(c[r], part[2 * r], part[2 * r + 1]);
        }
    }
}

/* 8 codes (int32) of x[0], x[st], ..., x[7*st] for st = 1 or 2, by the code rule
 * of i8gemm.h: NaN -> 0, clamp, round half to even by the same 1.5 * 2^23 add
 * and subtract as apb_i8_code. */
static inline __m256i codes8(const float *x, int st, __m256 r, __m256 lo, __m256 hi)
{
    __m256 v;
    if (st == 1) {
        v = _mm256_loadu_ps(x);
    } else {
        __m256 a = _mm256_loadu_ps(x), b = _mm256_loadu_ps(x + 8);
        v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    }
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_mul_ps(v, r);
    t = _mm256_and_ps(t, _mm256_cmp_ps(t, t, _CMP_ORD_Q));
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    t = _mm256_sub_ps(_mm256_add_ps(t, magic), magic);
    return _mm256_cvttps_epi32(t);
}

void apb_i8_quant4_avx2(int n, const float *x, long ldx, int stride, float rs, float s,
                        int is_signed, uint8_t *d, uint8_t *q, long ldq)
{
    const __m256 r = _mm256_set1_ps(rs);
    const __m256 lo = _mm256_set1_ps(is_signed ? -128.0f : 0.0f);
    const __m256 hi = _mm256_set1_ps(is_signed ? 127.0f : 255.0f);
    const __m256i zp = _mm256_set1_epi32(is_signed ? 128 : 0);
    int j = 0;
    /* stride 2 loads 16 floats for 8 codes: stop while the last one read,
     * x[2j + 15], is still one the row owns */
    int jv = stride == 1 ? n - 8 : n - 9;
    for (; j <= jv; j += 8) {
        __m256i word = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            __m256i c = codes8(x + i * ldx + (long)j * stride, stride, r, lo, hi);
            if (q) { /* the 8 codes as bytes (they fit: saturation never acts) */
                __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
                _mm_storel_epi64((__m128i *)(q + i * ldq + j),
                                 is_signed ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w));
            }
            word = _mm256_or_si256(word, _mm256_slli_epi32(_mm256_add_epi32(c, zp), 8 * i));
        }
        _mm256_storeu_si256((__m256i *)(d + 4 * j), word);
    }
    for (; j < n; j++)
        for (int i = 0; i < 4; i++) {
            int c = apb_i8_code(x[i * ldx + (long)j * stride], rs, is_signed);
            d[4 * j + i] = (uint8_t)(c + (is_signed ? 128 : 0));
            if (q)
                q[i * ldq + j] = (uint8_t)c;
        }
}

void apb_i8_store_avx2(int mr, int nc, const int32_t *acc, int ld, const float *scale,
                       const int32_t *corr, float *Y, long ldy)
{
    for (int r = 0; r < mr; r++) {
        __m256 sc = _mm256_set1_ps(scale ? scale[r] : 1.0f);
        __m256i cr = _mm256_set1_epi32(corr ? corr[r] : 0);
        const int32_t *a = acc + r * ld;
        float *y = Y + r * ldy;
        int j = 0;
        for (; j + 8 <= nc; j += 8) {
            __m256i v = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(a + j)), cr);
            _mm256_storeu_ps(y + j, _mm256_mul_ps(sc, _mm256_cvtepi32_ps(v)));
        }
        for (; j < nc; j++)
            y[j] = (scale ? scale[r] : 1.0f) * (float)(a[j] - (corr ? corr[r] : 0));
    }
}

const apb_i8_kernels apb_i8_kernels_avx2 = {kern_avx2, MR, 2, "avx2", 0};
