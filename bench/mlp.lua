-- bench/mlp.lua -- one training step (forward, backward, SGD update) of an
-- MLP 784-256-256-10 at batches 32 and 128 and of a small CNN at batch 64,
-- in pbt and in PyTorch (bench/mlp_torch.py, Debian's python3-torch), with
-- the same architecture, batch, dtype (float32), optimizer and thread count.
--
--   make bench-mlp                       (one thread on every side)
--   THREADS=2 lua5.4 bench/mlp.lua [rounds]
--
-- Both sides are measured in turn, round after round; the median over rounds
-- is kept.  Figures are median seconds per step.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local threads = os.getenv("THREADS") or "1"
if os.getenv("OPENBLAS_NUM_THREADS") ~= threads then
  -- OpenBLAS reads its thread count when it loads: run again with it set
  local cmd = ("OPENBLAS_NUM_THREADS=%s THREADS=%s lua5.4 %s %s"):format(
    threads, threads, arg[0], table.concat(arg, " "))
  os.exit(os.execute(cmd) and 0 or 1)
end

local pbt = require("pbt")
local nn, optim, T = pbt.nn, pbt.optim, pbt.tensor
local rounds = tonumber(arg[1]) or 3

local common = dofile("bench/common.lua")
local median = common.median

-- Warms up for 0.2 s (the first steps of a model fill the storage cache
-- and fault its pages in), then times calls for min_time seconds.
local function timeit(fn, min_time)
  local warm = pbt.clock() + 0.2
  repeat fn() until pbt.clock() > warm
  local times, t_end = {}, pbt.clock() + (min_time or 0.3)
  while pbt.clock() < t_end or #times < 20 do
    local t0 = pbt.clock()
    fn()
    times[#times + 1] = pbt.clock() - t0
  end
  return median(times)
end

local g = pbt.Generator(1)
local function mlp()
  return nn.Sequential(nn.Linear(784, 256, { generator = g }), nn.ReLU(),
    nn.Linear(256, 256, { generator = g }), nn.ReLU(), nn.Linear(256, 10, { generator = g }))
end
local function cnn()
  return nn.Sequential(
    nn.Conv2d(1, 16, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 7 * 7, 10, { generator = g }))
end

local cases = {
  { name = "mlp 784-256-256-10 batch 32", make = mlp, shape = { 32, 784 }, floor = 32 },
  { name = "mlp 784-256-256-10 batch 128", make = mlp, shape = { 128, 784 }, floor = 128 },
  { name = "cnn 1x28x28 batch 64", make = cnn, shape = { 64, 1, 28, 28 } },
}

-- Autograd's own cost on small tensors: a 10-element float32 mul with no
-- input requiring grad, the same mul recorded for autograd, and a small
-- graph (5 ops) recorded and run backward.  Each closure runs its work REPS
-- times; the figures are per repetition.
local REPS = 1000
local micro = {
  { name = "mul of 10 elements, nothing requires grad", make = function()
    local a, b = T.rand(10, { generator = g }), T.rand(10, { generator = g })
    return function() for _ = 1, REPS do local _ = a * b end end
  end },
  { name = "mul of 10 elements, recorded (x requires grad)", make = function()
    local x, b = T.rand(10, { generator = g }):requires_grad_(), T.rand(10, { generator = g })
    return function() for _ = 1, REPS do local _ = x * b end end
  end },
  { name = "((x*w + b):tanh() * c):sum() forward and backward, 10 elements", make = function()
    local x = T.rand(10, { generator = g }):requires_grad_()
    local w, b, c = T.rand(10, { generator = g }), T.rand(10, { generator = g }),
      T.rand(10, { generator = g })
    return function()
      for _ = 1, REPS do
        x.grad = nil
        ((x * w + b):tanh() * c):sum():backward()
      end
    end
  end },
}

-- `lua5.4 bench/mlp.lua --micro`: the small-tensor cases alone, in a fresh
-- process (run once per round by the main one: after the models, this
-- process's heap made small ops slower by a third), printing
-- "name<TAB>seconds" per case and "record<TAB>extra seconds<TAB>mul seconds",
-- the cost of recording from pairs of measurements one right after the other.
if arg[1] == "--micro" then
  for pass = 1, 2 do -- the first pass only warms the process up
    for _, c in ipairs(micro) do
      local secs = timeit(c.make()) / REPS
      if pass == 2 then print(("%s\t%.9g"):format(c.name, secs)) end
    end
  end
  local plain_fn, recorded_fn = micro[1].make(), micro[2].make()
  local diffs, plains = {}, {}
  for k = 1, 9 do
    plains[k] = timeit(plain_fn, 0.1) / REPS
    diffs[k] = timeit(recorded_fn, 0.1) / REPS - plains[k]
  end
  print(("record\t%.9g\t%.9g"):format(median(diffs), median(plains)))
  os.exit(0)
end

local function step_fn(model, x, y)
  local opt = optim.SGD(model:parameters(), { lr = 0.01, momentum = 0.9 })
  return function()
    opt:zero_grad()
    local loss = nn.cross_entropy(model(x), y)
    loss:backward()
    opt:step()
  end
end

local function run_torch()
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  for _, c in ipairs(cases) do f:write(c.name, "\n") end
  for _, c in ipairs(micro) do f:write(c.name, "\n") end
  f:close()
  local out = common.read_timings(("THREADS=%s /usr/bin/python3 bench/mlp_torch.py < %s 2>/dev/null")
    :format(threads, tmp))
  os.remove(tmp)
  return out
end

-- The same MLP step written out by hand in C on OpenBLAS (bench/mlp_floor.c,
-- built by make bench-mlp): the floor under any framework.
local function run_floor(batch)
  local p = io.popen(("build/mlp_floor %d 2000 2>/dev/null"):format(batch))
  local secs = p and tonumber(p:read("l") or "")
  if p then p:close() end
  return secs
end

local res = {}
for _, c in ipairs(cases) do res[c.name] = { pbt = {}, torch = {}, floor = {} } end
for _, c in ipairs(micro) do res[c.name] = { pbt = {}, torch = {} } end
local record_cost, record_plain = {}, {}
for r = 1, rounds do
  io.stderr:write(("round %d of %d\n"):format(r, rounds))
  for _, c in ipairs(cases) do
    local model = c.make()
    local x = T.rand(c.shape, { generator = g })
    local y = T.randint(1, 10, c.shape[1], { generator = g })
    res[c.name].pbt[r] = timeit(step_fn(model, x, y))
    if c.floor then res[c.name].floor[r] = run_floor(c.floor) end
  end
  local p = assert(io.popen(("OPENBLAS_NUM_THREADS=%s THREADS=%s lua5.4 %s --micro")
    :format(threads, threads, arg[0])))
  for line in p:lines() do
    local name, secs, plain = line:match("^(.-)\t(%S+)\t?(%S*)$")
    if name == "record" then
      record_cost[r], record_plain[r] = tonumber(secs), tonumber(plain)
    elseif name then
      res[name].pbt[r] = tonumber(secs)
    end
  end
  p:close()
  local t = run_torch()
  for _, c in ipairs(cases) do res[c.name].torch[r] = t[c.name] end
  for _, c in ipairs(micro) do res[c.name].torch[r] = t[c.name] end
end

print(("threads: %s on each side (OPENBLAS_NUM_THREADS for pbt, torch.set_num_threads for " ..
  "PyTorch); %d rounds; median seconds per training step"):format(threads, rounds))
print("")
-- A table of cases: figures in ms (scale 1e3) or µs (1e6), with the C
-- floor's columns when any case has one.
local function table_of(title, list, scale, unit, digits)
  local floors = false
  for _, c in ipairs(list) do floors = floors or (res[c.name].floor or {})[1] ~= nil end
  print(("| %s | pbt | PyTorch | pbt speed vs PyTorch |%s"):format(title,
    floors and " C floor | pbt speed vs C floor | PyTorch speed vs C floor |" or ""))
  print("|---|---|---|---|" .. (floors and "---|---|---|" or ""))
  local f = "%." .. digits .. "f " .. unit
  local function cell(x) return x and f:format(x * scale) or "-" end
  local function ratio(a, b) return a and b and ("%.2f"):format(a / b) or "-" end
  for _, c in ipairs(list) do
    local r = res[c.name]
    local p = median(r.pbt)
    local t = r.torch[1] and median(r.torch)
    local fl = r.floor and r.floor[1] and median(r.floor)
    local row = ("| %s | %s | %s | %s |"):format(c.name, cell(p), cell(t), ratio(t, p))
    if floors then
      row = row .. (" %s | %s | %s |"):format(cell(fl), ratio(fl, p), ratio(fl, t))
    end
    print(row)
  end
end
table_of("training step", cases, 1e3, "ms", 3)
print("")
table_of("autograd on small tensors (per repetition)", micro, 1e6, "µs", 2)
print(("\nrecording a mul costs %.3f µs more than the mul itself (%.2f µs): medians over rounds "
  .. "of the median of 9 pairs"):format(median(record_cost) * 1e6, median(record_plain) * 1e6))
