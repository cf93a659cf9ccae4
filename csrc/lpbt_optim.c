/* lpbt_optim.c -- functions of pbt.core.optim (to be written). */
#include "lpbt.h"

const luaL_Reg lpbt_optim_module[] = {{NULL, NULL}};
