/* pbt_io.c -- the pbt file format (see pbt_io.h), raw tensor bytes and
 * atomic file writes. */
#define _POSIX_C_SOURCE 200809L

#include "pbt_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- byte order ------------------------------------------------------------ */

static int host_is_le(void) {
  const uint16_t one = 1;
  unsigned char c;
  memcpy(&c, &one, 1);
  return c == 1;
}

static void put_u64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u32(unsigned char *p, uint32_t v) {
  int i;
  for (i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  int i;
  for (i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Copies one element of `es` bytes between native and little-endian order
 * (the same operation both ways). */
static void swap_copy(unsigned char *dst, const unsigned char *src, size_t es,
                      int le) {
  size_t i;
  if (le) memcpy(dst, src, es);
  else
    for (i = 0; i < es; i++) dst[i] = src[es - 1 - i];
}

/* ---- buffer ------------------------------------------------------------------- */

void pbt_buf_init(pbt_buf *b) {
  b->data = NULL;
  b->len = b->cap = 0;
}

void pbt_buf_free(pbt_buf *b) {
  free(b->data);
  pbt_buf_init(b);
}

pbt_status pbt_buf_reserve(pbt_buf *b, size_t extra, pbt_error *err) {
  size_t need, cap;
  unsigned char *p;
  if (extra > SIZE_MAX - b->len)
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  need = b->len + extra;
  if (need <= b->cap) return PBT_OK;
  cap = b->cap < 64 ? 64 : b->cap;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = realloc(b->data, cap);
  if (!p) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  b->data = p;
  b->cap = cap;
  return PBT_OK;
}

pbt_status pbt_buf_append(pbt_buf *b, const void *p, size_t n,
                          pbt_error *err) {
  pbt_status st;
  if (n == 0) return PBT_OK;
  st = pbt_buf_reserve(b, n, err);
  if (st) return st;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return PBT_OK;
}

uint32_t pbt_crc32(uint32_t crc, const void *p, size_t n) {
  const unsigned char *s = p;
  uLong c = crc;
  while (n > 0) {
    uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, s, chunk);
    s += chunk;
    n -= chunk;
  }
  return (uint32_t)c;
}

/* ---- raw tensor bytes --------------------------------------------------------- */

/* numel with overflow checks; returns -1 on overflow. */
/* numel of a shape, or -1 when pbt_shape_numel refuses it (too many
 * elements for any tensor). */
static int64_t shape_numel(int ndim, const int64_t *shape) {
  int64_t n;
  if (pbt_shape_numel(ndim, shape, &n, NULL) != PBT_OK) return -1;
  return n;
}

size_t pbt_tensor_nbytes(const pbt_tensor *t) {
  return (size_t)pbt_tensor_numel(t) * pbt_dtype_size(t->dtype);
}

void pbt_tensor_tobytes(const pbt_tensor *t, void *out) {
  size_t es = pbt_dtype_size(t->dtype);
  int le = host_is_le();
  unsigned char *o = out;
  const unsigned char *base;
  const int64_t *strides[1];
  pbt_iter it;
  strides[0] = t->stride;
  if (!pbt_iter_init(&it, 1, t->ndim, t->shape, strides)) return;
  base = pbt_tensor_data(t);
  do {
    const unsigned char *x = base + it.offset[0] * (int64_t)es;
    int64_t j, step = it.step[0] * (int64_t)es;
    if (le && it.step[0] == 1) {
      memcpy(o, x, (size_t)it.n * es);
      o += (size_t)it.n * es;
    } else {
      for (j = 0; j < it.n; j++, o += es) swap_copy(o, x + j * step, es, le);
    }
  } while (pbt_iter_next(&it));
}

/* Fills the contiguous tensor t from little-endian bytes. */
static void fill_from_le(pbt_tensor *t, const unsigned char *src) {
  size_t es = pbt_dtype_size(t->dtype), n = pbt_tensor_nbytes(t), i;
  unsigned char *o = pbt_tensor_data(t);
  if (host_is_le()) {
    if (n) memcpy(o, src, n);
    return;
  }
  for (i = 0; i < n; i += es) swap_copy(o + i, src + i, es, 0);
}

pbt_status pbt_tensor_frombytes(pbt_tensor *dst, const void *data, size_t n,
                                pbt_dtype dtype, int ndim,
                                const int64_t *shape, pbt_error *err) {
  size_t es = pbt_dtype_size(dtype);
  int64_t numel;
  char sh[128];
  pbt_status st;
  pbt_tensor_release(dst);
  if (ndim < 0 || ndim > PBT_MAX_DIM)
    return pbt_fail(err, PBT_ERR_ARG, "%d dimensions (at most %d allowed)",
                    ndim, PBT_MAX_DIM);
  numel = shape_numel(ndim, shape);
  pbt_format_shape(sh, sizeof sh, ndim, shape);
  if (numel < 0 || (uint64_t)numel > SIZE_MAX / es)
    return pbt_fail(err, PBT_ERR_SHAPE,
                    "%zu bytes do not hold a %s tensor of shape %s (too many "
                    "bytes)",
                    n, pbt_dtype_name(dtype), sh);
  if ((size_t)numel * es != n)
    return pbt_fail(err, PBT_ERR_SHAPE,
                    "%zu bytes do not hold a %s tensor of shape %s (%zu bytes)",
                    n, pbt_dtype_name(dtype), sh, (size_t)numel * es);
  st = pbt_tensor_empty(dst, dtype, ndim, shape, err);
  if (st) return st;
  fill_from_le(dst, data);
  return PBT_OK;
}

/* ---- encoding ------------------------------------------------------------------ */

pbt_status pbt_enc_begin(pbt_buf *b, pbt_error *err) {
  unsigned char h[PBT_IO_HEADER_SIZE];
  memset(h, 0, sizeof h);
  memcpy(h, PBT_IO_MAGIC, 4);
  put_u32(h + 4, PBT_IO_VERSION);
  return pbt_buf_append(b, h, sizeof h, err);
}

void pbt_enc_finish(pbt_buf *b) {
  /* the buffer holds the header and the body from its start */
  size_t body = b->len - PBT_IO_HEADER_SIZE;
  put_u64(b->data + 8, (uint64_t)body);
  put_u32(b->data + 16,
          pbt_crc32(0, b->data + PBT_IO_HEADER_SIZE, body));
}

static pbt_status enc_tag_u64(pbt_buf *b, int tag, uint64_t v,
                              pbt_error *err) {
  unsigned char p[9];
  p[0] = (unsigned char)tag;
  put_u64(p + 1, v);
  return pbt_buf_append(b, p, sizeof p, err);
}

pbt_status pbt_enc_boolean(pbt_buf *b, int v, pbt_error *err) {
  unsigned char tag = v ? PBT_TAG_TRUE : PBT_TAG_FALSE;
  return pbt_buf_append(b, &tag, 1, err);
}

pbt_status pbt_enc_integer(pbt_buf *b, int64_t v, pbt_error *err) {
  return enc_tag_u64(b, PBT_TAG_INTEGER, (uint64_t)v, err);
}

pbt_status pbt_enc_float(pbt_buf *b, double v, pbt_error *err) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  return enc_tag_u64(b, PBT_TAG_FLOAT, bits, err);
}

pbt_status pbt_enc_string(pbt_buf *b, const void *s, size_t n,
                          pbt_error *err) {
  pbt_status st = pbt_buf_reserve(b, 9 + n, err);
  if (st) return st;
  st = enc_tag_u64(b, PBT_TAG_STRING, (uint64_t)n, err);
  if (st) return st;
  return pbt_buf_append(b, s, n, err);
}

pbt_status pbt_enc_table(pbt_buf *b, uint64_t npairs, pbt_error *err) {
  return enc_tag_u64(b, PBT_TAG_TABLE, npairs, err);
}

pbt_status pbt_enc_tensor(pbt_buf *b, const pbt_tensor *t, pbt_error *err) {
  unsigned char head[3 + 8 * PBT_MAX_DIM];
  size_t nb = pbt_tensor_nbytes(t), hn = 3 + 8 * (size_t)t->ndim;
  pbt_status st;
  int i;
  if (nb > SIZE_MAX - hn) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  st = pbt_buf_reserve(b, hn + nb, err);
  if (st) return st;
  head[0] = PBT_TAG_TENSOR;
  head[1] = t->dtype == PBT_FLOAT64 ? 1 : 0;
  head[2] = (unsigned char)t->ndim;
  for (i = 0; i < t->ndim; i++) put_u64(head + 3 + 8 * i, (uint64_t)t->shape[i]);
  memcpy(b->data + b->len, head, hn);
  pbt_tensor_tobytes(t, b->data + b->len + hn);
  b->len += hn + nb;
  return PBT_OK;
}

/* ---- decoding ------------------------------------------------------------------ */

static size_t remaining(const pbt_reader *r) { return r->len - r->pos; }

/* Fails unless n more bytes are there; `what` names the record. */
static pbt_status need(const pbt_reader *r, size_t at, size_t n,
                       const char *what, pbt_error *err) {
  if (n <= remaining(r)) return PBT_OK;
  return pbt_fail(err, PBT_ERR_FORMAT,
                  "%s at byte %zu runs past the end of the data", what, at);
}

pbt_status pbt_dec_begin(pbt_reader *r, const void *data, size_t len,
                         pbt_error *err) {
  const unsigned char *p = data;
  uint64_t body;
  uint32_t version;
  r->data = p;
  r->len = len;
  r->pos = 0;
  if (len > 0 && memcmp(p, PBT_IO_MAGIC, len < 4 ? len : 4) != 0)
    return pbt_fail(err, PBT_ERR_FORMAT, "not a pbt file (bad magic bytes)");
  if (len >= 8) {
    version = get_u32(p + 4);
    if (version != PBT_IO_VERSION)
      return pbt_fail(err, PBT_ERR_FORMAT,
                      "unsupported format version %lu (this build reads "
                      "version %u)",
                      (unsigned long)version, PBT_IO_VERSION);
  }
  if (len < PBT_IO_HEADER_SIZE)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "truncated at byte %zu (the header is %d bytes)", len,
                    PBT_IO_HEADER_SIZE);
  body = get_u64(p + 8);
  if (body > len - PBT_IO_HEADER_SIZE)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "truncated at byte %zu (expected %llu bytes)", len,
                    (unsigned long long)body + PBT_IO_HEADER_SIZE);
  if (body < len - PBT_IO_HEADER_SIZE)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "%zu unexpected bytes after the end of the data at byte "
                    "%llu",
                    len - PBT_IO_HEADER_SIZE - (size_t)body,
                    (unsigned long long)body + PBT_IO_HEADER_SIZE);
  if (pbt_crc32(0, p + PBT_IO_HEADER_SIZE, (size_t)body) != get_u32(p + 16))
    return pbt_fail(err, PBT_ERR_FORMAT, "checksum mismatch (file is corrupted)");
  r->pos = PBT_IO_HEADER_SIZE;
  return PBT_OK;
}

