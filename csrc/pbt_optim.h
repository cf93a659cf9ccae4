/*
 * pbt_optim.h -- fused parameter updates of the optimizers (pbt.optim).
 *
 * Each function updates one parameter p in place from its gradient and the
 * optimizer's state buffers in a single pass over the elements, with the
 * semantics of PyTorch's torch.optim (single-tensor, non-amsgrad, not
 * maximizing).  p and grad may be strided views (not expanded: an element of
 * p must not be stored twice); grad has p's shape and dtype; the state
 * buffers are contiguous tensors of p's shape and dtype.  The arithmetic is
 * done in double and rounded once to the element type.
 *
 * The hyperparameters come in a struct; pbt_*_check validates them (the step
 * functions call it too) and writes a message such as
 * "lr must be >= 0, got -1" into err.
 */
#ifndef PBT_OPTIM_H
#define PBT_OPTIM_H

#include <stdint.h>

#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * SGD:  d = g + weight_decay * p
 *       if momentum != 0:
 *         buf = init ? d : momentum * buf + (1 - dampening) * d
 *         d = nesterov ? d + momentum * buf : buf
 *       p = p - lr * d
 * buf may be NULL when momentum is 0; `init` is true on the first step that
 * uses buf (PyTorch then sets buf to a copy of d).
 */
typedef struct pbt_sgd_options {
  double lr, momentum, dampening, weight_decay;
  int nesterov;
} pbt_sgd_options;

pbt_status pbt_sgd_check(const pbt_sgd_options *o, pbt_error *err);
pbt_status pbt_sgd_step(pbt_tensor *p, const pbt_tensor *grad, pbt_tensor *buf,
                        int init, const pbt_sgd_options *o, pbt_error *err);

/*
 * Adam (decoupled = 0) and AdamW (decoupled = 1); step counts from 1 and
 * includes this update:
 *   Adam:  g = g + weight_decay * p        AdamW:  p = p * (1 - lr * weight_decay)
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   p = p - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 */
typedef struct pbt_adam_options {
  double lr, beta1, beta2, eps, weight_decay;
  int decoupled;
} pbt_adam_options;

pbt_status pbt_adam_check(const pbt_adam_options *o, pbt_error *err);
pbt_status pbt_adam_step(pbt_tensor *p, const pbt_tensor *grad,
                         pbt_tensor *exp_avg, pbt_tensor *exp_avg_sq,
                         int64_t step, const pbt_adam_options *o,
                         pbt_error *err);

/*
 * RMSprop:  g = g + weight_decay * p
 *           sq = alpha * sq + (1 - alpha) * g * g
 *           centered: ga = ga + (1 - alpha) * (g - ga); avg = sqrt(sq - ga^2) + eps
 *           else:     avg = sqrt(sq) + eps
 *           momentum > 0: buf = momentum * buf + g / avg; p = p - lr * buf
 *           else:         p = p - lr * g / avg
 * grad_avg is used (and must be given) only when centered, buf only when
 * momentum > 0; the buffers start at zero.
 */
typedef struct pbt_rmsprop_options {
  double lr, alpha, eps, momentum, weight_decay;
  int centered;
} pbt_rmsprop_options;

pbt_status pbt_rmsprop_check(const pbt_rmsprop_options *o, pbt_error *err);
pbt_status pbt_rmsprop_step(pbt_tensor *p, const pbt_tensor *grad,
                            pbt_tensor *square_avg, pbt_tensor *grad_avg,
                            pbt_tensor *buf, const pbt_rmsprop_options *o,
                            pbt_error *err);

#ifdef __cplusplus
}
#endif
#endif
