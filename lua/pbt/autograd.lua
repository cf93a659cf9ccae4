--- pbt.autograd: reverse-mode differentiation of tensor programs.
--
-- The C binding records every differentiable op whose tensor arguments
-- require grad (and only then) as a node {op, args, out(s)} hung on the
-- result as its grad_fn (see "recording" below).  `backward` walks the nodes from a scalar loss in reverse
-- topological order, calling the op's rule from `rules` below.  Rules are
-- written with tensor ops (C kernels) and run with grad mode off.
local core = require("pbt.core")
local options = require("pbt.options")
local T = core.tensor

local M = {}

local set_grad_enabled = core.set_grad_enabled
local pack, unpack, select = table.pack, table.unpack, select

-- ---- recording ---------------------------------------------------------------

-- The C binding records every differentiable op whose tensor arguments
-- require grad (and only those) while grad mode is on, in the user values
-- of the op's first result; t.grad_fn (and backward) see it as a table,
-- the node:
--   node.op      the op's name, the key of its rule in `rules`
--   node.args    the op's arguments, node.args.n of them (node.args is the
--                node itself: node[i] is argument i)
--   node.out     the first result; node.outs, all the results
-- node.outs is made on first use for ops of one result.
local node_mt = {
  __index = function(node, k)
    if k == "outs" then
      local outs = { rawget(node, "out") }
      rawset(node, "outs", outs)
      return outs
    end
  end,
}
local core_record = core.record

-- ---- helpers ---------------------------------------------------------------------

local tensor_mt = getmetatable(T.zeros(0))
local function is_tensor(x) return getmetatable(x) == tensor_mt end
M.is_tensor = is_tensor

--- autograd.record(op, nres, results..., args...): for ops written in Lua.
-- Compute the results (with grad mode off, e.g. in pbt.no_grad), then call
-- record: when grad mode is on and a tensor among args requires grad,
-- results[1] becomes the output of a node of `op`, whose rule
-- `rules[op](node, g)` must be registered.
function M.record(op, nres, ...)
  if not core.is_grad_enabled() then return end
  for i = nres + 1, select("#", ...) do
    local x = select(i, ...)
    if is_tensor(x) and x.requires_grad then return core_record(op, nres, ...) end
  end
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end
M.shape_str = shape_str -- "[3,4]" for a shape table (one home: optim and nn use it)

local core_same_shape, needs_grad = core.same_shape, core.needs_grad
-- ops whose rule reads no tensor's values (shapes at most): an in-place
-- change of their arguments after the op leaves their gradient right, as
-- PyTorch leaves them unchecked
local reads_no_values = { add = true, sub = true, neg = true, sum = true, mean = true, view = true,
  reshape = true, flatten = true, squeeze = true, unsqueeze = true, transpose = true, t = true,
  permute = true, narrow = true, select = true, expand = true, expand_as = true, astype = true }

--- Sums g down to the shape of a (a tensor, or a shape table), undoing
-- numpy broadcasting.
local function sum_to(g, shape)
  if is_tensor(shape) then
    if core_same_shape(g, shape) then return g end
    shape = shape:shape()
  end
  local gs = g:shape()
  if same_shape(gs, shape) then return g end
  for _ = 1, #gs - #shape do g = g:sum(1) end
  for i = 1, #shape do
    if shape[i] == 1 and g:size(i) ~= 1 then g = g:sum(i, true) end
  end
  return g
end
M.sum_to = sum_to

--- The reduced dimension (1-based, positive or nil) and keepdim of a
-- reduction called as f(t, [dim [, keepdim ...]]) or f(t, {dim=, keepdim=}).
local function red_args(args, first, ndim)
  local d, keep = args[first], args[first + 1]
  if type(d) == "table" then d, keep = d.dim, d.keepdim end
  if d and d < 0 then d = d + ndim + 1 end
  return d, keep and true or false
end

--- g (the grad of a reduction over dim d, or over everything when d is nil)
-- broadcast back to the input's shape.
local function unreduce(g, a, d, keep)
  if not keep then
    if d then
      g = g:unsqueeze(d)
    else
      local ones = {}
      for i = 1, a:dim() do ones[i] = 1 end
      g = g:reshape(ones)
    end
  end
  return g:expand(a:shape())
end

local function numel_ratio(a, out) return a:numel() / math.max(out:numel(), 1) end

