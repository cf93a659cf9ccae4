--- pbt.select: the exploit step's selection strategies, as plain functions
-- over scores (the C core, pbt_select.h), testable alone.
--
-- Scores are "higher is better" unless opts.mode == "min".  A score that is
-- NaN, +inf, -inf or missing (nil, a hole in the array) ranks LAST in both
-- modes -- even -inf in max mode and +inf in min mode -- and is never copied.
-- Ties are broken by the generator, never by position.  Every random draw
-- comes from opts.generator (a pbt.Generator; default
-- pbt.default_generator()), so the same seed gives the same answer.
-- Members are 1-based indices.  Scores may also be a 1-d tensor.
--
--   select.truncation(scores [, {fraction = 0.2, mode, generator}])
--       -> { [recipient] = donor, ... }
--       With n members, k = max(1, floor(fraction * n)) when n >= 2 (none
--       when n < 2); fraction must be in (0, 0.5], so the k worst and the k
--       best never overlap.  Each of the k worst gets a donor drawn uniformly
--       (with replacement) from the finite-scored among the k best; when
--       none of them is finite the table is empty.
--   select.ttest(histories [, i, {window = 10, alpha = 0.05, mode, generator}])
--       -> j or nil
--       histories[k] is member k's array of recent scores, newest last.
--       Draws j ~= i uniformly; returns j when, over the last `window`
--       scores of each, j's mean is strictly better and Welch's TWO-SIDED
--       test gives p < alpha.  A member with fewer than 2 scores cannot be
--       tested (nil); a non-finite score in j's window gives nil, in i's
--       window (i ranks last) gives j.
--   select.tournament(scores, i [, {mode, generator}]) -> j or nil
--       Draws j ~= i uniformly; returns j when its score is strictly better
--       (a NaN or missing i loses to any finite j; a tie keeps i).
--   select.rank(scores [, {mode, generator}]) -> members, best first
--       (equal scores in random order, non-finite ones last).
-- ttest and tournament on a population of one member return nil.
local core = require("pbt.core")

local M = {}
for _, name in ipairs({ "truncation", "ttest", "tournament", "rank" }) do
  M[name] = core.select[name]
end
return M
