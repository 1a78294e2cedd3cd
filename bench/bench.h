/* bench.h - benchmark entry points behind `apb bench WHAT` and timing helpers.
 *
 * Every benchmark prints one key=value line per case (op=... first) and measures
 * its baseline in the same run. Figures are medians over repeats.
 */
#ifndef APB_BENCH_H
#define APB_BENCH_H

#include "clock.h"  /* apb_now, apb_median, apb_percentile */

int apb_bench_sgemm(int argc, char **argv);
int apb_bench_kernels(int argc, char **argv);
int apb_bench_data(int argc, char **argv);
int apb_bench_train(int argc, char **argv);
/* `apb bench model.apb ...` and `apb bench --model NAME ...` */
int apb_bench_model(int argc, char **argv);

#endif
