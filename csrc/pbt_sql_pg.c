/* pbt_sql_pg.c -- the PostgreSQL driver of pbt_sql.h (libpq).  Statements
 * are written with SQLite's `?` parameters; they become $1, $2... here
 * (outside quotes and comments).  Results come in text form and are
 * typed by their column's type: bigint/integer/smallint as integers,
 * double precision/real as doubles, bytea as bytes, everything else as
 * text. */
#define _POSIX_C_SOURCE 200809L
#include "pbt_sql_impl.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* type OIDs of pg_type (stable across versions) */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_NAME 19
#define OID_TEXT 25
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_UNKNOWN 705
#define OID_BPCHAR 1042
#define OID_VARCHAR 1043

/* The status of a failed result, from its SQLSTATE: a connection or
 * resource failure (classes 08, 53, 57, 58) is the world's (IO), data
 * corrupted (XX001/XX002) is FORMAT, the rest (syntax, constraints...)
 * ARG. */
static pbt_status status_of(const PGresult *r) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if (!state) return PBT_ERR_IO;
  if (!strncmp(state, "08", 2) || !strncmp(state, "53", 2) || !strncmp(state, "57", 2) ||
      !strncmp(state, "58", 2))
    return PBT_ERR_IO;
  if (!strcmp(state, "XX001") || !strcmp(state, "XX002")) return PBT_ERR_FORMAT;
  return PBT_ERR_ARG;
}

/* libpq's message without its trailing newline and "ERROR:  " prefix. */
static pbt_status fail_pg(pbt_status st, const char *msg, pbt_error *err) {
  size_t n;
  if (!msg) msg = "";
  if (!strncmp(msg, "ERROR:  ", 8)) msg += 8;
  n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) n--;
  return pbt_fail(err, st, "%.*s", (int)(n > 400 ? 400 : n), msg);
}

static void quiet_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

pbt_status pbt_sql_open_postgres(pbt_sql **out, const char *conninfo, pbt_error *err) {
  pbt_sql *c;
  PGresult *r;
  *out = NULL;
  if (!conninfo) return pbt_fail(err, PBT_ERR_ARG, "no connection string given");
  c = calloc(1, sizeof *c);
  if (!c) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  {
    /* a server that does not answer is given up after 10 s, not libpq's
     * default of waiting as long as the system does (the conninfo's own
     * connect_timeout, processed after this one, wins) */
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const values[] = {"10", conninfo, NULL};
    c->pg = PQconnectdbParams(keys, values, 1);
  }
  if (!c->pg) {
    free(c);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  if (PQstatus(c->pg) != CONNECTION_OK) {
    pbt_status st = fail_pg(PBT_ERR_IO, PQerrorMessage(c->pg), err);
    PQfinish(c->pg);
    free(c);
    return st;
  }
  /* quiet notices (they would go to stderr): the server's own messages,
   * and the warnings it sends as it shuts down */
  r = PQexec(c->pg, "SET client_min_messages = warning");
  PQclear(r);
  PQsetNoticeProcessor(c->pg, quiet_notice, NULL);
  *out = c;
  return PBT_OK;
}

int pbt_pg_failed_transaction(pbt_sql *db) {
  return PQtransactionStatus(db->pg) == PQTRANS_INERROR;
}

int pbt_pg_connected(pbt_sql *db) { return !db->lost && PQstatus(db->pg) == CONNECTION_OK; }

void pbt_pg_close(pbt_sql *db) {
  int k;
  PQfinish(db->pg);
  for (k = 0; k < db->nprepared; k++) free(db->prepared[k].text);
  free(db->prepared);
  free(db);
}

/* Whether values of a type are read here in binary form. */
static int binary_type(Oid t) {
  switch (t) {
  case OID_BOOL: case OID_BYTEA: case OID_INT8: case OID_INT2: case OID_INT4: case OID_OID:
  case OID_FLOAT4: case OID_FLOAT8: case OID_NAME: case OID_TEXT: case OID_UNKNOWN:
  case OID_BPCHAR: case OID_VARCHAR:
    return 1;
  default:
    return 0;
  }
}

/* The prepared statement of text, prepared (and described) on the first
 * use: the server parses and plans a statement the store runs thousands of
 * times once, and its results come in binary form when every column's
 * type is one read here (bytea as bytes, not hex text).  Only SELECT,
 * INSERT, UPDATE, DELETE, WITH and VALUES can be prepared; *out = NULL for
 * the others (BEGIN, CREATE...), which run unprepared. */
static pbt_status prepared_of(pbt_sql *db, const char *text, int nparams, pbt_pg_prepared **out,
                              pbt_error *err) {
  static const char *const verbs[] = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", NULL};
  const char *p = text;
  pbt_pg_prepared *e;
  PGresult *r;
  int k, ok = 0;
  *out = NULL;
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == '(') p++;
  for (k = 0; verbs[k]; k++) ok |= strncasecmp(p, verbs[k], strlen(verbs[k])) == 0;
  if (!ok) return PBT_OK;
  for (k = 0; k < db->nprepared; k++) {
    if (strcmp(db->prepared[k].text, text) == 0) {
      *out = &db->prepared[k];
      return PBT_OK;
    }
  }
  /* a caller that builds ever new statement texts: the first 256 are kept
   * prepared (the server holds each one for the session), the rest run
   * unprepared */
  if (db->nprepared >= 256) return PBT_OK;
  if (db->nprepared == db->capprepared) {
    int cap = db->capprepared ? 2 * db->capprepared : 16;
    pbt_pg_prepared *grown = realloc(db->prepared, (size_t)cap * sizeof *grown);
    if (!grown) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    db->prepared = grown;
    db->capprepared = cap;
  }
  e = &db->prepared[db->nprepared];
  snprintf(e->name, sizeof e->name, "pbt_%d", db->nprepared + 1);
  e->text = strdup(text);
  if (!e->text) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  r = PQprepare(db->pg, e->name, text, nparams, NULL);
  if (PQresultStatus(r) == PGRES_COMMAND_OK) {
    PQclear(r);
    r = PQdescribePrepared(db->pg, e->name);
  }
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    pbt_status fs = fail_pg(status_of(r), primary ? primary : PQerrorMessage(db->pg), err);
    if (fs == PBT_ERR_IO) db->lost = 1;
    PQclear(r);
    free(e->text);
    return fs;
  }
  e->binary = 1;
  for (k = 0; k < PQnfields(r); k++) e->binary &= binary_type(PQftype(r, k));
  PQclear(r);
  db->nprepared++;
  *out = e;
  return PBT_OK;
}

