/* im2col.h - convolution lowering to matrix multiply.
 *
 * For one image x[C,H,W], a KHxKW kernel with stride S and zero padding P:
 *   OH = (H + 2P - KH)/S + 1, OW = (W + 2P - KW)/S + 1
 *   col[(c*KH + kh)*KW + kw, oh*OW + ow] = x[c, oh*S - P + kh, ow*S - P + kw] (0 outside)
 * col2im is the adjoint: it ACCUMULATES (+=) col back into dx[C,H,W].
 */
#ifndef APB_IM2COL_H
#define APB_IM2COL_H

void apb_im2col(const float *x, int C, int H, int W, int KH, int KW, int stride, int pad,
                float *col);
void apb_col2im(const float *col, int C, int H, int W, int KH, int KW, int stride, int pad,
                float *dx);

#endif
