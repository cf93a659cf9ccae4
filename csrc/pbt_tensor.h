/*
 * pbt_tensor.h -- the tensor core of pbt.
 *
 * A tensor is a reference-counted storage plus dtype, shape, strides and an
 * offset; views share the storage.  Dimensions and indices are 0-based here
 * (the Lua binding converts from 1-based).  Strides and offsets count
 * elements, not bytes.  The core keeps no mutable global state; storage
 * reference counts are atomic, so tensors may be shared between threads.
 *
 * Conventions:
 *   - functions that can fail return a pbt_status and, when `err` is not
 *     NULL, write a human-readable message into it (no function name: the
 *     caller adds its own);
 *   - an output tensor `dst` passed to a constructor or view function must be
 *     released or zero-initialised (pbt_tensor_init) and must not be one of
 *     the inputs; on failure it is left released;
 *   - pbt_tensor_release is safe to call on a released tensor.
 */
#ifndef PBT_TENSOR_H
#define PBT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PBT_MAX_DIM 8

typedef enum pbt_dtype { PBT_FLOAT32 = 0, PBT_FLOAT64 = 1 } pbt_dtype;

typedef enum pbt_status {
  PBT_OK = 0,
  PBT_ERR_ARG,     /* a bad argument (value out of range, wrong kind) */
  PBT_ERR_SHAPE,   /* shapes that do not fit together */
  PBT_ERR_DTYPE,   /* dtypes that do not fit together */
  PBT_ERR_NOMEM,   /* not enough memory */
  PBT_ERR_IO,      /* the world failed: missing file, full disk */
  PBT_ERR_FORMAT   /* a file or buffer that is truncated or corrupt */
} pbt_status;

typedef struct pbt_error {
  pbt_status status;
  char msg[256];
} pbt_error;

