/* ewise_body.h - the loops of ewise.h, included once per ISA level with
 * EW(name) naming that level's copy (ewise.c, ewise_avx2.c, ewise_avx512.c).
 * No include guard: each including file compiles it once. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define EW_ACT(act, v) ((act) == APB_EW_RELU ? ((v) > 0.0f ? (v) : 0.0f)                            \
                        : (act) == APB_EW_HARDTANH ? ((v) < -1.0f ? -1.0f : ((v) > 1.0f ? 1.0f : (v))) \
                        : (v))

/* One branch-free loop per (add, affine, act, add2, act2) so each vectorizes:
 * v = src (+ add); v = sc * v + sh; v = act(v); then, for post2, v = act2(v + add2). */
#define EW_POST_LOOP(ADD, AFF, ACT, ADD2, ACT2)                                                   \
    do {                                                                                          \
        _Pragma("omp simd") for (long i = 0; i < n; i++)                                          \
        {                                                                                         \
            float v = src[i];                                                                     \
            if (ADD)                                                                              \
                v = v + add[i];                                                                   \
            if (AFF)                                                                              \
                v = sc * v + sh;                                                                  \
            v = EW_ACT(ACT, v);                                                                   \
            if (ADD2) {                                                                           \
                v = v + add2[i];                                                                  \
                v = EW_ACT(ACT2, v);                                                              \
            }                                                                                     \
            dst[i] = v;                                                                           \
        }                                                                                         \
    } while (0)
#define EW_POST_ACT2(ADD, AFF, ACT, ADD2)                                                         \
    do {                                                                                          \
        if (!(ADD2))                                                                              \
            EW_POST_LOOP(ADD, AFF, ACT, 0, APB_EW_NONE);                                          \
        else if (act2 == APB_EW_RELU)                                                             \
            EW_POST_LOOP(ADD, AFF, ACT, 1, APB_EW_RELU);                                          \
        else if (act2 == APB_EW_HARDTANH)                                                         \
            EW_POST_LOOP(ADD, AFF, ACT, 1, APB_EW_HARDTANH);                                      \
        else                                                                                      \
            EW_POST_LOOP(ADD, AFF, ACT, 1, APB_EW_NONE);                                          \
    } while (0)
#define EW_POST_ACTS(ADD, AFF, ADD2)                                                              \
    do {                                                                                          \
        if (act == APB_EW_RELU)                                                                   \
            EW_POST_ACT2(ADD, AFF, APB_EW_RELU, ADD2);                                            \
        else if (act == APB_EW_HARDTANH)                                                          \
            EW_POST_ACT2(ADD, AFF, APB_EW_HARDTANH, ADD2);                                        \
        else                                                                                      \
            EW_POST_ACT2(ADD, AFF, APB_EW_NONE, ADD2);                                            \
    } while (0)
#define EW_POST_BODY(ADD2)                                                                        \
    do {                                                                                          \
        if (add && affine)                                                                        \
            EW_POST_ACTS(1, 1, ADD2);                                                             \
        else if (add)                                                                             \
            EW_POST_ACTS(1, 0, ADD2);                                                             \
        else if (affine)                                                                          \
            EW_POST_ACTS(0, 1, ADD2);                                                             \
        else                                                                                      \
            EW_POST_ACTS(0, 0, ADD2);                                                             \
    } while (0)

void EW(post)(long n, const float *src, const float *add, int affine, float sc, float sh, int act,
              float *dst)
{
    const float *add2 = NULL; /* no second add: its loops are never taken */
    int act2 = APB_EW_NONE;
    EW_POST_BODY(0);
}

/* post, then a second add and activation in the same loop (a conv's fused
 * residual add): per element the operations of EW(post) followed by EW(add_act) */
void EW(post2)(long n, const float *src, const float *add, int affine, float sc, float sh, int act,
               const float *add2, int act2, float *dst)
{
    EW_POST_BODY(1);
}

void EW(add_act)(long n, const float *a, const float *b, int act, float *dst)
{
    EW(post)(n, a, b, 0, 1.0f, 0.0f, act, dst);
}

/* d[0 .. n) = sgn(src[j * S]) as bytes (sgn(0) = +1, NaN -> -1). */
static void sign_row_portable(const float *restrict src, long n, int S, int8_t *restrict d)
{
    if (S == 1) {
#pragma omp simd
        for (long j = 0; j < n; j++)
            d[j] = src[j] >= 0.0f ? (int8_t)1 : (int8_t)-1;
    } else {
        for (long j = 0; j < n; j++)
            d[j] = src[j * S] >= 0.0f ? (int8_t)1 : (int8_t)-1;
    }
}

/* ewise.h's sign planes with a level's row function for the valid run of each
 * phase row (the padding around it written here). */
