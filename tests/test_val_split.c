/* test_val_split.c - the validation hold-out (`apb train --val N`): the two
 * sides of a split are disjoint, cover the limited training split and are the
 * same on every call; the trainer logs validation accuracy and picks best.ckpt
 * by it, never by the test set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "dataset.h"
#include "fileio.h"
#include "test.h"
#include "trainer.h"

APB_TEST(test_val_split_sides_disjoint_and_complete)
{
    apb_dataset *val, *rest, *val2;
    CHECK_OK(apb_dataset_open("fashion-mnist", "train", &val));
    CHECK_OK(apb_dataset_open("fashion-mnist", "train", &rest));
    CHECK_OK(apb_dataset_open("fashion-mnist", "train", &val2));
    apb_dataset_limit(val, 1000);
    apb_dataset_limit(rest, 1000);
    apb_dataset_limit(val2, 1000);
    CHECK_OK(apb_dataset_holdout(val, 100, 42, 1));
    CHECK_OK(apb_dataset_holdout(rest, 100, 42, 0));
    CHECK_OK(apb_dataset_holdout(val2, 100, 42, 1));
    CHECK(apb_dataset_size(val) == 100 && apb_dataset_size(rest) == 900);
    apb_dataset *all;
    CHECK_OK(apb_dataset_open("fashion-mnist", "train", &all));
    const unsigned char *base = apb_dataset_pixels(all, 0);
    int c, h, w;
    apb_dataset_geometry(all, &c, &h, &w);
    size_t chw = (size_t)c * h * w;
    char seen[1000] = {0};
    int bad = 0, classes[10] = {0};
    for (int i = 0; i < 100; i++) {
        /* the sides are views of one file: compare sample contents */
        const unsigned char *p = apb_dataset_pixels(val, i);
        CHECK(memcmp(p, apb_dataset_pixels(val2, i), chw) == 0); /* same split again */
        int hit = -1;
        for (int k = 0; k < 1000 && hit < 0; k++)
            if (!memcmp(p, base + (size_t)k * chw, chw) &&
                apb_dataset_label(val, i) == apb_dataset_label(all, k) && !seen[k])
                hit = k;
        bad += hit < 0;
        if (hit >= 0)
            seen[hit] = 1;
        classes[apb_dataset_label(val, i)]++;
    }
    for (int i = 0; i < 900; i++) {
        const unsigned char *p = apb_dataset_pixels(rest, i);
        int hit = -1;
        for (int k = 0; k < 1000 && hit < 0; k++)
            if (!seen[k] && !memcmp(p, base + (size_t)k * chw, chw))
                hit = k;
        bad += hit < 0;
        if (hit >= 0)
            seen[hit] = 1;
    }
    int covered = 0;
    for (int k = 0; k < 1000; k++)
        covered += seen[k];
    int nclasses = 0;
    for (int k = 0; k < 10; k++)
        nclasses += classes[k] > 0;
    apb_dataset_free(val);
    apb_dataset_free(rest);
    apb_dataset_free(val2);
    apb_dataset_free(all);
    CHECK_MSG(bad == 0 && covered == 1000, "%d samples unmatched, %d of 1000 covered", bad, covered);
    CHECK_MSG(nclasses >= 8, "validation set holds only %d classes", nclasses);
    /* a split that leaves nothing on one side is refused */
    CHECK_OK(apb_dataset_open("fashion-mnist", "train", &val));
    apb_dataset_limit(val, 50);
    CHECK(apb_dataset_holdout(val, 50, 1, 1) == APB_EINVAL);
    CHECK(strstr(apb_errmsg(), "train on") != NULL);
    apb_dataset_free(val);
    return 0;
}

APB_TEST(test_val_split_trainer_selects_best_by_validation)
{
    apb_train_cfg c;
    apb_train_cfg_default(&c);
    snprintf(c.out_dir, sizeof c.out_dir, "%s/val", apb_test_tmpdir());
    c.limit_train = 640;
    c.limit_test = 128;
    c.val = 128;
    c.epochs = 3;
    c.batch = 64;
    c.quiet = 1;
    c.threads = 2;
    CHECK_OK(apb_train_run(&c, NULL));
    char path[1200];
    snprintf(path, sizeof path, "%s/log.csv", c.out_dir);
    unsigned char *d;
    size_t n;
    CHECK_OK(apb_file_read(path, &d, &n));
    d = realloc(d, n + 1);
    d[n] = 0;
    CHECK_MSG(strstr((char *)d, ",val_loss,val_acc\n") != NULL, "log.csv header: %.160s", (char *)d);
    double best_val = -1, vals[3];
    int rows = 0;
    for (char *l = strchr((char *)d, '\n') + 1; *l && rows < 3; rows++) {
        /* val_acc is the 11th column */
        char *f = l;
        for (int k = 0; k < 10 && f; k++)
            if ((f = strchr(f, ',')))
                f++;
        CHECK(f != NULL);
        vals[rows] = strtod(f, NULL);
        if (vals[rows] > best_val)
            best_val = vals[rows];
        char *e = strchr(l, '\n');
        if (!e)
            break;
        l = e + 1;
    }
    free(d);
    CHECK_MSG(rows == 3, "%d log rows", rows);
    snprintf(path, sizeof path, "%s/last.ckpt", c.out_dir);
    apb_ckpt ck;
    CHECK_OK(apb_ckpt_load(path, &ck));
    double stored = ck.meta.best_acc;
    apb_ckpt_free(&ck);
    CHECK_MSG(stored > best_val - 1e-3 && stored < best_val + 1e-3,
              "best_acc %.4f is not the best validation accuracy %.4f", stored, best_val);
    return 0;
}
