/* avx512_util.h - small AVX-512 helpers shared by the *_avx512.c files (include
 * it only from files compiled with the AVX-512 flags). */
#ifndef APB_AVX512_UTIL_H
#define APB_AVX512_UTIL_H

#include <immintrin.h>

/* The first n of 16 lanes (n clamped to [0, 16]). */
static inline __mmask16 apb_mask16(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* The even and odd elements of x[0 .. 32): lane t of *ev is x[2t], of *od (when
 * not NULL) x[2t + 1]. Only x[0 .. n) is read (n <= 32); elements at or past n
 * read as `fill`. Stride-2 rows (pools, the 8-bit quantizer) in two masked loads
 * and two permutes. */
static inline void apb_deint32_ps(const float *x, int n, float fill, __m512 *ev, __m512 *od)
{
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i o = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512 f = _mm512_set1_ps(fill);
    __m512 a = _mm512_mask_loadu_ps(f, apb_mask16(n), x);
    __m512 b = _mm512_mask_loadu_ps(f, apb_mask16(n - 16), x + 16);
    *ev = _mm512_permutex2var_ps(a, e, b);
    if (od)
        *od = _mm512_permutex2var_ps(a, o, b);
}

#endif
