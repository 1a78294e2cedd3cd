/* bgemm.c - driver of the binary GEMMs: argument checks, cache blocking, B
 * repacking into 8-column micro-panels, OpenMP over macro-tiles, ISA dispatch
 * through one table and the integer / float epilogues. At AVX-512 with AMX
 * usable and not switched off, run() hands the call to apb_bgemm_amx()
 * (bgemm_amx_avx512.c) instead.
 *
 * Loop nest per macro-tile (MC rows x NC columns of C, one thread each):
 *   for each K block of KC words:
 *     pack B[n0:n0+nc, k0:k0+kc] into panels (thread-local, stays in L2)
 *     for each group of np panels (stays in L1):
 *       for each mr-row strip of A (read in place, row-major):
 *         micro-kernel adds the pair term L into an int32 tile accumulator
 *   epilogue: dot = K + rowterm[m] + colterm[n] - 2*L - pad correction
 * rowterm / colterm are the popcounts of the magnitude planes (bgemm.h), computed
 * once per call. Everything is integer, so results are identical for every ISA
 * level, blocking and thread count.
 */
#include "bgemm.h"

#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "cpu.h"
#include "ewise.h"
#include "threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define BG_MC 256
#define BG_NC APB_BGEMM_NC /* multiple of 8*np of every table entry (8, 16, 24, 32, 48) */

static inline int popc(uint64_t x) { return __builtin_popcountll(x); }

/* The set bits of n words: with the POPCNT instruction at the AVX2 level and
 * up (the portable build's __builtin_popcountll is a libgcc call: 3.6% of an
 * APB + 2-bit ResNet-18 pass went to it), else that call. */
static inline __attribute__((always_inline)) int pop_sum(const uint64_t *w, int n)
{
    int s = 0;
    for (int j = 0; j < n; j++)
        s += popc(w[j]);
    return s;
}

__attribute__((target("popcnt"))) static int pop_words_hw(const uint64_t *w, int n) { return pop_sum(w, n); }

static int pop_words(const uint64_t *w, int n)
{
    return apb_isa_active() >= APB_ISA_AVX2 ? pop_words_hw(w, n) : pop_sum(w, n);
}

/* AMX switch: -1 not decided yet (environment), 0 off, 1 forced on, 2 automatic
 * (the default: on where usable, per call by amx_pays()) */
static int amx_on = -1;

static int amx_mode(void)
{
    int on = __atomic_load_n(&amx_on, __ATOMIC_ACQUIRE);
    if (on < 0) {
        const char *e = getenv("APB_BGEMM_AMX");
        on = !e || !e[0] ? 2 : e[0] == '0' ? 0 : e[0] == '1' ? 1 : 2;
        __atomic_store_n(&amx_on, on, __ATOMIC_RELEASE);
    }
    return on;
}

int apb_bgemm_amx_enable(int on)
{
    int prev = amx_mode();
    __atomic_store_n(&amx_on, on < 0 ? 2 : on ? 1 : 0, __ATOMIC_RELEASE);
    return prev == 2 ? -1 : prev;
}

int apb_bgemm_amx_active(void)
{
    return amx_mode() && apb_isa_active() == APB_ISA_AVX512 && apb_bgemm_amx_usable();
}

/* Automatic choice per call (docs/KERNELS.md, session 3): AMX measured faster
 * than the VPOPCNTQ kernels on every bench shape and kind. */
static int amx_pays(apb_bgemm_kind kind, int M, int N, int K)
{
    (void)kind, (void)M, (void)N, (void)K;
    return 1;
}

/* The AMX path expands the smaller of A and B whole into int8 (64 bytes per
 * row per 64 k); past this it is not worth the memory and the VPOPCNTQ kernels
 * run instead, forced or not. */
#define AMX_WHOLE_MAX ((size_t)256 << 20)

int apb_bgemm_amx_chosen(apb_bgemm_kind kind, int M, int N, int K)
{
    if (M <= 0 || N <= 0 || K <= 0 || !apb_bgemm_amx_active())
        return 0;
    size_t whole = (size_t)((M < N ? M : N) + 31) * 64 * (size_t)apb_bits_words(K);
    if (whole > AMX_WHOLE_MAX)
        return 0;
    return amx_mode() == 1 || amx_pays(kind, M, N, K);
}

static const apb_bgemm_kernels *kernels_active(void)
{
    switch (apb_isa_active()) {
    case APB_ISA_AVX512: return &apb_bgemm_kernels_avx512;
    case APB_ISA_AVX2: return &apb_bgemm_kernels_avx2;
    default: return &apb_bgemm_kernels_ref;
    }
}

