-- bench/durable.lua -- what the run's store (out/run.db: SQLite, WAL,
-- synchronous=FULL, a checkpoint transaction after each synchronous
-- generation and each asynchronous decision) costs.
--
--   lua5.4 bench/durable.lua [--quick]        (from the repository root, after make)
--
-- (1) examples/fashion_pbt.lua (8 members, PBT on, seed 1, 16 steps; --quick:
--     4), 2 workers, synchronous, with a run directory (out = a fresh
--     directory under /tmp, overwrite = true) and without (no out).  Each
--     measured run is a child process (this file with --child) with
--     PBT_STEPS in its environment: it loads the experiment (not timed),
--     times e:run only and prints its figures.  The two sides alternate,
--     their order rotated: round r runs without then with when r is odd, with
--     then without when r is even; the ratio time-with / time-without is
--     taken within a round.  Figures are min / median / max over the rounds.
--     Five rounds (--quick: one).  The child of the 'with' side wraps its
--     store's checkpoint and close (one instance's methods, through
--     pbt.runstore.create) to count the checkpoints, time them and read the
--     WAL's size after each; after e:run (not timed) it reads run.db back
--     (pbt.runstore.open, which runs SQLite's integrity check, and
--     store:load) and compares its events with result.events.
-- (2) One store:checkpoint(pop, {1}, {0}, {}, {}) of a member holding an MLP
--     784-1024-192-10 (1,002,570 parameters) and its SGD momentum buffers
--     (after one step), registered in a population store as pbt.scheduler
--     does (worker.parts, set_state of clones), in a fresh store
--     (pbt.runstore.create(dir, {})) under /tmp, against build/fsync_write
--     (bench/fsync_write.c, compiled here when missing) writing the encoded
--     blob's byte count to a file in the same directory with write + fsync:
--     overwriting the file in place (the floor) and, as a second reference,
--     truncating and writing it again.  Plus the parts of a checkpoint: the
--     pbt.encode of the state and the record alone (no I/O), and SQLite
--     alone (the same INSERT OR REPLACE with the blobs encoded beforehand).
--     Rounds of N calls per side, the sides' order rotated each round;
--     fastest and median of all calls on each side.
-- (3) The time per ready decision with the store: an inline experiment whose
--     step draws one number from the member's generator into state.s (plus a
--     zeros(256) tensor in the state, so that a checkpoint has some bytes),
--     eval returns state.s, ready every 4 steps, truncation 0.25, 8 and 64
--     members, sync and async, one worker (this Lua state), with out (a
--     directory under /tmp, overwrite = true) and without.  Microseconds of
--     e:run per member-step (report event); 128 steps in every case (a
--     member's record, written whole by each checkpoint, grows with the
--     steps); the sides alternate over rounds, their order rotated; median
--     of 5 rounds (--quick: 1).  The store's checkpoints are counted and
--     timed as in (1).
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local pbt = require("pbt")
local core = pbt.core
local clock = pbt.clock
local runstore = require("pbt.runstore")

local EXAMPLE = "examples/fashion_pbt.lua"
local FSYNC_WRITE = "build/fsync_write"

-- ---- helpers ------------------------------------------------------------------------------

local common = dofile("bench/common.lua")
local sorted, median, min_med_max = common.sorted, common.median, common.min_med_max
local sh, file_size = common.sh, common.file_size
local function mb(bytes) return ("%.2f MB"):format(bytes / 1e6) end

