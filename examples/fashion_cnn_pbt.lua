-- examples/fashion_cnn_pbt.lua -- Population Based Training of a small CNN on
-- Fashion-MNIST (the network of examples/fashion_train.lua cnn).
--
-- A population of 8 CNNs tunes the learning rate, momentum and weight decay
-- of SGD and the batch size while they train.  To keep a run short the
-- members train on the first 12000 images of the training part of a 90/10
-- split of the training set and are scored on the first 3000 images of its
-- validation part; a step is 50 minibatches, the budget 20 steps (1000
-- minibatches, about 5 epochs of the 12000 images at batch 64).
--
--   lua5.4 examples/fashion_cnn_pbt.lua [SEED]   (PBT, then random search, no run directory)
--   lua5.4 lua/pbt/cli.lua run examples/fashion_cnn_pbt.lua --out DIR
--
-- The experiment file: loaded with pbt.load_experiment(path, {method = m,
-- seed = s, steps = n, population = p}) it returns the experiment (every
-- worker thread loads it so); the data set is loaded once per process with
-- pbt.shared.  Its arguments, all optional:
--   method      "pbt" (default: truncation 25% + perturb_or_resample),
--               "ttest" (Welch's t-test exploit + perturb_or_resample),
--               "pb2" (truncation 25% + pbt.explore.pb2), "random" (no
--               exploit, no explore: random search), "smooth", "floor"; see
--               examples/methods.lua
--   seed        the experiment's seed and the validation split's (1)
--   steps       steps per member (PBT_STEPS or 20)
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
local nn, optim, data = pbt.nn, pbt.optim, pbt.data

local args = ...
local as_script = type(args) ~= "table" and arg and arg[0] and arg[0]:match("fashion_cnn_pbt%.lua$")
args = type(args) == "table" and args or {}
local seed = as_script and tonumber(arg[1]) or args.seed or 1
local steps = args.steps or tonumber(os.getenv("PBT_STEPS") or "20")
local population = args.population or 8

local TRAIN, VAL = 12000, 3000 -- the images the members train on and are scored on
local STEP_BATCHES = 50        -- minibatches per PBT step

-- the data, once per process: the subsets are copies, so that the full
-- training set is not kept alive by views of it
local d = pbt.shared("fashion-mnist-cnn/" .. seed, function()
  local train, test = data.fashion_mnist{ flatten = false } -- x [N,1,28,28]
  local xt, yt, xv, yv = data.split(train.x, train.y, { fraction = 0.1, generator = pbt.Generator(seed) })
  return {
    x_train = xt:narrow(1, 1, TRAIN):clone(), y_train = yt:narrow(1, 1, TRAIN):clone(),
    x_val = xv:narrow(1, 1, VAL):clone(), y_val = yv:narrow(1, 1, VAL):clone(),
    test = test,
  }
end)
local x_train, y_train, x_val, y_val, test = d.x_train, d.y_train, d.x_val, d.y_val, d.test

--- Accuracy of model on (x, y) in batches of 500, without recording the
-- graph (the model has no dropout nor batch norm: train/eval modes are the same).
local function accuracy(model, x, y)
  return pbt.no_grad(function()
    local correct = 0
    for xb, yb in data.batches(x, y, { batch_size = 500 }) do
      correct = correct + nn.accuracy(model(xb), yb) * xb:size(1)
    end
    return correct / x:size(1)
  end)
end

-- the methods (pbt, ttest, pb2, random, smooth, floor): examples/methods.lua
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local methods = dofile(here .. "/methods.lua")

local function experiment(method)
  local exploit, explore = methods(pbt, method, "fashion_cnn_pbt")
  return pbt.experiment{
    name = "fashion cnn " .. method, population = population, seed = seed, mode = "max", sync = true,
    space = {
      lr = pbt.loguniform(1e-3, 0.3),
      momentum = pbt.uniform(0, 0.99),
      weight_decay = pbt.loguniform(1e-6, 1e-2),
      batch_size = pbt.choice{ 32, 64, 128 },
    },
    init = function(h, g)
      local model = nn.Sequential(
        nn.Conv2d(1, 16, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128, { generator = g }), nn.ReLU(),
        nn.Linear(128, 10, { generator = g }))
      return { model = model, opt = optim.SGD(model:parameters(), { lr = h.lr }) }
    end,
    step = function(state, h, g)
      local opt, model = state.opt, state.model
      opt.lr, opt.momentum, opt.weight_decay = h.lr, h.momentum, h.weight_decay
      local n, bs = x_train:size(1), h.batch_size
      local order = data.randperm(n, { generator = g })
      for b = 0, STEP_BATCHES - 1 do
        local idx = order:narrow(1, (b * bs) % (n - bs) + 1, bs)
        opt:zero_grad(false) -- zeroes the kept gradients: backward adds into them
        local loss = nn.cross_entropy(model(x_train:index_select(1, idx)), y_train:index_select(1, idx))
        loss:backward()
        opt:step()
      end
    end,
    eval = function(state) return accuracy(state.model, x_val, y_val) end,
    ready = pbt.ready.every(2),
    exploit = exploit,
    explore = explore,
    budget = { steps = steps },
  }
end

if not as_script then return experiment(args.method or "pbt") end

-- script mode: PBT, then random search, each on the cores, no run directory
local workers = tonumber(os.getenv("PBT_WORKERS") or "") or pbt.core.threads.cpu_count()
for _, method in ipairs({ "pbt", "random" }) do
  local t0 = pbt.clock()
  local r = pbt.load_experiment(arg[0], { method = method, seed = seed }):run{ workers = workers }
  print(("%-6s best validation accuracy %.2f%% (member %d), test accuracy %.2f%%, %.0f s")
    :format(method, 100 * r.best.score, r.best.member, 100 * accuracy(r.best.state.model, test.x, test.y),
      pbt.clock() - t0))
end
