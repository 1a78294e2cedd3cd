/* cmd_data.c - `apb data SPEC`: what a dataset holds, what is wrong with it, and
 * what the augmented samples look like.
 *
 * Prints, per split, the sample count, class count, the label histogram and any
 * unreadable files (folder datasets are decoded once in full on the loader's
 * threads for this; --no-check skips it). The count and the histogram are of
 * the samples training can use: undecodable files are counted apart
 * (undecodable=N) and listed, never in samples=. --dump N DIR writes the first N
 * samples after the split's default transform as DIR/000000_<class>.png, so a
 * user can see exactly what the network is fed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "fileio.h"
#include "loader.h"

static void usage(void)
{
    printf("usage: apb data SPEC [--split train|test] [--dump N DIR] [--threads T] [--seed S]\n"
           "                [--no-check]\n"
           "  SPEC: fashion-mnist[:DIR] | mnist:DIR | cifar10:DIR | cifar100:DIR | imagenet:DIR\n"
           "  Prints samples, classes and the label histogram per split, and lists files\n"
           "  that cannot be decoded (folder datasets; --no-check skips the full decode).\n"
           "  samples= and the histogram count decodable files only; undecodable=N the rest.\n"
           "  --dump N DIR writes the first N samples after augmentation as PNG files.\n");
}

/* Decodes every file of a folder dataset once; *out holds the loader, whose bad
 * files are the undecodable ones (also when the pass itself fails). */
static apb_status decode_all(apb_dataset *ds, int threads, apb_loader **out)
{
    apb_transform t;
    *out = NULL;
    apb_status s = apb_transform_default(ds, 0, 16, &t);
    if (s == APB_OK)
        s = apb_loader_create(ds, &t, 64, 0, 0, 0, threads, out);
    if (s == APB_OK)
        s = apb_loader_start_epoch(*out, 0);
    const float *x;
    const int *y;
    int n = 1;
    while (s == APB_OK && n > 0)
        s = apb_loader_next(*out, &x, &y, &n);
    return s;
}

static void print_bad_files(const apb_loader *ld)
{
    int nbad = apb_loader_bad_count(ld);
    printf("  unreadable files: %d\n", nbad);
    for (int i = 0; i < nbad; i++) {
        const char *p, *why;
        apb_loader_bad_file(ld, i, &p, &why);
        printf("    %s: %s\n", p, why);
    }
}

