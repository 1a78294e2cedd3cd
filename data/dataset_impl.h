/* dataset_impl.h - the dataset record shared by the readers in data/ (private).
 *
 * One struct covers both kinds: in-memory datasets keep planar uint8 pixels,
 * folder datasets keep a pool of paths. The readers (idx.c, cifar.c, folder.c)
 * fill it; dataset.c owns the public accessors and the sample path.
 */
#ifndef APB_DATASET_IMPL_H
#define APB_DATASET_IMPL_H

#include <stddef.h>

#include "dataset.h"

struct apb_dataset {
    char name[32];
    int n;                /* samples visible (after apb_dataset_limit / _holdout) */
    int *index;           /* NULL, or [n]: visible sample i is stored sample index[i] */
    int n_total;          /* samples read */
    int c, h, w;          /* native geometry; h = w = 0 for folder datasets */
    int num_classes;
    char **class_names;   /* [num_classes], malloc'd strings */
    unsigned char *pixels; /* in-memory: [n_total, c, h, w]; NULL for folders */
    int *labels;          /* [n_total] */
    char *pool;           /* folder: NUL-separated paths */
    size_t *path_off;     /* folder: [n_total] offsets into pool */
    float mean[3], std[3];
};

/* Allocates an empty dataset with `name` and the default normalization for it. */
apb_dataset *apb_dataset_alloc(const char *name);
/* Sets num_classes names "0", "1", ... */
apb_status apb_dataset_numeric_names(apb_dataset *ds, int num_classes);
/* Reads a class-name list (one per line, blank lines ignored) into names[want];
 * errors name the file. */
apb_status apb_dataset_read_names(apb_dataset *ds, const char *path, int want);

/* Readers: fill ds (already allocated with its name) for split "train"/"test". */
apb_status apb_idx_open(apb_dataset *ds, const char *dir, int train);
apb_status apb_cifar_open(apb_dataset *ds, const char *dir, int train, int hundred);
apb_status apb_folder_open(apb_dataset *ds, const char *dir, int train);

/* Sample `src` of ds transformed with random key `key` into out; *label set. */
apb_status apb_dataset_sample(apb_dataset *ds, const apb_transform *t, int src, uint64_t key,
                              float *out, int *label);

#endif
