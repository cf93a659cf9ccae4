/* lpbt_tensor.c -- pbt.Tensor: creation, metadata, views, access, printing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lpbt.h"

/* The dtype of a constructor's options table, which may hold nothing else
 * (a misspelt dtype is an error, not float32 in silence). */
static pbt_dtype opt_dtype_only(lua_State *L, int idx, pbt_dtype def) {
  static const char *const known[] = {"dtype", NULL};
  lpbt_check_options(L, idx, known);
  return lpbt_opt_dtype(L, idx, def);
}

/* ---- life cycle and metamethods ------------------------------------------ */

static int t_gc(lua_State *L) {
  lpbt_tensor *u = lpbt_tensor_at(L, 1); /* (not a userdata that debug gave this metatable) */
  if (!u) return lpbt_not_a_tensor(L, 1);
  pbt_tensor_release(&u->t);
  return 0;
}

int lpbt_tensor_index(lua_State *L) {
  const pbt_tensor *t;
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(3)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    if (strcmp(lua_tostring(L, 2), "T") == 0) {
      pbt_error err;
      pbt_tensor *r;
      t = lpbt_check_tensor(L, 1);
      if (t->ndim != 2)
        return luaL_error(L, "T: expects a 2-d tensor, got a %d-d tensor", t->ndim);
      lua_settop(L, 1);
      r = lpbt_push_tensor(L);
      LPBT_CHECK(L, "T", pbt_transpose(r, t, 0, 1, &err), &err);
      if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "t", 1, 1);
      return 1;
    }
    if (strcmp(lua_tostring(L, 2), "grad") == 0) {
      lpbt_check_tensor(L, 1);
      lua_getiuservalue(L, 1, LPBT_UV_GRAD);
      return 1;
    }
    if (strcmp(lua_tostring(L, 2), "grad_fn") == 0) {
      lpbt_check_tensor(L, 1);
      lpbt_push_node(L, 1);
      return 1;
    }
    if (strcmp(lua_tostring(L, 2), "requires_grad") == 0) {
      lua_pushboolean(L, LPBT_REQUIRES_GRAD(lpbt_check_tensor(L, 1)));
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

/* t.grad = g (a tensor of t's shape and dtype) or nil; no other field can
 * be set. */
static int t_newindex(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  const char *key = luaL_checkstring(L, 2);
  if (strcmp(key, "grad") != 0)
    return luaL_error(L, "cannot set field '%s' of a pbt.Tensor", key);
  if (!lua_isnil(L, 3)) {
    const pbt_tensor *g = lpbt_test_tensor(L, 3);
    char a[96], b[96];
    if (g == NULL)
      return luaL_error(L, "grad: a pbt.Tensor or nil expected, got %s", luaL_typename(L, 3));
    g = lpbt_check_tensor(L, 3); /* not released */
    if (g->dtype != t->dtype || !pbt_shape_equal(g->ndim, g->shape, t->ndim, t->shape)) {
      pbt_format_shape(a, sizeof a, g->ndim, g->shape);
      pbt_format_shape(b, sizeof b, t->ndim, t->shape);
      return luaL_error(L, "grad: a %s tensor of shape %s cannot be the grad of a %s "
                           "tensor of shape %s", pbt_dtype_name(g->dtype), a,
                        pbt_dtype_name(t->dtype), b);
    }
  }
  lua_settop(L, 3);
  lua_setiuservalue(L, 1, LPBT_UV_GRAD);
  return 0;
}

/* t:requires_grad_([on = true]): marks a leaf as needing gradients. */
static int m_requires_grad_(lua_State *L) {
  pbt_tensor *t = lpbt_check_tensor(L, 1);
  int on = lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2);
  if (!on) {
    lua_getiuservalue(L, 1, LPBT_UV_OP);
    if (!lua_isnil(L, -1))
      return luaL_error(L, "requires_grad_: only a leaf tensor can stop requiring grad "
                           "(use t:detach())");
    lua_pop(L, 1);
  }
  ((lpbt_tensor *)(void *)t)->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}

/* t:detach(): the same storage and geometry, outside the graph. */
static int m_detach(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  pbt_tensor *r = lpbt_push_tensor(L);
  pbt_tensor_share(r, t);
  return 1;
}

