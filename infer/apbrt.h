/* apbrt.h - libapbrt, the deployable inference runtime for .apb models.
 *
 * A .apb file (docs/FORMAT.md) holds a compressed network: full-precision layers,
 * APB layers (a packed sign plane, a per-row alpha and a sparse full-precision
 * residual), 2-bit layers, folded batch norm, activation quantizers, class names
 * and the input preprocessing. libapbrt loads it, validates every byte it uses,
 * and runs it with the bit-level kernels, giving the answers the training graph
 * gives in eval mode. It depends only on libc, libm and OpenMP.
 *
 * Usage:
 *
 *     #include <apbrt.h>              // cc app.c $(pkg-config --cflags --libs apbrt)
 *
 *     apbrt_model *m;
 *     if (apbrt_load("model.apb", &m) != 0) {
 *         fprintf(stderr, "%s\n", apbrt_errmsg());   // names the file and what is wrong
 *         return 1;
 *     }
 *     int c, h, w;
 *     apbrt_input_shape(m, &c, &h, &w);
 *     float *x = calloc((size_t)c * h * w, sizeof *x);   // [1, C, H, W], normalized
 *     float *logits = malloc(apbrt_num_classes(m) * sizeof *logits);
 *     if (apbrt_run(m, x, 1, logits) != 0) { ... apbrt_errmsg() ... }
 *     ...
 *     apbrt_free(m);
 *
 * Input: pixels in [0,1], resized (shorter side to apbrt_resize_short(), when
 * non-zero) and center-cropped to H x W, then x = (p - mean[c]) / std[c].
 *
 * Errors: functions returning int give 0 on success, otherwise a non-zero code
 * (the apb_status values of core/status.h) and apbrt_errmsg() says what went wrong.
 * Threads: apbrt_set_threads() (process-wide; default APB_THREADS or OpenMP's).
 * Results do not depend on the thread count. One model must not be run from two
 * threads at once (it owns its workspace); separate models are independent.
 * Environment: APBRT_REFERENCE=1 at load time selects the float reference path
 * (activations quantized in float, dense effective weights, sgemm) instead of the
 * bit kernels; APB_ISA=ref|avx2|avx512 caps the kernel level.
 */
#ifndef APBRT_H
#define APBRT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libapbrt.so exports exactly the functions marked APBRT_API: the runtime is
 * compiled with -fvisibility=hidden, so its internals (apb_* kernels, arenas,
 * ...) can never clash with a program's own symbols. */
#if defined(__GNUC__)
#define APBRT_API __attribute__((visibility("default")))
#else
#define APBRT_API
#endif

typedef struct apbrt_model apbrt_model;

/* Reads and validates a model file. On failure *out is NULL. */
APBRT_API int apbrt_load(const char *path, apbrt_model **out);
/* Same from memory (the buffer is not retained). */
APBRT_API int apbrt_load_memory(const void *buf, size_t size, apbrt_model **out);
/* As apbrt_load_memory; error messages name `name` (e.g. the file it came from). */
APBRT_API int apbrt_load_memory_named(const void *buf, size_t size, const char *name,
                                      apbrt_model **out);
APBRT_API void apbrt_free(apbrt_model *m);

/* x: [n, C, H, W] normalized input; logits: [n, K]. A batch goes through the
 * network apbrt_microbatch(m) images at a time (in equal passes), so a layer's
 * output is still in the caches when the next layer reads it; results do not
 * depend on the batch or on that split. The first run sizes the workspace for
 * one pass; later runs allocate nothing. */
APBRT_API int apbrt_run(apbrt_model *m, const float *x, int n, float *logits);
/* Images per pass: as many as keep the model's largest activation under 64 MB
 * (at least 1); the environment variable APBRT_MICROBATCH=k sets k. */
APBRT_API int apbrt_microbatch(const apbrt_model *m);

/* Message of the last failure on this thread ("" when none). */
APBRT_API const char *apbrt_errmsg(void);
APBRT_API void apbrt_set_threads(int n);
APBRT_API int apbrt_get_threads(void);

/* Getters. */
APBRT_API void apbrt_input_shape(const apbrt_model *m, int *c, int *h, int *w);
APBRT_API int apbrt_num_classes(const apbrt_model *m);
APBRT_API const char *apbrt_class_name(const apbrt_model *m, int i); /* NULL when out of range */
APBRT_API void apbrt_normalization(const apbrt_model *m, float mean[3], float std[3]);
APBRT_API int apbrt_resize_short(const apbrt_model *m);
APBRT_API const char *apbrt_model_name(const apbrt_model *m);
APBRT_API size_t apbrt_file_size(const apbrt_model *m);      /* bytes of the loaded file */
APBRT_API int apbrt_uses_reference(const apbrt_model *m);    /* 1 when running the float reference path */
/* Approximate layers (`apb export --int8-stem`: an 8-bit first conv, not what
 * training computed): how many the model has, and whether they run as stored
 * (0, the default) or as the exact FP32 convs they came from (1). */
APBRT_API int apbrt_approximate_layers(const apbrt_model *m);
APBRT_API void apbrt_set_exact(apbrt_model *m, int on);

/* Per-layer information for `apb info` / `apb bench`. */
typedef struct {
    const char *kind;        /* "conv", "linear", "bn", "relu", ... */
    const char *weights;     /* "fp32", "apb", "q2" or "" for layers without weights */
    const char *act;         /* input quantizer: "fp", "bin", "q2", "u8", "s8" (8-bit codes),
                                "s8d" (approximate 8-bit conv, per-sample step: apbrt_set_exact) */
    int in_c, in_h, in_w;    /* input shape of one sample */
    int out_c, out_h, out_w; /* output shape of one sample */
    int kh, kw, stride, pad;
    long params;             /* weights (conv/linear) or values (BN); biases not included */
    long fp_params;          /* of those, kept in full precision (APB: outliers; pruned: kept) */
    long bias;               /* bias values */
    double bits;             /* paper formula (docs/METHOD.md "Memory accounting"), bias included */
    double weight_bits;      /* the same without the bias (compressed-weight accounting) */
    int compressed;          /* 1 for APB, binary, 2-bit and pruned layers */
    size_t bytes;            /* bytes of this layer in the file (record + section) */
    int fused;               /* 1 when this layer runs fused into the previous one */
    const char *kernel;      /* conv/linear: "sgemm", the bit GEMM "1x1", "1x2", "2x2", "1x8"
                                (binary weights x 8-bit activations, integer) or "8x8" (an
                                approximate 8-bit conv, integer); else "" */
    double seconds;          /* accumulated run time while profiling (0 if fused) */
} apbrt_layer_info;

APBRT_API int apbrt_num_layers(const apbrt_model *m);
/* Fills *info for layer i (0 <= i < apbrt_num_layers); non-zero when out of range. */
APBRT_API int apbrt_layer_info_get(const apbrt_model *m, int i, apbrt_layer_info *info);

/* Profiling: while on, apbrt_run accumulates wall seconds per layer (reported in
 * apbrt_layer_info.seconds). apbrt_profile_reset() zeroes the counters. */
APBRT_API void apbrt_set_profile(apbrt_model *m, int on);
APBRT_API void apbrt_profile_reset(apbrt_model *m);

#ifdef __cplusplus
}
#endif

#endif
