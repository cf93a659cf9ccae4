/* pbt_stats.c -- incomplete beta function, Student's t, Welch's t-test. */
#define _DEFAULT_SOURCE /* lgamma_r (glibc, BSDs) */
#define _REENTRANT      /* lgamma_r (macOS) */
#include <float.h>
#include <math.h>

#include "pbt_stats.h"

#define LN_SQRT_2PI 0.918938533204672741780329736406

/* lgamma(x) for x > 0, without touching signgam. */
static double lgam(double x) {
  int sign;
  return lgamma_r(x, &sign);
}

/* The remainder of Stirling's series, lgamma(x) - ((x - 1/2) log x - x +
 * log sqrt(2 pi)), for x >= 10: sum of B_2k / (2k (2k - 1) x^(2k - 1)).
 * Nine terms reach below 1e-18 at x = 10. */
static double stirling_rest(double x) {
  static const double c[] = {
      1.0 / 12,           -1.0 / 360,    1.0 / 1260,
      -1.0 / 1680,        1.0 / 1188,    -691.0 / 360360,
      1.0 / 156,          -3617.0 / 122400, 43867.0 / 244188};
  double z = 1 / (x * x), s = 0;
  int k;
  for (k = (int)(sizeof c / sizeof c[0]) - 1; k >= 0; k--) s = s * z + c[k];
  return s / x;
}

double pbt_lbeta(double a, double b) {
  double p = a < b ? a : b, q = a < b ? b : a, r;
  if (isnan(a) || isnan(b) || p <= 0) return NAN;
  if (isinf(q)) return -INFINITY;
  r = p / (p + q);
  if (p >= 10) /* both large: Stirling for all three */
    return -0.5 * log(q) + LN_SQRT_2PI +
           (stirling_rest(p) + stirling_rest(q) - stirling_rest(p + q)) +
           (p - 0.5) * log(r) + q * log1p(-r);
  if (q >= 10) /* lgamma(q) - lgamma(p + q) by Stirling, without cancelling */
    return lgam(p) + (stirling_rest(q) - stirling_rest(p + q)) + p -
           p * log(p + q) + (q - 0.5) * log1p(-r);
  return lgam(p) + lgam(q) - lgam(p + q);
}

/* The continued fraction of I_x(a, b) (Numerical Recipes' betacf, modified
 * Lentz), which converges quickly for x < (a + 1) / (a + b + 2).  y = 1 - x
 * exactly.  When x is near 1 (large a: the t distribution with many degrees
 * of freedom) the denominators 1 + aa d cancel down to about y; the first
 * one is written ((1 - b) + (a + b) y) / (a + 1), and the recurrence runs
 * in long double (64-bit mantissa on x86), which keeps p within 1e-12 of
 * the truth up to df = 2e8 instead of 4e-10. */
