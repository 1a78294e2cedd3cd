/* test_train_cli.c - `apb train` as a user meets it, through the built CLI
 * (build/apb beside the test binary) on a few hundred Fashion-MNIST images:
 * an existing run and the --init file are never overwritten, a batch larger
 * than the training set still trains, budget refusals are coherent and leave
 * no folder, --resume accepts the options it already has and extends a
 * finished run, Ctrl-C says how to continue, and full-precision models are
 * shown as 32 bits/weight, not 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fileio.h"
#include "optim.h"
#include "test.h"
#include "trainer.h"

/* A tiny run: 96 images of 32 per batch, 64 test images. */
#define TINY "--data fashion-mnist --limit-train 96 --limit-test 64 --batch 32 --threads 2"

/* Runs `apb ARGS > dir/out.txt 2> dir/err.txt`; returns the exit status (-1 if
 * it did not exit normally) and the captured outputs (NUL-terminated, malloc'd). */
static int cli_run(const char *args, char **out, char **err)
{
    return apb_test_cli_run(args, out, err);
}

/* The scratch folder persists between suite runs: start each run folder empty. */
static const char *fresh_dir(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", apb_test_tmpdir(), name);
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", buf);
    return buf;
}

static char *slurp(const char *path)
{
    unsigned char *b;
    size_t n;
    if (apb_file_read(path, &b, &n) != APB_OK)
        return NULL;
    char *s = malloc(n + 1);
    memcpy(s, b, n);
    s[n] = 0;
    free(b);
    return s;
}

static int lines_of(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Re-running a command over its own run, and --init from the run it would
 * write, must leave the run's files as they were. */
APB_TEST(test_train_cli_never_overwrites_a_run_or_its_init)
{
    char dir[1100], args[4096], best[1200];
    fresh_dir("run", dir, sizeof dir);
    char *out, *err;
    snprintf(args, sizeof args, "train " TINY " --epochs 1 --quiet --out %s", dir);
    int rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, err);
    free(out);
    free(err);
    snprintf(best, sizeof best, "%s/best.ckpt", dir);
    char *before = slurp(best);
    CHECK(before != NULL);
    struct stat st0;
    CHECK(stat(best, &st0) == 0);

    /* the same command again: refused, pointing to --resume */
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0, "a second run into %s was not refused: %s", dir, out);
    CHECK_MSG(strstr(err, dir) && strstr(err, "--resume") && strstr(err, "--force"), "message: %s", err);
    free(out);
    free(err);

    /* --init the run's own best.ckpt, by another spelling, even with --force */
    snprintf(args, sizeof args, "train " TINY " --quant binary --epochs 1 --quiet --force --init %s/./best.ckpt --out %s/",
             dir, dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0, "--init %s/best.ckpt with --out %s was not refused", dir, dir);
    CHECK_MSG(strstr(err, "--init") && strstr(err, "best.ckpt"), "message: %s", err);
    free(out);
    free(err);
    /* ... and by a symbolic link */
    char link[1200];
    snprintf(link, sizeof link, "%s/../fp-link.ckpt", dir);
    unlink(link);
    CHECK(symlink("run/best.ckpt", link) == 0);
    snprintf(args, sizeof args, "train " TINY " --quant binary --epochs 1 --quiet --force --init %s --out %s",
             link, dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0, "--init through a link to %s/best.ckpt was not refused", dir);
    free(out);
    free(err);
    unlink(link);

    struct stat st1;
    CHECK(stat(best, &st1) == 0 && st1.st_ino == st0.st_ino);
    char *after = slurp(best);
    CHECK(after != NULL && !strcmp(before, after) && strlen(before) == strlen(after));
    free(before);
    free(after);

    /* --force trains a new run over the old one */
    snprintf(args, sizeof args, "train " TINY " --epochs 1 --quiet --force --out %s", dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "--force: rc %d: %s", rc, err);
    free(out);
    free(err);
    return 0;
}

/* Fewer training images than one batch: one partial batch per epoch, finite
 * results, never "nan" in the output or log.csv. */
