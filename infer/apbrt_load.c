/* apbrt_load.c - reads and validates a .apb file and builds the runtime model.
 *
 * Every size, offset, count, index and CRC is checked before it is used: the
 * header and section table (magic, version, CRCs, 64-byte alignment, bounds,
 * overlap), the model metadata, the graph (slots defined before use, shapes
 * propagated from the input geometry), and each parameter section (exact size,
 * CSR row pointers and column indices, unused bits zero, finite values). A bad
 * file gives an error naming the file and the section, never a crash: this code
 * is fuzzed (fuzz/fuzz_load.c, tests/test_infer_robust.c).
 *
 * The loader also plans execution: conv/linear -> BN -> ReLU chains whose
 * intermediate values nobody else reads run as one layer with a fused epilogue.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt_internal.h"
#include "crc32.h"
#include "fileio.h"
#include "i8gemm.h"

typedef struct {
    uint32_t type, index;
    uint64_t off, size;
} sec_entry;

static const char *sec_name(uint32_t type)
{
    switch (type) {
    case APBRT_SEC_META: return "META";
    case APBRT_SEC_CLASSES: return "CLASSES";
    case APBRT_SEC_GRAPH: return "GRAPH";
    case APBRT_SEC_LAYER: return "LAYER";
    default: return "?";
    }
}

static int cmp_off(const void *a, const void *b)
{
    const sec_entry *x = *(const sec_entry *const *)a, *y = *(const sec_entry *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static char *arena_strndup(apb_arena *a, const unsigned char *s, size_t n)
{
    char *p = apb_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Reads a length-prefixed string at *pos of a section of `size` bytes. */
static apb_status read_str(const char *name, const char *what, const unsigned char *s,
                           uint64_t size, uint64_t *pos, apb_arena *a, char **out)
{
    if (size - *pos < 4)
        return apb_fail(APB_EFORMAT, "%s: %s: length field truncated at byte %llu", name, what,
                        (unsigned long long)*pos);
    uint32_t n = apbrt_rd32(s + *pos);
    *pos += 4;
    if (n > APBRT_MAX_NAME || n > size - *pos)
        return apb_fail(APB_EFORMAT, "%s: %s: length %u runs past the section end (%llu bytes left)",
                        name, what, n, (unsigned long long)(size - *pos));
    if (memchr(s + *pos, 0, n))
        return apb_fail(APB_EFORMAT, "%s: %s: contains a NUL byte", name, what);
    *out = a ? arena_strndup(a, s + *pos, n) : NULL;
    if (a && !*out)
        return apb_fail(APB_ENOMEM, "%s: out of memory", name);
    *pos += n;
    return APB_OK;
}

static int is_elementwise(int kind)
{
    return kind == APBRT_BN || kind == APBRT_RELU || kind == APBRT_HARDTANH ||
           kind == APBRT_FLATTEN || kind == APBRT_ADD || kind == APBRT_CLIP;
}

/* Parses and checks one 96-byte record; propagates shapes through the slots. */
const char *apbrt_accounting_problem(const apbrt_rec *r, long K)
{
    switch (r->compression) {
    case APBRT_C_STORED:
        return r->kept || r->scales ? "accounting counts set without a compression kind" : NULL;
    case APBRT_C_APB:
    case APBRT_C_BINARY:
        if (r->wkind != APBRT_W_APB)
            return "APB/binary compression needs APB storage";
        if (r->kept || (r->scales != 1 && r->scales != r->cout))
            return "APB/binary compression needs 1 or cout scales and no kept count";
        return NULL;
    case APBRT_C_Q2:
        return r->wkind != APBRT_W_Q2 || r->kept || r->scales ? "2-bit compression needs Q2 storage"
                                                               : NULL;
    case APBRT_C_PRUNED:
        if (r->wkind != APBRT_W_FP32 || r->scales)
            return "pruning needs FP32 storage and no scales";
        return r->kept < 0 || r->kept > K * r->cout ? "more kept weights than weights" : NULL;
    case APBRT_C_PRUNE_BINARY:
        if (r->wkind != APBRT_W_FP32 || (r->scales != 1 && r->scales != r->cout))
            return "pruning + binarization needs FP32 storage and 1 or cout scales";
        return r->kept < 0 || r->kept > K * r->cout ? "more kept weights than weights" : NULL;
    default:
        return "unknown compression kind";
    }
}

