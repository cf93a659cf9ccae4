--- pbt.ready: when a member may exploit and explore.
--
-- A ready rule is a function(m) returning true when the member is ready,
-- where m holds `step` (the member's steps so far, through its lineage),
-- `since` (its steps since its last ready decision), `score` (the score of
-- the step just taken), `member`, `mode` ("max" or "min"), `window` (the
-- experiment's score window) and m:history(), the member's recent scores,
-- oldest first (at most `window` of them).
--
--   pbt.ready.every(n)         every n steps
--   pbt.ready.after(burn_in)   not before burn_in steps
--   pbt.ready.plateau{patience = 3, min_delta = 0}
--                              when the last `patience` scores brought no
--                              improvement over the best score before them
--   pbt.ready.all(r1, r2, ...) all of the rules; pbt.ready.any(...) one of them
local options = require("pbt.options")

local M = {}

-- the patience of each plateau rule (the experiment checks it against its
-- score window when the rule is given)
M.patience = setmetatable({}, { __mode = "k" })

local function check_count(fname, n)
  if math.type(n) ~= "integer" or n < 0 or (fname == "ready.every" and n == 0) then
    error(("%s: expects a %s integer, got %s"):format(fname,
      fname == "ready.every" and "positive" or "non-negative", tostring(n)), 3)
  end
end

function M.every(n)
  check_count("ready.every", n)
  return function(m) return m.since >= n end
end

function M.after(burn_in)
  check_count("ready.after", burn_in)
  return function(m) return m.step >= burn_in end
end

--- Ready when the score stopped improving: the best of the last `patience`
-- scores is not better than the best score before them by more than
-- min_delta (and at least `patience` steps passed since the last decision).
function M.plateau(opts)
  options.check("ready.plateau", opts, { "patience", "min_delta" }, 3)
  opts = opts or {}
  local patience, min_delta = opts.patience or 3, opts.min_delta or 0
  check_count("ready.plateau", patience)
  if patience < 1 then error("ready.plateau: patience must be at least 1", 2) end
  if type(min_delta) ~= "number" or not (min_delta >= 0) then
    error(("ready.plateau: min_delta must be a number >= 0, got %s"):format(tostring(min_delta)), 2)
  end
  local rule = function(m)
    if patience >= m.window then
      error(("ready.plateau: patience %d needs a score window longer than %d (the experiment's window is %d)")
        :format(patience, patience, m.window), 0)
    end
    if m.since < patience then return false end
    local h = m:history()
    local n = #h
    if n <= patience then return false end
    local sign = m.mode == "min" and -1 or 1
    local before, recent = -math.huge, -math.huge
    for k = 1, n - patience do before = math.max(before, sign * h[k]) end
    for k = n - patience + 1, n do recent = math.max(recent, sign * h[k]) end
    return recent <= before + min_delta
  end
  M.patience[rule] = patience
  return rule
end

local function rules(fname, ...)
  local list = table.pack(...)
  if list.n == 0 then error(fname .. ": expects at least one rule", 3) end
  for i = 1, list.n do
    if type(list[i]) ~= "function" then
      error(("%s: rule %d is a %s, not a function"):format(fname, i, type(list[i])), 3)
    end
  end
  return list
end

function M.all(...)
  local list = rules("ready.all", ...)
  return function(m)
    for i = 1, list.n do if not list[i](m) then return false end end
    return true
  end
end

function M.any(...)
  local list = rules("ready.any", ...)
  return function(m)
    for i = 1, list.n do if list[i](m) then return true end end
    return false
  end
end

return M
