--- pbt.scheduler: runs an experiment.  It makes the population store, the
-- members' first states, the workers (this Lua state's own, or threads),
-- and then hands members to free workers and takes every decision:
--   synchronous:  a generation trains every member until it is ready (on
--                 every worker at once); the decisions for the whole
--                 generation are taken here at its end, in member order, so
--                 the run is the same for any number of workers;
--   asynchronous: a free worker takes the next member in line; a member's
--                 decision is taken as soon as it is ready.
-- Each decision rule exists once, in pbt.decisions (exploit, explore, schedule,
-- events) serves both modes and the replacement of failed members.
local core = require("pbt.core")
local population = require("pbt.population")
local space_mod = require("pbt.space")
local json = require("pbt.json")
local worker_mod = require("pbt.worker")
local reporter_mod = require("pbt.reporter")
local shared = require("pbt.shared")
local runstore = require("pbt.runstore")
local decisions = require("pbt.decisions")

local Generator = core.Generator
local threads = core.threads
local clock = core.clock
local is_interrupt = shared.is_interrupt

local M = {}

local function fail(fmt, ...) error("experiment: " .. fmt:format(...), 0) end

local copy_h = decisions.copy_h

-- Each member trains with its own generator, seeded from the experiment's
-- seed and its index.
local function member_seed(seed, i) return seed * 1000003 + i * 7919 + 1 end
M.member_seed = member_seed

local hp_specs = decisions.hp_specs
M.best_alive = decisions.best_alive

