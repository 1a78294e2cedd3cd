/* test_data.c - dataset readers, transforms and the loader.
 *
 * Every reader is fed files written here in the official formats (IDX raw and
 * gzipped, CIFAR-10/100 binary records, PNG and JPEG trees), then checked for
 * exact pixel round-trips and for errors that name the bad file. The loader is
 * checked for determinism across thread counts and for replacing undecodable
 * files. The real Fashion-MNIST from the Debian package is loaded in full.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cli.h"
#include "dataset.h"
#include "fileio.h"
#include "loader.h"
#include "rng.h"
#include "test.h"
#include "test_jpeg_util.h"

/* ---- helpers that write the official formats ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return ftw->level > 0 ? remove(path) : 0;
}

/* The per-test scratch directory, emptied (it survives earlier runs). */
static const char *fresh_tmpdir(void)
{
    nftw(apb_test_tmpdir(), rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return apb_test_tmpdir();
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* Writes bytes raw or gzipped; returns 0 on success. */
static int write_bytes(const char *path, const unsigned char *d, size_t n, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f)
            return -1;
        int ok = gzwrite(f, d, (unsigned)n) == (int)n;
        return gzclose(f) == Z_OK && ok ? 0 : -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(d, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* IDX images [n, h, w] and labels [n] as prefix-images-idx3-ubyte[.gz] etc. */
static int write_idx(const char *dir, const char *prefix, int n, int h, int w,
                     const unsigned char *pix, const unsigned char *lab, int gz)
{
    char path[512];
    size_t ni = 16 + (size_t)n * h * w;
    unsigned char *b = malloc(ni);
    put_be32(b, 0x803), put_be32(b + 4, (uint32_t)n), put_be32(b + 8, (uint32_t)h),
        put_be32(b + 12, (uint32_t)w);
    memcpy(b + 16, pix, (size_t)n * h * w);
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    int r = write_bytes(path, b, ni, gz);
    free(b);
    unsigned char *l = malloc(8 + (size_t)n);
    put_be32(l, 0x801), put_be32(l + 4, (uint32_t)n);
    memcpy(l + 8, lab, (size_t)n);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    r |= write_bytes(path, l, 8 + (size_t)n, gz);
    free(l);
    return r;
}

static unsigned char pix_of(int i, int k) { return (unsigned char)((i * 131 + k * 7 + (k >> 3)) & 255); }

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Expects `s` to fail with a message containing both a and b. */
#define CHECK_FAIL_MSG(expr, a, b)                                                     \
    do {                                                                               \
        apb_status fs_ = (expr);                                                       \
        CHECK_MSG(fs_ != APB_OK, "%s succeeded, expected an error", #expr);            \
        CHECK_MSG(contains(apb_errmsg(), a) && contains(apb_errmsg(), b),              \
                  "message '%s' should contain '%s' and '%s'", apb_errmsg(), a, b);    \
    } while (0)

/* ---- IDX ---- */

APB_TEST(test_data_idx_roundtrip)
{
    const char *dir = fresh_tmpdir();
    enum { N = 7, H = 5, W = 6, NT = 3 };
    unsigned char pix[N * H * W], lab[N];
    for (int i = 0; i < N * H * W; i++)
        pix[i] = pix_of(i / (H * W), i % (H * W));
    for (int i = 0; i < N; i++)
        lab[i] = (unsigned char)((i * 3) % 10);
    CHECK(write_idx(dir, "train", N, H, W, pix, lab, 0) == 0);
    CHECK(write_idx(dir, "t10k", NT, H, W, pix, lab, 1) == 0);
    char spec[600];
    snprintf(spec, sizeof spec, "mnist:%s", dir);
    for (int split = 0; split < 2; split++) {
        apb_dataset *ds;
        CHECK_OK(apb_dataset_open(spec, split ? "test" : "train", &ds));
        int n = split ? NT : N, c, h, w;
        CHECK(apb_dataset_size(ds) == n);
        CHECK(apb_dataset_num_classes(ds) == 10);
        CHECK(strcmp(apb_dataset_name(ds), "mnist") == 0);
        CHECK(strcmp(apb_dataset_class_name(ds, 3), "3") == 0);
        apb_dataset_geometry(ds, &c, &h, &w);
        CHECK(c == 1 && h == H && w == W);
        for (int i = 0; i < n; i++) {
            CHECK(apb_dataset_label(ds, i) == lab[i]);
            CHECK(memcmp(apb_dataset_pixels(ds, i), pix + i * H * W, H * W) == 0);
        }
        apb_transform t;
        CHECK_OK(apb_transform_default(ds, 1, 0, &t));
        CHECK(t.out_c == 1 && t.out_h == H && t.out_w == W && !t.crop_pad && !t.hflip && !t.rrc);
        CHECK_CLOSE(t.mean[0], 0.1307, 0, 1e-6);
        float out[H * W], want[H * W];
        int label;
        CHECK_OK(apb_dataset_get(ds, &t, 2, 0, 1, out, &label));
        CHECK(label == lab[2]);
        for (int k = 0; k < H * W; k++)
            want[k] = (pix[2 * H * W + k] / 255.0f - t.mean[0]) / t.std[0];
        CHECK_ARRAY_CLOSE(out, want, H * W, 1e-5, 1e-5);
        apb_dataset_limit(ds, 2);
        CHECK(apb_dataset_size(ds) == 2);
        apb_dataset_free(ds);
    }
    return 0;
}

APB_TEST(test_data_idx_errors)
{
    const char *dir = fresh_tmpdir();
    enum { N = 4, H = 3, W = 3 };
    unsigned char pix[N * H * W], lab[N] = {1, 2, 3, 4};
    for (int i = 0; i < N * H * W; i++)
        pix[i] = (unsigned char)i;
    char spec[600], path[600], lpath[600];
    snprintf(spec, sizeof spec, "mnist:%s", dir);
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    snprintf(lpath, sizeof lpath, "%s/train-labels-idx1-ubyte", dir);
    apb_dataset *ds = NULL;

    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), path, "not found");
    CHECK(ds == NULL);

    /* truncated raw image file */
    CHECK(write_idx(dir, "train", N, H, W, pix, lab, 0) == 0);
    CHECK(truncate(path, 16 + N * H * W - 5) == 0);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), path, "truncated");

    /* bad magic */
    CHECK(write_idx(dir, "train", N, H, W, pix, lab, 0) == 0);
    {
        FILE *f = fopen(path, "r+b");
        CHECK(f);
        fseek(f, 3, SEEK_SET);
        fputc(0x02, f);
        fclose(f);
    }
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), path, "magic");

    /* trailing bytes */
    CHECK(write_idx(dir, "train", N, H, W, pix, lab, 0) == 0);
    {
        FILE *f = fopen(path, "ab");
        fputc(7, f);
        fclose(f);
    }
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), path, "after 4 images");

    /* label out of range */
    unsigned char badlab[N] = {1, 2, 12, 4};
    CHECK(write_idx(dir, "train", N, H, W, pix, badlab, 0) == 0);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), lpath, "label 12 of item 2");

    /* count mismatch between images and labels */
    CHECK(write_idx(dir, "train", N, H, W, pix, lab, 0) == 0);
    {
        unsigned char l[8 + 3];
        put_be32(l, 0x801), put_be32(l + 4, 3);
        memcpy(l + 8, lab, 3);
        CHECK(write_bytes(lpath, l, sizeof l, 0) == 0);
    }
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), "has 4 images", "has 3 labels");

    /* gzipped: truncated stream and corrupt stream */
    char gpath[600], tpath[600];
    snprintf(tpath, sizeof tpath, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(gpath, sizeof gpath, "%s/t10k-images-idx3-ubyte.gz", dir);
    enum { NB = 40, HB = 28, WB = 28 };
    unsigned char *big = malloc(NB * HB * WB), blab[NB];
    apb_rng r;
    apb_rng_seed(&r, 5);
    for (int i = 0; i < NB * HB * WB; i++)
        big[i] = (unsigned char)apb_rng_below(&r, 256);
    for (int i = 0; i < NB; i++)
        blab[i] = (unsigned char)(i % 10);
    CHECK(write_idx(dir, "t10k", NB, HB, WB, big, blab, 1) == 0);
    CHECK_OK(apb_dataset_open(spec, "test", &ds));
    CHECK(apb_dataset_size(ds) == NB);
    CHECK(memcmp(apb_dataset_pixels(ds, NB - 1), big + (NB - 1) * HB * WB, HB * WB) == 0);
    apb_dataset_free(ds);
    ds = NULL;
    struct stat st;
    CHECK(stat(gpath, &st) == 0);
    CHECK(truncate(gpath, st.st_size / 2) == 0);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "test", &ds), tpath, "");
    CHECK(contains(apb_errmsg(), "truncated") || contains(apb_errmsg(), "corrupt"));

    CHECK(write_idx(dir, "t10k", NB, HB, WB, big, blab, 1) == 0);
    {
        FILE *f = fopen(gpath, "r+b");
        CHECK(f);
        fseek(f, st.st_size / 2, SEEK_SET);
        for (int i = 0; i < 64; i++)
            fputc(0x55 ^ i, f);
        fclose(f);
    }
    CHECK_FAIL_MSG(apb_dataset_open(spec, "test", &ds), tpath, "");
    CHECK_MSG(contains(apb_errmsg(), "corrupt") || contains(apb_errmsg(), "truncated"), "%s",
              apb_errmsg());
    free(big);
    CHECK(ds == NULL);
    return 0;
}

