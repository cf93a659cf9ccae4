-- Helpers shared by the specs (require("spec.helper")); not a spec itself.
local M = {}

--- All elements of a tensor as a flat table in row-major order, read one by
-- one through t:get (independent of the kernels under test).
function M.flat(t)
  local out, shape, idx = {}, t:shape(), {}
  local function walk(d)
    if d > #shape then
      out[#out + 1] = t:get(table.unpack(idx, 1, #shape))
      return
    end
    for i = 1, shape[d] do
      idx[d] = i
      walk(d + 1)
    end
  end
  walk(1)
  return out
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
function M.f32(x) return (string.unpack("f", string.pack("f", x))) end

return M
