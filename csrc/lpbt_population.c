/* lpbt_population.c -- pbt.core.population: the pbt.Population type.
 *
 *   population.new{size = n, hparams = {{name = "lr", kind = "float"},
 *                                      {name = "bs", kind = "int"},
 *                                      {name = "opt", kind = "choice", choices = 3}},
 *                  window = 10}
 *   pop:share()                  another handle (reference) to the same population
 *   population.methods()         the methods table of pbt.Population
 *
 * Members, hyperparameter choices and event sequence numbers are 1-based
 * here, 0-based in the core (pbt_population.h). */
#include <math.h>
#include <string.h>

#include "lpbt.h"
#include "pbt_population.h"

#define LPBT_POPULATION "pbt.Population"

typedef struct lpbt_population {
  pbt_population *p; /* NULL once released */
} lpbt_population;

static const char *const kind_words[] = {"float", "int", "choice", NULL};

static lpbt_population *push_pop(lua_State *L);

static pbt_population *check_pop(lua_State *L, int arg) {
  lpbt_population *u = (lpbt_population *)lpbt_checkudata(L, arg, LPBT_POPULATION);
  if (u->p == NULL) luaL_argerror(L, arg, "population has been released");
  return u->p;
}

/* A 1-based member index at arg, as 0-based. */
static int64_t check_member(lua_State *L, pbt_population *p, int arg) {
  int64_t i = lpbt_check_integer(L, arg), n = pbt_population_size(p);
  if (i < 1 || i > n)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "member %I out of range for a population of %I",
                                  (lua_Integer)i, (lua_Integer)n));
  return i - 1;
}

static const char *check_name(lua_State *L, int arg) {
  size_t len;
  const char *name = luaL_checklstring(L, arg, &len);
  if (len == 0) luaL_argerror(L, arg, "empty name");
  if (strlen(name) != len) luaL_argerror(L, arg, "name contains a zero byte");
  return name;
}

static int push_hvalue(lua_State *L, const pbt_hparam_spec *s, pbt_hvalue v) {
  if (!v.set) return 0;
  if (s->kind == PBT_HPARAM_FLOAT) lua_pushnumber(L, v.f);
  else if (s->kind == PBT_HPARAM_INT) lua_pushinteger(L, (lua_Integer)v.i);
  else lua_pushinteger(L, (lua_Integer)v.i + 1);
  return 1;
}

void lpbt_push_population(lua_State *L, pbt_population *p) {
  lpbt_population *u = push_pop(L);
  pbt_population_retain(p);
  u->p = p;
}

pbt_population *lpbt_check_population(lua_State *L, int arg, const char *what) {
  lpbt_population *u = (lpbt_population *)lpbt_testudata(L, arg, LPBT_POPULATION);
  if (!u || !u->p) luaL_error(L, "%s must be a live pbt.Population", what);
  return u->p;
}

/* ---- methods ------------------------------------------------------------ */

static int p_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)pbt_population_size(check_pop(L, 1)));
  return 1;
}

static int p_window(lua_State *L) {
  lua_pushinteger(L, pbt_population_window(check_pop(L, 1)));
  return 1;
}

/* pop:hparam_specs() -> {{name=, kind=, choices=}, ...} */
static int p_hparam_specs(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int k, n = pbt_population_nhparams(p);
  lua_createtable(L, n, 0);
  for (k = 0; k < n; k++) {
    const pbt_hparam_spec *s = pbt_population_hparam_spec(p, k);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, s->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, kind_words[s->kind]);
    lua_setfield(L, -2, "kind");
    if (s->kind == PBT_HPARAM_CHOICE && s->nchoices > 0) {
      lua_pushinteger(L, (lua_Integer)s->nchoices);
      lua_setfield(L, -2, "choices");
    }
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

/* pop:member(i) -> {id=, generation=, parent=, steps=, status=, score=,
 * nscores=, work=, version=, root=, ncurve=, busy=} */
static int p_member(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  pbt_member_info m;
  pbt_error err;
  LPBT_CHECK(L, "member", pbt_population_member(p, i, &m, &err), &err);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)m.id + 1);
  lua_setfield(L, -2, "id");
  lua_pushinteger(L, (lua_Integer)m.generation);
  lua_setfield(L, -2, "generation");
  if (m.parent >= 0) {
    lua_pushinteger(L, (lua_Integer)m.parent + 1);
    lua_setfield(L, -2, "parent");
  }
  lua_pushinteger(L, (lua_Integer)m.steps);
  lua_setfield(L, -2, "steps");
  lua_pushstring(L, m.status == PBT_MEMBER_FAILED ? "failed" : "alive");
  lua_setfield(L, -2, "status");
  if (m.has_score) {
    lua_pushnumber(L, m.last_score);
    lua_setfield(L, -2, "score");
  }
  lua_pushinteger(L, (lua_Integer)m.nscores);
  lua_setfield(L, -2, "nscores");
  lua_pushinteger(L, (lua_Integer)m.work);
  lua_setfield(L, -2, "work");
  lua_pushinteger(L, (lua_Integer)m.version);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, (lua_Integer)m.root + 1);
  lua_setfield(L, -2, "root");
  lua_pushinteger(L, (lua_Integer)m.ncurve);
  lua_setfield(L, -2, "ncurve");
  lua_pushboolean(L, m.busy);
  lua_setfield(L, -2, "busy");
  return 1;
}

static int p_set_status(lua_State *L) {
  static const char *const words[] = {"alive", "failed", NULL};
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  int s = luaL_checkoption(L, 3, NULL, words);
  pbt_error err;
  LPBT_CHECK(L, "set_status",
             pbt_population_set_status(p, i, (pbt_member_status)s, &err), &err);
  return 0;
}

static int p_set_steps(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  int64_t n = lpbt_check_size(L, 3);
  pbt_error err;
  LPBT_CHECK(L, "set_steps", pbt_population_set_steps(p, i, n, &err), &err);
  return 0;
}

