/* bench.h - benchmark entry points behind `apb bench WHAT` and timing helpers.
 *
 * Every benchmark prints one key=value line per case (op=... first) and measures
 * its baseline in the same run. Figures are medians over repeats.
 */
#ifndef APB_BENCH_H
#define APB_BENCH_H

int apb_bench_sgemm(int argc, char **argv);
int apb_bench_kernels(int argc, char **argv);
int apb_bench_data(int argc, char **argv);
int apb_bench_train(int argc, char **argv);
/* `apb bench model.apb ...` and `apb bench --model NAME ...` */
int apb_bench_model(int argc, char **argv);

/* Monotonic wall clock in seconds. */
double apb_now(void);
/* Median of n doubles (sorts a copy). */
double apb_median(const double *v, int n);
/* Percentile p in [0,100] (nearest rank). */
double apb_percentile(const double *v, int n, double p);

#endif