static apb_status check_args(const char *fn, apb_bgemm_kind kind, int M, int N, int K,
                             const apb_bitmat *A, const apb_bitmat *B, const apb_bitconv_pad *pad,
                             int ldc)
{
    if ((unsigned)kind >= APB_BGEMM_KINDS)
        return apb_fail(APB_EINVAL, "%s: bad kind %d", fn, (int)kind);
    if (M < 0 || N < 0 || K < 0)
        return apb_fail(APB_EINVAL, "%s: negative shape M=%d N=%d K=%d", fn, M, N, K);
    if (K > (1 << 27))
        return apb_fail(APB_EUNSUPPORTED, "%s: K=%d may overflow int32 results", fn, K);
    int KW = apb_bits_words(K);
    if (!A || !B || (M > 0 && K > 0 && !A->sgn) || (N > 0 && K > 0 && !B->sgn))
        return apb_fail(APB_EINVAL, "%s: missing sign plane", fn);
    if (A->ld < KW || B->ld < KW)
        return apb_fail(APB_EINVAL, "%s: lda=%d / ldb=%d words < ceil(K/64)=%d (K=%d)", fn,
                        A->ld, B->ld, KW, K);
    if (kind == APB_BGEMM_2X2 && K > 0 && M > 0 && !A->mag)
        return apb_fail(APB_EINVAL, "%s: kind 2x2 needs the weight magnitude plane", fn);
    if (kind != APB_BGEMM_1X1 && K > 0 && N > 0 && !B->mag)
        return apb_fail(APB_EINVAL, "%s: kind %s needs the activation magnitude plane", fn,
                        apb_bgemm_kind_name(kind));
    if (ldc < N)
        return apb_fail(APB_EINVAL, "%s: ldc=%d < N=%d", fn, ldc, N);
    if (pad && (pad->M != M || pad->N != N))
        return apb_fail(APB_ESHAPE, "%s: padding correction built for M=%d N=%d, GEMM is M=%d N=%d",
                        fn, pad->M, pad->N, M, N);
    return APB_OK;
}

/* Grow-only thread-local scratch: steady state allocates nothing. */
static void *scratch(size_t bytes) { return apb_thread_scratch(APB_TLS_BGEMM, bytes); }

typedef struct {
    apb_bgemm_kind kind;
    int M, N, K, KW, KC, planes, split; /* split: nibble-split 1x1 (bgemm.h) */
    const apb_bitmat *A, *B;
    uint64_t *alo, *ahi; /* A's nibble halves [M, A->ld] when split (run_tiles fills them) */
    const apb_bitconv_pad *pad;
    const int32_t *rowterm, *colterm; /* [M], [N] or NULL */
    int32_t *C;
    int ldc;
    float *Y;
    int ldy;
    const float *scale, *bias;
    const apb_bgemm_kernels *tab;
    apb_bgemm_epilogue ep; /* the caller's: its bands (grain, band_rows, band_m, unit_done, ctx; 0: none) */
    /* in place (apb_bgemm_ind_f32; 1x1 only): B word j of image b's column q at
     * isrc[b * istride + iboff[j] + q], results at Y + b * ldimg; isrc NULL:
     * B packed per tile from jb->B */
    const uint64_t *isrc;
    const long *iboff;
    long istride, ldimg;
    int nimg;
    void (*ikern)(int, int, int, const uint64_t *, int, const uint64_t *, const long *, int32_t *, int);
    /* or NULL: ikern storing its sums (the first K block) */
    void (*ikern0)(int, int, int, const uint64_t *, int, const uint64_t *, const long *, int32_t *, int);
} bg_job;

#define IND_MR 8 /* the in-place kernels' register tile: 8 rows x 3 panels */
#define IND_NP 3

#define NIB 0x0f0f0f0f0f0f0f0full

