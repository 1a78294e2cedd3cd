/* winograd_avx2.c - the Winograd tile-row transforms built with the AVX2 flags
 * (winograd_rows.h; the same bits as the baseline build). */
#include "winograd.h"

#define WINO_SUFFIX _avx2
#include "winograd_rows.h"
