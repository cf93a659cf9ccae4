/* pbt_nn_internal.h -- what the network kernels' files (pbt_nn.c,
 * pbt_conv.c, pbt_pool.c, pbt_loss.c) share: argument and output helpers
 * and the per-dtype instantiation (pbt_nn_instantiate.h).  Internal: not
 * installed with the public headers. */
#ifndef PBT_NN_INTERNAL_H
#define PBT_NN_INTERNAL_H

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbt_nn.h"
#include "pbt_ops.h"

static inline pbt_status same_dtype(const pbt_tensor *a, const pbt_tensor *b,
                             pbt_error *err) {
  if (!b || a->dtype == b->dtype) return PBT_OK;
  return pbt_fail(err, PBT_ERR_DTYPE, "dtypes %s and %s do not match",
                  pbt_dtype_name(a->dtype), pbt_dtype_name(b->dtype));
}

static inline void shape_str(char *buf, size_t n, const pbt_tensor *t) {
  pbt_format_shape(buf, n, t->ndim, t->shape);
}

/* tmp = a contiguous version of src (shares src when it is contiguous).
 * tmp must be released; release it afterwards in any case. */
static inline pbt_status contig(pbt_tensor *tmp, const pbt_tensor *src,
                         pbt_error *err) {
  pbt_tensor_init(tmp);
  return src ? pbt_contiguous(tmp, src, err) : PBT_OK;
}

static inline const void *cdata(const pbt_tensor *t) {
  return t && t->storage ? pbt_tensor_data(t) : NULL;
}

static inline int fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

static inline pbt_status too_big(pbt_error *err) {
  return pbt_fail(err, PBT_ERR_ARG, "sizes too large for BLAS (more than %d)", INT_MAX);
}

static inline pbt_status new_like(pbt_tensor *dst, const pbt_tensor *like,
                           pbt_error *err) {
  return pbt_tensor_empty(dst, like->dtype, like->ndim, like->shape, err);
}

static inline void release_all(pbt_tensor *a, pbt_tensor *b, pbt_tensor *c) {
  if (a) pbt_tensor_release(a);
  if (b) pbt_tensor_release(b);
  if (c) pbt_tensor_release(c);
}

/* Reads the 1-d labels (any dtype and stride) as 0-based classes into lab,
 * checking each. */
static inline pbt_status read_labels(const pbt_tensor *labels, int64_t n, int64_t k,
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

static inline pbt_status reduced_out(pbt_tensor *out, pbt_dtype dt, pbt_reduction red,
                              int ndim, const int64_t *shape, pbt_error *err) {
  int64_t none = 0; /* a 0-d tensor: no sizes, but a valid pointer */
  if (red == PBT_REDUCTION_NONE) return pbt_tensor_empty(out, dt, ndim, shape, err);
  return pbt_tensor_empty(out, dt, 0, &none, err);
}

/* The scale of loss element i's gradient, given the loss's gradient g. */
static inline double loss_scale(const pbt_tensor *g, pbt_reduction red, int64_t n,
                         int64_t i) {
  if (red == PBT_REDUCTION_NONE) return pbt_tensor_get_flat(g, i);
  if (red == PBT_REDUCTION_MEAN) return pbt_tensor_get_flat(g, 0) / (double)n;
  return pbt_tensor_get_flat(g, 0);
}

static inline pbt_status check_loss_grad(const pbt_tensor *g, pbt_reduction red,
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


/* The range [lo, hi) of output positions o whose input o*s - p + k lies
 * in [0, size). */
static inline void valid_range(int64_t outn, int64_t s, int64_t p, int64_t k,
                               int64_t size, int64_t *lo, int64_t *hi) {
  int64_t a = p - k, b = size + p - k; /* o*s in [a, b) */
  *lo = a <= 0 ? 0 : (a + s - 1) / s;
  *hi = b <= 0 ? 0 : (b + s - 1) / s;
  if (*hi > outn) *hi = outn;
  if (*lo > *hi) *lo = *hi;
}

#endif
