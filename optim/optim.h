/* optim.h - SGD (momentum, Nesterov), Adam and AdamW over parameter groups, and
 * learning-rate schedules.
 *
 * Semantics follow PyTorch (torch.optim.SGD/Adam/AdamW, default options):
 *   SGD:   d = g + wd*p;  buf = mu*buf + d (dampening 0; buf starts at d);
 *          d = nesterov ? d + mu*buf : buf;  p -= lr*d
 *   Adam:  d = g + wd*p (coupled decay);  m = b1*m + (1-b1)*d;  v = b2*v + (1-b2)*d^2;
 *          p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 *   AdamW: p *= 1 - lr*wd (decoupled), then Adam without decay.
 * t counts the steps a parameter was actually updated (frozen steps do not count).
 *
 * Groups: every parameter belongs to one group. Group 0 exists from creation and
 * uses the optimizer's kind, lr and weight decay. A group may override the kind
 * (Adam for APB alpha/delta under an SGD model), own a constant lr, and clamp its
 * parameters from below (alpha, delta must stay positive). Which parameters get
 * weight decay is the caller's choice: put BN parameters and biases in a group
 * with weight_decay 0 (the trainer does).
 *
 * Start group settings from apb_param_group_default(): a zeroed struct means
 * lr_scale 0 (no updates) and kind_override 0 (SGD), which is rarely meant.
 *
 * Memory: state buffers (momentum, Adam moments) are allocated once when a
 * parameter is added; apb_optim_step() never allocates. Updates are elementwise,
 * so results do not depend on the thread count.
 *
 * Example:
 *     apb_optim *o;
 *     APB_TRY(apb_optim_create(APB_OPT_SGD, 0.1f, 0.9f, 0, 5e-4f, &o));
 *     apb_param_group ad = apb_param_group_default();
 *     ad.kind_override = APB_OPT_ADAM; ad.lr_override = 1e-3f; ad.min_value = 1e-6f;
 *     int gq = apb_optim_add_group(o, &ad);
 *     apb_optim_add_param(o, &conv_w, 0);  apb_optim_add_param(o, &alpha, gq);
 *     for each step: apb_optim_set_lr(o, apb_sched_lr(APB_SCHED_COSINE, 0.1f, t, T, 1, 0, 0));
 *                    forward, backward; apb_optim_step(o);
 */
#ifndef APB_OPTIM_H
#define APB_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "autograd.h"
#include "status.h"

typedef enum { APB_OPT_SGD, APB_OPT_ADAM, APB_OPT_ADAMW } apb_opt_kind;

typedef struct {
    float lr_scale;     /* multiplies the schedule's lr (ignored with lr_override) */
    float weight_decay; /* this group's decay (coupled for SGD/Adam, decoupled for AdamW) */
    int kind_override;  /* -1: optimizer's kind, else an apb_opt_kind */
    float lr_override;  /* > 0: this constant lr, unaffected by apb_optim_set_lr */
    float min_value;    /* > 0: clamp params to stay >= this after each update */
} apb_param_group;

typedef struct apb_optim apb_optim;

/* {lr_scale 1, weight_decay 0, kind_override -1, lr_override 0, min_value 0} */
apb_param_group apb_param_group_default(void);

/* momentum and nesterov apply to SGD; Adam uses beta1 0.9, beta2 0.999, eps 1e-8
 * unless apb_optim_set_betas() says otherwise. */
apb_status apb_optim_create(apb_opt_kind kind, float lr, float momentum, int nesterov,
                            float weight_decay, apb_optim **out);
void apb_optim_set_betas(apb_optim *o, float beta1, float beta2, float eps);
/* New group; returns its index, or -1 with apb_errmsg set (bad kind, no memory). */
int apb_optim_add_group(apb_optim *o, const apb_param_group *pg);
/* p is a persistent var (data and grad allocated, e.g. apb_param_init). Adding the
 * same var twice or to a group that does not exist is an error. */
apb_status apb_optim_add_param(apb_optim *o, apb_var *p, int group);
/* A frozen group is not updated (its grads are still zeroed by step). */
void apb_optim_set_frozen(apb_optim *o, int group, int frozen);
/* Base lr for the next steps (from the schedule). */
void apb_optim_set_lr(apb_optim *o, float lr);
/* The lr group `group` would use now. */
float apb_optim_group_lr(const apb_optim *o, int group);
int apb_optim_num_params(const apb_optim *o);
/* Update all non-frozen params, then zero all grads. */
void apb_optim_step(apb_optim *o);
void apb_optim_zero_grad(apb_optim *o);

/* lr at (fractional) epoch t of `total`. A linear warm-up from 0 at t = 0 to
 * base_lr at t = warmup comes first (warmup <= 0: none). Then
 *   CONST:  base_lr
 *   COSINE: base_lr * (1 + cos(pi * p)) / 2,  p = (t - warmup) / (total - warmup) in [0, 1]
 *   STEP:   base_lr * step_gamma ^ floor(t / step_every)   (t counted from 0; step_every <= 0: none)
 */
typedef enum { APB_SCHED_CONST, APB_SCHED_COSINE, APB_SCHED_STEP } apb_sched_kind;
float apb_sched_lr(apb_sched_kind k, float base_lr, double t, double total, double warmup,
                   double step_every, float step_gamma);

/* Optimizer state (per parameter: step count, momentum / Adam moments) as bytes
 * for checkpoints, in this machine's byte order. Load checks that the buffer
 * describes the same parameters (count, sizes, kinds of state) before touching
 * anything, and fails with a message naming the first mismatch. */
size_t apb_optim_state_size(const apb_optim *o);
apb_status apb_optim_state_save(const apb_optim *o, void *buf, size_t size);
apb_status apb_optim_state_load(apb_optim *o, const void *buf, size_t size);

void apb_optim_free(apb_optim *o);

#endif
