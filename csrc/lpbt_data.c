/*
 * lpbt_data.c -- functions of pbt.core.data (the face is lua/pbt/data.lua).
 *
 *   idx(path [, opts])       -> tensor | nil, message
 *       opts: dtype ("float32"), scale (1), shift (0): each element is
 *       stored as value * scale + shift
 *   csv(path [, opts])       -> tensor, names | nil, message
 *       opts: dtype ("float32"), header (false), delimiter (",");
 *       names is a table of the header's column names, or nil
 *   randperm(n [, generator] [, opts]) -> a 1-d tensor holding a random
 *       permutation of 1..n (Fisher-Yates with generator:integer's draws);
 *       opts: dtype ("float64")
 *
 * A missing or unreadable file returns nil, message (as io.open); a
 * malformed file raises "idx: <path>: ..." or "csv: <path>: ...".  The
 * parsing is in pbt_data.c.
 */
#include <string.h>

#include "lpbt.h"
#include "pbt_data.h"


/* ---- options ------------------------------------------------------------------ */

static double opt_number(lua_State *L, int idx, const char *field,
                         double def) {
  double v = def;
  if (lua_isnoneornil(L, idx)) return def;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lpbt_rawfield(L, idx, field) != LUA_TNIL) {
    int isnum;
    v = lua_tonumberx(L, -1, &isnum);
    if (!isnum)
      luaL_argerror(L, idx,
                    lua_pushfstring(L, "field '%s' must be a number", field));
  }
  lua_pop(L, 1);
  return v;
}

static int opt_boolean(lua_State *L, int idx, const char *field, int def) {
  int v = def;
  if (lua_isnoneornil(L, idx)) return def;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lpbt_rawfield(L, idx, field) != LUA_TNIL) {
    if (!lua_isboolean(L, -1))
      luaL_argerror(L, idx,
                    lua_pushfstring(L, "field '%s' must be a boolean", field));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static char opt_delimiter(lua_State *L, int idx) {
  char c = ',';
  if (lua_isnoneornil(L, idx)) return c;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lpbt_rawfield(L, idx, "delimiter") != LUA_TNIL) {
    size_t n;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n)
                                                  : NULL;
    if (!s || n != 1 || *s == '\n' || *s == '\r' || *s == '"')
      luaL_argerror(L, idx,
                    "field 'delimiter' must be a one-character string");
    c = *s;
  }
  lua_pop(L, 1);
  return c;
}

/* A failed load: nil, message for the world's failures, else raises. */
static int load_fail(lua_State *L, const char *fname, const pbt_error *err) {
  if (err->status == PBT_ERR_IO) {
    lua_pushnil(L);
    lua_pushstring(L, err->msg);
    return 2;
  }
  return lpbt_raise(L, fname, err);
}

/* opts.limit: the most bytes a file may give once decompressed (a positive
 * integer; absent: no limit). */
static size_t opt_limit(lua_State *L, int idx) {
  lua_Integer v = 0;
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (lpbt_rawfield(L, idx, "limit") == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  {
    int isint = 0;
    v = lua_tointegerx(L, -1, &isint); /* 2^20 and 1e9 are fine */
    if (!isint || v < 1) luaL_argerror(L, idx, "field 'limit' must be a positive integer (bytes)");
  }
  lua_pop(L, 1);
  return (size_t)v;
}

/* ---- functions ------------------------------------------------------------------ */

static int f_idx(lua_State *L) {
  const char *path = lpbt_check_path(L, 1);
  pbt_dtype dt = lpbt_opt_dtype(L, 2, PBT_FLOAT32);
  double scale = opt_number(L, 2, "scale", 1.0);
  double shift = opt_number(L, 2, "shift", 0.0);
  size_t limit = opt_limit(L, 2);
  pbt_error err;
  pbt_tensor *t = lpbt_push_tensor(L);
  if (pbt_idx_load_limit(t, path, dt, scale, shift, limit, &err) != PBT_OK)
    return load_fail(L, "idx", &err);
  lpbt_gc_hint(L, t);
  return 1;
}

static int f_csv(lua_State *L) {
  const char *path = lpbt_check_path(L, 1);
  pbt_csv_opts o;
  pbt_error err;
  pbt_buf *names;
  pbt_tensor *t;
  o.dtype = lpbt_opt_dtype(L, 2, PBT_FLOAT32);
  o.header = opt_boolean(L, 2, "header", 0);
  o.delimiter = opt_delimiter(L, 2);
  o.limit = opt_limit(L, 2);
  names = lpbt_push_buf(L);
  t = lpbt_push_tensor(L);
  if (pbt_csv_load(t, path, &o, names, &err) != PBT_OK)
    return load_fail(L, "csv", &err);
  lpbt_gc_hint(L, t);
  if (!o.header) return 1;
  lua_createtable(L, (int)t->shape[1], 0);
  {
    size_t pos = 0;
    lua_Integer k = 1;
    while (pos < names->len) {
      const char *s = (const char *)names->data + pos;
      size_t len = strlen(s);
      lua_pushlstring(L, s, len);
      lua_rawseti(L, -2, k++);
      pos += len + 1;
    }
  }
  return 2;
}

static int f_randperm(lua_State *L) {
  int64_t n = lpbt_check_size(L, 1);
  pbt_generator *g = lua_isnoneornil(L, 2)
                         ? (pbt_generator *)lua_touserdata(L, LPBT_UPV_GENERATOR)
                         : lpbt_check_generator(L, 2);
  pbt_dtype dt = lpbt_opt_dtype(L, 3, PBT_FLOAT64);
  pbt_error err;
  pbt_tensor *t = lpbt_push_tensor(L);
  LPBT_CHECK(L, "randperm", pbt_randperm(t, n, 1, dt, g, &err), &err);
  lpbt_gc_hint(L, t);
  return 1;
}

const luaL_Reg lpbt_data_module[] = {
    {"idx", f_idx}, {"csv", f_csv}, {"randperm", f_randperm}, {NULL, NULL}};
