/* op_conv2d.c - 2-D convolution (cross-correlation, zero padding) with bias.
 *
 * Lowered per image to one matrix multiply: y_n[M,P] = w[M,K] * col_n[K,P] with
 * K = C*KH*KW, P = OH*OW and col from im2col; a 1x1 stride-1 unpadded conv uses
 * x_n[C,P] directly. When the batch has at least as many images as threads the
 * images are spread over OpenMP threads (each with its own column buffer and its
 * own dW partial sum, reduced in thread order afterwards); otherwise images run
 * one after the other and apb_sgemm parallelises inside. Scratch (padded planes,
 * column buffers, dW partial sums) comes from the graph's shared work buffer
 * (apb_graph_work), sized in forward, so a model needs its largest conv's scratch
 * rather than the sum over its convs, and backward never allocates.
 *
 * The weight gradient dW[M,K] += sum_n dy_n[M,P] * col_n[K,P]^T reduces over P,
 * which is contiguous in both operands: apb_sgemm_nt_batch takes it as dot
 * products with no packing (a packed GEMM would transpose all of col, as much
 * work as the multiply for M = 16), over a group of G images at once so that the
 * dot products of 8x8 / 16x16 feature maps stay long (G*P >= 1024).
 *
 * "Same" stride-1 convs (3x3 pad 1: almost every conv of resnet/vgg) skip im2col
 * altogether: x and dy are copied once into zero-padded planes, whose shifted rows
 * are the im2col rows, read in place by apb_sgemm_conv (forward, bitwise equal to
 * im2col + apb_sgemm, and dx) and, for dW, by apb_sgemm_dw3_same or
 * apb_sgemm_nt_rows (see conv_padded below for which runs where).
 * Input gradients are written, not accumulated, when the engine hands them over
 * fresh (APB_OP_GRAD_WRITE): dx's GEMM then runs with beta = 0.
 */
#include <string.h>

#include "im2col.h"
#include "ops.h"
#include "registry.h"
#include "sgemm.h"
#include "cpu.h"
#include "threads.h"
#include "winograd.h"

typedef struct {
    int stride, pad;
} conv_attr;

typedef struct {
    int nt;       /* threads used over the batch (1: serial over images) */
    int G;        /* images per weight-gradient group */
    float *col;   /* [nt][G*K*P] im2col buffers (NULL when not needed) */
    float *dcol;  /* [nt][K*P] column gradients for col2im (NULL if not needed) */
    float *wt;    /* [C][M*KH*KW] flipped, transposed weight for dx (NULL if unused) */
    float *dwp;   /* [nt][M*K] per-thread dW partial sums (NULL if nt == 1) */
    /* "same" stride-1 convs (KH == KW == 2*pad + 1): padded planes, no im2col */
    int padded;   /* 1: forward and dx read shifted rows of zero-padded planes */
    int shift;    /* 1: dW also (dot products over padded planes, see below) */
    int dw3;      /* 1: dW as register-blocked outer products (3x3: apb_sgemm_dw3_same
                   * from x itself; stride 2: apb_sgemm_dw3 on the phase planes) */
    int phase;    /* 1: 3x3 stride 2 pad 1: forward and dW on stride-phase planes */
    long qs;      /* floats per phase plane (phase: a channel is 4 planes, xs = 4*qs) */
    int Wq;       /* phase plane width */
    long *roff;   /* [C*3] offset of kernel row (c, kh) in one image's phase planes */
    long xs, ys;  /* floats per padded x plane / per padded dy plane */
    int lead;     /* dy planes start this many floats into their buffer, so that the
                   * dW dot products (from pad*(Wp+1) into a plane) load aligned */
    long *boff;   /* [K] offset of im2col row (c, kh, kw) in one padded x image */
    long *doff;   /* [M*KH*KW] the same for the padded dy image (dx's im2col rows) */
    float *xpad;  /* [nt][xchunk][C*xs] padded (or phase) planes of a chunk of images: the
                   * forward's, then (phase planes, dot products) dW's, which pads its
                   * group again rather than keep the whole batch padded */
    int xchunk;   /* images per thread in xpad: max(FWD_CHUNK, G) when dW reads it */
    float *dypad; /* [nt][G*M*ys + 16] padded dy of a group (16: room for lead) */
    /* the scratch above lives in the graph's shared work buffer (apb_graph_work),
     * not in the step arena: forward fixes the sizes (floats; 0: not needed),
     * conv_work points the buffers into it again for backward */
    size_t n_xpad, n_dypad, n_col, n_dcol, n_wt, n_dwp, n_wu, n_ww;
    int wino;     /* 1: forward and dx by Winograd F(4x4,3x3) (training only, see below) */
    int wdw;      /* 1: dW by Winograd F(3x3,4x4) (apb_wino_dw, training only) */
    int wnt;      /* threads the Winograd work buffer was sized for */
    float *wu;    /* [36*M*C] Winograd-transformed weights (forward's, then dx's) */
    float *ww;    /* [threads][apb_wino_work_floats] Winograd tiles */
    uint64_t key; /* layout of the zero-bordered planes (xpad, dypad); 0: none */
} conv_saved;

