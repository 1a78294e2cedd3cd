/* test_gradcheck.c - the generic finite-difference gradient check.
 *
 * One harness walks the op registry (layers/registry.c): every op without the
 * APB_OP_STE flag is checked against central differences of the scalar
 * L = sum(out * dout) for a random upstream gradient dout, computed in double on
 * up to GC_COORDS coordinates per input. Input gradients are pre-filled with
 * random values before backward, so an op that overwrites instead of
 * accumulating fails too. The harness is itself tested on deliberately broken
 * ops, and a registry test catches ops that are declared in a layers/ header
 * but not registered. The 8-bit activation quantizer (STE) is checked by central
 * differences of its straight-through surrogate instead, on its registered cases.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "ops.h"
#include "quant.h"
#include "registry.h"
#include "test.h"

#define GC_COORDS 40
#define GC_STEP 1e-2f
#define GC_RTOL 1e-2
#define GC_ATOL 1e-3

static double gc_loss(apb_graph *g, const apb_op_case *c, apb_var *out, const float *dout,
                      uint64_t opseed, apb_status *st)
{
    apb_rng_seed(g->rng, opseed); /* APB_OP_RANDOM ops redraw the same mask */
    *st = c->op->forward(g, out);
    double L = 0;
    for (int64_t k = 0; k < out->numel; k++)
        L += (double)out->data[k] * dout[k];
    return L;
}

/* Returns 0 when analytic and numeric gradients agree; otherwise 1 with msg set. */
static int gradcheck_case(const apb_op_case *c, uint64_t seed, char *msg, size_t msglen)
{
    apb_arena step;
    apb_arena_init(&step, "gradcheck", 1 << 20);
    apb_rng rng, oprng;
    apb_rng_seed(&rng, seed);
    uint64_t opseed = apb_hash3(seed, 1, 2);
    apb_rng_seed(&oprng, opseed);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &oprng);
    apb_var *in[APB_MAX_IN] = {0}, *out = NULL;
    int nin = 0, fail = 0, checked = 0;
    double maxnum = 0;
    char ds[64];
    msg[0] = 0;

    apb_status st = c->make_case(&g, &rng, in, &nin, &out);
    if (st != APB_OK || !out) {
        snprintf(msg, msglen, "make_case failed: %s", apb_errmsg());
        fail = 1;
        goto done;
    }
    if (out->op != c->op) {
        snprintf(msg, msglen, "case output was not produced by op %s", c->op->name);
        fail = 1;
        goto done;
    }
    float *dout = apb_graph_floats(&g, out->numel); /* [out numel] upstream gradient */
    for (int64_t k = 0; k < out->numel; k++)
        dout[k] = apb_rng_normal(&rng) + 0.1f;
    /* pre-filled input gradients: backward must add to them */
    float *g0[APB_MAX_IN] = {0};
    for (int i = 0; i < nin; i++) {
        if (!in[i]->requires_grad || in[i]->grad)
            continue;
        in[i]->grad = apb_graph_floats(&g, in[i]->numel);
        g0[i] = apb_graph_floats(&g, in[i]->numel);
        for (int64_t k = 0; k < in[i]->numel; k++)
            g0[i][k] = in[i]->grad[k] = apb_rng_normal(&rng);
    }
    if (apb_backward_from(&g, out, dout) != APB_OK) {
        snprintf(msg, msglen, "backward failed: %s", apb_errmsg());
        fail = 1;
        goto done;
    }
    for (int i = 0; i < nin && !fail; i++) {
        apb_var *x = in[i];
        if (!x->requires_grad || !g0[i])
            continue;
        int64_t n = x->numel, ncoord = n < GC_COORDS ? n : GC_COORDS;
        for (int64_t t = 0; t < ncoord && !fail; t++) {
            int64_t j = n <= GC_COORDS ? t : (int64_t)apb_rng_below(&rng, (uint32_t)n);
            double ana = (double)x->grad[j] - g0[i][j];
            float orig = x->data[j], xp = orig + GC_STEP, xm = orig - GC_STEP;
            apb_status s1, s2;
            x->data[j] = xp;
            double Lp = gc_loss(&g, c, out, dout, opseed, &s1);
            x->data[j] = xm;
            double Lm = gc_loss(&g, c, out, dout, opseed, &s2);
            x->data[j] = orig;
            if (s1 != APB_OK || s2 != APB_OK) {
                snprintf(msg, msglen, "forward failed: %s", apb_errmsg());
                fail = 1;
                break;
            }
            double num = (Lp - Lm) / ((double)xp - (double)xm);
            double tol = GC_ATOL + GC_RTOL * fmax(fabs(ana), fabs(num));
            maxnum = fmax(maxnum, fabs(num));
            checked++;
            if (!(fabs(ana - num) <= tol)) {
                snprintf(msg, msglen, "input %d %s element %lld: analytic %.6g vs numeric %.6g",
                         i, apb_dims_str(x->ndim, x->dim, ds, sizeof ds), (long long)j, ana, num);
                fail = 1;
            }
        }
    }
    if (!fail && (checked == 0 || maxnum < 1e-3)) {
        snprintf(msg, msglen, "vacuous check: %d coordinates, largest numeric gradient %.3g",
                 checked, maxnum);
        fail = 1;
    }
