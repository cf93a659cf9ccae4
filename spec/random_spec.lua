-- Generators and random tensors, checked bit for bit against a reference
-- xoshiro256** (seeded through splitmix64) written below in plain Lua 5.4
-- integer arithmetic: integers wrap on overflow, >> is a logical shift.
local pbt = require("pbt")
local T = pbt.tensor

-- ---- the reference ----------------------------------------------------------

local function splitmix64(x)
  x = x + 0x9e3779b97f4a7c15
  local z = x
  z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
  z = (z ~ (z >> 27)) * 0x94d049bb133111eb
  return x, z ~ (z >> 31)
end

local function rotl(x, k) return (x << k) | (x >> (64 - k)) end

local Ref = {}
Ref.__index = Ref

local function ref(seed)
  local r = setmetatable({ s = {}, has_spare = false, spare = 0.0 }, Ref)
  local x = seed
  for i = 1, 4 do x, r.s[i] = splitmix64(x) end
  return r
end

function Ref:next()
  local s = self.s
  local result = rotl(s[2] * 5, 7) * 9
  local t = s[2] << 17
  s[3] = s[3] ~ s[1]
  s[4] = s[4] ~ s[2]
  s[2] = s[2] ~ s[3]
  s[1] = s[1] ~ s[4]
  s[3] = s[3] ~ t
  s[4] = rotl(s[4], 45)
  return result
end

function Ref:uniform() return (self:next() >> 11) * 0x1.0p-53 end

