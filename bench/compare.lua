-- bench/compare.lua -- hyperparameter-search methods compared on one task
-- over many seeds, resumably.
--
--   lua5.4 bench/compare.lua --task mlp|cnn --population N --steps S --seeds 1-20
--       [--methods pbt,ttest,pb2,random,optuna] [--workers W] [--out FILE.csv]
--   lua5.4 bench/compare.lua --out FILE.csv --summary     (the summary alone)
--
-- Tasks: mlp is examples/fashion_pbt.lua (a 784-256-10 MLP on the 54000
-- training images of a 90/10 split, a step = 100 minibatches), cnn is
-- examples/fashion_cnn_pbt.lua (a small CNN on 12000 of them, scored on 3000
-- validation images, a step = 50 minibatches).  Methods:
--   pbt, ttest, pb2, random  the experiment file loaded with {method = m,
--       seed = s, steps = S, population = N}, run on W worker threads
--       (default: the cores this process may use), no run directory;
--   optuna  bench/compare_optuna.py (Debian's python3-torch and
--       python3-optuna): TPE + Hyperband on PyTorch, the same model, space,
--       step, split (the permutation data.split draws, handed over in a
--       file) and total minibatches.
-- Seeds are run in order, every method of a seed before the next seed.
-- Each (method, seed) not yet in the CSV file (default:
-- bench/results/TASK-pN-sS.csv in this checkout) is run and its line
-- appended at once, so a killed run starts again where it stopped; a line
-- that failed is not written (the error is printed, the other cells go on,
-- and the exit status is 1).  Columns:
--   task,population,steps,method,seed  the cell
--   val      validation accuracy of the best member (trial) at its end
--   test     accuracy of that member's (trial's) final model on the 10000
--            test images
--   seconds  wall time of the search (e:run; the Python side's search
--            loop), data loading and the test evaluation left out
--   minibatches  trained in all (population * steps * minibatches per step)
--   roots    pbt methods: distinct lineage roots among the members at the end
--   takeover pbt methods: the step at which every member came to share one
--            root (from the exploit events), "" if that never happened
--   trials, completed  optuna: trials started, trials that ran every step
--   workers  worker threads of the pbt run (optuna: torch's 2 threads)
-- After every cell and with --summary: a markdown table per method (means;
-- the wall time's median) and one per pair of methods (mean paired difference with its 95%
-- t-interval, wins / ties / losses, a tie being a difference within 1e-9).
-- Every optuna cell checks the Python side's split against pbt's: the sums
-- of the first validation and training images, and a hash of the
-- validation labels in the order data.split gives them.  Memory: pbt.shared
-- keeps each seed's data for the life of the process (about 220 MB a seed
-- for mlp, 80 MB for cnn).
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
local pbt = require("pbt")
local data, nn, json = pbt.data, pbt.nn, pbt.json

local PYTHON = "/usr/bin/python3"
local TASKS = {
  mlp = { file = root .. "/examples/fashion_pbt.lua", step_batches = 100, flatten = true },
  cnn = { file = root .. "/examples/fashion_cnn_pbt.lua", step_batches = 50, flatten = false },
}
local METHODS = { "pbt", "ttest", "pb2", "random", "optuna", "smooth", "floor" }
local PBT_METHODS = { pbt = true, ttest = true, pb2 = true, random = true, smooth = true, floor = true }
-- the pairs of the summary: (a, b) compares a - b
local PAIRS = {
  { "pbt", "random" }, { "ttest", "random" }, { "pb2", "random" },
  { "pbt", "optuna" }, { "ttest", "optuna" }, { "pb2", "optuna" },
  { "pbt", "pb2" }, { "random", "optuna" },
  { "smooth", "pbt" }, { "floor", "pbt" }, { "smooth", "random" }, { "floor", "random" },
}
local COLUMNS = { "task", "population", "steps", "method", "seed", "val", "test", "seconds",
  "minibatches", "roots", "takeover", "trials", "completed", "workers" }
