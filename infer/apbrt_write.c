/* apbrt_write.c - packs an apbrt_model_desc into the .apb format (docs/FORMAT.md).
 *
 * The writer converts the effective weights the training graph multiplies with
 * into their storage form (APB: sign plane + alpha + sparse residual in CSR with
 * the narrowest index that fits; Q2: 2-bit codes + step), lays the sections out
 * 64-byte aligned with CRC32s, and then loads the result with the runtime's own
 * validating loader, so a file it writes is a file the runtime accepts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt_internal.h"
#include "crc32.h"
#include "fileio.h"

const char *apbrt_kind_name(int kind)
{
    static const char *names[] = {"?",       "conv",    "linear", "bn",      "relu", "hardtanh",
                                  "maxpool", "avgpool", "gap",    "flatten", "add",  "clip"};
    return kind >= 1 && kind <= APBRT_CLIP ? names[kind] : "?";
}

static uint64_t align_up(uint64_t x) { return (x + APBRT_ALIGN - 1) / APBRT_ALIGN * APBRT_ALIGN; }

uint64_t apbrt_layer_layout(const apbrt_rec *r, apbrt_array arr[APBRT_ARR_N])
{
    memset(arr, 0, sizeof(apbrt_array) * APBRT_ARR_N);
    uint64_t cout = (uint64_t)r->cout, K = (uint64_t)r->cin * r->kh * r->kw;
    uint64_t cnt[APBRT_ARR_N] = {0}, el[APBRT_ARR_N] = {4, 4, 4, 8, 4, 4, 4, 8, 4, 4};
    if (r->kind == APBRT_CONV || r->kind == APBRT_LINEAR) {
        if (r->has_bias)
            cnt[APBRT_ARR_BIAS] = cout;
        if (r->wkind == APBRT_W_FP32) {
            cnt[APBRT_ARR_W] = cout * K;
        } else if (r->wkind == APBRT_W_APB) {
            cnt[APBRT_ARR_ALPHA] = cout;
            cnt[APBRT_ARR_SIGNS] = cout * ((K + 63) / 64);
            cnt[APBRT_ARR_ROWPTR] = cout + 1;
            cnt[APBRT_ARR_COLIDX] = (uint64_t)r->nnz;
            cnt[APBRT_ARR_VALUES] = (uint64_t)r->nnz;
            el[APBRT_ARR_COLIDX] = r->index_width == 2 ? 2 : 4;
        } else {
            cnt[APBRT_ARR_CODES] = cout * ((K + 31) / 32);
        }
    } else if (r->kind == APBRT_BN) {
        cnt[APBRT_ARR_SCALE] = cnt[APBRT_ARR_SHIFT] = (uint64_t)r->channels;
    } else {
        return 0;
    }
    /* Order in the section: the order of the enum. */
    uint64_t off = 0, end = 0;
    for (int a = 0; a < APBRT_ARR_N; a++) {
        arr[a].elem = el[a];
        arr[a].count = cnt[a];
        if (!cnt[a])
            continue;
        off = align_up(end);
        arr[a].off = off;
        end = off + cnt[a] * el[a];
    }
    return end;
}

/* ---- growable output buffer ---- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int failed;
} obuf;

static unsigned char *ob_reserve(obuf *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return NULL;
        }
        memset(p + b->cap, 0, cap - b->cap);
        b->p = p;
        b->cap = cap;
    }
    unsigned char *r = b->p + b->n;
    b->n += n;
    return r;
}

static void ob_pad(obuf *b) { ob_reserve(b, (size_t)align_up(b->n) - b->n); }

/* ---- description checks ---- */

