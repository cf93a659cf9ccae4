/*
 * lpbt.h -- helpers shared by the Lua binding files (lpbt_*.c).
 *
 * The binding checks arguments, calls the core, pushes results and turns a
 * status into a Lua error.  No arithmetic here.
 *
 * Every C function of the module is registered with the same two upvalues:
 *   upvalue 1: the module's default pbt.Generator (seeded by manual_seed)
 *   upvalue 2: the pbt.Tensor metatable
 * so a binding function reaches them without a registry lookup.
 *
 * Each binding file exports luaL_Reg arrays (terminated by {NULL, NULL}):
 *   lpbt_<file>_methods    become methods of pbt.Tensor (t:name(...)) and
 *                          also functions of pbt.tensor (pbt.tensor.name(t, ...))
 *   lpbt_<file>_functions  become functions of pbt.tensor only
 *   lpbt_<file>_meta       become metamethods of pbt.Tensor
 *   lpbt_<file>_module     become functions of the module table (pbt.core)
 * lpbt_core.c lists them all.
 */
#ifndef LPBT_H
#define LPBT_H

#include <lauxlib.h>
#include <lua.h>

#include "pbt_io.h"
#include "pbt_random.h"
#include "pbt_tensor.h"

#define LPBT_TENSOR "pbt.Tensor"
#define LPBT_GENERATOR "pbt.Generator"

#define LPBT_UPV_GENERATOR lua_upvalueindex(1)
#define LPBT_UPV_TENSOR_META lua_upvalueindex(2)

/* The userdata of a pbt.Tensor: the core's tensor header first (so a
 * pbt_tensor * from lpbt_check_tensor points at it), then the binding's own
 * autograd fields.  User value 1 holds the tensor's .grad; the others the
 * op that made it, when that op was recorded (see lpbt_record): its name
 * (LPBT_UV_OP), and either its arguments (up to LPBT_NODE_ARGS of them,
 * from LPBT_UV_ARG on, nargs giving how many) or its node table
 * (LPBT_UV_GRAD_FN, made at once for other ops, else on first use). */
#define LPBT_NODE_ARGS 4 /* arguments an op's result keeps in user values */
typedef struct lpbt_tensor {
  pbt_tensor t;
  uint64_t magic; /* LPBT_MAGIC (lpbt_tensor_at) */
  int requires_grad;
  int nargs;             /* arguments kept in user values */
  uint64_t mark;         /* the last graph walk that met it (core.graph) */
  /* LPBT_KEEP, or LPBT_FREE_AFTER_WALK: an output of one layer of an
   * nn.Sequential that nothing but the graph holds (core.free_after), which
   * backward releases once its walk has used it (then LPBT_FREED_BY_WALK) */
  int transient;
  /* the versions (pbt_tensor_version) of the result [0] and of the tensor
   * arguments [1..nargs] when the op was recorded (user-value nodes) */
  uint64_t saved[1 + LPBT_NODE_ARGS];
} lpbt_tensor;
enum { LPBT_KEEP = 0, LPBT_FREE_AFTER_WALK, LPBT_FREED_BY_WALK };

/* The pbt.Tensor at idx, or NULL: every one is a full userdata of
 * sizeof(lpbt_tensor) bytes holding LPBT_MAGIC, which no other userdata of
 * that size holds (their bytes are their own libraries'), so that a tensor
 * argument is known in two API calls instead of pushing and comparing its
 * metatable (a tenth of all the instructions of a training step on 2x2
 * tensors went to that).  Light userdata have no length. */
#define LPBT_MAGIC UINT64_C(0x7062742e54656e73) /* "pbt.Tens" */
static inline lpbt_tensor *lpbt_tensor_at(lua_State *L, int idx) {
  lpbt_tensor *u = (lpbt_tensor *)lua_touserdata(L, idx);
  if (u && lua_rawlen(L, idx) == sizeof(lpbt_tensor) && u->magic == LPBT_MAGIC) return u;
  return NULL;
}
#define LPBT_REQUIRES_GRAD(p) (((const lpbt_tensor *)(const void *)(p))->requires_grad)

/* The library's record for one Lua state (lpbt_state.c), in a userdata the
 * registry holds: the storage cache every tensor of the state allocates
 * from, the collector's pacing, and autograd's switches (lpbt_autograd.c). */
typedef struct lpbt_lib {
  pbt_allocator *a;
  size_t since; /* bytes of results made since the last forced GC cycle */
  size_t live;  /* live bytes of the allocator at the end of that cycle */
  int big;      /* the last result was big: collect young objects first */
  int autograd; /* core.autograd() was called: differentiable ops record */
  int grad_on;  /* grad mode (set_grad_enabled) */
  int no_grad;  /* threads inside pbt.no_grad (entries of the no_grad table) */
  uint64_t walk; /* graph walks so far (never wraps) */
} lpbt_lib;
/* The state's record (NULL before lpbt_state_open). */
lpbt_lib *lpbt_lib_of(lua_State *L);
/* Makes the state's record unless it has one (the module opened again). */
void lpbt_state_open(lua_State *L);
#define LPBT_UV_GRAD 1
#define LPBT_UV_GRAD_FN 2
#define LPBT_UV_OP 3
#define LPBT_UV_ARG 4
#define LPBT_NUV (LPBT_UV_ARG + LPBT_NODE_ARGS - 1)
/* Pushes the node of the tensor at idx (nil for a leaf). */
void lpbt_push_node(lua_State *L, int idx);

