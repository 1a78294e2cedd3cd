/* ewise_avx512.c - ewise.h's loops compiled for AVX-512 (kernels/ewise_body.h). */
#include "ewise.h"
#include "ewise_levels.h"

#define EW(name) apb_ew_##name##_avx512
#include "ewise_body.h"
