/* arena.c - block-list bump allocator (see arena.h for the lifetime model). */
#include "arena.h"
#include "status.h"

#include <pthread.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct apb_arena_block {
    apb_arena_block *next;
    size_t size, off;
    unsigned char *mem;
    int mapped; /* mem from mmap (block_new), else apb_alloc_aligned */
};

/* Blocks of at least this size are mapped from the kernel directly, so a block
 * that is freed (apb_arena_reset's merge, apb_arena_free) goes back to the
 * system whatever malloc's settings: under glibc tunables that keep all freed
 * heap (mmap_threshold and trim_threshold raised, as the PyTorch anchors are
 * run), a step's first blocks stayed resident next to the merged block that
 * replaced them, 0.7 GB for ResNet-18 at batch 32 (docs/TRAINING_SPEED.md).
 * Under AddressSanitizer every block stays on malloc, so LeakSanitizer sees it. */
#define MAP_MIN ((size_t)1 << 20)

/* A released run [p, p + n) inside block b. */
struct apb_arena_span {
    unsigned char *p;
    size_t n;
    const apb_arena_block *b;
};

static size_t round_up(size_t bytes)
{
    size_t need = (bytes + APB_ALIGN - 1) & ~(size_t)(APB_ALIGN - 1);
    return need ? need : APB_ALIGN;
}

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
    b->mapped = 0;
#if !defined(__SANITIZE_ADDRESS__)
    if (size >= MAP_MIN) {
        void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        b->mem = m == MAP_FAILED ? NULL : m;
        b->mapped = b->mem != NULL;
    }
#endif
    if (!b->mapped)
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
    size_t need = round_up(bytes);
    if (!a->head || a->head->off + need > a->head->size) {
        /* Each new block at least as large as all before it: few blocks, so
         * released runs merge into long ones (apb_arena_release stays within a
         * block). The part of a block never written costs address space only. */
        size_t have = 0;
        for (const apb_arena_block *b = a->head; b; b = b->next)
            have += b->size;
        size_t sz = need > a->block_size ? need : a->block_size;
        sz = sz > have ? sz : have;
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

char *apb_arena_top(const apb_arena *a, const void **block)
{
    *block = a->head;
    return a->head ? (char *)a->head->mem + a->head->off : NULL;
}

static const apb_arena_block *block_of(const apb_arena *a, const unsigned char *p)
{
    for (const apb_arena_block *b = a->head; b; b = b->next)
        if (p >= b->mem && p < b->mem + b->size)
            return b;
    return NULL;
}

void apb_arena_release(apb_arena *a, void *ptr, size_t bytes)
{
    unsigned char *p = ptr;
    size_t n = round_up(bytes);
    const apb_arena_block *b = block_of(a, p);
    if (!b)
        return;
    if (a->nspan == a->span_cap) {
        int nc = a->span_cap ? 2 * a->span_cap : 64;
        apb_arena_span *s = realloc(a->span, (size_t)nc * sizeof *s);
        if (!s)
            return; /* not kept for reuse: only a missed saving */
        a->span = s;
        a->span_cap = nc;
    }
    if (a->poison)
        memset(p, 0xff, n);
    POISON(p, n);
    /* first span at a higher address */
    int lo = 0, hi = a->nspan;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (a->span[mid].p < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    apb_arena_span *s = a->span;
    int left = lo > 0 && s[lo - 1].b == b && s[lo - 1].p + s[lo - 1].n == p;
    int right = lo < a->nspan && s[lo].b == b && p + n == s[lo].p;
    if (left && right) {
        s[lo - 1].n += n + s[lo].n;
        memmove(s + lo, s + lo + 1, sizeof *s * (size_t)(a->nspan - lo - 1));
        a->nspan--;
    } else if (left) {
        s[lo - 1].n += n;
    } else if (right) {
        s[lo].p = p;
        s[lo].n += n;
    } else {
        memmove(s + lo + 1, s + lo, sizeof *s * (size_t)(a->nspan - lo));
        s[lo] = (apb_arena_span){p, n, b};
        a->nspan++;
    }
}

void *apb_arena_reuse(apb_arena *a, size_t bytes)
{
    size_t need = round_up(bytes);
    int best = -1;
    for (int i = 0; i < a->nspan; i++)
        if (a->span[i].n >= need && (best < 0 || a->span[i].n < a->span[best].n))
            best = i;
    if (best < 0)
        return apb_arena_alloc(a, bytes);
    apb_arena_span *s = &a->span[best];
    unsigned char *p = s->p;
    UNPOISON(p, need);
    s->p += need;
    s->n -= need;
    if (s->n == 0) {
        memmove(s, s + 1, sizeof *s * (size_t)(a->nspan - best - 1));
        a->nspan--;
    }
    return p;
}

void apb_arena_reset(apb_arena *a)
{
    a->nspan = 0;
    if (a->head && a->head->next) {
        /* Several blocks were needed: replace them by one that fits the peak
         * (the bump allocations of a step, without the old blocks' unused
         * tails), the old ones freed first. A step that bumps the same way
         * fits it exactly; one that needs more (other shapes, or released runs
         * reused differently now that they can merge across the old block
         * boundaries) adds a block and is merged again (peak only grows). */
        size_t need = a->peak > a->block_size ? a->peak : a->block_size;
        apb_arena_free(a); /* keeps a->peak */
        a->head = block_new(need);
    }
    if (a->head) {
        UNPOISON(a->head->mem, a->head->size);
        a->head->off = 0;
    }
    a->used = 0;
}

void apb_arena_free(apb_arena *a)
{
    apb_arena_block *b = a->head;
    free(a->span);
    a->span = NULL;
    a->nspan = a->span_cap = 0;
    while (b) {
        apb_arena_block *n = b->next;
        UNPOISON(b->mem, b->size);
        if (b->mapped)
            munmap(b->mem, b->size);
        else
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