/* pop:set_hparam(i, name, value): float: a number; int: an integer; choice:
 * an integer 1..choices. */
static int p_set_hparam(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  const char *name = luaL_checkstring(L, 3);
  int k = pbt_population_find_hparam(p, name);
  const pbt_hparam_spec *s;
  pbt_hvalue v = {1, 0, 0};
  pbt_error err;
  if (k < 0) luaL_argerror(L, 3, lua_pushfstring(L, "no hyperparameter '%s'", name));
  s = pbt_population_hparam_spec(p, k);
  if (s->kind == PBT_HPARAM_FLOAT) {
    v.f = luaL_checknumber(L, 4);
  } else {
    int isnum;
    lua_Integer x = lua_tointegerx(L, 4, &isnum);
    if (!isnum)
      luaL_argerror(L, 4, lua_pushfstring(L, "hyperparameter '%s' takes an integer%s",
                                          name, s->kind == PBT_HPARAM_CHOICE
                                                    ? " (a 1-based choice)" : ""));
    if (s->kind == PBT_HPARAM_CHOICE) {
      if (x < 1 || (s->nchoices > 0 && x > s->nchoices))
        luaL_argerror(L, 4, lua_pushfstring(L, "choice %I out of range for '%s' (%I choices)",
                                            x, name, (lua_Integer)s->nchoices));
      x -= 1;
    }
    v.i = (int64_t)x;
  }
  LPBT_CHECK(L, "set_hparam", pbt_population_set_hparam(p, i, k, v, &err), &err);
  return 0;
}

/* pop:hparams(i) -> {name = value}; unset hyperparameters are absent. */
static int p_hparams(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  int k, n = pbt_population_nhparams(p);
  pbt_hvalue *v = (pbt_hvalue *)lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
  pbt_error err;
  LPBT_CHECK(L, "hparams", pbt_population_get_hparams(p, i, v, &err), &err);
  lua_createtable(L, 0, n);
  for (k = 0; k < n; k++) {
    const pbt_hparam_spec *s = pbt_population_hparam_spec(p, k);
    if (push_hvalue(L, s, v[k])) lua_setfield(L, -2, s->name);
  }
  return 1;
}

/* pop:set_state(i, name, tensor_or_number): a tensor is shared, not copied. */
static int p_set_state(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  const char *name = check_name(L, 3);
  pbt_error err;
  pbt_status s;
  if (lua_type(L, 4) == LUA_TNUMBER) {
    pbt_state_number v = {0, 0, 0};
    if (lua_isinteger(L, 4)) {
      v.is_int = 1;
      v.i = (int64_t)lua_tointeger(L, 4);
    } else {
      v.f = lua_tonumber(L, 4);
    }
    s = pbt_population_set_number(p, i, name, v, &err);
  } else {
    pbt_tensor *t = lpbt_test_tensor(L, 4);
    if (!t) luaL_typeerror(L, 4, "pbt.Tensor or number");
    if (!t->storage) luaL_argerror(L, 4, "tensor has been released");
    /* exploit writes into state tensors: each element needs its own memory */
    if (pbt_check_writable(t, &err) != PBT_OK) luaL_argerror(L, 4, err.msg);
    s = pbt_population_set_tensor(p, i, name, t, &err);
  }
  LPBT_CHECK(L, "set_state", s, &err);
  return 0;
}

/* pop:get_state(i, name) -> a tensor sharing the entry's storage, a number,
 * or nil when the member has no such entry. */
static int p_get_state(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  const char *name = check_name(L, 3);
  pbt_error err;
  switch (pbt_population_state_kind(p, i, name)) {
  case PBT_STATE_TENSOR: {
    pbt_tensor *t = lpbt_push_tensor(L);
    LPBT_CHECK(L, "get_state", pbt_population_get_tensor(p, i, name, t, &err), &err);
    return 1;
  }
  case PBT_STATE_NUMBER: {
    pbt_state_number v;
    LPBT_CHECK(L, "get_state", pbt_population_get_number(p, i, name, &v, &err), &err);
    if (v.is_int) lua_pushinteger(L, (lua_Integer)v.i);
    else lua_pushnumber(L, v.f);
    return 1;
  }
  default:
    lua_pushnil(L);
    return 1;
  }
}

