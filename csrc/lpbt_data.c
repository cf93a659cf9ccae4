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

static const char *const idx_options[] = {"dtype", "scale", "shift", "limit", NULL};
static const char *const csv_options[] = {"dtype", "header", "delimiter", "columns", "limit",
                                          NULL};

/* data.idx(path [, opts]) */
static int f_idx(lua_State *L) {
  const char *path = lpbt_check_path(L, 1);
  pbt_dtype dt;
  lpbt_check_options(L, 2, idx_options);
  dt = lpbt_opt_dtype(L, 2, PBT_FLOAT32);
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

/* The column named name among the header's names (NUL-separated in
 * names), 1-based, or 0. */
static int64_t column_named(const pbt_buf *names, const char *name) {
  size_t pos = 0;
  int64_t k = 1;
  while (pos < names->len) {
    const char *s = (const char *)names->data + pos;
    if (strcmp(s, name) == 0) return k;
    pos += strlen(s) + 1;
    k++;
  }
  return 0;
}

/* opts.columns of a loaded CSV t: a new tensor of the columns asked for
 * (numbers or header names), pushed, and their numbers in cols (a pushed
 * buffer, *n of them); NULL when opts has no columns. */
static pbt_tensor *keep_columns(lua_State *L, const char *path, const pbt_tensor *t,
                                const pbt_buf *names, int header, int64_t **cols,
                                int64_t *n) {
  int ctab;
  int64_t k, r, rows = t->shape[0], ncols = t->shape[1], shape[2];
  pbt_tensor *out;
  pbt_error err;
  if (lua_type(L, 2) != LUA_TTABLE) return NULL;
  if (lpbt_rawfield(L, 2, "columns") == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  ctab = lua_gettop(L);
  if (!lua_istable(L, ctab)) luaL_argerror(L, 2, "field 'columns' must be a table");
  *n = (int64_t)LPBT_LEN(L, ctab);
  if (*n == 0) luaL_argerror(L, 2, "field 'columns' is empty");
  *cols = (int64_t *)lua_newuserdatauv(L, (size_t)*n * sizeof **cols, 0);
  for (k = 0; k < *n; k++) {
    int type = lua_rawgeti(L, ctab, (lua_Integer)k + 1);
    int64_t j = 0;
    if (type == LUA_TSTRING) {
      if (!header) luaL_error(L, "csv: column names need the option header = true");
      j = column_named(names, lua_tostring(L, -1));
      if (!j) luaL_error(L, "csv: %s: no column named '%s'", path, lua_tostring(L, -1));
    } else if (!lua_isinteger(L, -1)) {
      luaL_argerror(L, 2, lua_pushfstring(L, "columns[%d] must be a column number or name", (int)k + 1));
    } else {
      lua_Integer c = lua_tointeger(L, -1);
      if (c < 1 || c > ncols)
        luaL_error(L, "csv: %s: column %I out of range (%I columns)", path, c, (lua_Integer)ncols);
      j = (int64_t)c;
    }
    (*cols)[k] = j;
    lua_pop(L, 1);
  }
  out = lpbt_push_tensor(L);
  shape[0] = rows;
  shape[1] = *n;
  LPBT_CHECK(L, "csv", pbt_tensor_empty(out, t->dtype, 2, shape, &err), &err);
  for (r = 0; r < rows; r++)
    for (k = 0; k < *n; k++) {
      int64_t from = r * ncols + (*cols)[k] - 1, to = r * *n + k;
      if (t->dtype == PBT_FLOAT64)
        ((double *)pbt_tensor_data(out))[to] = ((const double *)pbt_tensor_data(t))[from];
      else
        ((float *)pbt_tensor_data(out))[to] = ((const float *)pbt_tensor_data(t))[from];
    }
  lpbt_gc_hint(L, out);
  return out;
}

/* data.csv(path [, opts]) */
static int f_csv(lua_State *L) {
  const char *path = lpbt_check_path(L, 1);
  pbt_csv_opts o;
  pbt_error err;
  pbt_buf *names;
  pbt_tensor *t, *kept;
  int64_t *cols = NULL, ncols = 0;
  lpbt_check_options(L, 2, csv_options);
  o.dtype = lpbt_opt_dtype(L, 2, PBT_FLOAT32);
  o.header = opt_boolean(L, 2, "header", 0);
  o.delimiter = opt_delimiter(L, 2);
  o.limit = opt_limit(L, 2);
  names = lpbt_push_buf(L);
  t = lpbt_push_tensor(L);
  if (pbt_csv_load(t, path, &o, names, &err) != PBT_OK)
    return load_fail(L, "csv", &err);
  lpbt_gc_hint(L, t);
  kept = keep_columns(L, path, t, names, o.header, &cols, &ncols);
  if (kept) {
    int64_t k;
    if (!o.header) return 1;
    lua_createtable(L, (int)ncols, 0); /* the names of the columns kept */
    for (k = 0; k < ncols; k++) {
      size_t pos = 0;
      int64_t j = 1;
      while (j < cols[k]) {
        pos += strlen((const char *)names->data + pos) + 1;
        j++;
      }
      lua_pushstring(L, (const char *)names->data + pos);
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    return 2;
  }
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
