/* arena.c - block-list bump allocator (see arena.h for the lifetime model). */
#include "arena.h"
#include "status.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct apb_arena_block {
    apb_arena_block *next;
    size_t size, off;
    unsigned char *mem;
};

void *apb_alloc_aligned(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = APB_ALIGN;
    bytes = (bytes + APB_ALIGN - 1) & ~(size_t)(APB_ALIGN - 1);
    if (posix_memalign(&p, APB_ALIGN, bytes) != 0) {
        apb_fail(APB_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

void apb_free_aligned(void *p) { free(p); }

void apb_arena_init(apb_arena *a, const char *name, size_t block_size)
{
    memset(a, 0, sizeof *a);
    a->name = name;
    a->block_size = block_size ? block_size : (size_t)1 << 20;
}

static apb_arena_block *block_new(size_t size)
{
    apb_arena_block *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    b->mem = apb_alloc_aligned(size);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->size = size;
    b->off = 0;
    b->next = NULL;
    return b;
}

void *apb_arena_alloc(apb_arena *a, size_t bytes)
{
    size_t need = (bytes + APB_ALIGN - 1) & ~(size_t)(APB_ALIGN - 1);
    if (need == 0)
        need = APB_ALIGN;
    if (!a->head || a->head->off + need > a->head->size) {
        size_t sz = need > a->block_size ? need : a->block_size;
        apb_arena_block *b = block_new(sz);
        if (!b) {
            apb_fail(APB_ENOMEM, "arena '%s': out of memory allocating %zu bytes",
                     a->name ? a->name : "?", bytes);
            return NULL;
        }
        b->next = a->head;
        a->head = b;
    }
    void *p = a->head->mem + a->head->off;
    a->head->off += need;
    a->used += need;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}

void *apb_arena_calloc(apb_arena *a, size_t bytes)
{
    void *p = apb_arena_alloc(a, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void apb_arena_reset(apb_arena *a)
{
    if (a->head && a->head->next) {
        /* Several blocks were needed: replace them by one that fits the peak. */
        size_t total = 0;
        for (apb_arena_block *b = a->head; b; b = b->next)
            total += b->size;
        apb_arena_free(a);
        a->head = block_new(total > a->block_size ? total : a->block_size);
    }
    if (a->head)
        a->head->off = 0;
    a->used = 0;
}

void apb_arena_free(apb_arena *a)
{
    apb_arena_block *b = a->head;
    while (b) {
        apb_arena_block *n = b->next;
        apb_free_aligned(b->mem);
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used = 0;
}

typedef struct {
    void *p[APB_TLS_SLOTS];
    size_t cap[APB_TLS_SLOTS];
} tls_scratch;

static _Thread_local tls_scratch *tls;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_destroy(void *v)
{
    tls_scratch *t = v;
    for (int i = 0; i < APB_TLS_SLOTS; i++)
        apb_free_aligned(t->p[i]);
    free(t);
}

static void tls_key_init(void) { pthread_key_create(&tls_key, tls_destroy); }

void *apb_thread_scratch(int slot, size_t bytes)
{
    if (!tls) {
        tls = calloc(1, sizeof *tls);
        if (!tls) {
            apb_fail(APB_ENOMEM, "out of memory allocating thread scratch");
            return NULL;
        }
        pthread_once(&tls_once, tls_key_init);
        pthread_setspecific(tls_key, tls);
    }
    if (bytes > tls->cap[slot] || !tls->p[slot]) {
        void *p = apb_alloc_aligned(bytes);
        if (!p)
            return NULL;
        apb_free_aligned(tls->p[slot]);
        tls->p[slot] = p;
        tls->cap[slot] = bytes;
    }
    return tls->p[slot];
}
