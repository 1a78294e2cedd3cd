/* test_writes.c - every file apb writes survives a failed write: disk full
 * (injected with apb_fileio_fault / APB_DEBUG_WRITE_FAIL), a file-size limit
 * (RLIMIT_FSIZE, in a child process and through `ulimit -f` for the commands)
 * and a read-only folder. Each writer must report the path and the OS error,
 * remove its temporary file and leave the previous file as it was; a command
 * must never die of SIGXFSZ.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apbrt_model.h"
#include "checkpoint.h"
#include "dataset.h"
#include "export.h"
#include "fileio.h"
#include "plot.h"
#include "report.h"
#include "test.h"

/* What the writers write: a small convnet, its checkpoint, its export, an
 * image and a plot. */
typedef struct {
    apb_model *m;
    apb_ckpt_meta *meta;
    apb_export ex;
    unsigned char *rgb; /* [256, 256, 3] noise (does not compress) */
    unsigned char *blob;
    size_t blob_n;
} fixture;

static int fixture_make(fixture *f)
{
    memset(f, 0, sizeof *f);
    apb_model_cfg c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "convnet");
    c.in_c = 1, c.in_h = 28, c.in_w = 28, c.num_classes = 10;
    if (apb_model_build(&c, 1, &f->m))
        return 1;
    f->meta = calloc(1, sizeof *f->meta);
    f->meta->model = c;
    snprintf(f->meta->classes, sizeof f->meta->classes, "0|1|2|3|4|5|6|7|8|9");
    f->meta->std[0] = f->meta->std[1] = f->meta->std[2] = 1;
    const char *names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    if (apb_export_build(f->m, names, 10, f->meta->mean, f->meta->std, 0, &f->ex))
        return 1;
    f->rgb = malloc(256 * 256 * 3);
    f->blob_n = 100000;
    f->blob = malloc(f->blob_n);
    apb_rng r;
    apb_rng_seed(&r, 9);
    for (int i = 0; i < 256 * 256 * 3; i++)
        f->rgb[i] = (unsigned char)apb_rng_next(&r);
    for (size_t i = 0; i < f->blob_n; i++)
        f->blob[i] = (unsigned char)i;
    return 0;
}

static void fixture_free(fixture *f)
{
    apb_model_free(f->m);
    apb_export_free(&f->ex);
    free(f->meta);
    free(f->rgb);
    free(f->blob);
}

static const char *const WRITERS[] = {"file", "checkpoint", "export", "png", "plot"};
#define NWRITERS 5

/* Writer k writes `path` (every one through the atomic writer, none uses OpenMP,
 * so a forked child may call them). */
static apb_status write_one(const fixture *f, int k, const char *path)
{
    static const double x[3] = {1, 2, 32}, y[3] = {80, 85, 90};
    apb_plot_series s = {.label = "APB", .n = 3, .x = x, .y = y, .connect = 1};
    apb_plot_opts o = {.title = "failed writes", .width = 900, .height = 600, .log_x = 1};
    switch (k) {
    case 0: return apb_file_write_atomic(path, f->blob, f->blob_n);
    case 1: return apb_ckpt_save(path, f->meta, f->m, NULL, 0);
    case 2: return apbrt_save(&f->ex.desc, path);
    case 3: return apb_png_write_rgb(path, f->rgb, 256, 256, 3);
    default: return apb_plot_png(path, &o, &s, 1);
    }
}

/* Files in dir whose name contains ".tmp" (left-over temporary files). */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp") != NULL;
    if (d)
        closedir(d);
    return n;
}

static const char PREVIOUS[] = "the previous file, which a failed write must leave alone\n";

/* Writer k over a previous file must fail with the path and `oserr` in the
 * message, keep the previous file and leave no temporary file. */
static int expect_failure(const fixture *f, int k, const char *dir, const char *oserr)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.out", dir, WRITERS[k]);
    apb_status s = write_one(f, k, path);
    const char *msg = apb_errmsg();
    CHECK_MSG(s == APB_EIO, "%s: status %d: %s", WRITERS[k], s, msg);
    CHECK_MSG(strstr(msg, path) && strstr(msg, oserr), "%s: message lacks the path or '%s': %s",
              WRITERS[k], oserr, msg);
    unsigned char *d;
    size_t n;
    CHECK_OK(apb_file_read(path, &d, &n));
    CHECK_MSG(n == sizeof PREVIOUS - 1 && !memcmp(d, PREVIOUS, n), "%s: the previous file changed",
              WRITERS[k]);
    free(d);
    CHECK_MSG(count_tmp(dir) == 0, "%s: temporary file left in %s", WRITERS[k], dir);
    return 0;
}

/* The scratch folders outlive a suite run: start each one empty. */
static int fresh_dir(const char *dir)
{
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    CHECK_OK(apb_mkdirs(dir));
    return 0;
}

