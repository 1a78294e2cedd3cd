/* cmd_train.c - `apb train`: parse options into apb_train_cfg and run.
 *
 * What the command adds to apb_train_run: it refuses an --out that already
 * holds a run (unless --force), merges --resume DIR with the options given
 * beside it (equal ones are fine, a conflicting one is named with both values,
 * a larger --epochs extends the run), says when a resumed run is already
 * complete, and on Ctrl-C or SIGTERM (the trainer then saves where it is inside
 * the epoch) says how to continue.
 *
 * Under mpirun (dist.h) every process runs this command with the same
 * arguments. Process 0 alone prints (the others' stdout goes to /dev/null and
 * their stderr carries only an error of their own), checks --out / --resume
 * against the files and tells the others the outcome. An error that one
 * process meets alone, while the others wait for it, ends the job
 * (apb_dist_abort); one that every process returned together ends normally.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "dist.h"
#include "trainer.h"

static const char *const OPTIM_NAMES[3] = {"sgd", "adam", "adamw"};

static void usage(FILE *f)
{
    apb_train_cfg *d = calloc(1, sizeof *d);
    if (!d)
        return;
    apb_train_cfg_default(d);
    fprintf(f,
            "usage: apb train [--data SPEC] [--model NAME] --out DIR [options]\n"
            "       apb train --resume DIR [--epochs N] [--threads T] [--quiet]\n"
            "  --data SPEC        fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | cifar100:DIR | imagenet:DIR\n"
            "                     (default %s)\n"
            "  --model NAME       convnet | vgg-small | resnet20 | resnet18 (default: the --init\n"
            "                     checkpoint's model, e.g. an imported graph; else %s)\n"
            "  --quant Q          fp | apb | binary | q2 | prune:S   (weights; default fp)\n"
            "  --act A            fp | binary | q2 | int8            (activations; default fp)\n"
            "  --epochs N (default %d)  --batch B (default %d)  --lr X (default %g, cosine schedule)\n"
            "  --wd X (default %g)  --momentum X (default %g)  --optim sgd|adam|adamw (default %s)\n"
            "  --nesterov\n"
            "  --budget-bits B    APB: finished model has at most B bits/weight (compressed layers),\n"
            "                     B in [1, 32) and at least the model's sign and alpha/delta bits\n"
            "  --budget-spread global|layer   how the budget is shared between layers (default global)\n"
            "  --budget-alpha learn|fit       budget mode: alpha learned, or fit to mean|w| of the\n"
            "                     binarized weights by the projection (default learn)\n"
            "  --budget-warmup F  budget mode: over the first F of the run the full-precision set\n"
            "                     shrinks linearly from every APB weight to the budget's (default 0)\n"
            "  --bn-reestimate N  after every epoch with frozen alpha/delta, batchnorm statistics\n"
            "                     = the mean over N training batches in train mode (default 0: off)\n"
            "  --freeze-at F      fraction of epochs after which alpha/delta freeze (default %g)\n"
            "  --quant-lr X       Adam learning rate of alpha/delta/steps (default %g)\n"
            "  --per-channel      APB alpha/delta per output channel\n"
            "  --direct-alpha     direct alpha gradient instead of the published estimator\n"
            "  --approx-sign      ApproxSign backward for binary activations\n"
            "  --quant-first --quant-last --fp-shortcut\n"
            "  --label-smoothing X (default %g)  --warmup EPOCHS (default %g)\n"
            "  --img-size S       folder datasets: input side (default 224)\n"
            "  --limit-train N --limit-test N   use only the first N images (default 0 = all)\n"
            "  --val N            hold N training images out as a validation set (chosen by the\n"
            "                     data and N only); best.ckpt then follows validation accuracy,\n"
            "                     log.csv gains val_loss,val_acc (default 0: none)\n"
            "  --init CKPT        start from a (full-precision) checkpoint; never overwritten\n"
            "  --out DIR          run folder: log.csv, last.ckpt (every epoch), best.ckpt.\n"
            "                     A folder that already holds a run is refused\n"
            "  --force            train a new run over the one in --out (its files are replaced)\n"
            "  --resume DIR       continue DIR/last.ckpt bit-identically with its stored options;\n"
            "                     options given beside it must equal them (--threads, --quiet and\n"
            "                     --force may differ); a finished run says so and exits 0\n"
            "  --resume DIR --epochs N   extend a run (finished or not) to N epochs in total,\n"
            "                     N >= its epochs: the cosine learning rate, --freeze-at and the\n"
            "                     pruning ramp are recomputed for N epochs and continue at the\n"
            "                     next epoch, so a finished run's learning rate rises again\n"
            "  --threads T --seed S (default %llu) --quiet\n"
            "  --sync-bn          under mpirun: batchnorm statistics over every process's batch\n"
            "                     (default: each process's own; docs/DISTRIBUTED.md)\n"
            "Data-parallel: mpirun -np N apb train ... trains on N x --batch images per step, each\n"
            "process on its part, with the same options and results as one process with N x --batch\n"
            "(up to rounding); a run is resumed with the same N.\n"
            "Ctrl-C or SIGTERM stops a run after the current step and saves the position in\n"
            "the epoch to DIR/last.ckpt (exit 130 / 143); --resume DIR goes on from that step.\n"
            "A second signal stops at once, leaving the previous DIR/last.ckpt as it was.\n",
            d->data_spec, d->model.arch, d->epochs, d->batch, d->lr, d->wd, d->momentum,
            OPTIM_NAMES[d->optim], d->freeze_at, d->quant_lr, d->label_smoothing, d->warmup,
            (unsigned long long)d->seed);
    free(d);
}

/* The value of a stored option `opt` in c as text: prec 9 compares exactly (the
 * floats are stored as %.9g), prec 6 is for showing; *flag tells an option that
 * takes no value. NULL for an option that is not stored with a run. */
