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

  -- ---- published state ----------------------------------------------------------

  -- A population whose members hold store-owned buffers (what a runner with
  -- workers registers): tensors "w" [2,3] and "b" [3] (dtype) and "m" [2,2]
  -- (float64), numbers "step" and "beta", registered in the order
  -- w, step, b, beta, m, so tensors count w, b, m and numbers step, beta.
  local STORE_REGISTERED = 5 -- set_state calls per member: its version after store()
  local function store(dtype, opts)
    opts = opts or {}
    local pop = population.new { size = opts.size or 4, hparams = HPARAMS, window = opts.window }
    for i = 1, pop:size() do
      pop:set_state(i, "w", T.zeros({ 2, 3 }, { dtype = dtype }))
      pop:set_state(i, "step", 0)
      pop:set_state(i, "b", T.zeros({ 3 }, { dtype = dtype }))
      pop:set_state(i, "beta", 0.5)
      pop:set_state(i, "m", T.zeros({ 2, 2 }, { dtype = "float64" }))
    end
    return pop
  end

  -- live tensors {w, b, m} holding the values of "member" m
  local function live(dtype, m)
    return { filled({ 2, 3 }, dtype, m, 1), filled({ 3 }, dtype, m, 2),
             filled({ 2, 2 }, "float64", m, 3) }
  end

  -- asserts that the tensors ts = {w, b, m} (live tensors or entries) hold
  -- the values of "member" m
  local function assert_values(ts, dtype, m)
    local dtypes = { dtype, dtype, "float64" }
    for e = 1, 3 do
      local got = flat(ts[e])
      assert.are.equal(({ 6, 3, 4 })[e], #got)
      for k = 1, #got do assert.are.equal(round(value(m, e, k), dtypes[e]), got[k]) end
    end
  end

  local function entries(pop, i)
    return { pop:get_state(i, "w"), pop:get_state(i, "b"), pop:get_state(i, "m") }
  end

  local function all_zero(t)
    for _, x in ipairs(flat(t)) do if x ~= 0 then return false end end
    return true
  end

  -- everything the store says about member i (entries as flat tables)
  local function snapshot(pop, i)
    local s = { member = pop:member(i), history = pop:history(i), curve = pop:curve(i),
      schedule = pop:schedule(i), hparams = pop:hparams(i), nevents = pop:nevents(), entries = {} }
    for _, name in ipairs(pop:state_names(i)) do
      local v = pop:get_state(i, name)
      s.entries[name] = type(v) == "number" and { math.type(v), v } or flat(v)
    end
    return s
  end

  local function released(t)
    getmetatable(t).__close(t)
    return t
  end

  -- n draws of every kind from g, in a fixed order
  local function draws(g, n)
    local out = {}
    for _ = 1, n do
      out[#out + 1] = g:normal()
      out[#out + 1] = g:uniform()
      out[#out + 1] = g:integer(1, 1000000)
    end
    return out
  end

  describe(":publish()", function()
    for _, dtype in ipairs(DTYPES) do
      it("copies the live tensors and numbers into the entries, each kind in order (" .. dtype .. ")",
        function()
          local pop = store(dtype)
          pop:publish(2, live(dtype, 7), { 12, 0.75 }, 0.5, 30, nil)
          assert_values(entries(pop, 2), dtype, 7)
          assert.are.equal(12, pop:get_state(2, "step"))
          assert.are.equal("integer", math.type(pop:get_state(2, "step")))
          assert.are.equal(0.75, pop:get_state(2, "beta"))
          -- the other members are untouched
          for _, i in ipairs({ 1, 3, 4 }) do
            for _, t in ipairs(entries(pop, i)) do assert.is_true(all_zero(t)) end
            assert.are.equal(0, pop:get_state(i, "step"))
          end
        end)
    end

    -- (the other specs here pass nil for "no generator" explicitly)
    it("and load take the generator as an optional last argument", function()
      local pop = store("float32")
      pop:publish(1, live("float32", 6), { 6, 0.5 }, 1, 1)
      local lv = live("float32", 1)
      local numbers, version = pop:load(1, lv)
      assert_values(lv, "float32", 6)
      assert.are.same({ 6, 0.5 }, numbers)
      assert.are.equal(STORE_REGISTERED + 1, version)
    end)

    it("keeps integers as integers and floats as floats", function()
      local pop = store("float32")
      pop:publish(1, live("float32", 1), { 3.0, 2 }, 1, 1, nil)
      assert.are.equal("float", math.type(pop:get_state(1, "step")))
      assert.are.equal(3, pop:get_state(1, "step"))
      assert.are.equal("integer", math.type(pop:get_state(1, "beta")))
      assert.are.equal(2, pop:get_state(1, "beta"))
      local big = (1 << 53) + 1 -- not representable as a double
      pop:publish(1, live("float32", 1), { big, -0.125 }, 1, 2, nil)
      assert.are.equal(big, pop:get_state(1, "step"))
      local numbers = pop:load(1, live("float32", 2), nil)
      assert.are.same({ big, -0.125 }, numbers)
      assert.are.equal("integer", math.type(numbers[1]))
    end)

    it("records the score as report does, adds one to work and bumps the version", function()
      local pop = store("float32", { window = 3 })
      for k = 1, 4 do pop:publish(3, live("float32", k), { k, 0.5 }, k * 1.5, k * 10, nil) end
      assert.are.same({ 3.0, 4.5, 6.0 }, pop:history(3))
      assert.are.equal(6.0, pop:score(3))
      assert.are.same({ id = 3, generation = 0, steps = 40, status = "alive", score = 6.0,
        nscores = 3, work = 4, version = STORE_REGISTERED + 4, root = 3, ncurve = 4,
        busy = false }, pop:member(3))
      assert.are.same({ { 10, 1.5 }, { 20, 3.0 }, { 30, 4.5 }, { 40, 6.0 } }, pop:curve(3))
      local ev = strip(pop:events())
      assert.are.equal(4, #ev)
      for k = 1, 4 do
        assert.are.same({ seq = k, kind = "report", member = 3, step = k * 10, score = k * 1.5,
          generation = 0 }, ev[k])
      end
      -- the last publish wins
      assert_values(entries(pop, 3), "float32", 4)
    end)

    it("copies: the live tensors and the entries change independently", function()
      local pop = store("float64")
      local lv = live("float64", 1)
      pop:publish(1, lv, { 1, 0.5 }, 1, 1, nil)
      lv[1]:set(1, 1, -5)
      lv[3]:fill_(0)
      assert_values(entries(pop, 1), "float64", 1)
      pop:get_state(1, "b"):fill_(9)
      assert.are.same({ value(1, 2, 1), value(1, 2, 2), value(1, 2, 3) }, flat(lv[2]))
    end)
  end)

  describe(":load()", function()
    for _, dtype in ipairs(DTYPES) do
      it("copies the published entries into the live tensors and returns the numbers (" .. dtype .. ")",
        function()
          local pop = store(dtype)
          pop:publish(2, live(dtype, 5), { 7, 2.5 }, 1, 3, nil)
          local lv = live(dtype, 9)
          local numbers, version = pop:load(2, lv, nil)
          assert_values(lv, dtype, 5)
          assert.are.same({ 7, 2.5 }, numbers)
          assert.are.equal(STORE_REGISTERED + 1, version)
          -- the live tensors are copies, not views of the entries
          lv[1]:fill_(0)
          assert_values(entries(pop, 2), dtype, 5)
        end)
    end

    it("reads an exploit's change only when loaded", function()
      local pop = store("float32")
      local a, b = live("float32", 1), live("float32", 2)
      pop:publish(1, a, { 10, 0.1 }, 5, 10, nil)
      pop:publish(2, b, { 20, 0.2 }, 1, 20, nil)
      local _, v2 = pop:load(2, b, nil)
      pop:exploit(2, 1)
      assert_values(entries(pop, 2), "float32", 1)
      assert_values(b, "float32", 2) -- the worker's live copy is untouched
      assert.are.equal(v2 + 1, pop:version(2))
      local numbers, version = pop:load(2, b, nil)
      assert_values(b, "float32", 1)
      assert.are.same({ 10, 0.1 }, numbers)
      assert.are.equal(v2 + 1, version)
      assert.are.equal(STORE_REGISTERED + 1, pop:version(1)) -- the donor's is unchanged
    end)

    it("copies into and out of non-contiguous live tensors", function()
      local pop = store("float64")
      local base = filled({ 3, 2 }, "float64", 4, 1)
      local src = { base:t(), filled({ 3 }, "float64", 4, 2), filled({ 2, 2 }, "float64", 4, 3) }
      pop:publish(1, src, { 0, 0 }, 1, 1, nil)
      -- w[i][j] = base[j][i] = value(4, 1, (j - 1) * 2 + i)
      local w = pop:get_state(1, "w")
      for i = 1, 2 do
        for j = 1, 3 do assert.are.equal(value(4, 1, (j - 1) * 2 + i), w:get(i, j)) end
      end
      local out = T.zeros(3, 2, { dtype = "float64" })
      pop:load(1, { out:t(), T.zeros({ 3 }, { dtype = "float64" }), T.zeros({ 2, 2 }, { dtype = "float64" }) }, nil)
      assert.is_true(T.equal(base, out))
    end)

    it("restores the published generator's state", function()
      local pop = store("float32")
      local g = pbt.Generator(2024)
      g:normal() -- leaves the second normal of a pair pending: part of the state
      g:uniform()
      local want = draws(g:clone(), 5)
      pop:publish(1, live("float32", 1), { 1, 0.5 }, 1, 1, g)
      draws(g, 3) -- later draws of the worker's generator change nothing saved
      local h = pbt.Generator(1)
      pop:load(1, live("float32", 2), h)
      assert.are.same(want, draws(h, 5))
      local h2 = pbt.Generator(2)
      pop:load(1, live("float32", 2), h2)
      assert.are.same(want, draws(h2, 5))
    end)

    it("restores a generator saved by set_generator, which changes nothing else", function()
      local pop = store("float32")
      pop:publish(2, live("float32", 2), { 1, 0.5 }, 1, 1, nil)
      local before = snapshot(pop, 2)
      local g = pbt.Generator(77)
      g:integer(1, 6)
      local want = draws(g:clone(), 4)
      pop:set_generator(2, g)
      assert.are.same(before, snapshot(pop, 2))
      local h = pbt.Generator(0)
      pop:load(2, live("float32", 3), h)
      assert.are.same(want, draws(h, 4))
    end)

    it("leaves the generator alone when the member has none saved", function()
      local pop = store("float32")
      pop:publish(3, live("float32", 3), { 1, 0.5 }, 1, 1, nil) -- without a generator
      local h, ref = pbt.Generator(5), pbt.Generator(5)
      pop:load(3, live("float32", 1), h)
      assert.are.same(draws(ref, 3), draws(h, 3))
    end)
  end)

  describe(":publish() and :load() errors", function()
    -- each case changes the arguments of a publish/load that would work
    local cases = {
      { "too few tensors", function(a) a.tensors[3] = nil end,
        "the member's state has 3 tensors and 2 numbers, 2 and 2 given" },
      { "too many numbers", function(a) a.numbers[3] = 1 end,
        "the member's state has 3 tensors and 2 numbers, 3 and 3 given", publish_only = true },
      { "a shape", function(a) a.tensors[2] = T.zeros({ 4 }) end,
        "state entry 'b': shape [3] in the store, [4] given" },
      { "a dtype", function(a) a.tensors[3] = T.zeros({ 2, 2 }) end,
        "state entry 'm': float64 in the store, float32 given" },
      { "a released tensor", function(a) a.tensors[1] = released(T.zeros({ 2, 3 })) end,
        "state entry 'w': the tensor has been released" },
      { "the entry's own storage", function(a, pop) a.tensors[1] = pop:get_state(1, "w") end,
        "state entry 'w' shares its storage with the tensor given" },
    }
    for _, c in ipairs(cases) do
      it("publish refuses " .. c[1] .. ", naming it, and changes nothing", function()
        local pop = store("float32")
        pop:publish(1, live("float32", 1), { 1, 0.5 }, 1, 1, nil)
        local before = snapshot(pop, 1)
        local a = { tensors = live("float32", 2), numbers = { 2, 0.25 } }
        c[2](a, pop)
        assert.has_error(function()
          pop:publish(1, a.tensors, a.numbers, 2, 2, pbt.Generator(8))
        end, "publish: " .. c[3])
        assert.are.same(before, snapshot(pop, 1))
        -- nor was the generator saved
        local h, ref = pbt.Generator(5), pbt.Generator(5)
        pop:load(1, live("float32", 3), h)
        assert.are.same(draws(ref, 2), draws(h, 2))
      end)

      if not c.publish_only then
        it("load refuses " .. c[1] .. ", naming it, and changes nothing", function()
          local pop = store("float32")
          pop:publish(1, live("float32", 1), { 1, 0.5 }, 1, 1, pbt.Generator(3))
          local before = snapshot(pop, 1)
          local a = { tensors = live("float32", 2), numbers = {} }
          local orig = { table.unpack(a.tensors) }
          c[2](a, pop)
          local h, ref = pbt.Generator(5), pbt.Generator(5)
          assert.has_error(function() pop:load(1, a.tensors, h) end, "load: " .. c[3])
          assert.are.same(before, snapshot(pop, 1))
          -- the live tensors the case kept keep their values, and the
          -- generator its state
          local want = live("float32", 2)
          for e, t in ipairs(orig) do
            if a.tensors[e] == t then assert.are.same(flat(want[e]), flat(t)) end
          end
          assert.are.same(draws(ref, 2), draws(h, 2))
        end)
      end
    end

    it("names its arguments in errors", function()
      local pop = store("float32")
      local lv = live("float32", 1)
      local bad = {
        { function() pop:publish(5, lv, { 1, 0.5 }, 1, 1, nil) end,
          "bad argument #1 to 'publish' (member 5 out of range for a population of 4)" },
        { function() pop:publish(1, 3, { 1, 0.5 }, 1, 1, nil) end,
          "bad argument #2 to 'publish' (table expected, got number)" },
        { function() pop:publish(1, { lv[1], 3, lv[3] }, { 1, 0.5 }, 1, 1, nil) end,
          "bad argument #2 to 'publish' (item 2 is a number, not a pbt.Tensor)" },
        { function() pop:publish(1, lv, { 1, "x" }, 1, 1, nil) end,
          "bad argument #3 to 'publish' (item 2 is a string, not a number)" },
        { function() pop:publish(1, lv, { 1, 0.5 }, nil, 1, nil) end,
          "bad argument #4 to 'publish' (number expected, got nil)" },
        { function() pop:publish(1, lv, { 1, 0.5 }, 1, -1, nil) end,
          "bad argument #5 to 'publish' (negative size -1)" },
        { function() pop:publish(1, lv, { 1, 0.5 }, 1, 1.5, nil) end,
          "bad argument #5 to 'publish' (number has no integer representation)" },
        { function() pop:publish(1, lv, { 1, 0.5 }, 1, 1, {}) end,
          "bad argument #6 to 'publish' (pbt.Generator expected, got table)" },
        { function() pop:load(0, lv, nil) end,
          "bad argument #1 to 'load' (member 0 out of range for a population of 4)" },
        { function() pop:load(1, { lv[1], "w", lv[3] }, nil) end,
          "bad argument #2 to 'load' (item 2 is a string, not a pbt.Tensor)" },
        { function() pop:load(1, lv, 7) end,
          "bad argument #3 to 'load' (pbt.Generator expected, got number)" },
        { function() pop:set_generator(1) end,
          "bad argument #2 to 'set_generator' (pbt.Generator expected, got no value)" },
      }
      for _, c in ipairs(bad) do assert.has_error(c[1], c[2]) end
      assert.are.equal(0, pop:nevents())
      assert.are.equal(0, pop:member(1).work)
    end)
  end)

  describe(":version()", function()
    it("counts registrations, publishes and exploits into the member", function()
      local pop = store("float32")
      assert.are.equal(STORE_REGISTERED, pop:version(1))
      pop:publish(1, live("float32", 1), { 1, 0.5 }, 1, 1, nil)
      assert.are.equal(STORE_REGISTERED + 1, pop:version(1))
      -- none of these change the entries
      pop:report(1, 2, 2)
      pop:load(1, live("float32", 2), pbt.Generator(1))
      pop:set_generator(1, pbt.Generator(1))
      pop:set_work(1, 5)
      pop:set_busy(1, true)
      pop:set_busy(1, false)
      pop:schedule_mark(1)
      pop:log("note", 1)
      assert.are.equal(STORE_REGISTERED + 1, pop:version(1))
      pop:exploit(1, 2)
      assert.are.equal(STORE_REGISTERED + 2, pop:version(1))
      assert.are.equal(STORE_REGISTERED, pop:version(2))
      pop:set_state(1, "beta", 0.25) -- registration again
      assert.are.equal(STORE_REGISTERED + 3, pop:version(1))
      assert.are.equal(pop:member(1).version, pop:version(1))
    end)
  end)

  describe(":set_work() and work", function()
    it("counts publishes and failures; exploit and report leave it alone", function()
      local pop = store("float32")
      for k = 1, 3 do pop:publish(2, live("float32", 2), { k, 0.5 }, k, k, nil) end
      assert.are.equal(3, pop:member(2).work)
      pop:report(2, 9, 9)
      pop:exploit(2, 1)
      assert.are.equal(3, pop:member(2).work)
      assert.are.equal(0, pop:member(1).work)
      pop:log("failure", 2, nil, "nan")
      assert.are.equal(4, pop:member(2).work)
      pop:set_work(2, 10)
      assert.are.equal(10, pop:member(2).work)
      pop:publish(2, live("float32", 2), { 1, 0.5 }, 1, 1, nil)
      assert.are.equal(11, pop:member(2).work)
      assert.has_error(function() pop:set_work(2, -1) end,
        "bad argument #2 to 'set_work' (negative size -1)")
      assert.has_error(function() pop:set_work(5, 1) end,
        "bad argument #1 to 'set_work' (member 5 out of range for a population of 4)")
    end)
  end)

  describe(":set_busy()", function()
    it("makes exploit refuse the member as a recipient, not as a donor", function()
      local pop = store("float32")
      pop:publish(1, live("float32", 1), { 1, 0.5 }, 5, 5, nil)
      pop:publish(2, live("float32", 2), { 2, 0.5 }, 1, 1, nil)
      pop:set_busy(2, true)
      assert.is_true(pop:member(2).busy)
      local before = snapshot(pop, 2)
      assert.has_error(function() pop:exploit(2, 1) end, "exploit: the recipient is being trained")
      assert.are.same(before, snapshot(pop, 2))
      pop:exploit(3, 2) -- a busy donor gives its published state
      assert_values(entries(pop, 3), "float32", 2)
      pop:set_busy(2, false)
      assert.is_false(pop:member(2).busy)
      pop:exploit(2, 1)
      assert_values(entries(pop, 2), "float32", 1)
      assert.has_error(function() pop:set_busy(2, 1) end,
        "bad argument #2 to 'set_busy' (boolean expected, got number)")
      assert.has_error(function() pop:set_busy(2) end,
        "bad argument #2 to 'set_busy' (boolean expected, got no value)")
    end)
  end)

  describe(":score() / :curve()", function()
    it("gives NaN before the first score", function()
      local pop = population.new { size = 2 }
      local s = pop:score(1)
      assert.is_true(s ~= s)
      pop:report(1, -2.5)
      assert.are.equal(-2.5, pop:score(1))
      assert.has_error(function() pop:score(3) end,
        "bad argument #1 to 'score' (member 3 out of range for a population of 2)")
    end)

    it("keeps every point the slot reported, also past one batch of 128", function()
      local pop = population.new { size = 2, window = 2 }
      for k = 1, 300 do pop:report(1, k / 4, 3 * k) end
      local c = pop:curve(1)
      assert.are.equal(300, #c)
      for k = 1, 300 do assert.are.same({ 3 * k, k / 4 }, c[k]) end
      local tail = pop:curve(1, 251)
      assert.are.equal(50, #tail)
      assert.are.same({ 3 * 251, 251 / 4 }, tail[1])
      assert.are.same({}, pop:curve(1, 301))
      assert.are.same({}, pop:curve(2))
      assert.are.equal(300, pop:member(1).ncurve)
      assert.has_error(function() pop:curve(1, 0) end,
        "bad argument #2 to 'curve' (points start at 1)")
    end)

    it("takes the member's step count when a report gives none", function()
      local pop = population.new { size = 1 }
      pop:set_steps(1, 7)
      pop:report(1, 1)
      pop:report(1, 2, 9)
      pop:report(1, 3)
      assert.are.same({ { 7, 1 }, { 9, 2 }, { 9, 3 } }, pop:curve(1))
    end)

    it("is the slot's record: exploit copies no curve", function()
      local pop = store("float32")
      pop:publish(1, live("float32", 1), { 1, 0.5 }, 0.25, 10, nil)
      pop:publish(1, live("float32", 1), { 1, 0.5 }, 0.5, 20, nil)
      pop:publish(2, live("float32", 2), { 1, 0.5 }, 0.125, 10, nil)
      pop:exploit(2, 1)
      assert.are.same({ { 10, 0.125 } }, pop:curve(2))
      assert.are.equal(1, pop:member(2).ncurve)
      assert.are.equal(20, pop:member(2).steps) -- the weights' steps follow the donor
      pop:publish(2, live("float32", 2), { 1, 0.5 }, 0.75, 21, nil)
      assert.are.same({ { 10, 0.125 }, { 21, 0.75 } }, pop:curve(2))
      assert.are.same({ { 10, 0.25 }, { 20, 0.5 } }, pop:curve(1))
      -- a fresh recipient has no curve at all
      pop:exploit(3, 1)
      assert.are.same({}, pop:curve(3))
    end)
  end)

  describe(":schedule_mark() / :schedule()", function()
    it("records the hyperparameters from the current step on", function()
      local pop = population.new { size = 2, hparams = HPARAMS }
      assert.are.same({ root = 1 }, pop:schedule(1))
      pop:schedule_mark(1) -- nothing set yet: an entry without values
      assert.are.same({ root = 1, { step = 0, h = {} } }, pop:schedule(1))
      pop:set_hparams(1, { lr = 0.1, bs = 32, opt = 2 })
      pop:schedule_mark(1) -- the same step: replaced
      assert.are.same({ root = 1, { step = 0, h = { lr = 0.1, bs = 32, opt = 2 } } }, pop:schedule(1))
      pop:set_steps(1, 10)
      pop:set_hparam(1, "lr", 0.2)
      pop:schedule_mark(1)
      pop:set_steps(1, 25)
      pop:set_hparam(1, "opt", 3)
      pop:schedule_mark(1)
      pop:set_hparam(1, "bs", 64)
      pop:schedule_mark(1) -- still step 25: replaces the last entry
      assert.are.same({ root = 1,
        { step = 0, h = { lr = 0.1, bs = 32, opt = 2 } },
        { step = 10, h = { lr = 0.2, bs = 32, opt = 2 } },
        { step = 25, h = { lr = 0.2, bs = 64, opt = 3 } },
      }, pop:schedule(1))
      assert.are.same({ root = 2 }, pop:schedule(2))
      assert.has_error(function() pop:schedule_mark(3) end,
        "bad argument #1 to 'schedule_mark' (member 3 out of range for a population of 2)")
      assert.has_error(function() pop:schedule(0) end,
        "bad argument #1 to 'schedule' (member 0 out of range for a population of 2)")
    end)

    it("follows the weights through chains of exploits", function()
      local pop = population.new { size = 4, hparams = HPARAMS }
      for i = 1, 4 do
        pop:set_hparams(i, { lr = i / 10, bs = 8 * i, opt = 1 })
        pop:schedule_mark(i)
      end
      -- member 3 had a longer schedule of its own: it is replaced whole
      pop:set_steps(3, 5)
      pop:set_hparam(3, "lr", 0.35)
      pop:schedule_mark(3)
      pop:set_steps(3, 6)
      pop:schedule_mark(3)
      pop:set_steps(1, 10)
      pop:set_hparam(1, "lr", 0.15)
      pop:schedule_mark(1)
      local s1 = { root = 1, { step = 0, h = { lr = 0.1, bs = 8, opt = 1 } },
                   { step = 10, h = { lr = 0.15, bs = 8, opt = 1 } } }
      pop:exploit(2, 1)
      assert.are.same(s1, pop:schedule(2))
      assert.are.equal(1, pop:member(2).root)
      pop:set_hparam(2, "lr", 0.3) -- an explore after the exploit
      pop:schedule_mark(2)          -- at the donor's step, 10: replaces its entry
      local s2 = { root = 1, s1[1], { step = 10, h = { lr = 0.3, bs = 8, opt = 1 } } }
      assert.are.same(s2, pop:schedule(2))
      assert.are.same(s1, pop:schedule(1)) -- a copy, not shared
      pop:exploit(3, 2)
      assert.are.same(s2, pop:schedule(3))
      assert.are.equal(1, pop:member(3).root)
      assert.are.equal(2, pop:member(3).generation)
      pop:set_steps(3, 20)
      pop:set_hparam(3, "opt", 2)
      pop:schedule_mark(3)
      assert.are.same({ root = 1, s1[1], s2[2], { step = 20, h = { lr = 0.3, bs = 8, opt = 2 } } },
        pop:schedule(3))
      assert.are.same(s2, pop:schedule(2))
      -- the root is the lineage's, whatever the intermediate donors
      pop:exploit(4, 3)
      assert.are.equal(1, pop:member(4).root)
      pop:exploit(1, 4) -- back to member 1's own slot: its lineage's root is still 1
      assert.are.equal(1, pop:member(1).root)
      assert.are.same(pop:schedule(4), pop:schedule(1))
      -- exploiting a member that never marked empties the recipient's schedule
      local fresh = population.new { size = 2, hparams = HPARAMS }
      fresh:set_hparam(1, "lr", 1)
      fresh:schedule_mark(1)
      fresh:exploit(1, 2)
      assert.are.same({ root = 2 }, fresh:schedule(1))
    end)
  end)

  describe("a population without hyperparameters or state entries", function()
    it("marks schedules with empty values and publishes a bare score", function()
      local pop = population.new { size = 2 }
      pop:set_steps(1, 3)
      pop:schedule_mark(1)
      pop:set_steps(1, 5)
      pop:schedule_mark(1)
      pop:exploit(2, 1)
      assert.are.same({ root = 1, { step = 3, h = {} }, { step = 5, h = {} } }, pop:schedule(2))
      pop:publish(1, {}, {}, 1.5, 6, nil)
      assert.are.same({ { 6, 1.5 } }, pop:curve(1))
      local numbers, version = pop:load(1, {}, nil)
      assert.are.same({}, numbers)
      assert.are.equal(1, version)
      assert.has_error(function() pop:publish(1, { T.zeros(1) }, {}, 1, 7, nil) end,
        "publish: the member's state has 0 tensors and 0 numbers, 1 and 0 given")
    end)
  end)

  describe(":stage() / :commit_staged()", function()
    it("keeps each member's events apart and commits them in member order", function()
      local pop = make("float32")
      pop:report(4, 0.5, 1)
      pop:report(2, 0.25, 1) -- two events before staging
      pop:stage()
      pop:report(3, 1.5, 10)
      pop:report(1, 0.75, 10)
      pop:log("note", 3, nil, "first of 3")
      pop:log("explore", 1, 2, "lr", '{"lr":[0.01,0.012]}')
      pop:exploit(2, 4)        -- the recipient's event
      pop:report(3, 2.5, 11)
      pop:log("failure", 1, nil, "nan")
      pop:report(2, 3.5, 12)
      assert.are.equal(2, pop:nevents()) -- nothing in the log yet
      assert.are.same({}, pop:events(3))
      pop:commit_staged()
      assert.are.same({
        { seq = 1, kind = "report", member = 4, step = 1, score = 0.5, generation = 0 },
        { seq = 2, kind = "report", member = 2, step = 1, score = 0.25, generation = 0 },
        { seq = 3, kind = "report", member = 1, step = 10, score = 0.75, generation = 0 },
        { seq = 4, kind = "explore", member = 1, other = 2, step = 10, score = 0.75, generation = 0,
          detail = "lr", data = '{"lr":[0.01,0.012]}' },
        { seq = 5, kind = "failure", member = 1, step = 10, score = 0.75, generation = 0,
          detail = "nan" },
        { seq = 6, kind = "exploit", member = 2, other = 4, step = 1, score = 0.5, generation = 1 },
        { seq = 7, kind = "report", member = 2, step = 12, score = 3.5, generation = 1 },
        { seq = 8, kind = "report", member = 3, step = 10, score = 1.5, generation = 0 },
        { seq = 9, kind = "note", member = 3, step = 10, score = 1.5, generation = 0,
          detail = "first of 3" },
        { seq = 10, kind = "report", member = 3, step = 11, score = 2.5, generation = 0 },
      }, pop:events())
      -- staging is off again: events go straight to the log
      pop:report(4, 9, 2)
      pop:report(1, 8, 11)
      local tail = pop:events(11)
      assert.are.same({ 11, 4 }, { tail[1].seq, tail[1].member })
      assert.are.same({ 12, 1 }, { tail[2].seq, tail[2].member })
      pop:commit_staged() -- nothing staged: nothing changes
      assert.are.equal(12, pop:nevents())
    end)

    it("gives the same log whatever order the members' calls came in", function()
      local calls = {
        { 1, function(pop) pop:publish(1, live("float64", 1), { 1, 0.5 }, 1.25, 1, nil) end },
        { 1, function(pop) pop:log("ready", 1) end },
        { 2, function(pop) pop:publish(2, live("float64", 2), { 2, 0.5 }, 2.25, 1, nil) end },
        { 2, function(pop) pop:publish(2, live("float64", 2), { 3, 0.5 }, 3.25, 2, nil) end },
        { 3, function(pop) pop:log("note", 3, 1, "hello") end },
        { 3, function(pop) pop:publish(3, live("float64", 3), { 4, 0.5 }, 4.25, 1, nil) end },
      }
      -- the members' calls interleaved in several orders (each member's
      -- own calls keep their order)
      local orders = { { 1, 2, 3, 4, 5, 6 }, { 5, 3, 1, 6, 4, 2 }, { 3, 5, 4, 6, 1, 2 } }
      local logs = {}
      for o, order in ipairs(orders) do
        local pop = store("float64", { size = 3 })
        pop:stage()
        for _, k in ipairs(order) do calls[k][2](pop) end
        pop:commit_staged()
        logs[o] = strip(pop:events())
      end
      assert.are.same(logs[1], logs[2])
      assert.are.same(logs[1], logs[3])
      local members = {}
      for k, e in ipairs(logs[1]) do
        assert.are.equal(k, e.seq)
        members[k] = e.member
      end
      assert.are.same({ 1, 1, 2, 2, 3, 3 }, members)
      assert.are.same({ "report", "ready", "report", "report", "note", "report" },
        { logs[1][1].kind, logs[1][2].kind, logs[1][3].kind, logs[1][4].kind,
          logs[1][5].kind, logs[1][6].kind })
    end)
  end)

  describe(":log() with data", function()
    it("returns the JSON text as the event's data field", function()
      local pop = population.new { size = 2 }
      local data = '{"old":{"lr":0.1},"new":{"lr":0.12},"why":"perturb"}'
      pop:log("explore", 1, nil, "lr x1.2", data)
      pop:log("note", 2, 1, nil, '{"k":[1,2,3]}')
      pop:log("ready", 2, nil, nil, "")
      local ev = pop:events()
      assert.are.equal(data, ev[1].data)
      assert.are.equal("lr x1.2", ev[1].detail)
      assert.are.equal('{"k":[1,2,3]}', ev[2].data)
      assert.is_nil(ev[2].detail)
      assert.is_nil(ev[3].data)
      assert.has_error(function() pop:log("failure", 1, nil, "x", "{}") end,
        "bad argument #5 to 'log' (a failure carries no data)")
      assert.are.equal("alive", pop:member(1).status)
      assert.are.equal(3, pop:nevents())
    end)
  end)

  describe(":tournament() / :ttest()", function()
    local nan = 0 / 0
    local select_ = require("pbt.select")

    -- the draw of pbt_select_other (one g:integer over the n - 1 others) and
    -- the binary tournament's decision, worked out in Lua
    local function by_hand(g, scores, n, i, mode)
      local r = g:clone():integer(1, n - 1)
      local j = r >= i and r + 1 or r
      local a, b = scores[j], scores[i]
      local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end
      local better
      if not finite(a) then better = false
      elseif not finite(b) then better = true
      elseif mode == "min" then better = a < b
      else better = a > b end
      return better and j or nil
    end

    it("makes the draw and the decision of pbt.select.tournament", function()
      local reported = { 0.5, nil, 2.0, nan, 2.0, -1, math.huge }
      local pop = population.new { size = #reported }
      local scores = {}
      for i = 1, #reported do
        if reported[i] ~= nil then pop:report(i, reported[i]) end
        scores[i] = reported[i] == nil and nan or reported[i]
      end
      local chosen = 0
      for _, mode in ipairs({ "max", "min" }) do
        for seed = 1, 30 do
          for i = 1, #reported do
            local g1, g2 = pbt.Generator(seed), pbt.Generator(seed)
            local want = by_hand(g1, scores, #reported, i, mode)
            local got = pop:tournament(i, g1, mode)
            assert.are.equal(want, got)
            assert.are.equal(select_.tournament(scores, i, { generator = g2, mode = mode }), got)
            assert.are.equal(g2:integer(1, 1 << 40), g1:integer(1, 1 << 40)) -- same draws
            if got then chosen = chosen + 1 end
          end
        end
      end
      assert.is_true(chosen > 0)
      -- max is the default mode
      local g1, g2 = pbt.Generator(3), pbt.Generator(3)
      assert.are.equal(pop:tournament(1, g1, "max"), pop:tournament(1, g2))
    end)

    it("draws nothing in a population of one", function()
      local pop = population.new { size = 1 }
      pop:report(1, 1)
      local g, ref = pbt.Generator(4), pbt.Generator(4)
      assert.is_nil(pop:tournament(1, g))
      assert.is_nil(pop:ttest(1, g, 2, 0.5))
      assert.are.equal(ref:uniform(), g:uniform())
    end)

    it("makes the draw and the decision of pbt.select.ttest", function()
      -- histories of different levels and spreads; one member with a single
      -- score, one with none, one with a NaN in its window
      local function around(level, n, spread, phase)
        local h = {}
        for k = 1, n do h[k] = level + spread * math.sin(1.7 * k + phase) end
        return h
      end
      local hists = {
        around(0, 9, 0.1, 0), around(0.05, 9, 1, 1), around(5, 9, 0.1, 2), around(5.2, 4, 0.5, 3),
        { 7 }, {}, { 1, 2, nan, 3, 4, 5 }, around(-3, 12, 2, 4),
      }
      local pop = population.new { size = #hists, window = 6 }
      local histories = {}
      for i, h in ipairs(hists) do
        for _, s in ipairs(h) do pop:report(i, s) end
        histories[i] = pop:history(i)
        -- the store keeps the last 6
        local want = {}
        for k = math.max(1, #h - 5), #h do want[#want + 1] = h[k] end
        assert.are.equal(#want, #histories[i])
        for k = 1, #want do
          local a, b = want[k], histories[i][k]
          assert.is_true(a == b or (a ~= a and b ~= b))
        end
      end
      local chosen, kept = 0, 0
      for _, mode in ipairs({ "max", "min" }) do
        for _, window in ipairs({ 2, 4, 6 }) do
          for _, alpha in ipairs({ 0.05, 0.5 }) do
            for seed = 1, 8 do
              for i = 1, #hists do
                local g1, g2 = pbt.Generator(seed), pbt.Generator(seed)
                local got = pop:ttest(i, g1, window, alpha, mode)
                local want = select_.ttest(histories, i,
                  { window = window, alpha = alpha, generator = g2, mode = mode })
                assert.are.equal(want, got)
                assert.are.equal(g2:integer(1, 1 << 40), g1:integer(1, 1 << 40))
                if got then chosen = chosen + 1 else kept = kept + 1 end
              end
            end
          end
        end
      end
      assert.is_true(chosen > 0 and kept > 0)
    end)

    it("reads the history an exploit copied", function()
      local pop = population.new { size = 2, window = 4 }
      for _, s in ipairs({ 10, 10.5, 9.5, 10 }) do pop:report(2, s) end
      for _, s in ipairs({ 0, 0.5, -0.5, 0 }) do pop:report(1, s) end
      -- n = 2: member 1 always draws 2, which is clearly better
      assert.are.equal(2, pop:ttest(1, pbt.Generator(1), 4, 0.05))
      pop:exploit(1, 2)
      assert.is_nil(pop:ttest(1, pbt.Generator(1), 4, 0.05)) -- the same scores now
    end)

    it("names its arguments in errors", function()
      local pop = population.new { size = 3, window = 6 }
      local g = pbt.Generator(1)
      local bad = {
        { function() pop:ttest(1, g, 7, 0.05) end,
          "ttest: the t-test's window (7) is longer than the population's score window (6)" },
        { function() pop:ttest(1, g, 1, 0.05) end, "ttest: window must be at least 2, got 1" },
        { function() pop:ttest(1, g, -3, 0.05) end, "ttest: window must be at least 2, got -3" },
        { function() pop:ttest(1, g, 4, 1.5) end, "ttest: alpha must be in (0, 1), got 1.5" },
        { function() pop:ttest(1, g, 4, 0) end, "ttest: alpha must be in (0, 1), got 0" },
        { function() pop:ttest(4, g, 4, 0.05) end,
          "bad argument #1 to 'ttest' (member 4 out of range for a population of 3)" },
        { function() pop:ttest(1, nil, 4, 0.05) end,
          "bad argument #2 to 'ttest' (pbt.Generator expected, got nil)" },
        { function() pop:ttest(1, g, 2.5, 0.05) end,
          "bad argument #3 to 'ttest' (number has no integer representation)" },
        { function() pop:ttest(1, g, 4, 0.05, "best") end,
          "bad argument #5 to 'ttest' (invalid option 'best')" },
        { function() pop:tournament(0, g) end,
          "bad argument #1 to 'tournament' (member 0 out of range for a population of 3)" },
        { function() pop:tournament(1, 5) end,
          "bad argument #2 to 'tournament' (pbt.Generator expected, got number)" },
        { function() pop:tournament(1, g, "maximum") end,
          "bad argument #3 to 'tournament' (invalid option 'maximum')" },
      }
      local ref = g:clone()
      for _, c in ipairs(bad) do assert.has_error(c[1], c[2]) end
      assert.are.equal(ref:uniform(), g:uniform()) -- nothing was drawn
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

  describe(":record() / :restore() / :restore_event()", function()
    -- a record written by hand: what a database would give back
    local function record()
      local g = pbt.Generator(77)
      g:uniform()
      local words = {}
      for _, w in ipairs(g:state()) do words[#words + 1] = string.pack("<i8", w) end
      return {
        generation = 2, parent = 3, root = 4, steps = 12, work = 9, status = "alive", score = 0.75,
        history = { 0.5, 0.25, 0.75 }, curve = { { 10, 0.5 }, { 11, 0.25 }, { 12, 0.75 } },
        schedule = { { step = 0, h = { lr = 0.1, bs = 32, opt = 2 } }, { step = 8, h = { lr = 0.2, bs = 16, opt = 3 } } },
        hparams = { lr = 0.2, bs = 16, opt = 3 }, generator = table.concat(words),
      }, g
    end

    it("sets every field of a member from a record, and gives the same record back", function()
      local pop = population.new { size = 4, hparams = HPARAMS, window = 4 }
      local rec, g = record()
      pop:restore(2, rec)
      assert.are.same({ id = 2, generation = 2, parent = 3, steps = 12, status = "alive", score = 0.75,
        nscores = 3, work = 9, version = 1, root = 4, ncurve = 3, busy = false }, pop:member(2))
      assert.are.same({ 0.5, 0.25, 0.75 }, pop:history(2))
      assert.are.same({ { 10, 0.5 }, { 11, 0.25 }, { 12, 0.75 } }, pop:curve(2))
      assert.are.same({ lr = 0.2, bs = 16, opt = 3 }, pop:hparams(2))
      local sched = pop:schedule(2)
      assert.are.same({ root = 4, { step = 0, h = { lr = 0.1, bs = 32, opt = 2 } },
        { step = 8, h = { lr = 0.2, bs = 16, opt = 3 } } }, sched)
      assert.are.same(rec, pop:record(2))
      -- the generator state: a generator set from it draws what g draws next
      pop:set_state(2, "w", pbt.tensor.zeros(1))
      local h = pbt.Generator(1)
      pop:load(2, { pbt.tensor.zeros(1) }, h)
      assert.are.equal(g:uniform(), h:uniform())
    end)

    it("keeps the last `window` scores of a longer history", function()
      local pop = population.new { size = 4, hparams = HPARAMS, window = 2 }
      pop:restore(1, record())
      assert.are.same({ 0.25, 0.75 }, pop:history(1))
    end)

    it("refuses bad records and changes nothing", function()
      local pop = population.new { size = 4, hparams = HPARAMS }
      for _, c in ipairs({
        { "parent", 5, "restore: parent or root out of range for a population of 4" },
        { "root", 0, "restore: parent or root out of range for a population of 4" },
        { "status", "dead", 'restore: record field \'status\' must be "alive" or "failed"' },
        { "work", -1, "restore: negative count in a member record" },
        { "steps", 1.5, "restore: record field 'steps' must be an integer, got number" },
        { "hparams", { lr = 0.1, bs = 1, opt = 4 }, "restore: choice 3 out of range for hyperparameter 'opt'" },
        { "generator", "short", "restore: record field 'generator' must be 48 bytes" },
      }) do
        local rec = record()
        rec[c[1]] = c[2]
        assert.has_error(function() pop:restore(1, rec) end, c[3])
        assert.are.same({ id = 1, generation = 0, steps = 0, status = "alive", nscores = 0, work = 0,
          version = 0, root = 1, ncurve = 0, busy = false }, pop:member(1))
      end
    end)

    it("appends logged events as they were, in order", function()
      local pop = population.new { size = 4 }
      pop:restore_event{ seq = 1, kind = "report", member = 2, step = 3, score = 0.5, generation = 1, time = 12.5 }
      pop:restore_event{ seq = 2, kind = "explore", member = 2, other = 4, step = 3, generation = 1,
        data = '{"new":{},"old":{}}', time = 13.25 }
      assert.are.same({
        { seq = 1, kind = "report", member = 2, step = 3, score = 0.5, generation = 1, time = 12.5 },
        { seq = 2, kind = "explore", member = 2, other = 4, step = 3, generation = 1,
          data = '{"new":{},"old":{}}', time = 13.25 },
      }, pop:events(1, true))
      assert.has_error(function()
        pop:restore_event{ seq = 5, kind = "report", member = 1, step = 1, generation = 0, time = 1 }
      end, "restore_event: event 5 given where the log's next is 3")
      assert.has_error(function()
        pop:restore_event{ seq = 3, kind = "nap", member = 1, step = 1, generation = 0, time = 1 }
      end, "restore_event: unknown event kind nap")
      -- the store's own events follow
      pop:log("note", 1)
      assert.are.equal(3, pop:events(3)[1].seq)
    end)
  end)
end)
