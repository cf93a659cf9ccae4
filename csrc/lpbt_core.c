/* lpbt_core.c -- luaopen_pbt_core and the helpers shared by the binding. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include <time.h>

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lpbt.h"
#include "pbt_io.h"

/* ---- tensors ------------------------------------------------------------ */

pbt_tensor *lpbt_test_tensor(lua_State *L, int arg) {
  return (pbt_tensor *)luaL_testudata(L, arg, LPBT_TENSOR);
}

pbt_tensor *lpbt_check_tensor(lua_State *L, int arg) {
  pbt_tensor *t = (pbt_tensor *)luaL_checkudata(L, arg, LPBT_TENSOR);
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

typedef struct allocator_box {
  pbt_allocator *a;
  size_t since; /* bytes of results made since the last forced GC cycle */
  size_t live;  /* live bytes of the allocator at the end of that cycle */
  int big;      /* the last result was big: collect young objects first */
  /* autograd (see the section below) */
  int autograd;     /* core.autograd() was called: differentiable ops record */
  int grad_on;      /* grad mode (set_grad_enabled) */
  int no_grad;      /* threads inside pbt.no_grad (entries of the no_grad table) */
  uint64_t walk;    /* graph walks so far (never wraps) */
} allocator_box;

static int allocator_gc(lua_State *L) {
  allocator_box *b = (allocator_box *)luaL_checkudata(L, 1, LPBT_ALLOCATOR);
  if (b->a) {
    pbt_allocator_set_limit(b->a, 0);
    pbt_allocator_release(b->a);
    b->a = NULL;
  }
  return 0;
}

/* The state's allocator holder (NULL when there is none). */
/* Results of this size and more are "big" (see lpbt_push_tensor). */
#define BIG_RESULT ((size_t)1 << 20)

static allocator_box *state_box(lua_State *L) {
  allocator_box *b = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &allocator_key) == LUA_TUSERDATA)
    b = (allocator_box *)lua_touserdata(L, -1);
  lua_pop(L, 1); /* the registry keeps it alive */
  return b;
}

/* The state's allocator (NULL once closed, or when it could not be made). */
static pbt_allocator *state_allocator(lua_State *L) {
  allocator_box *b = state_box(L);
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
void lpbt_gc_hint(lua_State *L, const pbt_tensor *t) {
  size_t bytes = (size_t)pbt_tensor_numel(t) * pbt_dtype_size(t->dtype);
  size_t kb = bytes >> 10, heap;
  allocator_box *b;
  pbt_allocator_stats st;
  if (kb < 4 || !lua_gc(L, LUA_GCISRUNNING)) return; /* or the host stopped it */
  b = state_box(L);
  if (!b || !b->a) {
    lua_gc(L, LUA_GCSTEP, kb > 1u << 30 ? 1 << 30 : (int)kb);
    return;
  }
  b->since += bytes;
  if (bytes >= BIG_RESULT) b->big = 1;
  heap = (size_t)lua_gc(L, LUA_GCCOUNT) << 10;
  /* a whole cycle once the results since the last one outweigh what was
   * alive after it (and Lua's own heap) */
  if (b->since < b->live || b->since < heap) return;
  b->since = 0;
  lua_gc(L, LUA_GCSTEP, 1 << 30); /* to the end of a cycle */
  pbt_allocator_get_stats(b->a, &st);
  b->live = st.live_bytes;
}

/* Puts an allocator holder into the registry unless it has one (the module
 * opened again in the same state). */
static void allocator_open(lua_State *L) {
  allocator_box *b;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &allocator_key) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  b = (allocator_box *)lua_newuserdatauv(L, sizeof *b, 0);
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
  allocator_box *b = state_box(L);
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
  pbt_buf *b = (pbt_buf *)luaL_checkudata(L, 1, LPBT_BUFFER);
  pbt_buf_free(b);
  return 0;
}

