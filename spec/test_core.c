/* test_core.c -- uses libpbt.a from C, without Lua: proves the core stands
 * alone.  Run by `make test`. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pbt.h"

#include "test_harness.h"

static void test_views(void) {
  pbt_tensor a, b, c;
  pbt_error err;
  int64_t shape[2] = {3, 4}, idx[2];
  pbt_tensor_init(&a);
  pbt_tensor_init(&b);
  pbt_tensor_init(&c);
  CHECK(pbt_arange(&a, 0, 12, 1, PBT_FLOAT64, &err) == PBT_OK);
  CHECK(pbt_view(&c, &a, 2, shape, &err) == PBT_OK);
  CHECK(pbt_transpose(&b, &c, 0, 1, &err) == PBT_OK);
  CHECK(pbt_storage_refcount(a.storage) == 3);
  pbt_tensor_release(&c);
  idx[0] = 3, idx[1] = 2; /* b[3][2] = a[2][3] = 11 */
  CHECK(pbt_tensor_get(&b, idx) == 11.0);
  CHECK(!pbt_tensor_is_contiguous(&b));
  CHECK(pbt_view(&a, &b, 1, (int64_t[]){12}, &err) == PBT_ERR_SHAPE);
  pbt_tensor_release(&a);
  pbt_tensor_release(&b);
  pbt_tensor_release(&b); /* twice is safe */
}

/* Checks every element of a 2-d tensor against `want` (row-major). */
static int equals_2d(const pbt_tensor *t, int64_t rows, int64_t cols,
                     const double *want) {
  int64_t idx[2];
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) return 0;
  for (idx[0] = 0; idx[0] < rows; idx[0]++)
    for (idx[1] = 0; idx[1] < cols; idx[1]++)
      if (pbt_tensor_get(t, idx) != want[idx[0] * cols + idx[1]]) return 0;
  return 1;
}

static void test_matmul(void) {
  /* A = [[0,1,2],[3,4,5]], B = [[0,1],[2,3],[4,5]], by hand:
   * A B = [[10,13],[28,40]];  A^T A = [[9,12,15],[12,17,22],[15,22,29]] */
  static const double ab[] = {10, 13, 28, 40};
  static const double ata[] = {9, 12, 15, 12, 17, 22, 15, 22, 29};
  static const double addmm[] = {21, 27, 57, 81}; /* 2 * AB + 1 */
  pbt_tensor r, a, b, at, c, idx, sel;
  pbt_error err;
  int dt;
  for (dt = 0; dt < 2; dt++) {
    pbt_dtype dtype = dt ? PBT_FLOAT64 : PBT_FLOAT32;
    pbt_tensor_init(&r), pbt_tensor_init(&a), pbt_tensor_init(&b);
    pbt_tensor_init(&at), pbt_tensor_init(&c);
    CHECK(pbt_arange(&r, 0, 6, 1, dtype, &err) == PBT_OK);
    CHECK(pbt_view(&a, &r, 2, (int64_t[]){2, 3}, &err) == PBT_OK);
    CHECK(pbt_view(&b, &r, 2, (int64_t[]){3, 2}, &err) == PBT_OK);
    CHECK(pbt_transpose(&at, &a, 0, 1, &err) == PBT_OK);
    CHECK(pbt_matmul(&c, &a, &b, &err) == PBT_OK); /* c released: allocated */
    CHECK(c.dtype == dtype && equals_2d(&c, 2, 2, ab));
    pbt_fill_(&c, 1);
    CHECK(pbt_addmm(&c, &a, &b, 2, 1, &err) == PBT_OK);
    CHECK(equals_2d(&c, 2, 2, addmm));
    CHECK(pbt_matmul(&c, &a, &b, &err) == PBT_OK); /* existing: written */
    CHECK(equals_2d(&c, 2, 2, ab));
    CHECK(pbt_matmul(&c, &at, &a, &err) == PBT_OK); /* other shape: resized */
    CHECK(equals_2d(&c, 3, 3, ata));
    CHECK(pbt_matmul(&c, &a, &a, &err) == PBT_ERR_SHAPE);
    CHECK(strcmp(err.msg, "shapes [2,3] and [2,3] cannot be multiplied") == 0);
    CHECK(equals_2d(&c, 3, 3, ata)); /* untouched on failure */
    /* rows 2 and 1 of B, with a 1-based index tensor */
    pbt_tensor_init(&idx), pbt_tensor_init(&sel);
    CHECK(pbt_arange(&idx, 2, 0, -1, PBT_FLOAT32, &err) == PBT_OK);
    CHECK(pbt_index_select(&sel, &b, 0, &idx, 1, &err) == PBT_OK);
    CHECK(equals_2d(&sel, 2, 2, (const double[]){2, 3, 0, 1}));
    pbt_tensor_release(&r), pbt_tensor_release(&a), pbt_tensor_release(&b);
    pbt_tensor_release(&at), pbt_tensor_release(&c);
    pbt_tensor_release(&idx), pbt_tensor_release(&sel);
  }
  pbt_tensor_init(&a), pbt_tensor_init(&b), pbt_tensor_init(&c);
  CHECK(pbt_arange(&a, 0, 3, 1, PBT_FLOAT32, &err) == PBT_OK);
  CHECK(pbt_arange(&b, 0, 3, 1, PBT_FLOAT64, &err) == PBT_OK);
  CHECK(pbt_matmul(&c, &a, &b, &err) == PBT_ERR_DTYPE);
  CHECK(c.storage == NULL);
  CHECK(strcmp(err.msg, "dtypes float32 and float64 do not match") == 0);
  pbt_tensor_release(&a), pbt_tensor_release(&b);
}

