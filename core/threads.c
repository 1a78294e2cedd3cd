/* threads.c - thread-count setting shared by all OpenMP drivers. */
#include "threads.h"

#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int nthreads = 0;

void apb_threads_set(int n)
{
    nthreads = n > 0 ? n : 1;
#ifdef _OPENMP
    omp_set_num_threads(nthreads);
#endif
}

int apb_threads_get(void)
{
#ifdef _OPENMP
    if (nthreads == 0) {
        const char *e = getenv("APB_THREADS");
        int n = e ? atoi(e) : 0;
        apb_threads_set(n > 0 ? n : omp_get_max_threads());
    }
    return nthreads;
#else
    return 1;
#endif
}