pbt_buf *lpbt_push_buf(lua_State *L) {
  pbt_buf *b = (pbt_buf *)lua_newuserdatauv(L, sizeof *b, 0);
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

/* ---- autograd ------------------------------------------------------------ */

/* The graph is recorded here, in C, without a table per op: a recorded
 * op's first result keeps the op's name and arguments in its user values
 * (see lpbt.h), and the node table that pbt.autograd's rules read is made
 * from them on first use (t.grad_fn, core.graph in backward):
 *   node[1..n] = the op's arguments (tensors, numbers, tables, nil),
 *   node.n = n, node.args = node, node.op = "name", node.out = result 1,
 *   node.outs = {results} (made at once for ops of several results; for
 *   the others, the node metatable given to core.autograd makes it).
 * Grad mode: set_grad_enabled sets one flag per Lua state.  pbt.no_grad
 * turns recording off for the dynamic extent of its function, along the
 * chain of coroutines: core.no_grad_enter/exit count, per thread, the calls
 * running in it (a weak-keyed registry table, thread -> count), and an op
 * is not recorded while such a thread is running or has resumed the running
 * one (its status is "normal": every normal thread is in the running chain).
 * A thread suspended in a yield inside pbt.no_grad, or dropped there, turns
 * nothing off; what fn sees of its thread (coroutine.running) is the
 * caller's. */
static const char node_meta_key = 'n';
static const char no_grad_key = 'g';

/* Whether a thread inside pbt.no_grad is running or in the running chain. */
static int in_no_grad(lua_State *L, allocator_box *b) {
  int found = 0, any = 0;
  luaL_checkstack(L, 4, "autograd");
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &no_grad_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (!found && lua_next(L, -2)) {
    lua_State *t = lua_tothread(L, -2);
    lua_Debug ar;
    any = 1;
    if (t == L || (t && lua_status(t) == LUA_OK && lua_getstack(t, 0, &ar))) found = 1;
    lua_pop(L, 1);
  }
  if (found) lua_pop(L, 1); /* the key lua_next left */
  lua_pop(L, 1);
  if (!any) b->no_grad = 0; /* the threads that were left inside are gone */
  return found;
}

static int grad_enabled(lua_State *L, allocator_box *b) {
  if (!b || !b->autograd || !b->grad_on) return 0;
  return b->no_grad == 0 || !in_no_grad(L, b);
}

int lpbt_grad_enabled(lua_State *L) { return grad_enabled(L, state_box(L)); }

/* core.no_grad_enter() / core.no_grad_exit(): around pbt.no_grad's call of
 * its function, in the same thread. */
static int no_grad_step(lua_State *L, int delta) {
  allocator_box *b = state_box(L);
  lua_Integer n;
  if (!b) return 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &no_grad_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &no_grad_key);
  }
  lua_pushthread(L);
  lua_pushvalue(L, -1);
  lua_rawget(L, -3);
  n = lua_tointeger(L, -1) + delta;
  lua_pop(L, 1);
  if (n < 0) return luaL_error(L, "no_grad: exit without an enter in this thread");
  if (n == 0) lua_pushnil(L);
  else lua_pushinteger(L, n);
  lua_rawset(L, -3);
  if (n == 1 && delta > 0) b->no_grad++;
  if (n == 0 && b->no_grad > 0) b->no_grad--;
  return 0;
}

static int m_no_grad_enter(lua_State *L) { return no_grad_step(L, 1); }
static int m_no_grad_exit(lua_State *L) { return no_grad_step(L, -1); }

/* Pushes the node metatable (raises when pbt.autograd has not installed it). */
static void push_node_meta(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &node_meta_key) != LUA_TTABLE)
    luaL_error(L, "autograd: pbt.autograd is not loaded (require \"pbt\")");
}

/* Pushes a node table for an op (its nargs arguments from stack slot args,
 * its nres results from slot res). */
