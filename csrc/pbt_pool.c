/* pbt_pool.c -- 2-d max pooling and its gradient (see pbt_nn.h); 2x2
 * windows of stride 2 have their own row kernels (vectorised for float32
 * in pbt_pool_vec_impl.h); the kernels per dtype are in pbt_pool_impl.h. */
#include "pbt_vmath.h"

#include "pbt_nn_internal.h"

/* Geometry of one pooling. */
typedef struct pool_geom {
  int64_t planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
} pool_geom;

/* 2x2 max pooling (stride 2, no padding) of float32 rows of n >= W outputs,
 * W = 8 or 4 at a time with GCC's vector extensions (the last block overlaps
 * the one before when W does not divide n: its writes are the same).  The
 * same results as pool2x2_row_f32 and unpool2x2_row_f32 (see there). */
#if defined(__GNUC__) && !defined(__clang__)
#define PBT_POOL_VEC 1
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

#define W 8
#include "pbt_pool_vec_impl.h"
#undef W
#define W 4
#include "pbt_pool_vec_impl.h"
#undef W
#endif

#define PBT_NN_IMPL "pbt_pool_impl.h"
#include "pbt_nn_instantiate.h"

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
