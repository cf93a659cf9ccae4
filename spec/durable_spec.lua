-- Durable runs: the store in out/run.db, kill -9 at any instant, resume.
-- The uninterrupted run is the reference a resumed one must equal (sync:
-- bit for bit but the wall-clock times; async: every member's budget done
-- once, nothing logged twice).
local pbt = require("pbt")
local helper = require("spec.helper")
local read, exists, log_text = helper.readfile, helper.exists, helper.log_text
local json = pbt.json

-- the slowest cases are skipped under valgrind (make valgrind sets this)
local VALGRIND = os.getenv("PBT_VALGRIND")
local DURABLE = "spec/fixtures/durable.lua"

local tmpname = require("spec.helper").tmpname

local function lua_run(dir, sync, extra)
  return ("lua5.4 -e \"package.path='./lua/?.lua;./lua/?/init.lua;'..package.path; " ..
    "package.cpath='%s'..package.cpath; local pbt=require('pbt'); " ..
    "pbt.load_experiment('%s', {sync=%s}):run{out='%s', workers=2, progress=false%s}\""):format(
    package.cpath:match("^[^;]+") .. ";", DURABLE, tostring(sync), dir, extra or "")
end

local function run_here(dir, sync, opts)
  opts = opts or {}
  opts.out, opts.workers, opts.progress = dir, 2, false
  return pbt.load_experiment(DURABLE, { sync = sync }):run(opts)
end

-- events.jsonl without its times
local function file_log(dir)
  return (read(dir .. "/events.jsonl"):gsub(',"time":[%d.e+-]+', ""))
end

-- starts a run in a child, kills it with SIGKILL after `delay` seconds (if it
-- still runs), then resumes it in another child; returns the resume's status.
-- A kill that came before the child made run.db (a slow start: a sanitizer
-- build on a busy machine) left no run: the second child then starts it.
local function kill_and_resume(dir, sync, delay)
  os.execute("rm -rf " .. dir)
  local cmd = ("%s & pid=$!; sleep %.3f; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; " ..
    "if [ -e '%s/run.db' ]; then %s 2>&1; else %s 2>&1; fi")
    :format(lua_run(dir, sync), delay, dir, lua_run(dir, sync, ", resume=true"), lua_run(dir, sync))
  local p = io.popen(cmd)
  local output = p:read("a")
  local ok = p:close()
  return ok, output
end

