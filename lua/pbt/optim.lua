--- pbt.optim: SGD, Adam, AdamW and RMSprop, with the semantics (and the
-- numbers) of PyTorch's torch.optim.
--
--   local opt = pbt.optim.Adam(model:parameters(), { lr = 1e-3 })
--   loss:backward(); opt:step(); opt:zero_grad()
--
-- Hyperparameters are plain fields of the optimizer (`opt.lr = 0.01`,
-- `opt.betas = {0.8, 0.99}`); a change takes effect at the next step(),
-- which validates them again.  Each parameter is updated by one fused C pass
-- (pbt.core.optim) that reads its .grad and writes the parameter and its
-- state buffers.  state_dict()/load_state_dict() copy the hyperparameters
-- and the per-parameter state (step counts and buffers), so that PBT's
-- exploit can copy a member's optimizer whole.
local core = require("pbt.core")
local C = core.optim
local T = core.tensor

local zeros_like = T.zeros_like
local sgd_steps, adam_step, rmsprop_step = C.sgd_steps, C.adam_step, C.rmsprop_step
local zero_grads, check_params = C.zero_grads, C.check_params
local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local math_type, fmt = math.type, string.format

local M = {}

local is_tensor = require("pbt.autograd").is_tensor
local released = core.is_released

local function num(v)
  if math_type(v) == "integer" then return tostring(v) end
  return fmt("%.14g", v)
end

local shape_of = require("pbt.autograd").shape_str
local function shape_str(t) return shape_of(t:shape()) end

-- ---- hyperparameters ---------------------------------------------------------

