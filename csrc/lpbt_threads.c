/* lpbt_threads.c -- pbt.core.threads: worker threads, each with a Lua state
 * of its own, the channels between them and the data they share.
 *
 *   threads.channel()                 a new pbt.Channel
 *     ch:send(s)  ch:receive([timeout]) -> s, or nil, "timeout" | "closed"
 *     ch:close()  ch:pending()
 *   threads.start{count = n, module = "pbt.worker", args = s,
 *                 population = pop, tasks = ch, results = ch,
 *                 path = package.path, cpath = package.cpath,
 *                 memory_limit = bytes}      -> pbt.Workers
 *     Starts n threads.  Each makes a Lua state (its heap limited to
 *     memory_limit bytes when given), opens the standard libraries, sets
 *     package.path / cpath and calls require(module).thread_main(), which
 *     reads its context with threads.context().  When thread_main returns
 *     "restart" the thread closes its state and starts a fresh one; when it
 *     raises, "!" .. message is sent on the results channel.  SIGINT is
 *     blocked in the threads: Ctrl-C reaches the main thread.
 *     w:interrupt()  makes every worker's running Lua code raise
 *                    "interrupted!" (at its next instruction)
 *     w:join()       closes the tasks channel and waits for every thread
 *     w:size()
 *   threads.context() -> {id =, count =, args =, population =, tasks =,
 *                         results =} in a worker's state, nil elsewhere
 *   threads.shared_get(name) -> bytes, {tensors} when the process has the
 *     value (waiting while another state makes it), or nil when the caller
 *     is to make it and then call threads.shared_put(name, bytes, tensors)
 *     (-> bytes, {views}) or threads.shared_abandon(name)
 *   threads.cpu_count()   CPUs this process may run on (sched_getaffinity)
 *   threads.blas_threads([n]) -> OpenBLAS's thread count (setting it to n)
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "lpbt.h"
#include "pbt_channel.h"
#include "pbt_population.h"

#define LPBT_CHANNEL "pbt.Channel"
#define LPBT_WORKERS "pbt.Workers"
#define LPBT_SHARED "pbt.Shared"

/* OpenBLAS's own controls (cblas.h of Debian's OpenBLAS declares them) */
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);

static const char shared_key = 's';  /* registry: this state's pbt.Shared */
static const char worker_key = 'w';  /* registry: light pointer to the worker */

/* ---- channels ------------------------------------------------------------ */

typedef struct channel_box {
  pbt_channel *c;
} channel_box;

static pbt_channel *check_channel(lua_State *L, int arg) {
  channel_box *b = (channel_box *)lpbt_checkudata(L, arg, LPBT_CHANNEL);
  if (!b->c) luaL_argerror(L, arg, "channel has been released");
  return b->c;
}

static int ch_gc(lua_State *L) {
  channel_box *b = (channel_box *)lpbt_checkudata(L, 1, LPBT_CHANNEL);
  pbt_channel *c = b->c;
  b->c = NULL;
  pbt_channel_release(c);
  return 0;
}

static int ch_send(lua_State *L) {
  pbt_channel *c = check_channel(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  pbt_error err;
  LPBT_CHECK(L, "send", pbt_channel_send(c, s, len, &err), &err);
  return 0;
}

static int ch_receive(lua_State *L) {
  pbt_channel *c = check_channel(L, 1);
  double timeout = luaL_optnumber(L, 2, -1);
  void *data;
  size_t len;
  int r;
  pbt_buf *b;
  if (timeout != timeout) luaL_argerror(L, 2, "timeout is NaN");
  /* the message's block goes into a Lua-owned buffer (freed on return), so
   * that lua_pushlstring may raise without leaking it */
  b = lpbt_push_buf(L);
  r = pbt_channel_receive(c, timeout, &data, &len);
  if (r == 1) {
    b->data = (unsigned char *)data;
    b->len = b->cap = len;
    lua_pushlstring(L, (const char *)data, len);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, r == 0 ? "timeout" : "closed");
  return 2;
}

static int ch_close(lua_State *L) {
  pbt_channel_close(check_channel(L, 1));
  return 0;
}

static int ch_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)pbt_channel_pending(check_channel(L, 1)));
  return 1;
}

