/* sgemm.h - single-precision matrix multiply, row-major.
 *
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]
 *
 * op(A) = A (lda >= K) or A^T (transa: A stored [K,M], lda >= M); likewise B
 * (B stored [K,N], ldb >= N, or transb: [N,K], ldb >= K). Contract: beta == 0
 * never reads C (it may hold NaN); any M, N, K >= 0; no alignment required.
 * apb_sgemm() is the driver (packing, cache blocking, OpenMP over macro-tiles,
 * ISA chosen by apb_isa_active()); apb_sgemm_ref() is the specification.
 */
#ifndef APB_SGEMM_H
#define APB_SGEMM_H

#include <stddef.h>

void apb_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* For several products with the same A (not transposed, M x K): A packed once,
 * in apb_sgemm's own blocking, into pa (apb_sgemm_apack_floats(M, K) floats),
 * then apb_sgemm_packed(..., A, lda, pa, ...) gives the results of
 * apb_sgemm(0, 0, ...) bit for bit, without repacking A (if the packing scratch
 * for B cannot be had, a plain loop reads A, or pa when A is NULL, and the result
 * is close, not bitwise). Pack and multiply at the same ISA level. Users: the
 * images of apb_sgemm_conv_batch, Winograd's 36 transformed weight matrices. */
size_t apb_sgemm_apack_floats(int M, int K);
void apb_sgemm_apack(int M, int K, const float *A, int lda, float *pa);
void apb_sgemm_packed(int M, int N, int K, float alpha, const float *A, int lda, const float *pa,
                      const float *B, int ldb, float beta, float *C, int ldc);
/* The same for B: op(B) (N x K after the transpose) packed once into pb
 * (apb_sgemm_bpack_floats(N, K) floats); apb_sgemm_packed_b gives apb_sgemm's
 * bits without repacking it (B may be NULL: then, without packing scratch for A,
 * a plain loop reads pb). A linear layer's weights at batch 1 are 2 MB packed
 * per call otherwise. */
size_t apb_sgemm_bpack_floats(int N, int K);
void apb_sgemm_bpack(int transb, int N, int K, const float *B, int ldb, float *pb);
void apb_sgemm_packed_b(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, const float *pb, float beta, float *C,
                        int ldc);

/* Batched "NT" product accumulated into C, reduction as dot products:
 *   C[M,N] += alpha * sum_{b<nb} A_b[M,K] * B_b[N,K]^T,  A_b = A + b*sa, B_b = B + b*sb
 * (row strides lda, ldb >= K; C row stride ldc). Both operands are read in place
 * along their contiguous K, nothing is packed: this is the weight gradient of a
 * convolution, dW[M, C*KH*KW] += sum_n dy_n[M,P] * col_n[C*KH*KW,P]^T, where the
 * packing of a transposed col would cost as much as the multiply. Each C element is
 * one dot product in a fixed order, so results do not depend on the thread count. */
void apb_sgemm_nt_batch(int M, int N, int K, int nb, float alpha, const float *A, int lda,
                        long sa, const float *B, int ldb, long sb, float *C, int ldc);
/* The same with row j of B_b at B + b*sb + boff[j] (any offsets, e.g. the shifted
 * planes of a padded image, which are the rows of its im2col without the copy). */
void apb_sgemm_nt_rows(int M, int N, int K, int nb, float alpha, const float *A, int lda,
                       long sa, const float *B, const long *boff, long sb, float *C, int ldc);

