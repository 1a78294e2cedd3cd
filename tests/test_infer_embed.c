/* test_infer_embed.c - the runtime really is deployable on its own:
 * docs/embed_example.c compiles against build/libapbrt.a (nothing else from apb)
 * and prints the model's top class, and the archive's symbols contain nothing
 * from train/, layers/, optim/, data/ or the autograd. `make install` into a
 * scratch prefix gives a libapbrt.so that a program built with pkg-config runs
 * against without LD_LIBRARY_PATH, and that exports exactly the functions of
 * apbrt.h. Needs `make all` first (it builds the libraries); the sanitizer
 * build checks build/san/.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"
#include "fileio.h"
#include "test.h"
#include "test_infer_util.h"

/* the Makefile passes the build directory of this configuration */
#ifdef APB_BUILD_DIR
#define RT_DIR APB_BUILD_DIR
#else
#define RT_DIR "build"
#endif
#ifdef __SANITIZE_ADDRESS__
#define RT_FLAGS "-fsanitize=address,undefined"
#else
#define RT_FLAGS ""
#endif

static int run_cmd(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    return pclose(p);
}

/* Writes a small model to DIR/m.apb and the line embed_example prints for it. */
static int example_model(char *model, size_t mcap, char *want, size_t wcap)
{
    apb_rng r;
    apb_rng_seed(&r, 42);
    ti_model t;
    ti_convnet(&t, &r, 3, 8, 10);
    snprintf(model, mcap, "%s/m.apb", apb_test_tmpdir());
    CHECK_OK(apbrt_save(&t.d, model));
    ti_free(&t);
    apbrt_model *m;
    CHECK(apbrt_load(model, &m) == 0);
    float x[3 * 64] = {0}, lg[10];
    CHECK(apbrt_run(m, x, 1, lg) == 0);
    int best = 0;
    for (int i = 1; i < 10; i++)
        best = lg[i] > lg[best] ? i : best;
    snprintf(want, wcap, "top class: %d %s", best, apbrt_class_name(m, best));
    apbrt_free(m);
    return 0;
}

APB_TEST(test_infer_embed_example_runs)
{
    char model[512], want[128], exe[512], cmd[2048], out[4096];
    if (example_model(model, sizeof model, want, sizeof want))
        return 1;
    snprintf(exe, sizeof exe, "%s/embed", apb_test_tmpdir());
    snprintf(cmd, sizeof cmd, "cc -std=c11 -Wall -Werror -Iinfer docs/embed_example.c " RT_DIR
             "/libapbrt.a -lm -fopenmp " RT_FLAGS " -o %s 2>&1", exe);
    int rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0, "compiling the example against " RT_DIR "/libapbrt.a failed:\n%s", out);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", exe, model);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0 && strstr(out, want), "example printed '%s', expected '%s'", out, want);
    snprintf(cmd, sizeof cmd, "%s %s/nothing.apb 2>&1", exe, apb_test_tmpdir());
    rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc != 0 && strstr(out, "nothing.apb"), "missing model: '%s'", out);
    return 0;
}

/* README section 4 shows the whole of docs/embed_example.c (which the tests
 * compile and run), not an excerpt that drifts from it. */
APB_TEST(test_infer_embed_readme_shows_the_example)
{
    unsigned char *readme, *example;
    size_t rn, en;
    CHECK_OK(apb_file_read("README.md", &readme, &rn));
    CHECK_OK(apb_file_read("docs/embed_example.c", &example, &en));
    char *r = (char *)realloc(readme, rn + 1);
    CHECK(r);
    r[rn] = 0;
    const char *block = strstr(r, "```c\n");
    CHECK_MSG(block, "README.md has no ```c block");
    block += 5;
    const char *end = strstr(block, "```");
    CHECK(end);
    size_t bn = (size_t)(end - block);
    size_t same = 0;
    while (same < bn && same < en && block[same] == (char)example[same])
        same++;
    CHECK_MSG(bn == en && same == en, "README's C block differs from docs/embed_example.c at "
              "byte %zu (block %zu bytes, file %zu): '%.60s'", same, bn, en, block + same);
    free(r);
    free(example);
    return 0;
}

/* The README's deployment path: `make install PREFIX=...` (the files this build
 * made: -o all keeps make from rebuilding anything under a running suite), then
 * `cc app.c $(pkg-config --cflags --libs apbrt)` with the installed header, and
 * the program starts with no LD_LIBRARY_PATH. */