/* t:is_leaf(): true unless t was made by a recorded op. */
static int m_is_leaf(lua_State *L) {
  lpbt_check_tensor(L, 1);
  lua_getiuservalue(L, 1, LPBT_UV_OP);
  lua_pushboolean(L, lua_isnil(L, -1));
  return 1;
}

/* ---- creation -------------------------------------------------------------- */

static const char *const dtype_only[] = {"dtype", NULL};

pbt_tensor *lpbt_new_from_shape(lua_State *L, int first, const char *fname,
                                const char *const *known, int *opts) {
  int64_t shape[PBT_MAX_DIM];
  int next, ndim = lpbt_check_shape(L, first, shape, 0, &next);
  pbt_dtype dt;
  pbt_error err;
  pbt_tensor *t;
  if (!lua_isnoneornil(L, next) && lua_type(L, next) != LUA_TTABLE)
    luaL_argerror(L, next, lua_pushfstring(L, "size or options table expected, got %s",
                                           luaL_typename(L, next)));
  if (!lua_isnone(L, next + 1))
    luaL_argerror(L, next + 1, "unexpected argument after the options table");
  lpbt_check_options(L, next, known ? known : dtype_only);
  dt = lpbt_opt_dtype(L, next, PBT_FLOAT32);
  lua_settop(L, next); /* the options' slot stays below the new tensor (nil when none) */
  t = lpbt_push_tensor(L);
  LPBT_CHECK(L, fname, pbt_tensor_empty(t, dt, ndim, shape, &err), &err);
  lpbt_gc_hint(L, t);
  if (opts) *opts = next;
  return t;
}

static int f_empty(lua_State *L) {
  lpbt_new_from_shape(L, 1, "empty", NULL, NULL);
  return 1;
}

static int f_zeros(lua_State *L) {
  pbt_fill_(lpbt_new_from_shape(L, 1, "zeros", NULL, NULL), 0);
  return 1;
}

static int f_ones(lua_State *L) {
  pbt_fill_(lpbt_new_from_shape(L, 1, "ones", NULL, NULL), 1);
  return 1;
}

/* full(shape, v [, opts]): the shape is a table or a single size. */
static int f_full(lua_State *L) {
  int64_t shape[PBT_MAX_DIM];
  int next, ndim;
  double v;
  pbt_dtype dt;
  pbt_error err;
  pbt_tensor *t;
  if (lua_type(L, 1) == LUA_TTABLE) {
    ndim = lpbt_check_shape(L, 1, shape, 0, &next);
  } else {
    if (lua_type(L, 1) != LUA_TNUMBER) luaL_typeerror(L, 1, "size or shape table");
    shape[0] = lpbt_check_size(L, 1);
    ndim = 1;
    next = 2;
  }
  v = luaL_checknumber(L, next);
  dt = opt_dtype_only(L, next + 1, PBT_FLOAT32);
  t = lpbt_push_tensor(L);
  LPBT_CHECK(L, "full", pbt_tensor_empty(t, dt, ndim, shape, &err), &err);
  lpbt_gc_hint(L, t);
  pbt_fill_(t, v);
  return 1;
}

static int like(lua_State *L, const char *fname, double v) {
  const pbt_tensor *src = lpbt_check_tensor(L, 1);
  pbt_dtype dt = opt_dtype_only(L, 2, src->dtype);
  pbt_error err;
  pbt_tensor *t = lpbt_push_tensor(L);
  LPBT_CHECK(L, fname, pbt_tensor_empty(t, dt, src->ndim, src->shape, &err), &err);
  lpbt_gc_hint(L, t);
  pbt_fill_(t, v);
  return 1;
}

static int f_zeros_like(lua_State *L) { return like(L, "zeros_like", 0); }
static int f_ones_like(lua_State *L) { return like(L, "ones_like", 1); }

