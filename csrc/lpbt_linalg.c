/* lpbt_linalg.c -- linear algebra and indexing (to be written). */
#include "lpbt.h"

const luaL_Reg lpbt_linalg_methods[] = {{NULL, NULL}};
const luaL_Reg lpbt_linalg_functions[] = {{NULL, NULL}};
