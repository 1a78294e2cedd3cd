/* test_parsers_robust.c - deterministic mutation tests of every parser apb has
 * besides .apb (tests/test_infer_robust.c): checkpoints, IDX (raw and gzip),
 * CIFAR binary files and their class-name lists, PNG / JPEG decoding with the
 * preprocessing the runtime applies, and `apb train`'s option parsing.
 *
 * Each takes a small valid input and feeds every truncation length and bit or
 * byte flips at a sample of positions (all positions where the file is small):
 * the parser must either accept the input or fail with a message naming the
 * file, never crash (the suite also runs under ASan + UBSan). libFuzzer runs
 * the same entry points at random (fuzz/, docs/RELIABILITY.md).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <png.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "fileio.h"
#include "rng.h"
#include "test.h"
#include "test_ckpt_util.h"
#include "test_jpeg_util.h"

/* ---- checkpoints ---------------------------------------------------------- */

static const char *CK_NAME = "mutated.ckpt";

/* Loads; 1 when it loaded, 0 when it failed naming the file, -1 otherwise. */
static int ck_try(const unsigned char *b, size_t n)
{
    apb_ckpt ck;
    apb_status s = apb_ckpt_load_memory(b, n, CK_NAME, &ck);
    if (s == APB_OK) {
        apb_ckpt_free(&ck);
        return 1;
    }
    return strstr(apb_errmsg(), CK_NAME) && s == APB_EFORMAT ? 0 : -1;
}

/* The small checkpoint: every truncation and every single-bit flip fails with
 * the file's name (a CRC-32 catches every one-bit error), and the version-1
 * layout of the same content still loads with the same records. */
APB_TEST(test_parsers_ckpt_every_truncation_and_bit_flip)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/small.ckpt", apb_test_tmpdir());
    CHECK_OK(tc_write_small(path));
    unsigned char *b;
    size_t n;
    CHECK_OK(apb_file_read(path, &b, &n));
    CHECK(ck_try(b, n) == 1);
    for (size_t k = 0; k < n; k++)
        CHECK_MSG(ck_try(b, k) == 0, "truncated to %zu of %zu bytes: %s", k, n, apb_errmsg());
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (unsigned char)(1 << bit);
            CHECK_MSG(ck_try(b, n) == 0, "flip of byte %zu bit %d: %s", i, bit, apb_errmsg());
            b[i] ^= (unsigned char)(1 << bit);
        }
    unsigned char *v1;
    size_t n1;
    CHECK(tc_to_v1(b, n, &v1, &n1) == 0);
    apb_ckpt a, c;
    CHECK_OK(apb_ckpt_load_memory(b, n, CK_NAME, &a));
    CHECK_OK(apb_ckpt_load_memory(v1, n1, "old.ckpt", &c));
    CHECK(a.nrec == 3 && c.nrec == 3 && c.meta.epoch == 1 && c.meta.step == 3 && c.meta.model.in_h == 4);
    for (int i = 0; i < 3; i++)
        CHECK(!strcmp(a.rec[i].name, c.rec[i].name) && a.rec[i].bytes == c.rec[i].bytes &&
              !memcmp(a.rec[i].data, c.rec[i].data, a.rec[i].bytes));
    apb_ckpt_free(&a);
    apb_ckpt_free(&c);
    for (size_t k = 0; k < n1; k++)
        CHECK_MSG(ck_try(v1, k) == 0, "version 1 truncated to %zu: %s", k, apb_errmsg());
    for (size_t i = 0; i < n1; i += 3) {
        v1[i] ^= 0x10;
        CHECK_MSG(ck_try(v1, n1) == 0, "version 1, flip at %zu: %s", i, apb_errmsg());
        v1[i] ^= 0x10;
    }
    free(v1);
    free(b);
    return 0;
}

/* Mutations behind valid checksums (tc_fix_crcs), so the structural checks
 * (lengths, counts, header values) are reached: never a crash, failures name
 * the file. */
