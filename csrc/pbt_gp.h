/*
 * pbt_gp.h -- Gaussian-process regression with PB2's time-varying kernel
 * (Parker-Holder et al., "Provably Efficient Online Hyperparameter
 * Optimization with Population-Based Bandits", NeurIPS 2020), the model
 * behind pbt.explore.pb2.
 *
 * Data: n points of `dims` values each (row-major), column 0 the time t,
 * columns 1..dims-1 the other features (PB2 scales them to [0, 1]), and n
 * targets y.  The kernel, with theta = (variance s2, lengthscale l,
 * epsilon e, noise sn2):
 *
 *   k(a, b) = s2 exp(-sum_{j>=1} (a_j - b_j)^2 / l) (1 - e)^(|a_0 - b_0| / 2)
 *   K = k(X, X) + sn2 I
 *
 * (the squared distance over l, not 2 l^2, as in PB2's reference code);
 * points far apart in time are less alike, the more so the larger e.
 *
 *   log marginal likelihood  -y'K^-1 y / 2 - log|K| / 2 - n log(2 pi) / 2
 *   posterior at x*          mean k(x*, X) K^-1 y,
 *                            var  s2 - k(x*, X) K^-1 k(X, x*)  (of the latent f)
 *
 * K is factorised by LAPACK's dpotrf (OpenBLAS); when it is not positive
 * definite in floating point a jitter 1e-10 * mean(diag K), growing tenfold
 * up to 1e-2 * mean(diag K), is added to the diagonal and kept (see
 * pbt_gp_jitter).
 *
 * Fitting maximises the log marginal likelihood over the unconstrained
 * u = (log s2, log l, logit(e / 0.5), log sn2), each boxed to
 * [PBT_GP_UMIN, PBT_GP_UMAX] (so 0 < e < 0.5, as PB2 clips it), by a
 * projected quasi-Newton method (BFGS on the free coordinates, Armijo
 * backtracking, analytic gradient) from the given start.
 *
 * The acquisition maximised by pbt_gp_ucb_max is PB2's upper confidence
 * bound in its batch form (GP-BUCB): the mean of one GP (fitted to the
 * data) plus kappa times the standard deviation of another with the same
 * theta whose points also hold the members already explored in this batch,
 * so the next member is sent away from them.
 *
 * Everything is pure and reentrant: no global state; a pbt_gp is read-only
 * after pbt_gp_new, so threads may share it.
 */
#ifndef PBT_GP_H
#define PBT_GP_H

#include <stdint.h>

#include "pbt_random.h"
#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pbt_gp_theta {
  double variance;    /* s2 > 0 */
  double lengthscale; /* l > 0 */
  double epsilon;     /* 0 <= e < 1 */
  double noise;       /* sn2 >= 0 */
} pbt_gp_theta;

#define PBT_GP_UMIN (-9.0)
#define PBT_GP_UMAX 9.0

/* theta <-> u = (log s2, log l, logit(e / 0.5), log sn2); theta_to_u needs
 * 0 < e < 0.5 and positive s2, l, sn2. */
void pbt_gp_theta_to_u(const pbt_gp_theta *theta, double u[4]);
void pbt_gp_theta_from_u(const double u[4], pbt_gp_theta *theta);

typedef struct pbt_gp pbt_gp;

/* A GP on n points (x: n * dims values, row-major) with targets y (NULL:
 * zeros, for a GP used only for its variance) and kernel theta.  Copies its
 * inputs.  Fails (PBT_ERR_ARG) on n < 1, dims < 1, a non-finite value or a
 * theta outside its domain; (PBT_ERR_ARG) when K is not positive definite
 * even with the largest jitter; NULL on failure. */
pbt_gp *pbt_gp_new(const double *x, int64_t n, int64_t dims, const double *y,
                   const pbt_gp_theta *theta, pbt_error *err);
void pbt_gp_free(pbt_gp *gp);

int64_t pbt_gp_size(const pbt_gp *gp);
int64_t pbt_gp_dims(const pbt_gp *gp);
pbt_gp_theta pbt_gp_get_theta(const pbt_gp *gp);
/* The jitter added to K's diagonal (0 when none was needed). */
double pbt_gp_jitter(const pbt_gp *gp);
double pbt_gp_lml(const pbt_gp *gp);

/* The gradient of the log marginal likelihood with respect to u. */
pbt_status pbt_gp_lml_grad(const pbt_gp *gp, double grad[4], pbt_error *err);

/* Posterior mean and variance (of the latent f, clipped at 0) at m points
 * xs (m * dims values); mean or var may be NULL. */
pbt_status pbt_gp_predict(const pbt_gp *gp, const double *xs, int64_t m,
                          double *mean, double *var, pbt_error *err);

typedef struct pbt_gp_fit_info {
  double lml;      /* at the theta returned */
  int iterations;  /* quasi-Newton iterations taken */
  int evaluations; /* likelihood evaluations */
} pbt_gp_fit_info;

/* Maximises the log marginal likelihood of the data over theta, starting
 * from *theta (clipped into the box) and writing the result there.
 * info may be NULL. */
pbt_status pbt_gp_fit(const double *x, int64_t n, int64_t dims, const double *y,
                      pbt_gp_theta *theta, pbt_gp_fit_info *info, pbt_error *err);

/*
 * The point maximising mean_gp's mean + kappa * sqrt(var_gp's variance) over
 * z = (fixed[0..nfixed-1], x), x in the box [0, 1]^(dims - nfixed) (both
 * GPs of the same dims; 1 <= nfixed < dims, kappa >= 0).  Searched by
 * ncandidates points drawn uniformly from g plus the nstarts points `starts`
 * (clipped into the box), the best five of them refined by compass search
 * down to steps of 1e-6.  Writes x (dims - nfixed values) and the
 * acquisition's value there (value may be NULL).
 */
pbt_status pbt_gp_ucb_max(const pbt_gp *mean_gp, const pbt_gp *var_gp,
                          const double *fixed, int64_t nfixed, double kappa,
                          const double *starts, int64_t nstarts, pbt_generator *g,
                          int64_t ncandidates, double *x, double *value,
                          pbt_error *err);

#ifdef __cplusplus
}
#endif

#endif
