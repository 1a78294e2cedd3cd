/* dataset.c - SPEC parsing, the dataset accessors, default transforms, and the
 * sample path shared by apb_dataset_get and the loader.
 *
 * The readers (idx.c, cifar.c, folder.c) only fill the record; everything that
 * turns a record into a normalized float sample lives here and in transform.c,
 * so in-memory and folder datasets go through the same code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_impl.h"
#include "rng.h"

typedef struct {
    const char *name;
    float mean[3], std[3];
} apb_norm;

static const apb_norm apb_norms[] = {
    {"fashion-mnist", {0.2860f, 0.2860f, 0.2860f}, {0.3530f, 0.3530f, 0.3530f}},
    {"mnist", {0.1307f, 0.1307f, 0.1307f}, {0.3081f, 0.3081f, 0.3081f}},
    {"cifar10", {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}},
    {"cifar100", {0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}},
    {"imagenet", {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}},
};

apb_dataset *apb_dataset_alloc(const char *name)
{
    apb_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return NULL;
    snprintf(ds->name, sizeof ds->name, "%s", name);
    for (int c = 0; c < 3; c++) {
        ds->mean[c] = 0.5f;
        ds->std[c] = 0.25f;
    }
    for (size_t i = 0; i < sizeof apb_norms / sizeof apb_norms[0]; i++)
        if (strcmp(apb_norms[i].name, name) == 0) {
            memcpy(ds->mean, apb_norms[i].mean, sizeof ds->mean);
            memcpy(ds->std, apb_norms[i].std, sizeof ds->std);
        }
    return ds;
}

void apb_dataset_free(apb_dataset *ds)
{
    if (!ds)
        return;
    if (ds->class_names)
        for (int i = 0; i < ds->num_classes; i++)
            free(ds->class_names[i]);
    free(ds->class_names);
    free(ds->pixels);
    free(ds->labels);
    free(ds->pool);
    free(ds->path_off);
    free(ds->index);
    free(ds);
}

/* The stored sample behind visible sample i. */
static int stored(const apb_dataset *ds, int i)
{
    return ds->index ? ds->index[i] : i;
}

apb_status apb_dataset_numeric_names(apb_dataset *ds, int num_classes)
{
    ds->class_names = calloc((size_t)num_classes, sizeof(char *));
    if (!ds->class_names)
        return apb_fail(APB_ENOMEM, "%s: out of memory for %d class names", ds->name, num_classes);
    ds->num_classes = num_classes;
    for (int i = 0; i < num_classes; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        if (!(ds->class_names[i] = strdup(buf)))
            return apb_fail(APB_ENOMEM, "%s: out of memory for class names", ds->name);
    }
    return APB_OK;
}

apb_status apb_dataset_read_names(apb_dataset *ds, const char *path, int want)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return apb_fail(APB_EIO, "%s: cannot open class-name list", path);
    ds->class_names = calloc((size_t)want, sizeof(char *));
    if (!ds->class_names) {
        fclose(f);
        return apb_fail(APB_ENOMEM, "%s: out of memory", path);
    }
    ds->num_classes = want;
    char line[512];
    int got = 0;
    apb_status s = APB_OK;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                         line[n - 1] == '\t'))
            line[--n] = 0;
        if (n == 0)
            continue;
        if (got == want) {
            s = apb_fail(APB_EFORMAT, "%s: more than %d class names (extra name '%s')", path, want,
                         line);
            break;
        }
        if (!(ds->class_names[got++] = strdup(line))) {
            s = apb_fail(APB_ENOMEM, "%s: out of memory", path);
            break;
        }
    }
    fclose(f);
    if (s == APB_OK && got < want)
        s = apb_fail(APB_EFORMAT, "%s: %d class names, expected %d", path, got, want);
    return s;
}

/* A `~` after `cifar10:` is not at the start of a shell word, so the shell hands
 * it over literally (the README's own `cifar10:~/data/...`); expand a leading
 * `~` or `~/` from $HOME here, for every kind. `~user` is left alone. */
static apb_status expand_home(const char *spec, const char *dir, char *buf, size_t cap,
                              const char **out)
{
    *out = dir;
    if (!dir || dir[0] != '~' || (dir[1] != 0 && dir[1] != '/'))
        return APB_OK;
    const char *home = getenv("HOME");
    if (!home || !*home)
        return apb_fail(APB_EINVAL, "dataset %s: cannot expand '~': HOME is not set", spec);
    size_t hn = strlen(home);
    while (hn > 1 && home[hn - 1] == '/')
        hn--;
    if ((size_t)snprintf(buf, cap, "%.*s%s", (int)hn, home, dir + 1) >= cap)
        return apb_fail(APB_EINVAL, "dataset %s: path longer than %zu bytes after expanding '~'",
                        spec, cap - 1);
    *out = buf;
    return APB_OK;
}

