/* lpbt_ops.c -- elementwise operations and reductions of pbt.Tensor.
 *
 *   t:add(x [, alpha])   t + alpha * x (x a tensor or a number); also
 *   t:sub(x [, alpha])   sub, mul, div, pow, maximum, minimum and the 0/1
 *                        comparisons eq ne lt le gt ge, broadcasting
 *   t:add_(x [, alpha])  ... in place: writes into t, returns t
 *   t:exp() t:exp_()     unary: neg exp log log1p sqrt abs sin cos tanh
 *                        sigmoid relu sign floor
 *   t:clamp(lo, hi)      either bound may be nil; clamp_ in place
 *   a + b, a - b, a * b, a / b, a ^ b, -a   (a tensor and/or a number)
 *   pbt.tensor.where(mask, a, b)
 *   t:sum([dim [, keepdim]]) mean prod logsumexp: tensors (0-d over all)
 *   t:max([dim [, keepdim]]) min: over all a 0-d tensor; along dim the values
 *                        and the 1-based indices (float64)
 *   t:argmax([dim [, keepdim]]) argmin: 1-based indices (float64)
 *   t:var([dim [, keepdim [, unbiased]]]) std: unbiased by default; or
 *                        t:var{dim=, keepdim=, unbiased=}
 *   t:norm([p [, dim [, keepdim]]])   p = 2 by default, math.huge for max
 *   t:softmax(dim) t:log_softmax(dim)
 *   pbt.tensor.allclose(a, b [, rtol [, atol]]) pbt.tensor.equal(a, b)
 *
 * Dimensions are 1-based (negative from the end) here, 0-based in the core.
 */
#include <math.h>

#include "lpbt.h"
#include "pbt_ops.h"

/* The tensor at idx or NULL (a released one raises). */
static pbt_tensor *to_tensor(lua_State *L, int idx) {
  lpbt_tensor *u = lpbt_tensor_at(L, idx);
  if (!u) return NULL;
  if (!u->t.storage) luaL_argerror(L, idx, "tensor has been released");
  return &u->t;
}

/* A tensor (*t set) or a number (*v set) at idx. */
static void check_operand(lua_State *L, int idx, pbt_tensor **t, double *v) {
  *t = to_tensor(L, idx);
  *v = 0;
  if (*t) return;
  if (lua_type(L, idx) == LUA_TNUMBER) *v = lua_tonumber(L, idx);
  else luaL_typeerror(L, idx, "pbt.Tensor or number");
}

/* ---- binary ----------------------------------------------------------------- */

#define RG(t) ((t) && LPBT_REQUIRES_GRAD(t))

static int differentiable(pbt_binop op) { return op < PBT_EQ; }

/* An in-place op cannot be recorded: while grad mode is on, a source that
 * requires grad would silently lose its gradient, so it is refused. */
static void check_inplace_source(lua_State *L, const pbt_tensor *src, const char *name) {
  if (RG(src) && lpbt_grad_enabled(L))
    luaL_error(L, "%s: the argument requires grad, the in-place result could not carry it "
                  "(use the out-of-place op, or pbt.no_grad)", name);
}

/* out (a new tensor, or self when in_place) = arg1 op arg2; alpha at arg 3
 * for add and sub. */