static int dump_samples(apb_dataset *ds, int train, int count, const char *dir, uint64_t seed)
{
    apb_status s = apb_mkdirs(dir);
    if (s != APB_OK)
        return apb_cli_error("data", s);
    apb_transform t;
    if ((s = apb_transform_default(ds, train, 0, &t)) != APB_OK)
        return apb_cli_error("data", s);
    float *x = malloc(sizeof(float) * (size_t)t.out_c * t.out_h * t.out_w);
    if (!x)
        return apb_cli_error("data", apb_fail(APB_ENOMEM, "out of memory"));
    int written = 0;
    for (int i = 0; i < count && i < apb_dataset_size(ds); i++) {
        int label;
        s = apb_dataset_get(ds, &t, i, 0, seed, x, &label);
        if (s != APB_OK) {
            fprintf(stderr, "apb data: skipping sample %d: %s\n", i, apb_errmsg());
            continue;
        }
        char cls[64], path[2048];
        snprintf(cls, sizeof cls, "%s", apb_dataset_class_name(ds, label));
        for (char *p = cls; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
                *p = '_';
        snprintf(path, sizeof path, "%s/%06d_%s.png", dir, i, cls);
        if ((s = apb_png_write_sample(path, x, t.out_c, t.out_h, t.out_w, &t)) != APB_OK) {
            free(x);
            return apb_cli_error("data", s);
        }
        written++;
    }
    free(x);
    printf("  dumped %d samples (%s transform, %dx%dx%d) to %s\n", written,
           train ? "train" : "eval", t.out_c, t.out_h, t.out_w, dir);
    return 0;
}

int apb_cmd_data(int argc, char **argv)
{
    const char *spec = NULL, *split = NULL, *dump_dir = NULL;
    int dump_n = 0, threads = 0, seed = 0, bad = 0, no_check = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        }
        if (!strcmp(argv[i], "--dump")) {
            char *end;
            if (i + 2 >= argc || (dump_n = (int)strtol(argv[i + 1], &end, 10), *end) ||
                dump_n < 0) {
                fprintf(stderr, "apb data: --dump needs N DIR\n");
                return 1;
            }
            dump_dir = argv[i + 2];
            i += 2;
            continue;
        }
        if (!strcmp(argv[i], "--no-check")) {
            no_check = 1;
            continue;
        }
        if (apb_opt_str(argc, argv, &i, "--split", &split, &bad) ||
            apb_opt_int(argc, argv, &i, "--threads", &threads, &bad) ||
            apb_opt_int(argc, argv, &i, "--seed", &seed, &bad))
            continue;
        if (argv[i][0] == '-' || spec) {
            fprintf(stderr, "apb data: unexpected argument '%s' (see apb data --help)\n", argv[i]);
            return 1;
        }
        spec = argv[i];
    }
    if (bad)
        return 1;
    if (!spec) {
        usage();
        return 1;
    }
    if (split && strcmp(split, "train") && strcmp(split, "test") && strcmp(split, "val")) {
        fprintf(stderr, "apb data: --split must be train or test, not '%s'\n", split);
        return 1;
    }
    const char *splits[2] = {"train", "test"};
    int nsplits = 2;
    if (split) {
        splits[0] = split;
        nsplits = 1;
    }
    for (int si = 0; si < nsplits; si++) {
        apb_dataset *ds;
        apb_status s = apb_dataset_open(spec, splits[si], &ds);
        if (s != APB_OK)
            return apb_cli_error("data", s);
        int c, h, w, k = apb_dataset_num_classes(ds), n = apb_dataset_size(ds);
        apb_dataset_geometry(ds, &c, &h, &w);
        /* Folder datasets are decoded before anything is counted, so samples=
         * and the histogram hold only what a training run can read. */
        int folder = apb_dataset_path(ds, 0) != NULL, nbad = 0;
        apb_loader *ld = NULL;
        if (folder && !no_check) {
            s = decode_all(ds, threads, &ld);
            if (s != APB_OK) {
                if (ld)
                    print_bad_files(ld);
                apb_loader_free(ld);
                apb_dataset_free(ds);
                return apb_cli_error("data", s);
            }
            nbad = apb_loader_bad_count(ld);
        }
        printf("dataset=%s split=%s samples=%d", apb_dataset_name(ds), splits[si], n - nbad);
        if (folder && no_check)
            printf(" undecodable=unchecked");
        else if (folder)
            printf(" undecodable=%d", nbad);
        printf(" classes=%d", k);
        if (h > 0)
            printf(" geometry=%dx%dx%d\n", c, h, w);
        else
            printf(" geometry=variable (decoded as RGB)\n");
        int *hist = calloc((size_t)k, sizeof(int));
        if (!hist) {
            apb_loader_free(ld);
            apb_dataset_free(ds);
            return apb_cli_error("data", apb_fail(APB_ENOMEM, "out of memory"));
        }
        for (int i = 0; i < n; i++)
            if (!ld || !apb_loader_is_bad(ld, i))
                hist[apb_dataset_label(ds, i)]++;
        for (int i = 0; i < k; i++)
            printf("  %4d %-24s %d\n", i, apb_dataset_class_name(ds, i), hist[i]);
        free(hist);
        if (!folder)
            printf("  unreadable files: 0 (all records validated when loading)\n");
        else if (no_check)
            printf("  unreadable files: not checked (--no-check)\n");
        else
            print_bad_files(ld);
        apb_loader_free(ld);
        int rc = 0;
        if (dump_dir && si == 0)
            rc = dump_samples(ds, strcmp(splits[si], "train") == 0, dump_n, dump_dir,
                              (uint64_t)seed);
        apb_dataset_free(ds);
        if (rc)
            return rc;
    }
    return 0;
}