static int put_previous(const char *dir)
{
    for (int k = 0; k < NWRITERS; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s.out", dir, WRITERS[k]);
        CHECK_OK(apb_file_write_atomic(path, PREVIOUS, sizeof PREVIOUS - 1));
    }
    return 0;
}

/* Disk full at the first, an early and a late write of every writer. */
APB_TEST(test_writes_disk_full_keeps_previous_files)
{
    fixture f;
    CHECK(fixture_make(&f) == 0);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/full", apb_test_tmpdir());
    CHECK(fresh_dir(dir) == 0);
    CHECK(put_previous(dir) == 0);
    const long nth[3] = {1, 2, 40};
    for (int k = 0; k < NWRITERS; k++)
        for (int i = 0; i < 3; i++) {
            /* single-write writers only have a first write */
            if (i > 0 && k != 1)
                break;
            apb_fileio_fault(nth[i], ENOSPC, 0, ".out");
            CHECK_MSG(expect_failure(&f, k, dir, strerror(ENOSPC)) == 0, "write %ld", nth[i]);
        }
    apb_fileio_fault(0, 0, 0, NULL);
    /* and then they all write */
    for (int k = 0; k < NWRITERS; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s.out", dir, WRITERS[k]);
        CHECK_OK(write_one(&f, k, path));
    }
    fixture_free(&f);
    return 0;
}

/* A 4 KiB file-size limit in a child process that ignores SIGXFSZ, as the apb
 * command does: every writer gets EFBIG and says so. */
APB_TEST(test_writes_file_size_limit_keeps_previous_files)
{
    fixture f;
    CHECK(fixture_make(&f) == 0);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/fsize", apb_test_tmpdir());
    CHECK(fresh_dir(dir) == 0);
    CHECK(put_previous(dir) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        int bad = setrlimit(RLIMIT_FSIZE, &rl) != 0;
        for (int k = 0; k < NWRITERS && !bad; k++)
            bad = expect_failure(&f, k, dir, strerror(EFBIG));
        _exit(bad);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d (signal %d)", st,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    fixture_free(&f);
    return 0;
}

/* A folder the writer may not create files in: the message names the path and
 * the OS error. Root ignores permission bits, so as root /sys (which refuses
 * new files) stands in and there is no previous file to keep. */
APB_TEST(test_writes_read_only_folder)
{
    fixture f;
    CHECK(fixture_make(&f) == 0);
    if (geteuid() != 0) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/readonly", apb_test_tmpdir());
        chmod(dir, 0755);
        CHECK(fresh_dir(dir) == 0);
        CHECK(put_previous(dir) == 0);
        CHECK(chmod(dir, 0555) == 0);
        for (int k = 0; k < NWRITERS; k++)
            CHECK(expect_failure(&f, k, dir, strerror(EACCES)) == 0);
        chmod(dir, 0755);
    } else {
        for (int k = 0; k < NWRITERS; k++) {
            char path[64];
            snprintf(path, sizeof path, "/sys/apb-%s.out", WRITERS[k]);
            apb_status s = write_one(&f, k, path);
            CHECK_MSG(s == APB_EIO && strstr(apb_errmsg(), path) && strstr(apb_errmsg(), strerror(EACCES)),
                      "%s: status %d: %s", WRITERS[k], s, apb_errmsg());
            CHECK(!apb_file_exists(path));
        }
    }
    fixture_free(&f);
    return 0;
}

static char *slurp_file(const char *path)
{
    unsigned char *d;
    size_t n;
    if (apb_file_read(path, &d, &n))
        return NULL;
    return (char *)d;
}

/* The commands under `ulimit -f` (the shell's file-size limit: SIGXFSZ would
 * kill a process that did not ignore it) and an injected full disk: export,
 * a training run's checkpoints and log.csv, apb data --dump. */
