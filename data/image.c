/* image.c - decode PNG (libpng) and JPEG (libjpeg) files to RGB, write PNGs and JPEGs.
 *
 * The decoder is chosen by the file's magic bytes, never its extension, so a
 * mislabelled file still decodes and a non-image fails with a clear reason.
 * Decoding is re-entrant (libpng's simplified API keeps its state in the
 * png_image, libjpeg in a decompress object on the caller's stack), so loader
 * threads decode in parallel. Oversized images are refused before any allocation.
 */
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

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

/* JPEG through libjpeg (libjpeg-turbo, Debian's libjpeg62-turbo).
 *
 * libjpeg reports an error by calling error_exit, whose default prints and
 * calls exit(): here it keeps the message and jumps back to the caller, which
 * destroys the decoder (freeing all it allocated) and returns the message.
 * Warnings are errors too: libjpeg warns about corrupt data it then patches
 * over (a truncated scan filled with gray, a bad Huffman code, bytes before a
 * marker), so an image is either decoded as written or refused, never half
 * gray, the same on every run. */
typedef struct {
    struct jpeg_error_mgr mgr; /* first: libjpeg hands back &mgr as cinfo->err */
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX + 64];
} jpeg_failure;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    f->mgr.format_message(cinfo, f->msg);
    longjmp(f->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0) /* a warning; levels >= 0 are traces, off by default */
        jpeg_on_error(cinfo);
}

/* A progressive file may hold any number of scans, each a pass over the whole
 * image: a small hostile file could keep the decoder busy for minutes. Real
 * encoders write about ten; libjpeg-turbo's own tools suggest refusing
 * beyond a few hundred. */
#define APB_JPEG_MAX_SCANS 500

static void jpeg_on_progress(j_common_ptr cinfo)
{
    int scan = ((j_decompress_ptr)cinfo)->input_scan_number;
    if (scan > APB_JPEG_MAX_SCANS) {
        jpeg_failure *f = (jpeg_failure *)cinfo->err;
        snprintf(f->msg, sizeof f->msg, "more than %d scans", APB_JPEG_MAX_SCANS);
        longjmp(f->jump, 1);
    }
}

static void jpeg_failure_init(jpeg_failure *f)
{
    jpeg_std_error(&f->mgr);
    f->mgr.error_exit = jpeg_on_error;
    f->mgr.emit_message = jpeg_on_message;
    f->msg[0] = 0;
}

/* CMYK (or YCCK, which libjpeg turns into CMYK) to RGB. Adobe's files store the
 * inks inverted (255 = no ink), others as printed (255 = full ink). */
static void cmyk_to_rgb(const unsigned char *cmyk, unsigned char *rgb, int w, int adobe)
{
    for (int x = 0; x < w; x++) {
        unsigned k = cmyk[4 * x + 3];
        if (!adobe)
            k = 255 - k;
        for (int c = 0; c < 3; c++) {
            unsigned v = adobe ? cmyk[4 * x + c] : 255u - cmyk[4 * x + c];
            rgb[3 * x + c] = (unsigned char)((v * k + 127) / 255);
        }
    }
}