APB_TEST(test_parsers_ckpt_mutations_behind_crc)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/small.ckpt", apb_test_tmpdir());
    CHECK_OK(tc_write_small(path));
    unsigned char *b, *c;
    size_t n;
    CHECK_OK(apb_file_read(path, &b, &n));
    c = malloc(n);
    apb_rng r;
    apb_rng_seed(&r, 18);
    static const unsigned char vals[] = {0, 1, 0x7f, 0x80, 0xff, '0', '9', '=', '\n', '-'};
    for (int it = 0; it < 4000; it++) {
        memcpy(c, b, n);
        int nm = 1 + (int)apb_rng_below(&r, 3);
        for (int k = 0; k < nm; k++)
            c[apb_rng_below(&r, (uint32_t)n)] = vals[apb_rng_below(&r, sizeof vals)];
        size_t len = it % 4 == 3 ? apb_rng_below(&r, (uint32_t)n + 1) : n;
        tc_fix_crcs(c, len);
        CHECK_MSG(ck_try(c, len) >= 0, "mutation %d: %s", it, apb_errmsg());
    }
    free(c);
    free(b);
    return 0;
}

/* A header that describes a model larger than its file (a 1x4096x4 convnet's
 * first linear layer alone has 16.7 M weights; the file holds about 400
 * values) is refused as soon as the layers outgrow the file, before their
 * tensors are allocated, naming the file. */
APB_TEST(test_parsers_ckpt_model_larger_than_file)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/huge.ckpt", apb_test_tmpdir());
    CHECK_OK(tc_write_small_h(path, 4096));
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(path, &ck));
    apb_model *m = NULL;
    apb_status s = apb_ckpt_model(&ck, &m);
    CHECK_MSG(s == APB_EFORMAT && !m && strstr(apb_errmsg(), "huge.ckpt") &&
                  strstr(apb_errmsg(), "parameter values"),
              "status %d: %s", s, apb_errmsg());
    apb_ckpt_free(&ck);
    return 0;
}

/* A real model's checkpoint: a flip in a tensor names that tensor. */
APB_TEST(test_parsers_ckpt_flip_names_the_record)
{
    apb_model_cfg mc;
    memset(&mc, 0, sizeof mc);
    snprintf(mc.arch, sizeof mc.arch, "convnet");
    mc.in_c = 1, mc.in_h = 4, mc.in_w = 4, mc.num_classes = 2;
    apb_model *m;
    CHECK_OK(apb_model_build(&mc, 1, &m));
    apb_ckpt_meta *meta = calloc(1, sizeof *meta);
    meta->model = mc;
    char path[1100];
    snprintf(path, sizeof path, "%s/convnet.ckpt", apb_test_tmpdir());
    CHECK_OK(apb_ckpt_save(path, meta, m, NULL, 0));
    free(meta);
    apb_model_free(m);
    unsigned char *b;
    size_t n;
    CHECK_OK(apb_file_read(path, &b, &n));
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load_memory(b, n, path, &ck));
    CHECK_OK(apb_ckpt_model(&ck, &m)); /* the file holds the whole model */
    apb_model_free(m);
    for (int i = 0; i < ck.nrec; i++) {
        size_t off = (size_t)((const unsigned char *)ck.rec[i].data - ck.file) + ck.rec[i].bytes / 2;
        if (!ck.rec[i].bytes)
            continue;
        b[off] ^= 4;
        apb_ckpt bad;
        CHECK(apb_ckpt_load_memory(b, n, path, &bad) == APB_EFORMAT);
        CHECK_MSG(strstr(apb_errmsg(), path) && strstr(apb_errmsg(), ck.rec[i].name),
                  "flip in %s: %s", ck.rec[i].name, apb_errmsg());
        b[off] ^= 4;
    }
    CHECK(ck.nrec > 10);
    apb_ckpt_free(&ck);
    /* and through the file: the path is named */
    b[n / 2] ^= 1;
    CHECK_OK(apb_file_write_atomic(path, b, n));
    CHECK(apb_ckpt_load(path, &ck) == APB_EFORMAT && strstr(apb_errmsg(), "convnet.ckpt"));
    free(b);
    return 0;
}

/* ---- IDX ------------------------------------------------------------------ */

/* A plain write (no fsync: thousands of these per test) to a new file: rewriting
 * a truncated file in place makes ext4 flush it on close; 0 on success. */
