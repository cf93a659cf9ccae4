/* pbt_nn.c -- neural-network kernels (see pbt_nn.h).
 *
 * The per-dtype kernels sit at the end of this file, between
 * `#ifdef PBT_NN_GENERIC` and its `#endif`; the file includes itself twice
 * to instantiate them (TH's generic files, in one file), with
 *   real     float or double
 *   S(name)  name_f32 or name_f64
 * The shape checks, output allocation and dtype dispatch come first.
 */
#ifndef PBT_NN_GENERIC

#pragma GCC optimize("no-trapping-math", "no-math-errno")

#include "pbt_nn.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbt_linalg.h"
#include "pbt_ops.h"

/* Hot loops are compiled for AVX-512, AVX2 and the baseline, chosen at load
 * time (as in pbt_ops.c; no FMA contraction, so results are the same on
 * every machine). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__linux__) && !defined(PBT_NO_CLONES)
#define NN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NN_CLONES
#endif

/* ---- helpers --------------------------------------------------------------- */

static pbt_status same_dtype(const pbt_tensor *a, const pbt_tensor *b,
                             pbt_error *err) {
  if (!b || a->dtype == b->dtype) return PBT_OK;
  return pbt_fail(err, PBT_ERR_DTYPE, "dtypes %s and %s do not match",
                  pbt_dtype_name(a->dtype), pbt_dtype_name(b->dtype));
}

static void shape_str(char *buf, size_t n, const pbt_tensor *t) {
  pbt_format_shape(buf, n, t->ndim, t->shape);
}

/* tmp = a contiguous version of src (shares src when it is contiguous).
 * tmp must be released; release it afterwards in any case. */
static pbt_status contig(pbt_tensor *tmp, const pbt_tensor *src,
                         pbt_error *err) {
  pbt_tensor_init(tmp);
  return src ? pbt_contiguous(tmp, src, err) : PBT_OK;
}

static const void *cdata(const pbt_tensor *t) {
  return t && t->storage ? pbt_tensor_data(t) : NULL;
}

static int fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

static pbt_status too_big(pbt_error *err) {
  return pbt_fail(err, PBT_ERR_ARG, "sizes too large for BLAS (more than %d)", INT_MAX);
}

static pbt_status new_like(pbt_tensor *dst, const pbt_tensor *like,
                           pbt_error *err) {
  return pbt_tensor_empty(dst, like->dtype, like->ndim, like->shape, err);
}

static void release_all(pbt_tensor *a, pbt_tensor *b, pbt_tensor *c) {
  if (a) pbt_tensor_release(a);
  if (b) pbt_tensor_release(b);
  if (c) pbt_tensor_release(c);
}

/* Reads the 1-d labels (any dtype and stride) as 0-based classes into lab,
 * checking each. */
static pbt_status read_labels(const pbt_tensor *labels, int64_t n, int64_t k,
                              int64_t base, int64_t *lab, pbt_error *err) {
  int64_t i, st = labels->ndim ? labels->stride[0] : 0;
  const void *p = pbt_tensor_data(labels);
  for (i = 0; i < n; i++) {
    double v = labels->dtype == PBT_FLOAT32 ? (double)((const float *)p)[i * st]
                                            : ((const double *)p)[i * st];
    if (v != floor(v))
      return pbt_fail(err, PBT_ERR_ARG, "label %g is not an integer", v);
    if (!(v >= (double)base && v < (double)base + (double)k))
      return pbt_fail(err, PBT_ERR_ARG, "label %.17g out of range for %lld classes", v,
                      (long long)k);
    lab[i] = (int64_t)v - base;
  }
  return PBT_OK;
}

static pbt_status reduced_out(pbt_tensor *out, pbt_dtype dt, pbt_reduction red,
                              int ndim, const int64_t *shape, pbt_error *err) {
  int64_t none = 0; /* a 0-d tensor: no sizes, but a valid pointer */
  if (red == PBT_REDUCTION_NONE) return pbt_tensor_empty(out, dt, ndim, shape, err);
  return pbt_tensor_empty(out, dt, 0, &none, err);
}

/* The scale of loss element i's gradient, given the loss's gradient g. */
static double loss_scale(const pbt_tensor *g, pbt_reduction red, int64_t n,
                         int64_t i) {
  if (red == PBT_REDUCTION_NONE) return pbt_tensor_get_flat(g, i);
  if (red == PBT_REDUCTION_MEAN) return pbt_tensor_get_flat(g, 0) / (double)n;
  return pbt_tensor_get_flat(g, 0);
}

static pbt_status check_loss_grad(const pbt_tensor *g, pbt_reduction red,
                                  int ndim, const int64_t *shape,
                                  pbt_error *err) {
  char sa[96], sb[96];
  int ok = red == PBT_REDUCTION_NONE ? pbt_shape_equal(g->ndim, g->shape, ndim, shape)
                                     : pbt_tensor_numel(g) == 1;
  if (ok) return PBT_OK;
  shape_str(sa, sizeof sa, g);
  if (red == PBT_REDUCTION_NONE) pbt_format_shape(sb, sizeof sb, ndim, shape);
  else snprintf(sb, sizeof sb, "[]");
  return pbt_fail(err, PBT_ERR_SHAPE, "gradient of shape %s, expected %s", sa, sb);
}

/* Geometry of one convolution and one pooling. */
typedef struct conv_geom {
  int64_t n, c, h, w, o, kh, kw, sh, sw, ph, pw, oh, ow;
  int direct; /* 1x1 kernel, stride 1, no padding: the image is its own im2col */
} conv_geom;

typedef struct pool_geom {
  int64_t planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
} pool_geom;

/* 2x2 max pooling (stride 2, no padding) of float32 rows of n >= W outputs,
 * W = 8 or 4 at a time with GCC's vector extensions (the last block overlaps
 * the one before when W does not divide n: its writes are the same).  The
 * same results as pool2x2_row_f32 and unpool2x2_row_f32 (see there). */
#if defined(__GNUC__) && !defined(__clang__)
#define NN_VEC 1
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
static const v8i ev8 = {0, 2, 4, 6, 8, 10, 12, 14}, od8 = {1, 3, 5, 7, 9, 11, 13, 15};
static const v8i lo8 = {0, 8, 1, 9, 2, 10, 3, 11}, hi8 = {4, 12, 5, 13, 6, 14, 7, 15};
static const v8f lane8 = {0, 2, 4, 6, 8, 10, 12, 14};
static const v4i ev4 = {0, 2, 4, 6}, od4 = {1, 3, 5, 7};
static const v4i lo4 = {0, 4, 1, 5}, hi4 = {2, 6, 3, 7};
static const v4f lane4 = {0, 2, 4, 6};

/* loads, stores and m ? a : b (macros: no vector-valued functions, whose
 * ABI differs between the clones) */
#define LDV(v, p) memcpy(&(v), (p), sizeof(v))
#define STV(T, p, v)                 \
  do {                               \
    T stv_ = (v);                    \
    memcpy((p), &stv_, sizeof stv_); \
  } while (0)
#define SELV(VF, VI, m, a, b) ((VF)(((m) & (VI)(a)) | (~(m) & (VI)(b))))

