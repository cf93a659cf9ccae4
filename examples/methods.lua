-- examples/methods.lua -- the search methods of the comparison (bench/compare.lua,
-- README "Does pbt find better models?"), shared by the experiment files
-- examples/fashion_pbt.lua and examples/fashion_cnn_pbt.lua:
--   local exploit, explore = dofile(here .. "/methods.lua")(pbt, method, "fashion_pbt")
-- Each method gives the exploit and explore rules; an unknown name is an
-- error listing the known ones.
local METHODS = {
  -- the paper's truncation (bottom 25% copy the top 25%) and Ray Tune's explore
  pbt = function(pbt) return pbt.exploit.truncation{ fraction = 0.25 }, pbt.explore.perturb_or_resample{} end,
  -- the paper's t-test exploit
  ttest = function(pbt) return pbt.exploit.ttest{}, pbt.explore.perturb_or_resample{} end,
  pb2 = function(pbt) return pbt.exploit.truncation{ fraction = 0.25 }, pbt.explore.pb2{} end,
  -- the same population with no exploit and no explore
  random = function() return function() return nil end, function(h) return h end end,
  -- the remedies for PBT's greed
  smooth = function(pbt)
    return pbt.exploit.truncation{ fraction = 0.25, smooth = 4 }, pbt.explore.perturb_or_resample{}
  end,
  floor = function(pbt)
    return pbt.exploit.truncation{ fraction = 0.25, min_lineages = 3 }, pbt.explore.perturb_or_resample{}
  end,
}

return function(pbt, method, who)
  local rules = METHODS[method]
  if not rules then
    local names = {}
    for k in pairs(METHODS) do names[#names + 1] = k end
    table.sort(names)
    error(("%s: unknown method '%s' (one of %s)"):format(who, tostring(method), table.concat(names, ", ")), 0)
  end
  return rules(pbt)
end