static int put_file(const char *path, const void *b, size_t n)
{
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 1;
    int ok = fwrite(b, 1, n, f) == n;
    return (fclose(f) != 0) || !ok;
}

static int write_bytes(const char *path, const unsigned char *b, size_t n, int gz)
{
    if (!gz)
        return put_file(path, b, n);
    gzFile f = gzopen(path, "wb");
    if (!f)
        return 1;
    int ok = n == 0 || gzwrite(f, b, (unsigned)n) == (int)n;
    return (gzclose(f) != Z_OK) || !ok;
}

/* Opens mnist:DIR's train split; 1 loaded, 0 failed naming a file of dir, -1 otherwise. */
static int idx_try(const char *dir)
{
    char spec[1200];
    snprintf(spec, sizeof spec, "mnist:%s", dir);
    apb_dataset *ds;
    apb_status s = apb_dataset_open(spec, "train", &ds);
    if (s == APB_OK) {
        int ok = apb_dataset_size(ds) > 0;
        apb_dataset_free(ds);
        return ok ? 1 : -1;
    }
    return strstr(apb_errmsg(), dir) ? 0 : -1;
}

/* 3 images of 4x5 and their labels: every truncation of either file fails, flips
 * of the raw files at every position (a sample in the gzip streams) load or fail
 * naming the file. */
