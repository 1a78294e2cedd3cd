/* registry.h - every differentiable op with a test-case builder.
 *
 * The generic gradient check (tests/test_gradcheck.c) walks this table, so an op
 * that is registered is checked without further work. Adding an op = one new
 * layers/op_<name>.c defining apb_op_<name> and apb_case_<case>() + one X(...)
 * line in the list in layers/registry.c. An op may have several cases (e.g. a
 * fast path); STE ops (APB_OP_STE) are registered too but skipped by the
 * finite-difference check.
 */
#ifndef APB_REGISTRY_H
#define APB_REGISTRY_H

#include "autograd.h"
#include "rng.h"

typedef struct {
    const apb_op *op;
    /* Builds random inputs in g (those to check with requires_grad = 1), writes
     * them to inputs[0..*ninputs) (at most APB_MAX_IN) and applies the op once,
     * returning its output. Draws data only from `rng`; the op itself may draw
     * from g->rng (APB_OP_RANDOM), which the check reseeds before every forward.
     * Inputs must keep the op away from kinks by more than 2e-2 (distinct values,
     * no ties, no values near relu/clamp corners). */
    apb_status (*make_case)(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                            apb_var **out);
    const char *case_name; /* "conv2d_1x1" */
} apb_op_case;

const apb_op_case *apb_op_registry(int *count);

/* Helpers for case builders. A step-arena leaf with N(0, scale^2) values. */
apb_var *apb_case_normal(apb_graph *g, apb_rng *rng, int ndim, const int *dim, float scale,
                         int requires_grad);
/* A leaf whose values are a random permutation of {(i - n/2 + 1/2) * spacing},
 * i = 0..n-1: pairwise at least `spacing` apart (no ties for max pooling) and,
 * when spacing = 1/m for an integer m, at least spacing/2 away from 0 and +-1
 * (the relu and hardtanh kinks). */
apb_var *apb_case_distinct(apb_graph *g, apb_rng *rng, int ndim, const int *dim, float spacing,
                           int requires_grad);

#endif
