/* optim.c - SGD / Adam / AdamW with parameter groups and checkpointable state.
 *
 * One slot per parameter holds its group, update count and state buffers;
 * buffers are allocated when the parameter is added so a training step does no
 * allocation. The update rules mirror PyTorch's (see optim.h) so that
 * hyperparameters from the literature transfer unchanged.
 */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define APB_OPTIM_PAR_MIN 32768

typedef struct {
    apb_param_group pg;
    apb_opt_kind kind; /* effective kind */
    int frozen;
} apb_optim_group;

typedef struct {
    apb_var *p;
    int group;
    int64_t step; /* updates applied (Adam bias correction) */
    float *m;     /* [numel] SGD momentum buffer or Adam exp_avg; NULL when unused */
    float *v;     /* [numel] Adam exp_avg_sq; NULL when unused */
} apb_optim_slot;

struct apb_optim {
    apb_opt_kind kind;
    float lr, momentum, weight_decay, beta1, beta2, eps;
    int nesterov;
    apb_optim_group *groups;
    int ngroups, capg;
    apb_optim_slot *slots;
    int nslots, caps;
};

apb_param_group apb_param_group_default(void)
{
    return (apb_param_group){.lr_scale = 1.0f, .weight_decay = 0.0f, .kind_override = -1,
                             .lr_override = 0.0f, .min_value = 0.0f};
}

static const char *kind_name(apb_opt_kind k)
{
    return k == APB_OPT_SGD ? "sgd" : k == APB_OPT_ADAM ? "adam" : "adamw";
}

apb_status apb_optim_create(apb_opt_kind kind, float lr, float momentum, int nesterov,
                            float weight_decay, apb_optim **out)
{
    *out = NULL;
    if (kind != APB_OPT_SGD && kind != APB_OPT_ADAM && kind != APB_OPT_ADAMW)
        return apb_fail(APB_EINVAL, "optimizer: unknown kind %d", (int)kind);
    if (!(lr >= 0) || !(momentum >= 0 && momentum < 1) || !(weight_decay >= 0))
        return apb_fail(APB_EINVAL, "optimizer %s: lr %g, momentum %g, weight decay %g "
                        "(need lr >= 0, 0 <= momentum < 1, decay >= 0)",
                        kind_name(kind), lr, momentum, weight_decay);
    if (nesterov && momentum <= 0)
        return apb_fail(APB_EINVAL, "optimizer sgd: nesterov needs momentum > 0");
    apb_optim *o = calloc(1, sizeof *o);
    if (!o)
        return apb_fail(APB_ENOMEM, "optimizer: out of memory");
    o->kind = kind;
    o->lr = lr;
    o->momentum = momentum;
    o->nesterov = nesterov;
    o->weight_decay = weight_decay;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    apb_param_group g0 = apb_param_group_default();
    g0.weight_decay = weight_decay;
    if (apb_optim_add_group(o, &g0) != 0) {
        apb_optim_free(o);
        return APB_ENOMEM;
    }
    *out = o;
    return APB_OK;
}

void apb_optim_set_betas(apb_optim *o, float beta1, float beta2, float eps)
{
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
}

int apb_optim_add_group(apb_optim *o, const apb_param_group *pg)
{
    if (pg->kind_override < -1 || pg->kind_override > APB_OPT_ADAMW) {
        apb_fail(APB_EINVAL, "optimizer: group kind_override %d (use -1 or an apb_opt_kind)",
                 pg->kind_override);
        return -1;
    }
    if (!(pg->weight_decay >= 0) || !(pg->lr_scale >= 0) || !(pg->lr_override >= 0)) {
        apb_fail(APB_EINVAL, "optimizer: group with weight decay %g, lr_scale %g, "
                 "lr_override %g (must be >= 0)", pg->weight_decay, pg->lr_scale, pg->lr_override);
        return -1;
    }
    if (o->ngroups == o->capg) {
        int nc = o->capg ? 2 * o->capg : 4;
        apb_optim_group *g = realloc(o->groups, (size_t)nc * sizeof *g);
        if (!g) {
            apb_fail(APB_ENOMEM, "optimizer: out of memory adding a group");
            return -1;
        }
        o->groups = g;
        o->capg = nc;
    }
    apb_optim_group *g = &o->groups[o->ngroups];
    g->pg = *pg;
    g->kind = pg->kind_override >= 0 ? (apb_opt_kind)pg->kind_override : o->kind;
    g->frozen = 0;
    return o->ngroups++;
}

