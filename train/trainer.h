/* trainer.h - the training loop behind `apb train`, evaluation, and budget mode.
 *
 * One run = model + data + optimizer + schedule. State that a resumed run needs
 * (weights, quantizer parameters, BN statistics, masks, optimizer state, RNG,
 * epoch, options) goes into DIR/last.ckpt after every epoch, atomically, so
 * `--resume DIR` continues bit-identically (same seed, same thread count).
 */
#ifndef APB_TRAINER_H
#define APB_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "dataset.h"
#include "loader.h"
#include "model.h"

typedef struct {
    char data_spec[512];
    apb_model_cfg model;       /* arch, wq, aq, flags (geometry/classes filled from data) */
    int epochs, batch;
    float lr, wd, momentum;
    int optim;                 /* 0 sgd, 1 adam, 2 adamw */
    int nesterov;
    float quant_lr;            /* Adam lr of the alpha/delta/step group */
    float freeze_at;           /* fraction of epochs after which alpha/delta freeze */
    float budget_bits;         /* 0: off; else bits/weight over compressed layers */
    int budget_spread;         /* 0: relative error |(|w|-a)|/a across layers; 1: per layer equal fraction */
    int budget_alpha;          /* 0: alpha learned (--quant-lr, frozen at --freeze-at); 1: fit by the
                                * projection to mean |w| of the binarized weights (see apb_budget_project) */
    float budget_warmup;       /* budget mode: fraction of the run over which the full-precision
                                * set shrinks linearly from every APB weight to the budget's
                                * (0: off, the budget holds from the first step) */
    int bn_reestimate;         /* > 0: after every epoch with a frozen band (every epoch of an
                                * unquantized model), batchnorm statistics are recomputed as the
                                * mean over this many training batches in train mode, no update */
    float label_smoothing;
    float warmup;              /* epochs of linear warm-up */
    int img_size;              /* folder datasets: network input side (default 224) */
    int limit_train, limit_test;
    int val;                 /* training images held out for validation (0: none); best.ckpt
                                then follows validation accuracy instead of test accuracy */
    int threads;
    uint64_t seed;
    char init_ckpt[1024];
    char resume_dir[1024];
    int resume_epochs;         /* --resume: new total epochs, >= the run's (0 keeps the run's) */
    char out_dir[1024];
    int quiet;
    char cmdline[2048];
    /* Data-parallel runs (mpirun -np N, dist.h; docs/DISTRIBUTED.md). */
    int sync_bn;               /* batchnorm statistics over every process's batch (--sync-bn) */
    int procs;                 /* processes the run trains with: set by apb_train_run, stored
                                  in checkpoints when > 1; a resume needs the same number */
    /* Out, set when apb_train_run returns an error: err_shared, every process
     * returned it together (the caller may end normally; always 1 for one
     * process); 0, this process failed alone while the others wait in a
     * collective, and the caller must end the job (apb_dist_abort). err_print:
     * this process is the one to print the message (one message per job). */
    int err_shared, err_print;
} apb_train_cfg;

void apb_train_cfg_default(apb_train_cfg *c);
/* Serialize/parse the options stored in checkpoints (used by --resume). */
void apb_train_cfg_to_text(const apb_train_cfg *c, char *buf, size_t n);
apb_status apb_train_cfg_from_text(const char *text, apb_train_cfg *c);

/* Runs the whole training; final figures in *final_acc (test top-1, %) if non-NULL.
 * Every option is checked before out_dir is created, so a refused run leaves
 * nothing behind. A fresh run writes over whatever run out_dir holds (callers
 * that must not, like `apb train` without --force, ask apb_train_out_check
 * first), but never over its --init file. With resume_dir set, the options come
 * from DIR/last.ckpt (threads, quiet and a larger resume_epochs excepted).
 *
 * Under mpirun (apb_dist_size() > 1) every process calls it with the same
 * options: each trains on its part of every global batch (procs x batch
 * images), gradients are summed over processes in process order, and every
 * process takes the same optimizer step, so weights stay bit-identical (a
 * hash compared every epoch and at a stop says otherwise by name). Process 0
 * alone writes log.csv and the checkpoints, and reads --resume's checkpoint
 * for everyone; a stop is decided together at a step. */