describe("durable runs", function()
  it("continues a synchronous run killed at 20 random instants to the same log, schedules and best", function()
    if VALGRIND then pending("too slow under valgrind") return end
    local ref_dir = tmpname()
    local t0 = pbt.clock()
    local ref = run_here(ref_dir, true)
    local span = pbt.clock() - t0
    local want_log, want_sched = file_log(ref_dir), read(ref_dir .. "/schedule.json")
    local best = pbt.load(ref_dir .. "/best.pbt")
    local g = pbt.Generator(2026)
    local dir = tmpname()
    for k = 1, 20 do
      -- instants across the run's span (a child also pays Lua's and the data's start)
      local delay = 0.05 + g:uniform() * (span + 0.1)
      local ok, output = kill_and_resume(dir, true, delay)
      assert(ok, ("kill %d at %.3f s: the resume failed: %s"):format(k, delay, output))
      assert.are.equal(want_log, file_log(dir), ("kill %d at %.3f s"):format(k, delay))
      assert.are.equal(want_sched, read(dir .. "/schedule.json"))
      local b = pbt.load(dir .. "/best.pbt")
      assert.are.same({ best.member, best.score }, { b.member, b.score })
      assert.is_true(pbt.tensor.equal(best.tensors.w, b.tensors.w))
    end
    assert.is_truthy(ref.best)
    os.execute("rm -rf " .. ref_dir .. " " .. dir)
  end)

  it("continues an asynchronous run killed mid-way with every step trained once", function()
    if VALGRIND then pending("too slow under valgrind") return end
    local g = pbt.Generator(7)
    local dir = tmpname()
    for k = 1, 4 do
      local delay = 0.05 + g:uniform() * 0.5
      local ok, output = kill_and_resume(dir, false, delay)
      assert(ok, output)
      local reports, seqs = {}, {}
      for line in read(dir .. "/events.jsonl"):gmatch("[^\n]+") do
        local ev = json.decode(line)
        seqs[#seqs + 1] = ev.seq
        if ev.kind == "report" then reports[ev.member] = (reports[ev.member] or 0) + 1 end
      end
      -- 4 members x 24 steps, each reported once; seq numbers 1, 2, 3, ... in order
      assert.are.same({ 24, 24, 24, 24 }, reports, ("kill at %.3f s"):format(delay))
      for j, s in ipairs(seqs) do assert.are.equal(j, s) end
    end
    os.execute("rm -rf " .. dir)
  end)

  it("starts again a run whose start was killed before its first commit", function()
    if VALGRIND then pending("too slow under valgrind (seven runs)") return end
    local runstore = require("pbt.runstore")
    local ref_dir = tmpname()
    run_here(ref_dir, true)
    local want = file_log(ref_dir)
    -- run.db as a kill leaves it: an empty database, or pbt's tables without the run
    for _, state in ipairs({ "empty", "tables" }) do
      for _, resume in ipairs({ true, false }) do
        local dir = tmpname()
        os.execute("rm -rf " .. dir .. " && mkdir -p " .. dir)
        local db = assert(pbt.core.sql.open(runstore.path(dir)))
        db:exec("PRAGMA user_version = 0") -- writes the file's header
        db:close()
        if state == "tables" then
          local s = runstore.connect(dir)
          s:ensure_schema()
          s:close()
        end
        assert.is_true(runstore.exists(dir))
        assert.is_false(runstore.started(dir))
        run_here(dir, true, { resume = resume })
        assert.are.equal(want, file_log(dir), state .. (resume and ", resumed" or ""))
        assert.is_true(runstore.started(dir))
        os.execute("rm -rf " .. dir)
      end
    end
    -- the run and its first checkpoint are one transaction: an error in
    -- between leaves no run, and the next start makes it
    local dir = tmpname()
    os.execute("rm -rf " .. dir .. " && mkdir -p " .. dir)
    -- no run.db is no start, and asking makes none
    assert.is_false(runstore.started(dir))
    assert.is_false(runstore.exists(dir))
    assert.has_error(function()
      runstore.create(dir, { name = "run", seed = "1" }, function() error("no first checkpoint", 0) end)
    end, "no first checkpoint")
    assert.is_true(runstore.exists(dir))
    assert.is_false(runstore.started(dir))
    run_here(dir, true, { resume = true })
    assert.are.equal(want, file_log(dir))
    os.execute("rm -rf " .. dir)
    -- a database of something else is no killed start: left alone, and refused
    dir = tmpname()
    os.execute("rm -rf " .. dir .. " && mkdir -p " .. dir)
    local db = assert(pbt.core.sql.open(runstore.path(dir)))
    db:exec("CREATE TABLE notes (text TEXT)")
    db:close()
    assert.is_true(runstore.started(dir))
    assert.has_error(function() run_here(dir, true, { resume = true }) end,
      ("experiment: %s is not a run's store: it holds no run"):format(runstore.path(dir)))
    db = assert(pbt.core.sql.open(runstore.path(dir)))
    assert.are.same({ { n = 0 } }, db:exec("SELECT count(*) AS n FROM notes"))
    db:close()
    os.execute("rm -rf " .. dir .. " " .. ref_dir)
  end)

  it("never overwrites a directory that holds a run, and says what to do", function()
    local dir = tmpname()
    run_here(dir, true)
    local before = read(dir .. "/events.jsonl")
    assert.has_error(function() run_here(dir, true) end, ("experiment: %s holds a run (run.db): resume = true " ..
      "(pbt run --resume) continues it, overwrite = true (--overwrite) starts it again"):format(dir))
    assert.are.equal(before, read(dir .. "/events.jsonl"))
    -- a finished run resumed: nothing more to train, the same files
    run_here(dir, true, { resume = true })
    assert.are.equal((before:gsub(',"time":[%d.e+-]+', "")), file_log(dir))
    run_here(dir, true, { overwrite = true })
    assert.are.equal((before:gsub(',"time":[%d.e+-]+', "")), file_log(dir))
    local empty = tmpname()
    assert.has_error(function() run_here(empty, true, { resume = true }) end,
      ("experiment: nothing to resume in %s: it holds no run (run.db)"):format(empty))
    os.execute("rm -rf " .. dir)
  end)

  it("refuses to resume another experiment, or a changed file unless forced", function()
    local dir = tmpname()
    run_here(dir, true)
    local files = read(dir .. "/events.jsonl") .. read(dir .. "/scores.csv")
    -- another seed
    assert.has_error(function() run_here(dir, true, { resume = true, seed = 5 }) end,
      ("experiment: %s was a run with seed = 21, not 5: resume it with the same experiment and options")
        :format(dir))
    assert.are.equal(files, read(dir .. "/events.jsonl") .. read(dir .. "/scores.csv")) -- left alone
    -- the same experiment from a copy of the file with one more comment
    local copy = tmpname() .. ".lua"
    local f = assert(io.open(copy, "w"))
    f:write(read(DURABLE), "-- changed\n")
    f:close()
    local e = pbt.load_experiment(copy, { sync = true })
    local crc_old, crc_new = pbt.core.crc32(read(DURABLE)), pbt.core.crc32(read(copy))
    assert.has_error(function() e:run{ out = dir, resume = true, progress = false } end,
      ("experiment: %s changed since the run in %s started (its CRC-32 was %d, now %d): force = true " ..
        "(pbt run --force) resumes it anyway"):format(copy, dir, crc_old, crc_new))
    e:run{ out = dir, resume = true, force = true, progress = false }
    os.remove(copy)
    os.execute("rm -rf " .. dir)
  end)

  it("names the member and the table of a checkpoint whose checksum fails", function()
    local dir = tmpname()
    run_here(dir, true)
    local db = assert(pbt.core.sql.open(dir .. "/run.db"))
    local row = db:exec("SELECT state FROM members WHERE member = 3")[1]
    local bad = row.state:sub(1, 40) .. string.char((row.state:byte(41) + 1) % 256) .. row.state:sub(42)
    db:exec("UPDATE members SET state = ? WHERE member = 3", pbt.core.sql.blob(bad))
    db:close()
    assert.has_error(function() run_here(dir, true, { resume = true }) end,
      "decode: members.state of member 3: checksum mismatch (file is corrupted)")
    os.execute("rm -rf " .. dir)
  end)

  it("removes the temporary files of an interrupted write when it starts", function()
    local dir = tmpname()
    run_here(dir, true)
    local tmp = dir .. "/events.jsonl.tmp.4242.0"
    assert(io.open(tmp, "w")):close()
    run_here(dir, true, { resume = true })
    assert.is_false(exists(tmp))
    os.execute("rm -rf " .. dir)
  end)
end)

describe("a run left in a directory", function()
  it("writes the run's files again from run.db (pbt report), the same as the run wrote them", function()
    local dir = tmpname()
    pbt.load_experiment(DURABLE, { sync = true, busy = 0 }):run{ out = dir, workers = 1, progress = false }
    local files = {}
    for _, name in ipairs({ "events.jsonl", "scores.csv", "schedule.json", "scores.svg", "lineage.svg" }) do
      files[name] = read(dir .. "/" .. name)
      os.remove(dir .. "/" .. name)
    end
    local best = pbt.load(dir .. "/best.pbt")
    os.remove(dir .. "/best.pbt")
    local p = io.popen("lua5.4 lua/pbt/cli.lua report " .. dir .. " 2>&1")
    local output = p:read("a")
    assert(p:close(), output)
    for name, text in pairs(files) do assert.are.equal(text, read(dir .. "/" .. name), name) end
    local again = pbt.load(dir .. "/best.pbt")
    assert.are.same({ best.member, best.score, best.h }, { again.member, again.score, again.h })
    assert.is_true(pbt.tensor.equal(best.tensors.w, again.tensors.w))
    os.execute("rm -rf " .. dir)
  end)

  it("loads a run: members, scores, schedules and each member's checkpoint as a state table", function()
    local dir = tmpname()
    local r = pbt.load_experiment(DURABLE, { sync = true, busy = 0 }):run{ out = dir, workers = 1, progress = false }
    local run = pbt.load_run(dir)
    assert.are.equal(4, run.size)
    assert.are.equal(r.best.member, run.best.member)
    assert.are.equal(r.best.score, run.best.score)
    assert.are.same(r.schedules, run.schedules)
    assert.are.same(r.scores, run.scores)
    local st = run:state(run.best.member)
    -- the state init made: w, v (tensors) and n (a number), as the run ended
    assert.is_true(pbt.tensor.equal(r.best.state.w, st.w))
    assert.is_true(pbt.tensor.equal(r.best.state.v, st.v))
    assert.are.equal(24, st.n)
    assert.are.equal(24, run.members[1].work)
    assert.has_error(function() run:state(9) end, "load_run: the run has no member 9")
    os.execute("rm -rf " .. dir)
  end)

  it("gives a module's checkpoint in keys its load_state_dict takes (an experiment built in a script)", function()
    local nn, T = pbt.nn, pbt.tensor
    local x = T.linspace(-1, 1, 8):view(8, 1)
    local e = pbt.experiment{
      population = 2, seed = 4, space = { lr = pbt.uniform(0.05, 0.2) }, mode = "min",
      init = function(h, g)
        local model = nn.Sequential(nn.Linear(1, 4, { generator = g }), nn.ReLU(), nn.Linear(4, 1, { generator = g }))
        return { model = model, opt = pbt.optim.SGD(model:parameters(), { lr = h.lr, momentum = 0.5 }) }
      end,
      step = function(st, h)
        st.opt.lr = h.lr
        st.opt:zero_grad()
        nn.mse_loss(st.model(x), x * 2):backward()
        st.opt:step()
      end,
      eval = function(st) return pbt.no_grad(function() return nn.mse_loss(st.model(x), x * 2):item() end) end,
      budget = { steps = 3 },
    }
    local dir = tmpname()
    local r = e:run{ out = dir, progress = false }
    assert.has_error(function() pbt.load_run(dir) end,
      ("experiment: %s holds a run of an experiment built in a script: give the experiment"):format(dir))
    local run = pbt.load_run(dir, e)
    local model = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1))
    model:load_state_dict(run:state(run.best.member).model)
    local want = pbt.no_grad(function() return nn.mse_loss(model(x), x * 2):item() end)
    assert.are.equal(r.best.score, want)
    os.execute("rm -rf " .. dir)
  end)
end)
