/* bench_kernels.c - placeholder until this benchmark lands. */
#include <stdio.h>

#include "bench.h"

int apb_bench_kernels(int argc, char **argv)
{
    fprintf(stderr, "apb bench: kernels benchmark not implemented yet\n");
    return 1;
}
