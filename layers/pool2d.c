/* pool2d.c - the output-shape rule shared by maxpool2d and avgpool2d. */
#include "pool2d.h"

apb_status apb_pool2d_shape(const char *op, const apb_var *x, const apb_pool_attr *a, int *ndim,
                            int dim[APB_MAX_DIM])
{
    char sx[64];
    if (x->ndim != 4)
        return apb_fail(APB_ESHAPE, "%s: input %s is not [N,C,H,W]", op,
                        apb_dims_str(x->ndim, x->dim, sx, sizeof sx));
    if (a->k < 1 || a->stride < 1 || a->pad < 0 || a->pad > a->k / 2)
        return apb_fail(APB_EINVAL, "%s: k %d stride %d pad %d invalid (pad <= k/2)", op, a->k,
                        a->stride, a->pad);
    int OH = x->dim[2] + 2 * a->pad - a->k, OW = x->dim[3] + 2 * a->pad - a->k;
    if (OH < 0 || OW < 0)
        return apb_fail(APB_ESHAPE, "%s: window %d larger than padded input %s", op, a->k,
                        apb_dims_str(x->ndim, x->dim, sx, sizeof sx));
    *ndim = 4;
    dim[0] = x->dim[0];
    dim[1] = x->dim[1];
    dim[2] = OH / a->stride + 1;
    dim[3] = OW / a->stride + 1;
    return APB_OK;
}
