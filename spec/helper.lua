-- Helpers shared by the specs (require("spec.helper")); not a spec itself.
local M = {}

--- Calls fn(idx) for every multi-index of shape, in row-major order (idx is
-- reused: copy what you keep).
function M.each_index(shape, fn)
  local idx = {}
  local function walk(d)
    if d > #shape then return fn(idx) end
    for i = 1, shape[d] do
      idx[d] = i
      walk(d + 1)
    end
  end
  walk(1)
end

--- All elements of a tensor as a flat table in row-major order, read one by
-- one through t:get (independent of the kernels under test).
function M.flat(t)
  local out, shape = {}, t:shape()
  M.each_index(shape, function(idx) out[#out + 1] = t:get(table.unpack(idx, 1, #shape)) end)
  return out
end

--- A nested table of shape {n, m} with v(i, j) at [i][j].
function M.grid(n, m, v)
  local t = {}
  for i = 1, n do
    t[i] = {}
    for j = 1, m do t[i][j] = v(i, j) end
  end
  return t
end

--- The bytes of a file, and a file made of bytes (test fixtures).
function M.readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- x rounded to float32.
--- A fresh path in the temporary directory, nothing there yet.
function M.tmpname()
  local d = os.tmpname()
  os.remove(d)
  return d
end

--- Does a file exist (can it be opened)?
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- A run's event log without its wall-clock times, as JSON text (each event
-- must have a number `time`, the one field two runs of a seed may differ in).
function M.log_text(events)
  local json = require("pbt.json")
  local plain = {}
  for k, ev in ipairs(events) do
    assert(type(ev.time) == "number", "event " .. k .. " has no time")
    local c = {}
    for key, v in pairs(ev) do if key ~= "time" then c[key] = v end end
    plain[k] = c
  end
  return json.encode(plain)
end

function M.f32(x) return (string.unpack("f", string.pack("f", x))) end

return M