static void push_new_node(lua_State *L, const char *op, int args, int nargs, int res,
                          int nres, const uint64_t *versions) {
  int node, i;
  luaL_checkstack(L, 4, "autograd");
  push_node_meta(L);
  lua_createtable(L, nargs, nres > 1 ? 5 : 4);
  node = lua_gettop(L);
  for (i = 0; i < nargs; i++) {
    lua_pushvalue(L, args + i);
    lua_rawseti(L, node, i + 1);
  }
  lua_pushstring(L, op);
  lua_setfield(L, node, "op");
  lua_pushinteger(L, nargs);
  lua_setfield(L, node, "n");
  lua_pushvalue(L, node);
  lua_setfield(L, node, "args");
  lua_pushvalue(L, res);
  lua_setfield(L, node, "out");
  if (nres > 1) {
    lua_createtable(L, nres, 0);
    for (i = 0; i < nres; i++) {
      lua_pushvalue(L, res + i);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, node, "outs");
  }
  /* the versions of the result ([0]) and of the tensor arguments when the
   * op was recorded (given, or now) */
  lua_createtable(L, nargs, 1);
  for (i = 0; i <= nargs; i++) {
    const pbt_tensor *a = lpbt_test_tensor(L, i == 0 ? res : args + i - 1);
    if (!a) continue;
    lua_pushinteger(L, (lua_Integer)(versions ? versions[i] : pbt_tensor_version(a)));
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, node, "versions");
  lua_pushvalue(L, node - 1);
  lua_setmetatable(L, node);
  lua_remove(L, node - 1);
}

/* Records an op on its first result (at res): the common case (one result,
 * a few arguments) in user values only, the others as a node table.  A
 * tensor recorded again (autograd.record on the same result) loses its
 * earlier node and arguments. */
static void record_at(lua_State *L, const char *op, int args, int nargs, int res,
                      int nres) {
  lpbt_tensor *u = (lpbt_tensor *)lua_touserdata(L, res);
  int i;
  if (u->requires_grad) { /* fresh results have nothing to clear */
    lua_pushnil(L);
    lua_setiuservalue(L, res, LPBT_UV_GRAD_FN);
    for (i = 0; i < LPBT_NODE_ARGS; i++) {
      lua_pushnil(L);
      lua_setiuservalue(L, res, LPBT_UV_ARG + i);
    }
    u->nargs = 0;
  }
  if (nres == 1 && nargs <= LPBT_NODE_ARGS) {
    for (i = 0; i < nargs; i++) {
      const pbt_tensor *a = lpbt_test_tensor(L, args + i);
      lua_pushvalue(L, args + i);
      lua_setiuservalue(L, res, LPBT_UV_ARG + i);
      u->saved[i + 1] = a ? pbt_tensor_version(a) : 0;
    }
    u->saved[0] = pbt_tensor_version(&u->t);
    u->nargs = nargs;
  } else {
    push_new_node(L, op, args, nargs, res, nres, NULL);
    lua_setiuservalue(L, res, LPBT_UV_GRAD_FN);
  }
  lua_pushstring(L, op);
  lua_setiuservalue(L, res, LPBT_UV_OP);
  u->requires_grad = 1;
}

void lpbt_record(lua_State *L, const char *op, int nargs, int nres) {
  if (grad_enabled(L, state_box(L)))
    record_at(L, op, 1, nargs, lua_gettop(L) - nres + 1, nres);
}

void lpbt_push_node(lua_State *L, int idx) {
  lpbt_tensor *u = (lpbt_tensor *)lua_touserdata(L, idx);
  int i, first;
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, LPBT_UV_GRAD_FN) != LUA_TNIL) return;
  if (lua_getiuservalue(L, idx, LPBT_UV_OP) == LUA_TNIL) {
    lua_remove(L, -2);
    return; /* a leaf */
  }
  luaL_checkstack(L, u->nargs + 6, "autograd");
  first = lua_gettop(L) + 1;
  for (i = 0; i < u->nargs; i++) lua_getiuservalue(L, idx, LPBT_UV_ARG + i);
  push_new_node(L, lua_tostring(L, first - 1), first, u->nargs, idx, 1, u->saved);
  lua_replace(L, first - 2);
  lua_settop(L, first - 2);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, LPBT_UV_GRAD_FN);
  for (i = 0; i < u->nargs; i++) { /* the node holds them now */
    lua_pushnil(L);
    lua_setiuservalue(L, idx, LPBT_UV_ARG + i);
  }
  u->nargs = 0;
}

void lpbt_check_inplace(lua_State *L, const pbt_tensor *t, const char *fname) {
  pbt_error err;
  if (pbt_check_writable(t, &err) != PBT_OK) lpbt_raise(L, fname, &err);
  if (LPBT_REQUIRES_GRAD(t) && lpbt_grad_enabled(L))
    luaL_error(L, "%s: a tensor that requires grad cannot be modified in place "
                  "(inside pbt.no_grad, or on t:detach(), it can)", fname);
}

