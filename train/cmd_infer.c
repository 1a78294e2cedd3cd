/* cmd_infer.c - `apb infer`: not implemented yet (placeholder, replaced by its issue). */
#include <stdio.h>

#include "cli.h"

int apb_cmd_infer(int argc, char **argv)
{
    fprintf(stderr, "apb infer: not implemented yet\n");
    return 1;
}