pbt_status pbt_dec_tag(pbt_reader *r, int key, int *tag, pbt_error *err) {
  size_t at = r->pos;
  int t;
  pbt_status st = need(r, at, 1, key ? "table key" : "value", err);
  if (st) return st;
  t = r->data[r->pos++];
  if (t < PBT_TAG_FALSE || t > PBT_TAG_TENSOR)
    return pbt_fail(err, PBT_ERR_FORMAT, "unknown record tag 0x%02x at byte %zu",
                    t, at);
  if (key && t != PBT_TAG_INTEGER && t != PBT_TAG_FLOAT && t != PBT_TAG_STRING)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "bad table key at byte %zu (record tag 0x%02x; a key is "
                    "an integer, a float or a string)",
                    at, t);
  *tag = t;
  return PBT_OK;
}

static pbt_status dec_u64(pbt_reader *r, const char *what, uint64_t *v,
                          pbt_error *err) {
  pbt_status st = need(r, r->pos - 1, 8, what, err);
  if (st) return st;
  *v = get_u64(r->data + r->pos);
  r->pos += 8;
  return PBT_OK;
}

pbt_status pbt_dec_integer(pbt_reader *r, int64_t *v, pbt_error *err) {
  uint64_t u;
  pbt_status st = dec_u64(r, "integer", &u, err);
  if (st) return st;
  memcpy(v, &u, sizeof *v); /* two's complement on every C11 target we build */
  return PBT_OK;
}

