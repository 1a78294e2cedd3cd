/* apbrt_run.c - executes a loaded .apb model; getters, layer info, profiling.
 *
 * The float reference path lives here: activations are quantized in float
 * (binary: sgn with sgn(0) = +1; 2-bit: clamp(floor(x/s)+2, 0, 3) -> (l - 3/2) s;
 * 8-bit: apb_i8_code(x, 1/s) * s),
 * the quantized map is lowered with im2col (so padded positions contribute exactly
 * 0, as in the training graph) and multiplied with the dense effective weights by
 * apb_sgemm. It is exact for every weight/activation kind and is what the bit
 * kernels (apbrt_fast.c) are tested against; APBRT_REFERENCE=1 selects it.
 * The workspace is sized on the first run for a batch size and reused, so the
 * steady-state run loop allocates nothing.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apbrt_internal.h"
#include "bits.h"
#include "cpu.h"
#include "ewise.h"
#include "i8gemm.h"
#include "im2col.h"
#include "sgemm.h"
#include "threads.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

const char *apbrt_errmsg(void) { return apb_errmsg(); }
void apbrt_set_threads(int n) { apb_threads_set(n); }
int apbrt_get_threads(void) { return apb_threads_get(); }

static void shadow_free(apbrt_model *s)
{
    if (!s)
        return;
    apbrt_fast_work_free(s);
    apb_arena_free(&s->work);
    free(s->layers);
    free(s->slots);
    free(s);
}

void apbrt_free(apbrt_model *m)
{
    if (!m)
        return;
    for (int t = 0; t < m->nshadow; t++)
        shadow_free(m->shadow[t]);
    free(m->shadow);
    apbrt_fast_free(m);
    for (int i = 0; m->layers && i < m->nlayers; i++)
        apb_free_aligned(m->layers[i].wpack);
    apb_arena_free(&m->params);
    apb_arena_free(&m->work);
    free(m->layers);
    free(m->slot_floats);
    free(m->slots);
    free(m);
}

/* apbrt_post over a row in one vectorized pass (kernels/ewise.h, at the ISA
 * level chosen at run time): every step is one rounding in the order of
 * apbrt_post, so the reference path still matches the training graph bit for
 * bit. Then the fused residual add, on values still in L1. */
void apbrt_post_rows(const apbrt_rt_layer *L, int c, const float *src, const float *add, float *dst,
                     long cnt)
{
    const float sc = L->post_scale ? L->post_scale[c] : 1.0f;
    const float sh = L->post_scale ? L->post_shift[c] : 0.0f;
    if (L->bias) { /* rare (a conv with a bias and BN): a pass of its own first */
        const float bias = L->bias[c];
#pragma omp simd
        for (long i = 0; i < cnt; i++)
            dst[i] = (add ? src[i] + add[i] : src[i]) + bias;
        src = dst;
        add = NULL;
    }
    if (L->post_add >= 0) /* the fused residual add in the same pass */
        apb_ew_post2(cnt, src, add, L->post_scale != NULL, sc, sh, L->post_act,
                     L->add_base + (dst - L->out_base), L->post_act2, dst);
    else
        apb_ew_post(cnt, src, add, L->post_scale != NULL, sc, sh, L->post_act, dst);
}

/* ---- reference layer implementations ---- */

