/* i8gemm_ref.c - portable micro-kernel of the binary x 8-bit GEMM and the
 * per-element specification (i8gemm.h). */
#include "i8gemm.h"

static void kern_ref(int mr, int np, int K4, const int8_t *w, long ldw, const uint8_t *b,
                     long pstride, const long *boff, int32_t *acc, int ldacc)
{
    for (int r = 0; r < mr; r++)
        for (int p = 0; p < np; p++)
            for (int j = 0; j < APB_I8_PANEL; j++) {
                const int8_t *wr = w + r * ldw;
                const uint8_t *bc = b + p * pstride + 4 * j;
                int32_t s = 0;
                for (int k4 = 0; k4 < K4; k4++) {
                    long o = boff ? boff[k4] : (long)k4 * 4 * APB_I8_PANEL;
                    for (int t = 0; t < 4; t++)
                        s += (int32_t)wr[4 * k4 + t] * (int32_t)bc[o + t];
                }
                acc[r * ldacc + p * APB_I8_PANEL + j] = s;
            }
}

const apb_i8_kernels apb_i8_kernels_ref = {kern_ref, 4, 1, "ref", 1};

void apb_i8gemm_ref(int M, int N, int K4, const int8_t *W, long ldw, const uint8_t *B, int32_t *C,
                    long ldc)
{
    long pstride = (long)K4 * 4 * APB_I8_PANEL;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const uint8_t *bc = B + (n / APB_I8_PANEL) * pstride + 4 * (n % APB_I8_PANEL);
            int32_t s = 0;
            for (int k = 0; k < 4 * K4; k++)
                s += (int32_t)W[m * ldw + k] * (int32_t)bc[(k / 4) * 4 * APB_I8_PANEL + k % 4];
            C[m * ldc + n] = s;
        }
}
