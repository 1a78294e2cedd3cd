/* test_env.c - what a user types around the commands: environment variables
 * (APB_ISA, APB_THREADS, HOME in dataset specs), --threads in every command,
 * and the help and defaults of `apb bench`.
 *
 * Most checks run the built CLI (build/apb beside the test binary) with its
 * output captured to files, so they see exactly what a user sees: the exit
 * status, stdout and stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "apbrt.h"
#include "dataset.h"
#include "fileio.h"
#include "options.h"
#include "randmodel.h"
#include "test.h"
#include "test_infer_util.h"
#include "threads.h"

/* Runs `ENV apb ARGS > out 2> err` in the shell; returns the exit status (-1 if
 * it did not exit normally) and the outputs (NUL-terminated, malloc'd). */
static int cli(const char *env, const char *args, char **out, char **err)
{
    char prog[2048];
    snprintf(prog, sizeof prog, "%s %s", env ? env : "", apb_test_cli());
    return apb_test_run(prog, args, out, err);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- ~ in dataset specs ---- */

/* CIFAR-10 binary files with n records each (labels i % 10) under dir. */
static int write_cifar10(const char *dir, int n)
{
    char path[1200];
    if (apb_mkdirs(dir) != APB_OK)
        return 1;
    unsigned char rec[3073] = {0};
    for (int b = 0; b <= 5; b++) {
        if (b)
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b);
        else
            snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        FILE *f = fopen(path, "wb");
        if (!f)
            return 1;
        for (int i = 0; i < n; i++) {
            rec[0] = (unsigned char)(i % 10);
            rec[1 + i] = (unsigned char)(b * 10 + i);
            fwrite(rec, 1, sizeof rec, f);
        }
        if (fclose(f))
            return 1;
    }
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fputs("airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n", f);
    return fclose(f) ? 1 : 0;
}

/* Opens spec with HOME set to home (NULL: unset); restores HOME. */
static apb_status open_with_home(const char *home, const char *spec, apb_dataset **ds)
{
    const char *was = getenv("HOME");
    char *saved = was ? strdup(was) : NULL;
    if (home)
        setenv("HOME", home, 1);
    else
        unsetenv("HOME");
    apb_status s = apb_dataset_open(spec, "train", ds);
    if (saved)
        setenv("HOME", saved, 1);
    else
        unsetenv("HOME");
    free(saved);
    return s;
}

APB_TEST(test_env_dataset_spec_expands_home)
{
    char home[1024], dir[1200], homeslash[1100];
    snprintf(home, sizeof home, "%s/home", apb_test_tmpdir());
    snprintf(dir, sizeof dir, "%s/data/cifar-10-batches-bin", home);
    CHECK(write_cifar10(dir, 3) == 0);
    apb_dataset *ds = NULL;
    /* the README's spelling, the parent folder, and HOME with a trailing slash */
    CHECK_OK(open_with_home(home, "cifar10:~/data/cifar-10-batches-bin", &ds));
    CHECK(apb_dataset_size(ds) == 15);
    apb_dataset_free(ds);
    CHECK_OK(open_with_home(home, "cifar10:~/data", &ds));
    CHECK(apb_dataset_size(ds) == 15);
    apb_dataset_free(ds);
    snprintf(homeslash, sizeof homeslash, "%s/data/", home);
    CHECK_OK(open_with_home(homeslash, "cifar-10:~", &ds));
    CHECK(apb_dataset_size(ds) == 15);
    apb_dataset_free(ds);
    /* every kind goes through the same expansion: the error names the expanded path */
    CHECK(open_with_home(home, "mnist:~/no-such-idx", &ds) != APB_OK);
    CHECK_MSG(strstr(apb_errmsg(), home) && !strstr(apb_errmsg(), "~"), "mnist: '%s'",
              apb_errmsg());
    CHECK(open_with_home(home, "imagenet:~/no-such-folder", &ds) != APB_OK);
    CHECK_MSG(strstr(apb_errmsg(), home), "imagenet: '%s'", apb_errmsg());
    /* ~user is another user's home: not ours to guess */
    CHECK(open_with_home(home, "cifar10:~nobody/data", &ds) != APB_OK);
    CHECK_MSG(strstr(apb_errmsg(), "~nobody"), "~nobody: '%s'", apb_errmsg());
    CHECK(open_with_home(NULL, "cifar10:~/data", &ds) != APB_OK);
    CHECK_MSG(strstr(apb_errmsg(), "HOME"), "HOME unset: '%s'", apb_errmsg());

    /* through the CLI, quoted so no shell expands it */
    char env[1200], *out, *err;
    snprintf(env, sizeof env, "HOME='%s'", home);
    int rc = cli(env, "data 'cifar10:~/data/cifar-10-batches-bin' --split train", &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, "samples=15 "), "apb data: exit %d\nstdout: %s\nstderr: %s", rc, out,
              err);
    free(out);
    free(err);
    return 0;
}