static apb_status read_record(const char *name, const unsigned char *p, int i, apbrt_model *m,
                              int *sdef, int (*sshape)[3], uint32_t version)
{
    apbrt_rt_layer *L = &m->layers[i];
    apbrt_rec *r = &L->r;
    uint32_t w[24];
    for (int k = 0; k < 24; k++)
        w[k] = apbrt_rd32(p + 4 * k);
    const char *ctx = "GRAPH";
    if (w[0] < APBRT_CONV || w[0] > APBRT_CLIP)
        return apb_fail(APB_EFORMAT, "%s: %s: layer %d: unknown kind %u", name, ctx, i, w[0]);
    const char *kn = apbrt_kind_name((int)w[0]);
#define BAD(...) apb_fail(APB_EFORMAT, "%s: GRAPH: layer %d (%s): " __VA_ARGS__)
    /* words 21-23: CLIP bounds (21, 22); conv/linear accounting (version 2) */
    int clip = w[0] == APBRT_CLIP;
    for (int k = clip ? 23 : version < 2 ? 21 : 24; k < 24; k++)
        if (w[k])
            return BAD("reserved word %d is %u, not 0 (version %u)", name, i, kn, k, w[k], version);
    if (w[1] >= (uint32_t)m->nslots || w[3] >= (uint32_t)m->nslots ||
        (w[0] == APBRT_ADD && w[2] >= (uint32_t)m->nslots))
        return BAD("slot out of range (in=%u in2=%u out=%u, %d slots)", name, i, kn, w[1], w[2],
                   w[3], m->nslots);
    /* Small bounded fields first: everything below fits an int. */
    for (int k = 4; k < (clip ? 21 : 24); k++)
        if (k != 12 && k != 13 && k != 19 && k != 22 && w[k] > APBRT_MAX_DIM)
            return BAD("field %d = %u out of range", name, i, kn, k, w[k]);
    r->kind = (int)w[0], r->in = (int)w[1], r->in2 = (int)w[2], r->out = (int)w[3];
    r->cin = (int)w[4], r->cout = (int)w[5], r->kh = (int)w[6], r->kw = (int)w[7];
    r->stride = (int)w[8], r->pad = (int)w[9], r->wkind = (int)w[10], r->akind = (int)w[11];
    union { uint32_t u; float f; } as = {w[12]}, ws = {w[13]};
    r->act_step = as.f, r->wstep = ws.f;
    r->channels = (int)w[14], r->k = (int)w[15], r->pstride = (int)w[16], r->ppad = (int)w[17];
    r->has_bias = (int)w[18], r->nnz = (long)w[19], r->index_width = (int)w[20];
    if (clip) {
        union { uint32_t u; float f; } lo = {w[21]}, hi = {w[22]};
        r->lo = lo.f, r->hi = hi.f;
        if (!(isfinite(r->lo) && isfinite(r->hi) && r->lo < r->hi))
            return BAD("bounds [%g, %g] must be finite with lo < hi", name, i, kn, r->lo, r->hi);
    } else {
        r->compression = (int)w[21], r->kept = (long)w[22], r->scales = (int)w[23];
    }
    if (!sdef[r->in])
        return BAD("reads slot %d before any layer writes it", name, i, kn, r->in);
    if (r->kind == APBRT_ADD && !sdef[r->in2])
        return BAD("reads slot %d before any layer writes it", name, i, kn, r->in2);
    L->ic = sshape[r->in][0], L->ih = sshape[r->in][1], L->iw = sshape[r->in][2];
    long oc = L->ic, oh = L->ih, ow = L->iw;
    int conv_like = r->kind == APBRT_CONV || r->kind == APBRT_LINEAR;
    if (!conv_like && (r->cin || r->cout || r->kh || r->kw || r->stride || r->pad || r->wkind ||
                       r->akind || w[12] || w[13] || r->has_bias || r->nnz || r->index_width ||
                       r->compression || r->kept || r->scales))
        return BAD("has convolution fields set", name, i, kn);
    if (r->kind != APBRT_BN && r->channels)
        return BAD("has channels set", name, i, kn);
    if (r->kind != APBRT_MAXPOOL && r->kind != APBRT_AVGPOOL && (r->k || r->pstride || r->ppad))
        return BAD("has pooling fields set", name, i, kn);
    if (r->kind != APBRT_ADD && r->in2)
        return BAD("has in2 set", name, i, kn);
    switch (r->kind) {
    case APBRT_CONV:
    case APBRT_LINEAR: {
        if (r->cin < 1 || r->cout < 1 || r->kh < 1 || r->kw < 1 || r->stride < 1 ||
            r->kh > APBRT_MAX_KSIZE || r->kw > APBRT_MAX_KSIZE || r->stride > APBRT_MAX_KSIZE ||
            r->pad > APBRT_MAX_KSIZE)
            return BAD("bad geometry cin=%d cout=%d k=%dx%d stride=%d pad=%d", name, i, kn, r->cin,
                       r->cout, r->kh, r->kw, r->stride, r->pad);
        if (r->wkind > APBRT_W_Q2 || r->akind > APBRT_A_S8D || r->has_bias > 1)
            return BAD("weight kind %d / activation kind %d / bias flag %d out of range", name, i,
                       kn, r->wkind, r->akind, r->has_bias);
        if (apbrt_akind_int8(r->akind) && version < 2)
            return BAD("8-bit activation kind %d needs format version 2, file is version %u", name,
                       i, kn, r->akind, version);
        if (r->akind == APBRT_A_S8D && version < 3)
            return BAD("approximate 8-bit input (kind %d) needs format version 3, file is version %u",
                       name, i, kn, r->akind, version);
        if (r->akind == APBRT_A_S8D && (r->kind != APBRT_CONV || r->wkind != APBRT_W_FP32))
            return BAD("approximate 8-bit input (kind %d) needs a conv with FP32 weights", name, i,
                       kn, r->akind);
        L->K = (long)r->cin * r->kh * r->kw;
        if (L->K * r->cout > APBRT_MAX_PARAMS)
            return BAD("%ld weights is too many", name, i, kn, L->K * r->cout);
        if (r->kind == APBRT_LINEAR) {
            if (r->kh != 1 || r->kw != 1 || r->stride != 1 || r->pad != 0)
                return BAD("linear layer with k=%dx%d stride=%d pad=%d", name, i, kn, r->kh, r->kw,
                           r->stride, r->pad);
            if ((long)L->ic * L->ih * L->iw != r->cin)
                return BAD("input %dx%dx%d does not flatten to cin=%d", name, i, kn, L->ic, L->ih,
                           L->iw, r->cin);
            oc = r->cout, oh = ow = 1;
        } else {
            if (L->ic != r->cin)
                return BAD("input has %d channels, layer expects cin=%d", name, i, kn, L->ic, r->cin);
            if ((long)L->ih + 2L * r->pad < r->kh || (long)L->iw + 2L * r->pad < r->kw)
                return BAD("kernel %dx%d larger than the padded input %dx%d (pad %d)", name, i, kn,
                           r->kh, r->kw, L->ih, L->iw, r->pad);
            oc = r->cout;
            oh = (L->ih + 2L * r->pad - r->kh) / r->stride + 1;
            ow = (L->iw + 2L * r->pad - r->kw) / r->stride + 1;
        }
        if (apbrt_akind_has_step(r->akind)
                ? !(r->act_step > 0.0f && isfinite(r->act_step) && isfinite(1.0f / r->act_step))
                : w[12] != 0)
            return BAD("activation step %g invalid for activation kind %d", name, i, kn,
                       r->act_step, r->akind);
        if (r->wkind == APBRT_W_Q2 ? !(r->wstep > 0.0f && isfinite(r->wstep)) : w[13] != 0)
            return BAD("weight step %g invalid for weight kind %d", name, i, kn, r->wstep, r->wkind);
        if (r->wkind == APBRT_W_APB) {
            if (r->index_width != 2 && r->index_width != 4)
                return BAD("index width %d is not 2 or 4", name, i, kn, r->index_width);
            if (r->index_width == 2 && L->K > 65536)
                return BAD("16-bit indices cannot address K=%ld", name, i, kn, L->K);
            if (r->nnz > L->K * r->cout)
                return BAD("%ld residual values for %ld weights", name, i, kn, r->nnz,
                           L->K * r->cout);
        } else if (r->nnz || r->index_width) {
            return BAD("residual fields set on a non-APB layer", name, i, kn);
        }
        const char *acct = apbrt_accounting_problem(r, L->K);
        if (acct) {
            return BAD("%s", name, i, kn, acct);
        }
        break;
    }
    case APBRT_BN:
        if (r->channels != L->ic)
            return BAD("%d channels, input has %d", name, i, kn, r->channels, L->ic);
        break;
    case APBRT_MAXPOOL:
    case APBRT_AVGPOOL:
        if (r->k < 1 || r->k > APBRT_MAX_KSIZE || r->pstride < 1 || r->pstride > APBRT_MAX_KSIZE ||
            2 * r->ppad > r->k)
            return BAD("bad window k=%d stride=%d pad=%d", name, i, kn, r->k, r->pstride, r->ppad);
        if ((long)L->ih + 2L * r->ppad < r->k || (long)L->iw + 2L * r->ppad < r->k)
            return BAD("window %d larger than the padded input %dx%d", name, i, kn, r->k, L->ih,
                       L->iw);
        oh = (L->ih + 2L * r->ppad - r->k) / r->pstride + 1;
        ow = (L->iw + 2L * r->ppad - r->k) / r->pstride + 1;
        break;
    case APBRT_GAP:
        oh = ow = 1;
        break;
    case APBRT_FLATTEN:
        oc = (long)L->ic * L->ih * L->iw, oh = ow = 1;
        break;
    case APBRT_ADD:
        if (memcmp(sshape[r->in], sshape[r->in2], sizeof sshape[0]))
            return BAD("adds %dx%dx%d (slot %d) to %dx%dx%d (slot %d)", name, i, kn, L->ic, L->ih,
                       L->iw, r->in, sshape[r->in2][0], sshape[r->in2][1], sshape[r->in2][2],
                       r->in2);
        break;
    default:
        break;
    }
    if (oc > APBRT_MAX_DIM * 64L || oc * oh * ow > APBRT_MAX_SAMPLE)
        return BAD("output %ldx%ldx%ld is too large", name, i, kn, oc, oh, ow);
#undef BAD
    L->oc = (int)oc, L->oh = (int)oh, L->ow = (int)ow;
    sdef[r->out] = 1;
    sshape[r->out][0] = L->oc, sshape[r->out][1] = L->oh, sshape[r->out][2] = L->ow;
    return APB_OK;
}

