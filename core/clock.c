/* clock.c - monotonic wall clock and order statistics (medians, percentiles)
 * for everything that times itself: benchmarks, training, reports. */
#include "clock.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double apb_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double apb_percentile(const double *v, int n, double p)
{
    if (n <= 0)
        return 0;
    double *c = malloc(sizeof(double) * (size_t)n);
    if (!c)
        return 0;
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof(double), cmpd);
    int k = (int)(p / 100.0 * (n - 1) + 0.5);
    double r = c[k < 0 ? 0 : k >= n ? n - 1 : k];
    free(c);
    return r;
}

double apb_median(const double *v, int n)
{
    if (n <= 0)
        return 0;
    double *c = malloc(sizeof(double) * (size_t)n);
    if (!c)
        return 0;
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof(double), cmpd);
    double r = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return r;
}
