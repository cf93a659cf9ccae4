-- The pbt command (lua/pbt/cli.lua), run as a separate process the way a
-- user runs it from a checkout.
local pbt = require("pbt")
local json = require("pbt.json")

-- the command runs with this suite's module paths (its build)
local ENV = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)

local function sh(cmd)
  local p = io.popen(ENV .. cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return out:gsub("exit=%d+%s*$", ""), code
end

local EXPERIMENT = [[
local pbt = require("pbt")
local T = pbt.tensor
local x = T.linspace(-1, 1, 8, { dtype = "float64" })
return pbt.experiment{
  population = 3, seed = 5, mode = "min",
  space = { lr = pbt.loguniform(0.05, 0.5) },
  init = function(_, g) return { w = T.randn(1, { dtype = "float64", generator = g }) } end,
  step = function(s, h) s.w:sub_((((s.w * x) - x * 3) * x):mean() * 2, h.lr) end,
  eval = function(s) return (((s.w * x) - x * 3) ^ 2):mean():item() end,
  ready = pbt.ready.every(2),
  exploit = pbt.exploit.tournament{},
  budget = { steps = 8 },
}
]]

describe("the pbt command", function()
  local dir, file
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(pbt.core.mkdir(dir))
    file = dir .. "/linear.lua"
    assert(pbt.core.write_file(file, EXPERIMENT))
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("runs an experiment file and writes its run directory", function()
    local out, code = sh(("lua5.4 lua/pbt/cli.lua run %s --out %s/run --quiet"):format(file, dir))
    assert.are.equal(0, code, out)
    assert.matches("best: member %d, score [%d.e+-]+, hyperparameters lr = ", out)
    for _, name in ipairs({ "events.jsonl", "scores.csv", "schedule.json", "best.pbt",
      "scores.svg", "hparam_lr.svg", "lineage.svg" }) do
      local f = io.open(dir .. "/run/" .. name)
      assert.is_truthy(f, name .. " missing")
      f:close()
    end
  end)

  it("gives the same events for the same seed and others for another (--seed)", function()
    local function events(sub, seed)
      local _, code = sh(("lua5.4 lua/pbt/cli.lua run %s --out %s/%s --overwrite --quiet%s"):format(file, dir, sub,
        seed and (" --seed " .. seed) or ""))
      assert.are.equal(0, code)
      local f = assert(io.open(dir .. "/" .. sub .. "/events.jsonl"))
      local s = f:read("a")
      f:close()
      -- every event has a wall-clock time, the one field that may differ
      local n = 0
      s = s:gsub(',"time":[%d.e+-]+', function() n = n + 1 return "" end)
      local lines = select(2, s:gsub("\n", "\n"))
      assert.are.equal(lines, n)
      return s
    end
    assert.are.equal(events("a"), events("b"))
    assert.are_not.equal(events("a"), events("c", 6))
  end)

  it("replays a member's schedule from a run directory", function()
    local _, code = sh(("lua5.4 lua/pbt/cli.lua run %s --out %s/r --quiet"):format(file, dir))
    assert.are.equal(0, code)
    local f = assert(io.open(dir .. "/r/schedule.json"))
    local schedules = json.decode(f:read("a"))
    f:close()
    local out, code2 = sh(("lua5.4 lua/pbt/cli.lua replay %s %s/r --member 2"):format(file, dir))
    assert.are.equal(0, code2, out)
    assert.matches(("replayed member 2's schedule %%(%d steps%%): final score "):format(schedules[2].steps), out)
    -- and through pbt.replay, the same final score
    local score = pbt.replay(file, schedules[2])
    assert.matches(("final score %.6g"):format(score), out, 1, true)
    -- next to the run's own score for that member, with what the comparison means: for each
    -- member, the exploits into its slot (counted here from events.jsonl) decide the sentence
    local last, exploits = {}, {}
    for line in io.lines(dir .. "/r/events.jsonl") do
      local ev = json.decode(line)
      if ev.kind == "report" then last[ev.member] = ev.score end
      if ev.kind == "exploit" then exploits[ev.member] = (exploits[ev.member] or 0) + 1 end
    end
    local checked = { exploited = false, own = false }
    for m = 1, #schedules do
      local o = sh(("lua5.4 lua/pbt/cli.lua replay %s %s/r --member %d"):format(file, dir, m))
      local n = exploits[m] or 0
      assert.matches(("the run's final score of member %d: %.6g; "):format(m, last[m]), o, 1, true)
      if n > 0 then
        checked.exploited = true
        assert.matches(("its weights came through %d exploit"):format(n), o, 1, true)
        assert.matches("so the two are not expected to match", o, 1, true)
      else
        checked.own = true
        -- no exploit: the replay is the member's own training again, the same score
        assert.matches("no exploit in its lineage, so the two should match (they do)", o, 1, true)
      end
    end
    assert.is_true(checked.exploited)
    -- a run without exploits: every member's replay is its own training again
    local plain = dir .. "/plain.lua"
    assert(pbt.core.write_file(plain, (EXPERIMENT:gsub("pbt%.exploit%.tournament{}", "function() return nil end"))))
    local _, code3 = sh(("lua5.4 lua/pbt/cli.lua run %s --out %s/p --quiet"):format(plain, dir))
    assert.are.equal(0, code3)
    for m = 1, 3 do
      local o = sh(("lua5.4 lua/pbt/cli.lua replay %s %s/p --member %d"):format(plain, dir, m))
      assert.matches("no exploit in its lineage, so the two should match (they do)", o, 1, true)
    end
  end)

  it("explains its usage and fails on a bad command line", function()
    local out, code = sh("lua5.4 lua/pbt/cli.lua")
    assert.are.equal(2, code)
    assert.matches("usage: pbt run FILE", out, 1, true)
    out, code = sh("lua5.4 lua/pbt/cli.lua run " .. file .. " --bogus")
    assert.are.equal(1, code)
    assert.matches("pbt: unknown option --bogus", out, 1, true)
    out, code = sh("lua5.4 lua/pbt/cli.lua run " .. file .. " --wrokers 2")
    assert.are.equal(1, code)
    assert.matches("pbt: unknown option --wrokers (did you mean --workers?)", out, 1, true)
    out, code = sh("lua5.4 lua/pbt/cli.lua run /nonexistent/x.lua")
    assert.are.equal(1, code)
    assert.matches("cannot open /nonexistent/x.lua", out, 1, true)
  end)

  it("prints its usage for --help, -h and help, and succeeds", function()
    for _, a in ipairs({ "--help", "-h", "help" }) do
      local out, code = sh("lua5.4 lua/pbt/cli.lua " .. a)
      assert.are.equal(0, code, a)
      assert.are.equal("usage: pbt run FILE", out:match("^(usage: pbt run FILE)"), a)
      assert.matches("pbt replay FILE RUN_DIR", out, 1, true)
    end
  end)
end)
