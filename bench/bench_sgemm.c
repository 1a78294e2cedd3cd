/* bench_sgemm.c - placeholder until this benchmark lands. */
#include <stdio.h>

#include "bench.h"

int apb_bench_sgemm(int argc, char **argv)
{
    fprintf(stderr, "apb bench: sgemm benchmark not implemented yet\n");
    return 1;
}
