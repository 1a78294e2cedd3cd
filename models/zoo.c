/* zoo.c - the built-in architectures, each a description run through the
 * builder (builder.h): convnet (28x28 inputs), vgg-small, resnet20 (CIFAR) and
 * resnet18 (ImageNet stem at 112 and above, CIFAR stem below).
 *
 * Activation placement: a layer whose input is quantized to 1 or 2 bits is
 * preceded by hardtanh instead of ReLU (sgn of a ReLU output would be constant),
 * and ResNets with such activations use a shortcut around every conv (Bi-Real
 * style): unit(x) = BN(conv(q(x))) + shortcut(x). 8-bit activations keep the
 * full-precision network as it is, ReLUs and standard blocks (their codes are
 * unsigned after a ReLU, so nothing is lost to the sign, and 8 bits carry
 * enough through a conv that no extra shortcut is needed); the same layer list
 * also lets an fp checkpoint initialise it tensor for tensor.
 *
 * Names: convnet and vgg-small layers are counter-named (conv1, bn1, fc1, ...).
 * ResNet layers are named as torchvision names them (conv1, bn1,
 * layer<S>.<B>.conv1/bn1/conv2/bn2, layer<S>.<B>.downsample.conv/bn, fc), the
 * same in the fp block and in the two Bi-Real units that replace it, so an fp
 * ResNet checkpoint initialises every quantized variant by name.
 */
#include "builder.h"

#include <string.h>

static int build_convnet(apb_builder *b)
{
    const apb_model_cfg *c = &b->m->cfg;
    int x = apb_build_conv(b, NULL, 0, c->in_c, 32, 3, 1, 1, c->quant_first, c->quant_first, 0);
    x = apb_build_bn(b, NULL, x, 32);
    x = apb_build_act(b, NULL, x, 1);
    x = apb_build_pool(b, NULL, APB_L_MAXPOOL, x, 2, 2, 0);
    x = apb_build_conv(b, NULL, x, 32, 64, 3, 1, 1, 1, 1, 0);
    x = apb_build_bn(b, NULL, x, 64);
    x = apb_build_act(b, NULL, x, 1);
    x = apb_build_pool(b, NULL, APB_L_MAXPOOL, x, 2, 2, 0);
    x = apb_build_simple(b, NULL, APB_L_FLATTEN, x);
    x = apb_build_linear(b, NULL, x, 64 * (c->in_h / 4) * (c->in_w / 4), 256, 1, 0);
    x = apb_build_bn(b, NULL, x, 256);
    x = apb_build_act(b, NULL, x, c->quant_last);
    return apb_build_linear(b, NULL, x, 256, c->num_classes, c->quant_last, 1);
}

static int build_vgg_small(apb_builder *b)
{
    const apb_model_cfg *c = &b->m->cfg;
    static const int ch[6] = {128, 128, 256, 256, 512, 512};
    int x = 0, cin = c->in_c, h = c->in_h, w = c->in_w;
    for (int i = 0; i < 6; i++) {
        int first = i == 0;
        x = apb_build_conv(b, NULL, x, cin, ch[i], 3, 1, 1, first ? c->quant_first : 1,
                           first ? c->quant_first : 1, 0);
        x = apb_build_bn(b, NULL, x, ch[i]);
        if (i % 2 == 1) {
            x = apb_build_pool(b, NULL, APB_L_MAXPOOL, x, 2, 2, 0);
            h /= 2;
            w /= 2;
        }
        x = apb_build_act(b, NULL, x, i < 5 || c->quant_last);
        cin = ch[i];
    }
    x = apb_build_simple(b, NULL, APB_L_FLATTEN, x);
    return apb_build_linear(b, NULL, x, 512 * h * w, c->num_classes, c->quant_last, 1);
}

/* Whether quantized activations use the Bi-Real topology (1- and 2-bit). */
static int bireal(const apb_model_cfg *c)
{
    return c->aq == APB_AQ_BINARY || c->aq == APB_AQ_Q2;
}

/* Standard basic block (fp and 8-bit activations). */
static int basic_block(apb_builder *b, int x, int cin, int cout, int stride)
{
    const apb_model_cfg *c = &b->m->cfg;
    int h = apb_build_conv(b, "conv1", x, cin, cout, 3, stride, 1, 1, 1, 0);
    h = apb_build_bn(b, "bn1", h, cout);
    h = apb_build_act(b, NULL, h, 1);
    h = apb_build_conv(b, "conv2", h, cout, cout, 3, 1, 1, 1, 1, 0);
    h = apb_build_bn(b, "bn2", h, cout);
    int sc = x;
    if (stride != 1 || cin != cout) {
        sc = apb_build_conv(b, "downsample.conv", x, cin, cout, 1, stride, 0, !c->fp_shortcut, 0, 0);
        sc = apb_build_bn(b, "downsample.bn", sc, cout);
    }
    return apb_build_act(b, NULL, apb_build_add(b, NULL, h, sc), 1);
}

/* Bi-Real unit for quantized activations: BN(conv(q(x))) + shortcut(x).
 * in_h x in_w is the unit's input size. The downsampling shortcut is a 2x2/2
 * average pool + 1x1 conv, which halves an odd side rounding down while the
 * 3x3/2 pad-1 conv rounds up (7 -> 3 vs 4: ResNet-18 at 112x112); an odd input
 * therefore gets a 1x1 stride-2 conv shortcut, which rounds up like the conv. */
