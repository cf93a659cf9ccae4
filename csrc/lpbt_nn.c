/* lpbt_nn.c -- functions of pbt.core.nn, the kernels under lua/pbt/nn.lua.
 *
 *   linear(x, w [, b])                  x [M,in] . w^T + b -> [M,out]
 *   conv2d(x, w, b, sh, sw, ph, pw [, ws])   -> out [N,O,OH,OW]; ws: a
 *                                       workspace tensor kept by the module
 *   max_pool2d(x, kh, kw, sh, sw, ph, pw) -> out, indices (1-based in plane)
 *   cross_entropy(logits, labels [, reduction])   labels 1-based
 *   bce_with_logits(x, t [, reduction])
 *   gelu(x)
 *   layer_norm(x, nshape, w, b, eps)    -> y, mean, rstd
 *   dropout(x, p [, generator])         -> out, mask
 * Each records itself for autograd (op name = function name); the rules in
 * lua/pbt/nn.lua call the backward functions:
 *   linear_backward(g, x, w, need_x, need_w, need_b [, w_grad, b_grad])
 *                                                        -> gx, gw, gb
 *       w_grad, b_grad: the leaves' kept .grad; one that fits (a
 *       contiguous tensor of the parameter's dtype and shape, not sharing
 *       storage with g, x or w) gets the gradient added into it in place
 *       (the GEMM with beta = 1) and its slot of the results is nil
 *   conv2d_backward(g, x, w, sh, sw, ph, pw, ws, need_x, need_w, need_b)
 *   max_pool2d_backward(g, indices, x)                    -> gx
 *   cross_entropy_backward(g, logits, labels, reduction)  -> glogits
 *   bce_with_logits_backward(g, x, t, reduction, need_x, need_t) -> gx, gt
 *   gelu_backward(g, x)                                   -> gx
 *   relu_backward(g, x)        -> g * (x > 0): the rule of the core's relu
 *   layer_norm_backward(g, x, w, mean, rstd, need_x, need_w, need_b)
 * An output that is not needed is nil.  reduction is "mean" (default),
 * "sum" or "none".
 */
#include "lpbt.h"
#include "pbt_nn.h"

/* A kernel size, stride or padding: an integer of at most 65536 (larger
 * values have no use on images and would overflow size arithmetic or make
 * loops over mostly padding run for hours); the core checks the lower
 * bounds and how they fit the input. */
#define LPBT_MAX_GEOMETRY 65536
static int64_t check_geometry(lua_State *L, int arg) {
  int64_t v = lpbt_check_integer(L, arg);
  if (v > LPBT_MAX_GEOMETRY)
    luaL_argerror(L, arg, lua_pushfstring(L, "%I is too large (at most %d)", (lua_Integer)v,
                                          LPBT_MAX_GEOMETRY));
  return v;
}


#define RG(t) ((t) && LPBT_REQUIRES_GRAD(t))

static const char *const reductions[] = {"none", "mean", "sum", NULL};

static pbt_reduction check_reduction(lua_State *L, int arg) {
  return (pbt_reduction)luaL_checkoption(L, arg, "mean", reductions);
}

static pbt_tensor *opt_tensor(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? NULL : lpbt_check_tensor(L, arg);
}

/* Pushes a new tensor when `want`, else nil; returns it or NULL. */
static pbt_tensor *push_opt(lua_State *L, int want) {
  if (want) return lpbt_push_tensor(L);
  lua_pushnil(L);
  return NULL;
}

static void hint3(lua_State *L, pbt_tensor *a, pbt_tensor *b, pbt_tensor *c) {
  if (a) lpbt_gc_hint(L, a);
  if (b) lpbt_gc_hint(L, b);
  if (c) lpbt_gc_hint(L, c);
}

/* ---- linear ---------------------------------------------------------------- */

/* linear(x, w [, b]), and with relu, linear_relu: the product then ReLU in
 * place, one op (its errors are linear's: a script asked for a Linear) */
