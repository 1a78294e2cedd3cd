/* bgemm_amx_avx512.c - the binary GEMMs on AMX-INT8 tiles (Sapphire Rapids and
 * later), the default at APB_ISA_AVX512 when the CPU and the kernel allow AMX
 * (bgemm.c decides; APB_BGEMM_AMX=0 turns it off).
 *
 * WHY: every level of every kind is a small integer (+-1 binary, {-3,-1,1,3} 2-bit),
 * so the exact dot product is also an int8 x int8 -> int32 matrix product.
 * TDPBSSD does 16x16x64 such MACs per instruction (~1000 MACs per cycle on one
 * core), about 3x what XOR + VPOPCNTQ + add can reach (3 uops on the two 512-bit
 * ports per 512 bit-pairs). The packed bits are expanded to int8 per call:
 *   A (weights): tile order, per 16-row block and 64-k step one 1 KB tile (16
 *     rows x 64 bytes), zero past K (so the tail of B, which expands to +1,
 *     multiplies 0) and in rows >= M; one mask load + one blend per 64 values.
 *   B (activations): per 16-column group and 64-k step one 1 KB tile in the VNNI
 *     layout TDPBSSD wants (row r = k 4r..4r+3 of the 16 columns, byte 4c+i =
 *     column c, k 4r+i). 8 words of each of 16 columns are loaded and transposed
 *     (8x8 qword transposes), the 32-bit halves of each column pair are paired
 *     (VPERMT2D), and each tile row's 64 bits come out of one VPSHUFBITQMB
 *     (BITALG) as a mask that one blend turns into 64 int8 levels.
 * The smaller operand is expanded whole (shared by the threads); thread units are
 * NB-column (or MB-row) blocks of the other one, expanded per K block of <= KC
 * tiles into a double buffer, interleaved with the multiplies of the previous K
 * block (the vector work barely overlaps the tile multiplies on Sapphire Rapids,
 * but the slices are written and read in L1). Per K block: chunks of CW columns (their B slice is
 * reused from L1), 32-row strips, 32-column pairs: C 2x2 tiles (tmm0-3), A
 * tmm4-5, B tmm6-7; partial sums kept in an int32 buffer between K blocks.
 * Epilogue: full 32x32 int32 blocks without padding are stored straight into C;
 * otherwise AVX-512 with the padding correction gathered only where the border
 * pattern is not 0, and scale*d + bias with separately rounded multiply and add
 * (no FMA), the same arithmetic as the portable epilogue.
 * Results are exact integers, identical to every other path.
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <cpuid.h>

#include "arena.h"
#include "bgemm.h"
#include "threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif


/* AMX instructions as inline asm with memory clobbers: GCC 12's intrinsics let
 * the compiler drop the tile-config stores and move buffer stores across tile
 * loads (their asm declares too little memory). Needs only the assembler. */
/* Blocking, measured on Sapphire Rapids (docs/KERNELS.md, session 3): K blocks
 * of <= 8 tiles (512 k), L1 chunks of 64 columns, thread units of 32 columns
 * (A whole) or 32 rows (B whole). */
#define AMX_KC 8
#define AMX_CW 64
#define AMX_NB 32
#define AMX_MB 32

#define TILE_LOAD(t, base, stride)                                                      \
    __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"((const void *)(base)),       \
                     "r"((long)(stride))                                                \
                     : "memory")
#define TILE_STORE(t, base, stride)                                                     \
    __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"((void *)(base)),         \
                     "r"((long)(stride))                                                \
                     : "memory")
#define TILE_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
#define TILE_DPBSSD(c, a, b) __asm__ volatile("tdpbssd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)

static int amx_state = -1; /* -1 unknown, 0 unusable, 1 usable */

int apb_bgemm_amx_usable(void)
{
    int s = __atomic_load_n(&amx_state, __ATOMIC_ACQUIRE);
    if (s >= 0)
        return s;
    unsigned a, b, c, d;
    int ok = 0;
    /* AMX-TILE (d24), AMX-INT8 (d25), AVX512-BITALG (c12) for the B expansion */
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> 24) & 1) && ((d >> 25) & 1) &&
        ((c >> 12) & 1) && __get_cpuid(1, &a, &b, &c, &d) && ((c >> 27) & 1) /* OSXSAVE */) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        /* XTILECFG (17) and XTILEDATA (18) enabled by the OS; ask for the data */
        if (((lo >> 17) & 3) == 3 && syscall(SYS_arch_prctl, 0x1023 /* REQ_XCOMP_PERM */, 18) == 0)
            ok = 1;
    }
    __atomic_store_n(&amx_state, ok, __ATOMIC_RELEASE);
    return ok;
}

