/* cmd_infer.c - `apb infer MODEL.apb IMAGE...` and `apb infer MODEL.apb --data SPEC`.
 *
 * The user-facing side of the runtime: everything goes through libapbrt (the
 * deployable path), never the training graph, so what this prints is what an
 * application linking libapbrt gets.
 *
 * Images are decoded (PNG / JPEG) and preprocessed with the model's own eval
 * transform, read from the file: shorter side resized to apbrt_resize_short()
 * when non-zero, center crop to the input size (with no resize, a larger image
 * is center-cropped and a smaller one stretched), RGB -> gray for 1-channel
 * models, then the stored mean/std. Every image that is not fed as it is gets a
 * "note:" line on stderr saying what was converted, so a stretched thumbnail or
 * a colour photo on a gray model is never classified silently. Per image the
 * top-K classes are printed with softmax probabilities. An image that cannot be
 * read or decoded is reported by path and skipped; the rest are classified.
 * --list FILE reads the paths from a file (or stdin), for more images than a
 * command line holds.
 *
 * --data evaluates the test split through the runtime with the dataset's eval
 * transform (normalization and resize taken from the model, which match the
 * dataset's defaults for models exported from `apb train`) and prints
 * "top1=..% top5=..% loss=.." exactly as `apb eval` does for the checkpoint,
 * with the same tie rules (top-1: first maximal logit; top-K: fewer than K
 * logits strictly above the label's), so the two can be compared line for line.
 * A --top K other than 1 and 5 adds a "topK=..%" line. The header line names the
 * path the runtime really takes: the float reference, or how many conv/linear
 * layers run on bit kernels (an fp-activation APB layer runs sgemm).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"
#include "cli.h"
#include "dataset.h"
#include "fileio.h"
#include "loader.h"
#include "threads.h"

static int infer_fail(const char *file)
{
    const char *m = apbrt_errmsg();
    if (!m || !*m)
        m = "failed";
    if (file && !strstr(m, file))
        fprintf(stderr, "apb infer: %s: %s\n", file, m);
    else
        fprintf(stderr, "apb infer: %s\n", m);
    return 1;
}

/* Softmax of z [K] into p [K] (double accumulation); returns log-sum-exp. */
static double softmax(const float *z, int K, double *p)
{
    float mx = z[0];
    for (int k = 1; k < K; k++)
        mx = z[k] > mx ? z[k] : mx;
    double se = 0;
    for (int k = 0; k < K; k++) {
        p[k] = exp((double)z[k] - mx);
        se += p[k];
    }
    for (int k = 0; k < K; k++)
        p[k] /= se;
    return mx + log(se);
}

/* Indices of the `top` largest p [K] into idx [top], ties to the lower index. */
static void top_k(const double *p, int K, int top, int *idx)
{
    for (int t = 0; t < top; t++) {
        int best = -1;
        for (int k = 0; k < K; k++) {
            int used = 0;
            for (int u = 0; u < t; u++)
                used |= idx[u] == k;
            if (!used && (best < 0 || p[k] > p[best]))
                best = k;
        }
        idx[t] = best;
    }
}

/* The conversion note for one image (empty when it is fed as it is): the
 * channel change from the file's own layout (1 gray, 2 gray + alpha, 3 RGB,
 * 4 RGBA) to the model's C, then the geometry change of transform t. */
static void conversion_note(int src_channels, int C, const apb_transform *t, int w, int h,
                            char *buf, size_t n)
{
    static const char *const layout[5] = {"", "gray", "gray+alpha", "RGB", "RGBA"};
    const char *chan = "";
    char cbuf[96], geom[128];
    int sc = src_channels >= 1 && src_channels <= 4 ? src_channels : 3;
    int alpha = sc == 2 || sc == 4, color = sc >= 3;
    if (color != (C == 3) || alpha) {
        snprintf(cbuf, sizeof cbuf, "%s converted to %s%s", layout[sc], C == 3 ? "RGB" : "gray",
                 alpha ? " (transparent pixels composited onto white)" : "");
        chan = cbuf;
    }
    apb_transform_describe(t, w, h, geom, sizeof geom);
    snprintf(buf, n, "%s%s%s", chan, *chan && *geom ? "; " : "", geom);
}