--- What a run returns, read from its store: events, schedules (choices as
-- their values), scores; best = {member, score, h} or nil.
local function result_of(e, pop, seed)
  -- result.events is read from the store when first used (a run whose
  -- caller never reads it does not build a table per event)
  local result = setmetatable({ schedules = {}, scores = {} }, { __index = function(t, k)
    if k ~= "events" then return nil end
    local events = {}
    for _, ev in ipairs(pop:events(1, true)) do events[#events + 1] = reporter_mod.event_table(ev) end
    rawset(t, "events", events)
    return events
  end })
  for i = 1, pop:size() do
    local s = pop:schedule(i)
    local sched = { root = s.root, seed = member_seed(seed, s.root), steps = pop:member(i).steps }
    for k, entry in ipairs(s) do sched[k] = { step = entry.step, h = worker_mod.from_store(e, entry.h) } end
    result.schedules[i] = sched
    result.scores[i] = pop:curve(i)
  end
  local b = M.best_alive(pop, e.mode)
  if b then
    result.best = { member = b, score = pop:score(b), h = worker_mod.hparams(e, pop, b),
      schedule = result.schedules[b] }
  end
  return result
end

-- ---- workers: this state's own, or threads --------------------------------------------

-- The local pool runs a task at once, here.
local function local_pool(w)
  local done = {}
  return {
    size = 1,
    dispatch = function(_, task) done[#done + 1] = w:train(task) end,
    next_outcome = function() return table.remove(done, 1) end,
    stop = function() end,
  }
end

local function thread_pool(e, pop, n, args, memory_limit)
  local tasks, results = threads.channel(), threads.channel()
  local workers = threads.start{ count = n, module = "pbt.worker", args = args,
    population = pop, tasks = tasks, results = results, path = package.path,
    cpath = package.cpath, memory_limit = memory_limit }
  return {
    size = n,
    dispatch = function(_, task) tasks:send(worker_mod.encode_task(task)) end,
    -- waits in short slices, so that Ctrl-C (a hook in this state) is seen
    next_outcome = function(_, on_wait)
      while true do
        local msg = results:receive(0.1)
        if msg then
          if msg:sub(1, 1) == "!" then
            fail("a worker thread stopped: %s", msg:sub(2))
          end
          return worker_mod.decode_outcome(msg)
        end
        if on_wait then on_wait() end
      end
    end,
    stop = function(_, interrupt)
      if interrupt then workers:interrupt() end
      workers:join()
    end,
  }
end

--- The members' first hyperparameters and states, made in this Lua state
-- (init with each member's own generator) into pop: the state's tensors are
-- cloned into store-owned buffers.  Returns the names left out of the
-- members' own states (tensors several members hold: a data set, a shared
-- embedding) as a set and as a list.
function M.initial_states(e, pop, seed, G)
  local n, space, names = e.population, e.space, e.names
  local set_h = decisions.setter(e, pop)
  local states, all_parts = {}, {}
  for i = 1, n do
    local h
    if type(e.initial) == "function" then h = e.initial(i, G)
    elseif type(e.initial) == "table" then
      h = copy_h(e.initial[i] or fail("initial has no hyperparameters for member %d", i))
    else h = space_mod.sample(space, G) end
    for _, name in ipairs(names) do
      if not space[name]:contains(h[name]) then
        fail("member %d starts with %s = %s, outside %s", i, name, tostring(h[name]), tostring(space[name]))
      end
    end
    local g = Generator(member_seed(seed, i))
    states[i] = e.init(copy_h(h), g)
    all_parts[i] = worker_mod.parts(states[i])
    set_h(i, h)
    pop:set_generator(i, g)
  end
  -- a tensor that several members hold (a data set, a shared embedding) is
  -- shared on purpose: it is not part of any member's own state
  local holders, excluded, excluded_list = {}, {}, {}
  for i = 1, n do
    for _, p in ipairs(all_parts[i].tensors) do holders[p.tensor] = (holders[p.tensor] or 0) + 1 end
  end
  for i = 1, n do
    for _, p in ipairs(all_parts[i].tensors) do
      if holders[p.tensor] > 1 and not excluded[p.name] then
        excluded[p.name] = true
        excluded_list[#excluded_list + 1] = p.name
      end
    end
  end
  local function names_of(parts, kind)
    local list = {}
    for _, p in ipairs(parts[kind]) do if not excluded[p.name] then list[#list + 1] = p.name end end
    return table.concat(list, ", ")
  end
  for i = 1, n do
    for _, kind in ipairs({ "tensors", "values" }) do
      local a, b = names_of(all_parts[1], kind), names_of(all_parts[i], kind)
      if a ~= b then
        fail("member %d's state has %s {%s}, member 1's {%s}: init must build the same state " ..
          "for every member", i, kind == "values" and "numbers" or kind, b, a)
      end
    end
    for k, p in ipairs(all_parts[i].tensors) do
      if not excluded[p.name] then
        local q = all_parts[1].tensors[k]
        local a, b = table.concat(q.tensor:shape(), ","), table.concat(p.tensor:shape(), ",")
        if a ~= b or q.tensor:dtype() ~= p.tensor:dtype() then
          fail("member %d's state tensor '%s' is %s [%s], member 1's %s [%s]: init must build " ..
            "tensors of the same shapes and dtypes for every member", i, p.name, p.tensor:dtype(), b,
            q.tensor:dtype(), a)
        end
        pop:set_state(i, p.name, p.tensor:clone())
      end
    end
    for k, x in ipairs(worker_mod.read_values(all_parts[i].values, {})) do
      pop:set_state(i, all_parts[i].values[k].name, x)
    end
    pop:schedule_mark(i)
  end
  return excluded, excluded_list
end

--- The work (steps) each member slot may do under e's budget.
function M.limits(e)
  local n, budget, limit = e.population, e.budget, {}
  for i = 1, n do
    local l = budget.steps or math.maxinteger
    if budget.evaluations then
      l = math.min(l, budget.evaluations // n + (i <= budget.evaluations % n and 1 or 0))
    end
    limit[i] = l
  end
  return limit
end

-- ---- the run ---------------------------------------------------------------------------

--- Runs experiment e (see pbt.experiment for opts and the result).
function M.run(e, opts)
  local seed = opts.seed or e.seed
  local n = e.population
  local G = Generator(seed) -- exploit and explore decisions
  local pop = population.new{ size = n, hparams = hp_specs(e), window = e.window }
  local budget = e.budget

  local nworkers = opts.workers
  if nworkers == nil then nworkers = e.file and threads.cpu_count() or 1 end
  if math.type(nworkers) ~= "integer" or nworkers < 1 then
    fail("workers must be a positive integer, got %s", tostring(nworkers))
  end
  if nworkers > 1 and not e.file then
    fail("workers = %d needs an experiment file: an experiment built in a script runs on one " ..
      "worker (its functions cannot be moved to other Lua states); put `return pbt.experiment{...}` " ..
      "in a file and run it with pbt.load_experiment(path):run{workers = %d} or `pbt run FILE " ..
      "--workers %d`", nworkers, nworkers, nworkers)
  end
  nworkers = math.min(nworkers, n)
  local memory_limit = opts.memory_limit
  if memory_limit ~= nil and (math.type(memory_limit) ~= "integer" or memory_limit < 0) then
    fail("memory_limit must be a non-negative integer (bytes), got %s", tostring(memory_limit))
  end
  if memory_limit ~= nil and not e.file then
    fail("memory_limit caps the Lua heap of worker threads, and an experiment built in a script " ..
      "trains in the script's own state: load the experiment from a file")
  end

  -- a directory that holds a run is continued or started again, never
  -- silently overwritten
  local out, resume = opts.out, opts.resume
  if out then
    local held = runstore.exists(out)
    if held and not runstore.started(out) then
      -- a start killed before its first commit: nothing was trained or
      -- logged, and the run starts again (resumed or not) in that run.db
      held, resume = false, false
    elseif opts.resume and not held then
      fail("nothing to resume in %s: it holds no run (run.db)", out)
    elseif held and not resume and not opts.overwrite then
      fail("%s holds a run (run.db): resume = true (pbt run --resume) continues it, overwrite = " ..
        "true (--overwrite) starts it again", out)
    elseif held and opts.overwrite and not resume then
      runstore.remove(out)
    end
  elseif opts.resume then
    fail("resume needs the run's directory (out)")
  end

  local set_h = decisions.setter(e, pop)
  local function get_h(i) return worker_mod.hparams(e, pop, i) end

  local excluded, excluded_list = M.initial_states(e, pop, seed, G)

  -- budget: the work each member slot may do, and a deadline
  local t_start = clock()
  local limit = M.limits(e)
  local deadline = budget.seconds and t_start + budget.seconds or nil
  local function finished(i)
    local _, work = pop:counts(i)
    return work >= limit[i] or (deadline ~= nil and clock() >= deadline)
  end

  local progress = opts.progress
  if progress == nil then progress = core.isatty(2) and not opts.quiet end
  local reporter = reporter_mod.new(e, pop, { out = opts.out, progress = progress, keep = resume })
  local steps_done = 0
  local total = 0
  for i = 1, n do total = total + limit[i] end
  if total >= math.maxinteger // 2 then total = nil end
  local busy = 0
  local dec -- the decisions (below)
  local function show(final)
    if not progress then return end
    reporter:show({ start = t_start, steps = steps_done, total = total, busy = busy,
      workers = nworkers, exploits = dec.exploits, deadline = deadline, seconds = budget.seconds }, final)
  end

  local since = {} -- each member's steps since its last decision
  for i = 1, n do since[i] = 0 end
  dec = decisions.new(e, pop, G, { since = since, finished = finished, set_h = set_h, rank_every = n })

  -- the run's store in out/run.db: made now, or read back to resume
  local store
  local db_next = 1   -- the next event of the log the store has not seen
  local pending = {}  -- async: events seen but not written, by member
  for i = 1, n do pending[i] = {} end
  local function scheduler_state()
    return { G = G:state(), elapsed = clock() - t_start }
  end
  -- the events logged since the last checkpoint, by member
  local function collect()
    local evs = pop:events(db_next, true)
    for _, ev in ipairs(evs) do
      local list = pending[ev.member]
      list[#list + 1] = ev
    end
    if #evs > 0 then db_next = evs[#evs].seq + 1 end
  end
  -- a checkpoint of these members (all when nil), with their events (inside:
  -- in the transaction under way)
  local function checkpoint(members, inside)
    if not store then return end
    collect()
    local events = {}
    if not members then
      members = {}
      for i = 1, n do
        members[i] = i
        for _, ev in ipairs(pending[i]) do events[#events + 1] = ev end
        pending[i] = {}
      end
      table.sort(events, function(a, b) return a.seq < b.seq end)
    else
      for _, i in ipairs(members) do
        for _, ev in ipairs(pending[i]) do events[#events + 1] = ev end
        pending[i] = {}
      end
      table.sort(events, function(a, b) return a.seq < b.seq end)
    end
    store:checkpoint(pop, members, since, events, scheduler_state(), inside)
  end
  if out then
    core.remove_temporaries(out)
    local identity = runstore.identity(e, seed)
    if resume then
      local meta
      store, meta = runstore.open(out)
      if meta.kind == "workers" then
        store:close()
        fail("%s holds a run of pbt worker processes: they continue it (pbt worker FILE --store sqlite:%s)",
          out, runstore.path(out))
      end
      for _, k in ipairs({ "seed", "name", "population", "mode", "sync", "window", "budget", "space",
          "file_args" }) do
        if meta[k] ~= (identity[k] ~= nil and tostring(identity[k]) or nil) then
          store:close()
          fail("%s was a run with %s = %s, not %s: resume it with the same experiment and options",
            out, k, tostring(meta[k]), tostring(identity[k]))
        end
      end
      if meta.file_crc32 and identity.file_crc32 and meta.file_crc32 ~= tostring(identity.file_crc32)
          and not opts.force then
        store:close()
        fail("%s changed since the run in %s started (its CRC-32 was %s, now %s): force = true " ..
          "(pbt run --force) resumes it anyway", tostring(e.file), out, meta.file_crc32,
          tostring(identity.file_crc32))
      end
      local saved = store:load()
      for i = 1, n do
        local m = saved.members[i]
        if not m then store:close(); fail("%s has no checkpoint of member %d", out, i) end
        pop:restore(i, m.record)
        for name, t in pairs(m.state.tensors) do
          local entry = pop:get_state(i, name)
          if type(entry) ~= "userdata" then
            store:close()
            fail("member %d's checkpoint has a tensor '%s' that its state does not", i, name)
          end
          entry:copy_(t)
        end
        for name, x in pairs(m.state.numbers) do pop:set_state(i, name, x) end
        since[i] = m.since
      end
      for _, ev in ipairs(saved.events) do pop:restore_event(ev) end
      if saved.gaps then store:renumber(saved.events) end
      db_next = #saved.events + 1
      G:set_state(saved.scheduler.G)
      t_start = clock() - (saved.scheduler.elapsed or 0)
      if budget.seconds then deadline = t_start + budget.seconds end
      reporter:rewrite() -- the files again, from the restored log
    else
      -- the run and every member's first checkpoint in one transaction
      store = runstore.create(out, identity, function(s)
        store = s
        checkpoint(nil, true)
      end)
    end
  end
  local last_error = {}
  local replace = dec.replace

  local args = { file = e.file, file_args = e.file_args, seed = seed, excluded = excluded_list }
  local ok_args, packed = shared.try(shared.pack, args)
  if nworkers > 1 or memory_limit then
    if not ok_args then fail("the experiment file's args cannot go to worker threads: %s", packed) end
  end
  local pool
  if nworkers > 1 or memory_limit then -- (a limited heap needs a thread of its own)
    pool = thread_pool(e, pop, nworkers, packed, memory_limit)
  else
    pool = local_pool(worker_mod.new(e, pop, { seed = seed, excluded = excluded }))
  end
  -- OpenBLAS runs one thread per worker: no two thread pools fight for the
  -- cores, and an experiment file gives the same numbers on any number of
  -- workers (a product split over two BLAS threads may round otherwise)
  local restore_blas
  if nworkers > 1 or e.file then restore_blas = threads.blas_threads(1) end

  local function task_for(i, slice)
    local dl = deadline or -1
    if slice and deadline then dl = math.min(deadline, clock() + slice) end
    return { member = i, limit = limit[i], since = since[i], deadline = dl }
  end
  -- (the busy flag keeps decisions off members a thread trains; the local
  -- pool trains a member before any decision is taken again)
  local threaded = pool.size > 1 or memory_limit ~= nil
  local function dispatch(i, slice)
    if threaded then pop:set_busy(i, true) end
    busy = busy + 1
    pool:dispatch(task_for(i, slice))
  end
  local function receive()
    local o = pool:next_outcome(function() show(false) end)
    busy = busy - 1
    if threaded then pop:set_busy(o.member, false) end
    steps_done = steps_done + o.trained
    since[o.member] = since[o.member] + o.trained
    if o.status == worker_mod.FAILED then last_error[o.member] = o.error end
    show(false)
    -- the ready rule raised: a rule's error stops the run (see rule())
    if o.rule then fail("member %d: %s", o.member, tostring(o.error)) end
    return o
  end

  local function all_failed(i)
    fail("every member has failed (member %d: %s)", i, tostring(last_error[i]))
  end

  local function sync_loop()
    while true do
      local todo = {}
      for i = 1, n do if not finished(i) then todo[#todo + 1] = i end end
      if #todo == 0 then break end
      pop:stage()
      local outcomes, next_k, left = {}, 1, #todo
      while left > 0 do
        while next_k <= #todo and busy < pool.size do
          local slice
          if deadline then
            -- a fair share of the time left for each member of the generation
            slice = (deadline - clock()) * pool.size / (#todo - next_k + 1 + busy)
          end
          dispatch(todo[next_k], slice)
          next_k = next_k + 1
        end
        local o = receive()
        outcomes[o.member] = o
        left = left - 1
      end
      pop:commit_staged()
      local okg, who = dec.generation(todo, outcomes)
      if not okg then all_failed(who) end
      checkpoint(nil)
      reporter:flush()
    end
  end

  local function async_loop()
    -- the line of members waiting for a worker, a ring of n places:
    -- queued members queue[head], queue[head + 1], ... (count of them)
    local queue, head, queued, waiting = {}, 1, n, {}
    for i = 1, n do queue[i] = i end
    local function push(i)
      queue[(head + queued - 1) % n + 1] = i
      queued = queued + 1
    end
    local last_flush = clock()
    while true do
      -- under a time budget a turn lasts at most a member's share of it, so
      -- that members that are rarely ready take turns on the workers
      while queued > 0 and busy < pool.size do
        local i = queue[head]
        head, queued = head % n + 1, queued - 1
        dispatch(i, deadline and budget.seconds * pool.size / n)
      end
      if busy == 0 then
        if #waiting > 0 then all_failed(waiting[1]) end
        break
      end
      local o = receive()
      local i = o.member
      local decided = { i }
      if o.status == worker_mod.FAILED then
        if not finished(i) then
          if replace(i) then push(i)
          else waiting[#waiting + 1] = i end -- no member has a score yet
        end
      else
        -- a member with a score: those waiting for a donor can have one now
        if #waiting > 0 then
          for _, j in ipairs(waiting) do
            if replace(j) then push(j) end
            decided[#decided + 1] = j
          end
          waiting = {}
        end
        local done = finished(i) -- (a decision changes no member's work)
        if o.status == worker_mod.READY and not done then
          dec.ready(i)
        end
        if not done then push(i) end
      end
      checkpoint(decided)
      if clock() - last_flush >= 1 then
        reporter:flush()
        last_flush = clock()
      end
    end
  end

  local ok, err = pcall(e.sync and sync_loop or async_loop)
  if ok then
    -- members that fail at their last step are not replaced: a run that
    -- ends with every member failed has no result
    local alive = false
    for i = 1, n do alive = alive or select(3, pop:counts(i)) end
    if not alive then ok, err = pcall(all_failed, 1) end
  end
  local interrupted = not ok and is_interrupt(err)
  pool:stop(not ok)
  if restore_blas then threads.blas_threads(restore_blas) end
  pop:commit_staged()
  if store then
    -- the end: every member (none trains now) with the events left, unless
    -- the last checkpoint holds them all; after an interruption only what the
    -- last checkpoints hold (a resume redoes the rest)
    if ok then
      collect()
      local left = false
      for i = 1, n do left = left or #pending[i] > 0 end
      if left then checkpoint(nil) end
    end
    store:close()
  end
  show(true)

  -- the result, from the store
  local result = result_of(e, pop, seed)
  result.interrupted = interrupted or nil
  local best_tensors
  if result.best then
    -- the best member's state, in a state of this Lua state's own
    local b = result.best.member
    local w = worker_mod.new(e, pop, { seed = seed, excluded = excluded })
    result.best.state = w:state_for(b, get_h(b))
    best_tensors = {}
    for _, p in ipairs(w.parts.tensors) do best_tensors[p.name] = p.tensor end
  end
  local okw, werr = pcall(reporter.finish, reporter, result, best_tensors)
  if not ok then
    if interrupted and opts.out then
      io.stderr:write(("pbt: interrupted; the run's files are in %s\n"):format(opts.out))
    end
    error(err, 0)
  end
  if not okw then error(werr, 0) end
  return result, pop
end

-- The store a run was left in: dir's run.db, or (src.store) the run
-- src.run (default: the only one) of the store at src.store.  Returns the
-- store, the run's identity and a name for messages.
local function open_source(dir, src)
  if src and src.store then
    local s = runstore.connect(src.store)
    local ok, meta = pcall(function()
      s.run = src.run or s:only_run()
      return s:meta()
    end)
    if not ok then s:close(); error(meta, 0) end
    return s, meta, ("run '%s' in %s"):format(s.run, s.where)
  end
  local s, meta = runstore.open(dir)
  return s, meta, dir
end

--- The population store of the run in dir (or src: see open_source),
-- rebuilt from its store, and what the store held: {meta, members = {[i] =
-- {record, state, since}}, events, scheduler}.  e gives the hyperparameters'
-- kinds.
function M.load_store(e, dir, src)
  local store, meta, where = open_source(dir, src)
  local ok, saved = pcall(store.load, store)
  store:close()
  if not ok then error(saved, 0) end
  local n = tonumber(meta.population)
  if n ~= e.population then fail("%s holds a run of %s members, the experiment has %d", where, meta.population, e.population) end
  local pop = population.new{ size = n, hparams = hp_specs(e), window = e.window }
  for i = 1, n do
    local m = saved.members[i] or fail("%s has no checkpoint of member %d", where, i)
    pop:restore(i, m.record)
    local names = {}
    for name in pairs(m.state.tensors) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do pop:set_state(i, name, m.state.tensors[name]) end
    for name, x in pairs(m.state.numbers) do pop:set_state(i, name, x) end
  end
  for _, ev in ipairs(saved.events) do pop:restore_event(ev) end
  saved.meta = meta
  return pop, saved
end

--- The experiment a run's store names (its file, loaded with the args it
-- was run with).
local function experiment_of(dir, e, src)
  if e then return e end
  local store, meta, where = open_source(dir, src)
  store:close()
  if not meta.file then
    fail("%s holds a run of an experiment built in a script: give the experiment", where)
  end
  return require("pbt.experiment").load(meta.file, meta.file_args and json.decode(meta.file_args))
end
M.experiment_of = experiment_of

--- A run left in dir (see the README): events, schedules, scores, best,
-- members (their records) and run:state(i), member i's checkpoint as a state
-- table (names split at their first dot: state.model["0.weight"]).
function M.load_run(dir, e)
  if type(dir) ~= "string" then error(("load_run: dir must be a string, got %s"):format(type(dir)), 2) end
  e = experiment_of(dir, e)
  local pop, saved = M.load_store(e, dir)
  local run = result_of(e, pop, tonumber(saved.meta.seed))
  run.dir, run.meta, run.size, run.members = dir, saved.meta, e.population, {}
  for i = 1, e.population do run.members[i] = saved.members[i].record end
  function run.state(_, i)
    local m = saved.members[i]
    if not m then error(("load_run: the run has no member %s"):format(tostring(i)), 2) end
    local st = {}
    local function put(name, v)
      local head, rest = name:match("^([^.]+)%.(.+)$")
      if head then
        st[head] = st[head] or {}
        st[head][rest] = v
      else
        st[name] = v
      end
    end
    for name, t in pairs(m.state.tensors) do put(name, t) end
    for name, x in pairs(m.state.numbers) do put(name, x) end
    return st
  end
  return run
end

--- Writes the run directory's files (events.jsonl, scores.csv,
-- schedule.json, best.pbt, pictures) again from dir/run.db, or from the
-- run src.run of the store src.store (pbt report --store URL --out DIR).
function M.report(dir, e, src)
  e = experiment_of(dir, e, src)
  local pop, saved = M.load_store(e, dir, src)
  local result = result_of(e, pop, tonumber(saved.meta.seed))
  local reporter = reporter_mod.new(e, pop, { out = dir, progress = false })
  local best_tensors = result.best and saved.members[result.best.member].state.tensors
  reporter:finish(result, best_tensors)
  return result
end

return M
