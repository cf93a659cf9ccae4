/* lpbt_population.c -- functions of pbt.core.population (to be written). */
#include "lpbt.h"

const luaL_Reg lpbt_population_module[] = {{NULL, NULL}};
