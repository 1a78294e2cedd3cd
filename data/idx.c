/* idx.c - MNIST / Fashion-MNIST IDX files, gzipped or raw, read into memory.
 *
 * zlib's gzread reads both compressed and plain files, so one path serves the
 * .gz files as distributed and unpacked copies. Everything a bad download can
 * get wrong is checked and reported with the file name: magic, dimensions,
 * truncation, corrupt gzip streams, trailing bytes, label range, and the image
 * and label files disagreeing on the count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "dataset_impl.h"

#define APB_IDX_MAX_ITEMS 100000000L

static const char *const fashion_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                               "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                                               "Ankle boot"};

static apb_status gz_status(gzFile f, const char *path, const char *what, long want, long got)
{
    int err;
    const char *m = gzerror(f, &err);
    if (err != Z_OK && err != Z_BUF_ERROR)
        return apb_fail(APB_EFORMAT, "%s: corrupt gzip data while reading %s: %s", path, what,
                        m ? m : "unknown zlib error");
    return apb_fail(APB_EFORMAT, "%s: truncated: %s needs %ld bytes, file has %ld", path, what,
                    want, got < 0 ? 0 : got);
}

static apb_status read_full(gzFile f, const char *path, const char *what, unsigned char *buf,
                            long n)
{
    long got = 0;
    while (got < n) {
        long chunk = n - got > (1L << 30) ? (1L << 30) : n - got;
        int r = gzread(f, buf + got, (unsigned)chunk);
        if (r <= 0)
            return gz_status(f, path, what, n, got);
        got += r;
    }
    return APB_OK;
}

/* Reads n bytes into a malloc'd *out that grows (doubling) with the data that
 * really arrives: the header's size is only a claim, and a 16-byte file that
 * declares gigabytes must fail as truncated having allocated next to nothing. */