static apb_status check_layer(const apbrt_layer_desc *L, int i, apbrt_rec *r)
{
    memset(r, 0, sizeof *r);
    r->kind = L->kind;
    r->in = L->in;
    r->out = L->out;
    r->in2 = L->kind == APBRT_ADD ? L->in2 : 0;
    const char *kn = apbrt_kind_name(L->kind);
    switch (L->kind) {
    case APBRT_CONV:
    case APBRT_LINEAR: {
        r->cin = L->cin;
        r->cout = L->cout;
        if (L->kind == APBRT_CONV) {
            r->kh = L->kh, r->kw = L->kw, r->stride = L->stride, r->pad = L->pad;
        } else {
            r->kh = r->kw = r->stride = 1;
            r->pad = 0;
        }
        r->wkind = L->wkind;
        r->akind = L->akind;
        r->has_bias = L->bias != NULL;
        if (r->cin < 1 || r->cin > APBRT_MAX_DIM || r->cout < 1 || r->cout > APBRT_MAX_DIM ||
            r->kh < 1 || r->kh > APBRT_MAX_KSIZE || r->kw < 1 || r->kw > APBRT_MAX_KSIZE ||
            r->stride < 1 || r->stride > APBRT_MAX_KSIZE || r->pad < 0 || r->pad > APBRT_MAX_KSIZE)
            return apb_fail(APB_EINVAL, "layer %d (%s): bad geometry cin=%d cout=%d k=%dx%d stride=%d pad=%d",
                            i, kn, r->cin, r->cout, r->kh, r->kw, r->stride, r->pad);
        if ((long)r->cout * r->cin * r->kh * r->kw > APBRT_MAX_PARAMS)
            return apb_fail(APB_EINVAL, "layer %d (%s): too many weights", i, kn);
        if (r->wkind < APBRT_W_FP32 || r->wkind > APBRT_W_Q2 || r->akind < APBRT_A_FP ||
            r->akind > APBRT_A_S8D)
            return apb_fail(APB_EINVAL, "layer %d (%s): bad weight kind %d or activation kind %d",
                            i, kn, r->wkind, r->akind);
        if (!L->weight)
            return apb_fail(APB_EINVAL, "layer %d (%s): weight is NULL", i, kn);
        if (r->akind == APBRT_A_S8D && (L->kind != APBRT_CONV || r->wkind != APBRT_W_FP32))
            return apb_fail(APB_EINVAL, "layer %d (%s): the approximate 8-bit input (S8D) needs a conv with FP32 weights",
                            i, kn);
        if (apbrt_akind_has_step(r->akind)) {
            if (!(L->act_step > 0.0f) || !isfinite(L->act_step) || !isfinite(1.0f / L->act_step))
                return apb_fail(APB_EINVAL, "layer %d (%s): %s activation step %g must be positive (and its reciprocal finite)",
                                i, kn, r->akind == APBRT_A_Q2 ? "2-bit" : "8-bit", L->act_step);
            r->act_step = L->act_step;
        }
        if (r->wkind == APBRT_W_APB && !L->alpha)
            return apb_fail(APB_EINVAL, "layer %d (%s): APB weights need alpha", i, kn);
        if (r->wkind == APBRT_W_Q2) {
            if (!(L->wstep > 0.0f) || !isfinite(L->wstep))
                return apb_fail(APB_EINVAL, "layer %d (%s): 2-bit weight step %g must be positive", i,
                                kn, L->wstep);
            r->wstep = L->wstep;
        }
        r->compression = L->compression;
        r->kept = L->kept;
        r->scales = L->scales;
        const char *bad = apbrt_accounting_problem(r, (long)r->cin * r->kh * r->kw);
        if (bad)
            return apb_fail(APB_EINVAL, "layer %d (%s): %s", i, kn, bad);
        break;
    }
    case APBRT_BN:
        r->channels = L->channels;
        if (r->channels < 1 || r->channels > APBRT_MAX_DIM || !L->scale || !L->shift)
            return apb_fail(APB_EINVAL, "layer %d (bn): channels=%d, scale and shift required", i,
                            r->channels);
        break;
    case APBRT_MAXPOOL:
    case APBRT_AVGPOOL:
        r->k = L->k, r->pstride = L->pstride, r->ppad = L->ppad;
        break;
    case APBRT_CLIP:
        r->lo = L->lo, r->hi = L->hi;
        if (!(isfinite(r->lo) && isfinite(r->hi) && r->lo < r->hi))
            return apb_fail(APB_EINVAL, "layer %d (clip): bounds [%g, %g] must be finite with lo < hi",
                            i, r->lo, r->hi);
        break;
    case APBRT_RELU:
    case APBRT_HARDTANH:
    case APBRT_GAP:
    case APBRT_FLATTEN:
    case APBRT_ADD:
        break;
    default:
        return apb_fail(APB_EINVAL, "layer %d: unknown kind %d", i, L->kind);
    }
    return APB_OK;
}

static void put_f32s(unsigned char *p, const float *v, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        apbrt_wrf(p + 4 * i, v[i]);
}

