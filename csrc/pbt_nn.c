/* pbt_nn.c -- the network kernels that have no file of their own (see
 * pbt_nn.h): linear layers (on pbt_addmm), GELU and ReLU's gradient, layer
 * norm, dropout; the kernels per dtype are in pbt_nn_impl.h.  The others:
 * pbt_conv.c (convolution), pbt_pool.c (max pooling), pbt_loss.c (losses);
 * what they share is in pbt_nn_internal.h. */
#include "pbt_vmath.h"

#include "pbt_linalg.h"
#include "pbt_ops.h"
#include "pbt_nn_internal.h"

#define PBT_NN_IMPL "pbt_nn_impl.h"
#include "pbt_nn_instantiate.h"

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
  if (b && b->stride[0] == 1) { /* every row of out starts as b (out is new: contiguous) */
    size_t bytes = (size_t)shape[1] * pbt_dtype_size(out->dtype);
    char *dst = (char *)pbt_tensor_data(out);
    const char *src = (const char *)pbt_tensor_data(b);
    int64_t r;
    for (r = 0; r < shape[0] && bytes; r++) memcpy(dst + (size_t)r * bytes, src, bytes);
  } else if (b) {
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

pbt_status pbt_linear_check_acc(const pbt_tensor *acc, int bias, const pbt_tensor *g,
                               const pbt_tensor *x, const pbt_tensor *w, pbt_error *err) {
  char sa[96];
  const char *what = bias ? "bias" : "weight";
  int nd = bias ? 1 : 2;
  if (!acc->storage)
    return pbt_fail(err, PBT_ERR_ARG, "the %s's gradient must be an existing tensor", what);
  if (acc->dtype != w->dtype)
    return pbt_fail(err, PBT_ERR_DTYPE, "the %s's gradient has dtype %s, expected %s", what,
                    pbt_dtype_name(acc->dtype), pbt_dtype_name(w->dtype));
  if (!pbt_shape_equal(acc->ndim, acc->shape, nd, w->shape)) {
    shape_str(sa, sizeof sa, acc);
    return bias ? pbt_fail(err, PBT_ERR_SHAPE, "the %s's gradient has shape %s, expected [%lld]",
                           what, sa, (long long)w->shape[0])
                : pbt_fail(err, PBT_ERR_SHAPE, "the %s's gradient has shape %s, expected "
                           "[%lld,%lld]", what, sa, (long long)w->shape[0],
                           (long long)w->shape[1]);
  }
  if (!pbt_tensor_is_contiguous(acc))
    return pbt_fail(err, PBT_ERR_ARG, "the %s's gradient must be contiguous", what);
  if (acc->storage == g->storage || acc->storage == x->storage || acc->storage == w->storage)
    return pbt_fail(err, PBT_ERR_ARG, "the %s's gradient shares storage with an input", what);
  return PBT_OK;
}

pbt_status pbt_linear_backward_acc(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                                   int acc, const pbt_tensor *g, const pbt_tensor *x,
                                   const pbt_tensor *w, pbt_error *err) {
  char sa[96], sb[96];
  int acc_w = gw && (acc & PBT_ACC_W), acc_b = gb && (acc & PBT_ACC_B);
  pbt_tensor sum;
  pbt_status s = check_linear(x, w, NULL, err);
  if (!s) s = same_dtype(x, g, err);
  if (s) return s;
  if (g->ndim != 2 || g->shape[0] != x->shape[0] || g->shape[1] != w->shape[0]) {
    shape_str(sa, sizeof sa, g);
    shape_str(sb, sizeof sb, x);
    return pbt_fail(err, PBT_ERR_SHAPE, "gradient of shape %s does not fit input of shape %s",
                    sa, sb);
  }
  if (acc_w && (s = pbt_linear_check_acc(gw, 0, g, x, w, err))) return s;
  if (acc_b && (s = pbt_linear_check_acc(gb, 1, g, x, w, err))) return s;
  /* an error leaves an accumulated output as it was: the new outputs and
   * the bias sum are made first, a product that fails (copying an operand
   * BLAS cannot read) fails before it writes, and the weight's product is
   * the last step that can fail (the add of two contiguous tensors of one
   * shape allocates nothing) */
  pbt_tensor_init(&sum);
  if (gb) s = pbt_reduce(acc_b ? &sum : gb, g, 0, 0, PBT_SUM, err);
  if (gx && !s) s = new_like(gx, x, err);
  if (gx && !s) s = pbt_addmm(gx, g, w, 1, 0, err);
  if (gw && !s) {
    pbt_tensor gt = *g;
    gt.shape[0] = g->shape[1], gt.shape[1] = g->shape[0];
    gt.stride[0] = g->stride[1], gt.stride[1] = g->stride[0];
    if (!acc_w) s = new_like(gw, w, err);
    if (!s) s = pbt_addmm(gw, &gt, x, 1, acc_w ? 1 : 0, err);
  }
  if (acc_b && !s) s = pbt_axpy(gb, gb, 1, &sum, err);
  pbt_tensor_release(&sum);
  if (s) release_all(gx, acc_w ? NULL : gw, acc_b ? NULL : gb);
  return s;
}

pbt_status pbt_linear_backward(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                               const pbt_tensor *g, const pbt_tensor *x,
                               const pbt_tensor *w, pbt_error *err) {
  return pbt_linear_backward_acc(gx, gw, gb, 0, g, x, w, err);
}

pbt_status pbt_linear_relu(pbt_tensor *out, const pbt_tensor *x,
                           const pbt_tensor *w, const pbt_tensor *b,
                           pbt_error *err) {
  pbt_status s = pbt_linear(out, x, w, b, err);
  if (s) return s;
  s = pbt_unary(out, out, PBT_RELU, err); /* (out is new and contiguous) */
  if (s) pbt_tensor_release(out);
  return s;
}

pbt_status pbt_linear_relu_backward_acc(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                                        int acc, const pbt_tensor *g, const pbt_tensor *y,
                                        const pbt_tensor *x, const pbt_tensor *w,
                                        pbt_error *err) {
  pbt_tensor gz;
  pbt_status s;
  pbt_tensor_init(&gz);
  gz.alloc = y->alloc;
  s = pbt_relu_backward(&gz, g, y, err);
  if (!s) s = pbt_linear_backward_acc(gx, gw, gb, acc, &gz, x, w, err);
  pbt_tensor_release(&gz);
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
