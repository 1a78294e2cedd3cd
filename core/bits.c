/* bits.c - the memory-accounting rule (see bits.h). */
#include "bits.h"

int apb_index_bits(int64_t largest)
{
    int ib = 0;
    while (ib < 63 && ((int64_t)1 << ib) <= largest)
        ib++;
    return ib;
}

double apb_bits_apb(int64_t n, int64_t s, int index_bits, int scales)
{
    return (double)n + (double)s * (32 + index_bits) + 64.0 * scales;
}

double apb_bits_binary(int64_t n, int scales)
{
    return (double)n + 32.0 * scales;
}

double apb_bits_q2(int64_t n)
{
    return 2.0 * (double)n + 32.0;
}

double apb_bits_pruned(int64_t kept, int index_bits)
{
    return (double)kept * (32 + index_bits);
}

double apb_bits_prune_binary(int64_t n, int64_t kept, int index_bits, int scales)
{
    double idx = (double)kept * index_bits;
    return (idx < (double)n ? idx : (double)n) + (double)kept + 32.0 * scales;
}
