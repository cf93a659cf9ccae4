/* lpbt_autograd.c -- autograd in C: ops record their arguments on their
 * results, grad mode and pbt.no_grad, the graph and backward's walk of it
 * (lua/pbt/autograd.lua checks its arguments and holds the rules), version
 * checks. */
#include <limits.h>
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

/* Raises backward's error for a tensor changed in place after the op
 * `op` was recorded (i = 0: its result; else its argument i). */
static int version_error(lua_State *L, int i, const char *op, uint64_t now, uint64_t saved) {
  /* (lua_pushfstring + lua_error: no position in pbt's code to name) */
  if (i == 0)
    lua_pushfstring(L, "backward: the result of '%s' was changed in place after it was computed "
                       "(its version is %d, %d when recorded): its gradient would be wrong; "
                       "change a copy (t:clone()) instead", op, (int)now, (int)saved);
  else
    lua_pushfstring(L, "backward: argument %d of '%s' was changed in place after '%s' used it "
                       "(its version is %d, %d when recorded): its gradient would be wrong; change "
                       "it after backward, or change a copy (t:clone())", i, op, op, (int)now,
                    (int)saved);
  return lua_error(L);
}

/* The version check of a node table (at idx): raises when a tensor the
 * node was recorded with (its result, or an argument) was changed in place
 * since (its `versions` against the versions now): backward would compute
 * its gradient from values the forward pass did not use. */
