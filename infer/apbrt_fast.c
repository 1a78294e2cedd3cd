/* apbrt_fast.c - bit-kernel execution of the compressed layers.
 *
 * Which layers run here (everything else uses sgemm on the dense effective
 * weights, which is the fastest kernel we have for full-precision activations):
 *   APB weights x binary activations   1x1 XNOR-popcount GEMM, scale alpha
 *   APB weights x 2-bit activations    1x2 GEMM, scale alpha * s/2
 *   2-bit weights x 2-bit activations  2x2 GEMM, scale s_w/2 * s/2
 *   2-bit weights x binary activations 2x2 GEMM with the activation as a 2-bit
 *                                      operand of step 2 (levels +-1, mag plane 0)
 *   APB weights x 8-bit activations    "1x8": the sign plane as +-1 bytes (made
 *                                      once at load) times the 8-bit codes, an
 *                                      exact int8 GEMM (kernels/i8gemm.h), scale
 *                                      alpha * s; signed codes are stored + 128
 *                                      and the zero point removed per row
 *
 * 8-bit convolutions quantize their input once per image into channel-blocked
 * byte phase planes (the layout of the residual's planes below, 4
 * channels' codes interleaved per pixel, padding = the zero point; the
 * residual's per-channel code planes in the same pass, apb_i8_quant4), so the 16 "wide" output pixels
 * oh * Wq + ow of a panel read each (channel group, tap) as 64 contiguous bytes,
 * and the GEMM reads them in place (apb_i8gemm_ind_f32, no packing); the
 * epilogue drops the Wq - OW extra columns per row, as the residual does.
 *
 * Convolutions pack im2col + quantization in one pass (bitpack.h), several
 * images of the batch into one packed matrix, so one GEMM has N = images *
 * pixels ~ 2048 (the deep layers have 49 pixels per image: one image alone is a
 * poor GEMM; more than ~2048 columns only spills the caches).
 * Zero padding is corrected exactly per border pattern (apb_bitconv_pad; the
 * pattern array is repeated per image).
 *
 * APB residual R (*) act(x) as a direct sparse convolution: the quantized input
 * is written once per image as zero-padded planes, split into S*S phase planes
 * for stride S (phase (a, b) holds padded pixel (i*S + a, j*S + b) at (i, j)),
 * Hq x Wq each. Output pixel (oh, ow) sits at q = oh*Wq + ow of a "wide" row
 * layout, and tap (c, kh, kw) of every output pixel reads its phase plane at
 * q + (kh/S)*Wq + kw/S: one contiguous vector per tap, whatever the stride, and
 * the padding is already in the zeros. So each outlier becomes an AXPY of a
 * shifted plane into the wide output (apb_spmm_offset_kernel, whose CSR column
 * indices are those precomputed element offsets); the Wq - OW garbage columns
 * per row are never read back. No im2col matrix, no per-element branches.
 * The planes hold the quantized values as bytes (a quarter of the floats'
 * memory; the products are the same bits): +1 / -1 / 0 for binary activations,
 * the codes 2l - 3 (times s/2) for 2-bit ones (both at AVX-512 made from the
 * channel-packed bits the GEMM already has, apb_chan_planes), the codes for
 * 8-bit ones (their kernel multiplies by the step before the FMA); floats only
 * where a 2-bit step's half is not exact.
 * The residual is made one chunk of 64 wide pixels at a time (one or more whole
 * output rows, 64 columns of a longer row) for a block of output channels, in
 * registers and a 4 KB stack tile, and the epilogue consumes it at once: no
 * residual image goes through memory. Tasks are (image, band of output rows,
 * block of channels): a band's rows of the planes (~512 wide pixels of every
 * channel) stay in L2 while its channel blocks read them. One image on a team
 * instead cuts every stage into the same units of rows (x channels), claimed
 * alike (plan_bands, apb_claims): the planes first, then the GEMM, which runs
 * the residual and epilogue of each unit on the thread that computed it
 * (fused_unit), so no stage reads another core's results but at a unit's edge.
 * Each output sums its row's outliers in CSR order from 0, then the epilogue
 * adds it to the GEMM result and applies bias, folded BN and ReLU/hardtanh,
 * so results do not depend on the thread count or the batch.
 * Scratch buffers grow on demand and are kept, so steady-state runs allocate
 * nothing here (the kernels' own packing scratch is theirs).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt_internal.h"
#include "bgemm.h"
#include "bitpack.h"
#include "cpu.h"
#include "ewise.h"
#include "i8gemm.h"
#include "spmm.h"
#include "threads.h"
#include "winograd.h"

/* What the residual's planes hold, by the layer's input quantizer: bytes +1 /
 * -1 / 0 (binary: apb_spmm_offset_i8_kernel), codes with a step (8-bit:
 * apb_i8_quant4's planes; 2-bit: 2l - 3 with step s/2; apb_spmm_offset_q8_kernel),
 * or floats (a 2-bit step whose half is not exact: apb_spmm_offset_kernel). */
enum { PL_F32 = 0, PL_BIN8, PL_CODE8 };

/* output channels per task of the epilogue loop (a fixed split, so the work per
 * element is the same for any thread count) */
#define RES_MB 8
/* the residual's tasks: groups of RES_CG channels x bands of >= RES_BAND wide
 * pixels (whole output rows); its kernel calls: blocks of RES_CB channels */
#define RES_CB 16
/* channels per residual task: its chunks run every block of RES_CB of them
 * while the chunk's input planes are in L1 (the blocks share input lines) */
#define RES_CG 64
#define RES_BAND 512

struct apbrt_fast {
    apb_bgemm_kind kind;
    int ld;               /* words per packed row */
    int bin_as_2bit;      /* binary activations fed to the 2x2 kernel */
    uint64_t *wsgn, *wmag; /* [M, ld] */
    float *scale;         /* [M] result unit per output row */
    apb_conv_geom g;
    int OH, OW;
    apb_bitconv_pad pad;  /* one image */
    int has_pad;
    int32_t *padb_pattern; /* [padb_cap * OH*OW] pad.pattern repeated per image */
    int padb_cap;
    /* residual as a direct sparse convolution (conv layers with outliers) */
    apb_csr R;            /* columns = element offsets into the phase planes */
    int has_res;
    int Hq, Wq;           /* phase plane size */
    long plane;           /* floats per phase plane (Hq*Wq) */
    long xp_sz;           /* values of one image's planes, slack included */
    int pkind;            /* what the planes hold (PL_*) */
    int csgn;             /* PL_CODE8: codes signed (two's complement), */
    float cstep;          /* and their step: value = (float)code * cstep */
    /* binary weights x 8-bit activations (i8 != 0); s8d: an approximate 8-bit conv
     * (apbrt_model.h S8D): w8 the quantized FP32 weights, scale their sw per row,
     * times the sample's step at run time, one image per GEMM */
    int i8, s8d;
    int K4;               /* groups of 4 k: linear ceil(K/4); conv ceil(C/4) * KH*KW */
    int8_t *w8;           /* [M, 4*K4] the sign plane as +-1 bytes, 0 past K; conv:
                             group g*KH*KW + tap holds channels 4g .. 4g+3 of the tap */
    int32_t *corr;        /* [M] 128 * row sum (signed codes), or NULL */
    long *boff;           /* conv: [K4] byte offset of group (g, tap) into the blocked planes */
    long nwide;           /* conv: wide output pixels per image, OH*Wq rounded up to a panel */
    long x8_sz;           /* conv: bytes of one image's blocked byte planes, slack included */
    int chan;             /* conv input packed along channels first (C % 64 == 0): weights
                             in the order (kh, kw, c), see apb_bitpack_chan */
    /* binary convs of 64 channels at stride 1 read their channel-packed input in
     * place (apb_bgemm_ind_f32): ind_ok when prepared (prepare_ind) */
    int ind_ok;
    long *iboff;          /* [KH*KW] word offset of each tap into the plane (one word per tap) */
    long incol;           /* wide output pixels per image: OH * Wq */
    long istride;         /* words of one image's planes, slack included */
    apb_bitconv_pad ipad; /* the padding correction per wide pixel (pattern incol long) */
    /* fp32 3x3 same conv by Winograd (wino != 0): U packed for apb_wino_conv_packed
     * at ISA level wisa (repacked if a later run has another level) */
    int wino, wisa;
    float *wu;
};

typedef struct {
    uint64_t *asgn, *amag, *zero; /* packed activations [rows, ld]; zero: an all-0 mag plane */
    size_t cap_sgn, cap_mag, cap_zero;
    float *xq, *y;                /* phase planes (conv) or quantized rows (linear) /
                                     GEMM result [M, n*pixels] */
    size_t cap_xq, cap_y;
    uint8_t *xb;                  /* the residual's byte phase planes (PL_BIN8, PL_CODE8) */
    size_t cap_xb;
    float *sc8;                   /* S8D convs: the GEMM's scale per row, per buffer copy */
    size_t cap_sc8;
    uint8_t *x8, *b8;             /* 8-bit: conv blocked byte planes [copies * images, x8_sz] /
                                     linear packed GEMM columns */
    size_t cap_x8, cap_b8;
    uint64_t *z0, *z1;            /* channel-packed padded images [n, apb_chan_words] */
    size_t cap_z0, cap_z1;
    uint64_t *zq;                 /* in-place binary convs: bit phase planes [copies * images, istride] */
    size_t cap_zq;
    float *ww;                    /* Winograd per-thread work */
    size_t cap_ww;
} fast_work;

