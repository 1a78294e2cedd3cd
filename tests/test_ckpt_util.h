/* test_ckpt_util.h - checkpoint files for parser tests and fuzz seeds: a small
 * one written by apb_ckpt_save (a few named blobs, no model), the CRC repair
 * that lets mutations reach the checks behind the checksums, and the
 * conversion to the version-1 layout (which old runs have on disk).
 * Shared by tests/test_parsers_robust.c and fuzz/fuzz_ckpt.c.
 */
#ifndef APB_TEST_CKPT_UTIL_H
#define APB_TEST_CKPT_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "crc32.h"

/* A small valid checkpoint at `path`: a 1x4x4 convnet's header (2 classes,
 * stopped inside epoch 2), its first tensor and two more records; `in_h` sets
 * the header's input height (4 for the valid one). */
static inline apb_status tc_write_small_h(const char *path, int in_h)
{
    apb_ckpt_meta *meta = calloc(1, sizeof *meta);
    if (!meta)
        return APB_ENOMEM;
    snprintf(meta->model.arch, sizeof meta->model.arch, "convnet");
    meta->model.in_c = 1, meta->model.in_h = in_h, meta->model.in_w = 4;
    meta->model.num_classes = 2;
    meta->epoch = 1;
    meta->step = 3;
    meta->step_seen = 96;
    meta->step_correct = 40;
    meta->std[0] = meta->std[1] = meta->std[2] = 1;
    snprintf(meta->classes, sizeof meta->classes, "yes|no");
    snprintf(meta->train_opts, sizeof meta->train_opts, "data=fashion-mnist\nepochs=2\nbatch=32\n");
    static float w[32 * 9]; /* conv1.weight [32, 1, 3, 3] */
    int order[6] = {5, 3, 1, 0, 2, 4};
    unsigned char opt[24];
    for (int i = 0; i < 32 * 9; i++)
        w[i] = (float)(i % 9) - 4.5f;
    for (int i = 0; i < 24; i++)
        opt[i] = (unsigned char)(7 * i);
    apb_ckpt_blob b[3] = {{"conv1.weight", sizeof w, w}, {"optim.state", sizeof opt, opt},
                          {"loader.order", sizeof order, order}};
    apb_status s = apb_ckpt_save(path, meta, NULL, b, 3);
    free(meta);
    return s;
}

static inline apb_status tc_write_small(const char *path) { return tc_write_small_h(path, 4); }

static inline uint32_t tc_rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Recomputes the header CRC, every record's CRC and the trailer of a version-2
 * file, as far as its (possibly mutated) lengths still fit in n bytes. */
static inline void tc_fix_crcs(unsigned char *b, size_t n)
{
    if (n < 24 || memcmp(b, "APBCKPT2", 8) != 0)
        return;
    uint32_t hl = tc_rd32(b + 8);
    if (hl > n - 24)
        return;
    uint32_t c = apb_crc32(apb_crc32(0, b, 12), b + 16, hl);
    memcpy(b + 12, &c, 4);
    size_t off = 16 + (size_t)hl, end = n - 8;
    uint32_t nrec = 0;
    while (off < end && end - off >= 4) {
        uint32_t nl = tc_rd32(b + off);
        if (nl > end - off - 4 || end - off - 4 - nl < 12)
            break;
        uint64_t bytes;
        memcpy(&bytes, b + off + 4 + nl, 8);
        size_t data = off + 4 + nl + 12;
        if (bytes > end - data)
            break;
        c = apb_crc32(apb_crc32(0, b + off, 4 + (size_t)nl + 8), b + data, (size_t)bytes);
        memcpy(b + off + 4 + nl + 8, &c, 4);
        off = data + (size_t)bytes;
        nrec++;
    }
    memcpy(b + n - 8, &nrec, 4);
    c = apb_crc32(0, b, n - 4);
    memcpy(b + n - 4, &c, 4);
}

/* The same checkpoint in the version-1 layout (malloc'd into *out); 0 on success. */
static inline int tc_to_v1(const unsigned char *b, size_t n, unsigned char **out, size_t *outn)
{
    if (n < 24 || memcmp(b, "APBCKPT2", 8) != 0)
        return 1;
    unsigned char *o = malloc(n);
    if (!o)
        return 1;
    uint32_t hl = tc_rd32(b + 8);
    memcpy(o, "APBCKPT1", 8);
    memcpy(o + 8, &hl, 4);
    memcpy(o + 12, b + 16, hl);
    size_t w = 12 + hl, off = 16 + (size_t)hl, end = n - 8;
    while (off < end) {
        uint32_t nl = tc_rd32(b + off);
        uint64_t bytes;
        memcpy(&bytes, b + off + 4 + nl, 8);
        memcpy(o + w, b + off, 4 + (size_t)nl + 8); /* name length, name, byte count */
        w += 4 + (size_t)nl + 8;
        memcpy(o + w, b + off + 4 + nl + 12, (size_t)bytes);
        w += (size_t)bytes;
        off += 4 + (size_t)nl + 12 + (size_t)bytes;
    }
    uint32_t c = apb_crc32(0, o, w);
    memcpy(o + w, &c, 4);
    *out = o;
    *outn = w + 4;
    return 0;
}

#endif