/* ---- CIFAR ---- */

static int write_cifar(const char *path, int hundred, int n, int first)
{
    int rec = 3072 + (hundred ? 2 : 1);
    unsigned char *b = malloc((size_t)rec * n);
    for (int i = 0; i < n; i++) {
        unsigned char *p = b + (size_t)i * rec;
        int id = first + i;
        if (hundred) {
            p[0] = (unsigned char)(id % 20);
            p[1] = (unsigned char)((id * 7) % 100);
        } else {
            p[0] = (unsigned char)(id % 10);
        }
        for (int k = 0; k < 3072; k++)
            p[rec - 3072 + k] = pix_of(id, k);
    }
    int r = write_bytes(path, b, (size_t)rec * n, 0);
    free(b);
    return r;
}

APB_TEST(test_data_cifar10)
{
    char dir[600], path[700], spec[700];
    snprintf(dir, sizeof dir, "%s/cifar-10-batches-bin", fresh_tmpdir());
    CHECK_OK(apb_mkdirs(dir));
    for (int b = 1; b <= 5; b++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b);
        CHECK(write_cifar(path, 0, 3, (b - 1) * 3) == 0);
    }
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    CHECK(write_cifar(path, 0, 4, 100) == 0);
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    const char *names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    CHECK(write_bytes(path, (const unsigned char *)names, strlen(names), 0) == 0);

    /* DIR is the parent: the cifar-10-batches-bin subfolder is found. */
    snprintf(spec, sizeof spec, "cifar10:%s", apb_test_tmpdir());
    apb_dataset *ds;
    CHECK_OK(apb_dataset_open(spec, "train", &ds));
    CHECK(apb_dataset_size(ds) == 15);
    CHECK(apb_dataset_num_classes(ds) == 10);
    CHECK(strcmp(apb_dataset_class_name(ds, 9), "truck") == 0);
    int c, h, w;
    apb_dataset_geometry(ds, &c, &h, &w);
    CHECK(c == 3 && h == 32 && w == 32);
    for (int i = 0; i < 15; i++) {
        CHECK(apb_dataset_label(ds, i) == i % 10);
        const unsigned char *p = apb_dataset_pixels(ds, i);
        for (int k = 0; k < 3072; k++)
            CHECK_MSG(p[k] == pix_of(i, k), "sample %d byte %d", i, k);
    }
    apb_transform t;
    CHECK_OK(apb_transform_default(ds, 1, 0, &t));
    CHECK(t.crop_pad == 4 && t.hflip == 1 && t.out_c == 3 && t.out_h == 32);
    CHECK_CLOSE(t.std[2], 0.2616, 0, 1e-6);
    /* eval transform: identity geometry, exact planar R,G,B */
    CHECK_OK(apb_transform_default(ds, 0, 0, &t));
    float *out = malloc(sizeof(float) * 3072), *want = malloc(sizeof(float) * 3072);
    int label;
    CHECK_OK(apb_dataset_get(ds, &t, 7, 0, 0, out, &label));
    for (int k = 0; k < 3072; k++)
        want[k] = (pix_of(7, k) / 255.0f - t.mean[k / 1024]) / t.std[k / 1024];
    CHECK_ARRAY_CLOSE(out, want, 3072, 1e-5, 1e-5);
    free(out);
    free(want);
    apb_dataset_free(ds);

    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    CHECK_OK(apb_dataset_open(spec, "test", &ds));
    CHECK(apb_dataset_size(ds) == 4 && apb_dataset_label(ds, 1) == 101 % 10);
    CHECK(memcmp(apb_dataset_pixels(ds, 3), apb_dataset_pixels(ds, 3), 3072) == 0);
    CHECK(apb_dataset_pixels(ds, 3)[5] == pix_of(103, 5));
    apb_dataset_free(ds);

    /* size not a multiple of the record */
    snprintf(path, sizeof path, "%s/data_batch_4.bin", dir);
    CHECK(write_cifar(path, 0, 3, 9) == 0);
    CHECK(truncate(path, 3 * 3073 - 100) == 0);
    ds = NULL;
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), path, "multiple of the 3073-byte");
    /* missing batch */
    CHECK(unlink(path) == 0);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), path, "not found");
    /* label out of range */
    CHECK(write_cifar(path, 0, 3, 9) == 0);
    {
        FILE *f = fopen(path, "r+b");
        fseek(f, 3073, SEEK_SET);
        fputc(10, f);
        fclose(f);
    }
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), path, "record 1 has label 10");
    /* wrong number of class names */
    CHECK(write_cifar(path, 0, 3, 9) == 0);
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    CHECK(write_bytes(path, (const unsigned char *)"a\nb\n", 4, 0) == 0);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "train", &ds), path, "expected 10");
    CHECK(ds == NULL);
    return 0;
}

