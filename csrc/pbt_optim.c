/*
 * pbt_optim.c -- fused optimizer updates (see pbt_optim.h).
 *
 * Each optimizer has one loop over a row, written once on doubles: ld()
 * and st() load and store float32 or float64 elements, and the loop is
 * inlined four times (two dtypes, unit or general strides), so that every
 * copy is compiled for its dtype and gcc vectorizes the unit-stride ones.
 * The rows come from pbt_iter over three operands: p, grad, and the
 * contiguous layout of p's shape, whose offsets address the state buffers.
 * Contiguous p and grad take one long row.  The update follows PyTorch's
 * order of operations, so float64 results agree with torch.optim to the last
 * bit or so.
 */
#include <math.h>
#include <stdio.h>

#include "pbt_optim.h"

#if defined(__GNUC__)
#define OPT_INLINE static inline __attribute__((always_inline))
#else
#define OPT_INLINE static inline
#endif

/* The row functions are compiled for AVX-512, AVX2 and the baseline, chosen
 * at load time, as pbt_ops.c does.  Without FMA contraction (ISO C mode) all
 * three give the same numbers. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__linux__) && !defined(PBT_NO_CLONES)
#define OPT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define OPT_CLONES
#endif

/* ---- hyperparameters ------------------------------------------------------- */

static pbt_status at_least_zero(const char *name, double v, pbt_error *err) {
  if (v >= 0) return PBT_OK;
  return pbt_fail(err, PBT_ERR_ARG, "%s must be >= 0, got %g", name, v);
}

static pbt_status unit_interval(const char *name, double v, pbt_error *err) {
  if (v >= 0 && v < 1) return PBT_OK;
  return pbt_fail(err, PBT_ERR_ARG, "%s must be in [0, 1), got %g", name, v);
}

pbt_status pbt_sgd_check(const pbt_sgd_options *o, pbt_error *err) {
  pbt_status s;
  if ((s = at_least_zero("lr", o->lr, err))) return s;
  if ((s = at_least_zero("momentum", o->momentum, err))) return s;
  if ((s = at_least_zero("weight_decay", o->weight_decay, err))) return s;
  if (o->dampening != o->dampening)
    return pbt_fail(err, PBT_ERR_ARG, "dampening must be a number, got nan");
  if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
    return pbt_fail(err, PBT_ERR_ARG,
                    "nesterov requires momentum > 0 and dampening = 0");
  return PBT_OK;
}

pbt_status pbt_adam_check(const pbt_adam_options *o, pbt_error *err) {
  pbt_status s;
  if ((s = at_least_zero("lr", o->lr, err))) return s;
  if ((s = unit_interval("beta1", o->beta1, err))) return s;
  if ((s = unit_interval("beta2", o->beta2, err))) return s;
  if ((s = at_least_zero("eps", o->eps, err))) return s;
  return at_least_zero("weight_decay", o->weight_decay, err);
}

pbt_status pbt_rmsprop_check(const pbt_rmsprop_options *o, pbt_error *err) {
  pbt_status s;
  if ((s = at_least_zero("lr", o->lr, err))) return s;
  if ((s = at_least_zero("alpha", o->alpha, err))) return s;
  if ((s = at_least_zero("eps", o->eps, err))) return s;
  if ((s = at_least_zero("momentum", o->momentum, err))) return s;
  return at_least_zero("weight_decay", o->weight_decay, err);
}

/* ---- operands ------------------------------------------------------------------ */

static void describe(char *buf, size_t size, const pbt_tensor *t) {
  char shape[96];
  pbt_format_shape(shape, sizeof shape, t->ndim, t->shape);
  snprintf(buf, size, "a %s tensor of shape %s", pbt_dtype_name(t->dtype), shape);
}

/* p must be writable element by element: no dimension of size > 1 with
 * stride 0 (an expanded view). */
static pbt_status check_param(const pbt_tensor *p, pbt_error *err) {
  int d;
  if (p == NULL || p->storage == NULL)
    return pbt_fail(err, PBT_ERR_ARG, "the parameter is missing or released");
  for (d = 0; d < p->ndim; d++)
    if (p->shape[d] > 1 && p->stride[d] == 0)
      return pbt_fail(err, PBT_ERR_ARG,
                      "the parameter is an expanded view (several elements share "
                      "one memory location) and cannot be updated in place");
  return PBT_OK;
}

