--- pbt.reporter: what a run shows and writes, read from the population
-- store: the progress line, and the run directory --
--   events.jsonl   one JSON object per event, appended as the run goes
--                  (seq, kind, member, other, step, score, generation,
--                  detail, time, and an explore's `old` and `new`
--                  hyperparameters); `time` (wall clock) is the only field
--                  that differs between two runs of the same seed
--   scores.csv     member,step,score, the metrics eval gave (when it gave a
--                  table) and the member's hyperparameters at that report,
--                  for every report, appended
--   schedule.json  every member's schedule (written at the end)
--   best.pbt       the best member's state tensors, h and score (at the end)
--   scores.svg, hparam_<name>.svg, lineage.svg (at the end)
local core = require("pbt.core")
local json = require("pbt.json")
local svg = require("pbt.svg")

local M = {}

local Reporter = {}
Reporter.__index = Reporter

local function fail(err) error("experiment: " .. tostring(err), 0) end

--- A reporter for a run of experiment e on pop.  opts: out (directory or
-- nil), progress (boolean), keep (leave the files as they are until
-- rewrite(): a run being resumed).
function M.new(e, pop, opts)
  local r = setmetatable({ e = e, pop = pop, out = opts.out, progress = opts.progress,
    next_event = 1, shown = 0 }, Reporter)
  if r.out then
    local ok = core.mkdir(r.out)
    if not ok then fail(("cannot create directory %s"):format(r.out)) end
    if not opts.keep then r:rewrite() end
  end
  return r
end

