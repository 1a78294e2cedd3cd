/* threads.c - thread-count setting shared by all OpenMP drivers. */
#include "threads.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int nthreads = 0;
static _Thread_local int solo; /* apb_threads_solo */

void apb_threads_solo(int on) { solo = on != 0; }

void apb_threads_set(int n)
{
    nthreads = n > 0 ? n : 1;
#ifdef _OPENMP
    omp_set_num_threads(nthreads);
#endif
}

int apb_threads_env(const char *s)
{
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 1 << 16)
        return -1;
    return (int)v;
}

int apb_threads_get(void)
{
#ifdef _OPENMP
    if (solo)
        return 1;
    if (nthreads == 0) {
        const char *e = getenv("APB_THREADS");
        int n = apb_threads_env(e);
        /* Read lazily deep inside a kernel driver, where no status can travel
         * back; a typo that silently meant "all cores" is the surprise to avoid,
         * so say it once (nthreads is set below, so this runs once). */
        if (n < 0) {
            n = 0;
            fprintf(stderr, "apb: warning: ignoring APB_THREADS='%s' (expected a whole number "
                            ">= 1); using %d threads\n", e, omp_get_max_threads());
        }
        apb_threads_set(n > 0 ? n : omp_get_max_threads());
    }
    return nthreads;
#else
    return 1;
#endif
}

int apb_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int apb_in_parallel(void)
{
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

void apb_claims_init(apb_claims *c, long n, int nth)
{
    c->nth = nth < 1 ? 1 : nth > APB_CLAIM_MAX ? APB_CLAIM_MAX : nth;
    for (int b = 0; b < c->nth; b++)
        apb_split_even(n, b, c->nth, &c->next[b].v, &c->end[b]);
}

long apb_claim(apb_claims *c, int me)
{
    for (int k = 0; k < c->nth; k++) {
        int b = (me + k) % c->nth;
        if (__atomic_load_n(&c->next[b].v, __ATOMIC_RELAXED) >= c->end[b])
            continue;
        long i = __atomic_fetch_add(&c->next[b].v, 1, __ATOMIC_RELAXED);
        if (i < c->end[b])
            return i;
    }
    return -1;
}
