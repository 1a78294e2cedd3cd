/* report.h - the accuracy / memory trade-off behind `apb report` (issue 7).
 *
 * One sweep = one model, one data set, one schedule, several ways to compress:
 * full precision (trained from scratch), then, each initialised from that fp
 * checkpoint (train FP, then compress, as APB is meant to be used): plain binary,
 * 2-bit weights, magnitude pruning at several sparsities, APB at several budgets
 * (bits/weight over the compressed layers) and APB with binary activations.
 * Every point trains into its own directory OUT/<point>/ (further seeds of it:
 * OUT/<point>-seed<S>/) through apb_train_run,
 * so an interrupted report continues where it stopped: a point whose last.ckpt
 * has all epochs is reused as is, one with fewer epochs is resumed.
 *
 * For every point the report measures test accuracy (mean and standard deviation
 * over seeds with --seeds N), bits per weight by the
 * paper formula (apb-method.md section 4), whole-model bits, the size of the
 * exported .apb file (OUT/<point>/model.apb) and the runtime's batch-1 latency,
 * and writes OUT/tradeoff.csv, OUT/tradeoff.md and OUT/tradeoff.png.
 *
 * Usage:
 *     apb_report_cfg c;
 *     apb_report_cfg_default(&c);              // all methods, budgets 1.1,1.3,1.6
 *     snprintf(c.out_dir, sizeof c.out_dir, "runs/sweep");
 *     c.methods = APB_REPORT_FP | APB_REPORT_APB;
 *     apb_report r;
 *     APB_TRY(apb_report_run(&c, &r));         // trains, exports, measures, writes files
 *     ... r.points[i].test_acc ...
 *     apb_report_free(&r);
 */
#ifndef APB_REPORT_H
#define APB_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

/* Methods (bit flags for apb_report_cfg.methods). The fp point is trained whenever
 * any other method is asked for, because every compressed point starts from it. */
enum {
    APB_REPORT_FP = 1 << 0,
    APB_REPORT_BINARY = 1 << 1,
    APB_REPORT_Q2 = 1 << 2,
    APB_REPORT_PRUNE = 1 << 3,
    APB_REPORT_APB = 1 << 4,
    APB_REPORT_APB_ACTBIN = 1 << 5,
    APB_REPORT_PRUNE_BINARY = 1 << 6, /* pruning + binarization at each APB budget */
    APB_REPORT_APB_INT8 = 1 << 7,
    APB_REPORT_ALL = (1 << 8) - 1
};

#define APB_REPORT_MAX_LIST 16

typedef struct {
    char data_spec[512];
    char arch[32];
    char out_dir[1024];
    int epochs;          /* fp epochs from scratch */
    int ft_epochs;       /* epochs of every compressed point (0: same as epochs) */
    int batch;           /* 0: trainer default */
    float lr;            /* fp learning rate (0: trainer default) */
    float ft_lr;         /* learning rate of compressed points (0: same as lr) */
    int limit_train, limit_test;
    int threads;         /* 0: apb_threads_get() */
    uint64_t seed;
    int seeds;           /* runs of every compressed point, seeds seed .. seed+seeds-1 (0 or 1:
                            one); the fp point is trained once (seed) and starts all of them */
    int act;             /* apb_aquant of every compressed point: fp, binary (Bi-Real ResNets)
                            or 2-bit; the fp point keeps fp activations */
    unsigned methods;    /* APB_REPORT_* */
    int nbudgets;
    double budgets[APB_REPORT_MAX_LIST];       /* APB bits/weight */
    int nsparsities;
    double sparsities[APB_REPORT_MAX_LIST];    /* pruning, fraction of weights removed */
    double actbin_budget;                      /* APB + binary activations */
    double int8_budget;                        /* APB + 8-bit activations */
    int latency_runs;    /* timed batch-1 runs per point (after warm-up); 0: skip latency */
    int latency_threads; /* threads while timing (default 1: a batch of one image is too small
                            to share, and a shared machine makes OpenMP waits noisy); 0: `threads` */
    int quiet;           /* passed to the trainer (no per-epoch lines) */
    /* progress lines ("[3/9] apb1.3: training 2 epochs ..."); NULL: none */
    void (*progress)(void *ctx, const char *line);
    void *progress_ctx;
} apb_report_cfg;

/* Defaults: fashion-mnist, convnet, 1 epoch, every method, budgets 1.1,1.3,1.6,
 * sparsities 0.5,0.9, actbin budget 1.3, int8 budget 1.5, 50 latency runs on 1 thread, seed 1. */
void apb_report_cfg_default(apb_report_cfg *c);

/* Parses "fp,binary,q2,prune,apb,apb-actbin,apb-int8" (or "all") into APB_REPORT_* flags. */
apb_status apb_report_methods_parse(const char *s, unsigned *methods);
/* Parses "1.1,1.3,1.6" into v (at most max values, each > 0). */
apb_status apb_report_list_parse(const char *s, double *v, int max, int *n);

typedef struct {
    char method[16];     /* fp, binary, q2, prune, apb, apb-actbin, prune-binary, apb-int8 */
    char point[32];      /* directory name: fp, binary, q2, prune0.5, apb1.3, apb1.3-actbin,
                            prune-binary1.3, apb1.5-int8 */
    char quant[24];      /* weight quantizer: fp, binary, q2, prune:0.5, apb, prune-binary:S */
    char act[8];         /* activation quantizer: fp, binary, q2, int8 */
    double budget;       /* APB and prune-binary budget (bits/weight), sparsity for pruning,
                            0 otherwise */
    double test_acc;     /* top-1 %, final model; the mean over seeds */
    double test_acc_std; /* sample standard deviation over seeds (0 with one) */
    int nseeds;          /* runs behind test_acc */
    double bits_per_weight; /* compressed layers, paper formula; 32 for fp */
    double model_bits;   /* whole model, paper formula */
    size_t file_bytes;   /* exported .apb file */
    double latency_ms;   /* runtime, batch 1, median (0 when not measured) */
    int epochs;          /* epochs the point was trained for */
    int reused;          /* 1: the checkpoint already had every epoch (nothing trained) */
    int resumed;         /* 1: an interrupted point was continued */
} apb_report_point;

typedef struct {
    apb_report_point *points;
    int n;
    int latency_threads;  /* threads the latencies were measured with */
    char csv_path[1100], md_path[1100], png_path[1100];
} apb_report;

/* Trains / reuses every point, exports, measures and writes the three files. */
apb_status apb_report_run(const apb_report_cfg *cfg, apb_report *out);
void apb_report_free(apb_report *r);

/* The markdown table (tradeoff.md's content) into a malloc'd string. */
apb_status apb_report_markdown(const apb_report *r, char **text);

#endif
