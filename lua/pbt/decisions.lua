--- pbt.decisions: every exploit and explore decision of a run, written
-- once.  The scheduler (one process, the population in memory) and the
-- workers of a shared store (pbt.cluster: many processes, the population in
-- a database) both decide through one of these, over a population store
-- that holds what the rules read (scores, histories, hyperparameters).
--
--   local d = decisions.new(e, pop, G, {since = since, finished = fn})
--   d.decide(i, donor)   copy donor into i (when given), then explore i
--   d.donor(i)           the exploit rule's donor for i (asynchronous)
--   d.replace(i)         a failed member takes the best live member's state
--   d.generation(todo, outcomes)
--                        a synchronous generation's decisions, in member order
-- A rule that raises, or returns what it must not, logs a failure event for
-- the member and raises "experiment: member i: the <rule> rule: ...".
local json = require("pbt.json")
local worker_mod = require("pbt.worker")
local shared = require("pbt.shared")
local explore_hooks = require("pbt.explore").hooks


local M = {}

local function fail(fmt, ...) error("experiment: " .. fmt:format(...), 0) end

local copy_h = require("pbt.space").copy
M.copy_h = copy_h

-- hyperparameter kinds for the C store: choices are stored as 1-based indices
function M.hp_specs(e)
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
    fail("%s is not one of the choices of %s", tostring(v), tostring(d))
  end
  if d.kind == "fixed" and type(d.value) ~= "number" then return 1 end
  return v
end

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

local function better(mode, a, b)
  if not finite(b) then return finite(a) end
  if not finite(a) then return false end
  if mode == "max" then return a > b end
  return a < b
end

--- A live member with the best last score (nil when none has scored),
-- other than `except`.
function M.best_alive(pop, mode, except)
  local scores, b = pop:scores(), nil
  for j = 1, pop:size() do
    if j ~= except and finite(scores[j]) and select(3, pop:counts(j))
        and (not b or better(mode, scores[j], scores[b])) then
      b = j
    end
  end
  return b
end

--- h's values into member i's store entries (choices as indices).
function M.setter(e, pop)
  local names, space, categorical = e.names, e.space, {}
  for _, name in ipairs(names) do
    local d = space[name]
    categorical[name] = d:categorical() or (d.kind == "fixed" and type(d.value) ~= "number")
  end
  return function(i, h)
    for _, name in ipairs(names) do
      local v = h[name]
      pop:set_hparam(i, name, categorical[name] and to_store(space[name], v) or v)
    end
  end
end

--- The read-only view of the population the rules get.
function M.view(e, pop)
  local view = { size = pop:size(), mode = e.mode, space = e.space }
  function view.score(_, i) return pop:score(i) end
  function view.scores(_) return pop:scores() end
  function view.history(_, i) return pop:history(i) end
  function view.histories(_)
    local hs = {}
    for i = 1, pop:size() do hs[i] = pop:history(i) end
    return hs
  end
  function view.hparams(_, i) return worker_mod.hparams(e, pop, i) end
  function view.member(_, i) return pop:member(i) end
  function view.schedule(_, i)
    local s = pop:schedule(i)
    for _, entry in ipairs(s) do worker_mod.from_store(e, entry.h) end
    return s
  end
  function view.tournament(_, i, g, m) return pop:tournament(i, g, m) end
  function view.ttest(_, i, g, window, alpha, m) return pop:ttest(i, g, window, alpha, m) end
  return setmetatable(view, { __newindex = function() error("experiment: the population view is read-only", 2) end })
end

