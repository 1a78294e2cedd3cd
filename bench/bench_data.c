/* bench_data.c - `apb bench data`: input-pipeline throughput.
 *
 * Two cases, each with 1 and 2 loader threads, median over repeats of a full
 * epoch through apb_loader_next:
 *   cifar: 10,000 random 3x32x32 samples in memory, pad-4 crop + flip, batch 128
 *          (the loader's own overhead: locking, transform, float conversion);
 *   jpeg:  200 generated 500x375 JPEGs (ImageNet's typical size) in
 *          build/bench-data/jpeg, decoded + random-resized-crop to 224 + flip,
 *          batch 32 (decode-bound, as ImageNet training is).
 * --threads T measures T loader threads only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


#include "bench.h"
#include "options.h"
#include "dataset.h"
#include "fileio.h"
#include "loader.h"
#include "rng.h"

#define JPEG_DIR "build/bench-data/jpeg"
#define JPEG_COUNT 200
#define JPEG_W 500
#define JPEG_H 375

/* Smooth shapes plus mild noise: compresses and decodes like a photograph
 * rather than like white noise. */
static int make_jpegs(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/done-%d", JPEG_DIR, JPEG_COUNT);
    struct stat st;
    if (stat(path, &st) == 0)
        return 0;
    unsigned char *img = malloc((size_t)JPEG_W * JPEG_H * 3);
    if (!img)
        return -1;
    apb_rng r;
    apb_rng_seed(&r, 42);
    for (int i = 0; i < JPEG_COUNT; i++) {
        float fx = 0.01f + 0.03f * apb_rng_uniform(&r), fy = 0.01f + 0.03f * apb_rng_uniform(&r);
        float ph[3] = {6.3f * apb_rng_uniform(&r), 6.3f * apb_rng_uniform(&r),
                       6.3f * apb_rng_uniform(&r)};
        for (int y = 0; y < JPEG_H; y++)
            for (int x = 0; x < JPEG_W; x++)
                for (int c = 0; c < 3; c++) {
                    float v = 128 + 90 * sinf(fx * x + ph[c]) * cosf(fy * y + ph[(c + 1) % 3]) +
                              (float)apb_rng_below(&r, 17) - 8;
                    img[((size_t)y * JPEG_W + x) * 3 + c] =
                        (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
        snprintf(path, sizeof path, "%s/train/class%d", JPEG_DIR, i % 4);
        if (apb_mkdirs(path) != APB_OK) {
            free(img);
            return -1;
        }
        snprintf(path, sizeof path, "%s/train/class%d/img%03d.jpg", JPEG_DIR, i % 4, i);
        if (apb_jpeg_write(path, img, JPEG_W, JPEG_H, 3, 90) != APB_OK) {
            fprintf(stderr, "apb bench: %s\n", apb_errmsg());
            free(img);
            return -1;
        }
    }
    free(img);
    snprintf(path, sizeof path, "%s/done-%d", JPEG_DIR, JPEG_COUNT);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
    return 0;
}

/* Median images/s over `repeats` epochs (after one warm-up epoch). */
static apb_status time_loader(apb_dataset *ds, const apb_transform *t, int batch, int threads,
                              int repeats, double *ips)
{
    apb_loader *ld;
    APB_TRY(apb_loader_create(ds, t, batch, 1, 0, 1, threads, &ld));
    double rates[16];
    apb_status s = APB_OK;
    for (int r = 0; r <= repeats && s == APB_OK; r++) {
        double t0 = apb_now();
        long images = 0;
        const float *x;
        const int *y;
        int n = 1;
        s = apb_loader_start_epoch(ld, r);
        while (s == APB_OK && n > 0) {
            s = apb_loader_next(ld, &x, &y, &n);
            images += n;
        }
        if (r > 0)
            rates[r - 1] = images / (apb_now() - t0);
    }
    apb_loader_free(ld);
    if (s == APB_OK)
        *ips = apb_median(rates, repeats);
    return s;
}

void apb_bench_data_usage(FILE *f)
{
    fprintf(f, "usage: apb bench data [--threads T] [--repeats R]\n"
               "  loader throughput: in-memory CIFAR-style crop+flip, and %d generated %dx%d JPEGs\n"
               "  decoded + random-resized-crop to 224 (written once to %s)\n"
               "  --threads T  loader threads (default: 1 and 2, both measured)\n"
               "  --repeats R  timed epochs per case, median reported, 1..16 (default 3)\n",
            JPEG_COUNT, JPEG_W, JPEG_H, JPEG_DIR);
}

int apb_bench_data(int argc, char **argv)
{
    int repeats = 3, threads = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            apb_bench_data_usage(stdout);
            return 0;
        }
        if (apb_opt_int(argc, argv, &i, "--repeats", &repeats, &bad) ||
            apb_opt_int(argc, argv, &i, "--threads", &threads, &bad)) {
            if (bad)
                return 1;
            continue;
        }
        fprintf(stderr, "apb bench data: unknown option '%s'\n", argv[i]);
        apb_bench_data_usage(stderr);
        return 1;
    }
    if (repeats < 1 || repeats > 16) {
        fprintf(stderr, "apb bench data: --repeats must be 1..16, got %d\n", repeats);
        return 1;
    }
    int tlist[2] = {1, 2}, nt = 2;
    if (threads > 0)
        tlist[0] = threads, nt = 1;

    enum { NC = 10000 };
    unsigned char *pix = malloc((size_t)NC * 3072);
    int *labels = malloc(sizeof(int) * NC);
    if (!pix || !labels) {
        free(pix);
        free(labels);
        return apb_cli_error("bench", apb_fail(APB_ENOMEM, "out of memory"));
    }
    apb_rng r;
    apb_rng_seed(&r, 1);
    for (long i = 0; i < (long)NC * 3072; i++)
        pix[i] = (unsigned char)(apb_rng_next(&r) >> 56);
    for (int i = 0; i < NC; i++)
        labels[i] = i % 10;
    apb_dataset *ds;
    apb_status s = apb_dataset_from_u8("cifar10", NC, 3, 32, 32, pix, labels, 10, &ds);
    free(pix);
    free(labels);
    if (s != APB_OK)
        return apb_cli_error("bench", s);
    apb_transform t;
    apb_transform_default(ds, 1, 0, &t);
    for (int k = 0; k < nt && s == APB_OK; k++) {
        double ips;
        s = time_loader(ds, &t, 128, tlist[k], repeats, &ips);
        if (s == APB_OK)
            printf("op=data dataset=cifar10-synthetic transform=crop4+flip batch=128 threads=%d images_per_s=%.0f\n",
                   tlist[k], ips);
        fflush(stdout);
    }
    apb_dataset_free(ds);
    if (s != APB_OK)
        return apb_cli_error("bench", s);

    if (make_jpegs())
        return apb_cli_error("bench", apb_fail(APB_EIO, "cannot generate JPEGs in %s", JPEG_DIR));
    if ((s = apb_dataset_open("imagenet:" JPEG_DIR, "train", &ds)) != APB_OK)
        return apb_cli_error("bench", s);
    apb_transform_default(ds, 1, 224, &t);
    for (int k = 0; k < nt && s == APB_OK; k++) {
        double ips;
        s = time_loader(ds, &t, 32, tlist[k], repeats, &ips);
        if (s == APB_OK)
            printf("op=data dataset=jpeg-%dx%d files=%d transform=decode+rrc224+flip batch=32 threads=%d images_per_s=%.0f\n",
                   JPEG_W, JPEG_H, apb_dataset_size(ds), tlist[k], ips);
        fflush(stdout);
    }
    apb_dataset_free(ds);
    return s == APB_OK ? 0 : apb_cli_error("bench", s);
}
