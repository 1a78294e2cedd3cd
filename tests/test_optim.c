/* test_optim.c - optimizers and schedules against independent double-precision
 * re-implementations of the PyTorch update rules, plus groups, freezing,
 * clamping, checkpoint state and a quadratic that must actually be minimised.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "optim.h"
#include "rng.h"
#include "test.h"

#define OT_N 37

/* Reference state for one parameter, in double. */
typedef struct {
    double p[OT_N], m[OT_N], v[OT_N];
    int t;
} ot_ref;

static void ref_sgd(ot_ref *r, const float *g, double lr, double mu, int nest, double wd)
{
    for (int i = 0; i < OT_N; i++) {
        double d = g[i] + wd * r->p[i];
        if (mu != 0) {
            r->m[i] = r->t == 0 ? d : mu * r->m[i] + d;
            d = nest ? d + mu * r->m[i] : r->m[i];
        }
        r->p[i] -= lr * d;
    }
    r->t++;
}

static void ref_adam(ot_ref *r, const float *g, double lr, double wd, int decoupled, double b1,
                     double b2, double eps)
{
    r->t++;
    for (int i = 0; i < OT_N; i++) {
        if (decoupled)
            r->p[i] *= 1 - lr * wd;
        double d = g[i] + (decoupled ? 0 : wd * r->p[i]);
        r->m[i] = b1 * r->m[i] + (1 - b1) * d;
        r->v[i] = b2 * r->v[i] + (1 - b2) * d * d;
        double mh = r->m[i] / (1 - pow(b1, r->t)), vh = r->v[i] / (1 - pow(b2, r->t));
        r->p[i] -= lr * mh / (sqrt(vh) + eps);
    }
}

static int ot_close(const float *got, const double *want, double rtol, double atol)
{
    float w[OT_N];
    for (int i = 0; i < OT_N; i++)
        w[i] = (float)want[i];
    return apb_test_close_f32(__FILE__, __LINE__, "param", got, w, OT_N, rtol, atol);
}

/* Runs 5 steps of one configuration against the reference. */
static int ot_run(apb_opt_kind kind, float mu, int nest, float wd)
{
    apb_rng rng;
    apb_rng_seed(&rng, 11 + kind * 7 + nest);
    apb_var p;
    if (apb_param_init(&p, "p", 1, (int[]){OT_N}) != APB_OK)
        return 1;
    ot_ref r = {0};
    for (int i = 0; i < OT_N; i++)
        r.p[i] = p.data[i] = apb_rng_normal(&rng);
    apb_optim *o;
    CHECK_OK(apb_optim_create(kind, 0.05f, mu, nest, wd, &o));
    CHECK_OK(apb_optim_add_param(o, &p, 0));
    float g[OT_N];
    for (int s = 0; s < 5; s++) {
        float lr = 0.05f * (1.0f - 0.1f * s); /* a changing schedule lr */
        apb_optim_set_lr(o, lr);
        for (int i = 0; i < OT_N; i++)
            p.grad[i] = g[i] = apb_rng_normal(&rng) + 0.5f * p.data[i];
        apb_optim_step(o);
        if (kind == APB_OPT_SGD)
            ref_sgd(&r, g, lr, mu, nest, wd);
        else
            ref_adam(&r, g, lr, wd, kind == APB_OPT_ADAMW, 0.9, 0.999, 1e-8);
        if (ot_close(p.data, r.p, 1e-5, 1e-6)) {
            fprintf(stderr, "  kind %d mu %g nesterov %d wd %g: step %d\n", kind, mu, nest, wd, s);
            return 1;
        }
        for (int i = 0; i < OT_N; i++)
            CHECK(p.grad[i] == 0.0f); /* step zeroes the grads */
    }
    apb_optim_free(o);
    apb_param_free(&p);
    return 0;
}

