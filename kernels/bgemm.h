/* bgemm.h - bit-level GEMMs over packed operands (the dense part of an APB layer).
 *
 * WHY: an APB weight is alpha*sgn(W) + R. The sign part times a binary or 2-bit
 * activation is an exact integer dot product of small levels, computed with
 * XOR/AND + popcount on 64-bit words (apb-method.md section 5).
 *
 * OPERANDS (layout and encodings: bitpack.h)
 *   A = weights, packed [M, lda] words (binary: sgn; 2-bit: sgn + mag)
 *   B = activations, packed [N, ldb] words, one row per output pixel
 *   Both pack the same K values per row; bits k >= K must be 0 in every plane.
 *   C[m, n] = dot(level values of A row m, level values of B row n), exact int32.
 *
 * KINDS, RESULT UNITS AND IDENTITIES (per output, over KW words; "pop" = popcount)
 *   1x1  binary weights, binary activations; unit 1:
 *          dot = K - 2*pop(a ^ b)
 *   1x2  binary weights w, 2-bit activations (sgn s, mag g); unit s_act/2:
 *          x = w ^ s,  St = pop(x),  S1 = pop(g & x),  mc = pop(g)
 *          dot = K + 2*mc - 2*St - 4*S1
 *        (per position: (1-2x)(1+2g) = 1 + 2g - 2x - 4xg). This is the paper's
 *        K + 2*mc - 6*S1 - 2*S2 with S2 = pop(~g & x) = St - S1.
 *   2x2  2-bit weights (sgn a, mag u), 2-bit activations (sgn b, mag v);
 *        unit s_w/2 * s_act/2:
 *          x = a ^ b, X = pop(x), T1 = pop(x & (u ^ v)), T2 = pop(x & u & v),
 *          P = pop(u & v), Mu = pop(u), Mv = pop(v)
 *          dot = K + 2*Mu + 2*Mv + 4*P - 2*X - 4*T1 - 16*T2
 *        (per position the magnitude product c = (1+2u)(1+2v) is 1, 3 or 9, whose
 *        bits are 1, u^v and 8*(u&v); dot = sum c*(1-2x)).
 *   A position whose bits are all 0 on both sides adds 0 to every popcount, so
 *   tail padding (bits >= K) never changes a result; K itself is the true K.
 *   Real value of a result = unit * dot, e.g. 1x2 with weight scale alpha and
 *   activation step s: y = alpha * s/2 * dot.
 *
 * CONVOLUTION PADDING: pass the apb_bitconv_pad built for the layer (bitpack.h);
 *   the result for pixel n, channel m becomes dot - corr[pattern[n]*M + m],
 *   which equals the convolution with zero padding. NULL = no correction.
 *
 * apb_bgemm() is the driver: B is repacked per cache block into 8-column
 * micro-panels, register-blocked micro-kernels chosen by apb_isa_active() from one
 * table (ref / AVX2 nibble-LUT / AVX-512 VPOPCNTQ + VPTERNLOGQ), OpenMP over
 * macro-tiles (apb_threads_get()); at AVX-512 with AMX usable the call goes to
 * the AMX-INT8 path instead (bits expanded to int8 tiles, below). Results are exact integers, identical for every
 * ISA level and thread count. Any M, N, K >= 0 (M or N == 0 is a no-op; K == 0
 * gives 0). No alignment required. apb_bgemm_ref() is the specification.
 */
#ifndef APB_BGEMM_H
#define APB_BGEMM_H

#include <stdint.h>

#include "bitpack.h"
#include "status.h"

typedef enum { APB_BGEMM_1X1 = 0, APB_BGEMM_1X2 = 1, APB_BGEMM_2X2 = 2 } apb_bgemm_kind;
#define APB_BGEMM_KINDS 3

const char *apb_bgemm_kind_name(apb_bgemm_kind kind); /* "1x1", "1x2", "2x2" */
apb_status apb_bgemm_kind_parse(const char *s, apb_bgemm_kind *out);

/* A view of a packed matrix (owns nothing). mag is NULL for a binary operand. */
typedef struct {
    const uint64_t *sgn; /* [rows, ld] */
    const uint64_t *mag; /* [rows, ld] or NULL */
    int ld;              /* row stride in words, >= apb_bits_words(K) */
} apb_bitmat;

