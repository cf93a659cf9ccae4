-- pbt.explore.pb2: the data it reads from the population, the batch, the
-- kinds of hyperparameters, its errors, and whole runs.
local pbt = require("pbt")
local pb2 = require("pbt.pb2")
local helper = require("spec.helper")

-- A hand-made read-only view: members = {{steps =, history = {...},
-- schedule = {{step =, h =}, ...}}, ...}
local function fake_view(members, mode)
  local view = { size = #members, mode = mode or "max" }
  function view.history(_, j) return members[j].history end
  function view.member(_, j) return { steps = members[j].steps } end
  function view.schedule(_, j) return members[j].schedule end
  function view.score(_, j) local h = members[j].history return h[#h] end
  return view
end

local space = { lr = pbt.loguniform(1e-3, 1) }

describe("pbt.explore.pb2", function()
  describe("its data", function()
    -- member 1: steps 5, scores at steps 2..5 = 1, 2, 4, 5; lr 0.1 from step
    -- 0, 0.01 from step 3.  Member 2 copied member 1 at step 3 (the same
    -- past) and trained its own step 4 and 5 with lr 0.01.
    local sched = { { step = 0, h = { lr = 0.1 } }, { step = 3, h = { lr = 0.01 } } }
    local members = {
      { steps = 5, history = { 1, 2, 4, 5 }, schedule = sched },
      { steps = 5, history = { 2, 4, 6 }, schedule = sched },
    }
    local plan = { names = { "lr" }, gp_names = { "lr" }, conv = {
      lr = { to = function(v) return (math.log(v) - math.log(1e-3)) / (0 - math.log(1e-3)) end } } }

    it("is one point per step of each member's weights, with the lr in force, shared pasts once", function()
      local pts = pb2.data(fake_view(members), space, plan, "max")
      local got = {}
      for k, p in ipairs(pts) do got[k] = { p.t, p.r, p.y, math.floor(p.x[1] * 3 + 0.5) } end
      -- (step, score before, change, lr as thirds of the log range: 0.1 -> 2, 0.01 -> 1)
      assert.are.same({ { 3, 1, 1, 2 }, { 4, 2, 2, 1 }, { 5, 4, 1, 1 }, { 5, 4, 2, 1 } }, got)
      assert.is_true(math.abs(pts[1].x[1] - 2 / 3) < 1e-12)
    end)

    it("counts a fall of the score as the improvement when mode is min", function()
      local pts = pb2.data(fake_view(members, "min"), space, plan, "min")
      assert.are.same({ -1, -2, -1, -2 }, { pts[1].y, pts[2].y, pts[3].y, pts[4].y })
    end)

    it("skips non-finite scores and steps before the schedule", function()
      local m = { { steps = 3, history = { 1, 0 / 0, 3 }, schedule = { { step = 2, h = { lr = 0.1 } } } } }
      assert.are.same({}, pb2.data(fake_view(m), space, plan, "max"))
    end)
  end)

  describe("the rule", function()
    -- improvements peaked at lr = 0.03 (x = 0.49 of the log range), noisy
    local function population(n, g, extra)
      local members = {}
      for j = 1, n do
        local lr = math.exp(g:uniform(math.log(1e-3), 0))
        local gain = math.exp(-((math.log(lr) - math.log(0.03)) / 1.5) ^ 2)
        local hist, s = {}, 0
        for k = 1, 6 do s = s + gain + 0.01 * g:normal(); hist[k] = s end
        members[j] = { steps = 6, history = hist, schedule = { { step = 0, h = { lr = lr } } } }
      end
      for _, m in ipairs(extra or {}) do members[#members + 1] = m end
      return members
    end

    it("sends the member towards the best improvement, within the bounds", function()
      local members = population(8, pbt.Generator(3))
      local explore = pbt.explore.pb2{}
      local new = explore({ lr = 0.5 }, space, pbt.Generator(1), fake_view(members), 1)
      assert.is_true(new.lr >= 1e-3 and new.lr <= 1)
      assert.is_true(new.lr > 0.01 and new.lr < 0.1, "lr " .. new.lr)
    end)

    it("gives the same h for the same generator, and leaves h alone", function()
      local members = population(8, pbt.Generator(3))
      local h = { lr = 0.5 }
      local a = pbt.explore.pb2{}(h, space, pbt.Generator(1), fake_view(members), 1)
      local b = pbt.explore.pb2{}(h, space, pbt.Generator(1), fake_view(members), 1)
      assert.are.same(a, b)
      assert.are.same({ lr = 0.5 }, h)
    end)

    it("sends the next member of a batch away from one explored before it", function()
      local base = population(8, pbt.Generator(3))
      local explore = pbt.explore.pb2{ kappa = 3 }
      local x0 = explore({ lr = 0.5 }, space, pbt.Generator(1), fake_view(base), 1).lr
      -- member 9 has just been given x0 (its schedule's last entry is at its steps)
      local pending = { steps = 6, history = { 0.1 }, schedule = { { step = 6, h = { lr = x0 } } } }
      local x1 = explore({ lr = 0.5 }, space, pbt.Generator(1), fake_view(population(8, pbt.Generator(3), { pending })), 1).lr
      local scaled = function(v) return (math.log(v) - math.log(1e-3)) / -math.log(1e-3) end
      assert.is_true(math.abs(scaled(x1) - scaled(x0)) > 0.05, ("%g vs %g"):format(x1, x0))
      -- the same member 9 with a step trained since is no longer pending:
      -- its one-score history gives no point, so x0 again
      pending.schedule[1].step = 5
      local x2 = explore({ lr = 0.5 }, space, pbt.Generator(1), fake_view(population(8, pbt.Generator(3), { pending })), 1).lr
      assert.are.equal(x0, x2)
    end)

    it("takes its data before the batch's exploits change the population (pbt.explore.hooks)", function()
      local function fresh() return population(8, pbt.Generator(3)) end
      local explore = pbt.explore.pb2{}
      local before = explore({ lr = 0.5 }, space, pbt.Generator(1), fake_view(fresh()), 1)
      -- the deciders call the hook; then member 1 copies member 2 (history,
      -- steps, schedule): its own past is gone from the view
      local members = fresh()
      local view = fake_view(members)
      view.space = space
      pbt.explore.hooks[explore](view)
      members[1] = { steps = members[2].steps, history = members[2].history, schedule = members[2].schedule }
      local after = explore({ lr = 0.5 }, space, pbt.Generator(1), view, 1)
      -- the same as a view that still holds member 1's past for the data
      -- and gives member 1's new score and steps for its place
      local hybrid = fake_view(fresh())
      function hybrid.score(_, j) local h = members[j].history return h[#h] end
      assert.are.same(explore({ lr = 0.5 }, space, pbt.Generator(1), hybrid, 1), after)
      -- and without the hook the copied-over past is lost: another point
      local lost = explore({ lr = 0.5 }, space, pbt.Generator(1), fake_view(members), 1)
      assert.are_not.same(after, lost)
      assert.is_truthy(before.lr)
    end)

    it("redraws from the prior while there are fewer than min_data points", function()
      local members = { { steps = 2, history = { 1, 2 }, schedule = { { step = 0, h = { lr = 0.1 } } } } }
      local g1, g2 = pbt.Generator(5), pbt.Generator(5)
      local new = pbt.explore.pb2{}({ lr = 0.1 }, space, g1, fake_view(members), 1)
      assert.are.equal(space.lr:sample(g2), new.lr)
    end)

    it("rounds ints, moves ordered choices by position, keeps or redraws unordered ones, keeps fixed ones", function()
      local sp = { lr = pbt.loguniform(1e-3, 1), layers = pbt.int(1, 4), width = pbt.ordered{ 16, 32, 64 },
        act = pbt.choice{ "relu", "tanh" }, opt = pbt.fixed("sgd") }
      local g = pbt.Generator(8)
      local members = {}
      for j = 1, 8 do
        local h = { lr = math.exp(g:uniform(math.log(1e-3), 0)), layers = g:integer(1, 4),
          width = ({ 16, 32, 64 })[g:integer(1, 3)], act = "relu", opt = "sgd" }
        local hist, s = {}, 0
        for k = 1, 4 do s = s + h.layers * 0.1 + g:uniform() * 0.01; hist[k] = s end
        members[j] = { steps = 4, history = hist, schedule = { { step = 0, h = h } } }
      end
      local redrawn = 0
      for seed = 1, 20 do
        local new = pbt.explore.pb2{ resample_probability = 0.5 }({ lr = 0.1, layers = 2, width = 32, act = "relu",
          opt = "sgd" }, sp, pbt.Generator(seed), fake_view(members), 1)
        assert.are.equal("integer", math.type(new.layers))
        assert.is_true(new.layers >= 1 and new.layers <= 4)
        assert.is_true(sp.width:contains(new.width) and sp.act:contains(new.act))
        assert.are.equal("sgd", new.opt)
        if new.act == "tanh" then redrawn = redrawn + 1 end
      end
      -- redrawn with probability 0.5, then tanh with 0.5: about 5 of 20
      assert.is_true(redrawn > 0 and redrawn < 12, redrawn)
    end)

    it("names what is wrong", function()
      assert.has_error(function() pbt.explore.pb2{ dta = 3 } end)
      local ok, msg = pcall(pbt.explore.pb2, { dta = 3 })
      assert.truthy(msg:find("explore.pb2: unknown option 'dta' (did you mean 'data'?)", 1, true), msg)
      assert.has_error(function() pbt.explore.pb2{ data = 1 } end, "explore.pb2: data must be an integer in [2, 46340], got 1")
      assert.has_error(function() pbt.explore.pb2{ data = 8, min_data = 10 } end,
        "explore.pb2: min_data must be an integer in [2, 8], got 10")
      assert.has_error(function() pbt.explore.pb2{ candidates = 2000000 } end,
        "explore.pb2: candidates must be an integer in [1, 1000000], got 2000000")
      -- at the caller's line
      for _, bad in ipairs({ { dta = 2 }, { data = 1 }, { kappa = -1 }, { resample_probability = 2 } }) do
        local ok2, m2 = pcall(function() pbt.explore.pb2(bad) end)
        assert.is_false(ok2)
        assert.truthy(m2:find("^spec/pb2_spec%.lua:%d+: explore%.pb2: "), m2)
      end
      assert.has_error(function() pbt.explore.pb2{ resample_probability = 2 } end,
        "explore.pb2: resample_probability must be a number in [0, 1], got 2")
      assert.has_error(function() pbt.explore.pb2{ kappa = -1 } end,
        "explore.pb2: kappa must be a finite number >= 0, got -1")
      local explore = pbt.explore.pb2{}
      assert.has_error(function() explore({ x = 0 }, { x = pbt.normal(0, 1) }, pbt.Generator(1), fake_view({}), 1) end,
        "explore.pb2: hyperparameter 'x' is normal(0, 1), unbounded: PB2 searches within bounds (use pbt.uniform)")
      -- an unbounded space is refused when the experiment is made, before anything trains
      local ok3, m3 = pcall(function()
        return pbt.experiment{ population = 2, space = { x = pbt.normal(0, 1) },
          init = function() return {} end, step = function() end, eval = function() return 0 end,
          explore = pbt.explore.pb2{}, budget = { steps = 1 } }
      end)
      assert.is_false(ok3)
      assert.truthy(m3:find("experiment: explore.pb2: hyperparameter 'x' is normal(0, 1), unbounded", 1, true), m3)
      assert.has_error(function() explore({ lr = 0.1 }, space, pbt.Generator(1)) end,
        "explore.pb2: needs the population view (called as explore(h, space, generator, view, i))")
    end)
  end)

  describe("in a run", function()
    local function toy(seed, explore)
      return pbt.experiment{
        name = "pb2 toy", population = 6, seed = seed, mode = "max", sync = true,
        space = { lr = pbt.loguniform(1e-4, 1) },
        init = function() return { score = 0, steps = 0 } end,
        -- the best lr is 0.1 for the first 10 steps, 0.01 after: a schedule
        step = function(s, h, g, i)
          local target = s.steps < 10 and math.log(0.1) or math.log(0.01)
          s.steps = s.steps + 1
          s.score = s.score + math.exp(-(math.log(h.lr) - target) ^ 2) + 0.01 * g:normal()
        end,
        eval = function(s) return s.score end,
        ready = pbt.ready.every(2),
        exploit = pbt.exploit.truncation{ fraction = 0.34 },
        explore = explore,
        budget = { steps = 24 },
      }
    end

    it("is deterministic and follows the schedule the task asks for", function()
      local a = toy(4, pbt.explore.pb2{}):run{ workers = 1, progress = false }
      local b = toy(4, pbt.explore.pb2{}):run{ workers = 1, progress = false }
      assert.are.equal(helper.log_text(a.events), helper.log_text(b.events))
      local last = a.best.schedule[#a.best.schedule].h.lr
      assert.is_true(last > 0.002 and last < 0.05, "the best member's last lr " .. last)
    end)
  end)
end)
