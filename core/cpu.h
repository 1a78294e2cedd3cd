/* cpu.h - run-time ISA detection and the level kernels dispatch on.
 *
 * Levels are ordered: a machine that supports AVX512 also runs AVX2 and REF.
 *   APB_ISA_REF    portable C, the specification every other level must match
 *   APB_ISA_AVX2   AVX2 + FMA (+ POPCNT)
 *   APB_ISA_AVX512 AVX-512 F, BW, DQ, VL and VPOPCNTDQ
 * The environment variable APB_ISA=ref|avx2|avx512 forces a level (never above
 * what the CPU and OS support); any other value is ignored with one warning on
 * stderr. Tests call apb_isa_force() to run every level.
 */
#ifndef APB_CPU_H
#define APB_CPU_H

#include "status.h"

typedef enum { APB_ISA_REF = 0, APB_ISA_AVX2 = 1, APB_ISA_AVX512 = 2 } apb_isa;
#define APB_ISA_COUNT 3

/* Best level this CPU + OS supports (cpuid + XGETBV), ignoring APB_ISA. */
apb_isa apb_isa_detected(void);
/* Level kernels use now: APB_ISA (if set) capped by apb_isa_detected(), or a forced level.
 * Inline: the runtime's per-row dispatches ask for it ~10^5 times per ResNet-18 pass
 * (a call each was 2.4% of a pass). apb_isa_active_first() reads the environment on
 * the first call; apb_isa_level holds the answer after it (-1 before). */
extern int apb_isa_level;
apb_isa apb_isa_active_first(void);
static inline apb_isa apb_isa_active(void)
{
    int a = apb_isa_level;
    return a >= 0 ? (apb_isa)a : apb_isa_active_first();
}
/* Force a level for this process; fails if the machine cannot run it. */
apb_status apb_isa_force(apb_isa level);
/* Parse "ref" / "avx2" / "avx512". */
apb_status apb_isa_parse(const char *s, apb_isa *out);
const char *apb_isa_name(apb_isa level);
/* 1 when the CPU and OS support AVX512-VNNI (VPDPBUSD on zmm) besides the
 * AVX512 level above (cpuid leaf 7 ECX bit 11), cached; kernels that use it
 * also check apb_isa_active() == APB_ISA_AVX512, so APB_ISA still caps them. */
int apb_cpu_has_avx512vnni(void);
/* A kernel path's environment switch: 1 unless the variable is set to "0", read
 * once into *cache (a static initialised to -1; storing 0 or 1 there later turns
 * the path off or on, e.g. for tests). */
int apb_env_switch(const char *name, int *cache);

#endif
