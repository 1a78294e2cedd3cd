/* dist.h - the processes of a data-parallel `apb train` (mpirun -np N), behind
 * one small API: every use of MPI in apb is in this room.
 *
 * Two implementations, one chosen by the Makefile: dist_mpi.c (Open MPI found at
 * build time, APB_HAVE_MPI) and dist_local.c (one process, every call a no-op or
 * a copy). Only `apb train` starts MPI (apb_dist_init); every other command, the
 * test binary and the runtime libapbrt never do, and libapbrt never links it.
 *
 * Determinism is the point of the reductions here: a sum over processes is
 * always added in process order 0, 1, ..., N-1 by exactly one process and then
 * copied to the others, so every process gets the same bits, whatever
 * algorithm MPI picks, and two runs with the same N give the same bits.
 *
 * Errors: MPI's default handler (MPI_ERRORS_ARE_FATAL) stays in place, so a
 * failed collective ends the whole job with Open MPI's message; the functions
 * return APB_OK otherwise. A process that fails alone while the others wait in
 * a collective must end the job with apb_dist_abort.
 */
#ifndef APB_DIST_H
#define APB_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* 1 when this build has MPI support. */
int apb_dist_compiled(void);

/* Joins the job when the process was started by an MPI launcher (mpirun sets
 * OMPI_COMM_WORLD_SIZE, PMI/PMIx launchers PMI_SIZE / PMIX_RANK); otherwise,
 * or without MPI support, the run is one process and nothing is started. A
 * launch by mpirun with N > 1 in a build without MPI is an error that says so. */
apb_status apb_dist_init(int *argc, char ***argv);
/* Leaves the job (MPI_Finalize: waits for every process); no-op for one process. */
void apb_dist_finish(void);
/* Ends every process of the job with exit status `code` (MPI_Abort); for one
 * process, exit(code). Does not return. */
void apb_dist_abort(int code) __attribute__((noreturn));

int apb_dist_rank(void); /* 0 .. size-1; 0 for one process */
int apb_dist_size(void); /* number of processes; 1 without mpirun */

/* buf[n] := sum over processes of their buf[n], each element added in process
 * order; the same bits on every process. Runs as a reduce-scatter (each process
 * sums one 1/N slice of the buffer) and an all-gather of the slices, in buckets
 * of at most APB_DIST_BUCKET floats: 2 (N-1)/N * 4n bytes sent per process,
 * like a ring all-reduce. */
#define APB_DIST_BUCKET (4L << 20)
apb_status apb_dist_sum_f32(float *buf, int64_t n);

/* all[size * n] := every process's mine[n], in process order. */
apb_status apb_dist_gather_f64(const double *mine, int n, double *all);
apb_status apb_dist_gather_u64(const uint64_t *mine, int n, uint64_t *all);

/* v[n] := the sum over processes of v[n] (integers: exact). */
apb_status apb_dist_sum_i64(int64_t *v, int n);

/* buf[bytes] of process `root` copied to every process. */
apb_status apb_dist_bcast(void *buf, size_t bytes, int root);

#endif
