/* cli.h - the `apb` command's subcommands and shared option parsing helpers.
 *
 * Each subcommand lives in its own file as `int apb_cmd_NAME(int argc, char **argv)`
 * (argv[0] is the subcommand name) and returns the process exit status. Errors
 * from library code are printed as "apb NAME: <apb_errmsg()>" with exit 1.
 */
#ifndef APB_CLI_H
#define APB_CLI_H

#include "status.h"

int apb_cmd_train(int argc, char **argv);
int apb_cmd_eval(int argc, char **argv);
int apb_cmd_data(int argc, char **argv);
int apb_cmd_export(int argc, char **argv);
int apb_cmd_info(int argc, char **argv);
int apb_cmd_infer(int argc, char **argv);
int apb_cmd_bench(int argc, char **argv);
int apb_cmd_report(int argc, char **argv);

/* Prints "apb CMD: message" to stderr and returns 1 (for `return apb_cli_error(...)`). */
int apb_cli_error(const char *cmd, apb_status s);

/* Option parsing: returns 1 and stores the value if argv[*i] is `name` (value in
 * argv[*i+1], *i advanced) or `name=value`. Sets *bad when the value is missing
 * or malformed. */
int apb_opt_str(int argc, char **argv, int *i, const char *name, const char **val, int *bad);
int apb_opt_int(int argc, char **argv, int *i, const char *name, int *val, int *bad);
int apb_opt_float(int argc, char **argv, int *i, const char *name, double *val, int *bad);

#endif