/* A "same" stride-1 conv (3x3 pad 1, 5x5 pad 2): input and output planes have one
 * padded size Hp x Wp (Hp = H + 2*pad), and
 *  - forward: im2col row (c,kh,kw) of x is the padded plane xp[c] shifted by
 *    kh*Wp + kw, read in place by apb_sgemm_conv (bitwise equal to the im2col +
 *    apb_sgemm of the runtime);
 *  - dx is the full correlation of dy with the flipped kernel:
 *      dx_n[C, H*W] = wt[C, M*KH*KW] * im2col(dy_n; pad)[M*KH*KW, H*W],
 *    wt[c, (m,kh,kw)] = w[m, c, KH-1-kh, KW-1-kw], again apb_sgemm_conv over the
 *    padded dy planes (dyp);
 *  - dW: dyp shifted by pad*(Wp + 1) is dy written at width Wp with zeros in its
 *    last Wp - OW columns (right and left padding), so (Q = OH*Wp)
 *      dW[m, (c,kh,kw)] = sum_q dyp[m, pad*(Wp + 1) + q] * xp[c, q + kh*Wp + kw]
 *    (the extra columns meet zeros): dot products over the saved padded x, no
 *    im2col. The reduction is 6-25% longer (32..8 wide maps), and the dot-product
 *    tiles run only with AVX-512 and do not beat im2col + the packed GEMM from
 *    M = 48 on (docs/TRAINING_SPEED.md), so only below that.
 *    3x3 kernels with M a multiple of 16 (up to 64) take apb_sgemm_dw3_same
 *    instead, with AVX2 or AVX-512: outer products of the transposed dy with x
 *    itself (edges handled in the kernel, no padded copy), vectorised over m with
 *    the accumulators in registers (AVX-512: 1.4-2x the dot products; AVX2:
 *    1.4-2.8x im2col + the packed GEMM, docs/TRAINING_SPEED.md). Other dW: the
 *    dot products above (AVX-512, M < SHIFT_MAX_M) or im2col + apb_sgemm_nt_batch. */
#define SHIFT_MAX_M 48
/* Training-mode "same" 3x3 convs with at least WINO_MIN input and output
 * channels, or WINO_MIN_BIG on maps of at least WINO_BIG_HW pixels, run forward
 * and dx by Winograd F(4x4,3x3) (kernels/winograd.h): 36 multiplies per 4x4
 * outputs instead of 144, and dW by F(3x3,4x4) over the whole batch
 * (apb_wino_dw: no im2col, no per-thread partial sums). Eval mode never does, so
 * the graph there stays bitwise equal to the runtime; APB_WINOGRAD=0 turns it
 * off. Measured on Zen 5, 2 threads (docs/TRAINING_SPEED.md, session 15): at 64
 * channels on resnet18's 56x56 maps 1.3x the step of the direct path, on
 * resnet20's 8x8 maps 0.93x (K = C is short and the tiles few); at 32 and 16
 * channels slower still. */
#define WINO_MIN 128
#define WINO_MIN_BIG 64
#define WINO_BIG_HW 1024
static int wino_wide(int C, int M, int H, int W)
{
    int c = C < M ? C : M;
    return c >= WINO_MIN || (c >= WINO_MIN_BIG && (long)H * W >= WINO_BIG_HW);
}
/* The same for dW by F(3x3,4x4), at 128 channels only: at 64 channels the
 * register-blocked dw3 tiles win (resnet18 at 224, 2 threads: 31.6 against 32.2
 * images/s with them; F(3x3,2x2) before was 0.81x them at the 56x56 layer). */
#define WINO_DW_MIN 128
/* Images per forward GEMM call on padded planes (one packing of w per chunk). */
#define FWD_CHUNK 8

static int conv_padded(int KH, int KW, int S, int pad)
{
    return S == 1 && KH == KW && KH == 2 * pad + 1 && pad >= 1;
}

