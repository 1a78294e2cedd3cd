/* image.c - decode PNG (libpng) and JPEG (stb_image) files to RGB, write PNGs.
 *
 * The decoder is chosen by the file's magic bytes, never its extension, so a
 * mislabelled file still decodes and a non-image fails with a clear reason.
 * Decoding is re-entrant (libpng's simplified API keeps its state in the
 * png_image; stb_image's failure reason is thread-local), so loader threads
 * decode in parallel. Oversized images are refused before any allocation.
 */
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <stb/stb_image.h>

#include "dataset.h"
#include "fileio.h"

/* The decode cap: a header declaring more is refused before any pixel buffer is
 * allocated (200 M pixels are 600 MB of RGB, far more than any photo a classifier
 * is fed).
 * The fuzz build lowers the pixel count (fuzz/run.sh) so huge headers stay cheap. */
#define APB_IMAGE_MAX_SIDE 32768
#ifndef APB_IMAGE_MAX_PIXELS
#define APB_IMAGE_MAX_PIXELS (200L * 1000 * 1000)
#endif

static apb_status check_dims(const char *what, long w, long h)
{
    if (w <= 0 || h <= 0 || w > APB_IMAGE_MAX_SIDE || h > APB_IMAGE_MAX_SIDE ||
        w * h > APB_IMAGE_MAX_PIXELS)
        return apb_fail(APB_EFORMAT, "%s: image size %ldx%ld out of range (at most %d per side, %ld pixels)",
                        what, w, h, APB_IMAGE_MAX_SIDE, APB_IMAGE_MAX_PIXELS);
    return APB_OK;
}

static apb_status decode_png(const unsigned char *data, size_t size, const char *what,
                             unsigned char **rgb, int *w, int *h, int *channels)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, size)) {
        apb_status s = apb_fail(APB_EFORMAT, "%s: cannot decode PNG: %s", what, img.message);
        png_image_free(&img);
        return s;
    }
    apb_status s = check_dims(what, img.width, img.height);
    if (s != APB_OK) {
        png_image_free(&img);
        return s;
    }
    /* the file's own layout (palette images count as RGB, with alpha if they have tRNS) */
    *channels = (int)PNG_IMAGE_SAMPLE_CHANNELS(img.format);
    img.format = PNG_FORMAT_RGB;
    size_t n = PNG_IMAGE_SIZE(img);
    unsigned char *buf = malloc(n);
    if (!buf) {
        png_image_free(&img);
        return apb_fail(APB_ENOMEM, "%s: out of memory for a %ux%u image", what, img.width,
                        img.height);
    }
    /* Transparent pixels are composited onto white, as image viewers show them. */
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&img, &white, buf, 0, NULL)) {
        s = apb_fail(APB_EFORMAT, "%s: cannot decode PNG: %s", what, img.message);
        png_image_free(&img);
        free(buf);
        return s;
    }
    *rgb = buf;
    *w = (int)img.width;
    *h = (int)img.height;
    return APB_OK;
}

/* stb_image (Debian's 2022-09 snapshot) decodes a scan whose Huffman table was
 * never defined with whatever its allocation held, and reads far out of bounds
 * (fuzz/fuzz_image.c found it: docs/RELIABILITY.md). So the markers are walked
 * first and a scan that uses an undefined table is refused; anything else that
 * is malformed is left to stb's own checks. */
static apb_status jpeg_check_tables(const unsigned char *d, size_t n, const char *what)
{
    unsigned defined = 0; /* bit 4 * class + id: class 0 DC, 1 AC; ids 0..3 */
    size_t i = 2;         /* after SOI */
    while (i + 1 < n) {
        if (d[i] != 0xFF || d[i + 1] == 0xFF) {
            i++; /* entropy-coded data, or fill bytes before a marker */
            continue;
        }
        unsigned m = d[i + 1];
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {
            i += 2; /* stuffed byte, TEM, RSTn, SOI: no length */
            continue;
        }
        if (m == 0xD9 || i + 4 > n)
            return APB_OK; /* EOI, or truncated: stb reports that */
        size_t len = (size_t)d[i + 2] << 8 | d[i + 3];
        if (len < 2 || i + 2 + len > n)
            return APB_OK;
        const unsigned char *seg = d + i + 4;
        size_t sl = len - 2;
        if (m == 0xC4) { /* DHT: tables of (class << 4 | id), 16 counts, values */
            for (size_t j = 0; j + 17 <= sl;) {
                unsigned tc = seg[j] >> 4, th = seg[j] & 15, count = 0;
                for (int k = 1; k <= 16; k++)
                    count += seg[j + k];
                if (tc < 2 && th < 4)
                    defined |= 1u << (4 * tc + th);
                j += 17 + count;
            }
        } else if (m == 0xDA && sl >= 1 && sl >= 1 + 2 * (size_t)seg[0] + 3) {
            /* SOS: per component (id, DC table << 4 | AC table), then Ss, Se, Ah/Al;
             * a DC scan (Ss 0) reads DC tables unless it refines (Ah > 0), a scan
             * up to Se > 0 reads AC tables */
            unsigned ns = seg[0], ss = seg[1 + 2 * ns], se = seg[2 + 2 * ns], ah = seg[3 + 2 * ns] >> 4;
            for (unsigned k = 0; k < ns; k++) {
                unsigned td = seg[2 + 2 * k] >> 4, ta = seg[2 + 2 * k] & 15;
                int dc_used = ss == 0 && ah == 0, ac_used = se > 0;
                if ((dc_used && (td > 3 || !(defined >> td & 1))) ||
                    (ac_used && (ta > 3 || !(defined >> (4 + ta) & 1))))
                    return apb_fail(APB_EFORMAT, "%s: corrupt JPEG: scan component %u uses a Huffman "
                                    "table that is not defined (DC %u, AC %u)", what, seg[1 + 2 * k], td, ta);
            }
        }
        i += 2 + len;
    }
    return APB_OK;
}

