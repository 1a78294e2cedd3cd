/* test_jpeg_util.h - JPEG files that apb reads but never writes, made with
 * libjpeg's encoder for the tests and the fuzz seeds: four-component files
 * (CMYK or YCCK, with Adobe's marker and its inverted inks, or without), and
 * progressive gray files with a chosen number of scans (the decoder refuses
 * more than 500). apb's own writer (apb_jpeg_encode) makes gray, RGB and
 * progressive files with libjpeg's default scan script.
 * Shared by tests/test_data.c, tests/test_parsers_robust.c and fuzz/make_corpus.c.
 *
 * The inputs are constants of the callers, so libjpeg's default error handler
 * (print and exit) is kept: a failure here is a broken test, said loudly.
 */
#ifndef APB_TEST_JPEG_UTIL_H
#define APB_TEST_JPEG_UTIL_H

#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>

#include <jpeglib.h>

/* Encodes rows of `comps` samples per pixel with the encoder set up in *c (its
 * jpeg_mem_dest fills the caller's buffer and size), then destroys it. */
static inline void tj_encode_rows(j_compress_ptr c, const unsigned char *px, int comps)
{
    jpeg_start_compress(c, TRUE);
    while (c->next_scanline < c->image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)c->next_scanline * c->image_width * comps);
        jpeg_write_scanlines(c, &r, 1);
    }
    jpeg_finish_compress(c);
    jpeg_destroy_compress(c);
}

/* A w x h four-component JPEG of px [h, w, 4] (C, M, Y, K as stored), quality
 * 100, stored as CMYK (ycck 0) or YCCK (ycck 1), with an Adobe marker or not; *out [*size] is malloc'd. */
static inline void tj_write_cmyk(const unsigned char *px, int w, int h, int ycck, int adobe,
                                 unsigned char **out, unsigned long *size)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    *out = NULL, *size = 0;
    jpeg_mem_dest(&c, out, size);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, ycck ? JCS_YCCK : JCS_CMYK);
    c.write_Adobe_marker = adobe ? TRUE : FALSE;
    jpeg_set_quality(&c, 100, TRUE);
    tj_encode_rows(&c, px, 4);
}

/* The most scans tj_write_scans can make: the DC scan, then each of the 63 AC
 * coefficients of the block alone, in ten successive-approximation scans (its
 * bits 9 and up, then bit 8, ..., bit 0). */
#define TJ_MAX_SCANS (1 + 63 * 10)

/* A w x h progressive gray JPEG of px [h, w] with the first `scans` scans of
 * that script (1..TJ_MAX_SCANS): a valid progression, whose coefficients not
 * yet sent stay zero; *out [*size] is malloc'd. */
static inline void tj_write_scans(const unsigned char *px, int w, int h, int scans,
                                  unsigned char **out, unsigned long *size)
{
    static jpeg_scan_info script[TJ_MAX_SCANS];
    int n = 0;
    script[n++] = (jpeg_scan_info){.comps_in_scan = 1, .Ss = 0, .Se = 0, .Ah = 0, .Al = 0};
    for (int k = 1; k <= 63; k++)
        for (int al = 9; al >= 0; al--)
            script[n++] = (jpeg_scan_info){.comps_in_scan = 1, .Ss = k, .Se = k,
                                           .Ah = al == 9 ? 0 : al + 1, .Al = al};
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    *out = NULL, *size = 0;
    jpeg_mem_dest(&c, out, size);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    c.scan_info = script;
    c.num_scans = scans < 1 ? 1 : scans > TJ_MAX_SCANS ? TJ_MAX_SCANS : scans;
    tj_encode_rows(&c, px, 1);
}

#endif
