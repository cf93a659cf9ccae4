--- pbt.pb2: Population-Based Bandits (Parker-Holder et al., NeurIPS 2020),
-- the explore rule pbt.explore.pb2{...}.
--
-- Instead of perturbing the donor's hyperparameters at random, PB2 models
-- how much a member's score improves in one step as a function of time,
-- the score it starts from and its hyperparameters, with a Gaussian process
-- whose kernel forgets old data (csrc/pbt_gp.h), and gives the member that
-- exploited the hyperparameters with the highest upper confidence bound.
--
-- The data, read from the population before each batch of decisions (a
-- synchronous generation, an asynchronous turn: pbt.explore.hooks), so
-- every worker, a resumed run and one in a shared store see the same, and
-- the members about to be overwritten still count: for each member, the scores
-- its weights earned over the last `window` steps (view:history) and the
-- hyperparameters they trained with (view:schedule); each step of it is a
-- point (t = the step, r = the score before it, h) with target the change
-- of the score in that step (its negative when mode = "min").  Members
-- whose weights share a past give the same points once.  The `data` most
-- recent points are used (Ray Tune keeps every report; here the data is
-- the population's last `window` steps, the experiment's score window).  Features are scaled to [0, 1]: t and r over the
-- data, h over the space's bounds (log scale for loguniform); targets are
-- standardised.  The kernel's parameters are fitted by maximum likelihood
-- (from PB2's start: variance 1, lengthscale 1, epsilon 0.1, noise 1).
--
-- The new h maximises mean + kappa * sd at the member's own (t, r) -- the
-- step it trains next and the score it starts from (the donor's, after the
-- exploit) -- within the bounds, kappa =
-- sqrt(0.2 + max(0, log(0.4 n))) for n points (PB2's schedule).  The batch:
-- members explored since their last report (others in this generation, or
-- members still training their new h) are added to the GP that gives the
-- standard deviation, so the next member is sent elsewhere (GP-BUCB, as
-- PB2 does).
--
-- Kinds: uniform, loguniform and int by the GP (ints rounded); ordered
-- choices by the GP over their position; unordered choices are kept, or
-- redrawn from the prior with probability `resample_probability` (PB2's
-- follow-up for mixed spaces is not done here); fixed values stay;
-- normal (unbounded) is refused.  With fewer than `min_data` points the
-- GP's hyperparameters are redrawn from the prior.
--
--   pbt.explore.pb2{data = 256, candidates = 256, min_data = 4,
--                   resample_probability = 0.25, kappa = nil}
local space_mod = require("pbt.space")
local options = require("pbt.options")
local gp = require("pbt.core").gp

local M = {}

local function fail(fmt, ...) error("explore.pb2: " .. fmt:format(...), 0) end

--- How each hyperparameter of a space is treated: {names, gp_names (by
-- the GP, in name order), conv = {name = {to = v -> [0, 1], from = x -> v}}};
-- the others are kept (fixed) or kept / redrawn (unordered choices).
local function plan_of(space)
  local names, gp_names, conv = space_mod.names(space), {}, {}
  for _, name in ipairs(names) do
    local d = space[name]
    local k = d.kind
    if k == "uniform" or k == "int" then
      if d.hi > d.lo then
        gp_names[#gp_names + 1] = name
        local lo, hi = d.lo, d.hi
        conv[name] = {
          to = function(v) return (v - lo) / (hi - lo) end,
          from = k == "int"
            and function(x) return math.tointeger(math.max(lo, math.min(hi, math.floor(lo + x * (hi - lo) + 0.5)))) end
            or function(x) return math.max(lo, math.min(hi, lo + x * (hi - lo))) end,
        }
      end
    elseif k == "loguniform" then
      gp_names[#gp_names + 1] = name
      local a, b = math.log(d.lo), math.log(d.hi)
      conv[name] = {
        to = function(v) return (math.log(v) - a) / (b - a) end,
        from = function(x) return math.max(d.lo, math.min(d.hi, math.exp(a + x * (b - a)))) end,
      }
    elseif k == "ordered" then
      if #d.values > 1 then
        gp_names[#gp_names + 1] = name
        local values, n = d.values, #d.values
        local pos = {}
        for i, v in ipairs(values) do pos[v] = i end
        conv[name] = {
          to = function(v) return (pos[v] - 1) / (n - 1) end,
          from = function(x) return values[math.max(1, math.min(n, math.floor(x * (n - 1) + 0.5) + 1))] end,
        }
      end
    elseif k == "normal" then
      fail("hyperparameter '%s' is %s, unbounded: PB2 searches within bounds (use pbt.uniform)", name, tostring(d))
    end
  end
  return { names = names, gp_names = gp_names, conv = conv }
end

M.plan = plan_of

-- the entry of a schedule in force at step s (the last with step <= s)
local function h_at(schedule, s)
  local found
  for _, entry in ipairs(schedule) do
    if entry.step <= s then found = entry.h else break end
  end
  return found
end

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

--- The data points of the population: a sorted list of
-- {t, r, y, x = {scaled gp values}, key}.
function M.data(view, space, plan, mode)
  local seen, points = {}, {}
  for j = 1, view.size do
    local hist, info = view:history(j), view:member(j)
    local schedule = view:schedule(j)
    local steps, nh = info.steps, #hist
    for k = 2, nh do
      local s2 = steps - (nh - k)
      local r1, r2 = hist[k - 1], hist[k]
      local h = h_at(schedule, s2 - 1)
      if h and finite(r1) and finite(r2) then
        local x, parts = {}, { ("%d|%.17g|%.17g"):format(s2, r1, r2) }
        for q, name in ipairs(plan.gp_names) do
          x[q] = plan.conv[name].to(h[name])
          parts[#parts + 1] = ("%.17g"):format(x[q])
        end
        local key = table.concat(parts, "|")
        if not seen[key] then
          seen[key] = true
          points[#points + 1] = { t = s2, r = r1, y = mode == "min" and r1 - r2 or r2 - r1, x = x, key = key }
        end
      end
    end
  end
  table.sort(points, function(a, b)
    if a.t ~= b.t then return a.t < b.t end
    return a.key < b.key
  end)
  return points
end

local function scale(v, lo, hi) return hi > lo and (v - lo) / (hi - lo) or 0 end

function M.rule(opts)
  options.check("explore.pb2", opts, { "data", "candidates", "min_data", "resample_probability", "kappa" }, 4)
  opts = opts or {}
  local max_data, ncand = opts.data or 256, opts.candidates or 256
  local min_data, p_resample, kappa_opt = opts.min_data or 4, opts.resample_probability or 0.25, opts.kappa
  -- (errors at the caller of pbt.explore.pb2, which calls this)
  local function int_opt(name, v, lo, hi)
    if math.type(v) ~= "integer" or v < lo or v > hi then
      error(("explore.pb2: %s must be an integer in [%d, %d], got %s"):format(name, lo, hi, tostring(v)), 4)
    end
  end
  int_opt("data", max_data, 2, 46340)
  int_opt("candidates", ncand, 1, 1000000)
  int_opt("min_data", min_data, 2, max_data)
  if type(p_resample) ~= "number" or not (p_resample >= 0 and p_resample <= 1) then
    error(("explore.pb2: resample_probability must be a number in [0, 1], got %s"):format(tostring(p_resample)), 3)
  end
  if kappa_opt ~= nil and (type(kappa_opt) ~= "number" or not (kappa_opt >= 0) or kappa_opt == math.huge) then
    error(("explore.pb2: kappa must be a finite number >= 0, got %s"):format(tostring(kappa_opt)), 3)
  end

  local plans = setmetatable({}, { __mode = "k" })
  local cache = {} -- the last fit: data key -> theta (a pure function of the data)

  local function fit(X, y, key)
    if cache.key ~= key then
      cache.key, cache.theta = key, (gp.fit(X, y))
    end
    return cache.theta
  end

  -- the data taken by prepare(view) before a batch of decisions (valid
  -- for that view until the next prepare)
  local snapshot = {}
  local function prepare(view)
    snapshot.view, snapshot.points = nil, nil
    local space = view.space
    if not space then return end
    local plan = plans[space]
    if not plan then plan = plan_of(space); plans[space] = plan end
    snapshot.view, snapshot.points = view, M.data(view, space, plan, view.mode or "max")
  end

  local rule = function(h, space, g, view, i)
    if type(view) ~= "table" or not view.schedule then
      fail("needs the population view (called as explore(h, space, generator, view, i))")
    end
    local plan = plans[space]
    if not plan then plan = plan_of(space); plans[space] = plan end
    local new = space_mod.copy(h)
    -- unordered choices: kept, or redrawn
    for _, name in ipairs(plan.names) do
      local d = space[name]
      if d.kind == "choice" and g:uniform() < p_resample then new[name] = d:sample(g) end
    end
    if #plan.gp_names == 0 then return new end

    local mode = view.mode or "max"
    local points = snapshot.view == view and view.space == space and snapshot.points
      or M.data(view, space, plan, mode)
    if #points > max_data then
      local recent = {}
      for k = #points - max_data + 1, #points do recent[#recent + 1] = points[k] end
      points = recent
    end
    if #points < min_data then
      for _, name in ipairs(plan.gp_names) do new[name] = space[name]:sample(g) end
      return new
    end

    -- scaling: t and r over the data, y standardised
    local tlo, thi, rlo, rhi, ysum = math.huge, -math.huge, math.huge, -math.huge, 0
    for _, p in ipairs(points) do
      tlo, thi = math.min(tlo, p.t), math.max(thi, p.t)
      rlo, rhi = math.min(rlo, p.r), math.max(rhi, p.r)
      ysum = ysum + p.y
    end
    local n = #points
    local ymean, yvar = ysum / n, 0
    for _, p in ipairs(points) do yvar = yvar + (p.y - ymean) ^ 2 end
    local ysd = math.sqrt(yvar / (n - 1))
    if not (ysd > 0) then ysd = 1 end
    local X, y, keys = {}, {}, {}
    for k, p in ipairs(points) do
      local row = { scale(p.t, tlo, thi), scale(p.r, rlo, rhi) }
      for q = 1, #p.x do row[2 + q] = p.x[q] end
      X[k], y[k], keys[k] = row, (p.y - ymean) / ysd, p.key
    end
    local theta = fit(X, y, table.concat(keys, ";"))
    local mean_gp <close> = gp.new(X, y, theta)

    -- the member's own place: the step it trains next and the score it
    -- starts from (the donor's, after an exploit)
    local fixed = { scale(view:member(i).steps + 1, tlo, thi), scale(view:score(i), rlo, rhi) }
    if not finite(fixed[2]) then fixed[2] = 1 end
    -- the batch: members explored since their last report
    local pending = {}
    for j = 1, view.size do
      if j ~= i then
        local schedule = view:schedule(j)
        local last = schedule[#schedule]
        if last and last.step == view:member(j).steps and view:member(j).steps > 0 then
          local row = { fixed[1], fixed[2] }
          for q, name in ipairs(plan.gp_names) do row[2 + q] = plan.conv[name].to(last.h[name]) end
          pending[#pending + 1] = row
        end
      end
    end
    local Xv = nil
    if #pending > 0 then
      Xv = {}
      for k = 1, n do Xv[k] = X[k] end
      for _, row in ipairs(pending) do Xv[#Xv + 1] = row end
    end
    local batch_gp <close> = Xv and gp.new(Xv, nil, theta) or nil
    local var_gp = batch_gp or mean_gp
    local kappa = kappa_opt or math.sqrt(0.2 + math.max(0, math.log(0.4 * n)))
    local start = {}
    for q, name in ipairs(plan.gp_names) do start[q] = plan.conv[name].to(h[name]) end
    local x = gp.ucb_max(mean_gp, var_gp, { fixed = fixed, kappa = kappa, starts = { start },
      candidates = ncand, generator = g })
    for q, name in ipairs(plan.gp_names) do new[name] = plan.conv[name].from(x[q]) end
    return new
  end
  local function check(space)
    if not plans[space] then plans[space] = plan_of(space) end
  end
  return rule, prepare, check
end

return M
