#!/usr/bin/env lua5.4
--- The `pbt` command (installed by the rockspec; from a checkout run
-- `lua5.4 lua/pbt/cli.lua ...` after `make`).
--
--   pbt run FILE [--out DIR] [--seed S] [--workers N] [--resume | --overwrite] [--force] [--quiet]
--       runs the experiment FILE returns (pbt.experiment{...}) on N worker
--       threads (default: the cores this process may use); writes the run
--       directory DIR (events.jsonl, scores.csv, schedule.json, best.pbt, index.html,
--       scores.svg, hparam_*.svg, lineage.svg) and prints the best member.
--       Ctrl-C stops the run, writes its files and exits with status 130.
--       The run's store is DIR/run.db: --resume continues a run from its last
--       checkpoints (after a crash or kill -9), --overwrite starts again in a
--       directory that holds one, --force resumes though FILE changed.
--   pbt report DIR [FILE]
--       writes DIR's files (events.jsonl, scores.csv, schedule.json, best.pbt,
--       pictures) again from DIR/run.db (FILE: the experiment, when it is not
--       the file the run names)
--   pbt worker FILE --store URL [--run NAME] [--workers N] [--seed S] [--lease SECONDS]
--              [--retry SECONDS] [--force] [--quiet]
--       a worker process of a run in a shared store (pbt.cluster): URL is
--       postgresql://user@host/db, or sqlite:PATH for processes on one
--       machine; NAME defaults to the experiment's name.  The first worker
--       makes the run; workers join and leave at any time; each exits when
--       the run is done.  --workers N runs N workers in this process.
--   pbt status --store URL [--run NAME]
--       prints the run's members: status, worker, steps, score,
--       hyperparameters
--   pbt report --store URL [--run NAME] --out DIR
--       writes the run directory DIR from the store
--   pbt replay FILE RUN_DIR [--member I]
--       trains one fresh member following member I's recorded schedule
--       (default: the best member of that run) and prints its final score
if not package.loaded["pbt"] and not pcall(require, "pbt") then
  -- not installed: running from a checkout, find lua/ and build/ next to this file
  local script = arg and arg[0] or ""
  local here = script == "lua/pbt/cli.lua" and "." or script:match("^(.*)/lua/pbt/cli%.lua$")
  if here then
    package.path = here .. "/lua/?.lua;" .. here .. "/lua/?/init.lua;" .. package.path
    package.cpath = here .. "/build/?.so;" .. package.cpath
  end
end

local M = {}

local usage = [==[
usage: pbt run FILE [--out DIR] [--seed S] [--workers N] [--resume | --overwrite] [--force] [--quiet]
       pbt report DIR [FILE]
       pbt worker FILE --store URL [--run NAME] [--workers N] [--seed S] [--lease SECONDS]
                  [--retry SECONDS] [--force] [--quiet]
       pbt status --store URL [--run NAME]
       pbt report --store URL [--run NAME] --out DIR
       pbt replay FILE RUN_DIR [--member I]]==]

