/* apbrt_fast.c - bit-kernel execution of compressed layers (placeholder until the
 * kernels land: every layer uses the float reference path). */
#include "apbrt_internal.h"

apb_status apbrt_fast_prepare(apbrt_model *m) { return APB_OK; }
void apbrt_fast_free(apbrt_model *m) {}
apb_status apbrt_fast_run(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out)
{
    return apb_fail(APB_EUNSUPPORTED, "apbrt: no fast path for layer");
}
