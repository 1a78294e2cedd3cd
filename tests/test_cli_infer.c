/* test_cli_infer.c - `apb infer` and `apb bench --model` end to end, through the
 * built CLI (build/apb beside the test binary), plus the random model builder.
 *
 * The CLI's answers are checked against libapbrt called directly from the test
 * on the same decoded image; errors must exit 1 and name the offending file;
 * `apb infer --data` must agree with `apb eval` on the checkpoint it was
 * exported from.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"
#include "checkpoint.h"
#include "dataset.h"
#include "export.h"
#include "fileio.h"
#include "randmodel.h"
#include "test.h"
#include "trainer.h"

static apb_status write_model(const char *path, apb_wquant wq, apb_aquant aq)
{
    unsigned char *buf;
    size_t size;
    APB_TRY(apb_random_model_file("convnet", wq, aq, 1, 28, 28, 10, 0.03, 7, &buf, &size));
    apb_status s = apb_file_write_atomic(path, buf, size);
    free(buf);
    return s;
}

/* A smooth test pattern [h, w, 3] that differs per `seed`. */
static void pattern(unsigned char *rgb, int w, int h, int seed)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * w + x) * 3 + c] =
                    (unsigned char)((x * (7 + seed) + y * (3 + 2 * seed) + 40 * c * seed) & 255);
}

/* What the CLI must print for `img`: top class and its probability, computed
 * with libapbrt directly. */
static int expected_top1(apbrt_model *m, const char *img, int *cls, double *prob)
{
    int C, H, W, K = apbrt_num_classes(m);
    apbrt_input_shape(m, &C, &H, &W);
    apb_transform t;
    memset(&t, 0, sizeof t);
    t.out_c = C, t.out_h = H, t.out_w = W;
    t.resize_short = apbrt_resize_short(m);
    t.center_crop = 1;
    apbrt_normalization(m, t.mean, t.std);
    unsigned char *rgb;
    int w, h;
    if (apb_image_load(img, &rgb, &w, &h))
        return 1;
    float x[28 * 28 * 3], z[64];
    apb_status s = apb_image_preprocess(rgb, w, h, &t, x);
    free(rgb);
    if (s || K > 64 || apbrt_run(m, x, 1, z))
        return 1;
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best])
            best = k;
    double se = 0;
    for (int k = 0; k < K; k++)
        se += exp((double)z[k] - z[best]);
    *cls = best;
    *prob = 1.0 / se;
    return 0;
}

/* Parses the block printed for `img` (a line "IMG:" then "  RANK NAME PROB"
 * lines); returns the number of rows read into names/probs (at most max). */
static int parse_block(const char *out, const char *img, char names[][32], double *probs, int max)
{
    char head[1100];
    snprintf(head, sizeof head, "%s:\n", img);
    const char *p = strstr(out, head);
    if (!p)
        return 0;
    p += strlen(head);
    int n = 0;
    while (n < max) {
        int rank, used = 0;
        if (sscanf(p, " %d %31s %lf%n", &rank, names[n], &probs[n], &used) != 3 || rank != n + 1)
            break;
        p += used;
        n++;
    }
    return n;
}

APB_TEST(test_randmodel_fp_fraction)
{
    for (int k = 0; k < 2; k++) {
        double want = k ? 0.03 : 0.0;
        apb_model *m;
        CHECK_OK(apb_random_model("resnet20", APB_WQ_APB, APB_AQ_BINARY, 3, 32, 32, 10, want, 5, &m));
        apb_model_memory mem;
        int64_t lfp[256];
        double lb[256];
        CHECK(m->nlayers <= 256);
        apb_model_memory_stats(m, &mem, lb, lfp);
        CHECK(mem.cweights > 100000);
        CHECK_CLOSE(mem.fp_fraction, want, 0.0, 1e-4);
        for (int i = 0; i < m->nlayers; i++) {
            const apb_layer *l = &m->layers[i];
            if (l->kind == APB_L_CONV && l->wq == APB_WQ_APB)
                CHECK_MSG(llabs(lfp[i] - llround(want * (double)l->w.numel)) <= 1,
                          "layer %s: %lld of %lld weights full precision, want fraction %g", l->name,
                          (long long)lfp[i], (long long)l->w.numel, want);
            if (l->kind == APB_L_BN)
                CHECK(l->rvar[0] >= 0.5f && l->rvar[0] <= 1.5f && l->rmean[0] != 0.0f);
        }
        apb_model_free(m);
    }
    apb_model *m;
    CHECK(apb_random_model("convnet", APB_WQ_APB, APB_AQ_FP, 1, 28, 28, 10, 1.5, 1, &m) != APB_OK);
    CHECK(apb_random_model("nonet", APB_WQ_APB, APB_AQ_FP, 1, 28, 28, 10, 0.1, 1, &m) != APB_OK);
    return 0;
}

