/* pbt_data.c -- IDX and CSV files, gzip decompression, random permutations
 * (see pbt_data.h). */
#define _POSIX_C_SOURCE 200809L

#include "pbt_data.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <zlib.h>

/* ---- gzip -------------------------------------------------------------------- */

#define CHUNK ((size_t)1 << 18)

int pbt_is_gzip(const void *p, size_t n) {
  const unsigned char *s = p;
  return n >= 2 && s[0] == 0x1f && s[1] == 0x8b;
}

/* A streaming inflater: input arrives in pieces through inflater_feed. */
typedef struct inflater {
  z_stream zs;
  int open;     /* inflateInit2 succeeded */
  int ended;    /* the last member ended and no byte came after it */
  const char *name;
  size_t limit; /* the most bytes it may give (0: no limit) */
} inflater;

static pbt_status too_large(pbt_error *err, const char *name, size_t limit) {
  return pbt_fail(err, PBT_ERR_FORMAT, "%s: more than %zu bytes once decompressed (the limit given)",
                  name, limit);
}

static pbt_status gzip_fail(pbt_error *err, const char *name,
                            const char *why) {
  return pbt_fail(err, PBT_ERR_FORMAT, "%s: corrupt gzip stream (%s)", name,
                  why);
}

static pbt_status inflater_init(inflater *f, const char *name,
                                pbt_error *err) {
  memset(f, 0, sizeof *f);
  f->name = name;
  /* 15 + 16: a gzip header and trailer (checked: CRC and length) */
  if (inflateInit2(&f->zs, 15 + 16) != Z_OK)
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  f->open = 1;
  f->ended = 0;
  return PBT_OK;
}

static void inflater_end(inflater *f) {
  if (f->open) inflateEnd(&f->zs);
  f->open = 0;
}

/* Inflates the n bytes at p, appending the output to out.  A member that
 * ends is followed by another one when more bytes come. */
static pbt_status inflater_feed(inflater *f, const unsigned char *p, size_t n,
                                pbt_buf *out, pbt_error *err) {
  pbt_status st;
  while (n > 0) {
    uInt in = n > UINT_MAX ? UINT_MAX : (uInt)n, given;
    size_t room;
    int rc;
    if (f->ended) {
      /* the next member of a multi-member file */
      if (inflateReset(&f->zs) != Z_OK)
        return gzip_fail(err, f->name, "cannot reset the stream");
      f->ended = 0;
    }
    if (out->cap - out->len < CHUNK) {
      st = pbt_buf_reserve(out, CHUNK, err);
      if (st) return st;
    }
    room = out->cap - out->len;
    given = room > UINT_MAX ? UINT_MAX : (uInt)room;
    f->zs.next_in = (unsigned char *)(uintptr_t)p; /* zlib does not write it */
    f->zs.avail_in = in;
    f->zs.next_out = out->data + out->len;
    f->zs.avail_out = given;
    rc = inflate(&f->zs, Z_NO_FLUSH);
    out->len += given - f->zs.avail_out;
    if (f->limit && out->len > f->limit) return too_large(err, f->name, f->limit);
    p += in - f->zs.avail_in;
    n -= in - f->zs.avail_in;
    switch (rc) {
    case Z_OK:
      break;
    case Z_STREAM_END:
      f->ended = 1;
      break;
    case Z_BUF_ERROR: /* cannot happen with input and output room left */
      if (f->zs.avail_in == in && f->zs.avail_out == given)
        return gzip_fail(err, f->name, "no progress");
      break;
    case Z_MEM_ERROR:
      return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    default:
      return gzip_fail(err, f->name,
                       f->zs.msg ? f->zs.msg : "invalid data");
    }
  }
  return PBT_OK;
}

