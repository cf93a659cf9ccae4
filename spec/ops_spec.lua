-- pbt.Tensor elementwise operations: binary ops, comparisons, unary ops,
-- clamp, where, in-place forms, axpy, allclose and equal.
-- Expected values are computed element by element in plain Lua.
local pbt = require("pbt")
local T = pbt.tensor

local DTYPES = { "float32", "float64" }

-- x rounded to the nearest float32 (as a C cast does)
local function f32(x) return (string.unpack("f", string.pack("f", x))) end
local function round_to(dtype, x) if dtype == "float32" then return f32(x) end return x end

local flat = require("spec.helper").flat -- all elements, row-major, via get

local grid = require("spec.helper").grid -- {n, m} nested, v(i, j) at [i][j]

local function isnan(x) return x ~= x end

-- |got - want| <= tol * max(1, |want|), NaN matching NaN, equal infinities
local function assert_close(want, got, tol, what)
  assert.are.equal(#want, #got, what)
  for i = 1, #want do
    local w, g = want[i], got[i]
    local ok
    if isnan(w) then ok = isnan(g)
    elseif w == g then ok = true
    else ok = math.abs(g - w) <= tol * math.max(1, math.abs(w)) end
    if not ok then
      error(string.format("%s: element %d is %.17g, expected %.17g", what or "", i, g, w), 2)
    end
  end
end

-- The same [3,4] values (v(i, j)) laid out four ways: contiguous, as a
-- transposed view, as a narrowed view and (for constant rows) expanded.
local function layouts(dtype, v)
  local opts = { dtype = dtype }
  local contiguous = T(grid(3, 4, v), opts)
  local transposed = T(grid(4, 3, function(i, j) return v(j, i) end), opts).T
  local wide = T(grid(3, 7, function(i, j) return j >= 3 and j <= 6 and v(i, j - 2) or 99 end), opts)
  local narrowed = wide:narrow(2, 3, 4)
  return {
    { "contiguous", contiguous },
    { "transposed", transposed },
    { "narrowed", narrowed },
  }
end

-- a second set of values, and a row to expand
local function va(i, j) return (4 * (i - 1) + j - 6) * 0.375 end
local function vb(i, j) return ((j * 7 + i * 3) % 11 - 5) * 0.5 + 0.25 end
local function vpos(i, j) return 0.1 + (4 * (i - 1) + j) * 0.45 end

local BINARY = {
  { "add", function(x, y) return x + y end, "__add" },
  { "sub", function(x, y) return x - y end, "__sub" },
  { "mul", function(x, y) return x * y end, "__mul" },
  { "div", function(x, y) return x / y end, "__div" },
  { "maximum", function(x, y) return math.max(x, y) end },
  { "minimum", function(x, y) return math.min(x, y) end },
  { "eq", function(x, y) return x == y and 1 or 0 end },
  { "ne", function(x, y) return x ~= y and 1 or 0 end },
  { "lt", function(x, y) return x < y and 1 or 0 end },
  { "le", function(x, y) return x <= y and 1 or 0 end },
  { "gt", function(x, y) return x > y and 1 or 0 end },
  { "ge", function(x, y) return x >= y and 1 or 0 end },
}

local UNARY = {
  { "neg", function(x) return -x end, va, 0 },
  { "exp", math.exp, va, 1e-6 },
  { "log", math.log, vpos, 1e-6 },
  { "log1p", function(x) return math.log(1 + x) end, vpos, 1e-6 },
  { "sqrt", math.sqrt, vpos, 0 },
  { "abs", math.abs, va, 0 },
  { "sin", math.sin, va, 1e-6 },
  { "cos", math.cos, va, 1e-6 },
  { "tanh", function(x) return (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1) end, va, 1e-6 },
  { "sigmoid", function(x) return 1 / (1 + math.exp(-x)) end, va, 1e-6 },
  { "relu", function(x) return x > 0 and x or 0 end, va, 0 },
  { "sign", function(x) return x > 0 and 1 or x < 0 and -1 or 0 end, va, 0 },
  { "floor", math.floor, va, 0 },
}

describe("pbt.Tensor", function()
  describe("binary ops", function()
    for _, dtype in ipairs(DTYPES) do
      for _, case in ipairs(BINARY) do
        local name, f, meta = case[1], case[2], case[3]
        it(name .. " on every layout pair (" .. dtype .. ")", function()
          for _, la in ipairs(layouts(dtype, va)) do
            for _, lb in ipairs(layouts(dtype, vb)) do
              local a, b = la[2], lb[2]
              local fa, fb, want = flat(a), flat(b), {}
              for i = 1, #fa do want[i] = round_to(dtype, f(fa[i], fb[i])) end
              local r = a[name](a, b)
              assert.are.equal(dtype, r:dtype())
              assert.are.same({ 3, 4 }, r:shape())
              assert.are.same(want, flat(r), name .. " " .. la[1] .. "/" .. lb[1])
              assert.are.same(want, flat(T[name](a, b)))
              if meta then assert.are.same(want, flat(getmetatable(a)[meta](a, b))) end
            end
          end
        end)

        it(name .. " with a number on either side (" .. dtype .. ")", function()
          for _, la in ipairs(layouts(dtype, va)) do
            local a, fa = la[2], flat(la[2])
            local s = round_to(dtype, 1.25)
            local right, left = {}, {}
            for i = 1, #fa do
              right[i] = round_to(dtype, f(fa[i], s))
              left[i] = round_to(dtype, f(s, fa[i]))
            end
            assert.are.same(right, flat(a[name](a, 1.25)), la[1])
            assert.are.same(left, flat(T[name](1.25, a)), la[1])
            assert.are.equal(dtype, a[name](a, 1.25):dtype())
          end
        end)
      end

      it("pow with tensors and numbers (" .. dtype .. ")", function()
        for _, la in ipairs(layouts(dtype, vpos)) do
          local a, fa = la[2], flat(la[2])
          local e = T(grid(3, 4, function(i, j) return (i + j) % 4 - 1.5 end), { dtype = dtype })
          local fe = flat(e)
          local want, sq, two = {}, {}, {}
          for i = 1, #fa do
            want[i] = round_to(dtype, fa[i] ^ fe[i])
            sq[i] = round_to(dtype, fa[i] * fa[i])
            two[i] = round_to(dtype, 2 ^ fa[i])
          end
          local tol = dtype == "float32" and 1e-6 or 1e-14
          assert_close(want, flat(a:pow(e)), tol, la[1])
          assert_close(want, flat(a ^ e), tol, la[1])
          assert.are.same(sq, flat(a ^ 2))
          assert_close(two, flat(2 ^ a), tol, la[1])
        end
      end)

      it("metamethods with numbers: 2 - t, 2 / t, t * 3, -t (" .. dtype .. ")", function()
        local t = T({ 1, 2, 4 }, { dtype = dtype })
        assert.are.same({ 1, 0, -2 }, (2 - t):totable())
        assert.are.same({ 2, 1, 0.5 }, (2 / t):totable())
        assert.are.same({ 3, 6, 12 }, (t * 3):totable())
        assert.are.same({ 0.5, 1, 2 }, (t / 2):totable())
        assert.are.same({ 3, 4, 6 }, (2 + t):totable())
        assert.are.same({ -1, -2, -4 }, (-t):totable())
        assert.are.same({ 2, 4, 16 }, (2 ^ t):totable())
        assert.are.equal(dtype, (2 - t):dtype())
      end)
    end

    it("keeps float32 with a Lua number, rounding the number to float32", function()
      local t = T({ 0 }) + 0.1
      assert.are.equal("float32", t:dtype())
      assert.are.equal(f32(0.1), t:item())
    end)

    it("comparisons give 0/1 tensors of the operands' dtype", function()
      local a = T({ 1, 2, 3 }, { dtype = "float64" })
      local r = a:gt(2)
      assert.are.equal("float64", r:dtype())
      assert.are.same({ 0, 0, 1 }, r:totable())
      assert.are.same({ 1, 1, 0 }, a:le(T({ 1, 5, 2 }, { dtype = "float64" })):totable())
    end)

    it("maximum and minimum propagate NaN", function()
      local a, b = T({ 0 / 0, 1, 2 }), T({ 1, 0 / 0, 0 })
      local mx, mn = flat(a:maximum(b)), flat(a:minimum(b))
      assert.is_true(isnan(mx[1]) and isnan(mx[2]))
      assert.are.equal(2, mx[3])
      assert.is_true(isnan(mn[1]) and isnan(mn[2]))
      assert.are.equal(0, mn[3])
    end)

    it("refuses tensors of different dtypes", function()
      local a, b = T({ 1, 2 }), T({ 1, 2 }, { dtype = "float64" })
      assert.has_error(function() return a + b end, "add: dtypes float32 and float64 do not match")
      assert.has_error(function() return a:mul(b) end, "mul: dtypes float32 and float64 do not match")
      assert.has_error(function() return b:sub_(a) end, "sub_: dtypes float64 and float32 do not match")
      assert.has_error(function() return a:add(b, 2) end, "add: dtypes float32 and float64 do not match")
    end)

    it("refuses operands that are neither tensors nor numbers", function()
      local a = T({ 1, 2 })
      assert.has_error(function() return a:add("x") end,
        "bad argument #1 to 'add' (pbt.Tensor or number expected, got string)")
      assert.has_error(function() return a:add({}) end,
        "bad argument #1 to 'add' (pbt.Tensor or number expected, got table)")
    end)

    it("t:add(x, alpha) and t:sub(x, alpha) scale x", function()
      local a, b = T({ 1, 2, 3 }), T({ 10, 20, 30 })
      assert.are.same({ 21, 42, 63 }, a:add(b, 2):totable())
      assert.are.same({ -4, -8, -12 }, a:sub(b, 0.5):totable())
      assert.are.same({ 1, 2, 3 }, a:totable())
      assert.are.same({ 7, 8, 9 }, a:add(3, 2):totable())
    end)
  end)

  describe("unary ops", function()
    for _, dtype in ipairs(DTYPES) do
      for _, case in ipairs(UNARY) do
        local name, f, v, tol = case[1], case[2], case[3], case[4]
        it(name .. " on every layout (" .. dtype .. ")", function()
          local t = dtype == "float32" and tol or tol * 1e-8
          for _, l in ipairs(layouts(dtype, v)) do
            local x, fx, want = l[2], flat(l[2]), {}
            for i = 1, #fx do want[i] = round_to(dtype, f(fx[i])) end
            local r = x[name](x)
            assert.are.equal(dtype, r:dtype())
            assert.are.same({ 3, 4 }, r:shape())
            assert_close(want, flat(r), t, name .. " " .. l[1])
            assert_close(want, flat(T[name](x)), t, name .. " " .. l[1])
            -- the input is untouched; the in-place form writes into x
            assert.are.same(fx, flat(x))
            local y = x:clone()
            assert.are.equal(y, y[name .. "_"](y))
            assert_close(want, flat(y), t, name .. "_ " .. l[1])
          end
        end)
      end

      it("exp, log, tanh and sigmoid at the edges (" .. dtype .. ")", function()
        local inf = math.huge
        local x = T({ 0, -inf, inf, 0 / 0, -1000, 1000 }, { dtype = dtype })
        local e = flat(x:exp())
        assert.are.same({ 1, 0, inf }, { e[1], e[2], e[3] })
        assert.is_true(isnan(e[4]))
        assert.are.same({ 0, inf }, { e[5], e[6] })
        local s = flat(x:sigmoid())
        assert.are.same({ 0.5, 0, 1 }, { s[1], s[2], s[3] })
        assert.are.same({ 0, 1 }, { s[5], s[6] })
        local th = flat(x:tanh())
        assert.are.same({ 0, -1, 1 }, { th[1], th[2], th[3] })
        assert.are.same({ -1, 1 }, { th[5], th[6] })
        local l = flat(T({ 0, 1, inf, -1 }, { dtype = dtype }):log())
        assert.are.same({ -inf, 0, inf }, { l[1], l[2], l[3] })
        assert.is_true(isnan(l[4]))
        local lp = flat(T({ 1e-10, -1 }, { dtype = dtype }):log1p())
        assert.is_true(math.abs(lp[1] - 1e-10) < 1e-16)
        assert.are.equal(-inf, lp[2])
      end)

      it("exp, log and tanh are accurate on a long contiguous row (" .. dtype .. ")", function()
        local n = 2000
        local x = T.linspace(-20, 20, n, { dtype = dtype })
        local fx, ex, th = flat(x), flat(x:exp()), flat(x:tanh())
        local lx = flat(x:abs():add(1e-3):log())
        local tol = dtype == "float32" and 3e-7 or 1e-15
        for i = 1, n do
          local v = fx[i]
          assert.is_true(math.abs(ex[i] - math.exp(v)) <= tol * 2 * math.exp(v), "exp " .. v)
          local want = (math.exp(2 * v) - 1) / (math.exp(2 * v) + 1)
          if v > 19 then want = 1 elseif v < -19 then want = -1 end
          -- the reference itself loses ~1e-16 absolute near 0
          local slack = dtype == "float64" and 1e-15 or 0
          assert.is_true(math.abs(th[i] - want) <= tol * 2 * math.abs(want) + slack, "tanh " .. v)
          local a = round_to(dtype, math.abs(v) + 1e-3)
          assert.is_true(math.abs(lx[i] - math.log(a)) <= tol * 2 * math.abs(math.log(a)) + 1e-300, "log " .. v)
        end
      end)

      -- Many inputs of every magnitude: a geometric sweep of both signs, the
      -- float32 values nearest to multiples of pi/2 (where sin or cos is
      -- near 0, so an error of the argument reduction shows), arguments
      -- beyond 16384 (libm's path), subnormals and the special values.  In
      -- chunks of 256 with and without a special value: the fast kernels of
      -- log, log1p, sin and cos run over whole chunks.
      local function sweep_inputs(dtype, lo)
        local xs = {}
        local function add(v) xs[#xs + 1] = round_to(dtype, v) end
        for k = 0, 600 do
          local m = 10 ^ (-30 + k * 0.06) -- 1e-30 .. 1e6
          if m >= lo then add(m) add(-m) end
        end
        for k = 1, 400 do
          add(k * math.pi / 2) add(-k * 7 * math.pi / 2) add(k * 31 * math.pi / 2)
        end
        for _, v in ipairs { 1e4, -1e4, 12345.678, 16384, 16385, -20000.5, 1e5, 3e6, -1e10, 3e38 } do
          add(v)
        end
        return xs
      end

      -- log1p and expm1 accurate in double (Goldberg's and Kahan's tricks)
      local function log1p(v)
        local u = 1 + v
        if u == 1 then return v end
        return math.log(u) * v / (u - 1)
      end
      local function expm1(y)
        local u = math.exp(y)
        if u == 1 then return y end
        if u - 1 == -1 then return -1 end
        return (u - 1) * y / math.log(u)
      end
      local function tanh(x)
        if math.abs(x) > 20 then return x > 0 and 1 or -1 end
        local t = expm1(2 * math.abs(x))
        return (x < 0 and -1 or 1) * t / (t + 2)
      end

      local ACCURATE = {
        { "sin", math.sin, -math.huge },
        { "cos", math.cos, -math.huge },
        { "log", math.log, 0 },
        { "log1p", log1p, -1 },
        { "tanh", tanh, -math.huge },
      }

      for _, case in ipairs(ACCURATE) do
        local name, f, lo = case[1], case[2], case[3]
        it(name .. " is accurate over a sweep of inputs (" .. dtype .. ")", function()
          local xs = sweep_inputs(dtype, lo)
          if lo > -math.huge then
            local ys = {}
            for _, v in ipairs(xs) do if v > lo then ys[#ys + 1] = v end end
            if name == "log1p" then
              for k = 1, 200 do ys[#ys + 1] = round_to(dtype, -1 + k * 0.00499) end
            end
            xs = ys
          end
          local x = T(xs, { dtype = dtype })
          local got = flat(x[name](x))
          local rtol = dtype == "float32" and 1e-6 or 1e-14
          for i, v in ipairs(xs) do
            local want = f(v)
            local err = math.abs(got[i] - want)
            if not (err <= rtol * math.abs(want) + 1e-300) then
              error(string.format("%s(%.9g) = %.17g, expected %.17g", name, v, got[i], want))
            end
          end
          -- a strided view gives the same values
          local wide = T.zeros({ #xs, 2 }, { dtype = dtype })
          wide:select(2, 1):copy_(x)
          wide:select(2, 2):fill_(0 / 0)
          assert.are.same(got, flat(wide:select(2, 1)[name](wide:select(2, 1))))
        end)
      end

      it("sin, cos, log and log1p at special values and in mixed chunks (" .. dtype .. ")", function()
        local inf, nan = math.huge, 0 / 0
        local function sign(v) return 1 / v end
        local s = flat(T({ 0, -0.0, inf, -inf, nan, 1e-40, -1e-40 }, { dtype = dtype }):sin())
        assert.are.same({ inf, -inf }, { sign(s[1]), sign(s[2]) })
        assert.is_true(isnan(s[3]) and isnan(s[4]) and isnan(s[5]))
        assert.are.same({ round_to(dtype, 1e-40), round_to(dtype, -1e-40) }, { s[6], s[7] })
        local c = flat(T({ 0, -0.0, inf, -inf, nan, 1e-40 }, { dtype = dtype }):cos())
        assert.are.same({ 1, 1 }, { c[1], c[2] })
        assert.is_true(isnan(c[3]) and isnan(c[4]) and isnan(c[5]))
        assert.are.equal(1, c[6])
        local l = flat(T({ 0, -0.0, -1, -inf, inf, nan, 1e-45, 1e-40, 3.4e38 }, { dtype = dtype }):log())
        assert.are.same({ -inf, -inf, inf }, { l[1], l[2], l[5] })
        assert.is_true(isnan(l[3]) and isnan(l[4]) and isnan(l[6]))
        for i, v in ipairs { 1e-45, 1e-40, 3.4e38 } do
          local a = round_to(dtype, v)
          assert.is_true(math.abs(l[6 + i] - math.log(a)) <= 1e-6 * math.abs(math.log(a)), "log " .. v)
        end
        local lp = flat(T({ 0, -0.0, -1, -2, -inf, inf, nan, 1e-30, -1e-40 }, { dtype = dtype }):log1p())
        assert.are.same({ inf, -inf }, { sign(lp[1]), sign(lp[2]) })
        assert.are.same({ -inf, inf }, { lp[3], lp[6] })
        assert.is_true(isnan(lp[4]) and isnan(lp[5]) and isnan(lp[7]))
        assert.are.same({ round_to(dtype, 1e-30), round_to(dtype, -1e-40) }, { lp[8], lp[9] })
        -- 1000 elements; a special value in the 2nd and 4th chunk of 256
        for _, case in ipairs { { "sin", math.sin, 2e5 }, { "cos", math.cos, -3e7 },
                                { "log", math.log, 0 }, { "log1p", log1p, -1 } } do
          local name, f, special = case[1], case[2], case[3]
          local xs = {}
          for i = 1, 1000 do xs[i] = round_to(dtype, 0.5 + (i % 97) * 0.731) end
          xs[300], xs[900] = special, nan
          local got = flat(T(xs, { dtype = dtype })[name](T(xs, { dtype = dtype })))
          for i, v in ipairs(xs) do
            local want = f(v)
            if isnan(want) then
              assert.is_true(isnan(got[i]), name .. " " .. i)
            elseif want == -inf then
              assert.are.equal(want, got[i])
            else
              assert.is_true(math.abs(got[i] - want) <= 1e-6 * math.abs(want) + 1e-300,
                string.format("%s(%.9g) = %.17g, expected %.17g", name, v, got[i], want))
            end
          end
        end
      end)

      it("relu and sign keep NaN (" .. dtype .. ")", function()
        local x = T({ 0 / 0 }, { dtype = dtype })
        assert.is_true(isnan(x:relu():item()))
        assert.is_true(isnan(x:sign():item()))
      end)

      it("-t is neg (" .. dtype .. ")", function()
        for _, l in ipairs(layouts(dtype, va)) do
          local want = {}
          for i, v in ipairs(flat(l[2])) do want[i] = -v end
          assert.are.same(want, flat(-l[2]))
        end
      end)
    end
  end)

  describe(":clamp()", function()
    for _, dtype in ipairs(DTYPES) do
      it("clamps with both, one or no bounds (" .. dtype .. ")", function()
        for _, l in ipairs(layouts(dtype, va)) do
          local x, fx = l[2], flat(l[2])
          local both, lo, hi = {}, {}, {}
          for i, v in ipairs(fx) do
            both[i] = math.min(math.max(v, -1), 1.5)
            lo[i] = math.max(v, -1)
            hi[i] = math.min(v, 1.5)
          end
          assert.are.same(both, flat(x:clamp(-1, 1.5)))
          assert.are.same(lo, flat(x:clamp(-1)))
          assert.are.same(hi, flat(x:clamp(nil, 1.5)))
          assert.are.same(fx, flat(x:clamp()))
          local y = x:clone()
          assert.are.equal(y, y:clamp_(-1, 1.5))
          assert.are.same(both, flat(y))
        end
      end)
    end

    it("keeps NaN", function()
      assert.is_true(isnan(T({ 0 / 0 }):clamp(0, 1):item()))
    end)
  end)

  describe("in-place binary ops", function()
    for _, dtype in ipairs(DTYPES) do
      for _, case in ipairs(BINARY) do
        local name, f = case[1], case[2]
        it(name .. "_ writes into self and returns it (" .. dtype .. ")", function()
          for _, la in ipairs(layouts(dtype, va)) do
            for _, lb in ipairs(layouts(dtype, vb)) do
              local a = la[2]:clone()
              if la[1] == "transposed" then a = la[2]:contiguous():t():contiguous():t() end
              local fa, fb, want = flat(a), flat(lb[2]), {}
              for i = 1, #fa do want[i] = round_to(dtype, f(fa[i], fb[i])) end
              assert.are.equal(a, a[name .. "_"](a, lb[2]))
              assert.are.same(want, flat(a), name .. "_ " .. la[1] .. "/" .. lb[1])
            end
          end
        end)
      end
    end

    it("writes through a view into its storage", function()
      local base = T(grid(3, 4, function(i, j) return 10 * i + j end))
      local col = base:narrow(2, 2, 2)
      col:mul_(-1)
      assert.are.same({ { 11, -12, -13, 14 }, { 21, -22, -23, 24 }, { 31, -32, -33, 34 } }, base:totable())
      base.T:add_(T({ 100, 200, 300 }):view(1, 3))
      assert.are.same({ 111, 88, 87, 114 }, base:totable()[1])
      assert.are.same({ 331, 268, 267, 334 }, base:totable()[3])
    end)

    it("broadcasts the other operand into self's shape", function()
      local a = T.zeros(2, 3)
      a:add_(T({ 1, 2, 3 }))
      a:add_(T({ { 10 }, { 20 } }))
      a:mul_(2)
      assert.are.same({ { 22, 24, 26 }, { 42, 44, 46 } }, a:totable())
    end)

    it("refuses a result shape other than self's", function()
      local a = T.zeros(3)
      assert.has_error(function() a:add_(T.ones(2, 3)) end,
        "add_: result of shape [2,3] cannot be written into shape [3]")
      assert.has_error(function() a:add_(T.ones(4)) end,
        "add_: shapes [3] and [4] cannot be broadcast together")
      assert.has_error(function() T.zeros(1, 3):expand(2, 3):add_(1) end,
        "add_: cannot write into an expanded tensor (clone it first)")
    end)

    it("reads an overlapping operand before writing (t:add_(t.T), t:sub_(row))", function()
      local t = T({ { 1, 2 }, { 3, 4 } })
      t:add_(t.T)
      assert.are.same({ { 2, 5 }, { 5, 8 } }, t:totable())
      local u = T({ { 1, 2 }, { 3, 4 }, { 5, 6 } })
      u:sub_(u:select(1, 1))
      assert.are.same({ { 0, 0 }, { 2, 2 }, { 4, 4 } }, u:totable())
      local v = T({ 1, 2, 3, 4 })
      v:narrow(1, 2, 3):add_(v:narrow(1, 1, 3))
      assert.are.same({ 1, 3, 5, 7 }, v:totable())
    end)

    it("pow_ with a number, 2 and other exponents", function()
      local a = T({ 1, 2, 3 }, { dtype = "float64" })
      a:pow_(2)
      assert.are.same({ 1, 4, 9 }, a:totable())
      a:pow_(0.5)
      assert.are.same({ 1, 2, 3 }, a:totable())
    end)
  end)

  describe(":add_(x, alpha) (axpy)", function()
    for _, dtype in ipairs(DTYPES) do
      it("adds alpha * x in one pass on every layout (" .. dtype .. ")", function()
        for _, la in ipairs(layouts(dtype, va)) do
          for _, lb in ipairs(layouts(dtype, vb)) do
            local a = T(la[2]:totable(), { dtype = dtype })
            local fa, fb, plus, minus = flat(a), flat(lb[2]), {}, {}
            local alpha = round_to(dtype, 0.3)
            for i = 1, #fa do
              plus[i] = round_to(dtype, fa[i] + round_to(dtype, alpha * fb[i]))
            end
            assert.are.equal(a, a:add_(lb[2], 0.3))
            assert_close(plus, flat(a), dtype == "float32" and 1e-7 or 1e-16, la[1] .. "/" .. lb[1])
            for i = 1, #fa do
              minus[i] = round_to(dtype, plus[i] - round_to(dtype, 2.5 * fb[i]))
            end
            a:sub_(lb[2], 2.5)
            assert_close(minus, flat(a), dtype == "float32" and 1e-7 or 1e-16, la[1] .. "/" .. lb[1])
          end
        end
      end)
    end

    it("broadcasts x and accepts a number", function()
      local a = T.zeros(2, 2)
      a:add_(T({ 1, 2 }), 3)
      assert.are.same({ { 3, 6 }, { 3, 6 } }, a:totable())
      a:sub_(1, 2)
      assert.are.same({ { 1, 4 }, { 1, 4 } }, a:totable())
    end)
  end)

  describe("pbt.tensor.where()", function()
    for _, dtype in ipairs(DTYPES) do
      it("selects a where the mask is nonzero (" .. dtype .. ")", function()
        for _, lm in ipairs(layouts(dtype, function(i, j) return (i + j) % 3 == 0 and 0 or i - j end)) do
          for _, la in ipairs(layouts(dtype, va)) do
            local fm, fa, fb = flat(lm[2]), flat(la[2]), flat(layouts(dtype, vb)[2][2])
            local want, want_num = {}, {}
            for i = 1, #fm do
              want[i] = fm[i] ~= 0 and fa[i] or fb[i]
              want_num[i] = fm[i] ~= 0 and fa[i] or -1
            end
            assert.are.same(want, flat(T.where(lm[2], la[2], layouts(dtype, vb)[2][2])))
            assert.are.same(want_num, flat(T.where(lm[2], la[2], -1)))
          end
        end
      end)
    end

    it("broadcasts mask, a and b; numbers take the tensors' dtype", function()
      local mask = T({ { 1 }, { 0 } })
      local r = T.where(mask, T({ 1, 2, 3 }, { dtype = "float64" }), 0)
      assert.are.equal("float64", r:dtype())
      assert.are.same({ { 1, 2, 3 }, { 0, 0, 0 } }, r:totable())
      assert.are.same({ { 5, 5 }, { 7, 7 } },
        T.where(T({ { 1 }, { 0 } }), 5, T({ 7, 7 })):totable())
      assert.are.same({ 5, 7 }, T.where(T({ 2, 0 }), 5, 7):totable())
      assert.are.same({ 4, 2 }, T.where(T({ 1, 0 }, { dtype = "float64" }), T({ 4, 5 }), T({ 1, 2 })):totable())
    end)

    it("refuses a and b of different dtypes", function()
      assert.has_error(function() T.where(T({ 1 }), T({ 1 }), T({ 1 }, { dtype = "float64" })) end,
        "where: dtypes float32 and float64 do not match")
    end)
  end)

  describe("pbt.tensor.allclose() and pbt.tensor.equal()", function()
    it("uses numpy's |a - b| <= atol + rtol * |b|", function()
      local b = T({ 1000, 1 }, { dtype = "float64" })
      assert.is_true(T.allclose(T({ 1000.009, 1 }, { dtype = "float64" }), b))
      assert.is_false(T.allclose(T({ 1000.02, 1 }, { dtype = "float64" }), b))
      assert.is_true(T.allclose(T({ 1000.02, 1 }, { dtype = "float64" }), b, 1e-4))
      assert.is_true(T.allclose(T({ 0.5, 1 }, { dtype = "float64" }), b, 0, 1000))
      assert.is_false(T.allclose(T({ 0, 0 }), T({ 1e-7, 0 })))
      assert.is_true(T.allclose(T({ 0, 0 }), T({ 1e-9, 0 })))
    end)

    it("never calls NaN close; equal infinities are close", function()
      assert.is_false(T.allclose(T({ 0 / 0 }), T({ 0 / 0 })))
      assert.is_true(T.allclose(T({ math.huge }), T({ math.huge })))
      assert.is_false(T.allclose(T({ math.huge }), T({ -math.huge })))
    end)

    it("broadcasts and compares across dtypes and layouts", function()
      assert.is_true(T.allclose(T({ { 1, 2 }, { 1, 2 } }), T({ 1, 2 }, { dtype = "float64" })))
      local l = layouts("float32", va)
      assert.is_true(T.allclose(l[1][2], l[2][2]))
      assert.is_true(T.allclose(l[2][2], l[3][2]))
      assert.has_error(function() T.allclose(T({ 1, 2 }), T({ 1, 2, 3 })) end,
        "allclose: shapes [2] and [3] cannot be broadcast together")
    end)

    it("equal wants the same shape and the same values", function()
      local l = layouts("float64", va)
      assert.is_true(T.equal(l[1][2], l[2][2]))
      assert.is_true(T.equal(l[1][2], l[3][2]))
      assert.is_false(T.equal(T({ 1, 2 }), T({ { 1, 2 } })))
      assert.is_false(T.equal(T({ 1, 2 }), T({ 1, 3 })))
      assert.is_false(T.equal(T({ 0 / 0 }), T({ 0 / 0 })))
      assert.is_true(T.equal(T({ 1.5 }), T({ 1.5 }, { dtype = "float64" })))
      assert.is_true(T.equal(T.zeros(0), T.zeros(0)))
    end)
  end)
end)

describe("pbt.set_flush_denormal", function()
  local function supported()
    local was = pbt.flush_denormal()
    local ok = pbt.set_flush_denormal(was)
    return ok
  end

  it("counts subnormal floats as zero while on, and says whether it is", function()
    if os.getenv("PBT_VALGRIND") then
      pending("valgrind's CPU does not model the flush-to-zero bits of MXCSR")
      return
    end
    if not supported() then
      assert.is_false(pbt.set_flush_denormal(true))
      assert.is_false(pbt.flush_denormal())
      return
    end
    local was = pbt.flush_denormal()
    local ok, err = pcall(function()
      -- 1e-39 is below float32's smallest normal number (2^-126, about 1.18e-38)
      assert.is_true(pbt.set_flush_denormal(false))
      assert.is_false(pbt.flush_denormal())
      local x = T.full(4, 1e-39) * 1
      assert.is_true(x:get(1) > 0 and x:get(1) < 2 ^ -126)
      assert.is_true(pbt.set_flush_denormal(true))
      assert.is_true(pbt.flush_denormal())
      assert.are.equal(0, (T.full(4, 1e-39) * 1):get(1))
      assert.are.equal(0, (x * 1):get(4)) -- a subnormal input counts as zero
      assert.are.equal(2 ^ -126, (T.full(1, 2 ^ -126) * 1):get(1)) -- normal numbers stay
      assert.are.equal(0, (T.full(1, 1e-310, { dtype = "float64" }) * 1):get(1))
    end)
    pbt.set_flush_denormal(was)
    assert(ok, err)
  end)

  it("takes a boolean", function()
    local ok, err = pcall(pbt.set_flush_denormal, 1)
    assert.is_false(ok)
    assert.matches("bad argument #1 to '[%w.]*set_flush_denormal' %(boolean expected, got number%)", err)
  end)
end)