static void pack_b(const bg_job *jb, int n0, int nc, int k0, int kc, uint64_t *bp)
{
    int npan = (nc + 7) / 8, pl = jb->planes, ldb = jb->B->ld;
    for (int p = 0; p < npan; p++) {
        uint64_t *dst = bp + (size_t)p * kc * 8 * pl;
        for (int c = 0; c < 8; c++) {
            int n = n0 + p * 8 + c;
            if (n - n0 < nc && jb->split) {
                const uint64_t *s = jb->B->sgn + (size_t)n * ldb + k0;
                for (int j = 0; j < kc; j++) {
                    dst[j * 16 + c] = s[j] & NIB;
                    dst[j * 16 + 8 + c] = (s[j] >> 4) & NIB;
                }
            } else if (n - n0 < nc) {
                const uint64_t *s = jb->B->sgn + (size_t)n * ldb + k0;
                for (int j = 0; j < kc; j++)
                    dst[j * 8 * pl + c] = s[j];
                if (pl == 2) {
                    const uint64_t *g = jb->B->mag + (size_t)n * ldb + k0;
                    for (int j = 0; j < kc; j++)
                        dst[j * 16 + 8 + c] = g[j];
                }
            } else {
                for (int j = 0; j < kc; j++)
                    for (int q = 0; q < pl; q++)
                        dst[j * 8 * pl + q * 8 + c] = 0;
            }
        }
    }
}

/* The float or int32 results of a tile's rows m0 .. m0+mc-1 and nc columns:
 * d = K + rowterm + colterm - 2L - corr, then int32 (C) or scale*d + bias (Y);
 * ct, pat, C and Y already point at the tile's first column. The passes run
 * at the active ISA level (kernels/ewise.h). */
static void tile_epilogue(const bg_job *jb, int m0, int mc, int nc, int32_t *acc, const int32_t *ct,
                          const int32_t *pat, int32_t *C, float *Y)
{
    int border[BG_NC], nborder = 0; /* the tile's columns with a padded tap */
    for (int c = 0; pat && c < nc; c++)
        if (pat[c])
            border[nborder++] = c;
    if (!C) { /* float output: one pass per row, the border's corrections as a column array */
        int32_t cc[BG_NC];
        if (nborder)
            memset(cc, 0, sizeof(int32_t) * (size_t)nc);
        size_t pM = pat ? (size_t)jb->pad->M : 0;
        for (int r = 0; r < mc; r++) {
            int m = m0 + r;
            for (int i = 0; i < nborder; i++)
                cc[border[i]] = jb->pad->corr[m + (size_t)pat[border[i]] * pM];
            apb_ew_dot_float(nc, acc + (size_t)r * BG_NC, jb->K + (jb->rowterm ? jb->rowterm[m] : 0), ct,
                             nborder ? cc : NULL, jb->scale ? jb->scale[m] : 1.0f,
                             jb->bias ? jb->bias[m] : 0.0f, Y + (size_t)m * jb->ldy);
        }
        return;
    }
    for (int r = 0; r < mc; r++) {
        int m = m0 + r;
        int32_t base = jb->K + (jb->rowterm ? jb->rowterm[m] : 0);
        int32_t *ar = acc + (size_t)r * BG_NC;
        apb_ew_dot_int(nc, ar, base, ct);
        if (pat) { /* only border columns: pattern 0 (interior) has no correction */
            const int32_t *corr = jb->pad->corr + m;
            size_t pM = (size_t)jb->pad->M;
            for (int i = 0; i < nborder; i++)
                ar[border[i]] -= corr[(size_t)pat[border[i]] * pM];
        }
        if (C) {
            memcpy(C + (size_t)m * jb->ldc, ar, sizeof(int32_t) * (size_t)nc);
        } else {
            apb_ew_int_float(nc, ar, jb->scale ? jb->scale[m] : 1.0f, jb->bias ? jb->bias[m] : 0.0f,
                             Y + (size_t)m * jb->ldy);
        }
    }
}

/* One tile: rows [m0, m0 + mc) x columns [n0, n0 + nc) of image b (b = 0 unless
 * in place), over K blocks: B packed into bp, or read in place. */