static void push_channel(lua_State *L, pbt_channel *c) {
  static const luaL_Reg methods[] = {{"send", ch_send},
                                     {"receive", ch_receive},
                                     {"close", ch_close},
                                     {"pending", ch_pending},
                                     {NULL, NULL}};
  channel_box *b = (channel_box *)lpbt_newudata(L, sizeof *b, 0, LPBT_CHANNEL);
  b->c = NULL;
  if (luaL_newmetatable(L, LPBT_CHANNEL)) {
    lua_pushcfunction(L, ch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, ch_gc);
    lua_setfield(L, -2, "__close");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  pbt_channel_retain(c);
  b->c = c;
}

static int t_channel(lua_State *L) {
  pbt_channel *c;
  pbt_error err;
  LPBT_CHECK(L, "channel", pbt_channel_new(&c, &err), &err);
  push_channel(L, c);      /* retains */
  pbt_channel_release(c);  /* the userdata holds it now */
  return 1;
}

/* ---- the shared registry --------------------------------------------------- */

typedef struct shared_box {
  pbt_shared *s;
} shared_box;

static int sh_gc(lua_State *L) {
  shared_box *b = (shared_box *)lpbt_checkudata(L, 1, LPBT_SHARED);
  pbt_shared *s = b->s;
  b->s = NULL;
  pbt_shared_release(s);
  return 0;
}

/* Installs s (retained) as this state's registry. */
static void install_shared(lua_State *L, pbt_shared *s) {
  shared_box *b = (shared_box *)lpbt_newudata(L, sizeof *b, 0, LPBT_SHARED);
  b->s = NULL;
  if (luaL_newmetatable(L, LPBT_SHARED)) {
    lua_pushcfunction(L, sh_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  pbt_shared_retain(s);
  b->s = s;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &shared_key);
}

/* This state's registry, made on first use. */
static pbt_shared *state_shared(lua_State *L) {
  pbt_shared *s = NULL;
  pbt_error err;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &shared_key) == LUA_TUSERDATA)
    s = ((shared_box *)lua_touserdata(L, -1))->s;
  lua_pop(L, 1);
  if (s) return s;
  LPBT_CHECK(L, "shared", pbt_shared_new(&s, &err), &err);
  install_shared(L, s); /* retains */
  pbt_shared_release(s);
  return s;
}

/* Pushes bytes and a table of views of the entry's tensors. */
static int push_entry(lua_State *L, const pbt_shared_entry *e) {
  size_t len;
  const void *bytes = pbt_shared_bytes(e, &len);
  int64_t k, n = pbt_shared_ntensors(e);
  lua_pushlstring(L, (const char *)bytes, len);
  lua_createtable(L, n > 1 << 24 ? 0 : (int)n, 0);
  for (k = 0; k < n; k++) {
    pbt_tensor *t = lpbt_push_tensor(L);
    pbt_shared_tensor(e, k, t);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 2;
}

/* A registry name at arg: a string without zero bytes. */
static const char *check_shared_name(lua_State *L, int arg) {
  size_t len;
  const char *name = luaL_checklstring(L, arg, &len);
  if (strlen(name) != len) luaL_argerror(L, arg, "name contains a zero byte");
  return name;
}

static int t_shared_get(lua_State *L) {
  const char *name = check_shared_name(L, 1);
  pbt_shared *s = state_shared(L);
  const pbt_shared_entry *e;
  if (!pbt_shared_begin(s, name, &e)) {
    lua_pushnil(L);
    return 1;
  }
  return push_entry(L, e);
}

static int t_shared_put(lua_State *L) {
  const char *name = check_shared_name(L, 1);
  size_t len;
  const char *bytes = luaL_checklstring(L, 2, &len);
  pbt_shared *s = state_shared(L);
  const pbt_shared_entry *e;
  pbt_tensor **ts;
  lua_Integer k, n;
  pbt_error err;
  luaL_checktype(L, 3, LUA_TTABLE);
  n = LPBT_LEN(L, 3);
  ts = (pbt_tensor **)lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ts, 0);
  for (k = 1; k <= n; k++) {
    lua_rawgeti(L, 3, k);
    ts[k - 1] = lpbt_test_tensor(L, -1);
    if (!ts[k - 1] || !ts[k - 1]->storage) {
      pbt_shared_abandon(s, name);
      luaL_argerror(L, 3, lua_pushfstring(L, "item %I is not a live pbt.Tensor", k));
    }
    lua_pop(L, 1);
  }
  LPBT_CHECK(L, "shared",
             pbt_shared_put(s, name, bytes, len, (const pbt_tensor *const *)ts, (int64_t)n,
                            &e, &err),
             &err);
  return push_entry(L, e);
}