static float *copy_f32(apb_arena *a, const unsigned char *p, uint64_t n)
{
    float *v = apb_arena_alloc(a, (size_t)(n ? n : 1) * sizeof(float));
    if (v)
        for (uint64_t i = 0; i < n; i++)
            v[i] = apbrt_rdf(p + 4 * i);
    return v;
}

static long first_nonfinite(const float *v, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return (long)i;
    return -1;
}

/* Parses layer i's parameter section (size already checked against the layout). */
static apb_status read_params(const char *name, const unsigned char *s, int i, apbrt_model *m,
                              int validate_only)
{
    apbrt_rt_layer *L = &m->layers[i];
    const apbrt_rec *r = &L->r;
    apb_arena *a = &m->params;
    apbrt_array arr[APBRT_ARR_N];
    apbrt_layer_layout(r, arr);
    const char *kn = apbrt_kind_name(r->kind);
#define BAD(code, ...) apb_fail(code, "%s: LAYER[%d] (%s): " __VA_ARGS__)
#define OOM() apb_fail(APB_ENOMEM, "%s: LAYER[%d]: out of memory", name, i)
    long bad;
    if (r->kind == APBRT_BN) {
        L->scale = copy_f32(a, s + arr[APBRT_ARR_SCALE].off, (uint64_t)r->channels);
        L->shift = copy_f32(a, s + arr[APBRT_ARR_SHIFT].off, (uint64_t)r->channels);
        if (!L->scale || !L->shift)
            return OOM();
        if ((bad = first_nonfinite(L->scale, (uint64_t)r->channels)) >= 0 ||
            (bad = first_nonfinite(L->shift, (uint64_t)r->channels)) >= 0)
            return BAD(APB_ENUMERIC, "scale/shift [%ld] is not finite", name, i, kn, bad);
        return APB_OK;
    }
    long K = L->K, cout = r->cout;
    if (r->has_bias) {
        if (!(L->bias = copy_f32(a, s + arr[APBRT_ARR_BIAS].off, (uint64_t)cout)))
            return OOM();
        if ((bad = first_nonfinite(L->bias, (uint64_t)cout)) >= 0)
            return BAD(APB_ENUMERIC, "bias[%ld] is not finite", name, i, kn, bad);
    }
    if (r->wkind == APBRT_W_FP32) {
        if (!(L->weff = copy_f32(a, s + arr[APBRT_ARR_W].off, (uint64_t)(cout * K))))
            return OOM();
        if ((bad = first_nonfinite(L->weff, (uint64_t)(cout * K))) >= 0)
            return BAD(APB_ENUMERIC, "weight [%ld,%ld] is not finite", name, i, kn, bad / K, bad % K);
        if (r->akind == APBRT_A_S8D) { /* quantized per row (apbrt_model.h); w8 * sw runs by default */
            if (!(L->wq = apb_arena_alloc(a, (size_t)(cout * K) * sizeof(float))) ||
                !(L->w8 = apb_arena_alloc(a, (size_t)(cout * K))) ||
                !(L->wsw = apb_arena_alloc(a, (size_t)cout * sizeof(float))))
                return OOM();
            for (long mm = 0; mm < cout; mm++) {
                const float *w = L->weff + mm * K;
                float mx = apb_ew_absmax(K, w), sw = mx > 0.0f ? mx / 127.0f : 1.0f;
                for (long k = 0; k < K; k++) {
                    L->w8[mm * K + k] = (int8_t)apb_i8_code(w[k], 1.0f / sw, 1);
                    L->wq[mm * K + k] = (float)L->w8[mm * K + k] * sw;
                }
                L->wsw[mm] = sw;
            }
            L->wexact = L->weff;
            L->weff = L->wq;
        }
        return APB_OK;
    }
    if (r->wkind == APBRT_W_Q2) {
        long words = (K + 31) / 32;
        const unsigned char *cd = s + arr[APBRT_ARR_CODES].off;
        if (K % 32) {
            uint64_t pad_mask = ~0ull << (2 * (K % 32));
            for (long mm = 0; mm < cout; mm++)
                if (apbrt_rd64(cd + 8 * (mm * words + words - 1)) & pad_mask)
                    return BAD(APB_EFORMAT, "row %ld: code bits beyond K=%ld are set", name, i, kn,
                               mm, K);
        }
        if (validate_only)
            return APB_OK;
        if (!(L->weff = apb_arena_alloc(a, (size_t)(cout * K) * sizeof(float))))
            return OOM();
        for (long mm = 0; mm < cout; mm++)
            for (long j = 0; j < K; j++) {
                uint64_t wd = apbrt_rd64(cd + 8 * (mm * words + j / 32));
                int code = (int)(wd >> (2 * (j % 32)) & 3);
                L->weff[mm * K + j] = ((float)code - 1.5f) * r->wstep;
            }
        return APB_OK;
    }
    /* APB */
    long words = (K + 63) / 64, nnz = r->nnz;
    L->alpha = copy_f32(a, s + arr[APBRT_ARR_ALPHA].off, (uint64_t)cout);
    L->signs = apb_arena_alloc(a, (size_t)(cout * words) * 8);
    L->rowptr = apb_arena_alloc(a, (size_t)(cout + 1) * 4);
    L->colidx = apb_arena_alloc(a, (size_t)(nnz ? nnz : 1) * 4);
    L->rvals = copy_f32(a, s + arr[APBRT_ARR_VALUES].off, (uint64_t)nnz);
    if (!L->alpha || !L->signs || !L->rowptr || !L->colidx || !L->rvals)
        return OOM();
    if ((bad = first_nonfinite(L->alpha, (uint64_t)cout)) >= 0)
        return BAD(APB_ENUMERIC, "alpha[%ld] is not finite", name, i, kn, bad);
    if ((bad = first_nonfinite(L->rvals, (uint64_t)nnz)) >= 0)
        return BAD(APB_ENUMERIC, "residual value %ld is not finite", name, i, kn, bad);
    const unsigned char *sg = s + arr[APBRT_ARR_SIGNS].off;
    uint64_t pad_mask = K % 64 ? ~0ull << (K % 64) : 0;
    for (long mm = 0; mm < cout; mm++)
        for (long w = 0; w < words; w++) {
            uint64_t v = apbrt_rd64(sg + 8 * (mm * words + w));
            if (w == words - 1 && (v & pad_mask))
                return BAD(APB_EFORMAT, "row %ld: sign bits beyond K=%ld are set", name, i, kn, mm, K);
            L->signs[mm * words + w] = v;
        }
    const unsigned char *rp = s + arr[APBRT_ARR_ROWPTR].off, *ci = s + arr[APBRT_ARR_COLIDX].off;
    for (long mm = 0; mm <= cout; mm++)
        L->rowptr[mm] = apbrt_rd32(rp + 4 * mm);
    if (L->rowptr[0] != 0 || L->rowptr[cout] != (uint32_t)nnz)
        return BAD(APB_EFORMAT, "residual row pointers start at %u and end at %u, expected 0 and nnz=%ld",
                   name, i, kn, L->rowptr[0], L->rowptr[cout], nnz);
    for (long mm = 0; mm < cout; mm++) {
        if (L->rowptr[mm + 1] < L->rowptr[mm])
            return BAD(APB_EFORMAT, "residual row pointer %ld decreases (%u -> %u)", name, i, kn,
                       mm + 1, L->rowptr[mm], L->rowptr[mm + 1]);
        long prev = -1;
        for (uint32_t e = L->rowptr[mm]; e < L->rowptr[mm + 1]; e++) {
            uint32_t c = r->index_width == 2 ? (uint32_t)ci[2 * e] | (uint32_t)ci[2 * e + 1] << 8
                                             : apbrt_rd32(ci + 4 * (size_t)e);
            if ((long)c >= K || (long)c <= prev)
                return BAD(APB_EFORMAT, "residual row %ld: column index %u out of range or not increasing (K=%ld)",
                           name, i, kn, mm, c, K);
            L->colidx[e] = c;
            prev = c;
        }
    }
    if (validate_only)
        return APB_OK;
    if (!(L->weff = apb_arena_alloc(a, (size_t)(cout * K) * sizeof(float))))
        return OOM();
    for (long mm = 0; mm < cout; mm++) {
        float al = L->alpha[mm];
        float *wr = L->weff + mm * K;
        for (long j = 0; j < K; j++)
            wr[j] = (L->signs[mm * words + j / 64] >> (j % 64) & 1) ? -al : al;
        for (uint32_t e = L->rowptr[mm]; e < L->rowptr[mm + 1]; e++)
            wr[L->colidx[e]] = wr[L->colidx[e]] + L->rvals[e];
    }
    return APB_OK;
#undef BAD
#undef OOM
}

