/* vec.h - small dense vector helpers for layers and optimizers.
 *
 * Plain C loops the compiler vectorizes at the baseline ISA; they exist so layer
 * code reads as math and every layer does these loops the same way. Lengths are
 * long (tensors can exceed 2^31 elements in total across a batch). Pointers may
 * alias only where stated. Reductions (dot, sum) use 8 independent float partial
 * sums combined in double: deterministic for a given n, and closer to the exact
 * value than one running float sum.
 */
#ifndef APB_VEC_H
#define APB_VEC_H

/* y[n] += a * x[n] */
void apb_vec_axpy(long n, float a, const float *x, float *y);
/* y[n] = a * x[n] + b * y[n]; b == 0 never reads y */
void apb_vec_axpby(long n, float a, const float *x, float b, float *y);
/* x[n] *= a */
void apb_vec_scale(long n, float a, float *x);
/* x[n] = v */
void apb_vec_set(long n, float v, float *x);
/* z[n] = x[n] + y[n] (z may be x or y) */
void apb_vec_add(long n, const float *x, const float *y, float *z);
/* z[n] = x[n] * y[n] (z may be x or y) */
void apb_vec_mul(long n, const float *x, const float *y, float *z);
/* sum_i x[i] * y[i] */
float apb_vec_dot(long n, const float *x, const float *y);
/* sum_i x[i] */
float apb_vec_sum(long n, const float *x);

#endif