/* pop:state_names(i) -> array of entry names, in order of registration */
static int p_state_names(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), k;
  pbt_member_info m;
  pbt_error err;
  char buf[256];
  LPBT_CHECK(L, "state_names", pbt_population_member(p, i, &m, &err), &err);
  lua_createtable(L, (int)m.nstate, 0);
  for (k = 0; k < m.nstate; k++) {
    if (pbt_population_state_name(p, i, k, buf, sizeof buf, NULL, &err) != PBT_OK)
      break; /* entries are never removed, so this does not happen */
    lua_pushstring(L, buf);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

/* pop:state_bytes(i) -> bytes of the member's state tensors */
static int p_state_bytes(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  size_t n;
  pbt_error err;
  LPBT_CHECK(L, "state_bytes", pbt_population_state_bytes(p, i, &n, &err), &err);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* pop:report(i, score [, step]) */
static int p_report(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  double score = luaL_checknumber(L, 3);
  int64_t step = lua_isnoneornil(L, 4) ? -1 : lpbt_check_size(L, 4);
  pbt_error err;
  LPBT_CHECK(L, "report", pbt_population_report(p, i, score, step, &err), &err);
  return 0;
}

/* pop:history(i) -> scores, oldest first */
static int p_history(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), n, k;
  double *h = (double *)lua_newuserdatauv(
      L, (size_t)pbt_population_window(p) * sizeof *h, 0);
  pbt_error err;
  LPBT_CHECK(L, "history", pbt_population_history(p, i, h, &n, &err), &err);
  lua_createtable(L, (int)n, 0);
  for (k = 0; k < n; k++) {
    lua_pushnumber(L, h[k]);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

/* pop:scores([out]) -> last score of each member (NaN for none), in a new
 * table or written into out (which is returned), so that a loop can reuse
 * one table. */
static int p_scores(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t n = pbt_population_size(p), from, k, got;
  double s[256];
  if (lua_isnoneornil(L, 2)) lua_createtable(L, n > 1 << 24 ? 0 : (int)n, 0);
  else {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
  }
  for (from = 0; from < n; from += got) {
    got = pbt_population_scores(p, from, 256, s);
    for (k = 0; k < got; k++) {
      lua_pushnumber(L, s[k]);
      lua_rawseti(L, -2, (lua_Integer)(from + k) + 1);
    }
  }
  return 1;
}

/* pop:exploit(recipient, donor) */
static int p_exploit(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t r = check_member(L, p, 2);
  int64_t d = check_member(L, p, 3);
  pbt_error err;
  if (r == d) luaL_argerror(L, 3, "a member cannot exploit itself");
  LPBT_CHECK(L, "exploit", pbt_population_exploit(p, r, d, &err), &err);
  return 0;
}

/* pop:log(kind, i [, other [, detail [, data]]]): data is the text of a
 * JSON object with further fields (kept as given); kind is "ready", "explore",
 * "failure" (also marks the member failed) or "note"; other is a member, or
 * nil or 0 for none. */
static int p_log(lua_State *L) {
  static const char *const words[] = {"ready", "explore", "failure", "note", NULL};
  static const pbt_event_kind kinds[] = {PBT_EVENT_READY, PBT_EVENT_EXPLORE,
                                         PBT_EVENT_FAILURE, PBT_EVENT_NOTE};
  pbt_population *p = check_pop(L, 1);
  int w = luaL_checkoption(L, 2, NULL, words);
  int64_t i = check_member(L, p, 3);
  int64_t other = lua_isnoneornil(L, 4) || (lua_isinteger(L, 4) && lua_tointeger(L, 4) == 0)
                      ? -1 : check_member(L, p, 4);
  const char *detail = luaL_optstring(L, 5, NULL);
  const char *data = luaL_optstring(L, 6, NULL);
  pbt_error err;
  pbt_status s;
  if (kinds[w] == PBT_EVENT_FAILURE) {
    if (other >= 0) luaL_argerror(L, 4, "a failure names no other member");
    if (data) luaL_argerror(L, 6, "a failure carries no data");
    s = pbt_population_fail(p, i, detail, &err);
  } else {
    s = pbt_population_log_data(p, kinds[w], i, other, detail, data, &err);
  }
  LPBT_CHECK(L, "log", s, &err);
  return 0;
}

static int p_nevents(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)pbt_population_nevents(check_pop(L, 1)));
  return 1;
}

/* pop:events([from [, with_time]]) -> array of events with seq >= from
 * (default 1): {seq, kind, member, other, step, score, generation, detail,
 * data, time}.  other, score, detail and data are absent when there are none; time (wall
 * clock seconds) only when with_time is true: it is not part of the log
 * proper. */
static int p_events(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  lua_Integer from = luaL_optinteger(L, 2, 1);
  int with_time = lua_toboolean(L, 3);
  pbt_event ev[64];
  int64_t next, n, k;
  lua_Integer out = 0;
  if (from < 1) luaL_argerror(L, 2, "sequence numbers start at 1");
  next = (int64_t)from - 1;
  lua_newtable(L);
  do {
    n = pbt_population_events(p, next, 64, ev);
    for (k = 0; k < n; k++) {
      const pbt_event *e = &ev[k];
      lua_createtable(L, 0, 9);
      lua_pushinteger(L, (lua_Integer)e->seq + 1);
      lua_setfield(L, -2, "seq");
      lua_pushstring(L, pbt_event_kind_name(e->kind));
      lua_setfield(L, -2, "kind");
      lua_pushinteger(L, (lua_Integer)e->member + 1);
      lua_setfield(L, -2, "member");
      if (e->other >= 0) {
        lua_pushinteger(L, (lua_Integer)e->other + 1);
        lua_setfield(L, -2, "other");
      }
      lua_pushinteger(L, (lua_Integer)e->step);
      lua_setfield(L, -2, "step");
      if (e->has_score) {
        lua_pushnumber(L, e->score);
        lua_setfield(L, -2, "score");
      }
      lua_pushinteger(L, (lua_Integer)e->generation);
      lua_setfield(L, -2, "generation");
      if (e->detail[0]) {
        lua_pushstring(L, e->detail);
        lua_setfield(L, -2, "detail");
      }
      if (e->data[0]) {
        lua_pushstring(L, e->data);
        lua_setfield(L, -2, "data");
      }
      if (with_time) {
        lua_pushnumber(L, e->time);
        lua_setfield(L, -2, "time");
      }
      lua_rawseti(L, -2, ++out);
    }
    next += n;
  } while (n == 64);
  return 1;
}

/* ---- published state, curves, schedules, decisions ---------------------------- */

/* The tensors of the array at arg, in a scratch userdata that Lua owns;
 * *n receives the count. */
static pbt_tensor **check_tensor_list(lua_State *L, int arg, int64_t *n) {
  lua_Integer k, len;
  pbt_tensor **ts;
  luaL_checktype(L, arg, LUA_TTABLE);
  len = LPBT_LEN(L, arg);
  ts = (pbt_tensor **)lua_newuserdatauv(L, (size_t)(len ? len : 1) * sizeof *ts, 0);
  for (k = 1; k <= len; k++) {
    lua_rawgeti(L, arg, k);
    ts[k - 1] = lpbt_test_tensor(L, -1);
    if (!ts[k - 1])
      luaL_argerror(L, arg, lua_pushfstring(L, "item %I is a %s, not a pbt.Tensor", k,
                                            luaL_typename(L, -1)));
    lua_pop(L, 1);
  }
  *n = (int64_t)len;
  return ts;
}

/* The numbers of the array at arg (integers kept as integers). */
static pbt_state_number *check_number_list(lua_State *L, int arg, int64_t *n) {
  lua_Integer k, len;
  pbt_state_number *v;
  luaL_checktype(L, arg, LUA_TTABLE);
  len = LPBT_LEN(L, arg);
  v = (pbt_state_number *)lua_newuserdatauv(L, (size_t)(len ? len : 1) * sizeof *v, 0);
  for (k = 1; k <= len; k++) {
    int t = lua_rawgeti(L, arg, k);
    pbt_state_number x = {0, 0, 0};
    if (t != LUA_TNUMBER)
      luaL_argerror(L, arg, lua_pushfstring(L, "item %I is a %s, not a number", k,
                                            luaL_typename(L, -1)));
    if (lua_isinteger(L, -1)) {
      x.is_int = 1;
      x.i = (int64_t)lua_tointeger(L, -1);
    } else {
      x.f = lua_tonumber(L, -1);
    }
    v[k - 1] = x;
    lua_pop(L, 1);
  }
  *n = (int64_t)len;
  return v;
}

/* pop:publish(i, tensors, numbers, score, step [, generator [, data]]): copies the
 * live tensors and numbers into member i's entries (each kind in order of
 * registration) and records the score they earned at that step. */
static int p_publish(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), nt, nn;
  pbt_generator *g = lua_isnoneornil(L, 7) ? NULL : lpbt_check_generator(L, 7);
  double score = luaL_checknumber(L, 5);
  int64_t step = lpbt_check_size(L, 6);
  const char *data = luaL_optstring(L, 8, NULL);
  uint64_t words[PBT_GENERATOR_STATE_WORDS];
  pbt_tensor **ts;
  pbt_state_number *nums;
  pbt_error err;
  lua_settop(L, 8); /* the lists' scratch space goes above the arguments */
  ts = check_tensor_list(L, 3, &nt);
  nums = check_number_list(L, 4, &nn);
  if (g) pbt_generator_state(g, words);
  LPBT_CHECK(L, "publish",
             pbt_population_publish_data(p, i, (const pbt_tensor *const *)ts, nt, nums, nn,
                                         g ? words : NULL, score, step, data, &err),
             &err);
  return 0;
}