-- Checks of one hyperparameter: return nil when v is fine, else the message
-- (without the optimizer's name).
local kinds = {}

function kinds.nonneg(name, v)
  if type(v) ~= "number" then return fmt("%s must be a number, got %s", name, type(v)) end
  if not (v >= 0) then return fmt("%s must be >= 0, got %s", name, num(v)) end
end

function kinds.number(name, v)
  if type(v) ~= "number" or v ~= v then
    return fmt("%s must be a number, got %s", name, type(v) == "number" and "nan" or type(v))
  end
end

function kinds.boolean(name, v)
  if type(v) ~= "boolean" then return fmt("%s must be a boolean, got %s", name, type(v)) end
end

function kinds.betas(name, v)
  if type(v) ~= "table" or #v ~= 2 then
    return fmt("%s must be a table of two numbers, got %s", name,
               type(v) == "table" and fmt("a table of length %d", #v) or type(v))
  end
  for i = 1, 2 do
    local b = v[i]
    if type(b) ~= "number" then return fmt("%s[%d] must be a number, got %s", name, i, type(b)) end
    if not (b >= 0 and b < 1) then return fmt("%s[%d] must be in [0, 1), got %s", name, i, num(b)) end
  end
end

local function copy_value(v)
  if type(v) == "table" then return { v[1], v[2] } end
  return v
end

-- ---- the shared methods -----------------------------------------------------------

local Optimizer = {}
Optimizer.__index = Optimizer

-- Raises "<Name>: <message>" unless every hyperparameter in h is valid.
local function validate(class, h, prefix)
  for _, f in ipairs(class.fields) do
    local msg = kinds[f.kind](f.name, h[f.name])
    if msg then error(class.name .. ": " .. (prefix or "") .. msg, 0) end
  end
  local msg = class.extra_check and class.extra_check(h)
  if msg then error(class.name .. ": " .. (prefix or "") .. msg, 0) end
end

-- Calls fn(p, g, st, i) for every parameter p that has a grad g (st: its
-- state, nil before its first update), once every parameter, grad and state
-- buffer has been checked: a bad one updates nothing.
local function each_grad(self, fn)
  local state = self.state
  check_params(self.name, self.params, state) -- C: SGD's step makes the same checks
  for i, p in ipairs(self.params) do
    local g = p.grad
    if g then fn(p, g, state[i], i) end
  end
end

local function new(class, params, opts)
  local name = class.name
  if type(params) ~= "table" or is_tensor(params) then
    error(fmt("%s: params must be an array of tensors, got %s", name,
              is_tensor(params) and "a tensor" or type(params)), 0)
  end
  if #params == 0 then error(name .. ": params is empty", 0) end
  local self = { params = {}, state = {} }
  local seen = {}
  for i, p in ipairs(params) do
    if not is_tensor(p) then
      error(fmt("%s: params[%d] is not a pbt.Tensor (got %s)", name, i, type(p)), 0)
    end
    if released(p) then error(fmt("%s: params[%d] has been released", name, i), 0) end
    if p.grad_fn ~= nil then
      error(fmt("%s: params[%d] is not a leaf tensor (it was computed by %s)", name, i,
                tostring(p.grad_fn.op)), 0)
    end
    if seen[p] then
      error(fmt("%s: params[%d] is the same tensor as params[%d]", name, i, seen[p]), 0)
    end
    seen[p] = i
    self.params[i] = p
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(fmt("%s: options must be a table, got %s", name, type(opts)), 0)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not class.known[k] then error(require("pbt.options").unknown(name, "option", k, class.known), 0) end
  end
  for _, f in ipairs(class.fields) do
    local v = opts[f.name]
    if v == nil then
      v = f.default
      if v == nil then error(fmt("%s: %s is required", name, f.name), 0) end
    end
    local msg = kinds[f.kind](f.name, v) -- before copy_value keeps two betas
    if msg then error(name .. ": " .. msg, 0) end
    self[f.name] = copy_value(v)
  end
  validate(class, self)
  return setmetatable(self, class)
end

--- opt:zero_grad([set_to_none = true]): drops every parameter's .grad, as
-- PyTorch does by default; or, with false, fills each existing .grad with
-- zeros and keeps it.  Kept gradients are the faster choice in a training
-- loop: the next backward adds into the same buffers (nn.Linear's weight
-- gradient straight from the GEMM, beta = 1) instead of making new ones
-- that the collector must free and the next step must fault in.  As in
-- PyTorch, a kept zero gradient is still a gradient: a parameter that the
-- next backward does not reach is updated with it (momentum, weight decay).
function Optimizer:zero_grad(set_to_none)
  if set_to_none ~= nil and type(set_to_none) ~= "boolean" then
    error(fmt("%s: zero_grad's set_to_none must be a boolean, got %s", self.name,
              type(set_to_none)), 0)
  end
  -- in C: every parameter (and kept grad) checked before any is changed
  zero_grads(self.name, self.params, set_to_none ~= false)
end

--- opt:materialize(): makes every parameter's state now, as the first
-- step would (step = 0, each buffer a tensor of zeros), so that the
-- optimizer's whole state is a fixed set of tensors and numbers from the
-- start (PBT's store keeps it that way).  A buffer whose first step must
-- start from the gradient instead of from zeros (SGD's momentum_buffer)
-- gets a flag `<buffer>_ready = false` that the step turns true.  Updates
-- after materialize() give the same numbers as without it, and
-- load_state_dict() keeps the whole state (what sd lacks becomes step 0 and
-- zero buffers).  Returns self.
function Optimizer:materialize()
  local state, init_flags = self.state, getmetatable(self).init_flags or {}
  for i, p in ipairs(self.params) do
    local st = state[i]
    if not st then st = { step = 0 }; state[i] = st end
    for _, b in ipairs(self.buffers) do
      if st[b] == nil then
        st[b] = zeros_like(p)
        if init_flags[b] then st[b .. "_ready"] = false end
      end
    end
  end
  self.materialized = true
  return self
end

--- opt:state_dict(): { <hyperparameters>, state = { [i] = { step = n,
-- <buffer> = tensor, ... } } } with the buffers cloned; state[i] is absent
-- for a parameter that has not been updated yet.
function Optimizer:state_dict()
  local sd, state = {}, {}
  for _, f in ipairs(self.fields) do sd[f.name] = copy_value(self[f.name]) end
  for i, st in pairs(self.state) do
    if st.step > 0 then -- a materialized state that never stepped is no state
      local e = { step = st.step }
      for _, b in ipairs(self.buffers) do
        if st[b] and st[b .. "_ready"] ~= false then e[b] = st[b]:clone() end
      end
      state[i] = e
    end
  end
  sd.state = state
  return sd
end

-- The first key of t (in sorted order, so that errors are reproducible)
-- that ok() refuses, as a string; nil when there is none.
local function unexpected(t, ok)
  local bad
  for k in pairs(t) do
    if not ok(k) then
      local s = tostring(k)
      if bad == nil or s < bad then bad = s end
    end
  end
  return bad
end

--- opt:load_state_dict(sd): sets the hyperparameters from sd and copies its
-- state into this optimizer's buffers (reusing them when they exist).
-- Everything is checked before anything changes; a missing, unexpected or
-- mis-shaped entry is an error naming it.
function Optimizer:load_state_dict(sd)
  local name, class = self.name, getmetatable(self)
  local pre = "load_state_dict: "
  if type(sd) ~= "table" then
    error(fmt("%s: %sexpected a table, got %s", name, pre, type(sd)), 0)
  end
  local bad = unexpected(sd, function(k) return k == "state" or class.known[k] end)
  if bad then error(fmt("%s: %sunexpected entry '%s'", name, pre, bad), 0) end
  for _, f in ipairs(self.fields) do
    if sd[f.name] == nil then error(fmt("%s: %smissing '%s'", name, pre, f.name), 0) end
  end
  validate(class, sd, pre)
  local state, params = sd.state, self.params
  if type(state) ~= "table" then
    error(fmt("%s: %s%s 'state'", name, pre, state == nil and "missing" or "expected a table in"), 0)
  end
  local allowed = { step = true }
  for _, b in ipairs(self.buffers) do allowed[b] = true end
  for i, e in pairs(state) do
    local p = math_type(i) == "integer" and params[i]
    if not p then
      error(fmt("%s: %sstate[%s] does not match a parameter (there are %d)", name, pre,
                tostring(i), #params), 0)
    end
    if type(e) ~= "table" then
      error(fmt("%s: %sstate[%d] must be a table, got %s", name, pre, i, type(e)), 0)
    end
    bad = unexpected(e, function(k) return allowed[k] end)
    if bad then error(fmt("%s: %sunexpected entry 'state[%d].%s'", name, pre, i, bad), 0) end
    if math_type(e.step) ~= "integer" or e.step < 0 then
      error(fmt("%s: %sstate[%d].step must be an integer >= 0, got %s", name, pre, i,
                e.step == nil and "nil" or tostring(e.step)), 0)
    end
    for _, b in ipairs(self.buffers) do
      local t = e[b]
      if t == nil and self.required[b] then
        error(fmt("%s: %smissing 'state[%d].%s'", name, pre, i, b), 0)
      end
      if t ~= nil then
        if not is_tensor(t) then
          error(fmt("%s: %sstate[%d].%s must be a pbt.Tensor, got %s", name, pre, i, b,
                    type(t)), 0)
        end
        local ts, ps = shape_str(t), shape_str(p)
        if ts ~= ps then
          error(fmt("%s: %sstate[%d].%s has shape %s but parameter %d has shape %s", name,
                    pre, i, b, ts, i, ps), 0)
        end
      end
    end
  end
  -- all checked: apply
  for _, f in ipairs(self.fields) do self[f.name] = copy_value(sd[f.name]) end
  -- a materialized optimizer keeps its whole state (what is absent from sd
  -- becomes step 0 and zero buffers), so that its parts stay the same
  local materialized = self.materialized
  for i, p in ipairs(params) do
    local e, st = state[i], self.state[i]
    if e == nil and not materialized then
      self.state[i] = nil
    else
      e = e or { step = 0 }
      st = st or {}
      st.step = e.step
      for _, b in ipairs(self.buffers) do
        local src = e[b]
        if src == nil and materialized then
          st[b]:zero_()
        elseif src == nil then
          st[b] = nil
        else
          local dst = st[b] or zeros_like(p)
          dst:copy_(src)
          st[b] = dst
        end
        if st[b .. "_ready"] ~= nil then st[b .. "_ready"] = src ~= nil end
      end
      self.state[i] = st
    end
  end
end

function Optimizer:__tostring()
  local parts = {}
  for _, f in ipairs(self.fields) do
    local v = self[f.name]
    if type(v) == "table" then v = "{" .. num(v[1]) .. ", " .. num(v[2]) .. "}"
    elseif type(v) == "number" then v = num(v)
    else v = tostring(v) end
    parts[#parts + 1] = f.name .. "=" .. v
  end
  return fmt("pbt.optim.%s(%s; %d parameters)", self.name, table.concat(parts, ", "),
             #self.params)
end

-- A class: name, fields = { {name, kind, default}, ... } (in order), the
-- state buffers and which of them a state entry must have, and step.
local function class(name, fields, buffers, required, step, extra_check)
  local c = setmetatable({}, { __index = Optimizer, __call = new })
  c.__index = c
  c.__tostring = Optimizer.__tostring
  c.name = name
  c.fields = {}
  c.known = {}
  for i, f in ipairs(fields) do
    c.fields[i] = { name = f[1], kind = f[2], default = f[3] }
    c.known[f[1]] = true
  end
  c.buffers = buffers
  c.required = {}
  for _, b in ipairs(required) do c.required[b] = true end
  c.extra_check = extra_check
  c.step = step
  return c
end

-- ---- SGD ---------------------------------------------------------------------

--- pbt.optim.SGD(params, {lr=, momentum=0, dampening=0, nesterov=false,
-- weight_decay=0}); lr is required.
local function sgd_check(h)
  if h.nesterov and (h.momentum <= 0 or h.dampening ~= 0) then
    return "nesterov requires momentum > 0 and dampening = 0"
  end
end

local function sgd_update(self)
  validate(getmetatable(self), self)
  -- each_grad's loop and the update below, in one C call: the checks of
  -- every parameter, grad and buffer first, then for each parameter with a
  -- grad (buf = st.momentum_buffer, made by zeros_like(p) on its first
  -- step; init when it was just made or momentum_buffer_ready is false):
  --   sgd_step(p, g, buf, init, lr, momentum, dampening, weight_decay, nesterov)
  --   st.step = st.step + 1, st.momentum_buffer = buf, momentum_buffer_ready = true
  sgd_steps(self.name, self.params, self.state, zeros_like, self.lr, self.momentum,
            self.dampening, self.weight_decay, self.nesterov)
end

M.SGD = class("SGD", {
  { "lr", "nonneg" }, { "momentum", "nonneg", 0 }, { "dampening", "number", 0 },
  { "nesterov", "boolean", false }, { "weight_decay", "nonneg", 0 },
}, { "momentum_buffer" }, {}, sgd_update, sgd_check)
M.SGD.init_flags = { momentum_buffer = true } -- its first step copies the gradient

-- ---- Adam, AdamW ----------------------------------------------------------------

local function adam_update(self, decoupled)
  validate(getmetatable(self), self)
  local lr, b1, b2, eps, wd = self.lr, self.betas[1], self.betas[2], self.eps,
                              self.weight_decay
  local state = self.state
  each_grad(self, function(p, g, st, i)
    local m, v = st and st.exp_avg, st and st.exp_avg_sq
    local n = (st and st.step or 0) + 1
    m, v = m or zeros_like(p), v or zeros_like(p)
    adam_step(p, g, m, v, n, lr, b1, b2, eps, wd, decoupled)
    if not st then st = {}; state[i] = st end
    st.step, st.exp_avg, st.exp_avg_sq = n, m, v
  end)
end

local adam_fields = function(wd)
  return { { "lr", "nonneg", 1e-3 }, { "betas", "betas", { 0.9, 0.999 } },
           { "eps", "nonneg", 1e-8 }, { "weight_decay", "nonneg", wd } }
end

--- pbt.optim.Adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8,
-- weight_decay=0}): weight decay is L2, added to the gradient.
M.Adam = class("Adam", adam_fields(0), { "exp_avg", "exp_avg_sq" },
               { "exp_avg", "exp_avg_sq" }, function(self) adam_update(self, false) end)

--- pbt.optim.AdamW(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8,
-- weight_decay=1e-2}): decoupled weight decay, p = p * (1 - lr * wd).
M.AdamW = class("AdamW", adam_fields(1e-2), { "exp_avg", "exp_avg_sq" },
                { "exp_avg", "exp_avg_sq" }, function(self) adam_update(self, true) end)

-- ---- RMSprop -------------------------------------------------------------------

local function rmsprop_update(self)
  validate(getmetatable(self), self)
  local lr, alpha, eps, mom, wd, centered = self.lr, self.alpha, self.eps, self.momentum,
                                            self.weight_decay, self.centered
  local state = self.state
  each_grad(self, function(p, g, st, i)
    local sq = st and st.square_avg or zeros_like(p)
    local ga = centered and (st and st.grad_avg or zeros_like(p)) or nil
    local buf = mom > 0 and (st and st.momentum_buffer or zeros_like(p)) or nil
    rmsprop_step(p, g, sq, ga, buf, lr, alpha, eps, mom, wd, centered)
    if not st then st = { step = 0 }; state[i] = st end
    st.step = st.step + 1
    st.square_avg = sq
    if ga then st.grad_avg = ga end
    if buf then st.momentum_buffer = buf end
  end)
end

--- pbt.optim.RMSprop(params, {lr=1e-2, alpha=0.99, eps=1e-8, momentum=0,
-- weight_decay=0, centered=false}).  grad_avg and momentum_buffer are made
-- (as zeros) on the first step that needs them.
M.RMSprop = class("RMSprop", {
  { "lr", "nonneg", 1e-2 }, { "alpha", "nonneg", 0.99 }, { "eps", "nonneg", 1e-8 },
  { "momentum", "nonneg", 0 }, { "weight_decay", "nonneg", 0 },
  { "centered", "boolean", false },
}, { "square_avg", "grad_avg", "momentum_buffer" }, { "square_avg" }, rmsprop_update)

return M
