/* sgemm_dw3_avx2.c - AVX2 tiles of the 3-wide convolution weight gradient
 * (apb_sgemm_dw3, apb_sgemm_dw3_same in sgemm.h) and the transpose they read.
 *
 * The AVX-512 tiles (sgemm_avx512.c) keep all M output channels of a kernel row
 * group in 24 zmm accumulators. With 16 ymm registers a tile here is 16 channels
 * (2 ymm) by 2 kernel rows by 3 taps: 12 accumulators, 2 registers for the pixel's
 * gradient and 1-2 for broadcasts. Per pixel 2 loads + 6 broadcasts feed 12 FMAs,
 * which is FMA-bound on Zen 3 and Haswell-class cores alike (their loads, 2-3 per
 * cycle, go further than the 2 FMAs per cycle). M = 32, 48, 64 run as 2, 3, 4
 * channel blocks side by side (the driver's tiles are channel block x row pair).
 * 4 rows or 32 channels by 2 rows would need 24 accumulators; 32 channels by 1
 * row, 12 accumulators + 4 gradient registers + a broadcast: 17, which spills.
 *
 * The gradient is transposed once per call into channel blocks, dyT[M/16][P][16]
 * per image, so a tile reads one 64-byte line per pixel, in address order. Each
 * accumulator lane sums its products in the order b, oh, ow, as the plain loops
 * do; only the rounding differs (fused multiply-add).
 */
#include <immintrin.h>

#include "sgemm_internal.h"

#define AI inline __attribute__((always_inline))

/* One pixel: both rows' taps K0..K1 at pr[r][tap[kw]], then each pr[r] moves on by
 * one. The empty asm makes the row pointer opaque per pixel, as in the AVX-512
 * tiles: otherwise gcc carries x values from pixel to pixel (x at ow + kw is x at
 * ow + 1 + kw - 1) in registers that the accumulators need. */
static AI void dw3_pixel(const int K0, const int K1, __m256 acc[2][6], const float *pr[2],
                         const long tap[3], const float *d)
{
    __m256 d0 = _mm256_loadu_ps(d), d1 = _mm256_loadu_ps(d + 8);
#pragma GCC unroll 2
    for (int r = 0; r < 2; r++) {
        __asm__("" : "+r"(pr[r]));
#pragma GCC unroll 3
        for (int kw = K0; kw <= K1; kw++) {
            __m256 xb = _mm256_broadcast_ss(pr[r] + tap[kw]);
            acc[0][3 * r + kw] = _mm256_fmadd_ps(d0, xb, acc[0][3 * r + kw]);
            acc[1][3 * r + kw] = _mm256_fmadd_ps(d1, xb, acc[1][3 * r + kw]);
        }
        pr[r]++;
    }
}

static AI void dw3_zero(__m256 acc[2][6])
{
#pragma GCC unroll 6
    for (int j = 0; j < 6; j++) {
        acc[0][j] = _mm256_setzero_ps();
        acc[1][j] = _mm256_setzero_ps();
    }
}

/* C[8v + i][j] += alpha * lane i of acc[v][j], for the nr valid rows' columns.
 * Constant indices only (unrolled, break at the edge): with a variable j gcc keeps
 * acc in memory and stores every accumulator at every pixel. */
static AI void dw3_store(int nr, __m256 acc[2][6], float alpha, float *C, long ldc)
{
    float lane[8];
#pragma GCC unroll 6
    for (int j = 0; j < 6; j++) {
        if (j >= 3 * nr)
            break;
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++) {
            _mm256_storeu_ps(lane, acc[v][j]);
            for (int i = 0; i < 8; i++)
                C[(long)(8 * v + i) * ldc + j] += alpha * lane[i];
        }
    }
}

void apb_sgemm_dw3_tile_avx2(int nr, int nb, int OH, int OW, const float *dyT, long sdy,
                             const float *X, const long *roff, long sx, long Wp, long t1, long t2,
                             float alpha, float *C, long ldc)
{
    __m256 acc[2][6];
    dw3_zero(acc);
    const long tap[3] = {0, t1, t2};
    long ro0 = roff[0], ro1 = roff[nr > 1 ? 1 : 0]; /* a missing row 1 repeats row 0 */
    for (int b = 0; b < nb; b++) {
        const float *d = dyT + b * sdy, *xb = X + b * sx;
        for (int oh = 0; oh < OH; oh++, xb += Wp) {
            const float *pr[2] = {xb + ro0, xb + ro1};
            for (int ow = 0; ow < OW; ow++, d += 16)
                dw3_pixel(0, 2, acc, pr, tap, d);
        }
    }
    dw3_store(nr, acc, alpha, C, ldc);
}

