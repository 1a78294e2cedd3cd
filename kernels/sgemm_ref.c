/* sgemm_ref.c - the reference sgemm: plain loops, the specification. */
#include "sgemm.h"

void apb_sgemm_ref(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++) {
                float a = transa ? A[(long)k * lda + i] : A[(long)i * lda + k];
                float b = transb ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                acc += (double)a * b;
            }
            float r = alpha * (float)acc;
            C[(long)i * ldc + j] = beta == 0.0f ? r : r + beta * C[(long)i * ldc + j];
        }
}
