/* fuzz_idx.c - libFuzzer target for the IDX reader (data/idx.c) through
 * apb_dataset_open("mnist:DIR", "train"), raw or gzip alike (zlib's gzread
 * tells them apart by their bytes).
 *
 * Input: u16 length L of the images file, the images file [L], the labels
 * file (the rest). Every input must open or fail with a message naming one of
 * the two files; a crash, leak or UB report is a bug.
 */
#include <stdint.h>

#include "dataset.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = fz_u16(data, size, 0), rest = size > 2 ? size - 2 : 0;
    if (len > rest)
        len = rest;
    fz_put("train-images-idx3-ubyte", data + 2, len);
    fz_put("train-labels-idx1-ubyte", data + 2 + len, rest - len);
    char spec[600];
    snprintf(spec, sizeof spec, "mnist:%s", fz_dir());
    apb_dataset *ds;
    if (apb_dataset_open(spec, "train", &ds) != APB_OK) {
        if (!strstr(apb_errmsg(), fz_dir()))
            abort(); /* a failure must name the file */
        return 0;
    }
    if (apb_dataset_size(ds) < 1 || !apb_dataset_pixels(ds, apb_dataset_size(ds) - 1))
        abort();
    apb_dataset_free(ds);
    return 0;
}