/* ---- --threads ---- */

APB_TEST(test_env_threads_option_refuses_below_one)
{
    /* the parser every command uses; other options keep their own meaning of 0 */
    char *argv2[] = {"apb", "--threads", "3"}, *argv3[] = {"apb", "--latency-threads", "0"};
    int i = 1, bad = 0, v = 7;
    CHECK(apb_opt_int(3, argv2, &i, "--threads", &v, &bad) == 1 && !bad && v == 3);
    i = 1;
    CHECK(apb_opt_int(3, argv3, &i, "--latency-threads", &v, &bad) == 1 && !bad && v == 0);

    /* every command that takes --threads; the data is missing, so a command that
     * accepted the value would fail fast rather than train */
    char never[1200], rm[1300];
    snprintf(never, sizeof never, "%s/never", apb_test_tmpdir());
    snprintf(rm, sizeof rm, "rm -rf %s", never);
    CHECK(system(rm) == 0);
    static const char *cmds[] = {
        "train --data cifar10:%1$s/none --out %1$s/never",
        "eval --ckpt %s/none.ckpt --data fashion-mnist",
        "infer %s/none.apb --data fashion-mnist",
        "data cifar10:%1$s/none --dump 1 %1$s/never",
        "report --data cifar10:%1$s/none --out %1$s/never",
        "bench sgemm --shape 8x8x8%.0s",
        "bench kernels --kind 1x1%.0s",
        "bench data%.0s",
        "bench train --model convnet%.0s",
        "bench --model convnet%.0s",
    };
    static const char *vals[] = {"0", "-1", "=0"};
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++)
        for (int k = 0; k < 3; k++) {
            char args[1600], base[1400], *out, *err;
            snprintf(base, sizeof base, cmds[c], apb_test_tmpdir());
            snprintf(args, sizeof args, "%s --threads%s%s", base, vals[k][0] == '=' ? "" : " ",
                     vals[k]);
            int rc = cli(NULL, args, &out, &err);
            const char *v = vals[k][0] == '=' ? vals[k] + 1 : vals[k];
            char quoted[16];
            snprintf(quoted, sizeof quoted, "'%s'", v);
            CHECK_MSG(rc != 0 && strstr(err, "--threads") && strstr(err, quoted) &&
                          strstr(err, ">= 1"),
                      "apb %s: exit %d, stderr '%s'", args, rc, err);
            free(out);
            free(err);
        }
    struct stat st;
    CHECK_MSG(stat(never, &st) != 0, "a refused command created %s", never);
    return 0;
}

/* ---- APB_ISA, APB_THREADS ---- */

