/* ewise.c - ewise.h's loops at the baseline ISA, and the dispatch by
 * apb_isa_active() (APB_ISA forces a level). */
#include "ewise.h"

#include "cpu.h"
#include "ewise_levels.h"

#define EW(name) apb_ew_##name##_c
#include "ewise_body.h"

/* The copies at the active ISA level. */
static const apb_ew_fns *ew(void)
{
    static const apb_ew_fns c = APB_EW_TABLE(c), avx2 = APB_EW_TABLE(avx2), avx512 = APB_EW_TABLE(avx512);
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: return &avx512;
    case APB_ISA_AVX2: return &avx2;
    default: return &c;
    }
}

void apb_ew_post(long n, const float *src, const float *add, int affine, float sc, float sh, int act,
                 float *dst)
{
    ew()->post(n, src, add, affine, sc, sh, act, dst);
}

void apb_ew_post2(long n, const float *src, const float *add, int affine, float sc, float sh, int act,
                  const float *add2, int act2, float *dst)
{
    ew()->post2(n, src, add, affine, sc, sh, act, add2, act2, dst);
}

void apb_ew_add_act(long n, const float *a, const float *b, int act, float *dst) { ew()->add_act(n, a, b, act, dst); }

void apb_ew_sign_planes(const float *x, int H, int W, int S, int P, int Hq, int Wq, int8_t *out)
{
    ew()->sign_planes(x, H, W, S, P, Hq, Wq, out);
}

void apb_ew_dot_float(long n, const int32_t *a, int32_t base, const int32_t *ct, const int32_t *cc,
                      float sc, float bi, float *y)
{
    ew()->dot_float(n, a, base, ct, cc, sc, bi, y);
}

float apb_ew_absmax(long n, const float *x) { return ew()->absmax(n, x); }

void apb_ew_dot_int(long n, int32_t *a, int32_t base, const int32_t *ct) { ew()->dot_int(n, a, base, ct); }

void apb_ew_int_float(long n, const int32_t *a, float sc, float bi, float *y) { ew()->int_float(n, a, sc, bi, y); }

void apb_ew_pool_row(int k, int s, int p, int H, int W, int OW, int mx, const float *x, int oh,
                     float *y, float *ph, int lp, int off, float *acc)
{
    ew()->pool_row(k, s, p, H, W, OW, mx, x, oh, y, ph, lp, off, acc);
}

int apb_ew_has_pool_kernels(void) { return apb_isa_active() == APB_ISA_AVX512; }

void apb_ew_maxpool3s2(int H, int W, const float *x, float *y) { apb_ew_maxpool3s2_avx512(H, W, x, y); }
void apb_ew_avgpool2s2(int H, int W, const float *x, float *y) { apb_ew_avgpool2s2_avx512(H, W, x, y); }

const char *apb_ew_level(void) { return ew()->name; }