static void check_node_versions(lua_State *L, int node) {
  lua_Integer n, i;
  node = lua_absindex(L, node);
  if (lpbt_rawfield(L, node, "versions") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lpbt_rawfield(L, node, "n");
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  for (i = 0; i <= n; i++) {
    const pbt_tensor *t;
    lua_Integer saved;
    if (lua_rawgeti(L, -1, i) != LUA_TNUMBER) {
      lua_pop(L, 1);
      continue;
    }
    saved = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (i == 0) lpbt_rawfield(L, node, "out");
    else lua_rawgeti(L, node, i);
    t = lpbt_test_tensor(L, -1);
    if (t && t->storage && (lua_Integer)pbt_tensor_version(t) != saved) {
      lpbt_rawfield(L, node, "op");
      version_error(L, (int)i, lua_tostring(L, -1), pbt_tensor_version(t), (uint64_t)saved);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
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

/* The tensor at idx (its binding's fields too), or NULL (no error). */
#define test_tensor lpbt_tensor_at

/* core.needs_grad(x) -> true for a tensor that requires grad (anything
 * else: false), without the field lookup of x.requires_grad. */
static int m_needs_grad(lua_State *L) {
  lpbt_tensor *u = test_tensor(L, 1);
  lua_pushboolean(L, u && u->requires_grad);
  return 1;
}

/* core.is_released(x) -> true for a tensor that has been released (closed),
 * and whether a backward's walk released it (core.free_after). */
static int m_is_released(lua_State *L) {
  lpbt_tensor *u = test_tensor(L, 1);
  lua_pushboolean(L, u && !u->t.storage);
  lua_pushboolean(L, u && !u->t.storage && u->transient == LPBT_FREED_BY_WALK);
  return 2;
}

/* core.free_after(x, y): x, the output of one layer of an nn.Sequential,
 * was turned into y by the next layer, and nothing but the graph holds it
 * (nn.Sequential asks only for an output that only built-in layers, which
 * keep neither their input nor their output, have seen, and never for its
 * own input or result).  Nothing happens when y is x (an identity layer)
 * or either is not a tensor.  When neither requires grad no graph holds x
 * either: it is released now, and the next result of its size reuses its
 * memory.  Else backward releases it once its walk has used it (unless
 * retain_graph). */
static int m_free_after(lua_State *L) {
  lpbt_tensor *x = test_tensor(L, 1), *y = test_tensor(L, 2);
  if (!x || !y || x == y || !x->t.storage) return 0;
  if (!x->requires_grad && !y->requires_grad) lpbt_release_result(L, &x->t);
  else x->transient = LPBT_FREE_AFTER_WALK;
  return 0;
}

/* core.same_shape(a, b) -> whether two tensors have the same shape. */
static int m_same_shape(lua_State *L) {
  const pbt_tensor *a = lpbt_check_tensor(L, 1), *b = lpbt_check_tensor(L, 2);
  lua_pushboolean(L, pbt_shape_equal(a->ndim, a->shape, b->ndim, b->shape));
  return 1;
}

/* ---- the graph and backward ---------------------------------------------------- */

/* Pushes the node table of the tensor at idx, or nil when it has none (a
 * leaf, or an op kept in user values), and returns the number of the op's
 * arguments, -1 for a leaf. */
static int open_node(lua_State *L, int idx) {
  lpbt_tensor *u = (lpbt_tensor *)lua_touserdata(L, idx);
  lua_Integer n;
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, LPBT_UV_GRAD_FN) != LUA_TNIL) {
    lpbt_rawfield(L, -1, "n");
    n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return n < 0 ? 0 : n > INT_MAX / 2 ? INT_MAX / 2 : (int)n;
  }
  if (lua_getiuservalue(L, idx, LPBT_UV_OP) == LUA_TNIL) {
    lua_pop(L, 1);
    return -1;
  }
  lua_pop(L, 1);
  return u->nargs;
}

/* Pushes argument i (1-based) of the op of the tensor at out, whose node
 * table (or 0) is at tab. */
static int push_arg(lua_State *L, int out, int tab, int i) {
  if (tab) return lua_rawgeti(L, tab, i);
  return lua_getiuservalue(L, out, LPBT_UV_ARG + i - 1);
}

/* The walk's working tables, kept for the next backward (a registry
 * array of five: the order, the walk's stack and next arguments, the
 * gradients, the walk's own gradients), so that a training step makes no
 * new tables for the collector.  A backward takes the whole set (a nested
 * one, run by a Lua rule, makes its own) and gives it back emptied; after
 * a walk of more than SCRATCH_MAX results it is left to the collector
 * (its tables keep their size). */
static const char scratch_key = 's';
#define SCRATCH_MAX 1024
enum { S_ORDER = 1, S_STACK, S_NEXT, S_GRADS, S_OWNED, S_N = S_OWNED };

/* Pushes the spare set of working tables (taking it out of the registry),
 * or (none spare, or fresh) a new one. */
static void take_scratch(lua_State *L, int fresh) {
  int i;
  if (!fresh && lua_rawgetp(L, LUA_REGISTRYINDEX, &scratch_key) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &scratch_key);
    return;
  }
  if (!fresh) lua_pop(L, 1);
  lua_createtable(L, S_N, 0);
  for (i = 1; i <= S_N; i++) {
    if (i == S_GRADS || i == S_OWNED) lua_createtable(L, 0, 8);
    else lua_createtable(L, 16, 0);
    lua_rawseti(L, -2, i);
  }
}

/* Pushes an array of the tensors that the tensor at root was computed from
 * through recorded ops (root among them, unless it is a leaf), each after
 * those of its arguments: backward runs their ops from the end.  A
 * depth-first walk with its stack in two tables; tensors met are marked
 * with the walk's number.  The tables come from the working set at set
 * (take_scratch); the stack and next-argument tables are left empty. */
static void push_order(lua_State *L, lpbt_lib *b, int root, int set) {
  lpbt_tensor *u = (lpbt_tensor *)lua_touserdata(L, root);
  lua_Integer norder = 0, depth = 0, deepest = 0, i;
  uint64_t walk = ++b->walk; /* from 1: a new tensor's mark is 0 */
  int order, stack, next;
  root = lua_absindex(L, root);
  luaL_checkstack(L, 8, "backward");
  lua_rawgeti(L, set, S_ORDER);
  order = lua_gettop(L);
  if (open_node(L, root) < 0) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_rawgeti(L, set, S_STACK); /* the stack of results */
  stack = order + 1;
  lua_rawgeti(L, set, S_NEXT); /* the next argument of each */
  next = order + 2;
  u->mark = walk;
  lua_pushvalue(L, root);
  lua_rawseti(L, stack, deepest = ++depth);
  lua_pushinteger(L, 1);
  lua_rawseti(L, next, depth);
  while (depth > 0) {
    int out = next + 1, tab, n, i, pushed = 0;
    lua_rawgeti(L, stack, depth);
    lua_rawgeti(L, next, depth);
    i = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    n = open_node(L, out);
    tab = lua_isnil(L, -1) ? 0 : out + 1;
    while (i <= n) {
      lpbt_tensor *c;
      push_arg(L, out, tab, i++);
      c = test_tensor(L, -1);
      if (c && c->requires_grad && c->mark != walk) {
        int inner;
        c->mark = walk;
        inner = open_node(L, -1) >= 0;
        lua_pop(L, 1);
        if (inner) { /* a child: walk it first */
          lua_pushinteger(L, i);
          lua_rawseti(L, next, depth);
          lua_rawseti(L, stack, ++depth);
          lua_pushinteger(L, 1);
          lua_rawseti(L, next, depth);
          if (depth > deepest) deepest = depth;
          pushed = 1;
          break;
        }
      }
      lua_pop(L, 1);
    }
    if (!pushed) { /* every child is done: this result follows them */
      lua_pushvalue(L, out);
      lua_rawseti(L, order, ++norder);
      lua_pushnil(L);
      lua_rawseti(L, stack, depth--);
    }
    lua_settop(L, next);
  }
  for (i = 1; i <= deepest; i++) { /* the stack is empty; next too, now */
    lua_pushnil(L);
    lua_rawseti(L, next, i);
  }
  lua_settop(L, order);
}

/* core.graph(t) -> the nodes of the ops that t comes from, each after all
 * the nodes of its arguments (backward's order; the nodes are made). */
static int m_graph(lua_State *L) {
  lpbt_lib *b = lpbt_lib_of(L);
  lua_Integer i, n;
  lpbt_check_tensor(L, 1);
  if (!b) return luaL_error(L, "graph: the module's state is gone");
  lua_settop(L, 1);
  take_scratch(L, 1); /* 2: new tables (the order is the result) */
  push_order(L, b, 1, 2);
  n = (lua_Integer)lua_rawlen(L, 3);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 3, i);
    lpbt_push_node(L, 4);
    lua_rawseti(L, 3, i);
    lua_pop(L, 1);
  }
  return 1;
}