APB_TEST(test_env_bad_variables_warn_once)
{
    CHECK(apb_threads_env(NULL) == 0 && apb_threads_env("") == 0);
    CHECK(apb_threads_env("2") == 2 && apb_threads_env("16") == 16);
    CHECK(apb_threads_env("abc") < 0 && apb_threads_env("0") < 0 && apb_threads_env("-3") < 0);
    CHECK(apb_threads_env("2x") < 0 && apb_threads_env("99999999999") < 0);

    /* a model and an image `apb infer` runs without --threads (so it reads APB_THREADS) */
    apb_rng r;
    apb_rng_seed(&r, 3);
    ti_model t;
    ti_convnet(&t, &r, 3, 8, 10);
    char model[1200], img[1200], args[2600], *out, *err;
    snprintf(model, sizeof model, "%s/m.apb", apb_test_tmpdir());
    snprintf(img, sizeof img, "%s/x.png", apb_test_tmpdir());
    CHECK_OK(apbrt_save(&t.d, model));
    ti_free(&t);
    unsigned char rgb[8 * 8 * 3];
    for (int i = 0; i < (int)sizeof rgb; i++)
        rgb[i] = (unsigned char)(i * 37);
    CHECK_OK(apb_png_write_rgb(img, rgb, 8, 8, 3));
    snprintf(args, sizeof args, "infer %s %s", model, img);

    static const struct {
        const char *env, *var, *value, *accepted;
    } bad[] = {
        {"APB_ISA=bogus", "APB_ISA", "'bogus'", "ref, avx2 or avx512"},
        {"APB_ISA=AVX2", "APB_ISA", "'AVX2'", "ref, avx2 or avx512"},
        {"APB_THREADS=abc", "APB_THREADS", "'abc'", ">= 1"},
        {"APB_THREADS=0", "APB_THREADS", "'0'", ">= 1"},
        {"APB_THREADS=-2", "APB_THREADS", "'-2'", ">= 1"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int rc = cli(bad[k].env, args, &out, &err);
        CHECK_MSG(rc == 0 && strstr(out, "class"), "%s apb %s: exit %d\n%s%s", bad[k].env, args,
                  rc, out, err);
        CHECK_MSG(count(err, bad[k].var) == 1 && strstr(err, bad[k].value) &&
                      strstr(err, bad[k].accepted),
                  "%s: expected one warning naming %s, %s and %s; stderr:\n%s", bad[k].env,
                  bad[k].var, bad[k].value, bad[k].accepted, err);
        free(out);
        free(err);
    }
    /* good values stay quiet */
    int rc = cli("APB_ISA=ref APB_THREADS=2", args, &out, &err);
    CHECK_MSG(rc == 0 && !strstr(err, "warning"), "good values: exit %d, stderr '%s'", rc, err);
    free(out);
    free(err);
    /* and `apb --help` says what the good values are */
    rc = cli(NULL, "--help", &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, "APB_THREADS=N") && strstr(out, "N >= 1") &&
                  strstr(out, "APB_ISA=ref|avx2|avx512"),
              "apb --help:\n%s", out);
    free(out);
    free(err);
    return 0;
}

/* ---- apb bench: help, options, defaults, baseline ---- */

APB_TEST(test_env_bench_help)
{
    static const char *asks[] = {"bench --help",           "bench sgemm --help",
                                 "bench kernels --help",   "bench data --help",
                                 "bench train --help",     "bench --model convnet --help",
                                 "bench model.apb --help", "bench sgemm --threads 2 -h"};
    for (size_t k = 0; k < sizeof asks / sizeof asks[0]; k++) {
        char *out, *err;
        int rc = cli(NULL, asks[k], &out, &err);
        CHECK_MSG(rc == 0 && strstr(out, "usage: apb bench") && !*err,
                  "apb %s: exit %d\nstdout: %s\nstderr: %s", asks[k], rc, out, err);
        free(out);
        free(err);
    }
    /* the overview lists every option of every benchmark */
    static const char *opts[] = {"--threads",   "--reps",        "--shape",      "--kind",
                                 "--repeats",   "--model",       "--batch",      "--steps",
                                 "--warmup",    "--quant ",      "--act",        "--input",
                                 "--classes",   "--fp-fraction", "--quant-first", "--quant-last",
                                 "--no-table",  "--no-baseline"};
    char *out, *err;
    CHECK(cli(NULL, "bench --help", &out, &err) == 0);
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
        CHECK_MSG(strstr(out, opts[k]), "apb bench --help does not mention %s:\n%s", opts[k], out);
    /* --model's defaults are spelled out */
    CHECK(strstr(out, "1x28x28") && strstr(out, "3x32x32") && strstr(out, "(default fp)"));
    free(out);
    free(err);
    /* a typo is still an error, named, with the usage */
    int rc = cli(NULL, "bench kernels --knd 1x1", &out, &err);
    CHECK_MSG(rc != 0 && strstr(err, "--knd") && strstr(err, "usage: apb bench kernels"),
              "typo: exit %d, stderr '%s'", rc, err);
    free(out);
    free(err);
    /* bench data takes --threads (checked without running it: --repeats 0 is refused
     * after the options are read) */
    rc = cli(NULL, "bench data --threads 1 --repeats 0", &out, &err);
    CHECK_MSG(rc != 0 && strstr(err, "--repeats") && !strstr(err, "unknown"),
              "bench data --threads 1: exit %d, stderr '%s'", rc, err);
    free(out);
    free(err);
    return 0;
}

