/* stop.c - the process-wide stop request (see stop.h).
 *
 * One lock-free int: signal handlers may only touch such objects, and the
 * worker threads that poll it need no lock to see it.
 */
#include "stop.h"

static int stop_sig;

void apb_stop_request(int sig)
{
    int none = 0;
    __atomic_compare_exchange_n(&stop_sig, &none, sig > 0 ? sig : 1, 0, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
}

int apb_stop_requested(void) { return __atomic_load_n(&stop_sig, __ATOMIC_SEQ_CST); }

void apb_stop_clear(void) { __atomic_store_n(&stop_sig, 0, __ATOMIC_SEQ_CST); }
