/* model.h - apb's network description: a list of layers wired through slots.
 *
 * One representation serves training (build the autograd graph by walking the
 * list), checkpoints (named parameters), evaluation (per-layer memory) and
 * export (translated 1:1 into the runtime's apbrt_model_desc). Every layer reads
 * slot `in` (and `in2` for ADD) and writes slot `out`; slot 0 is the input batch.
 *
 * Quantization lives on CONV/LINEAR layers: `wq` says how the weight is stored
 * (fp, APB, binary, 2-bit, pruned) and `aq` how the layer's INPUT is quantized
 * (fp, binary sign, 2-bit, 8-bit). First conv and last linear stay fp unless asked.
 */
#ifndef APB_MODEL_H
#define APB_MODEL_H

#include <stdint.h>

#include "autograd.h"
#include "ops.h"
#include "quant.h"
#include "rng.h"

typedef enum {
    APB_WQ_FP = 0, APB_WQ_APB, APB_WQ_BINARY, APB_WQ_Q2, APB_WQ_PRUNE,
    APB_WQ_PRUNE_BINARY       /* pruning + binarization: kept weights +-a, the rest 0 */
} apb_wquant;
typedef enum { APB_AQ_FP = 0, APB_AQ_BINARY, APB_AQ_Q2, APB_AQ_INT8 } apb_aquant;

typedef enum {
    APB_L_CONV = 1, APB_L_LINEAR, APB_L_BN, APB_L_RELU, APB_L_HARDTANH, APB_L_MAXPOOL,
    APB_L_AVGPOOL, APB_L_GAP, APB_L_FLATTEN, APB_L_ADD, APB_L_DROPOUT, APB_L_CLIP
} apb_layer_kind;

typedef struct {
    apb_layer_kind kind;
    int in, in2, out;
    char name[32];            /* structural or counter name (builder.h) */
    char legacy[32];          /* counter name, as checkpoints before structural names */
    /* CONV / LINEAR */
    int cin, cout, k, stride, pad;
    apb_wquant wq;            /* APB_WQ_FP for layers kept full precision */
    apb_aquant aq;            /* quantizer applied to this layer's input */
    int quantizable;          /* as asked of the builder: wq/aq are the model's when set, */
    int quant_input;          /* so a graph record (graph.h) rebuilds it for other cfgs */
    apb_var w, b;             /* w [cout, cin, k, k] or [cout, cin]; b [cout] (numel 0 = none) */
    apb_var alpha, delta;     /* APB: [1] or [cout] */
    apb_var wstep;            /* Q2 weights: [1] */
    apb_var astep;            /* Q2 / INT8 activations: [1] */
    int asigned;              /* INT8: signed codes (the input can be negative); set by
                                 apb_model_init_quant from the graph */
    float *mask;              /* PRUNE, PRUNE_BINARY: [numel(w)] 0/1 */
    int has_bias;
    /* BN */
    apb_var gamma, beta;
    float *rmean, *rvar;      /* [C] running statistics */
    apb_bn_state bn;
    int channels;
    /* pools / dropout / clip */
    int pk, pstride, ppad;
    float p;
    float lo, hi;             /* CLIP bounds (finite, lo < hi) */
} apb_layer;

typedef struct {
    char arch[32];            /* convnet, vgg-small, resnet20, resnet18, or "graph" (graph.h) */
    apb_wquant wq;
    apb_aquant aq;
    int quant_first, quant_last, fp_shortcut;
    int per_channel;          /* APB alpha/delta per output channel */
    int direct_alpha_grad;    /* APB: direct instead of published alpha estimator */
    int approx_sign;          /* binary activations: ApproxSign backward */
    int in_c, in_h, in_w, num_classes;
    float prune_sparsity;     /* target for APB_WQ_PRUNE and APB_WQ_PRUNE_BINARY */
    /* 0: no limit; else building fails, before allocating, once the parameters
     * would pass this many values: a file that describes a model (checkpoint
     * header) cannot make apb allocate more than the file could hold */
    int64_t max_params;
} apb_model_cfg;

