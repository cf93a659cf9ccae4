/* lpbt_sql.c -- pbt.core.sql: an SQL database (SQLite) for the run store.
 *
 *   sql.open(path) -> a pbt.SQL, or nil, message when the file cannot be
 *     opened (a missing directory, permission denied, a locked database)
 *   sql.blob(s)    -> a marker that db:exec binds as a BLOB
 *   db:exec(sql, ...) -> rows, changed
 *     Runs one statement, its ? parameters bound to the arguments after sql:
 *     nil -> NULL, integer -> INTEGER, float -> REAL, boolean -> INTEGER
 *     0/1, string -> TEXT, sql.blob(s) -> BLOB.  rows is an array of tables
 *     column name -> value (INTEGER -> integer, REAL -> float, TEXT and BLOB
 *     -> string, NULL -> absent); changed the rows the statement changed.
 *   db:transaction(fn, ...) -> what fn returns
 *     BEGIN (IMMEDIATE in SQLite), fn(...), COMMIT; when fn raises, ROLLBACK and the
 *     same error raised again.  Transactions do not nest.
 *   db:integrity() -> true, or false, SQLite's first complaint
 *   db:dialect()   -> "sqlite" or "postgresql"
 *   db:connected() -> false once a PostgreSQL connection was lost (the
 *     server stopped or went away: open a new one); SQLite: true
 *   db:close()     (also __gc and __close)
 * Every failure of exec and transaction raises "<method>: <SQLite's
 * message>"; a method called on a closed database raises
 * "bad argument #1 to '<method>' (database is closed)".
 */
#include <string.h>

#include "lpbt.h"
#include "pbt_sql.h"

#define LPBT_SQL "pbt.SQL"
#define LPBT_SQL_BLOB "pbt.SQLBlob"
#define LPBT_SQL_STMT "pbt.SQLStatement"

typedef struct sql_box {
  pbt_sql *db;
  int in_transaction;
} sql_box;

static sql_box *check_box(lua_State *L, const char *fname) {
  sql_box *b = (sql_box *)lpbt_checkudata(L, 1, LPBT_SQL);
  /* spelt out: luaL_argerror would say "calling 'exec' on bad self" */
  if (!b->db) luaL_error(L, "bad argument #1 to '%s' (database is closed)", fname);
  return b;
}

static int db_gc(lua_State *L) {
  sql_box *b = (sql_box *)lpbt_checkudata(L, 1, LPBT_SQL);
  pbt_sql *db = b->db;
  b->db = NULL;
  pbt_sql_close(db);
  return 0;
}

static int db_close(lua_State *L) {
  check_box(L, "close");
  return db_gc(L);
}

/* ---- statements ------------------------------------------------------------- */

/* A prepared statement in a to-be-closed userdata: finalized when the
 * calling C function returns or raises. */
typedef struct stmt_box {
  pbt_sql_stmt *s;
} stmt_box;

static int stmt_free(lua_State *L) {
  stmt_box *b = (stmt_box *)lpbt_checkudata(L, 1, LPBT_SQL_STMT);
  pbt_sql_stmt *s = b->s;
  b->s = NULL;
  pbt_sql_finalize(s);
  return 0;
}

static stmt_box *push_stmt_box(lua_State *L) {
  stmt_box *b = (stmt_box *)lpbt_newudata(L, sizeof *b, 0, LPBT_SQL_STMT);
  b->s = NULL;
  if (luaL_newmetatable(L, LPBT_SQL_STMT)) {
    lua_pushcfunction(L, stmt_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, stmt_free);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  return b;
}

/* Whether the value at idx can be bound to a parameter. */
static int bindable(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TBOOLEAN:
  case LUA_TNUMBER:
  case LUA_TSTRING:
    return 1;
  case LUA_TUSERDATA:
    return lpbt_testudata(L, idx, LPBT_SQL_BLOB) != NULL;
  default:
    return 0;
  }
}

/* Binds the value at idx (bindable) to parameter k. */
static pbt_status bind_value(lua_State *L, pbt_sql_stmt *s, int k, int idx, pbt_error *err) {
  size_t n;
  const char *p;
  pbt_status st;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return pbt_sql_bind_null(s, k, err);
  case LUA_TBOOLEAN:
    return pbt_sql_bind_int(s, k, lua_toboolean(L, idx), err);
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return pbt_sql_bind_int(s, k, (int64_t)lua_tointeger(L, idx), err);
    return pbt_sql_bind_double(s, k, (double)lua_tonumber(L, idx), err);
  case LUA_TSTRING:
    p = lua_tolstring(L, idx, &n);
    return pbt_sql_bind_text(s, k, p, n, err);
  default: /* a blob: its string is user value 1 */
    lua_getiuservalue(L, idx, 1);
    p = lua_tolstring(L, -1, &n);
    st = pbt_sql_bind_blob(s, k, p, n, err);
    lua_pop(L, 1);
    return st;
  }
}

/* Pushes the current row as a table column name -> value. */
static void push_row(lua_State *L, pbt_sql_stmt *s, int ncol) {
  int k;
  lua_createtable(L, 0, ncol);
  for (k = 0; k < ncol; k++) {
    const char *name;
    const void *p;
    size_t n;
    pbt_sql_type t = pbt_sql_column_type(s, k);
    if (t == PBT_SQL_NULL) continue;
    name = pbt_sql_column_name(s, k);
    if (!name) luaL_error(L, "exec: not enough memory");
    switch (t) {
    case PBT_SQL_INT:
      lua_pushinteger(L, (lua_Integer)pbt_sql_column_int(s, k));
      break;
    case PBT_SQL_DOUBLE:
      lua_pushnumber(L, (lua_Number)pbt_sql_column_double(s, k));
      break;
    default: /* TEXT, BLOB */
      p = pbt_sql_column_bytes(s, k, &n);
      lua_pushlstring(L, (const char *)p, n);
      break;
    }
    lua_setfield(L, -2, name);
  }
}