static int linear(lua_State *L, int relu) {
  pbt_tensor *x = lpbt_check_tensor(L, 1), *w = lpbt_check_tensor(L, 2);
  pbt_tensor *b = opt_tensor(L, 3), *out;
  pbt_error err;
  lua_settop(L, 3);
  out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "linear", (relu ? pbt_linear_relu : pbt_linear)(out, x, w, b, &err), &err);
  lpbt_gc_hint(L, out);
  if (RG(x) || RG(w) || RG(b)) lpbt_record(L, relu ? "linear_relu" : "linear", 3, 1);
  return 1;
}
static int f_linear(lua_State *L) { return linear(L, 0); }
static int f_linear_relu(lua_State *L) { return linear(L, 1); }

/* The kept gradient at arg that linear_backward may add into (nil,
 * anything but a tensor, one that requires grad or one the core would
 * refuse: NULL, and the gradient comes back as a new tensor that the
 * rule's caller accumulates as before).  w is 2-d. */
static pbt_tensor *opt_acc(lua_State *L, int arg, int bias, const pbt_tensor *g,
                           const pbt_tensor *x, const pbt_tensor *w) {
  pbt_tensor *t = lpbt_test_tensor(L, arg);
  if (!t || LPBT_REQUIRES_GRAD(t) || pbt_linear_check_acc(t, bias, g, x, w, NULL) != PBT_OK)
    return NULL;
  return t;
}

/* linear_backward(g, x, w, rg(x), rg(w), rg(b) [, kept w.grad, kept
 * b.grad]), and with relu, linear_relu_backward(g, y, x, w, ...): y, the
 * op's result, comes second and shifts the others by one */
static int linear_backward(lua_State *L, int relu) {
  int o = relu ? 1 : 0, acc;
  pbt_tensor *g = lpbt_check_tensor(L, 1), *y = relu ? lpbt_check_tensor(L, 2) : NULL;
  pbt_tensor *x = lpbt_check_tensor(L, 2 + o), *w = lpbt_check_tensor(L, 3 + o);
  pbt_tensor *gx, *gw, *gb, *aw = NULL, *ab = NULL;
  int nx = lua_toboolean(L, 4 + o), nw = lua_toboolean(L, 5 + o), nb = lua_toboolean(L, 6 + o);
  pbt_error err;
  pbt_status s;
  lua_settop(L, 8 + o);
  if (nw && w->ndim == 2) aw = opt_acc(L, 7 + o, 0, g, x, w);
  if (nb && w->ndim == 2) ab = opt_acc(L, 8 + o, 1, g, x, w);
  gx = push_opt(L, nx);
  gw = aw ? (lua_pushnil(L), aw) : push_opt(L, nw);
  gb = ab ? (lua_pushnil(L), ab) : push_opt(L, nb);
  acc = (aw ? PBT_ACC_W : 0) | (ab ? PBT_ACC_B : 0);
  s = relu ? pbt_linear_relu_backward_acc(gx, gw, gb, acc, g, y, x, w, &err)
           : pbt_linear_backward_acc(gx, gw, gb, acc, g, x, w, &err);
  LPBT_CHECK(L, relu ? "linear_relu_backward" : "linear_backward", s, &err);
  if (aw) LPBT_CHANGED(aw);
  if (ab) LPBT_CHANGED(ab);
  hint3(L, gx, aw ? NULL : gw, ab ? NULL : gb);
  return 3;
}
static int f_linear_backward(lua_State *L) { return linear_backward(L, 0); }
static int f_linear_relu_backward(lua_State *L) { return linear_backward(L, 1); }

/* ---- conv2d ------------------------------------------------------------------ */

static void check_conv_opts(lua_State *L, int arg, pbt_conv2d_opts *o) {
  o->stride[0] = check_geometry(L, arg);
  o->stride[1] = check_geometry(L, arg + 1);
  o->padding[0] = check_geometry(L, arg + 2);
  o->padding[1] = check_geometry(L, arg + 3);
  luaL_argcheck(L, o->stride[0] >= 1, arg, "stride must be >= 1");
  luaL_argcheck(L, o->stride[1] >= 1, arg + 1, "stride must be >= 1");
  luaL_argcheck(L, o->padding[0] >= 0, arg + 2, "padding must be >= 0");
  luaL_argcheck(L, o->padding[1] >= 0, arg + 3, "padding must be >= 0");
}

