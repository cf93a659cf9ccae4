/* lpbt_ops.c -- elementwise operations and reductions (to be written). */
#include "lpbt.h"

const luaL_Reg lpbt_ops_methods[] = {{NULL, NULL}};
const luaL_Reg lpbt_ops_functions[] = {{NULL, NULL}};
const luaL_Reg lpbt_ops_meta[] = {{NULL, NULL}};
