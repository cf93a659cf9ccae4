-- numpy broadcasting in the elementwise operations of pbt.Tensor.
-- Expected values are computed with plain Lua loops over the result shape.
local pbt = require("pbt")
local T = pbt.tensor

local DTYPES = { "float32", "float64" }

local function f32(x) return (string.unpack("f", string.pack("f", x))) end
local function round_to(dtype, x) if dtype == "float32" then return f32(x) end return x end

local flat = require("spec.helper").flat -- all elements, row-major, via get
local each_index = require("spec.helper").each_index

-- numpy's rule written out: align on the right, sizes equal or one is 1
local function broadcast_shape(a, b)
  local n, out = math.max(#a, #b), {}
  for i = 1, n do
    local x = a[#a - n + i] or 1
    local y = b[#b - n + i] or 1
    assert(x == y or x == 1 or y == 1)
    out[i] = x == 1 and y or x
  end
  return out
end

-- the value of t (shape s) seen at index idx of the broadcast shape
local function value_at(t, s, idx)
  local sub, n = {}, #idx
  for d = 1, #s do
    local i = idx[n - #s + d]
    sub[d] = s[d] == 1 and 1 or i
  end
  return t:get(table.unpack(sub, 1, #s))
end

-- expected a op b by walking the broadcast shape
local function expected(a, b, f, dtype)
  local sa, sb = a:shape(), b:shape()
  local shape = broadcast_shape(sa, sb)
  local out = {}
  each_index(shape, function(idx)
    out[#out + 1] = round_to(dtype, f(value_at(a, sa, idx), value_at(b, sb, idx)))
  end)
  return out, shape
end

-- a tensor of the given shape with distinct values, float32-exact
local function filled(shape, dtype, k)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local t = T.arange(n, { dtype = dtype }):mul_(0.5):add_(k or 1)
  if #shape == 0 then return t:view({}) end
  return t:view(shape)
end

local OPS = {
  { "add", function(x, y) return x + y end },
  { "sub", function(x, y) return x - y end },
  { "mul", function(x, y) return x * y end },
  { "div", function(x, y) return x / y end },
  { "maximum", math.max },
  { "lt", function(x, y) return x < y and 1 or 0 end },
}

local PAIRS = {
  { { 3, 1 }, { 1, 4 } },
  { { 2, 3 }, { 3 } },
  { { 3 }, { 2, 3 } },
  { { 2, 2 }, {} },
  { {}, { 2, 2 } },
  { {}, {} },
  { { 4, 1, 3 }, { 2, 1 } },
  { { 1 }, { 5 } },
  { { 2, 1, 1 }, { 1, 3, 2 } },
  { { 0, 3 }, { 3 } },
  { { 2, 0 }, { 1, 1 } },
}

local function fmt(s) return "[" .. table.concat(s, ",") .. "]" end

describe("pbt.Tensor", function()
  describe("broadcasting", function()
    for _, dtype in ipairs(DTYPES) do
      for _, pair in ipairs(PAIRS) do
        local sa, sb = pair[1], pair[2]
        it(fmt(sa) .. " with " .. fmt(sb) .. " (" .. dtype .. ")", function()
          local a, b = filled(sa, dtype, 1), filled(sb, dtype, -2)
          for _, op in ipairs(OPS) do
            local want, shape = expected(a, b, op[2], dtype)
            local r = a[op[1]](a, b)
            assert.are.same(shape, r:shape(), op[1])
            assert.are.same(want, flat(r), op[1])
          end
        end)
      end

      it("expanded and transposed operands (" .. dtype .. ")", function()
        local a = filled({ 1, 4 }, dtype):expand(3, 4)
        local b = filled({ 4, 3 }, dtype, 10).T
        local c = filled({ 3, 1 }, dtype, 5)
        local want = expected(a, b, OPS[1][2], dtype)
        assert.are.same(want, flat(a + b))
        want = expected(b, c, OPS[3][2], dtype)
        assert.are.same(want, flat(b * c))
        want = expected(c:expand(3, 4), b, OPS[2][2], dtype)
        assert.are.same(want, flat(c:expand(3, 4) - b))
      end)

      it("a number with every shape, on either side (" .. dtype .. ")", function()
        for _, s in ipairs({ {}, { 2, 2 }, { 3 }, { 0 } }) do
          local a = filled(s, dtype)
          local plus, rsub = {}, {}
          for i, v in ipairs(flat(a)) do
            plus[i] = round_to(dtype, v + 2)
            rsub[i] = round_to(dtype, 2 - v)
          end
          assert.are.same(s, (a + 2):shape())
          assert.are.same(plus, flat(a + 2))
          assert.are.same(rsub, flat(2 - a))
        end
      end)

      it("0-d tensors broadcast like numbers (" .. dtype .. ")", function()
        local s = T(3, { dtype = dtype })
        local m = filled({ 2, 3 }, dtype)
        local want = {}
        for i, v in ipairs(flat(m)) do want[i] = round_to(dtype, v * 3) end
        assert.are.same(want, flat(m * s))
        assert.are.same(want, flat(s * m))
        assert.are.same({}, (s + s):shape())
        assert.are.equal(6, (s + s):item())
      end)
    end

    it("reports shapes that do not broadcast", function()
      assert.has_error(function() return T.ones(2, 3) + T.ones(4) end,
        "add: shapes [2,3] and [4] cannot be broadcast together")
      assert.has_error(function() return T.ones(2, 3):mul(T.ones(3, 2)) end,
        "mul: shapes [2,3] and [3,2] cannot be broadcast together")
      assert.has_error(function() return T.ones(3):lt(T.ones(2)) end,
        "lt: shapes [3] and [2] cannot be broadcast together")
      assert.has_error(function() return T.where(T.ones(2), T.ones(3), 0) end,
        "where: shapes [2] and [3] cannot be broadcast together")
    end)

    it("in place, self must have the broadcast shape", function()
      local a = T.ones(1, 3)
      assert.has_error(function() a:add_(T.ones(2, 1)) end,
        "add_: result of shape [2,3] cannot be written into shape [1,3]")
      local b = T.ones(2, 3)
      b:add_(T.ones(1, 3))
      b:add_(T(1))
      assert.are.same({ { 3, 3, 3 }, { 3, 3, 3 } }, b:totable())
    end)

    it("where broadcasts three operands", function()
      local m = T({ 1, 0, 1 })
      local a = T({ { 1 }, { 2 } })
      local r = T.where(m, a, T(-1))
      assert.are.same({ 2, 3 }, r:shape())
      assert.are.same({ { 1, -1, 1 }, { 2, -1, 2 } }, r:totable())
    end)
  end)
end)
