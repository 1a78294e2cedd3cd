/* bench.h - benchmark entry points behind `apb bench WHAT` and timing helpers.
 *
 * Every benchmark prints one key=value line per case (op=... first) and measures
 * its baseline in the same run. Figures are medians over repeats.
 */
#ifndef APB_BENCH_H
#define APB_BENCH_H

#include <stdio.h>

#include "clock.h"  /* apb_now, apb_median, apb_percentile */

/* argv[0] is the benchmark's name; returns the exit status. --help prints the
 * usage on stdout and returns 0. */
int apb_bench_sgemm(int argc, char **argv);
int apb_bench_kernels(int argc, char **argv);
int apb_bench_data(int argc, char **argv);
int apb_bench_train(int argc, char **argv);
/* `apb bench model.apb ...` and `apb bench --model NAME ...` */
int apb_bench_model(int argc, char **argv);

/* Each benchmark's usage: every option it accepts, with its default. One text
 * serves the benchmark's --help, its option errors and `apb bench --help`. */
void apb_bench_sgemm_usage(FILE *f);
void apb_bench_kernels_usage(FILE *f);
void apb_bench_data_usage(FILE *f);
void apb_bench_train_usage(FILE *f);
void apb_bench_model_usage(FILE *f);

#endif