-- ---- rules: rule(node, g) returns the grads of node.args, positionally ---------

local rules = {}
M.rules = rules

-- the grads of arguments that do not require grad are not computed
local needs = needs_grad

rules.add = function(n, g)
  local a, b, alpha = n.args[1], n.args[2], n.args[3] or 1
  return needs(a) and sum_to(g, a) or nil,
         needs(b) and sum_to(alpha == 1 and g or g * alpha, b) or nil
end
rules.sub = function(n, g)
  local a, b, alpha = n.args[1], n.args[2], n.args[3] or 1
  return needs(a) and sum_to(g, a) or nil,
         needs(b) and sum_to(g * (-alpha), b) or nil
end
rules.mul = function(n, g)
  local a, b = n.args[1], n.args[2]
  return needs(a) and sum_to(g * b, a) or nil,
         needs(b) and sum_to(g * a, b) or nil
end
rules.div = function(n, g)
  local a, b = n.args[1], n.args[2]
  local ga = needs(a) and sum_to(g / b, a) or nil
  local gb = needs(b) and sum_to(-(g * n.out) / b, b) or nil
  return ga, gb
end
-- d(a^b)/da = b a^(b-1) (0 for b = 0, even at a = 0); d(a^b)/db = a^b log a
-- (0 where a^b = 0: a = 0 with b > 0)
rules.pow = function(n, g)
  local a, b, out = n.args[1], n.args[2], n.out
  local ga, gb
  if needs(a) then
    if b == 0 then ga = T.zeros_like(a)
    else
      local d = g * b * a:pow(b - 1)
      if is_tensor(b) then d = T.where(b:eq(0), 0, d) end
      ga = sum_to(d, a)
    end
  end
  if needs(b) then
    local la = is_tensor(a) and a:log() or math.log(a)
    gb = sum_to(T.where(out:eq(0), 0, g * out * la), b)
  end
  return ga, gb
end
-- the winner takes the gradient (a on ties)
local function minmax_rule(cmp, reversed)
  return function(n, g)
    local a, b = n.args[1], n.args[2]
    local mask = is_tensor(a) and a[cmp](a, b) or b[reversed](b, a)
    local ga = needs(a) and sum_to(g * mask, a) or nil
    local gb = needs(b) and sum_to(g * (1 - mask), b) or nil
    return ga, gb
  end
end
rules.maximum = minmax_rule("ge", "le")
rules.minimum = minmax_rule("le", "ge")

rules.neg = function(_, g) return -g end
rules.exp = function(n, g) return g * n.out end
rules.log = function(n, g) return g / n.args[1] end
rules.log1p = function(n, g) return g / (n.args[1] + 1) end
rules.sqrt = function(n, g) return g * 0.5 / n.out end
rules.abs = function(n, g) return g * n.args[1]:sign() end
rules.sin = function(n, g) return g * n.args[1]:cos() end
rules.cos = function(n, g) return -(g * n.args[1]:sin()) end
rules.tanh = function(n, g) local y = n.out; return g * (1 - y * y) end
rules.sigmoid = function(n, g) local y = n.out; return g * y * (1 - y) end
local relu_backward = core.nn.relu_backward -- g * (x > 0) in one C pass
rules.relu = function(n, g) return relu_backward(g, n.args[1]) end
rules.clamp = function(n, g)
  local a, lo, hi = n.args[1], n.args[2], n.args[3]
  local m = g
  if lo then m = m * a:ge(lo) end
  if hi then m = m * a:le(hi) end
  return m
end
rules.where = function(n, g)
  local mask, a, b = n.args[1], n.args[2], n.args[3]
  return nil,
    needs(a) and sum_to(T.where(mask, g, 0), a) or nil,
    needs(b) and sum_to(T.where(mask, 0, g), b) or nil
end

rules.sum = function(n, g)
  local a = n.args[1]
  local d, keep = red_args(n.args, 2, a:dim())
  return unreduce(g, a, d, keep)
end
rules.mean = function(n, g)
  local a = n.args[1]
  local d, keep = red_args(n.args, 2, a:dim())
  return unreduce(g, a, d, keep) / numel_ratio(a, n.out)
