/* autograd.c - the tape engine behind apb_apply()/apb_backward().
 *
 * It knows nothing about individual ops: shapes, forward and backward all come
 * from the op descriptor, so adding an op never touches this file.
 */
#include "autograd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t apb_dims_numel(int ndim, const int *dim)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= dim[i];
    return n;
}

int apb_dims_equal(const apb_var *a, const apb_var *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i])
            return 0;
    return 1;
}

apb_status apb_shape_same(apb_var *const *in, int nin, const void *attr, int *ndim,
                          int dim[APB_MAX_DIM])
{
    *ndim = in[0]->ndim;
    for (int i = 0; i < in[0]->ndim; i++)
        dim[i] = in[0]->dim[i];
    return APB_OK;
}

const char *apb_dims_str(int ndim, const int *dim, char *buf, size_t n)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ",%d" : "%d", dim[i]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
    return buf;
}

void apb_graph_init(apb_graph *g, apb_arena *step, int training, int record, apb_rng *rng)
{
    memset(g, 0, sizeof *g);
    g->step = step;
    g->training = training;
    g->record = record;
    g->rng = rng;
}

void apb_graph_reset(apb_graph *g)
{
    g->ntape = 0;
    apb_arena_reset(g->step);
}

void apb_graph_free(apb_graph *g)
{
    free(g->tape);
    g->tape = NULL;
    g->ntape = g->cap = 0;
    apb_free_aligned(g->work);
    g->work = NULL;
    g->work_cap = 0;
    g->work_key = 0;
}

void *apb_graph_work(apb_graph *g, size_t bytes, uint64_t key, int *same)
{
    int keep = 1;
    if (bytes > g->work_cap || !g->work) {
        void *p = apb_alloc_aligned(bytes);
        if (!p)
            return NULL;
        apb_free_aligned(g->work);
        g->work = p;
        g->work_cap = bytes;
        keep = 0;
    }
    if (same)
        *same = keep && key != 0 && key == g->work_key;
    g->work_key = key;
    return g->work;
}

void *apb_graph_alloc(apb_graph *g, size_t bytes) { return apb_arena_alloc(g->step, bytes); }

float *apb_graph_floats(apb_graph *g, int64_t n)
{
    return apb_arena_alloc(g->step, (size_t)n * sizeof(float));
}

float *apb_graph_zeros(apb_graph *g, int64_t n)
{
    return apb_arena_calloc(g->step, (size_t)n * sizeof(float));
}

static apb_var *var_new(apb_graph *g, int ndim, const int *dim)
{
    apb_var *v = apb_arena_calloc(g->step, sizeof *v);
    if (!v)
        return NULL;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        v->dim[i] = dim[i];
    v->numel = apb_dims_numel(ndim, dim);
    return v;
}

apb_var *apb_graph_input(apb_graph *g, float *data, int ndim, const int *dim)
{
    apb_var *v = var_new(g, ndim, dim);
    if (v)
        v->data = data;
    return v;
}

apb_var *apb_graph_new(apb_graph *g, int ndim, const int *dim, int zero)
{
    apb_var *v = var_new(g, ndim, dim);
    if (!v)
        return NULL;
    v->data = zero ? apb_graph_zeros(g, v->numel) : apb_graph_floats(g, v->numel);
    return v->data ? v : NULL;
}

apb_status apb_apply(apb_graph *g, const apb_op *op, apb_var *const *in, int nin,
                     const void *attr, apb_var **out)
{
    *out = NULL;
    if (nin > APB_MAX_IN)
        return apb_fail(APB_EINVAL, "%s: %d inputs (at most %d)", op->name, nin, APB_MAX_IN);
    for (int i = 0; i < nin; i++)
        if (!in[i] || !in[i]->data)
            return apb_fail(APB_EINVAL, "%s: input %d is missing", op->name, i);
    int ndim = 0, dim[APB_MAX_DIM] = {0};
    APB_TRY(op->shape(in, nin, attr, &ndim, dim));
    const void *blk0, *blk1;
    char *lo = apb_arena_top(g->step, &blk0); /* this op's run starts with its var */
    apb_var *v = var_new(g, ndim, dim);
    if (!v)
        return APB_ENOMEM;
    v->data = apb_graph_floats(g, v->numel);
    if (!v->data)
        return APB_ENOMEM;
    v->op = op;
    v->nin = nin;
    for (int i = 0; i < nin; i++) {
        v->in[i] = in[i];
        if (g->record && in[i]->requires_grad)
            v->requires_grad = 1;
    }
    if (op->attr_size && attr) {
        void *a = apb_graph_alloc(g, op->attr_size);
        if (!a)
            return APB_ENOMEM;
        memcpy(a, attr, op->attr_size);
        v->attr = a;
    }
    APB_TRY(op->forward(g, v));
    char *hi = apb_arena_top(g->step, &blk1);
    if (blk1 && blk1 == blk0) { /* no new block since the var: [lo, hi) is all this op's */
        v->fwd_lo = lo;
        v->fwd_hi = hi;
    }
    if (g->record && v->requires_grad) {
        if (g->ntape == g->cap) {
            int nc = g->cap ? 2 * g->cap : 256;
            apb_var **t = realloc(g->tape, (size_t)nc * sizeof *t);
            if (!t)
                return apb_fail(APB_ENOMEM, "autograd: out of memory growing the tape");
            g->tape = t;
            g->cap = nc;
        }
        g->tape[g->ntape++] = v;
    }
    *out = v;
    return APB_OK;
}

