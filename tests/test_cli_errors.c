/* test_cli_errors.c - what the commands say when the user gets something wrong,
 * and the small notes and counts that must not mislead (issue 19, items 4, 15,
 * 16 and 18): the exact words are checked on the CLI's captured output.
 *
 * Every model here is random (bench/randmodel.h) and every dataset tiny, so the
 * whole file runs in a few seconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <png.h>

#include "checkpoint.h"
#include "dataset.h"
#include "fileio.h"
#include "randmodel.h"
#include "test.h"

/* A convnet checkpoint with random weights for c x h x w inputs, 10 classes. */
static apb_status write_ckpt(const char *path, int c, int h, int w)
{
    apb_model *m;
    APB_TRY(apb_random_model("convnet", APB_WQ_FP, APB_AQ_FP, c, h, w, 10, 0.0, 3, &m));
    apb_ckpt_meta *meta = calloc(1, sizeof *meta);
    if (!meta) {
        apb_model_free(m);
        return apb_fail(APB_ENOMEM, "out of memory");
    }
    meta->model = m->cfg;
    snprintf(meta->classes, sizeof meta->classes, "c0|c1|c2|c3|c4|c5|c6|c7|c8|c9");
    for (int k = 0; k < 3; k++)
        meta->mean[k] = 0.5f, meta->std[k] = 0.25f;
    apb_status s = apb_ckpt_save(path, meta, m, NULL, 0);
    free(meta);
    apb_model_free(m);
    return s;
}

static apb_status write_model(const char *path, apb_wquant wq, apb_aquant aq, int c, int h, int w)
{
    unsigned char *buf;
    size_t size;
    APB_TRY(apb_random_model_file("convnet", wq, aq, c, h, w, 10, 0.03, 7, &buf, &size));
    apb_status s = apb_file_write_atomic(path, buf, size);
    free(buf);
    return s;
}

/* The stderr line that starts with "note: IMG: " (up to its newline), or NULL. */
static const char *note_for(const char *err, const char *img, char *line, size_t n)
{
    char head[1200];
    snprintf(head, sizeof head, "note: %s: ", img);
    const char *p = strstr(err, head);
    if (!p)
        return NULL;
    p += strlen(head);
    size_t len = strcspn(p, "\n");
    if (len >= n)
        len = n - 1;
    memcpy(line, p, len);
    line[len] = 0;
    return line;
}

/* Reads "KEY=X%" from text into *v; 0 on success. */
static int pct(const char *text, const char *key, double *v)
{
    const char *p = strstr(text, key);
    return !(p && sscanf(p + strlen(key), "%lf%%", v) == 1);
}

APB_TEST(test_fileio_refuses_directories_and_devices)
{
    const char *dir = apb_test_tmpdir();
    unsigned char *d = (unsigned char *)"x";
    size_t n = 7;
    CHECK(apb_file_read(dir, &d, &n) == APB_EIO);
    CHECK(d == NULL && n == 0);
    char want[1200];
    snprintf(want, sizeof want, "%s: is a directory, not a file", dir);
    CHECK_MSG(!strcmp(apb_errmsg(), want), "message: %s", apb_errmsg());
    /* a device is refused too (it used to read as an empty file) */
    CHECK(apb_file_read("/dev/null", &d, &n) == APB_EIO);
    CHECK_MSG(!strcmp(apb_errmsg(), "/dev/null: is not a regular file (a device, pipe or socket)"),
              "message: %s", apb_errmsg());
    CHECK(apb_is_directory(dir) && !apb_is_directory("/dev/null"));
    return 0;
}