static int t_shared_abandon(lua_State *L) {
  pbt_shared_abandon(state_shared(L), check_shared_name(L, 1));
  return 0;
}

/* ---- workers --------------------------------------------------------------- */

typedef struct pool pool;

typedef struct worker {
  pool *pool;
  int id, started;
  pthread_t thread;
  int interrupted;      /* __atomic builtins: read by the worker's own hook */
  size_t used;          /* bytes of its Lua heap */
} worker;

struct pool {
  int n;
  worker *w;
  char *module, *args, *path, *cpath;
  size_t args_len;
  size_t memory_limit;
  pbt_population *pop;
  pbt_channel *tasks, *results;
  pbt_shared *shared;
  int joined;
};

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  worker *w = (worker *)ud;
  size_t old = ptr ? osize : 0;
  void *q;
  if (nsize == 0) {
    free(ptr);
    w->used -= old;
    return NULL;
  }
  if (w->pool->memory_limit && nsize > old &&
      w->used + (nsize - old) > w->pool->memory_limit)
    return NULL;
  q = realloc(ptr, nsize);
  if (q) w->used = w->used - old + nsize;
  return q;
}

/* Each worker state checks its flag every STOP_CHECK instructions, from
 * its own thread (a hook set from another thread could race with the
 * state's own frames); coroutines inherit the hook and the extra space
 * that points at the worker.  While the flag is up the hook raises again
 * at every check, so a pcall in user code cannot swallow it for long. */
#define STOP_CHECK 1000

static void stop_hook(lua_State *L, lua_Debug *ar) {
  worker *w = *(worker **)lua_getextraspace(L);
  (void)ar;
  if (w && __atomic_load_n(&w->interrupted, __ATOMIC_RELAXED)) luaL_error(L, "interrupted!");
}

/* Runs in the worker's fresh state: paths, the module, thread_main(). */
static int bootstrap(lua_State *L) {
  worker *w = (worker *)lua_touserdata(L, 1);
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, w->pool->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, w->pool->cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  /* pbt.core is this very code: a worker's state takes it from here, so a
   * host that links pbt statically (no core.so on any path) runs workers */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pbt_core);
  lua_setfield(L, -2, "pbt.core");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, w);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &worker_key);
  install_shared(L, w->pool->shared);
  lua_getglobal(L, "require");
  lua_pushstring(L, w->pool->module);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "thread_main");
  lua_call(L, 0, 1);
  return 1;
}

static void *worker_main(void *arg) {
  worker *w = (worker *)arg;
  pbt_error err;
  for (;;) {
    lua_State *L;
    int status, restart;
    w->used = 0;
    L = lua_newstate(limited_alloc, w);
    if (!L) {
      static const char msg[] = "!not enough memory to start a worker";
      (void)pbt_channel_send(w->pool->results, msg, sizeof msg - 1, &err);
      break;
    }
    *(worker **)lua_getextraspace(L) = w;
    lua_sethook(L, stop_hook, LUA_MASKCOUNT, STOP_CHECK);
    lua_pushcfunction(L, bootstrap);
    lua_pushlightuserdata(L, w);
    status = lua_pcall(L, 1, 1, 0);
    restart = status == LUA_OK && lua_type(L, -1) == LUA_TSTRING &&
              strcmp(lua_tostring(L, -1), "restart") == 0;
    if (status != LUA_OK) {
      const char *m = lua_tostring(L, -1);
      size_t len = m ? strlen(m) : 0;
      char *msg = malloc(len + 2);
      if (msg) {
        msg[0] = '!';
        memcpy(msg + 1, m ? m : "", len);
        (void)pbt_channel_send(w->pool->results, msg, len + 1, &err);
        free(msg);
      }
    }
    restart = restart && !__atomic_load_n(&w->interrupted, __ATOMIC_RELAXED);
    lua_sethook(L, NULL, 0, 0); /* no interruption inside the finalizers */
    lua_close(L);
    if (!restart) break;
  }
  return NULL;
}

