/*
 * lpbt_gp.c -- pbt.core.gp: Gaussian-process regression with PB2's
 * time-varying kernel (csrc/pbt_gp.h), for pbt.explore.pb2.
 *
 *   gp.new(x, y, theta) -> a pbt.GP          x: {{t, f1, ...}, ...}, y: {...} or nil
 *   gp.fit(x, y [, start]) -> theta, {lml =, iterations =, evaluations =}
 *   gp.ucb_max(mean_gp, var_gp, {fixed =, kappa =, starts =, candidates =, generator =})
 *       -> x, value
 *   g:predict(xs) -> means, variances     g:lml()   g:grad()   g:theta()   g:size()
 *   g:jitter()
 *
 * theta = {variance =, lengthscale =, epsilon =, noise =}.  Lua arrays are
 * copied into Lua-owned buffers first, so an error raised half way leaks
 * nothing; a GP's memory is freed by its __gc (or __close).
 */
#include <stdint.h>
#include <string.h>

#include "lpbt.h"
#include "pbt_gp.h"

#define LPBT_GP "pbt.GP"

typedef struct lpbt_gp {
  pbt_gp *gp;
} lpbt_gp;

static double *push_doubles(lua_State *L, size_t n) {
  if (n > SIZE_MAX / sizeof(double) / 2) luaL_error(L, "not enough memory");
  return (double *)lua_newuserdatauv(L, (n ? n : 1) * sizeof(double), 0);
}

/* The numbers of the array at idx (1..len) into x; errors name fname and
 * what. */
static void read_row(lua_State *L, int idx, lua_Integer len, double *x, const char *fname,
                     const char *what) {
  lua_Integer k;
  for (k = 1; k <= len; k++) {
    int isnum = 0;
    lua_rawgeti(L, idx, k);
    x[k - 1] = (double)lua_tonumberx(L, -1, &isnum);
    if (!isnum)
      luaL_error(L, "%s: %s: item %d is a %s, not a number", fname, what, (int)k,
                 luaL_typename(L, -1));
    lua_pop(L, 1);
  }
}

/* A list of points at arg: an array of arrays of numbers, all of one
 * length (dims; when *dims > 0 on entry, that length).  The values are
 * pushed in a buffer. */
static double *read_points(lua_State *L, int arg, const char *fname, const char *what,
                           int64_t *n, int64_t *dims) {
  lua_Integer k, len, d = -1;
  double *x;
  if (lua_type(L, arg) != LUA_TTABLE)
    luaL_error(L, "%s: %s must be a list of points (tables of numbers), got %s", fname, what,
               luaL_typename(L, arg));
  len = LPBT_LEN(L, arg);
  if (len < 1) luaL_error(L, "%s: %s is empty", fname, what);
  for (k = 1; k <= len; k++) {
    lua_Integer dk;
    if (lua_rawgeti(L, arg, k) != LUA_TTABLE)
      luaL_error(L, "%s: %s: point %d is a %s, not a table of numbers", fname, what, (int)k,
                 luaL_typename(L, -1));
    dk = LPBT_LEN(L, -1);
    lua_pop(L, 1);
    if (d < 0) d = dk;
    if (dk != d || (*dims > 0 && dk != *dims))
      luaL_error(L, "%s: %s: point %d has %d values, expected %d", fname, what, (int)k, (int)dk,
                 (int)(*dims > 0 ? *dims : d));
  }
  if (d < 1) luaL_error(L, "%s: %s: a point needs at least 1 value (the time)", fname, what);
  if ((uint64_t)len > (uint64_t)(SIZE_MAX / 16) / (uint64_t)d)
    luaL_error(L, "%s: %s: too many points", fname, what);
  x = push_doubles(L, (size_t)(len * d));
  for (k = 1; k <= len; k++) {
    lua_rawgeti(L, arg, k);
    read_row(L, lua_gettop(L), d, x + (k - 1) * d, fname, what);
    lua_pop(L, 1);
  }
  *n = (int64_t)len;
  *dims = (int64_t)d;
  return x;
}

/* An array of exactly n numbers at arg (pushed in a buffer). */
static double *read_values(lua_State *L, int arg, int64_t n, const char *fname, const char *what) {
  double *v;
  if (lua_type(L, arg) != LUA_TTABLE)
    luaL_error(L, "%s: %s must be a list of numbers, got %s", fname, what, luaL_typename(L, arg));
  if (LPBT_LEN(L, arg) != n)
    luaL_error(L, "%s: %s has %d values, expected %d (one per point)", fname, what,
               (int)LPBT_LEN(L, arg), (int)n);
  v = push_doubles(L, (size_t)n);
  read_row(L, arg, (lua_Integer)n, v, fname, what);
  return v;
}

static const char *const theta_fields[] = {"variance", "lengthscale", "epsilon", "noise", NULL};