static const char *opt_text(const apb_train_cfg *c, const char *opt, int prec, char *b, size_t n,
                            int *flag)
{
    const apb_model_cfg *m = &c->model;
    struct {
        const char *opt;
        char kind; /* s string, i integer, f float, b flag */
        const char *s;
        long long i;
        double f;
    } t[] = {
        {"--data", 's', .s = c->data_spec},
        {"--model", 's', .s = m->arch},
        {"--quant", 's', .s = apb_wquant_name(m->wq)},
        {"--act", 's', .s = apb_aquant_name(m->aq)},
        {"--batch", 'i', .i = c->batch},
        {"--lr", 'f', .f = c->lr},
        {"--wd", 'f', .f = c->wd},
        {"--momentum", 'f', .f = c->momentum},
        {"--optim", 's', .s = OPTIM_NAMES[c->optim >= 0 && c->optim < 3 ? c->optim : 0]},
        {"--nesterov", 'b', .i = c->nesterov},
        {"--budget-bits", 'f', .f = c->budget_bits},
        {"--budget-spread", 's', .s = c->budget_spread ? "layer" : "global"},
        {"--budget-alpha", 's', .s = c->budget_alpha ? "fit" : "learn"},
        {"--freeze-at", 'f', .f = c->freeze_at},
        {"--budget-warmup", 'f', .f = c->budget_warmup},
        {"--bn-reestimate", 'i', .i = c->bn_reestimate},
        {"--quant-lr", 'f', .f = c->quant_lr},
        {"--per-channel", 'b', .i = m->per_channel},
        {"--direct-alpha", 'b', .i = m->direct_alpha_grad},
        {"--approx-sign", 'b', .i = m->approx_sign},
        {"--quant-first", 'b', .i = m->quant_first},
        {"--quant-last", 'b', .i = m->quant_last},
        {"--fp-shortcut", 'b', .i = m->fp_shortcut},
        {"--label-smoothing", 'f', .f = c->label_smoothing},
        {"--warmup", 'f', .f = c->warmup},
        {"--img-size", 'i', .i = c->img_size},
        {"--limit-train", 'i', .i = c->limit_train},
        {"--limit-test", 'i', .i = c->limit_test},
        {"--val", 'i', .i = c->val},
        {"--seed", 'i', .i = (long long)c->seed},
        {"--init", 's', .s = c->init_ckpt},
        {"--sync-bn", 'b', .i = c->sync_bn},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        if (strcmp(t[k].opt, opt))
            continue;
        *flag = t[k].kind == 'b';
        if (!strcmp(opt, "--quant") && m->wq == APB_WQ_PRUNE)
            snprintf(b, n, "prune:%.*g", prec, (double)m->prune_sparsity);
        else if (t[k].kind == 's')
            snprintf(b, n, "%s", t[k].s);
        else if (t[k].kind == 'i')
            snprintf(b, n, "%lld", t[k].i);
        else if (t[k].kind == 'f')
            snprintf(b, n, "%.*g", prec, t[k].f);
        else
            snprintf(b, n, "%s", t[k].i ? "on" : "off");
        return b;
    }
    return NULL;
}