static void fast_one_free(apbrt_fast *f)
{
    if (!f)
        return;
    apb_free_aligned(f->wsgn);
    apb_free_aligned(f->wmag);
    free(f->scale);
    free(f->padb_pattern);
    if (f->has_pad)
        apb_bitconv_pad_free(&f->pad);
    free(f->iboff);
    free(f->ipad.pattern);
    if (f->has_res)
        apb_csr_free(&f->R);
    apb_free_aligned(f->w8);
    free(f->corr);
    free(f->boff);
    apb_free_aligned(f->wu);
    free(f);
}

void apbrt_fast_free(apbrt_model *m)
{
    if (m->layers)
        for (int i = 0; i < m->nlayers; i++) {
            fast_one_free(m->layers[i].fast);
            m->layers[i].fast = NULL;
        }
    apbrt_fast_work_free(m);
}

apb_status apbrt_fast_work_new(apbrt_model *m)
{
    if (!m->fast_work && !(m->fast_work = calloc(1, sizeof(fast_work))))
        return apb_fail(APB_ENOMEM, "apbrt: out of memory");
    return APB_OK;
}

void apbrt_fast_work_free(apbrt_model *m)
{
    fast_work *w = m->fast_work;
    if (w) {
        apb_free_aligned(w->asgn);
        apb_free_aligned(w->amag);
        apb_free_aligned(w->zero);
        apb_free_aligned(w->xq);
        apb_free_aligned(w->xb);
        apb_free_aligned(w->sc8);
        apb_free_aligned(w->y);
        apb_free_aligned(w->x8);
        apb_free_aligned(w->b8);
        apb_free_aligned(w->z0);
        apb_free_aligned(w->z1);
        apb_free_aligned(w->zq);
        apb_free_aligned(w->ww);
        free(w);
        m->fast_work = NULL;
    }
}

/* Geometry of the stride-phase planes of a conv's input (see the file comment). */
static apb_status plane_geometry(apbrt_rt_layer *L, apbrt_fast *f, int idx)
{
    const apbrt_rec *r = &L->r;
    int S = r->stride, P = r->pad, KW = r->kw;
    f->Hq = (L->ih + 2 * P + S - 1) / S;
    f->Wq = (L->iw + 2 * P + S - 1) / S;
    f->plane = (long)f->Hq * f->Wq;
    /* a tap's vector may run (KW-1)/S floats past its plane, and the residual's
     * chunks read APB_SPMM_NC wide pixels from a row start: slack */
    f->xp_sz = (long)L->ic * S * S * f->plane + KW + APB_SPMM_NC;
    if (f->xp_sz > (1L << 31))
        return apb_fail(APB_ENOMEM, "apbrt: layer %d: input planes of %ld values", idx, f->xp_sz);
    return APB_OK;
}

/* Element offset of tap k = (c, kh, kw) of output pixel 0 into the phase planes. */
static long tap_offset(const apbrt_rt_layer *L, const apbrt_fast *f, long k)
{
    int S = L->r.stride, KH = L->r.kh, KW = L->r.kw;
    long c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
    return ((c * S + kh % S) * S + kw % S) * f->plane + (kh / S) * f->Wq + kw / S;
}

/* Offsets of the outliers' taps into the phase planes (see the file comment). */
static apb_status prepare_residual(apbrt_rt_layer *L, apbrt_fast *f, int idx)
{
    const apbrt_rec *r = &L->r;
    apb_status st = apb_csr_alloc(&f->R, r->cout, (int)f->xp_sz, r->nnz);
    if (st != APB_OK)
        return apb_fail_context(st, "apbrt: layer %d: ", idx);
    f->has_res = 1;
    for (int mm = 0; mm <= r->cout; mm++)
        f->R.row_ptr[mm] = L->rowptr[mm];
    for (long e = 0; e < r->nnz; e++) {
        long off = tap_offset(L, f, (long)L->colidx[e]);
        if (f->R.col16)
            f->R.col16[e] = (uint16_t)off;
        else
            f->R.col32[e] = (uint32_t)off;
        f->R.val[e] = L->rvals[e];
    }
    return APB_OK;
}

/* APB weights x 8-bit activations: +-1 bytes from the sign plane, the zero-point
 * correction, the taps' byte offsets (conv) and the residual. An S8D conv the
 * same way, its bytes the weights the loader quantized (L->w8, scale L->wsw). */
static apb_status prepare_layer_i8(apbrt_rt_layer *L, int idx)
{
    const apbrt_rec *r = &L->r;
    int conv = r->kind == APBRT_CONV;
    int M = r->cout, K = (int)L->K, words = (K + 63) / 64;
    int T = conv ? r->kh * r->kw : 1, Cg = (L->ic + 3) / 4;
    apbrt_fast *f = calloc(1, sizeof *f);
    if (!f)
        return apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
    f->i8 = 1;
    f->s8d = r->akind == APBRT_A_S8D;
    f->K4 = conv ? Cg * T : (K + 3) / 4;
    long ldw = 4L * f->K4;
    f->w8 = apb_alloc_aligned((size_t)(M * ldw));
    f->scale = malloc((size_t)M * sizeof(float));
    int sgd = r->akind == APBRT_A_S8 || f->s8d; /* signed codes: zero point 128 */
    f->corr = sgd ? malloc((size_t)M * sizeof(int32_t)) : NULL;
    f->boff = conv ? malloc((size_t)f->K4 * sizeof(long)) : NULL;
    apb_status st = APB_OK;
    if (!f->w8 || !f->scale || (sgd && !f->corr) || (conv && !f->boff)) {
        st = apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
        goto fail;
    }
    for (int mm = 0; mm < M; mm++) {
        const uint64_t *sg = f->s8d ? NULL : L->signs + (size_t)mm * words;
        int8_t *wr = f->w8 + mm * ldw;
        int32_t sum = 0;
        const int8_t *q8 = f->s8d ? L->w8 + (size_t)mm * K : NULL; /* quantized at load */
        memset(wr, 0, (size_t)ldw);
        for (int k = 0; k < K; k++) {
            int v = q8 ? q8[k] : (sg[k >> 6] >> (k & 63) & 1) ? -1 : 1;
            /* conv: k = c*T + tap -> byte 4*(g*T + tap) + c%4, g = c/4 */
            long at = conv ? 4L * ((k / T) / 4 * T + k % T) + (k / T) % 4 : k;
            wr[at] = (int8_t)v;
            sum += v;
        }
        if (f->corr)
            f->corr[mm] = 128 * sum;
        f->scale[mm] = f->s8d ? L->wsw[mm] : L->alpha[mm] * r->act_step;
    }
    if (conv) {
        f->g = (apb_conv_geom){L->ic, L->ih, L->iw, r->kh, r->kw, r->stride, r->pad};
        f->OH = apb_conv_geom_oh(&f->g);
        f->OW = apb_conv_geom_ow(&f->g);
        if ((st = plane_geometry(L, f, idx)) != APB_OK)
            goto fail;
        f->nwide = ((long)f->OH * f->Wq + APB_I8_PANEL - 1) / APB_I8_PANEL * APB_I8_PANEL;
        /* group (g, tap) sits in the blocked planes where tap (c = g, tap) sits in
         * the float planes, 4 bytes per pixel */
        long maxo = 0;
        for (long k4 = 0; k4 < f->K4; k4++) {
            long px = tap_offset(L, f, k4);
            f->boff[k4] = 4 * px;
            maxo = px > maxo ? px : maxo;
        }
        /* the last panel reads 4 bytes per wide pixel up to nwide - 1 past the
         * largest offset: slack after the planes, which feeds only discarded
         * wide columns (it holds zeros or an earlier layer's bytes) */
        long px = (long)Cg * r->stride * r->stride * f->plane;
        px = maxo + f->nwide > px ? maxo + f->nwide : px;
        f->x8_sz = (4 * px + 63) / 64 * 64;
        if (r->nnz && (st = prepare_residual(L, f, idx)) != APB_OK)
            goto fail;
        f->pkind = PL_CODE8;
        f->csgn = r->akind == APBRT_A_S8;
        f->cstep = r->act_step;
    }
    L->fast = f;
    return APB_OK;
fail:
    fast_one_free(f);
    return st;
}

/* Opt-in (APBRT_WINOGRAD=1 when the model is loaded): fp32 3x3 stride-1 pad-1
 * convs (fp32 weights, fp input) with >= WINO_MIN input and output channels run
 * by Winograd F(4x4, 3x3) (kernels/winograd.h): 36 multiplies per 4x4 output tile
 * instead of 144. The transformed weights are made and packed for the GEMMs here,
 * once (4x the layer's weight floats: at batch 1 streaming them costs more than
 * the multiplies saved, docs/INFERENCE.md). The layer's result differs from the
 * direct product, which the training graph computes in eval mode, by rounding
 * only; it is not the same bits, and a quantized layer further on may see a
 * different sign or level where its input is within rounding of a threshold.
 * The default path keeps the training graph's bits: hence opt-in. */
#define WINO_MIN 128

static int wino_fits(const apbrt_rt_layer *L)
{
    const apbrt_rec *r = &L->r;
    const char *e = getenv("APBRT_WINOGRAD");
    return e && strcmp(e, "1") == 0 && r->kind == APBRT_CONV && r->akind == APBRT_A_FP &&
           r->wkind == APBRT_W_FP32 &&
           r->kh == 3 && r->kw == 3 && r->stride == 1 && r->pad == 1 && L->ic >= WINO_MIN &&
           r->cout >= WINO_MIN && L->weff && apb_wino_enabled();
}

static apb_status wino_pack_weights(apbrt_rt_layer *L, apbrt_fast *f, int idx)
{
    int M = L->r.cout, C = L->ic;
    float *U = malloc(sizeof(float) * apb_wino_u_floats(M, C));
    float *pu = apb_alloc_aligned(sizeof(float) * apb_wino_packed_floats(M, C));
    if (!U || !pu) {
        free(U);
        apb_free_aligned(pu);
        return apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
    }
    apb_wino_weights(M, C, L->weff, 0, U, apb_threads_get());
    apb_wino_pack(M, C, U, pu, apb_threads_get());
    free(U);
    apb_free_aligned(f->wu);
    f->wu = pu;
    f->wisa = (int)apb_isa_active();
    return APB_OK;
}

