/* lpbt_state.c -- what the binding keeps per Lua state: the library's
 * record (lpbt_lib: the storage cache, the collector's pacing, autograd's
 * switches), new tensor userdata, and Lua-owned byte buffers. */
#include <string.h>

#include "lpbt.h"

/* ---- tensors ------------------------------------------------------------ */

pbt_tensor *lpbt_test_tensor(lua_State *L, int arg) {
  lpbt_tensor *u = lpbt_tensor_at(L, arg);
  return u ? &u->t : NULL;
}

int lpbt_not_a_tensor(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TUSERDATA && luaL_testudata(L, arg, LPBT_TENSOR))
    return luaL_argerror(L, arg, "not a pbt.Tensor (a userdata given its metatable)");
  return luaL_typeerror(L, arg, LPBT_TENSOR);
}

pbt_tensor *lpbt_check_tensor(lua_State *L, int arg) {
  pbt_tensor *t = lpbt_test_tensor(L, arg);
  if (!t) lpbt_not_a_tensor(L, arg);
  if (t->storage == NULL) luaL_argerror(L, arg, "tensor has been released");
  return t;
}

/* ---- the storage cache ----------------------------------------------------- */

/* Each Lua state has one pbt_allocator, owned by a pbt.Allocator userdata
 * that the registry holds at the light key &allocator_key (out of reach of
 * Lua code, which could replace what it finds in a metatable).
 * Every tensor userdata carries it as its allocation hint (t->alloc,
 * borrowed): results of ops land in blocks freed by earlier results.  The
 * holder is made when the module opens, before any tensor, so lua_close
 * finalizes every tensor before it; its __gc empties the cache and drops
 * the state's reference (storages still alive elsewhere keep the allocator
 * until they go, and then give their blocks back to the system). */
#define LPBT_ALLOCATOR "pbt.Allocator"
#define LPBT_ALLOCATOR_LIMIT ((size_t)256 << 20)
static const char allocator_key = 'a';


static int allocator_gc(lua_State *L) {
  lpbt_lib *b = (lpbt_lib *)lpbt_checkudata(L, 1, LPBT_ALLOCATOR);
  if (b->a) {
    pbt_allocator_set_limit(b->a, 0);
    pbt_allocator_release(b->a);
    b->a = NULL;
  }
  return 0;
}

/* The least bytes of results between two forced collections. */
#define LPBT_GC_MIN ((size_t)8 << 20)

/* Results of this size and more are "big" (see lpbt_push_tensor). */
#define BIG_RESULT ((size_t)1 << 20)

lpbt_lib *lpbt_lib_of(lua_State *L) {
  lpbt_lib *b = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &allocator_key) == LUA_TUSERDATA)
    b = (lpbt_lib *)lua_touserdata(L, -1);
  lua_pop(L, 1); /* the registry keeps it alive */
  return b;
}

/* The state's allocator (NULL once closed, or when it could not be made). */
static pbt_allocator *state_allocator(lua_State *L) {
  lpbt_lib *b = lpbt_lib_of(L);
  return b ? b->a : NULL;
}

/* The collector is paced as if tensors lived in Lua's heap with a pause of
 * 100%: once the results made since the last forced cycle weigh as much as
 * the storages of the cache that were live at its end (or Lua's own heap,
 * when that is bigger), a whole cycle runs, and the dropped results go back
 * to the cache.  Stepping by each result's size instead ran a full cycle for
 * every big result (a training step of a small MLP spent 10% of its time
 * marking Lua's heap); pacing by the live bytes keeps that cost at one heap
 * traversal per live set allocated, and the garbage near one live set. */
/* The bytes of t that count towards the pacing: none under 4 KiB. */
static size_t paced_bytes(const pbt_tensor *t) {
  size_t bytes = (size_t)pbt_tensor_numel(t) * pbt_dtype_size(t->dtype);
  return bytes >> 10 < 4 ? 0 : bytes;
}

void lpbt_gc_hint(lua_State *L, const pbt_tensor *t) {
  size_t bytes = paced_bytes(t), kb = bytes >> 10, heap;
  lpbt_lib *b;
  pbt_allocator_stats st;
  if (!bytes || !lua_gc(L, LUA_GCISRUNNING)) return; /* or the host stopped it */
  b = lpbt_lib_of(L);
  if (!b || !b->a) {
    lua_gc(L, LUA_GCSTEP, kb > 1u << 30 ? 1 << 30 : (int)kb);
    return;
  }
  b->since += bytes;
  if (bytes >= BIG_RESULT) b->big = 1;
  heap = (size_t)lua_gc(L, LUA_GCCOUNT) << 10;
  /* a whole collection once the results since the last one outweigh what
   * was alive after it, Lua's own heap and LPBT_GC_MIN: a collection costs
   * a walk of the whole heap, and with a small live set (two 64x64
   * matrices multiplied in a loop) one every few results tripled the time
   * of each */
  if (b->since < b->live || b->since < heap || b->since < LPBT_GC_MIN) return;
  b->since = 0;
  /* a whole cycle that starts now: stepping to the end of the cycle under
   * way (LUA_GCSTEP) kept what was made after its mark phase, the results
   * of the last step among them, so the live set it measured grew from
   * cycle to cycle, the cycles came ever later and the cache ran dry
   * between them (a CNN step faulted in 12 MB of fresh pages every other
   * step or so) */
  lua_gc(L, LUA_GCCOLLECT, 0);
  pbt_allocator_get_stats(b->a, &st);
  b->live = st.live_bytes;
}