done:
    apb_graph_free(&g);
    apb_arena_free(&step);
    return fail;
}

APB_TEST(test_gradcheck_all_registered_ops)
{
    int count = 0, failures = 0, checked = 0;
    const apb_op_case *reg = apb_op_registry(&count);
    char msg[512];
    for (int r = 0; r < count; r++) {
        if (reg[r].op->flags & APB_OP_STE)
            continue;
        for (uint64_t seed = 1; seed <= 2; seed++) { /* two independent draws per case */
            if (gradcheck_case(&reg[r], seed * 1000 + (uint64_t)r, msg, sizeof msg)) {
                fprintf(stderr, "  gradcheck %s (case %s, seed %llu): %s\n", reg[r].op->name,
                        reg[r].case_name, (unsigned long long)seed, msg);
                failures++;
            }
        }
        checked++;
    }
    CHECK_MSG(failures == 0, "%d gradient check(s) failed", failures);
    CHECK(checked >= 12);
    return 0;
}

/* ---- the harness must catch wrong backward passes ---- */

static apb_status scale_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                              int dim[APB_MAX_DIM])
{
    *ndim = in[0]->ndim;
    memcpy(dim, in[0]->dim, sizeof(int) * (size_t)in[0]->ndim);
    return APB_OK;
}

static apb_status scale_forward(apb_graph *g, apb_var *out)
{
    for (int64_t i = 0; i < out->numel; i++)
        out->data[i] = 2.0f * out->in[0]->data[i] + out->in[0]->data[i] * out->in[0]->data[i];
    return APB_OK;
}

static void scale_backward_good(apb_graph *g, apb_var *out)
{
    for (int64_t i = 0; i < out->numel; i++)
        out->in[0]->grad[i] += (2.0f + 2.0f * out->in[0]->data[i]) * out->grad[i];
}

static void scale_backward_wrong(apb_graph *g, apb_var *out) /* forgets the square term */
{
    for (int64_t i = 0; i < out->numel; i++)
        out->in[0]->grad[i] += 2.0f * out->grad[i];
}

static void scale_backward_overwrites(apb_graph *g, apb_var *out) /* = instead of += */
{
    for (int64_t i = 0; i < out->numel; i++)
        out->in[0]->grad[i] = (2.0f + 2.0f * out->in[0]->data[i]) * out->grad[i];
}

static void scale_backward_one_wrong(apb_graph *g, apb_var *out) /* one bad element of many */
{
    scale_backward_good(g, out);
    out->in[0]->grad[out->numel - 1] += 0.05f;
}

static const apb_op op_good = {"test_good", 0, 0, scale_shape, scale_forward, scale_backward_good};
static const apb_op op_wrong = {"test_wrong", 0, 0, scale_shape, scale_forward,
                                scale_backward_wrong};
static const apb_op op_overwrites = {"test_overwrites", 0, 0, scale_shape, scale_forward,
                                     scale_backward_overwrites};
static const apb_op op_one_wrong = {"test_one_wrong", 0, 0, scale_shape, scale_forward,
                                    scale_backward_one_wrong};

static const apb_op *case_op;
static apb_status case_test(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                            apb_var **out)
{
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){3, 5}, 1.0f, 1); /* 15 <= GC_COORDS: all */
    *ninputs = 1;
    return apb_apply(g, case_op, inputs, 1, NULL, out);
}

