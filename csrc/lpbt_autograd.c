/* lpbt_autograd.c -- autograd's recording in C: ops record their
 * arguments on their results, grad mode and pbt.no_grad, the graph that
 * lua/pbt/autograd.lua's backward walks, version checks. */
#include <string.h>

#include "lpbt.h"

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
static int in_no_grad(lua_State *L, lpbt_lib *b) {
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

static int grad_enabled(lua_State *L, lpbt_lib *b) {
  if (!b || !b->autograd || !b->grad_on) return 0;
  return b->no_grad == 0 || !in_no_grad(L, b);
}

int lpbt_grad_enabled(lua_State *L) { return grad_enabled(L, lpbt_lib_of(L)); }

/* core.no_grad_enter() / core.no_grad_exit(): around pbt.no_grad's call of
 * its function, in the same thread. */
static int no_grad_step(lua_State *L, int delta) {
  lpbt_lib *b = lpbt_lib_of(L);
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
  if (grad_enabled(L, lpbt_lib_of(L)))
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
  lpbt_lib *b = lpbt_lib_of(L);
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
  lpbt_lib *b = lpbt_lib_of(L);
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
  if (!grad_enabled(L, lpbt_lib_of(L))) return 0;
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
  lpbt_lib *b = lpbt_lib_of(L);
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

const luaL_Reg lpbt_autograd_module[] = {
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
    {NULL, NULL}};