end
-- d(prod)/da_i = the product of the others: P/a_i when the slice has no
-- zero; at the zero of a slice with exactly one zero, the product of the
-- rest; 0 elsewhere
rules.prod = function(n, g)
  local a = n.args[1]
  local d, keep = red_args(n.args, 2, a:dim())
  local zero = a:eq(0)
  local nzero = d and zero:sum(d, true) or zero:sum()
  local a1 = T.where(zero, 1, a)
  local p1 = d and a1:prod(d, true) or a1:prod()
  local dp = p1 / a1 * nzero:eq(0) + p1 * zero * nzero:eq(1)
  return unreduce(g, a, d, keep) * dp
end
local function maxmin_rule(n, g)
  local a = n.args[1]
  local d, keep = red_args(n.args, 2, a:dim())
  if not d then -- over everything: shared evenly among the tied maxima
    local mask = a:eq(unreduce(n.out, a, nil, keep))
    return unreduce(g, a, nil, keep) * mask / mask:sum():item()
  end
  local idx = n.outs[2]
  if not keep then idx, g = idx:unsqueeze(d), g:unsqueeze(d) end
  return T.zeros_like(a):scatter_add_(d, idx, g)
end
rules.max, rules.min = maxmin_rule, maxmin_rule
rules.logsumexp = function(n, g)
  local a = n.args[1]
  local d, keep = red_args(n.args, 2, a:dim())
  return unreduce(g, a, d, keep) * (a - unreduce(n.out, a, d, keep)):exp()
end
local function var_parts(n)
  local a = n.args[1]
  local d, keep = red_args(n.args, 2, a:dim())
  local unbiased = n.args[4]
  if type(n.args[2]) == "table" then unbiased = n.args[2].unbiased end
  if unbiased == nil then unbiased = true end
  local m = d and a:mean(d, true) or a:mean()
  local cnt = numel_ratio(a, n.out) - (unbiased and 1 or 0)
  return a, d, keep, a - m, cnt
end
rules.var = function(n, g)
  local a, d, keep, centred, cnt = var_parts(n)
  return unreduce(g, a, d, keep) * centred * (2 / cnt)
end
rules.std = function(n, g)
  local a, d, keep, centred, cnt = var_parts(n)
  return unreduce(g / n.out, a, d, keep) * centred / cnt
end
-- the gradient of a p-norm is 0 where the norm is 0 (as in PyTorch)
rules.norm = function(n, g)
  local a, p = n.args[1], n.args[2] or 2
  local d, keep = red_args(n.args, 3, a:dim())
  if p == 0 then return T.zeros_like(a) end
  local out = unreduce(n.out, a, d, keep)
  local gg = unreduce(g, a, d, keep)
  if p == 1 then return gg * a:sign() end
  local r
  if p == 2 then r = gg * a / out
  elseif p == math.huge or p == -math.huge then
    local mask = a:abs():eq(out)
    r = gg * a:sign() * mask / (d and mask:sum(d, true) or mask:sum()):expand(a:shape())
  else
    r = gg * a:sign() * a:abs():pow(p - 1) / out:pow(p - 1)
  end
  return T.where(out:eq(0), 0, r)
end
rules.softmax = function(n, g)
  local y, d = n.out, n.args[2]
  return y * (g - (g * y):sum(d, true))
end
rules.log_softmax = function(n, g)
  local y, d = n.out, n.args[2]
  return g - y:exp() * g:sum(d, true)
end

-- products: 1-d operands are made 2-d, the grads computed batched, then
-- summed down over broadcast batch dimensions and reshaped back.
rules.matmul = function(n, g)
  local a, b = n.args[1], n.args[2]
  local A = a:dim() == 1 and a:unsqueeze(1) or a
  local B = b:dim() == 1 and b:unsqueeze(2) or b
  local G = g
  if a:dim() == 1 then G = G:unsqueeze(G:dim() > 0 and G:dim() or 1) end
  if a:dim() == 1 and b:dim() == 1 then G = g:reshape(1, 1)
  elseif b:dim() == 1 then G = G:unsqueeze(G:dim() + 1) end
  local ga, gb
  if a.requires_grad then
    ga = sum_to(G:matmul(B:transpose(-1, -2)), A):reshape(a:shape())
  end
  if b.requires_grad then
    gb = sum_to(A:transpose(-1, -2):matmul(G), B):reshape(b:shape())
  end
  return ga, gb
end
rules.dot = function(n, g)
  local a, b = n.args[1], n.args[2]
  return a.requires_grad and g * b or nil, b.requires_grad and g * a or nil
