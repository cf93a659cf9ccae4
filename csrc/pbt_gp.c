/* pbt_gp.c -- Gaussian-process regression with PB2's time-varying kernel
 * (see pbt_gp.h). */
#include "pbt_gp.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (OpenBLAS ships it; Debian has no header for its Fortran entry
 * points).  The trailing length is gfortran's hidden argument for uplo. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);

#define LOG_2PI 1.8378770664093454836
#define MAX_POINTS 46340 /* n * n must fit an int for LAPACK */

struct pbt_gp {
  int64_t n, dims;
  pbt_gp_theta theta;
  double *x;     /* n * dims, row-major */
  double *y;     /* n */
  double *chol;  /* n * n, column-major: L (lower) with K + jitter I = L L' */
  double *alpha; /* K^-1 y */
  double jitter;
  double lml;
};

void pbt_gp_theta_to_u(const pbt_gp_theta *t, double u[4]) {
  double r = t->epsilon / 0.5;
  u[0] = log(t->variance);
  u[1] = log(t->lengthscale);
  u[2] = log(r / (1.0 - r));
  u[3] = log(t->noise);
}

void pbt_gp_theta_from_u(const double u[4], pbt_gp_theta *t) {
  t->variance = exp(u[0]);
  t->lengthscale = exp(u[1]);
  t->epsilon = 0.5 / (1.0 + exp(-u[2]));
  t->noise = exp(u[3]);
}

/* k(a, b) for the kernel theta over dims values (column 0 the time). */
static double kernel(const pbt_gp_theta *t, const double *a, const double *b, int64_t dims) {
  double d2 = 0, dt = fabs(a[0] - b[0]);
  int64_t j;
  for (j = 1; j < dims; j++) d2 += (a[j] - b[j]) * (a[j] - b[j]);
  return t->variance * exp(-d2 / t->lengthscale + 0.5 * dt * log1p(-t->epsilon));
}

static int theta_ok(const pbt_gp_theta *t) {
  return isfinite(t->variance) && t->variance > 0 && isfinite(t->lengthscale) &&
         t->lengthscale > 0 && t->epsilon >= 0 && t->epsilon < 1 && isfinite(t->noise) &&
         t->noise >= 0;
}

static int all_finite(const double *v, int64_t n) {
  int64_t k;
  for (k = 0; k < n; k++)
    if (!isfinite(v[k])) return 0;
  return 1;
}

/* Factorises K (+ jitter) into gp->chol; 0 when no jitter made it work. */
static int factorise(pbt_gp *gp) {
  int64_t n = gp->n, i, j;
  int nn = (int)n, info = 0, tries;
  double mean_diag = gp->theta.variance + gp->theta.noise, jitter = 0;
  /* no jitter, then 1e-10, 1e-9, ..., 1e-2 times the mean diagonal */
  for (tries = 0; tries <= 9; tries++) {
    for (j = 0; j < n; j++) {
      for (i = j; i < n; i++) {
        double k = kernel(&gp->theta, gp->x + i * gp->dims, gp->x + j * gp->dims, gp->dims);
        if (i == j) k += gp->theta.noise + jitter;
        gp->chol[i + j * n] = k;
      }
      for (i = 0; i < j; i++) gp->chol[i + j * n] = 0; /* upper part unused: zero */
    }
    dpotrf_("L", &nn, gp->chol, &nn, &info, 1);
    if (info == 0) {
      gp->jitter = jitter;
      return 1;
    }
    jitter = mean_diag * pow(10.0, tries - 10); /* for the next try */
  }
  return 0;
}