pbt_status pbt_dec_float(pbt_reader *r, int key, double *v, pbt_error *err) {
  uint64_t u;
  pbt_status st = dec_u64(r, "float", &u, err);
  if (st) return st;
  memcpy(v, &u, sizeof *v);
  if (key && *v != *v)
    return pbt_fail(err, PBT_ERR_FORMAT, "bad table key at byte %zu (NaN)",
                    r->pos - 9);
  return PBT_OK;
}

pbt_status pbt_dec_string(pbt_reader *r, const char **s, size_t *n,
                          pbt_error *err) {
  size_t at = r->pos - 1;
  uint64_t len;
  pbt_status st = dec_u64(r, "string", &len, err);
  if (st) return st;
  if (len > remaining(r))
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "string of %llu bytes at byte %zu runs past the end of "
                    "the data",
                    (unsigned long long)len, at);
  *s = (const char *)r->data + r->pos;
  *n = (size_t)len;
  r->pos += (size_t)len;
  return PBT_OK;
}

pbt_status pbt_dec_table(pbt_reader *r, int depth, uint64_t *npairs,
                         pbt_error *err) {
  size_t at = r->pos - 1;
  pbt_status st;
  if (depth > PBT_IO_MAX_DEPTH)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "tables nested deeper than %d levels at byte %zu",
                    PBT_IO_MAX_DEPTH, at);
  st = dec_u64(r, "table", npairs, err);
  if (st) return st;
  /* a pair takes at least 10 bytes: a 9-byte key and a 1-byte value */
  if (*npairs > remaining(r) / 10)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "table of %llu pairs at byte %zu runs past the end of the "
                    "data",
                    (unsigned long long)*npairs, at);
  return PBT_OK;
}

