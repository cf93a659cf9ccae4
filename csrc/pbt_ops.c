/* pbt_ops.c -- elementwise operations and reductions (see pbt_ops.h).
 *
 * The per-dtype kernels are in pbt_ops_impl.h, included once for float and
 * once for double; the float32 math functions (written so that gcc
 * vectorizes them) in pbt_vmath.h.  This file holds the shape and output
 * handling and the dtype dispatch.
 */

#include "pbt_vmath.h"

#include "pbt_ops.h"

#include <stdlib.h>

/* Kinds of mapped sums (sum of f(x)) used by the reductions. */
enum { MS_SUM, MS_SQ, MS_ABS, MS_POW, MS_NZ, MS_DEV2, MS_EXP };
#define MS_BLOCK 2048 /* pairwise summation below this many elements */
#define MAX_BLOCK 8192 /* argmax scans blocks of this many elements */
#define MAX_LANES 64   /* lanes of the maximum kernel */
#define COL_GROUP 8    /* column reductions read this many rows at once
                          (the unroll pragmas in pbt_ops_impl.h say 8) */
#define FAST_CHUNK 256 /* elements checked at once for a fast kernel */

PBT_INLINE int fast_domain_f32(int op, float x) {
  switch (op) {
  case PBT_LOG: return x >= 0x1p-126f && x <= 0x1.fffffep127f;
  case PBT_LOG1P: return x > -1.0f && x <= 0x1.fffffep127f;
  case PBT_SIN:
  case PBT_COS: return fabsf(x) <= TRIG_MAX;
  }
  return 1;
}

/* Elements whose result m_sin_f32 or m_cos_f32 leaves to libm. */
PBT_INLINE int needs_libm_f32(int op, float x) {
  return (op == PBT_SIN || op == PBT_COS) && fabsf(x) > TRIG_MAX &&
         fabsf(x) < INFINITY;
}

static float libm_f32(int op, float x) {
  return op == PBT_SIN ? sinf(x) : cosf(x);
}

PBT_INLINE float m_exp_f32(float x) { return vexpf(x); }
PBT_INLINE float m_log_f32(float x) { return vlogf(x); }
PBT_INLINE float m_log_fast_f32(float x) { return vlogf_fast(x); }
PBT_INLINE float m_log1p_f32(float x) { return vlog1pf(x); }
PBT_INLINE float m_log1p_fast_f32(float x) { return vlog1pf_fast(x); }
PBT_INLINE float m_tanh_f32(float x) { return vtanhf(x); }
PBT_INLINE float m_sigmoid_f32(float x) { return vsigmoidf(x); }
PBT_INLINE float m_sqrt_f32(float x) { return sqrtf(x); }
PBT_INLINE float m_abs_f32(float x) { return fabsf(x); }
/* NaN for inf and NaN; 0 where needs_libm_f32 (the caller fixes those) */
PBT_INLINE float m_sin_f32(float x) {
  return fabsf(x) <= TRIG_MAX ? vsinf_fast(x) : x - x;
}
PBT_INLINE float m_sin_fast_f32(float x) { return vsinf_fast(x); }
PBT_INLINE float m_cos_f32(float x) {
  return fabsf(x) <= TRIG_MAX ? vcosf_fast(x) : x - x;
}
PBT_INLINE float m_cos_fast_f32(float x) { return vcosf_fast(x); }
PBT_INLINE float m_floor_f32(float x) { return floorf(x); }
PBT_INLINE float m_pow_f32(float x, float y) { return powf(x, y); }

