/* lpbt_optim.c -- functions of pbt.core.optim: one fused update of one
 * parameter per call (lua/pbt/optim.lua keeps the state and calls them).
 *
 *   sgd_step(p, grad, buf|nil, init, lr, momentum, dampening, weight_decay,
 *            nesterov)
 *   adam_step(p, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
 *             weight_decay, decoupled)
 *   rmsprop_step(p, grad, square_avg, grad_avg|nil, buf|nil, lr, alpha, eps,
 *                momentum, weight_decay, centered)
 *
 * They write p and the buffers directly: the optimizer's kernel is the
 * sanctioned way to modify a parameter that requires grad.
 *
 * And loops over an optimizer's parameters, one call a step:
 *   check_params(name, params, state)  every parameter, grad and state
 *             buffer checked (the optimizers' steps call it first)
 *   sgd_steps(name, params, state, zeros_like, lr, momentum, dampening,
 *             weight_decay, nesterov)
 *   zero_grads(name, params, set_to_none) */
#include <stdarg.h>

#include "lpbt.h"
#include "pbt_optim.h"

static pbt_tensor *opt_tensor(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? NULL : lpbt_check_tensor(L, arg);
}

static int m_sgd_step(lua_State *L) {
  pbt_tensor *p = lpbt_check_tensor(L, 1);
  const pbt_tensor *g = lpbt_check_tensor(L, 2);
  pbt_tensor *buf = opt_tensor(L, 3);
  int init = lua_toboolean(L, 4);
  pbt_sgd_options o;
  pbt_error err;
  o.lr = luaL_checknumber(L, 5);
  o.momentum = luaL_checknumber(L, 6);
  o.dampening = luaL_checknumber(L, 7);
  o.weight_decay = luaL_checknumber(L, 8);
  o.nesterov = lua_toboolean(L, 9);
  LPBT_CHECK(L, "sgd_step", pbt_sgd_step(p, g, buf, init, &o, &err), &err);
  pbt_tensor_bump_version(p);
  return 0;
}

static int m_adam_step(lua_State *L) {
  pbt_tensor *p = lpbt_check_tensor(L, 1);
  const pbt_tensor *g = lpbt_check_tensor(L, 2);
  pbt_tensor *m = lpbt_check_tensor(L, 3);
  pbt_tensor *v = lpbt_check_tensor(L, 4);
  int64_t step = lpbt_check_integer(L, 5);
  pbt_adam_options o;
  pbt_error err;
  o.lr = luaL_checknumber(L, 6);
  o.beta1 = luaL_checknumber(L, 7);
  o.beta2 = luaL_checknumber(L, 8);
  o.eps = luaL_checknumber(L, 9);
  o.weight_decay = luaL_checknumber(L, 10);
  o.decoupled = lua_toboolean(L, 11);
  LPBT_CHECK(L, "adam_step", pbt_adam_step(p, g, m, v, step, &o, &err), &err);
  pbt_tensor_bump_version(p);
  return 0;
}

static int m_rmsprop_step(lua_State *L) {
  pbt_tensor *p = lpbt_check_tensor(L, 1);
  const pbt_tensor *g = lpbt_check_tensor(L, 2);
  pbt_tensor *sq = lpbt_check_tensor(L, 3);
  pbt_tensor *ga = opt_tensor(L, 4);
  pbt_tensor *buf = opt_tensor(L, 5);
  pbt_rmsprop_options o;
  pbt_error err;
  o.lr = luaL_checknumber(L, 6);
  o.alpha = luaL_checknumber(L, 7);
  o.eps = luaL_checknumber(L, 8);
  o.momentum = luaL_checknumber(L, 9);
  o.weight_decay = luaL_checknumber(L, 10);
  o.centered = lua_toboolean(L, 11);
  LPBT_CHECK(L, "rmsprop_step",
             pbt_rmsprop_step(p, g, sq, ga, buf, &o, &err), &err);
  pbt_tensor_bump_version(p);
  return 0;
}

/* Raises the message as it is (no position: the optimizer's errors read
 * "<Name>: ..." as those of lua/pbt/optim.lua, raised with level 0). */
static int opt_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* The tensor params[i] (at idx), checked: raises "<name>: params[i] ..."
 * for anything else or a released tensor. */
static pbt_tensor *param_at(lua_State *L, const char *name, int idx, lua_Integer i) {
  pbt_tensor *p = lpbt_test_tensor(L, idx);
  if (!p)
    opt_error(L, "%s: params[%d] is not a pbt.Tensor (got %s)", name, (int)i,
               luaL_typename(L, idx));
  else if (!p->storage)
    opt_error(L, "%s: params[%d] has been released", name, (int)i);
  return p;
}

/* Pushes the .grad of the parameter at idx (nil when it has none); raises
 * "<name>: the grad of params[i] has been released". */
static pbt_tensor *grad_at(lua_State *L, const char *name, int idx, lua_Integer i) {
  pbt_tensor *g;
  if (lua_getiuservalue(L, idx, LPBT_UV_GRAD) == LUA_TNIL) return NULL;
  g = lpbt_test_tensor(L, -1);
  if (g && !g->storage) opt_error(L, "%s: the grad of params[%d] has been released", name, (int)i);
  return g;
}

/* Checks every parameter of params (a table at params), its grad and the
 * tensors of its state (state[i], a table or nil; the table at state):
 * raises "<name>: ..." naming the first one that is not a tensor, has been
 * released or is not a table.  Returns #params. */
