/* bench_kernels.c - `apb bench kernels`: binary GEMMs, bit packing and the sparse
 * residual product against apb_sgemm on the same shapes, in the same run.
 *
 * Lines (key=value, medians over --reps):
 *   op=bgemm kind=.. m k n threads path gops sgemm_gops ratio   gops = M*N*K/t/1e9
 *     of apb_bgemm on already-packed (bit) operands, per call everything it does
 *     (the AMX path's int8 expansion included); path = amx or vpopcnt (the ISA
 *     kernels apb_bgemm chose for the call); sgemm_gops the same count for
 *     apb_sgemm
 *   op=pack  what=sign|2bit|conv_sign|conv_2bit ... gbits = N*K/t/1e9 and the
 *     packing time as a fraction of the 1x1 GEMM it feeds
 *   op=spmm  m k n density threads gops_dense_equiv ratio_vs_sgemm
 * Options: --threads N (default: 1 and 2), --reps R (default 5),
 *          --kind 1x1|1x2|2x2 (default all); apb_bench_kernels_usage lists them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bgemm.h"
#include "bitpack.h"
#include "options.h"
#include "cpu.h"
#include "rng.h"
#include "sgemm.h"
#include "spmm.h"
#include "threads.h"

typedef struct {
    int M, K, N;
    int C, HW; /* conv view (C x HW x HW image, 3x3, stride 1, pad 1); 0 = none */
} shape;

static const shape shapes[] = {{64, 576, 3136, 64, 56},  {128, 1152, 784, 128, 28},
                               {256, 2304, 196, 256, 14}, {512, 4608, 49, 512, 7},
                               {1024, 1024, 1024, 0, 0}};
#define NSHAPES 5

static double time_median(int reps, double *ts)
{
    return apb_median(ts, reps);
}

static double time_sgemm(const shape *s, const float *A, const float *B, float *C, int reps)
{
    double ts[64];
    apb_sgemm(0, 0, s->M, s->N, s->K, 1.0f, A, s->K, B, s->N, 0.0f, C, s->N);
    for (int r = 0; r < reps; r++) {
        double t0 = apb_now();
        apb_sgemm(0, 0, s->M, s->N, s->K, 1.0f, A, s->K, B, s->N, 0.0f, C, s->N);
        ts[r] = apb_now() - t0;
    }
    return time_median(reps, ts);
}

static double time_bgemm(apb_bgemm_kind kind, const shape *s, const apb_bitmat *A,
                         const apb_bitmat *B, int32_t *C, int reps, apb_status *st)
{
    double ts[64];
    *st = apb_bgemm(kind, s->M, s->N, s->K, A, B, NULL, C, s->N);
    for (int r = 0; r < reps && *st == APB_OK; r++) {
        double t0 = apb_now();
        *st = apb_bgemm(kind, s->M, s->N, s->K, A, B, NULL, C, s->N);
        ts[r] = apb_now() - t0;
    }
    return time_median(reps, ts);
}

static void fill_normal(apb_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = apb_rng_normal(r);
}

void apb_bench_kernels_usage(FILE *f)
{
    fprintf(f, "usage: apb bench kernels [--threads T] [--reps R] [--kind 1x1|1x2|2x2]\n"
               "  bit GEMMs, bit packing and sparse residual products against our fp32 sgemm\n"
               "  (baseline) on the same shapes\n"
               "  --threads T  thread count (default: 1 and 2, both measured)\n"
               "  --reps R     timed calls per case, 1..64 (default 5)\n"
               "  --kind K     one bit GEMM kind (default: all three)\n"
               "  environment: APB_BGEMM_AMX=0 turns the AMX path off, =1 forces it\n");
}