/* pop:load(i, tensors [, generator]) -> numbers, version: copies member i's
 * published tensors into the live ones and returns its numbers; the
 * generator (when given) takes the saved state, if there is one. */
static int p_load(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), nt, nn = 0, k, version;
  pbt_generator *g = lua_isnoneornil(L, 4) ? NULL : lpbt_check_generator(L, 4);
  pbt_tensor **ts;
  pbt_state_number *nums;
  uint64_t words[PBT_GENERATOR_STATE_WORDS];
  int has_gen = 0;
  int64_t ntensors;
  pbt_error err;
  lua_settop(L, 4); /* the lists' scratch space goes above the arguments */
  ts = check_tensor_list(L, 3, &nt);
  LPBT_CHECK(L, "load", pbt_population_state_counts(p, i, &ntensors, &nn, &err), &err);
  nums = (pbt_state_number *)lua_newuserdatauv(L, (size_t)(nn ? nn : 1) * sizeof *nums, 0);
  LPBT_CHECK(L, "load",
             pbt_population_load(p, i, ts, nt, nums, nn, words, &has_gen, &version, &err),
             &err);
  if (g && has_gen) LPBT_CHECK(L, "load", pbt_generator_set_state(g, words, &err), &err);
  for (k = 0; k < nt; k++) pbt_tensor_bump_version(ts[k]); /* written in place: autograd sees it */
  lua_createtable(L, (int)nn, 0);
  for (k = 0; k < nn; k++) {
    if (nums[k].is_int) lua_pushinteger(L, (lua_Integer)nums[k].i);
    else lua_pushnumber(L, nums[k].f);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  lua_pushinteger(L, (lua_Integer)version);
  return 2;
}

/* pop:set_generator(i, generator): saves the generator's state as member i's. */
static int p_set_generator(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  uint64_t words[PBT_GENERATOR_STATE_WORDS];
  pbt_error err;
  pbt_generator_state(lpbt_check_generator(L, 3), words);
  LPBT_CHECK(L, "set_generator", pbt_population_set_generator(p, i, words, &err), &err);
  return 0;
}

static int p_set_work(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  int64_t n = lpbt_check_size(L, 3);
  pbt_error err;
  LPBT_CHECK(L, "set_work", pbt_population_set_work(p, i, n, &err), &err);
  return 0;
}

static int p_set_busy(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  pbt_error err;
  luaL_checktype(L, 3, LUA_TBOOLEAN);
  LPBT_CHECK(L, "set_busy", pbt_population_set_busy(p, i, lua_toboolean(L, 3), &err), &err);
  return 0;
}

/* pop:version(i) -> the version of member i's state entries */
static int p_version(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  pbt_member_info m;
  pbt_error err;
  LPBT_CHECK(L, "version", pbt_population_member(p, i, &m, &err), &err);
  lua_pushinteger(L, (lua_Integer)m.version);
  return 1;
}

/* pop:counts(i) -> steps, work, alive: member i's step count (through its
 * lineage), the steps its slot trained, and whether it is alive */
static int p_counts(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  pbt_member_info m;
  pbt_error err;
  LPBT_CHECK(L, "counts", pbt_population_member(p, i, &m, &err), &err);
  lua_pushinteger(L, (lua_Integer)m.steps);
  lua_pushinteger(L, (lua_Integer)m.work);
  lua_pushboolean(L, m.status == PBT_MEMBER_ALIVE);
  return 3;
}

/* pop:score(i) -> member i's last score (NaN when it has none) */
static int p_score(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  lua_pushnumber(L, pbt_population_score(p, check_member(L, p, 2)));
  return 1;
}

/* pop:curve(i [, from]) -> {{step, score}, ...}: the points member i's slot
 * reported, from point `from` (1-based, default 1) on. */