static apb_status prepare_wino(apbrt_rt_layer *L, int idx)
{
    apbrt_fast *f = calloc(1, sizeof *f);
    if (!f)
        return apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
    f->wino = 1;
    apb_status st = wino_pack_weights(L, f, idx);
    if (st != APB_OK) {
        fast_one_free(f);
        return st;
    }
    L->fast = f;
    return APB_OK;
}

/* The in-place binary conv (see apbrt_fast's ind_ok), only for 64 input
 * channels at stride 1, where the channel-packed image [(H+2P)*(W+2P)][1 word]
 * is itself the plane (plane_geometry's Hq x Wq) and tap (kh, kw) is the word
 * offset kh*Wq + kw. Measured on Zen 5, session 14, docs/INFERENCE.md: ResNet-18's
 * 64-channel convs 3-6% faster; wider inputs would need a transpose into
 * per-word planes, and at maps of 14 and 7 the wide rows (Wq = OW + 2) and
 * per-image tiles stream the weights 1.5x as often: 30-40% slower there, so they
 * keep the packed GEMM. Also the planes' size with the kernel's read slack and
 * the padding pattern per wide pixel (0 past OW: those columns are dropped). */
static apb_status prepare_ind(apbrt_rt_layer *L, apbrt_fast *f, int idx)
{
    const apbrt_rec *r = &L->r;
    int KH = r->kh, KW = r->kw;
    if (L->ic != 64 || r->stride != 1 || plane_geometry(L, f, idx) != APB_OK)
        return APB_OK; /* the packed GEMM (planes too large to size: so would the residual's be) */
    int Wq = f->Wq;
    f->incol = (long)f->OH * Wq;
    if (!(f->iboff = malloc(sizeof(long) * (size_t)(KH * KW))))
        return apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
    for (int t = 0; t < KH * KW; t++)
        f->iboff[t] = (long)(t / KW) * Wq + t % KW;
    /* the last panel reads up to 8 words past ncol from the largest offset */
    long need = f->iboff[KH * KW - 1] + (f->incol + 7) / 8 * 8 + 8;
    f->istride = ((f->plane > need ? f->plane : need) + 7) / 8 * 8;
    if (f->has_pad) {
        f->ipad = f->pad;
        f->ipad.N = (int)f->incol;
        if (!(f->ipad.pattern = calloc((size_t)f->incol, sizeof(int32_t))))
            return apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
        for (int oh = 0; oh < f->OH; oh++)
            for (int ow = 0; ow < f->OW; ow++)
                f->ipad.pattern[(long)oh * Wq + ow] = f->pad.pattern[(long)oh * f->OW + ow];
    }
    f->ind_ok = 1;
    return APB_OK;
}

/* The in-place path at this run: APBRT_IND=0 never, =1 at every ISA level
 * (portable kernel below AVX-512; tests), unset where apb_bgemm_ind_fast(). */
static int use_ind(const apbrt_fast *f)
{
    if (!f->ind_ok)
        return 0;
    const char *e = getenv("APBRT_IND");
    if (e && !strcmp(e, "0"))
        return 0;
    if (e && !strcmp(e, "1"))
        return 1;
    return apb_bgemm_ind_fast();
}

static apb_status prepare_layer(apbrt_rt_layer *L, int idx)
{
    const apbrt_rec *r = &L->r;
    int w = r->wkind, a = r->akind;
    if (wino_fits(L))
        return prepare_wino(L, idx);
    if (w == APBRT_W_APB && apbrt_akind_int8(a) && L->K <= (1L << 22)) /* int32 dots */
        return prepare_layer_i8(L, idx);
    if (a == APBRT_A_S8D && L->K <= (1L << 16)) /* int32 dots of products up to 255 * 127 */
        return prepare_layer_i8(L, idx);
    if (!((w == APBRT_W_APB || w == APBRT_W_Q2) && (a == APBRT_A_BIN || a == APBRT_A_Q2)))
        return APB_OK;
    if (L->K > (1L << 30))
        return APB_OK;
    int M = r->cout, K = (int)L->K, ld = apb_bits_ld(K), words = apb_bits_words(K);
    apbrt_fast *f = calloc(1, sizeof *f);
    if (!f)
        return apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
    f->ld = ld;
    f->wsgn = apb_alloc_aligned((size_t)M * ld * 8);
    f->scale = malloc((size_t)M * sizeof(float));
    if (w == APBRT_W_Q2)
        f->wmag = apb_alloc_aligned((size_t)M * ld * 8);
    if (!f->wsgn || !f->scale || (w == APBRT_W_Q2 && !f->wmag)) {
        fast_one_free(f);
        return apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
    }
    memset(f->wsgn, 0, (size_t)M * ld * 8);
    if (f->wmag)
        memset(f->wmag, 0, (size_t)M * ld * 8);
    if (w == APBRT_W_APB) {
        f->kind = a == APBRT_A_BIN ? APB_BGEMM_1X1 : APB_BGEMM_1X2;
        for (int mm = 0; mm < M; mm++) {
            memcpy(f->wsgn + (size_t)mm * ld, L->signs + (size_t)mm * words, (size_t)words * 8);
            f->scale[mm] = a == APBRT_A_BIN ? L->alpha[mm] : L->alpha[mm] * (0.5f * r->act_step);
        }
    } else {
        f->kind = APB_BGEMM_2X2;
        f->bin_as_2bit = a == APBRT_A_BIN;
        float unit = 0.5f * r->wstep * (a == APBRT_A_BIN ? 1.0f : 0.5f * r->act_step);
        for (int mm = 0; mm < M; mm++) {
            f->scale[mm] = unit;
            for (int j = 0; j < K; j++) {
                long l = lrintf(L->weff[(size_t)mm * K + j] / r->wstep + 1.5f);
                uint64_t bit = 1ull << (j & 63);
                if (l <= 1)
                    f->wsgn[(size_t)mm * ld + (j >> 6)] |= bit;
                if (l == 0 || l == 3)
                    f->wmag[(size_t)mm * ld + (j >> 6)] |= bit;
            }
        }
    }
    if (r->kind == APBRT_CONV) {
        f->g = (apb_conv_geom){L->ic, L->ih, L->iw, r->kh, r->kw, r->stride, r->pad};
        f->OH = apb_conv_geom_oh(&f->g);
        f->OW = apb_conv_geom_ow(&f->g);
        if (r->pad > 0) {
            apb_status st = apb_bitconv_pad_init(&f->pad, &f->g, M, f->wsgn, f->wmag, ld);
            if (st != APB_OK) {
                fast_one_free(f);
                return apb_fail_context(st, "apbrt: layer %d: ", idx);
            }
            f->has_pad = 1;
        }
        /* channel packing: the padding correction above was built from the weights
         * in im2col order (it sums over padded taps, whatever their order); the
         * GEMM gets them in the order (kh, kw, c) of apb_bitpack_chan_im2col */
        const char *nc = getenv("APBRT_NO_CHANPACK");
        if (apb_chan_ok(&f->g) && !(nc && *nc && strcmp(nc, "0"))) {
            for (int pl = 0; pl < 2; pl++) {
                uint64_t **wp = pl ? &f->wmag : &f->wsgn;
                if (!*wp)
                    continue;
                uint64_t *re = apb_alloc_aligned((size_t)M * ld * 8);
                if (!re) {
                    fast_one_free(f);
                    return apb_fail(APB_ENOMEM, "apbrt: out of memory preparing layer %d", idx);
                }
                apb_bitpack_reorder_hwc(&f->g, M, *wp, re, ld);
                apb_free_aligned(*wp);
                *wp = re;
            }
            f->chan = 1;
        }
        if (f->chan && f->kind == APB_BGEMM_1X1 && !f->bin_as_2bit) {
            apb_status st = prepare_ind(L, f, idx);
            if (st != APB_OK) {
                fast_one_free(f);
                return st;
            }
        }
        if (r->nnz) {
            apb_status st = plane_geometry(L, f, idx);
            if (st == APB_OK)
                st = prepare_residual(L, f, idx);
            if (st != APB_OK) {
                fast_one_free(f);
                return st;
            }
            f->pkind = a == APBRT_A_BIN ? PL_BIN8 : PL_F32;
            /* 2-bit: (l - 3/2) s = (2l - 3) (s/2), the same float when s/2 is
             * exact (s not the smallest subnormals): signed code bytes */
            float h = r->act_step * 0.5f;
            if (a == APBRT_A_Q2 && h * 2.0f == r->act_step && h > 0.0f)
                f->pkind = PL_CODE8, f->csgn = 1, f->cstep = h;
        }
    }
    L->fast = f;
    return APB_OK;
}

int apbrt_fast_inplace_ready(const apbrt_rt_layer *L) { return L->fast && L->fast->ind_ok; }

int apbrt_fast_runs(const apbrt_model *m, const apbrt_rt_layer *L)
{
    if (!L->fast || m->reference)
        return 0;
    /* S8D: the exact mode runs the FP32 conv; without VNNI the float path computes
     * the same approximation faster than the portable integer kernel */
    return !L->fast->s8d || (!m->exact && apb_i8gemm_w8_fast());
}

const char *apbrt_fast_kernel(const apbrt_rt_layer *L)
{
    return !L->fast ? NULL : L->fast->wino ? "wino" : L->fast->s8d ? "8x8" : L->fast->i8 ? "1x8"
                                                   : apb_bgemm_kind_name(L->fast->kind);
}

