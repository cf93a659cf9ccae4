-- The runner (pbt.scheduler, pbt.worker, pbt.reporter) on the experiment
-- files of spec/fixtures/, in this Lua state and on worker threads.  Expected
-- values come from the fixtures' own arithmetic (generators seeded as the
-- runner documents, budgets divided by hand), never from another run.
local pbt = require("pbt")
local json = require("pbt.json")
local read = require("spec.helper").readfile
local T = pbt.tensor
local member_seed = require("pbt.experiment").member_seed

-- the slowest cases are skipped under valgrind (make valgrind sets this)
local VALGRIND = os.getenv("PBT_VALGRIND")

local LINEAR, MEMBERS = "spec/fixtures/linear.lua", "spec/fixtures/members.lua"
local SLOW, SHARED = "spec/fixtures/slow.lua", "spec/fixtures/shared.lua"
local FAILED_DONOR = "spec/fixtures/failed_donor.lua"

local tmpname = require("spec.helper").tmpname

local exists = require("spec.helper").exists

local function run_file(path, args, opts)
  opts = opts or {}
  opts.progress = false
  return pbt.load_experiment(path, args):run(opts)
end

local log_text = require("spec.helper").log_text

-- events of that kind (and member, when given)
local function count(events, kind, member)
  local c = 0
  for _, ev in ipairs(events) do
    if ev.kind == kind and (member == nil or ev.member == member) then c = c + 1 end
  end
  return c
end