pbt_status pbt_dec_tensor(pbt_reader *r, pbt_tensor *dst, pbt_error *err) {
  size_t at = r->pos - 1, es, nb;
  int64_t shape[PBT_MAX_DIM], numel;
  int dtype, ndim, i;
  char sh[128];
  pbt_status st = need(r, at, 2, "tensor", err);
  if (st) return st;
  dtype = r->data[r->pos];
  ndim = r->data[r->pos + 1];
  if (dtype > 1)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "tensor at byte %zu has an unknown dtype %d", at, dtype);
  if (ndim > PBT_MAX_DIM)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "tensor at byte %zu has %d dimensions (at most %d allowed)",
                    at, ndim, PBT_MAX_DIM);
  r->pos += 2;
  st = need(r, at, 8 * (size_t)ndim, "tensor", err);
  if (st) return st;
  for (i = 0; i < ndim; i++) {
    uint64_t s = get_u64(r->data + r->pos + 8 * (size_t)i);
    if (s > (uint64_t)INT64_MAX)
      return pbt_fail(err, PBT_ERR_FORMAT,
                      "tensor at byte %zu has a size %llu out of range", at,
                      (unsigned long long)s);
    shape[i] = (int64_t)s;
  }
  r->pos += 8 * (size_t)ndim;
  es = dtype == 1 ? sizeof(double) : sizeof(float);
  numel = shape_numel(ndim, shape);
  pbt_format_shape(sh, sizeof sh, ndim, shape);
  if (numel < 0 || (uint64_t)numel > remaining(r) / es)
    return pbt_fail(err, PBT_ERR_FORMAT,
                    "tensor of shape %s at byte %zu runs past the end of the "
                    "data",
                    sh, at);
  nb = (size_t)numel * es;
  st = pbt_tensor_empty(dst, dtype == 1 ? PBT_FLOAT64 : PBT_FLOAT32, ndim, shape,
                        err);
  if (st) return st;
  fill_from_le(dst, r->data + r->pos);
  r->pos += nb;
  return PBT_OK;
}

