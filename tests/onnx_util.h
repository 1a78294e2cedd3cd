/* onnx_util.h - ONNX files for the import tests, written through the protobuf-c
 * API that protoc-c generates from onnx.proto (no Python), and an independent
 * reference: the same small networks evaluated with naive loops in double.
 *
 * A test network (tnet) is a list of ops over numbered values: value 0 is the
 * input [N, C, H, W], op i writes value i + 1. tnet_onnx() writes it as an ONNX
 * model the way PyTorch exports it (one node per op, weights as initializers
 * named "<layer>.weight" ...); tnet_ref() computes its output from the same
 * description. Header-only (static inline functions): included by test_import.c and
 * test_exact.c.
 */
#ifndef APB_TEST_ONNX_UTIL_H
#define APB_TEST_ONNX_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnx.pb-c.h>

#include "rng.h"

enum {
    T_CONV, T_BN, T_RELU, T_CLIP, T_MAXPOOL, T_AVGPOOL, T_GAP, T_ADD, T_FLATTEN, T_RESHAPE, T_GEMM,
    T_MATMUL_ADD, T_IDENTITY, T_DROPOUT, T_OTHER /* an op apb does not support (op_type in name2) */
};

typedef struct {
    int op, in, in2;
    char name[48];     /* layer name: initializers are "<name>.weight", ... */
    char name2[32];    /* T_OTHER: its op type */
    int cin, cout, k, stride, pad, bias, group;
    float *w, *b;                     /* conv [cout,cin,k,k]; gemm [cout,cin] */
    float *gamma, *beta, *mean, *var; /* BN [C] */
    float eps, lo, hi;
} top;

typedef struct {
    int c, h, w, classes;
    int nops;
    top ops[48];
    int opset;
} tnet;

/* ---- building a network ---- */

static inline float *tnet_rand(apb_rng *r, long n, float scale)
{
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (long i = 0; i < n; i++)
        p[i] = scale * apb_rng_normal(r);
    return p;
}

static inline int tnet_add(tnet *t, int op, int in, const char *name)
{
    top *o = &t->ops[t->nops];
    memset(o, 0, sizeof *o);
    o->op = op;
    o->in = in;
    o->group = 1;
    snprintf(o->name, sizeof o->name, "%s", name ? name : "");
    return ++t->nops;
}

static inline int tnet_conv(tnet *t, apb_rng *r, const char *name, int in, int cin, int cout, int k, int stride,
                     int pad, int bias)
{
    int v = tnet_add(t, T_CONV, in, name);
    top *o = &t->ops[v - 1];
    o->cin = cin, o->cout = cout, o->k = k, o->stride = stride, o->pad = pad, o->bias = bias;
    o->w = tnet_rand(r, (long)cout * cin * k * k, sqrtf(2.0f / (float)(cin * k * k)));
    o->b = bias ? tnet_rand(r, cout, 0.1f) : NULL;
    return v;
}

static inline int tnet_bn(tnet *t, apb_rng *r, const char *name, int in, int c)
{
    int v = tnet_add(t, T_BN, in, name);
    top *o = &t->ops[v - 1];
    o->cout = c;
    o->eps = 1e-5f;
    o->gamma = tnet_rand(r, c, 0.2f);
    o->beta = tnet_rand(r, c, 0.2f);
    o->mean = tnet_rand(r, c, 0.3f);
    o->var = tnet_rand(r, c, 0.3f);
    for (int i = 0; i < c; i++) {
        o->gamma[i] += 1.0f;
        o->var[i] = 0.5f + fabsf(o->var[i]);
    }
    return v;
}

static inline int tnet_pool(tnet *t, int op, int in, int k, int stride, int pad)
{
    int v = tnet_add(t, op, in, NULL);
    top *o = &t->ops[v - 1];
    o->k = k, o->stride = stride, o->pad = pad;
    return v;
}

