/* spmm.h - sparse x dense products for the full-precision residual of APB layers.
 *
 * WHY: an APB weight is alpha*sgn(W) + R where R (the outliers, W - alpha*sgn(W)
 * on a few positions) is very sparse. R is stored as CSR over output rows with the
 * narrowest column index type that fits, and multiplied into the dense output
 * after the binary GEMM (bgemm.h): y = alpha*(B (*) x) + R (*) x.
 *
 * STORAGE: apb_csr, M rows (output channels) x K columns (reduction, same k order
 * as bitpack.h: k = (c*KH + kh)*KW + kw for a convolution). Row m holds entries
 * row_ptr[m] .. row_ptr[m+1]-1, column indices strictly increasing within a row,
 * values float. idx_bytes is 2 (col16, uint16) when K <= 65536, else 4 (col32).
 * Exactly one of col16 / col32 is non-NULL.
 *
 * PRODUCTS (all ACCUMULATE into Y; results do not depend on the thread count:
 * each output element sums its row's nonzeros in CSR order):
 *   apb_spmm     Y[M, ldy] += R[M, K] * X[K, ldx]     X row-major [K, N] (im2col
 *                layout, channel-major output); vectorized over N.
 *   apb_spmm_xt  Y[M, ldy] += R[M, K] * Xt[N, ldxt]^T  X given pixel-major [N, K]
 *                (e.g. rows of an im2col^T / NHWC patch matrix), Y channel-major.
 * apb_spmm_ref is the specification of apb_spmm (plain loops).
 */
#ifndef APB_SPMM_H
#define APB_SPMM_H

#include <stdint.h>

#include "status.h"

typedef struct {
    int M, K;
    int64_t nnz;
    int idx_bytes;     /* 2 or 4 */
    int64_t *row_ptr;  /* [M + 1] */
    uint16_t *col16;   /* [nnz] when idx_bytes == 2, else NULL */
    uint32_t *col32;   /* [nnz] when idx_bytes == 4, else NULL */
    float *val;        /* [nnz] */
} apb_csr;

/* Allocates an empty CSR for nnz entries (row_ptr zeroed; the caller fills
 * row_ptr, columns and values, e.g. when loading a model file). */
apb_status apb_csr_alloc(apb_csr *R, int M, int K, int64_t nnz);
/* Builds R from a dense R_dense[M, ldr] keeping the entries != 0 (0.0 and -0.0
 * are dropped; NaN is kept). */
apb_status apb_csr_from_dense(apb_csr *R, int M, int K, const float *R_dense, int ldr);
/* Checks row_ptr monotone, indices < K and increasing within rows. */
apb_status apb_csr_validate(const apb_csr *R);
void apb_csr_free(apb_csr *R);
/* Column index of entry e. */
static inline int apb_csr_col(const apb_csr *R, int64_t e)
{
    return R->idx_bytes == 2 ? (int)R->col16[e] : (int)R->col32[e];
}

/* Y[M, ldy] += R * X[K, ldx] (ldx, ldy >= N). OpenMP over row blocks. */
apb_status apb_spmm(const apb_csr *R, int N, const float *X, int ldx, float *Y, int ldy);
/* Y[M, ldy] += R * Xt^T with Xt[N, ldxt] pixel-major (ldxt >= K). */
apb_status apb_spmm_xt(const apb_csr *R, int N, const float *Xt, int ldxt, float *Y, int ldy);
/* Direct sparse convolution, one chunk of APB_SPMM_NC columns: the column index
 * of entry e is an ELEMENT OFFSET into X, and for m in [m0, m1), n < APB_SPMM_NC
 *     out[(m - m0)*APB_SPMM_NC + n] = sum_e val[e] * X[col(e) + n]   (CSR order, from 0)
 * With X a zero-padded (and, for stride S, phase-split) copy of a layer's input,
 * advanced to the chunk's first pixel, and col(e) the offset of the outlier's
 * tap, this is R (*) x without an im2col matrix (infer/apbrt_fast.c).
 * X[col(e) .. col(e) + APB_SPMM_NC) must be readable for every entry: the caller
 * keeps APB_SPMM_NC floats of slack past its planes (columns it does not use may
 * hold anything finite). Serial; per element the same operations as apb_spmm at
 * the active ISA level, so results do not depend on how the caller splits. */
