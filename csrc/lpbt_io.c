/*
 * lpbt_io.c -- pbt.save / pbt.load and raw tensor bytes.
 *
 *   pbt.save(path, value)  -> true | nil, message
 *   pbt.load(path)         -> value | nil, message
 *   t:tobytes()            -> string (row-major, little-endian elements)
 *   pbt.tensor.frombytes(s, dtype [, shape])  -> tensor
 *
 * This file walks Lua values and converts them to and from the records of
 * the pbt file format; the format itself, the CRC and the atomic write live
 * in pbt_io.c (see pbt_io.h).  Failures of the world (a missing file, a
 * missing directory, permission denied) return nil, message as io.open does;
 * misuse (a value that cannot be saved) and corrupt files raise.
 *
 * Saving reads tables raw (no metamethods; metatables are not saved).  A table
 * referenced twice is written twice and loads as two distinct tables; a table
 * that contains itself is an error.
 */
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "lpbt.h"
#include "pbt_io.h"


/* ---- save -------------------------------------------------------------------- */

/* The chain of keys from the saved value down to the current one; `key` is
 * the stack index of the key. */
typedef struct frame {
  const struct frame *up;
  int key;
} frame;

typedef struct saver {
  lua_State *L;
  pbt_buf *buf;
  int seen;          /* stack index of the set of tables being written */
  const char *fname; /* "save" or "encode", for errors */
} saver;

static int is_identifier(const char *s, size_t n) {
  size_t i;
  if (n == 0 || n > 40) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (i > 0 && c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

static void add_key(lua_State *L, luaL_Buffer *b, int idx, int first) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n, i;
    const char *s = lua_tolstring(L, idx, &n);
    if (is_identifier(s, n)) {
      if (!first) luaL_addchar(b, '.');
      luaL_addlstring(b, s, n);
      return;
    }
    luaL_addstring(b, "[\"");
    for (i = 0; i < n && i < 32; i++) {
      unsigned char c = (unsigned char)s[i];
      if (c >= 32 && c < 127 && c != '"' && c != '\\') {
        luaL_addchar(b, (char)c);
      } else {
        lua_pushfstring(L, "\\%d", (int)c);
        luaL_addvalue(b);
      }
    }
    if (n > 32) luaL_addstring(b, "...");
    luaL_addstring(b, "\"]");
  } else if (lua_isinteger(L, idx)) {
    lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, idx));
    luaL_addvalue(b);
  } else {
    lua_pushfstring(L, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, idx));
    luaL_addvalue(b);
  }
}

/* Raises "save: <msg> (at key a.b[3])", the key path left out at the top. */
static int save_fail(saver *S, const frame *f, const char *msg) {
  lua_State *L = S->L;
  const frame *chain[PBT_IO_MAX_DEPTH + 2];
  luaL_Buffer b;
  int n = 0, i;
  for (; f && n < PBT_IO_MAX_DEPTH + 2; f = f->up) chain[n++] = f;
  luaL_buffinit(L, &b);
  if (n > 0) {
    luaL_addstring(&b, " (at key ");
    for (i = n - 1; i >= 0; i--) add_key(L, &b, chain[i]->key, i == n - 1);
    luaL_addchar(&b, ')');
  }
  luaL_pushresult(&b);
  return luaL_error(L, "%s: %s%s", S->fname, msg, lua_tostring(L, -1));
}

static int save_type_fail(saver *S, const frame *f, const char *what,
                          int idx) {
  lua_State *L = S->L;
  const char *type =
      lpbt_test_tensor(L, idx) ? LPBT_TENSOR : luaL_typename(L, idx);
  return save_fail(
      S, f, lua_pushfstring(L, "cannot save a %s of type %s", what, type));
}

static void enc_check(saver *S, pbt_status st, const pbt_error *err) {
  LPBT_CHECK(S->L, S->fname, st, err);
}

/* A table key, sorted integers first, then floats, then strings. */
typedef struct key_entry {
  int kind; /* 0 integer, 1 float, 2 string */
  lua_Integer i;
  lua_Number x;
  const char *s; /* the key string, kept alive by the table */
  size_t n;
} key_entry;

static int key_cmp(const void *pa, const void *pb) {
  const key_entry *a = pa, *b = pb;
  int c;
  if (a->kind != b->kind) return a->kind < b->kind ? -1 : 1;
  switch (a->kind) {
  case 0:
    return (a->i > b->i) - (a->i < b->i);
  case 1:
    return (a->x > b->x) - (a->x < b->x);
  default:
    c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    if (c) return c;
    return (a->n > b->n) - (a->n < b->n);
  }
}