/* Argument tables (shapes, options, indices) are read raw: no metamethod
 * runs between checking a tensor argument and calling the core, so Lua code
 * cannot release a tensor that is about to be used. */
#define LPBT_LEN(L, i) ((lua_Integer)lua_rawlen((L), (i)))
static inline int lpbt_rawfield(lua_State *L, int idx, const char *k) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, k);
  return lua_rawget(L, idx);
}

/* Raises "bad argument #arg" for a value that is not a pbt.Tensor (naming
 * a userdata that only has the tensor metatable, which debug.setmetatable
 * can give, as such). */
int lpbt_not_a_tensor(lua_State *L, int arg);

/* The binding's other userdata types (pbt.Generator, pbt.Population,
 * pbt.Channel, ...): lpbt_newudata makes one with a tag after its size bytes
 * (rounded up to 16) that names its type, and the tests below accept a
 * userdata only when it has the type's metatable *and* that tag -- so a
 * userdata that debug.setmetatable gave another type's metatable (a tensor
 * with pbt.Generator's, say) is refused instead of read as that type.
 * lpbt_testudata returns NULL for anything else; lpbt_checkudata raises
 * "bad argument" (naming such a userdata as one given the metatable). */
void *lpbt_newudata(lua_State *L, size_t size, int nuv, const char *tname);
void *lpbt_testudata(lua_State *L, int idx, const char *tname);
void *lpbt_checkudata(lua_State *L, int idx, const char *tname);

/* The pbt.Tensor at arg (raises on anything else or a released tensor). */
pbt_tensor *lpbt_check_tensor(lua_State *L, int arg);
/* The pbt.Tensor at arg, or NULL. */
pbt_tensor *lpbt_test_tensor(lua_State *L, int arg);
/* Pushes a new, released (empty) tensor userdata and returns its header; its
 * alloc hint is the state's storage cache (see lpbt_core.c). */
pbt_tensor *lpbt_push_tensor(lua_State *L);

/* Tells the Lua collector about the bytes of a new result's storage, which
 * live outside Lua's heap, so that dropped tensors are freed in time and
 * their blocks go back to the state's storage cache (else a loop of
 * `c = a + b` on big tensors piles up garbage and every result lands in
 * fresh, cold memory): once the results made since the last collection
 * weigh as much as the live storages, it runs a whole collector cycle.
 * Call it once the storage is allocated. */
void lpbt_gc_hint(lua_State *L, const pbt_tensor *t);
/* Releases t, a result that the binding knows nothing else holds (a
 * gradient backward made and used up, a layer's output nn.Sequential
 * freed): when that frees its storage, its bytes no longer count towards
 * the next forced collection (they are back in the cache already). */
void lpbt_release_result(lua_State *L, pbt_tensor *t);

/*
 * Autograd.  A differentiable op, once its nres results are pushed on top of
 * its nargs arguments (stack slots 1..nargs), calls
 *     if (LPBT_REQUIRES_GRAD(a) || ...) lpbt_record(L, "op", nargs, nres);
 * which, when grad mode is on (and outside pbt.no_grad), records the op in
 * C: its first result keeps the op's name and arguments in its user values,
 * and the node table that lua/pbt/autograd.lua's backward rules read is
 * made from them on first use (lpbt_core.c, "autograd").  Nothing else is
 * paid by tensors that do not require grad.
 */
void lpbt_record(lua_State *L, const char *op, int nargs, int nres);
/* In-place ops call this on their target: writing into an expanded tensor
 * is an error, and so is modifying a tensor that requires grad while grad
 * mode is on, as in PyTorch. */
void lpbt_check_inplace(lua_State *L, const pbt_tensor *t, const char *fname);
/* After an in-place op succeeded: autograd sees the change (the storage's
 * version, checked by backward); a failed op changes nothing. */
#define LPBT_CHANGED(t) pbt_tensor_bump_version(t)
int lpbt_grad_enabled(lua_State *L);

/* Pushes an empty pbt_buf in a to-be-closed userdata ("pbt.Buffer"): its
 * bytes are freed when the calling C function returns or raises, so a
 * binding never raises while holding malloc'd memory. */
#define LPBT_BUFFER "pbt.Buffer"
pbt_buf *lpbt_push_buf(lua_State *L);

/* Raises "<fname>: <message>" for a failed status. */
int lpbt_raise(lua_State *L, const char *fname, const pbt_error *err);
/* Shorthand: if (status) raise. */
#define LPBT_CHECK(L, fname, status, err)                                     \
  do {                                                                         \
    if ((status) != PBT_OK) lpbt_raise((L), (fname), (err));                   \
  } while (0)

