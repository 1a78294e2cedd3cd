/* bench_model.c - `apb bench MODEL.apb` and `apb bench --model NAME --quant Q --act A`:
 * end-to-end inference latency and throughput of a .apb model through libapbrt,
 * with a per-layer time table.
 *
 * --model builds a random model in memory (bench/randmodel.h: the architecture's
 * real layer sizes, APB layers with the requested fraction of full-precision
 * weights) so every configuration of the issue can be timed without training.
 * Each setting runs warm-up passes (the first sizes the workspace), then R timed
 * passes on the same random input; per-layer times come from the runtime's
 * profiling counters read after every pass, so the table shows per-pass medians
 * that add up (nearly) to the end-to-end median. Without --threads, 1 and 2
 * threads are both measured.
 *
 * The baseline, measured in the same run on the same input and thread count:
 * the same model loaded on the runtime's float reference path (APBRT_REFERENCE:
 * every conv/linear runs sgemm on its dense fp32 effective weights), i.e. what
 * the network costs as an uncompressed fp32 model of the same geometry;
 * dense_ms_median and speedup_vs_dense on the line (--no-baseline skips it).
 *
 * --model defaults follow the architecture: convnet 1x28x28 with 10 classes,
 * resnet20 and vgg-small 3x32x32 with 10, resnet18 3x224x224 with 1000;
 * weights apb, activations fp.
 *
 * Besides the wall-clock median / p90 / min, the line reports cpu_ms_median,
 * the process CPU time per pass: on a loaded machine a 1-thread wall time
 * includes the time the core was given to others, the CPU time does not (with
 * 2 threads it also counts OpenMP barrier spinning, so it is an upper bound on
 * the work, not a latency).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apbrt.h"
#include "apbrt_internal.h"
#include "bench.h"
#include "cpu.h"
#include "fileio.h"
#include "options.h"
#include "model.h"
#include "randmodel.h"
#include "rng.h"

typedef struct {
    const char *name;   /* file path or "NAME (random)" */
    const char *quant, *act;
    size_t file_bytes;
    double bits_per_weight;      /* compressed layers, paper formula (32 when none) */
    double file_bits_per_weight; /* 8 * file bytes / all conv+linear weights */
} bench_info;

/* Summary of the layer table: compressed-layer bits/weight and the dominant
 * weight/activation kinds (for a model given as a file). */
static void model_summary(apbrt_model *m, bench_info *bi, const char **wkind, const char **akind)
{
    double cbits = 0, cw = 0, all = 0;
    long nw[3] = {0, 0, 0}, na[4] = {0, 0, 0, 0};
    for (int i = 0; i < apbrt_num_layers(m); i++) {
        apbrt_layer_info li;
        if (apbrt_layer_info_get(m, i, &li) || !li.kernel[0])
            continue;
        all += (double)li.params;
        if (li.compressed) {
            cbits += li.weight_bits;
            cw += (double)li.params;
            nw[!strcmp(li.weights, "apb") ? 1 : 2] += li.params;
            na[!strcmp(li.act, "fp") ? 0 : !strcmp(li.act, "bin") ? 1 : !strcmp(li.act, "q2") ? 2 : 3] +=
                li.params;
        }
    }
    bi->bits_per_weight = cw > 0 ? cbits / cw : 32.0;
    bi->file_bits_per_weight = all > 0 ? 8.0 * (double)bi->file_bytes / all : 0;
    *wkind = cw == 0 ? "fp" : nw[1] >= nw[2] ? "apb" : "q2";
    int top = 0;
    for (int k = 1; k < 4; k++)
        top = na[k] > na[top] ? k : top;
    static const char *an[4] = {"fp", "binary", "q2", "int8"};
    *akind = cw == 0 ? "fp" : an[top];
}

/* CPU seconds used by the whole process (all threads). With one thread this is
 * the pass's latency minus the time other processes held the core, which makes
 * it the steadier figure on a shared machine. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Two untimed passes (the first sizes the workspace); *warm is the second's time. */