end
rules.outer = function(n, g)
  local a, b = n.args[1], n.args[2]
  return a.requires_grad and g:matmul(b) or nil, b.requires_grad and g.T:matmul(a) or nil
end

local function index_tensor(idx)
  return is_tensor(idx) and idx or T.tensor(idx, { dtype = "float64" })
end
rules.index_select = function(n, g)
  local a, d, idx = n.args[1], n.args[2], index_tensor(n.args[3])
  if d < 0 then d = d + a:dim() + 1 end
  local s = {}
  for i = 1, g:dim() do s[i] = 1 end
  s[d] = idx:numel()
  return T.zeros_like(a):scatter_add_(d, idx:reshape(s):expand(g:shape()), g)
end
rules.gather = function(n, g)
  return T.zeros_like(n.args[1]):scatter_add_(n.args[2], n.args[3], g)
end

-- views and copies
local function back_to_shape(n, g) return g:reshape(n.args[1]:shape()) end
rules.view, rules.reshape, rules.flatten = back_to_shape, back_to_shape, back_to_shape
rules.squeeze, rules.unsqueeze = back_to_shape, back_to_shape
rules.transpose = function(n, g) return g:transpose(n.args[2], n.args[3]) end
rules.t = function(_, g) return g:t() end
rules.permute = function(n, g)
  local nd, inv = n.args[1]:dim(), {}
  for i = 1, nd do
    local p = n.args[i + 1]
    if p < 0 then p = p + nd + 1 end
    inv[p] = i
  end
  return g:permute(inv)
end
rules.narrow = function(n, g)
  local a, d, start = n.args[1], n.args[2], n.args[3]
  local z = T.zeros_like(a)
  z:narrow(d, start, n.args[4]):copy_(g)
  return z
end
rules.select = function(n, g)
  local z = T.zeros_like(n.args[1])
  z:select(n.args[2], n.args[3]):copy_(g)
  return z
end
local function back_to_expanded(n, g) return sum_to(g, n.args[1]) end
rules.expand, rules.expand_as = back_to_expanded, back_to_expanded
local function identity(_, g) return g end
rules.contiguous, rules.clone = identity, identity
rules.astype = function(n, g) return g:astype(n.args[1]:dtype()) end

-- ---- backward ------------------------------------------------------------------------

-- The nodes reachable from t, each after the nodes of its arguments
-- (core.graph, a depth-first walk in C; backward's order).
local graph, core_backward = core.graph, core.backward
local is_leaf = T.is_leaf

-- Ops whose rule returns tensors it has just made, each used once (no view
-- of g or of anything else): a leaf's first grad from them is kept as it is
-- rather than cloned.  Register more with autograd.fresh.myop = true.
local fresh = { relu = true, mul = true, matmul = true }
M.fresh = fresh

-- Built-in rules that can add a leaf's gradient straight into its kept
-- .grad (opt:zero_grad(false)): in_place[op] = { rule = f, run = f2 }.  While
-- rules[op] is still f, backward calls f2(node, g) instead; f2 returns nil
-- for a gradient it has already added into the leaf's .grad.  A rule that
-- a script puts in rules[op] is called as it is, with the usual contract.
local in_place = {}
M.in_place = in_place

-- Built-in rules that backward runs in C straight from their kernels,
-- without making the op's node table (see core.backward_env in
-- csrc/lpbt_autograd.c for the kinds): builtin[op] = { rule, kind, kernel
-- [, run] }, taken while rules[op] is still `rule`.
local builtin = {}
local kinds = { unary = true, loss = true, linear = true, linear_relu = true, conv2d = true,
  max_pool2d = true, shape = true, lua = true }

--- autograd.builtin(op, kind, kernel [, run]): backward calls `kernel` in C
-- for the nodes of `op` as the kind says, while rules[op] is the rule it is
-- now (and in_place[op].run is `run`).  For pbt's own rules.  Kind "lua"
-- (no kernel): the rule is called as it is, and it keeps neither g nor its
-- results, which are new tensors: backward releases them once used up.
function M.builtin(op, kind, kernel, run)
  if not kinds[kind] then error("autograd.builtin: unknown kind '" .. tostring(kind) .. "'", 2) end
  if not rules[op] then error("autograd.builtin: no rule for '" .. tostring(op) .. "'", 2) end
  builtin[op] = { rules[op], kind, kernel, run }
end

local function accumulate(t, g, owned)
  local have = t.grad
  if have then have:add_(g) else t.grad = owned and g or g:clone() end
