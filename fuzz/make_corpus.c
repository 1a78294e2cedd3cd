/* make_corpus.c - writes the seed corpora of the parser fuzz targets, a few
 * small valid inputs each, into DIR/<target>/ (fuzz/corpus/ in the repository
 * holds its output): IDX pairs raw and gzip, CIFAR-10/100 files with and
 * without class lists, PNGs and JPEGs of every layout, checkpoints (version 2,
 * the same with CRC repair, version 1), command lines for `apb train`.
 * Deterministic: the same files on every run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <png.h>

#include "dataset.h"
#include "fileio.h"
#include "test_ckpt_util.h"
#include "test_jpeg_util.h"

static const char *root;

static void put(const char *target, const char *name, const void *b, size_t n)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
}

/* gzip of b [n] into out (at most cap bytes); returns its length. */
static size_t gz(const unsigned char *b, size_t n, unsigned char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        exit(1);
    z.next_in = (unsigned char *)b;
    z.avail_in = (unsigned)n;
    z.next_out = out;
    z.avail_out = (unsigned)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        exit(1);
    size_t len = z.total_out;
    deflateEnd(&z);
    return len;
}

/* u16 length of `a`, a, b: the layout fuzz_idx.c splits */
static void idx_pair(const char *name, const unsigned char *a, size_t na, const unsigned char *b,
                     size_t nb)
{
    unsigned char buf[4096];
    buf[0] = (unsigned char)na, buf[1] = (unsigned char)(na >> 8);
    memcpy(buf + 2, a, na);
    memcpy(buf + 2 + na, b, nb);
    put("idx", name, buf, 2 + na + nb);
}

static void idx_seeds(void)
{
    unsigned char img[16 + 3 * 20], lab[8 + 3];
    const unsigned char ih[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5};
    const unsigned char lh[8] = {0, 0, 8, 1, 0, 0, 0, 3};
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    for (int i = 0; i < 60; i++)
        img[16 + i] = (unsigned char)(i * 37);
    lab[8] = 1, lab[9] = 9, lab[10] = 0;
    unsigned char gi[1024], gl[1024];
    size_t ngi = gz(img, sizeof img, gi, sizeof gi), ngl = gz(lab, sizeof lab, gl, sizeof gl);
    idx_pair("raw", img, sizeof img, lab, sizeof lab);
    idx_pair("gzip", gi, ngi, gl, ngl);
    idx_pair("gzip-images", gi, ngi, lab, sizeof lab);
}

/* flags, u16 list length, list, .bin: the layout fuzz_cifar.c splits */
static void cifar_seed(const char *name, int hundred, int nrec, const char *list)
{
    int rec = 3072 + 1 + hundred;
    size_t ln = strlen(list), n = 3 + ln + (size_t)nrec * rec;
    unsigned char *b = malloc(n);
    b[0] = (unsigned char)hundred, b[1] = (unsigned char)ln, b[2] = (unsigned char)(ln >> 8);
    memcpy(b + 3, list, ln);
    unsigned char *r = b + 3 + ln;
    for (int k = 0; k < nrec * rec; k++)
        r[k] = (unsigned char)(k * 13 + (k >> 9));
    for (int k = 0; k < nrec; k++) {
        r[k * rec] = (unsigned char)(k % (hundred ? 20 : 10));
        if (hundred)
            r[k * rec + 1] = (unsigned char)(k * 37 % 100);
    }
    put("cifar", name, b, n);
    free(b);
}

static void cifar_seeds(void)
{
    char list[2048] = "";
    for (int c = 0; c < 10; c++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "class %d\n", c);
    cifar_seed("c10-names", 0, 2, list);
    cifar_seed("c10", 0, 1, "");
    list[0] = 0;
    for (int c = 0; c < 100; c++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "c%d\n", c);
    cifar_seed("c100-names", 1, 2, list);
}