APB_TEST(test_cli_directory_where_a_file_is_expected)
{
    const char *dir = apb_test_tmpdir();
    char run[1100], only_last[1100], empty[1100], model[1100], ckpt[1200], want[4096];
    char args[8192], *out, *err;
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(only_last, sizeof only_last, "%s/run-last", dir);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    snprintf(model, sizeof model, "%s/m.apb", dir);
    CHECK_OK(apb_mkdirs(run));
    CHECK_OK(apb_mkdirs(only_last));
    CHECK_OK(apb_mkdirs(empty));
    snprintf(ckpt, sizeof ckpt, "%s/best.ckpt", run);
    CHECK_OK(write_ckpt(ckpt, 1, 28, 28));
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", only_last);
    CHECK_OK(write_ckpt(ckpt, 1, 28, 28));
    CHECK_OK(write_model(model, APB_WQ_APB, APB_AQ_BINARY, 1, 28, 28));

    /* a checkpoint is expected: the run directory's checkpoint is suggested */
    const char *dirs[3] = {run, only_last, empty};
    const char *hint[3] = {"best.ckpt", "last.ckpt", NULL};
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 3; k++) {
            if (c == 0)
                snprintf(args, sizeof args, "eval --data fashion-mnist --limit-test 8 --ckpt %s",
                         dirs[k]);
            else if (c == 1)
                snprintf(args, sizeof args, "export --out %s/never%d.apb --ckpt %s", dir, k, dirs[k]);
            else
                snprintf(args, sizeof args, "train --limit-train 64 --limit-test 64 --epochs 1 "
                         "--out %s/never-run%d --init %s", dir, k, dirs[k]);
            int rc = apb_test_cli_run(args, &out, &err);
            if (hint[k])
                snprintf(want, sizeof want, "%s: is a directory, not a checkpoint; did you mean %s/%s?",
                         dirs[k], dirs[k], hint[k]);
            else
                snprintf(want, sizeof want, "%s: is a directory, not a checkpoint (it holds no best.ckpt or last.ckpt)",
                         dirs[k]);
            CHECK_MSG(rc == 1 && strstr(err, want) && !strstr(err, "out of memory"),
                      "apb %s: exit %d, stderr: %s", args, rc, err);
            free(out);
            free(err);
        }

    /* a model or an image is expected: the directory is named as such */
    const char *file_cmds[3][2] = {{"info", ""}, {"bench", "--reps 1"}, {"infer", model}};
    for (int c = 0; c < 3; c++) {
        if (c < 2)
            snprintf(args, sizeof args, "%s %s %s", file_cmds[c][0], run, file_cmds[c][1]);
        else
            snprintf(args, sizeof args, "infer %s %s", model, run);
        int rc = apb_test_cli_run(args, &out, &err);
        snprintf(want, sizeof want, "%s: is a directory, not a file", run);
        CHECK_MSG(rc == 1 && strstr(err, want) && !strstr(err, "out of memory"),
                  "apb %s: exit %d, stderr: %s", args, rc, err);
        free(out);
        free(err);
    }
    return 0;
}

APB_TEST(test_cli_shape_mismatch_names_the_data_geometry)
{
    const char *dir = apb_test_tmpdir();
    char ckpt[1100], model[1100], args[4096], *out, *err;
    snprintf(ckpt, sizeof ckpt, "%s/rgb32.ckpt", dir);
    snprintf(model, sizeof model, "%s/rgb32.apb", dir);
    CHECK_OK(write_ckpt(ckpt, 3, 32, 32));
    CHECK_OK(write_model(model, APB_WQ_APB, APB_AQ_BINARY, 3, 32, 32));
    const char *cmds[2][2] = {{"eval --ckpt", ckpt}, {"infer", model}};
    for (int c = 0; c < 2; c++) {
        snprintf(args, sizeof args, "%s %s --data fashion-mnist --limit-test 8", cmds[c][0],
                 cmds[c][1]);
        int rc = apb_test_cli_run(args, &out, &err);
        char want[2048];
        snprintf(want, sizeof want, "%s expects 3x32x32 inputs, data fashion-mnist has 1x28x28 images: input channels 3 vs 1",
                 cmds[c][1]);
        CHECK_MSG(rc == 1 && strstr(err, want) && !strstr(err, "1x32x32"),
                  "apb %s: exit %d, stderr: %s", args, rc, err);
        free(out);
        free(err);
    }
    return 0;
}

