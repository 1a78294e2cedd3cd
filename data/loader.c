/* loader.c - background prefetch of transformed batches with worker threads.
 *
 * Work is handed out as runs of epoch positions ("items"): worker threads claim
 * the next run under one mutex, decode and transform it outside the lock
 * straight into the batch buffer, then count it done. A batch may be claimed
 * only while its ring slot is free, which bounds memory to APB_LOADER_SLOTS
 * batches. Each item's result depends only on (seed, epoch, position), never on
 * which thread ran it or when, so the batches do not depend on the thread count.
 *
 * Shards (apb_loader_shard, data-parallel training): global batch b of the
 * epoch order is positions [b G, b G + G), G = nranks * batch, and process
 * `rank` takes its rank-th part of it; items count slot positions b * batch + p,
 * which map to epoch positions through batch_start(). With one rank this is
 * exactly the unsharded loader.
 *
 * Undecodable files: the item falls through to the next index in dataset order
 * (wrapping) until a file decodes, keeping the random key of the original
 * index; the file is marked bad (later epochs skip it without decoding) and
 * recorded once with its reason.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_impl.h"
#include "loader.h"
#include "rng.h"
#include "threads.h"

#define APB_LOADER_SLOTS 3

typedef struct {
    float *x;      /* [batch, C, H, W] */
    int *y;        /* [batch] */
    int done;      /* samples finished for the batch in this slot */
    int replaced;  /* of which were replacements for undecodable files */
    apb_status err;
    char msg[512];
} apb_slot;

typedef struct {
    char *path, *reason;
} apb_badfile;

struct apb_loader {
    apb_dataset *ds;
    apb_transform t;
    int batch, shuffle, drop_last, nthreads, chunk;
    int rank, nranks;   /* this process's shard of every global batch (0, 1: all) */
    long total;         /* epoch positions served: whole global batches, or all */
    uint64_t seed;
    int n;              /* dataset size when the loader was created */
    long sample_len;    /* C*H*W floats */
    int *order;         /* [n] dataset index at each epoch position */
    unsigned char *bad; /* [n] 1 once the file is known undecodable */
    apb_slot slots[APB_LOADER_SLOTS];
    pthread_t *threads;
    int nstarted;

    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    int quit, started, epoch;
    uint64_t gen;       /* bumped by start_epoch; stale work is discarded */
    long next_item, total_items;
    int nbatches, consumed, cur, holding, active, skipped;
    apb_badfile *badv;
    int nbad, badcap;
};

/* Epoch positions [lo, hi) of this process's part of global batch b: the
 * rank-th of nranks near-equal parts of the global batch (all of it for one rank). */
static void shard_range(const apb_loader *ld, int b, long *lo, long *hi)
{
    long g = (long)ld->batch * ld->nranks, start = (long)b * g;
    long len = ld->total - start < g ? ld->total - start : g;
    *lo = start + len * ld->rank / ld->nranks;
    *hi = start + len * (ld->rank + 1) / ld->nranks;
}

static int batch_len(const apb_loader *ld, int b)
{
    long lo, hi;
    shard_range(ld, b, &lo, &hi);
    return (int)(hi - lo);
}

/* The epoch position of the first sample of this process's batch b. */
static long batch_start(const apb_loader *ld, int b)
{
    long lo, hi;
    shard_range(ld, b, &lo, &hi);
    return lo;
}

static void record_bad(apb_loader *ld, int idx, const char *msg)
{
    const char *path = apb_dataset_path(ld->ds, idx);
    if (!path)
        path = "?";
    size_t pl = strlen(path);
    const char *reason = msg;
    if (strncmp(msg, path, pl) == 0 && msg[pl] == ':' && msg[pl + 1] == ' ')
        reason = msg + pl + 2;
    pthread_mutex_lock(&ld->mu);
    if (ld->nbad == ld->badcap) {
        int nc = ld->badcap ? 2 * ld->badcap : 16;
        apb_badfile *v = realloc(ld->badv, sizeof *v * (size_t)nc);
        if (v) {
            ld->badv = v;
            ld->badcap = nc;
        }
    }
    if (ld->nbad < ld->badcap) {
        ld->badv[ld->nbad].path = strdup(path);
        ld->badv[ld->nbad].reason = strdup(reason);
        ld->nbad++;
    }
    pthread_mutex_unlock(&ld->mu);
}

