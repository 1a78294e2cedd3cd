/* test_models.c - models/ and what depends on their names and sizes:
 * structural layer names (an fp ResNet checkpoint initialises its Bi-Real
 * variants), older checkpoints loading by their counter names, the pruning
 * schedule reaching its target in short runs, and one memory-accounting rule in
 * the training model and in the runtime (eval/export vs info/bench).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apbrt.h"
#include "builder.h"
#include "checkpoint.h"
#include "crc32.h"
#include "export.h"
#include "fileio.h"
#include "randmodel.h"
#include "test.h"
#include "test_ckpt_util.h"
#include "trainer.h"

static apb_model_cfg resnet_cfg(const char *arch, apb_wquant wq, apb_aquant aq)
{
    apb_model_cfg c = {0};
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    c.wq = wq, c.aq = aq;
    c.in_c = 3, c.in_h = 32, c.in_w = 32, c.num_classes = 10;
    return c;
}

static const apb_layer *find_layer(const apb_model *m, const char *name)
{
    for (int i = 0; i < m->nlayers; i++)
        if (!strcmp(m->layers[i].name, name))
            return &m->layers[i];
    return NULL;
}

static apb_status save_ckpt(const char *path, const apb_model *m)
{
    apb_ckpt_meta *meta = calloc(1, sizeof *meta);
    if (!meta)
        return APB_ENOMEM;
    meta->model = m->cfg;
    apb_status s = apb_ckpt_save(path, meta, m, NULL, 0);
    free(meta);
    return s;
}

/* Every conv/bn of `to` that exists in `from` (by name) holds from's values. */
static int same_named_tensors(const apb_model *from, const apb_model *to, int *matched)
{
    *matched = 0;
    for (int i = 0; i < to->nlayers; i++) {
        const apb_layer *t = &to->layers[i];
        const apb_layer *f = find_layer(from, t->name);
        if (!f || (t->kind != APB_L_CONV && t->kind != APB_L_LINEAR && t->kind != APB_L_BN))
            continue;
        const apb_var *tv = t->kind == APB_L_BN ? &t->gamma : &t->w;
        const apb_var *fv = f->kind == APB_L_BN ? &f->gamma : &f->w;
        if (tv->numel != fv->numel || memcmp(tv->data, fv->data, sizeof(float) * (size_t)tv->numel)) {
            fprintf(stderr, "  layer %s differs after --init\n", t->name);
            return 1;
        }
        if (t->kind == APB_L_BN &&
            memcmp(t->rvar, f->rvar, sizeof(float) * (size_t)t->channels)) {
            fprintf(stderr, "  layer %s running variance differs after --init\n", t->name);
            return 1;
        }
        (*matched)++;
    }
    return 0;
}

/* The standard route: fp ResNet first, then APB with binary (Bi-Real) or 2-bit
 * activations from it. Every tensor matches by name; nothing stays fresh. */
APB_TEST(test_models_resnet_fp_checkpoint_initialises_bireal_variants)
{
    static const char *arch[] = {"resnet20", "resnet18"};
    static const apb_aquant acts[] = {APB_AQ_BINARY, APB_AQ_Q2, APB_AQ_FP, APB_AQ_INT8};
    char path[600];
    snprintf(path, sizeof path, "%s/fp.ckpt", apb_test_tmpdir());
    for (int a = 0; a < 2; a++) {
        apb_model_cfg fc = resnet_cfg(arch[a], APB_WQ_FP, APB_AQ_FP);
        apb_model *fp;
        CHECK_OK(apb_model_build(&fc, 11, &fp));
        for (int i = 0; i < fp->nlayers; i++) /* make BN statistics recognisable */
            if (fp->layers[i].kind == APB_L_BN)
                for (int c = 0; c < fp->layers[i].channels; c++)
                    fp->layers[i].rvar[c] = 1.0f + 0.01f * (float)(i + c);
        CHECK_OK(save_ckpt(path, fp));
        apb_ckpt ck;
        CHECK_OK(apb_ckpt_load(path, &ck));
        CHECK(ck.meta.structural_names == 1);
        for (int k = 0; k < 4; k++) {
            apb_model_cfg qc = resnet_cfg(arch[a], APB_WQ_APB, acts[k]);
            apb_model *q;
            CHECK_OK(apb_model_build(&qc, 12, &q));
            char fresh[1024] = "x";
            CHECK_OK(apb_ckpt_fill_model(&ck, q, 0, fresh, sizeof fresh));
            CHECK_MSG(fresh[0] == 0, "%s act %d: left fresh: %s", arch[a], k, fresh);
            int matched;
            CHECK(same_named_tensors(fp, q, &matched) == 0);
            CHECK_MSG(matched >= 20, "%s: only %d layers matched", arch[a], matched);
            CHECK(find_layer(q, "layer2.0.downsample.conv") && find_layer(q, "layer1.0.conv2"));
            apb_model_free(q);
        }
        apb_ckpt_free(&ck);
        apb_model_free(fp);
    }
    return 0;
}