typedef struct {
    uint8_t palette, start_row, rsv[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_cfg;

static void tiles_on(void)
{
    tile_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    __asm__ volatile("ldtilecfg %0" ::"m"(cfg) : "memory");
}

static void tiles_off(void) { __asm__ volatile("tilerelease" ::: "memory"); }

/* int8 levels of 64 values from their bit masks: binary 1 - 2s, 2-bit
 * (1 - 2s)(1 + 2g). */
static inline __m512i levels1(__mmask64 s)
{
    return _mm512_mask_blend_epi8(s, _mm512_set1_epi8(1), _mm512_set1_epi8(-1));
}

static inline __m512i levels2(__mmask64 s, __mmask64 g)
{
    __m512i v = _mm512_mask_blend_epi8(g, _mm512_set1_epi8(1), _mm512_set1_epi8(3));
    return _mm512_mask_sub_epi8(v, s, _mm512_setzero_si512(), v);
}

/* 16-row blocks [b0, b1) of A, 64-k tiles [t0, t1) -> Ae in tile order: block
 * b's tiles start at Ae + (b - b0) * bstride bytes, 1 KB each, consecutive, so
 * tile loads stream and the stores fill whole tiles in order. Zero past M and
 * past K. */
static void expand_a(const apb_bitmat *A, int use_mag, int M, int K, int b0, int b1, int t0,
                     int t1, int8_t *Ae, size_t bstride)
{
    int KT = apb_bits_words(K);
    __mmask64 last = K % 64 ? (UINT64_C(1) << (K % 64)) - 1 : ~UINT64_C(0);
    size_t ld = (size_t)A->ld;
    for (int b = b0; b < b1; b++) {
        int8_t *o = Ae + (size_t)(b - b0) * bstride;
        int rows = M - 16 * b < 16 ? (M - 16 * b > 0 ? M - 16 * b : 0) : 16;
        const uint64_t *s = A->sgn + (size_t)16 * b * ld;
        const uint64_t *g = use_mag ? A->mag + (size_t)16 * b * ld : NULL;
        for (int j = t0; j < t1; j++, o += 1024) {
            int r = 0;
            if (j == KT - 1) { /* the K tail: zero past K */
                for (; r < rows; r++)
                    _mm512_storeu_si512(
                        o + 64 * r,
                        _mm512_maskz_mov_epi8(last, g ? levels2(s[r * ld + j], g[r * ld + j])
                                                      : levels1(s[r * ld + j])));
            } else if (g) {
                for (; r < rows; r++)
                    _mm512_storeu_si512(o + 64 * r, levels2(s[r * ld + j], g[r * ld + j]));
            } else {
                for (; r < rows; r++)
                    _mm512_storeu_si512(o + 64 * r, levels1(s[r * ld + j]));
            }
            for (; r < 16; r++)
                _mm512_storeu_si512(o + 64 * r, _mm512_setzero_si512());
        }
    }
}

/* 8x8 transpose of 64-bit words: r[c] = words t..t+7 of column c in, r[t] =
 * word t of columns 0..7 out. */
static inline void transpose8(__m512i r[8])
{
    __m512i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi64(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi64(r[i], r[i + 1]);
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int h = 0; h < 8; h += 4) {
        u[h + 0] = _mm512_permutex2var_epi64(t[h + 0], lo, t[h + 2]); /* words 0, 4 */
        u[h + 1] = _mm512_permutex2var_epi64(t[h + 1], lo, t[h + 3]); /* 1, 5 */
        u[h + 2] = _mm512_permutex2var_epi64(t[h + 0], hi, t[h + 2]); /* 2, 6 */
        u[h + 3] = _mm512_permutex2var_epi64(t[h + 1], hi, t[h + 3]); /* 3, 7 */
    }
    for (int w = 0; w < 4; w++) {
        r[w] = _mm512_shuffle_i64x2(u[w], u[w + 4], 0x44);
        r[w + 4] = _mm512_shuffle_i64x2(u[w], u[w + 4], 0xEE);
    }
}

/* Words [t0, t0 + 8) of columns n..n+15 (zero past N and past t1) -> w[j][0..1]:
 * word t0 + j of columns n..n+7 and n+8..n+15. */
static inline __attribute__((always_inline)) void
load_words(const uint64_t *P, size_t ld, int N, int n, int t0, int t1, __m512i w[8][2])
{
    int nt = t1 - t0 < 8 ? t1 - t0 : 8;
    __mmask8 km = (__mmask8)((1u << nt) - 1);
    for (int h = 0; h < 2; h++) {
        __m512i r[8];
        for (int c = 0; c < 8; c++) {
            int col = n + 8 * h + c;
            r[c] = col < N ? _mm512_maskz_loadu_epi64(km, P + (size_t)col * ld + t0)
                           : _mm512_setzero_si512();
        }
        transpose8(r);
        for (int j = 0; j < 8; j++)
            w[j][h] = r[j];
    }
}

/* Columns [n0, n0 + 16*ng) of B, 64-k tiles [t0, t1) -> ng groups of VNNI
 * tiles (1 KB each, group gi at Bv + gi * gstride bytes); columns >= N expand
 * to +1 (their results are never written), K tails to 0 bits = +1 (A is 0
 * there). */
__attribute__((target("avx512bitalg"))) static void
expand_b(const apb_bitmat *B, int use_mag, int N, int n0, int ng, int t0, int t1, int8_t *Bv,
         size_t gstride)
{
    const __m512i lo = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(1));
    /* byte j of each qword selects bit j (j < 4) or 28 + j (j >= 4): column 2q's
     * nibble in the low half of the pair, column 2q+1's in the high half */
    const __m512i sel0 = _mm512_set1_epi64(0x2322212003020100ll);
    __m512i sel[8];
    for (int r = 0; r < 8; r++)
        sel[r] = _mm512_add_epi8(sel0, _mm512_set1_epi8((char)(4 * r)));
    const size_t ld = (size_t)B->ld;
    for (int gi = 0; gi < ng; gi++) {
        int n = n0 + 16 * gi;
        for (int tb = t0; tb < t1; tb += 8) {
            __m512i ws[8][2], wm[8][2];
            load_words(B->sgn, ld, N, n, tb, t1, ws);
            if (use_mag)
                load_words(B->mag, ld, N, n, tb, t1, wm);
            int nt = t1 - tb < 8 ? t1 - tb : 8;
            for (int j = 0; j < nt; j++) {
                __m512i sl = _mm512_permutex2var_epi32(ws[j][0], lo, ws[j][1]);
                __m512i sh = _mm512_permutex2var_epi32(ws[j][0], hi, ws[j][1]);
                int8_t *o = Bv + (size_t)gi * gstride + (size_t)(tb - t0 + j) * 1024;
                if (use_mag) {
                    __m512i gl = _mm512_permutex2var_epi32(wm[j][0], lo, wm[j][1]);
                    __m512i gh = _mm512_permutex2var_epi32(wm[j][0], hi, wm[j][1]);
                    for (int r = 0; r < 8; r++) {
                        _mm512_storeu_si512(o + 64 * r,
                                            levels2(_mm512_bitshuffle_epi64_mask(sl, sel[r]),
                                                    _mm512_bitshuffle_epi64_mask(gl, sel[r])));
                        _mm512_storeu_si512(o + 64 * (r + 8),
                                            levels2(_mm512_bitshuffle_epi64_mask(sh, sel[r]),
                                                    _mm512_bitshuffle_epi64_mask(gh, sel[r])));
                    }
                } else {
                    for (int r = 0; r < 8; r++) {
                        _mm512_storeu_si512(o + 64 * r,
                                            levels1(_mm512_bitshuffle_epi64_mask(sl, sel[r])));
                        _mm512_storeu_si512(o + 64 * (r + 8),
                                            levels1(_mm512_bitshuffle_epi64_mask(sh, sel[r])));
                    }
                }
            }
        }
    }
}

/* Writes dot[mr, ldd] (int32) at (m0, n0): padding correction, then int32 or
 * scale*d + bias (multiply and add rounded separately, as bgemm.c's epilogue). */
static void out_block(const apb_bgemm_out *o, const int32_t *dot, int ldd, int m0, int mr, int n0,
                      int nr)
{
    for (int r = 0; r < mr; r++) {
        int m = m0 + r;
        const int32_t *dr = dot + (size_t)r * ldd;
        __m512 sc = _mm512_set1_ps(o->scale ? o->scale[m] : 1.0f);
        __m512 bi = _mm512_set1_ps(o->bias ? o->bias[m] : 0.0f);
        for (int j = 0; j < nr; j += 16) {
            __mmask16 k = nr - j >= 16 ? 0xFFFF : (__mmask16)((1u << (nr - j)) - 1);
            __m512i d = _mm512_maskz_loadu_epi32(k, dr + j);
            if (o->pad) {
                __m512i pat = _mm512_maskz_loadu_epi32(k, o->pad->pattern + n0 + j);
                __mmask16 kp = _mm512_mask_cmpneq_epi32_mask(k, pat, _mm512_setzero_si512());
                if (kp) {
                    __m512i ix = _mm512_add_epi32(
                        _mm512_mullo_epi32(pat, _mm512_set1_epi32(o->pad->M)), _mm512_set1_epi32(m));
                    d = _mm512_sub_epi32(d, _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), kp,
                                                                        ix, o->pad->corr, 4));
                }
            }
            if (o->C) {
                _mm512_mask_storeu_epi32(o->C + (size_t)m * o->ldc + n0 + j, k, d);
            } else {
                __m512 y = _mm512_mul_round_ps(_mm512_cvtepi32_ps(d), sc, _MM_FROUND_CUR_DIRECTION);
                y = _mm512_add_round_ps(y, bi, _MM_FROUND_CUR_DIRECTION);
                _mm512_mask_storeu_ps(o->Y + (size_t)m * o->ldy + n0 + j, k, y);
            }
        }
    }
}

