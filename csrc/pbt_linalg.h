/*
 * pbt_linalg.h -- matrix products (on OpenBLAS) and indexing kernels.
 *
 * Conventions (see pbt_tensor.h for the general ones):
 *   - every function takes an output tensor `out`.  When `out` is released
 *     (or zero-initialised) a new contiguous tensor is allocated into it.
 *     When it already holds a tensor of the result's shape it is written in
 *     place, whatever its strides, and may share storage with an input (the
 *     result then goes through a temporary).  When it holds a tensor of
 *     another shape it is released and reallocated, as torch's out= resizes.
 *     Its dtype must be the result's dtype: "out has dtype float64, expected
 *     float32" (PBT_ERR_DTYPE).
 *   - the operands of one product must have the same dtype:
 *     "dtypes float32 and float64 do not match" (PBT_ERR_DTYPE).
 *   - on failure an `out` given released stays released; an existing `out`
 *     is left untouched (all checks happen before anything is written).
 *   - operands are read through their strides.  A matrix whose last stride
 *     is 1 (row-major) or whose first stride is 1 (a transposed view) goes to
 *     BLAS without a copy; any other layout (expanded, narrowed with steps)
 *     is copied to a contiguous temporary first.
 *   - dimension sizes handed to BLAS must fit in an int (PBT_ERR_ARG).
 *
 * Indices in the indexing kernels are 0-based in C.  An index tensor holds
 * integral values in a float tensor (either dtype); the kernels read index
 * value v as position v - base, so a Lua binding passes its 1-based index
 * tensors unchanged with base = 1.  Index values are checked before anything
 * is written: "index 7 out of range for size 5" (the value as given, i.e.
 * in the caller's base), "index 2.5 is not an integer" (PBT_ERR_ARG).
 * A float32 index tensor holds every integer exactly only up to 2^24.
 */
#ifndef PBT_LINALG_H
#define PBT_LINALG_H

#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- products ---------------------------------------------------------- */

/*
 * Matrix product with torch.matmul's rules:
 *   [k]     . [k]       -> []        (dot product, a 0-d tensor)
 *   [m,k]   . [k]       -> [m]
 *   [k]     . [k,n]     -> [n]
 *   [m,k]   . [k,n]     -> [m,n]
 *   [...,m,k] . [...,k,n] -> [...,m,n]  batched; the batch dimensions
 *   broadcast (numpy rules), a 1-d or 2-d operand takes part in every batch.
 * Sizes may be 0; k = 0 gives zeros.
 * Errors: "shapes [3,4] and [5,6] cannot be multiplied" (PBT_ERR_SHAPE), also
 * for 0-d operands and batch dimensions that do not broadcast.
 */
pbt_status pbt_matmul(pbt_tensor *out, const pbt_tensor *a, const pbt_tensor *b,
                      pbt_error *err);

/*
 * out = beta * out + alpha * (a . b) for 2-d a [m,k], 2-d b [k,n] and an
 * EXISTING 2-d out [m,n] (never reallocated).  With beta == 0 out's old
 * values are not read (NaN in out does not propagate).
 * Errors: "shapes [3,4] and [5,6] cannot be multiplied",
 * "expects 2-d tensors, got shapes [3] and [3,4]",
 * "out has shape [2,2], expected [2,3]", "out must be an existing tensor".
 */
pbt_status pbt_addmm(pbt_tensor *out, const pbt_tensor *a, const pbt_tensor *b,
                     double alpha, double beta, pbt_error *err);

/* Dot product of two 1-d tensors of one size, as a 0-d tensor.
 * Errors: "expects 1-d tensors, got shapes [2,3] and [3]",
 * "shapes [3] and [4] cannot be multiplied". */
pbt_status pbt_dot(pbt_tensor *out, const pbt_tensor *a, const pbt_tensor *b,
                   pbt_error *err);

/* Outer product of 1-d a [m] and 1-d b [n]: out [m,n], out[i,j] = a[i]*b[j].
 * Errors: "expects 1-d tensors, got shapes [2,3] and [3]". */
pbt_status pbt_outer(pbt_tensor *out, const pbt_tensor *a, const pbt_tensor *b,
                     pbt_error *err);

/* ---- indexing (pbt_index.c) ------------------------------------------- */

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