/* Fills batch position `pos` of slot from epoch position k. */
static void run_item(apb_loader *ld, int epoch, long k, apb_slot *slot, int pos, int *replaced,
                     apb_status *err, char *msg, size_t msglen)
{
    int idx0 = ld->order[k];
    uint64_t key = apb_hash3(ld->seed, (uint64_t)(int64_t)epoch, (uint64_t)idx0);
    float *out = slot->x + (size_t)pos * ld->sample_len;
    int idx = idx0;
    for (int tries = 0; tries < ld->n; tries++, idx = idx + 1 < ld->n ? idx + 1 : 0) {
        if (__atomic_load_n(&ld->bad[idx], __ATOMIC_ACQUIRE))
            continue;
        int label;
        apb_status s = apb_dataset_sample(ld->ds, &ld->t, idx, key, out, &label);
        if (s == APB_OK) {
            slot->y[pos] = label;
            if (idx != idx0)
                (*replaced)++;
            return;
        }
        if (!ld->ds->pool) {
            /* In-memory samples cannot be undecodable: a real error. */
            *err = s;
            snprintf(msg, msglen, "%s", apb_errmsg());
            return;
        }
        if (__atomic_exchange_n(&ld->bad[idx], 1, __ATOMIC_ACQ_REL) == 0)
            record_bad(ld, idx, apb_errmsg());
    }
    *err = APB_EFORMAT;
    pthread_mutex_lock(&ld->mu);
    snprintf(msg, msglen, "%s: none of the %d files could be decoded (first: %s: %s)",
             ld->ds->name, ld->n, ld->nbad > 0 && ld->badv[0].path ? ld->badv[0].path : "?",
             ld->nbad > 0 && ld->badv[0].reason ? ld->badv[0].reason : "?");
    pthread_mutex_unlock(&ld->mu);
}

static void *worker(void *arg)
{
    apb_loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    while (!ld->quit) {
        if (ld->next_item < ld->total_items) {
            long k0 = ld->next_item;
            int b = (int)(k0 / ld->batch);
            if (b < ld->consumed + APB_LOADER_SLOTS) {
                long bend = (long)b * ld->batch + batch_len(ld, b);
                if (k0 >= bend) { /* a shard shorter than the slot: on to the next batch */
                    ld->next_item = (long)(b + 1) * ld->batch;
                    continue;
                }
                long k1 = k0 + ld->chunk < bend ? k0 + ld->chunk : bend;
                long pos0 = batch_start(ld, b) - (long)b * ld->batch;
                ld->next_item = k1;
                ld->active++;
                uint64_t gen = ld->gen;
                int epoch = ld->epoch;
                apb_slot *slot = &ld->slots[b % APB_LOADER_SLOTS];
                pthread_mutex_unlock(&ld->mu);

                int replaced = 0;
                apb_status err = APB_OK;
                char msg[512] = "";
                for (long k = k0; k < k1 && err == APB_OK; k++)
                    run_item(ld, epoch, pos0 + k, slot, (int)(k - (long)b * ld->batch), &replaced,
                             &err, msg, sizeof msg);

                pthread_mutex_lock(&ld->mu);
                ld->active--;
                if (gen == ld->gen) {
                    slot->done += (int)(k1 - k0);
                    slot->replaced += replaced;
                    if (err != APB_OK && slot->err == APB_OK) {
                        slot->err = err;
                        snprintf(slot->msg, sizeof slot->msg, "%s", msg);
                    }
                    if (slot->done == batch_len(ld, b))
                        pthread_cond_broadcast(&ld->done_cv);
                }
                if (ld->active == 0)
                    pthread_cond_broadcast(&ld->done_cv);
                continue;
            }
        }
        pthread_cond_wait(&ld->work_cv, &ld->mu);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

apb_status apb_loader_create(apb_dataset *ds, const apb_transform *t, int batch, int shuffle,
                             int drop_last, uint64_t seed, int threads, apb_loader **out)
{
    *out = NULL;
    if (batch <= 0)
        return apb_fail(APB_EINVAL, "loader: batch size %d must be positive", batch);
    if (apb_dataset_size(ds) <= 0)
        return apb_fail(APB_EINVAL, "loader: dataset %s is empty", apb_dataset_name(ds));
    APB_TRY(apb_transform_check(t));
    if (threads <= 0)
        threads = apb_threads_get();
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    apb_loader *ld = calloc(1, sizeof *ld);
    if (!ld)
        return apb_fail(APB_ENOMEM, "loader: out of memory");
    ld->ds = ds;
    ld->t = *t;
    ld->batch = batch;
    ld->shuffle = shuffle;
    ld->drop_last = drop_last;
    ld->seed = seed;
    ld->nthreads = threads;
    ld->rank = 0;
    ld->nranks = 1;
    ld->n = apb_dataset_size(ds);
    ld->chunk = ds->pool ? 1 : (batch < 16 ? batch : 16);
    ld->sample_len = (long)t->out_c * t->out_h * t->out_w;
    ld->nbatches = drop_last ? ld->n / batch : (ld->n + batch - 1) / batch;
    ld->total = drop_last ? (long)ld->nbatches * batch : ld->n;
    ld->order = malloc(sizeof(int) * (size_t)ld->n);
    ld->bad = calloc((size_t)ld->n, 1);
    int ok = ld->order && ld->bad;
    for (int s = 0; s < APB_LOADER_SLOTS && ok; s++) {
        ld->slots[s].x = malloc(sizeof(float) * (size_t)batch * (size_t)ld->sample_len);
        ld->slots[s].y = malloc(sizeof(int) * (size_t)batch);
        ok = ld->slots[s].x && ld->slots[s].y;
    }
    ld->threads = calloc((size_t)threads, sizeof(pthread_t));
    if (!ok || !ld->threads) {
        apb_loader_free(ld);
        return apb_fail(APB_ENOMEM, "loader: out of memory for %d batches of %d x %dx%dx%d",
                        APB_LOADER_SLOTS, batch, t->out_c, t->out_h, t->out_w);
    }
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->work_cv, NULL);
    pthread_cond_init(&ld->done_cv, NULL);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&ld->threads[i], NULL, worker, ld) != 0) {
            apb_loader_free(ld);
            return apb_fail(APB_EIO, "loader: cannot start worker thread %d of %d", i + 1,
                            threads);
        }
        ld->nstarted++;
    }
    *out = ld;
    return APB_OK;
}

