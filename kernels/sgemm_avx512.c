/* sgemm_avx512.c - AVX-512 sgemm micro-kernels, 12 x 32 and 8 x 32 register tiles.
 *
 * 24 zmm accumulators (12 rows x 2 vectors of 16 columns), 2 zmm for the B row,
 * A values broadcast straight from memory into the FMA ({1to16} operand): 26 of 32
 * registers, 24 FMAs per 2 loads + 12 broadcasts per k, enough to keep both FMA
 * ports busy. Edges (mr < 12, nr < 32) are handled with masked loads/stores of C.
 * The 8 x 32 variant (16 accumulators) serves operands with M a multiple of 8 but
 * not of 12 (16, 32, 64 output channels of small CNNs), where 12-row panels would
 * compute up to a third of zero padding. The "indirect" variants (ikernel) read
 * B row k as two 16-float halves at b0 + boff[k] and b1 + boff[k] instead of a
 * packed panel: the shifted rows of a zero-padded image, i.e. a convolution's
 * im2col matrix without the copy (apb_sgemm_conv). All are one body specialised by
 * row count and B addressing, so they round exactly alike.
 * Contract: see sgemm_internal.h.
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "sgemm_internal.h"

#define NR 32

/* IND == 0: B row k at pb + k*ldpb (32 consecutive floats). IND == 1: the two
 * 16-float halves of B row k at pb + boff[k] and pb1 + boff[k] (the indirect
 * kernel); the arithmetic is the same either way. */
static inline __attribute__((always_inline)) void
kernel_body(const int MR, const int IND, const int STREAM, int kc, const float *pa,
            const float *pb, long ldpb, const float *pb1, const long *boff, float *c, long ldc,
            float alpha, float beta, int mr, int nr)
{
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
    }
    if (!STREAM)
        for (int i = 0; i < mr; i++)
            _mm_prefetch((const char *)(c + (long)i * ldc), _MM_HINT_T0);
    for (int k = 0; k < kc; k++) {
        __m512 b0, b1;
        if (IND) {
            b0 = _mm512_loadu_ps(pb + boff[k]);
            b1 = _mm512_loadu_ps(pb1 + boff[k]);
        } else {
            b0 = _mm512_loadu_ps(pb);
            b1 = _mm512_loadu_ps(pb + 16);
        }
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(pa[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
        pa += MR;
        if (!IND)
            pb += ldpb;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    /* STREAM: a full tile with beta == 0 at 64-byte aligned rows is written with
     * streaming stores (a large output read back only later, by another op) */
    if (STREAM && mr == MR && nr == NR && beta == 0.0f && ((uintptr_t)c & 63) == 0 &&
        (ldc & 15) == 0) {
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            _mm512_stream_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
            _mm512_stream_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
        }
        return;
    }
    if (mr == MR && nr == NR) {
        if (beta == 0.0f) {
#pragma GCC unroll 12
            for (int i = 0; i < MR; i++) {
                _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
                _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
            }
        } else {
#pragma GCC unroll 12
            for (int i = 0; i < MR; i++) {
                float *ci = c + i * ldc;
                __m512 c0 = _mm512_mul_ps(vb, _mm512_loadu_ps(ci));
                __m512 c1 = _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16));
                _mm512_storeu_ps(ci, _mm512_fmadd_ps(va, acc[i][0], c0));
                _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(va, acc[i][1], c1));
            }
        }
        return;
    }
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= mr)
            break;
        float *ci = c + i * ldc;
        __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

void apb_sgemm_kernel_avx512_12x32(int kc, const float *pa, const float *pb, long ldpb, float *c,
                                   long ldc, float alpha, float beta, int mr, int nr)
{
    kernel_body(12, 0, 0, kc, pa, pb, ldpb, NULL, NULL, c, ldc, alpha, beta, mr, nr);
}

void apb_sgemm_kernel_avx512_8x32(int kc, const float *pa, const float *pb, long ldpb, float *c,
                                  long ldc, float alpha, float beta, int mr, int nr)
{
    kernel_body(8, 0, 0, kc, pa, pb, ldpb, NULL, NULL, c, ldc, alpha, beta, mr, nr);
}