/* Writes the parameter section of layer i (r->nnz / index_width already set). */
static apb_status write_layer(obuf *b, const apbrt_layer_desc *L, const apbrt_rec *r, int i)
{
    apbrt_array arr[APBRT_ARR_N];
    uint64_t size = apbrt_layer_layout(r, arr);
    unsigned char *s = ob_reserve(b, (size_t)size);
    if (!s)
        return apb_fail(APB_ENOMEM, "layer %d: out of memory serializing %llu bytes", i,
                        (unsigned long long)size);
    memset(s, 0, (size_t)size);
    long K = (long)r->cin * r->kh * r->kw;
    if (r->kind == APBRT_BN) {
        put_f32s(s + arr[APBRT_ARR_SCALE].off, L->scale, (uint64_t)r->channels);
        put_f32s(s + arr[APBRT_ARR_SHIFT].off, L->shift, (uint64_t)r->channels);
        return APB_OK;
    }
    if (r->has_bias)
        put_f32s(s + arr[APBRT_ARR_BIAS].off, L->bias, (uint64_t)r->cout);
    if (r->wkind == APBRT_W_FP32) {
        put_f32s(s + arr[APBRT_ARR_W].off, L->weight, (uint64_t)r->cout * K);
    } else if (r->wkind == APBRT_W_APB) {
        long words = (K + 63) / 64, nz = 0;
        put_f32s(s + arr[APBRT_ARR_ALPHA].off, L->alpha, (uint64_t)r->cout);
        unsigned char *sg = s + arr[APBRT_ARR_SIGNS].off, *rp = s + arr[APBRT_ARR_ROWPTR].off;
        unsigned char *ci = s + arr[APBRT_ARR_COLIDX].off, *va = s + arr[APBRT_ARR_VALUES].off;
        for (long m = 0; m < r->cout; m++) {
            apbrt_wr32(rp + 4 * m, (uint32_t)nz);
            float a = L->alpha[m];
            const float *q = L->weight + m * K;
            for (long w = 0; w < words; w++) {
                uint64_t bits = 0;
                for (long j = w * 64; j < K && j < w * 64 + 64; j++)
                    if (q[j] < 0.0f)
                        bits |= 1ull << (j - w * 64);
                apbrt_wr64(sg + 8 * (m * words + w), bits);
            }
            for (long j = 0; j < K; j++) {
                float bq = q[j] < 0.0f ? -a : a;
                float res = q[j] - bq;
                if (res != 0.0f) {
                    if (r->index_width == 2) {
                        ci[2 * nz] = (unsigned char)j;
                        ci[2 * nz + 1] = (unsigned char)(j >> 8);
                    } else {
                        apbrt_wr32(ci + 4 * nz, (uint32_t)j);
                    }
                    apbrt_wrf(va + 4 * nz, res);
                    nz++;
                }
            }
        }
        apbrt_wr32(rp + 4 * r->cout, (uint32_t)nz);
    } else {
        long words = (K + 31) / 32;
        unsigned char *cd = s + arr[APBRT_ARR_CODES].off;
        for (long m = 0; m < r->cout; m++) {
            const float *q = L->weight + m * K;
            for (long w = 0; w < words; w++) {
                uint64_t bits = 0;
                for (long j = w * 32; j < K && j < w * 32 + 32; j++) {
                    float c = q[j] / r->wstep + 1.5f;
                    long code = lrintf(c);
                    if (!(code >= 0 && code <= 3) ||
                        fabsf(((float)code - 1.5f) * r->wstep - q[j]) > 1e-5f * r->wstep)
                        return apb_fail(APB_EINVAL,
                                        "layer %d (%s): weight [%ld,%ld] = %g is not a 2-bit level of step %g",
                                        i, apbrt_kind_name(r->kind), m, j, q[j], r->wstep);
                    bits |= (uint64_t)code << (2 * (j - w * 32));
                }
                apbrt_wr64(cd + 8 * (m * words + w), bits);
            }
        }
    }
    return APB_OK;
}

static uint32_t put_str(obuf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    unsigned char *p = ob_reserve(b, 4 + n);
    if (p) {
        apbrt_wr32(p, (uint32_t)n);
        if (n)
            memcpy(p + 4, s, n);
    }
    return (uint32_t)n;
}

