-- Specs of the PBT face: search spaces, explore and ready rules, the
-- experiment runner, schedules, replay and the run directory.
local pbt = require("pbt")
local json = require("pbt.json")
local T = pbt.tensor

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(pbt.core.mkdir(d))
  return d
end

local read = require("spec.helper").readfile

describe("pbt.space", function()
  it("perturbs continuous values by the factor and clips them to the bounds", function()
    local g = pbt.Generator(1)
    local u = pbt.uniform(0, 1)
    assert.are.equal(0.5 * 1.2, u:perturb(0.5, 1.2, g))
    assert.are.equal(1, u:perturb(0.9, 1.2, g))
    local l = pbt.loguniform(1e-3, 1e-1)
    assert.are.equal(1e-1, l:perturb(0.09, 1.2, g))
    assert.are.equal(1e-3, l:perturb(1e-3, 0.8, g))
    assert.are.equal(0.02 * 0.8, l:perturb(0.02, 0.8, g))
  end)

  it("keeps integers integers, moving them by at least one", function()
    local g = pbt.Generator(1)
    local d = pbt.int(1, 10)
    assert.are.equal(6, d:perturb(5, 1.2, g))      -- round(6.0)
    assert.are.equal(4, d:perturb(5, 0.8, g))      -- round(4.0)
    assert.are.equal(3, d:perturb(2, 1.2, g))      -- round(2.4) = 2 would not move
    assert.are.equal(10, d:perturb(10, 1.2, g))    -- clipped
    assert.are.equal("integer", math.type(d:perturb(7, 1.2, g)))
  end)

  it("moves ordered choices to a neighbour and resamples unordered ones", function()
    local g = pbt.Generator(1)
    local o = pbt.ordered{ 16, 32, 64 }
    assert.are.equal(64, o:perturb(32, 1.2, g))
    assert.are.equal(16, o:perturb(32, 0.8, g))
    assert.are.equal(16, o:perturb(16, 0.8, g))
    local c = pbt.choice{ "a", "b", "c" }
    local seen = {}
    for _ = 1, 200 do seen[c:perturb("a", 1.2, g)] = true end
    assert.is_true(seen.a and seen.b and seen.c)
  end)

  it("keeps every explored value inside its space over many perturbations", function()
    local space = {
      lr = pbt.loguniform(1e-4, 1e-1), mom = pbt.uniform(0, 0.99), bs = pbt.int(8, 256),
      act = pbt.choice{ "relu", "tanh" }, width = pbt.ordered{ 64, 128, 256 },
      fixed = pbt.fixed(3),
    }
    local g = pbt.Generator(7)
    local h = pbt.space.sample(space, g)
    local rules = { pbt.explore.perturb{ factors = { 0.5, 2.0 } }, pbt.explore.resample{ probability = 0.5 },
      pbt.explore.perturb_or_resample{} }
    for k = 1, 3000 do
      h = rules[k % 3 + 1](h, space, g)
      for name, d in pairs(space) do
        assert(d:contains(h[name]), ("%s = %s left %s"):format(name, tostring(h[name]), tostring(d)))
      end
    end
    assert.are.equal("integer", math.type(h.bs))
  end)

  it("samples from the prior with an explicit generator", function()
    local a = pbt.space.sample({ x = pbt.uniform(2, 3), y = pbt.int(1, 4) }, pbt.Generator(5))
    local b = pbt.space.sample({ x = pbt.uniform(2, 3), y = pbt.int(1, 4) }, pbt.Generator(5))
    assert.are.same(a, b)
    assert.is_true(a.x >= 2 and a.x < 3)
  end)

  it("rejects bad distributions with clear messages", function()
    assert.has_error(function() pbt.uniform(1, 0) end, "uniform: lo (1) must be less than hi (0)")
    assert.has_error(function() pbt.loguniform(0, 1) end,
      "loguniform: bounds must satisfy 0 < lo < hi, got 0 and 1")
    assert.has_error(function() pbt.int(1.5, 3) end, "int: bounds must be integers, got 1.5 and 3")
    assert.has_error(function() pbt.choice{} end, "choice: expects a non-empty list of values")
  end)
end)