static apb_status decode_jpeg(const unsigned char *data, size_t size, const char *what,
                              unsigned char **rgb, int *w, int *h, int *channels)
{
    if (size > 0x7fffffff)
        return apb_fail(APB_EFORMAT, "%s: JPEG file too large (%zu bytes)", what, size);
    int iw, ih, comp;
    if (!stbi_info_from_memory(data, (int)size, &iw, &ih, &comp))
        return apb_fail(APB_EFORMAT, "%s: cannot decode JPEG header: %s", what,
                        stbi_failure_reason());
    APB_TRY(check_dims(what, iw, ih));
    APB_TRY(jpeg_check_tables(data, size, what));
    unsigned char *buf = stbi_load_from_memory(data, (int)size, &iw, &ih, &comp, 3);
    if (!buf) {
        /* stb tries its other decoders after a JPEG fails, and their reason
         * ("bad png sig") would only mislead */
        const char *why = stbi_failure_reason();
        if (!why || strstr(why, "png") || strstr(why, "PNG"))
            why = "corrupt or truncated data";
        return apb_fail(APB_EFORMAT, "%s: cannot decode JPEG (%dx%d, %d components): %s", what, iw,
                        ih, comp, why);
    }
    /* stb allocates with malloc (STBI_MALLOC default), so the caller's free() fits;
     * copy anyway to keep that an internal detail of this file. */
    size_t n = (size_t)iw * ih * 3;
    unsigned char *out = malloc(n);
    if (!out) {
        stbi_image_free(buf);
        return apb_fail(APB_ENOMEM, "%s: out of memory for a %dx%d image", what, iw, ih);
    }
    memcpy(out, buf, n);
    stbi_image_free(buf);
    *rgb = out;
    *w = iw;
    *h = ih;
    *channels = comp;
    return APB_OK;
}

static apb_status decode(const unsigned char *data, size_t size, const char *what,
                         unsigned char **rgb, int *w, int *h, int *channels)
{
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *rgb = NULL;
    if (size >= 8 && memcmp(data, png_magic, 8) == 0)
        return decode_png(data, size, what, rgb, w, h, channels);
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(data, size, what, rgb, w, h, channels);
    if (size == 0)
        return apb_fail(APB_EFORMAT, "%s: empty file", what);
    return apb_fail(APB_EFORMAT, "%s: not a PNG or JPEG file (starts with bytes %02x %02x %02x %02x)",
                    what, data[0], size > 1 ? data[1] : 0, size > 2 ? data[2] : 0,
                    size > 3 ? data[3] : 0);
}

apb_status apb_image_decode(const unsigned char *data, size_t size, const char *what,
                            unsigned char **rgb, int *w, int *h)
{
    int channels;
    return decode(data, size, what, rgb, w, h, &channels);
}

apb_status apb_image_load_channels(const char *path, unsigned char **rgb, int *w, int *h,
                                   int *channels)
{
    unsigned char *data;
    size_t size;
    *rgb = NULL;
    APB_TRY(apb_file_read(path, &data, &size));
    apb_status s = decode(data, size, path, rgb, w, h, channels);
    free(data);
    return s;
}

apb_status apb_image_load(const char *path, unsigned char **rgb, int *w, int *h)
{
    int channels;
    return apb_image_load_channels(path, rgb, w, h, &channels);
}

apb_status apb_png_write_rgb(const char *path, const unsigned char *rgb, int w, int h,
                             int channels)
{
    if (channels != 1 && channels != 3)
        return apb_fail(APB_EINVAL, "%s: PNG with %d channels, expected 1 or 3", path, channels);
    APB_TRY(check_dims(path, w, h));
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    /* Encoded in memory (first call measures), then written by the atomic
     * writer: a failed write is then reported with the OS error, like every
     * other file apb writes. */
    png_alloc_size_t size = 0;
    unsigned char *png = NULL;
    if (png_image_write_to_memory(&img, NULL, &size, 0, rgb, 0, NULL))
        png = malloc(size);
    if (!png || !png_image_write_to_memory(&img, png, &size, 0, rgb, 0, NULL)) {
        apb_status s = png ? apb_fail(APB_EIO, "%s: cannot encode PNG: %s", path, img.message)
                           : apb_fail(APB_ENOMEM, "%s: cannot encode PNG (%s)", path,
                                      img.message[0] ? img.message : "out of memory");
        png_image_free(&img);
        free(png);
        return s;
    }
    apb_status s = apb_file_write_atomic(path, png, size);
    free(png);
    return s;
}

apb_status apb_png_write_sample(const char *path, const float *x, int c, int h, int w,
                                const apb_transform *t)
{
    if (c != 1 && c != 3)
        return apb_fail(APB_EINVAL, "%s: sample with %d channels, expected 1 or 3", path, c);
    APB_TRY(check_dims(path, w, h));
    unsigned char *buf = malloc((size_t)w * h * c);
    if (!buf)
        return apb_fail(APB_ENOMEM, "%s: out of memory", path);
    for (int ch = 0; ch < c; ch++)
        for (long i = 0; i < (long)w * h; i++) {
            float v = (x[ch * (long)w * h + i] * t->std[ch] + t->mean[ch]) * 255.0f;
            v = v < 0 ? 0 : v > 255 ? 255 : v;
            buf[i * c + ch] = (unsigned char)(v + 0.5f);
        }
    apb_status s = apb_png_write_rgb(path, buf, w, h, c);
    free(buf);
    return s;
}
