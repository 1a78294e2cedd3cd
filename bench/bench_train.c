/* bench_train.c - `apb bench train`: training throughput (images per second) of
 * the built-in models, with no data loading in the way.
 *
 * One step is exactly what the trainer does per batch (train/trainer.c): forward,
 * softmax cross-entropy, backward, optimizer update of every parameter (SGD with
 * momentum 0.9 and weight decay 5e-4 on weights, no decay on BN/bias, Adam for
 * quantizer parameters) and a graph reset. Inputs are random normal images and
 * random labels generated once in memory. After warm-up steps (which also grow the
 * step arena to its steady size) each timed step is measured separately and the
 * median is reported, with the process CPU time per step (all threads) beside it:
 * on a shared machine images_per_s moves with the load, CPU time much less.
 *   apb bench train [--model NAME] [--threads T] [--batch B] [--steps S]
 *                   [--warmup W] [--quant Q] [--act A]
 * Without --model it runs convnet (1x28x28), resnet20 and vgg-small (3x32x32),
 * all with 10 classes; resnet18 (3x224x224, 1000 classes) runs only when named.
 * Without --threads it runs 1 and 2 threads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "options.h"
#include "cpu.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "threads.h"

typedef struct {
    const char *name;
    int c, h, w, classes;
    int steps;      /* default timed steps: few for the slow models */
    int named_only; /* run only when --model names it (too slow for the default set) */
} bench_model_info;

static const bench_model_info MODELS[] = {
    {"convnet", 1, 28, 28, 10, 10, 0},
    {"resnet20", 3, 32, 32, 10, 5, 0},
    {"vgg-small", 3, 32, 32, 10, 3, 0},
    /* ImageNet geometry: the compute behind docs/DISTRIBUTED.md's projection */
    {"resnet18", 3, 224, 224, 1000, 2, 1},
};

/* SGD param groups as the trainer sets them up (train/trainer.c setup_optim). */
static apb_status make_optim(apb_model *m, apb_optim **out)
{
    apb_optim *o;
    APB_TRY(apb_optim_create(APB_OPT_SGD, 0.05f, 0.9f, 0, 5e-4f, &o));
    apb_param_group nd = apb_param_group_default();
    nd.weight_decay = 0;
    apb_param_group q = apb_param_group_default();
    q.kind_override = APB_OPT_ADAM;
    q.lr_override = 1e-4f;
    q.min_value = 1e-6f;
    int gnd = apb_optim_add_group(o, &nd), gq = apb_optim_add_group(o, &q);
    apb_status s = (gnd < 0 || gq < 0) ? APB_ENOMEM : APB_OK;
    apb_param_ref refs[1024];
    int np = apb_model_params(m, refs, 1024);
    if (!s && np > 1024)
        s = apb_fail(APB_EINVAL, "bench train: model has %d parameters (max 1024)", np);
    for (int i = 0; !s && i < np; i++) {
        int grp = refs[i].role == APB_P_WEIGHT ? 0 : refs[i].role == APB_P_NODECAY ? gnd : gq;
        s = apb_optim_add_param(o, refs[i].var, grp);
    }
    if (s) {
        apb_optim_free(o);
        return s;
    }
    *out = o;
    return APB_OK;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Median images/s over `steps` timed steps after `warmup` untimed ones. */
static apb_status run_case(const bench_model_info *mi, apb_wquant wq, float sparsity,
                           apb_aquant aq, int batch, int threads, int steps, int warmup,
                           double *ips, double *cpu_ms, double *loss_out)
{
    apb_model_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.arch, sizeof cfg.arch, "%s", mi->name);
    cfg.wq = wq;
    cfg.aq = aq;
    cfg.prune_sparsity = sparsity;
    cfg.in_c = mi->c;
    cfg.in_h = mi->h;
    cfg.in_w = mi->w;
    cfg.num_classes = mi->classes;
    apb_threads_set(threads);

    apb_model *m = NULL;
    apb_optim *opt = NULL;
    apb_arena step;
    apb_arena_init(&step, "step", 64 << 20);
    apb_rng rng;
    apb_rng_seed(&rng, 7);
    apb_graph g;
    apb_graph_init(&g, &step, 1, 1, &rng);
    size_t nx = (size_t)batch * mi->c * mi->h * mi->w;
    float *x = apb_alloc_aligned(sizeof(float) * nx);
    int *y = malloc(sizeof(int) * (size_t)batch);
    double *t = malloc(sizeof(double) * 2 * (size_t)steps), *tc = t + steps;
    apb_status s = APB_OK;
    if (!x || !y || !t) {
        s = apb_fail(APB_ENOMEM, "bench train: out of memory for batch %d", batch);
        goto done;
    }
    for (size_t i = 0; i < nx; i++)
        x[i] = apb_rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        y[i] = (int)apb_rng_below(&rng, 10);
    if ((s = apb_model_build(&cfg, 1, &m)) || (s = make_optim(m, &opt)))
        goto done;
    for (int it = -warmup; it < steps; it++) {
        double t0 = apb_now(), c0 = cpu_now();
        apb_var *logits, *loss;
        if ((s = apb_model_forward(m, &g, x, batch, &logits)))
            goto done;
        s = apb_softmax_xent(&g, logits, y, 0.0f, &loss, NULL);
        if (s && s != APB_ENUMERIC)
            goto done;
        if ((s = apb_backward(&g, loss)))
            goto done;
        apb_optim_step(opt);
        *loss_out = loss->data[0];
        apb_graph_reset(&g);
        if (it >= 0) {
            t[it] = apb_now() - t0;
            tc[it] = cpu_now() - c0;
        }
    }
    *ips = batch / apb_median(t, steps);
    *cpu_ms = 1000.0 * apb_median(tc, steps);
done:
    apb_graph_free(&g);
    apb_arena_free(&step);
    if (opt)
        apb_optim_free(opt);
    apb_model_free(m);
    apb_free_aligned(x);
    free(y);
    free(t);
    return s;
}

