/*
 * mlp_floor.c -- the training step of bench/mlp.lua's MLP 784-256-256-10
 * (forward, softmax cross-entropy, backward, SGD with momentum 0.9) written
 * out by hand in C on OpenBLAS, with PyTorch's layout (weights [out, in]):
 * no framework, no allocation, nothing but the work.  It is the floor that
 * pbt and PyTorch are measured against in bench/mlp.lua.
 *
 *   mlp_floor BATCH STEPS     prints the median seconds per step
 *
 * The matrix products are the ones any such step does; the elementwise
 * loops (bias, relu, loss, the update) are plain loops that gcc vectorizes
 * at -O3.
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timing.h"

enum { IN = 784, H = 256, OUT = 10 };

typedef struct layer {
  int in, out;
  float *w, *b, *gw, *gb, *mw, *mb; /* weights, grads, momentum buffers */
} layer;


static float *alloc(size_t n) {
  float *p = calloc(n, sizeof *p);
  if (!p) {
    fprintf(stderr, "mlp_floor: out of memory\n");
    exit(1);
  }
  return p;
}

/* A uniform number in [-1, 1) from a 64-bit LCG (the values do not matter). */
static float noise(unsigned long long *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((double)(*s >> 11) / 9007199254740992.0 * 2 - 1);
}

static void layer_init(layer *l, int in, int out, unsigned long long *seed) {
  size_t i, nw = (size_t)in * out;
  float bound = 1.0f / sqrtf((float)in);
  l->in = in;
  l->out = out;
  l->w = alloc(nw);
  l->gw = alloc(nw);
  l->mw = alloc(nw);
  l->b = alloc((size_t)out);
  l->gb = alloc((size_t)out);
  l->mb = alloc((size_t)out);
  for (i = 0; i < nw; i++) l->w[i] = bound * noise(seed);
  for (i = 0; i < (size_t)out; i++) l->b[i] = bound * noise(seed);
}

/* y[n, out] = x[n, in] w^T + b */
static void forward(const layer *l, int n, const float *x, float *y) {
  int r;
  for (r = 0; r < n; r++) memcpy(y + (size_t)r * l->out, l->b, (size_t)l->out * sizeof *y);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->out, l->in, 1.0f, x, l->in,
              l->w, l->in, 1.0f, y, l->out);
}

/* gw = g^T x, gb = column sums of g; gx = g w when gx is not NULL */
static void backward(layer *l, int n, const float *x, const float *g, float *gx) {
  int r, j;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, l->out, l->in, n, 1.0f, g, l->out, x,
              l->in, 0.0f, l->gw, l->in);
  memset(l->gb, 0, (size_t)l->out * sizeof *l->gb);
  for (r = 0; r < n; r++)
    for (j = 0; j < l->out; j++) l->gb[j] += g[(size_t)r * l->out + j];
  if (gx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, l->in, l->out, 1.0f, g, l->out,
                l->w, l->in, 0.0f, gx, l->in);
}

static void relu(size_t n, const float *x, float *y) {
  size_t i;
  for (i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

/* g = g * (x > 0) */
static void relu_back(size_t n, const float *x, float *g) {
  size_t i;
  for (i = 0; i < n; i++) g[i] = x[i] > 0 ? g[i] : 0;
}

/* buf = 0.9 buf + g; p -= 0.01 buf */
static void sgd(size_t n, float *p, const float *g, float *buf) {
  size_t i;
  for (i = 0; i < n; i++) {
    buf[i] = 0.9f * buf[i] + g[i];
    p[i] -= 0.01f * buf[i];
  }
}

/* g = (softmax(z) - onehot(y)) / n; returns the mean loss */
static double cross_entropy(int n, const float *z, const int *y, float *g) {
  double loss = 0;
  int r, j;
  for (r = 0; r < n; r++) {
    const float *zr = z + (size_t)r * OUT;
    float *gr = g + (size_t)r * OUT, m = zr[0], s = 0;
    for (j = 1; j < OUT; j++) m = zr[j] > m ? zr[j] : m;
    for (j = 0; j < OUT; j++) s += gr[j] = expf(zr[j] - m);
    for (j = 0; j < OUT; j++) gr[j] = gr[j] / s / (float)n;
    gr[y[r]] -= 1.0f / (float)n;
    loss += log(s) + m - zr[y[r]];
  }
  return loss / n;
}

int main(int argc, char **argv) {
  int n, steps, i, s;
  unsigned long long seed = 1;
  layer l[3];
  float *x, *h1, *a1, *h2, *a2, *z, *gz, *g2, *g1;
  int *y;
  double *times, sink = 0;
  if (argc != 3 || (n = atoi(argv[1])) <= 0 || (steps = atoi(argv[2])) <= 0) {
    fprintf(stderr, "usage: mlp_floor BATCH STEPS\n");
    return 2;
  }
  layer_init(&l[0], IN, H, &seed);
  layer_init(&l[1], H, H, &seed);
  layer_init(&l[2], H, OUT, &seed);
  x = alloc((size_t)n * IN);
  h1 = alloc((size_t)n * H);
  a1 = alloc((size_t)n * H);
  h2 = alloc((size_t)n * H);
  a2 = alloc((size_t)n * H);
  z = alloc((size_t)n * OUT);
  gz = alloc((size_t)n * OUT);
  g2 = alloc((size_t)n * H);
  g1 = alloc((size_t)n * H);
  y = malloc((size_t)n * sizeof *y);
  times = malloc((size_t)steps * sizeof *times);
  if (!y || !times) return 1;
  for (i = 0; i < n * IN; i++) x[i] = (noise(&seed) + 1) / 2;
  for (i = 0; i < n; i++) y[i] = (int)((noise(&seed) + 1) / 2 * OUT) % OUT;
  for (s = -5; s < steps; s++) {
    double t0 = now();
    size_t nh = (size_t)n * H;
    int k;
    forward(&l[0], n, x, h1);
    relu(nh, h1, a1);
    forward(&l[1], n, a1, h2);
    relu(nh, h2, a2);
    forward(&l[2], n, a2, z);
    sink += cross_entropy(n, z, y, gz);
    backward(&l[2], n, a2, gz, g2);
    relu_back(nh, h2, g2);
    backward(&l[1], n, a1, g2, g1);
    relu_back(nh, h1, g1);
    backward(&l[0], n, x, g1, NULL);
    for (k = 0; k < 3; k++) {
      sgd((size_t)l[k].in * l[k].out, l[k].w, l[k].gw, l[k].mw);
      sgd((size_t)l[k].out, l[k].b, l[k].gb, l[k].mb);
    }
    if (s >= 0) times[s] = now() - t0;
  }
  qsort(times, (size_t)steps, sizeof *times, cmp);
  printf("%.9g\n", times[steps / 2]);
  if (sink != sink) fprintf(stderr, "mlp_floor: the loss is NaN\n");
  return 0;
}
