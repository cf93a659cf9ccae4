/* pbt_select.c -- truncation, t-test and tournament selection. */
#include <math.h>
#include <stdlib.h>

#include "pbt_select.h"
#include "pbt_stats.h"

int pbt_score_better(double a, double b, pbt_select_mode mode) {
  if (!isfinite(a)) return 0;
  if (!isfinite(b)) return 1;
  return mode == PBT_MODE_MIN ? a < b : a > b;
}

/* One entry of the ranking: sorted by (class, key, tie), a total order, so
 * that qsort's answer does not depend on its algorithm. */
typedef struct rank_entry {
  int nonfinite;
  double key; /* the score, negated in max mode: ascending is best first */
  size_t tie; /* a random permutation of 0..n-1 */
  size_t index;
} rank_entry;

static int rank_cmp(const void *pa, const void *pb) {
  const rank_entry *a = (const rank_entry *)pa, *b = (const rank_entry *)pb;
  if (a->nonfinite != b->nonfinite) return a->nonfinite - b->nonfinite;
  if (a->key < b->key) return -1;
  if (a->key > b->key) return 1;
  return (a->tie > b->tie) - (a->tie < b->tie);
}

pbt_status pbt_select_rank(const double *scores, size_t n,
                           pbt_select_mode mode, pbt_generator *g,
                           size_t *order, pbt_error *err) {
  rank_entry *e;
  size_t k;
  if (n == 0) return PBT_OK;
  if (n > SIZE_MAX / sizeof *e ||
      (e = (rank_entry *)malloc(n * sizeof *e)) == NULL)
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  /* Fisher-Yates shuffle of 0..n-1 in order[], then used as tie keys */
  for (k = 0; k < n; k++) order[k] = k;
  for (k = n - 1; k > 0; k--) {
    size_t j = (size_t)pbt_generator_integer(g, 0, (int64_t)k), t = order[k];
    order[k] = order[j];
    order[j] = t;
  }
  for (k = 0; k < n; k++) {
    double s = scores[k];
    e[k].nonfinite = !isfinite(s);
    e[k].key = e[k].nonfinite ? 0 : mode == PBT_MODE_MIN ? s : -s;
    e[k].tie = order[k];
    e[k].index = k;
  }
  qsort(e, n, sizeof *e, rank_cmp);
  for (k = 0; k < n; k++) order[k] = e[k].index;
  free(e);
  return PBT_OK;
}

size_t pbt_truncation_count(size_t n, double fraction) {
  double k;
  if (n < 2) return 0;
  k = floor(fraction * (double)n + 1e-9);
  if (k < 1) return 1;
  if (k > (double)(n / 2)) return n / 2;
  return (size_t)k;
}

static pbt_status check_fraction(double fraction, pbt_error *err) {
  if (isnan(fraction)) /* %g would print the sign of a NaN: "-nan" */
    return pbt_fail(err, PBT_ERR_ARG, "fraction must be in (0, 0.5], got nan");
  if (!(fraction > 0 && fraction <= 0.5))
    return pbt_fail(err, PBT_ERR_ARG, "fraction must be in (0, 0.5], got %g",
                    fraction);
  return PBT_OK;
}

pbt_status pbt_select_truncation(const double *scores, size_t n,
                                 double fraction, pbt_select_mode mode,
                                 pbt_generator *g, size_t *recipients,
                                 size_t *donors, size_t *count,
                                 pbt_error *err) {
  size_t k, top, r, *order;
  pbt_status st;
  *count = 0;
  if ((st = check_fraction(fraction, err)) != PBT_OK) return st;
  k = pbt_truncation_count(n, fraction);
  if (k == 0) return PBT_OK;
  if ((order = (size_t *)malloc(n * sizeof *order)) == NULL)
    return pbt_fail(err, PBT_ERR_NOMEM, "not enough memory");
  if ((st = pbt_select_rank(scores, n, mode, g, order, err)) != PBT_OK) {
    free(order);
    return st;
  }
  /* non-finite scores rank last: the finite ones of the top set are its
   * first `top` entries */
  for (top = 0; top < k && isfinite(scores[order[top]]); top++) {
  }
  if (top > 0)
    for (r = 0; r < k; r++) {
      recipients[r] = order[n - 1 - r];
      donors[r] = order[pbt_generator_integer(g, 0, (int64_t)top - 1)];
    }
  *count = top > 0 ? k : 0;
  free(order);
  return PBT_OK;
}

