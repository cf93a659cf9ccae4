/*
 * pbt_random.h -- explicit random generators (xoshiro256**, seeded through
 * splitmix64).  Every random draw in pbt takes a generator; the same seed
 * gives the same numbers on every machine.
 */
#ifndef PBT_RANDOM_H
#define PBT_RANDOM_H

#include <stdint.h>

#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pbt_generator {
  uint64_t s[4];
  double spare;   /* second normal of the last polar-method pair */
  int has_spare;
} pbt_generator;

/* Number of 64-bit words in a serialised state (see pbt_generator_state). */
#define PBT_GENERATOR_STATE_WORDS 6

void pbt_generator_seed(pbt_generator *g, uint64_t seed);
uint64_t pbt_generator_next(pbt_generator *g);
/* Uniform in [0, 1) with 53 random bits. */
double pbt_generator_uniform(pbt_generator *g);
/* Standard normal. */
double pbt_generator_normal(pbt_generator *g);
/* Uniform integer in [lo, hi] inclusive, without modulo bias; lo <= hi. */
int64_t pbt_generator_integer(pbt_generator *g, int64_t lo, int64_t hi);
void pbt_generator_state(const pbt_generator *g,
                         uint64_t out[PBT_GENERATOR_STATE_WORDS]);
/* Fails (PBT_ERR_ARG) on an all-zero xoshiro state. */
pbt_status pbt_generator_set_state(pbt_generator *g,
                                   const uint64_t in[PBT_GENERATOR_STATE_WORDS],
                                   pbt_error *err);

/* Fill t (any layout) in row-major order of its logical shape. */
void pbt_fill_uniform_(pbt_tensor *t, pbt_generator *g, double lo, double hi);
void pbt_fill_normal_(pbt_tensor *t, pbt_generator *g, double mean,
                      double std);
/* Integers in [lo, hi] inclusive. */
void pbt_fill_randint_(pbt_tensor *t, pbt_generator *g, int64_t lo,
                       int64_t hi);

#ifdef __cplusplus
}
#endif
#endif