static pbt_allocator_stats stats_of(pbt_allocator *a) {
  pbt_allocator_stats st;
  pbt_allocator_get_stats(a, &st);
  return st;
}

static void *release_in_thread(void *arg) {
  pbt_tensor_release((pbt_tensor *)arg);
  return NULL;
}

/* Allocates and drops tensors from one allocator, from several threads. */
static void *churn(void *arg) {
  pbt_allocator *a = (pbt_allocator *)arg;
  pbt_tensor t;
  pbt_error err;
  int64_t n;
  int i, bad = 0;
  pbt_tensor_init(&t);
  t.alloc = a;
  for (i = 0; i < 2000; i++) {
    n = 20000 + (i % 7) * 5000;
    if (pbt_tensor_empty(&t, PBT_FLOAT32, 1, &n, &err) != PBT_OK) bad++;
    pbt_fill_(&t, i);
    if (pbt_tensor_get_flat(&t, n - 1) != (float)i) bad++;
    pbt_tensor_release(&t);
  }
  return bad ? arg : NULL;
}

static void test_allocator(void) {
  pbt_allocator *a;
  pbt_allocator_stats st;
  pbt_tensor x, y, v;
  pbt_error err;
  int64_t n = 100000, small = 1000, sizes[2] = {16384, 16385};
  void *data;
  pthread_t th[2];
  void *res;
  uint64_t n0;
  int i;

  CHECK(pbt_allocator_new(&a, (size_t)1 << 20, &err) == PBT_OK);
  pbt_tensor_init(&x), pbt_tensor_init(&y), pbt_tensor_init(&v);
  x.alloc = y.alloc = a;

  /* a block goes back to the cache and serves the next request of its size
   * class, old contents and all; small tensors are malloc'd */
  CHECK(pbt_tensor_empty(&x, PBT_FLOAT32, 1, &n, &err) == PBT_OK);
  CHECK(pbt_storage_allocator(x.storage) == a);
  pbt_fill_(&x, 7);
  data = pbt_tensor_data(&x);
  pbt_tensor_release(&x);
  CHECK(x.alloc == a); /* release keeps the hint */
  st = stats_of(a);
  CHECK(st.cached_blocks == 1 && st.hits == 0 && st.misses == 1);
  CHECK(pbt_tensor_empty(&x, PBT_FLOAT32, 1, (int64_t[]){n - 100}, &err) == PBT_OK);
  CHECK(pbt_tensor_data(&x) == data);
  CHECK(pbt_tensor_get_flat(&x, 0) == 7.0); /* not cleared */
  st = stats_of(a);
  CHECK(st.cached_blocks == 0 && st.cached_bytes == 0 && st.hits == 1);
  CHECK(pbt_tensor_empty(&y, PBT_FLOAT32, 1, &small, &err) == PBT_OK);
  CHECK(pbt_storage_allocator(y.storage) == NULL);
  CHECK(pbt_tensor_empty_in(&y, NULL, PBT_FLOAT32, 1, &n, &err) == PBT_OK);
  CHECK(pbt_storage_allocator(y.storage) == NULL && y.alloc == a);
  pbt_tensor_release(&y);
  CHECK(stats_of(a).misses == 1);

  /* size classes: 2^16 bytes exactly, and one float more (2^16 * 9/8) */
  for (i = 0; i < 2; i++) {
    CHECK(pbt_tensor_empty(&y, PBT_FLOAT32, 1, &sizes[i], &err) == PBT_OK);
    pbt_tensor_release(&y);
  }
  st = stats_of(a);
  CHECK(st.cached_blocks == 2 && st.cached_bytes == 65536 + 73728);
  pbt_allocator_set_limit(a, 0);
  CHECK(stats_of(a).cached_bytes == 0);

  /* the bound: of four 400 KB blocks, a 1 MiB cache keeps the newest two */
  pbt_allocator_set_limit(a, (size_t)1 << 20);
  {
    pbt_tensor ts[4];
    for (i = 0; i < 4; i++) {
      pbt_tensor_init(&ts[i]);
      ts[i].alloc = a;
      CHECK(pbt_tensor_empty(&ts[i], PBT_FLOAT32, 1, &n, &err) == PBT_OK);
    }
    for (i = 0; i < 4; i++) pbt_tensor_release(&ts[i]);
  }
  st = stats_of(a);
  CHECK(st.cached_blocks == 2 && st.cached_bytes <= ((size_t)1 << 20));

  /* views keep a storage out of the cache; share keeps dst's hint */
  pbt_tensor_init(&v);
  CHECK(pbt_narrow(&v, &x, 0, 10, 5, &err) == PBT_OK);
  CHECK(v.alloc == NULL && pbt_storage_refcount(x.storage) == 2);
  pbt_fill_(&x, 3);
  pbt_tensor_release(&x);
  CHECK(stats_of(a).cached_blocks == 2);
  CHECK(pbt_tensor_get_flat(&v, 4) == 3.0);

  /* a storage released on another thread goes back to the cache */
  CHECK(pthread_create(&th[0], NULL, release_in_thread, &v) == 0);
  CHECK(pthread_join(th[0], NULL) == 0);
  CHECK(v.storage == NULL && stats_of(a).cached_blocks == 2);

  /* two threads sharing one allocator: every request counted once */
  st = stats_of(a);
  n0 = st.hits + st.misses;
  for (i = 0; i < 2; i++)
    CHECK(pthread_create(&th[i], NULL, churn, a) == 0);
  for (i = 0; i < 2; i++) {
    CHECK(pthread_join(th[i], &res) == 0);
    CHECK(res == NULL);
  }
  st = stats_of(a);
  CHECK(st.cached_bytes <= ((size_t)1 << 20) && st.hits > 0);
  CHECK(st.hits + st.misses == n0 + 4000);

  /* tensors outliving their allocator's owner (a Lua state closed while
   * another thread still holds its tensors): the owner empties the cache
   * and lets go; the allocator lives until the last storage is released,
   * whose block then goes back to the system */
  CHECK(pbt_tensor_empty(&x, PBT_FLOAT64, 1, &n, &err) == PBT_OK);
  CHECK(pbt_view(&v, &x, 2, (int64_t[]){1000, 100}, &err) == PBT_OK);
  pbt_tensor_release(&x);
  pbt_allocator_set_limit(a, 0);
  pbt_allocator_release(a);
  x.alloc = y.alloc = NULL; /* the hints were borrowed from the owner */
  pbt_fill_(&v, 2);
  CHECK(pbt_tensor_get(&v, (int64_t[]){999, 99}) == 2.0);
  pbt_tensor_release(&v); /* frees the block and the allocator */

  /* the same without emptying: the last storage frees the cache */
  CHECK(pbt_allocator_new(&a, (size_t)1 << 20, &err) == PBT_OK);
  x.alloc = a;
  CHECK(pbt_tensor_empty(&x, PBT_FLOAT32, 1, &n, &err) == PBT_OK);
  CHECK(pbt_tensor_empty(&y, PBT_FLOAT32, 1, &n, &err) == PBT_OK); /* malloc */
  pbt_tensor_share(&y, &x);
  CHECK(y.alloc == NULL);
  pbt_allocator_release(a);
  pbt_tensor_release(&x);
  CHECK(pthread_create(&th[0], NULL, release_in_thread, &y) == 0);
  CHECK(pthread_join(th[0], NULL) == 0);
  pbt_allocator_release(NULL); /* safe */
}

