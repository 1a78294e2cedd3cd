/* cmd_train.c - `apb train`: parse options into apb_train_cfg and run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trainer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: apb train --data SPEC --model NAME --out DIR [options]\n"
            "  --data SPEC        fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | cifar100:DIR | imagenet:DIR\n"
            "  --model NAME       convnet | vgg-small | resnet20 | resnet18 (default: the --init\n"
            "                     checkpoint's model, e.g. an imported graph; else convnet)\n"
            "  --quant Q          fp | apb | binary | q2 | prune:S   (weights; default fp)\n"
            "  --act A            fp | binary | q2                   (activations; default fp)\n"
            "  --epochs N --batch B --lr X --wd X --momentum X --optim sgd|adam|adamw [--nesterov]\n"
            "  --budget-bits B    APB: finished model has at most B bits/weight (compressed layers)\n"
            "  --budget-spread global|layer   how the budget is shared between layers (default global)\n"
            "  --budget-alpha learn|fit       budget mode: alpha learned, or fit to mean|w| of the\n"
            "                     binarized weights by the projection (default learn)\n"
            "  --freeze-at F      fraction of epochs after which alpha/delta freeze (default 0.5)\n"
            "  --quant-lr X       Adam learning rate of alpha/delta/steps (default 1e-4)\n"
            "  --per-channel      APB alpha/delta per output channel\n"
            "  --direct-alpha     direct alpha gradient instead of the published estimator\n"
            "  --approx-sign      ApproxSign backward for binary activations\n"
            "  --quant-first --quant-last --fp-shortcut\n"
            "  --label-smoothing X --warmup EPOCHS --img-size S\n"
            "  --limit-train N --limit-test N   use only the first N images\n"
            "  --init CKPT        start from a (full-precision) checkpoint\n"
            "  --resume DIR       continue DIR/last.ckpt bit-identically\n"
            "  --threads T --seed S --quiet\n");
}

int apb_cmd_train(int argc, char **argv)
{
    apb_train_cfg *c = calloc(1, sizeof *c);
    if (!c)
        return 1;
    apb_train_cfg_default(c);
    size_t o = 0;
    for (int i = 0; i < argc && o < sizeof c->cmdline - 2; i++)
        o += (size_t)snprintf(c->cmdline + o, sizeof c->cmdline - o, "%s%s", i ? " " : "apb ", argv[i]);
    for (char *p = c->cmdline; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' '; /* the checkpoint header is one key=value per line */
    int bad = 0, model_given = 0;
    const char *sv;
    double fv;
    int iv;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            free(c);
            return 0;
        } else if (apb_opt_str(argc, argv, &i, "--data", &sv, &bad))
            snprintf(c->data_spec, sizeof c->data_spec, "%s", sv);
        else if (apb_opt_str(argc, argv, &i, "--model", &sv, &bad)) {
            snprintf(c->model.arch, sizeof c->model.arch, "%s", sv);
            model_given = 1;
        }
        else if (apb_opt_str(argc, argv, &i, "--quant", &sv, &bad)) {
            if (!bad && apb_wquant_parse(sv, &c->model.wq, &c->model.prune_sparsity))
                bad = apb_cli_error("train", APB_EINVAL);
        } else if (apb_opt_str(argc, argv, &i, "--act", &sv, &bad)) {
            if (!bad && apb_aquant_parse(sv, &c->model.aq))
                bad = apb_cli_error("train", APB_EINVAL);
        } else if (apb_opt_int(argc, argv, &i, "--epochs", &c->epochs, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--batch", &c->batch, &bad))
            ;
        else if (apb_opt_float(argc, argv, &i, "--lr", &fv, &bad))
            c->lr = (float)fv;
        else if (apb_opt_float(argc, argv, &i, "--wd", &fv, &bad))
            c->wd = (float)fv;
        else if (apb_opt_float(argc, argv, &i, "--momentum", &fv, &bad))
            c->momentum = (float)fv;
        else if (apb_opt_str(argc, argv, &i, "--optim", &sv, &bad)) {
            if (bad)
                ;
            else if (!strcmp(sv, "sgd"))
                c->optim = 0;
            else if (!strcmp(sv, "adam"))
                c->optim = 1;
            else if (!strcmp(sv, "adamw"))
                c->optim = 2;
            else {
                fprintf(stderr, "apb train: --optim must be sgd, adam or adamw, not '%s'\n", sv);
                bad = 1;
            }
        } else if (!strcmp(a, "--nesterov"))
            c->nesterov = 1;
        else if (apb_opt_float(argc, argv, &i, "--budget-bits", &fv, &bad))
            c->budget_bits = (float)fv;
        else if (apb_opt_str(argc, argv, &i, "--budget-spread", &sv, &bad)) {
            if (!bad && strcmp(sv, "global") && strcmp(sv, "layer")) {
                fprintf(stderr, "apb train: --budget-spread must be global or layer\n");
                bad = 1;
            }
            c->budget_spread = !bad && !strcmp(sv, "layer");
        } else if (apb_opt_str(argc, argv, &i, "--budget-alpha", &sv, &bad)) {
            if (!bad && strcmp(sv, "learn") && strcmp(sv, "fit")) {
                fprintf(stderr, "apb train: --budget-alpha must be learn or fit, not '%s'\n", sv);
                bad = 1;
            }
            c->budget_alpha = !bad && !strcmp(sv, "fit");
        } else if (apb_opt_float(argc, argv, &i, "--freeze-at", &fv, &bad))
            c->freeze_at = (float)fv;
        else if (apb_opt_float(argc, argv, &i, "--quant-lr", &fv, &bad))
            c->quant_lr = (float)fv;
        else if (!strcmp(a, "--per-channel"))
            c->model.per_channel = 1;
        else if (!strcmp(a, "--direct-alpha"))
            c->model.direct_alpha_grad = 1;
        else if (!strcmp(a, "--approx-sign"))
            c->model.approx_sign = 1;
        else if (!strcmp(a, "--quant-first"))
            c->model.quant_first = 1;
        else if (!strcmp(a, "--quant-last"))
            c->model.quant_last = 1;
        else if (!strcmp(a, "--fp-shortcut"))
            c->model.fp_shortcut = 1;
        else if (apb_opt_float(argc, argv, &i, "--label-smoothing", &fv, &bad))
            c->label_smoothing = (float)fv;
        else if (apb_opt_float(argc, argv, &i, "--warmup", &fv, &bad))
            c->warmup = (float)fv;
        else if (apb_opt_int(argc, argv, &i, "--img-size", &c->img_size, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--limit-train", &c->limit_train, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--limit-test", &c->limit_test, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--init", &sv, &bad))
            snprintf(c->init_ckpt, sizeof c->init_ckpt, "%s", sv);
        else if (apb_opt_str(argc, argv, &i, "--resume", &sv, &bad))
            snprintf(c->resume_dir, sizeof c->resume_dir, "%s", sv);
        else if (apb_opt_str(argc, argv, &i, "--out", &sv, &bad))
            snprintf(c->out_dir, sizeof c->out_dir, "%s", sv);
        else if (apb_opt_int(argc, argv, &i, "--threads", &c->threads, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--seed", &iv, &bad))
            c->seed = (uint64_t)iv;
        else if (!strcmp(a, "--quiet"))
            c->quiet = 1;
        else {
            fprintf(stderr, "apb train: unknown option '%s' (apb train --help)\n", a);
            bad = 1;
        }
    }
    /* a resumed run continues with the options stored in its checkpoint */
    for (int i = 1; i < argc && !bad && c->resume_dir[0]; i++)
        if (!strncmp(argv[i], "--", 2) && strncmp(argv[i], "--resume", 8) &&
            strncmp(argv[i], "--threads", 9) && strcmp(argv[i], "--quiet")) {
            fprintf(stderr, "apb train: --resume takes only --threads and --quiet; %s would be ignored "
                            "(the run continues with the options stored in its checkpoint)\n", argv[i]);
            bad = 1;
        }
    if (!model_given && c->init_ckpt[0])
        c->model.arch[0] = 0; /* the --init checkpoint's model */
    if (!bad && !c->out_dir[0] && !c->resume_dir[0]) {
        fprintf(stderr, "apb train: --out DIR is required\n");
        bad = 1;
    }
    if (!bad && c->budget_bits > 0 && c->model.wq != APB_WQ_APB) {
        fprintf(stderr, "apb train: --budget-bits needs --quant apb\n");
        bad = 1;
    }
    if (bad) {
        free(c);
        return 2;
    }
    apb_status s = apb_train_run(c, NULL);
    free(c);
    return s ? apb_cli_error("train", s) : 0;
}