void apb_sgemm_ikernel_avx512_12x32(int kc, const float *pa, const float *b0, const float *b1,
                                    const long *boff, float *c, long ldc, float alpha, float beta,
                                    int mr, int nr)
{
    kernel_body(12, 1, 0, kc, pa, b0, 0, b1, boff, c, ldc, alpha, beta, mr, nr);
}

void apb_sgemm_ikernel_avx512_12x32_stream(int kc, const float *pa, const float *b0,
                                           const float *b1, const long *boff, float *c, long ldc,
                                           float alpha, float beta, int mr, int nr)
{
    kernel_body(12, 1, 1, kc, pa, b0, 0, b1, boff, c, ldc, alpha, beta, mr, nr);
}

void apb_sgemm_ikernel_avx512_8x32(int kc, const float *pa, const float *b0, const float *b1,
                                   const long *boff, float *c, long ldc, float alpha, float beta,
                                   int mr, int nr)
{
    kernel_body(8, 1, 0, kc, pa, b0, 0, b1, boff, c, ldc, alpha, beta, mr, nr);
}

void apb_sgemm_ikernel_avx512_8x32_stream(int kc, const float *pa, const float *b0,
                                          const float *b1, const long *boff, float *c, long ldc,
                                          float alpha, float beta, int mr, int nr)
{
    kernel_body(8, 1, 1, kc, pa, b0, 0, b1, boff, c, ldc, alpha, beta, mr, nr);
}

/* Dot-product tile for C += alpha * sum_b A_b * B_b^T (see apb_sgemm_nt_batch in
 * sgemm.h): 4 rows of A x 6 rows of B (row j at B + boff[j]), both contiguous along
 * the reduction, 24 zmm
 * accumulators summed horizontally once at the end. Rows past mr / nr re-read the
 * last valid row (their sums are discarded), so there are no edge variants; a
 * reduction tail (K % 16) uses masked loads. */
#define NT_TM 4
#define NT_TN 6
/* acc += the masked last (K % 16) step of every image of the tile below. */
static __attribute__((noinline)) void nt_tail(__m512 acc[NT_TM][NT_TN], const float *const *a,
                                              const float *const *b, int nb, long sa, long sb,
                                              int kf, __mmask16 tail)
{
    for (int bi = 0; bi < nb; bi++) {
        long oa = bi * sa, ob = bi * sb;
        __m512 va[NT_TM];
#pragma GCC unroll 4
        for (int i = 0; i < NT_TM; i++)
            va[i] = _mm512_maskz_loadu_ps(tail, a[i] + oa + kf);
#pragma GCC unroll 6
        for (int j = 0; j < NT_TN; j++) {
            __m512 vb = _mm512_maskz_loadu_ps(tail, b[j] + ob + kf);
#pragma GCC unroll 4
            for (int i = 0; i < NT_TM; i++)
                acc[i][j] = _mm512_fmadd_ps(va[i], vb, acc[i][j]);
        }
    }
}

void apb_sgemm_nt_tile_avx512(int K, int nb, float alpha, const float *A, long lda, long sa,
                              int mr, const float *B, const long *boff, long sb, int nr,
                              float *C, long ldc)
{
    const float *a[NT_TM], *b[NT_TN];
    for (int i = 0; i < NT_TM; i++)
        a[i] = A + (long)(i < mr ? i : mr - 1) * lda;
    for (int j = 0; j < NT_TN; j++)
        b[j] = B + boff[j < nr ? j : nr - 1];
    __m512 acc[NT_TM][NT_TN];
#pragma GCC unroll 6
    for (int j = 0; j < NT_TN; j++)
#pragma GCC unroll 4
        for (int i = 0; i < NT_TM; i++)
            acc[i][j] = _mm512_setzero_ps();
    int kf = K & ~15;
    __mmask16 tail = (__mmask16)((1u << (K & 15)) - 1);
    for (int bi = 0; bi < nb; bi++) {
        long oa = bi * sa, ob = bi * sb;
        for (int k = 0; k < kf; k += 16) {
            __m512 va[NT_TM];
#pragma GCC unroll 4
            for (int i = 0; i < NT_TM; i++)
                va[i] = _mm512_loadu_ps(a[i] + oa + k);
#pragma GCC unroll 6
            for (int j = 0; j < NT_TN; j++) {
                __m512 vb = _mm512_loadu_ps(b[j] + ob + k);
#pragma GCC unroll 4
                for (int i = 0; i < NT_TM; i++)
                    acc[i][j] = _mm512_fmadd_ps(va[i], vb, acc[i][j]);
            }
        }
    }
    if (tail) /* out of line, after all images: inline it made gcc spill in the loop */
        nt_tail(acc, a, b, nb, sa, sb, kf, tail);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            C[i * ldc + j] += alpha * _mm512_reduce_add_ps(acc[i][j]);
}