static int f_arange(lua_State *L) {
  double start = 0, stop, step = 1;
  int opts;
  pbt_dtype dt;
  pbt_error err;
  pbt_tensor *t;
  if (lua_type(L, 2) != LUA_TNUMBER) {
    stop = luaL_checknumber(L, 1);
    opts = 2;
  } else {
    start = luaL_checknumber(L, 1);
    stop = luaL_checknumber(L, 2);
    if (lua_type(L, 3) == LUA_TNUMBER) {
      step = lua_tonumber(L, 3);
      opts = 4;
    } else {
      opts = 3;
    }
  }
  if (step == 0) luaL_argerror(L, 3, "step must not be zero");
  dt = opt_dtype_only(L, opts, PBT_FLOAT32);
  t = lpbt_push_tensor(L);
  LPBT_CHECK(L, "arange", pbt_arange(t, start, stop, step, dt, &err), &err);
  lpbt_gc_hint(L, t);
  return 1;
}

static int f_linspace(lua_State *L) {
  double start = luaL_checknumber(L, 1), stop = luaL_checknumber(L, 2);
  int64_t n = lpbt_check_size(L, 3);
  pbt_dtype dt = opt_dtype_only(L, 4, PBT_FLOAT32);
  pbt_error err;
  pbt_tensor *t = lpbt_push_tensor(L);
  LPBT_CHECK(L, "linspace", pbt_linspace(t, start, stop, n, dt, &err), &err);
  lpbt_gc_hint(L, t);
  return 1;
}

static int f_eye(lua_State *L) {
  int64_t n = lpbt_check_size(L, 1), m = n;
  int opts = 2;
  pbt_dtype dt;
  pbt_error err;
  pbt_tensor *t;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    m = lpbt_check_size(L, 2);
    opts = 3;
  }
  dt = opt_dtype_only(L, opts, PBT_FLOAT32);
  t = lpbt_push_tensor(L);
  LPBT_CHECK(L, "eye", pbt_eye(t, n, m, dt, &err), &err);
  lpbt_gc_hint(L, t);
  return 1;
}

/* ---- tensors from nested tables ---------------------------------------- */

/* Shape of the nested table (or number) at arg, following first entries. */
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

/* Fills t from the nested table on top of the stack; what names it in
 * messages ("nested table", "index table"). */
static void nested_fill(lua_State *L, int arg, const char *what, pbt_tensor *t,
                        int d, int64_t *idx) {
  int64_t i;
  if (d == t->ndim) {
    int isnum;
    double v = lua_tonumberx(L, -1, &isnum);
    if (!isnum) {
      if (lua_isboolean(L, -1)) v = lua_toboolean(L, -1);
      else
        luaL_argerror(L, arg, lua_pushfstring(L, "number expected in %s, got %s", what,
                                              luaL_typename(L, -1)));
    }
    pbt_tensor_set(t, idx, v);
    return;
  }
  if (lua_type(L, -1) != LUA_TTABLE || LPBT_LEN(L, -1) != t->shape[d])
    luaL_argerror(L, arg, lua_pushfstring(L, "ragged %s: expected %I entries at depth %d",
                                          what, (lua_Integer)t->shape[d], d + 1));
  luaL_checkstack(L, 2, what);
  for (i = 0; i < t->shape[d]; i++) {
    idx[d] = i;
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    nested_fill(L, arg, what, t, d + 1, idx);
    lua_pop(L, 1);
  }
}

pbt_tensor *lpbt_tensor_from_table(lua_State *L, int arg, pbt_dtype dt,
                                   const char *fname, const char *what) {
  int64_t shape[PBT_MAX_DIM], idx[PBT_MAX_DIM];
  int ndim = nested_shape(L, arg, shape);
  pbt_error err;
  pbt_tensor *t = lpbt_push_tensor(L);
  LPBT_CHECK(L, fname, pbt_tensor_empty(t, dt, ndim, shape, &err), &err);
  lpbt_gc_hint(L, t);
  if (pbt_tensor_numel(t) > 0) {
    lua_pushvalue(L, arg);
    nested_fill(L, arg, what, t, 0, idx);
    lua_pop(L, 1);
  }
  return t;
}