static int warm_up(apbrt_model *m, const float *x, int batch, float *logits, double *warm)
{
    for (int w = 0; w < 2; w++) {
        double t0 = apb_now();
        if (apbrt_run(m, x, batch, logits)) {
            fprintf(stderr, "apb bench: %s\n", apbrt_errmsg());
            return 1;
        }
        *warm = apb_now() - t0;
    }
    return 0;
}

/* Passes for about 3 s of work (5..10000) when the user gave no --reps. */
static int auto_reps(int reps, double warm)
{
    if (reps > 0)
        return reps;
    reps = (int)ceil(3.0 / (warm > 1e-6 ? warm : 1e-6));
    return reps < 5 ? 5 : reps > 10000 ? 10000 : reps;
}

/* reps timed passes: wall seconds t[reps], process CPU seconds ct[reps] and,
 * when lt is given, per-layer seconds lt[L][reps] from the profiling counters. */
static int timed_passes(apbrt_model *m, const float *x, int batch, float *logits, int reps,
                        double *t, double *ct, double *lt)
{
    int L = apbrt_num_layers(m);
    apbrt_set_profile(m, lt != NULL);
    for (int k = 0; k < reps; k++) {
        apbrt_profile_reset(m);
        double c0 = cpu_now(), t0 = apb_now();
        if (apbrt_run(m, x, batch, logits)) {
            fprintf(stderr, "apb bench: %s\n", apbrt_errmsg());
            apbrt_set_profile(m, 0);
            return 1;
        }
        t[k] = apb_now() - t0;
        ct[k] = cpu_now() - c0;
        for (int i = 0; lt && i < L; i++) {
            apbrt_layer_info li;
            apbrt_layer_info_get(m, i, &li);
            lt[(long)i * reps + k] = li.seconds;
        }
    }
    apbrt_set_profile(m, 0);
    return 0;
}

/* The batch's input (one random image per slot, the same for every setting)
 * and its logits; 1 (said) when out of memory. */
static int bench_buffers(apbrt_model *m, int batch, float **x, float **logits)
{
    int C, H, W;
    apbrt_input_shape(m, &C, &H, &W);
    long in_sz = (long)C * H * W;
    *x = malloc(sizeof(float) * (size_t)(in_sz * batch));
    *logits = malloc(sizeof(float) * (size_t)apbrt_num_classes(m) * batch);
    if (!*x || !*logits) {
        fprintf(stderr, "apb bench: out of memory for a batch of %d\n", batch);
        free(*x), free(*logits);
        return 1;
    }
    apb_rng r;
    apb_rng_seed(&r, 12345);
    for (long i = 0; i < in_sz * batch; i++)
        (*x)[i] = apb_rng_normal(&r);
    return 0;
}

/* --ab SWITCH: one of the runtime's switches on and off in alternate passes
 * (the order swapped every other pair), so both settings see the same moments
 * of a shared host; their medians, the ratio and the share of pairs the
 * switch won. split: a batch's convs run whole images a thread (run_batch);
 * bands: a one-image bit conv's units claimed alike in its GEMM and epilogue,
 * fused (apbrt_fast.c). Both give the same results; the switch ends on. */
static void ab_set(const char *which, int on)
{
    if (!strcmp(which, "split"))
        apbrt_set_split(on);
    else
        apbrt_bands_off = !on;
}

