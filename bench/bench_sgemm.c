/* bench_sgemm.c - `apb bench sgemm`: apb_sgemm against OpenBLAS on the shapes the
 * conv layers produce (im2col GEMMs of small CNNs) plus a square 1024 case.
 *
 * OpenBLAS is only a yardstick: it is loaded at run time with dlopen so apb never
 * links it; without it the line says openblas_gflops=na ratio=na. Both libraries
 * get the same operands, a warm-up call and the same number of timed repeats;
 * GFLOP/s = 2*M*N*K / median time.
 *   apb bench sgemm [--threads T] [--reps R] [--shape MxNxK]   (options: --help)
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "options.h"
#include "rng.h"
#include "sgemm.h"
#include "threads.h"

/* cblas_sgemm with the row-major / no-transpose enum values spelled out. */
typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb, float beta,
                               float *C, int ldc);
typedef void (*set_threads_fn)(int n);
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111 };

typedef struct {
    cblas_sgemm_fn sgemm;
    set_threads_fn set_threads;
} openblas;

static openblas openblas_load(void)
{
    openblas ob = {0};
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return ob;
    *(void **)&ob.sgemm = dlsym(h, "cblas_sgemm");
    *(void **)&ob.set_threads = dlsym(h, "openblas_set_num_threads");
    return ob;
}

/* Median seconds per call over reps timed calls (after one warm-up). reps <= 0:
 * chosen so the case takes about 0.3 s (3..50 repeats). */
static double time_gemm(const openblas *ob, int M, int N, int K, const float *A, const float *B,
                        float *C, int reps)
{
    double t[64];
    for (int r = -1; r < reps; r++) {
        double t0 = apb_now();
        if (ob)
            ob->sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, M, N, K, 1.0f, A, K, B, N,
                      0.0f, C, N);
        else
            apb_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        double dt = apb_now() - t0;
        if (r < 0) {
            if (reps <= 0) {
                reps = (int)(0.3 / (dt > 1e-9 ? dt : 1e-9));
                reps = reps < 3 ? 3 : reps > 50 ? 50 : reps;
            }
            continue;
        }
        t[r] = dt;
    }
    return apb_median(t, reps);
}

static int bench_shape(const openblas *ob, int M, int N, int K, int threads, int reps)
{
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)K * N);
    float *C = malloc(sizeof(float) * (size_t)M * N);
    if (!A || !B || !C) {
        free(A), free(B), free(C);
        fprintf(stderr, "apb bench sgemm: out of memory for %dx%dx%d\n", M, N, K);
        return 1;
    }
    apb_rng rng;
    apb_rng_seed(&rng, 42);
    for (long i = 0; i < (long)M * K; i++)
        A[i] = apb_rng_uniform(&rng) - 0.5f;
    for (long i = 0; i < (long)K * N; i++)
        B[i] = apb_rng_uniform(&rng) - 0.5f;
    double flop = 2.0 * M * N * K;
    apb_threads_set(threads);
    double g = flop / time_gemm(NULL, M, N, K, A, B, C, reps) / 1e9;
    printf("op=sgemm m=%d n=%d k=%d threads=%d gflops=%.1f", M, N, K, threads, g);
    if (ob->sgemm) {
        if (ob->set_threads)
            ob->set_threads(threads);
        double go = flop / time_gemm(ob, M, N, K, A, B, C, reps) / 1e9;
        printf(" openblas_gflops=%.1f ratio=%.2f\n", go, g / go);
    } else {
        printf(" openblas_gflops=na ratio=na\n");
    }
    fflush(stdout);
    free(A), free(B), free(C);
    return 0;
}

void apb_bench_sgemm_usage(FILE *f)
{
    fprintf(f, "usage: apb bench sgemm [--threads T] [--reps R] [--shape MxNxK]\n"
               "  our fp32 GEMM against OpenBLAS (baseline, if installed) on the conv-layer shapes\n"
               "  --threads T    thread count (default: 1 and 2, both measured)\n"
               "  --reps R       timed calls per case, 1..64 (default: about 0.3 s, 3..50)\n"
               "  --shape MxNxK  one shape instead of the built-in list\n");
}

int apb_bench_sgemm(int argc, char **argv)
{
    int threads = 0, reps = 0, bad = 0, sm = 0, sn = 0, sk = 0;
    const char *shape = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            apb_bench_sgemm_usage(stdout);
            return 0;
        }
        if (apb_opt_int(argc, argv, &i, "--threads", &threads, &bad) ||
            apb_opt_int(argc, argv, &i, "--reps", &reps, &bad) ||
            apb_opt_str(argc, argv, &i, "--shape", &shape, &bad)) {
            if (bad)
                return 1;
            continue;
        }
        fprintf(stderr, "apb bench sgemm: unknown option '%s'\n", argv[i]);
        apb_bench_sgemm_usage(stderr);
        return 1;
    }
    if (reps < 0 || reps > 64) {
        fprintf(stderr, "apb bench sgemm: --reps must be in 1..64, got %d\n", reps);
        return 1;
    }
    if (shape && (sscanf(shape, "%dx%dx%d", &sm, &sn, &sk) != 3 || sm < 1 || sn < 1 || sk < 1)) {
        fprintf(stderr, "apb bench sgemm: --shape wants MxNxK, got '%s'\n", shape);
        return 1;
    }
    static const int shapes[][3] = {{64, 1024, 576}, {128, 256, 1152}, {256, 64, 2304},
                                    {512, 49, 4608}, {64, 3136, 576},  {1024, 1024, 1024}};
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    openblas ob = openblas_load();
    int tlist[2] = {1, 2}, nt = 2;
    if (threads > 0)
        tlist[0] = threads, nt = 1;
    for (int s = 0; s < (shape ? 1 : nshapes); s++)
        for (int t = 0; t < nt; t++) {
            int M = shape ? sm : shapes[s][0], N = shape ? sn : shapes[s][1];
            int K = shape ? sk : shapes[s][2];
            if (bench_shape(&ob, M, N, K, tlist[t], reps))
                return 1;
        }
    return 0;
}
