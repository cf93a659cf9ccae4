/*
 * mlp_floor.c -- the training step of bench/mlp.lua's MLP 784-256-256-10
 * (forward, softmax cross-entropy, backward, SGD with momentum 0.9) written
 * out by hand in C on OpenBLAS, with PyTorch's layout (weights [out, in]):
 * no framework, no allocation in the step, nothing but the work.  It is the
 * floor that pbt and PyTorch are measured against in bench/mlp.lua.
 *
 *   mlp_floor          a server: reads a batch size per line on stdin and
 *                      answers each with the median seconds per step on a
 *                      line of stdout (the network and its buffers of each
 *                      batch size are made at its first request and kept)
 *   mlp_floor BATCH    one such measurement, printed
 *
 * A measurement times steps as bench/mlp.lua and bench/mlp_torch.py do:
 * 0.2 s of warm-up steps, then steps each timed for at least 0.3 s and at
 * least 20 steps; the median (the mean of the two middle ones for an even
 * count).  A request that is not a batch size is answered "error: ...".
 *
 * The matrix products are the ones any such step does; the elementwise
 * loops (bias, relu, loss, the update) are plain loops that gcc vectorizes
 * at -O3.  Subnormal floats count as zero (flush-to-zero and
 * denormals-are-zero, as pbt.set_flush_denormal(true) and
 * torch.set_flush_denormal(True) on the other sides).
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#if defined(__x86_64__) || defined(__SSE3__)
#include <pmmintrin.h>
#endif
#include <time.h>

#include "timing.h"

enum { IN = 784, H = 256, OUT = 10, MAX_BATCH = 1 << 16 };

typedef struct layer {
  int in, out;
  float *w, *b, *gw, *gb, *mw, *mb; /* weights, grads, momentum buffers */
} layer;

/* The network and the buffers of one batch size; nets form a list. */
typedef struct net {
  int n;
  layer l[3];
  float *x, *h1, *a1, *h2, *a2, *z, *gz, *g2, *g1;
  int *y;
  double sink; /* the sum of the losses, so that no step is idle */
  struct net *next;
} net;

/* A uniform number in [-1, 1) from a 64-bit LCG (the values do not matter). */
static float noise(unsigned long long *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((double)(*s >> 11) / 9007199254740992.0 * 2 - 1);
}

/* Zeroed floats; NULL when out of memory. */
static float *floats(size_t n) { return calloc(n, sizeof(float)); }

static void layer_free(layer *l) {
  free(l->w);
  free(l->b);
  free(l->gw);
  free(l->gb);
  free(l->mw);
  free(l->mb);
}

/* 0, or -1 when out of memory (layer_free then frees what was made). */
static int layer_init(layer *l, int in, int out, unsigned long long *seed) {
  size_t i, nw = (size_t)in * (size_t)out;
  float bound = 1.0f / sqrtf((float)in);
  l->in = in;
  l->out = out;
  l->w = floats(nw);
  l->gw = floats(nw);
  l->mw = floats(nw);
  l->b = floats((size_t)out);
  l->gb = floats((size_t)out);
  l->mb = floats((size_t)out);
  if (!l->w || !l->gw || !l->mw || !l->b || !l->gb || !l->mb) return -1;
  for (i = 0; i < nw; i++) l->w[i] = bound * noise(seed);
  for (i = 0; i < (size_t)out; i++) l->b[i] = bound * noise(seed);
  return 0;
}

static void net_free(net *t) {
  int k;
  if (!t) return;
  for (k = 0; k < 3; k++) layer_free(&t->l[k]);
  free(t->x);
  free(t->h1);
  free(t->a1);
  free(t->h2);
  free(t->a2);
  free(t->z);
  free(t->gz);
  free(t->g2);
  free(t->g1);
  free(t->y);
  free(t);
}

/* The network of batch n (0 < n <= MAX_BATCH) with its random input and
 * labels; NULL when out of memory, with nothing left allocated. */
