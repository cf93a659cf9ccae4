/* lpbt_stats.c -- functions of pbt.core.stats (to be written). */
#include "lpbt.h"

const luaL_Reg lpbt_stats_module[] = {{NULL, NULL}};