describe("pbt.explore and pbt.ready", function()
  it("resamples with the given probability (0 keeps, 1 redraws everything)", function()
    local space = { x = pbt.uniform(0, 1) }
    assert.are.equal(0.25, pbt.explore.resample{ probability = 0 }({ x = 0.25 }, space, pbt.Generator(3)).x)
    local g, ref = pbt.Generator(3), pbt.Generator(3)
    ref:uniform() -- the coin
    local expected = ref:uniform(0, 1)
    assert.are.equal(expected, pbt.explore.resample{ probability = 1 }({ x = 0.25 }, space, g).x)
  end)

  it("perturbs by one of the factors", function()
    local space = { x = pbt.uniform(0, 100) }
    local g = pbt.Generator(4)
    for _ = 1, 50 do
      local x = pbt.explore.perturb{ factors = { 0.8, 1.2 } }({ x = 10 }, space, g).x
      assert.is_true(math.abs(x - 8) < 1e-12 or math.abs(x - 12) < 1e-12)
    end
  end)

  it("combines ready rules", function()
    local r = pbt.ready.all(pbt.ready.every(5), pbt.ready.after(20))
    assert.is_false(r{ step = 10, since = 5 })
    assert.is_true(r{ step = 20, since = 5 })
    assert.is_false(r{ step = 25, since = 4 })
    assert.is_true(pbt.ready.any(pbt.ready.every(5), pbt.ready.after(20)){ step = 21, since = 0 })
    assert.has_error(function() pbt.ready.every(0) end, "ready.every: expects a positive integer, got 0")
  end)
end)

-- a small population learning y = 3x with SGD; lr is the hyperparameter
local function linear_experiment(opts)
  opts = opts or {}
  local x = T.linspace(-1, 1, 16, { dtype = "float64" })
  local y = x * 3
  return pbt.experiment{
    name = "linear", population = opts.population or 4, seed = opts.seed or 11,
    sync = opts.sync, mode = "min",
    space = { lr = pbt.loguniform(0.05, 0.5) },
    init = function(_, g) return { w = T.randn(1, { dtype = "float64", generator = g }), count = 0 } end,
    step = function(state, h, g)
      if opts.fail and opts.fail(state) then error("boom") end
      state.count = state.count + 1
      local noise = g:normal(0, 0.01)
      local grad = ((state.w * x - y) * x):mean():item() * 2 + noise
      state.w:sub_(T({ grad }, { dtype = "float64" }), h.lr)
    end,
    eval = function(state)
      if opts.nan and opts.nan(state) then return 0 / 0 end
      return ((state.w * x - y) ^ 2):mean():item()
    end,
    ready = pbt.ready.every(3),
    exploit = opts.exploit or pbt.exploit.truncation{ fraction = 0.25 },
    explore = pbt.explore.perturb{ factors = { 0.8, 1.2 } },
    budget = { steps = opts.steps or 15 },
  }
end

local log_text = require("spec.helper").log_text

