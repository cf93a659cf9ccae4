/* pbt_index.c -- indexing kernels: index_select, gather, scatter_add_,
 * one_hot (see pbt_index.h). */
#include "pbt_index.h"

#include <math.h>
#include <string.h>

/* ---- index values ----------------------------------------------------------- */

static double load_at(const pbt_tensor *t, const char *data, int64_t off) {
  if (t->dtype == PBT_FLOAT64) return ((const double *)data)[off];
  return ((const float *)data)[off];
}

/* Checks that every value of index is an integer in [base, base + size). */
static pbt_status check_indices(const pbt_tensor *index, int64_t base,
                                int64_t size, pbt_error *err) {
  const int64_t *strides[1];
  const char *data = pbt_tensor_data(index);
  const double lo = (double)base, hi = (double)base + (double)size;
  pbt_iter it;
  strides[0] = index->stride;
  if (!pbt_iter_init(&it, 1, index->ndim, index->shape, strides)) return PBT_OK;
  do {
    int64_t j;
    for (j = 0; j < it.n; j++) {
      double v = load_at(index, data, it.offset[0] + j * it.step[0]);
      if (v != floor(v)) return pbt_fail(err, PBT_ERR_ARG, "index %g is not an integer", v);
      if (v < lo || v >= hi) {
        if (fabs(v) < 1e15)
          return pbt_fail(err, PBT_ERR_ARG, "index %lld out of range for size %lld",
                          (long long)v, (long long)size);
        return pbt_fail(err, PBT_ERR_ARG, "index %g out of range for size %lld", v,
                        (long long)size);
      }
    }
  } while (pbt_iter_next(&it));
  return PBT_OK;
}

static pbt_status check_dim(int dim, int ndim, pbt_error *err) {
  if (dim < 0 || dim >= ndim)
    return pbt_fail(err, PBT_ERR_ARG, "dimension %d out of range for a %d-d tensor",
                    dim, ndim);
  return PBT_OK;
}

/* "index of shape [3,4] does not fit a <what> of shape [2,3]" */
static pbt_status misfit(const pbt_tensor *index, const char *what,
                         const pbt_tensor *t, pbt_error *err) {
  char si[96], st[96];
  pbt_format_shape(si, sizeof si, index->ndim, index->shape);
  pbt_format_shape(st, sizeof st, t->ndim, t->shape);
  return pbt_fail(err, PBT_ERR_SHAPE, "index of shape %s does not fit a %s of shape %s",
                  si, what, st);
}

/* ---- the output -------------------------------------------------------------- */

/* out, or a temporary that replaces out (other shape) or is copied into it
 * (out shares storage with an input). */
typedef struct outbuf {
  pbt_tensor *out, *dst, tmp;
  int mode, fresh;
} outbuf;

enum { OUT_DIRECT, OUT_MOVE, OUT_COPY };

static pbt_status out_open(outbuf *o, pbt_tensor *out, pbt_dtype dt, int nd,
                           const int64_t *shape, const pbt_tensor *in1,
                           const pbt_tensor *in2, pbt_error *err) {
  pbt_status s;
  pbt_tensor_init(&o->tmp);
  o->out = o->dst = out;
  o->mode = OUT_DIRECT, o->fresh = 0;
  if (!out->storage) {
    s = pbt_tensor_empty(out, dt, nd, shape, err);
    o->fresh = s == PBT_OK;
    return s;
  }
  if (out->dtype != dt)
    return pbt_fail(err, PBT_ERR_DTYPE, "out has dtype %s, expected %s",
                    pbt_dtype_name(out->dtype), pbt_dtype_name(dt));
  if (!pbt_shape_equal(out->ndim, out->shape, nd, shape)) o->mode = OUT_MOVE;
  else if (out->storage == in1->storage || out->storage == in2->storage)
    o->mode = OUT_COPY;
  else return PBT_OK;
  o->dst = &o->tmp;
  return pbt_tensor_empty(&o->tmp, dt, nd, shape, err);
}

static pbt_status out_close(outbuf *o, pbt_status s, pbt_error *err) {
  if (!s && o->mode == OUT_MOVE) {
    pbt_tensor_release(o->out);
    *o->out = o->tmp;
    pbt_tensor_init(&o->tmp);
  } else if (!s && o->mode == OUT_COPY) {
    s = pbt_copy_(o->out, &o->tmp, err);
  }
  pbt_tensor_release(&o->tmp);
  if (s && o->fresh) pbt_tensor_release(o->out);
  return s;
}

/* ---- kernels ---------------------------------------------------------------------- */

