--- pbt.nn: neural-network modules, losses and their gradient rules.
--
-- Modules follow PyTorch's semantics and default initialisation; every
-- random draw takes an explicit generator (opts.generator, else the module
-- default seeded by pbt.manual_seed).  The kernels (linear, conv2d,
-- max_pool2d, cross_entropy, binary cross-entropy, gelu, layer_norm,
-- dropout) are C functions of pbt.core.nn that record themselves for
-- autograd; their backward rules, registered below, call the C backward
-- kernels.
--
-- Writing a module:
--
--   local Net = nn.Module:extend("Net")
--   function Net:init(n)               -- called by Net(n)
--     self.fc = nn.Linear(n, 1)        -- a module: becomes a submodule "fc"
--     self.scale = T.ones(1):requires_grad_()  -- a leaf that requires grad:
--   end                                -- becomes a parameter "scale"
--   function Net:forward(x) return self.fc(x) * self.scale end
--
-- Assigning a module or a leaf tensor that requires grad to a field
-- registers it (in assignment order, which is the order of parameters());
-- self:register_parameter(name, t), self:add_module(name, m) and
-- self:register_buffer(name, t) do the same explicitly.  Any other value is a
-- plain field.
local core = require("pbt.core")
local autograd = require("pbt.autograd")

local T = core.tensor
local options = require("pbt.options")
local C = core.nn
local rules = autograd.rules
local is_tensor = autograd.is_tensor

local nn = {}

local fmt_shape = autograd.shape_str

-- ---- gradient rules of the C kernels --------------------------------------------

local function rg(t) return t ~= nil and t.requires_grad end