typedef struct {
    apb_bgemm_kind kind;
    int M, N, K, KT;
    int kc;                  /* 64-k tiles per K block */
    int cw;                  /* columns per L1 chunk (multiple of 32) */
    int a_whole;             /* 1: A expanded whole (shared), B per K block;
                                0: B whole, A per K block */
    const apb_bitmat *A, *B;
    const int8_t *whole;     /* the shared expansion */
    apb_bgemm_out out;
} amx_job;

/* One step of a thread's work: a unit (s0, sc = columns when A is whole, rows
 * otherwise) and one K block [kb, kb + kc) of it. */
typedef struct {
    int s0, sc, kb, kc;
} amx_step;

/* Pieces of a step's slice: 16-column groups of B, or 16-row blocks of A (whole
 * 32-row strips, the rows past M expand to 0). */
static int step_pieces(const amx_job *jb, const amx_step *st)
{
    return jb->a_whole ? (st->sc + 15) / 16 : (st->sc + 31) / 32 * 2;
}

static void expand_piece(const amx_job *jb, const amx_step *st, int p, int8_t *sl)
{
    int8_t *o = sl + (size_t)p * st->kc * 1024;
    if (jb->a_whole)
        expand_b(jb->B, jb->kind != APB_BGEMM_1X1, jb->N, st->s0 + 16 * p, 1, st->kb,
                 st->kb + st->kc, o, 0);
    else
        expand_a(jb->A, jb->kind == APB_BGEMM_2X2, jb->M, jb->K, st->s0 / 16 + p,
                 st->s0 / 16 + p + 1, st->kb, st->kb + st->kc, o, 0);
}

