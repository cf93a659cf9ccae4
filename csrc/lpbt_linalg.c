/*
 * lpbt_linalg.c -- the Lua binding of matrix products and indexing.
 *
 *   a:matmul(b [, out])            torch.matmul; writes into out when given
 *   a:dot(b), a:outer(b)           1-d tensors
 *   pbt.tensor.addmm(out, a, b [, alpha=1 [, beta=1]])
 *   out:addmm_(a, b [, alpha [, beta]])
 *                                  out = beta * out + alpha * a@b, returns out
 *   t:index_select(dim, idx)       idx: 1-d tensor or table of 1-based indices
 *   t:gather(dim, idx)             torch.gather with 1-based indices
 *   t:scatter_add_(dim, idx, src)  torch.Tensor.scatter_add_, returns t
 *   pbt.tensor.one_hot(labels, n [, {dtype=}])
 *
 * Index tensors hold integral float values; they are passed to the core
 * unchanged with base 1 (no copy).  A table of indices is turned into a
 * float64 tensor first.  Bad index values raise "<fn>: index 7 out of range
 * for size 5" / "<fn>: index 2.5 is not an integer".
 */
#include "lpbt.h"
#include "pbt_linalg.h"

#include <limits.h>

/* ---- products --------------------------------------------------------------- */

/* matmul(a, b [, out]) */
static int m_matmul(lua_State *L) {
  const pbt_tensor *a = lpbt_check_tensor(L, 1), *b = lpbt_check_tensor(L, 2);
  pbt_tensor *out;
  pbt_error err;
  if (!lua_isnoneornil(L, 3)) {
    out = lpbt_check_tensor(L, 3);
    lpbt_check_inplace(L, out, "matmul");
    lua_settop(L, 3);
    LPBT_CHECK(L, "matmul", pbt_matmul(out, a, b, &err), &err);
  } else {
    lua_settop(L, 2);
    out = lpbt_push_tensor(L);
    LPBT_CHECK(L, "matmul", pbt_matmul(out, a, b, &err), &err);
    lpbt_gc_hint(L, out);
  }
  if (LPBT_REQUIRES_GRAD(a) || LPBT_REQUIRES_GRAD(b)) lpbt_record(L, "matmul", 2, 1);
  return 1;
}

static int m_dot(lua_State *L) {
  const pbt_tensor *a = lpbt_check_tensor(L, 1), *b = lpbt_check_tensor(L, 2);
  pbt_error err;
  pbt_tensor *out;
  lua_settop(L, 2);
  out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "dot", pbt_dot(out, a, b, &err), &err);
  lpbt_gc_hint(L, out);
  if (LPBT_REQUIRES_GRAD(a) || LPBT_REQUIRES_GRAD(b)) lpbt_record(L, "dot", 2, 1);
  return 1;
}

static int m_outer(lua_State *L) {
  const pbt_tensor *a = lpbt_check_tensor(L, 1), *b = lpbt_check_tensor(L, 2);
  pbt_error err;
  pbt_tensor *out;
  lua_settop(L, 2);
  out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "outer", pbt_outer(out, a, b, &err), &err);
  lpbt_gc_hint(L, out);
  if (LPBT_REQUIRES_GRAD(a) || LPBT_REQUIRES_GRAD(b)) lpbt_record(L, "outer", 2, 1);
  return 1;
}

static int addmm(lua_State *L, const char *fname) {
  pbt_tensor *out = lpbt_check_tensor(L, 1);
  const pbt_tensor *a = lpbt_check_tensor(L, 2), *b = lpbt_check_tensor(L, 3);
  double alpha = luaL_optnumber(L, 4, 1), beta = luaL_optnumber(L, 5, 1);
  pbt_error err;
  lpbt_check_inplace(L, out, fname);
  LPBT_CHECK(L, fname, pbt_addmm(out, a, b, alpha, beta, &err), &err);
  lua_settop(L, 1);
  return 1;
}

static int f_addmm(lua_State *L) { return addmm(L, "addmm"); }
static int m_addmm_(lua_State *L) { return addmm(L, "addmm_"); }

/* ---- index arguments ----------------------------------------------------------- */

