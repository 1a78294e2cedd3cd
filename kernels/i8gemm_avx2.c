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
 * 0-7 and 8-15 (bytes at b, 64 per group). */
static void chunk_6x16(long n, const uint8_t *b, const int8_t *w, long ld, __m256i *part)
{
    const uint8_t *bend = b + 64 * n;
    long ld3 = 3 * ld, ld5 = 5 * ld;
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
                     "vmovdqu (%[b]), %%ymm0\n\t"
                     "vmovdqu 32(%[b]), %%ymm1\n\t"
                     ROW("(%[w])", 4, 5) ROW("(%[w],%[ld],1)", 6, 7) ROW("(%[w],%[ld],2)", 8, 9)
                     ROW("(%[w],%[ld3],1)", 10, 11) ROW("(%[w],%[ld],4)", 12, 13)
                     ROW("(%[w],%[ld5],1)", 14, 15)
                     "add $64, %[b]\n\t"
                     "add $4, %[w]\n\t"
                     "cmp %[bend], %[b]\n\t"
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
                     : [b] "+r"(b), [w] "+r"(w)
                     : [ld] "r"(ld), [ld3] "r"(ld3), [ld5] "r"(ld5), [bend] "r"(bend),
                       [p] "r"(part)
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc",
                       "memory");
}
#undef ROW

static void kern_avx2(int mr, int np, int K4, const int8_t *w, long ldw, const uint8_t *b,
                      long pstride, int32_t *acc, int ldacc)
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
            chunk_6x16(n, bp + (long)k0 * 64, wk, ld, part);
            for (int r = 0; r < MR; r++)
                widen_add(c[r], part[2 * r], part[2 * r + 1]);
        }
    }
}

const apb_i8_kernels apb_i8_kernels_avx2 = {kern_avx2, MR, 2, "avx2"};
