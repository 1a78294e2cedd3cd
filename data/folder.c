/* folder.c - ImageNet-style image folders: DIR/train/<class>/<file>, and
 * DIR/val/<class>/<file> or a flat DIR/val with a label list.
 *
 * Class index = position of the folder name in strcmp order of DIR/train (so
 * train and val agree whatever the directory listing order); files are sorted by
 * name inside each class, so sample order is reproducible. Only paths are kept;
 * images are decoded later on the loader's threads. A flat DIR/val is labelled
 * by DIR/val.txt or DIR/val/labels.txt, one "<file name> <class name or index>"
 * per line; a label naming an unknown class or a missing file is an error naming
 * the list file and line.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset_impl.h"

typedef struct {
    char **v;
    int n, cap;
} apb_strlist;

static void strlist_free(apb_strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int strlist_push(apb_strlist *l, const char *s)
{
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, sizeof(char *) * (size_t)nc);
        if (!v)
            return -1;
        l->v = v;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(s)))
        return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Sorted names of the sub-directories (dirs=1) or regular files (dirs=0) of
 * path, hidden entries skipped. */
static apb_status list_dir(const char *path, int dirs, apb_strlist *out)
{
    DIR *d = opendir(path);
    if (!d)
        return apb_fail(APB_EIO, "%s: cannot open directory", path);
    struct dirent *e;
    char full[4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        int isd, isf;
        if (e->d_type == DT_DIR || e->d_type == DT_REG) {
            isd = e->d_type == DT_DIR;
            isf = e->d_type == DT_REG;
        } else {
            snprintf(full, sizeof full, "%s/%s", path, e->d_name);
            isd = is_dir(full);
            isf = is_file(full);
        }
        if ((dirs && isd) || (!dirs && isf)) {
            if (strlist_push(out, e->d_name)) {
                closedir(d);
                return apb_fail(APB_ENOMEM, "%s: out of memory listing the directory", path);
            }
        }
    }
    closedir(d);
    if (out->n > 1)
        qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return APB_OK;
}

typedef struct {
    char *pool;
    size_t len, cap;
    size_t *off;
    int *labels;
    int n, ncap;
} apb_samples;

static apb_status samples_add(apb_samples *s, const char *a, const char *b, const char *c,
                              int label)
{
    size_t need = strlen(a) + (b ? strlen(b) : 0) + strlen(c) + 3;
    if (s->len + need > s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 1 << 16;
        while (nc < s->len + need)
            nc *= 2;
        char *p = realloc(s->pool, nc);
        if (!p)
            return apb_fail(APB_ENOMEM, "out of memory for file names");
        s->pool = p;
        s->cap = nc;
    }
    if (s->n == s->ncap) {
        int nc = s->ncap ? 2 * s->ncap : 1024;
        size_t *o = realloc(s->off, sizeof(size_t) * (size_t)nc);
        if (!o)
            return apb_fail(APB_ENOMEM, "out of memory for file names");
        s->off = o;
        int *l = realloc(s->labels, sizeof(int) * (size_t)nc);
        if (!l)
            return apb_fail(APB_ENOMEM, "out of memory for labels");
        s->labels = l;
        s->ncap = nc;
    }
    if (s->n == 0x7fffffff)
        return apb_fail(APB_EINVAL, "too many files");
    s->off[s->n] = s->len;
    s->labels[s->n] = label;
    if (b)
        s->len += (size_t)sprintf(s->pool + s->len, "%s/%s/%s", a, b, c) + 1;
    else
        s->len += (size_t)sprintf(s->pool + s->len, "%s/%s", a, c) + 1;
    s->n++;
    return APB_OK;
}

/* Adds every file of dir/sub/ with label `label`. (samples_add: b may be NULL
 * for a path a/c.) */
static apb_status add_class_dir(apb_samples *s, const char *dir, const char *sub, int label)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    apb_strlist files = {0};
    apb_status st = list_dir(path, 0, &files);
    for (int i = 0; st == APB_OK && i < files.n; i++)
        st = samples_add(s, dir, sub, files.v[i], label);
    strlist_free(&files);
    return st;
}

static int find_class(const apb_strlist *cls, const char *name)
{
    if (cls->n == 0)
        return -1;
    char **hit = bsearch(&name, cls->v, (size_t)cls->n, sizeof(char *), cmp_str);
    return hit ? (int)(hit - cls->v) : -1;
}

static int parse_index(const char *s, long *v)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    *v = strtol(s, NULL, 10);
    return strlen(s) < 10;
}

/* Flat DIR/val labelled by a list file. cls may be empty (no DIR/train): then
 * labels must be indices and the classes are 0..max. */