static int p_curve(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), from, n, k;
  lua_Integer out = 0;
  int64_t steps[128];
  double scores[128];
  lua_Integer f = luaL_optinteger(L, 3, 1);
  if (f < 1) luaL_argerror(L, 3, "points start at 1");
  from = (int64_t)f - 1;
  lua_newtable(L);
  do {
    n = pbt_population_curve(p, i, from, 128, steps, scores);
    for (k = 0; k < n; k++) {
      lua_createtable(L, 2, 0);
      lua_pushinteger(L, (lua_Integer)steps[k]);
      lua_rawseti(L, -2, 1);
      lua_pushnumber(L, scores[k]);
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, ++out);
    }
    from += n;
  } while (n == 128);
  return 1;
}

/* pop:schedule_mark(i): member i's hyperparameters from its current step on */
static int p_schedule_mark(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2);
  pbt_error err;
  LPBT_CHECK(L, "schedule_mark", pbt_population_schedule_mark(p, i, &err), &err);
  return 0;
}

/* pop:schedule(i) -> {root = r, {step = s, h = {name = value}}, ...}
 * (choices as 1-based indices, as pop:hparams gives them) */
static int p_schedule(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), count = 0, k, step;
  int nh = pbt_population_nhparams(p), j;
  pbt_hvalue *h = (pbt_hvalue *)lua_newuserdatauv(L, (size_t)(nh ? nh : 1) * sizeof *h, 0);
  pbt_member_info info;
  pbt_error err;
  LPBT_CHECK(L, "schedule", pbt_population_member(p, i, &info, &err), &err);
  LPBT_CHECK(L, "schedule", pbt_population_schedule_entry(p, i, -1, NULL, NULL, &count, &err),
             &err);
  lua_createtable(L, (int)count, 1);
  lua_pushinteger(L, (lua_Integer)info.root + 1);
  lua_setfield(L, -2, "root");
  for (k = 0; k < count; k++) {
    if (pbt_population_schedule_entry(p, i, k, &step, h, NULL, &err) != PBT_OK) break;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)step);
    lua_setfield(L, -2, "step");
    lua_createtable(L, 0, nh);
    for (j = 0; j < nh; j++) {
      const pbt_hparam_spec *s = pbt_population_hparam_spec(p, j);
      if (push_hvalue(L, s, h[j])) lua_setfield(L, -2, s->name);
    }
    lua_setfield(L, -2, "h");
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

/* ---- records: a member's whole entry in the store, for a database ---------------- */

static void put_u64le(unsigned char *out, uint64_t v) {
  int k;
  for (k = 0; k < 8; k++) out[k] = (unsigned char)(v >> (8 * k));
}

static uint64_t get_u64le(const unsigned char *in) {
  uint64_t v = 0;
  int k;
  for (k = 0; k < 8; k++) v |= (uint64_t)in[k] << (8 * k);
  return v;
}

/* Pushes {name = value} of nhparams values as pop:hparams gives them. */
static void push_hvalues(lua_State *L, pbt_population *p, const pbt_hvalue *h) {
  int j, nh = pbt_population_nhparams(p);
  lua_createtable(L, 0, nh);
  for (j = 0; j < nh; j++) {
    const pbt_hparam_spec *s = pbt_population_hparam_spec(p, j);
    if (push_hvalue(L, s, h[j])) lua_setfield(L, -2, s->name);
  }
}

/* pop:record(i) -> {generation, parent, root, steps, work, status, score,
 * history = {...}, curve = {{step, score}...}, schedule = {{step =, h =}...},
 * hparams = {...}, generator = 48 bytes or nil}: everything the store keeps
 * of member i but its state entries (for a database; pop:restore takes it). */
static int p_record(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), n, k;
  pbt_member_info m;
  pbt_error err;
  LPBT_CHECK(L, "record", pbt_population_member(p, i, &m, &err), &err);
  lua_settop(L, 2);
  lua_createtable(L, 0, 12); /* 3 */
  lua_pushinteger(L, (lua_Integer)m.generation);
  lua_setfield(L, 3, "generation");
  if (m.parent >= 0) {
    lua_pushinteger(L, (lua_Integer)m.parent + 1);
    lua_setfield(L, 3, "parent");
  }
  lua_pushinteger(L, (lua_Integer)m.root + 1);
  lua_setfield(L, 3, "root");
  lua_pushinteger(L, (lua_Integer)m.steps);
  lua_setfield(L, 3, "steps");
  lua_pushinteger(L, (lua_Integer)m.work);
  lua_setfield(L, 3, "work");
  lua_pushstring(L, m.status == PBT_MEMBER_FAILED ? "failed" : "alive");
  lua_setfield(L, 3, "status");
  if (m.has_score) {
    lua_pushnumber(L, m.last_score);
    lua_setfield(L, 3, "score");
  }
  lua_pushcfunction(L, p_history);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  lua_setfield(L, 3, "history");
  lua_pushcfunction(L, p_curve);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  lua_setfield(L, 3, "curve");
  {
    int nh = pbt_population_nhparams(p);
    pbt_hvalue *h = (pbt_hvalue *)lua_newuserdatauv(L, (size_t)(nh ? nh : 1) * sizeof *h, 0);
    int64_t step;
    LPBT_CHECK(L, "record", pbt_population_schedule_entry(p, i, -1, NULL, NULL, &n, &err), &err);
    lua_createtable(L, (int)n, 0);
    for (k = 0; k < n; k++) {
      if (pbt_population_schedule_entry(p, i, k, &step, h, NULL, &err) != PBT_OK) break;
      lua_createtable(L, 0, 2);
      lua_pushinteger(L, (lua_Integer)step);
      lua_setfield(L, -2, "step");
      push_hvalues(L, p, h);
      lua_setfield(L, -2, "h");
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, 3, "schedule");
    LPBT_CHECK(L, "record", pbt_population_get_hparams(p, i, h, &err), &err);
    push_hvalues(L, p, h);
    lua_setfield(L, 3, "hparams");
    lua_pop(L, 1);
  }
  {
    uint64_t words[PBT_GENERATOR_STATE_WORDS];
    unsigned char bytes[8 * PBT_GENERATOR_STATE_WORDS];
    int has = 0;
    LPBT_CHECK(L, "record", pbt_population_get_generator(p, i, words, &has, &err), &err);
    for (k = 0; k < PBT_GENERATOR_STATE_WORDS; k++) put_u64le(bytes + 8 * k, words[k]);
    if (has) {
      lua_pushlstring(L, (const char *)bytes, sizeof bytes);
      lua_setfield(L, 3, "generator");
    }
  }
  lua_settop(L, 3);
  return 1;
}