APB_TEST(test_optim_sgd_against_reference)
{
    CHECK(ot_run(APB_OPT_SGD, 0.0f, 0, 0.0f) == 0);
    CHECK(ot_run(APB_OPT_SGD, 0.0f, 0, 0.01f) == 0);
    CHECK(ot_run(APB_OPT_SGD, 0.9f, 0, 0.0f) == 0);
    CHECK(ot_run(APB_OPT_SGD, 0.9f, 0, 5e-4f) == 0);
    CHECK(ot_run(APB_OPT_SGD, 0.9f, 1, 5e-4f) == 0);
    /* a hand-computed case: p=1, g=1 every step, lr .1, mu .5, wd .1
     * s1: d=1.1 buf=1.1 p=0.89; s2: d=1.089 buf=1.639 p=0.7261 */
    apb_var p;
    CHECK_OK(apb_param_init(&p, "p", 1, (int[]){1}));
    p.data[0] = 1;
    apb_optim *o;
    CHECK_OK(apb_optim_create(APB_OPT_SGD, 0.1f, 0.5f, 0, 0.1f, &o));
    CHECK_OK(apb_optim_add_param(o, &p, 0));
    p.grad[0] = 1;
    apb_optim_step(o);
    CHECK_CLOSE(p.data[0], 0.89, 1e-6, 0);
    p.grad[0] = 1;
    apb_optim_step(o);
    CHECK_CLOSE(p.data[0], 0.7261, 1e-6, 0);
    apb_optim_free(o);
    /* nesterov by hand: p=1, g=1, lr .1, mu .5: s1 buf=1 d=1.5 p=.85; s2 buf=1.5 d=1.75 p=.675 */
    p.data[0] = 1;
    CHECK_OK(apb_optim_create(APB_OPT_SGD, 0.1f, 0.5f, 1, 0.0f, &o));
    CHECK_OK(apb_optim_add_param(o, &p, 0));
    p.grad[0] = 1;
    apb_optim_step(o);
    CHECK_CLOSE(p.data[0], 0.85, 1e-6, 0);
    p.grad[0] = 1;
    apb_optim_step(o);
    CHECK_CLOSE(p.data[0], 0.675, 1e-6, 0);
    apb_optim_free(o);
    apb_param_free(&p);
    return 0;
}

APB_TEST(test_optim_adam_against_reference)
{
    CHECK(ot_run(APB_OPT_ADAM, 0, 0, 0.0f) == 0);
    CHECK(ot_run(APB_OPT_ADAM, 0, 0, 0.01f) == 0);
    CHECK(ot_run(APB_OPT_ADAMW, 0, 0, 0.0f) == 0);
    CHECK(ot_run(APB_OPT_ADAMW, 0, 0, 0.1f) == 0);
    /* bias correction by hand: the first Adam step moves by lr*sign(g) (to eps) */
    apb_var p;
    CHECK_OK(apb_param_init(&p, "p", 1, (int[]){2}));
    p.data[0] = 1;
    p.data[1] = 1;
    apb_optim *o;
    CHECK_OK(apb_optim_create(APB_OPT_ADAM, 0.01f, 0, 0, 0.0f, &o));
    CHECK_OK(apb_optim_add_param(o, &p, 0));
    p.grad[0] = 123.0f;
    p.grad[1] = -1e-3f;
    apb_optim_step(o);
    CHECK_CLOSE(p.data[0], 0.99, 1e-6, 0);
    CHECK_CLOSE(p.data[1], 1.01, 1e-5, 0);
    apb_optim_free(o);
    /* AdamW with zero gradient: only the decoupled decay acts, p *= 1 - lr*wd;
     * Adam with coupled decay instead moves by lr (normalised) */
    p.data[0] = p.data[1] = 2;
    CHECK_OK(apb_optim_create(APB_OPT_ADAMW, 0.1f, 0, 0, 0.5f, &o));
    CHECK_OK(apb_optim_add_param(o, &p, 0));
    apb_optim_step(o);
    CHECK_CLOSE(p.data[0], 2 * 0.95, 1e-6, 0);
    apb_optim_free(o);
    p.data[0] = p.data[1] = 2;
    CHECK_OK(apb_optim_create(APB_OPT_ADAM, 0.1f, 0, 0, 0.5f, &o));
    CHECK_OK(apb_optim_add_param(o, &p, 0));
    apb_optim_step(o);
    CHECK_CLOSE(p.data[0], 1.9, 1e-6, 0);
    apb_optim_free(o);
    apb_param_free(&p);
    return 0;
}

