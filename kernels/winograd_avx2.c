/* winograd_avx2.c - winograd.c's row transforms compiled for AVX2 (kernels/winograd_body.h). */
#include "winograd_levels.h"

#define WG(name) apb_wg_##name##_avx2
#include "winograd_body.h"
