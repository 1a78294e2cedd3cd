/* dataset.h - datasets as distributed (IDX, CIFAR binary, image folders) and
 * the per-sample transforms that turn them into normalized NCHW floats.
 *
 * apb reads the files users download, unchanged: MNIST / Fashion-MNIST IDX
 * (gzipped or raw), the CIFAR-10 / CIFAR-100 binary versions, and ImageNet-style
 * class folders of JPEG / PNG files. Small datasets are validated and held in
 * memory as uint8 at open time, so a bad file fails early with a message naming
 * the file and what is wrong. Folder datasets stream from disk and are decoded
 * by the loader's threads (loader.h); a file that cannot be decoded there is
 * recorded and replaced, never silently dropped.
 *
 * Layout conventions: planar samples are [C, H, W] (row-major); decoded images
 * are interleaved [H, W, 3] RGB uint8. Pixels become floats as
 * (v / 255 - mean[c]) / std[c].
 *
 * SPEC strings (apb_dataset_open):
 *   fashion-mnist[:DIR]   default DIR /usr/share/datasets/fashion-mnist
 *   mnist:DIR             train-images-idx3-ubyte[.gz], t10k-... etc.
 *   cifar10:DIR           data_batch_{1..5}.bin, test_batch.bin, batches.meta.txt
 *                         (DIR or DIR/cifar-10-batches-bin)
 *   cifar100:DIR          train.bin, test.bin, fine_label_names.txt
 *                         (DIR or DIR/cifar-100-binary)
 *   imagenet:DIR          DIR/train/<class>/<files>, DIR/val/<class>/<files>, or a flat DIR/val
 *                         with DIR/val.txt or DIR/val/labels.txt
 * split: "train" or "test" (imagenet: "test" and "val" both mean DIR/val).
 * See docs/DATA.md for details.
 */
#ifndef APB_DATASET_H
#define APB_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct apb_dataset apb_dataset;

apb_status apb_dataset_open(const char *spec, const char *split, apb_dataset **out);
void apb_dataset_free(apb_dataset *ds);

/* An in-memory dataset from planar uint8 samples (copied): pixels [n, c, h, w],
 * labels [n] in [0, num_classes). `name` picks the default normalization when it
 * is a known dataset name ("cifar10", "mnist", ...); otherwise mean 0.5, std 0.25.
 * Used by benchmarks and tests; also handy for synthetic data. */
apb_status apb_dataset_from_u8(const char *name, int n, int c, int h, int w,
                               const unsigned char *pixels, const int *labels,
                               int num_classes, apb_dataset **out);

int apb_dataset_size(const apb_dataset *ds);
int apb_dataset_num_classes(const apb_dataset *ds);
const char *apb_dataset_class_name(const apb_dataset *ds, int i);
/* "fashion-mnist", "mnist", "cifar10", "cifar100", "imagenet" */
const char *apb_dataset_name(const apb_dataset *ds);
/* Native sample geometry: 1x28x28 for (fashion-)mnist, 3x32x32 for cifar.
 * Folder datasets have a variable size: *c = 3 (decoded as RGB), *h = *w = 0. */
void apb_dataset_geometry(const apb_dataset *ds, int *c, int *h, int *w);
int apb_dataset_label(const apb_dataset *ds, int i);
/* Keep only the first n samples (in file order; folder datasets are ordered by
 * class, then file name). n <= 0 or n >= size leaves the dataset unchanged. */
void apb_dataset_limit(apb_dataset *ds, int n);
/* Splits the visible samples (after apb_dataset_limit) into a validation set of
 * nval samples, chosen by `seed` (the same for the same seed, size and data),
 * and the rest: keep_val = 1 keeps the validation set visible, 0 the rest. Both
 * keep file order. Open the training split twice to get both sides. */
apb_status apb_dataset_holdout(apb_dataset *ds, int nval, uint64_t seed, int keep_val);
/* The file behind sample i of a folder dataset; NULL for in-memory datasets. */
const char *apb_dataset_path(const apb_dataset *ds, int i);
/* Raw planar uint8 sample [c, h, w] of an in-memory dataset; NULL for folders. */
const unsigned char *apb_dataset_pixels(const apb_dataset *ds, int i);

typedef struct {
    int out_c, out_h, out_w;      /* network input geometry */
    int crop_pad;                 /* random crop with this zero padding (train), 0 = none */
    int hflip;                    /* random horizontal flip (train) */
    int resize_short;             /* resize shorter side to this (bilinear), 0 = none */
    int center_crop;              /* center crop to out_h x out_w after resize */
    int rrc;                      /* random-resized-crop to out_h x out_w */
    float rrc_scale[2], rrc_ratio[2];
    float mean[3], std[3];        /* per-channel normalization of [0,1] pixels */
} apb_transform;