APB_TEST(test_gradcheck_catches_broken_backward)
{
    char msg[512];
    apb_op_case c = {NULL, case_test, "test"};
    c.op = case_op = &op_good;
    CHECK_MSG(gradcheck_case(&c, 7, msg, sizeof msg) == 0, "correct op rejected: %s", msg);
    c.op = case_op = &op_wrong;
    CHECK_MSG(gradcheck_case(&c, 7, msg, sizeof msg) == 1, "wrong derivative accepted");
    CHECK(strstr(msg, "analytic") != NULL);
    c.op = case_op = &op_overwrites;
    CHECK_MSG(gradcheck_case(&c, 7, msg, sizeof msg) == 1, "non-accumulating backward accepted");
    c.op = case_op = &op_one_wrong;
    CHECK_MSG(gradcheck_case(&c, 7, msg, sizeof msg) == 1, "a single wrong element accepted");
    /* a case that applies a different op than it claims is rejected */
    c.op = &op_wrong;
    case_op = &op_good;
    CHECK(gradcheck_case(&c, 7, msg, sizeof msg) == 1);
    return 0;
}

/* ---- registry completeness ---- */

static int registered(const apb_op_case *reg, int count, const char *name)
{
    for (int r = 0; r < count; r++)
        if (strcmp(reg[r].op->name, name) == 0)
            return 1;
    return 0;
}

APB_TEST(test_registry_complete)
{
    int count = 0;
    const apb_op_case *reg = apb_op_registry(&count);
    CHECK(count > 0);
    for (int r = 0; r < count; r++) {
        const apb_op *op = reg[r].op;
        CHECK_MSG(op && op->name && op->name[0], "registry entry %d has no op/name", r);
        CHECK_MSG(op->shape && op->forward && op->backward, "op %s lacks shape/forward/backward",
                  op->name);
        CHECK_MSG(reg[r].make_case && reg[r].case_name, "op %s has no case builder", op->name);
        /* every case (STE ops included) builds and applies its op */
        apb_arena step;
        apb_arena_init(&step, "registry", 1 << 16);
        apb_rng rng, oprng;
        apb_rng_seed(&rng, 5);
        apb_rng_seed(&oprng, 6);
        apb_graph g;
        apb_graph_init(&g, &step, 1, 1, &oprng);
        apb_var *in[APB_MAX_IN] = {0}, *out = NULL;
        int nin = 0;
        apb_status st = reg[r].make_case(&g, &rng, in, &nin, &out);
        int ok = st == APB_OK && out && out->op == op && nin >= 1 && nin <= APB_MAX_IN;
        apb_graph_free(&g);
        apb_arena_free(&step);
        CHECK_MSG(ok, "case %s of op %s does not build: %s", reg[r].case_name, op->name,
                  apb_errmsg());
    }
    /* every op declared in a layers/ header ("extern const apb_op apb_op_<name>;")
     * must be registered; op names equal their symbol suffix by convention */
    DIR *d = opendir("layers");
    CHECK_MSG(d != NULL, "cannot open layers/ (run the tests from the repository root)");
    int declared = 0, missing = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 3 || strcmp(e->d_name + len - 2, ".h") != 0)
            continue;
        char path[512], line[512];
        snprintf(path, sizeof path, "layers/%s", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            const char *key = "extern const apb_op apb_op_";
            char *p = strstr(line, key), name[128];
            if (!p || sscanf(p + strlen(key), "%127[A-Za-z0-9_]", name) != 1)
                continue;
            declared++;
            if (!registered(reg, count, name)) {
                fprintf(stderr, "  %s declares apb_op_%s, which has no registry entry\n", path,
                        name);
                missing++;
            }
        }
        fclose(f);
    }
    closedir(d);
    CHECK_MSG(declared >= 12, "only %d ops found in layers/*.h", declared);
    CHECK_MSG(missing == 0, "%d declared op(s) missing from layers/registry.c", missing);
    return 0;
}

/* Runs case c with seed, backward from a fixed dout; input gradients either left to
 * the engine (fresh: GRAD_WRITE ops store into uninitialised memory, here poisoned
 * with NaN) or pre-zeroed (every op accumulates). Copies the input gradients into
 * grads[i] (malloc'd, NULL for inputs without gradient). */
