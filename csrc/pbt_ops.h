/*
 * pbt_ops.h -- elementwise operations and reductions.
 *
 * Dtypes: every operand tensor of one call has the same dtype (float32 or
 * float64), else the call fails with PBT_ERR_DTYPE ("dtypes float32 and
 * float64 do not match"); a number operand is converted to the tensor's
 * dtype.  The mask of pbt_where and the operands of pbt_allclose/pbt_equal
 * may have any dtype.
 *
 * Broadcasting follows numpy: shapes are aligned on their trailing
 * dimensions and each pair of sizes must be equal or contain a 1.
 *
 * The output tensor `out`:
 *   - released (pbt_tensor_init or pbt_tensor_release): the result is
 *     allocated, contiguous, with the broadcast shape (elementwise) or the
 *     reduced shape (reductions);
 *   - an existing tensor: the result is written into it (its shape must be
 *     the result's shape and its dtype the operands' dtype).  It may be one of
 *     the operands (in-place operation); an operand that overlaps `out` in
 *     any other way is copied first, so the result is always as if the inputs
 *     were read before anything was written.  A tensor with a 0 stride in a
 *     dimension of size > 1 (expanded) cannot be written into.
 * On failure a released `out` stays released, an existing one is unchanged.
 *
 * Dimensions are 0-based; `dim` = -1 means "over all elements".
 */
#ifndef PBT_OPS_H
#define PBT_OPS_H

#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise ----------------------------------------------------------- */

typedef enum pbt_binop {
  PBT_ADD,
  PBT_SUB,
  PBT_MUL,
  PBT_DIV,
  PBT_POW,
  PBT_MAXIMUM, /* NaN if either is NaN (numpy) */
  PBT_MINIMUM,
  PBT_EQ,      /* comparisons give 1 or 0 in the operands' dtype */
  PBT_NE,
  PBT_LT,
  PBT_LE,
  PBT_GT,
  PBT_GE
} pbt_binop;

typedef enum pbt_unop {
  PBT_NEG,
  PBT_EXP,
  PBT_LOG,
  PBT_LOG1P,
  PBT_SQRT,
  PBT_ABS,
  PBT_SIN,
  PBT_COS,
  PBT_TANH,
  PBT_SIGMOID,
  PBT_RELU,  /* max(x, 0); NaN stays NaN */
  PBT_SIGN,  /* -1, 0 or 1; NaN stays NaN */
  PBT_FLOOR
} pbt_unop;

/* out = a op b, broadcasting. */
pbt_status pbt_binary(pbt_tensor *out, const pbt_tensor *a,
                      const pbt_tensor *b, pbt_binop op, pbt_error *err);
/* out = a op s. */
pbt_status pbt_binary_scalar(pbt_tensor *out, const pbt_tensor *a, double s,
                             pbt_binop op, pbt_error *err);
/* out = s op a (2 - t, 2 / t, 2 ^ t). */
pbt_status pbt_scalar_binary(pbt_tensor *out, double s, const pbt_tensor *a,
                             pbt_binop op, pbt_error *err);
/* out = a + alpha * b in one pass, broadcasting (axpy when out is a). */
pbt_status pbt_axpy(pbt_tensor *out, const pbt_tensor *a, double alpha,
                    const pbt_tensor *b, pbt_error *err);
/* out = op(a). */
pbt_status pbt_unary(pbt_tensor *out, const pbt_tensor *a, pbt_unop op,
                     pbt_error *err);
/* out = min(max(a, lo), hi); pass -INFINITY / INFINITY for no bound.  NaN
 * stays NaN. */
pbt_status pbt_clamp(pbt_tensor *out, const pbt_tensor *a, double lo,
                     double hi, pbt_error *err);
/* out = mask != 0 ? a : b, broadcasting the three.  a (or b) may be NULL:
 * then the number a_value (b_value) is used.  The result's dtype is that of
 * the tensor operands, or the mask's when both are numbers. */
pbt_status pbt_where(pbt_tensor *out, const pbt_tensor *mask,
                     const pbt_tensor *a, double a_value, const pbt_tensor *b,
                     double b_value, pbt_error *err);

/* |a - b| <= atol + rtol * |b| everywhere (numpy.allclose), broadcasting;
 * NaN is never close.  Sets *result to 1 or 0. */
pbt_status pbt_allclose(const pbt_tensor *a, const pbt_tensor *b, double rtol,
                        double atol, int *result, pbt_error *err);
/* 1 when a and b have the same shape and the same values (NaN differs from
 * everything), else 0.  Values of different dtypes compare as doubles. */
int pbt_equal(const pbt_tensor *a, const pbt_tensor *b);

/* ---- reductions ------------------------------------------------------------
 *
 * Over all elements (dim = -1) the result is 0-d, or has every size 1 when
 * keepdim; over one dimension it has that dimension removed, or set to 1
 * when keepdim.  float32 data is accumulated in double.  Empty reductions:
 * sum 0, prod 1, mean and var NaN, logsumexp -inf, norm 0; max, min and the
 * index reductions fail ("cannot reduce an empty tensor").
 */
typedef enum pbt_reduce_op {
  PBT_SUM,
  PBT_MEAN,
  PBT_PROD,
  PBT_MAX,      /* NaN if any element is NaN */
  PBT_MIN,
  PBT_LOGSUMEXP /* log(sum(exp(x))) computed as m + log(sum(exp(x - m))) */
} pbt_reduce_op;

pbt_status pbt_reduce(pbt_tensor *out, const pbt_tensor *a, int dim,
                      int keepdim, pbt_reduce_op op, pbt_error *err);

/* Maximum (want_max = 1) or minimum and where it is: `values` (a's dtype)
 * and `indices` (float64, holding base + the 0-based position along dim, or
 * in row-major order when dim = -1; the Lua binding passes base 1).  The
 * first occurrence wins; a NaN beats everything.  Either output may be NULL
 * when not wanted. */
pbt_status pbt_reduce_index(pbt_tensor *values, pbt_tensor *indices,
                            const pbt_tensor *a, int dim, int keepdim,
                            int want_max, int64_t base, pbt_error *err);

/* Variance sum((x - mean)^2) / (n - correction); correction 1 is the
 * unbiased estimate, 0 the population variance.  n - correction <= 0 gives
 * NaN (or inf).  take_sqrt gives the standard deviation. */
pbt_status pbt_var(pbt_tensor *out, const pbt_tensor *a, int dim, int keepdim,
                   int64_t correction, int take_sqrt, pbt_error *err);

/* p-norm: (sum |x|^p)^(1/p); p = INFINITY gives max |x|, -INFINITY min |x|,
 * 0 the number of non-zero elements. */
pbt_status pbt_norm(pbt_tensor *out, const pbt_tensor *a, double p, int dim,
                    int keepdim, pbt_error *err);

/* softmax (or log-softmax when take_log) along dim (0-based, required);
 * out has a's shape.  Stable: the maximum is subtracted first. */
pbt_status pbt_softmax(pbt_tensor *out, const pbt_tensor *a, int dim,
                       int take_log, pbt_error *err);

#ifdef __cplusplus
}
#endif
#endif