/* Optional float epilogue: Y[m, n] = scale[m] * (dot - corr) + bias[m]. */
typedef struct {
    const float *scale;        /* [M] or NULL (1) */
    const float *bias;         /* [M] or NULL (0) */
    const apb_bitconv_pad *pad; /* or NULL (no correction); pad->M == M, pad->N == N */
    /* grain 0: tiles go to threads as they free up. grain g > 0 (one image):
     * the columns are rows of g (a conv's output rows), cut into units of
     * band_rows rows x band_m of the M rows (0: all), unit i = (row unit
     * i / ceil(M / band_m), M block i % ceil(M / band_m)), handed out by
     * apb_claim: so a caller that claims the same units in its next stage
     * finds its results in its own core's cache. The results are the same
     * either way. */
    int grain, band_rows, band_m;
    /* With grain: called by the thread that computed a unit, right after its
     * tiles, with the unit's M rows [m0, m1) and columns [c0, c1) of Y (still
     * in that core's cache): a caller's next stage fused per unit. Given, the
     * units are claimed on one thread too. */
    void (*unit_done)(void *ctx, int m0, int m1, int c0, int c1);
    void *ctx;
} apb_bgemm_epilogue;

/* The column block of the drivers' tiles (units of about this many columns
 * fill a tile). */
#define APB_BGEMM_NC 96

/* C[M, ldc] (int32, row-major) = dot(A row m, B row n) - pad correction.
 * A->mag is required for 2x2 and ignored otherwise; B->mag required for 1x2/2x2. */
apb_status apb_bgemm(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                     const apb_bitmat *B, const apb_bitconv_pad *pad, int32_t *C, int ldc);

/* Fused epilogue: Y[M, ldy] (float, row-major) = scale[m]*(dot - corr) + bias[m].
 * ep may be NULL. Y is only written (never read). */
apb_status apb_bgemm_f32(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                         const apb_bitmat *B, const apb_bgemm_epilogue *ep, float *Y, int ldy);

/* The specification: per-element loop over words with the identities above. */
apb_status apb_bgemm_ref(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                         const apb_bitmat *B, const apb_bitconv_pad *pad, int32_t *C, int ldc);

/* ---- indirect 1x1 over bit planes read in place ----
 * Binary weights x binary activations whose B operand is never packed: word j
 * of column q of image b is src[b * istride + boff[j] + q] (q < ncol; K's words
 * j < apb_bits_words(K) in A's order). For a conv, src holds the input's
 * channel-packed words in stride-phase planes, q is a "wide" output pixel and
 * boff[j] the offset of (tap, channel word) j, so consecutive columns are
 * consecutive words and no im2col exists. Reads reach src[b * istride + boff[j]
 * + q] for q up to ncol rounded up to 8 (a kernel panel): the caller leaves
 * that slack. pad->pattern has ncol entries (one image) and
 * pad->M == M. K is a whole number of words (K % 64 == 0: a conv of 64k
 * channels), or the words src gives for the last one have 0 past K. Y[m, b * ldimg + q] = scale[m] * (K - 2 pop(a ^ b) - corr) +
 * bias[m], exactly the packed call's values. Kernels: AVX-512 (VPOPCNTQ, 8 rows
 * x 24 columns) at that level, a portable loop below it. */
apb_status apb_bgemm_ind_f32(int M, int ncol, int nimg, int K, const apb_bitmat *A,
                             const uint64_t *src, long istride, const long *boff,
                             const apb_bgemm_epilogue *ep, float *Y, int ldy, long ldimg);
/* 1 where apb_bgemm_ind_f32 has its vector kernel: ISA level AVX-512, AMX not
 * taken (the runtime then uses the indirect path for binary convs). */
int apb_bgemm_ind_fast(void);

