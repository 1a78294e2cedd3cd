/* cmd_train.c - `apb train`: not implemented yet (placeholder, replaced by its issue). */
#include <stdio.h>

#include "cli.h"

int apb_cmd_train(int argc, char **argv)
{
    fprintf(stderr, "apb train: not implemented yet\n");
    return 1;
}
