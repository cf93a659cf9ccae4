/* pbt_tensor.c -- storage, geometry, views, copies and iteration. */
#define _DEFAULT_SOURCE /* madvise, posix_memalign */
#include "pbt_tensor.h"

#include <sys/mman.h>

#include <pthread.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The storage header and its data live in one allocation (the header at
 * its start); data starts at the first 64-byte boundary after the header. */
struct pbt_storage {
  long refcount; /* touched only through __atomic builtins */
  size_t nbytes;
  void *data;
  pbt_allocator *alloc; /* NULL: plain malloc; else holds a reference */
  size_t capacity;      /* bytes the block can hold (>= nbytes) */
  int bin;              /* size class, when alloc is set */
  uint64_t version;     /* in-place changes so far (pbt_tensor_bump_version) */
  /* while the block sits in its allocator's cache: its bin's list and the
   * list of all cached blocks, most recently freed first */
  pbt_storage *bin_prev, *bin_next, *age_prev, *age_next;
};

#define PBT_ALIGN 64

pbt_status pbt_fail(pbt_error *err, pbt_status status, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = status;
  }
  return status;
}

void pbt_format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
  size_t used = 0;
  int i;
  if (size == 0) return;
  buf[0] = '\0';
  used += (size_t)snprintf(buf, size, "[");
  for (i = 0; i < ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld",
                             (long long)shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
}

size_t pbt_dtype_size(pbt_dtype dtype) {
  return dtype == PBT_FLOAT64 ? sizeof(double) : sizeof(float);
}

const char *pbt_dtype_name(pbt_dtype dtype) {
  return dtype == PBT_FLOAT64 ? "float64" : "float32";
}

int pbt_dtype_from_name(const char *name, pbt_dtype *dtype) {
  if (strcmp(name, "float32") == 0) *dtype = PBT_FLOAT32;
  else if (strcmp(name, "float64") == 0) *dtype = PBT_FLOAT64;
  else return -1;
  return 0;
}

/* ---- storage ------------------------------------------------------------ */

/* Storages of PBT_HUGE_MIN bytes and more get transparent huge pages, as
 * numpy asks for from 4 MB on: the block is aligned to 2 MiB and marked
 * MADV_HUGEPAGE, so that a stream over 40 MB walks 20 pages instead of
 * 10,000.  (With the kernel's defrag setting "madvise", the first fault of
 * such a block may wait for memory compaction; the storage cache makes
 * that a cost of a block's first use only.)  Their data does not start at
 * one fixed offset of a huge page: with 2 MiB pages the low 21 bits of the
 * virtual address are the physical ones, and storages that all start at
 * the same offset put a[i], b[i] and c[i] of c = a + b in the same L2 set
 * (streaming ops over several of them ran 15-30% slower here when every
 * big storage started right after its header).  A block's data starts
 * `stagger` (0..PBT_STAGGERS-1) steps of PBT_STAGGER bytes further, over
 * 129 KB in all: past a 2 MiB L2's set index (bits 6-16).  An allocator
 * hands out the steps in turn; a block made without one takes its step
 * from its address. */
#define PBT_HUGE ((size_t)2 << 20)
#define PBT_HUGE_MIN ((size_t)4 << 20)
#define PBT_STAGGER ((size_t)65 * PBT_ALIGN)
#define PBT_STAGGERS 32
#define PBT_STAGGER_BY_ADDRESS (-1)
/* Bytes from the start of a block to its data, before the stagger. */
#define PBT_HEAD (((sizeof(pbt_storage) + PBT_ALIGN - 1) / PBT_ALIGN) * PBT_ALIGN)

/* A block with room for `capacity` bytes of data, or NULL: malloc'd, the
 * data aligned to PBT_ALIGN; from PBT_HUGE_MIN on, 2 MiB-aligned, marked
 * for huge pages and its data moved by `stagger` steps (above). */