pbt_status pbt_dec_end(const pbt_reader *r, pbt_error *err) {
  if (r->pos == r->len) return PBT_OK;
  return pbt_fail(err, PBT_ERR_FORMAT,
                  "%zu unexpected bytes after the value at byte %zu",
                  remaining(r), r->pos);
}

/* ---- files ------------------------------------------------------------------------ */

pbt_status pbt_io_fail(pbt_error *err, const char *what, const char *path, int e) {
  char reason[128];
  /* the POSIX strerror_r (thread-safe, unlike strerror) */
  if (strerror_r(e, reason, sizeof reason) != 0)
    snprintf(reason, sizeof reason, "error %d", e);
  return pbt_fail(err, PBT_ERR_IO, "cannot %s %s: %s", what, path, reason);
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fsync of the directory holding path; best effort. */
static void sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir;
  size_t n;
  int fd;
  if (!slash) {
    dir = malloc(2);
    if (!dir) return;
    strcpy(dir, ".");
  } else {
    n = slash == path ? 1 : (size_t)(slash - path);
    dir = malloc(n + 1);
    if (!dir) return;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

/* Is name "<something>.tmp.<digits>.<digits>"? */
static int is_temporary(const char *name) {
  const char *t = strstr(name, ".tmp."), *last = NULL;
  size_t digits;
  for (; t; t = strstr(t + 1, ".tmp.")) last = t;
  if (!last || last == name) return 0;
  last += 5;
  digits = strspn(last, "0123456789");
  if (digits == 0 || last[digits] != '.') return 0;
  last += digits + 1;
  digits = strspn(last, "0123456789");
  return digits > 0 && last[digits] == '\0';
}

pbt_status pbt_remove_temporaries(const char *dir, int *removed, pbt_error *err) {
  DIR *d = opendir(dir);
  struct dirent *e;
  *removed = 0;
  if (!d) return pbt_io_fail(err, "open directory", dir, errno);
  while ((e = readdir(d)) != NULL) {
    size_t n;
    char *path;
    if (!is_temporary(e->d_name)) continue;
    n = strlen(dir) + strlen(e->d_name) + 2;
    path = malloc(n);
    if (!path) {
      closedir(d);
      return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
    }
    snprintf(path, n, "%s/%s", dir, e->d_name);
    if (unlink(path) == 0) (*removed)++;
    free(path);
  }
  closedir(d);
  return PBT_OK;
}

pbt_status pbt_mkdir_p(const char *path, pbt_error *err) {
  size_t n = strlen(path), i;
  struct stat st;
  char *p = (char *)malloc(n + 1);
  if (!p) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  memcpy(p, path, n + 1);
  for (i = 1; i <= n; i++) {
    if (p[i] == '/' || p[i] == '\0') {
      char c = p[i];
      p[i] = '\0';
      if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        pbt_status st2 = pbt_fail(err, PBT_ERR_IO, "cannot create directory %s: %s", p, strerror(errno));
        free(p);
        return st2;
      }
      p[i] = c;
    }
  }
  free(p);
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return pbt_fail(err, PBT_ERR_IO, "%s is not a directory", path);
  return PBT_OK;
}

pbt_status pbt_write_file_atomic(const char *path, const void *data, size_t n,
                                 pbt_error *err) {
  size_t plen = strlen(path), tlen = plen + 48;
  char *tmp;
  int fd = -1, k, e;
  if (plen == 0)
    return pbt_fail(err, PBT_ERR_IO, "cannot write an empty path");
  tmp = malloc(tlen);
  if (!tmp) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  for (k = 0; k < 1000; k++) {
    snprintf(tmp, tlen, "%s.tmp.%ld.%d", path, (long)getpid(), k);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) break;
  }
  if (fd < 0) {
    e = errno;
    free(tmp);
    return pbt_io_fail(err, "write", path, e);
  }
  if (write_all(fd, data, n) != 0 || fsync(fd) != 0) {
    e = errno;
    close(fd);
    goto fail;
  }
  if (close(fd) != 0) {
    e = errno;
    goto fail;
  }
  if (rename(tmp, path) != 0) {
    e = errno;
    goto fail;
  }
  free(tmp);
  sync_dir(path);
  return PBT_OK;
fail:
  unlink(tmp);
  free(tmp);
  return pbt_io_fail(err, "write", path, e);
}