APB_TEST(test_writes_commands_report_and_keep_files)
{
    const char *tmp = apb_test_tmpdir();
    char run[1100], cmd[4096], path[1300], err[1300];
    snprintf(run, sizeof run, "%s/cmdrun", tmp);
    snprintf(err, sizeof err, "%s/cmd-err.txt", tmp);
    const char *train = "train --data fashion-mnist --limit-train 64 --limit-test 32 --batch 32 "
                        "--threads 2 --quiet";
    snprintf(cmd, sizeof cmd, "rm -rf %s; %s %s --epochs 1 --out %s", run, apb_test_cli(), train, run);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    char ckpt[1300], logp[1300];
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", run);
    snprintf(logp, sizeof logp, "%s/log.csv", run);
    unsigned char *ck0, *log0;
    size_t nck0, nlog0;
    CHECK_OK(apb_file_read(ckpt, &ck0, &nck0));
    CHECK_OK(apb_file_read(logp, &log0, &nlog0));

    /* 1. export over an existing model.apb, past a 16 KiB limit */
    snprintf(path, sizeof path, "%s/model.apb", run);
    CHECK_OK(apb_file_write_atomic(path, PREVIOUS, sizeof PREVIOUS - 1));
    snprintf(cmd, sizeof cmd, "ulimit -f 32; exec %s export --ckpt %s --out %s 2>%s", apb_test_cli(), ckpt,
             path, err);
    int st = system(cmd);
    char *e = slurp_file(err);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1, "export: status %d: %s", st, e);
    CHECK_MSG(e && strstr(e, path) && strstr(e, strerror(EFBIG)), "export: %s", e);
    free(e);
    char *m = slurp_file(path);
    CHECK(m && !strcmp(m, PREVIOUS));
    free(m);

    /* 1b. a signal in the middle of the export: the process ends by it, the
     * temporary file is gone and the previous model.apb stays */
    snprintf(cmd, sizeof cmd, "APB_DEBUG_WRITE_FAIL=1:SIGTERM@model.apb %s export --ckpt %s --out %s 2>%s",
             apb_test_cli(), ckpt, path, err);
    st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM, "export with SIGTERM: status %d", st);
    m = slurp_file(path);
    CHECK(m && !strcmp(m, PREVIOUS));
    free(m);
    CHECK(count_tmp(run) == 0);

    /* 2. the next epoch's checkpoints past the limit, then its log.csv on a full disk */
    const char *env[2] = {"ulimit -f 32;", "APB_DEBUG_WRITE_FAIL=1@log.csv"};
    const char *what[2] = {".ckpt", "log.csv"};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s %s train --resume %s --epochs 2 2>%s", env[k], apb_test_cli(), run, err);
        st = system(cmd);
        e = slurp_file(err);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1, "train: status %d: %s", st, e);
        CHECK_MSG(e && strstr(e, what[k]) && strstr(e, run) && strstr(e, strerror(k ? ENOSPC : EFBIG)),
                  "train: %s", e);
        free(e);
        unsigned char *d;
        size_t n;
        CHECK_OK(apb_file_read(ckpt, &d, &n));
        CHECK_MSG(n == nck0 && !memcmp(d, ck0, n), "last.ckpt changed after a failed write");
        free(d);
        CHECK_OK(apb_file_read(logp, &d, &n));
        CHECK_MSG(n == nlog0 && !memcmp(d, log0, n), "log.csv changed after a failed write");
        free(d);
        CHECK(count_tmp(run) == 0);
    }
    free(ck0);
    free(log0);

    /* 3. apb data --dump: the second PNG fails, the first stays */
    char dump[1200];
    snprintf(dump, sizeof dump, "%s/dump", tmp);
    snprintf(cmd, sizeof cmd, "rm -rf %s; APB_DEBUG_WRITE_FAIL=2@.png %s data fashion-mnist --split test "
             "--dump 3 %s >/dev/null 2>%s", dump, apb_test_cli(), dump, err);
    st = system(cmd);
    e = slurp_file(err);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1, "data: status %d: %s", st, e);
    CHECK_MSG(e && strstr(e, "000001_") && strstr(e, strerror(ENOSPC)), "data: %s", e);
    free(e);
    snprintf(path, sizeof path, "%s/000000_Ankle_boot.png", dump);
    CHECK(apb_file_exists(path));
    CHECK(count_tmp(dump) == 0);
    return 0;
}

/* apb report's three outputs: each one failing leaves the earlier ones and the
 * previous file alone. */
APB_TEST(test_writes_report_outputs)
{
    apb_report_cfg c;
    apb_report_cfg_default(&c);
    snprintf(c.out_dir, sizeof c.out_dir, "%s/report", apb_test_tmpdir());
    c.limit_train = 128;
    c.limit_test = 64;
    c.methods = APB_REPORT_FP;
    c.threads = 2;
    c.latency_runs = 0;
    c.quiet = 1;
    apb_report r;
    CHECK_OK(apb_report_run(&c, &r));
    const char *files[3] = {r.csv_path, r.md_path, r.png_path};
    for (int k = 0; k < 3; k++) {
        unsigned char *before, *after;
        size_t nb, na;
        CHECK_OK(apb_file_read(files[k], &before, &nb));
        const char *name = strrchr(files[k], '/') + 1;
        apb_fileio_fault(1, ENOSPC, 0, name);
        apb_report r2;
        apb_status s = apb_report_run(&c, &r2);
        CHECK_MSG(s == APB_EIO && strstr(apb_errmsg(), files[k]) && strstr(apb_errmsg(), strerror(ENOSPC)),
                  "%s: status %d: %s", name, s, apb_errmsg());
        CHECK_OK(apb_file_read(files[k], &after, &na));
        CHECK_MSG(na == nb && !memcmp(before, after, na), "%s changed after a failed write", name);
        free(before);
        free(after);
        CHECK(count_tmp(c.out_dir) == 0);
    }
    apb_fileio_fault(0, 0, 0, NULL);
    apb_report_free(&r);
    return 0;
}
