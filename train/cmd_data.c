/* cmd_data.c - `apb data`: not implemented yet (placeholder, replaced by its issue). */
#include <stdio.h>

#include "cli.h"

int apb_cmd_data(int argc, char **argv)
{
    fprintf(stderr, "apb data: not implemented yet\n");
    return 1;
}