/* After v's backward: v's step memory (the var itself included) and its
 * gradient are dead (see apb_backward); v must not be touched afterwards. */
static void release(apb_graph *g, apb_var *v)
{
    int handed = 0; /* add hands its output's gradient to an input */
    for (int i = 0; i < v->nin; i++)
        handed |= v->in[i]->grad == v->grad;
    if (!handed)
        apb_arena_release(g->step, v->grad, sizeof(float) * (size_t)v->numel);
    if (v->fwd_lo) {
        apb_arena_release(g->step, v->fwd_lo, (size_t)(v->fwd_hi - v->fwd_lo));
    } else {
        v->grad = NULL;
        v->data = NULL;
    }
}

static apb_status run_backward(apb_graph *g, const apb_var *root)
{
    for (int t = g->ntape - 1; t >= 0; t--) {
        apb_var *v = g->tape[t];
        if (!v->grad)
            continue; /* does not reach the loss */
        int write = (v->op->flags & APB_OP_GRAD_WRITE) != 0;
        for (int i = 0; i < v->nin; i++) {
            apb_var *x = v->in[i];
            if (x->requires_grad && !x->grad) {
                size_t bytes = sizeof(float) * (size_t)x->numel;
                x->grad = apb_arena_reuse(g->step, bytes); /* (keep: nothing released, bumps) */
                if (!x->grad)
                    return APB_ENOMEM;
                if (!write)
                    memset(x->grad, 0, bytes);
                x->grad_fresh = write;
            }
        }
        v->op->backward(g, v);
        /* An op that wrote nothing into a fresh gradient (no contribution) leaves
         * it uninitialised: it is zero. */
        for (int i = 0; write && i < v->nin; i++)
            if (v->in[i]->grad_fresh) {
                memset(v->in[i]->grad, 0, sizeof(float) * (size_t)v->in[i]->numel);
                v->in[i]->grad_fresh = 0;
            }
        if (!g->keep && v != root)
            release(g, v);
    }
    return APB_OK;
}

apb_status apb_backward_from(apb_graph *g, apb_var *out, const float *dout)
{
    if (!g->record)
        return apb_fail(APB_EINVAL, "autograd: backward on a graph that did not record");
    if (!out->requires_grad)
        return apb_fail(APB_EINVAL, "autograd: output does not depend on any parameter");
    if (!out->grad) {
        out->grad = apb_graph_zeros(g, out->numel);
        if (!out->grad)
            return APB_ENOMEM;
    }
    for (int64_t i = 0; i < out->numel; i++)
        out->grad[i] += dout[i];
    return run_backward(g, out);
}

apb_status apb_backward(apb_graph *g, apb_var *loss)
{
    if (loss->numel != 1)
        return apb_fail(APB_ESHAPE, "autograd: loss must be a scalar, has %lld elements",
                        (long long)loss->numel);
    float one = 1.0f;
    return apb_backward_from(g, loss, &one);
}

apb_status apb_param_init(apb_var *p, const char *name, int ndim, const int *dim)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        p->dim[i] = dim[i];
    p->numel = apb_dims_numel(ndim, dim);
    p->requires_grad = 1;
    size_t bytes = (size_t)p->numel * sizeof(float);
    p->data = apb_alloc_aligned(bytes);
    p->grad = apb_alloc_aligned(bytes);
    if (!p->data || !p->grad) {
        apb_param_free(p);
        return apb_fail(APB_ENOMEM, "parameter %s: out of memory", name ? name : "?");
    }
    memset(p->data, 0, bytes);
    memset(p->grad, 0, bytes);
    return APB_OK;
}

void apb_param_free(apb_var *p)
{
    apb_free_aligned(p->data);
    apb_free_aligned(p->grad);
    p->data = p->grad = NULL;
}