/* float64 uses libm, with no fast kernels. */
PBT_INLINE int fast_domain_f64(int op, double x) {
  (void)op;
  (void)x;
  return 1;
}
PBT_INLINE int needs_libm_f64(int op, double x) {
  (void)op;
  (void)x;
  return 0;
}
static double libm_f64(int op, double x) {
  return op == PBT_SIN ? sin(x) : cos(x);
}
PBT_INLINE double m_exp_f64(double x) { return exp(x); }
PBT_INLINE double m_log_f64(double x) { return log(x); }
PBT_INLINE double m_log_fast_f64(double x) { return log(x); }
PBT_INLINE double m_log1p_f64(double x) { return log1p(x); }
PBT_INLINE double m_log1p_fast_f64(double x) { return log1p(x); }
PBT_INLINE double m_tanh_f64(double x) { return tanh(x); }
PBT_INLINE double m_sigmoid_f64(double x) {
  double e = exp(-fabs(x));
  return (x >= 0 ? 1.0 : e) / (1.0 + e);
}
PBT_INLINE double m_sqrt_f64(double x) { return sqrt(x); }
PBT_INLINE double m_abs_f64(double x) { return fabs(x); }
PBT_INLINE double m_sin_f64(double x) { return sin(x); }
PBT_INLINE double m_sin_fast_f64(double x) { return sin(x); }
PBT_INLINE double m_cos_f64(double x) { return cos(x); }
PBT_INLINE double m_cos_fast_f64(double x) { return cos(x); }
PBT_INLINE double m_floor_f64(double x) { return floor(x); }
PBT_INLINE double m_pow_f64(double x, double y) { return pow(x, y); }

/* ---- the kernels, once per dtype ------------------------------------------- */

#define real float
#define accreal double
#define S(name) name##_f32
#include "pbt_ops_impl.h"
#undef real
#undef accreal
#undef S

#define real double
#define accreal double
#define S(name) name##_f64
#include "pbt_ops_impl.h"
#undef real
#undef accreal
#undef S

/* ---- outputs and operands ----------------------------------------------- */

static pbt_status dtype_mismatch(pbt_error *err, pbt_dtype a, pbt_dtype b) {
  return pbt_fail(err, PBT_ERR_DTYPE, "dtypes %s and %s do not match",
                  pbt_dtype_name(a), pbt_dtype_name(b));
}

/* Allocates a released out, or checks that an existing one can take a
 * result of that dtype and shape. */
static pbt_status prepare_out(pbt_tensor *out, pbt_dtype dtype, int ndim,
                              const int64_t *shape, pbt_error *err) {
  char a[96], b[96];
  int i;
  if (!out->storage) return pbt_tensor_empty(out, dtype, ndim, shape, err);
  if (out->dtype != dtype) return dtype_mismatch(err, out->dtype, dtype);
  if (!pbt_shape_equal(out->ndim, out->shape, ndim, shape)) {
    pbt_format_shape(a, sizeof a, ndim, shape);
    pbt_format_shape(b, sizeof b, out->ndim, out->shape);
    return pbt_fail(err, PBT_ERR_SHAPE,
                    "result of shape %s cannot be written into shape %s", a, b);
  }
  for (i = 0; i < ndim; i++)
    if (out->stride[i] == 0 && out->shape[i] > 1)
      return pbt_fail(err, PBT_ERR_ARG,
                      "cannot write into an expanded tensor (clone it first)");
  return PBT_OK;
}

/* When *x shares out's storage but is not read exactly where out is
 * written, *x becomes a copy held in tmp. */
static pbt_status unalias(const pbt_tensor *out, const pbt_tensor **x,
                          pbt_tensor *tmp, pbt_error *err) {
  int64_t st[PBT_MAX_DIM];
  int i, same = 1;
  pbt_status s;
  if ((*x)->storage != out->storage) return PBT_OK;
  if ((*x)->offset == out->offset) {
    pbt_broadcast_strides(*x, out->ndim, out->shape, st);
    for (i = 0; i < out->ndim; i++)
      if (out->shape[i] > 1 && st[i] != out->stride[i]) same = 0;
    if (same) return PBT_OK;
  }
  s = pbt_clone(tmp, *x, err);
  if (s) return s;
  *x = tmp;
  return PBT_OK;
}

/* ---- elementwise driver ---------------------------------------------------- */

enum { K_BINARY, K_AXPY, K_UNARY, K_CLAMP, K_WHERE };

/* One elementwise job: out = f(in[0], in[1], in[2]).  An input with a NULL
 * tensor is the number v.  For K_WHERE in[0] is the mask. */
typedef struct ew_job {
  int kind, op, nin;
  double p1, p2; /* alpha (axpy), lo and hi (clamp) */
  const pbt_tensor *t[3];
  double v[3];
} ew_job;

