/*
 * pbt_index.h -- indexing kernels: index_select, gather, scatter_add_,
 * one_hot (pbt_index.c).  Output tensors follow pbt_linalg.h's conventions.
 *
 * Indices in the indexing kernels are 0-based in C.  An index tensor holds
 * integral values in a float tensor (either dtype); the kernels read index
 * value v as position v - base, so a Lua binding passes its 1-based index
 * tensors unchanged with base = 1.  Index values are checked before anything
 * is written: "index 7 out of range for size 5" (the value as given, i.e.
 * in the caller's base), "index 2.5 is not an integer" (PBT_ERR_ARG).
 * A float32 index tensor holds every integer exactly only up to 2^24.
 */
#ifndef PBT_INDEX_H
#define PBT_INDEX_H

#include <stdint.h>

#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * out = the slices of src at the positions in the 1-d `index` along dim:
 * out has src's shape with shape[dim] = numel(index), and
 * out[.., i, ..] = src[.., index[i] - base, ..].
 * Errors: "index must be a 1-d tensor, got shape [2,2]", and the index
 * value errors above (size = src->shape[dim]).
 */
pbt_status pbt_index_select(pbt_tensor *out, const pbt_tensor *src, int dim,
                            const pbt_tensor *index, int64_t base,
                            pbt_error *err);

/*
 * torch.gather: out has index's shape (index has src's number of dimensions,
 * and index->shape[d] <= src->shape[d] for every d != dim), and for dim = 1
 *   out[i][j][k] = src[i][index[i][j][k] - base][k].
 * Errors: "index of shape [3,4] does not fit a tensor of shape [2,3]", and
 * the index value errors (size = src->shape[dim]).
 */
pbt_status pbt_gather(pbt_tensor *out, const pbt_tensor *src, int dim,
                      const pbt_tensor *index, int64_t base, pbt_error *err);

/*
 * torch.Tensor.scatter_add_, in place on t: for every position of index
 * (same number of dimensions as t and src; index->shape[d] <= src->shape[d]
 * for every d, and <= t->shape[d] for d != dim), for dim = 1
 *   t[i][index[i][j][k] - base][k] += src[i][j][k].
 * Repeated indices accumulate.  src must have t's dtype and must not share
 * storage with t.
 * Errors: "index of shape [3,4] does not fit a tensor of shape [2,3]",
 * "index of shape [3,4] does not fit a source of shape [2,3]",
 * "dtypes float32 and float64 do not match", and the index value errors
 * (size = t->shape[dim]).
 */
pbt_status pbt_scatter_add_(pbt_tensor *t, int dim, const pbt_tensor *index,
                            const pbt_tensor *src, int64_t base,
                            pbt_error *err);

/*
 * One-hot encoding: out has shape labels.shape .. {n} and dtype `dtype`;
 * out[..., j] = 1 where j == labels[...] - base, else 0.  n >= 0.
 * Errors: "%d dimensions (at most 8 allowed)" when labels has PBT_MAX_DIM
 * dimensions, "negative number of classes -1", and the index value errors
 * (size = n).
 */
pbt_status pbt_one_hot(pbt_tensor *out, const pbt_tensor *labels, int64_t n,
                       int64_t base, pbt_dtype dtype, pbt_error *err);

#ifdef __cplusplus
}
#endif
#endif