/* A tensor the checkpoint lacks stays fresh and is listed; a real size mismatch
 * names the layer and both element counts; a checkpoint with none of the
 * model's tensors is refused. */
APB_TEST(test_models_init_lists_fresh_and_names_mismatch)
{
    char path[600], bad[600];
    snprintf(path, sizeof path, "%s/r20.ckpt", apb_test_tmpdir());
    snprintf(bad, sizeof bad, "%s/r20-renamed.ckpt", apb_test_tmpdir());
    apb_model_cfg fc = resnet_cfg("resnet20", APB_WQ_FP, APB_AQ_FP);
    apb_model *fp, *q;
    CHECK_OK(apb_model_build(&fc, 1, &fp));
    /* drop layer3.2.conv2 from the checkpoint by renaming its layer */
    apb_layer *l = (apb_layer *)find_layer(fp, "layer3.2.conv2");
    CHECK(l != NULL);
    snprintf(l->name, sizeof l->name, "elsewhere");
    snprintf((char *)l->w.name, 64, "elsewhere.weight");
    CHECK_OK(save_ckpt(path, fp));
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(path, &ck));
    CHECK_OK(apb_model_build(&fc, 2, &q));
    char fresh[1024];
    CHECK_OK(apb_ckpt_fill_model(&ck, q, 0, fresh, sizeof fresh));
    CHECK_MSG(!strcmp(fresh, "layer3.2.conv2"), "fresh list '%s'", fresh);
    CHECK(apb_ckpt_fill_model(&ck, q, 1, NULL, 0) == APB_EFORMAT); /* resume: strict */
    CHECK(strstr(apb_errmsg(), "layer3.2.conv2"));
    apb_ckpt_free(&ck);
    apb_model_free(q);
    /* same names, other widths: resnet20 weights into resnet18 (CIFAR stem) */
    apb_model_cfg c18 = resnet_cfg("resnet18", APB_WQ_FP, APB_AQ_FP);
    CHECK_OK(apb_ckpt_load(path, &ck));
    CHECK_OK(apb_model_build(&c18, 2, &q));
    CHECK(apb_ckpt_fill_model(&ck, q, 0, fresh, sizeof fresh) == APB_EFORMAT);
    const char *msg = apb_errmsg();
    CHECK_MSG(strstr(msg, "layer conv1") && strstr(msg, "432 elements") && strstr(msg, "1728"),
              "message '%s'", msg);
    apb_model_free(q);
    apb_ckpt_free(&ck);
    /* a checkpoint with none of the model's tensors is refused */
    for (int i = 0; i < fp->nlayers; i++) {
        apb_layer *x = &fp->layers[i];
        apb_var *vs[] = {&x->w, &x->b, &x->gamma, &x->beta};
        for (int v = 0; v < 4; v++)
            if (vs[v]->data)
                ((char *)vs[v]->name)[0] = 'X';
        x->name[0] = 'X';
    }
    CHECK_OK(save_ckpt(bad, fp));
    CHECK_OK(apb_ckpt_load(bad, &ck));
    CHECK_OK(apb_model_build(&fc, 2, &q));
    CHECK(apb_ckpt_fill_model(&ck, q, 0, fresh, sizeof fresh) == APB_EFORMAT);
    CHECK_MSG(strstr(apb_errmsg(), "holds none"), "message '%s'", apb_errmsg());
    apb_ckpt_free(&ck);
    apb_model_free(q);
    apb_model_free(fp);
    return 0;
}