/* Called once the input is over. */
static pbt_status inflater_finish(inflater *f, pbt_buf *out, pbt_error *err) {
  /* drain the output zlib may still hold back */
  while (!f->ended) {
    size_t room;
    int rc;
    if (out->cap - out->len < CHUNK) {
      pbt_status st = pbt_buf_reserve(out, CHUNK, err);
      if (st) return st;
    }
    room = out->cap - out->len;
    if (room > UINT_MAX) room = UINT_MAX;
    f->zs.next_in = NULL;
    f->zs.avail_in = 0;
    f->zs.next_out = out->data + out->len;
    f->zs.avail_out = (uInt)room;
    rc = inflate(&f->zs, Z_FINISH);
    out->len += room - f->zs.avail_out;
    if (f->limit && out->len > f->limit) return too_large(err, f->name, f->limit);
    if (rc == Z_STREAM_END) {
      f->ended = 1;
    } else if (rc == Z_MEM_ERROR) {
      return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    } else if (rc == Z_BUF_ERROR && f->zs.avail_out > 0) {
      /* output room was left and still no progress: the input is cut */
      return gzip_fail(err, f->name, "unexpected end of data");
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return gzip_fail(err, f->name, f->zs.msg ? f->zs.msg : "invalid data");
    }
  }
  return PBT_OK;
}

pbt_status pbt_gunzip(const void *p, size_t n, pbt_buf *out, const char *name,
                      pbt_error *err) {
  inflater f;
  pbt_status st = inflater_init(&f, name, err);
  if (!st) st = inflater_feed(&f, p, n, out, err);
  if (!st) st = inflater_finish(&f, out, err);
  inflater_end(&f);
  return st;
}

pbt_status pbt_read_maybe_gzip(const char *path, pbt_buf *out,
                               pbt_error *err) {
  return pbt_read_maybe_gzip_limit(path, out, 0, err);
}

