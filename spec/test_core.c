/* test_core.c -- uses libpbt.a from C, without Lua: proves the core stands
 * alone.  Run by `make test`. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pbt.h"

static int failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                            \
    }                                                                        \
  } while (0)

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

int main(void) {
  test_views();
  test_matmul();
  if (failures) {
    fprintf(stderr, "test_core: %d checks failed\n", failures);
    return 1;
  }
  printf("test_core: all checks passed\n");
  return 0;
}