/* An integer field of the record at idx (raises naming it). */
static int64_t rec_integer(lua_State *L, int idx, const char *name, int optional,
                           int64_t def) {
  int t = lpbt_rawfield(L, idx, name);
  int64_t v = def;
  if (t == LUA_TNIL && optional) {
    lua_pop(L, 1);
    return def;
  }
  if (!lua_isinteger(L, -1))
    luaL_error(L, "restore: record field '%s' must be an integer, got %s", name,
               luaL_typename(L, -1));
  v = (int64_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* The values of {name = value} at idx into h (as set_hparam takes them). */
static void rec_hvalues(lua_State *L, pbt_population *p, int idx, pbt_hvalue *h,
                        const char *what) {
  int j, nh = pbt_population_nhparams(p);
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "restore: record field '%s' must be a table", what);
  for (j = 0; j < nh; j++) {
    const pbt_hparam_spec *s = pbt_population_hparam_spec(p, j);
    lpbt_rawfield(L, idx, s->name);
    h[j].set = 1;
    h[j].f = 0;
    h[j].i = 0;
    if (s->kind == PBT_HPARAM_FLOAT) {
      if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "restore: %s.%s must be a number", what, s->name);
      h[j].f = lua_tonumber(L, -1);
    } else {
      if (!lua_isinteger(L, -1))
        luaL_error(L, "restore: %s.%s must be an integer", what, s->name);
      h[j].i = (int64_t)lua_tointeger(L, -1) - (s->kind == PBT_HPARAM_CHOICE ? 1 : 0);
    }
    lua_pop(L, 1);
  }
}

/* pop:restore(i, record): the other way of pop:record (a resumed run). */
static int p_restore(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), k, n;
  int nh = pbt_population_nhparams(p);
  size_t hn = (size_t)(nh ? nh : 1);
  pbt_member_record r;
  pbt_error err;
  uint64_t words[PBT_GENERATOR_STATE_WORDS];
  const char *status;
  double *hist, *cscore;
  int64_t *cstep, *sstep;
  pbt_hvalue *sh, *hp;
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  memset(&r, 0, sizeof r);
  r.generation = rec_integer(L, 3, "generation", 0, 0);
  r.parent = rec_integer(L, 3, "parent", 1, 0) - 1;
  r.root = rec_integer(L, 3, "root", 0, 0) - 1;
  r.steps = rec_integer(L, 3, "steps", 0, 0);
  r.work = rec_integer(L, 3, "work", 0, 0);
  lpbt_rawfield(L, 3, "status");
  status = lua_tostring(L, -1);
  if (!status || (strcmp(status, "alive") && strcmp(status, "failed")))
    luaL_error(L, "restore: record field 'status' must be \"alive\" or \"failed\"");
  r.status = strcmp(status, "failed") == 0 ? PBT_MEMBER_FAILED : PBT_MEMBER_ALIVE;
  lua_pop(L, 1);
  if (lpbt_rawfield(L, 3, "score") == LUA_TNUMBER) {
    r.has_score = 1;
    r.last_score = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  /* history */
  if (lpbt_rawfield(L, 3, "history") != LUA_TTABLE) luaL_error(L, "restore: record field 'history' must be a table");
  n = (int64_t)LPBT_LEN(L, -1);
  hist = (double *)lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *hist, 0);
  for (k = 0; k < n; k++) {
    lua_rawgeti(L, -2, (lua_Integer)k + 1);
    hist[k] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  r.history = hist;
  r.nhistory = n;
  /* curve */
  if (lpbt_rawfield(L, 3, "curve") != LUA_TTABLE) luaL_error(L, "restore: record field 'curve' must be a table");
  n = (int64_t)LPBT_LEN(L, -1);
  cstep = (int64_t *)lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *cstep, 0);
  cscore = (double *)lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *cscore, 0);
  for (k = 0; k < n; k++) {
    lua_rawgeti(L, -3, (lua_Integer)k + 1);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (!lua_isinteger(L, -2) || lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "restore: curve point %d must be {step, score}", (int)k + 1);
    cstep[k] = (int64_t)lua_tointeger(L, -2);
    cscore[k] = lua_tonumber(L, -1);
    lua_pop(L, 3);
  }
  r.curve_steps = cstep;
  r.curve_scores = cscore;
  r.ncurve = n;
  /* schedule */
  if (lpbt_rawfield(L, 3, "schedule") != LUA_TTABLE) luaL_error(L, "restore: record field 'schedule' must be a table");
  n = (int64_t)LPBT_LEN(L, -1);
  sstep = (int64_t *)lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *sstep, 0);
  sh = (pbt_hvalue *)lua_newuserdatauv(L, (size_t)(n ? n : 1) * hn * sizeof *sh, 0);
  for (k = 0; k < n; k++) {
    int e;
    lua_rawgeti(L, -3, (lua_Integer)k + 1);
    e = lua_gettop(L);
    if (lua_type(L, e) != LUA_TTABLE) luaL_error(L, "restore: schedule entry %d must be a table", (int)k + 1);
    sstep[k] = rec_integer(L, e, "step", 0, 0);
    lpbt_rawfield(L, e, "h");
    rec_hvalues(L, p, lua_gettop(L), sh + (size_t)k * hn, "schedule entry's h");
    lua_settop(L, e - 1);
  }
  r.sched_steps = sstep;
  r.sched_h = sh;
  r.nsched = n;
  /* hyperparameters, generator */
  hp = (pbt_hvalue *)lua_newuserdatauv(L, hn * sizeof *hp, 0);
  lpbt_rawfield(L, 3, "hparams");
  rec_hvalues(L, p, lua_gettop(L), hp, "hparams");
  lua_pop(L, 1);
  r.hparams = hp;
  if (lpbt_rawfield(L, 3, "generator") != LUA_TNIL) {
    size_t len;
    const char *g = lua_tolstring(L, -1, &len);
    if (!g || len != 8 * PBT_GENERATOR_STATE_WORDS)
      luaL_error(L, "restore: record field 'generator' must be %d bytes", 8 * PBT_GENERATOR_STATE_WORDS);
    for (k = 0; k < PBT_GENERATOR_STATE_WORDS; k++) words[k] = get_u64le((const unsigned char *)g + 8 * k);
    r.generator = words;
  }
  LPBT_CHECK(L, "restore", pbt_population_restore(p, i, &r, &err), &err);
  return 0;
}