static int bench_ab(apbrt_model *m, const bench_info *bi, int batch, int threads, int reps, const char *which)
{
    int rc = 1;
    float *x, *logits;
    double *t[2] = {NULL, NULL}, warm = 0, won = 0;
    if (bench_buffers(m, batch, &x, &logits))
        return 1;
    apbrt_set_threads(threads);
    ab_set(which, 0);
    if (warm_up(m, x, batch, logits, &warm))
        goto out;
    ab_set(which, 1);
    if (warm_up(m, x, batch, logits, &warm))
        goto out;
    reps = auto_reps(reps, 2 * warm);
    t[0] = malloc(sizeof(double) * (size_t)reps), t[1] = malloc(sizeof(double) * (size_t)reps);
    if (!t[0] || !t[1])
        goto out;
    for (int k = 0; k < reps; k++)
        for (int j = 0; j < 2; j++) {
            int on = k % 2 ? j : 1 - j;
            ab_set(which, on);
            double t0 = apb_now();
            if (apbrt_run(m, x, batch, logits)) {
                fprintf(stderr, "apb bench: %s\n", apbrt_errmsg());
                goto out;
            }
            t[on][k] = apb_now() - t0;
        }
    for (int k = 0; k < reps; k++)
        won += t[1][k] < t[0][k];
    double on = apb_median(t[1], reps), off = apb_median(t[0], reps);
    printf("op=ab switch=%s model=%s quant=%s act=%s batch=%d threads=%d isa=%s reps=%d on_ms_median=%.3f "
           "off_ms_median=%.3f off_over_on=%.3f on_faster_pct=%.0f\n",
           which, bi->name, bi->quant, bi->act, batch, threads, apb_isa_name(apb_isa_active()), reps, on * 1e3,
           off * 1e3, off / on, 100.0 * won / reps);
    rc = 0;
out:
    ab_set(which, 1);
    free(x), free(logits), free(t[0]), free(t[1]);
    return rc;
}

