/* fuzz_import.c - libFuzzer target for `apb import` (import/onnx.c over the
 * protobuf-c decoder generated from onnx.proto); fuzz/run.sh builds it with
 * clang -fsanitize=fuzzer,address,undefined.
 *
 * Every input must either import (and then run once on a zero image when the
 * model is small) or fail with a message naming the file and no model; any
 * crash, leak or UB report is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apb_model *m = NULL;
    if (apb_onnx_import(data, size, "fuzz-input", &m, NULL) != APB_OK) {
        if (m || !strstr(apb_errmsg(), "fuzz-input"))
            abort(); /* a failure must name the file and return no model */
        return 0;
    }
    long in = (long)m->cfg.in_c * m->cfg.in_h * m->cfg.in_w;
    apb_model_memory mem;
    apb_model_memory_stats(m, &mem, NULL, NULL);
    if (in <= 65536 && mem.weights <= (1 << 22)) {
        apb_arena a;
        apb_arena_init(&a, "step", 8 << 20);
        apb_graph g;
        apb_graph_init(&g, &a, 0, 0, NULL);
        float *x = calloc((size_t)in, sizeof *x);
        apb_var *y;
        if (x)
            apb_model_forward(m, &g, x, 1, &y);
        free(x);
        apb_graph_free(&g);
        apb_arena_free(&a);
    }
    apb_model_free(m);
    return 0;
}
