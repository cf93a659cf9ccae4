--- pbt.cluster: one population trained by worker processes on any number
-- of machines (`pbt worker FILE --store URL`), held together by a shared run
-- store: PostgreSQL for many machines, an SQLite file (sqlite:PATH) for
-- processes on one machine.  Nothing but the database connects them.
--
-- A worker, in a loop:
--   claim    in one transaction (the run's row locked: SELECT ... FOR
--            UPDATE): a member no live lease holds, fewest turns first; the
--            lease is (owner, expiry) on its row, the expiry by the
--            database's clock, renewed by a heartbeat between steps.  A
--            member whose lease ran out (its worker was killed or cut off)
--            is claimed again from its last checkpoint, with a note event.
--   train    the member until it is ready (the run's ready rule), its budget
--            is spent or it fails, in this process, from its checkpoint.
--   finish   in one transaction: checks that the lease is still this
--            worker's (else the turn is dropped: another worker has the
--            member), writes the member's checkpoint (record and state) and
--            its events, takes the decisions that are due and releases the
--            lease.  Asynchronous: the member's own exploit and explore.
--            Synchronous: the worker that finishes the generation's last
--            member takes the whole generation's decisions, in member order,
--            and counts the generation in the run's row; a dead worker's
--            member is taken over when its lease expires, never waited for.
-- Decisions read the members' checkpoints (records: scores, histories,
-- hyperparameters) and an exploit copies the donor's checkpointed state in
-- the database.  The decisions' generator is the run's, kept in the store,
-- so the rules draw one sequence whichever worker decides.
local core = require("pbt.core")
local population = require("pbt.population")
local json = require("pbt.json")
local worker_mod = require("pbt.worker")
local decisions = require("pbt.decisions")
local runstore = require("pbt.runstore")
local scheduler = require("pbt.scheduler")
local shared = require("pbt.shared")

local Generator, threads, clock = core.Generator, core.threads, core.clock
local decode = core.decode
local is_interrupt, try = shared.is_interrupt, shared.try
local READY, FAILED, LOST = worker_mod.READY, worker_mod.FAILED, worker_mod.LOST

local M = {}

M.LEASE = 30   -- seconds a claim holds without a heartbeat
M.POLL = 0.5   -- seconds between claims at most when no member is free (from 0.02, doubling)
M.RETRY = 300  -- seconds a worker keeps retrying a store it lost

local function fail(fmt, ...) error("experiment: " .. fmt:format(...), 0) end

local message = shared.message

--- Sleeps in short slices (Ctrl-C, a hook, is seen between them).
local function sleep(seconds)
  local ch = threads.channel()
  local t_end = clock() + seconds
  while true do
    local left = t_end - clock()
    if left <= 0 then return end
    ch:receive(math.min(left, 0.1))
  end
end
M.sleep = sleep

-- this process: host name, pid and four random bytes (hosts may share a
-- name, containers their pids: a lease must name one worker only)
local function process_name()
  local host = "localhost"
  local f = io.open("/proc/sys/kernel/hostname")
  if f then host = (f:read("l") or host); f:close() end
  local pid = "?"
  f = io.open("/proc/self/stat")
  if f then pid = (f:read("l") or ""):match("^(%d+)") or pid; f:close() end
  local nonce = ""
  f = io.open("/dev/urandom", "rb")
  if f then nonce = (f:read(4) or ""):gsub(".", function(ch) return ("%02x"):format(ch:byte()) end); f:close() end
  if nonce == "" then nonce = ("%08x"):format(math.floor(clock() * 1e6) % 0x100000000) end
  return host .. ":" .. pid .. "-" .. nonce
end
M.process_name = process_name

local function check_options(opts)
  require("pbt.options").check("work", opts, { "store", "run", "seed", "lease", "poll", "retry", "owner",
    "force", "quiet", "log", "workers", "max_turns" }, 0)
  if type(opts.store) ~= "string" then
    error(("work: option 'store' must be a PostgreSQL URL or sqlite:PATH, got %s"):format(type(opts.store)), 0)
  end
  for _, k in ipairs({ "lease", "poll", "retry" }) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or not (v > 0) or v == math.huge) then
      error(("work: option '%s' must be a positive number of seconds, got %s"):format(k, tostring(v)), 0)
    end
  end
  if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then
    error(("work: option 'seed' must be an integer, got %s"):format(tostring(opts.seed)), 0)
  end
  if opts.run ~= nil and (type(opts.run) ~= "string" or opts.run == "") then
    error(("work: option 'run' must be a non-empty string, got %s"):format(tostring(opts.run)), 0)
  end