apb_status apbrt_fast_prepare(apbrt_model *m)
{
    APB_TRY(apbrt_fast_work_new(m));
    for (int i = 0; i < m->nlayers; i++) {
        apbrt_rt_layer *L = &m->layers[i];
        if (!L->fused && (L->r.kind == APBRT_CONV || L->r.kind == APBRT_LINEAR))
            APB_TRY(prepare_layer(L, i));
    }
    return APB_OK;
}

/* Grows *p (aligned) to hold `need` elements of `el` bytes; zero-fills when asked. */
static int grow(void **p, size_t *cap, size_t need, size_t el, int zero)
{
    if (need <= *cap)
        return 1;
    void *q = apb_alloc_aligned(need * el);
    if (!q)
        return 0;
    if (zero)
        memset(q, 0, need * el);
    apb_free_aligned(*p);
    *p = q;
    *cap = need;
    return 1;
}

/* Bytes per value of the residual's planes. */
static size_t plane_bytes(const apbrt_fast *f) { return f->pkind == PL_F32 ? sizeof(float) : 1; }

/* The residual's phase planes: room for `need` values (bytes or floats), and
 * where value `at` of them lies. */
static int grow_planes(fast_work *w, const apbrt_fast *f, size_t need)
{
    return f->pkind == PL_F32 ? grow((void **)&w->xq, &w->cap_xq, need, 4, 1)
                              : grow((void **)&w->xb, &w->cap_xb, need, 1, 1);
}

static char *planes_at(const fast_work *w, const apbrt_fast *f, size_t at)
{
    return f->pkind == PL_F32 ? (char *)(w->xq + at) : (char *)(w->xb + at);
}

/* q[i] = the value act(x[i]) the layer multiplies: binary sgn(x) (sgn(0) = +1);
 * 2-bit (l - 3/2) * s with l = clamp(floor(x/s) + 2, 0, 3), written as three
 * comparisons of x/s (the same level for every non-NaN x, NaN gives level 0 as
 * the bit packers do; no libm call, so it vectorizes). */
static void quantize_row(const float *restrict x, long cnt, long stride, int akind, float s,
                         float *restrict q)
{
    if (apbrt_akind_int8(akind)) {
        float r = 1.0f / s;
        int sg = akind == APBRT_A_S8;
#pragma omp simd
        for (long i = 0; i < cnt; i++)
            q[i] = (float)apb_i8_code(x[i * stride], r, sg) * s;
    } else if (akind == APBRT_A_BIN) {
        if (stride == 1) {
#pragma omp simd
            for (long i = 0; i < cnt; i++)
                q[i] = x[i] >= 0.0f ? 1.0f : -1.0f;
        } else {
            for (long i = 0; i < cnt; i++)
                q[i] = x[i * stride] >= 0.0f ? 1.0f : -1.0f;
        }
    } else if (stride == 1) {
#pragma omp simd
        for (long i = 0; i < cnt; i++) {
            float t = x[i] / s;
            float l = (t >= -1.0f ? 1.0f : 0.0f) + (t >= 0.0f ? 1.0f : 0.0f) + (t >= 1.0f ? 1.0f : 0.0f);
            q[i] = (l - 1.5f) * s;
        }
    } else {
        for (long i = 0; i < cnt; i++) {
            float t = x[i * stride] / s;
            float l = (t >= -1.0f ? 1.0f : 0.0f) + (t >= 0.0f ? 1.0f : 0.0f) + (t >= 1.0f ? 1.0f : 0.0f);
            q[i] = (l - 1.5f) * s;
        }
    }
}

/* The 2-bit code 2l - 3 of x (l as quantize_row's). */
static inline int8_t q2_code(float x, float s)
{
    float t = x / s;
    return (int8_t)(2 * ((t >= -1.0f) + (t >= 0.0f) + (t >= 1.0f)) - 3);
}

/* The codes of n values x[i * stride] (PL_CODE8 planes of 2-bit activations). */
static void code_row_q2(const float *restrict x, long n, long stride, float s, int8_t *restrict q)
{
    if (stride == 1) { /* contiguous: vectorizes */
#pragma omp simd
        for (long i = 0; i < n; i++)
            q[i] = q2_code(x[i], s);
        return;
    }
    for (long i = 0; i < n; i++)
        q[i] = q2_code(x[i * stride], s);
}

/* Channel c of one image x[C, H, W] -> its S*S quantized, zero-padded phase
 * planes in the image's planes xp: bytes for binary activations (PL_BIN8), the
 * 2-bit codes (PL_CODE8: the 8-bit convs make theirs with their GEMM's bytes,
 * build_planes_i8), else floats. */
static void build_planes(const apbrt_rt_layer *L, const apbrt_fast *f, const float *x, int c, void *xp)
{
    const apbrt_rec *r = &L->r;
    int S = r->stride, P = r->pad, H = L->ih, W = L->iw, Wq = f->Wq;
    size_t vsz = plane_bytes(f);
    if (f->pkind == PL_BIN8) {
        apb_ew_sign_planes(x + (long)c * H * W, H, W, S, P, f->Hq, Wq,
                           (int8_t *)xp + (long)c * S * S * f->plane);
        return;
    }
    for (int a = 0; a < S; a++)
        for (int b = 0; b < S; b++) {
            char *pl = (char *)xp + ((long)(c * S + a) * S + b) * f->plane * vsz;
            int jlo, jhi;
            apb_phase_cols(W, S, P, b, Wq, &jlo, &jhi);
            for (int i = 0; i < f->Hq; i++) {
                char *d = pl + (long)i * Wq * vsz;
                int row = i * S + a - P;
                if (row < 0 || row >= H) {
                    memset(d, 0, (size_t)Wq * vsz);
                    continue;
                }
                const float *src = x + ((long)c * H + row) * W + (long)jlo * S + b - P;
                memset(d, 0, (size_t)jlo * vsz); /* zeros are all-zero bits for both kinds */
                memset(d + (long)jhi * vsz, 0, (size_t)(Wq - jhi) * vsz);
                if (f->pkind == PL_CODE8)
                    code_row_q2(src, jhi - jlo, S, r->act_step, (int8_t *)d + jlo);
                else
                    quantize_row(src, jhi - jlo, S, r->akind, r->act_step, (float *)d + jlo);
            }
        }
}

/* The 8-bit planes of channel group g (channels 4g .. 4g+3) of one image
 * x[C, H, W]: its S*S zero-padded byte phase planes, the 4 channels'
 * codes interleaved per pixel (+ 128 when signed; padding and channels past C
 * = the zero point), and, when xq is not NULL, the same channels' code planes
 * for the residual (build_planes' layout, one byte per code), in one pass. */
static void build_planes_i8(const apbrt_rt_layer *L, const apbrt_fast *f, const float *x, int g,
                            float step, uint8_t *x8, uint8_t *xq)
{
    const apbrt_rec *r = &L->r;
    int S = r->stride, P = r->pad, H = L->ih, W = L->iw, Wq = f->Wq;
    int sg = r->akind == APBRT_A_S8 || r->akind == APBRT_A_S8D;
    int c0 = 4 * g, nc = L->ic - c0 < 4 ? L->ic - c0 : 4;
    uint8_t zp = sg ? 128 : 0;
    long ldq = (long)S * S * f->plane;
    for (int a = 0; a < S; a++)
        for (int b = 0; b < S; b++) {
            uint8_t *pl = x8 + ((long)(g * S + a) * S + b) * f->plane * 4;
            uint8_t *ql = xq ? xq + ((long)(c0 * S + a) * S + b) * f->plane : NULL;
            int jlo, jhi;
            apb_phase_cols(W, S, P, b, Wq, &jlo, &jhi);
            for (int i = 0; i < f->Hq; i++) {
                uint8_t *d = pl + (long)i * Wq * 4;
                uint8_t *qi = ql ? ql + (long)i * Wq : NULL;
                int row = i * S + a - P;
                if (row < 0 || row >= H) {
                    memset(d, zp, (size_t)Wq * 4);
                    for (int c = 0; qi && c < nc; c++)
                        memset(qi + c * ldq, 0, (size_t)Wq);
                    continue;
                }
                memset(d, zp, (size_t)jlo * 4);
                memset(d + (long)jhi * 4, zp, (size_t)(Wq - jhi) * 4);
                for (int c = 0; qi && c < nc; c++) {
                    memset(qi + c * ldq, 0, (size_t)jlo);
                    memset(qi + c * ldq + jhi, 0, (size_t)(Wq - jhi));
                }
                const float *src = x + ((long)c0 * H + row) * W + (long)jlo * S + b - P;
                apb_i8_quant4(jhi - jlo, nc, src, (long)H * W, S, step, sg, d + (long)jlo * 4,
                              qi ? qi + jlo : NULL, ldq);
            }
        }
}

/* Batched repeat of the layer's padding pattern for n images. */
static apb_status batch_pad(apbrt_fast *f, int n, long ohw, apb_bitconv_pad *out)
{
    *out = f->pad;
    if (n == 1)
        return APB_OK;
    if (n > f->padb_cap) {
        int32_t *p = malloc((size_t)n * ohw * sizeof *p);
        if (!p)
            return apb_fail(APB_ENOMEM, "apbrt: out of memory for a batch of %d", n);
        for (long b = 0; b < n; b++)
            memcpy(p + b * ohw, f->pad.pattern, (size_t)ohw * sizeof *p);
        free(f->padb_pattern);
        f->padb_pattern = p;
        f->padb_cap = n;
    }
    out->N = (int)(n * ohw);
    out->pattern = f->padb_pattern;
    return APB_OK;
}

/* Images per GEMM: enough for ~2048 columns, so the deep layers (49 or 196
 * pixels per image) get a reasonable N while the packed operands of a chunk stay
 * in L2. The chunking depends on the batch size only through where chunks
 * start; every element is computed the same way in any chunk. */
