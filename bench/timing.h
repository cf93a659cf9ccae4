/* timing.h -- the clock and the sort order of the C benchmark programs
 * (blas_direct.c, mlp_floor.c); define _POSIX_C_SOURCE before including. */
#ifndef PBT_BENCH_TIMING_H
#define PBT_BENCH_TIMING_H
#include <time.h>

/* Seconds on the monotonic clock. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* qsort order of doubles (for medians). */
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}
#endif
