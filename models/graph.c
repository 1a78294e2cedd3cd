/* graph.c - graph records: a layer list to text and back through the builder
 * (format and placement rules in graph.h). */
#include "graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder.h"

/* Records beyond these are damaged, not large models: ResNet-152 has ~500
 * layers, and no conv / linear of a classifier nears 2^28 weights. */
enum { MAX_LAYERS = 1 << 14, MAX_CHANNELS = 1 << 20, MAX_K = 64 };
#define MAX_WEIGHTS ((int64_t)1 << 28)

static const struct {
    apb_layer_kind kind;
    const char *name;
    const char *keys; /* the keys a line of this kind carries, each followed by a space */
} KINDS[] = {
    {APB_L_CONV, "conv", "name in cin cout k stride pad bias q qi "},
    {APB_L_LINEAR, "linear", "name in cin cout bias q qi "},
    {APB_L_BN, "bn", "name in channels "},
    {APB_L_RELU, "relu", "name in "},
    {APB_L_HARDTANH, "hardtanh", "name in "},
    {APB_L_MAXPOOL, "maxpool", "name in k stride pad "},
    {APB_L_AVGPOOL, "avgpool", "name in k stride pad "},
    {APB_L_GAP, "gap", "name in "},
    {APB_L_FLATTEN, "flatten", "name in "},
    {APB_L_ADD, "add", "name in in2 "},
    {APB_L_DROPOUT, "dropout", "name in p "},
    {APB_L_CLIP, "clip", "name in lo hi "},
};
#define NKINDS ((int)(sizeof KINDS / sizeof KINDS[0]))

static const char *kind_name(apb_layer_kind k)
{
    for (int i = 0; i < NKINDS; i++)
        if (KINDS[i].kind == k)
            return KINDS[i].name;
    return NULL;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *s, const char *fmt, ...)
{
    if (s->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(s->p + s->n, s->cap - s->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < s->cap - s->n) {
            s->n += (size_t)k;
            return;
        }
        size_t nc = 2 * s->cap + (size_t)(k > 0 ? k : 0) + 256;
        char *np = realloc(s->p, nc);
        if (!np) {
            s->oom = 1;
            return;
        }
        s->p = np;
        s->cap = nc;
    }
}

apb_status apb_graph_write(const apb_model *m, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    sbuf s = {malloc(4096), 0, 4096, 0};
    if (!s.p)
        return apb_fail(APB_ENOMEM, "graph record: out of memory");
    put(&s, "apb-graph 1\n");
    for (int i = 0; i < m->nlayers; i++) {
        const apb_layer *l = &m->layers[i];
        const char *kn = kind_name(l->kind);
        if (!kn || l->out != i + 1 || !l->name[0] || strpbrk(l->name, " =\n\t\r")) {
            free(s.p);
            return apb_fail(APB_EINVAL, "graph record: layer %d ('%s') cannot be written: %s", i,
                            l->name, !kn ? "unknown kind" : l->out != i + 1 ? "out slots not in order"
                                                                             : "empty name or a space/'=' in it");
        }
        put(&s, "%s name=%s in=%d", kn, l->name, l->in);
        switch (l->kind) {
        case APB_L_CONV:
            put(&s, " cin=%d cout=%d k=%d stride=%d pad=%d bias=%d q=%d qi=%d", l->cin, l->cout, l->k,
                l->stride, l->pad, l->has_bias, l->quantizable, l->quant_input);
            break;
        case APB_L_LINEAR:
            put(&s, " cin=%d cout=%d bias=%d q=%d qi=%d", l->cin, l->cout, l->has_bias, l->quantizable,
                l->quantizable);
            break;
        case APB_L_BN: put(&s, " channels=%d", l->channels); break;
        case APB_L_MAXPOOL:
        case APB_L_AVGPOOL: put(&s, " k=%d stride=%d pad=%d", l->pk, l->pstride, l->ppad); break;
        case APB_L_ADD: put(&s, " in2=%d", l->in2); break;
        case APB_L_DROPOUT: put(&s, " p=%.9g", l->p); break;
        case APB_L_CLIP: put(&s, " lo=%.9g hi=%.9g", l->lo, l->hi); break;
        default: break;
        }
        put(&s, "\n");
    }
    put(&s, "out=%d\n", m->out_slot);
    if (s.oom) {
        free(s.p);
        return apb_fail(APB_ENOMEM, "graph record: out of memory");
    }
    *text = s.p;
    *len = s.n;
    return APB_OK;
}

