/* pbt_sql.c -- the SQLite driver of pbt_sql.h.  Everything SQLite-specific
 * (result codes, pragmas, its API) stays in this file. */
#include "pbt_sql_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define BUSY_TIMEOUT_MS 10000
/* 64 KiB pages (set before the database turns to WAL; a database made
 * earlier keeps its size): a checkpoint of megabytes of tensors writes a
 * third of the pages, about three times faster than with 4 KiB ones; the
 * WAL is folded back into the database every 256 pages (16 MiB) */
#define SETUP_SQL "PRAGMA page_size=65536; PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL; " \
                  "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=256"

/* The status of an SQLite result code (primary or extended). */
static pbt_status status_of(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE:
    return PBT_OK;
  case SQLITE_NOMEM:
    return PBT_ERR_NOMEM;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
  case SQLITE_FULL:
  case SQLITE_IOERR:
  case SQLITE_CANTOPEN:
  case SQLITE_READONLY:
  case SQLITE_PERM:
  case SQLITE_PROTOCOL:
    return PBT_ERR_IO;
  case SQLITE_NOTADB:
  case SQLITE_CORRUPT:
    return PBT_ERR_FORMAT;
  default: /* SQLITE_ERROR, SQLITE_CONSTRAINT, SQLITE_RANGE, SQLITE_TOOBIG... */
    return PBT_ERR_ARG;
  }
}