static void given_add(apb_cli_given *g, const char *arg)
{
    if (g->n >= 64)
        return;
    size_t len = strcspn(arg, "=");
    snprintf(g->name[g->n++], sizeof g->name[0], "%.*s", (int)len, arg);
}

/* Two paths naming one existing directory. */
static int same_dir(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!strcmp(a, b))
        return 1;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A stop (Ctrl-C, SIGTERM): say how to continue. last.ckpt is this run's to
 * resume when the run is a resumed one, or when it is not the file that was
 * there before the run started (--force). */
static struct {
    char dir[1024], ckpt[1100];
    int resuming, existed;
    dev_t dev;
    ino_t ino;
} hint;

static void hint_note(const char *dir, int resuming)
{
    struct stat st;
    snprintf(hint.dir, sizeof hint.dir, "%s", dir);
    snprintf(hint.ckpt, sizeof hint.ckpt, "%s/last.ckpt", dir);
    hint.resuming = resuming;
    hint.existed = stat(hint.ckpt, &st) == 0;
    hint.dev = hint.existed ? st.st_dev : 0;
    hint.ino = hint.existed ? st.st_ino : 0;
}

static int stopped(void)
{
    struct stat st;
    int ours = stat(hint.ckpt, &st) == 0 &&
               (hint.resuming || !hint.existed || st.st_dev != hint.dev || st.st_ino != hint.ino);
    fprintf(stderr, "apb train: %s\n", apb_errmsg()); /* says when there is nothing to resume */
    if (ours)
        fprintf(stderr, "continue with: apb train --resume %s\n", hint.dir);
    return apb_cli_stop_status();
}

static int run(apb_train_cfg *c, int resuming)
{
    int rank = apb_dist_rank();
    if (rank == 0)
        hint_note(resuming ? c->resume_dir : c->out_dir, resuming);
    apb_cli_signals_install("train", rank == 0 ? "the position in the epoch to last.ckpt" : NULL);
    apb_status s = apb_train_run(c, NULL);
    if (!s)
        return 0;
    if (!c->err_shared) { /* this process alone: the others wait for it in a collective */
        fprintf(stderr, "apb train: process %d of %d: %s\n", rank, apb_dist_size(), apb_errmsg());
        fflush(stderr);
        apb_dist_abort(s == APB_ESTOPPED ? apb_cli_stop_status() : 1);
    }
    if (!c->err_print) /* another process says it */
        return s == APB_ESTOPPED ? apb_cli_stop_status() : 1;
    if (s == APB_ESTOPPED)
        return stopped();
    return apb_cli_error("train", s);
}

/* --resume DIR with the options given beside it: those equal to the run's are
 * fine, a conflicting one is refused by name, --epochs may extend the run.
 * Returns the exit status, or -2 when the run is to go on. */
