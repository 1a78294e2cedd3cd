/* options.c - command-line option parsing shared by every command: `apb`'s
 * subcommands (cli/) and the benchmarks behind `apb bench` (bench/). */
#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int apb_cli_error(const char *cmd, apb_status s)
{
    const char *m = apb_errmsg();
    fprintf(stderr, "apb %s: %s\n", cmd, m && *m ? m : apb_status_name(s));
    return 1;
}

int apb_opt_str(int argc, char **argv, int *i, const char *name, const char **val, int *bad)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != 0)
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "apb: option %s needs a value\n", name);
        *bad = 1;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

int apb_opt_int(int argc, char **argv, int *i, const char *name, int *val, int *bad)
{
    const char *s;
    if (!apb_opt_str(argc, argv, i, name, &s, bad))
        return 0;
    if (*bad)
        return 1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < -2147483647L || v > 2147483647L) {
        fprintf(stderr, "apb: option %s: '%s' is not an integer\n", name, s);
        *bad = 1;
        return 1;
    }
    /* Every command's --threads comes through here, so the rule lives in one
     * place: 0 and -1 used to mean "all cores" without a word. */
    if (!strcmp(name, "--threads") && v < 1) {
        fprintf(stderr, "apb: option --threads: '%s' is not a thread count (give a number >= 1, "
                        "or leave --threads out for APB_THREADS or all cores)\n", s);
        *bad = 1;
        return 1;
    }
    *val = (int)v;
    return 1;
}

int apb_opt_float(int argc, char **argv, int *i, const char *name, double *val, int *bad)
{
    const char *s;
    if (!apb_opt_str(argc, argv, i, name, &s, bad))
        return 0;
    if (*bad)
        return 1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s) {
        fprintf(stderr, "apb: option %s: '%s' is not a number\n", name, s);
        *bad = 1;
        return 1;
    }
    *val = v;
    return 1;
}