static inline int tnet_gemm(tnet *t, apb_rng *r, int op, const char *name, int in, int cin, int cout)
{
    int v = tnet_add(t, op, in, name);
    top *o = &t->ops[v - 1];
    o->cin = cin, o->cout = cout, o->bias = 1;
    o->w = tnet_rand(r, (long)cout * cin, sqrtf(2.0f / (float)cin));
    o->b = tnet_rand(r, cout, 0.1f);
    return v;
}

static inline void tnet_free(tnet *t)
{
    for (int i = 0; i < t->nops; i++) {
        top *o = &t->ops[i];
        free(o->w), free(o->b), free(o->gamma), free(o->beta), free(o->mean), free(o->var);
    }
    t->nops = 0;
}

/* The residual CNN of the import tests on c x h x w inputs (h, w divisible by
 * 4): conv-BN-ReLU stem, 2x2 max pool, a downsampling residual block with a
 * 1x1 projection shortcut (Clip as ReLU inside), a 3x3 average pool counting
 * its padding, dropout, global average pool, flatten and a Gemm classifier.
 * variant 1 uses a ReLU6-like Clip to [0, 0.5] in the block, Reshape, an Identity,
 * hardtanh (Clip -1..1) and MatMul + Add. */
static inline void tnet_resnet(tnet *t, int c, int h, int w, int classes, int variant, uint64_t seed)
{
    apb_rng r;
    apb_rng_seed(&r, seed);
    memset(t, 0, sizeof *t);
    t->c = c, t->h = h, t->w = w, t->classes = classes, t->opset = 13;
    int x = tnet_conv(t, &r, "conv1", 0, c, 8, 3, 1, 1, 0);
    x = tnet_bn(t, &r, "bn1", x, 8);
    x = tnet_add(t, T_RELU, x, NULL);
    int p = tnet_pool(t, T_MAXPOOL, x, 2, 2, 0);
    x = tnet_conv(t, &r, "layer1.0.conv1", p, 8, 16, 3, 2, 1, 0);
    x = tnet_bn(t, &r, "layer1.0.bn1", x, 16);
    x = tnet_add(t, T_CLIP, x, NULL); /* variant 0 a ReLU, variant 1 ReLU6-like */
    t->ops[x - 1].lo = 0;
    t->ops[x - 1].hi = variant == 1 ? 0.5f : INFINITY; /* (6 would rarely bind here) */
    x = tnet_conv(t, &r, "layer1.0.conv2", x, 16, 16, 3, 1, 1, 1);
    x = tnet_bn(t, &r, "layer1.0.bn2", x, 16);
    int s = tnet_conv(t, &r, "layer1.0.downsample.0", p, 8, 16, 1, 2, 0, 0);
    s = tnet_bn(t, &r, "layer1.0.downsample.1", s, 16);
    x = tnet_add(t, T_ADD, x, NULL);
    t->ops[x - 1].in2 = s;
    if (variant == 1) {
        x = tnet_add(t, T_IDENTITY, x, NULL);
        x = tnet_add(t, T_CLIP, x, NULL);
        t->ops[x - 1].lo = -1;
        t->ops[x - 1].hi = 1;
    } else
        x = tnet_add(t, T_RELU, x, NULL);
    x = tnet_pool(t, T_AVGPOOL, x, 3, 1, 1);
    x = tnet_add(t, T_DROPOUT, x, NULL);
    x = tnet_add(t, T_GAP, x, NULL);
    x = tnet_add(t, variant == 1 ? T_RESHAPE : T_FLATTEN, x, NULL);
    t->ops[x - 1].cout = 16; /* features, for Reshape's shape */
    tnet_gemm(t, &r, variant == 1 ? T_MATMUL_ADD : T_GEMM, "fc", x, 16, classes);
}

/* Folds every BN that directly follows a conv into that conv (weight and
 * bias), as PyTorch's eval-mode export does; the BN becomes an Identity. */
