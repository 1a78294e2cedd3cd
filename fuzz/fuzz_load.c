/* fuzz_load.c - libFuzzer target for the .apb loader (not built by the Makefile;
 * fuzz/run.sh builds it with clang -fsanitize=fuzzer,address,undefined).
 *
 * Every input must either load (and then run on a zero image when it is small)
 * or fail with a message; any crash, leak or UB report is a bug. Each input is
 * tried as it is (the CRCs catch almost every mutation) and then with its CRCs
 * recomputed (tests/test_apb_crc.h), so that mutations reach the structural
 * checks behind them. The seeds are valid models written by fuzz/make_seeds.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"
#include "test_apb_crc.h"

/* Loads b [n] and, when it loads, runs it on a zero image if that is small. */
static void try_load(const unsigned char *b, size_t n)
{
    apbrt_model *m = NULL;
    if (apbrt_load_memory_named(b, n, "fuzz-input", &m) != 0) {
        if (m || !strstr(apbrt_errmsg(), "fuzz-input"))
            abort(); /* a failure must name the file and return no model */
        return;
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
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_load(data, size);
    /* and again with the CRCs made right, when that changes anything */
    unsigned char *b = malloc(size ? size : 1);
    if (!b)
        return 0;
    memcpy(b, data, size);
    ta_fix_crcs(b, size);
    if (memcmp(b, data, size) != 0)
        try_load(b, size);
    free(b);
    return 0;
}
