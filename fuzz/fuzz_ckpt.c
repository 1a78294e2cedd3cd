/* fuzz_ckpt.c - libFuzzer target for the checkpoint reader (train/checkpoint.c):
 * load, then build the model it describes and fill every tensor, read its
 * training options and class names, as apb eval / export / --resume do.
 *
 * Input: a flags byte (bit 0: repair the checksums first, so mutations reach
 * the structural checks behind them; tests/test_ckpt_util.h), the file (the
 * rest). Every input must load or fail with a message naming it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "test_ckpt_util.h"
#include "trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = size - 1;
    unsigned char *b = malloc(n ? n : 1);
    if (!b)
        return 0;
    memcpy(b, data + 1, n);
    if (data[0] & 1)
        tc_fix_crcs(b, n);
    apb_ckpt ck;
    apb_status s = apb_ckpt_load_memory(b, n, "fuzz-input", &ck);
    free(b);
    if (s != APB_OK) {
        if (!strstr(apb_errmsg(), "fuzz-input"))
            abort();
        return 0;
    }
    apb_model *m;
    if (apb_ckpt_model(&ck, &m) == APB_OK)
        apb_model_free(m);
    apb_train_cfg *c = malloc(sizeof *c);
    if (c) {
        apb_train_cfg_default(c);
        apb_train_cfg_from_text(ck.meta.train_opts, c);
        free(c);
    }
    static char buf[sizeof ck.meta.classes];
    static const char *names[1000];
    apb_ckpt_class_names(&ck.meta, buf, sizeof buf, names, 1000);
    apb_ckpt_free(&ck);
    return 0;
}
