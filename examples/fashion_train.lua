-- examples/fashion_train.lua -- one network trained on Fashion-MNIST with SGD
-- and momentum (lr 0.05 decaying linearly to 0 over the run, set through
-- opt.lr before each step, as PBT does); prints the training loss and the
-- test accuracy after each epoch, and the seconds each epoch took.
--   mlp  784-256-10
--   cnn  conv 1->16 3x3 pad 1, ReLU, max-pool 2, conv 16->32 3x3 pad 1, ReLU,
--        max-pool 2, flatten, linear 32*7*7 -> 128, ReLU, linear 128 -> 10
--
--   make && lua5.4 examples/fashion_train.lua mlp|cnn [epochs=3]
--
-- Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
if not package.loaded.pbt and not pcall(require, "pbt") then
  -- run from a checkout: use its lua/ and build/ (found from this file's path)
  local root = (arg and arg[0] or ""):match("^(.*)/examples/[^/]*$") or "."
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
  package.cpath = root .. "/build/?.so;" .. package.cpath
end
local pbt = require("pbt")
local nn, optim, data = require("pbt.nn"), require("pbt.optim"), require("pbt.data")

local NETS = {
  mlp = { flatten = true, eval_batch = 1000, name = "MLP 784-256-10", build = function(g)
    return nn.Sequential(nn.Linear(784, 256, { generator = g }), nn.ReLU(), nn.Linear(256, 10, { generator = g }))
  end },
  cnn = { flatten = false, eval_batch = 500, name = "CNN", build = function(g)
    return nn.Sequential(
      nn.Conv2d(1, 16, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(16, 32, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(32 * 7 * 7, 128, { generator = g }), nn.ReLU(),
      nn.Linear(128, 10, { generator = g }))
  end },
}
local net = NETS[arg[1] or ""]
if not net then
  io.stderr:write("usage: lua5.4 examples/fashion_train.lua mlp|cnn [epochs=3]\n")
  os.exit(2)
end
local epochs = tonumber(arg[2]) or 3
local g = pbt.Generator(1)
local train, test = data.fashion_mnist({ flatten = net.flatten })

local model = net.build(g)
local lr0, batch_size = 0.05, 64
local opt = optim.SGD(model:parameters(), { lr = lr0, momentum = 0.9 })
local steps = epochs * ((train.x:size(1) + batch_size - 1) // batch_size)
local step = 0

--- Test accuracy, in batches without recording the graph.
local function evaluate()
  model:eval()
  local correct, n = 0, 0
  pbt.no_grad(function()
    for xb, yb in data.batches(test.x, test.y, { batch_size = net.eval_batch }) do
      correct = correct + nn.accuracy(model(xb), yb) * xb:size(1)
      n = n + xb:size(1)
    end
  end)
  model:train()
  return correct / n
end

print(("%s, %d parameters, SGD lr %g (linear decay) momentum %g, batch %d")
  :format(net.name, model:num_parameters(), lr0, opt.momentum, batch_size))
for epoch = 1, epochs do
  local t0, total, batches = pbt.clock(), 0, 0
  for xb, yb in data.batches(train.x, train.y,
      { batch_size = batch_size, shuffle = true, generator = g }) do
    opt.lr = lr0 * (1 - step / steps)
    step = step + 1
    opt:zero_grad(false) -- zeroes the kept gradients: backward adds into them
    local loss = nn.cross_entropy(model(xb), yb)
    loss:backward()
    opt:step()
    total, batches = total + loss:item(), batches + 1
  end
  local secs = pbt.clock() - t0
  print(("epoch %d  loss %.4f  test accuracy %.2f%%  (%.1f s)")
    :format(epoch, total / batches, 100 * evaluate(), secs))
end