/* A 3x3 stride-2 pad-1 conv (ResNet downsampling) on the four stride-phase planes
 * of its zero-padded input, q[c][a][b][i][j] = xpad[c][2i + a][2j + b]: output
 * pixel (oh, ow) under kernel tap (kh, kw) reads xpad[c][2oh + kh][2ow + kw] =
 * q[c][kh%2][kw%2][oh + kh/2][ow + kw/2], so every im2col row is a phase plane
 * shifted by (kh/2)*Wq + kw/2 with OW consecutive columns per output row: the
 * forward runs apb_sgemm_conv (bitwise equal to im2col + apb_sgemm) and dW
 * apb_sgemm_dw3 with taps {0, plane, 1} on the saved planes, no im2col. */
static int conv_phase(int KH, int KW, int S, int pad)
{
    return S == 2 && KH == 3 && KW == 3 && pad == 1;
}

/* x[C][H][W] -> the phase planes of its 1-padded image, q[c][a][b] at
 * q + (c*4 + a*2 + b)*qs, each Hq x Wq (Hq = (H + 3)/2, Wq = (W + 3)/2). Only the
 * entries that hold an image value are written: the buffer was zeroed once and the
 * padding entries sit at the same places for every image (see zero_once). */
static void phase_planes(const float *x, int C, int H, int W, long qs, float *q)
{
    int Hq = (H + 3) / 2, Wq = (W + 3) / 2;
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * H * W;
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                float *d = q + ((size_t)c * 4 + a * 2 + b) * qs;
                /* column j holds x column 2j + b - 1: b = 1 the even columns from
                 * j = 0, b = 0 the odd ones from j = 1 */
                int j0 = b ? 0 : 1, n = b ? (W + 1) / 2 : W / 2;
                for (int i = 0; i < Hq; i++) {
                    int ih = 2 * i + a - 1;
                    if (ih < 0 || ih >= H)
                        continue;
                    const float *sr = xc + (long)ih * W + (b ? 0 : 1);
                    float *dr = d + (long)i * Wq + j0;
                    for (int t = 0; t < n; t++)
                        dr[t] = sr[2 * t];
                }
            }
    }
}

/* C planes [H,W] -> the interiors of zero-padded planes of Hp x Wp at stride ps:
 * only the image rows are copied, the padding around them stays as zero_once left
 * it (it is the same for every image), so a copy is a row of W floats, no calls. */
static void pad_planes(const float *x, int C, int H, int W, int pad, long ps, float *xp)
{
    int Wp = W + 2 * pad;
    for (int c = 0; c < C; c++) {
        const float *s = x + (size_t)c * H * W;
        float *d = xp + (size_t)c * ps + (long)pad * Wp + pad;
        for (int i = 0; i < H; i++) {
            const float *sr = s + (long)i * W;
            float *r = d + (long)i * Wp;
#pragma omp simd
            for (int j = 0; j < W; j++)
                r[j] = sr[j];
        }
    }
}

/* Points sv's scratch into the graph's work buffer, in the order xpad, dypad,
 * col, dcol, wt, dwp, wu, ww. The padded planes (xpad, dypad) are zeroed unless the
 * buffer's last user was a conv with the same plane layout (sv->key): the pad
 * copies above write only image values, so the borders stay zero for every image
 * that passes through them, whichever layer of that shape wrote them. Backward
 * asks for what forward did, so there it cannot fail. */
static apb_status conv_work(apb_graph *g, conv_saved *sv)
{
    size_t n[8] = {sv->n_xpad, sv->n_dypad, sv->n_col, sv->n_dcol,
                   sv->n_wt,   sv->n_dwp,   sv->n_wu,  sv->n_ww};
    float **p[8] = {&sv->xpad, &sv->dypad, &sv->col, &sv->dcol,
                    &sv->wt,   &sv->dwp,   &sv->wu,  &sv->ww};
    size_t total = 0;
    for (int i = 0; i < 8; i++)
        total += (n[i] + 15) / 16 * 16; /* each buffer 64-byte aligned */
    if (total == 0) {
        for (int i = 0; i < 8; i++)
            *p[i] = NULL;
        return APB_OK;
    }
    int same = 0;
    float *w = apb_graph_work(g, total * sizeof(float), sv->key, &same);
    if (!w)
        return APB_ENOMEM;
    for (int i = 0; i < 8; i++) {
        *p[i] = n[i] ? w : NULL;
        w += (n[i] + 15) / 16 * 16;
    }
    if (!same) {
        if (sv->n_xpad)
            memset(sv->xpad, 0, sizeof(float) * sv->n_xpad);
        if (sv->n_dypad)
            memset(sv->dypad, 0, sizeof(float) * sv->n_dypad);
    }
    return APB_OK;
}

