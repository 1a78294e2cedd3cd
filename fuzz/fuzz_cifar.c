/* fuzz_cifar.c - libFuzzer target for the CIFAR-10 / CIFAR-100 binary reader
 * (data/cifar.c) and its class-name lists, through apb_dataset_open.
 *
 * Input: a flags byte (bit 0: CIFAR-100), u16 length L of the class-name list
 * (0: no list), the list [L], the test split's .bin file (the rest). Every
 * input must open or fail with a message naming a file.
 */
#include <stdint.h>

#include "dataset.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int hundred = data[0] & 1;
    size_t len = fz_u16(data, size, 1), rest = size - 3;
    if (len > rest)
        len = rest;
    fz_put("test_batch.bin", hundred ? NULL : data + 3 + len, rest - len);
    fz_put("test.bin", hundred ? data + 3 + len : NULL, rest - len);
    fz_put("batches.meta.txt", !hundred && len ? data + 3 : NULL, len);
    fz_put("fine_label_names.txt", hundred && len ? data + 3 : NULL, len);
    char spec[600];
    snprintf(spec, sizeof spec, "%s:%s", hundred ? "cifar100" : "cifar10", fz_dir());
    apb_dataset *ds;
    if (apb_dataset_open(spec, "test", &ds) != APB_OK) {
        if (!strstr(apb_errmsg(), fz_dir()))
            abort();
        return 0;
    }
    for (int c = 0; c < apb_dataset_num_classes(ds); c++)
        if (!apb_dataset_class_name(ds, c))
            abort();
    apb_dataset_free(ds);
    return 0;
}