/* Runs step st on its expanded slice sl: C[m0 .., n0 ..) of the unit, partial
 * sums in acc [rows, ldacc] int32 between K blocks. Meanwhile it expands the
 * next step's slice into nsl piece by piece, after the TDPBSSDs of each 32x32
 * block are issued (meant to overlap the two; measured: they mostly add up, but
 * the slice is then fresh in L1). Loop: chunk of cw columns, 32-row strip,
 * 32-column pair: a chunk's B slice is reused from L1 by every strip. */
static void compute(const amx_job *jb, const amx_step *st, const int8_t *sl, int32_t *acc,
                    int ldacc, const amx_step *nst, int8_t *nsl)
{
    int32_t ct[32 * 32] __attribute__((aligned(64)));
    int KT = jb->KT, kc = st->kc, kb = st->kb;
    int m0 = jb->a_whole ? 0 : st->s0, mrows = jb->a_whole ? jb->M : st->sc;
    int n0 = jb->a_whole ? st->s0 : 0, nc = jb->a_whole ? st->sc : jb->N;
    int ng = (nc + 15) / 16;
    int first = kb == 0, last = kb + kc >= KT;
    const int8_t *abase, *bbase;
    size_t astride, bstride; /* bytes between 16-row blocks / 16-column groups */
    if (jb->a_whole) {
        abase = jb->whole + ((size_t)(m0 >> 4) * KT + kb) * 1024;
        astride = (size_t)KT * 1024;
        bbase = sl;
        bstride = (size_t)kc * 1024;
    } else {
        abase = sl;
        astride = (size_t)kc * 1024;
        bbase = jb->whole + ((size_t)(n0 >> 4) * KT + kb) * 1024;
        bstride = (size_t)KT * 1024;
    }
    int npieces = nst ? step_pieces(jb, nst) : 0, done = 0;
    int ncalls = ((mrows + 31) / 32) * ((ng + 1) / 2), call = 0;
    for (int gc = 0; gc < ng; gc += jb->cw / 16) {
        int gce = gc + jb->cw / 16 < ng ? gc + jb->cw / 16 : ng;
        for (int mb = 0; mb < mrows; mb += 32) {
            const int8_t *a0 = abase + (size_t)(mb >> 4) * astride, *a1 = a0 + astride;
            int mr = jb->M - (m0 + mb) < 32 ? jb->M - (m0 + mb) : 32;
            for (int g = gc; g < gce; g += 2) {
                int two = g + 1 < gce;
                const int8_t *b0 = bbase + (size_t)g * bstride, *b1 = b0 + bstride;
                int32_t *ac = acc + (size_t)mb * ldacc + 16 * g;
                if (first) {
                    TILE_ZERO(0);
                    TILE_ZERO(1);
                    TILE_ZERO(2);
                    TILE_ZERO(3);
                } else {
                    TILE_LOAD(0, ac, 4 * ldacc);
                    TILE_LOAD(1, ac + 16, 4 * ldacc);
                    TILE_LOAD(2, ac + 16 * ldacc, 4 * ldacc);
                    TILE_LOAD(3, ac + 16 * ldacc + 16, 4 * ldacc);
                }
                if (two) {
                    for (int t = 0; t < kc; t++) {
                        TILE_LOAD(4, a0 + (size_t)1024 * t, 64);
                        TILE_LOAD(6, b0 + (size_t)1024 * t, 64);
                        TILE_DPBSSD(0, 4, 6);
                        TILE_LOAD(7, b1 + (size_t)1024 * t, 64);
                        TILE_DPBSSD(1, 4, 7);
                        TILE_LOAD(5, a1 + (size_t)1024 * t, 64);
                        TILE_DPBSSD(2, 5, 6);
                        TILE_DPBSSD(3, 5, 7);
                    }
                } else {
                    for (int t = 0; t < kc; t++) {
                        TILE_LOAD(4, a0 + (size_t)1024 * t, 64);
                        TILE_LOAD(6, b0 + (size_t)1024 * t, 64);
                        TILE_DPBSSD(0, 4, 6);
                        TILE_LOAD(5, a1 + (size_t)1024 * t, 64);
                        TILE_DPBSSD(2, 5, 6);
                    }
                }
                call++;
                while (done < npieces && (long)done * ncalls < (long)call * npieces)
                    expand_piece(jb, nst, done++, nsl);
                if (!last) {
                    TILE_STORE(0, ac, 4 * ldacc);
                    TILE_STORE(1, ac + 16, 4 * ldacc);
                    TILE_STORE(2, ac + 16 * ldacc, 4 * ldacc);
                    TILE_STORE(3, ac + 16 * ldacc + 16, 4 * ldacc);
                    continue;
                }
                int m = m0 + mb, n = n0 + 16 * g, nr = nc - 16 * g < 32 ? nc - 16 * g : 32;
                if (jb->out.C && !jb->out.pad && mr == 32 && nr == 32) {
                    /* straight into C: cheaper than a bounce through L1 */
                    int32_t *c = jb->out.C + (size_t)m * jb->out.ldc + n;
                    long ldb = 4L * jb->out.ldc;
                    TILE_STORE(0, c, ldb);
                    TILE_STORE(1, c + 16, ldb);
                    TILE_STORE(2, c + 16 * (size_t)jb->out.ldc, ldb);
                    TILE_STORE(3, c + 16 * (size_t)jb->out.ldc + 16, ldb);
                    continue;
                }
                TILE_STORE(0, ct, 128);
                TILE_STORE(1, ct + 16, 128);
                TILE_STORE(2, ct + 16 * 32, 128);
                TILE_STORE(3, ct + 16 * 32 + 16, 128);
                out_block(&jb->out, ct, 32, m, mr, n, nr);
            }
        }
    }
    while (done < npieces)
        expand_piece(jb, nst, done++, nsl);
}