static void quantize(const float *x, long cnt, int akind, float step, float *q)
{
    if (apbrt_akind_int8(akind)) {
        float r = 1.0f / step;
        int sg = akind == APBRT_A_S8;
        for (long i = 0; i < cnt; i++)
            q[i] = (float)apb_i8_code(x[i], r, sg) * step;
    } else if (akind == APBRT_A_BIN) {
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

/* One input row xr[W] split into its S stride phases, zero-padded:
 * d[b*lp + t] = xr[(t - off)*S + b] where that column exists, else 0. */
static void phase_rows(const float *xr, int W, int S, int off, int lp, float *d)
{
    for (int b = 0; b < S; b++) {
        float *o = d + (long)b * lp;
        int thi = W - 1 - b < 0 ? off : off + (W - 1 - b) / S + 1;
        thi = thi < lp ? thi : lp;
        for (int t = 0; t < off; t++)
            o[t] = 0.0f;
        if (S == 1)
            memcpy(o + off, xr, (size_t)(thi - off) * sizeof(float));
        else
            for (int t = off; t < thi; t++)
                o[t] = xr[(long)(t - off) * S + b];
        for (int t = thi; t < lp; t++)
            o[t] = 0.0f;
    }
}

/* im2col by row phases, same output as apb_im2col: each needed input row is
 * split once into its S phases (zero-padded), then every (kw, output row)
 * segment of col is one contiguous copy instead of a strided gather (the 7x7
 * stride-2 stem: 147 rows of 12544 values). Rows of col are ldc apart, so the
 * columns of several images can sit side by side (one GEMM for the group).
 * One (channel, kernel row) pair q = c*KH + kh, every output row. ph: [S * (OW + KW/S + P/S + 3)] floats. */
static void im2col_rows(const float *x, int H, int W, int KH, int KW, int S, int P, float *col,
                        long ldc, float *ph, int q)
{
    int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1;
    int off = P / S + 1, lp = OW + KW / S + off + 2, c = q / KH, kh = q % KH;
    for (int oh = 0; oh < OH; oh++) {
        int ih = oh * S - P + kh;
        float *d0 = col + ((long)q * KW) * ldc + (long)oh * OW;
        if (ih < 0 || ih >= H) {
            for (int kw = 0; kw < KW; kw++)
                memset(d0 + kw * ldc, 0, (size_t)OW * sizeof(float));
            continue;
        }
        const float *xr = x + ((long)c * H + ih) * W;
        if (S == 1 && P == 0) { /* taps are plain shifted reads */
            for (int kw = 0; kw < KW; kw++)
                memcpy(d0 + kw * ldc, xr + kw, (size_t)OW * sizeof(float));
            continue;
        }
        phase_rows(xr, W, S, off, lp, ph);
        for (int kw = 0; kw < KW; kw++) {
            int dd = kw - P, sh = dd >= 0 ? dd / S : -((-dd + S - 1) / S), b = dd - sh * S;
            memcpy(d0 + kw * ldc, ph + (long)b * lp + off + sh, (size_t)OW * sizeof(float));
        }
    }
}

#define PH_FLOATS 4096

/* Test knob (apbrt_internal.h): which float conv path every eligible layer takes. */
static int fp_paths_mode;
void apbrt_fp_paths(int mode) { fp_paths_mode = mode; }
static int fast_last_only;
void apbrt_fast_last_only(int on) { fast_last_only = on; }
static int split_on = 1;
void apbrt_set_split(int on) { split_on = on != 0; }

/* Whether im2col_rows' phase buffer fits this layer. */
static int rows_ok(const apbrt_rt_layer *L)
{
    const apbrt_rec *r = &L->r;
    return (long)r->stride * (L->ow + r->kw + r->pad + 4) <= PH_FLOATS;
}

/* Images per GEMM for a float conv: enough columns (~GROUP_COLS) that the GEMM
 * runs at full speed on the small late feature maps, within the buffers. The
 * result of each output is the same for any grouping (apb_sgemm's K blocking
 * does not depend on N), so the path stays bit-identical to training. */
#define GROUP_COLS 784
static int conv_group(const apbrt_model *m, const apbrt_rt_layer *L, int n)
{
    long ohw = (long)L->oh * L->ow;
    long g = (GROUP_COLS + ohw - 1) / ohw;
    if (g > n)
        g = n;
    if (fp_paths_mode == 2)
        g = n;
    if (g > 1 && !rows_ok(L))
        g = 1;
    if (g > m->col_cap / (L->K * ohw))
        g = m->col_cap / (L->K * ohw);
    if (g > m->gout_cap / ((long)L->r.cout * ohw))
        g = m->gout_cap / ((long)L->r.cout * ohw);
    return g < 1 ? 1 : (int)g;
}

/* Large maps without any im2col copy: the input is written once per image as
 * zero-padded rows split into their stride phases, planes[c][r][b][t] =
 * x[c, r - P, (t - off)*S + b] (0 outside), r < Hp = H + 2P; tap (c, kh, kw) of
 * output pixel (oh, ow) is then planes + boff[k] + oh*S*S*lp + ow, with
 * boff[k] = ((c*Hp + kh)*S + b)*lp + sh + off for kw - P = sh*S + b, which is the
 * implicit-B form of apb_sgemm_conv (seg = OW, segld = S*S*lp). That product
 * computes every output bitwise as apb_sgemm does from the explicit im2col matrix,
 * so the runtime stays equal to the training graph. Returns 0 when done, 1 when
 * the layer does not fit the workspace (the caller takes the im2col path). */
#define IMPLICIT_MIN_OHW 1024

static int conv_implicit(apbrt_model *m, const apbrt_rt_layer *L, const float *src, int n,
                         float *out, int nth)
{
    const apbrt_rec *r = &L->r;
    int S = r->stride, P = r->pad, H = L->ih, W = L->iw, C = L->ic, KH = r->kh, KW = r->kw;
    int OW = L->ow, off = P / S + 1, lp = OW + KW / S + off + 2, Hp = H + 2 * P;
    long in_sz = (long)C * H * W, ohw = (long)L->oh * OW, K = L->K;
    long pl = (long)C * Hp * S * lp, segld = (long)S * S * lp;
    if (pl > m->col_cap || K * (long)sizeof(long) > m->gout_cap * (long)sizeof(float) ||
        (long)(L->oh - 1) * S + KH > Hp)
        return 1;
    float *planes = m->col;
    long *boff = (long *)m->gout;
    for (long k = 0; k < K; k++) {
        int c = (int)(k / (KH * KW)), kh = (int)(k / KW % KH), kw = (int)(k % KW);
        int dd = kw - P, sh = dd >= 0 ? dd / S : -((-dd + S - 1) / S), b = dd - sh * S;
        boff[k] = (((long)c * Hp + kh) * S + b) * lp + sh + off;
    }
    for (int i = 0; i < n; i++) {
        const float *x = src + i * in_sz;
        float *ob = out + (long)i * r->cout * ohw;
#pragma omp parallel for num_threads(nth) if (nth > 1 && pl > 65536) schedule(static)
        for (long q = 0; q < (long)C * Hp; q++) {
            int c = (int)(q / Hp), ih = (int)(q % Hp) - P;
            float *d = planes + q * S * lp;
            if (ih < 0 || ih >= H) {
                memset(d, 0, (size_t)S * lp * sizeof(float));
                continue;
            }
            const float *xr = x + ((long)c * H + ih) * W;
            phase_rows(xr, W, S, off, lp, d);
        }
        apb_sgemm_conv(r->cout, (int)ohw, (int)K, 1.0f, L->weff, (int)K, planes, boff, OW, segld,
                       0.0f, ob, (int)ohw);
#pragma omp parallel for num_threads(nth) if (nth > 1) schedule(static)
        for (int c = 0; c < r->cout; c++)
            apbrt_post_rows(L, c, ob + c * ohw, NULL, ob + c * ohw, ohw);
    }
    return 0;
}

float apbrt_s8d_step(const float *x, long n)
{
    float mx = apb_ew_absmax(n, x);
    return mx > 0.0f ? mx / 127.0f : 1.0f;
}

/* conv_ref's input quantization for an S8D layer: each sample with its own step. */
static void quantize_s8d(const float *x, int n, long in_sz, float *q)
{
    for (int b = 0; b < n; b++) {
        const float *xb = x + b * in_sz;
        float s = apbrt_s8d_step(xb, in_sz), rs = 1.0f / s;
        for (long i = 0; i < in_sz; i++)
            q[b * in_sz + i] = (float)apb_i8_code(xb[i], rs, 1) * s;
    }
}

static void conv_ref(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out)
{
    const apbrt_rec *r = &L->r;
    long in_sz = (long)L->ic * L->ih * L->iw, ohw = (long)L->oh * L->ow;
    const float *src = in;
    if (r->akind == APBRT_A_S8D) { /* exact: the FP32 conv (weff = wexact) */
        if (!m->exact) {
            quantize_s8d(in, n, in_sz, m->qbuf);
            src = m->qbuf;
        }
    } else if (r->akind != APBRT_A_FP) {
        quantize(in, n * in_sz, r->akind, r->act_step, m->qbuf);
        src = m->qbuf;
    }
    if (r->kind == APBRT_LINEAR) {
        /* the weights as sgemm's packed B, made once per ISA level: at batch 1 the
         * product is a pass over them, and packing them was most of its time;
         * the same kernel and blocking, so the same bits */
        if (L->wpack && L->wpack_isa != (int)apb_isa_active()) {
            apb_free_aligned(L->wpack);
            L->wpack = NULL;
        }
        if (!L->wpack && (L->wpack = apb_alloc_aligned(sizeof(float) *
                                                       apb_sgemm_bpack_floats(r->cout, (int)L->K)))) {
            apb_sgemm_bpack(1, r->cout, (int)L->K, L->weff, (int)L->K, L->wpack);
            L->wpack_isa = (int)apb_isa_active();
        }
        apb_sgemm_packed_b(0, 1, n, r->cout, (int)L->K, 1.0f, src, (int)L->K, L->weff, (int)L->K,
                           L->wpack, 0.0f, out, r->cout);
        for (long b = 0; b < n; b++)
            for (int c = 0; c < r->cout; c++)
                out[b * r->cout + c] = apbrt_post(L, c, out[b * r->cout + c]);
        return;
    }
    int nth = apb_threads_get();
    int direct = r->kh == 1 && r->kw == 1 && r->stride == 1 && r->pad == 0;
    int implicit_min = fp_paths_mode == 1 ? 1 : fp_paths_mode == 2 ? INT_MAX : IMPLICIT_MIN_OHW;
    if (!direct && ohw >= implicit_min && conv_implicit(m, L, src, n, out, nth) == 0)
        return;
    int G = direct ? 1 : conv_group(m, L, n), C = L->ic;
    for (int b0 = 0; b0 < n; b0 += G) {
        int g = n - b0 < G ? n - b0 : G;
        long ld = (long)g * ohw;
        const float *B = src + b0 * in_sz;
        if (!direct && (g > 1 || r->stride > 1) && rows_ok(L)) {
            /* every (image, channel, kernel row) writes its own rows of col */
            int Q = C * r->kh;
#pragma omp parallel for num_threads(nth) if (nth > 1 && (long)g * L->K * ohw > 65536) schedule(static)
            for (int t = 0; t < g * Q; t++) {
                float ph[PH_FLOATS];
                int bi = t / Q, q = t % Q;
                im2col_rows(src + (b0 + bi) * in_sz, L->ih, L->iw, r->kh, r->kw, r->stride, r->pad,
                            m->col + bi * ohw, ld, ph, q);
            }
            B = m->col;
        } else if (!direct) {
            apb_im2col(src + b0 * in_sz, C, L->ih, L->iw, r->kh, r->kw, r->stride, r->pad, m->col);
            B = m->col;
        }
        float *ob = out + b0 * (long)r->cout * ohw;
        float *Y = g == 1 ? ob : m->gout;
        apb_sgemm(0, 0, r->cout, (int)ld, (int)L->K, 1.0f, L->weff, (int)L->K, B, (int)ld, 0.0f, Y,
                  (int)ld);
        /* bias / BN / activation, and the group's columns back to NCHW per image */
#pragma omp parallel for num_threads(nth) if (nth > 1 && ld * r->cout > 65536) schedule(static)
        for (int t = 0; t < g * r->cout; t++) {
            int bi = t / r->cout, c = t % r->cout;
            apbrt_post_rows(L, c, Y + c * ld + bi * ohw, NULL, ob + ((long)bi * r->cout + c) * ohw, ohw);
        }
    }
}

#define POOL_ROW_FLOATS 8192 /* stack scratch of the row path */

static void pool(const apbrt_rt_layer *L, const float *in, int n, float *out, int nth)
{
    const apbrt_rec *r = &L->r;
    long planes = (long)n * L->ic;
    int k = r->k, s = r->pstride, p = r->ppad, H = L->ih, W = L->iw, OH = L->oh, OW = L->ow;
    float inv = 1.0f / (float)(k * k);
    /* phase array: t - off in [-off, OW + k/s + 1) covers every tap column */
    int off = p / s + 2, lp = OW + off + k / s + 2;
    if (r->kind == APBRT_MAXPOOL && k == 3 && s == 2 && p == 1 && apb_ew_has_pool_kernels()) {
        /* the stem's pool: a kernel of its own at this level, the same values */
#pragma omp parallel for num_threads(nth) if (planes * OH * OW > 8192)
        for (long pl = 0; pl < planes; pl++)
            apb_ew_maxpool3s2(H, W, in + pl * H * W, out + pl * OH * OW);
        return;
    }
    if (r->kind == APBRT_AVGPOOL && k == 2 && s == 2 && p == 0 && apb_ew_has_pool_kernels()) {
        /* the downsampling shortcut's pool, likewise */
#pragma omp parallel for num_threads(nth) if (planes * OH * OW > 8192)
        for (long pl = 0; pl < planes; pl++)
            apb_ew_avgpool2s2(H, W, in + pl * H * W, out + pl * OH * OW);
        return;
    }
    if ((long)s * lp + OW <= POOL_ROW_FLOATS) {
#pragma omp parallel for num_threads(nth) if (planes * OH * OW > 8192)
        for (long pl = 0; pl < planes; pl++) {
            float scratch[POOL_ROW_FLOATS];
            for (int oh = 0; oh < OH; oh++)
                apb_ew_pool_row(k, s, p, H, W, OW, r->kind == APBRT_MAXPOOL, in + pl * H * W, oh,
                                out + pl * OH * OW + (long)oh * OW, scratch, lp, off,
                                scratch + (long)s * lp);
        }
        return;
    }
#pragma omp parallel for num_threads(nth) if (planes * OH * OW > 8192)
    for (long pl = 0; pl < planes; pl++) {
        const float *x = in + pl * H * W;
        float *y = out + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int h0 = oh * s - p, w0 = ow * s - p;
                float acc = r->kind == APBRT_MAXPOOL ? -INFINITY : 0.0f;
                for (int i = h0 < 0 ? 0 : h0; i < h0 + k && i < H; i++)
                    for (int j = w0 < 0 ? 0 : w0; j < w0 + k && j < W; j++) {
                        float v = x[i * W + j];
                        if (r->kind == APBRT_MAXPOOL)
                            acc = v > acc ? v : acc;
                        else
                            acc += v;
                    }
                y[oh * OW + ow] = r->kind == APBRT_MAXPOOL ? acc : acc * inv;
            }
    }
}

#define EW_PAR_MIN (1L << 18) /* values of an elementwise op worth a team */

/* act(a + b) (b NULL: act(a)) over total values, in nth equal pieces above
 * EW_PAR_MIN: element by element, so the split changes no bit */
static void ew_split(long total, const float *a, const float *b, int act, float *out, int nth)
{
    long np = nth > 1 && total > EW_PAR_MIN ? nth : 1;
#pragma omp parallel for num_threads(nth) if (np > 1) schedule(static)
    for (long c = 0; c < np; c++) {
        long i0 = total * c / np, i1 = total * (c + 1) / np;
        apb_ew_add_act(i1 - i0, a + i0, b ? b + i0 : NULL, act, out + i0);
    }
}

static void elementwise(const apbrt_rt_layer *L, const float *a, const float *b2, int n, float *out,
                        int nth)
{
    const apbrt_rec *r = &L->r;
    long hw = (long)L->ih * L->iw, C = L->ic, total = (long)n * C * hw;
    switch (r->kind) {
    case APBRT_BN:
#pragma omp parallel for num_threads(nth) if (total > 65536)
        for (long pl = 0; pl < n * C; pl++) {
            long c = pl % C;
            for (long i = 0; i < hw; i++)
                out[pl * hw + i] = L->scale[c] * a[pl * hw + i] + L->shift[c];
        }
        break;
    /* element by element, so splitting over the threads changes no bit; large
     * only when a pass holds many images (micro-batches up to 64 MB) */
    case APBRT_RELU:
        ew_split(total, a, NULL, APB_EW_RELU, out, nth);
        break;
    case APBRT_HARDTANH:
        ew_split(total, a, NULL, APB_EW_HARDTANH, out, nth);
        break;
    case APBRT_CLIP: {
        float lo = r->lo, hi = r->hi;
#pragma omp parallel for simd num_threads(nth) if (nth > 1 && total > EW_PAR_MIN) schedule(static)
        for (long i = 0; i < total; i++)
            out[i] = a[i] < lo ? lo : (a[i] > hi ? hi : a[i]);
        break;
    }
    case APBRT_ADD:
        ew_split(total, a, b2, APB_EW_NONE, out, nth);
        break;
    case APBRT_FLATTEN:
        if (out != a)
            memcpy(out, a, (size_t)total * sizeof *out);
        break;
    case APBRT_GAP: {
        /* The training op's loop (layers/op_global_avgpool.c) statement for
         * statement, vectorized reduction included, so the compiler sums in the
         * same order and the result is the training value bit for bit. */
        float inv = 1.0f / (float)hw;
        int HW = (int)hw;
        for (long pl = 0; pl < n * C; pl++) {
            const float *row = a + pl * hw;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int p = 0; p < HW; p++)
                acc += row[p];
            out[pl] = acc * inv;
        }
        break;
    }
    default:
        break;
    }
}