-- x mod r with x read as an unsigned 64-bit integer (r > 0)
local function umod(x, r)
  if x >= 0 then return x % r end
  local q = ((x >> 1) // r) << 1
  local rem = x - q * r
  while not math.ult(rem, r) do rem = rem - r end
  return rem
end

-- uniform in [lo, hi] by rejection of the top partial block
function Ref:integer(lo, hi)
  local range = hi - lo -- as unsigned
  if range == -1 then return self:next() end
  range = range + 1
  if range == math.mininteger then -- 2^63 values: two whole blocks, no rejection
    return lo + (self:next() & math.maxinteger)
  end
  if range < 0 then
    -- more than 2^63 values: one block fits below 2^64 (2^64 mod range is
    -- 2^64 - range), so x is kept when x < range and x mod range is x
    local x = self:next()
    while not math.ult(x, range) do x = self:next() end
    return lo + x
  end
  local limit = -1 - umod(-range, range)
  local x = self:next()
  while math.ult(limit, x) do x = self:next() end
  return lo + umod(x, range)
end

-- Marsaglia's polar method with a spare
function Ref:normal()
  if self.has_spare then
    self.has_spare = false
    return self.spare
  end
  local u, v, s
  repeat
    u = 2.0 * self:uniform() - 1.0
    v = 2.0 * self:uniform() - 1.0
    s = u * u + v * v
  until not (s >= 1.0 or s == 0.0)
  s = math.sqrt(-2.0 * math.log(s) / s)
  self.spare = v * s
  self.has_spare = true
  return u * s
end

local function f32(x) return (string.unpack("f", string.pack("f", x))) end
local function bits(d) return (string.unpack("<i8", string.pack("<d", d))) end

-- ---- specs ---------------------------------------------------------------------

describe("the reference generator", function()
  it("gives splitmix64's published outputs for seed 0", function()
    local x, out = 0, {}
    for i = 1, 4 do x, out[i] = splitmix64(x) end
    assert.are.same({ math.tointeger(0xe220a8397b1dcdaf), 0x6e789e6aa1b965f4,
                      0x06c45d188009454f, math.tointeger(0xf88bb8a8724c81ec) }, out)
  end)
end)

describe("pbt.Generator", function()
  describe("seeding", function()
    it("fills the xoshiro state with four splitmix64 steps of the seed", function()
      for _, seed in ipairs({ 0, 1, 42, 0x5eed, -1, math.maxinteger, math.mininteger }) do
        local st = pbt.Generator(seed):state()
        local r = ref(seed)
        assert.are.same({ r.s[1], r.s[2], r.s[3], r.s[4], 0, 0 }, st)
      end
    end)

    it("without a seed is seeded with 0", function()
      assert.are.same(pbt.Generator(0):state(), pbt.Generator():state())
    end)

    it("gives the same sequence for the same seed", function()
      local a, b = pbt.Generator(7), pbt.Generator(7)
      for _ = 1, 100 do assert.are.equal(a:uniform(), b:uniform()) end
      for _ = 1, 100 do assert.are.equal(a:normal(), b:normal()) end
      for _ = 1, 100 do assert.are.equal(a:integer(-5, 5), b:integer(-5, 5)) end
    end)

    it("gives different sequences for different seeds", function()
      assert.are_not.equal(pbt.Generator(1):uniform(), pbt.Generator(2):uniform())
    end)
  end)

  describe(":uniform()", function()
    it("matches the reference bit for bit", function()
      for _, seed in ipairs({ 0, 12345, -7 }) do
        local g, r = pbt.Generator(seed), ref(seed)
        for _ = 1, 1000 do assert.are.equal(r:uniform(), g:uniform()) end
      end
    end)

    it("scales to [0, hi) and [lo, hi)", function()
      local g, r = pbt.Generator(3), ref(3)
      assert.are.equal(0 + (10 - 0) * r:uniform(), g:uniform(10))
      assert.are.equal(-2 + (5 - -2) * r:uniform(), g:uniform(-2, 5))
      assert.are.equal(r:uniform(), g:uniform(nil, nil))
    end)

    it("stays in [0, 1) and has mean 1/2 and variance 1/12", function()
      local g, n, sum, sq = pbt.Generator(2024), 100000, 0, 0
      for _ = 1, n do
        local u = g:uniform()
        assert(u >= 0 and u < 1, u)
        sum = sum + u
        sq = sq + u * u
      end
      local mean = sum / n
      local var = sq / n - mean * mean
      assert.is_true(math.abs(mean - 0.5) < 0.005, "mean " .. mean)
      assert.is_true(math.abs(var - 1 / 12) < 0.003, "variance " .. var)
    end)
  end)

  describe(":integer()", function()
    it("matches the reference bit for bit", function()
      local cases = {
        { 1, 6 }, { 0, 0 }, { -3, 3 }, { 0, 1 }, { 10, 1000000000 },
        { 0, math.maxinteger }, { math.mininteger, 0 }, -- 2^63 + 1 values: many rejections
        { math.mininteger, math.maxinteger },             -- the whole range
        { math.mininteger, math.mininteger + 2 },
      }
      for _, c in ipairs(cases) do
        local g, r = pbt.Generator(99), ref(99)
        for _ = 1, 200 do
          local want = r:integer(c[1], c[2])
          local got = g:integer(c[1], c[2])
          assert.are.equal(want, got)
          assert.are.equal("integer", math.type(got))
        end
      end
    end)

    it("includes both ends, as math.random does", function()
      local g, seen = pbt.Generator(5), {}
      for _ = 1, 1000 do
        local v = g:integer(1, 6)
        assert(v >= 1 and v <= 6, v)
        seen[v] = true
      end
      for v = 1, 6 do assert.is_true(seen[v], "never drew " .. v) end
    end)

    it("is unbiased enough: each of 5 values near 1/5", function()
      local g, n, count = pbt.Generator(17), 100000, { 0, 0, 0, 0, 0 }
      for _ = 1, n do
        local v = g:integer(-2, 2)
        count[v + 3] = count[v + 3] + 1
      end
      for k = 1, 5 do
        assert.is_true(math.abs(count[k] / n - 0.2) < 0.01, "value " .. (k - 3))
      end
    end)
  end)

  describe(":normal()", function()
    it("matches the reference (polar method with a spare) bit for bit", function()
      local g, r = pbt.Generator(11), ref(11)
      for _ = 1, 1001 do assert.are.equal(r:normal(), g:normal()) end
      -- uniforms after an odd number of normals continue the same stream
      assert.are.equal(r:uniform(), g:uniform())
    end)

    it("scales by mean and std", function()
      local g, r = pbt.Generator(11), ref(11)
      assert.are.equal(3 + 2 * r:normal(), g:normal(3, 2))
      assert.are.equal(-1 + 1 * r:normal(), g:normal(-1))
    end)

    it("has mean 0 and variance 1", function()
      local g, n, sum, sq = pbt.Generator(31337), 100000, 0, 0
      for _ = 1, n do
        local x = g:normal()
        sum = sum + x
        sq = sq + x * x
      end
      local mean = sum / n
      local var = sq / n - mean * mean
      assert.is_true(math.abs(mean) < 0.02, "mean " .. mean)
      assert.is_true(math.abs(var - 1) < 0.03, "variance " .. var)
    end)
  end)

  describe(":clone()", function()
    it("continues identically and independently", function()
      local g = pbt.Generator(8)
      g:uniform()
      g:normal() -- leaves a spare
      local c = g:clone()
      assert.are.same(g:state(), c:state())
      local a = {}
      for i = 1, 50 do a[i] = g:normal() end
      for i = 1, 50 do assert.are.equal(a[i], c:normal()) end
      c:uniform()
      assert.are_not.same(g:state(), c:state())
    end)
  end)

  describe(":state() and :set_state()", function()
    it("give 6 integers: the 4 state words, the spare's bits and its flag", function()
      local g, r = pbt.Generator(21), ref(21)
      r:normal()
      g:normal()
      local st = g:state()
      assert.are.same({ r.s[1], r.s[2], r.s[3], r.s[4], bits(r.spare), 1 }, st)
      for i = 1, 6 do assert.are.equal("integer", math.type(st[i])) end
    end)

    it("restore a generator to continue identically, spare included", function()
      local g = pbt.Generator(4)
      g:normal()
      local st = g:state()
      local a = {}
      for i = 1, 20 do a[i] = g:normal() end
      local h = pbt.Generator(999)
      assert.are.equal(h, h:set_state(st))
      for i = 1, 20 do assert.are.equal(a[i], h:normal()) end
      g:set_state(st)
      for i = 1, 20 do assert.are.equal(a[i], g:normal()) end
    end)

    it("rejects invalid states", function()
      local g = pbt.Generator(1)
      assert.has_error(function() g:set_state({ 0, 0, 0, 0, 0, 0 }) end,
        "bad argument #1 to 'set_state' (an all-zero state is not valid)")
      assert.has_error(function() g:set_state({ 1, 2, 3 }) end,
        "bad argument #1 to 'set_state' (state must be a table of 6 integers (from state()))")
      assert.has_error(function() g:set_state({ 1, 2, 3, 4, 0, 2 }) end,
        "bad argument #1 to 'set_state' (invalid spare flag)")
      assert.has_error(function() g:set_state({ 1, 2, 3, 4, 0, 0.5 }) end,
        "bad argument #1 to 'set_state' (state must be a table of 6 integers (from state()))")
      assert.has_error(function() g:set_state(5) end,
        "bad argument #1 to 'set_state' (table expected, got number)")
    end)
  end)

  it("prints its type", function()
    assert.matches("^pbt%.Generator %(", tostring(pbt.Generator(1)))
  end)
end)

describe("the default generator", function()
  it("is seeded by manual_seed and used when no generator is given", function()
    pbt.manual_seed(123)
    local r = ref(123)
    local st = pbt.default_generator():state()
    assert.are.same({ r.s[1], r.s[2], r.s[3], r.s[4], 0, 0 }, st)
    local t = T.rand(5, { dtype = "float64" })
    for i = 1, 5 do assert.are.equal(r:uniform(), t:get(i)) end
  end)

  it("is one object, reseeded in place", function()
    local g = pbt.default_generator()
    pbt.manual_seed(5)
    assert.are.equal(g, pbt.default_generator())
    assert.are.same(pbt.Generator(5):state(), g:state())
  end)

  it("manual_seed resets the spare", function()
    pbt.manual_seed(6)
    pbt.default_generator():normal()
    pbt.manual_seed(6)
    assert.are.same(pbt.Generator(6):state(), pbt.default_generator():state())
  end)
end)

describe("pbt.Tensor", function()
  local dtypes = { "float32", "float64" }
  local round = { float32 = f32, float64 = function(x) return x end }

  describe("rand()", function()
    it("draws uniforms in row-major order from the given generator", function()
      for _, dt in ipairs(dtypes) do
        local g, r = pbt.Generator(77), ref(77)
        local t = T.rand(2, 3, { dtype = dt, generator = g })
        assert.are.equal(dt, t:dtype())
        assert.are.same({ 2, 3 }, t:shape())
        for i = 1, 2 do
          for j = 1, 3 do assert.are.equal(round[dt](r:uniform()), t:get(i, j)) end
        end
        assert.are.equal(r:uniform(), g:uniform()) -- the generator advanced
      end
    end)

    it("takes the shape as a table", function()
      local g, r = pbt.Generator(1), ref(1)
      local t = T.rand({ 4 }, { generator = g, dtype = "float64" })
      for i = 1, 4 do assert.are.equal(r:uniform(), t:get(i)) end
    end)

    it("stays in [0, 1)", function()
      local t = T.rand(10000, { generator = pbt.Generator(2) })
      for _, v in ipairs(t:totable()) do assert(v >= 0 and v < 1, v) end
    end)
  end)

  describe("randn()", function()
    it("draws normals in row-major order from the given generator", function()
      for _, dt in ipairs(dtypes) do
        local g, r = pbt.Generator(78), ref(78)
        local t = T.randn(3, 3, { dtype = dt, generator = g })
        for i = 1, 3 do
          for j = 1, 3 do assert.are.equal(round[dt](r:normal()), t:get(i, j)) end
        end
      end
    end)

    it("has mean 0 and variance 1 (float64, 1e5 draws)", function()
      local t = T.randn(100000, { dtype = "float64", generator = pbt.Generator(9) })
      local sum, sq = 0, 0
      for _, v in ipairs(t:totable()) do
        sum = sum + v
        sq = sq + v * v
      end
      local mean = sum / 1e5
      assert.is_true(math.abs(mean) < 0.02, "mean " .. mean)
      assert.is_true(math.abs(sq / 1e5 - mean * mean - 1) < 0.03)
    end)
  end)

  describe("randint()", function()
    it("draws integers in [lo, hi], both included, as the reference", function()
      for _, dt in ipairs(dtypes) do
        local g, r = pbt.Generator(80), ref(80)
        local t = T.randint(-3, 4, 5, 4, { dtype = dt, generator = g })
        assert.are.same({ 5, 4 }, t:shape())
        for i = 1, 5 do
          for j = 1, 4 do assert.are.equal(r:integer(-3, 4), t:get(i, j)) end
        end
      end
    end)

    it("hits both ends and nothing outside", function()
      local t = T.randint(0, 1, 1000, { generator = pbt.Generator(3) })
      local seen = {}
      for _, v in ipairs(t:totable()) do
        assert(v == 0 or v == 1, v)
        seen[v] = true
      end
      assert.is_true(seen[0] and seen[1])
    end)

    it("keeps 64-bit bounds exact", function()
      local lo = 1 << 60
      local g, r = pbt.Generator(4), ref(4)
      local t = T.randint(lo, lo + 1000, 20, { dtype = "float64", generator = g })
      for i = 1, 20 do
        local want = r:integer(lo, lo + 1000)
        assert.are.equal(want + 0.0, t:get(i))
        assert(t:get(i) >= lo + 0.0 and t:get(i) <= lo + 1000.0)
      end
      -- the whole 64-bit range, through doubles
      g, r = pbt.Generator(5), ref(5)
      t = T.randint(math.mininteger, math.maxinteger, 10, { dtype = "float64", generator = g })
      for i = 1, 10 do assert.are.equal(r:next() + 0.0, t:get(i)) end
    end)
  end)

  describe(":uniform_()", function()
    it("fills any layout in row-major order of the logical shape", function()
      for _, dt in ipairs(dtypes) do
        local g, r = pbt.Generator(90), ref(90)
        local base = T.zeros(3, 4, { dtype = dt })
        local v = base.T -- 4 x 3, not contiguous
        assert.are.equal(v, v:uniform_(-1, 3, g))
        for i = 1, 4 do
          for j = 1, 3 do
            local want = round[dt](-1 + (3 - -1) * r:uniform())
            assert.are.equal(want, v:get(i, j))
            assert.are.equal(want, base:get(j, i))
          end
        end
      end
    end)

    it("touches only the elements of a view", function()
      local base = T.zeros(4, 4)
      base:narrow(2, 2, 2):uniform_(1, 2, pbt.Generator(1))
      for i = 1, 4 do
        for j = 1, 4 do
          local v = base:get(i, j)
          if j == 2 or j == 3 then assert(v >= 1 and v < 2) else assert.are.equal(0, v) end
        end
      end
    end)

    it("uses the default generator when none is given", function()
      pbt.manual_seed(55)
      local r = ref(55)
      local t = T.empty(3, { dtype = "float64" }):uniform_(0, 1)
      for i = 1, 3 do assert.are.equal(r:uniform(), t:get(i)) end
    end)
  end)

  describe(":normal_()", function()
    it("fills with mean + std * normal in row-major order", function()
      for _, dt in ipairs(dtypes) do
        local g, r = pbt.Generator(91), ref(91)
        local t = T.empty(5, { dtype = dt }):normal_(2, 0.5, g)
        for i = 1, 5 do assert.are.equal(round[dt](2 + 0.5 * r:normal()), t:get(i)) end
      end
    end)

    it("refuses an expanded tensor, whose elements share memory", function()
      local base = T.zeros(2, 1, { dtype = "float64" })
      assert.has_error(function() base:expand(2, 3):normal_(0, 1, pbt.Generator(92)) end,
        "normal_: cannot write into an expanded tensor (clone it first)")
      assert.are.same({ { 0 }, { 0 } }, base:totable())
    end)
  end)
end)
