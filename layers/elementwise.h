/* elementwise.h - how elementwise ops (relu, hardtanh, add) split work.
 *
 * A tensor is cut into fixed blocks of APB_EW_BLOCK elements, so the blocks (and
 * the results) do not depend on the thread count; OpenMP splits them only when
 * the tensor is large enough to pay for starting the team.
 */
#ifndef APB_ELEMENTWISE_H
#define APB_ELEMENTWISE_H

#include <stdint.h>

#include "threads.h"

#define APB_EW_BLOCK (1 << 14)

static inline int apb_ew_threads(int64_t n) { return n >= (1 << 16) ? apb_threads_get() : 1; }

#endif
