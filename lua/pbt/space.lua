--- pbt.space: search-space distributions for hyperparameters.
--
-- A distribution knows how to draw a value (`sample`), how to move a value
-- by a factor (`perturb`, used by explore) and how to keep values inside its
-- bounds.  Every draw takes an explicit generator.
--
--   pbt.uniform(lo, hi)       continuous; perturbed values are clipped to [lo, hi]
--   pbt.loguniform(lo, hi)    continuous, drawn uniformly in log space; clipped
--   pbt.int(lo, hi)           integers in [lo, hi]; perturbed values are rounded
--   pbt.normal(mu, sigma)     continuous, unbounded
--   pbt.choice{a, b, ...}     unordered categories: explore resamples
--   pbt.ordered{a, b, ...}    ordered categories: explore moves to a neighbour
--   pbt.fixed(v)              never changes
local M = {}

local Dist = {}
Dist.__index = Dist
Dist.__name = "pbt.Distribution"

local function new(kind, fields)
  fields.kind = kind
  return setmetatable(fields, Dist)
end

function M.is_distribution(x) return getmetatable(x) == Dist end

local function check_number(fname, what, v)
  if type(v) ~= "number" or v ~= v then
    error(("%s: %s must be a number, got %s"):format(fname, what, tostring(v)), 3)
  end
end

local function clip(v, lo, hi)
  if v < lo then return lo end
  if v > hi then return hi end
  return v
end

function M.uniform(lo, hi)
  check_number("uniform", "lo", lo)
  check_number("uniform", "hi", hi)
  if not (lo < hi) then error(("uniform: lo (%g) must be less than hi (%g)"):format(lo, hi), 2) end
  return new("uniform", { lo = lo, hi = hi })
end

function M.loguniform(lo, hi)
  check_number("loguniform", "lo", lo)
  check_number("loguniform", "hi", hi)
  if not (lo > 0 and lo < hi) then
    error(("loguniform: bounds must satisfy 0 < lo < hi, got %g and %g"):format(lo, hi), 2)
  end
  return new("loguniform", { lo = lo, hi = hi })
end

function M.int(lo, hi)
  if math.type(lo) ~= "integer" or math.type(hi) ~= "integer" then
    error(("int: bounds must be integers, got %s and %s"):format(tostring(lo), tostring(hi)), 2)
  end
  if lo > hi then error(("int: lo (%d) must not exceed hi (%d)"):format(lo, hi), 2) end
  return new("int", { lo = lo, hi = hi })
end

function M.normal(mu, sigma)
  check_number("normal", "mu", mu)
  check_number("normal", "sigma", sigma)
  if not (sigma > 0) then error(("normal: sigma must be > 0, got %g"):format(sigma), 2) end
  return new("normal", { mu = mu, sigma = sigma })
end

local function categories(fname, kind, values)
  if type(values) ~= "table" or #values == 0 then
    error(("%s: expects a non-empty list of values"):format(fname), 3)
  end
  local copy = {}
  for i, v in ipairs(values) do copy[i] = v end
  return new(kind, { values = copy })
end

function M.choice(values) return categories("choice", "choice", values) end
function M.ordered(values) return categories("ordered", "ordered", values) end

function M.fixed(v)
  if v == nil then error("fixed: expects a value", 2) end
  return new("fixed", { value = v })
end

--- Is this distribution over categories (values stored by index)?
function Dist:categorical() return self.kind == "choice" or self.kind == "ordered" end

--- Draws a value from the prior.
function Dist:sample(g)
  local k = self.kind
  if k == "uniform" then return g:uniform(self.lo, self.hi)
  elseif k == "loguniform" then
    return math.exp(g:uniform(math.log(self.lo), math.log(self.hi)))
  elseif k == "int" then return g:integer(self.lo, self.hi)
  elseif k == "normal" then return g:normal(self.mu, self.sigma)
  elseif k == "fixed" then return self.value
  else return self.values[g:integer(1, #self.values)] end
end

local function index_of(values, v)
  for i, x in ipairs(values) do if x == v then return i end end
  return nil
end

--- Moves v by `factor` (a number such as 0.8 or 1.2): continuous values are
-- multiplied (in log space for loguniform this is the same) and kept inside
-- their bounds; integers are rounded and stay integers (and move by at least
-- one when the factor asks for a change); ordered categories move to the
-- neighbour on the factor's side (down when factor < 1); unordered ones are
-- resampled; fixed values stay.
function Dist:perturb(v, factor, g)
  local k = self.kind
  if k == "uniform" or k == "loguniform" then return clip(v * factor, self.lo, self.hi)
  elseif k == "normal" then return v * factor
  elseif k == "int" then
    local x = math.floor(v * factor + 0.5)
    if x == v and factor ~= 1 then x = v + (factor > 1 and 1 or -1) end
    return math.tointeger(clip(x, self.lo, self.hi))
  elseif k == "ordered" then
    local i = index_of(self.values, v) or 1
    i = clip(i + (factor > 1 and 1 or -1), 1, #self.values)
    return self.values[i]
  elseif k == "choice" then return self:sample(g)
  else return self.value end
end

--- Is v a value this distribution can hold?
function Dist:contains(v)
  local k = self.kind
  if k == "uniform" or k == "loguniform" then
    return type(v) == "number" and v >= self.lo and v <= self.hi
  elseif k == "int" then
    return math.type(v) == "integer" and v >= self.lo and v <= self.hi
  elseif k == "normal" then return type(v) == "number"
  elseif k == "fixed" then return v == self.value
  else return index_of(self.values, v) ~= nil end
end

function Dist:__tostring()
  local k = self.kind
  if k == "choice" or k == "ordered" then
    local parts = {}
    for i, v in ipairs(self.values) do parts[i] = tostring(v) end
    return ("%s{%s}"):format(k, table.concat(parts, ", "))
  elseif k == "fixed" then return ("fixed(%s)"):format(tostring(self.value))
  elseif k == "normal" then return ("normal(%g, %g)"):format(self.mu, self.sigma) end
  return ("%s(%s, %s)"):format(k, tostring(self.lo), tostring(self.hi))
end

--- The names of a space (a table name -> distribution), sorted, so that
-- every iteration over a space has one order (same seed, same results).
-- the names of each space already checked (a space does not change once
-- an experiment has it; the cache holds the names and their count)
local names_cache = setmetatable({}, { __mode = "k" })

function M.names(space)
  local cached = names_cache[space]
  if cached then
    local count = 0
    for _ in pairs(space) do count = count + 1 end
    if count == #cached then return cached end
  end
  local names = {}
  for name, d in pairs(space) do
    if type(name) ~= "string" then
      error(("space: hyperparameter names must be strings, got %s"):format(type(name)), 3)
    end
    if not M.is_distribution(d) then
      error(("space: '%s' is not a distribution (use pbt.uniform, pbt.choice, ...)"):format(name), 3)
    end
    names[#names + 1] = name
  end
  table.sort(names)
  if type(space) == "table" then names_cache[space] = names end
  return names
end

--- A shallow copy of a hyperparameter table (the one home of this copy:
-- explore rules, decisions and replays use it).
function M.copy(h)
  local c = {}
  for k, v in pairs(h) do c[k] = v end
  return c
end

--- Draws a whole hyperparameter table from a space.
function M.sample(space, g)
  local h = {}
  for _, name in ipairs(M.names(space)) do h[name] = space[name]:sample(g) end
  return h
end

return M