/* The workspace at arg (nil: none); it is rewritten (and may be
 * reallocated), so it must not share storage with any of the op's tensors,
 * the `nin` tensors from arg 1 on. */
static pbt_tensor *opt_workspace(lua_State *L, int arg, const char *fname, int nin) {
  pbt_tensor *ws = opt_tensor(L, arg);
  int k;
  if (!ws) return NULL;
  /* (no LPBT_CHANGED after the op: the workspace is scratch space, no
   * gradient depends on what it held) */
  lpbt_check_inplace(L, ws, fname);
  for (k = 1; k <= nin; k++) {
    const pbt_tensor *t = lpbt_test_tensor(L, k);
    if (t && t->storage == ws->storage)
      luaL_argerror(L, arg, lua_pushfstring(L, "the workspace shares its storage with argument #%d", k));
  }
  return ws;
}

static int f_conv2d(lua_State *L) {
  pbt_tensor *x = lpbt_check_tensor(L, 1), *w = lpbt_check_tensor(L, 2);
  pbt_tensor *b = opt_tensor(L, 3), *ws, *out;
  pbt_conv2d_opts o;
  pbt_error err;
  check_conv_opts(L, 4, &o);
  ws = opt_workspace(L, 8, "conv2d", 3);
  lua_settop(L, 8);
  out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "conv2d", pbt_conv2d(out, x, w, b, &o, ws, &err), &err);
  lpbt_gc_hint(L, out);
  if (RG(x) || RG(w) || RG(b)) lpbt_record(L, "conv2d", 8, 1);
  return 1;
}

static int f_conv2d_backward(lua_State *L) {
  pbt_tensor *g = lpbt_check_tensor(L, 1), *x = lpbt_check_tensor(L, 2);
  pbt_tensor *w = lpbt_check_tensor(L, 3), *ws, *gx, *gw, *gb;
  pbt_conv2d_opts o;
  int nx = lua_toboolean(L, 9), nw = lua_toboolean(L, 10), nb = lua_toboolean(L, 11);
  pbt_error err;
  check_conv_opts(L, 4, &o);
  ws = opt_workspace(L, 8, "conv2d_backward", 3);
  lua_settop(L, 11);
  gx = push_opt(L, nx), gw = push_opt(L, nw), gb = push_opt(L, nb);
  LPBT_CHECK(L, "conv2d_backward",
             pbt_conv2d_backward(gx, gw, gb, g, x, w, &o, ws, &err), &err);
  hint3(L, gx, gw, gb);
  return 3;
}

/* ---- max pooling --------------------------------------------------------------- */

static int f_max_pool2d(lua_State *L) {
  pbt_tensor *x = lpbt_check_tensor(L, 1), *out, *idx;
  pbt_pool2d_opts o;
  pbt_error err;
  int i;
  for (i = 0; i < 2; i++) {
    o.kernel[i] = check_geometry(L, 2 + i);
    o.stride[i] = check_geometry(L, 4 + i);
    o.padding[i] = check_geometry(L, 6 + i);
    luaL_argcheck(L, o.kernel[i] >= 1, 2 + i, "kernel size must be >= 1");
    luaL_argcheck(L, o.stride[i] >= 1, 4 + i, "stride must be >= 1");
    luaL_argcheck(L, o.padding[i] >= 0, 6 + i, "padding must be >= 0");
  }
  lua_settop(L, 7);
  out = lpbt_push_tensor(L);
  idx = lpbt_push_tensor(L);
  LPBT_CHECK(L, "max_pool2d", pbt_max_pool2d(out, idx, x, &o, 1, &err), &err);
  hint3(L, out, idx, NULL);
  if (RG(x)) lpbt_record(L, "max_pool2d", 7, 2);
  return 2;
}