end

--- t:backward([grad] [, {retain_graph = false}]): accumulates d(t)/d(leaf)
-- into leaf.grad for every leaf that requires grad.  t must be a scalar
-- unless grad is given.  The outputs of the layers inside an nn.Sequential
-- (not its own result) are freed once the walk has used them, so that the
-- next step reuses their memory; retain_graph = true keeps them, for a
-- second backward through the same graph.
local released = core.is_released

-- The message of an error raised in backward while a tensor of the graph
-- had been released (nil when none had): names the op and the argument.
local function released_in(order)
  for _, node in ipairs(order) do
    for i = 1, node.n do
      local gone, by_walk = released(node[i])
      if by_walk then
        return ("backward: argument %d of '%s' was freed by an earlier backward (an output " ..
          "of a layer inside an nn.Sequential; backward(grad, {retain_graph = true}) keeps " ..
          "them for a second backward)"):format(i, node.op)
      elseif gone then
        return ("backward: argument %d of '%s' has been released"):format(i, node.op)
      end
    end
  end
end

-- Ctrl-C's error, handed on as it is (pbt.shared, which has the same test,
-- needs this module).
local function interrupted(e) return type(e) == "string" and e:find("interrupted!$") ~= nil end

local BACKWARD_OPTS = { retain_graph = true } -- (made once: backward is on every step's path)
function M.backward(t, grad, opts)
  -- (a table with an array part is a mistaken grad, named as such below)
  if opts == nil and type(grad) == "table" and rawget(grad, 1) == nil then
    grad, opts = nil, grad
  end
  options.check("backward", opts, BACKWARD_OPTS, 3)
  local retain = opts ~= nil and opts.retain_graph
  if retain ~= nil and retain ~= false and retain ~= true then
    error(("backward: retain_graph must be a boolean, got %s"):format(type(retain)), 2)
  end
  if not is_tensor(t) then
    error(("calling 'backward' on bad self (pbt.Tensor expected, got %s)"):format(type(t)), 2)
  end
  if released(t) then error("calling 'backward' on bad self (tensor has been released)", 2) end
  if not t.requires_grad then
    error("backward: the tensor does not require grad (no input of it called requires_grad_())", 2)
  end
  if grad == nil then
    if t:numel() ~= 1 then
      error(("backward: grad must be given for a tensor of %d elements (only a scalar " ..
        "has an implicit grad of 1)"):format(t:numel()), 2)
    end
    grad = T.ones_like(t)
  elseif not is_tensor(grad) then
    error(("bad argument #1 to 'backward' (pbt.Tensor expected, got %s)"):format(type(grad)), 2)
  elseif released(grad) then
    error("bad argument #1 to 'backward' (tensor has been released)", 2)
  elseif grad:dtype() ~= t:dtype() or not same_shape(grad:shape(), t:shape()) then
    error(("backward: a %s grad of shape %s cannot be the grad of a %s tensor of shape %s")
      :format(grad:dtype(), shape_str(grad:shape()), t:dtype(), shape_str(t:shape())), 2)
  end
  if is_leaf(t) then accumulate(t, grad) return end
  -- the walk, in C (core.backward): the rules run with recording off (they
  -- do not yield: no coroutine of pbt.no_grad's is needed here)
  local prev = set_grad_enabled(false)
  local ok, err = pcall(core_backward, t, grad, retain)
  set_grad_enabled(prev)
  if not ok then
    if interrupted(err) then error(err, 0) end
    -- a tensor of the graph that was released, named (the walk's error else)
    local found, named = pcall(function() return released_in(graph(t)) end)
    if not found and interrupted(named) then error(named, 0) end
    error(found and named or err, 0)
  end
end

--- pbt.no_grad(fn, ...): calls fn with recording off; returns its results.
-- Off for fn's dynamic extent along the chain of coroutines: while fn runs,
-- and in the coroutines it resumes; not while fn is suspended in a yield
-- (the code that runs meanwhile records), nor after a coroutine suspended
-- inside it is dropped.  fn runs in the caller's thread.
local no_grad_enter, no_grad_exit = core.no_grad_enter, core.no_grad_exit

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

function M.no_grad(fn, ...)
  if not callable(fn) then
    error(("bad argument #1 to 'no_grad' (function expected, got %s)"):format(type(fn)), 2)
  end
  no_grad_enter()
  local res = pack(pcall(fn, ...))
  no_grad_exit()
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

-- The multi-index (1-based) of the i-th element of shape in row-major order.
local function unflatten(i, shape, idx)
  i = i - 1
  for d = #shape, 1, -1 do
    idx[d] = i % shape[d] + 1
    i = i // shape[d]
  end
  return idx
end

--- pbt.gradcheck(fn, inputs [, eps [, tol]]): compares the gradients that
-- backward gives for fn(inputs...) with central finite differences.  The
-- inputs must be float64 leaf tensors that require grad, with no two elements
-- sharing memory (not expanded); they may be non-contiguous views (t.T,
-- narrow).  fn returns a tensor (its first result is used) of any shape.
-- An analytic and a numeric derivative agree when |an - num| <= tol * (1 + |num|).
-- Returns true, or false and a message naming the input, element, output
-- element and both values.
function M.gradcheck(fn, inputs, eps, tol)
  eps, tol = eps or 1e-6, tol or 1e-5
  for k, x in ipairs(inputs) do
    if released(x) then error(("gradcheck: input %d has been released"):format(k), 2) end
    if not is_tensor(x) or x:dtype() ~= "float64" or not x.requires_grad then
      error(("gradcheck: input %d must be a float64 tensor that requires grad"):format(k), 2)
    end
    if not x:is_leaf() then
      error(("gradcheck: input %d must be a leaf (the result of an op is not; use " ..
        "t:detach():requires_grad_())"):format(k), 2)
    end
    local shape, stride = x:shape(), x:stride()
    for d = 1, #shape do
      if stride[d] == 0 and shape[d] > 1 then
        error(("gradcheck: input %d is expanded (its elements share memory); expand it " ..
          "inside fn"):format(k), 2)
      end
    end
  end
  local function flat(x) return x:detach():contiguous():reshape(-1) end
  local function call()
    local o = fn(unpack(inputs))
    if not is_tensor(o) then
      error("gradcheck: fn must return a pbt.Tensor, got " .. type(o), 3)
    end
    return o
  end
  local nout = call():numel()
  -- analytic Jacobian, one output element at a time
  local analytic = {}
  for j = 1, nout do
    for _, x in ipairs(inputs) do x.grad = nil end
    local o = call()
    if o.requires_grad then
      local go = T.zeros(nout, { dtype = o:dtype() })
      go:set(j, 1)
      o:backward(go:reshape(o:shape()))
    end
    analytic[j] = {}
    for k, x in ipairs(inputs) do
      analytic[j][k] = x.grad and flat(x.grad):totable() or nil
    end
  end
  for _, x in ipairs(inputs) do x.grad = nil end
  -- numeric Jacobian, one input element at a time (perturbed through a
  -- detached alias of the input, so that strided views work too)
  local idx = {}
  for k, x in ipairs(inputs) do
    local xv, shape = x:detach(), x:shape()
    local nd = #shape
    for i = 1, xv:numel() do
      unflatten(i, shape, idx)
      local orig = xv:get(unpack(idx, 1, nd))
      idx[nd + 1] = orig + eps
      xv:set(unpack(idx, 1, nd + 1))
      local fp = flat(M.no_grad(call)):totable()
      idx[nd + 1] = orig - eps
      xv:set(unpack(idx, 1, nd + 1))
      local fm = flat(M.no_grad(call)):totable()
      idx[nd + 1] = orig
      xv:set(unpack(idx, 1, nd + 1))
      for j = 1, nout do
        local num = (fp[j] - fm[j]) / (2 * eps)
        local an = analytic[j][k] and analytic[j][k][i] or 0
        if not (math.abs(an - num) <= tol * (1 + math.abs(num))) then
          return false, ("gradcheck: input %d, element %d, output %d: analytic %.10g, " ..
            "numeric %.10g"):format(k, i, j, an, num)
        end
      end
    end
  end
  return true
end

M.builtin("relu", "unary", relu_backward)
M.builtin("tanh", "lua")
M.builtin("sigmoid", "lua")
for _, op in ipairs({ "view", "reshape", "flatten", "squeeze", "unsqueeze" }) do
  M.builtin(op, "shape", T.reshape)
end
core.backward_env({ rules = rules, fresh = fresh, in_place = in_place,
  reads_no_values = reads_no_values, builtin = builtin, add_ = T.add_, clone = T.clone })
core.autograd(node_mt)
return M
