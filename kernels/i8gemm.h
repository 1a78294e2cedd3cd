/* i8gemm.h - binary weights x 8-bit activations as an exact integer GEMM
 * (issue 14: APB layers with --act int8).
 *
 * WHY: an APB weight is alpha*sgn(W) + R. With 8-bit activation codes q the
 * sign part is sum_k s_k * q_k with s_k = +-1: an exact integer, i.e. an int8
 * GEMM whose weight operand is the sign plane as +-1 bytes (u8 x s8, the
 * operand order of VPMADDUBSW and VNNI's VPDPBUSD).
 *
 * THE CODE RULE (shared with the training quantizer, layers/quant.h): for the
 * step s and r = 1.0f / s, t = x * r, code = lo where !(t > lo) (NaN: 0), hi
 * where t >= hi, else t rounded to the nearest integer, ties to even; [lo, hi]
 * = [0, 255] (unsigned) or [-128, 127] (signed). The value is (float)code * s.
 * apb_i8_code is that expression; every path quantizes through it or through
 * instructions that round the same way (nearest-even conversions).
 *
 * OPERANDS
 *   W  int8 [M, ldw]: row m holds the K weights of output m, then zeros up to
 *      4*K4 (K4 = ceil(K/4)); ldw >= 4*K4.
 *   B  packed activations: ceil(N/16) panels of 16 columns; panel p holds, for
 *      each k4 < K4, 16 groups of 4 bytes (column p*16+j, k = 4*k4 .. 4*k4+3),
 *      i.e. byte (k4*16 + j)*4 + (k & 3) of the panel; panels are K4*64 bytes
 *      apart. Bytes are codes (unsigned) or codes + 128 (signed, zero point 128);
 *      positions past K meet zero weights, so their bytes never matter.
 *   Y[m, n] = scale[m] * (float)(dot(W row m, B column n) - corr[m]), n < N,
 *      row-major with stride ldy. corr (NULL = 0) removes the zero point:
 *      corr[m] = 128 * sum_k W[m, k] for signed activations.
 *
 * Micro-kernels: ref (portable C, the specification), AVX2 (VPMADDUBSW with
 * 16-bit partial sums, exact because |s*q| <= 255 and 64 pairs of them fit
 * int16), AVX512-VNNI (VPDPBUSD) at APB_ISA_AVX512 where the CPU has it (else
 * the AVX2 kernel at that level; APB_I8_VNNI=0 also selects AVX2 there). Chosen
 * by apb_isa_active(); results are identical on every path and thread count.
 */
#ifndef APB_I8GEMM_H
#define APB_I8GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define APB_I8_PANEL 16 /* columns per packed B panel */

/* The code rule above. The rounding adds and subtracts 1.5 * 2^23, which rounds
 * to the nearest integer, ties to even, for |t| < 2^22 (here |t| <= 255) with
 * no libm call; the build never reassociates or contracts float expressions
 * (-ffp-contract=off, no fast-math), so the two operations stay as written. */
static inline float apb_i8_codef(float x, float r, float lo, float hi)
{
    float t = x * r;
    t = t > lo ? t : (t <= lo ? lo : 0.0f);
    t = t < hi ? t : hi;
    return (t + 12582912.0f) - 12582912.0f;
}

/* The same as an int (the float above is already an integer in [lo, hi], so
 * loops that want a float use apb_i8_codef: it vectorizes, the conversions need
 * not). */
static inline int apb_i8_code(float x, float r, int is_signed)
{
    return (int)apb_i8_codef(x, r, is_signed ? -128.0f : 0.0f, is_signed ? 127.0f : 255.0f);
}

/* Bytes of a packed B for N columns and K4 groups of 4. */
static inline long apb_i8_packed_bytes(int N, int K4)
{
    return (long)((N + APB_I8_PANEL - 1) / APB_I8_PANEL) * K4 * 4 * APB_I8_PANEL;
}

/* Quantizes and packs rows of a matrix: column n of B is row n of X [N, ldx]
 * (K values). Codes by the rule above with step s (bytes + 128 when signed);
 * B as described, bytes past K and columns past N zero. */
void apb_i8_pack_rows(int N, int K, const float *X, long ldx, float s, int is_signed,
                      uint8_t *B);

/* Codes of up to four channel rows into one interleaved byte row, the layout
 * of the channel-blocked planes that 8-bit convolutions read in place
 * (apb_i8gemm_ind_f32): for j < n, bytes 4j .. 4j+3 of d are, for i < 4,
 * code(x[i*ldx + j*stride]) + zp where i < nc, else zp (zp = 128 signed, 0
 * unsigned), by the code rule above with step s. When q is not NULL, also
 * q[i*ldq + j] = the code itself as a byte (two's complement when signed) for
 * i < nc: the per-channel planes the sparse residual reads
 * (apb_spmm_offset_q8_kernel). Reads row i < nc only within x[i*ldx .. i*ldx +
 * (n-1)*stride]. */
