/*
 * pbt_data.h -- data sets from files: IDX (the MNIST format), numeric CSV,
 * gzip decompression, random permutations.
 *
 * Errors follow pbt_tensor.h: a pbt_status and a message without a function
 * name.  PBT_ERR_IO is a failure of the world (a missing or unreadable file)
 * and reads "cannot open <path>: No such file or directory".  PBT_ERR_FORMAT
 * is a malformed file; its message starts with the path and names the byte
 * (IDX) or the line (CSV):
 *   "/d/x.idx: bad magic 0x00000123 at byte 0"
 *   "/d/x.csv: line 3 has 2 fields, expected 3"
 * Byte positions in a gzipped file count decompressed bytes.
 *
 * THE IDX FORMAT
 *   bytes 0-1  zero
 *   byte  2    element type: 0x08 unsigned byte, 0x09 signed byte, 0x0B
 *              16-bit int, 0x0C 32-bit int, 0x0D float, 0x0E double
 *   byte  3    number of dimensions n (1..PBT_MAX_DIM here)
 *   then n big-endian 32-bit sizes, then the elements in row-major order,
 *   big-endian, and nothing after them.
 */
#ifndef PBT_DATA_H
#define PBT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "pbt_io.h"
#include "pbt_random.h"
#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether the n bytes at p start with the gzip magic 1f 8b. */
int pbt_is_gzip(const void *p, size_t n);

/*
 * Inflates the gzip stream of n bytes at p (one member or several
 * concatenated, as gzip writes them) and appends the bytes to out.  `name`
 * (the path, say) starts the error message:
 *   "<name>: corrupt gzip stream (incorrect header check)"
 *   "<name>: corrupt gzip stream (unexpected end of data)"
 */
pbt_status pbt_gunzip(const void *p, size_t n, pbt_buf *out, const char *name,
                      pbt_error *err);

/*
 * Reads the whole file at path into out (initialised; its bytes are
 * replaced), decompressing it when it starts with the gzip magic.  The file
 * is read and inflated in chunks, so nothing is guessed about its size.
 */
pbt_status pbt_read_maybe_gzip(const char *path, pbt_buf *out, pbt_error *err);
/* The same, refusing (PBT_ERR_FORMAT, "<path>: more than <limit> bytes once
 * decompressed (the limit given)") a file that gives more than limit bytes,
 * checked as it inflates (0: no limit). */
pbt_status pbt_read_maybe_gzip_limit(const char *path, pbt_buf *out, size_t limit,
                                     pbt_error *err);

/*
 * Decodes the IDX file of n bytes at p into dst (released or
 * zero-initialised), a new contiguous tensor of dtype with the file's
 * shape, each element stored as value * scale + shift (computed in double,
 * then rounded to dtype; scale 1, shift 0 keep the raw values).  `name`
 * starts error messages.
 */
pbt_status pbt_idx_decode(pbt_tensor *dst, const void *p, size_t n,
                          pbt_dtype dtype, double scale, double shift,
                          const char *name, pbt_error *err);

/* pbt_read_maybe_gzip + pbt_idx_decode, named after path. */
pbt_status pbt_idx_load(pbt_tensor *dst, const char *path, pbt_dtype dtype,
                        double scale, double shift, pbt_error *err);
/* pbt_idx_load with pbt_read_maybe_gzip_limit's limit. */
pbt_status pbt_idx_load_limit(pbt_tensor *dst, const char *path, pbt_dtype dtype, double scale,
                              double shift, size_t limit, pbt_error *err);

/*
 * Numeric CSV.  Lines end with "\n" or "\r\n"; fields are separated by
 * `delimiter` and parsed with strtod (spaces around a number are allowed;
 * "nan" and "inf" are numbers).  Every line has as many fields as the first
 * one.  With `header`, the first line holds the column names: they are
 * appended to names_out (when not NULL) one after the other, each ended by
 * a NUL byte, with surrounding spaces and double quotes removed.  Blank
 * lines at the end are ignored; a blank line followed by data is an error.
 * dst becomes a [rows, cols] tensor of dtype ([0, 0] for an empty file,
 * [0, cols] for a header alone).
 * Errors: "<name>: line 3 has 2 fields, expected 3",
 *         "<name>: line 4, field 2: 'abc' is not a number",
 *         "<name>: line 5 is empty".
 */
typedef struct pbt_csv_opts {
  char delimiter;
  int header;
  pbt_dtype dtype;
  size_t limit; /* pbt_csv_load: the most bytes the file may give (0: no limit) */
} pbt_csv_opts;

pbt_status pbt_csv_decode(pbt_tensor *dst, const char *p, size_t n,
                          const pbt_csv_opts *opts, pbt_buf *names_out,
                          const char *name, pbt_error *err);

/* pbt_read_maybe_gzip + pbt_csv_decode, named after path. */
pbt_status pbt_csv_load(pbt_tensor *dst, const char *path,
                        const pbt_csv_opts *opts, pbt_buf *names_out,
                        pbt_error *err);

/*
 * dst (released) becomes a 1-d tensor of dtype holding a random permutation
 * of base .. base + n - 1, drawn with Fisher-Yates from the identity:
 *   for i = n-1 down to 1: j = pbt_generator_integer(g, 0, i); swap p[i], p[j]
 * (the same draws as the Lua loop `for i = n, 2, -1 do local j =
 * g:integer(1, i) ... end`).  n must be exact in dtype (at most 2^24 for
 * float32).
 */
pbt_status pbt_randperm(pbt_tensor *dst, int64_t n, int64_t base,
                        pbt_dtype dtype, pbt_generator *g, pbt_error *err);

#ifdef __cplusplus
}
#endif
#endif