/* Backward's setting (core.backward_env), in the registry: the rules and
 * tables of pbt.autograd, and the built-in rules that backward runs here,
 * straight from their kernels, without making the op's node table:
 *   env.builtin[op] = { rule, kind, kernel [, run] }
 * taken while rules[op] is still `rule` (and, for in-place linear, while
 * in_place[op].run is still `run`); a rule a script put in its place runs
 * as a Lua rule, rule(node, g).  The kinds, by how the kernel is called:
 *   "unary"       kernel(g, a1)                          -> g1
 *   "loss"        kernel(g, a1, a2, a3)                  -> g1, g2, g3
 *   "linear"      kernel(g, x, w, rg(x), rg(w), rg(b) [, kept grad of w, of b])
 *   "linear_relu" kernel(g, y, x, w, rg(x), rg(w), rg(b) [, kept grads]), y the
 *                 op's result (ReLU's gradient is read off it)
 *   "conv2d"      kernel(g, a1, a2, a4, a5, a6, a7, a8, rg(a1), rg(a2), rg(a3))
 *   "max_pool2d"  kernel(g, outs[2], a1)
 *   "shape"       g reshaped to a1's shape (kernel: the reshape function)
 *   "lua"         pbt's own Lua rule, called as rule(node, g) (no kernel):
 *                 it keeps neither g nor its results, which are new
 *                 tensors, so that the walk releases them once used up as
 *                 it does a kernel's */
static const char env_key = 'b';
enum { K_LUA, K_UNARY, K_LOSS, K_LINEAR, K_CONV2D, K_MAXPOOL, K_SHAPE, K_OWN_LUA,
       K_LINEAR_RELU };
static const char *const kind_names[] = {"unary", "loss", "linear", "conv2d", "max_pool2d",
                                         "shape", "lua", "linear_relu", NULL};

/* The kind named s (K_LUA for anything else: the rule runs as it is). */
static int kind_of(const char *s) {
  int i;
  for (i = 0; s && kind_names[i]; i++)
    if (strcmp(s, kind_names[i]) == 0) return i + 1;
  return K_LUA;
}

/* core.backward_env(env): installs backward's setting (pbt.autograd). */
static int m_backward_env(lua_State *L) {
  static const char *const need[] = {"rules", "fresh", "in_place", "reads_no_values",
                                     "builtin", "add_", "clone", NULL};
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);
  for (i = 0; need[i]; i++) { /* five tables (read raw by the walk), two functions */
    int want = i < 5 ? LUA_TTABLE : LUA_TFUNCTION;
    if (lpbt_rawfield(L, 1, need[i]) != want)
      return luaL_error(L, "backward_env: env.%s must be a %s, got %s", need[i],
                        lua_typename(L, want), luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &env_key);
  return 0;
}