void apb_bench_train_usage(FILE *f)
{
    fprintf(f, "usage: apb bench train [--model convnet|resnet20|vgg-small|resnet18] [--threads T] [--batch B]\n"
               "                       [--steps S] [--warmup W] [--quant Q] [--act A]\n"
               "  training images/s (forward, loss, backward, optimizer step) on random data\n"
               "  --model NAME  one model (default: convnet 1x28x28, resnet20 and vgg-small 3x32x32;\n"
               "                resnet18, 3x224x224 and 1000 classes, only when named)\n"
               "  --threads T   thread count (default: 1 and 2, both measured)\n"
               "  --batch B     batch size (default 128)\n"
               "  --steps S     timed steps, median reported (default: 10 convnet, 5 resnet20,\n"
               "                3 vgg-small, 2 resnet18)\n"
               "  --warmup W    untimed steps first (default 2)\n"
               "  --quant Q     weights fp|apb|binary|q2|prune:S (default fp)\n"
               "  --act A       activations fp|binary|q2 (default fp)\n");
}

int apb_bench_train(int argc, char **argv)
{
    int threads = 0, batch = 128, steps = 0, warmup = 2, bad = 0;
    const char *model = NULL, *quant = "fp", *act = "fp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            apb_bench_train_usage(stdout);
            return 0;
        }
        if (apb_opt_str(argc, argv, &i, "--model", &model, &bad) ||
            apb_opt_int(argc, argv, &i, "--threads", &threads, &bad) ||
            apb_opt_int(argc, argv, &i, "--batch", &batch, &bad) ||
            apb_opt_int(argc, argv, &i, "--steps", &steps, &bad) ||
            apb_opt_int(argc, argv, &i, "--warmup", &warmup, &bad) ||
            apb_opt_str(argc, argv, &i, "--quant", &quant, &bad) ||
            apb_opt_str(argc, argv, &i, "--act", &act, &bad)) {
            if (bad)
                return 1;
            continue;
        }
        fprintf(stderr, "apb bench train: unknown option '%s'\n", argv[i]);
        apb_bench_train_usage(stderr);
        return 1;
    }
    if (batch < 1 || steps < 0 || warmup < 0) {
        fprintf(stderr, "apb bench train: --batch and --steps must be >= 1, --warmup >= 0\n");
        return 1;
    }
    apb_wquant wq;
    apb_aquant aq;
    float sparsity = 0;
    apb_status s = apb_wquant_parse(quant, &wq, &sparsity);
    if (!s)
        s = apb_aquant_parse(act, &aq);
    if (s)
        return apb_cli_error("bench train", s);
    int nm = (int)(sizeof MODELS / sizeof MODELS[0]), found = 0;
    int tlist[2] = {1, 2}, nt = 2;
    if (threads > 0)
        tlist[0] = threads, nt = 1;
    for (int k = 0; k < nm; k++) {
        if (model ? strcmp(model, MODELS[k].name) != 0 : MODELS[k].named_only)
            continue;
        found = 1;
        for (int ti = 0; ti < nt; ti++) {
            double ips = 0, cpu_ms = 0, loss = 0;
            int st = steps ? steps : MODELS[k].steps;
            if ((s = run_case(&MODELS[k], wq, sparsity, aq, batch, tlist[ti], st, warmup, &ips,
                              &cpu_ms, &loss)))
                return apb_cli_error("bench train", s);
            printf("op=train model=%s quant=%s act=%s batch=%d threads=%d isa=%s steps=%d "
                   "images_per_s=%.1f ms_per_step=%.1f cpu_ms_per_step=%.1f loss=%.4f\n",
                   MODELS[k].name, quant, act, batch, tlist[ti], apb_isa_name(apb_isa_active()),
                   st, ips, 1000.0 * batch / ips, cpu_ms, loss);
            fflush(stdout);
        }
    }
    if (!found) {
        fprintf(stderr, "apb bench train: unknown model '%s' (convnet, resnet20, vgg-small, resnet18)\n",
                model);
        return 1;
    }
    return 0;
}
