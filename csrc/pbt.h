/*
 * pbt.h -- the C core of pbt, for C programs and host applications that link
 * libpbt.a (see README.md, "Embedding the C core").  The core never includes
 * lua.h, never prints and keeps no mutable global state.
 */
#ifndef PBT_H
#define PBT_H

#include "pbt_tensor.h"
#include "pbt_random.h"
#include "pbt_ops.h"
#include "pbt_linalg.h"
#include "pbt_index.h"
#include "pbt_io.h"
#include "pbt_data.h"
#include "pbt_optim.h"
#include "pbt_nn.h"
#include "pbt_population.h"
#include "pbt_stats.h"
#include "pbt_select.h"
#include "pbt_gp.h"

#endif