static void push_key(lua_State *L, const key_entry *k) {
  if (k->kind == 0) lua_pushinteger(L, k->i);
  else if (k->kind == 1) lua_pushnumber(L, k->x);
  else lua_pushlstring(L, k->s, k->n);
}

static void save_value(saver *S, int idx, int depth, const frame *f);

static void save_table(saver *S, int idx, int depth, const frame *f) {
  lua_State *L = S->L;
  key_entry *keys;
  size_t n = 0, i;
  pbt_error err;
  if (depth > PBT_IO_MAX_DEPTH)
    save_fail(S, f,
              lua_pushfstring(L, "tables nested deeper than %d levels",
                              PBT_IO_MAX_DEPTH));
  luaL_checkstack(L, 8, "save: tables nested too deeply");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, S->seen) != LUA_TNIL)
    save_fail(S, f, "cannot save a table that contains itself");
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, S->seen);

  /* count the keys and check their types */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER && lua_type(L, -1) != LUA_TSTRING)
      save_type_fail(S, f, "table key", -1);
    n++;
  }
  if (n > SIZE_MAX / sizeof *keys)
    luaL_error(L, "save: not enough memory");
  keys = (key_entry *)lua_newuserdatauv(L, n ? n * sizeof *keys : 1, 0);
  i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    key_entry *k = &keys[i];
    lua_pop(L, 1);
    if (i++ >= n) continue; /* cannot happen: the table is not modified */
    if (lua_type(L, -1) == LUA_TSTRING) {
      k->kind = 2;
      k->s = lua_tolstring(L, -1, &k->n);
    } else if (lua_isinteger(L, -1)) {
      k->kind = 0;
      k->i = lua_tointeger(L, -1);
    } else {
      k->kind = 1;
      k->x = lua_tonumber(L, -1);
    }
  }
  if (i < n) n = i;
  qsort(keys, n, sizeof *keys, key_cmp);

  enc_check(S, pbt_enc_table(S->buf, (uint64_t)n, &err), &err);
  for (i = 0; i < n; i++) {
    frame here;
    push_key(L, &keys[i]);
    here.up = f;
    here.key = lua_gettop(L);
    save_value(S, here.key, depth, &here);
    lua_pushvalue(L, here.key);
    lua_rawget(L, idx);
    save_value(S, -1, depth, &here);
    lua_pop(L, 2);
  }
  lua_pop(L, 1); /* keys */
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, S->seen);
}

/* Appends the value at idx; depth counts the tables around it. */
static void save_value(saver *S, int idx, int depth, const frame *f) {
  lua_State *L = S->L;
  pbt_error err;
  pbt_status st = PBT_OK;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    st = pbt_enc_boolean(S->buf, lua_toboolean(L, idx), &err);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      st = pbt_enc_integer(S->buf, (int64_t)lua_tointeger(L, idx), &err);
    else
      st = pbt_enc_float(S->buf, (double)lua_tonumber(L, idx), &err);
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    st = pbt_enc_string(S->buf, s, n, &err);
    break;
  }
  case LUA_TTABLE:
    save_table(S, idx, depth + 1, f);
    break;
  case LUA_TUSERDATA: {
    const pbt_tensor *t = lpbt_test_tensor(L, idx);
    if (!t) save_type_fail(S, f, "value", idx);
    if (!t->storage) save_fail(S, f, "cannot save a released tensor");
    st = pbt_enc_tensor(S->buf, t, &err);
    break;
  }
  default:
    save_type_fail(S, f, "value", idx);
  }
  enc_check(S, st, &err);
}

/* Encodes the value at idx into a new buffer on the stack (S->buf). */
static void encode_value(saver *S, int idx) {
  lua_State *L = S->L;
  pbt_error err;
  lua_newtable(L);
  S->seen = lua_gettop(L);
  S->buf = lpbt_push_buf(L);
  enc_check(S, pbt_enc_begin(S->buf, &err), &err);
  save_value(S, idx, 0, NULL);
  pbt_enc_finish(S->buf);
}