apb_status apb_dataset_open(const char *spec, const char *split, apb_dataset **out)
{
    *out = NULL;
    if (!spec || !*spec)
        return apb_fail(APB_EINVAL, "empty dataset spec (expected e.g. fashion-mnist, cifar10:DIR, imagenet:DIR)");
    if (!split)
        split = "train";
    int train;
    if (strcmp(split, "train") == 0)
        train = 1;
    else if (strcmp(split, "test") == 0 || strcmp(split, "val") == 0)
        train = 0;
    else
        return apb_fail(APB_EINVAL, "dataset %s: unknown split '%s' (expected train or test)", spec,
                        split);

    char kind[32];
    const char *colon = strchr(spec, ':');
    size_t kn = colon ? (size_t)(colon - spec) : strlen(spec);
    if (kn >= sizeof kind)
        return apb_fail(APB_EINVAL, "unknown dataset '%s'", spec);
    memcpy(kind, spec, kn);
    kind[kn] = 0;
    const char *dir = colon ? colon + 1 : NULL;
    if (dir && !*dir)
        dir = NULL;
    char home_dir[4096];
    APB_TRY(expand_home(spec, dir, home_dir, sizeof home_dir, &dir));

    int which;
    if (strcmp(kind, "fashion-mnist") == 0 || strcmp(kind, "fashion_mnist") == 0) {
        which = 0;
        if (!dir)
            dir = "/usr/share/datasets/fashion-mnist";
        snprintf(kind, sizeof kind, "fashion-mnist");
    } else if (strcmp(kind, "mnist") == 0) {
        which = 1;
    } else if (strcmp(kind, "cifar10") == 0 || strcmp(kind, "cifar-10") == 0) {
        which = 2;
        snprintf(kind, sizeof kind, "cifar10");
    } else if (strcmp(kind, "cifar100") == 0 || strcmp(kind, "cifar-100") == 0) {
        which = 3;
        snprintf(kind, sizeof kind, "cifar100");
    } else if (strcmp(kind, "imagenet") == 0 || strcmp(kind, "folder") == 0) {
        which = 4;
        snprintf(kind, sizeof kind, "imagenet");
    } else {
        return apb_fail(APB_EINVAL,
                        "unknown dataset '%s' (expected fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR or imagenet:DIR)",
                        spec);
    }
    if (!dir)
        return apb_fail(APB_EINVAL, "dataset %s needs a directory: %s:DIR", kind, kind);

    apb_dataset *ds = apb_dataset_alloc(kind);
    if (!ds)
        return apb_fail(APB_ENOMEM, "out of memory opening %s", spec);
    apb_status s;
    switch (which) {
    case 0:
    case 1: s = apb_idx_open(ds, dir, train); break;
    case 2: s = apb_cifar_open(ds, dir, train, 0); break;
    case 3: s = apb_cifar_open(ds, dir, train, 1); break;
    default: s = apb_folder_open(ds, dir, train); break;
    }
    if (s != APB_OK) {
        apb_dataset_free(ds);
        return s;
    }
    ds->n = ds->n_total;
    *out = ds;
    return APB_OK;
}

apb_status apb_dataset_from_u8(const char *name, int n, int c, int h, int w,
                               const unsigned char *pixels, const int *labels,
                               int num_classes, apb_dataset **out)
{
    *out = NULL;
    if (n <= 0 || (c != 1 && c != 3) || h <= 0 || w <= 0 || num_classes <= 0)
        return apb_fail(APB_EINVAL, "apb_dataset_from_u8: bad shape n=%d c=%d h=%d w=%d classes=%d",
                        n, c, h, w, num_classes);
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= num_classes)
            return apb_fail(APB_EINVAL, "apb_dataset_from_u8: label %d of sample %d out of range 0..%d",
                            labels[i], i, num_classes - 1);
    apb_dataset *ds = apb_dataset_alloc(name ? name : "memory");
    size_t np = (size_t)n * c * h * w;
    if (!ds || !(ds->pixels = malloc(np)) || !(ds->labels = malloc(sizeof(int) * (size_t)n))) {
        apb_dataset_free(ds);
        return apb_fail(APB_ENOMEM, "apb_dataset_from_u8: out of memory for %d samples", n);
    }
    memcpy(ds->pixels, pixels, np);
    memcpy(ds->labels, labels, sizeof(int) * (size_t)n);
    ds->n = ds->n_total = n;
    ds->c = c, ds->h = h, ds->w = w;
    apb_status s = apb_dataset_numeric_names(ds, num_classes);
    if (s != APB_OK) {
        apb_dataset_free(ds);
        return s;
    }
    *out = ds;
    return APB_OK;
}

int apb_dataset_size(const apb_dataset *ds) { return ds->n; }
int apb_dataset_num_classes(const apb_dataset *ds) { return ds->num_classes; }
const char *apb_dataset_name(const apb_dataset *ds) { return ds->name; }

const char *apb_dataset_class_name(const apb_dataset *ds, int i)
{
    return i >= 0 && i < ds->num_classes ? ds->class_names[i] : "?";
}

void apb_dataset_geometry(const apb_dataset *ds, int *c, int *h, int *w)
{
    *c = ds->c;
    *h = ds->h;
    *w = ds->w;
}

int apb_dataset_label(const apb_dataset *ds, int i)
{
    return i >= 0 && i < ds->n ? ds->labels[stored(ds, i)] : -1;
}

