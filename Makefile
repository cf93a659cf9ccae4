# pbt -- Population Based Training for Lua 5.4 with a C core.
#
#   make            build build/pbt/core.so (the Lua module) and build/libpbt.a
#   make run        the main job: install what is missing (as root), build, and
#                   run examples/fashion_pbt.lua (PBT against random search on
#                   Fashion-MNIST; the run's files go to runs/fashion_pbt)
#   make test       install missing Debian packages (as root), build, run the
#                   C test program and the whole busted suite
#   make check      the same suite under -fsanitize=address,undefined
#   make valgrind   the same suite under valgrind memcheck
#   make rock-check install with luarocks into a temporary tree and load it
#   make bench      benchmarks (bench/)
#   make install    used by luarocks (INST_LIBDIR, INST_LUADIR)

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

LUA        ?= lua5.4
BUSTED     ?= $(LUA) /usr/bin/busted --ignore-lua
comma := ,
LUA_INCDIR ?= /usr/include/lua5.4
CC         ?= cc
CFLAGS     ?=
OPT        ?= -O3
LIBFLAG    ?= -shared
BUILD      ?= build

WARN    = -std=c11 -Wall -Wextra -pedantic -Wmissing-prototypes -Wstrict-prototypes
# pbt never reads errno after math calls; this lets gcc vectorize sqrt
MATH    = -fno-math-errno
ALL_CFLAGS = $(CFLAGS) $(OPT) $(MATH) $(WARN) -fPIC -fvisibility=hidden -I$(LUA_INCDIR) -I/usr/include/postgresql -Icsrc
# OPENBLAS_LIBDIR: where libopenblas is when the linker does not find it
# (the rockspec passes LuaRocks' value)
OPENBLAS_LIBDIR ?=
LIBS    = $(if $(OPENBLAS_LIBDIR),-L$(OPENBLAS_LIBDIR) -Wl$(comma)-rpath$(comma)$(OPENBLAS_LIBDIR)) -lopenblas -lz -lm -pthread -lsqlite3 -lpq

