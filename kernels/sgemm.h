/* sgemm.h - single-precision matrix multiply, row-major.
 *
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]
 *
 * op(A) = A (lda >= K) or A^T (transa: A stored [K,M], lda >= M); likewise B
 * (B stored [K,N], ldb >= N, or transb: [N,K], ldb >= K). Contract: beta == 0
 * never reads C (it may hold NaN); any M, N, K >= 0; no alignment required.
 * apb_sgemm() is the driver (packing, cache blocking, OpenMP over macro-tiles,
 * ISA chosen by apb_isa_active()); apb_sgemm_ref() is the specification.
 */
#ifndef APB_SGEMM_H
#define APB_SGEMM_H

void apb_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Naive triple loop, double accumulation: the reference every kernel is tested against. */
void apb_sgemm_ref(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