static void run_tile(const bg_job *jb, long b, int m0, int mc, int n0, int nc, int32_t *acc,
                     uint64_t *bp)
{
    const apb_bgemm_kernels *t = jb->tab;
    int kind = jb->kind, lda = jb->A->ld, ind = jb->isrc != NULL;
    int mr = ind ? IND_MR : t->mr[kind], np = ind ? IND_NP : t->np[kind];
    int npan = (nc + 7) / 8;
    const uint64_t *sb = ind ? jb->isrc + b * jb->istride + n0 : NULL;
    /* kernels that store their first K block's sums write every accumulator the
     * epilogue reads (mc rows, the panels' columns): no zeroed tile */
    int st0 = ind ? jb->ikern0 != NULL : t->fn0[kind] != NULL && !jb->split;
    if (!st0 && npan * 8 >= BG_NC - 16) /* the tile's rows, or just the panels' columns of each */
        memset(acc, 0, sizeof(int32_t) * (size_t)mc * BG_NC);
    else if (!st0)
        for (int r = 0; r < mc; r++)
            memset(acc + (size_t)r * BG_NC, 0, sizeof(int32_t) * 8 * (size_t)npan);
    for (int k0 = 0; k0 < jb->KW; k0 += jb->KC) {
        int kc = jb->KW - k0 < jb->KC ? jb->KW - k0 : jb->KC;
        if (!ind)
            pack_b(jb, n0, nc, k0, kc, bp);
        for (int jr = 0; jr < npan; jr += np) {
            int npg = npan - jr < np ? npan - jr : np;
            for (int ir = 0; ir < mc; ir += mr) {
                int mrr = mc - ir < mr ? mc - ir : mr;
                size_t aoff = (size_t)(m0 + ir) * lda + k0;
                int32_t *at = acc + (size_t)ir * BG_NC + jr * 8;
                if (ind) {
                    (k0 == 0 && st0 ? jb->ikern0 : jb->ikern)(mrr, npg, kc, jb->A->sgn + aoff, lda, sb + jr * 8,
                                                            jb->iboff + k0, at, BG_NC);
                    continue;
                }
                const uint64_t *as = jb->split ? jb->alo + aoff : jb->A->sgn + aoff;
                const uint64_t *am = jb->split ? jb->ahi + aoff
                                     : kind == APB_BGEMM_2X2 ? jb->A->mag + aoff : NULL;
                (k0 == 0 && st0 ? t->fn0[kind] : t->fn[kind])(mrr, npg, kc, as, am, lda,
                                                              bp + (size_t)jr * kc * 8 * jb->planes, at, BG_NC);
            }
        }
    }
    tile_epilogue(jb, m0, mc, nc, acc, jb->colterm ? jb->colterm + n0 : NULL,
                  jb->pad ? jb->pad->pattern + n0 : NULL, jb->C ? jb->C + n0 : NULL,
                  jb->C ? NULL : jb->Y + b * jb->ldimg + n0);
}

/* Rows per tile: BG_MC, halved (down to 32) until there are 4 tiles per thread,
 * so a thread that is held up does not hold the call (the deep layers of one
 * image are 512 rows x 49 columns: two tiles); ncols: tiles along the columns. */
static int tile_rows(int M, long ncols, int nth)
{
    int mcs = BG_MC;
    while (mcs > 32 && (long)((M + mcs - 1) / mcs) * ncols < 4L * nth)
        mcs /= 2;
    return mcs;
}

/* Every tile of a job over OpenMP (one thread below 64 K word-pairs of work or
 * inside a team), each thread with its own grow-only scratch (the int32 tile,
 * and the packed B block unless in place); a nibble-split A is made by the
 * team first. */
