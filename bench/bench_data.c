/* bench_data.c - placeholder until this benchmark lands. */
#include <stdio.h>

#include "bench.h"

int apb_bench_data(int argc, char **argv)
{
    fprintf(stderr, "apb bench: data benchmark not implemented yet\n");
    return 1;
}
