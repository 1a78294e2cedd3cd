/* rng.h - seedable random numbers with explicit state (xoshiro256**).
 *
 * No rand(), no hidden globals: every consumer owns an apb_rng. apb_hash3()
 * derives independent streams from (seed, epoch, index) so per-sample
 * randomness does not depend on the order or thread that draws it.
 */
#ifndef APB_RNG_H
#define APB_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} apb_rng;

void apb_rng_seed(apb_rng *r, uint64_t seed);
uint64_t apb_rng_next(apb_rng *r);
/* Uniform in [0, 1). */
float apb_rng_uniform(apb_rng *r);
/* Standard normal (Box-Muller). */
float apb_rng_normal(apb_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint32_t apb_rng_below(apb_rng *r, uint32_t n);
/* Mixes three words into one (splitmix64 finaliser chain). */
uint64_t apb_hash3(uint64_t a, uint64_t b, uint64_t c);

#endif
