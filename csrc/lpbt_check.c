/* lpbt_check.c -- the binding's argument checks: errors raised from a
 * status, paths, integers, sizes, dimensions, shapes, options tables
 * (unknown keys named with the nearest known one), dtypes, generators. */
#include <math.h>
#include <string.h>

#include "lpbt.h"

int lpbt_raise(lua_State *L, const char *fname, const pbt_error *err) {
  if (err->status == PBT_ERR_NOMEM)
    return luaL_error(L, "%s: not enough memory", fname);
  return luaL_error(L, "%s: %s", fname, err->msg);
}

/* ---- tagged userdata -------------------------------------------------------- */

/* What lpbt_newudata writes after the object: a constant and the type. */
typedef struct udata_tag {
  uint64_t magic;
  uint64_t type; /* FNV-1a of the type's name */
} udata_tag;
#define UDATA_MAGIC UINT64_C(0x7062742e74616721) /* "pbt.tag!" */

static uint64_t type_hash(const char *s) {
  uint64_t h = UINT64_C(14695981039346656037);
  for (; *s; s++) h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
  return h;
}

/* Where the tag starts in a userdata of size bytes of object. */
static size_t tag_offset(size_t size) { return (size + 15) & ~(size_t)15; }

void *lpbt_newudata(lua_State *L, size_t size, int nuv, const char *tname) {
  size_t off = tag_offset(size);
  char *p = (char *)lua_newuserdatauv(L, off + sizeof(udata_tag), nuv);
  udata_tag tag;
  tag.magic = UDATA_MAGIC;
  tag.type = type_hash(tname);
  memset(p, 0, off);
  memcpy(p + off, &tag, sizeof tag);
  return p;
}

/* The tag is read from the end of the block, so only its type's name is
 * needed: a block made by lpbt_newudata for that name has that type's size. */
static int has_tag(lua_State *L, int idx, const char *p, const char *tname) {
  size_t len = lua_rawlen(L, idx);
  udata_tag tag;
  if (len < sizeof tag || (len - sizeof tag) % 16) return 0;
  memcpy(&tag, p + len - sizeof tag, sizeof tag);
  return tag.magic == UDATA_MAGIC && tag.type == type_hash(tname);
}

void *lpbt_testudata(lua_State *L, int idx, const char *tname) {
  char *p = (char *)luaL_testudata(L, idx, tname);
  return p && has_tag(L, idx, p, tname) ? p : NULL;
}

void *lpbt_checkudata(lua_State *L, int idx, const char *tname) {
  char *p = (char *)luaL_testudata(L, idx, tname);
  if (!p) luaL_typeerror(L, idx, tname);
  if (!has_tag(L, idx, p, tname))
    luaL_argerror(L, idx, lua_pushfstring(L, "not a %s (a userdata given its metatable)", tname));
  return p;
}

/* ---- numbers and dimensions ---------------------------------------------- */

const char *lpbt_check_path(lua_State *L, int arg) {
  size_t n;
  const char *p;
  if (lua_type(L, arg) != LUA_TSTRING)
    luaL_typeerror(L, arg, "string (a path)");
  p = lua_tolstring(L, arg, &n);
  if (n == 0) luaL_argerror(L, arg, "the path is empty");
  if (strlen(p) != n) luaL_argerror(L, arg, "the path contains a zero byte");
  return p;
}

int64_t lpbt_check_integer(lua_State *L, int arg) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    if (lua_type(L, arg) == LUA_TNUMBER)
      luaL_argerror(L, arg, "number has no integer representation");
    luaL_typeerror(L, arg, "integer");
  }
  return (int64_t)v;
}

int64_t lpbt_check_size(lua_State *L, int arg) {
  int64_t v = lpbt_check_integer(L, arg);
  if (v < 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "negative size %I", (lua_Integer)v));
  return v;
}

int lpbt_check_dim(lua_State *L, int arg, int ndim) {
  int64_t d = lpbt_check_integer(L, arg);
  int64_t z = d < 0 ? d + ndim : d - 1;
  if (d == 0 || z < 0 || z >= ndim)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "dimension %I out of range for a %d-d tensor",
                                  (lua_Integer)d, ndim));
  return (int)z;
}

int lpbt_opt_dim(lua_State *L, int arg, int ndim, int def) {
  if (lua_isnoneornil(L, arg)) return def;
  return lpbt_check_dim(L, arg, ndim);
}

static int64_t shape_entry(lua_State *L, int arg, int allow_infer,
                           lua_Integer v, int isnum, const char *what) {
  if (!isnum)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must be an integer", what));
  if (v < 0 && !(allow_infer && v == -1))
    luaL_argerror(L, arg, lua_pushfstring(L, "negative size %I", v));
  return (int64_t)v;
}