apb_status apb_train_run(apb_train_cfg *cfg, double *final_acc);

/* APB_EINVAL naming `dir` and pointing to --resume / --force when it already
 * holds a run (last.ckpt, best.ckpt or log.csv). */
apb_status apb_train_out_check(const char *dir);

/* The options and progress of the run in dir (from dir/last.ckpt): *c as
 * apb_train_run would resume it, *epochs_done the finished epochs and *best_acc
 * the best test top-1 (%) so far. */
apb_status apb_train_load_run(const char *dir, apb_train_cfg *c, int *epochs_done,
                              double *best_acc);

/* The one range rule for a --budget-bits value, shared by `apb train` and
 * `apb report`: [1, 32) bits/weight. A model may need a little more than 1 (its
 * alpha and delta); apb_train_run checks that against the model it builds. */
apb_status apb_budget_bits_check(double budget_bits);

typedef struct {
    double loss, top1, top5; /* percentages for top1/top5 */
    int n;
} apb_eval_result;
/* Eval-mode pass over a loader (no tape, running BN statistics). */
apb_status apb_evaluate(apb_model *m, apb_loader *ld, apb_eval_result *r);

/* Budget mode: set every APB layer's delta so that exactly the budgeted number of
 * weights stays in full precision (ranking by relative distance | |w| - alpha | / alpha,
 * over all layers for spread 0, an equal fraction per layer for spread 1). With
 * fit != 0 alpha is set first: alpha = mean |w| over the weights that stay binarized
 * (alternating with the selection, two rounds), otherwise the learned alpha is kept.
 * Returns the bits/weight reached in *reached (may be NULL). */
apb_status apb_budget_project(apb_model *m, double budget_bits, int spread, int fit,
                              double *reached);

/* BN re-estimation (--bn-reestimate): every batchnorm's running statistics become
 * the mean of its batch statistics over the first n batches of `epoch` of the
 * loader, run forward in train mode (no gradient, no update) with the model as it
 * is; whatever finite values they held before do not matter. The loader is left
 * mid-epoch (its skip count restarts). share: --sync-bn's gather under mpirun
 * (batch statistics over every process's part), or NULL. */
apb_status apb_bn_reestimate(apb_model *m, apb_loader *ld, int epoch, int n, const apb_graph_share *share);

/* Opens train/test data for a spec and fills the model geometry from it. With
 * train set, batches are shuffled and the last partial batch is dropped, unless
 * the set is smaller than one batch: then each epoch is one batch of all of it.
 * nval > 0 splits the (limited) training split: nval images chosen by the data
 * and nval alone (apb_dataset_holdout with a fixed seed, so every seed and
 * method of a study validates on the same images) are the validation set,
 * visible when keep_val, the rest otherwise. */
apb_status apb_open_data_split(const char *spec, const char *split, int limit, int nval,
                               int keep_val, int img_size, int train, int batch, uint64_t seed,
                               int threads, apb_dataset **ds, apb_loader **ld, apb_transform *t);
/* The same for process `rank` of nranks (data-parallel training): the loader
 * serves that process's part of every global batch of nranks * batch images
 * (apb_loader_shard), and training drops the last partial global batch unless
 * the set is smaller than one. nranks 1 is apb_open_data_split. */
apb_status apb_open_data_shard(const char *spec, const char *split, int limit, int nval,
                               int keep_val, int img_size, int train, int batch, uint64_t seed,
                               int threads, int rank, int nranks, apb_dataset **ds,
                               apb_loader **ld, apb_transform *t);
apb_status apb_open_data(const char *spec, const char *split, int limit, int img_size, int train,
                         int batch, uint64_t seed, int threads, apb_dataset **ds, apb_loader **ld,
                         apb_transform *t);

/* Per-layer memory table (kind, weights, fp count, bits) and model totals. */
void apb_print_memory_table(FILE *f, const apb_model *m);

#endif
