/* test_core.c - core: arena, RNG, status messages, atomic files, CPU levels, CRC. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "cpu.h"
#include "crc32.h"
#include "fileio.h"
#include "rng.h"
#include "status.h"
#include "test.h"
#include "threads.h"

APB_TEST(test_arena_alignment_and_reuse)
{
    apb_arena a;
    apb_arena_init(&a, "t", 256);
    void *p1 = apb_arena_alloc(&a, 10);
    void *p2 = apb_arena_alloc(&a, 1000); /* forces a second block */
    CHECK(p1 && p2);
    CHECK(((uintptr_t)p1 % APB_ALIGN) == 0 && ((uintptr_t)p2 % APB_ALIGN) == 0);
    memset(p2, 1, 1000);
    apb_arena_reset(&a);
    void *p3 = apb_arena_alloc(&a, 1000);
    void *p4 = apb_arena_alloc(&a, 10);
    CHECK(p3 && p4 && (char *)p4 == (char *)p3 + 1024); /* one coalesced block after reset */
    CHECK(a.peak >= 1000 + 64);
    apb_arena_free(&a);
    return 0;
}

/* The merged block fits the peak of bump allocations, not the sum of the old
 * blocks (whose tails went unused): the same step fits it exactly, one byte
 * more starts a new block. Blocks large enough to be mapped (>= 1 MB) too. */
APB_TEST(test_arena_merge_fits_the_peak)
{
    static const size_t sizes[] = {(size_t)1 << 10, (size_t)3 << 20};
    for (int t = 0; t < 2; t++) {
        size_t u = sizes[t]; /* a multiple of APB_ALIGN */
        apb_arena a;
        apb_arena_init(&a, "t", 2 * u);
        /* 3 allocations of 3/4 block each: every block keeps a tail unused */
        for (int i = 0; i < 3; i++)
            CHECK(apb_arena_alloc(&a, u + u / 2));
        CHECK(a.peak == 3 * (u + u / 2));
        apb_arena_reset(&a);
        const void *b0, *b1;
        char *p = apb_arena_top(&a, &b0);
        for (int i = 0; i < 3; i++) {
            char *q = apb_arena_alloc(&a, u + u / 2);
            CHECK(q == p + (size_t)i * (u + u / 2));
            memset(q, 7, u + u / 2); /* writable to its end */
        }
        apb_arena_top(&a, &b1);
        CHECK(b1 == b0); /* still one block */
        CHECK(apb_arena_alloc(&a, 1));
        apb_arena_top(&a, &b1);
        CHECK(b1 != b0); /* it was full */
        apb_arena_free(&a);
    }
    return 0;
}

APB_TEST(test_rng_deterministic_and_uniform)
{
    apb_rng r1, r2;
    apb_rng_seed(&r1, 42);
    apb_rng_seed(&r2, 42);
    for (int i = 0; i < 100; i++)
        CHECK(apb_rng_next(&r1) == apb_rng_next(&r2));
    apb_rng_seed(&r1, 7);
    int hist[10] = {0};
    double s = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) {
        float u = apb_rng_uniform(&r1);
        CHECK(u >= 0 && u < 1);
        hist[(int)(u * 10)]++;
        float z = apb_rng_normal(&r1);
        s += z;
        s2 += (double)z * z;
    }
    for (int i = 0; i < 10; i++)
        CHECK_MSG(hist[i] > 9500 && hist[i] < 10500, "bucket %d has %d", i, hist[i]);
    CHECK_CLOSE(s / 100000, 0.0, 0, 0.02);
    CHECK_CLOSE(s2 / 100000, 1.0, 0, 0.03);
    for (int i = 0; i < 1000; i++)
        CHECK(apb_rng_below(&r1, 7) < 7);
    CHECK(apb_hash3(1, 2, 3) != apb_hash3(1, 2, 4));
    CHECK(apb_hash3(1, 2, 3) == apb_hash3(1, 2, 3));
    return 0;
}

APB_TEST(test_status_messages)
{
    apb_status s = apb_fail(APB_EFORMAT, "%s: bad magic 0x%x", "x.bin", 0x1234);
    CHECK(s == APB_EFORMAT);
    CHECK(strcmp(apb_errmsg(), "x.bin: bad magic 0x1234") == 0);
    apb_fail_context(s, "loading %s", "model");
    CHECK(strcmp(apb_errmsg(), "loading model: x.bin: bad magic 0x1234") == 0);
    return 0;
}

APB_TEST(test_atomic_write_keeps_old_file_on_abort)
{
    char path[600];
    snprintf(path, sizeof path, "%s/f.bin", apb_test_tmpdir());
    CHECK_OK(apb_file_write_atomic(path, "hello", 5));
    apb_atomic_file af;
    CHECK_OK(apb_atomic_open(&af, path));
    CHECK_OK(apb_atomic_write(&af, "partial", 7));
    apb_atomic_abort(&af);
    unsigned char *d;
    size_t n;
    CHECK_OK(apb_file_read(path, &d, &n));
    CHECK(n == 5 && memcmp(d, "hello", 5) == 0);
    free(d);
    CHECK(!apb_file_exists(af.tmp));
    CHECK(apb_file_read("/nonexistent/zz", &d, &n) == APB_EIO);
    CHECK(strstr(apb_errmsg(), "/nonexistent/zz") != NULL);
    return 0;
}

