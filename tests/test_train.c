/* test_train.c - end-to-end training on the real Fashion-MNIST (Debian package):
 * accuracy proofs, bit-identical resume after a kill or after a stop by signal
 * inside an epoch (budget mode, pruning), a second signal, budget mode, NaN
 * stop, checkpoint validation, export of every quantizer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fileio.h"
#include "test.h"
#include "trainer.h"

static void cfg_small(apb_train_cfg *c, const char *sub, int ntrain)
{
    apb_train_cfg_default(c);
    snprintf(c->out_dir, sizeof c->out_dir, "%s/%s", apb_test_tmpdir(), sub);
    c->limit_train = ntrain;
    c->quiet = 1;
    c->threads = 2;
}

/* The model of DIR/last.ckpt (free with apb_model_free, then apb_ckpt_free). */
static int last_model(const char *dir, apb_ckpt *ck, apb_model **m)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/last.ckpt", dir);
    CHECK_OK(apb_ckpt_load(path, ck));
    CHECK_OK(apb_ckpt_model(ck, m));
    return 0;
}

/* Issue 2 proof: the small CNN, one pass over the first 10,000 images, >= 80%. */
APB_TEST(test_train_convnet_fp_10k_reaches_80)
{
    apb_train_cfg c;
    cfg_small(&c, "fp", 10000);
    double acc = 0;
    CHECK_OK(apb_train_run(&c, &acc));
    fprintf(stderr, "  convnet fp, 10,000 images, 1 epoch: test accuracy %.2f%%\n", acc);
    CHECK_MSG(acc >= 80.0, "test accuracy %.2f%% < 80%%", acc);
    return 0;
}

/* Issue 4 proof: APB convnet on 20,000 images for one epoch, >= 80%. */
APB_TEST(test_train_convnet_apb_20k_reaches_80)
{
    apb_train_cfg c;
    cfg_small(&c, "apb", 20000);
    c.model.wq = APB_WQ_APB;
    double acc = 0;
    CHECK_OK(apb_train_run(&c, &acc));
    fprintf(stderr, "  convnet APB, 20,000 images, 1 epoch: test accuracy %.2f%%\n", acc);
    CHECK_MSG(acc >= 80.0, "test accuracy %.2f%% < 80%%", acc);
    char path[1200];
    snprintf(path, sizeof path, "%s/last.ckpt", c.out_dir);
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(path, &ck));
    apb_model *m;
    CHECK_OK(apb_ckpt_model(&ck, &m));
    apb_model_memory mem;
    apb_model_memory_stats(m, &mem, NULL, NULL);
    CHECK_MSG(mem.cweights > 0 && mem.bits_per_weight > 1.0 && mem.bits_per_weight < 32.0,
              "%lld compressed weights, %.4f bits/weight", (long long)mem.cweights, mem.bits_per_weight);
    apb_model_free(m);
    apb_ckpt_free(&ck);
    return 0;
}

static const char TRAIN_ARGS[] =
    "train --data fashion-mnist --model convnet --quant apb --limit-train 1024 --limit-test 512 "
    "--epochs 3 --batch 64 --threads 2 --seed 3 --quiet";

/* Kill a run mid-epoch (hard exit at a step, in a separate process), resume it,
 * and compare with an uninterrupted run: every tensor must be bit-identical. */
