/* cmd_bench.c - `apb bench WHAT`: routes to the benchmark for WHAT. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

int apb_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: apb bench sgemm|kernels|data|train [options]\n"
               "       apb bench MODEL.apb [--batch B] [--threads T]\n"
               "       apb bench --model NAME --quant Q --act A [--input CxHxW] [--classes K]\n"
               "                 [--fp-fraction F] [--batch B] [--threads T]\n");
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
