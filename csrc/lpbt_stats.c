/*
 * lpbt_stats.c -- pbt.core.stats (Welch's t-test, the incomplete beta
 * function and Student's t: pbt.stats) and pbt.core.select (the selection
 * strategies: pbt.select), which share the readers of scores below.
 *
 * Lua arrays of numbers are copied into Lua-owned buffers (userdata), so an
 * error raised half way leaks nothing.  Member indices are 1-based here,
 * 0-based in the core.
 */
#include <math.h>
#include <string.h>

#include <stdint.h>

#include "lpbt.h"
#include "pbt_select.h"
#include "pbt_stats.h"

/* A Lua-owned buffer of n doubles, pushed on the stack. */
static double *push_doubles(lua_State *L, size_t n) {
  if (n > SIZE_MAX / sizeof(double) / 2) luaL_error(L, "not enough memory");
  return (double *)lua_newuserdatauv(L, (n ? n : 1) * sizeof(double), 0);
}

static size_t *push_sizes(lua_State *L, size_t n) {
  return (size_t *)lua_newuserdatauv(L, (n ? n : 1) * sizeof(size_t), 0);
}

/* The values of a 1-d tensor at arg into a new buffer (pushed). */
static double *read_tensor(lua_State *L, int arg, const pbt_tensor *t,
                           size_t *n) {
  double *x;
  int64_t k;
  if (t->ndim != 1)
    luaL_argerror(L, arg, lua_pushfstring(L, "1-d tensor expected, got a %d-d tensor",
                                          t->ndim));
  *n = (size_t)t->shape[0];
  x = push_doubles(L, *n);
  for (k = 0; k < t->shape[0]; k++) x[k] = pbt_tensor_get_flat(t, k);
  return x;
}

/* x[0..len-1] = the table at arg's entries 1..len, read raw; a nil is NaN
 * when holes are allowed, else an error like any non-number. */
static void read_numbers(lua_State *L, int arg, lua_Integer len, double *x, int holes) {
  lua_Integer k;
  for (k = 1; k <= len; k++) {
    int isnum = 0;
    if (lua_rawgeti(L, arg, k) == LUA_TNIL && holes) x[k - 1] = NAN;
    else {
      x[k - 1] = (double)lua_tonumberx(L, -1, &isnum);
      if (!isnum)
        luaL_argerror(L, arg, lua_pushfstring(L, "number expected at index %I, got %s",
                                              k, luaL_typename(L, -1)));
    }
    lua_pop(L, 1);
  }
}

/* A sample: a Lua array of numbers (1..#t, no holes) or a 1-d tensor. */
static double *read_sample(lua_State *L, int arg, size_t *n) {
  const pbt_tensor *t = lpbt_test_tensor(L, arg);
  double *x;
  lua_Integer len;
  if (t) return read_tensor(L, arg, lpbt_check_tensor(L, arg), n);
  luaL_argexpected(L, lua_type(L, arg) == LUA_TTABLE, arg, "table or pbt.Tensor");
  len = LPBT_LEN(L, arg);
  *n = len > 0 ? (size_t)len : 0;
  x = push_doubles(L, *n);
  read_numbers(L, arg, len, x, 0);
  return x;
}

/* Scores: a table whose keys are positive integers, n the largest of them;
 * a missing entry is NaN (a missing score ranks last).  Or a 1-d tensor. */
static double *read_scores(lua_State *L, int arg, size_t *n) {
  const pbt_tensor *t = lpbt_test_tensor(L, arg);
  double *x;
  lua_Integer len = 0;
  if (t) return read_tensor(L, arg, lpbt_check_tensor(L, arg), n);
  luaL_argexpected(L, lua_type(L, arg) == LUA_TTABLE, arg, "table or pbt.Tensor");
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int isint;
    lua_Integer key;
    lua_pop(L, 1);
    key = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (lua_type(L, -1) != LUA_TNUMBER || !isint || key < 1)
      luaL_argerror(L, arg, lua_pushfstring(L, "scores must be an array, found key %s",
                                            luaL_tolstring(L, -1, NULL)));
    if (key > len) len = key;
  }
  if ((lua_Unsigned)len > (lua_Unsigned)(SIZE_MAX / sizeof(double)) / 2)
    luaL_argerror(L, arg, "too many scores");
  *n = (size_t)len;
  x = push_doubles(L, *n);
  read_numbers(L, arg, len, x, 1);
  return x;
}

