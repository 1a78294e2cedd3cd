/* test_step_memory.c - the step memory of training: backward hands each op's
 * memory back as soon as it has run (core/autograd.c, apb_arena_release/reuse),
 * and convs share one work buffer (apb_graph_work).
 *
 * Recycling must change nothing but the memory: parameter gradients are bitwise
 * those of a graph that keeps everything (g.keep), with the released memory
 * filled with NaN bytes (step.poison) so a read of anything released shows, over
 * two steps on one arena (the second runs on the coalesced block), for every model
 * family with fp and with APB weights + binary activations. And it must save:
 * the step arena's peak is lower than the keeping graph's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "model.h"
#include "ops.h"
#include "test.h"
#include "threads.h"

typedef struct {
    const char *arch;
    int c, hw;
} model_case;

/* Two training steps of m on x; the second step's parameter gradients, all
 * parameters end to end, into a fresh array (*n floats); *peak = the step
 * arena's peak. */
static float *two_steps(apb_model *m, const float *x, const int *labels, int batch, int keep,
                        long *n, size_t *peak)
{
    apb_arena step;
    apb_arena_init(&step, "step", 1 << 20);
    step.poison = !keep;
    apb_rng r;
    apb_rng_seed(&r, 5);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &r);
    g.keep = keep;
    apb_param_ref p[256];
    int np = apb_model_params(m, p, 256);
    float *out = NULL;
    for (int it = 0; it < 2 && np <= 256; it++) {
        for (int i = 0; i < np; i++)
            memset(p[i].var->grad, 0, sizeof(float) * (size_t)p[i].var->numel);
        apb_var *logits, *loss;
        if (apb_model_forward(m, &g, (float *)x, batch, &logits) ||
            apb_softmax_xent(&g, logits, labels, 0.0f, &loss, NULL) || apb_backward(&g, loss)) {
            fprintf(stderr, "  %s: %s\n", m->cfg.arch, apb_errmsg());
            break;
        }
        apb_graph_reset(&g);
        if (it == 1) {
            long total = 0;
            for (int i = 0; i < np; i++)
                total += (long)p[i].var->numel;
            out = malloc(sizeof(float) * (size_t)total);
            long o = 0;
            for (int i = 0; out && i < np; i++) {
                memcpy(out + o, p[i].var->grad, sizeof(float) * (size_t)p[i].var->numel);
                o += (long)p[i].var->numel;
            }
            *n = total;
        }
    }
    *peak = step.peak;
    apb_graph_free(&g);
    apb_arena_free(&step);
    return out;
}

APB_TEST(test_backward_recycling_matches_keeping_and_saves)
{
    const model_case cases[] = {
        {"convnet", 1, 28}, {"resnet20", 3, 16}, {"vgg-small", 3, 16}, {"resnet18", 3, 32}};
    const struct {
        apb_wquant wq;
        apb_aquant aq;
    } quants[] = {{APB_WQ_FP, APB_AQ_FP}, {APB_WQ_APB, APB_AQ_BINARY}};
    int batch = 4, old = apb_threads_get();
    apb_threads_set(2);
    int bad = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0] && !bad; ci++)
        for (size_t qi = 0; qi < sizeof quants / sizeof quants[0] && !bad; qi++) {
            apb_model_cfg cfg = {0};
            snprintf(cfg.arch, sizeof cfg.arch, "%s", cases[ci].arch);
            cfg.wq = quants[qi].wq;
            cfg.aq = quants[qi].aq;
            cfg.in_c = cases[ci].c;
            cfg.in_h = cfg.in_w = cases[ci].hw;
            cfg.num_classes = 10;
            long nx = (long)batch * cfg.in_c * cfg.in_h * cfg.in_w;
            float *x = malloc(sizeof(float) * (size_t)nx);
            int labels[4] = {1, 7, 3, 9};
            apb_rng r;
            apb_rng_seed(&r, 21);
            for (long i = 0; x && i < nx; i++)
                x[i] = apb_rng_normal(&r);
            apb_model *m[2] = {NULL, NULL};
            float *gr[2] = {NULL, NULL};
            long n[2] = {0, 0};
            size_t peak[2] = {0, 0};
            for (int k = 0; k < 2 && x; k++)
                if (apb_model_build(&cfg, 3, &m[k]) == APB_OK)
                    gr[k] = two_steps(m[k], x, labels, batch, k == 0, &n[k], &peak[k]);
            char what[96];
            snprintf(what, sizeof what, "%s wq=%d aq=%d: gradients", cases[ci].arch,
                     (int)cfg.wq, (int)cfg.aq);
            if (!gr[0] || !gr[1] || n[0] != n[1]) {
                fprintf(stderr, "  %s: a run failed\n", what);
                bad = 1;
            } else {
                bad |= apb_test_close_f32(__FILE__, __LINE__, what, gr[1], gr[0], n[0], 0, 0);
                if (!(peak[1] < peak[0])) {
                    fprintf(stderr, "  %s: step peak %zu bytes recycling, %zu keeping\n",
                            cases[ci].arch, peak[1], peak[0]);
                    bad = 1;
                }
            }
            for (int k = 0; k < 2; k++) {
                free(gr[k]);
                apb_model_free(m[k]);
            }
            free(x);
        }
    apb_threads_set(old);
    CHECK(!bad);
    return 0;
}

/* The arena's released runs: neighbours merge (within a block), reuse takes the
 * smallest run that fits from its start, and a reset forgets them. */
APB_TEST(test_arena_release_merges_and_reuses)
{
    apb_arena a;
    apb_arena_init(&a, "t", 4096);
    char *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = apb_arena_alloc(&a, 256);
    CHECK(p[0] && p[1] == p[0] + 256 && p[3] == p[0] + 768);
    size_t used = a.used;
    apb_arena_release(&a, p[1], 256);
    apb_arena_release(&a, p[3], 256);
    CHECK(a.nspan == 2);
    apb_arena_release(&a, p[2], 256); /* joins both neighbours */
    CHECK(a.nspan == 1);
    char *q = apb_arena_reuse(&a, 500); /* rounds to 512, cut from the run's start */
    CHECK(q == p[1] && a.used == used);
    char *q2 = apb_arena_reuse(&a, 256);
    CHECK(q2 == p[3] && a.nspan == 0);
    char *q3 = apb_arena_reuse(&a, 64); /* nothing released: bumps */
    CHECK(q3 == p[0] + 1024 && a.used == used + 64);
    apb_arena_release(&a, q3, 64);
    apb_arena_release(&a, p[0], 256);
    char *q4 = apb_arena_reuse(&a, 64); /* smallest that fits: q3's 64, not p[0]'s 256 */
    CHECK(q4 == q3);
    apb_arena_reset(&a);
    CHECK(a.nspan == 0 && apb_arena_reuse(&a, 64) == p[0]);
    apb_arena_free(&a);
    return 0;
}
