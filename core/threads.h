/* threads.h - the one place apb decides how many OpenMP threads to use.
 *
 * Default: APB_THREADS from the environment, else OpenMP's default. CLI
 * --threads calls apb_threads_set(). Builds without OpenMP (make OMP=0) always
 * report 1.
 */
#ifndef APB_THREADS_H
#define APB_THREADS_H

void apb_threads_set(int n);
int apb_threads_get(void);

#endif