/* ---- options tables ------------------------------------------------------ */

#define check_option_names lpbt_check_options

/* Field `name` of the options table at idx as a number, or def. */
static double opt_number(lua_State *L, int idx, const char *name, double def) {
  double v = def;
  if (lua_isnoneornil(L, idx)) return def;
  if (lpbt_rawfield(L, idx, name) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, idx, lua_pushfstring(L, "field '%s' must be a number, got %s",
                                            name, luaL_typename(L, -1)));
    v = (double)lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static lua_Integer opt_integer(lua_State *L, int idx, const char *name,
                               lua_Integer def) {
  lua_Integer v = def;
  int isint;
  if (lua_isnoneornil(L, idx)) return def;
  if (lpbt_rawfield(L, idx, name) != LUA_TNIL) {
    v = lua_tointegerx(L, -1, &isint);
    if (lua_type(L, -1) != LUA_TNUMBER || !isint)
      luaL_argerror(L, idx, lua_pushfstring(L, "field '%s' must be an integer, got %s",
                                            name, luaL_tolstring(L, -1, NULL)));
  }
  lua_pop(L, 1);
  return v;
}

static pbt_select_mode opt_mode(lua_State *L, int idx) {
  pbt_select_mode mode = PBT_MODE_MAX;
  if (lua_isnoneornil(L, idx)) return mode;
  if (lpbt_rawfield(L, idx, "mode") != LUA_TNIL) {
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(s, "max") == 0)
      mode = PBT_MODE_MAX;
    else if (strcmp(s, "min") == 0)
      mode = PBT_MODE_MIN;
    else
      luaL_argerror(L, idx, lua_pushfstring(L, "mode must be 'max' or 'min', got %s",
                                            luaL_tolstring(L, -1, NULL)));
  }
  lua_pop(L, 1);
  return mode;
}

/* A 1-based member index at arg, as 0-based, for a population of n. */
static size_t check_member(lua_State *L, int arg, size_t n) {
  int64_t i = lpbt_check_integer(L, arg);
  if (i < 1 || (uint64_t)i > (uint64_t)n)
    luaL_argerror(L, arg, lua_pushfstring(L, "member %I out of range for a population of %I",
                                          (lua_Integer)i, (lua_Integer)n));
  return (size_t)(i - 1);
}

/* Raises a failed status of the core: an argument error at arg for
 * PBT_ERR_ARG, else "<fname>: <message>". */
static void check_status(lua_State *L, const char *fname, int arg,
                         pbt_status st, const pbt_error *err) {
  if (st == PBT_OK) return;
  if (st == PBT_ERR_ARG) luaL_argerror(L, arg, lua_pushstring(L, err->msg));
  lpbt_raise(L, fname, err);
}

/* ---- pbt.stats --------------------------------------------------------- */

/* welch(a, b [, alternative]) -> t, df, p */
static int s_welch(lua_State *L) {
  static const char *const alts[] = {"two-sided", "greater", "less", NULL};
  static const pbt_alternative alt_of[] = {PBT_TWO_SIDED, PBT_GREATER, PBT_LESS};
  int alt = luaL_checkoption(L, 3, "two-sided", alts);
  size_t na, nb;
  const double *a = read_sample(L, 1, &na), *b = read_sample(L, 2, &nb);
  pbt_welch_result r;
  pbt_error err;
  LPBT_CHECK(L, "welch", pbt_welch(a, na, b, nb, alt_of[alt], &r, &err), &err);
  lua_pushnumber(L, (lua_Number)r.t);
  lua_pushnumber(L, (lua_Number)r.df);
  lua_pushnumber(L, (lua_Number)r.p);
  return 3;
}

