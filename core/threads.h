/* threads.h - the one place apb decides how many OpenMP threads to use.
 *
 * Default: APB_THREADS from the environment, else OpenMP's default. CLI
 * --threads calls apb_threads_set(). Builds without OpenMP (make OMP=0) always
 * report 1. An APB_THREADS that is not a count >= 1 is ignored with one warning
 * on stderr naming it.
 */
#ifndef APB_THREADS_H
#define APB_THREADS_H

void apb_threads_set(int n);
int apb_threads_get(void);
/* The calling thread's number in the current OpenMP team (0 outside one or
 * without OpenMP). */
int apb_thread_num(void);
/* Nonzero inside an active parallel region (a driver called there runs on the
 * calling thread alone). */
int apb_in_parallel(void);
/* Parses an APB_THREADS value: the count (>= 1), 0 when unset or empty, -1 when
 * it is not a whole number >= 1. */
int apb_threads_env(const char *s);

#endif
