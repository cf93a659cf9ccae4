-- pbt autograd: gradient rules checked against central finite differences
-- (pbt.gradcheck, float64) for every differentiable op, on contiguous,
-- broadcast and non-contiguous inputs; gradcheck shown able to fail; the
-- bookkeeping (backward, accumulation, no_grad, detach, leaves, in-place
-- guard, .grad assignment) checked against values worked out by hand.
local pbt = require("pbt")
local T = pbt.tensor
local autograd = require("pbt.autograd")

local gen = pbt.Generator(20240611)

-- a float64 leaf of the given shape, uniform in [lo, hi)
local function rnd(shape, lo, hi)
  lo, hi = lo or -1, hi or 1
  return T.rand(shape, { dtype = "float64", generator = gen }) * (hi - lo) + lo
end
-- values in [-1.2, -0.2] or [0.2, 1.2]: away from the kinks of abs, relu, sign
local function signed(shape)
  local m = rnd(shape, 0.2, 1.2)
  local s = rnd(shape):ge(0) * 2 - 1
  return m * s
end
local function pos(shape) return rnd(shape, 0.5, 2) end
local function leaf(t) return t:requires_grad_() end
-- non-contiguous leaves: the transpose of a [m,n] tensor, and a narrowed tensor
local function transposed(shape, make) return leaf((make or rnd)({ shape[2], shape[1] }).T) end
local function narrowed(shape, make)
  local big = (make or rnd)({ shape[1], shape[2] + 3 })
  return leaf(big:narrow(2, 2, shape[2]))
end

-- every element of t (any shape, any strides) as a flat table, row-major
local function flat(t) return t:contiguous():reshape(-1):totable() end