/* Storages of 4 MiB and more: their data is 64-byte aligned and does not
 * start at one offset of a 2 MiB page (the stagger).  Of 33 made in a row
 * by one allocator, no two within 32 of each other share their offset mod
 * 2 MiB, nor their L2 set (bits 6-16 of the address); a block from the
 * cache keeps its place; every byte is theirs.  Made without an allocator,
 * they are aligned and whole as well. */
static void test_big_storages(void) {
  enum { K = 33 };
  pbt_allocator *a;
  pbt_tensor t[K], u;
  pbt_error err;
  int64_t n = (4 << 20) / 4 + 1000; /* floats: just over 4 MiB */
  uintptr_t off[K];
  void *data;
  int i, j;
  CHECK(pbt_allocator_new(&a, (size_t)1 << 30, &err) == PBT_OK);
  for (i = 0; i < K; i++) {
    pbt_tensor_init(&t[i]);
    t[i].alloc = a;
    CHECK(pbt_tensor_empty(&t[i], PBT_FLOAT32, 1, &n, &err) == PBT_OK);
    off[i] = (uintptr_t)pbt_tensor_data(&t[i]) & (((uintptr_t)2 << 20) - 1);
    CHECK(off[i] % 64 == 0);
    pbt_fill_(&t[i], (double)i);
    CHECK(pbt_tensor_get_flat(&t[i], n - 1) == (double)i);
  }
  for (i = 0; i < K; i++)
    for (j = i + 1; j < K && j - i < 32; j++) {
      CHECK(off[i] != off[j]);
      CHECK((off[i] >> 6 & 2047) != (off[j] >> 6 & 2047));
    }
  for (i = 0; i < K; i++) CHECK(pbt_tensor_get_flat(&t[i], 0) == (double)i); /* no overlap */
  data = pbt_tensor_data(&t[5]);
  pbt_tensor_release(&t[5]);
  pbt_tensor_init(&u);
  u.alloc = a;
  CHECK(pbt_tensor_empty(&u, PBT_FLOAT32, 1, &n, &err) == PBT_OK);
  CHECK(pbt_tensor_data(&u) == data && pbt_tensor_get_flat(&u, n - 1) == 5.0);
  pbt_tensor_release(&u);
  for (i = 0; i < K; i++) pbt_tensor_release(&t[i]);
  pbt_allocator_set_limit(a, 0);
  pbt_allocator_release(a);
  for (i = 0; i < 3; i++) { /* no allocator */
    pbt_tensor_init(&t[i]);
    CHECK(pbt_tensor_empty(&t[i], PBT_FLOAT64, 1, &n, &err) == PBT_OK);
    CHECK((uintptr_t)pbt_tensor_data(&t[i]) % 64 == 0);
    pbt_fill_(&t[i], 1.5);
    CHECK(pbt_tensor_get_flat(&t[i], n - 1) == 1.5);
  }
  for (i = 0; i < 3; i++) pbt_tensor_release(&t[i]);
}