/* Weight gradient of a convolution with 3-wide kernels, from padded planes:
 *   C[m][3r + kw] += alpha * sum_{b<nb} sum_{oh<OH, ow<OW}
 *                    dy_b[m][oh*OW + ow] * X_b[roff[r] + oh*Wp + ow + tap[kw]]
 * tap = {0, t1, t2}, dy_b = dy + b*sdy ([M][OH*OW]), X_b = X + b*sx. Stride 1:
 * row r = (c, kh) of the kernel at roff[r] = c*plane + kh*Wp of the zero-padded
 * input and tap = {0, 1, 2}, so X_b[...] is the input under output pixel (oh, ow).
 * Stride 2: the same on the four stride-phase planes of the padded input (see
 * op_conv2d.c), tap = {0, plane, 1}. C has 3R columns, row stride ldc. With AVX2 or
 * AVX-512 and M a multiple of 16 up to 64 the gradient is transposed once and the
 * sums run as outer products with the accumulators in registers (register tiles:
 * AVX-512 all M channels x 8/4/2 kernel rows, AVX2 16 channels x 2 rows; threads
 * split the tiles, never a sum; apb_sgemm_dw3_fast says whether that path is
 * taken); otherwise plain loops. Each C element is summed in the order b, oh, ow
 * within a call, whatever the thread count: the paths differ only in rounding
 * (the fast ones fuse each multiply-add). */
void apb_sgemm_dw3(int M, int R, int nb, int OH, int OW, float alpha, const float *dy, long sdy,
                   const float *X, const long *roff, long sx, long Wp, long t1, long t2,
                   float *C, int ldc);
int apb_sgemm_dw3_fast(int M);
/* The weight gradient of a 3x3 stride-1 pad-1 convolution straight from its
 * unpadded input x_b = x + b*sx ([C][H][W]), no padded copy:
 *   Cw[m][(c*3 + kh)*3 + kw] += alpha * sum_b sum_{oh, ow} dy_b[m][oh*W + ow]
 *                               * x_b[c][oh + kh - 1][ow + kw - 1]   (0 outside)
 * Same paths (apb_sgemm_dw3_fast) and summation order per element as apb_sgemm_dw3. */
void apb_sgemm_dw3_same(int M, int C, int nb, int H, int W, float alpha, const float *dy,
                        long sdy, const float *x, long sx, float *Cw, int ldc);

/* Convolution GEMM: C[M,N] = alpha * A[M,K] * B[K,N] + beta * C[M,N] with B implicit,
 *   B[k][j] = B[boff[k] + (j / seg) * segld + j % seg]
 * the im2col matrix of a stride-1 convolution read from a zero-padded image
 * (boff[k] = c*plane + kh*Wp + kw for row (c,kh,kw), seg = OW, segld = Wp), so no
 * im2col copy is made. Every C element is computed exactly as apb_sgemm(0, 0, ...)
 * computes it from the explicit matrix at the same ISA level and M (same kernels
 * and K blocking, whatever the thread count): bitwise the same result, which
 * keeps a training forward equal to the runtime's im2col + sgemm.
 * A row-major, lda >= K; seg >= 1; N a multiple of seg (whole output rows: the
 * in-place kernels load whole 8- or 16-float runs of a row). With AVX-512 and
 * seg % 16 == 0, or AVX2 with seg % 8 == 0 and M <= 64 (APB_SGEMM_IND=0: never),
 * the kernel reads the image rows in place; otherwise panels are gathered. */
void apb_sgemm_conv(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    const long *boff, int seg, long segld, float beta, float *C, int ldc);
/* The same for nb images (B + b*sb, C + b*sc) and one A, which is packed once. */
void apb_sgemm_conv_batch(int nb, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, long sb, const long *boff, int seg, long segld,
                          float beta, float *C, long sc, int ldc);
/* The same values, with C written by streaming stores where the kernel can (AVX-512
 * in-place path, beta == 0, 64-byte aligned tiles): for a large C that is read
 * back only later, by another pass (a training step's activations), it saves the
 * read of every line before it is overwritten. */
void apb_sgemm_conv_batch_stream(int nb, int M, int N, int K, float alpha, const float *A,
                                 int lda, const float *B, long sb, const long *boff, int seg,
                                 long segld, float beta, float *C, long sc, int ldc);

/* Naive triple loop, double accumulation: the reference every kernel is tested against. */
void apb_sgemm_ref(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