APB_TEST(test_data_cifar100)
{
    const char *dir = fresh_tmpdir();
    char path[600], spec[600];
    snprintf(path, sizeof path, "%s/train.bin", dir);
    CHECK(write_cifar(path, 1, 6, 0) == 0);
    snprintf(path, sizeof path, "%s/test.bin", dir);
    CHECK(write_cifar(path, 1, 2, 50) == 0);
    snprintf(spec, sizeof spec, "cifar100:%s", dir);
    apb_dataset *ds;
    CHECK_OK(apb_dataset_open(spec, "train", &ds));
    CHECK(apb_dataset_size(ds) == 6 && apb_dataset_num_classes(ds) == 100);
    CHECK(strcmp(apb_dataset_name(ds), "cifar100") == 0);
    for (int i = 0; i < 6; i++) {
        CHECK(apb_dataset_label(ds, i) == (i * 7) % 100);
        CHECK(apb_dataset_pixels(ds, i)[3071] == pix_of(i, 3071));
        CHECK(apb_dataset_pixels(ds, i)[0] == pix_of(i, 0));
    }
    CHECK(strcmp(apb_dataset_class_name(ds, 42), "42") == 0);
    apb_dataset_free(ds);
    CHECK_OK(apb_dataset_open(spec, "test", &ds));
    CHECK(apb_dataset_size(ds) == 2 && apb_dataset_label(ds, 1) == (51 * 7) % 100);
    apb_dataset_free(ds);
    snprintf(path, sizeof path, "%s/test.bin", dir);
    CHECK(truncate(path, 3074 + 1) == 0);
    ds = NULL;
    CHECK_FAIL_MSG(apb_dataset_open(spec, "test", &ds), path, "3074-byte CIFAR-100");
    CHECK_FAIL_MSG(apb_dataset_open("cifar100", "test", &ds), "cifar100", "directory");
    CHECK_FAIL_MSG(apb_dataset_open("svhn:/tmp", "test", &ds), "unknown dataset", "svhn");
    CHECK_FAIL_MSG(apb_dataset_open(spec, "valid", &ds), "unknown split", "valid");
    return 0;
}

/* ---- transforms ---- */