static inline void tnet_fold_bn(tnet *t)
{
    for (int i = 0; i < t->nops; i++) {
        top *bn = &t->ops[i];
        if (bn->op != T_BN || bn->in == 0 || t->ops[bn->in - 1].op != T_CONV)
            continue;
        top *cv = &t->ops[bn->in - 1];
        if (!cv->b)
            cv->b = calloc((size_t)cv->cout, sizeof(float));
        cv->bias = 1;
        long per = (long)cv->cin * cv->k * cv->k;
        for (int o = 0; o < cv->cout; o++) {
            double sc = bn->gamma[o] / sqrt((double)bn->var[o] + bn->eps);
            for (long j = 0; j < per; j++)
                cv->w[o * per + j] = (float)(cv->w[o * per + j] * sc);
            cv->b[o] = (float)((cv->b[o] - bn->mean[o]) * sc + bn->beta[o]);
        }
        bn->op = T_IDENTITY;
    }
}

/* ---- the reference: naive loops in double ---- */

typedef struct {
    int c, h, w; /* 2-D values: c features, h = w = 1 */
    double *d;   /* [n, c, h, w] */
} tval;

/* Output of the network for x [n, c, h, w] into out [n, classes] (0 on success). */
static inline int tnet_ref(const tnet *t, const float *x, int n, float *out)
{
    tval *v = calloc((size_t)t->nops + 1, sizeof *v);
    long in = (long)t->c * t->h * t->w;
    v[0] = (tval){t->c, t->h, t->w, malloc(sizeof(double) * (size_t)(n * in))};
    for (long i = 0; i < n * in; i++)
        v[0].d[i] = x[i];
    for (int i = 0; i < t->nops; i++) {
        const top *o = &t->ops[i];
        const tval *a = &v[o->in];
        tval *y = &v[i + 1];
        int C = a->c, H = a->h, W = a->w;
        long sz = (long)C * H * W;
        switch (o->op) {
        case T_CONV: {
            int OH = (H + 2 * o->pad - o->k) / o->stride + 1, OW = (W + 2 * o->pad - o->k) / o->stride + 1;
            *y = (tval){o->cout, OH, OW, calloc((size_t)n * o->cout * OH * OW, sizeof(double))};
            for (int b = 0; b < n; b++)
                for (int co = 0; co < o->cout; co++)
                    for (int oh = 0; oh < OH; oh++)
                        for (int ow = 0; ow < OW; ow++) {
                            double s = o->b ? o->b[co] : 0;
                            for (int ci = 0; ci < C; ci++)
                                for (int kh = 0; kh < o->k; kh++)
                                    for (int kw = 0; kw < o->k; kw++) {
                                        int ih = oh * o->stride - o->pad + kh, iw = ow * o->stride - o->pad + kw;
                                        if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                            s += o->w[((co * C + ci) * o->k + kh) * o->k + kw] *
                                                 a->d[((long)(b * C + ci) * H + ih) * W + iw];
                                    }
                            y->d[((long)(b * o->cout + co) * OH + oh) * OW + ow] = s;
                        }
            break;
        }
        case T_MAXPOOL:
        case T_AVGPOOL: {
            int OH = (H + 2 * o->pad - o->k) / o->stride + 1, OW = (W + 2 * o->pad - o->k) / o->stride + 1;
            *y = (tval){C, OH, OW, malloc(sizeof(double) * (size_t)n * C * OH * OW)};
            for (long pl = 0; pl < (long)n * C; pl++)
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++) {
                        double s = o->op == T_MAXPOOL ? -INFINITY : 0;
                        for (int kh = 0; kh < o->k; kh++)
                            for (int kw = 0; kw < o->k; kw++) {
                                int ih = oh * o->stride - o->pad + kh, iw = ow * o->stride - o->pad + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                double e = a->d[(pl * H + ih) * W + iw];
                                s = o->op == T_MAXPOOL ? fmax(s, e) : s + e;
                            }
                        y->d[(pl * OH + oh) * OW + ow] = o->op == T_MAXPOOL ? s : s / (o->k * o->k);
                    }
            break;
        }
        case T_GAP:
            *y = (tval){C, 1, 1, calloc((size_t)n * C, sizeof(double))};
            for (long pl = 0; pl < (long)n * C; pl++) {
                for (long j = 0; j < (long)H * W; j++)
                    y->d[pl] += a->d[pl * H * W + j];
                y->d[pl] /= H * W;
            }
            break;
        case T_GEMM:
        case T_MATMUL_ADD:
            *y = (tval){o->cout, 1, 1, malloc(sizeof(double) * (size_t)n * o->cout)};
            for (int b = 0; b < n; b++)
                for (int co = 0; co < o->cout; co++) {
                    double s = o->b[co];
                    for (int ci = 0; ci < o->cin; ci++)
                        s += o->w[(long)co * o->cin + ci] * a->d[(long)b * sz + ci];
                    y->d[(long)b * o->cout + co] = s;
                }
            break;
        default: {
            /* elementwise and reshapes: same data, maybe another shape */
            *y = (tval){C, H, W, malloc(sizeof(double) * (size_t)(n * sz))};
            if (o->op == T_FLATTEN || o->op == T_RESHAPE)
                y->c = (int)sz, y->h = y->w = 1;
            for (long j = 0; j < n * sz; j++) {
                double e = a->d[j];
                long ch = (j / ((long)H * W)) % C;
                switch (o->op) {
                case T_BN:
                    e = (e - o->mean[ch]) / sqrt((double)o->var[ch] + o->eps) * o->gamma[ch] + o->beta[ch];
                    break;
                case T_RELU: e = e > 0 ? e : 0; break;
                case T_CLIP: e = e < o->lo ? o->lo : e > o->hi ? o->hi : e; break;
                case T_ADD: e += v[o->in2].d[j]; break;
                default: break;
                }
                y->d[j] = e;
            }
        }
        }
    }
    const tval *last = &v[t->nops];
    for (long i = 0; i < (long)n * t->classes; i++)
        out[i] = (float)last->d[i];
    for (int i = 0; i <= t->nops; i++)
        free(v[i].d);
    free(v);
    return 0;
}