#define CHUNK_PIXELS 2048

/* Channel packing of one image, then the GEMM operand by word copies. */
static apb_status chan_pack(const apbrt_fast *f, const float *x, float s, int planes, uint64_t *z0,
                            uint64_t *z1, uint64_t *a0, uint64_t *a1, int ld)
{
    APB_TRY(apb_bitpack_chan(&f->g, x, s, planes, z0, z1));
    APB_TRY(apb_bitpack_chan_im2col(&f->g, z0, a0, ld));
    return planes == 2 ? apb_bitpack_chan_im2col(&f->g, z1, a1, ld) : APB_OK;
}

/* Output rows per residual chunk: 64 / Wq whole rows, or one row (in 64-column
 * pieces) when a row is wider than a chunk. */
static int chunk_rows(const apbrt_fast *f)
{
    return f->Wq <= APB_SPMM_NC ? APB_SPMM_NC / f->Wq : 1;
}

/* Residual + epilogue of one image, output channels [m0, m1) (at most RES_CG, in
 * blocks of RES_CB per chunk),
 * output rows [oh0, oh1): out = post(GEMM + R (*) planes) per element. Each chunk
 * of APB_SPMM_NC wide pixels starts at an output row: it covers 64 / Wq whole
 * rows, or 64 columns of one longer row. yimg: the image's GEMM result, channel
 * c's row oh at yimg + c*ldy + oh*yrow (yrow = OW compact, Wq wide). */
static void res_rows(const apbrt_rt_layer *L, const apbrt_fast *f, const void *xp, const float *yimg,
                     long ldy, long yrow, float *oimg, int m0, int m1, int oh0, int oh1)
{
    /* the chunk kernel for the planes' kind, at the active level */
    apb_spmm_offset_fn fn = f->pkind == PL_F32 ? apb_spmm_offset_kernel() : NULL;
    apb_spmm_offset_i8_fn fn8 = f->pkind == PL_BIN8 ? apb_spmm_offset_i8_kernel() : NULL;
    apb_spmm_offset_q8_fn fnq = f->pkind == PL_CODE8 ? apb_spmm_offset_q8_kernel() : NULL;
    float acc[RES_CB * APB_SPMM_NC], cmp[APB_SPMM_NC];
    int Wq = f->Wq, OW = f->OW, rows = chunk_rows(f);
    long ohw = (long)f->OH * OW;
    for (int oh = oh0; oh < oh1; oh += rows) {
        int nr = oh1 - oh < rows ? oh1 - oh : rows;
        for (int o0 = 0; o0 < OW; o0 += APB_SPMM_NC) {
            int len = OW - o0 < APB_SPMM_NC ? OW - o0 : APB_SPMM_NC;
            for (int c = m0; c < m1; c++) {
                int b0 = m0 + (c - m0) / RES_CB * RES_CB; /* c's block of RES_CB channels */
                if (c == b0) { /* the chunk's planes stay in L1 across the blocks */
                    int b1 = b0 + RES_CB < m1 ? b0 + RES_CB : m1;
                    long at = (long)oh * Wq + o0;
                    if (f->pkind == PL_BIN8)
                        fn8(&f->R, b0, b1, (const int8_t *)xp + at, acc);
                    else if (f->pkind == PL_CODE8)
                        fnq(&f->R, b0, b1, (const uint8_t *)xp + at, f->csgn, f->cstep, acc);
                    else
                        fn(&f->R, b0, b1, (const float *)xp + at, acc);
                }
                const float *a = acc + (c - b0) * APB_SPMM_NC;
                const float *yc = yimg + c * ldy + (long)oh * yrow + o0;
                float *oc = oimg + c * ohw + (long)oh * OW + o0;
                if (nr > 1 && yrow == OW) { /* rows contiguous in y and out: one pass */
                    for (int i = 0; i < nr; i++)
                        for (int j = 0; j < OW; j++)
                            cmp[i * OW + j] = a[i * Wq + j];
                    apbrt_post_rows(L, c, yc, cmp, oc, (long)nr * OW);
                    continue;
                }
                for (int i = 0; i < nr; i++)
                    apbrt_post_rows(L, c, yc + i * yrow, a + i * Wq, oc + i * OW, len);
            }
        }
    }
}

/* Residual + epilogue of a chunk of cnt images, as tasks (image, band of output
 * rows, group of RES_CG channels); y: the GEMM result [M, ldy] with image b's
 * pixels from b * yimg, rows yrow apart. */
static void res_epilogue(const apbrt_rt_layer *L, const apbrt_fast *f, const void *xq, int cnt,
                         const float *y, long ldy, long yimg, long yrow, float *outc, int nth)
{
    int M = L->r.cout, OH = f->OH, Wq = f->Wq, rows = chunk_rows(f);
    int band = (RES_BAND + Wq - 1) / Wq; /* output rows per band, whole chunks */
    band = (band + rows - 1) / rows * rows;
    int nband = (OH + band - 1) / band, ncb = (M + RES_CG - 1) / RES_CG;
    long tasks = (long)cnt * nband * ncb, ohw = (long)OH * f->OW;
    size_t vsz = plane_bytes(f);
#pragma omp parallel for num_threads(nth) if (nth > 1 && (long)M * cnt * ohw > 16384) schedule(dynamic, 1)
    for (long t = 0; t < tasks; t++) {
        long b = t / (nband * ncb);
        int g = (int)(t / ncb % nband), m0 = (int)(t % ncb) * RES_CG;
        int m1 = m0 + RES_CG < M ? m0 + RES_CG : M, oh0 = g * band;
        int oh1 = oh0 + band < OH ? oh0 + band : OH;
        res_rows(L, f, (const char *)xq + b * f->xp_sz * vsz, y + b * yimg, ldy, yrow, outc + b * M * ohw, m0,
                 m1, oh0, oh1);
    }
}

/* The epilogue without a residual, with res_epilogue's view of y, as tasks
 * (image, block of RES_MB channels): compact rows (yrow == OW) in one pass per
 * channel, wide ones row by row. */
/* The epilogue without a residual of one image's channels [m0, m1), output rows
 * [oh0, oh1), from its GEMM result yimg (res_rows' view): compact rows (yrow ==
 * OW) in one pass per channel, wide ones row by row. */
static void plain_rows(const apbrt_rt_layer *L, const apbrt_fast *f, const float *yimg, long ldy, long yrow,
                       float *oimg, int m0, int m1, int oh0, int oh1)
{
    long ohw = (long)f->OH * f->OW;
    for (int c = m0; c < m1; c++) {
        const float *yc = yimg + (size_t)c * ldy + oh0 * yrow;
        float *oc = oimg + c * ohw + (long)oh0 * f->OW;
        if (yrow == f->OW)
            apbrt_post_rows(L, c, yc, NULL, oc, (long)(oh1 - oh0) * f->OW);
        else
            for (int oh = 0; oh < oh1 - oh0; oh++)
                apbrt_post_rows(L, c, yc + oh * yrow, NULL, oc + (long)oh * f->OW, f->OW);
    }
}

static void plain_epilogue(const apbrt_rt_layer *L, const apbrt_fast *f, int cnt, const float *y,
                           long ldy, long yimg, long yrow, float *outc, int nth)
{
    int M = L->r.cout, mb = (M + RES_MB - 1) / RES_MB;
    long ohw = (long)f->OH * f->OW, tasks = (long)cnt * mb;
#pragma omp parallel for num_threads(nth) if (nth > 1 && (long)M * cnt * ohw > 16384) schedule(dynamic, 1)
    for (long t = 0; t < tasks; t++) {
        long b = t / mb;
        int m0 = (int)(t % mb) * RES_MB, m1 = m0 + RES_MB < M ? m0 + RES_MB : M;
        plain_rows(L, f, y + b * yimg, ldy, yrow, outc + b * M * ohw, m0, m1, 0, f->OH);
    }
}

int apbrt_bands_off;

/* The units a one-image bit conv claims (apb_claims), the same in its GEMM
 * (apb_bgemm_epilogue's bands), its residual and epilogue (fused per unit) and
 * its planes (nu units of phase rows): ur output rows (of g GEMM columns each:
 * about a tile's width) x mb output channels, cut until a team has 4 units a
 * thread. packed: the GEMM packs B per tile (not in place), so M is not cut
 * (each of its blocks would pack the same columns again: measured 1.5x the
 * time on the 14 x 14 layers), rows only, at least 2 units a thread (units
 * down to one register tile's 24 columns); ur 0 when the map has too few rows
 * for that (the caller keeps the stages apart). */
typedef struct {
    int ur, mb;
    long nu, nmb;
} band_plan;

static band_plan plan_bands(const apbrt_fast *f, int M, int g, int nth, int packed)
{
    /* rows per unit: from a tile's width of rows to 4 tiles' (a unit's results
     * stay in the cache for its epilogue), those that give the map the fewest
     * GEMM tiles (each unit's columns in ceil(cols / APB_BGEMM_NC) tiles: a
     * tile has a fixed cost) */
    int OH = f->OH, lo = (APB_BGEMM_NC + g - 1) / g, hi = 4 * APB_BGEMM_NC / g;
    band_plan b = {lo < OH ? lo : OH, M, 0, 0};
    long best = -1;
    for (int ur = b.ur; ur <= OH && (ur <= hi || ur == b.ur); ur++) {
        long full = OH / ur, rest = OH % ur, cu = (long)ur * g, cr = rest * g;
        long tiles = full * ((cu + APB_BGEMM_NC - 1) / APB_BGEMM_NC) + (cr + APB_BGEMM_NC - 1) / APB_BGEMM_NC;
        if (best < 0 || tiles < best)
            best = tiles, b.ur = ur;
    }
    b.nu = (OH + b.ur - 1) / b.ur;
    if (packed) {
        int lo3 = (24 + g - 1) / g; /* fewer rows a unit, down to one 24-column register tile */
        while (b.nu < 2L * nth && b.ur > lo3)
            b.ur--, b.nu = (OH + b.ur - 1) / b.ur;
        if (b.nu < 2L * nth)
            b.ur = 0;
        b.nmb = 1;
        return b;
    }
    while (b.mb > 32 && b.mb % 32 == 0 && b.nu * ((M + b.mb - 1) / b.mb) < 4L * nth)
        b.mb /= 2;
    b.nmb = (M + b.mb - 1) / b.mb;
    return b;
}

