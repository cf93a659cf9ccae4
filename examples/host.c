/* examples/host.c -- an application that embeds Lua 5.4 and pbt in one
 * binary: the Lua binding of pbt is linked in statically (build/libpbt_lua.a
 * holds luaopen_pbt_core and the core), preloaded as "pbt.core", so no
 * core.so is looked for; the Lua half of pbt (the .lua files of lua/pbt) is found
 * through package.path.  It runs an experiment file and prints the best
 * member.
 *
 *   make build/host
 *   build/host EXPERIMENT_FILE [LUA_DIR] [WORKERS]
 *
 * Build by hand (see the README):
 *   cc -O2 -o host examples/host.c build/libpbt_lua.a -I/usr/include/lua5.4 \
 *      -llua5.4 -lopenblas -lz -lm -pthread -lsqlite3 -lpq
 */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_pbt_core(lua_State *L); /* in build/libpbt_lua.a */

/* The part written in Lua: what an application would run in its own
 * state.  ... = experiment file, workers. */
static const char script[] =
    "local file, workers = ...\n"
    "local pbt = require('pbt')\n"
    "local e = pbt.load_experiment(file)\n"
    "local r = e:run{ workers = workers, progress = false }\n"
    "return r.best.member, r.best.score\n";

/* A traceback for errors raised in the script (Ctrl-C's included). */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(an error that is not a string)", 1);
  return 1;
}

int main(int argc, char **argv) {
  const char *file, *lua_dir;
  lua_Integer workers;
  lua_State *L;
  int status;
  if (argc < 2 || argc > 4) {
    fprintf(stderr, "usage: %s EXPERIMENT_FILE [LUA_DIR] [WORKERS]\n", argv[0]);
    return 2;
  }
  file = argv[1];
  lua_dir = argc > 2 ? argv[2] : "lua";
  workers = argc > 3 ? (lua_Integer)strtoll(argv[3], NULL, 10) : 1;
  L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "host: not enough memory\n");
    return 1;
  }
  luaL_openlibs(L);
  /* require("pbt.core") finds the linked-in module first */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pbt_core);
  lua_setfield(L, -2, "pbt.core");
  lua_pop(L, 1);
  /* the Lua half of pbt, before anything installed */
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_dir, lua_dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);

  lua_pushcfunction(L, traceback);
  status = luaL_loadbuffer(L, script, sizeof script - 1, "=host");
  if (status == LUA_OK) {
    lua_pushstring(L, file);
    lua_pushinteger(L, workers);
    status = lua_pcall(L, 2, 2, 1);
  }
  if (status != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  printf("best member %lld, score %.17g\n", (long long)lua_tointeger(L, -2), lua_tonumber(L, -1));
  lua_close(L);
  return 0;
}