static int f_max_pool2d_backward(lua_State *L) {
  pbt_tensor *g = lpbt_check_tensor(L, 1), *idx = lpbt_check_tensor(L, 2);
  pbt_tensor *x = lpbt_check_tensor(L, 3), *gx;
  pbt_error err;
  lua_settop(L, 3);
  gx = lpbt_push_tensor(L);
  LPBT_CHECK(L, "max_pool2d_backward", pbt_max_pool2d_backward(gx, g, idx, x, 1, &err),
             &err);
  lpbt_gc_hint(L, gx);
  return 1;
}

/* ---- losses ------------------------------------------------------------------- */

static int f_cross_entropy(lua_State *L) {
  pbt_tensor *x = lpbt_check_tensor(L, 1), *lab = lpbt_check_tensor(L, 2), *out;
  pbt_reduction red = check_reduction(L, 3);
  pbt_error err;
  lua_settop(L, 3);
  out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "cross_entropy", pbt_cross_entropy(out, x, lab, 1, red, &err), &err);
  if (RG(x)) lpbt_record(L, "cross_entropy", 3, 1);
  return 1;
}

static int f_cross_entropy_backward(lua_State *L) {
  pbt_tensor *g = lpbt_check_tensor(L, 1), *x = lpbt_check_tensor(L, 2);
  pbt_tensor *lab = lpbt_check_tensor(L, 3), *gx;
  pbt_reduction red = check_reduction(L, 4);
  pbt_error err;
  lua_settop(L, 4);
  gx = lpbt_push_tensor(L);
  LPBT_CHECK(L, "cross_entropy_backward",
             pbt_cross_entropy_backward(gx, g, x, lab, 1, red, &err), &err);
  lpbt_gc_hint(L, gx);
  return 1;
}

static int f_bce_with_logits(lua_State *L) {
  pbt_tensor *x = lpbt_check_tensor(L, 1), *t = lpbt_check_tensor(L, 2), *out;
  pbt_reduction red = check_reduction(L, 3);
  pbt_error err;
  lua_settop(L, 3);
  out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "binary_cross_entropy_with_logits",
             pbt_bce_with_logits(out, x, t, red, &err), &err);
  lpbt_gc_hint(L, out);
  if (RG(x) || RG(t)) lpbt_record(L, "bce_with_logits", 3, 1);
  return 1;
}

static int f_bce_with_logits_backward(lua_State *L) {
  pbt_tensor *g = lpbt_check_tensor(L, 1), *x = lpbt_check_tensor(L, 2);
  pbt_tensor *t = lpbt_check_tensor(L, 3), *gx, *gt;
  pbt_reduction red = check_reduction(L, 4);
  int nx = lua_toboolean(L, 5), nt = lua_toboolean(L, 6);
  pbt_error err;
  lua_settop(L, 6);
  gx = push_opt(L, nx), gt = push_opt(L, nt);
  LPBT_CHECK(L, "bce_with_logits_backward",
             pbt_bce_with_logits_backward(gx, gt, g, x, t, red, &err), &err);
  hint3(L, gx, gt, NULL);
  return 2;
}

/* ---- gelu, layer norm, dropout ------------------------------------------------ */

static int f_gelu(lua_State *L) {
  pbt_tensor *x = lpbt_check_tensor(L, 1), *out;
  pbt_error err;
  lua_settop(L, 1);
  out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "gelu", pbt_gelu(out, x, &err), &err);
  lpbt_gc_hint(L, out);
  if (RG(x)) lpbt_record(L, "gelu", 1, 1);
  return 1;
}

static int f_gelu_backward(lua_State *L) {
  pbt_tensor *g = lpbt_check_tensor(L, 1), *x = lpbt_check_tensor(L, 2), *gx;
  pbt_error err;
  lua_settop(L, 2);
  gx = lpbt_push_tensor(L);
  LPBT_CHECK(L, "gelu_backward", pbt_gelu_backward(gx, g, x, &err), &err);
  lpbt_gc_hint(L, gx);
  return 1;
}

static int f_relu_backward(lua_State *L) {
  pbt_tensor *g = lpbt_check_tensor(L, 1), *x = lpbt_check_tensor(L, 2), *gx;
  pbt_error err;
  lua_settop(L, 2);
  gx = lpbt_push_tensor(L);
  LPBT_CHECK(L, "relu_backward", pbt_relu_backward(gx, g, x, &err), &err);
  lpbt_gc_hint(L, gx);
  return 1;
}