pbt_gp *pbt_gp_new(const double *x, int64_t n, int64_t dims, const double *y,
                   const pbt_gp_theta *theta, pbt_error *err) {
  pbt_gp *gp;
  int64_t i;
  double quad = 0, logdet = 0;
  if (n < 1 || n > MAX_POINTS) {
    pbt_fail(err, PBT_ERR_ARG, "a GP needs 1 to %d points, got %lld", MAX_POINTS, (long long)n);
    return NULL;
  }
  if (dims < 1 || dims > 4096) {
    pbt_fail(err, PBT_ERR_ARG, "a GP point needs 1 to 4096 values (the time first), got %lld",
             (long long)dims);
    return NULL;
  }
  if (!theta_ok(theta)) {
    pbt_fail(err, PBT_ERR_ARG,
             "kernel parameters out of range: variance %g and lengthscale %g must be > 0, "
             "epsilon %g in [0, 1), noise %g >= 0",
             theta->variance, theta->lengthscale, theta->epsilon, theta->noise);
    return NULL;
  }
  if (!all_finite(x, n * dims) || (y && !all_finite(y, n))) {
    pbt_fail(err, PBT_ERR_ARG, "a GP's data must be finite numbers");
    return NULL;
  }
  gp = (pbt_gp *)calloc(1, sizeof *gp);
  if (!gp) goto nomem;
  gp->n = n;
  gp->dims = dims;
  gp->theta = *theta;
  gp->x = (double *)malloc((size_t)(n * dims) * sizeof(double));
  gp->y = (double *)calloc((size_t)n, sizeof(double));
  gp->chol = (double *)malloc((size_t)n * (size_t)n * sizeof(double));
  gp->alpha = (double *)malloc((size_t)n * sizeof(double));
  if (!gp->x || !gp->y || !gp->chol || !gp->alpha) goto nomem;
  memcpy(gp->x, x, (size_t)(n * dims) * sizeof(double));
  if (y) memcpy(gp->y, y, (size_t)n * sizeof(double));
  if (!factorise(gp)) {
    pbt_fail(err, PBT_ERR_ARG,
             "the GP's covariance is not positive definite, even with a jitter of 1e-2 "
             "times its diagonal");
    pbt_gp_free(gp);
    return NULL;
  }
  memcpy(gp->alpha, gp->y, (size_t)n * sizeof(double));
  cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, gp->chol, (int)n,
              gp->alpha, 1);
  quad = cblas_ddot((int)n, gp->alpha, 1, gp->alpha, 1); /* |L^-1 y|^2 = y'K^-1 y */
  cblas_dtrsv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, (int)n, gp->chol, (int)n,
              gp->alpha, 1);
  for (i = 0; i < n; i++) logdet += log(gp->chol[i + i * n]);
  gp->lml = -0.5 * quad - logdet - 0.5 * (double)n * LOG_2PI;
  if (!isfinite(gp->lml) || !all_finite(gp->alpha, n)) {
    pbt_fail(err, PBT_ERR_ARG,
             "the targets and kernel overflow double precision (log likelihood %g): scale them",
             gp->lml);
    pbt_gp_free(gp);
    return NULL;
  }
  return gp;
nomem:
  pbt_gp_free(gp);
  pbt_fail(err, PBT_ERR_NOMEM, "not enough memory for a GP of %lld points", (long long)n);
  return NULL;
}

void pbt_gp_free(pbt_gp *gp) {
  if (!gp) return;
  free(gp->x);
  free(gp->y);
  free(gp->chol);
  free(gp->alpha);
  free(gp);
}

int64_t pbt_gp_size(const pbt_gp *gp) { return gp->n; }
int64_t pbt_gp_dims(const pbt_gp *gp) { return gp->dims; }
pbt_gp_theta pbt_gp_get_theta(const pbt_gp *gp) { return gp->theta; }
double pbt_gp_jitter(const pbt_gp *gp) { return gp->jitter; }
double pbt_gp_lml(const pbt_gp *gp) { return gp->lml; }

