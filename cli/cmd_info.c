/* cmd_info.c - `apb info MODEL.apb`: per-layer table of a packed model.
 *
 * Shows, for every layer, its kind, shapes, weight/activation storage, weight
 * count, how many of them are full precision, the bits by the paper's formula
 * (apb-method.md section 4) and the bytes it really takes in the file; then the
 * totals, so nobody mistakes the paper's accounting for the file size.
 */
#include <stdio.h>
#include <string.h>

#include "apbrt.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: apb info MODEL.apb\n"
               "  per-layer table: kind, input -> output shape, weights (fp32/apb/q2) and input\n"
               "  quantizer, weight count, full-precision count, bits (paper formula), file bytes\n");
}

int apb_cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-' || path) {
            fprintf(stderr, "apb info: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        }
        path = argv[i];
    }
    if (!path) {
        usage(stderr);
        return 1;
    }
    apbrt_model *m;
    if (apbrt_load(path, &m) != 0) {
        fprintf(stderr, "apb info: %s\n", apbrt_errmsg());
        return 1;
    }
    int c, h, w;
    apbrt_input_shape(m, &c, &h, &w);
    float mean[3], sd[3];
    apbrt_normalization(m, mean, sd);
    printf("model %s: input %dx%dx%d, %d classes, resize_short %d, mean %.4g %.4g %.4g, std %.4g %.4g %.4g\n",
           apbrt_model_name(m), c, h, w, apbrt_num_classes(m), apbrt_resize_short(m), mean[0],
           mean[1], mean[2], sd[0], sd[1], sd[2]);
    printf("%3s %-8s %-14s %-14s %-9s %-6s %10s %9s %12s %10s\n", "#", "kind", "input", "output",
           "w/act", "kernel", "weights", "fp", "bits", "bytes");
    long tw = 0, tfp = 0, cw = 0;
    double tbits = 0, cbits = 0;
    for (int i = 0; i < apbrt_num_layers(m); i++) {
        apbrt_layer_info li;
        apbrt_layer_info_get(m, i, &li);
        char in[32], out[32], wa[32];
        snprintf(in, sizeof in, "%dx%dx%d", li.in_c, li.in_h, li.in_w);
        snprintf(out, sizeof out, "%dx%dx%d", li.out_c, li.out_h, li.out_w);
        if (li.weights[0])
            snprintf(wa, sizeof wa, "%s/%s", li.weights, li.act);
        else
            snprintf(wa, sizeof wa, "-");
        printf("%3d %-8s %-14s %-14s %-9s %-6s %10ld %9ld %12.0f %10zu%s\n", i, li.kind, in, out, wa,
               li.kernel[0] ? li.kernel : "-", li.params, li.fp_params, li.bits, li.bytes,
               li.fused ? "  (fused)" : "");
        if (!strcmp(li.kind, "conv") || !strcmp(li.kind, "linear")) {
            tw += li.params;
            tfp += li.fp_params;
        }
        tbits += li.bits;
        if (li.compressed) {
            cw += li.params;
            cbits += li.weight_bits;
        }
    }
    printf("weights: %ld (%ld full precision)\n", tw, tfp);
    if (apbrt_approximate_layers(m))
        printf("approximate: %d layer%s run as 8-bit integer convs (w/act */s8d: apb export "
               "--int8-stem), not what training computed\n",
               apbrt_approximate_layers(m), apbrt_approximate_layers(m) > 1 ? "s" : "");
    if (cw)
        printf("compressed layers: %ld weights, %.4f bits/weight (paper formula)\n", cw, cbits / cw);
    else
        printf("compressed layers: none\n");
    printf("total: %.0f bits = %.1f KB by the paper formula; file %zu bytes (%.1f KB)\n", tbits,
           tbits / 8 / 1024, apbrt_file_size(m), apbrt_file_size(m) / 1024.0);
    apbrt_free(m);
    return 0;
}
