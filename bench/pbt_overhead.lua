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
--     (core.population._memcpy_bench).  Fastest of several repetitions on each
--     side, the two sides alternating in rounds.
-- Everything runs on one thread; no BLAS is involved.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local pbt = require("pbt")
local population = require("pbt.population")
local core = pbt.core
local clock = pbt.clock

local quick = arg and arg[1] == "--quick"

local truncation = require("pbt.select").truncation

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

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

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
print("Reference: `core.population._memcpy_bench(bytes, reps)`, a C memcpy between two pre-faulted")
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
    local m = core.population._memcpy_bench(copied, reps)
    if m < best_m then best_m = m end
  end
  assert(keep[2][4]:get(quarter) == 1, "exploit did not copy")
  print(("| %3d MB | %8.0f us (%5.1f GB/s) | %8.0f us (%5.1f GB/s) | %5.0f%% |"):format(mb,
    best_e * 1e6, copied / best_e / 1e9, best_m * 1e6, copied / best_m / 1e9, best_m / best_e * 100))
  pop, keep = nil, nil
  collectgarbage()
end