APB_TEST(test_data_transform_geometry)
{
    enum { S = 8 };
    unsigned char src[3 * S * S];
    for (int i = 0; i < 3 * S * S; i++)
        src[i] = (unsigned char)(i * 5 + 1);
    apb_transform t;
    memset(&t, 0, sizeof t);
    t.out_c = 3, t.out_h = S, t.out_w = S;
    for (int c = 0; c < 3; c++)
        t.mean[c] = 0, t.std[c] = 1;
    float out[3 * S * S];

    /* pad-2 crop + flip: the output must be exactly one shifted (and maybe
     * mirrored) copy of the source with zero padding; over many keys all 5x5
     * offsets and both flips appear. */
    t.crop_pad = 2;
    t.hflip = 1;
    int seen[5][5][2] = {{{0}}};
    for (uint64_t key = 0; key < 400; key++) {
        CHECK_OK(apb_transform_apply(&t, src, 3, S, S, S * S, S, 1, key, out));
        int matches = 0;
        for (int dy = -2; dy <= 2; dy++)
            for (int dx = -2; dx <= 2; dx++)
                for (int fl = 0; fl < 2; fl++) {
                    int ok = 1;
                    for (int c = 0; c < 3 && ok; c++)
                        for (int y = 0; y < S && ok; y++)
                            for (int x = 0; x < S && ok; x++) {
                                int u = (fl ? S - 1 - x : x) + dx, v = y + dy;
                                float want = (u < 0 || u >= S || v < 0 || v >= S)
                                                 ? 0.0f
                                                 : src[c * S * S + v * S + u] / 255.0f;
                                ok = out[c * S * S + y * S + x] == want;
                            }
                    if (ok) {
                        matches++;
                        seen[dy + 2][dx + 2][fl] = 1;
                    }
                }
        CHECK_MSG(matches >= 1, "key %llu: output is not a padded crop", (unsigned long long)key);
    }
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 5; b++)
            CHECK(seen[a][b][0] && seen[a][b][1]);

    /* Same key, same output; interleaved and planar layouts agree. */
    float out2[3 * S * S];
    unsigned char hwc[3 * S * S];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S * S; i++)
            hwc[i * 3 + c] = src[c * S * S + i];
    CHECK_OK(apb_transform_apply(&t, src, 3, S, S, S * S, S, 1, 77, out));
    CHECK_OK(apb_transform_apply(&t, hwc, 3, S, S, 1, 3 * S, 3, 77, out2));
    CHECK(memcmp(out, out2, sizeof out) == 0);

    /* Shorter-side resize by 1/2 with bilinear (align_corners=false) is the 2x2
     * box average; the center crop of a 16x8 image keeps the middle. */
    enum { W2 = 16, H2 = 8 };
    unsigned char g[W2 * H2];
    for (int i = 0; i < W2 * H2; i++)
        g[i] = (unsigned char)((i * 37) & 255);
    memset(&t, 0, sizeof t);
    t.out_c = 1, t.out_h = 4, t.out_w = 4, t.resize_short = 4, t.center_crop = 1;
    t.mean[0] = 0, t.std[0] = 1;
    float o4[16], w4[16];
    CHECK_OK(apb_transform_apply(&t, g, 1, H2, W2, H2 * W2, W2, 1, 0, o4));
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            int sx = 2 * (x + 2), sy = 2 * y; /* resized 8x4, crop left 2 */
            w4[y * 4 + x] = (g[sy * W2 + sx] + g[sy * W2 + sx + 1] + g[(sy + 1) * W2 + sx] +
                             g[(sy + 1) * W2 + sx + 1]) / 4.0f / 255.0f;
        }
    CHECK_ARRAY_CLOSE(o4, w4, 16, 1e-5, 1e-6);

    /* The same on an interleaved RGB source, to 3 channels and to luma. */
    unsigned char g3[W2 * H2 * 3];
    for (int i = 0; i < W2 * H2 * 3; i++)
        g3[i] = (unsigned char)((i * 53 + 11) & 255);
    for (int c = 0; c < 3; c++)
        t.mean[c] = 0.1f * c, t.std[c] = 0.5f + 0.1f * c;
    float o34[48], w34[48], l4[16];
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                int sx = 2 * (x + 2), sy = 2 * y;
#define G3(yy, xx) g3[((yy) * W2 + (xx)) * 3 + c]
                float avg = (G3(sy, sx) + G3(sy, sx + 1) + G3(sy + 1, sx) + G3(sy + 1, sx + 1)) / 4.0f;
#undef G3
                w34[c * 16 + y * 4 + x] = (avg / 255.0f - t.mean[c]) / t.std[c];
            }
    t.out_c = 3;
    CHECK_OK(apb_transform_apply(&t, g3, 3, H2, W2, 1, 3 * W2, 3, 0, o34));
    CHECK_ARRAY_CLOSE(o34, w34, 48, 1e-5, 1e-5);
    t.out_c = 1;
    for (int i = 0; i < 16; i++) {
        float v[3];
        for (int c = 0; c < 3; c++)
            v[c] = w34[c * 16 + i] * t.std[c] + t.mean[c];
        l4[i] = ((0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2]) - t.mean[0]) / t.std[0];
    }
    CHECK_OK(apb_transform_apply(&t, g3, 3, H2, W2, 1, 3 * W2, 3, 0, o4));
    CHECK_ARRAY_CLOSE(o4, l4, 16, 1e-5, 1e-5);

    /* Random-resized-crop of a constant image is constant; of a gradient it stays
     * within the source range; out_c = 1 from RGB is the luma. */
    unsigned char big[3 * 40 * 30];
    for (int i = 0; i < 40 * 30; i++)
        big[3 * i] = 200, big[3 * i + 1] = 100, big[3 * i + 2] = 50;
    memset(&t, 0, sizeof t);
    t.out_c = 1, t.out_h = 12, t.out_w = 12, t.rrc = 1, t.hflip = 1;
    t.rrc_scale[0] = 0.08f, t.rrc_scale[1] = 1, t.rrc_ratio[0] = 0.75f, t.rrc_ratio[1] = 4 / 3.0f;
    t.mean[0] = 0, t.std[0] = 1;
    float o12[144];
    for (uint64_t key = 0; key < 20; key++) {
        CHECK_OK(apb_image_preprocess(big, 30, 40, &t, o12));
        for (int i = 0; i < 144; i++)
            CHECK_CLOSE(o12[i], (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, 1e-5, 1e-5);
    }
    for (int i = 0; i < 40 * 30; i++)
        big[3 * i] = big[3 * i + 1] = big[3 * i + 2] = (unsigned char)(i % 30 * 8);
    t.out_c = 3;
    t.mean[1] = t.mean[2] = 0, t.std[1] = t.std[2] = 1;
    float o3[3 * 144];
    for (uint64_t key = 0; key < 50; key++) {
        CHECK_OK(apb_transform_apply(&t, big, 3, 40, 30, 1, 90, 3, key, o3));
        for (int i = 0; i < 3 * 144; i++)
            CHECK(o3[i] >= 0 && o3[i] <= 232 / 255.0f + 1e-6f);
    }
    t.std[1] = 0;
    CHECK_FAIL_MSG(apb_transform_apply(&t, big, 3, 40, 30, 1, 90, 3, 0, o3), "std", "channel 1");
    return 0;
}

/* ---- loader determinism ---- */