/* core.autograd(node_metatable) installs the node metatable and turns
 * recording on, once (pbt.autograd calls it when it is loaded: without it,
 * nothing is recorded). */
static int m_autograd(lua_State *L) {
  allocator_box *b = state_box(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!b) return luaL_error(L, "autograd: the module's state is gone");
  if (b->autograd) return 0;
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &node_meta_key);
  b->autograd = b->grad_on = 1;
  return 0;
}

/* core.set_grad_enabled(on) -> the flag's previous value (pbt.no_grad
 * turns recording off while its function runs whatever the flag says) */
static int m_set_grad_enabled(lua_State *L) {
  allocator_box *b = state_box(L);
  luaL_checkany(L, 1);
  lua_pushboolean(L, b && b->autograd && b->grad_on);
  if (b) b->grad_on = lua_toboolean(L, 1);
  return 1;
}

static int m_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, lpbt_grad_enabled(L));
  return 1;
}

/* core.check_versions(node): raises when a tensor the node was recorded with
 * (its result, or an argument) was changed in place since: backward would
 * compute its gradient from values the forward pass did not use. */
static int m_check_versions(lua_State *L) {
  lua_Integer n, i;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_getfield(L, 1, "versions") != LUA_TTABLE) return 0;
  lua_getfield(L, 1, "n");
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  for (i = 0; i <= n; i++) {
    const pbt_tensor *t;
    lua_Integer saved;
    if (lua_rawgeti(L, 2, i) != LUA_TNUMBER) {
      lua_pop(L, 1);
      continue;
    }
    saved = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (i == 0) lua_getfield(L, 1, "out");
    else lua_rawgeti(L, 1, i);
    t = lpbt_test_tensor(L, -1);
    if (t && t->storage && (lua_Integer)pbt_tensor_version(t) != saved) {
      lua_getfield(L, 1, "op");
      /* (lua_pushfstring + lua_error: no place in pbt's code before it) */
      if (i == 0) {
        lua_pushfstring(L, "backward: the result of '%s' was changed in place after it was computed "
                             "(its version is %d, %d when recorded): its gradient would be wrong; "
                             "change a copy (t:clone()) instead",
                        lua_tostring(L, -1), (int)pbt_tensor_version(t), (int)saved);
        return lua_error(L);
      }
      lua_pushfstring(L, "backward: argument %d of '%s' was changed in place after '%s' used it "
                           "(its version is %d, %d when recorded): its gradient would be wrong; change "
                           "it after backward, or change a copy (t:clone())",
                      (int)i, lua_tostring(L, -1), lua_tostring(L, -1), (int)pbt_tensor_version(t),
                      (int)saved);
      return lua_error(L);
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* core.record(op, nres, results..., args...): the node of an op written in
 * Lua (pbt.autograd.record checks the mode and the arguments first). */
static int m_record(lua_State *L) {
  const char *op = luaL_checkstring(L, 1);
  lua_Integer nres = luaL_checkinteger(L, 2);
  int n = lua_gettop(L) - 2, i;
  luaL_argcheck(L, nres >= 1 && nres <= n, 2, "number of results out of range");
  for (i = 3; i < 3 + (int)nres; i++) lpbt_check_tensor(L, i);
  if (!grad_enabled(L, state_box(L))) return 0;
  record_at(L, op, 3 + (int)nres, n - (int)nres, 3, (int)nres);
  return 0;
}

/* The tensor at idx, or NULL (no error). */
static lpbt_tensor *test_tensor(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  int same;
  if (!p || !lua_getmetatable(L, idx)) return NULL;
  same = lua_rawequal(L, -1, LPBT_UPV_TENSOR_META);
  lua_pop(L, 1);
  return same ? (lpbt_tensor *)p : NULL;
}

/* core.needs_grad(x) -> true for a tensor that requires grad (anything
 * else: false), without the field lookup of x.requires_grad. */
static int m_needs_grad(lua_State *L) {
  lpbt_tensor *u = test_tensor(L, 1);
  lua_pushboolean(L, u && u->requires_grad);
  return 1;
}

/* core.is_released(x) -> true for a tensor that has been released (closed). */
static int m_is_released(lua_State *L) {
  lpbt_tensor *u = test_tensor(L, 1);
  lua_pushboolean(L, u && !u->t.storage);
  return 1;
}

/* core.same_shape(a, b) -> whether two tensors have the same shape. */
static int m_same_shape(lua_State *L) {
  const pbt_tensor *a = lpbt_check_tensor(L, 1), *b = lpbt_check_tensor(L, 2);
  lua_pushboolean(L, pbt_shape_equal(a->ndim, a->shape, b->ndim, b->shape));
  return 1;
}

/* core.graph(t) -> the nodes of the ops that t comes from, each after all
 * the nodes of its arguments (so backward walks it from the end).  A
 * depth-first walk with its stack in two tables; tensors met are marked
 * with the walk's number. */
static int m_graph(lua_State *L) {
  allocator_box *b = state_box(L);
  lpbt_tensor *u = (lpbt_tensor *)(void *)lpbt_check_tensor(L, 1);
  lua_Integer norder = 0, depth = 0;
  uint64_t walk;
  if (!b) return luaL_error(L, "graph: the module's state is gone");
  walk = ++b->walk; /* from 1: a new tensor's mark is 0 */
  lua_settop(L, 1);
  lua_createtable(L, 16, 0); /* 2: the order */
  lua_createtable(L, 16, 0); /* 3: the stack of nodes */
  lua_createtable(L, 16, 0); /* 4: the next argument of each */
  lpbt_push_node(L, 1);
  if (lua_isnil(L, -1)) {
    lua_pushvalue(L, 2);
    return 1;
  }
  u->mark = walk;
  lua_rawseti(L, 3, ++depth);
  lua_pushinteger(L, 1);
  lua_rawseti(L, 4, depth);
  while (depth > 0) {
    lua_Integer i, n;
    int pushed = 0;
    lua_rawgeti(L, 3, depth); /* 5: the node */
    lua_rawgeti(L, 4, depth);
    i = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushliteral(L, "n");
    lua_rawget(L, 5);
    n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    while (i <= n) {
      lpbt_tensor *c;
      lua_rawgeti(L, 5, i++); /* 6: an argument */
      c = test_tensor(L, 6);
      if (c && c->requires_grad && c->mark != walk) {
        c->mark = walk;
        lpbt_push_node(L, 6);
        if (!lua_isnil(L, -1)) { /* 7: its node, a child */
          lua_pushinteger(L, i);
          lua_rawseti(L, 4, depth);
          lua_rawseti(L, 3, ++depth);
          lua_pushinteger(L, 1);
          lua_rawseti(L, 4, depth);
          lua_pop(L, 1);
          pushed = 1;
          break;
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    if (!pushed) { /* every child is done: the node follows them */
      lua_rawseti(L, 2, ++norder);
      lua_pushnil(L);
      lua_rawseti(L, 3, depth--);
    }
    lua_settop(L, 4);
  }
  lua_pushvalue(L, 2);
  return 1;
}

int lpbt_raise(lua_State *L, const char *fname, const pbt_error *err) {
  if (err->status == PBT_ERR_NOMEM)
    return luaL_error(L, "%s: not enough memory", fname);
  return luaL_error(L, "%s: %s", fname, err->msg);
}

/* ---- numbers and dimensions ---------------------------------------------- */

const char *lpbt_check_path(lua_State *L, int arg) {
  size_t n;
  const char *p;
  if (lua_type(L, arg) != LUA_TSTRING)
    luaL_typeerror(L, arg, "string (a path)");
  p = lua_tolstring(L, arg, &n);
  if (n == 0) luaL_argerror(L, arg, "the path is empty");
  if (strlen(p) != n) luaL_argerror(L, arg, "the path contains a zero byte");
  return p;
}

int64_t lpbt_check_integer(lua_State *L, int arg) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    if (lua_type(L, arg) == LUA_TNUMBER)
      luaL_argerror(L, arg, "number has no integer representation");
    luaL_typeerror(L, arg, "integer");
  }
  return (int64_t)v;
}

int64_t lpbt_check_size(lua_State *L, int arg) {
  int64_t v = lpbt_check_integer(L, arg);
  if (v < 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "negative size %I", (lua_Integer)v));
  return v;
}

int lpbt_check_dim(lua_State *L, int arg, int ndim) {
  int64_t d = lpbt_check_integer(L, arg);
  int64_t z = d < 0 ? d + ndim : d - 1;
  if (d == 0 || z < 0 || z >= ndim)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "dimension %I out of range for a %d-d tensor",
                                  (lua_Integer)d, ndim));
  return (int)z;
}

