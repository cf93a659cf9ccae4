-- pbt.Tensor reductions: sum mean prod max min argmax argmin var std norm
-- logsumexp softmax log_softmax.  Expected values are computed with plain
-- Lua loops over the slices of the input.
local pbt = require("pbt")
local T = pbt.tensor

local DTYPES = { "float32", "float64" }

local function f32(x) return (string.unpack("f", string.pack("f", x))) end
local function round_to(dtype, x) if dtype == "float32" then return f32(x) end return x end
local function isnan(x) return x ~= x end

local flat = require("spec.helper").flat -- all elements, row-major, via get

-- Applies f to every slice of t along dim (1-based; nil: all elements).
-- Returns the flat results in row-major order of the remaining dimensions
-- and the result shape (dim removed, or kept as 1 when keepdim).
local function slices(t, dim, keepdim, f)
  local shape = t:shape()
  if not dim then
    local s = {}
    if keepdim then for i = 1, #shape do s[i] = 1 end end
    return { f(flat(t)) }, s
  end
  if dim < 0 then dim = dim + #shape + 1 end
  local out, oshape, idx = {}, {}, {}
  for d = 1, #shape do
    if d ~= dim then oshape[#oshape + 1] = shape[d]
    elseif keepdim then oshape[#oshape + 1] = 1 end
  end
  local function walk(d)
    if d > #shape then
      local list = {}
      for k = 1, shape[dim] do
        idx[dim] = k
        list[k] = t:get(table.unpack(idx, 1, #shape))
      end
      out[#out + 1] = f(list)
      return
    end
    if d == dim then return walk(d + 1) end
    for i = 1, shape[d] do
      idx[d] = i
      walk(d + 1)
    end
  end
  walk(1)
  return out, oshape
end

local function sum(l) local s = 0 for _, v in ipairs(l) do s = s + v end return s end
local function mean(l) return sum(l) / #l end
local function prod(l) local s = 1 for _, v in ipairs(l) do s = s * v end return s end
local function argbest(l, better)
  local k = 1
  for i = 2, #l do if better(l[i], l[k]) then k = i end end
  return k
end
local function argmax(l) return argbest(l, function(a, b) return a > b end) end
local function argmin(l) return argbest(l, function(a, b) return a < b end) end
local function lmax(l) return l[argmax(l)] end
local function lmin(l) return l[argmin(l)] end
local function var(l, unbiased)
  local m, s = mean(l), 0
  for _, v in ipairs(l) do s = s + (v - m) ^ 2 end
  return s / (#l - (unbiased and 1 or 0))
end
local function logsumexp(l)
  local m, s = lmax(l), 0
  for _, v in ipairs(l) do s = s + math.exp(v - m) end
  return m + math.log(s)
end
local function norm(p)
  return function(l)
    if p == math.huge then
      local m = 0
      for _, v in ipairs(l) do m = math.max(m, math.abs(v)) end
      return m
    end
    local s = 0
    for _, v in ipairs(l) do s = s + math.abs(v) ^ p end
    return s ^ (1 / p)
  end
end

local function assert_close(want, got, tol, what)
  assert.are.equal(#want, #got, what)
  for i = 1, #want do
    local w, g = want[i], got[i]
    local ok = (isnan(w) and isnan(g)) or w == g or
      math.abs(g - w) <= tol * math.max(1, math.abs(w))
    if not ok then
      error(string.format("%s: element %d is %.17g, expected %.17g", what or "", i, g, w), 2)
    end
  end
end

-- values that are exact in float32 and sums of them too
local function v2(i, j) return ((i * 5 + j * 3) % 7 - 3) * 0.25 end

local grid = require("spec.helper").grid -- {n, m} nested, v(i, j) at [i][j]

-- [3,4] values in four layouts and a [2,3,4] block (and a permuted view)
local function inputs(dtype)
  local o = { dtype = dtype }
  local wide = T(grid(3, 6, function(i, j) return v2(i, j - 1) end), o)
  local cube = T.arange(24, o):mul_(0.25):add_(-2.75):view(2, 3, 4)
  cube:select(2, 2):mul_(-1)
  return {
    { "contiguous", T(grid(3, 4, v2), o) },
    { "transposed", T(grid(4, 3, function(i, j) return v2(j, i) end), o).T },
    { "narrowed", wide:narrow(2, 2, 4) },
    { "expanded", T({ { 0.5, -1.25, 2, 0.75 } }, o):expand(3, 4) },
    { "3-d", cube },
    { "3-d permuted", cube:permute(3, 1, 2) },
  }
end

-- exact for sums of quarters; a few ulp for the rest
local function tol_of(dtype, exact)
  if exact then return 0 end
  return dtype == "float32" and 2e-6 or 1e-13
end

local CASES = {
  -- name, reference over a slice, exact?
  { "sum", sum, true },
  { "mean", mean, false },
  { "prod", prod, false },
  { "logsumexp", logsumexp, false },
}

describe("pbt.Tensor", function()
  for _, case in ipairs(CASES) do
    local name, f, exact = case[1], case[2], case[3]
    describe(":" .. name .. "()", function()
      for _, dtype in ipairs(DTYPES) do
        it("over all and along each dim, keepdim or not (" .. dtype .. ")", function()
          local tol = tol_of(dtype, exact)
          for _, inp in ipairs(inputs(dtype)) do
            local label, x = inp[1], inp[2]
            local dims = { false }
            for d = 1, x:dim() do dims[#dims + 1] = d; dims[#dims + 1] = -d end
            for _, d in ipairs(dims) do
              for _, keep in ipairs({ false, true }) do
                local dim = d or nil
                local want, shape = slices(x, dim, keep, function(l) return round_to(dtype, f(l)) end)
                local r
                if dim then r = x[name](x, dim, keep)
                elseif keep then r = x[name](x, nil, keep)
                else r = x[name](x) end
                local what = string.format("%s %s dim=%s keepdim=%s", name, label, tostring(dim), tostring(keep))
                assert.are.equal(dtype, r:dtype(), what)
                assert.are.same(shape, r:shape(), what)
                assert_close(want, flat(r), tol, what)
              end
            end
          end
        end)
      end
    end)
  end

  describe(":max() and :min()", function()
    for _, dtype in ipairs(DTYPES) do
      it("over all give a 0-d tensor (" .. dtype .. ")", function()
        for _, inp in ipairs(inputs(dtype)) do
          local fx = flat(inp[2])
          local mx, mn = inp[2]:max(), inp[2]:min()
          assert.are.same({}, mx:shape())
          assert.are.equal(lmax(fx), mx:item(), inp[1])
          assert.are.equal(lmin(fx), mn:item(), inp[1])
          assert.are.equal(dtype, mx:dtype())
        end
      end)

      it("along a dim give values and 1-based float64 indices (" .. dtype .. ")", function()
        for _, inp in ipairs(inputs(dtype)) do
          local x = inp[2]
          for d = -x:dim(), x:dim() do
            if d ~= 0 then
              for _, keep in ipairs({ false, true }) do
                local what = inp[1] .. " dim " .. d
                local v, i = x:max(d, keep)
                local wv, shape = slices(x, d, keep, lmax)
                local wi = slices(x, d, keep, argmax)
                assert.are.same(shape, v:shape(), what)
                assert.are.same(shape, i:shape(), what)
                assert.are.equal("float64", i:dtype())
                assert.are.same(wv, flat(v), what)
                assert.are.same(wi, flat(i), what)
                v, i = x:min(d, keep)
                assert.are.same((slices(x, d, keep, lmin)), flat(v), what)
                assert.are.same((slices(x, d, keep, argmin)), flat(i), what)
              end
            end
          end
        end
      end)
    end

    it("the first occurrence wins and NaN beats everything", function()
      local v, i = T({ { 1, 3, 3, 0 }, { 2, 0 / 0, 5, 0 / 0 } }):max(2)
      assert.are.same({ 2, 2 }, i:totable())
      assert.are.equal(3, flat(v)[1])
      assert.is_true(isnan(flat(v)[2]))
      assert.is_true(isnan(T({ 1, 0 / 0, 2 }):max():item()))
      assert.is_true(isnan(T({ 1, 0 / 0, 2 }):min():item()))
      local _, j = T({ 4, 1, 1, 4 }):min(1)
      assert.are.equal(2, j:item())
    end)

    it("finds the maximum of long rows (blocks and lanes)", function()
      for _, n in ipairs({ 1, 15, 16, 17, 63, 64, 65, 1000, 8191, 8192, 8193, 20000 }) do
        for _, dtype in ipairs(DTYPES) do
          local x
          -- values (k * 37) % n are a permutation of 0..n-1 when gcd(37, n) = 1
          local vals = {}
          for k = 1, n do vals[k] = ((k - 1) * 37) % n end
          if n % 37 ~= 0 then
            x = T(vals, { dtype = dtype })
            assert.are.equal(n - 1, x:max():item())
            assert.are.equal(0, x:min():item())
            local where_max, where_min
            for k = 1, n do
              if vals[k] == n - 1 then where_max = k end
              if vals[k] == 0 then where_min = k end
            end
            assert.are.equal(where_max, x:argmax():item(), "n=" .. n)
            assert.are.equal(where_min, x:argmin():item(), "n=" .. n)
            local nan = x:clone()
            nan:set(math.max(1, n // 2), 0 / 0)
            assert.is_true(isnan(nan:max():item()), "n=" .. n)
            assert.are.equal(math.max(1, n // 2), nan:argmax():item(), "n=" .. n)
          end
        end
      end
    end)

    it("refuses empty tensors", function()
      assert.has_error(function() T.zeros(0):max() end, "max: cannot reduce an empty tensor")
      assert.has_error(function() T.zeros(0):min() end, "min: cannot reduce an empty tensor")
      assert.has_error(function() T.zeros(0, 3):max(1) end, "max: cannot reduce an empty tensor")
      assert.has_error(function() T.zeros(0):argmax() end, "argmax: cannot reduce an empty tensor")
      assert.has_error(function() T.zeros(2, 0):argmin(2) end, "argmin: cannot reduce an empty tensor")
    end)
  end)

  describe(":argmax() and :argmin()", function()
    for _, dtype in ipairs(DTYPES) do
      it("give 1-based float64 indices, flat over all (" .. dtype .. ")", function()
        for _, inp in ipairs(inputs(dtype)) do
          local x = inp[2]
          local fx = flat(x)
          assert.are.equal(argmax(fx), x:argmax():item(), inp[1])
          assert.are.equal(argmin(fx), x:argmin():item(), inp[1])
          assert.are.equal("float64", x:argmax():dtype())
          for d = 1, x:dim() do
            local want, shape = slices(x, d, true, argmax)
            local r = x:argmax(d, true)
            assert.are.same(shape, r:shape())
            assert.are.same(want, flat(r), inp[1] .. " dim " .. d)
            assert.are.same((slices(x, -d, false, argmin)), flat(x:argmin(-d)))
          end
        end
      end)
    end
  end)

  describe(":var() and :std()", function()
    for _, dtype in ipairs(DTYPES) do
      it("unbiased by default, population on request (" .. dtype .. ")", function()
        local tol = tol_of(dtype, false)
        for _, inp in ipairs(inputs(dtype)) do
          local x = inp[2]
          for _, unbiased in ipairs({ true, false }) do
            local fv = function(l) return round_to(dtype, var(l, unbiased)) end
            local fs = function(l) return round_to(dtype, math.sqrt(var(l, unbiased))) end
            local want_all = { fv(flat(x)) }
            local got
            if unbiased then got = x:var() else got = x:var(nil, false, false) end
            assert_close(want_all, flat(got), tol, inp[1])
            assert_close(want_all, flat(x:var({ unbiased = unbiased })), tol, inp[1])
            for d = 1, x:dim() do
              local want, shape = slices(x, d, false, fv)
              local r = x:var(d, false, unbiased)
              assert.are.same(shape, r:shape())
              assert_close(want, flat(r), tol, inp[1] .. " var dim " .. d)
              want, shape = slices(x, -d, true, fs)
              r = x:std({ dim = -d, keepdim = true, unbiased = unbiased })
              assert.are.same(shape, r:shape())
              assert_close(want, flat(r), tol, inp[1] .. " std dim " .. d)
            end
          end
          assert_close({ round_to(dtype, math.sqrt(var(flat(x), true))) }, flat(x:std()), tol, inp[1])
        end
      end)
    end

    it("of one element: unbiased NaN, population 0; of none: NaN", function()
      assert.is_true(isnan(T({ 3 }):var():item()))
      assert.are.equal(0, T({ 3 }):var(nil, false, false):item())
      assert.is_true(isnan(T.zeros(0):var():item()))
    end)
  end)

  describe(":norm()", function()
    for _, dtype in ipairs(DTYPES) do
      it("p = 2 by default, 1, 3 and math.huge, along dims (" .. dtype .. ")", function()
        local tol = tol_of(dtype, false)
        for _, inp in ipairs(inputs(dtype)) do
          local x = inp[2]
          assert_close({ round_to(dtype, norm(2)(flat(x))) }, flat(x:norm()), tol, inp[1])
          for _, p in ipairs({ 1, 2, 3, math.huge }) do
            local f = function(l) return round_to(dtype, norm(p)(l)) end
            assert_close({ f(flat(x)) }, flat(x:norm(p)), tol, inp[1] .. " p=" .. p)
            for d = 1, x:dim() do
              local want, shape = slices(x, d, true, f)
              local r = x:norm(p, d, true)
              assert.are.same(shape, r:shape())
              assert_close(want, flat(r), tol, inp[1] .. " p=" .. p .. " dim " .. d)
            end
          end
          local nz = 0
          for _, v in ipairs(flat(x)) do if v ~= 0 then nz = nz + 1 end end
          assert.are.equal(nz, x:norm(0):item())
        end
      end)
    end

    it("of an empty tensor is 0", function()
      assert.are.equal(0, T.zeros(0):norm():item())
      assert.are.equal(0, T.zeros(0):norm(math.huge):item())
    end)
  end)

  describe(":softmax() and :log_softmax()", function()
    for _, dtype in ipairs(DTYPES) do
      it("match exp(x - lse) along each dim (" .. dtype .. ")", function()
        local tol = tol_of(dtype, false)
        for _, inp in ipairs(inputs(dtype)) do
          local x = inp[2]
          for d = -x:dim(), x:dim() do
            if d ~= 0 then
              local pd = d < 0 and d + x:dim() + 1 or d
              -- softmax: x minus the slice's logsumexp, broadcast back
              local lse = T(slices(x, pd, true, logsumexp), { dtype = "float64" })
                :view(table.unpack((select(2, slices(x, pd, true, logsumexp)))))
              local xs = T(x:totable(), { dtype = "float64" })
              local ls_want = flat(xs - lse)
              local sm_want = {}
              for k, v in ipairs(ls_want) do sm_want[k] = math.exp(v) end
              local sm, ls = x:softmax(d), x:log_softmax(d)
              assert.are.same(x:shape(), sm:shape())
              assert.are.equal(dtype, sm:dtype())
              assert_close(sm_want, flat(sm), tol, inp[1] .. " softmax dim " .. d)
              assert_close(ls_want, flat(ls), tol, inp[1] .. " log_softmax dim " .. d)
              -- slices of softmax sum to 1
              local sums = slices(sm, pd, false, sum)
              for _, s in ipairs(sums) do assert.is_true(math.abs(s - 1) < 1e-5) end
            end
          end
        end
      end)

      it("are stable at the 1000 scale (" .. dtype .. ")", function()
        local x = T({ { 1000, 1001, 1002 }, { -1000, -1001, -1002 } }, { dtype = dtype })
        local ls = flat(x:log_softmax(2))
        local sm = flat(x:softmax(2))
        local lse = math.log(1 + math.exp(-1) + math.exp(-2))
        local want = { -2 - lse, -1 - lse, -lse, -lse, -1 - lse, -2 - lse }
        for k = 1, 6 do
          assert.is_true(ls[k] == ls[k] and math.abs(ls[k]) < math.huge)
          assert.is_true(math.abs(ls[k] - want[k]) < 1e-5)
          assert.is_true(math.abs(sm[k] - math.exp(want[k])) < 1e-6)
        end
        assert.are.equal(round_to(dtype, 1002 + lse), x:logsumexp(2):totable()[1])
      end)
    end

    it("need a dimension", function()
      assert.has_error(function() T.ones(2, 3):softmax() end,
        "bad argument #1 to 'softmax' (integer expected, got no value)")
      assert.has_error(function() T.ones(2, 3):log_softmax(3) end,
        "bad argument #1 to 'log_softmax' (dimension 3 out of range for a 2-d tensor)")
    end)
  end)

  describe("reductions of empty tensors", function()
    it("sum 0, prod 1, mean NaN, logsumexp -inf", function()
      local e = T.zeros(0)
      assert.are.equal(0, e:sum():item())
      assert.are.equal(1, e:prod():item())
      assert.is_true(isnan(e:mean():item()))
      assert.are.equal(-math.huge, e:logsumexp():item())
      assert.are.same({ 0, 0, 0 }, T.zeros(0, 3):sum(1):totable())
      assert.are.same({ 1, 1 }, T.zeros(2, 0):prod(2):totable())
      assert.are.same({ 0, 1 }, T.zeros(0, 3):sum(2, true):shape())
    end)
  end)

  describe("reduction arguments", function()
    it("report dimensions out of range", function()
      local a = T.ones(2, 3)
      assert.has_error(function() a:sum(3) end,
        "bad argument #1 to 'sum' (dimension 3 out of range for a 2-d tensor)")
      assert.has_error(function() a:mean(-3) end,
        "bad argument #1 to 'mean' (dimension -3 out of range for a 2-d tensor)")
      assert.has_error(function() a:max(0) end,
        "bad argument #1 to 'max' (dimension 0 out of range for a 2-d tensor)")
      assert.has_error(function() T.sum(a, 5) end,
        "bad argument #2 to 'sum' (dimension 5 out of range for a 2-d tensor)")
      assert.has_error(function() a:var({ dim = 4 }) end,
        "bad argument #1 to 'var' (dimension 4 out of range for a 2-d tensor)")
      assert.has_error(function() a:norm(2, 3) end,
        "bad argument #2 to 'norm' (dimension 3 out of range for a 2-d tensor)")
    end)

    it("return tensors (0-d over all) whose :item() is the number", function()
      local r = T({ 1, 2, 3 }):sum()
      assert.are.equal(0, r:dim())
      assert.are.equal(6, r:item())
      assert.are.same({ 1, 1 }, T.ones(2, 3):sum(nil, true):shape())
    end)
  end)

  describe("long rows", function()
    it("sums 1e7 float32 elements accurately", function()
      local n = 10000000
      local x = T.full(n, 0.1)
      assert.are.equal(f32(f32(0.1) * n), x:sum():item())
      assert.are.equal(f32(0.1), x:mean():item())
      assert.is_true(math.abs(x:var():item()) < 1e-9)
    end)

    it("reduces rows and columns of a wide matrix", function()
      local x = T.arange(6000, { dtype = "float64" }):view(3, 2000)
      local rows = x:sum(2):totable()
      for i = 1, 3 do
        local base = (i - 1) * 2000
        assert.are.equal(2000 * base + 2000 * 1999 / 2, rows[i])
      end
      local cols = x:sum(1):totable()
      for j = 1, 2000 do assert.are.equal(3 * (j - 1) + 6000, cols[j]) end
    end)
  end)
end)