APB_TEST(test_data_loader_determinism)
{
    enum { N = 203, B = 16 };
    unsigned char *pix = malloc((size_t)N * 3072);
    int labels[N];
    apb_rng r;
    apb_rng_seed(&r, 9);
    for (long i = 0; i < (long)N * 3072; i++)
        pix[i] = (unsigned char)apb_rng_below(&r, 256);
    for (int i = 0; i < N; i++)
        labels[i] = i; /* label = index, so each batch row can be traced back */
    apb_dataset *ds;
    CHECK_OK(apb_dataset_from_u8("cifar10", N, 3, 32, 32, pix, labels, N, &ds));
    free(pix);
    apb_transform t;
    CHECK_OK(apb_transform_default(ds, 1, 0, &t));
    CHECK(t.crop_pad == 4 && t.hflip);

    float *ref = malloc(sizeof(float) * N * 3072), *one = malloc(sizeof(float) * 3072);
    int refy[N], refy_e1[N];
    for (int threads = 1; threads <= 2; threads++) {
        apb_loader *ld;
        CHECK_OK(apb_loader_create(ds, &t, B, 1, 0, 1234, threads, &ld));
        CHECK(apb_loader_batches_per_epoch(ld) == (N + B - 1) / B);
        for (int epoch = 0; epoch < 2; epoch++) {
            CHECK_OK(apb_loader_start_epoch(ld, epoch));
            int seen[N] = {0}, pos = 0, nb = 0;
            const float *x;
            const int *y;
            int n;
            for (;;) {
                CHECK_OK(apb_loader_next(ld, &x, &y, &n));
                if (n == 0)
                    break;
                nb++;
                CHECK(n == B || (nb == (N + B - 1) / B && n == N % B));
                for (int j = 0; j < n; j++, pos++) {
                    CHECK(y[j] >= 0 && y[j] < N && !seen[y[j]]);
                    seen[y[j]] = 1;
                    if (epoch == 0 && threads == 1) {
                        memcpy(ref + (size_t)pos * 3072, x + (size_t)j * 3072, 3072 * 4);
                        refy[pos] = y[j];
                    } else if (epoch == 0) {
                        CHECK(y[j] == refy[pos]);
                        CHECK(memcmp(ref + (size_t)pos * 3072, x + (size_t)j * 3072, 3072 * 4) == 0);
                    }
                    if (epoch == 1 && threads == 1)
                        refy_e1[pos] = y[j];
                    if (epoch == 1 && threads == 2)
                        CHECK(refy_e1[pos] == y[j]);
                    /* every row equals the single-sample path */
                    if (pos % 37 == 0) {
                        int lab;
                        CHECK_OK(apb_dataset_get(ds, &t, y[j], epoch, 1234, one, &lab));
                        CHECK(lab == y[j]);
                        CHECK(memcmp(one, x + (size_t)j * 3072, 3072 * 4) == 0);
                    }
                }
            }
            CHECK(pos == N && nb == (N + B - 1) / B);
            CHECK(apb_loader_skipped(ld) == 0);
            CHECK_OK(apb_loader_next(ld, &x, &y, &n));
            CHECK(n == 0);
        }
        /* A new epoch may start mid-way through the previous one. */
        const float *x;
        const int *y;
        int n;
        CHECK_OK(apb_loader_start_epoch(ld, 0));
        CHECK_OK(apb_loader_next(ld, &x, &y, &n));
        CHECK_OK(apb_loader_start_epoch(ld, 0));
        CHECK_OK(apb_loader_next(ld, &x, &y, &n));
        CHECK(n == B && y[0] == refy[0] && memcmp(x, ref, 3072 * 4) == 0);
        apb_loader_free(ld);
    }
    int same = 1;
    for (int i = 0; i < N; i++)
        same &= refy[i] == refy_e1[i];
    CHECK_MSG(!same, "epochs 0 and 1 have the same order");
    int sorted = 1;
    for (int i = 0; i < N; i++)
        sorted &= refy[i] == i;
    CHECK_MSG(!sorted, "shuffle left the order unchanged");

    /* drop_last, no shuffle: identity order, N / B full batches */
    apb_loader *ld;
    CHECK_OK(apb_loader_create(ds, &t, B, 0, 1, 5, 2, &ld));
    CHECK(apb_loader_batches_per_epoch(ld) == N / B);
    CHECK_OK(apb_loader_start_epoch(ld, 3));
    const float *x;
    const int *y;
    int n, total = 0;
    for (;;) {
        CHECK_OK(apb_loader_next(ld, &x, &y, &n));
        if (!n)
            break;
        CHECK(n == B);
        for (int j = 0; j < n; j++)
            CHECK(y[j] == total + j);
        total += n;
    }
    CHECK(total == N / B * B);
    apb_loader_free(ld);
    free(ref);
    free(one);
    apb_dataset_free(ds);
    return 0;
}

/* ---- image files and folders ---- */

static void make_rgb(unsigned char *p, int w, int h, int seed)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *q = p + (y * w + x) * 3;
            q[0] = (unsigned char)(x * 255 / (w - 1));
            q[1] = (unsigned char)(y * 255 / (h - 1));
            q[2] = (unsigned char)((seed * 40 + x + y) & 255);
        }
}

APB_TEST(test_data_png_roundtrip)
{
    char path[600];
    enum { W = 13, H = 7 };
    unsigned char rgb[W * H * 3], gray[W * H];
    make_rgb(rgb, W, H, 3);
    for (int i = 0; i < W * H; i++)
        gray[i] = (unsigned char)(i * 3);
    snprintf(path, sizeof path, "%s/a.png", fresh_tmpdir());
    CHECK_OK(apb_png_write_rgb(path, rgb, W, H, 3));
    unsigned char *back;
    int w, h;
    CHECK_OK(apb_image_load(path, &back, &w, &h));
    CHECK(w == W && h == H && memcmp(back, rgb, sizeof rgb) == 0);
    free(back);
    /* gray PNG, stored under a .jpg name: magic bytes decide */
    snprintf(path, sizeof path, "%s/gray.jpg", apb_test_tmpdir());
    CHECK_OK(apb_png_write_rgb(path, gray, W, H, 1));
    CHECK_OK(apb_image_load(path, &back, &w, &h));
    for (int i = 0; i < W * H; i++)
        CHECK(back[3 * i] == gray[i] && back[3 * i + 1] == gray[i] && back[3 * i + 2] == gray[i]);
    free(back);
    /* a JPEG (under a .png name) decodes to nearly the same pixels */
    snprintf(path, sizeof path, "%s/b.png", apb_test_tmpdir());
    CHECK_OK(apb_jpeg_write(path, rgb, W, H, 3, 100));
    CHECK_OK(apb_image_load(path, &back, &w, &h));
    CHECK(w == W && h == H);
    double err = 0;
    for (int i = 0; i < W * H * 3; i++)
        err += abs(back[i] - rgb[i]);
    CHECK_MSG(err / (W * H * 3) < 6, "mean abs JPEG error %g", err / (W * H * 3));
    free(back);
    /* garbage and truncated files: errors name the file */
    snprintf(path, sizeof path, "%s/c.png", apb_test_tmpdir());
    CHECK(write_bytes(path, (const unsigned char *)"GIF89a....", 10, 0) == 0);
    CHECK_FAIL_MSG(apb_image_load(path, &back, &w, &h), path, "not a PNG or JPEG");
    snprintf(path, sizeof path, "%s/a.png", apb_test_tmpdir());
    CHECK(truncate(path, 60) == 0);
    CHECK_FAIL_MSG(apb_image_load(path, &back, &w, &h), path, "PNG");
    /* a transformed sample written back is the original (mean/std undone) */
    apb_transform t;
    memset(&t, 0, sizeof t);
    t.out_c = 3, t.out_h = H, t.out_w = W;
    for (int c = 0; c < 3; c++)
        t.mean[c] = 0.4f + 0.05f * c, t.std[c] = 0.25f;
    float x[3 * W * H];
    CHECK_OK(apb_image_preprocess(rgb, W, H, &t, x));
    snprintf(path, sizeof path, "%s/d.png", apb_test_tmpdir());
    CHECK_OK(apb_png_write_sample(path, x, 3, H, W, &t));
    CHECK_OK(apb_image_load(path, &back, &w, &h));
    CHECK(memcmp(back, rgb, sizeof rgb) == 0);
    free(back);
    return 0;
}