static apb_status run_tiles(const bg_job *jb, const char *fn)
{
    int M = jb->M, N = jb->N, nimg = jb->isrc ? jb->nimg : 1, nth = apb_threads_get();
    if ((double)M * N * nimg * (jb->KW > 0 ? jb->KW : 1) < 65536.0 || apb_in_parallel())
        nth = 1; /* fork/join would cost more than the product, or a team calls */
    int bands = jb->ep.grain > 0 && nimg == 1 && (nth > 1 || jb->ep.unit_done); /* units claimed (apb_bgemm_epilogue) */
    long g = jb->ep.grain > 0 ? jb->ep.grain : 1, ur = jb->ep.band_rows > 0 ? jb->ep.band_rows : 1;
    int mb = jb->ep.band_m > 0 && jb->ep.band_m < M ? jb->ep.band_m : M;
    long nmb = (M + mb - 1) / mb, nu = ((N + g - 1) / g + ur - 1) / ur;
    apb_claims cl;
    if (bands)
        apb_claims_init(&cl, nu * nmb, nth);
    int tn = (N + BG_NC - 1) / BG_NC, mcs = bands ? BG_MC : tile_rows(M, (long)tn * nimg, nth);
    int tm = (M + mcs - 1) / mcs;
    long per = (long)tm * tn, ntiles = per * nimg;
    if (nth > ntiles && !bands)
        nth = (int)ntiles;
    size_t tile = sizeof(int32_t) * BG_MC * BG_NC;
    size_t need = tile + (jb->isrc ? 0 : sizeof(uint64_t) * (size_t)BG_NC * jb->KC * jb->planes) + 128;
    int failed = 0;
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        char *buf = scratch(need);
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
        if (jb->split) { /* A's nibble halves, rows over the team, before any tile */
            size_t la = (size_t)jb->A->ld;
#pragma omp for schedule(static)
            for (int m = 0; m < M; m++)
                for (int j = 0; j < jb->KW; j++) {
                    uint64_t w = jb->A->sgn[m * la + j];
                    jb->alo[m * la + j] = w & NIB;
                    jb->ahi[m * la + j] = (w >> 4) & NIB;
                }
        }
        for (long i; bands && buf && (i = apb_claim(&cl, apb_thread_num())) >= 0;) {
            long u = i / nmb, ce = (u + 1) * ur * g;
            int b0 = (int)(i % nmb) * mb, b1 = b0 + mb < M ? b0 + mb : M, c1 = ce < N ? (int)ce : N;
            /* the unit's columns in tiles of even width (panels of 8) */
            int cs = (int)(u * ur * g), nt = (c1 - cs + BG_NC - 1) / BG_NC;
            int tw = ((c1 - cs + nt - 1) / nt + 7) / 8 * 8;
            for (int n0 = cs; n0 < c1; n0 += tw)
                for (int m0 = b0; m0 < b1; m0 += mcs)
                    run_tile(jb, 0, m0, b1 - m0 < mcs ? b1 - m0 : mcs, n0, c1 - n0 < tw ? c1 - n0 : tw,
                             (int32_t *)buf, (uint64_t *)(buf + tile));
            if (jb->ep.unit_done)
                jb->ep.unit_done(jb->ep.ctx, b0, b1, (int)(u * ur * g), c1);
        }
#pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < (bands ? 0 : ntiles); t++) {
            if (!buf)
                continue;
            int tt = (int)(t % per), m0 = (tt / tn) * mcs, n0 = (tt % tn) * BG_NC;
            int mc = M - m0 < mcs ? M - m0 : mcs, nc = N - n0 < BG_NC ? N - n0 : BG_NC;
            run_tile(jb, t / per, m0, mc, n0, nc, (int32_t *)buf, (uint64_t *)(buf + tile));
        }
    }
    if (failed)
        return apb_fail(APB_ENOMEM, "%s: %zu bytes of per-thread scratch", fn, need);
    return APB_OK;
}

static apb_status run(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                      const apb_bitmat *B, const apb_bitconv_pad *pad, int32_t *C, int ldc,
                      float *Y, int ldy, const float *scale, const float *bias,
                      const apb_bgemm_epilogue *ep)
{
    if (M == 0 || N == 0)
        return APB_OK;
    if (apb_bgemm_amx_chosen(kind, M, N, K)) {
        if (apb_bgemm_amx(kind, M, N, K, A, B, pad, C, ldc, Y, ldy, scale, bias))
            return apb_fail(APB_ENOMEM, "apb_bgemm: AMX operand buffers for M=%d N=%d K=%d", M, N, K);
        if (ep && ep->grain > 0 && ep->unit_done) /* no units there: the whole product as one */
            ep->unit_done(ep->ctx, 0, M, 0, N);
        return APB_OK;
    }
    bg_job jb = {.kind = kind, .M = M, .N = N, .K = K, .KW = apb_bits_words(K),
                 .KC = kind == APB_BGEMM_1X1 ? 128 : 64, .planes = kind == APB_BGEMM_1X1 ? 1 : 2,
                 .A = A, .B = B, .pad = pad, .C = C, .ldc = ldc, .Y = Y, .ldy = ldy,
                 .scale = scale, .bias = bias, .tab = kernels_active()};
    if (ep)
        jb.ep = *ep;
    int32_t *terms = NULL;
    uint64_t *split = NULL; /* A's nibble halves [2][M][A->ld], filled by run_tiles' team */
    size_t la = (size_t)A->ld;
    if (kind == APB_BGEMM_1X1 && jb.tab->split1x1 && K > 0) {
        /* once per call (M*KW words against the GEMM's M*N*KW), in the calling
         * thread's grow-only scratch: steady state allocates nothing */
        split = apb_thread_scratch(APB_TLS_BGEMM_A, sizeof(uint64_t) * 2 * (size_t)M * la);
        if (!split)
            return apb_fail(APB_ENOMEM, "apb_bgemm: %d x %d nibble planes", M, jb.KW);
        jb.split = 1;
        jb.planes = 2;
        jb.alo = split;
        jb.ahi = split + (size_t)M * la;
    }
    if (kind != APB_BGEMM_1X1 && K > 0) {
        terms = malloc(sizeof(int32_t) * ((size_t)M + N));
        if (!terms)
            return apb_fail(APB_ENOMEM, "apb_bgemm: %d x %d magnitude counts", M, N);
        int32_t *rt = terms, *ct = terms + M;
        for (int n = 0; n < N; n++)
            ct[n] = 2 * pop_words(B->mag + (size_t)n * B->ld, jb.KW);
        jb.colterm = ct;
        if (kind == APB_BGEMM_2X2) {
            for (int m = 0; m < M; m++)
                rt[m] = 2 * pop_words(A->mag + (size_t)m * A->ld, jb.KW);
            jb.rowterm = rt;
        }
    }
    apb_status st = run_tiles(&jb, "apb_bgemm");
    free(terms);
    return st;
}