/* 1 when the value layer `i` leaves in its output slot is read by layer i+1 only. */
static int sole_reader_is_next(const apbrt_model *m, int i)
{
    const apbrt_rt_layer *ls = m->layers;
    int s = ls[i].r.out, j = i + 1;
    if (j >= m->nlayers || ls[j].r.in != s || (ls[j].r.kind == APBRT_ADD && ls[j].r.in2 == s))
        return 0;
    if (ls[j].r.out == s)
        return 1;
    for (int t = j + 1; t < m->nlayers; t++) {
        if (ls[t].r.in == s || (ls[t].r.kind == APBRT_ADD && ls[t].r.in2 == s))
            return 0;
        if (ls[t].r.out == s)
            return 1;
    }
    return s != m->output_slot;
}

/* The other input slot of the add at layer i + 1 when it is the only reader of
 * the slot layer i writes (once, as one operand), else -1. */
static int add_reads_only(const apbrt_model *m, int i)
{
    const apbrt_rt_layer *ls = m->layers;
    int s = ls[i].r.out, j = i + 1;
    if (j >= m->nlayers || ls[j].r.kind != APBRT_ADD || (ls[j].r.in == s) == (ls[j].r.in2 == s))
        return -1;
    int other = ls[j].r.in == s ? ls[j].r.in2 : ls[j].r.in;
    if (ls[j].r.out == s)
        return other;
    for (int t = j + 1; t < m->nlayers; t++) {
        if (ls[t].r.in == s || (ls[t].r.kind == APBRT_ADD && ls[t].r.in2 == s))
            return -1;
        if (ls[t].r.out == s)
            return other;
    }
    return s != m->output_slot ? other : -1;
}