static pool *check_pool(lua_State *L, int arg) {
  pool **b = (pool **)lpbt_checkudata(L, arg, LPBT_WORKERS);
  if (!*b) luaL_argerror(L, arg, "workers have been released");
  return *b;
}

static void pool_interrupt(pool *p) {
  int k;
  for (k = 0; k < p->n; k++) __atomic_store_n(&p->w[k].interrupted, 1, __ATOMIC_RELAXED);
}

static void pool_join(pool *p) {
  int k;
  if (p->joined) return;
  p->joined = 1;
  pbt_channel_close(p->tasks);
  for (k = 0; k < p->n; k++)
    if (p->w[k].started) pthread_join(p->w[k].thread, NULL);
}

static void pool_free(pool *p) {
  if (!p) return;
  pool_join(p);
  free(p->w);
  free(p->module);
  free(p->args);
  free(p->path);
  free(p->cpath);
  pbt_population_release(p->pop);
  pbt_channel_release(p->tasks);
  pbt_channel_release(p->results);
  pbt_shared_release(p->shared);
  free(p);
}

static int w_gc(lua_State *L) {
  pool **b = (pool **)lpbt_checkudata(L, 1, LPBT_WORKERS);
  pool *p = *b;
  *b = NULL;
  if (p && !p->joined) pool_interrupt(p);
  pool_free(p);
  return 0;
}

static int w_interrupt(lua_State *L) {
  pool_interrupt(check_pool(L, 1));
  return 0;
}

static int w_join(lua_State *L) {
  pool_join(check_pool(L, 1));
  return 0;
}

static int w_size(lua_State *L) {
  lua_pushinteger(L, check_pool(L, 1)->n);
  return 1;
}

static char *field_string(lua_State *L, int idx, const char *name, int required,
                          size_t *length) {
  const char *s;
  size_t len;
  char *d;
  int t = lpbt_rawfield(L, idx, name);
  if (t == LUA_TNIL && !required) {
    lua_pop(L, 1);
    return NULL;
  }
  if (t != LUA_TSTRING)
    luaL_error(L, "start: option '%s' must be a string, got %s", name, lua_typename(L, t));
  s = lua_tolstring(L, -1, &len);
  d = malloc(len + 1);
  if (d) memcpy(d, s, len + 1);
  if (length) *length = len;
  lua_pop(L, 1);
  return d;
}

/* The channel of option `name` of the table at 1, retained. */
static pbt_channel *option_channel(lua_State *L, const char *name) {
  channel_box *b;
  lpbt_rawfield(L, 1, name);
  b = (channel_box *)lpbt_testudata(L, -1, LPBT_CHANNEL);
  if (!b || !b->c) luaL_error(L, "start: option '%s' must be a live pbt.Channel", name);
  pbt_channel_retain(b->c);
  lua_pop(L, 1);
  return b->c;
}