void apb_dataset_limit(apb_dataset *ds, int n)
{
    free(ds->index);
    ds->index = NULL;
    if (n > 0 && n < ds->n_total)
        ds->n = n;
    else
        ds->n = ds->n_total;
}

apb_status apb_dataset_holdout(apb_dataset *ds, int nval, uint64_t seed, int keep_val)
{
    int n = ds->n;
    if (nval < 1 || nval >= n)
        return apb_fail(APB_EINVAL, "%s: a validation split of %d images out of %d training "
                        "images leaves nothing to %s", ds->name, nval, n,
                        nval < 1 ? "validate on" : "train on");
    /* a seeded partial Fisher-Yates shuffle picks the held-out set; both sides
     * then keep file order, so a run sees the same samples whatever the split */
    int *perm = malloc(sizeof(int) * (size_t)n);
    int *idx = malloc(sizeof(int) * (size_t)(keep_val ? nval : n - nval));
    unsigned char *mark = calloc((size_t)ds->n_total, 1);
    if (!perm || !idx || !mark) {
        free(perm);
        free(idx);
        free(mark);
        return apb_fail(APB_ENOMEM, "%s: out of memory for a validation split", ds->name);
    }
    for (int i = 0; i < n; i++)
        perm[i] = stored(ds, i);
    apb_rng r;
    apb_rng_seed(&r, apb_hash3(seed, 0x7A1, (uint64_t)nval));
    for (int i = 0; i < nval; i++) {
        int j = i + (int)apb_rng_below(&r, (uint32_t)(n - i));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    /* mark the chosen stored samples, then list one side in visible order */
    for (int i = 0; i < nval; i++)
        mark[perm[i]] = 1;
    int k = 0;
    for (int i = 0; i < n; i++) {
        int s = stored(ds, i);
        if (mark[s] == (unsigned char)(keep_val != 0))
            idx[k++] = s;
    }
    free(mark);
    free(perm);
    free(ds->index);
    ds->index = idx;
    ds->n = k;
    return APB_OK;
}

const char *apb_dataset_path(const apb_dataset *ds, int i)
{
    if (!ds->pool || i < 0 || i >= ds->n)
        return NULL;
    return ds->pool + ds->path_off[stored(ds, i)];
}

const unsigned char *apb_dataset_pixels(const apb_dataset *ds, int i)
{
    if (!ds->pixels || i < 0 || i >= ds->n)
        return NULL;
    return ds->pixels + (size_t)stored(ds, i) * ds->c * ds->h * ds->w;
}

apb_status apb_transform_default(const apb_dataset *ds, int train, int img_size, apb_transform *t)
{
    memset(t, 0, sizeof *t);
    memcpy(t->mean, ds->mean, sizeof t->mean);
    memcpy(t->std, ds->std, sizeof t->std);
    t->out_c = ds->c;
    if (img_size < 0 || img_size > 8192)
        return apb_fail(APB_EINVAL, "%s: image size %d out of range", ds->name, img_size);
    if (ds->pool) {
        int s = img_size > 0 ? img_size : 224;
        t->out_h = t->out_w = s;
        if (train) {
            t->rrc = 1;
            t->rrc_scale[0] = 0.08f, t->rrc_scale[1] = 1.0f;
            t->rrc_ratio[0] = 3.0f / 4.0f, t->rrc_ratio[1] = 4.0f / 3.0f;
            t->hflip = 1;
        } else {
            t->resize_short = (int)((s * 256L + 112) / 224);
            t->center_crop = 1;
        }
        return APB_OK;
    }
    t->out_h = img_size > 0 ? img_size : ds->h;
    t->out_w = img_size > 0 ? img_size : ds->w;
    if (train && strncmp(ds->name, "cifar", 5) == 0) {
        t->crop_pad = 4;
        t->hflip = 1;
    }
    return APB_OK;
}

apb_status apb_dataset_sample(apb_dataset *ds, const apb_transform *t, int src, uint64_t key,
                              float *out, int *label)
{
    if (src < 0 || src >= ds->n)
        return apb_fail(APB_EINVAL, "%s: sample index %d out of range 0..%d", ds->name, src,
                        ds->n - 1);
    src = stored(ds, src);
    if (label)
        *label = ds->labels[src];
    if (ds->pixels) {
        const unsigned char *p = ds->pixels + (size_t)src * ds->c * ds->h * ds->w;
        return apb_transform_apply(t, p, ds->c, ds->h, ds->w, (long)ds->h * ds->w, ds->w, 1, key,
                                   out);
    }
    unsigned char *rgb;
    int w, h;
    APB_TRY(apb_image_load(ds->pool + ds->path_off[src], &rgb, &w, &h));
    apb_status s = apb_transform_apply(t, rgb, 3, h, w, 1, 3L * w, 3, key, out);
    free(rgb);
    return s;
}

apb_status apb_dataset_get(apb_dataset *ds, const apb_transform *t, int index, int epoch,
                           uint64_t seed, float *out, int *label)
{
    return apb_dataset_sample(ds, t, index, apb_hash3(seed, (uint64_t)(int64_t)epoch, (uint64_t)index),
                              out, label);
}
