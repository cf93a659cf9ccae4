-- pbt.select: truncation, t-test and tournament selection on crafted
-- populations.
local pbt = require("pbt")
local select_ = require("pbt.select")
local stats = require("pbt.stats")

local nan, inf = 0 / 0, math.huge

local function G(seed) return pbt.Generator(seed) end

-- sorted keys and values of a recipient -> donor table
local function keys(t)
  local r = {}
  for k in pairs(t) do r[#r + 1] = k end
  table.sort(r)
  return r
end

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- The member tournament and ttest draw: one g:integer over the n - 1 others
-- (pbt_select_other), replayed on a clone of the generator.
local function drawn(g, n, i)
  local r = g:clone():integer(1, n - 1)
  return r >= i and r + 1 or r
end

-- Pearson's statistic of observed counts against equal expected counts.
local function chi2(counts, total)
  local k, s = #counts, 0
  local e = total / k
  for _, c in ipairs(counts) do s = s + (c - e) ^ 2 / e end
  return s
end

describe("pbt.select", function()
  it("is pbt.select", function()
    assert.are.equal(select_, pbt.select)
    for _, name in ipairs({ "truncation", "ttest", "tournament", "rank" }) do
      assert.are.equal("function", type(select_[name]))
    end
  end)

  describe(".rank()", function()
    it("orders best first in max mode and in min mode", function()
      local scores = { 0.5, 3, -2, 7, 1 }
      assert.are.same({ 4, 2, 5, 1, 3 }, select_.rank(scores, { generator = G(1) }))
      assert.are.same({ 3, 1, 5, 2, 4 }, select_.rank(scores, { generator = G(1), mode = "min" }))
    end)

    it("ranks NaN, +inf, -inf and missing scores last in both modes", function()
      local scores = { 3, nil, 1, nan, 5, -inf, 2, inf }
      for _, mode in ipairs({ "max", "min" }) do
        for seed = 1, 20 do
          local r = select_.rank(scores, { generator = G(seed), mode = mode })
          assert.are.equal(8, #r)
          local head = { r[1], r[2], r[3], r[4] }
          assert.are.same(mode == "max" and { 5, 1, 7, 3 } or { 3, 7, 1, 5 }, head)
          local tail = { r[5], r[6], r[7], r[8] }
          table.sort(tail)
          assert.are.same({ 2, 4, 6, 8 }, tail)
        end
      end
    end)

    it("breaks ties at random, not by position", function()
      local firsts = {}
      for seed = 1, 200 do
        local r = select_.rank({ 1, 2, 2, 2, 0 }, { generator = G(seed) })
        firsts[r[1]] = (firsts[r[1]] or 0) + 1
        assert.are.equal(1, r[4])
        assert.are.equal(5, r[5])
      end
      assert.are.same({ 2, 3, 4 }, keys(firsts))
      for _, m in ipairs({ 2, 3, 4 }) do assert.is_true(firsts[m] > 30) end
    end)
  end)

  describe(".truncation()", function()
    -- ten members with distinct scores; sorted best first:
    -- 9.5 (7), 8 (9), 5 (2), 4 (10), 3 (5), 2 (1), 1 (8), 0.5 (4), -1 (6), -4 (3)
    local scores = { 2, 5, -4, 0.5, 3, -1, 9.5, 1, 8, 4 }

    it("gives each of the bottom fraction a donor from the top fraction", function()
      for seed = 1, 50 do
        local r = select_.truncation(scores, { fraction = 0.3, generator = G(seed) })
        assert.are.same({ 3, 4, 6 }, keys(r))
        for _, d in pairs(r) do assert.is_true(set({ 7, 9, 2 })[d]) end
        r = select_.truncation(scores, { fraction = 0.3, generator = G(seed), mode = "min" })
        assert.are.same({ 2, 7, 9 }, keys(r))
        for _, d in pairs(r) do assert.is_true(set({ 3, 6, 4 })[d]) end
      end
    end)

    it("uses fraction 0.2 by default", function()
      local r = select_.truncation(scores, { generator = G(3) })
      assert.are.same({ 3, 6 }, keys(r))
      for _, d in pairs(r) do assert.is_true(d == 7 or d == 9) end
    end)

    it("rounds max(1, floor(fraction * n)), none below 2 members", function()
      local rows = { -- n, fraction, members in each set
        { 0, 0.2, 0 }, { 1, 0.5, 0 }, { 2, 0.2, 1 }, { 2, 0.5, 1 }, { 3, 0.5, 1 },
        { 4, 0.5, 2 }, { 7, 0.2, 1 }, { 9, 0.5, 4 }, { 10, 0.25, 2 }, { 20, 0.2, 4 },
        { 100, 0.29, 29 }, { 1000, 0.1, 100 }, { 16, 0.0625, 1 }, { 5, 0.01, 1 },
      }
      for _, row in ipairs(rows) do
        local n, f, k = row[1], row[2], row[3]
        local sc = {}
        for m = 1, n do sc[m] = m end -- member m has score m
        local r = select_.truncation(sc, { fraction = f, generator = G(n) })
        local ks = keys(r)
        assert.are.equal(k, #ks, ("n = %d, fraction = %g"):format(n, f))
        for idx, m in ipairs(ks) do
          assert.are.equal(idx, m) -- the k lowest
          assert.is_true(r[m] > n - k and r[m] <= n) -- a donor among the k highest
        end
      end
    end)

    it("draws donors uniformly from the top set", function()
      -- 20 members, fraction 0.25: top set {16..20}, 5 recipients per draw
      local sc = {}
      for m = 1, 20 do sc[m] = m * m end
      local counts, total = { 0, 0, 0, 0, 0 }, 0
      for seed = 1, 1000 do
        for _, d in pairs(select_.truncation(sc, { fraction = 0.25, generator = G(seed) })) do
          counts[d - 15] = counts[d - 15] + 1
          total = total + 1
        end
      end
      assert.are.equal(5000, total)
      -- 4 degrees of freedom: P(chi2 > 25) < 1e-4
      assert.is_true(chi2(counts, total) < 25, table.concat(counts, " "))
    end)

    it("ranks NaN, inf, -inf and missing scores last in both modes", function()
      -- member 2 missing; 4 finite members 1 (5), 3 (3), 5 (9), 7 (7)
      local sc = { 5, nil, 3, -inf, 9, nan, 7, inf, 1, 2 }
      for seed = 1, 30 do
        for _, mode in ipairs({ "max", "min" }) do
          local r = select_.truncation(sc, { fraction = 0.4, mode = mode, generator = G(seed) })
          assert.are.same({ 2, 4, 6, 8 }, keys(r))
          local top = mode == "max" and set({ 5, 7, 1, 3 }) or set({ 9, 10, 3, 1 })
          for _, d in pairs(r) do assert.is_true(top[d]) end
        end
      end
    end)

    it("never copies a non-finite member", function()
      -- k = 2: the top set is {3, one of the NaNs}; only 3 may be a donor
      for seed = 1, 20 do
        local r = select_.truncation({ nan, nan, 1, nan }, { fraction = 0.5, generator = G(seed) })
        for _, d in pairs(r) do assert.are.equal(3, d) end
        assert.are.equal(2, #keys(r))
      end
      -- no finite member in the top set: nothing to copy
      assert.are.same({}, select_.truncation({ nan, nil, inf }, { fraction = 0.3, generator = G(1) }))
      assert.are.same({}, select_.truncation({}, { generator = G(1) }))
    end)

    it("breaks ties with the generator", function()
      -- all equal: every member is sometimes a recipient, sometimes a donor
      local rec, don = {}, {}
      for seed = 1, 200 do
        local r = select_.truncation({ 1, 1, 1, 1, 1, 1 }, { fraction = 0.5, generator = G(seed) })
        assert.are.equal(3, #keys(r))
        for m, d in pairs(r) do
          assert.is_nil(r[d]) -- a donor is not also a recipient
          rec[m], don[d] = true, true
        end
      end
      assert.are.same({ 1, 2, 3, 4, 5, 6 }, keys(rec))
      assert.are.same({ 1, 2, 3, 4, 5, 6 }, keys(don))
    end)

    it("gives the same answer for the same seed", function()
      local sc = { 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6 }
      for seed = 1, 10 do
        local a = select_.truncation(sc, { fraction = 0.5, generator = G(seed) })
        local b = select_.truncation(sc, { fraction = 0.5, generator = G(seed) })
        assert.are.same(a, b)
      end
      pbt.manual_seed(42)
      local a = select_.truncation(sc, { fraction = 0.5 })
      pbt.manual_seed(42)
      assert.are.same(a, select_.truncation(sc, { fraction = 0.5 }))
      assert.are.same(a, select_.truncation(sc, { fraction = 0.5, generator = G(42) }))
    end)

    it("takes scores from a 1-d tensor", function()
      for _, dtype in ipairs({ "float32", "float64" }) do
        local t = pbt.tensor(scores, { dtype = dtype })
        assert.are.same(select_.truncation(scores, { fraction = 0.3, generator = G(7) }),
          select_.truncation(t, { fraction = 0.3, generator = G(7) }))
      end
    end)

    it("raises for misuse", function()
      local cases = {
        { { 1, "x", 3 }, {}, "bad argument #1 to 'truncation' (number expected at index 2, got string)" },
        { { 1, 2, x = 3 }, {}, "bad argument #1 to 'truncation' (scores must be an array, found key x)" },
        { { [0] = 1, 2 }, {}, "bad argument #1 to 'truncation' (scores must be an array, found key 0)" },
        { "1, 2", {}, "bad argument #1 to 'truncation' (table or pbt.Tensor expected, got string)" },
        { { 1, 2 }, { fraction = 0.7 }, "bad argument #2 to 'truncation' (fraction must be in (0, 0.5], got 0.7)" },
        { { 1, 2 }, { fraction = 0 }, "bad argument #2 to 'truncation' (fraction must be in (0, 0.5], got 0)" },
        { { 1, 2 }, { fraction = nan }, "bad argument #2 to 'truncation' (fraction must be in (0, 0.5], got nan)" },
        { { 1, 2 }, { fraction = "0.2" }, "bad argument #2 to 'truncation' (field 'fraction' must be a number, got string)" },
        { { 1, 2 }, { mode = "maximum" }, "bad argument #2 to 'truncation' (mode must be 'max' or 'min', got maximum)" },
        { { 1, 2 }, { generator = 1 }, "bad argument #2 to 'truncation' (field 'generator' is not a pbt.Generator)" },
        { { 1, 2 }, { fractoin = 0.2 }, "bad argument #2 to 'truncation' (unknown option 'fractoin' (did you mean 'fraction'?))" },
        { { 1, 2 }, 0.2, "bad argument #2 to 'truncation' (table expected, got number)" },
      }
      for _, c in ipairs(cases) do
        assert.has_error(function() select_.truncation(c[1], c[2]) end, c[3])
      end
    end)
  end)

  describe(".tournament()", function()
    it("draws another member uniformly", function()
      local counts = { 0, 0, 0, 0, 0 }
      for seed = 1, 1000 do
        -- member 3 is the worst: whoever is drawn wins
        local j = select_.tournament({ 5, 4, 1, 3, 2 }, 3, { generator = G(seed) })
        assert.is_true(j ~= 3)
        counts[j] = counts[j] + 1
      end
      assert.are.equal(0, counts[3])
      table.remove(counts, 3)
      -- 3 degrees of freedom: P(chi2 > 22) < 1e-4
      assert.is_true(chi2(counts, 1000) < 22, table.concat(counts, " "))
    end)

    it("returns the drawn member only when strictly better", function()
      local sc = { 1, 4, 4, 2, 7, nan, -inf, nil, 3 }
      local n = 9
      for _, mode in ipairs({ "max", "min" }) do
        for i = 1, n do
          for seed = 1, 20 do
            local g = G(seed)
            local j = drawn(g, n, i)
            local si, sj = sc[i] or nan, sc[j] or nan
            local fi, fj = si == si and math.abs(si) < inf, sj == sj and math.abs(sj) < inf
            local better = fj and (not fi or (mode == "max" and sj > si) or (mode == "min" and sj < si))
            local got = select_.tournament(sc, i, { generator = g, mode = mode })
            assert.are.equal(better and j or nil, got)
          end
        end
      end
    end)

    it("lets a NaN or missing member lose to any finite one, and a tie keep i", function()
      for seed = 1, 20 do
        assert.are.equal(2, select_.tournament({ nan, -1e300 }, 1, { generator = G(seed) }))
        assert.are.equal(2, select_.tournament({ nil, 0 }, 1, { generator = G(seed), mode = "min" }))
        assert.is_nil(select_.tournament({ 0, nan }, 1, { generator = G(seed) }))
        assert.is_nil(select_.tournament({ 0, -inf }, 1, { generator = G(seed), mode = "min" }))
        assert.is_nil(select_.tournament({ 2, 2 }, 2, { generator = G(seed) }))
      end
    end)

    it("returns nil for a population of one", function()
      assert.is_nil(select_.tournament({ 3 }, 1, { generator = G(1) }))
    end)

    it("raises for misuse", function()
      assert.has_error(function() select_.tournament({ 1, 2, 3, 4 }, 5) end,
        "bad argument #2 to 'tournament' (member 5 out of range for a population of 4)")
      assert.has_error(function() select_.tournament({ 1, 2, 3, 4 }, 0) end,
        "bad argument #2 to 'tournament' (member 0 out of range for a population of 4)")
      assert.has_error(function() select_.tournament({ 1, 2 }, 1.5) end,
        "bad argument #2 to 'tournament' (number has no integer representation)")
      assert.has_error(function() select_.tournament({ 1, true }, 1) end,
        "bad argument #1 to 'tournament' (number expected at index 2, got boolean)")
      assert.has_error(function() select_.tournament({ 1, 2 }, 1, { mode = 1 }) end,
        "bad argument #3 to 'tournament' (mode must be 'max' or 'min', got 1)")
      assert.has_error(function() select_.tournament({ 1, 2 }, 1, { window = 3 }) end,
        "bad argument #3 to 'tournament' (unknown option 'window')")
    end)
  end)

  describe(".ttest()", function()
    -- noisy histories around a level
    local function around(level, n, spread, phase)
      local h = {}
      for k = 1, n do h[k] = level + spread * math.sin(1.7 * k + (phase or 0)) end
      return h
    end

    it("returns the other member when clearly better, else nil", function()
      local low, high = around(0, 10, 0.1), around(5, 10, 0.1, 1)
      for seed = 1, 10 do
        assert.are.equal(2, select_.ttest({ low, high }, 1, { generator = G(seed) }))
        assert.is_nil(select_.ttest({ low, high }, 2, { generator = G(seed) }))
        assert.are.equal(1, select_.ttest({ low, high }, 2, { generator = G(seed), mode = "min" }))
        assert.is_nil(select_.ttest({ low, high }, 1, { generator = G(seed), mode = "min" }))
      end
    end)

    it("returns nil when the histories overlap", function()
      -- a slightly higher mean, far from significant
      local a, b = around(0, 10, 1), around(0.05, 10, 1, 2)
      local _, _, p = stats.welch(b, a)
      assert.is_true(p > 0.5)
      for seed = 1, 10 do
        assert.is_nil(select_.ttest({ a, b }, 1, { generator = G(seed) }))
      end
    end)

    it("rejects at alpha with the two-sided p-value", function()
      -- find a shift whose two-sided p lies in (0.01, 0.05)
      local a = around(0, 10, 1)
      local b, p
      for shift = 0.5, 2, 0.01 do
        b = around(shift, 10, 1, 2)
        p = select(3, stats.welch(b, a))
        if p > 0.02 and p < 0.04 then break end
      end
      assert.is_true(p > 0.02 and p < 0.04)
      -- just below p the two-sided test keeps i (a one-sided one, p / 2, would not)
      assert.are.equal(2, select_.ttest({ a, b }, 1, { alpha = 0.05, generator = G(1) }))
      assert.is_nil(select_.ttest({ a, b }, 1, { alpha = 0.01, generator = G(1) }))
      assert.are.equal(2, select_.ttest({ a, b }, 1, { alpha = p * 1.001, generator = G(1) }))
      assert.is_nil(select_.ttest({ a, b }, 1, { alpha = p * 0.999, generator = G(1) }))
    end)

    it("uses only the last `window` scores", function()
      -- i was excellent long ago and is poor now; j is steady in between
      local i = around(100, 5, 0.1)
      for k, v in ipairs(around(0, 10, 0.1, 3)) do i[5 + k] = v end
      local j = around(1, 15, 0.1, 4)
      assert.are.equal(2, select_.ttest({ i, j }, 1, { generator = G(1) })) -- window 10
      assert.is_nil(select_.ttest({ i, j }, 1, { window = 15, generator = G(1) }))
      assert.are.equal(2, select_.ttest({ i, j }, 1, { window = 3, generator = G(1) }))
    end)

    it("cannot test a member with fewer than 2 scores", function()
      local good = around(5, 10, 0.1)
      for _, h in ipairs({ {}, { -100 } }) do
        assert.is_nil(select_.ttest({ h, good }, 1, { generator = G(1) }))
        assert.is_nil(select_.ttest({ good, h }, 1, { generator = G(1), mode = "min" }))
      end
      assert.is_nil(select_.ttest({ good }, 1, { generator = G(1) }))
    end)

    it("handles constant and non-finite histories", function()
      -- both constant: different means are significant, equal ones are not
      assert.are.equal(2, select_.ttest({ { 1, 1, 1 }, { 2, 2, 2 } }, 1, { generator = G(1) }))
      assert.is_nil(select_.ttest({ { 2, 2, 2 }, { 2, 2 } }, 1, { generator = G(1) }))
      -- a non-finite score in j's window: never copied; in i's: i ranks last
      assert.is_nil(select_.ttest({ { 1, 1.1 }, { 5, nan, 5.1 } }, 1, { generator = G(1) }))
      assert.is_nil(select_.ttest({ { 1, 1.1 }, { 5, inf, 5.1 } }, 1, { generator = G(1) }))
      assert.are.equal(2, select_.ttest({ { 9, -inf }, { 1, 1.1 } }, 1, { generator = G(1) }))
      assert.are.equal(2, select_.ttest({ { 9, nan }, { 1, 1.1 } }, 1, { generator = G(1), mode = "min" }))
      -- outside the window, a NaN no longer counts
      assert.are.equal(2, select_.ttest({ { 1, 1.1 }, { nan, 5, 5.1 } }, 1, { window = 2, generator = G(1) }))
    end)

    it("draws the other member uniformly", function()
      local h = { around(0, 10, 0.1), around(5, 10, 0.1), around(6, 10, 0.1), around(7, 10, 0.1) }
      local counts = { 0, 0, 0 }
      for seed = 1, 900 do
        local g = G(seed)
        local want = drawn(g, 4, 1)
        local j = select_.ttest(h, 1, { generator = g })
        assert.are.equal(want, j)
        counts[j - 1] = counts[j - 1] + 1
      end
      -- 2 degrees of freedom: P(chi2 > 18) < 1e-4
      assert.is_true(chi2(counts, 900) < 18, table.concat(counts, " "))
    end)

    it("raises for misuse", function()
      local h = { { 1, 2 }, { 3, 4 } }
      local cases = {
        { h, 3, {}, "bad argument #2 to 'ttest' (member 3 out of range for a population of 2)" },
        { h, 1, { window = 1 }, "bad argument #3 to 'ttest' (window must be at least 2, got 1)" },
        { h, 1, { window = -5 }, "bad argument #3 to 'ttest' (window must be at least 2, got -5)" },
        { h, 1, { window = 2.5 }, "bad argument #3 to 'ttest' (field 'window' must be an integer, got 2.5)" },
        { h, 1, { alpha = 1.5 }, "bad argument #3 to 'ttest' (alpha must be in (0, 1), got 1.5)" },
        { h, 1, { alpha = 0 }, "bad argument #3 to 'ttest' (alpha must be in (0, 1), got 0)" },
        { { { 1, 2 }, 5 }, 1, {}, "bad argument #1 to 'ttest' (history 2: table expected, got number)" },
        { { { 1, 2 }, { 1, "a" } }, 1, {}, "bad argument #1 to 'ttest' (history 2: number expected at index 2, got string)" },
        { 7, 1, {}, "bad argument #1 to 'ttest' (table expected, got number)" },
      }
      for _, c in ipairs(cases) do
        assert.has_error(function() select_.ttest(c[1], c[2], c[3]) end, c[4])
      end
    end)
  end)
end)