static int binary(lua_State *L, pbt_binop op, const char *name, int in_place) {
  pbt_tensor *a, *b, *r;
  double av, bv, alpha = 1;
  int has_alpha = 0, nargs = lua_gettop(L);
  pbt_error err;
  pbt_status s;
  if (in_place) a = lpbt_check_tensor(L, 1), av = 0;
  else check_operand(L, 1, &a, &av);
  check_operand(L, 2, &b, &bv);
  if ((op == PBT_ADD || op == PBT_SUB) && !lua_isnoneornil(L, 3)) {
    alpha = luaL_checknumber(L, 3);
    has_alpha = 1;
  }
  if (!a && !b) luaL_typeerror(L, 1, LPBT_TENSOR);
  if (in_place) {
    r = a;
    lpbt_check_inplace(L, a, name);
    check_inplace_source(L, b, name);
  } else {
    r = lpbt_push_tensor(L);
  }
  if (a && b && has_alpha)
    s = pbt_axpy(r, a, op == PBT_SUB ? -alpha : alpha, b, &err);
  else if (a && b)
    s = pbt_binary(r, a, b, op, &err);
  else if (a)
    s = pbt_binary_scalar(r, a, has_alpha ? alpha * bv : bv, op, &err);
  else
    s = pbt_scalar_binary(r, av, b, op, &err);
  LPBT_CHECK(L, name, s, &err);
  if (in_place) {
    LPBT_CHANGED(a);
    lua_settop(L, 1);
    return 1;
  }
  lpbt_gc_hint(L, r);
  if ((RG(a) || RG(b)) && differentiable(op)) lpbt_record(L, name, nargs, 1);
  return 1;
}

static int m_add(lua_State *L) { return binary(L, PBT_ADD, "add", 0); }
static int m_sub(lua_State *L) { return binary(L, PBT_SUB, "sub", 0); }
static int m_mul(lua_State *L) { return binary(L, PBT_MUL, "mul", 0); }
static int m_div(lua_State *L) { return binary(L, PBT_DIV, "div", 0); }
static int m_pow(lua_State *L) { return binary(L, PBT_POW, "pow", 0); }
static int m_maximum(lua_State *L) { return binary(L, PBT_MAXIMUM, "maximum", 0); }
static int m_minimum(lua_State *L) { return binary(L, PBT_MINIMUM, "minimum", 0); }
static int m_eq(lua_State *L) { return binary(L, PBT_EQ, "eq", 0); }
static int m_ne(lua_State *L) { return binary(L, PBT_NE, "ne", 0); }
static int m_lt(lua_State *L) { return binary(L, PBT_LT, "lt", 0); }
static int m_le(lua_State *L) { return binary(L, PBT_LE, "le", 0); }
static int m_gt(lua_State *L) { return binary(L, PBT_GT, "gt", 0); }
static int m_ge(lua_State *L) { return binary(L, PBT_GE, "ge", 0); }

static int m_add_(lua_State *L) { return binary(L, PBT_ADD, "add_", 1); }
static int m_sub_(lua_State *L) { return binary(L, PBT_SUB, "sub_", 1); }
static int m_mul_(lua_State *L) { return binary(L, PBT_MUL, "mul_", 1); }
static int m_div_(lua_State *L) { return binary(L, PBT_DIV, "div_", 1); }
static int m_pow_(lua_State *L) { return binary(L, PBT_POW, "pow_", 1); }
static int m_maximum_(lua_State *L) { return binary(L, PBT_MAXIMUM, "maximum_", 1); }
static int m_minimum_(lua_State *L) { return binary(L, PBT_MINIMUM, "minimum_", 1); }
static int m_eq_(lua_State *L) { return binary(L, PBT_EQ, "eq_", 1); }
static int m_ne_(lua_State *L) { return binary(L, PBT_NE, "ne_", 1); }
static int m_lt_(lua_State *L) { return binary(L, PBT_LT, "lt_", 1); }
static int m_le_(lua_State *L) { return binary(L, PBT_LE, "le_", 1); }
static int m_gt_(lua_State *L) { return binary(L, PBT_GT, "gt_", 1); }
static int m_ge_(lua_State *L) { return binary(L, PBT_GE, "ge_", 1); }

/* Metamethods: the fast path first (two contiguous tensors of one shape and
 * dtype go straight to pbt_binary's small-op path). */