static void image_seeds(void)
{
    unsigned char px[11 * 7 * 8];
    for (int i = 0; i < (int)sizeof px; i++)
        px[i] = (unsigned char)(i * 29 + (i >> 3));
    static const struct {
        const char *name;
        png_uint_32 format;
    } f[] = {{"gray.png", PNG_FORMAT_GRAY},   {"rgb.png", PNG_FORMAT_RGB},
             {"rgba.png", PNG_FORMAT_RGBA},   {"palette.png", PNG_FORMAT_RGB_COLORMAP},
             {"gray16.png", PNG_FORMAT_LINEAR_Y}, {"ga.png", PNG_FORMAT_GA}};
    png_color cmap[256];
    for (int i = 0; i < 256; i++)
        cmap[i] = (png_color){(png_byte)i, (png_byte)(255 - i), (png_byte)(i * 3)};
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION;
        img.width = 11, img.height = 7;
        img.format = f[k].format;
        int pal = f[k].format == PNG_FORMAT_RGB_COLORMAP;
        if (pal)
            img.colormap_entries = 256;
        png_alloc_size_t size = 0;
        unsigned char buf[4096];
        if (!png_image_write_to_memory(&img, NULL, &size, 0, px, 0, pal ? cmap : NULL) ||
            size > sizeof buf || !png_image_write_to_memory(&img, buf, &size, 0, px, 0, pal ? cmap : NULL))
            exit(1);
        put("image", f[k].name, buf, size);
    }
    /* JPEGs: gray, RGB, RGB progressive (apb's writer), CMYK with Adobe's
     * marker, YCCK, and a gray one of 30 scans (one coefficient band at a time) */
    static const struct {
        const char *name;
        int channels, progressive;
    } j[] = {{"gray.jpg", 1, 0}, {"rgb.jpg", 3, 0}, {"progressive.jpg", 3, 1}};
    for (size_t k = 0; k < sizeof j / sizeof j[0]; k++) {
        unsigned char *b;
        size_t n;
        if (apb_jpeg_encode(px, 11, 7, j[k].channels, 75, j[k].progressive, j[k].name, &b, &n))
            exit(1);
        put("image", j[k].name, b, n);
        free(b);
    }
    unsigned char *b;
    unsigned long n;
    tj_write_cmyk(px, 11, 7, 0, 1, &b, &n);
    put("image", "cmyk.jpg", b, n);
    free(b);
    tj_write_cmyk(px, 11, 7, 1, 1, &b, &n);
    put("image", "ycck.jpg", b, n);
    free(b);
    tj_write_scans(px, 11, 7, 30, &b, &n);
    put("image", "scans.jpg", b, n);
    free(b);
}

static void ckpt_seeds(const char *tmp)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/small.ckpt", tmp);
    if (tc_write_small(path) != APB_OK)
        exit(1);
    unsigned char *b, *v1;
    size_t n, n1;
    if (apb_file_read(path, &b, &n) != APB_OK || tc_to_v1(b, n, &v1, &n1))
        exit(1);
    remove(path);
    unsigned char *o = malloc(n + 1);
    for (int flag = 0; flag < 2; flag++) {
        o[0] = (unsigned char)flag;
        memcpy(o + 1, b, n);
        put("ckpt", flag ? "v2-repair" : "v2", o, n + 1);
    }
    o = realloc(o, n1 + 1);
    o[0] = 0;
    memcpy(o + 1, v1, n1);
    put("ckpt", "v1", o, n1 + 1);
    free(o);
    free(b);
    free(v1);
}

static void options_seed(const char *name, const char *const *args, int n)
{
    char buf[2048];
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(args[i]);
        memcpy(buf + o, args[i], l);
        o += l;
        if (i + 1 < n)
            buf[o++] = 0;
    }
    put("options", name, buf, o);
}

static void options_seeds(void)
{
    const char *const a[] = {"--data", "fashion-mnist", "--model", "convnet", "--quant", "apb",
                             "--budget-bits", "1.5", "--budget-alpha", "fit", "--epochs", "3",
                             "--batch=64", "--lr", "0.05", "--out", "runs/apb"};
    const char *const b[] = {"--resume", "runs/apb", "--epochs", "5", "--threads", "2", "--quiet"};
    const char *const c[] = {"--data", "cifar10:/d", "--model", "resnet20", "--quant", "prune:0.5",
                             "--act", "binary", "--optim", "adamw", "--val", "100", "--seed", "7",
                             "--init", "fp/best.ckpt", "--force", "--out", "r", "fp,apb", "1.1,1.3"};
    options_seed("apb", a, (int)(sizeof a / sizeof a[0]));
    options_seed("resume", b, (int)(sizeof b / sizeof b[0]));
    options_seed("prune", c, (int)(sizeof c / sizeof c[0]));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    root = argv[1];
    mkdir(root, 0777);
    idx_seeds();
    cifar_seeds();
    image_seeds();
    ckpt_seeds(root);
    options_seeds();
    return 0;
}