static void run_row(const ew_job *j, pbt_dtype dt, int64_t n, char **p,
                    const int64_t *st, int mask_double) {
  if (dt == PBT_FLOAT32) {
    float *o = (float *)(void *)p[0];
    const float *x = (const float *)(void *)p[1];
    const float *y = (const float *)(void *)p[2];
    switch (j->kind) {
    case K_BINARY: binary_row_f32(j->op, n, o, st[0], x, st[1], y, st[2]); break;
    case K_AXPY:
      axpy_row_f32(n, o, st[0], x, st[1], (float)j->p1, y, st[2]);
      break;
    case K_UNARY: unary_row_f32(j->op, n, o, st[0], x, st[1]); break;
    case K_CLAMP:
      clamp_row_f32(n, o, st[0], x, st[1], (float)j->p1, (float)j->p2);
      break;
    case K_WHERE:
      where_row_f32(n, o, st[0], p[1], mask_double, st[1], y, st[2],
                    (const float *)(void *)p[3], st[3]);
      break;
    }
  } else {
    double *o = (double *)(void *)p[0];
    const double *x = (const double *)(void *)p[1];
    const double *y = (const double *)(void *)p[2];
    switch (j->kind) {
    case K_BINARY: binary_row_f64(j->op, n, o, st[0], x, st[1], y, st[2]); break;
    case K_AXPY: axpy_row_f64(n, o, st[0], x, st[1], j->p1, y, st[2]); break;
    case K_UNARY: unary_row_f64(j->op, n, o, st[0], x, st[1]); break;
    case K_CLAMP: clamp_row_f64(n, o, st[0], x, st[1], j->p1, j->p2); break;
    case K_WHERE:
      where_row_f64(n, o, st[0], p[1], mask_double, st[1], y, st[2],
                    (const double *)(void *)p[3], st[3]);
      break;
    }
  }
}

/* The general path: broadcasting, strides, an existing out, overlaps. */
static pbt_status elementwise(pbt_tensor *out, ew_job *j, pbt_dtype dt,
                              pbt_error *err) {
  int64_t shape[PBT_MAX_DIM] = {0}, bst[3][PBT_MAX_DIM], zero[PBT_MAX_DIM] = {0};
  const int64_t *strides[4];
  char *base[4], *p[4];
  size_t esize[4];
  float fv[3];
  double dv[3];
  pbt_tensor tmp[3];
  int ndim = 0, i, k, fresh = out->storage == NULL, mask_double = 0;
  pbt_status s = PBT_OK;
  pbt_iter it;
  for (i = 0; i < j->nin; i++) {
    const pbt_tensor *t = j->t[i];
    int64_t prev[PBT_MAX_DIM];
    pbt_tensor_init(&tmp[i]);
    if (!t) continue;
    memcpy(prev, shape, sizeof prev);
    if (pbt_broadcast_shape(ndim, prev, t->ndim, t->shape, &ndim, shape, err))
      return PBT_ERR_SHAPE;
  }
  s = prepare_out(out, dt, ndim, shape, err);
  if (s) return s;
  if (!fresh)
    for (i = 0; i < j->nin && !s; i++)
      if (j->t[i]) s = unalias(out, &j->t[i], &tmp[i], err);
  if (s) goto done;
  strides[0] = out->stride;
  base[0] = (char *)pbt_tensor_data(out);
  esize[0] = pbt_dtype_size(dt);
  for (i = 0; i < j->nin; i++) {
    const pbt_tensor *t = j->t[i];
    if (t) {
      pbt_broadcast_strides(t, ndim, shape, bst[i]);
      strides[i + 1] = bst[i];
      base[i + 1] = (char *)pbt_tensor_data(t);
      esize[i + 1] = pbt_dtype_size(t->dtype);
    } else {
      fv[i] = (float)j->v[i];
      dv[i] = j->v[i];
      strides[i + 1] = zero;
      base[i + 1] = dt == PBT_FLOAT32 ? (char *)&fv[i] : (char *)&dv[i];
      esize[i + 1] = pbt_dtype_size(dt);
    }
  }
  if (j->kind == K_WHERE) mask_double = j->t[0]->dtype == PBT_FLOAT64;
  for (i = j->nin + 1; i < 4; i++) p[i] = NULL;
  if (pbt_iter_init(&it, j->nin + 1, ndim, shape, strides)) do {
      for (k = 0; k <= j->nin; k++)
        p[k] = base[k] + it.offset[k] * (int64_t)esize[k];
      run_row(j, dt, it.n, p, it.step, mask_double);
    } while (pbt_iter_next(&it));
done:
  for (i = 0; i < j->nin; i++) pbt_tensor_release(&tmp[i]);
  if (s && fresh) pbt_tensor_release(out);
  return s;
}