static int arith(lua_State *L, pbt_binop op, const char *name) {
  pbt_tensor *a, *b, *r;
  double av, bv;
  pbt_error err;
  pbt_status s;
  int k;
  for (k = 1; k <= 2; k++) /* an operator has no argument numbers to name */
    if (lua_type(L, k) != LUA_TNUMBER && !lpbt_test_tensor(L, k))
      return luaL_error(L, "%s: pbt.Tensor or number expected, got %s", name,
                        luaL_typename(L, k));
  check_operand(L, 1, &a, &av);
  check_operand(L, 2, &b, &bv);
  lua_settop(L, 2);
  r = lpbt_push_tensor(L);
  if (a && b) s = pbt_binary(r, a, b, op, &err);
  else if (a) s = pbt_binary_scalar(r, a, bv, op, &err);
  else s = pbt_scalar_binary(r, av, b, op, &err);
  LPBT_CHECK(L, name, s, &err);
  lpbt_gc_hint(L, r);
  if (RG(a) || RG(b)) lpbt_record(L, name, 2, 1);
  return 1;
}

static int mt_add(lua_State *L) { return arith(L, PBT_ADD, "add"); }
static int mt_sub(lua_State *L) { return arith(L, PBT_SUB, "sub"); }
static int mt_mul(lua_State *L) { return arith(L, PBT_MUL, "mul"); }
static int mt_div(lua_State *L) { return arith(L, PBT_DIV, "div"); }
static int mt_pow(lua_State *L) { return arith(L, PBT_POW, "pow"); }

/* ---- unary ------------------------------------------------------------------- */

static int unary(lua_State *L, pbt_unop op, const char *name, int in_place) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *r;
  pbt_error err;
  if (in_place) lpbt_check_inplace(L, a, name);
  lua_settop(L, 1); /* __unm passes the operand twice */
  r = in_place ? a : lpbt_push_tensor(L);
  LPBT_CHECK(L, name, pbt_unary(r, a, op, &err), &err);
  if (in_place) {
    LPBT_CHANGED(a);
    return 1;
  }
  lpbt_gc_hint(L, r);
  if (RG(a) && op != PBT_SIGN && op != PBT_FLOOR) lpbt_record(L, name, 1, 1);
  return 1;
}

static int m_neg(lua_State *L) { return unary(L, PBT_NEG, "neg", 0); }
static int m_exp(lua_State *L) { return unary(L, PBT_EXP, "exp", 0); }
static int m_log(lua_State *L) { return unary(L, PBT_LOG, "log", 0); }
static int m_log1p(lua_State *L) { return unary(L, PBT_LOG1P, "log1p", 0); }
static int m_sqrt(lua_State *L) { return unary(L, PBT_SQRT, "sqrt", 0); }
static int m_abs(lua_State *L) { return unary(L, PBT_ABS, "abs", 0); }
static int m_sin(lua_State *L) { return unary(L, PBT_SIN, "sin", 0); }
static int m_cos(lua_State *L) { return unary(L, PBT_COS, "cos", 0); }
static int m_tanh(lua_State *L) { return unary(L, PBT_TANH, "tanh", 0); }
static int m_sigmoid(lua_State *L) { return unary(L, PBT_SIGMOID, "sigmoid", 0); }
static int m_relu(lua_State *L) { return unary(L, PBT_RELU, "relu", 0); }
static int m_sign(lua_State *L) { return unary(L, PBT_SIGN, "sign", 0); }
static int m_floor(lua_State *L) { return unary(L, PBT_FLOOR, "floor", 0); }