/* Value of `key=` in line as a number; -1 when absent or not a number. */
static double keyval(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, " %s=", key);
    const char *p = strstr(line, k);
    double v;
    return p && sscanf(p + strlen(k), "%lf", &v) == 1 ? v : -1;
}

APB_TEST(test_env_bench_model_defaults_and_baseline)
{
    char *out, *err;
    /* per-architecture input and classes; activations fp unless --act */
    static const struct {
        const char *arch, *input;
        int classes;
    } archs[] = {{"convnet", "1x28x28", 10}, {"resnet20", "3x32x32", 10}};
    for (size_t k = 0; k < sizeof archs / sizeof archs[0]; k++) {
        char args[256];
        snprintf(args, sizeof args, "bench --model %s --threads 1 --reps 2 --no-table", archs[k].arch);
        int rc = cli(NULL, args, &out, &err);
        CHECK_MSG(rc == 0, "apb %s: exit %d: %s", args, rc, err);
        char want[64];
        snprintf(want, sizeof want, " input=%s ", archs[k].input);
        CHECK_MSG(strstr(out, want) && strstr(out, " quant=apb act=fp "), "apb %s:\n%s", args, out);
        /* the baseline: the same model on the dense path, in the same line */
        double dense = keyval(out, "dense_ms_median"), sp = keyval(out, "speedup_vs_dense");
        double med = keyval(out, "latency_ms_median");
        CHECK_MSG(dense > 0 && sp > 0 && med > 0, "no baseline in:\n%s", out);
        CHECK_CLOSE(sp, dense / med, 0.02, 0.01);
        CHECK_MSG(count(out, "op=infer ") == 1, "one line per thread count:\n%s", out);
        free(out);
        free(err);
        /* the file it timed has that many classes */
        unsigned char *buf;
        size_t size;
        apb_model_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        snprintf(cfg.arch, sizeof cfg.arch, "%s", archs[k].arch);
        CHECK(sscanf(archs[k].input, "%dx%dx%d", &cfg.in_c, &cfg.in_h, &cfg.in_w) == 3);
        cfg.num_classes = archs[k].classes;
        cfg.wq = APB_WQ_APB;
        cfg.aq = APB_AQ_FP;
        cfg.prune_sparsity = 0.9f;
        apb_model *m;
        CHECK_OK(apb_random_model_cfg(&cfg, 0.03, 1, &m));
        apb_status s = apb_random_model_export(m, &buf, &size);
        apb_model_free(m);
        CHECK_OK(s);
        free(buf);
        char sz[64];
        snprintf(sz, sizeof sz, " file_bytes=%zu ", size);
        rc = cli(NULL, args, &out, &err);
        CHECK_MSG(rc == 0 && strstr(out, sz), "%s: expected%s(the random %s with %d classes):\n%s",
                  args, sz, archs[k].arch, archs[k].classes, out);
        free(out);
        free(err);
    }
    /* a model file gets the baseline too; --no-baseline says na */
    char path[1200], args[1400];
    unsigned char *buf;
    size_t size;
    CHECK_OK(apb_random_model_file("convnet", APB_WQ_APB, APB_AQ_BINARY, 1, 28, 28, 10, 0.03, 1,
                                   &buf, &size));
    snprintf(path, sizeof path, "%s/c.apb", apb_test_tmpdir());
    CHECK_OK(apb_file_write_atomic(path, buf, size));
    free(buf);
    snprintf(args, sizeof args, "bench %s --threads 1 --reps 2 --no-table", path);
    int rc = cli(NULL, args, &out, &err);
    CHECK_MSG(rc == 0 && keyval(out, "dense_ms_median") > 0 && keyval(out, "speedup_vs_dense") > 0 &&
                  strstr(out, " act=binary "),
              "apb %s: exit %d\n%s%s", args, rc, out, err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "bench %s --threads 1 --reps 2 --no-table --no-baseline", path);
    rc = cli(NULL, args, &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, " dense_ms_median=na speedup_vs_dense=na"), "apb %s:\n%s",
              args, out);
    free(out);
    free(err);
    return 0;
}