int64_t pbt_select_other(size_t n, size_t i, pbt_generator *g) {
  int64_t j;
  if (n < 2) return -1;
  j = pbt_generator_integer(g, 0, (int64_t)n - 2);
  return j >= (int64_t)i ? j + 1 : j;
}

static int all_finite(const double *x, size_t n) {
  size_t k;
  for (k = 0; k < n; k++)
    if (!isfinite(x[k])) return 0;
  return 1;
}

int pbt_ttest_better(const double *hi, size_t ni, const double *hj, size_t nj,
                     size_t window, double alpha, pbt_select_mode mode) {
  pbt_welch_result w;
  /* the last `window` scores of each */
  if (ni > window) {
    hi += ni - window;
    ni = window;
  }
  if (nj > window) {
    hj += nj - window;
    nj = window;
  }
  if (ni < 2 || nj < 2 || !all_finite(hj, nj)) return 0;
  if (!all_finite(hi, ni)) return 1;
  if (pbt_welch(hj, nj, hi, ni, PBT_TWO_SIDED, &w, NULL) != PBT_OK) return 0;
  /* t has the sign of mean j - mean i (an infinity when both windows are
   * constant; NaN, never significant, when they are also equal) */
  if (!(mode == PBT_MODE_MIN ? w.t < 0 : w.t > 0)) return 0;
  return w.p < alpha;
}

static pbt_status check_member(size_t n, size_t i, pbt_error *err) {
  if (i >= n)
    return pbt_fail(err, PBT_ERR_ARG,
                    "member %lu out of range for a population of %lu",
                    (unsigned long)i, (unsigned long)n);
  return PBT_OK;
}

pbt_status pbt_ttest_check_options(size_t window, double alpha,
                                   pbt_error *err) {
  if (window < 2)
    return pbt_fail(err, PBT_ERR_ARG, "window must be at least 2, got %lu",
                    (unsigned long)window);
  if (isnan(alpha))
    return pbt_fail(err, PBT_ERR_ARG, "alpha must be in (0, 1), got nan");
  if (!(alpha > 0 && alpha < 1))
    return pbt_fail(err, PBT_ERR_ARG, "alpha must be in (0, 1), got %g",
                    alpha);
  return PBT_OK;
}

pbt_status pbt_select_ttest(const double *const *histories,
                            const size_t *lengths, size_t n, size_t i,
                            size_t window, double alpha, pbt_select_mode mode,
                            pbt_generator *g, int64_t *chosen,
                            pbt_error *err) {
  pbt_status st;
  int64_t j;
  *chosen = -1;
  if ((st = check_member(n, i, err)) != PBT_OK) return st;
  if ((st = pbt_ttest_check_options(window, alpha, err)) != PBT_OK) return st;
  j = pbt_select_other(n, i, g);
  if (j >= 0 && pbt_ttest_better(histories[i], lengths[i], histories[j],
                                 lengths[j], window, alpha, mode))
    *chosen = j;
  return PBT_OK;
}

pbt_status pbt_select_tournament(const double *scores, size_t n, size_t i,
                                 pbt_select_mode mode, pbt_generator *g,
                                 int64_t *chosen, pbt_error *err) {
  pbt_status st;
  int64_t j;
  *chosen = -1;
  if ((st = check_member(n, i, err)) != PBT_OK) return st;
  j = pbt_select_other(n, i, g);
  if (j >= 0 && pbt_score_better(scores[j], scores[i], mode)) *chosen = j;
  return PBT_OK;
}