-- The rule of linear (kernel C.linear_backward) or of linear_relu (kernel
-- C.linear_relu_backward, with_out: a Linear and the ReLU after it in an
-- nn.Sequential run as one op, see Sequential.forward, and ReLU's gradient is
-- read off the op's result, n.out), and its run for kept gradients: in
-- backward (while rules[op] is the rule made here), a leaf's kept .grad
-- (opt:zero_grad(false) keeps it) is handed to the kernel, which adds the
-- weight's and bias's gradients into it in place (the GEMM with beta = 1)
-- when it fits, and then returns nil for them.
local is_leaf = core.tensor.is_leaf
local function kept_grad(t) return is_leaf(t) and t.grad or nil end
local function linear_rules(op, kernel, with_out)
  local function call(n, g, kw, kb)
    local x, w, b = n.args[1], n.args[2], n.args[3]
    if with_out then return kernel(g, n.out, x, w, rg(x), rg(w), rg(b), kw, kb) end
    return kernel(g, x, w, rg(x), rg(w), rg(b), kw, kb)
  end
  rules[op] = function(n, g) return call(n, g) end
  autograd.in_place[op] = {
    rule = rules[op],
    run = function(n, g)
      local w, b = n.args[2], n.args[3]
      return call(n, g, rg(w) and kept_grad(w) or nil, rg(b) and kept_grad(b) or nil)
    end,
  }
end
linear_rules("linear", C.linear_backward, false)
linear_rules("linear_relu", C.linear_relu_backward, true)
rules.conv2d = function(n, g)
  local a = n.args
  return C.conv2d_backward(g, a[1], a[2], a[4], a[5], a[6], a[7], a[8],
    rg(a[1]), rg(a[2]), rg(a[3]))
end
rules.max_pool2d = function(n, g)
  return C.max_pool2d_backward(g, n.outs[2], n.args[1])
end
rules.cross_entropy = function(n, g)
  return C.cross_entropy_backward(g, n.args[1], n.args[2], n.args[3])
end
rules.bce_with_logits = function(n, g)
  local x, t = n.args[1], n.args[2]
  return C.bce_with_logits_backward(g, x, t, n.args[3], rg(x), rg(t))
end
rules.gelu = function(n, g) return C.gelu_backward(g, n.args[1]) end
rules.layer_norm = function(n, g)
  local x, w, b = n.args[1], n.args[3], n.args[4]
  local gx, gw, gb = C.layer_norm_backward(g, x, w, n.outs[2], n.outs[3], rg(x), rg(w), rg(b))
  if gb then gb = gb:reshape(b:shape()) end
  return gx, nil, gw, gb
end
rules.dropout = function(n, g) return g * n.outs[2] end
-- the C backward kernels return new tensors: a leaf keeps them as its grad
for _, op in ipairs({ "linear", "linear_relu", "conv2d", "max_pool2d", "cross_entropy",
                      "bce_with_logits", "gelu", "layer_norm", "dropout" }) do
  autograd.fresh[op] = true
end
-- backward calls these kernels from C, as the rules above would
autograd.builtin("linear", "linear", C.linear_backward, autograd.in_place.linear.run)
autograd.builtin("linear_relu", "linear_relu", C.linear_relu_backward,
  autograd.in_place.linear_relu.run)
autograd.builtin("conv2d", "conv2d", C.conv2d_backward)
autograd.builtin("max_pool2d", "max_pool2d", C.max_pool2d_backward)
autograd.builtin("cross_entropy", "loss", C.cross_entropy_backward)
autograd.builtin("gelu", "unary", C.gelu_backward)
for _, op in ipairs({ "dropout", "layer_norm", "bce_with_logits" }) do
  autograd.builtin(op, "lua")
end

-- ---- argument helpers ------------------------------------------------------------

local function check_int(fname, what, v, min)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    error(("%s: %s must be an integer, got %s"):format(fname, what, tostring(v)), 3)
  end
  if v < min then error(("%s: %s must be >= %d, got %d"):format(fname, what, min, v), 3) end
  return math.tointeger(v)
end

-- a number or a pair {a, b}
local function pair(fname, what, v, min)
  if type(v) == "table" then
    return check_int(fname, what, v[1], min), check_int(fname, what, v[2], min)
  end
  v = check_int(fname, what, v, min)
  return v, v
end

--- Raises "<fname>: <what> must be a pbt.Tensor, got <type>" in the caller's
-- caller (the user's code) unless x is a tensor, optionally of ndim
-- dimensions.
local function check_tensor(fname, what, x, ndim)
  if not is_tensor(x) then
    error(("%s: %s must be a pbt.Tensor, got %s"):format(fname, what, type(x)), 3)
  end
  if ndim and x:dim() ~= ndim then
    error(("%s: %s must be %d-d, got %d-d"):format(fname, what, ndim, x:dim()), 3)
  end
  return x
end

local function as_labels(fname, labels)
  if is_tensor(labels) then return labels end
  if type(labels) ~= "table" then
    error(("%s: labels must be a pbt.Tensor or a table, got %s"):format(fname, type(labels)), 3)
  end
  for i, v in ipairs(labels) do
    if type(v) ~= "number" then
      error(("%s: label %d must be a number, got %s"):format(fname, i, type(v)), 3)
    end
  end
  return T.tensor(labels, { dtype = "float64" })
end

-- ---- functional forms --------------------------------------------------------------

--- nn.linear(x, w [, b]): x [..., in] . w^T + b with w [out, in].
function nn.linear(x, w, b)
  check_tensor("linear", "input", x)
  check_tensor("linear", "weight", w, 2)
  local nd = x:dim()
  if nd == 0 then error("linear: input must have at least 1 dimension, got a 0-d tensor", 2) end
  if nd == 2 then return C.linear(x, w, b) end
  if nd == 1 then return C.linear(x:unsqueeze(1), w, b):squeeze(1) end
  local shape = x:shape()
  local y = C.linear(x:reshape(-1, shape[nd]), w, b)
  shape[nd] = w:size(1)
  return y:reshape(shape)
end

--- nn.conv2d(x, w [, b [, {stride=1, padding=0, workspace=nil}]]): x
-- [N,C,H,W] or [C,H,W]; workspace: a float tensor the unfolded input may
-- be kept in between calls (nn.Conv2d keeps one).
function nn.conv2d(x, w, b, opts, extra)
  check_tensor("conv2d", "input", x)
  check_tensor("conv2d", "weight", w, 4)
  if extra ~= nil then
    error("conv2d: the workspace goes in the options table: {workspace = t}", 2)
  end
  options.check("conv2d", opts, { "stride", "padding", "workspace" }, 3)
  opts = opts or {}
  local workspace = opts.workspace
  local sh, sw = pair("conv2d", "stride", opts.stride or 1, 1)
  local ph, pw = pair("conv2d", "padding", opts.padding or 0, 0)
  if x:dim() == 3 then
    return C.conv2d(x:unsqueeze(1), w, b, sh, sw, ph, pw, workspace):squeeze(1)
  end
  return C.conv2d(x, w, b, sh, sw, ph, pw, workspace)
end

--- nn.max_pool2d(x, k [, {stride=k, padding=0}]): returns the pooled tensor
-- and the 1-based positions of the maxima in each H*W plane.
function nn.max_pool2d(x, k, opts)
  check_tensor("max_pool2d", "input", x)
  options.check("max_pool2d", opts, { "stride", "padding" }, 3)
  opts = opts or {}
  local kh, kw = pair("max_pool2d", "kernel size", k, 1)
  local sh, sw = kh, kw
  if opts.stride then sh, sw = pair("max_pool2d", "stride", opts.stride, 1) end
  local ph, pw = pair("max_pool2d", "padding", opts.padding or 0, 0)
  return C.max_pool2d(x, kh, kw, sh, sw, ph, pw)
end

function nn.relu(x) return check_tensor("relu", "input", x):relu() end
function nn.tanh(x) return check_tensor("tanh", "input", x):tanh() end
function nn.sigmoid(x) return check_tensor("sigmoid", "input", x):sigmoid() end
--- nn.gelu(x): the exact GELU, x * Phi(x).
function nn.gelu(x) return C.gelu(check_tensor("gelu", "input", x)) end

--- nn.layer_norm(x, normalized_shape [, w [, b [, eps=1e-5]]])
function nn.layer_norm(x, shape, w, b, eps)
  check_tensor("layer_norm", "input", x)
  if type(shape) == "number" then shape = { shape } end
  if type(shape) ~= "table" then
    error(("layer_norm: normalized_shape must be a size or a table of sizes, got %s"):format(type(shape)), 2)
  end
  return (C.layer_norm(x, shape, w, b, eps or 1e-5))
end

--- nn.dropout(x, p [, {training=true, generator=}]): zeroes each element with
-- probability p and scales the others by 1 / (1 - p) when training.
function nn.dropout(x, p, opts)
  check_tensor("dropout", "input", x)
  if type(p) ~= "number" then error(("dropout: p must be a number, got %s"):format(type(p)), 2) end
  options.check("dropout", opts, { "training", "generator" }, 3)
  opts = opts or {}
  if opts.training == false or p == 0 then return x end
  return (C.dropout(x, p, opts.generator))
end

--- nn.embedding(indices, weight): rows of weight [num, dim] at 1-based
-- indices (a tensor of any shape or a table); the result has shape
-- indices.shape .. {dim}.
function nn.embedding(idx, w)
  check_tensor("embedding", "weight", w, 2)
  idx = as_labels("embedding", idx)
  local shape = idx:shape()
  local rows = w:index_select(1, idx:reshape(-1))
  shape[#shape + 1] = w:size(2)
  return rows:reshape(shape)
end

-- ---- losses --------------------------------------------------------------------------

local reductions = { mean = true, sum = true, none = true }

-- opts.reduction of a loss ("mean" by default), checked; errors at the
-- caller of the loss
local REDUCTION_OPTS = { reduction = true }
local function reduction_of(fname, opts)
  if type(opts) == "string" then
    error(("%s: the reduction goes in an options table: {reduction = '%s'}"):format(fname, opts), 3)
  end
  options.check(fname, opts, REDUCTION_OPTS, 4)
  local r = opts and opts.reduction or "mean"
  if not reductions[r] then
    error(("%s: reduction must be 'mean', 'sum' or 'none', got '%s'"):format(fname, tostring(r)), 3)
  end
  return r
end

local function reduce(l, reduction)
  if reduction == "mean" then return l:mean() end
  if reduction == "sum" then return l:sum() end
  return l
end

--- nn.mse_loss(pred, target [, {reduction = "mean"}])
function nn.mse_loss(pred, target, opts)
  local reduction = reduction_of("mse_loss", opts)
  check_tensor("mse_loss", "input", pred)
  if not is_tensor(target) and type(target) ~= "number" then
    error(("mse_loss: target must be a pbt.Tensor or a number, got %s"):format(type(target)), 2)
  end
  local d = pred - target
  return reduce(d * d, reduction)
end

--- nn.cross_entropy(logits [N,K], labels [, {reduction = "mean"}]): fused
-- log-softmax and negative log-likelihood; labels 1..K as a tensor of any
-- float dtype or a Lua table.
function nn.cross_entropy(logits, labels, opts)
  local reduction = reduction_of("cross_entropy", opts)
  check_tensor("cross_entropy", "logits", logits)
  return C.cross_entropy(logits, as_labels("cross_entropy", labels), reduction)
end

--- nn.nll_loss(logp [N,K], labels [, {reduction = "mean"}]): -logp[i, label_i].
function nn.nll_loss(logp, labels, opts)
  local reduction = reduction_of("nll_loss", opts)
  check_tensor("nll_loss", "input", logp, 2)
  labels = as_labels("nll_loss", labels)
  local n = logp:size(1)
  local picked = logp:gather(2, labels:reshape(n, 1)):reshape(n)
  return reduce(-picked, reduction)
end

--- nn.binary_cross_entropy_with_logits(logits, targets [, {reduction = "mean"}]):
-- max(x, 0) - x*t + log(1 + exp(-|x|)), fused and stable.
function nn.binary_cross_entropy_with_logits(logits, targets, opts)
  local reduction = reduction_of("binary_cross_entropy_with_logits", opts)
  check_tensor("binary_cross_entropy_with_logits", "logits", logits)
  check_tensor("binary_cross_entropy_with_logits", "targets", targets)
  return C.bce_with_logits(logits, targets, reduction)
end

--- nn.accuracy(logits [N,K], labels): the fraction (a Lua number) of rows
-- whose largest logit is at the label.
function nn.accuracy(logits, labels)
  check_tensor("accuracy", "logits", logits, 2)
  labels = as_labels("accuracy", labels)
  if labels:dtype() ~= "float64" then labels = labels:astype("float64") end
  return logits:detach():argmax(2):eq(labels:detach()):mean():item()
end

nn.functional = nn

-- ---- Module ------------------------------------------------------------------------

local Module = { __name = "Module" }
nn.Module = Module

local function is_module(v)
  return type(v) == "table" and rawget(v, "_modules") ~= nil
end
nn.is_module = is_module

-- ordered registries: reg = { names = {...}, [name] = value }
local function reg_set(reg, name, v)
  if reg[name] == nil then reg.names[#reg.names + 1] = name end
  reg[name] = v
end
local function reg_remove(reg, name)
  if reg[name] == nil then return end
  reg[name] = nil
  for i, n in ipairs(reg.names) do
    if n == name then table.remove(reg.names, i) break end
  end
end

local function class_index(cls)
  return function(self, k)
    local v = rawget(self, "_parameters")[k]
    if v ~= nil then return v end
    local mods = rawget(self, "_modules")
    v = mods[k]
    if v ~= nil then return v end
    if math.type(k) == "integer" then return mods[tostring(k)] end
    v = rawget(self, "_buffers")[k]
    if v ~= nil then return v end
    return cls[k]
  end
end

local function module_newindex(self, k, v)
  local params, mods, bufs = self._parameters, self._modules, self._buffers
  if is_module(v) then
    reg_remove(params, k) reg_remove(bufs, k)
    reg_set(mods, k, v)
  elseif v == nil then
    reg_remove(params, k) reg_remove(mods, k) reg_remove(bufs, k)
  elseif bufs[k] ~= nil and is_tensor(v) then
    bufs[k] = v
  elseif is_tensor(v) and v.requires_grad and v:is_leaf() then
    reg_remove(mods, k) reg_remove(bufs, k)
    reg_set(params, k, v)
  elseif params[k] ~= nil or mods[k] ~= nil then
    error(("cannot assign a %s to %s '%s' of a %s (a parameter takes a leaf tensor " ..
      "that requires grad, a submodule takes a module)"):format(
      is_tensor(v) and "tensor that does not require grad" or type(v),
      params[k] ~= nil and "parameter" or "submodule", tostring(k), self.__name), 2)
  else
    rawset(self, k, v)
  end
end

local function module_call(self, ...) return self:forward(...) end

local function module_tostring(self)
  local head = self.__name .. "(" .. (self:extra_repr() or "")
  local names = self._modules.names
  if #names == 0 then return head .. ")" end
  local lines = { head }
  for _, name in ipairs(names) do
    local s = tostring(self._modules[name]):gsub("\n", "\n  ")
    lines[#lines + 1] = "  (" .. name .. "): " .. s
  end
  return table.concat(lines, "\n") .. "\n)"
end

local function make_class(cls, name, parent)
  cls.__name = name
  cls.__index = class_index(cls)
  cls.__newindex = module_newindex
  cls.__call = module_call
  cls.__tostring = module_tostring
  cls.super = parent
  return setmetatable(cls, {
    __index = parent,
    __call = function(c, ...) return c:new(...) end,
    __tostring = function() return "pbt.nn class " .. name end,
  })
end

--- Module:extend(name): a new module class inheriting from this one.
function Module:extend(name)
  if type(name) ~= "string" then error("extend: the class needs a name (a string)", 2) end
  return make_class({}, name, self)
end

--- Class:new(...) (or Class(...)): an instance, set up by Class:init(...).
function Module:new(...)
  local o = setmetatable({
    _parameters = { names = {} }, _modules = { names = {} }, _buffers = { names = {} },
    training = true,
  }, self)
  o:init(...)
  return o
end

function Module:init() end
function Module:extra_repr() return "" end
function Module:forward()
  error(self.__name .. ": forward is not implemented", 2)
end

--- self:register_parameter(name, t): t (a leaf tensor) becomes a parameter
-- that requires grad; nil removes it.
function Module:register_parameter(name, t)
  if t ~= nil and not (is_tensor(t) and t:is_leaf()) then
    error("register_parameter: a parameter must be a leaf tensor", 2)
  end
  if t == nil then reg_remove(self._parameters, name) return end
  if not t.requires_grad then t:requires_grad_() end
  self[name] = t
end

--- self:add_module(name, m)
function Module:add_module(name, m)
  if not is_module(m) then error("add_module: a module expected, got " .. type(m), 2) end
  self[name] = m
end

--- self:register_buffer(name, t): a tensor that is part of the state_dict but
-- is not a parameter (e.g. running statistics).
function Module:register_buffer(name, t)
  if t ~= nil and not is_tensor(t) then error("register_buffer: a tensor expected", 2) end
  reg_remove(self._parameters, name) reg_remove(self._modules, name)
  if t == nil then reg_remove(self._buffers, name) else reg_set(self._buffers, name, t) end
end

--- Walks self and its submodules (own entries first, then each child in
-- registration order), calling fn(qualified_name, tensor) for each entry of
-- the registry `which`.
local function walk(m, which, prefix, fn)
  local reg = m[which]
  for _, name in ipairs(reg.names) do fn(prefix .. name, reg[name]) end
  local mods = m._modules
  for _, name in ipairs(mods.names) do walk(mods[name], which, prefix .. name .. ".", fn) end
end

--- m:named_parameters(): an array of {name, tensor} pairs in a fixed order
-- (own parameters first, then each submodule's, depth first); a parameter
-- shared between submodules appears once.
function Module:named_parameters()
  local out, seen = {}, {}
  walk(self, "_parameters", "", function(name, t)
    if not seen[t] then
      seen[t] = true
      out[#out + 1] = { name, t }
    end
  end)
  return out
end

--- m:parameters(): an array of the parameter tensors (named_parameters' order).
function Module:parameters()
  local out = {}
  for i, p in ipairs(self:named_parameters()) do out[i] = p[2] end
  return out
end

function Module:named_buffers()
  local out = {}
  walk(self, "_buffers", "", function(name, t) out[#out + 1] = { name, t } end)
  return out
end

--- m:children(): an array of the direct submodules.
function Module:children()
  local out = {}
  for i, name in ipairs(self._modules.names) do out[i] = self._modules[name] end
  return out
end

--- m:apply(fn): fn(module) on every submodule (depth first), then on m.
function Module:apply(fn)
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

--- m:num_parameters(): the number of scalar parameters.
function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

--- m:train([mode=true]) / m:eval(): sets `training` on m and every submodule.
function Module:train(mode)
  if mode == nil then mode = true end
  self:apply(function(m) rawset(m, "training", mode and true or false) end)
  return self
end
function Module:eval() return self:train(false) end

--- m:zero_grad([set_to_none = true]): drops every parameter's gradient
-- (sets .grad to nil, as PyTorch's zero_grad(set_to_none=True)), or, with
-- false, fills each existing .grad with zeros and keeps it, so that the
-- next backward adds into the same buffers (see Optimizer:zero_grad).
function Module:zero_grad(set_to_none)
  if set_to_none ~= nil and type(set_to_none) ~= "boolean" then
    error(("zero_grad: set_to_none must be a boolean, got %s"):format(type(set_to_none)), 2)
  end
  local params = self:parameters()
  if set_to_none == false then -- all checked before any is changed
    for i, p in ipairs(params) do
      local gr = p.grad
      if gr ~= nil and core.is_released(gr) then
        error(("zero_grad: the gradient of parameter %d has been released"):format(i), 2)
      end
    end
  end
  for _, p in ipairs(params) do
    if set_to_none ~= false then p.grad = nil
    elseif p.grad ~= nil then p.grad:zero_() end
  end
end

--- m:state_dict(): a flat table name -> tensor of every parameter and buffer.
-- The tensors are the module's own (references, as in PyTorch): clone them
-- to keep a snapshot.
function Module:state_dict()
  local sd = {}
  walk(self, "_parameters", "", function(name, t) sd[name] = t end)
  walk(self, "_buffers", "", function(name, t) sd[name] = t end)
  return sd
end

--- m:load_state_dict(sd [, {strict=true}]): copies every entry of sd into the
-- module's existing tensors (converting dtype), under pbt.no_grad.  A
-- missing or mis-shaped entry, or (when strict) an entry the module does not
-- have, is an error naming it; nothing is copied then.
function Module:load_state_dict(sd, opts)
  options.check("load_state_dict", opts, { "strict" }, 3)
  local strict = not (opts and opts.strict == false)
  if type(sd) ~= "table" then error("load_state_dict: a table expected, got " .. type(sd), 2) end
  local own, names = self:state_dict(), {}
  walk(self, "_parameters", "", function(name) names[#names + 1] = name end)
  walk(self, "_buffers", "", function(name) names[#names + 1] = name end)
  for _, name in ipairs(names) do
    local v, t = sd[name], own[name]
    if v == nil then
      if strict then error(("load_state_dict: missing entry '%s'"):format(name), 2) end
    elseif not is_tensor(v) then
      error(("load_state_dict: '%s' is a %s, expected a tensor"):format(name, type(v)), 2)
    else
      local vs, ts = v:shape(), t:shape()
      if fmt_shape(vs) ~= fmt_shape(ts) then
        error(("load_state_dict: '%s' has shape %s, expected %s"):format(name,
          fmt_shape(vs), fmt_shape(ts)), 2)
      end
    end
  end
  if strict then
    local extra = {}
    for k in pairs(sd) do if own[k] == nil then extra[#extra + 1] = tostring(k) end end
    if #extra > 0 then
      table.sort(extra)
      error(("load_state_dict: unexpected entry '%s'"):format(extra[1]), 2)
    end
  end
  autograd.no_grad(function()
    for _, name in ipairs(names) do
      local v = sd[name]
      if v ~= nil and v ~= own[name] then own[name]:copy_(v) end
    end
  end)
  return self
end

make_class(Module, "Module", nil)

-- ---- layers -----------------------------------------------------------------------------

local function uniform(shape, bound, opts)
  return T.empty(shape, { dtype = opts.dtype }):uniform_(-bound, bound, opts.generator)
end

--- nn.Linear(in, out [, {bias=true, generator=, dtype="float32"}]): weight
-- [out, in] and bias [out] uniform in +-1/sqrt(in) (PyTorch's default).
local Linear = Module:extend("Linear")
nn.Linear = Linear
function Linear:init(in_f, out_f, opts)
  options.check("Linear", opts, { "bias", "generator", "dtype" }, 4)
  opts = opts or {}
  in_f = check_int("Linear", "in_features", in_f, 0)
  out_f = check_int("Linear", "out_features", out_f, 0)
  self.in_features, self.out_features = in_f, out_f
  local bound = in_f > 0 and 1 / math.sqrt(in_f) or 0
  self.weight = uniform({ out_f, in_f }, bound, opts):requires_grad_()
  if opts.bias ~= false then self.bias = uniform({ out_f }, bound, opts):requires_grad_() end
end
-- A Linear's weight and bias (what self.weight finds first, without a call of __index).
local function linear_params(m)
  local p = m._parameters
  local w, b = p.weight, p.bias
  if w == nil then w = m.weight end
  if b == nil then b = m.bias end
  return w, b
end
function Linear:forward(x)
  local w, b = linear_params(self)
  if x:dim() == 2 then return C.linear(x, w, b) end
  return nn.linear(x, w, b)
end
function Linear:extra_repr()
  return ("in_features=%d, out_features=%d, bias=%s"):format(self.in_features,
    self.out_features, tostring(self.bias ~= nil))
end

--- nn.Conv2d(in_ch, out_ch, k [, {stride=1, padding=0, bias=true, generator=,
-- dtype=}]): k, stride and padding are numbers or pairs {h, w}.  Weight
-- [out, in, kh, kw] and bias uniform in +-1/sqrt(in*kh*kw).  Keeps its im2col
-- workspace from call to call.
local Conv2d = Module:extend("Conv2d")
nn.Conv2d = Conv2d
function Conv2d:init(in_ch, out_ch, k, opts)
  options.check("Conv2d", opts, { "stride", "padding", "bias", "generator", "dtype" }, 4)
  opts = opts or {}
  in_ch = check_int("Conv2d", "in_channels", in_ch, 1)
  out_ch = check_int("Conv2d", "out_channels", out_ch, 1)
  local kh, kw = pair("Conv2d", "kernel size", k, 1)
  local sh, sw = pair("Conv2d", "stride", opts.stride or 1, 1)
  local ph, pw = pair("Conv2d", "padding", opts.padding or 0, 0)
  self.in_channels, self.out_channels = in_ch, out_ch
  self.kernel_size, self.stride, self.padding = { kh, kw }, { sh, sw }, { ph, pw }
  local bound = 1 / math.sqrt(in_ch * kh * kw)
  self.weight = uniform({ out_ch, in_ch, kh, kw }, bound, opts):requires_grad_()
  if opts.bias ~= false then self.bias = uniform({ out_ch }, bound, opts):requires_grad_() end
  self._workspace = T.empty(0, { dtype = opts.dtype })
end
function Conv2d:forward(x)
  local s, p = self.stride, self.padding
  local ws = rawget(self, "_workspace")
  if x:dim() == 3 then
    return C.conv2d(x:unsqueeze(1), self.weight, self.bias, s[1], s[2], p[1], p[2], ws):squeeze(1)
  end
  return C.conv2d(x, self.weight, self.bias, s[1], s[2], p[1], p[2], ws)
end
function Conv2d:extra_repr()
  local k, s, p = self.kernel_size, self.stride, self.padding
  return ("%d, %d, kernel_size=(%d, %d), stride=(%d, %d), padding=(%d, %d), bias=%s"):format(
    self.in_channels, self.out_channels, k[1], k[2], s[1], s[2], p[1], p[2],
    tostring(self.bias ~= nil))
end

--- nn.MaxPool2d(k [, {stride=k, padding=0}])
local MaxPool2d = Module:extend("MaxPool2d")
nn.MaxPool2d = MaxPool2d
function MaxPool2d:init(k, opts)
  options.check("MaxPool2d", opts, { "stride", "padding" }, 4)
  opts = opts or {}
  local kh, kw = pair("MaxPool2d", "kernel size", k, 1)
  local sh, sw = kh, kw
  if opts.stride then sh, sw = pair("MaxPool2d", "stride", opts.stride, 1) end
  local ph, pw = pair("MaxPool2d", "padding", opts.padding or 0, 0)
  self.args = { kh, kw, sh, sw, ph, pw }
end
local release = getmetatable(T.empty(0)).__close
function MaxPool2d:forward(x)
  local a = self.args
  local out, indices = C.max_pool2d(x, a[1], a[2], a[3], a[4], a[5], a[6])
  -- the indices serve backward only: with no graph to keep them, done with
  if not out.requires_grad then release(indices) end
  return out
end
function MaxPool2d:extra_repr()
  local a = self.args
  return ("kernel_size=(%d, %d), stride=(%d, %d), padding=(%d, %d)"):format(table.unpack(a))
end

--- nn.Flatten([start_dim=2 [, end_dim=-1]]): merges those dimensions.
local Flatten = Module:extend("Flatten")
nn.Flatten = Flatten
function Flatten:init(s, e) self.start_dim, self.end_dim = s or 2, e or -1 end
function Flatten:forward(x) return x:flatten(self.start_dim, self.end_dim) end

--- nn.Sequential(m1, m2, ...): children named "1", "2", ...; seq[i] is the
-- i-th; seq:add(m) appends.
local Sequential = Module:extend("Sequential")
nn.Sequential = Sequential
function Sequential:init(...)
  for i = 1, select("#", ...) do self:add((select(i, ...))) end
end
function Sequential:add(m)
  self:add_module(tostring(#self._modules.names + 1), m)
  return self
end
-- A layer of one of the built-in classes (as it was defined: no forward of
-- its own, its class's not replaced; a Sequential whose layers all are)
-- keeps neither its input nor its output: the outputs of the layers inside
-- that only such layers have seen are held by the graph alone.  backward
-- frees them once its walk has used them, or they are freed at once when
-- no graph holds them (core.free_after), so that the next step's layers
-- write into memory still in cache.  The Sequential's input and result are
-- never freed.
local builtin_forward = {} -- class -> its forward, for the built-in classes (filled below)
local function builtin(m)
  local cls = getmetatable(m)
  local f = builtin_forward[cls]
  if f == nil or rawget(m, "forward") ~= nil or rawget(cls, "forward") ~= f then return nil end
  if cls == Sequential then
    local mods = m._modules
    for _, name in ipairs(mods.names) do
      if not builtin(mods[name]) then return nil end
    end
  end
  return f
end
-- A built-in Linear on a 2-d input followed by a built-in ReLU runs as one
-- op, linear_relu (C.linear_relu: ReLU in place on the product while it is
-- in cache, one node and one result instead of two): the same values and
-- gradients, bit for bit, as the two layers one after the other.
-- It does so only while what the two layers would run is pbt's own: a
-- script that replaced the rule of linear or of relu (or linear's run for
-- kept gradients) or the tensors' relu gets the layers one by one.
local free_after = core.free_after
local linear_relu = C.linear_relu
local ReLU -- (the class, made below)
local linear_rule, relu_rule, linear_ip = rules.linear, rules.relu, autograd.in_place.linear
local linear_run, tensor_methods = linear_ip.run, core.Tensor
local relu_method = tensor_methods.relu
local function pair_is_pbts()
  local ip = autograd.in_place.linear
  return rules.linear == linear_rule and rules.relu == relu_rule and ip == linear_ip
    and ip.rule == linear_rule and ip.run == linear_run and tensor_methods.relu == relu_method
end
function Sequential:forward(x)
  local mods = self._modules
  local names = mods.names
  local cur, free = x, false -- free: cur is an output that only built-in layers have seen
  local i, n = 1, #names
  while i <= n do
    local m = mods[names[i]]
    local f = builtin(m)
    local y
    if f then
      local nxt = f == Linear.forward and i < n and mods[names[i + 1]]
      if nxt and getmetatable(nxt) == ReLU and builtin(nxt) and is_tensor(cur)
          and cur:dim() == 2 and pair_is_pbts() then
        local w, b = linear_params(m)
        y = linear_relu(cur, w, b)
        i = i + 1
      else
        y = f(m, cur)
      end
      if not rawequal(y, cur) then -- (an identity layer hands cur on as it is)
        if free then free_after(cur, y) end
        free = not rawequal(y, x)
      end
    else
      y = m:forward(cur)
      free = false -- the layer may keep its input or its output
    end
    cur = y
    i = i + 1
  end
  return cur
end
function Sequential:__len() return #self._modules.names end

local function activation(name, fn)
  local cls = Module:extend(name)
  cls.forward = function(_, x) return fn(x) end
  nn[name] = cls
end
activation("ReLU", function(x) return x:relu() end)
ReLU = nn.ReLU
activation("Tanh", function(x) return x:tanh() end)
activation("Sigmoid", function(x) return x:sigmoid() end)
activation("GELU", C.gelu)

--- nn.Dropout([p=0.5 [, {generator=}]]): inverted dropout in training mode,
-- the identity in eval mode.
local Dropout = Module:extend("Dropout")
nn.Dropout = Dropout
function Dropout:init(p, opts)
  p = p or 0.5
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    error(("Dropout: probability must be in [0, 1], got %s"):format(tostring(p)), 3)
  end
  options.check("Dropout", opts, { "generator" }, 4)
  self.p = p
  self.generator = opts and opts.generator
end
function Dropout:forward(x)
  if not self.training or self.p == 0 then return x end
  return (C.dropout(x, self.p, self.generator))
end
function Dropout:extra_repr() return ("p=%g"):format(self.p) end

--- nn.LayerNorm(shape [, {eps=1e-5, elementwise_affine=true, dtype=}]):
-- normalises over the trailing dimensions `shape` (a size or a table);
-- weight ones, bias zeros.
local LayerNorm = Module:extend("LayerNorm")
nn.LayerNorm = LayerNorm
function LayerNorm:init(shape, opts)
  options.check("LayerNorm", opts, { "eps", "elementwise_affine", "dtype" }, 4)
  opts = opts or {}
  if type(shape) ~= "table" then shape = { shape } end
  for i, s in ipairs(shape) do shape[i] = check_int("LayerNorm", "normalized shape", s, 1) end
  self.normalized_shape, self.eps = shape, opts.eps or 1e-5
  if opts.elementwise_affine ~= false then
    self.weight = T.ones(shape, { dtype = opts.dtype }):requires_grad_()
    self.bias = T.zeros(shape, { dtype = opts.dtype }):requires_grad_()
  end
end
function LayerNorm:forward(x)
  return (C.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps))
end
function LayerNorm:extra_repr()
  return ("%s, eps=%g"):format(fmt_shape(self.normalized_shape), self.eps)
end

--- nn.Embedding(num, dim [, {generator=, dtype=}]): weight [num, dim] drawn
-- from N(0, 1); forward(indices) takes 1-based indices (tensor or table).
local Embedding = Module:extend("Embedding")
nn.Embedding = Embedding
function Embedding:init(num, dim, opts)
  options.check("Embedding", opts, { "generator", "dtype" }, 4)
  opts = opts or {}
  num = check_int("Embedding", "num_embeddings", num, 1)
  dim = check_int("Embedding", "embedding_dim", dim, 1)
  self.num_embeddings, self.embedding_dim = num, dim
  self.weight = T.randn(num, dim, { dtype = opts.dtype, generator = opts.generator })
    :requires_grad_()
end
function Embedding:forward(idx) return nn.embedding(idx, self.weight) end
function Embedding:extra_repr()
  return ("%d, %d"):format(self.num_embeddings, self.embedding_dim)
end

for _, cls in ipairs({ Linear, Conv2d, MaxPool2d, Flatten, Sequential, nn.ReLU, nn.Tanh,
    nn.Sigmoid, nn.GELU, Dropout, LayerNorm, Embedding }) do
  builtin_forward[cls] = rawget(cls, "forward")
end

return nn
