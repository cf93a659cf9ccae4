/*
 * pbt_io.h -- the pbt file format, raw tensor bytes and atomic file writes.
 *
 * THE FILE FORMAT (version 1)
 *
 * A pbt file holds exactly one value: a tensor, a number, a string, a boolean
 * or a table of such values (tables nest).  Every integer and float in the
 * file is little-endian, whatever the machine, so a file is the same bytes
 * everywhere.  "u8/u32/u64" are unsigned integers of 1/4/8 bytes, "i64" a
 * two's-complement signed integer, "f32/f64" IEEE 754 binary32/binary64.
 *
 *   Header, 20 bytes:
 *     offset  size  field
 *          0     4  magic: the bytes 'P' 'B' 'T' 0x00
 *          4     4  u32 format version, 1
 *          8     8  u64 length of the body in bytes (the file is 20 + length)
 *         16     4  u32 CRC-32 of the body (zlib's crc32(), the IEEE 802.3
 *                   polynomial, as in gzip and PNG)
 *   Body: one value record.
 *
 *   A value record is a u8 tag and a payload:
 *     tag   value     payload
 *     0x01  false     (none)
 *     0x02  true      (none)
 *     0x03  integer   i64
 *     0x04  float     f64 (the bits as they are: NaN, infinities and -0.0
 *                     survive)
 *     0x05  string    u64 length n, then n bytes (any bytes, "\0" included)
 *     0x06  table     u64 count n of pairs, then n times: a key record, a
 *                     value record.  A key is an integer, float or string
 *                     record (never NaN).  Pairs are written integer keys
 *                     first (ascending), then float keys (ascending), then
 *                     string keys (bytewise, a prefix before the longer
 *                     string), so the same value always gives the same bytes.
 *     0x07  tensor    u8 dtype (0 = float32, 1 = float64), u8 ndim (0..8),
 *                     ndim times a u64 size, then the numel elements in
 *                     row-major order, each an f32 or f64 (numel is the
 *                     product of the sizes, 1 for ndim 0).
 *
 * A reader checks, in this order, the magic, the version, the length (a file
 * shorter than 20 + length is truncated; a longer one has trailing bytes), the
 * CRC, and then every record: known tags, ndim <= 8, sizes and counts that fit
 * in the bytes that remain (checked before anything is allocated), tables
 * nested at most PBT_IO_MAX_DEPTH deep, and no bytes after the value.
 *
 * THE C API
 *
 * Errors follow pbt_tensor.h: a pbt_status and a message without a function
 * name.  PBT_ERR_IO is a failure of the world (missing file, permission,
 * full disk) and its message names the path; PBT_ERR_FORMAT is a corrupt or
 * truncated file or buffer, and its message does not name the path (the
 * caller adds it).
 *
 * Saving one tensor from C:
 *   pbt_save_tensor("w.pbt", &t, &err);   pbt_load_tensor("w.pbt", &t, &err);
 * Writing any structure: pbt_buf_init, pbt_enc_begin, pbt_enc_* records,
 * pbt_enc_finish, pbt_write_file_atomic, pbt_buf_free.  Reading:
 * pbt_read_file, pbt_dec_begin, pbt_dec_tag and pbt_dec_* per tag,
 * pbt_dec_end.
 */
#ifndef PBT_IO_H
#define PBT_IO_H

#include <stddef.h>
#include <stdint.h>

#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PBT_IO_MAGIC "PBT\0"
#define PBT_IO_VERSION 1u
#define PBT_IO_HEADER_SIZE 20
/* Tables nest at most this deep (the outermost table is level 1). */
#define PBT_IO_MAX_DEPTH 100

enum {
  PBT_TAG_FALSE = 1,
  PBT_TAG_TRUE = 2,
  PBT_TAG_INTEGER = 3,
  PBT_TAG_FLOAT = 4,
  PBT_TAG_STRING = 5,
  PBT_TAG_TABLE = 6,
  PBT_TAG_TENSOR = 7
};

/* ---- growable byte buffer ------------------------------------------------ */
typedef struct pbt_buf {
  unsigned char *data; /* NULL while empty */
  size_t len, cap;
} pbt_buf;

void pbt_buf_init(pbt_buf *b);
/* Frees the bytes; safe to call twice. */
void pbt_buf_free(pbt_buf *b);
/* Makes room for `extra` more bytes. */
pbt_status pbt_buf_reserve(pbt_buf *b, size_t extra, pbt_error *err);
pbt_status pbt_buf_append(pbt_buf *b, const void *p, size_t n, pbt_error *err);

/* Records "cannot <what> <path>: <strerror(e)>" as a PBT_ERR_IO in err. */
pbt_status pbt_io_fail(pbt_error *err, const char *what, const char *path, int e);

/* CRC-32 (zlib's) of n bytes, continuing from crc (start with 0). */
uint32_t pbt_crc32(uint32_t crc, const void *p, size_t n);

/* ---- raw tensor bytes ------------------------------------------------------ */
/* numel * element size. */
size_t pbt_tensor_nbytes(const pbt_tensor *t);
/* Writes the elements of t (any strides) to out in row-major order,
 * little-endian; out holds pbt_tensor_nbytes(t) bytes. */
