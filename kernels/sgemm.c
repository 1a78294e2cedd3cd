/* sgemm.c - sgemm driver. Placeholder until the blocked kernels land: calls the reference. */
#include "sgemm.h"

void apb_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A,
               int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    apb_sgemm_ref(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
