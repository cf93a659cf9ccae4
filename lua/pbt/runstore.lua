--- pbt.runstore: a run's store in DIR/run.db (SQLite, WAL), so that a run
-- survives kill -9 and continues where its last checkpoint left it.
--
-- Tables:
--   meta(key, value)            what the run is: format, the experiment
--                               file's path and CRC-32, seed, name,
--                               population, mode, sync, window, budget and
--                               the space (as text)
--   members(member, record, state, since)
--                               each member's checkpoint: its record in the
--                               store (pop:record, pbt.encode'd, without
--                               its curve: that is its report events), its
--                               published state (tensors and numbers,
--                               pbt.encode'd: a CRC-32 checked on read) and
--                               its steps since its last decision
--   events(seq, kind, member, other, step, score, generation, detail, data,
--          time)                the event log, as far as the checkpoints go
--   scheduler(key, value)       the decisions' generator, the generation
--                               count, the time spent
-- A checkpoint is one transaction: the members given, their events and the
-- scheduler's state, so the database holds a consistent run at every
-- instant.  The scheduler writes one after each synchronous generation (all
-- members) and after each asynchronous decision (that member, and its own
-- events only: a resumed member starts from its checkpoint, so nothing of
-- it is logged twice).
local core = require("pbt.core")
local json = require("pbt.json")

local sql = core.sql
local encode, decode = core.encode, core.decode

local M = {}

M.FORMAT = 1

local SCHEMA = {
  "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
  "CREATE TABLE IF NOT EXISTS members (member INTEGER PRIMARY KEY, record BLOB NOT NULL, " ..
    "state BLOB NOT NULL, since INTEGER NOT NULL)",
  "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, " ..
    "member INTEGER NOT NULL, other INTEGER, step INTEGER NOT NULL, score REAL, " ..
    "generation INTEGER NOT NULL, detail TEXT, data TEXT, time REAL NOT NULL)",
  "CREATE TABLE IF NOT EXISTS scheduler (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
}

local function fail(fmt, ...) error("experiment: " .. fmt:format(...), 0) end

function M.path(dir) return dir .. "/run.db" end

--- Does dir hold a run?
function M.exists(dir)
  local f = io.open(M.path(dir), "rb")
  if f then f:close() end
  return f ~= nil
end

--- Removes dir's run.db (and its WAL files): a run started again.
function M.remove(dir)
  for _, suffix in ipairs({ "", "-wal", "-shm" }) do os.remove(M.path(dir) .. suffix) end
end

local Store = {}
Store.__index = Store

local function open(dir)
  local db, err = sql.open(M.path(dir))
  if not db then fail("cannot open the run's store: %s", err) end
  return setmetatable({ db = db, dir = dir }, Store)
end

--- A new store in dir with the run's identity (a table of strings).
function M.create(dir, meta)
  local s = open(dir)
  s.db:transaction(function()
    for _, stmt in ipairs(SCHEMA) do s.db:exec(stmt) end
    s.db:exec("INSERT INTO meta (key, value) VALUES ('format', ?)", tostring(M.FORMAT))
    local keys = {}
    for k in pairs(meta) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      s.db:exec("INSERT INTO meta (key, value) VALUES (?, ?)", k, tostring(meta[k]))
    end
  end)
  return s
end

--- The store of the run in dir, checked (SQLite's integrity check, the
-- format), and its identity.
function M.open(dir)
  local s = open(dir)
  local ok, complaint = s.db:integrity()
  if not ok then
    s.db:close()
    fail("%s fails SQLite's integrity check: %s", M.path(dir), tostring(complaint))
  end
  local okm, rows = pcall(s.db.exec, s.db, "SELECT key, value FROM meta")
  if not okm then
    s.db:close()
    fail("%s is not a run's store: %s", M.path(dir), tostring(rows))
  end
  local meta = {}
  for _, r in ipairs(rows) do meta[r.key] = r.value end
  if meta.format ~= tostring(M.FORMAT) then
    s.db:close()
    fail("%s is a run store of format %s; this pbt reads format %d", M.path(dir),
      tostring(meta.format), M.FORMAT)
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

--- Writes a checkpoint in one transaction: members (a list of indices) with
-- their records, states and `since[i]`, the events given (tables of
-- pop:events with times) and the scheduler's state (a table of strings and
-- numbers).
function Store:checkpoint(pop, members, since, events, scheduler)
  local db, blob = self.db, sql.blob
  db:transaction(function()
    for _, i in ipairs(members) do
      -- the curve is the member's report events: not written twice (and a
      -- record does not grow with the run)
      local record = pop:record(i)
      record.curve = {}
      db:exec("INSERT OR REPLACE INTO members (member, record, state, since) VALUES (?, ?, ?, ?)",
        i, blob(encode(record)), blob(encode(state_value(pop, i))), since[i])
    end
    for _, ev in ipairs(events) do
      db:exec("INSERT INTO events (seq, kind, member, other, step, score, generation, detail, data, " ..
        "time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ev.seq, ev.kind, ev.member, ev.other, ev.step,
        ev.score, ev.generation, ev.detail, ev.data, ev.time)
    end
    for k, v in pairs(scheduler) do
      db:exec("INSERT OR REPLACE INTO scheduler (key, value) VALUES (?, ?)", k, blob(encode(v)))
    end
  end)
end

--- Everything a resumed run needs: members[i] = {record, state, since},
-- events (in seq order, numbered 1, 2, ... again when work was lost in
-- between: then gaps = true), scheduler = {key = value}.  A blob whose checksum fails is an
-- error naming the member and the table.
function Store:load()
  local db = self.db
  local out = { members = {}, events = {}, scheduler = {} }
  for _, r in ipairs(db:exec("SELECT member, record, state, since FROM members ORDER BY member")) do
    out.members[r.member] = {
      record = decode(r.record, ("members.record of member %d"):format(r.member)),
      state = decode(r.state, ("members.state of member %d"):format(r.member)),
      since = r.since,
    }
  end
  local rows = db:exec("SELECT * FROM events ORDER BY seq")
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
  for _, r in ipairs(db:exec("SELECT key, value FROM scheduler")) do
    out.scheduler[r.key] = decode(r.value, ("scheduler.%s"):format(r.key))
  end
  return out
end

--- Numbers the events 1, 2, ... again (after work lost in between), in one
-- transaction: the log a resumed run continues.
function Store:renumber(events)
  local db = self.db
  db:transaction(function()
    db:exec("DELETE FROM events")
    for _, ev in ipairs(events) do
      db:exec("INSERT INTO events (seq, kind, member, other, step, score, generation, detail, data, " ..
        "time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ev.seq, ev.kind, ev.member, ev.other, ev.step,
        ev.score, ev.generation, ev.detail, ev.data, ev.time)
    end
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
