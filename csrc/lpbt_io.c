/* lpbt_io.c -- save/load and raw bytes (to be written). */
#include "lpbt.h"

const luaL_Reg lpbt_io_methods[] = {{NULL, NULL}};
const luaL_Reg lpbt_io_functions[] = {{NULL, NULL}};
const luaL_Reg lpbt_io_module[] = {{NULL, NULL}};
