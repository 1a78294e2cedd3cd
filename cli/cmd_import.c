/* cmd_import.c - `apb import MODEL.onnx --out FILE.ckpt`: an ONNX network
 * (e.g. from torch.onnx.export) as an apb checkpoint (import/onnx.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "onnx.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: apb import MODEL.onnx --out FILE.ckpt [--mean a,b,c --std a,b,c] [--resize N] [--labels FILE]\n"
            "  --mean, --std   input normalisation of [0,1] pixels, one value or one per channel\n"
            "                  (default: the input is used as it is, mean 0 and std 1)\n"
            "  --resize N      eval preprocessing: resize the shorter side to N, then center-crop\n"
            "  --labels FILE   class names, one per line (default 0 ... K-1)\n"
            "Supported ONNX (opsets 11-17): Conv, BatchNormalization, Relu, Clip, MaxPool, AveragePool,\n"
            "GlobalAveragePool, Add, Flatten, Reshape, Gemm, MatMul, Identity, Dropout, Constant\n"
            "(docs/IMPORT.md). Then: apb eval / export / train --init FILE.ckpt.\n");
}

/* "a,b,c" or "a" (every channel) into v[3]. */
static int parse3(const char *opt, const char *s, float v[3])
{
    char *e;
    int n = 0;
    for (const char *p = s; n < 3; p = e + 1) {
        v[n++] = strtof(p, &e);
        if (e == p)
            break;
        if (*e != ',') {
            if (!*e && (n == 1 || n == 3)) {
                for (int i = n; i < 3; i++)
                    v[i] = v[0];
                return 0;
            }
            break;
        }
    }
    fprintf(stderr, "apb import: %s wants one number or three separated by commas, not '%s'\n", opt, s);
    return 1;
}

int apb_cmd_import(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *sv;
    apb_import_opts o = {{0, 0, 0}, {1, 1, 1}, 0, NULL};
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (apb_opt_str(argc, argv, &i, "--out", &out, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--mean", &sv, &bad))
            bad = bad || parse3("--mean", sv, o.mean);
        else if (apb_opt_str(argc, argv, &i, "--std", &sv, &bad)) {
            bad = bad || parse3("--std", sv, o.std);
            if (!bad && !(o.std[0] > 0 && o.std[1] > 0 && o.std[2] > 0)) {
                fprintf(stderr, "apb import: --std values must be positive\n");
                bad = 1;
            }
        } else if (apb_opt_int(argc, argv, &i, "--resize", &o.resize, &bad)) {
            if (!bad && (o.resize < 0 || o.resize > 4096)) {
                fprintf(stderr, "apb import: --resize must be in 0..4096\n");
                bad = 1;
            }
        } else if (apb_opt_str(argc, argv, &i, "--labels", &o.labels, &bad))
            ;
        else if (argv[i][0] == '-' || in) {
            fprintf(stderr, "apb import: unknown option or second model '%s' (apb import --help)\n", argv[i]);
            bad = 1;
        } else
            in = argv[i];
    }
    if (!bad && (!in || !out)) {
        fprintf(stderr, "apb import: a MODEL.onnx and --out FILE.ckpt are required (apb import --help)\n");
        bad = 1;
    }
    if (bad)
        return 2;
    double t0 = apb_now();
    apb_model *m;
    apb_onnx_info info;
    apb_status s = apb_import_onnx(in, &o, out, &m, &info);
    if (s)
        return apb_cli_error("import", s);
    apb_model_memory mem;
    apb_model_memory_stats(m, &mem, NULL, NULL);
    printf("imported %s (%s, IR %lld, opset %d): %d nodes (%d not needed by the output) -> %d layers, "
           "%d batch norms kept\n", in, info.producer[0] ? info.producer : "unknown producer",
           (long long)info.ir_version, info.opset, info.nodes, info.skipped, info.layers, info.bn_kept);
    printf("input %dx%dx%d, %d classes, %lld conv/linear weights; wrote %s in %.2f s\n", m->cfg.in_c,
           m->cfg.in_h, m->cfg.in_w, m->cfg.num_classes, (long long)mem.weights, out, apb_now() - t0);
    apb_model_free(m);
    return 0;
}