/* JPEG layouts apb reads: gray (one channel, replicated), progressive, and
 * four-component CMYK / YCCK, with Adobe's inverted inks and without. */
APB_TEST(test_data_jpeg_layouts)
{
    enum { W = 16, H = 16 };
    char path[600];
    unsigned char rgb[W * H * 3], gray[W * H], *back, *jpeg;
    int w, h, channels;
    make_rgb(rgb, W, H, 5);
    for (int i = 0; i < W * H; i++)
        gray[i] = (unsigned char)(40 + (i % W) * 9);
    snprintf(path, sizeof path, "%s/gray.jpg", fresh_tmpdir());
    CHECK_OK(apb_jpeg_write(path, gray, W, H, 1, 100));
    CHECK_OK(apb_image_load_channels(path, &back, &w, &h, &channels));
    CHECK(w == W && h == H && channels == 1);
    for (int i = 0; i < W * H; i++) {
        CHECK(back[3 * i] == back[3 * i + 1] && back[3 * i] == back[3 * i + 2]);
        CHECK_MSG(abs(back[3 * i] - gray[i]) <= 3, "gray pixel %d: %d, wrote %d", i, back[3 * i], gray[i]);
    }
    free(back);

    /* progressive: the frame marker says so (SOF2), and it decodes as baseline does */
    size_t n;
    CHECK_OK(apb_jpeg_encode(rgb, W, H, 3, 100, 1, "prog", &jpeg, &n));
    int sof2 = 0;
    for (size_t i = 0; i + 1 < n; i++)
        sof2 |= jpeg[i] == 0xFF && jpeg[i + 1] == 0xC2;
    CHECK(sof2);
    CHECK_OK(apb_image_decode(jpeg, n, "prog", &back, &w, &h));
    CHECK(w == W && h == H);
    double err = 0;
    for (int i = 0; i < W * H * 3; i++)
        err += abs(back[i] - rgb[i]);
    CHECK_MSG(err / (W * H * 3) < 6, "mean abs error of the progressive JPEG %g", err / (W * H * 3));
    free(back);
    free(jpeg);

    /* one ink colour over the whole image (stored C M Y K = 200 100 50 220):
     * Adobe's files mean 255 = no ink, so R = C*K/255; plain ones the opposite */
    static const unsigned char ink[4] = {200, 100, 50, 220};
    unsigned char cmyk[W * H * 4];
    for (int i = 0; i < W * H * 4; i++)
        cmyk[i] = ink[i % 4];
    for (int kind = 0; kind < 3; kind++) {
        int ycck = kind == 2, adobe = kind != 1;
        unsigned long size;
        tj_write_cmyk(cmyk, W, H, ycck, adobe, &jpeg, &size);
        snprintf(path, sizeof path, "%s/cmyk%d.jpg", apb_test_tmpdir(), kind);
        CHECK_OK(apb_file_write_atomic(path, jpeg, size));
        free(jpeg);
        CHECK_OK(apb_image_load_channels(path, &back, &w, &h, &channels));
        CHECK(w == W && h == H && channels == 3);
        for (int c = 0; c < 3; c++) {
            int want = adobe ? ink[c] * ink[3] / 255 : (255 - ink[c]) * (255 - ink[3]) / 255;
            for (int i = 0; i < W * H; i++)
                CHECK_MSG(abs(back[3 * i + c] - want) <= 3, "%s pixel %d channel %d: %d, expected %d",
                          path, i, c, back[3 * i + c], want);
        }
        free(back);
    }
    return 0;
}

static int write_tree_file(const char *dir, const char *sub, const char *name, int png, int seed,
                           unsigned char *keep)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (apb_mkdirs(path) != APB_OK)
        return -1;
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    unsigned char rgb[20 * 15 * 3];
    make_rgb(rgb, 20, 15, seed);
    if (keep)
        memcpy(keep, rgb, sizeof rgb);
    if (png)
        return apb_png_write_rgb(path, rgb, 20, 15, 3) == APB_OK ? 0 : -1;
    return apb_jpeg_write(path, rgb, 20, 15, 3, 95) == APB_OK ? 0 : -1;
}

