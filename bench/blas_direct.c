/*
 * blas_direct.c -- the same work as bench/tensor.lua, done by calling
 * OpenBLAS (or a plain C loop) directly, so the Lua figures have a floor to
 * be compared with in the same run.
 *
 *   blas_direct gemm  f32|f64 N REPS   C = A*B, N x N, seconds per call
 *   blas_direct axpy  f32|f64 N REPS   y += a*x
 *   blas_direct dot   f32|f64 N REPS
 *   blas_direct copy  f32|f64 N REPS   memcpy of N elements
 *
 * Prints the median seconds per call over REPS timed calls (after one
 * warm-up call).
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timing.h"


static volatile double sink;

static void run(const char *op, int f64, long n, void *a, void *b, void *c) {
  if (strcmp(op, "gemm") == 0) {
    if (f64)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0,
                  a, (int)n, b, (int)n, 0.0, c, (int)n);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f,
                  a, (int)n, b, (int)n, 0.0f, c, (int)n);
  } else if (strcmp(op, "axpy") == 0) {
    if (f64) cblas_daxpy((int)n, 0.5, a, 1, b, 1);
    else cblas_saxpy((int)n, 0.5f, a, 1, b, 1);
  } else if (strcmp(op, "dot") == 0) {
    sink = f64 ? cblas_ddot((int)n, a, 1, b, 1) : cblas_sdot((int)n, a, 1, b, 1);
  } else {
    memcpy(c, a, (size_t)n * (f64 ? 8 : 4));
  }
}

int main(int argc, char **argv) {
  const char *op;
  int f64, reps, i;
  long n, elems;
  size_t es;
  double *times;
  char *a, *b, *c;
  if (argc != 5) {
    fprintf(stderr, "usage: blas_direct gemm|axpy|dot|copy f32|f64 N REPS\n");
    return 2;
  }
  op = argv[1];
  f64 = strcmp(argv[2], "f64") == 0;
  n = atol(argv[3]);
  reps = atoi(argv[4]);
  if (n <= 0 || reps <= 0) return 2;
  es = f64 ? 8 : 4;
  elems = strcmp(op, "gemm") == 0 ? n * n : n;
  a = malloc((size_t)elems * es);
  b = malloc((size_t)elems * es);
  c = malloc((size_t)elems * es);
  times = malloc(sizeof(double) * (size_t)reps);
  if (!a || !b || !c || !times) return 1;
  for (i = 0; i < elems; i++) {
    if (f64) {
      ((double *)a)[i] = (double)(i % 7) * 0.25;
      ((double *)b)[i] = (double)(i % 5) * 0.5;
      ((double *)c)[i] = 0;
    } else {
      ((float *)a)[i] = (float)(i % 7) * 0.25f;
      ((float *)b)[i] = (float)(i % 5) * 0.5f;
      ((float *)c)[i] = 0;
    }
  }
  run(op, f64, n, a, b, c);
  for (i = 0; i < reps; i++) {
    double t0 = now();
    run(op, f64, n, a, b, c);
    times[i] = now() - t0;
  }
  qsort(times, (size_t)reps, sizeof(double), cmp);
  printf("%.9g\n", times[reps / 2]);
  free(a);
  free(b);
  free(c);
  free(times);
  return 0;
}