void pbt_tensor_tobytes(const pbt_tensor *t, void *out);
/* A new contiguous tensor from n little-endian bytes; fails (PBT_ERR_SHAPE)
 * unless n is exactly the size of such a tensor. */
pbt_status pbt_tensor_frombytes(pbt_tensor *dst, const void *data, size_t n,
                                pbt_dtype dtype, int ndim,
                                const int64_t *shape, pbt_error *err);

/* ---- encoding ---------------------------------------------------------------- */
/* Appends a header whose length and CRC pbt_enc_finish fills in. */
pbt_status pbt_enc_begin(pbt_buf *b, pbt_error *err);
pbt_status pbt_enc_boolean(pbt_buf *b, int v, pbt_error *err);
pbt_status pbt_enc_integer(pbt_buf *b, int64_t v, pbt_error *err);
pbt_status pbt_enc_float(pbt_buf *b, double v, pbt_error *err);
pbt_status pbt_enc_string(pbt_buf *b, const void *s, size_t n, pbt_error *err);
/* A table of npairs pairs: the caller then encodes npairs key/value pairs. */
pbt_status pbt_enc_table(pbt_buf *b, uint64_t npairs, pbt_error *err);
/* Any tensor; a non-contiguous one is written in logical row-major order. */
pbt_status pbt_enc_tensor(pbt_buf *b, const pbt_tensor *t, pbt_error *err);
/* Fills in the header of the buffer begun with pbt_enc_begin. */
void pbt_enc_finish(pbt_buf *b);

/* ---- decoding ------------------------------------------------------------------ */
typedef struct pbt_reader {
  const unsigned char *data;
  size_t len; /* the whole file */
  size_t pos; /* next byte to read, counted from the start of the file */
} pbt_reader;

/* Checks the header (magic, version, length, CRC) of the len bytes at data
 * and positions r on the body.  The bytes must outlive r. */
pbt_status pbt_dec_begin(pbt_reader *r, const void *data, size_t len,
                         pbt_error *err);
/* Reads a tag; with `key` set, only integer, float and string are accepted. */
pbt_status pbt_dec_tag(pbt_reader *r, int key, int *tag, pbt_error *err);
pbt_status pbt_dec_integer(pbt_reader *r, int64_t *v, pbt_error *err);
/* With `key` set, a NaN is an error. */
pbt_status pbt_dec_float(pbt_reader *r, int key, double *v, pbt_error *err);
/* *s points into the reader's bytes. */
pbt_status pbt_dec_string(pbt_reader *r, const char **s, size_t *n,
                          pbt_error *err);
/* The pair count of a table at nesting level `depth` (1 for the outermost);
 * fails beyond PBT_IO_MAX_DEPTH or when the pairs cannot fit. */
pbt_status pbt_dec_table(pbt_reader *r, int depth, uint64_t *npairs,
                         pbt_error *err);
/* dst must be released or zero-initialised; it becomes a new contiguous
 * tensor. */
pbt_status pbt_dec_tensor(pbt_reader *r, pbt_tensor *dst, pbt_error *err);
/* Fails when bytes remain after the value. */
pbt_status pbt_dec_end(const pbt_reader *r, pbt_error *err);

/* ---- files ----------------------------------------------------------------------- */
/*
 * Writes n bytes to path atomically: to a new temporary file
 * "<path>.tmp.<pid>.<k>" in the same directory (created with O_EXCL), which
 * is fsynced, closed and renamed over path; then the directory is fsynced
 * (best effort: some file systems refuse).  On failure the temporary file is
 * removed, path is untouched and PBT_ERR_IO is returned.  A replaced file
 * does not keep its permissions (the new one is created with 0666 & ~umask).
 */
/* Creates directory path and its parents (mode 0777 less the umask); OK
 * when it is a directory afterwards.  Fails with PBT_ERR_IO ("cannot create
 * directory a/b: Permission denied", "a/b is not a directory"). */
pbt_status pbt_mkdir_p(const char *path, pbt_error *err);
pbt_status pbt_write_file_atomic(const char *path, const void *data, size_t n,
                                 pbt_error *err);
/* Removes the temporary files "<name>.tmp.<pid>.<k>" that an interrupted
 * pbt_write_file_atomic left in directory dir (a run killed during a write).
 * *removed receives how many; a missing directory is PBT_ERR_IO. */
pbt_status pbt_remove_temporaries(const char *dir, int *removed, pbt_error *err);
/* Reads a whole file into out (which must be initialised; its bytes are
 * replaced).  A missing or unreadable file is PBT_ERR_IO:
 * "cannot open <path>: No such file or directory". */
pbt_status pbt_read_file(const char *path, pbt_buf *out, pbt_error *err);

/* A file holding one tensor (value record tag 0x07). */
pbt_status pbt_save_tensor(const char *path, const pbt_tensor *t,
                           pbt_error *err);
/* dst must be released or zero-initialised. */
pbt_status pbt_load_tensor(const char *path, pbt_tensor *dst, pbt_error *err);

#ifdef __cplusplus
}
#endif
#endif