/* Rewrites a checkpoint as one written before structural names: format 1 (as
 * files were then), no names= key in the header, every record named after its
 * layer's counter name. */
static int make_legacy(const char *src, const char *dst, const apb_model *m)
{
    unsigned char *d2, *d;
    size_t n2, n;
    if (apb_file_read(src, &d2, &n2))
        return 1;
    int bad = tc_to_v1(d2, n2, &d, &n);
    free(d2);
    if (bad)
        return 1;
    unsigned char *o = malloc(2 * n + 4096);
    if (!o)
        return 1;
    uint32_t hl;
    memcpy(&hl, d + 8, 4);
    char *h = malloc(hl + 1);
    memcpy(h, d + 12, hl);
    h[hl] = 0;
    char *k = strstr(h, "names=structural\n");
    if (!k)
        return 1;
    memmove(k, k + 17, strlen(k + 17) + 1);
    uint32_t nhl = (uint32_t)strlen(h);
    size_t w = 0;
    memcpy(o, d, 8), w = 8;
    memcpy(o + w, &nhl, 4), w += 4;
    memcpy(o + w, h, nhl), w += nhl;
    size_t off = 12 + hl, end = n - 4;
    while (off < end) {
        uint32_t nl;
        uint64_t bytes;
        memcpy(&nl, d + off, 4);
        char name[300];
        memcpy(name, d + off + 4, nl);
        name[nl] = 0;
        memcpy(&bytes, d + off + 4 + nl, 8);
        char out[300];
        snprintf(out, sizeof out, "%s", name);
        for (int i = 0; i < m->nlayers; i++) {
            size_t ln = strlen(m->layers[i].name);
            if (!strncmp(name, m->layers[i].name, ln) && name[ln] == '.') {
                snprintf(out, sizeof out, "%s%s", m->layers[i].legacy, name + ln);
                break;
            }
        }
        uint32_t onl = (uint32_t)strlen(out);
        memcpy(o + w, &onl, 4), w += 4;
        memcpy(o + w, out, onl), w += onl;
        memcpy(o + w, &bytes, 8), w += 8;
        memcpy(o + w, d + off + 4 + nl + 8, bytes), w += bytes;
        off += 4 + nl + 8 + bytes;
    }
    uint32_t crc = apb_crc32(0, o, w);
    memcpy(o + w, &crc, 4), w += 4;
    int rc = apb_file_write_atomic(dst, o, w) != APB_OK;
    free(h);
    free(o);
    free(d);
    return rc;
}

APB_TEST(test_models_legacy_checkpoint_loads_by_counter_names)
{
    char path[600], old[600];
    snprintf(path, sizeof path, "%s/new.ckpt", apb_test_tmpdir());
    snprintf(old, sizeof old, "%s/old.ckpt", apb_test_tmpdir());
    apb_model_cfg c = resnet_cfg("resnet20", APB_WQ_APB, APB_AQ_BINARY);
    apb_model *m, *back;
    CHECK_OK(apb_model_build(&c, 5, &m));
    CHECK(strcmp(m->layers[3].name, m->layers[3].legacy) != 0); /* names do differ */
    CHECK_OK(save_ckpt(path, m));
    CHECK(make_legacy(path, old, m) == 0);
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(old, &ck));
    CHECK(ck.meta.structural_names == 0);
    CHECK(apb_ckpt_find(&ck, "conv2.weight") && !apb_ckpt_find(&ck, "layer1.0.conv1.weight"));
    CHECK_OK(apb_ckpt_model(&ck, &back));
    int matched;
    CHECK(same_named_tensors(m, back, &matched) == 0 && matched > 20);
    apb_model_free(back);
    apb_ckpt_free(&ck);
    apb_model_free(m);
    return 0;
}