/* The activation layer i + 1 applies when it alone reads layer i's output
 * (then it can run in layer i's epilogue), else APBRT_POST_NONE. */
static int next_act(const apbrt_model *m, int i)
{
    if (i + 1 >= m->nlayers || !sole_reader_is_next(m, i))
        return APBRT_POST_NONE;
    int k = m->layers[i + 1].r.kind;
    return k == APBRT_RELU ? APBRT_POST_RELU : k == APBRT_HARDTANH ? APBRT_POST_HARDTANH : APBRT_POST_NONE;
}

/* Fusion plan: conv/linear -> [BN] -> [ReLU/hardtanh] as one layer, and for a
 * conv then -> [residual add] -> [ReLU/hardtanh] (the add's other operand is
 * read in the epilogue; float addition commutes, so the bits are the add's).
 * APBRT_NOFUSE_ADD=1 keeps the adds as layers of their own (tests compare). */
static void plan(apbrt_model *m)
{
    const char *nf = getenv("APBRT_NOFUSE_ADD");
    int fuse_add = !(nf && !strcmp(nf, "1"));
    for (int i = 0; i < m->nlayers; i++) {
        apbrt_rt_layer *L = &m->layers[i];
        L->dst = L->r.out;
        L->post_add = -1;
        if (L->r.kind != APBRT_CONV && L->r.kind != APBRT_LINEAR)
            continue;
        int cur = i;
        if (cur + 1 < m->nlayers && m->layers[cur + 1].r.kind == APBRT_BN && sole_reader_is_next(m, cur)) {
            L->post_scale = m->layers[cur + 1].scale;
            L->post_shift = m->layers[cur + 1].shift;
            m->layers[++cur].fused = 1;
        }
        if ((L->post_act = next_act(m, cur)) != APBRT_POST_NONE)
            m->layers[++cur].fused = 1;
        int other = fuse_add && L->r.kind == APBRT_CONV ? add_reads_only(m, cur) : -1;
        for (int k = i; k <= cur && other >= 0; k++) /* read at the chain's start: unchanged by it */
            if (m->layers[k].r.out == other)
                other = -1;
        if (other >= 0) {
            L->post_add = other;
            m->layers[++cur].fused = 1;
            if ((L->post_act2 = next_act(m, cur)) != APBRT_POST_NONE)
                m->layers[++cur].fused = 1;
        }
        L->dst = m->layers[cur].r.out;
        L->oc = m->layers[cur].oc, L->oh = m->layers[cur].oh, L->ow = m->layers[cur].ow;
        i = cur;
    }
    for (int i = 0; i < m->nlayers; i++) {
        apbrt_rt_layer *L = &m->layers[i];
        if (L->fused)
            continue;
        long in_sz = (long)L->ic * L->ih * L->iw, out_sz = (long)L->oc * L->oh * L->ow;
        if (out_sz > m->slot_floats[L->dst])
            m->slot_floats[L->dst] = out_sz;
        if (L->dst == 0)
            m->input_written = 1;
        if (!is_elementwise(L->r.kind) && (L->dst == L->r.in || (L->post_add >= 0 && L->dst == L->post_add)) &&
            out_sz > m->max_tmp)
            m->max_tmp = out_sz;
        if (L->r.kind == APBRT_CONV || L->r.kind == APBRT_LINEAR) {
            if (L->r.akind != APBRT_A_FP && in_sz > m->max_q)
                m->max_q = in_sz;
            long col = L->K * L->oh * L->ow;
            if (L->r.kind == APBRT_CONV && col > m->max_col)
                m->max_col = col;
        }
    }
    long in0 = (long)m->in_c * m->in_h * m->in_w;
    if (m->input_written && in0 > m->slot_floats[0])
        m->slot_floats[0] = in0;
}