/* Dataset defaults. train=1: cifar pad-4 crop + flip; imagenet RRC (0.08-1,
 * 3/4-4/3) + flip; mnist none. train=0: imagenet resize 256 + center crop 224
 * (resize = round(img_size * 256 / 224) in general); others identity.
 * img_size > 0 overrides 224 / the native size. */
apb_status apb_transform_default(const apb_dataset *ds, int train, int img_size, apb_transform *t);

/* Checks a transform's fields (sizes, ranges, std > 0); errors say which. */
apb_status apb_transform_check(const apb_transform *t);

/* One sample after the transform: out [t->out_c, t->out_h, t->out_w]. The random
 * choices derive from apb_hash3(seed, epoch, index) only. A folder sample that
 * cannot be decoded returns an error naming the file. */
apb_status apb_dataset_get(apb_dataset *ds, const apb_transform *t, int index, int epoch,
                           uint64_t seed, float *out, int *label);

/* Decode a PNG (libpng) or JPEG (libjpeg), chosen by magic bytes, to RGB uint8
 * rgb [h, w, 3] (malloc'd, caller frees). Errors name the file and the reason;
 * a JPEG that libjpeg would only warn about (truncated, corrupt data) is an error. */
apb_status apb_image_load(const char *path, unsigned char **rgb, int *w, int *h);
/* As apb_image_load; *channels is the file's own layout: 1 gray, 2 gray + alpha,
 * 3 RGB, 4 RGBA (alpha is composited onto white, as viewers show it). */
apb_status apb_image_load_channels(const char *path, unsigned char **rgb, int *w, int *h,
                                   int *channels);
/* Same as apb_image_load, from bytes in memory; `what` names the source in error messages. */
apb_status apb_image_decode(const unsigned char *data, size_t size, const char *what,
                            unsigned char **rgb, int *w, int *h);
/* Preprocess a decoded image rgb [h, w, 3] with an eval transform (no random
 * choices are drawn unless t asks for them; then seed 0 is used) into
 * out [t->out_c, t->out_h, t->out_w]; out_c = 1 converts to grayscale. */
apb_status apb_image_preprocess(const unsigned char *rgb, int w, int h, const apb_transform *t,
                                float *out);
/* What an eval transform t does to the geometry of a sw x sh image, in words, into
 * buf [n]: "" when the image passes at its own size, otherwise e.g. "300x200
 * resized to 42x28 and center-cropped to 28x28" or "5x5 stretched to 28x28".
 * Follows the rules of apb_transform_apply (beside which it lives). */
void apb_transform_describe(const apb_transform *t, int sw, int sh, char *buf, size_t n);
/* Write interleaved uint8 rgb [h, w, channels] (channels 1 = gray, 3 = RGB) as a
 * PNG through libpng (atomically: temp file + rename). */
apb_status apb_png_write_rgb(const char *path, const unsigned char *rgb, int w, int h,
                             int channels);
/* Write a transformed sample x [c, h, w] (c = 1 or 3) as PNG, undoing the
 * normalization of t (values are clamped to [0, 255]). */
apb_status apb_png_write_sample(const char *path, const float *x, int c, int h, int w,
                                const apb_transform *t);
/* Encode px [h, w, channels] (1 gray or 3 RGB) as a JPEG of quality 1..100
 * (baseline, or progressive when asked) with libjpeg, into a malloc'd buffer
 * jpeg [size] (caller frees); `what` names it in errors. */
apb_status apb_jpeg_encode(const unsigned char *px, int w, int h, int channels, int quality,
                           int progressive, const char *what, unsigned char **jpeg, size_t *size);
/* apb_jpeg_encode (baseline) written atomically to path. */
apb_status apb_jpeg_write(const char *path, const unsigned char *px, int w, int h, int channels,
                          int quality);

/* The transform engine used by everything above, exposed for tests: src is a
 * uint8 image of sc channels (1 or 3), sh x sw pixels, addressed as
 * src[c * cs + y * ys + x * xs] (planar: cs = sh*sw, ys = sw, xs = 1;
 * interleaved RGB: cs = 1, ys = 3*sw, xs = 3). key seeds the random choices.
 * out [t->out_c, t->out_h, t->out_w]. */
apb_status apb_transform_apply(const apb_transform *t, const unsigned char *src, int sc, int sh,
                               int sw, long cs, long ys, long xs, uint64_t key, float *out);

#endif
