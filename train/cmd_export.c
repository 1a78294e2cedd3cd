/* cmd_export.c - `apb export`: not implemented yet (placeholder, replaced by its issue). */
#include <stdio.h>

#include "cli.h"

int apb_cmd_export(int argc, char **argv)
{
    fprintf(stderr, "apb export: not implemented yet\n");
    return 1;
}