APB_TEST(test_parsers_idx_truncations_and_flips)
{
    unsigned char img[16 + 60], lab[8 + 3];
    const unsigned char ih[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5};
    const unsigned char lh[8] = {0, 0, 8, 1, 0, 0, 0, 3};
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    for (int i = 0; i < 60; i++)
        img[16 + i] = (unsigned char)(i * 37);
    lab[8] = 1, lab[9] = 9, lab[10] = 0;
    unsigned char *files[2] = {img, lab};
    size_t sizes[2] = {sizeof img, sizeof lab};
    for (int gz = 0; gz < 2; gz++) {
        char dir[1100], paths[2][1200];
        snprintf(dir, sizeof dir, "%s/idx%d", apb_test_tmpdir(), gz);
        CHECK_OK(apb_mkdirs(dir));
        snprintf(paths[0], sizeof paths[0], "%s/train-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
        snprintf(paths[1], sizeof paths[1], "%s/train-labels-idx1-ubyte%s", dir, gz ? ".gz" : "");
        for (int f = 0; f < 2; f++)
            CHECK(write_bytes(paths[f], files[f], sizes[f], gz) == 0);
        CHECK_MSG(idx_try(dir) == 1, "valid files: %s", apb_errmsg());
        for (int f = 0; f < 2; f++) {
            /* the file as stored: gzip streams are truncated and flipped as they are */
            unsigned char *raw;
            size_t n;
            CHECK_OK(apb_file_read(paths[f], &raw, &n));
            for (size_t k = 0; k < n; k++) {
                CHECK(put_file(paths[f], raw, k) == 0);
                CHECK_MSG(idx_try(dir) == 0, "%s truncated to %zu of %zu: %s", paths[f], k, n,
                          apb_errmsg());
            }
            for (size_t i = 0; i < n; i++) {
                raw[i] ^= (unsigned char)(1 << (i % 8));
                CHECK(put_file(paths[f], raw, n) == 0);
                CHECK_MSG(idx_try(dir) >= 0, "%s flip at %zu: %s", paths[f], i, apb_errmsg());
                raw[i] ^= (unsigned char)(1 << (i % 8));
            }
            CHECK(put_file(paths[f], raw, n) == 0);
            free(raw);
        }
        CHECK(idx_try(dir) == 1);
    }
    return 0;
}

/* ---- CIFAR ---------------------------------------------------------------- */

static int cifar_try(const char *dir, int hundred)
{
    char spec[1200];
    snprintf(spec, sizeof spec, "%s:%s", hundred ? "cifar100" : "cifar10", dir);
    apb_dataset *ds;
    apb_status s = apb_dataset_open(spec, "test", &ds);
    if (s == APB_OK) {
        apb_dataset_free(ds);
        return 1;
    }
    return strstr(apb_errmsg(), dir) ? 0 : -1;
}

/* Two records of CIFAR-10 and of CIFAR-100, and the class-name list: every
 * truncation, flips at sampled positions (every label byte among them). */
APB_TEST(test_parsers_cifar_truncations_and_flips)
{
    for (int hundred = 0; hundred < 2; hundred++) {
        int rec = 3072 + 1 + hundred;
        size_t n = 2 * (size_t)rec;
        unsigned char *b = malloc(n);
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)(i * 13);
        b[0] = 3, b[rec] = 7;
        if (hundred)
            b[1] = 42, b[rec + 1] = 99;
        char dir[1100], path[1200], names[1200];
        snprintf(dir, sizeof dir, "%s/cifar%d", apb_test_tmpdir(), hundred ? 100 : 10);
        CHECK_OK(apb_mkdirs(dir));
        snprintf(path, sizeof path, "%s/%s", dir, hundred ? "test.bin" : "test_batch.bin");
        snprintf(names, sizeof names, "%s/%s", dir, hundred ? "fine_label_names.txt" : "batches.meta.txt");
        unlink(names);
        CHECK(put_file(path, b, n) == 0);
        CHECK_MSG(cifar_try(dir, hundred) == 1, "%s", apb_errmsg());
        /* a whole number of records is a valid (shorter) file */
        for (size_t k = 0; k < n; k++) {
            CHECK(put_file(path, b, k) == 0);
            CHECK_MSG(cifar_try(dir, hundred) == (k > 0 && k % (size_t)rec == 0), "%s truncated to %zu: %s",
                      path, k, apb_errmsg());
        }
        for (size_t i = 0; i < n; i += (i < 4 || (i >= (size_t)rec && i < (size_t)rec + 4)) ? 1 : 41) {
            b[i] ^= 0x80;
            CHECK(put_file(path, b, n) == 0);
            CHECK_MSG(cifar_try(dir, hundred) >= 0, "%s flip at %zu: %s", path, i, apb_errmsg());
            b[i] ^= 0x80;
        }
        CHECK(put_file(path, b, n) == 0);
        free(b);
        /* the class-name list: one name per line, exactly the class count */
        char list[2048] = "";
        for (int c = 0; c < (hundred ? 100 : 10); c++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "class%d\n", c);
        size_t ln = strlen(list);
        CHECK(put_file(names, list, ln) == 0);
        CHECK_MSG(cifar_try(dir, hundred) == 1, "%s", apb_errmsg());
        for (size_t k = 0; k < ln; k++) {
            CHECK(put_file(names, list, k) == 0);
            CHECK_MSG(cifar_try(dir, hundred) >= 0, "%s truncated to %zu: %s", names, k, apb_errmsg());
        }
        for (size_t i = 0; i < ln; i += 3) {
            char keep = list[i];
            list[i] = i % 2 ? '\n' : '\0';
            CHECK(put_file(names, list, ln) == 0);
            CHECK_MSG(cifar_try(dir, hundred) >= 0, "%s byte %zu: %s", names, i, apb_errmsg());
            list[i] = keep;
        }
        unlink(names);
    }
    return 0;
}

/* ---- images --------------------------------------------------------------- */

static const char *IMG_NAME = "mutated-image";

/* Decodes and preprocesses as apb infer does (to 1x28x28 and 3x32x32); 1 when it
 * decoded, 0 when it failed naming the input, -1 otherwise. */
static int image_try(const unsigned char *b, size_t n)
{
    unsigned char *rgb;
    int w, h;
    apb_status s = apb_image_decode(b, n, IMG_NAME, &rgb, &w, &h);
    if (s != APB_OK)
        return strstr(apb_errmsg(), IMG_NAME) ? 0 : -1;
    int ok = 1;
    for (int k = 0; k < 2 && ok; k++) {
        apb_transform t;
        memset(&t, 0, sizeof t);
        t.out_c = k ? 3 : 1;
        t.out_h = t.out_w = k ? 32 : 28;
        t.center_crop = 1;
        for (int c = 0; c < 3; c++)
            t.mean[c] = 0.5f, t.std[c] = 0.25f;
        float out[3 * 32 * 32];
        ok = apb_image_preprocess(rgb, w, h, &t, out) == APB_OK;
    }
    free(rgb);
    return ok ? 1 : -1;
}

