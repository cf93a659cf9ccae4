/* pbt_conv.c -- 2-d convolution (see pbt_nn.h): im2col and one GEMM per
 * image on OpenBLAS, a 1x1 kernel with stride 1 and no padding reading the
 * image itself; the kernels per dtype are in pbt_conv_impl.h. */
#include "pbt_vmath.h"

#include <cblas.h>

#include "pbt_nn_internal.h"

/* Geometry of one convolution. */
typedef struct conv_geom {
  int64_t n, c, h, w, o, kh, kw, sh, sw, ph, pw, oh, ow;
  int direct; /* 1x1 kernel, stride 1, no padding: the image is its own im2col */
} conv_geom;

#define PBT_NN_IMPL "pbt_conv_impl.h"
#include "pbt_nn_instantiate.h"

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
