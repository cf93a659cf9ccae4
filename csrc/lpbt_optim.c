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
 * sanctioned way to modify a parameter that requires grad. */
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

const luaL_Reg lpbt_optim_module[] = {{"sgd_step", m_sgd_step},
                                      {"adam_step", m_adam_step},
                                      {"rmsprop_step", m_rmsprop_step},
                                      {NULL, NULL}};