static net *net_new(int n) {
  unsigned long long seed = 1;
  size_t i, nn = (size_t)n, nh = nn * H;
  net *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->n = n;
  if (layer_init(&t->l[0], IN, H, &seed) || layer_init(&t->l[1], H, H, &seed) ||
      layer_init(&t->l[2], H, OUT, &seed)) {
    net_free(t);
    return NULL;
  }
  t->x = floats(nn * IN);
  t->h1 = floats(nh);
  t->a1 = floats(nh);
  t->h2 = floats(nh);
  t->a2 = floats(nh);
  t->z = floats(nn * OUT);
  t->gz = floats(nn * OUT);
  t->g2 = floats(nh);
  t->g1 = floats(nh);
  t->y = calloc(nn, sizeof *t->y);
  if (!t->x || !t->h1 || !t->a1 || !t->h2 || !t->a2 || !t->z || !t->gz || !t->g2 || !t->g1 ||
      !t->y) {
    net_free(t);
    return NULL;
  }
  for (i = 0; i < nn * IN; i++) t->x[i] = (noise(&seed) + 1) / 2;
  for (i = 0; i < nn; i++) t->y[i] = (int)((noise(&seed) + 1) / 2 * OUT) % OUT;
  return t;
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

/* One training step: forward, loss, backward, SGD. */
static void net_step(net *t) {
  int n = t->n, k;
  size_t nh = (size_t)n * H;
  layer *l = t->l;
  forward(&l[0], n, t->x, t->h1);
  relu(nh, t->h1, t->a1);
  forward(&l[1], n, t->a1, t->h2);
  relu(nh, t->h2, t->a2);
  forward(&l[2], n, t->a2, t->z);
  t->sink += cross_entropy(n, t->z, t->y, t->gz);
  backward(&l[2], n, t->a2, t->gz, t->g2);
  relu_back(nh, t->h2, t->g2);
  backward(&l[1], n, t->a1, t->g2, t->g1);
  relu_back(nh, t->h1, t->g1);
  backward(&l[0], n, t->x, t->g1, NULL);
  for (k = 0; k < 3; k++) {
    sgd((size_t)l[k].in * (size_t)l[k].out, l[k].w, l[k].gw, l[k].mw);
    sgd((size_t)l[k].out, l[k].b, l[k].gb, l[k].mb);
  }
}

/* The median seconds per step of t, timed as bench/mlp.lua's timeit: steps
 * until 0.2 s have passed, then steps each timed until 0.3 s have passed and
 * at least 20 were timed.  0 with *secs set, or -1 when out of memory. */
static int time_steps(net *t, double *secs) {
  double warm = now() + 0.2, t_end, *times = NULL;
  size_t n = 0, cap = 0;
  do net_step(t);
  while (now() <= warm);
  t_end = now() + 0.3;
  while (now() < t_end || n < 20) {
    double t0;
    if (n == cap) {
      size_t c = cap ? 2 * cap : 1024;
      double *p = realloc(times, c * sizeof *times);
      if (!p) {
        free(times);
        return -1;
      }
      times = p;
      cap = c;
    }
    t0 = now();
    net_step(t);
    times[n++] = now() - t0;
  }
  qsort(times, n, sizeof *times, cmp);
  *secs = n % 2 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
  free(times);
  return 0;
}

/* The batch size that s (a whole line, its newline included or not) names,
 * or 0 when it names none. */
static int parse_batch(const char *s) {
  char *end;
  long v;
  errno = 0;
  v = strtol(s, &end, 10);
  if (end == s || errno) return 0;
  while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
  if (*end || v <= 0 || v > MAX_BATCH) return 0;
  return (int)v;
}

/* Answers one request of the list *nets (the net of that batch is made and
 * added to it if new) with a line on stdout; 0, or -1 when stdout failed. */
static int answer(net **nets, const char *line) {
  int batch = parse_batch(line), rc;
  double secs;
  net *t;
  if (!batch)
    return printf("error: not a batch size in 1..%d\n", MAX_BATCH) < 0 || fflush(stdout) ? -1 : 0;
  for (t = *nets; t && t->n != batch; t = t->next) {}
  if (!t && (t = net_new(batch)) != NULL) {
    t->next = *nets;
    *nets = t;
  }
  if (!t || time_steps(t, &secs))
    rc = printf("error: out of memory at batch %d\n", batch);
  else
    rc = printf("%.9g\n", secs);
  return rc < 0 || fflush(stdout) ? -1 : 0;
}

int main(int argc, char **argv) {
  net *nets = NULL, *t;
  char *line = NULL;
  size_t len = 0;
  int status = 0;
#if defined(__x86_64__) || defined(__SSE3__)
  _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
  _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
  if (argc > 2 || (argc == 2 && !parse_batch(argv[1]))) {
    fprintf(stderr, "usage: mlp_floor [BATCH]   (no BATCH: a batch size per line on stdin)\n");
    return 2;
  }
  if (argc == 2) {
    status = answer(&nets, argv[1]);
  } else {
    while (status == 0 && getline(&line, &len, stdin) != -1) status = answer(&nets, line);
    if (ferror(stdin)) status = -1;
  }
  free(line);
  while (nets) {
    t = nets->next;
    if (nets->sink != nets->sink)
      fprintf(stderr, "mlp_floor: the loss is NaN at batch %d\n", nets->n);
    net_free(nets);
    nets = t;
  }
  if (status) fprintf(stderr, "mlp_floor: cannot read stdin or write stdout\n");
  return status ? 1 : 0;
}