static int m_neg_(lua_State *L) { return unary(L, PBT_NEG, "neg_", 1); }
static int m_exp_(lua_State *L) { return unary(L, PBT_EXP, "exp_", 1); }
static int m_log_(lua_State *L) { return unary(L, PBT_LOG, "log_", 1); }
static int m_log1p_(lua_State *L) { return unary(L, PBT_LOG1P, "log1p_", 1); }
static int m_sqrt_(lua_State *L) { return unary(L, PBT_SQRT, "sqrt_", 1); }
static int m_abs_(lua_State *L) { return unary(L, PBT_ABS, "abs_", 1); }
static int m_sin_(lua_State *L) { return unary(L, PBT_SIN, "sin_", 1); }
static int m_cos_(lua_State *L) { return unary(L, PBT_COS, "cos_", 1); }
static int m_tanh_(lua_State *L) { return unary(L, PBT_TANH, "tanh_", 1); }
static int m_sigmoid_(lua_State *L) { return unary(L, PBT_SIGMOID, "sigmoid_", 1); }
static int m_relu_(lua_State *L) { return unary(L, PBT_RELU, "relu_", 1); }
static int m_sign_(lua_State *L) { return unary(L, PBT_SIGN, "sign_", 1); }
static int m_floor_(lua_State *L) { return unary(L, PBT_FLOOR, "floor_", 1); }

static int mt_unm(lua_State *L) { return unary(L, PBT_NEG, "neg", 0); }

static int clamp(lua_State *L, const char *name, int in_place) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *r;
  double lo = lua_isnoneornil(L, 2) ? -HUGE_VAL : luaL_checknumber(L, 2);
  double hi = lua_isnoneornil(L, 3) ? HUGE_VAL : luaL_checknumber(L, 3);
  pbt_error err;
  int nargs = lua_gettop(L);
  if (in_place) lpbt_check_inplace(L, a, name);
  r = in_place ? a : lpbt_push_tensor(L);
  LPBT_CHECK(L, name, pbt_clamp(r, a, lo, hi, &err), &err);
  if (in_place) {
    LPBT_CHANGED(a);
    lua_settop(L, 1);
    return 1;
  }
  lpbt_gc_hint(L, r);
  if (RG(a)) lpbt_record(L, name, nargs, 1);
  return 1;
}

static int m_clamp(lua_State *L) { return clamp(L, "clamp", 0); }
static int m_clamp_(lua_State *L) { return clamp(L, "clamp_", 1); }

static int f_where(lua_State *L) {
  pbt_tensor *mask = lpbt_check_tensor(L, 1), *a, *b, *r;
  double av, bv;
  pbt_error err;
  check_operand(L, 2, &a, &av);
  check_operand(L, 3, &b, &bv);
  lua_settop(L, 3);
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "where", pbt_where(r, mask, a, av, b, bv, &err), &err);
  lpbt_gc_hint(L, r);
  if (RG(a) || RG(b)) lpbt_record(L, "where", 3, 1);
  return 1;
}

/* ---- comparisons of whole tensors --------------------------------------------- */

static int f_allclose(lua_State *L) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *b = lpbt_check_tensor(L, 2);
  double rtol = luaL_optnumber(L, 3, 1e-5), atol = luaL_optnumber(L, 4, 1e-8);
  int result = 0;
  pbt_error err;
  LPBT_CHECK(L, "allclose", pbt_allclose(a, b, rtol, atol, &result, &err), &err);
  lua_pushboolean(L, result);
  return 1;
}

static int f_equal(lua_State *L) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *b = lpbt_check_tensor(L, 2);
  lua_pushboolean(L, pbt_equal(a, b));
  return 1;
}

/* ---- reductions --------------------------------------------------------------- */

typedef struct red_args {
  int dim; /* 0-based, -1 for all */
  int keepdim;
  int unbiased;
} red_args;

/* A dimension given in an options table field (on top of the stack). */
static int table_dim(lua_State *L, int arg, int ndim) {
  int isnum;
  lua_Integer d = lua_tointegerx(L, -1, &isnum);
  lua_Integer z = d < 0 ? d + ndim : d - 1;
  if (!isnum) luaL_argerror(L, arg, "field 'dim' must be an integer");
  if (d == 0 || z < 0 || z >= ndim)
    luaL_argerror(L, arg, lua_pushfstring(L, "dimension %I out of range for a %d-d tensor",
                                          d, ndim));
  return (int)z;
}

/* [dim [, keepdim [, unbiased]]] from arg on, or an options table
 * {dim=, keepdim=, unbiased=} at arg. */