/* The residual planes of one image before its GEMM (the fused epilogue's
 * units read them; a unit's taps reach rows past its own): from the bits zb by
 * the units of phase rows plan_bands gives, claimed, else from the floats x,
 * channels over the team. */
static void planes_one(const apbrt_rt_layer *L, const apbrt_fast *f, const float *x, const uint64_t *zb,
                       const uint64_t *zm, char *xq, const band_plan *bp, int nth)
{
    long cpl = (long)L->r.stride * L->r.stride * f->plane;
    if (!zb) {
#pragma omp parallel for num_threads(nth) if (nth > 1 && (long)L->ic * f->plane > 8192) schedule(static)
        for (int c = 0; c < L->ic; c++)
            build_planes(L, f, x, c, xq);
        return;
    }
    /* units: the GEMM's row units x blocks of 16 channels, rows first (a map of
     * one or two row units still splits over a team) */
    long ncb = L->ic / 16;
    apb_claims cp;
    apb_claims_init(&cp, bp->nu * ncb, nth);
#pragma omp parallel num_threads(nth) if (nth > 1 && (long)L->ic * f->plane > 8192)
    for (long i; (i = apb_claim(&cp, apb_thread_num())) >= 0;) {
        long u = i / ncb;
        int i0 = (int)(f->Hq * u / bp->nu), i1 = (int)(f->Hq * (u + 1) / bp->nu), c0 = (int)(i % ncb) * 16;
        apb_chan_planes(&f->g, zb, zm, c0, c0 + 16, i0, i1, (int8_t *)xq + c0 * cpl);
    }
}

/* A one-image bit conv's residual + epilogue fused into its GEMM
 * (apb_bgemm_epilogue.unit_done): run on each unit's output rows and channels
 * by the thread that computed it, while Y's rows are in its cache. */
typedef struct {
    const apbrt_rt_layer *L;
    const apbrt_fast *f;
    const char *xq; /* the planes (planes_one), or NULL without a residual */
    const float *Y;
    long ldy, yrow; /* Y's row stride, and columns per output row (OW or Wq) */
    float *out;
} fused_post;

static void fused_unit(void *ctx, int m0, int m1, int c0, int c1)
{
    const fused_post *p = ctx;
    int oh0 = (int)(c0 / p->yrow), oh1 = (int)((c1 + p->yrow - 1) / p->yrow);
    if (p->xq)
        res_rows(p->L, p->f, p->xq, p->Y, p->ldy, p->yrow, p->out, m0, m1, oh0, oh1);
    else
        plain_rows(p->L, p->f, p->Y, p->ldy, p->yrow, p->out, m0, m1, oh0, oh1);
}

/* A compressed conv's batch, run as chunks of images (run_chunks): the layer,
 * its input and output, its pad pattern (bit convs: the pattern of at least a
 * chunk's images, or NULL) and the work buffers, which hold one copy per thread
 * when chunks run concurrently; *c: the elements of one copy of each. */
typedef struct {
    const apbrt_rt_layer *L;
    const apbrt_fast *f;
    fast_work *w;
    const float *in;
    float *out;
    const apb_bitconv_pad *pad;
    size_t words, yc, xqc, zc, x8c, zqc;
    int ind; /* a binary conv in place (conv_ind_chunk; its input bits in zq) */
} conv_job;

/* Images [b0, b0 + cnt) of a job on nth threads with buffer copy `copy`. */
typedef apb_status (*chunk_fn)(const conv_job *j, int b0, int cnt, int copy, int nth);

/* How a batch of n images is cut into chunks of *nb (<= nb0 images per GEMM):
 * nonzero when there are enough chunks to give every thread whole ones (then
 * each chunk runs on one thread, with its own buffers: what a thread packs
 * stays in its core's cache for its GEMM, and a layer has one barrier instead
 * of three or four per chunk); else chunks of nb0 split over the threads.
 * Either way every element is computed the same way. *nch: chunks. */
static int chunk_plan(int n, int nb0, int nth, int *nb, int *nch)
{
    nb0 = nb0 < n ? nb0 : n;
    int per = (n + nth - 1) / nth, nbp = nb0 < per ? nb0 : per, c = (n + nbp - 1) / nbp;
    int par = nth > 1 && n >= nth && (c % nth == 0 || c >= 4 * nth);
    *nb = par ? nbp : nb0;
    *nch = (n + *nb - 1) / *nb;
    return par;
}

/* Runs a job's n images as chunk_plan cut them: one after another on nth
 * threads (copy 0), or concurrently, one thread and buffer copy per chunk. */
static apb_status run_chunks(const conv_job *j, chunk_fn fn, int n, int nb, int nch, int par, int nth)
{
    if (!par) {
        for (int b0 = 0; b0 < n; b0 += nb)
            APB_TRY(fn(j, b0, n - b0 < nb ? n - b0 : nb, 0, nth));
        return APB_OK;
    }
    apbrt_team_err err = {APB_OK, ""};
#pragma omp parallel num_threads(nth)
    {
        int me = apb_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (int ch = 0; ch < nch; ch++) {
            int b0 = ch * nb;
            apbrt_team_fail(&err, fn(j, b0, n - b0 < nb ? n - b0 : nb, me, 1));
        }
    }
    return apbrt_team_status(&err);
}

/* The channel-packed bits the byte planes are made from (binary or 2-bit input
 * packed along channels, at AVX-512: its sign plane, and *zm its magnitude plane
 * for 2-bit, else NULL), or NULL (planes from the floats). */
static const uint64_t *plane_bits(const conv_job *j, int copy, const uint64_t **zm)
{
    const apbrt_fast *f = j->f;
    int q2 = f->pkind == PL_CODE8 && j->L->r.akind == APBRT_A_Q2; /* 2-bit codes: packed with magnitudes */
    *zm = NULL;
    if (!((f->pkind == PL_BIN8 || q2) && f->chan && apb_chan_planes_ok()))
        return NULL;
    if (q2)
        *zm = j->w->z1 + copy * j->zc;
    return j->ind ? j->w->zq + copy * j->zqc : j->w->z0 + copy * j->zc;
}

/* The GEMM epilogue of a bit conv's chunk: its scale and pad correction, and
 * for one image (unless apbrt_bands_off) the residual + epilogue fused per
 * unit on a team, the planes made first into *fp's (g: GEMM columns per output row, x
 * the image, Y the GEMM's result, out the image's output). */
static apb_bgemm_epilogue conv_ep(const conv_job *j, const apb_bitconv_pad *pad, int cnt, int copy, int g,
                                  const float *x, const float *Y, long ldy, float *out, int nth,
                                  fused_post *fp)
{
    const apbrt_rt_layer *L = j->L;
    const apbrt_fast *f = j->f;
    apb_bgemm_epilogue ep = {f->scale, NULL, pad, 0, 0, 0, NULL, NULL};
    if (cnt != 1 || nth < 2 || apbrt_bands_off) /* one thread: fused measured 1% slower */
        return ep;
    band_plan bp = plan_bands(f, L->r.cout, g, nth, !j->ind);
    if (!bp.ur)
        return ep;
    ep.grain = g, ep.band_rows = bp.ur, ep.band_m = bp.mb;
    *fp = (fused_post){L, f, NULL, Y, ldy, g, out};
    if (f->has_res) {
        char *xq = planes_at(j->w, f, copy * j->xqc);
        const uint64_t *zm, *zb = plane_bits(j, copy, &zm);
        planes_one(L, f, x, zb, zm, xq, &bp, nth);
        fp->xq = xq;
    }
    ep.unit_done = fused_unit;
    ep.ctx = fp;
    return ep;
}

/* One image of a bit conv packed into its GEMM operand (sign plane, and the
 * magnitude plane for 2-bit activations; channel packing through z0/z1). */
static apb_status pack_image(const apbrt_rt_layer *L, const apbrt_fast *f, const float *x,
                             uint64_t *z0, uint64_t *z1, uint64_t *asgn, uint64_t *amag)
{
    const apbrt_rec *r = &L->r;
    int bin = r->akind == APBRT_A_BIN;
    if (f->chan)
        return chan_pack(f, x, r->act_step, bin ? 1 : 2, z0, z1, asgn, amag, f->ld);
    return bin ? apb_bitpack_conv_sign(&f->g, x, asgn, f->ld)
               : apb_bitpack_conv_2bit(&f->g, x, r->act_step, asgn, amag, f->ld);
}

static apb_status conv_chunk_post(const conv_job *j, int b0, int cnt, int copy, int nth, const float *Y,
                                  long ldy, long yimg, long yrow);

/* A chunk of a bit conv: pack, one GEMM Y[M, cnt*ohw] (in place in `out` for
 * one image), residual + epilogue. */
