/* fuzz_image.c - libFuzzer target for image decoding (data/image.c: PNG through
 * libpng, JPEG through libjpeg, chosen by the bytes) and the preprocessing
 * that follows it in apb infer and the folder loader: gray 28x28 (stretch or
 * crop), RGB 32x32, and resize-shorter-side + center crop.
 *
 * Every input must decode and preprocess, or fail with a message naming it.
 * fuzz/run.sh builds this target with a lower pixel cap (APB_IMAGE_MAX_PIXELS)
 * so that headers declaring huge images cost little; the cap's own check is the
 * same code at any value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *rgb;
    int w, h;
    if (apb_image_decode(data, size, "fuzz-input", &rgb, &w, &h) != APB_OK) {
        if (!strstr(apb_errmsg(), "fuzz-input"))
            abort();
        return 0;
    }
    static float out[3 * 32 * 32];
    for (int k = 0; k < 3; k++) {
        apb_transform t;
        memset(&t, 0, sizeof t);
        t.out_c = k ? 3 : 1;
        t.out_h = t.out_w = k ? 32 : 28;
        t.center_crop = 1;
        t.resize_short = k == 2 ? 36 : 0;
        for (int c = 0; c < 3; c++)
            t.mean[c] = 0.5f, t.std[c] = 0.25f;
        if (apb_image_preprocess(rgb, w, h, &t, out) != APB_OK)
            abort(); /* a decoded image always preprocesses */
    }
    free(rgb);
    return 0;
}