/* The fast path: out released, all tensor inputs contiguous with one shape.
 * Returns 0 when it does not apply. */
static int ew_fast(pbt_tensor *out, ew_job *j, pbt_dtype dt, pbt_status *s,
                   pbt_error *err) {
  const pbt_tensor *ref = NULL;
  char *p[4];
  int64_t st[4] = {1, 1, 1, 1};
  float fv[3];
  double dv[3];
  int i;
  if (out->storage) return 0;
  for (i = 0; i < j->nin; i++) {
    const pbt_tensor *t = j->t[i];
    if (!t) continue;
    if (!pbt_tensor_is_contiguous(t)) return 0;
    if (!ref) ref = t;
    else if (!pbt_shape_equal(ref->ndim, ref->shape, t->ndim, t->shape))
      return 0;
  }
  *s = pbt_tensor_empty(out, dt, ref->ndim, ref->shape, err);
  if (*s) return 1;
  p[0] = (char *)pbt_tensor_data(out);
  for (i = 0; i < j->nin; i++) {
    if (j->t[i]) {
      p[i + 1] = (char *)pbt_tensor_data(j->t[i]);
    } else {
      fv[i] = (float)j->v[i];
      dv[i] = j->v[i];
      p[i + 1] = dt == PBT_FLOAT32 ? (char *)&fv[i] : (char *)&dv[i];
      st[i + 1] = 0;
    }
  }
  run_row(j, dt, pbt_tensor_numel(out), p, st,
          j->kind == K_WHERE && j->t[0]->dtype == PBT_FLOAT64);
  return 1;
}

static pbt_status ew_run(pbt_tensor *out, ew_job *j, pbt_dtype dt,
                         pbt_error *err) {
  pbt_status s;
  if (ew_fast(out, j, dt, &s, err)) return s;
  return elementwise(out, j, dt, err);
}

pbt_status pbt_binary(pbt_tensor *out, const pbt_tensor *a,
                      const pbt_tensor *b, pbt_binop op, pbt_error *err) {
  ew_job j;
  if (a->dtype != b->dtype) return dtype_mismatch(err, a->dtype, b->dtype);
  if (!out->storage && a->ndim == b->ndim &&
      pbt_shape_equal(a->ndim, a->shape, b->ndim, b->shape) &&
      pbt_tensor_is_contiguous(a) && pbt_tensor_is_contiguous(b)) {
    /* the small-op path: no job, no iterator */
    pbt_status s = pbt_tensor_empty(out, a->dtype, a->ndim, a->shape, err);
    int64_t n = pbt_tensor_numel(a);
    if (s) return s;
    if (a->dtype == PBT_FLOAT32)
      binary_row_f32(op, n, (float *)pbt_tensor_data(out), 1,
                     (const float *)pbt_tensor_data(a), 1,
                     (const float *)pbt_tensor_data(b), 1);
    else
      binary_row_f64(op, n, (double *)pbt_tensor_data(out), 1,
                     (const double *)pbt_tensor_data(a), 1,
                     (const double *)pbt_tensor_data(b), 1);
    return PBT_OK;
  }
  memset(&j, 0, sizeof j);
  j.kind = K_BINARY, j.op = op, j.nin = 2, j.t[0] = a, j.t[1] = b;
  return ew_run(out, &j, a->dtype, err);
}