/* ---- the ONNX writer (protobuf-c structs, packed once) ---- */

typedef struct {
    void **owned;
    int nowned, cap;
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1];
} twriter;

static inline void *tw_own(twriter *w, void *p)
{
    if (w->nowned == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->owned = realloc(w->owned, sizeof(void *) * (size_t)w->cap);
    }
    w->owned[w->nowned++] = p;
    return p;
}

static inline void *tw_alloc(twriter *w, size_t n) { return tw_own(w, calloc(1, n ? n : 1)); }

static inline char *tw_str(twriter *w, const char *s)
{
    char *p = tw_alloc(w, strlen(s) + 1);
    strcpy(p, s);
    return p;
}

/* Appends p to a protobuf-c repeated field (n, arr) of pointers. */
#define TW_PUSH(w, n, arr, p)                                                         \
    do {                                                                              \
        void *na_ = tw_alloc(w, sizeof(*(arr)) * ((n) + 1));                          \
        if ((n))                                                                      \
            memcpy(na_, (arr), sizeof(*(arr)) * (n));                                 \
        (arr) = na_;                                                                  \
        (arr)[(n)++] = (p);                                                           \
    } while (0)

static inline void tw_init(twriter *w, int opset)
{
    memset(w, 0, sizeof *w);
    onnx__model_proto__init(&w->model);
    onnx__graph_proto__init(&w->graph);
    onnx__operator_set_id_proto__init(&w->opset);
    w->opset.domain = tw_str(w, "");
    w->opset.has_version = 1;
    w->opset.version = opset;
    w->opsets[0] = &w->opset;
    w->model.n_opset_import = 1;
    w->model.opset_import = w->opsets;
    w->model.has_ir_version = 1;
    w->model.ir_version = 7;
    w->model.producer_name = tw_str(w, "apb-tests");
    w->model.graph = &w->graph;
    w->graph.name = tw_str(w, "tnet");
}

