/* bench_model.c - placeholder until this benchmark lands. */
#include <stdio.h>

#include "bench.h"

int apb_bench_model(int argc, char **argv)
{
    fprintf(stderr, "apb bench: model benchmark not implemented yet\n");
    return 1;
}