static int resume_check(apb_train_cfg *c, const apb_cli_given *g)
{
    apb_train_cfg *st = calloc(1, sizeof *st);
    if (!st)
        return apb_cli_error("train", apb_fail(APB_ENOMEM, "out of memory"));
    int done = 0;
    double best = 0;
    apb_status s = apb_train_load_run(c->resume_dir, st, &done, &best);
    if (s) {
        free(st);
        return apb_cli_error("train", s);
    }
    int bad = 0;
    for (int i = 0; i < g->n && !bad; i++) {
        const char *o = g->name[i];
        char mine[1100], theirs[1100];
        int flag = 0;
        if (!strcmp(o, "--resume") || !strcmp(o, "--threads") || !strcmp(o, "--quiet") ||
            !strcmp(o, "--force"))
            continue;
        if (!strcmp(o, "--epochs")) {
            if (c->epochs < st->epochs) {
                fprintf(stderr, "apb train: --epochs %d conflicts with the run's epochs=%d: a run can be "
                                "extended, not shortened\n", c->epochs, st->epochs);
                bad = 1;
            }
        } else if (!strcmp(o, "--out")) {
            if (!same_dir(c->out_dir, c->resume_dir)) {
                fprintf(stderr, "apb train: --out %s conflicts with --resume %s: a resumed run writes "
                                "into its own folder\n", c->out_dir, c->resume_dir);
                bad = 1;
            }
        } else if (opt_text(c, o, 9, mine, sizeof mine, &flag) &&
                   opt_text(st, o, 9, theirs, sizeof theirs, &flag) && strcmp(mine, theirs)) {
            /* 6 digits unless only more tell the two apart */
            char m6[1100], t6[1100];
            opt_text(c, o, 6, m6, sizeof m6, &flag);
            opt_text(st, o, 6, t6, sizeof t6, &flag);
            int six = strcmp(m6, t6) != 0;
            fprintf(stderr, "apb train: %s%s%s conflicts with the run's %s=%s (%s/last.ckpt); a resumed "
                            "run keeps its options: drop %s, or train a new run with another --out\n",
                    o, flag ? "" : " ", flag ? "" : six ? m6 : mine, o + 2, six ? t6 : theirs,
                    c->resume_dir, o);
            bad = 1;
        }
    }
    int total = c->resume_epochs > st->epochs ? c->resume_epochs : st->epochs;
    if (!bad && done >= total) {
        printf("apb train: the run in %s is complete: %d of %d epochs done, best test accuracy %.2f%%.\n"
               "To train it further: apb train --resume %s --epochs N with N > %d (the cosine learning "
               "rate schedule is then recomputed for N epochs)\n",
               c->resume_dir, done, total, best, c->resume_dir, total);
        free(st);
        return 0;
    }
    free(st);
    if (bad)
        return 2;
    return -2;
}