static pbt_status check_grad(const pbt_tensor *p, const pbt_tensor *g,
                             pbt_error *err) {
  char a[128], b[128];
  if (g == NULL || g->storage == NULL)
    return pbt_fail(err, PBT_ERR_ARG, "the gradient is missing or released");
  if (g->dtype == p->dtype &&
      pbt_shape_equal(g->ndim, g->shape, p->ndim, p->shape))
    return PBT_OK;
  describe(a, sizeof a, g);
  describe(b, sizeof b, p);
  return pbt_fail(err, g->dtype == p->dtype ? PBT_ERR_SHAPE : PBT_ERR_DTYPE,
                  "the gradient is %s but the parameter is %s", a, b);
}

/* A state buffer: contiguous, of p's shape and dtype. */
static pbt_status check_buffer(const pbt_tensor *p, const pbt_tensor *buf,
                               const char *name, pbt_error *err) {
  char a[128], b[128];
  if (buf == NULL || buf->storage == NULL)
    return pbt_fail(err, PBT_ERR_ARG, "%s is missing or released", name);
  if (buf->dtype != p->dtype ||
      !pbt_shape_equal(buf->ndim, buf->shape, p->ndim, p->shape)) {
    describe(a, sizeof a, buf);
    describe(b, sizeof b, p);
    return pbt_fail(err, buf->dtype == p->dtype ? PBT_ERR_SHAPE : PBT_ERR_DTYPE,
                    "%s is %s but the parameter is %s", name, a, b);
  }
  if (!pbt_tensor_is_contiguous(buf))
    return pbt_fail(err, PBT_ERR_ARG, "%s must be contiguous", name);
  return PBT_OK;
}

/* Rows over p (operand 0), grad (1) and the buffers' layout (2).  Returns 0
 * when p has no elements. */
static int rows_init(pbt_iter *it, const pbt_tensor *p, const pbt_tensor *g) {
  int64_t contiguous[PBT_MAX_DIM];
  const int64_t *strides[3];
  pbt_contiguous_strides(p->ndim, p->shape, contiguous);
  strides[0] = p->stride;
  strides[1] = g->stride;
  strides[2] = contiguous;
  return pbt_iter_init(it, 3, p->ndim, p->shape, strides);
}

static int fast_path(const pbt_tensor *p, const pbt_tensor *g) {
  return pbt_tensor_is_contiguous(p) && pbt_tensor_is_contiguous(g);
}

/* ---- rows ------------------------------------------------------------------ */

/* Element i of a float32 (f32) or float64 array.  f32 is a constant wherever
 * these are inlined, so each loop below is compiled once per dtype. */
OPT_INLINE double ld(int f32, const void *a, int64_t i) {
  return f32 ? (double)((const float *)a)[i] : ((const double *)a)[i];
}

OPT_INLINE void st(int f32, void *a, int64_t i, double v) {
  if (f32) ((float *)a)[i] = (float)v;
  else ((double *)a)[i] = v;
}

/* One row: n elements of p, grad and up to three state buffers. */
typedef struct row {
  int64_t n, sp, sg, sb;
  void *p;
  const void *g;
  void *b[3];
} row;

typedef void (*row_fn)(const void *k, int f32, const row *r);

/* Calls f on the rows of p and grad; bufs[0..2] are the state buffers (NULL
 * where unused), all checked by the caller. */