/* FNV-1a over the numbers that fix where the padded planes hold image values. */
static uint64_t layout_key(const long *v, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        uint64_t x = (uint64_t)v[i];
        for (int b = 0; b < 8; b++) {
            h ^= (x >> (8 * b)) & 0xff;
            h *= 1099511628211ull;
        }
    }
    return h ? h : 1;
}

/* y[n][m][p] += b[m] for n < nimg. */
static void add_bias(float *y, int nimg, int M, int P, const float *b)
{
    for (int j = 0; j < nimg; j++)
        for (int m = 0; m < M; m++) {
            float bm = b[m], *row = y + ((size_t)j * M + m) * P;
#pragma omp simd
            for (int p = 0; p < P; p++)
                row[p] += bm;
        }
}

/* Images [n0, n0 + gn) of x[N][C][H][W] as padded (or stride-phase) planes in
 * thread t's slot of sv->xpad; returns the slot. */
static float *x_planes(const conv_saved *sv, const float *x, int n0, int gn, int C, int H, int W,
                       int pad, int t)
{
    float *xp = sv->xpad + (size_t)t * sv->xchunk * C * sv->xs;
    for (int j = 0; j < gn; j++) {
        const float *xn = x + (size_t)(n0 + j) * C * H * W;
        if (sv->phase)
            phase_planes(xn, C, H, W, sv->qs, xp + (size_t)j * C * sv->xs);
        else
            pad_planes(xn, C, H, W, pad, sv->xs, xp + (size_t)j * C * sv->xs);
    }
    return xp;
}

/* Images per dW group: enough that each dot product is about 1024 long. */
static int dw_group(int N, int P)
{
    int G = P >= 1024 ? 1 : (1024 + P - 1) / P;
    return G < N ? G : N;
}

static apb_status conv_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                             int dim[APB_MAX_DIM])
{
    const conv_attr *a = attr;
    const apb_var *x = in[0], *w = in[1], *b = nin > 2 ? in[2] : NULL;
    char sx[64], sw[64], sb[64];
    if (nin < 2 || nin > 3)
        return apb_fail(APB_EINVAL, "conv2d: %d inputs (x, w[, b] expected)", nin);
    if (x->ndim != 4 || w->ndim != 4 || x->dim[1] != w->dim[1])
        return apb_fail(APB_ESHAPE, "conv2d: input %s and weight %s do not fit (want [N,C,H,W] and [M,C,KH,KW])",
                        apb_dims_str(x->ndim, x->dim, sx, sizeof sx),
                        apb_dims_str(w->ndim, w->dim, sw, sizeof sw));
    if (b && (b->ndim != 1 || b->dim[0] != w->dim[0]))
        return apb_fail(APB_ESHAPE, "conv2d: bias %s does not match weight %s",
                        apb_dims_str(b->ndim, b->dim, sb, sizeof sb),
                        apb_dims_str(w->ndim, w->dim, sw, sizeof sw));
    if (a->stride < 1 || a->pad < 0)
        return apb_fail(APB_EINVAL, "conv2d: stride %d / pad %d invalid", a->stride, a->pad);
    int OH = x->dim[2] + 2 * a->pad - w->dim[2], OW = x->dim[3] + 2 * a->pad - w->dim[3];
    if (OH < 0 || OW < 0)
        return apb_fail(APB_ESHAPE, "conv2d: kernel %s larger than padded input %s (pad %d)",
                        apb_dims_str(w->ndim, w->dim, sw, sizeof sw),
                        apb_dims_str(x->ndim, x->dim, sx, sizeof sx), a->pad);
    *ndim = 4;
    dim[0] = x->dim[0];
    dim[1] = w->dim[0];
    dim[2] = OH / a->stride + 1;
    dim[3] = OW / a->stride + 1;
    return APB_OK;
}

/* dx of other stride-1 square convs (e.g. 3x3 unpadded): an im2col of dy with
 * pad' = KH-1-pad times the flipped kernel, instead of W^T*dy + col2im. */
static int dx_by_im2col(int KH, int KW, int S, int pad)
{
    return S == 1 && KH == KW && pad <= KH - 1 && !(KH == 1 && pad == 0);
}