pbt_status pbt_binary_scalar(pbt_tensor *out, const pbt_tensor *a, double s,
                             pbt_binop op, pbt_error *err) {
  ew_job j;
  if (op == PBT_POW && s == 2) return pbt_binary(out, a, a, PBT_MUL, err);
  memset(&j, 0, sizeof j);
  j.kind = K_BINARY, j.op = op, j.nin = 2, j.t[0] = a, j.v[1] = s;
  return ew_run(out, &j, a->dtype, err);
}

pbt_status pbt_scalar_binary(pbt_tensor *out, double s, const pbt_tensor *a,
                             pbt_binop op, pbt_error *err) {
  ew_job j;
  memset(&j, 0, sizeof j);
  j.kind = K_BINARY, j.op = op, j.nin = 2, j.v[0] = s, j.t[1] = a;
  return ew_run(out, &j, a->dtype, err);
}

pbt_status pbt_axpy(pbt_tensor *out, const pbt_tensor *a, double alpha,
                    const pbt_tensor *b, pbt_error *err) {
  ew_job j;
  if (a->dtype != b->dtype) return dtype_mismatch(err, a->dtype, b->dtype);
  memset(&j, 0, sizeof j);
  j.kind = K_AXPY, j.nin = 2, j.t[0] = a, j.t[1] = b, j.p1 = alpha;
  return ew_run(out, &j, a->dtype, err);
}

pbt_status pbt_unary(pbt_tensor *out, const pbt_tensor *a, pbt_unop op,
                     pbt_error *err) {
  ew_job j;
  memset(&j, 0, sizeof j);
  j.kind = K_UNARY, j.op = op, j.nin = 1, j.t[0] = a;
  return ew_run(out, &j, a->dtype, err);
}

pbt_status pbt_clamp(pbt_tensor *out, const pbt_tensor *a, double lo,
                     double hi, pbt_error *err) {
  ew_job j;
  memset(&j, 0, sizeof j);
  j.kind = K_CLAMP, j.nin = 1, j.t[0] = a, j.p1 = lo, j.p2 = hi;
  return ew_run(out, &j, a->dtype, err);
}

pbt_status pbt_where(pbt_tensor *out, const pbt_tensor *mask,
                     const pbt_tensor *a, double a_value, const pbt_tensor *b,
                     double b_value, pbt_error *err) {
  ew_job j;
  pbt_dtype dt = a ? a->dtype : b ? b->dtype : mask->dtype;
  if (a && b && a->dtype != b->dtype)
    return dtype_mismatch(err, a->dtype, b->dtype);
  memset(&j, 0, sizeof j);
  j.kind = K_WHERE, j.nin = 3, j.t[0] = mask;
  j.t[1] = a, j.v[1] = a_value, j.t[2] = b, j.v[2] = b_value;
  return ew_run(out, &j, dt, err);
}

/* ---- comparisons of whole tensors ------------------------------------------- */

static double load_elem(const char *base, pbt_dtype dt, int64_t i) {
  if (dt == PBT_FLOAT32) return ((const float *)(const void *)base)[i];
  return ((const double *)(const void *)base)[i];
}

/* mode 0: allclose, 1: equal.  Returns 1 when every pair passes. */
static int compare_all(const pbt_tensor *a, const pbt_tensor *b, int ndim,
                       const int64_t *shape, int mode, double rtol,
                       double atol) {
  int64_t sa[PBT_MAX_DIM], sb[PBT_MAX_DIM], i;
  const int64_t *strides[2];
  const char *pa = (const char *)pbt_tensor_data(a);
  const char *pb = (const char *)pbt_tensor_data(b);
  pbt_iter it;
  pbt_broadcast_strides(a, ndim, shape, sa);
  pbt_broadcast_strides(b, ndim, shape, sb);
  strides[0] = sa, strides[1] = sb;
  if (pbt_iter_init(&it, 2, ndim, shape, strides)) do {
      for (i = 0; i < it.n; i++) {
        double x = load_elem(pa, a->dtype, it.offset[0] + i * it.step[0]);
        double y = load_elem(pb, b->dtype, it.offset[1] + i * it.step[1]);
        int ok = mode == 1 || isinf(x) || isinf(y)
                     ? x == y /* infinities are close only to themselves */
                     : fabs(x - y) <= atol + rtol * fabs(y);
        if (!ok) return 0;
      }
    } while (pbt_iter_next(&it));
  return 1;
}