static int fresh_run(const apb_op_case *c, uint64_t seed, int fresh, float *grads[APB_MAX_IN],
                     int64_t sizes[APB_MAX_IN])
{
    apb_arena step;
    apb_arena_init(&step, "fresh", 1 << 20);
    float *poison = apb_arena_alloc(&step, (1 << 20) - 4096);
    if (!poison)
        return 1;
    for (size_t i = 0; i < ((1 << 20) - 4096) / sizeof(float); i++)
        poison[i] = NAN;
    apb_arena_reset(&step);
    apb_rng rng, oprng;
    apb_rng_seed(&rng, seed);
    apb_rng_seed(&oprng, apb_hash3(seed, 1, 2));
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &oprng);
    apb_var *in[APB_MAX_IN] = {0}, *out = NULL;
    int nin = 0, bad = 0;
    if (c->make_case(&g, &rng, in, &nin, &out) != APB_OK || !out)
        bad = 1;
    float *dout = bad ? NULL : apb_graph_floats(&g, out->numel);
    for (int64_t k = 0; !bad && k < out->numel; k++)
        dout[k] = apb_rng_normal(&rng) + 0.1f;
    for (int i = 0; !bad && !fresh && i < nin; i++)
        if (in[i]->requires_grad && !in[i]->grad) {
            in[i]->grad = apb_graph_floats(&g, in[i]->numel);
            memset(in[i]->grad, 0, sizeof(float) * (size_t)in[i]->numel);
        }
    if (!bad && apb_backward_from(&g, out, dout) != APB_OK)
        bad = 1;
    for (int i = 0; i < APB_MAX_IN; i++) {
        grads[i] = NULL;
        sizes[i] = 0;
        if (bad || i >= nin || !in[i]->requires_grad)
            continue;
        sizes[i] = in[i]->numel;
        grads[i] = malloc(sizeof(float) * (size_t)sizes[i]);
        memcpy(grads[i], in[i]->grad, sizeof(float) * (size_t)sizes[i]);
    }
    apb_graph_free(&g);
    apb_arena_free(&step);
    return bad;
}

/* APB_OP_GRAD_WRITE: ops that store their first contribution into an uninitialised
 * gradient must give what accumulating into zeros gives, for every registered case
 * (including a + a, where the second contribution must accumulate). */
APB_TEST(test_grad_write_fresh_matches_accumulate)
{
    int n = 0, writers = 0;
    const apb_op_case *reg = apb_op_registry(&n);
    for (int r = 0; r < n; r++) {
        float *ga[APB_MAX_IN], *gb[APB_MAX_IN];
        int64_t sa[APB_MAX_IN], sb[APB_MAX_IN];
        uint64_t seed = 500 + (uint64_t)r;
        writers += (reg[r].op->flags & APB_OP_GRAD_WRITE) != 0;
        const char *name = reg[r].case_name;
        CHECK_MSG(fresh_run(&reg[r], seed, 1, ga, sa) == 0, "%s: fresh run failed", name);
        CHECK_MSG(fresh_run(&reg[r], seed, 0, gb, sb) == 0, "%s: zeroed run failed", name);
        for (int i = 0; i < APB_MAX_IN; i++) {
            CHECK(sa[i] == sb[i]);
            if (ga[i] &&
                apb_test_close_f32(__FILE__, __LINE__, name, ga[i], gb[i], (long)sa[i], 0, 0)) {
                fprintf(stderr, "  case %s input %d: fresh gradient differs\n", name, i);
                return 1;
            }
            free(ga[i]);
            free(gb[i]);
        }
    }
    CHECK_MSG(writers >= 4, "only %d registered cases use APB_OP_GRAD_WRITE", writers);
    return 0;
}

/* One var feeding several GRAD_WRITE ops: the first (in backward order) writes, the
 * others accumulate. s = relu(x) + x; t = s + s: dL/dx = 2 dout (relu'(x) + 1). */
APB_TEST(test_grad_write_shared_input)
{
    apb_arena step;
    apb_arena_init(&step, "shared", 1 << 16);
    float *poison = apb_arena_alloc(&step, 60000);
    CHECK(poison);
    for (int i = 0; i < 15000; i++)
        poison[i] = NAN;
    apb_arena_reset(&step);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, NULL);
    g.keep = 1; /* the flags of r and s are read after backward */
    enum { N = 37 };
    float xv[N], dout[N];
    for (int i = 0; i < N; i++) {
        xv[i] = (float)(i - 18) / 7.0f + 0.05f;
        dout[i] = (float)((i * 7) % 11) - 5.0f;
    }
    apb_var *x = apb_graph_input(&g, xv, 1, (int[]){N}), *r, *s, *t;
    CHECK(x);
    x->requires_grad = 1;
    CHECK_OK(apb_relu(&g, x, &r));
    CHECK_OK(apb_add(&g, r, x, &s));
    CHECK_OK(apb_add(&g, s, s, &t));
    CHECK_OK(apb_backward_from(&g, t, dout));
    float want[N];
    for (int i = 0; i < N; i++)
        want[i] = 2.0f * dout[i] * ((xv[i] > 0.0f ? 1.0f : 0.0f) + 1.0f);
    CHECK_ARRAY_CLOSE(x->grad, want, N, 0, 0);
    CHECK(!x->grad_fresh && !s->grad_fresh && !r->grad_fresh);
    apb_graph_free(&g);
    apb_arena_free(&step);
    return 0;
}

