--- pbt.options: options tables and description tables checked the same way
-- everywhere: a key pbt does not know is an error that names it and the
-- nearest known name, so that a misspelt option never falls back to a
-- default in silence.
--
--   options.check("Conv2d", opts, {"stride", "padding", "bias", "dtype", "generator"}, 3)
--   -> error "Conv2d: unknown option 'pading' (did you mean 'padding'?)" at the caller's caller
local M = {}

-- Levenshtein distance, with a transposition costing one (Damerau)
local function distance(a, b)
  local la, lb = #a, #b
  local prev2, prev, cur = {}, {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur = { [0] = i }
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[lb]
end
M.distance = distance

--- The known name nearest to name (a list or a set of names), when it is
-- near enough to be a likely misspelling (or a different case); else nil.
function M.nearest(name, known)
  if type(name) ~= "string" then return nil end
  local list = {}
  if known[1] ~= nil then list = known else for k in pairs(known) do list[#list + 1] = k end end
  table.sort(list)
  local best, bd = nil, math.huge
  for _, k in ipairs(list) do
    local d = distance(name:lower(), k:lower())
    if d < bd then best, bd = k, d end
  end
  if best and bd <= math.max(1, math.min(3, #name // 3)) then return best end
  return nil
end

--- The message for an unknown key: "<where>: unknown <what> '<key>'" and,
-- when one is near, " (did you mean '<name>'?)".
function M.unknown(where, what, key, known)
  local near = M.nearest(key, known)
  local shown = type(key) == "string" and ("'%s'"):format(key) or ("[%s]"):format(tostring(key))
  return ("%s: unknown %s %s%s"):format(where, what or "option", shown,
    near and (" (did you mean '%s'?)"):format(near) or "")
end

--- Raises (at `level`, default 3: the caller of the function that calls
-- check) when t has a key not in known (a list or a set).  what: "option"
-- (default) or "field".  t may be nil.
function M.check(where, t, known, level, what)
  if t == nil then return end
  if type(t) ~= "table" then
    error(("%s: %s must be a table, got %s"):format(where, what == "field" and "the description" or "options",
      type(t)), level or 3)
  end
  local set = known
  if known[1] ~= nil then
    set = {}
    for _, k in ipairs(known) do set[k] = true end
  end
  for k in pairs(t) do
    if not set[k] then error(M.unknown(where, what, k, set), level or 3) end
  end
end

return M