static apb_status ensure_work(apbrt_model *m, int n)
{
    if (n <= m->cap_n)
        return APB_OK;
    apb_arena_free(&m->work);
    apb_arena_init(&m->work, "work", 1 << 16);
    m->cap_n = 0;
    for (int s = 0; s < m->nslots; s++) {
        m->slots[s] = NULL;
        if (m->slot_floats[s] &&
            !(m->slots[s] = apb_arena_alloc(&m->work, (size_t)n * m->slot_floats[s] * sizeof(float))))
            goto oom;
    }
    m->qbuf = m->max_q ? apb_arena_alloc(&m->work, (size_t)n * m->max_q * sizeof(float)) : NULL;
    /* twice the largest single-image column matrix: room to group the images of
     * the small late maps into one GEMM (conv_group) */
    m->col_cap = 2 * m->max_col;
    m->gout_cap = m->max_col;
    m->col = m->max_col ? apb_arena_alloc(&m->work, (size_t)m->col_cap * sizeof(float)) : NULL;
    m->gout = m->max_col ? apb_arena_alloc(&m->work, (size_t)m->gout_cap * sizeof(float)) : NULL;
    m->tmp = m->max_tmp ? apb_arena_alloc(&m->work, (size_t)n * m->max_tmp * sizeof(float)) : NULL;
    if ((m->max_q && !m->qbuf) || (m->max_col && (!m->col || !m->gout)) || (m->max_tmp && !m->tmp))
        goto oom;
    /* the split's first part on the calling thread: one image */
    if (!(m->slots1 = apb_arena_alloc(&m->work, sizeof(float *) * (size_t)m->nslots)))
        goto oom;
    for (int s = 0; s < m->nslots; s++) {
        m->slots1[s] = NULL;
        if (m->slot_floats[s] &&
            !(m->slots1[s] = apb_arena_alloc(&m->work, (size_t)m->slot_floats[s] * sizeof(float))))
            goto oom;
    }
    m->cap_n = n;
    return APB_OK;
oom:
    return apb_fail(APB_ENOMEM, "apbrt_run: out of memory for the workspace of a batch of %d", n);
}