static red_args read_red_args(lua_State *L, int arg, int ndim) {
  red_args r;
  r.dim = -1, r.keepdim = 0, r.unbiased = 1;
  if (lua_type(L, arg) == LUA_TTABLE) {
    if (lpbt_rawfield(L, arg, "dim") != LUA_TNIL) r.dim = table_dim(L, arg, ndim);
    lua_pop(L, 1);
    lpbt_rawfield(L, arg, "keepdim");
    r.keepdim = lua_toboolean(L, -1);
    if (lpbt_rawfield(L, arg, "unbiased") != LUA_TNIL)
      r.unbiased = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return r;
  }
  r.dim = lpbt_opt_dim(L, arg, ndim, -1);
  r.keepdim = lua_toboolean(L, arg + 1);
  if (!lua_isnoneornil(L, arg + 2)) r.unbiased = lua_toboolean(L, arg + 2);
  return r;
}

static int reduce(lua_State *L, pbt_reduce_op op, const char *name) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *r;
  int nargs = lua_gettop(L);
  red_args ra = read_red_args(L, 2, a->ndim);
  pbt_error err;
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, name, pbt_reduce(r, a, ra.dim, ra.keepdim, op, &err), &err);
  if (RG(a)) lpbt_record(L, name, nargs, 1);
  return 1;
}

static int m_sum(lua_State *L) { return reduce(L, PBT_SUM, "sum"); }
static int m_mean(lua_State *L) { return reduce(L, PBT_MEAN, "mean"); }
static int m_prod(lua_State *L) { return reduce(L, PBT_PROD, "prod"); }
static int m_logsumexp(lua_State *L) { return reduce(L, PBT_LOGSUMEXP, "logsumexp"); }

/* max/min: over all one 0-d tensor; along a dim values and indices. */
static int maxmin(lua_State *L, int want_max, const char *name) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *v, *i;
  int nargs = lua_gettop(L);
  red_args ra = read_red_args(L, 2, a->ndim);
  pbt_error err;
  if (ra.dim < 0) {
    v = lpbt_push_tensor(L);
    LPBT_CHECK(L, name, pbt_reduce(v, a, -1, ra.keepdim,
                                   want_max ? PBT_MAX : PBT_MIN, &err), &err);
    if (RG(a)) lpbt_record(L, name, nargs, 1);
    return 1;
  }
  v = lpbt_push_tensor(L);
  i = lpbt_push_tensor(L);
  LPBT_CHECK(L, name, pbt_reduce_index(v, i, a, ra.dim, ra.keepdim, want_max,
                                       1, &err), &err);
  if (RG(a)) lpbt_record(L, name, nargs, 2);
  return 2;
}

static int m_max(lua_State *L) { return maxmin(L, 1, "max"); }
static int m_min(lua_State *L) { return maxmin(L, 0, "min"); }

static int argmaxmin(lua_State *L, int want_max, const char *name) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *i;
  red_args ra = read_red_args(L, 2, a->ndim);
  pbt_error err;
  i = lpbt_push_tensor(L);
  LPBT_CHECK(L, name, pbt_reduce_index(NULL, i, a, ra.dim, ra.keepdim,
                                       want_max, 1, &err), &err);
  return 1;
}

static int m_argmax(lua_State *L) { return argmaxmin(L, 1, "argmax"); }
static int m_argmin(lua_State *L) { return argmaxmin(L, 0, "argmin"); }

static int var(lua_State *L, int take_sqrt, const char *name) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *r;
  int nargs = lua_gettop(L);
  red_args ra = read_red_args(L, 2, a->ndim);
  pbt_error err;
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, name, pbt_var(r, a, ra.dim, ra.keepdim, ra.unbiased ? 1 : 0,
                              take_sqrt, &err), &err);
  if (RG(a)) lpbt_record(L, name, nargs, 1);
  return 1;
}

static int m_var(lua_State *L) { return var(L, 0, "var"); }
static int m_std(lua_State *L) { return var(L, 1, "std"); }