local function details(events, kind)
  local list = {}
  for _, ev in ipairs(events) do
    if ev.kind == kind then list[#list + 1] = ("%d: %s"):format(ev.member, ev.detail) end
  end
  return list
end

local function events_of(dir)
  local list = {}
  for line in read(dir .. "/events.jsonl"):gmatch("[^\n]+") do list[#list + 1] = json.decode(line) end
  return list
end

-- no exploit takes a member that is training: each exploit of member i
-- directly follows i's 'ready' (or 'failure') among i's events and is
-- directly followed by i's 'explore'; and no donor is a member that has
-- failed and not been replaced since
local function check_exploits(events)
  local last, failed = {}, {}
  local pending_explore = {}
  for k, ev in ipairs(events) do
    local i = ev.member
    if pending_explore[i] then
      assert.are.equal("explore", ev.kind, ("event %d: member %d's exploit is followed by %s"):format(k, i, ev.kind))
      pending_explore[i] = nil
    end
    if ev.kind == "failure" then failed[i] = true end
    if ev.kind == "exploit" then
      assert.is_true(last[i] == "ready" or last[i] == "failure",
        ("event %d: member %d exploited after its %s"):format(k, i, tostring(last[i])))
      assert.are_not.equal(i, ev.other)
      assert.is_nil(failed[ev.other], ("event %d: member %d copied failed member %d"):format(k, i, ev.other))
      failed[i] = nil
      pending_explore[i] = true
    end
    last[i] = ev.kind
  end
  assert.is_nil(next(pending_explore))
end

-- after each decision for member i (its explore event) i is ready again
-- after exactly `every` reports of its own, unless its budget ends first
local function check_ready_intervals(events, every)
  local open = {}
  for _, ev in ipairs(events) do
    local i = ev.member
    if ev.kind == "explore" then open[i] = 0
    elseif ev.kind == "report" and open[i] then open[i] = open[i] + 1
    elseif ev.kind == "ready" and open[i] then
      assert.are.equal(every, open[i], ("member %d was ready after %d steps"):format(i, open[i]))
      open[i] = nil
    end
  end
end

-- the linear fixture's description, built here (an inline experiment)
local function inline_linear()
  local x = T.linspace(-1, 1, 16, { dtype = "float64" })
  local y = x * 3
  return pbt.experiment{
    name = "linear", population = 6, seed = 7, mode = "min", sync = true,
    space = { lr = pbt.loguniform(0.05, 0.5) },
    init = function(_, g) return { w = T.randn(1, { dtype = "float64", generator = g }), noise = 0.0 } end,
    step = function(s, h, g)
      local grad = ((s.w * x - y) * x):mean():item() * 2 + g:normal(0, 0.1)
      s.w:sub_(T({ grad }, { dtype = "float64" }), h.lr)
      s.noise = g:uniform()
    end,
    eval = function(s) return ((s.w * x - y) ^ 2):mean():item() end,
    ready = pbt.ready.every(3),
    exploit = pbt.exploit.truncation{ fraction = 0.25 },
    explore = pbt.explore.perturb{ factors = { 0.8, 1.2 } },
    budget = { steps = 15 },
  }
end

-- members.lua's score after k steps, before any exploit: the sum of the
-- first k uniform draws of the member's generator
local function members_score(i, k, seed)
  local g, w = pbt.Generator(member_seed(seed or 3, i)), 0.0
  for _ = 1, k do w = w + g:uniform() end
  return w
end

describe("the runner", function()
  describe("synchronous mode", function()
    it("gives the same events, schedules and best member on 1, 2 and 3 workers", function()
      local runs = {}
      for w = 1, 3 do runs[w] = run_file(LINEAR, nil, { workers = w }) end
      local r = runs[1]
      -- 6 members x 15 steps; ready every 3 steps: 5 times each; decisions
      -- after steps 3, 6, 9 and 12 (none after 15, the end), each taking
      -- max(1, floor(0.25 * 6)) = 1 recipient
      assert.are.equal(90, count(r.events, "report"))
      assert.are.equal(30, count(r.events, "ready"))
      assert.are.equal(4, count(r.events, "exploit"))
      assert.are.equal(4, count(r.events, "explore"))
      for w = 2, 3 do
        assert.are.equal(log_text(r.events), log_text(runs[w].events), w .. " workers")
        assert.are.equal(json.encode(r.schedules), json.encode(runs[w].schedules), w .. " workers")
        assert.are.equal(json.encode(r.scores), json.encode(runs[w].scores), w .. " workers")
        assert.are.equal(r.best.member, runs[w].best.member)
        assert.are.equal(r.best.score, runs[w].best.score)
      end
    end)

    it("reports what each member's own generator gives until the first decision", function()
      local r = run_file(LINEAR, nil, { workers = 2 })
      local x = T.linspace(-1, 1, 16, { dtype = "float64" })
      local y = x * 3
      local G = pbt.Generator(7) -- the run's generator draws the initial hyperparameters
      for i = 1, 6 do
        local h = pbt.space.sample({ lr = pbt.loguniform(0.05, 0.5) }, G)
        local g = pbt.Generator(member_seed(7, i))
        local w = T.randn(1, { dtype = "float64", generator = g })
        for step = 1, 3 do
          local grad = ((w * x - y) * x):mean():item() * 2 + g:normal(0, 0.1)
          w:sub_(T({ grad }, { dtype = "float64" }), h.lr)
          g:uniform()
          local score = ((w * x - y) ^ 2):mean():item()
          assert.are.same({ step, score }, r.scores[i][step], ("member %d, step %d"):format(i, step))
        end
      end
    end)

    it("gives an inline experiment of the same description the same events as the file", function()
      local file = run_file(LINEAR, nil, { workers = 1 })
      local inline = inline_linear():run{ progress = false }
      assert.are.equal(log_text(file.events), log_text(inline.events))
      assert.are.equal(file.best.score, inline.best.score)
    end)
  end)

  describe("asynchronous mode", function()
    it("gives every member slot exactly its budget of steps and exploits only members that wait", function()
      for w = 1, 2 do
        local r = run_file(LINEAR, { sync = false }, { workers = w })
        for i = 1, 6 do
          assert.are.equal(15, count(r.events, "report", i), ("member %d, %d workers"):format(i, w))
          assert.are.equal(15, #r.scores[i])
          -- ready every 3 of the slot's steps, the last one at its 15th
          assert.are.equal(5, count(r.events, "ready", i))
        end
        assert.are.equal(6 * 15, count(r.events, "report"))
        assert.are.equal(0, count(r.events, "failure"))
        assert.is_true(count(r.events, "exploit") > 0)
        check_exploits(r.events)
        check_ready_intervals(r.events, 3)
      end
    end)

    it("ends after exactly n x steps member-steps when every step is ready and the score is noise", function()
      for w = 1, 2 do
        local r = run_file(LINEAR, { sync = false, noise = true, every = 1, steps = 20 }, { workers = w })
        for i = 1, 6 do assert.are.equal(20, count(r.events, "report", i)) end
        assert.are.equal(6 * 20, count(r.events, "report"))
        assert.are.equal(6 * 20, count(r.events, "ready"))
        -- a decision at every ready but each slot's last, some of them exploits
        assert.is_true(count(r.events, "exploit") > 0)
        check_exploits(r.events)
        check_ready_intervals(r.events, 1)
      end
    end)
  end)

  describe("edge cases", function()
    it("takes no decision after a member's last step", function()
      for _, sync in ipairs({ true, false }) do
        local r = run_file(LINEAR, { sync = sync }, { workers = 1 })
        local last = {}
        for _, ev in ipairs(r.events) do last[ev.member] = ev.kind end
        for i = 1, 6 do assert.are.equal("ready", last[i], ("member %d, sync %s"):format(i, sync)) end
      end
    end)

    it("stops a slot whose every step fails after its budget and returns the others' result", function()
      for _, sync in ipairs({ true, false }) do
        for w = 1, 2 do
          local what = ("sync %s, %d workers"):format(sync, w)
          local r = run_file(MEMBERS, { sync = sync, fail = 2 }, { workers = w })
          -- the budget (6 steps) counts the failed ones
          assert.are.equal(0, count(r.events, "report", 2), what)
          assert.are.same({ "2: member 2 cannot step", "2: member 2 cannot step", "2: member 2 cannot step",
            "2: member 2 cannot step", "2: member 2 cannot step", "2: member 2 cannot step" },
            details(r.events, "failure"), what)
          for _, i in ipairs({ 1, 3, 4 }) do assert.are.equal(6, count(r.events, "report", i), what) end
          assert.are_not.equal(2, r.best.member)
          check_exploits(r.events)
        end
      end
    end)

    it("goes on when a member fails on its very first step", function()
      for _, case in ipairs({ { fail = 1, population = 4 }, { fail = 4, population = 4 },
        { fail = 1, population = 2 }, { fail = 2, population = 2 } }) do
        for _, sync in ipairs({ true, false }) do
          for w = 1, 2 do
            local what = ("member %d of %d, sync %s, %d workers"):format(case.fail, case.population, sync, w)
            local r = run_file(MEMBERS, { sync = sync, fail = case.fail, first = true,
              population = case.population }, { workers = w })
            assert.are.same({ case.fail .. ": member " .. case.fail .. " cannot step" },
              details(r.events, "failure"), what)
            -- replaced by a member with a score, it trains its 5 other steps
            assert.is_true(count(r.events, "exploit", case.fail) >= 1, what)
            for i = 1, case.population do
              assert.are.equal(i == case.fail and 5 or 6, count(r.events, "report", i), what)
            end
            check_exploits(r.events)
            -- the replacement is a decision: ready again after `every` (2) steps
            check_ready_intervals(r.events, 2)
          end
        end
      end
    end)

    it("does not copy a member that failed at its last step, whatever the rule names", function()
      -- gens 1-4: members 1, 2 and 3 copy member 4 (the fixed rule); gen 5:
      -- member 3 ends its budget, member 4 fails its last step, 1 and 2 are
      -- ready but member 4 has nothing to give; gen 6: 1 and 2 end
      for w = 1, 2 do
        local r = run_file(FAILED_DONOR, { exploit = "fixed" }, { workers = w })
        assert.are.same({ "4: member 4 fails" }, details(r.events, "failure"))
        assert.are.equal(12, count(r.events, "exploit"))
        for _, ev in ipairs(r.events) do
          if ev.kind == "exploit" then assert.are.equal(4, ev.other) end
        end
        assert.are.same({ 6, 6, 5, 4 }, { count(r.events, "report", 1), count(r.events, "report", 2),
          count(r.events, "report", 3), count(r.events, "report", 4) })
        check_exploits(r.events)
      end
      -- the built-in rules read the failed member's last score (the best):
      -- seed 1 makes both name it in gen 5; asynchronous on two workers, a
      -- member may be ready after member 4's end too
      for _, exploit in ipairs({ "tournament", "truncation" }) do
        for _, sync in ipairs({ true, false }) do
          local r = run_file(FAILED_DONOR, { exploit = exploit, sync = sync, seed = 1 }, { workers = 2 })
          assert.is_true(count(r.events, "failure", 4) >= 1)
          check_exploits(r.events)
        end
      end
    end)

    it("raises 'every member has failed' when every member fails at its last step", function()
      for _, sync in ipairs({ true, false }) do
        local e = pbt.experiment{
          population = 2, sync = sync, space = {}, init = function() return { c = 0 } end,
          step = function(s)
            s.c = s.c + 1
            if s.c == 3 then error("late", 0) end
          end,
          eval = function(s) return s.c end,
          ready = pbt.ready.every(10), budget = { steps = 3 },
        }
        assert.has_error(function() e:run{ progress = false } end,
          "experiment: every member has failed (member 1: late)")
      end
    end)

    it("divides an evaluations budget evenly among the members", function()
      for _, sync in ipairs({ true, false }) do
        for w = 1, 2 do
          local r = run_file(MEMBERS, { sync = sync, never = true, evaluations = 40 }, { workers = w })
          -- 40 evaluations, 4 members: 10 each
          for i = 1, 4 do assert.are.equal(10, count(r.events, "report", i)) end
          assert.are.equal(40, #r.events)
        end
      end
    end)

    it("gives every member steps under a time budget", function()
      if VALGRIND then
        pending("a time budget under valgrind")
        return
      end
      for _, sync in ipairs({ true, false }) do
        for w = 1, 2 do
          -- (1 s for 4 steps of 0.01 s: 0.4 s once left a member without a
          -- step on a machine whose both cores were taken by other work)
          local r = run_file(MEMBERS, { sync = sync, never = true, seconds = 1, busy = 0.01 }, { workers = w })
          for i = 1, 4 do
            assert.is_true(count(r.events, "report", i) >= 1,
              ("member %d, sync %s, %d workers: no step"):format(i, sync, w))
          end
        end
      end
    end)

    it("stops the run on an error of the ready, exploit or explore rule, writing the run's files", function()
      -- the first recipient of a decision is the member with the lowest
      -- score after 2 steps (max mode, truncation keeps 1 of 4)
      local worst, low = nil, math.huge
      for i = 1, 4 do
        local s = members_score(i, 2)
        if s < low then worst, low = i, s end
      end
      local cases = {
        { rule = "ready", sync = true, member = 1 },
        { rule = "ready", sync = false, member = 1 },
        { rule = "exploit", sync = true, member = 1 },
        -- one worker takes members 1, 2, 3, 4 in turn: 4 is the first to
        -- decide when every member has a score
        { rule = "exploit", sync = false, member = 4 },
        { rule = "explore", sync = true, member = worst },
      }
      for _, c in ipairs(cases) do
        local dir = tmpname()
        local what = ("the %s rule, sync %s"):format(c.rule, c.sync)
        local ok, err = pcall(run_file, MEMBERS, { sync = c.sync, rule = c.rule }, { workers = 1, out = dir })
        assert.is_false(ok, what)
        assert.are.equal(("experiment: member %d: the %s rule: rule broke"):format(c.member, c.rule), err, what)
        local events = events_of(dir)
        assert.are.same({ ("%d: the %s rule: rule broke"):format(c.member, c.rule) }, details(events, "failure"), what)
        assert.is_true(exists(dir .. "/schedule.json"), what)
        assert.is_true(exists(dir .. "/best.pbt"), what)
        assert.are.equal(4, #json.decode(read(dir .. "/schedule.json")))
        os.execute("rm -rf " .. dir)
      end
      -- on worker threads: the ready rule's error comes back from a thread
      local dir = tmpname()
      local ok, err = pcall(run_file, MEMBERS, { rule = "ready" }, { workers = 2, out = dir })
      assert.is_false(ok)
      assert.matches("^experiment: member [12]: the ready rule: rule broke$", err)
      -- the other worker may have met the rule's error too before the run stopped
      local failures = details(events_of(dir), "failure")
      assert.is_true(#failures == 1 or #failures == 2)
      for _, d in ipairs(failures) do assert.matches("^[12]: the ready rule: rule broke$", d) end
      assert.is_true(exists(dir .. "/best.pbt"))
      os.execute("rm -rf " .. dir)
    end)

    it("fails the member whose explore rule gives a value outside the space, naming it", function()
      for _, sync in ipairs({ true, false }) do
        local dir = tmpname()
        local ok, err = pcall(run_file, MEMBERS, { sync = sync, explored = 9 }, { workers = 1, out = dir })
        assert.is_false(ok)
        -- the first member to explore is one that truncation put at the bottom
        local i = tonumber(err:match("^experiment: member (%d): the explore rule gave id = 9, " ..
          "outside int%(1, 4%)$"))
        assert.is_truthy(i, err)
        assert.are.same({ i .. ": the explore rule gave id = 9, outside int(1, 4)" },
          details(events_of(dir), "failure"))
        assert.is_true(exists(dir .. "/schedule.json"))
        os.execute("rm -rf " .. dir)
      end
    end)

    it("refuses memory_limit for an experiment built in a script (it trains in the script's state)", function()
      local e = pbt.experiment{ population = 2, init = function() return {} end,
        step = function() end, eval = function() return 0 end, budget = { steps = 1 } }
      assert.has_error(function() e:run{ memory_limit = 1 << 20, progress = false } end,
        "experiment: memory_limit caps the Lua heap of worker threads, and an experiment built in " ..
        "a script trains in the script's own state: load the experiment from a file")
    end)

    it("names a custom exploit rule's result that is not a member index, failing the member", function()
      for _, sync in ipairs({ true, false }) do
        for _, c in ipairs({ { donor = 99, text = "99", workers = 1 }, { donor = "1", text = '"1"', workers = 2 } }) do
          local dir = tmpname()
          local ok, err = pcall(run_file, MEMBERS, { sync = sync, donor = c.donor }, { workers = c.workers, out = dir })
          assert.is_false(ok)
          -- the first member decided for: member 1, or (two workers, asynchronous) whichever
          -- thread's member was ready first
          local m = tonumber(tostring(err):match("^experiment: member (%d+): "))
          assert.is_true(m == 1 or (m == 2 and c.workers == 2 and not sync), tostring(err))
          local msg = ("the exploit rule returned %s: expected nil or a member index 1..4 " ..
            "other than %d"):format(c.text, m)
          assert.are.equal("experiment: member " .. m .. ": " .. msg, err)
          assert.are.same({ m .. ": " .. msg }, details(events_of(dir), "failure"))
          assert.is_true(exists(dir .. "/schedule.json"))
          os.execute("rm -rf " .. dir)
        end
      end
    end)

    it("fails a member whose eval returns a tensor, suggesting :item()", function()
      for _, sync in ipairs({ true, false }) do
        local r = run_file(MEMBERS, { sync = sync, tensor = 3 }, { workers = 2 })
        local list = details(r.events, "failure")
        assert.are.equal(6, #list) -- each of its 6 steps
        for _, d in ipairs(list) do
          assert.are.equal("3: eval returned a pbt.Tensor, not a number (use :item())", d)
        end
        assert.are.equal(0, count(r.events, "report", 3))
      end
    end)

    it("tells how to put an inline experiment in a file for several workers", function()
      local ok, err = pcall(inline_linear().run, inline_linear(), { workers = 2, progress = false })
      assert.is_false(ok)
      local start = "experiment: workers = 2 needs an experiment file: an experiment built in a script " ..
        "runs on one worker (its functions cannot be moved to other Lua states); put " ..
        "`return pbt.experiment{...}` in a file and run it with pbt.load_experiment(path):run{workers = 2}"
      assert.are.equal(start, err:sub(1, #start))
    end)

    -- lua.c turns Ctrl-C into a one-shot hook that raises "interrupted!" at
    -- the next call: when that call is under one of pbt's own pcalls, the
    -- pcall must hand it on, or the run goes on with SIGINT's handler used up.
    -- interrupt_at(f) does what the hook does, at the first call of f.
    local function interrupt_at(f)
      debug.sethook(function()
        if debug.getinfo(2, "f").func == f then
          debug.sethook()
          error("interrupted!", 0)
        end
      end, "c")
    end

    it("hands on a Ctrl-C that lands in the reporter's decoding of a report", function()
      local reporter = require("pbt.reporter")
      local r = reporter.new({ names = {} }, nil, {})
      r.cur_h, r.metric_names = {}, {}
      local function report()
        return { kind = "report", member = 1, step = 2, score = 0.5, seq = 1, generation = 0,
                 time = 0, data = '{"metrics":{"acc":0.5}}' }
      end
      local lines, scores = r:lines_of({ report() }) -- without the interrupt: decoded
      assert.are.equal(1, #lines)
      assert.are.equal("1,2,0.5\n", scores[1])
      interrupt_at(json.decode)
      local ok, err = pcall(r.lines_of, r, { report() })
      debug.sethook()
      assert.is_false(ok)
      assert.are.equal("interrupted!", err)
    end)

    it("hands on a Ctrl-C that lands in the run store's probe for its tables", function()
      local runstore = require("pbt.runstore")
      local probe = assert(pbt.core.sql.open(":memory:"))
      local exec = probe.exec
      probe:close()
      local path = tmpname()
      local s = runstore.connect("sqlite:" .. path)
      interrupt_at(exec)
      local ok, err = pcall(s.ensure_schema, s)
      debug.sethook()
      assert.is_false(ok)
      assert.are.equal("interrupted!", err)
      s:ensure_schema() -- without the interrupt: the tables are made
      assert.are.same({}, s:runs())
      s:close()
      os.remove(path)
    end)

    it("stops on Ctrl-C with status 130 and writes the run's files", function()
      if VALGRIND then
        pending("a second of Ctrl-C under valgrind")
        return
      end
      local env = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)
      for _, w in ipairs({ 2, 1 }) do
        local dir = tmpname()
        local p = io.popen(("%slua5.4 lua/pbt/cli.lua run %s --out %s --workers %d --quiet 2>&1 & " ..
          "pid=$!; sleep 1; kill -INT $pid; wait $pid; echo \"exit=$?\""):format(env, SLOW, dir, w))
        local out = p:read("a")
        p:close()
        assert.are.equal("130", out:match("exit=(%d+)"), out)
        assert.matches(("pbt: interrupted; the run's files are in %s\npbt: interrupted\n"):format(dir), out, 1, true)
        local events = events_of(dir)
        assert.is_true(count(events, "report") > 0)
        assert.are.equal(0, count(events, "failure"), w .. " workers")
        assert.is_true(exists(dir .. "/schedule.json"))
        assert.is_true(exists(dir .. "/best.pbt"))
        os.execute("rm -rf " .. dir)
      end
    end)

    it("fails a member that runs its worker's Lua state out of memory and goes on", function()
      local marker = tmpname()
      for _, sync in ipairs({ true, false }) do
        local r = run_file(MEMBERS, { sync = sync, oom = 2, marker = marker },
          { workers = 2, memory_limit = 8 * 1024 * 1024 })
        os.remove(marker)
        assert.are.same({ "2: not enough memory" }, details(r.events, "failure"))
        for i = 1, 4 do assert.are.equal(i == 2 and 5 or 6, count(r.events, "report", i)) end
        assert.is_truthy(r.best)
      end
      assert.has_error(function() run_file(MEMBERS, nil, { workers = 2, memory_limit = "8MB" }) end,
        "experiment: memory_limit must be a non-negative integer (bytes), got 8MB")
    end)
  end)

  describe("member states", function()
    it("publishes the tensor a step put in place of another (w = w * k, not in place)", function()
      for _, sync in ipairs({ true, false }) do
        local e = pbt.experiment{
          population = 2, seed = 5, sync = sync, mode = "min",
          space = { lr = pbt.uniform(0.1, 0.5) },
          initial = { { lr = 0.2 }, { lr = 0.4 } },
          init = function(_, g) return { w = T.randn(3, { generator = g, dtype = "float64" }) } end,
          step = function(st, h) st.w = st.w * (1 - h.lr) end,
          eval = function(st) return (st.w * st.w):sum():item() end,
          ready = pbt.ready.every(2), exploit = function() return nil end,
          explore = function(h) return h end, budget = { steps = 6 },
        }
        local r = e:run{ progress = false }
        for i, lr in ipairs({ 0.2, 0.4 }) do
          -- member i's w: its first draws, times (1 - lr) six times
          local w0 = T.randn(3, { generator = pbt.Generator(member_seed(5, i)), dtype = "float64" })
          local want = (w0 * w0):sum():item() * (1 - lr) ^ 12
          assert.near(want, r.scores[i][6][2], 1e-12 * want)
        end
        -- the best member's state is the published one: its w gives its score
        local w = r.best.state.w
        assert.are.equal(r.best.score, (w * w):sum():item())
        assert.are.equal(2, r.best.member)
      end
    end)
  end)

  describe("states and decisions checked", function()
    local function small(fields)
      local desc = { population = 3, seed = 2, space = { lr = pbt.uniform(0.1, 0.5) },
        init = function() return { w = T.zeros(2) } end,
        step = function() end, eval = function() return 0 end, budget = { steps = 4 } }
      for k, v in pairs(fields) do desc[k] = v end
      return pbt.experiment(desc)
    end

    it("refuses states whose tensors differ in shape between members, naming the entry", function()
      local k = 0
      local e = small{ init = function() k = k + 1; return { w = T.zeros(k == 2 and 3 or 2) } end }
      assert.has_error(function() e:run{ progress = false } end,
        "experiment: member 2's state tensor 'w' is float32 [3], member 1's float32 [2]: init " ..
        "must build tensors of the same shapes and dtypes for every member")
    end)

    it("refuses two parts of the same name", function()
      local e = small{ init = function() return { ["a.b"] = T.zeros(1), a = { b = T.zeros(1) } } end }
      assert.has_error(function() e:run{ progress = false } end,
        "experiment: the state has two parts named 'a.b' (a key \"a.b\" beside a.b, or \"1\" " ..
        "beside 1): rename one")
    end)

    it("fails a member whose step leaves a state number that is not one, and goes on", function()
      local e = small{
        init = function() return { w = T.zeros(1), n = 0 } end,
        step = function(st, h) st.n = h.lr > 0.3 and "x" or st.n + 1 end,
        initial = { { lr = 0.2 }, { lr = 0.4 }, { lr = 0.2 } },
        exploit = function() return nil end, explore = function(h) return h end,
      }
      local r = e:run{ progress = false }
      -- member 2 fails at its first step, is replaced by a copy of a member
      -- with lr 0.2 (whose steps keep n a number) and trains its 3 others
      assert.are.same({ "2: publishing the state: the state's 'n' is now a string, not a number or a boolean" },
        details(r.events, "failure"))
      assert.are.equal(1, count(r.events, "exploit", 2))
      assert.are.equal(4, count(r.events, "report", 1))
      assert.are.equal(3, count(r.events, "report", 2))
    end)

    it("hands an experiment file's args to worker threads with their kinds (1.0 stays a float)", function()
      for _, w in ipairs({ 1, 2 }) do
        local r = run_file("spec/fixtures/args.lua", { x = 1.0, n = 3, s = "a\0b" }, { workers = w })
        for i = 1, 2 do
          for _, p in ipairs(r.scores[i]) do assert.are.equal(1, p[2]) end
        end
      end
    end)

    it("takes no donor in a generation that was copied into earlier in it (sync)", function()
      -- member 1 copies 2, then member 3 would copy 1: 1 holds 2's weights
      -- and freshly explored hyperparameters now, not what the rule saw
      local e = small{
        ready = pbt.ready.every(2),
        exploit = function(_, i) if i == 1 then return 2 elseif i == 3 then return 1 end end,
        explore = function(h) return h end,
      }
      local r = e:run{ progress = false }
      local copies = {}
      for _, ev in ipairs(r.events) do
        if ev.kind == "exploit" then copies[#copies + 1] = ("%d<-%d@%d"):format(ev.member, ev.other, ev.step) end
      end
      -- one generation decides (steps 2); the one at step 4 ends the budget
      assert.are.same({ "1<-2@2" }, copies)
    end)

    it("replays a schedule through the experiment's apply", function()
      local applied = {}
      local e = small{
        init = function() return { w = T.zeros(1), lr = 0 } end,
        apply = function(st, h) st.lr = h.lr; applied[#applied + 1] = h.lr end,
        step = function(st) st.w:add_(st.lr) end,
        eval = function(st) return st.w:item() end,
      }
      local score = pbt.replay(e, { root = 1, seed = 1, steps = 3,
        { step = 0, h = { lr = 0.25 } }, { step = 2, h = { lr = 0.5 } } })
      assert.are.same({ 0.25, 0.5 }, applied)
      assert.are.equal(0.25 + 0.25 + 0.5, score)
    end)
  end)

  describe("explore", function()
    it("gets (h, space, g, view, i) and its events carry the old and new hyperparameters", function()
      local space = { lr = pbt.uniform(0.1, 1), act = pbt.choice{ "relu", "tanh" } }
      local calls = {}
      local function copy(h)
        local c = {}
        for k, v in pairs(h) do c[k] = v end
        return c
      end
      local e = pbt.experiment{
        population = 4, seed = 5, space = space,
        init = function() return { w = T.zeros(1, { dtype = "float64" }) } end,
        step = function(s, h, g) s.w:add_(g:uniform() * h.lr) end,
        eval = function(s) return s.w:item() end,
        ready = pbt.ready.every(2),
        exploit = pbt.exploit.truncation{ fraction = 0.25 },
        explore = function(...)
          local h, sp, g, view, i = ...
          local new = copy(h)
          new.lr = h.lr / 2
          new.act = h.act == "relu" and "tanh" or "relu"
          calls[#calls + 1] = { nargs = select("#", ...), old = copy(h), new = copy(new), space = sp, i = i,
            g = getmetatable(g).__name, size = view.size, score = view:score(i) }
          return new
        end,
        budget = { steps = 6 },
      }
      local dir = tmpname()
      local r = e:run{ progress = false, out = dir }
      local events = events_of(dir)
      -- events.jsonl holds the result's events, time and all
      assert.are.equal(#r.events, #events)
      for j, ev in ipairs(events) do assert.are.same(r.events[j], ev) end
      local k, last_score = 0, {}
      for _, ev in ipairs(events) do
        if ev.kind == "report" then last_score[ev.member] = ev.score end
        if ev.kind == "explore" then
          k = k + 1
          local c = calls[k]
          assert.are.equal(5, c.nargs)
          assert.are.equal(space, c.space)
          assert.are.equal("pbt.Generator", c.g)
          assert.are.equal(4, c.size)
          assert.are.equal(c.i, ev.member)
          assert.are.same(c.old, ev.old)
          assert.are.same(c.new, ev.new)
          -- the recipient holds the donor's weights and score
          assert.are.equal(last_score[ev.other], c.score)
        end
      end
      -- 6 steps, ready every 2: decisions after steps 2 and 4, 1 recipient each
      assert.are.equal(2, k)
      assert.are.equal(2, #calls)
      os.execute("rm -rf " .. dir)
    end)
  end)

  describe("pbt.shared", function()
    it("try is pcall but for Ctrl-C, which it raises again", function()
      local try = require("pbt.shared").try
      assert.are.same({ true, 1, nil, 3 }, { try(function() return 1, nil, 3 end) })
      assert.are.same({ false, "bad" }, { try(error, "bad", 0) })
      assert.are.same({ false, "f.lua:1: interrupted! no" }, { try(error, "f.lua:1: interrupted! no", 0) })
      local ok, err = pcall(try, error, "f.lua:1: interrupted!", 0)
      assert.is_false(ok)
      assert.are.equal("f.lua:1: interrupted!", err)
    end)

    it("runs the loader once for a run on 2 workers (the main state and the workers share it)", function()
      local file = tmpname()
      local r = run_file(SHARED, { name = "runner_spec " .. file, count_file = file }, { workers = 2 })
      assert.are.equal(4 * 4, count(r.events, "report"))
      assert.are.equal("loaded\n", read(file))
      os.remove(file)
    end)
  end)
end)