/* Fails with rc's status and the connection's message. */
static pbt_status fail_db(sqlite3 *db, int rc, pbt_error *err) {
  pbt_status st = status_of(rc);
  if (st == PBT_OK) st = PBT_ERR_ARG; /* cannot happen: rc is an error */
  if (st == PBT_ERR_NOMEM) return pbt_fail(err, st, "not enough memory");
  return pbt_fail(err, st, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static pbt_status fail_stmt(pbt_sql_stmt *s, int rc, pbt_error *err) {
  return fail_db(s->db->db, rc, err);
}

/* ---- connections ---------------------------------------------------------- */

/* The settings, waited for while another connection holds the database:
 * turning it to WAL takes a lock that SQLite does not wait for with the
 * busy handler (two processes opening a new database at once). */
static int apply_setup(pbt_sql *c) {
  int rc, waited = 0;
  for (;;) {
    rc = sqlite3_exec(c->db, SETUP_SQL, NULL, NULL, NULL);
    if (((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) || waited >= BUSY_TIMEOUT_MS) break;
    sqlite3_sleep(10);
    waited += 10;
  }
  c->setup_pending = rc != SQLITE_OK;
  return rc;
}

pbt_status pbt_sql_open_sqlite(pbt_sql **out, const char *path, pbt_error *err) {
  pbt_sql *c;
  int rc;
  *out = NULL;
  if (!path) return pbt_fail(err, PBT_ERR_ARG, "no path given");
  c = calloc(1, sizeof *c);
  if (!c) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_extended_result_codes(c->db, 1);
    rc = sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
  }
  if (rc == SQLITE_OK) {
    rc = apply_setup(c);
    /* not a database: opened all the same; the first statement says so */
    if (status_of(rc) == PBT_ERR_FORMAT) rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) {
    pbt_status st = status_of(rc);
    if (st == PBT_ERR_NOMEM || !c->db)
      st = pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    else
      st = pbt_fail(err, st == PBT_OK ? PBT_ERR_IO : st, "%s: %s", path, sqlite3_errmsg(c->db));
    sqlite3_close_v2(c->db); /* NULL is fine */
    free(c);
    return st;
  }
  *out = c;
  return PBT_OK;
}

const char *pbt_sql_begin_statement(const pbt_sql *db) {
  return db->pg ? "BEGIN" : "BEGIN IMMEDIATE";
}

int pbt_sql_failed_transaction(pbt_sql *db) {
  return db->pg ? pbt_pg_failed_transaction(db) : 0;
}

const char *pbt_sql_dialect(const pbt_sql *db) { return db->pg ? "postgresql" : "sqlite"; }

int pbt_sql_connected(pbt_sql *db) { return db->pg ? pbt_pg_connected(db) : 1; }

void pbt_sql_close(pbt_sql *db) {
  if (db && db->pg) {
    pbt_pg_close(db);
    return;
  }
  if (!db) return;
  /* close_v2: statements left open keep the connection until finalized */
  sqlite3_close_v2(db->db);
  free(db);
}

/* sqlite3_changes64 keeps the count of the last INSERT, UPDATE or DELETE
 * through the statements that follow it; pbt_sql_step records 0 for a
 * statement that changed nothing, as other databases report. */
int64_t pbt_sql_changes(pbt_sql *db) { return db->changes; }

/* ---- statements ------------------------------------------------------------ */

/* The first byte at or after p (before end) that is not whitespace or in a
 * comment. */
static const char *skip_blank(const char *p, const char *end) {
  while (p < end) {
    unsigned char ch = (unsigned char)*p;
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v') {
      p++;
    } else if (ch == '-' && end - p >= 2 && p[1] == '-') {
      while (p < end && *p != '\n') p++;
    } else if (ch == '/' && end - p >= 2 && p[1] == '*') {
      p += 2;
      while (p < end && !(*p == '*' && end - p >= 2 && p[1] == '/')) p++;
      p = p < end ? p + 2 : end; /* SQLite ends an open comment at the end */
    } else {
      break;
    }
  }
  return p;
}

pbt_status pbt_sql_prepare(pbt_sql *db, const char *sql, size_t len,
                           pbt_sql_stmt **out, pbt_error *err) {
  if (db->pg) return pbt_pg_prepare(db, sql, len, out, err);
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  pbt_sql_stmt *s;
  int rc;
  *out = NULL;
  if (len >= INT_MAX) return pbt_fail(err, PBT_ERR_ARG, "statement too long");
  if (memchr(sql, '\0', len)) return pbt_fail(err, PBT_ERR_ARG, "the statement contains a zero byte");
  if (db->setup_pending && (rc = apply_setup(db)) != SQLITE_OK) return fail_db(db->db, rc, err);
  rc = sqlite3_prepare_v2(db->db, sql, (int)len, &st, &tail);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(st);
    return fail_db(db->db, rc, err);
  }
  if (!st) return pbt_fail(err, PBT_ERR_ARG, "no statement");
  if (tail && skip_blank(tail, sql + len) < sql + len) {
    sqlite3_finalize(st);
    return pbt_fail(err, PBT_ERR_ARG, "one statement at a time");
  }
  s = malloc(sizeof *s);
  if (!s) {
    sqlite3_finalize(st);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  s->st = st;
  s->db = db;
  s->total_before = 0;
  *out = s;
  return PBT_OK;
}

void pbt_sql_finalize(pbt_sql_stmt *s) {
  if (s && s->db->pg) {
    pbt_pg_finalize(s);
    return;
  }
  if (!s) return;
  sqlite3_finalize(s->st);
  free(s);
}

int pbt_sql_param_count(pbt_sql_stmt *s) {
  if (s->db->pg) return s->nparams;
  return sqlite3_bind_parameter_count(s->st);
}

static pbt_status bound(pbt_sql_stmt *s, int rc, pbt_error *err) {
  return rc == SQLITE_OK ? PBT_OK : fail_stmt(s, rc, err);
}

pbt_status pbt_sql_bind_null(pbt_sql_stmt *s, int k, pbt_error *err) {
  if (s->db->pg) return pbt_pg_bind(s, k, NULL, 0, 0, err);
  return bound(s, sqlite3_bind_null(s->st, k), err);
}

pbt_status pbt_sql_bind_int(pbt_sql_stmt *s, int k, int64_t v, pbt_error *err) {
  if (s->db->pg) return pbt_pg_bind_int(s, k, v, err);
  return bound(s, sqlite3_bind_int64(s->st, k, (sqlite3_int64)v), err);
}

pbt_status pbt_sql_bind_double(pbt_sql_stmt *s, int k, double v, pbt_error *err) {
  if (s->db->pg) return pbt_pg_bind_double(s, k, v, err);
  return bound(s, sqlite3_bind_double(s->st, k, v), err);
}

pbt_status pbt_sql_bind_text(pbt_sql_stmt *s, int k, const char *p, size_t n,
                             pbt_error *err) {
  if (s->db->pg) return pbt_pg_bind(s, k, p ? p : "", n, 0, err);
  if (!p) p = ""; /* SQLite would bind NULL */
  return bound(s, sqlite3_bind_text64(s->st, k, p, (sqlite3_uint64)n, SQLITE_TRANSIENT,
                                      SQLITE_UTF8),
               err);
}

pbt_status pbt_sql_bind_blob(pbt_sql_stmt *s, int k, const void *p, size_t n,
                             pbt_error *err) {
  if (s->db->pg) return pbt_pg_bind(s, k, p ? p : "", n, 1, err);
  /* a NULL pointer would bind NULL, not an empty blob */
  if (n == 0) return bound(s, sqlite3_bind_zeroblob(s->st, k, 0), err);
  return bound(s, sqlite3_bind_blob64(s->st, k, p, (sqlite3_uint64)n, SQLITE_TRANSIENT),
               err);
}

pbt_status pbt_sql_step(pbt_sql_stmt *s, int *row, pbt_error *err) {
  if (s->db->pg) return pbt_pg_step(s, row, err);
  sqlite3 *db = s->db->db;
  int rc;
  if (!sqlite3_stmt_busy(s->st)) s->total_before = (int64_t)sqlite3_total_changes64(db);
  rc = sqlite3_step(s->st);
  *row = rc == SQLITE_ROW;
  if (rc == SQLITE_DONE)
    s->db->changes = (int64_t)sqlite3_total_changes64(db) == s->total_before
                         ? 0
                         : (int64_t)sqlite3_changes64(db);
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) return PBT_OK;
  return fail_stmt(s, rc, err);
}

