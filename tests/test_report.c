/* test_report.c - `apb report` (issue 7): a tiny sweep on the real Fashion-MNIST
 * through apb_report_run, its CSV / markdown / PNG, reuse of finished points
 * without retraining, resumption of an interrupted point (killed, or stopped by
 * a signal), and option checks. */
#define _GNU_SOURCE /* nftw */
#include <ftw.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fileio.h"
#include "report.h"
#include "test.h"

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Fresh output directory: the scratch directory survives earlier test runs. */
static void cfg_tiny(apb_report_cfg *c, const char *sub)
{
    apb_report_cfg_default(c);
    snprintf(c->out_dir, sizeof c->out_dir, "%s/%s", apb_test_tmpdir(), sub);
    nftw(c->out_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    c->limit_train = 512;
    c->limit_test = 256;
    c->epochs = 1;
    c->methods = APB_REPORT_FP | APB_REPORT_BINARY | APB_REPORT_APB;
    c->nbudgets = 1;
    c->budgets[0] = 1.3;
    c->threads = 2;
    c->latency_runs = 5;
    c->quiet = 1;
}

/* The CSV without its last column (latency is measured afresh on every run). */
static char *csv_without_latency(const char *path)
{
    unsigned char *d;
    size_t n;
    if (apb_file_read(path, &d, &n))
        return NULL;
    char *out = malloc(n + 1), *o = out;
    const char *p = (const char *)d, *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *comma = le;
        while (comma > p && *comma != ',')
            comma--;
        memcpy(o, p, (size_t)(comma - p));
        o += comma - p;
        *o++ = '\n';
        p = nl ? nl + 1 : end;
    }
    *o = 0;
    free(d);
    return out;
}

static long long mtime_ns(const char *path)
{
    struct stat st;
    if (stat(path, &st))
        return -1;
    return (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
}

static const apb_report_point *find_point(const apb_report *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->points[i].point, name))
            return &r->points[i];
    return NULL;
}

