/* apbrt_fast.c - bit-kernel execution of the compressed layers.
 *
 * Which layers run here (everything else uses sgemm on the dense effective
 * weights, which is the fastest kernel we have for full-precision activations):
 *   APB weights x binary activations   1x1 XNOR-popcount GEMM, scale alpha
 *   APB weights x 2-bit activations    1x2 GEMM, scale alpha * s/2
 *   2-bit weights x 2-bit activations  2x2 GEMM, scale s_w/2 * s/2
 *   2-bit weights x binary activations 2x2 GEMM with the activation as a 2-bit
 *                                      operand of step 2 (levels +-1, mag plane 0)
 * Convolutions pack im2col + quantization in one pass (bitpack.h); zero padding
 * is corrected exactly per border pattern (apb_bitconv_pad). APB layers then add
 * the sparse residual R * act(x) directly from the quantized input map (a sparse
 * convolution: no im2col matrix), each output summing its row's nonzeros in CSR
 * order, so results do not depend on the thread count. The shared epilogue
 * (bias, folded BN, ReLU/hardtanh) follows.
 * Scratch buffers grow on demand and are kept, so steady-state runs allocate
 * nothing here (the kernels' own packing scratch is theirs).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt_internal.h"
#include "bgemm.h"
#include "bitpack.h"
#include "im2col.h"
#include "spmm.h"
#include "threads.h"

struct apbrt_fast {
    apb_bgemm_kind kind;
    int ld;               /* words per packed row */
    int bin_as_2bit;      /* binary activations fed to the 2x2 kernel */
    uint64_t *wsgn, *wmag; /* [M, ld] */
    float *scale;         /* [M] result unit per output row */
    apb_conv_geom g;
    apb_bitconv_pad pad;
    int has_pad;
    apb_csr R;            /* residual for apb_spmm (conv layers with many outliers) */
    int use_spmm;
};

typedef struct {
    uint64_t *asgn, *amag, *zero; /* packed activations [rows, ld]; zero: an all-0 mag plane */
    size_t cap_sgn, cap_mag, cap_zero;
    float *xq, *y, *col;          /* quantized input map / [M, n] linear result / im2col */
    size_t cap_xq, cap_y, cap_col;
} fast_work;

static void fast_one_free(apbrt_fast *f)
{
    if (!f)
        return;
    apb_free_aligned(f->wsgn);
    apb_free_aligned(f->wmag);
    free(f->scale);
    if (f->has_pad)
        apb_bitconv_pad_free(&f->pad);
    if (f->use_spmm)
        apb_csr_free(&f->R);
    free(f);
}

void apbrt_fast_free(apbrt_model *m)
{
    if (m->layers)
        for (int i = 0; i < m->nlayers; i++) {
            fast_one_free(m->layers[i].fast);
            m->layers[i].fast = NULL;
        }
    fast_work *w = m->fast_work;
    if (w) {
        apb_free_aligned(w->asgn);
        apb_free_aligned(w->amag);
        apb_free_aligned(w->zero);
        apb_free_aligned(w->xq);
        apb_free_aligned(w->y);
        apb_free_aligned(w->col);
        free(w);
        m->fast_work = NULL;
    }
}

static apb_status prepare_layer(apbrt_rt_layer *L, int idx)
{
    const apbrt_rec *r = &L->r;
    int w = r->wkind, a = r->akind;
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
        if (r->pad > 0) {
            apb_status st = apb_bitconv_pad_init(&f->pad, &f->g, M, f->wsgn, f->wmag, ld);
            if (st != APB_OK) {
                fast_one_free(f);
                return apb_fail_context(st, "apbrt: layer %d: ", idx);
            }
            f->has_pad = 1;
        }
    }
    /* Residual: a direct sparse convolution reads the quantized map in place;
     * with at least one outlier per weight column on average, im2col + the
     * vectorized apb_spmm is faster (256->256 3x3 conv at 14x14, 2% outliers,
     * 1 thread: 2.39 ms -> 1.37 ms). APBRT_NO_SPMM=1 forces the direct form. */
    if (r->kind == APBRT_CONV && r->nnz >= L->K && getenv("APBRT_NO_SPMM") == NULL) {
        apb_status st = apb_csr_alloc(&f->R, M, K, r->nnz);
        if (st != APB_OK) {
            fast_one_free(f);
            return apb_fail_context(st, "apbrt: layer %d: ", idx);
        }
        f->use_spmm = 1;
        for (int mm = 0; mm <= M; mm++)
            f->R.row_ptr[mm] = L->rowptr[mm];
        for (long e = 0; e < r->nnz; e++) {
            if (f->R.col16)
                f->R.col16[e] = (uint16_t)L->colidx[e];
            else
                f->R.col32[e] = L->colidx[e];
            f->R.val[e] = L->rvals[e];
        }
    }
    L->fast = f;
    return APB_OK;
}

const char *apbrt_fast_kernel(const apbrt_rt_layer *L)
{
    return L->fast ? apb_bgemm_kind_name(L->fast->kind) : NULL;
}