int lpbt_opt_dim(lua_State *L, int arg, int ndim, int def) {
  if (lua_isnoneornil(L, arg)) return def;
  return lpbt_check_dim(L, arg, ndim);
}

static int64_t shape_entry(lua_State *L, int arg, int allow_infer,
                           lua_Integer v, int isnum, const char *what) {
  if (!isnum)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must be an integer", what));
  if (v < 0 && !(allow_infer && v == -1))
    luaL_argerror(L, arg, lua_pushfstring(L, "negative size %I", v));
  return (int64_t)v;
}

int lpbt_check_shape(lua_State *L, int first, int64_t *shape, int allow_infer,
                     int *next) {
  int n = 0, isnum;
  lua_Integer v;
  if (lua_type(L, first) == LUA_TTABLE) {
    lua_Integer len = LPBT_LEN(L, first), i;
    if (len > PBT_MAX_DIM)
      luaL_argerror(L, first,
                    lua_pushfstring(L, "%I dimensions (at most %d allowed)", len,
                                    PBT_MAX_DIM));
    for (i = 1; i <= len; i++) {
      lua_rawgeti(L, first, i);
      v = lua_tointegerx(L, -1, &isnum);
      shape[n++] = shape_entry(L, first, allow_infer, v, isnum, "size");
      lua_pop(L, 1);
    }
    *next = first + 1;
    return n;
  }
  while (lua_type(L, first + n) == LUA_TNUMBER) {
    if (n == PBT_MAX_DIM)
      luaL_argerror(L, first + n,
                    lua_pushfstring(L, "at most %d dimensions allowed", PBT_MAX_DIM));
    v = lua_tointegerx(L, first + n, &isnum);
    shape[n] = shape_entry(L, first + n, allow_infer, v, isnum, "size");
    n++;
  }
  *next = first + n;
  return n;
}

