/* cmd_report.c - `apb report`: not implemented yet (placeholder, replaced by its issue). */
#include <stdio.h>

#include "cli.h"

int apb_cmd_report(int argc, char **argv)
{
    fprintf(stderr, "apb report: not implemented yet\n");
    return 1;
}
