-- pbt worker: one population trained by worker processes over a shared run
-- store (pbt.cluster).  SQLite (sqlite:PATH) here always; PostgreSQL on a
-- server this spec starts itself (Debian's postgresql), skipped with a
-- reason only when its binaries are missing.
local pbt = require("pbt")
local cluster = require("pbt.cluster")
local scheduler = require("pbt.scheduler")
local helper = require("spec.helper")
local sql = pbt.core.sql

local FIXTURE = "spec/fixtures/cluster.lua"
local ENV = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- the experiment as the worker processes load it (no args) with the
-- environment they get
local function fixture(args) return pbt.load_experiment(FIXTURE, args) end

-- Starts k worker processes of run `run` in store `store` (env: extra
-- environment); returns the directory their output goes to.
local function spawn(k, store, run, env, extra)
  local dir = helper.tmpname()
  assert(os.execute("mkdir -p " .. dir))
  for w = 1, k do
    os.execute(("(%s%s lua5.4 lua/pbt/cli.lua worker %s --store '%s' --run %s --lease 1 %s > %s/w%d.out " ..
      "2> %s/w%d.err; echo $? > %s/w%d.code) &"):format(ENV, env or "", FIXTURE, store, run, extra or "", dir, w,
      dir, w, dir, w))
  end
  return dir
end

-- Waits (at most `limit` seconds) until every worker of dir has exited;
-- returns their exit codes and outputs.
local function wait_workers(dir, k, limit)
  local t_end = pbt.clock() + (limit or 120)
  while pbt.clock() < t_end do
    local done = 0
    for w = 1, k do if read(("%s/w%d.code"):format(dir, w)) then done = done + 1 end end
    if done == k then break end
    cluster.sleep(0.05)
  end
  local out = {}
  for w = 1, k do
    out[w] = { code = tonumber(read(("%s/w%d.code"):format(dir, w)) or ""),
      out = read(("%s/w%d.out"):format(dir, w)) or "", err = read(("%s/w%d.err"):format(dir, w)) or "" }
  end
  return out
end

-- Waits until some member of the run is leased (a worker is training it)
-- and the log holds at least `events` events; returns the lease's owner.
local function wait_lease(target, run, events)
  local t_end = pbt.clock() + 60
  while pbt.clock() < t_end do
    local db = sql.open(target)
    if db then
      local ok, rows = pcall(db.exec, db, "SELECT owner FROM members WHERE run = ? AND owner IS NOT NULL " ..
        "AND (SELECT next_seq FROM runs WHERE run = ?) > ? ORDER BY member", run, run, events)
      db:close()
      if ok and rows[1] then return rows[1].owner end
    end
    cluster.sleep(0.02)
  end
  error("no member was leased")
end

-- Kills (SIGKILL) a worker of the run while it holds a lease: stops it
-- first (SIGSTOP), checks in the store that it holds one (it may be between
-- two turns), and tries again after SIGCONT when it does not.  Returns the
-- killed worker's name.
local function kill_mid_turn(target, run, events)
  for _ = 1, 200 do
    local owner = wait_lease(target, run, events)
    local pid = assert(owner:match(":(%d+)%-"))
    assert(os.execute("kill -STOP " .. pid))
    local db = assert(sql.open(target))
    local held = db:exec("SELECT count(*) AS c FROM members WHERE run = ? AND owner = ?", run, owner)[1].c
    db:close()
    if held > 0 then
      assert(os.execute("kill -9 " .. pid))
      return owner
    end
    assert(os.execute("kill -CONT " .. pid))
  end
  error("no worker could be killed holding a lease")
end

-- An event without its time and its explore data, as one line (the
-- hyperparameters are compared through the members' records)
local function line(ev)
  return table.concat({ ev.kind, ev.member, tostring(ev.other), ev.step, ("%.17g"):format(ev.score or 0),
    ev.generation, tostring(ev.detail) }, " ")
end

local function sorted_lines(events, skip_notes)
  local out = {}
  for _, ev in ipairs(events) do
    if not (skip_notes and ev.kind == "note") then out[#out + 1] = line(ev) end
  end
  table.sort(out)
  return table.concat(out, "\n")
end

-- What a finished run in a store must hold, whatever its workers did:
-- every member at its budget, one report per step each slot trained (none
-- twice, none lost), events numbered 1..N once each.
local function check_complete(target, run, n, steps)
  local db = assert(sql.open(target))
  local r = db:exec("SELECT status, next_seq FROM runs WHERE run = ?", run)[1]
  assert.are.equal("done", r.status)
  for _, m in ipairs(db:exec("SELECT member, record, owner, finished FROM members WHERE run = ? ORDER BY member",
      run)) do
    local rec = pbt.core.decode(m.record)
    assert.are.equal(steps, rec.work, "member " .. m.member .. "'s work")
    assert.are.equal(1, m.finished)
    assert.is_nil(m.owner)
  end
  assert.are.equal(n, #db:exec("SELECT member FROM members WHERE run = ?", run))
  local reports = db:exec("SELECT member, count(*) AS c FROM events WHERE run = ? AND kind = 'report' " ..
    "GROUP BY member ORDER BY member", run)
  assert.are.equal(n, #reports)
  for _, x in ipairs(reports) do assert.are.equal(steps, x.c, "reports of member " .. x.member) end
  local seqs = db:exec("SELECT count(*) AS c, count(DISTINCT seq) AS d, min(seq) AS lo, max(seq) AS hi " ..
    "FROM events WHERE run = ?", run)[1]
  assert.are.same({ c = r.next_seq - 1, d = r.next_seq - 1, lo = 1, hi = r.next_seq - 1 }, seqs)
  db:close()
end

-- The killed member went on from its checkpoint: its next report after the
-- note is the step after the note's (the checkpoint's) step.
local function check_continued(target, run, owner)
  local db = assert(sql.open(target))
  local notes = db:exec("SELECT seq, member, step, detail FROM events WHERE run = ? AND kind = 'note'", run)
  local found = false
  for _, note in ipairs(notes) do
    if note.detail:find("the lease of " .. owner .. " expired", 1, true) then
      found = true
      local before = db:exec("SELECT step FROM events WHERE run = ? AND member = ? AND seq < ? AND kind IN " ..
        "('report', 'exploit') ORDER BY seq DESC LIMIT 1", run, note.member, note.seq)[1]
      local after = db:exec("SELECT step FROM events WHERE run = ? AND member = ? AND seq > ? AND kind = " ..
        "'report' ORDER BY seq LIMIT 1", run, note.member, note.seq)[1]
      assert.are.equal(note.step, before and before.step or 0, "the checkpoint's step")
      assert.are.equal(note.step + 1, after.step)
    end
  end
  db:close()
  assert.is_true(found, "a note says the killed worker's member was continued")
end

describe("pbt worker on an SQLite store", function()
  it("with one worker gives the run `pbt run` gives (both modes)", function()
    for _, sync in ipairs({ true, false }) do
      local dir = helper.tmpname()
      assert(os.execute("mkdir -p " .. dir))
      local args = { sync = sync, delay = 0, steps = 12 }
      local summary = cluster.work(fixture(args), { store = "sqlite:" .. dir .. "/s.db", run = "one", quiet = true })
      assert.are.same({ run = "one", turns = 24, steps = 72, created = true, status = "done" },
        { run = summary.run, turns = summary.turns, steps = summary.steps, created = summary.created,
          status = summary.status })
      local ref = fixture(args):run{ workers = 1, progress = false }
      local got = scheduler.report(dir .. "/out", nil, { store = "sqlite:" .. dir .. "/s.db", run = "one" })
      assert.are.equal(helper.log_text(ref.events), helper.log_text(got.events))
      assert.are.same(ref.schedules, got.schedules)
      assert.are.equal(ref.best.score, got.best.score)
      check_complete(dir .. "/s.db", "one", 6, 12)
      os.execute("rm -rf " .. dir)
    end
  end)

  it("with one worker and PB2 gives the run `pbt run` gives (PB2 reads the population from the store)", function()
    for _, sync in ipairs({ true, false }) do
      local dir = helper.tmpname()
      assert(os.execute("mkdir -p " .. dir))
      local args = { sync = sync, delay = 0, steps = 12, explore = "pb2" }
      cluster.work(fixture(args), { store = "sqlite:" .. dir .. "/s.db", run = "pb2", quiet = true })
      local ref = fixture(args):run{ workers = 1, progress = false }
      local got = scheduler.report(dir .. "/out", nil, { store = "sqlite:" .. dir .. "/s.db", run = "pb2" })
      assert.are.equal(helper.log_text(ref.events), helper.log_text(got.events))
      assert.are.same(ref.schedules, got.schedules)
      local explored = 0
      for _, ev in ipairs(ref.events) do if ev.kind == "explore" then explored = explored + 1 end end
      assert.is_true(explored > 0)
      os.execute("rm -rf " .. dir)
    end
  end)

  it("three worker processes, one killed with SIGKILL mid-step: the run completes as one process runs it",
    function()
      local dir = helper.tmpname()
      assert(os.execute("mkdir -p " .. dir))
      local target = dir .. "/s.db"
      local env = "PBT_CLUSTER_SYNC=1 PBT_CLUSTER_STEPS=30"
      local wdir = spawn(3, "sqlite:" .. target, "k", env)
      local owner = kill_mid_turn(target, "k", 40)
      local ws = wait_workers(wdir, 3)
      local codes, killed = {}, 0
      for _, w in ipairs(ws) do
        if w.code == 137 then killed = killed + 1 else codes[#codes + 1] = w.code end
        if w.code == 0 then assert.matches("run 'k' is done", w.out) end
      end
      assert.are.same({ 0, 0 }, codes)
      assert.are.equal(1, killed)
      check_complete(target, "k", 6, 30)
      check_continued(target, "k", owner)
      -- synchronous: the same generations, decisions and scores as one
      -- process (the killed member's lost steps redone from its checkpoint
      -- with its generator's state)
      local ref = fixture({ sync = true, steps = 30, delay = 0 }):run{ workers = 1, progress = false }
      local e = fixture({ sync = true, steps = 30 })
      local _, saved = scheduler.load_store(e, nil, { store = "sqlite:" .. target, run = "k" })
      assert.are.equal(sorted_lines(ref.events), sorted_lines(saved.events, true))
      local db = assert(sql.open(target))
      assert.are.equal(10, db:exec("SELECT generation FROM runs WHERE run = 'k'")[1].generation)
      db:close()
      os.execute("rm -rf " .. dir .. " " .. wdir)
    end)

  it("lets workers open a new store at the same instant (SQLite's WAL setup waits its turn)", function()
    for round = 1, 3 do
      local dir = helper.tmpname()
      assert(os.execute("mkdir -p " .. dir))
      local wdir = spawn(3, "sqlite:" .. dir .. "/s.db", "race", "PBT_CLUSTER_STEPS=3")
      local ws = wait_workers(wdir, 3)
      for _, w in ipairs(ws) do assert.are.equal(0, w.code, ("round %d: %s"):format(round, w.err)) end
      check_complete(dir .. "/s.db", "race", 6, 3)
      os.execute("rm -rf " .. dir .. " " .. wdir)
    end
  end)

  it("Ctrl-C stops a worker with status 130 and gives its member back at once", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local target = dir .. "/s.db"
    local wdir = spawn(1, "sqlite:" .. target, "int", "PBT_CLUSTER_STEPS=1000")
    local owner = wait_lease(target, "int", 10)
    assert(os.execute("kill -INT " .. assert(owner:match(":(%d+)%-"))))
    local ws = wait_workers(wdir, 1, 30)
    assert.are.equal(130, ws[1].code, ws[1].err)
    assert.matches("pbt: interrupted", ws[1].err)
    local db = assert(sql.open(target))
    assert.are.equal(0, db:exec("SELECT count(*) AS c FROM members WHERE run = 'int' AND owner IS NOT NULL")[1].c)
    assert.are.equal("running", db:exec("SELECT status FROM runs WHERE run = 'int'")[1].status)
    db:close()
    os.execute("rm -rf " .. dir .. " " .. wdir)
  end)

  it("keeps two runs in one database apart", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local store = "sqlite:" .. dir .. "/s.db"
    local a = { sync = false, delay = 0, steps = 9, seed = 3 }
    local b = { sync = false, delay = 0, steps = 6, seed = 4, population = 4 }
    cluster.work(fixture(a), { store = store, run = "a", quiet = true })
    cluster.work(fixture(b), { store = store, run = "b", quiet = true })
    for name, args in pairs({ a = a, b = b }) do
      local ref = fixture(args):run{ workers = 1, progress = false }
      local got = scheduler.report(dir .. "/" .. name, nil, { store = store, run = name })
      assert.are.equal(helper.log_text(ref.events), helper.log_text(got.events))
      local st = cluster.status(store, name)
      assert.are.equal(args.population or 6, #st.members)
      assert.are.equal("done", st.status)
    end
    assert.has_error(function() cluster.status(store) end,
      "experiment: " .. dir .. "/s.db holds 2 runs (a, b): name one (--run NAME)")
    assert.has_error(function() cluster.status(store, "c") end,
      "experiment: " .. dir .. "/s.db holds no run named 'c'")
    os.execute("rm -rf " .. dir)
  end)

  it("refuses a worker of another experiment, bad options, and a run made by pbt run", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local store = "sqlite:" .. dir .. "/s.db"
    cluster.work(fixture({ delay = 0, steps = 3 }), { store = store, run = "r", quiet = true })
    assert.has_error(function()
      cluster.work(fixture({ delay = 0, steps = 3, population = 5 }), { store = store, run = "r", quiet = true })
    end, "experiment: run 'r' in " .. dir .. "/s.db was made with population = 6, this experiment has 5: use " ..
      "another run name (--run NAME) or the same experiment")
    assert.has_error(function()
      cluster.work(fixture({ delay = 0, steps = 3 }), { store = store, run = "r", seed = 99, quiet = true })
    end, "experiment: run 'r' in " .. dir .. "/s.db was made with seed 7, not 99")
    assert.has_error(function() cluster.work(fixture(), { store = store, leese = 3 }) end,
      "work: unknown option 'leese' (did you mean 'lease'?)")
    assert.has_error(function() cluster.work(fixture(), { store = store, lease = -1 }) end,
      "work: option 'lease' must be a positive number of seconds, got -1")
    assert.has_error(function() cluster.work(fixture(), {}) end,
      "work: option 'store' must be a PostgreSQL URL or sqlite:PATH, got nil")
    -- a run directory of pbt run: continued with pbt run --resume only
    local e = fixture({ delay = 0, steps = 3 })
    e:run{ out = dir .. "/single", workers = 1, progress = false }
    assert.has_error(function() cluster.work(e, { store = dir .. "/single", quiet = true }) end,
      "experiment: run 'linear' in " .. dir .. "/single/run.db was made by pbt run (one process); continue " ..
      "it with pbt run --resume")
    os.execute("rm -rf " .. dir)
  end)

  it("stops the run for every worker when a rule raises in a decision", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local store = "sqlite:" .. dir .. "/s.db"
    local e = fixture({ delay = 0, steps = 9 })
    e.explore = function() error("no idea", 0) end
    -- the member one process stops at
    local ok, ref = pcall(e.run, e, { workers = 1, progress = false })
    assert.is_false(ok)
    local member = tonumber(ref:match("^experiment: member (%d+): the explore rule: no idea$"))
    assert.is_not_nil(member, ref)
    assert.has_error(function() cluster.work(e, { store = store, run = "bad", quiet = true }) end, ref)
    local st = cluster.status(store, "bad")
    assert.are.equal("failed", st.status)
    assert.are.equal("the explore rule: no idea", st.message)
    -- another worker joining is told, and takes no member
    assert.has_error(function() cluster.work(e, { store = store, run = "bad", quiet = true }) end,
      "experiment: run 'bad' failed: the explore rule: no idea")
    local db = assert(sql.open(dir .. "/s.db"))
    local f = db:exec("SELECT member, detail FROM events WHERE run = 'bad' AND kind = 'failure'")
    assert.are.same({ { member = member, detail = "the explore rule: no idea" } }, f)
    assert.are.equal(0, db:exec("SELECT count(*) AS c FROM members WHERE run = 'bad' AND owner IS NOT NULL")[1].c)
    db:close()
    os.execute("rm -rf " .. dir)
  end)

  it("runs several workers in one process (--workers N), each a worker of its own", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local store = "sqlite:" .. dir .. "/s.db"
    local summaries = cluster.work_threads(fixture({ delay = 0.002, steps = 12 }), 2,
      { store = store, run = "t", quiet = true, owner = "threads" })
    assert.are.equal(2, #summaries)
    local turns, steps = 0, 0
    for _, sm in ipairs(summaries) do
      assert.are.equal("done", sm.status)
      turns, steps = turns + sm.turns, steps + sm.steps
    end
    assert.are.same({ 24, 72 }, { turns, steps })
    check_complete(dir .. "/s.db", "t", 6, 12)
    os.execute("rm -rf " .. dir)
  end)

  it("names a run store of an older format", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local db = assert(sql.open(dir .. "/run.db"))
    db:exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db:exec("INSERT INTO meta VALUES ('format', '1')")
    db:close()
    assert.has_error(function() pbt.load_run(dir) end,
      "experiment: " .. dir .. "/run.db is a run store of format 1; this pbt reads format 2")
    os.execute("rm -rf " .. dir)
  end)

  it("ends a run whose members all fail as pbt run does, failed, in both modes", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local store = "sqlite:" .. dir .. "/s.db"
    for _, sync in ipairs({ true, false }) do
      local e = fixture({ sync = sync, delay = 0, steps = 6 })
      e.eval = function() return 0 / 0 end
      local ok, ref = pcall(e.run, e, { workers = 1, progress = false })
      assert.is_false(ok)
      local why = ref:match("^experiment: (every member has failed %(member %d+: eval returned NaN%))$")
      assert.is_not_nil(why, ref)
      local run = sync and "fs" or "fa"
      assert.has_error(function() cluster.work(e, { store = store, run = run, quiet = true }) end,
        ("experiment: run '%s' failed: %s"):format(run, why))
      local st = cluster.status(store, run)
      assert.are.same({ "failed", why }, { st.status, st.message })
      for _, m in ipairs(st.members) do assert.are.equal("failed", m.status) end
      -- a worker that joins later is told, and trains nothing
      assert.has_error(function() cluster.work(e, { store = store, run = run, quiet = true }) end,
        ("experiment: run '%s' failed: %s"):format(run, why))
    end
    os.execute("rm -rf " .. dir)
  end)

  it("gives its member back when interrupted inside a step, and refuses a store it can never open", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local store = "sqlite:" .. dir .. "/s.db"
    local e = fixture({ delay = 0, steps = 6 })
    local step, n = e.step, 0
    e.step = function(...)
      n = n + 1
      if n == 4 then error("interrupted!") end -- what Ctrl-C raises
      return step(...)
    end
    assert.has_error(function() cluster.work(e, { store = store, run = "i", quiet = true }) end, "interrupted!")
    local db = assert(sql.open(dir .. "/s.db"))
    assert.are.equal(0, db:exec("SELECT count(*) AS c FROM members WHERE owner IS NOT NULL")[1].c)
    assert.are.equal(0, db:exec("SELECT count(*) AS c FROM events WHERE kind = 'failure'")[1].c)
    db:close()
    -- no retrying a path SQLite cannot open
    local t0 = pbt.clock()
    assert.has_error(function()
      cluster.work(fixture(), { store = "sqlite:" .. dir .. "/no/such/dir/s.db", quiet = true })
    end, "experiment: cannot open the run's store: " .. dir .. "/no/such/dir/s.db: unable to open database file")
    assert.is_true(pbt.clock() - t0 < 5)
    -- a run of workers is not resumed by pbt run
    local e2 = fixture({ delay = 0, steps = 3 })
    assert(os.execute("mkdir -p " .. dir .. "/single"))
    cluster.work(e2, { store = "sqlite:" .. dir .. "/single/run.db", quiet = true })
    assert.has_error(function() e2:run{ out = dir .. "/single", resume = true, progress = false } end,
      ("experiment: %s/single holds a run of pbt worker processes: they continue it (pbt worker FILE --store " ..
        "sqlite:%s/single/run.db)"):format(dir, dir))
    os.execute("rm -rf " .. dir)
  end)

  it("pbt status and pbt report --store read the run", function()
    local dir = helper.tmpname()
    assert(os.execute("mkdir -p " .. dir))
    local store = "sqlite:" .. dir .. "/s.db"
    cluster.work(fixture({ delay = 0, steps = 6 }), { store = store, run = "r", quiet = true })
    local p = io.popen(ENV .. "lua5.4 lua/pbt/cli.lua status --store " .. store .. " 2>&1")
    local out = p:read("a")
    p:close()
    local st = cluster.status(store, "r")
    assert.matches("^run 'r': done, generation 0, " .. st.events .. " events\nmember  status", out)
    for _, m in ipairs(st.members) do
      assert.matches(("\n%-6d  finished  %-24s  %6d  %12s  lr = %.4g"):format(m.member, "-", m.steps,
        ("%.6g"):format(m.score), m.h.lr):gsub("%p", "%%%0"), out)
    end
    p = io.popen(ENV .. "lua5.4 lua/pbt/cli.lua report --store " .. store .. " --run r --out " .. dir ..
      "/out 2>&1")
    out = p:read("a")
    p:close()
    assert.matches("from the store %(" .. st.events .. " events%)", out)
    local lines = 0
    for _ in io.lines(dir .. "/out/events.jsonl") do lines = lines + 1 end
    assert.are.equal(st.events, lines)
    assert.is_true(helper.exists(dir .. "/out/best.pbt"))
    os.execute("rm -rf " .. dir)
  end)
end)

describe("pbt worker on PostgreSQL", function()
  if not helper.postgres_bindir() then
    it("is skipped: no PostgreSQL server binaries (Debian's postgresql; the README's test command installs it)",
      function() pending("no /usr/lib/postgresql/*/bin/initdb") end)
    return
  end
  local server
  setup(function() server = helper.postgres_server() end)
  teardown(function() server.stop() end)

  it("three worker processes, one killed with SIGKILL mid-step: every member at its budget, every event once",
    function()
      local wdir = spawn(3, server.url, "kill", "PBT_CLUSTER_STEPS=30")
      local owner = kill_mid_turn(server.url, "kill", 40)
      local ws = wait_workers(wdir, 3)
      local codes = {}
      for _, w in ipairs(ws) do codes[#codes + 1] = w.code end
      table.sort(codes)
      assert.are.same({ 0, 0, 137 }, codes)
      check_complete(server.url, "kill", 6, 30)
      check_continued(server.url, "kill", owner)
      os.execute("rm -rf " .. wdir)
    end)

  it("refuses a database that does not exist at once", function()
    local url = server.url:gsub("^postgresql:///postgres", "postgresql:///nosuchdb")
    assert.has_error(function() cluster.work(fixture(), { store = url, quiet = true }) end,
      'experiment: cannot open the run\'s store: connection to server on socket "' .. server.dir ..
      "/.s.PGSQL." .. server.port .. '" failed: FATAL:  database "nosuchdb" does not exist')
  end)

  it("two runs in one database do not see each other's members", function()
    local a = { delay = 0, steps = 6, seed = 11 }
    local b = { delay = 0, steps = 9, seed = 12, population = 3 }
    cluster.work(fixture(a), { store = server.url, run = "iso-a", quiet = true })
    cluster.work(fixture(b), { store = server.url, run = "iso-b", quiet = true })
    for name, args in pairs({ ["iso-a"] = a, ["iso-b"] = b }) do
      local ref = fixture(args):run{ workers = 1, progress = false }
      local dir = helper.tmpname()
      local got = scheduler.report(dir, nil, { store = server.url, run = name })
      assert.are.equal(helper.log_text(ref.events), helper.log_text(got.events))
      assert.are.equal(args.population or 6, #cluster.status(server.url, name).members)
      check_complete(server.url, name, args.population or 6, args.steps)
      os.execute("rm -rf " .. dir)
    end
  end)

  it("workers wait for a server that goes away, say so, and finish the run when it is back", function()
    local wdir = spawn(2, server.url, "crash", "PBT_CLUSTER_STEPS=40", "")
    wait_lease(server.url, "crash", 30)
    server.crash()
    cluster.sleep(1.5)
    server.start()
    local ws = wait_workers(wdir, 2)
    local said = false
    for _, w in ipairs(ws) do
      assert.are.equal(0, w.code, w.err)
      said = said or (w.err:find("the store is unreachable while it", 1, true) ~= nil
        and w.err:find("the store answers again", 1, true) ~= nil)
    end
    assert.is_true(said, "a worker said the store was unreachable, and then that it answers again")
    check_complete(server.url, "crash", 6, 40)
    os.execute("rm -rf " .. wdir)
  end)
end)