void lpbt_release_result(lua_State *L, pbt_tensor *t) {
  lpbt_lib *b;
  if (t->storage && pbt_storage_refcount(t->storage) == 1 && (b = lpbt_lib_of(L)) != NULL) {
    size_t bytes = paced_bytes(t);
    b->since = b->since > bytes ? b->since - bytes : 0;
  }
  pbt_tensor_release(t);
}

/* Puts an allocator holder into the registry unless it has one (the module
 * opened again in the same state). */
void lpbt_state_open(lua_State *L) {
  lpbt_lib *b;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &allocator_key) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  b = (lpbt_lib *)lpbt_newudata(L, sizeof *b, 0, LPBT_ALLOCATOR);
  b->a = NULL;
  b->since = b->live = 0;
  b->big = 0;
  b->autograd = b->grad_on = b->no_grad = 0;
  b->walk = 0;
  if (luaL_newmetatable(L, LPBT_ALLOCATOR)) {
    lua_pushcfunction(L, allocator_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  /* without an allocator tensors are plain malloc'd: nothing else fails */
  (void)pbt_allocator_new(&b->a, LPBT_ALLOCATOR_LIMIT, NULL);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &allocator_key);
}

/* core.allocator_stats() -> {live_bytes=, cached_bytes=, cached_blocks=,
 * limit=, hits=, misses=, min_bytes=} of this state's storage cache. */
static int m_allocator_stats(lua_State *L) {
  pbt_allocator *a = state_allocator(L);
  pbt_allocator_stats st;
  memset(&st, 0, sizeof st);
  if (a) pbt_allocator_get_stats(a, &st);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)st.live_bytes);
  lua_setfield(L, -2, "live_bytes");
  lua_pushinteger(L, (lua_Integer)st.cached_bytes);
  lua_setfield(L, -2, "cached_bytes");
  lua_pushinteger(L, (lua_Integer)st.cached_blocks);
  lua_setfield(L, -2, "cached_blocks");
  lua_pushinteger(L, (lua_Integer)st.limit);
  lua_setfield(L, -2, "limit");
  lua_pushinteger(L, (lua_Integer)st.hits);
  lua_setfield(L, -2, "hits");
  lua_pushinteger(L, (lua_Integer)st.misses);
  lua_setfield(L, -2, "misses");
  lua_pushinteger(L, (lua_Integer)PBT_ALLOC_MIN_BYTES);
  lua_setfield(L, -2, "min_bytes");
  return 1;
}

/* core.allocator_limit([bytes]) -> the previous bound of the cache; with
 * bytes, sets it (0 empties the cache and turns it off). */
static int m_allocator_limit(lua_State *L) {
  pbt_allocator *a = state_allocator(L);
  lua_Integer n = 0;
  size_t old = 0;
  if (!lua_isnoneornil(L, 1)) {
    n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "negative size");
  }
  if (a) {
    pbt_allocator_stats st;
    pbt_allocator_get_stats(a, &st);
    old = st.limit;
    if (!lua_isnoneornil(L, 1)) pbt_allocator_set_limit(a, (size_t)n);
  }
  lua_pushinteger(L, (lua_Integer)old);
  return 1;
}

pbt_tensor *lpbt_push_tensor(lua_State *L) {
  lpbt_tensor *u;
  pbt_tensor *t;
  lpbt_lib *b = lpbt_lib_of(L);
  if (b && b->big) {
    /* the big result made last is often dropped already (c = a + b in a
     * loop): a young collection hands its block back before this one is
     * made, so that the next op writes into memory still in the caches
     * (unless the host stopped the collector) */
    b->big = 0;
    if (lua_gc(L, LUA_GCISRUNNING)) lua_gc(L, LUA_GCSTEP, 0);
  }
  u = (lpbt_tensor *)lua_newuserdatauv(L, sizeof(lpbt_tensor), LPBT_NUV);
  t = &u->t;
  u->requires_grad = 0;
  u->nargs = 0;
  u->mark = 0;
  u->transient = LPBT_KEEP;
  u->magic = LPBT_MAGIC;
  t->storage = NULL;
  t->ndim = 0;
  t->offset = 0;
  t->dtype = PBT_FLOAT32;
  t->alloc = b ? b->a : NULL;
  lua_pushvalue(L, LPBT_UPV_TENSOR_META);
  lua_setmetatable(L, -2);
  return t;
}

/* ---- a Lua-owned byte buffer ---------------------------------------------- */

static int buf_free(lua_State *L) {
  pbt_buf *b = (pbt_buf *)lpbt_checkudata(L, 1, LPBT_BUFFER);
  pbt_buf_free(b);
  return 0;
}

pbt_buf *lpbt_push_buf(lua_State *L) {
  pbt_buf *b = (pbt_buf *)lpbt_newudata(L, sizeof *b, 0, LPBT_BUFFER);
  pbt_buf_init(b);
  if (luaL_newmetatable(L, LPBT_BUFFER)) {
    lua_pushcfunction(L, buf_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, buf_free);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  return b;
}

const luaL_Reg lpbt_state_module[] = {{"allocator_stats", m_allocator_stats},
                                      {"allocator_limit", m_allocator_limit},
                                      {NULL, NULL}};