/* Layers [i0, i1) of n images, their tensors in slots (each tensor's images
 * one after another at its own size); *cur: where each slot's tensors are read
 * (the input's may be the caller's). */
static int run_layers(apbrt_model *m, int i0, int i1, int n, float *const *slots, const float **cur)
{
    apb_status st;
    int nth = apb_threads_get(), last_fast = m->nlayers;
    if (fast_last_only)
        for (int i = 0; i < m->nlayers; i++)
            if (m->layers[i].fast)
                last_fast = i;
    for (int i = i0; i < i1; i++) {
        apbrt_rt_layer *L = &m->layers[i];
        if (L->fused)
            continue;
        double t0 = m->profile ? now_s() : 0.0;
        const float *in = cur[L->r.in];
        float *dst = slots[L->dst];
        int kind = L->r.kind;
        int via_tmp = dst == in && kind != APBRT_BN && kind != APBRT_RELU && kind != APBRT_HARDTANH &&
                      kind != APBRT_CLIP && kind != APBRT_ADD && kind != APBRT_FLATTEN;
        /* a fused residual add into the slot it adds: the GEMM may write its
         * output before the epilogue reads the added values there */
        if (L->post_add >= 0 && L->dst == L->post_add)
            via_tmp = 1;
        float *out = via_tmp ? m->tmp : dst;
        if (L->post_add >= 0) {
            L->add_base = cur[L->post_add];
            L->out_base = out;
        }
        if (kind == APBRT_CONV || kind == APBRT_LINEAR) {
            if (apbrt_fast_runs(m, L) && (!fast_last_only || i == last_fast)) {
                if ((st = apbrt_fast_run(m, L, in, n, out)) != APB_OK)
                    return (int)st;
            } else {
                conv_ref(m, L, in, n, out);
            }
        } else if (kind == APBRT_MAXPOOL || kind == APBRT_AVGPOOL) {
            pool(L, in, n, out, nth);
        } else {
            elementwise(L, in, kind == APBRT_ADD ? cur[L->r.in2] : NULL, n, out, nth);
        }
        if (via_tmp)
            memcpy(dst, out, (size_t)n * L->oc * L->oh * L->ow * sizeof(float));
        cur[L->dst] = dst;
        if (m->profile)
            L->seconds += now_s() - t0;
    }
    return 0;
}

