/* arena.h - bump allocators with named lifetimes.
 *
 * Every buffer in apb lives in an arena whose name says how long it lives:
 * "params", "grads", "optim", "step" (per-step activations, reset each batch),
 * "scratch". Allocations are 64-byte aligned. apb_arena_reset() keeps the memory
 * and, when a step needed more than one block, merges the blocks into one so the
 * steady state does a single allocation per lifetime and no mmap/munmap churn.
 */
#ifndef APB_ARENA_H
#define APB_ARENA_H

#include <stddef.h>

typedef struct apb_arena_block apb_arena_block;
typedef struct apb_arena_span apb_arena_span;

typedef struct {
    const char *name;
    apb_arena_block *head; /* current block; older blocks follow via ->next */
    size_t block_size;     /* minimum size of a new block */
    size_t used;           /* bytes handed out since the last reset */
    size_t peak;           /* largest `used` ever seen */
    /* released memory (apb_arena_release), by address, neighbours merged */
    apb_arena_span *span;
    int nspan, span_cap;
    int poison;            /* tests: fill released memory with NaN bytes (0xff) */
} apb_arena;

#define APB_ALIGN 64

void apb_arena_init(apb_arena *a, const char *name, size_t block_size);
/* 64-byte aligned, uninitialised; NULL (with apb_errmsg set) when out of memory. */
void *apb_arena_alloc(apb_arena *a, size_t bytes);
void *apb_arena_calloc(apb_arena *a, size_t bytes);
/* Hands [p, p + bytes) back before the next reset, for apb_arena_reuse (the bump
 * pointer does not move back). p and bytes must be what apb_arena_alloc or
 * apb_arena_reuse returned (or a run of consecutive such allocations); memory
 * released twice is a bug. Under AddressSanitizer released memory is poisoned,
 * so a read of it is reported. */
void apb_arena_release(apb_arena *a, void *p, size_t bytes);
/* Like apb_arena_alloc, but from released memory first (the smallest released
 * run that fits, cut from its start); bumps only when none fits. */
void *apb_arena_reuse(apb_arena *a, size_t bytes);
/* Where the next bump allocation starts if it fits the current block, and that
 * block (*block; NULL with an empty arena): allocations made between two calls
 * that see the same block are one contiguous run ending at the second top. */
char *apb_arena_top(const apb_arena *a, const void **block);
/* Forget every allocation, keep (and coalesce) the memory. */
void apb_arena_reset(apb_arena *a);
void apb_arena_free(apb_arena *a);

/* Plain aligned heap helpers for long-lived single buffers. */
void *apb_alloc_aligned(size_t bytes);
void apb_free_aligned(void *p);

/* Grow-only per-thread scratch, one buffer per slot, freed when the thread exits
 * (so OpenMP worker threads that come and go leak nothing). Contents are not
 * preserved when a request grows the buffer. NULL (apb_errmsg set) when out of
 * memory. Kernels use it for packing buffers: steady state allocates nothing. */
enum {
    APB_TLS_SGEMM,
    APB_TLS_BITPACK,
    APB_TLS_BGEMM,
    APB_TLS_BGEMM_A,
    APB_TLS_AMX_A,
    APB_TLS_AMX_B,
    APB_TLS_SPMM,
    APB_TLS_WINO,
    APB_TLS_SLOTS
};
void *apb_thread_scratch(int slot, size_t bytes);

#endif