--- The decisions of experiment e over pop, drawing from generator G.
-- opts: since (each member's steps since its last decision: set to 0 by a
-- decision), finished(i) (whether member i's budget is spent), rank_every
-- (asynchronous truncation ranks once per this many decisions; default 1),
-- ranked and rank_count (the ranking so far, see d.ranking).
function M.new(e, pop, G, opts)
  local n, mode, space, names = pop:size(), e.mode, e.space, e.names
  local since, finished = opts.since, opts.finished
  local set_h = opts.set_h or M.setter(e, pop)
  local function get_h(i) return worker_mod.hparams(e, pop, i) end
  local h_json = json.object_encoder(names) -- h as a JSON object's text
  local view = opts.view or M.view(e, pop)
  local d = { view = view, exploits = 0, set_h = set_h, get_h = get_h }

  local function rule_failed(i, msg)
    pop:log("failure", i, nil, msg)
    fail("member %d: %s", i, msg)
  end
  d.rule_failed = rule_failed
  local function rule(what, i, fn, ...)
    local ok, a = shared.try(fn, ...)
    if ok then return a end
    rule_failed(i, ("the %s rule: %s"):format(what, shared.message(a)))
  end
  local function check_explored(i, h)
    if type(h) ~= "table" then
      rule_failed(i, ("the explore rule returned %s, not a table of hyperparameters"):format(type(h)))
    end
    for _, name in ipairs(names) do
      if not space[name]:contains(h[name]) then
        rule_failed(i, ("the explore rule gave %s = %s, outside %s"):format(name, tostring(h[name]),
          tostring(space[name])))
      end
    end
  end
  local function check_donors(i, donors)
    if type(donors) ~= "table" then
      rule_failed(i, ("the exploit rule's all() returned %s, not a table recipient -> donor")
        :format(type(donors)))
    end
    return donors
  end

  -- the explore rule's look at the population before a batch of decisions
  -- (pbt.explore.hooks: PB2 takes its data there, before exploits change it)
  local hook = explore_hooks[e.explore]
  local function prepare(i)
    if hook then rule("explore", i, hook, view) end
  end

  --- The decision for member i: copy donor dn (when given), then explore.
  -- Returns whether member i was copied from dn.
  function d.decide(i, dn)
    local base
    if dn then
      local own = not e.copy_hparams and get_h(i) or nil
      base = own or get_h(dn)
      local ok, err = pcall(pop.exploit, pop, i, dn)
      if not ok then
        -- a worker thread failed the donor since the rule chose it: no copy
        if not tostring(err):find("the donor has failed", 1, true) then error(err, 0) end
        dn, base = nil, own or get_h(i)
        if not e.explore_always then return false end
      else
        d.exploits = d.exploits + 1
        if own then set_h(i, own) end
      end
    else
      base = get_h(i)
    end
    local h = rule("explore", i, e.explore, copy_h(base), space, G, view, i)
    check_explored(i, h)
    set_h(i, h)
    pop:schedule_mark(i)
    pop:log("explore", i, dn, nil, '{"new":' .. h_json(h) .. ',"old":' .. h_json(base) .. "}")
    return dn ~= nil
  end

  local function checked_donor(i, dn)
    if dn == nil then return nil end
    if math.type(dn) ~= "integer" or dn < 1 or dn > n or dn == i then
      rule_failed(i, ("the exploit rule returned %s: expected nil or a member index 1..%d other than %d")
        :format(type(dn) == "string" and ("%q"):format(dn) or tostring(dn), n, i))
    end
    -- a member that failed at the end of its budget keeps its last score,
    -- which a rule may pick, but it has no state to give: no exploit
    if not select(3, pop:counts(dn)) then return nil end
    return dn
  end

  --- A failed member takes the best live member's state (then explores):
  -- returns the donor, or nil when no member has a score yet.
  function d.replace(i)
    local dn = M.best_alive(pop, mode, i)
    if dn then
      prepare(i)
      d.decide(i, dn)
      since[i] = 0 -- a decision, as after a ready one
    end
    return dn
  end

  -- asynchronous truncation ranks once per rank_every decisions (a
  -- decider made again per decision carries the ranking on: opts.ranked,
  -- opts.rank_count, read back with d.ranking())
  local ranked, count, every = opts.ranked, opts.rank_count or 0, opts.rank_every or 1
  function d.ranking() return ranked, count end
  --- The asynchronous decision for member i, ready: exploit and explore.
  function d.ready(i)
    local dn
    if e.exploit.all then
      if not ranked or count >= every then
        ranked, count = check_donors(i, rule("exploit", i, e.exploit.all, view, G, mode)), 0
      end
      count = count + 1
      dn = ranked[i]
    else
      dn = rule("exploit", i, e.exploit.one, view, i, G, mode)
    end
    dn = checked_donor(i, dn)
    if dn or e.explore_always then
      prepare(i)
      d.decide(i, dn)
    end
    since[i] = 0
  end

  --- A synchronous generation's decisions: todo lists the members that
  -- trained in it (in member order), outcomes[i].status their outcome.
  -- Failed members take the best live member's state; then the ready
  -- members exploit and explore.  Returns false when a failed member found
  -- no live member to take from (every member has failed).
  function d.generation(todo, outcomes)
    for _, i in ipairs(todo) do
      if outcomes[i].status == worker_mod.FAILED and not finished(i) then
        if not d.replace(i) then return false, i end
      end
    end
    local ready = {}
    for _, i in ipairs(todo) do
      ready[i] = outcomes[i].status == worker_mod.READY and not finished(i)
    end
    local donors = {}
    if e.exploit.all then
      local any = false
      for _, r in pairs(ready) do any = any or r end
      if any then donors = check_donors(todo[1], rule("exploit", todo[1], e.exploit.all, view, G, mode)) end
    else
      for _, i in ipairs(todo) do
        if ready[i] then donors[i] = rule("exploit", i, e.exploit.one, view, i, G, mode) end
      end
    end
    if todo[1] then prepare(todo[1]) end
    -- a member copied into in this generation is no donor after that: its
    -- weights and hyperparameters are not the ones the rule saw
    local copied = {}
    for _, i in ipairs(todo) do
      if ready[i] then
        local dn = checked_donor(i, donors[i])
        if dn and copied[dn] then dn = nil end
        if dn or e.explore_always then copied[i] = d.decide(i, dn) end
        since[i] = 0
      end
    end
    return true
  end

  return d
end

return M
