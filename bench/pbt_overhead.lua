-- bench/pbt_overhead.lua -- what PBT's own bookkeeping costs.
--
--   lua5.4 bench/pbt_overhead.lua [--quick]     (from the repository root,
--   with the module built: LUA_CPATH='./build/?.so' or make BUILD=...)
--
-- (1) Time per decision for populations of 16, 64, 256 and 1024 members.
--     async (tournament): one member's decision = report its score, log
--       "ready", a binary tournament against a random member read in the
--       store (pop:tournament: the two scores only), and when it loses:
--       exploit (copy the winner's state of 8 KB), set one hyperparameter,
--       log "explore".
--     sync (truncation): one generation = every member reports, one
--       truncation selection over all scores (fraction 0.2), and each of the
--       bottom 20% exploits a top member, explores and logs; shown per member.
-- (2) Exploit copy throughput for states of 1, 10 and 100 MB (four float32
--     tensors of a quarter each) against a plain C memcpy of the same bytes
--     between two pre-faulted tensor storages
--     (build/bench/memcpy.so, bench/memcpy.c: make bench-tools).  Fastest of several repetitions on each
--     side, the two sides alternating in rounds.
-- (3) PB2 (pbt.explore.pb2{}): the explore decisions of one synchronous
--     generation (truncation 0.25: a quarter of the members explore), its
--     reading of the data before them (pbt.explore.hooks) included, for 8,
--     32 and 128 members whose histories hold the last 10 steps (the
--     experiments' default window) of a run with 4 hyperparameters (three
--     by the GP, one categorical); the first decision of a generation fits
--     the GP, the others reuse the fit and add the batch.  Against one
--     training step of the Fashion-MNIST example (100 minibatches of 64 of
--     the 784-256-10 MLP with SGD, on random data of that shape: the cost
--     does not depend on the pixels), timed in the same process.
-- (1) and (2) run on one thread with no BLAS; (3) uses OpenBLAS.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local memcpy = dofile("bench/common.lua").memcpy()
local pbt = require("pbt")
local population = require("pbt.population")
local core = pbt.core
local clock = pbt.clock

local quick = arg and arg[1] == "--quick"

local truncation = require("pbt.select").truncation
local decisions = require("pbt.decisions")

local function make_population(n, elems)
  local pop = population.new { size = n, hparams = { { name = "lr", kind = "float" } } }
  local keep = {}
  for i = 1, n do
    local a, b = pbt.tensor.zeros(elems), pbt.tensor.zeros(elems)
    keep[i] = { a, b }
    pop:set_state(i, "a", a)
    pop:set_state(i, "b", b)
    pop:set_state(i, "step", 0)
    pop:set_hparam(i, "lr", 0.01)
  end
  return pop, keep
end

local median = dofile("bench/common.lua").median

-- (1) decisions -------------------------------------------------------------------
local function bench_async(n, decisions)
  local pop, keep = make_population(n, 1024)
  local g = pbt.Generator(1)
  for i = 1, n do pop:report(i, g:uniform(), 0) end
  local exploits = 0
  local t0 = clock()
  for d = 1, decisions do
    local i = (d - 1) % n + 1
    pop:report(i, g:uniform(), d)
    pop:log("ready", i)
    local donor = pop:tournament(i, g)
    if donor then
      pop:exploit(i, donor)
      pop:set_hparam(i, "lr", pop:hparams(i).lr * 1.2)
      pop:log("explore", i, nil, "lr x1.2")
      exploits = exploits + 1
    end
  end
  local dt = clock() - t0
  keep = nil
  return dt / decisions, exploits / decisions, pop:nevents()
end

local function bench_sync(n, generations)
  local pop, keep = make_population(n, 1024)
  local g = pbt.Generator(2)
  local t0 = clock()
  for gen = 1, generations do
    for i = 1, n do pop:report(i, g:uniform(), gen) end
    local map = truncation(pop:scores(), { fraction = 0.2, generator = g })
    for i = 1, n do
      local donor = map[i]
      if donor then
        pop:log("ready", i)
        pop:exploit(i, donor)
        pop:set_hparam(i, "lr", pop:hparams(i).lr * 0.8)
        pop:log("explore", i, nil, "lr x0.8")
      end
    end
  end
  local dt = clock() - t0
  keep = nil
  return dt / (generations * n)
end

print("## PBT decision overhead")
print()
print("Command: `lua5.4 bench/pbt_overhead.lua" .. (quick and " --quick" or "") .. "`; state per member: two float32 tensors of 1024 elements (8 KB) and a number; one thread.")
print()
print("| members | async decision (tournament) | exploits | sync, per member (truncation 0.2) |")
print("|--------:|----------------------------:|---------:|----------------------------------:|")
for _, n in ipairs({ 16, 64, 256, 1024 }) do
  local reps = quick and 1 or 3
  local a, s = {}, {}
  local rate
  for _ = 1, reps do
    local per, r = bench_async(n, math.max(2000, 4 * n))
    a[#a + 1], rate = per, r
    s[#s + 1] = bench_sync(n, math.max(4, 4096 // n))
    collectgarbage()
  end
  print(("| %7d | %24.2f us | %7.0f%% | %30.2f us |"):format(n, median(a) * 1e6, rate * 100,
    median(s) * 1e6))
end

-- (2) copy throughput ----------------------------------------------------------------
print()
print("## Exploit copy throughput against memcpy")
print()
print("Reference: `memcpy.best(bytes, reps)`, a C memcpy between two pre-faulted")
print("tensor storages; exploit state: four contiguous float32 tensors of a quarter each.")
print("Fastest of the repetitions on each side, sides alternating over the rounds.")
print()
print("| state | exploit | memcpy | exploit / memcpy |")
print("|------:|--------:|-------:|-----------------:|")
for _, mb in ipairs({ 1, 10, 100 }) do
  local bytes = mb * 1000000
  local quarter = bytes // 16 -- float32 elements per tensor
  local pop, keep = make_population(2, 0)
  for i = 1, 2 do
    keep[i] = {}
    for k = 1, 4 do
      local t = pbt.tensor.full({ quarter }, i)
      keep[i][k] = t
      pop:set_state(i, "t" .. k, t)
    end
  end
  local copied = pop:state_bytes(1) -- "a" and "b" are empty
  local reps = mb >= 100 and 5 or (mb >= 10 and 20 or 100)
  local rounds = quick and 2 or 5
  local best_e, best_m = math.huge, math.huge
  for _ = 1, rounds do
    for _ = 1, reps do
      local t0 = clock()
      pop:exploit(2, 1)
      local dt = clock() - t0
      if dt < best_e then best_e = dt end
    end
    local m = memcpy.best(copied, reps)
    if m < best_m then best_m = m end
  end
  assert(keep[2][4]:get(quarter) == 1, "exploit did not copy")
  print(("| %3d MB | %8.0f us (%5.1f GB/s) | %8.0f us (%5.1f GB/s) | %5.0f%% |"):format(mb,
    best_e * 1e6, copied / best_e / 1e9, best_m * 1e6, copied / best_m / 1e9, best_m / best_e * 100))
  pop, keep = nil, nil
  collectgarbage()
end

-- (3) PB2 ------------------------------------------------------------------------------
local space = { lr = pbt.loguniform(1e-3, 0.5), momentum = pbt.uniform(0, 0.99),
  weight_decay = pbt.loguniform(1e-6, 1e-2), batch_size = pbt.choice{ 16, 32, 64, 128, 256 } }
local names = require("pbt.space").names(space)
local e = { names = names, space = space, mode = "max" }

-- a population that ran `steps` steps of a PBT run: scores that rise at a
-- rate depending on lr, truncation every 4 steps, perturb_or_resample
local function pb2_population(n, steps)
  local pop = population.new{ size = n, hparams = decisions.hp_specs(e), window = 10 }
  local g = pbt.Generator(n)
  local set_h = decisions.setter(e, pop)
  local perturb = pbt.explore.perturb_or_resample{}
  local score = {}
  for i = 1, n do
    pop:set_state(i, "x", 0)
    set_h(i, require("pbt.space").sample(space, g))
    pop:schedule_mark(i)
    score[i] = 0
  end
  for step = 1, steps do
    for i = 1, n do
      local h = pop:hparams(i)
      score[i] = pop:score(i) == pop:score(i) and pop:score(i) or 0
      score[i] = score[i] + math.exp(-(math.log(h.lr) - math.log(0.05)) ^ 2) * 0.01 + 0.002 * g:normal()
      pop:report(i, score[i], step)
    end
    if step % 4 == 0 then
      local map = truncation(pop:scores(), { fraction = 0.25, generator = g })
      for i = 1, n do
        if map[i] then
          pop:exploit(i, map[i])
          set_h(i, perturb(require("pbt.worker").hparams(e, pop, map[i]), space, g))
          pop:schedule_mark(i)
        end
      end
    end
  end
  return pop
end

-- one generation's PB2 decisions: seconds of the first (with the fit) and
-- the mean of the others, and the data points
local function pb2_generation(n)
  local pop = pb2_population(n, 23)
  local view = decisions.view(e, pop)
  local explore = pbt.explore.pb2{}
  local g = pbt.Generator(7)
  local map = truncation(pop:scores(), { fraction = 0.25, generator = g })
  local set_h = decisions.setter(e, pop)
  local pb2 = require("pbt.pb2")
  local times, points = {}, #pb2.data(view, space, pb2.plan(space), "max")
  -- what the deciders do before a generation's decisions: PB2 reads its data
  local t0 = clock()
  pbt.explore.hooks[explore](view)
  local prep = clock() - t0
  for i = 1, n do
    if map[i] then
      pop:exploit(i, map[i])
      local t0 = clock()
      local h = explore(require("pbt.worker").hparams(e, pop, i), space, g, view, i)
      times[#times + 1] = clock() - t0
      set_h(i, h)
      pop:schedule_mark(i)
    end
  end
  local rest = 0
  for k = 2, #times do rest = rest + times[k] end
  return prep + times[1], #times > 1 and rest / (#times - 1) or 0, #times, points
end

-- one training step of the example: 100 minibatches of 64, 784-256-10, SGD
local function example_step()
  local nn, optim = pbt.nn, pbt.optim
  local g = pbt.Generator(1)
  local x, y = pbt.tensor.rand({ 6400, 784 }, { generator = g }), pbt.tensor.ones({ 6400 })
  local model = nn.Sequential(nn.Linear(784, 256, { generator = g }), nn.ReLU(), nn.Linear(256, 10, { generator = g }))
  local opt = optim.SGD(model:parameters(), { lr = 0.01, momentum = 0.9 })
  local function step()
    for b = 0, 99 do
      local xb, yb = x:narrow(1, b * 64 + 1, 64), y:narrow(1, b * 64 + 1, 64)
      opt:zero_grad()
      nn.cross_entropy(model(xb), yb):backward()
      opt:step()
    end
  end
  step()
  local best = math.huge
  for _ = 1, quick and 2 or 5 do
    local t0 = clock()
    step()
    best = math.min(best, clock() - t0)
  end
  return best
end

print()
print("## PB2 decisions")
print()
local train = example_step()
print("The example is ready every 2 steps, so a generation of n members trains 2n steps between two batches of PB2 decisions.")
print(("One training step of the Fashion-MNIST example (100 minibatches of 64, 784-256-10, SGD): %.1f ms (fastest of %d)."):format(train * 1e3, quick and 2 or 5))
print()
print("| members | data points | explores | first (fits the GP) | each other | generation's PB2 time / one training step | / the generation's training (members x 2 steps) |")
print("|--------:|------------:|---------:|--------------------:|-----------:|------------------------------------------:|------------------------------------------------:|")
for _, n in ipairs({ 8, 32, 128 }) do
  local firsts, others, total = {}, {}, {}
  local count, points
  for _ = 1, quick and 1 or 3 do
    local first, other, c, p = pb2_generation(n)
    firsts[#firsts + 1], others[#others + 1], total[#total + 1] = first, other, first + other * (c - 1)
    count, points = c, p
  end
  print(("| %7d | %11d | %8d | %16.1f ms | %7.1f ms | %40.2f | %46.1f%% |"):format(n, points, count,
    median(firsts) * 1e3, median(others) * 1e3, median(total) / train, 100 * median(total) / (train * 2 * n)))
end