void apb_i8_quant4(int n, int nc, const float *x, long ldx, int stride, float s, int is_signed,
                   uint8_t *d, uint8_t *q, long ldq);

/* Y = scale * (W B - corr) as described above (OpenMP over tiles). */
apb_status apb_i8gemm_f32(int M, int N, int K4, const int8_t *W, long ldw, const uint8_t *B,
                          const float *scale, const int32_t *corr, float *Y, long ldy);

/* The same product with B read in place, never packed ("indirect"): nimg byte
 * images of istride bytes, ncol columns each (a multiple of 16), N = nimg*ncol
 * columns in all; group k4 of column n = i*ncol + j is the 4 bytes at
 * src + i*istride + 4*j + boff[k4] (boff [K4], >= 0). Each 16 columns of a
 * group are then 64 contiguous bytes, a panel of the packed layout, so the
 * micro-kernels read them where they lie: e.g. a 3x3 convolution over
 * channel-blocked planes (4 channels interleaved per pixel, apb_i8_quant4),
 * where k4 = (channel group, tap) and boff is the tap's offset into the
 * group's planes, reads each input byte 9 times from L1 instead of packing a
 * 9x larger im2col (docs/KERNELS.md). Results equal apb_i8gemm_f32 on the
 * gathered columns, bit for bit. */
apb_status apb_i8gemm_ind_f32(int M, int ncol, int nimg, int K4, const int8_t *W, long ldw,
                              const uint8_t *src, long istride, const long *boff,
                              const float *scale, const int32_t *corr, float *Y, long ldy);

/* The same for weights anywhere in [-127, 127] (the approximate 8-bit convs of
 * infer/, apbrt_model.h S8D): the AVX2 kernel's 16-bit partial sums hold only
 * +-1 weights, so at the AVX2 level (or without VNNI) this runs the portable
 * kernel; the integers are the same on every path. */
apb_status apb_i8gemm_ind_f32_w8(int M, int ncol, int nimg, int K4, const int8_t *W, long ldw,
                                 const uint8_t *src, long istride, const long *boff,
                                 const float *scale, const int32_t *corr, float *Y, long ldy);
/* 1 when apb_i8gemm_ind_f32_w8 runs a fast kernel (VNNI) now, 0 when the portable one. */
int apb_i8gemm_w8_fast(void);

/* The specification: C[m, n] = dot, one element at a time. C [M, ldc]. */
void apb_i8gemm_ref(int M, int N, int K4, const int8_t *W, long ldw, const uint8_t *B, int32_t *C,
                    long ldc);

/* ---- internal: micro-kernel table (i8gemm.c and the ISA files) ----
 * A micro-kernel sets acc[r*ldacc + c] = dot for rows r < mr (W rows ldw bytes
 * apart starting at w) and the 16*np columns of np panels, panel p's group k4
 * at b + p*pstride + off(k4), off(k4) = boff[k4], or 64*k4 when boff is NULL
 * (the packed layout), over K4 groups. mr <= entry mr, np <= entry np. */
typedef void (*apb_i8_kern_fn)(int mr, int np, int K4, const int8_t *w, long ldw,
                               const uint8_t *b, long pstride, const long *boff, int32_t *acc,
                               int ldacc);
/* AVX2 helpers, used at every level from AVX2 up (they need nothing wider):
 * the float epilogue of a kernel's tile, Y[r*ldy + j] = scale[r] *
 * (float)(acc[r*ld + j] - corr[r]) for r < mr, j < nc (scale NULL = 1, corr
 * NULL = 0); apb_i8_quant4 for stride 1 or 2 and nc == 4, with r = 1 / s. */
void apb_i8_store_avx2(int mr, int nc, const int32_t *acc, int ld, const float *scale,
                       const int32_t *corr, float *Y, long ldy);
void apb_i8_quant4_avx2(int n, const float *x, long ldx, int stride, float r, float s,
                        int is_signed, uint8_t *d, uint8_t *q, long ldq);
/* The same at the AVX-512 level: 16 pixels a step, the row's end by masks (no
 * scalar tail: rows of 7 to 56 pixels were mostly tail), the same bits; nc <= 4
 * channels (a 3-channel first conv), the others the zero point. */
void apb_i8_quant4_avx512(int n, int nc, const float *x, long ldx, int stride, float r, float s,
                          int is_signed, uint8_t *d, uint8_t *q, long ldq);
typedef struct {
    apb_i8_kern_fn fn;
    int mr, np;
    const char *name;
    int wide_ok; /* exact for any weights in [-127, 127], not only +-1 */
} apb_i8_kernels;

extern const apb_i8_kernels apb_i8_kernels_ref;
extern const apb_i8_kernels apb_i8_kernels_avx2;
extern const apb_i8_kernels apb_i8_kernels_avx512vnni;
/* Name of the kernel apb_i8gemm_f32 uses now ("ref", "avx2", "avx512-vnni"). */
const char *apb_i8gemm_kernel_name(void);

#endif