/* Where run_batch splits a batch: after the last layer whose output has
 * SPLIT_FLOATS or more values per image (0: none, or it is the last layer).
 * Paired per layer on ResNet-18 at 224 (1 thread), a batch of 16 in one pass
 * against 16 single images: the 56x56 and 28x28 layers 17-31% slower per
 * image, the 14x14 ones about level, the 7x7 ones and the classifier faster
 * (docs/INFERENCE.md, session 17). */
#define SPLIT_FLOATS 16384

static int split_layer(const apbrt_model *m)
{
    int k = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const apbrt_rt_layer *L = &m->layers[i];
        if ((long)L->oc * L->oh * L->ow >= SPLIT_FLOATS)
            k = i + 1;
    }
    return k < m->nlayers ? k : 0;
}

/* Per image, the size of the tensor in slot s that layers [k, end) read before
 * they write s (written by layers before k; 0: none read). */
static long live_size(const apbrt_model *m, int k, int s)
{
    long sz = 0;
    for (int i = 0; i < k; i++)
        if (!m->layers[i].fused && m->layers[i].dst == s)
            sz = (long)m->layers[i].oc * m->layers[i].oh * m->layers[i].ow;
    for (int i = k; i < m->nlayers && sz; i++) {
        const apbrt_rt_layer *L = &m->layers[i];
        if (L->fused)
            continue;
        if (L->r.in == s || (L->r.kind == APBRT_ADD && L->r.in2 == s) || L->post_add == s)
            return sz;
        if (L->dst == s)
            return 0;
    }
    return 0;
}

