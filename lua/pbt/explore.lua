--- pbt.explore: rules that change a member's hyperparameters after exploit.
--
-- An explore rule is a function(h, space, generator, view, i) returning a new table
-- of hyperparameters (h itself is not modified).  Hyperparameters are
-- visited in sorted name order, so the same generator gives the same result.
--
--   pbt.explore.perturb{factors = {0.8, 1.2}}
--       every hyperparameter is perturbed by a factor drawn uniformly from
--       `factors` (see pbt.space: bounds kept, integers stay integers,
--       ordered choices move to a neighbour, unordered ones are resampled)
--   pbt.explore.resample{probability = 0.25}
--       each hyperparameter is redrawn from its prior with that probability,
--       else kept
--   pbt.explore.perturb_or_resample{factors = {1.2, 0.8}, probability = 0.25}
--       Ray Tune's rule (and its defaults): resample with that probability,
--       else perturb
--   pbt.explore.pb2{data = 256, candidates = 256, min_data = 4,
--                   resample_probability = 0.25, kappa = nil}
--       PB2: the hyperparameters with the highest upper confidence bound of
--       a time-varying Gaussian process fitted to the population's recent
--       improvements (see lua/pbt/pb2.lua)
local space_mod = require("pbt.space")

local options = require("pbt.options")
local M = {}

local function check_factors(fname, factors)
  if type(factors) ~= "table" or #factors == 0 then
    error(("%s: factors must be a non-empty list of numbers"):format(fname), 3)
  end
  for i, f in ipairs(factors) do
    if type(f) ~= "number" or not (f > 0) then
      error(("%s: factors[%d] must be a positive number, got %s"):format(fname, i, tostring(f)), 3)
    end
  end
end

local function check_probability(fname, p)
  if type(p) ~= "number" or p < 0 or p > 1 then
    error(("%s: probability must be a number in [0, 1], got %s"):format(fname, tostring(p)), 3)
  end
end

local copy = space_mod.copy

function M.perturb(opts)
  options.check("explore.perturb", opts, { "factors" }, 3)
  opts = opts or {}
  local factors = opts.factors or { 0.8, 1.2 }
  check_factors("explore.perturb", factors)
  return function(h, space, g)
    local new = copy(h)
    for _, name in ipairs(space_mod.names(space)) do
      local f = factors[g:integer(1, #factors)]
      new[name] = space[name]:perturb(h[name], f, g)
    end
    return new
  end
end

function M.resample(opts)
  options.check("explore.resample", opts, { "probability" }, 3)
  opts = opts or {}
  local p = opts.probability or 0.25
  check_probability("explore.resample", p)
  return function(h, space, g)
    local new = copy(h)
    for _, name in ipairs(space_mod.names(space)) do
      if g:uniform() < p then new[name] = space[name]:sample(g) end
    end
    return new
  end
end

function M.perturb_or_resample(opts)
  options.check("explore.perturb_or_resample", opts, { "factors", "probability" }, 3)
  opts = opts or {}
  local factors = opts.factors or { 1.2, 0.8 }
  local p = opts.probability or 0.25
  check_factors("explore.perturb_or_resample", factors)
  check_probability("explore.perturb_or_resample", p)
  return function(h, space, g)
    local new = copy(h)
    for _, name in ipairs(space_mod.names(space)) do
      local d = space[name]
      if g:uniform() < p then
        new[name] = d:sample(g)
      else
        new[name] = d:perturb(h[name], factors[g:integer(1, #factors)], g)
      end
    end
    return new
  end
end

--- Rules that read the population before a decision changes it register
-- hooks[rule] = function(view): the deciders call it before each batch of
-- decisions (a synchronous generation, an asynchronous member's turn, the
-- replacement of a failed member).  PB2 takes its data there.
M.hooks = setmetatable({}, { __mode = "k" })
--- Rules that accept only some spaces register checks[rule] =
-- function(space): pbt.experiment calls it when the experiment is made, so a
-- space the rule cannot search is refused before anything trains.
M.checks = setmetatable({}, { __mode = "k" })

function M.pb2(opts)
  local rule, prepare, check = require("pbt.pb2").rule(opts)
  M.hooks[rule], M.checks[rule] = prepare, check
  return rule
end

return M