static apb_status read_grown(gzFile f, const char *path, const char *what, long n,
                             unsigned char **out)
{
    long cap = n < (1L << 20) ? n : (1L << 20), got = 0;
    unsigned char *buf = malloc((size_t)cap);
    if (!buf)
        return apb_fail(APB_ENOMEM, "%s: out of memory for %ld bytes", path, cap);
    while (got < n) {
        if (got == cap) {
            long nc = cap > n / 2 ? n : 2 * cap;
            unsigned char *p = realloc(buf, (size_t)nc);
            if (!p) {
                free(buf);
                return apb_fail(APB_ENOMEM, "%s: out of memory for %ld bytes", path, nc);
            }
            buf = p;
            cap = nc;
        }
        long chunk = cap - got > (1L << 30) ? (1L << 30) : cap - got;
        int r = gzread(f, buf + got, (unsigned)chunk);
        if (r <= 0) {
            free(buf);
            return gz_status(f, path, what, n, got);
        }
        got += r;
    }
    *out = buf;
    return APB_OK;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads an IDX file of unsigned bytes with `ndim` dimensions into *data (malloc'd). */
static apb_status idx_read(const char *path, int ndim, uint32_t dims[3], unsigned char **data)
{
    *data = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return apb_fail(APB_EIO, "%s: cannot open", path);
    unsigned char hdr[16];
    long hlen = 4 + 4L * ndim;
    apb_status s = read_full(f, path, "the IDX header", hdr, hlen);
    if (s != APB_OK) {
        gzclose(f);
        return s;
    }
    uint32_t magic = be32(hdr), want = 0x800u | (uint32_t)ndim;
    if (magic != want) {
        gzclose(f);
        return apb_fail(APB_EFORMAT, "%s: bad IDX magic 0x%08x, expected 0x%08x (%s of unsigned bytes)",
                        path, magic, want, ndim == 3 ? "images" : "labels");
    }
    long total = 1;
    for (int d = 0; d < ndim; d++) {
        dims[d] = be32(hdr + 4 + 4 * d);
        long lim = d == 0 ? APB_IDX_MAX_ITEMS : 4096;
        if (dims[d] == 0 || dims[d] > (uint32_t)lim) {
            gzclose(f);
            return apb_fail(APB_EFORMAT, "%s: dimension %d is %u, expected 1..%ld", path, d,
                            dims[d], lim);
        }
        total *= dims[d];
    }
    if (total > 4L * 1000 * 1000 * 1000) {
        gzclose(f);
        return apb_fail(APB_EFORMAT, "%s: %ld bytes of data is implausibly large", path, total);
    }
    unsigned char *buf = NULL;
    char what[64];
    snprintf(what, sizeof what, "%u %s", dims[0], ndim == 3 ? "images" : "labels");
    s = read_grown(f, path, what, total, &buf);
    if (s == APB_OK) {
        unsigned char extra;
        int r = gzread(f, &extra, 1), err;
        gzerror(f, &err);
        if (r > 0)
            s = apb_fail(APB_EFORMAT, "%s: unexpected bytes after %u %s (header says %u)", path,
                         dims[0], ndim == 3 ? "images" : "labels", dims[0]);
        else if (r < 0)
            s = gz_status(f, path, what, total, total);
        else if (err != Z_OK)
            /* every byte came out but the stream stopped short of its end: a
             * truncated .gz whose CRC trailer was never checked */
            s = apb_fail(APB_EFORMAT, "%s: truncated gzip stream: it ends before its checksum (%s)",
                         path, gzerror(f, &err));
    }
    gzclose(f);
    if (s != APB_OK) {
        free(buf);
        return s;
    }
    *data = buf;
    return APB_OK;
}

/* First existing file among the names the IDX files are distributed under. */
static int find_idx(char *out, size_t n, const char *dir, const char *prefix, const char *kind)
{
    const char *fmts[] = {"%s/%s-%s-ubyte.gz", "%s/%s-%s-ubyte"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, n, fmts[i], dir, prefix, kind);
        struct stat st;
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
            return 1;
    }
    /* Some mirrors unpack to "train-images.idx3-ubyte". */
    char k2[32];
    snprintf(k2, sizeof k2, "%s", kind);
    char *dash = strchr(k2, '-');
    if (dash) {
        *dash = '.';
        snprintf(out, n, "%s/%s-%s-ubyte", dir, prefix, k2);
        struct stat st;
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
            return 1;
    }
    snprintf(out, n, "%s/%s-%s-ubyte.gz", dir, prefix, kind);
    return 0;
}

apb_status apb_idx_open(apb_dataset *ds, const char *dir, int train)
{
    const char *prefix = train ? "train" : "t10k";
    char ipath[1024], lpath[1024];
    if (!find_idx(ipath, sizeof ipath, dir, prefix, "images-idx3"))
        return apb_fail(APB_EIO, "%s: not found (%s expects %s-images-idx3-ubyte[.gz] in %s)",
                        ipath, ds->name, prefix, dir);
    if (!find_idx(lpath, sizeof lpath, dir, prefix, "labels-idx1"))
        return apb_fail(APB_EIO, "%s: not found (%s expects %s-labels-idx1-ubyte[.gz] in %s)",
                        lpath, ds->name, prefix, dir);
    uint32_t idim[3], ldim[3];
    unsigned char *labels;
    APB_TRY(idx_read(ipath, 3, idim, &ds->pixels));
    APB_TRY(idx_read(lpath, 1, ldim, &labels));
    if (idim[0] != ldim[0]) {
        free(labels);
        return apb_fail(APB_EFORMAT, "%s has %u images but %s has %u labels", ipath, idim[0],
                        lpath, ldim[0]);
    }
    int n = (int)idim[0];
    ds->labels = malloc(sizeof(int) * (size_t)n);
    if (!ds->labels) {
        free(labels);
        return apb_fail(APB_ENOMEM, "%s: out of memory", lpath);
    }
    for (int i = 0; i < n; i++) {
        if (labels[i] > 9) {
            apb_status s = apb_fail(APB_EFORMAT, "%s: label %d of item %d is out of range 0..9",
                                    lpath, labels[i], i);
            free(labels);
            return s;
        }
        ds->labels[i] = labels[i];
    }
    free(labels);
    ds->n_total = n;
    ds->c = 1;
    ds->h = (int)idim[1];
    ds->w = (int)idim[2];
    if (strcmp(ds->name, "fashion-mnist") == 0) {
        ds->class_names = calloc(10, sizeof(char *));
        if (!ds->class_names)
            return apb_fail(APB_ENOMEM, "out of memory");
        ds->num_classes = 10;
        for (int i = 0; i < 10; i++)
            if (!(ds->class_names[i] = strdup(fashion_names[i])))
                return apb_fail(APB_ENOMEM, "out of memory");
        return APB_OK;
    }
    return apb_dataset_numeric_names(ds, 10);
}