APB_TEST(test_report_tiny_sweep_and_reuse)
{
    apb_report_cfg c;
    cfg_tiny(&c, "sweep");
    apb_report r;
    CHECK_OK(apb_report_run(&c, &r));
    CHECK_MSG(r.n == 3, "%d points, expected fp, binary, apb1.3", r.n);
    const apb_report_point *fp = find_point(&r, "fp"), *bin = find_point(&r, "binary"),
                           *apb = find_point(&r, "apb1.3");
    CHECK(fp && bin && apb);
    CHECK(!strcmp(r.points[0].method, "fp") && !strcmp(r.points[1].method, "binary") &&
          !strcmp(r.points[2].method, "apb"));
    for (int i = 0; i < r.n; i++) {
        const apb_report_point *p = &r.points[i];
        CHECK_MSG(p->test_acc >= 0 && p->test_acc <= 100, "%s: accuracy %g", p->point, p->test_acc);
        CHECK_MSG(!p->reused && !p->resumed, "%s was not trained afresh", p->point);
        CHECK_MSG(p->latency_ms > 0 && p->latency_ms < 1000, "%s: latency %g ms", p->point, p->latency_ms);
        CHECK_MSG(p->file_bytes > 0 && p->model_bits > 0, "%s: %zu bytes, %g bits", p->point,
                  p->file_bytes, p->model_bits);
    }
    /* better than chance on 10 classes after one short epoch */
    CHECK_MSG(fp->test_acc > 30, "fp accuracy %.2f%%", fp->test_acc);
    CHECK_CLOSE(fp->bits_per_weight, 32.0, 0, 0);
    CHECK_MSG(bin->bits_per_weight > 1.0 && bin->bits_per_weight < 1.01, "binary %.5f bits/weight",
              bin->bits_per_weight);
    CHECK_MSG(apb->bits_per_weight <= 1.3 * 1.0001 && apb->bits_per_weight >= 1.3 * 0.98,
              "APB budget 1.3, reached %.5f bits/weight", apb->bits_per_weight);
    CHECK_MSG(fp->file_bytes > 10 * apb->file_bytes, "fp file %zu bytes, APB file %zu bytes",
              fp->file_bytes, apb->file_bytes);
    CHECK(apb->file_bytes > bin->file_bytes);
    CHECK(fp->model_bits > apb->model_bits && apb->model_bits > bin->model_bits);

    /* tradeoff.csv: header + one row per point, values as in the result */
    char *csv = csv_without_latency(r.csv_path);
    CHECK_MSG(csv != NULL, "%s unreadable", r.csv_path);
    const char *hdr = "method,point,quant,act,budget,test_acc,bits_per_weight,model_bits,file_bytes,"
                      "test_acc_std,seeds\n";
    CHECK_MSG(!strncmp(csv, hdr, strlen(hdr)),
              "header: %.100s", csv);
    int rows = 0;
    for (char *p = csv; *p; p++)
        rows += *p == '\n';
    CHECK_MSG(rows == 4, "%d CSV lines", rows);
    char want[256];
    snprintf(want, sizeof want, "apb,apb1.3,apb,fp,1.3,%.2f,%.4f,%.0f,%zu,0.00,1\n", apb->test_acc,
             apb->bits_per_weight, apb->model_bits, apb->file_bytes);
    CHECK_MSG(strstr(csv, want) != NULL, "no row '%s' in\n%s", want, csv);
    snprintf(want, sizeof want, "fp,fp,fp,fp,0,%.2f,32.0000,", fp->test_acc);
    CHECK_MSG(strstr(csv, want) != NULL, "no row '%s' in\n%s", want, csv);

    /* tradeoff.md: a table row per point */
    unsigned char *md;
    size_t mdn;
    CHECK_OK(apb_file_read(r.md_path, &md, &mdn));
    md = realloc(md, mdn + 1);
    md[mdn] = 0;
    CHECK(strstr((char *)md, "| method |") && strstr((char *)md, "| apb | apb1.3 |") &&
          strstr((char *)md, "| binary | binary |") && strstr((char *)md, "| fp | fp |"));
    free(md);

    /* tradeoff.png: a readable 900x600 PNG */
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    CHECK_MSG(png_image_begin_read_from_file(&img, r.png_path), "%s: %s", r.png_path, img.message);
    CHECK(img.width == 900 && img.height == 600);
    img.format = PNG_FORMAT_RGB;
    unsigned char *pix = malloc(PNG_IMAGE_SIZE(img));
    CHECK(pix && png_image_finish_read(&img, NULL, pix, 0, NULL));
    long nonwhite = 0;
    for (size_t i = 0; i < PNG_IMAGE_SIZE(img); i++)
        nonwhite += pix[i] < 200;
    CHECK_MSG(nonwhite > 1000, "plot is nearly blank (%ld dark bytes)", nonwhite);
    free(pix);

    /* Second run: every point is reused (checkpoints untouched), same CSV. */
    const char *pts[] = {"fp", "binary", "apb1.3"};
    long long mt[3];
    char path[1300];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s/last.ckpt", c.out_dir, pts[i]);
        mt[i] = mtime_ns(path);
        CHECK(mt[i] > 0);
    }
    apb_report r2;
    CHECK_OK(apb_report_run(&c, &r2));
    CHECK(r2.n == 3);
    for (int i = 0; i < 3; i++) {
        CHECK_MSG(r2.points[i].reused, "%s retrained", r2.points[i].point);
        snprintf(path, sizeof path, "%s/%s/last.ckpt", c.out_dir, pts[i]);
        CHECK_MSG(mtime_ns(path) == mt[i], "%s rewritten", path);
    }
    char *csv2 = csv_without_latency(r2.csv_path);
    CHECK(csv2 != NULL);
    CHECK_MSG(!strcmp(csv, csv2), "CSV changed:\n%s---\n%s", csv, csv2);
    free(csv);
    free(csv2);

    /* Asking for another schedule in the same directory is an error naming it. */
    apb_report_cfg c3 = c;
    c3.epochs = 2;
    apb_report r3;
    apb_status s = apb_report_run(&c3, &r3);
    CHECK_MSG(s == APB_EINVAL && strstr(apb_errmsg(), "/fp") && strstr(apb_errmsg(), "epochs=1"),
              "status %d: %s", s, apb_errmsg());
    apb_report_free(&r);
    apb_report_free(&r2);
    return 0;
}

/* A report killed in the middle of a point continues that point (resume) and
 * ends with what an uninterrupted report gives. */
