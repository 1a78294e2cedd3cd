/* winograd.h - 3x3 stride-1 pad-1 convolution by Winograd's F(4x4, 3x3).
 *
 * Each 4x4 block of outputs ("tile") comes from the 6x6 input patch around it:
 *   Y = A^T [ sum_c (G g_c G^T) .* (B^T d_c B) ] A
 * so the 144 multiplies of a tile per (input, output channel) pair become 36,
 * done as 36 GEMMs over the tiles: M_xi[M, T] = U_xi[M, C] * V_xi[C, T]
 * (xi = one of the 36 positions of the transformed tile; matrices in winograd.c).
 * Training uses it for the forward, the input gradient and (by F(3x3, 4x4),
 * apb_wino_dw) the weight gradient of wide "same" convs (layers/op_conv2d.c);
 * the result differs from the direct product by rounding only (the transforms
 * scale by up to 8 and by 1/24: a few times the direct product's rounding,
 * tests/test_conv_paths.c). Eval mode keeps the direct product,
 * which the runtime reproduces bit for bit by default; APBRT_WINOGRAD=1 makes
 * the runtime use this for its fp32 convs of >= 128 channels (infer/apbrt_fast.c),
 * within rounding of the training graph, not bit for bit.
 */
#ifndef APB_WINOGRAD_H
#define APB_WINOGRAD_H

#include <stddef.h>

/* Whether training convs may use this path: on unless APB_WINOGRAD=0 is in the
 * environment or apb_wino_enable(0) was called (returns the previous setting). */
int apb_wino_enabled(void);
int apb_wino_enable(int on);
/* Floats of the transformed weights of M output x C input channels. */
size_t apb_wino_u_floats(int M, int C);
/* U[xi][m][c] = (G g G^T)[xi] with g the 3x3 kernel from output channel m to
 * input channel c of w: w[m][c][kh][kw] (flip = 0), or, for the input gradient of
 * a conv whose weight is w[C'][M'][3][3] = [c][m] here, w[c][m][2-kh][2-kw]
 * (flip = 1: the kernel transposed and rotated by 180 degrees). */
void apb_wino_weights(int M, int C, const float *w, int flip, float *U, int nthreads);
/* Scratch floats one thread needs for apb_wino_conv at this shape. */
size_t apb_wino_work_floats(int C, int M, int W);
/* y_n[M][H][W] = (or += when accumulate) the 3x3 stride-1 pad-1 correlation of
 * x_n[C][H][W] with the weights behind U, for n < N (x_n = x + n*sx, y_n = y +
 * n*sy). The tiles go in chunks of whole tile rows, fixed by the shape alone, one
 * thread per chunk (up to nthreads; work holds nthreads * apb_wino_work_floats),
 * so the result does not depend on the thread count. */
void apb_wino_conv(int N, int C, int H, int W, const float *x, long sx, int M, const float *U,
                   int accumulate, float *y, long sy, float *work, int nthreads);

/* The 36 matrices of U packed for the GEMMs once (apb_sgemm_apack, at the
 * active ISA level; pu: apb_wino_packed_floats(M, C) floats), then
 * apb_wino_conv_packed gives apb_wino_conv's results bit for bit without U: the
 * runtime keeps only the packed form of a layer's transformed weights. */
size_t apb_wino_packed_floats(int M, int C);
void apb_wino_pack(int M, int C, const float *U, float *pu, int nthreads);
void apb_wino_conv_packed(int N, int C, int H, int W, const float *x, long sx, int M,
                          const float *pu, int accumulate, float *y, long sy, float *work,
                          int nthreads);


/* The weight gradient of the same conv by F(3x3, 4x4): each 4x4 tile h of dy
 * and the 6x6 input patch d under it give that tile's 3x3 contribution as
 *   G^T [ (A h A^T) .* (B^T d B) ] G
 * (the forward's B^T, G and A, read the other way); summed over all tiles first,
 * as 36 GEMMs S_xi[M, C] += Ug_xi[M, T] * V_xi[C, T]^T over chunks of whole tile
 * rows, then transformed once: 36 instead of 144 multiplies per tile and channel pair.
 *   dw[m][c][kh][kw] += sum_n sum_{oh,ow} dy_n[m][oh][ow] * x_n[c][oh+kh-1][ow+kw-1]
 * (0 outside), x_n = x + n*sx ([C][H][W]), dy_n = dy + n*sdy ([M][H][W]).
 * The chunks are fixed by the shape and summed in order, each GEMM runs on one
 * thread (threads take whole xi), so the result does not depend on the thread
 * count. work: apb_wino_dw_work_floats(C, M, W, nthreads) floats. */
size_t apb_wino_dw_work_floats(int C, int M, int W, int nthreads);
void apb_wino_dw(int N, int C, int H, int W, const float *x, long sx, int M, const float *dy,
                 long sdy, float *dw, float *work, int nthreads);

#endif
