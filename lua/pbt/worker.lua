--- pbt.worker: the worker of a run.  It trains one member at a time until
-- the member is ready (or out of budget, or failed), in the caller's Lua
-- state or in a thread with a Lua state of its own (thread_main).
--
-- A worker holds ONE live state, built by the experiment's init; to train
-- member i it loads i's published state from the population store into it
-- (unless it holds i at the store's version already), and after each step
-- and evaluation it publishes the state with the score it earned.  So a
-- member may train on any worker, and exploit copies published states only.
--
-- What a member's state is: the table init returns, walked in sorted key
-- order: tensors (at any depth of tables), the parameters and buffers of
-- objects with named_parameters() (pbt.nn modules), the buffers, step
-- counts and hyperparameter fields of pbt.optim optimizers (made whole at
-- once by opt:materialize()), and numbers and booleans.  Tables with a
-- metatable of another kind (a Lua class) are walked like plain ones.
-- Functions, strings and coroutines are not state: a value a member needs
-- across steps must live in a number, a boolean or a tensor.  A function in
-- the state that holds (as an upvalue) a model, an optimizer or a tensor
-- that requires grad which the state itself does not hold is refused:
-- exploit could not copy it, and would copy the rest.  Tensors from
-- pbt.shared, and names the run found in every member's state at once (a
-- data set put in the state), are left out.
local core = require("pbt.core")
local autograd = require("pbt.autograd")
local shared = require("pbt.shared")
local json = require("pbt.json")

local Generator = core.Generator
local is_tensor = autograd.is_tensor
local is_interrupt, try = shared.is_interrupt, shared.try
local clock = core.clock
local pack, unpack = string.pack, string.unpack

local M = {}

local message = shared.message

-- ---- a member's state ------------------------------------------------------------

local function sorted_keys(t)
  local keys = {}
  for k in next, t do
    if type(k) == "string" or math.type(k) == "integer" then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  return keys
end

