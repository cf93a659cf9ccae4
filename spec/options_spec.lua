-- A misspelt field or option is an error that names it and the nearest
-- known name (pbt.options), everywhere a table of options is taken.
local pbt = require("pbt")
local options = require("pbt.options")
local T, nn = pbt.tensor, pbt.nn

local function experiment(extra)
  local desc = {
    population = 2, space = { lr = pbt.uniform(0.1, 1) },
    init = function() return { w = T.zeros(1) } end,
    step = function() end, eval = function() return 0 end, budget = { steps = 1 },
  }
  for k, v in pairs(extra or {}) do desc[k] = v end
  return desc
end

describe("pbt.options", function()
  it("measures edit distance with transpositions (by hand)", function()
    assert.are.equal(0, options.distance("mode", "mode"))
    assert.are.equal(1, options.distance("mod", "mode"))       -- a deletion
    assert.are.equal(1, options.distance("pading", "padding")) -- an insertion
    assert.are.equal(1, options.distance("fractoin", "fraction")) -- a transposition
    assert.are.equal(2, options.distance("outt", "ou"))
    assert.are.equal(3, options.distance("kitten", "sitting"))
  end)

  it("suggests only a near name", function()
    assert.are.equal("padding", options.nearest("pading", { "stride", "padding", "bias" }))
    assert.are.equal("generator", options.nearest("generater", { generator = true, dtype = true }))
    assert.are.equal("lr", options.nearest("LR", { "lr", "momentum" }))
    assert.is_nil(options.nearest("learning_rate", { "lr", "momentum" }))
    assert.is_nil(options.nearest("x", { "population" }))
  end)
end)

describe("a misspelt field or option", function()
  local cases = {
    { "an experiment field", function() pbt.experiment(experiment({ mod = "min" })) end,
      "experiment: unknown field 'mod' (did you mean 'mode'?)" },
    { "an experiment field far from any", function() pbt.experiment(experiment({ colour = 1 })) end,
      "experiment: unknown field 'colour'" },
    { "explore", function() pbt.experiment(experiment({ explor = pbt.explore.perturb{} })) end,
      "experiment: unknown field 'explor' (did you mean 'explore'?)" },
    { "spaces", function() pbt.experiment(experiment({ spaces = {} })) end,
      "experiment: unknown field 'spaces' (did you mean 'space'?)" },
    { "populaton", function() pbt.experiment(experiment({ populaton = 4 })) end,
      "experiment: unknown field 'populaton' (did you mean 'population'?)" },
    { "on_step (never used: not a field)", function() pbt.experiment(experiment({ on_step = print })) end,
      "experiment: unknown field 'on_step'" },
    { "a budget key", function() pbt.experiment(experiment({ budget = { step = 3 } })) end,
      "experiment: budget: unknown field 'step' (did you mean 'steps'?)" },
    { "a run option", function() pbt.experiment(experiment()):run{ outt = "/tmp/x" } end,
      "experiment: run: unknown option 'outt' (did you mean 'out'?)" },
    { "Conv2d", function() nn.Conv2d(1, 2, 3, { pading = 1 }) end,
      "Conv2d: unknown option 'pading' (did you mean 'padding'?)" },
    { "Linear", function() nn.Linear(784, 10, { generater = pbt.Generator(1) }) end,
      "Linear: unknown option 'generater' (did you mean 'generator'?)" },
    { "MaxPool2d", function() nn.MaxPool2d(2, { strides = 2 }) end,
      "MaxPool2d: unknown option 'strides' (did you mean 'stride'?)" },
    { "Dropout", function() nn.Dropout(0.5, { generater = 1 }) end,
      "Dropout: unknown option 'generater' (did you mean 'generator'?)" },
    { "LayerNorm", function() nn.LayerNorm(4, { epsilon = 1e-3 }) end,
      "LayerNorm: unknown option 'epsilon'" },
    { "Embedding", function() nn.Embedding(4, 2, { dtpe = "float64" }) end,
      "Embedding: unknown option 'dtpe' (did you mean 'dtype'?)" },
    { "conv2d", function() nn.conv2d(T.zeros(1, 1, 4, 4), T.zeros(1, 1, 3, 3), nil, { strid = 1 }) end,
      "conv2d: unknown option 'strid' (did you mean 'stride'?)" },
    { "max_pool2d", function() nn.max_pool2d(T.zeros(1, 1, 4, 4), 2, { paddin = 0 }) end,
      "max_pool2d: unknown option 'paddin' (did you mean 'padding'?)" },
    { "dropout", function() nn.dropout(T.zeros(2), 0.5, { train = false }) end,
      "dropout: unknown option 'train'" },
    { "load_state_dict", function() nn.Linear(2, 2):load_state_dict({}, { strct = false }) end,
      "load_state_dict: unknown option 'strct' (did you mean 'strict'?)" },
    { "an optimizer", function() pbt.optim.SGD(nn.Linear(2, 2):parameters(), { lr = 0.1, momentun = 0.9 }) end,
      "SGD: unknown option 'momentun' (did you mean 'momentum'?)" },
    { "options that are not a table", function() nn.Linear(2, 2, 5) end,
      "Linear: options must be a table, got number" },
  }
  for _, c in ipairs(cases) do
    it("is an error naming it: " .. c[1], function()
      local ok, err = pcall(c[2])
      assert.is_false(ok)
      -- the message, after the place in the caller's code
      assert.are.equal(c[3], (tostring(err):gsub("^[^:]*spec/options_spec%.lua:%d+: ", "")))
    end)
  end

  it("points at the caller's line", function()
    local ok, err = pcall(function() nn.Conv2d(1, 2, 3, { pading = 1 }) end)
    assert.is_false(ok)
    assert.matches("options_spec%.lua:%d+: Conv2d: unknown option 'pading'", err)
  end)
end)