/* Record a failure in `err` (when not NULL) and return `status`. */
pbt_status pbt_fail(pbt_error *err, pbt_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Writes "[3,4]" into buf (always NUL-terminated). */
void pbt_format_shape(char *buf, size_t size, int ndim, const int64_t *shape);

size_t pbt_dtype_size(pbt_dtype dtype);
const char *pbt_dtype_name(pbt_dtype dtype);
/* Returns 0 and sets *dtype when name is "float32" or "float64", else -1. */
int pbt_dtype_from_name(const char *name, pbt_dtype *dtype);

typedef struct pbt_storage pbt_storage;

typedef struct pbt_tensor {
  pbt_storage *storage; /* NULL when released */
  int64_t offset;       /* in elements */
  int ndim;
  pbt_dtype dtype;
  int64_t shape[PBT_MAX_DIM];
  int64_t stride[PBT_MAX_DIM]; /* in elements, may be 0 (expanded) */
  /* Where pbt_tensor_empty on this tensor takes its storage from: NULL for
   * plain malloc, else a borrowed pointer to an allocator that the owner of
   * the tensor keeps alive (see pbt_allocator below).  It belongs to the
   * slot, not to the storage: pbt_tensor_init clears it, pbt_tensor_release
   * and pbt_tensor_share keep it, so a released out tensor still carries
   * it into the op that fills it. */
  struct pbt_allocator *alloc;
} pbt_tensor;

/* ---- storage ----------------------------------------------------------- */
void *pbt_storage_data(const pbt_storage *s);
size_t pbt_storage_nbytes(const pbt_storage *s);
long pbt_storage_refcount(const pbt_storage *s);

/* ---- life cycle -------------------------------------------------------- */
void pbt_tensor_init(pbt_tensor *t);
void pbt_tensor_release(pbt_tensor *t);
/* dst becomes a second reference to src's storage with src's geometry. */
void pbt_tensor_share(pbt_tensor *dst, const pbt_tensor *src);
/* Uninitialised contiguous tensor.  Sizes must be >= 0.  The storage comes
 * from dst->alloc (see pbt_allocator) or malloc. */
pbt_status pbt_tensor_empty(pbt_tensor *dst, pbt_dtype dtype, int ndim,
                            const int64_t *shape, pbt_error *err);
pbt_status pbt_tensor_empty_like(pbt_tensor *dst, const pbt_tensor *src,
                                 pbt_error *err);

/* ---- allocators -------------------------------------------------------- */
/*
 * A cache of freed storage blocks, so that a loop making results of the same
 * sizes reuses warm memory instead of asking the kernel for fresh pages (a
 * page fault costs ~2 us and the kernel zeroes every fresh page).
 *
 * Storages of at least PBT_ALLOC_MIN_BYTES made through an allocator are
 * rounded up to a size class (8 per power of two, so at most 12.5% more) and
 * hold a reference to their allocator; when the last tensor lets go of one,
 * its block goes back to the allocator's cache, whichever thread that
 * happens on (the cache is behind a mutex).  The cache keeps at most
 * `max_cached_bytes`, dropping the least recently freed blocks first.
 * Smaller storages are plain malloc'd.  Reused blocks are not cleared
 * (built with -DPBT_ALLOC_POISON, every new or reused block is filled with
 * NaNs, which shows code that reads elements it never wrote).
 *
 * The allocator is reference-counted: pbt_allocator_new returns one
 * reference, every live storage from it holds one, and the cache is freed
 * with the last reference.  An owner that goes away while storages live on
 * should call pbt_allocator_set_limit(a, 0) before its release, so that the
 * blocks of those storages go back to the system.
 */
#define PBT_ALLOC_MIN_BYTES ((size_t)16 << 10)

typedef struct pbt_allocator pbt_allocator;

typedef struct pbt_allocator_stats {
  size_t cached_bytes;  /* capacity of the blocks in the cache */
  size_t cached_blocks;
  size_t limit;         /* max_cached_bytes */
  size_t live_bytes;    /* capacity of the live storages made through it */
  uint64_t hits;        /* allocations served from the cache */
  uint64_t misses;      /* allocations of cacheable size that were not */
} pbt_allocator_stats;

pbt_status pbt_allocator_new(pbt_allocator **a, size_t max_cached_bytes,
                             pbt_error *err);
void pbt_allocator_retain(pbt_allocator *a);
/* Safe with NULL. */
void pbt_allocator_release(pbt_allocator *a);
/* Sets the bound of the cache (freeing the oldest blocks to meet it) and
 * returns the previous one. */
size_t pbt_allocator_set_limit(pbt_allocator *a, size_t max_cached_bytes);
void pbt_allocator_get_stats(pbt_allocator *a, pbt_allocator_stats *stats);
/* Like pbt_tensor_empty, with the storage taken from `a` (NULL: malloc)
 * whatever dst->alloc says; dst->alloc is left as it was. */
pbt_status pbt_tensor_empty_in(pbt_tensor *dst, pbt_allocator *a,
                               pbt_dtype dtype, int ndim, const int64_t *shape,
                               pbt_error *err);
/* The allocator a storage came from (NULL when malloc'd). */
pbt_allocator *pbt_storage_allocator(const pbt_storage *s);

/* ---- metadata ---------------------------------------------------------- */
/* Number of elements of a shape, checking sizes >= 0, ndim <= PBT_MAX_DIM
 * and that the product of the non-zero sizes stays below a bound that keeps
 * every byte count and stride in range (PBT_ERR_SHAPE "shape [...] has too
 * many elements" otherwise). */
pbt_status pbt_shape_numel(int ndim, const int64_t *shape, int64_t *numel,
                           pbt_error *err);
int64_t pbt_tensor_numel(const pbt_tensor *t);
int pbt_tensor_is_contiguous(const pbt_tensor *t);
/* Pointer to the first element (storage data + offset). */
void *pbt_tensor_data(const pbt_tensor *t);
int pbt_shape_equal(int na, const int64_t *a, int nb, const int64_t *b);
/* Row-major strides of a contiguous tensor of that shape. */
void pbt_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);

/* ---- element access (idx has t->ndim entries, checked by the caller) -- */
double pbt_tensor_get(const pbt_tensor *t, const int64_t *idx);
void pbt_tensor_set(pbt_tensor *t, const int64_t *idx, double v);
/* Element number `i` in row-major order of the logical shape. */
double pbt_tensor_get_flat(const pbt_tensor *t, int64_t i);

/* ---- views (dst shares src's storage) ---------------------------------- */
/* shape may hold one -1; fails when the strides cannot express it. */
pbt_status pbt_view(pbt_tensor *dst, const pbt_tensor *src, int ndim,
                    const int64_t *shape, pbt_error *err);
/* Like view, but copies when a view is impossible. */
pbt_status pbt_reshape(pbt_tensor *dst, const pbt_tensor *src, int ndim,
                       const int64_t *shape, pbt_error *err);
pbt_status pbt_transpose(pbt_tensor *dst, const pbt_tensor *src, int d1,
                         int d2, pbt_error *err);
/* perm has src->ndim entries, a permutation of 0..ndim-1. */
pbt_status pbt_permute(pbt_tensor *dst, const pbt_tensor *src, const int *perm,
                       pbt_error *err);
pbt_status pbt_narrow(pbt_tensor *dst, const pbt_tensor *src, int dim,
                      int64_t start, int64_t length, pbt_error *err);
/* the slice at index along dim: a view with one dimension fewer (Lua's t:select) */
pbt_status pbt_slice(pbt_tensor *dst, const pbt_tensor *src, int dim,
                     int64_t index, pbt_error *err);
