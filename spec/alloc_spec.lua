-- The storage cache: results of ops reuse the blocks of dropped results.
-- Block contents are checked against values written by hand or plain Lua
-- loops; reuse itself is seen through pbt.core.allocator_stats().
local pbt = require("pbt")
local T = pbt.tensor
local core = pbt.core

local DTYPES = { "float32", "float64" }
local N = 100000 -- 400 KB in float32: above the cache's smallest size

local function stats() return core.allocator_stats() end

-- drops every unreachable tensor, so its block goes back to the cache
local function collect()
  collectgarbage()
  collectgarbage()
end

-- true when every element of the 1-d tensor t equals f(i)
local function all(t, f)
  for i = 1, t:numel() do
    if t:get(i) ~= f(i) then return false, i end
  end
  return true
end

describe("pbt.core", function()
  describe("allocator_stats()", function()
    it("reports the cache's counters and bounds", function()
      local s = stats()
      for _, k in ipairs({ "live_bytes", "cached_bytes", "cached_blocks", "limit", "hits",
                           "misses" }) do
        assert.are.equal("integer", math.type(s[k]), k)
        assert.is_true(s[k] >= 0, k)
      end
      assert.are.equal(16384, s.min_bytes)
      assert.are.equal(256 * 1024 * 1024, s.limit)
    end)

    it("counts a hit when a result of a dropped result's size is made", function()
      local x = T.full(N, 7)
      x = nil -- luacheck: ignore
      collect()
      local before = stats()
      assert.is_true(before.cached_blocks >= 1)
      local y = T.empty(N)
      local after = stats()
      assert.are.equal(before.hits + 1, after.hits)
      assert.are.equal(before.misses, after.misses)
      assert.are.equal(before.cached_blocks - 1, after.cached_blocks)
      assert.are.equal(N, y:numel())
    end)

    it("leaves small tensors to malloc", function()
      collect()
      local before = stats()
      local small = T.zeros(1000) -- 4 KB
      local after = stats()
      assert.are.equal(before.hits, after.hits)
      assert.are.equal(before.misses, after.misses)
      assert.are.equal(0, small:sum():item())
    end)

    it("caches results from 16 KiB on (a batch of 32 rows of 256 floats)", function()
      collect()
      local x = T.full({ 32, 256 }, 3) -- 32 KiB
      x = nil -- luacheck: ignore
      collect()
      local before = stats()
      local y = T.empty({ 32, 256 })
      local after = stats()
      assert.are.equal(before.hits + 1, after.hits)
      assert.are.equal(before.misses, after.misses)
      y:fill_(5)
      assert.are.equal(5 * 32 * 256, y:sum():item())
    end)

    it("reuses blocks in a loop without explicit collections", function()
      local a = T.full(10 * N, 1) -- 4 MB
      local c
      local before = stats()
      for _ = 1, 50 do c = a + a end
      local after = stats()
      -- a collector cycle runs once the results made since the last one
      -- weigh as much as the live tensors or Lua's heap
      assert.is_true(after.hits - before.hits >= 35,
                     "hits " .. (after.hits - before.hits))
      assert.are.equal(2, c:get(10 * N))
      assert.are.equal(2, c:get(1))
    end)
  end)

  describe("a training loop", function()
    it("makes no fresh blocks once it runs (every step's results reuse the last's)", function()
      -- a small CNN's step makes a few MB of results that each step drops:
      -- the collector's forced cycles must hand all of them back (a cycle
      -- stepped to the end of the one under way kept the last step's, and
      -- every other step or so faulted in fresh blocks)
      local nn, optim = pbt.nn, pbt.optim
      local g = pbt.Generator(1)
      local model = nn.Sequential(
        nn.Conv2d(1, 16, 3, { padding = 1, generator = g }), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 14 * 14, 10, { generator = g }))
      local x = T.rand({ 64, 1, 28, 28 }, { generator = g })
      local y = T.randint(1, 10, 64, { generator = g })
      local opt = optim.SGD(model:parameters(), { lr = 0.01, momentum = 0.9 })
      local function step()
        opt:zero_grad(false)
        nn.cross_entropy(model(x), y):backward()
        opt:step()
      end
      for _ = 1, 30 do step() end
      local before = stats()
      for _ = 1, 100 do step() end -- (169 misses here before the fix)
      local after = stats()
      assert.are.equal(before.misses, after.misses)
      assert.is_true(after.hits - before.hits >= 100 * 5, "hits " .. (after.hits - before.hits))
    end)

    local nn = pbt.nn
    local g = pbt.Generator(2)
    local models = {
      { "an MLP", nn.Sequential(nn.Linear(100, 256, { generator = g }), nn.ReLU(),
        nn.Linear(256, 256, { generator = g }), nn.ReLU(), nn.Linear(256, 10, { generator = g })),
        { 64, 100 } },
      { "an MLP with dropout and layer norm", nn.Sequential(nn.Linear(100, 256, { generator = g }),
        nn.LayerNorm(256), nn.GELU(), nn.Dropout(0.2, { generator = g }),
        nn.Linear(256, 10, { generator = g })), { 64, 100 } },
      { "a CNN", nn.Sequential(nn.Conv2d(1, 8, 3, { padding = 1, generator = g }), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10, { generator = g })),
        { 64, 1, 28, 28 } },
    }
    for _, case in ipairs(models) do
      it("needs no collector: backward and nn.Sequential free what a step made and used up (" ..
         case[1] .. ")", function()
        -- with the collector stopped, a step's results come back only when
        -- they are released: the gradients backward made (as it used them up)
        -- and the outputs of the layers inside the Sequential, with their
        -- ops' other results (masks, indices, statistics), once the walk has
        -- used them; the logits and the loss are small (malloc)
        local optim = pbt.optim
        local model = case[2]
        local x = T.rand(case[3], { generator = g })
        local y = T.randint(1, 10, 64, { generator = g })
        local opt = optim.SGD(model:parameters(), { lr = 0.01 })
        local function step()
          opt:zero_grad(false)
          nn.cross_entropy(model(x), y):backward()
          opt:step()
        end
        step()
        collectgarbage("stop")
        local ok, err = pcall(function()
          step()
          local before = stats()
          for _ = 1, 20 do step() end
          local after = stats()
          assert.are.equal(before.misses, after.misses)
          assert.is_true(after.hits - before.hits >= 20 * 4, "hits " .. (after.hits - before.hits))
          -- and eval under no_grad frees each output once the next layer used it
          model:eval()
          pbt.no_grad(function() return model(x) end)
          before = stats()
          for _ = 1, 20 do pbt.no_grad(function() return model(x) end) end
          after = stats()
          assert.are.equal(before.misses, after.misses)
        end)
        collectgarbage("restart")
        assert(ok, err)
      end)
    end
  end)

  describe("reused blocks", function()
    for _, dt in ipairs(DTYPES) do
      it("are filled by zeros(), ones() and full() (" .. dt .. ")", function()
        for _, case in ipairs({ { "zeros", 0 }, { "ones", 1 } }) do
          local junk = T.full(N, 7.5, { dtype = dt })
          junk = nil -- luacheck: ignore
          collect()
          local h = stats().hits
          local t = T[case[1]](N, { dtype = dt })
          assert.are.equal(h + 1, stats().hits) -- the block of 7.5s
          assert.are.equal(dt, t:dtype())
          assert.is_true(all(t, function() return case[2] end))
        end
        local junk = T.full(N, 7.5, { dtype = dt })
        junk = nil -- luacheck: ignore
        collect()
        local t = T.full(N, -2, { dtype = dt })
        assert.is_true(all(t, function() return -2 end))
        junk = T.full(N, 7.5, { dtype = dt })
        junk = nil
        collect()
        t = T.zeros_like(t)
        assert.is_true(all(t, function() return 0 end))
      end)

      it("hold correct results of ops (" .. dt .. ")", function()
        local a = T.arange(0, N, 1, { dtype = dt })
        local b = T.full(N, 3, { dtype = dt })
        for _ = 1, 3 do
          local junk = T.full(N, 123, { dtype = dt })
          junk = nil -- luacheck: ignore
          collect()
          local h = stats().hits
          local c = a + b
          assert.is_true(stats().hits > h)
          assert.is_true(all(c, function(i) return i - 1 + 3 end))
          local d = c:clone()
          assert.is_true(all(d, function(i) return i - 1 + 3 end))
        end
      end)

      it("hold correct copies of non-contiguous tensors (" .. dt .. ")", function()
        -- 400 x 250, transposed: element [i][j] of t.T is 1000 * j + i
        local rows, cols = 400, 250
        local x = T.arange(0, rows * cols, 1, { dtype = dt }):view(rows, cols)
        local junk = T.full(rows * cols, 9, { dtype = dt })
        junk = nil -- luacheck: ignore
        collect()
        local y = x.T:clone()
        assert.are.same({ cols, rows }, y:shape())
        for i = 1, cols, 37 do
          for j = 1, rows, 41 do
            assert.are.equal((j - 1) * cols + (i - 1), y:get(i, j))
          end
        end
        local z = x:narrow(2, 11, 200):clone() -- 400 x 200 = 320 KB
        assert.are.equal(10, z:get(1, 1))
        assert.are.equal(399 * cols + 209, z:get(400, 200))
      end)
    end
  end)

  describe("views", function()
    it("keep their storage out of the cache", function()
      local x = T.arange(0, N)
      local v = x:narrow(1, N - 9, 10)
      x = nil -- luacheck: ignore
      collect()
      -- a block of x's size made now must not be x's
      local others = {}
      for k = 1, 4 do others[k] = T.full(N, -1) end
      for i = 1, 10 do assert.are.equal(N - 11 + i, v:get(i)) end
      assert.are.equal(-1, others[4]:get(N))
    end)
  end)

  describe("allocator_limit()", function()
    local saved
    before_each(function() saved = core.allocator_limit() end)
    after_each(function() core.allocator_limit(saved) end)

    it("returns the bound and sets a new one", function()
      assert.are.equal(256 * 1024 * 1024, core.allocator_limit())
      assert.are.equal(256 * 1024 * 1024, core.allocator_limit(1024 * 1024))
      assert.are.equal(1024 * 1024, core.allocator_limit())
      assert.are.equal(1024 * 1024, stats().limit)
    end)

    it("keeps the cache within the bound", function()
      core.allocator_limit(1024 * 1024) -- room for two 400 KB blocks
      local ts = {}
      for k = 1, 6 do ts[k] = T.full(N, k) end
      ts = nil -- luacheck: ignore
      collect()
      local s = stats()
      assert.is_true(s.cached_bytes <= 1024 * 1024, s.cached_bytes)
      assert.is_true(s.cached_blocks >= 2)
      core.allocator_limit(0) -- empties the cache and turns it off
      s = stats()
      assert.are.equal(0, s.cached_bytes)
      assert.are.equal(0, s.cached_blocks)
      local t = T.full(N, 5)
      t = nil -- luacheck: ignore
      collect()
      assert.are.equal(0, stats().cached_blocks)
    end)

    it("rejects a negative bound", function()
      assert.has_error(function() core.allocator_limit(-1) end,
                       "bad argument #1 to 'allocator_limit' (negative size)")
    end)
  end)
end)
