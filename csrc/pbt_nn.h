/*
 * pbt_nn.h -- neural-network kernels: fused linear layer, 2-d convolution
 * (im2col + GEMM on OpenBLAS), 2-d max pooling, fused losses (cross-entropy,
 * binary cross-entropy with logits), GELU, layer normalisation, dropout.
 * Each forward kernel has its backward kernel; the Lua binding records the
 * forward for autograd and the rules in lua/pbt/nn.lua call the backward.
 *
 * Conventions (see pbt_tensor.h for the general ones):
 *   - every output tensor passed in must be released (or zero-initialised);
 *     it is allocated contiguous.  An output pointer that may be NULL says so:
 *     NULL means "not wanted" and nothing is computed for it.
 *   - inputs are read through their strides (non-contiguous inputs are
 *     copied to a contiguous temporary first); every tensor operand of one
 *     call has the same dtype, else "dtypes float32 and float64 do not match"
 *     (PBT_ERR_DTYPE).  Labels are the exception: any dtype.
 *   - labels hold integral values in a float tensor and are read as
 *     value - base (the Lua binding passes its 1-based labels with base 1).
 *     "label 11 out of range for 10 classes", "label 2.5 is not an integer"
 *     (PBT_ERR_ARG, the value as given).
 *   - float32 sums (loss values, bias and weight gradients of layer_norm) are
 *     accumulated in double.
 *   - on failure every output is left released.
 */
#ifndef PBT_NN_H
#define PBT_NN_H

#include "pbt_random.h"
#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pbt_reduction {
  PBT_REDUCTION_NONE = 0, /* one loss per sample */
  PBT_REDUCTION_MEAN,     /* their mean (a 0-d tensor) */
  PBT_REDUCTION_SUM       /* their sum (a 0-d tensor) */
} pbt_reduction;

/* ---- linear layer ------------------------------------------------------- */

/*
 * out [M,out_f] = x [M,in_f] . w[out_f,in_f]^T + b[out_f] (b may be NULL).
 * Errors: "expects a 2-d input, got shape [3]",
 * "input of shape [2,5] does not fit weight of shape [3,4]",
 * "bias of shape [4] does not fit weight of shape [3,4]".
 */
pbt_status pbt_linear(pbt_tensor *out, const pbt_tensor *x,
                      const pbt_tensor *w, const pbt_tensor *b,
                      pbt_error *err);
/* Gradients of pbt_linear from g [M,out_f]: gx = g.w, gw = g^T.x,
 * gb = sum of g's rows.  Any output may be NULL. */
pbt_status pbt_linear_backward(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                               const pbt_tensor *g, const pbt_tensor *x,
                               const pbt_tensor *w, pbt_error *err);

/* Which outputs of pbt_linear_backward_acc are added into. */
enum { PBT_ACC_W = 1, PBT_ACC_B = 2 };

/* As pbt_linear_backward, but with PBT_ACC_W in `acc` gw is an EXISTING
 * tensor of w's dtype and shape that receives gw += g^T.x (the GEMM adds
 * into it, beta = 1: no new buffer, no pass that zeroes one), and with
 * PBT_ACC_B gb likewise receives gb += the sum of g's rows: the way a
 * leaf's kept gradient accumulates.  An accumulated output must not share
 * storage with g, x or w.
 * Errors (besides pbt_linear_backward's): "the weight's gradient has shape
 * [3,5], expected [3,4]", "the bias's gradient has dtype float64, expected
 * float32", "the weight's gradient shares storage with an input". */
/* PBT_OK when acc can take the weight's (bias = 0) or the bias's (bias =
 * 1) gradient of pbt_linear_backward_acc; else the error it would raise.
 * w must be 2-d. */
pbt_status pbt_linear_check_acc(const pbt_tensor *acc, int bias, const pbt_tensor *g,
                               const pbt_tensor *x, const pbt_tensor *w, pbt_error *err);
pbt_status pbt_linear_backward_acc(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                                   int acc, const pbt_tensor *g, const pbt_tensor *x,
                                   const pbt_tensor *w, pbt_error *err);

/* A linear layer followed by ReLU, as one op: out = max(x . w^T + b, 0),
 * the ReLU applied in place on the product (the values and errors of
 * pbt_linear, then pbt_tensor's relu). */
pbt_status pbt_linear_relu(pbt_tensor *out, const pbt_tensor *x,
                           const pbt_tensor *w, const pbt_tensor *b,
                           pbt_error *err);
/* Its gradients, from g and its result y: pbt_linear_backward_acc's of
 * g * (y > 0) (ReLU's gradient, read off the result: y > 0 exactly where
 * the product was).  The product's gradient is a scratch tensor in y's
 * storage cache. */