static apb_status decode_jpeg(const unsigned char *data, size_t size, const char *what,
                              unsigned char **rgb, int *w, int *h, int *channels)
{
    if (size > 0x7fffffff)
        return apb_fail(APB_EFORMAT, "%s: JPEG file too large (%zu bytes)", what, size);
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_on_progress};
    jpeg_failure fail;
    jpeg_failure_init(&fail);
    cinfo.err = &fail.mgr;
    /* changed after setjmp and read after a longjmp: volatile */
    unsigned char *volatile out = NULL;
    volatile int stage = 0; /* 0 header, 1 pixels */
    if (setjmp(fail.jump)) {
        apb_status s;
        if (stage == 0)
            s = apb_fail(APB_EFORMAT, "%s: cannot decode JPEG header: %s", what, fail.msg);
        else
            s = apb_fail(APB_EFORMAT, "%s: cannot decode JPEG (%ux%u, %d components): %s", what,
                         cinfo.image_width, cinfo.image_height, cinfo.num_components, fail.msg);
        jpeg_destroy_decompress(&cinfo);
        free(out);
        return s;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    stage = 1;
    apb_status s = check_dims(what, cinfo.image_width, cinfo.image_height);
    if (s != APB_OK) {
        jpeg_destroy_decompress(&cinfo);
        return s;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    int adobe = cinfo.saw_Adobe_marker;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int ow = (int)cinfo.output_width, oh = (int)cinfo.output_height;
    if (ow != (int)cinfo.image_width || oh != (int)cinfo.image_height ||
        cinfo.output_components != (cmyk ? 4 : 3)) {
        snprintf(fail.msg, sizeof fail.msg, "decoder gave %dx%d with %d components", ow, oh,
                 cinfo.output_components);
        longjmp(fail.jump, 1); /* cannot happen with these settings; refuse anyway */
    }
    size_t row = (size_t)ow * 3;
    out = malloc(row * oh);
    if (!out) {
        jpeg_destroy_decompress(&cinfo);
        return apb_fail(APB_ENOMEM, "%s: out of memory for a %dx%d image", what, ow, oh);
    }
    /* a CMYK row is converted from libjpeg's own buffer, freed with the decoder */
    JSAMPARRAY cmyk_row = cmyk ? cinfo.mem->alloc_sarray((j_common_ptr)&cinfo, JPOOL_IMAGE,
                                                         (JDIMENSION)ow * 4, 1)
                               : NULL;
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *dst = out + row * cinfo.output_scanline;
        if (cmyk) {
            jpeg_read_scanlines(&cinfo, cmyk_row, 1);
            cmyk_to_rgb(cmyk_row[0], dst, ow, adobe);
        } else {
            JSAMPROW r = dst;
            jpeg_read_scanlines(&cinfo, &r, 1);
        }
    }
    /* reads on to the end of the image: a file cut after its last scan is refused too */
    jpeg_finish_decompress(&cinfo);
    *channels = cinfo.num_components == 1 ? 1 : 3;
    jpeg_destroy_decompress(&cinfo);
    *rgb = out;
    *w = ow;
    *h = oh;
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

/* libjpeg's encoder writes into this growing buffer (libjpeg's own memory
 * destination loses its buffer when the encoder fails midway). */
typedef struct {
    struct jpeg_destination_mgr mgr; /* first: libjpeg hands back &mgr as cinfo->dest */
    unsigned char *buf;
    size_t cap;
} jpeg_sink;

static void jpeg_sink_init(j_compress_ptr cinfo)
{
    jpeg_sink *k = (jpeg_sink *)cinfo->dest;
    k->mgr.next_output_byte = k->buf;
    k->mgr.free_in_buffer = k->cap;
}

static boolean jpeg_sink_grow(j_compress_ptr cinfo)
{
    /* called when the buffer is full, whatever free_in_buffer says */
    jpeg_sink *k = (jpeg_sink *)cinfo->dest;
    unsigned char *b = realloc(k->buf, 2 * k->cap);
    if (!b) {
        jpeg_failure *f = (jpeg_failure *)cinfo->err;
        snprintf(f->msg, sizeof f->msg, "out of memory for %zu bytes", 2 * k->cap);
        longjmp(f->jump, 1);
    }
    k->buf = b;
    k->mgr.next_output_byte = b + k->cap;
    k->mgr.free_in_buffer = k->cap;
    k->cap *= 2;
    return TRUE;
}

static void jpeg_sink_term(j_compress_ptr cinfo)
{
}

apb_status apb_jpeg_encode(const unsigned char *px, int w, int h, int channels, int quality,
                           int progressive, const char *what, unsigned char **jpeg, size_t *size)
{
    *jpeg = NULL;
    *size = 0;
    if (channels != 1 && channels != 3)
        return apb_fail(APB_EINVAL, "%s: JPEG with %d channels, expected 1 or 3", what, channels);
    if (quality < 1 || quality > 100)
        return apb_fail(APB_EINVAL, "%s: JPEG quality %d, expected 1..100", what, quality);
    APB_TRY(check_dims(what, w, h));
    struct jpeg_compress_struct cinfo;
    jpeg_failure fail;
    jpeg_failure_init(&fail);
    cinfo.err = &fail.mgr;
    /* the sink's buffer is reached through a pointer, so a longjmp leaves it intact */
    jpeg_sink sink = {.mgr = {.init_destination = jpeg_sink_init,
                              .empty_output_buffer = jpeg_sink_grow,
                              .term_destination = jpeg_sink_term},
                      .cap = 4096 + (size_t)w * h * channels / 4};
    jpeg_sink *volatile k = &sink;
    k->buf = malloc(k->cap);
    if (!k->buf)
        return apb_fail(APB_ENOMEM, "%s: out of memory to encode a %dx%d JPEG", what, w, h);
    if (setjmp(fail.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(k->buf);
        return apb_fail(APB_EIO, "%s: cannot encode JPEG: %s", what, fail.msg);
    }
    jpeg_create_compress(&cinfo);
    cinfo.dest = &k->mgr;
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (progressive)
        jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        /* libjpeg reads the rows, never writes them */
        JSAMPROW r = (JSAMPROW)(px + (size_t)cinfo.next_scanline * w * channels);
        jpeg_write_scanlines(&cinfo, &r, 1);
    }
    jpeg_finish_compress(&cinfo);
    *size = k->cap - k->mgr.free_in_buffer;
    *jpeg = k->buf;
    jpeg_destroy_compress(&cinfo);
    return APB_OK;
}

apb_status apb_jpeg_write(const char *path, const unsigned char *px, int w, int h, int channels,
                          int quality)
{
    unsigned char *jpeg;
    size_t size;
    APB_TRY(apb_jpeg_encode(px, w, h, channels, quality, 0, path, &jpeg, &size));
    apb_status s = apb_file_write_atomic(path, jpeg, size);
    free(jpeg);
    return s;
}