typedef void (*apb_spmm_offset_fn)(const apb_csr *R, int m0, int m1, const float *X, float *out);
apb_spmm_offset_fn apb_spmm_offset_kernel(void);
/* The same product over byte planes, for binary activations (values +1, -1 and
 * 0 for padding): out[(m - m0)*APB_SPMM_NC + n] = sum_e val[e] * (float)X[col(e) + n]
 * (CSR order, from 0). Each product val * x is exact, so every element is bit
 * for bit what apb_spmm_offset_kernel gives on the same values stored as
 * floats, with a quarter of the bytes: a 64-channel conv's planes for one
 * output row (3 input rows) stay in L1. Same slack rule (APB_SPMM_NC bytes). */
typedef void (*apb_spmm_offset_i8_fn)(const apb_csr *R, int m0, int m1, const int8_t *X, float *out);
apb_spmm_offset_i8_fn apb_spmm_offset_i8_kernel(void);
/* The same over 8-bit activation codes (apb_i8_quant4's per-channel planes:
 * unsigned bytes, or two's complement when is_signed) with the step s: the value
 * of a code is (float)code * s, rounded as the float planes hold it, so each
 * element is bit for bit what apb_spmm_offset_kernel gives on those floats. */
typedef void (*apb_spmm_offset_q8_fn)(const apb_csr *R, int m0, int m1, const uint8_t *X,
                                      int is_signed, float s, float *out);
apb_spmm_offset_q8_fn apb_spmm_offset_q8_kernel(void);
/* Specification of apb_spmm: single-threaded scalar loops. */
apb_status apb_spmm_ref(const apb_csr *R, int N, const float *X, int ldx, float *Y, int ldy);

/* ---- internal: column-chunk kernels (spmm.c and the ISA files) ----
 * Y[m, n0:n0+nc] += sum_e val[e] * X[col[e], n0:n0+nc] for m in [m0, m1),
 * nc <= APB_SPMM_NC, summing each row's entries in CSR order. */
#define APB_SPMM_NC 64
typedef void (*apb_spmm_chunk_fn)(const apb_csr *R, int m0, int m1, int n0, int nc,
                                  const float *X, int ldx, float *Y, int ldy);
void apb_spmm_chunk_avx2(const apb_csr *R, int m0, int m1, int n0, int nc, const float *X,
                         int ldx, float *Y, int ldy);
void apb_spmm_chunk_avx512(const apb_csr *R, int m0, int m1, int n0, int nc, const float *X,
                           int ldx, float *Y, int ldy);
void apb_spmm_offset_avx2(const apb_csr *R, int m0, int m1, const float *X, float *out);
void apb_spmm_offset_avx512(const apb_csr *R, int m0, int m1, const float *X, float *out);
void apb_spmm_offset_i8_avx2(const apb_csr *R, int m0, int m1, const int8_t *X, float *out);
void apb_spmm_offset_i8_avx512(const apb_csr *R, int m0, int m1, const int8_t *X, float *out);
void apb_spmm_offset_q8_avx2(const apb_csr *R, int m0, int m1, const uint8_t *X, int is_signed,
                             float s, float *out);
void apb_spmm_offset_q8_avx512(const apb_csr *R, int m0, int m1, const uint8_t *X, int is_signed,
                               float s, float *out);
/* apb_spmm at AVX-512 copies each chunk's X columns to a contiguous slab first
 * (on by default; same results bit for bit). Returns the previous setting; for
 * tests and benchmarks. */
int apb_spmm_slab_enable(int on);

#endif
