--- pbt.runstore: a run's store in SQL: DIR/run.db (SQLite, WAL) for a run
-- on one machine, or a PostgreSQL database that many runs and many worker
-- processes share (pbt.cluster).  One schema, one set of statements, two
-- drivers (pbt.core.sql): a run survives kill -9 and continues where its
-- last checkpoint left it.
--
-- Tables (every row carries its run's name, so runs share a database):
--   meta(run, key, value)       what the run is: format, the experiment
--                               file's path and CRC-32, seed, name,
--                               population, mode, sync, window, budget and
--                               the space (as text)
--   runs(run, next_seq, generation, status, message, deadline)
--                               the run's row: the next event's number,
--                               the synchronous generation, running / done
--                               / failed and why (workers lock this row for
--                               each decision)
--   members(run, member, record, state, since, owner, lease_until, turns,
--           waiting, finished, outcome, orphan)
--                               each member's checkpoint: its record in the
--                               store (pop:record, pbt.encode'd, without
--                               its curve: that is its report events), its
--                               published state (tensors and numbers,
--                               pbt.encode'd: a CRC-32 checked on read) and
--                               its steps since its last decision; for
--                               workers, the lease (owner, expiry) and
--                               where the member stands
--   events(run, seq, kind, member, other, step, score, generation, detail,
--          data, time)          the event log, as far as the checkpoints go
--   scheduler(run, key, value)  the decisions' generator, the time spent
-- A checkpoint is one transaction: the members given, their events and the
-- scheduler's state, so the database holds a consistent run at every
-- instant.  The scheduler writes one after each synchronous generation (all
-- members) and after each asynchronous decision (that member, and its own
-- events only: a resumed member starts from its checkpoint, so nothing of
-- it is logged twice).
local core = require("pbt.core")
local json = require("pbt.json")
local shared = require("pbt.shared")
local try, is_interrupt = shared.try, shared.is_interrupt

local sql = core.sql
local encode, decode = core.encode, core.decode

local M = {}

M.FORMAT = 2

-- SQLite's types; PostgreSQL's in place of BLOB, REAL and INTEGER
local SCHEMA = {
  "CREATE TABLE IF NOT EXISTS meta (run TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, " ..
    "PRIMARY KEY (run, key))",
  "CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, next_seq INTEGER NOT NULL, " ..
    "generation INTEGER NOT NULL, status TEXT NOT NULL, message TEXT, deadline REAL)",
  "CREATE TABLE IF NOT EXISTS members (run TEXT NOT NULL, member INTEGER NOT NULL, " ..
    "record BLOB NOT NULL, state BLOB NOT NULL, since INTEGER NOT NULL, owner TEXT, " ..
    "lease_until REAL, turns INTEGER NOT NULL DEFAULT 0, waiting INTEGER NOT NULL DEFAULT 0, " ..
    "finished INTEGER NOT NULL DEFAULT 0, outcome INTEGER, orphan INTEGER NOT NULL DEFAULT 0, " ..
    "PRIMARY KEY (run, member))",
  "CREATE TABLE IF NOT EXISTS events (run TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, " ..
    "member INTEGER NOT NULL, other INTEGER, step INTEGER NOT NULL, score REAL, " ..
    "generation INTEGER NOT NULL, detail TEXT, data TEXT, time REAL NOT NULL, PRIMARY KEY (run, seq))",
  "CREATE TABLE IF NOT EXISTS scheduler (run TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, " ..
    "PRIMARY KEY (run, key))",
}

local function fail(fmt, ...) error("experiment: " .. fmt:format(...), 0) end

function M.path(dir) return dir .. "/run.db" end

--- Does dir hold a run?  (its run.db: see also M.started)
function M.exists(dir)
  local f = io.open(M.path(dir), "rb")
  if f then f:close() end
  return f ~= nil
end

--- Whether dir's run.db got as far as its run: false for no run.db and
-- for a store whose creation was killed before its first commit (a
-- database without tables, or pbt's tables, all empty).  Anything else --
-- another table, a row, a database that cannot be read -- counts as
-- started: M.open says what is wrong with it.
local TABLES = {} -- pbt's tables, by name
for _, s in ipairs(SCHEMA) do TABLES[s:match("^CREATE TABLE IF NOT EXISTS (%w+)")] = true end
function M.started(dir)
  if not M.exists(dir) then return false end
  local db <close> = sql.open(M.path(dir))
  if not db then return true end
  local ok, started = try(function()
    for _, r in ipairs(db:exec("SELECT name FROM sqlite_master WHERE type = 'table'")) do
      if not TABLES[r.name] then return true end
      if db:exec(("SELECT 1 AS x FROM %s LIMIT 1"):format(r.name))[1] then return true end
    end
    return false
  end)
  return not ok or started
end

--- Removes dir's run.db (and its WAL files): a run started again.
function M.remove(dir)
  for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove(M.path(dir) .. suffix) end
end

--- What a --store argument names: a PostgreSQL URL (postgresql://... or
-- postgres://...), sqlite:PATH (an SQLite file), or else a run directory
-- (its run.db).  Returns what pbt.core.sql.open takes and a name to show.
function M.target(where)
  if type(where) ~= "string" or where == "" then
    error(("store: expected a PostgreSQL URL, sqlite:PATH or a directory, got %s")
      :format(where == "" and "an empty string" or type(where)), 0)
  end
  if where:match("^postgresql://") or where:match("^postgres://") then return where, where end
  local path = where:match("^sqlite:(.+)$")
  if path then return path, path end
  return M.path(where), M.path(where)
end

local Store = {}
Store.__index = Store

--- A connection to the store at `where` (see M.target), its tables made
-- when missing.  run: the run the methods read and write (store:use(run)
-- changes it).
function M.connect(where, run)
  local target, shown = M.target(where)
  local db, err = sql.open(target)
  if not db then fail("cannot open the run's store: %s", err) end
  local s = setmetatable({ db = db, where = shown, run = run, dialect = db:dialect() }, Store)
  if s.dialect == "postgresql" then
    s.schema = {}
    for k, stmt in ipairs(SCHEMA) do
      s.schema[k] = stmt:gsub("BLOB", "BYTEA"):gsub("REAL", "DOUBLE PRECISION"):gsub("INTEGER", "BIGINT")
    end
    -- states are stored as they are: the server's attempt to compress
    -- float data (it does not compress) tripled a checkpoint's time
    s.schema[#s.schema + 1] = "ALTER TABLE members ALTER COLUMN state SET STORAGE EXTERNAL"
    -- the database's clock (workers on several machines agree on it)
    s.now_expr = "extract(epoch FROM clock_timestamp())::double precision"
    s.lock_sql = "SELECT run FROM runs WHERE run = ? FOR UPDATE"
  else
    s.schema = SCHEMA
    s.now_expr = "((julianday('now') - 2440587.5) * 86400.0)"
    s.lock_sql = nil -- BEGIN IMMEDIATE holds the database's write lock
  end
  return s
end

--- Makes the tables when the store has none (a new database).
function Store:ensure_schema()
  if try(self.db.exec, self.db, "SELECT run FROM runs LIMIT 1") then return end
  self.db:transaction(function()
    for _, stmt in ipairs(self.schema) do self.db:exec(stmt) end
  end)
end

function Store:use(run) self.run = run; return self end

--- The database's clock, in seconds since the Unix epoch.
function Store:now() return self.db:exec("SELECT " .. self.now_expr .. " AS now")[1].now end

--- Locks the run's row until the transaction ends (PostgreSQL; SQLite's
-- transactions hold the write lock already).
function Store:lock()
  if self.lock_sql then self.db:exec(self.lock_sql, self.run) end
end

--- The names of the runs the store holds, sorted.
function Store:runs()
  local ok, rows = try(self.db.exec, self.db, "SELECT run FROM runs ORDER BY run")
  if not ok then return {} end
  local out = {}
  for k, r in ipairs(rows) do out[k] = r.run end
  return out
end

--- The run to use when none is named: the only one the store holds.
function Store:only_run()
  local runs = self:runs()
  if #runs == 1 then return runs[1] end
  if #runs == 0 then fail("%s holds no run", self.where) end
  fail("%s holds %d runs (%s): name one (--run NAME)", self.where, #runs, table.concat(runs, ", "))
end

--- Makes run self.run with the run's identity (a table of strings), in
-- its own transaction (or the caller's, when inside = true).
function Store:create(meta, inside)
  local db, run = self.db, self.run
  local function body()
    db:exec("INSERT INTO runs (run, next_seq, generation, status) VALUES (?, 1, 0, 'running')", run)
    db:exec("INSERT INTO meta (run, key, value) VALUES (?, 'format', ?)", run, tostring(M.FORMAT))
    local keys = {}
    for k in pairs(meta) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      db:exec("INSERT INTO meta (run, key, value) VALUES (?, ?, ?)", run, k, tostring(meta[k]))
    end
  end
  if inside then body() else db:transaction(body) end
end

--- The run's identity (meta), checked: the run exists, its format is this
-- pbt's.
function Store:meta()
  local ok, rows = try(self.db.exec, self.db, "SELECT key, value FROM meta WHERE run = ?", self.run)
  if not ok then
    -- a store of format 1 had meta(key, value): say which format it is
    local ok1, old = try(self.db.exec, self.db, "SELECT value FROM meta WHERE key = 'format'")
    if ok1 and old[1] then
      fail("%s is a run store of format %s; this pbt reads format %d", self.where, tostring(old[1].value),
        M.FORMAT)
    end
    fail("%s is not a run's store: %s", self.where, tostring(rows))
  end
  local meta = {}
  for _, r in ipairs(rows) do meta[r.key] = r.value end
  if not meta.format then fail("%s holds no run named '%s'", self.where, tostring(self.run)) end
  if meta.format ~= tostring(M.FORMAT) then
    fail("%s is a run store of format %s; this pbt reads format %d", self.where, tostring(meta.format),
      M.FORMAT)
  end
  return meta
end

--- The run's row: {next_seq, generation, status, message, deadline}.
function Store:run_row()
  return self.db:exec("SELECT * FROM runs WHERE run = ?", self.run)[1]
end

--- Removes run self.run and everything of it.
function Store:drop()
  local db, run = self.db, self.run
  db:transaction(function()
    for _, t in ipairs({ "meta", "runs", "members", "events", "scheduler" }) do
      db:exec(("DELETE FROM %s WHERE run = ?"):format(t), run)
    end
  end)
end

--- A new store in dir (run.db) holding one run with the run's identity
-- (a table of strings; its name, meta.name, names the run).  first(s), when
-- given, writes the run's first checkpoint in the same transaction as the
-- run (s:checkpoint(..., true)): a kill leaves either no run or a run that
-- can be resumed.
function M.create(dir, meta, first)
  local s = M.connect(dir, meta.name or "run")
  local ok, err = pcall(function()
    s:ensure_schema()
    s.db:transaction(function()
      -- (a run.db left by a killed start is used again, not removed: another
      -- process may be making its run in it right now)
      if s.db:exec("SELECT run FROM runs LIMIT 1")[1] then
        fail("%s holds a run (made since this one started)", s.where)
      end
      s:create(meta, true)
      if first then first(s) end
    end)
  end)
  if not ok then
    s:close()
    error(err, 0)
  end
  return s
end

--- The store of the run in dir, checked (SQLite's integrity check, the
-- format), and its identity.
function M.open(dir)
  local s = M.connect(dir)
  local ok, complaint = s.db:integrity()
  if not ok then
    s.db:close()
    fail("%s fails SQLite's integrity check: %s", M.path(dir), tostring(complaint))
  end
  local okm, meta = pcall(function()
    s.run = s:only_run()
    return s:meta()
  end)
  if not okm then
    s.db:close()
    if is_interrupt(meta) then error(meta, 0) end
    -- a run.db of format 1 has no runs table: say which format it is
    local db <close> = sql.open(M.path(dir))
    local ok1, old = try(function()
      local rows = db:exec("SELECT value FROM meta WHERE key = 'format'")
      return rows[1] and rows[1].value
    end)
    if ok1 and old and old ~= tostring(M.FORMAT) then
      fail("%s is a run store of format %s; this pbt reads format %d", M.path(dir), tostring(old), M.FORMAT)
    end
    if tostring(meta):find(" holds no run", 1, true) then
      fail("%s is not a run's store: it holds no run", M.path(dir))
    end
    error(meta, 0)
  end
  return s, meta
end

function Store:close() self.db:close() end

-- a member's published state as one value: {tensors = {name = t},
-- numbers = {name = x}} (the tensors are the store's own: copy them first
-- when the member may be training)
local function state_value(pop, i)
  local v = { tensors = {}, numbers = {} }
  for _, name in ipairs(pop:state_names(i)) do
    local x = pop:get_state(i, name)
    if type(x) == "number" then v.numbers[name] = x else v.tensors[name] = x end
  end
  return v
end
M.state_value = state_value

local UPSERT_MEMBER = "INSERT INTO members (run, member, record, state, since) VALUES (?, ?, ?, ?, ?) " ..
  "ON CONFLICT (run, member) DO UPDATE SET record = excluded.record, state = excluded.state, " ..
  "since = excluded.since"
local INSERT_EVENT = "INSERT INTO events (run, seq, kind, member, other, step, score, generation, " ..
  "detail, data, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
local UPSERT_SCHEDULER = "INSERT INTO scheduler (run, key, value) VALUES (?, ?, ?) " ..
  "ON CONFLICT (run, key) DO UPDATE SET value = excluded.value"
M.INSERT_EVENT = INSERT_EVENT

--- Member i's record as the store keeps it: without its curve (that is its
-- report events: not written twice, and a record does not grow with the run).
function M.record_blob(pop, i)
  local record = pop:record(i)
  record.curve = {}
  return sql.blob(encode(record))
end

function M.state_blob(pop, i) return sql.blob(encode(state_value(pop, i))) end

--- Inserts an event (a table of pop:events) numbered seq.
function Store:insert_event(ev, seq)
  self.db:exec(INSERT_EVENT, self.run, seq or ev.seq, ev.kind, ev.member, ev.other, ev.step, ev.score,
    ev.generation, ev.detail, ev.data, ev.time)
end

--- Writes the scheduler's state (a table of strings and numbers).
function Store:put_scheduler(scheduler)
  for k, v in pairs(scheduler) do
    self.db:exec(UPSERT_SCHEDULER, self.run, k, sql.blob(encode(v)))
  end
end

--- Writes a checkpoint in one transaction: members (a list of indices) with
-- their records, states and `since[i]`, the events given (tables of
-- pop:events with times) and the scheduler's state (a table of strings and
-- numbers).
function Store:checkpoint(pop, members, since, events, scheduler, inside)
  local db, run = self.db, self.run
  local function body()
    for _, i in ipairs(members) do
      db:exec(UPSERT_MEMBER, run, i, M.record_blob(pop, i), M.state_blob(pop, i), since[i])
    end
    for _, ev in ipairs(events) do self:insert_event(ev) end
    self:put_scheduler(scheduler)
  end
  if inside then body() else db:transaction(body) end
end

--- Everything a resumed run needs: members[i] = {record, state, since},
-- events (in seq order, numbered 1, 2, ... again when work was lost in
-- between: then gaps = true), scheduler = {key = value}.  A blob whose checksum fails is an
-- error naming the member and the table.
function Store:load()
  local db, run = self.db, self.run
  local out = { members = {}, events = {}, scheduler = {} }
  for _, r in ipairs(db:exec("SELECT member, record, state, since FROM members WHERE run = ? " ..
      "ORDER BY member", run)) do
    out.members[r.member] = {
      record = decode(r.record, ("members.record of member %d"):format(r.member)),
      state = decode(r.state, ("members.state of member %d"):format(r.member)),
      since = r.since,
    }
  end
  local rows = db:exec("SELECT seq, kind, member, other, step, score, generation, detail, data, time " ..
    "FROM events WHERE run = ? ORDER BY seq", run)
  for k, r in ipairs(rows) do
    if r.seq ~= k then out.gaps = true end
    r.seq = k
    out.events[k] = r
    -- each member's curve: its reports
    local m = r.kind == "report" and out.members[r.member]
    if m then
      local curve = m.record.curve
      curve[#curve + 1] = { r.step, r.score }
    end
  end
  for _, r in ipairs(db:exec("SELECT key, value FROM scheduler WHERE run = ?", run)) do
    out.scheduler[r.key] = decode(r.value, ("scheduler.%s"):format(r.key))
  end
  return out
end

--- Numbers the events 1, 2, ... again (after work lost in between), in one
-- transaction: the log a resumed run continues.
function Store:renumber(events)
  local db = self.db
  db:transaction(function()
    db:exec("DELETE FROM events WHERE run = ?", self.run)
    for _, ev in ipairs(events) do self:insert_event(ev) end
  end)
end

--- The identity of a run of experiment e with seed: what a resume checks.
function M.identity(e, seed)
  local meta = { seed = seed, name = e.name, population = e.population, mode = e.mode,
    sync = tostring(e.sync), window = e.window, budget = json.encode(e.budget) }
  local space = {}
  for _, name in ipairs(e.names) do space[#space + 1] = name .. " = " .. tostring(e.space[name]) end
  meta.space = table.concat(space, "; ")
  if e.file then
    local f = io.open(e.file, "rb")
    if f then
      meta.file = e.file
      meta.file_crc32 = core.crc32(f:read("a"))
      f:close()
    end
    if e.file_args ~= nil then meta.file_args = json.encode(e.file_args) end
  end
  return meta
end

return M
