--- pbt.shared(name, loader): a value loaded once per process and shared by
-- every Lua state of a run (the worker threads' too), without a copy.
--
--   local data = pbt.shared("fashion-mnist", function()
--     local train, test = pbt.data.fashion_mnist()
--     return { x = train.x, y = train.y, test = test }
--   end)
--
-- The first state that asks for `name` calls loader(); the others wait for
-- it and get the same value: tables, numbers, strings and booleans are
-- rebuilt in each state, tensors are views of the same storages (one copy
-- of a data set in memory, however many workers).  Treat those tensors as
-- read-only: every worker reads them at once.  Tensors that come from
-- pbt.shared are never part of a member's state.  The value may hold no
-- functions and no cycles.
local core = require("pbt.core")
local threads = core.threads
local autograd = require("pbt.autograd")

local is_tensor = autograd.is_tensor
local pack, unpack = string.pack, string.unpack

local M = {}

-- the tensors this state got from pbt.shared (weak keys)
local from_shared = setmetatable({}, { __mode = "k" })
M.from_shared = from_shared

local function encode(v, tensors, out, path, seen)
  local ty = type(v)
  if is_tensor(v) then
    if core.is_released(v) then error(("%s is a released tensor"):format(path), 0) end
    tensors[#tensors + 1] = v
    out[#out + 1] = pack("<c1i4", "T", #tensors)
  elseif ty == "boolean" then out[#out + 1] = pack("<c1B", "b", v and 1 or 0)
  elseif math.type(v) == "integer" then out[#out + 1] = pack("<c1i8", "i", v)
  elseif ty == "number" then out[#out + 1] = pack("<c1d", "f", v)
  elseif ty == "string" then out[#out + 1] = pack("<c1s4", "s", v)
  elseif ty == "table" then
    if seen[v] then error(("the value has a cycle at %s"):format(path), 0) end
    seen[v] = true
    out[#out + 1] = "{"
    for k, x in next, v do
      if type(k) ~= "string" and math.type(k) ~= "integer" then
        error(("%s has a key of type %s (strings and integers only)"):format(path, type(k)), 0)
      end
      encode(k, tensors, out, path, seen)
      encode(x, tensors, out, path .. "." .. tostring(k), seen)
    end
    out[#out + 1] = "}"
    seen[v] = nil
  else
    error(("%s is a %s: a shared value holds tables, tensors, numbers, strings and booleans")
      :format(path, ty), 0)
  end
end

local function decode(bytes, tensors)
  local pos = 1
  local function value()
    local tag = bytes:sub(pos, pos)
    pos = pos + 1
    local v
    if tag == "T" then
      local k
      k, pos = unpack("<i4", bytes, pos)
      v = tensors[k]
      from_shared[v] = true
    elseif tag == "b" then v, pos = unpack("<B", bytes, pos); v = v == 1
    elseif tag == "i" then v, pos = unpack("<i8", bytes, pos)
    elseif tag == "f" then v, pos = unpack("<d", bytes, pos)
    elseif tag == "s" then v, pos = unpack("<s4", bytes, pos)
    elseif tag == "{" then
      v = {}
      while bytes:sub(pos, pos) ~= "}" do
        local k = value()
        v[k] = value()
      end
      pos = pos + 1
    else
      error("pbt.shared: corrupt value", 0)
    end
    return v
  end
  return value()
end

--- A plain value (tables, numbers with their integer or float kind,
-- strings, booleans; no tensors) as bytes, and back: how the scheduler hands
-- a run's context to worker threads.
function M.pack(v)
  local ts, out = {}, {}
  encode(v, ts, out, "value", {})
  if #ts > 0 then error("value holds a tensor", 0) end
  return table.concat(out)
end

function M.unpack(bytes) return decode(bytes, {}) end

local function is_interrupt(err) return type(err) == "string" and err:find("interrupted!$") ~= nil end
M.is_interrupt = is_interrupt

local function pass_interrupt(ok, ...)
  if not ok and is_interrupt((...)) then error((...), 0) end
  return ok, ...
end
--- shared.try(fn, ...): pcall(fn, ...), but Ctrl-C goes through.  lua.c
-- raises "interrupted!" at the next call after Ctrl-C; a pcall that took
-- it for fn's own error would swallow it and the run would go on.
function M.try(fn, ...) return pass_interrupt(pcall(fn, ...)) end

--- shared.message(err): err as a string for a message, whatever it is (an
-- error object whose __tostring fails gives a fixed text).
function M.message(err)
  local ok, msg = M.try(tostring, err)
  return ok and msg or "an error that cannot be printed"
end

-- the names this state is loading (a loader asking for its own name would
-- wait for itself)
local loading = {}

function M.shared(name, loader)
  if type(name) ~= "string" or name == "" or name:find("\0", 1, true) then
    error(("pbt.shared: name must be a non-empty string without zero bytes, got %s")
      :format(type(name) == "string" and ("%q"):format(name) or type(name)), 2)
  end
  if loading[name] then
    error(("pbt.shared: the loader of '%s' asks for '%s' itself"):format(name, name), 0)
  end
  if type(loader) ~= "function" then
    error(("pbt.shared: loader must be a function, got %s"):format(type(loader)), 2)
  end
  local bytes, tensors = threads.shared_get(name)
  if bytes then return decode(bytes, tensors) end
  loading[name] = true
  local ok, v = pcall(function()
    local value = loader()
    local ts, out = {}, {}
    encode(value, ts, out, name, {})
    return { table.concat(out), ts }
  end)
  loading[name] = nil
  if not ok then
    threads.shared_abandon(name)
    error(is_interrupt(v) and v or ("pbt.shared: loading '%s' failed: %s"):format(name, tostring(v)), 0)
  end
  bytes, tensors = threads.shared_put(name, v[1], v[2])
  return decode(bytes, tensors)
end

return M
