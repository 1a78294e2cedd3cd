/* cifar.c - CIFAR-10 / CIFAR-100 "binary version" files read into memory.
 *
 * CIFAR-10 records: 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32,
 * row-major), 10000 per file: data_batch_1..5.bin (train), test_batch.bin
 * (test), class names in batches.meta.txt. CIFAR-100 records: coarse label byte,
 * fine label byte, 3072 pixel bytes, in train.bin / test.bin; apb uses the fine
 * labels (names from fine_label_names.txt when present). The pixel planes are
 * exactly apb's planar [3, 32, 32] layout, so records are copied as they are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset_impl.h"

#define CIFAR_PIX 3072

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Appends the records of one file to ds (pixels and labels grown as needed). */
static apb_status read_batch(apb_dataset *ds, const char *path, int hundred, long *cap)
{
    const int rec = CIFAR_PIX + (hundred ? 2 : 1);
    const int ncls = hundred ? 100 : 10;
    FILE *f = fopen(path, "rb");
    if (!f)
        return apb_fail(APB_EIO, "%s: cannot open", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return apb_fail(APB_EIO, "%s: cannot stat", path);
    }
    long size = (long)st.st_size;
    if (size == 0 || size % rec != 0) {
        fclose(f);
        return apb_fail(APB_EFORMAT,
                        "%s: size %ld bytes is not a positive multiple of the %d-byte %s record (truncated, or not the binary version?)",
                        path, size, rec, hundred ? "CIFAR-100" : "CIFAR-10");
    }
    long nrec = size / rec;
    if (ds->n_total + nrec > 10L * 1000 * 1000) {
        fclose(f);
        return apb_fail(APB_EFORMAT, "%s: too many records (%ld)", path, nrec);
    }
    long need = ds->n_total + nrec;
    if (need > *cap) {
        long nc = need > 2 * *cap ? need : 2 * *cap;
        unsigned char *p = realloc(ds->pixels, (size_t)nc * CIFAR_PIX);
        if (!p) {
            fclose(f);
            return apb_fail(APB_ENOMEM, "%s: out of memory for %ld images", path, nc);
        }
        ds->pixels = p;
        int *l = realloc(ds->labels, sizeof(int) * (size_t)nc);
        if (!l) {
            fclose(f);
            return apb_fail(APB_ENOMEM, "%s: out of memory for %ld labels", path, nc);
        }
        ds->labels = l;
        *cap = nc;
    }
    unsigned char *buf = malloc((size_t)rec * 256);
    if (!buf) {
        fclose(f);
        return apb_fail(APB_ENOMEM, "%s: out of memory", path);
    }
    apb_status s = APB_OK;
    for (long r0 = 0; r0 < nrec && s == APB_OK; r0 += 256) {
        long k = nrec - r0 < 256 ? nrec - r0 : 256;
        if (fread(buf, (size_t)rec, (size_t)k, f) != (size_t)k) {
            s = apb_fail(APB_EIO, "%s: read failed at record %ld", path, r0);
            break;
        }
        for (long j = 0; j < k; j++) {
            const unsigned char *p = buf + j * rec;
            int label = hundred ? p[1] : p[0];
            if (hundred && p[0] >= 20) {
                s = apb_fail(APB_EFORMAT, "%s: record %ld has coarse label %d, expected 0..19",
                             path, r0 + j, p[0]);
                break;
            }
            if (label >= ncls) {
                s = apb_fail(APB_EFORMAT, "%s: record %ld has label %d, expected 0..%d", path,
                             r0 + j, label, ncls - 1);
                break;
            }
            long idx = ds->n_total + r0 + j;
            ds->labels[idx] = label;
            memcpy(ds->pixels + (size_t)idx * CIFAR_PIX, p + rec - CIFAR_PIX, CIFAR_PIX);
        }
    }
    free(buf);
    fclose(f);
    if (s == APB_OK)
        ds->n_total += (int)nrec;
    return s;
}

apb_status apb_cifar_open(apb_dataset *ds, const char *dir, int train, int hundred)
{
    const char *sub = hundred ? "cifar-100-binary" : "cifar-10-batches-bin";
    const char *probe = hundred ? (train ? "train.bin" : "test.bin")
                                : (train ? "data_batch_1.bin" : "test_batch.bin");
    char base[1024], path[1100];
    snprintf(base, sizeof base, "%s", dir);
    snprintf(path, sizeof path, "%s/%s", base, probe);
    if (!is_file(path)) {
        char alt[1100];
        snprintf(alt, sizeof alt, "%s/%s/%s", dir, sub, probe);
        if (!is_file(alt))
            return apb_fail(APB_EIO, "%s: not found (%s expects the binary version's files in %s or %s/%s)",
                            path, ds->name, dir, dir, sub);
        snprintf(base, sizeof base, "%s/%s", dir, sub);
    }
    ds->c = 3, ds->h = 32, ds->w = 32;
    long cap = 0;
    if (hundred) {
        snprintf(path, sizeof path, "%s/%s", base, probe);
        APB_TRY(read_batch(ds, path, 1, &cap));
    } else if (train) {
        for (int b = 1; b <= 5; b++) {
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", base, b);
            if (!is_file(path))
                return apb_fail(APB_EIO, "%s: not found (CIFAR-10 train needs data_batch_1.bin .. data_batch_5.bin)",
                                path);
            APB_TRY(read_batch(ds, path, 0, &cap));
        }
    } else {
        snprintf(path, sizeof path, "%s/test_batch.bin", base);
        APB_TRY(read_batch(ds, path, 0, &cap));
    }
    snprintf(path, sizeof path, "%s/%s", base, hundred ? "fine_label_names.txt" : "batches.meta.txt");
    if (is_file(path))
        return apb_dataset_read_names(ds, path, hundred ? 100 : 10);
    return apb_dataset_numeric_names(ds, hundred ? 100 : 10);
}