/* apbrt_internal.h: a team's first failure. The unnamed critical section uses
 * the OpenMP runtime's own lock, so libapbrt.so exports nothing for it. */
void apbrt_team_fail(apbrt_team_err *e, apb_status s)
{
    if (s == APB_OK)
        return;
#pragma omp critical
    {
        if (e->st == APB_OK) {
            e->st = s;
            snprintf(e->msg, sizeof e->msg, "%s", apb_errmsg());
        }
    }
}

apb_status apbrt_team_status(const apbrt_team_err *e)
{
    return e->st == APB_OK ? APB_OK : apb_fail(e->st, "%s", e->msg);
}

/* Thread t's copy of m for a split batch's images in parallel (t >= 1): the
 * same weights and prepared layers, which the one-image layers only read, and
 * its own layer records (their per-run fields: the fused add's bases, the
 * profile), workspace and fast-path scratch. The records are copied anew
 * each batch. NULL when out of memory. */
static apbrt_model *shadow_get(apbrt_model *m, int t)
{
    if (t > m->nshadow) {
        apbrt_model **a = realloc(m->shadow, sizeof *a * (size_t)t);
        if (!a)
            return NULL;
        for (int i = m->nshadow; i < t; i++)
            a[i] = NULL;
        m->shadow = a;
        m->nshadow = t;
    }
    apbrt_model *s = m->shadow[t - 1];
    if (!s) {
        if (!(s = calloc(1, sizeof *s)))
            return NULL;
        *s = *m;
        s->shadow = NULL, s->nshadow = 0, s->fast_work = NULL, s->cap_n = 0;
        s->layers = malloc(sizeof *s->layers * (size_t)m->nlayers);
        s->slots = calloc((size_t)m->nslots, sizeof *s->slots);
        apb_arena_init(&s->work, "work", 1 << 16);
        if (!s->layers || !s->slots || apbrt_fast_work_new(s) != APB_OK) {
            shadow_free(s);
            return NULL;
        }
        m->shadow[t - 1] = s;
    }
    memcpy(s->layers, m->layers, sizeof *s->layers * (size_t)m->nlayers);
    for (int i = 0; i < m->nlayers; i++)
        s->layers[i].seconds = 0.0;
    s->exact = m->exact, s->profile = m->profile;
    return s;
}

/* Layers [0, k) of image b in context c (m or a shadow), in c's one-image
 * slots; the tensors layers [k, end) read (live[s] values per image) go into
 * m's batch slots. */
static int image_part(apbrt_model *m, apbrt_model *c, const float *x, long b, int k, const long *live)
{
    float *const *sl = c->slots1;
    long in0 = (long)m->in_c * m->in_h * m->in_w;
    const float *cur[APBRT_MAX_SLOTS];
    for (int s = 0; s < m->nslots; s++)
        cur[s] = sl[s];
    cur[0] = x + b * in0;
    if (m->input_written) {
        memcpy(sl[0], cur[0], (size_t)in0 * sizeof(float));
        cur[0] = sl[0];
    }
    int r = run_layers(c, 0, k, 1, sl, cur);
    for (int s = 0; !r && s < m->nslots; s++)
        if (live[s])
            memcpy(m->slots[s] + b * live[s], cur[s], (size_t)live[s] * sizeof(float));
    return r;
}

/* The split's first part of n images: each thread takes whole images, one
 * after another (claimed), through layers [0, k) with every driver on itself
 * (apb_threads_solo), in its own context. Per-layer seconds: the team's sum
 * over its size. */
static int images_parallel(apbrt_model *m, const float *x, int n, int k, int nth, const long *live)
{
    for (int t = 1; t < nth; t++)
        if (!shadow_get(m, t))
            return (int)apb_fail(APB_ENOMEM, "apbrt_run: out of memory for thread %d's workspace", t);
    double *before = NULL;
    if (m->profile) {
        if (!(before = malloc(sizeof(double) * (size_t)m->nlayers)))
            return (int)apb_fail(APB_ENOMEM, "apbrt_run: out of memory");
        for (int i = 0; i < m->nlayers; i++)
            before[i] = m->layers[i].seconds;
    }
    long next = 0;
    apbrt_team_err err = {APB_OK, ""};
#pragma omp parallel num_threads(nth)
    {
        int me = apb_thread_num();
        apbrt_model *c = me == 0 ? m : m->shadow[me - 1];
        apb_threads_solo(1);
        apb_status st = me == 0 ? APB_OK : ensure_work(c, 1);
        for (long b; st == APB_OK && (b = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED)) < n;)
            st = (apb_status)image_part(m, c, x, b, k, live);
        apbrt_team_fail(&err, st);
        apb_threads_solo(0);
    }
    if (before) {
        for (int i = 0; i < k; i++) {
            double sum = m->layers[i].seconds - before[i];
            for (int t = 1; t < nth; t++)
                sum += m->shadow[t - 1]->layers[i].seconds;
            m->layers[i].seconds = before[i] + sum / nth;
        }
        free(before);
    }
    return (int)apbrt_team_status(&err);
}