static int infer_images(apbrt_model *m, const char *model_path, char **images, int nimg, int top,
                        int batch)
{
    int C, H, W, K = apbrt_num_classes(m);
    apbrt_input_shape(m, &C, &H, &W);
    apb_transform t;
    memset(&t, 0, sizeof t);
    t.out_c = C, t.out_h = H, t.out_w = W;
    t.resize_short = apbrt_resize_short(m);
    t.center_crop = 1;
    apbrt_normalization(m, t.mean, t.std);
    if (top > K)
        top = K;
    long in_sz = (long)C * H * W;
    float *x = malloc(sizeof(float) * (size_t)(in_sz * batch));
    float *logits = malloc(sizeof(float) * (size_t)K * batch);
    double *p = malloc(sizeof(double) * (size_t)K);
    int *idx = malloc(sizeof(int) * (size_t)top);
    int *which = malloc(sizeof(int) * (size_t)batch);
    if (!x || !logits || !p || !idx || !which) {
        fprintf(stderr, "apb infer: out of memory for a batch of %d %dx%dx%d images\n", batch, C, H, W);
        free(x), free(logits), free(p), free(idx), free(which);
        return 1;
    }
    printf("model %s (%s): input %dx%dx%d, %d classes\n", model_path, apbrt_model_name(m), C, H, W, K);
    int rc = 0;
    for (int i0 = 0; i0 < nimg;) {
        int bn = 0;
        for (; i0 < nimg && bn < batch; i0++) {
            unsigned char *rgb = NULL;
            int w, h, channels;
            apb_status s = apb_image_load_channels(images[i0], &rgb, &w, &h, &channels);
            if (!s)
                s = apb_image_preprocess(rgb, w, h, &t, x + bn * in_sz);
            free(rgb);
            if (s) {
                rc = infer_fail(images[i0]);
                continue;
            }
            char note[256];
            conversion_note(channels, C, &t, w, h, note, sizeof note);
            if (note[0])
                fprintf(stderr, "note: %s: %s\n", images[i0], note);
            which[bn++] = i0;
        }
        if (bn == 0)
            continue;
        if (apbrt_run(m, x, bn, logits) != 0) {
            rc = infer_fail(model_path);
            break;
        }
        for (int b = 0; b < bn; b++) {
            softmax(logits + (long)b * K, K, p);
            top_k(p, K, top, idx);
            printf("%s:\n", images[which[b]]);
            for (int k = 0; k < top; k++)
                printf("  %d %-24s %.6f\n", k + 1, apbrt_class_name(m, idx[k]), p[idx[k]]);
        }
        fflush(stdout);
    }
    free(x), free(logits), free(p), free(idx), free(which);
    return rc;
}

/* The path apbrt_run takes, in words, for the --data header line. */
static void run_path(const apbrt_model *m, char *buf, size_t n)
{
    if (apbrt_uses_reference(m)) {
        snprintf(buf, n, "float reference path");
        return;
    }
    int layers = 0, bits = 0;
    for (int i = 0; i < apbrt_num_layers(m); i++) {
        apbrt_layer_info li;
        if (apbrt_layer_info_get(m, i, &li) != 0 || !li.kernel[0])
            continue;
        layers++;
        bits += strcmp(li.kernel, "sgemm") != 0;
    }
    if (bits == 0)
        snprintf(buf, n, "sgemm path: none of %d conv/linear layers on bit kernels", layers);
    else if (bits == layers)
        snprintf(buf, n, "bit-kernel path: all %d conv/linear layers", layers);
    else
        snprintf(buf, n, "bit kernels for %d of %d conv/linear layers, sgemm for the rest", bits,
                 layers);
}

