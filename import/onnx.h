/* onnx.h - ONNX models (as PyTorch exports them) into apb: `apb import`.
 *
 * The file is decoded by protobuf-c with C code that protoc-c generates at
 * build time from the onnx.proto of Debian's libonnx-dev (Makefile, $(BUILD)/gen);
 * this room only walks the decoded graph. Each supported node becomes one or
 * no layer of the builder (builder.h), so an imported network is an ordinary
 * layer list of arch "graph": its checkpoint carries the list as a graph record
 * (graph.h), and training, evaluation and export treat it like a built-in one.
 *
 * Supported (opsets 11 to 17): Conv (group 1, dilation 1, square kernel,
 * equal strides, symmetric padding, with or without bias), BatchNormalization
 * (inference mode), Relu, Clip (ReLU, hardtanh, ReLU6: any finite bounds), MaxPool,
 * AveragePool (floor mode; padding counted), GlobalAveragePool, Add of two
 * activations, Flatten and Reshape to [N, features], Gemm, MatMul (+ Add of a
 * bias), Identity, Dropout, Constant. Nodes whose outputs the graph output does
 * not need are skipped. Anything else is an error naming the node, its op type
 * and this list; a damaged file is an error naming the file.
 *
 * Quantization placement of an imported graph (docs/IMPORT.md): every conv and
 * linear is quantizable except the first conv(s) (reading the input) and the
 * linear writing the logits; a conv on a skip path (its output reaches an Add
 * through at most a BatchNormalization, and its input also feeds another conv:
 * a projection shortcut) keeps its input in full precision. graph.h turns these
 * flags into quantizers for a given training configuration.
 */
#ifndef APB_ONNX_H
#define APB_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    int64_t ir_version;
    int opset;             /* of the default domain */
    char producer[64];     /* "pytorch 1.13.1" */
    int nodes, skipped;    /* nodes in the graph, nodes no output needs */
    int layers;            /* apb layers made */
    int bn_kept;           /* BatchNormalization nodes (TrainingMode.PRESERVE exports) */
} apb_onnx_info;

/* Translates the ONNX file held in data[0..size) into a model of arch "graph"
 * (full precision, the graph's weights; input geometry and classes from its
 * input and output). `what` names the file in errors. info may be NULL. */
apb_status apb_onnx_import(const void *data, size_t size, const char *what, apb_model **out,
                           apb_onnx_info *info);

/* What `apb import` puts in the checkpoint beside the model. */
typedef struct {
    float mean[3], std[3];  /* input normalisation of [0,1] pixels (0 / 1: the input as it is) */
    int resize;             /* eval resize of the shorter side (0: none) */
    const char *labels;     /* class names, one per line (NULL: "0" ... "K-1") */
} apb_import_opts;

/* ONNX file -> checkpoint (written atomically). *model (if non-NULL) gets the
 * model, *info the figures. */
apb_status apb_import_onnx(const char *onnx_path, const apb_import_opts *o, const char *ckpt_path,
                           apb_model **model, apb_onnx_info *info);

#endif