apb_status apbrt_load_impl(const void *buf, size_t size, const char *name, int validate_only,
                           apbrt_model **out)
{
    *out = NULL;
    const unsigned char *b = buf;
    if (!name)
        name = "<memory>";
    if (!b && size)
        return apb_fail(APB_EINVAL, "%s: NULL buffer", name);
    if (size < APBRT_HEADER_SIZE)
        return apb_fail(APB_EFORMAT, "%s: %zu bytes is too small for the 64-byte header", name, size);
    if (memcmp(b, APBRT_MAGIC, 8))
        return apb_fail(APB_EFORMAT, "%s: not a .apb model (bad magic)", name);
    uint32_t version = apbrt_rd32(b + 8);
    if (version < APBRT_VERSION_MIN || version > APBRT_VERSION)
        return apb_fail(APB_EFORMAT, "%s: format version %u, this runtime reads versions %u to %u",
                        name, version, APBRT_VERSION_MIN, APBRT_VERSION);
    if (apb_crc32(0, b, 36) != apbrt_rd32(b + 36))
        return apb_fail(APB_EFORMAT, "%s: header CRC mismatch (corrupted header)", name);
    uint64_t fsize = apbrt_rd64(b + 16);
    if (fsize != size)
        return apb_fail(APB_EFORMAT, "%s: header says %llu bytes but the file has %zu (truncated or padded)",
                        name, (unsigned long long)fsize, size);
    uint32_t hsize = apbrt_rd32(b + 12), nsec = apbrt_rd32(b + 24), toff = apbrt_rd32(b + 28);
    if (hsize != APBRT_HEADER_SIZE || toff != APBRT_HEADER_SIZE)
        return apb_fail(APB_EFORMAT, "%s: header size %u / table offset %u, expected 64", name, hsize, toff);
    for (int k = 40; k < 64; k++)
        if (b[k])
            return apb_fail(APB_EFORMAT, "%s: reserved header byte %d is not zero", name, k);
    if (nsec < 3 || nsec > 3 + APBRT_MAX_LAYERS ||
        (uint64_t)nsec * APBRT_SECENTRY_SIZE > size - APBRT_HEADER_SIZE)
        return apb_fail(APB_EFORMAT, "%s: section count %u does not fit the file", name, nsec);
    uint64_t tend = APBRT_HEADER_SIZE + (uint64_t)nsec * APBRT_SECENTRY_SIZE;
    if (apb_crc32(0, b + APBRT_HEADER_SIZE, (size_t)(tend - APBRT_HEADER_SIZE)) != apbrt_rd32(b + 32))
        return apb_fail(APB_EFORMAT, "%s: section table CRC mismatch", name);

    apb_status st = APB_OK;
    sec_entry *secs = calloc(nsec, sizeof *secs);
    sec_entry **order = calloc(nsec, sizeof *order);
    apbrt_model *m = calloc(1, sizeof *m);
    int *sdef = NULL, (*sshape)[3] = NULL, *layer_sec = NULL;
    if (!secs || !order || !m) {
        st = apb_fail(APB_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    apb_arena_init(&m->params, "params", 1 << 16);
    apb_arena_init(&m->work, "work", 1 << 16);
    m->file_size = size;
    int meta = -1, classes = -1, graph = -1;
    for (uint32_t k = 0; k < nsec; k++) {
        const unsigned char *e = b + APBRT_HEADER_SIZE + (size_t)k * APBRT_SECENTRY_SIZE;
        sec_entry *s = &secs[k];
        s->type = apbrt_rd32(e), s->index = apbrt_rd32(e + 4);
        s->off = apbrt_rd64(e + 8), s->size = apbrt_rd64(e + 16);
        order[k] = s;
        if (s->type < APBRT_SEC_META || s->type > APBRT_SEC_LAYER || apbrt_rd32(e + 28) ||
            (s->type != APBRT_SEC_LAYER && s->index)) {
            st = apb_fail(APB_EFORMAT, "%s: section %u: unknown type %u / index %u", name, k, s->type, s->index);
            goto done;
        }
        if (s->off % APBRT_ALIGN || s->off < tend || s->off > size || s->size > size - s->off) {
            st = apb_fail(APB_EFORMAT, "%s: section %u (%s): offset %llu size %llu outside the %zu-byte file or misaligned",
                          name, k, sec_name(s->type), (unsigned long long)s->off,
                          (unsigned long long)s->size, size);
            goto done;
        }
        if (apb_crc32(0, b + s->off, (size_t)s->size) != apbrt_rd32(e + 24)) {
            st = apb_fail(APB_EFORMAT, "%s: section %u (%s%s): CRC mismatch (corrupted data)", name, k,
                          sec_name(s->type), s->type == APBRT_SEC_LAYER ? " of a layer" : "");
            goto done;
        }
        int *slot = s->type == APBRT_SEC_META ? &meta : s->type == APBRT_SEC_CLASSES ? &classes
                  : s->type == APBRT_SEC_GRAPH ? &graph : NULL;
        if (slot) {
            if (*slot >= 0) {
                st = apb_fail(APB_EFORMAT, "%s: duplicate %s section", name, sec_name(s->type));
                goto done;
            }
            *slot = (int)k;
        }
    }
    if (meta < 0 || classes < 0 || graph < 0) {
        st = apb_fail(APB_EFORMAT, "%s: missing %s section", name,
                      meta < 0 ? "META" : classes < 0 ? "CLASSES" : "GRAPH");
        goto done;
    }
    qsort(order, nsec, sizeof *order, cmp_off);
    for (uint32_t k = 1; k < nsec; k++)
        if (order[k]->off < order[k - 1]->off + order[k - 1]->size) {
            st = apb_fail(APB_EFORMAT, "%s: sections at %llu and %llu overlap", name,
                          (unsigned long long)order[k - 1]->off, (unsigned long long)order[k]->off);
            goto done;
        }

    /* Bytes outside the header, table and sections are alignment padding: they
     * must be zero, so every byte of a file is covered by a check. */
    {
        uint64_t pos = tend;
        for (uint32_t k = 0; k <= nsec; k++) {
            uint64_t end = k < nsec ? order[k]->off : size;
            for (uint64_t q = pos; q < end; q++)
                if (b[q]) {
                    st = apb_fail(APB_EFORMAT, "%s: padding byte %llu is not zero", name,
                                  (unsigned long long)q);
                    goto done;
                }
            if (k < nsec)
                pos = order[k]->off + order[k]->size;
        }
    }
    /* META */
    {
        const unsigned char *s = b + secs[meta].off;
        uint64_t ssz = secs[meta].size;
        if (ssz < APBRT_META_FIXED) {
            st = apb_fail(APB_EFORMAT, "%s: META: %llu bytes, at least %u expected", name,
                          (unsigned long long)ssz, APBRT_META_FIXED);
            goto done;
        }
        uint32_t f[14];
        for (int k = 0; k < 14; k++)
            f[k] = apbrt_rd32(s + 4 * k);
        if (f[0] < 1 || f[0] > APBRT_MAX_DIM || f[1] < 1 || f[1] > APBRT_MAX_HW || f[2] < 1 ||
            f[2] > APBRT_MAX_HW || (uint64_t)f[0] * f[1] * f[2] > APBRT_MAX_SAMPLE) {
            st = apb_fail(APB_EFORMAT, "%s: META: bad input geometry %ux%ux%u", name, f[0], f[1], f[2]);
            goto done;
        }
        m->in_c = (int)f[0], m->in_h = (int)f[1], m->in_w = (int)f[2];
        for (int c = 0; c < 3; c++) {
            m->mean[c] = apbrt_rdf(s + 12 + 4 * c);
            m->std[c] = apbrt_rdf(s + 24 + 4 * c);
            if (!isfinite(m->mean[c]) || !isfinite(m->std[c]) || m->std[c] == 0.0f) {
                st = apb_fail(APB_EFORMAT, "%s: META: bad normalization mean %g std %g", name,
                              m->mean[c], m->std[c]);
                goto done;
            }
        }
        if (f[9] > APBRT_MAX_HW || f[10] < 1 || f[10] > APBRT_MAX_DIM || f[11] < 1 ||
            f[11] > APBRT_MAX_SLOTS || f[12] < 1 || f[12] > APBRT_MAX_LAYERS || f[13] >= f[11]) {
            st = apb_fail(APB_EFORMAT, "%s: META: bad resize %u / classes %u / slots %u / layers %u / output slot %u",
                          name, f[9], f[10], f[11], f[12], f[13]);
            goto done;
        }
        m->resize_short = (int)f[9], m->num_classes = (int)f[10], m->nslots = (int)f[11];
        m->nlayers = (int)f[12], m->output_slot = (int)f[13];
        uint64_t pos = APBRT_META_FIXED - 4;
        if ((st = read_str(name, "META: model name", s, ssz, &pos, &m->params, &m->model_name)))
            goto done;
        if (pos != ssz) {
            st = apb_fail(APB_EFORMAT, "%s: META: %llu trailing bytes", name, (unsigned long long)(ssz - pos));
            goto done;
        }
    }
    /* CLASSES */
    {
        const unsigned char *s = b + secs[classes].off;
        uint64_t ssz = secs[classes].size, pos = 0;
        if ((uint64_t)m->num_classes * 4 > ssz) {
            st = apb_fail(APB_EFORMAT, "%s: CLASSES: %llu bytes cannot hold %d names", name,
                          (unsigned long long)ssz, m->num_classes);
            goto done;
        }
        m->class_names = apb_arena_alloc(&m->params, (size_t)m->num_classes * sizeof(char *));
        if (!m->class_names) {
            st = apb_fail(APB_ENOMEM, "%s: out of memory", name);
            goto done;
        }
        for (int c = 0; c < m->num_classes; c++)
            if ((st = read_str(name, "CLASSES", s, ssz, &pos, &m->params, &m->class_names[c])))
                goto done;
        if (pos != ssz) {
            st = apb_fail(APB_EFORMAT, "%s: CLASSES: %llu trailing bytes", name, (unsigned long long)(ssz - pos));
            goto done;
        }
    }
    /* GRAPH */
    if (secs[graph].size != (uint64_t)m->nlayers * APBRT_REC_SIZE) {
        st = apb_fail(APB_EFORMAT, "%s: GRAPH: %llu bytes, %d layers need %llu", name,
                      (unsigned long long)secs[graph].size, m->nlayers,
                      (unsigned long long)m->nlayers * APBRT_REC_SIZE);
        goto done;
    }
    m->layers = calloc((size_t)m->nlayers, sizeof *m->layers);
    m->slot_floats = calloc((size_t)m->nslots, sizeof *m->slot_floats);
    m->slots = calloc((size_t)m->nslots, sizeof *m->slots);
    sdef = calloc((size_t)m->nslots, sizeof *sdef);
    sshape = calloc((size_t)m->nslots, sizeof *sshape);
    layer_sec = malloc((size_t)m->nlayers * sizeof *layer_sec);
    if (!m->layers || !m->slot_floats || !m->slots || !sdef || !sshape || !layer_sec) {
        st = apb_fail(APB_ENOMEM, "%s: out of memory for %d layers", name, m->nlayers);
        goto done;
    }
    sdef[0] = 1;
    sshape[0][0] = m->in_c, sshape[0][1] = m->in_h, sshape[0][2] = m->in_w;
    for (int i = 0; i < m->nlayers; i++) {
        layer_sec[i] = -1;
        if ((st = read_record(name, b + secs[graph].off + (size_t)i * APBRT_REC_SIZE, i, m, sdef,
                              sshape, version)))
            goto done;
        m->layers[i].file_bytes = APBRT_REC_SIZE;
    }
    if (!sdef[m->output_slot] ||
        (long)sshape[m->output_slot][0] * sshape[m->output_slot][1] * sshape[m->output_slot][2] !=
            m->num_classes) {
        st = apb_fail(APB_EFORMAT, "%s: GRAPH: output slot %d holds %dx%dx%d, not the %d class logits",
                      name, m->output_slot, sshape[m->output_slot][0], sshape[m->output_slot][1],
                      sshape[m->output_slot][2], m->num_classes);
        goto done;
    }
    /* LAYER sections */
    for (uint32_t k = 0; k < nsec; k++) {
        if (secs[k].type != APBRT_SEC_LAYER)
            continue;
        uint32_t li = secs[k].index;
        if (li >= (uint32_t)m->nlayers || !apbrt_has_section(m->layers[li].r.kind) || layer_sec[li] >= 0) {
            st = apb_fail(APB_EFORMAT, "%s: section %u: LAYER[%u] is not a layer with parameters or is duplicated",
                          name, k, li);
            goto done;
        }
        layer_sec[li] = (int)k;
    }
    for (int i = 0; i < m->nlayers; i++) {
        apbrt_rt_layer *L = &m->layers[i];
        if (!apbrt_has_section(L->r.kind))
            continue;
        if (layer_sec[i] < 0) {
            st = apb_fail(APB_EFORMAT, "%s: LAYER[%d] (%s): parameter section missing", name, i,
                          apbrt_kind_name(L->r.kind));
            goto done;
        }
        const sec_entry *s = &secs[layer_sec[i]];
        apbrt_array arr[APBRT_ARR_N];
        uint64_t need = apbrt_layer_layout(&L->r, arr);
        if (s->size != need) {
            st = apb_fail(APB_EFORMAT, "%s: LAYER[%d] (%s): %llu bytes, its shape needs %llu", name, i,
                          apbrt_kind_name(L->r.kind), (unsigned long long)s->size, (unsigned long long)need);
            goto done;
        }
        L->file_bytes += s->size;
        if ((st = read_params(name, b + s->off, i, m, validate_only)))
            goto done;
    }
    if (!validate_only) {
        plan(m);
        const char *ref = getenv("APBRT_REFERENCE");
        m->reference = ref && *ref && strcmp(ref, "0") != 0;
        if (!m->reference && (st = apbrt_fast_prepare(m)) != APB_OK)
            goto done;
    }
done:
    free(secs);
    free(order);
    free(sdef);
    free(sshape);
    free(layer_sec);
    if (st != APB_OK) {
        apbrt_free(m);
        return st;
    }
    *out = m;
    return APB_OK;
}

int apbrt_load_memory_named(const void *buf, size_t size, const char *name, apbrt_model **out)
{
    return (int)apbrt_load_impl(buf, size, name, 0, out);
}

int apbrt_load_memory(const void *buf, size_t size, apbrt_model **out)
{
    return (int)apbrt_load_impl(buf, size, "<memory>", 0, out);
}

int apbrt_load(const char *path, apbrt_model **out)
{
    *out = NULL;
    unsigned char *buf;
    size_t size;
    apb_status st = apb_file_read(path, &buf, &size);
    if (st != APB_OK)
        return (int)st;
    st = apbrt_load_impl(buf, size, path, 0, out);
    free(buf);
    return (int)st;
}
