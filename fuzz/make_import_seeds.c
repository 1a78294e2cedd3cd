/* make_import_seeds.c - writes valid ONNX models (the residual CNN of the
 * import tests: BN kept and folded, Gemm and MatMul + Add classifiers) as the
 * seed corpus for fuzz_import.c. */
#include <stdio.h>
#include <stdlib.h>

#include "fileio.h"
#include "onnx_util.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_import_seeds DIR\n");
        return 2;
    }
    for (int variant = 0; variant < 2; variant++)
        for (int folded = 0; folded < 2; folded++) {
            tnet t;
            tnet_resnet(&t, 3, 8, 8, 4, variant, 1 + (uint64_t)variant);
            if (folded)
                tnet_fold_bn(&t);
            unsigned char *buf;
            size_t len;
            tnet_onnx(&t, NULL, NULL, &buf, &len);
            char path[1024];
            snprintf(path, sizeof path, "%s/resnet_v%d_%s.onnx", argv[1], variant, folded ? "folded" : "bn");
            apb_status s = apb_file_write_atomic(path, buf, len);
            free(buf);
            tnet_free(&t);
            if (s) {
                fprintf(stderr, "make_import_seeds: %s\n", apb_errmsg());
                return 1;
            }
        }
    return 0;
}