static apb_status conv_chunk(const conv_job *j, int b0, int cnt, int copy, int nth)
{
    const apbrt_rt_layer *L = j->L;
    const apbrt_fast *f = j->f;
    const fast_work *w = j->w;
    int M = L->r.cout, K = (int)L->K, ld = f->ld;
    int packs_mag = f->kind != APB_BGEMM_1X1 && !f->bin_as_2bit;
    long in_sz = (long)L->ic * L->ih * L->iw, ohw = (long)f->OH * f->OW, Nc = cnt * ohw;
    size_t zw = f->chan ? apb_chan_words(&f->g) : 0;
    const float *inc = j->in + (long)b0 * in_sz;
    float *outc = j->out + (long)b0 * M * ohw;
    uint64_t *asgn = w->asgn + copy * j->words, *amag = packs_mag ? w->amag + copy * j->words : NULL;
    uint64_t *z0 = f->chan ? w->z0 + copy * j->zc : NULL;
    uint64_t *z1 = f->chan && packs_mag ? w->z1 + copy * j->zc : NULL;
    apb_bitmat A = {f->wsgn, f->wmag, ld};
    apb_bitmat B = {asgn, packs_mag ? amag : f->bin_as_2bit ? w->zero : NULL, ld};
    apb_bitconv_pad padb;
    if (j->pad) { /* the pattern repeats per image: the first cnt of them */
        padb = *j->pad;
        padb.N = (int)(cnt * ohw);
    }
    /* pack the chunk's images (the packers' scratch is per thread); one image
     * is packed by a call of its own, which splits it over the threads itself
     * when nth > 1 */
    apbrt_team_err err = {APB_OK, ""};
    if (cnt == 1)
        apbrt_team_fail(&err, pack_image(L, f, inc, z0, z1, asgn, amag));
#pragma omp parallel for num_threads(nth) if (cnt > 1 && nth > 1) schedule(static)
    for (long b = 0; b < (cnt > 1 ? cnt : 0); b++) {
        size_t o = (size_t)b * ohw * ld, zo = (size_t)b * zw;
        apbrt_team_fail(&err, pack_image(L, f, inc + b * in_sz, z0 ? z0 + zo : NULL, z1 ? z1 + zo : NULL,
                                    asgn + o, amag ? amag + o : NULL));
    }
    APB_TRY(apbrt_team_status(&err));
    float *Y = cnt == 1 ? outc : w->y + copy * j->yc;
    fused_post fp;
    apb_bgemm_epilogue ep = conv_ep(j, j->pad ? &padb : NULL, cnt, copy, f->OW, inc, Y, Nc, outc, nth, &fp);
    APB_TRY(apb_bgemm_f32(f->kind, M, (int)Nc, K, &A, &B, &ep, Y, (int)Nc));
    return ep.unit_done ? APB_OK : conv_chunk_post(j, b0, cnt, copy, nth, Y, Nc, ohw, f->OW);
}

/* A chunk of a binary conv in place: channel packing into the plane, one
 * indirect GEMM over the chunk's images into wide rows (Wq per output row),
 * residual + epilogue on the OW valid columns. */
static apb_status conv_ind_chunk(const conv_job *j, int b0, int cnt, int copy, int nth)
{
    const apbrt_rt_layer *L = j->L;
    const apbrt_fast *f = j->f;
    const fast_work *w = j->w;
    int M = L->r.cout, K = (int)L->K;
    long in_sz = (long)L->ic * L->ih * L->iw, ncol = f->incol, Nc = cnt * ncol;
    const float *inc = j->in + (long)b0 * in_sz;
    uint64_t *zq = w->zq + copy * j->zqc;
    apbrt_team_err err = {APB_OK, ""};
    /* 64 channels, stride 1: the channel-packed image is the plane (prepare_ind);
     * the words past it (the kernel's slack) may hold an earlier layer's: only
     * the dropped columns (ow >= OW, q >= ncol) read them */
    if (cnt == 1)
        apbrt_team_fail(&err, apb_bitpack_chan(&f->g, inc, L->r.act_step, 1, zq, NULL));
#pragma omp parallel for num_threads(nth) if (cnt > 1 && nth > 1) schedule(static)
    for (long b = 0; b < (cnt > 1 ? cnt : 0); b++)
        apbrt_team_fail(&err, apb_bitpack_chan(&f->g, inc + b * in_sz, L->r.act_step, 1, zq + b * f->istride, NULL));
    APB_TRY(apbrt_team_status(&err));
    apb_bitmat A = {f->wsgn, NULL, f->ld};
    float *Y = w->y + copy * j->yc, *outc = j->out + (long)b0 * M * f->OH * f->OW;
    fused_post fp;
    apb_bgemm_epilogue ep = conv_ep(j, f->has_pad ? &f->ipad : NULL, cnt, copy, f->Wq, inc, Y, Nc, outc, nth, &fp);
    APB_TRY(apb_bgemm_ind_f32(M, (int)ncol, cnt, K, &A, zq, f->istride, f->iboff, &ep, Y, (int)Nc, ncol));
    return ep.unit_done ? APB_OK : conv_chunk_post(j, b0, cnt, copy, nth, Y, Nc, ncol, f->Wq);
}

/* The residual (when the layer has outliers) and the epilogue of a bit conv's
 * chunk from its GEMM result Y [M, ldy], image b's columns from b * yimg, output
 * rows yrow apart (OW compact, Wq wide). */
static apb_status conv_chunk_post(const conv_job *j, int b0, int cnt, int copy, int nth, const float *Y,
                                  long ldy, long yimg, long yrow)
{
    const apbrt_rt_layer *L = j->L;
    const apbrt_fast *f = j->f;
    const fast_work *w = j->w;
    int M = L->r.cout;
    long in_sz = (long)L->ic * L->ih * L->iw, ohw = (long)f->OH * f->OW;
    const float *inc = j->in + (long)b0 * in_sz;
    float *outc = j->out + (long)b0 * M * ohw;
    if (!f->has_res) {
        plain_epilogue(L, f, cnt, Y, ldy, yimg, yrow, outc, nth);
        return APB_OK;
    }
    size_t vsz = plane_bytes(f);
    char *xq = planes_at(w, f, copy * j->xqc);
    /* binary or 2-bit, channel-packed input: the byte planes from its bits (a
     * 32nd or 16th of the floats' bytes to read), 16 channels per task; else
     * from the floats */
    const uint64_t *zm, *zb = plane_bits(j, copy, &zm);
    long zstride = j->ind ? f->istride : (long)apb_chan_words(&f->g);
    if (zb) {
        int nb16 = L->ic / 16;
        long cpl = (long)L->r.stride * L->r.stride * f->plane;
#pragma omp parallel for num_threads(nth) if (nth > 1 && in_sz * cnt > 8192) schedule(static)
        for (long t = 0; t < (long)cnt * nb16; t++) {
            long b = t / nb16;
            int c0 = (int)(t % nb16) * 16;
            apb_chan_planes(&f->g, zb + b * zstride, zm ? zm + b * zstride : NULL, c0, c0 + 16, 0, f->Hq,
                            (int8_t *)xq + b * f->xp_sz + c0 * cpl);
        }
    } else {
        long tasks = (long)cnt * L->ic;
#pragma omp parallel for num_threads(nth) if (nth > 1 && in_sz * cnt > 8192) schedule(static)
        for (long t = 0; t < tasks; t++)
            build_planes(L, f, inc + (t / L->ic) * in_sz, (int)(t % L->ic),
                         xq + (t / L->ic) * f->xp_sz * vsz);
    }
    res_epilogue(L, f, xq, cnt, Y, ldy, yimg, yrow, outc, nth);
    return APB_OK;
}

static apb_status run_conv(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out)
{
    apbrt_fast *f = L->fast;
    fast_work *w = m->fast_work;
    int M = L->r.cout, ld = f->ld, nth = apb_threads_get();
    int packs_mag = f->kind != APB_BGEMM_1X1 && !f->bin_as_2bit;
    long ohw = (long)f->OH * f->OW;
    size_t zw = f->chan ? apb_chan_words(&f->g) : 0;
    int nb, nch, par = chunk_plan(n, ohw >= CHUNK_PIXELS ? 1 : (int)(CHUNK_PIXELS / ohw), nth, &nb, &nch);
    int copies = par ? nth : 1;
    long N = nb * ohw;
    if (N > (1L << 30))
        return apb_fail(APB_EINVAL, "apbrt: layer of %ld pixels too large for one GEMM", ohw);
    conv_job j = {.L = L, .f = f, .w = w, .in = in, .out = out, .words = (size_t)N * ld,
                  .yc = (size_t)M * N, .xqc = (size_t)nb * f->xp_sz, .zc = (size_t)nb * zw};
    if (use_ind(f)) { /* no im2col words: the planes, wide GEMM rows */
        j.ind = 1;
        j.zqc = (size_t)nb * f->istride;
        j.yc = (size_t)M * nb * f->incol;
        if (!grow((void **)&w->y, &w->cap_y, copies * j.yc, 4, 0) ||
            (f->has_res && !grow_planes(w, f, copies * j.xqc)) ||
            !grow((void **)&w->zq, &w->cap_zq, copies * j.zqc, 8, 1))
            return apb_fail(APB_ENOMEM, "apbrt: out of memory for a batch of %d", n);
        return run_chunks(&j, conv_ind_chunk, n, nb, nch, par, nth);
    }
    if (!grow((void **)&w->asgn, &w->cap_sgn, copies * j.words, 8, 0) ||
        (packs_mag && !grow((void **)&w->amag, &w->cap_mag, copies * j.words, 8, 0)) ||
        (f->bin_as_2bit && !grow((void **)&w->zero, &w->cap_zero, j.words, 8, 1)) ||
        (nb > 1 && !grow((void **)&w->y, &w->cap_y, copies * j.yc, 4, 0)) ||
        (f->has_res && !grow_planes(w, f, copies * j.xqc)) ||
        (f->chan && !grow((void **)&w->z0, &w->cap_z0, copies * j.zc, 8, 0)) ||
        (f->chan && packs_mag && !grow((void **)&w->z1, &w->cap_z1, copies * j.zc, 8, 0)))
        return apb_fail(APB_ENOMEM, "apbrt: out of memory for a batch of %d", n);
    apb_bitconv_pad padb;
    if (f->has_pad) { /* the pattern for nb images, made before any thread reads it */
        APB_TRY(batch_pad(f, nb, ohw, &padb));
        j.pad = &padb;
    }
    return run_chunks(&j, conv_chunk, n, nb, nch, par, nth);
}