pbt_status pbt_unsqueeze(pbt_tensor *dst, const pbt_tensor *src, int dim,
                         pbt_error *err);
/* dim < 0 removes every size-1 dimension. */
pbt_status pbt_squeeze(pbt_tensor *dst, const pbt_tensor *src, int dim,
                       pbt_error *err);
/* numpy broadcasting of src to shape; -1 keeps a size. */
pbt_status pbt_expand(pbt_tensor *dst, const pbt_tensor *src, int ndim,
                      const int64_t *shape, pbt_error *err);
/* Merges dimensions start..end (inclusive); copies if it must. */
pbt_status pbt_flatten(pbt_tensor *dst, const pbt_tensor *src, int start,
                       int end, pbt_error *err);

/* PBT_OK when every element of t has its own memory; an expanded tensor (a
 * stride of 0 in a dimension of size > 1) fails with PBT_ERR_ARG "cannot
 * write into an expanded tensor (clone it first)".  Every function that
 * writes into an existing tensor checks this. */
pbt_status pbt_check_writable(const pbt_tensor *t, pbt_error *err);

/* ---- copies ------------------------------------------------------------ */
/* dst shares src when src is contiguous, else is a contiguous copy. */
pbt_status pbt_contiguous(pbt_tensor *dst, const pbt_tensor *src,
                          pbt_error *err);
pbt_status pbt_clone(pbt_tensor *dst, const pbt_tensor *src, pbt_error *err);
pbt_status pbt_astype(pbt_tensor *dst, const pbt_tensor *src, pbt_dtype dtype,
                      pbt_error *err);
/* Copies src into the existing dst, broadcasting src and converting dtype. */
pbt_status pbt_copy_(pbt_tensor *dst, const pbt_tensor *src, pbt_error *err);
void pbt_fill_(pbt_tensor *t, double v);

/* ---- creation ---------------------------------------------------------- */
pbt_status pbt_arange(pbt_tensor *dst, double start, double stop, double step,
                      pbt_dtype dtype, pbt_error *err);
pbt_status pbt_linspace(pbt_tensor *dst, double start, double stop, int64_t n,
                        pbt_dtype dtype, pbt_error *err);
pbt_status pbt_eye(pbt_tensor *dst, int64_t n, int64_t m, pbt_dtype dtype,
                   pbt_error *err);

/* ---- broadcasting ------------------------------------------------------ */
/* numpy rules: align trailing dimensions; sizes equal or one of them 1. */
pbt_status pbt_broadcast_shape(int na, const int64_t *a, int nb,
                               const int64_t *b, int *nout, int64_t *out,
                               pbt_error *err);
/* Strides of t seen with shape (ndim, shape) under broadcasting: 0 where t is
 * broadcast.  The caller has checked that the shapes broadcast. */
void pbt_broadcast_strides(const pbt_tensor *t, int ndim, const int64_t *shape,
                           int64_t *stride);

/* ---- iteration --------------------------------------------------------- */
/*
 * Walks up to PBT_ITER_MAX operands of one shape, row by row.  Dimensions
 * that can be merged are merged, so contiguous operands give one long row.
 *
 *   pbt_iter it;
 *   if (pbt_iter_init(&it, 2, ndim, shape, strides)) do {
 *     float *o = out_base + it.offset[0];
 *     const float *x = in_base + it.offset[1];
 *     for (int64_t i = 0; i < it.n; i++)
 *       o[i * it.step[0]] = f(x[i * it.step[1]]);
 *   } while (pbt_iter_next(&it));
 *
 * pbt_iter_init returns 0 when there are no elements.
 */
#define PBT_ITER_MAX 4
typedef struct pbt_iter {
  int nop, ndim; /* outer dimensions (the inner one excluded) */
  int64_t n;     /* length of each row */
  int64_t step[PBT_ITER_MAX];
  int64_t offset[PBT_ITER_MAX]; /* of the current row, in elements */
  int64_t shape[PBT_MAX_DIM];
  int64_t stride[PBT_ITER_MAX][PBT_MAX_DIM];
  int64_t index[PBT_MAX_DIM];
} pbt_iter;

int pbt_iter_init(pbt_iter *it, int nop, int ndim, const int64_t *shape,
                  const int64_t *const *strides);
int pbt_iter_next(pbt_iter *it);

/* The version of t's storage: a count of the in-place changes made to it
 * (shared by every view of the storage).  The Lua binding bumps it for
 * every in-place op and optimizer step, and autograd checks that the
 * tensors an op was recorded with are at the version they had then. */
uint64_t pbt_tensor_version(const pbt_tensor *t);
void pbt_tensor_bump_version(const pbt_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