/* pop:restore_event{seq =, kind =, member =, other =, step =, score =,
 * generation =, detail =, data =, time =}: appends a logged event as it was
 * (seq must be the log's next). */
static int p_restore_event(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  pbt_event e;
  pbt_error err;
  const char *kind;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&e, 0, sizeof e);
  e.seq = rec_integer(L, 2, "seq", 0, 0) - 1;
  lpbt_rawfield(L, 2, "kind");
  kind = lua_tostring(L, -1);
  if (!kind || pbt_event_kind_from_name(kind, &e.kind) != 0)
    luaL_error(L, "restore_event: unknown event kind %s", kind ? kind : "nil");
  e.member = rec_integer(L, 2, "member", 0, 0) - 1;
  e.other = rec_integer(L, 2, "other", 1, 0) - 1;
  e.step = rec_integer(L, 2, "step", 0, 0);
  e.generation = rec_integer(L, 2, "generation", 0, 0);
  if (lpbt_rawfield(L, 2, "score") == LUA_TNUMBER) {
    e.has_score = 1;
    e.score = lua_tonumber(L, -1);
  } else {
    e.score = NAN;
  }
  lpbt_rawfield(L, 2, "detail");
  e.detail = lua_tostring(L, -1);
  lpbt_rawfield(L, 2, "data");
  e.data = lua_tostring(L, -1);
  lpbt_rawfield(L, 2, "time");
  e.time = lua_tonumber(L, -1);
  LPBT_CHECK(L, "restore_event", pbt_population_restore_event(p, &e, &err), &err);
  return 0;
}

static int p_stage(lua_State *L) {
  pbt_population_stage(check_pop(L, 1));
  return 0;
}

static int p_commit_staged(lua_State *L) {
  pbt_population_commit_staged(check_pop(L, 1));
  return 0;
}

static int check_mode(lua_State *L, int arg) {
  static const char *const modes[] = {"max", "min", NULL};
  return luaL_checkoption(L, arg, "max", modes);
}

static void push_choice(lua_State *L, int64_t j) {
  if (j >= 0) lua_pushinteger(L, (lua_Integer)j + 1);
  else lua_pushnil(L);
}

/* pop:tournament(i, generator [, mode]) -> j or nil */
static int p_tournament(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), j;
  pbt_generator *g = lpbt_check_generator(L, 3);
  pbt_error err;
  LPBT_CHECK(L, "tournament",
             pbt_population_tournament(p, i, check_mode(L, 4), g, &j, &err), &err);
  push_choice(L, j);
  return 1;
}

/* pop:ttest(i, generator, window, alpha [, mode]) -> j or nil */
static int p_ttest(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  int64_t i = check_member(L, p, 2), j;
  pbt_generator *g = lpbt_check_generator(L, 3);
  int64_t window = lpbt_check_integer(L, 4);
  double alpha = luaL_checknumber(L, 5);
  pbt_error err;
  LPBT_CHECK(L, "ttest",
             pbt_population_ttest(p, i, window, alpha, check_mode(L, 6), g, &j, &err), &err);
  push_choice(L, j);
  return 1;
}

/* pop:share() -> another handle holding its own reference to the same
 * population (worker threads with their own Lua states will be handed the
 * population by C code, with pbt_population_retain: a raw pointer passed
 * through Lua could not be checked). */
static int p_share(lua_State *L) {
  pbt_population *p = check_pop(L, 1);
  lpbt_population *u = push_pop(L);
  pbt_population_retain(p);
  u->p = p;
  return 1;
}

static int p_refcount(lua_State *L) {
  lua_pushinteger(L, pbt_population_refcount(check_pop(L, 1)));
  return 1;
}

static int p_gc(lua_State *L) {
  lpbt_population *u = (lpbt_population *)lpbt_checkudata(L, 1, LPBT_POPULATION);
  pbt_population *p = u->p;
  u->p = NULL;
  pbt_population_release(p);
  return 0;
}

static int p_tostring(lua_State *L) {
  lpbt_population *u = (lpbt_population *)lpbt_checkudata(L, 1, LPBT_POPULATION);
  if (!u->p) lua_pushliteral(L, "pbt.Population (released)");
  else
    lua_pushfstring(L, "pbt.Population of %I members (%d hyperparameters, window %d)",
                    (lua_Integer)pbt_population_size(u->p),
                    pbt_population_nhparams(u->p), pbt_population_window(u->p));
  return 1;
}