static apb_status conv_forward(apb_graph *g, apb_var *out)
{
    const conv_attr *a = out->attr;
    const apb_var *x = out->in[0], *w = out->in[1], *b = out->nin > 2 ? out->in[2] : NULL;
    int N = x->dim[0], C = x->dim[1], H = x->dim[2], W = x->dim[3];
    int M = w->dim[0], KH = w->dim[2], KW = w->dim[3];
    int P = out->dim[2] * out->dim[3], K = C * KH * KW, S = a->stride, pad = a->pad;
    int fast = KH == 1 && KW == 1 && S == 1 && pad == 0;
    int nthreads = apb_threads_get();
    int nt = (nthreads > 1 && N >= nthreads) ? nthreads : 1;
    size_t kp = (size_t)K * P;
    int Wp = W + 2 * pad, Hp = H + 2 * pad, MKK = M * KH * KW;

    conv_saved *sv = apb_graph_alloc(g, sizeof *sv);
    if (!sv)
        return APB_ENOMEM;
    memset(sv, 0, sizeof *sv);
    sv->nt = nt;
    int grad = g->record && out->requires_grad;
    int want_dw = grad && w->requires_grad, want_dx = grad && !fast && x->requires_grad;
    sv->G = want_dw ? dw_group(N, P) : 1;
    sv->padded = conv_padded(KH, KW, S, pad);
    sv->phase = conv_phase(KH, KW, S, pad);
    if (sv->phase) {
        sv->dw3 = want_dw && apb_sgemm_dw3_fast(M);
        sv->Wq = (W + 3) / 2;
        sv->qs = ((long)((H + 3) / 2) * sv->Wq + 15) / 16 * 16;
        sv->xs = 4 * sv->qs;
        sv->xchunk = sv->dw3 && sv->G > FWD_CHUNK ? sv->G : FWD_CHUNK;
        if (!(sv->boff = apb_graph_alloc(g, sizeof(long) * (size_t)K)) ||
            !(sv->roff = apb_graph_alloc(g, sizeof(long) * (size_t)C * 3)))
            return APB_ENOMEM;
        sv->n_xpad = (size_t)nt * sv->xchunk * C * sv->xs;
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < 3; kh++) {
                sv->roff[c * 3 + kh] =
                    c * sv->xs + (kh & 1) * 2 * sv->qs + (long)(kh >> 1) * sv->Wq;
                for (int kw = 0; kw < 3; kw++)
                    sv->boff[(c * 3 + kh) * 3 + kw] =
                        sv->roff[c * 3 + kh] + (kw & 1) * sv->qs + (kw >> 1);
            }
    }
    if (sv->padded) {
        sv->dw3 = want_dw && KW == 3 && apb_sgemm_dw3_fast(M);
        sv->shift =
            want_dw && !sv->dw3 && M < SHIFT_MAX_M && apb_isa_active() == APB_ISA_AVX512;
        int wino_ok = g->training && KH == 3 && pad == 1 && apb_wino_enabled();
        sv->wino = wino_ok && wino_wide(C, M, H, W);
        sv->wdw = wino_ok && want_dw && C >= WINO_DW_MIN && M >= WINO_DW_MIN;
        if (sv->wdw)
            sv->dw3 = sv->shift = 0;
        /* slack: dW's dot products run KW - 1 floats past the last padded row */
        sv->xs = ((long)Hp * Wp + KW + 15) / 16 * 16;
        sv->ys = ((long)Hp * Wp + 15) / 16 * 16;
        sv->lead = (int)((16 - ((long)pad * Wp + pad) % 16) % 16);
        sv->xchunk = sv->shift && sv->G > FWD_CHUNK ? sv->G : FWD_CHUNK;
        if (!(sv->boff = apb_graph_alloc(g, sizeof(long) * (size_t)K)))
            return APB_ENOMEM;
        if (!sv->wino || sv->shift)
            sv->n_xpad = (size_t)nt * sv->xchunk * C * sv->xs;
        if (sv->wino) {
            sv->n_wu = apb_wino_u_floats(M, C);
            size_t wf = apb_wino_work_floats(C, M, W), wb = apb_wino_work_floats(M, C, W);
            sv->n_ww = (size_t)nthreads * (wf > wb ? wf : wb); /* forward's, dx's */
        }
        if (sv->wdw) {
            size_t wd = apb_wino_dw_work_floats(C, M, W, nthreads); /* dW's */
            if (wd > sv->n_ww)
                sv->n_ww = wd;
        }
        sv->wnt = nthreads;
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++)
                    sv->boff[(c * KH + kh) * KW + kw] = c * sv->xs + (long)kh * Wp + kw;
        if ((want_dx && !sv->wino) || sv->shift)
            sv->n_dypad = (size_t)nt * (sv->G * M * sv->ys + 16);
        if (want_dx && !sv->wino) {
            if (!(sv->doff = apb_graph_alloc(g, sizeof(long) * (size_t)MKK)))
                return APB_ENOMEM;
            sv->n_wt = (size_t)M * K;
            for (int m = 0; m < M; m++)
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++)
                        sv->doff[(m * KH + kh) * KW + kw] = m * sv->ys + (long)kh * Wp + kw;
        }
        if (want_dw && !sv->shift && !sv->dw3 && !sv->wdw)
            sv->n_col = (size_t)nt * sv->G * kp;
    } else {
        /* im2col buffers: the forward's, and dW's unless the phase planes serve */
        int need_col = !fast && (!sv->phase || (want_dw && !sv->dw3));
        if (need_col)
            sv->n_col = (size_t)nt * sv->G * kp;
        if (want_dx) {
            size_t dsz = kp;
            if (dx_by_im2col(KH, KW, S, pad)) {
                size_t alt = (size_t)MKK * H * W;
                dsz = alt > kp ? alt : kp;
                sv->n_wt = (size_t)M * K;
            }
            sv->n_dcol = (size_t)nt * dsz;
        }
    }
    if (want_dw && nt > 1 && !sv->wdw)
        sv->n_dwp = (size_t)nt * M * K;
    if (sv->n_xpad || sv->n_dypad) {
        long lay[] = {C, H, W, pad, sv->phase, sv->xs, sv->qs, sv->xchunk, nt,
                      M, out->dim[2], out->dim[3], sv->ys, sv->lead, sv->G,
                      (long)sv->n_xpad, (long)sv->n_dypad};
        sv->key = layout_key(lay, (int)(sizeof lay / sizeof lay[0]));
    }
    APB_TRY(conv_work(g, sv));
    out->saved = sv;

    const float *xd = x->data, *wd = w->data, *bd = b ? b->data : NULL;
    float *yd = out->data;
    int OW = out->dim[3];
    if (sv->wino) {
        apb_wino_weights(M, C, wd, 0, sv->wu, nthreads);
        apb_wino_conv(N, C, H, W, xd, (long)C * H * W, M, sv->wu, 0, yd, (long)M * P, sv->ww,
                      nthreads);
        if (bd)
            add_bias(yd, N, M, P, bd);
        return APB_OK;
    }
    if (sv->padded || sv->phase) { /* chunks of images share one packing of w, stay in cache */
        int nchunk = (N + FWD_CHUNK - 1) / FWD_CHUNK;
        long segld = sv->phase ? sv->Wq : Wp; /* plane row to plane row */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int cb = 0; cb < nchunk; cb++) {
            int n0 = cb * FWD_CHUNK, gn = N - n0 < FWD_CHUNK ? N - n0 : FWD_CHUNK;
            float *xp = x_planes(sv, xd, n0, gn, C, H, W, pad, apb_thread_num());
            float *yn = yd + (size_t)n0 * M * P;
            apb_sgemm_conv_batch_stream(gn, M, P, K, 1.0f, wd, K, xp, C * sv->xs, sv->boff, OW,
                                        segld, 0.0f, yn, (long)M * P, P);
            if (bd)
                add_bias(yn, gn, M, P, bd);
        }
        return APB_OK;
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int n = 0; n < N; n++) {
        const float *xn = xd + (size_t)n * C * H * W;
        float *yn = yd + (size_t)n * M * P;
        const float *B = xn;
        if (!fast) {
            float *col = sv->col + (size_t)apb_thread_num() * sv->G * kp;
            apb_im2col(xn, C, H, W, KH, KW, S, pad, col);
            B = col;
        }
        apb_sgemm(0, 0, M, P, K, 1.0f, wd, K, B, P, 0.0f, yn, P);
        if (bd)
            add_bias(yn, 1, M, P, bd);
    }
    return APB_OK;
}

