/* apbrt_model.h - the in-memory description of an inference model, and the writer
 * that packs it into a .apb file (docs/FORMAT.md).
 *
 * Producers: the exporter (train/, from a trained model) and `apb bench --model`
 * (a random model). The description points at caller-owned arrays; nothing here
 * allocates beyond the output buffer of apbrt_serialize(). The runtime
 * (apbrt.h) never sees this struct: it only reads files/buffers, so a deployed
 * program needs no training code.
 *
 * Semantics (must match the training graph in eval mode):
 *  - layers run in order; slot 0 holds the normalized input [N, in_c, in_h, in_w];
 *  - CONV is cross-correlation with zero padding of the QUANTIZED input: padded
 *    positions contribute exactly 0 whatever the activation kind;
 *  - input quantizers: BIN sgn(x) (sgn(0) = +1) -> +-1; Q2 code
 *    l = clamp(floor(x / s) + 2, 0, 3), value (l - 3/2) * s; U8 / S8 code
 *    apb_i8_code(x, 1.0f / s) (kernels/i8gemm.h: x * (1/s) rounded to nearest,
 *    ties to even, clamped to 0..255 / -128..127), value code * s;
 *  - CONV / LINEAR output = sum(Q * act(x)) + bias; LINEAR flattens its input;
 *  - BN y = scale[c] * x + shift[c]; MAXPOOL pads with -inf; AVGPOOL counts the
 *    padding (divides by k*k); GAP averages over H*W; ADD is elementwise;
 *    CLIP clamps to [lo, hi] (HARDTANH is CLIP to [-1, 1]).
 */
#ifndef APBRT_MODEL_H
#define APBRT_MODEL_H

#include <stddef.h>

#include "status.h"

enum {
    APBRT_CONV = 1,
    APBRT_LINEAR,
    APBRT_BN,
    APBRT_RELU,
    APBRT_HARDTANH,
    APBRT_MAXPOOL,
    APBRT_AVGPOOL,
    APBRT_GAP,
    APBRT_FLATTEN,
    APBRT_ADD,
    APBRT_CLIP
};
enum { APBRT_W_FP32 = 0, APBRT_W_APB, APBRT_W_Q2 }; /* weight storage */
/* how the layer's INPUT is quantized; U8 / S8: 8-bit codes, unsigned (the input
 * cannot be negative) or signed (format version 2 only). S8D (version 3 only): an
 * APPROXIMATE 8-bit conv that training never computed, written only on request
 * (`apb export --int8-stem`): the sample's whole input is quantized with its own
 * step s = max|x| / 127 (1 when the input is all zero), codes apb_i8_code(x, 1/s,
 * signed), and the FP32 weights per output row with sw = max|W_row| / 127 (1 for
 * a zero row), w8 = apb_i8_code(W, 1/sw, signed); the output is
 * (sw * s) * (sum w8 * code) + bias. FP32 weights and CONV only. A runtime can
 * run it as the FP32 conv it came from (apbrt_set_exact). */
enum { APBRT_A_FP = 0, APBRT_A_BIN, APBRT_A_Q2, APBRT_A_U8, APBRT_A_S8, APBRT_A_S8D };
/* How training compressed a layer's weights, for the memory accounting only
 * (docs/FORMAT.md "Size accounting"): binary weights are stored as APB without
 * outliers, pruned (and pruned + binarized) ones as FP32 with zeros, so the
 * storage kind alone cannot tell. APBRT_C_STORED (0): as the storage kind says
 * (files of version 1). */
enum {
    APBRT_C_STORED = 0, APBRT_C_APB, APBRT_C_BINARY, APBRT_C_Q2, APBRT_C_PRUNED,
    APBRT_C_PRUNE_BINARY
};

typedef struct {
    int kind;
    int in, in2, out; /* activation slots (slot 0 holds the normalized network input); in2 for ADD */
    /* CONV / LINEAR (LINEAR: input [N,cin] (flattened), kh=kw=1, stride 1, pad 0) */
    int cin, cout, kh, kw, stride, pad;
    int wkind, akind;
    float act_step;      /* APBRT_A_Q2: step s, levels {-3/2,-1/2,1/2,3/2}*s, l = clamp(floor(x/s)+2,0,3);
                            APBRT_A_U8 / S8: step s, values code * s */
    const float *weight; /* [cout, cin*kh*kw] the EFFECTIVE weight Q(W) the training graph multiplies with */
    const float *alpha;  /* APBRT_W_APB: [cout] binarization scale per output row; the file stores
                            B = sgn(Q) (sgn(0)=+1) and the sparse residual R = Q - alpha*B */
    float wstep;         /* APBRT_W_Q2: Q has values in {-3/2,-1/2,1/2,3/2}*wstep */
    const float *bias;   /* [cout] or NULL */
    /* BN (eval mode, folded by the exporter): y = scale[c]*x + shift[c] */
    const float *scale, *shift; /* [channels] */
    int channels;
    /* MAXPOOL / AVGPOOL (avg: count_include_pad) */
    int k, pstride, ppad;
    /* CONV / LINEAR, accounting only: APBRT_C_*, the weights a pruned layer keeps,
     * and the number of scales (alpha, with delta for APB) training learned: 1 or
     * cout (APB, binary, pruned + binarized) */
    int compression;
    long kept;
    int scales;
    /* CLIP: y = min(max(x, lo), hi), finite, lo < hi */
    float lo, hi;
} apbrt_layer_desc;

typedef struct {
    int in_c, in_h, in_w;             /* network input geometry */
    float mean[3], std[3];            /* input normalization ([0,1] pixels) */
    int resize_short;                 /* eval preprocessing: resize shorter side (0 = none), then center crop */
    int num_classes;
    const char *const *class_names;   /* [num_classes] */
    int nslots, nlayers, output_slot; /* output slot holds the logits [N, num_classes] */
    const apbrt_layer_desc *layers;   /* [nlayers] */
    const char *model_name;           /* "convnet", "resnet18", ... */
} apbrt_model_desc;

/* Packs `d` into a malloc'd buffer (*buf, *size; caller frees). Validates the
 * description (shapes, slots, APB/Q2 weights representable) and fails with a
 * message naming the layer otherwise. */
apb_status apbrt_serialize(const apbrt_model_desc *d, unsigned char **buf, size_t *size);

/* apbrt_serialize + atomic write (temp file + rename): a failure never leaves a
 * half-written model at `path`. */
apb_status apbrt_save(const apbrt_model_desc *d, const char *path);

#endif