/* ---- reading ------------------------------------------------------------ */

typedef struct {
    apb_layer_kind kind;
    int line;
    char name[32];
    int in, in2, cin, cout, k, stride, pad, bias, q, qi, channels;
    float p, lo, hi;
} node;

/* One "key=value" token of a line; the value as an int in [lo, hi]. */
static apb_status int_value(const char *what, int line, const char *key, const char *v, long lo,
                            long hi, int *out)
{
    char *e;
    long x = strtol(v, &e, 10);
    if (e == v || *e || x < lo || x > hi)
        return apb_fail(APB_EFORMAT, "%s: graph record line %d: %s=%s is not an integer in [%ld, %ld]",
                        what, line, key, v, lo, hi);
    *out = (int)x;
    return APB_OK;
}

/* Parses one layer line (tokens separated by single spaces, NUL-terminated)
 * into *nd; `index` is the layer's position (it may read slots 0..index). */
static apb_status parse_line(const char *what, int line, char *s, int index, node *nd)
{
    memset(nd, 0, sizeof *nd);
    nd->line = line;
    char *save = NULL, *tok = strtok_r(s, " ", &save);
    int kind = -1;
    for (int i = 0; tok && i < NKINDS; i++)
        if (!strcmp(tok, KINDS[i].name))
            kind = i;
    if (kind < 0)
        return apb_fail(APB_EFORMAT, "%s: graph record line %d: unknown layer kind '%s'", what, line,
                        tok ? tok : "");
    nd->kind = KINDS[kind].kind;
    const char *keys = KINDS[kind].keys;
    int nkeys = 0, seen = 0;
    for (const char *k = keys; *k; k++)
        nkeys += *k == ' ';
    while ((tok = strtok_r(NULL, " ", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return apb_fail(APB_EFORMAT, "%s: graph record line %d: '%s' is not key=value", what, line, tok);
        *eq = 0;
        const char *key = tok, *v = eq + 1;
        char pat[40];
        snprintf(pat, sizeof pat, "%s ", key);
        const char *at = strstr(keys, pat);
        while (at && at != keys && at[-1] != ' ')
            at = strstr(at + 1, pat);
        if (!at)
            return apb_fail(APB_EFORMAT, "%s: graph record line %d: %s layers have no key '%s'", what,
                            line, KINDS[kind].name, key);
        int bit = 0;
        for (const char *k = keys; k < at; k++)
            bit += *k == ' ';
        if (seen & (1 << bit))
            return apb_fail(APB_EFORMAT, "%s: graph record line %d: key '%s' twice", what, line, key);
        seen |= 1 << bit;
        apb_status st = APB_OK;
        int big = MAX_CHANNELS;
        if (!strcmp(key, "name")) {
            size_t n = strlen(v);
            if (n == 0 || n >= sizeof nd->name)
                return apb_fail(APB_EFORMAT, "%s: graph record line %d: layer name of %zu characters (1 to %d)",
                                what, line, n, (int)sizeof nd->name - 1);
            memcpy(nd->name, v, n + 1);
        } else if (!strcmp(key, "in"))
            st = int_value(what, line, key, v, 0, index, &nd->in);
        else if (!strcmp(key, "in2"))
            st = int_value(what, line, key, v, 0, index, &nd->in2);
        else if (!strcmp(key, "cin"))
            st = int_value(what, line, key, v, 1, big, &nd->cin);
        else if (!strcmp(key, "cout"))
            st = int_value(what, line, key, v, 1, big, &nd->cout);
        else if (!strcmp(key, "channels"))
            st = int_value(what, line, key, v, 1, big, &nd->channels);
        else if (!strcmp(key, "k"))
            st = int_value(what, line, key, v, 1, MAX_K, &nd->k);
        else if (!strcmp(key, "stride"))
            st = int_value(what, line, key, v, 1, MAX_K, &nd->stride);
        else if (!strcmp(key, "pad"))
            st = int_value(what, line, key, v, 0, MAX_K, &nd->pad);
        else if (!strcmp(key, "bias"))
            st = int_value(what, line, key, v, 0, 1, &nd->bias);
        else if (!strcmp(key, "q"))
            st = int_value(what, line, key, v, 0, 1, &nd->q);
        else if (!strcmp(key, "qi"))
            st = int_value(what, line, key, v, 0, 1, &nd->qi);
        else if (!strcmp(key, "p")) {
            char *e;
            nd->p = strtof(v, &e);
            if (e == v || *e || !(nd->p >= 0.0f && nd->p < 1.0f))
                return apb_fail(APB_EFORMAT, "%s: graph record line %d: p=%s is not in [0, 1)", what,
                                line, v);
        } else if (!strcmp(key, "lo") || !strcmp(key, "hi")) {
            char *e;
            float f = strtof(v, &e);
            if (e == v || *e || !isfinite(f) || fabsf(f) > 1e30f)
                return apb_fail(APB_EFORMAT, "%s: graph record line %d: %s=%s is not a finite number",
                                what, line, key, v);
            *(key[0] == 'l' ? &nd->lo : &nd->hi) = f;
        }
        if (st)
            return st;
    }
    if (seen != (1 << nkeys) - 1) {
        int bit = 0;
        while (seen & (1 << bit))
            bit++;
        const char *k = keys;
        for (int i = 0; i < bit; i++)
            k = strchr(k, ' ') + 1;
        return apb_fail(APB_EFORMAT, "%s: graph record line %d: %s layer lacks '%.*s'", what, line,
                        KINDS[kind].name, (int)(strchr(k, ' ') - k), k);
    }
    if (nd->kind == APB_L_CONV && (int64_t)nd->cout * nd->cin * nd->k * nd->k > MAX_WEIGHTS)
        return apb_fail(APB_EFORMAT, "%s: graph record line %d: conv of %dx%dx%dx%d weights", what,
                        line, nd->cout, nd->cin, nd->k, nd->k);
    if (nd->kind == APB_L_LINEAR && ((int64_t)nd->cout * nd->cin > MAX_WEIGHTS || nd->q != nd->qi))
        return apb_fail(APB_EFORMAT, "%s: graph record line %d: linear of %dx%d weights, q=%d qi=%d "
                        "(a linear layer quantizes its input exactly when its weights)", what, line,
                        nd->cout, nd->cin, nd->q, nd->qi);
    if (nd->kind == APB_L_CLIP && !(nd->lo < nd->hi))
        return apb_fail(APB_EFORMAT, "%s: graph record line %d: clip bounds [%g, %g] empty", what, line,
                        (double)nd->lo, (double)nd->hi);
    if ((nd->kind == APB_L_MAXPOOL || nd->kind == APB_L_AVGPOOL) && 2 * nd->pad > nd->k)
        return apb_fail(APB_EFORMAT, "%s: graph record line %d: pool pad %d larger than half the "
                        "window %d", what, line, nd->pad, nd->k);
    return APB_OK;
}

/* Layers after which a ReLU's output is still non-negative (its sign constant). */
static int passes_through(apb_layer_kind k)
{
    return k == APB_L_MAXPOOL || k == APB_L_AVGPOOL || k == APB_L_GAP || k == APB_L_FLATTEN ||
           k == APB_L_DROPOUT;
}

/* The placement rules of graph.h: resolves q / qi per layer and turns ReLUs in
 * front of quantized inputs into hardtanh. */
static apb_status place(const apb_model_cfg *cfg, node *nd, int n, int out_slot)
{
    for (int i = 0; i < n; i++) {
        node *x = &nd[i];
        if (x->kind == APB_L_CONV && x->in == 0)
            x->q = x->qi = cfg->quant_first != 0;
        else if (x->kind == APB_L_LINEAR && i + 1 == out_slot)
            x->q = x->qi = cfg->quant_last != 0;
        else if (x->q && !x->qi && cfg->fp_shortcut)
            x->q = 0;
    }
    if (cfg->aq == APB_AQ_FP)
        return APB_OK;
    /* reach[s]: slot s's value meets a quantized input through pass-through
     * layers only. Readers come after writers, so a backward sweep is final. */
    char *reach = calloc((size_t)n + 1, 1);
    if (!reach)
        return apb_fail(APB_ENOMEM, "graph record: out of memory");
    for (int i = n - 1; i >= 0; i--) {
        const node *x = &nd[i];
        if ((x->kind == APB_L_CONV || x->kind == APB_L_LINEAR) && x->q && x->qi)
            reach[x->in] = 1;
        else if (passes_through(x->kind) && reach[i + 1])
            reach[x->in] = 1;
    }
    for (int i = 0; i < n; i++)
        if ((nd[i].kind == APB_L_RELU || (nd[i].kind == APB_L_CLIP && nd[i].lo >= 0.0f)) && reach[i + 1])
            nd[i].kind = APB_L_HARDTANH;
    free(reach);
    return APB_OK;
}

static int build_node(apb_builder *b, const node *x)
{
    switch (x->kind) {
    case APB_L_CONV:
        return apb_build_conv(b, x->name, x->in, x->cin, x->cout, x->k, x->stride, x->pad, x->q, x->qi,
                              x->bias);
    case APB_L_LINEAR: return apb_build_linear(b, x->name, x->in, x->cin, x->cout, x->q, x->bias);
    case APB_L_BN: return apb_build_bn(b, x->name, x->in, x->channels);
    case APB_L_MAXPOOL:
    case APB_L_AVGPOOL: return apb_build_pool(b, x->name, x->kind, x->in, x->k, x->stride, x->pad);
    case APB_L_ADD: return apb_build_add(b, x->name, x->in, x->in2);
    case APB_L_DROPOUT: return apb_build_dropout(b, x->name, x->in, x->p);
    case APB_L_CLIP: return apb_build_clip(b, x->name, x->in, x->lo, x->hi);
    default: return apb_build_simple(b, x->name, x->kind, x->in);
    }
}

apb_status apb_graph_build(const apb_model_cfg *cfg, const char *text, size_t len, const char *what,
                           uint64_t seed, apb_model **out)
{
    *out = NULL;
    static const char head[] = "apb-graph 1\n";
    if (len < sizeof head - 1 || memcmp(text, head, sizeof head - 1))
        return apb_fail(APB_EFORMAT, "%s: graph record does not start with 'apb-graph 1'", what);
    node *nd = NULL;
    int n = 0, cap = 0, out_slot = -1, line = 1;
    char buf[512];
    apb_status s = APB_OK;
    size_t off = sizeof head - 1;
    while (!s && off < len) {
        const char *e = memchr(text + off, '\n', len - off);
        size_t ll = e ? (size_t)(e - (text + off)) : len - off;
        line++;
        if (!e || ll >= sizeof buf || memchr(text + off, 0, ll) || out_slot >= 0) {
            s = apb_fail(APB_EFORMAT, "%s: graph record line %d: %s", what, line,
                         !e ? "not terminated by a newline" : ll >= sizeof buf ? "longer than 511 bytes"
                         : out_slot >= 0 ? "text after the out= line" : "a NUL byte");
            break;
        }
        memcpy(buf, text + off, ll);
        buf[ll] = 0;
        off += ll + 1;
        if (!strncmp(buf, "out=", 4)) {
            s = int_value(what, line, "out", buf + 4, 1, n, &out_slot);
            continue;
        }
        if (n == MAX_LAYERS) {
            s = apb_fail(APB_EFORMAT, "%s: graph record has more than %d layers", what, MAX_LAYERS);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            node *nn = realloc(nd, sizeof *nn * (size_t)cap);
            if (!nn) {
                s = apb_fail(APB_ENOMEM, "%s: graph record: out of memory", what);
                break;
            }
            nd = nn;
        }
        s = parse_line(what, line, buf, n, &nd[n]);
        n++;
    }
    if (!s && out_slot < 0)
        s = apb_fail(APB_EFORMAT, "%s: graph record has no out= line (truncated?)", what);
    if (!s)
        s = place(cfg, nd, n, out_slot);
    apb_builder b;
    if (!s)
        s = apb_builder_begin(&b, cfg, seed);
    if (s) {
        free(nd);
        return s;
    }
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++)
        if (!build_node(&b, &nd[i]))
            bad = i;
    s = apb_builder_finish(&b, out_slot, out);
    if (s && bad >= 0)
        apb_fail_context(s, "%s: graph record line %d", what, nd[bad].line);
    free(nd);
    return s;
}
