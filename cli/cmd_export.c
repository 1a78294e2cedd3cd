/* cmd_export.c - `apb export --ckpt PATH --out model.apb`. */
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "export.h"

int apb_cmd_export(int argc, char **argv)
{
    const char *ckpt = NULL, *out = NULL;
    int bad = 0, int8_stem = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: apb export --ckpt PATH --out model.apb [--int8-stem]\n"
                   "  --int8-stem  run the first conv as an approximate 8-bit integer conv (per-image\n"
                   "               input step, 8-bit weights per output channel): faster, not what\n"
                   "               training computed; `apb info` names it and `apb infer --data`\n"
                   "               prints its accuracy next to the exact one\n");
            return 0;
        } else if (!strcmp(argv[i], "--int8-stem")) {
            int8_stem = 1;
        } else if (apb_opt_str(argc, argv, &i, "--ckpt", &ckpt, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--out", &out, &bad))
            ;
        else {
            fprintf(stderr, "apb export: unknown option '%s'\n", argv[i]);
            bad = 1;
        }
    }
    if (!bad && (!ckpt || !out)) {
        fprintf(stderr, "apb export: --ckpt and --out are required\n");
        bad = 1;
    }
    if (bad)
        return 2;
    apb_ckpt ck;
    apb_status s = apb_ckpt_load(ckpt, &ck);
    if (s)
        return apb_cli_error("export", s);
    apb_model *m = NULL;
    s = apb_ckpt_model(&ck, &m);
    size_t bytes = 0;
    if (!s)
        s = apb_export_model_opt(m, &ck, out, int8_stem, &bytes);
    if (!s) {
        apb_model_memory mem;
        apb_model_memory_stats(m, &mem, NULL, NULL);
        printf("wrote %s: %zu bytes (%.3f bits per conv/linear weight in the file); ", out, bytes,
               8.0 * (double)bytes / (double)mem.weights);
        /* nothing compressed: say full precision, not "0 bits/weight" */
        if (mem.cweights == 0)
            printf("no compressed layers: 32 bits/weight (fp), 100%% full precision\n");
        else
            printf("compressed layers: %.4f bits/weight by the paper formula, %.3f%% full precision\n",
                   mem.bits_per_weight, 100 * mem.fp_fraction);
        if (int8_stem)
            printf("first conv: approximate 8-bit integer conv (--int8-stem)\n");
    }
    apb_model_free(m);
    apb_ckpt_free(&ck);
    return s ? apb_cli_error("export", s) : 0;
}
