-- bench/tensor.lua -- speed of pbt's tensor core against the same work done
-- by a direct call of OpenBLAS (or memcpy) from C (bench/blas_direct.c, "C
-- direct") and by numpy (bench/tensor_numpy.py, Debian's python3-numpy), in
-- one run.
--
--   make bench                    (builds build/blas_direct, then runs this
--                                  with OPENBLAS_NUM_THREADS=1 unless set)
--   lua5.4 bench/tensor.lua [rounds] [filter]
--
-- rounds: 5 by default.  filter: only the cases whose name contains it
-- (plain text, e.g. "matmul float32").
--
-- Method.  The three sides are three long-lived processes: pbt is this Lua
-- process, C direct is `build/blas_direct --serve` and numpy is
-- `bench/tensor_numpy.py`, each spoken to a line at a time (common.peer):
-- a case's request goes in, its seconds per call come back.  Each side makes
-- the arrays of a case once, at its first request, and keeps them for the
-- whole run.  Each side times a call the same way: one warm-up call, then
-- batches of 1, 4, 16... calls until a batch takes more than 0.02 s, then
-- 5 batches of that many calls; its figure is the median of the 5 batches'
-- seconds per call.
--
-- Rounds: in round r (1, 2, ...) the cases are taken in turn, and the sides
-- present for case c (its place in the list, 1, 2, ...; C direct only for
-- gemm, axpy and copy, numpy when python3-numpy is installed) are measured
-- one right after the other, in the order pbt, C direct, numpy rotated to
-- start with side number (r + c) mod n (counted from 0, n being the number
-- of sides present), so that no side is always first; the other sides wait
-- on their stdin meanwhile.  The sides of a case thus meet the same state of
-- the machine, whose speed drifts by 10% and more over minutes.
--
-- Output: a line saying what produced it (command, UTC date, cores,
-- OPENBLAS_NUM_THREADS, numpy's version, rounds), then a markdown table:
-- each side's median over rounds of its seconds per call, and for each
-- other side the min / median / max over rounds of the per-round ratio
-- (that side's seconds / pbt's seconds in the same round): above 1 means pbt
-- is faster.  The ratios are what matter; their spread shows how steady the
-- machine was.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local pbt = require("pbt")
local T = pbt.tensor

local USAGE = "usage: lua5.4 bench/tensor.lua [rounds] [filter]"
local rounds = 5
if arg[1] then
  rounds = math.tointeger(tonumber(arg[1]))
  if not rounds or rounds < 1 then error(USAGE, 0) end
end
local filter = arg[2]
if arg[3] then error(USAGE, 0) end
local PY = "/usr/bin/python3"
local BLAS_DIRECT = "build/blas_direct"

local common = dofile("bench/common.lua")
local median = common.median

-- Seconds per call of fn (the method in the header comment).
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

-- Each case: name (tensor_numpy.py knows the same names), a maker returning
-- the closure to time, and the blas_direct request's words (or nil).
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
if #selected == 0 then error(("no case name contains %q"):format(filter), 0) end

if not common.exists(BLAS_DIRECT) then
  io.stderr:write(("this benchmark needs %s (the C direct side): run make %s\n")
    :format(BLAS_DIRECT, BLAS_DIRECT))
  os.exit(2)
end
-- numpy's version, nil when /usr/bin/python3 has no numpy
local numpy_version = common.sh(PY .. " -c 'import numpy; print(numpy.__version__)' 2>/dev/null")
  :match("^(%S+)")

-- A peer that is closed when the variable holding it goes out of scope,
-- an error included.
local function closing(peer)
  return setmetatable(peer, { __close = function() peer:close() end })
end
local blas <close> = closing(common.peer(BLAS_DIRECT .. " --serve"))
local numpy <close> = numpy_version and closing(common.peer(PY .. " bench/tensor_numpy.py")) or nil

-- A peer's seconds for request, nil when it answers "-" (a case it does
-- not do).
local function ask(peer, who, request)
  local answer = peer:ask(request)
  if answer == "-" then return nil end
  return tonumber(answer) or error(("%s answered %q to %q"):format(who, answer, request), 0)
end

-- The sides in their order before rotation: whether a side does case c,
-- and its seconds per call for c.
local sides = {
  { name = "pbt", does = function() return true end,
    measure = function(c)
      c.fn = c.fn or c.make() -- made once, kept for every round
      collectgarbage() -- the garbage of the sides measured before is not billed here
      return time(c.fn)
    end },
  { name = "C direct", does = function(c) return c.blas ~= nil end,
    measure = function(c) return ask(blas, "blas_direct", table.concat(c.blas, " ")) end },
  { name = "numpy", does = function() return numpy ~= nil end,
    measure = function(c) return ask(numpy, "tensor_numpy.py", c.name) end },
}

-- res[case name][side name][round] = seconds per call
local res = {}
for _, c in ipairs(selected) do
  res[c.name] = {}
  for _, s in ipairs(sides) do res[c.name][s.name] = {} end
end
for r = 1, rounds do
  io.stderr:write(("round %d of %d\n"):format(r, rounds))
  for ci, c in ipairs(selected) do
    local present = {}
    for _, s in ipairs(sides) do
      if s.does(c) then present[#present + 1] = s end
    end
    local n = #present
    for k = 0, n - 1 do
      local s = present[(r + ci + k) % n + 1]
      res[c.name][s.name][r] = s.measure(c)
    end
  end
end

local function fmt(s)
  if not s then return "-" end
  if s < 1e-3 then return ("%.2f µs"):format(s * 1e6) end
  return ("%.3f ms"):format(s * 1e3)
end
-- "min / median / max" of the per-round ratios other / pbt, "-" for none.
local function ratios(other, mine)
  local xs = {}
  for r = 1, rounds do
    if other[r] and mine[r] then xs[#xs + 1] = other[r] / mine[r] end
  end
  return #xs > 0 and common.min_med_max(xs, "%.2f") or "-"
end
local function med(xs) return #xs > 0 and median(xs) or nil end

-- The command line, quoted so that it can be run again as printed.
local function command_line()
  local words = { "lua5.4", arg[0] }
  for _, a in ipairs(arg) do
    words[#words + 1] = a:find("^[%w%./_=:,+-]+$") and a or "'" .. a:gsub("'", "'\\''") .. "'"
  end
  return table.concat(words, " ")
end
local _, date, cores = common.provenance()
print(("`%s`, %s, %s cores, OPENBLAS_NUM_THREADS=%s, numpy %s, %d rounds"):format(
  command_line(), date, cores, os.getenv("OPENBLAS_NUM_THREADS") or "unset (all cores)",
  numpy_version or "absent", rounds))
print("")
print("| operation | pbt (median) | C direct (median) | numpy (median) |"
  .. " pbt speed vs C direct (min / median / max) | pbt speed vs numpy (min / median / max) |")
print("|---|---|---|---|---|---|")
for _, c in ipairs(selected) do
  local t = res[c.name]
  print(("| %s | %s | %s | %s | %s | %s |"):format(c.name, fmt(med(t.pbt)),
    fmt(med(t["C direct"])), fmt(med(t.numpy)),
    ratios(t["C direct"], t.pbt), ratios(t.numpy, t.pbt)))
end
