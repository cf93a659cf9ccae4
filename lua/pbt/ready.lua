--- pbt.ready: when a member may exploit and explore.
--
-- A ready rule is a function(m) returning true when the member is ready,
-- where m holds `step` (the member's steps so far, through its lineage) and
-- `since` (its steps since its last ready decision).
--
--   pbt.ready.every(n)         every n steps
--   pbt.ready.after(burn_in)   not before burn_in steps
--   pbt.ready.all(r1, r2, ...) all of the rules; pbt.ready.any(...) one of them
local M = {}

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
