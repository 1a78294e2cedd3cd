/* winograd_avx512.c - winograd.c's row transforms compiled for AVX-512 (kernels/winograd_body.h). */
#include "winograd_levels.h"

#define WG(name) apb_wg_##name##_avx512
#include "winograd_body.h"
