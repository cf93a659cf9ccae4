-- Matrix products: matmul, dot, outer, addmm.  Expected values come from
-- plain loops in Lua below; test values are halves in [-2, 2], so sums of
-- products are exact in float32 and float64 alike.
local pbt = require("pbt")
local T = pbt.tensor

local DTYPES = { "float32", "float64" }

-- ---- reference data and loops ---------------------------------------------

local function values(rows, cols, seed)
  local t = {}
  for i = 1, rows do
    t[i] = {}
    for j = 1, cols do t[i][j] = ((seed * 7 + i * 5 + j * 3 + i * j) % 9 - 4) / 2 end
  end
  return t
end

local function vector(n, seed)
  local v = {}
  for i = 1, n do v[i] = ((seed * 5 + i * 3 + i * i) % 9 - 4) / 2 end
  return v
end

local function transpose(m, rows, cols)
  local t = {}
  for j = 1, cols do
    t[j] = {}
    for i = 1, rows do t[j][i] = m[i][j] end
  end
  return t
end

local function ref_mm(A, B, m, k, n)
  local C = {}
  for i = 1, m do
    C[i] = {}
    for j = 1, n do
      local s = 0
      for p = 1, k do s = s + A[i][p] * B[p][j] end
      C[i][j] = s
    end
  end
  return C
end

local function ref_mv(A, x, m, k)
  local y = {}
  for i = 1, m do
    local s = 0
    for p = 1, k do s = s + A[i][p] * x[p] end
    y[i] = s
  end
  return y
end

local function ref_vm(x, B, k, n)
  local y = {}
  for j = 1, n do
    local s = 0
    for p = 1, k do s = s + x[p] * B[p][j] end
    y[j] = s
  end
  return y
end

local function ref_dot(x, y, k)
  local s = 0
  for p = 1, k do s = s + x[p] * y[p] end
  return s
end

-- ---- operands in several memory layouts ------------------------------------

-- A tensor with the values of the rows x cols table `data` in a layout;
-- returns the tensor and the values it holds (expanded layouts repeat).
local MATRIX_LAYOUTS = { "contiguous", "transposed", "narrowed", "narrowed.T",
  "expanded", "expanded.col" }

local function matrix(data, rows, cols, layout, dt)
  local o = { dtype = dt }
  if layout == "contiguous" then
    return T(data, o), data
  elseif layout == "transposed" then
    return T(transpose(data, rows, cols), o).T, data
  elseif layout == "narrowed" then
    local big = values(rows + 2, cols + 3, 99)
    for i = 1, rows do for j = 1, cols do big[i + 1][j + 2] = data[i][j] end end
    return T(big, o):narrow(1, 2, rows):narrow(2, 3, cols), data
  elseif layout == "narrowed.T" then
    local big = values(cols + 3, rows + 2, 98)
    for i = 1, rows do for j = 1, cols do big[j + 2][i + 1] = data[i][j] end end
    return T(big, o):narrow(1, 3, cols):narrow(2, 2, rows).T, data
  elseif layout == "expanded" then -- every row is data[1]
    local e = {}
    for i = 1, rows do e[i] = data[1] end
    return T({ data[1] }, o):expand(rows, cols), e
  elseif layout == "expanded.col" then -- every column is data[.][1]
    local col, e = {}, {}
    for i = 1, rows do
      col[i] = { data[i][1] }
      e[i] = {}
      for j = 1, cols do e[i][j] = data[i][1] end
    end
    return T(col, o):expand(rows, cols), e
  end
  error("unknown layout " .. layout)
end

local VECTOR_LAYOUTS = { "contiguous", "strided", "narrowed", "expanded" }

local function vec(v, n, layout, dt)
  local o = { dtype = dt }
  if layout == "contiguous" then
    return T(v, o), v
  elseif layout == "strided" then -- a column of a 2-column table
    local m = {}
    for i = 1, n do m[i] = { v[i], 7 } end
    return T(m, o):select(2, 1), v
  elseif layout == "narrowed" then
    local w = { 9 }
    for i = 1, n do w[i + 1] = v[i] end
    w[n + 2] = 9
    return T(w, o):narrow(1, 2, n), v
  elseif layout == "expanded" then
    local e = {}
    for i = 1, n do e[i] = v[1] end
    return T({ v[1] }, o):expand(n), e
  end
  error("unknown layout " .. layout)