APB_TEST(test_report_resumes_interrupted_point)
{
    apb_report_cfg c;
    cfg_tiny(&c, "killed");
    c.methods = APB_REPORT_FP;
    c.epochs = 2;
    c.limit_train = 256;
    c.latency_runs = 0;
    /* the CLI in a separate process, 256 images / batch 128 = 2 steps per epoch:
     * the trainer's test hook exits at step 3, in epoch 2 */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "APB_DEBUG_KILL_AT_STEP=3 %s report --data fashion-mnist --model convnet --out %s "
             "--methods fp --epochs 2 --limit-train 256 --limit-test 256 --threads 2 "
             "--latency-runs 0 --quiet > %s/cli.txt",
             apb_test_cli(), c.out_dir, apb_test_tmpdir());
    int st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 137, "killed report exited with status %d: %s", st, cmd);
    apb_report r;
    CHECK_OK(apb_report_run(&c, &r));
    CHECK(r.n == 1 && r.points[0].resumed && !r.points[0].reused && r.points[0].epochs == 2);

    apb_report_cfg u;
    cfg_tiny(&u, "straight");
    u.methods = APB_REPORT_FP;
    u.epochs = 2;
    u.limit_train = 256;
    u.latency_runs = 0;
    apb_report ru;
    CHECK_OK(apb_report_run(&u, &ru));
    CHECK_CLOSE(r.points[0].test_acc, ru.points[0].test_acc, 0, 0);
    CHECK(r.points[0].file_bytes == ru.points[0].file_bytes);
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/fp/model.apb", c.out_dir);
    snprintf(b, sizeof b, "%s/fp/model.apb", u.out_dir);
    unsigned char *da, *db;
    size_t na, nb;
    CHECK_OK(apb_file_read(a, &da, &na));
    CHECK_OK(apb_file_read(b, &db, &nb));
    CHECK_MSG(na == nb && !memcmp(da, db, na), "resumed model differs from the uninterrupted one");
    free(da);
    free(db);
    apb_report_free(&r);
    apb_report_free(&ru);
    return 0;
}

APB_TEST(test_report_option_lists)
{
    unsigned m;
    CHECK_OK(apb_report_methods_parse("fp,binary,apb", &m));
    CHECK(m == (APB_REPORT_FP | APB_REPORT_BINARY | APB_REPORT_APB));
    CHECK_OK(apb_report_methods_parse("all", &m));
    CHECK(m == APB_REPORT_ALL);
    CHECK_OK(apb_report_methods_parse("apb-actbin,q2,prune", &m));
    CHECK(m == (APB_REPORT_APB_ACTBIN | APB_REPORT_Q2 | APB_REPORT_PRUNE));
    CHECK_OK(apb_report_methods_parse("apb-int8,fp", &m));
    CHECK(m == (APB_REPORT_APB_INT8 | APB_REPORT_FP));
    CHECK(apb_report_methods_parse("fp,int8", &m) == APB_EINVAL && strstr(apb_errmsg(), "int8"));
    CHECK(apb_report_methods_parse("fp,,apb", &m) == APB_EINVAL);
    double v[4];
    int n;
    CHECK_OK(apb_report_list_parse("1.1,1.3,1.6", v, 4, &n));
    CHECK(n == 3 && v[0] == 1.1 && v[1] == 1.3 && v[2] == 1.6);
    CHECK(apb_report_list_parse("1.1,x", v, 4, &n) == APB_EINVAL);
    CHECK(apb_report_list_parse("1,2,3,4,5", v, 4, &n) == APB_EINVAL);
    CHECK(apb_report_list_parse("1.2,-1", v, 4, &n) == APB_EINVAL);
    /* impossible budgets / sparsities and duplicate points fail before training */
    apb_report_cfg c;
    cfg_tiny(&c, "bad");
    apb_report r;
    c.budgets[0] = 0.5;
    CHECK(apb_report_run(&c, &r) == APB_EINVAL && strstr(apb_errmsg(), "0.5"));
    c.nbudgets = 2;
    c.budgets[0] = 1.3;
    c.budgets[1] = 1.30;
    CHECK(apb_report_run(&c, &r) == APB_EINVAL && strstr(apb_errmsg(), "twice"));
    c.nbudgets = 1;
    c.methods = APB_REPORT_PRUNE;
    c.sparsities[0] = 1.0;
    CHECK(apb_report_run(&c, &r) == APB_EINVAL && strstr(apb_errmsg(), "sparsity"));
    return 0;
}

