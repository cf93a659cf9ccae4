/*
 * pbt_sql.h -- a thin SQL driver for the run store: a connection, prepared
 * statements with 1-based parameters, 0-based result columns.  This is the
 * SQLite driver; the types are opaque so that another driver (PostgreSQL)
 * can offer the same functions.
 *
 * Errors carry the database's own message (e.g. "no such table: x"), with
 * these statuses:
 *   PBT_ERR_IO      the world failed: a file that cannot be opened, a busy
 *                   or locked database (after the busy timeout), a full
 *                   disk, an I/O error, permission denied
 *   PBT_ERR_ARG     SQL errors (syntax, unknown table), constraint
 *                   violations, parameter indices out of range
 *   PBT_ERR_FORMAT  a file that is not a database, or a corrupt one
 *   PBT_ERR_NOMEM   not enough memory
 *
 * A connection and its statements belong to one thread at a time.
 */
#ifndef PBT_SQL_H
#define PBT_SQL_H

#include <stddef.h>
#include <stdint.h>

#include "pbt_tensor.h" /* pbt_status, pbt_error */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pbt_sql pbt_sql;           /* a connection */
typedef struct pbt_sql_stmt pbt_sql_stmt; /* a prepared statement */

/* Opens (creating) the SQLite database at path: WAL journal,
 * synchronous=FULL, foreign_keys=ON, busy timeout 10 s.  PBT_ERR_IO naming
 * the path when it cannot be opened.  A file that is not a database opens;
 * the settings are then applied before the first statement is prepared,
 * and pbt_sql_prepare reports PBT_ERR_FORMAT ("file is not a database"). */
pbt_status pbt_sql_open_sqlite(pbt_sql **out, const char *path, pbt_error *err);
/* NULL is fine.  Finalizes nothing: finalize the statements first. */
/* Connects to a PostgreSQL server (libpq; conninfo a URL such as
 * "postgresql://user@host/db" or "host=/tmp/dir port=5433 dbname=x").
 * PBT_ERR_IO with the server's or libpq's message when it cannot. */
pbt_status pbt_sql_open_postgres(pbt_sql **out, const char *conninfo, pbt_error *err);
/* The statement that begins a transaction that takes its write locks at
 * once: "BEGIN IMMEDIATE" (SQLite) or "BEGIN" (PostgreSQL, whose rows are
 * locked as they are written). */
const char *pbt_sql_begin_statement(const pbt_sql *db);
/* 1 when a statement failed inside the open transaction and the server
 * will only roll it back (PostgreSQL; SQLite goes on: 0). */
int pbt_sql_failed_transaction(pbt_sql *db);
/* "sqlite" or "postgresql": which driver holds the connection. */
const char *pbt_sql_dialect(const pbt_sql *db);
/* 1 while the connection works; 0 once PostgreSQL's connection was lost
 * (a server that stopped or went away: open a new connection).  SQLite: 1. */
int pbt_sql_connected(pbt_sql *db);
void pbt_sql_close(pbt_sql *db);

/* Prepares the one statement in the len bytes at sql.  PBT_ERR_ARG "one
 * statement at a time" when anything but whitespace and comments follows
 * it, "no statement" when there is none. */
pbt_status pbt_sql_prepare(pbt_sql *db, const char *sql, size_t len,
                           pbt_sql_stmt **out, pbt_error *err);
void pbt_sql_finalize(pbt_sql_stmt *s); /* NULL is fine */

/* Parameters: k is 1-based, as SQLite's.  Text and blobs are copied. */
int pbt_sql_param_count(pbt_sql_stmt *s);
pbt_status pbt_sql_bind_null(pbt_sql_stmt *s, int k, pbt_error *err);
pbt_status pbt_sql_bind_int(pbt_sql_stmt *s, int k, int64_t v, pbt_error *err);
pbt_status pbt_sql_bind_double(pbt_sql_stmt *s, int k, double v, pbt_error *err);
pbt_status pbt_sql_bind_text(pbt_sql_stmt *s, int k, const char *p, size_t n,
                             pbt_error *err);
pbt_status pbt_sql_bind_blob(pbt_sql_stmt *s, int k, const void *p, size_t n,
                             pbt_error *err);

/* Steps: *row = 1 when a row is ready, 0 when done. */
pbt_status pbt_sql_step(pbt_sql_stmt *s, int *row, pbt_error *err);

/* Result columns: k is 0-based.  The values are those of the current row;
 * pointers stay valid until the next step or the finalize. */
typedef enum pbt_sql_type {
  PBT_SQL_NULL,
  PBT_SQL_INT,
  PBT_SQL_DOUBLE,
  PBT_SQL_TEXT,
  PBT_SQL_BLOB
} pbt_sql_type;
/* Valid once pbt_sql_step has given a row (PostgreSQL runs the statement then). */
int pbt_sql_column_count(pbt_sql_stmt *s);
/* NULL only when memory ran out. */
const char *pbt_sql_column_name(pbt_sql_stmt *s, int k);
pbt_sql_type pbt_sql_column_type(pbt_sql_stmt *s, int k);
int64_t pbt_sql_column_int(pbt_sql_stmt *s, int k);
double pbt_sql_column_double(pbt_sql_stmt *s, int k);
/* TEXT and BLOB: the bytes (never NULL; "" when empty) and their count. */
const void *pbt_sql_column_bytes(pbt_sql_stmt *s, int k, size_t *n);

/* Rows changed by the last statement stepped to its end: its INSERT,
 * UPDATE or DELETE (rows changed by triggers not counted); 0 after one that
 * changed nothing (SELECT, CREATE TABLE...). */
int64_t pbt_sql_changes(pbt_sql *db);

/* PRAGMA integrity_check: PBT_OK, or PBT_ERR_FORMAT with SQLite's first
 * complaint (other statuses when the check itself cannot run). */
pbt_status pbt_sql_check_integrity(pbt_sql *db, pbt_error *err);

#ifdef __cplusplus
}
#endif
#endif