/* ---- internal: micro-kernel table (used by bgemm.c and the ISA files) ----
 *
 * The driver repacks a block of B (kc words x up to 8*np columns) into panels of
 * 8 columns: panel p starts at bp + p*kc*8*planes; word j of a panel holds
 * planes*8 uint64: the sgn words of its 8 columns, then (2-bit) their mag words.
 * A micro-kernel computes, for r < mr and the 8*np columns of np panels,
 *     acc[r*ldacc + col] += L(A row r, column col) over the kc words
 * where L is the pair-dependent part of the identity, dot = K + 2*Mu + 2*Mv - 2*L:
 *     1x1: L = pop(x)               1x2: L = pop(x) + 2*pop(g & x)
 *     2x2: L = X + 2*T1 + 8*T2 - 2*P
 * mr <= the entry's mr, np <= the entry's np; as/am point at the block's first
 * word of A's first row (rows lda apart; am NULL unless 2x2).
 * Nibble-split 1x1 (split1x1 set, the AVX2 table): the kernel gets every word w
 * as its two nibble halves, lo = w & 0x0f.. and hi = (w >> 4) & 0x0f.., which
 * are VPSHUFB indices as they stand (pop(a ^ b) = pop(lo_a ^ lo_b) + pop(hi_a ^
 * hi_b)): as/am are A's lo/hi planes (the driver splits A once per call), and a
 * panel word j holds the 8 columns' lo words, then their hi words.
 */
typedef void (*apb_bgemm_kern_fn)(int mr, int np, int kc, const uint64_t *as,
                                  const uint64_t *am, int lda, const uint64_t *bp,
                                  int32_t *acc, int ldacc);
typedef struct {
    apb_bgemm_kern_fn fn[APB_BGEMM_KINDS];
    /* or NULL: the same, storing acc[...] = L instead of adding (the first K
     * block: the driver zeroes no tile first) */
    apb_bgemm_kern_fn fn0[APB_BGEMM_KINDS];
    int mr[APB_BGEMM_KINDS]; /* register-tile rows */
    int np[APB_BGEMM_KINDS]; /* register-tile width in 8-column panels */
    int split1x1;            /* 1x1 takes nibble-split operands (above) */
} apb_bgemm_kernels;

extern const apb_bgemm_kernels apb_bgemm_kernels_ref;
extern const apb_bgemm_kernels apb_bgemm_kernels_avx2;
extern const apb_bgemm_kernels apb_bgemm_kernels_avx512;
/* Indirect 1x1 micro-kernel (AVX-512): acc[r*ldacc + c] += pop(as[r*lda + j] ^
 * src[boff[j] + c]) over j < kc, r < mr <= 8, c < 8*np, np <= 3. */
void apb_bgemm_ind_kern_avx512(int mr, int np, int kc, const uint64_t *as, int lda,
                               const uint64_t *src, const long *boff, int32_t *acc, int ldacc);
/* The same, storing acc[...] = the sum (the first K block). */
void apb_bgemm_ind_kern0_avx512(int mr, int np, int kc, const uint64_t *as, int lda,
                                const uint64_t *src, const long *boff, int32_t *acc, int ldacc);

/* AMX-INT8 path (bgemm_amx_avx512.c), taken at APB_ISA_AVX512 when the CPU and
 * OS support AMX (and AVX512-BITALG). Default: automatic, i.e. used where it
 * measured faster than the VPOPCNTQ kernels (bgemm.c amx_pays(); today every
 * call). APB_BGEMM_AMX=0 in the environment or apb_bgemm_amx_enable(0) turns it
 * off (APB_ISA=avx512 then runs the pure VPOPCNTQ kernels), =1 / enable(1) forces
 * it for every call, enable(-1) restores the automatic choice. Calls whose
 * shared int8 expansion would pass 256 MiB always take the VPOPCNTQ kernels.
 * Same exact results on every path. */
int apb_bgemm_amx_usable(void);              /* CPU + OS permission, cached */
int apb_bgemm_amx_enable(int on);            /* returns the previous setting (-1 auto) */
int apb_bgemm_amx_active(void);              /* not off, usable and ISA is AVX-512 */
int apb_bgemm_amx_chosen(apb_bgemm_kind kind, int M, int N, int K); /* this call uses AMX */
/* internal: where the AMX path writes its exact dots: the padding correction is
 * subtracted, then int32 goes to C (C != NULL) or scale*d + bias (multiply and
 * add rounded separately, as the driver's epilogue) to Y. */
typedef struct {
    const apb_bitconv_pad *pad;
    int32_t *C;
    int ldc;
    float *Y;
    int ldy;
    const float *scale, *bias;
} apb_bgemm_out;
/* internal: returns 0, or 1 when out of memory */
int apb_bgemm_amx(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                  const apb_bitmat *B, const apb_bitconv_pad *pad, int32_t *C, int ldc, float *Y,
                  int ldy, const float *scale, const float *bias);

#endif
