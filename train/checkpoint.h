/* checkpoint.h - the whole training state in one file, written atomically.
 *
 * Layout (little-endian): "APBCKPT1", u32 header bytes, header text
 * ("key=value\n" lines: model config, training options, epoch, RNG state, best
 * accuracy, command line), then records {u32 name length, name, u64 bytes, data}
 * for every parameter, BN running statistics, prune mask and the optimizer
 * state, then u32 CRC-32 of everything before it. Every checkpoint also holds
 * the model's layer list as a graph record ("model.graph", graph.h): a model
 * of arch "graph" (imported) is rebuilt from it; the built-in architectures
 * are rebuilt by name, so checkpoints from before the record still load. Loading validates every
 * length and the CRC before touching the model: a truncated or corrupt file is
 * an error naming the file, never a crash.
 */
#ifndef APB_CHECKPOINT_H
#define APB_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "rng.h"

#define APB_CKPT_TEXT 8192

typedef struct {
    apb_model_cfg model;
    char train_opts[APB_CKPT_TEXT]; /* the training options, "key=value\n" lines */
    char cmdline[2048];
    int epoch;                      /* completed epochs */
    double best_acc;
    apb_rng rng;                    /* the trainer's RNG (dropout) */
    /* what export needs to preprocess and label like training did */
    char classes[65536];            /* class names separated by '|' */
    float mean[3], std[3];
    int resize_short;
    /* 1: tensors are named after the layers' structural names (builder.h);
     * 0: a checkpoint from before them, named after the counter names */
    int structural_names;
} apb_ckpt_meta;

/* Splits meta->classes into names[] (pointers into buf, a copy); returns the count. */
int apb_ckpt_class_names(const apb_ckpt_meta *meta, char *buf, size_t n, const char **names,
                         int max);

typedef struct {
    const char *name;
    size_t bytes;
    const void *data;
} apb_ckpt_blob;

/* Writes meta + the model tensors + extra blobs (optimizer state, ...) atomically. */
apb_status apb_ckpt_save(const char *path, const apb_ckpt_meta *meta, const apb_model *m,
                         const apb_ckpt_blob *extra, int nextra);

/* A loaded checkpoint: meta + all records, validated. */
typedef struct {
    apb_ckpt_meta meta;
    unsigned char *file;
    size_t size;
    int nrec;
    apb_ckpt_blob *rec;
    char path[1024];
} apb_ckpt;

apb_status apb_ckpt_load(const char *path, apb_ckpt *ck);
void apb_ckpt_free(apb_ckpt *ck);
const apb_ckpt_blob *apb_ckpt_find(const apb_ckpt *ck, const char *name);

/* Builds the checkpoint's model and fills every tensor from it. */
apb_status apb_ckpt_model(const apb_ckpt *ck, apb_model **out);
/* The record name of the graph record. */
#define APB_CKPT_GRAPH "model.graph"
/* Builds a fresh model (weights from `seed`) for a training run with model
 * configuration *cfg: a built-in architecture by name, or for arch "graph" the
 * graph record of `ck` (a resumed run's checkpoint) or else of the checkpoint at
 * `init_path` (--init). An empty cfg->arch means "the --init checkpoint's
 * model": its arch is copied into *cfg. A graph takes the input geometry and
 * classes it was made for: cfg's must be the same (an error names both). */
apb_status apb_ckpt_build_model(apb_model_cfg *cfg, uint64_t seed, const apb_ckpt *ck,
                                const char *init_path, apb_model **out);
/* Copies tensors into an existing model by name (structural names, or the
 * counter names of older checkpoints). `strict`: every model tensor must be
 * present (resume). Otherwise (--init) a tensor missing from the file keeps its
 * fresh value: quantizer parameters are then initialised from the weights, and
 * the names of layers whose weights or BN parameters stayed fresh are listed,
 * comma-separated, in `fresh` (may be NULL). A tensor of another size is an
 * error naming the layer and both element counts. */
apb_status apb_ckpt_fill_model(const apb_ckpt *ck, apb_model *m, int strict, char *fresh,
                               size_t fresh_n);

/* Header text helpers (also used for the training options). */
const char *apb_kv_get(const char *text, const char *key, char *buf, size_t n);

#endif