/* Test accuracy of the last line of DIR/log.csv (column 6). */
static double last_log_acc(const char *dir)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/log.csv", dir);
    unsigned char *d;
    size_t n;
    if (apb_file_read(path, &d, &n))
        return -1;
    d = realloc(d, n + 1);
    d[n] = 0;
    char *last = NULL, *save = NULL;
    for (char *l = strtok_r((char *)d, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        last = l;
    double acc = -1;
    char *f = last;
    for (int k = 0; k < 5 && f; k++)
        if ((f = strchr(f, ',')))
            f++;
    if (f)
        acc = strtod(f, NULL);
    free(d);
    return acc;
}

/* --seeds 2 --act binary: every compressed point runs twice (seed dirs), the
 * tables give the mean and sample std over the runs, the fp start is trained
 * once with fp activations, and the compressed points use binary activations. */
APB_TEST(test_report_seeds_and_activations)
{
    apb_report_cfg c;
    cfg_tiny(&c, "seeds");
    c.limit_train = 256;
    c.limit_test = 128;
    c.methods = APB_REPORT_FP | APB_REPORT_BINARY;
    c.seeds = 2;
    c.act = 1; /* binary */
    c.latency_runs = 1;
    apb_report r;
    CHECK_OK(apb_report_run(&c, &r));
    CHECK(r.n == 2);
    const apb_report_point *fp = find_point(&r, "fp"), *bin = find_point(&r, "binary");
    CHECK(fp && bin);
    CHECK_MSG(fp->nseeds == 1 && !strcmp(fp->act, "fp"), "fp: %d seeds, act %s", fp->nseeds, fp->act);
    CHECK_MSG(bin->nseeds == 2 && !strcmp(bin->act, "binary"), "binary: %d seeds, act %s",
              bin->nseeds, bin->act);
    char d1[1300], d2[1300];
    snprintf(d1, sizeof d1, "%s/binary", c.out_dir);
    snprintf(d2, sizeof d2, "%s/binary-seed2", c.out_dir);
    double a1 = last_log_acc(d1), a2 = last_log_acc(d2);
    CHECK_MSG(a1 >= 0 && a2 >= 0, "runs missing: %g %g", a1, a2);
    CHECK_CLOSE(bin->test_acc, (a1 + a2) / 2, 0, 1e-9);
    CHECK_CLOSE(bin->test_acc_std, fabs(a1 - a2) / sqrt(2.0), 0, 1e-9);
    unsigned char *md;
    size_t mdn;
    CHECK_OK(apb_file_read(r.md_path, &md, &mdn));
    md = realloc(md, mdn + 1);
    md[mdn] = 0;
    char want[128];
    snprintf(want, sizeof want, "%.2f ± %.2f (2)", bin->test_acc, bin->test_acc_std);
    CHECK_MSG(strstr((char *)md, want), "no '%s' in\n%s", want, (char *)md);
    free(md);
    apb_report_free(&r);
    return 0;
}

/* SIGTERM in the middle of a point (the trainer's hook raises it inside epoch 2):
 * exit 143, the command to run again, the point's last.ckpt at that batch; the
 * same command then finishes the report with the model an uninterrupted one
 * gives. */
APB_TEST(test_report_signal_stops_and_resumes)
{
    apb_report_cfg c;
    cfg_tiny(&c, "signalled");
    char cmd[4096], err[1200];
    snprintf(err, sizeof err, "%s/err.txt", apb_test_tmpdir());
    const char *args = "report --data fashion-mnist --model convnet --methods fp --epochs 2 --limit-train 256 "
                       "--limit-test 256 --threads 2 --latency-runs 0 --quiet";
    snprintf(cmd, sizeof cmd, "APB_DEBUG_SIGNAL_AT_STEP=3 APB_DEBUG_SIGNAL=TERM %s %s --out %s > /dev/null 2> %s",
             apb_test_cli(), args, c.out_dir, err);
    int st = system(cmd);
    unsigned char *e;
    size_t ne;
    CHECK_OK(apb_file_read(err, &e, &ne));
    char want[2048];
    snprintf(want, sizeof want, "continue with: apb %s --out %s", args, c.out_dir);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 143 && strstr((char *)e, want), "status %d: %s", st, e);
    free(e);
    char path[1300];
    snprintf(path, sizeof path, "%s/fp/last.ckpt", c.out_dir);
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(path, &ck));
    CHECK_MSG(ck.meta.epoch == 1 && ck.meta.step == 1, "epoch %d step %d", ck.meta.epoch, ck.meta.step);
    apb_ckpt_free(&ck);
    snprintf(cmd, sizeof cmd, "%s %s --out %s > /dev/null 2> %s", apb_test_cli(), args, c.out_dir, err);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);

    apb_report_cfg u;
    cfg_tiny(&u, "unsignalled");
    u.methods = APB_REPORT_FP;
    u.epochs = 2;
    u.limit_train = 256;
    u.latency_runs = 0;
    apb_report ru;
    CHECK_OK(apb_report_run(&u, &ru));
    char a[1300], b[1300];
    snprintf(a, sizeof a, "%s/fp/model.apb", c.out_dir);
    snprintf(b, sizeof b, "%s/fp/model.apb", u.out_dir);
    unsigned char *da, *db;
    size_t na, nb;
    CHECK_OK(apb_file_read(a, &da, &na));
    CHECK_OK(apb_file_read(b, &db, &nb));
    CHECK_MSG(na == nb && !memcmp(da, db, na), "the stopped and resumed report's model differs");
    free(da);
    free(db);
    apb_report_free(&ru);
    return 0;
}