local function parse(args)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--out" or a == "--seed" or a == "--member" or a == "--workers" or a == "--store"
        or a == "--run" or a == "--lease" or a == "--retry" then
      if not args[i + 1] then error("pbt: " .. a .. " needs a value\n" .. usage, 0) end
      opts[a:sub(3)] = args[i + 1]
      i = i + 2
    elseif a == "--quiet" or a == "--resume" or a == "--overwrite" or a == "--force" then
      opts[a:sub(3)] = true
      i = i + 1
    elseif a == "--help" or a == "-h" then opts.help = true; i = i + 1
    elseif a:sub(1, 2) == "--" then
      local near = require("pbt.options").nearest(a:sub(3), { "out", "seed", "member", "workers", "store", "run",
        "lease", "retry", "quiet", "resume", "overwrite", "force", "help" })
      error("pbt: unknown option " .. a .. (near and (" (did you mean --" .. near .. "?)") or "") .. "\n" .. usage, 0)
    else pos[#pos + 1] = a; i = i + 1 end
  end
  return pos, opts
end

local function seconds(name, s)
  local v = tonumber(s)
  if not v or not (v > 0) or v == math.huge then
    error(("pbt: --%s expects a positive number of seconds, got %s"):format(name, s), 0)
  end
  return v
end

local function integer(name, s)
  local v = math.tointeger(tonumber(s))
  if not v then error(("pbt: --%s expects an integer, got %s"):format(name, s), 0) end
  return v
end

function M.main(args)
  local pbt = require("pbt")
  local pos, opts = parse(args)
  local cmd = pos[1]
  if opts.help or cmd == "help" then
    print(usage)
    return 0
  end
  if cmd == "run" and pos[2] then
    local e = pbt.load_experiment(pos[2])
    local out = opts.out or ("pbt-run-" .. os.date("%Y%m%d-%H%M%S"))
    if opts.resume and opts.overwrite then error("pbt: --resume and --overwrite exclude each other", 0) end
    if opts.resume and not opts.out then error("pbt: --resume needs --out DIR (the run to continue)", 0) end
    local result = e:run{ out = out, seed = opts.seed and integer("seed", opts.seed), quiet = opts.quiet,
      workers = opts.workers and integer("workers", opts.workers), resume = opts.resume,
      overwrite = opts.overwrite, force = opts.force }
    local b = result.best
    if b then
      local hs = {}
      for k, v in pairs(b.h) do hs[#hs + 1] = ("%s = %s"):format(k, tostring(v)) end
      table.sort(hs)
      print(("best: member %d, score %.6g, hyperparameters %s"):format(b.member, b.score,
        table.concat(hs, ", ")))
    end
    print("run directory: " .. out)
    return 0
  elseif cmd == "worker" and pos[2] then
    if not opts.store then error("pbt: worker needs --store URL (postgresql://... or sqlite:PATH)\n" .. usage, 0) end
    local cluster = require("pbt.cluster")
    local e = pbt.load_experiment(pos[2])
    local n = opts.workers and integer("workers", opts.workers) or 1
    if n < 1 then error("pbt: --workers expects a positive integer, got " .. opts.workers, 0) end
    local wopts = { store = opts.store, run = opts.run, seed = opts.seed and integer("seed", opts.seed),
      lease = opts.lease and seconds("lease", opts.lease), retry = opts.retry and seconds("retry", opts.retry),
      force = opts.force, quiet = opts.quiet }
    local summaries
    if n == 1 then
      local restore = pbt.core.threads.blas_threads(1)
      summaries = { cluster.work(e, wopts) }
      pbt.core.threads.blas_threads(restore)
    else
      summaries = cluster.work_threads(e, n, wopts)
    end
    local turns, steps = 0, 0
    for _, sm in ipairs(summaries) do turns, steps = turns + sm.turns, steps + sm.steps end
    print(("run '%s' is %s: this process trained %d steps in %d turns"):format(summaries[1].run,
      summaries[1].status, steps, turns))
    return 0
  elseif cmd == "status" then
    if not opts.store then error("pbt: status needs --store URL\n" .. usage, 0) end
    local cluster = require("pbt.cluster")
    print(cluster.status_text(cluster.status(opts.store, opts.run)))
    return 0
  elseif cmd == "report" and opts.store then
    if not opts.out then error("pbt: report --store needs --out DIR (the directory to write)", 0) end
    local e = pos[2] and pbt.load_experiment(pos[2]) or nil
    local result = require("pbt.scheduler").report(opts.out, e, { store = opts.store, run = opts.run })
    print(("wrote %s/events.jsonl, scores.csv, schedule.json, best.pbt, index.html and pictures from the store (%d events)")
      :format(opts.out, #result.events))
    return 0
  elseif cmd == "report" and pos[2] then
    local e = pos[3] and pbt.load_experiment(pos[3]) or nil
    local result = require("pbt.scheduler").report(pos[2], e)
    print(("wrote %s/events.jsonl, scores.csv, schedule.json, best.pbt, index.html and pictures from run.db (%d events)")
      :format(pos[2], #result.events))
    return 0
  elseif cmd == "replay" and pos[2] and pos[3] then
    local f = io.open(pos[3] .. "/schedule.json")
    if not f then error("pbt: no schedule.json in " .. pos[3], 0) end
    local schedules = pbt.json.decode(f:read("a"))
    f:close()
    local member = opts.member and integer("member", opts.member)
    if not member then
      local best = pbt.load(pos[3] .. "/best.pbt")
      member = best and best.member or 1
    end
    local schedule = schedules[member]
    if not schedule then error(("pbt: the run has no member %d"):format(member), 0) end
    local score = pbt.replay(pos[2], schedule)
    -- the run's own final score of that member, and whether its weights
    -- came through exploits (then replaying the schedule from the root's
    -- initial weights is not expected to give the same score)
    local own, exploits = nil, 0
    local ev_file = io.open(pos[3] .. "/events.jsonl")
    if ev_file then
      for line in ev_file:lines() do
        local kind, m = line:match('"kind":"(%a+)","member":(%d+)')
        if tonumber(m) == member then
          if kind == "report" then own = pbt.json.decode(line).score
          elseif kind == "exploit" then exploits = exploits + 1 end
        end
      end
      ev_file:close()
    end
    print(("replayed member %d's schedule (%d steps): final score %.6g"):format(member,
      schedule.steps, score))
    if own then
      if exploits > 0 then
        print(("the run's final score of member %d: %.6g; its weights came through %d exploit%s, so " ..
          "the two are not expected to match (the replay follows the schedule from member %d's " ..
          "initial weights)"):format(member, own, exploits, exploits == 1 and "" or "s", schedule.root or member))
      else
        print(("the run's final score of member %d: %.6g; no exploit in its lineage, so the two should " ..
          "match%s"):format(member, own, own == score and " (they do)" or (" (they differ by %.3g)"):format(score - own)))
      end
    end
    return 0
  end
  io.stderr:write(usage, "\n")
  return 2
end

if arg and arg[0] and arg[0]:match("cli%.lua$") or (arg and arg[0] and arg[0]:match("pbt$")) then
  local ok, code = pcall(M.main, arg)
  if not ok then
    if type(code) == "string" and code:find("interrupted!$") then
      io.stderr:write("pbt: interrupted\n")
      os.exit(130)
    end
    io.stderr:write(tostring(code), "\n")
    os.exit(1)
  end
  os.exit(code)
end
return M
