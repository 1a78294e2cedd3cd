/* randmodel.c - random models with a chosen outlier fraction (see randmodel.h). */
#include "randmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt_model.h"
#include "export.h"

/* k-th smallest (0-based) of v [n], reordering v (Hoare quickselect). */
static float select_kth(float *v, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* delta for one group of n weights w [n] with scale alpha: the band
 * | |w| - alpha | < delta then holds exactly n - round(frac * n) weights
 * (fewer only when distances tie). scratch [n]. */
static float delta_for_fraction(const float *w, int64_t n, float alpha, double frac, float *scratch)
{
    int64_t keep = (int64_t)llround(frac * (double)n); /* weights left in full precision */
    if (keep > n)
        keep = n;
    float mx = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        scratch[i] = fabsf(fabsf(w[i]) - alpha);
        mx = scratch[i] > mx ? scratch[i] : mx;
    }
    if (keep == 0)
        return mx * 2.0f + 1.0f;
    float d = select_kth(scratch, n, n - keep);
    return d > 0.0f ? d : 1e-30f;
}

apb_status apb_random_model(const char *arch, apb_wquant wq, apb_aquant aq, int c, int h, int w,
                            int classes, double fp_fraction, uint64_t seed, apb_model **out)
{
    apb_model_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.arch, sizeof cfg.arch, "%s", arch);
    cfg.wq = wq;
    cfg.aq = aq;
    cfg.in_c = c;
    cfg.in_h = h;
    cfg.in_w = w;
    cfg.num_classes = classes;
    cfg.prune_sparsity = 0.9f;
    return apb_random_model_cfg(&cfg, fp_fraction, seed, out);
}

apb_status apb_random_model_cfg(const apb_model_cfg *cfg, double fp_fraction, uint64_t seed,
                                apb_model **out)
{
    *out = NULL;
    if (!(fp_fraction >= 0.0 && fp_fraction <= 1.0))
        return apb_fail(APB_EINVAL, "random model: fp fraction %g outside [0, 1]", fp_fraction);
    apb_model *m;
    APB_TRY(apb_model_build(cfg, seed, &m));
    apb_rng r;
    apb_rng_seed(&r, apb_hash3(seed, 0x72616e64u, 1));
    apb_status s = APB_OK;
    for (int i = 0; i < m->nlayers && !s; i++) {
        apb_layer *l = &m->layers[i];
        if (l->kind == APB_L_BN) {
            for (int k = 0; k < l->channels; k++) {
                l->rmean[k] = 0.1f * apb_rng_normal(&r);
                l->rvar[k] = 0.5f + apb_rng_uniform(&r);
                l->gamma.data[k] = 0.5f + apb_rng_uniform(&r);
                l->beta.data[k] = 0.1f * apb_rng_normal(&r);
            }
        } else if ((l->kind == APB_L_CONV || l->kind == APB_L_LINEAR) && l->aq == APB_AQ_INT8 &&
                   l->astep.data[0] == 0.0f) {
            /* no data to calibrate on: the range of a batch-normed ReLU output
             * (about 4), which is all a speed benchmark needs */
            l->astep.data[0] = l->asigned ? 4.0f / 127.0f : 4.0f / 255.0f;
        }
        if ((l->kind == APB_L_CONV || l->kind == APB_L_LINEAR) && l->wq == APB_WQ_APB) {
            int64_t groups = l->alpha.numel, per = l->w.numel / groups;
            float *scratch = malloc(sizeof(float) * (size_t)per);
            if (!scratch) {
                s = apb_fail(APB_ENOMEM, "random model: out of memory for layer %s", l->name);
                break;
            }
            for (int64_t g = 0; g < groups; g++)
                l->delta.data[g] = delta_for_fraction(l->w.data + g * per, per, l->alpha.data[g],
                                                      fp_fraction, scratch);
            free(scratch);
        }
    }
    if (s) {
        apb_model_free(m);
        return s;
    }
    *out = m;
    return APB_OK;
}

apb_status apb_random_model_export(apb_model *m, unsigned char **buf, size_t *size)
{
    return apb_random_model_export_opt(m, 0, buf, size);
}

apb_status apb_random_model_export_opt(apb_model *m, int int8_stem, unsigned char **buf, size_t *size)
{
    *buf = NULL;
    *size = 0;
    int classes = m->cfg.num_classes, h = m->cfg.in_h;
    apb_status s = APB_OK;
    char *namebuf = malloc((size_t)classes * 24);
    const char **names = malloc(sizeof(char *) * (size_t)classes);
    if (!namebuf || !names) {
        s = apb_fail(APB_ENOMEM, "random model: out of memory for %d class names", classes);
        goto out;
    }
    for (int k = 0; k < classes; k++) {
        snprintf(namebuf + 24 * k, 24, "class%d", k);
        names[k] = namebuf + 24 * k;
    }
    const float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
    int resize = h >= 64 ? (int)((h * 256L + 112) / 224) : 0;
    apb_export ex;
    if ((s = apb_export_build(m, names, classes, mean, std, resize, &ex)))
        goto out;
    if (int8_stem)
        s = apb_export_int8_stem(&ex);
    if (!s)
        s = apbrt_serialize(&ex.desc, buf, size);
    apb_export_free(&ex);
out:
    free(namebuf);
    free(names);
    return s;
}

apb_status apb_random_model_file(const char *arch, apb_wquant wq, apb_aquant aq, int c, int h,
                                 int w, int classes, double fp_fraction, uint64_t seed,
                                 unsigned char **buf, size_t *size)
{
    *buf = NULL;
    *size = 0;
    apb_model *m;
    APB_TRY(apb_random_model(arch, wq, aq, c, h, w, classes, fp_fraction, seed, &m));
    apb_status s = apb_random_model_export(m, buf, size);
    apb_model_free(m);
    return s;
}
