/* main.c - the `apb` command: dispatches to one subcommand per file. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cpu.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} cmds[] = {
    {"train", apb_cmd_train, "train a model from a raw dataset (fp, APB, baselines)"},
    {"eval", apb_cmd_eval, "top-1/top-5 accuracy and per-layer memory of a checkpoint"},
    {"data", apb_cmd_data, "inspect a dataset SPEC; dump augmented samples as PNG"},
    {"export", apb_cmd_export, "write a checkpoint as a packed .apb model"},
    {"import", apb_cmd_import, "an ONNX model (e.g. from PyTorch) as a checkpoint"},
    {"info", apb_cmd_info, "per-layer table of a .apb model"},
    {"infer", apb_cmd_infer, "classify images or a test split with a .apb model"},
    {"bench", apb_cmd_bench, "benchmarks: sgemm, kernels, data, train, MODEL.apb, --model"},
    {"report", apb_cmd_report, "accuracy/memory trade-off sweep, table and plot"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: apb COMMAND [options]   (apb COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\nenvironment (other values are ignored with a warning):\n"
               "  APB_THREADS=N            thread count, N >= 1 (--threads N overrides it)\n"
               "  APB_ISA=ref|avx2|avx512  force a kernel level, at most this CPU's (%s)\n",
            apb_isa_name(apb_isa_detected()));
}

int main(int argc, char **argv)
{
    /* Past a file-size limit write() then fails with EFBIG, which every writer
     * reports with the path, instead of the process dying with no word. */
    signal(SIGXFSZ, SIG_IGN);
    apb_cli_signals_default();
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "apb: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