end

local function near(actual, expected, tol, path)
  path = path or ""
  if type(expected) == "table" then
    assert.are.equal("table", type(actual), "at " .. path)
    assert.are.equal(#expected, #actual, "length at " .. path)
    for i = 1, #expected do near(actual[i], expected[i], tol, path .. "[" .. i .. "]") end
  else
    local ok = math.abs(actual - expected) <= tol * (1 + math.abs(expected))
    assert.is_true(ok, string.format("at %s: %.17g vs expected %.17g", path, actual, expected))
  end
end

-- ---- specs ----------------------------------------------------------------------

describe("pbt.Tensor", function()
  describe(":matmul()", function()
    local SHAPES = { -- m, k, n
      { 3, 4, 2 }, { 2, 5, 3 }, { 1, 4, 3 }, { 3, 4, 1 }, { 3, 1, 2 }, { 1, 1, 1 }, { 4, 2, 4 },
    }
    for _, dt in ipairs(DTYPES) do
      for _, s in ipairs(SHAPES) do
        local m, k, n = s[1], s[2], s[3]
        it(string.format("[%d,%d] . [%d,%d] in %s, every pair of layouts", m, k, k, n, dt), function()
          for _, la in ipairs(MATRIX_LAYOUTS) do
            for _, lb in ipairs(MATRIX_LAYOUTS) do
              local a, A = matrix(values(m, k, 1), m, k, la, dt)
              local b, B = matrix(values(k, n, 2), k, n, lb, dt)
              local c = a:matmul(b)
              assert.are.same({ m, n }, c:shape())
              assert.are.equal(dt, c:dtype())
              assert.are.same(ref_mm(A, B, m, k, n), c:totable(), la .. " x " .. lb)
            end
          end
        end)
      end

      it("is also pbt.tensor.matmul in " .. dt, function()
        local A, B = values(2, 3, 3), values(3, 2, 4)
        local c = T.matmul(T(A, { dtype = dt }), T(B, { dtype = dt }))
        assert.are.same(ref_mm(A, B, 2, 3, 2), c:totable())
      end)

      it("[k] . [k] is a 0-d dot product in " .. dt, function()
        for _, la in ipairs(VECTOR_LAYOUTS) do
          for _, lb in ipairs(VECTOR_LAYOUTS) do
            local a, x = vec(vector(5, 1), 5, la, dt)
            local b, y = vec(vector(5, 2), 5, lb, dt)
            local c = a:matmul(b)
            assert.are.same({}, c:shape())
            assert.are.equal(ref_dot(x, y, 5), c:item())
          end
        end
      end)

      it("[m,k] . [k] is a matrix-vector product in " .. dt, function()
        for _, la in ipairs(MATRIX_LAYOUTS) do
          for _, lb in ipairs(VECTOR_LAYOUTS) do
            for _, mk in ipairs({ { 3, 4 }, { 1, 4 }, { 3, 1 } }) do
              local m, k = mk[1], mk[2]
              local a, A = matrix(values(m, k, 5), m, k, la, dt)
              local b, x = vec(vector(k, 6), k, lb, dt)
              local c = a:matmul(b)
              assert.are.same({ m }, c:shape())
              assert.are.same(ref_mv(A, x, m, k), c:totable(), la .. " x " .. lb)
            end
          end
        end
      end)

      it("[k] . [k,n] is a vector-matrix product in " .. dt, function()
        for _, la in ipairs(VECTOR_LAYOUTS) do
          for _, lb in ipairs(MATRIX_LAYOUTS) do
            for _, kn in ipairs({ { 4, 3 }, { 4, 1 }, { 1, 3 } }) do
              local k, n = kn[1], kn[2]
              local a, x = vec(vector(k, 7), k, la, dt)
              local b, B = matrix(values(k, n, 8), k, n, lb, dt)
              local c = a:matmul(b)
              assert.are.same({ n }, c:shape())
              assert.are.same(ref_vm(x, B, k, n), c:totable(), la .. " x " .. lb)
            end
          end
        end
      end)

      it("agrees with the loops on larger sizes in " .. dt, function()
        local m, k, n = 67, 131, 45
        local A, B = values(m, k, 11), values(k, n, 12)
        local expect = ref_mm(A, B, m, k, n)
        for _, la in ipairs({ "contiguous", "transposed", "narrowed" }) do
          local a = matrix(A, m, k, la, dt)
          local b = matrix(B, k, n, "transposed", dt)
          near(a:matmul(b):totable(), expect, dt == "float32" and 1e-6 or 1e-12)
        end
      end)
    end

    describe("batched", function()
      -- B batches of values; returns the nested table and the per-batch list
      local function batch(nb, rows, cols, seed)
        local t = {}
        for i = 1, nb do t[i] = values(rows, cols, seed + i) end
        return t
      end
      local function ref_bmm(As, Bs, nb, m, k, n)
        local C = {}
        for i = 1, nb do C[i] = ref_mm(As[i] or As[1], Bs[i] or Bs[1], m, k, n) end
        return C
      end
      local function transposed3(d, nb, rows, cols, dt)
        local t = {}
        for i = 1, nb do t[i] = transpose(d[i], rows, cols) end
        return T(t, { dtype = dt }):transpose(2, 3)
      end

      for _, dt in ipairs(DTYPES) do
        local o = { dtype = dt }
        it("[b,m,k] . [b,k,n] in " .. dt, function()
          local A, B = batch(3, 2, 4, 1), batch(3, 4, 5, 2)
          local expect = ref_bmm(A, B, 3, 2, 4, 5)
          assert.are.same(expect, T(A, o):matmul(T(B, o)):totable())
          assert.are.same(expect, transposed3(A, 3, 2, 4, dt):matmul(T(B, o)):totable())
          assert.are.same(expect, T(A, o):matmul(transposed3(B, 3, 4, 5, dt)):totable())
          -- batch dimension not outermost in memory
          local Ap = {}
          for i = 1, 2 do
            Ap[i] = {}
            for b = 1, 3 do Ap[i][b] = A[b][i] end
          end
          assert.are.same(expect, T(Ap, o):permute(2, 1, 3):matmul(T(B, o)):totable())
          -- narrowed batches
          local Aw = { values(2, 4, 50) }
          for b = 1, 3 do Aw[b + 1] = A[b] end
          assert.are.same(expect, T(Aw, o):narrow(1, 2, 3):matmul(T(B, o)):totable())
        end)

        it("broadcasts a batch of 1 in " .. dt, function()
          local A, B = batch(3, 2, 4, 3), batch(1, 4, 5, 4)
          local expect = ref_bmm(A, B, 3, 2, 4, 5)
          assert.are.same(expect, T(A, o):matmul(T(B, o)):totable())
          local A1, B3 = batch(1, 2, 4, 5), batch(3, 4, 5, 6)
          assert.are.same(ref_bmm(A1, B3, 3, 2, 4, 5), T(A1, o):matmul(T(B3, o)):totable())
          -- an expanded batch (stride 0)
          assert.are.same(expect, T(A, o):matmul(T(B, o):expand(3, 4, 5)):totable())
        end)

        it("[b,m,k] . [k,n] and [m,k] . [b,k,n] in " .. dt, function()
          local A, B2 = batch(3, 2, 4, 7), values(4, 5, 8)
          local expect = ref_bmm(A, { B2 }, 3, 2, 4, 5)
          assert.are.same(expect, T(A, o):matmul(T(B2, o)):totable())
          assert.are.same(expect, transposed3(A, 3, 2, 4, dt):matmul(T(B2, o)):totable())
          assert.are.same(expect, T(A, o):matmul(T(transpose(B2, 4, 5), o).T):totable())
          local A2, B = values(2, 4, 9), batch(3, 4, 5, 10)
          assert.are.same(ref_bmm({ A2 }, B, 3, 2, 4, 5), T(A2, o):matmul(T(B, o)):totable())
        end)

        it("[b,m,k] . [k] and [k] . [b,k,n] in " .. dt, function()
          local A, x = batch(2, 3, 4, 11), vector(4, 12)
          local got = T(A, o):matmul(T(x, o))
          assert.are.same({ 2, 3 }, got:shape())
          assert.are.same({ ref_mv(A[1], x, 3, 4), ref_mv(A[2], x, 3, 4) }, got:totable())
          local B = batch(2, 4, 3, 13)
          got = T(x, o):matmul(T(B, o))
          assert.are.same({ 2, 3 }, got:shape())
          assert.are.same({ ref_vm(x, B[1], 4, 3), ref_vm(x, B[2], 4, 3) }, got:totable())
        end)

        it("broadcasts several batch dimensions in " .. dt, function()
          -- [2,1,2,3] . [3,3,2] -> [2,3,2,2]
          local A = { { values(2, 3, 1) }, { values(2, 3, 2) } }
          local B = batch(3, 3, 2, 20)
          local got = T(A, o):matmul(T(B, o))
          assert.are.same({ 2, 3, 2, 2 }, got:shape())
          local expect = {}
          for i = 1, 2 do
            expect[i] = {}
            for j = 1, 3 do expect[i][j] = ref_mm(A[i][1], B[j], 2, 3, 2) end
          end
          assert.are.same(expect, got:totable())
        end)
      end
    end)

    describe("zero and one sizes", function()
      for _, dt in ipairs(DTYPES) do
        local o = { dtype = dt }
        it("k = 0 gives zeros in " .. dt, function()
          assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, T.zeros(2, 0, o):matmul(T.zeros(0, 3, o)):totable())
          assert.are.same({ 0, 0 }, T.zeros(2, 0, o):matmul(T.zeros(0, o)):totable())
          assert.are.equal(0, T.zeros(0, o):matmul(T.zeros(0, o)):item())
          local c = T.zeros(2, 0, 3, o):matmul(T.zeros(2, 3, 0, o))
          assert.are.same({ 2, 0, 0 }, c:shape())
          assert.are.same({ { { 0 } } }, T.zeros(1, 1, 0, o):matmul(T.zeros(0, 1, o)):totable())
        end)

        it("m = 0 or n = 0 gives empty results in " .. dt, function()
          assert.are.same({ 0, 3 }, T.zeros(0, 4, o):matmul(T.ones(4, 3, o)):shape())
          assert.are.same({ 2, 0 }, T.ones(2, 4, o):matmul(T.zeros(4, 0, o)):shape())
          assert.are.same({ 0, 2, 3 }, T.zeros(0, 2, 4, o):matmul(T.ones(4, 3, o)):shape())
        end)

        it("accepts size-1 dimensions with odd strides in " .. dt, function()
          -- a [1,3] row taken from a transposed [3,4] matrix: strides {1, 4}
          local M = values(3, 4, 30)
          local row = T(M, o).T:narrow(1, 2, 1)
          local B = values(3, 2, 31)
          local expect = ref_mm({ { M[1][2], M[2][2], M[3][2] } }, B, 1, 3, 2)
          assert.are.same(expect, row:matmul(T(B, o)):totable())
          -- a [3,1] column of a narrowed matrix times a [1,2] row
          local col = T(M, o):narrow(2, 3, 1)
          local r = T({ { 2, -1 } }, o)
          assert.are.same({ { 2 * M[1][3], -M[1][3] }, { 2 * M[2][3], -M[2][3] }, { 2 * M[3][3], -M[3][3] } },
            col:matmul(r):totable())
          -- unsqueezed vectors
          local x = T({ 1, 2, 3 }, o)
          assert.are.same({ { 14 } }, x:unsqueeze(1):matmul(x:unsqueeze(2)):totable())
        end)
      end
    end)

    describe("with an output tensor", function()
      for _, dt in ipairs(DTYPES) do
        local o = { dtype = dt }
        local A, B = values(3, 4, 40), values(4, 2, 41)
        local expect = ref_mm(A, B, 3, 4, 2)

        it("writes into out and returns it in " .. dt, function()
          local out = T.full({ 3, 2 }, 99, o)
          local r = T.matmul(T(A, o), T(B, o), out)
          assert.are.equal(out, r)
          assert.are.same(expect, out:totable())
          r = T(A, o):matmul(T(B, o), out)
          assert.are.equal(out, r)
          assert.are.same(expect, out:totable())
        end)

        it("writes into non-contiguous views of out in " .. dt, function()
          local base = T.full({ 2, 3 }, 99, o)
          T(A, o):matmul(T(B, o), base.T)
          assert.are.same(transpose(expect, 3, 2), base:totable())
          local big = T.full({ 5, 4 }, 99, o)
          T(A, o):matmul(T(B, o), big:narrow(1, 2, 3):narrow(2, 2, 2))
          assert.are.same({ 99, 99, 99, 99 }, big:totable()[1])
          assert.are.same({ 99, expect[1][1], expect[1][2], 99 }, big:totable()[2])
          assert.are.same({ 99, expect[3][1], expect[3][2], 99 }, big:totable()[4])
          -- every other column: no BLAS layout, goes through a temporary
          local wide = T.full({ 3, 4 }, 99, o)
          local view = wide:view(3, 2, 2):select(3, 1)
          T(A, o):matmul(T(B, o), view)
          assert.are.same({ expect[2][1], 99, expect[2][2], 99 }, wide:totable()[2])
        end)

        it("writes vectors into strided out in " .. dt, function()
          local M = T.full({ 3, 2 }, 99, o)
          T(A, o):matmul(T({ 1, 0, 0, 1 }, o), M:select(2, 2))
          assert.are.same({ { 99, A[1][1] + A[1][4] }, { 99, A[2][1] + A[2][4] }, { 99, A[3][1] + A[3][4] } },
            M:totable())
        end)

        it("may be one of the inputs in " .. dt, function()
          local S = values(3, 3, 42)
          local expect2 = ref_mm(S, S, 3, 3, 3)
          local s = T(S, o)
          s:matmul(s, s)
          assert.are.same(expect2, s:totable())
        end)

        it("is resized when its shape differs in " .. dt, function()
          local out = T.zeros(7, o)
          local r = T(A, o):matmul(T(B, o), out)
          assert.are.equal(out, r)
          assert.are.same({ 3, 2 }, out:shape())
          assert.are.same(expect, out:totable())
        end)

        it("of another dtype is an error in " .. dt, function()
          local other = dt == "float32" and "float64" or "float32"
          assert.has_error(function() T(A, o):matmul(T(B, o), T.zeros(3, 2, { dtype = other })) end,
            "matmul: out has dtype " .. other .. ", expected " .. dt)
        end)
      end
    end)

    describe("errors", function()
      local CASES = {
        { { 3, 4 }, { 5, 6 }, "matmul: shapes [3,4] and [5,6] cannot be multiplied" },
        { { 3 }, { 4 }, "matmul: shapes [3] and [4] cannot be multiplied" },
        { { 2, 3 }, { 2 }, "matmul: shapes [2,3] and [2] cannot be multiplied" },
        { { 3 }, { 2, 3 }, "matmul: shapes [3] and [2,3] cannot be multiplied" },
        { { 2, 3, 4 }, { 3, 4, 5 }, "matmul: shapes [2,3,4] and [3,4,5] cannot be multiplied" },
        { { 2, 3, 4 }, { 2, 5, 5 }, "matmul: shapes [2,3,4] and [2,5,5] cannot be multiplied" },
        { {}, { 3 }, "matmul: shapes [] and [3] cannot be multiplied" },
      }
      for _, c in ipairs(CASES) do
        it(c[3], function()
          local a, b = T.zeros(c[1]), T.zeros(c[2])
          assert.has_error(function() a:matmul(b) end, c[3])
          assert.has_error(function() T.matmul(a, b) end, c[3])
        end)
      end

      it("rejects mixed dtypes", function()
        assert.has_error(function() T.ones(2, 2):matmul(T.ones(2, 2, { dtype = "float64" })) end,
          "matmul: dtypes float32 and float64 do not match")
        assert.has_error(function() T.ones(2, { dtype = "float64" }):matmul(T.ones(2)) end,
          "matmul: dtypes float64 and float32 do not match")
      end)

      it("rejects non-tensors", function()
        assert.has_error(function() T.ones(2, 2):matmul(5) end,
          "bad argument #1 to 'matmul' (pbt.Tensor expected, got number)")
        assert.has_error(function() T.matmul(T.ones(2, 2), nil) end,
          "bad argument #2 to 'matmul' (pbt.Tensor expected, got nil)")
        assert.has_error(function() T.matmul(T.ones(2, 2), T.ones(2, 2), "out") end,
          "bad argument #3 to 'matmul' (pbt.Tensor expected, got string)")
      end)

      it("leaves out untouched", function()
        local out = T.full({ 3, 3 }, 5)
        assert.has_error(function() T.matmul(T.ones(3, 4), T.ones(3, 3), out) end,
          "matmul: shapes [3,4] and [3,3] cannot be multiplied")
        assert.are.same({ 5, 5, 5 }, out:totable()[2])
      end)
    end)
  end)

  describe(":dot()", function()
    for _, dt in ipairs(DTYPES) do
      it("of 1-d tensors in every layout, " .. dt, function()
        for _, la in ipairs(VECTOR_LAYOUTS) do
          for _, lb in ipairs(VECTOR_LAYOUTS) do
            local a, x = vec(vector(6, 3), 6, la, dt)
            local b, y = vec(vector(6, 4), 6, lb, dt)
            local d = a:dot(b)
            assert.are.same({}, d:shape())
            assert.are.equal(dt, d:dtype())
            assert.are.equal(ref_dot(x, y, 6), d:item())
            assert.are.equal(ref_dot(x, y, 6), T.dot(a, b):item())
          end
        end
        assert.are.equal(0, T.zeros(0, { dtype = dt }):dot(T.zeros(0, { dtype = dt })):item())
      end)
    end

    it("rejects other shapes and dtypes", function()
      assert.has_error(function() T.ones(2, 3):dot(T.ones(3)) end,
        "dot: expects 1-d tensors, got shapes [2,3] and [3]")
      assert.has_error(function() T.ones(3):dot(T.ones(4)) end,
        "dot: shapes [3] and [4] cannot be multiplied")
      assert.has_error(function() T.ones(3):dot(T.ones(3, { dtype = "float64" })) end,
        "dot: dtypes float32 and float64 do not match")
    end)
  end)

  describe(":outer()", function()
    for _, dt in ipairs(DTYPES) do
      it("of 1-d tensors in every layout, " .. dt, function()
        for _, sizes in ipairs({ { 3, 4 }, { 1, 4 }, { 3, 1 }, { 1, 1 } }) do
          local m, n = sizes[1], sizes[2]
          for _, la in ipairs(VECTOR_LAYOUTS) do
            for _, lb in ipairs(VECTOR_LAYOUTS) do
              local a, x = vec(vector(m, 5), m, la, dt)
              local b, y = vec(vector(n, 6), n, lb, dt)
              local expect = {}
              for i = 1, m do
                expect[i] = {}
                for j = 1, n do expect[i][j] = x[i] * y[j] end
              end
              assert.are.same(expect, a:outer(b):totable())
              assert.are.same(expect, T.outer(a, b):totable())
            end
          end
        end
        assert.are.same({ 0, 2 }, T.zeros(0, { dtype = dt }):outer(T.ones(2, { dtype = dt })):shape())
      end)
    end

    it("rejects other shapes", function()
      assert.has_error(function() T.ones(3):outer(T.ones(3, 1)) end,
        "outer: expects 1-d tensors, got shapes [3] and [3,1]")
    end)
  end)

  describe("addmm", function()
    local function ref_addmm(C, A, B, m, k, n, alpha, beta)
      local P, R = ref_mm(A, B, m, k, n), {}
      for i = 1, m do
        R[i] = {}
        for j = 1, n do R[i][j] = beta * C[i][j] + alpha * P[i][j] end
      end
      return R
    end

    for _, dt in ipairs(DTYPES) do
      local o = { dtype = dt }
      local COEFFS = { { nil, nil, 1, 1 }, { 2, nil, 2, 1 }, { 0.5, 3, 0.5, 3 }, { -1, 0, -1, 0 }, { 0, 2, 0, 2 } }
      for _, shape in ipairs({ { 3, 4, 2 }, { 2, 1, 3 }, { 1, 3, 2 }, { 3, 2, 1 }, { 2, 0, 2 } }) do
        local m, k, n = shape[1], shape[2], shape[3]
        it(string.format("out[%d,%d] += a[%d,%d] . b in every layout, %s", m, n, m, k, dt), function()
          local C = values(m, n, 60)
          local A, B = values(m, k, 61), values(k, n, 62)
          for _, c in ipairs(COEFFS) do
            for _, la in ipairs(k > 0 and MATRIX_LAYOUTS or { "contiguous" }) do
              for _, lo in ipairs({ "contiguous", "transposed", "narrowed" }) do
                local a, Av = T.zeros(m, 0, o), A
                if k > 0 then a, Av = matrix(A, m, k, la, dt) end
                local b = k > 0 and matrix(B, k, n, "transposed", dt) or T.zeros(0, n, o)
                local out = matrix(C, m, n, lo, dt)
                local r = T.addmm(out, a, b, c[1], c[2])
                assert.are.equal(out, r)
                assert.are.same(ref_addmm(C, Av, B, m, k, n, c[3], c[4]), out:totable(),
                  la .. "/" .. lo)
              end
            end
          end
        end)
      end

      it("with beta = 0 ignores NaN in out, " .. dt, function()
        local out = T.full({ 2, 2 }, 0 / 0, o)
        T.addmm(out, T.eye(2, o), T({ { 1, 2 }, { 3, 4 } }, o), 1, 0)
        assert.are.same({ { 1, 2 }, { 3, 4 } }, out:totable())
        out = T.full({ 2, 2 }, 0 / 0, o)
        T.addmm(out, T.zeros(2, 0, o), T.zeros(0, 2, o), 1, 0)
        assert.are.same({ { 0, 0 }, { 0, 0 } }, out:totable())
      end)

      it("may take out as an operand, " .. dt, function()
        local X = values(3, 3, 63)
        local x = T(X, o)
        T.addmm(x, x, T.eye(3, o), 1, 1) -- x = x + x . I
        local expect = {}
        for i = 1, 3 do
          expect[i] = {}
          for j = 1, 3 do expect[i][j] = 2 * X[i][j] end
        end
        assert.are.same(expect, x:totable())
      end)

      it("is also the method addmm_, " .. dt, function()
        local out = T.ones(2, 2, o)
        local r = out:addmm_(T.eye(2, o), T({ { 1, 2 }, { 3, 4 } }, o), 2, 0.5)
        assert.are.equal(out, r)
        assert.are.same({ { 2.5, 4.5 }, { 6.5, 8.5 } }, out:totable())
      end)
    end

    it("reports misuse", function()
      assert.has_error(function() T.addmm(T.zeros(3, 6), T.ones(3, 4), T.ones(5, 6)) end,
        "addmm: shapes [3,4] and [5,6] cannot be multiplied")
      assert.has_error(function() T.addmm(T.zeros(2, 2), T.ones(2, 3), T.ones(3, 3)) end,
        "addmm: out has shape [2,2], expected [2,3]")
      assert.has_error(function() T.addmm(T.zeros(3), T.ones(3), T.ones(3, 3)) end,
        "addmm: expects 2-d tensors, got shapes [3] and [3,3]")
      assert.has_error(function() T.addmm(T.zeros(2, 2), T.ones(2, 2), T.ones(2, 2, { dtype = "float64" })) end,
        "addmm: dtypes float32 and float64 do not match")
      assert.has_error(function() T.addmm(T.zeros(2, 2, { dtype = "float64" }), T.ones(2, 2), T.ones(2, 2)) end,
        "addmm: out has dtype float64, expected float32")
      assert.has_error(function() T.addmm(T.zeros(2, 2), T.ones(2, 2), T.ones(2, 2), "x") end,
        "bad argument #4 to 'addmm' (number expected, got string)")
      assert.has_error(function() T.zeros(2, 2):addmm_(T.ones(2, 3), T.ones(2, 3)) end,
        "addmm_: shapes [2,3] and [2,3] cannot be multiplied")
    end)
  end)
end)