/* betainc(x, a, b [, upper]): I_x(a, b), or 1 - I_x(a, b) when upper. */
static int s_betainc(lua_State *L) {
  double x = (double)luaL_checknumber(L, 1), a = (double)luaL_checknumber(L, 2),
         b = (double)luaL_checknumber(L, 3);
  int upper = lua_toboolean(L, 4);
  luaL_argcheck(L, x >= 0 && x <= 1, 1,
                lua_pushfstring(L, "x must be in [0, 1], got %f", (lua_Number)x));
  luaL_argcheck(L, a > 0 && a <= 1e10, 2,
                lua_pushfstring(L, "a must be in (0, 1e10], got %f", (lua_Number)a));
  luaL_argcheck(L, b > 0 && b <= 1e10, 3,
                lua_pushfstring(L, "b must be in (0, 1e10], got %f", (lua_Number)b));
  lua_pushnumber(L, (lua_Number)(upper ? pbt_betaincc(x, a, b)
                                        : pbt_betainc(x, a, b)));
  return 1;
}

static double check_df(lua_State *L, int arg) {
  double df = (double)luaL_checknumber(L, arg);
  luaL_argcheck(L, df > 0, arg,
                lua_pushfstring(L, "degrees of freedom must be positive, got %f",
                                (lua_Number)df));
  return df;
}

/* t_cdf(t, df) = P(T <= t); t_sf(t, df) = P(T > t) */
static int s_t_cdf(lua_State *L) {
  double t = (double)luaL_checknumber(L, 1), df = check_df(L, 2);
  lua_pushnumber(L, (lua_Number)pbt_t_cdf(t, df));
  return 1;
}

static int s_t_sf(lua_State *L) {
  double t = (double)luaL_checknumber(L, 1), df = check_df(L, 2);
  lua_pushnumber(L, (lua_Number)pbt_t_sf(t, df));
  return 1;
}

/* ---- pbt.select ---------------------------------------------------------- */

