--- pbt.experiment: describing and running a Population Based Training
-- experiment.
--
--   local pbt = require("pbt")
--   return pbt.experiment{
--     population = 8, seed = 1, mode = "max", sync = true,
--     space = { lr = pbt.loguniform(1e-3, 1), momentum = pbt.uniform(0, 0.99) },
--     init = function(h, g) return { model = ..., opt = ... } end,
--     step = function(state, h, g) ... end,        -- one unit of training
--     eval = function(state, h) return score end,
--     ready = pbt.ready.every(5),
--     exploit = pbt.exploit.truncation{fraction = 0.2},
--     explore = pbt.explore.perturb_or_resample{},
--     budget = { steps = 100 },                     -- or evaluations = n, seconds = s
--   }
--
-- A member's state is the table `init` returns.  Exploit copies it from the
-- donor: tensors (at any depth of plain tables, and the parameters of
-- objects with named_parameters(), such as pbt.nn modules) are copied by the
-- C population store into the recipient's own buffers; objects with
-- state_dict()/load_state_dict() (optimizers) go through those; numbers and
-- booleans in plain tables are assigned.  Everything else (functions,
-- strings, data sets) is left alone: it is not part of a member's state.
local core = require("pbt.core")
local space_mod = require("pbt.space")
local ready_mod = require("pbt.ready")
local explore_mod = require("pbt.explore")
local exploit_mod = require("pbt.exploit")
local autograd = require("pbt.autograd")
local json = require("pbt.json")
local svg = require("pbt.svg")

local Generator = core.Generator
local is_tensor = autograd.is_tensor

local M = {}

local Experiment = {}
Experiment.__index = Experiment
Experiment.__name = "pbt.Experiment"

local function fail(fmt, ...) error("experiment: " .. fmt:format(...), 3) end

