-- Indexing: index_select, gather, scatter_add_, one_hot.  Indices are 1-based
-- and given as a table or a float tensor of integral values.  Expected values
-- come from plain loops over nested tables below.
local pbt = require("pbt")
local T = pbt.tensor

local DTYPES = { "float32", "float64" }

-- ---- nested tables of any depth ---------------------------------------------

local function build(shape, f, d, idx)
  d, idx = d or 1, idx or {}
  if d > #shape then return f(idx) end
  local t = {}
  for i = 1, shape[d] do
    idx[d] = i
    t[i] = build(shape, f, d + 1, idx)
  end
  idx[d] = nil
  return t
end

local function get(t, idx)
  for d = 1, #idx do t = t[idx[d]] end
  return t
end

local function copy(idx)
  local c = {}
  for i = 1, #idx do c[i] = idx[i] end
  return c
end

-- distinct values, so a wrong position always shows
local function values(shape, seed)
  return build(shape, function(idx)
    local v = seed
    for d = 1, #idx do v = v * 10 + idx[d] end
    return v
  end)
end

-- a source tensor in a layout, with the values it holds
local function source(data, shape, layout, dt)
  local o = { dtype = dt }
  if layout == "contiguous" then
    return T(data, o), data
  elseif layout == "transposed" then -- reverse all dimensions in memory
    local rshape, n = {}, #shape
    for d = 1, n do rshape[d] = shape[n + 1 - d] end
    local r = build(rshape, function(idx)
      local j = {}
      for d = 1, n do j[d] = idx[n + 1 - d] end
      return get(data, j)
    end)
    local perm = {}
    for d = 1, n do perm[d] = n + 1 - d end
    return T(r, o):permute(perm), data
  elseif layout == "narrowed" then -- one extra entry at both ends of dim 1
    local big = { values({ table.unpack(shape, 2) }, 7) }
    for i = 1, shape[1] do big[i + 1] = data[i] end
    big[shape[1] + 2] = big[1]
    return T(big, o):narrow(1, 2, shape[1]), data
  elseif layout == "expanded" then -- dimension 1 broadcast from data[1]
    local e = {}
    for i = 1, shape[1] do e[i] = data[1] end
    local rest = { table.unpack(shape, 2) }
    return T({ data[1] }, o):expand(shape[1], table.unpack(rest)), e
  end
  error("unknown layout " .. layout)
end

local SOURCE_LAYOUTS = { "contiguous", "transposed", "narrowed", "expanded" }