/* One pass: a batch of n images through the network. Where the model has
 * large early maps (split_layer), their layers run whole images at a time,
 * one per thread, in slots of their own (each image's maps stay in its core's
 * cache from layer to layer, and no barrier between layers), and the tensors
 * the rest reads are copied into the batch's slots; the rest runs on the whole
 * batch (its small maps and its weights shared by all the images). The results
 * do not depend on the split. */
static int run_batch(apbrt_model *m, const float *x, int n, float *logits)
{
    apb_status st = ensure_work(m, n);
    if (st != APB_OK)
        return (int)st;
    const float *cur[APBRT_MAX_SLOTS];
    for (int s = 0; s < m->nslots; s++)
        cur[s] = m->slots[s];
    long in0 = (long)m->in_c * m->in_h * m->in_w;
    if (m->input_written)
        memcpy(m->slots[0], x, (size_t)n * in0 * sizeof(float));
    else
        cur[0] = x;
    int nth = apb_threads_get() < n ? apb_threads_get() : n, k = split_on ? split_layer(m) : 0, r;
    if (k > 0 && n >= 2 * nth) {
        long live[APBRT_MAX_SLOTS];
        for (int s = 0; s < m->nslots; s++)
            live[s] = live_size(m, k, s);
        if (nth > 1) {
            if ((r = images_parallel(m, x, n, k, nth, live)))
                return r;
        } else {
            for (long b = 0; b < n; b++)
                if ((r = image_part(m, m, x, b, k, live)))
                    return r;
        }
    } else {
        k = 0;
    }
    if ((r = run_layers(m, k, m->nlayers, n, m->slots, cur)))
        return r;
    memcpy(logits, cur[m->output_slot], (size_t)n * m->num_classes * sizeof(float));
    return 0;
}

/* Images per pass through the network (apbrt.h, apbrt_microbatch). */
#define MICROBATCH_BYTES (64L << 20)

int apbrt_microbatch(const apbrt_model *m)
{
    const char *e = getenv("APBRT_MICROBATCH");
    if (e && atoi(e) > 0)
        return atoi(e);
    if (!m)
        return 1;
    long big = 1;
    for (int s = 0; s < m->nslots; s++)
        big = m->slot_floats[s] > big ? m->slot_floats[s] : big;
    long mb = MICROBATCH_BYTES / (big * (long)sizeof(float));
    return mb < 1 ? 1 : mb > 4096 ? 4096 : (int)mb;
}

/* A batch goes through the network a micro-batch at a time, each one through
 * every layer: the activations a layer hands to the next then stay in the
 * caches. The cap on the largest activation, 64 MB, lets ResNet-18 at 224
 * (3.2 MB per image after its stem) take a batch of 16 in one pass: with whole
 * chunks of images per thread in the compressed convs (apbrt_fast.c), more
 * images per pass beat cache locality at 2 threads (docs/INFERENCE.md, session
 * 13; the cap was 8 MB, 2 images, before). Results do not depend on the batch
 * size, so they do not depend on this split either. */
int apbrt_run(apbrt_model *m, const float *x, int n, float *logits)
{
    if (!m || !x || !logits || n < 1)
        return (int)apb_fail(APB_EINVAL, "apbrt_run: bad arguments (model %p, batch %d)", (void *)m, n);
    int per = apbrt_microbatch(m), passes = (n + per - 1) / per;
    int mb = (n + passes - 1) / passes; /* equal passes: 16 at 5 per pass runs 4 x 4 */
    long in0 = (long)m->in_c * m->in_h * m->in_w;
    for (int b0 = 0; b0 < n; b0 += mb) {
        int c = n - b0 < mb ? n - b0 : mb;
        int r = run_batch(m, x + (long)b0 * in0, c, logits + (long)b0 * m->num_classes);
        if (r)
            return r;
    }
    return 0;
}

/* ---- getters ---- */

void apbrt_input_shape(const apbrt_model *m, int *c, int *h, int *w)
{
    if (c)
        *c = m->in_c;
    if (h)
        *h = m->in_h;
    if (w)
        *w = m->in_w;
}
int apbrt_num_classes(const apbrt_model *m) { return m->num_classes; }
const char *apbrt_class_name(const apbrt_model *m, int i)
{
    return i >= 0 && i < m->num_classes ? m->class_names[i] : NULL;
}
void apbrt_normalization(const apbrt_model *m, float mean[3], float std[3])
{
    for (int c = 0; c < 3; c++) {
        if (mean)
            mean[c] = m->mean[c];
        if (std)
            std[c] = m->std[c];
    }
}
int apbrt_resize_short(const apbrt_model *m) { return m->resize_short; }
const char *apbrt_model_name(const apbrt_model *m) { return m->model_name; }
size_t apbrt_file_size(const apbrt_model *m) { return (size_t)m->file_size; }
int apbrt_uses_reference(const apbrt_model *m) { return m->reference; }