static int infer_data(apbrt_model *m, const char *model_path, const char *spec, int limit,
                      int batch, int top)
{
    int C, H, W, K = apbrt_num_classes(m);
    apbrt_input_shape(m, &C, &H, &W);
    apb_dataset *ds = NULL;
    apb_loader *ld = NULL;
    apb_transform t;
    float *logits = NULL;
    double *p = NULL;
    const char *blame = NULL; /* file to name when the message does not */
    apb_status s = apb_dataset_open(spec, "test", &ds);
    if (s)
        goto out;
    if (limit > 0)
        apb_dataset_limit(ds, limit);
    if ((s = apb_transform_default(ds, 0, H, &t)))
        goto out;
    if ((s = apb_cli_check_input(model_path, C, H, W, spec, ds, &t)))
        goto out;
    if (apb_dataset_num_classes(ds) != K) {
        s = apb_fail(APB_EINVAL, "%s has %d classes, data %s has %d", model_path, K, spec,
                     apb_dataset_num_classes(ds));
        goto out;
    }
    /* The model's own preprocessing wins over the dataset defaults. */
    apbrt_normalization(m, t.mean, t.std);
    if (apbrt_resize_short(m) > 0) {
        t.resize_short = apbrt_resize_short(m);
        t.center_crop = 1;
    }
    if ((s = apb_loader_create(ds, &t, batch, 0, 0, 1, apb_threads_get(), &ld)))
        goto out;
    logits = malloc(sizeof(float) * (size_t)K * batch);
    p = malloc(sizeof(double) * (size_t)K);
    if (!logits || !p) {
        s = apb_fail(APB_ENOMEM, "out of memory for the logits of a batch of %d", batch);
        goto out;
    }
    if (top > K)
        top = K; /* top == 0: no --top given, no extra line */
    /* the model as stored; then, when it has approximate layers (apb export
     * --int8-stem), the same images through the exact convs they came from */
    int napprox = apbrt_approximate_layers(m);
    for (int pass = 0; pass < (napprox ? 2 : 1) && !s; pass++) {
        apbrt_set_exact(m, pass);
        double loss = 0;
        long c1 = 0, c5 = 0, ck = 0, n = 0;
        if ((s = apb_loader_start_epoch(ld, 0)))
            goto out;
        for (;;) {
            const float *x;
            const int *y;
            int bn;
            if ((s = apb_loader_next(ld, &x, &y, &bn)) || bn == 0)
                break;
            if (apbrt_run(m, x, bn, logits) != 0) {
                s = APB_EINVAL;
                blame = model_path;
                break;
            }
            for (int i = 0; i < bn; i++) {
                const float *z = logits + (long)i * K;
                int best = 0, above = 0;
                for (int k = 1; k < K; k++)
                    if (z[k] > z[best])
                        best = k;
                for (int k = 0; k < K; k++)
                    above += z[k] > z[y[i]];
                c1 += best == y[i];
                c5 += above < 5;
                ck += above < top;
                loss += softmax(z, K, p) - z[y[i]];
            }
            n += bn;
        }
        if (!s && pass == 1) {
            printf("exact (the %d approximate layer%s as the fp32 convs they came from): top1=%.2f%% "
                   "top5=%.2f%% loss=%.4f\n", napprox, napprox > 1 ? "s" : "", n ? 100.0 * c1 / n : 0.0,
                   n ? 100.0 * c5 / n : 0.0, n ? loss / n : 0.0);
        } else if (!s) {
            int skipped = apb_loader_bad_count(ld);
            for (int i = 0; i < skipped; i++) {
                const char *path, *why;
                apb_loader_bad_file(ld, i, &path, &why);
                fprintf(stderr, "apb infer: skipped undecodable %s: %s\n", path, why);
            }
            char path[128];
            run_path(m, path, sizeof path);
            printf("model %s (%s) through libapbrt (%s), %ld test images of %s\n", model_path,
                   apbrt_model_name(m), path, n, spec);
            printf("top1=%.2f%% top5=%.2f%% loss=%.4f\n", n ? 100.0 * c1 / n : 0.0,
                   n ? 100.0 * c5 / n : 0.0, n ? loss / n : 0.0);
            if (top > 0 && top != 1 && top != 5)
                printf("top%d=%.2f%%\n", top, n ? 100.0 * ck / n : 0.0);
            if (napprox)
                printf("approximate: %d layer%s (8-bit first conv, apb export --int8-stem)\n", napprox,
                       napprox > 1 ? "s" : "");
        }
    }
    apbrt_set_exact(m, 0);
out:
    free(logits);
    free(p);
    if (ld)
        apb_loader_free(ld);
    if (ds)
        apb_dataset_free(ds);
    return s ? infer_fail(blame) : 0;
}

/* Appends the paths listed in `list` (one per line, blank lines skipped; "-" is
 * stdin) to *images [*n, capacity *cap]; the lines live in *keep (caller frees). */
static apb_status read_list(const char *list, char ***images, int *n, int *cap, char **keep)
{
    unsigned char *d = NULL;
    size_t len = 0;
    if (!strcmp(list, "-")) {
        size_t c = 0;
        for (;;) {
            if (len + 4096 + 1 > c) {
                c = (c + 4096 + 1) * 2;
                unsigned char *p = realloc(d, c);
                if (!p) {
                    free(d);
                    return apb_fail(APB_ENOMEM, "--list -: out of memory");
                }
                d = p;
            }
            size_t r = fread(d + len, 1, 4096, stdin);
            len += r;
            if (r < 4096)
                break;
        }
        d[len] = 0;
    } else {
        APB_TRY(apb_file_read(list, &d, &len));
    }
    *keep = (char *)d;
    for (char *p = (char *)d, *e; p < (char *)d + len; p = e + 1) {
        e = strchr(p, '\n');
        if (!e)
            e = (char *)d + len;
        *e = 0;
        if (e > p && e[-1] == '\r')
            e[-1] = 0;
        if (!*p)
            continue;
        if (*n == *cap) {
            int nc = *cap * 2 + 16;
            char **q = realloc(*images, sizeof(char *) * (size_t)nc);
            if (!q)
                return apb_fail(APB_ENOMEM, "%s: out of memory for %d paths", list, nc);
            *images = q;
            *cap = nc;
        }
        (*images)[(*n)++] = p;
    }
    return APB_OK;
}

