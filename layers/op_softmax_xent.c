/* op_softmax_xent.c - mean softmax cross-entropy with optional label smoothing.
 *
 * loss = (1/N) sum_n [ logsumexp(z_n) - sum_k q_nk z_nk ],
 * q_nk = (1 - eps) [k == y_n] + eps/K. Forward saves the softmax p[N,K];
 * backward is dz += dloss * (p - q) / N. Labels are copied into the step arena
 * so the caller's buffer may change before backward.
 */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "registry.h"

typedef struct {
    const int *labels; /* [N] */
    float smoothing;
} xent_attr;

static apb_status xent_shape(apb_var *const *in, int nin, const void *attr, int *ndim,
                             int dim[APB_MAX_DIM])
{
    const xent_attr *a = attr;
    const apb_var *z = in[0];
    char sz[64];
    if (z->ndim != 2 || z->dim[1] < 1)
        return apb_fail(APB_ESHAPE, "softmax_xent: logits %s are not [N,K]",
                        apb_dims_str(z->ndim, z->dim, sz, sizeof sz));
    if (!(a->smoothing >= 0.0f && a->smoothing < 1.0f))
        return apb_fail(APB_EINVAL, "softmax_xent: label smoothing %g outside [0, 1)",
                        (double)a->smoothing);
    if (!a->labels)
        return apb_fail(APB_EINVAL, "softmax_xent: labels are missing");
    for (int n = 0; n < z->dim[0]; n++)
        if (a->labels[n] < 0 || a->labels[n] >= z->dim[1])
            return apb_fail(APB_EINVAL, "softmax_xent: label %d of sample %d is outside [0, %d)",
                            a->labels[n], n, z->dim[1]);
    *ndim = 0;
    return APB_OK;
}

static apb_status xent_forward(apb_graph *g, apb_var *out)
{
    const xent_attr *a = out->attr;
    const apb_var *z = out->in[0];
    int N = z->dim[0], K = z->dim[1];
    float *p = apb_graph_floats(g, (int64_t)N * K); /* [N,K] softmax */
    if (!p)
        return APB_ENOMEM;
    out->saved = p;
    double eps = a->smoothing, total = 0;
    for (int n = 0; n < N; n++) {
        const float *zr = z->data + (size_t)n * K;
        float *pr = p + (size_t)n * K;
        float mx = zr[0];
        for (int k = 1; k < K; k++)
            mx = zr[k] > mx ? zr[k] : mx;
        double se = 0, sz = 0;
        for (int k = 0; k < K; k++) {
            pr[k] = expf(zr[k] - mx);
            se += pr[k];
            sz += zr[k];
        }
        float inv = (float)(1.0 / se);
        for (int k = 0; k < K; k++)
            pr[k] *= inv;
        double lse = mx + log(se);
        total += lse - (1.0 - eps) * zr[a->labels[n]] - eps / K * sz;
    }
    if (!isfinite(total))
        return apb_fail(APB_ENUMERIC, "softmax_xent: loss is not finite (logits [%d,%d])", N, K);
    out->data[0] = (float)(total / N);
    return APB_OK;
}

static void xent_backward(apb_graph *g, apb_var *out)
{
    const xent_attr *a = out->attr;
    apb_var *z = out->in[0];
    int N = z->dim[0], K = z->dim[1];
    const float *p = out->saved;
    float s = out->grad[0] / (float)N, eps = a->smoothing, off = eps / (float)K;
    for (int n = 0; n < N; n++) {
        const float *pr = p + (size_t)n * K;
        float *dz = z->grad + (size_t)n * K;
        for (int k = 0; k < K; k++)
            dz[k] += s * (pr[k] - off);
        dz[a->labels[n]] -= s * (1.0f - eps);
    }
}

const apb_op apb_op_softmax_xent = {"softmax_xent", sizeof(xent_attr), 0, xent_shape,
                                    xent_forward, xent_backward};

apb_status apb_softmax_xent(apb_graph *g, apb_var *logits, const int *labels, float smoothing,
                            apb_var **loss, int *correct)
{
    xent_attr a = {labels, smoothing};
    if (logits && labels && logits->ndim == 2 && logits->dim[0] > 0) {
        int N = logits->dim[0];
        int *copy = apb_graph_alloc(g, sizeof(int) * (size_t)N);
        if (!copy)
            return APB_ENOMEM;
        memcpy(copy, labels, sizeof(int) * (size_t)N);
        a.labels = copy;
    }
    APB_TRY(apb_apply(g, &apb_op_softmax_xent, &logits, 1, &a, loss));
    if (correct) {
        int N = logits->dim[0], K = logits->dim[1], c = 0;
        for (int n = 0; n < N; n++) {
            const float *zr = logits->data + (size_t)n * K;
            int best = 0;
            for (int k = 1; k < K; k++)
                if (zr[k] > zr[best])
                    best = k;
            c += best == labels[n];
        }
        *correct = c;
    }
    return APB_OK;
}

static apb_status xent_case(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                            apb_var **out, float smoothing)
{
    int N = 5, K = 7;
    inputs[0] = apb_case_normal(g, rng, 2, (int[]){N, K}, 2.0f, 1);
    *ninputs = 1;
    int *labels = apb_graph_alloc(g, sizeof(int) * N);
    if (!inputs[0] || !labels)
        return APB_ENOMEM;
    for (int n = 0; n < N; n++)
        labels[n] = (int)apb_rng_below(rng, (uint32_t)K);
    return apb_softmax_xent(g, inputs[0], labels, smoothing, out, NULL);
}

apb_status apb_case_softmax_xent(apb_graph *g, apb_rng *rng, apb_var **inputs, int *ninputs,
                                 apb_var **out)
{
    return xent_case(g, rng, inputs, ninputs, out, 0.0f);
}

apb_status apb_case_softmax_xent_smooth(apb_graph *g, apb_rng *rng, apb_var **inputs,
                                        int *ninputs, apb_var **out)
{
    return xent_case(g, rng, inputs, ninputs, out, 0.1f);
}