static void run(row_fn f, const void *k, pbt_tensor *p, const pbt_tensor *g,
                pbt_tensor *const *bufs) {
  int f32 = p->dtype == PBT_FLOAT32, j;
  int64_t es = (int64_t)pbt_dtype_size(p->dtype);
  pbt_iter it;
  row r;
  if (fast_path(p, g)) {
    r.n = pbt_tensor_numel(p);
    r.sp = r.sg = r.sb = 1;
    r.p = pbt_tensor_data(p);
    r.g = pbt_tensor_data(g);
    for (j = 0; j < 3; j++) r.b[j] = bufs[j] ? pbt_tensor_data(bufs[j]) : NULL;
    if (r.n > 0) f(k, f32, &r);
    return;
  }
  if (!rows_init(&it, p, g)) return;
  do {
    r.n = it.n;
    r.sp = it.step[0];
    r.sg = it.step[1];
    r.sb = it.step[2];
    r.p = (char *)pbt_tensor_data(p) + it.offset[0] * es;
    r.g = (const char *)pbt_tensor_data(g) + it.offset[1] * es;
    for (j = 0; j < 3; j++)
      r.b[j] = bufs[j] ? (char *)pbt_tensor_data(bufs[j]) + it.offset[2] * es : NULL;
    f(k, f32, &r);
  } while (pbt_iter_next(&it));
}

/* ---- SGD --------------------------------------------------------------------- */

typedef struct sgd_k {
  double neg_lr, wd, momentum, keep; /* keep = 1 - dampening */
  int use_buf, init, nesterov;
} sgd_k;

/* PyTorch's order of operations: d = g + wd*p; buf = buf*m + keep*d;
 * d = d + m*buf; p = p + (-lr)*d. */
OPT_INLINE void sgd_loop_f64(sgd_k k, int64_t n, double *restrict p, int64_t sp,
                             const double *restrict g, int64_t sg, double *restrict b,
                             int64_t sb) {
  int64_t i;
  for (i = 0; i < n; i++) {
    double d = g[i * sg], pi = p[i * sp];
    if (k.wd != 0) d = d + k.wd * pi;
    if (k.use_buf) {
      double bi = k.init ? d : b[i * sb] * k.momentum + k.keep * d;
      b[i * sb] = bi;
      d = k.nesterov ? d + k.momentum * bi : bi;
    }
    p[i * sp] = pi + k.neg_lr * d;
  }
}

/* The same for float32, in float32 arithmetic as PyTorch does it (twice the
 * lanes of double). */
OPT_INLINE void sgd_loop_f32(sgd_k k, int64_t n, float *restrict p, int64_t sp,
                             const float *restrict g, int64_t sg, float *restrict b,
                             int64_t sb) {
  const float neg_lr = (float)k.neg_lr, wd = (float)k.wd, mom = (float)k.momentum,
              keep = (float)k.keep;
  int64_t i;
  for (i = 0; i < n; i++) {
    float d = g[i * sg], pi = p[i * sp];
    if (k.wd != 0) d = d + wd * pi;
    if (k.use_buf) {
      float bi = k.init ? d : b[i * sb] * mom + keep * d;
      b[i * sb] = bi;
      d = k.nesterov ? d + mom * bi : bi;
    }
    p[i * sp] = pi + neg_lr * d;
  }
}

static OPT_CLONES void sgd_row(const void *kv, int f32, const row *r) {
  sgd_k k = *(const sgd_k *)kv;
  int unit = r->sp == 1 && r->sg == 1 && r->sb == 1;
  if (f32 && unit) sgd_loop_f32(k, r->n, r->p, 1, r->g, 1, r->b[0], 1);
  else if (f32) sgd_loop_f32(k, r->n, r->p, r->sp, r->g, r->sg, r->b[0], r->sb);
  else if (unit) sgd_loop_f64(k, r->n, r->p, 1, r->g, 1, r->b[0], 1);
  else sgd_loop_f64(k, r->n, r->p, r->sp, r->g, r->sg, r->b[0], r->sb);
}

pbt_status pbt_sgd_step(pbt_tensor *p, const pbt_tensor *grad, pbt_tensor *buf,
                        int init, const pbt_sgd_options *o, pbt_error *err) {
  pbt_tensor *bufs[3] = {NULL, NULL, NULL};
  pbt_status s;
  sgd_k k;
  if ((s = pbt_sgd_check(o, err)) || (s = check_param(p, err)) ||
      (s = check_grad(p, grad, err)))
    return s;
  k.use_buf = o->momentum != 0;
  if (k.use_buf) {
    if ((s = check_buffer(p, buf, "momentum_buffer", err))) return s;
    bufs[0] = buf;
  }
  k.neg_lr = -o->lr;
  k.wd = o->weight_decay;
  k.momentum = o->momentum;
  k.keep = 1 - o->dampening;
  k.init = init != 0;
  k.nesterov = o->nesterov != 0;
  run(sgd_row, &k, p, grad, bufs);
  return PBT_OK;
}

