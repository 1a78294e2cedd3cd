/* bitpack.h - packing float matrices and images into the bit planes the binary
 * GEMMs (bgemm.h) consume.
 *
 * WHY: an APB layer's dense part is a sign plane (1 bit per weight); its input is
 * binarized (1 bit) or quantized to 2 bits. Packing 64 values into one uint64 word
 * lets one XOR + popcount do 64 multiply-adds.
 *
 * LAYOUT (every packed operand, weights and activations alike)
 *   A packed matrix has `rows` rows; every row packs K values along the REDUCTION
 *   dimension K. Value k of a row lives in word k/64 (k >> 6), bit k%64 (k & 63),
 *   least significant bit first:
 *       bit(row r, k) = (P[r*ld + (k >> 6)] >> (k & 63)) & 1
 *   A row occupies KW = apb_bits_words(K) = ceil(K/64) words; rows are `ld` words
 *   apart (ld >= KW, the "row stride in words"). No alignment is required;
 *   64-byte aligned rows (apb_bits_ld() rounds KW up to 8 words) are faster.
 *   Weights are packed [M, ld] (output channel major); activations are packed
 *   [N, ld], one row per output pixel ("B transposed": the GEMM computes
 *   dot(weight row m, activation row n)).
 *   For a convolution K = C*KH*KW with k = (c*KH + kh)*KW + kw, the same order as
 *   im2col.h and as a row-major OIHW weight tensor flattened to [M, C*KH*KW].
 *
 * TAIL PADDING (K not a multiple of 64): bits k >= K of the last word of a row
 *   MUST be 0 in every plane. Every packer here writes them as 0. The GEMMs then
 *   count nothing for them: each identity in bgemm.h is written so that a position
 *   whose bits are all 0 in both operands contributes to the popcounts exactly 0,
 *   and the constant term uses the true K. Words between KW and ld are never read.
 *
 * VALUE ENCODING
 *   Binary (1 plane, "sgn"): bit 1 means -1, bit 0 means +1. A float x packs as
 *     bit = (x < 0), so sgn(0) = +1 (also -0.0 and NaN pack as +1).
 *   2-bit (2 planes, "sgn" and "mag", same layout, separate arrays): level index
 *     l in {0,1,2,3} stands for the value {-3, -1, +1, +3} * s/2 (s = step):
 *         l   = clamp(floor(x / s) + 2, 0, 3)
 *         sgn = (l <= 1)          1 = negative
 *         mag = (l == 0 || l == 3) 1 = large level (|value| = 3s/2)
 *     so value = s/2 * (1 - 2*sgn) * (1 + 2*mag): a uniform quantizer with
 *     thresholds -s, 0, +s (x in [0, s) -> +s/2, x >= s -> +3s/2, etc.).
 *     The paper's three planes are mask = mag, hi = sgn & mag, lo = sgn & ~mag;
 *     storing sgn instead of hi/lo is equivalent and moves one plane less.
 *     All-zero bits (sgn 0, mag 0) is level 2 = +s/2.
 *
 * CONVOLUTION ZERO PADDING (must match training exactly)
 *   A zero-padded input position has value 0, which neither encoding can hold.
 *   The packers write padded taps as all-zero bits, i.e. +1 (binary) or +s/2
 *   (2-bit), and the error is removed exactly by an integer correction:
 *   for output pixel n and output channel m the raw GEMM result contains
 *       sum over padded taps k of wval(m, k) * 1 unit
 *   (wval = +-1 for binary weights, (1-2sgn)(1+2mag) in {+-1, +-3} for 2-bit
 *   weights; the unit is the kind's result unit, see bgemm.h). It depends only on
 *   which taps of pixel n fall outside the image (its "border pattern") and on the
 *   weights, so apb_bitconv_pad_init() precomputes it once per layer, per
 *   (pattern, m); the GEMM epilogue (bgemm.h) subtracts it. The result then equals
 *   a float convolution with zero padding of the quantized values, exactly.
 */
#ifndef APB_BITPACK_H
#define APB_BITPACK_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Words per packed row: ceil(K / 64). */
static inline int apb_bits_words(int K) { return (K + 63) >> 6; }
/* Recommended row stride: apb_bits_words(K) rounded up to a multiple of 8 words. */
static inline int apb_bits_ld(int K) { return (apb_bits_words(K) + 7) & ~7; }

/* Level index of x for step s > 0 (see above): clamp(floor(x/s) + 2, 0, 3);
 * NaN gives level 0. Training's 2-bit quantizer must use the same rule. */
int apb_quant2_level(float x, float s);

