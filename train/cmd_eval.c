/* cmd_eval.c - `apb eval`: not implemented yet (placeholder, replaced by its issue). */
#include <stdio.h>

#include "cli.h"

int apb_cmd_eval(int argc, char **argv)
{
    fprintf(stderr, "apb eval: not implemented yet\n");
    return 1;
}
