/* bits.h - the memory-accounting rule (docs/METHOD.md "Memory accounting"),
 * written once: the training model (models/model.c, behind train / eval /
 * export / report) and the runtime (infer/, behind info / bench) both count a
 * layer's bits with these functions, so every command gives the same figure.
 *
 * n: weights of the layer; index_bits: apb_index_bits(weights of the model's
 * largest compressed layer), one width for the whole model (the APB authors'
 * choice); scales: learned scales (1, or the output channels with per-channel
 * scales). Biases, BN (2 values a channel once folded) and other fp values
 * count 32 bits each and are added by the callers.
 */
#ifndef APB_BITS_H
#define APB_BITS_H

#include <stdint.h>

/* floor(log2(largest)) + 1: bits to address one weight of the largest tensor. */
int apb_index_bits(int64_t largest);
/* APB: a sign per weight, each of `s` outliers as value + position, alpha and delta. */
double apb_bits_apb(int64_t n, int64_t s, int index_bits, int scales);
/* Plain binary: a sign per weight and alpha. */
double apb_bits_binary(int64_t n, int scales);
/* Uniform 2-bit weights and their step. */
double apb_bits_q2(int64_t n);
/* Magnitude pruning: each kept weight as value + position. */
double apb_bits_pruned(int64_t kept, int index_bits);
/* Pruning + binarization: positions as a bitmap (n bits) or as indices
 * (kept * index_bits), whichever is smaller, a sign per kept weight, the scales. */
double apb_bits_prune_binary(int64_t n, int64_t kept, int index_bits, int scales);

#endif