/* ---- Adam, AdamW ---------------------------------------------------------------- */

typedef struct adam_k {
  double l2, decay, b1, c1, b2, c2, neg_step_size, bc2_sqrt, eps;
} adam_k;

/* PyTorch's order: p = p*(1 - lr*wd) (AdamW) or g = g + wd*p (Adam);
 * m = m*b1 + (1-b1)*g; v = v*b2 + (1-b2)*g*g;
 * p = p + (-lr/bc1)*m / (sqrt(v)/sqrt(bc2) + eps). */
OPT_INLINE void adam_loop(int f32, adam_k k, int64_t n, void *p, int64_t sp,
                          const void *g, int64_t sg, void *m, void *v,
                          int64_t sb) {
  int64_t i;
  for (i = 0; i < n; i++) {
    double pi = ld(f32, p, i * sp), gi = ld(f32, g, i * sg), mi, vi;
    if (k.l2 != 0) gi = gi + k.l2 * pi;
    if (k.decay != 1) pi = pi * k.decay;
    mi = ld(f32, m, i * sb) * k.b1 + k.c1 * gi;
    vi = ld(f32, v, i * sb) * k.b2 + k.c2 * gi * gi;
    st(f32, m, i * sb, mi);
    st(f32, v, i * sb, vi);
    st(f32, p, i * sp, pi + k.neg_step_size * mi / (sqrt(vi) / k.bc2_sqrt + k.eps));
  }
}

static OPT_CLONES void adam_row(const void *kv, int f32, const row *r) {
  adam_k k = *(const adam_k *)kv;
  int unit = r->sp == 1 && r->sg == 1 && r->sb == 1;
  if (f32 && unit) adam_loop(1, k, r->n, r->p, 1, r->g, 1, r->b[0], r->b[1], 1);
  else if (f32)
    adam_loop(1, k, r->n, r->p, r->sp, r->g, r->sg, r->b[0], r->b[1], r->sb);
  else if (unit) adam_loop(0, k, r->n, r->p, 1, r->g, 1, r->b[0], r->b[1], 1);
  else adam_loop(0, k, r->n, r->p, r->sp, r->g, r->sg, r->b[0], r->b[1], r->sb);
}

pbt_status pbt_adam_step(pbt_tensor *p, const pbt_tensor *grad,
                         pbt_tensor *exp_avg, pbt_tensor *exp_avg_sq,
                         int64_t step, const pbt_adam_options *o,
                         pbt_error *err) {
  pbt_tensor *bufs[3] = {NULL, NULL, NULL};
  pbt_status s;
  adam_k k;
  if ((s = pbt_adam_check(o, err)) || (s = check_param(p, err)) ||
      (s = check_grad(p, grad, err)) ||
      (s = check_buffer(p, exp_avg, "exp_avg", err)) ||
      (s = check_buffer(p, exp_avg_sq, "exp_avg_sq", err)))
    return s;
  if (step < 1)
    return pbt_fail(err, PBT_ERR_ARG, "step must be >= 1, got %lld", (long long)step);
  bufs[0] = exp_avg;
  bufs[1] = exp_avg_sq;
  k.l2 = o->decoupled ? 0 : o->weight_decay;
  k.decay = o->decoupled ? 1 - o->lr * o->weight_decay : 1;
  k.b1 = o->beta1;
  k.c1 = 1 - o->beta1;
  k.b2 = o->beta2;
  k.c2 = 1 - o->beta2;
  k.neg_step_size = -(o->lr / (1 - pow(o->beta1, (double)step)));
  k.bc2_sqrt = sqrt(1 - pow(o->beta2, (double)step));
  k.eps = o->eps;
  run(adam_row, &k, p, grad, bufs);
  return PBT_OK;
}