APB_TEST(test_train_cli_batch_larger_than_training_set)
{
    char dir[1100], args[4096], path[1200];
    fresh_dir("small", dir, sizeof dir);
    char *out, *err;
    snprintf(args, sizeof args,
             "train --data fashion-mnist --limit-train 50 --batch 64 --limit-test 64 --threads 2 --epochs 2 --out %s",
             dir);
    int rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, err);
    CHECK_MSG(!strstr(out, "nan") && !strstr(out, " 0.0 img/s"), "output: %s", out);
    CHECK_MSG(strstr(out, "epoch 2/2"), "output: %s", out);
    free(out);
    free(err);
    snprintf(path, sizeof path, "%s/log.csv", dir);
    char *log = slurp(path);
    CHECK(log != NULL);
    CHECK_MSG(!strstr(log, "nan") && lines_of(log) == 3, "log.csv:\n%s", log);
    /* epoch 2's train loss (third column) is a finite number */
    const char *row = strstr(log, "\n2,");
    CHECK(row != NULL);
    double lr, loss;
    CHECK(sscanf(row + 3, "%lf,%lf", &lr, &loss) == 2 && isfinite(loss) && loss > 0);
    free(log);
    return 0;
}

/* Budgets: the floor named in the refusal is above the refused budget and is
 * itself accepted; out-of-range budgets follow the one rule [1, 32) in train
 * and report; a refused run leaves no folder. */
APB_TEST(test_train_cli_budget_checks_are_coherent)
{
    char dir[1100], args[4096];
    char *out, *err;
    fresh_dir("b1", dir, sizeof dir);
    snprintf(args, sizeof args, "train " TINY " --quant apb --budget-bits 1.0 --epochs 1 --quiet --out %s", dir);
    int rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0, "--budget-bits 1.0 accepted");
    const char *m = strstr(err, "minimum ");
    CHECK_MSG(m != NULL, "message: %s", err);
    double min = atof(m + 8);
    CHECK_MSG(min > 1.0 && min < 1.01 && strstr(err, "sign bit") && strstr(err, "alpha"),
              "minimum %.6f, message: %s", min, err);
    CHECK_MSG(!dir_exists(dir), "a refused budget left %s behind", dir);
    free(out);
    free(err);

    /* the minimum it names is a budget it accepts */
    snprintf(args, sizeof args, "train " TINY " --quant apb --budget-bits %.4f --epochs 1 --quiet --out %s",
             min, dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "--budget-bits %.4f (the named minimum): rc %d: %s", min, rc, err);
    free(out);
    free(err);

    fresh_dir("b40", dir, sizeof dir);
    snprintf(args, sizeof args, "train " TINY " --quant apb --budget-bits 40 --epochs 1 --quiet --out %s", dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0 && strstr(err, "[1, 32)"), "--budget-bits 40: rc %d: %s", rc, err);
    CHECK_MSG(!dir_exists(dir), "a refused budget left %s behind", dir);
    free(out);
    free(err);

    /* the library rule, and `apb report` refusing by it too */
    CHECK(apb_budget_bits_check(1.0) == APB_OK && apb_budget_bits_check(31.9) == APB_OK);
    CHECK(apb_budget_bits_check(0.99) != APB_OK && apb_budget_bits_check(32) != APB_OK &&
          apb_budget_bits_check(40) != APB_OK);
    fresh_dir("rep", dir, sizeof dir);
    snprintf(args, sizeof args, "report --budgets 1.5,40 --out %s", dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0 && strstr(err, "40") && strstr(err, "[1, 32)"), "report: rc %d: %s", rc, err);
    free(out);
    free(err);

    /* with a library call too: a budget below the model's floor leaves no folder */
    apb_train_cfg *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    apb_train_cfg_default(c);
    fresh_dir("lib", dir, sizeof dir);
    snprintf(c->out_dir, sizeof c->out_dir, "%s", dir);
    c->limit_train = 64;
    c->limit_test = 64;
    c->threads = 2;
    c->quiet = 1;
    c->model.wq = APB_WQ_APB;
    c->budget_bits = 1.0f;
    apb_status s = apb_train_run(c, NULL);
    free(c);
    CHECK_MSG(s == APB_EINVAL && strstr(apb_errmsg(), "minimum"), "status %d: %s", s, apb_errmsg());
    CHECK_MSG(!dir_exists(dir), "a refused budget left %s behind", dir);
    return 0;
}

static int ckpt_epochs(const char *dir, int *done, int *total)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    apb_ckpt ck;
    if (apb_ckpt_load(path, &ck))
        return 1;
    *done = ck.meta.epoch;
    char b[64];
    *total = apb_kv_get(ck.meta.train_opts, "epochs", b, sizeof b) ? atoi(b) : -1;
    apb_ckpt_free(&ck);
    return 0;
}