int apb_cmd_infer(int argc, char **argv)
{
    const char *model = NULL, *spec = NULL;
    int bad = 0, threads = 0, top = 5, top_set = 0, limit = 0, batch = 0, batch_set = 0, nimg = 0;
    int cap = argc > 0 ? argc : 1;
    const char *list = NULL;
    char *list_text = NULL;
    char **images = malloc(sizeof(char *) * (size_t)cap);
    if (!images) {
        fprintf(stderr, "apb infer: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: apb infer MODEL.apb IMAGE... [--list FILE] [--top K (5)] [--threads T]\n"
                   "                 [--batch B (16)]\n"
                   "       apb infer MODEL.apb --data SPEC [--limit-test N] [--top K] [--threads T]\n"
                   "                 [--batch B (256)]\n"
                   "Runs a .apb model through libapbrt: the top-K classes (softmax probabilities)\n"
                   "of each PNG/JPEG image, or top-1/top-5 accuracy on the test split of SPEC\n"
                   "(with --top K, top-K accuracy on one more line).\n"
                   "Images are fed as the model was trained (apb info shows its input):\n"
                   "  - channels: RGB (or RGBA) becomes gray for a 1-channel model (0.299 R +\n"
                   "    0.587 G + 0.114 B), gray is copied to R, G, B for a 3-channel one, and\n"
                   "    transparent pixels are composited onto white;\n"
                   "  - size: with the model's resize_short (ImageNet-style models) the shorter\n"
                   "    side is resized to it, then the center cropped to the input size;\n"
                   "    without it, an image at least as large as the input is center-cropped,\n"
                   "    any other is stretched to the input size (aspect ratio not kept).\n"
                   "Each converted image gets a line \"note: IMAGE: ...\" on stderr.\n"
                   "--list FILE adds the images named in FILE, one path a line (\"-\": stdin),\n"
                   "for more than a command line holds. An image that cannot be read or decoded\n"
                   "is reported (\"apb infer: PATH: ...\") and the others are still classified;\n"
                   "the exit status is then 1.\n");
            free(images);
            return 0;
        } else if (apb_opt_str(argc, argv, &i, "--data", &spec, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--threads", &threads, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--top", &top, &bad))
            top_set = 1;
        else if (apb_opt_int(argc, argv, &i, "--limit-test", &limit, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--batch", &batch, &bad))
            batch_set = 1;
        else if (apb_opt_str(argc, argv, &i, "--list", &list, &bad))
            ;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "apb infer: unknown option '%s'\n", argv[i]);
            bad = 1;
        } else if (!model)
            model = argv[i];
        else
            images[nimg++] = argv[i];
    }
    if (!bad && list) {
        apb_status ls = read_list(list, &images, &nimg, &cap, &list_text);
        if (ls) {
            apb_cli_error("infer", ls);
            bad = 1;
        } else if (nimg == 0) {
            fprintf(stderr, "apb infer: --list %s names no image\n", list);
            bad = 1;
        }
    }
    if (!bad && !model) {
        fprintf(stderr, "apb infer: a model file is required (apb infer MODEL.apb IMAGE... | --data SPEC)\n");
        bad = 1;
    }
    if (!bad && !spec && nimg == 0) {
        fprintf(stderr, "apb infer: give images to classify or --data SPEC\n");
        bad = 1;
    }
    if (!bad && spec && nimg > 0) {
        fprintf(stderr, "apb infer: give either images or --data, not both\n");
        bad = 1;
    }
    if (!bad && batch_set && batch < 1) {
        fprintf(stderr, "apb infer: " APB_CLI_BATCH_MSG "\n", batch);
        bad = 1;
    }
    if (!bad && (top < 1 || threads < 0 || limit < 0)) {
        fprintf(stderr, "apb infer: --top must be >= 1; --threads, --limit-test >= 0\n");
        bad = 1;
    }
    if (bad) {
        free(images);
        free(list_text);
        return 2;
    }
    if (threads > 0)
        apbrt_set_threads(threads);
    apbrt_model *m = NULL;
    if (apbrt_load(model, &m) != 0) {
        free(images);
        free(list_text);
        return infer_fail(model);
    }
    int rc = spec ? infer_data(m, model, spec, limit, batch_set ? batch : 256, top_set ? top : 0)
                  : infer_images(m, model, images, nimg, top, batch_set ? batch : 16);
    apbrt_free(m);
    free(images);
    free(list_text);
    return rc;
}
