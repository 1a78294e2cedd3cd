/* cli.h - the `apb` command's subcommands and shared option parsing helpers.
 *
 * Each subcommand lives in its own file as `int apb_cmd_NAME(int argc, char **argv)`
 * (argv[0] is the subcommand name) and returns the process exit status. Errors
 * from library code are printed as "apb NAME: <apb_errmsg()>" with exit 1.
 */
#ifndef APB_CLI_H
#define APB_CLI_H

#include "dataset.h"
#include "options.h" /* apb_cli_error, apb_opt_*: shared with bench/ */
#include "trainer.h"

int apb_cmd_train(int argc, char **argv);
int apb_cmd_eval(int argc, char **argv);
int apb_cmd_data(int argc, char **argv);
int apb_cmd_export(int argc, char **argv);
int apb_cmd_import(int argc, char **argv);
int apb_cmd_info(int argc, char **argv);
int apb_cmd_infer(int argc, char **argv);
int apb_cmd_bench(int argc, char **argv);
int apb_cmd_report(int argc, char **argv);

/* `apb eval` and `apb infer --data` refuse a batch below 1 with the same words
 * (printf format taking the value given). */
#define APB_CLI_BATCH_MSG "--batch must be at least 1 (got %d)"

/* Checks that the eval transform t of dataset ds (opened from `spec`) gives the
 * c x h x w inputs that `model` (a file name, for the message) expects; the
 * error names the data's own geometry and what differs. In cmd_eval.c. */
apb_status apb_cli_check_input(const char *model, int c, int h, int w, const char *spec,
                               const apb_dataset *ds, const apb_transform *t);

/* The options given on a command line, by name ("--lr"), for --resume. */
typedef struct {
    char name[64][32];
    int n;
} apb_cli_given;

/* `apb train`'s command line into *c (from the defaults), the names given and
 * --force, touching no file: 0 when it is a command to run, 2 when it is refused
 * (after saying why on stderr), -1 after --help printed the usage. Apart from
 * apb_cmd_train so the option fuzzer can drive it (fuzz/fuzz_options.c). */
int apb_cmd_train_parse(int argc, char **argv, apb_train_cfg *c, apb_cli_given *g, int *force);

/* SIGINT / SIGTERM remove the temporary files of writes in progress, then end
 * the process as the signal would (every command; main installs it). */
void apb_cli_signals_default(void);
/* SIGINT / SIGTERM ask for a graceful stop (core/stop.h) and a second one exits
 * at once; `what` says what the stop saves ("the position in the epoch"); NULL
 * stops as quietly (a data-parallel process other than 0). In signals.c. */
void apb_cli_signals_install(const char *cmd, const char *what);
/* The exit status of a command stopped on request: 128 + the signal (130, 143). */
int apb_cli_stop_status(void);

#endif
