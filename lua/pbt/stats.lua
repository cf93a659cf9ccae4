--- pbt.stats: statistics for the t-test exploit rule (the C core, pbt_stats.h).
--
--   t, df, p = stats.welch(a, b [, alternative])
--       Welch's unequal-variances t-test of sample a against sample b (Lua
--       arrays of numbers or 1-d tensors, at least 2 values each), as
--       scipy.stats.ttest_ind(a, b, equal_var=False): t, the
--       Welch-Satterthwaite degrees of freedom and the p-value.
--       alternative: "two-sided" (default), "greater" (mean a > mean b) or
--       "less".  Agrees with scipy to 1e-9 relative, tiny p-values included.
--       A NaN (or an infinity) in a sample gives NaN results.  Both variances
--       zero: t = nan, df = nan, p = nan when the means are equal; else
--       t = +-inf, df = nan and p its limit (two-sided 0; one-sided 0 or 1),
--       as scipy 1.10 answers (scipy reports df = 1 there as a placeholder).
--   stats.betainc(x, a, b [, upper])  regularised incomplete beta I_x(a, b),
--       or 1 - I_x(a, b) computed directly when upper is true
--   stats.t_cdf(t, df), stats.t_sf(t, df)  Student's t: P(T <= t), P(T > t)
local core = require("pbt.core")

local M = {}
for _, name in ipairs({ "welch", "betainc", "t_cdf", "t_sf" }) do
  M[name] = core.stats[name]
end
return M
