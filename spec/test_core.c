/* test_core.c -- uses libpbt.a from C, without Lua: proves the core stands
 * alone.  Run by `make test`. */
#include <math.h>
#include <stdio.h>

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

int main(void) {
  test_views();
  if (failures) {
    fprintf(stderr, "test_core: %d checks failed\n", failures);
    return 1;
  }
  printf("test_core: all checks passed\n");
  return 0;
}