CORE_SRC = $(wildcard csrc/pbt_*.c)
BIND_SRC = $(wildcard csrc/lpbt_*.c)
HEADERS  = $(wildcard csrc/*.h)
CORE_OBJ = $(CORE_SRC:csrc/%.c=$(BUILD)/obj/%.o)
BIND_OBJ = $(BIND_SRC:csrc/%.c=$(BUILD)/obj/%.o)

MODULE = $(BUILD)/pbt/core.so
LIBPBT = $(BUILD)/libpbt.a
LIBPBT_LUA = $(BUILD)/libpbt_lua.a
HOST   = $(BUILD)/host
CTEST  = $(BUILD)/test_core

.PHONY: all deps test-deps run test test-lua check valgrind rock-check rock bench bench-mlp bench-tools install clean

all: $(MODULE) $(LIBPBT) $(LIBPBT_LUA) $(BUILD)/include/pbt.h

$(BUILD)/obj/%.o: csrc/%.c $(HEADERS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(CORE_OBJ) $(BIND_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(OPT) $(LIBFLAG) -o $@ $^ $(LIBS)

$(LIBPBT): $(CORE_OBJ)
	rm -f $@
	ar rcs $@ $^

# the core and its Lua binding in one archive: a host program links pbt
# statically and preloads luaopen_pbt_core (examples/host.c)
$(LIBPBT_LUA): $(CORE_OBJ) $(BIND_OBJ)
	rm -f $@
	ar rcs $@ $^

$(HOST): examples/host.c $(LIBPBT_LUA)
	$(CC) $(CFLAGS) $(OPT) $(WARN) -I$(LUA_INCDIR) -o $@ $< $(LIBPBT_LUA) -llua5.4 $(LIBS)

PUBLIC_HEADERS = $(filter-out %_impl.h csrc/pbt_vmath.h csrc/pbt_nn_internal.h csrc/pbt_nn_instantiate.h,$(filter csrc/pbt%.h,$(HEADERS)))
$(BUILD)/include/pbt.h: $(PUBLIC_HEADERS)
	@mkdir -p $(dir $@)
	cp $^ $(dir $@)

$(CTEST): spec/test_core.c spec/test_harness.h $(LIBPBT) $(BUILD)/include/pbt.h
	$(CC) $(CFLAGS) $(OPT) $(WARN) -I$(BUILD)/include -o $@ $< $(LIBPBT) $(LIBS)

CTEST_POP = $(BUILD)/test_population
$(CTEST_POP): spec/test_population.c spec/test_harness.h $(LIBPBT) $(BUILD)/include/pbt.h
	$(CC) $(CFLAGS) $(OPT) $(WARN) -I$(BUILD)/include -o $@ $< $(LIBPBT) $(LIBS) -pthread

# the data specs read Fashion-MNIST too (they are pending without it)
deps:
	@sh .ci/deps dataset-fashion-mnist

# the suite also opens a run's index.html in headless Chromium
test-deps:
	@sh .ci/deps dataset-fashion-mnist chromium

run: deps
	@sh .ci/deps python3-torch python3-optuna
	$(MAKE) --no-print-directory all
	$(LUA) examples/fashion_pbt.lua runs/fashion_pbt

# The busted suite; TAP output is kept in $(BUILD)/busted.tap and summed up
# in one line "N passed, N failed" (also written to $(BUILD)/counts).  The
# target fails when busted fails, when a spec fails, or when busted stopped
# before its TAP plan line (a crash).
define BUSTED_RUN
rm -f $(BUILD)/counts; \
$(BUSTED) --cpath='$(abspath $(BUILD))/?.so' -o TAP spec 2>&1 | tee $(BUILD)/busted.tap; \
status=$${PIPESTATUS[0]}; \
passed=$$(grep -c '^ok ' $(BUILD)/busted.tap); \
failed=$$(grep -c '^not ok ' $(BUILD)/busted.tap); \
if ! grep -q '^1\.\.[0-9]' $(BUILD)/busted.tap; then \
  echo "busted stopped before the end of the suite (exit status $$status)"; \
  failed=$$((failed + 1)); status=1; \
fi; \
echo "$$passed passed, $$failed failed" | tee $(BUILD)/counts; \
[ "$$status" = 0 ] && [ "$$failed" = 0 ]
endef

test: test-deps
	$(MAKE) --no-print-directory all $(CTEST) $(CTEST_POP) $(HOST)
	$(CTEST)
	$(CTEST_POP)
	$(MAKE) --no-print-directory test-lua

test-lua:
	@set +e; $(BUSTED_RUN)

SAN = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
check: test-deps
	$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g $(SAN)" \
	  LIBS="$(LIBS) $(SAN)" all build/asan/test_core build/asan/test_population build/asan/host
	build/asan/test_core
	build/asan/test_population
	LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(MAKE) --no-print-directory BUILD=build/asan test-lua

valgrind: test-deps
	@command -v valgrind >/dev/null || sh .ci/deps valgrind
	$(MAKE) --no-print-directory BUILD=build/debug OPT="-O1 -g" all build/debug/test_core build/debug/test_population build/debug/host
	valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 build/debug/test_core
	valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 build/debug/test_population
	PBT_VALGRIND=1 $(MAKE) --no-print-directory BUILD=build/debug \
	  BUSTED="valgrind -q --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --error-exitcode=1 $(LUA) /usr/bin/busted --ignore-lua" \
	  test-lua

rock-check: deps
	rm -rf $(BUILD)/rock-tree
	luarocks --lua-version 5.4 --tree $(BUILD)/rock-tree make pbt-scm-1.rockspec
	cd /tmp && eval "$$(luarocks --lua-version 5.4 --tree $(CURDIR)/$(BUILD)/rock-tree path)" && \
	  $(LUA) -e 'print(require("pbt").tensor.ones(2, 2))'

$(BUILD)/blas_direct: bench/blas_direct.c bench/timing.h
	$(CC) -O2 $(WARN) -o $@ $< -lopenblas

# the plain-memcpy reference of bench/parallel.lua and bench/pbt_overhead.lua
$(BUILD)/bench/memcpy.so: bench/memcpy.c $(LIBPBT) $(BUILD)/include/pbt.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(OPT) $(WARN) -fPIC -shared -I$(LUA_INCDIR) -I$(BUILD)/include -o $@ $< $(LIBPBT) $(LIBS)

bench-tools: all $(BUILD)/bench/memcpy.so $(BUILD)/blas_direct $(BUILD)/mlp_floor

# One OpenBLAS thread on every side unless the caller sets another count.
bench: all $(BUILD)/blas_direct
	OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} $(LUA) bench/tensor.lua

$(BUILD)/mlp_floor: bench/mlp_floor.c bench/timing.h
	$(CC) -O3 $(WARN) -o $@ $< -lopenblas -lm

# One thread on each side unless THREADS says otherwise.
bench-mlp: all $(BUILD)/mlp_floor
	$(LUA) bench/mlp.lua

# luarocks' "make" build type calls `make rock` and `make install`.
rock:
	$(MAKE) --no-print-directory BUILD=build/rock build/rock/pbt/core.so

INST_LIBDIR ?= /usr/local/lib/lua/5.4
INST_LUADIR ?= /usr/local/share/lua/5.4
install:
	install -d $(INST_LIBDIR)/pbt $(INST_LUADIR)/pbt
	install -m 644 build/rock/pbt/core.so $(INST_LIBDIR)/pbt/core.so
	install -m 644 lua/pbt/*.lua $(INST_LUADIR)/pbt/

clean:
	rm -rf build
