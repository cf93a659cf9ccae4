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
-- A member's state is the table `init` returns (see pbt.worker for what
-- of it the population store keeps and copies).  The runner is in three
-- parts: pbt.worker trains a member until it is ready, pbt.scheduler hands
-- members to workers and takes the decisions, pbt.reporter writes the
-- progress line and the run directory.
local core = require("pbt.core")
local space_mod = require("pbt.space")
local ready_mod = require("pbt.ready")
local explore_mod = require("pbt.explore")
local exploit_mod = require("pbt.exploit")
local options = require("pbt.options")

local Generator = core.Generator

local copy_h = require("pbt.space").copy

local M = {}

--- Member i's generator seed, from the run's seed.
M.member_seed = require("pbt.scheduler").member_seed

local Experiment = {}
Experiment.__index = Experiment
Experiment.__name = "pbt.Experiment"

local function fail(fmt, ...) error("experiment: " .. fmt:format(...), 3) end

-- the fields of a description (a misspelt one is an error naming the
-- nearest: `mod = "min"` must not maximise a loss in silence)
local FIELDS = { "population", "size", "seed", "space", "init", "step", "eval", "ready", "exploit",
  "explore", "mode", "sync", "budget", "window", "copy_hparams", "explore_always", "initial", "name",
  "apply", "metric", "check_applied" }

--- Validates a description and returns an experiment.
function M.experiment(desc)
  if type(desc) ~= "table" then fail("expects a table, got %s", type(desc)) end
  options.check("experiment", desc, FIELDS, 3, "field")
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
  if explore_mod.checks[e.explore] then
    local ok, msg = pcall(explore_mod.checks[e.explore], e.space)
    if not ok then
      if require("pbt.shared").is_interrupt(msg) then error(msg, 0) end -- Ctrl-C is no space error
      fail("%s", tostring(msg))
    end
  end
  e.mode = desc.mode or "max"
  if e.mode ~= "max" and e.mode ~= "min" then fail("mode must be \"max\" or \"min\", got %s", tostring(e.mode)) end
  e.sync = desc.sync
  if e.sync == nil then e.sync = true end
  e.budget = desc.budget or { steps = 100 }
  local b = e.budget
  if type(b) ~= "table" or not (b.steps or b.evaluations or b.seconds) then
    if type(b) == "table" then options.check("experiment: budget", b, { "steps", "evaluations", "seconds" }, 3, "field") end
    fail("budget must be a table with steps, evaluations or seconds")
  end
  options.check("experiment: budget", b, { "steps", "evaluations", "seconds" }, 3, "field")
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
  local patience = ready_mod.patience[e.ready]
  if patience and patience >= e.window then
    fail("ready.plateau's patience (%d) needs a score window longer than it (window = %d): set window = %d " ..
      "or more", patience, e.window, patience + 1)
  end
  -- a t-test that asks for more scores than the store keeps would test
  -- fewer than it says
  if e.exploit.name == "truncation" and e.exploit.min_lineages and e.exploit.min_lineages >= e.population then
    fail("exploit.truncation's min_lineages (%d) must be less than the population (%d): with as many " ..
      "lineages as members no exploit is ever made", e.exploit.min_lineages, e.population)
  end
  if e.exploit.name == "truncation" and e.exploit.smooth and e.exploit.smooth > e.window then
    fail("exploit.truncation's smooth (%d) is longer than the experiment's score window (window = %d): set " ..
      "window = %d or more", e.exploit.smooth, e.window, e.exploit.smooth)
  end
  if e.exploit.name == "ttest" and e.exploit.window > e.window then
    fail("exploit.ttest's window (%d) is longer than the experiment's score window (window = %d): set " ..
      "window = %d or more, or a shorter t-test window", e.exploit.window, e.window, e.exploit.window)
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
  e.apply = desc.apply
  e.metric = desc.metric
  if e.metric ~= nil and (type(e.metric) ~= "string" or e.metric == "") then
    fail("metric must be the name of the metric eval returns as the score (a string), got %s", tostring(e.metric))
  end
  e.check_applied = desc.check_applied ~= false
  if e.apply ~= nil and type(e.apply) ~= "function" then
    fail("apply must be a function(state, h), got %s", type(e.apply))
  end
  return e
end

-- ---- running ----------------------------------------------------------------------

local run_options = { out = true, seed = true, progress = true, quiet = true, workers = true,
  memory_limit = true, resume = true, overwrite = true, force = true }

--- Runs the experiment.  opts: out (a directory for the run's files), seed
-- (overrides the experiment's), workers (worker threads; default: the
-- cores this process may use for an experiment loaded from a file, 1 for
-- one built in a script), progress (true/false; default: when stderr is a
-- terminal), quiet, memory_limit (bytes of Lua heap per worker thread),
-- resume (continue the run in out from its store, out/run.db), overwrite
-- (start again in a directory that holds a run), force (resume although the
-- experiment file changed).
-- Returns a result table:
--   best      = { member, score, h, state, schedule }
--   schedules = { [i] = schedule of member i }, a schedule being
--               { root = member whose initial weights began the lineage,
--                 seed = that member's generator seed, steps = total steps,
--                 { step = s, h = {...} }, ... } (h from step s on)
--   events    = the event log (a list of tables, each with a wall-clock
--               `time`), scores = { [i] = {{step, score}, ...} } (what
--               member slot i reported)
-- Ctrl-C stops the workers, writes the run's files and raises
-- "interrupted!" again.
function Experiment:run(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("run expects a table of options, got %s", type(opts)) end
  options.check("experiment: run", opts, run_options, 3)
  if opts.out ~= nil and (type(opts.out) ~= "string" or opts.out == "") then
    fail("run: out must be a directory's path (a string), got %s", opts.out == "" and "an empty string"
      or type(opts.out))
  end
  return (require("pbt.scheduler").run(self, opts))
end

--- A schedule as a plain table for JSON: {root=, seed=, steps=, entries={...}}.
M.schedule_table = function(s) return require("pbt.reporter").schedule_table(s) end

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
  local g = Generator(schedule.seed or M.member_seed(e.seed, schedule.root or 1))
  local k = 1
  local h = copy_h(schedule[1].h)
  local state = e.init(copy_h(h), g)
  if e.apply then e.apply(state, h) end
  local score
  for s = 1, steps do
    while schedule[k + 1] and schedule[k + 1].step <= s - 1 do
      k = k + 1
      h = copy_h(schedule[k].h)
      if e.apply then e.apply(state, h) end
    end
    e.step(state, h, g)
    score = e.eval(state, h)
  end
  return score, state, h
end

--- Loads an experiment file (a Lua file returning pbt.experiment{...}).
-- args, when given, is passed to the file's chunk as its `...`; it must be
-- a table of numbers, strings and booleans (each worker thread loads the
-- file again with the same args).
function M.load(path, args)
  if type(path) ~= "string" then
    error(("load_experiment: path must be a string, got %s"):format(type(path)), 2)
  end
  if args ~= nil and type(args) ~= "table" then
    error(("load_experiment: args must be a table, got %s"):format(type(args)), 2)
  end
  local chunk, err = loadfile(path)
  if not chunk then error("pbt: " .. err, 0) end
  local e = chunk(args)
  if getmetatable(e) ~= Experiment then
    error(("pbt: %s does not return pbt.experiment{...}"):format(path), 0)
  end
  e.file, e.file_args = path, args
  return e
end

M.Experiment = Experiment
return M
