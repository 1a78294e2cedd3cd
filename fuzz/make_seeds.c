/* make_seeds.c - writes a few valid .apb models (every weight and activation
 * kind, residual wiring, pooling) as the seed corpus for fuzz_load.c. */
#include <stdio.h>
#include <stdlib.h>

#include "apbrt_model.h"
#include "test_infer_util.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    apb_rng r;
    apb_rng_seed(&r, 1);
    char path[1024];
    ti_model t;
    ti_convnet(&t, &r, 3, 8, 10);
    snprintf(path, sizeof path, "%s/convnet.apb", argv[1]);
    if (apbrt_save(&t.d, path) != APB_OK)
        goto fail;
    ti_free(&t);
    for (int w = 0; w < 3; w++)
        for (int a = 0; a < 3; a++) {
            ti_init(&t, 5, 6, 6, 4, 4);
            ti_conv(&t, &r, APBRT_CONV, 0, 1, 5, 6, 3, 2, 1, w, a, 1, 0.1f);
            ti_add(&t, APBRT_GAP, 1, 2);
            ti_conv(&t, &r, APBRT_LINEAR, 2, 3, 6, 4, 1, 1, 0, APBRT_W_FP32, APBRT_A_FP, 1, 0);
            t.d.output_slot = 3;
            snprintf(path, sizeof path, "%s/kind_w%d_a%d.apb", argv[1], w, a);
            if (apbrt_save(&t.d, path) != APB_OK)
                goto fail;
            ti_free(&t);
        }
    return 0;
fail:
    fprintf(stderr, "make_seeds: %s\n", apb_errmsg());
    return 1;
}
