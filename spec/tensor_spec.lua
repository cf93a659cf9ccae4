-- pbt.Tensor: creation, metadata, views, copies, access and printing.
-- Expected values are written by hand or built with plain Lua loops.
local pbt = require("pbt")
local T = pbt.tensor

local DTYPES = { "float32", "float64" }

-- x rounded to the nearest float32 (as a C cast does)
local function f32(x) return (string.unpack("f", string.pack("f", x))) end

local grid = require("spec.helper").grid -- {n, m} nested, v(i, j) at [i][j]

-- 10 * i + j: every element tells where it came from
local function ij(i, j) return 10 * i + j end

local flat = require("spec.helper").flat -- all elements, row-major, via get

local function seq(a, b, step)
  local out = {}
  for v = a, b, step or 1 do out[#out + 1] = v end
  return out
end

describe("pbt.Tensor", function()
  describe("pbt.tensor()", function()
    it("builds from nested tables, float32 by default", function()
      local t = pbt.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
      assert.are.equal("float32", t:dtype())
      assert.are.same({ 2, 3 }, t:shape())
      assert.are.same({ 3, 1 }, t:stride())
      assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, t:totable())
    end)

    it("is also pbt.T and pbt.tensor.tensor", function()
      assert.are.equal(pbt.tensor, pbt.T)
      assert.are.same({ 1, 2 }, pbt.T({ 1, 2 }):totable())
      assert.are.same({ 1, 2 }, T.tensor({ 1, 2 }):totable())
    end)

    it("takes a dtype and rounds to it", function()
      for _, dt in ipairs(DTYPES) do
        local t = T({ 0.1, -2.5, 1e-3 }, { dtype = dt })
        assert.are.equal(dt, t:dtype())
        local r = dt == "float32" and f32 or function(x) return x end
        assert.are.same({ r(0.1), -2.5, r(1e-3) }, t:totable())
      end
    end)

    it("builds a 0-d tensor from a number", function()
      local t = T(3.5)
      assert.are.equal(0, t:dim())
      assert.are.same({}, t:shape())
      assert.are.equal(1, t:numel())
      assert.are.equal(3.5, t:item())
      assert.are.equal(3.5, t:totable())
    end)

    it("builds empty tensors from empty tables", function()
      assert.are.same({ 0 }, T({}):shape())
      assert.are.same({ 1, 0 }, T({ {} }):shape())
      assert.are.equal(0, T({}):numel())
    end)

    it("builds up to 8 levels", function()
      local t = T({ { { { { { { { 7 } } } } } } } })
      assert.are.same({ 1, 1, 1, 1, 1, 1, 1, 1 }, t:shape())
      assert.are.equal(7, t:item())
    end)
  end)

  describe("zeros(), ones(), empty()", function()
    local cases = { { "zeros", 0 }, { "ones", 1 } }
    for _, c in ipairs(cases) do
      local name, v = c[1], c[2]
      it(name .. " takes sizes as varargs or a table, and a dtype", function()
        for _, dt in ipairs(DTYPES) do
          local a = T[name](2, 3, { dtype = dt })
          local b = T[name]({ 2, 3 }, { dtype = dt })
          for _, t in ipairs({ a, b }) do
            assert.are.equal(dt, t:dtype())
            assert.are.same({ 2, 3 }, t:shape())
            assert.are.same(grid(2, 3, function() return v end), t:totable())
          end
        end
        assert.are.equal("float32", T[name](2):dtype())
      end)

      it(name .. " with no size is 0-d", function()
        assert.are.same({}, T[name]():shape())
        assert.are.equal(v, T[name]():item())
        assert.are.equal(v, T[name]({}):item())
      end)
    end

    it("empty has the shape, dtype and contiguous strides", function()
      local t = T.empty(2, 3, 4, { dtype = "float64" })
      assert.are.same({ 2, 3, 4 }, t:shape())
      assert.are.same({ 12, 4, 1 }, t:stride())
      assert.are.equal("float64", t:dtype())
      assert.is_true(t:is_contiguous())
    end)

    it("allows zero sizes", function()
      local t = T.zeros(3, 0, 2)
      assert.are.equal(0, t:numel())
      assert.are.same({ 3, 0, 2 }, t:shape())
      assert.are.same({ {}, {}, {} }, t:totable())
      -- a zero size makes the product empty, however large the others (as
      -- long as their product keeps every stride in range: at most 2^59)
      assert.are.equal(0, T.empty(1 << 30, 0, 1 << 20):numel())
      assert.are.equal(0, T.empty(0, 1 << 39, 1 << 20):numel())
      assert.has_error(function() T.empty(1 << 40, 0, 1 << 20) end, "empty: not enough memory")
    end)
  end)

  describe("full()", function()
    it("takes a size or a shape table, a value and a dtype", function()
      assert.are.same({ 7, 7, 7 }, T.full(3, 7):totable())
      local t = T.full({ 2, 2 }, -1.5, { dtype = "float64" })
      assert.are.equal("float64", t:dtype())
      assert.are.same({ { -1.5, -1.5 }, { -1.5, -1.5 } }, t:totable())
      assert.are.same({ f32(0.1), f32(0.1) }, T.full(2, 0.1):totable())
    end)
  end)

  describe("arange()", function()
    local cases = {
      { { 5 }, { 0, 1, 2, 3, 4 } },
      { { 2, 5 }, { 2, 3, 4 } },
      { { 1, 2, 0.25 }, { 1, 1.25, 1.5, 1.75 } },
      { { 5, 1, -1 }, { 5, 4, 3, 2 } },
      { { 3, 3 }, {} },
      { { 5, 1 }, {} },
      { { 0 }, {} },
      { { 0, 1, 0.3 }, { 0, 0.3, 0.6, 0.9 } },
    }
    for _, c in ipairs(cases) do
      it("(" .. table.concat(c[1], ", ") .. ")", function()
        local t = T.arange(table.unpack(c[1]))
        assert.are.equal("float32", t:dtype())
        assert.are.same({ #c[2] }, t:shape())
        local t64 = T.arange(table.unpack(c[1], 1, #c[1]))
        t64 = t64:astype("float64")
        for i, v in ipairs(c[2]) do assert.are.equal(f32(v), t64:get(i)) end
      end)
    end

    it("takes a dtype after any form", function()
      assert.are.equal("float64", T.arange(3, { dtype = "float64" }):dtype())
      assert.are.equal("float64", T.arange(1, 3, { dtype = "float64" }):dtype())
      local t = T.arange(0, 1, 0.1, { dtype = "float64" })
      assert.are.equal(10, t:numel())
      for i = 1, 10 do assert.are.equal(0 + (i - 1) * 0.1, t:get(i)) end
    end)
  end)

  describe("linspace()", function()
    it("spaces n points evenly, both ends exact", function()
      assert.are.same({ 0, 0.25, 0.5, 0.75, 1 }, T.linspace(0, 1, 5):totable())
      assert.are.same({ 2 }, T.linspace(2, 9, 1):totable())
      assert.are.same({}, T.linspace(0, 1, 0):totable())
      assert.are.same({ 1, 0.5, 0 }, T.linspace(1, 0, 3):totable())
      local t = T.linspace(0.1, 0.7, 7, { dtype = "float64" })
      assert.are.equal("float64", t:dtype())
      assert.are.equal(0.1, t:get(1))
      assert.are.equal(0.7, t:get(7))
      for i = 1, 7 do assert.is_true(math.abs(t:get(i) - 0.1 * i) < 1e-15) end
    end)
  end)

  describe("eye()", function()
    it("is the identity, square or not", function()
      assert.are.same({ { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } }, T.eye(3):totable())
      assert.are.same({ { 1, 0, 0 }, { 0, 1, 0 } }, T.eye(2, 3):totable())
      assert.are.same({ { 1, 0 }, { 0, 1 }, { 0, 0 } }, T.eye(3, 2):totable())
      assert.are.equal("float64", T.eye(2, { dtype = "float64" }):dtype())
      assert.are.equal("float64", T.eye(2, 4, { dtype = "float64" }):dtype())
      assert.are.same({ 0, 0 }, T.eye(0):shape())
    end)
  end)

  describe("zeros_like(), ones_like()", function()
    it("keep shape and dtype unless told, and are contiguous", function()
      local src = T.ones(3, 2, { dtype = "float64" }).T
      local z = T.zeros_like(src)
      assert.are.same({ 2, 3 }, z:shape())
      assert.are.equal("float64", z:dtype())
      assert.is_true(z:is_contiguous())
      assert.are.same(grid(2, 3, function() return 0 end), z:totable())
      local o = T.ones_like(src, { dtype = "float32" })
      assert.are.equal("float32", o:dtype())
      assert.are.same(grid(2, 3, function() return 1 end), o:totable())
    end)
  end)

  describe("metadata", function()
    it(":shape(), :size(), :stride(), :dim(), :numel(), :dtype()", function()
      local t = T.zeros(2, 3, 4)
      assert.are.same({ 2, 3, 4 }, t:shape())
      assert.are.same({ 2, 3, 4 }, t:size())
      assert.are.equal(3, t:size(2))
      assert.are.equal(4, t:size(-1))
      assert.are.equal(2, t:size(-3))
      assert.are.same({ 12, 4, 1 }, t:stride())
      assert.are.equal(3, t:dim())
      assert.are.equal(24, t:numel())
      assert.are.equal("float32", t:dtype())
      assert.are.equal("integer", math.type(t:numel()))
      local s = T(1)
      assert.are.same({}, s:stride())
      assert.are.equal(0, s:dim())
    end)

    it(":is_contiguous() on views", function()
      local t = T.zeros(3, 4)
      assert.is_true(t:is_contiguous())
      assert.is_false(t.T:is_contiguous())
      assert.is_true(t.T.T:is_contiguous())
      assert.is_true(t:narrow(1, 2, 2):is_contiguous())
      assert.is_false(t:narrow(2, 2, 2):is_contiguous())
      assert.is_false(t:select(2, 1):is_contiguous())
      assert.is_true(t:select(1, 3):is_contiguous())
      assert.is_false(T.zeros(1, 4):expand(3, 4):is_contiguous())
      assert.is_true(T.zeros(4, 1):expand(4, 1):is_contiguous())
      assert.is_true(T.zeros(3, 1).T:is_contiguous()) -- size-1 strides do not matter
    end)

    it(":astype() converts into a new tensor", function()
      local a = T({ 0.1, 2, -3.25 }, { dtype = "float64" })
      local b = a:astype("float32")
      assert.are.equal("float32", b:dtype())
      assert.are.same({ f32(0.1), 2, -3.25 }, b:totable())
      b:set(2, 9)
      assert.are.equal(2, a:get(2))
      local c = a:astype("float64")
      c:set(1, 5)
      assert.are.equal(0.1, a:get(1)) -- same dtype still copies
      local m = T(grid(2, 3, ij)).T:astype("float64")
      assert.is_true(m:is_contiguous())
      assert.are.same(grid(3, 2, function(i, j) return ij(j, i) end), m:totable())
    end)
  end)

  for _, dt in ipairs(DTYPES) do
    describe("views (" .. dt .. ")", function()
      local function base() return T(grid(3, 4, ij), { dtype = dt }) end

      describe(":view()", function()
        it("reshapes a contiguous tensor and shares its storage", function()
          local b = base()
          local v = b:view(4, 3)
          assert.are.same({ 4, 3 }, v:shape())
          assert.are.same(flat(b), flat(v))
          v:set(2, 1, -1) -- element 4 in row-major order: b[1][4]
          assert.are.equal(-1, b:get(1, 4))
          assert.are.same({ 2, 6 }, b:view({ 2, 6 }):shape())
        end)

        it("infers one -1", function()
          assert.are.same({ 2, 6 }, base():view(2, -1):shape())
          assert.are.same({ 12 }, base():view(-1):shape())
          assert.are.same({ 3, 1, 4 }, base():view(3, -1, 4):shape())
          assert.are.same({ 0, 3 }, T.zeros(0, 6):view(-1, 3):shape())
        end)

        it("views non-contiguous tensors when the strides allow", function()
          local n = base():narrow(1, 2, 2) -- rows 2-3: contiguous
          assert.are.same({ 21, 22, 23, 24, 31, 32, 33, 34 }, n:view(8):totable())
          local e = T({ 1, 2 }, { dtype = dt }):view(2, 1):expand(2, 3) -- strides {1, 0}
          local v = e:view(2, 3, 1)
          assert.are.same({ { { 1 }, { 1 }, { 1 } }, { { 2 }, { 2 }, { 2 } } }, v:totable())
          local t = base().T -- 4 x 3, strides {1, 4}
          local u = t:view(4, 1, 3)
          assert.are.same({ 4, 1, 3 }, u:shape())
          assert.are.same(flat(t), flat(u))
          u:set(4, 1, 3, 0)
          assert.are.equal(0, t:get(4, 3))
        end)

        it("refuses a non-contiguous tensor", function()
          assert.has_error(function() base().T:view(12) end,
            "view: cannot view a non-contiguous tensor of shape [4,3] as [12] "
            .. "(use reshape or contiguous)")
        end)
      end)

      describe(":reshape()", function()
        it("shares storage when it can", function()
          local b = base()
          local r = b:reshape(6, 2)
          r:set(1, 1, 100)
          assert.are.equal(100, b:get(1, 1))
        end)

        it("copies a non-contiguous tensor, in row-major logical order", function()
          local b = base()
          local t = b.T
          local r = t:reshape(12)
          local want = {}
          for j = 1, 4 do
            for i = 1, 3 do want[#want + 1] = ij(i, j) end
          end
          assert.are.same(want, r:totable())
          r:set(1, -5)
          assert.are.equal(11, b:get(1, 1)) -- a copy
          assert.are.same({ 2, 6 }, t:reshape(-1, 6):shape())
        end)
      end)

      describe(":transpose(), .T, :t()", function()
        it("swaps dimensions without copying", function()
          local b = base()
          local t = b:transpose(1, 2)
          assert.are.same({ 4, 3 }, t:shape())
          assert.are.same({ 1, 4 }, t:stride())
          for i = 1, 3 do
            for j = 1, 4 do assert.are.equal(ij(i, j), t:get(j, i)) end
          end
          t:set(4, 3, 0)
          assert.are.equal(0, b:get(3, 4))
        end)

        it("twice is the identity", function()
          local b = T.arange(24, { dtype = dt }):view(2, 3, 4)
          local tt = b:transpose(1, 3):transpose(1, 3)
          assert.are.same(b:shape(), tt:shape())
          assert.are.same(b:stride(), tt:stride())
          assert.are.same(b:totable(), tt:totable())
          assert.are.same(b:totable(), b:transpose(-1, 2):transpose(2, 3):totable())
          assert.are.same(b:totable(), b:transpose(2, 2):totable())
        end)

        it("T and t() transpose a matrix", function()
          local b = base()
          local want = grid(4, 3, function(i, j) return ij(j, i) end)
          assert.are.same(want, b.T:totable())
          assert.are.same(want, b:t():totable())
          assert.are.same(b:totable(), b.T.T:totable())
        end)
      end)

      describe(":permute()", function()
        it("reorders dimensions (varargs or a table)", function()
          local b = T.arange(24, { dtype = dt }):view(2, 3, 4)
          local p = b:permute(3, 1, 2)
          assert.are.same({ 4, 2, 3 }, p:shape())
          assert.are.same({ 1, 12, 4 }, p:stride())
          for i = 1, 2 do
            for j = 1, 3 do
              for k = 1, 4 do assert.are.equal(b:get(i, j, k), p:get(k, i, j)) end
            end
          end
          assert.are.same(p:totable(), b:permute({ 3, 1, 2 }):totable())
          assert.are.same(p:totable(), b:permute(-1, -3, -2):totable())
          -- the inverse permutation gives the tensor back
          assert.are.same(b:totable(), p:permute(2, 3, 1):totable())
          p:set(4, 2, 3, -1)
          assert.are.equal(-1, b:get(2, 3, 4))
        end)
      end)

      describe(":narrow()", function()
        it("takes a slice of one dimension, sharing storage", function()
          local b = base()
          local n = b:narrow(2, 2, 2)
          assert.are.same({ { 12, 13 }, { 22, 23 }, { 32, 33 } }, n:totable())
          n:fill_(0)
          assert.are.same({ { 11, 0, 0, 14 }, { 21, 0, 0, 24 }, { 31, 0, 0, 34 } }, b:totable())
          assert.are.same({ { 21, 22, 23, 24 } }, base():narrow(1, 2, 1):totable())
        end)

        it("counts a negative dimension or start from the end", function()
          assert.are.same({ { 13, 14 }, { 23, 24 }, { 33, 34 } },
            base():narrow(-1, -2, 2):totable())
          assert.are.same({ { 31, 32, 33, 34 } }, base():narrow(1, -1, 1):totable())
        end)

        it("may be empty, up to just past the end", function()
          assert.are.same({ 3, 0 }, base():narrow(2, 5, 0):shape())
          assert.are.same({ 0, 4 }, base():narrow(1, 1, 0):shape())
        end)

        it("narrows a narrowed, transposed tensor", function()
          local n = base().T:narrow(1, 2, 3):narrow(2, 2, 2)
          assert.are.same({ { 22, 32 }, { 23, 33 }, { 24, 34 } }, n:totable())
        end)
      end)

      describe(":select()", function()
        it("removes a dimension at an index, sharing storage", function()
          local b = base()
          assert.are.same({ 21, 22, 23, 24 }, b:select(1, 2):totable())
          assert.are.same({ 13, 23, 33 }, b:select(2, 3):totable())
          assert.are.same({ 14, 24, 34 }, b:select(-1, -1):totable())
          b:select(2, 1):fill_(0)
          assert.are.same({ 0, 0, 0 }, flat(b:narrow(2, 1, 1)))
          local s = b:select(1, 1):select(1, 2)
          assert.are.equal(0, s:dim())
          assert.are.equal(12, s:item())
        end)
      end)

      describe(":unsqueeze(), :squeeze()", function()
        it("insert and remove size-1 dimensions", function()
          local b = base()
          assert.are.same({ 1, 3, 4 }, b:unsqueeze(1):shape())
          assert.are.same({ 3, 1, 4 }, b:unsqueeze(2):shape())
          assert.are.same({ 3, 4, 1 }, b:unsqueeze(3):shape())
          assert.are.same({ 3, 4, 1 }, b:unsqueeze(-1):shape())
          assert.are.same({ 3, 1, 4 }, b:unsqueeze(-2):shape())
          assert.are.same(flat(b), flat(b:unsqueeze(2)))
          assert.are.same(flat(b.T), flat(b.T:unsqueeze(2)))
          local u = b:unsqueeze(1):unsqueeze(3)
          assert.are.same({ 1, 3, 1, 4 }, u:shape())
          assert.are.same({ 3, 4 }, u:squeeze():shape())
          assert.are.same({ 3, 1, 4 }, u:squeeze(1):shape())
          assert.are.same({ 1, 3, 4 }, u:squeeze(-2):shape())
          assert.are.same({ 1, 3, 1, 4 }, u:squeeze(2):shape()) -- not size 1: kept
          assert.are.same({}, T.zeros(1, 1):squeeze():shape())
          u:squeeze():set(1, 1, 5)
          assert.are.equal(5, b:get(1, 1))
        end)
      end)

      describe(":expand(), :expand_as()", function()
        it("repeats size-1 dimensions with stride 0", function()
          local col = T({ { 1 }, { 2 } }, { dtype = dt })
          local e = col:expand(2, 3)
          assert.are.same({ 2, 3 }, e:shape())
          assert.are.same({ 1, 0 }, e:stride())
          assert.are.same({ { 1, 1, 1 }, { 2, 2, 2 } }, e:totable())
          assert.are.same({ { 1, 1, 1 }, { 2, 2, 2 } }, col:expand(-1, 3):totable())
          local l = col:expand(2, 2, 3) -- new leading dimension
          assert.are.same({ 0, 1, 0 }, l:stride())
          assert.are.same({ { { 1, 1, 1 }, { 2, 2, 2 } }, { { 1, 1, 1 }, { 2, 2, 2 } } },
            l:totable())
          col:set(2, 1, 7)
          assert.are.same({ 7, 7, 7 }, e:select(1, 2):totable()) -- shares storage
          assert.are.same({ 2, 3 }, col:expand({ 2, 3 }):shape())
          assert.are.same({ 2, 3 }, col:expand_as(T.zeros(2, 3)):shape())
          assert.are.same({ 3, 0 }, T.zeros(1, 0):expand(3, 0):shape())
        end)
      end)

      describe(":flatten()", function()
        it("merges a range of dimensions", function()
          local b = T.arange(24, { dtype = dt }):view(2, 3, 4)
          assert.are.same({ 24 }, b:flatten():shape())
          assert.are.same(seq(0, 23), b:flatten():totable())
          assert.are.same({ 2, 12 }, b:flatten(2):shape())
          assert.are.same({ 6, 4 }, b:flatten(1, 2):shape())
          assert.are.same({ 6, 4 }, b:flatten(1, -2):shape())
          assert.are.same({ 2, 3, 4 }, b:flatten(2, 2):shape())
          b:flatten():set(1, 9)
          assert.are.equal(9, b:get(1, 1, 1)) -- contiguous: a view
          assert.are.same({ 1 }, T(5):flatten():shape())
        end)

        it("copies a non-contiguous tensor", function()
          local b = base()
          local f = b.T:flatten()
          assert.are.same(flat(b.T), f:totable())
          f:set(1, 0)
          assert.are.equal(11, b:get(1, 1))
        end)
      end)

      describe(":contiguous(), :clone()", function()
        it("contiguous returns the tensor itself when contiguous", function()
          local b = base()
          assert.are.equal(b, b:contiguous())
        end)

        it("contiguous copies a non-contiguous tensor", function()
          local b = base()
          local c = b.T:contiguous()
          assert.is_true(c:is_contiguous())
          assert.are.same({ 3, 1 }, c:stride())
          assert.are.same(b.T:totable(), c:totable())
          c:set(1, 1, 0)
          assert.are.equal(11, b:get(1, 1))
        end)

        it("clone copies always, keeping dtype and values", function()
          for _, src in ipairs({ base(), base().T, base():narrow(2, 2, 2),
                                 T({ { 1, 2 } }, { dtype = dt }):expand(3, 2) }) do
            local c = src:clone()
            assert.are.equal(dt, c:dtype())
            assert.is_true(c:is_contiguous())
            assert.are.same(src:totable(), c:totable())
            local before = src:totable()
            c:fill_(-7)
            assert.are.same(before, src:totable())
          end
        end)
      end)

      describe(":copy_()", function()
        it("copies values into an existing tensor, returning it", function()
          local d = T.zeros(3, 4, { dtype = dt })
          assert.are.equal(d, d:copy_(base()))
          assert.are.same(grid(3, 4, ij), d:totable())
        end)

        it("broadcasts the source", function()
          local d = T.zeros(3, 4, { dtype = dt })
          d:copy_(T({ 1, 2, 3, 4 }))
          assert.are.same(grid(3, 4, function(_, j) return j end), d:totable())
          d:copy_(T({ { 1 }, { 2 }, { 3 } }))
          assert.are.same(grid(3, 4, function(i) return i end), d:totable())
          d:copy_(T(5))
          assert.are.same(grid(3, 4, function() return 5 end), d:totable())
        end)

        it("converts the dtype", function()
          local d = T.zeros(2, { dtype = dt })
          d:copy_(T({ 0.1, 0.2 }, { dtype = "float64" }))
          local r = dt == "float32" and f32 or function(x) return x end
          assert.are.same({ r(0.1), r(0.2) }, d:totable())
          d:copy_(T({ 0.1, 0.2 }, { dtype = "float32" }))
          assert.are.same({ f32(0.1), f32(0.2) }, d:totable())
        end)

        it("writes through a non-contiguous destination", function()
          local b = T.zeros(4, 3, { dtype = dt })
          b.T:copy_(base())
          assert.are.same(grid(4, 3, function(i, j) return ij(j, i) end), b:totable())
          local c = T.zeros(3, 4, { dtype = dt })
          c:narrow(2, 2, 2):copy_(base():narrow(2, 3, 2))
          assert.are.same({ { 0, 13, 14, 0 }, { 0, 23, 24, 0 }, { 0, 33, 34, 0 } }, c:totable())
        end)

        it("handles a source that overlaps the destination", function()
          local x = T.arange(5, { dtype = dt })
          x:narrow(1, 2, 4):copy_(x:narrow(1, 1, 4))
          assert.are.same({ 0, 0, 1, 2, 3 }, x:totable())
          x = T.arange(5, { dtype = dt })
          x:narrow(1, 1, 4):copy_(x:narrow(1, 2, 4))
          assert.are.same({ 1, 2, 3, 4, 4 }, x:totable())
          local m = T.arange(9, { dtype = dt }):view(3, 3)
          m:copy_(m:t())
          assert.are.same({ { 0, 3, 6 }, { 1, 4, 7 }, { 2, 5, 8 } }, m:totable())
          m = T.arange(9, { dtype = dt }):view(3, 3)
          m:t():copy_(m)
          assert.are.same({ { 0, 3, 6 }, { 1, 4, 7 }, { 2, 5, 8 } }, m:totable())
          m = T.arange(4, { dtype = dt })
          m:copy_(m:narrow(1, 1, 1)) -- broadcast of its own first element
          assert.are.same({ 0, 0, 0, 0 }, m:totable())
        end)

        it("refuses shapes that do not broadcast", function()
          assert.has_error(function() T.zeros(3, 4):copy_(T.zeros(3)) end,
            "copy_: cannot copy a tensor of shape [3] into shape [3,4]")
          assert.has_error(function() T.zeros(4):copy_(T.zeros(2, 4)) end,
            "copy_: cannot copy a tensor of shape [2,4] into shape [4]")
        end)
      end)

      describe(":fill_(), :zero_()", function()
        it("fill only the elements of a view", function()
          local b = base()
          assert.are.equal(b, b:fill_(1))
          assert.are.same(grid(3, 4, function() return 1 end), b:totable())
          b.T:narrow(1, 2, 2):fill_(8) -- columns 2-3 of b
          assert.are.same(grid(3, 4, function(_, j) return (j == 2 or j == 3) and 8 or 1 end),
            b:totable())
          assert.are.equal(b, b:zero_())
          assert.are.same(grid(3, 4, function() return 0 end), b:totable())
          b:fill_(0.1)
          assert.are.equal(dt == "float32" and f32(0.1) or 0.1, b:get(3, 4))
        end)

        it("zero a view's elements only, and keep the sign of -0.0", function()
          local b = base()
          b:narrow(1, 2, 1):zero_() -- row 2 (contiguous)
          b.T:narrow(1, 4, 1):fill_(0) -- column 4 (stride 4)
          assert.are.same(grid(3, 4, function(i, j)
            return (i == 2 or j == 4) and 0 or 10 * i + j end), b:totable())
          b:fill_(-0.0)
          assert.are.equal(-math.huge, 1 / b:get(1, 1))
          assert.are.equal(-math.huge, 1 / b:get(3, 4))
          b:zero_()
          assert.are.equal(math.huge, 1 / b:get(2, 2))
        end)
      end)

      describe(":get(), :set(), :item(), :totable()", function()
        it("read and write elements, negative indices from the end", function()
          local b = base()
          assert.are.equal(23, b:get(2, 3))
          assert.are.equal(34, b:get(-1, -1))
          assert.are.equal(11, b:get(-3, -4))
          assert.are.equal(b, b:set(-1, 1, 0.5))
          assert.are.equal(0.5, b:get(3, 1))
          assert.are.equal(23, b.T:get(3, 2))
          assert.are.equal("float", math.type(b:get(1, 1)))
        end)

        it("item reads the one element of any shape", function()
          assert.are.equal(4, T(4, { dtype = dt }):item())
          assert.are.equal(-2, T({ { { -2 } } }, { dtype = dt }):item())
          assert.are.equal(23, base():narrow(1, 2, 1):narrow(2, 3, 1):item())
        end)

        it("get and set on a 0-d tensor take no index", function()
          local s = T(1, { dtype = dt })
          s:set(6)
          assert.are.equal(6, s:get())
        end)

        it("totable follows the logical layout", function()
          assert.are.same(grid(4, 3, function(i, j) return ij(j, i) end), base().T:totable())
          assert.are.same({ { { 1, 2 } }, { { 1, 2 } } },
            T({ 1, 2 }, { dtype = dt }):expand(2, 1, 2):totable())
        end)
      end)
    end)
  end

  describe("chains of views (randomised, fixed seed)", function()
    -- a model of a logical tensor: its shape and a function from a 1-based
    -- index table to the element of the base, written plainly
    local function model_of(shape)
      local strides, s = {}, 1
      for d = #shape, 1, -1 do
        strides[d] = s
        s = s * shape[d]
      end
      return { shape = shape, at = function(idx)
        local k = 0
        for d = 1, #shape do k = k + (idx[d] - 1) * strides[d] end
        return k
      end }
    end

    local function copy(t) return table.move(t, 1, #t, 1, {}) end

    local ops = {
      function(g, t, m) -- transpose
        local n = #m.shape
        local d1, d2 = g:integer(1, n), g:integer(1, n)
        local sh = copy(m.shape)
        sh[d1], sh[d2] = sh[d2], sh[d1]
        return t:transpose(d1, d2), { shape = sh, at = function(idx)
          local j = copy(idx)
          j[d1], j[d2] = j[d2], j[d1]
          return m.at(j)
        end }
      end,
      function(g, t, m) -- narrow
        local d = g:integer(1, #m.shape)
        local size = m.shape[d]
        local start = g:integer(1, size)
        local len = g:integer(1, size - start + 1)
        local sh = copy(m.shape)
        sh[d] = len
        return t:narrow(d, start, len), { shape = sh, at = function(idx)
          local j = copy(idx)
          j[d] = j[d] + start - 1
          return m.at(j)
        end }
      end,
      function(g, t, m) -- permute
        local n = #m.shape
        local p = {}
        for i = 1, n do p[i] = i end
        for i = n, 2, -1 do
          local k = g:integer(1, i)
          p[i], p[k] = p[k], p[i]
        end
        local sh = {}
        for k = 1, n do sh[k] = m.shape[p[k]] end
        return t:permute(p), { shape = sh, at = function(idx)
          local j = {}
          for k = 1, n do j[p[k]] = idx[k] end
          return m.at(j)
        end }
      end,
      function(g, t, m) -- unsqueeze then squeeze that dimension: the same tensor
        local d = g:integer(1, #m.shape + 1)
        return t:unsqueeze(d):squeeze(d), m
      end,
      function(g, t, m) -- select, when more than one dimension is left
        if #m.shape < 2 then return t, m end
        local d = g:integer(1, #m.shape)
        local i = g:integer(1, m.shape[d])
        local sh = copy(m.shape)
        table.remove(sh, d)
        return t:select(d, i), { shape = sh, at = function(idx)
          local j = copy(idx)
          table.insert(j, d, i)
          return m.at(j)
        end }
      end,
    }

    local each_index = require("spec.helper").each_index

    for _, dt in ipairs(DTYPES) do
      it("read, reshape, copy and write like the model (" .. dt .. ")", function()
        local g = pbt.Generator(2718)
        for _ = 1, 60 do
          local shape = { g:integer(1, 4), g:integer(1, 4), g:integer(1, 4), g:integer(1, 3) }
          local n = shape[1] * shape[2] * shape[3] * shape[4]
          local base = T.arange(n, { dtype = dt }):view(shape)
          local t, m = base, model_of(shape)
          for _ = 1, g:integer(1, 5) do t, m = ops[g:integer(1, #ops)](g, t, m) end
          assert.are.same(m.shape, t:shape())
          local want = {}
          each_index(m.shape, function(idx) want[#want + 1] = m.at(idx) end)
          assert.are.same(want, flat(t))
          assert.are.same(want, t:reshape(-1):totable())
          assert.are.same(want, t:clone():view(-1):totable())
          assert.are.same(want, t:contiguous():view(-1):totable())
          -- write through the view: every element it covers, and nothing else
          t:copy_(T.full(t:shape(), -1))
          local hit = {}
          for _, k in ipairs(want) do hit[k] = true end
          local after = base:reshape(-1):totable()
          for k = 0, n - 1 do assert.are.equal(hit[k] and -1 or k, after[k + 1]) end
        end
      end)
    end
  end)

  describe("storage", function()
    it("outlives the tensor it was created for while views hold it", function()
      local b = T(grid(3, 4, ij))
      local v = b:narrow(2, 2, 2).T
      local s = b:select(1, 3)
      b = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.are.same({ { 12, 22, 32 }, { 13, 23, 33 } }, v:totable())
      v:set(1, 3, 0)
      assert.are.same({ 31, 0, 33, 34 }, s:totable())
    end)
  end)

  describe("__close", function()
    it("releases the storage; a released tensor raises", function()
      local keep
      do
        local t <close> = T.zeros(2)
        keep = t
      end
      assert.has_error(function() keep:numel() end,
        "calling 'numel' on bad self (tensor has been released)")
      assert.has_error(function() return T.zeros_like(keep) end,
        "bad argument #1 to 'zeros_like' (tensor has been released)")
    end)
  end)

  describe("tostring()", function()
    local cases = {
      { "integers", T({ { 1, 2 }, { 3, 4 } }),
        "[[1, 2],\n [3, 4]]\n[pbt.Tensor float32 of shape [2,2]]" },
      { "negative integers, padded to the widest",
        T({ { -1, 2 }, { 3, 400 } }, { dtype = "float64" }),
        "[[ -1,   2],\n [  3, 400]]\n[pbt.Tensor float64 of shape [2,2]]" },
      { "floats with 4 decimals", T({ { 1.5, -2 }, { 3, 40 } }),
        "[[ 1.5000, -2.0000],\n [ 3.0000, 40.0000]]\n[pbt.Tensor float32 of shape [2,2]]" },
      { "negative floats", T({ -0.25, 0.5 }),
        "[-0.2500,  0.5000]\n[pbt.Tensor float32 of shape [2]]" },
      { "small magnitudes in scientific notation", T({ 1e-5, 1 }, { dtype = "float64" }),
        "[1.0000e-05, 1.0000e+00]\n[pbt.Tensor float64 of shape [2]]" },
      { "large magnitudes in scientific notation", T({ -1.5e7, 2.5 }, { dtype = "float64" }),
        "[-1.5000e+07,  2.5000e+00]\n[pbt.Tensor float64 of shape [2]]" },
      { "nan and infinities, aligned", T({ { 0 / 0, 2 }, { 1 / 0, -1 / 0 } }),
        "[[ nan,    2],\n [ inf, -inf]]\n[pbt.Tensor float32 of shape [2,2]]" },
      { "a 0-d tensor", T(3.5), "3.5000\n[pbt.Tensor float32 of shape []]" },
      { "a 0-d integer", T(-7, { dtype = "float64" }), "-7\n[pbt.Tensor float64 of shape []]" },
      { "an empty tensor", T({}), "[]\n[pbt.Tensor float32 of shape [0]]" },
      { "an empty matrix", T.zeros(0, 3), "[]\n[pbt.Tensor float32 of shape [0,3]]" },
      { "3-d, blocks separated by a blank line", T.arange(8):view(2, 2, 2),
        "[[[0, 1],\n  [2, 3]],\n\n [[4, 5],\n  [6, 7]]]\n[pbt.Tensor float32 of shape [2,2,2]]" },
      { "a transposed view", T({ { 1, 2 }, { 3, 4 } }).T,
        "[[1, 3],\n [2, 4]]\n[pbt.Tensor float32 of shape [2,2]]" },
    }
    for _, c in ipairs(cases) do
      it("prints " .. c[1], function()
        assert.are.equal(c[3], tostring(c[2]))
      end)
    end

    it("summarises more than 1000 elements with '...'", function()
      assert.are.equal("[   0,    1,    2, ..., 1997, 1998, 1999]\n"
        .. "[pbt.Tensor float32 of shape [2000]]", tostring(T.arange(2000)))
      local want = table.concat({
        "[[   0,    1,    2, ...,   47,   48,   49],",
        " [  50,   51,   52, ...,   97,   98,   99],",
        " [ 100,  101,  102, ...,  147,  148,  149],",
        " ...,",
        " [1850, 1851, 1852, ..., 1897, 1898, 1899],",
        " [1900, 1901, 1902, ..., 1947, 1948, 1949],",
        " [1950, 1951, 1952, ..., 1997, 1998, 1999]]",
        "[pbt.Tensor float32 of shape [40,50]]" }, "\n")
      assert.are.equal(want, tostring(T.arange(2000):view(40, 50)))
      -- a size of at most 6 is never cut; the widths come from shown values only
      local s = tostring(T.arange(1001):view(1001, 1))
      assert.are.equal("[[   0],\n [   1],\n [   2],\n ...,\n [ 998],\n [ 999],\n [1000]]\n"
        .. "[pbt.Tensor float32 of shape [1001,1]]", s)
    end)

    it("summarises 3-d with a blank line around '...'", function()
      local s = tostring(T.arange(7 * 2 * 100):view(7, 2, 100))
      assert.truthy(s:find("]],\n\n ...,\n\n [[", 1, true))
      local lines = 0
      for _ in s:gmatch("\n") do lines = lines + 1 end
      -- 6 blocks of 2 rows: 6 newlines inside blocks, 6 separators of 2
      -- newlines between the 7 items (6 blocks and '...'), 1 before the shape
      assert.are.equal(6 + 6 * 2 + 1, lines)
    end)

    it("does not summarise 1000 elements", function()
      local s = tostring(T.zeros(1000))
      assert.is_nil(s:find("...", 1, true))
    end)
  end)
end)