pbt_status pbt_allclose(const pbt_tensor *a, const pbt_tensor *b, double rtol,
                        double atol, int *result, pbt_error *err) {
  int64_t shape[PBT_MAX_DIM];
  int ndim;
  pbt_status s = pbt_broadcast_shape(a->ndim, a->shape, b->ndim, b->shape,
                                     &ndim, shape, err);
  if (s) return s;
  *result = compare_all(a, b, ndim, shape, 0, rtol, atol);
  return PBT_OK;
}

int pbt_equal(const pbt_tensor *a, const pbt_tensor *b) {
  if (!pbt_shape_equal(a->ndim, a->shape, b->ndim, b->shape)) return 0;
  return compare_all(a, b, a->ndim, a->shape, 1, 0, 0);
}

/* ---- reductions -------------------------------------------------------------- */

/* A reduction seen as a contiguous [outer, R, inner] block reduced over R. */
typedef struct red_geom {
  int ndim;                   /* of the result */
  int64_t shape[PBT_MAX_DIM]; /* of the result */
  int64_t outer, R, inner;
  pbt_tensor src;             /* a contiguous version of the input */
  void *work;                 /* scratch for column reductions */
  double stack_work[64];
} red_geom;

static void geom_release(red_geom *g) {
  pbt_tensor_release(&g->src);
  if (g->work != g->stack_work) free(g->work);
  g->work = NULL;
}