describe("pbt.experiment", function()
  it("gives the same event log, bit for bit, for the same seed, in both modes", function()
    for _, sync in ipairs({ true, false }) do
      local a = linear_experiment{ sync = sync }:run{ progress = false }
      local b = linear_experiment{ sync = sync }:run{ progress = false }
      assert.are.equal(log_text(a.events), log_text(b.events))
      assert.is_true(#a.events > 20)
      local c = linear_experiment{ sync = sync, seed = 12 }:run{ progress = false }
      assert.are_not.equal(log_text(a.events), log_text(c.events))
    end
  end)

  it("exploits and explores: the bottom quarter copies the top quarter", function()
    local r = linear_experiment{}:run{ progress = false }
    local exploits = 0
    for _, ev in ipairs(r.events) do
      if ev.kind == "exploit" then
        exploits = exploits + 1
        assert.are_not.equal(ev.member, ev.other)
      end
    end
    -- 15 steps, ready every 3: decisions after steps 3, 6, 9 and 12, one
    -- recipient of four each time; none after step 15, which ends the budget
    -- (its new hyperparameters would never train)
    assert.are.equal(4, exploits)
    -- training goes on through the exploits: the best final score is well
    -- below every member's first score
    local first = math.huge
    for i = 1, 4 do first = math.min(first, r.scores[i][1][2]) end
    assert.is_true(r.best.score < first / 2, ("%g vs %g"):format(r.best.score, first))
  end)

  it("asks the ready rule once per step, in both modes", function()
    for _, sync in ipairs({ true, false }) do
      local calls, steps = 0, 0
      local e = pbt.experiment{
        population = 3, seed = 2, sync = sync, space = { lr = pbt.uniform(0.1, 0.2) },
        init = function() return { w = T.zeros(1) } end,
        step = function() steps = steps + 1 end,
        eval = function(s) return s.w:item() end,
        ready = function(m) calls = calls + 1 return m.since >= 2 end,
        budget = { steps = 6 },
      }
      e:run{ progress = false }
      -- sync: everyone at the same count, 3 x 6 steps; async: a recipient takes
      -- its donor's count (the steps behind its weights), so the total varies
      if sync then assert.are.equal(18, steps) end
      assert.are.equal(steps, calls)
    end
  end)

  it("marks a member that fails as failed, logs its error and replaces it", function()
    local calls = 0
    local r = linear_experiment{ fail = function() calls = calls + 1 return calls == 6 end }
      :run{ progress = false }
    local failures, replaced = 0, false
    for k, ev in ipairs(r.events) do
      if ev.kind == "failure" then
        failures = failures + 1
        assert.matches("boom", ev.detail, 1, true)
        for j = k + 1, #r.events do
          local e2 = r.events[j]
          if e2.kind == "exploit" and e2.member == ev.member then replaced = true break end
        end
      end
    end
    assert.is_true(failures >= 1)
    assert.is_true(replaced)
  end)

  it("treats a NaN score as a failure", function()
    local calls = 0
    local r = linear_experiment{ nan = function() calls = calls + 1 return calls == 7 end }
      :run{ progress = false }
    local nan_failures = 0
    for _, ev in ipairs(r.events) do
      if ev.kind == "failure" and ev.detail == "eval returned NaN" then nan_failures = nan_failures + 1 end
    end
    assert.are.equal(1, nan_failures)
  end)

  it("replays a schedule without exploits exactly (same seed, same data order)", function()
    local e = linear_experiment{ exploit = function() return nil end }
    local r = e:run{ progress = false }
    for i = 1, 4 do
      local s = r.schedules[i]
      assert.are.equal(1, #s)      -- never changed
      assert.are.equal(i, s.root)
      local score = pbt.replay(e, s)
      assert.are.equal(r.scores[i][#r.scores[i]][2], score)
    end
  end)

  it("stitches the schedule of a member whose lineage has exploits", function()
    local r = linear_experiment{}:run{ progress = false }
    local stitched
    for i = 1, 4 do if #r.schedules[i] > 1 then stitched = r.schedules[i] end end
    assert.is_truthy(stitched)
    for k = 2, #stitched do assert.is_true(stitched[k].step >= stitched[k - 1].step) end
    local score = pbt.replay(linear_experiment{}, stitched)
    assert.are.equal("number", type(score))
  end)

  it("writes the run directory as it goes: events, scores, schedule, best state, pictures", function()
    local dir = tmpdir()
    local r = linear_experiment{}:run{ progress = false, out = dir }
    local lines = {}
    for line in read(dir .. "/events.jsonl"):gmatch("[^\n]+") do lines[#lines + 1] = json.decode(line) end
    assert.are.equal(#r.events, #lines)
    assert.are.equal(r.events[#r.events].kind, lines[#lines].kind)
    assert.are.equal("member,step,score,lr", read(dir .. "/scores.csv"):match("^[^\n]+"))
    -- each row's lr is the member's hyperparameter at that report: constant from one of its
    -- explore events to the next, and the explore's new lr after it (followed here through
    -- r.events, not through the reports' own data)
    local rows = {}
    for line in read(dir .. "/scores.csv"):gmatch("[^\n]+") do
      local m, step, score, lr = line:match("^(%d+),(%d+),([^,]+),([^,]+)$")
      if m then rows[#rows + 1] = { tonumber(m), tonumber(step), tonumber(score), tonumber(lr) } end
    end
    local expected, k, explored = {}, 0, 0
    for _, ev in ipairs(r.events) do
      if ev.kind == "explore" then
        expected[ev.member] = ev.new.lr
        explored = explored + 1
      elseif ev.kind == "report" then
        k = k + 1
        local row = rows[k]
        assert.are.same({ ev.member, ev.step, ev.score }, { row[1], row[2], row[3] })
        if expected[ev.member] == nil then expected[ev.member] = row[4] end -- its first h
        assert.are.equal(expected[ev.member], row[4])
      end
    end
    assert.are.equal(k, #rows)
    assert.is_true(explored > 0)
    local best = pbt.load(dir .. "/best.pbt")
    assert.are.equal(r.best.member, best.member)
    assert.are.equal(r.best.score, best.score)
    assert.is_true(pbt.tensor.equal(r.best.state.w, best.tensors.w))
    local sched = json.decode(read(dir .. "/schedule.json"))
    assert.are.equal(#r.schedules, #sched)
    assert.are.equal(#r.schedules[1], #sched[1].entries)
    assert.are.equal(r.schedules[1].steps, sched[1].steps)
    for _, name in ipairs({ "scores.svg", "hparam_lr.svg", "lineage.svg" }) do
      local svg = read(dir .. "/" .. name)
      assert.matches("^<%?xml", svg)
      -- xmllint comes from libxml2-utils, which make test installs
      assert.is_true(os.execute("xmllint --noout " .. dir .. "/" .. name), name .. " is not well-formed")
    end
    os.execute("rm -rf " .. dir)
  end)

  it("shows a progress line on stderr when asked (as on a terminal)", function()
    local written, stderr = {}, io.stderr
    io.stderr = { write = function(self, ...) for _, s in ipairs({ ... }) do written[#written + 1] = s end return self end }
    local ok, err = pcall(function() linear_experiment{}:run{ progress = true } end)
    io.stderr = stderr
    assert(ok, err)
    local text = table.concat(written)
    -- 4 members x 15 steps; the last line reports the whole budget
    assert.matches("\rlinear: 60/60 steps, best [%d.e+-]+, median [%d.e+-]+, 4 exploits, 0/1 workers busy, [%d]+ s left", text)
  end)

  it("leaves a tensor that every member holds (a data set) out of the members' states", function()
    local data = T.ones(4)
    local e = pbt.experiment{
      population = 3, seed = 1, space = { lr = pbt.uniform(0, 1) },
      init = function(_, g) return { w = T.rand({ 2 }, { generator = g }), data = data } end,
      step = function(s, h) s.w:add_(T.full({ 2 }, h.lr)) end,
      eval = function(s) return s.w:sum():item() end,
      ready = pbt.ready.every(1), budget = { steps = 3 },
    }
    local r = e:run{ progress = false }
    assert.are.equal(4, data:sum():item())
    assert.is_truthy(r.best)
  end)

  it("refuses members whose states differ, naming the parts", function()
    local k = 0
    local e = pbt.experiment{
      population = 2, space = {},
      init = function() k = k + 1; if k == 1 then return { w = T.zeros(1), a = 1 } end return { w = T.zeros(1), b = { x = 1 } } end,
      step = function() end, eval = function() return 0 end, budget = { steps = 1 },
    }
    assert.has_error(function() e:run{ progress = false } end,
      "experiment: member 2's state has numbers {b.x}, member 1's {a}: init must build the same state for every member")
  end)

  it("says why, when every member has failed", function()
    local e = pbt.experiment{
      population = 2, space = {}, init = function() return {} end,
      step = function() error("no data", 0) end, eval = function() return 0 end, budget = { steps = 2 },
    }
    assert.has_error(function() e:run{ progress = false } end,
      "experiment: every member has failed (member 1: no data)")
  end)

  it("rejects a bad description with a clear message", function()
    assert.has_error(function() pbt.experiment{ population = 1 } end,
      "experiment: population must be an integer >= 2, got 1")
    assert.has_error(function() pbt.experiment{ population = 2, init = 1 } end,
      "experiment: 'init' must be a function, got number")
    assert.has_error(function()
      pbt.experiment{ population = 2, init = print, step = print, eval = print, mode = "best" }
    end, 'experiment: mode must be "max" or "min", got best')
    assert.has_error(function()
      pbt.experiment{ population = 2, init = print, step = print, eval = print, budget = { steps = "5" } }
    end, "experiment: budget.steps must be a positive integer, got 5")
    assert.has_error(function()
      pbt.experiment{ population = 2, init = print, step = print, eval = print, window = 0 }
    end, "experiment: window must be an integer >= 2, got 0")
  end)
end)

describe("the paper's toy problem (examples/toy.lua)", function()
  it("PBT beats explore-only, exploit-only and grid over 20 seeds", function()
    local print0 = _G.print
    _G.print = function() end -- the example prints its table
    local ok, finals = pcall(dofile, "examples/toy.lua")
    _G.print = print0
    assert(ok, finals)
    local function median(xs)
      local s = { table.unpack(xs) }
      table.sort(s)
      return (s[10] + s[11]) / 2
    end
    -- alone, the h = [1, 0] worker ends at theta = [0.9 * 0.98^200, 0.9]
    local stuck = 1.2 - ((0.9 * 0.98 ^ 200) ^ 2 + 0.81)
    assert.is_true(math.abs(stuck - 0.390) < 1e-3)
    assert.is_true(median(finals.pbt) >= 1.15)
    assert.is_true(math.abs(median(finals.grid) - stuck) < 1e-9)
    assert.is_true(math.abs(median(finals["exploit only"]) - stuck) < 1e-9)
    assert.is_true(median(finals.pbt) > median(finals["explore only"]))
  end)
end)
