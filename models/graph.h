/* graph.h - a model's layer list as data: the graph record a checkpoint keeps,
 * and the one function that rebuilds a model from it through the builder.
 *
 * A model whose cfg.arch is "graph" (an imported network, docs/IMPORT.md) has
 * no description in the zoo: its checkpoint stores the layer list itself, and
 * training, evaluation and export rebuild it from there. The record is text,
 * one line per layer in execution order; layer i writes slot i + 1:
 *
 *     apb-graph 1
 *     conv name=conv1 in=0 cin=3 cout=64 k=7 stride=2 pad=3 bias=0 q=0 qi=0
 *     bn name=bn1 in=1 channels=64
 *     relu name=relu1 in=2
 *     maxpool name=maxpool1 in=3 k=3 stride=2 pad=1
 *     add name=add1 in=9 in2=4
 *     linear name=fc in=20 cin=512 cout=1000 bias=1 q=0 qi=0
 *     out=21
 *
 * Kinds: conv, linear, bn, relu, hardtanh, maxpool, avgpool, gap, flatten, add,
 * dropout (p=), clip (lo= hi=). q / qi are the builder's quantizable /
 * quant_input flags.
 *
 * Quantization placement when rebuilding for a configuration cfg (the zoo's
 * rules, stated on the graph's structure so they hold for any graph):
 *  - a conv reading the network input (slot 0) is quantized, weights and input,
 *    only with cfg.quant_first; the linear writing the logits only with
 *    cfg.quant_last;
 *  - a layer marked quantizable whose input is not quantized (a projection
 *    shortcut) stays full precision with cfg.fp_shortcut;
 *  - every other conv / linear as its q / qi say;
 *  - with quantized activations, a relu (or a clip with lo >= 0, ReLU6) whose
 *    output reaches a layer with a quantized input through pools (max,
 *    average, global average), flatten and dropout only becomes a hardtanh
 *    (the sign of a ReLU output would be constant).
 */
#ifndef APB_GRAPH_H
#define APB_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* The record of m's layer list: a malloc'd, NUL-terminated text (*len bytes
 * without the NUL). Fails for a list the builder did not make (out slots not
 * in order) or names that cannot be written (spaces, '=' or empty). */
apb_status apb_graph_write(const apb_model *m, char **text, size_t *len);

/* Builds the model the record text[0..len) describes for configuration cfg
 * (its input geometry and classes, its quantization; see the placement rules
 * above), with fresh weights from `seed`. Errors name `what` (the file) and the
 * line. Every value is range-checked: a damaged record is an error, never a
 * crash or an absurd allocation. */
apb_status apb_graph_build(const apb_model_cfg *cfg, const char *text, size_t len, const char *what,
                           uint64_t seed, apb_model **out);

#endif