static int m_norm(lua_State *L) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *r;
  int nargs = lua_gettop(L);
  double p = luaL_optnumber(L, 2, 2);
  red_args ra = read_red_args(L, 3, a->ndim);
  pbt_error err;
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "norm", pbt_norm(r, a, p, ra.dim, ra.keepdim, &err), &err);
  if (RG(a)) lpbt_record(L, "norm", nargs, 1);
  return 1;
}

static int softmax(lua_State *L, int take_log, const char *name) {
  pbt_tensor *a = lpbt_check_tensor(L, 1), *r;
  int dim = lpbt_check_dim(L, 2, a->ndim);
  pbt_error err;
  lua_settop(L, 2);
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, name, pbt_softmax(r, a, dim, take_log, &err), &err);
  lpbt_gc_hint(L, r);
  if (RG(a)) lpbt_record(L, name, 2, 1);
  return 1;
}

static int m_softmax(lua_State *L) { return softmax(L, 0, "softmax"); }
static int m_log_softmax(lua_State *L) { return softmax(L, 1, "log_softmax"); }

/* ---- registration ---------------------------------------------------------------- */

const luaL_Reg lpbt_ops_methods[] = {
    {"add", m_add},             {"sub", m_sub},
    {"mul", m_mul},             {"div", m_div},
    {"pow", m_pow},             {"maximum", m_maximum},
    {"minimum", m_minimum},     {"eq", m_eq},
    {"ne", m_ne},               {"lt", m_lt},
    {"le", m_le},               {"gt", m_gt},
    {"ge", m_ge},               {"add_", m_add_},
    {"sub_", m_sub_},           {"mul_", m_mul_},
    {"div_", m_div_},           {"pow_", m_pow_},
    {"maximum_", m_maximum_},   {"minimum_", m_minimum_},
    {"eq_", m_eq_},             {"ne_", m_ne_},
    {"lt_", m_lt_},             {"le_", m_le_},
    {"gt_", m_gt_},             {"ge_", m_ge_},
    {"neg", m_neg},             {"exp", m_exp},
    {"log", m_log},             {"log1p", m_log1p},
    {"sqrt", m_sqrt},           {"abs", m_abs},
    {"sin", m_sin},             {"cos", m_cos},
    {"tanh", m_tanh},           {"sigmoid", m_sigmoid},
    {"relu", m_relu},           {"sign", m_sign},
    {"floor", m_floor},         {"neg_", m_neg_},
    {"exp_", m_exp_},           {"log_", m_log_},
    {"log1p_", m_log1p_},       {"sqrt_", m_sqrt_},
    {"abs_", m_abs_},           {"sin_", m_sin_},
    {"cos_", m_cos_},           {"tanh_", m_tanh_},
    {"sigmoid_", m_sigmoid_},   {"relu_", m_relu_},
    {"sign_", m_sign_},         {"floor_", m_floor_},
    {"clamp", m_clamp},         {"clamp_", m_clamp_},
    {"sum", m_sum},             {"mean", m_mean},
    {"prod", m_prod},           {"max", m_max},
    {"min", m_min},             {"argmax", m_argmax},
    {"argmin", m_argmin},       {"var", m_var},
    {"std", m_std},             {"norm", m_norm},
    {"logsumexp", m_logsumexp}, {"softmax", m_softmax},
    {"log_softmax", m_log_softmax},
    {NULL, NULL}};

const luaL_Reg lpbt_ops_functions[] = {{"where", f_where},
                                       {"allclose", f_allclose},
                                       {"equal", f_equal},
                                       {NULL, NULL}};

const luaL_Reg lpbt_ops_meta[] = {{"__add", mt_add}, {"__sub", mt_sub},
                                  {"__mul", mt_mul}, {"__div", mt_div},
                                  {"__pow", mt_pow}, {"__unm", mt_unm},
                                  {NULL, NULL}};
