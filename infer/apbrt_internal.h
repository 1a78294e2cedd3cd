/* apbrt_internal.h - shared by the .apb writer, loader and executor (not installed).
 *
 * File layout constants (docs/FORMAT.md is the normative description), the
 * native form of one layer record, the layout of a layer's parameter section,
 * and the loaded model. Every size here is computed in 64-bit arithmetic from
 * fields that the loader bounds first, so nothing overflows.
 */
#ifndef APBRT_INTERNAL_H
#define APBRT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "apbrt.h"
#include "apbrt_model.h"
#include "arena.h"
#include "ewise.h"
#include "status.h"

#define APBRT_MAGIC "APBMODEL"
#define APBRT_VERSION 3u        /* newest; written only for files with an S8D layer (else 2);
                                   version 1 files (no accounting words) still load */
#define APBRT_VERSION_MIN 1u
#define APBRT_HEADER_SIZE 64u
#define APBRT_SECENTRY_SIZE 32u
#define APBRT_REC_SIZE 96u
#define APBRT_META_FIXED 60u
#define APBRT_ALIGN 64u

enum { APBRT_SEC_META = 1, APBRT_SEC_CLASSES = 2, APBRT_SEC_GRAPH = 3, APBRT_SEC_LAYER = 4 };

/* Bounds every loader check and the writer share (they also keep all products
 * of two fields far below 2^63). */
#define APBRT_MAX_DIM (1 << 20)       /* channels, classes, features */
#define APBRT_MAX_HW (1 << 15)        /* spatial size */
#define APBRT_MAX_KSIZE 64            /* kernel / pool window side */
#define APBRT_MAX_SAMPLE (1L << 28)   /* floats of one sample in one slot */
#define APBRT_MAX_PARAMS (1L << 31)   /* weights of one layer */
#define APBRT_MAX_SLOTS 4096
#define APBRT_MAX_LAYERS 100000
#define APBRT_MAX_NAME 65536          /* bytes of the model name or of one class name */

/* One layer record, native form (the file holds 24 little-endian 32-bit words). */
typedef struct {
    int kind, in, in2, out, cin, cout, kh, kw, stride, pad, wkind, akind;
    float act_step, wstep;
    int channels, k, pstride, ppad, has_bias;
    float lo, hi;    /* CLIP bounds */
    long nnz;        /* APB: outliers stored in the residual */
    int index_width; /* APB: bytes per CSR column index (2 or 4); 0 otherwise */
    int compression; /* APBRT_C_*: how training compressed the weights (accounting only) */
    long kept;       /* APBRT_C_PRUNED: weights kept */
    int scales;      /* APBRT_C_APB / BINARY: learned scales, 1 or cout */
} apbrt_rec;

enum {
    APBRT_ARR_W,      /* f32 [cout*K]            FP32 weights */
    APBRT_ARR_ALPHA,  /* f32 [cout]              APB */
    APBRT_ARR_BIAS,   /* f32 [cout]              when has_bias */
    APBRT_ARR_SIGNS,  /* u64 [cout*ceil(K/64)]   APB sign plane, bit set = negative */
    APBRT_ARR_ROWPTR, /* u32 [cout+1]            APB residual CSR */
    APBRT_ARR_COLIDX, /* u16|u32 [nnz] */
    APBRT_ARR_VALUES, /* f32 [nnz] */
    APBRT_ARR_CODES,  /* u64 [cout*ceil(K/32)]   Q2 codes, 2 bits each */
    APBRT_ARR_SCALE,  /* f32 [channels]          BN */
    APBRT_ARR_SHIFT,  /* f32 [channels] */
    APBRT_ARR_N
};

typedef struct {
    uint64_t off, elem, count; /* byte offset inside the section, element size, elements */
} apbrt_array;

static inline int apbrt_has_section(int kind)
{
    return kind == APBRT_CONV || kind == APBRT_LINEAR || kind == APBRT_BN;
}

/* Layout of a layer section (arrays 64-byte aligned inside it); returns its size
 * (0 for layers without parameters). Fields must already be bounded. */
uint64_t apbrt_layer_layout(const apbrt_rec *r, apbrt_array arr[APBRT_ARR_N]);