/* pbt_linear_backward_acc: gradients added into kept ones, checked against
 * sums by hand; an output that does not fit is refused before anything is
 * written. */
static void test_linear_acc(void) {
  pbt_tensor x, w, g, gw, gb, bad, gx;
  pbt_error err;
  int64_t i, j, sx[2] = {2, 3}, sw[2] = {2, 3}, sb = 2, one = 1;
  pbt_tensor_init(&x), pbt_tensor_init(&w), pbt_tensor_init(&g);
  pbt_tensor_init(&gw), pbt_tensor_init(&gb), pbt_tensor_init(&bad), pbt_tensor_init(&gx);
  CHECK(pbt_tensor_empty(&x, PBT_FLOAT64, 2, sx, &err) == PBT_OK);
  CHECK(pbt_tensor_empty(&w, PBT_FLOAT64, 2, sw, &err) == PBT_OK);
  CHECK(pbt_tensor_empty(&g, PBT_FLOAT64, 2, (int64_t[]){2, 2}, &err) == PBT_OK);
  CHECK(pbt_tensor_empty(&gw, PBT_FLOAT64, 2, sw, &err) == PBT_OK);
  CHECK(pbt_tensor_empty(&gb, PBT_FLOAT64, 1, &sb, &err) == PBT_OK);
  for (i = 0; i < 6; i++) ((double *)pbt_tensor_data(&x))[i] = (double)(i + 1); /* [[1,2,3],[4,5,6]] */
  pbt_fill_(&w, 0.5);
  pbt_fill_(&g, 1); /* the gradient of sum(y) */
  pbt_fill_(&gw, 10);
  pbt_fill_(&gb, 1);
  CHECK(pbt_linear_backward_acc(NULL, &gw, &gb, PBT_ACC_W | PBT_ACC_B, &g, &x, &w, &err) == PBT_OK);
  for (i = 0; i < 2; i++)
    for (j = 0; j < 3; j++) /* 10 + x[0][j] + x[1][j] */
      CHECK(pbt_tensor_get(&gw, (int64_t[]){i, j}) == 10.0 + (double)(j + 1) + (double)(j + 4));
  CHECK(pbt_tensor_get_flat(&gb, 0) == 3.0 && pbt_tensor_get_flat(&gb, 1) == 3.0);

  /* refused, nothing written */
  CHECK(pbt_tensor_empty(&bad, PBT_FLOAT64, 1, &one, &err) == PBT_OK);
  CHECK(pbt_expand(&gx, &bad, 1, &sb, &err) == PBT_OK); /* an expanded bias gradient */
  CHECK(pbt_linear_backward_acc(NULL, &gw, &gx, PBT_ACC_W | PBT_ACC_B, &g, &x, &w, &err) != PBT_OK);
  CHECK(strcmp(err.msg, "the bias's gradient must be contiguous") == 0);
  CHECK(pbt_tensor_get_flat(&gw, 0) == 15.0);
  CHECK(pbt_linear_backward_acc(NULL, &gw, &gb, PBT_ACC_W | PBT_ACC_B, &g, &x, &gw, &err) != PBT_OK);
  CHECK(strcmp(err.msg, "the weight's gradient shares storage with an input") == 0);
  CHECK(pbt_linear_backward_acc(NULL, &gw, &bad, PBT_ACC_W | PBT_ACC_B, &g, &x, &w, &err) != PBT_OK);
  CHECK(strcmp(err.msg, "the bias's gradient has shape [1], expected [2]") == 0);
  CHECK(pbt_linear_backward_acc(NULL, &gb, NULL, PBT_ACC_W, &g, &x, &w, &err) != PBT_OK);
  CHECK(strcmp(err.msg, "the weight's gradient has shape [2], expected [2,3]") == 0);
  CHECK(pbt_tensor_get_flat(&gw, 0) == 15.0 && pbt_tensor_get_flat(&gb, 0) == 3.0);
  pbt_tensor_release(&x), pbt_tensor_release(&w), pbt_tensor_release(&g);
  pbt_tensor_release(&gw), pbt_tensor_release(&gb), pbt_tensor_release(&bad);
  pbt_tensor_release(&gx);
}

int main(void) {
  test_views();
  test_matmul();
  test_allocator();
  test_big_storages();
  test_linear_acc();
  return test_harness_report("test_core");
}
