/* fuzz_load.c - libFuzzer target for the .apb loader (not built by the Makefile;
 * fuzz/run.sh builds it with clang -fsanitize=fuzzer,address,undefined).
 *
 * Every input must either load (and then run on a zero image when it is small)
 * or fail with a message; any crash, leak or UB report is a bug. With
 * APB_FUZZ_SEED_DIR set, the first call writes valid seed models there instead.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apbrt_model *m = NULL;
    if (apbrt_load_memory_named(data, size, "fuzz-input", &m) != 0) {
        if (m || !strstr(apbrt_errmsg(), "fuzz-input"))
            abort(); /* a failure must name the file and return no model */
        return 0;
    }
    int c, h, w;
    apbrt_input_shape(m, &c, &h, &w);
    long in = (long)c * h * w;
    if (in <= 65536) {
        float *x = calloc((size_t)in, sizeof *x);
        float *lg = calloc((size_t)apbrt_num_classes(m), sizeof *lg);
        if (x && lg)
            apbrt_run(m, x, 1, lg);
        free(x);
        free(lg);
    }
    apbrt_free(m);
    return 0;
}