/* ---- RMSprop ------------------------------------------------------------------- */

typedef struct rmsprop_k {
  double wd, alpha, c, eps, momentum, neg_lr;
  int centered, use_buf;
} rmsprop_k;

/* PyTorch's order: g = g + wd*p; sq = sq*a + (1-a)*g*g;
 * ga = ga*a + (1-a)*g; avg = sqrt(sq + (-1)*ga*ga) + eps (or sqrt(sq) + eps);
 * buf = buf*mom + g/avg; p = p + (-lr)*buf  (or p = p + (-lr)*g / avg). */
OPT_INLINE void rmsprop_loop(int f32, rmsprop_k k, int64_t n, void *p,
                             int64_t sp, const void *g, int64_t sg, void *sq,
                             void *ga, void *b, int64_t sb) {
  int64_t i;
  for (i = 0; i < n; i++) {
    double pi = ld(f32, p, i * sp), gi = ld(f32, g, i * sg), si, avg;
    if (k.wd != 0) gi = gi + k.wd * pi;
    si = ld(f32, sq, i * sb) * k.alpha + k.c * gi * gi;
    st(f32, sq, i * sb, si);
    if (k.centered) {
      double ai = ld(f32, ga, i * sb) * k.alpha + k.c * gi;
      st(f32, ga, i * sb, ai);
      avg = sqrt(si - ai * ai) + k.eps;
    } else {
      avg = sqrt(si) + k.eps;
    }
    if (k.use_buf) {
      double bi = ld(f32, b, i * sb) * k.momentum + gi / avg;
      st(f32, b, i * sb, bi);
      st(f32, p, i * sp, pi + k.neg_lr * bi);
    } else {
      st(f32, p, i * sp, pi + k.neg_lr * gi / avg);
    }
  }
}

static OPT_CLONES void rmsprop_row(const void *kv, int f32, const row *r) {
  rmsprop_k k = *(const rmsprop_k *)kv;
  int unit = r->sp == 1 && r->sg == 1 && r->sb == 1;
  if (f32 && unit)
    rmsprop_loop(1, k, r->n, r->p, 1, r->g, 1, r->b[0], r->b[1], r->b[2], 1);
  else if (f32)
    rmsprop_loop(1, k, r->n, r->p, r->sp, r->g, r->sg, r->b[0], r->b[1],
                 r->b[2], r->sb);
  else if (unit)
    rmsprop_loop(0, k, r->n, r->p, 1, r->g, 1, r->b[0], r->b[1], r->b[2], 1);
  else
    rmsprop_loop(0, k, r->n, r->p, r->sp, r->g, r->sg, r->b[0], r->b[1],
                 r->b[2], r->sb);
}

pbt_status pbt_rmsprop_step(pbt_tensor *p, const pbt_tensor *grad,
                            pbt_tensor *square_avg, pbt_tensor *grad_avg,
                            pbt_tensor *buf, const pbt_rmsprop_options *o,
                            pbt_error *err) {
  pbt_tensor *bufs[3] = {NULL, NULL, NULL};
  pbt_status s;
  rmsprop_k k;
  if ((s = pbt_rmsprop_check(o, err)) || (s = check_param(p, err)) ||
      (s = check_grad(p, grad, err)) ||
      (s = check_buffer(p, square_avg, "square_avg", err)))
    return s;
  k.centered = o->centered != 0;
  k.use_buf = o->momentum > 0;
  if (k.centered && (s = check_buffer(p, grad_avg, "grad_avg", err))) return s;
  if (k.use_buf && (s = check_buffer(p, buf, "momentum_buffer", err))) return s;
  bufs[0] = square_avg;
  bufs[1] = k.centered ? grad_avg : NULL;
  bufs[2] = k.use_buf ? buf : NULL;
  k.wd = o->weight_decay;
  k.alpha = o->alpha;
  k.c = 1 - o->alpha;
  k.eps = o->eps;
  k.momentum = o->momentum;
  k.neg_lr = -o->lr;
  run(rmsprop_row, &k, p, grad, bufs);
  return PBT_OK;
}
