/* vec.c - dense vector helpers (see vec.h).
 *
 * Written as blocks of 8 lanes (load all lanes into a local, then store) so that
 * gcc -O2's cheap vectorizer turns each block into SIMD without run-time alias
 * checks or -O3, and exact aliasing (z == x) stays correct; scalar tails finish.
 */
#include "vec.h"

#define L 8

void apb_vec_axpy(long n, float a, const float *x, float *y)
{
    long i = 0;
    for (; i + L <= n; i += L) {
        float t[L];
        for (int l = 0; l < L; l++)
            t[l] = y[i + l] + a * x[i + l];
        for (int l = 0; l < L; l++)
            y[i + l] = t[l];
    }
    for (; i < n; i++)
        y[i] += a * x[i];
}

void apb_vec_axpby(long n, float a, const float *x, float b, float *y)
{
    long i = 0;
    if (b == 0.0f) {
        for (; i + L <= n; i += L) {
            float t[L];
            for (int l = 0; l < L; l++)
                t[l] = a * x[i + l];
            for (int l = 0; l < L; l++)
                y[i + l] = t[l];
        }
        for (; i < n; i++)
            y[i] = a * x[i];
        return;
    }
    for (; i + L <= n; i += L) {
        float t[L];
        for (int l = 0; l < L; l++)
            t[l] = a * x[i + l] + b * y[i + l];
        for (int l = 0; l < L; l++)
            y[i + l] = t[l];
    }
    for (; i < n; i++)
        y[i] = a * x[i] + b * y[i];
}

void apb_vec_scale(long n, float a, float *x)
{
    long i = 0;
    for (; i + L <= n; i += L)
        for (int l = 0; l < L; l++)
            x[i + l] *= a;
    for (; i < n; i++)
        x[i] *= a;
}

void apb_vec_set(long n, float v, float *x)
{
    for (long i = 0; i < n; i++)
        x[i] = v;
}

void apb_vec_add(long n, const float *x, const float *y, float *z)
{
    long i = 0;
    for (; i + L <= n; i += L) {
        float t[L];
        for (int l = 0; l < L; l++)
            t[l] = x[i + l] + y[i + l];
        for (int l = 0; l < L; l++)
            z[i + l] = t[l];
    }
    for (; i < n; i++)
        z[i] = x[i] + y[i];
}

void apb_vec_mul(long n, const float *x, const float *y, float *z)
{
    long i = 0;
    for (; i + L <= n; i += L) {
        float t[L];
        for (int l = 0; l < L; l++)
            t[l] = x[i + l] * y[i + l];
        for (int l = 0; l < L; l++)
            z[i + l] = t[l];
    }
    for (; i < n; i++)
        z[i] = x[i] * y[i];
}

/* 8 partial sums in a fixed order: vectorizes without reassociation (-ffast-math)
 * and gives the same result on every machine for a given n. */
float apb_vec_dot(long n, const float *x, const float *y)
{
    float p[L] = {0};
    long i = 0;
    for (; i + L <= n; i += L)
        for (int l = 0; l < L; l++)
            p[l] += x[i + l] * y[i + l];
    double s = 0;
    for (int l = 0; l < L; l++)
        s += p[l];
    for (; i < n; i++)
        s += (double)x[i] * y[i];
    return (float)s;
}

float apb_vec_sum(long n, const float *x)
{
    float p[L] = {0};
    long i = 0;
    for (; i + L <= n; i += L)
        for (int l = 0; l < L; l++)
            p[l] += x[i + l];
    double s = 0;
    for (int l = 0; l < L; l++)
        s += p[l];
    for (; i < n; i++)
        s += x[i];
    return (float)s;
}