/* 3x3 pad 1 from the unpadded input: rows outside the image read a zero row, the
 * first and last pixel of an output row take only the taps inside, the pixels
 * between read all three at displacements -1, 0, +1. */
void apb_sgemm_dw3e_tile_avx2(int nr, int nb, int H, int W, const float *dyT, long sdy,
                              const float *X, const long *coff, const int *rkh, long sx,
                              const float *zrow, float alpha, float *C, long ldc)
{
    __m256 acc[2][6];
    dw3_zero(acc);
    const long tap[3] = {-1, 0, 1};
    int r1 = nr > 1 ? 1 : 0; /* a missing row 1 repeats row 0 */
    long co[2] = {coff[0], coff[r1]};
    int kh[2] = {rkh[0], rkh[r1]};
    for (int b = 0; b < nb; b++) {
        const float *d = dyT + b * sdy;
        for (int oh = 0; oh < H; oh++) {
            const float *pr[2];
#pragma GCC unroll 2
            for (int r = 0; r < 2; r++) {
                int ih = oh + kh[r] - 1;
                pr[r] = ih >= 0 && ih < H ? X + b * sx + co[r] + (long)ih * W : zrow;
            }
            if (W == 1) {
                dw3_pixel(1, 1, acc, pr, tap, d);
                d += 16;
                continue;
            }
            dw3_pixel(1, 2, acc, pr, tap, d); /* ow = 0: no column -1 */
            d += 16;
            for (int ow = 1; ow + 1 < W; ow++, d += 16)
                dw3_pixel(0, 2, acc, pr, tap, d);
            dw3_pixel(0, 1, acc, pr, tap, d); /* ow = W - 1: no column W */
            d += 16;
        }
    }
    dw3_store(nr, acc, alpha, C, ldc);
}
#undef AI

/* dst[m/16][p][m%16] = src[m][p] for m < M (a multiple of 16) and p < P, src row
 * stride lds: 8 x 8 blocks through registers, a scalar tail for P % 8. */
void apb_transpose16_avx2(int M, int P, const float *src, long lds, float *dst)
{
    int pf = P & ~7;
    for (int m0 = 0; m0 < M; m0 += 8) {
        float *blk = dst + (long)(m0 / 16) * P * 16 + m0 % 16;
        const float *s = src + (long)m0 * lds;
        for (int p0 = 0; p0 < pf; p0 += 8) {
            __m256 r[8], t[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(s + i * lds + p0);
            /* t[2h], t[2h+1]: rows 2h, 2h+1 interleaved, per 128-bit lane */
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            /* r[4g + s]: lane L holds rows 4g..4g+3 at column 4L + s */
            for (int g = 0; g < 2; g++) {
                __m256 a0 = t[4 * g], a1 = t[4 * g + 1], b0 = t[4 * g + 2], b1 = t[4 * g + 3];
                r[4 * g] = _mm256_shuffle_ps(a0, b0, 0x44);
                r[4 * g + 1] = _mm256_shuffle_ps(a0, b0, 0xEE);
                r[4 * g + 2] = _mm256_shuffle_ps(a1, b1, 0x44);
                r[4 * g + 3] = _mm256_shuffle_ps(a1, b1, 0xEE);
            }
            /* columns k and 4 + k: the low or high lanes of the two row groups */
            for (int k = 0; k < 4; k++) {
                _mm256_storeu_ps(blk + (long)(p0 + k) * 16,
                                 _mm256_permute2f128_ps(r[k], r[4 + k], 0x20));
                _mm256_storeu_ps(blk + (long)(p0 + 4 + k) * 16,
                                 _mm256_permute2f128_ps(r[k], r[4 + k], 0x31));
            }
        }
        for (int p = pf; p < P; p++)
            for (int i = 0; i < 8; i++)
                blk[(long)p * 16 + i] = s[i * lds + p];
    }
}