/* ---- 3-wide convolution weight gradient, outer products over the pixels ------
 * dW[m][(r, kw)] += alpha * sum_b sum_{oh, ow} dyT_b[(oh*OW + ow)*M + m] * x_b(r, oh, ow, kw)
 * with dyT the transposed output gradient (pixel-major, M a multiple of 16, so one
 * pixel's M values are MV = M/16 vectors) and x the input under kernel row r =
 * (c, kh), column kw. The vector runs over m: per pixel, MV loads of dyT and 3*RT
 * broadcasts of x feed 3*RT*MV FMAs into register-resident accumulators, which
 * stay in registers over every pixel of every image of the group. Each
 * accumulator lane sums its products in the order b, oh, ow. Two layouts:
 *  - dw3_body: padded planes, x = X_b[roff[r] + oh*Wp + ow + tap[kw]], tap =
 *    {0, t1, t2} ({0, 1, 2} for stride 1; {0, plane, 1} on the stride-phase
 *    planes of a stride-2 conv);
 *  - dw3e_body: a 3x3 pad-1 conv on the unpadded input, x = X_b[coff[r] + ih*W +
 *    ow + kw - 1], ih = oh + rkh[r] - 1, zero outside the image: rows outside read
 *    a zero row, the first and last pixel of an output row take only the taps
 *    inside, the pixels between read all three at displacements -1, 0, +1. */
#define AI inline __attribute__((always_inline))

static AI void dw3_zero(const int MV, const int RT, __m512 acc[4][24])
{
#pragma GCC unroll 24
    for (int j = 0; j < 3 * RT; j++)
#pragma GCC unroll 4
        for (int v = 0; v < MV; v++)
            acc[v][j] = _mm512_setzero_ps();
}

/* C[16v + i][j] += alpha * lane i of acc[v][j], for the nr valid rows' columns. */
static AI void dw3_store(const int MV, int nr, __m512 acc[4][24], float alpha, float *C, long ldc)
{
    float lane[16];
    for (int j = 0; j < 3 * nr; j++)
        for (int v = 0; v < MV; v++) {
            _mm512_storeu_ps(lane, acc[v][j]);
            for (int i = 0; i < 16; i++)
                C[(long)(16 * v + i) * ldc + j] += alpha * lane[i];
        }
}

/* One pixel: every row's taps K0..K1 at pr[r][tap[kw]], then each pr[r] moves on by
 * one. The pointer is made opaque per row and pixel (the empty asm): otherwise gcc
 * carries x values from pixel to pixel (x at ow + kw is x at ow + 1 + kw - 1) or
 * keeps 3*RT offsets, and spills either. Constant taps become displacements, which
 * stay fused with the FMA (an indexed address would not). */
static AI void dw3_pixel(const int MV, const int RT, const int K0, const int K1,
                         __m512 acc[4][24], const float *pr[8], const long tap[3],
                         const float *d)
{
    __m512 dv[4];
#pragma GCC unroll 4
    for (int v = 0; v < MV; v++)
        dv[v] = _mm512_loadu_ps(d + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) {
        __asm__("" : "+r"(pr[r]));
#pragma GCC unroll 3
        for (int kw = K0; kw <= K1; kw++) {
            __m512 xb = _mm512_set1_ps(pr[r][tap[kw]]);
#pragma GCC unroll 4
            for (int v = 0; v < MV; v++)
                acc[v][3 * r + kw] = _mm512_fmadd_ps(dv[v], xb, acc[v][3 * r + kw]);
        }
        pr[r]++;
    }
}

/* Two pixels with every tap (MV <= 2, for the registers): half the pointer
 * updates; each accumulator still takes the first pixel, then the second. */
