/* run_tests.c - runs every APB_TEST registered in the linked test files.
 *
 * Usage: build/run_tests [substring]   (only tests whose name contains it)
 * Last line: "N passed, N failed". Tests that could not run here (APB_TEST_SKIP:
 * shown as "skip", never counted as passed) are counted on the line before it,
 * "N skipped (not run here, not counted as passed)"; exit status 1 when anything failed, or when the substring matches
 * no test (a typo in `make test T=...` must not pass).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "test.h"

typedef struct {
    const char *name, *file;
    apb_test_fn fn;
} test_entry;

static test_entry *tests;
static int ntests, cap;
static char tmpdir[512];

void apb_test_register(const char *name, apb_test_fn fn, const char *file)
{
    if (ntests == cap) {
        cap = cap ? 2 * cap : 64;
        tests = realloc(tests, (size_t)cap * sizeof *tests);
        if (!tests)
            abort();
    }
    tests[ntests++] = (test_entry){name, file, fn};
}

const char *apb_test_tmpdir(void) { return tmpdir; }

void apb_test_fill_normal(apb_rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * apb_rng_normal(r);
}

const char *apb_test_cli(void)
{
    static char path[1024];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 8);
    if (n <= 0)
        return "build/apb";
    path[n] = 0;
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "apb");
    return path;
}

int apb_test_run(const char *program, const char *args, char **out, char **err)
{
    const char *dir = apb_test_tmpdir();
    char cmd[8192], po[1200], pe[1200];
    snprintf(po, sizeof po, "%s/out.txt", dir);
    snprintf(pe, sizeof pe, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "%s %s > %s 2> %s", program, args, po, pe);
    fflush(stdout);
    int st = system(cmd);
    const char *paths[2] = {po, pe};
    char **dst[2] = {out, err};
    for (int k = 0; k < 2; k++) {
        unsigned char *b = NULL;
        size_t n = 0;
        if (apb_file_read(paths[k], &b, &n) != APB_OK)
            n = 0;
        char *s = malloc(n + 1);
        if (!s)
            abort();
        if (n)
            memcpy(s, b, n);
        s[n] = 0;
        free(b);
        *dst[k] = s;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int apb_test_cli_run(const char *args, char **out, char **err)
{
    return apb_test_run(apb_test_cli(), args, out, err);
}

int apb_test_close_f32(const char *file, int line, const char *what, const float *got,
                       const float *want, long n, double rtol, double atol)
{
    long bad = -1, nbad = 0;
    double maxerr = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);
        if (e > maxerr || e != e)
            maxerr = e;
        if (!(e <= atol + rtol * fabs((double)want[i]))) {
            if (bad < 0)
                bad = i;
            nbad++;
        }
    }
    if (bad >= 0) {
        fprintf(stderr, "  %s:%d: %s: %ld of %ld elements differ; first at [%ld]: %.9g vs %.9g; max abs err %.3g\n",
                file, line, what, nbad, n, bad, got[bad], want[bad], maxerr);
        return 1;
    }
    return 0;
}

static int cmp(const void *a, const void *b)
{
    const test_entry *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    qsort(tests, (size_t)ntests, sizeof *tests, cmp);
    int passed = 0, failed = 0, skipped = 0, matched = 0;
    for (int i = 0; i < ntests; i++)
        matched += !filter || strstr(tests[i].name, filter) != NULL;
    if (matched == 0) {
        if (filter)
            fprintf(stderr, "run_tests: no test matches '%s'\n", filter);
        else
            fprintf(stderr, "run_tests: no tests are linked in\n");
        printf("0 passed, 0 failed\n");
        return 1;
    }
    mkdir("build", 0777);
    mkdir("build/test-tmp", 0777);
    for (int i = 0; i < ntests; i++) {
        if (filter && !strstr(tests[i].name, filter))
            continue;
        snprintf(tmpdir, sizeof tmpdir, "build/test-tmp/%s", tests[i].name);
        mkdir(tmpdir, 0777);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("%-4s %-44s %7.2fs  (%s)\n", r == APB_TEST_SKIP ? "skip" : r ? "FAIL" : "ok",
               tests[i].name, s, tests[i].file);
        fflush(stdout);
        if (r == APB_TEST_SKIP)
            skipped++;
        else if (r)
            failed++;
        else
            passed++;
    }
    if (skipped)
        printf("%d skipped (not run here, not counted as passed)\n", skipped);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