apb_status apb_loader_start_epoch(apb_loader *ld, int epoch)
{
    return apb_loader_start_epoch_at(ld, epoch, 0);
}

apb_status apb_loader_start_epoch_at(apb_loader *ld, int epoch, int first)
{
    if (first < 0 || first > ld->nbatches)
        return apb_fail(APB_EINVAL, "loader: epoch %d has %d batches, cannot start at batch %d",
                        epoch + 1, ld->nbatches, first);
    pthread_mutex_lock(&ld->mu);
    ld->gen++;
    ld->total_items = 0;
    while (ld->active > 0)
        pthread_cond_wait(&ld->done_cv, &ld->mu);
    for (int i = 0; i < ld->n; i++)
        ld->order[i] = i;
    if (ld->shuffle) {
        /* The permutation's stream is keyed apart from every sample key. */
        apb_rng r;
        apb_rng_seed(&r, apb_hash3(ld->seed, (uint64_t)(int64_t)epoch, 0xA5B0A5B0DA7A5EEDull));
        for (int i = ld->n - 1; i > 0; i--) {
            int j = (int)apb_rng_below(&r, (uint32_t)i + 1);
            int tmp = ld->order[i];
            ld->order[i] = ld->order[j];
            ld->order[j] = tmp;
        }
    }
    for (int s = 0; s < APB_LOADER_SLOTS; s++) {
        ld->slots[s].done = 0;
        ld->slots[s].replaced = 0;
        ld->slots[s].err = APB_OK;
    }
    ld->epoch = epoch;
    /* the workers claim positions from next_item on and fill the slot of batch
     * b at b % APB_LOADER_SLOTS, so starting later is only these counters */
    ld->cur = ld->consumed = first;
    ld->holding = ld->skipped = 0;
    ld->next_item = (long)first * ld->batch;
    /* in slot positions: with shards, every slot's whole range (short shards skip ahead) */
    ld->total_items = ld->nranks > 1 ? (long)ld->nbatches * ld->batch : ld->total;
    ld->started = 1;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    return APB_OK;
}