APB_TEST(test_cli_infer_notes_every_conversion)
{
    const char *dir = apb_test_tmpdir();
    char gray_model[1100], rgb_model[1100], img[7][1100], args[16384], line[512], *out, *err;
    snprintf(gray_model, sizeof gray_model, "%s/gray.apb", dir);
    snprintf(rgb_model, sizeof rgb_model, "%s/rgb64.apb", dir);
    CHECK_OK(write_model(gray_model, APB_WQ_APB, APB_AQ_BINARY, 1, 28, 28));
    /* 64x64 inputs: the random model stores an ImageNet-style resize to 73 */
    CHECK_OK(write_model(rgb_model, APB_WQ_APB, APB_AQ_BINARY, 3, 64, 64));
    static unsigned char px[300 * 200 * 4];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (unsigned char)(i * 37 % 251);
    static const char *const names[7] = {"g28.png", "rgb28.png", "rgba28.png", "g5.png",
                                         "g300x200.png", "rgb300x200.png", "rgb300x200.jpg"};
    for (int i = 0; i < 7; i++)
        snprintf(img[i], sizeof img[i], "%s/%s", dir, names[i]);
    CHECK_OK(apb_png_write_rgb(img[0], px, 28, 28, 1));
    CHECK_OK(apb_png_write_rgb(img[1], px, 28, 28, 3));
    png_image rgba;
    memset(&rgba, 0, sizeof rgba);
    rgba.version = PNG_IMAGE_VERSION;
    rgba.width = rgba.height = 28;
    rgba.format = PNG_FORMAT_RGBA;
    CHECK(png_image_write_to_file(&rgba, img[2], 0, px, 28 * 4, NULL) != 0);
    CHECK_OK(apb_png_write_rgb(img[3], px, 5, 5, 1));
    CHECK_OK(apb_png_write_rgb(img[4], px, 300, 200, 1));
    CHECK_OK(apb_png_write_rgb(img[5], px, 300, 200, 3));
    CHECK_OK(apb_jpeg_write(img[6], px, 300, 200, 3, 90));

    /* what the gray 28x28 model says about each image (NULL: fed as it is) */
    static const char *const gray_notes[7] = {
        NULL,
        "RGB converted to gray",
        "RGBA converted to gray (transparent pixels composited onto white)",
        "5x5 stretched to 28x28",
        "300x200 center-cropped to 28x28",
        "RGB converted to gray; 300x200 center-cropped to 28x28",
        "RGB converted to gray; 300x200 center-cropped to 28x28",
    };
    int n = snprintf(args, sizeof args, "infer %s --top 1", gray_model);
    for (int i = 0; i < 7; i++)
        n += snprintf(args + n, sizeof args - (size_t)n, " %s", img[i]);
    int rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "apb %s: exit %d, stderr: %s", args, rc, err);
    for (int i = 0; i < 7; i++) {
        const char *got = note_for(err, img[i], line, sizeof line);
        if (!gray_notes[i])
            CHECK_MSG(!got, "%s: unexpected note '%s'", img[i], got);
        else
            CHECK_MSG(got && !strcmp(got, gray_notes[i]), "%s: note '%s', want '%s'\nstderr:\n%s",
                      img[i], got ? got : "(none)", gray_notes[i], err);
        char head[1200];
        snprintf(head, sizeof head, "%s:\n  1 ", img[i]);
        CHECK_MSG(strstr(out, head), "%s not classified on stdout:\n%s", img[i], out);
    }
    CHECK_MSG(!strstr(out, "note:"), "notes belong on stderr, stdout:\n%s", out);
    free(out);
    free(err);

    /* a 3-channel model with a stored resize: gray is widened, sizes resized + cropped */
    snprintf(args, sizeof args, "infer %s %s %s %s", rgb_model, img[0], img[5], img[3]);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "apb %s: exit %d, stderr: %s", args, rc, err);
    static const char *const rgb_notes[3] = {
        "gray converted to RGB; 28x28 resized to 73x73 and center-cropped to 64x64",
        "300x200 resized to 109x73 and center-cropped to 64x64",
        "gray converted to RGB; 5x5 resized to 73x73 and center-cropped to 64x64",
    };
    const int which[3] = {0, 5, 3};
    for (int i = 0; i < 3; i++) {
        const char *got = note_for(err, img[which[i]], line, sizeof line);
        CHECK_MSG(got && !strcmp(got, rgb_notes[i]), "%s: note '%s', want '%s'", img[which[i]],
                  got ? got : "(none)", rgb_notes[i]);
    }
    free(out);
    free(err);

    /* the rules are documented where the user looks */
    rc = apb_test_cli_run("infer --help", &out, &err);
    CHECK(rc == 0);
    CHECK_MSG(strstr(out, "stretched") && strstr(out, "center-cropped") && strstr(out, "gray") &&
                  strstr(out, "note: IMAGE"),
              "infer --help:\n%s", out);
    free(out);
    free(err);
    return 0;
}