/* PNGs (gray, RGB, RGBA, palette) and JPEGs (RGB baseline and progressive, gray,
 * CMYK) of a 9x7 image: every truncation, a bit flip at every position. */
APB_TEST(test_parsers_image_truncations_and_flips)
{
    unsigned char px[9 * 7 * 4];
    for (int i = 0; i < (int)sizeof px; i++)
        px[i] = (unsigned char)(i * 29 + (i >> 3));
    enum { NFILES = 8 };
    unsigned char *files[NFILES];
    size_t sizes[NFILES];
    static const png_uint_32 formats[4] = {PNG_FORMAT_GRAY, PNG_FORMAT_RGB, PNG_FORMAT_RGBA,
                                           PNG_FORMAT_RGB_COLORMAP};
    png_color cmap[256];
    for (int i = 0; i < 256; i++)
        cmap[i] = (png_color){(png_byte)i, (png_byte)(255 - i), (png_byte)(i * 3)};
    for (int k = 0; k < 4; k++) {
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION;
        img.width = 9, img.height = 7;
        img.format = formats[k];
        if (k == 3)
            img.colormap_entries = 256;
        png_alloc_size_t size = 0;
        CHECK(png_image_write_to_memory(&img, NULL, &size, 0, px, 0, k == 3 ? cmap : NULL));
        files[k] = malloc(size);
        CHECK(png_image_write_to_memory(&img, files[k], &size, 0, px, 0, k == 3 ? cmap : NULL));
        sizes[k] = size;
    }
    CHECK_OK(apb_jpeg_encode(px, 9, 7, 3, 90, 0, "rgb", &files[4], &sizes[4]));
    CHECK_OK(apb_jpeg_encode(px, 9, 7, 3, 90, 1, "progressive", &files[5], &sizes[5]));
    CHECK_OK(apb_jpeg_encode(px, 9, 7, 1, 90, 0, "gray", &files[6], &sizes[6]));
    unsigned long size;
    tj_write_cmyk(px, 9, 7, 0, 1, &files[7], &size);
    sizes[7] = size;
    for (int k = 0; k < NFILES; k++) {
        unsigned char *b = files[k];
        size_t n = sizes[k];
        CHECK_MSG(image_try(b, n) == 1, "image %d: %s", k, apb_errmsg());
        for (size_t t = 0; t < n; t++)
            CHECK_MSG(image_try(b, t) >= 0, "image %d truncated to %zu: %s", k, t, apb_errmsg());
        for (size_t i = 0; i < n; i++) {
            unsigned char bit = (unsigned char)(1u << (i * 5 % 8));
            b[i] ^= bit;
            CHECK_MSG(image_try(b, n) >= 0, "image %d flip at %zu: %s", k, i, apb_errmsg());
            b[i] ^= 0xff ^ bit; /* and the byte inverted */
            CHECK_MSG(image_try(b, n) >= 0, "image %d byte %zu inverted: %s", k, i, apb_errmsg());
            b[i] ^= 0xff;
        }
        free(b);
    }
    return 0;
}

/* Finds the first marker m (0xFFm) before the first scan of a JPEG; its offset or 0. */
static size_t jpeg_marker(const unsigned char *b, size_t n, unsigned m)
{
    for (size_t i = 2; i + 4 < n;) {
        if (b[i + 1] == m)
            return i;
        if (b[i + 1] == 0xDA)
            break;
        i += 2 + ((size_t)b[i + 2] << 8 | b[i + 3]);
    }
    return 0;
}

/* A JPEG whose scan uses a Huffman table it never defined: stb_image, apb's
 * decoder before libjpeg, decoded it from uninitialised memory and read out of
 * bounds (the image fuzzer's finding; docs/RELIABILITY.md). Made from a valid
 * file by turning its AC table 0 into a second DC table 0 (libjpeg then fills
 * the missing AC table with the standard one, as Motion-JPEG needs, and refuses
 * the DC table's symbols), and by pointing the scan at DC table 2. */