/* ---- result columns ------------------------------------------------------------ */

int pbt_sql_column_count(pbt_sql_stmt *s) {
  if (s->db->pg) return pbt_pg_column_count(s);
  return sqlite3_column_count(s->st);
}

const char *pbt_sql_column_name(pbt_sql_stmt *s, int k) {
  if (s->db->pg) return pbt_pg_column_name(s, k);
  return sqlite3_column_name(s->st, k);
}

pbt_sql_type pbt_sql_column_type(pbt_sql_stmt *s, int k) {
  if (s->db->pg) return pbt_pg_column_type(s, k);
  switch (sqlite3_column_type(s->st, k)) {
  case SQLITE_INTEGER: return PBT_SQL_INT;
  case SQLITE_FLOAT: return PBT_SQL_DOUBLE;
  case SQLITE_TEXT: return PBT_SQL_TEXT;
  case SQLITE_BLOB: return PBT_SQL_BLOB;
  default: return PBT_SQL_NULL;
  }
}

int64_t pbt_sql_column_int(pbt_sql_stmt *s, int k) {
  if (s->db->pg) return pbt_pg_column_int(s, k);
  return (int64_t)sqlite3_column_int64(s->st, k);
}

double pbt_sql_column_double(pbt_sql_stmt *s, int k) {
  if (s->db->pg) return pbt_pg_column_double(s, k);
  return sqlite3_column_double(s->st, k);
}

const void *pbt_sql_column_bytes(pbt_sql_stmt *s, int k, size_t *n) {
  if (s->db->pg) return pbt_pg_column_bytes(s, k, n);
  sqlite3_stmt *st = s->st;
  const void *p; /* the bytes first, then their count (SQLite's rule) */
  if (sqlite3_column_type(st, k) == SQLITE_BLOB)
    p = sqlite3_column_blob(st, k);
  else
    p = sqlite3_column_text(st, k);
  *n = (size_t)sqlite3_column_bytes(st, k);
  if (!p) *n = 0; /* an empty blob, NULL, or out of memory */
  return p ? p : "";
}

/* ---- checks -------------------------------------------------------------------- */

pbt_status pbt_sql_check_integrity(pbt_sql *db, pbt_error *err) {
  if (db->pg) return PBT_OK; /* the server keeps its own */
  static const char sql[] = "PRAGMA integrity_check(1)";
  pbt_sql_stmt *s;
  pbt_status st;
  int row;
  size_t n;
  const char *msg;
  st = pbt_sql_prepare(db, sql, sizeof sql - 1, &s, err);
  if (st != PBT_OK) return st;
  st = pbt_sql_step(s, &row, err);
  if (st == PBT_OK && row) {
    msg = (const char *)pbt_sql_column_bytes(s, 0, &n);
    if (!(n == 2 && memcmp(msg, "ok", 2) == 0))
      st = pbt_fail(err, PBT_ERR_FORMAT, "%.*s", n > 200 ? 200 : (int)n, msg);
  }
  pbt_sql_finalize(s);
  return st;
}