static int t_start(lua_State *L) {
  static const char *const known[] = {"count", "module", "args", "population", "tasks",
                                      "results", "path", "cpath", "memory_limit", NULL};
  pool **box, *p;
  lua_Integer n = 0;
  int k;
  sigset_t block, old;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int ok = 0, j;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (j = 0; known[j]; j++) ok |= strcmp(lua_tostring(L, -2), known[j]) == 0;
    if (!ok) luaL_error(L, "start: unknown option '%s'", luaL_tolstring(L, -2, NULL));
    lua_pop(L, 1);
  }
  if (lpbt_rawfield(L, 1, "count") != LUA_TNUMBER || !lua_isinteger(L, -1) ||
      (n = lua_tointeger(L, -1)) < 1 || n > 1024)
    luaL_error(L, "start: count must be an integer in 1..1024");
  lua_pop(L, 1);
  box = (pool **)lpbt_newudata(L, sizeof *box, 0, LPBT_WORKERS);
  *box = NULL;
  if (luaL_newmetatable(L, LPBT_WORKERS)) {
    static const luaL_Reg methods[] = {
        {"interrupt", w_interrupt}, {"join", w_join}, {"size", w_size}, {NULL, NULL}};
    lua_pushcfunction(L, w_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, w_gc);
    lua_setfield(L, -2, "__close");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  p = calloc(1, sizeof *p);
  if (!p) return luaL_error(L, "start: not enough memory");
  *box = p; /* from here on __gc frees whatever was made */
  p->joined = 1; /* nothing to join yet */
  p->w = calloc((size_t)n, sizeof *p->w);
  if (!p->w) return luaL_error(L, "start: not enough memory");
  p->n = (int)n;
  p->module = field_string(L, 1, "module", 1, NULL);
  p->args = field_string(L, 1, "args", 0, &p->args_len);
  p->path = field_string(L, 1, "path", 1, NULL);
  p->cpath = field_string(L, 1, "cpath", 1, NULL);
  if (!p->module || !p->path || !p->cpath) return luaL_error(L, "start: not enough memory");
  if (lpbt_rawfield(L, 1, "memory_limit") != LUA_TNIL) {
    lua_Integer m = lua_tointeger(L, -1);
    if (!lua_isinteger(L, -1) || m < 0)
      luaL_error(L, "start: memory_limit must be a non-negative integer (bytes)");
    p->memory_limit = (size_t)m;
  }
  lua_pop(L, 1);
  lpbt_rawfield(L, 1, "population");
  p->pop = lpbt_check_population(L, -1, "start: option 'population'");
  pbt_population_retain(p->pop);
  lua_pop(L, 1);
  p->tasks = option_channel(L, "tasks");
  p->results = option_channel(L, "results");
  p->shared = state_shared(L);
  pbt_shared_retain(p->shared);
  /* the threads start with SIGINT blocked: Ctrl-C goes to this thread */
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  p->joined = 0;
  for (k = 0; k < p->n; k++) {
    worker *w = &p->w[k];
    w->pool = p;
    w->id = k + 1;
    w->started = pthread_create(&w->thread, NULL, worker_main, w) == 0;
    if (!w->started) break;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (k < p->n) {
    pool_interrupt(p);
    return luaL_error(L, "start: could not start worker thread %d", k + 1);
  }
  return 1;
}

/* threads.context(): see the top of this file. */
static int t_context(lua_State *L) {
  worker *w;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &worker_key) != LUA_TLIGHTUSERDATA) {
    lua_pushnil(L);
    return 1;
  }
  w = (worker *)lua_touserdata(L, -1);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, w->id);
  lua_setfield(L, -2, "id");
  lua_pushinteger(L, w->pool->n);
  lua_setfield(L, -2, "count");
  if (w->pool->args) {
    lua_pushlstring(L, w->pool->args, w->pool->args_len);
    lua_setfield(L, -2, "args");
  }
  lpbt_push_population(L, w->pool->pop);
  lua_setfield(L, -2, "population");
  push_channel(L, w->pool->tasks);
  lua_setfield(L, -2, "tasks");
  push_channel(L, w->pool->results);
  lua_setfield(L, -2, "results");
  return 1;
}

static int t_cpu_count(lua_State *L) {
  cpu_set_t set;
  int n = 1;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

static int t_blas_threads(lua_State *L) {
  int before = openblas_get_num_threads();
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "thread count must be in 1..1024");
    openblas_set_num_threads((int)n);
  }
  lua_pushinteger(L, before);
  return 1;
}

const luaL_Reg lpbt_threads_module[] = {{"channel", t_channel},
                                        {"start", t_start},
                                        {"context", t_context},
                                        {"shared_get", t_shared_get},
                                        {"shared_put", t_shared_put},
                                        {"shared_abandon", t_shared_abandon},
                                        {"cpu_count", t_cpu_count},
                                        {"blas_threads", t_blas_threads},
                                        {NULL, NULL}};