APB_TEST(test_crc32_known_value)
{
    CHECK(apb_crc32(0, "123456789", 9) == 0xCBF43926u);
    uint32_t c = apb_crc32(0, "1234", 4);
    CHECK(apb_crc32(c, "56789", 5) == 0xCBF43926u);
    return 0;
}

APB_TEST(test_isa_levels)
{
    apb_isa best = apb_isa_detected();
    CHECK(apb_isa_active() <= best);
    apb_isa x;
    CHECK_OK(apb_isa_parse("avx2", &x));
    CHECK(x == APB_ISA_AVX2);
    CHECK(apb_isa_parse("sse9", &x) == APB_EINVAL);
    for (int l = 0; l <= (int)best; l++) {
        CHECK_OK(apb_isa_force((apb_isa)l));
        CHECK(apb_isa_active() == (apb_isa)l);
    }
    CHECK_OK(apb_isa_force(best));
    return 0;
}

/* apb_env_switch (APB_WINOGRAD, APB_I8_VNNI): on unless the variable is "0", read
 * once, and the cache can be overridden afterwards. */
APB_TEST(test_env_switch_reads_once)
{
    int c1 = -1, c2 = -1, c3 = -1;
    unsetenv("APB_TEST_SWITCH");
    CHECK(apb_env_switch("APB_TEST_SWITCH", &c1) == 1);
    setenv("APB_TEST_SWITCH", "0", 1);
    CHECK(apb_env_switch("APB_TEST_SWITCH", &c1) == 1); /* cached */
    CHECK(apb_env_switch("APB_TEST_SWITCH", &c2) == 0);
    setenv("APB_TEST_SWITCH", "1", 1);
    CHECK(apb_env_switch("APB_TEST_SWITCH", &c3) == 1);
    c3 = 0;
    CHECK(apb_env_switch("APB_TEST_SWITCH", &c3) == 0);
    unsetenv("APB_TEST_SWITCH");
    return 0;
}

/* apb_split_even cuts like OpenMP's schedule(static) (the first n % nth runs one
 * longer, contiguous, covering [0, n)); apb_claims hands every unit out once:
 * a lone claimer takes its own band in order, then the other bands' in order,
 * and a team of 2 or 3 threads claims each of n units exactly once. */
APB_TEST(test_split_even_and_claims)
{
    long lo, hi, prev = 0;
    for (int me = 0; me < 3; me++) {
        apb_split_even(7, me, 3, &lo, &hi);
        CHECK(lo == prev && hi - lo == (me == 0 ? 3 : 2));
        prev = hi;
    }
    CHECK(prev == 7);
    apb_claims c;
    apb_claims_init(&c, 10, 3); /* bands [0,4) [4,7) [7,10) */
    static const long want[] = {4, 5, 6, 7, 8, 9, 0, 1, 2, 3};
    for (int i = 0; i < 10; i++)
        CHECK(apb_claim(&c, 1) == want[i]);
    CHECK(apb_claim(&c, 1) == -1 && apb_claim(&c, 0) == -1);
    for (int nth = 2; nth <= 3; nth++) {
        enum { N = 5000 };
        static int seen[N];
        memset(seen, 0, sizeof seen);
        apb_claims_init(&c, N, nth);
#pragma omp parallel num_threads(nth)
        for (long i; (i = apb_claim(&c, apb_thread_num())) >= 0;) {
#pragma omp atomic
            seen[i]++;
        }
        int bad = 0;
        for (int i = 0; i < N; i++)
            bad += seen[i] != 1;
        CHECK_MSG(bad == 0, "%d threads: %d units not claimed exactly once", nth, bad);
    }
    return 0;
}

/* apb_threads_solo: while on, apb_threads_get() is 1 on the calling thread
 * only; off, the setting again. */
APB_TEST(test_threads_solo_is_per_thread)
{
    int saved = apb_threads_get(), seen[2] = {0, 0};
    apb_threads_set(2);
#pragma omp parallel num_threads(2)
    {
        int me = apb_thread_num();
        if (me == 0)
            apb_threads_solo(1);
#pragma omp barrier
        if (me < 2)
            seen[me] = apb_threads_get();
#pragma omp barrier
        if (me == 0)
            apb_threads_solo(0);
    }
    int after = apb_threads_get();
    apb_threads_set(saved);
    CHECK_MSG(seen[0] == 1, "solo thread sees %d threads", seen[0]);
    CHECK_MSG(seen[1] == 2 || seen[1] == 0, "the other thread sees %d threads", seen[1]); /* 0: team of 1 */
    CHECK(after == 2);
    return 0;
}