static int db_exec(lua_State *L) {
  sql_box *b = check_box(L, "exec");
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  int i, row, ncol, nparams, top = lua_gettop(L);
  lua_Integer nrows = 0;
  stmt_box *sb;
  pbt_error err;
  for (i = 3; i <= top; i++)
    if (!bindable(L, i)) luaL_typeerror(L, i, "nil, boolean, number, string or blob");
  sb = push_stmt_box(L);
  LPBT_CHECK(L, "exec", pbt_sql_prepare(b->db, sql, len, &sb->s, &err), &err);
  nparams = pbt_sql_param_count(sb->s);
  if (nparams != top - 2)
    luaL_error(L, "exec: the statement takes %d parameter%s, %d given", nparams,
               nparams == 1 ? "" : "s", top - 2);
  for (i = 3; i <= top; i++)
    LPBT_CHECK(L, "exec", bind_value(L, sb->s, i - 2, i, &err), &err);
  ncol = -1; /* known once the statement has run (PostgreSQL) */
  lua_newtable(L);
  for (;;) {
    LPBT_CHECK(L, "exec", pbt_sql_step(sb->s, &row, &err), &err);
    if (!row) break;
    if (ncol < 0) ncol = pbt_sql_column_count(sb->s);
    push_row(L, sb->s, ncol);
    lua_rawseti(L, -2, ++nrows);
  }
  lua_pushinteger(L, (lua_Integer)pbt_sql_changes(b->db));
  return 2; /* the statement is finalized on the way out */
}

/* Runs a statement without parameters, holding it only inside. */
static pbt_status run_simple(pbt_sql *db, const char *sql, pbt_error *err) {
  pbt_sql_stmt *s;
  int row;
  pbt_status st = pbt_sql_prepare(db, sql, strlen(sql), &s, err);
  if (st != PBT_OK) return st;
  st = pbt_sql_step(s, &row, err);
  pbt_sql_finalize(s);
  return st;
}

static int db_transaction(lua_State *L) {
  sql_box *b = check_box(L, "transaction");
  pbt_error err, ignored;
  int status;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (b->in_transaction) return luaL_error(L, "transaction: already in a transaction");
  LPBT_CHECK(L, "transaction", run_simple(b->db, pbt_sql_begin_statement(b->db), &err), &err);
  b->in_transaction = 1;
  status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  b->in_transaction = 0;
  if (!b->db) { /* fn closed it (closing rolled the transaction back) */
    if (status != LUA_OK) return lua_error(L);
    return luaL_error(L, "transaction: the database was closed inside the transaction");
  }
  if (status != LUA_OK) {
    (void)run_simple(b->db, "ROLLBACK", &ignored);
    return lua_error(L); /* the same error object */
  }
  if (pbt_sql_failed_transaction(b->db)) {
    /* a statement fn caught failed: the server would turn COMMIT into a
     * rollback, so say it */
    (void)run_simple(b->db, "ROLLBACK", &ignored);
    return luaL_error(L, "transaction: a statement failed inside it, so nothing was written");
  }
  if (run_simple(b->db, "COMMIT", &err) != PBT_OK) {
    (void)run_simple(b->db, "ROLLBACK", &ignored);
    return lpbt_raise(L, "transaction", &err);
  }
  return lua_gettop(L) - 1; /* fn's results */
}

static int db_dialect(lua_State *L) {
  lua_pushstring(L, pbt_sql_dialect(check_box(L, "dialect")->db));
  return 1;
}

static int db_connected(lua_State *L) {
  lua_pushboolean(L, pbt_sql_connected(check_box(L, "connected")->db));
  return 1;
}

static int db_integrity(lua_State *L) {
  sql_box *b = check_box(L, "integrity");
  pbt_error err;
  pbt_status st = pbt_sql_check_integrity(b->db, &err);
  if (st == PBT_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (st != PBT_ERR_FORMAT) return lpbt_raise(L, "integrity", &err);
  lua_pushboolean(L, 0);
  lua_pushstring(L, err.msg);
  return 2;
}

/* ---- module functions ----------------------------------------------------------- */

static int s_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"exec", db_exec},
                                     {"transaction", db_transaction},
                                     {"integrity", db_integrity},
                                     {"dialect", db_dialect},
                                     {"connected", db_connected},
                                     {"close", db_close},
                                     {NULL, NULL}};
  const char *path = lpbt_check_path(L, 1);
  sql_box *b;
  pbt_status st;
  pbt_error err;
  b = (sql_box *)lpbt_newudata(L, sizeof *b, 0, LPBT_SQL);
  b->db = NULL;
  b->in_transaction = 0;
  if (luaL_newmetatable(L, LPBT_SQL)) {
    lua_pushcfunction(L, db_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, db_gc);
    lua_setfield(L, -2, "__close");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  /* a PostgreSQL URL, or a path of an SQLite database */
  if (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0)
    st = pbt_sql_open_postgres(&b->db, path, &err);
  else
    st = pbt_sql_open_sqlite(&b->db, path, &err);
  if (st == PBT_ERR_IO) {
    lua_pushnil(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  LPBT_CHECK(L, "open", st, &err);
  return 1;
}

static int s_blob(lua_State *L) {
  luaL_checkstring(L, 1); /* a number becomes a string in place */
  lpbt_newudata(L, 0, 1, LPBT_SQL_BLOB);
  luaL_newmetatable(L, LPBT_SQL_BLOB);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

const luaL_Reg lpbt_sql_module[] = {{"open", s_open}, {"blob", s_blob}, {NULL, NULL}};