static int resume_matches(const char *extra)
{
    const char *dir = apb_test_tmpdir();
    char cmd[4096];
    /* --force: the scratch folder keeps the previous suite run's runs */
    snprintf(cmd, sizeof cmd, "%s %s %s --force --out %s/full", apb_test_cli(), TRAIN_ARGS, extra, dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    /* 16 batches per epoch: step 21 is in the middle of epoch 2 */
    snprintf(cmd, sizeof cmd, "APB_DEBUG_KILL_AT_STEP=21 %s %s %s --force --out %s/killed", apb_test_cli(),
             TRAIN_ARGS, extra, dir);
    int st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 137, "killed run exited with status %d", st);
    char p1[1200], p2[1200];
    snprintf(p2, sizeof p2, "%s/killed/last.ckpt", dir);
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(p2, &ck));
    CHECK(ck.meta.epoch == 1);
    apb_ckpt_free(&ck);
    snprintf(cmd, sizeof cmd, "%s train --resume %s/killed --quiet", apb_test_cli(), dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    snprintf(p1, sizeof p1, "%s/full/last.ckpt", dir);
    apb_ckpt a, b;
    CHECK_OK(apb_ckpt_load(p1, &a));
    CHECK_OK(apb_ckpt_load(p2, &b));
    CHECK(a.meta.epoch == 3 && b.meta.epoch == 3);
    CHECK(a.nrec == b.nrec && a.nrec > 10);
    for (int i = 0; i < a.nrec; i++) {
        CHECK(!strcmp(a.rec[i].name, b.rec[i].name));
        CHECK_MSG(a.rec[i].bytes == b.rec[i].bytes && !memcmp(a.rec[i].data, b.rec[i].data, a.rec[i].bytes),
                  "tensor %s differs after resume", a.rec[i].name);
    }
    apb_ckpt_free(&a);
    apb_ckpt_free(&b);
    snprintf(p1, sizeof p1, "%s/full/log.csv", dir);
    snprintf(p2, sizeof p2, "%s/killed/log.csv", dir);
    unsigned char *l1, *l2;
    size_t n1, n2;
    CHECK_OK(apb_file_read(p1, &l1, &n1));
    CHECK_OK(apb_file_read(p2, &l2, &n2));
    int rows1 = 0, rows2 = 0;
    for (size_t i = 0; i < n1; i++)
        rows1 += l1[i] == '\n';
    for (size_t i = 0; i < n2; i++)
        rows2 += l2[i] == '\n';
    CHECK_MSG(rows1 == 4 && rows2 == 4, "log.csv rows %d / %d (header + 3 epochs expected)", rows1, rows2);
    free(l1);
    free(l2);
    return 0;
}

APB_TEST(test_train_resume_is_bit_identical) { return resume_matches(""); }

/* Budget mode with alpha fitted by the projection (--budget-alpha fit): the
 * projection's state lives in the checkpointed tensors and config only. */
APB_TEST(test_train_resume_budget_fit_is_bit_identical)
{
    return resume_matches("--budget-bits 1.5 --budget-alpha fit");
}

APB_TEST(test_train_budget_mode_meets_budget)
{
    const float budgets[2] = {1.2f, 1.6f};
    for (int bi = 0; bi < 2; bi++) {
        apb_train_cfg c;
        char sub[32];
        snprintf(sub, sizeof sub, "b%d", bi);
        cfg_small(&c, sub, 2048);
        c.limit_test = 512;
        c.epochs = 2;
        c.model.wq = APB_WQ_APB;
        c.budget_bits = budgets[bi];
        CHECK_OK(apb_train_run(&c, NULL));
        apb_ckpt ck;
        apb_model *m;
        CHECK(last_model(c.out_dir, &ck, &m) == 0);
        apb_model_memory mem;
        apb_model_memory_stats(m, &mem, NULL, NULL);
        CHECK_MSG(mem.bits_per_weight <= budgets[bi] * 1.0001 && mem.bits_per_weight >= budgets[bi] * 0.98,
                  "budget %.3f, reached %.4f bits/weight", budgets[bi], mem.bits_per_weight);
        apb_model_free(m);
        apb_ckpt_free(&ck);
    }
    /* a budget below one bit per weight is outside the one rule and says so */
    apb_train_cfg c;
    cfg_small(&c, "bad", 512);
    c.limit_test = 256;
    c.model.wq = APB_WQ_APB;
    c.budget_bits = 0.5f;
    c.epochs = 2;
    apb_status s = apb_train_run(&c, NULL);
    CHECK_MSG(s == APB_EINVAL && strstr(apb_errmsg(), "[1, 32)"), "status %d: %s", s, apb_errmsg());
    return 0;
}

/* --budget-warmup: the full-precision set shrinks linearly from every APB weight
 * to the budget's over the first F of the run, then the budget holds; a killed
 * warm-up run with BN re-estimation resumes bit-identically. */
