/* ewise.c - ewise.h's loops at the baseline ISA, and the dispatch by
 * apb_isa_active() (APB_ISA forces a level). */
#include "ewise.h"

#include "cpu.h"
#include "ewise_levels.h"

#define EW(name) apb_ew_##name##_c
#include "ewise_body.h"

void apb_ew_post(long n, const float *src, const float *add, int affine, float sc, float sh, int act,
                 float *dst)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: apb_ew_post_avx512(n, src, add, affine, sc, sh, act, dst); return;
    case APB_ISA_AVX2: apb_ew_post_avx2(n, src, add, affine, sc, sh, act, dst); return;
    default: apb_ew_post_c(n, src, add, affine, sc, sh, act, dst);
    }
}

void apb_ew_add_act(long n, const float *a, const float *b, int act, float *dst)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: apb_ew_add_act_avx512(n, a, b, act, dst); return;
    case APB_ISA_AVX2: apb_ew_add_act_avx2(n, a, b, act, dst); return;
    default: apb_ew_add_act_c(n, a, b, act, dst);
    }
}

void apb_ew_sign(long n, const float *x, int stride, float *q)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: apb_ew_sign_avx512(n, x, stride, q); return;
    case APB_ISA_AVX2: apb_ew_sign_avx2(n, x, stride, q); return;
    default: apb_ew_sign_c(n, x, stride, q);
    }
}

void apb_ew_dot_int(long n, int32_t *a, int32_t base, const int32_t *ct)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: apb_ew_dot_int_avx512(n, a, base, ct); return;
    case APB_ISA_AVX2: apb_ew_dot_int_avx2(n, a, base, ct); return;
    default: apb_ew_dot_int_c(n, a, base, ct);
    }
}

void apb_ew_int_float(long n, const int32_t *a, float sc, float bi, float *y)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: apb_ew_int_float_avx512(n, a, sc, bi, y); return;
    case APB_ISA_AVX2: apb_ew_int_float_avx2(n, a, sc, bi, y); return;
    default: apb_ew_int_float_c(n, a, sc, bi, y);
    }
}

void apb_ew_pool_row(int k, int s, int p, int H, int W, int OW, int mx, const float *x, int oh,
                     float *y, float *ph, int lp, int off, float *acc)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: apb_ew_pool_row_avx512(k, s, p, H, W, OW, mx, x, oh, y, ph, lp, off, acc); return;
    case APB_ISA_AVX2: apb_ew_pool_row_avx2(k, s, p, H, W, OW, mx, x, oh, y, ph, lp, off, acc); return;
    default: apb_ew_pool_row_c(k, s, p, H, W, OW, mx, x, oh, y, ph, lp, off, acc);
    }
}

int apb_ew_has_maxpool3s2(void) { return apb_isa_active() == APB_ISA_AVX512; }

void apb_ew_maxpool3s2(int H, int W, const float *x, float *y) { apb_ew_maxpool3s2_avx512(H, W, x, y); }
void apb_ew_avgpool2s2(int H, int W, const float *x, float *y) { apb_ew_avgpool2s2_avx512(H, W, x, y); }

const char *apb_ew_level(void)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: return "avx512";
    case APB_ISA_AVX2: return "avx2";
    default: return "c";
    }
}