APB_TEST(test_data_folder)
{
    const char *dir = fresh_tmpdir();
    const char *cls[3] = {"dog", "ant", "cat"}; /* sorted: ant=0 cat=1 dog=2 */
    unsigned char keep[20 * 15 * 3];
    char sub[64], name[64], path[700];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 4; i++) {
            snprintf(sub, sizeof sub, "train/%s", cls[c]);
            snprintf(name, sizeof name, "img%d.%s", i, i % 2 ? "JPEG" : "png");
            CHECK(write_tree_file(dir, sub, name, i % 2 == 0, c * 10 + i,
                                  c == 2 && i == 2 ? keep : NULL) == 0);
        }
    /* hidden files and stray sub-directories are ignored */
    snprintf(path, sizeof path, "%s/train/ant/.DS_Store", dir);
    CHECK(write_bytes(path, (const unsigned char *)"x", 1, 0) == 0);
    snprintf(path, sizeof path, "%s/train/ant/nested", dir);
    CHECK_OK(apb_mkdirs(path));
    /* flat val with a label list mixing names and indices */
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "v%d.png", i);
        CHECK(write_tree_file(dir, "val", name, 1, 100 + i, NULL) == 0);
    }
    snprintf(path, sizeof path, "%s/val.txt", dir);
    const char *list = "v0.png cat\nv1.png 2\n\nv2.png ant\n";
    CHECK(write_bytes(path, (const unsigned char *)list, strlen(list), 0) == 0);

    char spec[600];
    snprintf(spec, sizeof spec, "imagenet:%s", dir);
    apb_dataset *ds;
    CHECK_OK(apb_dataset_open(spec, "train", &ds));
    CHECK(apb_dataset_size(ds) == 12 && apb_dataset_num_classes(ds) == 3);
    CHECK(strcmp(apb_dataset_class_name(ds, 0), "ant") == 0);
    CHECK(strcmp(apb_dataset_class_name(ds, 2), "dog") == 0);
    int c, h, w;
    apb_dataset_geometry(ds, &c, &h, &w);
    CHECK(c == 3 && h == 0 && w == 0);
    CHECK(apb_dataset_label(ds, 0) == 0 && apb_dataset_label(ds, 11) == 2);
    /* sample 6 = class "cat" (1), file img2.png: exact pixels through an
     * identity transform */
    CHECK(contains(apb_dataset_path(ds, 6), "train/cat/img2.png"));
    apb_transform t;
    memset(&t, 0, sizeof t);
    t.out_c = 3, t.out_h = 15, t.out_w = 20;
    for (int k = 0; k < 3; k++)
        t.mean[k] = 0, t.std[k] = 1;
    float x[3 * 15 * 20], want[3 * 15 * 20];
    int label;
    CHECK_OK(apb_dataset_get(ds, &t, 6, 0, 0, x, &label));
    CHECK(label == 1);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 15 * 20; i++)
            want[k * 300 + i] = keep[i * 3 + k] / 255.0f;
    CHECK_ARRAY_CLOSE(x, want, 900, 0, 0);
    apb_transform td;
    CHECK_OK(apb_transform_default(ds, 1, 16, &td));
    CHECK(td.rrc && td.hflip && td.out_h == 16 && td.out_c == 3);
    CHECK_OK(apb_transform_default(ds, 0, 0, &td));
    CHECK(td.resize_short == 256 && td.center_crop && td.out_h == 224);
    apb_dataset_free(ds);

    CHECK_OK(apb_dataset_open(spec, "test", &ds));
    CHECK(apb_dataset_size(ds) == 3 && apb_dataset_num_classes(ds) == 3);
    CHECK(apb_dataset_label(ds, 0) == 1 && apb_dataset_label(ds, 1) == 2 &&
          apb_dataset_label(ds, 2) == 0);
    apb_dataset_free(ds);

    /* unknown class in the label list: error names the list and line */
    list = "v0.png cat\nv1.png 2\nv2.png zebra\n";
    CHECK(write_bytes(path, (const unsigned char *)list, strlen(list), 0) == 0);
    char where[700];
    snprintf(where, sizeof where, "%s:3", path);
    ds = NULL;
    CHECK_FAIL_MSG(apb_dataset_open(spec, "test", &ds), where, "zebra");
    list = "v0.png 3\n";
    CHECK(write_bytes(path, (const unsigned char *)list, strlen(list), 0) == 0);
    snprintf(where, sizeof where, "%s:1", path);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "test", &ds), where, "unknown class '3'");
    list = "v9.png 1\n";
    CHECK(write_bytes(path, (const unsigned char *)list, strlen(list), 0) == 0);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "test", &ds), where, "v9.png does not exist");
    CHECK(unlink(path) == 0);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "test", &ds), "label list", "val.txt");

    /* val/<class>/ folders take the train class indices */
    CHECK(write_tree_file(dir, "val2/dog", "a.png", 1, 1, NULL) == 0);
    snprintf(path, sizeof path, "%s/val", dir);
    char path2[700];
    snprintf(path2, sizeof path2, "%s/valflat", dir);
    CHECK(rename(path, path2) == 0);
    snprintf(path2, sizeof path2, "%s/val2", dir);
    CHECK(rename(path2, path) == 0);
    CHECK_OK(apb_dataset_open(spec, "val", &ds));
    CHECK(apb_dataset_size(ds) == 1 && apb_dataset_label(ds, 0) == 2);
    apb_dataset_free(ds);
    CHECK(write_tree_file(dir, "val/zebra", "a.png", 1, 1, NULL) == 0);
    CHECK_FAIL_MSG(apb_dataset_open(spec, "test", &ds), "val/zebra", "no counterpart");
    CHECK(ds == NULL);
    return 0;
}