int apb_cmd_train_parse(int argc, char **argv, apb_train_cfg *c, apb_cli_given *g, int *force)
{
    apb_train_cfg_default(c);
    memset(g, 0, sizeof *g);
    *force = 0;
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
            return -1;
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
        else if (apb_opt_float(argc, argv, &i, "--budget-bits", &fv, &bad)) {
            c->budget_bits = (float)fv;
            if (!bad && apb_budget_bits_check(fv))
                bad = apb_cli_error("train", apb_fail_context(APB_EINVAL, "--budget-bits"));
        } else if (apb_opt_str(argc, argv, &i, "--budget-spread", &sv, &bad)) {
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
        else if (apb_opt_float(argc, argv, &i, "--budget-warmup", &fv, &bad)) {
            c->budget_warmup = (float)fv;
            if (!bad && !(fv >= 0 && fv <= 1)) {
                fprintf(stderr, "apb train: --budget-warmup must be in [0, 1], not %g\n", fv);
                bad = 1;
            }
        } else if (apb_opt_int(argc, argv, &i, "--bn-reestimate", &c->bn_reestimate, &bad)) {
            if (!bad && c->bn_reestimate < 0) {
                fprintf(stderr, "apb train: --bn-reestimate must be >= 0, not %d\n", c->bn_reestimate);
                bad = 1;
            }
        }
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
        else if (apb_opt_int(argc, argv, &i, "--val", &c->val, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--limit-test", &c->limit_test, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--init", &sv, &bad))
            snprintf(c->init_ckpt, sizeof c->init_ckpt, "%s", sv);
        else if (apb_opt_str(argc, argv, &i, "--resume", &sv, &bad))
            snprintf(c->resume_dir, sizeof c->resume_dir, "%s", sv);
        else if (apb_opt_str(argc, argv, &i, "--out", &sv, &bad))
            snprintf(c->out_dir, sizeof c->out_dir, "%s", sv);
        else if (!strcmp(a, "--force"))
            *force = 1;
        else if (apb_opt_int(argc, argv, &i, "--threads", &c->threads, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--seed", &iv, &bad))
            c->seed = (uint64_t)iv;
        else if (!strcmp(a, "--quiet"))
            c->quiet = 1;
        else if (!strcmp(a, "--sync-bn"))
            c->sync_bn = 1;
        else {
            fprintf(stderr, "apb train: unknown option '%s' (apb train --help)\n", a);
            bad = 1;
        }
        given_add(g, a);
    }
    /* without --model, --init's checkpoint gives the model (e.g. an imported graph) */
    if (!bad && !c->resume_dir[0] && !model_given && c->init_ckpt[0])
        c->model.arch[0] = 0;
    if (bad)
        return 2;
    if (c->resume_dir[0])
        return 0;
    if (!c->out_dir[0]) {
        fprintf(stderr, "apb train: --out DIR is required\n");
        return 2;
    }
    if (c->budget_bits != 0 && c->model.wq != APB_WQ_APB) {
        fprintf(stderr, "apb train: --budget-bits needs --quant apb\n");
        return 2;
    }
    return 0;
}

/* Process 0 alone reports (the others' stdout and, while `errors_too`, their
 * stderr go to /dev/null); `restore` brings stderr back. */
static int quiet_fd = -1;
static void silence(int errors_too)
{
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0)
        return;
    fflush(stdout);
    fflush(stderr);
    dup2(fd, 1);
    if (errors_too) {
        quiet_fd = dup(2);
        dup2(fd, 2);
    }
    close(fd);
}

static void restore(void)
{
    if (quiet_fd < 0)
        return;
    fflush(stderr);
    dup2(quiet_fd, 2);
    close(quiet_fd);
    quiet_fd = -1;
}

/* What the command does before training: -2 to train, else the exit status
 * (0 for a resumed run that is already complete). With processes, process 0
 * looks at the files and the others follow its word. */
static int prepare(apb_train_cfg *c, const apb_cli_given *g, int force)
{
    for (int i = 0; i < g->n; i++)
        if (c->resume_dir[0] && !strcmp(g->name[i], "--epochs"))
            c->resume_epochs = c->epochs;
    int rc = -2;
    if (apb_dist_rank() == 0) {
        if (c->resume_dir[0])
            rc = resume_check(c, g);
        else if (!force && apb_train_out_check(c->out_dir))
            rc = apb_cli_error("train", APB_EINVAL);
    }
    int32_t word = rc;
    if (apb_dist_size() > 1 && apb_dist_bcast(&word, sizeof word, 0))
        return apb_cli_error("train", APB_EIO);
    return (int)word;
}

int apb_cmd_train(int argc, char **argv)
{
    apb_status ds = apb_dist_init(NULL, NULL);
    if (ds)
        return apb_cli_error("train", ds);
    int rank = apb_dist_rank();
    apb_train_cfg *c = calloc(1, sizeof *c);
    apb_cli_given *g = calloc(1, sizeof *g);
    if (!c || !g) {
        free(c);
        free(g);
        apb_dist_finish();
        return 1;
    }
    /* the same arguments give every process the same verdict: process 0 says it */
    if (rank > 0)
        silence(1);
    int force, rc = apb_cmd_train_parse(argc, argv, c, g, &force);
    restore();
    if (rc == 0 && (rc = prepare(c, g, force)) == -2) {
        c->quiet |= rank > 0;
        rc = run(c, c->resume_dir[0] != 0);
    }
    free(c);
    free(g);
    apb_dist_finish();
    return rc < 0 ? 0 : rc; /* -1: --help was shown */
}