static double theta_field(lua_State *L, int idx, const char *fname, const char *name, double def,
                          int required) {
  double v = def;
  int t = lpbt_rawfield(L, idx, name);
  if (t == LUA_TNIL) {
    if (required) luaL_error(L, "%s: kernel parameters need the field '%s'", fname, name);
  } else if (t != LUA_TNUMBER) {
    luaL_error(L, "%s: kernel parameter '%s' must be a number, got %s", fname, name,
               luaL_typename(L, -1));
  } else {
    v = (double)lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* theta from the table at arg; with defaults (PB2's start: 1, 1, 0.1, 1)
 * when not required, or for a none/nil argument. */
static pbt_gp_theta read_theta(lua_State *L, int arg, const char *fname, int required) {
  pbt_gp_theta t = {1.0, 1.0, 0.1, 1.0};
  if (lua_isnoneornil(L, arg) && !required) return t;
  luaL_checktype(L, arg, LUA_TTABLE);
  lpbt_check_options(L, arg, theta_fields);
  t.variance = theta_field(L, arg, fname, "variance", t.variance, required);
  t.lengthscale = theta_field(L, arg, fname, "lengthscale", t.lengthscale, required);
  t.epsilon = theta_field(L, arg, fname, "epsilon", t.epsilon, required);
  t.noise = theta_field(L, arg, fname, "noise", t.noise, required);
  return t;
}

static void push_theta(lua_State *L, const pbt_gp_theta *t) {
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, t->variance);
  lua_setfield(L, -2, "variance");
  lua_pushnumber(L, t->lengthscale);
  lua_setfield(L, -2, "lengthscale");
  lua_pushnumber(L, t->epsilon);
  lua_setfield(L, -2, "epsilon");
  lua_pushnumber(L, t->noise);
  lua_setfield(L, -2, "noise");
}

static void push_array(lua_State *L, const double *v, int64_t n) {
  int64_t k;
  lua_createtable(L, (int)n, 0);
  for (k = 0; k < n; k++) {
    lua_pushnumber(L, v[k]);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
}

static const pbt_gp *check_gp(lua_State *L, int arg) {
  lpbt_gp *u = (lpbt_gp *)lpbt_checkudata(L, arg, LPBT_GP);
  if (!u->gp) luaL_argerror(L, arg, "the GP was closed");
  return u->gp;
}

static int g_gc(lua_State *L) {
  lpbt_gp *u = (lpbt_gp *)lpbt_checkudata(L, 1, LPBT_GP);
  pbt_gp_free(u->gp);
  u->gp = NULL;
  return 0;
}

static int g_tostring(lua_State *L) {
  lpbt_gp *u = (lpbt_gp *)lpbt_checkudata(L, 1, LPBT_GP);
  if (!u->gp) lua_pushliteral(L, "pbt.GP (closed)");
  else
    lua_pushfstring(L, "pbt.GP (%I points of %I values)", (lua_Integer)pbt_gp_size(u->gp),
                    (lua_Integer)pbt_gp_dims(u->gp));
  return 1;
}

/* g:predict(xs) -> means, variances */
static int g_predict(lua_State *L) {
  const pbt_gp *gp = check_gp(L, 1);
  int64_t m, dims = pbt_gp_dims(gp);
  double *xs = read_points(L, 2, "predict", "xs", &m, &dims), *mean, *var;
  pbt_error err;
  mean = push_doubles(L, (size_t)m);
  var = push_doubles(L, (size_t)m);
  LPBT_CHECK(L, "predict", pbt_gp_predict(gp, xs, m, mean, var, &err), &err);
  push_array(L, mean, m);
  push_array(L, var, m);
  return 2;
}

static int g_lml(lua_State *L) {
  lua_pushnumber(L, pbt_gp_lml(check_gp(L, 1)));
  return 1;
}

/* g:grad() -> the gradient of the log marginal likelihood with respect to
 * u = (log variance, log lengthscale, logit(epsilon / 0.5), log noise) */
static int g_grad(lua_State *L) {
  const pbt_gp *gp = check_gp(L, 1);
  double grad[4];
  pbt_error err;
  LPBT_CHECK(L, "grad", pbt_gp_lml_grad(gp, grad, &err), &err);
  push_array(L, grad, 4);
  return 1;
}

static int g_theta(lua_State *L) {
  pbt_gp_theta t = pbt_gp_get_theta(check_gp(L, 1));
  push_theta(L, &t);
  return 1;
}

static int g_size(lua_State *L) {
  const pbt_gp *gp = check_gp(L, 1);
  lua_pushinteger(L, (lua_Integer)pbt_gp_size(gp));
  lua_pushinteger(L, (lua_Integer)pbt_gp_dims(gp));
  return 2;
}

static int g_jitter(lua_State *L) {
  lua_pushnumber(L, pbt_gp_jitter(check_gp(L, 1)));
  return 1;
}

static const luaL_Reg gp_methods[] = {{"predict", g_predict}, {"lml", g_lml},
                                      {"grad", g_grad},       {"theta", g_theta},
                                      {"size", g_size},       {"jitter", g_jitter},
                                      {NULL, NULL}};

static void push_meta(lua_State *L) {
  if (!luaL_newmetatable(L, LPBT_GP)) return;
  lua_pushcfunction(L, g_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, g_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, g_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, gp_methods);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, LPBT_GP);
  lua_setfield(L, -2, "__metatable");
}

/* gp.new(x, y, theta) */
static int m_new(lua_State *L) {
  int64_t n, dims = 0;
  double *x, *y = NULL;
  pbt_gp_theta theta;
  lpbt_gp *u;
  pbt_error err;
  lua_settop(L, 3);
  x = read_points(L, 1, "gp.new", "x", &n, &dims);
  if (!lua_isnil(L, 2)) y = read_values(L, 2, n, "gp.new", "y");
  theta = read_theta(L, 3, "gp.new", 1);
  u = (lpbt_gp *)lpbt_newudata(L, sizeof *u, 0, LPBT_GP);
  u->gp = NULL;
  push_meta(L);
  lua_setmetatable(L, -2);
  u->gp = pbt_gp_new(x, n, dims, y, &theta, &err);
  if (!u->gp) lpbt_raise(L, "gp.new", &err);
  return 1;
}

/* gp.fit(x, y [, start]) -> theta, info */
static int m_fit(lua_State *L) {
  int64_t n, dims = 0;
  double *x, *y;
  pbt_gp_theta theta;
  pbt_gp_fit_info info;
  pbt_error err;
  lua_settop(L, 3);
  x = read_points(L, 1, "gp.fit", "x", &n, &dims);
  y = read_values(L, 2, n, "gp.fit", "y");
  theta = read_theta(L, 3, "gp.fit", 0);
  LPBT_CHECK(L, "gp.fit", pbt_gp_fit(x, n, dims, y, &theta, &info, &err), &err);
  push_theta(L, &theta);
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, info.lml);
  lua_setfield(L, -2, "lml");
  lua_pushinteger(L, info.iterations);
  lua_setfield(L, -2, "iterations");
  lua_pushinteger(L, info.evaluations);
  lua_setfield(L, -2, "evaluations");
  return 2;
}

static const char *const ucb_fields[] = {"fixed", "kappa", "starts", "candidates", "generator",
                                         NULL};

/* gp.ucb_max(mean_gp, var_gp, opts) -> x, value */
static int m_ucb_max(lua_State *L) {
  const pbt_gp *mg = check_gp(L, 1), *vg = check_gp(L, 2);
  int64_t dims = pbt_gp_dims(mg), nfixed, nstarts = 0, q, cands = 256;
  double *fixed, *starts = NULL, *x, kappa, value;
  pbt_generator *g;
  pbt_error err;
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  lpbt_check_options(L, 3, ucb_fields);
  if (lpbt_rawfield(L, 3, "fixed") != LUA_TTABLE)
    luaL_error(L, "gp.ucb_max: option 'fixed' must be a list of numbers (the time first), got %s",
               luaL_typename(L, -1));
  nfixed = (int64_t)LPBT_LEN(L, 4);
  if (nfixed < 1 || nfixed >= dims)
    luaL_error(L, "gp.ucb_max: option 'fixed' needs 1 to %d values of a point's %d, got %d",
               (int)(dims - 1), (int)dims, (int)nfixed);
  fixed = read_values(L, 4, nfixed, "gp.ucb_max", "fixed"); /* 5 */
  q = dims - nfixed;
  if (lpbt_rawfield(L, 3, "kappa") != LUA_TNUMBER) /* 6 */
    luaL_error(L, "gp.ucb_max: option 'kappa' must be a number, got %s", luaL_typename(L, -1));
  kappa = lua_tonumber(L, -1);
  if (lpbt_rawfield(L, 3, "starts") != LUA_TNIL) { /* 7 */
    int64_t sq = q;
    starts = read_points(L, 7, "gp.ucb_max", "starts", &nstarts, &sq);
  }
  if (lpbt_rawfield(L, 3, "candidates") != LUA_TNIL) {
    if (!lua_isinteger(L, -1))
      luaL_error(L, "gp.ucb_max: option 'candidates' must be an integer, got %s",
                 luaL_typename(L, -1));
    cands = (int64_t)lua_tointeger(L, -1);
  }
  if (lpbt_rawfield(L, 3, "generator") == LUA_TNIL)
    luaL_error(L, "gp.ucb_max: option 'generator' is required (every random draw takes one)");
  if (!lpbt_testudata(L, -1, LPBT_GENERATOR))
    luaL_error(L, "gp.ucb_max: option 'generator' must be a pbt.Generator, got %s",
               luaL_typename(L, -1));
  g = lpbt_check_generator(L, lua_gettop(L));
  x = push_doubles(L, (size_t)q);
  LPBT_CHECK(L, "gp.ucb_max",
             pbt_gp_ucb_max(mg, vg, fixed, nfixed, kappa, starts, nstarts, g, cands, x, &value,
                            &err),
             &err);
  push_array(L, x, q);
  lua_pushnumber(L, value);
  return 2;
}

const luaL_Reg lpbt_gp_module[] = {
    {"new", m_new}, {"fit", m_fit}, {"ucb_max", m_ucb_max}, {NULL, NULL}};