/* dense: the baseline model (the same file on the dense fp32 path), or NULL. */
static int bench_one(apbrt_model *m, apbrt_model *dense, const bench_info *bi, int batch,
                     int threads, int reps, int table)
{
    int C, H, W, L = apbrt_num_layers(m), K = apbrt_num_classes(m);
    apbrt_input_shape(m, &C, &H, &W);
    float *x, *logits;
    double *t = NULL, *ct = NULL, *lt = NULL, *tmp = NULL, *td = NULL, *ctd = NULL;
    int rc = 1, dreps = 0;
    if (bench_buffers(m, batch, &x, &logits))
        return 1;
    apbrt_set_threads(threads);
    double warm = 0;
    if (warm_up(m, x, batch, logits, &warm))
        goto out;
    int asked = reps;
    reps = auto_reps(asked, warm);
    t = malloc(sizeof(double) * (size_t)reps);
    ct = malloc(sizeof(double) * (size_t)reps);
    lt = malloc(sizeof(double) * (size_t)reps * L);   /* [L][reps] per-layer seconds */
    tmp = malloc(sizeof(double) * (size_t)reps);
    if (!t || !ct || !lt || !tmp) {
        fprintf(stderr, "apb bench: out of memory for %d repetitions\n", reps);
        goto out;
    }
    if (timed_passes(m, x, batch, logits, reps, t, ct, lt))
        goto out;
    for (long i = 0; i < (long)batch * K; i++)
        if (!isfinite(logits[i])) {
            fprintf(stderr, "apb bench: warning: non-finite logits (random weights overflow)\n");
            break;
        }
    if (dense) {
        /* without --reps its own pass count: it is the slower model */
        if (warm_up(dense, x, batch, logits, &warm))
            goto out;
        dreps = auto_reps(asked, warm);
        td = malloc(sizeof(double) * (size_t)dreps);
        ctd = malloc(sizeof(double) * (size_t)dreps);
        if (!td || !ctd) {
            fprintf(stderr, "apb bench: out of memory for %d repetitions\n", dreps);
            goto out;
        }
        if (timed_passes(dense, x, batch, logits, dreps, td, ctd, NULL))
            goto out;
    }
    double med = apb_median(t, reps), p90 = apb_percentile(t, reps, 90);
    printf("op=infer model=%s quant=%s act=%s input=%dx%dx%d batch=%d threads=%d isa=%s reps=%d "
           "latency_ms_median=%.3f latency_ms_p90=%.3f images_per_s=%.1f file_bytes=%zu "
           "bits_per_weight=%.4f file_bits_per_weight=%.4f latency_ms_min=%.3f cpu_ms_median=%.3f "
           "microbatch=%d",
           bi->name, bi->quant, bi->act, C, H, W, batch, threads, apb_isa_name(apb_isa_active()),
           reps, 1e3 * med, 1e3 * p90, batch / med, bi->file_bytes, bi->bits_per_weight,
           bi->file_bits_per_weight, 1e3 * apb_percentile(t, reps, 0), 1e3 * apb_median(ct, reps),
           apbrt_microbatch(m));
    if (dense) {
        double dmed = apb_median(td, dreps);
        printf(" dense_reps=%d dense_ms_median=%.3f speedup_vs_dense=%.2f\n", dreps, 1e3 * dmed,
               dmed / med);
    } else {
        printf(" dense_ms_median=na speedup_vs_dense=na\n");
    }
    if (table) {
        /* per-kind totals: conv/linear split by kernel, the rest by layer kind */
        const char *gname[32];
        double gms[32];
        int ng = 0;
        double sum = 0;
        printf("  %3s %-8s %-9s %-6s %-16s %-16s %-7s %9s %6s\n", "#", "kind", "w/act", "kernel",
               "in", "out", "k/s/p", "ms", "%");
        for (int i = 0; i < L; i++) {
            apbrt_layer_info li;
            apbrt_layer_info_get(m, i, &li);
            memcpy(tmp, lt + (long)i * reps, sizeof(double) * (size_t)reps);
            double ms = 1e3 * apb_median(tmp, reps);
            sum += ms;
            char wa[32] = "", in[32], outs[32], ksp[32] = "";
            if (li.kernel[0])
                snprintf(wa, sizeof wa, "%s/%s", li.weights, li.act);
            snprintf(in, sizeof in, "%dx%dx%d", li.in_c, li.in_h, li.in_w);
            snprintf(outs, sizeof outs, "%dx%dx%d", li.out_c, li.out_h, li.out_w);
            if (li.kh)
                snprintf(ksp, sizeof ksp, "%d/%d/%d", li.kh, li.stride, li.pad);
            if (li.fused)
                printf("  %3d %-8s %-9s %-6s %-16s %-16s %-7s %9s %6s\n", i, li.kind, wa,
                       li.kernel, in, outs, ksp, "fused", "");
            else
                printf("  %3d %-8s %-9s %-6s %-16s %-16s %-7s %9.3f %5.1f%%\n", i, li.kind, wa,
                       li.kernel, in, outs, ksp, ms, 100.0 * ms / (1e3 * med));
            if (li.fused)
                continue;
            const char *g = li.kernel[0] ? li.kernel : li.kind;
            int j = 0;
            while (j < ng && strcmp(gname[j], g))
                j++;
            if (j == ng && ng < 32) {
                gname[ng] = g;
                gms[ng++] = 0;
            }
            if (j < ng)
                gms[j] += ms;
        }
        printf("  time by kernel/kind (ms, %% of the end-to-end median):");
        for (int j = 0; j < ng; j++)
            printf(" %s=%.3f(%.1f%%)", gname[j], gms[j], 100.0 * gms[j] / (1e3 * med));
        printf(" | layers sum %.3f ms, outside layers %.3f ms\n", sum, 1e3 * med - sum);
    }
    rc = 0;
out:
    free(x);
    free(logits);
    free(t);
    free(ct);
    free(lt);
    free(tmp);
    free(td);
    free(ctd);
    return rc;
}

static int parse_input(const char *s, int *c, int *h, int *w)
{
    char tail;
    return sscanf(s, "%dx%dx%d%c", c, h, w, &tail) == 3 && *c > 0 && *h > 0 && *w > 0;
}

/* --model defaults: the input each architecture is built for. */
static const struct {
    const char *arch;
    const char *input;
    int classes;
} arch_defaults[] = {
    {"convnet", "1x28x28", 10},
    {"resnet20", "3x32x32", 10},
    {"vgg-small", "3x32x32", 10},
    {"resnet18", "3x224x224", 1000},
};