static int m_save(lua_State *L) {
  const char *path = lpbt_check_path(L, 1);
  saver S;
  pbt_error err;
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  S.L = L;
  S.fname = "save";
  encode_value(&S, 2);
  if (pbt_write_file_atomic(path, S.buf->data, S.buf->len, &err) != PBT_OK) {
    if (err.status == PBT_ERR_NOMEM) return luaL_error(L, "save: not enough memory");
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- load -------------------------------------------------------------------- */

typedef struct loader {
  lua_State *L;
  pbt_reader r;
  const char *fname; /* "load" or "decode" */
  const char *path;  /* what is read: a path, or a name the caller gives */
} loader;

static void dec_check(loader *D, pbt_status st, const pbt_error *err) {
  if (st == PBT_OK) return;
  if (err->status == PBT_ERR_NOMEM) luaL_error(D->L, "%s: not enough memory", D->fname);
  luaL_error(D->L, "%s: %s: %s", D->fname, D->path, err->msg);
}

/* Pushes the value whose tag has been read; depth counts the tables around
 * it, key tells that it is a table key. */
static void load_value(loader *D, int tag, int key, int depth) {
  lua_State *L = D->L;
  pbt_error err;
  switch (tag) {
  case PBT_TAG_FALSE:
  case PBT_TAG_TRUE:
    lua_pushboolean(L, tag == PBT_TAG_TRUE);
    break;
  case PBT_TAG_INTEGER: {
    int64_t v = 0;
    dec_check(D, pbt_dec_integer(&D->r, &v, &err), &err);
    lua_pushinteger(L, (lua_Integer)v);
    break;
  }
  case PBT_TAG_FLOAT: {
    double v = 0;
    dec_check(D, pbt_dec_float(&D->r, key, &v, &err), &err);
    lua_pushnumber(L, (lua_Number)v);
    break;
  }
  case PBT_TAG_STRING: {
    const char *s = NULL;
    size_t n = 0;
    dec_check(D, pbt_dec_string(&D->r, &s, &n, &err), &err);
    lua_pushlstring(L, s, n);
    break;
  }
  case PBT_TAG_TABLE: {
    uint64_t n = 0, i;
    int t;
    dec_check(D, pbt_dec_table(&D->r, depth + 1, &n, &err), &err);
    luaL_checkstack(L, 8, "load: tables nested too deeply");
    lua_newtable(L);
    {
      /* keys come as save writes them: sorted (integers, floats, strings),
       * each once; a float key is never a whole number that fits an
       * integer (Lua would make it that integer key).  Anything else could
       * lose a value in silence, so it is refused. */
      key_entry prev, cur;
      memset(&prev, 0, sizeof prev);
      memset(&cur, 0, sizeof cur);
      for (i = 0; i < n; i++) {
        size_t at = D->r.pos;
        int c;
        dec_check(D, pbt_dec_tag(&D->r, 1, &t, &err), &err);
        load_value(D, t, 1, depth + 1);
        if (lua_isinteger(L, -1)) {
          cur.kind = 0;
          cur.i = lua_tointeger(L, -1);
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
          cur.kind = 1;
          cur.x = lua_tonumber(L, -1);
          if (cur.x == floor(cur.x) && cur.x >= -9223372036854775808.0 &&
              cur.x < 9223372036854775808.0) {
            pbt_fail(&err, PBT_ERR_FORMAT,
                     "table key at byte %zu is the float %.17g, equal to an integer key", at, cur.x);
            dec_check(D, PBT_ERR_FORMAT, &err);
          }
        } else {
          cur.kind = 2;
          cur.s = lua_tolstring(L, -1, &cur.n); /* kept alive by the table */
        }
        if (i > 0 && (c = key_cmp(&prev, &cur)) >= 0) {
          pbt_fail(&err, PBT_ERR_FORMAT, "table key at byte %zu is %s the key before it", at,
                   c == 0 ? "the same as" : "out of order after");
          dec_check(D, PBT_ERR_FORMAT, &err);
        }
        prev = cur;
        dec_check(D, pbt_dec_tag(&D->r, 0, &t, &err), &err);
        load_value(D, t, 0, depth + 1);
        lua_rawset(L, -3);
      }
    }
    break;
  }
  default: { /* PBT_TAG_TENSOR: pbt_dec_tag admits no other tag */
    pbt_tensor *t = lpbt_push_tensor(L);
    dec_check(D, pbt_dec_tensor(&D->r, t, &err), &err);
    lpbt_gc_hint(L, t);
    break;
  }
  }
}

/* Pushes the one value of the n bytes at p (header, CRC, body), raising
 * for a corrupt or truncated buffer. */
static void decode_all(loader *D, const void *p, size_t n) {
  pbt_error err;
  int tag = 0;
  dec_check(D, pbt_dec_begin(&D->r, p, n, &err), &err);
  dec_check(D, pbt_dec_tag(&D->r, 0, &tag, &err), &err);
  load_value(D, tag, 0, 0);
  dec_check(D, pbt_dec_end(&D->r, &err), &err);
}

static int m_load(lua_State *L) {
  loader D;
  pbt_error err;
  pbt_buf *b;
  D.L = L;
  D.fname = "load";
  D.path = lpbt_check_path(L, 1);
  lua_settop(L, 1);
  b = lpbt_push_buf(L);
  if (pbt_read_file(D.path, b, &err) != PBT_OK) {
    if (err.status == PBT_ERR_NOMEM) return luaL_error(L, "load: not enough memory");
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  decode_all(&D, b->data, b->len);
  return 1;
}

/* ---- the file format in memory ------------------------------------------------------ */

/* encode(value) -> the bytes pbt.save would write (header and CRC included) */
static int m_encode(lua_State *L) {
  saver S;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  S.L = L;
  S.fname = "encode";
  encode_value(&S, 1);
  lua_pushlstring(L, (const char *)S.buf->data, S.buf->len);
  return 1;
}

/* decode(bytes [, what]) -> the value; a corrupt or truncated buffer raises
 * "decode: <what>: <problem>" (what: "bytes" unless given). */
static int m_decode(lua_State *L) {
  loader D;
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  D.L = L;
  D.fname = "decode";
  D.path = luaL_optstring(L, 2, "bytes");
  decode_all(&D, s, n);
  return 1;
}

/* crc32(s) -> the CRC-32 of the string (zlib's), an integer */
static int m_crc32(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushinteger(L, (lua_Integer)pbt_crc32(0, s, n));
  return 1;
}

/* remove_temporaries(dir) -> count, or nil and a message: the temporary
 * files an interrupted atomic write left in dir */
static int m_remove_temporaries(lua_State *L) {
  const char *dir = lpbt_check_path(L, 1);
  int removed;
  pbt_error err;
  if (pbt_remove_temporaries(dir, &removed, &err) != PBT_OK) {
    if (err.status == PBT_ERR_NOMEM) return luaL_error(L, "remove_temporaries: not enough memory");
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  lua_pushinteger(L, removed);
  return 1;
}

/* ---- raw bytes ------------------------------------------------------------------ */

static int t_tobytes(lua_State *L) {
  const pbt_tensor *t = lpbt_check_tensor(L, 1);
  size_t n = pbt_tensor_nbytes(t);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, n);
  pbt_tensor_tobytes(t, p);
  luaL_pushresultsize(&b, n);
  return 1;
}

/* frombytes(s, dtype [, shape]): shape is a table or sizes; without it, a
 * 1-d tensor of all the elements in s. */
static int f_frombytes(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *name = luaL_checkstring(L, 2);
  int64_t shape[PBT_MAX_DIM];
  int ndim, next;
  pbt_dtype dt;
  pbt_error err;
  pbt_tensor *t;
  if (pbt_dtype_from_name(name, &dt) != 0)
    luaL_argerror(L, 2,
                  lua_pushfstring(L, "unknown dtype '%s' (float32 or float64)",
                                  name));
  if (lua_isnoneornil(L, 3)) {
    size_t es = pbt_dtype_size(dt);
    if (n % es != 0)
      return luaL_error(L,
                        "frombytes: %I bytes do not hold a whole number of %s "
                        "elements (%d bytes each)",
                        (lua_Integer)n, pbt_dtype_name(dt), (int)es);
    ndim = 1;
    shape[0] = (int64_t)(n / es);
  } else {
    int ty = lua_type(L, 3);
    if (ty != LUA_TTABLE && ty != LUA_TNUMBER)
      luaL_typeerror(L, 3, "table or size");
    ndim = lpbt_check_shape(L, 3, shape, 0, &next);
    if (!lua_isnoneornil(L, next))
      luaL_argerror(L, next, "unexpected argument after the shape");
  }
  t = lpbt_push_tensor(L);
  LPBT_CHECK(L, "frombytes",
             pbt_tensor_frombytes(t, s, n, dt, ndim, shape, &err), &err);
  lpbt_gc_hint(L, t);
  return 1;
}

const luaL_Reg lpbt_io_methods[] = {{"tobytes", t_tobytes}, {NULL, NULL}};
const luaL_Reg lpbt_io_functions[] = {{"frombytes", f_frombytes},
                                      {NULL, NULL}};
const luaL_Reg lpbt_io_module[] = {
    {"save", m_save}, {"load", m_load}, {"encode", m_encode}, {"decode", m_decode},
    {"crc32", m_crc32}, {"remove_temporaries", m_remove_temporaries},
    {NULL, NULL}};
