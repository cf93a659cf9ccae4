-- examples/toy.lua -- the toy problem of the PBT paper (Jaderberg et al.
-- 2017, Figure 2).
--
-- Maximise Q(theta) = 1.2 - (theta1^2 + theta2^2) when each worker can only
-- follow the surrogate Qhat(theta | h) = 1.2 - (h1 theta1^2 + h2 theta2^2) by
-- gradient ascent.  Two workers start at theta = [0.9, 0.9] with h = [1, 0]
-- and h = [0, 1]; 200 steps of size 0.01; ready every 5 steps; exploit
-- copies the better worker (weights and hyperparameters); explore adds
-- N(0, 0.1^2) noise to h.  Four methods over 20 seeds: PBT, explore only,
-- exploit only and grid search (neither).
--
--   lua5.4 examples/toy.lua [out_dir]      (default out_dir: /tmp/pbt-toy)
if not package.loaded.pbt then -- run from a checkout: use its lua/ and build/
  package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
  package.cpath = "./build/?.so;" .. package.cpath
end
local pbt = require("pbt")
local T = pbt.tensor

-- the output directory, when run as a script (not when loaded by a spec)
local out = (arg and arg[0] and arg[0]:match("toy%.lua$") and arg[1]) or "/tmp/pbt-toy"

local function toy(method, seed)
  local exploit, explore = method == "pbt" or method == "exploit only",
    method == "pbt" or method == "explore only"
  return pbt.experiment{
    name = "toy " .. method, population = 2, seed = seed, mode = "max",
    space = { h1 = pbt.normal(0, 1), h2 = pbt.normal(0, 1) }, -- unbounded
    initial = { { h1 = 1.0, h2 = 0.0 }, { h1 = 0.0, h2 = 1.0 } },
    init = function() return { theta = T.full({ 2 }, 0.9, { dtype = "float64" }) } end,
    step = function(state, h)
      -- gradient ascent on Qhat: theta_k += 0.01 * (-2 h_k theta_k)
      state.theta:mul_(T({ 1 - 0.02 * h.h1, 1 - 0.02 * h.h2 }, { dtype = "float64" }))
    end,
    eval = function(state) return 1.2 - (state.theta * state.theta):sum():item() end,
    ready = pbt.ready.every(5),
    exploit = exploit and pbt.exploit.truncation{ fraction = 0.5 } or function() return nil end,
    explore = explore and function(h, _, g)
      return { h1 = h.h1 + g:normal(0, 0.1), h2 = h.h2 + g:normal(0, 0.1) }
    end or function(h) return h end,
    explore_always = not exploit and explore, -- explore only: every ready decision
    budget = { steps = 200 },
  }
end

local methods = { "pbt", "explore only", "exploit only", "grid" }
local finals, curves = {}, {}
for _, method in ipairs(methods) do
  finals[method] = {}
  for seed = 1, 20 do
    local result = toy(method, seed):run({ progress = false })
    finals[method][seed] = result.best.score
    if seed == 1 then
      -- the best Q of the population at each step
      local best = {}
      for _, scores in ipairs(result.scores) do
        for _, s in ipairs(scores) do best[s[1]] = math.max(best[s[1]] or -math.huge, s[2]) end
      end
      local pts = {}
      for step = 1, 200 do if best[step] then pts[#pts + 1] = { step, best[step] } end end
      curves[#curves + 1] = { name = method, points = pts }
    end
  end
end

local function median(xs)
  local s = { table.unpack(xs) }
  table.sort(s)
  return (s[#s // 2] + s[#s // 2 + 1]) / 2
end

print("final Q after 200 steps (the maximum is 1.2), over seeds 1..20:")
print(("%-14s %8s %8s %8s"):format("method", "median", "min", "max"))
for _, method in ipairs(methods) do
  local f = finals[method]
  print(("%-14s %8.4f %8.4f %8.4f"):format(method, median(f), math.min(table.unpack(f)),
    math.max(table.unpack(f))))
end

assert(pbt.core.mkdir(out))
local ok, err = pbt.core.write_file(out .. "/toy.svg", pbt.svg.lines{
  title = "PBT toy problem (seed 1): best Q of the population",
  xlabel = "step", ylabel = "Q", series = curves })
if not ok then error(err) end
print("picture: " .. out .. "/toy.svg")

return finals
