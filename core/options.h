/* options.h - command-line option parsing for apb's commands.
 *
 * Library code returns a status; only commands print. These helpers are for the
 * commands: `apb` subcommands in cli/ and the benchmarks in bench/.
 */
#ifndef APB_OPTIONS_H
#define APB_OPTIONS_H

#include "status.h"

/* Prints "apb CMD: message" to stderr and returns 1 (for `return apb_cli_error(...)`). */
int apb_cli_error(const char *cmd, apb_status s);

/* Option parsing: returns 1 and stores the value if argv[*i] is `name` (value in
 * argv[*i+1], *i advanced) or `name=value`. Sets *bad when the value is missing
 * or malformed. An option named --threads must be >= 1 (*bad otherwise), for every
 * command: leaving it out is how to ask for the default. */
int apb_opt_str(int argc, char **argv, int *i, const char *name, const char **val, int *bad);
int apb_opt_int(int argc, char **argv, int *i, const char *name, int *val, int *bad);
int apb_opt_float(int argc, char **argv, int *i, const char *name, double *val, int *bad);

#endif