/* Sign plane of a float matrix: X[rows, ldx] (ldx >= K) -> P[rows, ld] words,
 * bit = (x < 0). Writes all ld words of each row (words >= KW as 0). */
apb_status apb_bitpack_sign(int rows, int K, const float *X, int ldx, uint64_t *P, int ld);

/* 2-bit planes of a float matrix with step s > 0: X[rows, ldx] ->
 * sgn[rows, ld], mag[rows, ld]. Used for 2-bit activations (pixel-major [N, K]
 * matrix) and for the 2-bit baseline's weights. */
apb_status apb_bitpack_2bit(int rows, int K, const float *X, int ldx, float s, uint64_t *sgn,
                            uint64_t *mag, int ld);

/* Geometry of a convolution, as in im2col.h:
 *   OH = (H + 2P - KH)/S + 1, OW = (W + 2P - KW)/S + 1, K = C*KH*KW, N = OH*OW. */
typedef struct {
    int C, H, W;    /* input image x[C, H, W] */
    int KH, KW;     /* kernel */
    int stride, pad;
} apb_conv_geom;

int apb_conv_geom_oh(const apb_conv_geom *g);
int apb_conv_geom_ow(const apb_conv_geom *g);
/* Fails (EINVAL/ESHAPE with a message) on non-positive sizes or an empty output. */
apb_status apb_conv_geom_check(const apb_conv_geom *g);

/* Fused im2col + binary packing of one image x[C, H, W] (float):
 * P[n, ld] for n = oh*OW + ow, bit k = (x[c, oh*S-P+kh, ow*S-P+kw] < 0), k as
 * above; padded taps are written 0 (+1, corrected by apb_bitconv_pad). No float
 * im2col matrix is built. ld >= apb_bits_words(C*KH*KW). */
apb_status apb_bitpack_conv_sign(const apb_conv_geom *g, const float *x, uint64_t *P, int ld);

/* Fused im2col + 2-bit packing with step s: sgn[N, ld], mag[N, ld]; padded taps
 * are level 2 (both bits 0). */
apb_status apb_bitpack_conv_2bit(const apb_conv_geom *g, const float *x, float s, uint64_t *sgn,
                                 uint64_t *mag, int ld);

/* The same with a caller-provided workspace (no allocation, no thread-local
 * state): ws must hold apb_bitpack_conv_ws_bytes(g, planes) bytes (planes 1 for
 * sign, 2 for 2-bit), any alignment. The plain versions above use a grow-only
 * thread-local buffer instead (allocates only when a larger geometry arrives).
 * Returns 0 for an invalid geometry. */
size_t apb_bitpack_conv_ws_bytes(const apb_conv_geom *g, int planes);
apb_status apb_bitpack_conv_sign_ws(const apb_conv_geom *g, const float *x, uint64_t *P, int ld,
                                    void *ws, size_t ws_bytes);
apb_status apb_bitpack_conv_2bit_ws(const apb_conv_geom *g, const float *x, float s,
                                    uint64_t *sgn, uint64_t *mag, int ld, void *ws,
                                    size_t ws_bytes);

/* ---- channel-packed images ("NHWC bits") -----------------------------------
 * For C a multiple of 64: an image x[C, H, W] packed once along its channels into
 * the zero-padded bit image Z[(H+2P) * (W+2P), C/64]: padded pixel (i, j) at row
 * i*(W+2P) + j, bit c%64 of its word c/64 = the value of x[c, i-P, j-P] in the
 * encoding above (binary: planes 1, Z0 only; 2-bit with step s: planes 2, sgn in
 * Z0, mag in Z1). Pixels of the border are all-zero bits, as the fused packer
 * writes padded taps (corrected by apb_bitconv_pad).
 * apb_bitpack_chan_im2col then builds the GEMM operand by word copies: row n =
 * oh*OW + ow of P[N, ld] holds, for every (kh, kw), the C/64 words of padded pixel
 * (oh*S + kh, ow*S + kw), i.e. the reduction order k' = (kh*KW + kw)*C + c
 * (weights must be packed in that order: apb_bitpack_reorder_hwc). The KW taps
 * of one kernel row are adjacent pixels, so each is one copy of KW*C/64 words.
 * Both split the image over the threads when called outside a parallel region;
 * the bits do not depend on the thread count. */
static inline int apb_chan_ok(const apb_conv_geom *g) { return g->C > 0 && g->C % 64 == 0; }
static inline size_t apb_chan_words(const apb_conv_geom *g)
{
    return (size_t)(g->H + 2 * g->pad) * (size_t)(g->W + 2 * g->pad) * (size_t)(g->C / 64);
}
apb_status apb_bitpack_chan(const apb_conv_geom *g, const float *x, float s, int planes,
                            uint64_t *Z0, uint64_t *Z1);