apb_status apb_loader_next(apb_loader *ld, const float **x, const int **y, int *n)
{
    *n = 0;
    pthread_mutex_lock(&ld->mu);
    if (!ld->started) {
        pthread_mutex_unlock(&ld->mu);
        return apb_fail(APB_EINVAL, "loader: apb_loader_next before apb_loader_start_epoch");
    }
    if (ld->holding) {
        apb_slot *prev = &ld->slots[(ld->cur - 1) % APB_LOADER_SLOTS];
        prev->done = prev->replaced = 0;
        prev->err = APB_OK;
        ld->consumed = ld->cur;
        ld->holding = 0;
        pthread_cond_broadcast(&ld->work_cv);
    }
    if (ld->cur >= ld->nbatches) {
        pthread_mutex_unlock(&ld->mu);
        return APB_OK;
    }
    apb_slot *slot = &ld->slots[ld->cur % APB_LOADER_SLOTS];
    int need = batch_len(ld, ld->cur);
    while (slot->done < need)
        pthread_cond_wait(&ld->done_cv, &ld->mu);
    if (slot->err != APB_OK) {
        apb_status s = apb_fail(slot->err, "%s", slot->msg);
        pthread_mutex_unlock(&ld->mu);
        return s;
    }
    ld->skipped += slot->replaced;
    *x = slot->x;
    *y = slot->y;
    *n = need;
    ld->cur++;
    ld->holding = 1;
    pthread_mutex_unlock(&ld->mu);
    return APB_OK;
}

apb_status apb_loader_shard(apb_loader *ld, int rank, int nranks)
{
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return apb_fail(APB_EINVAL, "loader: shard %d of %d does not exist", rank, nranks);
    long g = (long)ld->batch * nranks;
    if (ld->drop_last ? ld->n < g : ld->n < nranks)
        return apb_fail(APB_EINVAL, "loader: %s has %d samples, too few for %d processes%s%ld",
                        apb_dataset_name(ld->ds), ld->n, nranks,
                        ld->drop_last ? " with whole global batches of " : "", ld->drop_last ? g : 0L);
    pthread_mutex_lock(&ld->mu);
    ld->gen++;
    ld->total_items = 0;
    while (ld->active > 0)
        pthread_cond_wait(&ld->done_cv, &ld->mu);
    ld->started = 0;
    ld->rank = rank;
    ld->nranks = nranks;
    ld->nbatches = (int)(ld->drop_last ? ld->n / g : (ld->n + g - 1) / g);
    ld->total = ld->drop_last ? (long)ld->nbatches * g : ld->n;
    pthread_mutex_unlock(&ld->mu);
    return APB_OK;
}

int apb_loader_batches_per_epoch(const apb_loader *ld) { return ld->nbatches; }

const int *apb_loader_order(const apb_loader *ld, int *n)
{
    *n = ld->n;
    return ld->order;
}
int apb_loader_skipped(const apb_loader *ld) { return ld->skipped; }
int apb_loader_bad_count(const apb_loader *ld) { return ld->nbad; }

void apb_loader_bad_file(const apb_loader *ld, int i, const char **path, const char **reason)
{
    *path = i >= 0 && i < ld->nbad && ld->badv[i].path ? ld->badv[i].path : "?";
    *reason = i >= 0 && i < ld->nbad && ld->badv[i].reason ? ld->badv[i].reason : "?";
}

int apb_loader_is_bad(const apb_loader *ld, int index)
{
    return index >= 0 && index < ld->n && __atomic_load_n(&ld->bad[index], __ATOMIC_ACQUIRE);
}

void apb_loader_free(apb_loader *ld)
{
    if (!ld)
        return;
    if (ld->nstarted > 0) {
        pthread_mutex_lock(&ld->mu);
        ld->quit = 1;
        pthread_cond_broadcast(&ld->work_cv);
        pthread_mutex_unlock(&ld->mu);
        for (int i = 0; i < ld->nstarted; i++)
            pthread_join(ld->threads[i], NULL);
    }
    if (ld->threads) {
        pthread_mutex_destroy(&ld->mu);
        pthread_cond_destroy(&ld->work_cv);
        pthread_cond_destroy(&ld->done_cv);
    }
    for (int s = 0; s < APB_LOADER_SLOTS; s++) {
        free(ld->slots[s].x);
        free(ld->slots[s].y);
    }
    for (int i = 0; i < ld->nbad; i++) {
        free(ld->badv[i].path);
        free(ld->badv[i].reason);
    }
    free(ld->badv);
    free(ld->threads);
    free(ld->order);
    free(ld->bad);
    free(ld);
}