/* A chunk of an 8-bit conv: blocked byte planes (+ the residual's float
 * planes) -> one integer GEMM reading them in place -> residual + epilogue on
 * the OW valid columns of each row. */
static apb_status conv_i8_chunk(const conv_job *j, int b0, int cnt, int copy, int nth)
{
    const apbrt_rt_layer *L = j->L;
    const apbrt_fast *f = j->f;
    int M = L->r.cout, Cg = (L->ic + 3) / 4;
    long in_sz = (long)L->ic * L->ih * L->iw, nw = f->nwide, Nc = cnt * nw;
    const float *inc = j->in + (long)b0 * in_sz;
    float *outc = j->out + (long)b0 * M * f->OH * f->OW;
    uint8_t *x8 = j->w->x8 + copy * j->x8c;
    uint8_t *xq = f->has_res ? (uint8_t *)planes_at(j->w, f, copy * j->xqc) : NULL;
    float *Y = j->w->y + copy * j->yc;
    long tasks = (long)cnt * Cg;
    /* S8D: one image per chunk (run_conv_i8), its own step; the GEMM's scale per
     * row is sw * step */
    if (f->s8d && cnt != 1)
        return apb_fail(APB_EINVAL, "apbrt: an 8-bit first conv's chunk has %d images, not 1", cnt);
    float step = f->s8d ? apbrt_s8d_step(inc, in_sz) : L->r.act_step;
    const float *scale = f->scale;
    if (f->s8d) {
        float *sc = j->w->sc8 + (size_t)copy * M;
        for (int mm = 0; mm < M; mm++)
            sc[mm] = f->scale[mm] * step;
        scale = sc;
    }
#pragma omp parallel for num_threads(nth) if (nth > 1 && in_sz * cnt > 8192) schedule(static)
    for (long t = 0; t < tasks; t++) {
        long b = t / Cg;
        build_planes_i8(L, f, inc + b * in_sz, (int)(t % Cg), step, x8 + b * f->x8_sz,
                        xq ? xq + b * f->xp_sz : NULL);
    }
    APB_TRY((f->s8d ? apb_i8gemm_ind_f32_w8 : apb_i8gemm_ind_f32)(
        M, (int)nw, cnt, f->K4, f->w8, 4L * f->K4, x8, f->x8_sz, f->boff, scale, f->corr, Y, Nc));
    if (xq)
        res_epilogue(L, f, xq, cnt, Y, Nc, nw, f->Wq, outc, nth);
    else
        plain_epilogue(L, f, cnt, Y, Nc, nw, f->Wq, outc, nth);
    return APB_OK;
}

/* 8-bit conv over chunks of images (~CHUNK_PIXELS wide pixels per GEMM), whole
 * chunks per thread or each chunk split over the threads (chunk_plan). */
static apb_status run_conv_i8(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out)
{
    apbrt_fast *f = L->fast;
    fast_work *w = m->fast_work;
    int M = L->r.cout, nth = apb_threads_get();
    long ohw = (long)f->OH * f->OW, nw = f->nwide;
    int nb0 = nw >= CHUNK_PIXELS || f->s8d ? 1 : (int)(CHUNK_PIXELS / nw);
    int nb, nch, par = chunk_plan(n, nb0, nth, &nb, &nch);
    int copies = par ? nth : 1;
    if ((long)nb * nw > (1L << 30))
        return apb_fail(APB_EINVAL, "apbrt: layer of %ld pixels too large for one GEMM", ohw);
    conv_job j = {.L = L, .f = f, .w = w, .in = in, .out = out, .yc = (size_t)M * nb * nw,
                  .xqc = (size_t)nb * f->xp_sz, .x8c = (size_t)nb * f->x8_sz};
    if (!grow((void **)&w->x8, &w->cap_x8, copies * j.x8c, 1, 1) ||
        !grow((void **)&w->y, &w->cap_y, copies * j.yc, 4, 0) ||
        (f->has_res && !grow_planes(w, f, copies * j.xqc)) ||
        (f->s8d && !grow((void **)&w->sc8, &w->cap_sc8, (size_t)copies * M, 4, 0)))
        return apb_fail(APB_ENOMEM, "apbrt: out of memory for a batch of %d", n);
    return run_chunks(&j, conv_i8_chunk, n, nb, nch, par, nth);
}

/* 8-bit linear: one packed column per sample. */
static apb_status run_linear_i8(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out)
{
    apbrt_fast *f = L->fast;
    fast_work *w = m->fast_work;
    const apbrt_rec *r = &L->r;
    int M = r->cout, K = (int)L->K;
    if (!grow((void **)&w->b8, &w->cap_b8, (size_t)apb_i8_packed_bytes(n, f->K4), 1, 0) ||
        (r->nnz && !grow((void **)&w->xq, &w->cap_xq, (size_t)n * K, 4, 0)) ||
        !grow((void **)&w->y, &w->cap_y, (size_t)M * n, 4, 0))
        return apb_fail(APB_ENOMEM, "apbrt: out of memory for a batch of %d", n);
    apb_i8_pack_rows(n, K, in, K, r->act_step, r->akind == APBRT_A_S8, w->b8);
    APB_TRY(apb_i8gemm_f32(M, n, f->K4, f->w8, 4L * f->K4, w->b8, f->scale, f->corr, w->y, n));
    return APB_OK;
}

static apb_status run_wino(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out)
{
    apbrt_fast *f = L->fast;
    fast_work *w = m->fast_work;
    int M = L->r.cout, C = L->ic, H = L->ih, W = L->iw, nth = apb_threads_get();
    if (f->wisa != (int)apb_isa_active()) /* the packing belongs to the ISA level */
        APB_TRY(wino_pack_weights(L, f, (int)(L - m->layers)));
    if (!grow((void **)&w->ww, &w->cap_ww, (size_t)nth * apb_wino_work_floats(C, M, W), 4, 0))
        return apb_fail(APB_ENOMEM, "apbrt: out of memory for a batch of %d", n);
    long ohw = (long)H * W;
    apb_wino_conv_packed(n, C, H, W, in, (long)C * ohw, M, f->wu, 0, out, (long)M * ohw, w->ww,
                         nth);
#pragma omp parallel for num_threads(nth) if (nth > 1 && (long)n * M * ohw > 65536) schedule(static)
    for (long t = 0; t < (long)n * M; t++)
        apbrt_post_rows(L, (int)(t % M), out + t * ohw, NULL, out + t * ohw, ohw);
    return APB_OK;
}

apb_status apbrt_fast_run(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out)
{
    if (L->fast->wino)
        return run_wino(m, L, in, n, out);
    if (L->r.kind == APBRT_CONV)
        return L->fast->i8 ? run_conv_i8(m, L, in, n, out) : run_conv(m, L, in, n, out);
    apbrt_fast *f = L->fast;
    fast_work *w = m->fast_work;
    const apbrt_rec *r = &L->r;
    int M = r->cout, K = (int)L->K, ld = f->ld;
    int packs_mag = f->kind != APB_BGEMM_1X1 && !f->bin_as_2bit;
    size_t words = (size_t)n * ld;
    if (!grow((void **)&w->asgn, &w->cap_sgn, words, 8, 0) ||
        (packs_mag && !grow((void **)&w->amag, &w->cap_mag, words, 8, 0)) ||
        (f->bin_as_2bit && !grow((void **)&w->zero, &w->cap_zero, words, 8, 1)) ||
        (r->nnz && !grow((void **)&w->xq, &w->cap_xq, (size_t)n * K, 4, 0)) ||
        !grow((void **)&w->y, &w->cap_y, (size_t)M * n, 4, 0))
        return apb_fail(APB_ENOMEM, "apbrt: out of memory for a batch of %d", n);
    apb_bitmat A = {f->wsgn, f->wmag, ld};
    apb_bitmat B = {w->asgn, packs_mag ? w->amag : f->bin_as_2bit ? w->zero : NULL, ld};
    apb_bgemm_epilogue ep = {f->scale, NULL, NULL, 0, 0, 0, NULL, NULL};
    /* Linear: one packed row per sample; the GEMM gives y[M, n]. */
    if (f->i8)
        APB_TRY(run_linear_i8(m, L, in, n, out));
    else if (r->akind == APBRT_A_BIN)
        APB_TRY(apb_bitpack_sign(n, K, in, K, w->asgn, ld));
    else
        APB_TRY(apb_bitpack_2bit(n, K, in, K, r->act_step, w->asgn, w->amag, ld));
    if (!f->i8)
        APB_TRY(apb_bgemm_f32(f->kind, M, n, K, &A, &B, &ep, w->y, n));
    if (r->nnz) {
        quantize_row(in, (long)n * K, 1, r->akind, r->act_step, w->xq);
        for (int mm = 0; mm < M; mm++)
            for (uint32_t e = L->rowptr[mm]; e < L->rowptr[mm + 1]; e++) {
                float v = L->rvals[e];
                const float *xc = w->xq + L->colidx[e];
                for (long b = 0; b < n; b++)
                    w->y[(size_t)mm * n + b] += v * xc[b * K];
            }
    }
    for (long b = 0; b < n; b++)
        for (int c = 0; c < M; c++)
            out[b * M + c] = apbrt_post(L, c, w->y[(size_t)c * n + b]);
    return APB_OK;
}