apb_status apbrt_fast_prepare(apbrt_model *m)
{
    m->fast_work = calloc(1, sizeof(fast_work));
    if (!m->fast_work)
        return apb_fail(APB_ENOMEM, "apbrt: out of memory");
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

static void quantize(const float *x, long cnt, int akind, float step, float *q)
{
    if (akind == APBRT_A_BIN) {
        for (long i = 0; i < cnt; i++)
            q[i] = x[i] >= 0.0f ? 1.0f : -1.0f;
    } else {
        for (long i = 0; i < cnt; i++) {
            float l = floorf(x[i] / step) + 2.0f;
            l = l < 0.0f ? 0.0f : (l > 3.0f ? 3.0f : l);
            q[i] = (l - 1.5f) * step;
        }
    }
}

/* y[M, OH*OW] += R (*) xq, a direct sparse convolution with zero padding. */
static void residual_conv(const apbrt_rt_layer *L, const float *xq, float *y, int nth)
{
    const apbrt_rec *r = &L->r;
    int KH = r->kh, KW = r->kw, S = r->stride, P = r->pad, H = L->ih, W = L->iw;
    int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1;
#pragma omp parallel for num_threads(nth) schedule(dynamic, 4) if (r->nnz * OH * OW > 65536)
    for (int mm = 0; mm < r->cout; mm++) {
        float *ym = y + (size_t)mm * OH * OW;
        for (uint32_t e = L->rowptr[mm]; e < L->rowptr[mm + 1]; e++) {
            int k = (int)L->colidx[e];
            int c = k / (KH * KW), kh = k / KW % KH, kw = k % KW;
            float v = L->rvals[e];
            const float *xc = xq + (size_t)c * H * W;
            for (int oh = 0; oh < OH; oh++) {
                int ih = oh * S - P + kh;
                if (ih < 0 || ih >= H)
                    continue;
                /* valid ow: 0 <= ow*S - P + kw < W, so the loop has no branch */
                int lo = P - kw > 0 ? (P - kw + S - 1) / S : 0;
                int hi = W - 1 + P - kw >= 0 ? (W - 1 + P - kw) / S + 1 : 0;
                hi = hi < OW ? hi : OW;
                const float *xr = xc + (size_t)ih * W;
                long base = (long)kw - P;
                float *yr = ym + (size_t)oh * OW;
                if (S == 1)
                    for (int ow = lo; ow < hi; ow++)
                        yr[ow] += v * xr[base + ow];
                else
                    for (int ow = lo; ow < hi; ow++)
                        yr[ow] += v * xr[base + (long)ow * S];
            }
        }
    }
}

apb_status apbrt_fast_run(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out)
{
    apbrt_fast *f = L->fast;
    fast_work *w = m->fast_work;
    const apbrt_rec *r = &L->r;
    int M = r->cout, K = (int)L->K, ld = f->ld, nth = apb_threads_get();
    int conv = r->kind == APBRT_CONV;
    int has_mag = f->kind != APB_BGEMM_1X1;  /* the kernel reads an activation mag plane */
    int packs_mag = has_mag && !f->bin_as_2bit;
    long in_sz = (long)L->ic * L->ih * L->iw;
    int N = conv ? apb_conv_geom_oh(&f->g) * apb_conv_geom_ow(&f->g) : n;
    size_t words = (size_t)N * ld;
    if (!grow((void **)&w->asgn, &w->cap_sgn, words, 8, 0) ||
        (packs_mag && !grow((void **)&w->amag, &w->cap_mag, words, 8, 0)) ||
        (f->bin_as_2bit && !grow((void **)&w->zero, &w->cap_zero, words, 8, 1)) ||
        (r->nnz && !grow((void **)&w->xq, &w->cap_xq, (size_t)(conv ? in_sz : (long)n * in_sz), 4, 0)) ||
        (!conv && !grow((void **)&w->y, &w->cap_y, (size_t)M * n, 4, 0)) ||
        (f->use_spmm && !grow((void **)&w->col, &w->cap_col, (size_t)K * N, 4, 0)))
        return apb_fail(APB_ENOMEM, "apbrt: out of memory for a batch of %d", n);
    apb_bitmat A = {f->wsgn, f->wmag, ld};
    apb_bitmat B = {w->asgn, packs_mag ? w->amag : f->bin_as_2bit ? w->zero : NULL, ld};
    apb_bgemm_epilogue ep = {f->scale, NULL, f->has_pad ? &f->pad : NULL};
    int bin_pack = r->akind == APBRT_A_BIN;
    if (conv) {
        long ohw = N;
        for (long b = 0; b < n; b++) {
            const float *xb = in + b * in_sz;
            float *yb = out + b * (long)M * ohw;
            if (bin_pack)
                APB_TRY(apb_bitpack_conv_sign(&f->g, xb, w->asgn, ld));
            else
                APB_TRY(apb_bitpack_conv_2bit(&f->g, xb, r->act_step, w->asgn, w->amag, ld));
            APB_TRY(apb_bgemm_f32(f->kind, M, N, K, &A, &B, &ep, yb, N));
            if (r->nnz) {
                quantize(xb, in_sz, r->akind, r->act_step, w->xq);
                if (f->use_spmm) {
                    apb_im2col(w->xq, L->ic, L->ih, L->iw, r->kh, r->kw, r->stride, r->pad, w->col);
                    APB_TRY(apb_spmm(&f->R, N, w->col, N, yb, N));
                } else {
                    residual_conv(L, w->xq, yb, nth);
                }
            }
#pragma omp parallel for num_threads(nth) if ((long)M * ohw > 65536)
            for (int c = 0; c < M; c++)
                for (long p = 0; p < ohw; p++)
                    yb[c * ohw + p] = apbrt_post(L, c, yb[c * ohw + p]);
        }
        return APB_OK;
    }
    /* Linear: one packed row per sample; the GEMM gives y[M, n]. */
    if (bin_pack)
        APB_TRY(apb_bitpack_sign(n, K, in, K, w->asgn, ld));
    else
        APB_TRY(apb_bitpack_2bit(n, K, in, K, r->act_step, w->asgn, w->amag, ld));
    APB_TRY(apb_bgemm_f32(f->kind, M, n, K, &A, &B, &ep, w->y, n));
    if (r->nnz) {
        quantize(in, (long)n * K, r->akind, r->act_step, w->xq);
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