/* Little-endian access that never needs alignment. */
static inline uint32_t apbrt_rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t apbrt_rd64(const unsigned char *p)
{
    return (uint64_t)apbrt_rd32(p) | (uint64_t)apbrt_rd32(p + 4) << 32;
}
static inline float apbrt_rdf(const unsigned char *p)
{
    union { uint32_t u; float f; } v = {apbrt_rd32(p)};
    return v.f;
}
static inline void apbrt_wr32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static inline void apbrt_wr64(unsigned char *p, uint64_t v)
{
    apbrt_wr32(p, (uint32_t)v);
    apbrt_wr32(p + 4, (uint32_t)(v >> 32));
}
static inline void apbrt_wrf(unsigned char *p, float f)
{
    union { float f; uint32_t u; } v = {f};
    apbrt_wr32(p, v.u);
}

const char *apbrt_kind_name(int kind);
/* Input quantizers that carry a step in record word 12. */
static inline int apbrt_akind_has_step(int akind)
{
    return akind == APBRT_A_Q2 || akind == APBRT_A_U8 || akind == APBRT_A_S8;
}
static inline int apbrt_akind_int8(int akind) { return akind == APBRT_A_U8 || akind == APBRT_A_S8; }
/* S8D (apbrt_model.h): the sample's step max|x| / 127, 1 for an all-zero input. */
float apbrt_s8d_step(const float *x, long n);
/* NULL when the accounting words of conv/linear record r (K = cin*kh*kw) are
 * consistent with its storage kind, else what is wrong (writer and loader). */
const char *apbrt_accounting_problem(const apbrt_rec *r, long K);

/* ---- the loaded model ---- */

/* the epilogue's activations: ewise.h's codes, passed to its passes as they are */
enum { APBRT_POST_NONE = APB_EW_NONE, APBRT_POST_RELU = APB_EW_RELU, APBRT_POST_HARDTANH = APB_EW_HARDTANH };

typedef struct apbrt_fast apbrt_fast; /* bit-kernel data of one layer (apbrt_fast.c) */

typedef struct {
    apbrt_rec r;
    int ic, ih, iw, oc, oh, ow; /* per-sample input / output shape */
    long K;                     /* cin*kh*kw (conv/linear) */
    float *weff;                /* [cout, K] dense effective weights (S8D: the quantized ones,
                                   w8 * sw, unless the model runs exact: then wexact) */
    float *wexact, *wq;         /* S8D: the file's FP32 weights; w8 * sw */
    int8_t *w8;                 /* S8D: the weights quantized per row [cout, K] */
    float *wsw;                 /* S8D: their scale sw per row [cout] */
    float *bias;                /* [cout] or NULL */
    float *alpha;               /* APB [cout] */
    uint64_t *signs;            /* APB [cout, ceil(K/64)], bit set = -1 */
    uint32_t *rowptr, *colidx;  /* APB residual CSR [cout+1], [nnz] */
    float *rvals;               /* [nnz] */
    float *scale, *shift;       /* BN [channels] */
    /* execution plan */
    int fused;                  /* runs inside an earlier layer's epilogue */
    int dst;                    /* slot written (the last fused layer's out) */
    const float *post_scale, *post_shift; /* folded BN of the next layer, or NULL */
    int post_act;               /* APBRT_POST_* */
    int post_add;               /* conv: slot added after post (a fused residual add), or -1 */
    int post_act2;              /* APBRT_POST_* after that add */
    const float *add_base, *out_base; /* set per run: dst[i] += add_base[dst - out_base] */
    uint64_t file_bytes;        /* record + section bytes */
    double seconds;
    apbrt_fast *fast;           /* NULL: reference path for this layer */
    float *wpack;               /* linear: weff packed as sgemm's B (apb_sgemm_bpack), made
                                   at the first run at ISA level wpack_isa, or NULL */
    int wpack_isa;
} apbrt_rt_layer;

struct apbrt_model {
    char *model_name;
    char **class_names;
    int in_c, in_h, in_w, resize_short, num_classes, nslots, nlayers, output_slot;
    float mean[3], std[3];
    apbrt_rt_layer *layers;
    long *slot_floats;  /* [nslots] largest per-sample size written to the slot */
    int input_written;  /* some layer writes slot 0 (then x is copied in) */
    long max_q, max_col, max_tmp; /* per-sample / per-image scratch sizes (floats) */
    uint64_t file_size;
    int reference, profile;
    int exact;          /* S8D layers run as the FP32 convs they came from (apbrt_set_exact) */
    apb_arena params;   /* lifetime of the model */
    apb_arena work;     /* workspace, resized when a larger batch arrives */
    int cap_n;
    float **slots;      /* [nslots] */
    float **slots1;     /* [nslots] of one image: a split batch's first part on this thread (run_batch) */
    /* the other threads' copies of the model for a split batch's images in
     * parallel (run_batch): shadow[t - 1] for thread t, made on first use */
    struct apbrt_model **shadow;
    int nshadow;
    float *qbuf, *col, *tmp;
    float *gout;        /* [gout_cap] GEMM output of a group of images (fp32 convs) */
    long col_cap, gout_cap; /* floats in col / gout */
    void *fast_work;    /* fast-path scratch (apbrt_fast.c) */
};