pbt_status pbt_index_select(pbt_tensor *out, const pbt_tensor *src, int dim,
                            const pbt_tensor *index, int64_t base,
                            pbt_error *err) {
  int64_t shape[PBT_MAX_DIM], sst[PBT_MAX_DIM], ost[PBT_MAX_DIM], i, n;
  const int64_t *strides[2];
  const char *idata;
  const size_t es = pbt_dtype_size(src->dtype);
  outbuf o;
  pbt_status s;
  int d, k;
  if ((s = check_dim(dim, src->ndim, err))) return s;
  if (index->ndim != 1) {
    char si[96];
    pbt_format_shape(si, sizeof si, index->ndim, index->shape);
    return pbt_fail(err, PBT_ERR_SHAPE, "index must be a 1-d tensor, got shape %s", si);
  }
  if ((s = check_indices(index, base, src->shape[dim], err))) return s;
  n = index->shape[0];
  memcpy(shape, src->shape, sizeof shape);
  shape[dim] = n;
  if ((s = out_open(&o, out, src->dtype, src->ndim, shape, src, index, err))) return s;
  /* the slice without dim, walked for each index */
  for (d = 0, k = 0; d < src->ndim; d++) {
    if (d == dim) continue;
    shape[k] = src->shape[d];
    sst[k] = src->stride[d];
    ost[k] = o.dst->stride[d];
    k++;
  }
  strides[0] = ost;
  strides[1] = sst;
  idata = pbt_tensor_data(index);
  for (i = 0; i < n; i++) {
    int64_t j = (int64_t)load_at(index, idata, i * index->stride[0]) - base;
    char *ob = (char *)pbt_tensor_data(o.dst) + (size_t)(i * o.dst->stride[dim]) * es;
    const char *sb = (const char *)pbt_tensor_data(src) + (size_t)(j * src->stride[dim]) * es;
    pbt_iter it;
    if (!pbt_iter_init(&it, 2, k, shape, strides)) break;
    do {
      int64_t q, so = it.step[0], si = it.step[1];
      if (es == sizeof(double)) {
        double *y = (double *)ob + it.offset[0];
        const double *x = (const double *)sb + it.offset[1];
        if (so == 1 && si == 1) memcpy(y, x, (size_t)it.n * es);
        else for (q = 0; q < it.n; q++) y[q * so] = x[q * si];
      } else {
        float *y = (float *)ob + it.offset[0];
        const float *x = (const float *)sb + it.offset[1];
        if (so == 1 && si == 1) memcpy(y, x, (size_t)it.n * es);
        else for (q = 0; q < it.n; q++) y[q * so] = x[q * si];
      }
    } while (pbt_iter_next(&it));
  }
  return out_close(&o, PBT_OK, err);
}

pbt_status pbt_gather(pbt_tensor *out, const pbt_tensor *src, int dim,
                      const pbt_tensor *index, int64_t base, pbt_error *err) {
  int64_t sst[PBT_MAX_DIM];
  const int64_t *strides[3];
  const char *idata, *sdata;
  char *odata;
  int64_t sd;
  outbuf o;
  pbt_iter it;
  pbt_status s;
  int d;
  if ((s = check_dim(dim, src->ndim, err))) return s;
  if (index->ndim != src->ndim) return misfit(index, "tensor", src, err);
  for (d = 0; d < src->ndim; d++)
    if (d != dim && index->shape[d] > src->shape[d])
      return misfit(index, "tensor", src, err);
  if ((s = check_indices(index, base, src->shape[dim], err))) return s;
  if ((s = out_open(&o, out, src->dtype, index->ndim, index->shape, src, index, err)))
    return s;
  memcpy(sst, src->stride, sizeof sst);
  sd = sst[dim];
  sst[dim] = 0;
  strides[0] = o.dst->stride;
  strides[1] = index->stride;
  strides[2] = sst;
  odata = pbt_tensor_data(o.dst);
  idata = pbt_tensor_data(index);
  sdata = pbt_tensor_data(src);
  if (pbt_iter_init(&it, 3, index->ndim, index->shape, strides)) do {
    int64_t q;
    for (q = 0; q < it.n; q++) {
      int64_t j = (int64_t)load_at(index, idata, it.offset[1] + q * it.step[1]) - base;
      int64_t so = it.offset[2] + q * it.step[2] + j * sd;
      int64_t oo = it.offset[0] + q * it.step[0];
      if (src->dtype == PBT_FLOAT64) ((double *)odata)[oo] = ((const double *)sdata)[so];
      else ((float *)odata)[oo] = ((const float *)sdata)[so];
    }
  } while (pbt_iter_next(&it));
  return out_close(&o, PBT_OK, err);
}