static double beta_cf(double a, double b, double x, double y) {
  typedef long double real;
  const real tiny = 1e-300L, eps = 4 * LDBL_EPSILON, ra = a, rb = b, rx = x;
  real c = 1, d = ((1 - rb) + (ra + rb) * (real)y) / (ra + 1), h, aa, del;
  long m;
  if (fabsl(d) < tiny) d = tiny;
  d = 1 / d;
  h = d;
  for (m = 1; m <= 10000000; m++) {
    real m2 = 2 * (real)m, dm = (real)m;
    aa = dm * (rb - dm) * rx / ((ra - 1 + m2) * (ra + m2));
    d = 1 + aa * d;
    if (fabsl(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (fabsl(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(ra + dm) * (ra + rb + dm) * rx / ((ra + m2) * (ra + 1 + m2));
    d = 1 + aa * d;
    if (fabsl(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (fabsl(c) < tiny) c = tiny;
    d = 1 / d;
    del = d * c;
    h *= del;
    if (!(fabsl(del - 1) > eps)) break; /* converged (or NaN) */
  }
  return (double)h;
}

/* x^a y^b / (a B(a, b)) * cf, where y = 1 - x (x and y each accurate):
 * the direct evaluation of I_x(a, b), good when x < (a + 1) / (a + b + 2).
 * x^a y^b is taken with pow (accurate to an ulp where exp(a log x) would
 * lose |a log x| ulps) unless it underflows; a power of a number near 1 is
 * exp(a log1p(-y)), from the small complement. */
static double beta_direct(double x, double y, double a, double b) {
  double lb = pbt_lbeta(a, b), cf = beta_cf(a, b, x, y);
  double xa = x <= 0.5 ? pow(x, a) : exp(a * log1p(-y));
  double yb = y <= 0.5 ? pow(y, b) : exp(b * log1p(-x));
  double f = xa * yb, e = exp(-lb);
  if (f >= DBL_MIN && e > 0 && isfinite(e)) return f * e / a * cf;
  return exp(a * (x <= 0.5 ? log(x) : log1p(-y)) +
             b * (y <= 0.5 ? log(y) : log1p(-x)) - lb) /
         a * cf;
}

/* I_x(a, b) (complement = 0) or 1 - I_x(a, b) (complement = 1), with
 * y = 1 - x given so that neither tail is computed by subtraction. */
static double betainc_xy(double x, double y, double a, double b,
                         int complement) {
  double v;
  int flip;
  if (x <= 0) return complement ? 1 : 0;
  if (y <= 0) return complement ? 0 : 1;
  /* I_x(a, b) = 1 - I_y(b, a): evaluate whichever converges */
  flip = !(x < (a + 1) / (a + b + 2));
  v = flip ? beta_direct(y, x, b, a) : beta_direct(x, y, a, b);
  if (flip) complement = !complement;
  return complement ? 1 - v : v;
}

/* Beyond this the continued fraction loses its accuracy: I_x(a, b) is
 * NaN there, and Student's t with more degrees of freedom is the normal
 * distribution (their difference is of order 1/df). */
#define PBT_BETAINC_MAX 1e10

static int betainc_bad(double x, double a, double b) {
  return isnan(x) || isnan(a) || isnan(b) || a <= 0 || b <= 0 || x < 0 ||
         x > 1 || a > PBT_BETAINC_MAX || b > PBT_BETAINC_MAX;
}

double pbt_betainc(double x, double a, double b) {
  if (betainc_bad(x, a, b)) return NAN;
  return betainc_xy(x, 1 - x, a, b, 0);
}

double pbt_betaincc(double x, double a, double b) {
  if (betainc_bad(x, a, b)) return NAN;
  return betainc_xy(x, 1 - x, a, b, 1);
}

/* For |t| and df: x = df / (df + t^2) and y = t^2 / (df + t^2), each
 * computed without subtraction and without overflow. */
static void t_xy(double t, double df, double *x, double *y) {
  double t2 = t * t, s = df + t2;
  if (isinf(t)) {
    *x = 0;
    *y = 1;
  } else if (isfinite(s)) {
    *x = df / s;
    *y = t2 / s;
  } else { /* t^2 or df + t^2 overflows: scale by the larger one */
    double r;
    if (fabs(t) > sqrt(df)) {
      r = sqrt(df) / fabs(t);
      r *= r;
      *x = r / (1 + r);
      *y = 1 / (1 + r);
    } else {
      r = fabs(t) / sqrt(df);
      r *= r;
      *x = 1 / (1 + r);
      *y = r / (1 + r);
    }
  }
}

/* P(T > |t|) when upper, else P(T <= |t|) */
static double t_tail(double t, double df, int upper) {
  double x, y, half;
  if (df > 2 * PBT_BETAINC_MAX) {
    half = 0.5 * erfc(fabs(t) / sqrt(2.0));
    return upper ? half : 1 - half;
  }
  t_xy(t, df, &x, &y);
  /* P(|T| > |t|) = I_x(df/2, 1/2) */
  half = 0.5 * betainc_xy(x, y, 0.5 * df, 0.5, 0);
  return upper ? half : 0.5 + 0.5 * betainc_xy(x, y, 0.5 * df, 0.5, 1);
}

double pbt_t_sf(double t, double df) {
  if (isnan(t) || isnan(df) || df <= 0) return NAN;
  return t >= 0 ? t_tail(t, df, 1) : t_tail(t, df, 0);
}

double pbt_t_cdf(double t, double df) { return pbt_t_sf(-t, df); }

/* Neumaier's compensated sum of f(x[i]) where f is x or (x - m)^2. */
static double csum(const double *x, size_t n, int squares, double m) {
  double s = 0, c = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    double v = squares ? (x[i] - m) * (x[i] - m) : x[i], u = s + v;
    c += fabs(s) >= fabs(v) ? (s - u) + v : (v - u) + s;
    s = u;
  }
  return s + c;
}

void pbt_mean_var(const double *x, size_t n, double *mean, double *var) {
  size_t i;
  if (n == 0) {
    *mean = NAN;
    *var = 0;
    return;
  }
  for (i = 1; i < n && x[i] == x[0]; i++) {
  }
  if (i == n && isfinite(x[0])) { /* all equal: no rounding */
    *mean = x[0];
    *var = 0;
    return;
  }
  *mean = csum(x, n, 0, 0) / (double)n;
  *var = n < 2 ? 0 : csum(x, n, 1, *mean) / (double)(n - 1);
}

pbt_status pbt_welch(const double *a, size_t na, const double *b, size_t nb,
                     pbt_alternative alternative, pbt_welch_result *out,
                     pbt_error *err) {
  double ma, va, mb, vb, sa, sb, big, t, df, p;
  if (na < 2 || nb < 2)
    return pbt_fail(err, PBT_ERR_ARG,
                    "each sample needs at least 2 values, got %lu",
                    (unsigned long)(na < nb ? na : nb));
  if (alternative != PBT_TWO_SIDED && alternative != PBT_GREATER &&
      alternative != PBT_LESS)
    return pbt_fail(err, PBT_ERR_ARG, "unknown alternative %d",
                    (int)alternative);
  pbt_mean_var(a, na, &ma, &va);
  pbt_mean_var(b, nb, &mb, &vb);
  sa = va / (double)na;
  sb = vb / (double)nb;
  t = (ma - mb) / sqrt(sa + sb);
  if (sa + sb == 0) { /* degenerate: t is +-inf or NaN (equal means) */
    df = NAN;
    if (isnan(t))
      p = NAN;
    else if (alternative == PBT_TWO_SIDED)
      p = 0;
    else
      p = (alternative == PBT_GREATER) == (t > 0) ? 0 : 1;
  } else {
    /* (sa + sb)^2 / (sa^2 / (na - 1) + sb^2 / (nb - 1)), scaled by the
     * larger term so that tiny variances neither underflow nor overflow */
    big = sa > sb ? sa : sb;
    sa /= big;
    sb /= big;
    df = (sa + sb) * (sa + sb) /
         (sa * sa / (double)(na - 1) + sb * sb / (double)(nb - 1));
    if (alternative == PBT_TWO_SIDED)
      p = isnan(t) || isnan(df) ? NAN : 2 * t_tail(t, df, 1); /* = I_x */
    else if (alternative == PBT_GREATER)
      p = pbt_t_sf(t, df);
    else
      p = pbt_t_cdf(t, df);
  }
  out->t = t;
  out->df = df;
  out->p = p;
  return PBT_OK;
}