/* Shape of a nested table of numbers, following the first entries. */
static int nested_shape(lua_State *L, int arg, int64_t *shape) {
  int n = 0;
  lua_pushvalue(L, arg);
  while (lua_type(L, -1) == LUA_TTABLE) {
    if (n == PBT_MAX_DIM)
      luaL_argerror(L, arg, lua_pushfstring(L, "more than %d levels of nesting",
                                            PBT_MAX_DIM));
    shape[n++] = (int64_t)LPBT_LEN(L, -1);
    if (shape[n - 1] == 0) break;
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return n;
}

/* Fills t from the nested table on top of the stack. */
static void nested_fill(lua_State *L, int arg, pbt_tensor *t, int d,
                        int64_t *idx) {
  int64_t i;
  if (d == t->ndim) {
    int isnum;
    double v = lua_tonumberx(L, -1, &isnum);
    if (!isnum)
      luaL_argerror(L, arg, lua_pushfstring(L, "number expected in index table, got %s",
                                            luaL_typename(L, -1)));
    pbt_tensor_set(t, idx, v);
    return;
  }
  if (lua_type(L, -1) != LUA_TTABLE || LPBT_LEN(L, -1) != t->shape[d])
    luaL_argerror(L, arg, "ragged index table");
  luaL_checkstack(L, 2, "index table");
  for (i = 0; i < t->shape[d]; i++) {
    idx[d] = i;
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    nested_fill(L, arg, t, d + 1, idx);
    lua_pop(L, 1);
  }
}

/* The indices at arg: a pbt.Tensor, or a (nested) table turned into a
 * float64 tensor that is pushed on the stack to stay alive. */
static const pbt_tensor *check_index_arg(lua_State *L, int arg,
                                         const char *fname) {
  int64_t shape[PBT_MAX_DIM], idx[PBT_MAX_DIM];
  pbt_tensor *t = lpbt_test_tensor(L, arg);
  pbt_error err;
  int ndim;
  if (t) return lpbt_check_tensor(L, arg);
  if (lua_type(L, arg) != LUA_TTABLE)
    luaL_typeerror(L, arg, "pbt.Tensor or table");
  ndim = nested_shape(L, arg, shape);
  t = lpbt_push_tensor(L);
  LPBT_CHECK(L, fname, pbt_tensor_empty(t, PBT_FLOAT64, ndim, shape, &err), &err);
  if (pbt_tensor_numel(t) > 0) {
    lua_pushvalue(L, arg);
    nested_fill(L, arg, t, 0, idx);
    lua_pop(L, 1);
  }
  return t;
}

/* ---- indexing -------------------------------------------------------------------- */

static int m_index_select(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int nargs = lua_gettop(L);
  int dim = lpbt_check_dim(L, 2, t->ndim);
  const pbt_tensor *idx = check_index_arg(L, 3, "index_select");
  pbt_error err;
  pbt_tensor *out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "index_select", pbt_index_select(out, t, dim, idx, 1, &err), &err);
  lpbt_gc_hint(L, out);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "index_select", nargs, 1);
  return 1;
}

static int m_gather(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int nargs = lua_gettop(L);
  int dim = lpbt_check_dim(L, 2, t->ndim);
  const pbt_tensor *idx = check_index_arg(L, 3, "gather");
  pbt_error err;
  pbt_tensor *out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "gather", pbt_gather(out, t, dim, idx, 1, &err), &err);
  lpbt_gc_hint(L, out);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "gather", nargs, 1);
  return 1;
}

static int m_scatter_add_(lua_State *L) {
  pbt_tensor *t = lpbt_check_tensor(L, 1);
  int dim = lpbt_check_dim(L, 2, t->ndim);
  const pbt_tensor *idx = check_index_arg(L, 3, "scatter_add_");
  const pbt_tensor *src = lpbt_check_tensor(L, 4);
  pbt_error err;
  lpbt_check_inplace(L, t, "scatter_add_");
  LPBT_CHECK(L, "scatter_add_", pbt_scatter_add_(t, dim, idx, src, 1, &err), &err);
  lua_settop(L, 1);
  return 1;
}

/* one_hot(labels, n [, opts]) */
static int f_one_hot(lua_State *L) {
  int64_t n = lpbt_check_size(L, 2);
  pbt_dtype dt = lpbt_opt_dtype(L, 3, PBT_FLOAT32);
  const pbt_tensor *labels = check_index_arg(L, 1, "one_hot");
  pbt_error err;
  pbt_tensor *out = lpbt_push_tensor(L);
  LPBT_CHECK(L, "one_hot", pbt_one_hot(out, labels, n, 1, dt, &err), &err);
  lpbt_gc_hint(L, out);
  return 1;
}

/* ---- registration ------------------------------------------------------------------ */

const luaL_Reg lpbt_linalg_methods[] = {
    {"matmul", m_matmul},
    {"dot", m_dot},
    {"outer", m_outer},
    {"addmm_", m_addmm_},
    {"index_select", m_index_select},
    {"gather", m_gather},
    {"scatter_add_", m_scatter_add_},
    {NULL, NULL}};

const luaL_Reg lpbt_linalg_functions[] = {
    {"addmm", f_addmm}, {"one_hot", f_one_hot}, {NULL, NULL}};