/* The statement with ?s turned into $1, $2...; *nparams receives the count;
 * *more is set when a second statement follows a `;`. */
static char *numbered(const char *sql, size_t len, int *nparams, int *more) {
  char *out;
  size_t i = 0, o = 0;
  int n = 0;
  *more = 0;
  /* "?" -> "$" and at most 10 digits */
  if (len > (SIZE_MAX - 1) / 11) return NULL;
  out = malloc(len * 11 + 1);
  if (!out) return NULL;
  while (i < len) {
    char ch = sql[i];
    if (ch == '\'' || ch == '"') { /* a quoted string or name, '' inside */
      char q = ch;
      out[o++] = sql[i++];
      while (i < len) {
        out[o++] = sql[i];
        if (sql[i++] == q) {
          if (i < len && sql[i] == q) out[o++] = sql[i++];
          else break;
        }
      }
    } else if (ch == '-' && i + 1 < len && sql[i + 1] == '-') {
      while (i < len && sql[i] != '\n') out[o++] = sql[i++];
    } else if (ch == '?') {
      o += (size_t)snprintf(out + o, 12, "$%d", ++n);
      i++;
    } else if (ch == ';') {
      size_t j = i + 1;
      while (j < len && (sql[j] == ' ' || sql[j] == '\n' || sql[j] == '\t' || sql[j] == '\r')) j++;
      if (j < len) *more = 1;
      i = len;
    } else {
      out[o++] = sql[i++];
    }
  }
  out[o] = '\0';
  *nparams = n;
  return out;
}