/* A 1-based (or negative, from the end) dimension at arg, as 0-based, for a
 * tensor of ndim dimensions.  Raises
 * "bad argument #arg to 'f' (dimension 3 out of range for a 2-d tensor)". */
int lpbt_check_dim(lua_State *L, int arg, int ndim);
/* Like lpbt_check_dim but optional: returns def when arg is none or nil. */
int lpbt_opt_dim(lua_State *L, int arg, int ndim, int def);
/* A path at arg: a string (a number is refused, not turned into a file
 * name), not empty, without a zero byte. */
const char *lpbt_check_path(lua_State *L, int arg);
/* Raises "bad argument #idx (unknown option 'x' (did you mean 'y'?))" for a
 * key of the options table at idx (nil: none) that is not in known (a
 * NULL-terminated list). */
void lpbt_check_options(lua_State *L, int idx, const char *const *known);
/* The module's entry point (lpbt_core.c). */
int luaopen_pbt_core(lua_State *L);
/* An integer at arg (raises for non-integers, naming the argument). */
int64_t lpbt_check_integer(lua_State *L, int arg);
/* A size >= 0 at arg. */
int64_t lpbt_check_size(lua_State *L, int arg);

/*
 * Reads a shape given as varargs of sizes from `first` on, or as one table at
 * `first`.  Sizes must be non-negative integers (-1 allowed when allow_infer).
 * Returns the number of dimensions; *next is set to the argument after the
 * shape (where an options table may stand).
 */
int lpbt_check_shape(lua_State *L, int first, int64_t *shape, int allow_infer,
                     int *next);

/* The dtype named in field "dtype" of the options table at idx (none/nil:
 * def). */
pbt_dtype lpbt_opt_dtype(lua_State *L, int idx, pbt_dtype def);
/* The generator in field "generator" of the options table at idx, or the
 * module default. */
pbt_generator *lpbt_opt_generator(lua_State *L, int idx);
pbt_generator *lpbt_check_generator(lua_State *L, int arg);

/* The __index metamethod of pbt.Tensor; upvalue 3 is the methods table. */
int lpbt_tensor_index(lua_State *L);

/* Pushes a new tensor of dtype dt filled from the nested table (or number)
 * at arg; errors name fname and call the table `what` ("index table"). */
pbt_tensor *lpbt_tensor_from_table(lua_State *L, int arg, pbt_dtype dt,
                                   const char *fname, const char *what);
/* Pushes a new (uninitialised) tensor of the shape given from arg `first`
 * on (sizes, or one table), its dtype from the options table after them,
 * whose keys must be among known (NULL: "dtype" only); *opts (when not
 * NULL) receives that table's index (lpbt_tensor.c). */
pbt_tensor *lpbt_new_from_shape(lua_State *L, int first, const char *fname,
                                const char *const *known, int *opts);
/* pbt.tensor(nested_table_or_number [, opts]) (lpbt_tensor.c). */
int lpbt_tensor_new(lua_State *L);

/* Registration arrays, one set per binding file. */
extern const luaL_Reg lpbt_tensor_methods[], lpbt_tensor_functions[],
    lpbt_tensor_meta[], lpbt_tensor_module[];
extern const luaL_Reg lpbt_ops_methods[], lpbt_ops_functions[],
    lpbt_ops_meta[];
extern const luaL_Reg lpbt_linalg_methods[], lpbt_linalg_functions[];
extern const luaL_Reg lpbt_random_methods[], lpbt_random_functions[],
    lpbt_random_module[];
extern const luaL_Reg lpbt_io_methods[], lpbt_io_functions[],
    lpbt_io_module[];

/* Functions of the submodules pbt.core.data, .optim, .nn, .stats, .select, .population
 * (registered with the same two upvalues). */
extern const luaL_Reg lpbt_data_module[], lpbt_optim_module[], lpbt_nn_module[],
    lpbt_stats_module[], lpbt_select_module[], lpbt_population_module[], lpbt_threads_module[];
extern const luaL_Reg lpbt_sql_module[], lpbt_gp_module[];
/* Functions of pbt.core itself, one array per file. */
extern const luaL_Reg lpbt_state_module[], lpbt_autograd_module[];

/* A new pbt.Population userdata holding its own reference to p; call it
 * from a function registered with the two shared upvalues. */
struct pbt_population;
void lpbt_push_population(lua_State *L, struct pbt_population *p);
/* The population at arg (raises naming `what` otherwise). */
struct pbt_population *lpbt_check_population(lua_State *L, int arg, const char *what);

/* Creates the pbt.Generator metatable and pushes a new generator seeded with
 * seed (lpbt_random.c). */
void lpbt_random_open(lua_State *L);
pbt_generator *lpbt_push_generator(lua_State *L, uint64_t seed);

#endif
