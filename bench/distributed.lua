-- bench/distributed.lua -- what training one population with worker
-- processes over a shared run store (pbt.cluster, `pbt worker`) costs.
--
--   lua5.4 bench/distributed.lua [--quick]     (from the repository root, after make)
--
-- A PostgreSQL server of its own (spec/helper.lua's postgres_server: initdb
-- and pg_ctl in a directory under /tmp, a Unix socket, the server's default
-- settings, so fsync on) serves every part; it is stopped and removed at the
-- end, also after an error.
--
-- (1) examples/fashion_pbt.lua (8 members, PBT on, seed 1, PBT_STEPS=16;
--     --quick: 4), asynchronous and synchronous (the file says sync = true;
--     the children set e.sync before running).  Side A: one child process
--     (this file with --child-a) runs e:run{workers = 2} in memory.  Side B:
--     two child processes (this file with --child-b) each run one worker
--     exactly as `pbt worker FILE --store URL --run NAME --quiet` does it
--     (OpenBLAS on one thread, pbt.cluster.work(e, {store, run, quiet}))
--     on the PostgreSQL server, a fresh run name per round; the first to get
--     there makes the run.  Every child loads the experiment with
--     pbt.load_experiment(path, {pbt = true, seed = 1}) (the data set, not
--     timed), says so on its stdout and waits for a 'go' file; the parent
--     creates it once every child of the side has loaded and notes the
--     time (CLOCK_MONOTONIC, which every process shares).  Timed: from 'go'
--     until the last child of the side returns from e:run / cluster.work.
--     Also shown: end to end, from starting the processes until the last
--     exits (Lua's start, loading the data, the wait for 'go').  Member-steps
--     = report events: result.events (A), the store's events table (B).
--     The sides alternate, their order rotated (round r: A then B when r is
--     odd, B then A when even); the ratio B / A of member-steps per second is
--     taken within a round; min / median / max over the rounds.  Five rounds
--     (--quick: one).  B's children also measure where their time goes: the
--     time inside the store's transactions (claims, finishes: a proxy of the
--     connection's db), in worker:train, and the claims that found no member
--     free (each followed by a wait, cluster.sleep), the reads of claimed
--     checkpoints; and the parent counts
--     the CPU that other processes (the server) used during each side.
-- (2) Time per decision turn: an inline experiment whose step draws one
--     number from the member's generator (eval returns it, the state also
--     holds a zeros(256) float32 tensor), ready every step, truncation 0.25,
--     explore perturb_or_resample, asynchronous and synchronous, 8 members
--     (32 steps each; --quick: 16) and 64 members (4 steps each; --quick:
--     2); one worker, pbt.cluster.work in this process, on PostgreSQL and on
--     an SQLite file (sqlite:PATH under /tmp).  The run is made first by a
--     cluster.work with max_turns = 0 (not timed); the timed cluster.work
--     joins it and works until the run is done.  Time per turn = its wall
--     time / its turns (a turn: the claim transaction, one step and eval,
--     the finish transaction with the checkpoint, the decision and the
--     lease's release).  In memory for context: e:run{workers = 1} of the
--     same experiment, per member-step (report event).  Median of 3 runs
--     [min-max] (--quick: 1).
-- (3) Checkpoint throughput: the state of an MLP 784-100-60-10 (85,170
--     float32 parameters) and of an MLP 784-1024-192-10 (1,002,570), its
--     parameters registered in a population store (worker.parts, set_state
--     of clones).  Store side: a transaction like cluster.lua's finish (the
--     run's row locked, the member's row read, then the UPDATE of members
--     SET record, state, since, owner (kept, so the next call finds it),
--     lease_until = NULL, turns = turns + 1, and of the run's next_seq;
--     no events, no decision), the record and state blobs encoded
--     inside it as finish does (runstore.record_blob, runstore.state_blob),
--     on PostgreSQL (the state column STORAGE EXTERNAL, as runstore makes
--     it), on PostgreSQL with PostgreSQL's default STORAGE EXTENDED (a copy
--     of the members table: TOAST with a pglz compression attempt) and,
--     for comparison, SQLite.  Reference: build/fsync_write
--     (bench/fsync_write.c, compiled when missing) writing the state blob's
--     byte count to a file in a directory under /tmp (the file system of
--     the server's data directory), in place, write + fsync per call.  Plus
--     encode only (no I/O).  One warm-up call per side, then rounds of N
--     calls per side, the order of the sides rotated each round; per round
--     the median of each side's calls; ratio store / fsync within a round;
--     MB/s = state blob bytes / median seconds; min / median / max over the
--     rounds.  8 rounds of 5 calls (--quick: 2 of 3).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local pbt = require("pbt")
local core = pbt.core
local clock = pbt.clock

local EXAMPLE = "examples/fashion_pbt.lua"
local FSYNC_WRITE = "build/fsync_write"
local SEED = 1

-- ---- helpers ------------------------------------------------------------------------------

local common = dofile("bench/common.lua")
local sorted, median, min_med_max, med_range = common.sorted, common.median, common.min_med_max,
  common.med_range
local sh, file_size, exists = common.sh, common.file_size, common.exists

-- sleeps in short slices
local function sleep(seconds)
  core.threads.channel():receive(seconds)
end

-- the machine's busy CPU seconds since boot (/proc/stat; a jiffy's resolution)
local function busy_seconds()
  local f = io.open("/proc/stat")
  if not f then return 0 / 0 end
  local l = f:read("l")
  f:close()
  local v = {}
  for x in l:gmatch("%d+") do v[#v + 1] = tonumber(x) end
  -- user nice system idle iowait irq softirq steal
  return (v[1] + v[2] + v[3] + v[6] + v[7] + (v[8] or 0)) / 100
end

-- the 1-minute load average
local function loadavg()
  local f = io.open("/proc/loadavg")
  if not f then return "?" end
  local l = f:read("l")
  f:close()
  return l:match("^(%S+)") or "?"
end

-- ---- (1), the children ----------------------------------------------------------------------

-- Loads the example, says so, waits for the go file; returns the experiment
-- and the seconds loading took.
local function load_and_wait(mode, go)
  local t0 = clock()
  local e = pbt.load_experiment(EXAMPLE, { pbt = true, seed = SEED })
  local load_s = clock() - t0
  e.sync = mode == "sync"
  collectgarbage()
  collectgarbage()
  io.stdout:write("LOADED\n")
  io.stdout:flush()
  while not exists(go) do sleep(0.002) end
  return e, load_s
end

local function child_a(mode, go)
  local e, load_s = load_and_wait(mode, go)
  local t0 = clock()
  local r = e:run{ workers = 2, progress = false }
  local t1 = clock()
  local reports = 0
  for _, ev in ipairs(r.events) do if ev.kind == "report" then reports = reports + 1 end end
  print(("RESULT load=%.6f t0=%.6f t1=%.6f reports=%d events=%d best=%.6f cpu=%.6f")
    :format(load_s, t0, t1, reports, #r.events, r.best.score, os.clock()))
end

-- Runs one worker as `pbt worker` does, measuring where its time goes: the
-- store's transactions (a proxy of each connection's db: a transaction that
-- returns a table is a claim, one that returns a string a finish), the
-- member's training (worker:train), the reads of claimed checkpoints and
-- the claims that found no member (each followed by a wait, cluster.sleep).
local function child_b(mode, go, url, run)
  local e, load_s = load_and_wait(mode, go)
  local cluster = require("pbt.cluster")
  local runstore = require("pbt.runstore")
  local worker_mod = require("pbt.worker")
  local m = { claim = 0, finish = 0, other = 0, claims = 0, waits = 0, train = 0, read = 0, sleep = 0 }
  local sleep = cluster.sleep
  cluster.sleep = function(t)
    local t0 = clock()
    sleep(t)
    m.sleep = m.sleep + clock() - t0
  end
  local connect = runstore.connect
  runstore.connect = function(...)
    local s = connect(...)
    local db = s.db
    s.db = setmetatable({}, { __index = function(_, k)
      local f = db[k]
      if k == "transaction" then
        return function(_, fn, ...)
          local t0 = clock()
          local res = table.pack(db:transaction(fn, ...))
          local dt, v = clock() - t0, res[1]
          if type(v) == "table" then
            m.claim, m.claims = m.claim + dt, m.claims + 1
            if v.status == "wait" then m.waits = m.waits + 1 end
          elseif type(v) == "string" then m.finish = m.finish + dt
          else m.other = m.other + dt end
          return table.unpack(res, 1, res.n)
        end
      end
      if k == "exec" then
        return function(_, q, ...)
          if q:find("^SELECT state FROM members") then
            local t0 = clock()
            local res = table.pack(db:exec(q, ...))
            m.read = m.read + clock() - t0
            return table.unpack(res, 1, res.n)
          end
          return db:exec(q, ...)
        end
      end
      return function(_, ...) return f(db, ...) end
    end })
    return s
  end
  local new = worker_mod.new
  worker_mod.new = function(...)
    local w = new(...)
    local train = w.train
    w.train = function(self, ...)
      local t0 = clock()
      local o = train(self, ...)
      m.train = m.train + clock() - t0
      return o
    end
    return w
  end
  local t0 = clock()
  -- as lua/pbt/cli.lua's worker command runs one worker
  local restore = core.threads.blas_threads(1)
  local s = cluster.work(e, { store = url, run = run, quiet = true })
  core.threads.blas_threads(restore)
  local t1 = clock()
  print(("RESULT load=%.6f t0=%.6f t1=%.6f turns=%d steps=%d exploits=%d created=%s status=%s "
    .. "claim=%.6f finish=%.6f other=%.6f claims=%d waits=%d train=%.6f read=%.6f sleep=%.6f cpu=%.6f")
    :format(load_s, t0, t1, s.turns, s.steps, s.exploits, tostring(s.created), tostring(s.status),
      m.claim, m.finish, m.other, m.claims, m.waits, m.train, m.read, m.sleep, os.clock()))
end

if arg[1] == "--child-a" then
  child_a(arg[2], arg[3])
  os.exit(0)
elseif arg[1] == "--child-b" then
  child_b(arg[2], arg[3], arg[4], arg[5])
  os.exit(0)
end

-- ---- the parent -------------------------------------------------------------------------------

local quick = common.quick_flag("distributed.lua")
local command, date, nproc = common.provenance()
local blas_note = ("OPENBLAS_NUM_THREADS=%s (OpenBLAS's own count: %d)"):format(
  os.getenv("OPENBLAS_NUM_THREADS") or "unset", core.threads.blas_threads())

local tmp_dirs = {}
local function fresh_dir(tag)
  local d = os.tmpname()
  os.remove(d)
  d = d .. "_pbt_distributed_" .. tag
  assert(os.execute("mkdir -p '" .. d .. "'"))
  tmp_dirs[#tmp_dirs + 1] = d
  return d
end
local function remove_dirs()
  for _, d in ipairs(tmp_dirs) do os.execute("rm -rf '" .. d .. "'") end
end

local server
local pg_version = "?"

local function header(title, extra)
  print("## " .. title)
  print()
  print(("Command: `%s`; %s; nproc %s; %s; %s."):format(command, date, nproc, pg_version,
    extra or ("OpenBLAS: " .. blas_note)))
  print()
end

local function field(list, f)
  local out = {}
  for k, t in ipairs(list) do out[k] = t[f] end
  return out
end

local function parse_result(out, cmd)
  local line = out:match("RESULT ([^\n]*)")
  if not line then error(("child failed: %s\n%s"):format(cmd, out), 0) end
  local t = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end

-- Starts the commands at once, waits until each has loaded, creates the go
-- file; returns the children's results, the go time and the spawn and exit
-- times (this process's clock).
local function run_side(cmds, go)
  os.remove(go)
  local t_spawn = clock()
  local pipes = {}
  for k, cmd in ipairs(cmds) do pipes[k] = io.popen(cmd) end
  -- (what a child printed before it had loaded: kept for its error message)
  local early = {}
  for k, p in ipairs(pipes) do
    local before = {}
    for l in p:lines() do
      if l == "LOADED" then break end
      before[#before + 1] = l .. "\n"
    end
    early[k] = table.concat(before)
  end
  local t_go = clock()
  local f = assert(io.open(go, "w"))
  f:close()
  local results = {}
  for k, p in ipairs(pipes) do
    local out = early[k] .. p:read("a")
    p:close()
    results[k] = parse_result(out, cmds[k])
  end
  local t_exit = clock()
  os.remove(go)
  return results, t_go, t_spawn, t_exit
end

local function main()
  local helper = require("spec.helper")
  local runstore = require("pbt.runstore")
  local cluster = require("pbt.cluster")
  io.stderr:write("distributed: starting a PostgreSQL server...\n")
  server = helper.postgres_server()
  local URL = server.url
  do
    local s = runstore.connect(URL)
    pg_version = s.db:exec("SELECT version() AS v")[1].v:match("^(PostgreSQL %S+)") or "PostgreSQL ?"
    local fsync = s.db:exec("SHOW fsync")[1]
    local sc = s.db:exec("SHOW synchronous_commit")[1]
    pg_version = ("%s (fsync %s, synchronous_commit %s)"):format(pg_version,
      fsync and (fsync.fsync or "?") or "?", sc and (sc.synchronous_commit or "?") or "?")
    s:ensure_schema() -- the tables, once: not in any timed run
    s:close()
  end
  local dir = fresh_dir("work")

  -- (1) ---------------------------------------------------------------------------------------
  local STEPS = quick and 4 or 16
  local ROUNDS = quick and 1 or 5
  io.stderr:write(("distributed: (1) Fashion-MNIST, %d round(s)...\n"):format(ROUNDS))
  local go = dir .. "/go"
  -- the CPU seconds of other processes (the server's) during a side: the
  -- machine's busy seconds minus the children's and this process's
  local function side_meter()
    local b0, c0 = busy_seconds(), os.clock()
    return function(children_cpu)
      return busy_seconds() - b0 - (os.clock() - c0) - children_cpu
    end
  end
  local function side_a(mode)
    local cmd = ("PBT_STEPS=%d lua5.4 %s --child-a %s '%s' 2>&1"):format(STEPS, arg[0], mode, go)
    local meter = side_meter()
    local res, t_go, t_spawn, t_exit = run_side({ cmd }, go)
    local r = res[1]
    return { reports = r.reports, run = r.t1 - t_go, e2e = t_exit - t_spawn, load = { r.load },
      others = meter(r.cpu) / (t_exit - t_spawn) }
  end
  local run_no = 0
  local function side_b(mode)
    run_no = run_no + 1
    local name = ("fashion-%s-%d"):format(mode, run_no)
    local cmds = {}
    for k = 1, 2 do
      cmds[k] = ("PBT_STEPS=%d lua5.4 %s --child-b %s '%s' '%s' '%s' 2>&1"):format(STEPS, arg[0], mode,
        go, URL, name)
    end
    local meter = side_meter()
    local res, t_go, t_spawn, t_exit = run_side(cmds, go)
    local cpu = 0
    for _, r in ipairs(res) do cpu = cpu + r.cpu end
    local others = meter(cpu) / (t_exit - t_spawn)
    local s = runstore.connect(URL, name)
    local reports = s.db:exec("SELECT count(*) AS c FROM events WHERE run = ? AND kind = 'report'", name)[1].c
    local status = s:run_row().status
    s:close()
    local t = { reports = reports, status = status, steps = 0, turns = 0, created = 0, load = {},
      others = others, e2e = t_exit - t_spawn, claim = 0, finish = 0, other = 0, claims = 0, waits = 0,
      train = 0, read = 0, sleep = 0 }
    local t1, first = -math.huge, math.huge
    for k, r in ipairs(res) do
      t1, first = math.max(t1, r.t1), math.min(first, r.t1)
      if r.created == "true" then t.created = t.created + 1 end
      t.load[k] = r.load
      for _, f in ipairs({ "steps", "turns", "claim", "finish", "other", "claims", "waits", "train", "read",
          "sleep" }) do
        t[f] = t[f] + r[f]
      end
    end
    t.run, t.skew = t1 - t_go, t1 - first
    return t
  end
  local modes = { "async", "sync" }
  local sides = { { key = "A", fn = side_a }, { key = "B", fn = side_b } }
  local load_before = loadavg()
  local runs, ratios = {}, {}
  for _, mode in ipairs(modes) do
    runs[mode], ratios[mode] = { A = {}, B = {} }, { run = {}, e2e = {} }
  end
  for r = 1, ROUNDS do
    for _, mode in ipairs(modes) do
      local got = {}
      for k = 0, #sides - 1 do
        local sd = sides[(r - 1 + k) % #sides + 1]
        local t = sd.fn(mode)
        t.rate, t.rate_e2e = t.reports / t.run, t.reports / t.e2e
        got[sd.key] = t
        table.insert(runs[mode][sd.key], t)
        io.stderr:write(("  round %d %s %s: %.2f s (end to end %.2f s), %d member-steps, "
          .. "%.2f member-steps/s\n"):format(r, mode, sd.key, t.run, t.e2e, t.reports, t.rate))
      end
      table.insert(ratios[mode].run, got.B.rate / got.A.rate)
      table.insert(ratios[mode].e2e, got.B.rate_e2e / got.A.rate_e2e)
    end
  end
  local load_after = loadavg()

  header("Fashion-MNIST example: 2 worker processes on PostgreSQL (B) against 2 worker threads in memory (A)")
  print(("examples/fashion_pbt.lua loaded with pbt.load_experiment(path, {pbt = true, seed = %d}) in "
    .. "every child, 8 members, PBT_STEPS=%d (%d member-steps a run), ready every 2 steps, truncation "
    .. "0.25; e.sync set by the child (the file itself says sync = true). A: one child, "
    .. "e:run{workers = 2}. B: two children, each OpenBLAS on 1 thread and pbt.cluster.work(e, {store "
    .. "= the server, run = a fresh name, quiet = true}), as pbt worker does. Timed: from the 'go' "
    .. "file (every child of the side has loaded the data) to the last child's return from e:run / "
    .. "cluster.work. End to end: process start to the last exit (Lua's start, loading, waiting for "
    .. "'go' included). Member-steps: report events (A: result.events, B: the store's events). "
    .. "%d round(s), the sides' order rotated, the ratio taken within a round; min / median / max "
    .. "over the rounds. 1-minute load average before / after: %s / %s.")
    :format(SEED, STEPS, 8 * STEPS, ROUNDS, load_before, load_after))
  print()
  print("| mode | A, member-steps/s | B, member-steps/s | B / A | B / A, end to end |")
  print("|------|------------------:|------------------:|------:|------------------:|")
  for _, mode in ipairs(modes) do
    local m = runs[mode]
    print(("| %s | %s | %s | %s | %s |"):format(mode,
      min_med_max(field(m.A, "rate"), "%.2f"), min_med_max(field(m.B, "rate"), "%.2f"),
      min_med_max(ratios[mode].run, "%.2f"), min_med_max(ratios[mode].e2e, "%.2f")))
  end
  print()
  print("| mode | side | timed wall (s) | end to end (s) | member-steps | loading per child (s) | "
    .. "other processes, cores | last - first worker done (s) | turns | runs done, made once |")
  print("|------|------|---------------:|---------------:|-------------:|----------------------:|"
    .. "-----------------------:|-----------------------------:|------:|---------------------:|")
  for _, mode in ipairs(modes) do
    for _, key in ipairs({ "A", "B" }) do
      local list = runs[mode][key]
      local loads = {}
      for _, t in ipairs(list) do
        for _, l in ipairs(t.load) do loads[#loads + 1] = l end
      end
      local extra = "- | - | -"
      if key == "B" then
        local done, once = 0, 0
        for _, t in ipairs(list) do
          if t.status == "done" then done = done + 1 end
          if t.created == 1 then once = once + 1 end
        end
        extra = ("%s | %s | %d/%d, %d/%d"):format(min_med_max(field(list, "skew"), "%.2f"),
          min_med_max(field(list, "turns"), "%d"), done, #list, once, #list)
      end
      print(("| %s | %s | %s | %s | %s | %s | %s | %s |"):format(mode, key,
        min_med_max(field(list, "run"), "%.2f"), min_med_max(field(list, "e2e"), "%.2f"),
        min_med_max(field(list, "reports"), "%d"), min_med_max(loads, "%.2f"),
        min_med_max(field(list, "others"), "%.2f"), extra))
    end
  end
  print()
  print("Where B's workers' time goes, in % of 2 x timed wall (min / median / max over the rounds):")
  print()
  print("| mode | training (worker:train) | claim transactions | checkpoint reads | finish transactions | "
    .. "waits after a claim found no member | the rest | claims, of them finding none | ms per claim | "
    .. "ms per finish |")
  print("|------|------------------------:|-------------------:|-----------------:|--------------------:|"
    .. "-------------------------------------:|---------:|-----------------------------:|-------------:|"
    .. "--------------:|")
  for _, mode in ipairs(modes) do
    local sh_ = { train = {}, claim = {}, finish = {}, read = {}, sleep = {}, rest = {} }
    local per_claim, per_finish, claims, waits = {}, {}, {}, {}
    for k, t in ipairs(runs[mode].B) do
      local total = 2 * t.run
      local sleep_s = t.sleep
      sh_.train[k] = 100 * t.train / total
      sh_.claim[k] = 100 * t.claim / total
      sh_.finish[k] = 100 * t.finish / total
      sh_.sleep[k] = 100 * sleep_s / total
      sh_.read[k] = 100 * t.read / total
      sh_.rest[k] = 100 * (total - t.train - t.claim - t.finish - t.read - sleep_s) / total
      per_claim[k] = 1e3 * t.claim / t.claims
      per_finish[k] = 1e3 * t.finish / t.turns
      claims[k], waits[k] = t.claims, t.waits
    end
    print(("| %s | %s | %s | %s | %s | %s | %s | %s, %s | %s | %s |"):format(mode,
      min_med_max(sh_.train, "%.1f"), min_med_max(sh_.claim, "%.1f"), min_med_max(sh_.read, "%.1f"),
      min_med_max(sh_.finish, "%.1f"),
      min_med_max(sh_.sleep, "%.1f"), min_med_max(sh_.rest, "%.1f"), min_med_max(claims, "%d"),
      min_med_max(waits, "%d"), min_med_max(per_claim, "%.1f"), min_med_max(per_finish, "%.1f")))
  end
  print()
  print(("Measured in B's children: the time inside each store transaction (a proxy of the "
    .. "connection's db wrapping db:transaction; a claim returns a table, a finish a string; a "
    .. "claim leases a member and reads its record, a finish encodes and writes the checkpoint, logs the "
    .. "events and takes the decision, an exploit copying the donor's state in the database), "
    .. "worker:train (the steps and evaluations) and the claims that found no member free, each "
    .. "followed by a wait (cluster.sleep: 0.02 s, doubling up to cluster.POLL = %.1f s), and "
    .. "the reads of claimed checkpoints (a statement outside the claim's transaction). The rest: "
    .. "making or joining the run, loading "
    .. "a claimed checkpoint into the population store, the events, and waiting for the second "
    .. "worker's sleep to end. Other processes, cores: the machine's busy CPU seconds (/proc/stat) "
    .. "over the side minus the children's and this process's CPU seconds, per second of the "
    .. "side's end to end wall time (B: mostly the PostgreSQL server's backends).")
    :format(cluster.POLL))
  print()

  -- (2) ---------------------------------------------------------------------------------------
  io.stderr:write("distributed: (2) time per decision turn...\n")
  local REPS2 = quick and 1 or 3
  local function decision_experiment(n, sync, steps)
    return pbt.experiment{
      name = "decide", population = n, seed = 1, mode = "max", sync = sync,
      space = { lr = pbt.loguniform(1e-3, 1) },
      init = function() return { s = 0, t = pbt.tensor.zeros(256) } end,
      step = function(state, _, g) state.s = g:uniform() end,
      eval = function(state) return state.s end,
      ready = pbt.ready.every(1),
      exploit = pbt.exploit.truncation{ fraction = 0.25 },
      explore = pbt.explore.perturb_or_resample{},
      budget = { steps = steps },
    }
  end
  local sqlite_url = "sqlite:" .. dir .. "/runs.db"
  local stores = { { name = "PostgreSQL", url = URL }, { name = "SQLite", url = sqlite_url } }
  local cases2 = {}
  for _, n in ipairs({ 8, 64 }) do
    for _, sync in ipairs({ false, true }) do
      local steps = n == 8 and (quick and 16 or 32) or (quick and 2 or 4)
      cases2[#cases2 + 1] = { n = n, sync = sync, steps = steps, mem = {}, per = { {}, {} }, turns = {},
        exploits = {}, status = {} }
    end
  end
  local n2 = 0
  for _ = 1, REPS2 do
    for _, c in ipairs(cases2) do
      -- in memory
      do
        local e = decision_experiment(c.n, c.sync, c.steps)
        collectgarbage()
        collectgarbage()
        local t0 = clock()
        local r = e:run{ workers = 1, progress = false }
        local dt = clock() - t0
        local reports = 0
        for _, ev in ipairs(r.events) do if ev.kind == "report" then reports = reports + 1 end end
        c.mem[#c.mem + 1] = dt / reports * 1e6
        c.mem_reports = reports
      end
      for k, st in ipairs(stores) do
        n2 = n2 + 1
        local name = ("decide-%d"):format(n2)
        local e = decision_experiment(c.n, c.sync, c.steps)
        cluster.work(e, { store = st.url, run = name, quiet = true, max_turns = 0 })
        collectgarbage()
        collectgarbage()
        local t0 = clock()
        local s = cluster.work(e, { store = st.url, run = name, quiet = true })
        local dt = clock() - t0
        table.insert(c.per[k], dt / s.turns * 1e3)
        c.turns[k], c.exploits[k], c.status[k] = s.turns, s.exploits, s.status
      end
    end
  end
  header("Time per decision turn, one worker (cluster.work in this process)",
    "no BLAS call in this part")
  print(("Inline experiment: step sets state.s = g:uniform(), the state also holds a zeros(256) "
    .. "float32 tensor, eval returns state.s, ready every step, truncation 0.25, explore "
    .. "perturb_or_resample. A turn: claim transaction, one step and eval, finish transaction "
    .. "(checkpoint, events, the decision, lease released). Milliseconds per turn = wall time of "
    .. "cluster.work (joining a run made beforehand) / its turns; SQLite: %s. In memory: "
    .. "e:run{workers = 1}, microseconds per member-step. Median of %d run(s) [min-max].")
    :format("an SQLite file under /tmp (sqlite:PATH)", REPS2))
  print()
  print("| members | mode | steps per member | turns | exploits | PostgreSQL, ms / turn | "
    .. "SQLite, ms / turn | PostgreSQL / SQLite | in memory, us / member-step | runs done |")
  print("|--------:|------|-----------------:|------:|---------:|----------------------:|"
    .. "------------------:|--------------------:|----------------------------:|:---------:|")
  for _, c in ipairs(cases2) do
    print(("| %d | %s | %d | %d | %d | %s | %s | %.2f | %s | %s |"):format(c.n, c.sync and "sync" or "async",
      c.steps, c.turns[1], c.exploits[1], med_range(c.per[1], "%.2f"), med_range(c.per[2], "%.2f"),
      median(c.per[1]) / median(c.per[2]), med_range(c.mem, "%.1f"),
      c.status[1] .. " / " .. c.status[2]))
  end
  print()

  -- (3) ---------------------------------------------------------------------------------------
  io.stderr:write("distributed: (3) checkpoint throughput...\n")
  if not file_size(FSYNC_WRITE) then
    local cmd = "cc -O2 -o " .. FSYNC_WRITE .. " bench/fsync_write.c"
    io.stderr:write("  " .. cmd .. "\n")
    if not os.execute(cmd) then error("cannot compile bench/fsync_write.c", 0) end
  end
  local population = require("pbt.population")
  local worker_mod = require("pbt.worker")
  local nn = pbt.nn
  local ROUNDS3, N3 = quick and 2 or 8, quick and 3 or 5
  local models = {
    { name = "MLP 784-100-60-10", sizes = { 784, 100, 60, 10 } },
    { name = "MLP 784-1024-192-10", sizes = { 784, 1024, 192, 10 } },
  }
  local rows3 = {}
  for mi, m in ipairs(models) do
    local g = pbt.Generator(1)
    local layers = {}
    for k = 1, #m.sizes - 1 do
      layers[#layers + 1] = nn.Linear(m.sizes[k], m.sizes[k + 1], { generator = g })
      if k < #m.sizes - 1 then layers[#layers + 1] = nn.ReLU() end
    end
    local model = nn.Sequential(table.unpack(layers))
    local params = 0
    for _, p in ipairs(model:parameters()) do params = params + p:numel() end
    local pop = population.new{ size = 1, hparams = {}, window = 10 }
    local parts = worker_mod.parts({ model = model })
    for _, p in ipairs(parts.tensors) do pop:set_state(1, p.name, p.tensor:clone()) end
    pop:schedule_mark(1)
    local blob_bytes = #pbt.encode(runstore.state_value(pop, 1))
    -- a run with the member's row in each store
    local stores3 = {}
    for k, st in ipairs(stores) do
      local s = runstore.connect(st.url, ("ckpt-%d"):format(mi))
      s:ensure_schema()
      s:create({ name = "ckpt" })
      s.db:exec("INSERT INTO members (run, member, record, state, since, owner) VALUES (?, 1, ?, ?, 0, 'me')",
        s.run, runstore.record_blob(pop, 1), runstore.state_blob(pop, 1))
      stores3[k] = s
    end
    -- PostgreSQL again, the member's row in a copy of the members table
    -- whose state column has PostgreSQL's default storage, EXTENDED (TOAST
    -- with a pglz compression attempt; runstore makes it EXTERNAL)
    do
      local s = stores3[1]
      if mi == 1 then
        s.db:exec("CREATE TABLE members_extended (LIKE members INCLUDING ALL)")
        s.db:exec("ALTER TABLE members_extended ALTER COLUMN state SET STORAGE EXTENDED")
      end
      s.db:exec("INSERT INTO members_extended (run, member, record, state, since, owner) "
        .. "VALUES (?, 1, ?, ?, 0, 'me')", s.run, runstore.record_blob(pop, 1), runstore.state_blob(pop, 1))
    end
    local function finish_like(s, tbl)
      local db = s.db
      db:transaction(function()
        s:lock()
        local row = db:exec("SELECT owner FROM " .. tbl .. " WHERE run = ? AND member = ?", s.run, 1)[1]
        assert(row.owner == "me")
        local run = s:run_row()
        db:exec("UPDATE " .. tbl .. " SET record = ?, state = ?, since = ?, owner = 'me', "
          .. "lease_until = NULL, turns = turns + 1 WHERE run = ? AND member = ?",
          runstore.record_blob(pop, 1), runstore.state_blob(pop, 1), 0, s.run, 1)
        db:exec("UPDATE runs SET next_seq = ? WHERE run = ?", run.next_seq + 1, s.run)
      end)
    end
    local sides3 = {}
    local function side(name, fn) sides3[#sides3 + 1] = { name = name, fn = fn, rounds = {} } end
    local function store_side(name, k, tbl)
      side(name, function(times)
        for _ = 1, N3 do
          local t0 = clock()
          finish_like(stores3[k], tbl)
          times[#times + 1] = clock() - t0
        end
      end)
    end
    store_side("PostgreSQL", 1, "members")
    store_side("PostgreSQL, state STORAGE EXTENDED (its default)", 1, "members_extended")
    store_side("SQLite", 2, "members")
    local fpath = dir .. "/fsync_file"
    side("write + fsync", function(times)
      local out = sh(("%s '%s' %d %d overwrite 2>&1"):format(FSYNC_WRITE, fpath, blob_bytes, N3))
      local line = out:match("TIMES ([^\n]*)")
      if not line then error("fsync_write failed: " .. out, 0) end
      for v in line:gmatch("%S+") do times[#times + 1] = tonumber(v) end
    end)
    side("encode only", function(times)
      for _ = 1, N3 do
        local t0 = clock()
        local _, _ = runstore.record_blob(pop, 1), runstore.state_blob(pop, 1)
        times[#times + 1] = clock() - t0
      end
    end)
    do -- warm-up
      local warm = {}
      for _, sd in ipairs(sides3) do sd.fn(warm) end
    end
    for r = 1, ROUNDS3 do
      for k = 0, #sides3 - 1 do
        local sd = sides3[(r - 1 + k) % #sides3 + 1]
        local times = {}
        sd.fn(times)
        sd.rounds[r] = median(times)
        collectgarbage()
      end
    end
    os.remove(fpath)
    for _, s in ipairs(stores3) do s:close() end
    rows3[mi] = { model = m.name, params = params, bytes = blob_bytes, sides = sides3 }
  end
  header("Checkpoint throughput: a finish-like transaction against write + fsync of the same bytes",
    "no BLAS call in this part")
  print(("The member's state: the parameters of the MLP (float32), registered in a population store. "
    .. "Store sides: one transaction as cluster.lua's finish writes a checkpoint (run's row locked, "
    .. "member's row read, UPDATE of its record, state, since, lease and turns with both blobs encoded "
    .. "inside, the run's next_seq), no events and no decision. PostgreSQL: the store as runstore "
    .. "makes it (the state column STORAGE EXTERNAL: out of line, no compression attempted). "
    .. "'STORAGE EXTENDED': the same on a copy of the members table whose state column has "
    .. "PostgreSQL's default storage (pglz tried on it). "
    .. "write + fsync: %s, the state blob's "
    .. "byte count, one file rewritten in place under /tmp. 'encode only': runstore.record_blob + "
    .. "state_blob, no I/O. One warm-up call per side, %d rounds of %d calls, sides' order rotated; "
    .. "per round the median call; MB/s = state blob bytes / that median; min / median / max over "
    .. "the rounds.")
    :format(FSYNC_WRITE, ROUNDS3, N3))
  print()
  print("| state | parameters | state blob (bytes) | side | ms per checkpoint | MB/s | "
    .. "ratio to write + fsync (time) |")
  print("|-------|-----------:|-------------------:|------|------------------:|-----:|"
    .. "-----------------------------:|")
  for _, row in ipairs(rows3) do
    local base
    for _, sd in ipairs(row.sides) do if sd.name == "write + fsync" then base = sd end end
    for _, sd in ipairs(row.sides) do
      local ms, mbs, ratio = {}, {}, {}
      for r, t in ipairs(sd.rounds) do
        ms[r], mbs[r], ratio[r] = t * 1e3, row.bytes / t / 1e6, t / base.rounds[r]
      end
      print(("| %s | %d | %d | %s | %s | %s | %s |"):format(row.model, row.params, row.bytes, sd.name,
        min_med_max(ms, "%.2f"), min_med_max(mbs, "%.0f"),
        sd == base and "1" or min_med_max(ratio, "%.2f")))
    end
  end
  print()
end

local ok, err = xpcall(main, debug.traceback)
if server then pcall(server.stop) end
remove_dirs()
if not ok then
  io.stderr:write(tostring(err) .. "\n")
  os.exit(1)
end
