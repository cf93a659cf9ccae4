--- pbt.reporter: what a run shows and writes, read from the population
-- store: the progress line, and the run directory --
--   events.jsonl   one JSON object per event, appended as the run goes
--                  (a slot's first report carries its first h, `h`; an
--                  explore its `old` and `new` h; a report its `metrics`)
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
--   index.html     one page: the pictures, the members, the best member's
--                  schedule (at the end; no network needed)
local core = require("pbt.core")
local json = require("pbt.json")
local svg = require("pbt.svg")
local try = require("pbt.shared").try

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
-- slot starts with, the metrics of the evaluation), decoded.
-- (decoded once per event table: new_metrics and lines_of both read it)
local function report_data(ev)
  if not ev.data then return nil end
  local d = ev.decoded
  if d == nil then
    local ok, t = try(json.decode, ev.data)
    d = ok and type(t) == "table" and t or false
    ev.decoded = d
  end
  return d or nil
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
  local fixed = { member = true, step = true, score = true }
  for _, k in ipairs(names) do cols[#cols + 1] = csv_field(fixed[k] and ("metric." .. k) or k) end
  for _, k in ipairs(self.e.names) do
    cols[#cols + 1] = csv_field((self.metric_set[k] or fixed[k]) and ("h." .. k) or k)
  end
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
    if ev.kind == "explore" and ev.data then
      -- a decision's new hyperparameters: the member's from its next report on
      local new = ev.data:match('^{"new":(%b{}),"old":')
      if new then cur_h[ev.member] = json.decode_object(new) end
    elseif ev.kind == "report" then
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

-- ---- pictures and the report page -------------------------------------------------------

-- What the pictures draw, followed through the event log: each member's
-- runs of scores and of each hyperparameter (a run ends where the member
-- copied another: the next starts from the donor's point), and the lineage
-- (which member's first weights each member slot holds, step by step).
local function trace(e, result)
  local n = #result.schedules
  local names, space = e.names, e.space
  local score_runs, hruns = {}, {}
  local cur, hcur, cur_h = {}, {}, {}
  for _, name in ipairs(names) do hruns[name], hcur[name] = {}, {} end
  local root, bar_from, last_step = {}, {}, {}
  for m = 1, n do root[m], bar_from[m], last_step[m] = m, 0, 0 end
  local bars, edges, exploits_into = {}, {}, {}
  local function value(name, h)
    local v = h and h[name]
    local d = space[name]
    if v ~= nil and d:categorical() then
      for k, x in ipairs(d.values) do if x == v then return k end end
      return nil
    end
    return type(v) == "number" and v or nil
  end
  for _, ev in ipairs(result.events) do
    local m = ev.member
    if ev.kind == "report" then
      if not cur[m] then
        cur[m] = { member = m, points = {} }
        score_runs[#score_runs + 1] = cur[m]
      end
      local pts = cur[m].points
      pts[#pts + 1] = { ev.step, ev.score }
      if ev.h then cur_h[m] = ev.h end
      for _, name in ipairs(names) do
        local v = value(name, cur_h[m])
        if v ~= nil then
          local run = hcur[name][m]
          if not run then
            run = { member = m, points = {} }
            hcur[name][m] = run
            hruns[name][#hruns[name] + 1] = run
          end
          local hp = run.points
          local prev = hp[#hp]
          if prev and prev[2] ~= v then hp[#hp + 1] = { prev[1], v } end -- a step, not a slope
          hp[#hp + 1] = { ev.step, v }
        end
      end
      last_step[m] = math.max(last_step[m], ev.step)
    elseif ev.kind == "explore" and ev.new then
      cur_h[m] = ev.new
    elseif ev.kind == "exploit" and ev.other then
      local d = ev.other
      cur[m] = { member = m, points = {}, from = { ev.step, ev.score, d } }
      score_runs[#score_runs + 1] = cur[m]
      for _, name in ipairs(names) do
        local dv = value(name, cur_h[d])
        local run = { member = m, points = {}, from = dv ~= nil and { ev.step, dv, d } or nil }
        hcur[name][m] = run
        hruns[name][#hruns[name] + 1] = run
      end
      bars[#bars + 1] = { member = m, root = root[m], from = bar_from[m], to = ev.step }
      root[m], bar_from[m] = root[d], ev.step
      edges[#edges + 1] = { member = m, donor = d, step = ev.step, root = root[d] }
      exploits_into[m] = (exploits_into[m] or 0) + 1
      last_step[m] = math.max(last_step[m], ev.step)
    end
  end
  local smax = 1
  for m = 1, n do
    bars[#bars + 1] = { member = m, root = root[m], from = bar_from[m], to = last_step[m] }
    smax = math.max(smax, last_step[m])
  end
  return { score_runs = score_runs, hruns = hruns, bars = bars, edges = edges, steps = smax,
    exploits_into = exploits_into, root = root }
end

local function html_escape(v) return svg.escape(v) end

local function html_value(v)
  if v == nil then return "-" end
  if math.type(v) == "float" then return ("%.6g"):format(v) end
  return html_escape(tostring(v))
end

-- DIR/index.html: the pictures, a table of the members and the best
-- member's schedule on one page, nothing fetched from the network.
local function index_html(e, result, t, pictures)
  local out = {}
  local function w(s) out[#out + 1] = s end
  local names = e.names
  w('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">')
  w(("<title>pbt run: %s</title>"):format(html_escape(e.name)))
  w([[<style>
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.sw { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: middle; }
tr.best { background: #fff7d6; }
img { display: block; margin: 10px 0; border: 1px solid #eee; max-width: 100%; }
</style>]])
  w("</head>\n<body>")
  w(("<h1>%s</h1>"):format(html_escape(e.name)))
  local b = result.best
  w(("<p>%d members, %s, %s mode, seed %s; %d events.%s</p>"):format(#result.schedules,
    e.sync and "synchronous" or "asynchronous", html_escape(e.mode), html_escape(tostring(result.seed or e.seed)),
    #result.events, b and (" Best: member %d, score %s."):format(b.member, html_value(b.score)) or " No member has a score."))
  w("<h2>Members</h2>\n<table>\n<tr><th class=\"l\">member</th><th>final score</th><th>steps</th>" ..
    "<th>exploits into it</th><th>first weights of</th>")
  for _, name in ipairs(names) do w(("<th>%s</th>"):format(html_escape(name))) end
  w("</tr>")
  for m, sched in ipairs(result.schedules) do
    local curve = result.scores[m] or {}
    local last = curve[#curve]
    local h = sched[#sched] and sched[#sched].h or {}
    w(("<tr%s><td class=\"l\"><span class=\"sw\" style=\"background:%s\"></span>%d</td><td>%s</td>" ..
      "<td>%d</td><td>%d</td><td>%d</td>"):format(b and b.member == m and ' class="best"' or "", svg.color(m), m,
      last and html_value(last[2]) or "-", sched.steps or 0, t.exploits_into[m] or 0, t.root[m] or m))
    local row = {}
    for _, name in ipairs(names) do row[#row + 1] = ("<td>%s</td>"):format(h[name] ~= nil and html_value(h[name]) or "-") end
    out[#out] = out[#out] .. table.concat(row) .. "</tr>"
  end
  w("</table>")
  if b and b.schedule then
    w(("<h2>The best member's schedule (member %d, from member %d's first weights)</h2>"):format(b.member,
      b.schedule.root or b.member))
    w("<table>\n<tr><th>from step</th>")
    for _, name in ipairs(names) do w(("<th>%s</th>"):format(html_escape(name))) end
    w("</tr>")
    for _, entry in ipairs(b.schedule) do
      local row = { ("<tr><td>%d</td>"):format(entry.step) }
      for _, name in ipairs(names) do row[#row + 1] = ("<td>%s</td>"):format(html_value(entry.h[name])) end
      w(table.concat(row) .. "</tr>")
    end
    w("</table>")
  end
  w("<h2>Pictures</h2>")
  for _, p in ipairs(pictures) do
    w(('<img src="%s" alt="%s" width="760" height="440">'):format(html_escape(p[1]), html_escape(p[2])))
  end
  -- a picture that did not load says so (in the console too: a check of
  -- the page sees it), and the page marks itself loaded
  w([[<script>
window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    if (!img.complete || img.naturalWidth === 0) {
      console.error("pbt report: picture missing: " + img.getAttribute("src"));
      var note = document.createElement("p");
      note.textContent = "missing picture: " + img.getAttribute("src");
      img.replaceWith(note);
    }
  });
  document.body.setAttribute("data-loaded", "yes");
});
</script>]])
  w("</body>\n</html>\n")
  return table.concat(out, "\n")
end

function M.write_pictures(out, e, result)
  local t = trace(e, result)
  local n = #result.schedules
  local function write(name, text)
    local ok, err = core.write_file(out .. "/" .. name, text)
    if not ok then fail(err) end
  end
  local pictures = {}
  -- scores that are all positive and span more than two decades (a loss
  -- falling to zero) read best on a log axis
  local lo, hi = math.huge, -math.huge
  for _, run in ipairs(t.score_runs) do
    for _, p in ipairs(run.points) do
      local v = p[2]
      if v == v and v ~= math.huge and v ~= -math.huge then lo, hi = math.min(lo, v), math.max(hi, v) end
    end
  end
  local log_scores = lo > 0 and hi / lo > 100
  write("scores.svg", svg.curves{ title = e.name .. ": score per member", xlabel = "step",
    ylabel = "score" .. (e.mode == "min" and " (lower is better)" or "") .. (log_scores and ", log scale" or ""),
    runs = t.score_runs, members = n, log_y = log_scores })
  pictures[1] = { "scores.svg", "score per member; a dashed line with a circle: an exploit, from the donor's point" }
  for _, name in ipairs(e.names) do
    local d = e.space[name]
    local cats
    if d:categorical() then
      cats = {}
      for k, v in ipairs(d.values) do cats[k] = tostring(v) end
    end
    local file = "hparam_" .. name:gsub("[^%w_%-]", "_") .. ".svg"
    write(file, svg.curves{ title = e.name .. ": " .. name .. " per member", xlabel = "step", ylabel = name,
      runs = t.hruns[name], members = n, categories = cats, log_y = d.kind == "loguniform" })
    pictures[#pictures + 1] = { file, name .. " per member over the steps" }
  end
  write("lineage.svg", svg.lineage{ title = e.name .. ": lineage", members = n, steps = t.steps,
    bars = t.bars, edges = t.edges })
  pictures[#pictures + 1] = { "lineage.svg", "lineage: whose first weights each member holds, and the exploits" }
  write("index.html", index_html(e, result, t, pictures))
end

return M
