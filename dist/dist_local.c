/* dist_local.c - dist.h for a build without MPI: always one process.
 *
 * The reductions over one process are the identity (gathers copy). Started by
 * mpirun with N > 1 anyway, every process would train alone and all would
 * write the same run folder, so apb_dist_init refuses that by name.
 */
#include <stdlib.h>
#include <string.h>

#include "dist.h"

int apb_dist_compiled(void) { return 0; }
int apb_dist_rank(void) { return 0; }
int apb_dist_size(void) { return 1; }

apb_status apb_dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1)
            return apb_fail(APB_EUNSUPPORTED,
                            "started by an MPI launcher with %s=%s, but this apb was built without MPI: "
                            "install libopenmpi-dev (make deps) and rebuild, or run one process",
                            vars[i], v);
    }
    return APB_OK;
}

void apb_dist_finish(void) {}

void apb_dist_abort(int code) { exit(code); }

apb_status apb_dist_sum_f32(float *buf, int64_t n)
{
    (void)buf;
    (void)n;
    return APB_OK;
}

apb_status apb_dist_gather_f64(const double *mine, int n, double *all)
{
    memcpy(all, mine, sizeof(double) * (size_t)n);
    return APB_OK;
}

apb_status apb_dist_gather_u64(const uint64_t *mine, int n, uint64_t *all)
{
    memcpy(all, mine, sizeof(uint64_t) * (size_t)n);
    return APB_OK;
}

apb_status apb_dist_sum_i64(int64_t *v, int n)
{
    (void)v;
    (void)n;
    return APB_OK;
}

apb_status apb_dist_bcast(void *buf, size_t bytes, int root)
{
    (void)buf;
    (void)bytes;
    (void)root;
    return APB_OK;
}