--- An event of pop:events() as a plain table: the store's fields and
-- those of its data (an explore's `old` and `new`).
function M.event_table(ev)
  local text = ev.data
  if text then
    ev.data = nil
    -- the runner's own data, an explore's {"new":{...},"old":{...}}, the
    -- quick way; anything else through the whole decoder
    local new, old = text:match('^{"new":(%b{}),"old":(%b{})}$')
    local fields = new and { new = json.decode_object(new), old = json.decode_object(old) }
      or json.decode(text)
    for k, v in pairs(fields) do
      if ev[k] == nil then ev[k] = v end
    end
  end
  return ev
end

local encode_string, fmt = json.encode_string, string.format

local float_text = json.float_text

local function number(x)
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  if math.type(x) == "integer" then return tostring(x) end
  return float_text(x)
end

--- An event of pop:events() as one line of events.jsonl: its fields in a
-- fixed order (seq, kind, member, other, step, score, generation, detail,
-- the fields of its data, time), so that the same run gives the same text.
function M.event_line(ev)
  local t = { '{"seq":', ev.seq, ',"kind":"', ev.kind, '","member":', ev.member }
  if ev.other then t[#t + 1] = ',"other":'; t[#t + 1] = ev.other end
  t[#t + 1] = ',"step":'
  t[#t + 1] = ev.step
  if ev.score then t[#t + 1] = ',"score":'; t[#t + 1] = number(ev.score) end
  t[#t + 1] = ',"generation":'
  t[#t + 1] = ev.generation
  if ev.detail then t[#t + 1] = ',"detail":'; t[#t + 1] = encode_string(ev.detail) end
  if ev.data and ev.data ~= "{}" then t[#t + 1] = ","; t[#t + 1] = ev.data:sub(2, -2) end
  t[#t + 1] = ',"time":'
  t[#t + 1] = fmt("%.17g", ev.time)
  t[#t + 1] = "}"
  return table.concat(t)
end

local function append(path, text)
  local f, err = io.open(path, "a")
  if not f then fail(err) end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:flush() end
  f:close()
  if not ok then fail(werr) end
end

-- a CSV field: numbers exactly, strings quoted when they must be
local function csv_field(v)
  if v == nil then return "" end
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then return fmt("%.17g", v) end
  local str = tostring(v)
  if str:find('[,"\r\n]') then return '"' .. str:gsub('"', '""') .. '"' end
  return str
end

-- The data of a report event: {h =, metrics =} (the hyperparameters a
-- turn started with, the metrics of the evaluation), decoded.
local function report_data(ev)
  if not ev.data then return nil end
  local ok, t = pcall(json.decode, ev.data)
  return ok and type(t) == "table" and t or nil
end

-- The metric names the reports of events carry that names lacks; returns
-- whether there were any.
local function new_metrics(events, set)
  local found = false
  for _, ev in ipairs(events) do
    local d = ev.kind == "report" and report_data(ev)
    if d and d.metrics then
      for k in pairs(d.metrics) do
        if not set[k] then set[k], found = true, true end
      end
    end
  end
  return found
end

-- The header of scores.csv: member,step,score, the metrics (sorted), the
-- hyperparameters (a name a metric has too gets "h.").
function Reporter:csv_header()
  local names = {}
  for k in pairs(self.metric_set) do names[#names + 1] = k end
  table.sort(names)
  self.metric_names = names
  local cols = { "member", "step", "score" }
  for _, k in ipairs(names) do cols[#cols + 1] = csv_field(k) end
  for _, k in ipairs(self.e.names) do cols[#cols + 1] = csv_field(self.metric_set[k] and ("h." .. k) or k) end
  return table.concat(cols, ",") .. "\n"
end

-- the lines of events.jsonl and scores.csv for these events (the
-- hyperparameters each member had at each report are followed through the
-- reports that carry them)
function Reporter:lines_of(events)
  local lines, scores = {}, {}
  local cur_h, metric_names, hnames = self.cur_h, self.metric_names, self.e.names
  for k, ev in ipairs(events) do
    lines[k] = M.event_line(ev)
    if ev.kind == "report" then
      local d = report_data(ev)
      if d and d.h then cur_h[ev.member] = d.h end
      local row = { ev.member, ev.step, fmt("%.17g", ev.score) }
      local m = d and d.metrics or {}
      for _, name in ipairs(metric_names) do row[#row + 1] = csv_field(m[name]) end
      local h = cur_h[ev.member] or {}
      for _, name in ipairs(hnames) do row[#row + 1] = csv_field(h[name]) end
      scores[#scores + 1] = table.concat(row, ",") .. "\n"
    end
  end
  return lines, scores
end

--- Writes events.jsonl and scores.csv anew (atomically) from the whole log.
function Reporter:rewrite()
  local events = self.pop:events(1, true)
  self.cur_h, self.metric_set = {}, {}
  new_metrics(events, self.metric_set)
  local header = self:csv_header()
  local lines, scores = self:lines_of(events)
  local ok, err = core.write_file(self.out .. "/events.jsonl",
    #lines > 0 and table.concat(lines, "\n") .. "\n" or "")
  if not ok then fail(err) end
  ok, err = core.write_file(self.out .. "/scores.csv", header .. table.concat(scores))
  if not ok then fail(err) end
  self.next_event = #events > 0 and events[#events].seq + 1 or 1
end

--- Appends the events logged since the last flush to events.jsonl and
-- their reports to scores.csv (all of it again when a metric appears that
-- scores.csv has no column for).
function Reporter:flush()
  if not self.out then return end
  local events = self.pop:events(self.next_event, true)
  if #events == 0 then return end
  if not self.metric_set then return self:rewrite() end
  if new_metrics(events, self.metric_set) then return self:rewrite() end
  local lines, scores = self:lines_of(events)
  self.next_event = events[#events].seq + 1
  append(self.out .. "/events.jsonl", table.concat(lines, "\n") .. "\n")
  if #scores > 0 then append(self.out .. "/scores.csv", table.concat(scores)) end
end

--- The progress line (stderr), at most five times a second unless final.
-- s: steps, total (or nil), busy, workers, exploits, deadline (or nil),
-- evaluations budget (or nil).
function Reporter:show(s, final)
  if not self.progress then return end
  local now = core.clock()
  if not final and now - self.shown < 0.2 then return end
  self.shown = now
  local pop, mode = self.pop, self.e.mode
  local best, list = nil, {}
  for _, x in ipairs(pop:scores()) do
    if x == x and x ~= math.huge and x ~= -math.huge then list[#list + 1] = x end
  end
  table.sort(list)
  best = mode == "max" and list[#list] or list[1]
  local med = list[(#list + 1) // 2]
  local elapsed = now - s.start
  local left
  if s.deadline then left = math.max(0, s.deadline - now)
  elseif s.total and s.steps > 0 then left = elapsed * (s.total - s.steps) / s.steps end
  io.stderr:write(("\r%s: %d%s steps, best %.4g, median %.4g, %d exploits, %d/%d workers busy%s%s   ")
    :format(self.e.name, s.steps, s.total and ("/" .. s.total) or "", best or 0 / 0, med or 0 / 0,
      s.exploits, s.busy, s.workers,
      s.seconds and (", budget %.0f s"):format(s.seconds) or "",
      left and (", %.0f s left"):format(left) or ""))
  if final then io.stderr:write("\n") end
end

--- Writes schedule.json, best.pbt and the pictures from the store.
function Reporter:finish(result, best_tensors)
  if not self.out then return end
  self:flush()
  local out = self.out
  local plain = {}
  for i, s in ipairs(result.schedules) do plain[i] = M.schedule_table(s) end
  local ok, err = core.write_file(out .. "/schedule.json", json.encode(plain) .. "\n")
  if not ok then fail(err) end
  if result.best and best_tensors then
    local saved = { h = result.best.h, score = result.best.score, member = result.best.member,
      tensors = best_tensors }
    ok, err = core.save(out .. "/best.pbt", saved)
    if not ok then fail(err) end
  end
  M.write_pictures(out, self.e, result)
end

-- ---- schedules -----------------------------------------------------------------------

--- A schedule as a plain table for JSON: {root=, seed=, steps=, entries={...}}.
function M.schedule_table(s)
  local entries = {}
  for k, e in ipairs(s) do entries[k] = e end
  return { root = s.root, seed = s.seed, steps = s.steps, entries = entries }
end

-- ---- pictures ---------------------------------------------------------------------------

function M.write_pictures(out, e, result)
  local series = {}
  local exploits = {}
  for _, ev in ipairs(result.events) do
    if ev.kind == "exploit" then
      exploits[ev.member] = exploits[ev.member] or {}
      exploits[ev.member][#exploits[ev.member] + 1] = ev.step
    end
  end
  for i, curve in ipairs(result.scores) do
    local pts, marks, at = {}, {}, {}
    for _, s in ipairs(curve) do
      pts[#pts + 1] = { s[1], s[2] }
      at[s[1]] = s[2]
    end
    for _, st in ipairs(exploits[i] or {}) do
      if at[st] then marks[#marks + 1] = { st, at[st] } end
    end
    series[i] = { name = "member " .. i, points = pts, marks = marks }
  end
  local function write(name, text)
    local ok, err = core.write_file(out .. "/" .. name, text)
    if not ok then fail(err) end
  end
  write("scores.svg", svg.lines{ title = e.name .. ": score per member (circles: exploits)",
    xlabel = "step", ylabel = "score", series = series })
  for _, name in ipairs(e.names) do
    local d = e.space[name]
    local hs = {}
    for i, sched in ipairs(result.schedules) do
      local pts = {}
      for k, entry in ipairs(sched) do
        local v = entry.h[name]
        if d:categorical() then
          for idx, x in ipairs(d.values) do if x == v then v = idx end end
        end
        if type(v) == "number" then
          pts[#pts + 1] = { entry.step, v }
          local next_step = sched[k + 1] and sched[k + 1].step or sched.steps
          pts[#pts + 1] = { next_step, v }
        end
      end
      hs[i] = { name = "member " .. i, points = pts }
    end
    write("hparam_" .. name:gsub("[^%w_%-]", "_") .. ".svg", svg.lines{
      title = e.name .. ": schedule of " .. name .. (d:categorical() and " (choice index)" or ""),
      xlabel = "step", ylabel = name, series = hs, log_y = d.kind == "loguniform" })
  end
  local nodes = {}
  for _, ev in ipairs(result.events) do
    if ev.kind == "exploit" then
      nodes[#nodes + 1] = { member = ev.member, donor = ev.other, step = ev.step,
        label = ("step %d: member %d copied member %d"):format(ev.step, ev.member, ev.other) }
    end
  end
  for i = 1, #result.schedules do nodes[#nodes + 1] = { member = i, step = 0, label = "member " .. i } end
  write("lineage.svg", svg.lineage{ title = e.name .. ": lineage", nodes = nodes,
    members = #result.schedules })
end

return M