static inline void sign_planes_rows(const float *x, int H, int W, int S, int P, int Hq, int Wq,
                                    int8_t *out, void (*row_fn)(const float *, long, int, int8_t *))
{
    long plane = (long)Hq * Wq;
    for (int a = 0; a < S; a++)
        for (int b = 0; b < S; b++) {
            int8_t *pl = out + (long)(a * S + b) * plane;
            int jlo, jhi;
            apb_phase_cols(W, S, P, b, Wq, &jlo, &jhi);
            for (int i = 0; i < Hq; i++) {
                int8_t *d = pl + (long)i * Wq;
                int row = i * S + a - P;
                if (row < 0 || row >= H) {
                    memset(d, 0, (size_t)Wq);
                    continue;
                }
                for (int j = 0; j < jlo; j++)
                    d[j] = 0;
                for (int j = jhi; j < Wq; j++)
                    d[j] = 0;
                row_fn(x + (long)row * W + (long)jlo * S + b - P, jhi - jlo, S, d + jlo);
            }
        }
}

#ifndef EW_OWN_SIGN_PLANES /* else the level has its own (rows of strides 1 and 2) */
void EW(sign_planes)(const float *x, int H, int W, int S, int P, int Hq, int Wq, int8_t *out)
{
    sign_planes_rows(x, H, W, S, P, Hq, Wq, out, sign_row_portable);
}
#endif

float EW(absmax)(long n, const float *restrict x)
{
    float mx = 0.0f;
#pragma omp simd reduction(max : mx)
    for (long i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        mx = a > mx ? a : mx;
    }
    return mx;
}

void EW(dot_int)(long n, int32_t *restrict a, int32_t base, const int32_t *restrict ct)
{
    if (ct) {
#pragma omp simd
        for (long i = 0; i < n; i++)
            a[i] = base - 2 * a[i] + ct[i];
    } else {
#pragma omp simd
        for (long i = 0; i < n; i++)
            a[i] = base - 2 * a[i];
    }
}

#define EW_DOT_FLOAT_LOOP(CT, CC)                                                                 \
    do {                                                                                          \
        _Pragma("omp simd") for (long i = 0; i < n; i++)                                          \
        {                                                                                         \
            int32_t d = base - 2 * a[i];                                                          \
            if (CT)                                                                               \
                d = d + ct[i];                                                                    \
            if (CC)                                                                               \
                d = d - cc[i];                                                                    \
            y[i] = sc * (float)d + bi;                                                            \
        }                                                                                         \
    } while (0)

void EW(dot_float)(long n, const int32_t *restrict a, int32_t base, const int32_t *restrict ct,
                   const int32_t *restrict cc, float sc, float bi, float *restrict y)
{
    if (ct && cc)
        EW_DOT_FLOAT_LOOP(1, 1);
    else if (ct)
        EW_DOT_FLOAT_LOOP(1, 0);
    else if (cc)
        EW_DOT_FLOAT_LOOP(0, 1);
    else
        EW_DOT_FLOAT_LOOP(0, 0);
}

void EW(int_float)(long n, const int32_t *restrict a, float sc, float bi, float *restrict y)
{
#pragma omp simd
    for (long i = 0; i < n; i++)
        y[i] = sc * (float)a[i] + bi;
}

void EW(pool_row)(int k, int s, int p, int H, int W, int OW, int mx, const float *x, int oh,
                  float *y, float *ph, int lp, int off, float *acc)
{
    float pv = mx ? -INFINITY : 0.0f;
    for (int ow = 0; ow < OW; ow++)
        acc[ow] = pv;
    int h0 = oh * s - p;
    for (int i = h0 < 0 ? 0 : h0; i < h0 + k && i < H; i++) {
        const float *xr = x + (long)i * W;
        for (int b = 0; b < s; b++) {
            /* valid t: 0 <= (t - off)*s + b < W */
            int tlo = off, thi = off + (W - 1 - b) / s + 1;
            thi = W - 1 - b < 0 ? tlo : (thi < lp ? thi : lp);
            float *d = ph + b * lp;
            for (int t = 0; t < tlo; t++)
                d[t] = pv;
            if (s == 1) {
                memcpy(d + tlo, xr + b, (size_t)(thi - tlo) * sizeof *d);
            } else if (s == 2) { /* the stem's pool: a constant stride vectorizes */
                const float *restrict xs = xr + b;
                float *restrict dd = d + tlo;
#pragma omp simd
                for (int t = 0; t < thi - tlo; t++)
                    dd[t] = xs[2 * t];
            } else {
                const float *xs = xr + b;
                for (int t = tlo; t < thi; t++)
                    d[t] = xs[(long)(t - tlo) * s];
            }
            for (int t = thi; t < lp; t++)
                d[t] = pv;
        }
        for (int kw = 0; kw < k; kw++) {
            int dd = kw - p, sh = dd >= 0 ? dd / s : -((-dd + s - 1) / s), b = dd - sh * s;
            const float *src = ph + b * lp + off + sh;
            if (mx) {
#pragma omp simd
                for (int ow = 0; ow < OW; ow++)
                    acc[ow] = src[ow] > acc[ow] ? src[ow] : acc[ow];
            } else {
#pragma omp simd
                for (int ow = 0; ow < OW; ow++)
                    acc[ow] += src[ow];
            }
        }
    }
    if (mx) {
        memcpy(y, acc, (size_t)OW * sizeof *y);
    } else {
        float inv = 1.0f / (float)(k * k);
#pragma omp simd
        for (int ow = 0; ow < OW; ow++)
            y[ow] = acc[ow] * inv;
    }
}

#undef EW_ACT
#undef EW_POST_LOOP
#undef EW_POST_ACTS