int apb_bench_kernels(int argc, char **argv)
{
    int threads = 0, reps = 5, bad = 0;
    const char *kind_s = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            apb_bench_kernels_usage(stdout);
            return 0;
        }
        if (apb_opt_int(argc, argv, &i, "--threads", &threads, &bad) ||
            apb_opt_int(argc, argv, &i, "--reps", &reps, &bad) ||
            apb_opt_str(argc, argv, &i, "--kind", &kind_s, &bad)) {
            if (bad)
                return 1;
            continue;
        }
        fprintf(stderr, "apb bench kernels: unknown option '%s'\n", argv[i]);
        apb_bench_kernels_usage(stderr);
        return 1;
    }
    if (reps < 1 || reps > 64) {
        fprintf(stderr, "apb bench kernels: --reps must be 1..64, got %d\n", reps);
        return 1;
    }
    int kinds[3] = {1, 1, 1};
    if (kind_s) {
        apb_bgemm_kind k;
        apb_status s = apb_bgemm_kind_parse(kind_s, &k);
        if (s != APB_OK)
            return apb_cli_error("bench kernels", s);
        kinds[0] = kinds[1] = kinds[2] = 0;
        kinds[k] = 1;
    }
    int tlist[2] = {1, 2}, nt = 2;
    if (threads > 0) {
        tlist[0] = threads;
        nt = 1;
    }
    int saved = apb_threads_get();
    printf("# apb bench kernels isa=%s amx_usable=%d amx_active=%d reps=%d "
           "(APB_BGEMM_AMX=0 off, =1 forced, unset automatic)\n",
           apb_isa_name(apb_isa_active()), apb_bgemm_amx_usable(), apb_bgemm_amx_active(), reps);
    apb_rng rng;
    apb_rng_seed(&rng, 1);
    apb_status st = APB_OK;
    for (int si = 0; si < NSHAPES && st == APB_OK; si++) {
        const shape *s = &shapes[si];
        int M = s->M, K = s->K, N = s->N, ld = apb_bits_ld(K);
        float *Af = malloc(sizeof(float) * (size_t)M * K), *Bf = malloc(sizeof(float) * (size_t)K * N);
        float *Bt = malloc(sizeof(float) * (size_t)N * K), *Cf = malloc(sizeof(float) * (size_t)M * N);
        uint64_t *as = malloc(8 * (size_t)M * ld), *am = malloc(8 * (size_t)M * ld);
        uint64_t *bs = malloc(8 * (size_t)N * ld), *bm = malloc(8 * (size_t)N * ld);
        int32_t *C = malloc(sizeof(int32_t) * (size_t)M * N);
        float *img = s->C ? malloc(sizeof(float) * (size_t)s->C * s->HW * s->HW) : NULL;
        if (!Af || !Bf || !Bt || !Cf || !as || !am || !bs || !bm || !C || (s->C && !img)) {
            fprintf(stderr, "apb bench kernels: out of memory for M=%d K=%d N=%d\n", M, K, N);
            return 1;
        }
        fill_normal(&rng, Af, (size_t)M * K);
        fill_normal(&rng, Bf, (size_t)K * N);
        fill_normal(&rng, Bt, (size_t)N * K);
        if (img)
            fill_normal(&rng, img, (size_t)s->C * s->HW * s->HW);
        st = apb_bitpack_2bit(M, K, Af, K, 0.7f, as, am, ld);
        if (st == APB_OK)
            st = apb_bitpack_2bit(N, K, Bt, K, 0.7f, bs, bm, ld);
        double t11_1 = 0;
        for (int ti = 0; ti < nt && st == APB_OK; ti++) {
            apb_threads_set(tlist[ti]);
            double tsg = time_sgemm(s, Af, Bf, Cf, reps);
            double sg = (double)M * N * K / tsg / 1e9;
            for (int k = 0; k < APB_BGEMM_KINDS && st == APB_OK; k++) {
                if (!kinds[k])
                    continue;
                apb_bitmat A = {as, k == APB_BGEMM_2X2 ? am : NULL, ld};
                apb_bitmat B = {bs, k == APB_BGEMM_1X1 ? NULL : bm, ld};
                double t = time_bgemm((apb_bgemm_kind)k, s, &A, &B, C, reps, &st);
                if (k == APB_BGEMM_1X1 && tlist[ti] == 1)
                    t11_1 = t;
                double g = (double)M * N * K / t / 1e9;
                const char *path = apb_bgemm_amx_chosen((apb_bgemm_kind)k, M, N, K) ? "amx"
                                   : apb_isa_active() == APB_ISA_AVX512        ? "vpopcnt"
                                                                               : apb_isa_name(apb_isa_active());
                printf("op=bgemm kind=%s m=%d k=%d n=%d threads=%d path=%s gops=%.1f "
                       "sgemm_gops=%.1f ratio=%.2f\n",
                       apb_bgemm_kind_name((apb_bgemm_kind)k), M, K, N, tlist[ti], path, g, sg,
                       g / sg);
                fflush(stdout);
            }
            /* sparse residual at the APB-typical densities */
            double dens[3] = {0.01, 0.05, 0.2};
            for (int di = 0; di < 3 && st == APB_OK; di++) {
                float *Rd = calloc((size_t)M * K, sizeof(float));
                if (!Rd)
                    return 1;
                for (size_t i = 0; i < (size_t)M * K; i++)
                    if (apb_rng_uniform(&rng) < dens[di])
                        Rd[i] = Af[i];
                apb_csr R;
                st = apb_csr_from_dense(&R, M, K, Rd, K);
                free(Rd);
                if (st != APB_OK)
                    break;
                double ts[64];
                apb_spmm(&R, N, Bf, N, Cf, N);
                for (int r = 0; r < reps; r++) {
                    double t0 = apb_now();
                    st = apb_spmm(&R, N, Bf, N, Cf, N);
                    ts[r] = apb_now() - t0;
                }
                double t = apb_median(ts, reps);
                printf("op=spmm m=%d k=%d n=%d density=%.2f threads=%d gops_dense_equiv=%.1f "
                       "ratio_vs_sgemm=%.2f\n",
                       M, K, N, dens[di], tlist[ti], (double)M * N * K / t / 1e9, tsg / t);
                fflush(stdout);
                apb_csr_free(&R);
            }
        }
        /* packing cost (single thread: the packers are serial) */
        if (st == APB_OK) {
            double ts[64], tc[64], t2[64], tc2[64];
            apb_conv_geom g = {s->C, s->HW, s->HW, 3, 3, 1, 1};
            for (int r = 0; r < reps && st == APB_OK; r++) {
                double t0 = apb_now();
                st = apb_bitpack_sign(N, K, Bt, K, bs, ld);
                ts[r] = apb_now() - t0;
                t0 = apb_now();
                if (st == APB_OK)
                    st = apb_bitpack_2bit(N, K, Bt, K, 0.7f, bs, bm, ld);
                t2[r] = apb_now() - t0;
                tc[r] = tc2[r] = 0;
                if (img && st == APB_OK) {
                    t0 = apb_now();
                    st = apb_bitpack_conv_sign(&g, img, bs, ld);
                    tc[r] = apb_now() - t0;
                    t0 = apb_now();
                    if (st == APB_OK)
                        st = apb_bitpack_conv_2bit(&g, img, 0.7f, bs, bm, ld);
                    tc2[r] = apb_now() - t0;
                }
            }
            const char *what[4] = {"sign", "2bit", "conv_sign", "conv_2bit"};
            double *tt[4] = {ts, t2, tc, tc2};
            for (int w = 0; w < (img ? 4 : 2) && st == APB_OK; w++) {
                double t = apb_median(tt[w], reps);
                printf("op=pack what=%s k=%d n=%d threads=1 ms=%.3f gbits=%.2f "
                       "vs_bgemm1x1=%.2f\n",
                       what[w], K, N, t * 1e3, (double)N * K / t / 1e9,
                       t11_1 > 0 ? t / t11_1 : 0.0);
            }
            fflush(stdout);
        }
        free(Af), free(Bf), free(Bt), free(Cf), free(as), free(am), free(bs), free(bm), free(C);
        free(img);
    }
    apb_threads_set(saved);
    if (st != APB_OK)
        return apb_cli_error("bench kernels", st);
    return 0;
}