/* tensor(nested_table_or_number [, opts]) */
int lpbt_tensor_new(lua_State *L) {
  pbt_dtype dt = opt_dtype_only(L, 2, PBT_FLOAT32);
  if (lua_type(L, 1) != LUA_TNUMBER && lua_type(L, 1) != LUA_TTABLE)
    return luaL_typeerror(L, 1, "table or number");
  lpbt_tensor_from_table(L, 1, dt, "tensor", "nested table");
  return 1;
}

/* ---- metadata -------------------------------------------------------------- */

static int m_shape(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int i;
  lua_createtable(L, t->ndim, 0);
  for (i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, (lua_Integer)t->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_stride(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int i;
  lua_createtable(L, t->ndim, 0);
  for (i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, (lua_Integer)t->stride[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_size(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  if (lua_isnoneornil(L, 2)) return m_shape(L);
  lua_pushinteger(L, (lua_Integer)t->shape[lpbt_check_dim(L, 2, t->ndim)]);
  return 1;
}

static int m_dim(lua_State *L) {
  lua_pushinteger(L, lpbt_check_tensor(L, 1)->ndim);
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)pbt_tensor_numel(lpbt_check_tensor(L, 1)));
  return 1;
}

static int m_dtype(lua_State *L) {
  lua_pushstring(L, pbt_dtype_name(lpbt_check_tensor(L, 1)->dtype));
  return 1;
}

static int m_is_contiguous(lua_State *L) {
  lua_pushboolean(L, pbt_tensor_is_contiguous(lpbt_check_tensor(L, 1)));
  return 1;
}

static pbt_dtype check_dtype_name(lua_State *L, int arg) {
  const char *name = luaL_checkstring(L, arg);
  pbt_dtype dt;
  if (pbt_dtype_from_name(name, &dt) != 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "unknown dtype '%s' (float32 or float64)",
                                          name));
  return dt;
}

static int m_astype(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  pbt_dtype dt = check_dtype_name(L, 2);
  pbt_error err;
  pbt_tensor *r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "astype", pbt_astype(r, t, dt, &err), &err);
  lpbt_gc_hint(L, r);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "astype", nargs, 1);
  return 1;
}

/* ---- views ------------------------------------------------------------------ */

static int view_or_reshape(lua_State *L, int copy_ok, const char *fname) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int64_t shape[PBT_MAX_DIM];
  int next, ndim = lpbt_check_shape(L, 2, shape, 1, &next);
  pbt_error err;
  pbt_tensor *r;
  if (!lua_isnone(L, next))
    luaL_argerror(L, next, lua_pushfstring(L, "size expected, got %s",
                                           luaL_typename(L, next)));
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, fname,
             copy_ok ? pbt_reshape(r, t, ndim, shape, &err)
                     : pbt_view(r, t, ndim, shape, &err),
             &err);
  if (r->storage != t->storage) lpbt_gc_hint(L, r); /* reshape copied */
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, fname, nargs, 1);
  return 1;
}

static int m_view(lua_State *L) { return view_or_reshape(L, 0, "view"); }
static int m_reshape(lua_State *L) { return view_or_reshape(L, 1, "reshape"); }

static int m_transpose(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int d1 = lpbt_check_dim(L, 2, t->ndim), d2 = lpbt_check_dim(L, 3, t->ndim);
  pbt_error err;
  pbt_tensor *r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "transpose", pbt_transpose(r, t, d1, d2, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "transpose", nargs, 1);
  return 1;
}

static int m_t(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  pbt_error err;
  pbt_tensor *r;
  luaL_argcheck(L, t->ndim == 2, 1,
                lua_pushfstring(L, "expects a 2-d tensor, got a %d-d tensor", t->ndim));
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "t", pbt_transpose(r, t, 0, 1, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "t", nargs, 1);
  return 1;
}

