/* bgemm_ref.c - the specification of the binary GEMMs (apb_bgemm_ref) and the
 * portable micro-kernels the driver uses at APB_ISA_REF.
 *
 * apb_bgemm_ref evaluates the identities of bgemm.h one output at a time straight
 * from the row-major packed operands; every faster path must match it exactly.
 */
#include <string.h>

#include "bgemm.h"

static inline int popc(uint64_t x) { return __builtin_popcountll(x); }

const char *apb_bgemm_kind_name(apb_bgemm_kind kind)
{
    switch (kind) {
    case APB_BGEMM_1X1: return "1x1";
    case APB_BGEMM_1X2: return "1x2";
    case APB_BGEMM_2X2: return "2x2";
    }
    return "?";
}

apb_status apb_bgemm_kind_parse(const char *s, apb_bgemm_kind *out)
{
    for (int k = 0; k < APB_BGEMM_KINDS; k++)
        if (!strcmp(s, apb_bgemm_kind_name((apb_bgemm_kind)k))) {
            *out = (apb_bgemm_kind)k;
            return APB_OK;
        }
    return apb_fail(APB_EINVAL, "unknown bgemm kind '%s' (expected 1x1, 1x2 or 2x2)", s);
}

apb_status apb_bgemm_ref(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                         const apb_bitmat *B, const apb_bitconv_pad *pad, int32_t *C, int ldc)
{
    int KW = apb_bits_words(K);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const uint64_t *a = A->sgn + (size_t)m * A->ld, *b = B->sgn + (size_t)n * B->ld;
            long dot = K;
            for (int j = 0; j < KW; j++) {
                uint64_t x = a[j] ^ b[j];
                if (kind == APB_BGEMM_1X1) {
                    dot -= 2 * popc(x);
                } else if (kind == APB_BGEMM_1X2) {
                    uint64_t g = B->mag[(size_t)n * B->ld + j];
                    dot += 2 * popc(g) - 2 * popc(x) - 4 * popc(g & x);
                } else {
                    uint64_t u = A->mag[(size_t)m * A->ld + j];
                    uint64_t v = B->mag[(size_t)n * B->ld + j];
                    dot += 2 * popc(u) + 2 * popc(v) + 4 * popc(u & v) - 2 * popc(x) -
                           4 * popc(x & (u ^ v)) - 16 * popc(x & u & v);
                }
            }
            if (pad)
                dot -= pad->corr[(size_t)pad->pattern[n] * pad->M + m];
            C[(size_t)m * ldc + n] = (int32_t)dot;
        }
    return APB_OK;
}

/* ---- portable micro-kernels (panel layout: bgemm.h) ---- */

static void kern_1x1(int mr, int np, int kc, const uint64_t *as, const uint64_t *am, int lda,
                     const uint64_t *bp, int32_t *acc, int ldacc)
{
    for (int r = 0; r < mr; r++)
        for (int p = 0; p < np; p++) {
            const uint64_t *b = bp + (size_t)p * kc * 8;
            int32_t s[8] = {0};
            for (int j = 0; j < kc; j++) {
                uint64_t a = as[(size_t)r * lda + j];
                for (int c = 0; c < 8; c++)
                    s[c] += popc(a ^ b[j * 8 + c]);
            }
            for (int c = 0; c < 8; c++)
                acc[r * ldacc + p * 8 + c] += s[c];
        }
}

static void kern_1x2(int mr, int np, int kc, const uint64_t *as, const uint64_t *am, int lda,
                     const uint64_t *bp, int32_t *acc, int ldacc)
{
    for (int r = 0; r < mr; r++)
        for (int p = 0; p < np; p++) {
            const uint64_t *b = bp + (size_t)p * kc * 16;
            int32_t s[8] = {0};
            for (int j = 0; j < kc; j++) {
                uint64_t a = as[(size_t)r * lda + j];
                for (int c = 0; c < 8; c++) {
                    uint64_t x = a ^ b[j * 16 + c];
                    s[c] += popc(x) + 2 * popc(x & b[j * 16 + 8 + c]);
                }
            }
            for (int c = 0; c < 8; c++)
                acc[r * ldacc + p * 8 + c] += s[c];
        }
}

static void kern_2x2(int mr, int np, int kc, const uint64_t *as, const uint64_t *am, int lda,
                     const uint64_t *bp, int32_t *acc, int ldacc)
{
    for (int r = 0; r < mr; r++)
        for (int p = 0; p < np; p++) {
            const uint64_t *b = bp + (size_t)p * kc * 16;
            int32_t s[8] = {0};
            for (int j = 0; j < kc; j++) {
                uint64_t a = as[(size_t)r * lda + j], u = am[(size_t)r * lda + j];
                for (int c = 0; c < 8; c++) {
                    uint64_t x = a ^ b[j * 16 + c], v = b[j * 16 + 8 + c];
                    s[c] += popc(x) + 2 * popc(x & (u ^ v)) + 8 * popc(x & u & v) -
                            2 * popc(u & v);
                }
            }
            for (int c = 0; c < 8; c++)
                acc[r * ldacc + p * 8 + c] += s[c];
        }
}

const apb_bgemm_kernels apb_bgemm_kernels_ref = {
    .fn = {kern_1x1, kern_1x2, kern_2x2},
    .mr = {4, 4, 4},
    .np = {1, 1, 1},
};
