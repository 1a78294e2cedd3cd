/* autograd.h - reverse-mode automatic differentiation over a recorded tape.
 *
 * Dimension letters used throughout apb: N batch, C channels, H height, W width,
 * M output rows / output channels, K reduction length.
 *
 * An op is a descriptor (apb_op): name, shape check, forward, backward. The
 * engine never switches on op kind: apb_apply() checks shapes, allocates the
 * output in the graph's step arena, copies the op's attributes, runs forward
 * and (when recording) appends the output to the tape. apb_backward() walks the
 * tape in reverse; each op's backward ACCUMULATES (+=) into the gradients of
 * its inputs. Input gradients are allocated (zeroed) lazily just before the op
 * that needs them runs backward; for ops flagged APB_OP_GRAD_WRITE they are
 * allocated uninitialised and the op writes its (first) contribution.
 *
 * Leaves are either graph inputs (apb_graph_input, no gradient) or parameters
 * (apb_var owned by the caller, e.g. a model, with persistent data and grad).
 *
 * Example:
 *     apb_graph g;  apb_arena step;
 *     apb_arena_init(&step, "step", 64 << 20);
 *     apb_graph_init(&g, &step, 1, 1, &rng);         // training, recording
 *     apb_var *x = apb_graph_input(&g, batch, 4, (int[]){N, C, H, W});
 *     apb_var *y; APB_TRY(apb_apply(&g, &apb_op_relu, (apb_var*[]){x}, 1, NULL, &y));
 *     ... loss ...
 *     APB_TRY(apb_backward(&g, loss));               // params' grad now += dL/dp
 *     apb_graph_reset(&g);                           // frees activations for next step
 */
#ifndef APB_AUTOGRAD_H
#define APB_AUTOGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "rng.h"
#include "status.h"

#define APB_MAX_IN 4
#define APB_MAX_DIM 4

typedef struct apb_var apb_var;
typedef struct apb_graph apb_graph;
typedef struct apb_op apb_op;

struct apb_var {
    float *data;             /* [numel] value */
    float *grad;             /* [numel] dL/d(value); NULL until needed */
    int ndim;
    int dim[APB_MAX_DIM];    /* NCHW for images, [N, F] for features, [] scalar */
    int64_t numel;
    int requires_grad;       /* gradient flows into this var */
    const apb_op *op;        /* NULL for leaves */
    apb_var *in[APB_MAX_IN];
    int nin;
    const void *attr;        /* op attributes, copied into the step arena */
    void *saved;             /* op-private state saved by forward for backward */
    const char *name;        /* parameters: "conv1.weight"; NULL otherwise */
    int grad_fresh;          /* 1: grad is allocated but uninitialised (see APB_OP_GRAD_WRITE) */
    /* step memory apb_apply took for it, [fwd_lo, fwd_hi): this struct, the value,
     * attributes and saved state, handed back once the op has run backward
     * (NULL: not one run) */
    char *fwd_lo, *fwd_hi;
};

enum {
    /* backward is a straight-through estimator, not the derivative: the generic
     * finite-difference check does not apply; a formula test covers the op. */
    APB_OP_STE = 1u << 0,
    /* output depends on randomness (dropout): gradcheck must reuse the mask */
    APB_OP_RANDOM = 1u << 1,
    /* backward honours grad_fresh: an input gradient with grad_fresh set holds
     * garbage and gets its first contribution stored (=) instead of added (+=),
     * after which the op clears the flag (apb_grad_take_fresh). The engine then
     * allocates that gradient without zeroing it, which saves a memset and a read
     * of every activation gradient. Ops without the flag always see zeroed or
     * accumulated gradients. Where the first contribution is out->grad itself
     * (add), the op may instead point the input's grad at out->grad: an output's
     * gradient is never read again once its op has run backward. */
    APB_OP_GRAD_WRITE = 1u << 2,
};

/* For APB_OP_GRAD_WRITE ops: 1 if v's gradient must be written rather than
 * accumulated, and clears the flag (so a second use of the same var, e.g. a + a,
 * accumulates). Call once per input gradient, before writing it. */
static inline int apb_grad_take_fresh(apb_var *v)
{
    int f = v->grad_fresh;
    v->grad_fresh = 0;
    return f;
}

struct apb_op {
    const char *name;
    size_t attr_size; /* bytes of the attribute struct (0: none) */
    unsigned flags;
    /* Output shape from inputs + attributes; error names op and offending shape. */
    apb_status (*shape)(apb_var *const *in, int nin, const void *attr, int *ndim,
                        int dim[APB_MAX_DIM]);
    /* Computes out->data from out->in[]; may allocate out->saved via apb_graph_alloc. */
    apb_status (*forward)(apb_graph *g, apb_var *out);
    /* Accumulates dL/d(in[i]) += f(out->grad) for each in[i] with requires_grad
     * (its grad is already allocated and may hold earlier contributions). */
    void (*backward)(apb_graph *g, apb_var *out);
};

