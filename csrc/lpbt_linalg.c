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
#include "pbt_index.h"
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
    LPBT_CHANGED(out);
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
  LPBT_CHANGED(out);
  lua_settop(L, 1);
  return 1;
}

static int f_addmm(lua_State *L) { return addmm(L, "addmm"); }
static int m_addmm_(lua_State *L) { return addmm(L, "addmm_"); }

/* ---- index arguments ----------------------------------------------------------- */

/* The indices at arg: a pbt.Tensor, or a (nested) table turned into a
 * float64 tensor that is pushed on the stack to stay alive. */
static const pbt_tensor *check_index_arg(lua_State *L, int arg,
                                         const char *fname) {
  if (lpbt_test_tensor(L, arg)) return lpbt_check_tensor(L, arg);
  if (lua_type(L, arg) != LUA_TTABLE)
    luaL_typeerror(L, arg, "pbt.Tensor or table");
  return lpbt_tensor_from_table(L, arg, PBT_FLOAT64, fname, "index table");
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
  LPBT_CHANGED(t);
  lua_settop(L, 1);
  return 1;
}

/* one_hot(labels, n [, opts]) */
static int f_one_hot(lua_State *L) {
  int64_t n = lpbt_check_size(L, 2);
  pbt_dtype dt;
  {
    static const char *const known[] = {"dtype", NULL};
    lpbt_check_options(L, 3, known);
  }
  dt = lpbt_opt_dtype(L, 3, PBT_FLOAT32);
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
