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

#include <stdint.h>

#include "status.h"

#define APB_I8_PANEL 16 /* columns per packed B panel */

/* The code rule above. The rounding adds and subtracts 1.5 * 2^23, which rounds
 * to the nearest integer, ties to even, for |t| < 2^22 (here |t| <= 255) with
 * no libm call; the build never reassociates or contracts float expressions
 * (-ffp-contract=off, no fast-math), so the two operations stay as written. */
static inline int apb_i8_code(float x, float r, int is_signed)
{
    float lo = is_signed ? -128.0f : 0.0f, hi = is_signed ? 127.0f : 255.0f;
    float t = x * r;
    t = t > lo ? t : (t <= lo ? lo : 0.0f);
    t = t < hi ? t : hi;
    return (int)((t + 12582912.0f) - 12582912.0f);
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

/* Packs columns that are contiguous runs of one byte image: column n, element k
 * is src[n + koff[k]] (koff [K], >= 0), e.g. taps of a convolution over
 * zero-padded stride-phase planes of codes, for the "wide" output pixels
 * n = oh * Wq + ow (docs/KERNELS.md). Reads src[0 .. N + max koff + 15]; bytes
 * past K are zero. */
void apb_i8_pack_taps(int N, int K, const uint8_t *src, const long *koff, uint8_t *B);

/* Y = scale * (W B - corr) as described above (OpenMP over tiles). */
apb_status apb_i8gemm_f32(int M, int N, int K4, const int8_t *W, long ldw, const uint8_t *B,
                          const float *scale, const int32_t *corr, float *Y, long ldy);

/* The specification: C[m, n] = dot, one element at a time. C [M, ldc]. */
void apb_i8gemm_ref(int M, int N, int K4, const int8_t *W, long ldw, const uint8_t *B, int32_t *C,
                    long ldc);

/* ---- internal: micro-kernel table (i8gemm.c and the ISA files) ----
 * A micro-kernel sets acc[r*ldacc + c] = dot for rows r < mr (W rows ldw bytes
 * apart starting at w) and the 16*np columns of np consecutive panels starting
 * at b (panels pstride bytes apart), over K4 groups. mr <= entry mr, np <= entry np. */
typedef void (*apb_i8_kern_fn)(int mr, int np, int K4, const int8_t *w, long ldw,
                               const uint8_t *b, long pstride, int32_t *acc, int ldacc);
typedef struct {
    apb_i8_kern_fn fn;
    int mr, np;
    const char *name;
} apb_i8_kernels;

extern const apb_i8_kernels apb_i8_kernels_ref;
extern const apb_i8_kernels apb_i8_kernels_avx2;
extern const apb_i8_kernels apb_i8_kernels_avx512vnni;
/* Name of the kernel apb_i8gemm_f32 uses now ("ref", "avx2", "avx512-vnni"). */
const char *apb_i8gemm_kernel_name(void);

#endif