APB_TEST(test_cli_batch_zero_refused_alike)
{
    const char *dir = apb_test_tmpdir();
    char ckpt[1100], model[1100], args[4096], *out, *err;
    snprintf(ckpt, sizeof ckpt, "%s/m.ckpt", dir);
    snprintf(model, sizeof model, "%s/m.apb", dir);
    CHECK_OK(write_ckpt(ckpt, 1, 28, 28));
    CHECK_OK(write_model(model, APB_WQ_APB, APB_AQ_BINARY, 1, 28, 28));
    const char *cmds[3][2] = {{"eval", "--data fashion-mnist --limit-test 8 --ckpt"},
                              {"infer", "--data fashion-mnist --limit-test 8"},
                              {"infer", ""}};
    for (int b = 0; b > -2; b--)
        for (int c = 0; c < 3; c++) {
            snprintf(args, sizeof args, "%s %s %s --batch %d %s", cmds[c][0], cmds[c][1],
                     c == 0 ? ckpt : model, b, c == 2 ? model : "");
            int rc = apb_test_cli_run(args, &out, &err);
            char want[256];
            snprintf(want, sizeof want, "apb %s: --batch must be at least 1 (got %d)\n", cmds[c][0], b);
            CHECK_MSG(rc == 2 && !strcmp(err, want), "apb %s: exit %d, stderr: %s", args, rc, err);
            free(out);
            free(err);
        }
    return 0;
}

APB_TEST(test_cli_infer_data_top_k)
{
    const char *dir = apb_test_tmpdir();
    char model[1100], args[4096], *out, *err;
    snprintf(model, sizeof model, "%s/m.apb", dir);
    CHECK_OK(write_model(model, APB_WQ_APB, APB_AQ_BINARY, 1, 28, 28));
    double t1, t3, t5, t10;
    snprintf(args, sizeof args, "infer %s --data fashion-mnist --limit-test 200 --top 3", model);
    int rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "apb %s: exit %d, stderr: %s", args, rc, err);
    CHECK_MSG(!pct(out, "top1=", &t1) && !pct(out, "top5=", &t5) && !pct(out, "\ntop3=", &t3),
              "no top1/top3/top5 in:\n%s", out);
    /* a random model: top-3 lies strictly between top-1 and top-5 on 200 images */
    CHECK_MSG(t1 < t3 && t3 < t5, "top1 %g top3 %g top5 %g", t1, t3, t5);
    free(out);
    free(err);
    snprintf(args, sizeof args, "infer %s --data fashion-mnist --limit-test 200 --top 10", model);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && !pct(out, "\ntop10=", &t10), "apb %s: exit %d\n%s%s", args, rc, out, err);
    CHECK_CLOSE(t10, 100.0, 0.0, 1e-9);
    free(out);
    free(err);
    /* the default prints no extra line, so the output still matches `apb eval` */
    snprintf(args, sizeof args, "infer %s --data fashion-mnist --limit-test 20", model);
    rc = apb_test_cli_run(args, &out, &err);
    const char *loss = strstr(out, " loss=");
    CHECK_MSG(rc == 0 && loss && !strstr(loss, "\ntop"), "apb %s: exit %d\n%s%s", args, rc, out, err);
    free(out);
    free(err);
    return 0;
}

APB_TEST(test_cli_infer_data_names_the_path_taken)
{
    const char *dir = apb_test_tmpdir();
    char model[1100], args[4096], *out, *err;
    snprintf(model, sizeof model, "%s/m.apb", dir);
    /* convnet: 4 conv/linear layers, the first and the last kept fp */
    static const struct {
        apb_aquant aq;
        int reference;
        const char *want;
    } cases[] = {
        {APB_AQ_FP, 0, "(sgemm path: none of 4 conv/linear layers on bit kernels)"},
        {APB_AQ_BINARY, 0, "(bit kernels for 2 of 4 conv/linear layers, sgemm for the rest)"},
        {APB_AQ_BINARY, 1, "(float reference path)"},
    };
    for (int c = 0; c < 3; c++) {
        CHECK_OK(write_model(model, APB_WQ_APB, cases[c].aq, 1, 28, 28));
        snprintf(args, sizeof args, "infer %s --data fashion-mnist --limit-test 8", model);
        if (cases[c].reference)
            setenv("APBRT_REFERENCE", "1", 1);
        int rc = apb_test_cli_run(args, &out, &err);
        unsetenv("APBRT_REFERENCE");
        CHECK_MSG(rc == 0 && strstr(out, cases[c].want), "case %d: want '%s', exit %d:\n%s%s", c,
                  cases[c].want, rc, out, err);
        free(out);
        free(err);
    }
    return 0;
}

