/* pbt_sql_impl.h -- the drivers' shared structures (internal to pbt_sql.c
 * and pbt_sql_pg.c; not installed). */
#ifndef PBT_SQL_IMPL_H
#define PBT_SQL_IMPL_H

#include <sqlite3.h>
#include <libpq-fe.h>

#include "pbt_sql.h"

/* PostgreSQL: a statement prepared on the connection (by its text), with
 * its result columns' types and whether its results come in binary form. */
typedef struct pbt_pg_prepared {
  char *text;
  char name[24];
  int binary;
} pbt_pg_prepared;

struct pbt_sql {
  sqlite3 *db;     /* the SQLite driver's connection */
  PGconn *pg;      /* or PostgreSQL's */
  /* the pragmas of pbt_sql_open_sqlite could not be applied because the
   * file is not (yet) a database: pbt_sql_prepare applies them first */
  int setup_pending;
  int64_t changes; /* what pbt_sql_changes returns */
  int lost;        /* PostgreSQL: a statement failed for want of the server */
  pbt_pg_prepared *prepared; /* PostgreSQL: the statements prepared so far */
  int nprepared, capprepared;
};

struct pbt_sql_stmt {
  sqlite3_stmt *st;
  pbt_sql *db;
  int64_t total_before; /* sqlite3_total_changes64 at the first step */
  /* PostgreSQL: the statement with $1.., its parameters, its result */
  char *text;
  int nparams;
  char **values;
  int *lengths, *formats;
  PGresult *res;
  int row;          /* the next row of res to hand out; -1 before executing */
  unsigned char *unescaped; /* the last bytea column read */
  int binary;               /* res holds binary values (see pbt_pg_step) */
};

void pbt_pg_close(pbt_sql *db);
int pbt_pg_failed_transaction(pbt_sql *db);
int pbt_pg_connected(pbt_sql *db);
pbt_status pbt_pg_prepare(pbt_sql *db, const char *sql, size_t len, pbt_sql_stmt **out,
                          pbt_error *err);
void pbt_pg_finalize(pbt_sql_stmt *s);
pbt_status pbt_pg_bind(pbt_sql_stmt *s, int k, const void *p, size_t n, int binary,
                       pbt_error *err);
pbt_status pbt_pg_bind_int(pbt_sql_stmt *s, int k, int64_t v, pbt_error *err);
pbt_status pbt_pg_bind_double(pbt_sql_stmt *s, int k, double v, pbt_error *err);
pbt_status pbt_pg_step(pbt_sql_stmt *s, int *row, pbt_error *err);
int pbt_pg_column_count(pbt_sql_stmt *s);
const char *pbt_pg_column_name(pbt_sql_stmt *s, int k);
pbt_sql_type pbt_pg_column_type(pbt_sql_stmt *s, int k);
int64_t pbt_pg_column_int(pbt_sql_stmt *s, int k);
double pbt_pg_column_double(pbt_sql_stmt *s, int k);
const void *pbt_pg_column_bytes(pbt_sql_stmt *s, int k, size_t *n);

#endif