APB_TEST(test_cli_infer_images_match_runtime)
{
    const char *dir = apb_test_tmpdir();
    char model[1100], img[3][1100], args[8192];
    snprintf(model, sizeof model, "%s/m.apb", dir);
    CHECK_OK(write_model(model, APB_WQ_APB, APB_AQ_BINARY));
    static unsigned char rgb[60 * 50 * 3], gray[28 * 28];
    /* a 28x28 gray PNG (the model's size), a 60x50 RGB PNG (cropped, converted
     * to gray) and a 37x45 JPEG (center-cropped) */
    pattern(rgb, 28, 28, 1);
    for (int i = 0; i < 28 * 28; i++)
        gray[i] = rgb[3 * i];
    snprintf(img[0], sizeof img[0], "%s/gray.png", dir);
    CHECK_OK(apb_png_write_rgb(img[0], gray, 28, 28, 1));
    pattern(rgb, 60, 50, 2);
    snprintf(img[1], sizeof img[1], "%s/rgb.png", dir);
    CHECK_OK(apb_png_write_rgb(img[1], rgb, 60, 50, 3));
    pattern(rgb, 37, 45, 3);
    snprintf(img[2], sizeof img[2], "%s/photo.jpg", dir);
    CHECK_OK(apb_jpeg_write(img[2], rgb, 37, 45, 3, 90));

    apbrt_model *m;
    CHECK_MSG(apbrt_load(model, &m) == 0, "%s", apbrt_errmsg());
    char *out, *err;
    /* all 10 classes: probabilities sum to 1 */
    snprintf(args, sizeof args, "infer %s %s %s %s --threads 1 --top 10", model, img[0], img[1], img[2]);
    int rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "apb %s exited %d: %s", args, rc, err);
    int top1[3];
    for (int i = 0; i < 3; i++) {
        char names[10][32];
        double p[10], sum = 0;
        int n = parse_block(out, img[i], names, p, 10);
        CHECK_MSG(n == 10, "%d class rows for %s in:\n%s", n, img[i], out);
        for (int k = 0; k < n; k++) {
            sum += p[k];
            CHECK_MSG(k == 0 || p[k] <= p[k - 1], "%s: probabilities not sorted", img[i]);
            int found = 0;
            for (int c = 0; c < 10; c++)
                found |= !strcmp(names[k], apbrt_class_name(m, c));
            CHECK_MSG(found, "'%s' is not a class name of the model", names[k]);
        }
        CHECK_CLOSE(sum, 1.0, 0.0, 1e-4);
        int cls;
        double prob;
        CHECK_MSG(expected_top1(m, img[i], &cls, &prob) == 0, "%s", apbrt_errmsg());
        CHECK_MSG(!strcmp(names[0], apbrt_class_name(m, cls)), "%s: CLI top-1 %s, runtime %s",
                  img[i], names[0], apbrt_class_name(m, cls));
        CHECK_CLOSE(p[0], prob, 0.0, 1e-5);
        top1[i] = cls;
    }
    free(out);
    free(err);
    /* default top-5, batched with another thread count: same answers */
    snprintf(args, sizeof args, "infer %s %s %s %s --threads 2 --batch 2", model, img[2], img[1], img[0]);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "apb %s exited %d: %s", args, rc, err);
    for (int i = 0; i < 3; i++) {
        char names[10][32];
        double p[10];
        CHECK_MSG(parse_block(out, img[i], names, p, 10) == 5, "top-5 block of %s in:\n%s", img[i], out);
        CHECK(!strcmp(names[0], apbrt_class_name(m, top1[i])));
    }
    free(out);
    free(err);
    apbrt_free(m);
    return 0;
}