static int m_permute(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int perm[PBT_MAX_DIM], i, n;
  pbt_error err;
  pbt_tensor *r;
  if (lua_type(L, 2) == LUA_TTABLE) { /* permute{...}: spread the table */
    lua_Integer len = LPBT_LEN(L, 2);
    luaL_argcheck(L, len == t->ndim, 2,
                  lua_pushfstring(L, "permutation of %I dimensions for a %d-d tensor",
                                  len, t->ndim));
    n = (int)len;
    lua_settop(L, 2);
    luaL_checkstack(L, n, "permute");
    for (i = 0; i < n; i++) lua_rawgeti(L, 2, i + 1);
    lua_remove(L, 2);
  }
  n = lua_gettop(L) - 1;
  luaL_argcheck(L, n == t->ndim, 2,
                lua_pushfstring(L, "permutation of %d dimensions for a %d-d tensor",
                                n, t->ndim));
  for (i = 0; i < n; i++) {
    int k;
    perm[i] = lpbt_check_dim(L, 2 + i, t->ndim);
    for (k = 0; k < i; k++)
      if (perm[k] == perm[i])
        luaL_argerror(L, 2 + i, lua_pushfstring(L, "dimension %d repeated in permutation",
                                                perm[i] + 1));
  }
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "permute", pbt_permute(r, t, perm, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "permute", n + 1, 1);
  return 1;
}

static int m_narrow(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int dim = lpbt_check_dim(L, 2, t->ndim);
  int64_t arg = lpbt_check_integer(L, 3), len = lpbt_check_size(L, 4);
  int64_t start = arg < 0 ? arg + t->shape[dim] + 1 : arg; /* -1: the last */
  pbt_error err;
  pbt_tensor *r;
  luaL_argcheck(L, arg != 0 && start >= 1 && start <= t->shape[dim] + 1, 3,
                lua_pushfstring(L, "start %I out of range for size %I",
                                (lua_Integer)arg, (lua_Integer)t->shape[dim]));
  luaL_argcheck(L, len <= t->shape[dim] - (start - 1), 4,
                lua_pushfstring(L, "length %I from start %I exceeds size %I",
                                (lua_Integer)len, (lua_Integer)arg,
                                (lua_Integer)t->shape[dim]));
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "narrow", pbt_narrow(r, t, dim, start - 1, len, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "narrow", nargs, 1);
  return 1;
}

/* A 1-based (or negative) index into a dimension of size n, as 0-based. */
static int64_t check_index(lua_State *L, int arg, int64_t n) {
  int64_t i = lpbt_check_integer(L, arg);
  int64_t z = i < 0 ? i + n : i - 1;
  if (i == 0 || z < 0 || z >= n)
    luaL_argerror(L, arg, lua_pushfstring(L, "index %I out of range for size %I",
                                          (lua_Integer)i, (lua_Integer)n));
  return z;
}

static int m_select(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int dim = lpbt_check_dim(L, 2, t->ndim);
  int64_t i = check_index(L, 3, t->shape[dim]);
  pbt_error err;
  pbt_tensor *r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "select", pbt_slice(r, t, dim, i, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "select", nargs, 1);
  return 1;
}

static int m_unsqueeze(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int64_t d = lpbt_check_integer(L, 2);
  int64_t dim = d < 0 ? d + t->ndim + 1 : d - 1; /* 1..ndim+1, -1 appends */
  pbt_error err;
  pbt_tensor *r;
  if (d == 0 || dim < 0 || dim > t->ndim)
    luaL_argerror(L, 2, lua_pushfstring(L, "dimension %I out of range for unsqueezing "
                                           "a %d-d tensor", (lua_Integer)d, t->ndim));
  luaL_argcheck(L, t->ndim < PBT_MAX_DIM, 1,
                lua_pushfstring(L, "a tensor has at most %d dimensions", PBT_MAX_DIM));
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "unsqueeze", pbt_unsqueeze(r, t, (int)dim, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "unsqueeze", nargs, 1);
  return 1;
}

static int m_squeeze(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int dim = lpbt_opt_dim(L, 2, t->ndim, -1);
  pbt_error err;
  pbt_tensor *r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "squeeze", pbt_squeeze(r, t, dim, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "squeeze", nargs, 1);
  return 1;
}

static int m_expand(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int64_t shape[PBT_MAX_DIM];
  int next, ndim = lpbt_check_shape(L, 2, shape, 1, &next);
  pbt_error err;
  pbt_tensor *r;
  if (!lua_isnone(L, next))
    luaL_argerror(L, next, lua_pushfstring(L, "size expected, got %s",
                                           luaL_typename(L, next)));
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "expand", pbt_expand(r, t, ndim, shape, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "expand", nargs, 1);
  return 1;
}