APB_TEST(test_train_budget_warmup_shrinks_the_fp_set)
{
    apb_train_cfg c;
    cfg_small(&c, "warm", 1024);
    c.limit_test = 256;
    c.epochs = 2;
    c.batch = 64;
    c.model.wq = APB_WQ_APB;
    c.budget_bits = 1.5f;
    c.budget_warmup = 1.0f; /* at the end of epoch 1 half the gap is left */
    CHECK_OK(apb_train_run(&c, NULL));
    char path[1200];
    snprintf(path, sizeof path, "%s/log.csv", c.out_dir);
    unsigned char *log;
    size_t n;
    CHECK_OK(apb_file_read(path, &log, &n));
    double fp[2] = {-1, -1}, bits[2] = {0, 0};
    const char *p = strchr((const char *)log, '\n');
    for (int e = 0; e < 2 && p; e++) {
        int ep;
        double lr, tl, ta, sl, sa;
        CHECK(sscanf(p + 1, "%d,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &ep, &lr, &tl, &ta, &sl, &sa, &fp[e], &bits[e]) == 8);
        p = strchr(p + 1, '\n');
    }
    free(log);
    /* epoch 2: the budget; epoch 1: its fp share plus half of the rest */
    CHECK_MSG(bits[1] <= 1.5 * 1.0001 && bits[1] >= 1.5 * 0.98, "end: %.4f bits/weight", bits[1]);
    double want = fp[1] + 0.5 * (1 - fp[1]);
    CHECK_MSG(fabs(fp[0] - want) < 0.01, "after epoch 1 of 2: fp fraction %.4f, expected %.4f", fp[0], want);
    /* a warm-up needs a budget */
    apb_train_cfg b;
    cfg_small(&b, "warm-bad", 512);
    b.model.wq = APB_WQ_APB;
    b.budget_warmup = 0.5f;
    apb_status s = apb_train_run(&b, NULL);
    CHECK_MSG(s == APB_EINVAL && strstr(apb_errmsg(), "--budget-warmup"), "status %d: %s", s, apb_errmsg());
    return resume_matches("--budget-bits 1.5 --budget-warmup 0.6 --bn-reestimate 3");
}

/* apb_bn_reestimate: the statistics are the mean over the batches it runs,
 * whatever they were before (bit-identical from two different starts), and they
 * give back the accuracy that destroyed statistics took away. */
APB_TEST(test_bn_reestimate_replaces_running_statistics)
{
    apb_train_cfg c;
    cfg_small(&c, "bnre", 2048);
    c.limit_test = 512;
    c.epochs = 1;
    CHECK_OK(apb_train_run(&c, NULL));
    apb_ckpt ck;
    apb_model *m;
    CHECK(last_model(c.out_dir, &ck, &m) == 0);
    apb_dataset *dtr, *dte;
    apb_loader *ltr, *lte;
    apb_transform ttr, tte;
    CHECK_OK(apb_open_data("fashion-mnist", "train", 2048, m->cfg.in_h, 1, 128, 1, 2, &dtr, &ltr, &ttr));
    CHECK_OK(apb_open_data("fashion-mnist", "test", 512, m->cfg.in_h, 0, 128, 1, 2, &dte, &lte, &tte));
    apb_eval_result e0, e1, e2;
    CHECK_OK(apb_evaluate(m, lte, &e0));
    int nbn = 0;
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        if (!l->rmean)
            continue;
        nbn++;
        for (int k = 0; k < l->channels; k++) {
            l->rmean[k] = 3.0f;
            l->rvar[k] = 50.0f;
        }
    }
    CHECK(nbn > 0);
    CHECK_OK(apb_evaluate(m, lte, &e1));
    CHECK_OK(apb_bn_reestimate(m, ltr, 0, 4, NULL));
    CHECK_OK(apb_evaluate(m, lte, &e2));
    fprintf(stderr, "  BN statistics: trained %.2f%%, destroyed %.2f%%, re-estimated over 4 batches %.2f%%\n",
            e0.top1, e1.top1, e2.top1);
    CHECK_MSG(e1.top1 < e0.top1 - 20 && e2.top1 > e0.top1 - 3, "%.2f / %.2f / %.2f", e0.top1, e1.top1, e2.top1);
    /* the same from other statistics: bit-identical */
    float *save = NULL;
    size_t tot = 0, o = 0;
    for (int i = 0; i < m->nlayers; i++)
        tot += m->layers[i].rmean ? 2 * (size_t)m->layers[i].channels : 0;
    save = malloc(tot * sizeof *save);
    CHECK(save != NULL);
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        if (!l->rmean)
            continue;
        memcpy(save + o, l->rmean, l->channels * sizeof *save);
        memcpy(save + o + l->channels, l->rvar, l->channels * sizeof *save);
        o += 2 * (size_t)l->channels;
        for (int k = 0; k < l->channels; k++) {
            l->rmean[k] = -1.0f;
            l->rvar[k] = 0.01f;
        }
    }
    CHECK_OK(apb_bn_reestimate(m, ltr, 0, 4, NULL));
    o = 0;
    int same = 1;
    for (int i = 0; i < m->nlayers; i++) {
        apb_layer *l = &m->layers[i];
        if (!l->rmean)
            continue;
        same &= !memcmp(save + o, l->rmean, l->channels * sizeof *save) &&
                !memcmp(save + o + l->channels, l->rvar, l->channels * sizeof *save);
        o += 2 * (size_t)l->channels;
    }
    free(save);
    CHECK_MSG(same, "re-estimated statistics depend on the statistics before");
    apb_loader_free(ltr);
    apb_loader_free(lte);
    apb_dataset_free(dtr);
    apb_dataset_free(dte);
    apb_model_free(m);
    apb_ckpt_free(&ck);
    return 0;
}