/* Edit distance of a and b, a transposition counting one (names are
 * short: the rows live on the stack). */
static size_t name_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i, j;
  size_t rows[3][33], *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
  if (la > 32 || lb > 32) return (size_t)-1;
  for (j = 0; j <= lb; j++) prev[j] = j;
  for (i = 1; i <= la; i++) {
    size_t *t;
    cur[0] = i;
    for (j = 1; j <= lb; j++) {
      size_t cost = (a[i - 1] | 0x20) == (b[j - 1] | 0x20) ? 0 : 1;
      size_t d = prev[j] + 1;
      if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
      if (prev[j - 1] + cost < d) d = prev[j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < d)
        d = prev2[j - 2] + 1;
      cur[j] = d;
    }
    t = prev2, prev2 = prev, prev = cur, cur = t;
  }
  return prev[lb];
}

void lpbt_check_options(lua_State *L, int idx, const char *const *known) {
  if (lua_isnoneornil(L, idx)) return;
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *const *k;
    lua_pop(L, 1);
    for (k = known; *k; k++)
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), *k) == 0) break;
    if (!*k) {
      const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      const char *near = NULL;
      size_t best = (size_t)-1, limit;
      if (name) {
        limit = strlen(name) / 3;
        if (limit < 1) limit = 1;
        if (limit > 3) limit = 3;
        for (k = known; *k; k++) {
          size_t d = name_distance(name, *k);
          if (d < best) best = d, near = *k;
        }
        if (best > limit) near = NULL;
      }
      if (near)
        luaL_argerror(L, idx, lua_pushfstring(L, "unknown option '%s' (did you mean '%s'?)", name, near));
      luaL_argerror(L, idx, lua_pushfstring(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL)));
    }
  }
}