/* apbrt_run.c, for tests: the float conv path of every eligible layer. 0: by size
 * (default); 1: implicit (phase planes read in place by apb_sgemm_conv) wherever
 * it fits; 2: never implicit, every image of a batch grouped into one im2col + GEMM
 * (a single image: its own im2col). Every path gives bitwise the same result. */
void apbrt_fp_paths(int mode);
/* apbrt_run.c, for tests: 1 runs only the last layer that has a fast path on it
 * and every other layer on the float reference path (which computes what the
 * training graph computes), so a comparison sees that one layer's rounding. */
void apbrt_fast_last_only(int on);
/* 0: every batch goes through the network whole (tests, A/B timing); 1 (the
 * default): the large early maps a few images at a time (run_batch). */
void apbrt_set_split(int on);

/* apbrt_load.c: parses and validates a whole buffer; validate_only skips building
 * the execution data (the writer uses it to check what it wrote). */
apb_status apbrt_load_impl(const void *buf, size_t size, const char *name, int validate_only,
                           apbrt_model **out);

/* apbrt_fast.c: prepares bit-kernel data for the layers that can use it (called
 * at the end of loading unless the reference path is selected) and runs them. */
apb_status apbrt_fast_prepare(apbrt_model *m);
/* 1 when layer L runs on its fast path now (not the reference path, the exact mode
 * of an S8D layer, or an S8D layer without a fast integer kernel). */
int apbrt_fast_runs(const apbrt_model *m, const apbrt_rt_layer *L);
/* The first failure among a team's tasks, with its message (apb_fail's message
 * is per thread: a worker's would be lost): apbrt_team_fail records it (the
 * first one wins), apbrt_team_status returns it on the calling thread. */
typedef struct {
    apb_status st;
    char msg[256];
} apbrt_team_err;
void apbrt_team_fail(apbrt_team_err *e, apb_status s);
apb_status apbrt_team_status(const apbrt_team_err *e);

/* Nonzero: one-image bit convs on a team split as before session 17 (tiles and
 * residual tasks to whichever thread is free) instead of claiming the same
 * units in every stage. For paired A/B timing (apb bench --ab bands) and tests. */
extern int apbrt_bands_off;
void apbrt_fast_free(apbrt_model *m);
/* The fast path's scratch of a model (made by apbrt_fast_prepare) alone: for a
 * copy of the model that shares its prepared layers (run_batch's shadows). */
apb_status apbrt_fast_work_new(apbrt_model *m);
void apbrt_fast_work_free(apbrt_model *m);
/* Runs layer `L` through its fast path: in [n, ic*ih*iw] -> out [n, oc*oh*ow]. */
/* For tests: 1 when a binary conv is prepared for the in-place bit GEMM
 * (apb_bgemm_ind_f32; used at a run where APBRT_IND or the ISA level says). */
int apbrt_fast_inplace_ready(const apbrt_rt_layer *L);
/* "1x1" / "1x2" / "2x2" for a layer with a fast path, else NULL. */
const char *apbrt_fast_kernel(const apbrt_rt_layer *L);
apb_status apbrt_fast_run(apbrt_model *m, apbrt_rt_layer *L, const float *in, int n, float *out);

/* The same epilogue on a row of `cnt` values of channel c, vectorized:
 * dst[i] = post(src[i] (+ add[i] when add != NULL)). src may equal dst. With a
 * fused residual add (post_add >= 0) then dst[i] = act2(dst[i] + the added
 * tensor at dst's place): dst must lie in the run's out_base buffer. */
void apbrt_post_rows(const apbrt_rt_layer *L, int c, const float *src, const float *add, float *dst,
                     long cnt);

/* Shared epilogue: acc + bias, folded BN, activation, on `cnt` values of channel c. */
static inline float apbrt_post(const apbrt_rt_layer *L, int c, float v)
{
    if (L->bias)
        v = v + L->bias[c];
    if (L->post_scale)
        v = L->post_scale[c] * v + L->post_shift[c];
    if (L->post_act == APBRT_POST_RELU)
        v = v > 0.0f ? v : 0.0f;
    else if (L->post_act == APBRT_POST_HARDTANH)
        v = v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
    return v;
}

#endif
