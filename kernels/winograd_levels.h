/* winograd_levels.h - the per-level copies of winograd.c's row transforms
 * (kernels/winograd_body.h), internal to winograd*.c: portable C and AVX2 (the
 * AVX2 copy also serves AVX-512, see winograd.c). */
#ifndef APB_WINOGRAD_LEVELS_H
#define APB_WINOGRAD_LEVELS_H

#include <stddef.h>

typedef struct {
    void (*weights_row)(int m, int M, int C, const float *w, int flip, float *U, size_t mc);
    void (*input_row)(const float *x0, int H, int W, int th, float *rows, float *V, size_t cs, long t0);
    void (*output_row)(const float *P, size_t ps, long t0, int H, int W, int th, int acc, float *y0,
                       float *rows);
    void (*grad_row)(const float *dy0, int H, int W, int th, float *rows, float *U, size_t us, long t0);
    void (*dw_output_row)(const float *S, size_t mc, int C, int m, float *dw);
} wg_fns;

#define APB_WG_DECLARE(sfx)                                                                         \
    void apb_wg_weights_row_##sfx(int m, int M, int C, const float *w, int flip, float *U, size_t mc); \
    void apb_wg_input_row_##sfx(const float *x0, int H, int W, int th, float *rows, float *V,      \
                                size_t cs, long t0);                                               \
    void apb_wg_output_row_##sfx(const float *P, size_t ps, long t0, int H, int W, int th, int acc, \
                                 float *y0, float *rows);                                          \
    void apb_wg_grad_row_##sfx(const float *dy0, int H, int W, int th, float *rows, float *U,      \
                               size_t us, long t0);                                                \
    void apb_wg_dw_output_row_##sfx(const float *S, size_t mc, int C, int m, float *dw);
APB_WG_DECLARE(c)
APB_WG_DECLARE(avx2)
#undef APB_WG_DECLARE

#define APB_WG_TABLE(sfx)                                                                          \
    {apb_wg_weights_row_##sfx, apb_wg_input_row_##sfx, apb_wg_output_row_##sfx,                  \
     apb_wg_grad_row_##sfx, apb_wg_dw_output_row_##sfx}

#endif