/* One class folder file: a PNG when ok, otherwise bytes that decode as nothing. */
static int put_file(const char *dir, const char *cls, const char *name, int ok)
{
    char sub[1200], path[1400];
    snprintf(sub, sizeof sub, "%s/train/%s", dir, cls);
    if (apb_mkdirs(sub))
        return 1;
    snprintf(path, sizeof path, "%s/%s", sub, name);
    unsigned char px[8 * 8 * 3];
    for (int i = 0; i < (int)sizeof px; i++)
        px[i] = (unsigned char)(i * 5);
    return ok ? apb_png_write_rgb(path, px, 8, 8, 3) != APB_OK
              : apb_file_write_atomic(path, "not an image", 12) != APB_OK;
}

APB_TEST(test_cli_data_counts_decodable_samples_only)
{
    const char *dir = apb_test_tmpdir();
    char root[1100], args[4096], *out, *err;
    snprintf(root, sizeof root, "%s/folder", dir);
    /* cats: 3 files, one undecodable; dogs: 2 files, both undecodable */
    CHECK(put_file(root, "cats", "a.png", 1) == 0);
    CHECK(put_file(root, "cats", "b.png", 0) == 0);
    CHECK(put_file(root, "cats", "c.png", 1) == 0);
    CHECK(put_file(root, "dogs", "d.png", 0) == 0);
    CHECK(put_file(root, "dogs", "e.png", 0) == 0);
    snprintf(args, sizeof args, "data imagenet:%s --split train --threads 2", root);
    int rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0, "apb %s: exit %d, stderr: %s", args, rc, err);
    CHECK_MSG(strstr(out, " samples=2 undecodable=3 classes=2 "), "header wrong:\n%s", out);
    int cats = -1, dogs = -1;
    const char *p = strstr(out, " cats ");
    const char *q = strstr(out, " dogs ");
    CHECK_MSG(p && q && sscanf(p, " cats %d", &cats) == 1 && sscanf(q, " dogs %d", &dogs) == 1,
              "no histogram in:\n%s", out);
    CHECK_MSG(cats == 2 && dogs == 0, "histogram cats %d dogs %d:\n%s", cats, dogs, out);
    CHECK_MSG(strstr(out, "unreadable files: 3\n") && strstr(out, "b.png: ") &&
                  strstr(out, "d.png: ") && strstr(out, "e.png: "),
              "bad files not listed:\n%s", out);
    free(out);
    free(err);
    /* --no-check counts files and says that it did not decode them */
    snprintf(args, sizeof args, "data imagenet:%s --split train --no-check", root);
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 0 && strstr(out, " samples=5 undecodable=unchecked "), "apb %s: exit %d\n%s%s",
              args, rc, out, err);
    free(out);
    free(err);
    return 0;
}

APB_TEST(test_cli_report_error_has_one_prefix)
{
    char args[4096], *out, *err;
    snprintf(args, sizeof args, "report --out %s/r --sparsities 1.5", apb_test_tmpdir());
    int rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 1 && !strcmp(err, "apb report: sparsity 1.5 is not in (0, 1)\n"),
              "exit %d, stderr: %s", rc, err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "report --out %s/r --latency-runs -1", apb_test_tmpdir());
    rc = apb_test_cli_run(args, &out, &err);
    CHECK_MSG(rc == 1 && !strcmp(err, "apb report: --latency-runs must be >= 0 (got -1)\n"),
              "exit %d, stderr: %s", rc, err);
    free(out);
    free(err);
    return 0;
}

APB_TEST(test_run_tests_filter_matching_nothing_fails)
{
    char self[1024], *out, *err;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n] = 0;
    int rc = apb_test_run(self, "zz_no_such_test_zz", &out, &err);
    CHECK_MSG(rc == 1 && strstr(err, "no test matches 'zz_no_such_test_zz'") &&
                  strstr(out, "0 passed, 0 failed"),
              "exit %d, stdout: %s, stderr: %s", rc, out, err);
    free(out);
    free(err);
    return 0;
}