static const luaL_Reg pop_methods[] = {
    {"size", p_size},
    {"window", p_window},
    {"hparam_specs", p_hparam_specs},
    {"member", p_member},
    {"set_status", p_set_status},
    {"set_steps", p_set_steps},
    {"set_hparam", p_set_hparam},
    {"hparams", p_hparams},
    {"set_state", p_set_state},
    {"get_state", p_get_state},
    {"state_names", p_state_names},
    {"state_bytes", p_state_bytes},
    {"report", p_report},
    {"history", p_history},
    {"scores", p_scores},
    {"exploit", p_exploit},
    {"log", p_log},
    {"nevents", p_nevents},
    {"events", p_events},
    {"share", p_share},
    {"publish", p_publish},
    {"load", p_load},
    {"set_generator", p_set_generator},
    {"set_work", p_set_work},
    {"set_busy", p_set_busy},
    {"score", p_score},
    {"version", p_version},
    {"counts", p_counts},
    {"curve", p_curve},
    {"schedule_mark", p_schedule_mark},
    {"schedule", p_schedule},
    {"stage", p_stage},
    {"record", p_record},
    {"restore", p_restore},
    {"restore_event", p_restore_event},
    {"commit_staged", p_commit_staged},
    {"tournament", p_tournament},
    {"ttest", p_ttest},
    {"refcount", p_refcount},
    {NULL, NULL}};

static const luaL_Reg pop_meta[] = {{"__gc", p_gc},
                                    {"__close", p_gc},
                                    {"__tostring", p_tostring},
                                    {NULL, NULL}};

/* Pushes the pbt.Population metatable, creating it on first use with the
 * caller's two shared upvalues (the methods push tensors). */
static void push_meta(lua_State *L) {
  const luaL_Reg *f;
  if (!luaL_newmetatable(L, LPBT_POPULATION)) return;
  for (f = pop_meta; f->name; f++) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushcclosure(L, f->func, 2);
    lua_setfield(L, -2, f->name);
  }
  lua_createtable(L, 0, (int)(sizeof pop_methods / sizeof pop_methods[0]));
  for (f = pop_methods; f->name; f++) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushcclosure(L, f->func, 2);
    lua_setfield(L, -2, f->name);
  }
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "pbt.Population");
  lua_setfield(L, -2, "__metatable");
}

/* Pushes an empty pbt.Population userdata. */
static lpbt_population *push_pop(lua_State *L) {
  lpbt_population *u = (lpbt_population *)lpbt_newudata(L, sizeof *u, 0, LPBT_POPULATION);
  u->p = NULL;
  push_meta(L);
  lua_setmetatable(L, -2);
  return u;
}

/* ---- module functions ---------------------------------------------------- */

#define MAX_HPARAMS 256

static int m_new(lua_State *L) {
  pbt_hparam_spec specs[MAX_HPARAMS];
  lua_Integer size, window = PBT_POPULATION_DEFAULT_WINDOW, n = 0, k;
  pbt_error err;
  pbt_status s;
  lpbt_population *u;
  int isnum;
  luaL_checktype(L, 1, LUA_TTABLE);
  lpbt_rawfield(L, 1, "size");
  size = lua_tointegerx(L, -1, &isnum);
  if (!isnum || size < 1)
    luaL_argerror(L, 1, "field 'size' must be an integer of at least 1");
  lua_pop(L, 1);
  if (lpbt_rawfield(L, 1, "window") != LUA_TNIL) {
    window = lua_tointegerx(L, -1, &isnum);
    if (!isnum || window < 1 || window > 1 << 20)
      luaL_argerror(L, 1, "field 'window' must be an integer from 1 to 1048576");
  }
  lua_pop(L, 1);
  if (lpbt_rawfield(L, 1, "hparams") != LUA_TNIL) {
    int t = lua_gettop(L);
    if (!lua_istable(L, t)) luaL_argerror(L, 1, "field 'hparams' must be a table");
    n = (lua_Integer)lua_rawlen(L, t);
    if (n > MAX_HPARAMS)
      luaL_argerror(L, 1, lua_pushfstring(L, "at most %d hyperparameters", MAX_HPARAMS));
    for (k = 0; k < n; k++) {
      int kind;
      if (lua_rawgeti(L, t, k + 1) != LUA_TTABLE)
        luaL_argerror(L, 1, lua_pushfstring(L, "hparams[%I] must be a table", k + 1));
      if (lpbt_rawfield(L, -1, "name") != LUA_TSTRING)
        luaL_argerror(L, 1, lua_pushfstring(L, "hparams[%I].name must be a string", k + 1));
      specs[k].name = lua_tostring(L, -1); /* kept alive by the options table */
      lua_pop(L, 1);
      lpbt_rawfield(L, -1, "kind");
      kind = -1;
      if (lua_type(L, -1) == LUA_TSTRING) {
        int j;
        for (j = 0; kind_words[j]; j++)
          if (strcmp(lua_tostring(L, -1), kind_words[j]) == 0) kind = j;
      }
      if (kind < 0)
        luaL_argerror(L, 1, lua_pushfstring(L,
                        "hparams[%I].kind must be 'float', 'int' or 'choice'", k + 1));
      lua_pop(L, 1);
      specs[k].kind = (pbt_hparam_kind)kind;
      specs[k].nchoices = 0;
      lpbt_rawfield(L, -1, "choices");
      if (lua_istable(L, -1)) {
        specs[k].nchoices = (int64_t)lua_rawlen(L, -1);
        if (specs[k].nchoices == 0)
          luaL_argerror(L, 1, lua_pushfstring(L, "hparams[%I].choices is empty", k + 1));
      }
      else if (!lua_isnil(L, -1)) {
        lua_Integer c = lua_tointegerx(L, -1, &isnum);
        if (!isnum || c < 1)
          luaL_argerror(L, 1, lua_pushfstring(L,
                          "hparams[%I].choices must be a table or a positive integer", k + 1));
        specs[k].nchoices = (int64_t)c;
      }
      lua_pop(L, 2);
    }
  }
  u = push_pop(L);
  s = pbt_population_new(&u->p, (int64_t)size, (int)n, specs, (int)window, &err);
  if (s != PBT_OK) {
    if (s == PBT_ERR_ARG) luaL_argerror(L, 1, err.msg);
    lpbt_raise(L, "new", &err);
  }
  return 1;
}


static int m_methods(lua_State *L) {
  push_meta(L);
  lpbt_rawfield(L, -1, "__index");
  return 1;
}

const luaL_Reg lpbt_population_module[] = {{"new", m_new},
                                           {"methods", m_methods},
                                           {NULL, NULL}};