/* ---- indirect 1x1 (bgemm.h) ---- */

int apb_bgemm_ind_fast(void) { return apb_isa_active() == APB_ISA_AVX512 && !apb_bgemm_amx_active(); }

/* The portable form of apb_bgemm_ind_kern_avx512. */
static void ind_kern_ref(int mr, int np, int kc, const uint64_t *as, int lda, const uint64_t *src,
                         const long *boff, int32_t *acc, int ldacc)
{
    for (int r = 0; r < mr; r++)
        for (int c = 0; c < 8 * np; c++) {
            int32_t s = 0;
            for (int j = 0; j < kc; j++)
                s += popc(as[(size_t)r * lda + j] ^ src[boff[j] + c]);
            acc[(size_t)r * ldacc + c] += s;
        }
}

apb_status apb_bgemm_ind_f32(int M, int ncol, int nimg, int K, const apb_bitmat *A,
                             const uint64_t *src, long istride, const long *boff,
                             const apb_bgemm_epilogue *ep, float *Y, int ldy, long ldimg)
{
    const apb_bitconv_pad *pad = ep ? ep->pad : NULL;
    if (M < 0 || ncol < 0 || nimg < 0 || K < 0 || !A || (M > 0 && !A->sgn) ||
        A->ld < apb_bits_words(K) || (ncol > 0 && nimg > 0 && (!src || !boff || !Y)) ||
        (pad && (pad->M != M || pad->N < ncol)))
        return apb_fail(APB_EINVAL, "apb_bgemm_ind_f32: bad arguments (M=%d ncol=%d images=%d K=%d)",
                        M, ncol, nimg, K);
    if (M == 0 || ncol == 0 || nimg == 0)
        return APB_OK;
    bg_job jb = {.kind = APB_BGEMM_1X1, .M = M, .N = ncol, .K = K, .KW = apb_bits_words(K),
                 .KC = 128, .planes = 1, .A = A, .pad = pad, .Y = Y, .ldy = ldy,
                 .scale = ep ? ep->scale : NULL, .bias = ep ? ep->bias : NULL,
                 .tab = kernels_active(), .isrc = src, .iboff = boff, .istride = istride,
                 .ldimg = ldimg, .nimg = nimg, .ep = ep ? *ep : (apb_bgemm_epilogue){0},
                 .ikern = apb_isa_active() == APB_ISA_AVX512 ? apb_bgemm_ind_kern_avx512 : ind_kern_ref,
                 .ikern0 = apb_isa_active() == APB_ISA_AVX512 ? apb_bgemm_ind_kern0_avx512 : NULL};
    return run_tiles(&jb, "apb_bgemm_ind_f32");
}

apb_status apb_bgemm(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                     const apb_bitmat *B, const apb_bitconv_pad *pad, int32_t *C, int ldc)
{
    APB_TRY(check_args("apb_bgemm", kind, M, N, K, A, B, pad, ldc));
    return run(kind, M, N, K, A, B, pad, C, ldc, NULL, 0, NULL, NULL, NULL);
}

apb_status apb_bgemm_f32(apb_bgemm_kind kind, int M, int N, int K, const apb_bitmat *A,
                         const apb_bitmat *B, const apb_bgemm_epilogue *ep, float *Y, int ldy)
{
    const apb_bitconv_pad *pad = ep ? ep->pad : NULL;
    APB_TRY(check_args("apb_bgemm_f32", kind, M, N, K, A, B, pad, ldy));
    return run(kind, M, N, K, A, B, pad, NULL, 0, Y, ldy, ep ? ep->scale : NULL,
               ep ? ep->bias : NULL, ep);
}