void apb_bench_model_usage(FILE *f)
{
    fprintf(f, "usage: apb bench MODEL.apb [--batch B] [--threads T] [--reps R] [--no-table]\n"
               "                 [--no-baseline]\n"
               "       apb bench --model NAME [--quant Q] [--act A] [--input CxHxW] [--classes K]\n"
               "                 [--fp-fraction F] [--quant-first] [--quant-last] [--int8-stem]\n"
               "                 [--batch B]\n"
               "                 [--threads T] [--reps R] [--no-table] [--no-baseline]\n"
               "                 [--ab split|bands]\n"
               "  inference latency through libapbrt, with a per-layer time table; baseline: the\n"
               "  same model on the dense fp32 path (sgemm on its effective weights), same run\n"
               "  MODEL.apb        a model file\n"
               "  --model NAME     a random model: convnet, resnet20, vgg-small, resnet18\n"
               "  --quant Q        weights apb|binary|q2|fp|prune:S (default apb)\n"
               "  --act A          activations fp|binary|q2|int8 (default fp)\n"
               "  --input CxHxW    input (default: convnet 1x28x28, resnet20 and vgg-small\n"
               "                   3x32x32, resnet18 3x224x224)\n"
               "  --classes K      outputs (default: 1000 for resnet18, 10 for the others)\n"
               "  --fp-fraction F  full-precision fraction of APB layers, in [0,1] (default 0.03)\n"
               "  --quant-first    compress the first conv too (full precision by default)\n"
               "  --int8-stem      the first conv as `apb export --int8-stem` makes it (approximate)\n"
               "  --quant-last     compress the last linear too (full precision by default)\n"
               "  --batch B        images per pass (default 1)\n"
               "  --threads T      thread count (default: 1 and 2, both measured)\n"
               "  --reps R         timed passes (default: about 3 s of passes, at least 5)\n"
               "  --no-table       only the key=value line, no per-layer table\n"
               "  --no-baseline    skip the dense fp32 baseline\n"
               "  --ab SWITCH      time the runtime with SWITCH on and off in alternate passes\n"
               "                   (split: a batch's convs a whole image per thread; bands: a\n"
               "                   single image's bit convs cut alike in every stage); prints\n"
               "                   both medians, off/on and the pairs won, not the table\n");
}

/* The baseline: the same bytes loaded with APBRT_REFERENCE=1, which the runtime
 * reads at load time only, so the variable is set for this one load. */
static int load_dense(const unsigned char *buf, size_t size, const char *name, apbrt_model **out)
{
    const char *was = getenv("APBRT_REFERENCE");
    char *saved = was ? strdup(was) : NULL;
    setenv("APBRT_REFERENCE", "1", 1);
    int e = apbrt_load_memory_named(buf, size, name, out);
    if (saved)
        setenv("APBRT_REFERENCE", saved, 1);
    else
        unsetenv("APBRT_REFERENCE");
    free(saved);
    return e;
}

