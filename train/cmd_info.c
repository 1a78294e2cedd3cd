/* cmd_info.c - `apb info`: not implemented yet (placeholder, replaced by its issue). */
#include <stdio.h>

#include "cli.h"

int apb_cmd_info(int argc, char **argv)
{
    fprintf(stderr, "apb info: not implemented yet\n");
    return 1;
}