/* Pruning reaches its target sparsity whatever the run length: 3 steps, 20 steps. */
APB_TEST(test_models_prune_short_runs_reach_target)
{
    static const int ntrain[] = {192, 1280};
    for (int t = 0; t < 2; t++) {
        apb_train_cfg c;
        apb_train_cfg_default(&c);
        snprintf(c.out_dir, sizeof c.out_dir, "%s/prune%d", apb_test_tmpdir(), t);
        c.limit_train = ntrain[t];
        c.limit_test = 128;
        c.batch = 64;
        c.epochs = 1;
        c.quiet = 1;
        c.threads = 2;
        c.model.wq = APB_WQ_PRUNE;
        c.model.prune_sparsity = 0.9f;
        CHECK_OK(apb_train_run(&c, NULL));
        char path[1200];
        snprintf(path, sizeof path, "%s/last.ckpt", c.out_dir);
        apb_ckpt ck;
        apb_model *m;
        CHECK_OK(apb_ckpt_load(path, &ck));
        CHECK_OK(apb_ckpt_model(&ck, &m));
        apb_model_memory mem;
        apb_model_memory_stats(m, &mem, NULL, NULL);
        CHECK_MSG(fabs(mem.fp_fraction - 0.1) < 0.002, "%d images: kept fraction %.4f, want 0.1",
                  ntrain[t], mem.fp_fraction);
        apb_model_free(m);
        apb_ckpt_free(&ck);
    }
    return 0;
}

/* One accounting rule: the training model's figures (eval, export) equal the
 * runtime's per-layer figures summed (info, bench) for every compression. */
static int accounting_agrees(apb_model *m, const char *what)
{
    apb_model_memory mem;
    apb_model_memory_stats(m, &mem, NULL, NULL);
    unsigned char *buf;
    size_t size;
    apbrt_model *rt;
    apb_status s = apb_random_model_export(m, &buf, &size);
    if (s || apbrt_load_memory(buf, size, &rt)) {
        fprintf(stderr, "  %s: export/load failed: %s\n", what, apb_errmsg());
        return 1;
    }
    double bits = 0, cbits = 0;
    long cw = 0, fp = 0;
    for (int i = 0; i < apbrt_num_layers(rt); i++) {
        apbrt_layer_info li;
        apbrt_layer_info_get(rt, i, &li);
        bits += li.bits;
        if (li.compressed) {
            cbits += li.weight_bits;
            cw += li.params;
            fp += li.fp_params;
        }
    }
    apbrt_free(rt);
    free(buf);
    if (bits != mem.bits || cbits != mem.cbits || cw != mem.cweights || fp != mem.fp_count) {
        fprintf(stderr, "  %s: model %.0f bits (compressed %.0f over %lld weights, %lld fp) vs runtime "
                "%.0f (%.0f over %ld, %ld fp)\n", what, mem.bits, mem.cbits, (long long)mem.cweights,
                (long long)mem.fp_count, bits, cbits, cw, fp);
        return 1;
    }
    return 0;
}