pbt_status pbt_scatter_add_(pbt_tensor *t, int dim, const pbt_tensor *index,
                            const pbt_tensor *src, int64_t base,
                            pbt_error *err) {
  int64_t tst[PBT_MAX_DIM];
  const int64_t *strides[3];
  const char *idata, *sdata;
  char *tdata;
  int64_t td;
  pbt_iter it;
  pbt_status s;
  int d;
  if (t->dtype != src->dtype)
    return pbt_fail(err, PBT_ERR_DTYPE, "dtypes %s and %s do not match",
                    pbt_dtype_name(t->dtype), pbt_dtype_name(src->dtype));
  if ((s = check_dim(dim, t->ndim, err))) return s;
  if (index->ndim != t->ndim) return misfit(index, "tensor", t, err);
  if (index->ndim != src->ndim) return misfit(index, "source", src, err);
  for (d = 0; d < t->ndim; d++) {
    if (d != dim && index->shape[d] > t->shape[d]) return misfit(index, "tensor", t, err);
    if (index->shape[d] > src->shape[d]) return misfit(index, "source", src, err);
  }
  if ((s = pbt_check_writable(t, err))) return s;
  if ((s = check_indices(index, base, t->shape[dim], err))) return s;
  /* an index or source that shares t's storage would change under the
   * writes (and an index could then point outside t): read copies */
  if (index->storage == t->storage || src->storage == t->storage) {
    pbt_tensor ci, cs;
    pbt_tensor_init(&ci);
    pbt_tensor_init(&cs);
    if (index->storage == t->storage) s = pbt_clone(&ci, index, err);
    else pbt_tensor_share(&ci, index);
    if (!s && src->storage == t->storage) s = pbt_clone(&cs, src, err);
    else if (!s) pbt_tensor_share(&cs, src);
    if (!s) s = pbt_scatter_add_(t, dim, &ci, &cs, base, err);
    pbt_tensor_release(&ci);
    pbt_tensor_release(&cs);
    return s;
  }
  memcpy(tst, t->stride, sizeof tst);
  td = tst[dim];
  tst[dim] = 0;
  strides[0] = tst;
  strides[1] = index->stride;
  strides[2] = src->stride;
  tdata = pbt_tensor_data(t);
  idata = pbt_tensor_data(index);
  sdata = pbt_tensor_data(src);
  if (pbt_iter_init(&it, 3, index->ndim, index->shape, strides)) do {
    int64_t q;
    for (q = 0; q < it.n; q++) {
      int64_t j = (int64_t)load_at(index, idata, it.offset[1] + q * it.step[1]) - base;
      int64_t to = it.offset[0] + q * it.step[0] + j * td;
      int64_t so = it.offset[2] + q * it.step[2];
      if (t->dtype == PBT_FLOAT64) ((double *)tdata)[to] += ((const double *)sdata)[so];
      else ((float *)tdata)[to] += ((const float *)sdata)[so];
    }
  } while (pbt_iter_next(&it));
  return PBT_OK;
}

pbt_status pbt_one_hot(pbt_tensor *out, const pbt_tensor *labels, int64_t n,
                       int64_t base, pbt_dtype dtype, pbt_error *err) {
  int64_t shape[PBT_MAX_DIM];
  const int64_t *strides[2];
  const char *ldata;
  char *odata;
  int64_t od;
  int nd = labels->ndim;
  outbuf o;
  pbt_iter it;
  pbt_status s;
  if (nd >= PBT_MAX_DIM)
    return pbt_fail(err, PBT_ERR_ARG, "%d dimensions (at most %d allowed)", nd + 1,
                    PBT_MAX_DIM);
  if (n < 0)
    return pbt_fail(err, PBT_ERR_ARG, "negative number of classes %lld", (long long)n);
  if ((s = check_indices(labels, base, n, err))) return s;
  memcpy(shape, labels->shape, sizeof(int64_t) * (size_t)nd);
  shape[nd] = n;
  if ((s = out_open(&o, out, dtype, nd + 1, shape, labels, labels, err))) return s;
  pbt_fill_(o.dst, 0);
  strides[0] = o.dst->stride;
  strides[1] = labels->stride;
  od = o.dst->stride[nd];
  odata = pbt_tensor_data(o.dst);
  ldata = pbt_tensor_data(labels);
  if (n > 0 && pbt_iter_init(&it, 2, nd, labels->shape, strides)) do {
    int64_t q;
    for (q = 0; q < it.n; q++) {
      int64_t j = (int64_t)load_at(labels, ldata, it.offset[1] + q * it.step[1]) - base;
      int64_t oo = it.offset[0] + q * it.step[0] + j * od;
      if (dtype == PBT_FLOAT64) ((double *)odata)[oo] = 1;
      else ((float *)odata)[oo] = 1;
    }
  } while (pbt_iter_next(&it));
  return out_close(&o, PBT_OK, err);
}