pbt_status pbt_read_maybe_gzip_limit(const char *path, pbt_buf *out, size_t limit,
                                     pbt_error *err) {
  unsigned char *chunk;
  inflater f;
  int gz = -1; /* unknown until the first bytes are read */
  pbt_status st = PBT_OK;
  FILE *fp;
  out->len = 0;
  fp = fopen(path, "rb");
  if (!fp) return pbt_io_fail(err, "open", path, errno);
  chunk = malloc(CHUNK);
  if (!chunk) {
    fclose(fp);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  memset(&f, 0, sizeof f);
  for (;;) {
    size_t got = fread(chunk, 1, CHUNK, fp);
    if (got == 0) {
      if (ferror(fp)) st = pbt_io_fail(err, "read", path, errno);
      break;
    }
    if (gz < 0) {
      gz = pbt_is_gzip(chunk, got);
      if (gz) st = inflater_init(&f, path, err);
      f.limit = limit;
      if (st) break;
    }
    st = gz ? inflater_feed(&f, chunk, got, out, err)
            : pbt_buf_append(out, chunk, got, err);
    if (!st && limit && out->len > limit) st = too_large(err, path, limit);
    if (st) break;
  }
  if (!st && gz == 1) st = inflater_finish(&f, out, err);
  inflater_end(&f);
  free(chunk);
  fclose(fp);
  return st;
}

/* ---- IDX ----------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

static uint64_t be64(const unsigned char *p) {
  return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static size_t idx_type_size(int type) {
  switch (type) {
  case 0x08: case 0x09: return 1;
  case 0x0B: return 2;
  case 0x0C: case 0x0D: return 4;
  case 0x0E: return 8;
  default: return 0;
  }
}

/* Element i of IDX type `type` at p, as a double. */
static double idx_value(const unsigned char *p, int type, size_t i) {
  switch (type) {
  case 0x08:
    return p[i];
  case 0x09:
    return (signed char)p[i];
  case 0x0B: {
    uint16_t u = (uint16_t)(p[2 * i] << 8 | p[2 * i + 1]);
    return u >= 0x8000u ? (double)u - 65536.0 : (double)u;
  }
  case 0x0C: {
    uint32_t u = be32(p + 4 * i);
    return u >= 0x80000000u ? (double)u - 4294967296.0 : (double)u;
  }
  case 0x0D: {
    uint32_t u = be32(p + 4 * i);
    float x;
    memcpy(&x, &u, 4);
    return x;
  }
  default: { /* 0x0E */
    uint64_t u = be64(p + 8 * i);
    double x;
    memcpy(&x, &u, 8);
    return x;
  }
  }
}

pbt_status pbt_idx_decode(pbt_tensor *dst, const void *data, size_t n,
                          pbt_dtype dtype, double scale, double shift,
                          const char *name, pbt_error *err) {
  const unsigned char *p = data;
  int64_t shape[PBT_MAX_DIM];
  uint64_t numel = 1, nbytes;
  size_t esz, head, i, count;
  int type, ndim, d, raw = scale == 1.0 && shift == 0.0;
  pbt_status st;
  if (n < 4)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "%s: truncated: expected 4 bytes of magic number at byte "
                    "0, got %zu",
                    name, n);
  type = p[2];
  ndim = p[3];
  esz = idx_type_size(type);
  if (p[0] != 0 || p[1] != 0 || esz == 0)
    return pbt_fail(err, PBT_ERR_FORMAT, "%s: bad magic 0x%08lx at byte 0",
                    name, (unsigned long)be32(p));
  if (ndim < 1 || ndim > PBT_MAX_DIM)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "%s: %d dimensions at byte 3 (1 to %d supported)", name,
                    ndim, PBT_MAX_DIM);
  head = 4 + 4 * (size_t)ndim;
  if (n < head)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "%s: truncated: expected %zu bytes of sizes after byte 4, "
                    "got %zu",
                    name, head - 4, n - 4);
  for (d = 0; d < ndim; d++) {
    uint32_t s = be32(p + 4 + 4 * d);
    shape[d] = (int64_t)s;
    if (s != 0 && numel > (UINT64_MAX / esz) / s)
      return pbt_fail(err, PBT_ERR_FORMAT,
                      "%s: sizes too large at byte %d", name, 4 + 4 * d);
    numel *= s;
  }
  nbytes = numel * esz;
  if ((uint64_t)(n - head) < nbytes)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "%s: truncated: expected %llu bytes of data after byte "
                    "%zu, got %zu",
                    name, (unsigned long long)nbytes, head, n - head);
  if ((uint64_t)(n - head) > nbytes)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "%s: %llu unexpected bytes after the data, at byte %llu",
                    name, (unsigned long long)((uint64_t)(n - head) - nbytes),
                    (unsigned long long)(head + nbytes));
  st = pbt_tensor_empty(dst, dtype, ndim, shape, err);
  if (st) return st;
  count = (size_t)numel;
  p += head;
  if (type == 0x08) {
    /* the common case (images): a table of the 256 results */
    double table[256];
    for (i = 0; i < 256; i++)
      table[i] = raw ? (double)i : (double)i * scale + shift;
    if (dtype == PBT_FLOAT32) {
      float *o = pbt_tensor_data(dst), ft[256];
      for (i = 0; i < 256; i++) ft[i] = (float)table[i];
      for (i = 0; i < count; i++) o[i] = ft[p[i]];
    } else {
      double *o = pbt_tensor_data(dst);
      for (i = 0; i < count; i++) o[i] = table[p[i]];
    }
  } else if (dtype == PBT_FLOAT32) {
    float *o = pbt_tensor_data(dst);
    for (i = 0; i < count; i++) {
      double v = idx_value(p, type, i);
      o[i] = (float)(raw ? v : v * scale + shift);
    }
  } else {
    double *o = pbt_tensor_data(dst);
    for (i = 0; i < count; i++) {
      double v = idx_value(p, type, i);
      o[i] = raw ? v : v * scale + shift;
    }
  }
  return PBT_OK;
}

pbt_status pbt_idx_load(pbt_tensor *dst, const char *path, pbt_dtype dtype,
                        double scale, double shift, pbt_error *err) {
  return pbt_idx_load_limit(dst, path, dtype, scale, shift, 0, err);
}

pbt_status pbt_idx_load_limit(pbt_tensor *dst, const char *path, pbt_dtype dtype, double scale,
                              double shift, size_t limit, pbt_error *err) {
  pbt_buf b;
  pbt_status st;
  pbt_buf_init(&b);
  st = pbt_read_maybe_gzip_limit(path, &b, limit, err);
  if (!st)
    st = pbt_idx_decode(dst, b.data, b.len, dtype, scale, shift, path, err);
  pbt_buf_free(&b);
  return st;
}

/* ---- CSV ------------------------------------------------------------------------- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Trims spaces (never the delimiter) off [*a, *b). */
static void trim(const char *p, size_t *a, size_t *b, char delim) {
  while (*a < *b && is_space(p[*a]) && p[*a] != delim) (*a)++;
  while (*b > *a && is_space(p[*b - 1]) && p[*b - 1] != delim) (*b)--;
}