--- Validates a description and returns an experiment.
function M.experiment(desc)
  if type(desc) ~= "table" then fail("expects a table, got %s", type(desc)) end
  local e = setmetatable({}, Experiment)
  e.population = desc.population or desc.size
  if math.type(e.population) ~= "integer" or e.population < 2 then
    fail("population must be an integer >= 2, got %s", tostring(e.population))
  end
  e.seed = desc.seed or 0
  if math.type(e.seed) ~= "integer" then fail("seed must be an integer, got %s", tostring(e.seed)) end
  e.space = desc.space or {}
  e.names = space_mod.names(e.space)
  for _, f in ipairs({ "init", "step", "eval" }) do
    if type(desc[f]) ~= "function" then fail("'%s' must be a function, got %s", f, type(desc[f])) end
    e[f] = desc[f]
  end
  e.ready = desc.ready or ready_mod.every(1)
  if type(e.ready) ~= "function" then fail("ready must be a function (see pbt.ready)") end
  e.exploit = exploit_mod.normalise(desc.exploit or exploit_mod.truncation{ fraction = 0.2 })
  e.explore = desc.explore or explore_mod.perturb_or_resample{}
  if type(e.explore) ~= "function" then fail("explore must be a function (see pbt.explore)") end
  e.mode = desc.mode or "max"
  if e.mode ~= "max" and e.mode ~= "min" then fail("mode must be \"max\" or \"min\", got %s", tostring(e.mode)) end
  e.sync = desc.sync
  if e.sync == nil then e.sync = true end
  e.budget = desc.budget or { steps = 100 }
  local b = e.budget
  if type(b) ~= "table" or not (b.steps or b.evaluations or b.seconds) then
    fail("budget must be a table with steps, evaluations or seconds")
  end
  for _, k in ipairs({ "steps", "evaluations" }) do
    if b[k] ~= nil and (math.type(b[k]) ~= "integer" or b[k] < 1) then
      fail("budget.%s must be a positive integer, got %s", k, tostring(b[k]))
    end
  end
  if b.seconds ~= nil and (type(b.seconds) ~= "number" or not (b.seconds > 0)) then
    fail("budget.seconds must be a positive number, got %s", tostring(b.seconds))
  end
  e.window = desc.window or 10
  if math.type(e.window) ~= "integer" or e.window < 2 then
    fail("window must be an integer >= 2, got %s", tostring(e.window))
  end
  -- variants (the paper's toy problem uses both): exploit may copy the
  -- weights only and keep the recipient's hyperparameters; explore may run
  -- at every ready decision, not only after an exploit
  e.copy_hparams = desc.copy_hparams ~= false
  e.explore_always = desc.explore_always == true
  e.initial = desc.initial
  if e.initial ~= nil and type(e.initial) ~= "table" and type(e.initial) ~= "function" then
    fail("initial must be a list of hyperparameter tables or a function(i, generator)")
  end
  e.name = desc.name or "experiment"
  e.on_step = desc.on_step
  return e
end

-- ---- member state -------------------------------------------------------------

--- Collects a state's parts: tensors (shared with the C store), numbers and
-- booleans (paths into plain tables), and objects copied by state_dict.
local function flatten(state)
  local parts = { tensors = {}, values = {}, objects = {} }
  local seen = {}
  local function walk(t, prefix, depth)
    if seen[t] or depth > 20 then return end
    seen[t] = true
    local keys = {}
    for k in pairs(t) do
      if type(k) == "string" or math.type(k) == "integer" then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    for _, k in ipairs(keys) do
      local v, name = t[k], prefix .. tostring(k)
      if is_tensor(v) then
        parts.tensors[#parts.tensors + 1] = { name = name, tensor = v }
      elseif type(v) == "number" or type(v) == "boolean" then
        parts.values[#parts.values + 1] = { name = name, table = t, key = k }
      elseif type(v) == "table" then
        if type(v.named_parameters) == "function" then
          for _, p in ipairs(v:named_parameters()) do
            parts.tensors[#parts.tensors + 1] = { name = name .. "." .. p[1], tensor = p[2] }
          end
          if type(v.named_buffers) == "function" then
            for _, b in ipairs(v:named_buffers()) do
              parts.tensors[#parts.tensors + 1] = { name = name .. "." .. b[1], tensor = b[2] }
            end
          end
        elseif type(v.state_dict) == "function" and type(v.load_state_dict) == "function" then
          parts.objects[#parts.objects + 1] = { name = name, object = v }
        elseif getmetatable(v) == nil then
          walk(v, name .. ".", depth + 1)
        end
      end
    end
  end
  if type(state) ~= "table" then
    error("experiment: init must return a table (the member's state)", 0)
  end
  walk(state, "", 0)
  return parts
end
M.flatten = flatten

--- Copies the Lua-side parts of a donor's state (numbers, objects) into a
-- recipient's; the tensors are the C store's business.
local function copy_lua_parts(dst, src)
  for k, v in ipairs(src.values) do
    local d = dst.values[k] -- same name: checked when the members were made
    d.table[d.key] = v.table[v.key]
  end
  for k, o in ipairs(src.objects) do
    dst.objects[k].object:load_state_dict(o.object:state_dict())
  end
end

--- The names of a state's parts, one string per kind, for comparing
-- members.
local function part_names(parts, kind)
  local names = {}
  for k, p in ipairs(parts[kind]) do names[k] = p.name end
  return table.concat(names, ", ")
end

local function copy_h(h)
  local c = {}
  for k, v in pairs(h) do c[k] = v end
  return c
end

-- Each member trains with its own generator, seeded from the experiment's
-- seed and its index (splitmix64 of both mixes them apart).
local function member_seed(seed, i)
  return seed * 1000003 + i * 7919 + 1
end
M.member_seed = member_seed

-- ---- the population store -------------------------------------------------------

local Pop = require("pbt.population")

-- hyperparameter kinds for the C store: choices are stored as 1-based indices
local function hp_specs(e)
  local specs = {}
  for k, name in ipairs(e.names) do
    local d = e.space[name]
    local kind = d:categorical() and "choice" or (d.kind == "int" and "int" or "float")
    if d.kind == "fixed" then
      kind = math.type(d.value) == "integer" and "int" or (type(d.value) == "number" and "float" or "choice")
    end
    specs[k] = { name = name, kind = kind,
      choices = d:categorical() and #d.values or (d.kind == "fixed" and type(d.value) ~= "number" and 1 or nil) }
  end
  return specs
end

local function to_store(d, v)
  if d:categorical() then
    for i, x in ipairs(d.values) do if x == v then return i end end
    error(("experiment: %s is not one of the choices of %s"):format(tostring(v), tostring(d)), 0)
  end
  if d.kind == "fixed" and type(d.value) ~= "number" then return 1 end
  return v
end

local function from_store(d, v)
  if d:categorical() then return d.values[v] end
  if d.kind == "fixed" then return d.value end
  return v
end

-- ---- running ----------------------------------------------------------------------

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

local function better(mode, a, b)
  if not finite(b) then return finite(a) end
  if not finite(a) then return false end
  if mode == "max" then return a > b end
  return a < b
end

local function atomic_write(path, text)
  local ok, err = core.write_file(path, text)
  if not ok then error("experiment: " .. tostring(err), 0) end
end

--- Runs the experiment.  opts: out (a directory for the run's files), seed
-- (overrides the experiment's), progress (true/false; default: when stderr
-- is a terminal), quiet.  Returns a result table:
--   best      = { member, score, h, state, schedule }
--   schedules = { [i] = schedule of member i }, a schedule being
--               { root = member whose initial weights began the lineage,
--                 seed = that member's generator seed, steps = total steps,
--                 { step = s, h = {...} }, ... } (h from step s on)
--   events    = the event log (a list of tables), scores = { [i] = {{step, score}, ...} }
function Experiment:run(opts)
  opts = opts or {}
  local e = self
  local seed = opts.seed or e.seed
  local n, mode = e.population, e.mode
  local G = Generator(seed) -- exploit and explore decisions
  local pop = Pop.new{ size = n, hparams = hp_specs(e), window = e.window }
  local members = {}
  local out = opts.out
  if out then
    local ok = core.mkdir(out)
    if not ok then error(("experiment: cannot create directory %s"):format(out), 0) end
  end
  local progress = opts.progress
  if progress == nil then progress = core.isatty(2) and not opts.quiet end
  local t_start = core.clock()

  local function set_h(i, h)
    for _, name in ipairs(e.names) do pop:set_hparam(i, name, to_store(e.space[name], h[name])) end
    members[i].h = h
  end

  -- members
  for i = 1, n do
    local g = Generator(member_seed(seed, i))
    local h
    if type(e.initial) == "function" then h = e.initial(i, G)
    elseif type(e.initial) == "table" then h = copy_h(e.initial[i] or error(
      ("experiment: initial has no hyperparameters for member %d"):format(i), 0))
    else h = space_mod.sample(e.space, G) end
    for _, name in ipairs(e.names) do
      if not e.space[name]:contains(h[name]) then
        error(("experiment: member %d starts with %s = %s, outside %s"):format(i, name,
          tostring(h[name]), tostring(e.space[name])), 0)
      end
    end
    local state = e.init(copy_h(h), g)
    local parts = flatten(state)
    members[i] = { g = g, h = h, state = state, parts = parts, steps = 0, since = 0,
      scores = {}, schedule = { root = i, seed = member_seed(seed, i), { step = 0, h = copy_h(h) } } }
  end
  -- a tensor that several members hold (a data set, a shared embedding) is
  -- shared on purpose: it is not part of any member's own state
  local holders = {}
  for i = 1, n do
    for _, p in ipairs(members[i].parts.tensors) do holders[p.tensor] = (holders[p.tensor] or 0) + 1 end
  end
  for i = 1, n do
    local own = {}
    for _, p in ipairs(members[i].parts.tensors) do
      if holders[p.tensor] == 1 then own[#own + 1] = p end
    end
    members[i].parts.tensors = own
  end
  -- every member's state has the same parts, matched by name
  for i = 2, n do
    for _, kind in ipairs({ "tensors", "values", "objects" }) do
      local a, b = part_names(members[1].parts, kind), part_names(members[i].parts, kind)
      if a ~= b then
        error(("experiment: member %d's state has %s {%s}, member 1's {%s}: init must build the " ..
          "same state for every member"):format(i, kind, b, a), 0)
      end
    end
  end
  for i = 1, n do
    for _, p in ipairs(members[i].parts.tensors) do pop:set_state(i, p.name, p.tensor) end
    set_h(i, members[i].h)
  end

  local evaluations, exploits, budget = 0, 0, e.budget
  local function out_of_budget(i)
    if budget.evaluations and evaluations >= budget.evaluations then return true end
    if budget.seconds and core.clock() - t_start >= budget.seconds then return true end
    if budget.steps and i and members[i].steps >= budget.steps then return true end
    return false
  end

  local view = { size = n }
  function view.score(_, i) return pop:scores()[i] end
  function view.scores(_) return pop:scores() end
  function view.history(_, i) return pop:history(i) end
  function view.histories(_)
    local hs = {}
    for i = 1, n do hs[i] = pop:history(i) end
    return hs
  end
  function view.hparams(_, i) return copy_h(members[i].h) end
  function view.member(_, i) return pop:member(i) end
  setmetatable(view, {
    __newindex = function() error("experiment: the population view is read-only", 2) end,
  })

  local function log(kind, i, other, detail) pop:log(kind, i, other or 0, detail or "") end

  -- one step and one evaluation of member i; false when it failed
  local function train(i)
    local m = members[i]
    local ok, err = pcall(e.step, m.state, m.h, m.g)
    local score
    if ok then
      ok, score = pcall(e.eval, m.state, m.h)
      if ok and type(score) ~= "number" then
        ok, err = false, "eval returned " .. type(score) .. ", not a number"
      elseif ok and score ~= score then
        ok, err = false, "eval returned NaN"
      elseif not ok then
        err = score
      end
    end
    m.steps, m.since = m.steps + 1, m.since + 1
    evaluations = evaluations + 1
    if not ok then
      pop:set_steps(i, m.steps)
      local okmsg, msg = pcall(tostring, err)
      m.last_error = okmsg and msg or "an error that cannot be printed"
      log("failure", i, nil, m.last_error) -- also marks it failed
      m.failed = true
      return false
    end
    pop:report(i, score, m.steps)
    m.scores[#m.scores + 1] = { m.steps, score }
    return true
  end

  -- copies donor d (when given) into recipient i, then explores; logs both
  local function exploit_explore(i, d)
    local m = members[i]
    local dm = d and members[d] or m
    local base = (d and e.copy_hparams) and dm.h or m.h
    if d then
      local own = m.h
      pop:exploit(i, d)
      exploits = exploits + 1
      copy_lua_parts(m.parts, dm.parts)
      m.failed = false
      m.steps = dm.steps -- the weights' training steps, through the lineage
      pop:set_steps(i, m.steps)
      if not e.copy_hparams then set_h(i, own) end
    end
    local h = e.explore(copy_h(base), e.space, G)
    if type(h) ~= "table" then
      error(("experiment: explore must return a table of hyperparameters, got %s"):format(type(h)), 0)
    end
    for _, name in ipairs(e.names) do
      if not e.space[name]:contains(h[name]) then
        error(("experiment: explore gave %s = %s, outside %s"):format(name, tostring(h[name]),
          tostring(e.space[name])), 0)
      end
    end
    set_h(i, h)
    local changes = {}
    for _, name in ipairs(e.names) do
      if h[name] ~= base[name] then
        changes[#changes + 1] = ("%s %s -> %s"):format(name, tostring(base[name]), tostring(h[name]))
      end
    end
    log("explore", i, d, table.concat(changes, ", "))
    -- the schedule: the donor's (or its own) up to now, then the explored
    -- values (with weights copied but hyperparameters kept, the schedule
    -- that made the weights is the donor's, and replay follows that)
    local s = { root = dm.schedule.root, seed = dm.schedule.seed }
    for _, entry in ipairs(dm.schedule) do
      if entry.step < m.steps then s[#s + 1] = { step = entry.step, h = copy_h(entry.h) } end
    end
    s[#s + 1] = { step = m.steps, h = copy_h(h) }
    m.schedule = s
    m.since = 0
  end

  local function best_alive()
    local b
    for j = 1, n do
      local sj = members[j].scores[#members[j].scores]
      if not members[j].failed and sj and (not b or better(mode, sj[2], members[b].scores[#members[b].scores][2])) then
        b = j
      end
    end
    return b
  end

  local function replace_failed(i)
    local d = best_alive()
    if not d then
      error(("experiment: every member has failed (member %d: %s)"):format(i,
        tostring(members[i].last_error)), 0)
    end
    exploit_explore(i, d)
  end

  local function show_progress()
    if not progress then return end
    local scores, best = {}, nil
    for j = 1, n do
      local s = members[j].scores[#members[j].scores]
      if s and finite(s[2]) then scores[#scores + 1] = s[2] end
    end
    table.sort(scores)
    if mode == "max" then best = scores[#scores] else best = scores[1] end
    local med = scores[(#scores + 1) // 2]
    local steps = 0
    for j = 1, n do steps = steps + members[j].steps end
    local total = budget.steps and budget.steps * n
    local elapsed = core.clock() - t_start
    local left = total and steps > 0 and elapsed * (total - steps) / steps
    io.stderr:write(("\r%s: %d%s steps, best %.4g, median %.4g, %d exploits%s   ")
      :format(e.name, steps, total and ("/" .. total) or "", best or 0 / 0, med or 0 / 0,
        exploits, left and (", %.0f s left"):format(left) or ""))
  end

  local function write_outputs(final)
    if not out then return end
    local lines = {}
    for _, ev in ipairs(pop:events()) do
      ev.time = nil
      lines[#lines + 1] = json.encode(ev)
    end
    atomic_write(out .. "/events.jsonl", table.concat(lines, "\n") .. (#lines > 0 and "\n" or ""))
    local csv = { "member,step,score" }
    for i = 1, n do
      for _, s in ipairs(members[i].scores) do csv[#csv + 1] = ("%d,%d,%.17g"):format(i, s[1], s[2]) end
    end
    atomic_write(out .. "/scores.csv", table.concat(csv, "\n") .. "\n")
    if final then M.write_pictures(out, e, members, pop:events()) end
  end

  -- the main loops
  if e.sync then
    while true do
      local stop = false
      for i = 1, n do if out_of_budget(i) then stop = true end end
      if stop or out_of_budget() then break end
      -- every member trains until ready (or failed, or out of budget); the
      -- ready rule is asked once per step, as in the asynchronous scheme
      local ready = {}
      for i = 1, n do
        local m = members[i]
        while not m.failed and not out_of_budget(i) do
          if not train(i) then break end
          if e.ready({ step = m.steps, since = m.since }) then
            log("ready", i)
            ready[i] = true
            break
          end
        end
      end
      -- decisions for the whole generation
      for i = 1, n do if members[i].failed then replace_failed(i) end end
      local donors
      if e.exploit.all then donors = e.exploit.all(view, G, mode)
      else
        donors = {}
        for i = 1, n do if ready[i] then donors[i] = e.exploit.one(view, i, G, mode) end end
      end
      -- recipients copy the donors' weights as they were before this round
      for i = 1, n do
        local d = donors[i]
        if ready[i] and (d or e.explore_always) then exploit_explore(i, d) end
        if ready[i] then members[i].since = 0 end
      end
      show_progress()
      write_outputs(false)
    end
  else
    -- the paper's asynchronous scheme, workers taken in turn
    local active = true
    while active do
      active = false
      for i = 1, n do
        local m = members[i]
        if not out_of_budget(i) and not out_of_budget() then
          active = true
          if train(i) then
            if e.ready({ step = m.steps, since = m.since }) then
              log("ready", i)
              local d = e.exploit.one(view, i, G, mode)
              if d or e.explore_always then exploit_explore(i, d) end
              m.since = 0
            end
          else
            replace_failed(i)
          end
        end
      end
      show_progress()
    end
    write_outputs(false)
  end
  if progress then io.stderr:write("\n") end

  -- the result
  local b = best_alive()
  local result = { events = pop:events(), schedules = {}, scores = {} }
  for i = 1, n do
    local s = members[i].schedule
    s.steps = members[i].steps
    result.schedules[i] = s
    result.scores[i] = members[i].scores
  end
  if b then
    local m = members[b]
    result.best = { member = b, score = m.scores[#m.scores][2], h = copy_h(m.h), state = m.state,
      schedule = result.schedules[b] }
  end
  for _, ev in ipairs(result.events) do ev.time = nil end
  if out then
    write_outputs(true)
    if b then
      local saved = { h = result.best.h, score = result.best.score, member = b, tensors = {} }
      for _, p in ipairs(members[b].parts.tensors) do saved.tensors[p.name] = p.tensor end
      local ok, err = core.save(out .. "/best.pbt", saved)
      if not ok then error("experiment: " .. tostring(err), 0) end
      local plain = {}
      for i, s in ipairs(result.schedules) do plain[i] = M.schedule_table(s) end
      atomic_write(out .. "/schedule.json", json.encode(plain) .. "\n")
    end
  end
  return result
end

-- ---- pictures ---------------------------------------------------------------------------

function M.write_pictures(out, e, members, events)
  local series = {}
  local exploits = {}
  for _, ev in ipairs(events) do
    if ev.kind == "exploit" then
      exploits[ev.member] = exploits[ev.member] or {}
      exploits[ev.member][#exploits[ev.member] + 1] = ev.step
    end
  end
  for i, m in ipairs(members) do
    local pts, marks, at = {}, {}, {}
    for _, s in ipairs(m.scores) do
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
    if not ok then error("experiment: " .. tostring(err), 0) end
  end
  write("scores.svg", svg.lines{ title = e.name .. ": score per member (circles: exploits)",
    xlabel = "step", ylabel = "score", series = series })
  for _, name in ipairs(e.names) do
    local d = e.space[name]
    local hs = {}
    for i, m in ipairs(members) do
      local pts = {}
      local sched = m.schedule
      for k, entry in ipairs(sched) do
        local v = entry.h[name]
        if d:categorical() then
          for idx, x in ipairs(d.values) do if x == v then v = idx end end
        end
        if type(v) == "number" then
          pts[#pts + 1] = { entry.step, v }
          local next_step = sched[k + 1] and sched[k + 1].step or m.steps
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
  for _, ev in ipairs(events) do
    if ev.kind == "exploit" then
      nodes[#nodes + 1] = { member = ev.member, donor = ev.other, step = ev.step,
        label = ("step %d: member %d copied member %d"):format(ev.step, ev.member, ev.other) }
    end
  end
  for i = 1, #members do nodes[#nodes + 1] = { member = i, step = 0, label = "member " .. i } end
  write("lineage.svg", svg.lineage{ title = e.name .. ": lineage", nodes = nodes, members = #members })
end

--- A schedule as a plain table for JSON: {root=, seed=, steps=, entries={...}}.
function M.schedule_table(s)
  local entries = {}
  for k, e in ipairs(s) do entries[k] = e end
  return { root = s.root, seed = s.seed, steps = s.steps, entries = entries }
end

--- The other way round (accepts a schedule that already is one).
local function schedule_from(t)
  if type(t) ~= "table" or not t.entries then return t end
  local s = { root = t.root, seed = t.seed, steps = t.steps }
  for k, e in ipairs(t.entries) do s[k] = e end
  return s
end

-- ---- replay -------------------------------------------------------------------------------

--- Trains one fresh member from scratch following a schedule (as recorded
-- in a run's result.schedules[i] or schedule.json), like Ray Tune's
-- PopulationBasedTrainingReplay.  `experiment` is an experiment or the path
-- of an experiment file.  Returns the final score and the state.
function M.replay(experiment, schedule, opts)
  opts = opts or {}
  local e = experiment
  if type(e) == "string" then e = M.load(e) end
  if getmetatable(e) ~= Experiment then error("replay: expects an experiment or a file name", 2) end
  schedule = schedule_from(schedule)
  if type(schedule) ~= "table" or not schedule[1] or not schedule[1].h then
    error("replay: the schedule must be a list of {step =, h =} entries (from a run's schedules)", 2)
  end
  local steps = opts.steps or schedule.steps
  if math.type(steps) ~= "integer" then error("replay: the schedule has no step count (steps)", 2) end
  local g = Generator(schedule.seed or member_seed(e.seed, schedule.root or 1))
  local k = 1
  local h = copy_h(schedule[1].h)
  local state = e.init(copy_h(h), g)
  local score
  for s = 1, steps do
    while schedule[k + 1] and schedule[k + 1].step <= s - 1 do
      k = k + 1
      h = copy_h(schedule[k].h)
    end
    e.step(state, h, g)
    score = e.eval(state, h)
  end
  return score, state, h
end

--- Loads an experiment file (a Lua file returning pbt.experiment{...}).
function M.load(path)
  local chunk, err = loadfile(path)
  if not chunk then error("pbt: " .. err, 0) end
  local e = chunk()
  if getmetatable(e) ~= Experiment then
    error(("pbt: %s does not return pbt.experiment{...}"):format(path), 0)
  end
  return e
end

M.Experiment = Experiment
return M