APB_TEST(test_cli_infer_errors_name_the_file)
{
    const char *dir = apb_test_tmpdir();
    char model[1100], cut[1100], junk[1100], good[1100], args[8192];
    snprintf(model, sizeof model, "%s/m.apb", dir);
    snprintf(cut, sizeof cut, "%s/truncated.apb", dir);
    snprintf(junk, sizeof junk, "%s/garbage.png", dir);
    snprintf(good, sizeof good, "%s/ok.png", dir);
    CHECK_OK(write_model(model, APB_WQ_APB, APB_AQ_Q2));
    unsigned char *buf;
    size_t n;
    CHECK_OK(apb_file_read(model, &buf, &n));
    CHECK_OK(apb_file_write_atomic(cut, buf, n / 2));
    free(buf);
    CHECK_OK(apb_file_write_atomic(junk, "this is not an image at all", 27));
    unsigned char rgb[28 * 28 * 3];
    pattern(rgb, 28, 28, 4);
    CHECK_OK(apb_png_write_rgb(good, rgb, 28, 28, 3));
    char *out, *err;

    snprintf(args, sizeof args, "infer %s %s", cut, good);
    int rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 1 && strstr(err, "apb infer: ") && strstr(err, cut),
              "truncated model: exit %d, stderr: %s", rc, err);
    free(out);
    free(err);

    /* a garbage image fails alone; the good one is still classified (its only
     * stderr line is the note on its conversion to gray) */
    snprintf(args, sizeof args, "infer %s %s %s", model, junk, good);
    rc = apb_test_cli_run(args, &out, &err);
    char good_err[1200];
    snprintf(good_err, sizeof good_err, "apb infer: %s", good);
    CHECK_MSG(rc == 1 && strstr(err, "apb infer: ") && strstr(err, junk) && !strstr(err, good_err),
              "garbage image: exit %d, stderr: %s", rc, err);
    char names[10][32];
    double p[10];
    CHECK_MSG(parse_block(out, good, names, p, 10) == 5, "good image not classified:\n%s", out);
    free(out);
    free(err);

    snprintf(args, sizeof args, "infer %s %s/missing.jpg", model, dir);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 1 && strstr(err, "missing.jpg"), "missing image: exit %d, stderr: %s", rc, err);
    free(out);
    free(err);

    snprintf(args, sizeof args, "infer %s", model);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 2, "no images: exit %d", rc);
    free(out);
    free(err);
    return 0;
}

APB_TEST(test_cli_bench_model_line)
{
    char *out, *err;
    int rc = apb_test_cli_run("bench --model convnet --quant apb --act binary --input 1x28x28 --classes 10 "
                     "--batch 2 --threads 1 --reps 3", &out, &err);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, err);
    const char *line = strstr(out, "op=infer ");
    CHECK_MSG(line && line == out, "no op=infer line first in:\n%s", out);
    char model[32], quant[16], act[16];
    int batch, threads;
    double med, p90, ips, bpw;
    size_t bytes;
    const char *p = strstr(line, "latency_ms_median=");
    CHECK(sscanf(line, "op=infer model=%31s quant=%15s act=%15s", model, quant, act) == 3);
    CHECK(!strcmp(model, "convnet") && !strcmp(quant, "apb") && !strcmp(act, "binary"));
    CHECK(strstr(line, "input=1x28x28 ") && strstr(line, "reps=3 "));
    CHECK(sscanf(strstr(line, "batch="), "batch=%d threads=%d", &batch, &threads) == 2);
    CHECK(batch == 2 && threads == 1);
    CHECK(p && sscanf(p, "latency_ms_median=%lf latency_ms_p90=%lf images_per_s=%lf file_bytes=%zu "
                         "bits_per_weight=%lf", &med, &p90, &ips, &bytes, &bpw) == 5);
    double mn;
    const char *q = strstr(line, "latency_ms_min=");
    CHECK(q && sscanf(q, "latency_ms_min=%lf", &mn) == 1);
    CHECK_MSG(mn > 0 && mn <= med && p90 >= med && ips > 0, "min %g median %g p90 %g img/s %g", mn,
              med, p90, ips);
    CHECK_CLOSE(ips, 2.0 / (med * 1e-3), 0.01, 0.0);
    /* the file the benchmark timed is the random model with the same options */
    unsigned char *buf;
    size_t size;
    CHECK_OK(apb_random_model_file("convnet", APB_WQ_APB, APB_AQ_BINARY, 1, 28, 28, 10, 0.03, 1, &buf, &size));
    free(buf);
    CHECK_MSG(bytes == size, "file_bytes=%zu, random model file has %zu", bytes, size);
    CHECK_MSG(bpw > 1.0 && bpw < 4.0, "bits_per_weight=%g", bpw);
    /* the per-layer table lists the fp first conv and the 1-bit kernel */
    CHECK(strstr(out, "sgemm") && strstr(out, "1x1") && strstr(out, "time by kernel"));
    free(out);
    free(err);
    rc = apb_test_cli_run("bench --model convnet --quant apb --act nope --input 1x28x28", &out, &err);
    CHECK_MSG(rc == 1 && strstr(err, "nope"), "bad --act: exit %d, stderr %s", rc, err);
    free(out);
    free(err);
    /* --ab: a switch on and off in alternate passes, one line per thread count */
    rc = apb_test_cli_run("bench --model convnet --quant apb --act binary --batch 4 --reps 4 --ab split", &out, &err);
    CHECK_MSG(rc == 0, "--ab split: exit %d: %s", rc, err);
    double on, off, ratio, pct;
    for (int t = 1; t <= 2; t++) {
        char key[16];
        snprintf(key, sizeof key, "threads=%d ", t);
        const char *l = strstr(out, key);
        CHECK_MSG(l && strstr(out, "op=ab switch=split model=convnet"), "no --ab line for %d threads in:\n%s", t, out);
        const char *v = strstr(l, "on_ms_median=");
        CHECK(v && sscanf(v, "on_ms_median=%lf off_ms_median=%lf off_over_on=%lf on_faster_pct=%lf", &on, &off,
                          &ratio, &pct) == 4);
        CHECK_MSG(on > 0 && off > 0 && pct >= 0 && pct <= 100, "on %g off %g pairs won %g%%", on, off, pct);
        CHECK_CLOSE(ratio, off / on, 0.002, 0.01);
    }
    free(out);
    free(err);
    rc = apb_test_cli_run("bench --model convnet --ab nope", &out, &err);
    CHECK_MSG(rc == 2 && strstr(err, "nope"), "bad --ab: exit %d, stderr %s", rc, err);
    free(out);
    free(err);
    return 0;
}

