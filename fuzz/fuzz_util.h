/* fuzz_util.h - what the file-reading fuzz targets share: a private scratch
 * directory (the readers take paths, as users give them) and writing an input's
 * pieces into it. */
#ifndef APB_FUZZ_UTIL_H
#define APB_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A directory of this process under $TMPDIR (or /tmp), made on first use. */
static inline const char *fz_dir(void)
{
    static char dir[512];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/apb-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir))
            abort();
    }
    return dir;
}

/* Writes b [n] to fz_dir()/name (or removes it when b is NULL). */
static inline void fz_put(const char *name, const void *b, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fz_dir(), name);
    unlink(path);
    if (!b)
        return;
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(b, 1, n, f) != n) || fclose(f) != 0)
        abort();
}

/* A little-endian u16 from the input, or 0 past its end. */
static inline size_t fz_u16(const unsigned char *d, size_t size, size_t at)
{
    return at + 1 < size ? (size_t)d[at] | (size_t)d[at + 1] << 8 : 0;
}

#endif