static inline void tw_tensor_f(twriter *w, const char *name, int ndim, const int64_t *dims, const float *d)
{
    Onnx__TensorProto *t = tw_alloc(w, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = tw_str(w, name);
    t->n_dims = (size_t)ndim;
    t->dims = tw_alloc(w, sizeof(int64_t) * (size_t)ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (t->dims[i] = dims[i]);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->has_raw_data = 1;
    t->raw_data.len = sizeof(float) * (size_t)n;
    t->raw_data.data = tw_alloc(w, t->raw_data.len);
    memcpy(t->raw_data.data, d, t->raw_data.len);
    TW_PUSH(w, w->graph.n_initializer, w->graph.initializer, t);
}

static inline void tw_tensor_i64(twriter *w, const char *name, int n, const int64_t *d)
{
    Onnx__TensorProto *t = tw_alloc(w, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = tw_str(w, name);
    t->n_dims = 1;
    t->dims = tw_alloc(w, sizeof(int64_t));
    t->dims[0] = n;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->n_int64_data = (size_t)n;
    t->int64_data = tw_alloc(w, sizeof(int64_t) * (size_t)n);
    memcpy(t->int64_data, d, sizeof(int64_t) * (size_t)n);
    TW_PUSH(w, w->graph.n_initializer, w->graph.initializer, t);
}

static inline Onnx__NodeProto *tw_node(twriter *w, const char *op, const char *name, int nin,
                                const char *const *in, const char *out)
{
    Onnx__NodeProto *nd = tw_alloc(w, sizeof *nd);
    onnx__node_proto__init(nd);
    nd->op_type = tw_str(w, op);
    nd->name = tw_str(w, name);
    for (int i = 0; i < nin; i++)
        TW_PUSH(w, nd->n_input, nd->input, tw_str(w, in[i]));
    TW_PUSH(w, nd->n_output, nd->output, tw_str(w, out));
    TW_PUSH(w, w->graph.n_node, w->graph.node, nd);
    return nd;
}

static inline Onnx__AttributeProto *tw_attr(twriter *w, Onnx__NodeProto *nd, const char *name, int type)
{
    Onnx__AttributeProto *a = tw_alloc(w, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = tw_str(w, name);
    a->has_type = 1;
    a->type = type;
    TW_PUSH(w, nd->n_attribute, nd->attribute, a);
    return a;
}

static inline void tw_attr_i(twriter *w, Onnx__NodeProto *nd, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = tw_attr(w, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static inline void tw_attr_f(twriter *w, Onnx__NodeProto *nd, const char *name, float v)
{
    Onnx__AttributeProto *a = tw_attr(w, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

static inline void tw_attr_ints(twriter *w, Onnx__NodeProto *nd, const char *name, int n, int64_t v)
{
    Onnx__AttributeProto *a = tw_attr(w, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)n;
    a->ints = tw_alloc(w, sizeof(int64_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        a->ints[i] = v;
}

static inline Onnx__ValueInfoProto *tw_value_info(twriter *w, const char *name, int ndim, const int64_t *dims,
                                           const char *batch_param)
{
    Onnx__ValueInfoProto *vi = tw_alloc(w, sizeof *vi);
    onnx__value_info_proto__init(vi);
    vi->name = tw_str(w, name);
    Onnx__TypeProto *tp = tw_alloc(w, sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = tw_alloc(w, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    Onnx__TensorShapeProto *sh = tw_alloc(w, sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = tw_alloc(w, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (i == 0 && batch_param) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = tw_str(w, batch_param);
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        TW_PUSH(w, sh->n_dim, sh->dim, d);
    }
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->type = tp;
    return vi;
}

static inline void tw_free(twriter *w)
{
    for (int i = 0; i < w->nowned; i++)
        free(w->owned[i]);
    free(w->owned);
    memset(w, 0, sizeof *w);
}

/* The network as ONNX bytes (*buf malloc'd). `extra` (if non-NULL) is called
 * before packing, to add or change nodes. Value i is named "v<i>" (v0 the
 * input, "logits" the last). */
static inline void tnet_onnx(const tnet *t, void (*extra)(twriter *, void *), void *arg, unsigned char **buf,
                      size_t *len)
{
    twriter w;
    tw_init(&w, t->opset);
    int64_t idims[4] = {0, t->c, t->h, t->w};
    TW_PUSH(&w, w.graph.n_input, w.graph.input, tw_value_info(&w, "v0", 4, idims, "N"));
    char vin[2][16], vout[16];
    for (int i = 0; i < t->nops; i++) {
        const top *o = &t->ops[i];
        const char *in[2] = {vin[0], vin[1]};
        snprintf(vin[0], sizeof vin[0], "v%d", o->in);
        snprintf(vin[1], sizeof vin[1], "v%d", o->in2);
        if (i == t->nops - 1)
            snprintf(vout, sizeof vout, "logits");
        else
            snprintf(vout, sizeof vout, "v%d", i + 1);
        char node[64], p[5][96];
        snprintf(node, sizeof node, "/%s/op%d", o->name[0] ? o->name : "x", i);
        Onnx__NodeProto *nd = NULL;
        switch (o->op) {
        case T_CONV: {
            snprintf(p[1], sizeof p[1], "%s.weight", o->name);
            snprintf(p[2], sizeof p[2], "%s.bias", o->name);
            int64_t wd[4] = {o->cout, o->cin / o->group, o->k, o->k};
            tw_tensor_f(&w, p[1], 4, wd, o->w);
            if (o->b)
                tw_tensor_f(&w, p[2], 1, wd, o->b);
            const char *ci[3] = {vin[0], p[1], p[2]};
            nd = tw_node(&w, "Conv", node, o->b ? 3 : 2, ci, vout);
            tw_attr_ints(&w, nd, "kernel_shape", 2, o->k);
            tw_attr_ints(&w, nd, "strides", 2, o->stride);
            tw_attr_ints(&w, nd, "pads", 4, o->pad);
            tw_attr_ints(&w, nd, "dilations", 2, 1);
            tw_attr_i(&w, nd, "group", o->group);
            break;
        }
        case T_BN: {
            static const char *suf[4] = {"weight", "bias", "running_mean", "running_var"};
            const float *d[4] = {o->gamma, o->beta, o->mean, o->var};
            int64_t cd = o->cout;
            const char *bi[5] = {vin[0], p[0], p[1], p[2], p[3]};
            for (int k = 0; k < 4; k++) {
                snprintf(p[k], sizeof p[k], "%s.%s", o->name, suf[k]);
                tw_tensor_f(&w, p[k], 1, &cd, d[k]);
            }
            nd = tw_node(&w, "BatchNormalization", node, 5, bi, vout);
            tw_attr_f(&w, nd, "epsilon", o->eps);
            tw_attr_f(&w, nd, "momentum", 0.9f);
            break;
        }
        case T_RELU: tw_node(&w, "Relu", node, 1, in, vout); break;
        case T_CLIP: {
            snprintf(p[1], sizeof p[1], "%s_min", node);
            snprintf(p[2], sizeof p[2], "%s_max", node);
            int64_t none = 0;
            tw_tensor_f(&w, p[1], 0, &none, &o->lo);
            int nin = 2;
            if (!isinf(o->hi)) {
                tw_tensor_f(&w, p[2], 0, &none, &o->hi);
                nin = 3;
            }
            const char *ci[3] = {vin[0], p[1], p[2]};
            tw_node(&w, "Clip", node, nin, ci, vout);
            break;
        }
        case T_MAXPOOL:
        case T_AVGPOOL:
            nd = tw_node(&w, o->op == T_MAXPOOL ? "MaxPool" : "AveragePool", node, 1, in, vout);
            tw_attr_ints(&w, nd, "kernel_shape", 2, o->k);
            tw_attr_ints(&w, nd, "strides", 2, o->stride);
            tw_attr_ints(&w, nd, "pads", 4, o->pad);
            tw_attr_i(&w, nd, "ceil_mode", 0);
            if (o->op == T_AVGPOOL)
                tw_attr_i(&w, nd, "count_include_pad", 1);
            break;
        case T_GAP: tw_node(&w, "GlobalAveragePool", node, 1, in, vout); break;
        case T_ADD: tw_node(&w, "Add", node, 2, in, vout); break;
        case T_IDENTITY: tw_node(&w, "Identity", node, 1, in, vout); break;
        case T_DROPOUT: tw_node(&w, "Dropout", node, 1, in, vout); break;
        case T_OTHER: tw_node(&w, o->name2, node, 1, in, vout); break;
        case T_FLATTEN:
            nd = tw_node(&w, "Flatten", node, 1, in, vout);
            tw_attr_i(&w, nd, "axis", 1);
            break;
        case T_RESHAPE: {
            snprintf(p[1], sizeof p[1], "%s_shape", node);
            int64_t sh[2] = {-1, (int64_t)o->cout};
            tw_tensor_i64(&w, p[1], 2, sh);
            const char *ri[2] = {vin[0], p[1]};
            tw_node(&w, "Reshape", node, 2, ri, vout);
            break;
        }
        case T_GEMM: {
            snprintf(p[1], sizeof p[1], "%s.weight", o->name);
            snprintf(p[2], sizeof p[2], "%s.bias", o->name);
            int64_t wd[2] = {o->cout, o->cin}, bd = o->cout;
            tw_tensor_f(&w, p[1], 2, wd, o->w);
            tw_tensor_f(&w, p[2], 1, &bd, o->b);
            const char *gi[3] = {vin[0], p[1], p[2]};
            nd = tw_node(&w, "Gemm", node, 3, gi, vout);
            tw_attr_f(&w, nd, "alpha", 1.0f);
            tw_attr_f(&w, nd, "beta", 1.0f);
            tw_attr_i(&w, nd, "transB", 1);
            break;
        }
        case T_MATMUL_ADD: {
            /* PyTorch's x @ W.t() + b: the weight stored [cin, cout] */
            snprintf(p[1], sizeof p[1], "%s.weight_t", o->name);
            snprintf(p[2], sizeof p[2], "%s.bias", o->name);
            snprintf(p[3], sizeof p[3], "%s_mm", node);
            float *wt = malloc(sizeof(float) * (size_t)o->cin * o->cout);
            for (int a = 0; a < o->cin; a++)
                for (int b = 0; b < o->cout; b++)
                    wt[a * o->cout + b] = o->w[b * o->cin + a];
            int64_t wd[2] = {o->cin, o->cout}, bd = o->cout;
            tw_tensor_f(&w, p[1], 2, wd, wt);
            tw_tensor_f(&w, p[2], 1, &bd, o->b);
            free(wt);
            const char *mi[2] = {vin[0], p[1]}, *ai[2] = {p[2], p[3]};
            tw_node(&w, "MatMul", node, 2, mi, p[3]);
            snprintf(node + strlen(node), sizeof node - strlen(node), "_add");
            tw_node(&w, "Add", node, 2, ai, vout); /* bias first: either order is valid */
            break;
        }
        }
    }
    int64_t odims[2] = {0, t->classes};
    TW_PUSH(&w, w.graph.n_output, w.graph.output, tw_value_info(&w, "logits", 2, odims, "N"));
    if (extra)
        extra(&w, arg);
    *len = onnx__model_proto__get_packed_size(&w.model);
    *buf = malloc(*len ? *len : 1);
    onnx__model_proto__pack(&w.model, *buf);
    tw_free(&w);
}

#endif
