-- bench/tensor.lua -- speed of pbt's tensor core against the same work done
-- by a direct call of OpenBLAS (or memcpy) from C (bench/blas_direct.c) and
-- by numpy (bench/tensor_numpy.py, Debian's python3-numpy), in one run.
--
--   make bench                    (builds build/blas_direct, then runs this)
--   lua5.4 bench/tensor.lua [rounds] [filter]
--
-- Every figure is the median time per call; the three sides of a case are
-- measured in turn, case after case and round after round, and the median
-- over rounds is kept, so that the machine's drift hits all sides alike.
-- The ratios are what matter.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local pbt = require("pbt")
local T = pbt.tensor

local rounds = tonumber(arg[1]) or 3
local filter = arg[2]
local PY = "/usr/bin/python3"

local common = dofile("bench/common.lua")
local median = common.median

-- Median seconds per call of fn over 5 batches of about 0.05 s each.
local function time(fn)
  local reps, t0 = 1, 0
  fn()
  while true do
    t0 = pbt.clock()
    for _ = 1, reps do fn() end
    local dt = pbt.clock() - t0
    if dt > 0.02 then break end
    reps = reps * 4
  end
  local per = {}
  for b = 1, 5 do
    t0 = pbt.clock()
    for _ = 1, reps do fn() end
    per[b] = (pbt.clock() - t0) / reps
  end
  return median(per)
end

local g = pbt.Generator(1)
local function rand(dtype, ...)
  return T.rand({ ... }, { dtype = dtype, generator = g })
end

-- Each case: name, a maker returning the closure to time, the blas_direct
-- arguments (or nil) and whether numpy does it (tensor_numpy.py uses the
-- same names).
local cases = {}
local function case(name, make, blas)
  cases[#cases + 1] = { name = name, make = make, blas = blas }
end

for _, dt in ipairs({ "float32", "float64" }) do
  local f = dt == "float32" and "f32" or "f64"
  for _, n in ipairs({ 256, 512, 1024 }) do
    case(("matmul %s %dx%d"):format(dt, n, n), function()
      local a, b = rand(dt, n, n), rand(dt, n, n)
      return function() return a:matmul(b) end
    end, { "gemm", f, n })
  end
end
case("matmul float32 64x64", function()
  local a, b = rand("float32", 64, 64), rand("float32", 64, 64)
  return function() return a:matmul(b) end
end, { "gemm", "f32", 64 })
case("add float32 10 elements (a + b)", function()
  local a, b = rand("float32", 10), rand("float32", 10)
  return function() return a + b end
end)

for _, n in ipairs({ 1000000, 10000000 }) do
  local sz = n == 1000000 and "1e6" or "1e7"
  local function un(name, fn)
    case(("%s float32 %s"):format(name, sz), function()
      local a, b = rand("float32", n), rand("float32", n)
      return function() return fn(a, b) end
    end)
  end
  un("add", function(a, b) return a + b end)
  un("mul", function(a, b) return a * b end)
  un("exp", function(a) return a:exp() end)
  un("log", function(a) return a:log() end)
  un("tanh", function(a) return a:tanh() end)
  un("sigmoid", function(a) return a:sigmoid() end)
  un("relu", function(a) return a:relu() end)
  un("sqrt", function(a) return a:sqrt() end)
  un("sum", function(a) return a:sum() end)
  un("max", function(a) return a:max() end)
  un("add_ in place", function(a, b) return a:add_(b) end)
  case(("axpy add_(x, 0.5) float32 %s"):format(sz), function()
    local a, b = rand("float32", n), rand("float32", n)
    return function() return a:add_(b, 0.5) end
  end, { "axpy", "f32", n })
  case(("clone float32 %s"):format(sz), function()
    local a = rand("float32", n)
    return function() return a:clone() end
  end, { "copy", "f32", n })
end
case("softmax(2) float32 1000x1000", function()
  local a = rand("float32", 1000, 1000)
  return function() return a:softmax(2) end
end)
case("sum(2) float32 1000x1000", function()
  local a = rand("float32", 1000, 1000)
  return function() return a:sum(2) end
end)
case("add broadcast [1000,1000]+[1000] float32", function()
  local a, b = rand("float32", 1000, 1000), rand("float32", 1000)
  return function() return a + b end
end)
case("transposed copy contiguous() float32 1000x1000", function()
  local a = rand("float32", 1000, 1000).T
  return function() return a:contiguous() end
end)

local selected = {}
for _, c in ipairs(cases) do
  if not filter or c.name:find(filter, 1, true) then selected[#selected + 1] = c end
end

local function have_numpy()
  local p = io.popen(PY .. " -c 'import numpy' 2>/dev/null; echo $?")
  local ok = p:read("l") == "0"
  p:close()
  return ok
end
local numpy_ok = have_numpy()

local function run_numpy(names)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  f:write(table.concat(names, "\n"), "\n")
  f:close()
  local out = common.read_timings(PY .. " bench/tensor_numpy.py < " .. tmp)
  os.remove(tmp)
  return out
end

local function run_blas(b)
  local p = assert(io.popen(("build/blas_direct %s %s %d 15"):format(b[1], b[2], b[3])))
  local s = tonumber(p:read("l"))
  p:close()
  return s
end

local res = {}
for _, c in ipairs(selected) do res[c.name] = { pbt = {}, blas = {}, numpy = {} } end
-- The sides of one case are measured one right after the other (numpy in a
-- process of its own per case), so that they meet the same state of the
-- machine, whose speed drifts by 10% and more over minutes.
for r = 1, rounds do
  io.stderr:write(("round %d of %d\n"):format(r, rounds))
  for _, c in ipairs(selected) do
    local fn = c.make()
    res[c.name].pbt[r] = time(fn)
    fn = nil
    collectgarbage()
    if c.blas then res[c.name].blas[r] = run_blas(c.blas) end
    if numpy_ok then res[c.name].numpy[r] = run_numpy({ c.name })[c.name] end
  end
end

local function fmt(s)
  if not s then return "-" end
  if s < 1e-3 then return ("%.2f µs"):format(s * 1e6) end
  return ("%.3f ms"):format(s * 1e3)
end
local function ratio(x) return x and ("%.2f"):format(x) or "-" end

print(("OPENBLAS_NUM_THREADS=%s, numpy %s, %d rounds; figures are median seconds per call")
  :format(os.getenv("OPENBLAS_NUM_THREADS") or "(unset: all cores)",
    numpy_ok and "present" or "absent", rounds))
print("")
print("| operation | pbt | C direct | numpy | pbt speed vs C direct | pbt speed vs numpy |")
print("|---|---|---|---|---|---|")
for _, c in ipairs(selected) do
  local p, b, n = median(res[c.name].pbt), median(res[c.name].blas), median(res[c.name].numpy)
  print(("| %s | %s | %s | %s | %s | %s |"):format(c.name, fmt(p), fmt(b), fmt(n),
    ratio(b and b / p), ratio(n and n / p)))
end