local TIE = 1e-9

local function die(fmt, ...)
  io.stderr:write("compare: ", fmt:format(...), "\n")
  os.exit(2)
end

-- ---- options ------------------------------------------------------------------

local USAGE = "usage: lua5.4 bench/compare.lua --task mlp|cnn --population N --steps S --seeds 1-20\n"
  .. "         [--methods pbt,ttest,pb2,random,optuna] [--workers W] [--out FILE.csv] [--summary]"

local function parse_args(argv)
  local known = { task = true, population = true, steps = true, seeds = true, methods = true,
    workers = true, out = true, summary = false, help = false }
  local o, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    local name, value = a:match("^%-%-([%w_-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w_-]+)$") end
    if not name then die("unexpected argument '%s'\n%s", a, USAGE) end
    if known[name] == nil then die("unknown option --%s\n%s", name, USAGE) end
    if known[name] then
      if value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then die("option --%s needs a value", name) end
      end
      o[name] = value
    else
      if value ~= nil then die("option --%s takes no value", name) end
      o[name] = true
    end
    i = i + 1
  end
  if o.help then print(USAGE) os.exit(0) end
  local function int(name, min)
    if o[name] == nil then return nil end
    local v = math.tointeger(tonumber(o[name]))
    if not v or v < min then die("--%s must be an integer >= %d, got '%s'", name, min, o[name]) end
    return v
  end
  o.population, o.steps, o.workers = int("population", 2), int("steps", 1), int("workers", 1)
  if o.task ~= nil and not TASKS[o.task] then die("--task must be mlp or cnn, got '%s'", o.task) end
  if o.seeds then
    local seeds, seen = {}, {}
    for part in o.seeds:gmatch("[^,]+") do
      local lo, hi = part:match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
      if not lo then lo = part:match("^%s*(%d+)%s*$"); hi = lo end
      lo, hi = math.tointeger(tonumber(lo)), math.tointeger(tonumber(hi))
      if not lo or lo < 1 or hi < lo then die("--seeds: bad range '%s' (e.g. 1-20 or 1,3,5-7)", part) end
      for s = lo, hi do
        if not seen[s] then seen[s] = true; seeds[#seeds + 1] = s end
      end
    end
    if #seeds == 0 then die("--seeds is empty") end
    o.seeds = seeds
  end
  if o.methods then
    local list, valid = {}, {}
    for _, m in ipairs(METHODS) do valid[m] = true end
    for m in o.methods:gmatch("[^,]+") do
      m = m:match("^%s*(.-)%s*$")
      if not valid[m] then die("--methods: unknown method '%s' (one of %s)", m, table.concat(METHODS, ", ")) end
      list[#list + 1] = m
    end
    if #list == 0 then die("--methods is empty") end
    o.methods = list
  else
    o.methods = METHODS
  end
  if not o.summary then
    for _, name in ipairs({ "task", "population", "steps", "seeds" }) do
      if o[name] == nil then die("--%s is required\n%s", name, USAGE) end
    end
  end
  if o.out == nil then
    if not (o.task and o.population and o.steps) then die("--summary needs --out FILE (or --task, --population and --steps)") end
    o.out = ("%s/bench/results/%s-p%d-s%d.csv"):format(root, o.task, o.population, o.steps)
  end
  return o
end

-- ---- the CSV file -------------------------------------------------------------------

local function split_csv(line)
  local fields = {}
  for f in (line .. ","):gmatch("([^,]*),") do fields[#fields + 1] = f end
  return fields
end

--- The rows of the file (a list of tables column -> string), or {} when
-- it does not exist.  A line with the wrong number of fields (a write that
-- a kill cut short) is left out with a warning.
local function read_rows(path)
  local f = io.open(path, "r")
  if not f then return {}, false end
  local text = f:read("a")
  f:close()
  local rows, header = {}, nil
  local n = 0
  for line in text:gmatch("([^\n]*)\n?") do
    n = n + 1
    if line ~= "" then
      local fields = split_csv(line)
      if not header then
        header = fields
        for _, c in ipairs(COLUMNS) do
          local found = false
          for _, h in ipairs(header) do if h == c then found = true end end
          if not found then die("%s: the header has no column '%s'", path, c) end
        end
      elseif #fields ~= #header then
        io.stderr:write(("compare: %s: line %d has %d fields, not %d: left out\n"):format(path, n, #fields, #header))
      else
        local row = {}
        for k, h in ipairs(header) do row[h] = fields[k] end
        rows[#rows + 1] = row
      end
    end
  end
  return rows, text ~= "" and text:sub(-1) ~= "\n"
end

local function fmt_value(v)
  if v == nil then return "" end
  if math.type(v) == "float" then return ("%.12g"):format(v) end
  return tostring(v)
end

--- Appends one row (and the header first when the file is new), flushed.
local function append_row(path, row, fix_newline)
  local f = io.open(path, "r")
  local new = f == nil
  if f then f:close() end
  f = assert(io.open(path, "a"))
  if fix_newline then f:write("\n") end
  if new then f:write(table.concat(COLUMNS, ","), "\n") end
  local fields = {}
  for k, c in ipairs(COLUMNS) do fields[k] = fmt_value(row[c]) end
  f:write(table.concat(fields, ","), "\n")
  f:flush()
  f:close()
end

-- ---- statistics -------------------------------------------------------------------------

--- Student's t quantile: the t with P(T <= t) = p for df degrees of
-- freedom, by bisection on pbt.stats.t_cdf (p in (0.5, 1)).
local function t_quantile(p, df)
  local lo, hi = 0, 1
  while pbt.stats.t_cdf(hi, df) < p do lo, hi = hi, hi * 2 end
  for _ = 1, 200 do
    local mid = (lo + hi) / 2
    if pbt.stats.t_cdf(mid, df) < p then lo = mid else hi = mid end
    if hi - lo <= 1e-12 * hi then break end
  end
  return (lo + hi) / 2
end

local function mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

--- mean, half-width of the 95% t-interval (nil below 2 values)
-- the median (the wall time's summary: a cell that met a busy machine
-- does not move it)
local function median(xs)
  local s = { table.unpack(xs) }
  table.sort(s)
  if #s == 0 then return 0 / 0 end
  if #s % 2 == 1 then return s[(#s + 1) // 2] end
  return (s[#s // 2] + s[#s // 2 + 1]) / 2
end

local function mean_ci(xs)
  local n, m = #xs, mean(xs)
  if n < 2 then return m, nil end
  local ss = 0
  for _, x in ipairs(xs) do ss = ss + (x - m) ^ 2 end
  local sd = math.sqrt(ss / (n - 1))
  return m, t_quantile(0.975, n - 1) * sd / math.sqrt(n)
end

-- ---- summary ------------------------------------------------------------------------------

local function num(s) return s ~= nil and s ~= "" and tonumber(s) or nil end

local function summary(rows, out)
  local by = {} -- method -> seed -> row
  local configs = {}
  for _, r in ipairs(rows) do
    local seed = math.tointeger(num(r.seed))
    by[r.method] = by[r.method] or {}
    by[r.method][seed] = r
    configs[("%s, population %s, %s steps"):format(r.task, r.population, r.steps)] = true
  end
  local names = {}
  for c in pairs(configs) do names[#names + 1] = c end
  table.sort(names)
  local lines = {}
  local function w(s, ...) lines[#lines + 1] = s:format(...) end
  w("")
  w("%s: %s", out, #names > 0 and table.concat(names, "; ") or "no results yet")
  if #names == 0 then print(table.concat(lines, "\n")) return end
  w("")
  w("| method | seeds | validation accuracy | test accuracy | wall s (median) | minibatches | lineage roots at the end | all one root (runs: mean step) | trials (completed) |")
  w("|---|---|---|---|---|---|---|---|---|")
  for _, m in ipairs(METHODS) do
    local cells = by[m]
    if cells then
      local val, test, secs, mb, roots, take, trials, done = {}, {}, {}, {}, {}, {}, {}, {}
      local n = 0
      for _, r in pairs(cells) do
        n = n + 1
        val[#val + 1], test[#test + 1], secs[#secs + 1] = num(r.val), num(r.test), num(r.seconds)
        mb[#mb + 1] = num(r.minibatches)
        if num(r.roots) then roots[#roots + 1] = num(r.roots) end
        if num(r.takeover) then take[#take + 1] = num(r.takeover) end
        if num(r.trials) then trials[#trials + 1] = num(r.trials) end
        if num(r.completed) then done[#done + 1] = num(r.completed) end
      end
      local vm, vci = mean_ci(val)
      local tm, tci = mean_ci(test)
      local function pm(x, ci) return ci and ("%.2f%% ± %.2f"):format(100 * x, 100 * ci) or ("%.2f%%"):format(100 * x) end
      w("| %s | %d | %s | %s | %.1f | %.0f | %s | %s | %s |", m, n, pm(vm, vci), pm(tm, tci), median(secs), mean(mb),
        #roots > 0 and ("%.2f"):format(mean(roots)) or "",
        PBT_METHODS[m] and m ~= "random" and (#take > 0 and ("%d/%d: %.1f"):format(#take, n, mean(take))
          or ("0/%d"):format(n)) or "",
        #trials > 0 and ("%.1f (%.1f)"):format(mean(trials), mean(done)) or "")
    end
  end
  w("")
  w("(accuracy: mean ± half-width of the 95%% t-interval over the seeds)")
  w("")
  w("| a vs b | paired seeds | validation a - b (pp), 95%% CI | wins/ties/losses | test a - b (pp), 95%% CI | wins/ties/losses |")
  w("|---|---|---|---|---|---|")
  local any = false
  for _, pair in ipairs(PAIRS) do
    local a, b = by[pair[1]], by[pair[2]]
    if a and b then
      local seeds = {}
      for s in pairs(a) do if b[s] then seeds[#seeds + 1] = s end end
      table.sort(seeds)
      if #seeds > 0 then
        any = true
        local cols = {}
        for _, key in ipairs({ "val", "test" }) do
          local d, wins, ties, losses = {}, 0, 0, 0
          for _, s in ipairs(seeds) do
            local x = num(a[s][key]) - num(b[s][key])
            d[#d + 1] = x
            if math.abs(x) <= TIE then ties = ties + 1 elseif x > 0 then wins = wins + 1 else losses = losses + 1 end
          end
          local m, ci = mean_ci(d)
          cols[#cols + 1] = ci and ("%+.2f [%+.2f, %+.2f]"):format(100 * m, 100 * (m - ci), 100 * (m + ci))
            or ("%+.2f"):format(100 * m)
          cols[#cols + 1] = ("%d/%d/%d"):format(wins, ties, losses)
        end
        w("| %s vs %s | %d | %s | %s | %s | %s |", pair[1], pair[2], #seeds, cols[1], cols[2], cols[3], cols[4])
      end
    end
  end
  if not any then w("| (no pair of methods with a common seed yet) | | | | | |") end
  print(table.concat(lines, "\n"))
  io.stdout:flush()
end

-- ---- running ------------------------------------------------------------------------------

local function is_interrupt(err) return type(err) == "string" and err:find("interrupted!$") ~= nil end

--- The data the runner itself needs, once per process: the test set (for
-- the pbt methods' test accuracy) and the training labels and images (to
-- check the Python side's split).
local function dataset(task)
  return pbt.shared("compare/fashion-mnist/" .. task, function()
    local train, test = data.fashion_mnist{ flatten = TASKS[task].flatten }
    return { train = train, test = test }
  end)
end

local function test_accuracy(model, test)
  return pbt.no_grad(function()
    local correct = 0
    for xb, yb in data.batches(test.x, test.y, { batch_size = 500 }) do
      correct = correct + nn.accuracy(model(xb), yb) * xb:size(1)
    end
    return correct / test.x:size(1)
  end)
end

--- Lineage roots at the end, and the step at which all members first
-- shared one root (nil if never), from the exploit events; checked
-- against the schedules' roots.
local function lineage(r, population)
  local roots = {}
  for i = 1, population do roots[i] = i end
  local takeover
  for _, ev in ipairs(r.events) do
    if ev.kind == "exploit" and ev.other then
      roots[ev.member] = roots[ev.other]
      if not takeover then
        local one = true
        for i = 2, population do if roots[i] ~= roots[1] then one = false break end end
        if one then takeover = ev.step end
      end
    end
  end
  local distinct, n = {}, 0
  for i = 1, population do
    local s = r.schedules[i]
    if s.root ~= roots[i] then
      io.stderr:write(("compare: member %d: the exploit events give root %d, its schedule %s\n")
        :format(i, roots[i], tostring(s.root)))
    end
    if not distinct[s.root] then distinct[s.root] = true; n = n + 1 end
  end
  return n, takeover
end

local function run_pbt(o, method, seed)
  local task = TASKS[o.task]
  local e = pbt.load_experiment(task.file,
    { method = method, seed = seed, steps = o.steps, population = o.population })
  local t0 = pbt.clock()
  local r = e:run{ workers = o.workers }
  local seconds = pbt.clock() - t0
  -- the best state is the one scored: its validation accuracy again
  local again = e.eval(r.best.state, r.best.h)
  if math.abs(again - r.best.score) > TIE then
    io.stderr:write(("compare: the best member's state scores %.17g, the run reported %.17g\n")
      :format(again, r.best.score))
  end
  local roots, takeover = lineage(r, o.population)
  return {
    val = r.best.score, test = test_accuracy(r.best.state.model, dataset(o.task).test),
    seconds = seconds, minibatches = o.population * o.steps * task.step_batches,
    roots = roots, takeover = takeover, workers = o.workers,
  }
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- sum_i i * (label_i - 1) over the validation part of data.split's split
-- (the labels split by data.split itself), and the permutation it used.
local function split_check(task, seed)
  local d = dataset(task)
  local n = d.train.y:size(1)
  local _, _, yv = data.split(d.train.y, nil, { fraction = 0.1, generator = pbt.Generator(seed) })
  local nval = yv:size(1)
  local hash = ((yv:astype("float64") - 1) * pbt.tensor.arange(1, nval + 1, { dtype = "float64" })):sum():item()
  local perm = data.randperm(n, { generator = pbt.Generator(seed) }) -- what data.split draws
  local vfirst = d.train.x:select(1, math.tointeger(perm:get(1))):astype("float64"):sum():item()
  local tfirst = d.train.x:select(1, math.tointeger(perm:get(nval + 1))):astype("float64"):sum():item()
  -- the same permutation as data.split's: its validation labels agree
  local again = ((d.train.y:index_select(1, perm:narrow(1, 1, nval)):astype("float64") - 1)
    * pbt.tensor.arange(1, nval + 1, { dtype = "float64" })):sum():item()
  assert(again == hash, "data.randperm(n, Generator(seed)) is not the permutation data.split draws")
  return perm, { val_labels_hash = hash, val_first_sum = vfirst, train_first_sum = tfirst }
end

local function run_optuna(o, seed)
  local perm, check = split_check(o.task, seed)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(perm:tobytes()) -- float64, little-endian, 1-based
  f:close()
  local cmd = ("%s %s --task %s --seed %d --population %d --steps %d --perm %s"):format(PYTHON,
    shell_quote(root .. "/bench/compare_optuna.py"), o.task, seed, o.population, o.steps, shell_quote(path))
  local p = io.popen(cmd, "r")
  local okr, out = pcall(p.read, p, "a") -- (Ctrl-C: the file is removed all the same)
  local ok, how, code = p:close()
  os.remove(path)
  if not okr then error(out, 0) end
  if not ok then
    error(("%s ended with %s %s%s"):format(cmd, how, tostring(code),
      how == "exit" and code == 2 and " (its message is above)" or ""), 0)
  end
  local line = out:match("([^\n]+)\n*$")
  local okj, res = pcall(json.decode, line or "")
  if not okj or type(res) ~= "table" or type(res.val) ~= "number" then
    error(("%s printed no JSON result: %s"):format(cmd, out), 0)
  end
  for k, v in pairs(check) do
    local got = res.check and res.check[k]
    if type(got) ~= "number" or math.abs(got - v) > 1e-6 * math.max(1, math.abs(v)) then
      error(("the Python side's split differs from pbt's: %s = %s there, %.17g here")
        :format(k, tostring(got), v), 0)
    end
  end
  return {
    val = res.val, test = res.test, seconds = res.seconds, minibatches = math.tointeger(res.minibatches),
    trials = math.tointeger(res.trials), completed = math.tointeger(res.completed), workers = 2,
  }
end

-- ---- main ---------------------------------------------------------------------------------

local o = parse_args(arg)
local rows, cut = read_rows(o.out)
if o.summary then
  summary(rows, o.out)
  os.exit(0)
end
for _, r in ipairs(rows) do
  if r.task ~= o.task or tonumber(r.population) ~= o.population or tonumber(r.steps) ~= o.steps then
    die("%s holds results of task %s, population %s, %s steps, not of task %s, population %d, %d steps: "
      .. "give another --out", o.out, r.task, r.population, r.steps, o.task, o.population, o.steps)
  end
end
local done = {}
for _, r in ipairs(rows) do done[r.method .. "/" .. r.seed] = true end
o.workers = o.workers or pbt.core.threads.cpu_count()

local todo = {}
for _, seed in ipairs(o.seeds) do
  for _, m in ipairs(o.methods) do
    if not done[m .. "/" .. seed] then todo[#todo + 1] = { m, seed } end
  end
end
local dir = o.out:match("^(.*)/[^/]*$")
if #todo > 0 and dir and dir ~= "" then
  local fh = io.open(dir .. "/.", "r")
  if fh then fh:close() else os.execute("mkdir -p " .. shell_quote(dir)) end
end
print(("compare: %s, population %d, %d steps; %d cells to run, %d already in %s")
  :format(o.task, o.population, o.steps, #todo, #rows, o.out))
local failed = 0
for k, cell in ipairs(todo) do
  local method, seed = cell[1], cell[2]
  print(("[%d/%d] %s seed %d ..."):format(k, #todo, method, seed))
  io.stdout:flush()
  local ok, res = pcall(function()
    if method == "optuna" then return run_optuna(o, seed) end
    return run_pbt(o, method, seed)
  end)
  if not ok then
    if is_interrupt(res) then
      io.stderr:write(("compare: interrupted during %s seed %d (not written: run again to go on)\n"):format(method, seed))
      os.exit(130)
    end
    failed = failed + 1
    io.stderr:write(("compare: %s seed %d failed: %s\n"):format(method, seed, tostring(res)))
  else
    res.task, res.population, res.steps, res.method, res.seed = o.task, o.population, o.steps, method, seed
    append_row(o.out, res, cut)
    cut = false
    print(("[%d/%d] %s seed %d: validation %.2f%%, test %.2f%%, %.1f s"):format(k, #todo, method, seed,
      100 * res.val, 100 * res.test, res.seconds))
    summary((read_rows(o.out)), o.out)
  end
end
if failed > 0 then
  io.stderr:write(("compare: %d of %d cells failed (not written: run again to retry them)\n"):format(failed, #todo))
  os.exit(1)
end