--- The parts of a state: tensors = {{name=, tensor=}}, values = {{name=,
-- table=, key=}} (numbers and booleans), in a fixed order.  Names in
-- `excluded` and tensors from pbt.shared are left out.
function M.parts(state, excluded)
  if type(state) ~= "table" then
    error("experiment: init must return a table (the member's state)", 0)
  end
  excluded = excluded or {}
  local parts = { tensors = {}, values = {}, optimizers = {} }
  local seen, named = {}, {}
  local function name_once(name)
    if named[name] then
      error(("experiment: the state has two parts named '%s' (a key \"a.b\" beside a.b, or " ..
        "\"1\" beside 1): rename one"):format(name), 0)
    end
    named[name] = true
  end
  -- (table, key): where a tensor of a plain table sits, so that a step
  -- that puts a new tensor there is noticed (see Worker:refresh)
  local function add_tensor(name, t, table, key)
    name_once(name)
    if not excluded[name] and not shared.from_shared[t] then
      parts.tensors[#parts.tensors + 1] = { name = name, tensor = t, table = table, key = key }
    end
  end
  local walk
  local closures = {} -- {name =, fn =}: functions found in the state
  local function visit(t, k, prefix, depth)
    local v, name = rawget(t, k), prefix .. tostring(k)
    if is_tensor(v) then add_tensor(name, v, t, k)
    elseif type(v) == "number" or type(v) == "boolean" then
      name_once(name)
      if not excluded[name] then parts.values[#parts.values + 1] = { name = name, table = t, key = k } end
    elseif type(v) == "function" then
      closures[#closures + 1] = { name = name, fn = v }
    elseif type(v) == "table" then
      if type(v.named_parameters) == "function" then
        seen[v] = true
        for _, p in ipairs(v:named_parameters()) do add_tensor(name .. "." .. p[1], p[2]) end
        if type(v.named_buffers) == "function" then
          for _, b in ipairs(v:named_buffers()) do add_tensor(name .. "." .. b[1], b[2]) end
        end
      elseif type(v.materialize) == "function" and type(v.params) == "table" and v.state then
        -- a pbt.optim optimizer: its hyperparameter fields and its state
        -- (not its params: those are the model's)
        seen[v] = true
        parts.optimizers[#parts.optimizers + 1] = { name = name, opt = v }
        v:materialize()
        for _, f in ipairs(v.fields) do visit(v, f.name, name .. ".", depth + 1) end
        walk(v.state, name .. ".state.", depth + 1)
      else
        walk(v, name .. ".", depth + 1)
      end
    end
  end
  function walk(t, prefix, depth)
    if seen[t] or depth > 20 then return end
    seen[t] = true
    for _, k in ipairs(sorted_keys(t)) do visit(t, k, prefix, depth) end
  end
  walk(state, "", 0)
  -- what a function of the state holds must be in the state too
  local held = {}
  for _, p in ipairs(parts.tensors) do held[p.tensor] = true end
  -- a model or an optimizer is held when every parameter of it is
  local function all_held(list)
    for _, p in ipairs(list) do
      local t = p[2] or p
      if is_tensor(t) and not held[t] and not shared.from_shared[t] then return false end
    end
    return true
  end
  local function unheld(v)
    if is_tensor(v) then
      return v.requires_grad == true and not held[v] and not shared.from_shared[v] and "a tensor that requires grad"
    end
    if type(v) ~= "table" then return false end
    if type(v.named_parameters) == "function" then
      local ok, ps = try(v.named_parameters, v)
      return ok and type(ps) == "table" and not all_held(ps) and "a model"
    end
    if type(v.materialize) == "function" and type(v.params) == "table" then
      return not all_held(v.params) and "an optimizer"
    end
    return false
  end
  -- what a function reaches through its upvalues: tensors, models,
  -- optimizers, inside plain tables and other functions (not the modules
  -- pbt or the standard library are: package.loaded's tables are skipped)
  local loaded = {}
  for _, m in pairs(package.loaded) do if type(m) == "table" then loaded[m] = true end end
  local visited = {}
  local function reach(fn, fname, path, depth)
    if visited[fn] or depth > 4 then return end
    visited[fn] = true
    for u = 1, 255 do
      local uname, uv = debug.getupvalue(fn, u)
      if not uname then break end
      local here = path and (path .. "." .. uname) or uname
      local what = unheld(uv)
      if what then
        error(("experiment: the state's '%s' is a function that holds %s (its upvalue '%s') which the " ..
          "state does not: exploit could not copy it. Put it in the state table (state.%s = ...) and " ..
          "read it from there"):format(fname, what, here, uname), 0)
      end
      if type(uv) == "function" then reach(uv, fname, here, depth + 1)
      elseif type(uv) == "table" and not loaded[uv] and not visited[uv] and uname ~= "_ENV"
          and type(uv.named_parameters) ~= "function" then
        visited[uv] = true
        for k, x in pairs(uv) do
          local w = unheld(x)
          if w then
            error(("experiment: the state's '%s' is a function that holds %s (in its upvalue '%s', key %s) " ..
              "which the state does not: exploit could not copy it. Put it in the state table and read it " ..
              "from there"):format(fname, w, here, tostring(k)), 0)
          end
          if type(x) == "function" then reach(x, fname, here .. "." .. tostring(k), depth + 1) end
        end
      end
    end
  end
  for _, c in ipairs(closures) do reach(c.fn, c.name, nil, 0) end
  return parts
end

-- numbers of the value parts as the store takes them (booleans as 0 / 1)
local function read_values(values, out)
  for k, v in ipairs(values) do
    local x = v.table[v.key]
    if x == true then x = 1 elseif x == false then x = 0
    elseif type(x) ~= "number" then
      error(("the state's '%s' is now a %s, not a number or a boolean"):format(v.name, type(x)), 0)
    end
    out[k] = x
  end
  return out
end

local function write_values(values, numbers)
  for k, v in ipairs(values) do
    local x = numbers[k]
    if type(v.table[v.key]) == "boolean" then x = x ~= 0 end
    v.table[v.key] = x
  end
end
M.read_values = read_values

-- ---- hyperparameters between Lua and the store -----------------------------------

-- per experiment: the hyperparameters whose store value is not the value
-- itself, {name, values} for choices and {name, nil, value} for fixed ones
local conversions = setmetatable({}, { __mode = "k" })
local function converted(e)
  local list = conversions[e]
  if list then return list end
  list = {}
  for _, name in ipairs(e.names) do
    local d = e.space[name]
    if d:categorical() then list[#list + 1] = { name, d.values }
    elseif d.kind == "fixed" then list[#list + 1] = { name, nil, d.value } end
  end
  conversions[e] = list
  return list
end

--- Hyperparameters as the store gives them (choices as 1-based indices),
-- turned into Lua values in place (choices as the values themselves).
function M.from_store(e, h)
  for _, c in ipairs(converted(e)) do
    local name, values = c[1], c[2]
    if values then h[name] = values[h[name]] else h[name] = c[3] end
  end
  return h
end

--- Member i's hyperparameters as Lua values.
function M.hparams(e, pop, i) return M.from_store(e, pop:hparams(i)) end

-- ---- the worker ----------------------------------------------------------------------

local Worker = {}
Worker.__index = Worker

--- A worker for experiment e on population pop.  opts: seed (the run's),
-- excluded (names left out of states).
function M.new(e, pop, opts)
  return setmetatable({ e = e, pop = pop, seed = opts.seed, excluded = opts.excluded or {},
    g = Generator(0), numbers = {} }, Worker)
end

-- Walks the live state again when a step put new tensors where the parts
-- had others (`state.w = state.w - lr * grad` instead of an update in
-- place): the store then receives the new ones (same names and shapes).
function Worker:refresh()
  for _, p in ipairs(self.parts.tensors) do
    if p.table and rawget(p.table, p.key) ~= p.tensor then
      self.parts = M.parts(self.state, self.excluded)
      self.tensors = {}
      for k, q in ipairs(self.parts.tensors) do self.tensors[k] = q.tensor end
      return
    end
  end
end

-- The live state, loaded with member i.
function Worker:state_for(i, h)
  local pop = self.pop
  if not self.state then
    -- the template: init's state for this member's hyperparameters, with a
    -- generator of its own (the member's weights come from the store)
    local ok, state = try(self.e.init, h, Generator(self.seed * 7 + 3))
    if not ok then error("init: " .. message(state), 0) end
    self.parts = M.parts(state, self.excluded)
    self.tensors = {}
    for k, p in ipairs(self.parts.tensors) do self.tensors[k] = p.tensor end
    self.state = state
    -- optimizer fields named like a hyperparameter: checked after each step
    -- against the member's h (an lr that differs from h.lr in silence is
    -- a run that records what it did not do)
    -- (only the fields init set from h: an optimizer kept at a fixed lr
    -- beside h.lr is not tied to it)
    self.checks = {}
    if self.e.check_applied ~= false then
      for _, o in ipairs(self.parts.optimizers) do
        for _, f in ipairs(o.opt.fields) do
          local v = o.opt[f.name]
          if self.e.space[f.name] and type(v) == "number" and v == h[f.name] then
            self.checks[#self.checks + 1] = { name = o.name, opt = o.opt, field = f.name }
          end
        end
      end
    end
  end
  local version = pop:version(i)
  if self.member ~= i or self.version ~= version then
    self.member = nil
    local ok, numbers, version = try(pop.load, pop, i, self.tensors, self.g)
    if not ok then error("loading the member's state: " .. message(numbers), 0) end
    self.version = version
    write_values(self.parts.values, numbers)
    self.member = i
  end
  return self.state
end

--- The metrics eval returned (a table name -> number), checked: the
-- experiment names the score among them (metric = "name").  Returns the
-- metrics as the text '"metrics":{...}' (names sorted), or nil and why not.
local metric_encoders = setmetatable({}, { __mode = "v" })

function M.metrics(e, t)
  if not e.metric then
    return nil, "eval returned a table of metrics: name the one that is the score with the experiment's " ..
      "metric = \"<name>\""
  end
  local names = {}
  for k, v in pairs(t) do
    if type(k) ~= "string" then return nil, ("eval's metrics have a key %s that is not a name"):format(tostring(k)) end
    if type(v) ~= "number" then
      return nil, ("eval's metric '%s' is %s, not a number%s"):format(k, is_tensor(v) and "a pbt.Tensor" or type(v),
        is_tensor(v) and " (use :item())" or "")
    end
    names[#names + 1] = k
  end
  table.sort(names)
  local v = t[e.metric]
  if type(v) ~= "number" then
    return nil, ("eval's metrics have no '%s' (the experiment's metric; it gave %s)"):format(e.metric,
      #names > 0 and table.concat(names, ", ") or "none")
  end
  if v ~= v then return nil, ("eval's metric '%s' is NaN"):format(e.metric) end
  -- an encoder per set of names, made once
  local sig = table.concat(names, "\0")
  local enc = metric_encoders[sig]
  if not enc then
    enc = json.object_encoder(names)
    metric_encoders[sig] = enc
  end
  return '"metrics":' .. enc(t)
end

local READY, BUDGET, FAILED, LOST = 1, 2, 3, 4
M.READY, M.BUDGET, M.FAILED, M.LOST = READY, BUDGET, FAILED, LOST


--- Trains member i: task = {member =, limit = work at which the slot
-- stops, since = steps since its last decision, deadline = clock time or
-- -1}.  After each step the worker's after_step(i), when set, says whether
-- to go on (a lease in a shared store: pbt.cluster); false ends the turn
-- with status LOST.  Returns the outcome {member =, status = READY | BUDGET | FAILED | LOST,
-- trained = steps, error = message, memory = true after an out-of-memory
-- error, rule = true when the ready rule raised (the run stops)}.
function Worker:train(task)
  local e, pop, i = self.e, self.pop, task.member
  local out = { member = i, trained = 0 }
  local function fail(msg)
    self.member = nil -- the live state is half-trained: load it again next time
    pop:log("failure", i, nil, msg)
    out.status, out.error = FAILED, msg
    out.memory = msg:find("not enough memory", 1, true) ~= nil
    return out
  end
  local h = M.hparams(e, pop, i)
  local ok, state = try(self.state_for, self, i, h)
  if not ok then return fail(message(state)) end
  if e.apply then
    local ok2, err = try(e.apply, state, h)
    if not ok2 then
      return fail("apply: " .. message(err))
    end
  end
  local steps, work = pop:counts(i)
  local since = task.since
  local checks_due, before = #self.checks > 0, self.before
  if checks_due then
    if not before then before = {}; self.before = before end
    for k, c in ipairs(self.checks) do before[k] = c.opt[c.field] end
  end
  -- the slot's first report carries its first h (later ones change
  -- through decisions, whose explore events carry them)
  local first = work == 0
  if not self.h_json then self.h_json = json.object_encoder(e.names) end
  local g, tensors, values, numbers = self.g, self.tensors, self.parts.values, self.numbers
  local m = self.ready_arg -- what the ready rule reads, one table per worker
  if not m then
    m = { mode = e.mode, window = e.window }
    -- the member's recent scores, oldest first (the experiment's window)
    function m.history(mm) return self.pop:history(mm.member) end
    self.ready_arg = m
  end
  m.member = i
  while true do
    if work >= task.limit or (task.deadline >= 0 and clock() >= task.deadline) then
      out.status = BUDGET
      return out
    end
    local okstep, err = pcall(e.step, state, h, g)
    local score, metrics
    if okstep then
      okstep, score = pcall(e.eval, state, h)
      if not okstep then err = score
      elseif type(score) == "table" and not is_tensor(score) then
        -- a table of metrics: the experiment's metric is the score
        metrics, err = M.metrics(e, score)
        okstep = metrics ~= nil
        score = metrics and score[e.metric]
      elseif type(score) ~= "number" then
        okstep = false
        err = is_tensor(score) and "eval returned a pbt.Tensor, not a number (use :item())"
          or ("eval returned %s, not a number"):format(type(score))
      elseif score ~= score then
        okstep, err = false, "eval returned NaN"
      end
    end
    out.trained = out.trained + 1
    if not okstep then
      if is_interrupt(err) then error(err, 0) end
      return fail(message(err))
    end
    -- the turn's first step: an optimizer field tied to h that still holds
    -- exactly the value of the hyperparameters the weights trained with
    -- before the last decision, while the decision changed it, was never
    -- set from h (a schedule that derives it from h in step is left alone)
    if checks_due then
      checks_due = false
      for k, c in ipairs(self.checks) do
        local v, hv = c.opt[c.field], h[c.field]
        if type(v) == "number" and type(hv) == "number" and v == before[k] and v ~= hv then
          -- (read only now: the schedule's entry before the current one)
          local sched = pop:schedule(i)
          local prev = #sched >= 2 and M.from_store(e, sched[#sched - 1].h) or nil
          if prev and prev[c.field] == v then
            out.rule = true
            return fail(("the state's optimizer '%s' trained with %s = %.17g, the value before the last " ..
              "decision, while the member's hyperparameter %s = %.17g: set it from h in the experiment's " ..
              "apply(state, h), which runs before a member trains with new hyperparameters, or in step " ..
              "(check_applied = false turns this check off)"):format(c.name, c.field, v, c.field, hv))
          end
        end
      end
    end
    steps, work, since = steps + 1, work + 1, since + 1
    self:refresh()
    tensors, values = self.tensors, self.parts.values
    -- the report's data: the hyperparameters the slot starts with (its first
    -- report), the metrics of every evaluation that gave them
    local data
    if first or metrics then
      data = "{" .. (first and ('"h":' .. self.h_json(h)) or "") .. ((first and metrics) and "," or "")
        .. (metrics or "") .. "}"
      first = false
    end
    local okp, perr = try(read_values, values, numbers)
    if okp then okp, perr = try(pop.publish, pop, i, tensors, numbers, score, steps, g, data) end
    if not okp then
      return fail("publishing the state: " .. message(perr))
    end
    self.version = self.version + 1
    local after = self.after_step
    if after and not after(i) then
      out.status = LOST
      return out
    end
    m.step, m.since, m.score = steps, since, score
    local okr, is_ready = try(e.ready, m)
    if not okr then
      out.rule = true
      return fail("the ready rule: " .. message(is_ready))
    end
    if is_ready then
      pop:log("ready", i)
      out.status = READY
      return out
    end
  end
end

-- ---- tasks and outcomes as messages between threads -------------------------------

function M.encode_task(t) return pack("<i8i8i8d", t.member, t.limit, t.since, t.deadline) end

function M.decode_task(s)
  local member, limit, since, deadline = unpack("<i8i8i8d", s)
  return { member = member, limit = limit, since = since, deadline = deadline }
end

function M.encode_outcome(o)
  local flags = (o.memory and 1 or 0) | (o.rule and 2 or 0)
  return pack("<i8Bi8Bs4", o.member, o.status, o.trained, flags, o.error or "")
end

function M.decode_outcome(s)
  local member, status, trained, flags, err = unpack("<i8Bi8Bs4", s)
  return { member = member, status = status, trained = trained, memory = flags & 1 ~= 0,
    rule = flags & 2 ~= 0 or nil, error = err ~= "" and err or nil }
end

--- The body of a worker thread (see pbt.core.threads.start): loads the
-- experiment file itself, then trains the members the tasks name until the
-- tasks channel closes.  Returns "restart" after a member ran the state out
-- of memory (the thread then starts again with a fresh state).
function M.thread_main()
  local experiment = require("pbt.experiment")
  local ctx = core.threads.context()
  local args = shared.unpack(ctx.args)
  -- the workers split the storage cache limit of a state between them
  core.allocator_limit(core.allocator_limit() // ctx.count)
  local excluded = {}
  for _, name in ipairs(args.excluded) do excluded[name] = true end
  local e = experiment.load(args.file, args.file_args)
  local w = M.new(e, ctx.population, { seed = args.seed, excluded = excluded })
  while true do
    local msg = ctx.tasks:receive()
    if not msg then return "done" end
    local out = w:train(M.decode_task(msg))
    ctx.results:send(M.encode_outcome(out))
    if out.memory then return "restart" end
  end
end

return M