/* Pulls "top1=X% top5=Y%" out of a command's output. */
static int parse_acc(const char *out, char *buf, size_t n)
{
    const char *p = strstr(out, "top1=");
    const char *e = p ? strstr(p, " loss=") : NULL;
    if (!p || !e || (size_t)(e - p) >= n)
        return 1;
    memcpy(buf, p, (size_t)(e - p));
    buf[e - p] = 0;
    return 0;
}

APB_TEST(test_cli_infer_data_matches_eval)
{
    apb_train_cfg c;
    apb_train_cfg_default(&c);
    snprintf(c.out_dir, sizeof c.out_dir, "%s/run", apb_test_tmpdir());
    c.limit_train = 512;
    c.limit_test = 256;
    c.quiet = 1;
    c.threads = 2;
    c.model.wq = APB_WQ_APB;
    c.model.aq = APB_AQ_BINARY;
    CHECK_OK(apb_train_run(&c, NULL));
    char ckpt[1200], model[1200], args[4096], a1[128], a2[128];
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", c.out_dir);
    snprintf(model, sizeof model, "%s/model.apb", c.out_dir);
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(ckpt, &ck));
    size_t bytes;
    apb_status s = apb_export_ckpt(&ck, model, &bytes);
    apb_ckpt_free(&ck);
    CHECK_OK(s);
    char *out, *err;
    snprintf(args, sizeof args, "infer %s --data fashion-mnist --limit-test 500 --threads 2", model);
    int rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && !parse_acc(out, a1, sizeof a1), "apb %s: exit %d\n%s%s", args, rc, out, err);
    CHECK_MSG(strstr(out, " 500 test images"), "%s", out);
    free(out);
    free(err);
    snprintf(args, sizeof args, "eval --ckpt %s --data fashion-mnist --limit-test 500 --threads 2", ckpt);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && !parse_acc(out, a2, sizeof a2), "apb %s: exit %d\n%s%s", args, rc, out, err);
    free(out);
    free(err);
    CHECK_MSG(!strcmp(a1, a2), "apb infer: %s, apb eval: %s", a1, a2);
    /* a trained model beats chance by far, so equal lines are not a coincidence of zeros */
    double top1 = atof(a1 + 5);
    CHECK_MSG(top1 > 40.0, "top-1 %s", a1);
    /* --int8-stem: named by apb info; apb infer --data gives the approximate
     * accuracy and, on the same images, the exact one, which is the plain file's */
    char model8[1300], a3[128], a4[128];
    snprintf(model8, sizeof model8, "%s/model8.apb", c.out_dir);
    snprintf(args, sizeof args, "export --ckpt %s --out %s --int8-stem", ckpt, model8);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, "approximate 8-bit"), "apb %s: exit %d\n%s%s", args, rc, out, err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "info %s", model8);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, "fp32/s8d") && strstr(out, "approximate: 1 layer"),
              "apb %s: exit %d\n%s%s", args, rc, out, err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "infer %s --data fashion-mnist --limit-test 500 --threads 2", model8);
    rc = apb_test_cli_run(args, &out, &err);
    const char *ex = rc == 0 ? strstr(out, "exact (") : NULL;
    CHECK_MSG(ex && !parse_acc(out, a3, sizeof a3) && !parse_acc(ex, a4, sizeof a4),
              "apb %s: exit %d\n%s%s", args, rc, out, err);
    free(out);
    free(err);
    CHECK_MSG(!strcmp(a4, a1), "exact pass %s, plain file %s", a4, a1);
    CHECK_MSG(fabs(atof(a3 + 5) - top1) < 3.0, "int8 stem %s, exact %s", a3, a1);
    return 0;
}
