/* ewise_avx2.c - ewise.h's loops compiled for AVX2 (kernels/ewise_body.h). */
#include "ewise.h"
#include "ewise_levels.h"

#define EW(name) apb_ew_##name##_avx2
#include "ewise_body.h"