pbt_dtype lpbt_opt_dtype(lua_State *L, int idx, pbt_dtype def) {
  pbt_dtype dt = def;
  if (lua_isnoneornil(L, idx)) return def;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lpbt_rawfield(L, idx, "dtype") != LUA_TNIL) {
    const char *name = lua_tostring(L, -1);
    if (name == NULL || lua_type(L, -1) != LUA_TSTRING ||
        pbt_dtype_from_name(name, &dt) != 0)
      luaL_argerror(L, idx,
                    lua_pushfstring(L, "unknown dtype '%s' (float32 or float64)",
                                    luaL_tolstring(L, -1, NULL)));
  }
  lua_pop(L, 1);
  return dt;
}

pbt_generator *lpbt_check_generator(lua_State *L, int arg) {
  return (pbt_generator *)luaL_checkudata(L, arg, LPBT_GENERATOR);
}

pbt_generator *lpbt_opt_generator(lua_State *L, int idx) {
  pbt_generator *g = NULL;
  if (!lua_isnoneornil(L, idx)) {
    luaL_checktype(L, idx, LUA_TTABLE);
    if (lpbt_rawfield(L, idx, "generator") != LUA_TNIL) {
      g = (pbt_generator *)luaL_testudata(L, -1, LPBT_GENERATOR);
      if (!g) luaL_argerror(L, idx, "field 'generator' is not a pbt.Generator");
    }
    lua_pop(L, 1); /* the options table keeps it alive */
  }
  if (!g) g = (pbt_generator *)lua_touserdata(L, LPBT_UPV_GENERATOR);
  return g;
}

/* ---- clock ------------------------------------------------------------------ */

/* pbt.clock(): seconds from an arbitrary start, monotonic, with nanosecond
 * resolution (os.clock counts CPU time of all threads, os.time whole
 * seconds). */
static int m_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* core.write_file(path, string): written atomically (temporary file, fsync,
 * rename, fsync of the directory); true, or nil and a message. */