APB_TEST(test_optim_groups_frozen_clamp)
{
    apb_var w, a, b;
    CHECK_OK(apb_param_init(&w, "w", 1, (int[]){4}));
    CHECK_OK(apb_param_init(&a, "alpha", 1, (int[]){1}));
    CHECK_OK(apb_param_init(&b, "bias", 1, (int[]){3}));
    apb_optim *o;
    CHECK_OK(apb_optim_create(APB_OPT_SGD, 0.1f, 0.0f, 0, 0.5f, &o));
    apb_param_group ga = apb_param_group_default();
    ga.kind_override = APB_OPT_ADAM;
    ga.lr_override = 0.01f;
    ga.min_value = 0.005f;
    int gq = apb_optim_add_group(o, &ga);
    apb_param_group gb = apb_param_group_default();
    gb.lr_scale = 2.0f; /* no decay, twice the lr */
    int gn = apb_optim_add_group(o, &gb);
    CHECK(gq == 1 && gn == 2);
    CHECK_OK(apb_optim_add_param(o, &w, 0));
    CHECK_OK(apb_optim_add_param(o, &a, gq));
    CHECK_OK(apb_optim_add_param(o, &b, gn));
    CHECK(apb_optim_add_param(o, &w, 0) == APB_EINVAL); /* twice */
    CHECK(apb_optim_add_param(o, &b, 7) == APB_EINVAL && strstr(apb_errmsg(), "group 7"));
    apb_param_group bad = apb_param_group_default();
    bad.kind_override = 9;
    CHECK(apb_optim_add_group(o, &bad) == -1);
    CHECK(apb_optim_num_params(o) == 3);

    apb_optim_set_lr(o, 0.2f);
    CHECK_CLOSE(apb_optim_group_lr(o, 0), 0.2, 1e-7, 0);
    CHECK_CLOSE(apb_optim_group_lr(o, gq), 0.01, 1e-7, 0); /* own lr ignores the schedule */
    CHECK_CLOSE(apb_optim_group_lr(o, gn), 0.4, 1e-7, 0);

    for (int i = 0; i < 4; i++)
        w.data[i] = 1, w.grad[i] = 1;
    a.data[0] = 0.012f;
    a.grad[0] = 5.0f; /* Adam moves it by ~lr = .01 -> .002, clamped to .005 */
    for (int i = 0; i < 3; i++)
        b.data[i] = 1, b.grad[i] = 1;
    apb_optim_step(o);
    CHECK_CLOSE(w.data[0], 1 - 0.2 * (1 + 0.5), 1e-6, 0);
    CHECK(a.data[0] == 0.005f);
    CHECK_CLOSE(b.data[0], 1 - 0.4, 1e-6, 0);
    CHECK(w.grad[0] == 0 && a.grad[0] == 0 && b.grad[0] == 0);

    /* freeze the alpha group and the weights: only the biases move; grads still cleared */
    apb_optim_set_frozen(o, gq, 1);
    apb_optim_set_frozen(o, 0, 1);
    float w0 = w.data[0], a0 = a.data[0];
    w.grad[0] = a.grad[0] = b.grad[0] = 1;
    apb_optim_step(o);
    CHECK(w.data[0] == w0 && a.data[0] == a0);
    CHECK_CLOSE(b.data[0], 0.6 - 0.4, 1e-6, 0);
    CHECK(w.grad[0] == 0 && a.grad[0] == 0);
    /* unfreezing resumes Adam at its second step (frozen steps do not count):
     * moments decay once more, so the move differs from a first step's lr*sign */
    apb_optim_set_frozen(o, gq, 0);
    a.data[0] = 1.0f;
    a.grad[0] = 1.0f;
    apb_optim_step(o);
    /* step 2: m = .9*.5 + .1*1 = .55, v = .999*.025 + .001 = .025975
     * mh = .55/.19, vh = .025975/.001999 */
    double mh = 0.55 / 0.19, vh = (0.999 * 0.025 + 0.001) / (1 - 0.999 * 0.999);
    CHECK_CLOSE(a.data[0], 1.0 - 0.01 * mh / (sqrt(vh) + 1e-8), 1e-5, 0);
    apb_optim_free(o);
    apb_param_free(&w);
    apb_param_free(&a);
    apb_param_free(&b);
    return 0;
}

APB_TEST(test_optim_schedules)
{
    const float b = 0.1f;
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_CONST, b, 3.7, 10, 0, 0, 0), 0.1, 1e-7, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 0, 10, 0, 0, 0), 0.1, 1e-7, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 5, 10, 0, 0, 0), 0.05, 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 2.5, 10, 0, 0, 0),
                0.05 * (1 + cos(M_PI / 4)), 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 10, 10, 0, 0, 0), 0.0, 0, 1e-9);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 12, 10, 0, 0, 0), 0.0, 0, 1e-9);
    /* warm-up: linear from 0, then cosine over the remaining epochs */
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 0, 10, 2, 0, 0), 0.0, 0, 1e-9);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 0.5, 10, 2, 0, 0), 0.025, 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 2, 10, 2, 0, 0), 0.1, 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_COSINE, b, 6, 10, 2, 0, 0), 0.05, 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_CONST, b, 1, 10, 2, 0, 0), 0.05, 1e-6, 0);
    /* step: x gamma every step_every epochs */
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_STEP, b, 0, 90, 0, 30, 0.1f), 0.1, 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_STEP, b, 29.99, 90, 0, 30, 0.1f), 0.1, 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_STEP, b, 30, 90, 0, 30, 0.1f), 0.01, 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_STEP, b, 65, 90, 0, 30, 0.1f), 0.001, 1e-6, 0);
    CHECK_CLOSE(apb_sched_lr(APB_SCHED_STEP, b, 3, 90, 5, 30, 0.1f), 0.06, 1e-6, 0);
    /* monotone non-increasing cosine after warm-up */
    float prev = 1;
    for (int i = 0; i <= 100; i++) {
        float lr = apb_sched_lr(APB_SCHED_COSINE, 1.0f, 1 + 0.09 * i, 10, 1, 0, 0);
        CHECK(lr <= prev + 1e-7f);
        prev = lr;
    }
    return 0;
}