describe("a path", function()
  it("is a string: a number is refused, never made a file name", function()
    local x = T.zeros(1)
    local cases = {
      { function() pbt.save(1, x) end, "bad argument #1 to 'save' (string (a path) expected, got number)" },
      { function() pbt.load(12) end, "bad argument #1 to 'load' (string (a path) expected, got number)" },
      { function() pbt.save("", x) end, "bad argument #1 to 'save' (the path is empty)" },
      { function() pbt.data.idx(3) end, "bad argument #1 to 'idx' (string (a path) expected, got number)" },
      { function() pbt.data.csv(3) end, "bad argument #1 to 'csv' (string (a path) expected, got number)" },
      { function() pbt.core.sql.open(7) end, "bad argument #1 to 'open' (string (a path) expected, got number)" },
      { function() pbt.experiment(experiment()):run{ out = 5 } end,
        "experiment: run: out must be a directory's path (a string), got number" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(c[1])
      assert.is_false(ok)
      assert.are.equal(c[2], (tostring(err):gsub("^[^:]*spec/options_spec%.lua:%d+: ", "")))
    end
    local f = io.open("1", "rb")
    if f then f:close() end
    assert.is_nil(f, "a file named 1 was written")
  end)
end)

describe("errors that point at the user's rule or call", function()
  it("refuses a t-test window longer than the score window, at the experiment", function()
    local ok, err = pcall(function() pbt.experiment(experiment({ exploit = pbt.exploit.ttest{ window = 20 } })) end)
    assert.is_false(ok)
    assert.matches("options_spec%.lua:%d+: experiment: exploit.ttest's window %(20%) is longer than the " ..
      "experiment.s score window %(window = 10%): set window = 20 or more, or a shorter t%-test window", err)
    pbt.experiment(experiment({ exploit = pbt.exploit.ttest{ window = 20 }, window = 20 })) -- fine
  end)

  it("names a non-tensor given to nn's functions", function()
    assert.has_error(function() nn.relu(5) end, "relu: input must be a pbt.Tensor, got number")
    assert.has_error(function() nn.gelu("x") end, "gelu: input must be a pbt.Tensor, got string")
    assert.has_error(function() nn.mse_loss(T.zeros(2), nil) end,
      "mse_loss: target must be a pbt.Tensor or a number, got nil")
    assert.has_error(function() nn.binary_cross_entropy_with_logits(T.zeros(2), {}) end,
      "binary_cross_entropy_with_logits: targets must be a pbt.Tensor, got table")
  end)

  it("checks the rules' own options", function()
    assert.has_error(function() pbt.exploit.truncation{ fracton = 0.2 } end,
      "exploit.truncation: unknown option 'fracton' (did you mean 'fraction'?)")
    assert.has_error(function() pbt.exploit.truncation{ fraction = 0.9 } end,
      "exploit.truncation: fraction must be a number in (0, 0.5], got 0.9")
    assert.has_error(function() pbt.exploit.ttest{ alpa = 0.1 } end,
      "exploit.ttest: unknown option 'alpa' (did you mean 'alpha'?)")
    assert.has_error(function() pbt.exploit.ttest{ window = 1 } end,
      "exploit.ttest: window must be an integer >= 2, got 1")
    assert.has_error(function() pbt.exploit.tournament{ size = 3 } end, "exploit.tournament: unknown option 'size'")
    assert.has_error(function() pbt.explore.perturb{ factor = { 0.8, 1.2 } } end,
      "explore.perturb: unknown option 'factor' (did you mean 'factors'?)")
    assert.has_error(function() pbt.explore.resample{ p = 0.2 } end, "explore.resample: unknown option 'p'")
    assert.has_error(function() pbt.ready.plateau{ patiance = 2 } end,
      "ready.plateau: unknown option 'patiance' (did you mean 'patience'?)")
  end)
end)

describe("pbt.ready.plateau", function()
  -- m as the worker gives it, over a hand-written score sequence
  local function m_of(scores, since, mode, window)
    return { since = since or #scores, mode = mode or "max", window = window or 10, step = #scores,
      history = function() return scores end }
  end

  it("is ready when the last `patience` scores did not beat the best before them", function()
    local r = pbt.ready.plateau{ patience = 3 }
    assert.is_false(r(m_of({ 1, 2, 3, 4, 5 })))          -- still improving
    assert.is_true(r(m_of({ 1, 5, 4, 4, 3 })))           -- 4, 4, 3 after a 5
    assert.is_true(r(m_of({ 1, 5, 5, 5, 5 })))           -- equal is no improvement
    assert.is_false(r(m_of({ 5, 1, 1, 6 })))            -- 6 beats 5
    assert.is_false(r(m_of({ 1, 5, 4, 4, 3 }, 2)))       -- fewer than patience steps since the decision
    assert.is_false(r(m_of({ 4, 4, 3 })))                -- nothing before the last three
    assert.is_false(r(m_of({ 9, 5, 6, 7 }, 3, "min")))   -- 5 < 9: improved
    assert.is_true(r(m_of({ 5, 9, 6, 7 }, 3, "min")))    -- 6 is not below 5
    local d = pbt.ready.plateau{ patience = 2, min_delta = 0.5 }
    assert.is_true(d(m_of({ 1, 2, 2.4, 2.3 })))          -- 2.4 beats 2 by less than 0.5
    assert.is_false(d(m_of({ 1, 2, 2.6, 2.3 })))
  end)

  it("refuses a patience the score window cannot hold, at the experiment", function()
    local ok, err = pcall(function() pbt.experiment(experiment({ ready = pbt.ready.plateau{ patience = 10 } })) end)
    assert.is_false(ok)
    assert.matches("options_spec%.lua:%d+: experiment: ready.plateau's patience %(10%) needs a score window " ..
      "longer than it %(window = 10%): set window = 11 or more", err)
    pbt.experiment(experiment({ ready = pbt.ready.plateau{ patience = 10 }, window = 11 }))
    local r = pbt.ready.plateau{ patience = 10 }
    assert.has_error(function() r(m_of({ 1, 2 }, 10, "max", 10)) end,
      "ready.plateau: patience 10 needs a score window longer than 10 (the experiment's window is 10)")
  end)

  it("sees the member's own scores in a run: ready once a constant score stops improving", function()
    local readies = {}
    local e = pbt.experiment{
      population = 2, seed = 1, space = { lr = pbt.uniform(0.1, 1) }, window = 6,
      init = function() return { t = 0 } end,
      step = function(s) s.t = s.t + 1 end,
      eval = function(s) return math.min(s.t, 4) end, -- improves until step 4, then flat
      ready = function(m)
        local r = pbt.ready.plateau{ patience = 2 }(m)
        if r then readies[#readies + 1] = { m.member, m.step, m.score, #m:history() } end
        return r
      end,
      budget = { steps = 7 },
    }
    e:run{ workers = 1, progress = false }
    -- scores 1 2 3 4 4 4: at step 6 the last two (4, 4) do not beat the 4 before them
    assert.are.same({ 1, 6, 4, 6 }, readies[1])
  end)
end)

describe("a member's state", function()
  local worker = require("pbt.worker")

  it("is walked through tables with a metatable (a Lua class), so exploit copies what they hold", function()
    local Class = { __index = { twice = function(self) return self.w * 2 end } }
    local obj = setmetatable({ w = T.zeros(2), n = 3 }, Class)
    local parts = worker.parts({ obj = obj })
    assert.are.same({ "obj.w" }, { parts.tensors[1].name })
    assert.are.equal(obj.w, parts.tensors[1].tensor)
    assert.are.equal("obj.n", parts.values[1].name)
  end)

  it("refuses a function that holds a model, an optimizer or a trained tensor the state does not", function()
    local W = T.zeros(2, 2):requires_grad_()
    assert.has_error(function() worker.parts({ forward = function(x) return x:matmul(W) end }) end,
      "experiment: the state's 'forward' is a function that holds a tensor that requires grad (its upvalue " ..
      "'W') which the state does not: exploit could not copy it. Put it in the state table (state.W = ...) " ..
      "and read it from there")
    local model = nn.Linear(2, 2)
    assert.has_error(function() worker.parts({ f = function(x) return model(x) end }) end,
      "experiment: the state's 'f' is a function that holds a model (its upvalue 'model') which the state " ..
      "does not: exploit could not copy it. Put it in the state table (state.model = ...) and read it from there")
    -- held by the state too, or data that trains no further: fine
    worker.parts({ W = W, forward = function(x) return x:matmul(W) end })
    worker.parts({ model = model, f = function(x) return model(x) end })
    local data = T.ones(4)
    worker.parts({ w = T.zeros(1), loss = function() return data:sum() end })
  end)

  it("follows a function's upvalues through nested functions and tables, and accepts a held submodule", function()
    local net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    local body = net[1]
    worker.parts({ net = net, features = function(x) return body(x) end }) -- every parameter held
    local hidden = nn.Linear(2, 2)
    local function fwd(x) return hidden(x) end
    assert.has_error(function() worker.parts({ w = T.zeros(1), f = function(x) return fwd(x) end }) end,
      "experiment: the state's 'f' is a function that holds a model (its upvalue 'fwd.hidden') which the " ..
      "state does not: exploit could not copy it. Put it in the state table (state.hidden = ...) and read it " ..
      "from there")
    local m = { enc = nn.Linear(2, 2) }
    assert.has_error(function() worker.parts({ w = T.zeros(1), f = function(x) return m.enc(x) end }) end,
      "experiment: the state's 'f' is a function that holds a model (in its upvalue 'm', key enc) which the " ..
      "state does not: exploit could not copy it. Put it in the state table and read it from there")
  end)
end)

describe("hyperparameters applied", function()
  -- init sets the optimizer's lr from h; step never sets it again (unless told)
  local function opt_experiment(extra, step_extra)
    local desc = {
      population = 2, seed = 3, space = { lr = pbt.loguniform(0.01, 0.1) },
      init = function(h, g)
        local model = nn.Linear(2, 1, { generator = g })
        return { model = model, opt = pbt.optim.SGD(model:parameters(), { lr = h.lr }),
          fixed = pbt.optim.SGD(model:parameters(), { lr = 0.5 }), t = 0 }
      end,
      step = function(s, h)
        s.t = s.t + 1
        if step_extra then step_extra(s, h) end
        s.opt:zero_grad()
        local loss = s.model(T.ones(4, 2)):pow(2):mean()
        loss:backward()
        s.opt:step()
      end,
      eval = function(s) return s.model.weight:sum():item() end,
      ready = pbt.ready.every(1),
      exploit = pbt.exploit.truncation{ fraction = 0.5 },
      explore = pbt.explore.perturb{ factors = { 0.5, 2 } },
      budget = { steps = 4 },
    }
    for k, v in pairs(extra or {}) do desc[k] = v end
    return pbt.experiment(desc)
  end

  it("stops a run whose optimizer keeps its old lr after h.lr changed", function()
    local ok, err = pcall(function() opt_experiment():run{ workers = 1, progress = false } end)
    assert.is_false(ok)
    assert.matches("^experiment: member %d: the state's optimizer 'opt' trained with lr = 0%.0%d+, the " ..
      "value before the last decision, while the member's hyperparameter lr = 0%.%d+: set it from h in the " ..
      "experiment's apply%(state, h%), which runs before a member trains with new hyperparameters, or in " ..
      "step %(check_applied = false turns this check off%)$", err)
  end)

  it("is content when apply or step sets it, with a decay in step, with an optimizer h does not tie", function()
    local seen = {}
    local function apply(s, h)
      s.opt.lr = h.lr
      seen[#seen + 1] = h.lr
    end
    opt_experiment({ apply = apply }):run{ workers = 1, progress = false }
    opt_experiment({}, function(s, h) s.opt.lr = h.lr end):run{ workers = 1, progress = false }
    opt_experiment({}, function(s, h) s.opt.lr = h.lr / (1 + s.t) end):run{ workers = 1, progress = false }
    opt_experiment({}, function(s, h) s.opt.lr = h.lr * 0.5 end):run{ workers = 1, progress = false }
    opt_experiment({ apply = apply }, function(s, h) s.opt.lr = h.lr * 0.5 end):run{ workers = 1,
      progress = false }
    opt_experiment({ check_applied = false }):run{ workers = 1, progress = false }
    -- one step each (no decision): each member's recorded lr is what apply gave its optimizer
    seen = {}
    local r = opt_experiment({ apply = apply, budget = { steps = 1 } }):run{ workers = 1, progress = false }
    assert.are.same({ r.schedules[1][1].h.lr, r.schedules[2][1].h.lr }, seen)
  end)
end)

describe("metrics", function()
  local function metric_experiment(extra)
    local desc = {
      population = 2, seed = 4, space = { lr = pbt.uniform(0.1, 1) }, metric = "acc",
      init = function() return { t = 0 } end,
      step = function(s, h) s.t = s.t + h.lr end,
      eval = function(s) return { acc = s.t, loss = 1 / (1 + s.t) } end,
      ready = pbt.ready.every(2), budget = { steps = 4 },
    }
    for k, v in pairs(extra or {}) do desc[k] = v end
    return pbt.experiment(desc)
  end

  it("takes the experiment's metric as the score and logs every metric, in events and scores.csv", function()
    local dir = os.tmpname()
    os.remove(dir)
    local r = metric_experiment():run{ workers = 1, progress = false, out = dir }
    local reports = 0
    for _, ev in ipairs(r.events) do
      if ev.kind == "report" then
        reports = reports + 1
        assert.are.equal(ev.score, ev.metrics.acc)
        assert.are.equal(1 / (1 + ev.score), ev.metrics.loss) -- the same evaluation's other metric
      end
    end
    assert.are.equal(8, reports)
    local f = assert(io.open(dir .. "/scores.csv"))
    local header = f:read("l")
    local rows = 0
    for line in f:lines() do
      local score, acc, loss = line:match("^%d+,%d+,([^,]+),([^,]+),([^,]+),[^,]+$")
      assert.are.equal(tonumber(score), tonumber(acc))
      assert.are.equal(1 / (1 + tonumber(acc)), tonumber(loss))
      rows = rows + 1
    end
    f:close()
    assert.are.equal("member,step,score,acc,loss,lr", header)
    assert.are.equal(8, rows)
    os.execute("rm -rf " .. dir)
  end)

  it("names what is wrong with a table eval returns", function()
    local cases = {
      { { metric = false }, function() return { acc = 1 } end,
        'eval returned a table of metrics: name the one that is the score with the experiment\'s metric = "<name>"' },
      { {}, function() return { accuracy = 1, loss = 2 } end,
        "eval's metrics have no 'acc' (the experiment's metric; it gave accuracy, loss)" },
      { {}, function() return { acc = 1, loss = "low" } end, "eval's metric 'loss' is string, not a number" },
      { {}, function() return { acc = T.ones(1) } end, "eval's metric 'acc' is a pbt.Tensor, not a number (use :item())" },
      { {}, function() return { acc = 0 / 0 } end, "eval's metric 'acc' is NaN" },
    }
    for _, c in ipairs(cases) do
      local extra = { eval = c[2] }
      if c[1].metric == false then extra.metric = nil end
      local e = metric_experiment(extra)
      if c[1].metric == false then e.metric = nil end
      -- every member fails so: the run ends, naming the first one's reason
      assert.has_error(function() e:run{ workers = 1, progress = false } end,
        "experiment: every member has failed (member 1: " .. c[3] .. ")")
    end
  end)
end)

describe("the core's options tables", function()
  it("name a misspelt key with the nearest known one", function()
    local cases = {
      { function() T.zeros(2, { dtyp = "float64" }) end, "unknown option 'dtyp' (did you mean 'dtype'?)" },
      { function() T.ones({ 2, 2 }, { dtyep = "float64" }) end, "unknown option 'dtyep' (did you mean 'dtype'?)" },
      { function() T.randn(2, { generater = pbt.Generator(1) }) end,
        "unknown option 'generater' (did you mean 'generator'?)" },
      { function() T.tensor({ 1, 2 }, { type = "float64" }) end, "unknown option 'type' (did you mean 'dtype'?)" },
      { function() T.linspace(0, 1, 5, { size = 3 }) end, "unknown option 'size'" },
      { function() pbt.select.truncation({ 1, 2 }, { mod = "min" }) end, "unknown option 'mod' (did you mean 'mode'?)" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(c[1])
      assert.is_false(ok)
      assert.matches("(" .. c[2]:gsub("%p", "%%%0") .. ")", tostring(err))
    end
  end)
end)
