/* fuzz_options.c - libFuzzer target for command-line option parsing: `apb
 * train`'s whole parse loop (apb_cmd_train_parse, which touches no file and
 * runs nothing) over core/options.c's apb_opt_*, and the list parsers of `apb
 * report` (--methods, --budgets).
 *
 * Input: the arguments after `apb train`, separated by NUL bytes (at most 64).
 * fuzz/run.sh passes -close_fd_mask=3: the parse's messages and --help's usage
 * would otherwise flood the log.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    char *argv[66];
    int argc = 0;
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = 0;
    argv[argc++] = "train";
    for (char *p = copy; p <= copy + size && argc < 65; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    static apb_train_cfg c;
    static apb_cli_given g;
    int force;
    int rc = apb_cmd_train_parse(argc, argv, &c, &g, &force);
    if (rc != 0 && rc != 2 && rc != -1)
        abort();
    for (int i = 1; i < argc; i++) {
        unsigned methods;
        double v[APB_REPORT_MAX_LIST];
        int n;
        apb_report_methods_parse(argv[i], &methods);
        apb_report_list_parse(argv[i], v, APB_REPORT_MAX_LIST, &n);
    }
    free(copy);
    return 0;
}
