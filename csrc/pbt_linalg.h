/*
 * pbt_linalg.h -- matrix products (on OpenBLAS); the indexing kernels are in
 * pbt_index.h.
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

#ifdef __cplusplus
}
#endif
#endif