apb_status apb_optim_add_param(apb_optim *o, apb_var *p, int group)
{
    const char *nm = p->name ? p->name : "?";
    if (group < 0 || group >= o->ngroups)
        return apb_fail(APB_EINVAL, "optimizer: parameter %s added to group %d (have %d groups)",
                        nm, group, o->ngroups);
    if (!p->data || !p->grad)
        return apb_fail(APB_EINVAL, "optimizer: parameter %s has no data or grad buffer", nm);
    for (int i = 0; i < o->nslots; i++)
        if (o->slots[i].p == p)
            return apb_fail(APB_EINVAL, "optimizer: parameter %s added twice", nm);
    if (o->nslots == o->caps) {
        int nc = o->caps ? 2 * o->caps : 32;
        apb_optim_slot *s = realloc(o->slots, (size_t)nc * sizeof *s);
        if (!s)
            return apb_fail(APB_ENOMEM, "optimizer: out of memory adding %s", nm);
        o->slots = s;
        o->caps = nc;
    }
    apb_opt_kind k = o->groups[group].kind;
    int need_m = k != APB_OPT_SGD || o->momentum != 0;
    int need_v = k != APB_OPT_SGD;
    size_t bytes = (size_t)p->numel * sizeof(float);
    apb_optim_slot s = {.p = p, .group = group};
    if (need_m && !(s.m = apb_alloc_aligned(bytes ? bytes : 1)))
        return apb_fail(APB_ENOMEM, "optimizer: out of memory for the state of %s", nm);
    if (need_v && !(s.v = apb_alloc_aligned(bytes ? bytes : 1))) {
        apb_free_aligned(s.m);
        return apb_fail(APB_ENOMEM, "optimizer: out of memory for the state of %s", nm);
    }
    if (s.m)
        memset(s.m, 0, bytes);
    if (s.v)
        memset(s.v, 0, bytes);
    o->slots[o->nslots++] = s;
    return APB_OK;
}

void apb_optim_set_frozen(apb_optim *o, int group, int frozen)
{
    if (group >= 0 && group < o->ngroups)
        o->groups[group].frozen = frozen;
}

void apb_optim_set_lr(apb_optim *o, float lr) { o->lr = lr; }

float apb_optim_group_lr(const apb_optim *o, int group)
{
    if (group < 0 || group >= o->ngroups)
        return 0.0f;
    const apb_param_group *pg = &o->groups[group].pg;
    return pg->lr_override > 0 ? pg->lr_override : o->lr * pg->lr_scale;
}

int apb_optim_num_params(const apb_optim *o) { return o->nslots; }

static void step_sgd(const apb_optim *o, apb_optim_slot *s, float lr, float wd)
{
    float *p = s->p->data, *buf = s->m;
    const float *g = s->p->grad;
    const float mu = o->momentum;
    const int nest = o->nesterov;
    int64_t n = s->p->numel;
#pragma omp parallel for schedule(static) if (n >= APB_OPTIM_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        if (buf) {
            buf[i] = mu * buf[i] + d;
            d = nest ? d + mu * buf[i] : buf[i];
        }
        p[i] -= lr * d;
    }
}

static void step_adam(const apb_optim *o, apb_optim_slot *s, float lr, float wd, int decoupled)
{
    float *p = s->p->data, *m = s->m, *v = s->v;
    const float *g = s->p->grad;
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    s->step++;
    double bc1 = 1.0 - pow((double)b1, (double)s->step);
    double bc2 = 1.0 - pow((double)b2, (double)s->step);
    const float step_size = (float)(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float keep = decoupled ? 1.0f - lr * wd : 1.0f;
    const float cwd = decoupled ? 0.0f : wd;
    int64_t n = s->p->numel;
#pragma omp parallel for schedule(static) if (n >= APB_OPTIM_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i] * keep;
        float d = g[i] + cwd * pi;
        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        p[i] = pi - step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
    }
}

void apb_optim_step(apb_optim *o)
{
    for (int j = 0; j < o->nslots; j++) {
        apb_optim_slot *s = &o->slots[j];
        const apb_optim_group *gr = &o->groups[s->group];
        if (gr->frozen)
            continue;
        float lr = apb_optim_group_lr(o, s->group), wd = gr->pg.weight_decay;
        switch (gr->kind) {
        case APB_OPT_SGD:
            s->step++;
            step_sgd(o, s, lr, wd);
            break;
        case APB_OPT_ADAM:
            step_adam(o, s, lr, wd, 0);
            break;
        case APB_OPT_ADAMW:
            step_adam(o, s, lr, wd, 1);
            break;
        }
        if (gr->pg.min_value > 0) {
            float lo = gr->pg.min_value, *p = s->p->data;
            for (int64_t i = 0; i < s->p->numel; i++)
                if (!(p[i] >= lo)) /* NaN too: a positive scalar must stay usable */
                    p[i] = lo;
        }
    }
    apb_optim_zero_grad(o);
}

void apb_optim_zero_grad(apb_optim *o)
{
    for (int j = 0; j < o->nslots; j++)
        memset(o->slots[j].p->grad, 0, (size_t)o->slots[j].p->numel * sizeof(float));
}