typedef struct {
    apb_model_cfg cfg;
    apb_layer *layers;
    int nlayers, cap;
    int nslots;
    int out_slot;
    /* 0 (default): apb_model_forward runs a BN whose output only feeds the next
     * layer's ReLU as one bn_relu op (bitwise the same values and gradients, fewer
     * passes over memory); 1: as two ops. The layer list is the same either way. */
    int unfused;
    /* batchnorm running-statistics momentum of apb_model_forward (0: 0.1, the
     * default); the trainer's BN re-estimation sets 1/(k+1) for its k-th batch,
     * so the statistics become the plain mean over the batches it runs */
    float bn_momentum;
} apb_model;

/* Builds a built-in architecture (zoo.c; cfg->arch names it) with freshly
 * initialised parameters (He init from `seed`). Other descriptions go through
 * builder.h directly. */
apb_status apb_model_build(const apb_model_cfg *cfg, uint64_t seed, apb_model **out);
void apb_model_free(apb_model *m);

/* Forward pass: x [N, in_c, in_h, in_w] -> logits [N, classes]. A BN layer
 * followed by a ReLU that is the only reader of its output runs as one fused
 * op unless m->unfused; the BN's own slot then holds the ReLU output. */
apb_status apb_model_forward(apb_model *m, apb_graph *g, float *x, int n, apb_var **logits);

/* Every learnable tensor in a fixed order, with its role for parameter groups. */
typedef enum { APB_P_WEIGHT, APB_P_NODECAY, APB_P_QUANT } apb_param_role;
typedef struct {
    apb_var *var;
    apb_param_role role;
    apb_layer *layer;
} apb_param_ref;
int apb_model_params(apb_model *m, apb_param_ref *out, int max);

/* Initialise quantizer parameters from the current weights (alpha/delta, steps,
 * prune masks): called after building or after loading an fp checkpoint. An
 * 8-bit activation step is set to 0, which its op calibrates on the first batch
 * (quant.h apb_act_int8), and its signedness follows apb_model_slot_nonneg. */
apb_status apb_model_init_quant(apb_model *m);

/* 1 when every value of `slot` is >= 0 by construction: written by a ReLU or a
 * CLIP with lo >= 0, or by a pool, flatten, GAP or dropout of such a slot, or an
 * ADD of two. */
int apb_model_slot_nonneg(const apb_model *m, int slot);

/* Compressed = CONV/LINEAR whose weight is not stored in full precision. */
int apb_layer_compressed(const apb_layer *l);

/* Memory accounting (apb-method.md section 4). */
typedef struct {
    int64_t weights;          /* all conv/linear weights */
    int64_t cweights;         /* weights of compressed layers */
    int64_t fp_count;         /* full-precision weights inside compressed layers */
    double bits;              /* whole model, paper formula */
    double cbits;             /* compressed layers only, paper formula */
    double bits_per_weight;   /* cbits / cweights (0 when nothing is compressed) */
    double fp_fraction;       /* fp_count / cweights */
    int index_bits;
} apb_model_memory;
/* Per layer when `layer_bits` (nlayers entries) is non-NULL. */
void apb_model_memory_stats(const apb_model *m, apb_model_memory *mem, double *layer_bits,
                            int64_t *layer_fp);

/* The sparsity at which pruning + binarization (every compressed layer at the
 * same sparsity, as the trainer prunes) costs at most `budget` bits per
 * compressed weight, keeping as many weights as the budget allows. The
 * model's compressed layers are taken as APB_WQ_PRUNE_BINARY whatever their
 * quantizer. APB_EINVAL when no sparsity in (0, 1) is needed or enough. */
apb_status apb_prune_binary_sparsity(const apb_model *m, double budget, float *sparsity);

/* Effective weight Q(W) of a conv/linear layer as the training graph uses it
 * (eval mode), written to out [numel(w)]. */
apb_status apb_layer_effective_weight(apb_layer *l, const apb_model_cfg *cfg, float *out);

const char *apb_wquant_name(apb_wquant q);
const char *apb_aquant_name(apb_aquant q);
apb_status apb_wquant_parse(const char *s, apb_wquant *q, float *sparsity);
apb_status apb_aquant_parse(const char *s, apb_aquant *q);

#endif