APB_TEST(test_train_nan_loss_stops_and_keeps_checkpoint)
{
    apb_train_cfg c;
    cfg_small(&c, "nan", 1024);
    c.limit_test = 256;
    c.epochs = 1;
    CHECK_OK(apb_train_run(&c, NULL));
    char path[1200];
    snprintf(path, sizeof path, "%s/last.ckpt", c.out_dir);
    unsigned char *before;
    size_t nb;
    CHECK_OK(apb_file_read(path, &before, &nb));
    apb_train_cfg r;
    cfg_small(&r, "unused2", 0);
    snprintf(r.resume_dir, sizeof r.resume_dir, "%s", c.out_dir);
    /* resume with an absurd learning rate: the stored options win, so force it via a
     * fresh run into the same directory instead */
    apb_train_cfg x;
    cfg_small(&x, "nan", 1024);
    x.limit_test = 256;
    x.epochs = 1;
    x.lr = 1e30f;
    x.momentum = 0;
    apb_status s = apb_train_run(&x, NULL);
    CHECK_MSG(s == APB_ENUMERIC, "status %d: %s", s, apb_errmsg());
    CHECK(strstr(apb_errmsg(), "NaN") || strstr(apb_errmsg(), "infinite"));
    CHECK(strstr(apb_errmsg(), "stopped"));
    unsigned char *after;
    size_t na;
    CHECK_OK(apb_file_read(path, &after, &na));
    CHECK(na == nb && !memcmp(before, after, na));
    free(before);
    free(after);
    return 0;
}

APB_TEST(test_checkpoint_corruption_is_an_error)
{
    apb_train_cfg c;
    cfg_small(&c, "ck", 512);
    c.limit_test = 256;
    CHECK_OK(apb_train_run(&c, NULL));
    char path[1200], bad[1300];
    snprintf(path, sizeof path, "%s/last.ckpt", c.out_dir);
    snprintf(bad, sizeof bad, "%s/bad.ckpt", c.out_dir);
    unsigned char *d;
    size_t n;
    CHECK_OK(apb_file_read(path, &d, &n));
    apb_ckpt ck;
    size_t cuts[] = {0, 5, 12, 100, n / 2, n - 5, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK_OK(apb_file_write_atomic(bad, d, cuts[i]));
        CHECK(apb_ckpt_load(bad, &ck) == APB_EFORMAT);
        CHECK_MSG(strstr(apb_errmsg(), "bad.ckpt") != NULL, "message '%s' lacks the file name", apb_errmsg());
    }
    for (size_t i = 0; i < n; i += n / 37 + 1) {
        d[i] ^= 0x5A;
        CHECK_OK(apb_file_write_atomic(bad, d, n));
        CHECK(apb_ckpt_load(bad, &ck) == APB_EFORMAT);
        d[i] ^= 0x5A;
    }
    free(d);
    return 0;
}