static int m_write_file(lua_State *L) {
  const char *path = lpbt_check_path(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  pbt_error err;
  if (pbt_write_file_atomic(path, data, n, &err) != PBT_OK) {
    luaL_pushfail(L);
    lua_pushstring(L, err.msg);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.mkdir(path): creates a directory (and its parents); true when it
 * exists afterwards, else nil and a message. */
static int m_mkdir(lua_State *L) {
  const char *path = lpbt_check_path(L, 1);
  size_t n = strlen(path);
  luaL_Buffer b;
  char *p;
  size_t i;
  struct stat st;
  p = luaL_buffinitsize(L, &b, n + 1);
  memcpy(p, path, n + 1);
  for (i = 1; i <= n; i++) {
    if (p[i] == '/' || p[i] == '\0') {
      char c = p[i];
      p[i] = '\0';
      if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        luaL_pushfail(L);
        lua_pushfstring(L, "cannot create directory %s: %s", p, strerror(errno));
        return 2;
      }
      p[i] = c;
    }
  }
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s is not a directory", path);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.isatty(fd) */
static int m_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* pbt.tensor{...}: the tensor table is callable. */
static int tensor_call(lua_State *L) {
  lua_remove(L, 1);
  return lpbt_tensor_new(L);
}

static const luaL_Reg core_module[] = {
    {"clock", m_clock},
    {"autograd", m_autograd},
    {"set_grad_enabled", m_set_grad_enabled},
    {"is_grad_enabled", m_is_grad_enabled},
    {"record", m_record},
    {"check_versions", m_check_versions},
    {"no_grad_enter", m_no_grad_enter},
    {"no_grad_exit", m_no_grad_exit},
    {"graph", m_graph},
    {"needs_grad", m_needs_grad},
    {"is_released", m_is_released},
    {"same_shape", m_same_shape},
    {"write_file", m_write_file},
    {"mkdir", m_mkdir},
    {"isatty", m_isatty},
    {"allocator_stats", m_allocator_stats},
    {"allocator_limit", m_allocator_limit},
    {NULL, NULL}};

/* ---- luaopen --------------------------------------------------------------- */

/* Registers funcs into the table at idx with the two shared upvalues, which
 * sit at the top of the stack. */
static void setfuncs(lua_State *L, int idx, const luaL_Reg *funcs) {
  idx = lua_absindex(L, idx);
  for (; funcs->name; funcs++) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, funcs->func, 2);
    lua_setfield(L, idx, funcs->name);
  }
}

__attribute__((visibility("default"))) int luaopen_pbt_core(lua_State *L);

int luaopen_pbt_core(lua_State *L) {
  int module, tensor, methods, meta;
  static const luaL_Reg *const method_sets[] = {
      lpbt_tensor_methods, lpbt_ops_methods, lpbt_linalg_methods,
      lpbt_random_methods, lpbt_io_methods, NULL};
  static const luaL_Reg *const function_sets[] = {
      lpbt_tensor_functions, lpbt_ops_functions, lpbt_linalg_functions,
      lpbt_random_functions, lpbt_io_functions, NULL};
  static const luaL_Reg *const meta_sets[] = {lpbt_tensor_meta, lpbt_ops_meta,
                                              NULL};
  static const luaL_Reg *const module_sets[] = {
      core_module, lpbt_tensor_module, lpbt_random_module, lpbt_io_module, NULL};
  int i;

  /* The collector keeps the mode the host chose (lua5.4 runs generational):
   * lpbt_gc_hint finishes a whole cycle once the results made since the
   * last one outweigh what was alive after it, which frees dropped tensors
   * in either mode; the generational mode keeps small ops cheap (a 10-element
   * add costs about twice as much under the incremental one). */

  lua_newtable(L);
  module = lua_gettop(L);
  lua_newtable(L);
  tensor = lua_gettop(L);
  lua_newtable(L);
  methods = lua_gettop(L);
  luaL_newmetatable(L, LPBT_TENSOR);
  meta = lua_gettop(L);
  allocator_open(L);

  lpbt_random_open(L);                  /* pbt.Generator metatable */
  lpbt_push_generator(L, 0x5eed);       /* upvalue 1: default generator */
  lua_pushvalue(L, meta);               /* upvalue 2: tensor metatable */

  for (i = 0; method_sets[i]; i++) {
    setfuncs(L, methods, method_sets[i]);
    setfuncs(L, tensor, method_sets[i]);
  }
  for (i = 0; function_sets[i]; i++) setfuncs(L, tensor, function_sets[i]);
  for (i = 0; meta_sets[i]; i++) setfuncs(L, meta, meta_sets[i]);
  for (i = 0; module_sets[i]; i++) setfuncs(L, module, module_sets[i]);
  {
    static const struct {
      const char *name;
      const luaL_Reg *funcs;
    } subs[] = {{"data", lpbt_data_module},
                {"optim", lpbt_optim_module},
                {"nn", lpbt_nn_module},
                {"stats", lpbt_stats_module},
                {"select", lpbt_select_module},
                {"population", lpbt_population_module},
                {"threads", lpbt_threads_module},
                {"sql", lpbt_sql_module},
                {"gp", lpbt_gp_module}};
    for (i = 0; i < (int)(sizeof subs / sizeof subs[0]); i++) {
      lua_newtable(L);
      lua_pushvalue(L, -3); /* the two shared upvalues on top again */
      lua_pushvalue(L, -3);
      setfuncs(L, -3, subs[i].funcs);
      lua_pop(L, 2);
      lua_setfield(L, module, subs[i].name);
    }
  }
  /* __index looks in the methods table (upvalue 3) first */
  lua_pushvalue(L, methods);
  lua_pushcclosure(L, lpbt_tensor_index, 3);
  lua_setfield(L, meta, "__index");

  lua_pushliteral(L, LPBT_TENSOR);
  lua_setfield(L, meta, "__name");

  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -3); /* the two shared upvalues */
  lua_pushvalue(L, -3);
  lua_pushcclosure(L, tensor_call, 2);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, tensor);

  lua_pushvalue(L, tensor);
  lua_setfield(L, module, "tensor");
  lua_pushvalue(L, methods);
  lua_setfield(L, module, "Tensor");
  lua_pushvalue(L, module);
  return 1;
}
