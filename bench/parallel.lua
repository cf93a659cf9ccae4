-- bench/parallel.lua -- what the runner's worker threads buy, and what the
-- runner itself costs.
--
--   lua5.4 bench/parallel.lua [--quick]        (from the repository root, after make)
--
-- (1) examples/fashion_pbt.lua (8 members, PBT on, seed 1, 16 steps; --quick:
--     4) on 1 and 2 workers, synchronous and asynchronous.  Each measured run
--     is a child process (this file with --child) with PBT_STEPS in its
--     environment: it loads the experiment (the data set, through
--     pbt.shared, not timed), times e:run only and prints its figures.
--     Member-steps per second = report events / wall time of e:run.  The two
--     sides of a case alternate, their order rotated: round r runs 1 then 2
--     workers when r is odd, 2 then 1 when r is even; the ratio is taken
--     within a round.  Figures are min / median / max over the rounds.
--     Sync mode also gets an estimate of the barrier idle time (see
--     barrier_idle below).  Five rounds (--quick: one).
-- (2) The decision overhead of the runner: an inline experiment whose step
--     draws one number from the member's generator and whose eval returns
--     it, ready every step, 8 to 1024 members, sync and async, three exploit
--     rules, one worker (this Lua state); microseconds of e:run per
--     member-step (report event).  The budget is calibrated so that a case
--     runs for about 0.6 s (--quick: 0.4 s); median of 3 runs (--quick: 1).
--     Plus the 1024-member sync truncation case writing its files (out =
--     a directory under /tmp, removed afterwards).
-- (3) pop:exploit(2, 1) of an MLP 784-100-60-10 (85,170 parameters) with its
--     SGD optimizer (momentum buffers made by one step), registered in a
--     store as the runner does it, against a plain memcpy of the same bytes
--     (build/bench/memcpy.so, bench/memcpy.c: make bench-tools).  Fastest call on each side, sides
--     alternating over rounds.
-- (4) Peak memory (VmHWM) of the children of (1), and the data set's bytes.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local memcpy = dofile("bench/common.lua").memcpy()
local pbt = require("pbt")
local core = pbt.core
local clock = pbt.clock

local EXAMPLE = "examples/fashion_pbt.lua"

-- ---- helpers ------------------------------------------------------------------------------

-- a field of /proc/self/status, in bytes (nil when unreadable)
local function status_bytes(field)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local kb = text:match(field .. ":%s*(%d+) kB")
  return kb and tonumber(kb) * 1024 or nil
end

local common = dofile("bench/common.lua")
local sorted, median, min_med_max, sh = common.sorted, common.median, common.min_med_max, common.sh

local function mb(bytes) return ("%.1f MB"):format(bytes / 1e6) end

local elem_size = { float32 = 4, float64 = 8, int32 = 4, int64 = 8, uint8 = 1, int8 = 1,
  int16 = 2, float16 = 2, bool = 1 }

-- bytes of the tensors in a (nested) table, each storage counted as its
-- tensors' elements (the data set's tensors are distinct copies)
local function tensor_bytes(v, seen)
  seen = seen or {}
  if pbt.autograd.is_tensor(v) then return v:numel() * (elem_size[v:dtype()] or 4) end
  if type(v) ~= "table" or seen[v] then return 0 end
  seen[v] = true
  local n = 0
  for _, x in pairs(v) do n = n + tensor_bytes(x, seen) end
  return n
end

-- ---- (1) and (4), the child side ------------------------------------------------------------

