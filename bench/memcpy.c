/* bench/memcpy.c -- the plain-memcpy reference of the exploit benchmarks
 * (bench/parallel.lua, bench/pbt_overhead.lua), as a Lua module:
 *
 *   local memcpy = require("memcpy")      -- build/bench/memcpy.so (make bench-tools)
 *   memcpy.best(bytes, reps) -> seconds   the fastest of reps memcpy calls
 *
 * between two tensor storages made by the core's own allocation path
 * (pbt_tensor_empty: the same alignment as a member's state) and faulted in
 * before timing. */
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "pbt.h"

/* The fastest of reps copies of bytes, in seconds; -1 when the storages
 * cannot be made. */
static double best_copy(size_t bytes, int reps) {
  pbt_tensor a, b;
  int64_t n = (int64_t)(bytes / sizeof(float));
  struct timespec t0, t1;
  double best = -1;
  volatile unsigned char sink = 0;
  int r;
  pbt_tensor_init(&a);
  pbt_tensor_init(&b);
  if (pbt_tensor_empty(&a, PBT_FLOAT32, 1, &n, NULL) ||
      pbt_tensor_empty(&b, PBT_FLOAT32, 1, &n, NULL)) {
    pbt_tensor_release(&a);
    pbt_tensor_release(&b);
    return -1;
  }
  bytes = (size_t)n * sizeof(float);
  memset(pbt_tensor_data(&a), 1, bytes); /* fault both in */
  memset(pbt_tensor_data(&b), 2, bytes);
  for (r = 0; r < reps; r++) {
    double dt;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memcpy(pbt_tensor_data(&b), pbt_tensor_data(&a), bytes);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (bytes) sink ^= ((unsigned char *)pbt_tensor_data(&b))[(size_t)r % bytes];
    dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (best < 0 || dt < best) best = dt;
  }
  (void)sink;
  pbt_tensor_release(&a);
  pbt_tensor_release(&b);
  return best;
}

static int l_best(lua_State *L) {
  lua_Integer bytes = luaL_checkinteger(L, 1);
  lua_Integer reps = luaL_optinteger(L, 2, 5);
  double t;
  luaL_argcheck(L, bytes >= 0, 1, "bytes must be >= 0");
  luaL_argcheck(L, reps >= 1 && reps <= 1 << 20, 2, "reps must be from 1 to 1048576");
  t = best_copy((size_t)bytes, (int)reps);
  if (t < 0) return luaL_error(L, "memcpy.best: not enough memory");
  lua_pushnumber(L, t);
  return 1;
}

__attribute__((visibility("default"))) int luaopen_memcpy(lua_State *L);

int luaopen_memcpy(lua_State *L) {
  static const luaL_Reg f[] = {{"best", l_best}, {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}