pbt_status pbt_pg_prepare(pbt_sql *db, const char *sql, size_t len, pbt_sql_stmt **out,
                          pbt_error *err) {
  pbt_sql_stmt *s;
  int n, more;
  *out = NULL;
  if (memchr(sql, '\0', len)) return pbt_fail(err, PBT_ERR_ARG, "the statement contains a zero byte");
  s = calloc(1, sizeof *s);
  if (!s) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  s->db = db;
  s->row = -1;
  s->text = numbered(sql, len, &n, &more);
  if (!s->text) {
    free(s);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  if (more) {
    pbt_pg_finalize(s);
    return pbt_fail(err, PBT_ERR_ARG, "one statement at a time");
  }
  if (n > 65535) { /* the protocol's limit */
    pbt_pg_finalize(s);
    return pbt_fail(err, PBT_ERR_ARG, "more than 65535 parameters");
  }
  s->nparams = n;
  if (n > 0) {
    s->values = calloc((size_t)n, sizeof *s->values);
    s->lengths = calloc((size_t)n, sizeof *s->lengths);
    s->formats = calloc((size_t)n, sizeof *s->formats);
    if (!s->values || !s->lengths || !s->formats) {
      pbt_pg_finalize(s);
      return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    }
  }
  *out = s;
  return PBT_OK;
}

void pbt_pg_finalize(pbt_sql_stmt *s) {
  int k;
  if (!s) return;
  for (k = 0; k < s->nparams && s->values; k++) free(s->values[k]);
  free(s->values);
  free(s->lengths);
  free(s->formats);
  free(s->text);
  PQclear(s->res);
  free(s->unescaped);
  free(s);
}

pbt_status pbt_pg_bind(pbt_sql_stmt *s, int k, const void *p, size_t n, int binary,
                       pbt_error *err) {
  char *v = NULL;
  if (k < 1 || k > s->nparams)
    return pbt_fail(err, PBT_ERR_ARG, "column index out of range");
  if (n > 0x7fffffff) return pbt_fail(err, PBT_ERR_ARG, "value too long");
  if (p) {
    v = malloc(n + 1);
    if (!v) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    memcpy(v, p, n);
    v[n] = '\0';
  }
  free(s->values[k - 1]);
  s->values[k - 1] = v;
  s->lengths[k - 1] = (int)n;
  s->formats[k - 1] = binary;
  return PBT_OK;
}

pbt_status pbt_pg_bind_int(pbt_sql_stmt *s, int k, int64_t v, pbt_error *err) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%" PRId64, v);
  return pbt_pg_bind(s, k, buf, (size_t)n, 0, err);
}

pbt_status pbt_pg_bind_double(pbt_sql_stmt *s, int k, double v, pbt_error *err) {
  char buf[40];
  int n;
  if (v != v) return pbt_pg_bind(s, k, "NaN", 3, 0, err);
  if (v > 1.7976931348623157e308) return pbt_pg_bind(s, k, "Infinity", 8, 0, err);
  if (v < -1.7976931348623157e308) return pbt_pg_bind(s, k, "-Infinity", 9, 0, err);
  n = snprintf(buf, sizeof buf, "%.17g", v);
  return pbt_pg_bind(s, k, buf, (size_t)n, 0, err);
}

/* A bytea value in the server's text form as bytes, in a malloc'd buffer
 * (*n its length; NULL when out of memory).  The hex form ("\\x" and two
 * digits a byte, PostgreSQL's default) is decoded here, a table lookup a
 * digit (libpq's PQunescapeBytea takes several times as long on
 * megabytes); anything else goes through PQunescapeBytea. */