APB_TEST(test_models_memory_accounting_one_rule)
{
    struct {
        apb_wquant wq;
        apb_aquant aq;
        int per_channel;
        const char *arch;
    } cases[] = {
        {APB_WQ_APB, APB_AQ_BINARY, 0, "resnet20"}, {APB_WQ_APB, APB_AQ_FP, 1, "convnet"},
        {APB_WQ_BINARY, APB_AQ_FP, 1, "convnet"},   {APB_WQ_BINARY, APB_AQ_BINARY, 0, "resnet20"},
        {APB_WQ_Q2, APB_AQ_Q2, 0, "convnet"},       {APB_WQ_PRUNE, APB_AQ_FP, 0, "convnet"},
        {APB_WQ_FP, APB_AQ_FP, 0, "resnet20"},      {APB_WQ_PRUNE_BINARY, APB_AQ_FP, 1, "convnet"},
        {APB_WQ_PRUNE_BINARY, APB_AQ_BINARY, 0, "resnet20"}, {APB_WQ_APB, APB_AQ_INT8, 0, "resnet20"},
        {APB_WQ_BINARY, APB_AQ_INT8, 1, "convnet"},
    };
    for (size_t k = 0; k < 2 * sizeof cases / sizeof cases[0]; k++) {
        /* every case twice: 30% kept (pruned + binarized stores a bitmap), then
         * 2% kept (it stores indices) */
        int dense = k < sizeof cases / sizeof cases[0];
        size_t ci = k % (sizeof cases / sizeof cases[0]);
        apb_model_cfg c = resnet_cfg(cases[ci].arch, cases[ci].wq, cases[ci].aq);
        if (!strcmp(cases[ci].arch, "convnet"))
            c.in_c = 1, c.in_h = c.in_w = 28;
        c.per_channel = cases[ci].per_channel;
        apb_model *m;
        CHECK_OK(apb_random_model_cfg(&c, 0.03, 9, &m));
        for (int i = 0; i < m->nlayers; i++) /* prune 70% of each pruned layer */
            if (m->layers[i].mask)
                for (int64_t j = 0; j < m->layers[i].w.numel; j++)
                    m->layers[i].mask[j] = dense ? j % 10 < 3 : j % 50 == 0;
        char what[96];
        snprintf(what, sizeof what, "%s %s/%s%s%s", cases[ci].arch, apb_wquant_name(c.wq),
                 apb_aquant_name(c.aq), c.per_channel ? " per-channel" : "", dense ? "" : " sparse");
        CHECK(accounting_agrees(m, what) == 0);
        apb_model_free(m);
    }
    return 0;
}

/* --act int8 keeps the full-precision layer list (ReLUs, standard blocks), and
 * its codes are unsigned exactly where the input comes from a ReLU: everywhere
 * but on the raw input (--quant-first). */
APB_TEST(test_models_int8_placement)
{
    static const char *arch[] = {"convnet", "vgg-small", "resnet20", "resnet18"};
    for (int a = 0; a < 4; a++) {
        apb_model_cfg fc = resnet_cfg(arch[a], APB_WQ_FP, APB_AQ_FP);
        if (a == 0)
            fc.in_c = 1, fc.in_h = fc.in_w = 28;
        apb_model_cfg qc = fc;
        qc.wq = APB_WQ_APB;
        qc.aq = APB_AQ_INT8;
        qc.quant_first = qc.quant_last = 1;
        apb_model *fp, *q;
        CHECK_OK(apb_model_build(&fc, 3, &fp));
        CHECK_OK(apb_model_build(&qc, 3, &q));
        CHECK_MSG(fp->nlayers == q->nlayers, "%s: %d vs %d layers", arch[a], fp->nlayers, q->nlayers);
        int nq = 0;
        for (int i = 0; i < q->nlayers; i++) {
            const apb_layer *l = &q->layers[i];
            CHECK(l->kind == fp->layers[i].kind && !strcmp(l->name, fp->layers[i].name));
            CHECK(l->kind != APB_L_HARDTANH);
            if (l->aq != APB_AQ_INT8)
                continue;
            nq++;
            CHECK_MSG(l->asigned == (l->in == 0), "%s %s: signed=%d", arch[a], l->name, l->asigned);
            CHECK(l->astep.data && l->astep.data[0] == 0.0f); /* calibrated by the first batch */
        }
        CHECK_MSG(nq >= 3, "%s: %d layers with 8-bit inputs", arch[a], nq);
        apb_model_free(fp);
        apb_model_free(q);
    }
    return 0;
}

/* Pruning + binarization at the memory of an APB budget: the sparsity found
 * meets the budget once the masks are applied, one step less pruning would
 * not, and budgets that need no pruning or cannot be met are refused. */