pbt_status pbt_read_file(const char *path, pbt_buf *out, pbt_error *err) {
  struct stat sb;
  int fd, e;
  pbt_status st;
  out->len = 0;
  /* O_NONBLOCK: opening a FIFO must not wait for a writer */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return pbt_io_fail(err, "open", path, errno);
  if (fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {
    close(fd); /* a device or a pipe: no end to read up to */
    return pbt_fail(err, PBT_ERR_IO, "cannot read %s: not a regular file", path);
  }
  if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
      (uint64_t)sb.st_size < SIZE_MAX - 1) {
    st = pbt_buf_reserve(out, (size_t)sb.st_size + 1, err);
    if (st) {
      close(fd);
      return st;
    }
  }
  for (;;) {
    ssize_t got;
    if (out->len == out->cap) {
      st = pbt_buf_reserve(out, 65536, err);
      if (st) {
        close(fd);
        return st;
      }
    }
    got = read(fd, out->data + out->len, out->cap - out->len);
    if (got < 0) {
      if (errno == EINTR) continue;
      e = errno;
      close(fd);
      return pbt_io_fail(err, "read", path, e);
    }
    if (got == 0) break;
    out->len += (size_t)got;
  }
  close(fd);
  return PBT_OK;
}

pbt_status pbt_save_tensor(const char *path, const pbt_tensor *t,
                           pbt_error *err) {
  pbt_buf b;
  pbt_status st;
  pbt_buf_init(&b);
  st = pbt_enc_begin(&b, err);
  if (!st) st = pbt_enc_tensor(&b, t, err);
  if (!st) {
    pbt_enc_finish(&b);
    st = pbt_write_file_atomic(path, b.data, b.len, err);
  }
  pbt_buf_free(&b);
  return st;
}

pbt_status pbt_load_tensor(const char *path, pbt_tensor *dst, pbt_error *err) {
  pbt_buf b;
  pbt_reader r;
  pbt_status st;
  int tag = 0;
  pbt_buf_init(&b);
  st = pbt_read_file(path, &b, err);
  if (!st) st = pbt_dec_begin(&r, b.data, b.len, err);
  if (!st) st = pbt_dec_tag(&r, 0, &tag, err);
  if (!st && tag != PBT_TAG_TENSOR)
    st = pbt_fail(err, PBT_ERR_FORMAT, "the file does not hold a tensor");
  if (!st) st = pbt_dec_tensor(&r, dst, err);
  if (!st) st = pbt_dec_end(&r, err);
  if (st) pbt_tensor_release(dst);
  pbt_buf_free(&b);
  return st;
}
