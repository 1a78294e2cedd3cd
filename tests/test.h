/* test.h - the project's tiny test harness.
 *
 * APB_TEST(name) { ... return 0; } registers a test through a constructor, so a
 * new test file needs no edit anywhere else. A test returns 0 on success; the
 * CHECK macros print file:line, the failing expression / first mismatch and
 * return 1. A test that cannot run here (a tool it needs is not installed)
 * prints why and returns APB_TEST_SKIP: it is counted as skipped, never as
 * passed. tests/run_tests.c runs them all (or those whose name contains argv[1])
 * and ends with "N passed, N failed" (then ", N skipped" when some were),
 * exiting non-zero on any failure.
 */
#ifndef APB_TEST_H
#define APB_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "rng.h"

typedef int (*apb_test_fn)(void);

/* Return value of a test that could not run here (after printing why). */
#define APB_TEST_SKIP 77
void apb_test_register(const char *name, apb_test_fn fn, const char *file);

#define APB_TEST(name)                                                          \
    static int name(void);                                                      \
    __attribute__((constructor)) static void name##_register(void)              \
    {                                                                           \
        apb_test_register(#name, name, __FILE__);                               \
    }                                                                           \
    static int name(void)

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                           \
        }                                                                       \
    } while (0)

#define CHECK_MSG(cond, ...)                                                    \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "  %s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            return 1;                                                           \
        }                                                                       \
    } while (0)

/* Status-returning call must succeed; prints apb_errmsg() otherwise. */
#define CHECK_OK(expr)                                                          \
    do {                                                                        \
        apb_status check_s_ = (expr);                                           \
        if (check_s_ != APB_OK) {                                               \
            fprintf(stderr, "  %s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, \
                    apb_errmsg());                                              \
            return 1;                                                           \
        }                                                                       \
    } while (0)

/* |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, rtol, atol)                                           \
    do {                                                                        \
        double ca_ = (a), cb_ = (b);                                            \
        if (!(fabs(ca_ - cb_) <= (atol) + (rtol) * fabs(cb_))) {                \
            fprintf(stderr, "  %s:%d: %s = %.9g, expected %s = %.9g\n", __FILE__, \
                    __LINE__, #a, ca_, #b, cb_);                                \
            return 1;                                                           \
        }                                                                       \
    } while (0)

/* Compares float arrays; reports the first mismatch and the max error. */
int apb_test_close_f32(const char *file, int line, const char *what, const float *got,
                       const float *want, long n, double rtol, double atol);
#define CHECK_ARRAY_CLOSE(got, want, n, rtol, atol)                             \
    do {                                                                        \
        if (apb_test_close_f32(__FILE__, __LINE__, #got, got, want, (long)(n), rtol, atol)) \
            return 1;                                                           \
    } while (0)

/* Path of the apb CLI built beside the test binary (build/apb or build/san/apb). */
const char *apb_test_cli(void);

/* A per-run scratch directory ("build/test-tmp/<test>") for generated files. */
const char *apb_test_tmpdir(void);

/* x[i] = scale * (next normal draw of r), i < n. */
void apb_test_fill_normal(apb_rng *r, float *x, int64_t n, float scale);

/* Runs `PROGRAM ARGS` (a shell command line) with stdout and stderr captured in
 * files of the test's tmpdir; returns the exit status (-1 if it did not exit
 * normally) and the outputs, NUL-terminated and malloc'd (caller frees). */
int apb_test_run(const char *program, const char *args, char **out, char **err);
/* The same for the apb CLI (apb_test_cli()). */
int apb_test_cli_run(const char *args, char **out, char **err);

#endif