-- Barrier idle of a synchronous run, estimated from the event log.
-- The sync runner commits a generation's events member by member after the
-- generation, so in the log a generation is a run of report/ready events in
-- which no member reports again after its 'ready'.  A member's finish time in
-- a generation is the wall time of its last report/ready there.  Workers take
-- the next member as soon as they are free, so a worker only idles once no
-- member of the generation is left to take: the W latest finish times are the
-- W workers' last tasks, and each of the W - 1 workers that finished before
-- the latest one waits (latest - its finish) at the barrier.  Summed over the
-- generations and divided by wall time x workers, that is the share of the
-- workers' time lost waiting at the barrier.  Not counted: the time between a
-- generation's end and the next generation's first dispatch (the decisions),
-- and the threads' start-up; those are not in the log.
local function barrier_idle(events, workers)
  local gens, cur, done = {}, nil, {}
  for _, ev in ipairs(events) do
    if ev.kind == "report" or ev.kind == "ready" then
      if not cur or done[ev.member] then
        cur, done = {}, {}
        gens[#gens + 1] = cur
      end
      if not cur[ev.member] or ev.time > cur[ev.member] then cur[ev.member] = ev.time end
      if ev.kind == "ready" then done[ev.member] = true end
    end
  end
  local idle = 0
  for _, g in ipairs(gens) do
    local times = {}
    for _, t in pairs(g) do times[#times + 1] = t end
    table.sort(times, function(a, b) return a > b end)
    for k = 2, math.min(workers, #times) do idle = idle + (times[1] - times[k]) end
  end
  return idle, #gens
end

local function child(workers, mode, seed)
  -- record what the runner sets OpenBLAS's thread count to
  local blas_set = {}
  local blas_threads = core.threads.blas_threads
  core.threads.blas_threads = function(n)
    if n then blas_set[#blas_set + 1] = n end
    return blas_threads(n)
  end
  local blas_default = blas_threads()

  local t0 = clock()
  local e = pbt.load_experiment(EXAMPLE, { pbt = true, seed = seed })
  local load_s = clock() - t0
  -- the data set: the same shared value again (views of the same storages)
  local okd, d = pcall(pbt.shared, "fashion-mnist/" .. seed, function() error("not loaded") end)
  local data_bytes = okd and tensor_bytes(d) or 0
  d = nil
  collectgarbage()
  collectgarbage()
  local hwm_load, rss_load = status_bytes("VmHWM"), status_bytes("VmRSS")
  -- freed storages this state's storage cache keeps for reuse (resident)
  local cache_load = core.allocator_stats and core.allocator_stats().cached_bytes or -1

  e.sync = mode == "sync"
  local t1 = clock()
  local r = e:run{ workers = workers, progress = false }
  local run_s = clock() - t1

  local reports = 0
  for _, ev in ipairs(r.events) do if ev.kind == "report" then reports = reports + 1 end end
  local idle, gens = 0, 0
  if e.sync then idle, gens = barrier_idle(r.events, workers) end
  local hwm_end, rss_end = status_bytes("VmHWM"), status_bytes("VmRSS")
  print(("RESULT load=%.6f run=%.6f reports=%d events=%d population=%d idle=%.6f gens=%d "
    .. "cache_load=%d hwm_load=%d rss_load=%d hwm_end=%d rss_end=%d data=%d blas_default=%d "
    .. "blas_set=%s best=%.6f")
    :format(load_s, run_s, reports, #r.events, e.population, idle, gens, cache_load, hwm_load or -1,
      rss_load or -1, hwm_end or -1, rss_end or -1, data_bytes, blas_default,
      #blas_set > 0 and table.concat(blas_set, ",") or "none", r.best.score))
end

if arg[1] == "--child" then
  child(tonumber(arg[2]), arg[3], tonumber(arg[4]))
  os.exit(0)
end

-- ---- the parent -------------------------------------------------------------------------------

local quick = common.quick_flag("parallel.lua")
local command, date, nproc = common.provenance()
local blas_env = os.getenv("OPENBLAS_NUM_THREADS")
local blas_default = core.threads.blas_threads()
local blas_note = ("OPENBLAS_NUM_THREADS=%s (OpenBLAS's own count: %d)"):format(
  blas_env or "unset", blas_default)

-- the 1-minute load average: other processes on the machine skew every figure
local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local l = f:read("l")
  f:close()
  return l:match("^(%S+)") or "?"
end

local function header(title, blas)
  print("## " .. title)
  print()
  print(("Command: `%s`; %s; nproc %s; OpenBLAS: %s."):format(command, date, nproc,
    blas or blas_note))
  print()
end

-- (1) -------------------------------------------------------------------------------------------
local STEPS = quick and 4 or 16
local ROUNDS = quick and 1 or 5
-- one seed for every run: the same hyperparameters (batch sizes) and so the
-- same work in every synchronous run, whatever the round
local SEED = 1

local function run_child(workers, mode, seed)
  local cmd = ("PBT_STEPS=%d lua5.4 %s --child %d %s %d 2>&1"):format(STEPS, arg[0], workers,
    mode, seed)
  local out = sh(cmd)
  local line = out:match("RESULT ([^\n]*)")
  if not line then error(("child failed: %s\n%s"):format(cmd, out), 0) end
  local t = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
  t.rate = t.reports / t.run
  t.workers = workers
  return t
end

io.stderr:write(("parallel: (1) Fashion-MNIST, %d round(s) of 4 runs...\n"):format(ROUNDS))
local load_before = loadavg()
local cases = { "sync", "async" }
local runs = { sync = { [1] = {}, [2] = {} }, async = { [1] = {}, [2] = {} } }
local ratios = { sync = {}, async = {} }
for r = 1, ROUNDS do
  for _, mode in ipairs(cases) do
    local order = r % 2 == 1 and { 1, 2 } or { 2, 1 }
    local got = {}
    for _, w in ipairs(order) do
      got[w] = run_child(w, mode, SEED)
      table.insert(runs[mode][w], got[w])
      io.stderr:write(("  round %d %s %d worker(s): %.1f s, %.2f member-steps/s\n")
        :format(r, mode, w, got[w].run, got[w].rate))
    end
    table.insert(ratios[mode], got[2].rate / got[1].rate)
  end
end

local load_after = loadavg()

local function field(list, f)
  local out = {}
  for k, t in ipairs(list) do out[k] = t[f] end
  return out
end

local any = runs.sync[1][1]
-- what the runner set OpenBLAS's thread count to: "1,2" = 1 during e:run, 2 restored after
local blas_calls = tostring(any.blas_set)
local blas_run_note = blas_note .. (blas_calls == "none" and "; the runner did not change it"
  or ("; the runner set %s thread(s) during e:run (one per worker) and %s after it")
    :format(blas_calls:match("^[^,]+"), blas_calls:match(",(.*)$") or "nothing"))
header("Fashion-MNIST example: 1 worker against 2", blas_run_note)
print(("examples/fashion_pbt.lua loaded with pbt.load_experiment(path, {pbt = true, seed = %d}) "
  .. "in every run, 8 members, PBT_STEPS=%d (%d member-steps a run), ready every 2 steps, "
  .. "truncation 0.25. Each run is a child process; only e:run is timed. %d round(s); "
  .. "min / median / max over the rounds. Async: e.sync = false before e:run. 1-minute load "
  .. "average before / after these runs: %s / %s (about 1-2 expected from the runs themselves; "
  .. "more means other processes shared the 2 cores).")
  :format(SEED, STEPS, 8 * STEPS, ROUNDS, load_before, load_after))
print()
print("| mode | 1 worker, member-steps/s | 2 workers, member-steps/s | 2 workers / 1 worker | "
  .. "barrier idle, 2 workers | barrier idle, 1 worker |")
print("|------|-------------------------:|--------------------------:|---------------------:|"
  .. "------------------------:|-----------------------:|")
for _, mode in ipairs(cases) do
  local idle = { "n/a", "n/a" }
  if mode == "sync" then
    for w = 1, 2 do
      local shares = {}
      for k, t in ipairs(runs[mode][w]) do shares[k] = 100 * t.idle / (t.run * w) end
      idle[w] = min_med_max(shares, "%.1f") .. " %"
    end
  end
  print(("| %s | %s | %s | %s | %s | %s |"):format(mode,
    min_med_max(field(runs[mode][1], "rate"), "%.2f"),
    min_med_max(field(runs[mode][2], "rate"), "%.2f"),
    min_med_max(ratios[mode], "%.2f"), idle[2], idle[1]))
end
local loads = {}
for _, mode in ipairs(cases) do
  for w = 1, 2 do for _, t in ipairs(runs[mode][w]) do loads[#loads + 1] = t.load end end
end
local wall = {}
for _, mode in ipairs(cases) do
  for w = 1, 2 do wall[#wall + 1] = ("%s/%dw %s s"):format(mode, w,
    min_med_max(field(runs[mode][w], "run"), "%.1f")) end
end
print()
print(("Data loading (pbt.load_experiment: reading Fashion-MNIST and the validation split, "
  .. "not timed "
  .. "above): %s s (min / median / max over the %d children). Wall time of e:run: %s.")
  :format(min_med_max(loads, "%.2f"), #loads, table.concat(wall, ", ")))
print()
print(("Barrier idle (sync only): from result.events (%d events, %.1f per member, %d generations "
  .. "per run): per generation, each worker but the last to finish waits from the finish time of "
  .. "its last member (its member's last report/ready of the generation) to the generation's last "
  .. "'ready'; the W latest finish times are the W workers' last tasks, since a worker takes the "
  .. "next member as soon as it is free. Sum over generations / (wall time x workers). Not "
  .. "included: the decisions between generations and the threads' start-up (not in the log). "
  .. "With 1 worker the estimate is 0 by construction.")
  :format(any.events, any.events / any.population, any.gens))
print()
-- a synchronous run is the same for any number of workers: the same best score
local same, rounds_checked = 0, #runs.sync[1]
for r = 1, rounds_checked do
  if runs.sync[1][r].best == runs.sync[2][r].best then same = same + 1 end
end
print(("Sync determinism: the best validation score of 1 and 2 workers agrees in %d of %d "
  .. "round(s).")
  :format(same, rounds_checked))
print()

-- (2) -------------------------------------------------------------------------------------------
local TARGET_S = quick and 0.4 or 0.6
local REPS2 = quick and 1 or 3
io.stderr:write("parallel: (2) decision overhead...\n")

local function overhead_experiment(n, sync, rule, steps)
  return pbt.experiment{
    name = "overhead", population = n, seed = 1, mode = "max", sync = sync,
    space = { lr = pbt.loguniform(1e-3, 1) },
    init = function() return { s = 0 } end,
    step = function(state, _, g) state.s = g:uniform() end,
    eval = function(state) return state.s end,
    ready = pbt.ready.every(1),
    exploit = rule,
    budget = { steps = steps },
  }
end

local rules = {
  { name = "truncation{fraction=0.25}",
    make = function() return pbt.exploit.truncation{ fraction = 0.25 } end },
  { name = "tournament{}", make = function() return pbt.exploit.tournament{} end },
  { name = "ttest{}", make = function() return pbt.exploit.ttest{} end },
}

-- one run: seconds of the run, member-steps, and the seconds the result's
-- event list takes to build again from the store (a part of the run's
-- time).  The run is pbt.scheduler.run(e, opts), the body of e:run (which
-- only checks its options first), called directly because it also returns
-- the store.
local event_table = require("pbt.reporter").event_table
local scheduler_run = require("pbt.scheduler").run
local function overhead_run(n, sync, rule, steps, out)
  local e = overhead_experiment(n, sync, rule.make(), steps)
  collectgarbage()
  collectgarbage()
  local t0 = clock()
  local r, pop = scheduler_run(e, { workers = 1, progress = false, out = out })
  local dt = clock() - t0
  local count = { report = 0, ready = 0, exploit = 0 }
  for _, ev in ipairs(r.events) do count[ev.kind] = (count[ev.kind] or 0) + 1 end
  local t1 = clock()
  for _, ev in ipairs(pop:events(1, true)) do event_table(ev) end
  local rebuild = clock() - t1
  return dt, count.report, count.exploit / math.max(1, count.ready), rebuild
end

local sizes = { 8, 64, 256, 1024 }
local cases2 = {}
for _, n in ipairs(sizes) do
  for _, sync in ipairs({ true, false }) do
    for _, rule in ipairs(rules) do
      -- calibrate: a short run, then the steps for TARGET_S
      local probe = math.max(2, 2000 // n)
      local dt, reports = overhead_run(n, sync, rule, probe)
      local per = dt / reports
      local steps = math.max(2, math.floor(TARGET_S / (per * n) + 0.5))
      cases2[#cases2 + 1] = { n = n, sync = sync, rule = rule, steps = steps, per = {}, wall = {},
        rebuild = {} }
    end
  end
end
for _ = 1, REPS2 do
  for _, c in ipairs(cases2) do
    local dt, reports, share, rebuild = overhead_run(c.n, c.sync, c.rule, c.steps)
    c.per[#c.per + 1] = dt / reports * 1e6
    c.wall[#c.wall + 1] = dt
    c.rebuild[#c.rebuild + 1] = rebuild / reports * 1e6
    c.reports, c.share = reports, share
  end
end
-- with files: the 1024-member sync truncation case again, out = a directory under /tmp
local tmp = os.tmpname()
os.remove(tmp)
local out_dir = tmp .. "_pbt_parallel"
local file_case
do
  local base
  for _, c in ipairs(cases2) do
    if c.n == 1024 and c.sync and c.rule == rules[1] then base = c end
  end
  local per, wall = {}, {}
  for k = 1, REPS2 do
    local dir = out_dir .. "_" .. k
    local dt, reports = overhead_run(base.n, base.sync, base.rule, base.steps, dir)
    per[k], wall[k] = dt / reports * 1e6, dt
    if k == 1 then
      file_case = { bytes = tonumber(sh("du -sb '" .. dir .. "' 2>/dev/null"):match("^(%d+)")) or 0,
        files = tonumber((sh("ls '" .. dir .. "' | wc -l"):gsub("%s", ""))) or 0 }
    end
    os.execute("rm -rf '" .. dir .. "'")
  end
  file_case.base, file_case.per, file_case.wall = base, per, wall
end

header("Decision overhead of the runner (one worker, this Lua state)",
  blas_note .. " (no BLAS call in this part)")
print(("Inline experiment: step sets state.s = g:uniform() (the member's generator), eval returns "
  .. "state.s, ready = pbt.ready.every(1), one hyperparameter (lr, loguniform), explore "
  .. "perturb_or_resample. Microseconds of e:run per member-step (report event), budget steps "
  .. "calibrated for about %.1f s a case; median of %d run(s) (min-max in brackets). "
  .. "'result' is the part spent turning the event log into result.events at the end of the run "
  .. "(measured again on the returned store); 'exploits' is the share of ready decisions that "
  .. "copied a donor. Target: under 10 us per member-step at 1024 members.")
  :format(TARGET_S, REPS2))
print()
print("| members | mode | exploit | steps | member-steps | exploits | wall (s) | "
  .. "us / member-step | of which result | < 10 us |")
print("|--------:|------|---------|------:|-------------:|---------:|---------:|-----------------:|"
  .. "----------------:|:-------:|")
for _, c in ipairs(cases2) do
  local m = median(c.per)
  local s = sorted(c.per)
  local meets = m < 10 and "yes" or "NO"
  if c.n ~= 1024 then meets = meets .. " (not a target row)" end
  print(("| %d | %s | %s | %d | %d | %.0f %% | %.2f | %.2f [%.2f-%.2f] | %.2f | %s |"):format(c.n,
    c.sync and "sync" or "async", c.rule.name, c.steps, c.reports, 100 * c.share, median(c.wall),
    m, s[1], s[#s], median(c.rebuild), meets))
end
do
  local b, m = file_case.base, median(file_case.per)
  print(("| %d | %s, out = /tmp dir | %s | %d | %d | %.0f %% | %.2f | %.2f | - | %s |"):format(b.n,
    "sync", b.rule.name, b.steps, b.reports, 100 * b.share, median(file_case.wall), m,
    m < 10 and "yes" or "NO"))
  print()
  print(("The last row writes the run's files (%d files, %s: events.jsonl, scores.csv, "
    .. "schedule.json, best.pbt, SVGs) to a directory under /tmp, removed afterwards; it costs "
    .. "%.2f us per member-step more than the same case without files.")
    :format(file_case.files, mb(file_case.bytes), m - median(b.per)))
  print()
end

-- (3) -------------------------------------------------------------------------------------------
io.stderr:write("parallel: (3) exploit against memcpy...\n")
local population = require("pbt.population")
local worker_mod = require("pbt.worker")
local nn, optim = pbt.nn, pbt.optim

local function mlp_state(seed)
  local g = pbt.Generator(seed)
  local model = nn.Sequential(nn.Linear(784, 100, { generator = g }), nn.ReLU(),
    nn.Linear(100, 60, { generator = g }), nn.ReLU(), nn.Linear(60, 10, { generator = g }))
  local opt = optim.SGD(model:parameters(), { lr = 0.05, momentum = 0.9 })
  -- one step, so that the momentum buffers exist
  local x = pbt.tensor.zeros(32, 784)
  local y = pbt.tensor.ones(32) -- class labels are 1-based
  opt:zero_grad()
  nn.cross_entropy(model(x), y):backward()
  opt:step()
  return { model = model, opt = opt }
end

local function exploit_bench(rounds, reps)
  -- the store as pbt.scheduler makes it: worker.parts of init's state, each
  -- tensor cloned into a store-owned buffer, the numbers set as numbers
  local pop = population.new{ size = 2, hparams = {}, window = 10 }
  local params, ntensors
  for i = 1, 2 do
    local state = mlp_state(i)
    local parts = worker_mod.parts(state)
    for _, p in ipairs(parts.tensors) do pop:set_state(i, p.name, p.tensor:clone()) end
    for k, x in ipairs(worker_mod.read_values(parts.values, {})) do
      pop:set_state(i, parts.values[k].name, x)
    end
    pop:schedule_mark(i)
    if i == 1 then
      params = 0
      for _, p in ipairs(state.model:parameters()) do params = params + p:numel() end
      ntensors = #parts.tensors
    end
  end
  local bytes = pop:state_bytes(1)
  local best_e, best_m = math.huge, math.huge
  local function side_exploit()
    for _ = 1, reps do
      local t0 = clock()
      pop:exploit(2, 1)
      local dt = clock() - t0
      if dt < best_e then best_e = dt end
    end
  end
  local function side_memcpy()
    local m = memcpy.best(bytes, reps)
    if m >= 0 and m < best_m then best_m = m end
  end
  for r = 1, rounds do
    if r % 2 == 1 then side_exploit(); side_memcpy() else side_memcpy(); side_exploit() end
  end
  return { params = params, tensors = ntensors, bytes = bytes, exploit = best_e, memcpy = best_m,
    values = #pop:state_names(1) - ntensors }
end

local R3, REPS3 = quick and 4 or 20, quick and 50 or 200
local x = exploit_bench(R3, REPS3)
header("Exploit of an 85k-parameter MLP against memcpy",
  blas_note .. " (no BLAS call in the timed part)")
print(("Model: MLP 784-100-60-10 (%d parameters) with SGD (momentum 0.9, after one step); "
  .. "the store "
  .. "holds %d tensors and %d numbers per member (%s of tensors, pop:state_bytes(1)), "
  .. "registered as pbt.scheduler does (worker.parts, set_state of clones). Fastest of %d calls "
  .. "per round, %d rounds, sides alternating (exploit first in odd rounds). Reference: "
  .. "memcpy.best(state_bytes, %d). Target: exploit / memcpy <= 1.5.")
  :format(x.params, x.tensors, x.values, mb(x.bytes), REPS3, R3, REPS3))
print()
print("| state bytes | pop:exploit(2, 1) | memcpy | exploit / memcpy | <= 1.5 |")
print("|------------:|------------------:|-------:|-----------------:|:------:|")
print(("| %d | %.2f us (%.2f GB/s) | %.2f us (%.2f GB/s) | %.2f | %s |"):format(x.bytes,
  x.exploit * 1e6, x.bytes / x.exploit / 1e9, x.memcpy * 1e6, x.bytes / x.memcpy / 1e9,
  x.exploit / x.memcpy, x.exploit / x.memcpy <= 1.5 and "yes" or "NO"))
print()

-- (4) -------------------------------------------------------------------------------------------
header("Peak memory of the Fashion-MNIST runs", blas_run_note)
local data_bytes = any.data
print(("VmHWM (peak resident set) and VmRSS of the child processes of the first table, read in "
  .. "the child after data loading (and a full garbage collection) and at its end; median over "
  .. "the %d run(s) of each case. Data set (x_train, y_train, x_val, y_val, test.x, test.y as "
  .. "loaded by the example through pbt.shared): %d bytes (%s). The peak after load includes "
  .. "the loader's transient copies (the full training set before the validation split); "
  .. "'storage cache' is core.allocator_stats().cached_bytes of the child's main Lua state after "
  .. "loading: freed storages kept for reuse, resident.")
  :format(ROUNDS, data_bytes, mb(data_bytes)))
print()
print("| mode | workers | VmRSS after load | of which storage cache | VmHWM after load | "
  .. "VmHWM at end | VmRSS at end | end peak - load peak |")
print("|------|--------:|-----------------:|-----------------------:|-----------------:|"
  .. "-------------:|-------------:|---------------------:|")
local hwm_end = {}
for _, mode in ipairs(cases) do
  for w = 1, 2 do
    local rl = median(field(runs[mode][w], "rss_load"))
    local l = median(field(runs[mode][w], "hwm_load"))
    local h = median(field(runs[mode][w], "hwm_end"))
    local s = median(field(runs[mode][w], "rss_end"))
    hwm_end[mode .. w] = h
    local c = median(field(runs[mode][w], "cache_load"))
    print(("| %s | %d | %s | %s | %s | %s | %s | %s |"):format(mode, w, mb(rl), mb(c), mb(l), mb(h),
      mb(s), mb(h - l)))
  end
end
print()
for _, mode in ipairs(cases) do
  local d = hwm_end[mode .. 2] - hwm_end[mode .. 1]
  print(("%s: peak with 2 workers - peak with 1 worker = %s, against a data set of %s: the data "
    .. "set is %s."):format(mode, mb(d), mb(data_bytes),
    d < data_bytes / 2 and "held once (the second worker's Lua state reads the same storages)"
      or "NOT held once"))
end
