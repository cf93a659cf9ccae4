/* lpbt_random.c -- pbt.Generator and random tensors. */
#include <string.h>

#include "lpbt.h"

static pbt_generator *check_gen(lua_State *L, int arg) {
  return (pbt_generator *)lpbt_checkudata(L, arg, LPBT_GENERATOR);
}

pbt_generator *lpbt_push_generator(lua_State *L, uint64_t seed) {
  pbt_generator *g = (pbt_generator *)lpbt_newudata(L, sizeof *g, 0, LPBT_GENERATOR);
  pbt_generator_seed(g, seed);
  luaL_setmetatable(L, LPBT_GENERATOR);
  return g;
}

/* pbt.Generator([seed]) */
static int g_new(lua_State *L) {
  int64_t seed = lua_isnoneornil(L, 1) ? 0 : lpbt_check_integer(L, 1);
  lpbt_push_generator(L, (uint64_t)seed);
  return 1;
}

/* g:uniform() in [0, 1); g:uniform(hi) in [0, hi); g:uniform(lo, hi) */
static int g_uniform(lua_State *L) {
  pbt_generator *g = check_gen(L, 1);
  double lo = 0, hi = 1, u;
  if (!lua_isnoneornil(L, 3)) {
    lo = luaL_checknumber(L, 2);
    hi = luaL_checknumber(L, 3);
  } else if (!lua_isnoneornil(L, 2)) {
    hi = luaL_checknumber(L, 2);
  }
  u = pbt_generator_uniform(g);
  lua_pushnumber(L, lo + (hi - lo) * u);
  return 1;
}

/* g:normal([mean [, std]]) */
static int g_normal(lua_State *L) {
  pbt_generator *g = check_gen(L, 1);
  double mean = luaL_optnumber(L, 2, 0), std = luaL_optnumber(L, 3, 1);
  luaL_argcheck(L, std >= 0, 3, "standard deviation must be >= 0");
  lua_pushnumber(L, mean + std * pbt_generator_normal(g));
  return 1;
}

/* g:integer(lo, hi): uniform in [lo, hi], both included (as math.random) */
static int g_integer(lua_State *L) {
  pbt_generator *g = check_gen(L, 1);
  int64_t lo = lpbt_check_integer(L, 2), hi = lpbt_check_integer(L, 3);
  luaL_argcheck(L, lo <= hi, 3,
                lua_pushfstring(L, "empty interval [%I, %I]", (lua_Integer)lo,
                                (lua_Integer)hi));
  lua_pushinteger(L, (lua_Integer)pbt_generator_integer(g, lo, hi));
  return 1;
}

static int g_clone(lua_State *L) {
  pbt_generator *g = check_gen(L, 1);
  pbt_generator *c = lpbt_push_generator(L, 0);
  memcpy(c, g, sizeof *c);
  return 1;
}

