/* pbt_random.c -- xoshiro256** generators seeded through splitmix64. */
#include "pbt_random.h"

#include <math.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void pbt_generator_seed(pbt_generator *g, uint64_t seed) {
  uint64_t x = seed;
  int i;
  for (i = 0; i < 4; i++) g->s[i] = splitmix64(&x);
  g->spare = 0;
  g->has_spare = 0;
}

uint64_t pbt_generator_next(pbt_generator *g) {
  uint64_t *s = g->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double pbt_generator_uniform(pbt_generator *g) {
  return (double)(pbt_generator_next(g) >> 11) * 0x1.0p-53;
}

/* Marsaglia's polar method: only +, *, log and sqrt, which IEEE 754 and
 * glibc give identically everywhere for these arguments. */
double pbt_generator_normal(pbt_generator *g) {
  double u, v, s;
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare;
  }
  do {
    u = 2.0 * pbt_generator_uniform(g) - 1.0;
    v = 2.0 * pbt_generator_uniform(g) - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  s = sqrt(-2.0 * log(s) / s);
  g->spare = v * s;
  g->has_spare = 1;
  return u * s;
}

int64_t pbt_generator_integer(pbt_generator *g, int64_t lo, int64_t hi) {
  uint64_t range = (uint64_t)hi - (uint64_t)lo, x, limit;
  if (range == UINT64_MAX) return (int64_t)pbt_generator_next(g);
  range += 1;
  /* reject the top partial block so that every value is equally likely */
  limit = UINT64_MAX - ((UINT64_MAX - range + 1) % range);
  do x = pbt_generator_next(g);
  while (x > limit);
  return (int64_t)((uint64_t)lo + x % range);
}

void pbt_generator_state(const pbt_generator *g,
                         uint64_t out[PBT_GENERATOR_STATE_WORDS]) {
  memcpy(out, g->s, sizeof g->s);
  memcpy(&out[4], &g->spare, sizeof g->spare);
  out[5] = (uint64_t)g->has_spare;
}

pbt_status pbt_generator_set_state(pbt_generator *g,
                                   const uint64_t in[PBT_GENERATOR_STATE_WORDS],
                                   pbt_error *err) {
  if ((in[0] | in[1] | in[2] | in[3]) == 0)
    return pbt_fail(err, PBT_ERR_ARG, "an all-zero state is not valid");
  if (in[5] > 1) return pbt_fail(err, PBT_ERR_ARG, "invalid spare flag");
  memcpy(g->s, in, sizeof g->s);
  memcpy(&g->spare, &in[4], sizeof g->spare);
  g->has_spare = (int)in[5];
  return PBT_OK;
}

typedef double (*draw_fn)(pbt_generator *g, const void *arg);

/* Fills t in row-major order of its logical shape. */
static void fill_with(pbt_tensor *t, pbt_generator *g, draw_fn f,
                      const void *arg) {
  const int64_t *strides[1];
  pbt_iter it;
  strides[0] = t->stride;
  if (!pbt_iter_init(&it, 1, t->ndim, t->shape, strides)) return;
  do {
    int64_t j;
    if (t->dtype == PBT_FLOAT32) {
      float *o = (float *)pbt_tensor_data(t) + it.offset[0];
      for (j = 0; j < it.n; j++) o[j * it.step[0]] = (float)f(g, arg);
    } else {
      double *o = (double *)pbt_tensor_data(t) + it.offset[0];
      for (j = 0; j < it.n; j++) o[j * it.step[0]] = f(g, arg);
    }
  } while (pbt_iter_next(&it));
}

static double draw_uniform(pbt_generator *g, const void *arg) {
  const double *a = arg;
  return a[0] + (a[1] - a[0]) * pbt_generator_uniform(g);
}
/* The same draw rounded to float32, kept below hi: rounding can carry a
 * double just under hi up to hi itself, and [lo, hi) is the promise. */
static double draw_uniform_f32(pbt_generator *g, const void *arg) {
  const double *a = arg;
  float v = (float)draw_uniform(g, arg), hi = (float)a[1];
  if (v >= hi && a[0] < a[1]) v = nextafterf(hi, (float)a[0]);
  return v;
}
static double draw_normal(pbt_generator *g, const void *arg) {
  const double *a = arg;
  return a[0] + a[1] * pbt_generator_normal(g);
}
/* the bounds stay int64_t: a double cannot hold every 64-bit integer */
static double draw_int(pbt_generator *g, const void *arg) {
  const int64_t *a = arg;
  return (double)pbt_generator_integer(g, a[0], a[1]);
}

void pbt_fill_uniform_(pbt_tensor *t, pbt_generator *g, double lo, double hi) {
  double a[2];
  a[0] = lo, a[1] = hi;
  fill_with(t, g, t->dtype == PBT_FLOAT32 ? draw_uniform_f32 : draw_uniform, a);
}

void pbt_fill_normal_(pbt_tensor *t, pbt_generator *g, double mean,
                      double std) {
  double a[2];
  a[0] = mean, a[1] = std;
  fill_with(t, g, draw_normal, a);
}

void pbt_fill_randint_(pbt_tensor *t, pbt_generator *g, int64_t lo,
                       int64_t hi) {
  int64_t a[2];
  a[0] = lo, a[1] = hi;
  fill_with(t, g, draw_int, a);
}
