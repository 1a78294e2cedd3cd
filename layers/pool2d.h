/* pool2d.h - what max and average pooling share: attributes and the shape rule. */
#ifndef APB_POOL2D_H
#define APB_POOL2D_H

#include "autograd.h"

typedef struct {
    int k, stride, pad;
} apb_pool_attr;

/* [N,C,H,W] -> [N,C,(H+2p-k)/s+1,(W+2p-k)/s+1]; pad <= k/2; errors name `op`. */
apb_status apb_pool2d_shape(const char *op, const apb_var *x, const apb_pool_attr *a, int *ndim,
                            int dim[APB_MAX_DIM]);

#endif