/* rg(x) of the rules: whether x is a tensor that requires grad. */
static void push_rg(lua_State *L, int idx) {
  lpbt_tensor *u = test_tensor(L, idx);
  lua_pushboolean(L, u && u->requires_grad);
}

/* The kept .grad of a leaf x (at idx) that requires grad, else nil. */
static void push_kept(lua_State *L, int idx) {
  lpbt_tensor *u = test_tensor(L, idx);
  if (!u || !u->requires_grad) {
    lua_pushnil(L);
    return;
  }
  if (lua_getiuservalue(L, idx, LPBT_UV_OP) != LUA_TNIL) { /* not a leaf */
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  lua_pop(L, 1);
  lua_getiuservalue(L, idx, LPBT_UV_GRAD);
}

/* The version check of a node kept in user values (at out): its saved
 * versions against its result's and tensor arguments' now. */
static void check_saved_versions(lua_State *L, int out, int n, const char *op) {
  lpbt_tensor *u = (lpbt_tensor *)lua_touserdata(L, out);
  int i;
  if (u->t.storage && pbt_tensor_version(&u->t) != u->saved[0])
    version_error(L, 0, op, pbt_tensor_version(&u->t), u->saved[0]);
  for (i = 1; i <= n; i++) {
    const pbt_tensor *t;
    push_arg(L, out, 0, i);
    t = lpbt_test_tensor(L, -1);
    if (t && t->storage && pbt_tensor_version(t) != u->saved[i])
      version_error(L, i, op, pbt_tensor_version(t), u->saved[i]);
    lua_pop(L, 1);
  }
}

/* Pushes a's shape as a table (a: a tensor, at idx). */
static void push_shape(lua_State *L, int idx) {
  const pbt_tensor *a = lpbt_check_tensor(L, idx);
  int d;
  lua_createtable(L, a->ndim, 0);
  for (d = 0; d < a->ndim; d++) {
    lua_pushinteger(L, (lua_Integer)a->shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
}

/* Calls the kernel of a built-in rule (the kind's layout above) for the
 * node of the tensor at out (node table at tab, or 0) and grad at g,
 * leaving n results.  kept: the kernel may add into kept grads. */
static void call_kernel(lua_State *L, int kind, int kernel, int out, int tab, int g, int n,
                        int kept) {
  int base = lua_gettop(L) + 1, i;
  luaL_checkstack(L, 16 + n, "backward");
  lua_pushvalue(L, kernel);
  lua_pushvalue(L, g);
  switch (kind) {
  case K_UNARY:
    push_arg(L, out, tab, 1);
    break;
  case K_LOSS:
    for (i = 1; i <= 3; i++) push_arg(L, out, tab, i);
    break;
  case K_LINEAR:
  case K_LINEAR_RELU: {
    int x = base + 2;
    if (kind == K_LINEAR_RELU) {
      lua_pushvalue(L, out); /* base+2: y */
      x++;
    }
    for (i = 1; i <= 3; i++) push_arg(L, out, tab, i); /* x, x+1, x+2: x, w, b */
    for (i = 0; i < 3; i++) push_rg(L, x + i);
    if (kept) {
      push_kept(L, x + 1);
      push_kept(L, x + 2);
    }
    lua_remove(L, x + 2); /* b */
    break;
  }
  case K_CONV2D:
    for (i = 1; i <= 8; i++) push_arg(L, out, tab, i); /* base+2..base+9 */
    for (i = 0; i < 3; i++) push_rg(L, base + 2 + i);
    lua_remove(L, base + 4); /* the bias itself */
    break;
  case K_MAXPOOL:
    lpbt_rawfield(L, tab, "outs");
    lua_rawgeti(L, -1, 2);
    lua_remove(L, -2);
    push_arg(L, out, tab, 1);
    break;
  case K_SHAPE:
    push_arg(L, out, tab, 1);
    push_shape(L, lua_gettop(L));
    lua_remove(L, -2);
    break;
  }
  lua_call(L, lua_gettop(L) - base, n);
}

/* g1 + g2 (the tensors at the top; popped), by the tensors' __add. */
static void add_top(lua_State *L) { lua_arith(L, LUA_OPADD); }

/* The gradients that the walk made itself (a built-in kernel's results,
 * sums of them) and that nothing else holds are kept in the table at
 * owned: once used up they are released at once, so that the next result
 * of their size reuses their memory while it is still in cache (the
 * collector would free them many steps later). */
static void set_owned(lua_State *L, int owned, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, owned);
}

/* Releases the tensor at idx if the walk owns it. */
static void release_owned(lua_State *L, int owned, int idx) {
  lua_pushvalue(L, idx);
  if (lua_rawget(L, owned) != LUA_TNIL) {
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, owned);
    lpbt_release_result(L, (pbt_tensor *)lua_touserdata(L, idx));
  }
  lua_pop(L, 1);
}

/* core.backward(t, grad [, retain_graph]): the walk of pbt.autograd's
 * backward (which checks t and grad, sets grad mode off and calls it under
 * pcall): each recorded op from the end of t's order whose result got a
 * gradient gives the gradients of its arguments by its rule; an argument
 * that requires grad gets its gradient added (a leaf into .grad, the others
 * until their op runs).  Once the walk is done, the results in t's order
 * that core.free_after marked (t itself aside) are released, unless
 * retain_graph. */
static int m_backward(lua_State *L) {
  lpbt_lib *b = lpbt_lib_of(L);
  enum { T = 1, GRAD, ENV, RULES, FRESH, INPLACE, RNV, BUILTIN, ADD_, CLONE, SET, ORDER, GRADS,
         OWNED, TOP };
  lua_Integer k;
  int retain = lua_toboolean(L, 3);
  lpbt_check_tensor(L, T);
  lpbt_check_tensor(L, GRAD);
  if (!b) return luaL_error(L, "backward: the module's state is gone");
  lua_settop(L, GRAD);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key) != LUA_TTABLE)
    return luaL_error(L, "backward: pbt.autograd is not loaded (require \"pbt\")");
  lpbt_rawfield(L, ENV, "rules");
  lpbt_rawfield(L, ENV, "fresh");
  lpbt_rawfield(L, ENV, "in_place");
  lpbt_rawfield(L, ENV, "reads_no_values");
  lpbt_rawfield(L, ENV, "builtin");
  lpbt_rawfield(L, ENV, "add_");
  lpbt_rawfield(L, ENV, "clone");
  take_scratch(L, 0);
  push_order(L, b, T, SET);
  /* a graph that an earlier backward freed (free_after) is refused before
   * any gradient is added anywhere (pbt.autograd names the tensor) */
  for (k = (lua_Integer)lua_rawlen(L, ORDER); k >= 1; k--) {
    int freed;
    lua_rawgeti(L, ORDER, k);
    freed = ((lpbt_tensor *)lua_touserdata(L, -1))->transient == LPBT_FREED_BY_WALK;
    lua_pop(L, 1);
    if (freed) return luaL_error(L, "backward: the graph was freed by an earlier backward");
  }
  lua_rawgeti(L, SET, S_GRADS); /* the gradients of the results not yet run */
  lua_pushvalue(L, T);
  lua_pushvalue(L, GRAD);
  lua_rawset(L, GRADS);
  lua_rawgeti(L, SET, S_OWNED); /* the walk's own gradients (set_owned) */
  for (k = (lua_Integer)lua_rawlen(L, ORDER); k >= 1; k--) {
    enum { OUT = TOP, G, NODE, OP, RULE, ENTRY, IP };
    int n, tab, kind = K_LUA, kept = 0, owned, base, i;
    const char *op;
    lua_settop(L, OWNED);
    lua_rawgeti(L, ORDER, k);
    lua_pushvalue(L, OUT);
    if (lua_rawget(L, GRADS) == LUA_TNIL) continue;
    lua_pushvalue(L, OUT);
    lua_pushnil(L);
    lua_rawset(L, GRADS);
    n = open_node(L, OUT);
    if (lua_istable(L, NODE)) lpbt_rawfield(L, NODE, "op");
    else lua_getiuservalue(L, OUT, LPBT_UV_OP);
    op = lua_tostring(L, OP);
    lua_pushvalue(L, OP);
    if (lua_gettable(L, RULES) == LUA_TNIL || !lua_toboolean(L, RULE))
      return luaL_error(L, "backward: no gradient rule for '%s'", op ? op : "?");
    lua_pushvalue(L, OP);
    if (lua_rawget(L, BUILTIN) == LUA_TTABLE) {
      lua_rawgeti(L, ENTRY, 1);
      if (lua_rawequal(L, -1, RULE)) {
        lua_rawgeti(L, ENTRY, 2);
        kind = kind_of(lua_tostring(L, -1));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pushvalue(L, OP);
    if (lua_gettable(L, INPLACE) == LUA_TTABLE) { /* in_place[op] = { rule, run } */
      lua_getfield(L, IP, "rule");
      if (lua_rawequal(L, -1, RULE)) {
        lua_getfield(L, IP, "run");
        lua_replace(L, RULE); /* the rule that adds into kept grads */
        kept = 1;
        if (kind != K_LUA) {
          lua_rawgeti(L, ENTRY, 4);
          if (!lua_rawequal(L, -1, RULE)) kind = K_LUA; /* a script's run */
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
    if (kind == K_MAXPOOL) { /* the kernel reads outs[2] */
      if (!lua_istable(L, NODE) || lpbt_rawfield(L, NODE, "outs") != LUA_TTABLE) kind = K_LUA;
      if (lua_istable(L, NODE)) lua_pop(L, 1);
    }
    if ((kind == K_LUA || kind == K_OWN_LUA) && !lua_istable(L, NODE)) {
      /* rule(node, g) needs the table */
      lpbt_push_node(L, OUT);
      lua_replace(L, NODE);
    }
    tab = lua_istable(L, NODE) ? NODE : 0;
    lua_pushvalue(L, OP);
    if (lua_gettable(L, RNV) == LUA_TNIL || !lua_toboolean(L, -1)) {
      if (tab) check_node_versions(L, tab);
      else check_saved_versions(L, OUT, n, op);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, OP);
    lua_gettable(L, FRESH);
    owned = lua_toboolean(L, -1);
    lua_pop(L, 1);
    base = lua_gettop(L) + 1;
    luaL_checkstack(L, n + 8, "backward");
    if (kind == K_LUA) {
      /* the rule may keep g or hand it on (add's rule gives it to both
       * arguments): no longer the walk's to release */
      lua_pushvalue(L, G);
      lua_pushnil(L);
      lua_rawset(L, OWNED);
      lua_pushvalue(L, RULE);
      lua_pushvalue(L, NODE);
      lua_pushvalue(L, G);
      lua_call(L, 2, n);
    } else if (kind == K_OWN_LUA) {
      int same = 0;
      lua_pushvalue(L, RULE);
      lua_pushvalue(L, NODE);
      lua_pushvalue(L, G);
      lua_call(L, 2, n);
      for (i = 0; i < n; i++) same |= lua_rawequal(L, base + i, G);
      if (!same) release_owned(L, OWNED, G); /* used up */
    } else {
      lua_rawgeti(L, ENTRY, 3);
      call_kernel(L, kind, lua_gettop(L), OUT, tab, G, n, kept);
      lua_remove(L, base);
      release_owned(L, OWNED, G); /* used up (a Lua rule might keep it) */
    }
    /* the gradients of the arguments, at base .. base + n - 1 */
    for (i = 1; i <= n; i++) {
      int gi = base + i - 1, x;
      lpbt_tensor *ux;
      const pbt_tensor *tg;
      if (!lua_toboolean(L, gi)) continue;
      push_arg(L, OUT, tab, i);
      x = lua_gettop(L);
      ux = test_tensor(L, x);
      if (!ux || !ux->requires_grad) {
        lua_pop(L, 1);
        continue;
      }
      if (!ux->t.storage)
        return luaL_error(L, "backward: argument %d of '%s' has been released", i, op);
      if (!(tg = lpbt_test_tensor(L, gi)))
        return luaL_error(L, "backward: the rule of '%s' gave a %s for its argument %d (a "
                             "pbt.Tensor or nil expected)", op, luaL_typename(L, gi), i);
      if (!tg->storage)
        return luaL_error(L, "backward: the rule of '%s' gave a released tensor for its "
                             "argument %d", op, i);
      if (!pbt_shape_equal(tg->ndim, tg->shape, ux->t.ndim, ux->t.shape)) {
        char a[96], s[96];
        pbt_format_shape(a, sizeof a, tg->ndim, tg->shape);
        pbt_format_shape(s, sizeof s, ux->t.ndim, ux->t.shape);
        return luaL_error(L, "backward: the rule of '%s' gave a grad of shape %s for its "
                             "argument %d of shape %s", op, a, i, s);
      }
      if (lua_getiuservalue(L, x, LPBT_UV_OP) != LUA_TNIL) { /* not a leaf: add up */
        int have;
        lua_pop(L, 1);
        lua_pushvalue(L, x);
        have = lua_gettop(L); /* grads[x], so far */
        if (lua_rawget(L, GRADS) == LUA_TNIL) {
          lua_pushvalue(L, x);
          lua_pushvalue(L, gi);
          lua_rawset(L, GRADS);
          if (kind != K_LUA) set_owned(L, OWNED, gi);
        } else {
          lua_pushvalue(L, x);
          lua_pushvalue(L, have);
          lua_pushvalue(L, gi);
          add_top(L);
          set_owned(L, OWNED, -1);
          lua_rawset(L, GRADS);
          release_owned(L, OWNED, have);
          if (kind != K_LUA) lpbt_release_result(L, (pbt_tensor *)lua_touserdata(L, gi));
        }
      } else if (lua_pop(L, 1), lua_getiuservalue(L, x, LPBT_UV_GRAD) != LUA_TNIL) {
        lua_pushvalue(L, ADD_); /* have:add_(g) */
        lua_insert(L, -2);
        lua_pushvalue(L, gi);
        lua_call(L, 2, 0);
        if (kind != K_LUA) lpbt_release_result(L, (pbt_tensor *)lua_touserdata(L, gi));
      } else {
        lua_pop(L, 1);
        if (owned) {
          lua_pushvalue(L, gi);
        } else {
          lua_pushvalue(L, CLONE);
          lua_pushvalue(L, gi);
          lua_call(L, 1, 1);
        }
        lua_setfield(L, x, "grad"); /* through __newindex: its checks */
        if (!owned && kind != K_LUA) lpbt_release_result(L, (pbt_tensor *)lua_touserdata(L, gi));
      }
      lua_settop(L, x - 1);
    }
  }
  lua_settop(L, OWNED);
  if (!retain) { /* the layers' outputs that only the graph held (free_after) */
    for (k = (lua_Integer)lua_rawlen(L, ORDER) - 1; k >= 1; k--) { /* not t itself */
      lpbt_tensor *u;
      lua_rawgeti(L, ORDER, k);
      u = (lpbt_tensor *)lua_touserdata(L, -1);
      if (u->transient == LPBT_FREE_AFTER_WALK) {
        lpbt_release_result(L, &u->t);
        u->transient = LPBT_FREED_BY_WALK;
        /* and the op's other results (a dropout's mask, a pooling's indices,
         * a layer norm's statistics): the layer handed on its first only */
        if (lua_getiuservalue(L, -1, LPBT_UV_GRAD_FN) == LUA_TTABLE &&
            lpbt_rawfield(L, -1, "outs") == LUA_TTABLE) {
          lua_Integer j, nouts = (lua_Integer)lua_rawlen(L, -1);
          for (j = 2; j <= nouts; j++) {
            lpbt_tensor *o;
            lua_rawgeti(L, -1, j);
            if ((o = test_tensor(L, -1)) != NULL && o != u && o->t.storage) {
              lpbt_release_result(L, &o->t);
              o->transient = LPBT_FREED_BY_WALK;
            }
            lua_pop(L, 1);
          }
        }
        lua_settop(L, OWNED + 1);
      }
      lua_pop(L, 1);
    }
  }
  /* the working tables kept, emptied, for the next backward */
  if ((k = (lua_Integer)lua_rawlen(L, ORDER)) > SCRATCH_MAX) return 0;
  for (; k >= 1; k--) {
    lua_pushnil(L);
    lua_rawseti(L, ORDER, k);
  }
  for (k = GRADS; k <= OWNED; k++) { /* empty, unless an entry was missed */
    lua_pushnil(L);
    if (lua_next(L, (int)k)) return 0;
  }
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &scratch_key) != LUA_TNIL) return 0; /* a nested one's */
  lua_pushvalue(L, SET);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &scratch_key);
  return 0;
}

const luaL_Reg lpbt_autograd_module[] = {
    {"autograd", m_autograd},
    {"set_grad_enabled", m_set_grad_enabled},
    {"is_grad_enabled", m_is_grad_enabled},
    {"record", m_record},
    {"no_grad_enter", m_no_grad_enter},
    {"no_grad_exit", m_no_grad_exit},
    {"graph", m_graph},
    {"backward", m_backward},
    {"backward_env", m_backward_env},
    {"needs_grad", m_needs_grad},
    {"is_released", m_is_released},
    {"free_after", m_free_after},
    {"same_shape", m_same_shape},
    {NULL, NULL}};
