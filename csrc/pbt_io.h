/* pbt_io.h -- (to be written) */
#ifndef PBT_IO_H
#define PBT_IO_H
#include "pbt_tensor.h"
#endif
