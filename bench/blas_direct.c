/*
 * blas_direct.c -- the same work as bench/tensor.lua, done by calling
 * OpenBLAS (or memcpy) directly from C: the "C direct" side of that
 * benchmark, a floor for pbt's figures.
 *
 *   blas_direct --serve          a long-lived side: reads requests on stdin,
 *                                one a line, and answers each with one line
 *   blas_direct OP TYPE N        measures one case and prints its seconds
 *
 * A request is "OP TYPE N", OP one of
 *   gemm   C = A*B, N x N
 *   axpy   y += 0.5*x, N elements
 *   dot    x.y, N elements
 *   copy   memcpy of N elements
 * and TYPE f32 or f64, e.g. "gemm f32 256".  The answer is the seconds per
 * call (%.9g), or "error: ..." for a request it cannot do (the server goes
 * on).  The arrays of a case are made at its first request and kept until
 * the end, so that rounds of the same case time calls, not allocations.
 *
 * A call is timed as bench/tensor.lua and bench/tensor_numpy.py time theirs:
 * one warm-up call, then batches of 1, 4, 16... calls until a batch takes
 * more than 0.02 s, then 5 batches of that many calls; the answer is the
 * median of the 5 batches' seconds per call.
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timing.h"

/* The arrays of every case are published here so that the compiler cannot
 * prove a result unread and drop the work (a memcpy into memory no one
 * reads). */
static void *volatile escape;
static volatile double sink;

enum op { GEMM, AXPY, DOT, COPY };

/* One case and its arrays, kept in a list for the life of the server. */
struct bcase {
  enum op op;
  int f64;
  long n;
  void *a, *b, *c;
  struct bcase *next;
};

static void run(const struct bcase *k) {
  int n = (int)k->n;
  switch (k->op) {
  case GEMM:
    if (k->f64)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, k->a, n, k->b, n,
                  0.0, k->c, n);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, k->a, n, k->b, n,
                  0.0f, k->c, n);
    break;
  case AXPY:
    if (k->f64) cblas_daxpy(n, 0.5, k->a, 1, k->b, 1);
    else cblas_saxpy(n, 0.5f, k->a, 1, k->b, 1);
    break;
  case DOT:
    sink = k->f64 ? cblas_ddot(n, k->a, 1, k->b, 1) : (double)cblas_sdot(n, k->a, 1, k->b, 1);
    break;
  case COPY:
    memcpy(k->c, k->a, (size_t)k->n * (k->f64 ? 8 : 4));
    break;
  }
}

/* Seconds per call of k's operation (the method in the header comment). */
static double measure(const struct bcase *k) {
  double per[5], t0;
  long reps = 1, i;
  int b;
  run(k);
  for (;;) {
    t0 = now();
    for (i = 0; i < reps; i++) run(k);
    if (now() - t0 > 0.02) break;
    reps *= 4;
  }
  for (b = 0; b < 5; b++) {
    t0 = now();
    for (i = 0; i < reps; i++) run(k);
    per[b] = (now() - t0) / (double)reps;
  }
  qsort(per, 5, sizeof per[0], cmp);
  return per[2];
}

static void free_case(struct bcase *k) {
  if (!k) return;
  free(k->a);
  free(k->b);
  free(k->c);
  free(k);
}

/* Parses "OP TYPE N" into *op, *f64, *n; NULL when it is well formed, else
 * what is wrong. */
static const char *parse(const char *line, enum op *op, int *f64, long *n) {
  char ops[8], type[8], extra;
  if (sscanf(line, "%7s %7s %ld %c", ops, type, n, &extra) != 3)
    return "a request is OP TYPE N, e.g. gemm f32 256";
  if (strcmp(ops, "gemm") == 0) *op = GEMM;
  else if (strcmp(ops, "axpy") == 0) *op = AXPY;
  else if (strcmp(ops, "dot") == 0) *op = DOT;
  else if (strcmp(ops, "copy") == 0) *op = COPY;
  else return "OP must be gemm, axpy, dot or copy";
  if (strcmp(type, "f32") == 0) *f64 = 0;
  else if (strcmp(type, "f64") == 0) *f64 = 1;
  else return "TYPE must be f32 or f64";
  /* gemm's N x N elements and every N must fit the BLAS int */
  if (*n <= 0 || *n > (*op == GEMM ? 46340 : INT_MAX)) return "N is out of range";
  return NULL;
}

/* A new case with its arrays filled; NULL when memory runs out. */
static struct bcase *new_case(enum op op, int f64, long n) {
  size_t es = f64 ? 8 : 4, elems = op == GEMM ? (size_t)n * (size_t)n : (size_t)n, i;
  struct bcase *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->op = op;
  k->f64 = f64;
  k->n = n;
  k->a = malloc(elems * es);
  k->b = malloc(elems * es);
  k->c = malloc(elems * es);
  if (!k->a || !k->b || !k->c) {
    free_case(k);
    return NULL;
  }
  for (i = 0; i < elems; i++) {
    if (f64) {
      ((double *)k->a)[i] = (double)(i % 7) * 0.25;
      ((double *)k->b)[i] = (double)(i % 5) * 0.5;
      ((double *)k->c)[i] = 0;
    } else {
      ((float *)k->a)[i] = (float)(i % 7) * 0.25f;
      ((float *)k->b)[i] = (float)(i % 5) * 0.5f;
      ((float *)k->c)[i] = 0;
    }
  }
  escape = k->a;
  escape = k->b;
  escape = k->c;
  return k;
}

/* Answers one request on stdout, finding or making its case in *cases.
 * Returns 0 for a measure, 1 for an error answer, -1 when stdout fails. */
static int answer(const char *line, struct bcase **cases) {
  enum op op;
  int f64, w;
  long n;
  struct bcase *k = NULL;
  const char *err = parse(line, &op, &f64, &n);
  if (err) {
    w = printf("error: %s\n", err);
  } else {
    for (k = *cases; k; k = k->next)
      if (k->op == op && k->f64 == f64 && k->n == n) break;
    if (!k && (k = new_case(op, f64, n)) != NULL) {
      k->next = *cases;
      *cases = k;
    }
    if (k) w = printf("%.9g\n", measure(k));
    else w = printf("error: out of memory\n");
  }
  if (w < 0 || fflush(stdout) != 0) return -1;
  return err || !k ? 1 : 0;
}

static int serve(struct bcase **cases) {
  char line[256];
  while (fgets(line, sizeof line, stdin)) {
    if (!strchr(line, '\n') && !feof(stdin)) {
      int ch;
      while ((ch = getchar()) != EOF && ch != '\n') {} /* drop the rest of a long line */
      strcpy(line, "(too long)");
    }
    if (answer(line, cases) < 0) return 1;
  }
  return ferror(stdin) ? 1 : 0;
}

int main(int argc, char **argv) {
  struct bcase *cases = NULL, *next;
  int status;
  char line[256];
  if (argc == 2 && strcmp(argv[1], "--serve") == 0) {
    status = serve(&cases);
  } else if (argc == 4) {
    if (snprintf(line, sizeof line, "%s %s %s", argv[1], argv[2], argv[3]) >= (int)sizeof line) {
      fprintf(stderr, "blas_direct: arguments too long\n");
      return 2;
    }
    status = answer(line, &cases) != 0;
  } else {
    fprintf(stderr, "usage: blas_direct --serve\n"
                    "       blas_direct gemm|axpy|dot|copy f32|f64 N\n");
    return 2;
  }
  for (; cases; cases = next) {
    next = cases->next;
    free_case(cases);
  }
  return status;
}