pbt_status pbt_gp_lml_grad(const pbt_gp *gp, double grad[4], pbt_error *err) {
  int64_t n = gp->n, dims = gp->dims, i, j, c;
  int nn = (int)n, info = 0;
  const pbt_gp_theta *t = &gp->theta;
  double *inv = (double *)malloc((size_t)n * (size_t)n * sizeof(double));
  double deps = t->epsilon * (1.0 - 2.0 * t->epsilon); /* d e / d u3 */
  if (!inv) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory for a GP's gradient");
  memcpy(inv, gp->chol, (size_t)n * (size_t)n * sizeof(double));
  dpotri_("L", &nn, inv, &nn, &info, 1); /* K^-1, lower triangle */
  if (info != 0) {
    free(inv);
    return pbt_fail(err, PBT_ERR_ARG, "the GP's covariance could not be inverted");
  }
  for (c = 0; c < 4; c++) grad[c] = 0;
  /* dL/du_c = tr((alpha alpha' - K^-1) dK/du_c) / 2, over the lower
   * triangle: off-diagonal terms twice */
  for (j = 0; j < n; j++) {
    const double *b = gp->x + j * dims;
    for (i = j; i < n; i++) {
      const double *a = gp->x + i * dims;
      double w = gp->alpha[i] * gp->alpha[j] - inv[i + j * n];
      double d2 = 0, dt = fabs(a[0] - b[0]), kf, f = i == j ? 0.5 : 1.0;
      for (c = 1; c < dims; c++) d2 += (a[c] - b[c]) * (a[c] - b[c]);
      kf = kernel(t, a, b, dims);
      grad[0] += f * w * kf;
      grad[1] += f * w * kf * d2 / t->lengthscale;
      grad[2] += f * w * kf * (-0.5 * dt / (1.0 - t->epsilon)) * deps;
      if (i == j) grad[3] += f * w * t->noise;
    }
  }
  free(inv);
  return PBT_OK;
}

/* k(z, X) for the m points zs of gp's dims into kz (column k: point k),
 * column-major n x m. */
static void cross_kernel(const pbt_gp *gp, const double *zs, int64_t m, double *kz) {
  int64_t i, k;
  for (k = 0; k < m; k++)
    for (i = 0; i < gp->n; i++)
      kz[i + k * gp->n] = kernel(&gp->theta, gp->x + i * gp->dims, zs + k * gp->dims, gp->dims);
}

/* mean and/or variance at m points; work holds n * m doubles */
static void predict(const pbt_gp *gp, const double *zs, int64_t m, double *mean, double *var,
                    double *work) {
  int64_t n = gp->n, k;
  cross_kernel(gp, zs, m, work);
  if (mean)
    cblas_dgemv(CblasColMajor, CblasTrans, (int)n, (int)m, 1.0, work, (int)n, gp->alpha, 1, 0.0,
                mean, 1);
  if (var) {
    cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)n,
                (int)m, 1.0, gp->chol, (int)n, work, (int)n);
    for (k = 0; k < m; k++) {
      double v = gp->theta.variance - cblas_ddot((int)n, work + k * n, 1, work + k * n, 1);
      var[k] = v > 0 ? v : 0;
    }
  }
}

pbt_status pbt_gp_predict(const pbt_gp *gp, const double *xs, int64_t m, double *mean,
                          double *var, pbt_error *err) {
  double *work;
  if (m < 0) return pbt_fail(err, PBT_ERR_ARG, "a negative number of points (%lld)", (long long)m);
  if (m == 0) return PBT_OK;
  if (!all_finite(xs, m * gp->dims))
    return pbt_fail(err, PBT_ERR_ARG, "the points to predict at must be finite numbers");
  work = (double *)malloc((size_t)gp->n * (size_t)m * sizeof(double));
  if (!work) return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory to predict at %lld points",
                             (long long)m);
  predict(gp, xs, m, mean, var, work);
  free(work);
  return PBT_OK;
}

/* ---- fitting ------------------------------------------------------------------ */

typedef struct fit_data {
  const double *y;
  int64_t n;
  double *d2, *dt;   /* pairwise squared feature distances and time distances (n * n) */
  double *kf, *k;    /* the kernel without noise, then K / L / K^-1 (n * n) */
  double *alpha;     /* n */
  int evaluations;
} fit_data;