/* Parses the number in [a, b) (trimmed); returns 0 when it is not one. */
static int parse_number(const char *p, size_t a, size_t b, double *v,
                        int *nomem) {
  char small[64], *s = small, *end;
  size_t len = b - a;
  int ok;
  *nomem = 0;
  if (len == 0) return 0;
  if (len >= sizeof small) {
    s = malloc(len + 1);
    if (!s) {
      *nomem = 1;
      return 0;
    }
  }
  memcpy(s, p + a, len);
  s[len] = '\0';
  /* strtod would skip leading spaces itself; the field is trimmed anyway */
  *v = strtod(s, &end);
  ok = end == s + len;
  if (s != small) free(s);
  return ok;
}

/* Whether the text in [a, b) spells an infinity ("inf", "Infinity"...). */
static int has_inf(const char *p, size_t a, size_t b) {
  size_t i;
  for (i = a; i + 3 <= b; i++)
    if ((p[i] | 0x20) == 'i' && (p[i + 1] | 0x20) == 'n' && (p[i + 2] | 0x20) == 'f') return 1;
  return 0;
}

static pbt_status not_a_number(pbt_error *err, const char *name, long line,
                               size_t field, const char *p, size_t a,
                               size_t b) {
  size_t len = b - a;
  int shown = len > 40 ? 40 : (int)len;
  return pbt_fail(err, PBT_ERR_FORMAT,
                  "%s: line %ld, field %zu: '%.*s%s' is not a number", name,
                  line, field, shown, p + a, len > 40 ? "..." : "");
}

static size_t count_fields(const char *p, size_t a, size_t b, char delim) {
  size_t k = 1;
  const char *q = p + a, *end = p + b;
  while ((q = memchr(q, delim, (size_t)(end - q))) != NULL) {
    k++;
    q++;
  }
  return k;
}

static pbt_status add_names(const char *p, size_t a, size_t b, char delim,
                            pbt_buf *names, pbt_error *err) {
  static const char nul = '\0';
  for (;;) {
    const char *q = memchr(p + a, delim, b - a);
    size_t fa = a, fb = q ? (size_t)(q - p) : b;
    pbt_status st;
    trim(p, &fa, &fb, delim);
    if (fb - fa >= 2 && p[fa] == '"' && p[fb - 1] == '"') fa++, fb--;
    st = pbt_buf_append(names, p + fa, fb - fa, err);
    if (!st) st = pbt_buf_append(names, &nul, 1, err);
    if (st) return st;
    if (!q) return PBT_OK;
    a = (size_t)(q - p) + 1;
  }
}