apb_status apb_bitpack_chan_im2col(const apb_conv_geom *g, const uint64_t *Z, uint64_t *P, int ld);
/* The residual's byte phase planes (apb_ew_sign_planes' layout, ewise.h: per
 * channel S*S planes of Hq x Wq bytes, Hq = ceil((H+2P)/S), Wq likewise; 0 where
 * the pixel is padding) of channels [c0, c1) from the channel-packed image:
 * binary (Zm NULL), Z's sign bits as +1 / -1 (bit set: -1, the packer's sign);
 * 2-bit, the level's code (1 - 2 sgn)(1 + 2 mag) in {-3, -1, 1, 3} from the sign
 * plane Z and the magnitude plane Zm (value = code * s/2). The channels lie in
 * one word (c0 / 64 == (c1 - 1) / 64); out holds channel c0's planes, the next
 * channel's S*S*Hq*Wq bytes on. Binary: the same bytes as apb_ew_sign_planes on
 * the floats Z came from, except that a NaN (packed as +1) gives +1 here. Only
 * phase rows [i0, i1) (clamped to Hq) are written. Serial; AVX-512 only (callers
 * check apb_chan_planes_ok()). */
int apb_chan_planes_ok(void);
void apb_chan_planes(const apb_conv_geom *g, const uint64_t *Z, const uint64_t *Zm, int c0, int c1, int i0,
                     int i1, int8_t *out);
/* Weight rows packed in the order k = (c*KH + kh)*KW + kw (src[M, ld]) ->
 * the order k' = (kh*KW + kw)*C + c (dst[M, ld], words past K written 0). */
void apb_bitpack_reorder_hwc(const apb_conv_geom *g, int M, const uint64_t *src, uint64_t *dst,
                             int ld);

/* Exact zero-padding correction for a packed convolution (see the file comment).
 * pattern[n] in [0, n_patterns) for every output pixel; pattern 0 is the interior
 * (no padded tap) and has corr = 0. corr[p*M + m] is what the GEMM epilogue
 * subtracts from the raw integer dot of channel m at a pixel with pattern p. */
typedef struct {
    int M, N, n_patterns;
    int32_t *pattern; /* [N] */
    int32_t *corr;    /* [n_patterns, M] in the result unit of the GEMM kind */
} apb_bitconv_pad;

/* Builds the correction for weights packed as w_sgn[M, ldw] (binary, w_mag NULL)
 * or w_sgn/w_mag (2-bit weights). The correction is the same for binary and
 * 2-bit activations (padded taps hold +1 unit in both). Allocates; free with
 * apb_bitconv_pad_free. A geometry with pad == 0 gives n_patterns == 1, all 0. */
apb_status apb_bitconv_pad_init(apb_bitconv_pad *p, const apb_conv_geom *g, int M,
                                const uint64_t *w_sgn, const uint64_t *w_mag, int ldw);
void apb_bitconv_pad_free(apb_bitconv_pad *p);

/* ---- internal: AVX-512 helpers (bitpack_avx512.c), chosen by apb_isa_active() ----
 * or_row: ORs the bits of x[0..n) into d0 (and d1 for 2-bit) from bit `off` on.
 * rows: apb_bitpack_sign (planes 1) / apb_bitpack_2bit (planes 2) without checks.
 * transpose64: a[c] bit r <- a[r] bit c for a 64x64 bit matrix. */
void apb_bitpack_or_row_avx512(const float *x, int n, float s, int planes, uint64_t *d0,
                               uint64_t *d1, int off);
void apb_bitpack_rows_avx512(int rows, int K, const float *X, int ldx, float s, int planes,
                             uint64_t *P0, uint64_t *P1, int ld);
void apb_bit_transpose64_avx512(uint64_t *a);
void apb_chan_planes_avx512(const apb_conv_geom *g, const uint64_t *Z, const uint64_t *Zm, int c0, int c1,
                            int i0, int i1, int8_t *out);
/* AVX2 (bitpack_avx2.c): words of 64 channels (x + c*cstride, c < 64) at 8
 * consecutive pixels -> out0[j*ostride] (and out1 for planes 2) for pixel j, bit c
 * in the encoding above (sign, or 2-bit sgn / mag with step s). */
void apb_bitpack_chan_block_avx2(const float *x, size_t cstride, float s, int planes,
                                 uint64_t *out0, uint64_t *out1, size_t ostride);

#endif