int apbrt_approximate_layers(const apbrt_model *m)
{
    int k = 0;
    for (int i = 0; i < m->nlayers; i++)
        k += m->layers[i].r.akind == APBRT_A_S8D;
    return k;
}

void apbrt_set_exact(apbrt_model *m, int on)
{
    m->exact = on != 0;
    for (int i = 0; i < m->nlayers; i++) {
        apbrt_rt_layer *L = &m->layers[i];
        if (L->r.akind == APBRT_A_S8D)
            L->weff = m->exact ? L->wexact : L->wq;
    }
}
int apbrt_num_layers(const apbrt_model *m) { return m->nlayers; }
void apbrt_set_profile(apbrt_model *m, int on) { m->profile = on != 0; }
void apbrt_profile_reset(apbrt_model *m)
{
    for (int i = 0; i < m->nlayers; i++)
        m->layers[i].seconds = 0.0;
}

/* The compression a layer's accounting follows: its record's, or for version-1
 * files (no accounting words) what the storage kind says. */
static int layer_compression(const apbrt_rec *r)
{
    if (r->compression != APBRT_C_STORED)
        return r->compression;
    return r->wkind == APBRT_W_APB ? APBRT_C_APB : r->wkind == APBRT_W_Q2 ? APBRT_C_Q2 : APBRT_C_STORED;
}

/* Bits of a position index: floor(log2(weights of the largest compressed
 * layer)) + 1, one width for the whole model (the rule training uses too,
 * models/model.c apb_model_memory_stats). */
static int model_index_bits(const apbrt_model *m)
{
    long largest = 1;
    for (int i = 0; i < m->nlayers; i++) {
        const apbrt_rec *r = &m->layers[i].r;
        if ((r->kind == APBRT_CONV || r->kind == APBRT_LINEAR) && layer_compression(r) != APBRT_C_STORED &&
            (long)r->cout * m->layers[i].K > largest)
            largest = (long)r->cout * m->layers[i].K;
    }
    return apb_index_bits(largest);
}

int apbrt_layer_info_get(const apbrt_model *m, int i, apbrt_layer_info *info)
{
    if (!m || i < 0 || i >= m->nlayers)
        return (int)apb_fail(APB_EINVAL, "apbrt_layer_info_get: layer %d out of range", i);
    const apbrt_rt_layer *L = &m->layers[i];
    const apbrt_rec *r = &L->r;
    static const char *wk[] = {"fp32", "apb", "q2"}, *ak[] = {"fp", "bin", "q2", "u8", "s8", "s8d"};
    memset(info, 0, sizeof *info);
    int conv_like = r->kind == APBRT_CONV || r->kind == APBRT_LINEAR;
    info->kind = apbrt_kind_name(r->kind);
    info->weights = conv_like ? wk[r->wkind] : "";
    info->act = conv_like ? ak[r->akind] : "";
    info->in_c = L->ic, info->in_h = L->ih, info->in_w = L->iw;
    /* A fused producer's oc/oh/ow are those of its chain's end; report the record's own. */
    if (conv_like) {
        info->out_c = r->cout;
        info->out_h = r->kind == APBRT_LINEAR ? 1 : (L->ih + 2 * r->pad - r->kh) / r->stride + 1;
        info->out_w = r->kind == APBRT_LINEAR ? 1 : (L->iw + 2 * r->pad - r->kw) / r->stride + 1;
    } else {
        info->out_c = L->oc, info->out_h = L->oh, info->out_w = L->ow;
    }
    info->kh = r->kh, info->kw = r->kw, info->stride = r->stride, info->pad = r->pad;
    if (r->kind == APBRT_MAXPOOL || r->kind == APBRT_AVGPOOL)
        info->kh = info->kw = r->k, info->stride = r->pstride, info->pad = r->ppad;
    if (conv_like) {
        long nw = (long)r->cout * L->K;
        info->params = nw;
        info->bias = r->has_bias ? r->cout : 0;
        int ib = model_index_bits(m), scales = r->scales ? r->scales : 1;
        info->compressed = 1;
        switch (layer_compression(r)) {
        case APBRT_C_APB:
            info->fp_params = r->nnz;
            info->weight_bits = apb_bits_apb(nw, r->nnz, ib, scales);
            break;
        case APBRT_C_BINARY:
            info->weight_bits = apb_bits_binary(nw, scales);
            break;
        case APBRT_C_Q2:
            info->weight_bits = apb_bits_q2(nw);
            break;
        case APBRT_C_PRUNED:
            info->fp_params = r->kept;
            info->weight_bits = apb_bits_pruned(r->kept, ib);
            break;
        case APBRT_C_PRUNE_BINARY:
            info->weight_bits = apb_bits_prune_binary(nw, r->kept, ib, scales);
            break;
        default:
            info->compressed = 0;
            info->fp_params = nw;
            info->weight_bits = 32.0 * nw;
        }
        info->bits = info->weight_bits + 32.0 * info->bias + (apbrt_akind_has_step(r->akind) ? 32.0 : 0.0);
    } else if (r->kind == APBRT_BN) {
        info->params = info->fp_params = 2L * r->channels;
        info->bits = info->weight_bits = 64.0 * r->channels;
    }
    info->bytes = (size_t)L->file_bytes;
    info->fused = L->fused;
    info->kernel = !conv_like ? "" : apbrt_fast_runs(m, L) ? apbrt_fast_kernel(L) : "sgemm";
    info->seconds = L->seconds;
    return 0;
}
