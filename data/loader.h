/* loader.h - batches of transformed samples, decoded ahead on background threads.
 *
 * Determinism: sample i of epoch e gets its random choices from
 * apb_hash3(seed, e, i) and the epoch order from (seed, e) alone, so batches are
 * bit-identical whatever the thread count. Memory is bounded: a ring of three
 * batch buffers (one held by the caller, two being filled ahead); all worker
 * threads share the batches being filled, sample by sample.
 *
 * Undecodable files (folder datasets) are recorded (path + reason) and the
 * sample is replaced by the next decodable sample in dataset order, so batches
 * stay full. The library never prints; callers list apb_loader_bad_file().
 */
#ifndef APB_LOADER_H
#define APB_LOADER_H

#include <stdint.h>

#include "dataset.h"
#include "status.h"

typedef struct apb_loader apb_loader;

/* threads <= 0 uses apb_threads_get(). The transform is copied; ds must outlive
 * the loader. */
apb_status apb_loader_create(apb_dataset *ds, const apb_transform *t, int batch, int shuffle,
                             int drop_last, uint64_t seed, int threads, apb_loader **out);
/* Data-parallel training: from now on this loader serves process `rank`'s part
 * of every global batch of nranks * batch samples of the (seed, epoch) order,
 * the rank-th of nranks near-equal parts (exactly `batch` samples in a whole
 * global batch), so the samples of a global batch do not depend on nranks and
 * each process decodes only its own. Batches per epoch counts global batches.
 * Call before apb_loader_start_epoch; refused when some process would get no
 * sample (fewer than nranks samples, or than one global batch with drop_last). */
apb_status apb_loader_shard(apb_loader *ld, int rank, int nranks);
apb_status apb_loader_start_epoch(apb_loader *ld, int epoch);
/* The same, starting at batch `first` of the epoch (0 <= first <= batches per
 * epoch): the batches are those the epoch gives from there, so a run stopped
 * inside an epoch resumes with exactly the samples it had left. */
apb_status apb_loader_start_epoch_at(apb_loader *ld, int epoch, int first);
/* The current epoch's order: the dataset index at each position [*n]. */
const int *apb_loader_order(const apb_loader *ld, int *n);
/* Next batch: *n samples (0 at the end of the epoch); *x -> [n, C, H, W] floats,
 * *y -> [n] labels; valid until the next call. */
apb_status apb_loader_next(apb_loader *ld, const float **x, const int **y, int *n);
int apb_loader_batches_per_epoch(const apb_loader *ld);
/* Samples replaced because their file could not be decoded, in the batches
 * returned so far this epoch. */
int apb_loader_skipped(const apb_loader *ld);
/* Distinct undecodable files found since the loader was created, in order of
 * discovery; *path and *reason stay valid until apb_loader_free. */
int apb_loader_bad_count(const apb_loader *ld);
void apb_loader_bad_file(const apb_loader *ld, int i, const char **path, const char **reason);
/* 1 when the file of dataset sample `index` was found undecodable (so far). */
int apb_loader_is_bad(const apb_loader *ld, int index);
void apb_loader_free(apb_loader *ld);

#endif
