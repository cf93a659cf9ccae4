/* lpbt_data.c -- functions of pbt.core.data (to be written). */
#include "lpbt.h"

const luaL_Reg lpbt_data_module[] = {{NULL, NULL}};