/* Builds an SGD-momentum model group + an Adam group, runs `steps` steps with
 * deterministic gradients derived from the parameters. */
static void os_grads(apb_var *w, apb_var *a, int s)
{
    for (int i = 0; i < w->numel; i++)
        w->grad[i] = sinf(0.3f * i + s) + 0.1f * w->data[i];
    a->grad[0] = cosf((float)s) + a->data[0];
}

APB_TEST(test_optim_state_roundtrip)
{
    apb_var w1, a1, w2, a2;
    CHECK_OK(apb_param_init(&w1, "w", 1, (int[]){10}));
    CHECK_OK(apb_param_init(&a1, "alpha", 1, (int[]){1}));
    CHECK_OK(apb_param_init(&w2, "w", 1, (int[]){10}));
    CHECK_OK(apb_param_init(&a2, "alpha", 1, (int[]){1}));
    apb_optim *o1, *o2;
    apb_param_group ga = apb_param_group_default();
    ga.kind_override = APB_OPT_ADAM;
    CHECK_OK(apb_optim_create(APB_OPT_SGD, 0.05f, 0.9f, 1, 1e-3f, &o1));
    CHECK_OK(apb_optim_create(APB_OPT_SGD, 0.05f, 0.9f, 1, 1e-3f, &o2));
    CHECK(apb_optim_add_group(o1, &ga) == 1 && apb_optim_add_group(o2, &ga) == 1);
    CHECK_OK(apb_optim_add_param(o1, &w1, 0));
    CHECK_OK(apb_optim_add_param(o1, &a1, 1));
    CHECK_OK(apb_optim_add_param(o2, &w2, 0));
    CHECK_OK(apb_optim_add_param(o2, &a2, 1));
    for (int i = 0; i < 10; i++)
        w1.data[i] = 0.1f * i;
    a1.data[0] = 0.5f;
    for (int s = 0; s < 4; s++) {
        os_grads(&w1, &a1, s);
        apb_optim_step(o1);
    }
    size_t sz = apb_optim_state_size(o1);
    CHECK(sz == 16 + 2 * 24 + (10 + 2) * 4);
    unsigned char *buf = malloc(sz);
    CHECK(apb_optim_state_save(o1, buf, sz - 1) != APB_OK);
    CHECK_OK(apb_optim_state_save(o1, buf, sz));
    CHECK_OK(apb_optim_state_load(o2, buf, sz));
    memcpy(w2.data, w1.data, sizeof(float) * 10);
    a2.data[0] = a1.data[0];
    for (int s = 4; s < 8; s++) {
        os_grads(&w1, &a1, s);
        apb_optim_step(o1);
        os_grads(&w2, &a2, s);
        apb_optim_step(o2);
        CHECK(memcmp(w1.data, w2.data, sizeof(float) * 10) == 0);
        CHECK(a1.data[0] == a2.data[0]);
    }
    /* without the state the continuation differs (the test can fail) */
    apb_optim *o3;
    apb_var w3, a3;
    CHECK_OK(apb_param_init(&w3, "w", 1, (int[]){10}));
    CHECK_OK(apb_param_init(&a3, "alpha", 1, (int[]){1}));
    CHECK_OK(apb_optim_create(APB_OPT_SGD, 0.05f, 0.9f, 1, 1e-3f, &o3));
    CHECK(apb_optim_add_group(o3, &ga) == 1);
    CHECK_OK(apb_optim_add_param(o3, &w3, 0));
    CHECK_OK(apb_optim_add_param(o3, &a3, 1));
    memcpy(w3.data, w2.data, sizeof(float) * 10);
    a3.data[0] = a2.data[0];
    os_grads(&w2, &a2, 8);
    apb_optim_step(o2);
    os_grads(&w3, &a3, 8);
    apb_optim_step(o3);
    CHECK(memcmp(w2.data, w3.data, sizeof(float) * 10) != 0);

    /* wrong shapes: a different parameter size, count, kind of state, garbage */
    apb_var big;
    CHECK_OK(apb_param_init(&big, "conv1.weight", 1, (int[]){11}));
    apb_optim *o4;
    CHECK_OK(apb_optim_create(APB_OPT_SGD, 0.05f, 0.9f, 1, 1e-3f, &o4));
    CHECK(apb_optim_add_group(o4, &ga) == 1);
    CHECK_OK(apb_optim_add_param(o4, &big, 0));
    CHECK_OK(apb_optim_add_param(o4, &a3, 1));
    CHECK(apb_optim_state_load(o4, buf, sz) == APB_EFORMAT);
    CHECK_MSG(strstr(apb_errmsg(), "conv1.weight") && strstr(apb_errmsg(), "10 elements"), "%s",
              apb_errmsg());
    apb_optim_free(o4);
    CHECK_OK(apb_optim_create(APB_OPT_ADAM, 0.05f, 0, 0, 0, &o4));
    CHECK_OK(apb_optim_add_param(o4, &w3, 0));
    CHECK_OK(apb_optim_add_param(o4, &a3, 0));
    CHECK(apb_optim_state_load(o4, buf, sz) == APB_EFORMAT); /* Adam state != SGD state */
    apb_optim_free(o4);
    CHECK_OK(apb_optim_create(APB_OPT_SGD, 0.05f, 0.9f, 1, 1e-3f, &o4));
    CHECK_OK(apb_optim_add_param(o4, &w3, 0));
    CHECK(apb_optim_state_load(o4, buf, sz) == APB_EFORMAT);
    CHECK(strstr(apb_errmsg(), "2 parameters") != NULL);
    apb_optim_free(o4);
    CHECK(apb_optim_state_load(o3, buf, sz - 4) == APB_EFORMAT);
    buf[0] ^= 1;
    CHECK(apb_optim_state_load(o3, buf, sz) == APB_EFORMAT);
    CHECK(strstr(apb_errmsg(), "magic") != NULL);

    free(buf);
    apb_optim_free(o1);
    apb_optim_free(o2);
    apb_optim_free(o3);
    apb_param_free(&w1);
    apb_param_free(&a1);
    apb_param_free(&w2);
    apb_param_free(&a2);
    apb_param_free(&w3);
    apb_param_free(&a3);
    apb_param_free(&big);
    return 0;
}

