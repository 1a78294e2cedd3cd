/* clock.h - monotonic wall clock and order statistics for timing.
 *
 * Used by the benchmarks, the training loop (images/s) and the report (latency);
 * figures are quoted as medians, so the median lives beside the clock.
 */
#ifndef APB_CLOCK_H
#define APB_CLOCK_H

/* Monotonic wall clock in seconds. */
double apb_now(void);
/* Median of n doubles (sorts a copy). */
double apb_median(const double *v, int n);
/* Percentile p in [0,100] (nearest rank). */
double apb_percentile(const double *v, int n, double p);

#endif
