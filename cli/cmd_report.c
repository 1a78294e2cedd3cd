/* cmd_report.c - `apb report`: the accuracy / memory trade-off sweep (report.h).
 *
 * Parses the options into apb_report_cfg, prints progress lines per point, and
 * at the end the markdown table and where the CSV and the plot are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "report.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: apb report --data SPEC --model NAME --out DIR [options]\n"
            "Trains (or reuses the checkpoints in DIR) full precision, then, each initialised\n"
            "from it, binary, 2-bit, pruned and APB models, and writes DIR/tradeoff.csv,\n"
            "DIR/tradeoff.md and DIR/tradeoff.png (accuracy against bits per weight).\n"
            "  --data SPEC          fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | ... (default fashion-mnist)\n"
            "  --model NAME         convnet | vgg-small | resnet20 | resnet18 (default convnet)\n"
            "  --out DIR            one subdirectory per point: fp, binary, q2, prune0.5, apb1.3, ...\n"
            "  --epochs N           full-precision epochs from scratch (default 1)\n"
            "  --ft-epochs N        epochs of every compressed point (default: --epochs)\n"
            "  --methods LIST       fp,binary,q2,prune,apb,apb-actbin,apb-int8 or all (default all;\n"
            "                       fp is trained whenever anything else is asked: it is their start)\n"
            "  --budgets B1,B2,..   APB budgets in bits/weight (default 1.1,1.3,1.6)\n"
            "  --sparsities S1,..   pruning sparsities (default 0.5,0.9)\n"
            "  --actbin-budget B    budget of APB with binary activations (default 1.3)\n"
            "  --int8-budget B      budget of APB with 8-bit activations (default 1.5)\n"
            "  --act fp|binary|q2|int8  activations of every compressed point (default fp; the\n"
            "                       fp point keeps fp activations; ResNets get Bi-Real shortcuts\n"
            "                       with binary and q2)\n"
            "  --seeds N            train every compressed point N times (seeds S..S+N-1, extra\n"
            "                       runs in DIR/<point>-seed<S>); tables give mean +- std and the\n"
            "                       plot error bars; the fp start is trained once (default 1)\n"
            "  --lr X               fp learning rate (default: apb train's)\n"
            "  --ft-lr X            learning rate of compressed points (default: --lr)\n"
            "  --batch B --limit-train N --limit-test N --threads T --seed S\n"
            "  --latency-runs N     timed batch-1 runs per point for the median (default 50; 0: skip)\n"
            "  --latency-threads T  threads while timing (default 1; 0: --threads)\n"
            "  --quiet              no per-epoch lines from the trainer\n"
            "An interrupted report continues where it stopped: finished points are reused,\n"
            "an unfinished one is resumed bit-identically. Ctrl-C or SIGTERM stops after the\n"
            "current training step, saving it (exit 130 / 143); run the same command again.\n");
}

/* The command as given, for "continue with:" (arguments quoted for sh when needed). */
static void print_command(FILE *f, int argc, char **argv)
{
    fprintf(f, "continue with: apb");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (*a && !a[strcspn(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!")]) {
            fprintf(f, " %s", a);
            continue;
        }
        fputs(" '", f);
        for (; *a; a++) {
            if (*a == '\'')
                fputs("'\\''", f);
            else
                fputc(*a, f);
        }
        fputc('\'', f);
    }
    fputc('\n', f);
}

static void print_line(void *ctx, const char *line)
{
    fprintf((FILE *)ctx, "apb report: %s\n", line);
    fflush((FILE *)ctx);
}

int apb_cmd_report(int argc, char **argv)
{
    apb_report_cfg c;
    apb_report_cfg_default(&c);
    c.progress = print_line;
    c.progress_ctx = stdout;
    int bad = 0, iv;
    const char *sv;
    double fv;
    apb_status s;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (apb_opt_str(argc, argv, &i, "--data", &sv, &bad))
            snprintf(c.data_spec, sizeof c.data_spec, "%s", sv);
        else if (apb_opt_str(argc, argv, &i, "--model", &sv, &bad))
            snprintf(c.arch, sizeof c.arch, "%s", sv);
        else if (apb_opt_str(argc, argv, &i, "--out", &sv, &bad))
            snprintf(c.out_dir, sizeof c.out_dir, "%s", sv);
        else if (apb_opt_int(argc, argv, &i, "--epochs", &c.epochs, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--ft-epochs", &c.ft_epochs, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--methods", &sv, &bad)) {
            if (!bad && (s = apb_report_methods_parse(sv, &c.methods)))
                bad = apb_cli_error("report", s);
        } else if (apb_opt_str(argc, argv, &i, "--budgets", &sv, &bad)) {
            if (!bad && (s = apb_report_list_parse(sv, c.budgets, APB_REPORT_MAX_LIST, &c.nbudgets)))
                bad = apb_cli_error("report", apb_fail_context(s, "--budgets"));
        } else if (apb_opt_str(argc, argv, &i, "--sparsities", &sv, &bad)) {
            if (!bad && (s = apb_report_list_parse(sv, c.sparsities, APB_REPORT_MAX_LIST, &c.nsparsities)))
                bad = apb_cli_error("report", apb_fail_context(s, "--sparsities"));
        } else if (apb_opt_float(argc, argv, &i, "--actbin-budget", &c.actbin_budget, &bad))
            ;
        else if (apb_opt_float(argc, argv, &i, "--int8-budget", &c.int8_budget, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--act", &sv, &bad)) {
            apb_aquant aq = APB_AQ_FP;
            if (!bad && (s = apb_aquant_parse(sv, &aq)))
                bad = apb_cli_error("report", apb_fail_context(s, "--act"));
            c.act = (int)aq;
        } else if (apb_opt_int(argc, argv, &i, "--seeds", &c.seeds, &bad))
            ;
        else if (apb_opt_float(argc, argv, &i, "--lr", &fv, &bad))
            c.lr = (float)fv;
        else if (apb_opt_float(argc, argv, &i, "--ft-lr", &fv, &bad))
            c.ft_lr = (float)fv;
        else if (apb_opt_int(argc, argv, &i, "--batch", &c.batch, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--limit-train", &c.limit_train, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--limit-test", &c.limit_test, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--threads", &c.threads, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--seed", &iv, &bad))
            c.seed = (uint64_t)iv;
        else if (apb_opt_int(argc, argv, &i, "--latency-runs", &c.latency_runs, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--latency-threads", &c.latency_threads, &bad))
            ;
        else if (!strcmp(a, "--quiet"))
            c.quiet = 1;
        else {
            fprintf(stderr, "apb report: unknown option '%s' (apb report --help)\n", a);
            bad = 1;
        }
    }
    if (!bad && !c.out_dir[0]) {
        fprintf(stderr, "apb report: --out DIR is required (apb report --help)\n");
        bad = 1;
    }
    if (bad)
        return 2;
    apb_report r;
    apb_cli_signals_install("report", "the current point's position to its last.ckpt");
    if ((s = apb_report_run(&c, &r)) == APB_ESTOPPED) {
        fprintf(stderr, "apb report: %s\n", apb_errmsg());
        print_command(stderr, argc, argv);
        return apb_cli_stop_status();
    }
    if (s)
        return apb_cli_error("report", s);
    char *md;
    if ((s = apb_report_markdown(&r, &md))) {
        apb_report_free(&r);
        return apb_cli_error("report", s);
    }
    printf("\n%s\n", md);
    printf("table: %s (and %s)\nplot:  %s\n", r.md_path, r.csv_path, r.png_path);
    free(md);
    apb_report_free(&r);
    return 0;
}