APB_TEST(test_parsers_jpeg_undefined_huffman_table)
{
    unsigned char px[9 * 7 * 3];
    for (int i = 0; i < (int)sizeof px; i++)
        px[i] = (unsigned char)(i * 29);
    unsigned char *b, *rgb = NULL;
    size_t n;
    int w, h;
    for (int how = 0; how < 2; how++) {
        CHECK_OK(apb_jpeg_encode(px, 9, 7, 3, 90, 0, IMG_NAME, &b, &n));
        CHECK(image_try(b, n) == 1);
        int changed = 0;
        if (how == 0) {
            /* every DHT segment before the scan: tables of (class << 4 | id), counts, values */
            for (size_t i = 2; i + 4 < n && b[i + 1] != 0xDA;) {
                size_t len = (size_t)b[i + 2] << 8 | b[i + 3];
                for (size_t j = i + 4; b[i + 1] == 0xC4 && j + 17 <= i + 2 + len;) {
                    size_t count = 0;
                    for (int k = 1; k <= 16; k++)
                        count += b[j + k];
                    if (b[j] == 0x10)
                        b[j] = 0x00, changed++;
                    j += 17 + count;
                }
                i += 2 + len;
            }
        } else {
            size_t sos = jpeg_marker(b, n, 0xDA);
            /* SOS: length, count, then (component id, DC << 4 | AC) */
            if (sos && b[sos + 4] >= 1)
                b[sos + 6] = (unsigned char)(0x20 | (b[sos + 6] & 15)), changed++;
        }
        CHECK(changed == 1);
        apb_status s = apb_image_decode(b, n, IMG_NAME, &rgb, &w, &h);
        CHECK_MSG(s == APB_EFORMAT && !rgb && strstr(apb_errmsg(), IMG_NAME) &&
                      strstr(apb_errmsg(), "Huffman"),
                  "case %d: status %d: %s", how, s, apb_errmsg());
        free(b);
    }
    return 0;
}

/* libjpeg only warns about corrupt data it can patch over (a missing end,
 * entropy data cut short, bad Huffman codes) and then makes up the pixels;
 * apb refuses such a file, naming it and giving libjpeg's words. */
APB_TEST(test_parsers_jpeg_warnings_are_errors)
{
    unsigned char px[24 * 16 * 3];
    for (int i = 0; i < (int)sizeof px; i++)
        px[i] = (unsigned char)(i * 7 + (i >> 5));
    unsigned char *b, *rgb = NULL;
    size_t n;
    int w, h;
    CHECK_OK(apb_jpeg_encode(px, 24, 16, 3, 90, 0, IMG_NAME, &b, &n));
    CHECK(image_try(b, n) == 1);
    /* cut before the end-of-image marker: every pixel is there, the end is not */
    CHECK(b[n - 2] == 0xFF && b[n - 1] == 0xD9);
    apb_status s = apb_image_decode(b, n - 2, IMG_NAME, &rgb, &w, &h);
    CHECK_MSG(s == APB_EFORMAT && !rgb && strstr(apb_errmsg(), IMG_NAME) &&
                  strstr(apb_errmsg(), "24x16") && strstr(apb_errmsg(), "Premature end"),
              "status %d: %s", s, apb_errmsg());
    /* cut inside the scan: libjpeg alone would fill the rest with gray */
    s = apb_image_decode(b, n - 40, IMG_NAME, &rgb, &w, &h);
    CHECK_MSG(s == APB_EFORMAT && !rgb && strstr(apb_errmsg(), IMG_NAME), "status %d: %s", s,
              apb_errmsg());
    free(b);
    return 0;
}

/* A progressive file may hold any number of scans, each a pass over the whole
 * image: more than 500 are refused (a valid progression of 631 scans here), 500
 * decode. */