static pbt_storage *block_new(size_t capacity, int stagger) {
  size_t head = sizeof(pbt_storage) + PBT_ALIGN;
  pbt_storage *s;
  uintptr_t p;
  if (capacity > SIZE_MAX / 2) return NULL;
  if (capacity >= PBT_HUGE_MIN) {
    size_t room = PBT_HEAD + (PBT_STAGGERS - 1) * PBT_STAGGER; /* the most a block skips */
    size_t total = (room + capacity + PBT_HUGE - 1) & ~(PBT_HUGE - 1);
    void *block;
    if (posix_memalign(&block, PBT_HUGE, total) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(block, total, MADV_HUGEPAGE); /* advice: without it, small pages */
#endif
    if (stagger == PBT_STAGGER_BY_ADDRESS) /* a multiplicative hash of the huge page */
      stagger = (int)((uint32_t)((uintptr_t)block >> 21) * 2654435761u >> 27);
    s = (pbt_storage *)block;
    p = (uintptr_t)block + PBT_HEAD + (size_t)(stagger % PBT_STAGGERS) * PBT_STAGGER;
  } else {
    s = malloc(head + capacity);
    if (!s) return NULL;
    p = ((uintptr_t)(s + 1) + PBT_ALIGN - 1) & ~(uintptr_t)(PBT_ALIGN - 1);
  }
  s->refcount = 1;
  s->nbytes = capacity;
  s->capacity = capacity;
  s->data = (void *)p;
  s->alloc = NULL;
  s->bin = -1;
  s->version = 0;
  s->bin_prev = s->bin_next = s->age_prev = s->age_next = NULL;
#ifdef PBT_ALLOC_POISON
  memset(s->data, 0xff, capacity); /* NaNs: shows reads of unset elements */
#endif
  return s;
}

/* ---- allocators ---------------------------------------------------------- */

/* Size classes: 8 per power of two, 2^e (1 + k/8) for k = 1..8, from
 * PBT_ALLOC_MIN_BYTES (2^14) on. */
#define BIN_STEPS 8
#define BIN_MIN_LOG 14
#define BIN_COUNT ((64 - BIN_MIN_LOG + 1) * BIN_STEPS)
_Static_assert(PBT_ALLOC_MIN_BYTES == (size_t)1 << BIN_MIN_LOG,
               "the smallest size class is PBT_ALLOC_MIN_BYTES");

struct pbt_allocator {
  long refcount; /* atomic */
  pthread_mutex_t lock;
  /* under lock: */
  size_t limit, cached_bytes, cached_blocks, live_bytes;
  uint64_t hits, misses;
  int stagger; /* the next big block's stagger step (see block_new) */
  pbt_storage *age_head, *age_tail;
  pbt_storage *bins[BIN_COUNT];
};

/* The size class of n >= PBT_ALLOC_MIN_BYTES and its capacity, or -1 when n
 * is too big for any class. */
static int size_class(size_t n, size_t *capacity) {
  int e = 63, bin;
  size_t base, step, k;
  while (e > 0 && !((n - 1) >> e & 1)) e--; /* 2^e <= n-1 < 2^(e+1) */
  if (e >= 62) return -1;
  base = (size_t)1 << e;
  step = base / BIN_STEPS;
  k = (n - base + step - 1) / step; /* 1..BIN_STEPS: capacity base + k step */
  *capacity = base + k * step;
  bin = (e - BIN_MIN_LOG + 1) * BIN_STEPS + (int)k - 1;
  return bin >= 0 && bin < BIN_COUNT ? bin : -1;
}

pbt_status pbt_allocator_new(pbt_allocator **a, size_t max_cached_bytes,
                             pbt_error *err) {
  pbt_allocator *p = calloc(1, sizeof *p);
  *a = NULL;
  if (!p) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  if (pthread_mutex_init(&p->lock, NULL) != 0) {
    free(p);
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  }
  p->refcount = 1;
  p->limit = max_cached_bytes;
  *a = p;
  return PBT_OK;
}

void pbt_allocator_retain(pbt_allocator *a) {
  __atomic_fetch_add(&a->refcount, 1, __ATOMIC_RELAXED);
}

/* Unlinks a cached block (under the lock). */
static void cache_unlink(pbt_allocator *a, pbt_storage *s) {
  if (s->bin_prev) s->bin_prev->bin_next = s->bin_next;
  else a->bins[s->bin] = s->bin_next;
  if (s->bin_next) s->bin_next->bin_prev = s->bin_prev;
  if (s->age_prev) s->age_prev->age_next = s->age_next;
  else a->age_head = s->age_next;
  if (s->age_next) s->age_next->age_prev = s->age_prev;
  else a->age_tail = s->age_prev;
  a->cached_bytes -= s->capacity;
  a->cached_blocks--;
}

/* Takes the oldest blocks out of the cache until it holds at most `limit`
 * bytes; returns them chained by age_next, to be freed outside the lock. */
static pbt_storage *cache_trim(pbt_allocator *a, size_t limit) {
  pbt_storage *out = NULL, *s;
  while (a->cached_bytes > limit && (s = a->age_tail) != NULL) {
    cache_unlink(a, s);
    s->age_next = out;
    out = s;
  }
  return out;
}

static void free_chain(pbt_storage *s) {
  while (s) {
    pbt_storage *next = s->age_next;
    free(s);
    s = next;
  }
}

void pbt_allocator_release(pbt_allocator *a) {
  if (!a || __atomic_fetch_sub(&a->refcount, 1, __ATOMIC_ACQ_REL) != 1) return;
  free_chain(cache_trim(a, 0));
  pthread_mutex_destroy(&a->lock);
  free(a);
}

size_t pbt_allocator_set_limit(pbt_allocator *a, size_t max_cached_bytes) {
  size_t old;
  pbt_storage *drop;
  pthread_mutex_lock(&a->lock);
  old = a->limit;
  a->limit = max_cached_bytes;
  drop = cache_trim(a, max_cached_bytes);
  pthread_mutex_unlock(&a->lock);
  free_chain(drop);
  return old;
}

void pbt_allocator_get_stats(pbt_allocator *a, pbt_allocator_stats *stats) {
  pthread_mutex_lock(&a->lock);
  stats->cached_bytes = a->cached_bytes;
  stats->cached_blocks = a->cached_blocks;
  stats->limit = a->limit;
  stats->live_bytes = a->live_bytes;
  stats->hits = a->hits;
  stats->misses = a->misses;
  pthread_mutex_unlock(&a->lock);
}

/* A storage of nbytes from `a` (NULL: malloc), or NULL. */
static pbt_storage *storage_new(pbt_allocator *a, size_t nbytes) {
  size_t capacity = 0;
  int bin = a && nbytes >= PBT_ALLOC_MIN_BYTES ? size_class(nbytes, &capacity)
                                                : -1;
  pbt_storage *s = NULL;
  int stagger = 0;
  if (bin < 0) return block_new(nbytes, PBT_STAGGER_BY_ADDRESS);
  pthread_mutex_lock(&a->lock);
  if ((s = a->bins[bin]) != NULL) {
    cache_unlink(a, s);
    a->hits++;
  } else {
    a->misses++;
    if (capacity >= PBT_HUGE_MIN) {
      stagger = a->stagger;
      a->stagger = (a->stagger + 1) % PBT_STAGGERS;
    }
  }
  a->live_bytes += capacity;
  pthread_mutex_unlock(&a->lock);
  if (s) {
    s->refcount = 1;
    s->bin_prev = s->bin_next = s->age_prev = s->age_next = NULL;
#ifdef PBT_ALLOC_POISON
    memset(s->data, 0xff, s->capacity);
#endif
  } else {
    s = block_new(capacity, stagger);
    if (!s) {
      pthread_mutex_lock(&a->lock);
      a->live_bytes -= capacity;
      pthread_mutex_unlock(&a->lock);
      return NULL;
    }
    s->bin = bin;
  }
  s->nbytes = nbytes;
  s->alloc = a;
  pbt_allocator_retain(a);
  return s;
}

/* Gives a block back to its allocator's cache (or to the system when the
 * cache has no room) and drops the block's reference to the allocator. */
static void cache_put(pbt_allocator *a, pbt_storage *s) {
  pbt_storage *drop = NULL;
  pthread_mutex_lock(&a->lock);
  a->live_bytes -= s->capacity;
  if (s->capacity <= a->limit) {
    s->alloc = NULL;
    s->bin_prev = NULL;
    s->bin_next = a->bins[s->bin];
    if (s->bin_next) s->bin_next->bin_prev = s;
    a->bins[s->bin] = s;
    s->age_prev = NULL;
    s->age_next = a->age_head;
    if (s->age_next) s->age_next->age_prev = s;
    else a->age_tail = s;
    a->age_head = s;
    a->cached_bytes += s->capacity;
    a->cached_blocks++;
    drop = cache_trim(a, a->limit);
  } else {
    s->age_next = NULL;
    drop = s;
  }
  pthread_mutex_unlock(&a->lock);
  free_chain(drop);
  pbt_allocator_release(a);
}

static void storage_retain(pbt_storage *s) {
  __atomic_fetch_add(&s->refcount, 1, __ATOMIC_RELAXED);
}

static void storage_release(pbt_storage *s) {
  if (__atomic_fetch_sub(&s->refcount, 1, __ATOMIC_ACQ_REL) != 1) return;
  if (s->alloc) cache_put(s->alloc, s);
  else free(s);
}

pbt_allocator *pbt_storage_allocator(const pbt_storage *s) { return s->alloc; }

void *pbt_storage_data(const pbt_storage *s) { return s->data; }
size_t pbt_storage_nbytes(const pbt_storage *s) { return s->nbytes; }
long pbt_storage_refcount(const pbt_storage *s) {
  return __atomic_load_n(&s->refcount, __ATOMIC_RELAXED);
}

/* ---- life cycle --------------------------------------------------------- */

void pbt_tensor_init(pbt_tensor *t) { memset(t, 0, sizeof *t); }

void pbt_tensor_release(pbt_tensor *t) {
  if (t->storage) storage_release(t->storage);
  t->storage = NULL;
}

void pbt_tensor_share(pbt_tensor *dst, const pbt_tensor *src) {
  if (dst == src) return;
  pbt_allocator *a = dst->alloc;
  if (src->storage) storage_retain(src->storage);
  pbt_tensor_release(dst);
  *dst = *src;
  dst->alloc = a;
}

/* The largest product of non-zero sizes of any tensor: its elements, even
 * of the widest dtype, and every stride in bytes fit in half of size_t. */
#define PBT_MAX_ELEMENTS ((int64_t)(SIZE_MAX / 2 / sizeof(double)))

pbt_status pbt_shape_numel(int ndim, const int64_t *shape, int64_t *numel,
                           pbt_error *err) {
  int64_t n = 1;
  int i;
  char buf[200];
  if (ndim < 0 || ndim > PBT_MAX_DIM)
    return pbt_fail(err, PBT_ERR_ARG, "%d dimensions (at most %d allowed)",
                    ndim, PBT_MAX_DIM);
  for (i = 0; i < ndim; i++)
    if (shape[i] < 0)
      return pbt_fail(err, PBT_ERR_ARG, "negative size %lld in dimension %d",
                      (long long)shape[i], i);
  /* the product of the non-zero sizes bounds every stride: it must fit even
   * when a zero size makes the tensor empty */
  for (i = 0; i < ndim; i++) {
    if (shape[i] == 0) continue;
    if (n > PBT_MAX_ELEMENTS / shape[i]) {
      pbt_format_shape(buf, sizeof buf, ndim, shape);
      return pbt_fail(err, PBT_ERR_SHAPE, "shape %s has too many elements", buf);
    }
    n *= shape[i];
  }
  for (i = 0; i < ndim; i++)
    if (shape[i] == 0) n = 0;
  *numel = n;
  return PBT_OK;
}

void pbt_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  int i;
  for (i = ndim - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
}

pbt_status pbt_tensor_empty(pbt_tensor *dst, pbt_dtype dtype, int ndim,
                            const int64_t *shape, pbt_error *err) {
  return pbt_tensor_empty_in(dst, dst->alloc, dtype, ndim, shape, err);
}

pbt_status pbt_tensor_empty_in(pbt_tensor *dst, pbt_allocator *a,
                               pbt_dtype dtype, int ndim, const int64_t *shape,
                               pbt_error *err) {
  int64_t numel = 0;
  size_t es = pbt_dtype_size(dtype);
  pbt_status st;
  pbt_tensor_release(dst);
  st = pbt_shape_numel(ndim, shape, &numel, err);
  if (st == PBT_ERR_SHAPE) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  if (st) return st;
  dst->storage = storage_new(a, (size_t)numel * es);
  if (!dst->storage) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  dst->offset = 0;
  dst->ndim = ndim;
  dst->dtype = dtype;
  memcpy(dst->shape, shape, sizeof(int64_t) * (size_t)ndim);
  pbt_contiguous_strides(ndim, shape, dst->stride);
  return PBT_OK;
}

pbt_status pbt_tensor_empty_like(pbt_tensor *dst, const pbt_tensor *src,
                                 pbt_error *err) {
  int64_t shape[PBT_MAX_DIM];
  memcpy(shape, src->shape, sizeof shape);
  return pbt_tensor_empty(dst, src->dtype, src->ndim, shape, err);
}

/* ---- metadata ----------------------------------------------------------- */

int64_t pbt_tensor_numel(const pbt_tensor *t) {
  int64_t n = 1;
  int i;
  for (i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

int pbt_tensor_is_contiguous(const pbt_tensor *t) {
  int64_t s = 1;
  int i;
  for (i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] == 0) return 1;
    if (t->shape[i] != 1 && t->stride[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

void *pbt_tensor_data(const pbt_tensor *t) {
  return (char *)t->storage->data + t->offset * (int64_t)pbt_dtype_size(t->dtype);
}

int pbt_shape_equal(int na, const int64_t *a, int nb, const int64_t *b) {
  int i;
  if (na != nb) return 0;
  for (i = 0; i < na; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/* ---- element access ----------------------------------------------------- */

static int64_t element_offset(const pbt_tensor *t, const int64_t *idx) {
  int64_t off = t->offset;
  int i;
  for (i = 0; i < t->ndim; i++) off += idx[i] * t->stride[i];
  return off;
}

static double load(const pbt_tensor *t, int64_t off) {
  if (t->dtype == PBT_FLOAT64) return ((const double *)t->storage->data)[off];
  return ((const float *)t->storage->data)[off];
}

double pbt_tensor_get(const pbt_tensor *t, const int64_t *idx) {
  return load(t, element_offset(t, idx));
}

void pbt_tensor_set(pbt_tensor *t, const int64_t *idx, double v) {
  int64_t off = element_offset(t, idx);
  if (t->dtype == PBT_FLOAT64) ((double *)t->storage->data)[off] = v;
  else ((float *)t->storage->data)[off] = (float)v;
}

double pbt_tensor_get_flat(const pbt_tensor *t, int64_t i) {
  int64_t off = t->offset;
  int d;
  for (d = t->ndim - 1; d >= 0; d--) {
    int64_t n = t->shape[d];
    off += (i % n) * t->stride[d];
    i /= n;
  }
  return load(t, off);
}

/* ---- views -------------------------------------------------------------- */

static pbt_status check_dim(int dim, int ndim, pbt_error *err) {
  if (dim < 0 || dim >= ndim)
    return pbt_fail(err, PBT_ERR_ARG,
                    "dimension %d out of range for a %d-d tensor", dim, ndim);
  return PBT_OK;
}

/* Resolves one -1 in shape against numel; checks the product. */
static pbt_status infer_shape(const pbt_tensor *src, int ndim,
                              const int64_t *shape, int64_t *out,
                              pbt_error *err) {
  int64_t numel = pbt_tensor_numel(src), known = 1;
  int i, infer = -1, ok;
  char a[96], b[96];
  if (ndim < 0 || ndim > PBT_MAX_DIM)
    return pbt_fail(err, PBT_ERR_ARG, "%d dimensions (at most %d allowed)",
                    ndim, PBT_MAX_DIM);
  for (i = 0; i < ndim; i++) {
    out[i] = shape[i];
    if (shape[i] == -1) {
      if (infer >= 0)
        return pbt_fail(err, PBT_ERR_ARG, "only one size may be -1");
      infer = i;
    } else if (shape[i] < 0) {
      return pbt_fail(err, PBT_ERR_ARG, "negative size %lld",
                      (long long)shape[i]);
    } else if (known >= 0) {
      known = shape[i] != 0 && known > INT64_MAX / shape[i] ? -1
                                                            : known * shape[i];
    }
  }
  if (infer >= 0) {
    ok = known > 0 && numel % known == 0;
    if (ok) out[infer] = numel / known;
  } else {
    ok = known == numel;
  }
  if (!ok) {
    pbt_format_shape(a, sizeof a, src->ndim, src->shape);
    pbt_format_shape(b, sizeof b, ndim, shape);
    return pbt_fail(err, PBT_ERR_SHAPE,
                    "shape %s is invalid for a tensor of shape %s (%lld elements)",
                    b, a, (long long)numel);
  }
  return PBT_OK;
}

/* Strides for viewing src with a new shape without copying, following
 * numpy's _attempt_nocopy_reshape; returns 0 when impossible. */
static int view_strides(const pbt_tensor *src, int ndim, const int64_t *shape,
                        int64_t *stride) {
  int64_t oshape[PBT_MAX_DIM], ostride[PBT_MAX_DIM];
  int on = 0, i, oi, oj, ni, nj, k;
  if (pbt_tensor_numel(src) == 0) {
    pbt_contiguous_strides(ndim, shape, stride);
    return 1;
  }
  for (i = 0; i < src->ndim; i++)
    if (src->shape[i] != 1) {
      oshape[on] = src->shape[i];
      ostride[on] = src->stride[i];
      on++;
    }
  oi = 0, oj = 1, ni = 0, nj = 1;
  while (ni < ndim && oi < on) {
    int64_t np = shape[ni], op = oshape[oi];
    while (np != op) {
      if (np < op) np *= shape[nj++];
      else op *= oshape[oj++];
    }
    for (k = oi; k < oj - 1; k++)
      if (ostride[k] != oshape[k + 1] * ostride[k + 1]) return 0;
    stride[nj - 1] = ostride[oj - 1];
    for (k = nj - 1; k > ni; k--) stride[k - 1] = stride[k] * shape[k];
    ni = nj++;
    oi = oj++;
  }
  /* trailing size-1 dimensions */
  for (k = ni; k < ndim; k++) stride[k] = ni > 0 ? stride[ni - 1] : 1;
  return 1;
}

pbt_status pbt_view(pbt_tensor *dst, const pbt_tensor *src, int ndim,
                    const int64_t *shape, pbt_error *err) {
  int64_t sh[PBT_MAX_DIM], st[PBT_MAX_DIM];
  pbt_status s = infer_shape(src, ndim, shape, sh, err);
  char a[96], b[96];
  if (s) return s;
  if (!view_strides(src, ndim, sh, st)) {
    pbt_format_shape(a, sizeof a, src->ndim, src->shape);
    pbt_format_shape(b, sizeof b, ndim, sh);
    return pbt_fail(err, PBT_ERR_SHAPE,
                    "cannot view a non-contiguous tensor of shape %s as %s "
                    "(use reshape or contiguous)", a, b);
  }
  pbt_tensor_share(dst, src);
  dst->ndim = ndim;
  memcpy(dst->shape, sh, sizeof(int64_t) * (size_t)ndim);
  memcpy(dst->stride, st, sizeof(int64_t) * (size_t)ndim);
  return PBT_OK;
}

pbt_status pbt_reshape(pbt_tensor *dst, const pbt_tensor *src, int ndim,
                       const int64_t *shape, pbt_error *err) {
  int64_t sh[PBT_MAX_DIM], st[PBT_MAX_DIM];
  pbt_tensor tmp;
  pbt_status s = infer_shape(src, ndim, shape, sh, err);
  if (s) return s;
  if (view_strides(src, ndim, sh, st)) return pbt_view(dst, src, ndim, sh, err);
  pbt_tensor_init(&tmp);
  tmp.alloc = dst->alloc;
  s = pbt_clone(&tmp, src, err);
  if (s) return s;
  s = pbt_view(dst, &tmp, ndim, sh, err);
  pbt_tensor_release(&tmp);
  return s;
}

pbt_status pbt_transpose(pbt_tensor *dst, const pbt_tensor *src, int d1,
                         int d2, pbt_error *err) {
  int64_t t;
  if (check_dim(d1, src->ndim, err) || check_dim(d2, src->ndim, err))
    return PBT_ERR_ARG;
  pbt_tensor_share(dst, src);
  t = dst->shape[d1], dst->shape[d1] = dst->shape[d2], dst->shape[d2] = t;
  t = dst->stride[d1], dst->stride[d1] = dst->stride[d2], dst->stride[d2] = t;
  return PBT_OK;
}

pbt_status pbt_permute(pbt_tensor *dst, const pbt_tensor *src, const int *perm,
                       pbt_error *err) {
  int seen[PBT_MAX_DIM] = {0};
  int64_t sh[PBT_MAX_DIM], st[PBT_MAX_DIM];
  int i, n = src->ndim;
  for (i = 0; i < n; i++) {
    if (check_dim(perm[i], n, err)) return PBT_ERR_ARG;
    if (seen[perm[i]]++)
      return pbt_fail(err, PBT_ERR_ARG, "dimension %d repeated in permutation",
                      perm[i]);
    sh[i] = src->shape[perm[i]];
    st[i] = src->stride[perm[i]];
  }
  pbt_tensor_share(dst, src);
  memcpy(dst->shape, sh, sizeof(int64_t) * (size_t)n);
  memcpy(dst->stride, st, sizeof(int64_t) * (size_t)n);
  return PBT_OK;
}

pbt_status pbt_narrow(pbt_tensor *dst, const pbt_tensor *src, int dim,
                      int64_t start, int64_t length, pbt_error *err) {
  if (check_dim(dim, src->ndim, err)) return PBT_ERR_ARG;
  if (start < 0 || length < 0 || start > src->shape[dim] ||
      length > src->shape[dim] - start)
    return pbt_fail(err, PBT_ERR_ARG,
                    "start %lld and length %lld out of range for size %lld",
                    (long long)start, (long long)length,
                    (long long)src->shape[dim]);
  pbt_tensor_share(dst, src);
  dst->offset += start * src->stride[dim];
  dst->shape[dim] = length;
  return PBT_OK;
}

pbt_status pbt_slice(pbt_tensor *dst, const pbt_tensor *src, int dim,
                     int64_t index, pbt_error *err) {
  int i;
  if (check_dim(dim, src->ndim, err)) return PBT_ERR_ARG;
  if (index < 0 || index >= src->shape[dim])
    return pbt_fail(err, PBT_ERR_ARG, "index %lld out of range for size %lld",
                    (long long)index, (long long)src->shape[dim]);
  pbt_tensor_share(dst, src);
  dst->offset += index * src->stride[dim];
  for (i = dim; i < src->ndim - 1; i++) {
    dst->shape[i] = src->shape[i + 1];
    dst->stride[i] = src->stride[i + 1];
  }
  dst->ndim = src->ndim - 1;
  return PBT_OK;
}

pbt_status pbt_unsqueeze(pbt_tensor *dst, const pbt_tensor *src, int dim,
                         pbt_error *err) {
  int i, n = src->ndim;
  if (n >= PBT_MAX_DIM)
    return pbt_fail(err, PBT_ERR_ARG, "a tensor has at most %d dimensions",
                    PBT_MAX_DIM);
  if (check_dim(dim, n + 1, err)) return PBT_ERR_ARG;
  pbt_tensor_share(dst, src);
  for (i = n; i > dim; i--) {
    dst->shape[i] = src->shape[i - 1];
    dst->stride[i] = src->stride[i - 1];
  }
  dst->shape[dim] = 1;
  dst->stride[dim] = dim < n ? src->shape[dim] * src->stride[dim] : 1;
  dst->ndim = n + 1;
  return PBT_OK;
}

pbt_status pbt_squeeze(pbt_tensor *dst, const pbt_tensor *src, int dim,
                       pbt_error *err) {
  int i, k = 0, n = src->ndim;
  int64_t sh[PBT_MAX_DIM], st[PBT_MAX_DIM];
  if (dim >= 0 && check_dim(dim, n, err)) return PBT_ERR_ARG;
  for (i = 0; i < n; i++) {
    if (src->shape[i] == 1 && (dim < 0 || dim == i)) continue;
    sh[k] = src->shape[i];
    st[k] = src->stride[i];
    k++;
  }
  pbt_tensor_share(dst, src);
  dst->ndim = k;
  memcpy(dst->shape, sh, sizeof(int64_t) * (size_t)k);
  memcpy(dst->stride, st, sizeof(int64_t) * (size_t)k);
  return PBT_OK;
}

pbt_status pbt_expand(pbt_tensor *dst, const pbt_tensor *src, int ndim,
                      const int64_t *shape, pbt_error *err) {
  int64_t sh[PBT_MAX_DIM], st[PBT_MAX_DIM];
  int i, lead = ndim - src->ndim;
  char a[96], b[96];
  if (ndim > PBT_MAX_DIM)
    return pbt_fail(err, PBT_ERR_ARG, "%d dimensions (at most %d allowed)",
                    ndim, PBT_MAX_DIM);
  if (lead < 0) goto bad;
  for (i = 0; i < ndim; i++) {
    int64_t want = shape[i];
    if (i < lead) {
      if (want < 0) goto bad;
      sh[i] = want;
      st[i] = 0;
    } else {
      int64_t have = src->shape[i - lead];
      if (want == -1) want = have;
      if (want < 0) goto bad;
      if (have == want) {
        sh[i] = have;
        st[i] = src->stride[i - lead];
      } else if (have == 1) {
        sh[i] = want;
        st[i] = 0;
      } else {
        goto bad;
      }
    }
  }
  {
    int64_t numel;
    pbt_status s = pbt_shape_numel(ndim, sh, &numel, err);
    if (s) return s;
  }
  pbt_tensor_share(dst, src);
  dst->ndim = ndim;
  memcpy(dst->shape, sh, sizeof(int64_t) * (size_t)ndim);
  memcpy(dst->stride, st, sizeof(int64_t) * (size_t)ndim);
  return PBT_OK;
bad:
  pbt_format_shape(a, sizeof a, src->ndim, src->shape);
  pbt_format_shape(b, sizeof b, ndim, shape);
  return pbt_fail(err, PBT_ERR_SHAPE, "cannot expand shape %s to %s", a, b);
}

pbt_status pbt_flatten(pbt_tensor *dst, const pbt_tensor *src, int start,
                       int end, pbt_error *err) {
  int64_t sh[PBT_MAX_DIM];
  int i, k = 0;
  if (src->ndim == 0) return pbt_reshape(dst, src, 1, (int64_t[]){1}, err);
  if (check_dim(start, src->ndim, err) || check_dim(end, src->ndim, err))
    return PBT_ERR_ARG;
  if (start > end)
    return pbt_fail(err, PBT_ERR_ARG, "start dimension %d after end dimension %d",
                    start, end);
  for (i = 0; i < start; i++) sh[k++] = src->shape[i];
  sh[k] = 1;
  for (i = start; i <= end; i++) sh[k] *= src->shape[i];
  k++;
  for (i = end + 1; i < src->ndim; i++) sh[k++] = src->shape[i];
  return pbt_reshape(dst, src, k, sh, err);
}

/* ---- broadcasting ------------------------------------------------------- */

pbt_status pbt_broadcast_shape(int na, const int64_t *a, int nb,
                               const int64_t *b, int *nout, int64_t *out,
                               pbt_error *err) {
  int n = na > nb ? na : nb, i;
  char sa[96], sb[96];
  for (i = 0; i < n; i++) {
    int64_t x = i < n - na ? 1 : a[i - (n - na)];
    int64_t y = i < n - nb ? 1 : b[i - (n - nb)];
    if (x == y || y == 1) out[i] = x;
    else if (x == 1) out[i] = y;
    else {
      pbt_format_shape(sa, sizeof sa, na, a);
      pbt_format_shape(sb, sizeof sb, nb, b);
      return pbt_fail(err, PBT_ERR_SHAPE,
                      "shapes %s and %s cannot be broadcast together", sa, sb);
    }
  }
  *nout = n;
  return PBT_OK;
}

void pbt_broadcast_strides(const pbt_tensor *t, int ndim, const int64_t *shape,
                           int64_t *stride) {
  int i, lead = ndim - t->ndim;
  for (i = 0; i < ndim; i++) {
    if (i < lead) stride[i] = 0;
    else if (t->shape[i - lead] == 1 && shape[i] != 1) stride[i] = 0;
    else stride[i] = t->stride[i - lead];
  }
}

/* ---- iteration ---------------------------------------------------------- */

int pbt_iter_init(pbt_iter *it, int nop, int ndim, const int64_t *shape,
                  const int64_t *const *strides) {
  int64_t sh[PBT_MAX_DIM], st[PBT_ITER_MAX][PBT_MAX_DIM];
  int i, k, n = 0, op;
  it->nop = nop;
  for (i = 0; i < ndim; i++)
    if (shape[i] == 0) return 0;
  /* drop size-1 dims, then merge neighbours that are contiguous for all */
  for (i = 0; i < ndim; i++) {
    if (shape[i] == 1) continue;
    if (n > 0) {
      int merge = 1;
      for (op = 0; op < nop; op++)
        if (st[op][n - 1] != strides[op][i] * shape[i]) merge = 0;
      if (merge) {
        sh[n - 1] *= shape[i];
        for (op = 0; op < nop; op++) st[op][n - 1] = strides[op][i];
        continue;
      }
    }
    sh[n] = shape[i];
    for (op = 0; op < nop; op++) st[op][n] = strides[op][i];
    n++;
  }
  if (n == 0) {
    sh[0] = 1;
    for (op = 0; op < nop; op++) st[op][0] = 0;
    n = 1;
  }
  it->n = sh[n - 1];
  for (op = 0; op < nop; op++) {
    it->step[op] = st[op][n - 1];
    it->offset[op] = 0;
  }
  it->ndim = n - 1;
  for (k = 0; k < n - 1; k++) {
    it->shape[k] = sh[k];
    it->index[k] = 0;
    for (op = 0; op < nop; op++) it->stride[op][k] = st[op][k];
  }
  return 1;
}

int pbt_iter_next(pbt_iter *it) {
  int k, op;
  for (k = it->ndim - 1; k >= 0; k--) {
    if (++it->index[k] < it->shape[k]) {
      for (op = 0; op < it->nop; op++) it->offset[op] += it->stride[op][k];
      return 1;
    }
    it->index[k] = 0;
    for (op = 0; op < it->nop; op++)
      it->offset[op] -= it->stride[op][k] * (it->shape[k] - 1);
  }
  return 0;
}

/* ---- copies ------------------------------------------------------------- */

pbt_status pbt_check_writable(const pbt_tensor *t, pbt_error *err) {
  int i;
  for (i = 0; i < t->ndim; i++)
    if (t->stride[i] == 0 && t->shape[i] > 1)
      return pbt_fail(err, PBT_ERR_ARG,
                      "cannot write into an expanded tensor (clone it first)");
  return PBT_OK;
}

/* o[r * orow + c] = x[r + c * xcol] over rows x cols, in 64 x 64 tiles: the
 * copy of a transposed matrix reads and writes whole cache lines. */
#define PBT_TILE 64
static void copy_tiled_f32(float *o, int64_t orow, const float *x, int64_t xcol,
                           int64_t rows, int64_t cols) {
  int64_t r0, c0, r, c;
  for (r0 = 0; r0 < rows; r0 += PBT_TILE)
    for (c0 = 0; c0 < cols; c0 += PBT_TILE) {
      int64_t r1 = r0 + PBT_TILE < rows ? r0 + PBT_TILE : rows;
      int64_t c1 = c0 + PBT_TILE < cols ? c0 + PBT_TILE : cols;
      for (r = r0; r < r1; r++)
        for (c = c0; c < c1; c++) o[r * orow + c] = x[r + c * xcol];
    }
}

static void copy_tiled_f64(double *o, int64_t orow, const double *x, int64_t xcol,
                           int64_t rows, int64_t cols) {
  int64_t r0, c0, r, c;
  for (r0 = 0; r0 < rows; r0 += PBT_TILE)
    for (c0 = 0; c0 < cols; c0 += PBT_TILE) {
      int64_t r1 = r0 + PBT_TILE < rows ? r0 + PBT_TILE : rows;
      int64_t c1 = c0 + PBT_TILE < cols ? c0 + PBT_TILE : cols;
      for (r = r0; r < r1; r++)
        for (c = c0; c < c1; c++) o[r * orow + c] = x[r + c * xcol];
    }
}

pbt_status pbt_copy_(pbt_tensor *dst, const pbt_tensor *src, pbt_error *err) {
  int64_t sst[PBT_MAX_DIM];
  const int64_t *strides[2];
  pbt_iter it;
  char a[96], b[96];
  int i, lead = dst->ndim - src->ndim;
  pbt_status ws = pbt_check_writable(dst, err);
  if (ws) return ws;
  if (lead < 0) goto bad;
  for (i = 0; i < src->ndim; i++)
    if (src->shape[i] != 1 && src->shape[i] != dst->shape[i + lead]) goto bad;
  pbt_broadcast_strides(src, dst->ndim, dst->shape, sst);
  strides[0] = dst->stride;
  strides[1] = sst;
  if (src->storage == dst->storage && src->dtype == dst->dtype &&
      pbt_tensor_is_contiguous(dst) && pbt_tensor_is_contiguous(src) &&
      pbt_shape_equal(src->ndim, src->shape, dst->ndim, dst->shape)) {
    memmove(pbt_tensor_data(dst), pbt_tensor_data(src),
            (size_t)pbt_tensor_numel(dst) * pbt_dtype_size(dst->dtype));
    return PBT_OK;
  }
  if (src->storage == dst->storage) {
    /* src may overlap dst in any order (t:copy_(t:t())): copy it aside */
    pbt_tensor tmp;
    pbt_status s;
    pbt_tensor_init(&tmp);
    tmp.alloc = dst->alloc;
    s = pbt_clone(&tmp, src, err);
    if (!s) s = pbt_copy_(dst, &tmp, err);
    pbt_tensor_release(&tmp);
    return s;
  }
  if (!pbt_iter_init(&it, 2, dst->ndim, dst->shape, strides)) return PBT_OK;
  if (it.ndim == 1 && it.step[0] == 1 && it.stride[1][0] == 1 && it.step[1] > 1 &&
      dst->dtype == src->dtype) {
    /* a matrix whose rows are the source's columns (a transpose) */
    if (dst->dtype == PBT_FLOAT32)
      copy_tiled_f32((float *)pbt_tensor_data(dst), it.stride[0][0],
                     (const float *)pbt_tensor_data(src), it.step[1], it.shape[0], it.n);
    else
      copy_tiled_f64((double *)pbt_tensor_data(dst), it.stride[0][0],
                     (const double *)pbt_tensor_data(src), it.step[1], it.shape[0], it.n);
    return PBT_OK;
  }
  do {
    int64_t j, n = it.n, so = it.step[0], si = it.step[1];
    if (dst->dtype == PBT_FLOAT32 && src->dtype == PBT_FLOAT32) {
      float *o = (float *)pbt_tensor_data(dst) + it.offset[0];
      const float *x = (const float *)pbt_tensor_data(src) + it.offset[1];
      if (so == 1 && si == 1) memcpy(o, x, (size_t)n * sizeof *o);
      else for (j = 0; j < n; j++) o[j * so] = x[j * si];
    } else if (dst->dtype == PBT_FLOAT64 && src->dtype == PBT_FLOAT64) {
      double *o = (double *)pbt_tensor_data(dst) + it.offset[0];
      const double *x = (const double *)pbt_tensor_data(src) + it.offset[1];
      if (so == 1 && si == 1) memcpy(o, x, (size_t)n * sizeof *o);
      else for (j = 0; j < n; j++) o[j * so] = x[j * si];
    } else if (dst->dtype == PBT_FLOAT32) {
      float *o = (float *)pbt_tensor_data(dst) + it.offset[0];
      const double *x = (const double *)pbt_tensor_data(src) + it.offset[1];
      for (j = 0; j < n; j++) o[j * so] = (float)x[j * si];
    } else {
      double *o = (double *)pbt_tensor_data(dst) + it.offset[0];
      const float *x = (const float *)pbt_tensor_data(src) + it.offset[1];
      for (j = 0; j < n; j++) o[j * so] = x[j * si];
    }
  } while (pbt_iter_next(&it));
  return PBT_OK;
bad:
  pbt_format_shape(a, sizeof a, src->ndim, src->shape);
  pbt_format_shape(b, sizeof b, dst->ndim, dst->shape);
  return pbt_fail(err, PBT_ERR_SHAPE, "cannot copy a tensor of shape %s into shape %s",
                  a, b);
}

pbt_status pbt_astype(pbt_tensor *dst, const pbt_tensor *src, pbt_dtype dtype,
                      pbt_error *err) {
  pbt_tensor tmp;
  pbt_status s;
  pbt_tensor_init(&tmp);
  tmp.alloc = dst->alloc;
  s = pbt_tensor_empty(&tmp, dtype, src->ndim, src->shape, err);
  if (!s) s = pbt_copy_(&tmp, src, err);
  if (s) {
    pbt_tensor_release(&tmp);
    return s;
  }
  pbt_tensor_release(dst);
  *dst = tmp;
  return PBT_OK;
}

pbt_status pbt_clone(pbt_tensor *dst, const pbt_tensor *src, pbt_error *err) {
  return pbt_astype(dst, src, src->dtype, err);
}

pbt_status pbt_contiguous(pbt_tensor *dst, const pbt_tensor *src,
                          pbt_error *err) {
  if (pbt_tensor_is_contiguous(src)) {
    pbt_tensor_share(dst, src);
    pbt_contiguous_strides(dst->ndim, dst->shape, dst->stride);
    return PBT_OK;
  }
  return pbt_clone(dst, src, err);
}

void pbt_fill_(pbt_tensor *t, double v) {
  const int64_t *strides[1];
  pbt_iter it;
  strides[0] = t->stride;
  if (!pbt_iter_init(&it, 1, t->ndim, t->shape, strides)) return;
  /* +0.0 is all zero bits in both dtypes: memset (opt:zero_grad(false)
   * zeroes every kept gradient this way each step, and the strided loop
   * below ran at one element per store) */
  const int zero = v == 0 && !signbit(v);
  do {
    int64_t j, st = it.step[0];
    if (st == 1 && zero) {
      memset((char *)pbt_tensor_data(t) + it.offset[0] * (int64_t)pbt_dtype_size(t->dtype), 0,
             (size_t)it.n * pbt_dtype_size(t->dtype));
    } else if (t->dtype == PBT_FLOAT32) {
      float *o = (float *)pbt_tensor_data(t) + it.offset[0], fv = (float)v;
      if (st == 1) for (j = 0; j < it.n; j++) o[j] = fv;
      else for (j = 0; j < it.n; j++) o[j * st] = fv;
    } else {
      double *o = (double *)pbt_tensor_data(t) + it.offset[0];
      if (st == 1) for (j = 0; j < it.n; j++) o[j] = v;
      else for (j = 0; j < it.n; j++) o[j * st] = v;
    }
  } while (pbt_iter_next(&it));
}

/* ---- creation ----------------------------------------------------------- */

pbt_status pbt_arange(pbt_tensor *dst, double start, double stop, double step,
                      pbt_dtype dtype, pbt_error *err) {
  double count;
  int64_t n, i;
  pbt_status s;
  if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
    return pbt_fail(err, PBT_ERR_ARG, "step must be non-zero and bounds finite");
  count = ceil((stop - start) / step);
  if (count < 0) count = 0;
  if (count > 9e15) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  n = (int64_t)count;
  s = pbt_tensor_empty(dst, dtype, 1, &n, err);
  if (s) return s;
  for (i = 0; i < n; i++) pbt_tensor_set(dst, &i, start + (double)i * step);
  return PBT_OK;
}

pbt_status pbt_linspace(pbt_tensor *dst, double start, double stop, int64_t n,
                        pbt_dtype dtype, pbt_error *err) {
  int64_t i;
  pbt_status s;
  if (n < 0) return pbt_fail(err, PBT_ERR_ARG, "negative number of points %lld", (long long)n);
  s = pbt_tensor_empty(dst, dtype, 1, &n, err);
  if (s) return s;
  for (i = 0; i < n; i++) {
    /* symmetric formula, exact at both ends */
    double v = n == 1 ? start
               : (i < n / 2 ? start + (stop - start) * (double)i / (double)(n - 1)
                            : stop - (stop - start) * (double)(n - 1 - i) / (double)(n - 1));
    pbt_tensor_set(dst, &i, v);
  }
  return PBT_OK;
}

pbt_status pbt_eye(pbt_tensor *dst, int64_t n, int64_t m, pbt_dtype dtype,
                   pbt_error *err) {
  int64_t shape[2], i;
  pbt_status s;
  shape[0] = n, shape[1] = m;
  s = pbt_tensor_empty(dst, dtype, 2, shape, err);
  if (s) return s;
  pbt_fill_(dst, 0);
  for (i = 0; i < n && i < m; i++) {
    int64_t idx[2];
    idx[0] = idx[1] = i;
    pbt_tensor_set(dst, idx, 1);
  }
  return PBT_OK;
}

uint64_t pbt_tensor_version(const pbt_tensor *t) {
  return t->storage ? __atomic_load_n(&t->storage->version, __ATOMIC_RELAXED) : 0;
}

void pbt_tensor_bump_version(const pbt_tensor *t) {
  if (t->storage) __atomic_add_fetch(&t->storage->version, 1, __ATOMIC_RELAXED);
}