/* f = -LML at u and its gradient g (of f); +inf when K cannot be
 * factorised there.  Works in d's buffers: no allocation. */
static double objective(fit_data *d, const double u[4], double g[4]) {
  pbt_gp_theta t;
  int64_t n = d->n, i, j;
  int nn = (int)n, info = 0;
  double lg, quad, logdet = 0, deps, f;
  d->evaluations++;
  pbt_gp_theta_from_u(u, &t);
  lg = log1p(-t.epsilon);
  for (j = 0; j < n; j++)
    for (i = j; i < n; i++) {
      double kf = t.variance * exp(-d->d2[i + j * n] / t.lengthscale + 0.5 * d->dt[i + j * n] * lg);
      d->kf[i + j * n] = kf;
      d->k[i + j * n] = kf + (i == j ? t.noise : 0);
    }
  dpotrf_("L", &nn, d->k, &nn, &info, 1);
  if (info != 0) return INFINITY;
  memcpy(d->alpha, d->y, (size_t)n * sizeof(double));
  cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, nn, d->k, nn, d->alpha, 1);
  quad = cblas_ddot(nn, d->alpha, 1, d->alpha, 1);
  cblas_dtrsv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, nn, d->k, nn, d->alpha, 1);
  for (i = 0; i < n; i++) logdet += log(d->k[i + i * n]);
  f = 0.5 * quad + logdet + 0.5 * (double)n * LOG_2PI;
  dpotri_("L", &nn, d->k, &nn, &info, 1); /* K^-1, lower triangle */
  if (info != 0) return INFINITY;
  deps = t.epsilon * (1.0 - 2.0 * t.epsilon);
  g[0] = g[1] = g[2] = g[3] = 0;
  for (j = 0; j < n; j++)
    for (i = j; i < n; i++) {
      double w = (d->alpha[i] * d->alpha[j] - d->k[i + j * n]) * (i == j ? 0.5 : 1.0);
      double wk = w * d->kf[i + j * n];
      g[0] -= wk;
      g[1] -= wk * d->d2[i + j * n] / t.lengthscale;
      g[2] -= wk * (-0.5 * d->dt[i + j * n] / (1.0 - t.epsilon)) * deps;
      if (i == j) g[3] -= w * t.noise;
    }
  return f;
}

static double clampu(double v) {
  return v < PBT_GP_UMIN ? PBT_GP_UMIN : (v > PBT_GP_UMAX ? PBT_GP_UMAX : v);
}

/* coordinate c is held at a bound by the gradient g (of f, minimised) */
static int held(const double u[4], const double g[4], int c) {
  return (u[c] <= PBT_GP_UMIN && g[c] > 0) || (u[c] >= PBT_GP_UMAX && g[c] < 0);
}