pbt_status pbt_linear_relu_backward_acc(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                                        int acc, const pbt_tensor *g, const pbt_tensor *y,
                                        const pbt_tensor *x, const pbt_tensor *w,
                                        pbt_error *err);

/* ---- 2-d convolution ---------------------------------------------------- */

typedef struct pbt_conv2d_opts {
  int64_t stride[2];  /* >= 1 */
  int64_t padding[2]; /* >= 0, zeros on both sides */
} pbt_conv2d_opts;

/*
 * Cross-correlation as torch.nn.functional.conv2d (groups = dilation = 1):
 * x [N,C,H,W], w [O,C,kh,kw], b [O] or NULL; out [N,O,OH,OW] with
 * OH = (H + 2*ph - kh) / sh + 1 (floor), likewise OW.  One image at a time
 * goes through im2col into a [C*kh*kw, OH*OW] matrix and one GEMM.
 * `ws`, the workspace, may be NULL (a temporary is allocated) or a tensor
 * that is reused from call to call: when it is released, too small or of
 * another dtype it is released and reallocated with the size needed.
 * Errors: "expects a 4-d input [N,C,H,W], got shape [3,4]",
 * "expects a 4-d weight [O,C,kh,kw], got shape [3,4]",
 * "input of shape [1,2,5,5] has 2 channels, weight of shape [4,3,3,3] expects 3",
 * "bias of shape [3] does not fit weight of shape [4,3,3,3]",
 * "kernel 5x5 does not fit the padded input 4x4",
 * "stride must be >= 1 and padding >= 0" (PBT_ERR_ARG).
 */
pbt_status pbt_conv2d(pbt_tensor *out, const pbt_tensor *x,
                      const pbt_tensor *w, const pbt_tensor *b,
                      const pbt_conv2d_opts *opts, pbt_tensor *ws,
                      pbt_error *err);
/* Gradients of pbt_conv2d from g [N,O,OH,OW]: gx [N,C,H,W], gw [O,C,kh,kw],
 * gb [O].  Any output may be NULL. */
pbt_status pbt_conv2d_backward(pbt_tensor *gx, pbt_tensor *gw, pbt_tensor *gb,
                               const pbt_tensor *g, const pbt_tensor *x,
                               const pbt_tensor *w, const pbt_conv2d_opts *opts,
                               pbt_tensor *ws, pbt_error *err);

/* Number of workspace elements pbt_conv2d and pbt_conv2d_backward use for
 * these shapes (0 when im2col is not needed: a 1x1 kernel, stride 1, no
 * padding). */
int64_t pbt_conv2d_workspace_numel(const pbt_tensor *x, const pbt_tensor *w,
                                   const pbt_conv2d_opts *opts);

/* ---- 2-d max pooling ----------------------------------------------------- */

typedef struct pbt_pool2d_opts {
  int64_t kernel[2];  /* >= 1 */
  int64_t stride[2];  /* >= 1 */
  int64_t padding[2]; /* >= 0 and <= kernel / 2; padding never wins */
} pbt_pool2d_opts;

/*
 * torch.nn.functional.max_pool2d (ceil_mode false, dilation 1) of x [N,C,H,W]
 * or [C,H,W]: out has OH = (H + 2*ph - kh) / sh + 1, likewise OW; `indices`
 * (may be NULL; x's dtype, float64 when a float32 plane has more than 2^24
 * elements) holds base + the position h*W + w of each maximum in its plane.
 * The first maximum of a window wins; NaN beats everything.
 * Errors: "expects a 3-d or 4-d input, got shape [3,4]",
 * "kernel 5x5 does not fit the padded input 4x4",
 * "padding 2x2 larger than half the kernel 3x3",
 * "kernel and stride must be >= 1 and padding >= 0".
 */
pbt_status pbt_max_pool2d(pbt_tensor *out, pbt_tensor *indices,
                          const pbt_tensor *x, const pbt_pool2d_opts *opts,
                          int64_t base, pbt_error *err);
/* gx (x's shape and dtype) from g (out's shape) and the indices of the
 * forward pass: every g element is added at its maximum's position.
 * `x` gives the shape only.  Errors: "gradient of shape [..] does not fit
 * indices of shape [..]". */
pbt_status pbt_max_pool2d_backward(pbt_tensor *gx, const pbt_tensor *g,
                                   const pbt_tensor *indices,
                                   const pbt_tensor *x, int64_t base,
                                   pbt_error *err);

/* ---- losses ------------------------------------------------------------- */

