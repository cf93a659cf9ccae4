/* lpbt_core.c -- luaopen_pbt_core: the module's registration, and the few
 * functions of pbt.core that belong to no subject (clock, write_file,
 * mkdir, isatty).  The rest of the binding: lpbt_state.c (per-state
 * record, new tensors), lpbt_autograd.c (recording), lpbt_check.c
 * (argument checks) and one lpbt_<subject>.c per part of the core. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "lpbt.h"
#include "pbt_io.h"

#if defined(__x86_64__) || defined(__SSE3__)
#include <pmmintrin.h>
#define LPBT_HAVE_FTZ 1
#endif

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
  pbt_error err;
  if (pbt_mkdir_p(path, &err) != PBT_OK) {
    if (err.status == PBT_ERR_NOMEM) return luaL_error(L, "mkdir: not enough memory");
    luaL_pushfail(L);
    lua_pushstring(L, err.msg);
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

/* ---- subnormal floats ------------------------------------------------------- */

/* pbt.set_flush_denormal(on) -> true when the processor has the mode, as
 * torch.set_flush_denormal: on x86-64 it sets (or clears) SSE's
 * flush-to-zero and denormals-are-zero bits of the calling thread's MXCSR,
 * so that floats below 1.2e-38 (2.2e-308 for doubles) count as zero, in
 * this thread and in the threads it starts afterwards (worker threads; not
 * OpenBLAS's pool, started when it loaded).  Arithmetic on subnormal floats
 * takes a microcode assist of about a hundred cycles per operation: the
 * momentum buffers of units that no longer get a gradient decay through
 * them, and an SGD update ran 25x slower on them.  Elsewhere: false, and
 * nothing changes.  pbt.flush_denormal() -> whether it is on. */
static int m_set_flush_denormal(lua_State *L) {
  int on;
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  on = lua_toboolean(L, 1);
#ifdef LPBT_HAVE_FTZ
  _MM_SET_FLUSH_ZERO_MODE(on ? _MM_FLUSH_ZERO_ON : _MM_FLUSH_ZERO_OFF);
  _MM_SET_DENORMALS_ZERO_MODE(on ? _MM_DENORMALS_ZERO_ON : _MM_DENORMALS_ZERO_OFF);
  lua_pushboolean(L, 1);
#else
  (void)on;
  lua_pushboolean(L, 0);
#endif
  return 1;
}

static int m_flush_denormal(lua_State *L) {
#ifdef LPBT_HAVE_FTZ
  lua_pushboolean(L, _MM_GET_FLUSH_ZERO_MODE() == _MM_FLUSH_ZERO_ON &&
                         _MM_GET_DENORMALS_ZERO_MODE() == _MM_DENORMALS_ZERO_ON);
#else
  lua_pushboolean(L, 0);
#endif
  return 1;
}

/* pbt.tensor{...}: the tensor table is callable. */
static int tensor_call(lua_State *L) {
  lua_remove(L, 1);
  return lpbt_tensor_new(L);
}

static const luaL_Reg core_module[] = {
    {"clock", m_clock}, {"write_file", m_write_file}, {"mkdir", m_mkdir}, {"isatty", m_isatty},
    {"set_flush_denormal", m_set_flush_denormal}, {"flush_denormal", m_flush_denormal},
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
      core_module, lpbt_state_module, lpbt_autograd_module, lpbt_tensor_module,
      lpbt_random_module, lpbt_io_module, NULL};
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
  lpbt_state_open(L);

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