APB_TEST(test_data_folder_bad_files)
{
    const char *dir = fresh_tmpdir();
    char sub[64], name[64], path[700];
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 5; i++) {
            snprintf(sub, sizeof sub, "train/c%d", c);
            snprintf(name, sizeof name, "%d.jpg", i);
            CHECK(write_tree_file(dir, sub, name, i == 4, c * 5 + i, NULL) == 0);
        }
    /* a JPEG whose body is garbage, and a text file */
    static const unsigned char badjpg[] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 5, 6, 7, 8};
    snprintf(path, sizeof path, "%s/train/c0/2.jpg", dir);
    CHECK(write_bytes(path, badjpg, sizeof badjpg, 0) == 0);
    char bad2[700];
    snprintf(bad2, sizeof bad2, "%s/train/c1/3.jpg", dir);
    CHECK(write_bytes(bad2, (const unsigned char *)"hello", 5, 0) == 0);
    char spec[600];
    snprintf(spec, sizeof spec, "imagenet:%s", dir);
    apb_dataset *ds;
    CHECK_OK(apb_dataset_open(spec, "train", &ds));
    CHECK(apb_dataset_size(ds) == 10);
    apb_transform t;
    CHECK_OK(apb_transform_default(ds, 1, 8, &t));
    float x[3 * 64];
    int label;
    CHECK_FAIL_MSG(apb_dataset_get(ds, &t, 2, 0, 0, x, &label), path, "JPEG");

    float *ref = malloc(sizeof(float) * 10 * 3 * 64);
    int refy[10];
    for (int threads = 1; threads <= 2; threads++) {
        apb_loader *ld;
        CHECK_OK(apb_loader_create(ds, &t, 4, 1, 0, 7, threads, &ld));
        for (int epoch = 0; epoch < 2; epoch++) {
            CHECK_OK(apb_loader_start_epoch(ld, epoch));
            const float *bx;
            const int *by;
            int n, pos = 0;
            for (;;) {
                CHECK_OK(apb_loader_next(ld, &bx, &by, &n));
                if (!n)
                    break;
                CHECK(n == 4 || (pos == 8 && n == 2)); /* batches stay full */
                for (int j = 0; j < n; j++, pos++) {
                    CHECK(by[j] == 0 || by[j] == 1);
                    if (epoch == 0 && threads == 1) {
                        memcpy(ref + pos * 192, bx + j * 192, 192 * 4);
                        refy[pos] = by[j];
                    } else if (epoch == 0) {
                        CHECK(refy[pos] == by[j]);
                        CHECK(memcmp(ref + pos * 192, bx + j * 192, 192 * 4) == 0);
                    }
                }
            }
            CHECK(pos == 10);
            CHECK(apb_loader_skipped(ld) == 2);
        }
        CHECK(apb_loader_bad_count(ld) == 2);
        int found1 = 0, found2 = 0;
        for (int i = 0; i < 2; i++) {
            const char *p, *why;
            apb_loader_bad_file(ld, i, &p, &why);
            found1 |= strcmp(p, path) == 0 && contains(why, "JPEG");
            found2 |= strcmp(p, bad2) == 0 && contains(why, "not a PNG or JPEG");
        }
        CHECK(found1 && found2);
        apb_loader_free(ld);
    }
    free(ref);

    /* nothing decodable: an error, not a hang */
    apb_dataset_free(ds);
    char d2[700];
    snprintf(d2, sizeof d2, "%s/all-bad/train/x", dir);
    CHECK_OK(apb_mkdirs(d2));
    snprintf(path, sizeof path, "%s/1.png", d2);
    CHECK(write_bytes(path, (const unsigned char *)"\x89PNG\r\n\x1a\nxxxx", 12, 0) == 0);
    snprintf(spec, sizeof spec, "imagenet:%s/all-bad", dir);
    CHECK_OK(apb_dataset_open(spec, "train", &ds));
    apb_loader *ld;
    CHECK_OK(apb_loader_create(ds, &t, 4, 0, 0, 1, 2, &ld));
    CHECK_OK(apb_loader_start_epoch(ld, 0));
    const float *bx;
    const int *by;
    int n;
    CHECK_FAIL_MSG(apb_loader_next(ld, &bx, &by, &n), "could be decoded", path);
    apb_loader_free(ld);
    apb_dataset_free(ds);
    return 0;
}

/* ---- the real Fashion-MNIST (Debian package dataset-fashion-mnist) ---- */

APB_TEST(test_data_fashion_mnist_real)
{
    apb_dataset *ds;
    for (int split = 0; split < 2; split++) {
        CHECK_OK(apb_dataset_open("fashion-mnist", split ? "test" : "train", &ds));
        int n = apb_dataset_size(ds), c, h, w, count[10] = {0};
        CHECK(n == (split ? 10000 : 60000));
        CHECK(apb_dataset_num_classes(ds) == 10);
        apb_dataset_geometry(ds, &c, &h, &w);
        CHECK(c == 1 && h == 28 && w == 28);
        for (int i = 0; i < n; i++)
            count[apb_dataset_label(ds, i)]++;
        for (int k = 0; k < 10; k++)
            CHECK_MSG(count[k] == (split ? 1000 : 6000), "class %d has %d", k, count[k]);
        CHECK(apb_dataset_label(ds, 0) == 9);
        CHECK(strcmp(apb_dataset_class_name(ds, 9), "Ankle boot") == 0);
        /* the mean pixel is close to the published normalization constant */
        double sum = 0;
        for (int i = 0; i < 1000; i++)
            for (int k = 0; k < 784; k++)
                sum += apb_dataset_pixels(ds, i)[k];
        CHECK_CLOSE(sum / (1000.0 * 784 * 255), 0.286, 0, 0.02);
        apb_dataset_free(ds);
    }
    return 0;
}

/* ---- `apb data` ---- */

APB_TEST(test_data_cli_dump)
{
    const char *dir = fresh_tmpdir();
    enum { N = 5, H = 28, W = 28 };
    unsigned char *pix = malloc(N * H * W), lab[N] = {3, 1, 4, 1, 5};
    for (int i = 0; i < N * H * W; i++)
        pix[i] = pix_of(i / (H * W), i % (H * W));
    CHECK(write_idx(dir, "train", N, H, W, pix, lab, 1) == 0);
    CHECK(write_idx(dir, "t10k", 2, H, W, pix, lab, 0) == 0);
    char spec[600], out[600], path[700];
    snprintf(spec, sizeof spec, "mnist:%s", dir);
    snprintf(out, sizeof out, "%s/dump", dir);
    char *argv[] = {"data", spec, "--dump", "3", out, "--seed", "2", NULL};
    fflush(stdout);
    CHECK(apb_cmd_data(7, argv) == 0);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%06d_%d.png", out, i, lab[i]);
        unsigned char *rgb;
        int w, h;
        CHECK_OK(apb_image_load(path, &rgb, &w, &h));
        CHECK(w == W && h == H);
        for (int k = 0; k < H * W; k++)
            CHECK_MSG(rgb[3 * k] == pix[i * H * W + k], "%s pixel %d", path, k);
        free(rgb);
    }
    snprintf(path, sizeof path, "%s/%06d_%d.png", out, 3, lab[3]);
    CHECK(!apb_file_exists(path));
    free(pix);
    /* a truncated label file: exit status 1 */
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
    CHECK(truncate(path, 9) == 0);
    char *argv2[] = {"data", spec, "--split", "test", NULL};
    CHECK(apb_cmd_data(4, argv2) == 1);
    CHECK(contains(apb_errmsg(), path) && contains(apb_errmsg(), "truncated"));
    char *argv3[] = {"data", spec, "--split", "nope", NULL};
    CHECK(apb_cmd_data(4, argv3) == 1);
    return 0;
}