/* f(p) = sum_i c_i (p_i - t_i)^2 with condition number 100. */
static double quad_grad(apb_var *p, const double *c, const double *t)
{
    double f = 0;
    for (int i = 0; i < p->numel; i++) {
        double d = p->data[i] - t[i];
        f += c[i] * d * d;
        p->grad[i] = (float)(2 * c[i] * d);
    }
    return f;
}

APB_TEST(test_optim_minimises_quadratic)
{
    const apb_opt_kind kinds[] = {APB_OPT_SGD, APB_OPT_SGD, APB_OPT_ADAM, APB_OPT_ADAMW};
    const float lrs[] = {0.004f, 0.004f, 0.05f, 0.05f};
    const int nests[] = {0, 1, 0, 0};
    double c[16], t[16];
    for (int i = 0; i < 16; i++) {
        c[i] = pow(100.0, i / 15.0);
        t[i] = sin(i + 1.0);
    }
    for (int k = 0; k < 4; k++) {
        apb_var p;
        CHECK_OK(apb_param_init(&p, "p", 1, (int[]){16}));
        apb_optim *o;
        CHECK_OK(apb_optim_create(kinds[k], lrs[k], kinds[k] == APB_OPT_SGD ? 0.9f : 0.0f,
                                  nests[k], 0.0f, &o));
        CHECK_OK(apb_optim_add_param(o, &p, 0));
        double f0 = quad_grad(&p, c, t), f = f0;
        for (int s = 0; s < 600; s++) {
            apb_optim_set_lr(o, apb_sched_lr(APB_SCHED_COSINE, lrs[k], s, 600, 10, 0, 0));
            f = quad_grad(&p, c, t);
            apb_optim_step(o);
        }
        f = quad_grad(&p, c, t);
        CHECK_MSG(f < 1e-4 * f0, "kind %d nesterov %d: f %g from %g", kinds[k], nests[k], f, f0);
        apb_optim_free(o);
        apb_param_free(&p);
    }
    return 0;
}
