/*
 * pbt_select.h -- the exploit step's selection strategies (Jaderberg et al.
 * 2017, section 3.2 / appendix), over plain arrays of scores.
 *
 * Conventions shared by every function here:
 *   - members are 0-based indices into the score arrays;
 *   - mode PBT_MODE_MAX: higher scores are better; PBT_MODE_MIN: lower;
 *   - a non-finite score (NaN, which also stands for "missing", +inf or -inf)
 *     ranks LAST in both modes: it is worse than every finite score, even
 *     -inf in max mode and +inf in min mode, and it is never a donor;
 *   - ties are broken by the generator, never by position;
 *   - every random draw comes from the generator passed in, so the same
 *     generator state gives the same answer.
 *
 * The functions are pure apart from the generator they advance and are
 * safe to call from several threads with different generators.
 */
#ifndef PBT_SELECT_H
#define PBT_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "pbt_random.h"
#include "pbt_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pbt_select_mode {
  PBT_MODE_MAX = 0, /* higher is better */
  PBT_MODE_MIN = 1  /* lower is better */
} pbt_select_mode;

/* 1 when score a is strictly better than score b in that mode (a finite
 * score is better than any non-finite one; two non-finite scores tie). */
int pbt_score_better(double a, double b, pbt_select_mode mode);

/*
 * Ranks the n scores best first: order[0] is the best member.  Members with
 * equal scores (and all the non-finite ones, which come last) appear in an
 * order drawn uniformly at random from g.  Draws exactly n - 1 integers from
 * g (a Fisher-Yates shuffle) whatever the scores.
 * Fails only for lack of memory (it sorts a temporary of n entries).
 */
pbt_status pbt_select_rank(const double *scores, size_t n,
                           pbt_select_mode mode, pbt_generator *g,
                           size_t *order, pbt_error *err);

/* The number of members in the bottom (and in the top) set of truncation
 * selection: 0 when n < 2, else max(1, floor(fraction * n)) (with a guard
 * of 1e-9 against representation error, so 0.29 * 100 gives 29).  Since
 * fraction <= 0.5 the two sets never overlap. */
size_t pbt_truncation_count(size_t n, double fraction);

/*
 * Truncation selection.  Ranks the members (pbt_select_rank); each of the
 * k = pbt_truncation_count(n, fraction) worst members becomes a recipient
 * and gets a donor drawn uniformly (one integer draw per recipient, with
 * replacement) from the finite-scored members among the k best.  When none
 * of the k best has a finite score, there is nothing to copy and *count is
 * 0.  Otherwise recipients[0..*count-1] (worst first) and donors[...] are
 * filled; both arrays must hold at least n / 2 entries.
 * fraction must be in (0, 0.5]: else PBT_ERR_ARG,
 * "fraction must be in (0, 0.5], got 0.7".
 */
pbt_status pbt_select_truncation(const double *scores, size_t n,
                                 double fraction, pbt_select_mode mode,
                                 pbt_generator *g, size_t *recipients,
                                 size_t *donors, size_t *count,
                                 pbt_error *err);

/* Another member than i, drawn uniformly from the n - 1 others (one integer
 * draw); -1 when n < 2 (no draw).  i < n. */
int64_t pbt_select_other(size_t n, size_t i, pbt_generator *g);

/*
 * The decision of the t-test strategy between member i (history hi of ni
 * scores, oldest first) and member j (hj, nj).  Uses the last `window`
 * scores of each (window >= 2) and returns 1 when j should be copied, that
 * is when both windows hold at least 2 scores (else a member cannot be
 * tested: 0), j's are all finite (else 0), and
 *   - i's window holds a non-finite score (i ranks last, so any finite j is
 *     better), or
 *   - the mean of j's window is strictly better than the mean of i's and
 *     Welch's TWO-SIDED test rejects equal means: p < alpha.
 * Both windows constant with different means count as significant (p = 0,
 * see pbt_welch).
 */
int pbt_ttest_better(const double *hi, size_t ni, const double *hj, size_t nj,
                     size_t window, double alpha, pbt_select_mode mode);

/* The checks of pbt_select_ttest's options: PBT_ERR_ARG with "window must
 * be at least 2, got 1" or "alpha must be in (0, 1), got 1.5". */
pbt_status pbt_ttest_check_options(size_t window, double alpha,
                                   pbt_error *err);

/*
 * The t-test strategy: draws j = pbt_select_other(n, i, g) and sets *chosen
 * to j when pbt_ttest_better(history i, history j, ...) says so, else to
 * -1.  histories[k] holds lengths[k] scores, oldest first.
 * Fails (PBT_ERR_ARG) when i >= n, window < 2 or alpha is not in (0, 1).
 */
pbt_status pbt_select_ttest(const double *const *histories,
                            const size_t *lengths, size_t n, size_t i,
                            size_t window, double alpha, pbt_select_mode mode,
                            pbt_generator *g, int64_t *chosen,
                            pbt_error *err);

/*
 * Binary tournament: draws j = pbt_select_other(n, i, g) and sets *chosen to
 * j when scores[j] is strictly better than scores[i] (pbt_score_better: a
 * non-finite i loses to any finite j; a non-finite j never wins; a tie
 * keeps i), else to -1.  Fails (PBT_ERR_ARG) when i >= n.
 */
pbt_status pbt_select_tournament(const double *scores, size_t n, size_t i,
                                 pbt_select_mode mode, pbt_generator *g,
                                 int64_t *chosen, pbt_error *err);

#ifdef __cplusplus
}
#endif
#endif
