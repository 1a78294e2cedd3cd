/* winograd_levels.h - the per-level copies of winograd.c's tile transforms
 * (kernels/winograd_body.h), internal to winograd*.c: portable C, AVX2 and
 * AVX-512 (see winograd.c). */
#ifndef APB_WINOGRAD_LEVELS_H
#define APB_WINOGRAD_LEVELS_H

#include <stddef.h>

typedef struct {
    void (*weights_row)(int m, int M, int C, const float *w, int flip, float *U, size_t mc);
    void (*split_in)(const float *x0, int H, int W, int th, float *xp, float *D, size_t ds, long t0);
    void (*xform_in)(const float *D, size_t ds, size_t T, float *V, size_t vs);
    void (*xform_out)(const float *P, size_t ps, size_t T, float *Q, size_t qs);
    void (*scatter_out)(const float *Q, size_t qs, long t0, int H, int W, int th, int acc, float *y0);
    void (*split_grad)(const float *dy0, int H, int W, int th, float *xp, float *D, size_t ds, long t0);
    void (*xform_grad)(const float *D, size_t ds, size_t T, float *U, size_t us);
    void (*dw_output_row)(const float *S, size_t mc, int C, int m, float *dw);
} wg_fns;

#define APB_WG_DECLARE(sfx)                                                                         \
    void apb_wg_weights_row_##sfx(int m, int M, int C, const float *w, int flip, float *U, size_t mc); \
    void apb_wg_split_in_##sfx(const float *x0, int H, int W, int th, float *xp, float *D, size_t ds, \
                               long t0);                                                           \
    void apb_wg_xform_in_##sfx(const float *D, size_t ds, size_t T, float *V, size_t vs);          \
    void apb_wg_xform_out_##sfx(const float *P, size_t ps, size_t T, float *Q, size_t qs);         \
    void apb_wg_scatter_out_##sfx(const float *Q, size_t qs, long t0, int H, int W, int th, int acc, \
                                  float *y0);                                                      \
    void apb_wg_split_grad_##sfx(const float *dy0, int H, int W, int th, float *xp, float *D,      \
                                 size_t ds, long t0);                                              \
    void apb_wg_xform_grad_##sfx(const float *D, size_t ds, size_t T, float *U, size_t us);        \
    void apb_wg_dw_output_row_##sfx(const float *S, size_t mc, int C, int m, float *dw);
APB_WG_DECLARE(c)
APB_WG_DECLARE(avx2)
APB_WG_DECLARE(avx512)
#undef APB_WG_DECLARE

#define APB_WG_TABLE(sfx)                                                                          \
    {apb_wg_weights_row_##sfx, apb_wg_split_in_##sfx,    apb_wg_xform_in_##sfx,                   \
     apb_wg_xform_out_##sfx,   apb_wg_scatter_out_##sfx, apb_wg_split_grad_##sfx,                 \
     apb_wg_xform_grad_##sfx,  apb_wg_dw_output_row_##sfx}

#endif
