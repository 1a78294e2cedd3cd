/* winograd_avx512.c - the Winograd tile-row transforms built with the AVX512 flags
 * (winograd_rows.h; the same bits as the baseline build). */
#include "winograd.h"

#define WINO_SUFFIX _avx512
#include "winograd_rows.h"
