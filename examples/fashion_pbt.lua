-- examples/fashion_pbt.lua -- Population Based Training on Fashion-MNIST.
--
-- A population of 8 MLPs (784-256-10) tunes the learning rate, momentum and
-- weight decay of SGD and the batch size (a categorical choice) while they
-- train; the same population trained for the same number of steps with no
-- exploit and no explore (random search) is the baseline.  Prints both
-- validation accuracies, the test accuracy of each winner and the PBT
-- winner's hyperparameter schedule; the PBT run's files (events.jsonl,
-- scores.csv, schedule.json, best.pbt and the SVG pictures) go to OUT_DIR.
--
--   make run                                       (the README's main job)
--   lua5.4 examples/fashion_pbt.lua [OUT_DIR] [SEED]
--   PBT_STEPS=40 lua5.4 examples/fashion_pbt.lua ...   (a longer budget: 16 steps by default)
--   PBT_WORKERS=1 lua5.4 examples/fashion_pbt.lua ...  (worker threads: the cores by default)
--   lua5.4 lua/pbt/cli.lua run examples/fashion_pbt.lua --out DIR   (PBT only)
--
-- The file is also the experiment file: loaded with pbt.load_experiment(path,
-- {method = m, seed = s, steps = n, population = p}) (or by `pbt run`, which
-- means PBT with seed 1) it returns the experiment, and every worker thread
-- loads it so.  The data set is loaded once per process with pbt.shared.
-- Its arguments, all optional:
--   method      "pbt" (default: truncation 25% + perturb_or_resample),
--               "ttest" (Welch's t-test exploit + perturb_or_resample),
--               "pb2" (truncation 25% + pbt.explore.pb2), "random" (no
--               exploit, no explore: random search), "smooth", "floor"; see
--               examples/methods.lua
--   pbt         true|false, the older form: false means method "random"
--   seed        the experiment's seed and the validation split's (1)
--   steps       steps per member (PBT_STEPS or 16)
--   population  members (8)
-- bench/compare.lua runs every method over many seeds.
--
-- Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
if not package.loaded.pbt and not pcall(require, "pbt") then
  -- run from a checkout: use its lua/ and build/ (found from this file's path)
  local root = (arg and arg[0] or ""):match("^(.*)/examples/[^/]*$") or "."
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/?.so;" .. package.cpath
end
local pbt = require("pbt")
local nn, optim, data, T = pbt.nn, pbt.optim, pbt.data, pbt.tensor

local args = ...
local as_script = type(args) ~= "table" and arg and arg[0] and arg[0]:match("fashion_pbt%.lua$")
args = type(args) == "table" and args or {}
local out_dir = as_script and arg[1] or "runs/fashion_pbt"
local seed = as_script and tonumber(arg[2]) or args.seed or 1
local steps = args.steps or tonumber(os.getenv("PBT_STEPS") or "16")
local population = args.population or 8

-- the data, once per process: a validation split of the training set
-- scores the members; the test set is only used to report the winners
local d = pbt.shared("fashion-mnist/" .. seed, function()
  local train, test = data.fashion_mnist()
  local xt, yt, xv, yv = data.split(train.x, train.y, { fraction = 0.1, generator = pbt.Generator(seed) })
  return { x_train = xt, y_train = yt, x_val = xv, y_val = yv, test = test }
end)
local x_train, y_train, x_val, y_val, test = d.x_train, d.y_train, d.x_val, d.y_val, d.test

local STEP_BATCHES = 100 -- minibatches per PBT step

-- the methods (pbt, ttest, pb2, random, smooth, floor): examples/methods.lua
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local methods = dofile(here .. "/methods.lua")

local function experiment(method)
  local exploit, explore = methods(pbt, method, "fashion_pbt")
  return pbt.experiment{
    name = "fashion " .. method, population = population, seed = seed, mode = "max", sync = true,
    space = {
      lr = pbt.loguniform(1e-3, 0.5),
      momentum = pbt.uniform(0, 0.99),
      weight_decay = pbt.loguniform(1e-6, 1e-2),
      batch_size = pbt.choice{ 16, 32, 64, 128, 256 },
    },
    init = function(h, g)
      local model = nn.Sequential(
        nn.Linear(784, 256, { generator = g }), nn.ReLU(),
        nn.Linear(256, 10, { generator = g }))
      return { model = model, opt = optim.SGD(model:parameters(), { lr = h.lr }) }
    end,
    step = function(state, h, g)
      local opt, model = state.opt, state.model
      opt.lr, opt.momentum, opt.weight_decay = h.lr, h.momentum, h.weight_decay
      local order = data.randperm(x_train:size(1), { generator = g })
      for b = 0, STEP_BATCHES - 1 do
        local idx = order:narrow(1, (b * h.batch_size) % (x_train:size(1) - h.batch_size) + 1,
          h.batch_size)
        opt:zero_grad(false) -- zeroes the kept gradients: backward adds into them
        local loss = nn.cross_entropy(model(x_train:index_select(1, idx)), y_train:index_select(1, idx))
        loss:backward()
        opt:step()
      end
    end,
    eval = function(state)
      return pbt.no_grad(function() return nn.accuracy(state.model(x_val), y_val) end)
    end,
    ready = pbt.ready.every(2),
    exploit = exploit,
    explore = explore,
    budget = { steps = steps },
  }
end

if not as_script then
  local method = args.method or (args.pbt == false and "random" or "pbt")
  if args.pbt == false and method ~= "random" then
    error(("fashion_pbt: pbt = false (random search) and method = '%s' disagree"):format(method), 0)
  end
  return experiment(method)
end

local function test_accuracy(state)
  return pbt.no_grad(function() return nn.accuracy(state.model(test.x), test.y) end)
end

-- script mode (`make run`): the headline comparison of the README on a small
-- budget, one seed: PBT (its run directory written), PB2, random search,
-- and Optuna's TPE with the Hyperband pruner on PyTorch through
-- bench/compare.lua when Debian's python3-optuna and python3-torch are there
local results = {}
local workers = tonumber(os.getenv("PBT_WORKERS") or "") or pbt.core.threads.cpu_count()
local root = arg[0]:match("^(.*)/examples/[^/]*$") or "."
print(("Fashion-MNIST, %d members, %d steps of %d minibatches, seed %d, %d worker threads")
  :format(population, steps, STEP_BATCHES, seed, workers))
print(("%-34s %10s %8s %6s"):format("method", "validation", "test", "wall"))
local function line(name, val, test_acc, secs)
  print(("%-34s %9.2f%% %7.2f%% %4.0f s"):format(name, 100 * val, 100 * test_acc, secs))
end
for _, m in ipairs({ { "PBT (truncation, Ray's explore)", "pbt", out_dir }, { "PB2", "pb2" },
    { "random search", "random" } }) do
  local t0 = pbt.clock()
  local e = pbt.load_experiment(arg[0], { method = m[2], seed = seed, steps = steps, population = population })
  -- (each run of this script starts its comparison again in its directory)
  local r = e:run{ out = m[3], workers = workers, overwrite = m[3] ~= nil or nil, progress = false }
  results[m[2]] = r
  line(m[1], r.best.score, test_accuracy(r.best.state), pbt.clock() - t0)
end

local have = os.execute("/usr/bin/python3 -c 'import optuna, torch' >/dev/null 2>&1")
if have then
  local csv = os.tmpname()
  os.remove(csv)
  local cmd = ("lua5.4 %q --task mlp --population %d --steps %d --seeds %d --methods optuna --out %q >%q.log 2>&1")
    :format(root .. "/bench/compare.lua", population, steps, seed, csv, csv)
  local ok = os.execute(cmd)
  local f = io.open(csv)
  local header, row = f and f:read("l"), f and f:read("l")
  if f then f:close() end
  if ok and header and row then
    local cols, k = {}, 0
    for name in header:gmatch("[^,]+") do k = k + 1; cols[name] = k end
    local vals, j = {}, 0
    for v in (row .. ","):gmatch("([^,]*),") do j = j + 1; vals[j] = v end
    line("Optuna TPE + Hyperband (PyTorch)", tonumber(vals[cols.val]), tonumber(vals[cols.test]),
      tonumber(vals[cols.seconds]))
  else
    print("Optuna TPE + Hyperband: bench/compare.lua failed (" .. csv .. ".log says why)")
  end
  os.remove(csv)
  if ok then os.remove(csv .. ".log") end
else
  print("Optuna TPE + Hyperband: skipped (needs Debian's python3-optuna and python3-torch; `make run` installs them as root)")
end
print("One seed on a small budget: a single seed's figures differ between machines (exploit decisions")
print("amplify the BLAS kernels' rounding); the README's tables average 10-20 seeds (bench/compare.lua).")

print("the PBT winner's hyperparameter schedule (from step s on; a step is "
  .. STEP_BATCHES .. " minibatches):")
for _, entry in ipairs(results.pbt.best.schedule) do
  local h = entry.h
  print(("  step %3d: lr %.4g  momentum %.3f  weight_decay %.3g  batch_size %d")
    :format(entry.step, h.lr, h.momentum, h.weight_decay, h.batch_size))
end
print("run directory: " .. out_dir)
