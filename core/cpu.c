/* cpu.c - cpuid/XGETBV feature detection and the APB_ISA override. */
#include "cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static apb_isa detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return APB_ISA_REF;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, popcnt = (c >> 23) & 1;
    int avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return APB_ISA_REF;
    unsigned long long xcr0 = xgetbv0();
    int ymm_os = (xcr0 & 0x6) == 0x6;           /* XMM + YMM state */
    int zmm_os = (xcr0 & 0xE6) == 0xE6;         /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_os)
        return APB_ISA_REF;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return APB_ISA_REF;
    int avx2 = (b >> 5) & 1;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    int vpopcntdq = (c >> 14) & 1;
    if (!(avx2 && fma && popcnt))
        return APB_ISA_REF;
    if (zmm_os && f && dq && bw && vl && vpopcntdq)
        return APB_ISA_AVX512;
    return APB_ISA_AVX2;
}

static int detect_vnni(void)
{
    unsigned a, b, c, d;
    if (detect() != APB_ISA_AVX512 || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (c >> 11) & 1;
}
#else
static apb_isa detect(void) { return APB_ISA_REF; }
static int detect_vnni(void) { return 0; }
#endif

int apb_cpu_has_avx512vnni(void)
{
    static int vnni = -1;
    int v = __atomic_load_n(&vnni, __ATOMIC_ACQUIRE);
    if (v < 0) {
        v = detect_vnni();
        __atomic_store_n(&vnni, v, __ATOMIC_RELEASE);
    }
    return v;
}

int apb_env_switch(const char *name, int *cache)
{
    int v = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (v < 0) {
        const char *e = getenv(name);
        v = !(e && e[0] == '0');
        __atomic_store_n(cache, v, __ATOMIC_RELEASE);
    }
    return v;
}

static int detected = -1;
int apb_isa_level = -1;

apb_isa apb_isa_detected(void)
{
    if (detected < 0)
        detected = detect();
    return (apb_isa)detected;
}

/* -1 when s names no level; no error message, so reading the environment never
 * overwrites the message of a failure being reported. */
static int level_of(const char *s)
{
    if (!strcmp(s, "ref") || !strcmp(s, "scalar"))
        return APB_ISA_REF;
    if (!strcmp(s, "avx2"))
        return APB_ISA_AVX2;
    if (!strcmp(s, "avx512"))
        return APB_ISA_AVX512;
    return -1;
}

apb_status apb_isa_parse(const char *s, apb_isa *out)
{
    int l = level_of(s);
    if (l < 0)
        return apb_fail(APB_EINVAL, "unknown ISA level '%s' (expected ref, avx2 or avx512)", s);
    *out = (apb_isa)l;
    return APB_OK;
}

apb_isa apb_isa_active_first(void)
{
    if (apb_isa_level < 0) {
        int lvl = apb_isa_detected();
        const char *env = getenv("APB_ISA");
        int want = env && *env ? level_of(env) : lvl;
        /* Read lazily by the first kernel dispatch, where no status can travel
         * back: a typo would silently run the best level, so say it (once: apb_isa_level
         * is set below). */
        if (want < 0)
            fprintf(stderr, "apb: warning: ignoring APB_ISA='%s' (expected ref, avx2 or avx512); "
                            "using %s\n", env, apb_isa_name((apb_isa)lvl));
        else if (want < lvl)
            lvl = want;
        apb_isa_level = lvl;
    }
    return (apb_isa)apb_isa_level;
}

apb_status apb_isa_force(apb_isa level)
{
    if (level > apb_isa_detected())
        return apb_fail(APB_EUNSUPPORTED, "ISA level %s is not supported by this CPU (best: %s)",
                        apb_isa_name(level), apb_isa_name(apb_isa_detected()));
    apb_isa_level = level;
    return APB_OK;
}

const char *apb_isa_name(apb_isa level)
{
    switch (level) {
    case APB_ISA_REF: return "ref";
    case APB_ISA_AVX2: return "avx2";
    case APB_ISA_AVX512: return "avx512";
    }
    return "?";
}