static void conv_backward(apb_graph *g, apb_var *out)
{
    const conv_attr *a = out->attr;
    conv_saved *sv = out->saved;
    apb_var *x = out->in[0], *w = out->in[1], *b = out->nin > 2 ? out->in[2] : NULL;
    int N = x->dim[0], C = x->dim[1], H = x->dim[2], W = x->dim[3];
    int M = w->dim[0], KH = w->dim[2], KW = w->dim[3];
    int OH = out->dim[2], OW = out->dim[3];
    int P = OH * OW, K = C * KH * KW, S = a->stride, pad = a->pad;
    int fast = KH == 1 && KW == 1 && S == 1 && pad == 0;
    int nt = sv->nt, need_dx = x->requires_grad, need_dw = w->requires_grad;
    size_t kp = (size_t)K * P, mk = (size_t)M * K;
    const float *dy = out->grad, *xd = x->data, *wd = w->data;
    /* dx is written by its GEMM (beta 0) when fresh; w and b are small: zeroed. */
    int dx_fresh = need_dx && apb_grad_take_fresh(x);
    if (need_dw && apb_grad_take_fresh(w))
        memset(w->grad, 0, sizeof(float) * (size_t)w->numel);
    if (b && b->requires_grad && apb_grad_take_fresh(b))
        memset(b->grad, 0, sizeof(float) * (size_t)b->numel);
    float dx_beta = dx_fresh ? 0.0f : 1.0f;

    if (b && b->requires_grad)
        for (int n = 0; n < N; n++)
            for (int m = 0; m < M; m++) {
                const float *row = dy + ((size_t)n * M + m) * P;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int p = 0; p < P; p++)
                    s += row[p];
                b->grad[m] += s;
            }
    if (!need_dx && !need_dw)
        return;
    /* forward took this much of the work buffer, which never shrinks: no
     * allocation, cannot fail */
    if (conv_work(g, sv) != APB_OK)
        return;
    if (need_dw && sv->wdw) { /* dW by F(3x3, 4x4), all images at once */
        apb_wino_dw(N, C, H, W, xd, (long)C * H * W, M, dy, (long)M * P, w->grad, sv->ww, sv->wnt);
        need_dw = 0;
    }
    if (need_dw && nt > 1)
        memset(sv->dwp, 0, sizeof(float) * nt * mk);
    int flip = need_dx && sv->wt != NULL;
    int MKK = M * KH * KW, HW = H * W, pad2 = KH - 1 - pad, Wp = W + 2 * pad;
    size_t dsz = flip && (size_t)MKK * HW > kp ? (size_t)MKK * HW : kp;
    if (flip)
        for (int m = 0; m < M; m++)
            for (int c = 0; c < C; c++)
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++)
                        sv->wt[(size_t)c * MKK + (m * KH + kh) * KW + kw] =
                            wd[(((size_t)m * C + c) * KH + KH - 1 - kh) * KW + KW - 1 - kw];

    if (need_dx && sv->wino) { /* dx = the same conv of dy with the flipped kernel */
        int nw = sv->wnt;
        apb_wino_weights(C, M, wd, 1, sv->wu, nw);
        apb_wino_conv(N, M, H, W, dy, (long)M * P, C, sv->wu, !dx_fresh, x->grad, (long)C * H * W,
                      sv->ww, nw);
    }
    int dx_gemm = need_dx && !sv->wino; /* dx still to do in the loop below */
    int G = sv->G, ngroup = need_dw || dx_gemm ? (N + G - 1) / G : 0; /* 0: nothing left */
    int use_dyp = sv->padded && (dx_gemm || sv->shift);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int gi = 0; gi < ngroup; gi++) {
        int t = apb_thread_num(), n0 = gi * G, gn = N - n0 < G ? N - n0 : G;
        float *dyp = use_dyp ? sv->dypad + (size_t)t * (G * M * sv->ys + 16) + sv->lead : NULL;
        if (use_dyp)
            for (int j = 0; j < gn; j++)
                pad_planes(dy + (size_t)(n0 + j) * M * P, M, OH, OW, pad, sv->ys,
                           dyp + (size_t)j * M * sv->ys);
        float *dw = need_dw && nt > 1 ? sv->dwp + (size_t)t * mk : w->grad;
        float *xp = NULL; /* the group's x planes again, for dw3 and the dot products */
        if (need_dw && (sv->phase ? sv->dw3 : sv->shift)) {
            xp = x_planes(sv, xd, n0, gn, C, H, W, pad, t);
        }
        if (need_dw && sv->dw3 && sv->phase) {
            apb_sgemm_dw3(M, C * 3, gn, OH, OW, 1.0f, dy + (size_t)n0 * M * P, (long)M * P, xp,
                          sv->roff, C * sv->xs, sv->Wq, sv->qs, 1, dw, K);
        } else if (need_dw && sv->dw3) { /* 3x3 pad 1: straight from x */
            apb_sgemm_dw3_same(M, C, gn, H, W, 1.0f, dy + (size_t)n0 * M * P, (long)M * P,
                               xd + (size_t)n0 * C * H * W, (long)C * H * W, dw, K);
        } else if (need_dw && sv->shift) {
            apb_sgemm_nt_rows(M, K, OH * Wp, gn, 1.0f, dyp + (long)pad * Wp + pad, (int)sv->ys,
                              M * sv->ys, xp, sv->boff, C * sv->xs, dw, K);
        } else if (need_dw) {
            const float *B = xd + (size_t)n0 * C * H * W;
            long sb = (long)C * H * W;
            if (!fast) {
                float *col = sv->col + (size_t)t * G * kp;
                for (int j = 0; j < gn; j++)
                    apb_im2col(B + (size_t)j * sb, C, H, W, KH, KW, S, pad, col + (size_t)j * kp);
                B = col;
                sb = (long)kp;
            }
            apb_sgemm_nt_batch(M, K, P, gn, 1.0f, dy + (size_t)n0 * M * P, P, (long)M * P, B, P,
                               sb, dw, K);
        }
        if (dx_gemm && sv->padded) /* the whole group, one packing of wt */
            apb_sgemm_conv_batch_stream(gn, C, HW, MKK, 1.0f, sv->wt, MKK, dyp, M * sv->ys,
                                        sv->doff, W, Wp, dx_beta, x->grad + (size_t)n0 * C * HW,
                                        (long)C * HW, HW);
        for (int n = n0; dx_gemm && !sv->padded && n < n0 + gn; n++) {
            const float *dyn = dy + (size_t)n * M * P;
            float *dxn = x->grad + (size_t)n * C * H * W;
            if (fast) {
                apb_sgemm(1, 0, C, P, M, 1.0f, wd, K, dyn, P, dx_beta, dxn, P);
            } else if (flip) {
                float *dcol = sv->dcol + (size_t)t * dsz;
                apb_im2col(dyn, M, OH, OW, KH, KW, 1, pad2, dcol);
                apb_sgemm(0, 0, C, HW, MKK, 1.0f, sv->wt, MKK, dcol, HW, dx_beta, dxn, HW);
            } else {
                float *dcol = sv->dcol + (size_t)t * dsz;
                apb_sgemm(1, 0, K, P, M, 1.0f, wd, K, dyn, P, 0.0f, dcol, P);
                if (dx_fresh)
                    memset(dxn, 0, sizeof(float) * (size_t)C * HW);
                apb_col2im(dcol, C, H, W, KH, KW, S, pad, dxn);
            }
        }
    }
    if (need_dw && nt > 1)
        for (int t = 0; t < nt; t++) {
            const float *p = sv->dwp + (size_t)t * mk;
#pragma omp simd
            for (size_t i = 0; i < mk; i++)
                w->grad[i] += p[i];
        }
}