int lpbt_check_shape(lua_State *L, int first, int64_t *shape, int allow_infer,
                     int *next) {
  int n = 0, isnum;
  lua_Integer v;
  if (lua_type(L, first) == LUA_TTABLE) {
    lua_Integer len = LPBT_LEN(L, first), i;
    if (len > PBT_MAX_DIM)
      luaL_argerror(L, first,
                    lua_pushfstring(L, "%I dimensions (at most %d allowed)", len,
                                    PBT_MAX_DIM));
    for (i = 1; i <= len; i++) {
      lua_rawgeti(L, first, i);
      v = lua_tointegerx(L, -1, &isnum);
      shape[n++] = shape_entry(L, first, allow_infer, v, isnum, "size");
      lua_pop(L, 1);
    }
    *next = first + 1;
    return n;
  }
  while (lua_type(L, first + n) == LUA_TNUMBER) {
    if (n == PBT_MAX_DIM)
      luaL_argerror(L, first + n,
                    lua_pushfstring(L, "at most %d dimensions allowed", PBT_MAX_DIM));
    v = lua_tointegerx(L, first + n, &isnum);
    shape[n] = shape_entry(L, first + n, allow_infer, v, isnum, "size");
    n++;
  }
  *next = first + n;
  return n;
}

/* Edit distance of a and b, a transposition counting one (names are
 * short: the rows live on the stack). */
static size_t name_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i, j;
  size_t rows[3][33], *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
  if (la > 32 || lb > 32) return (size_t)-1;
  for (j = 0; j <= lb; j++) prev[j] = j;
  for (i = 1; i <= la; i++) {
    size_t *t;
    cur[0] = i;
    for (j = 1; j <= lb; j++) {
      size_t cost = (a[i - 1] | 0x20) == (b[j - 1] | 0x20) ? 0 : 1;
      size_t d = prev[j] + 1;
      if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
      if (prev[j - 1] + cost < d) d = prev[j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < d)
        d = prev2[j - 2] + 1;
      cur[j] = d;
    }
    t = prev2, prev2 = prev, prev = cur, cur = t;
  }
  return prev[lb];
}

void lpbt_check_options(lua_State *L, int idx, const char *const *known) {
  if (lua_isnoneornil(L, idx)) return;
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *const *k;
    lua_pop(L, 1);
    for (k = known; *k; k++)
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), *k) == 0) break;
    if (!*k) {
      const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      const char *near = NULL;
      size_t best = (size_t)-1, limit;
      if (name) {
        limit = strlen(name) / 3;
        if (limit < 1) limit = 1;
        if (limit > 3) limit = 3;
        for (k = known; *k; k++) {
          size_t d = name_distance(name, *k);
          if (d < best) best = d, near = *k;
        }
        if (best > limit) near = NULL;
      }
      if (near)
        luaL_argerror(L, idx, lua_pushfstring(L, "unknown option '%s' (did you mean '%s'?)", name, near));
      luaL_argerror(L, idx, lua_pushfstring(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL)));
    }
  }
}

pbt_dtype lpbt_opt_dtype(lua_State *L, int idx, pbt_dtype def) {
  pbt_dtype dt = def;
  if (lua_isnoneornil(L, idx)) return def;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lpbt_rawfield(L, idx, "dtype") != LUA_TNIL) {
    const char *name = lua_tostring(L, -1);
    if (name == NULL || lua_type(L, -1) != LUA_TSTRING ||
        pbt_dtype_from_name(name, &dt) != 0)
      luaL_argerror(L, idx,
                    lua_pushfstring(L, "unknown dtype '%s' (float32 or float64)",
                                    luaL_tolstring(L, -1, NULL)));
  }
  lua_pop(L, 1);
  return dt;
}

pbt_generator *lpbt_check_generator(lua_State *L, int arg) {
  return (pbt_generator *)lpbt_checkudata(L, arg, LPBT_GENERATOR);
}

pbt_generator *lpbt_opt_generator(lua_State *L, int idx) {
  pbt_generator *g = NULL;
  if (!lua_isnoneornil(L, idx)) {
    luaL_checktype(L, idx, LUA_TTABLE);
    if (lpbt_rawfield(L, idx, "generator") != LUA_TNIL) {
      g = (pbt_generator *)lpbt_testudata(L, -1, LPBT_GENERATOR);
      if (!g) luaL_argerror(L, idx, "field 'generator' is not a pbt.Generator");
    }
    lua_pop(L, 1); /* the options table keeps it alive */
  }
  if (!g) g = (pbt_generator *)lua_touserdata(L, LPBT_UPV_GENERATOR);
  return g;
}
