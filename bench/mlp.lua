-- bench/mlp.lua -- one training step (forward, backward, SGD update with
-- momentum) of an MLP 784-256-256-10 at batches 32 and 128 and of a small
-- CNN at batch 64, in pbt and in PyTorch (bench/mlp_torch.py, Debian's
-- python3-torch), with the same architecture, batch, dtype (float32),
-- optimizer and thread count; the MLP also as a hand-written C step on
-- OpenBLAS (bench/mlp_floor.c, the floor).
--
--   make bench-mlp                       (one thread on every side, 5 rounds)
--   THREADS=2 lua5.4 bench/mlp.lua [rounds] [--quick] [--parts=steps,micro,tail]
--
-- How it measures.  Every side is one long-lived process for the whole run:
-- pbt in this Lua process, PyTorch in bench/mlp_torch.py, the C floor in
-- build/mlp_floor, and pbt's small-tensor cases in `lua5.4 bench/mlp.lua
-- --micro` (a fresh process that builds no model: the models' heap made small
-- ops a third slower); each peer is asked one case at a time over a pipe
-- (common.peer) and sits idle while another side measures.  A side makes a
-- case's model, data and optimizer at its first measurement and keeps them.
-- One measurement of a case on a side: calls for 0.2 s of warm-up (they
-- fill the storage cache and fault its pages in), then calls each timed
-- until 0.3 s have passed and at least 20 were timed; the median.  The three
-- sides do exactly this (timeit here, in mlp_torch.py and in mlp_floor.c).
-- Each round measures every case on every side, interleaved: case c of round
-- r starts with side (r + c) mod nsides of its list and goes on in order, so
-- that no side is always first or last.  The table gives each side's median
-- over rounds and, for each pair of sides, min / median / max over rounds of
-- the ratio of the two sides' seconds in the same round.
--
-- pbt's step calls opt:zero_grad(false) (kept gradient buffers, which the
-- next backward fills in place); the MLP batch 32 has a second pbt side with
-- the default opt:zero_grad() (set to nil), as PyTorch's opt.zero_grad().
--
-- The tail part: after the rounds, a fresh CNN batch 64 runs 50 untimed
-- steps then 500 steps each timed, in pbt then in PyTorch; the median, the
-- 99th percentile (nearest rank), the max and p99 / median of the 500, and
-- the storage-cache misses of pbt over the 500 (pbt.core.allocator_stats()).
--
-- --quick: 1 round unless rounds is given, a tail of 100 steps after 10, and
-- 3 pairs instead of 9 for the cost of recording.  --parts: the parts to run
-- (steps: the training steps; micro: autograd on small tensors; tail).
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
-- Subnormal floats count as zero on every side (pbt.set_flush_denormal,
-- torch.set_flush_denormal, MXCSR in mlp_floor.c): the momentum buffers of
-- units that get no gradient decay through them, arithmetic on them takes a
-- microcode assist (an SGD update on them ran 25x slower), and each side's
-- speed would depend on how many its trajectory happens to make.
local FLUSH = pbt.set_flush_denormal(true)
local nn, optim, T = pbt.nn, pbt.optim, pbt.tensor
local clock = pbt.clock

local common = dofile("bench/common.lua")
local median, sorted, min_med_max = common.median, common.sorted, common.min_med_max

-- The median seconds of a call of fn: calls for 0.2 s of warm-up (the first
-- steps of a model fill the storage cache and fault its pages in), then
-- calls each timed until min_time seconds have passed and at least 20 were
-- timed.  bench/mlp_torch.py and bench/mlp_floor.c time the same way.
local function timeit(fn, min_time)
  local warm = clock() + 0.2
  repeat fn() until clock() > warm
  local times, t_end = {}, clock() + (min_time or 0.3)
  while clock() < t_end or #times < 20 do
    local t0 = clock()
    fn()
    times[#times + 1] = clock() - t0
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

-- A case's name is also its request to bench/mlp_torch.py; floor, the
-- batch to ask build/mlp_floor for; set_to_none, a second pbt side with
-- opt:zero_grad().
local cases = {
  { name = "mlp 784-256-256-10 batch 32", make = mlp, shape = { 32, 784 }, floor = 32,
    set_to_none = true },
  { name = "mlp 784-256-256-10 batch 128", make = mlp, shape = { 128, 784 }, floor = 128 },
  { name = "cnn 1x28x28 batch 64", make = cnn, shape = { 64, 1, 28, 28 } },
}
local tail_case = cases[3]

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

-- `lua5.4 bench/mlp.lua --micro`: pbt's side of the small-tensor cases, a
-- server in a fresh process.  It makes the cases' closures and warms itself
-- up with one measurement of each, then answers a line per request: "ready"
-- -> "ready"; a case's name -> seconds per repetition; "record N" -> "extra
-- plain", the cost of recording a mul above the mul itself and the mul, the
-- medians of N pairs of measurements one right after the other.
if arg[1] == "--micro" then
  local fns = {}
  for _, c in ipairs(micro) do fns[c.name] = c.make() end
  for _, c in ipairs(micro) do timeit(fns[c.name]) end
  io.stdout:setvbuf("line")
  for line in io.lines() do
    local npairs = tonumber(line:match("^record (%d+)$") or "")
    if line == "ready" then
      print("ready")
    elseif fns[line] then
      print(("%.9g"):format(timeit(fns[line]) / REPS))
    elseif npairs then
      local plain_fn, recorded_fn = fns[micro[1].name], fns[micro[2].name]
      local diffs, plains = {}, {}
      for k = 1, npairs do
        plains[k] = timeit(plain_fn, 0.1) / REPS
        diffs[k] = timeit(recorded_fn, 0.1) / REPS - plains[k]
      end
      print(("%.9g %.9g"):format(median(diffs), median(plains)))
    else
      print("error: unknown request " .. line)
    end
  end
  os.exit(0)
end

-- ---- the command line ---------------------------------------------------------------------

local function usage()
  io.stderr:write("usage: lua5.4 bench/mlp.lua [rounds] [--quick] [--parts=steps,micro,tail]\n")
  os.exit(2)
end
local rounds, quick, parts
for _, a in ipairs(arg) do
  local n = math.tointeger(tonumber(a))
  if a == "--quick" then
    quick = true
  elseif a:match("^%-%-parts=") then
    parts = {}
    for p in a:sub(#"--parts=" + 1):gmatch("[^,]+") do
      if p ~= "steps" and p ~= "micro" and p ~= "tail" then usage() end
      parts[p] = true
    end
  elseif n and n >= 1 and not rounds then
    rounds = n
  else
    usage()
  end
end
rounds = rounds or (quick and 1 or 5)
parts = parts or { steps = true, micro = true, tail = true }
local TAIL_STEPS, TAIL_WARM = quick and 100 or 500, quick and 10 or 50
local RECORD_PAIRS = quick and 3 or 9

-- ---- the sides ----------------------------------------------------------------------------

-- A peer's answer to req as a number (an error naming the peer otherwise).
local function ask_number(peer, who, req)
  local answer = peer:ask(req)
  return tonumber(answer) or error(("%s answered %q to %q"):format(who, answer, req), 0)
end

local command, date, nproc = common.provenance()
local torch = common.peer(("THREADS=%s /usr/bin/python3 bench/mlp_torch.py"):format(threads))
local torch_info = torch:ask("info") -- also waits for torch to load
print(("Command: `%s`; %s; nproc %s."):format(command, date, nproc))
print(("Threads: %s on each side: pbt and the C floor OPENBLAS_NUM_THREADS=%s (OpenBLAS "
  .. "reports %d), PyTorch torch.set_num_threads(%s) (%s). pbt.set_flush_denormal(true) = %s.")
  :format(threads, threads, pbt.core.threads.blas_threads(), threads, torch_info, tostring(FLUSH)))
print("")
io.stdout:flush()

local floor, micro_peer
if parts.steps then
  if not common.exists("build/mlp_floor") then
    io.stderr:write("this benchmark needs build/mlp_floor (the C floor): run make bench-mlp\n")
    os.exit(2)
  end
  floor = common.peer("build/mlp_floor")
end
if parts.micro then
  micro_peer = common.peer(("lua5.4 %s --micro"):format(arg[0]))
  assert(micro_peer:ask("ready") == "ready") -- also waits for its warm-up
end

-- One training step of model on (x, y), SGD with momentum; the gradients
-- are kept (zero_grad(false)) unless set_to_none.
local function step_fn(model, x, y, set_to_none)
  local opt = optim.SGD(model:parameters(), { lr = 0.01, momentum = 0.9 })
  return function()
    if set_to_none then opt:zero_grad() else opt:zero_grad(false) end
    local loss = nn.cross_entropy(model(x), y)
    loss:backward()
    opt:step()
  end
end

-- A fresh model of case c with its data, as a step.
local function fresh_step(c, set_to_none)
  local model = c.make()
  local x = T.rand(c.shape, { generator = g })
  local y = T.randint(1, 10, c.shape[1], { generator = g })
  return step_fn(model, x, y, set_to_none)
end

-- pbt's side of case c: its step made at the first measurement and kept.
local function pbt_side(c, set_to_none)
  local step
  return function()
    step = step or fresh_step(c, set_to_none)
    return timeit(step)
  end
end

-- Each case's sides in their order (c.sides) and by key (c.side): { key =,
-- run = function() -> seconds, times = {[round] = seconds} }.
for _, c in ipairs(cases) do
  c.sides = { { key = "pbt", run = pbt_side(c, false) } }
  if c.set_to_none then c.sides[#c.sides + 1] = { key = "pbt_none", run = pbt_side(c, true) } end
  c.sides[#c.sides + 1] = { key = "torch", run = function()
    return ask_number(torch, "bench/mlp_torch.py", c.name)
  end }
  if c.floor then
    c.sides[#c.sides + 1] = { key = "floor", run = function()
      return ask_number(floor, "build/mlp_floor", tostring(c.floor))
    end }
  end
  c.side = {}
  for _, s in ipairs(c.sides) do c.side[s.key], s.times = s, {} end
end
for _, c in ipairs(micro) do
  c.sides = {
    { key = "pbt", run = function()
      return ask_number(micro_peer, "bench/mlp.lua --micro", c.name)
    end },
    { key = "torch", run = function() return ask_number(torch, "bench/mlp_torch.py", c.name) end },
  }
  c.side = {}
  for _, s in ipairs(c.sides) do c.side[s.key], s.times = s, {} end
end

-- Measures every side of case number ci in round r, starting with side
-- (r + ci) mod nsides (counted from 0).
local function measure(c, ci, r)
  local n = #c.sides
  for k = 0, n - 1 do
    local s = c.sides[(r + ci + k) % n + 1]
    s.times[r] = s.run()
  end
end

-- ---- the rounds ---------------------------------------------------------------------------

local record_cost, record_plain = {}, {}
if parts.steps or parts.micro then
  for r = 1, rounds do
    io.stderr:write(("round %d of %d\n"):format(r, rounds))
    if parts.steps then
      for ci, c in ipairs(cases) do measure(c, ci, r) end
    end
    if parts.micro then
      for ci, c in ipairs(micro) do measure(c, ci, r) end
      local answer = micro_peer:ask("record " .. RECORD_PAIRS)
      local cost, plain = answer:match("^(%S+) (%S+)$")
      record_cost[r], record_plain[r] = tonumber(cost), tonumber(plain)
      if not (record_cost[r] and record_plain[r]) then
        error(("bench/mlp.lua --micro answered %q to record"):format(answer), 0)
      end
    end
  end
end

-- The per-round ratios a.times[r] / b.times[r].
local function ratios(a, b)
  local out = {}
  for r = 1, rounds do out[r] = a.times[r] / b.times[r] end
  return out
end

if parts.steps then
  print(("Training steps: %d round(s), every side a long-lived process, the sides interleaved "
    .. "with their order rotated; median ms per step over rounds. Speed columns: min / median / "
    .. "max over rounds of a ratio of seconds in the same round (pbt speed vs PyTorch = PyTorch s "
    .. "/ pbt s, above 1 when pbt is faster). pbt's step calls opt:zero_grad(false) (kept "
    .. "gradients) but on the row marked zero_grad(); PyTorch's calls opt.zero_grad() (set to "
    .. "None)."):format(rounds))
  print("")
  print("| training step | pbt | PyTorch | C floor | pbt speed vs PyTorch | pbt speed vs C floor "
    .. "| PyTorch speed vs C floor |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  local function ms(s) return s and ("%.3f ms"):format(median(s.times) * 1e3) or "-" end
  local function speed(a, b) return a and b and min_med_max(ratios(a, b), "%.2f") or "-" end
  for _, c in ipairs(cases) do
    for _, key in ipairs({ "pbt", "pbt_none" }) do
      local p, t, f = c.side[key], c.side.torch, c.side.floor
      if p then
        local label = key == "pbt_none" and c.name .. ", pbt with zero_grad()" or c.name
        print(("| %s | %s | %s | %s | %s | %s | %s |"):format(label, ms(p), ms(t), ms(f),
          speed(t, p), speed(f, p), speed(f, t)))
      end
    end
  end
  print("")
end

if parts.micro then
  print(("Autograd on small tensors, per repetition: pbt in a fresh process that builds no model; "
    .. "%d round(s), interleaved as above; median µs over rounds; speed min / median / max over "
    .. "rounds of PyTorch s / pbt s."):format(rounds))
  print("")
  print("| autograd on small tensors (per repetition) | pbt | PyTorch | pbt speed vs PyTorch |")
  print("|---|---:|---:|---:|")
  for _, c in ipairs(micro) do
    local p, t = c.side.pbt, c.side.torch
    print(("| %s | %.2f µs | %.2f µs | %s |"):format(c.name, median(p.times) * 1e6,
      median(t.times) * 1e6, min_med_max(ratios(t, p), "%.2f")))
  end
  print(("\nrecording a mul costs %.3f µs more than the mul itself (%.2f µs): medians over "
    .. "rounds of the median of %d pairs"):format(median(record_cost) * 1e6,
    median(record_plain) * 1e6, RECORD_PAIRS))
  print("")
end

-- ---- the tail of the CNN step -------------------------------------------------------------

-- The seconds of each of TAIL_STEPS steps of a fresh model of c after
-- TAIL_WARM untimed ones, and the storage-cache misses over the timed steps.
local function pbt_tail(c)
  collectgarbage()
  local step = fresh_step(c, false)
  for _ = 1, TAIL_WARM do step() end
  local before = pbt.core.allocator_stats().misses
  local times = {}
  for i = 1, TAIL_STEPS do
    local t0 = clock()
    step()
    times[i] = clock() - t0
  end
  return times, pbt.core.allocator_stats().misses - before
end

if parts.tail then
  io.stderr:write("tail\n")
  local pbt_times, misses = pbt_tail(tail_case)
  local answer = torch:ask(("tail %d %d %s"):format(TAIL_STEPS, TAIL_WARM, tail_case.name))
  local torch_times = {}
  for t in answer:gmatch("%S+") do torch_times[#torch_times + 1] = tonumber(t) end
  if #torch_times ~= TAIL_STEPS then error("bench/mlp_torch.py answered " .. answer, 0) end
  print(("Tail of the step: %s, a fresh model, %d untimed steps then %d steps each timed, pbt "
    .. "(zero_grad(false)) then PyTorch; p99 is the 99th percentile (nearest rank); the target "
    .. "is p99 within 1.3x the median."):format(tail_case.name, TAIL_WARM, TAIL_STEPS))
  print("")
  print(("| %d steps | median | p99 | max | p99 / median |"):format(TAIL_STEPS))
  print("|---|---:|---:|---:|---:|")
  for _, side in ipairs({ { "pbt", pbt_times }, { "PyTorch", torch_times } }) do
    local s = sorted(side[2])
    local med, p99 = median(s), s[math.ceil(0.99 * #s)]
    print(("| %s | %.3f ms | %.3f ms | %.3f ms | %.2f |"):format(side[1], med * 1e3, p99 * 1e3,
      s[#s] * 1e3, p99 / med))
  end
  print(("\npbt's storage-cache misses over its %d timed steps: %d "
    .. "(pbt.core.allocator_stats().misses after - before)"):format(TAIL_STEPS, misses))
end

torch:close()
if floor then floor:close() end
if micro_peer then micro_peer:close() end