int apb_bench_model(int argc, char **argv)
{
    const char *path = NULL, *arch = NULL, *quant = "apb", *act = "fp", *input = NULL, *ab = NULL;
    int bad = 0, classes = 0, batch = 1, threads = 0, reps = 0, table = 1, baseline = 1;
    int quant_first = 0, quant_last = 0, int8_stem = 0;
    double fp_fraction = 0.03;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            apb_bench_model_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--no-table"))
            table = 0;
        else if (!strcmp(argv[i], "--no-baseline"))
            baseline = 0;
        else if (!strcmp(argv[i], "--quant-first"))
            quant_first = 1;
        else if (!strcmp(argv[i], "--quant-last"))
            quant_last = 1;
        else if (!strcmp(argv[i], "--int8-stem"))
            int8_stem = 1;
        else if (apb_opt_str(argc, argv, &i, "--model", &arch, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--quant", &quant, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--act", &act, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--input", &input, &bad))
            ;
        else if (apb_opt_str(argc, argv, &i, "--ab", &ab, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--classes", &classes, &bad))
            ;
        else if (apb_opt_float(argc, argv, &i, "--fp-fraction", &fp_fraction, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--batch", &batch, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--threads", &threads, &bad))
            ;
        else if (apb_opt_int(argc, argv, &i, "--reps", &reps, &bad))
            ;
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "apb bench: unknown option '%s' (apb bench --help)\n", argv[i]);
            bad = 1;
        }
    }
    int c = 0, h = 0, w = 0;
    if (!bad && !!path == !!arch) {
        fprintf(stderr, "apb bench: give either MODEL.apb or --model NAME\n");
        bad = 1;
    }
    if (!bad && arch) {
        /* an unknown name keeps the ImageNet geometry; the builder names the error */
        size_t k = 0, nd = sizeof arch_defaults / sizeof arch_defaults[0];
        while (k < nd && strcmp(arch_defaults[k].arch, arch))
            k++;
        if (!input)
            input = k < nd ? arch_defaults[k].input : "3x224x224";
        if (!classes)
            classes = k < nd ? arch_defaults[k].classes : 1000;
        if (!parse_input(input, &c, &h, &w)) {
            fprintf(stderr, "apb bench: --input '%s' is not CxHxW (e.g. 3x224x224)\n", input);
            bad = 1;
        }
    }
    if (!bad && (batch < 1 || reps < 0 || (arch && classes < 2) ||
                 !(fp_fraction >= 0 && fp_fraction <= 1))) {
        fprintf(stderr, "apb bench: need --batch >= 1, --reps >= 0, --classes >= 2, "
                        "--fp-fraction in [0,1]\n");
        bad = 1;
    }
    if (!bad && ab && strcmp(ab, "split") && strcmp(ab, "bands")) {
        fprintf(stderr, "apb bench: --ab takes split or bands, not '%s'\n", ab);
        bad = 1;
    }
    if (bad)
        return 2;
    apbrt_model *m = NULL, *dense = NULL;
    bench_info bi = {0};
    const char *wk = NULL, *ak = NULL;
    char name[64];
    unsigned char *buf = NULL;
    size_t size = 0;
    apb_status s;
    if (arch) {
        apb_model_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
        cfg.in_c = c, cfg.in_h = h, cfg.in_w = w, cfg.num_classes = classes;
        cfg.quant_first = quant_first, cfg.quant_last = quant_last;
        cfg.prune_sparsity = 0.9f;
        s = apb_wquant_parse(quant, &cfg.wq, &cfg.prune_sparsity);
        if (!s)
            s = apb_aquant_parse(act, &cfg.aq);
        if (s)
            return apb_cli_error("bench", s);
        double t0 = apb_now();
        apb_model *rm;
        if ((s = apb_random_model_cfg(&cfg, fp_fraction, 1, &rm)))
            return apb_cli_error("bench", s);
        s = apb_random_model_export_opt(rm, int8_stem, &buf, &size);
        apb_model_free(rm);
        if (s)
            return apb_cli_error("bench", s);
        fprintf(stderr, "apb bench: random %s built and exported in %.1f s\n", arch, apb_now() - t0);
        snprintf(name, sizeof name, "%s", arch);
        bi.name = name;
    } else {
        if ((s = apb_file_read(path, &buf, &size)))
            return apb_cli_error("bench", s);
        bi.name = path;
    }
    int rc = 1;
    if (apbrt_load_memory_named(buf, size, bi.name, &m) ||
        (baseline && !ab && load_dense(buf, size, bi.name, &dense))) {
        fprintf(stderr, "apb bench: %s\n", apbrt_errmsg());
        goto out;
    }
    bi.file_bytes = apbrt_file_size(m);
    model_summary(m, &bi, &wk, &ak);
    bi.quant = arch ? quant : wk;
    bi.act = arch ? act : ak;
    if (apbrt_uses_reference(m))
        fprintf(stderr, "apb bench: note: APBRT_REFERENCE is set, timing the float reference path\n");
    rc = 0;
    /* the given thread count, else 1 and 2 */
    for (int t = threads > 0 ? threads : 1; t <= (threads > 0 ? threads : 2) && !rc; t++)
        rc = ab ? bench_ab(m, &bi, batch, t, reps, ab) : bench_one(m, dense, &bi, batch, t, reps, table);
out:
    apbrt_free(m);
    apbrt_free(dense);
    free(buf);
    return rc;
}