static int m_expand_as(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1), *o = lpbt_check_tensor(L, 2);
  pbt_error err;
  pbt_tensor *r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "expand_as", pbt_expand(r, t, o->ndim, o->shape, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "expand_as", nargs, 1);
  return 1;
}

static int m_flatten(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int nd = t->ndim > 0 ? t->ndim : 1;
  int start = lpbt_opt_dim(L, 2, nd, 0), end = lpbt_opt_dim(L, 3, nd, nd - 1);
  pbt_error err;
  pbt_tensor *r;
  luaL_argcheck(L, start <= end, 2, "start dimension after end dimension");
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "flatten", pbt_flatten(r, t, start, end, &err), &err);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "flatten", nargs, 1);
  return 1;
}

/* ---- copies --------------------------------------------------------------------- */

static int m_contiguous(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  pbt_error err;
  pbt_tensor *r;
  if (pbt_tensor_is_contiguous(t)) {
    lua_settop(L, 1);
    return 1;
  }
  r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "contiguous", pbt_contiguous(r, t, &err), &err);
  lpbt_gc_hint(L, r);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "contiguous", nargs, 1);
  return 1;
}

static int m_clone(lua_State *L) {
  int nargs = lua_gettop(L);
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  pbt_error err;
  pbt_tensor *r = lpbt_push_tensor(L);
  LPBT_CHECK(L, "clone", pbt_clone(r, t, &err), &err);
  lpbt_gc_hint(L, r);
  if (LPBT_REQUIRES_GRAD(t)) lpbt_record(L, "clone", nargs, 1);
  return 1;
}

static int m_copy_(lua_State *L) {
  pbt_tensor *t = lpbt_check_tensor(L, 1);
  const pbt_tensor *src = lpbt_check_tensor(L, 2);
  pbt_error err;
  lpbt_check_inplace(L, t, "copy_");
  if (LPBT_REQUIRES_GRAD(src) && lpbt_grad_enabled(L))
    return luaL_error(L, "copy_: the argument requires grad, the in-place result could not "
                         "carry it (use the out-of-place op, or pbt.no_grad)");
  LPBT_CHECK(L, "copy_", pbt_copy_(t, src, &err), &err);
  LPBT_CHANGED(t);
  lua_settop(L, 1);
  return 1;
}

static int m_fill_(lua_State *L) {
  pbt_tensor *t = lpbt_check_tensor(L, 1);
  lpbt_check_inplace(L, t, "fill_");
  pbt_fill_(t, luaL_checknumber(L, 2));
  LPBT_CHANGED(t);
  lua_settop(L, 1);
  return 1;
}

static int m_zero_(lua_State *L) {
  pbt_tensor *t = lpbt_check_tensor(L, 1);
  lpbt_check_inplace(L, t, "zero_");
  pbt_fill_(t, 0);
  LPBT_CHANGED(t);
  lua_settop(L, 1);
  return 1;
}

/* ---- access ------------------------------------------------------------------------ */

static void check_indices(lua_State *L, const pbt_tensor *t, int first,
                          int64_t *idx) {
  int i;
  for (i = 0; i < t->ndim; i++) idx[i] = check_index(L, first + i, t->shape[i]);
}

static int m_get(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int64_t idx[PBT_MAX_DIM];
  if (lua_gettop(L) - 1 != t->ndim)
    return luaL_error(L, "get: expected %d indices for a %d-d tensor, got %d",
                      t->ndim, t->ndim, lua_gettop(L) - 1);
  check_indices(L, t, 2, idx);
  lua_pushnumber(L, pbt_tensor_get(t, idx));
  return 1;
}

static int m_set(lua_State *L) {
  pbt_tensor *t = lpbt_check_tensor(L, 1);
  int64_t idx[PBT_MAX_DIM];
  int top = lua_gettop(L);
  if (top - 2 != t->ndim)
    return luaL_error(L, "set: expected %d indices and a value for a %d-d tensor, "
                      "got %d arguments", t->ndim, t->ndim, top - 1);
  check_indices(L, t, 2, idx);
  lpbt_check_inplace(L, t, "set");
  pbt_tensor_set(t, idx, luaL_checknumber(L, top));
  LPBT_CHANGED(t);
  lua_settop(L, 1);
  return 1;
}

