/* checkpoint.h - the whole training state in one file, written atomically.
 *
 * Layout (little-endian), version 2 ("APBCKPT2"), every section checked on load:
 *   "APBCKPT2", u32 header bytes H, u32 CRC-32 of the 12 bytes before it and
 *   the header text, header text ("key=value\n" lines: model config, training
 *   options, epoch, the position inside an epoch, RNG state, best accuracy,
 *   command line);
 *   records {u32 name length, name, u64 data bytes, u32 CRC-32 of the three
 *   fields before it and the data, data} for every parameter, BN running
 *   statistics, prune mask, the optimizer state (and, for a run stopped inside
 *   an epoch, the loader's order of that epoch);
 *   trailer: u32 record count, u32 CRC-32 of everything before it.
 * Loading checks the header's and every record's length and checksum, then the
 * count and the whole-file CRC, before touching the model: a truncated file or
 * a flipped bit is an error naming the file and the section (header, record
 * name, trailer), never a crash and never silently wrong weights.
 * Version 1 ("APBCKPT1": header, records without CRCs, one CRC-32 over the
 * file) still loads; the writer always writes version 2. docs/RELIABILITY.md.
 * Every checkpoint also holds the model's layer list as a graph record
 * ("model.graph", graph.h): a model of arch "graph" (imported) is rebuilt from
 * it; the built-in architectures are rebuilt by name, so checkpoints from
 * before the record still load.
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
    /* A run stopped inside an epoch (apb train on SIGINT / SIGTERM): `step`
     * batches of epoch `epoch` + 1 are done (0: none, the usual end-of-epoch
     * checkpoint), with the sums of that epoch's log row so far. */
    int step;
    double step_loss;           /* sum of batch loss * batch size */
    long step_correct, step_seen;
    double step_seconds;        /* training time of those batches */
} apb_ckpt_meta;

/* Splits meta->classes into names[] (pointers into buf, a copy); returns the count. */
int apb_ckpt_class_names(const apb_ckpt_meta *meta, char *buf, size_t n, const char **names,
                         int max);

typedef struct {
    const char *name;
    size_t bytes;
    const void *data;
} apb_ckpt_blob;

/* Writes meta + the model tensors + extra blobs (optimizer state, ...) atomically.
 * m may be NULL: then only the blobs (small files for parser tests and seeds). */
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
/* The same from bytes in memory (copied); `path` names them in messages. */
apb_status apb_ckpt_load_memory(const void *data, size_t size, const char *path, apb_ckpt *ck);
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
