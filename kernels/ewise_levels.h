/* ewise_levels.h - the per-level copies of ewise.h's functions (internal). */
#ifndef APB_EWISE_LEVELS_H
#define APB_EWISE_LEVELS_H

#include <stdint.h>

#define APB_EW_DECLARE(sfx)                                                                        \
    void apb_ew_post_##sfx(long n, const float *src, const float *add, int affine, float sc,      \
                           float sh, int act, float *dst);                                        \
    void apb_ew_add_act_##sfx(long n, const float *a, const float *b, int act, float *dst);       \
    void apb_ew_post2_##sfx(long n, const float *src, const float *add, int affine, float sc,     \
                            float sh, int act, const float *add2, int act2, float *dst);          \
    void apb_ew_sign_planes_##sfx(const float *x, int H, int W, int S, int P, int Hq, int Wq,   \
                                  int8_t *out);                                                 \
    void apb_ew_dot_int_##sfx(long n, int32_t *a, int32_t base, const int32_t *ct);               \
    float apb_ew_absmax_##sfx(long n, const float *x);                                            \
    void apb_ew_dot_float_##sfx(long n, const int32_t *a, int32_t base, const int32_t *ct,        \
                                const int32_t *cc, float sc, float bi, float *y);                 \
    void apb_ew_int_float_##sfx(long n, const int32_t *a, float sc, float bi, float *y);         \
    void apb_ew_pool_row_##sfx(int k, int s, int p, int H, int W, int OW, int mx, const float *x, \
                               int oh, float *y, float *ph, int lp, int off, float *acc);
void apb_ew_maxpool3s2_avx512(int H, int W, const float *x, float *y);
void apb_ew_avgpool2s2_avx512(int H, int W, const float *x, float *y);
APB_EW_DECLARE(c)
APB_EW_DECLARE(avx2)
APB_EW_DECLARE(avx512)
#undef APB_EW_DECLARE

/* One level's copies, for the dispatch in ewise.c. */
typedef struct {
    void (*post)(long, const float *, const float *, int, float, float, int, float *);
    void (*add_act)(long, const float *, const float *, int, float *);
    void (*post2)(long, const float *, const float *, int, float, float, int, const float *, int, float *);
    void (*sign_planes)(const float *, int, int, int, int, int, int, int8_t *);
    void (*dot_int)(long, int32_t *, int32_t, const int32_t *);
    float (*absmax)(long, const float *);
    void (*dot_float)(long, const int32_t *, int32_t, const int32_t *, const int32_t *, float, float, float *);
    void (*int_float)(long, const int32_t *, float, float, float *);
    void (*pool_row)(int, int, int, int, int, int, int, const float *, int, float *, float *, int, int,
                     float *);
    const char *name;
} apb_ew_fns;
#define APB_EW_TABLE(sfx)                                                                          \
    {apb_ew_post_##sfx, apb_ew_add_act_##sfx, apb_ew_post2_##sfx, apb_ew_sign_planes_##sfx, apb_ew_dot_int_##sfx, apb_ew_absmax_##sfx, apb_ew_dot_float_##sfx,            \
     apb_ew_int_float_##sfx, apb_ew_pool_row_##sfx, #sfx}

#endif
