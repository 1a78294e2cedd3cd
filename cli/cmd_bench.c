/* cmd_bench.c - `apb bench WHAT`: routes to the benchmark for WHAT. The help
 * text is the benchmarks' own usage, so it lists every option each accepts. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: apb bench sgemm|kernels|data|train|MODEL.apb|--model NAME [options]\n"
               "Every benchmark prints key=value lines, one per case; `apb bench WHAT --help`\n"
               "shows one of them.\n\n");
    apb_bench_sgemm_usage(f);
    fprintf(f, "\n");
    apb_bench_kernels_usage(f);
    fprintf(f, "\n");
    apb_bench_data_usage(f);
    fprintf(f, "\n");
    apb_bench_train_usage(f);
    fprintf(f, "\n");
    apb_bench_model_usage(f);
}

int apb_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *w = argv[1];
    if (!strcmp(w, "sgemm"))
        return apb_bench_sgemm(argc - 1, argv + 1);
    if (!strcmp(w, "kernels"))
        return apb_bench_kernels(argc - 1, argv + 1);
    if (!strcmp(w, "data"))
        return apb_bench_data(argc - 1, argv + 1);
    if (!strcmp(w, "train"))
        return apb_bench_train(argc - 1, argv + 1);
    return apb_bench_model(argc, argv);
}