apb_status apbrt_serialize(const apbrt_model_desc *d, unsigned char **buf, size_t *size)
{
    *buf = NULL;
    *size = 0;
    if (!d || !d->layers || d->nlayers < 1 || d->nlayers > APBRT_MAX_LAYERS)
        return apb_fail(APB_EINVAL, "apbrt_serialize: model has no layers");
    if (d->num_classes < 1 || d->num_classes > APBRT_MAX_DIM)
        return apb_fail(APB_EINVAL, "apbrt_serialize: num_classes=%d", d->num_classes);
    size_t nlen = d->model_name ? strlen(d->model_name) : 0;
    if (nlen > APBRT_MAX_NAME)
        return apb_fail(APB_EINVAL, "apbrt_serialize: model name too long");
    for (int c = 0; c < d->num_classes; c++)
        if (d->class_names && d->class_names[c] && strlen(d->class_names[c]) > APBRT_MAX_NAME)
            return apb_fail(APB_EINVAL, "apbrt_serialize: class name %d too long", c);

    apbrt_rec *recs = calloc((size_t)d->nlayers, sizeof *recs);
    if (!recs)
        return apb_fail(APB_ENOMEM, "apbrt_serialize: out of memory");
    apb_status st = APB_OK;
    int nsec = 3;
    for (int i = 0; i < d->nlayers && st == APB_OK; i++) {
        st = check_layer(&d->layers[i], i, &recs[i]);
        apbrt_rec *r = &recs[i];
        if (st == APB_OK && apbrt_has_section(r->kind))
            nsec++;
        if (st == APB_OK && (r->kind == APBRT_CONV || r->kind == APBRT_LINEAR) &&
            r->wkind == APBRT_W_APB) {
            long K = (long)r->cin * r->kh * r->kw, nz = 0;
            const float *q = d->layers[i].weight, *al = d->layers[i].alpha;
            for (long m = 0; m < r->cout; m++) {
                if (!isfinite(al[m])) {
                    st = apb_fail(APB_EINVAL, "layer %d: alpha[%ld] = %g is not finite", i, m, al[m]);
                    break;
                }
                for (long j = 0; j < K; j++)
                    nz += q[m * K + j] - (q[m * K + j] < 0.0f ? -al[m] : al[m]) != 0.0f;
            }
            r->nnz = nz;
            r->index_width = K <= 65536 ? 2 : 4;
        }
    }
    obuf b = {0};
    uint64_t (*tab)[3] = calloc((size_t)nsec, sizeof *tab); /* offset, size, type|index<<8 */
    if (st == APB_OK && !tab)
        st = apb_fail(APB_ENOMEM, "apbrt_serialize: out of memory");
    if (st != APB_OK) {
        free(recs);
        free(tab);
        return st;
    }
    ob_reserve(&b, APBRT_HEADER_SIZE + (size_t)nsec * APBRT_SECENTRY_SIZE);
    int si = 0;
    /* META */
    ob_pad(&b);
    size_t start = b.n;
    unsigned char *p = ob_reserve(&b, APBRT_META_FIXED);
    if (p) {
        uint32_t f[14] = {(uint32_t)d->in_c, (uint32_t)d->in_h, (uint32_t)d->in_w};
        for (int c = 0; c < 3; c++) {
            union { float f; uint32_t u; } m = {d->mean[c]}, s = {d->std[c]};
            f[3 + c] = m.u;
            f[6 + c] = s.u;
        }
        f[9] = (uint32_t)d->resize_short;
        f[10] = (uint32_t)d->num_classes;
        f[11] = (uint32_t)d->nslots;
        f[12] = (uint32_t)d->nlayers;
        f[13] = (uint32_t)d->output_slot;
        for (int k = 0; k < 14; k++)
            apbrt_wr32(p + 4 * k, f[k]);
        b.n -= 4; /* the name length is the first word of put_str */
        put_str(&b, d->model_name);
    }
    tab[si][0] = start, tab[si][1] = b.n - start, tab[si++][2] = APBRT_SEC_META;
    /* CLASSES */
    ob_pad(&b);
    start = b.n;
    for (int c = 0; c < d->num_classes; c++)
        put_str(&b, d->class_names ? d->class_names[c] : NULL);
    tab[si][0] = start, tab[si][1] = b.n - start, tab[si++][2] = APBRT_SEC_CLASSES;
    /* GRAPH */
    ob_pad(&b);
    start = b.n;
    for (int i = 0; i < d->nlayers; i++) {
        unsigned char *q = ob_reserve(&b, APBRT_REC_SIZE);
        if (!q)
            break;
        const apbrt_rec *r = &recs[i];
        uint32_t w[24] = {(uint32_t)r->kind,   (uint32_t)r->in,    (uint32_t)r->in2,
                          (uint32_t)r->out,    (uint32_t)r->cin,   (uint32_t)r->cout,
                          (uint32_t)r->kh,     (uint32_t)r->kw,    (uint32_t)r->stride,
                          (uint32_t)r->pad,    (uint32_t)r->wkind, (uint32_t)r->akind};
        union { float f; uint32_t u; } as = {r->act_step}, ws = {r->wstep};
        w[12] = as.u;
        w[13] = ws.u;
        w[14] = (uint32_t)r->channels;
        w[15] = (uint32_t)r->k;
        w[16] = (uint32_t)r->pstride;
        w[17] = (uint32_t)r->ppad;
        w[18] = (uint32_t)r->has_bias;
        w[19] = (uint32_t)r->nnz;
        w[20] = (uint32_t)r->index_width;
        if (r->kind == APBRT_CLIP) {
            union { float f; uint32_t u; } lo = {r->lo}, hi = {r->hi};
            w[21] = lo.u;
            w[22] = hi.u;
        } else {
            w[21] = (uint32_t)r->compression;
            w[22] = (uint32_t)r->kept;
            w[23] = (uint32_t)r->scales;
        }
        for (int k = 0; k < 24; k++)
            apbrt_wr32(q + 4 * k, w[k]);
    }
    tab[si][0] = start, tab[si][1] = b.n - start, tab[si++][2] = APBRT_SEC_GRAPH;
    /* LAYER sections */
    for (int i = 0; i < d->nlayers && st == APB_OK && !b.failed; i++) {
        if (!apbrt_has_section(recs[i].kind))
            continue;
        ob_pad(&b);
        start = b.n;
        st = write_layer(&b, &d->layers[i], &recs[i], i);
        tab[si][0] = start, tab[si][1] = b.n - start,
        tab[si++][2] = APBRT_SEC_LAYER | (uint64_t)i << 8;
    }
    free(recs);
    if (st == APB_OK && b.failed)
        st = apb_fail(APB_ENOMEM, "apbrt_serialize: out of memory");
    if (st != APB_OK) {
        free(tab);
        free(b.p);
        return st;
    }
    /* Section table and header. */
    unsigned char *t = b.p + APBRT_HEADER_SIZE;
    for (int k = 0; k < nsec; k++) {
        unsigned char *e = t + (size_t)k * APBRT_SECENTRY_SIZE;
        apbrt_wr32(e, (uint32_t)(tab[k][2] & 0xff));
        apbrt_wr32(e + 4, (uint32_t)(tab[k][2] >> 8));
        apbrt_wr64(e + 8, tab[k][0]);
        apbrt_wr64(e + 16, tab[k][1]);
        apbrt_wr32(e + 24, apb_crc32(0, b.p + tab[k][0], (size_t)tab[k][1]));
        apbrt_wr32(e + 28, 0);
    }
    free(tab);
    unsigned char *h = b.p;
    memcpy(h, APBRT_MAGIC, 8);
    /* version 3 only where a reader must know S8D: older runtimes keep reading the rest */
    int v3 = 0;
    for (int i = 0; i < d->nlayers; i++)
        v3 |= d->layers[i].akind == APBRT_A_S8D;
    apbrt_wr32(h + 8, v3 ? APBRT_VERSION : 2u);
    apbrt_wr32(h + 12, APBRT_HEADER_SIZE);
    apbrt_wr64(h + 16, b.n);
    apbrt_wr32(h + 24, (uint32_t)nsec);
    apbrt_wr32(h + 28, APBRT_HEADER_SIZE);
    apbrt_wr32(h + 32, apb_crc32(0, t, (size_t)nsec * APBRT_SECENTRY_SIZE));
    apbrt_wr32(h + 36, apb_crc32(0, h, 36));

    /* The runtime's loader is the validator: shapes, slots, wiring, bounds. */
    apbrt_model *m = NULL;
    if (apbrt_load_impl(b.p, b.n, "apbrt_serialize", 1, &m) != APB_OK) {
        free(b.p);
        return apb_fail_context(APB_EINVAL, "invalid model description: ");
    }
    apbrt_free(m);
    *buf = b.p;
    *size = b.n;
    return APB_OK;
}

apb_status apbrt_save(const apbrt_model_desc *d, const char *path)
{
    unsigned char *buf;
    size_t size;
    apb_status st = apbrt_serialize(d, &buf, &size);
    if (st != APB_OK)
        return apb_fail_context(st, "%s: ", path);
    st = apb_file_write_atomic(path, buf, size);
    free(buf);
    return st;
}