/* A finished run says it is complete; --epochs N extends it with the cosine
 * schedule recomputed for N; it cannot be shortened. */
APB_TEST(test_train_cli_resume_finished_run_and_extend)
{
    char dir[1100], args[4096];
    char *out, *err;
    fresh_dir("run", dir, sizeof dir);
    snprintf(args, sizeof args, "train " TINY " --epochs 1 --quiet --out %s", dir);
    int rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, err);
    free(out);
    free(err);

    snprintf(args, sizeof args, "train --resume %s", dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, "complete") && strstr(out, "--epochs"), "rc %d: %s%s", rc, out, err);
    free(out);
    free(err);

    snprintf(args, sizeof args, "train --resume %s --epochs 3 --quiet", dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "extending to 3 epochs: rc %d: %s", rc, err);
    free(out);
    free(err);
    int done, total;
    CHECK(ckpt_epochs(dir, &done, &total) == 0);
    CHECK_MSG(done == 3 && total == 3, "after --epochs 3: %d of %d epochs", done, total);
    char path[1200];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    char *log = slurp(path);
    CHECK(log != NULL && lines_of(log) == 4);
    /* epoch 3's lr (last step, 3 batches per epoch) follows the 3-epoch cosine */
    const char *row = strstr(log, "\n3,");
    CHECK(row != NULL);
    double lr = atof(row + 3);
    apb_train_cfg d;
    apb_train_cfg_default(&d);
    double want = apb_sched_lr(APB_SCHED_COSINE, d.lr, (3.0 * 3 - 1) / 3, 3, 0, 0, 0);
    CHECK_CLOSE(lr, want, 1e-4, 1e-7);
    free(log);

    /* shorter than the run: refused, naming both */
    snprintf(args, sizeof args, "train --resume %s --epochs 2", dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0 && strstr(err, "--epochs 2") && strstr(err, "epochs=3"), "rc %d: %s", rc, err);
    free(out);
    free(err);
    return 0;
}

/* The user's own command with --resume appended continues an interrupted run;
 * only a conflicting option is refused, by name and with both values. */
APB_TEST(test_train_cli_resume_accepts_the_runs_own_options)
{
    char dir[1100], cmdargs[2048], args[4096];
    char *out, *err;
    fresh_dir("run", dir, sizeof dir);
    snprintf(cmdargs, sizeof cmdargs, "train " TINY " --epochs 2 --lr 0.05 --wd 0.0005 --seed 1 --quiet --out %s",
             dir);
    /* 3 batches per epoch: step 4 is inside epoch 2 */
    snprintf(args, sizeof args, "%s", cmdargs);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "APB_DEBUG_KILL_AT_STEP=4 %s %s 2>/dev/null", apb_test_cli(), args);
    int st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 137, "killed run exited with status %d", st);

    snprintf(args, sizeof args, "%s --lr 0.1 --resume %s", cmdargs, dir);
    int rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0 && strstr(err, "--lr 0.1 conflicts with the run's lr=0.05"), "rc %d: %s", rc, err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "train --resume %s --nesterov", dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0 && strstr(err, "--nesterov") && strstr(err, "nesterov=off"), "rc %d: %s", rc, err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "train --resume %s --out %s/elsewhere", dir, dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc != 0 && strstr(err, "--out"), "rc %d: %s", rc, err);
    free(out);
    free(err);

    snprintf(args, sizeof args, "%s --threads 1 --resume %s", cmdargs, dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "the run's own command with --resume: rc %d: %s", rc, err);
    free(out);
    free(err);
    int done, total;
    CHECK(ckpt_epochs(dir, &done, &total) == 0);
    CHECK_MSG(done == 2 && total == 2, "%d of %d epochs", done, total);
    return 0;
}

/* Ctrl-C and SIGTERM from outside, once an epoch is done: the run stops after
 * its step, leaves a loadable last.ckpt and says how to continue (exit 130 /
 * 143). A stop before the first step (the test hook raises SIGINT there) has
 * nothing to resume and writes nothing. */