APB_TEST(test_parsers_jpeg_scan_limit)
{
    unsigned char px[16 * 8];
    for (int i = 0; i < (int)sizeof px; i++)
        px[i] = (unsigned char)(i * 13);
    unsigned char *b, *rgb = NULL;
    unsigned long n;
    int w, h;
    tj_write_scans(px, 16, 8, 500, &b, &n);
    CHECK_MSG(image_try(b, n) == 1, "500 scans: %s", apb_errmsg());
    free(b);
    tj_write_scans(px, 16, 8, TJ_MAX_SCANS, &b, &n);
    apb_status s = apb_image_decode(b, n, IMG_NAME, &rgb, &w, &h);
    CHECK_MSG(s == APB_EFORMAT && !rgb && strstr(apb_errmsg(), IMG_NAME) &&
                  strstr(apb_errmsg(), "more than 500 scans"),
              "status %d: %s", s, apb_errmsg());
    free(b);
    return 0;
}

/* A PNG whose IHDR declares w x h (valid CRC), then an empty IDAT and IEND. */
static size_t png_header(unsigned char *b, uint32_t w, uint32_t h)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(b, sig, 8);
    unsigned char ihdr[4 + 4 + 13 + 4] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    for (int i = 0; i < 4; i++) {
        ihdr[8 + i] = (unsigned char)(w >> (24 - 8 * i));
        ihdr[12 + i] = (unsigned char)(h >> (24 - 8 * i));
    }
    ihdr[16] = 8, ihdr[17] = 2; /* 8-bit RGB */
    uint32_t c = (uint32_t)crc32(0, ihdr + 4, 17);
    for (int i = 0; i < 4; i++)
        ihdr[21 + i] = (unsigned char)(c >> (24 - 8 * i));
    memcpy(b + 8, ihdr, sizeof ihdr);
    /* an empty IDAT: libpng reads the header chunks up to the first one */
    static const unsigned char rest[] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e,
                                         0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    memcpy(b + 8 + sizeof ihdr, rest, sizeof rest);
    return 8 + sizeof ihdr + sizeof rest;
}

/* A baseline JPEG header (SOI, SOF0 of w x h, 3 components, SOS, EOI): libjpeg
 * reads the header up to the first scan, with no tables and no data. */
static size_t jpeg_header(unsigned char *b, int w, int h)
{
    unsigned char j[] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8, (unsigned char)(h >> 8), (unsigned char)h,
                         (unsigned char)(w >> 8), (unsigned char)w, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11,
                         0, 0xFF, 0xDA, 0, 12, 3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0, 0xFF, 0xD9};
    memcpy(b, j, sizeof j);
    return sizeof j;
}

/* The decode cap: headers declaring 60000x60000 (3.6e9 pixels: 10.8 GB of RGB)
 * and 20000x20000 are refused by their size, before the decoder allocates the
 * image, with a message naming the input and the size. */
APB_TEST(test_parsers_image_decode_cap)
{
    unsigned char b[128];
    const int sides[2] = {60000, 20000};
    for (int k = 0; k < 2; k++) {
        char want[64];
        snprintf(want, sizeof want, "image size %dx%d out of range", sides[k], sides[k]);
        for (int fmt = 0; fmt < 2; fmt++) {
            size_t n = fmt ? jpeg_header(b, sides[k], sides[k])
                           : png_header(b, (uint32_t)sides[k], (uint32_t)sides[k]);
            unsigned char *rgb = NULL;
            int w, h;
            apb_status s = apb_image_decode(b, n, IMG_NAME, &rgb, &w, &h);
            CHECK_MSG(s == APB_EFORMAT && rgb == NULL && strstr(apb_errmsg(), IMG_NAME) &&
                          strstr(apb_errmsg(), want),
                      "%s %d: status %d: %s", fmt ? "JPEG" : "PNG", sides[k], s, apb_errmsg());
        }
    }
    /* small ones with the same headers get past the cap and fail on their data */
    for (int fmt = 0; fmt < 2; fmt++) {
        size_t n = fmt ? jpeg_header(b, 64, 64) : png_header(b, 64, 64);
        unsigned char *rgb = NULL;
        int w, h;
        apb_status s = apb_image_decode(b, n, IMG_NAME, &rgb, &w, &h);
        CHECK_MSG(s == APB_EFORMAT && !rgb && strstr(apb_errmsg(), IMG_NAME) && !strstr(apb_errmsg(), "range"),
                  "%s 64: status %d: %s", fmt ? "JPEG" : "PNG", s, apb_errmsg());
    }
    return 0;
}

