/*
 * pbt_stats.h -- statistics for the t-test exploit rule: the regularised
 * incomplete beta function, Student's t distribution and Welch's unequal
 * variances t-test.
 *
 * Everything here is pure: no global state (lgamma_r, never lgamma, whose
 * glibc version writes the global signgam), so any thread may call it.
 *
 * Accuracy: the incomplete beta function is a continued fraction evaluated
 * by the modified Lentz method, with log B(a, b) computed so that large
 * arguments lose nothing to cancellation, and both x and 1 - x passed in so
 * that tails are computed directly, never as 1 - (something near 1).  Welch's
 * t, df and p agree with scipy.stats.ttest_ind(a, b, equal_var=False) to
 * better than 1e-9 relative, p-values of 1e-30 and below included
 * (spec/stats_spec.lua, values from spec/welch_reference.py).
 */
#ifndef PBT_STATS_H
#define PBT_STATS_H

#include <stddef.h>

#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* I_x(a, b), the regularised incomplete beta function, for a > 0, b > 0 and
 * 0 <= x <= 1.  NaN for anything else (NaN arguments included). */
double pbt_betainc(double x, double a, double b);
/* 1 - I_x(a, b), computed directly (accurate when I_x(a, b) is near 1). */
double pbt_betaincc(double x, double a, double b);
/* log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b), for a, b > 0,
 * without the cancellation of that formula when a or b is large. */
double pbt_lbeta(double a, double b);

/* Student's t distribution with df > 0 degrees of freedom (df may be
 * +inf: the standard normal).  NaN for df <= 0 or NaN arguments. */
double pbt_t_cdf(double t, double df); /* P(T <= t) */
double pbt_t_sf(double t, double df);  /* P(T > t), computed directly */

typedef enum pbt_alternative {
  PBT_TWO_SIDED = 0, /* means differ */
  PBT_GREATER = 1,   /* mean of a > mean of b */
  PBT_LESS = 2       /* mean of a < mean of b */
} pbt_alternative;

typedef struct pbt_welch_result {
  double t;  /* (mean a - mean b) / sqrt(var a / na + var b / nb) */
  double df; /* Welch-Satterthwaite degrees of freedom */
  double p;  /* p-value for the alternative */
} pbt_welch_result;

/*
 * Welch's t-test of a[0..na-1] against b[0..nb-1] (variances with n - 1 in
 * the denominator, as scipy's ttest_ind(a, b, equal_var=False)).
 *
 * Fails (PBT_ERR_ARG, "each sample needs at least 2 values, got 1") when a
 * sample has fewer than 2 values.  Otherwise fills *out:
 *   - a NaN in a sample gives NaN t, df and p (scipy's nan_policy
 *     "propagate"); an infinity gives NaN too;
 *   - a sample whose values are all equal has variance exactly 0 (its mean
 *     is that value, with no rounding);
 *   - one variance 0: t and p as usual, df = n - 1 of the other sample;
 *   - both variances 0 (the degenerate case), as scipy 1.10 returns it:
 *       equal means:     t = NaN, df = NaN, p = NaN;
 *       different means: t = +inf or -inf, df = NaN, and p is the limit:
 *         two-sided 0; "greater" 0 when t = +inf, 1 when t = -inf;
 *         "less" the reverse.
 *     (scipy uses df = 1 there as a placeholder; we report NaN, since the
 *     Welch-Satterthwaite formula is 0/0.)
 */
pbt_status pbt_welch(const double *a, size_t na, const double *b, size_t nb,
                     pbt_alternative alternative, pbt_welch_result *out,
                     pbt_error *err);

/* Mean and variance (n - 1 denominator; 0 when n < 2) of x[0..n-1], two
 * passes with compensated sums; all-equal values give that value and 0. */
void pbt_mean_var(const double *x, size_t n, double *mean, double *var);

#ifdef __cplusplus
}
#endif
#endif