const apb_op apb_op_conv2d = {"conv2d", sizeof(conv_attr), APB_OP_GRAD_WRITE, conv_shape,
                              conv_forward, conv_backward};

apb_status apb_conv2d(apb_graph *g, apb_var *x, apb_var *w, apb_var *b, int stride, int pad,
                      apb_var **y)
{
    conv_attr a = {stride, pad};
    apb_var *in[3] = {x, w, b};
    return apb_apply(g, &apb_op_conv2d, in, b ? 3 : 2, &a, y);
}

static apb_status conv_case(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                            apb_var **out, const int xd[4], const int wd[4], int bias, int stride,
                            int pad)
{
    inputs[0] = apb_case_normal(g, rng, 4, xd, 1.0f, 1);
    inputs[1] = apb_case_normal(g, rng, 4, wd, 0.5f, 1);
    inputs[2] = bias ? apb_case_normal(g, rng, 1, wd, 0.5f, 1) : NULL;
    *ninputs = bias ? 3 : 2;
    for (int i = 0; i < *ninputs; i++)
        if (!inputs[i])
            return APB_ENOMEM;
    return apb_conv2d(g, inputs[0], inputs[1], inputs[2], stride, pad, out);
}

apb_status apb_case_conv2d_3x3_s2_p1(apb_graph *g, apb_rng *rng, apb_var **inputs,
                                     int *ninputs, apb_var **out)
{
    return conv_case(g, rng, inputs, ninputs, out, (int[]){2, 3, 7, 6}, (int[]){4, 3, 3, 3}, 1,
                     2, 1);
}

apb_status apb_case_conv2d_1x1(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                               apb_var **out)
{
    return conv_case(g, rng, inputs, ninputs, out, (int[]){2, 5, 4, 3}, (int[]){3, 5, 1, 1}, 1,
                     1, 0);
}

apb_status apb_case_conv2d_nobias_batch3(apb_graph *g, apb_rng *rng, apb_var **inputs,
                                         int *ninputs, apb_var **out)
{
    return conv_case(g, rng, inputs, ninputs, out, (int[]){3, 2, 5, 5}, (int[]){4, 2, 2, 3}, 0,
                     1, 0);
}