static unsigned char *unhex(const char *v, size_t len, size_t *n) {
  /* a hex digit's value plus one; 0 for anything else */
  static const unsigned char digit[256] = {
      ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,
      ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
      ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
      ['F'] = 16};
  unsigned char *out;
  size_t i, m;
  if (len >= 2 && v[0] == '\\' && v[1] == 'x' && len % 2 == 0) {
    m = (len - 2) / 2;
    out = malloc(m ? m : 1);
    if (!out) return NULL;
    for (i = 0; i < m; i++) {
      unsigned hi = digit[(unsigned char)v[2 + 2 * i]], lo = digit[(unsigned char)v[3 + 2 * i]];
      if (!hi || !lo) break;
      out[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
    }
    if (i == m) {
      *n = m;
      return out;
    }
    free(out);
  }
  {
    unsigned char *u = PQunescapeBytea((const unsigned char *)v, &m);
    if (!u) return NULL;
    out = malloc(m ? m : 1);
    if (out) memcpy(out, u, m);
    PQfreemem(u);
    *n = m;
    return out;
  }
}

pbt_status pbt_pg_step(pbt_sql_stmt *s, int *row, pbt_error *err) {
  *row = 0;
  if (s->row < 0) {
    ExecStatusType st;
    pbt_pg_prepared *pr;
    pbt_status ps;
    PQclear(s->res);
    s->res = NULL;
    ps = prepared_of(s->db, s->text, s->nparams, &pr, err);
    if (ps != PBT_OK) return ps;
    s->binary = pr ? pr->binary : 0;
    if (pr)
      s->res = PQexecPrepared(s->db->pg, pr->name, s->nparams, (const char *const *)s->values,
                              s->lengths, s->formats, s->binary);
    else
      s->res = PQexecParams(s->db->pg, s->text, s->nparams, NULL, (const char *const *)s->values,
                            s->lengths, s->formats, 0);
    st = PQresultStatus(s->res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      const char *primary = s->res ? PQresultErrorField(s->res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
      pbt_status fs = fail_pg(status_of(s->res), primary ? primary : PQerrorMessage(s->db->pg),
                              err);
      /* a connection failure (no server answer, SQLSTATE 08/53/57/58):
       * libpq may still call the connection OK, this one is not */
      if (fs == PBT_ERR_IO) s->db->lost = 1;
      PQclear(s->res);
      s->res = NULL;
      return fs;
    }
    {
      const char *t = PQcmdTuples(s->res);
      s->db->changes = st == PGRES_COMMAND_OK && t && *t ? strtoll(t, NULL, 10) : 0;
    }
    s->row = 0;
  } else {
    s->row++;
  }
  *row = s->res && s->row < PQntuples(s->res);
  return PBT_OK;
}

int pbt_pg_column_count(pbt_sql_stmt *s) { return s->res ? PQnfields(s->res) : 0; }

const char *pbt_pg_column_name(pbt_sql_stmt *s, int k) { return PQfname(s->res, k); }

pbt_sql_type pbt_pg_column_type(pbt_sql_stmt *s, int k) {
  if (PQgetisnull(s->res, s->row, k)) return PBT_SQL_NULL;
  switch (PQftype(s->res, k)) {
  case OID_INT8: case OID_INT4: case OID_INT2: case OID_BOOL: case OID_OID: return PBT_SQL_INT;
  case OID_FLOAT8: case OID_FLOAT4: return PBT_SQL_DOUBLE;
  case OID_BYTEA: return PBT_SQL_BLOB;
  default: return PBT_SQL_TEXT;
  }
}

/* A big-endian integer of n bytes (binary results). */
static uint64_t be_bytes(const char *v, int n) {
  uint64_t x = 0;
  int k;
  for (k = 0; k < n; k++) x = x << 8 | (unsigned char)v[k];
  return x;
}

int64_t pbt_pg_column_int(pbt_sql_stmt *s, int k) {
  const char *v = PQgetvalue(s->res, s->row, k);
  if (s->binary) {
    int n = PQgetlength(s->res, s->row, k);
    uint64_t x = be_bytes(v, n);
    if (n == 2) return (int16_t)x;
    if (n == 4) return PQftype(s->res, k) == OID_OID ? (int64_t)(uint32_t)x : (int64_t)(int32_t)x;
    return n == 8 ? (int64_t)x : (int64_t)(x != 0); /* int8, or bool (1 byte) */
  }
  if (PQftype(s->res, k) == OID_BOOL) return v[0] == 't';
  return strtoll(v, NULL, 10);
}

double pbt_pg_column_double(pbt_sql_stmt *s, int k) {
  const char *v = PQgetvalue(s->res, s->row, k);
  if (s->binary) {
    if (PQgetlength(s->res, s->row, k) == 4) {
      uint32_t b = (uint32_t)be_bytes(v, 4);
      float f;
      memcpy(&f, &b, sizeof f);
      return f;
    } else {
      uint64_t b = be_bytes(v, 8);
      double d;
      memcpy(&d, &b, sizeof d);
      return d;
    }
  }
  return strtod(v, NULL);
}

const void *pbt_pg_column_bytes(pbt_sql_stmt *s, int k, size_t *n) {
  const char *v = PQgetvalue(s->res, s->row, k);
  if (s->binary) { /* bytes as they are: bytea and text alike */
    *n = (size_t)PQgetlength(s->res, s->row, k);
    return v;
  }
  if (PQftype(s->res, k) == OID_BYTEA) {
    size_t len = (size_t)PQgetlength(s->res, s->row, k);
    free(s->unescaped);
    s->unescaped = unhex(v, len, n);
    if (!s->unescaped) *n = 0;
    return s->unescaped ? (const void *)s->unescaped : "";
  }
  *n = (size_t)PQgetlength(s->res, s->row, k);
  return v;
}