static AI void dw3_pair(const int MV, const int RT, __m512 acc[4][24], const float *pr[8],
                        const long tap[3], const float *d)
{
    __m512 dv[2][2];
#pragma GCC unroll 2
    for (int v = 0; v < MV; v++) {
        dv[0][v] = _mm512_loadu_ps(d + 16 * v);
        dv[1][v] = _mm512_loadu_ps(d + 16 * (MV + v));
    }
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) {
        __asm__("" : "+r"(pr[r]));
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; kw++) {
            __m512 x0 = _mm512_set1_ps(pr[r][tap[kw]]), x1 = _mm512_set1_ps(pr[r][tap[kw] + 1]);
#pragma GCC unroll 2
            for (int v = 0; v < MV; v++) {
                acc[v][3 * r + kw] = _mm512_fmadd_ps(dv[0][v], x0, acc[v][3 * r + kw]);
                acc[v][3 * r + kw] = _mm512_fmadd_ps(dv[1][v], x1, acc[v][3 * r + kw]);
            }
        }
        pr[r] += 2;
    }
}

static AI void dw3_body(const int MV, const int RT, int nr, int nb, int OH, int OW,
                        const float *dyT, long sdy, const float *X, const long *roff, long sx,
                        long Wp, long t1, long t2, float alpha, float *C, long ldc)
{
    __m512 acc[4][24];
    dw3_zero(MV, RT, acc);
    const long tap[3] = {0, t1, t2};
    long ro[8];
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++)
        ro[r] = roff[r < nr ? r : nr - 1]; /* rows past nr repeat the last: discarded */
    for (int b = 0; b < nb; b++) {
        const float *d = dyT + b * sdy;
        for (int oh = 0; oh < OH; oh++) {
            const float *pr[8];
#pragma GCC unroll 8
            for (int r = 0; r < RT; r++)
                pr[r] = X + b * sx + oh * Wp + ro[r];
            int ow = 0;
            for (; MV <= 2 && ow + 2 <= OW; ow += 2, d += 32 * MV)
                dw3_pair(MV, RT, acc, pr, tap, d);
            for (; ow < OW; ow++, d += 16 * MV)
                dw3_pixel(MV, RT, 0, 2, acc, pr, tap, d);
        }
    }
    dw3_store(MV, nr, acc, alpha, C, ldc);
}

static AI void dw3e_body(const int MV, const int RT, int nr, int nb, int H, int W,
                         const float *dyT, long sdy, const float *X, const long *coff,
                         const int *rkh, long sx, const float *zrow, float alpha, float *C,
                         long ldc)
{
    __m512 acc[4][24];
    dw3_zero(MV, RT, acc);
    const long tap[3] = {-1, 0, 1};
    long co[8];
    int kh[8];
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) { /* rows past nr repeat the last: discarded */
        co[r] = coff[r < nr ? r : nr - 1];
        kh[r] = rkh[r < nr ? r : nr - 1];
    }
    for (int b = 0; b < nb; b++) {
        const float *d = dyT + b * sdy;
        for (int oh = 0; oh < H; oh++) {
            const float *pr[8];
#pragma GCC unroll 8
            for (int r = 0; r < RT; r++) {
                int ih = oh + kh[r] - 1;
                pr[r] = ih >= 0 && ih < H ? X + b * sx + co[r] + (long)ih * W : zrow;
            }
            if (W == 1) {
                dw3_pixel(MV, RT, 1, 1, acc, pr, tap, d);
                d += 16 * MV;
                continue;
            }
            dw3_pixel(MV, RT, 1, 2, acc, pr, tap, d); /* ow = 0: no column -1 */
            d += 16 * MV;
            int ow = 1;
            for (; MV <= 2 && ow + 2 < W; ow += 2, d += 32 * MV)
                dw3_pair(MV, RT, acc, pr, tap, d);
            for (; ow + 1 < W; ow++, d += 16 * MV)
                dw3_pixel(MV, RT, 0, 2, acc, pr, tap, d);
            dw3_pixel(MV, RT, 0, 1, acc, pr, tap, d); /* ow = W - 1: no column W */
            d += 16 * MV;
        }
    }
    dw3_store(MV, nr, acc, alpha, C, ldc);
}