/* log.csv without its seconds column (the only one that depends on the clock). */
static char *log_rows(const char *path)
{
    unsigned char *d;
    size_t n;
    if (apb_file_read(path, &d, &n) != APB_OK)
        return NULL;
    char *out = malloc(n + 1);
    size_t o = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)d, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *last = strrchr(line, ',');
        if (last && atoi(line) > 0)
            *last = 0;
        o += (size_t)sprintf(out + o, "%s\n", line);
    }
    free(d);
    return out;
}

/* Stops a run with a signal (the trainer's hook raises it before global step
 * `at`, so it goes through the command's real handler), resumes it, and
 * compares with an uninterrupted run: every tensor bit-identical, the log rows
 * equal but for their seconds. */
static int signal_resume_matches(const char *name, const char *args, int at, const char *sig,
                                 int want_status, int want_epoch, int want_step)
{
    const char *dir = apb_test_tmpdir();
    char cmd[4096], full[1200], stopped[1200];
    snprintf(full, sizeof full, "%s/%s-full", dir, name);
    snprintf(stopped, sizeof stopped, "%s/%s-stopped", dir, name);
    snprintf(cmd, sizeof cmd, "%s train %s --quiet --force --out %s", apb_test_cli(), args, full);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "APB_DEBUG_SIGNAL_AT_STEP=%d APB_DEBUG_SIGNAL=%s %s train %s --quiet --force "
             "--out %s 2>/dev/null", at, sig, apb_test_cli(), args, stopped);
    int st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == want_status, "stopped run exited with status %d", st);
    char p1[1300], p2[1300];
    snprintf(p2, sizeof p2, "%s/last.ckpt", stopped);
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(p2, &ck));
    CHECK_MSG(ck.meta.epoch == want_epoch && ck.meta.step == want_step && apb_ckpt_find(&ck, "loader.order"),
              "stopped at epoch %d step %d", ck.meta.epoch, ck.meta.step);
    apb_ckpt_free(&ck);
    snprintf(cmd, sizeof cmd, "%s train --resume %s --quiet", apb_test_cli(), stopped);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    snprintf(p1, sizeof p1, "%s/last.ckpt", full);
    apb_ckpt a, b;
    CHECK_OK(apb_ckpt_load(p1, &a));
    CHECK_OK(apb_ckpt_load(p2, &b));
    CHECK(a.meta.epoch == b.meta.epoch && b.meta.step == 0 && !apb_ckpt_find(&b, "loader.order"));
    CHECK(a.nrec == b.nrec && a.nrec > 10);
    for (int i = 0; i < a.nrec; i++) {
        CHECK(!strcmp(a.rec[i].name, b.rec[i].name));
        CHECK_MSG(a.rec[i].bytes == b.rec[i].bytes && !memcmp(a.rec[i].data, b.rec[i].data, a.rec[i].bytes),
                  "tensor %s differs after the stop and resume", a.rec[i].name);
    }
    apb_ckpt_free(&a);
    apb_ckpt_free(&b);
    snprintf(p1, sizeof p1, "%s/log.csv", full);
    snprintf(p2, sizeof p2, "%s/log.csv", stopped);
    char *l1 = log_rows(p1), *l2 = log_rows(p2);
    CHECK_MSG(l1 && l2 && !strcmp(l1, l2), "log.csv differs:\n%s---\n%s", l1 ? l1 : "", l2 ? l2 : "");
    free(l1);
    free(l2);
    return 0;
}