/*
 * Cross-entropy of logits [N,K] against labels [N] (class numbers base ..
 * base + K - 1): loss_i = logsumexp(logits_i) - logits_i[label_i], computed
 * stably (the row maximum subtracted first), reduced by `red`.  The mean of
 * N = 0 samples is NaN, as in torch.
 * Errors: "expects 2-d logits [N,K], got shape [3]",
 * "labels of shape [3] do not fit logits of shape [4,10]", label errors.
 */
pbt_status pbt_cross_entropy(pbt_tensor *out, const pbt_tensor *logits,
                             const pbt_tensor *labels, int64_t base,
                             pbt_reduction red, pbt_error *err);
/* glogits = g_i * (softmax(logits_i) - onehot(label_i)), with g_i = g / N
 * (mean), g (sum) or g[i] (none); g has the loss's shape. */
pbt_status pbt_cross_entropy_backward(pbt_tensor *glogits, const pbt_tensor *g,
                                      const pbt_tensor *logits,
                                      const pbt_tensor *labels, int64_t base,
                                      pbt_reduction red, pbt_error *err);

/*
 * Binary cross-entropy with logits x against targets t (same shape):
 * l = max(x, 0) - x*t + log1p(exp(-|x|)), reduced by `red` (none keeps the
 * shape).  Errors: "targets of shape [3] do not fit logits of shape [4]".
 */
pbt_status pbt_bce_with_logits(pbt_tensor *out, const pbt_tensor *x,
                               const pbt_tensor *t, pbt_reduction red,
                               pbt_error *err);
/* gx = g * (sigmoid(x) - t), gt = -g * x (g scaled as in cross-entropy).
 * Either output may be NULL. */
pbt_status pbt_bce_with_logits_backward(pbt_tensor *gx, pbt_tensor *gt,
                                        const pbt_tensor *g,
                                        const pbt_tensor *x,
                                        const pbt_tensor *t, pbt_reduction red,
                                        pbt_error *err);

/* ---- activations, normalisation, dropout --------------------------------- */

/* GELU, exact: y = x * Phi(x) = x/2 * erfc(-x / sqrt 2) (erfc keeps the
 * negative tail accurate); out has x's
 * shape.  The backward: gx = g * (Phi(x) + x * phi(x)). */
pbt_status pbt_gelu(pbt_tensor *out, const pbt_tensor *x, pbt_error *err);
pbt_status pbt_gelu_backward(pbt_tensor *gx, const pbt_tensor *g,
                             const pbt_tensor *x, pbt_error *err);

/* The gradient of ReLU (pbt_tensor's relu, which is not here): gx = g * m
 * with m = 1 where x > 0, else 0 (in one pass, rounded as that product:
 * NaN where g is NaN or infinite and x <= 0).  g has x's shape. */
pbt_status pbt_relu_backward(pbt_tensor *gx, const pbt_tensor *g,
                             const pbt_tensor *x, pbt_error *err);

/*
 * Layer normalisation over the last `nnorm` dimensions of x:
 * y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps), var the biased
 * variance of each of the M = numel / n rows of n elements.  w and b (either
 * may be NULL) hold n elements in any shape.  mean and rstd (may be NULL)
 * get shape [M] for the backward.
 * Errors: "normalized shape [4] does not fit input of shape [2,3]" (the
 * trailing sizes are given in `nshape`), "weight of shape [3] does not fit
 * normalized shape [4]", "bias of ...".
 */
pbt_status pbt_layer_norm(pbt_tensor *out, pbt_tensor *mean, pbt_tensor *rstd,
                          const pbt_tensor *x, int nnorm, const int64_t *nshape,
                          const pbt_tensor *w, const pbt_tensor *b, double eps,
                          pbt_error *err);
/* gx (x's shape), gw and gb (w's shape; NULL when w is NULL) from g, the
 * mean and rstd of the forward pass. */
pbt_status pbt_layer_norm_backward(pbt_tensor *gx, pbt_tensor *gw,
                                   pbt_tensor *gb, const pbt_tensor *g,
                                   const pbt_tensor *x, const pbt_tensor *w,
                                   const pbt_tensor *mean,
                                   const pbt_tensor *rstd, pbt_error *err);

/*
 * Inverted dropout: mask (x's shape and dtype) holds 0 with probability p and
 * 1 / (1 - p) otherwise (one uniform draw per element in row-major order:
 * kept when u >= p), out = x * mask.  p = 1 zeroes everything.
 * Errors: "probability 1.5 out of range [0, 1]".
 */
pbt_status pbt_dropout(pbt_tensor *out, pbt_tensor *mask, const pbt_tensor *x,
                       double p, pbt_generator *gen, pbt_error *err);

#ifdef __cplusplus
}
#endif
#endif