/* g:state() -> table of PBT_GENERATOR_STATE_WORDS integers */
static int g_state(lua_State *L) {
  pbt_generator *g = check_gen(L, 1);
  uint64_t w[PBT_GENERATOR_STATE_WORDS];
  int i;
  pbt_generator_state(g, w);
  lua_createtable(L, PBT_GENERATOR_STATE_WORDS, 0);
  for (i = 0; i < PBT_GENERATOR_STATE_WORDS; i++) {
    lua_pushinteger(L, (lua_Integer)w[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int g_set_state(lua_State *L) {
  pbt_generator *g = check_gen(L, 1);
  uint64_t w[PBT_GENERATOR_STATE_WORDS];
  pbt_error err;
  int i, isnum;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_argcheck(L, LPBT_LEN(L, 2) == PBT_GENERATOR_STATE_WORDS, 2,
                "state must be a table of 6 integers (from state())");
  for (i = 0; i < PBT_GENERATOR_STATE_WORDS; i++) {
    lua_rawgeti(L, 2, i + 1);
    w[i] = (uint64_t)lua_tointegerx(L, -1, &isnum);
    if (!isnum) luaL_argerror(L, 2, "state must be a table of 6 integers (from state())");
    lua_pop(L, 1);
  }
  if (pbt_generator_set_state(g, w, &err) != PBT_OK)
    luaL_argerror(L, 2, err.msg);
  lua_settop(L, 1);
  return 1;
}

static int g_tostring(lua_State *L) {
  lua_pushfstring(L, "pbt.Generator (%p)", (void *)check_gen(L, 1));
  return 1;
}

void lpbt_random_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"uniform", g_uniform}, {"normal", g_normal},
      {"integer", g_integer}, {"clone", g_clone},
      {"state", g_state},     {"set_state", g_set_state},
      {NULL, NULL}};
  if (luaL_newmetatable(L, LPBT_GENERATOR)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, g_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

/* ---- module functions (upvalue 1 is the default generator) ---------------- */

static int m_manual_seed(lua_State *L) {
  pbt_generator *g = (pbt_generator *)lua_touserdata(L, LPBT_UPV_GENERATOR);
  pbt_generator_seed(g, (uint64_t)lpbt_check_integer(L, 1));
  return 0;
}

static int m_default_generator(lua_State *L) {
  lua_pushvalue(L, LPBT_UPV_GENERATOR);
  return 1;
}

/* rand / randn (shape..., [opts]) */
static pbt_tensor *random_tensor(lua_State *L, int first, const char *fname,
                                 pbt_generator **g) {
  static const char *const known[] = {"dtype", "generator", NULL};
  int opts;
  pbt_tensor *t = lpbt_new_from_shape(L, first, fname, known, &opts);
  *g = lpbt_opt_generator(L, opts);
  return t;
}

static int f_rand(lua_State *L) {
  pbt_generator *g;
  pbt_tensor *t = random_tensor(L, 1, "rand", &g);
  pbt_fill_uniform_(t, g, 0, 1);
  return 1;
}

static int f_randn(lua_State *L) {
  pbt_generator *g;
  pbt_tensor *t = random_tensor(L, 1, "randn", &g);
  pbt_fill_normal_(t, g, 0, 1);
  return 1;
}

/* randint(lo, hi, shape..., [opts]): integers in [lo, hi], both included */
static int f_randint(lua_State *L) {
  int64_t lo = lpbt_check_integer(L, 1), hi = lpbt_check_integer(L, 2);
  pbt_generator *g;
  pbt_tensor *t;
  luaL_argcheck(L, lo <= hi, 2,
                lua_pushfstring(L, "empty interval [%I, %I]", (lua_Integer)lo,
                                (lua_Integer)hi));
  t = random_tensor(L, 3, "randint", &g);
  pbt_fill_randint_(t, g, lo, hi);
  return 1;
}

/* t:uniform_([lo, hi] [, generator]) and t:normal_([mean, std] [, generator]) */
static pbt_generator *trailing_generator(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg))
    return (pbt_generator *)lua_touserdata(L, LPBT_UPV_GENERATOR);
  return check_gen(L, arg);
}

static int m_uniform_(lua_State *L) {
  pbt_tensor *t = lpbt_check_tensor(L, 1);
  lpbt_check_inplace(L, t, "uniform_");
  double lo = luaL_optnumber(L, 2, 0), hi = luaL_optnumber(L, 3, 1);
  pbt_fill_uniform_(t, trailing_generator(L, 4), lo, hi);
  LPBT_CHANGED(t);
  lua_settop(L, 1);
  return 1;
}

static int m_normal_(lua_State *L) {
  pbt_tensor *t = lpbt_check_tensor(L, 1);
  lpbt_check_inplace(L, t, "normal_");
  double mean = luaL_optnumber(L, 2, 0), std = luaL_optnumber(L, 3, 1);
  luaL_argcheck(L, std >= 0, 3, "standard deviation must be >= 0");
  pbt_fill_normal_(t, trailing_generator(L, 4), mean, std);
  LPBT_CHANGED(t);
  lua_settop(L, 1);
  return 1;
}

const luaL_Reg lpbt_random_methods[] = {
    {"uniform_", m_uniform_}, {"normal_", m_normal_}, {NULL, NULL}};
const luaL_Reg lpbt_random_functions[] = {
    {"rand", f_rand}, {"randn", f_randn}, {"randint", f_randint}, {NULL, NULL}};
const luaL_Reg lpbt_random_module[] = {
    {"Generator", g_new},
    {"manual_seed", m_manual_seed},
    {"default_generator", m_default_generator},
    {NULL, NULL}};