/* ---- STE ops: central differences of the straight-through surrogate ----
 *
 * act_int8's backward is the exact gradient of the surrogate in which the
 * rounding residual rho = code - x/s is held at its value at the base point and
 * the step's gradient is scaled by g = 1/sqrt(numel * hi) (LSQ):
 *   f(x, s) = x + s * rho      where lo <= x/s <= hi
 *           = s * code         elsewhere (code = lo or hi)
 * with s entering as s*g + (s - s*g) held constant. For every registered case
 * of the op, L = sum(f * dout) is differentiated numerically in every x and in
 * s and compared with the op's backward. */
static double i8_surrogate(const float *x0, const float *x, int64_t n, float s0, double s,
                           int sg, const float *dout)
{
    double lo = sg ? -128 : 0, hi = sg ? 127 : 255, L = 0;
    float r0 = 1.0f / s0;
    for (int64_t i = 0; i < n; i++) {
        double t0 = (double)(x0[i] * r0), code = apb_i8_code(x0[i], r0, sg);
        double f = t0 >= lo && t0 <= hi ? (double)x[i] + s * (code - t0) : s * code;
        L += f * dout[i];
    }
    return L;
}

APB_TEST(test_gradcheck_act_int8_surrogate)
{
    int count = 0, cases = 0;
    const apb_op_case *reg = apb_op_registry(&count);
    for (int r = 0; r < count; r++) {
        if (reg[r].op != &apb_op_act_int8)
            continue;
        cases++;
        apb_arena step;
        apb_arena_init(&step, "ste", 1 << 20);
        apb_rng rng;
        apb_rng_seed(&rng, 77 + (uint64_t)r);
        apb_graph g;
        apb_graph_init(&g, &step, 1, 1, &rng);
        apb_var *in[APB_MAX_IN] = {0}, *out = NULL;
        int nin = 0;
        CHECK_OK(reg[r].make_case(&g, &rng, in, &nin, &out));
        int sg = *(const int *)out->attr;
        int64_t n = in[0]->numel;
        float *dout = apb_graph_floats(&g, n), *x0 = apb_graph_floats(&g, n);
        for (int64_t k = 0; k < n; k++)
            dout[k] = apb_rng_normal(&rng) + 0.1f;
        memcpy(x0, in[0]->data, sizeof(float) * (size_t)n);
        CHECK_OK(apb_backward_from(&g, out, dout));
        float s0 = in[1]->data[0];
        double gs = 1.0 / sqrt((double)n * (sg ? 127 : 255)), h = 1e-3;
        /* x: the surrogate is linear in x, so any step is exact up to rounding */
        float *xp = apb_graph_floats(&g, n);
        int clamped = 0;
        for (int64_t j = 0; j < n; j++) {
            memcpy(xp, x0, sizeof(float) * (size_t)n);
            xp[j] = x0[j] + (float)h;
            double Lp = i8_surrogate(x0, xp, n, s0, s0, sg, dout);
            xp[j] = x0[j] - (float)h;
            double Lm = i8_surrogate(x0, xp, n, s0, s0, sg, dout);
            double num = (Lp - Lm) / (2 * h);
            clamped += num == 0.0;
            CHECK_MSG(fabs(in[0]->grad[j] - num) <= 1e-3 + 1e-3 * fabs(num),
                      "%s x[%lld]: analytic %.6g numeric %.6g", reg[r].case_name, (long long)j,
                      in[0]->grad[j], num);
        }
        CHECK_MSG(clamped > 0 && clamped < n, "%s: %d of %lld inputs clamped (case covers both sides?)",
                  reg[r].case_name, clamped, (long long)n);
        double num = (i8_surrogate(x0, x0, n, s0, s0 + h, sg, dout) -
                      i8_surrogate(x0, x0, n, s0, s0 - h, sg, dout)) / (2 * h) * gs;
        CHECK_MSG(fabs(in[1]->grad[0] - num) <= 1e-3 + 1e-3 * fabs(num),
                  "%s step: analytic %.6g numeric %.6g", reg[r].case_name, in[1]->grad[0], num);
        apb_graph_free(&g);
        apb_arena_free(&step);
    }
    CHECK(cases >= 2);
    return 0;
}
