/* export.h - trained model -> runtime description (apbrt_model_desc) -> .apb file.
 *
 * The exporter translates the layer list 1:1: effective weights Q(W) are
 * computed with the very quantizer ops the training graph uses (eval mode), BN
 * layers become eval-mode scale/shift, dropout disappears, and activation slots
 * are re-assigned by liveness so the runtime keeps only the live buffers.
 */
#ifndef APB_EXPORT_H
#define APB_EXPORT_H

#include <stddef.h>

#include "apbrt_model.h"
#include "checkpoint.h"
#include "model.h"

typedef struct {
    apbrt_model_desc desc;
    apbrt_layer_desc *layers;
    float **bufs;   /* owned float buffers */
    int nbufs, capbufs;
    const char **names;
    char *namebuf;
} apb_export;

apb_status apb_export_build(apb_model *m, const char *const *class_names, int nclasses,
                            const float mean[3], const float std[3], int resize_short,
                            apb_export *ex);
void apb_export_free(apb_export *ex);

/* Opt-in approximation (`apb export --int8-stem`, issue 13): the first conv,
 * which must read the network input with FP32 weights, runs as an 8-bit
 * integer conv (apbrt_model.h S8D: a per-sample input step, weights quantized
 * per output row). Not what training computed: `apb info` names it, `apb infer
 * --data` gives its accuracy next to the exact one. */
apb_status apb_export_int8_stem(apb_export *ex);

/* Model built from `ck` (class names and preprocessing come from ck's meta) ->
 * .apb file, written atomically; *bytes gets the file size. */
apb_status apb_export_model(apb_model *m, const apb_ckpt *ck, const char *out_path, size_t *bytes);
/* The same with options: int8_stem as apb_export_int8_stem. */
apb_status apb_export_model_opt(apb_model *m, const apb_ckpt *ck, const char *out_path,
                                int int8_stem, size_t *bytes);
/* Same, building the model from the checkpoint. */
apb_status apb_export_ckpt(const apb_ckpt *ck, const char *out_path, size_t *bytes);

#endif
