/* sgemm_internal.h - private contract between the sgemm driver (sgemm.c) and its
 * register-blocked micro-kernels (sgemm_avx2.c, sgemm_avx512.c, portable one in sgemm.c)
 * and convolution weight-gradient tiles (sgemm_avx512.c, sgemm_dw3_avx2.c).
 *
 * Packed layouts (written by the driver, read by the kernels):
 *   pa[kc][MR]  one micro-panel of op(A): for each k, MR consecutive rows (zero padded)
 *   pb[kc][NR]  one micro-panel of op(B): for each k, NR consecutive columns (zero padded)
 *               at row stride ldpb: NR when packed, or ldb when a full-width panel of
 *               a non-transposed B is read in place (small M, see sgemm.c)
 * A micro-kernel computes, for the mr x nr top-left part of the tile (mr <= MR, nr <= NR):
 *   C[i, j] = alpha * sum_k pa[k][i] * pb[k * ldpb + j] + beta * C[i, j]  (row stride ldc)
 * and never reads C when beta == 0, never touches C outside mr x nr, and needs no
 * alignment of C. pa/pb are 64-byte aligned by the driver, but kernels use unaligned loads.
 */
#ifndef APB_SGEMM_INTERNAL_H
#define APB_SGEMM_INTERNAL_H

typedef void (*apb_sgemm_kernel_fn)(int kc, const float *pa, const float *pb, long ldpb, float *c,
                                    long ldc, float alpha, float beta, int mr, int nr);

/* Packs rows [0,mr) x columns [0,kc) of a row-major block (row stride lda) into
 * pa[kc][MR] (transposing), zero-padding rows mr..MR-1. */
typedef void (*apb_sgemm_pack_t_fn)(const float *src, long lda, int mr, int kc, int MR,
                                    float *dst);

/* Register blocking and cache blocking for one ISA level. */
typedef struct {
    int mr, nr;              /* micro-tile */
    int kc;                  /* K block: an A micro-panel (mr x kc) stays in L1 */
    int mc;                  /* M block of packed A (streamed) */
    int nc;                  /* N block: the packed B block (kc x nc) stays in L2 */
    apb_sgemm_kernel_fn kernel;
    apb_sgemm_pack_t_fn pack_t; /* fast transposing pack, or NULL for the portable one */
} apb_sgemm_kinfo;

void apb_sgemm_kernel_avx2_6x16(int kc, const float *pa, const float *pb, long ldpb,
                                float *c, long ldc, float alpha, float beta, int mr, int nr);
void apb_sgemm_pack_t_avx2(const float *src, long lda, int mr, int kc, int MR, float *dst);
void apb_sgemm_kernel_avx512_12x32(int kc, const float *pa, const float *pb, long ldpb, float *c,
                                   long ldc, float alpha, float beta, int mr, int nr);
void apb_sgemm_kernel_avx512_8x32(int kc, const float *pa, const float *pb, long ldpb, float *c,
                                  long ldc, float alpha, float beta, int mr, int nr);
/* Indirect-B micro-kernels: like the kernel above, with B row k given as two
 * NR/2-float halves at b0 + boff[k] and b1 + boff[k] (columns 0..NR/2-1 and
 * NR/2..NR-1 of the tile; b1 may equal b0 when nr <= NR/2). Same arithmetic, so
 * the same results. AVX-512: NR = 32; AVX2: NR = 16. */
typedef void (*apb_sgemm_ikernel_fn)(int kc, const float *pa, const float *b0, const float *b1,
                                     const long *boff, float *c, long ldc, float alpha,
                                     float beta, int mr, int nr);
void apb_sgemm_ikernel_avx2_6x16(int kc, const float *pa, const float *b0, const float *b1,
                                 const long *boff, float *c, long ldc, float alpha, float beta,
                                 int mr, int nr);
void apb_sgemm_ikernel_avx512_12x32(int kc, const float *pa, const float *b0, const float *b1,
                                    const long *boff, float *c, long ldc, float alpha, float beta,
                                    int mr, int nr);
void apb_sgemm_ikernel_avx512_8x32(int kc, const float *pa, const float *b0, const float *b1,
                                   const long *boff, float *c, long ldc, float alpha, float beta,
                                   int mr, int nr);
/* The same, writing full beta == 0 tiles with streaming stores when C is 64-byte
 * aligned (apb_sgemm_conv_batch_stream); the values are the same. */
void apb_sgemm_ikernel_avx512_12x32_stream(int kc, const float *pa, const float *b0,
                                           const float *b1, const long *boff, float *c, long ldc,
                                           float alpha, float beta, int mr, int nr);
void apb_sgemm_ikernel_avx512_8x32_stream(int kc, const float *pa, const float *b0,
                                          const float *b1, const long *boff, float *c, long ldc,
                                          float alpha, float beta, int mr, int nr);
/* One 4 x 6 tile of apb_sgemm_nt_rows (mr <= 4 rows of A, nr <= 6 rows of B, row j
 * of B at B + boff[j]). */
void apb_sgemm_nt_tile_avx512(int K, int nb, float alpha, const float *A, long lda, long sa,
                              int mr, const float *B, const long *boff, long sb, int nr,
                              float *C, long ldc);
/* One tile of apb_sgemm_dw3: rows [0, nr) (nr <= 8, 4, 2, 2 for M = 16, 32, 48, 64)
 * of roff, all M, from the transposed gradient dyT_b[P][M] (M a multiple of 16). */
void apb_sgemm_dw3_tile_avx512(int M, int nr, int nb, int OH, int OW, const float *dyT, long sdy,
                               const float *X, const long *roff, long sx, long Wp, long t1,
                               long t2, float alpha, float *C, long ldc);
/* The same for a 3x3 stride-1 pad-1 conv read from the unpadded input (rows r of
 * the tile: channel offset coff[r], kernel row rkh[r]; zrow: >= W zeros). */
void apb_sgemm_dw3e_tile_avx512(int M, int nr, int nb, int H, int W, const float *dyT, long sdy,
                                const float *X, const long *coff, const int *rkh, long sx,
                                const float *zrow, float alpha, float *C, long ldc);
/* dst[p][m] = src[m][p] (M a multiple of 16, src row stride lds, dst row stride M). */
void apb_transpose16_avx512(int M, int P, const float *src, long lds, float *dst);
/* AVX2 (sgemm_dw3_avx2.c): one tile of apb_sgemm_dw3 is 16 channels by rows
 * [0, nr) (nr <= 2) of roff, from that channel block of the transposed gradient,
 * dyT_b[P][16] (dyT_b = dyT + b*sdy); C: the block's 16 rows. */
void apb_sgemm_dw3_tile_avx2(int nr, int nb, int OH, int OW, const float *dyT, long sdy,
                             const float *X, const long *roff, long sx, long Wp, long t1, long t2,
                             float alpha, float *C, long ldc);
/* The same for apb_sgemm_dw3_same, as apb_sgemm_dw3e_tile_avx512 (nr <= 2). */
void apb_sgemm_dw3e_tile_avx2(int nr, int nb, int H, int W, const float *dyT, long sdy,
                              const float *X, const long *coff, const int *rkh, long sx,
                              const float *zrow, float alpha, float *C, long ldc);
/* dst[m/16][p][m%16] = src[m][p]: channel blocks of 16 (M a multiple of 16). */
void apb_transpose16_avx2(int M, int P, const float *src, long lds, float *dst);

#endif
