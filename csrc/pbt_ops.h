/* pbt_ops.h -- (to be written) */
#ifndef PBT_OPS_H
#define PBT_OPS_H
#include "pbt_tensor.h"
#endif