static int m_item(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int64_t n = pbt_tensor_numel(t);
  if (n != 1)
    return luaL_error(L, "item: tensor has %I elements, expected exactly one",
                      (lua_Integer)n);
  lua_pushnumber(L, pbt_tensor_get_flat(t, 0));
  return 1;
}

static void push_nested(lua_State *L, const pbt_tensor *t, int d, int64_t *idx) {
  int64_t i;
  if (d == t->ndim) {
    lua_pushnumber(L, pbt_tensor_get(t, idx));
    return;
  }
  luaL_checkstack(L, 4, "totable");
  lua_createtable(L, (int)t->shape[d], 0);
  for (i = 0; i < t->shape[d]; i++) {
    idx[d] = i;
    push_nested(L, t, d + 1, idx);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static int m_totable(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  int64_t idx[PBT_MAX_DIM];
  push_nested(L, t, 0, idx);
  return 1;
}

/* ---- printing ------------------------------------------------------------------------ */

#define EDGE 3        /* entries shown at each end of a summarised dimension */
#define SUMMARISE 1000 /* summarise tensors with more elements than this */

typedef struct printer {
  luaL_Buffer b;
  const pbt_tensor *t;
  int summarise, integral, sci;
  int width; /* of the widest shown value: every value is padded to it */
  double mx, mn;
} printer;

static int shown(const printer *p, int d, int64_t i) {
  return !p->summarise || p->t->shape[d] <= 2 * EDGE || i < EDGE ||
         i >= p->t->shape[d] - EDGE;
}

static void format_value(const printer *p, double v, char *buf, size_t n) {
  if (isnan(v)) snprintf(buf, n, "nan");
  else if (isinf(v)) snprintf(buf, n, v > 0 ? "inf" : "-inf");
  else if (p->integral) snprintf(buf, n, "%.0f", v);
  else if (p->sci) snprintf(buf, n, "%.4e", v);
  else snprintf(buf, n, "%.4f", v);
}

/* Calls f on every shown element (in row-major order). */
static void each_shown(printer *p, int d, int64_t *idx,
                       void (*f)(printer *p, double v)) {
  int64_t i;
  if (d == p->t->ndim) {
    f(p, pbt_tensor_get(p->t, idx));
    return;
  }
  for (i = 0; i < p->t->shape[d]; i++) {
    if (!shown(p, d, i)) continue;
    idx[d] = i;
    each_shown(p, d + 1, idx, f);
  }
}

/* Largest and smallest non-zero magnitude among shown finite elements, and
 * whether they are all integers. */
static void scan_value(printer *p, double v) {
  double a = fabs(v);
  if (!isfinite(v)) return;
  if (a > p->mx) p->mx = a;
  if (a > 0 && a < p->mn) p->mn = a;
  if (v != floor(v) || a >= 1e15) p->integral = 0;
}

static void width_value(printer *p, double v) {
  char buf[64];
  int len;
  format_value(p, v, buf, sizeof buf);
  len = (int)strlen(buf);
  if (len > p->width) p->width = len;
}

/* Between items of dimension d: ", " in the last dimension, else "," then
 * one newline per inner dimension and an indent of d + 1. */
static void separator(printer *p, int d) {
  int k;
  luaL_addchar(&p->b, ',');
  if (d == p->t->ndim - 1) {
    luaL_addchar(&p->b, ' ');
    return;
  }
  for (k = d; k < p->t->ndim - 1; k++) luaL_addchar(&p->b, '\n');
  for (k = 0; k <= d; k++) luaL_addchar(&p->b, ' ');
}

static void emit(printer *p, int d, int64_t *idx) {
  int64_t i, n = p->t->shape[d];
  char buf[64];
  int k;
  luaL_addchar(&p->b, '[');
  for (i = 0; i < n; i++) {
    if (!shown(p, d, i)) {
      if (i == EDGE) {
        separator(p, d);
        luaL_addstring(&p->b, "...");
      }
      continue;
    }
    if (i > 0) separator(p, d);
    idx[d] = i;
    if (d == p->t->ndim - 1) {
      format_value(p, pbt_tensor_get(p->t, idx), buf, sizeof buf);
      for (k = (int)strlen(buf); k < p->width; k++) luaL_addchar(&p->b, ' ');
      luaL_addstring(&p->b, buf);
    } else {
      emit(p, d + 1, idx);
    }
  }
  luaL_addchar(&p->b, ']');
}

static int t_tostring(lua_State *L) {
  const lpbt_tensor *u = lpbt_tensor_at(L, 1);
  const pbt_tensor *t = u ? &u->t : NULL;
  printer p;
  int64_t idx[PBT_MAX_DIM];
  char shape[128];
  if (!t) return lpbt_not_a_tensor(L, 1);
  if (!t->storage) { /* as io's "file (closed)": printing never raises */
    lua_pushliteral(L, "pbt.Tensor (released)");
    return 1;
  }
  p.t = t;
  p.summarise = pbt_tensor_numel(t) > SUMMARISE;
  p.integral = 1;
  p.mx = 0, p.mn = HUGE_VAL;
  p.sci = 0;
  p.width = 0;
  if (pbt_tensor_numel(t) > 0) { /* an empty tensor may still have long dims */
    each_shown(&p, 0, idx, scan_value);
    p.sci = !p.integral && (p.mx >= 1e6 || p.mn < 1e-4);
    each_shown(&p, 0, idx, width_value);
  }
  luaL_buffinit(L, &p.b);
  if (t->ndim == 0) {
    char buf[64];
    format_value(&p, pbt_tensor_get(t, idx), buf, sizeof buf);
    luaL_addstring(&p.b, buf);
  } else if (pbt_tensor_numel(t) == 0) {
    luaL_addstring(&p.b, "[]");
  } else {
    emit(&p, 0, idx);
  }
  pbt_format_shape(shape, sizeof shape, t->ndim, t->shape);
  lua_pushfstring(L, "\n[pbt.Tensor %s of shape %s]", pbt_dtype_name(t->dtype), shape);
  luaL_addvalue(&p.b);
  luaL_pushresult(&p.b);
  return 1;
}

/* ---- registration ----------------------------------------------------------------------- */

const luaL_Reg lpbt_tensor_methods[] = {
    {"shape", m_shape},         {"stride", m_stride},
    {"size", m_size},           {"dim", m_dim},
    {"numel", m_numel},         {"dtype", m_dtype},
    {"is_contiguous", m_is_contiguous},
    {"astype", m_astype},       {"view", m_view},
    {"reshape", m_reshape},     {"transpose", m_transpose},
    {"t", m_t},                 {"permute", m_permute},
    {"narrow", m_narrow},       {"select", m_select},
    {"unsqueeze", m_unsqueeze}, {"squeeze", m_squeeze},
    {"expand", m_expand},       {"expand_as", m_expand_as},
    {"flatten", m_flatten},     {"contiguous", m_contiguous},
    {"clone", m_clone},         {"copy_", m_copy_},
    {"fill_", m_fill_},         {"zero_", m_zero_},
    {"get", m_get},             {"set", m_set},
    {"item", m_item},           {"totable", m_totable},
    {"requires_grad_", m_requires_grad_}, {"detach", m_detach},
    {"is_leaf", m_is_leaf},
    {NULL, NULL}};

const luaL_Reg lpbt_tensor_functions[] = {
    {"tensor", lpbt_tensor_new},         {"empty", f_empty},
    {"zeros", f_zeros},           {"ones", f_ones},
    {"full", f_full},             {"zeros_like", f_zeros_like},
    {"ones_like", f_ones_like},   {"arange", f_arange},
    {"linspace", f_linspace},     {"eye", f_eye},
    {NULL, NULL}};

const luaL_Reg lpbt_tensor_meta[] = {{"__gc", t_gc},
                                     {"__close", t_gc},
                                     {"__tostring", t_tostring},
                                     {"__newindex", t_newindex},
                                     {NULL, NULL}};

const luaL_Reg lpbt_tensor_module[] = {{NULL, NULL}};
