/* pbt_linalg.h -- (to be written) */
#ifndef PBT_LINALG_H
#define PBT_LINALG_H
#include "pbt_tensor.h"
#endif