/* rank(scores [, {mode, generator}]) -> members best first */
static int s_rank(lua_State *L) {
  static const char *const known[] = {"mode", "generator", NULL};
  size_t n, k, *order;
  const double *scores;
  pbt_select_mode mode;
  pbt_generator *g;
  pbt_error err;
  check_option_names(L, 2, known);
  mode = opt_mode(L, 2);
  g = lpbt_opt_generator(L, 2);
  scores = read_scores(L, 1, &n);
  order = push_sizes(L, n);
  check_status(L, "rank", 2, pbt_select_rank(scores, n, mode, g, order, &err), &err);
  lua_createtable(L, (int)(n < 1u << 30 ? n : 0), 0);
  for (k = 0; k < n; k++) {
    lua_pushinteger(L, (lua_Integer)order[k] + 1);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

/* truncation(scores [, {fraction, mode, generator}]) -> {recipient = donor} */
static int s_truncation(lua_State *L) {
  static const char *const known[] = {"fraction", "mode", "generator", NULL};
  size_t n, k, count, *rec, *don;
  const double *scores;
  double fraction;
  pbt_select_mode mode;
  pbt_generator *g;
  pbt_error err;
  check_option_names(L, 2, known);
  fraction = opt_number(L, 2, "fraction", 0.2);
  mode = opt_mode(L, 2);
  g = lpbt_opt_generator(L, 2);
  scores = read_scores(L, 1, &n);
  rec = push_sizes(L, n / 2);
  don = push_sizes(L, n / 2);
  check_status(L, "truncation", 2,
               pbt_select_truncation(scores, n, fraction, mode, g, rec, don,
                                     &count, &err),
               &err);
  lua_createtable(L, 0, (int)count);
  for (k = 0; k < count; k++) {
    lua_pushinteger(L, (lua_Integer)don[k] + 1);
    lua_rawseti(L, -2, (lua_Integer)rec[k] + 1);
  }
  return 1;
}

/* The last `window` numbers of history m (a table at the top of the stack),
 * into a new buffer (pushed above it). */
static double *read_window(lua_State *L, size_t m, size_t window, size_t *n) {
  int h = lua_gettop(L);
  lua_Integer len = LPBT_LEN(L, h), first, k;
  double *x;
  first = (lua_Unsigned)len > window ? len - (lua_Integer)window + 1 : 1;
  *n = len >= first ? (size_t)(len - first + 1) : 0;
  x = push_doubles(L, *n);
  for (k = first; k <= len; k++) {
    int isnum;
    lua_rawgeti(L, h, k);
    x[k - first] = (double)lua_tonumberx(L, -1, &isnum);
    if (!isnum)
      luaL_argerror(L, 1, lua_pushfstring(L, "history %I: number expected at index %I, got %s",
                                          (lua_Integer)m + 1, k, luaL_typename(L, -1)));
    lua_pop(L, 1);
  }
  return x;
}

/* ttest(histories, i [, {window, alpha, mode, generator}]) -> j or nil */
static int s_ttest(lua_State *L) {
  static const char *const known[] = {"window", "alpha", "mode", "generator", NULL};
  size_t n, i, k, ni, nj;
  lua_Integer window, len;
  double alpha;
  const double *hi, *hj;
  int64_t j;
  pbt_select_mode mode;
  pbt_generator *g;
  pbt_error err;
  luaL_checktype(L, 1, LUA_TTABLE);
  len = LPBT_LEN(L, 1);
  n = len > 0 ? (size_t)len : 0;
  for (k = 1; k <= n; k++) {
    int type = lua_rawgeti(L, 1, (lua_Integer)k);
    if (type != LUA_TTABLE)
      luaL_argerror(L, 1, lua_pushfstring(L, "history %I: table expected, got %s",
                                          (lua_Integer)k, lua_typename(L, type)));
    lua_pop(L, 1);
  }
  i = check_member(L, 2, n);
  check_option_names(L, 3, known);
  window = opt_integer(L, 3, "window", 10);
  alpha = opt_number(L, 3, "alpha", 0.05);
  mode = opt_mode(L, 3);
  g = lpbt_opt_generator(L, 3);
  if (window < 2) /* the core's text, for values a size_t cannot hold */
    luaL_argerror(L, 3, lua_pushfstring(L, "window must be at least 2, got %I", window));
  check_status(L, "ttest", 3, pbt_ttest_check_options((size_t)window, alpha, &err),
               &err);
  j = pbt_select_other(n, i, g);
  if (j < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_rawgeti(L, 1, (lua_Integer)i + 1);
  hi = read_window(L, i, (size_t)window, &ni);
  lua_rawgeti(L, 1, (lua_Integer)j + 1);
  hj = read_window(L, (size_t)j, (size_t)window, &nj);
  if (pbt_ttest_better(hi, ni, hj, nj, (size_t)window, alpha, mode))
    lua_pushinteger(L, (lua_Integer)j + 1);
  else
    lua_pushnil(L);
  return 1;
}

/* tournament(scores, i [, {mode, generator}]) -> j or nil */
static int s_tournament(lua_State *L) {
  static const char *const known[] = {"mode", "generator", NULL};
  size_t n, i;
  const double *scores;
  int64_t j;
  pbt_select_mode mode;
  pbt_generator *g;
  pbt_error err;
  check_option_names(L, 3, known); /* options first: read_scores pushes */
  mode = opt_mode(L, 3);
  g = lpbt_opt_generator(L, 3);
  scores = read_scores(L, 1, &n);
  i = check_member(L, 2, n);
  check_status(L, "tournament", 2,
               pbt_select_tournament(scores, n, i, mode, g, &j, &err), &err);
  if (j >= 0)
    lua_pushinteger(L, (lua_Integer)j + 1);
  else
    lua_pushnil(L);
  return 1;
}

const luaL_Reg lpbt_stats_module[] = {{"welch", s_welch}, {"betainc", s_betainc},
                                     {"t_cdf", s_t_cdf}, {"t_sf", s_t_sf},
                                     {NULL, NULL}};

const luaL_Reg lpbt_select_module[] = {{"rank", s_rank},   {"truncation", s_truncation},
                                      {"ttest", s_ttest}, {"tournament", s_tournament},
                                      {NULL, NULL}};