/* Batch statistics shared by the processes of a data-parallel run (apb train
 * --sync-bn under mpirun): gather(ctx, mine, n, all) hands every process the n
 * values of every process, all[nproc * n] in process order, identical
 * everywhere. A failure cannot be returned from inside backward: the
 * implementation ends the job instead (dist.h). */
typedef struct {
    int nproc;
    void (*gather)(void *ctx, const double *mine, int n, double *all);
    void *ctx;
} apb_graph_share;

struct apb_graph {
    apb_arena *step;   /* activations, grads, saved state: reset every step */
    int training;      /* 1: batch statistics, dropout active; 0: eval mode */
    int record;        /* 1: record the tape for backward; 0: no-grad */
    apb_rng *rng;      /* randomness for ops like dropout (may be NULL in eval) */
    /* NULL (apb_graph_init): batch statistics of this process's batch alone;
     * set: batchnorm reduces them over every process (op_batchnorm.c) */
    const apb_graph_share *share;
    apb_var **tape;    /* recorded outputs in forward order (heap, reused) */
    int ntape, cap;
    /* 1: backward keeps every intermediate value and gradient until the reset
     * (0, the default: each op's step memory and its output's gradient are reused
     * as soon as the op has run backward; see apb_backward) */
    int keep;
    /* apb_graph_work's buffer (heap, grows, kept across steps) */
    void *work;
    size_t work_cap;
    uint64_t work_key; /* layout key of its last user (0: none / unknown) */
};

void apb_graph_init(apb_graph *g, apb_arena *step, int training, int record, apb_rng *rng);
/* Forget the tape and all step memory (parameters are untouched). */
void apb_graph_reset(apb_graph *g);
void apb_graph_free(apb_graph *g);

/* Step-arena allocation for ops; NULL with apb_errmsg set on failure. */
void *apb_graph_alloc(apb_graph *g, size_t bytes);
float *apb_graph_floats(apb_graph *g, int64_t n);
float *apb_graph_zeros(apb_graph *g, int64_t n);
/* Scratch shared by every op of the graph, valid only during one forward or one
 * backward call (the next op's call may overwrite it), 64-byte aligned, kept
 * across steps. Ops whose scratch is needed in forward and again in backward (a
 * conv's padded planes, column buffers) take it here instead of the step arena,
 * so a model needs the largest layer's scratch, not the sum over its layers.
 * key describes the caller's layout (0: none): *same is set to 1 when the last
 * caller passed the same key and the buffer was not reallocated since, i.e. the
 * contents are as that call left them (a conv skips re-zeroing the borders of
 * its padded planes), else 0. A call for at most the bytes of an earlier call
 * never allocates and cannot fail (an op's backward asks for what its forward
 * did). NULL with apb_errmsg set when out of memory. */
void *apb_graph_work(apb_graph *g, size_t bytes, uint64_t key, int *same);

/* Leaf wrapping caller memory (not copied, no gradient). */
apb_var *apb_graph_input(apb_graph *g, float *data, int ndim, const int *dim);
/* Leaf with fresh step memory (e.g. an all-zero constant). */
apb_var *apb_graph_new(apb_graph *g, int ndim, const int *dim, int zero);

apb_status apb_apply(apb_graph *g, const apb_op *op, apb_var *const *in, int nin,
                     const void *attr, apb_var **out);

/* Seeds dL/dloss = 1 for a scalar (numel 1) loss and runs the tape backwards.
 * Unless g->keep is set, backward frees as it goes: once an op has run backward
 * nothing reads its output again (every consumer ran before it), so the memory its
 * forward took (output value, attributes, saved state) and its output's gradient
 * go back to the step arena and hold the gradients of earlier layers. After
 * backward only the loss (the var backward started from), leaves (inputs,
 * parameters) and vars that did not reach the loss are still valid; the other
 * op outputs are gone (their apb_var structs included). A caller that needs an
 * intermediate value reads it before backward, or sets keep. Peak step memory becomes about the forward's
 * instead of forward + every gradient (docs/TRAINING_SPEED.md). */
apb_status apb_backward(apb_graph *g, apb_var *loss);
/* Same with a caller-supplied upstream gradient for `out` (used by gradcheck). */
apb_status apb_backward_from(apb_graph *g, apb_var *out, const float *dout);

/* Parameter helpers: a persistent leaf with data + grad (both zeroed), heap owned. */
apb_status apb_param_init(apb_var *p, const char *name, int ndim, const int *dim);
void apb_param_free(apb_var *p);

/* Whether a and b have the same shape. */
int apb_dims_equal(const apb_var *a, const apb_var *b);

/* Shape function for ops whose output has the shape of input 0 (elementwise ops). */
apb_status apb_shape_same(apb_var *const *in, int nin, const void *attr, int *ndim,
                          int dim[APB_MAX_DIM]);

int64_t apb_dims_numel(int ndim, const int *dim);
/* "[2,3,4]" into buf, for error messages. */
const char *apb_dims_str(int ndim, const int *dim, char *buf, size_t n);

#endif