local function assert_close(expected, t, tol)
  local got = flat(t)
  assert.are.equal(#expected, #got)
  for i = 1, #expected do
    assert.is_true(math.abs(expected[i] - got[i]) <= (tol or 1e-12) * (1 + math.abs(expected[i])),
      ("element %d: expected %.17g, got %.17g"):format(i, expected[i], got[i]))
  end
end

-- the message of the error fn raises, without a "file:line: " prefix when
-- that prefix names this spec (errors raised in Lua point at the caller)
local function error_of(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return (tostring(msg):gsub("^[^:]*autograd_spec%.lua:%d+: ", ""))
end

-- ---- the table of gradient checks ------------------------------------------------------

-- each case: name, fn, inputs (a function returning the list of leaves)
local cases = {}
local function case(name, fn, inputs) cases[#cases + 1] = { name = name, fn = fn, inputs = inputs } end

-- binary arithmetic: operator and method forms, on the same shape, broadcast
-- [3,1] with [1,4], [4] with [2,3,4], and non-contiguous operands
local SHAPES = {
  { "same shape [2,3]", function(mk) return { leaf(mk({ 2, 3 })), leaf(mk({ 2, 3 })) } end },
  { "[3,1] with [1,4]", function(mk) return { leaf(mk({ 3, 1 })), leaf(mk({ 1, 4 })) } end },
  { "[4] with [2,3,4]", function(mk) return { leaf(mk({ 4 })), leaf(mk({ 2, 3, 4 })) } end },
  { "[2,3,4] with [3,1]", function(mk) return { leaf(mk({ 2, 3, 4 })), leaf(mk({ 3, 1 })) } end },
  { "0-d with [2,3]", function(mk) return { leaf(mk({})), leaf(mk({ 2, 3 })) } end },
  { "transposed with narrowed", function(mk) return { transposed({ 3, 2 }, mk), narrowed({ 3, 2 }, mk) } end },
  { "transposed [3,2] with [2]", function(mk) return { transposed({ 3, 2 }, mk), leaf(mk({ 2 })) } end },
}
local BINARY = {
  { "a + b", function(a, b) return a + b end },
  { "a:add(b)", function(a, b) return a:add(b) end },
  { "a:add(b, 0.5)", function(a, b) return a:add(b, 0.5) end },
  { "a - b", function(a, b) return a - b end },
  { "a:sub(b)", function(a, b) return a:sub(b) end },
  { "a:sub(b, 2)", function(a, b) return a:sub(b, 2) end },
  { "a * b", function(a, b) return a * b end },
  { "a:mul(b)", function(a, b) return a:mul(b) end },
  { "a / b", function(a, b) return a / b end, signed },
  { "a:div(b)", function(a, b) return a:div(b) end, signed },
  { "a ^ b", function(a, b) return a ^ b end, pos },
  { "a:pow(b)", function(a, b) return a:pow(b) end, pos },
  { "a:maximum(b)", function(a, b) return a:maximum(b) end },
  { "a:minimum(b)", function(a, b) return a:minimum(b) end },
}
for _, op in ipairs(BINARY) do
  for _, sh in ipairs(SHAPES) do
    local mk = op[3] or rnd
    case(op[1] .. ", " .. sh[1], op[2], function() return sh[2](mk) end)
  end
end
-- one operand expanded inside fn (the leaf itself is [3,1])
case("a:expand(3,4) * b", function(a, b) return a:expand(3, 4) * b end,
  function() return { leaf(rnd({ 3, 1 })), leaf(rnd({ 3, 4 })) } end)
case("a:expand(2,3,4):maximum(b)", function(a, b) return a:expand(2, 3, 4):maximum(b) end,
  function() return { leaf(rnd({ 4 })), leaf(rnd({ 3, 4 })) } end)

-- a Lua number on either side
local NUMBER = {
  { "2 + x", function(x) return 2 + x end }, { "x + 2", function(x) return x + 2 end },
  { "2 - x", function(x) return 2 - x end }, { "x - 2", function(x) return x - 2 end },
  { "2 * x", function(x) return 2 * x end }, { "x * 2", function(x) return x * 2 end },
  { "2 / x", function(x) return 2 / x end, signed }, { "x / 4", function(x) return x / 4 end },
  { "2 ^ x", function(x) return 2 ^ x end }, { "x ^ 2", function(x) return x ^ 2 end },
  { "x ^ 3", function(x) return x ^ 3 end }, { "x ^ 0.5", function(x) return x ^ 0.5 end, pos },
  { "x ^ -1.5", function(x) return x ^ -1.5 end, pos },
  { "x:add(3, 2)", function(x) return x:add(3, 2) end }, { "x:sub(3)", function(x) return x:sub(3) end },
  { "x:mul(-3)", function(x) return x:mul(-3) end }, { "x:div(-3)", function(x) return x:div(-3) end },
  { "x:pow(2)", function(x) return x:pow(2) end }, { "x:maximum(0.1)", function(x) return x:maximum(0.1) end },
  { "x:minimum(0.1)", function(x) return x:minimum(0.1) end },
}
for _, op in ipairs(NUMBER) do
  local mk = op[3] or signed
  case(op[1] .. ", [2,3]", op[2], function() return { leaf(mk({ 2, 3 })) } end)
  case(op[1] .. ", transposed", op[2], function() return { transposed({ 2, 3 }, mk) } end)
end

-- unary ops and clamp, contiguous, transposed, narrowed and expanded
local UNARY = {
  { "neg", function(x) return x:neg() end }, { "-x", function(x) return -x end },
  { "exp", function(x) return x:exp() end }, { "log", function(x) return x:log() end, pos },
  { "log1p", function(x) return x:log1p() end, pos }, { "sqrt", function(x) return x:sqrt() end, pos },
  { "abs", function(x) return x:abs() end }, { "sin", function(x) return x:sin() end },
  { "cos", function(x) return x:cos() end }, { "tanh", function(x) return x:tanh() end },
  { "sigmoid", function(x) return x:sigmoid() end }, { "relu", function(x) return x:relu() end },
  { "clamp(-0.5, 0.7)", function(x) return x:clamp(-0.5, 0.7) end },
  { "clamp(nil, 0.7)", function(x) return x:clamp(nil, 0.7) end },
  { "clamp(-0.5)", function(x) return x:clamp(-0.5) end },
}
for _, op in ipairs(UNARY) do
  local mk = op[3] or signed
  case(op[1] .. ", [2,3]", op[2], function() return { leaf(mk({ 2, 3 })) } end)
  case(op[1] .. ", 0-d", op[2], function() return { leaf(mk({})) } end)
  case(op[1] .. ", transposed", op[2], function() return { transposed({ 2, 3 }, mk) } end)
  case(op[1] .. ", narrowed", op[2], function() return { narrowed({ 2, 3 }, mk) } end)
  case(op[1] .. ", expanded", function(x) return op[2](x:expand(2, 3)) end,
    function() return { leaf(mk({ 3 })) } end)
end

-- where: the mask broadcasts too; either branch may be a number
local function mask(shape) return rnd(shape):gt(0) end
local mask_31, mask_34 = mask({ 3, 1 }), mask({ 3, 4 })
case("where(mask [3,1], a [1,4], b [3,4])", function(a, b) return T.where(mask_31, a, b) end,
  function() return { leaf(rnd({ 1, 4 })), leaf(rnd({ 3, 4 })) } end)
case("where(mask [3,4], a [4], 2)", function(a) return T.where(mask_34, a, 2) end,
  function() return { leaf(rnd({ 4 })) } end)
case("where(mask [3,4], -1, b transposed)", function(b) return T.where(mask_34, -1, b) end,
  function() return { transposed({ 3, 4 }) } end)

-- matmul in all its forms
local const_23 = rnd({ 2, 3 })
local MATMUL = {
  { "[2,3] @ [3,4]", { 2, 3 }, { 3, 4 } },
  { "[3] @ [3,4]", { 3 }, { 3, 4 } },
  { "[2,3] @ [3]", { 2, 3 }, { 3 } },
  { "[3] @ [3]", { 3 }, { 3 } },
  { "[2,2,3] @ [3,4]", { 2, 2, 3 }, { 3, 4 } },
  { "[2,3] @ [2,3,4]", { 2, 3 }, { 2, 3, 4 } },
  { "[2,2,3] @ [2,3,4]", { 2, 2, 3 }, { 2, 3, 4 } },
  { "[2,1,2,3] @ [3,3,2] (broadcast batch)", { 2, 1, 2, 3 }, { 3, 3, 2 } },
  { "[1,2,3] @ [2,3,2] (broadcast batch)", { 1, 2, 3 }, { 2, 3, 2 } },
  { "[3] @ [2,3,4]", { 3 }, { 2, 3, 4 } },
  { "[2,2,3] @ [3]", { 2, 2, 3 }, { 3 } },
}
for _, m in ipairs(MATMUL) do
  case("matmul " .. m[1], function(a, b) return a:matmul(b) end,
    function() return { leaf(rnd(m[2])), leaf(rnd(m[3])) } end)
end
case("matmul transposed @ narrowed", function(a, b) return a:matmul(b) end,
  function() return { transposed({ 2, 3 }), narrowed({ 3, 4 }) } end)
case("matmul [2,3] @ b.T inside fn", function(a, b) return a:matmul(b.T) end,
  function() return { leaf(rnd({ 2, 3 })), leaf(rnd({ 4, 3 })) } end)
case("matmul expanded batch", function(a, b) return a:expand(2, 2, 3):matmul(b) end,
  function() return { leaf(rnd({ 2, 3 })), leaf(rnd({ 2, 3, 4 })) } end)
case("matmul with only b requiring grad", function(b) return const_23:matmul(b) end,
  function() return { leaf(rnd({ 3, 4 })) } end)
case("dot", function(a, b) return a:dot(b) end, function() return { leaf(rnd({ 4 })), leaf(rnd({ 4 })) } end)
case("dot of narrowed", function(a, b) return a:dot(b) end,
  function() return { leaf(rnd({ 7 }):narrow(1, 2, 4)), leaf(rnd({ 4 })) } end)
case("outer", function(a, b) return a:outer(b) end, function() return { leaf(rnd({ 3 })), leaf(rnd({ 4 })) } end)

-- reductions, with every way to name the dimension
local REDUCE = {
  { "sum()", function(x) return x:sum() end }, { "sum(1)", function(x) return x:sum(1) end },
  { "sum(2, true)", function(x) return x:sum(2, true) end }, { "sum(-1)", function(x) return x:sum(-1) end },
  { "sum{dim=-2, keepdim=true}", function(x) return x:sum { dim = -2, keepdim = true } end },
  { "sum(nil, true)", function(x) return x:sum(nil, true) end },
  { "mean()", function(x) return x:mean() end }, { "mean(2)", function(x) return x:mean(2) end },
  { "mean(-2, true)", function(x) return x:mean(-2, true) end },
  { "mean{dim=1}", function(x) return x:mean { dim = 1 } end },
  { "prod()", function(x) return x:prod() end, signed }, { "prod(2)", function(x) return x:prod(2) end, signed },
  { "prod(1, true)", function(x) return x:prod(1, true) end, signed },
  { "max()", function(x) return x:max() end }, { "max(2)", function(x) return (x:max(2)) end },
  { "max(1, true)", function(x) return (x:max(1, true)) end },
  { "max{dim=-1, keepdim=true}", function(x) return (x:max { dim = -1, keepdim = true }) end },
  { "min()", function(x) return x:min() end }, { "min(1)", function(x) return (x:min(1)) end },
  { "min(-1, true)", function(x) return (x:min(-1, true)) end },
  { "min{dim=2}", function(x) return (x:min { dim = 2 }) end },
  { "var()", function(x) return x:var() end }, { "var(1)", function(x) return x:var(1) end },
  { "var(2, true)", function(x) return x:var(2, true) end },
  { "var(-1, false, false)", function(x) return x:var(-1, false, false) end },
  { "var{dim=1, unbiased=false}", function(x) return x:var { dim = 1, unbiased = false } end },
  { "var{unbiased=false}", function(x) return x:var { unbiased = false } end },
  { "std()", function(x) return x:std() end }, { "std(2)", function(x) return x:std(2) end, nil, "flat" },
  { "std(1, true, false)", function(x) return x:std(1, true, false) end },
  { "std{dim=-1, keepdim=true}", function(x) return x:std { dim = -1, keepdim = true } end, nil, "flat" },
  { "norm()", function(x) return x:norm() end }, { "norm(1)", function(x) return x:norm(1) end },
  { "norm(3)", function(x) return x:norm(3) end }, { "norm(math.huge)", function(x) return x:norm(math.huge) end },
  { "norm(2, 2)", function(x) return x:norm(2, 2) end }, { "norm(1, 1, true)", function(x) return x:norm(1, 1, true) end },
  { "norm(3, -1)", function(x) return x:norm(3, -1) end },
  { "norm(math.huge, 2)", function(x) return x:norm(math.huge, 2) end },
  { "norm(2, {dim=1, keepdim=true})", function(x) return x:norm(2, { dim = 1, keepdim = true }) end },
  { "logsumexp()", function(x) return x:logsumexp() end },
  { "logsumexp(2)", function(x) return x:logsumexp(2) end },
  { "logsumexp(-2, true)", function(x) return x:logsumexp(-2, true) end },
  { "softmax(1)", function(x) return x:softmax(1) end }, { "softmax(-1)", function(x) return x:softmax(-1) end },
  { "log_softmax(2)", function(x) return x:log_softmax(2) end },
  { "log_softmax(-2)", function(x) return x:log_softmax(-2) end },
}
for _, op in ipairs(REDUCE) do
  local mk = op[3] or signed
  case(op[1] .. ", [3,4]", op[2], function() return { leaf(mk({ 3, 4 })) } end)
  case(op[1] .. ", transposed", op[2], function() return { transposed({ 3, 4 }, mk) } end)
  case(op[1] .. ", narrowed", op[2], function() return { narrowed({ 3, 4 }, mk) } end)
  -- (the std of the constant rows of an expanded [3,1] has no derivative)
  if op[4] ~= "flat" then
    case(op[1] .. ", expanded", function(x) return op[2](x:expand(3, 4)) end,
      function() return { leaf(mk({ 3, 1 })) } end)
  end
end
case("sum(), 1-d", function(x) return x:sum() end, function() return { leaf(rnd({ 5 })) } end)
case("max(1), 3-d", function(x) return (x:max(2)) end, function() return { leaf(rnd({ 2, 3, 4 })) } end)
case("norm(), 3-d", function(x) return x:norm(2, 3) end, function() return { leaf(rnd({ 2, 3, 4 })) } end)
case("softmax(2), 3-d", function(x) return x:softmax(2) end, function() return { leaf(rnd({ 2, 3, 4 })) } end)

-- views and copies
local VIEW = {
  { "reshape(4,3)", function(x) return x:reshape(4, 3) end },
  { "reshape{2,-1}", function(x) return x:reshape { 2, -1 } end },
  { "transpose(1,2)", function(x) return x:transpose(1, 2) end },
  { "transpose(-1,1)", function(x) return x:transpose(-1, 1) end },
  { "t()", function(x) return x:t() end }, { ".T", function(x) return x.T end },
  { "narrow(2,2,2)", function(x) return x:narrow(2, 2, 2) end },
  { "narrow(-1,-2,2)", function(x) return x:narrow(-1, -2, 2) end },
  { "select(1,2)", function(x) return x:select(1, 2) end },
  { "select(-1,-1)", function(x) return x:select(-1, -1) end },
  { "unsqueeze(1)", function(x) return x:unsqueeze(1) end },
  { "unsqueeze(-1)", function(x) return x:unsqueeze(-1) end },
  { "unsqueeze(2):expand(3,2,4)", function(x) return x:unsqueeze(2):expand(3, 2, 4) end },
  { "unsqueeze(1):squeeze()", function(x) return x:unsqueeze(1):squeeze() end },
  { "unsqueeze(3):squeeze(3)", function(x) return x:unsqueeze(3):squeeze(3) end },
  { "flatten()", function(x) return x:flatten() end },
  { "contiguous()", function(x) return x:contiguous() end },
  { "clone()", function(x) return x:clone() end },
  { "astype('float64')", function(x) return x:astype("float64") end },
  { "permute(2,1)", function(x) return x:permute(2, 1) end },
  { "index_select(1, {3,1,3})", function(x) return x:index_select(1, { 3, 1, 3 }) end },
  { "index_select(-1, tensor)", function(x) return x:index_select(-1, T.tensor { 4, 4, 2 }) end },
  { "gather(2, idx)", function(x) return x:gather(2, T.tensor { { 1, 1 }, { 4, 2 }, { 3, 3 } }) end },
  { "gather(1, {{..}})", function(x) return x:gather(1, { { 3, 1, 2, 3 }, { 1, 1, 1, 2 } }) end },
  { "gather(-1, idx)", function(x) return x:gather(-1, T.tensor { { 2 }, { 4 }, { 1 } }) end },
}
for _, op in ipairs(VIEW) do
  case(op[1] .. ", [3,4]", op[2], function() return { leaf(rnd({ 3, 4 })) } end)
  case(op[1] .. ", transposed", op[2], function() return { transposed({ 3, 4 }) } end)
  case(op[1] .. ", narrowed", op[2], function() return { narrowed({ 3, 4 }) } end)
end
local VIEW3 = {
  { "permute(3,1,2)", function(x) return x:permute(3, 1, 2) end },
  { "permute{2,3,1}", function(x) return x:permute { 2, 3, 1 } end },
  { "permute(-1,-3,-2)", function(x) return x:permute(-1, -3, -2) end },
  { "view(6,4)", function(x) return x:contiguous():view(6, 4) end },
  { "flatten(2,3)", function(x) return x:flatten(2, 3) end },
  { "flatten(1,2)", function(x) return x:flatten(1, 2) end },
  { "transpose(1,3)", function(x) return x:transpose(1, 3) end },
  { "narrow(3,2,2):select(1,2)", function(x) return x:narrow(3, 2, 2):select(1, 2) end },
  { "index_select(2, {2,2})", function(x) return x:index_select(2, { 2, 2 }) end },
}
for _, op in ipairs(VIEW3) do
  case(op[1] .. ", [2,3,4]", op[2], function() return { leaf(rnd({ 2, 3, 4 })) } end)
  case(op[1] .. ", permuted", op[2], function() return { leaf(rnd({ 4, 2, 3 }):permute(2, 3, 1)) } end)
end
case("expand(2,3,4) of [3,1]", function(x) return x:expand(2, 3, 4) end, function() return { leaf(rnd({ 3, 1 })) } end)
case("expand{2,-1,4} of [3,1] transposed", function(x) return x:expand { 2, -1, 4 } end,
  function() return { transposed({ 3, 1 }) } end)
case("expand_as", function(x, y) return x:expand_as(y) * y end,
  function() return { leaf(rnd({ 1, 4 })), leaf(rnd({ 3, 4 })) } end)
case("squeeze() of [1,3,1]", function(x) return x:squeeze() end, function() return { leaf(rnd({ 1, 3, 1 })) } end)
case("squeeze(-1) of [3,1]", function(x) return x:squeeze(-1) end, function() return { leaf(rnd({ 3, 1 })) } end)

-- compositions: a layer, a loss, a shared input
case("tanh(x @ w + b):sum()", function(x, w, b) return (x:matmul(w) + b):tanh():sum() end,
  function() return { leaf(rnd({ 4, 3 })), leaf(rnd({ 3, 2 })), leaf(rnd({ 2 })) } end)
case("cross entropy by hand", function(z)
  return -(z:log_softmax(2):gather(2, { { 2 }, { 1 }, { 3 } })):mean()
end, function() return { leaf(rnd({ 3, 4 })) } end)
case("x*x + x:sin()*x", function(x) return x * x + x:sin() * x end, function() return { leaf(rnd({ 2, 3 })) } end)
case("softmax(x) @ x.T", function(x) return x:softmax(2):matmul(x.T) end, function() return { leaf(rnd({ 3, 4 })) } end)

-- ---- specs ------------------------------------------------------------------------------

describe("pbt.gradcheck", function()
  describe("every differentiable op against finite differences", function()
    for _, c in ipairs(cases) do
      it(c.name, function()
        local ok, msg = pbt.gradcheck(c.fn, c.inputs())
        assert.is_true(ok, msg)
      end)
    end
  end)

  describe("can fail", function()
    -- an op written in Lua, recorded with a rule that is registered by the test
    local function double(x)
      local y = pbt.no_grad(function() return x * 2 end)
      autograd.record("spec_double", 1, y, x)
      return y
    end
    after_each(function() autograd.rules.spec_double = nil end)

    it("passes with the right rule", function()
      autograd.rules.spec_double = function(_, g) return g * 2 end
      assert.is_true(pbt.gradcheck(double, { leaf(T.tensor({ 0.5, -0.25 }, { dtype = "float64" })) }))
    end)

    it("fails with a wrong rule and names input, element, output and values", function()
      autograd.rules.spec_double = function(_, g) return g * 3 end
      local x = leaf(T.tensor({ 0.5, -0.25 }, { dtype = "float64" }))
      local ok, msg = pbt.gradcheck(double, { x }, 2 ^ -20)
      assert.is_false(ok)
      assert.are.equal("gradcheck: input 1, element 1, output 1: analytic 3, numeric 2", msg)
    end)

    it("fails when a rule is wrong off the diagonal only", function()
      -- right for element 1, wrong (zero) for element 2
      autograd.rules.spec_double = function(_, g) return g * T.tensor({ 2, 0 }, { dtype = "float64" }) end
      local ok, msg = pbt.gradcheck(double, { leaf(T.tensor({ 0.5, -0.25 }, { dtype = "float64" })) }, 2 ^ -20)
      assert.is_false(ok)
      assert.are.equal("gradcheck: input 1, element 2, output 2: analytic 0, numeric 2", msg)
    end)

    it("fails when a built-in rule is replaced by a wrong one", function()
      local exp_rule = autograd.rules.exp
      autograd.rules.exp = function(n, g) return g * n.outs[1] * 1.001 end
      local ok, res = pcall(pbt.gradcheck, function(x) return x:exp() end, { leaf(rnd({ 3 })) })
      autograd.rules.exp = exp_rule
      assert.is_true(ok, res)
      assert.is_false(res)
    end)

    it("fails on a gradient that is NaN", function()
      autograd.rules.spec_double = function(_, g) return g * (0 / 0) end
      local ok, msg = pbt.gradcheck(double, { leaf(T.tensor({ 0.5 }, { dtype = "float64" })) }, 2 ^ -20)
      assert.is_false(ok)
      assert.matches("^gradcheck: input 1, element 1, output 1: analytic [-]?nan, numeric 2$", msg)
    end)

    it("counts a missing gradient as zero", function()
      -- fn depends on x but the graph is cut: analytic 0, numeric 1
      local ok, msg = pbt.gradcheck(function(x) return x:detach() + 0 end,
        { leaf(T.tensor({ 0.5 }, { dtype = "float64" })) }, 2 ^ -20)
      assert.is_false(ok)
      assert.are.equal("gradcheck: input 1, element 1, output 1: analytic 0, numeric 1", msg)
    end)
  end)

  describe("arguments", function()
    it("needs float64 leaves that require grad and do not share memory", function()
      local x32 = leaf(T.ones(2))
      assert.are.equal("gradcheck: input 1 must be a float64 tensor that requires grad",
        error_of(pbt.gradcheck, function(x) return x end, { x32 }))
      assert.are.equal("gradcheck: input 2 must be a float64 tensor that requires grad",
        error_of(pbt.gradcheck, function(x) return x end, { leaf(rnd({ 2 })), rnd({ 2 }) }))
      local y = leaf(rnd({ 2 }))
      assert.are.equal("gradcheck: input 1 must be a leaf (the result of an op is not; use " ..
        "t:detach():requires_grad_())", error_of(pbt.gradcheck, function(x) return x end, { y * 2 }))
      local e = rnd({ 3, 1 }):expand(3, 2):requires_grad_()
      assert.are.equal("gradcheck: input 1 is expanded (its elements share memory); expand it inside fn",
        error_of(pbt.gradcheck, function(x) return x end, { e }))
    end)

    it("leaves the inputs unchanged and their grads nil", function()
      local x = leaf(T.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "float64" }).T)
      assert.is_true(pbt.gradcheck(function(a) return a * a end, { x }))
      assert.are.same({ 1, 3, 2, 4 }, flat(x:detach()))
      assert.is_nil(x.grad)
    end)
  end)
end)

describe("pbt autograd", function()
  for _, dtype in ipairs({ "float32", "float64" }) do
    describe(dtype, function()
      local function vec(t) return T.tensor(t, { dtype = dtype }) end

      it("d/dx sum(x*x) = 2x", function()
        local x = vec({ 1, -2, 3 }):requires_grad_()
        local y = (x * x):sum()
        y:backward()
        assert.are.equal(dtype, x.grad:dtype())
        assert.are.same({ 2, -4, 6 }, x.grad:totable())
        assert.is_nil(y.grad) -- a non-leaf keeps no .grad
      end)

      it("accumulates over backward calls until t.grad = nil", function()
        local x = vec({ 1, 2, 3 }):requires_grad_()
        local y = (x * x):sum()
        y:backward()
        y:backward()
        assert.are.same({ 4, 8, 12 }, x.grad:totable())
        ;(x * 5):sum():backward()
        assert.are.same({ 9, 13, 17 }, x.grad:totable())
        x.grad = nil
        assert.is_nil(x.grad)
        y:backward()
        assert.are.same({ 2, 4, 6 }, x.grad:totable())
      end)

      it("does not alias the first gradient it stores", function()
        local x = vec({ 1, 2 }):requires_grad_()
        local g = vec({ 10, 20 })
        x:backward(g)
        x:backward(g)
        assert.are.same({ 20, 40 }, x.grad:totable())
        assert.are.same({ 10, 20 }, g:totable())
      end)

      it("takes an explicit grad", function()
        local x = vec({ 1, 2, 3 }):requires_grad_()
        local y = x * 3
        y:backward(vec({ 1, 10, 100 }))
        assert.are.same({ 3, 30, 300 }, x.grad:totable())
        local w = vec({ { 1, 2 }, { 3, 4 } }):requires_grad_()
        ;(w * w):backward(vec({ { 1, 0 }, { 0, 2 } }).T)
        assert.are.same({ { 2, 0 }, { 0, 16 } }, w.grad:totable())
      end)

      it("sums the gradients of a tensor used twice", function()
        local x = vec({ 1, 2, 3 }):requires_grad_()
        local y = x * x + (x + x) -- 2x + 2
        y:sum():backward()
        assert.are.same({ 4, 6, 8 }, x.grad:totable())
        local z = vec({ 2 }):requires_grad_()
        local p = z * z
        ;(p * p + p):sum():backward() -- 4z^3 + 2z at 2: 36
        assert.are.same({ 36 }, z.grad:totable())
      end)

      it("propagates requires_grad from any input", function()
        local a, b = vec({ 1, 2 }), vec({ 3, 4 }):requires_grad_()
        local c = a + b
        assert.is_true(c.requires_grad)
        assert.is_false(a.requires_grad)
        ;(a * c):sum():backward()
        assert.is_nil(a.grad)
        assert.are.same({ 1, 2 }, b.grad:totable())
        assert.is_false((a * 2).requires_grad)
        assert.is_nil((a * 2).grad_fn)
      end)

      it("detach cuts the graph and shares the storage", function()
        local x = vec({ 1, 2 }):requires_grad_()
        local y = x * 3
        local d = y:detach()
        assert.is_false(d.requires_grad)
        assert.is_nil(d.grad_fn)
        assert.is_true(d:is_leaf())
        ;(d * x):sum():backward() -- d is a constant: grad = d
        assert.are.same({ 3, 6 }, x.grad:totable())
        x:detach():fill_(7)
        assert.are.same({ 7, 7 }, x:detach():totable())
      end)

      it("tells leaves from results of ops", function()
        local x = vec({ 1, 2 })
        assert.is_true(x:is_leaf())
        x:requires_grad_()
        assert.is_true(x:is_leaf())
        assert.is_nil(x.grad_fn)
        local y = x:exp()
        assert.is_false(y:is_leaf())
        assert.are.equal("exp", y.grad_fn.op)
        assert.are.equal(x, y.grad_fn.args[1])
        assert.are.equal(y, y.grad_fn.outs[1])
        assert.are.equal("requires_grad_: only a leaf tensor can stop requiring grad (use t:detach())",
          error_of(y.requires_grad_, y, false))
        x:requires_grad_(false)
        assert.is_false(x.requires_grad)
      end)

      it("gives the same node table at each look, with the op's arguments and result", function()
        local x, w = vec({ 1, 2 }):requires_grad_(), vec({ 3, 4 })
        local y = x:add(w, 0.5)
        local node = y.grad_fn
        assert.are.equal(node, y.grad_fn)
        assert.are.equal("add", node.op)
        assert.are.equal(3, node.args.n)
        assert.are.equal(x, node[1])
        assert.are.equal(w, node.args[2])
        assert.are.equal(0.5, node.args[3])
        assert.are.equal(y, node.out)
        assert.are.equal(y, node.outs[1])
        assert.is_nil(node.outs[2])
        -- an op of more arguments than a tensor keeps (conv2d: 8) is recorded too
        local img = T.ones(1, 1, 3, 3, { dtype = "float64" }):requires_grad_()
        local k = T.ones(1, 1, 2, 2, { dtype = "float64" })
        local c = pbt.nn.conv2d(img, k)
        assert.are.equal("conv2d", c.grad_fn.op)
        assert.are.equal(img, c.grad_fn.args[1])
        assert.are.equal(8, c.grad_fn.args.n)
      end)

      it("lets no gradient through the indices of max and min", function()
        local x = vec({ { 1, 5 }, { 4, 2 } }):requires_grad_()
        local v, i = x:max(2)
        assert.is_true(v.requires_grad)
        assert.is_false(i.requires_grad)
        ;(v * vec({ 10, 20 })):sum():backward()
        assert.are.same({ { 0, 10 }, { 20, 0 } }, x.grad:totable())
      end)

      it("shares the gradient of max/min over all among tied elements", function()
        local x = vec({ 1, 3, 3, -1 }):requires_grad_()
        x:max():backward()
        assert.are.same({ 0, 0.5, 0.5, 0 }, x.grad:totable())
        x.grad = nil
        x:min():backward()
        assert.are.same({ 0, 0, 0, 1 }, x.grad:totable())
      end)

      it("keeps float32 gradients float32 for every kind of op", function()
        if dtype ~= "float32" then return end
        local x = T.tensor({ { 0.5, -1 }, { 2, 0.25 } }):requires_grad_()
        local w = T.tensor({ { 1, 2 }, { 3, 4 } }):requires_grad_()
        local loss = (x:matmul(w):softmax(2) * x:exp()):sum()
          + x:max(1):sum() + x:norm(math.huge) + x:index_select(1, { 2 }):sum()
          + T.where(x:gt(0), x, 0):sum() + x:astype("float64"):sum():astype("float32")
          + x:gather(2, { { 1 }, { 2 } }):sum() + x:var() + x:logsumexp(1):sum()
        loss:backward()
        assert.are.equal("float32", x.grad:dtype())
        assert.are.equal("float32", w.grad:dtype())
      end)
    end)
  end

  -- where the textbook formula divides by zero (values worked out by hand)
  describe("rules at zeros", function()
    local function grad_of(fn, values)
      local x = T.tensor(values, { dtype = "float64" }):requires_grad_()
      fn(x):backward()
      return x.grad:totable()
    end
    it("prod: the product of the others", function()
      assert.are.same({ 12, 8, 6 }, grad_of(function(x) return x:prod() end, { 2, 3, 4 }))
      assert.are.same({ 0, 8, 0 }, grad_of(function(x) return x:prod() end, { 2, 0, 4 }))
      assert.are.same({ 0, 0, 0 }, grad_of(function(x) return x:prod() end, { 0, 0, 4 }))
      assert.are.same({ { 0, 5 }, { 7, 0 } }, grad_of(function(x) return x:prod(2):sum() end,
        { { 5, 0 }, { 0, 7 } }))
      assert.are.same({ { 3, 0 }, { 0, 2 } }, grad_of(function(x) return x:prod(1, true):sum() end,
        { { 0, 2 }, { 3, 0 } }))
    end)
    it("pow: x^0 has gradient 0 (also at 0), a^b at a = 0 has d/db 0", function()
      assert.are.same({ 0, 0 }, grad_of(function(x) return (x ^ 0):sum() end, { 0, 2 }))
      assert.are.same({ 1, 1 }, grad_of(function(x) return (x ^ 1):sum() end, { 0, 2 }))
      assert.are.same({ 0, 4 }, grad_of(function(x) return (x ^ 2):sum() end, { 0, 2 }))
      local b = T.tensor({ 2, 3 }, { dtype = "float64" }):requires_grad_()
      ;(T.tensor({ 0, 2 }, { dtype = "float64" }) ^ b):sum():backward()
      assert.are.same({ 0, 8 * math.log(2) }, b.grad:totable())
      local e = T.tensor({ 0, 1 }, { dtype = "float64" }):requires_grad_()
      ;(T.tensor({ 0, 3 }, { dtype = "float64" }) ^ e):sum():backward() -- 0^0 = 1
      assert.are.same({ math.log(0) * 1, math.log(3) * 3 }, e.grad:totable())
    end)
    it("norm: 0 at the zero vector, for every p", function()
      for _, p in ipairs({ 0, 1, 2, 3, math.huge }) do
        assert.are.same({ 0, 0 }, grad_of(function(x) return x:norm(p) end, { 0, 0 }))
      end
      assert.are.same({ { 0, 0 }, { 0.6, 0.8 } }, grad_of(function(x) return x:norm(2, 2):sum() end,
        { { 0, 0 }, { 3, 4 } }))
    end)
  end)

  describe("astype", function()
    it("gives the gradient back in the input's dtype", function()
      local x = T.tensor({ 1, 2 }):requires_grad_()
      ;(x:astype("float64") * T.tensor({ 3, 4 }, { dtype = "float64" })):sum():backward()
      assert.are.equal("float32", x.grad:dtype())
      assert.are.same({ 3, 4 }, x.grad:totable())
    end)
  end)

  describe(":backward()", function()
    it("needs a grad for a non-scalar", function()
      local y = T.ones(2, 3):requires_grad_() * 2
      assert.are.equal("backward: grad must be given for a tensor of 6 elements (only a scalar " ..
        "has an implicit grad of 1)", error_of(y.backward, y))
    end)

    it("hands on Ctrl-C as it is, even with a released tensor in the graph", function()
      -- lua.c's hook raises "interrupted!" at the next call after Ctrl-C:
      -- here, at the call of the sum's rule, before the mul's (whose w is released)
      local x, w = T.ones(2):requires_grad_(), T.ones(2)
      local z = (x * w):sum()
      getmetatable(w).__close(w)
      local rule = autograd.rules.sum
      assert.is_function(rule)
      debug.sethook(function()
        if debug.getinfo(2, "f").func == rule then
          debug.sethook()
          error("interrupted!", 0)
        end
      end, "c")
      local ok, err = pcall(z.backward, z)
      debug.sethook()
      assert.is_false(ok)
      assert.are.equal("interrupted!", err)
      assert.is_true(pbt.is_grad_enabled())
      assert.are.equal("backward: argument 2 of 'mul' has been released", error_of(z.backward, z))
    end)

    it("refuses a tensor that does not require grad", function()
      local y = T.ones(2) * 2
      assert.are.equal("backward: the tensor does not require grad (no input of it called " ..
        "requires_grad_())", error_of(y.backward, y))
    end)

    it("names a released tensor: the loss, the grad or one in the graph", function()
      local function released(t)
        getmetatable(t).__close(t)
        return t
      end
      local x = T.ones(2):requires_grad_()
      local loss = released((x * 2):sum())
      assert.are.equal("calling 'backward' on bad self (tensor has been released)",
        error_of(autograd.backward, loss))
      assert.are.equal("calling 'backward' on bad self (pbt.Tensor expected, got number)",
        error_of(autograd.backward, 3))
      local y = x * 2
      assert.are.equal("bad argument #1 to 'backward' (tensor has been released)",
        error_of(y.backward, y, released(T.ones(2))))
      local w = T.ones(2)
      local z = (x * w):sum()
      released(w)
      assert.are.equal("backward: argument 2 of 'mul' has been released", error_of(z.backward, z))
      assert.is_true(pbt.is_grad_enabled())
      assert.are.equal("gradcheck: input 1 has been released", error_of(pbt.gradcheck,
        function(a) return a end, { released(T.ones(2, { dtype = "float64" }):requires_grad_()) }))
      assert.are.equal("bad argument #1 to 'no_grad' (function expected, got number)",
        error_of(pbt.no_grad, 5))
      -- a callable table is a function here
      local callable = setmetatable({}, { __call = function(_, v) return v + 1 end })
      assert.are.equal(3, pbt.no_grad(callable, 2))
    end)

    it("checks the grad's type, shape and dtype", function()
      local y = T.ones(2, 3):requires_grad_() * 2
      assert.are.equal("bad argument #1 to 'backward' (pbt.Tensor expected, got number)",
        error_of(y.backward, y, 1))
      assert.are.equal("backward: a float32 grad of shape [3,2] cannot be the grad of a float32 " ..
        "tensor of shape [2,3]", error_of(y.backward, y, T.ones(3, 2)))
      assert.are.equal("backward: a float64 grad of shape [2,3] cannot be the grad of a float32 " ..
        "tensor of shape [2,3]", error_of(y.backward, y, T.ones(2, 3, { dtype = "float64" })))
    end)

    it("works on a leaf", function()
      local x = T.tensor({ 1, 2 }):requires_grad_()
      x:backward(T.tensor({ 3, 4 }))
      assert.are.same({ 3, 4 }, x.grad:totable())
      local s = T.tensor(5):requires_grad_()
      s:backward()
      assert.are.same(1, s.grad:item())
    end)

    it("restores grad mode when a rule fails", function()
      autograd.rules.spec_fail = function() error("spec_fail: broken rule", 0) end
      local x = T.ones(2):requires_grad_()
      local y = pbt.no_grad(function() return x * 1 end)
      autograd.record("spec_fail", 1, y, x)
      assert.are.equal("spec_fail: broken rule", error_of(function() y:sum():backward() end))
      autograd.rules.spec_fail = nil
      assert.is_true(pbt.is_grad_enabled())
    end)

    it("names an op without a rule", function()
      local x = T.ones(2):requires_grad_()
      local y = pbt.no_grad(function() return x * 1 end)
      autograd.record("spec_norule", 1, y, x)
      assert.are.equal("backward: no gradient rule for 'spec_norule'",
        error_of(function() y:sum():backward() end))
    end)

    it("replaces the node of a tensor recorded again", function()
      local x, w = T.ones(2):requires_grad_(), T.full({ 2 }, 3):requires_grad_()
      local y = pbt.no_grad(function() return x * 1 end)
      autograd.record("mul", 1, y, x, 2)
      local first = y.grad_fn
      assert.are.equal(x, first.args[1])
      autograd.record("mul", 1, y, w, 5)
      assert.are_not.equal(first, y.grad_fn)
      assert.are.equal(w, y.grad_fn.args[1])
      assert.are.equal(5, y.grad_fn.args[2])
      y:sum():backward()
      assert.is_nil(x.grad)
      assert.are.same({ 5, 5 }, w.grad:totable())
    end)

    it("orders the graph: every node after the nodes of its arguments", function()
      -- a diamond (a feeds b and c, both feed d), a tensor used twice, a leaf
      -- used at several depths
      local x = T({ 1, 2 }):requires_grad_()
      local a = x:exp()
      local b, c = a * x, a:sin()
      local d = (b + c) * a
      local order = require("pbt.core").graph(d)
      local pos = {}
      for i, node in ipairs(order) do pos[node] = i end
      assert.are.equal(5, #order) -- exp, mul, sin, add, mul: each once
      for i, node in ipairs(order) do
        for k = 1, node.args.n do
          local arg = node.args[k]
          if autograd.is_tensor(arg) and not arg:is_leaf() then
            assert.is_true(pos[arg.grad_fn] < i, node.op .. " before its argument's " .. arg.grad_fn.op)
          end
        end
      end
      assert.are.equal(d.grad_fn, order[5])
      assert.are.equal(a.grad_fn, order[1])
      -- and the gradient through it: d = (a x + sin a) a with a = e^x
      d:sum():backward()
      local want = {}
      for i, v in ipairs({ 1, 2 }) do
        local e = math.exp(v)
        -- d/dx [(e x + sin e) e] = (e x + e + cos(e) e) e + (e x + sin e) e
        want[i] = (e * v + e + math.cos(e) * e) * e + (e * v + math.sin(e)) * e
      end
      local got = x.grad:totable()
      for i = 1, 2 do assert.is_true(math.abs(got[i] - want[i]) <= 1e-4 * math.abs(want[i])) end
    end)

    it("records nothing, and cannot crash, when pbt.autograd was never loaded", function()
      local env = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)
      local script = [[
        local c = require("pbt.core")
        local t = c.tensor.zeros(2):requires_grad_()
        local y = t * 2
        c.record("x", 1, y, t)
        c.record("x", 2, y, t, t, 1, 2, 3, 4, 5)
        assert(y.grad_fn == nil and y:is_leaf() and #c.graph(y) == 0)
        for k in pairs(getmetatable(t)) do assert(type(k) == "string", "a private key") end
        print("fine")
      ]]
      local p = io.popen(env .. "lua5.4 -e '" .. script:gsub("'", "'\\''") .. "' 2>&1")
      local out = p:read("a")
      local ok = p:close()
      assert.is_true(ok, out)
      assert.are.equal("fine\n", out)
    end)

    it("names a rule that gives a grad of the wrong shape", function()
      autograd.rules.spec_shape = function(_, g) return g:sum() end
      local x = T.ones(2, 2):requires_grad_()
      local y = pbt.no_grad(function() return x * 1 end)
      autograd.record("spec_shape", 1, y, x)
      assert.are.equal("backward: the rule of 'spec_shape' gave a grad of shape [] for its " ..
        "argument 1 of shape [2,2]", error_of(function() y:sum():backward() end))
      autograd.rules.spec_shape = nil
    end)

    it("names a rule that gives something other than a tensor", function()
      autograd.rules.spec_number = function() return 1 end
      local x = T.ones(2):requires_grad_()
      local y = pbt.no_grad(function() return x * 1 end)
      autograd.record("spec_number", 1, y, x)
      assert.are.equal("backward: the rule of 'spec_number' gave a number for its argument 1 " ..
        "(a pbt.Tensor or nil expected)", error_of(function() y:sum():backward() end))
      autograd.rules.spec_number = nil
    end)

    it("passes a rule every argument of an op of more than three", function()
      local seen
      autograd.rules.spec_five = function(n, g)
        seen = n.args.n
        return nil, nil, nil, nil, g * 5
      end
      local x = T.ones(2):requires_grad_()
      local y = pbt.no_grad(function() return x * 1 end)
      autograd.record("spec_five", 1, y, 1, 2, 3, 4, x)
      y:sum():backward()
      assert.are.equal(5, seen)
      assert.are.same({ 5, 5 }, x.grad:totable())
      autograd.rules.spec_five = nil
    end)

    it("goes through a chain of 20000 ops without overflowing the stack", function()
      local x = T.tensor({ 1, 2 }, { dtype = "float64" }):requires_grad_()
      local y = x
      for i = 1, 20000 do
        if i % 2 == 0 then y = y * 1.0001 else y = y + 1 end
      end
      y:sum():backward()
      local expect = 1.0001 ^ 10000
      assert_close({ expect, expect }, x.grad, 1e-12)
    end)

    it("goes through a wide graph (one input used by 2000 ops)", function()
      local x = T.tensor({ 1, 2 }, { dtype = "float64" }):requires_grad_()
      local acc = x * 0
      for i = 1, 2000 do acc = acc + x * i end
      acc:sum():backward()
      assert.are.same({ 2001000, 2001000 }, x.grad:totable())
    end)
  end)

  describe(".grad", function()
    it("can be set to a tensor of the same shape and dtype, or nil", function()
      local x = T.ones(2, 3):requires_grad_()
      local g = T.full({ 2, 3 }, 0.5)
      x.grad = g
      assert.are.equal(g, x.grad)
      ;(x * 2):sum():backward()
      assert.are.same({ { 2.5, 2.5, 2.5 }, { 2.5, 2.5, 2.5 } }, x.grad:totable())
      x.grad = nil
      assert.is_nil(x.grad)
    end)

    it("refuses another shape or dtype, and other fields", function()
      local x = T.ones(2, 3):requires_grad_()
      assert.are.equal("grad: a float32 tensor of shape [3,2] cannot be the grad of a float32 " ..
        "tensor of shape [2,3]", error_of(function() x.grad = T.ones(3, 2) end))
      assert.are.equal("grad: a float64 tensor of shape [2,3] cannot be the grad of a float32 " ..
        "tensor of shape [2,3]", error_of(function() x.grad = T.ones(2, 3, { dtype = "float64" }) end))
      assert.are.equal("grad: a pbt.Tensor or nil expected, got number",
        error_of(function() x.grad = 1 end))
      assert.are.equal("cannot set field 'requires_grad' of a pbt.Tensor",
        error_of(function() x.requires_grad = false end))
    end)
  end)

  describe("in-place ops", function()
    local MSG = ": a tensor that requires grad cannot be modified in place (inside pbt.no_grad, " ..
      "or on t:detach(), it can)"
    local INPLACE = {
      { "add_", function(x) x:add_(1) end }, { "mul_", function(x) x:mul_(x) end },
      { "exp_", function(x) x:exp_() end }, { "clamp_", function(x) x:clamp_(0, 1) end },
      { "copy_", function(x) x:copy_(T.zeros(2)) end }, { "fill_", function(x) x:fill_(1) end },
      { "zero_", function(x) x:zero_() end },
      { "scatter_add_", function(x) x:scatter_add_(1, { 1 }, T.ones(1)) end },
      { "set", function(x) x:set(1, 5) end },
    }
    for _, op in ipairs(INPLACE) do
      it(op[1] .. " raises on a tensor that requires grad, works in no_grad", function()
        local x = T.ones(2):requires_grad_()
        assert.are.equal(op[1] .. MSG, error_of(op[2], x))
        assert.are.equal(op[1] .. MSG, error_of(op[2], x * 1)) -- a non-leaf too
        assert.are.same({ 1, 1 }, x:detach():totable())
        pbt.no_grad(op[2], x)
        op[2](x:detach())
        assert.is_true(pbt.is_grad_enabled())
      end)
    end

    it("refuses to write a tensor that requires grad into one that does not", function()
      local x = T.ones(2):requires_grad_()
      local buf = T.zeros(2)
      assert.are.equal("add_: the argument requires grad, the in-place result could not " ..
        "carry it (use the out-of-place op, or pbt.no_grad)", error_of(buf.add_, buf, x))
      assert.are.equal("copy_: the argument requires grad, the in-place result could not " ..
        "carry it (use the out-of-place op, or pbt.no_grad)", error_of(buf.copy_, buf, x))
      pbt.no_grad(function() buf:add_(x) end)
      assert.are.same({ 1, 1 }, buf:totable())
    end)
  end)

  describe("pbt.no_grad", function()
    it("returns fn's results and records nothing", function()
      local x = T.ones(2):requires_grad_()
      local n, y, seven, nothing = (function(...) return select("#", ...), ... end)(
        pbt.no_grad(function(a, b) return a * b, b, nil end, x, 7))
      assert.are.equal(3, n)
      assert.is_false(y.requires_grad)
      assert.is_nil(y.grad_fn)
      assert.are.equal(7, seven)
      assert.is_nil(nothing)
      assert.is_true(pbt.is_grad_enabled())
    end)

    it("turns recording off inside and restores it, even when fn raises", function()
      local inside
      pbt.no_grad(function() inside = pbt.is_grad_enabled() end)
      assert.is_false(inside)
      assert.are.equal("boom", error_of(pbt.no_grad, function() error("boom", 0) end))
      assert.is_true(pbt.is_grad_enabled())
      -- nested: the inner call restores "off"
      pbt.no_grad(function()
        pbt.no_grad(function() end)
        inside = pbt.is_grad_enabled()
      end)
      assert.is_false(inside)
      assert.is_true(pbt.is_grad_enabled())
    end)

    it("passes fn's yields on, with recording back on while fn is suspended", function()
      local x = T.ones(2):requires_grad_()
      local co = coroutine.create(function(a)
        local got = pbt.no_grad(function(v)
          local w = coroutine.yield(v + 1, pbt.is_grad_enabled())
          local z = coroutine.yield(w * 2, pbt.is_grad_enabled(), (x * 2).grad_fn)
          return z + 1, nil, 7
        end, a)
        return got, pbt.is_grad_enabled()
      end)
      local ok, v, inside = coroutine.resume(co, 10)
      assert.is_true(ok)
      assert.are.equal(11, v)
      assert.is_false(inside)
      -- suspended inside no_grad: the resumer records
      assert.is_true(pbt.is_grad_enabled())
      assert.are.equal("mul", (x * 2).grad_fn.op)
      local ok2, w2, inside2, node = coroutine.resume(co, 5)
      assert.is_true(ok2)
      assert.are.equal(10, w2)
      assert.is_false(inside2)
      assert.is_nil(node)
      local ok3, got, after = coroutine.resume(co, 100)
      assert.is_true(ok3)
      assert.are.equal(101, got)
      assert.is_true(after)
      assert.are.equal("dead", coroutine.status(co))
      -- a coroutine dropped while suspended inside no_grad changes nothing
      local dropped = coroutine.wrap(function() pbt.no_grad(coroutine.yield) end)
      dropped()
      dropped = nil
      collectgarbage()
      assert.is_true(pbt.is_grad_enabled())
      -- yielding from no_grad outside any coroutine is Lua's usual error, mode restored
      assert.is_truthy(error_of(pbt.no_grad, coroutine.yield):find("outside a coroutine", 1, true))
      assert.is_true(pbt.is_grad_enabled())
    end)

    it("runs fn in the caller's thread: coroutine.running, callbacks and <close> work", function()
      local x = T.ones(2):requires_grad_()
      -- a callback scheduler: fn saves its coroutine, yields, and the callback resumes it
      local pending, results
      local task = coroutine.wrap(function()
        local co = coroutine.create(function()
          local me = coroutine.running()
          local v, on, node = pbt.no_grad(function()
            assert.are.equal(me, coroutine.running())
            pending = function(w) return coroutine.resume(me, w) end
            local w = coroutine.yield()
            return w, pbt.is_grad_enabled(), (x * 2).grad_fn
          end)
          results = { v, on, node }
        end)
        coroutine.resume(co)
      end)
      task()
      assert.is_true(pbt.is_grad_enabled()) -- the task is suspended inside no_grad
      assert.are.equal("mul", (x * 2).grad_fn.op)
      assert.is_true(pending(42))           -- the callback resumes it directly
      assert.are.equal(42, results[1])
      assert.is_false(results[2])
      assert.is_nil(results[3])
      assert.is_true(pbt.is_grad_enabled())
      -- fn's to-be-closed variables are closed when it raises
      local closed = false
      local h = setmetatable({}, { __close = function() closed = true end })
      assert.are.equal("boom", error_of(pbt.no_grad, function()
        local c <close> = h
        error("boom", 0)
      end))
      assert.is_true(closed)
      assert.is_true(pbt.is_grad_enabled())
      -- results and arguments keep their nils
      local n, a, b, c = (function(...) return select("#", ...), ... end)(
        pbt.no_grad(function(p, q, r) return p, q, r end, nil, 2, nil))
      assert.are.equal(3, n)
      assert.is_nil(a)
      assert.are.equal(2, b)
      assert.is_nil(c)
      -- a table raised by fn comes through as it is
      local err = {}
      local ok, got = pcall(pbt.no_grad, function() error(err) end)
      assert.is_false(ok)
      assert.are.equal(err, got)
    end)

    it("leaves set_grad_enabled's flag alone, and wins over it while fn runs", function()
      local x = T.ones(2):requires_grad_()
      pbt.no_grad(function()
        local prev = pbt.set_grad_enabled(true)
        assert.is_true(prev) -- the flag, which no_grad does not change
        assert.is_false(pbt.is_grad_enabled())
        assert.is_nil((x * 2).grad_fn)
        pbt.set_grad_enabled(prev)
      end)
      assert.is_true(pbt.is_grad_enabled())
      assert.are.equal("mul", (x * 2).grad_fn.op)
    end)

    it("covers the coroutines fn runs, however deep", function()
      local x = T.ones(2):requires_grad_()
      local function probe()
        return coroutine.wrap(function() return pbt.is_grad_enabled(), (x * 3).grad_fn end)()
      end
      local on, node = pbt.no_grad(probe)
      assert.is_false(on)
      assert.is_nil(node)
      -- no_grad inside a coroutine, a generator coroutine inside that
      on, node = coroutine.wrap(function() return pbt.no_grad(probe) end)()
      assert.is_false(on)
      assert.is_nil(node)
      on, node = probe()
      assert.is_true(on)
      assert.are.equal("mul", node.op)
    end)

    it("set_grad_enabled returns the previous mode", function()
      assert.is_true(pbt.set_grad_enabled(false))
      assert.is_false(pbt.is_grad_enabled())
      local x = T.ones(2):requires_grad_()
      assert.is_nil((x * 2).grad_fn)
      assert.is_false(pbt.set_grad_enabled(true))
      assert.is_true(pbt.is_grad_enabled())
      assert.is_not_nil((x * 2).grad_fn)
    end)
  end)

  describe("autograd.record", function()
    it("records only when grad mode is on and an argument requires grad", function()
      local x, c = T.ones(2):requires_grad_(), T.ones(2)
      local y = T.ones(2)
      autograd.record("spec_op", 1, y, c, 3)
      assert.is_nil(y.grad_fn)
      pbt.no_grad(autograd.record, "spec_op", 1, y, x)
      assert.is_nil(y.grad_fn)
      autograd.record("spec_op", 1, y, c, x, nil, 4)
      local node = y.grad_fn
      assert.are.equal("spec_op", node.op)
      assert.are.equal(y, node.outs[1])
      assert.are.equal(4, node.args.n)
      assert.are.equal(c, node.args[1])
      assert.are.equal(x, node.args[2])
      assert.is_nil(node.args[3])
      assert.are.equal(4, node.args[4])
    end)

    it("keeps both results of max along a dim", function()
      local x = T.tensor({ { 1, 5 }, { 4, 2 } }):requires_grad_()
      local v, i = x:max(2, true)
      local node = v.grad_fn
      assert.are.equal(v, node.outs[1])
      assert.are.equal(i, node.outs[2])
      assert.are.equal(3, node.args.n)
      assert.are.equal(x, node.args[1])
      assert.are.equal(2, node.args[2])
      assert.is_true(node.args[3])
      assert.is_nil(node.args[4])
    end)
  end)
end)

describe("autograd's version counter", function()
  local nn = pbt.nn
  local function raises(fn, pattern)
    local ok, err = pcall(fn)
    assert.is_false(ok)
    assert.matches(pattern, tostring(err))
  end

  it("makes backward raise after an in-place change of a tensor an op used", function()
    local w = T({ 1, 2, 3 }, { dtype = "float64" }):requires_grad_()
    local x = T({ 4, 5, 6 }, { dtype = "float64" })
    -- the weight changed under no_grad (as an optimizer step would), before backward
    local y = (w * x):sum()
    pbt.no_grad(function() w:mul_(2) end)
    raises(function() y:backward() end, "backward: argument 1 of 'mul' was changed in place after 'mul' " ..
      "used it %(its version is %d+, %d+ when recorded%): its gradient would be wrong")
    assert.is_nil(w.grad)
    -- the data changed, through a view of it
    w.grad = nil
    y = (w * x):sum()
    x:narrow(1, 2, 1):fill_(0)
    raises(function() y:backward() end, "argument 2 of 'mul' was changed in place")
    -- a result the rule reads (exp's gradient is its result)
    local v = T({ 0.5, 1 }, { dtype = "float64" }):requires_grad_()
    local z = v:exp()
    local zz = (z * 1):sum()
    pbt.no_grad(function() z:add_(1) end)
    raises(function() zz:backward() end, "argument 1 of 'mul' was changed in place") -- the first node back
    z = v:exp()
    pbt.no_grad(function() z:add_(1) end)
    raises(function() z:backward(T.ones(2, { dtype = "float64" })) end,
      "backward: the result of 'exp' was changed in place after it was computed")
  end)

  it("is checked for ops recorded with a node table too (several arguments), and lets scratch space be", function()
    local g = pbt.Generator(3)
    local conv = nn.Conv2d(1, 2, 3, { generator = g })
    local x = T.randn(1, 1, 6, 6, { generator = g })
    local y = conv(x):sum()
    -- the same module again before backward: its workspace is rewritten, which is fine
    local y2 = conv(x):sum()
    y:backward()
    y2:backward()
    local expect = conv.weight.grad:clone()
    assert.is_true(expect:abs():sum():item() > 0)
    conv:zero_grad()
    local y3 = conv(x):sum()
    local opt = pbt.optim.SGD(conv:parameters(), { lr = 0.1 })
    conv.weight.grad = T.ones(2, 1, 3, 3)
    opt:step() -- the weight changes before y3's backward
    raises(function() y3:backward() end, "backward: argument 2 of 'conv2d' was changed in place")
  end)

  it("leaves alone ops whose gradient reads no values (add, sum, views) and a failed in-place op's neighbours", function()
    local a = T({ 1, 2 }, { dtype = "float64" }):requires_grad_()
    local b = T({ 3, 4 }, { dtype = "float64" })
    local y = (a + b):sum()
    b:add_(1)
    y:backward()
    assert.are.same({ 1, 1 }, a.grad:totable())
    -- a view's input changed: its rule reads shapes only
    a.grad = nil
    local v = a:reshape(2, 1):sum()
    pbt.no_grad(function() a:mul_(3) end)
    v:backward()
    assert.are.same({ 1, 1 }, a.grad:totable())
  end)

  it("counts only in-place ops that happened: a failed one changes no version", function()
    local w = T({ 1, 2 }, { dtype = "float64" }):requires_grad_()
    local y = (w * w):sum()
    pbt.no_grad(function()
      assert.is_false(pcall(w.add_, w, T.ones(3, { dtype = "float64" }))) -- shapes [2] and [3]
    end)
    y:backward()
    assert.are.same({ 2, 4 }, w.grad:totable())
  end)

  it("sees a member's state loaded into live tensors (pop:load writes in place)", function()
    local population = require("pbt.population")
    local pop = population.new{ size = 1, hparams = {}, window = 2 }
    local w = T({ 1, 2, 3 }, { dtype = "float64" })
    pop:set_state(1, "w", T({ 5, 5, 5 }, { dtype = "float64" }))
    local x = T({ 1, 1, 1 }, { dtype = "float64" }):requires_grad_()
    local l = (x * w):sum()
    pop:load(1, { w })
    raises(function() l:backward() end, "argument 2 of 'mul' was changed in place")
  end)

  it("leaves the usual loop alone: forward, backward, step, again", function()
    local g = pbt.Generator(5)
    local model = nn.Linear(3, 1, { generator = g })
    local opt = pbt.optim.SGD(model:parameters(), { lr = 0.1, momentum = 0.9 })
    local x, t = T.randn(8, 3, { generator = g }), T.randn(8, 1, { generator = g })
    local first, last
    for k = 1, 20 do
      opt:zero_grad()
      local loss = nn.mse_loss(model(x), t)
      loss:backward()
      opt:step()
      if k == 1 then first = loss:item() end
      last = loss:item()
    end
    assert.is_true(last < first)
  end)
end)