pbt_status pbt_gp_fit(const double *x, int64_t n, int64_t dims, const double *y,
                      pbt_gp_theta *theta, pbt_gp_fit_info *info, pbt_error *err) {
  fit_data d = {0};
  double u[4], g[4], H[16], f, pg, pn;
  int it, c, r, flat = 0;
  pbt_status st = PBT_OK;
  pbt_gp *probe;
  if (!y) return pbt_fail(err, PBT_ERR_ARG, "fitting a GP needs its targets y");
  /* argument checks (and a first factorisation) by building the GP once */
  probe = pbt_gp_new(x, n, dims, y, theta, err);
  if (!probe) return err ? err->status : PBT_ERR_ARG;
  pbt_gp_free(probe);
  if (!(theta->epsilon > 0 && theta->epsilon < 0.5 && theta->noise > 0))
    return pbt_fail(err, PBT_ERR_ARG,
                    "a fit's start needs 0 < epsilon < 0.5 and noise > 0, got %g and %g",
                    theta->epsilon, theta->noise);
  d.y = y;
  d.n = n;
  d.evaluations = 0;
  d.d2 = (double *)malloc((size_t)n * (size_t)n * sizeof(double));
  d.dt = (double *)malloc((size_t)n * (size_t)n * sizeof(double));
  d.kf = (double *)malloc((size_t)n * (size_t)n * sizeof(double));
  d.k = (double *)malloc((size_t)n * (size_t)n * sizeof(double));
  d.alpha = (double *)malloc((size_t)n * sizeof(double));
  if (!d.d2 || !d.dt || !d.kf || !d.k || !d.alpha) {
    st = pbt_fail(err, PBT_ERR_NOMEM, "not enough memory to fit a GP of %lld points", (long long)n);
    goto done;
  }
  for (c = 0; c < n; c++) {
    int64_t i, j;
    for (i = c; i < n; i++) {
      const double *a = x + i * dims, *b = x + c * dims;
      double d2 = 0;
      for (j = 1; j < dims; j++) d2 += (a[j] - b[j]) * (a[j] - b[j]);
      d.d2[i + c * n] = d2;
      d.dt[i + c * n] = fabs(a[0] - b[0]);
    }
  }
  pbt_gp_theta_to_u(theta, u);
  for (c = 0; c < 4; c++) u[c] = clampu(u[c]);
  f = objective(&d, u, g);
  if (!isfinite(f) || !all_finite(g, 4)) {
    st = pbt_fail(err, PBT_ERR_ARG,
                  "the log likelihood is not finite at the start (the targets overflow, or the "
                  "covariance is not positive definite there)");
    goto done;
  }
  memset(H, 0, sizeof H);
  for (c = 0; c < 4; c++) H[c * 5] = 1;
  for (it = 0; it < 500; it++) {
    double p[4], un[4], gn[4], fn = INFINITY, slope = 0, step = 1, s[4], yv[4], sy = 0;
    int ok = 0, identity = 1;
    for (pg = 0, c = 0; c < 4; c++)
      if (!held(u, g, c) && fabs(g[c]) > pg) pg = fabs(g[c]);
    if (pg < 1e-8) break;
    /* p = -H g on the free coordinates */
    for (r = 0; r < 4; r++) {
      p[r] = 0;
      if (held(u, g, r)) continue;
      for (c = 0; c < 4; c++)
        if (!held(u, g, c)) p[r] -= H[r * 4 + c] * g[c];
      slope += p[r] * g[r];
    }
    for (c = 0; c < 16; c++)
      if (H[c] != (c % 5 == 0 ? 1.0 : 0.0)) identity = 0;
    if (!(slope < 0)) { /* not a descent direction: steepest descent */
      for (c = 0; c < 4; c++) p[c] = held(u, g, c) ? 0 : -g[c];
      memset(H, 0, sizeof H);
      for (c = 0; c < 4; c++) H[c * 5] = 1;
      identity = 1;
    }
    /* a first step of at most 1 in u: exp(1) in a kernel parameter */
    for (pn = 0, c = 0; c < 4; c++)
      if (fabs(p[c]) > pn) pn = fabs(p[c]);
    if (pn > 1) step = 1 / pn;
    for (r = 0; r < 12; r++, step *= 0.5) {
      double dec = 0;
      for (c = 0; c < 4; c++) {
        un[c] = clampu(u[c] + step * p[c]);
        dec += g[c] * (un[c] - u[c]);
      }
      fn = objective(&d, un, gn);
      if (fn <= f + 1e-4 * dec && dec < 0) {
        ok = 1;
        break;
      }
      if (dec >= 0) break; /* the projection left no descent */
    }
    if (!ok) {
      /* no decrease a double can tell along the step: converged when the
       * gradient is small, else once more along the gradient */
      if (identity || pg < 1e-4) break;
      memset(H, 0, sizeof H);
      for (c = 0; c < 4; c++) H[c * 5] = 1;
      continue;
    }
    for (c = 0; c < 4; c++) {
      s[c] = un[c] - u[c];
      yv[c] = gn[c] - g[c];
      sy += s[c] * yv[c];
    }
    if (sy > 1e-12) { /* BFGS update of the inverse Hessian */
      double Hy[4], yHy = 0;
      for (r = 0; r < 4; r++) {
        Hy[r] = 0;
        for (c = 0; c < 4; c++) Hy[r] += H[r * 4 + c] * yv[c];
        yHy += yv[r] * Hy[r];
      }
      for (r = 0; r < 4; r++)
        for (c = 0; c < 4; c++)
          H[r * 4 + c] += ((sy + yHy) * s[r] * s[c]) / (sy * sy) - (Hy[r] * s[c] + s[r] * Hy[c]) / sy;
    }
    memcpy(u, un, sizeof u);
    memcpy(g, gn, sizeof g);
    /* three steps in a row that gain nothing a double can tell: done */
    flat = f - fn <= 1e-14 * (fabs(f) > 1 ? fabs(f) : 1) ? flat + 1 : 0;
    f = fn;
    if (flat >= 3) break;
  }
  pbt_gp_theta_from_u(u, theta);
  if (info) {
    info->lml = -f;
    info->iterations = it;
    info->evaluations = d.evaluations;
  }
done:
  free(d.d2);
  free(d.dt);
  free(d.kf);
  free(d.k);
  free(d.alpha);
  return st;
}

