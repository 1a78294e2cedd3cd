/* cmd_eval.c - `apb eval --ckpt PATH --data SPEC`: accuracy and per-layer memory.
 *
 * Also holds apb_cli_check_input (cli.h), the model-vs-data geometry check that
 * `apb infer --data` shares, so both commands word a mismatch the same way.
 */
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "threads.h"
#include "trainer.h"

void apb_print_memory_table(FILE *f, const apb_model *m)
{
    double lb[1024];
    int64_t lfp[1024];
    apb_model_memory mem;
    if (m->nlayers > 1024)
        return;
    apb_model_memory_stats(m, &mem, lb, lfp);
    fprintf(f, "%-10s %-7s %-8s %-7s %10s %10s %12s %9s\n", "layer", "kind", "weights", "act",
            "params", "fp_count", "bits", "bits/w");
    for (int i = 0; i < m->nlayers; i++) {
        const apb_layer *l = &m->layers[i];
        if (l->kind != APB_L_CONV && l->kind != APB_L_LINEAR)
            continue;
        fprintf(f, "%-10s %-7s %-8s %-7s %10lld %10lld %12.0f %9.3f\n", l->name,
                l->kind == APB_L_CONV ? "conv" : "linear", apb_wquant_name(l->wq),
                apb_aquant_name(l->aq), (long long)l->w.numel, (long long)lfp[i], lb[i],
                lb[i] / (double)l->w.numel);
    }
    /* nothing compressed: say full precision, not "0 bits/weight" */
    if (mem.cweights == 0) {
        fprintf(f, "total: %lld conv/linear weights, none compressed (100%% full precision)\n",
                (long long)mem.weights);
        fprintf(f, "model: %.0f bits = %.0f bytes (paper formula, BN and biases at 32 bits); weights: 32 bits/weight (fp)\n",
                mem.bits, mem.bits / 8);
        return;
    }
    fprintf(f, "total: %lld conv/linear weights, %lld compressed (%lld full precision = %.3f%%), index bits %d\n",
            (long long)mem.weights, (long long)mem.cweights, (long long)mem.fp_count,
            100 * mem.fp_fraction, mem.index_bits);
    fprintf(f, "model: %.0f bits = %.0f bytes (paper formula, BN and biases at 32 bits); compressed layers: %.4f bits/weight\n",
            mem.bits, mem.bits / 8, mem.bits_per_weight);
}

apb_status apb_cli_check_input(const char *model, int c, int h, int w, const char *spec,
                               const apb_dataset *ds, const apb_transform *t)
{
    if (t->out_c == c && t->out_h == h && t->out_w == w)
        return APB_OK;
    /* Name the data's own geometry, not the transform's output: the transform
     * already resized to the model's size, so "gives 1x32x32" would hide that
     * the images are 1x28x28 and that the channels are what differs. */
    int dc, dh, dw;
    char geom[64];
    apb_dataset_geometry(ds, &dc, &dh, &dw);
    if (dh > 0)
        snprintf(geom, sizeof geom, "%dx%dx%d images", dc, dh, dw);
    else
        snprintf(geom, sizeof geom, "images of any size decoded as %d channels", dc);
    if (t->out_c != c)
        return apb_fail(APB_ESHAPE, "%s expects %dx%dx%d inputs, data %s has %s: input channels %d vs %d",
                        model, c, h, w, spec, geom, c, t->out_c);
    return apb_fail(APB_ESHAPE, "%s expects %dx%dx%d inputs, data %s has %s, which its eval transform makes %dx%dx%d",
                    model, c, h, w, spec, geom, t->out_c, t->out_h, t->out_w);
}

int apb_cmd_eval(int argc, char **argv)
{
    const char *ckpt = NULL, *spec = NULL;
    int bad = 0, threads = 0, limit = 0, batch = 256;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: apb eval --ckpt PATH --data SPEC [--limit-test N] [--threads T] [--batch B (256)]\n");
            return 0;
        } else if (apb_opt_str(argc, argv, &i, "--ckpt", &ckpt, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--data", &spec, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--threads", &threads, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--limit-test", &limit, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--batch", &batch, &bad))
            ;
        else {
            fprintf(stderr, "apb eval: unknown option '%s'\n", argv[i]);
            bad = 1;
        }
    }
    if (!bad && (!ckpt || !spec)) {
        fprintf(stderr, "apb eval: --ckpt and --data are required\n");
        bad = 1;
    }
    if (!bad && batch < 1) {
        fprintf(stderr, "apb eval: " APB_CLI_BATCH_MSG "\n", batch);
        bad = 1;
    }
    if (bad)
        return 2;
    if (threads > 0)
        apb_threads_set(threads);
    apb_ckpt ck;
    apb_status s = apb_ckpt_load(ckpt, &ck);
    if (s)
        return apb_cli_error("eval", s);
    apb_model *m = NULL;
    s = apb_ckpt_model(&ck, &m);
    apb_ckpt_free(&ck);
    if (s)
        return apb_cli_error("eval", s);
    apb_dataset *ds = NULL;
    apb_loader *ld = NULL;
    apb_transform t;
    s = apb_open_data(spec, "test", limit, m->cfg.in_h, 0, batch, 1, apb_threads_get(), &ds, &ld, &t);
    if (!s)
        s = apb_cli_check_input(ckpt, m->cfg.in_c, m->cfg.in_h, m->cfg.in_w, spec, ds, &t);
    apb_eval_result r;
    if (!s)
        s = apb_evaluate(m, ld, &r);
    if (!s) {
        printf("model %s (%s weights, %s activations), %d test images of %s\n", m->cfg.arch,
               apb_wquant_name(m->cfg.wq), apb_aquant_name(m->cfg.aq), r.n, spec);
        printf("top1=%.2f%% top5=%.2f%% loss=%.4f\n", r.top1, r.top5, r.loss);
        apb_print_memory_table(stdout, m);
    }
    if (ld)
        apb_loader_free(ld);
    if (ds)
        apb_dataset_free(ds);
    apb_model_free(m);
    return s ? apb_cli_error("eval", s) : 0;
}
