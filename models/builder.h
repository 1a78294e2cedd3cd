/* builder.h - builds a model's layer list from a description, one call a layer.
 *
 * Every network apb trains goes through this: the built-in zoo (zoo.c) and,
 * later, graphs imported from other frameworks. A builder hands out slots:
 * each call reads slot(s) produced by earlier calls (slot 0 = the input batch)
 * and returns the slot it writes, or 0 once an error is recorded; after the
 * first error every call is a no-op, so a description is written straight,
 * without a check after each line, and apb_builder_finish reports it.
 *
 * Names: a parameterised layer is named `scope + name` when `name` is given
 * (scope from apb_builder_scope, e.g. "layer2.1."), else after its kind and a
 * per-kind counter ("conv3", "bn5", "relu2"). Checkpoint tensors are
 * "<layer name>.<tensor>", so structural names ("layer2.1.conv1.weight") let a
 * checkpoint move between variants of one architecture whose layer lists differ
 * (fp and Bi-Real ResNet blocks). Every layer also keeps its counter name in
 * `legacy`, the names checkpoints were written with before structural names.
 *
 * Weights are He-initialised (normal, sd sqrt(2 / fan_in)) from the builder's
 * RNG in call order, BN gets gamma 1, beta 0 and running statistics (0, 1).
 */
#ifndef APB_BUILDER_H
#define APB_BUILDER_H

#include <stdint.h>

#include "model.h"

typedef struct {
    apb_model *m;
    apb_rng rng;
    apb_status err;           /* first error, or APB_OK */
    int counter[16];          /* per layer kind, for counter names */
    char scope[32];           /* prefix of structural names */
    int no_init;              /* 1: weights stay zero, the caller sets every one (an import) */
    int64_t nparams;          /* parameter values so far (cfg.max_params) */
} apb_builder;

/* Starts an empty model with configuration `cfg` (copied); weights from `seed`. */
apb_status apb_builder_begin(apb_builder *b, const apb_model_cfg *cfg, uint64_t seed);
/* Records an error (the first one wins) and returns it; for descriptions that
 * check their own preconditions. */
apb_status apb_builder_error(apb_builder *b, apb_status s);
/* Sets the scope of the following structural names ("" to clear). */
void apb_builder_scope(apb_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ends the list: `out_slot` holds the logits. Initialises quantizer parameters
 * from the weights. On error the model is freed and *out is NULL. */
apb_status apb_builder_finish(apb_builder *b, int out_slot, apb_model **out);

/* quantizable: the layer's weight takes the model's weight quantization;
 * quant_input: its input takes the model's activation quantization. */
int apb_build_conv(apb_builder *b, const char *name, int in, int cin, int cout, int k, int stride,
                   int pad, int quantizable, int quant_input, int bias);
int apb_build_linear(apb_builder *b, const char *name, int in, int cin, int cout, int quantizable,
                     int bias);
int apb_build_bn(apb_builder *b, const char *name, int in, int channels);
/* RELU, HARDTANH, FLATTEN, GAP: layers with no parameters or attributes. */
int apb_build_simple(apb_builder *b, const char *name, apb_layer_kind kind, int in);
/* MAXPOOL or AVGPOOL, k x k window. */
int apb_build_pool(apb_builder *b, const char *name, apb_layer_kind kind, int in, int k, int stride,
                   int pad);
int apb_build_add(apb_builder *b, const char *name, int x, int y);
/* Clamp to [lo, hi], finite bounds with lo < hi (ReLU6: 0, 6). */
int apb_build_clip(apb_builder *b, const char *name, int in, float lo, float hi);
/* Dropout with drop probability p in [0, 1) (the identity in eval mode). */
int apb_build_dropout(apb_builder *b, const char *name, int in, float p);
/* The non-linearity in front of a layer: hardtanh when that layer quantizes its
 * input to 1 or 2 bits (sgn of a ReLU output would be constant), ReLU otherwise
 * (8-bit codes keep a ReLU output's range: they are unsigned there). */
int apb_build_act(apb_builder *b, const char *name, int in, int next_quantizes);

#endif