/* Register tiles: RT kernel rows (3*RT columns of dW) by all M. */
#define DW3_TILES(body, ...)                                                                       \
    switch (M) {                                                                                   \
    case 16:                                                                                       \
        body(1, 8, __VA_ARGS__);                                                                   \
        break;                                                                                     \
    case 32:                                                                                       \
        body(2, 4, __VA_ARGS__);                                                                   \
        break;                                                                                     \
    case 48:                                                                                       \
        body(3, 2, __VA_ARGS__);                                                                   \
        break;                                                                                     \
    default: /* 64 */                                                                              \
        body(4, 2, __VA_ARGS__);                                                                   \
        break;                                                                                     \
    }

void apb_sgemm_dw3_tile_avx512(int M, int nr, int nb, int OH, int OW, const float *dyT, long sdy,
                               const float *X, const long *roff, long sx, long Wp, long t1,
                               long t2, float alpha, float *C, long ldc)
{
    DW3_TILES(dw3_body, nr, nb, OH, OW, dyT, sdy, X, roff, sx, Wp, t1, t2, alpha, C, ldc)
}

void apb_sgemm_dw3e_tile_avx512(int M, int nr, int nb, int H, int W, const float *dyT, long sdy,
                                const float *X, const long *coff, const int *rkh, long sx,
                                const float *zrow, float alpha, float *C, long ldc)
{
    DW3_TILES(dw3e_body, nr, nb, H, W, dyT, sdy, X, coff, rkh, sx, zrow, alpha, C, ldc)
}
#undef DW3_TILES
#undef AI

/* dst[p][m] = src[m][p] for m < M (a multiple of 16) and p < P, src row stride
 * lds: 16 x 16 blocks through registers, a scalar tail for P % 16. */
void apb_transpose16_avx512(int M, int P, const float *src, long lds, float *dst)
{
    int pf = P & ~15;
    for (int m0 = 0; m0 < M; m0 += 16) {
        for (int p0 = 0; p0 < pf; p0 += 16) {
            __m512 r[16], t[16];
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_loadu_ps(src + (long)(m0 + i) * lds + p0);
            /* round 1: 128-bit lane L of t[2h], t[2h+1] = rows 2h, 2h+1 at columns
             * 4L, 4L+1 and 4L+2, 4L+3 */
            for (int i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            /* round 2: lane L of r[4g + s] = rows 4g..4g+3 at column 4L + s */
            for (int g = 0; g < 4; g++)
                for (int j = 0; j < 2; j++) {
                    __m512d a = _mm512_castps_pd(t[4 * g + j]);
                    __m512d b = _mm512_castps_pd(t[4 * g + j + 2]);
                    r[4 * g + 2 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
                    r[4 * g + 2 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
                }
            /* round 3: pair row groups (0,1) and (2,3): lanes 0,1 or 2,3 of each */
            for (int h = 0; h < 2; h++)
                for (int s4 = 0; s4 < 4; s4++) {
                    __m512 a = r[8 * h + s4], b = r[8 * h + 4 + s4];
                    t[8 * h + s4] = _mm512_shuffle_f32x4(a, b, 0x44);
                    t[8 * h + 4 + s4] = _mm512_shuffle_f32x4(a, b, 0xEE);
                }
            /* round 4: one column, rows 0..15, per vector */
            for (int s4 = 0; s4 < 4; s4++) {
                __m512 lo0 = t[s4], hi0 = t[4 + s4], lo1 = t[8 + s4], hi1 = t[12 + s4];
                float *d = dst + (long)(p0 + s4) * M + m0;
                _mm512_storeu_ps(d, _mm512_shuffle_f32x4(lo0, lo1, 0x88));
                _mm512_storeu_ps(d + 4L * M, _mm512_shuffle_f32x4(lo0, lo1, 0xDD));
                _mm512_storeu_ps(d + 8L * M, _mm512_shuffle_f32x4(hi0, hi1, 0x88));
                _mm512_storeu_ps(d + 12L * M, _mm512_shuffle_f32x4(hi0, hi1, 0xDD));
            }
        }
        for (int p = pf; p < P; p++)
            for (int i = 0; i < 16; i++)
                dst[(long)p * M + m0 + i] = src[(long)(m0 + i) * lds + p];
    }
}
