--- pbt: Population Based Training of neural networks, for Lua 5.4.
-- The C module pbt.core holds tensors, kernels and generators; this file is
-- the face that Lua scripts see.
local core = require("pbt.core")

local pbt = {
  _VERSION = "pbt scm",
  core = core,
  tensor = core.tensor,   -- constructors and functions: pbt.tensor.zeros(2, 3)
  Tensor = core.Tensor,   -- the methods of every tensor
  Generator = core.Generator,
  manual_seed = core.manual_seed,
  default_generator = core.default_generator,
  clock = core.clock,     -- monotonic seconds, for timing
  set_flush_denormal = core.set_flush_denormal, -- subnormal floats count as zero (x86-64)
  flush_denormal = core.flush_denormal,
  save = core.save,
  load = core.load,
  encode = core.encode,   -- pbt.save's bytes as a string; pbt.decode(bytes) reads them
  decode = core.decode,
}
pbt.T = pbt.tensor

-- autograd: t:requires_grad_(), t.grad, loss:backward(), pbt.no_grad(fn)
local autograd = require("pbt.autograd")
pbt.autograd = autograd
pbt.no_grad = autograd.no_grad
pbt.gradcheck = autograd.gradcheck
pbt.is_grad_enabled = core.is_grad_enabled
pbt.set_grad_enabled = core.set_grad_enabled
pbt.Tensor.backward = autograd.backward
-- pbt.tensor(...) builds a tensor from a nested table, as torch.tensor does
-- (the C module makes the table callable).

-- search spaces: pbt.uniform(lo, hi), pbt.loguniform, pbt.int, pbt.normal,
-- pbt.choice{...}, pbt.ordered{...}, pbt.fixed(v)
local space = require("pbt.space")
for _, name in ipairs({ "uniform", "loguniform", "int", "normal", "choice", "ordered", "fixed" }) do
  pbt[name] = space[name]
end

-- Submodules load on first use: pbt.nn, pbt.optim, pbt.data, pbt.stats,
-- pbt.select, pbt.explore, pbt.ready, pbt.exploit, pbt.json; and
-- pbt.experiment{...} / pbt.replay(...) from pbt.experiment.
local submodules = {
  nn = "pbt.nn", optim = "pbt.optim", data = "pbt.data", stats = "pbt.stats",
  select = "pbt.select", explore = "pbt.explore", ready = "pbt.ready",
  exploit = "pbt.exploit", json = "pbt.json", svg = "pbt.svg",
  population = "pbt.population", space = "pbt.space",
}
local from_experiment = { experiment = true, replay = true, load_experiment = "load" }
-- pbt.load_run(dir [, experiment]): what a run left in dir (its run.db)
function pbt.load_run(...) return require("pbt.scheduler").load_run(...) end
-- pbt.shared(name, loader): data loaded once per process, shared by workers
pbt.shared = require("pbt.shared").shared
setmetatable(pbt, {
  __index = function(t, k)
    local name = submodules[k]
    if name then
      local m = require(name)
      rawset(t, k, m)
      return m
    end
    local field = from_experiment[k]
    if field then
      local f = require("pbt.experiment")[field == true and k or field]
      rawset(t, k, f)
      return f
    end
  end,
})

return pbt