/* ---- checkpoint state ----
 * Layout: magic "APBOPT1\0", u32 nparams, u32 0, then per parameter a record
 * {i64 numel, i64 step, u32 has_m, u32 has_v}, then all buffers in parameter
 * order (m before v). */

#define APB_OPTIM_MAGIC "APBOPT1"

typedef struct {
    int64_t numel, step;
    uint32_t has_m, has_v;
} apb_optim_rec;

size_t apb_optim_state_size(const apb_optim *o)
{
    size_t n = 16 + (size_t)o->nslots * sizeof(apb_optim_rec);
    for (int j = 0; j < o->nslots; j++) {
        const apb_optim_slot *s = &o->slots[j];
        n += ((s->m ? 1u : 0u) + (s->v ? 1u : 0u)) * (size_t)s->p->numel * sizeof(float);
    }
    return n;
}

apb_status apb_optim_state_save(const apb_optim *o, void *buf, size_t size)
{
    size_t need = apb_optim_state_size(o);
    if (size != need)
        return apb_fail(APB_EINVAL, "optimizer state: buffer has %zu bytes, state needs %zu",
                        size, need);
    unsigned char *b = buf;
    memcpy(b, APB_OPTIM_MAGIC, 8);
    uint32_t hdr[2] = {(uint32_t)o->nslots, 0};
    memcpy(b + 8, hdr, 8);
    size_t off = 16;
    for (int j = 0; j < o->nslots; j++) {
        const apb_optim_slot *s = &o->slots[j];
        apb_optim_rec r = {s->p->numel, s->step, s->m != NULL, s->v != NULL};
        memcpy(b + off, &r, sizeof r);
        off += sizeof r;
    }
    for (int j = 0; j < o->nslots; j++) {
        const apb_optim_slot *s = &o->slots[j];
        size_t bytes = (size_t)s->p->numel * sizeof(float);
        if (s->m) {
            memcpy(b + off, s->m, bytes);
            off += bytes;
        }
        if (s->v) {
            memcpy(b + off, s->v, bytes);
            off += bytes;
        }
    }
    return APB_OK;
}

apb_status apb_optim_state_load(apb_optim *o, const void *buf, size_t size)
{
    const unsigned char *b = buf;
    if (size < 16 || memcmp(b, APB_OPTIM_MAGIC, 8) != 0)
        return apb_fail(APB_EFORMAT, "optimizer state: not an apb optimizer state "
                        "(%zu bytes, bad magic)", size);
    uint32_t hdr[2];
    memcpy(hdr, b + 8, 8);
    if (hdr[0] != (uint32_t)o->nslots)
        return apb_fail(APB_EFORMAT, "optimizer state: saved for %u parameters, optimizer has %d",
                        hdr[0], o->nslots);
    if (size < 16 + (size_t)o->nslots * sizeof(apb_optim_rec))
        return apb_fail(APB_EFORMAT, "optimizer state: truncated (%zu bytes)", size);
    for (int j = 0; j < o->nslots; j++) {
        const apb_optim_slot *s = &o->slots[j];
        apb_optim_rec r;
        memcpy(&r, b + 16 + (size_t)j * sizeof r, sizeof r);
        if (r.numel != s->p->numel || r.has_m != (s->m != NULL) || r.has_v != (s->v != NULL))
            return apb_fail(APB_EFORMAT,
                            "optimizer state: parameter %d (%s) saved with %lld elements "
                            "(momentum %u, second moment %u), optimizer has %lld (%d, %d)",
                            j, s->p->name ? s->p->name : "?", (long long)r.numel, r.has_m,
                            r.has_v, (long long)s->p->numel, s->m != NULL, s->v != NULL);
    }
    size_t need = apb_optim_state_size(o);
    if (size != need)
        return apb_fail(APB_EFORMAT, "optimizer state: %zu bytes, expected %zu", size, need);
    size_t off = 16 + (size_t)o->nslots * sizeof(apb_optim_rec);
    for (int j = 0; j < o->nslots; j++) {
        apb_optim_slot *s = &o->slots[j];
        apb_optim_rec r;
        memcpy(&r, b + 16 + (size_t)j * sizeof r, sizeof r);
        s->step = r.step;
        size_t bytes = (size_t)s->p->numel * sizeof(float);
        if (s->m) {
            memcpy(s->m, b + off, bytes);
            off += bytes;
        }
        if (s->v) {
            memcpy(s->v, b + off, bytes);
            off += bytes;
        }
    }
    return APB_OK;
}

void apb_optim_free(apb_optim *o)
{
    if (!o)
        return;
    for (int j = 0; j < o->nslots; j++) {
        apb_free_aligned(o->slots[j].m);
        apb_free_aligned(o->slots[j].v);
    }
    free(o->slots);
    free(o->groups);
    free(o);
}