end

-- ---- the store, reached again when it goes away ---------------------------------------

-- Whether c has a store whose connection answers.
local function connected(c)
  if not c.store then return false end
  local ok, yes = try(c.store.db.connected, c.store.db)
  return ok and yes
end

-- Whether err came from a store that is gone (a lost connection, a
-- server that does not answer, a database locked beyond the busy timeout).
local function store_lost(c, err)
  if not connected(c) then return true end
  local msg = message(err)
  return msg:find("database is locked", 1, true) ~= nil or msg:find("database is busy", 1, true) ~= nil
end

-- A store that cannot work at all, whatever the wait: a missing database
-- or role, a refused password, a path SQLite cannot open.
local function hopeless(c, err)
  local msg = message(err)
  if msg:find("database is locked", 1, true) or msg:find("database is busy", 1, true) then return false end
  if not c.where:match("^postgres") then return true end
  for _, p in ipairs({ "does not exist", "authentication failed", "password", "no pg_hba.conf entry",
      "permission denied", "invalid URI", "invalid connection option", "missing \"=\"" }) do
    if msg:find(p, 1, true) then return true end
  end
  return false
end

-- Closes c's connection whatever state it is in (closing a lost one may
-- raise: no news), but for Ctrl-C.
local function drop_store(c)
  local s = c.store
  c.store = nil
  if s then try(s.close, s) end
end

local function reconnect(c)
  drop_store(c)
  c.store = runstore.connect(c.where, c.run)
end

