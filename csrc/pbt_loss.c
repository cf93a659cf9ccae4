/* pbt_loss.c -- the fused losses (see pbt_nn.h): cross-entropy over
 * logits and binary cross-entropy with logits, and their gradients; the
 * kernels per dtype are in pbt_loss_impl.h. */
#include "pbt_vmath.h"

#include "pbt_nn_internal.h"

#define PBT_NN_IMPL "pbt_loss_impl.h"
#include "pbt_nn_instantiate.h"

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