static apb_status read_label_list(apb_samples *s, const char *val, const char *list,
                                  apb_strlist *cls, int *num_classes)
{
    FILE *f = fopen(list, "r");
    if (!f)
        return apb_fail(APB_EIO, "%s: cannot open label list", list);
    char line[4096], full[8192];
    int lineno = 0, maxlab = -1;
    apb_status st = APB_OK;
    while (st == APB_OK && fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            st = apb_fail(APB_EFORMAT, "%s:%d: line too long", list, lineno);
            break;
        }
        char *tok[3] = {0};
        int nt = 0;
        for (char *p = strtok(line, " \t\r\n"); p && nt < 3; p = strtok(NULL, " \t\r\n"))
            tok[nt++] = p;
        if (nt == 0 || tok[0][0] == '#')
            continue;
        if (nt != 2) {
            st = apb_fail(APB_EFORMAT, "%s:%d: expected '<file name> <class name or index>'",
                          list, lineno);
            break;
        }
        long idx = find_class(cls, tok[1]);
        if (idx < 0) {
            long v;
            if (!parse_index(tok[1], &v) || (cls->n > 0 && v >= cls->n)) {
                if (cls->n > 0)
                    st = apb_fail(APB_EFORMAT, "%s:%d: unknown class '%s' (not a folder of train/ nor an index 0..%d)",
                                  list, lineno, tok[1], cls->n - 1);
                else
                    st = apb_fail(APB_EFORMAT, "%s:%d: unknown class '%s' (without a train/ folder labels must be class indices)",
                                  list, lineno, tok[1]);
                break;
            }
            idx = v;
        }
        snprintf(full, sizeof full, "%s/%s", val, tok[0]);
        if (!is_file(full)) {
            st = apb_fail(APB_EIO, "%s:%d: %s does not exist", list, lineno, full);
            break;
        }
        if (idx > maxlab)
            maxlab = (int)idx;
        st = samples_add(s, val, NULL, tok[0], (int)idx);
    }
    fclose(f);
    if (st == APB_OK && s->n == 0)
        st = apb_fail(APB_EFORMAT, "%s: no labelled files", list);
    *num_classes = cls->n > 0 ? cls->n : maxlab + 1;
    return st;
}

apb_status apb_folder_open(apb_dataset *ds, const char *dir, int train)
{
    char tdir[4096], vdir[4096], list[4200];
    snprintf(tdir, sizeof tdir, "%s/train", dir);
    snprintf(vdir, sizeof vdir, "%s/val", dir);
    apb_strlist cls = {0}, vsub = {0};
    apb_samples s = {0};
    apb_status st = APB_OK;
    int num_classes = 0;

    if (is_dir(tdir))
        st = list_dir(tdir, 1, &cls);
    else if (train)
        st = apb_fail(APB_EIO, "%s: not found (imagenet:DIR expects DIR/train/<class>/<image files>)",
                      tdir);
    if (st != APB_OK)
        goto done;

    if (train) {
        if (cls.n == 0) {
            st = apb_fail(APB_EFORMAT, "%s: no class folders", tdir);
            goto done;
        }
        for (int c = 0; c < cls.n && st == APB_OK; c++)
            st = add_class_dir(&s, tdir, cls.v[c], c);
        num_classes = cls.n;
        if (st == APB_OK && s.n == 0)
            st = apb_fail(APB_EFORMAT, "%s: no image files in the class folders", tdir);
        goto done;
    }

    if (!is_dir(vdir)) {
        st = apb_fail(APB_EIO, "%s: not found (the test split of imagenet:DIR is DIR/val)", vdir);
        goto done;
    }
    st = list_dir(vdir, 1, &vsub);
    if (st != APB_OK)
        goto done;
    if (vsub.n > 0) {
        if (cls.n == 0) {
            /* No train/: the val folders define the classes. */
            for (int i = 0; i < vsub.n; i++)
                if (strlist_push(&cls, vsub.v[i])) {
                    st = apb_fail(APB_ENOMEM, "out of memory");
                    goto done;
                }
        }
        for (int i = 0; i < vsub.n && st == APB_OK; i++) {
            int c = find_class(&cls, vsub.v[i]);
            if (c < 0) {
                st = apb_fail(APB_EFORMAT, "%s/%s: class folder has no counterpart in %s", vdir,
                              vsub.v[i], tdir);
                break;
            }
            st = add_class_dir(&s, vdir, vsub.v[i], c);
        }
        num_classes = cls.n;
        if (st == APB_OK && s.n == 0)
            st = apb_fail(APB_EFORMAT, "%s: no image files in the class folders", vdir);
    } else {
        snprintf(list, sizeof list, "%s/val.txt", dir);
        if (!is_file(list))
            snprintf(list, sizeof list, "%s/labels.txt", vdir);
        if (!is_file(list)) {
            st = apb_fail(APB_EIO, "%s has no class folders and no label list (%s/val.txt or %s/labels.txt)",
                          vdir, dir, vdir);
            goto done;
        }
        st = read_label_list(&s, vdir, list, &cls, &num_classes);
    }

done:
    if (st == APB_OK) {
        ds->pool = s.pool;
        ds->path_off = s.off;
        ds->labels = s.labels;
        ds->n_total = s.n;
        ds->c = 3, ds->h = 0, ds->w = 0;
        if (cls.n > 0) {
            ds->class_names = cls.v;
            ds->num_classes = cls.n;
            cls.v = NULL;
            cls.n = 0;
        } else {
            st = apb_dataset_numeric_names(ds, num_classes);
        }
    } else {
        free(s.pool);
        free(s.off);
        free(s.labels);
    }
    strlist_free(&cls);
    strlist_free(&vsub);
    return st;
}