-- Runs fn(c, ...) and, while the store is unreachable, waits (0.1 s,
-- doubling, at most 5 s), says so on stderr, connects again and retries,
-- for up to c.retry seconds.  Every call is one transaction, so a retry
-- never finds half of one written.
local function retrying(c, what, fn, ...)
  local wait, t0 = 0.1, clock()
  while true do
    local ok, a, b = try(function(...)
      if not c.store then reconnect(c) end
      return fn(c, ...)
    end, ...)
    if ok then
      if wait > 0.1 then c.log(("pbt worker %s: the store answers again"):format(c.owner)) end
      return a, b
    end
    if not store_lost(c, a) then error(a, 0) end
    if clock() - t0 >= c.retry then
      fail("the store %s did not answer for %.0f s (%s): %s", c.shown, clock() - t0, what, message(a))
    end
    -- (the message's first line, without the place in pbt that raised it)
    local why = message(a):gsub("^[^\n]-%.lua:%d+: ", ""):gsub("\n.*", "")
    c.log(("pbt worker %s: the store is unreachable while it %s (%s); trying again in %.1f s")
      :format(c.owner, what, why, wait))
    drop_store(c)
    sleep(wait)
    wait = math.min(wait * 2, 5)
  end
end

-- ---- making or joining the run --------------------------------------------------------

local IDENTITY = { "name", "population", "mode", "sync", "window", "budget", "space", "file_args" }

-- Makes run c.run in the store (the members' first states, made here) or
-- joins it (checked against e); returns its identity.
local function create_or_join(c, e, opts)
  local s, db = c.store, c.store.db
  local ok, err = try(s.ensure_schema, s)
  if not ok then
    -- two workers made the tables at once (PostgreSQL): they exist now
    if not try(db.exec, db, "SELECT run FROM runs LIMIT 1") then error(err, 0) end
  end
  local seed = opts.seed or e.seed
  local okc, cerr = pcall(db.transaction, db, function()
    if db:exec("SELECT run FROM runs WHERE run = ?", s.run)[1] then return end
    local n = e.population
    local pop = population.new{ size = n, hparams = decisions.hp_specs(e), window = e.window }
    local G = Generator(seed)
    local _, excluded_list = scheduler.initial_states(e, pop, seed, G)
    local meta = runstore.identity(e, seed)
    meta.kind = "workers"
    meta.excluded = json.encode(excluded_list)
    meta.state_names = json.encode(pop:state_names(1))
    s:create(meta, true)
    if e.budget.seconds then
      db:exec("UPDATE runs SET deadline = " .. s.now_expr .. " + ? WHERE run = ?", e.budget.seconds, s.run)
    end
    for i = 1, n do
      db:exec("INSERT INTO members (run, member, record, state, since) VALUES (?, ?, ?, ?, 0)", s.run, i,
        runstore.record_blob(pop, i), runstore.state_blob(pop, i))
    end
    s:put_scheduler({ G = G:state() })
    c.created = true
  end)
  if not okc then
    -- another worker making the same run at once made this INSERT wait and
    -- then fail (PostgreSQL): join the run it made
    c.created = nil
    if is_interrupt(cerr) or not db:exec("SELECT run FROM runs WHERE run = ?", s.run)[1] then
      error(cerr, 0)
    end
  end
  local meta = s:meta()
  if meta.kind ~= "workers" then
    fail("run '%s' in %s was made by pbt run (one process); continue it with pbt run --resume", s.run,
      c.shown)
  end
  local identity = runstore.identity(e, seed)
  for _, k in ipairs(IDENTITY) do
    if meta[k] ~= (identity[k] ~= nil and tostring(identity[k]) or nil) then
      fail("run '%s' in %s was made with %s = %s, this experiment has %s: use another run name " ..
        "(--run NAME) or the same experiment", s.run, c.shown, k, tostring(meta[k]), tostring(identity[k]))
    end
  end
  if opts.seed and meta.seed ~= tostring(opts.seed) then
    fail("run '%s' in %s was made with seed %s, not %d", s.run, c.shown, meta.seed, opts.seed)
  end
  if meta.file_crc32 and identity.file_crc32 and meta.file_crc32 ~= tostring(identity.file_crc32)
      and not opts.force then
    fail("%s is not the file run '%s' was made with (its CRC-32 was %s, this one's %s): force = true " ..
      "(pbt worker --force) joins anyway", tostring(e.file), s.run, meta.file_crc32,
      tostring(identity.file_crc32))
  end
  return meta
end

-- ---- claim, heartbeat, finish, release ---------------------------------------------

local FREE = "SELECT member, owner FROM members WHERE run = ? AND finished = 0 AND waiting = 0 " ..
  "AND orphan = 0 AND (owner IS NULL OR lease_until < ?) ORDER BY turns, member LIMIT 1"

-- Claims a member: {status = "claimed", member, record, state, since,
-- left = seconds to the run's deadline or nil}, or {status = "wait" |
-- "done" | "failed", message}.
local function claim(c)
  local s, db = c.store, c.store.db
  return db:transaction(function()
    s:lock()
    local run = s:run_row()
    if run.status ~= "running" then return { status = run.status, message = run.message } end
    local now = s:now()
    local expired = run.deadline and now >= run.deadline
    local row = not expired and db:exec(FREE, s.run, now)[1]
    if not row then
      -- nothing to claim now: the run is over when no member is left (or,
      -- past its deadline, when no lease is live)
      local left
      if expired then
        left = db:exec("SELECT count(*) AS c FROM members WHERE run = ? AND owner IS NOT NULL " ..
          "AND lease_until >= ?", s.run, now)[1].c
      else
        left = db:exec("SELECT count(*) AS c FROM members WHERE run = ? AND finished = 0", s.run)[1].c
      end
      if left > 0 and not expired then
        -- members that failed before any member had a score wait for a
        -- donor; with no other member left to train, they never get one
        local active = db:exec("SELECT count(*) AS c FROM members WHERE run = ? AND finished = 0 " ..
          "AND orphan = 0", s.run)[1].c
        if active == 0 then
          local msg = "every member has failed"
          db:exec("UPDATE runs SET status = 'failed', message = ? WHERE run = ?", msg, s.run)
          return { status = "failed", message = msg }
        end
      end
      if left > 0 then return { status = "wait" } end
      -- the end: a run whose members all failed has no result
      local alive = false
      for _, m in ipairs(db:exec("SELECT member, record FROM members WHERE run = ?", s.run)) do
        alive = alive or decode(m.record, ("members.record of member %d"):format(m.member)).status == "alive"
      end
      if not alive then
        local msg = "every member has failed"
        db:exec("UPDATE runs SET status = 'failed', message = ? WHERE run = ?", msg, s.run)
        return { status = "failed", message = msg }
      end
      db:exec("UPDATE runs SET status = 'done' WHERE run = ?", s.run)
      return { status = "done" }
    end
    local i = row.member
    db:exec("UPDATE members SET owner = ?, lease_until = ? WHERE run = ? AND member = ?", c.owner,
      now + c.lease, s.run, i)
    local m = db:exec("SELECT record, since FROM members WHERE run = ? AND member = ?", s.run, i)[1]
    local out = { status = "claimed", member = i, since = m.since,
      record = decode(m.record, ("members.record of member %d"):format(i)),
      left = run.deadline and run.deadline - now }
    if row.owner then
      -- its worker's lease ran out: the member goes on from its checkpoint
      s:insert_event({ kind = "note", member = i, step = out.record.steps, generation = out.record.generation,
        detail = ("the lease of %s expired; continued by %s from the checkpoint at step %d")
          :format(row.owner, c.owner, out.record.steps), time = now }, run.next_seq)
      db:exec("UPDATE runs SET next_seq = ? WHERE run = ?", run.next_seq + 1, s.run)
      out.taken_from = row.owner
    end
    return out
  end)
end

-- The state of member i, which this worker has claimed (read outside the
-- claim's transaction, so that other workers' decisions do not wait for
-- it: only a member's owner writes a leased member's state); nil when the
-- lease is no longer this worker's.
local function claimed_state(c, i)
  local s = c.store
  local row = s.db:exec("SELECT state FROM members WHERE run = ? AND member = ? AND owner = ?", s.run, i,
    c.owner)[1]
  return row and decode(row.state, ("members.state of member %d"):format(i))
end

-- Gives up this worker's leases (Ctrl-C, an error): the members go on from
-- their checkpoints at once, elsewhere.
local function release(c)
  if not c.store then return end
  c.store.db:exec("UPDATE members SET owner = NULL, lease_until = NULL WHERE run = ? AND owner = ?",
    c.run, c.owner)
end

-- The population as the store holds it, for decisions: every member's
-- record (no states), since, and where it stands.
local function decision_population(c, now, deadline)
  local s, e, n = c.store, c.e, c.e.population
  local rows = s.db:exec("SELECT member, record, since, outcome, waiting, orphan, finished " ..
    "FROM members WHERE run = ? ORDER BY member", s.run)
  local pop = population.new{ size = n, hparams = c.specs, window = e.window }
  local since = {}
  for _, r in ipairs(rows) do
    pop:restore(r.member, decode(r.record, ("members.record of member %d"):format(r.member)))
    since[r.member] = r.since
  end
  local expired = deadline and now >= deadline
  local function finished(j)
    local _, work = pop:counts(j)
    return work >= c.limit[j] or expired
  end
  return pop, since, rows, finished
end

-- Takes the decisions that are due after member i's turn ended with outcome
-- o (inside finish's transaction); returns the next event number.
local function decide(c, i, o, done, seq, now, run)
  local s, db, e = c.store, c.store.db, c.e
  local due
  if e.sync then
    -- the generation's last member: its decisions
    due = db:exec("SELECT count(*) AS c FROM members WHERE run = ? AND finished = 0 AND waiting = 0",
      s.run)[1].c == 0
  else
    -- a ready or failed member's own decision; a member with a score gives
    -- the failed members waiting for a donor one
    due = (not done and (o.status == READY or o.status == FAILED)) or (o.status ~= FAILED and
      db:exec("SELECT count(*) AS c FROM members WHERE run = ? AND orphan = 1", s.run)[1].c > 0)
  end
  if not due then return seq end
  local pop, since, rows, finished = decision_population(c, now, run.deadline)
  local saved = {}
  for _, r in ipairs(db:exec("SELECT key, value FROM scheduler WHERE run = ?", s.run)) do
    saved[r.key] = decode(r.value, "scheduler." .. r.key)
  end
  local G = Generator(0)
  G:set_state(saved.G)
  -- asynchronous truncation ranks once per population's worth of decisions,
  -- as in one process (the ranking is kept in the store)
  local dec = decisions.new(e, pop, G, { since = since, finished = finished, rank_every = e.population,
    ranked = saved.ranked and saved.ranked.donors, rank_count = saved.ranked and saved.ranked.count })
  local touched, orphan = {}, {}
  for _, r in ipairs(rows) do orphan[r.member] = r.orphan == 1 end
  local all_failed
  if e.sync then
    local todo, outcomes = {}, {}
    for _, r in ipairs(rows) do
      if r.waiting == 1 then
        todo[#todo + 1] = r.member
        outcomes[r.member] = { status = r.outcome }
        touched[r.member] = true
      end
    end
    if #todo > 0 then
      local ok, who = dec.generation(todo, outcomes)
      if not ok then all_failed = who end
    end
    db:exec("UPDATE members SET waiting = 0 WHERE run = ?", s.run)
    db:exec("UPDATE runs SET generation = generation + 1 WHERE run = ?", s.run)
  else
    touched[i] = true
    if o.status == FAILED then
      if not done and not dec.replace(i) then orphan[i] = true end
    else
      -- a member with a score: the failed ones waiting for a donor get one
      for _, r in ipairs(rows) do
        if orphan[r.member] and dec.replace(r.member) then
          orphan[r.member] = false
          touched[r.member] = true
        end
      end
      if o.status == READY and not done then dec.ready(i) end
    end
    local left, first = 0, nil
    for _, r in ipairs(rows) do
      if not orphan[r.member] and not finished(r.member) then left = left + 1 end
      if orphan[r.member] and not first then first = r.member end
    end
    -- (named as one process names it: the first member waiting for a donor)
    if left == 0 and orphan[i] then all_failed = first end
  end
  -- what the decisions logged; an exploit copies the donor's checkpoint
  for _, ev in ipairs(pop:events(1, true)) do
    if ev.kind == "exploit" then
      db:exec("UPDATE members SET state = (SELECT d.state FROM members AS d WHERE d.run = ? AND " ..
        "d.member = ?) WHERE run = ? AND member = ?", s.run, ev.other, s.run, ev.member)
    end
    touched[ev.member] = true
    s:insert_event(ev, seq)
    seq = seq + 1
  end
  for j in pairs(touched) do
    db:exec("UPDATE members SET record = ?, since = ?, orphan = ? WHERE run = ? AND member = ?",
      runstore.record_blob(pop, j), since[j], orphan[j] and 1 or 0, s.run, j)
  end
  local ranked, count = dec.ranking()
  s:put_scheduler({ G = G:state(), ranked = ranked and { donors = ranked, count = count } or nil })
  c.exploits = c.exploits + dec.exploits
  if all_failed then
    -- the run ends here, and says so (the checkpoint and events of this
    -- turn are written with it)
    local last = db:exec("SELECT detail FROM events WHERE run = ? AND member = ? AND kind = 'failure' " ..
      "ORDER BY seq DESC LIMIT 1", s.run, all_failed)[1]
    return seq, ("every member has failed (member %d: %s)"):format(all_failed,
      tostring(last and last.detail or o.error))
  end
  return seq
end

-- Ends member i's turn (outcome o, events evs of the turn) in one
-- transaction: "ok", or "lost" when the lease is no longer this worker's,
-- or the run's status when it stopped meanwhile.
local function finish(c, i, o, evs)
  local s, db, pop = c.store, c.store.db, c.pop
  return db:transaction(function()
    s:lock()
    local row = db:exec("SELECT owner FROM members WHERE run = ? AND member = ?", s.run, i)[1]
    if not row or row.owner ~= c.owner then return "lost" end
    local run = s:run_row()
    if run.status ~= "running" then
      db:exec("UPDATE members SET owner = NULL, lease_until = NULL WHERE run = ? AND member = ?", s.run, i)
      return run.status
    end
    local now = s:now()
    local seq = run.next_seq
    for _, ev in ipairs(evs) do
      s:insert_event(ev, seq)
      seq = seq + 1
    end
    local _, work = pop:counts(i)
    local done = work >= c.limit[i] or (run.deadline ~= nil and now >= run.deadline)
    db:exec("UPDATE members SET record = ?, state = ?, since = ?, owner = NULL, lease_until = NULL, " ..
      "turns = turns + 1, finished = ?, outcome = ?, waiting = ? WHERE run = ? AND member = ?",
      runstore.record_blob(pop, i), runstore.state_blob(pop, i), c.since + o.trained, done and 1 or 0,
      o.status, (c.e.sync and not done) and 1 or 0, s.run, i)
    local why
    seq, why = decide(c, i, o, done, seq, now, run)
    db:exec("UPDATE runs SET next_seq = ? WHERE run = ?", seq, s.run)
    if why then
      db:exec("UPDATE runs SET status = 'failed', message = ? WHERE run = ?", why, s.run)
      return "failed"
    end
    return "ok"
  end)
end

-- A rule's error stops the run: the run's row says failed (and why) and a
-- failure event names the member; every worker stops at its next claim.
local function stop_run(c, i, msg, evs)
  local s, db = c.store, c.store.db
  db:transaction(function()
    s:lock()
    local run = s:run_row()
    if run.status ~= "running" then return end
    -- the events of the turn that ended so (its reports; the ready rule's
    -- failure), and the failure of a decision's rule
    local seq, logged = run.next_seq, false
    for _, ev in ipairs(evs or {}) do
      s:insert_event(ev, seq)
      seq = seq + 1
      logged = logged or (ev.kind == "failure" and ev.member == i)
    end
    if not logged then
      local rec = decode(db:exec("SELECT record FROM members WHERE run = ? AND member = ?", s.run, i)[1].record,
        "members.record")
      s:insert_event({ kind = "failure", member = i, step = rec.steps, generation = rec.generation,
        detail = msg, time = s:now() }, seq)
      seq = seq + 1
    end
    db:exec("UPDATE runs SET status = 'failed', message = ?, next_seq = ? WHERE run = ?", msg, seq, s.run)
    db:exec("UPDATE members SET owner = NULL, lease_until = NULL WHERE run = ? AND owner = ?", s.run, c.owner)
  end)
end

-- ---- the worker ------------------------------------------------------------------------

-- Member i's checkpoint in a population of its own, for its turn (a fresh
-- one each turn: its state shares the decoded tensors, and nothing of
-- other turns -- states, events -- stays in memory).
local function load_member(c, cl)
  local pop, i = population.new{ size = c.e.population, hparams = c.specs, window = c.e.window }, cl.member
  pop:restore(i, cl.record)
  for _, name in ipairs(c.state_names) do
    local v = cl.state.tensors[name]
    if v == nil then v = cl.state.numbers[name] end
    if v == nil then fail("member %d's checkpoint has no '%s'", i, name) end
    pop:set_state(i, name, v)
  end
  c.pop = pop
  c.worker.pop = pop
  c.worker.member = nil -- the live state is loaded from the checkpoint
end

-- One turn of claimed member cl.member: its checkpoint loaded, trained
-- until ready, its end written (see the top of this file).
local function turn(c, cl, summary)
  local i = cl.member
  if cl.taken_from then
    c.log(("pbt worker %s: member %d continues from its checkpoint at step %d (the lease of %s expired)")
      :format(c.owner, i, cl.record.steps, cl.taken_from))
  end
  cl.state = retrying(c, "reads a checkpoint", claimed_state, i)
  if not cl.state then return end -- the lease ran out already
  load_member(c, cl)
  c.since = cl.since
  local o = c.worker:train({ member = i, limit = c.limit[i], since = cl.since,
    deadline = cl.left and clock() + cl.left or -1 })
  summary.steps = summary.steps + o.trained
  if o.status == LOST then
    c.log(("pbt worker %s: lost the lease of member %d (another worker continues it); its %d steps " ..
      "here are dropped"):format(c.owner, i, o.trained))
    return
  end
  local evs = c.pop:events(1, true)
  if o.rule then
    retrying(c, "stops the run", stop_run, i, o.error, evs)
    fail("member %d: %s", i, o.error)
  end
  local ok, r = pcall(retrying, c, "writes a checkpoint", finish, i, o, evs)
  if not ok then
    -- a rule's error in a decision stops the run for every worker
    local j, what = message(r):match("^experiment: member (%d+): (.*)$")
    if j and not is_interrupt(r) then retrying(c, "stops the run", stop_run, tonumber(j), what, evs) end
    error(r, 0)
  end
  if r == "lost" then
    c.log(("pbt worker %s: member %d's lease expired before its checkpoint; its %d steps here " ..
      "are dropped"):format(c.owner, i, o.trained))
  elseif r == "failed" then
    fail("run '%s' failed: %s", c.run, tostring(c.store:run_row().message))
  elseif r == "ok" then
    summary.turns = summary.turns + 1
  end
end

--- Works on run opts.run (default: the experiment's name) of the store
-- opts.store until the run is done (see the top of this file).  opts: seed
-- (used when this worker makes the run), lease, poll, retry (seconds),
-- owner (this worker's name in the store), force (join though the file
-- changed), log (a function for messages; default stderr), max_turns (stop
-- after that many turns: tests).  Returns {run, turns, steps, exploits,
-- created, status}.
function M.work(e, opts)
  check_options(opts)
  local c = {
    e = e, where = opts.store, shown = select(2, runstore.target(opts.store)), run = opts.run or e.name, lease = opts.lease or M.LEASE,
    poll = opts.poll or M.POLL, retry = opts.retry or M.RETRY, exploits = 0,
    owner = opts.owner or process_name(), specs = decisions.hp_specs(e),
    limit = scheduler.limits(e),
    log = opts.log or function(line) io.stderr:write(line, "\n") end,
  }
  if opts.quiet and not opts.log then c.log = function() end end
  -- the first connection: a store that cannot work is an error at once; a
  -- server that does not answer (yet) is waited for
  local okc, cerr = pcall(reconnect, c)
  if not okc and (is_interrupt(cerr) or hopeless(c, cerr)) then error(cerr, 0) end
  local meta = retrying(c, "opens the run", create_or_join, e, opts)
  local seed = tonumber(meta.seed)
  local excluded = {}
  for _, name in ipairs(json.decode(meta.excluded)) do excluded[name] = true end
  c.state_names = json.decode(meta.state_names)
  c.worker = worker_mod.new(e, nil, { seed = seed, excluded = excluded })
  local last_beat = clock()
  local beat_sql = "UPDATE members SET lease_until = " .. c.store.now_expr ..
    " + ? WHERE run = ? AND member = ? AND owner = ?"
  c.worker.after_step = function(i)
    -- the heartbeat: a third of the lease at most between renewals; a store
    -- that does not answer now is retried at the turn's end (the lease may
    -- run out meanwhile: then the turn is dropped)
    if clock() - last_beat < c.lease / 3 then return true end
    local ok, _, changed = try(function()
      if not c.store then reconnect(c) end
      return c.store.db:exec(beat_sql, c.lease, c.run, i, c.owner)
    end)
    if not ok then
      last_beat = clock() -- the next try a third of the lease later
      -- a lost connection is made again at the next beat
      if not connected(c) then drop_store(c) end
      return true
    end
    last_beat = clock()
    return changed == 1
  end
  local summary = { run = c.run, turns = 0, steps = 0, created = c.created or false }
  local function body()
    local wait = 0.02 -- no member free: wait, doubling up to c.poll
    while not opts.max_turns or summary.turns < opts.max_turns do
      local cl = retrying(c, "claims a member", claim)
      if cl.status == "done" then
        summary.status = "done"
        return
      elseif cl.status == "failed" then
        fail("run '%s' failed: %s", c.run, tostring(cl.message))
      elseif cl.status == "wait" then
        -- (a generation's end in a synchronous run, or every member
        -- leased: a short wait first)
        M.sleep(math.min(wait, c.poll)) -- (M.sleep: a bench may time it)
        wait = wait * 2
      else
        wait = 0.02
        last_beat = clock()
        turn(c, cl, summary)
      end
    end
    summary.status = "stopped"
  end
  local ok, err = pcall(body)
  if not ok then
    pcall(release, c)
  end
  summary.exploits = c.exploits
  if ok then drop_store(c) elseif c.store then pcall(c.store.close, c.store) end
  if not ok then error(err, 0) end
  return summary
end

--- The body of a worker thread of `pbt worker --workers N`: each thread is
-- a worker of its own (its own connection and lease name).
function M.thread_main()
  local experiment = require("pbt.experiment")
  local ctx = threads.context()
  local args = shared.unpack(ctx.args)
  core.allocator_limit(core.allocator_limit() // ctx.count)
  local e = experiment.load(args.file, args.file_args)
  local opts = args.opts
  opts.owner = opts.owner .. "/" .. ctx.id
  local summary = M.work(e, opts)
  ctx.results:send(shared.pack(summary))
  return "done"
end

--- Runs n workers in threads of this process (experiment e from a file);
-- returns their summaries.  Ctrl-C stops them all (their leases released).
function M.work_threads(e, n, opts)
  if not e.file then
    fail("workers = %d needs an experiment file (each thread loads it)", n)
  end
  local args = { file = e.file, file_args = e.file_args, opts = {} }
  for k, v in pairs(opts) do if k ~= "log" and k ~= "workers" then args.opts[k] = v end end
  args.opts.owner = args.opts.owner or process_name()
  local results = threads.channel()
  local dummy = population.new{ size = 1, hparams = {}, window = 1 }
  local restore_blas = threads.blas_threads(1)
  local workers = threads.start{ count = n, module = "pbt.cluster", args = shared.pack(args),
    population = dummy, tasks = threads.channel(), results = results, path = package.path,
    cpath = package.cpath }
  local out, errors = {}, {}
  local ok, err = pcall(function()
    while #out + #errors < n do
      local msg = results:receive(0.1)
      if msg then
        if msg:sub(1, 1) == "!" then errors[#errors + 1] = msg:sub(2)
        else out[#out + 1] = shared.unpack(msg) end
      end
    end
  end)
  if not ok then workers:interrupt() end
  workers:join()
  threads.blas_threads(restore_blas)
  if not ok then error(err, 0) end
  if #errors > 0 then error(errors[1], 0) end
  return out
end

-- ---- what a run in a store looks like ---------------------------------------------------

--- The population of run `run` (default: the only one) in the store at
-- `where`: {run, status, message, generation, events, members = {{member,
-- status, worker, steps, work, score, h = {name = value}, generation}}}.
-- e (optional) turns choice indices into their values.
function M.status(where, run, e)
  local s = runstore.connect(where)
  local ok, out = pcall(function()
    s.run = run or s:only_run()
    local meta = s:meta()
    local r = s:run_row()
    local now = s:now()
    local res = { run = s.run, status = r.status, message = r.message, generation = r.generation,
      events = r.next_seq - 1, population = tonumber(meta.population), members = {} }
    if not e and meta.file then
      local oke, ex = pcall(require("pbt.experiment").load, meta.file,
        meta.file_args and json.decode(meta.file_args))
      if oke then e = ex end
    end
    for _, m in ipairs(s.db:exec("SELECT member, record, owner, lease_until, finished, waiting, orphan " ..
        "FROM members WHERE run = ? ORDER BY member", s.run)) do
      local rec = decode(m.record, ("members.record of member %d"):format(m.member))
      local st
      if m.owner and m.lease_until >= now then st = "training"
      elseif rec.status == "failed" then st = "failed"
      elseif m.finished == 1 then st = "finished"
      elseif m.waiting == 1 then st = "waiting"
      else st = "idle" end
      local h = rec.hparams
      if e then h = worker_mod.from_store(e, h) end
      res.members[#res.members + 1] = { member = m.member, status = st,
        worker = (m.owner and m.lease_until >= now) and m.owner or nil, steps = rec.steps, work = rec.work,
        score = rec.score, h = h, generation = rec.generation }
    end
    return res
  end)
  s:close()
  if not ok then error(out, 0) end
  return out
end

--- status as text: a table a person reads.
function M.status_text(st)
  local lines = { ("run '%s': %s%s, generation %d, %d events"):format(st.run, st.status,
    st.message and (" (" .. st.message .. ")") or "", st.generation, st.events) }
  lines[#lines + 1] = ("%-6s  %-8s  %-24s  %6s  %12s  %s"):format("member", "status", "worker", "steps",
    "score", "hyperparameters")
  for _, m in ipairs(st.members) do
    local hs = {}
    for k, v in pairs(m.h) do
      hs[#hs + 1] = ("%s = %s"):format(k, math.type(v) == "float" and ("%.4g"):format(v) or tostring(v))
    end
    table.sort(hs)
    lines[#lines + 1] = ("%-6d  %-8s  %-24s  %6d  %12s  %s"):format(m.member, m.status, m.worker or "-",
      m.steps, m.score and ("%.6g"):format(m.score) or "-", table.concat(hs, ", "))
  end
  return table.concat(lines, "\n")
end

return M