-- the same indices as a table, float32 and float64 tensors, and a strided
-- float64 tensor (a column of a 2-column tensor, for 1-d index lists)
local function index_forms(idx, flat)
  local forms = {
    { "table", idx },
    { "float32", T(idx) },
    { "float64", T(idx, { dtype = "float64" }) },
  }
  if flat then
    local m = {}
    for i = 1, #idx do m[i] = { idx[i], -5 } end
    forms[#forms + 1] = { "strided", T(m, { dtype = "float64" }):select(2, 1) }
  end
  return forms
end

-- ---- references -----------------------------------------------------------------

local function ref_index_select(S, shape, dim, idx)
  local oshape = copy(shape)
  oshape[dim] = #idx
  return build(oshape, function(i)
    local j = copy(i)
    j[dim] = idx[i[dim]]
    return get(S, j)
  end), oshape
end

local function ref_gather(S, dim, I, ishape)
  return build(ishape, function(i)
    local j = copy(i)
    j[dim] = get(I, i)
    return get(S, j)
  end)
end

local function ref_scatter_add(Tv, tshape, dim, I, ishape, Src)
  local R = build(tshape, function(i) return get(Tv, i) end)
  local function walk(d, i)
    if d > #ishape then
      local j = copy(i)
      j[dim] = get(I, i)
      local row = R
      for q = 1, #j - 1 do row = row[j[q]] end
      row[j[#j]] = row[j[#j]] + get(Src, i)
      return
    end
    for x = 1, ishape[d] do
      i[d] = x
      walk(d + 1, i)
    end
    i[d] = nil
  end
  walk(1, {})
  return R
end

-- ---- specs --------------------------------------------------------------------------

describe("pbt.Tensor", function()
  describe(":index_select()", function()
    local CASES = {
      { { 5, 3 }, 1, { 3, 1, 5, 3 } },
      { { 5, 3 }, 2, { 2, 2, 3 } },
      { { 5, 3 }, -1, { 1 } },
      { { 4, 3, 2 }, 2, { 3, 1 } },
      { { 4, 3, 2 }, 3, { 2, 1, 2, 1 } },
      { { 4, 3, 2 }, 1, { 4 } },
      { { 6 }, 1, { 6, 1, 1, 2 } },
    }
    for _, dt in ipairs(DTYPES) do
      for _, c in ipairs(CASES) do
        local shape, dim, idx = c[1], c[2], c[3]
        it(string.format("[%s] along %d in %s", table.concat(shape, ","), dim, dt), function()
          local d0 = dim < 0 and #shape + 1 + dim or dim
          for _, layout in ipairs(SOURCE_LAYOUTS) do
            local t, S = source(values(shape, 1), shape, layout, dt)
            local expect, oshape = ref_index_select(S, shape, d0, idx)
            for _, f in ipairs(index_forms(idx, true)) do
              local r = t:index_select(dim, f[2])
              assert.are.same(oshape, r:shape())
              assert.are.equal(dt, r:dtype())
              assert.are.same(expect, r:totable(), layout .. " with a " .. f[1] .. " index")
              assert.are.same(expect, T.index_select(t, dim, f[2]):totable())
            end
          end
        end)
      end
    end

    it("takes an empty index", function()
      local r = T.ones(3, 4):index_select(2, {})
      assert.are.same({ 3, 0 }, r:shape())
      assert.are.same({ 0, 4 }, T.ones(3, 4):index_select(1, T.zeros(0)):shape())
    end)

    it("reports misuse", function()
      local t = T.ones(5, 3)
      assert.has_error(function() t:index_select(1, { 1, 7 }) end,
        "index_select: index 7 out of range for size 5")
      assert.has_error(function() t:index_select(1, { 0 }) end,
        "index_select: index 0 out of range for size 5")
      assert.has_error(function() t:index_select(2, T({ -1 })) end,
        "index_select: index -1 out of range for size 3")
      assert.has_error(function() t:index_select(1, { 2.5 }) end,
        "index_select: index 2.5 is not an integer")
      assert.has_error(function() t:index_select(1, T({ { 1 } })) end,
        "index_select: index must be a 1-d tensor, got shape [1,1]")
      assert.has_error(function() t:index_select(3, { 1 }) end,
        "bad argument #1 to 'index_select' (dimension 3 out of range for a 2-d tensor)")
      assert.has_error(function() T.index_select(t, 1, "1") end,
        "bad argument #3 to 'index_select' (pbt.Tensor or table expected, got string)")
      assert.has_error(function() t:index_select(1, { "a" }) end,
        "bad argument #2 to 'index_select' (number expected in index table, got string)")
      assert.has_error(function() t:index_select(1, { { 1 }, { 1, 2 } }) end,
        "bad argument #2 to 'index_select' (ragged index table: expected 1 entries at depth 2)")
    end)
  end)

  describe(":gather()", function()
    local CASES = { -- source shape, dim, index (same number of dimensions)
      { { 3, 4 }, 2, { { 1, 4 }, { 2, 2 }, { 4, 3 } } },
      { { 3, 4 }, 1, { { 3, 1, 2, 3 }, { 1, 1, 1, 2 } } },
      { { 3, 4 }, -1, { { 2 }, { 4 } } },
      { { 2, 3, 4 }, 3, { { { 4, 1 }, { 2, 2 } }, { { 1, 3 }, { 4, 4 } } } },
      { { 2, 3, 4 }, 2, { { { 3, 1, 2, 1 } }, { { 1, 3, 3, 2 } } } },
      { { 2, 3, 4 }, 1, { { { 2, 1, 2 }, { 1, 1, 2 }, { 2, 2, 2 } }, { { 1, 2, 1 }, { 2, 1, 1 }, { 1, 1, 1 } },
        { { 2, 2, 2 }, { 1, 1, 1 }, { 2, 1, 2 } } } },
      { { 5 }, 1, { 5, 1, 5 } },
    }
    local function shape_of(t)
      local s = {}
      while type(t) == "table" do
        s[#s + 1] = #t
        t = t[1]
      end
      return s
    end
    for _, dt in ipairs(DTYPES) do
      for _, c in ipairs(CASES) do
        local shape, dim, idx = c[1], c[2], c[3]
        local ishape = shape_of(idx)
        it(string.format("[%s] along %d with an index [%s] in %s", table.concat(shape, ","), dim,
          table.concat(ishape, ","), dt), function()
          local d0 = dim < 0 and #shape + 1 + dim or dim
          for _, layout in ipairs(SOURCE_LAYOUTS) do
            local t, S = source(values(shape, 2), shape, layout, dt)
            local expect = ref_gather(S, d0, idx, ishape)
            for _, f in ipairs(index_forms(idx, #ishape == 1)) do
              local r = t:gather(dim, f[2])
              assert.are.same(ishape, r:shape())
              assert.are.equal(dt, r:dtype())
              assert.are.same(expect, r:totable(), layout .. " with a " .. f[1] .. " index")
            end
            -- a transposed index tensor
            if #ishape == 2 then
              local ti = {}
              for j = 1, ishape[2] do
                ti[j] = {}
                for i = 1, ishape[1] do ti[j][i] = idx[i][j] end
              end
              assert.are.same(expect, T.gather(t, dim, T(ti).T):totable())
            end
          end
        end)
      end
    end

    it("reports misuse", function()
      local t = T.ones(2, 5)
      assert.has_error(function() t:gather(2, { { 7 } }) end,
        "gather: index 7 out of range for size 5")
      assert.has_error(function() t:gather(2, { { 0.5 } }) end,
        "gather: index 0.5 is not an integer")
      assert.has_error(function() t:gather(2, { 1, 2 }) end,
        "gather: index of shape [2] does not fit a tensor of shape [2,5]")
      assert.has_error(function() t:gather(2, { { 1 }, { 1 }, { 1 } }) end,
        "gather: index of shape [3,1] does not fit a tensor of shape [2,5]")
      assert.has_error(function() t:gather(0, { { 1 } }) end,
        "bad argument #1 to 'gather' (dimension 0 out of range for a 2-d tensor)")
    end)
  end)

  describe(":scatter_add_()", function()
    local CASES = { -- target shape, dim, index, source shape
      { { 3, 4 }, 2, { { 1, 4, 1 }, { 2, 2, 2 }, { 4, 3, 3 } }, { 3, 3 } },
      { { 3, 4 }, 1, { { 3, 1, 2, 3 }, { 3, 1, 1, 2 } }, { 2, 4 } },
      { { 3, 4 }, 2, { { 2 }, { 4 } }, { 3, 2 } }, -- source larger than index
      { { 2, 3, 2 }, 2, { { { 3, 1 }, { 3, 3 } }, { { 1, 2 }, { 2, 2 } } }, { 2, 2, 2 } },
      { { 4 }, 1, { 1, 4, 1, 1, 2 }, { 5 } },
    }
    local function shape_of(t)
      local s = {}
      while type(t) == "table" do
        s[#s + 1] = #t
        t = t[1]
      end
      return s
    end
    for _, dt in ipairs(DTYPES) do
      local o = { dtype = dt }
      for _, c in ipairs(CASES) do
        local tshape, dim, idx, sshape = c[1], c[2], c[3], c[4]
        local ishape = shape_of(idx)
        it(string.format("[%s] along %d from [%s] in %s", table.concat(tshape, ","), dim,
          table.concat(sshape, ","), dt), function()
          local Src = values(sshape, 3)
          for _, tl in ipairs({ "contiguous", "transposed", "narrowed" }) do
            for _, sl in ipairs(SOURCE_LAYOUTS) do
              local t, Tv = source(values(tshape, 4), tshape, tl, dt)
              local s, Sv = source(Src, sshape, sl, dt)
              local expect = ref_scatter_add(Tv, tshape, dim, idx, ishape, Sv)
              local r = t:scatter_add_(dim, idx, s)
              assert.are.equal(t, r)
              assert.are.same(expect, t:totable(), tl .. " from " .. sl)
            end
          end
          -- as a function, with an index tensor
          local t = T(values(tshape, 4), o)
          T.scatter_add_(t, dim, T(idx, o), T(Src, o))
          assert.are.same(ref_scatter_add(values(tshape, 4), tshape, dim, idx, ishape, Src), t:totable())
        end)
      end
    end

    it("accumulates repeated indices (a histogram)", function()
      local h = T.zeros(4):scatter_add_(1, { 2, 2, 4, 2, 1 }, T.ones(5))
      assert.are.same({ 1, 3, 0, 1 }, h:totable())
    end)

    it("reports misuse and leaves the tensor untouched", function()
      local t = T.zeros(2, 3)
      assert.has_error(function() t:scatter_add_(2, { { 1, 4 } }, T.ones(1, 2)) end,
        "scatter_add_: index 4 out of range for size 3")
      assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, t:totable())
      assert.has_error(function() t:scatter_add_(2, { { 1, 1.5 } }, T.ones(1, 2)) end,
        "scatter_add_: index 1.5 is not an integer")
      assert.has_error(function() t:scatter_add_(2, { { 1, 2 } }, T.ones(1, 1)) end,
        "scatter_add_: index of shape [1,2] does not fit a source of shape [1,1]")
      assert.has_error(function() t:scatter_add_(2, { { 1 }, { 1 }, { 1 } }, T.ones(3, 1)) end,
        "scatter_add_: index of shape [3,1] does not fit a tensor of shape [2,3]")
      assert.has_error(function() t:scatter_add_(2, { 1 }, T.ones(1)) end,
        "scatter_add_: index of shape [1] does not fit a tensor of shape [2,3]")
      assert.has_error(function() t:scatter_add_(2, { { 1 } }, T.ones(1, 1, { dtype = "float64" })) end,
        "scatter_add_: dtypes float32 and float64 do not match")
      assert.has_error(function() t:scatter_add_(2, { { 1 } }, 1) end,
        "bad argument #3 to 'scatter_add_' (pbt.Tensor expected, got number)")
      assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, t:totable())
    end)
  end)
end)

describe("pbt.tensor", function()
  describe(".one_hot()", function()
    local function ref(labels, n)
      local r = {}
      for i, l in ipairs(labels) do
        r[i] = {}
        for j = 1, n do r[i][j] = j == l and 1 or 0 end
      end
      return r
    end

    it("encodes a table of labels as float32", function()
      local r = T.one_hot({ 2, 1, 3, 3 }, 3)
      assert.are.equal("float32", r:dtype())
      assert.are.same({ 4, 3 }, r:shape())
      assert.are.same(ref({ 2, 1, 3, 3 }, 3), r:totable())
    end)

    for _, dt in ipairs(DTYPES) do
      it("encodes label tensors of any layout as " .. dt, function()
        local labels = { 4, 1, 2, 4, 3 }
        local expect = ref(labels, 5)
        for _, f in ipairs(index_forms(labels, true)) do
          local r = T.one_hot(f[2], 5, { dtype = dt })
          assert.are.equal(dt, r:dtype())
          assert.are.same(expect, r:totable(), f[1])
        end
        -- a 2-d label tensor, transposed
        local r = T.one_hot(T({ { 1, 3 }, { 2, 1 } }).T, 3, { dtype = dt })
        assert.are.same({ 2, 2, 3 }, r:shape())
        assert.are.same({ { { 1, 0, 0 }, { 0, 1, 0 } }, { { 0, 0, 1 }, { 1, 0, 0 } } }, r:totable())
        -- a 0-d label
        assert.are.same({ 0, 1 }, T.one_hot(T(2), 2, { dtype = dt }):totable())
      end)
    end

    it("handles empty labels and no classes", function()
      assert.are.same({ 0, 3 }, T.one_hot({}, 3):shape())
      assert.are.same({ 0, 0 }, T.one_hot(T.zeros(0), 0):shape())
    end)

    it("reports misuse", function()
      assert.has_error(function() T.one_hot({ 1, 4 }, 3) end, "one_hot: index 4 out of range for size 3")
      assert.has_error(function() T.one_hot({ 0 }, 3) end, "one_hot: index 0 out of range for size 3")
      assert.has_error(function() T.one_hot({ 1 }, 0) end, "one_hot: index 1 out of range for size 0")
      assert.has_error(function() T.one_hot({ 1.25 }, 3) end, "one_hot: index 1.25 is not an integer")
      assert.has_error(function() T.one_hot({ 1 }, -1) end,
        "bad argument #2 to 'one_hot' (negative size -1)")
      assert.has_error(function() T.one_hot({ 1 }, 2, { dtype = "int8" }) end,
        "bad argument #3 to 'one_hot' (unknown dtype 'int8' (float32 or float64))")
      assert.has_error(function() T.one_hot(3, 2) end,
        "bad argument #1 to 'one_hot' (pbt.Tensor or table expected, got number)")
      assert.has_error(function() T.one_hot(T.zeros(1, 1, 1, 1, 1, 1, 1, 1), 2) end,
        "one_hot: 9 dimensions (at most 8 allowed)")
    end)
  end)
end)