/* Returns 0 on success, 1 when out of memory (the caller reports). */
int apb_bgemm_amx(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                  const apb_bitmat *B, const apb_bitconv_pad *pad, int32_t *C, int ldc, float *Y,
                  int ldy, const float *scale, const float *bias)
{
    int KT = apb_bits_words(K), M32 = (M + 31) & ~31, N32 = (N + 31) & ~31;
    /* the smaller operand is expanded whole, once, shared by the threads; the
     * larger one is split into thread units, each expanded one K-block slice at
     * a time */
    int a_whole = N > M;
    /* equal K blocks of at most AMX_KC tiles (half that for a narrow whole B:
     * measured faster at N = 49, K = 4608) */
    int kcmax = !a_whole && N <= 64 ? AMX_KC / 2 : AMX_KC;
    int nkb = (KT + kcmax - 1) / kcmax, kc = (KT + nkb - 1) / nkb;
    amx_job jb = {kind, M, N, K, KT, kc, AMX_CW, a_whole, A, B, NULL,
                  {pad, C, ldc, Y, ldy, scale, bias}};
    int nth = apb_threads_get();
    double work = (double)M * N * KT;
    if (work < 65536.0)
        nth = 1;
    if (apb_in_parallel()) /* called from a team (one chunk of images per thread) */
        nth = 1;
    /* thread units: ub columns (A whole) or ub rows (B whole), shrunk while
     * there are fewer units than threads */
    int ub = a_whole ? AMX_NB : AMX_MB;
    int split = a_whole ? N : M, whole = a_whole ? M32 : N32;
    int nunits = (split + ub - 1) / ub;
    while (nunits < nth && ub > 32) {
        ub -= 32;
        nunits = (split + ub - 1) / ub;
    }
    if (nth > nunits)
        nth = nunits;
    size_t sl_bytes = (size_t)ub * kc * 64;
    size_t acc_bytes = kc < KT ? sizeof(int32_t) * (size_t)ub * whole : 0;
    /* the shared expansion lives in the calling thread's scratch and is handed
     * to the team (a process-wide buffer would race between callers) */
    int8_t *W = apb_thread_scratch(APB_TLS_AMX_A, (size_t)whole * KT * 64);
    if (!W)
        return 1;
    jb.whole = W;
    int failed = 0;
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        if (a_whole) {
#pragma omp for schedule(static)
            for (int b = 0; b < M32 / 16; b++)
                expand_a(A, kind == APB_BGEMM_2X2, M, K, b, b + 1, 0, KT,
                         W + (size_t)b * KT * 1024, 0);
        } else {
#pragma omp for schedule(static)
            for (int g = 0; g < N32 / 16; g++)
                expand_b(B, kind != APB_BGEMM_1X1, N, 16 * g, 1, 0, KT,
                         W + (size_t)g * KT * 1024, 0);
        }
        int8_t *buf = apb_thread_scratch(APB_TLS_AMX_B, 2 * sl_bytes + acc_bytes);
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        } else {
#ifdef _OPENMP
            int me = omp_get_thread_num(), team = omp_get_num_threads();
#else
            int me = 0, team = 1;
#endif
            /* contiguous units per thread, so each knows its next step */
            int u0 = (int)((long)nunits * me / team), u1 = (int)((long)nunits * (me + 1) / team);
            int32_t *acc = (int32_t *)(buf + 2 * sl_bytes);
            int ldacc = a_whole ? ub : N32;
            amx_step cur = {0, 0, 0, 0}, nxt;
            int have = 0, flip = 0;
            tiles_on();
            for (int u = u0; u < u1; u++)
                for (int kb = 0; kb < KT; kb += kc) {
                    int s0 = u * ub;
                    nxt = (amx_step){s0, split - s0 < ub ? split - s0 : ub, kb,
                                     KT - kb < kc ? KT - kb : kc};
                    if (!have) {
                        for (int p = 0; p < step_pieces(&jb, &nxt); p++)
                            expand_piece(&jb, &nxt, p, buf);
                    } else {
                        compute(&jb, &cur, buf + (size_t)flip * sl_bytes, acc, ldacc, &nxt,
                                buf + (size_t)(flip ^ 1) * sl_bytes);
                        flip ^= 1;
                    }
                    cur = nxt;
                    have = 1;
                }
            if (have)
                compute(&jb, &cur, buf + (size_t)flip * sl_bytes, acc, ldacc, NULL, NULL);
            tiles_off();
        }
    }
    return failed;
}
