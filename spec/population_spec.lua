-- pbt.Population: the population store (csrc/pbt_population.c).
-- Expected values are written by hand or computed with plain Lua loops.
local pbt = require("pbt")
local population = require("pbt.population")
local T = pbt.tensor

local DTYPES = { "float32", "float64" }

-- x rounded as the tensor's dtype stores it
local function round(x, dtype)
  if dtype == "float32" then return (string.unpack("f", string.pack("f", x))) end
  return x
end

local flat = require("spec.helper").flat -- all elements, row-major, via get
local each_index = require("spec.helper").each_index

-- the value member m holds at flat position k of entry e (distinct everywhere)
local function value(m, e, k) return m * 1000 + e * 100 + k + 0.25 end

-- a tensor of that shape whose flat element k is value(m, e, k)
local function filled(shape, dtype, m, e)
  local t = T.zeros(shape, { dtype = dtype })
  local n = 0
  each_index(shape, function(idx)
    n = n + 1
    idx[#shape + 1] = value(m, e, n)
    t:set(table.unpack(idx, 1, #shape + 1))
    idx[#shape + 1] = nil
  end)
  return t
end

local HPARAMS = {
  { name = "lr", kind = "float" },
  { name = "bs", kind = "int" },
  { name = "opt", kind = "choice", choices = { "sgd", "adam", "rmsprop" } },
}

-- A population of 4 whose members each hold a small model: two weight
-- matrices and a bias (dtype), an optimizer buffer in float64, and two
-- numbers (an integer step count and a float).  Returns the population and
-- models[i] = {w1 =, b1 =, w2 =, m1 =} (the Lua tensors being trained).
local ENTRIES = { { "w1", { 3, 4 } }, { "b1", { 4 } }, { "w2", { 4, 2 } } }
local function make(dtype, opts)
  opts = opts or {}
  local pop = population.new { size = 4, hparams = HPARAMS, window = opts.window }
  local models = {}
  for i = 1, 4 do
    local model = {}
    for e, spec in ipairs(ENTRIES) do
      model[spec[1]] = filled(spec[2], dtype, i, e)
      pop:set_state(i, spec[1], model[spec[1]])
    end
    model.m1 = filled({ 3, 4 }, "float64", i, 4)
    pop:set_state(i, "m1", model.m1)
    pop:set_state(i, "step", 10 * i)
    pop:set_state(i, "beta", i + 0.5)
    pop:set_hparam(i, "lr", 0.01 * i)
    pop:set_hparam(i, "bs", 16 * i)
    pop:set_hparam(i, "opt", (i - 1) % 3 + 1)
    models[i] = model
  end
  return pop, models
end

-- checks that every entry of `model` holds member m's values
local function assert_holds(model, dtype, m)
  for e, spec in ipairs(ENTRIES) do
    local got = flat(model[spec[1]])
    for k = 1, #got do
      assert.are.equal(round(value(m, e, k), dtype), got[k])
    end
  end
  local got = flat(model.m1)
  for k = 1, #got do assert.are.equal(value(m, 4, k), got[k]) end
end

-- the message of the error fn raises
local function err(fn)
  local ok, msg = pcall(fn)
  assert.is_false(ok)
  return msg
end

-- events without their position in the source
local function strip(events)
  for _, e in ipairs(events) do e.time = nil end
  return events
end

describe("pbt.Population", function()
  describe(".new()", function()
    it("makes members 1..size with id, generation 0, no parent, alive", function()
      local pop = population.new { size = 3 }
      assert.are.equal(3, pop:size())
      assert.are.equal(10, pop:window())
      for i = 1, 3 do
        assert.are.same({ id = i, generation = 0, steps = 0, status = "alive", nscores = 0,
          work = 0, version = 0, root = i, ncurve = 0, busy = false }, pop:member(i))
      end
      assert.are.equal("pbt.Population of 3 members (0 hyperparameters, window 10)",
        tostring(pop))
    end)

    it("keeps the hyperparameter list with kinds and number of choices", function()
      local pop = population.new { size = 1, hparams = HPARAMS, window = 4 }
      assert.are.equal(4, pop:window())
      assert.are.same({
        { name = "lr", kind = "float" },
        { name = "bs", kind = "int" },
        { name = "opt", kind = "choice", choices = 3 },
      }, pop:hparam_specs())
      local p2 = population.new { size = 1, hparams = { { name = "c", kind = "choice", choices = 5 } } }
      assert.are.same({ { name = "c", kind = "choice", choices = 5 } }, p2:hparam_specs())
    end)

    local bad = {
      { {}, "field 'size' must be an integer of at least 1" },
      { { size = 0 }, "field 'size' must be an integer of at least 1" },
      { { size = 2.5 }, "field 'size' must be an integer of at least 1" },
      { { size = 2, window = 0 }, "field 'window' must be an integer from 1 to 1048576" },
      { { size = 2, hparams = 3 }, "field 'hparams' must be a table" },
      { { size = 2, hparams = { 3 } }, "hparams[1] must be a table" },
      { { size = 2, hparams = { { kind = "float" } } }, "hparams[1].name must be a string" },
      { { size = 2, hparams = { { name = "a", kind = "real" } } },
        "hparams[1].kind must be 'float', 'int' or 'choice'" },
      { { size = 2, hparams = { { name = "a", kind = "choice", choices = 0 } } },
        "hparams[1].choices must be a table or a positive integer" },
      { { size = 2, hparams = { { name = "a", kind = "int" }, { name = "a", kind = "float" } } },
        "hyperparameter 'a' appears twice" },
      { { size = 2, hparams = { { name = "", kind = "int" } } }, "hyperparameter 1 has no name" },
    }
    for _, case in ipairs(bad) do
      it("refuses " .. case[2], function()
        assert.has_error(function() population.new(case[1]) end,
          "bad argument #1 to 'new' (" .. case[2] .. ")")
      end)
    end
  end)

  describe(":set_state() / :get_state()", function()
    it("shares tensors with the caller: no copy either way", function()
      local pop = population.new { size = 2 }
      local w = T.zeros(2, 3)
      pop:set_state(1, "w", w)
      w:set(2, 3, 7)
      local s = pop:get_state(1, "w")
      assert.are.equal(7, s:get(2, 3))
      s:set(1, 1, 5)
      assert.are.equal(5, w:get(1, 1))
      assert.are.same({ 2, 3 }, s:shape())
      assert.are.equal("float32", s:dtype())
    end)

    it("keeps integers as integers and floats as floats", function()
      local pop = population.new { size = 1 }
      pop:set_state(1, "step", 12)
      pop:set_state(1, "beta", 0.5)
      pop:set_state(1, "three", 3.0)
      assert.are.equal("integer", math.type(pop:get_state(1, "step")))
      assert.are.equal(12, pop:get_state(1, "step"))
      assert.are.equal(0.5, pop:get_state(1, "beta"))
      assert.are.equal("float", math.type(pop:get_state(1, "three")))
      assert.is_nil(pop:get_state(1, "missing"))
    end)

    it("replaces an entry of the same name in place, keeping the order", function()
      local pop = population.new { size = 1 }
      pop:set_state(1, "a", T.zeros(2))
      pop:set_state(1, "b", 1)
      pop:set_state(1, "a", 4)
      pop:set_state(1, "b", T.ones(3))
      assert.are.same({ "a", "b" }, pop:state_names(1))
      assert.are.equal(4, pop:get_state(1, "a"))
      assert.are.same({ 1, 1, 1 }, pop:get_state(1, "b"):totable())
      assert.are.equal(12, pop:state_bytes(1))
    end)

    it("names its arguments in errors", function()
      local pop = population.new { size = 2 }
      assert.has_error(function() pop:set_state(1, "w", "x") end,
        "bad argument #3 to 'set_state' (pbt.Tensor or number expected, got string)")
      assert.has_error(function() pop:set_state(1, "", 1) end,
        "bad argument #2 to 'set_state' (empty name)")
      assert.has_error(function() pop:set_state(3, "w", 1) end,
        "bad argument #1 to 'set_state' (member 3 out of range for a population of 2)")
      assert.has_error(function() pop:get_state(0, "w") end,
        "bad argument #1 to 'get_state' (member 0 out of range for a population of 2)")
    end)
  end)

  describe(":set_hparam() / :hparams()", function()
    it("stores floats, exact integers and 1-based choices", function()
      local pop = population.new { size = 2, hparams = HPARAMS }
      assert.are.same({}, pop:hparams(1))
      pop:set_hparam(1, "lr", 0.1)
      pop:set_hparam(1, "bs", (1 << 53) + 1) -- not representable as a double
      pop:set_hparam(1, "opt", 3)
      local h = pop:hparams(1)
      assert.are.same({ lr = 0.1, bs = (1 << 53) + 1, opt = 3 }, h)
      assert.are.equal("integer", math.type(h.bs))
      assert.are.equal("integer", math.type(h.opt))
      pop:set_hparam(2, "lr", 2) -- an integer given to a float is a float
      assert.are.equal("float", math.type(pop:hparams(2).lr))
      pop:set_hparam(2, "bs", 64.0) -- a float with an integer value is fine
      assert.are.equal(64, pop:hparams(2).bs)
    end)

    it("names its arguments in errors", function()
      local pop = population.new { size = 2, hparams = HPARAMS }
      local cases = {
        { function() pop:set_hparam(1, "mom", 1) end,
          "bad argument #2 to 'set_hparam' (no hyperparameter 'mom')" },
        { function() pop:set_hparam(1, "bs", 1.5) end,
          "bad argument #3 to 'set_hparam' (hyperparameter 'bs' takes an integer)" },
        { function() pop:set_hparam(1, "opt", "adam") end,
          "bad argument #3 to 'set_hparam' (hyperparameter 'opt' takes an integer (a 1-based choice))" },
        { function() pop:set_hparam(1, "opt", 4) end,
          "bad argument #3 to 'set_hparam' (choice 4 out of range for 'opt' (3 choices))" },
        { function() pop:set_hparam(1, "opt", 0) end,
          "bad argument #3 to 'set_hparam' (choice 0 out of range for 'opt' (3 choices))" },
        { function() pop:set_hparam(1, "lr", "x") end,
          "bad argument #3 to 'set_hparam' (number expected, got string)" },
        { function() pop:hparams(3) end,
          "bad argument #1 to 'hparams' (member 3 out of range for a population of 2)" },
        { function() pop:hparams(1.5) end,
          "bad argument #1 to 'hparams' (number has no integer representation)" },
      }
      for _, c in ipairs(cases) do assert.has_error(c[1], c[2]) end
    end)
  end)

  describe(":report() / :history() / :scores()", function()
    it("keeps the last `window` scores, oldest first", function()
      local pop = population.new { size = 2, window = 3 }
      assert.are.same({}, pop:history(1))
      pop:report(1, 1.5)
      pop:report(1, 2.5)
      assert.are.same({ 1.5, 2.5 }, pop:history(1))
      pop:report(1, 3.5)
      pop:report(1, 4.5)
      pop:report(1, 5.5, 50)
      assert.are.same({ 3.5, 4.5, 5.5 }, pop:history(1))
      local m = pop:member(1)
      assert.are.equal(5.5, m.score)
      assert.are.equal(3, m.nscores)
      assert.are.equal(50, m.steps)
      assert.are.same({}, pop:history(2))
    end)

    it("has a window of 10 by default", function()
      local pop = population.new { size = 1 }
      local want = {}
      for k = 1, 25 do pop:report(1, k) end
      for k = 16, 25 do want[#want + 1] = k end
      assert.are.same(want, pop:history(1))
    end)

    it("gives NaN for a member that has no score", function()
      local pop = population.new { size = 3 }
      pop:report(2, -1)
      pop:report(3, 0 / 0)
      local s = pop:scores()
      assert.are.equal(3, #s)
      assert.is_true(s[1] ~= s[1])
      assert.are.equal(-1, s[2])
      assert.is_true(s[3] ~= s[3])
      assert.is_nil(pop:member(1).score)
      local out = { 9, 9, 9 }
      assert.are.equal(out, pop:scores(out))
      assert.are.same({ -1 }, { out[2] })
      assert.is_true(out[1] ~= out[1])
    end)

    it("reads populations larger than one batch of 256", function()
      local pop = population.new { size = 600 }
      for i = 1, 600 do pop:report(i, i * 0.5) end
      local s = pop:scores()
      assert.are.equal(600, #s)
      for i = 1, 600 do assert.are.equal(i * 0.5, s[i]) end
    end)

    it("names its arguments in errors", function()
      local pop = population.new { size = 2 }
      assert.has_error(function() pop:report(1, "x") end,
        "bad argument #2 to 'report' (number expected, got string)")
      assert.has_error(function() pop:report(1, 1, -1) end,
        "bad argument #3 to 'report' (negative size -1)")
      assert.has_error(function() pop:history(5) end,
        "bad argument #1 to 'history' (member 5 out of range for a population of 2)")
    end)
  end)

  describe(":exploit()", function()
    for _, dtype in ipairs(DTYPES) do
      it("copies the donor's tensors into the recipient's buffers (" .. dtype .. ")", function()
        local pop, models = make(dtype)
        local before = { w1 = models[2].w1, b1 = models[2].b1 }
        local view = models[2].w1:t()          -- a view taken before the exploit
        local row = models[2].w2:narrow(1, 2, 2)
        pop:exploit(2, 4)
        assert_holds(models[2], dtype, 4)
        assert_holds(models[4], dtype, 4)     -- the donor is untouched
        assert_holds(models[1], dtype, 1)     -- and so are the others
        assert_holds(models[3], dtype, 3)
        -- the same Lua objects, and views of them, see the new values
        assert.are.equal(before.w1, models[2].w1)
        for i = 1, 3 do
          for j = 1, 4 do
            assert.are.equal(round(value(4, 1, (i - 1) * 4 + j), dtype), view:get(j, i))
          end
        end
        assert.are.equal(round(value(4, 3, 3), dtype), row:get(1, 1)) -- w2[2][1]
        -- the store still shares the recipient's own storage
        models[2].b1:set(1, -1)
        assert.are.equal(-1, pop:get_state(2, "b1"):get(1))
        assert.are.equal(round(value(4, 2, 1), dtype), pop:get_state(4, "b1"):get(1))
        -- numbers are copied
        assert.are.equal(40, pop:get_state(2, "step"))
        assert.are.equal(4.5, pop:get_state(2, "beta"))
      end)
    end

    it("copies into and from non-contiguous state tensors", function()
      local pop = population.new { size = 2 }
      local base = T.zeros(4, 3, { dtype = "float64" })
      pop:set_state(1, "w", base:t())                       -- [3,4], transposed
      local donor = filled({ 3, 4 }, "float64", 2, 1)
      pop:set_state(2, "w", donor)
      pop:exploit(1, 2)
      for i = 1, 3 do
        for j = 1, 4 do
          assert.are.equal(value(2, 1, (i - 1) * 4 + j), base:get(j, i))
        end
      end
      base:fill_(9)
      pop:exploit(2, 1)
      assert.are.same({ 9, 9, 9, 9 }, donor:select(1, 2):totable())
    end)

    it("copies hyperparameters, lineage, history and step count", function()
      local pop = make("float32", { window = 4 })
      for k = 1, 6 do pop:report(4, k, 100) end
      pop:report(2, -7, 30)
      pop:exploit(2, 4)
      assert.are.same({ lr = 0.01 * 4, bs = 64, opt = 1 }, pop:hparams(2))
      -- version: one per entry registered by make(), one for the exploit;
      -- curve: member 2's own report (the slot's record stays its own)
      local registered = #ENTRIES + 3
      assert.are.same({ id = 2, generation = 1, parent = 4, steps = 100, status = "alive",
        score = 6, nscores = 4, work = 0, version = registered + 1, root = 4, ncurve = 1,
        busy = false }, pop:member(2))
      assert.are.same({ 3, 4, 5, 6 }, pop:history(2))
      -- generation is the donor's + 1: the depth in the lineage tree
      pop:exploit(1, 2)
      assert.are.same({ id = 1, generation = 2, parent = 2, steps = 100, status = "alive",
        score = 6, nscores = 4, work = 0, version = registered + 1, root = 4, ncurve = 0,
        busy = false }, pop:member(1))
      pop:exploit(2, 3)
      assert.are.equal(1, pop:member(2).generation)
      assert.are.equal(3, pop:member(2).parent)
      assert.are.same({ lr = 0.01 * 3, bs = 48, opt = 3 }, pop:hparams(2))
      assert.are.same({}, pop:history(2))
      assert.is_nil(pop:member(2).score)
      assert.are.equal(0, pop:member(2).steps)
    end)

    it("revives a failed recipient and refuses a failed donor", function()
      local pop, models = make("float64")
      pop:log("failure", 1, nil, "step: loss is NaN")
      assert.are.equal("failed", pop:member(1).status)
      assert.has_error(function() pop:exploit(2, 1) end, "exploit: the donor has failed")
      assert_holds(models[2], "float64", 2)
      pop:exploit(1, 3)
      assert.are.equal("alive", pop:member(1).status)
      assert_holds(models[1], "float64", 3)
    end)

    local mismatches = {
      { "a shape", function(pop) pop:set_state(2, "w2", T.zeros(2, 4)) end,
        "exploit: state entry 'w2': shape [4,2] in the donor, [2,4] in the recipient" },
      { "a dtype", function(pop) pop:set_state(2, "w2", T.zeros(4, 2, { dtype = "float64" })) end,
        "exploit: state entry 'w2': float32 in the donor, float64 in the recipient" },
      { "a kind", function(pop) pop:set_state(2, "w2", 3) end,
        "exploit: state entry 'w2' is a tensor in the donor and a number in the recipient" },
      { "a name missing from the recipient", function(pop) pop:set_state(1, "extra", 1) end,
        "exploit: state entry 'extra' is missing from the recipient" },
      { "a name missing from the donor", function(pop) pop:set_state(2, "extra", T.zeros(1)) end,
        "exploit: state entry 'extra' is missing from the donor" },
      { "a shared storage", function(pop) pop:set_state(2, "w2", pop:get_state(1, "w2")) end,
        "exploit: state entry 'w2' shares its storage with the donor's" },
    }
    for _, case in ipairs(mismatches) do
      it("refuses " .. case[1] .. " and changes nothing", function()
        local pop, models = make("float32")
        case[2](pop)
        local n = pop:nevents()
        assert.has_error(function() pop:exploit(2, 1) end, case[3])
        assert_holds(models[2], "float32", 2)
        assert.are.same({ lr = 0.01 * 2, bs = 32, opt = 2 }, pop:hparams(2))
        assert.is_nil(pop:member(2).parent)
        assert.are.equal(n, pop:nevents())
      end)
    end

    it("names its arguments in errors", function()
      local pop = make("float32")
      assert.has_error(function() pop:exploit(2, 2) end,
        "bad argument #2 to 'exploit' (a member cannot exploit itself)")
      assert.has_error(function() pop:exploit(0, 1) end,
        "bad argument #1 to 'exploit' (member 0 out of range for a population of 4)")
      assert.has_error(function() pop:exploit(1, 5) end,
        "bad argument #2 to 'exploit' (member 5 out of range for a population of 4)")
      assert.has_error(function() pop:exploit(1) end,
        "bad argument #2 to 'exploit' (integer expected, got no value)")
    end)
  end)

  describe(":log() / :events()", function()
    it("records every report, exploit and logged event in order", function()
      local pop = make("float32")
      pop:report(1, 0.5, 10)
      pop:report(2, 0.75, 10)
      pop:log("ready", 1)
      pop:report(2, 0.75, 12)
      pop:exploit(1, 2)
      pop:log("explore", 1, nil, "lr 0.02 -> 0.024")
      pop:log("failure", 3, nil, "boom")
      pop:log("note", 4, 2, "start")
      pop:log("note", 4, 0, "") -- 0 (or nil) for no other member; "" for no detail
      assert.are.same({
        { seq = 1, kind = "report", member = 1, step = 10, score = 0.5, generation = 0 },
        { seq = 2, kind = "report", member = 2, step = 10, score = 0.75, generation = 0 },
        { seq = 3, kind = "ready", member = 1, step = 10, score = 0.5, generation = 0 },
        { seq = 4, kind = "report", member = 2, step = 12, score = 0.75, generation = 0 },
        { seq = 5, kind = "exploit", member = 1, other = 2, step = 12, score = 0.75, generation = 1 },
        { seq = 6, kind = "explore", member = 1, step = 12, score = 0.75, generation = 1,
          detail = "lr 0.02 -> 0.024" },
        { seq = 7, kind = "failure", member = 3, step = 0, generation = 0, detail = "boom" },
        { seq = 8, kind = "note", member = 4, other = 2, step = 0, generation = 0, detail = "start" },
        { seq = 9, kind = "note", member = 4, step = 0, generation = 0 },
      }, pop:events())
      assert.are.equal(9, pop:nevents())
      assert.are.equal("failed", pop:member(3).status)
      local tail = pop:events(8)
      assert.are.equal(2, #tail)
      assert.are.equal(8, tail[1].seq)
      assert.are.same({}, pop:events(10))
    end)

    it("adds a wall time only when asked", function()
      local pop = population.new { size = 1 }
      pop:report(1, 1)
      assert.is_nil(pop:events()[1].time)
      assert.are.equal("number", type(pop:events(1, true)[1].time))
    end)

    it("is the same log for the same calls", function()
      local function run()
        local pop = make("float64")
        for round = 1, 3 do
          for i = 1, 4 do pop:report(i, (i * 7 + round * 3) % 5, round * 10) end
          pop:exploit(1, 4)
          pop:log("explore", 1, nil, "round " .. round)
        end
        return pop:events()
      end
      assert.are.same(run(), run())
    end)

    it("keeps many events in order (past one batch)", function()
      local pop = population.new { size = 3 }
      for k = 1, 300 do pop:report(k % 3 + 1, k, k) end
      local ev = pop:events()
      assert.are.equal(300, #ev)
      for k = 1, 300 do
        assert.are.equal(k, ev[k].seq)
        assert.are.equal(k, ev[k].score)
        assert.are.equal(k % 3 + 1, ev[k].member)
      end
      local n = 0
      for e in pop:each_event(101) do
        n = n + 1
        assert.are.equal(100 + n, e.seq)
      end
      assert.are.equal(200, n)
    end)

    it("names its arguments in errors", function()
      local pop = population.new { size = 2 }
      assert.has_error(function() pop:log("exploit", 1) end,
        "bad argument #1 to 'log' (invalid option 'exploit')")
      assert.has_error(function() pop:log("ready", 3) end,
        "bad argument #2 to 'log' (member 3 out of range for a population of 2)")
      assert.has_error(function() pop:log("ready", 1, -1) end,
        "bad argument #3 to 'log' (member -1 out of range for a population of 2)")
      assert.has_error(function() pop:log("failure", 1, 2, "x") end,
        "bad argument #3 to 'log' (a failure names no other member)")
      assert.has_error(function() pop:events(0) end,
        "bad argument #1 to 'events' (sequence numbers start at 1)")
    end)
  end)

  describe(":set_status() / :set_steps()", function()
    it("sets a member's status and steps without logging", function()
      local pop = population.new { size = 2 }
      pop:set_status(2, "failed")
      assert.are.equal("failed", pop:member(2).status)
      pop:set_status(2, "alive")
      assert.are.equal("alive", pop:member(2).status)
      pop:set_steps(1, 25)
      assert.are.equal(25, pop:member(1).steps)
      assert.are.equal(0, pop:nevents())
      assert.has_error(function() pop:set_status(1, "dead") end,
        "bad argument #2 to 'set_status' (invalid option 'dead')")
    end)
  end)

  describe("handles", function()
    it("lets several owners hold one population", function()
      local pop = population.new { size = 2 }
      local other = pop:share()
      assert.are.equal(2, pop:refcount())
      other:report(2, 3)
      assert.are.equal(3, pop:scores()[2])
      do
        local closing <close> = other
      end
      assert.are.equal(1, pop:refcount())
      assert.has_error(function() other:size() end,
        "calling 'size' on bad self (population has been released)")
      assert.are.equal(2, pop:size())
    end)
  end)

  describe("the Lua face", function()
    it("sets and reads many entries and hyperparameters at once", function()
      local pop = population.new { size = 2, hparams = HPARAMS }
      local w, b = T.ones(2, 2), T.zeros(2)
      pop:set_states(1, { w = w, b = b, step = 3 })
      assert.are.same({ "b", "step", "w" }, pop:state_names(1))
      local s = pop:states(1)
      assert.are.equal(3, s.step)
      s.w:set(1, 1, 8)
      assert.are.equal(8, w:get(1, 1))
      pop:set_hparams(2, { lr = 0.5, opt = 2 })
      assert.are.same({ lr = 0.5, opt = 2 }, pop:hparams(2))
    end)
  end)
end)