#define POOL_VEC(W, VF, VI)                                                              \
  static NN_CLONES int pool2x2_vec##W(int n, const float *r0, const float *r1, float *o, \
                                      float *id, float start, float rw) {                \
    const VF zero = {0}, one = zero + 1;                                                 \
    VI nan = {0};                                                                        \
    int j = 0, k, r = 0;                                                                 \
    for (;;) {                                                                           \
      VF l0, h0, l1, h1, a, b, c, d, m0, m1, f0, f1;                                     \
      VI mb, md, m;                                                                      \
      if (j > n - W) j = n - W;                                                          \
      LDV(l0, r0 + 2 * j), LDV(h0, r0 + 2 * j + W);                                      \
      LDV(l1, r1 + 2 * j), LDV(h1, r1 + 2 * j + W);                                      \
      a = __builtin_shuffle(l0, h0, ev##W), b = __builtin_shuffle(l0, h0, od##W);        \
      c = __builtin_shuffle(l1, h1, ev##W), d = __builtin_shuffle(l1, h1, od##W);        \
      mb = b > a, md = d > c;                                                            \
      m0 = SELV(VF, VI, mb, b, a), f0 = SELV(VF, VI, mb, one, zero);                     \
      m1 = SELV(VF, VI, md, d, c), f1 = SELV(VF, VI, md, zero + (rw + 1), zero + rw);    \
      m = m1 > m0;                                                                       \
      STV(VF, o + j, SELV(VF, VI, m, m1, m0));                                           \
      STV(VF, id + j, (zero + start + (float)(2 * j) + lane##W) + SELV(VF, VI, m, f1, f0)); \
      nan |= (a != a) | (b != b) | (c != c) | (d != d);                                  \
      if (j == n - W) break;                                                             \
      j += W;                                                                            \
    }                                                                                    \
    for (k = 0; k < W; k++) r |= nan[k];                                                 \
    return r != 0;                                                                       \
  }                                                                                      \
  static NN_CLONES int unpool2x2_vec##W(int n, const float *g, const float *id,          \
                                        float *r0, float *r1, float start, float rw) {   \
    const VF zero = {0};                                                                 \
    VI bad = {0};                                                                        \
    int j = 0, k, r = 0;                                                                 \
    for (;;) {                                                                           \
      VF v, d, e0, e1, e2, e3;                                                           \
      VI k0, k1, k2, k3;                                                                 \
      if (j > n - W) j = n - W;                                                          \
      LDV(v, g + j), LDV(d, id + j);                                                     \
      v = v + zero;                                                                      \
      d = d - (zero + start + (float)(2 * j) + lane##W);                                 \
      k0 = d == zero, k1 = d == zero + 1, k2 = d == zero + rw, k3 = d == zero + (rw + 1); \
      e0 = SELV(VF, VI, k0, v, zero), e1 = SELV(VF, VI, k1, v, zero);                    \
      e2 = SELV(VF, VI, k2, v, zero), e3 = SELV(VF, VI, k3, v, zero);                    \
      STV(VF, r0 + 2 * j, __builtin_shuffle(e0, e1, lo##W));                             \
      STV(VF, r0 + 2 * j + W, __builtin_shuffle(e0, e1, hi##W));                         \
      STV(VF, r1 + 2 * j, __builtin_shuffle(e2, e3, lo##W));                             \
      STV(VF, r1 + 2 * j + W, __builtin_shuffle(e2, e3, hi##W));                         \
      bad |= ~(k0 | k1 | k2 | k3);                                                       \
      if (j == n - W) break;                                                             \
      j += W;                                                                            \
    }                                                                                    \
    for (k = 0; k < W; k++) r |= bad[k];                                                 \
    return r != 0;                                                                       \
  }
POOL_VEC(8, v8f, v8i)
POOL_VEC(4, v4f, v4i)
#endif

/* The per-dtype kernels. */
#define PBT_NN_GENERIC
#define real float
#define IS_F32 1
#define S(name) name##_f32
#define m_exp expf
#define m_log logf
#define m_log1p log1pf
#define m_erfc erfcf
#define m_sqrt sqrtf
#include "pbt_nn.c"
#undef real
#undef IS_F32
#undef S
#undef m_exp
#undef m_log
#undef m_log1p
#undef m_erfc
#undef m_sqrt
#define real double
#define IS_F32 0
#define S(name) name##_f64
#define m_exp exp
#define m_log log
#define m_log1p log1p
#define m_erfc erfc
#define m_sqrt sqrt
#include "pbt_nn.c"
#undef real
#undef IS_F32
#undef S
#undef m_exp
#undef m_log
#undef m_log1p
#undef m_erfc
#undef m_sqrt
#undef PBT_NN_GENERIC

/* ---- linear ------------------------------------------------------------------- */

static pbt_status check_linear(const pbt_tensor *x, const pbt_tensor *w,
                               const pbt_tensor *b, pbt_error *err) {
  char sa[96], sb[96];
  pbt_status s = same_dtype(x, w, err);
  if (!s) s = same_dtype(x, b, err);
  if (s) return s;
  if (x->ndim != 2) {
    shape_str(sa, sizeof sa, x);
    return pbt_fail(err, PBT_ERR_SHAPE, "expects a 2-d input, got shape %s", sa);
  }
  if (w->ndim != 2 || w->shape[1] != x->shape[1]) {
    shape_str(sa, sizeof sa, x);
    shape_str(sb, sizeof sb, w);
    return pbt_fail(err, PBT_ERR_SHAPE, "input of shape %s does not fit weight of shape %s",
                    sa, sb);
  }
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
    shape_str(sa, sizeof sa, b);
    shape_str(sb, sizeof sb, w);
    return pbt_fail(err, PBT_ERR_SHAPE, "bias of shape %s does not fit weight of shape %s",
                    sa, sb);
  }
  return PBT_OK;
}

pbt_status pbt_linear(pbt_tensor *out, const pbt_tensor *x,
                      const pbt_tensor *w, const pbt_tensor *b,
                      pbt_error *err) {
  int64_t shape[2];
  pbt_tensor wt;
  pbt_status s = check_linear(x, w, b, err);
  if (s) return s;
  shape[0] = x->shape[0], shape[1] = w->shape[0];
  s = pbt_tensor_empty(out, x->dtype, 2, shape, err);
  if (s) return s;
  if (b) { /* every row of out starts as b */
    pbt_tensor row = *b;
    row.ndim = 2, row.shape[0] = shape[0], row.shape[1] = shape[1];
    row.stride[0] = 0, row.stride[1] = b->stride[0];
    s = pbt_copy_(out, &row, err);
  }
  wt = *w; /* w^T as a header-only view: the storage is not retained */
  wt.shape[0] = w->shape[1], wt.shape[1] = w->shape[0];
  wt.stride[0] = w->stride[1], wt.stride[1] = w->stride[0];
  if (!s) s = pbt_addmm(out, x, &wt, 1, b ? 1 : 0, err);
  if (s) pbt_tensor_release(out);
  return s;
}

pbt_status pbt_linear_backward(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                               const pbt_tensor *g, const pbt_tensor *x,
                               const pbt_tensor *w, pbt_error *err) {
  char sa[96], sb[96];
  pbt_status s = check_linear(x, w, NULL, err);
  if (!s) s = same_dtype(x, g, err);
  if (s) return s;
  if (g->ndim != 2 || g->shape[0] != x->shape[0] || g->shape[1] != w->shape[0]) {
    shape_str(sa, sizeof sa, g);
    shape_str(sb, sizeof sb, x);
    return pbt_fail(err, PBT_ERR_SHAPE, "gradient of shape %s does not fit input of shape %s",
                    sa, sb);
  }
  if (gx) {
    s = new_like(gx, x, err);
    if (!s) s = pbt_addmm(gx, g, w, 1, 0, err);
  }
  if (gw && !s) {
    pbt_tensor gt = *g;
    gt.shape[0] = g->shape[1], gt.shape[1] = g->shape[0];
    gt.stride[0] = g->stride[1], gt.stride[1] = g->stride[0];
    s = new_like(gw, w, err);
    if (!s) s = pbt_addmm(gw, &gt, x, 1, 0, err);
  }
  if (gb && !s) s = pbt_reduce(gb, g, 0, 0, PBT_SUM, err);
  if (s) release_all(gx, gw, gb);
  return s;
}

/* ---- conv2d --------------------------------------------------------------------- */

static pbt_status conv_check(const pbt_tensor *x, const pbt_tensor *w,
                             const pbt_tensor *b, const pbt_conv2d_opts *o,
                             conv_geom *gm, pbt_error *err) {
  char sa[96], sb[96];
  pbt_status s = same_dtype(x, w, err);
  memset(gm, 0, sizeof *gm);
  if (!s) s = same_dtype(x, b, err);
  if (s) return s;
  if (o->stride[0] < 1 || o->stride[1] < 1 || o->padding[0] < 0 || o->padding[1] < 0)
    return pbt_fail(err, PBT_ERR_ARG, "stride must be >= 1 and padding >= 0");
  if (x->ndim != 4) {
    shape_str(sa, sizeof sa, x);
    return pbt_fail(err, PBT_ERR_SHAPE, "expects a 4-d input [N,C,H,W], got shape %s", sa);
  }
  if (w->ndim != 4) {
    shape_str(sa, sizeof sa, w);
    return pbt_fail(err, PBT_ERR_SHAPE, "expects a 4-d weight [O,C,kh,kw], got shape %s", sa);
  }
  if (x->shape[1] != w->shape[1]) {
    shape_str(sa, sizeof sa, x);
    shape_str(sb, sizeof sb, w);
    return pbt_fail(err, PBT_ERR_SHAPE,
                    "input of shape %s has %lld channels, weight of shape %s expects %lld",
                    sa, (long long)x->shape[1], sb, (long long)w->shape[1]);
  }
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
    shape_str(sa, sizeof sa, b);
    shape_str(sb, sizeof sb, w);
    return pbt_fail(err, PBT_ERR_SHAPE, "bias of shape %s does not fit weight of shape %s",
                    sa, sb);
  }
  gm->n = x->shape[0], gm->c = x->shape[1], gm->h = x->shape[2], gm->w = x->shape[3];
  gm->o = w->shape[0], gm->kh = w->shape[2], gm->kw = w->shape[3];
  gm->sh = o->stride[0], gm->sw = o->stride[1];
  gm->ph = o->padding[0], gm->pw = o->padding[1];
  if (gm->kh > gm->h + 2 * gm->ph || gm->kw > gm->w + 2 * gm->pw || gm->kh < 1 || gm->kw < 1)
    return pbt_fail(err, PBT_ERR_SHAPE, "kernel %lldx%lld does not fit the padded input %lldx%lld",
                    (long long)gm->kh, (long long)gm->kw, (long long)(gm->h + 2 * gm->ph),
                    (long long)(gm->w + 2 * gm->pw));
  gm->oh = (gm->h + 2 * gm->ph - gm->kh) / gm->sh + 1;
  gm->ow = (gm->w + 2 * gm->pw - gm->kw) / gm->sw + 1;
  gm->direct = gm->kh == 1 && gm->kw == 1 && gm->sh == 1 && gm->sw == 1 && gm->ph == 0 &&
               gm->pw == 0;
  if (!fits_int(gm->o) || !fits_int(gm->oh * gm->ow) || !fits_int(gm->c * gm->kh * gm->kw))
    return too_big(err);
  return PBT_OK;
}

int64_t pbt_conv2d_workspace_numel(const pbt_tensor *x, const pbt_tensor *w,
                                   const pbt_conv2d_opts *opts) {
  conv_geom gm;
  if (conv_check(x, w, NULL, opts, &gm, NULL) || gm.direct) return 0;
  return gm.c * gm.kh * gm.kw * gm.oh * gm.ow;
}

/* *data = `need` elements of workspace: ws's when big enough, else ws
 * reallocated; a temporary in tmp when ws is NULL. */
static pbt_status workspace(pbt_tensor *ws, pbt_tensor *tmp, pbt_dtype dt,
                            int64_t need, void **data, pbt_error *err) {
  pbt_status s;
  pbt_tensor_init(tmp);
  *data = NULL;
  if (need == 0) return PBT_OK;
  if (ws && ws->storage && ws->dtype == dt && pbt_tensor_is_contiguous(ws) &&
      pbt_tensor_numel(ws) >= need) {
    *data = pbt_tensor_data(ws);
    return PBT_OK;
  }
  if (ws) {
    pbt_tensor_release(ws);
    s = pbt_tensor_empty(ws, dt, 1, &need, err);
    if (!s) *data = pbt_tensor_data(ws);
    return s;
  }
  s = pbt_tensor_empty(tmp, dt, 1, &need, err);
  if (!s) *data = pbt_tensor_data(tmp);
  return s;
}

pbt_status pbt_conv2d(pbt_tensor *out, const pbt_tensor *x,
                      const pbt_tensor *w, const pbt_tensor *b,
                      const pbt_conv2d_opts *opts, pbt_tensor *ws,
                      pbt_error *err) {
  conv_geom gm;
  int64_t shape[4];
  pbt_tensor xc, wc, bc, tmp;
  void *cols;
  pbt_status s = conv_check(x, w, b, opts, &gm, err);
  if (s) return s;
  shape[0] = gm.n, shape[1] = gm.o, shape[2] = gm.oh, shape[3] = gm.ow;
  pbt_tensor_init(&bc), pbt_tensor_init(&wc);
  s = contig(&xc, x, err);
  if (!s) s = contig(&wc, w, err);
  if (!s) s = contig(&bc, b, err);
  if (!s) s = workspace(ws, &tmp, x->dtype, gm.direct ? 0 : gm.c * gm.kh * gm.kw * gm.oh * gm.ow,
                        &cols, err);
  else pbt_tensor_init(&tmp);
  if (!s) s = pbt_tensor_empty(out, x->dtype, 4, shape, err);
  if (!s) {
    if (x->dtype == PBT_FLOAT32)
      conv_forward_f32(&gm, cdata(&xc), cdata(&wc), cdata(&bc), pbt_tensor_data(out), cols);
    else
      conv_forward_f64(&gm, cdata(&xc), cdata(&wc), cdata(&bc), pbt_tensor_data(out), cols);
  }
  release_all(&xc, &wc, &bc);
  pbt_tensor_release(&tmp);
  return s;
}

pbt_status pbt_conv2d_backward(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                               const pbt_tensor *g, const pbt_tensor *x,
                               const pbt_tensor *w, const pbt_conv2d_opts *opts,
                               pbt_tensor *ws, pbt_error *err) {
  conv_geom gm;
  int64_t want[4];
  char sa[96], sb[96];
  pbt_tensor xc, wc, gc, tmp;
  void *cols;
  double *acc = NULL;
  pbt_status s = conv_check(x, w, NULL, opts, &gm, err);
  if (!s) s = same_dtype(x, g, err);
  if (s) return s;
  want[0] = gm.n, want[1] = gm.o, want[2] = gm.oh, want[3] = gm.ow;
  if (!pbt_shape_equal(g->ndim, g->shape, 4, want)) {
    shape_str(sa, sizeof sa, g);
    pbt_format_shape(sb, sizeof sb, 4, want);
    return pbt_fail(err, PBT_ERR_SHAPE, "gradient of shape %s, expected %s", sa, sb);
  }
  pbt_tensor_init(&wc), pbt_tensor_init(&gc), pbt_tensor_init(&tmp);
  s = contig(&xc, x, err);
  if (!s) s = contig(&wc, w, err);
  if (!s) s = contig(&gc, g, err);
  if (!s && (gx || gw))
    s = workspace(ws, &tmp, x->dtype, gm.direct ? 0 : gm.c * gm.kh * gm.kw * gm.oh * gm.ow,
                  &cols, err);
  else cols = NULL;
  if (!s && gx) s = new_like(gx, x, err);
  if (!s && gw) s = new_like(gw, w, err);
  if (!s && gb) s = pbt_tensor_empty(gb, x->dtype, 1, &gm.o, err);
  if (!s && gb) {
    acc = (double *)calloc((size_t)(gm.o ? gm.o : 1), sizeof *acc);
    if (!acc) s = pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  if (!s) {
    if (x->dtype == PBT_FLOAT32)
      conv_backward_f32(&gm, cdata(&gc), cdata(&xc), cdata(&wc), gx ? pbt_tensor_data(gx) : NULL,
                        gw ? pbt_tensor_data(gw) : NULL, gb ? pbt_tensor_data(gb) : NULL, acc,
                        cols);
    else
      conv_backward_f64(&gm, cdata(&gc), cdata(&xc), cdata(&wc), gx ? pbt_tensor_data(gx) : NULL,
                        gw ? pbt_tensor_data(gw) : NULL, gb ? pbt_tensor_data(gb) : NULL, acc,
                        cols);
  }
  free(acc);
  release_all(&xc, &wc, &gc);
  pbt_tensor_release(&tmp);
  if (s) release_all(gx, gw, gb);
  return s;
}

/* ---- max pooling ----------------------------------------------------------------- */

static pbt_status pool_check(const pbt_tensor *x, const pbt_pool2d_opts *o,
                             pool_geom *gm, pbt_error *err) {
  char sa[96];
  int nd = x->ndim;
  memset(gm, 0, sizeof *gm);
  if (o->kernel[0] < 1 || o->kernel[1] < 1 || o->stride[0] < 1 || o->stride[1] < 1 ||
      o->padding[0] < 0 || o->padding[1] < 0)
    return pbt_fail(err, PBT_ERR_ARG, "kernel and stride must be >= 1 and padding >= 0");
  if (nd != 3 && nd != 4) {
    shape_str(sa, sizeof sa, x);
    return pbt_fail(err, PBT_ERR_SHAPE, "expects a 3-d or 4-d input, got shape %s", sa);
  }
  if (2 * o->padding[0] > o->kernel[0] || 2 * o->padding[1] > o->kernel[1])
    return pbt_fail(err, PBT_ERR_ARG, "padding %lldx%lld larger than half the kernel %lldx%lld",
                    (long long)o->padding[0], (long long)o->padding[1],
                    (long long)o->kernel[0], (long long)o->kernel[1]);
  gm->planes = x->shape[0] * (nd == 4 ? x->shape[1] : 1);
  gm->h = x->shape[nd - 2], gm->w = x->shape[nd - 1];
  gm->kh = o->kernel[0], gm->kw = o->kernel[1];
  gm->sh = o->stride[0], gm->sw = o->stride[1];
  gm->ph = o->padding[0], gm->pw = o->padding[1];
  if (gm->kh > gm->h + 2 * gm->ph || gm->kw > gm->w + 2 * gm->pw)
    return pbt_fail(err, PBT_ERR_SHAPE, "kernel %lldx%lld does not fit the padded input %lldx%lld",
                    (long long)gm->kh, (long long)gm->kw, (long long)(gm->h + 2 * gm->ph),
                    (long long)(gm->w + 2 * gm->pw));
  gm->oh = (gm->h + 2 * gm->ph - gm->kh) / gm->sh + 1;
  gm->ow = (gm->w + 2 * gm->pw - gm->kw) / gm->sw + 1;
  return PBT_OK;
}

pbt_status pbt_max_pool2d(pbt_tensor *out, pbt_tensor *indices,
                          const pbt_tensor *x, const pbt_pool2d_opts *opts,
                          int64_t base, pbt_error *err) {
  pool_geom gm;
  int64_t shape[PBT_MAX_DIM];
  pbt_tensor xc;
  pbt_dtype idt;
  int64_t *bi = NULL;
  pbt_status s = pool_check(x, opts, &gm, err);
  if (s) return s;
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 2] = gm.oh, shape[x->ndim - 1] = gm.ow;
  idt = x->dtype == PBT_FLOAT32 && gm.h * gm.w + base > (1 << 24) ? PBT_FLOAT64 : x->dtype;
  s = contig(&xc, x, err);
  if (!s) s = pbt_tensor_empty(out, x->dtype, x->ndim, shape, err);
  if (!s && indices) {
    s = pbt_tensor_empty(indices, idt, x->ndim, shape, err);
    if (s) pbt_tensor_release(out);
  }
  if (!s) {
    bi = (int64_t *)malloc((size_t)(gm.ow ? gm.ow : 1) * sizeof *bi);
    if (!bi) {
      s = pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
      release_all(out, indices, NULL);
    }
  }
  if (!s) {
    void *ip = indices ? pbt_tensor_data(indices) : NULL;
    int tiled = gm.kh == 2 && gm.kw == 2 && gm.sh == 2 && gm.sw == 2 && gm.ph == 0 &&
                gm.pw == 0 && idt == x->dtype && gm.w < (1 << 30);
    if (tiled && x->dtype == PBT_FLOAT32)
      max_pool_2x2_f32(&gm, cdata(&xc), pbt_tensor_data(out), ip, base, (float *)bi);
    else if (tiled)
      max_pool_2x2_f64(&gm, cdata(&xc), pbt_tensor_data(out), ip, base, (double *)bi);
    else if (x->dtype == PBT_FLOAT32)
      max_pool_f32(&gm, cdata(&xc), pbt_tensor_data(out), ip, idt == PBT_FLOAT64, base, bi);
    else
      max_pool_f64(&gm, cdata(&xc), pbt_tensor_data(out), ip, 1, base, bi);
  }
  free(bi);
  pbt_tensor_release(&xc);
  return s;
}

pbt_status pbt_max_pool2d_backward(pbt_tensor *gx, const pbt_tensor *g,
                                   const pbt_tensor *indices,
                                   const pbt_tensor *x, int64_t base,
                                   pbt_error *err) {
  char sa[96], sb[96];
  pbt_tensor gc, ic;
  int64_t planes, plane, n;
  pbt_status s = same_dtype(x, g, err);
  if (s) return s;
  if (!pbt_shape_equal(g->ndim, g->shape, indices->ndim, indices->shape) ||
      g->ndim != x->ndim || (g->ndim != 3 && g->ndim != 4) ||
      (g->ndim == 4 && g->shape[1] != x->shape[1]) || g->shape[0] != x->shape[0]) {
    shape_str(sa, sizeof sa, g);
    shape_str(sb, sizeof sb, indices);
    return pbt_fail(err, PBT_ERR_SHAPE, "gradient of shape %s does not fit indices of shape %s",
                    sa, sb);
  }
  planes = x->shape[0] * (x->ndim == 4 ? x->shape[1] : 1);
  plane = x->shape[x->ndim - 2] * x->shape[x->ndim - 1];
  n = g->shape[g->ndim - 2] * g->shape[g->ndim - 1];
  pbt_tensor_init(&ic);
  s = contig(&gc, g, err);
  if (!s) s = contig(&ic, indices, err);
  if (!s) s = new_like(gx, x, err);
  if (!s) {
    int f64 = indices->dtype == PBT_FLOAT64, done = 0;
    int64_t h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1];
    if (indices->dtype == x->dtype && g->shape[g->ndim - 2] == h / 2 &&
        g->shape[g->ndim - 1] == w / 2 && w < (1 << 30))
      done = x->dtype == PBT_FLOAT32
                 ? max_pool_backward_2x2_f32(planes, h, w, cdata(&gc), cdata(&ic), base,
                                             pbt_tensor_data(gx))
                 : max_pool_backward_2x2_f64(planes, h, w, cdata(&gc), cdata(&ic), base,
                                             pbt_tensor_data(gx));
    if (done)
      s = PBT_OK;
    else if (x->dtype == PBT_FLOAT32)
      s = max_pool_backward_f32(planes, plane, n, cdata(&gc), cdata(&ic), f64, base,
                                pbt_tensor_data(gx), err);
    else
      s = max_pool_backward_f64(planes, plane, n, cdata(&gc), cdata(&ic), f64, base,
                                pbt_tensor_data(gx), err);
    if (s) pbt_tensor_release(gx);
  }
  release_all(&gc, &ic, NULL);
  return s;
}

/* ---- cross-entropy ------------------------------------------------------------- */

static pbt_status ce_check(const pbt_tensor *logits, const pbt_tensor *labels,
                           pbt_error *err) {
  char sa[96], sb[96];
  if (logits->ndim != 2) {
    shape_str(sa, sizeof sa, logits);
    return pbt_fail(err, PBT_ERR_SHAPE, "expects 2-d logits [N,K], got shape %s", sa);
  }
  if (labels->ndim != 1 || labels->shape[0] != logits->shape[0]) {
    shape_str(sa, sizeof sa, labels);
    shape_str(sb, sizeof sb, logits);
    return pbt_fail(err, PBT_ERR_SHAPE, "labels of shape %s do not fit logits of shape %s", sa,
                    sb);
  }
  return PBT_OK;
}

/* lab = the checked 0-based labels (malloc'd, free it) and lc = contiguous
 * logits; on failure both are released. */
static pbt_status ce_prepare(const pbt_tensor *logits, const pbt_tensor *labels,
                             int64_t base, int64_t **lab, pbt_tensor *lc,
                             pbt_error *err) {
  int64_t n = logits->shape[0];
  pbt_status s = ce_check(logits, labels, err);
  pbt_tensor_init(lc);
  *lab = NULL;
  if (s) return s;
  *lab = (int64_t *)malloc((size_t)(n ? n : 1) * sizeof **lab);
  if (!*lab) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  s = read_labels(labels, n, logits->shape[1], base, *lab, err);
  if (!s) s = contig(lc, logits, err);
  if (s) {
    free(*lab);
    *lab = NULL;
  }
  return s;
}

pbt_status pbt_cross_entropy(pbt_tensor *out, const pbt_tensor *logits,
                             const pbt_tensor *labels, int64_t base,
                             pbt_reduction red, pbt_error *err) {
  int64_t *lab, n = logits->ndim ? logits->shape[0] : 0;
  pbt_tensor lc;
  double total;
  pbt_status s = ce_prepare(logits, labels, base, &lab, &lc, err);
  if (s) return s;
  s = reduced_out(out, logits->dtype, red, 1, &n, err);
  if (!s) {
    void *o = red == PBT_REDUCTION_NONE ? pbt_tensor_data(out) : NULL;
    if (logits->dtype == PBT_FLOAT32)
      total = cross_entropy_f32(n, logits->shape[1], cdata(&lc), lab, o);
    else
      total = cross_entropy_f64(n, logits->shape[1], cdata(&lc), lab, o);
    if (red == PBT_REDUCTION_MEAN) total /= (double)n;
    if (red != PBT_REDUCTION_NONE) pbt_fill_(out, total);
  }
  free(lab);
  pbt_tensor_release(&lc);
  return s;
}

pbt_status pbt_cross_entropy_backward(pbt_tensor *glogits, const pbt_tensor *g,
                                      const pbt_tensor *logits,
                                      const pbt_tensor *labels, int64_t base,
                                      pbt_reduction red, pbt_error *err) {
  int64_t *lab, n = logits->ndim ? logits->shape[0] : 0;
  pbt_tensor lc;
  double *scale;
  int64_t i;
  pbt_status s = ce_check(logits, labels, err);
  if (!s) s = check_loss_grad(g, red, 1, &n, err);
  if (s) return s;
  scale = (double *)malloc((size_t)(n ? n : 1) * sizeof *scale);
  if (!scale) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  for (i = 0; i < n; i++) scale[i] = loss_scale(g, red, n, i);
  s = ce_prepare(logits, labels, base, &lab, &lc, err);
  if (!s) {
    s = new_like(glogits, logits, err);
    if (!s) {
      if (logits->dtype == PBT_FLOAT32)
        cross_entropy_backward_f32(n, logits->shape[1], cdata(&lc), lab, scale,
                                   pbt_tensor_data(glogits));
      else
        cross_entropy_backward_f64(n, logits->shape[1], cdata(&lc), lab, scale,
                                   pbt_tensor_data(glogits));
    }
    free(lab);
    pbt_tensor_release(&lc);
  }
  free(scale);
  return s;
}

/* ---- binary cross-entropy with logits ------------------------------------------ */

static pbt_status bce_check(const pbt_tensor *x, const pbt_tensor *t,
                            pbt_error *err) {
  char sa[96], sb[96];
  pbt_status s = same_dtype(x, t, err);
  if (s) return s;
  if (pbt_shape_equal(x->ndim, x->shape, t->ndim, t->shape)) return PBT_OK;
  shape_str(sa, sizeof sa, t);
  shape_str(sb, sizeof sb, x);
  return pbt_fail(err, PBT_ERR_SHAPE, "targets of shape %s do not fit logits of shape %s", sa,
                  sb);
}

pbt_status pbt_bce_with_logits(pbt_tensor *out, const pbt_tensor *x,
                               const pbt_tensor *t, pbt_reduction red,
                               pbt_error *err) {
  pbt_tensor xc, tc;
  int64_t n = pbt_tensor_numel(x);
  double total;
  pbt_status s = bce_check(x, t, err);
  if (s) return s;
  pbt_tensor_init(&tc);
  s = contig(&xc, x, err);
  if (!s) s = contig(&tc, t, err);
  if (!s) s = reduced_out(out, x->dtype, red, x->ndim, x->shape, err);
  if (!s) {
    void *o = red == PBT_REDUCTION_NONE ? pbt_tensor_data(out) : NULL;
    if (x->dtype == PBT_FLOAT32) total = bce_f32(n, cdata(&xc), cdata(&tc), o);
    else total = bce_f64(n, cdata(&xc), cdata(&tc), o);
    if (red == PBT_REDUCTION_MEAN) total /= (double)n;
    if (red != PBT_REDUCTION_NONE) pbt_fill_(out, total);
  }
  release_all(&xc, &tc, NULL);
  return s;
}

pbt_status pbt_bce_with_logits_backward(pbt_tensor *gx, pbt_tensor *gt,
                                        const pbt_tensor *g,
                                        const pbt_tensor *x,
                                        const pbt_tensor *t, pbt_reduction red,
                                        pbt_error *err) {
  pbt_tensor xc, tc, gc;
  int64_t n = pbt_tensor_numel(x);
  double scale = 0;
  pbt_status s = bce_check(x, t, err);
  if (!s) s = same_dtype(x, g, err);
  if (!s) s = check_loss_grad(g, red, x->ndim, x->shape, err);
  if (s) return s;
  if (red != PBT_REDUCTION_NONE) scale = loss_scale(g, red, n, 0);
  pbt_tensor_init(&tc), pbt_tensor_init(&gc);
  s = contig(&xc, x, err);
  if (!s) s = contig(&tc, t, err);
  if (!s && red == PBT_REDUCTION_NONE) s = contig(&gc, g, err);
  if (!s && gx) s = new_like(gx, x, err);
  if (!s && gt) s = new_like(gt, x, err);
  if (!s) {
    if (x->dtype == PBT_FLOAT32)
      bce_backward_f32(n, cdata(&xc), cdata(&tc), cdata(&gc), scale,
                       gx ? pbt_tensor_data(gx) : NULL, gt ? pbt_tensor_data(gt) : NULL);
    else
      bce_backward_f64(n, cdata(&xc), cdata(&tc), cdata(&gc), scale,
                       gx ? pbt_tensor_data(gx) : NULL, gt ? pbt_tensor_data(gt) : NULL);
  } else {
    release_all(gx, gt, NULL);
  }
  release_all(&xc, &tc, &gc);
  return s;
}

/* ---- GELU ------------------------------------------------------------------------ */

pbt_status pbt_gelu(pbt_tensor *out, const pbt_tensor *x, pbt_error *err) {
  pbt_tensor xc;
  pbt_status s = contig(&xc, x, err);
  if (!s) s = new_like(out, x, err);
  if (!s) {
    if (x->dtype == PBT_FLOAT32)
      gelu_f32(pbt_tensor_numel(x), cdata(&xc), pbt_tensor_data(out));
    else
      gelu_f64(pbt_tensor_numel(x), cdata(&xc), pbt_tensor_data(out));
  }
  pbt_tensor_release(&xc);
  return s;
}

/* gx = the gradient of an elementwise activation (0: GELU, 1: ReLU) from g
 * and its input x. */
static pbt_status act_backward(pbt_tensor *gx, const pbt_tensor *g,
                               const pbt_tensor *x, int relu, pbt_error *err) {
  char sa[96], sb[96];
  pbt_tensor xc, gc;
  int64_t n = pbt_tensor_numel(x);
  pbt_status s = same_dtype(x, g, err);
  if (s) return s;
  if (!pbt_shape_equal(g->ndim, g->shape, x->ndim, x->shape)) {
    shape_str(sa, sizeof sa, g);
    shape_str(sb, sizeof sb, x);
    return pbt_fail(err, PBT_ERR_SHAPE, "gradient of shape %s, expected %s", sa, sb);
  }
  pbt_tensor_init(&gc);
  s = contig(&xc, x, err);
  if (!s) s = contig(&gc, g, err);
  if (!s) s = new_like(gx, x, err);
  if (!s) {
    void *o = pbt_tensor_data(gx);
    if (x->dtype == PBT_FLOAT32) {
      if (relu) relu_backward_f32(n, cdata(&gc), cdata(&xc), o);
      else gelu_backward_f32(n, cdata(&gc), cdata(&xc), o);
    } else {
      if (relu) relu_backward_f64(n, cdata(&gc), cdata(&xc), o);
      else gelu_backward_f64(n, cdata(&gc), cdata(&xc), o);
    }
  }
  release_all(&xc, &gc, NULL);
  return s;
}

pbt_status pbt_gelu_backward(pbt_tensor *gx, const pbt_tensor *g,
                             const pbt_tensor *x, pbt_error *err) {
  return act_backward(gx, g, x, 0, err);
}

pbt_status pbt_relu_backward(pbt_tensor *gx, const pbt_tensor *g,
                             const pbt_tensor *x, pbt_error *err) {
  return act_backward(gx, g, x, 1, err);
}

/* ---- layer norm ---------------------------------------------------------------- */

static pbt_status ln_param_check(const pbt_tensor *p, const char *what,
                                 int nnorm, const int64_t *nshape, int64_t n,
                                 pbt_error *err) {
  char sa[96], sb[96];
  if (!p || pbt_tensor_numel(p) == n) return PBT_OK;
  shape_str(sa, sizeof sa, p);
  pbt_format_shape(sb, sizeof sb, nnorm, nshape);
  return pbt_fail(err, PBT_ERR_SHAPE, "%s of shape %s does not fit normalized shape %s", what,
                  sa, sb);
}

pbt_status pbt_layer_norm(pbt_tensor *out, pbt_tensor *mean, pbt_tensor *rstd,
                          const pbt_tensor *x, int nnorm, const int64_t *nshape,
                          const pbt_tensor *w, const pbt_tensor *b, double eps,
                          pbt_error *err) {
  char sa[96], sb[96];
  int64_t n = 1, m;
  int i;
  pbt_tensor xc, wc, bc, mt, rt;
  pbt_status s = same_dtype(x, w, err);
  if (!s) s = same_dtype(x, b, err);
  if (s) return s;
  for (i = 0; i < nnorm; i++) n *= nshape[i];
  if (nnorm < 1 || nnorm > x->ndim ||
      !pbt_shape_equal(nnorm, x->shape + x->ndim - nnorm, nnorm, nshape)) {
    pbt_format_shape(sa, sizeof sa, nnorm, nshape);
    shape_str(sb, sizeof sb, x);
    return pbt_fail(err, PBT_ERR_SHAPE, "normalized shape %s does not fit input of shape %s",
                    sa, sb);
  }
  s = ln_param_check(w, "weight", nnorm, nshape, n, err);
  if (!s) s = ln_param_check(b, "bias", nnorm, nshape, n, err);
  if (s) return s;
  m = n ? pbt_tensor_numel(x) / n : 0;
  pbt_tensor_init(&wc), pbt_tensor_init(&bc), pbt_tensor_init(&mt), pbt_tensor_init(&rt);
  s = contig(&xc, x, err);
  if (!s) s = contig(&wc, w, err);
  if (!s) s = contig(&bc, b, err);
  if (!s) s = new_like(out, x, err);
  if (!s) s = pbt_tensor_empty(mean ? mean : &mt, x->dtype, 1, &m, err);
  if (!s) s = pbt_tensor_empty(rstd ? rstd : &rt, x->dtype, 1, &m, err);
  if (!s) {
    void *mp = pbt_tensor_data(mean ? mean : &mt), *rp = pbt_tensor_data(rstd ? rstd : &rt);
    if (x->dtype == PBT_FLOAT32)
      layer_norm_f32(m, n, cdata(&xc), cdata(&wc), cdata(&bc), eps, pbt_tensor_data(out), mp,
                     rp);
    else
      layer_norm_f64(m, n, cdata(&xc), cdata(&wc), cdata(&bc), eps, pbt_tensor_data(out), mp,
                     rp);
  } else {
    release_all(out, mean, rstd);
  }
  release_all(&xc, &wc, &bc);
  release_all(&mt, &rt, NULL);
  return s;
}

pbt_status pbt_layer_norm_backward(pbt_tensor *gx, pbt_tensor *gw,
                                   pbt_tensor *gb, const pbt_tensor *g,
                                   const pbt_tensor *x, const pbt_tensor *w,
                                   const pbt_tensor *mean,
                                   const pbt_tensor *rstd, pbt_error *err) {
  char sa[96], sb[96];
  int64_t m = pbt_tensor_numel(mean), n;
  pbt_tensor xc, wc, gc, mc, rc;
  double *acc = NULL;
  pbt_status s = same_dtype(x, g, err);
  if (!s) s = same_dtype(x, w, err);
  if (!s) s = same_dtype(x, mean, err);
  if (!s) s = same_dtype(x, rstd, err);
  if (s) return s;
  if (!pbt_shape_equal(g->ndim, g->shape, x->ndim, x->shape) ||
      pbt_tensor_numel(rstd) != m || (m ? pbt_tensor_numel(x) % m : pbt_tensor_numel(x))) {
    shape_str(sa, sizeof sa, g);
    shape_str(sb, sizeof sb, x);
    return pbt_fail(err, PBT_ERR_SHAPE, "gradient of shape %s does not fit input of shape %s",
                    sa, sb);
  }
  n = m ? pbt_tensor_numel(x) / m : (w ? pbt_tensor_numel(w) : 0);
  if (w && pbt_tensor_numel(w) != n) {
    shape_str(sa, sizeof sa, w);
    return pbt_fail(err, PBT_ERR_SHAPE, "weight of shape %s does not fit rows of %lld elements",
                    sa, (long long)n);
  }
  if (!w) gw = NULL;
  pbt_tensor_init(&wc), pbt_tensor_init(&gc), pbt_tensor_init(&mc), pbt_tensor_init(&rc);
  s = contig(&xc, x, err);
  if (!s) s = contig(&wc, w, err);
  if (!s) s = contig(&gc, g, err);
  if (!s) s = contig(&mc, mean, err);
  if (!s) s = contig(&rc, rstd, err);
  if (!s && gx) s = new_like(gx, x, err);
  if (!s && gw) s = pbt_tensor_empty(gw, x->dtype, w->ndim, w->shape, err);
  if (!s && gb) s = pbt_tensor_empty(gb, x->dtype, 1, &n, err);
  if (!s && (gw || gb)) {
    acc = (double *)calloc((size_t)(2 * n + 1), sizeof *acc);
    if (!acc) s = pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  if (!s) {
    if (x->dtype == PBT_FLOAT32)
      layer_norm_backward_f32(m, n, cdata(&gc), cdata(&xc), cdata(&wc), cdata(&mc), cdata(&rc),
                              gx ? pbt_tensor_data(gx) : NULL, gw ? pbt_tensor_data(gw) : NULL,
                              gb ? pbt_tensor_data(gb) : NULL, acc);
    else
      layer_norm_backward_f64(m, n, cdata(&gc), cdata(&xc), cdata(&wc), cdata(&mc), cdata(&rc),
                              gx ? pbt_tensor_data(gx) : NULL, gw ? pbt_tensor_data(gw) : NULL,
                              gb ? pbt_tensor_data(gb) : NULL, acc);
  } else {
    release_all(gx, gw, gb);
  }
  free(acc);
  release_all(&xc, &wc, &gc);
  release_all(&mc, &rc, NULL);
  return s;
}

/* ---- dropout ------------------------------------------------------------------- */

pbt_status pbt_dropout(pbt_tensor *out, pbt_tensor *mask, const pbt_tensor *x,
                       double p, pbt_generator *gen, pbt_error *err) {
  pbt_tensor xc;
  pbt_status s;
  if (!(p >= 0 && p <= 1))
    return pbt_fail(err, PBT_ERR_ARG, "probability %g out of range [0, 1]", p);
  s = contig(&xc, x, err);
  if (!s) s = new_like(out, x, err);
  if (!s) {
    s = new_like(mask, x, err);
    if (s) pbt_tensor_release(out);
  }
  if (!s) {
    if (x->dtype == PBT_FLOAT32)
      dropout_f32(pbt_tensor_numel(x), cdata(&xc), p, gen, pbt_tensor_data(out),
                  pbt_tensor_data(mask));
    else
      dropout_f64(pbt_tensor_numel(x), cdata(&xc), p, gen, pbt_tensor_data(out),
                  pbt_tensor_data(mask));
  }
  pbt_tensor_release(&xc);
  return s;
}

#else /* PBT_NN_GENERIC: the kernels for one dtype ------------------------------- */

static void S(gemm)(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int64_t m,
                    int64_t n, int64_t k, const real *a, int64_t lda,
                    const real *b, int64_t ldb, real beta, real *c,
                    int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (sizeof(real) == sizeof(float))
    cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0f, (const float *)a,
                (int)(lda ? lda : 1), (const float *)b, (int)(ldb ? ldb : 1), (float)beta,
                (float *)c, (int)(ldc ? ldc : 1));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0, (const double *)a,
                (int)(lda ? lda : 1), (const double *)b, (int)(ldb ? ldb : 1), (double)beta,
                (double *)c, (int)(ldc ? ldc : 1));
}

/* The range [lo, hi) of output positions o whose input o*s - p + k lies
 * in [0, size). */
static void S(valid_range)(int64_t outn, int64_t s, int64_t p, int64_t k,
                           int64_t size, int64_t *lo, int64_t *hi) {
  int64_t a = p - k, b = size + p - k; /* o*s in [a, b) */
  *lo = a <= 0 ? 0 : (a + s - 1) / s;
  *hi = b <= 0 ? 0 : (b + s - 1) / s;
  if (*hi > outn) *hi = outn;
  if (*lo > *hi) *lo = *hi;
}

/* cols [C*kh*kw, OH*OW] of one image x [C,H,W]. */
static void S(im2col)(const conv_geom *g, const real *x, real *cols) {
  int64_t c, ki, kj, oh, ow, ohw = g->oh * g->ow;
  for (c = 0; c < g->c; c++)
    for (ki = 0; ki < g->kh; ki++)
      for (kj = 0; kj < g->kw; kj++) {
        real *row = cols + ((c * g->kh + ki) * g->kw + kj) * ohw;
        const real *xc = x + c * g->h * g->w;
        int64_t wlo, whi;
        S(valid_range)(g->ow, g->sw, g->pw, kj, g->w, &wlo, &whi);
        for (oh = 0; oh < g->oh; oh++) {
          int64_t ih = oh * g->sh - g->ph + ki;
          real *r = row + oh * g->ow;
          if (ih < 0 || ih >= g->h) {
            memset(r, 0, (size_t)g->ow * sizeof *r);
            continue;
          }
          for (ow = 0; ow < wlo; ow++) r[ow] = 0;
          if (g->sw == 1) {
            memcpy(r + wlo, xc + ih * g->w + wlo - g->pw + kj,
                   (size_t)(whi - wlo) * sizeof *r);
          } else {
            int64_t at = ih * g->w - g->pw + kj;
            for (ow = wlo; ow < whi; ow++) r[ow] = xc[at + ow * g->sw];
          }
          for (ow = whi; ow < g->ow; ow++) r[ow] = 0;
        }
      }
}

/* gx [C,H,W] += the columns cols put back where im2col took them. */
static void S(col2im)(const conv_geom *g, const real *cols, real *gx) {
  int64_t c, ki, kj, oh, ow, ohw = g->oh * g->ow;
  for (c = 0; c < g->c; c++)
    for (ki = 0; ki < g->kh; ki++)
      for (kj = 0; kj < g->kw; kj++) {
        const real *row = cols + ((c * g->kh + ki) * g->kw + kj) * ohw;
        real *gc = gx + c * g->h * g->w;
        int64_t wlo, whi;
        S(valid_range)(g->ow, g->sw, g->pw, kj, g->w, &wlo, &whi);
        for (oh = 0; oh < g->oh; oh++) {
          int64_t ih = oh * g->sh - g->ph + ki;
          const real *r = row + oh * g->ow;
          int64_t at = ih * g->w - g->pw + kj;
          if (ih < 0 || ih >= g->h) continue;
          if (g->sw == 1)
            for (ow = wlo; ow < whi; ow++) gc[at + ow] += r[ow];
          else
            for (ow = wlo; ow < whi; ow++) gc[at + ow * g->sw] += r[ow];
        }
      }
}

/* The sum of x[0..n) in double, in 8 interleaved partial sums (no chain of
 * dependent additions; vectorised). */
static NN_CLONES double S(row_sum)(int64_t n, const real *x) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t = 0;
  int64_t i, k;
  for (i = 0; i + 8 <= n; i += 8)
    for (k = 0; k < 8; k++) a[k] += (double)x[i + k];
  for (; i < n; i++) t += (double)x[i];
  return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + t;
}

static void S(conv_forward)(const conv_geom *g, const real *x, const real *w,
                            const real *b, real *out, real *cols) {
  int64_t n, o, i, ohw = g->oh * g->ow, ckk = g->c * g->kh * g->kw;
  for (n = 0; n < g->n; n++) {
    const real *xn = x + n * g->c * g->h * g->w;
    real *on = out + n * g->o * ohw;
    if (!g->direct) S(im2col)(g, xn, cols);
    if (b)
      for (o = 0; o < g->o; o++)
        for (i = 0; i < ohw; i++) on[o * ohw + i] = b[o];
    S(gemm)(CblasNoTrans, CblasNoTrans, g->o, ohw, ckk, w, ckk, g->direct ? xn : cols, ohw,
            b ? 1 : 0, on, ohw);
  }
}

static void S(conv_backward)(const conv_geom *g, const real *gout,
                             const real *x, const real *w, real *gx, real *gw,
                             real *gb, double *acc, real *cols) {
  int64_t n, o, ohw = g->oh * g->ow, ckk = g->c * g->kh * g->kw;
  int64_t chw = g->c * g->h * g->w;
  for (n = 0; n < g->n; n++) {
    const real *gn = gout + n * g->o * ohw, *xn = x + n * chw;
    if (gb)
      for (o = 0; o < g->o; o++) acc[o] += S(row_sum)(ohw, gn + o * ohw);
    if (gw) {
      if (!g->direct) S(im2col)(g, xn, cols);
      S(gemm)(CblasNoTrans, CblasTrans, g->o, ckk, ohw, gn, ohw, g->direct ? xn : cols, ohw,
              n ? 1 : 0, gw, ckk);
    }
    if (gx) {
      if (g->direct) {
        S(gemm)(CblasTrans, CblasNoTrans, ckk, ohw, g->o, w, ckk, gn, ohw, 0, gx + n * chw,
                ohw);
      } else {
        S(gemm)(CblasTrans, CblasNoTrans, ckk, ohw, g->o, w, ckk, gn, ohw, 0, cols, ohw);
        memset(gx + n * chw, 0, (size_t)chw * sizeof *gx);
        S(col2im)(g, cols, gx + n * chw);
      }
    }
  }
  if (gw && g->n == 0) memset(gw, 0, (size_t)(g->o * ckk) * sizeof *gw);
  if (gb)
    for (o = 0; o < g->o; o++) gb[o] = (real)acc[o];
}

/* One output row at a time: for each window offset, a pass over the row's
 * outputs (independent iterations, branch-free: no dependency chain through
 * the running maximum and no mispredicted data-dependent branches).  Within
 * a window the positions are visited in row-major order, so the first
 * maximum wins.  A row that saw a NaN is done again the slow way (the first
 * NaN of a window wins).  bi: OW scratch positions. */
static void S(max_pool)(const pool_geom *g, const real *x, real *out,
                        void *idx, int idx_f64, int64_t base, int64_t *bi) {
  int64_t p, oh, ow, h, kj, hw = g->h * g->w, k = 0;
  for (p = 0; p < g->planes; p++) {
    const real *xp = x + p * hw;
    for (oh = 0; oh < g->oh; oh++, k += g->ow) {
      int64_t h0 = oh * g->sh - g->ph, h1 = h0 + g->kh;
      real *o = out + k;
      int nan = 0;
      if (h0 < 0) h0 = 0;
      if (h1 > g->h) h1 = g->h;
      for (ow = 0; ow < g->ow; ow++) {
        int64_t w0 = ow * g->sw - g->pw;
        o[ow] = -(real)INFINITY;
        bi[ow] = h0 * g->w + (w0 < 0 ? 0 : w0);
      }
      for (h = h0; h < h1; h++)
        for (kj = 0; kj < g->kw; kj++) {
          int64_t lo, hi, at = h * g->w - g->pw + kj;
          S(valid_range)(g->ow, g->sw, g->pw, kj, g->w, &lo, &hi);
          for (ow = lo; ow < hi; ow++) {
            int64_t pos = at + ow * g->sw;
            real v = xp[pos], best = o[ow];
            int64_t m = -(int64_t)(v > best);
            nan |= v != v;
            o[ow] = v > best ? v : best;
            bi[ow] = (pos & m) | (bi[ow] & ~m);
          }
        }
      if (nan) /* again, letting the first NaN of each window win */
        for (ow = 0; ow < g->ow; ow++) {
          int64_t w0 = ow * g->sw - g->pw, w1 = w0 + g->kw, w;
          real best = -(real)INFINITY;
          if (w0 < 0) w0 = 0;
          if (w1 > g->w) w1 = g->w;
          bi[ow] = h0 * g->w + w0;
          for (h = h0; h < h1; h++)
            for (w = w0; w < w1; w++) {
              real v = xp[h * g->w + w];
              if (v > best || (v != v && best == best)) best = v, bi[ow] = h * g->w + w;
            }
          o[ow] = best;
        }
      if (idx) {
        if (idx_f64)
          for (ow = 0; ow < g->ow; ow++) ((double *)idx)[k + ow] = (double)(bi[ow] + base);
        else
          for (ow = 0; ow < g->ow; ow++) ((float *)idx)[k + ow] = (float)(bi[ow] + base);
      }
    }
  }
}

/* The common 2x2 pooling with stride 2 and no padding: the windows tile the
 * plane.  One output row: r0 and r1 the two input rows, start the position
 * of r0[0] (exact in real: below 2^24 for float); branch-free, vectorised.
 * The first maximum of each window wins; returns nonzero when the rows hold
 * a NaN (then the row must be done again by pool2x2_nan). */
static NN_CLONES int S(pool2x2_row)(int n, const real *restrict r0,
                                    const real *restrict r1, real *restrict o,
                                    real *restrict id, real start, real rw) {
  int j, nan = 0;
  for (j = 0; j < n; j++) {
    real a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
    real h0 = b > a ? b : a, h1 = d > c ? d : c;
    real f0 = b > a ? 1 : 0, f1 = d > c ? rw + 1 : rw;
    o[j] = h1 > h0 ? h1 : h0;
    id[j] = start + (real)(2 * j) + (h1 > h0 ? f1 : f0);
    nan |= (a != a) | (b != b) | (c != c) | (d != d);
  }
  return nan;
}

/* The same, letting the first NaN of a window win. */
static void S(pool2x2_nan)(int n, const real *r0, const real *r1, real *o,
                           real *id, real start, real rw) {
  int j, k;
  for (j = 0; j < n; j++) {
    real v[4], best, off[4];
    v[0] = r0[2 * j], v[1] = r0[2 * j + 1], v[2] = r1[2 * j], v[3] = r1[2 * j + 1];
    off[0] = 0, off[1] = 1, off[2] = rw, off[3] = rw + 1;
    best = v[0], id[j] = start + (real)(2 * j);
    for (k = 1; k < 4; k++)
      if (v[k] > best || (v[k] != v[k] && best == best))
        best = v[k], id[j] = start + (real)(2 * j) + off[k];
    o[j] = best;
  }
}

/* idx: the positions in the element type; scratch (g->ow elements) takes
 * them when idx is NULL.  g->ow < 2^30. */
static void S(max_pool_2x2)(const pool_geom *g, const real *x, real *out,
                            real *idx, int64_t base, real *scratch) {
  int64_t p, oh, w = g->w, k = 0;
  for (p = 0; p < g->planes; p++)
    for (oh = 0; oh < g->oh; oh++, k += g->ow) {
      const real *r0 = x + p * g->h * w + 2 * oh * w;
      real *id = idx ? idx + k : scratch, start = (real)(base + 2 * oh * w);
      int nan;
#if IS_F32 && defined(NN_VEC)
      if (g->ow >= 8)
        nan = pool2x2_vec8((int)g->ow, r0, r0 + w, out + k, id, start, (real)w);
      else if (g->ow >= 4)
        nan = pool2x2_vec4((int)g->ow, r0, r0 + w, out + k, id, start, (real)w);
      else
#endif
        nan = S(pool2x2_row)((int)g->ow, r0, r0 + w, out + k, id, start, (real)w);
      if (nan) S(pool2x2_nan)((int)g->ow, r0, r0 + w, out + k, id, start, (real)w);
    }
}

/* The backward of 2x2 windows that tile the plane (oh = h/2, ow = w/2):
 * returns 0 (gx partly written) when an index is not in its window, and the
 * general scatter must be done instead.  Each gx element is 0 + g or 0, as
 * the scatter into zeros gives. */
static NN_CLONES int S(unpool2x2_row)(int n, const real *restrict g,
                                      const real *restrict id, real *restrict r0,
                                      real *restrict r1, real start, real rw) {
  int j;
  int bad = 0;
  for (j = 0; j < n; j++) {
    real d = id[j] - (start + (real)(2 * j)), v = g[j] + (real)0;
    r0[2 * j] = d == 0 ? v : 0;
    r0[2 * j + 1] = d == 1 ? v : 0;
    r1[2 * j] = d == rw ? v : 0;
    r1[2 * j + 1] = d == rw + 1 ? v : 0;
    bad |= (d != 0) & (d != 1) & (d != rw) & (d != rw + 1);
  }
  return bad;
}

static int S(max_pool_backward_2x2)(int64_t planes, int64_t h, int64_t w,
                                    const real *g, const real *idx,
                                    int64_t base, real *gx) {
  int64_t p, oh, i, ohn = h / 2, own = w / 2, k = 0;
  int bad = 0;
  for (p = 0; p < planes && !bad; p++) {
    real *gp = gx + p * h * w;
    for (oh = 0; oh < ohn; oh++, k += own) {
      real *r0 = gp + 2 * oh * w, start = (real)(base + 2 * oh * w);
#if IS_F32 && defined(NN_VEC)
      if (own >= 8)
        bad |= unpool2x2_vec8((int)own, g + k, idx + k, r0, r0 + w, start, (real)w);
      else if (own >= 4)
        bad |= unpool2x2_vec4((int)own, g + k, idx + k, r0, r0 + w, start, (real)w);
      else
#endif
        bad |= S(unpool2x2_row)((int)own, g + k, idx + k, r0, r0 + w, start, (real)w);
      if (w & 1) r0[w - 1] = r0[2 * w - 1] = 0;
    }
    if (h & 1)
      for (i = 0; i < w; i++) gp[(h - 1) * w + i] = 0;
  }
  return !bad;
}

static pbt_status S(max_pool_backward)(int64_t planes, int64_t plane, int64_t n,
                                       const real *g, const void *idx,
                                       int idx_f64, int64_t base, real *gx,
                                       pbt_error *err) {
  int64_t p, i;
  memset(gx, 0, (size_t)(planes * plane) * sizeof *gx);
  for (p = 0; p < planes; p++)
    for (i = 0; i < n; i++) {
      int64_t k = p * n + i, iv;
      double v = idx_f64 ? ((const double *)idx)[k] : (double)((const float *)idx)[k];
      if (!(v >= (double)base && v < (double)(base + plane)) ||
          (double)(iv = (int64_t)v) != v)
        return pbt_fail(err, PBT_ERR_ARG, "index %g out of range for size %lld", v,
                        (long long)plane);
      gx[p * plane + iv - base] += g[k];
    }
  return PBT_OK;
}

/* Returns the sum of the losses; writes each into out when not NULL. */
static double S(cross_entropy)(int64_t n, int64_t k, const real *x,
                               const int64_t *lab, real *out) {
  int64_t i, j;
  double total = 0;
  for (i = 0; i < n; i++) {
    const real *r = x + i * k;
    real m = r[0];
    double s = 0, l;
    for (j = 1; j < k; j++) m = r[j] > m ? r[j] : m;
    for (j = 0; j < k; j++) s += m_exp(r[j] - m);
    l = (double)m + log(s) - (double)r[lab[i]];
    if (out) out[i] = (real)l;
    total += l;
  }
  return total;
}

static void S(cross_entropy_backward)(int64_t n, int64_t k, const real *x,
                                      const int64_t *lab, const double *scale,
                                      real *gx) {
  int64_t i, j;
  for (i = 0; i < n; i++) {
    const real *r = x + i * k;
    real *gr = gx + i * k, m = r[0], sc;
    double s = 0;
    for (j = 1; j < k; j++) m = r[j] > m ? r[j] : m;
    for (j = 0; j < k; j++) {
      gr[j] = m_exp(r[j] - m);
      s += gr[j];
    }
    sc = (real)(scale[i] / s);
    for (j = 0; j < k; j++) gr[j] *= sc;
    gr[lab[i]] -= (real)scale[i];
  }
}

static double S(bce)(int64_t n, const real *x, const real *t, real *out) {
  int64_t i;
  double total = 0;
  for (i = 0; i < n; i++) {
    real v = x[i];
    real l = (v > 0 ? v : 0) - v * t[i] + m_log1p(m_exp(-(v < 0 ? -v : v)));
    if (out) out[i] = l;
    total += l;
  }
  return total;
}

static void S(bce_backward)(int64_t n, const real *x, const real *t,
                            const real *g, double scale, real *gx, real *gt) {
  int64_t i;
  for (i = 0; i < n; i++) {
    real sc = g ? g[i] : (real)scale, v = x[i];
    real sig = v >= 0 ? 1 / (1 + m_exp(-v)) : m_exp(v) / (1 + m_exp(v));
    if (gx) gx[i] = sc * (sig - t[i]);
    if (gt) gt[i] = -sc * v;
  }
}

static void S(gelu)(int64_t n, const real *x, real *out) {
  int64_t i;
  for (i = 0; i < n; i++)
    out[i] = (real)0.5 * x[i] * m_erfc(x[i] * (real)-0.70710678118654752440);
}

static void S(gelu_backward)(int64_t n, const real *g, const real *x,
                             real *gx) {
  int64_t i;
  for (i = 0; i < n; i++) {
    real v = x[i];
    real cdf = (real)0.5 * m_erfc(v * (real)-0.70710678118654752440);
    real pdf = (real)0.39894228040143267794 * m_exp((real)-0.5 * v * v);
    gx[i] = g[i] * (cdf + v * pdf);
  }
}

/* g * (x > 0), the product rounded as g times a 0/1 mask would be (NaN
 * where g is NaN or infinite and x <= 0). */
static NN_CLONES void S(relu_backward)(int64_t n, const real *restrict g,
                                       const real *restrict x, real *restrict gx) {
  int64_t i;
  for (i = 0; i < n; i++) gx[i] = g[i] * (x[i] > 0 ? (real)1 : (real)0);
}

static void S(layer_norm)(int64_t m, int64_t n, const real *x, const real *w,
                          const real *b, double eps, real *out, real *mean,
                          real *rstd) {
  int64_t i, j;
  for (i = 0; i < m; i++) {
    const real *r = x + i * n;
    real *o = out + i * n;
    double mu = 0, var = 0, rs;
    for (j = 0; j < n; j++) mu += r[j];
    mu /= (double)n;
    for (j = 0; j < n; j++) var += ((double)r[j] - mu) * ((double)r[j] - mu);
    var /= (double)n;
    rs = 1 / sqrt(var + eps);
    mean[i] = (real)mu, rstd[i] = (real)rs;
    for (j = 0; j < n; j++) {
      real y = (real)(((double)r[j] - mu) * rs);
      if (w) y *= w[j];
      if (b) y += b[j];
      o[j] = y;
    }
  }
}

/* acc holds 2n + 1 zeroed doubles when gw or gb is wanted. */
static void S(layer_norm_backward)(int64_t m, int64_t n, const real *g,
                                   const real *x, const real *w,
                                   const real *mean, const real *rstd, real *gx,
                                   real *gw, real *gb, double *acc) {
  int64_t i, j;
  for (i = 0; i < m; i++) {
    const real *r = x + i * n, *gr = g + i * n;
    double mu = mean[i], rs = rstd[i], s1 = 0, s2 = 0;
    for (j = 0; j < n; j++) {
      double xh = ((double)r[j] - mu) * rs;
      double gh = (double)gr[j] * (w ? (double)w[j] : 1.0);
      s1 += gh, s2 += gh * xh;
      if (acc) acc[j] += (double)gr[j] * xh, acc[n + j] += gr[j];
    }
    if (gx) {
      real *o = gx + i * n;
      s1 /= (double)n, s2 /= (double)n;
      for (j = 0; j < n; j++) {
        double xh = ((double)r[j] - mu) * rs;
        double gh = (double)gr[j] * (w ? (double)w[j] : 1.0);
        o[j] = (real)(rs * (gh - s1 - xh * s2));
      }
    }
  }
  for (j = 0; j < n; j++) {
    if (gw) gw[j] = (real)acc[j];
    if (gb) gb[j] = (real)acc[n + j];
  }
}

static void S(dropout)(int64_t n, const real *x, double p, pbt_generator *gen,
                       real *out, real *mask) {
  int64_t i;
  real keep = p < 1 ? (real)(1 / (1 - p)) : 0;
  for (i = 0; i < n; i++) {
    real mk = pbt_generator_uniform(gen) >= p ? keep : 0;
    mask[i] = mk;
    out[i] = x[i] * mk;
  }
}

#endif /* PBT_NN_GENERIC */
