/* bgemm_amx_avx512.c - the binary GEMMs on AMX-INT8 tiles (Sapphire Rapids and
 * later), used at APB_ISA_AVX512 when the CPU and the kernel allow AMX.
 *
 * WHY: every level of every kind is a small integer (+-1 binary, {-3,-1,1,3} 2-bit),
 * so the exact dot product is also an int8 x int8 -> int32 matrix product.
 * TDPBSSD does 16x16x64 such MACs per instruction (~1000 MACs per cycle on one
 * core), about 3x what XOR + VPOPCNTQ + add can reach (3 uops on the two 512-bit
 * ports per 512 bit-pairs). The packed bits are expanded to int8 on the fly:
 *   A (weights): row-major [M32, Kp] bytes, zero past K (so tail columns of B,
 *     which expand to +1, multiply 0) and in rows >= M;
 *   B (activations): per group of 16 columns and per 64-k step, one 1 KB tile in
 *     the VNNI layout TDPBSSD wants (row r = k 4r..4r+3 of the 16 columns). The
 *     16 columns' words are transposed as a 16x16 matrix of nibbles in two zmm,
 *     then each row expands 64 bits -> 64 bytes with one masked blend.
 * Register tiles: C 2x2 tiles of 16x16 int32 (tmm0-3), A tmm4-5, B tmm6-7.
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

/* AMX instructions as inline asm with memory clobbers: GCC 12's intrinsics let
 * the compiler drop the tile-config stores and move buffer stores across tile
 * loads (their asm declares too little memory). Needs only the assembler. */
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
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && ((d >> 24) & 1) && ((d >> 25) & 1) &&
        ((c >> 27) & 1) /* OSXSAVE */) {
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

/* int8 levels of 64 packed values: binary 1 - 2s, 2-bit (1 - 2s)(1 + 2m). */
static inline __m512i levels(uint64_t s, const uint64_t *m, uint64_t valid)
{
    __m512i v = _mm512_set1_epi8(1);
    if (m)
        v = _mm512_mask_blend_epi8(*m, v, _mm512_set1_epi8(3));
    v = _mm512_mask_sub_epi8(v, s, _mm512_setzero_si512(), v);
    return _mm512_maskz_mov_epi8(valid, v);
}

/* A rows [m0, m1) (m0 a multiple of 16) -> Ae in tile order: the 16 x 64 byte
 * tile (row block m/16, k step j) is 1 KB contiguous, so tile loads stream. Zero
 * past M and past K. */
static void expand_a(const apb_bitmat *A, int use_mag, int M, int K, int m0, int m1, int8_t *Ae,
                     int KT)
{
    uint64_t last = K % 64 ? (UINT64_C(1) << (K % 64)) - 1 : ~UINT64_C(0);
    for (int m = m0; m < m1; m++) {
        int8_t *o = Ae + (size_t)(m >> 4) * KT * 1024 + (m & 15) * 64;
        if (m >= M) {
            for (int j = 0; j < KT; j++)
                _mm512_storeu_si512(o + (size_t)j * 1024, _mm512_setzero_si512());
            continue;
        }
        const uint64_t *s = A->sgn + (size_t)m * A->ld, *g = use_mag ? A->mag + (size_t)m * A->ld : NULL;
        for (int j = 0; j < KT; j++)
            _mm512_storeu_si512(o + (size_t)j * 1024,
                                levels(s[j], g ? g + j : NULL, j == KT - 1 ? last : ~UINT64_C(0)));
    }
}

/* One 16x16 nibble transpose of the words in z0 (rows 0-7) and z1 (rows 8-15):
 * afterwards row r nibble n = old row n nibble r. */
static inline void nib_transpose(__m512i *z0, __m512i *z1)
{
    const __m512i m32 = _mm512_set1_epi64(0x00000000FFFFFFFFll);
    __m512i t = _mm512_ternarylogic_epi64(_mm512_srli_epi64(*z0, 32), *z1, m32, 0x28);
    *z1 = _mm512_xor_si512(*z1, t);
    *z0 = _mm512_xor_si512(*z0, _mm512_slli_epi64(t, 32));
    const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
#define NSTAGE(J, SH, MASK, HI)                                                                \
    do {                                                                                       \
        const __m512i idx = _mm512_xor_si512(lane, _mm512_set1_epi64(J));                      \
        const __m512i m = _mm512_set1_epi64((long long)(MASK));                                \
        const __m512i sel = _mm512_mask_xor_epi64(m, (__mmask8)(HI), m, _mm512_set1_epi64(-1)); \
        __m512i *zz[2] = {z0, z1};                                                             \
        for (int i = 0; i < 2; i++) {                                                          \
            __m512i p = _mm512_permutexvar_epi64(idx, *zz[i]);                                 \
            __m512i sh = _mm512_mask_srli_epi64(_mm512_slli_epi64(p, SH), (__mmask8)(HI), p, SH); \
            *zz[i] = _mm512_ternarylogic_epi64(sel, *zz[i], sh, 0xCA);                         \
        }                                                                                      \
    } while (0)
    NSTAGE(4, 16, 0x0000FFFF0000FFFFull, 0xF0);
    NSTAGE(2, 8, 0x00FF00FF00FF00FFull, 0xCC);
    NSTAGE(1, 4, 0x0F0F0F0F0F0F0F0Full, 0xAA);
#undef NSTAGE
}

/* Columns [n0, n0 + 16*ng) of B -> ng groups of KT VNNI tiles (1 KB each). */
static void expand_b(const apb_bitmat *B, int use_mag, int N, int KT, int n0, int ng, int8_t *Bv)
{
    uint64_t ws[16] __attribute__((aligned(64))), wm[16] __attribute__((aligned(64)));
    for (int gi = 0; gi < ng; gi++)
        for (int t = 0; t < KT; t++) {
            for (int c = 0; c < 16; c++) {
                int n = n0 + 16 * gi + c;
                ws[c] = n < N ? B->sgn[(size_t)n * B->ld + t] : 0;
                wm[c] = n < N && use_mag ? B->mag[(size_t)n * B->ld + t] : 0;
            }
            __m512i s0 = _mm512_load_si512(ws), s1 = _mm512_load_si512(ws + 8);
            nib_transpose(&s0, &s1);
            _mm512_store_si512(ws, s0);
            _mm512_store_si512(ws + 8, s1);
            if (use_mag) {
                __m512i g0 = _mm512_load_si512(wm), g1 = _mm512_load_si512(wm + 8);
                nib_transpose(&g0, &g1);
                _mm512_store_si512(wm, g0);
                _mm512_store_si512(wm + 8, g1);
            }
            int8_t *o = Bv + ((size_t)gi * KT + t) * 1024;
            for (int r = 0; r < 16; r++)
                _mm512_storeu_si512(o + 64 * r, levels(ws[r], use_mag ? wm + r : NULL, ~UINT64_C(0)));
        }
}

typedef struct {
    apb_bgemm_kind kind;
    int M, N, K, KT, Kp, M32;
    const apb_bitmat *A, *B;
    const apb_bitconv_pad *pad;
    int32_t *C;
    int ldc;
    float *Y;
    int ldy;
    const float *scale, *bias;
    const int8_t *Ae;
} amx_job;

/* One block of up to 32 columns (ng = 1 or 2 groups), all rows. */
static void run_nblock(const amx_job *jb, int n0, int ng, const int8_t *Bv)
{
    int32_t ct[32 * 32] __attribute__((aligned(64)));
    int KT = jb->KT;
    for (int m0 = 0; m0 < jb->M; m0 += 32) {
        const int8_t *a0 = jb->Ae + (size_t)(m0 >> 4) * KT * 1024, *a1 = a0 + (size_t)KT * 1024;
        TILE_ZERO(0);
        TILE_ZERO(1);
        TILE_ZERO(2);
        TILE_ZERO(3);
        if (ng == 2) {
            const int8_t *b1 = Bv + (size_t)KT * 1024;
            for (int t = 0; t < KT; t++) {
                TILE_LOAD(4, a0 + (size_t)1024 * t, 64);
                TILE_LOAD(6, Bv + (size_t)t * 1024, 64);
                TILE_DPBSSD(0, 4, 6);
                TILE_LOAD(7, b1 + (size_t)t * 1024, 64);
                TILE_DPBSSD(1, 4, 7);
                TILE_LOAD(5, a1 + (size_t)1024 * t, 64);
                TILE_DPBSSD(2, 5, 6);
                TILE_DPBSSD(3, 5, 7);
            }
        } else {
            for (int t = 0; t < KT; t++) {
                TILE_LOAD(4, a0 + (size_t)1024 * t, 64);
                TILE_LOAD(6, Bv + (size_t)t * 1024, 64);
                TILE_DPBSSD(0, 4, 6);
                TILE_LOAD(5, a1 + (size_t)1024 * t, 64);
                TILE_DPBSSD(2, 5, 6);
            }
        }
        TILE_STORE(0, ct, 128);
        TILE_STORE(1, ct + 16, 128);
        TILE_STORE(2, ct + 16 * 32, 128);
        TILE_STORE(3, ct + 16 * 32 + 16, 128);
        int mr = jb->M - m0 < 32 ? jb->M - m0 : 32;
        int nr = jb->N - n0 < 16 * ng ? jb->N - n0 : 16 * ng;
        apb_bgemm_out o = {jb->pad, jb->C, jb->ldc, jb->Y, jb->ldy, jb->scale, jb->bias};
        apb_bgemm_out_tile(&o, ct, 32, m0, mr, n0, nr);
    }
}


/* Returns 0 on success, 1 when out of memory (the caller reports). */
int apb_bgemm_amx(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                  const apb_bitmat *B, const apb_bitconv_pad *pad, int32_t *C, int ldc, float *Y,
                  int ldy, const float *scale, const float *bias)
{
    int KT = apb_bits_words(K), Kp = 64 * KT, M32 = (M + 31) & ~31;
    amx_job jb = {kind, M, N, K, KT, Kp, M32, A, B, pad, C, ldc, Y, ldy, scale, bias, NULL};
    /* the expanded weights are shared by the threads: a process-wide buffer
     * would race between concurrent callers, so it is thread-local to the
     * calling thread and handed to the team */
    int8_t *Ae = apb_thread_scratch(APB_TLS_AMX_A, (size_t)M32 * Kp);
    if (!Ae)
        return 1;
    jb.Ae = Ae;
    int nth = apb_threads_get();
    double work = (double)M * N * KT;
    if (work < 65536.0)
        nth = 1;
    int nblk = (N + 31) / 32;
    if (nth > nblk)
        nth = nblk;
    int wmag_a = kind == APB_BGEMM_2X2, wmag_b = kind != APB_BGEMM_1X1;
    int failed = 0;
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
#pragma omp for schedule(static)
        for (int m0 = 0; m0 < M32; m0 += 32)
            expand_a(A, wmag_a, M, K, m0, m0 + 32, Ae, KT);
        int8_t *Bv = apb_thread_scratch(APB_TLS_AMX_B, (size_t)2 * KT * 1024);
        if (!Bv) {
#pragma omp atomic write
            failed = 1;
        } else {
            tiles_on();
        }
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < nblk; b++) {
            if (!Bv)
                continue;
            int n0 = 32 * b, ng = N - n0 > 16 ? 2 : 1;
            expand_b(B, wmag_b, N, KT, n0, ng, Bv);
            run_nblock(&jb, n0, ng, Bv);
        }
        if (Bv)
            tiles_off();
    }
    return failed;
}