/* `apb bench train --model resnet18`: the ImageNet case (224x224, 1000 classes,
 * batch 32 unless --batch), one op=train line with its peak memory; the default
 * run (no --model) leaves it out. One step of batch 1 keeps it short. */
APB_TEST(test_env_bench_train_resnet18)
{
    char *out, *err;
    int rc = cli(NULL, "bench train --model resnet18 --batch 1 --steps 1 --warmup 0 --threads 1",
                 &out, &err);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, err);
    CHECK_MSG(count(out, "op=train ") == 1 && strstr(out, " model=resnet18 ") &&
                  strstr(out, " batch=1 ") && keyval(out, "images_per_s") > 0 &&
                  keyval(out, "max_rss_mb") > 0,
              "one resnet18 line expected:\n%s", out);
    /* random labels over 1000 classes: the first loss is near ln(1000) = 6.9,
     * far from the 10-class ln(10) = 2.3 */
    double loss = keyval(out, "loss");
    CHECK_MSG(loss > 4.0 && loss < 20.0, "loss %g: not a 1000-class model?\n%s", loss, out);
    free(out);
    free(err);
    rc = cli(NULL, "bench train --help", &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, "resnet18") && strstr(out, "resnet18 32") &&
                  strstr(out, "only when named"),
              "help:\n%s", out);
    free(out);
    free(err);
    return 0;
}

/* ---- the repository's own pointers ---- */

/* Every relative link in README.md names a file inside the repository. */
APB_TEST(test_env_readme_links_stay_in_the_repository)
{
    unsigned char *buf;
    size_t n;
    CHECK_OK(apb_file_read("README.md", &buf, &n));
    char *s = (char *)realloc(buf, n + 1);
    CHECK(s);
    s[n] = 0;
    int links = 0;
    for (const char *p = strstr(s, "]("); p; p = strstr(p + 2, "](")) {
        const char *e = strchr(p + 2, ')');
        CHECK(e && e - p < 300);
        char target[300];
        snprintf(target, sizeof target, "%.*s", (int)(e - p - 2), p + 2);
        if (strstr(target, "://"))
            continue;
        struct stat st;
        CHECK_MSG(strncmp(target, "../", 3) && target[0] != '/',
                  "README.md links %s, outside the repository", target);
        CHECK_MSG(stat(target, &st) == 0, "README.md links %s, which does not exist", target);
        links++;
    }
    /* and names no file outside the repository in plain text either */
    CHECK_MSG(!strstr(s, "../shared"), "README.md mentions ../shared");
    CHECK(links >= 5);
    free(s);
    return 0;
}

/* The CI time is quoted once, in README.md; `make deps` really checks the packages. */
APB_TEST(test_env_ci_and_make_deps)
{
    unsigned char *buf;
    size_t n;
    CHECK_OK(apb_file_read(".ci/run", &buf, &n));
    char *s = (char *)realloc(buf, n + 1);
    CHECK(s);
    s[n] = 0;
    for (const char *p = s; *p; p++) {
        int a, b;
        char u;
        CHECK_MSG(!(sscanf(p, "%d%c%d", &a, &u, &b) == 3 && (u == 'm' || u == ':')) &&
                      !(sscanf(p, "%d min%c", &a, &u) == 2),
                  ".ci/run quotes a duration (README.md has the CI time): '%.30s'", p);
    }
    free(s);
    char out[4096];
    FILE *f = popen("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n deps 2>&1", "r");
    CHECK(f);
    size_t got = fread(out, 1, sizeof out - 1, f);
    out[got] = 0;
    CHECK_MSG(pclose(f) == 0 && strstr(out, ".ci/deps.sh"), "make -n deps: '%s'", out);
    return 0;
}