APB_TEST(test_models_prune_binary_sparsity_meets_budget)
{
    static const double budgets[] = {1.1, 1.3, 1.6, 0.5};
    for (int k = 0; k < 4; k++) {
        apb_model_cfg c = resnet_cfg("resnet20", APB_WQ_PRUNE_BINARY, APB_AQ_BINARY);
        apb_model *m;
        CHECK_OK(apb_model_build(&c, 4, &m));
        float sp = 0;
        apb_status s = apb_prune_binary_sparsity(m, budgets[k], &sp);
        if (budgets[k] < 1) {
            /* bits of 99.99% pruned resnet20: still above half a bit? no: refuse only
             * what cannot be met; 0.5 bits is met by heavy pruning */
            CHECK_MSG(s == APB_OK && sp > 0.9f, "0.5 bits: status %d sparsity %g", s, sp);
        } else {
            CHECK_OK(s);
        }
        for (int pass = 0; pass < 2; pass++) {
            float use = pass ? nextafterf(sp, 0.0f) * 0.999f : sp;
            for (int i = 0; i < m->nlayers; i++)
                if (m->layers[i].mask)
                    apb_prune_mask_update(m->layers[i].w.data, m->layers[i].w.numel, use,
                                          m->layers[i].mask);
            apb_model_memory mem;
            apb_model_memory_stats(m, &mem, NULL, NULL);
            if (pass == 0)
                CHECK_MSG(mem.bits_per_weight <= budgets[k] &&
                              mem.bits_per_weight > budgets[k] * 0.98,
                          "budget %g: sparsity %g gives %.5f bits/weight", budgets[k], sp,
                          mem.bits_per_weight);
            else
                CHECK_MSG(mem.bits_per_weight > budgets[k], "budget %g: less pruning (%g) still "
                          "fits (%.5f bits/weight)", budgets[k], use, mem.bits_per_weight);
        }
        apb_model_free(m);
    }
    apb_model_cfg c = resnet_cfg("resnet20", APB_WQ_PRUNE_BINARY, APB_AQ_FP);
    apb_model *m;
    CHECK_OK(apb_model_build(&c, 4, &m));
    float sp;
    CHECK(apb_prune_binary_sparsity(m, 3.0, &sp) == APB_EINVAL);   /* no pruning needed */
    CHECK(apb_prune_binary_sparsity(m, 0.001, &sp) == APB_EINVAL); /* cannot be met */
    apb_model_free(m);
    return 0;
}

/* No quantized input is fed by a ReLU (through pools, flatten or dropout): the
 * sign of a ReLU output is +1 everywhere and a 2-bit code of it uses half its
 * levels. The Bi-Real ResNets' stem once did exactly that. */
APB_TEST(test_models_no_relu_feeds_a_quantized_input)
{
    static const char *arch[] = {"convnet", "vgg-small", "resnet20", "resnet18"};
    static const apb_aquant acts[] = {APB_AQ_BINARY, APB_AQ_Q2};
    for (int a = 0; a < 4; a++)
        for (int k = 0; k < (a == 1 || a == 3 ? 1 : 2); k++) /* the big ones: binary only */
            for (int big = 0; big < (a == 3 ? 2 : 1); big++) {
                apb_model_cfg c = resnet_cfg(arch[a], APB_WQ_APB, acts[k]);
                if (a == 0)
                    c.in_c = 1, c.in_h = c.in_w = 28;
                if (big)
                    c.in_h = c.in_w = 112;
                apb_model *m;
                CHECK_OK(apb_model_build(&c, 1, &m));
                int checked = 0;
                for (int i = 0; i < m->nlayers; i++) {
                    const apb_layer *l = &m->layers[i];
                    if ((l->kind != APB_L_CONV && l->kind != APB_L_LINEAR) || l->aq == APB_AQ_FP)
                        continue;
                    int slot = l->in;
                    const apb_layer *src = NULL;
                    for (;;) { /* the producer of `slot`, looking through shape-only layers */
                        src = NULL;
                        for (int j = 0; j < i; j++)
                            if (m->layers[j].out == slot)
                                src = &m->layers[j];
                        if (!src || (src->kind != APB_L_MAXPOOL && src->kind != APB_L_AVGPOOL &&
                                     src->kind != APB_L_FLATTEN && src->kind != APB_L_DROPOUT))
                            break;
                        slot = src->in;
                    }
                    CHECK_MSG(!src || src->kind != APB_L_RELU, "%s %s%s: %s's quantized input comes from %s",
                              arch[a], apb_aquant_name(acts[k]), big ? " 112x112" : "", l->name,
                              src->name);
                    checked++;
                }
                CHECK(checked > 0);
                apb_model_free(m);
            }
    return 0;
}