static lua_Integer check_all(lua_State *L, const char *name, int params, int state) {
  lua_Integer i, n = (lua_Integer)lua_rawlen(L, params);
  int top = lua_gettop(L);
  luaL_checkstack(L, 6, "check_params");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, params, i);
    param_at(L, name, top + 1, i);
    grad_at(L, name, top + 1, i);
    lua_geti(L, state, i);
    if (!lua_isnil(L, -1) && !lua_istable(L, -1))
      opt_error(L, "%s: state[%d] must be a table, got %s", name, (int)i, luaL_typename(L, -1));
    if (lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        const pbt_tensor *b = lpbt_test_tensor(L, -1);
        if (b && !b->storage) {
          lua_pushvalue(L, -2);
          opt_error(L, "%s: the %s of params[%d] has been released", name,
                    luaL_tolstring(L, -1, NULL), (int)i);
        }
        lua_pop(L, 1);
      }
    }
    lua_settop(L, top);
  }
  return n;
}

/* optim's check_params(name, params, state): check_all, for the steps
 * written in Lua (lua/pbt/optim.lua's each_grad). */
static int m_check_params(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  check_all(L, name, 2, 3);
  return 0;
}

/* optim's sgd_steps: SGD's step of every parameter that has a .grad, as
 * lua/pbt/optim.lua describes it, once every parameter, grad and state
 * buffer has been checked (a bad one updates nothing): the momentum buffer
 * made by zeros_like(p) on a parameter's first step (or taken from the
 * gradient when the state says momentum_buffer_ready = false), state[i].step
 * counted. */
static int m_sgd_steps(lua_State *L) {
  enum { NAME = 1, PARAMS, STATE, ZEROS, TOP = 10 };
  const char *name = luaL_checkstring(L, NAME);
  lua_Integer i, n;
  pbt_sgd_options o;
  luaL_checktype(L, PARAMS, LUA_TTABLE);
  luaL_checktype(L, STATE, LUA_TTABLE);
  o.lr = luaL_checknumber(L, 5);
  o.momentum = luaL_checknumber(L, 6);
  o.dampening = luaL_checknumber(L, 7);
  o.weight_decay = luaL_checknumber(L, 8);
  o.nesterov = lua_toboolean(L, 9);
  lua_settop(L, 9);
  luaL_checkstack(L, 12, "sgd_steps");
  n = check_all(L, name, PARAMS, STATE); /* every check before any change */
  for (i = 1; i <= n; i++) {
    enum { P = TOP, G, ST, BUF };
    pbt_tensor *p, *g, *buf = NULL;
    int init = 0;
    pbt_error err;
    lua_settop(L, 9);
    lua_rawgeti(L, PARAMS, i);
    p = param_at(L, name, P, i);
    if (!(g = grad_at(L, name, P, i))) continue;
    lua_geti(L, STATE, i); /* ST: the parameter's state (nil before its first step) */
    if (o.momentum != 0) {
      int have = 0;
      if (lua_istable(L, ST)) {
        lua_getfield(L, ST, "momentum_buffer");
        have = lua_toboolean(L, BUF);
        if (!have) lua_pop(L, 1);
      }
      if (!have) {
        lua_pushvalue(L, ZEROS);
        lua_pushvalue(L, P);
        lua_call(L, 1, 1);
        init = 1;
      } else {
        lua_getfield(L, ST, "momentum_buffer_ready");
        init = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
        lua_pop(L, 1);
      }
      if (!(buf = lpbt_test_tensor(L, BUF)))
        return opt_error(L, "%s: the momentum_buffer of params[%d] is not a pbt.Tensor (got %s)",
                         name, (int)i, luaL_typename(L, BUF));
    }
    LPBT_CHECK(L, "sgd_step", pbt_sgd_step(p, g, buf, init, &o, &err), &err);
    pbt_tensor_bump_version(p);
    if (!lua_istable(L, ST)) {
      lua_createtable(L, 0, 3);
      lua_pushinteger(L, 0);
      lua_setfield(L, -2, "step");
      lua_pushvalue(L, -1);
      lua_seti(L, STATE, i);
      lua_replace(L, ST);
    }
    lua_getfield(L, ST, "step");
    lua_pushinteger(L, 1);
    lua_arith(L, LUA_OPADD);
    lua_setfield(L, ST, "step");
    if (init) {
      lua_pushvalue(L, BUF);
      lua_setfield(L, ST, "momentum_buffer");
      lua_getfield(L, ST, "momentum_buffer_ready");
      if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
        lua_pushboolean(L, 1);
        lua_setfield(L, ST, "momentum_buffer_ready");
      }
      lua_pop(L, 1);
    }
  }
  return 0;
}

/* optim's zero_grads: opt:zero_grad(set_to_none)'s loop -- every
 * parameter's .grad dropped, or (set_to_none false) each existing one
 * filled with zeros in place; everything checked before anything changes. */
static int m_zero_grads(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int drop = lua_toboolean(L, 3);
  lua_Integer i, n;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 3);
  n = (lua_Integer)lua_rawlen(L, 2);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    param_at(L, name, 4, i);
    if (!drop) {
      pbt_tensor *g = grad_at(L, name, 4, i);
      if (g) lpbt_check_inplace(L, g, "zero_");
    }
    lua_settop(L, 3);
  }
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    if (drop) {
      lua_pushnil(L);
      lua_setiuservalue(L, 4, LPBT_UV_GRAD);
    } else {
      pbt_tensor *g = grad_at(L, name, 4, i);
      if (g) {
        pbt_fill_(g, 0);
        LPBT_CHANGED(g);
      }
    }
    lua_settop(L, 3);
  }
  return 0;
}

const luaL_Reg lpbt_optim_module[] = {{"sgd_step", m_sgd_step},
                                      {"check_params", m_check_params},
                                      {"sgd_steps", m_sgd_steps},
                                      {"zero_grads", m_zero_grads},
                                      {"adam_step", m_adam_step},
                                      {"rmsprop_step", m_rmsprop_step},
                                      {NULL, NULL}};