/* Budget mode (delta projected at epoch starts and every 50 batches): 52
 * batches in the epoch, stopped by SIGINT after batch 30, so the resumed part
 * crosses a projection and the epoch's start must not be redone. */
/* A stop by signal inside an epoch of the budget warm-up (projections every 10
 * steps), after an epoch whose BN statistics were re-estimated: exact resume. */
APB_TEST(test_train_signal_resume_warmup_bnre_is_bit_identical)
{
    return signal_resume_matches("warmup",
                                 "--data fashion-mnist --model convnet --quant apb --budget-bits 1.5 "
                                 "--budget-warmup 0.8 --bn-reestimate 3 --freeze-at 0.3 "
                                 "--limit-train 416 --limit-test 64 --epochs 3 --batch 8 --threads 2 --seed 5",
                                 52 * 2 + 13, "TERM", 143, 2, 13);
}

APB_TEST(test_train_signal_resume_budget_is_bit_identical)
{
    return signal_resume_matches("budget",
                                 "--data fashion-mnist --model convnet --quant apb --budget-bits 1.5 "
                                 "--limit-train 416 --limit-test 64 --epochs 1 --batch 8 --threads 2 --seed 5",
                                 30, "INT", 130, 0, 30);
}

/* The pruning ramp (masks recomputed on a step schedule), stopped by SIGTERM
 * inside the first epoch, before any end-of-epoch checkpoint existed. */
APB_TEST(test_train_signal_resume_prune_is_bit_identical)
{
    return signal_resume_matches("prune",
                                 "--data fashion-mnist --model convnet --quant prune:0.5 --limit-train 256 "
                                 "--limit-test 64 --epochs 2 --batch 16 --threads 2 --seed 6",
                                 9, "TERM", 143, 0, 9);
}

/* A second signal while the stop's checkpoint is being written exits at once:
 * the previous last.ckpt (end of epoch 1) is untouched, no temporary file is
 * left, and the run resumes from that checkpoint. */
APB_TEST(test_train_second_signal_keeps_previous_checkpoint)
{
    const char *dir = apb_test_tmpdir();
    char run[1200], cmd[4096], path[1300];
    snprintf(run, sizeof run, "%s/twice", dir);
    const char *args = "--data fashion-mnist --model convnet --limit-train 128 --limit-test 64 --epochs 2 "
                       "--batch 16 --threads 2 --quiet";
    snprintf(cmd, sizeof cmd, "rm -rf %s; APB_DEBUG_KILL_AT_STEP=12 %s train %s --out %s", run, apb_test_cli(),
             args, run);
    int st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 137, "status %d", st);
    snprintf(path, sizeof path, "%s/last.ckpt", run);
    unsigned char *before, *after;
    size_t nb, na;
    CHECK_OK(apb_file_read(path, &before, &nb));
    snprintf(cmd, sizeof cmd, "APB_DEBUG_SIGNAL_AT_STEP=12 APB_DEBUG_SIGNAL_IN_SAVE=1 %s train --resume %s "
             "2>%s/twice-err.txt", apb_test_cli(), run, dir);
    st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 130, "status %d", st);
    CHECK_OK(apb_file_read(path, &after, &na));
    CHECK_MSG(na == nb && !memcmp(before, after, na), "last.ckpt changed (%zu -> %zu bytes)", nb, na);
    free(before);
    free(after);
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", run);
    FILE *p = popen(cmd, "r");
    int ntmp = -1;
    CHECK(p && fscanf(p, "%d", &ntmp) == 1);
    pclose(p);
    CHECK_MSG(ntmp == 0, "%d temporary files left in %s", ntmp, run);
    snprintf(path, sizeof path, "%s/twice-err.txt", dir);
    unsigned char *e;
    size_t ne;
    CHECK_OK(apb_file_read(path, &e, &ne));
    CHECK_MSG(strstr((char *)e, "stopped at once"), "stderr: %s", e);
    free(e);
    snprintf(cmd, sizeof cmd, "%s train --resume %s", apb_test_cli(), run);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    return 0;
}
