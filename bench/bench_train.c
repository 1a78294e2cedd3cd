/* bench_train.c - placeholder until this benchmark lands. */
#include <stdio.h>

#include "bench.h"

int apb_bench_train(int argc, char **argv)
{
    fprintf(stderr, "apb bench: train benchmark not implemented yet\n");
    return 1;
}
