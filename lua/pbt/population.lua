--- pbt.population: the population store (the C core's pbt.Population) and a
-- few conveniences written in Lua.
--
--   local population = require("pbt.population")
--   local pop = population.new{size = 8, window = 10, hparams = {
--     {name = "lr", kind = "float"}, {name = "bs", kind = "int"},
--     {name = "opt", kind = "choice", choices = {"sgd", "adam"}}}}
--   pop:set_states(i, {["fc1.weight"] = w, ["fc1.bias"] = b, step = 0})
--   pop:report(i, score, step); pop:exploit(worst, best)
--
-- Members are 1-based.  A state tensor is shared with the tensor it was set
-- from (the model's parameters ARE the member's state), so exploit writes
-- straight into the recipient's model.  See csrc/pbt_population.h for what
-- exploit copies and the locking rules.
local core = require("pbt.core").population

local M = {
  new = core.new,
  Population = core.methods(),
}
local Population = M.Population

--- pop:set_states(i, t): set_state for every name → tensor or number of t,
-- in sorted name order (so registration order does not depend on pairs).
function Population:set_states(i, t)
  local names = {}
  for name in pairs(t) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do self:set_state(i, name, t[name]) end
end

--- pop:states(i) -> {name = tensor or number}, tensors sharing the member's
-- storage.
function Population:states(i)
  local out = {}
  for _, name in ipairs(self:state_names(i)) do out[name] = self:get_state(i, name) end
  return out
end

--- pop:set_hparams(i, h): set_hparam for every name of h.
function Population:set_hparams(i, h)
  for name, v in pairs(h) do self:set_hparam(i, name, v) end
end

--- for ev in pop:each_event([from]) do ... end: the events from sequence
-- number `from` on, read in batches so that events logged during the loop
-- are seen too.
function Population:each_event(from)
  local batch, k, nexts = {}, 0, from or 1
  return function()
    k = k + 1
    if batch[k] == nil then
      batch, k = self:events(nexts), 1
      if batch[1] == nil then return nil end
      nexts = batch[#batch].seq + 1
    end
    return batch[k]
  end
end

return M