-- the files of a directory and their total bytes
local function dir_files(dir)
  local names, bytes = {}, 0
  for name in sh("ls -A '" .. dir .. "' 2>/dev/null"):gmatch("[^\n]+") do
    names[#names + 1] = name
    bytes = bytes + (file_size(dir .. "/" .. name) or 0)
  end
  return names, bytes
end

-- The CPU that other processes used over a stretch of this process's time:
-- meter() starts it, and the function it returns gives the cores used by
-- everything but this process (the machine's busy time in /proc/stat minus
-- this process's CPU time, os.clock, all its threads), per second of wall
-- time (and the two: CPU seconds, wall seconds).  Resolution: a jiffy (10 ms)
-- of the machine's counters.  The kernel's own work for this process's I/O
-- (journal and writeback threads) counts as another process's.
local function busy_seconds()
  local f = io.open("/proc/stat")
  if not f then return nil end
  local l = f:read("l")
  f:close()
  local v = {}
  for x in l:gmatch("%d+") do v[#v + 1] = tonumber(x) end
  -- user nice system idle iowait irq softirq steal
  return (v[1] + v[2] + v[3] + v[6] + v[7] + (v[8] or 0)) / 100
end
local function meter()
  local b0, c0, t0 = busy_seconds(), os.clock(), clock()
  return function()
    local b1, c1, t1 = busy_seconds(), os.clock(), clock()
    if not b0 or not b1 then return 0 / 0, 0 / 0, t1 - t0 end
    local foreign = math.max(0, (b1 - b0) - (c1 - c0))
    return foreign / (t1 - t0), foreign, t1 - t0
  end
end

-- Counts, times and sizes the checkpoints of the stores made from now on:
-- pbt.runstore.create is wrapped so that each new store's checkpoint and
-- close (fields of that instance, shadowing the methods) record into
-- `stats`.  The WAL's size is read after each checkpoint, outside its timed
-- part.  Returns stats and a function that undoes the wrapping.
local function watch_stores()
  local stats = { creates = 0, create_s = 0, n = 0, seconds = 0, times = {}, wal_max = 0,
    close_s = 0, wal_before_close = 0 }
  local create = runstore.create
  local wrap
  -- (the run's first checkpoint is written inside create, in the run's own
  -- transaction: first(s) runs once s is wrapped, and its time counts as a
  -- checkpoint's, not as create's)
  runstore.create = function(dir, meta, first)
    local t0, before = clock(), stats.seconds
    local s = create(dir, meta, function(s)
      wrap(s, dir)
      if first then first(s) end
    end)
    stats.creates = stats.creates + 1
    stats.create_s = stats.create_s + (clock() - t0) - (stats.seconds - before)
    return s
  end
  wrap = function(s, dir)
    local checkpoint, close = s.checkpoint, s.close
    local wal = runstore.path(dir) .. "-wal"
    s.checkpoint = function(self, pop, ...)
      local t1 = clock()
      checkpoint(self, pop, ...)
      local dt = clock() - t1
      -- the population, for the size of a member's record after the run;
      -- the size at the first checkpoint (one encode, outside the timed part)
      stats.pop = pop
      if not stats.record_first then stats.record_first = #pbt.encode(pop:record(1)) end
      stats.n, stats.seconds = stats.n + 1, stats.seconds + dt
      stats.times[#stats.times + 1] = dt
      local w = file_size(wal) or 0
      if w > stats.wal_max then stats.wal_max = w end
      return nil
    end
    s.close = function(self)
      stats.wal_before_close = file_size(wal) or 0
      local t1 = clock()
      close(self)
      stats.close_s = stats.close_s + clock() - t1
    end
  end
  return stats, function() runstore.create = create end
end

-- ---- (1), the child side --------------------------------------------------------------------

local function child(side, dir, seed)
  local t0 = clock()
  local e = pbt.load_experiment(EXAMPLE, { pbt = true, seed = seed })
  local load_s = clock() - t0
  local stats = watch_stores()
  e.sync = true
  collectgarbage()
  collectgarbage()
  local opts = { workers = 2, progress = false }
  if side == "with" then opts.out, opts.overwrite = dir, true end
  local others = meter()
  local t1 = clock()
  local r = e:run(opts)
  local run_s = clock() - t1
  local other_cores = others()

  local reports = 0
  for _, ev in ipairs(r.events) do if ev.kind == "report" then reports = reports + 1 end end
  local db_bytes, wal_end, files, dir_bytes, db_events, db_members, same_events = -1, -1, 0, -1,
    -1, -1, "n/a"
  if side == "with" then
    db_bytes = file_size(runstore.path(dir)) or -1
    wal_end = file_size(runstore.path(dir) .. "-wal") or 0
    local names
    names, dir_bytes = dir_files(dir)
    files = #names
    -- read back: integrity check, every member, the events as the result has them
    local s = runstore.open(dir)
    local saved = s:load()
    s:close()
    db_events = #saved.events
    db_members = 0
    for _ in pairs(saved.members) do db_members = db_members + 1 end
    same_events = "yes"
    if #saved.events ~= #r.events then same_events = "no" end
    for k = 1, math.min(#saved.events, #r.events) do
      local a, b = saved.events[k], r.events[k]
      if a.kind ~= b.kind or a.member ~= b.member or a.step ~= b.step then
        same_events = ("no(first difference at event %d)"):format(k)
        break
      end
    end
  end
  print(("RESULT load=%.6f run=%.6f reports=%d events=%d best=%.17g ckpts=%d ckpt_s=%.6f "
    .. "ckpt_max=%.6f create_s=%.6f close_s=%.6f wal_max=%d wal_close=%d wal_end=%d db=%d "
    .. "files=%d dir=%d db_events=%d db_members=%d same_events=%s others=%.3f")
    :format(load_s, run_s, reports, #r.events, r.best.score, stats.n, stats.seconds,
      #stats.times > 0 and sorted(stats.times)[#stats.times] or 0, stats.create_s, stats.close_s,
      stats.wal_max, stats.wal_before_close, wal_end, db_bytes, files, dir_bytes, db_events,
      db_members, same_events, other_cores))
end

if arg[1] == "--child" then
  child(arg[2], arg[3], tonumber(arg[4]))
  os.exit(0)
end

-- ---- the parent -------------------------------------------------------------------------------

local quick = common.quick_flag("durable.lua")
local command, date, nproc = common.provenance()
local fs = sh("df -T /tmp 2>/dev/null | awk 'NR == 2 { print $2 }'"):gsub("%s+$", "")
local blas_env = os.getenv("OPENBLAS_NUM_THREADS")
local blas_note = ("OPENBLAS_NUM_THREADS=%s (OpenBLAS's own count: %d)"):format(
  blas_env or "unset", core.threads.blas_threads())

local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local l = f:read("l")
  f:close()
  return l:match("^(%S+)") or "?"
end

local function header(title)
  print("## " .. title)
  print()
  print(("Command: `%s`; %s; nproc %s; /tmp on %s; %s."):format(command, date, nproc,
    fs ~= "" and fs or "?", blas_note))
  print()
end

-- every directory this run makes is under this prefix, removed at the end
local tmp = os.tmpname()
os.remove(tmp)
local PREFIX = tmp .. "_pbt_durable"
local made = {}
local function fresh_dir(name)
  local dir = PREFIX .. "_" .. name
  os.execute("rm -rf '" .. dir .. "'")
  made[#made + 1] = dir
  return dir
end
local function remove_dirs()
  for _, dir in ipairs(made) do os.execute("rm -rf '" .. dir .. "'") end
end

local function main()
  -- (1) -----------------------------------------------------------------------------------------
  local STEPS = quick and 4 or 16
  local ROUNDS = quick and 1 or 5
  local SEED = 1

  local function run_child(side, r)
    local dir = fresh_dir("fashion_" .. r)
    local cmd = ("PBT_STEPS=%d lua5.4 %s --child %s '%s' %d 2>&1"):format(STEPS, arg[0], side,
      dir, SEED)
    local out = sh(cmd)
    os.execute("rm -rf '" .. dir .. "'")
    local line = out:match("RESULT ([^\n]*)")
    if not line then error(("child failed: %s\n%s"):format(cmd, out), 0) end
    local t = {}
    for k, v in line:gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
    return t
  end

  io.stderr:write(("durable: (1) Fashion-MNIST, %d round(s) of 2 runs...\n"):format(ROUNDS))
  local load_before = loadavg()
  local runs = { with = {}, without = {} }
  local ratios, same_best = {}, 0
  for r = 1, ROUNDS do
    local order = r % 2 == 1 and { "without", "with" } or { "with", "without" }
    local got = {}
    for _, side in ipairs(order) do
      got[side] = run_child(side, r)
      table.insert(runs[side], got[side])
      io.stderr:write(("  round %d %s out: %.2f s (other processes: %.2f cores)\n"):format(r, side,
        got[side].run, got[side].others))
    end
    ratios[#ratios + 1] = got.with.run / got.without.run
    if got.with.best == got.without.best then same_best = same_best + 1 end
  end
  local load_after = loadavg()

  local function field(list, f)
    local out = {}
    for k, t in ipairs(list) do out[k] = t[f] end
    return out
  end

  header("Fashion-MNIST example with and without a run directory")
  local w1 = runs.with[1]
  print(("examples/fashion_pbt.lua loaded with pbt.load_experiment(path, {pbt = true, seed = %d}), "
    .. "8 members, PBT_STEPS=%d (%d member-steps a run), ready every 2 steps, 2 workers, sync. "
    .. "Each run is a child process; only e:run is timed. 'with out': out = a fresh directory under "
    .. "/tmp, overwrite = true (run.db and the reporter's files); 'without': no out. %d round(s), "
    .. "the sides' order rotated; min / median / max over the rounds. 1-minute load average "
    .. "before / after: %s / %s; 'other processes' is the machine's busy time (/proc/stat) minus the "
    .. "child's own CPU time during e:run, per second (the kernel's journal and writeback work for "
    .. "the run's writes counts in it): much above 0.05 means another process shared the %s "
    .. "cores. Target: with / without <= 1.05.")
    :format(SEED, STEPS, 8 * STEPS, ROUNDS, load_before, load_after, nproc))
  print()
  print("| without out, e:run (s) | with out, e:run (s) | with / without | <= 1.05 (median) | "
    .. "other processes during e:run, without / with (cores, median) |")
  print("|-----------------------:|--------------------:|---------------:|:----------------:|"
    .. "----------------------:|")
  print(("| %s | %s | %s | %s | %.2f / %.2f |"):format(min_med_max(field(runs.without, "run"), "%.2f"),
    min_med_max(field(runs.with, "run"), "%.2f"), min_med_max(ratios, "%.3f"),
    median(ratios) <= 1.05 and "yes" or "NO", median(field(runs.without, "others")),
    median(field(runs.with, "others"))))
  print()
  local ckpt_share = {}
  for k, t in ipairs(runs.with) do ckpt_share[k] = 100 * t.ckpt_s / t.run end
  print("| checkpoints per run | in checkpoints (s) | slowest checkpoint (s) | share of e:run | "
    .. "create + close (s) | run.db at end | WAL: largest after a checkpoint | WAL before close | "
    .. "WAL at end | directory (files) |")
  print("|--------------------:|-------------------:|-----------------------:|--------------:|"
    .. "-------------------:|--------------:|--------------------------------:|----------------:|"
    .. "-----------:|------------------:|")
  local cc = {}
  for k, t in ipairs(runs.with) do cc[k] = t.create_s + t.close_s end
  print(("| %d | %s | %s | %s %% | %s | %s | %s | %s | %s | %s (%d) |"):format(w1.ckpts,
    min_med_max(field(runs.with, "ckpt_s"), "%.3f"), min_med_max(field(runs.with, "ckpt_max"), "%.3f"),
    min_med_max(ckpt_share, "%.1f"), min_med_max(cc, "%.3f"), mb(median(field(runs.with, "db"))),
    mb(median(field(runs.with, "wal_max"))), mb(median(field(runs.with, "wal_close"))),
    w1.wal_end == 0 and "none (removed by close)" or mb(w1.wal_end), mb(median(field(runs.with, "dir"))),
    w1.files))
  print()
  do
    local d, extra = {}, {}
    for k, t in ipairs(runs.with) do
      d[k] = t.run - runs.without[k].run
      extra[k] = d[k] - t.ckpt_s - t.create_s - t.close_s
    end
    print(("e:run with out - without, same round: %s s; of it not in the store's checkpoints, "
      .. "create or close (the reporter's files, run-to-run noise): %s s (min / median / max).")
      :format(min_med_max(d, "%.3f"), min_med_max(extra, "%.3f")))
    print()
  end
  local same_ev = 0
  for _, t in ipairs(runs.with) do if t.same_events == "yes" then same_ev = same_ev + 1 end end
  print(("Read back after each run (not timed): pbt.runstore.open (SQLite's integrity check) and "
    .. "store:load: %d members, %d events in run.db against %d in result.events; the events agree "
    .. "(kind, member, step, in order) in %d of %d run(s). The best validation score with out equals "
    .. "the one without in %d of %d round(s). Checkpoints: counted on the store's checkpoint "
    .. "(the one after the store is made, one per generation, one at the end).")
    :format(w1.db_members, w1.db_events, w1.events, same_ev, #runs.with, same_best, ROUNDS))
  print()

  -- (2) -----------------------------------------------------------------------------------------
  io.stderr:write("durable: (2) a 1M-parameter checkpoint against write + fsync...\n")
  if not file_size(FSYNC_WRITE) then
    local cmd = "cc -O2 -o " .. FSYNC_WRITE .. " bench/fsync_write.c"
    io.stderr:write("  " .. cmd .. "\n")
    if not os.execute(cmd) then error("cannot compile bench/fsync_write.c", 0) end
  end
  local population = require("pbt.population")
  local worker_mod = require("pbt.worker")
  local nn, optim = pbt.nn, pbt.optim
  local sql = core.sql

  local g = pbt.Generator(1)
  local model = nn.Sequential(nn.Linear(784, 1024, { generator = g }), nn.ReLU(),
    nn.Linear(1024, 192, { generator = g }), nn.ReLU(), nn.Linear(192, 10, { generator = g }))
  local opt = optim.SGD(model:parameters(), { lr = 0.05, momentum = 0.9 })
  do -- one step, so that the momentum buffers exist
    local x, y = pbt.tensor.zeros(32, 784), pbt.tensor.ones(32)
    opt:zero_grad()
    nn.cross_entropy(model(x), y):backward()
    opt:step()
  end
  local params = 0
  for _, p in ipairs(model:parameters()) do params = params + p:numel() end
  local pop = population.new{ size = 1, hparams = {}, window = 10 }
  local parts = worker_mod.parts({ model = model, opt = opt })
  for _, p in ipairs(parts.tensors) do pop:set_state(1, p.name, p.tensor:clone()) end
  for k, x in ipairs(worker_mod.read_values(parts.values, {})) do
    pop:set_state(1, parts.values[k].name, x)
  end
  pop:schedule_mark(1)
  -- the state as runstore encodes it
  local function state_value()
    local v = { tensors = {}, numbers = {} }
    for _, name in ipairs(pop:state_names(1)) do
      local x = pop:get_state(1, name)
      if type(x) == "number" then v.numbers[name] = x else v.tensors[name] = x end
    end
    return v
  end
  local state_blob = pbt.encode(state_value())
  local record_blob = pbt.encode(pop:record(1))
  local blob_bytes = #state_blob

  local dir2 = fresh_dir("checkpoint")
  core.mkdir(dir2)
  local store = runstore.create(dir2, {})
  local since = { 0 }
  local ROUNDS2, N2 = quick and 3 or 8, quick and 3 or 5
  local sides = {}
  local function side(name, fn) sides[#sides + 1] = { name = name, fn = fn, times = {} } end
  side("store:checkpoint", function(times)
    for _ = 1, N2 do
      local t0 = clock()
      store:checkpoint(pop, { 1 }, since, {}, {})
      times[#times + 1] = clock() - t0
    end
  end)
  local function c_side(mode)
    return function(times)
      local path = dir2 .. "/fsync_" .. mode
      local out = sh(("%s '%s' %d %d %s 2>&1"):format(FSYNC_WRITE, path, blob_bytes, N2, mode))
      os.remove(path)
      local line = out:match("TIMES ([^\n]*)")
      if not line then error("fsync_write failed: " .. out, 0) end
      for v in line:gmatch("%S+") do times[#times + 1] = tonumber(v) end
    end
  end
  side("fsync_write overwrite", c_side("overwrite"))
  side("fsync_write truncate", c_side("truncate"))
  side("encode only", function(times)
    for _ = 1, N2 do
      local t0 = clock()
      local _, _ = pbt.encode(pop:record(1)), pbt.encode(state_value())
      times[#times + 1] = clock() - t0
    end
  end)
  side("SQLite only", function(times)
    local db, blob = store.db, sql.blob
    for _ = 1, N2 do
      local t0 = clock()
      db:transaction(function()
        db:exec("INSERT OR REPLACE INTO members (run, member, record, state, since) VALUES (?, ?, ?, ?, ?)",
          store.run, 1, blob(record_blob), blob(state_blob), 0)
      end)
      times[#times + 1] = clock() - t0
    end
  end)
  -- one call of each side before the rounds: the files reach their size
  do
    local warm = {}
    for _, s in ipairs(sides) do s.fn(warm) end
  end
  local others2 = meter()
  for r = 1, ROUNDS2 do
    for k = 0, #sides - 1 do
      local s = sides[(r + k - 1) % #sides + 1]
      s.fn(s.times)
      collectgarbage()
    end
  end
  local other_cores2 = others2()
  local db_size = file_size(runstore.path(dir2)) or 0
  local wal_size = file_size(runstore.path(dir2) .. "-wal") or 0
  store:close()
  local db_after_close = file_size(runstore.path(dir2)) or 0

  header("One checkpoint of a 1M-parameter member against write + fsync")
  print(("Model: MLP 784-1024-192-10 (%d parameters) with SGD (momentum 0.9, after one step): "
    .. "%d tensors and %d numbers in the population store (pop:state_bytes(1) = %d bytes), "
    .. "registered as pbt.scheduler does. Encoded state blob: %d bytes, record blob: %d bytes. "
    .. "store = pbt.runstore.create(dir, {}) under /tmp; timed: store:checkpoint(pop, {1}, {0}, "
    .. "{}, {}). Reference: %s writing %d bytes (the state blob's size) to a file in the same "
    .. "directory, write + fsync per call, 'overwrite' rewriting the file in place, 'truncate' "
    .. "opening it with O_TRUNC each call. One warm-up call per side, then %d rounds of %d "
    .. "calls per side, the sides' order rotated each round; fastest and median of the %d calls.")
    :format(params, #parts.tensors, #parts.values, pop:state_bytes(1), blob_bytes, #record_blob,
      FSYNC_WRITE, blob_bytes, ROUNDS2, N2, ROUNDS2 * N2))
  print()
  local base = sides[2]
  local bmin, bmed = sorted(base.times)[1], median(base.times)
  print("| side | fastest (ms) | median (ms) | fastest, MB/s | ratio to write + fsync in place "
    .. "(fastest / median) |")
  print("|------|-------------:|------------:|--------------:|--------------------------------:|")
  for _, s in ipairs(sides) do
    local smin, smed = sorted(s.times)[1], median(s.times)
    print(("| %s | %.2f | %.2f | %.0f | %.2f / %.2f |"):format(s.name, smin * 1e3, smed * 1e3,
      blob_bytes / smin / 1e6, smin / bmin, smed / bmed))
  end
  print()
  print(("'encode only' is pbt.encode of the record and of the state (no I/O); 'SQLite only' is "
    .. "the checkpoint's INSERT OR REPLACE of the member in a transaction with both blobs encoded "
    .. "beforehand. Files after the %d writes of the member (checkpoints and SQLite-only inserts, "
    .. "warm-ups included): run.db %d bytes (%.2f x the state blob), run.db-wal "
    .. "%d bytes; run.db after close %d bytes. Other processes during the rounds: %.2f cores.")
    :format(1 + ROUNDS2 * N2 + 1 + ROUNDS2 * N2, db_size, db_size / blob_bytes, wal_size,
      db_after_close, other_cores2))
  print()
  os.execute("rm -rf '" .. dir2 .. "'")

  -- (3) -----------------------------------------------------------------------------------------
  io.stderr:write("durable: (3) time per ready decision with the store...\n")
  local STEPS3 = 128
  local ROUNDS3 = quick and 1 or 5
  local READY = 4

  local function decision_experiment(n, sync, steps)
    return pbt.experiment{
      name = "durable", population = n, seed = 1, mode = "max", sync = sync,
      space = { lr = pbt.loguniform(1e-3, 1) },
      init = function() return { s = 0, t = pbt.tensor.zeros(256) } end,
      step = function(state, _, gen) state.s = gen:uniform() end,
      eval = function(state) return state.s end,
      ready = pbt.ready.every(READY),
      exploit = pbt.exploit.truncation{ fraction = 0.25 },
      budget = { steps = steps },
    }
  end

  local n_run = 0
  local function decision_run(n, sync, steps, with)
    local e = decision_experiment(n, sync, steps)
    local opts = { workers = 1, progress = false }
    local dir
    if with then
      n_run = n_run + 1
      dir = fresh_dir("decisions_" .. n_run)
      opts.out, opts.overwrite = dir, true
    end
    local stats, unwatch = watch_stores()
    collectgarbage()
    collectgarbage()
    local others = meter()
    local t0 = clock()
    local r = e:run(opts)
    local dt = clock() - t0
    local _, foreign, wall = others()
    unwatch()
    local count = { report = 0, ready = 0 }
    for _, ev in ipairs(r.events) do count[ev.kind] = (count[ev.kind] or 0) + 1 end
    local db = dir and file_size(runstore.path(dir)) or 0
    local record_end = stats.pop and #pbt.encode(stats.pop:record(1)) or 0
    if dir then os.execute("rm -rf '" .. dir .. "'") end
    return { s = dt, reports = count.report, ready = count.ready, best = r.best.score,
      ckpts = stats.n, ckpt_s = stats.seconds, db = db, fixed = stats.create_s + stats.close_s,
      foreign = foreign, wall = wall, record_first = stats.record_first or 0,
      record_end = record_end }
  end

  -- the same steps in every case: a member's record (and so a checkpoint)
  -- grows with the steps run, so only rows at the same steps compare
  local cases3 = {}
  for _, n in ipairs({ 8, 64 }) do
    for _, sync in ipairs({ true, false }) do
      cases3[#cases3 + 1] = { n = n, sync = sync, steps = STEPS3,
        runs = { with = {}, without = {} } }
    end
  end
  for r = 1, ROUNDS3 do
    for _, c in ipairs(cases3) do
      local order = r % 2 == 1 and { false, true } or { true, false }
      for _, with in ipairs(order) do
        local t = decision_run(c.n, c.sync, c.steps, with)
        table.insert(c.runs[with and "with" or "without"], t)
      end
    end
  end

  header("Time per ready decision with the store (one worker, this Lua state)")
  print(("Inline experiment: step sets state.s = g:uniform(), the state also holds a zeros(256) "
    .. "float32 tensor, eval returns state.s, ready = pbt.ready.every(%d), truncation 0.25, "
    .. "explore perturb_or_resample, budget %d steps (%d decisions per member). Microseconds of e:run "
    .. "per member-step (report event); 'with out' writes run.db and "
    .. "the reporter's files to a fresh directory under /tmp (overwrite = true). Median of %d "
    .. "round(s) [min-max], the sides' order rotated. Checkpoints: calls of the store's "
    .. "checkpoint in a run with out, and their median time; 'store fixed' is "
    .. "runstore.create + store:close per run (its schema, the WAL's last checkpoint).")
    :format(READY, STEPS3, STEPS3 // READY, ROUNDS3))
  print()
  print("| members | mode | steps | member-steps | ready decisions | without out, us / member-step "
    .. "| with out, us / member-step | difference, us / member-step (in checkpoints) | difference per decision "
    .. "(us) | checkpoints | ms / checkpoint | member 1's record, first / last checkpoint (bytes) "
    .. "| store fixed (ms) | run.db | same best | others |")
  print("|--------:|------|------:|-------------:|----------------:|------------------------------:|"
    .. "---------------------------:|-----------------------------:|--------------------------:|"
    .. "------------:|----------------:|-------------------------------------------------:|"
    .. "-----------------:|-------:|:---------:|-------:|")
  for _, c in ipairs(cases3) do
    local per = { with = {}, without = {} }
    for side, list in pairs(c.runs) do
      for k, t in ipairs(list) do per[side][k] = t.s / t.reports * 1e6 end
    end
    local ms_ckpt, fixed, same, in_ckpt = {}, {}, 0, {}
    for k, t in ipairs(c.runs.with) do
      ms_ckpt[k] = t.ckpt_s / t.ckpts * 1e3
      fixed[k] = t.fixed * 1e3
      in_ckpt[k] = t.ckpt_s / t.reports * 1e6
      if t.best == c.runs.without[k].best then same = same + 1 end
    end
    local fsum, wsum = 0, 0
    for _, list in pairs(c.runs) do
      for _, t in ipairs(list) do fsum, wsum = fsum + t.foreign, wsum + t.wall end
    end
    local any = c.runs.with[1]
    local sw, sn = sorted(per.with), sorted(per.without)
    local diff = median(per.with) - median(per.without)
    print(("| %d | %s | %d | %d | %d | %.2f [%.2f-%.2f] | %.1f [%.1f-%.1f] | %.1f (%.1f) | %.0f | %d | "
      .. "%.3f | %d / %d | %.1f | %s | %d/%d | %.2f |")
      :format(c.n, c.sync and "sync" or "async", c.steps, any.reports, any.ready,
        median(per.without), sn[1], sn[#sn], median(per.with), sw[1], sw[#sw], diff, median(in_ckpt),
        diff * any.reports / any.ready, any.ckpts, median(ms_ckpt), any.record_first,
        any.record_end, median(fixed), mb(any.db),
        same, #c.runs.with, fsum / wsum))
  end
  print()
  print("'difference per decision' = the difference per member-step x member-steps / ready "
    .. "decisions. A checkpoint writes each member's whole record (pop:record, pbt.encode'd: "
    .. "its curve and history included), so the time of a checkpoint grows with the steps run: "
    .. "every row here runs the same steps. 'same best': rounds in which the best score with out "
    .. "equals the one without. "
    .. "'others': cores used by other processes during e:run (their CPU seconds over the wall "
    .. "seconds of all runs of the case, both sides; the kernel's journal and writeback work for "
    .. "this process's writes counts in it).")
end

local ok, err = xpcall(main, debug.traceback)
remove_dirs()
if not ok then
  io.stderr:write(tostring(err) .. "\n")
  os.exit(1)
end