pbt_status pbt_csv_decode(pbt_tensor *dst, const char *p, size_t n,
                          const pbt_csv_opts *opts, pbt_buf *names_out,
                          const char *name, pbt_error *err) {
  const char delim = opts->delimiter;
  size_t pos = 0, ncols = 0, nrows = 0, i;
  long line = 0, blank = 0; /* the first blank line not yet followed */
  int have_cols = 0;
  pbt_buf vals; /* the values as doubles, row after row */
  pbt_status st = PBT_OK;
  pbt_buf_init(&vals);
  while (pos < n) {
    const char *nl = memchr(p + pos, '\n', n - pos);
    size_t ls = pos, le = nl ? (size_t)(nl - p) : n, a, b, k, f;
    int nomem;
    pos = nl ? le + 1 : n;
    line++;
    if (le > ls && p[le - 1] == '\r') le--;
    if (opts->header && line == 1) {
      ncols = count_fields(p, ls, le, delim);
      have_cols = 1;
      if (names_out) st = add_names(p, ls, le, delim, names_out, err);
      if (st) break;
      continue;
    }
    a = ls, b = le;
    trim(p, &a, &b, '\0');
    if (a == b) {
      if (!blank) blank = line;
      continue;
    }
    if (blank) {
      st = pbt_fail(err, PBT_ERR_FORMAT, "%s: line %ld is empty", name, blank);
      break;
    }
    k = count_fields(p, ls, le, delim);
    if (!have_cols) {
      ncols = k;
      have_cols = 1;
    } else if (k != ncols) {
      st = pbt_fail(err, PBT_ERR_FORMAT, "%s: line %ld has %zu fields, expected %zu",
                    name, line, k, ncols);
      break;
    }
    st = pbt_buf_reserve(&vals, k * sizeof(double), err);
    if (st) break;
    a = ls;
    for (f = 1; f <= k; f++) {
      const char *q = memchr(p + a, delim, le - a);
      size_t fa = a, fb = q ? (size_t)(q - p) : le;
      double v;
      a = fb + 1;
      trim(p, &fa, &fb, delim);
      if (!parse_number(p, fa, fb, &v, &nomem)) {
        st = nomem ? pbt_fail(err, PBT_ERR_NOMEM, "not enough memory")
                   : not_a_number(err, name, line, f, p, fa, fb);
        break;
      }
      /* a number too large for the dtype would become inf in silence (an
       * "inf" written as such stays inf) */
      if ((isinf(v) && !has_inf(p, fa, fb)) ||
          (opts->dtype == PBT_FLOAT32 && isfinite(v) && isinf((float)v))) {
        int shown = fb - fa > 40 ? 40 : (int)(fb - fa);
        st = pbt_fail(err, PBT_ERR_FORMAT, "%s: line %ld, field %zu: '%.*s%s' overflows %s", name,
                      line, f, shown, p + fa, fb - fa > 40 ? "..." : "",
                      opts->dtype == PBT_FLOAT32 && isfinite(v) ? "float32" : "float64");
        break;
      }
      memcpy(vals.data + vals.len, &v, sizeof v);
      vals.len += sizeof v;
    }
    if (st) break;
    nrows++;
  }
  if (!st) {
    int64_t shape[2];
    const double *v = (const double *)(void *)vals.data;
    size_t count = nrows * ncols;
    shape[0] = (int64_t)nrows;
    shape[1] = (int64_t)ncols;
    st = pbt_tensor_empty(dst, opts->dtype, 2, shape, err);
    if (!st && opts->dtype == PBT_FLOAT32) {
      float *o = pbt_tensor_data(dst);
      for (i = 0; i < count; i++) o[i] = (float)v[i];
    } else if (!st && count > 0) {
      memcpy(pbt_tensor_data(dst), v, count * sizeof *v);
    }
  }
  pbt_buf_free(&vals);
  return st;
}

pbt_status pbt_csv_load(pbt_tensor *dst, const char *path,
                        const pbt_csv_opts *opts, pbt_buf *names_out,
                        pbt_error *err) {
  pbt_buf b;
  pbt_status st;
  pbt_buf_init(&b);
  st = pbt_read_maybe_gzip_limit(path, &b, opts->limit, err);
  if (!st)
    st = pbt_csv_decode(dst, (const char *)b.data, b.len, opts, names_out,
                        path, err);
  pbt_buf_free(&b);
  return st;
}

/* ---- permutations ----------------------------------------------------------------- */

pbt_status pbt_randperm(pbt_tensor *dst, int64_t n, int64_t base,
                        pbt_dtype dtype, pbt_generator *g, pbt_error *err) {
  const int64_t exact = dtype == PBT_FLOAT32 ? (int64_t)1 << 24
                                             : (int64_t)1 << 53;
  int64_t i;
  pbt_status st;
  if (n < 0)
    return pbt_fail(err, PBT_ERR_ARG, "negative size %lld", (long long)n);
  if (base < -exact || base > exact || n > exact - base)
    return pbt_fail(err, PBT_ERR_ARG,
                    "%s cannot hold the integers %lld to %lld exactly",
                    pbt_dtype_name(dtype), (long long)base,
                    (long long)(base + n - 1));
  st = pbt_tensor_empty(dst, dtype, 1, &n, err);
  if (st) return st;
  if (dtype == PBT_FLOAT32) {
    float *o = pbt_tensor_data(dst), t;
    for (i = 0; i < n; i++) o[i] = (float)(base + i);
    for (i = n - 1; i > 0; i--) {
      int64_t j = pbt_generator_integer(g, 0, i);
      t = o[i], o[i] = o[j], o[j] = t;
    }
  } else {
    double *o = pbt_tensor_data(dst), t;
    for (i = 0; i < n; i++) o[i] = (double)(base + i);
    for (i = n - 1; i > 0; i--) {
      int64_t j = pbt_generator_integer(g, 0, i);
      t = o[i], o[i] = o[j], o[j] = t;
    }
  }
  return PBT_OK;
}
