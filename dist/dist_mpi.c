/* dist_mpi.c - dist.h over MPI (built when the Makefile finds Open MPI).
 *
 * MPI is started only when a launcher started this process (apb_dist_init), so
 * plain `apb train` never touches it. Only the main thread calls MPI (the
 * loader's workers and OpenMP never do): MPI_THREAD_FUNNELED is enough.
 *
 * The float sum is not MPI_Allreduce: MPI may add the contributions in any
 * order and (for some algorithms) differently on different processes. Here
 * each process owns one slice of the buffer, receives every process's copy of
 * that slice (MPI_Alltoallv: pure data movement), adds them in process order,
 * and the slices are then shared (MPI_Allgatherv, in place). The bytes moved
 * are those of a ring all-reduce.
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

static int started, rank, size = 1;
static float *recvbuf; /* [size * slice] the slices of every process for one bucket */
static size_t recvcap;
static int *counts, *displs, *rcounts, *rdispls; /* [size] */

int apb_dist_compiled(void) { return 1; }
int apb_dist_rank(void) { return rank; }
int apb_dist_size(void) { return size; }

static int launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

apb_status apb_dist_init(int *argc, char ***argv)
{
    if (started || !launched())
        return APB_OK;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return apb_fail(APB_EIO, "MPI_Init_thread failed (started by mpirun, but MPI could not start)");
    started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (provided < MPI_THREAD_FUNNELED) {
        apb_dist_finish();
        return apb_fail(APB_EUNSUPPORTED, "MPI gives thread level %d, apb needs MPI_THREAD_FUNNELED (%d)",
                        provided, MPI_THREAD_FUNNELED);
    }
    counts = calloc((size_t)size * 4, sizeof(int));
    if (!counts) {
        apb_dist_finish();
        return apb_fail(APB_ENOMEM, "out of memory for %d processes", size);
    }
    displs = counts + size;
    rcounts = displs + size;
    rdispls = rcounts + size;
    return APB_OK;
}

void apb_dist_finish(void)
{
    if (!started)
        return;
    free(recvbuf);
    free(counts);
    recvbuf = NULL;
    counts = NULL;
    recvcap = 0;
    MPI_Finalize();
    started = 0;
    rank = 0;
    size = 1;
}

void apb_dist_abort(int code)
{
    if (started)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static apb_status mpi_check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return APB_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return apb_fail(APB_EIO, "%s failed on process %d of %d: %s", what, rank, size, msg);
}

/* Element range [displ, displ + count) of process k's slice of an n-float bucket. */
static void slice(int64_t n, int k, int *count, int *displ)
{
    int64_t a = n * k / size, b = n * (k + 1) / size;
    *displ = (int)a;
    *count = (int)(b - a);
}

static apb_status sum_bucket(float *buf, int64_t n)
{
    for (int k = 0; k < size; k++)
        slice(n, k, &counts[k], &displs[k]);
    int mine = counts[rank];
    size_t need = (size_t)mine * (size_t)size;
    if (need > recvcap) {
        float *p = realloc(recvbuf, need * sizeof(float));
        if (!p)
            return apb_fail(APB_ENOMEM, "out of memory for %zu floats of gradient slices", need);
        recvbuf = p;
        recvcap = need;
    }
    for (int k = 0; k < size; k++) {
        rcounts[k] = mine;
        rdispls[k] = k * mine;
    }
    APB_TRY(mpi_check(MPI_Alltoallv(buf, counts, displs, MPI_FLOAT, recvbuf, rcounts, rdispls,
                                    MPI_FLOAT, MPI_COMM_WORLD),
                      "MPI_Alltoallv (gradient slices)"));
    float *own = buf + displs[rank];
    memcpy(own, recvbuf, sizeof(float) * (size_t)mine);
    for (int k = 1; k < size; k++) {
        const float *src = recvbuf + (size_t)k * mine;
        for (int i = 0; i < mine; i++)
            own[i] += src[i];
    }
    return mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs,
                                    MPI_FLOAT, MPI_COMM_WORLD),
                     "MPI_Allgatherv (summed gradient slices)");
}

apb_status apb_dist_sum_f32(float *buf, int64_t n)
{
    if (size == 1)
        return APB_OK;
    for (int64_t o = 0; o < n; o += APB_DIST_BUCKET)
        APB_TRY(sum_bucket(buf + o, n - o < APB_DIST_BUCKET ? n - o : APB_DIST_BUCKET));
    return APB_OK;
}

apb_status apb_dist_gather_f64(const double *mine, int n, double *all)
{
    if (size == 1) {
        memcpy(all, mine, sizeof(double) * (size_t)n);
        return APB_OK;
    }
    return mpi_check(MPI_Allgather(mine, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD),
                     "MPI_Allgather (doubles)");
}

apb_status apb_dist_gather_u64(const uint64_t *mine, int n, uint64_t *all)
{
    if (size == 1) {
        memcpy(all, mine, sizeof(uint64_t) * (size_t)n);
        return APB_OK;
    }
    return mpi_check(MPI_Allgather(mine, n, MPI_UINT64_T, all, n, MPI_UINT64_T, MPI_COMM_WORLD),
                     "MPI_Allgather (64-bit integers)");
}

apb_status apb_dist_sum_i64(int64_t *v, int n)
{
    if (size == 1)
        return APB_OK;
    return mpi_check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD),
                     "MPI_Allreduce (integer sums)");
}

apb_status apb_dist_bcast(void *buf, size_t bytes, int root)
{
    if (size == 1)
        return APB_OK;
    char *p = buf;
    const size_t step = 1u << 30;
    for (size_t o = 0; o < bytes; o += step) {
        size_t n = bytes - o < step ? bytes - o : step;
        APB_TRY(mpi_check(MPI_Bcast(p + o, (int)n, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast"));
    }
    return APB_OK;
}