APB_TEST(test_infer_embed_installed_shared_library)
{
    char model[512], want[128], prefix[PATH_MAX + 16], exe[PATH_MAX + 32], cmd[8192];
    static char out[1 << 16];
    if (example_model(model, sizeof model, want, sizeof want))
        return 1;
    char tmp[PATH_MAX];
    CHECK(realpath(apb_test_tmpdir(), tmp));
    snprintf(prefix, sizeof prefix, "%s/prefix", tmp);
    snprintf(exe, sizeof exe, "%s/embed-so", tmp);
    /* MAKEFLAGS of an outer `make test` would hand this make its jobserver */
    snprintf(cmd, sizeof cmd, "rm -rf %s && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -o all "
             "install BUILD=" RT_DIR " PREFIX=%s 2>&1", prefix, prefix);
    int rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0, "make install failed:\n%s", out);
    snprintf(cmd, sizeof cmd, "readlink %s/lib/libapbrt.so 2>&1", prefix);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0 && !strcmp(out, "libapbrt.so.1\n"), "lib/libapbrt.so is not a link to "
              "libapbrt.so.1: '%s'", out);
    snprintf(cmd, sizeof cmd, "PKG_CONFIG_PATH=%s/lib/pkgconfig; export PKG_CONFIG_PATH; "
             "cc -std=c11 -Wall -Werror docs/embed_example.c $(pkg-config --cflags --libs apbrt) "
             RT_FLAGS " -o %s 2>&1", prefix, exe);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0, "building against the installed libapbrt failed:\n%s", out);
    snprintf(cmd, sizeof cmd, "readelf -d %s 2>&1", exe);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0 && strstr(out, "[libapbrt.so.1]"), "the program does not record the "
              "SONAME libapbrt.so.1:\n%s", out);
    snprintf(cmd, sizeof cmd, "env -u LD_LIBRARY_PATH %s %s 2>&1", exe, model);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0 && strstr(out, want), "installed example printed '%s', expected '%s'", out,
              want);

    /* exports: exactly the APBRT_API functions of the installed header */
    static char hdr[1 << 16], api[1 << 14];
    snprintf(cmd, sizeof cmd, "cat %s/include/apb/apbrt.h", prefix);
    CHECK(run_cmd(cmd, hdr, sizeof hdr) == 0);
    size_t al = 0;
    int napi = 0;
    for (const char *p = strstr(hdr, "\nAPBRT_API "); p; p = strstr(p + 1, "\nAPBRT_API ")) {
        const char *q = strstr(p, "apbrt_"), *e = q ? strchr(q, '(') : NULL;
        CHECK(e && e - q < 64 && al + 70 < sizeof api);
        al += (size_t)sprintf(api + al, " %.*s ", (int)(e - q), q);
        napi++;
    }
    CHECK_MSG(napi >= 20, "only %d APBRT_API declarations in the installed apbrt.h", napi);
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s/lib/libapbrt.so.1 2>&1", prefix);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0, "nm -D failed: %s", out);
    int nexp = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char addr[64], type[8], name[256], key[260];
        if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3)
            continue;
        snprintf(key, sizeof key, " %s ", name);
        CHECK_MSG(strstr(api, key), "libapbrt.so exports %s (%s), which apbrt.h does not declare",
                  name, type);
        nexp++;
    }
    CHECK_MSG(nexp == napi, "libapbrt.so exports %d symbols, apbrt.h declares %d functions", nexp,
              napi);
    return 0;
}

APB_TEST(test_infer_runtime_symbols_self_contained)
{
    static char out[1 << 20];
    const char *lib = getenv("APB_TEST_RTLIB") ? getenv("APB_TEST_RTLIB") : RT_DIR "/libapbrt.a";
    char cmd[600];
    snprintf(cmd, sizeof cmd, "nm -g %s 2>&1", lib);
    int rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0 && strlen(out) > 100, "nm failed: %.300s", out);
    static const char *forbidden[] = {"apb_apply",   "apb_backward", "apb_var_",    "apb_tape",
                                      "apb_conv2d",  "apb_linear",   "apb_batchnorm", "apb_dataset_",
                                      "apb_loader_", "apb_optim",    "apb_cmd_",    "apb_train",
                                      "apb_checkpoint", "apb_export", "apb_op_",    "apb_model_"};
    /* every undefined apb symbol must be defined inside the archive */
    char *save = NULL, *line;
    static char defined[1 << 20];
    defined[0] = 0;
    size_t dl = 0;
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char a[256], b[256], c[256], type, *name;
        int nt = sscanf(line, "%255s %255s %255s", a, b, c);
        if (nt == 3 && strlen(b) == 1)
            type = b[0], name = c;
        else if (nt == 2 && strlen(a) == 1)
            type = a[0], name = b;
        else
            continue;
        for (size_t k = 0; k < sizeof forbidden / sizeof forbidden[0]; k++)
            CHECK_MSG(strncmp(name, forbidden[k], strlen(forbidden[k])) != 0,
                      "libapbrt.a references training symbol %s (%c)", name, type);
        if (type != 'U' && dl + strlen(name) + 3 < sizeof defined)
            dl += (size_t)sprintf(defined + dl, " %s ", name);
    }
    snprintf(cmd, sizeof cmd, "nm -g -u %s 2>&1", lib);
    rc = run_cmd(cmd, out, sizeof out);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[256], key[260];
        if (sscanf(line, " U %255s", name) != 1 || strncmp(name, "apb", 3))
            continue;
        snprintf(key, sizeof key, " %s ", name);
        CHECK_MSG(strstr(defined, key), "libapbrt.a needs %s, which is not in the runtime", name);
    }
    CHECK(strstr(defined, " apbrt_run ") && strstr(defined, " apbrt_load "));
    return 0;
}