static int bireal_unit(apb_builder *b, int unit, int x, int cin, int cout, int stride, int in_h,
                       int in_w)
{
    const apb_model_cfg *c = &b->m->cfg;
    int h = apb_build_conv(b, unit == 1 ? "conv1" : "conv2", x, cin, cout, 3, stride, 1, 1, 1, 0);
    h = apb_build_bn(b, unit == 1 ? "bn1" : "bn2", h, cout);
    int sc = x;
    if (stride != 1 || cin != cout) {
        int sstride = 1;
        if (stride != 1 && (in_h % stride == 0 && in_w % stride == 0))
            sc = apb_build_pool(b, "downsample.pool", APB_L_AVGPOOL, sc, stride, stride, 0);
        else
            sstride = stride;
        sc = apb_build_conv(b, "downsample.conv", sc, cin, cout, 1, sstride, 0, !c->fp_shortcut, 0, 0);
        sc = apb_build_bn(b, "downsample.bn", sc, cout);
    }
    return apb_build_add(b, NULL, h, sc);
}

/* Block `block` of stage `stage` (from 1, as torchvision's layer1.0). *hh x *ww:
 * the block's input size on entry, its output size on return. */
static int res_block(apb_builder *b, int stage, int block, int x, int cin, int cout, int stride,
                     int *hh, int *ww)
{
    int ih = *hh, iw = *ww;
    apb_builder_scope(b, "layer%d.%d.", stage, block);
    *hh = (ih - 1) / stride + 1; /* 3x3, pad 1 */
    *ww = (iw - 1) / stride + 1;
    if (!bireal(&b->m->cfg))
        return basic_block(b, x, cin, cout, stride);
    x = bireal_unit(b, 1, x, cin, cout, stride, ih, iw);
    return bireal_unit(b, 2, x, cout, cout, 1, *hh, *ww);
}

static int build_resnet(apb_builder *b, int depth18)
{
    const apb_model_cfg *c = &b->m->cfg;
    int x, cin;
    static const int ch20[3] = {16, 32, 64}, ch18[4] = {64, 128, 256, 512};
    const int *ch = depth18 ? ch18 : ch20;
    int nstage = depth18 ? 4 : 3, nblock = depth18 ? 2 : 3;
    int hh = c->in_h, ww = c->in_w;
    if (depth18 && c->in_h >= 112) {
        x = apb_build_conv(b, "conv1", 0, c->in_c, 64, 7, 2, 3, c->quant_first, c->quant_first, 0);
        x = apb_build_bn(b, "bn1", x, 64);
        /* the first block's first conv quantizes this (Bi-Real): hardtanh, not a ReLU,
         * whose sign would be +1 everywhere */
        x = apb_build_act(b, NULL, x, 1);
        x = apb_build_pool(b, NULL, APB_L_MAXPOOL, x, 3, 2, 1);
        hh = ((hh + 6 - 7) / 2 + 1 + 2 - 3) / 2 + 1;
        ww = ((ww + 6 - 7) / 2 + 1 + 2 - 3) / 2 + 1;
    } else {
        x = apb_build_conv(b, "conv1", 0, c->in_c, ch[0], 3, 1, 1, c->quant_first, c->quant_first, 0);
        x = apb_build_bn(b, "bn1", x, ch[0]);
        x = apb_build_act(b, NULL, x, 1); /* as above */
    }
    cin = ch[0];
    for (int s = 0; s < nstage; s++)
        for (int k = 0; k < nblock; k++) {
            int stride = (s > 0 && k == 0) ? 2 : 1;
            x = res_block(b, s + 1, k, x, cin, ch[s], stride, &hh, &ww);
            cin = ch[s];
        }
    if (bireal(c))
        x = apb_build_act(b, NULL, x, 0);
    x = apb_build_simple(b, NULL, APB_L_GAP, x);
    apb_builder_scope(b, "%s", "");
    return apb_build_linear(b, "fc", x, cin, c->num_classes, c->quant_last, 1);
}


apb_status apb_model_build(const apb_model_cfg *cfg, uint64_t seed, apb_model **out)
{
    *out = NULL;
    apb_builder b;
    APB_TRY(apb_builder_begin(&b, cfg, seed));
    const char *a = cfg->arch;
    int y = 0;
    if (!strcmp(a, "convnet")) {
        if (cfg->in_h % 4 || cfg->in_w % 4)
            apb_builder_error(&b, apb_fail(APB_EINVAL, "convnet needs input sides divisible by 4, got %dx%d",
                                           cfg->in_h, cfg->in_w));
        else
            y = build_convnet(&b);
    } else if (!strcmp(a, "vgg-small")) {
        if (cfg->in_h % 8 || cfg->in_w % 8)
            apb_builder_error(&b, apb_fail(APB_EINVAL, "vgg-small needs input sides divisible by 8, got %dx%d",
                                           cfg->in_h, cfg->in_w));
        else
            y = build_vgg_small(&b);
    } else if (!strcmp(a, "resnet20"))
        y = build_resnet(&b, 0);
    else if (!strcmp(a, "resnet18"))
        y = build_resnet(&b, 1);
    else
        apb_builder_error(&b, apb_fail(APB_EINVAL, "unknown model '%s' (convnet, vgg-small, resnet20, resnet18)", a));
    return apb_builder_finish(&b, y, out);
}
