/* lpbt_nn.c -- functions of pbt.core.nn (to be written). */
#include "lpbt.h"

const luaL_Reg lpbt_nn_module[] = {{NULL, NULL}};