/* work: `dwords` doubles per inner element, plus one. */
static pbt_status geom_init(red_geom *g, const pbt_tensor *a, int dim,
                            int keepdim, int dwords, pbt_error *err) {
  int i, k = 0;
  size_t need;
  pbt_status s;
  pbt_tensor_init(&g->src);
  g->work = NULL;
  if (dim < -1 || dim >= a->ndim)
    return pbt_fail(err, PBT_ERR_ARG, "dimension %d out of range for a %d-d tensor",
                    dim, a->ndim);
  g->outer = 1, g->inner = 1;
  if (dim == -1) {
    g->R = pbt_tensor_numel(a);
    g->ndim = keepdim ? a->ndim : 0;
    for (i = 0; i < g->ndim; i++) g->shape[i] = 1;
  } else {
    g->R = a->shape[dim];
    for (i = 0; i < a->ndim; i++) {
      if (i < dim) g->outer *= a->shape[i];
      if (i > dim) g->inner *= a->shape[i];
      if (i != dim) g->shape[k++] = a->shape[i];
      else if (keepdim) g->shape[k++] = 1;
    }
    g->ndim = k;
  }
  /* no result element (an empty outer or inner block): nothing to run over R,
   * however long R is */
  if (g->outer == 0 || g->inner == 0) g->R = 0;
  need = ((size_t)dwords * (size_t)g->inner + 1) * sizeof(double);
  if (need <= sizeof g->stack_work) {
    g->work = g->stack_work;
  } else {
    g->work = malloc(need);
    if (!g->work) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  s = pbt_contiguous(&g->src, a, err);
  if (s) geom_release(g);
  return s;
}

/* The result tensor of a reduction: the user's out, or a temporary copied
 * into it at the end when out is not contiguous or shares a's storage. */
typedef struct out_slot {
  pbt_tensor *user, tmp, *dst;
  int fresh;
} out_slot;

static pbt_status slot_open(out_slot *o, pbt_tensor *user, pbt_dtype dt,
                            const red_geom *g, const pbt_tensor *a,
                            pbt_error *err) {
  pbt_status s;
  o->user = user;
  o->dst = user;
  o->fresh = user->storage == NULL;
  pbt_tensor_init(&o->tmp);
  s = prepare_out(user, dt, g->ndim, g->shape, err);
  if (s || o->fresh) return s;
  if (pbt_tensor_is_contiguous(user) && user->storage != a->storage)
    return PBT_OK;
  s = pbt_tensor_empty(&o->tmp, dt, g->ndim, g->shape, err);
  o->dst = &o->tmp;
  return s;
}

static void slot_abort(out_slot *o) {
  pbt_tensor_release(&o->tmp);
  if (o->fresh) pbt_tensor_release(o->user);
}

static pbt_status slot_close(out_slot *o, pbt_error *err) {
  pbt_status s = PBT_OK;
  if (o->dst == &o->tmp) s = pbt_copy_(o->user, &o->tmp, err);
  pbt_tensor_release(&o->tmp);
  return s;
}

static pbt_status empty_error(pbt_error *err) {
  return pbt_fail(err, PBT_ERR_ARG, "cannot reduce an empty tensor");
}

pbt_status pbt_reduce(pbt_tensor *out, const pbt_tensor *a, int dim,
                      int keepdim, pbt_reduce_op op, pbt_error *err) {
  red_geom g;
  out_slot o;
  pbt_status s;
  if ((op == PBT_MAX || op == PBT_MIN) &&
      (pbt_tensor_numel(a) == 0 || (dim >= 0 && dim < a->ndim && a->shape[dim] == 0)))
    return empty_error(err);
  s = geom_init(&g, a, dim, keepdim, 3, err);
  if (s) return s;
  s = slot_open(&o, out, a->dtype, &g, a, err);
  if (s) {
    slot_abort(&o);
    geom_release(&g);
    return s;
  }
  if (a->dtype == PBT_FLOAT32)
    reduce_run_f32(op, (const float *)pbt_tensor_data(&g.src), g.outer, g.R,
                   g.inner, (float *)pbt_tensor_data(o.dst), (double *)g.work);
  else
    reduce_run_f64(op, (const double *)pbt_tensor_data(&g.src), g.outer, g.R,
                   g.inner, (double *)pbt_tensor_data(o.dst), (double *)g.work);
  geom_release(&g);
  return slot_close(&o, err);
}

pbt_status pbt_reduce_index(pbt_tensor *values, pbt_tensor *indices,
                            const pbt_tensor *a, int dim, int keepdim,
                            int want_max, int64_t base, pbt_error *err) {
  red_geom g;
  out_slot ov, oi;
  pbt_tensor vtmp, itmp;
  pbt_status s;
  void *vdata;
  if (pbt_tensor_numel(a) == 0 ||
      (dim >= 0 && dim < a->ndim && a->shape[dim] == 0))
    return empty_error(err);
  pbt_tensor_init(&vtmp);
  pbt_tensor_init(&itmp);
  s = geom_init(&g, a, dim, keepdim, 2, err);
  if (s) return s;
  /* values and indices are always computed; unwanted ones go to temps */
  s = slot_open(&ov, values ? values : &vtmp, a->dtype, &g, a, err);
  if (s) {
    slot_abort(&ov);
    geom_release(&g);
    return s;
  }
  s = slot_open(&oi, indices ? indices : &itmp, PBT_FLOAT64, &g, a, err);
  if (s) {
    slot_abort(&oi);
    slot_abort(&ov);
    geom_release(&g);
    return s;
  }
  vdata = pbt_tensor_data(ov.dst);
  /* work holds inner values (as doubles, room for either dtype) then
   * inner int64 positions */
  if (a->dtype == PBT_FLOAT32)
    arg_run_f32(want_max, (const float *)pbt_tensor_data(&g.src), g.outer,
                g.R, g.inner, (float *)vdata,
                (double *)pbt_tensor_data(oi.dst), base, (float *)g.work,
                (int64_t *)g.work + g.inner);
  else
    arg_run_f64(want_max, (const double *)pbt_tensor_data(&g.src), g.outer,
                g.R, g.inner, (double *)vdata,
                (double *)pbt_tensor_data(oi.dst), base, (double *)g.work,
                (int64_t *)g.work + g.inner);
  geom_release(&g);
  s = slot_close(&ov, err);
  if (!s) s = slot_close(&oi, err);
  else pbt_tensor_release(&oi.tmp);
  pbt_tensor_release(&vtmp);
  pbt_tensor_release(&itmp);
  return s;
}

pbt_status pbt_var(pbt_tensor *out, const pbt_tensor *a, int dim, int keepdim,
                   int64_t correction, int take_sqrt, pbt_error *err) {
  red_geom g;
  out_slot o;
  pbt_status s = geom_init(&g, a, dim, keepdim, 2, err);
  if (s) return s;
  s = slot_open(&o, out, a->dtype, &g, a, err);
  if (s) {
    slot_abort(&o);
    geom_release(&g);
    return s;
  }
  if (a->dtype == PBT_FLOAT32)
    var_run_f32((const float *)pbt_tensor_data(&g.src), g.outer, g.R, g.inner,
                correction, take_sqrt, (float *)pbt_tensor_data(o.dst),
                (double *)g.work);
  else
    var_run_f64((const double *)pbt_tensor_data(&g.src), g.outer, g.R,
                g.inner, correction, take_sqrt,
                (double *)pbt_tensor_data(o.dst), (double *)g.work);
  geom_release(&g);
  return slot_close(&o, err);
}

pbt_status pbt_norm(pbt_tensor *out, const pbt_tensor *a, double p, int dim,
                    int keepdim, pbt_error *err) {
  red_geom g;
  out_slot o;
  pbt_status s;
  int kind = p == 2 ? MS_SQ : p == 1 ? MS_ABS : p == 0 ? MS_NZ : MS_POW;
  if (p == INFINITY || p == -INFINITY) {
    /* max |x| (min |x|): a reduction of |a|; 0 when empty */
    pbt_tensor abs_a;
    int64_t n = dim < 0 ? pbt_tensor_numel(a) : dim < a->ndim ? a->shape[dim] : 1;
    if (n == 0) {
      s = pbt_norm(out, a, 1, dim, keepdim, err);
      return s;
    }
    pbt_tensor_init(&abs_a);
    s = pbt_unary(&abs_a, a, PBT_ABS, err);
    if (!s) s = pbt_reduce(out, &abs_a, dim, keepdim, p > 0 ? PBT_MAX : PBT_MIN, err);
    pbt_tensor_release(&abs_a);
    return s;
  }
  if (p != p) return pbt_fail(err, PBT_ERR_ARG, "norm order is NaN");
  s = geom_init(&g, a, dim, keepdim, 1, err);
  if (s) return s;
  s = slot_open(&o, out, a->dtype, &g, a, err);
  if (s) {
    slot_abort(&o);
    geom_release(&g);
    return s;
  }
  if (a->dtype == PBT_FLOAT32)
    norm_run_f32(kind, p, (const float *)pbt_tensor_data(&g.src), g.outer, g.R,
                 g.inner, (float *)pbt_tensor_data(o.dst), (double *)g.work);
  else
    norm_run_f64(kind, p, (const double *)pbt_tensor_data(&g.src), g.outer,
                 g.R, g.inner, (double *)pbt_tensor_data(o.dst),
                 (double *)g.work);
  geom_release(&g);
  return slot_close(&o, err);
}

pbt_status pbt_softmax(pbt_tensor *out, const pbt_tensor *a, int dim,
                       int take_log, pbt_error *err) {
  red_geom g;
  out_slot o;
  pbt_status s;
  if (a->ndim == 0 || dim < 0 || dim >= a->ndim)
    return pbt_fail(err, PBT_ERR_ARG, "dimension %d out of range for a %d-d tensor",
                    dim, a->ndim);
  s = geom_init(&g, a, dim, 1, 4, err);
  if (s) return s;
  /* the result has a's shape */
  g.ndim = a->ndim;
  memcpy(g.shape, a->shape, sizeof g.shape);
  s = slot_open(&o, out, a->dtype, &g, a, err);
  if (s) {
    slot_abort(&o);
    geom_release(&g);
    return s;
  }
  if (a->dtype == PBT_FLOAT32)
    softmax_run_f32(take_log, (const float *)pbt_tensor_data(&g.src), g.outer,
                    g.R, g.inner, (float *)pbt_tensor_data(o.dst),
                    (double *)g.work);
  else
    softmax_run_f64(take_log, (const double *)pbt_tensor_data(&g.src), g.outer,
                    g.R, g.inner, (double *)pbt_tensor_data(o.dst),
                    (double *)g.work);
  geom_release(&g);
  return slot_close(&o, err);
}