APB_TEST(test_train_cli_ctrl_c_says_how_to_continue)
{
    char dir[1100], errpath[1200], ckpt[1200];
    fresh_dir("run", dir, sizeof dir);
    snprintf(errpath, sizeof errpath, "%s/sigint-err.txt", apb_test_tmpdir());
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", dir);
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; k++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "exec %s train --data fashion-mnist --limit-train 128 --limit-test 64 --batch 32 --threads 1 "
                 "--epochs 1000 --force --out %s 2> %s > /dev/null",
                 apb_test_cli(), dir, errpath);
        unlink(ckpt);
        unlink(errpath);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        int ready = 0;
        for (int i = 0; i < 6000 && !ready; i++) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
            ready = apb_file_exists(ckpt);
        }
        kill(pid, sigs[k]);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK_MSG(ready, "the run did not finish an epoch within 120 s");
        char *e = slurp(errpath);
        CHECK(e != NULL);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 128 + sigs[k], "status %d: %s", st, e);
        char want[1300];
        snprintf(want, sizeof want, "continue with: apb train --resume %s", dir);
        CHECK_MSG(strstr(e, want) != NULL, "stderr lacks '%s': %s", want, e);
        CHECK_MSG(strstr(e, k ? "SIGTERM" : "SIGINT"), "stderr: %s", e);
        free(e);
        apb_ckpt ck;
        CHECK_OK(apb_ckpt_load(ckpt, &ck));
        apb_ckpt_free(&ck);
    }
    char args[4096], *out, *err;
    fresh_dir("early", dir, sizeof dir);
    snprintf(args, sizeof args, "train " TINY " --epochs 1 --out %s", dir);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "APB_DEBUG_SIGNAL_AT_STEP=0 %s", apb_test_cli());
    int rc = apb_test_run(cmd, args, &out, &err);
    CHECK_MSG(rc == 130 && strstr(err, "nothing to resume") && !strstr(err, "--resume"), "rc %d: %s",
              rc, err);
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", dir);
    CHECK(!apb_file_exists(ckpt));
    free(out);
    free(err);
    return 0;
}

/* A full-precision model is 32 bits/weight in train, export and eval, never 0. */
APB_TEST(test_train_cli_fp_model_shows_32_bits)
{
    char dir[1100], args[4096], path[1200];
    char *out, *err;
    fresh_dir("fp", dir, sizeof dir);
    snprintf(args, sizeof args, "train " TINY " --epochs 1 --out %s", dir);
    int rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, err);
    CHECK_MSG(strstr(out, "32 bits/weight (fp)") && !strstr(out, "0.000 bits/weight"), "train: %s", out);
    free(out);
    free(err);
    snprintf(path, sizeof path, "%s/log.csv", dir);
    char *log = slurp(path);
    CHECK(log != NULL);
    CHECK_MSG(strstr(log, ",1.000000,32.000000,"), "log.csv:\n%s", log);
    free(log);

    snprintf(args, sizeof args, "export --ckpt %s/last.ckpt --out %s/m.apb", dir, dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, "32 bits/weight (fp)") && !strstr(out, "0.0000 bits/weight") &&
              !strstr(out, " 0.000% full precision"), "export: rc %d: %s%s", rc, out, err);
    free(out);
    free(err);

    snprintf(args, sizeof args, "eval --ckpt %s/last.ckpt --data fashion-mnist --limit-test 64", dir);
    rc = cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, "32 bits/weight (fp)") && !strstr(out, "0.0000 bits/weight"),
              "eval: rc %d: %s%s", rc, out, err);
    free(out);
    free(err);
    return 0;
}

/* --help: --data is optional with its default, 0 = all for the limits, and the
 * defaults of epochs, batch, lr and wd as apb_train_cfg_default sets them. */
APB_TEST(test_train_cli_help_shows_defaults)
{
    char *out, *err;
    int rc = cli_run("train --help", &out, &err);
    CHECK(rc == 0);
    apb_train_cfg d;
    apb_train_cfg_default(&d);
    char want[5][128];
    snprintf(want[0], sizeof want[0], "[--data SPEC]");
    snprintf(want[1], sizeof want[1], "(default %s)", d.data_spec);
    snprintf(want[2], sizeof want[2], "--epochs N (default %d)  --batch B (default %d)", d.epochs, d.batch);
    snprintf(want[3], sizeof want[3], "--lr X (default %g", d.lr);
    snprintf(want[4], sizeof want[4], "--wd X (default %g)", d.wd);
    for (int i = 0; i < 5; i++)
        CHECK_MSG(strstr(out, want[i]) != NULL, "--help lacks '%s':\n%s", want[i], out);
    CHECK_MSG(strstr(out, "--limit-train") && strstr(out, "0 = all"), "--help:\n%s", out);
    CHECK_MSG(strstr(out, "--force") && strstr(out, "--resume DIR --epochs N"), "--help:\n%s", out);
    free(out);
    free(err);
    return 0;
}