/* ---- apb train's options -------------------------------------------------- */

static const char *const TRAIN_ARGV[] = {
    "train", "--data", "fashion-mnist", "--model", "convnet", "--quant", "apb", "--act", "binary",
    "--epochs", "3", "--batch=64", "--lr", "0.05", "--budget-bits", "1.5", "--budget-spread", "layer",
    "--budget-alpha", "fit", "--optim", "adamw", "--freeze-at", "0.5", "--limit-train", "100",
    "--threads", "2", "--seed", "7", "--val", "10", "--per-channel", "--out", "runs/x", "--quiet"};
#define TRAIN_ARGC ((int)(sizeof TRAIN_ARGV / sizeof TRAIN_ARGV[0]))

/* The parse's verdict as an index: 0 --help, 1 to run, 2 refused, 3 anything else. */
static int parse(int argc, char **argv, apb_train_cfg *c, apb_cli_given *g)
{
    int force, rc = apb_cmd_train_parse(argc, argv, c, g, &force);
    return rc == -1 ? 0 : rc == 0 ? 1 : rc == 2 ? 2 : 3;
}

/* The parse loop with each argument dropped, truncated at every length, or
 * replaced by awkward values: never a crash, always a verdict (run, refused, or
 * --help shown). Its messages go to /dev/null for the while. */
APB_TEST(test_parsers_train_options_mutations)
{
    apb_train_cfg *c = malloc(sizeof *c);
    apb_cli_given *g = malloc(sizeof *g);
    char *argv[TRAIN_ARGC + 1];
    char buf[TRAIN_ARGC][64];
    for (int i = 0; i < TRAIN_ARGC; i++)
        argv[i] = strcpy(buf[i], TRAIN_ARGV[i]);
    argv[TRAIN_ARGC] = NULL;
    CHECK(parse(TRAIN_ARGC, argv, c, g) == 1);
    CHECK(c->epochs == 3 && c->batch == 64 && c->budget_alpha == 1 && c->val == 10 && c->optim == 2 &&
          c->model.per_channel && !strcmp(c->out_dir, "runs/x") && g->n == 19);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    int bad = -1, verdicts[3] = {0, 0, 0};
    static const char *const odd[] = {"", "-", "--", "-1", "0", "1e999", "nan", "inf", "99999999999",
                                      "0x10", "--help", "=", "--lr=", "prune:", "prune:2", "x"};
    for (int i = 1; i < TRAIN_ARGC && bad < 0; i++) {
        char *drop[TRAIN_ARGC];
        int k = 0;
        for (int j = 0; j < TRAIN_ARGC; j++)
            if (j != i)
                drop[k++] = argv[j];
        int rc = parse(k, drop, c, g);
        if (rc == 3)
            bad = i;
        verdicts[rc % 3]++;
        char keep[64];
        strcpy(keep, argv[i]);
        for (size_t len = 0; len < strlen(keep) && bad < 0; len++) {
            buf[i][len] = 0;
            rc = parse(TRAIN_ARGC, argv, c, g);
            if (rc == 3)
                bad = i;
            verdicts[rc % 3]++;
            strcpy(buf[i], keep);
        }
        for (size_t v = 0; v < sizeof odd / sizeof odd[0] && bad < 0; v++) {
            argv[i] = (char *)odd[v];
            rc = parse(TRAIN_ARGC, argv, c, g);
            if (rc == 3)
                bad = i;
            verdicts[rc % 3]++;
            argv[i] = buf[i];
        }
    }
    /* an option whose value is missing at the end */
    int rc = parse(2, argv, c, g);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so), close(se), close(null);
    CHECK_MSG(bad < 0, "argument %d gave no verdict", bad);
    CHECK_MSG(rc == 2, "'train --data' with no value: rc %d", rc);
    CHECK_MSG(verdicts[0] > 0 && verdicts[1] > 0 && verdicts[2] > 0, "verdicts help %d ok %d refused %d",
              verdicts[0], verdicts[1], verdicts[2]);
    free(c);
    free(g);
    return 0;
}