/* ---- the acquisition ------------------------------------------------------------ */

typedef struct acq {
  const pbt_gp *mean_gp, *var_gp;
  const double *fixed;
  int64_t nfixed, dims;
  double kappa;
  double *z, *work; /* one point; n * 1 doubles of work (the larger n) */
} acq;

static double acq_at(acq *a, const double *x) {
  double mean, var;
  memcpy(a->z + a->nfixed, x, (size_t)(a->dims - a->nfixed) * sizeof(double));
  predict(a->mean_gp, a->z, 1, &mean, NULL, a->work);
  predict(a->var_gp, a->z, 1, NULL, &var, a->work);
  return mean + a->kappa * sqrt(var);
}

pbt_status pbt_gp_ucb_max(const pbt_gp *mean_gp, const pbt_gp *var_gp, const double *fixed,
                          int64_t nfixed, double kappa, const double *starts, int64_t nstarts,
                          pbt_generator *g, int64_t ncandidates, double *x, double *value,
                          pbt_error *err) {
  enum { NBEST = 5 };
  int64_t dims = mean_gp->dims, q = dims - nfixed, total, k, j, nbest = 0, best[NBEST];
  double bestv[NBEST], *cand = NULL, *zs = NULL, *mean = NULL, *var = NULL, *work = NULL;
  double top = -INFINITY, *xb = NULL, *xt = NULL;
  int64_t nwork;
  acq a;
  pbt_status st = PBT_OK;
  if (var_gp->dims != dims)
    return pbt_fail(err, PBT_ERR_ARG, "the two GPs' points differ in size (%lld and %lld values)",
                    (long long)dims, (long long)var_gp->dims);
  if (nfixed < 1 || nfixed >= dims)
    return pbt_fail(err, PBT_ERR_ARG,
                    "fixed values must be 1 to %lld of a point's %lld (the time first), got %lld",
                    (long long)(dims - 1), (long long)dims, (long long)nfixed);
  if (!(kappa >= 0) || !isfinite(kappa))
    return pbt_fail(err, PBT_ERR_ARG, "kappa must be a finite number >= 0, got %g", kappa);
  if (ncandidates < 0 || nstarts < 0 || ncandidates > 1000000 || nstarts > 1000000 ||
      ncandidates + nstarts < 1)
    return pbt_fail(err, PBT_ERR_ARG,
                    "the search needs 1 to 2000000 points: %lld candidates and %lld starts",
                    (long long)ncandidates, (long long)nstarts);
  if (!all_finite(fixed, nfixed) || (nstarts && !all_finite(starts, nstarts * q)))
    return pbt_fail(err, PBT_ERR_ARG, "the fixed values and starts must be finite numbers");
  total = ncandidates + nstarts;
  nwork = mean_gp->n > var_gp->n ? mean_gp->n : var_gp->n;
  cand = (double *)malloc((size_t)(total * q) * sizeof(double));
  zs = (double *)malloc((size_t)(total * dims) * sizeof(double));
  mean = (double *)malloc((size_t)total * sizeof(double));
  var = (double *)malloc((size_t)total * sizeof(double));
  work = (double *)malloc((size_t)nwork * (size_t)total * sizeof(double));
  a.z = (double *)malloc((size_t)dims * sizeof(double));
  xb = (double *)malloc((size_t)q * sizeof(double));
  xt = (double *)malloc((size_t)q * sizeof(double));
  if (!cand || !zs || !mean || !var || !work || !a.z || !xb || !xt) {
    st = pbt_fail(err, PBT_ERR_NOMEM, "not enough memory for an acquisition search");
    goto done;
  }
  for (k = 0; k < nstarts; k++)
    for (j = 0; j < q; j++) {
      double v = starts[k * q + j];
      cand[k * q + j] = v < 0 ? 0 : (v > 1 ? 1 : v);
    }
  for (k = nstarts; k < total; k++)
    for (j = 0; j < q; j++) cand[k * q + j] = pbt_generator_uniform(g);
  for (k = 0; k < total; k++) {
    memcpy(zs + k * dims, fixed, (size_t)nfixed * sizeof(double));
    memcpy(zs + k * dims + nfixed, cand + k * q, (size_t)q * sizeof(double));
  }
  predict(mean_gp, zs, total, mean, NULL, work);
  predict(var_gp, zs, total, NULL, var, work);
  /* the best NBEST candidates (earlier first among equals) */
  for (k = 0; k < total; k++) {
    double v = mean[k] + kappa * sqrt(var[k]);
    int64_t pos = nbest;
    while (pos > 0 && v > bestv[pos - 1]) pos--;
    if (pos >= NBEST) continue;
    if (nbest < NBEST) nbest++;
    for (j = nbest - 1; j > pos; j--) {
      bestv[j] = bestv[j - 1];
      best[j] = best[j - 1];
    }
    bestv[pos] = v;
    best[pos] = k;
  }
  if (nbest == 0 || !isfinite(bestv[0])) {
    st = pbt_fail(err, PBT_ERR_ARG, "the acquisition is not finite at any candidate (the GPs' "
                                    "predictions overflow)");
    goto done;
  }
  top = bestv[0];
  memcpy(xb, cand + best[0] * q, (size_t)q * sizeof(double));
  a.mean_gp = mean_gp;
  a.var_gp = var_gp;
  a.fixed = fixed;
  a.nfixed = nfixed;
  a.dims = dims;
  a.kappa = kappa;
  a.work = work;
  memcpy(a.z, fixed, (size_t)nfixed * sizeof(double));
  /* compass search from each: +-s along each coordinate, s halved when
   * nothing improves */
  for (k = 0; k < nbest; k++) {
    double v = bestv[k], s = 0.125;
    int evals = 0;
    memcpy(xt, cand + best[k] * q, (size_t)q * sizeof(double));
    while (s >= 1e-6 && evals < 20000) {
      int improved = 0;
      for (j = 0; j < q; j++) {
        int sign;
        for (sign = -1; sign <= 1; sign += 2) {
          double old = xt[j], nv, w;
          nv = old + sign * s;
          nv = nv < 0 ? 0 : (nv > 1 ? 1 : nv);
          if (nv == old) continue;
          xt[j] = nv;
          w = acq_at(&a, xt);
          evals++;
          if (w > v) {
            v = w;
            improved = 1;
            break;
          }
          xt[j] = old;
        }
      }
      if (!improved) s *= 0.5;
    }
    if (v > top) {
      top = v;
      memcpy(xb, xt, (size_t)q * sizeof(double));
    }
  }
  memcpy(x, xb, (size_t)q * sizeof(double));
  if (value) *value = top;
done:
  free(cand);
  free(zs);
  free(mean);
  free(var);
  free(work);
  free(a.z);
  free(xb);
  free(xt);
  return st;
}