/* layer_norm(x, nshape, w, b, eps): nshape a size or a table of sizes */
static int f_layer_norm(lua_State *L) {
  pbt_tensor *x = lpbt_check_tensor(L, 1), *w, *b, *out, *mean, *rstd;
  int64_t nshape[PBT_MAX_DIM];
  int next, nnorm = lpbt_check_shape(L, 2, nshape, 0, &next);
  double eps;
  pbt_error err;
  luaL_argcheck(L, next == 3, 3, "the normalized shape must be one size or a table");
  w = opt_tensor(L, 3);
  b = opt_tensor(L, 4);
  eps = luaL_optnumber(L, 5, 1e-5);
  lua_settop(L, 5);
  out = lpbt_push_tensor(L);
  mean = lpbt_push_tensor(L);
  rstd = lpbt_push_tensor(L);
  LPBT_CHECK(L, "layer_norm",
             pbt_layer_norm(out, mean, rstd, x, nnorm, nshape, w, b, eps, &err), &err);
  hint3(L, out, mean, rstd);
  if (RG(x) || RG(w) || RG(b)) lpbt_record(L, "layer_norm", 5, 3);
  return 3;
}

static int f_layer_norm_backward(lua_State *L) {
  pbt_tensor *g = lpbt_check_tensor(L, 1), *x = lpbt_check_tensor(L, 2);
  pbt_tensor *w = opt_tensor(L, 3), *mean = lpbt_check_tensor(L, 4);
  pbt_tensor *rstd = lpbt_check_tensor(L, 5), *gx, *gw, *gb;
  int nx = lua_toboolean(L, 6), nw = lua_toboolean(L, 7) && w, nb = lua_toboolean(L, 8);
  pbt_error err;
  lua_settop(L, 8);
  gx = push_opt(L, nx), gw = push_opt(L, nw), gb = push_opt(L, nb);
  LPBT_CHECK(L, "layer_norm_backward",
             pbt_layer_norm_backward(gx, gw, gb, g, x, w, mean, rstd, &err), &err);
  hint3(L, gx, gw, gb);
  return 3;
}

static int f_dropout(lua_State *L) {
  pbt_tensor *x = lpbt_check_tensor(L, 1), *out, *mask;
  double p = luaL_checknumber(L, 2);
  pbt_generator *gen = lua_isnoneornil(L, 3)
                           ? (pbt_generator *)lua_touserdata(L, LPBT_UPV_GENERATOR)
                           : lpbt_check_generator(L, 3);
  pbt_error err;
  luaL_argcheck(L, p >= 0 && p <= 1, 2,
                lua_pushfstring(L, "probability %f out of range [0, 1]", p));
  lua_settop(L, 3);
  out = lpbt_push_tensor(L);
  mask = lpbt_push_tensor(L);
  LPBT_CHECK(L, "dropout", pbt_dropout(out, mask, x, p, gen, &err), &err);
  hint3(L, out, mask, NULL);
  if (RG(x)) lpbt_record(L, "dropout", 3, 2);
  return 2;
}

const luaL_Reg lpbt_nn_module[] = {
    {"linear", f_linear},
    {"linear_backward", f_linear_backward},
    {"linear_relu", f_linear_relu},
    {"linear_relu_backward", f_linear_relu_backward},
    {"conv2d", f_conv2d},
    {"conv2d_backward", f_conv2d_backward},
    {"max_pool2d", f_max_pool2d},
    {"max_pool2d_backward", f_max_pool2d_backward},
    {"cross_entropy", f_cross_entropy},
    {"cross_entropy_backward", f_cross_entropy_backward},
    {"bce_with_logits", f_bce_with_logits},
    {"bce_with_logits_backward", f_bce_with_logits_backward},
    {"gelu", f_gelu},
    {"gelu_backward", f_gelu_backward},
    {"relu_backward", f_relu_backward},
    {"layer_norm", f_layer_norm},
    {"layer_norm_backward", f_layer_norm_backward},
    {"dropout", f_dropout},
    {NULL, NULL}};
