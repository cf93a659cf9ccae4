rockspec_format = "3.0"
package = "pbt"
version = "scm-1"
source = {
   url = "git+file://.",
}
description = {
   summary = "Population Based Training of neural networks, with a C tensor core on OpenBLAS",
   detailed = [[
pbt trains a population of models, exploiting and exploring their
hyperparameters as they learn (Jaderberg et al., 2017). A C core holds
tensors on OpenBLAS and the population; experiments are short Lua scripts.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
external_dependencies = {
   -- declared by library only: a header check fails on Debian's multiarch path
   OPENBLAS = { library = "openblas" },
   ZLIB = { library = "z" },
   SQLITE = { library = "sqlite3" },
   PQ = { library = "pq" },
}
build = {
   type = "make",
   build_target = "rock",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      OPENBLAS_LIBDIR = "$(OPENBLAS_LIBDIR)",
   },
   install_target = "install",
   install_variables = {
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
   },
   install = {
      bin = { pbt = "lua/pbt/cli.lua" },
   },
}
