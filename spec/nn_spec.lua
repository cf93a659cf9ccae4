local pbt = require("pbt")
local nn = require("pbt.nn")
local T = pbt.tensor

local function gen(seed) return pbt.Generator(seed or 1) end

local function randn(shape, seed, dtype)
  return T.randn(shape, { dtype = dtype or "float64", generator = gen(seed) })
end

local function leaf(shape, seed) return randn(shape, seed):requires_grad_() end

local function check(fn, inputs, eps, tol)
  local ok, msg = pbt.gradcheck(fn, inputs, eps, tol)
  assert(ok, msg)
end

local function assert_close(expected, got, tol)
  tol = tol or 1e-6
  local e = type(expected) == "table" and T.tensor(expected, { dtype = "float64" }) or expected
  assert.same(e:shape(), got:shape())
  assert(T.allclose(got:astype("float64"), e:astype("float64"), tol, tol),
    "expected\n" .. tostring(e) .. "\ngot\n" .. tostring(got))
end

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

local function assert_error_ends(fn, msg)
  local err = error_of(fn)
  assert(err:sub(-#msg) == msg, ("expected an error ending in %q, got %q"):format(msg, err))
end

local dtypes = { "float32", "float64" }

-- plain-Lua references -------------------------------------------------------------

-- x [N][C][H][W], w [O][C][kh][kw], b [O] or nil (nested tables)
local function ref_conv(x, w, b, sh, sw, ph, pw)
  local N, C, H, W = #x, #x[1], #x[1][1], #x[1][1][1]
  local O, kh, kw = #w, #w[1][1], #w[1][1][1]
  local OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
  local out = {}
  for n = 1, N do
    out[n] = {}
    for o = 1, O do
      out[n][o] = {}
      for i = 1, OH do
        out[n][o][i] = {}
        for j = 1, OW do
          local s = b and b[o] or 0
          for c = 1, C do
            for ki = 1, kh do
              for kj = 1, kw do
                local r, q = (i - 1) * sh - ph + ki, (j - 1) * sw - pw + kj
                if r >= 1 and r <= H and q >= 1 and q <= W then
                  s = s + x[n][c][r][q] * w[o][c][ki][kj]
                end
              end
            end
          end
          out[n][o][i][j] = s
        end
      end
    end
  end
  return out
end

-- x [N][C][H][W]: values and 1-based positions in the plane
local function ref_pool(x, kh, kw, sh, sw, ph, pw)
  local N, C, H, W = #x, #x[1], #x[1][1], #x[1][1][1]
  local OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
  local out, idx = {}, {}
  for n = 1, N do
    out[n], idx[n] = {}, {}
    for c = 1, C do
      out[n][c], idx[n][c] = {}, {}
      for i = 1, OH do
        out[n][c][i], idx[n][c][i] = {}, {}
        for j = 1, OW do
          local best, at = -math.huge, nil
          for ki = 1, kh do
            for kj = 1, kw do
              local r, q = (i - 1) * sh - ph + ki, (j - 1) * sw - pw + kj
              if r >= 1 and r <= H and q >= 1 and q <= W and x[n][c][r][q] > best then
                best, at = x[n][c][r][q], (r - 1) * W + q
              end
            end
          end
          out[n][c][i][j], idx[n][c][i][j] = best, at
        end
      end
    end
  end
  return out, idx
end

local function logsumexp(row)
  local m = -math.huge
  for _, v in ipairs(row) do m = math.max(m, v) end
  local s = 0
  for _, v in ipairs(row) do s = s + math.exp(v - m) end
  return m + math.log(s)
end

describe("pbt.nn", function()
  describe("functional kernels: forward values", function()
    it("conv2d: a 1-channel 3x3 kernel on a 4x4 input, worked out by hand", function()
      for _, dt in ipairs(dtypes) do
        local x = T.arange(1, 17, { dtype = dt }):reshape(1, 1, 4, 4)
        local w = T.tensor({ { { { 1, 2, 0 }, { 0, 1, 0 }, { 0, 0, -1 } } } }, { dtype = dt })
        -- out[i][j] = x[i][j] + 2 x[i][j+1] + x[i+1][j+1] - x[i+2][j+2] = 12 i + 3 j
        assert_close({ { { { 0, 3 }, { 12, 15 } } } }, nn.conv2d(x, w))
        assert_close({ { { { 0.5, 3.5 }, { 12.5, 15.5 } } } },
          nn.conv2d(x, w, T.tensor({ 0.5 }, { dtype = dt })))
        -- stride 2, padding 1: windows start at (-1,-1), (-1,1), (1,-1), (1,1)
        assert_close({ { { { -5, -5 }, { 5, 15 } } } }, nn.conv2d(x, w, nil, { stride = 2, padding = 1 }))
        -- a 3-d input [C,H,W]
        assert_close({ { { 0, 3 }, { 12, 15 } } }, nn.conv2d(x:reshape(1, 4, 4), w))
      end
    end)

    it("conv2d matches a plain loop: channels, strides, paddings, non-contiguous input", function()
      local cases = {
        { n = 2, c = 3, h = 5, w = 6, o = 4, kh = 3, kw = 2, sh = 1, sw = 1, ph = 0, pw = 0 },
        { n = 1, c = 2, h = 7, w = 5, o = 3, kh = 3, kw = 3, sh = 2, sw = 3, ph = 1, pw = 2 },
        { n = 3, c = 4, h = 4, w = 4, o = 2, kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0 },
        { n = 2, c = 1, h = 6, w = 6, o = 2, kh = 5, kw = 5, sh = 1, sw = 1, ph = 2, pw = 2 },
        { n = 1, c = 2, h = 3, w = 8, o = 2, kh = 2, kw = 4, sh = 2, sw = 2, ph = 1, pw = 0 },
      }
      for k, cs in ipairs(cases) do
        for _, dt in ipairs(dtypes) do
          local x = randn({ cs.n, cs.c, cs.w, cs.h }, k, dt):transpose(3, 4) -- non-contiguous
          local w = randn({ cs.o, cs.c, cs.kh, cs.kw }, k + 10, dt)
          local b = randn({ cs.o }, k + 20, dt)
          local ref = ref_conv(x:totable(), w:totable(), b:totable(), cs.sh, cs.sw, cs.ph, cs.pw)
          local got = nn.conv2d(x, w, b, { stride = { cs.sh, cs.sw }, padding = { cs.ph, cs.pw } })
          assert_close(ref, got, 1e-4)
        end
      end
    end)

    it("conv2d: the module keeps its workspace and gives the same result each call", function()
      local conv = nn.Conv2d(2, 3, 3, { padding = 1, generator = gen(3) })
      local x = T.rand(2, 2, 5, 5, { generator = gen(4) })
      local a = conv(x)
      local b = conv(T.rand(1, 2, 9, 9, { generator = gen(5) })) -- a bigger workspace
      assert.same({ 1, 3, 9, 9 }, b:shape())
      assert(T.equal(a, conv(x)))
    end)

    it("max_pool2d by hand, with the positions of the maxima", function()
      for _, dt in ipairs(dtypes) do
        local x = T.tensor({ { { { 1, 5, 2, 0 }, { 3, 4, 8, 1 }, { 0, 2, 7, 6 }, { 9, 1, 3, 3 } } } },
          { dtype = dt })
        local out, idx = nn.max_pool2d(x, 2)
        assert_close({ { { { 5, 8 }, { 9, 7 } } } }, out)
        assert_close({ { { { 2, 7 }, { 13, 11 } } } }, idx)
        assert_close({ { { { 5, 8 }, { 9, 7 } } } }, nn.MaxPool2d(2)(x))
        -- kernel 3, stride 1, no padding: the maxima of the four 3x3 windows
        assert_close({ { { { 8, 8 }, { 9, 8 } } } }, (nn.max_pool2d(x, 3, { stride = 1 })))
      end
    end)

    it("max_pool2d matches a plain loop: strides, paddings, 3-d input, non-contiguous", function()
      local cases = {
        { 2, 3, 6, 6, 2, 2, 2, 2, 0, 0 }, { 1, 2, 7, 5, 3, 3, 2, 2, 1, 1 },
        { 2, 1, 5, 8, 3, 2, 1, 2, 1, 0 }, { 1, 1, 4, 4, 4, 4, 1, 1, 0, 0 },
      }
      for k, cs in ipairs(cases) do
        for _, dt in ipairs(dtypes) do
          local x = randn({ cs[1], cs[2], cs[4], cs[3] }, k, dt):transpose(3, 4)
          local ref, ridx = ref_pool(x:totable(), cs[5], cs[6], cs[7], cs[8], cs[9], cs[10])
          local out, idx = nn.max_pool2d(x, { cs[5], cs[6] },
            { stride = { cs[7], cs[8] }, padding = { cs[9], cs[10] } })
          assert_close(ref, out)
          assert_close(ridx, idx)
        end
      end
      local x3 = randn({ 2, 4, 4 }, 9)
      local ref = ref_pool({ x3:totable() }, 2, 2, 2, 2, 0, 0)
      assert_close(ref[1], (nn.max_pool2d(x3, 2)))
    end)

    it("max_pool2d: a NaN in a window wins", function()
      local x = T.tensor({ { { { 1, 0 / 0, 2, 0 }, { 3, 4, 8, 1 } } } })
      local out, idx = nn.max_pool2d(x, 2)
      assert(out:get(1, 1, 1, 1) ~= out:get(1, 1, 1, 1))
      assert.equal(2, idx:get(1, 1, 1, 1))
      assert.equal(8, out:get(1, 1, 1, 2))
      assert.equal(7, idx:get(1, 1, 1, 2))
    end)

    it("max_pool2d 2x2 (the vectorised path): every row width, ties, NaNs, both dtypes", function()
      -- widths cover rows of 1-3 outputs, 4-7 (4 at a time, overlapping), 8 and
      -- more (8 at a time, overlapping); odd sizes leave a row or column out
      local sizes = { { 2, 2 }, { 3, 5 }, { 4, 8 }, { 5, 9 }, { 4, 14 }, { 6, 16 }, { 3, 17 },
                      { 2, 26 }, { 4, 33 } }
      for k, hw in ipairs(sizes) do
        for _, dt in ipairs(dtypes) do
          -- integers in 0..3: many ties (the first maximum of a window wins)
          local x = T.randint(0, 3, { 2, 3, hw[1], hw[2] }, { dtype = dt, generator = gen(k) })
          local ref, ridx = ref_pool(x:totable(), 2, 2, 2, 2, 0, 0)
          local out, idx = nn.max_pool2d(x, 2)
          assert_close(ref, out, 0)
          assert_close(ridx, idx, 0)
          -- a NaN beats everything; the first NaN of a window wins
          x:set(1, 2, 1, 2, 0 / 0)
          x:set(1, 2, 2, 1, 0 / 0)
          x:set(2, 3, 2, hw[2] - (hw[2] % 2), 0 / 0)
          out, idx = nn.max_pool2d(x, 2)
          assert(out:get(1, 2, 1, 1) ~= out:get(1, 2, 1, 1))
          assert.equal(2, idx:get(1, 2, 1, 1))
          local last = (hw[2] - (hw[2] % 2)) // 2
          assert(out:get(2, 3, 1, last) ~= out:get(2, 3, 1, last))
          assert.equal(hw[2] + 2 * last, idx:get(2, 3, 1, last))
          -- the other windows are untouched by the NaNs
          x:set(1, 2, 1, 2, 0)
          x:set(1, 2, 2, 1, 0)
          x:set(2, 3, 2, hw[2] - (hw[2] % 2), 0)
          ref, ridx = ref_pool(x:totable(), 2, 2, 2, 2, 0, 0)
          for _, at in ipairs({ { 1, 1 }, { 1, 3 }, { 2, 1 }, { 2, 2 } }) do
            local n, c = at[1], at[2]
            for j = 1, hw[2] // 2 do
              if not (n == 1 and c == 2 and j == 1) and not (n == 2 and c == 3 and j == last) then
                assert.equal(ref[n][c][1][j], out:get(n, c, 1, j))
                assert.equal(ridx[n][c][1][j], idx:get(n, c, 1, j))
              end
            end
          end
        end
      end
    end)

    it("max_pool2d_backward scatters g at the positions, any positions in the plane", function()
      local back = require("pbt.core").nn.max_pool2d_backward
      for k, hw in ipairs({ { 4, 8 }, { 5, 9 }, { 4, 14 }, { 3, 17 }, { 2, 3 } }) do
        for _, dt in ipairs(dtypes) do
          local H, W = hw[1], hw[2]
          local OH, OW = H // 2, W // 2
          local x = randn({ 2, 2, H, W }, k, dt)
          local g = randn({ 2, 2, OH, OW }, k + 10, dt)
          local gt = g:totable()
          -- the forward's positions, then positions moved out of their windows
          -- (still in the plane): both are scattered alike
          local _, idx = nn.max_pool2d(x, 2)
          local moved = idx:clone()
          moved:set(1, 1, 1, 1, H * W)
          moved:set(2, 2, OH, OW, 1)
          for _, ix in ipairs({ idx, moved }) do
            local it = ix:totable()
            local ref = {}
            for n = 1, 2 do
              ref[n] = {}
              for c = 1, 2 do
                local plane = {}
                for p = 1, H * W do plane[p] = 0 end
                for i = 1, OH do
                  for j = 1, OW do
                    local p = it[n][c][i][j]
                    plane[p] = plane[p] + gt[n][c][i][j]
                  end
                end
                ref[n][c] = {}
                for r = 1, H do
                  ref[n][c][r] = {}
                  for q = 1, W do ref[n][c][r][q] = plane[(r - 1) * W + q] end
                end
              end
            end
            assert_close(ref, back(g, ix, x), dt == "float32" and 1e-6 or 1e-12)
          end
          local bad = idx:clone()
          bad:set(1, 1, 1, 1, H * W + 1)
          assert_error_ends(function() back(g, bad, x) end,
            ("max_pool2d_backward: index %d out of range for size %d"):format(H * W + 1, H * W))
          bad:set(1, 1, 1, 1, 1.5)
          assert_error_ends(function() back(g, bad, x) end,
            ("max_pool2d_backward: index 1.5 out of range for size %d"):format(H * W))
        end
      end
    end)

    it("relu_backward: g where x > 0, else 0; non-contiguous; errors", function()
      local back = require("pbt.core").nn.relu_backward
      for _, dt in ipairs(dtypes) do
        local x = T.tensor({ { -1, 0, 2 }, { 3, -0.5, 1e-30 } }, { dtype = dt })
        local g = T.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = dt })
        assert_close({ { 0, 0, 3 }, { 4, 0, 6 } }, back(g, x), 0)
        -- transposed operands are read through their strides
        assert_close({ { 0, 4 }, { 0, 0 }, { 3, 6 } }, back(g.T, x.T), 0)
        -- 37 elements: whole vectors and a tail
        local xs = randn({ 37 }, 3, dt)
        local gs = randn({ 37 }, 4, dt)
        local want = {}
        for i = 1, 37 do want[i] = xs:get(i) > 0 and gs:get(i) or 0 end
        assert_close(want, back(gs, xs), 0)
      end
      assert_error_ends(function() back(T.zeros(2, 3), T.zeros(3, 2)) end,
        "relu_backward: gradient of shape [2,3], expected [3,2]")
      assert_error_ends(function() back(T.zeros(2), T.zeros(2, { dtype = "float64" })) end,
        "relu_backward: dtypes float64 and float32 do not match")
    end)

    it("cross_entropy from log-sum-exp, mean, sum and none, labels as a table or a tensor", function()
      local rows = { { 1, 2, 3 }, { 1, 1, 1 }, { -2, 0.5, 4 } }
      local labels = { 3, 1, 2 }
      local l = {}
      for i, r in ipairs(rows) do l[i] = logsumexp(r) - r[labels[i]] end
      for _, dt in ipairs(dtypes) do
        local x = T.tensor(rows, { dtype = dt })
        local tol = dt == "float32" and 1e-5 or 1e-12
        assert.near((l[1] + l[2] + l[3]) / 3, nn.cross_entropy(x, labels):item(), tol)
        assert.near(l[1] + l[2] + l[3], nn.cross_entropy(x, labels, { reduction = "sum" }):item(), tol)
        assert_close(l, nn.cross_entropy(x, T.tensor(labels, { dtype = "float32" }), { reduction = "none" }), tol)
        assert.equal(dt, nn.cross_entropy(x, labels):dtype())
      end
      -- non-contiguous logits
      local xt = T.tensor(rows, { dtype = "float64" }):t():contiguous():t()
      assert.near((l[1] + l[2] + l[3]) / 3, nn.cross_entropy(xt, labels):item(), 1e-12)
    end)

    it("cross_entropy is stable for large logits", function()
      local x = T.tensor({ { 1000, 0, -1000 }, { 1000, 1000, 0 } })
      local l = nn.cross_entropy(x, { 1, 2 }, { reduction = "none" })
      assert.near(0, l:get(1), 1e-6)
      assert.near(math.log(2), l:get(2), 1e-6)
    end)

    it("cross_entropy rejects bad labels and shapes", function()
      local x = T.zeros(2, 3)
      assert.has_error(function() nn.cross_entropy(x, { 1, 4 }) end,
        "cross_entropy: label 4 out of range for 3 classes")
      assert.has_error(function() nn.cross_entropy(x, { 0, 1 }) end,
        "cross_entropy: label 0 out of range for 3 classes")
      assert.has_error(function() nn.cross_entropy(x, { 1.5, 1 }) end,
        "cross_entropy: label 1.5 is not an integer")
      assert.has_error(function() nn.cross_entropy(x, { 1 }) end,
        "cross_entropy: labels of shape [1] do not fit logits of shape [2,3]")
      assert.has_error(function() nn.cross_entropy(T.zeros(3), { 1 }) end,
        "cross_entropy: expects 2-d logits [N,K], got shape [3]")
      assert_error_ends(function() nn.cross_entropy(x, { 1, 2 }, { reduction = "avg" }) end,
        "cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'")
      -- the options-table convention: a positional reduction is named as such
      assert_error_ends(function() nn.cross_entropy(x, { 1, 2 }, "sum") end,
        "cross_entropy: the reduction goes in an options table: {reduction = 'sum'}")
      assert_error_ends(function() nn.mse_loss(x, 0, { reducton = "sum" }) end,
        "mse_loss: unknown option 'reducton' (did you mean 'reduction'?)")
    end)

    it("nll_loss picks -logp at the labels", function()
      local lp = T.tensor({ { -0.1, -2.0, -3.0 }, { -1.5, -0.5, -2.5 } }, { dtype = "float64" })
      assert.near((0.1 + 0.5) / 2, nn.nll_loss(lp, { 1, 2 }):item(), 1e-12)
      assert.near(3.0 + 1.5, nn.nll_loss(lp, T.tensor({ 3, 1 }), { reduction = "sum" }):item(), 1e-12)
      -- log_softmax then nll_loss is cross_entropy
      local x = randn({ 4, 5 }, 3)
      assert.near(nn.cross_entropy(x, { 1, 5, 2, 2 }):item(),
        nn.nll_loss(x:log_softmax(2), { 1, 5, 2, 2 }):item(), 1e-12)
    end)

    it("mse_loss and binary_cross_entropy_with_logits by formula", function()
      local p = T.tensor({ 1, 2, 3 }, { dtype = "float64" })
      local t = T.tensor({ 1.5, 2, 1 }, { dtype = "float64" })
      assert.near((0.25 + 0 + 4) / 3, nn.mse_loss(p, t):item(), 1e-12)
      assert.near(4.25, nn.mse_loss(p, t, { reduction = "sum" }):item(), 1e-12)
      assert_close({ 0.25, 0, 4 }, nn.mse_loss(p, t, { reduction = "none" }))
      local xs, ts = { -3, -0.5, 0, 2, 40 }, { 0, 1, 0.5, 1, 0 }
      local want, sum = {}, 0
      for i, x in ipairs(xs) do
        local s = 1 / (1 + math.exp(-x))
        local one_minus = x > 20 and math.exp(-x) or 1 - s
        want[i] = -(ts[i] * math.log(s) + (1 - ts[i]) * math.log(one_minus))
        sum = sum + want[i]
      end
      want[5] = 40 -- log(1 + e^40) ~ 40 to double precision
      for _, dt in ipairs(dtypes) do
        local x, tt = T.tensor(xs, { dtype = dt }), T.tensor(ts, { dtype = dt })
        assert_close(want, nn.binary_cross_entropy_with_logits(x, tt, { reduction = "none" }), 1e-6)
        assert.near((sum - (want[5] - 40)) / 5, nn.binary_cross_entropy_with_logits(x, tt):item(),
          1e-5)
      end
      assert.has_error(function()
        nn.binary_cross_entropy_with_logits(T.zeros(3), T.zeros(4))
      end, "binary_cross_entropy_with_logits: targets of shape [4] do not fit logits of shape [3]")
    end)

    it("accuracy is the fraction of rows whose argmax is the label", function()
      local x = T.tensor({ { 1, 2 }, { 3, 0 }, { 0, 1 } })
      assert.near(2 / 3, nn.accuracy(x, { 2, 1, 1 }), 1e-15)
      assert.equal(1, nn.accuracy(x, T.tensor({ 2, 1, 2 })))
      assert.equal("number", type(nn.accuracy(x, { 1, 1, 1 })))
    end)

    it("gelu at known points: x * Phi(x)", function()
      local want = { 0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416,
        -0.004049694094890287, -5.919525870226207e-09 }
      for _, dt in ipairs(dtypes) do
        local x = T.tensor({ 0, 1, -1, 2, -3, -6 }, { dtype = dt })
        assert_close(want, nn.gelu(x), dt == "float32" and 1e-6 or 1e-14)
        assert_close(want, nn.GELU()(x), dt == "float32" and 1e-6 or 1e-14)
      end
    end)

    it("layer_norm by formula, with weight and bias, over one or two dimensions", function()
      local x = T.tensor({ { 1, 2, 3, 4 }, { 2, 2, 2, 6 } }, { dtype = "float64" })
      local r1, r2 = 1 / math.sqrt(1.25 + 1e-5), 1 / math.sqrt(3 + 1e-5)
      assert_close({ { -1.5 * r1, -0.5 * r1, 0.5 * r1, 1.5 * r1 }, { -r2, -r2, -r2, 3 * r2 } },
        nn.layer_norm(x, 4), 1e-12)
      local w = T.tensor({ 1, 2, 3, 4 }, { dtype = "float64" })
      local b = T.tensor({ 0, 0, 0, 1 }, { dtype = "float64" })
      assert_close({ { -1.5 * r1, -1 * r1, 1.5 * r1, 6 * r1 + 1 }, { -r2, -2 * r2, -3 * r2, 12 * r2 + 1 } },
        nn.layer_norm(x, { 4 }, w, b), 1e-12)
      -- over both dimensions: mean 2.75, biased variance 2.1875
      local all = nn.layer_norm(x, { 2, 4 }, nil, nil, 0)
      assert.near((1 - 2.75) / math.sqrt(2.1875), all:get(1, 1), 1e-12)
      local ln = nn.LayerNorm(4, { dtype = "float64" })
      assert_close(nn.layer_norm(x, 4), ln(x), 1e-12)
      assert.has_error(function() nn.layer_norm(x, 3) end,
        "layer_norm: normalized shape [3] does not fit input of shape [2,4]")
    end)

    it("linear: x w^T + b for 1-d, 2-d, 3-d and transposed inputs", function()
      local w = T.tensor({ { 1, 2, 3 }, { 0, -1, 1 } }, { dtype = "float64" })
      local b = T.tensor({ 0.5, -0.5 }, { dtype = "float64" })
      local x = T.tensor({ { 1, 1, 1 }, { 2, 0, -1 } }, { dtype = "float64" })
      assert_close({ { 6.5, -0.5 }, { -0.5, -1.5 } }, nn.linear(x, w, b))
      assert_close({ { 6, 0 }, { -1, -1 } }, nn.linear(x, w))
      assert_close({ 6.5, -0.5 }, nn.linear(T.tensor({ 1, 1, 1 }, { dtype = "float64" }), w, b))
      assert_close({ { { 6.5, -0.5 }, { -0.5, -1.5 } } }, nn.linear(x:reshape(1, 2, 3), w, b))
      assert_close({ { 6.5, -0.5 }, { -0.5, -1.5 } }, nn.linear(x:t():contiguous():t(), w, b))
      -- a bias that is a column of a matrix (stride 2), and one in a narrowed storage
      local bcol = T.tensor({ { 0.5, 9 }, { -0.5, 9 } }, { dtype = "float64" }):select(2, 1)
      assert_close({ { 6.5, -0.5 }, { -0.5, -1.5 } }, nn.linear(x, w, bcol))
      local bnar = T.tensor({ 9, 0.5, -0.5 }, { dtype = "float64" }):narrow(1, 2, 2)
      assert_close({ { 6.5, -0.5 }, { -0.5, -1.5 } }, nn.linear(x, w, bnar))
      assert.has_error(function() nn.linear(T.zeros(2, 4), T.zeros(3, 3)) end,
        "linear: input of shape [2,4] does not fit weight of shape [3,3]")
    end)

    it("embedding picks rows at 1-based indices", function()
      local w = T.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } })
      assert_close({ { { 5, 6 }, { 1, 2 } }, { { 3, 4 }, { 3, 4 } } },
        nn.embedding(T.tensor({ { 3, 1 }, { 2, 2 } }), w))
      assert_close({ { 3, 4 } }, nn.embedding({ 2 }, w))
      local e = nn.Embedding(10, 4, { generator = gen(2) })
      assert.same({ 2, 3, 4 }, e(T.tensor({ { 1, 2, 3 }, { 10, 9, 8 } })):shape())
    end)

    it("error texts of the kernels name the shapes", function()
      assert.has_error(function() nn.conv2d(T.zeros(1, 2, 5, 5), T.zeros(4, 3, 3, 3)) end,
        "conv2d: input of shape [1,2,5,5] has 2 channels, weight of shape [4,3,3,3] expects 3")
      assert.has_error(function() nn.conv2d(T.zeros(2, 5, 5, 5, 1), T.zeros(4, 3, 3, 3)) end,
        "conv2d: expects a 4-d input [N,C,H,W], got shape [2,5,5,5,1]")
      assert.has_error(function() nn.conv2d(T.zeros(1, 1, 4, 4), T.zeros(1, 1, 5, 5)) end,
        "conv2d: kernel 5x5 does not fit the padded input 4x4")
      assert.has_error(function() nn.max_pool2d(T.zeros(1, 1, 4, 4), 5) end,
        "max_pool2d: kernel 5x5 does not fit the padded input 4x4")
      assert.has_error(function() nn.max_pool2d(T.zeros(1, 1, 4, 4), 3, { padding = 2 }) end,
        "max_pool2d: padding 2x2 larger than half the kernel 3x3")
      assert.has_error(function() nn.max_pool2d(T.zeros(4, 4), 2) end,
        "max_pool2d: expects a 3-d or 4-d input, got shape [4,4]")
      assert.has_error(function() nn.conv2d(T.zeros(1, 1, 4, 4), T.zeros(1, 1, 3, 3, { dtype = "float64" })) end,
        "conv2d: dtypes float32 and float64 do not match")
      assert_error_ends(function() nn.Conv2d(1, 2, 3, { stride = 0 }) end,
        "Conv2d: stride must be >= 1, got 0")
    end)
  end)

  describe("gradients (gradcheck in float64)", function()
    it("linear, with and without bias, non-contiguous and 3-d inputs", function()
      local x, w, b = leaf({ 3, 4 }, 1), leaf({ 2, 4 }, 2), leaf({ 2 }, 3)
      check(function(x_, w_, b_) return nn.linear(x_, w_, b_) end, { x, w, b })
      check(function(x_, w_) return nn.linear(x_, w_) end, { x, w })
      local xt = leaf({ 4, 3 }, 4)
      check(function(x_, w_, b_) return nn.linear(x_:t(), w_, b_) end, { xt, w, b })
      local x3 = leaf({ 2, 2, 4 }, 5)
      check(function(x_, w_, b_) return nn.linear(x_, w_, b_) end, { x3, w, b })
      -- only the weight requires grad
      local xc = randn({ 3, 4 }, 6)
      check(function(w_) return nn.linear(xc, w_, b) end, { w })
    end)

    it("conv2d with stride, padding, a 1x1 kernel and a non-contiguous input", function()
      local cases = {
        { x = { 2, 2, 5, 4 }, w = { 3, 2, 3, 2 }, stride = 1, padding = 0 },
        { x = { 1, 2, 5, 5 }, w = { 2, 2, 3, 3 }, stride = 2, padding = 1 },
        { x = { 2, 1, 4, 6 }, w = { 2, 1, 2, 3 }, stride = { 2, 1 }, padding = { 0, 2 } },
        { x = { 2, 3, 3, 3 }, w = { 2, 3, 1, 1 }, stride = 1, padding = 0 },
      }
      for k, cs in ipairs(cases) do
        local x, w, b = leaf(cs.x, k), leaf(cs.w, k + 10), leaf({ cs.w[1] }, k + 20)
        local opts = { stride = cs.stride, padding = cs.padding }
        check(function(x_, w_, b_) return nn.conv2d(x_, w_, b_, opts) end, { x, w, b })
      end
      local xt = leaf({ 1, 2, 4, 5 }, 7)
      local w = leaf({ 2, 2, 3, 3 }, 8)
      check(function(x_, w_) return nn.conv2d(x_:transpose(3, 4), w_, nil, { padding = 1 }) end,
        { xt, w })
      -- the module, through its parameters
      local conv = nn.Conv2d(2, 3, 3, { stride = 2, padding = 1, generator = gen(9), dtype = "float64" })
      local x = leaf({ 2, 2, 5, 5 }, 9)
      check(function(x_) return conv(x_) end, { x, conv.weight, conv.bias })
    end)

    it("max_pool2d with stride and padding", function()
      local x = leaf({ 2, 2, 5, 5 }, 1)
      check(function(x_) return nn.max_pool2d(x_, 2) end, { x })
      check(function(x_) return nn.max_pool2d(x_, 3, { stride = 2, padding = 1 }) end, { x })
      check(function(x_) return nn.max_pool2d(x_:transpose(3, 4), { 2, 3 }, { stride = 1 }) end, { x })
      local x3 = leaf({ 2, 4, 4 }, 2)
      check(function(x_) return nn.MaxPool2d(2)(x_) end, { x3 })
    end)

    it("cross_entropy (mean, sum, none) and nll_loss", function()
      local x = leaf({ 4, 5 }, 1)
      local labels = T.tensor({ 2, 5, 1, 2 })
      for _, red in ipairs({ "mean", "sum", "none" }) do
        check(function(x_) return nn.cross_entropy(x_, labels, { reduction = red }) end, { x })
        check(function(x_) return nn.nll_loss(x_:log_softmax(2), labels, { reduction = red }) end, { x })
      end
      check(function(x_) return nn.cross_entropy(x_:t(), { 1, 2, 3, 4, 1 }) end, { x })
    end)

    it("binary_cross_entropy_with_logits, also through the targets; mse_loss", function()
      local x, t = leaf({ 3, 2 }, 1), randn({ 3, 2 }, 2):sigmoid():requires_grad_()
      for _, red in ipairs({ "mean", "sum", "none" }) do
        check(function(x_, t_) return nn.binary_cross_entropy_with_logits(x_, t_, { reduction = red }) end, { x, t })
        check(function(x_, t_) return nn.mse_loss(x_, t_, { reduction = red }) end, { x, t })
      end
    end)

    it("gelu, layer_norm (with and without affine parameters), activations", function()
      local x = leaf({ 3, 4 }, 1)
      check(function(x_) return nn.gelu(x_) end, { x })
      check(function(x_) return nn.gelu(x_:t()) end, { x })
      local w, b = leaf({ 4 }, 2), leaf({ 4 }, 3)
      check(function(x_, w_, b_) return nn.layer_norm(x_, 4, w_, b_) end, { x, w, b })
      check(function(x_) return nn.layer_norm(x_, 4) end, { x })
      check(function(x_) return nn.layer_norm(x_:t(), 3) end, { x })
      local x3, w2, b2 = leaf({ 2, 2, 3 }, 4), leaf({ 2, 3 }, 5), leaf({ 2, 3 }, 6)
      check(function(x_, w_, b_) return nn.layer_norm(x_, { 2, 3 }, w_, b_) end, { x3, w2, b2 })
      check(function(x_, b_) return nn.layer_norm(x_, { 2, 3 }, nil, b_) end, { x3, b2 })
      for _, m in ipairs({ nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.GELU() }) do
        check(function(x_) return m(x_) end, { x })
      end
    end)

    it("dropout (the mask drawn again from the same seed)", function()
      local x = leaf({ 4, 5 }, 1)
      check(function(x_) return nn.dropout(x_, 0.4, { generator = gen(7) }) end, { x })
    end)

    it("embedding, through index_select", function()
      local e = nn.Embedding(5, 3, { generator = gen(1), dtype = "float64" })
      local idx = T.tensor({ { 1, 5 }, { 5, 2 } })
      check(function() return e(idx) end, { e.weight })
    end)

    it("a Sequential MLP and a small CNN, through every parameter", function()
      local g = gen(3)
      local mlp = nn.Sequential(nn.Linear(4, 5, { generator = g, dtype = "float64" }), nn.Tanh(),
        nn.LayerNorm(5, { dtype = "float64" }), nn.Linear(5, 3, { generator = g, dtype = "float64" }))
      local x = randn({ 2, 4 }, 4)
      local inputs = mlp:parameters()
      check(function() return nn.cross_entropy(mlp(x), { 3, 1 }) end, inputs)
      local cnn = nn.Sequential(nn.Conv2d(1, 2, 3, { padding = 1, generator = g, dtype = "float64" }),
        nn.GELU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3, { generator = g, dtype = "float64" }))
      local xi = randn({ 2, 1, 4, 4 }, 5)
      check(function() return nn.cross_entropy(cnn(xi), { 1, 3 }, { reduction = "sum" }) end, cnn:parameters())
    end)
  end)

  describe("modules", function()
    it("parameter counts and shapes", function()
      local cases = {
        { nn.Linear(784, 256), 784 * 256 + 256 },
        { nn.Linear(10, 3, { bias = false }), 30 },
        { nn.Conv2d(1, 16, 3), 16 * 9 + 16 },
        { nn.Conv2d(16, 32, { 3, 5 }, { bias = false }), 32 * 16 * 15 },
        { nn.LayerNorm(10), 20 },
        { nn.LayerNorm({ 2, 3 }, { elementwise_affine = false }), 0 },
        { nn.Embedding(10, 4), 40 },
        { nn.Sequential(nn.Conv2d(1, 16, 3, { padding = 1 }), nn.ReLU(), nn.MaxPool2d(2),
          nn.Conv2d(16, 32, 3, { padding = 1 }), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
          nn.Linear(32 * 7 * 7, 10)), 160 + 4640 + 15690 },
        { nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Flatten()), 0 },
      }
      for _, c in ipairs(cases) do assert.equal(c[2], c[1]:num_parameters()) end
      local conv = nn.Conv2d(3, 8, { 3, 5 })
      assert.same({ 8, 3, 3, 5 }, conv.weight:shape())
      assert.same({ 8 }, conv.bias:shape())
      assert.same({ 10, 784 }, nn.Linear(784, 10).weight:shape())
      assert.is_nil(nn.Linear(2, 3, { bias = false }).bias)
    end)

    it("default initialisation: uniform in +-1/sqrt(fan_in), from the given generator", function()
      local lin = nn.Linear(100, 50, { generator = gen(1) })
      local bound = 0.1
      for _, t in ipairs({ lin.weight, lin.bias }) do
        assert.is_true(t:abs():max():item() <= bound)
      end
      assert.is_true(lin.weight:abs():max():item() > 0.99 * bound)
      assert.near(0, lin.weight:mean():item(), 0.01)
      -- uniform(-a, a) has variance a^2 / 3
      assert.near(bound * bound / 3, lin.weight:var():item(), 1e-4)
      local again = nn.Linear(100, 50, { generator = gen(1) })
      assert(T.equal(lin.weight, again.weight) and T.equal(lin.bias, again.bias))
      assert(not T.equal(lin.weight, nn.Linear(100, 50, { generator = gen(2) }).weight))
      local conv = nn.Conv2d(4, 6, 3, { generator = gen(1) })
      assert.is_true(conv.weight:abs():max():item() <= 1 / 6)
      assert.is_true(conv.weight:abs():max():item() > 0.95 / 6)
      local e = nn.Embedding(200, 50, { generator = gen(1) })
      assert.near(0, e.weight:mean():item(), 0.03)
      assert.near(1, e.weight:std():item(), 0.03)
      local ln = nn.LayerNorm(3)
      assert(T.equal(ln.weight, T.ones(3)) and T.equal(ln.bias, T.zeros(3)))
      assert.equal("float64", nn.Linear(2, 2, { dtype = "float64" }).weight:dtype())
      assert.is_true(lin.weight.requires_grad and lin.weight:is_leaf())
    end)

    it("named_parameters: names and a fixed order; parameters() follows it", function()
      local m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sequential(nn.LayerNorm(3), nn.Linear(3, 2)))
      local names = {}
      for i, p in ipairs(m:named_parameters()) do
        names[i] = p[1]
        assert.equal(p[2], m:parameters()[i])
      end
      assert.same({ "1.weight", "1.bias", "3.1.weight", "3.1.bias", "3.2.weight", "3.2.bias" }, names)
      assert.equal(m[3][2].weight, m:parameters()[5])
      assert.equal(3, #m)
    end)

    it("a shared parameter is listed once", function()
      local lin = nn.Linear(3, 3)
      local m = nn.Sequential(lin, nn.ReLU(), lin)
      assert.equal(2, #m:parameters())
      assert.equal(12, m:num_parameters())
    end)

    it("forward and __call; Sequential chains its children", function()
      local m = nn.Sequential(nn.Linear(2, 2, { generator = gen(1) }), nn.ReLU())
      local x = T.tensor({ { 1, -1 } })
      local want = nn.linear(x, m[1].weight, m[1].bias):relu()
      assert(T.equal(want, m(x)))
      assert(T.equal(want, m:forward(x)))
      assert.equal("Sequential(\n  (1): Linear(in_features=2, out_features=2, bias=true)\n" ..
        "  (2): ReLU()\n)", tostring(m))
    end)

    it("zero_grad drops every parameter's gradient", function()
      local m = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
      m(T.ones(4, 3)):sum():backward()
      for _, p in ipairs(m:parameters()) do assert.is_not_nil(p.grad) end
      m:zero_grad()
      for _, p in ipairs(m:parameters()) do assert.is_nil(p.grad) end
    end)

    describe("kept gradients (zero_grad(false))", function()
      -- loss = sum(x w^T + b) has d/dw[i][j] = sum over rows r of x[r][j]
      -- and d/db[i] = the number of rows, whatever w and b hold
      local X = { { 1, 2, 3 }, { -4, 0.5, 2 } }
      local GW = { { -3, 2.5, 5 }, { -3, 2.5, 5 } }
      local function expect(t, rows, k)
        for i, row in ipairs(rows) do
          for j, v in ipairs(row) do assert.are.equal(k * v, t:get(i, j)) end
        end
      end
      for _, dt in ipairs(dtypes) do
        it("are added into in place, step after step (" .. dt .. ")", function()
          local m = nn.Linear(3, 2, { generator = gen(2), dtype = dt })
          local x = T.tensor(X, { dtype = dt })
          m(x):sum():backward() -- the first: new gradients
          local gw, gb = m.weight.grad, m.bias.grad
          expect(gw, GW, 1)
          m:zero_grad(false)
          assert.is_true(rawequal(gw, m.weight.grad) and rawequal(gb, m.bias.grad))
          expect(gw, GW, 0)
          m(x):sum():backward()
          assert.is_true(rawequal(gw, m.weight.grad) and rawequal(gb, m.bias.grad))
          expect(gw, GW, 1)
          assert.are.same({ 2, 2 }, gb:totable())
          m(x):sum():backward() -- no zeroing: they accumulate
          m(x):sum():backward()
          expect(gw, GW, 3)
          assert.are.same({ 6, 6 }, gb:totable())
        end)
      end

      it("that do not fit are added to as before", function()
        local m = nn.Linear(3, 2, { generator = gen(2) })
        local x = T.tensor(X, { dtype = "float32" })
        m.weight.grad = T.ones(3, 2):t() -- not contiguous
        m.bias.grad = T.ones(2, 2):select(2, 1) -- a column: stride 2
        m(x):sum():backward()
        expect(m.weight.grad, { { -2, 3.5, 6 }, { -2, 3.5, 6 } }, 1)
        assert.are.same({ 3, 3 }, m.bias.grad:totable())
        -- a gradient that is the input itself: the input is read first
        local w = T.tensor({ { 1, 2, 3 }, { -4, 0.5, 2 } }, { dtype = "float32" })
        local lin = nn.Linear(3, 2, { generator = gen(2) })
        lin.weight.grad = w
        lin(w):sum():backward()
        expect(w, { { -2, 4.5, 8 }, { -7, 3, 7 } }, 1)
      end)

      it("leave a rule that a script put in place its contract", function()
        local autograd = require("pbt.autograd")
        local builtin, seen = autograd.rules.linear, {}
        autograd.rules.linear = function(n, g) -- clips every gradient to [-1, 1]
          local gx, gw, gb = builtin(n, g)
          seen[#seen + 1] = gw ~= nil and gb ~= nil
          return gx, gw and gw:clamp(-1, 1), gb and gb:clamp(-1, 1)
        end
        local ok, err = pcall(function()
          local m = nn.Linear(3, 2, { generator = gen(2) })
          local x = T.tensor(X, { dtype = "float32" })
          m(x):sum():backward()
          m:zero_grad(false)
          m(x):sum():backward()
          expect(m.weight.grad, { { -1, 1, 1 }, { -1, 1, 1 } }, 1)
          assert.are.same({ 1, 1 }, m.bias.grad:totable())
        end)
        autograd.rules.linear = builtin
        assert(ok, err)
        assert.are.same({ true, true }, seen)
      end)

      it("zero_grad(false) keeps each gradient and zeroes it; other values are refused",
        function()
          local m = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
          m(T.ones(4, 3)):sum():backward()
          local before = {}
          for i, p in ipairs(m:parameters()) do before[i] = p.grad end
          m:zero_grad(false)
          for i, p in ipairs(m:parameters()) do
            assert.is_true(rawequal(before[i], p.grad))
            assert.are.equal(0, p.grad:abs():sum():item())
          end
          assert.are.equal("zero_grad: set_to_none must be a boolean, got string",
            error_of(m.zero_grad, m, "false"))
          m:zero_grad(true)
          for _, p in ipairs(m:parameters()) do assert.is_nil(p.grad) end
          m:zero_grad(false) -- no gradients: nothing to keep
          for _, p in ipairs(m:parameters()) do assert.is_nil(p.grad) end
          -- a released gradient: refused before any other is zeroed
          m(T.ones(4, 3)):sum():backward()
          local ps = m:parameters()
          getmetatable(ps[3].grad).__close(ps[3].grad) -- releases it
          assert.are.equal("zero_grad: the gradient of parameter 3 has been released",
            error_of(m.zero_grad, m, false))
          assert.is_true(ps[1].grad:abs():sum():item() > 0)
        end)
    end)

    it("train() and eval() set training recursively; Dropout is off in eval mode", function()
      local drop = nn.Dropout(0.5, { generator = gen(1) })
      local m = nn.Sequential(nn.Linear(4, 4), nn.Sequential(drop))
      assert.is_true(m.training and drop.training)
      assert.equal(m, m:eval())
      assert.is_false(m.training or m[1].training or m[2].training or drop.training)
      local x = T.ones(100, 100)
      assert.equal(x, drop(x)) -- the identity
      m:train()
      assert.is_true(drop.training)
      local y = drop(x)
      local kept = y:ne(0):sum():item()
      assert.is_true(kept > 4500 and kept < 5500) -- 10000 draws, p = 0.5
      assert(T.equal(y:ne(0) * 2, y)) -- the kept values are scaled by 1 / (1 - p)
      -- the same generator seed gives the same mask
      local a = nn.Dropout(0.3, { generator = gen(5) })(x)
      local b = nn.Dropout(0.3, { generator = gen(5) })(x)
      assert(T.equal(a, b))
      assert.equal(x, nn.Dropout(0)(x))
      assert(T.equal(T.zeros(3, 3), nn.Dropout(1)(T.ones(3, 3))))
      assert_error_ends(function() nn.Dropout(1.5) end, "Dropout: probability must be in [0, 1], got 1.5")
    end)

    it("state_dict holds references; load_state_dict copies and round-trips", function()
      local a = nn.Sequential(nn.Linear(4, 3, { generator = gen(1) }), nn.ReLU(),
        nn.LayerNorm(3))
      local b = nn.Sequential(nn.Linear(4, 3, { generator = gen(2) }), nn.ReLU(),
        nn.LayerNorm(3))
      local sd = a:state_dict()
      local keys = {}
      for k in pairs(sd) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.same({ "1.bias", "1.weight", "3.bias", "3.weight" }, keys)
      assert.equal(a[1].weight, sd["1.weight"]) -- a reference, as in PyTorch
      assert(not T.equal(a[1].weight, b[1].weight))
      local wb = b[1].weight
      assert.equal(b, b:load_state_dict(sd))
      assert.equal(wb, b[1].weight) -- copied into the existing tensor
      assert(T.equal(a[1].weight, b[1].weight) and T.equal(a[1].bias, b[1].bias))
      assert.are_not.equal(a[1].weight, b[1].weight)
      assert.is_true(b[1].weight.requires_grad)
      -- a snapshot of clones, loaded back after training changed the weights
      local snap = {}
      for k, v in pairs(a:state_dict()) do snap[k] = v:clone() end
      pbt.no_grad(function() a[1].weight:fill_(7) end)
      a:load_state_dict(snap)
      assert(T.equal(snap["1.weight"], a[1].weight))
      -- float64 entries are converted into the float32 tensors
      local sd64 = {}
      for k, v in pairs(snap) do sd64[k] = v:astype("float64") end
      a:load_state_dict(sd64)
      assert.equal("float32", a[1].weight:dtype())
    end)

    it("load_state_dict names a missing, mis-shaped or unexpected entry and copies nothing", function()
      local m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
      local before = m[1].weight:clone()
      local sd = {}
      for k, v in pairs(m:state_dict()) do sd[k] = v:detach():clone():fill_(1) end
      sd["1.weight"] = nil
      assert_error_ends(function() m:load_state_dict(sd) end,
        "load_state_dict: missing entry '1.weight'")
      sd["1.weight"] = T.zeros(3, 4)
      assert_error_ends(function() m:load_state_dict(sd) end,
        "load_state_dict: '1.weight' has shape [3,4], expected [4,3]")
      sd["1.weight"] = T.zeros(4, 3)
      sd["3.weight"] = T.zeros(1)
      assert_error_ends(function() m:load_state_dict(sd) end,
        "load_state_dict: unexpected entry '3.weight'")
      assert(T.equal(before, m[1].weight)) -- nothing copied by the failed calls
      sd["1.bias"] = "x"
      assert_error_ends(function() m:load_state_dict(sd, { strict = false }) end,
        "load_state_dict: '1.bias' is a string, expected a tensor")
      sd["1.bias"] = nil
      m:load_state_dict(sd, { strict = false }) -- missing and unexpected entries allowed
      assert(T.equal(T.zeros(4, 3), m[1].weight))
    end)

    it("a custom module in a few lines of Lua", function()
      local Net = nn.Module:extend("Net")
      function Net:init(n_in, n_hidden, opts)
        self.fc1 = nn.Linear(n_in, n_hidden, opts)
        self.fc2 = nn.Linear(n_hidden, 1, opts)
        self.scale = T.ones(1):requires_grad_() -- a leaf that requires grad: a parameter
        self.steps = 0                          -- a plain field
        self:register_buffer("calls", T.zeros(1))
      end
      function Net:forward(x)
        self.steps = self.steps + 1
        return self.fc2(self.fc1(x):tanh()) * self.scale
      end
      local net = Net(3, 4, { generator = gen(1) })
      local names = {}
      for i, p in ipairs(net:named_parameters()) do names[i] = p[1] end
      assert.same({ "scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias" }, names)
      assert.equal(1 + 16 + 5, net:num_parameters())
      local y = net(T.ones(2, 3))
      assert.same({ 2, 1 }, y:shape())
      assert.equal(1, net.steps)
      y:sum():backward()
      assert.is_not_nil(net.scale.grad)
      assert.is_not_nil(net.fc1.weight.grad)
      local sd = net:state_dict()
      assert.equal(net.calls, sd.calls) -- buffers are in the state_dict, not in parameters()
      assert.is_not_nil(sd["fc2.bias"])
      assert.equal("Net", net.__name)
      -- in a Sequential, named by position
      local seq = nn.Sequential(Net(3, 2), nn.Sigmoid())
      assert.equal("1.fc1.weight", seq:named_parameters()[2][1])
      -- replacing and removing entries
      net.fc2 = nn.Linear(4, 2)
      assert.equal(1 + 16 + 10, net:num_parameters())
      net.scale = nil
      assert.equal(16 + 10, net:num_parameters())
      assert_error_ends(function() net.fc1 = T.zeros(2) end,
        "cannot assign a tensor that does not require grad to submodule 'fc1' of a Net " ..
        "(a parameter takes a leaf tensor that requires grad, a submodule takes a module)")
      -- explicit registration; subclasses inherit methods
      local Sub = Net:extend("Sub")
      function Sub:init() Net.init(self, 2, 2); self:register_parameter("extra", T.zeros(2)) end
      local s = Sub()
      assert.is_true(s.extra.requires_grad)
      assert.equal("extra", s:named_parameters()[2][1])
      assert.same({ 1, 1 }, s(T.ones(1, 2)):shape())
      s:add_module("head", nn.Linear(1, 1))
      assert.equal(s.head, s:children()[3])
      assert_error_ends(function() s:add_module("x", 3) end, "add_module: a module expected, got number")
    end)
  end)
end)

describe("backward's walk in C of the built-in rules", function()
  local autograd = require("pbt.autograd")
  local optim = require("pbt.optim")
  local ops = { "linear", "linear_relu", "relu", "gelu", "cross_entropy", "conv2d", "max_pool2d",
    "flatten", "view", "reshape", "dropout", "layer_norm", "tanh", "sigmoid" }

  -- Runs fn with every built-in rule of ops behind a wrapper: rules[op] is
  -- then not the built-in one, so backward makes the node table and calls
  -- the rule in Lua (the walk as it was); returns how many times they ran.
  local function through_lua_rules(fn)
    local saved, calls, ip_rules = {}, 0, {}
    for _, op in ipairs(ops) do
      local r = autograd.rules[op]
      saved[op] = r
      autograd.rules[op] = function(n, g)
        calls = calls + 1
        return r(n, g)
      end
    end
    for _, op in ipairs({ "linear", "linear_relu" }) do
      local ip = autograd.in_place[op]
      ip_rules[op] = ip.rule
      ip.rule = autograd.rules[op] -- kept gradients: in_place's run, called from Lua
    end
    local ok, err = pcall(fn)
    for op, r in pairs(saved) do autograd.rules[op] = r end
    for op, r in pairs(ip_rules) do autograd.in_place[op].rule = r end
    assert(ok, err)
    return calls
  end

  local function grads_of(params)
    local out = {}
    for i, p in ipairs(params) do out[i] = p.grad and p.grad:totable() or false end
    return out
  end

  -- Each model: a module (or a function of x) and the parameters to train.
  local function trainable(m)
    local out = {}
    for _, p in ipairs(m:parameters()) do
      if p.requires_grad then out[#out + 1] = p end
    end
    return m, out
  end
  local function mlp(dt)
    return trainable(nn.Sequential(nn.Linear(6, 8, { generator = gen(4), dtype = dt }), nn.ReLU(),
      nn.Linear(8, 8, { generator = gen(5), dtype = dt }), nn.GELU(),
      nn.Linear(8, 3, { generator = gen(6), dtype = dt })))
  end
  local function cnn(dt, bias)
    return trainable(nn.Sequential(
      nn.Conv2d(1, 2, 3, { padding = 1, generator = gen(7), dtype = dt, bias = bias }),
      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
      nn.Linear(8, 3, { generator = gen(8), dtype = dt, bias = bias })))
  end
  local function residual(dt) -- h2 = h1 + relu(l2(h1)): add's rule hands g to both
    local l1 = nn.Linear(6, 8, { generator = gen(4), dtype = dt })
    local l2 = nn.Linear(8, 8, { generator = gen(5), dtype = dt })
    local l3 = nn.Linear(8, 3, { generator = gen(6), dtype = dt })
    local seq = nn.Sequential(l1, l2, l3)
    return function(x)
      local h1 = l1(x)
      return l3(h1 + l2(h1):relu())
    end, seq:parameters()
  end
  local function frozen(which)
    return function(dt)
      local m = nn.Sequential(nn.Linear(6, 8, { generator = gen(4), dtype = dt }), nn.ReLU(),
        nn.Linear(8, 3, { generator = gen(6), dtype = dt }))
      m[1][which]:requires_grad_(false)
      m[3][which]:requires_grad_(false)
      return trainable(m)
    end
  end
  local cases = {
    { "an MLP (linear, relu, gelu, cross_entropy)", mlp, { 5, 6 } },
    { "a CNN (conv2d, relu, max_pool2d, flatten, linear)", cnn, { 4, 1, 4, 4 } },
    { "a CNN without biases", function(dt) return cnn(dt, false) end, { 4, 1, 4, 4 } },
    { "a residual block (add between built-in ops)", residual, { 5, 6 } },
    { "linear layers with frozen weights", frozen("weight"), { 5, 6 } },
    { "linear layers with frozen biases", frozen("bias"), { 5, 6 } },
    { "pbt's own Lua rules (dropout, layer_norm, tanh, sigmoid)", function(dt)
      return trainable(nn.Sequential(nn.Linear(6, 8, { generator = gen(4), dtype = dt }),
        nn.Dropout(0.3, { generator = gen(11) }), nn.LayerNorm(8, { dtype = dt }), nn.Tanh(),
        nn.Linear(8, 8, { generator = gen(5), dtype = dt }), nn.Sigmoid(),
        nn.Linear(8, 3, { generator = gen(6), dtype = dt })))
    end, { 5, 6 } },
  }

  for _, dt in ipairs(dtypes) do
    for _, case in ipairs(cases) do
      it("gives the Lua rules' gradients, to the bit: " .. case[1] .. " (" .. dt .. ")", function()
        -- three steps of SGD with kept gradients, the input requiring grad
        -- too and used twice (its gradients add up), then fresh gradients
        local function run(lua)
          local m, params = case[2](dt)
          local x = randn(case[3], 9, dt):requires_grad_()
          local y = ({ 1, 3, 2, 1, 3 })
          y[case[3][1] + 1] = nil
          local opt = optim.SGD(params, { lr = 0.1, momentum = 0.9 })
          local seen, calls = {}, 0
          local function step()
            local h = x:reshape(x:shape()):view(x:shape())
            local loss = nn.cross_entropy(m(h), y) + nn.cross_entropy(m(x), y)
            loss:backward()
            seen[#seen + 1] = grads_of(params)
            seen[#seen + 1] = x.grad:totable()
            opt:step()
          end
          local function all()
            for _ = 1, 3 do
              opt:zero_grad(false)
              x.grad = nil
              step()
            end
            opt:zero_grad()
            x.grad = nil
            step()
          end
          if lua then calls = through_lua_rules(all) else all() end
          return seen, calls
        end
        local c_grads, c_calls = run(false)
        local lua_grads, lua_calls = run(true)
        assert.are.equal(0, c_calls)
        assert.is_true(lua_calls > 0)
        assert.are.same(lua_grads, c_grads)
        for i = 1, #c_grads[1] do -- every parameter got a gradient
          assert.is_table(c_grads[1][i])
          assert.is_table(c_grads[#c_grads - 1][i])
        end
      end)
    end
  end

  it("releases only the gradients it made and used up: a Lua rule keeps what it is given",
    function()
      -- keep_g's rule keeps its gradient (the sum of two linear kernels'
      -- results for h, made by the walk); the walk must not release it
      local kept
      autograd.rules.keep_g = function(_, g)
        kept = g
        return g
      end
      local ok, err = pcall(function()
        local lin1 = nn.Linear(3, 2, { generator = gen(2), dtype = "float64" })
        local lin2 = nn.Linear(3, 2, { generator = gen(3), dtype = "float64" })
        local lin0 = nn.Linear(3, 3, { generator = gen(4), dtype = "float64", bias = false })
        local x0 = randn({ 4, 3 }, 3):requires_grad_()
        local x = lin0(x0) -- a built-in op gets keep_g's gradient next
        local h = pbt.no_grad(function() return x * 1 end)
        autograd.record("keep_g", 1, h, x)
        local loss = (lin1(h):relu() + lin2(h)):sum()
        loss:backward()
        -- d loss / dh = relu'(lin1 h) W1 + W2, row by row; d loss / dx0 = that W0
        local mask = pbt.no_grad(function() return lin1(h):gt(0):astype("float64") end)
        local want = mask:matmul(lin1.weight:detach()) + T.ones(4, 2, { dtype = "float64" })
          :matmul(lin2.weight:detach())
        assert.are.same(want:totable(), kept:totable())
        local want0 = want:matmul(lin0.weight:detach())
        assert.is_true(T.allclose(want0, x0.grad, 1e-12, 1e-12))
      end)
      autograd.rules.keep_g = nil
      assert(ok, err)
    end)

  it("keeps its working tables between calls: an error mid-walk or a backward inside a rule "
    .. "leaves nothing behind", function()
    local lin = nn.Linear(3, 2, { generator = gen(2), dtype = "float64" })
    local x = randn({ 4, 3 }, 3)
    local function grads()
      lin:zero_grad()
      lin(x):relu():sum():backward()
      return { lin.weight.grad:totable(), lin.bias.grad:totable() }
    end
    local want = grads()
    -- a rule that a script wrapped around an op: `wrap` records y = h (a copy) as op `name`
    local function wrap(name, h)
      local y = pbt.no_grad(function() return h * 1 end)
      autograd.record(name, 1, y, h)
      return y
    end
    local inner
    autograd.rules.boom = function() error("boom", 0) end
    autograd.rules.nested = function(_, g)
      local z = T.ones(2, { dtype = "float64" }):requires_grad_()
      local prev = pbt.set_grad_enabled(true) -- rules run with recording off
      local zz = (z * 3):sum()
      pbt.set_grad_enabled(prev)
      zz:backward()
      inner = z.grad:totable()
      return g
    end
    local ok, err = pcall(function()
      -- relu's kernel has made a gradient for y when boom's rule raises
      local ok2, err2 = pcall(function() wrap("boom", lin(x)):relu():sum():backward() end)
      assert.is_false(ok2)
      assert.are.equal("boom", err2)
      assert.are.same(want, grads())
      lin:zero_grad()
      wrap("nested", lin(x)):relu():sum():backward()
      assert.are.same({ 3, 3 }, inner)
      assert.are.same(want, { lin.weight.grad:totable(), lin.bias.grad:totable() })
      assert.are.same(want, grads())
    end)
    autograd.rules.boom, autograd.rules.nested = nil, nil
    assert(ok, err)
  end)

  it("checks the versions of ops kept in user values: an argument, the result", function()
    local lin = nn.Linear(3, 2, { generator = gen(2), dtype = "float64" })
    local x = randn({ 4, 3 }, 3)
    local h = lin(x)
    local r = h:relu()
    pbt.no_grad(function() h:add_(1) end)
    local ok, err = pcall(function() r:sum():backward() end)
    assert.is_false(ok)
    assert.matches("backward: argument 1 of 'relu' was changed in place after 'relu' used it",
      tostring(err), 1, true)
    r = lin(x):relu()
    pbt.no_grad(function() r:mul_(2) end)
    ok, err = pcall(function() r:sum():backward() end)
    assert.is_false(ok)
    assert.matches("backward: the result of 'relu' was changed in place after it was computed",
      tostring(err), 1, true)
    -- the weight, changed by a step before backward
    local loss = lin(x):sum()
    pbt.no_grad(function() lin.weight:mul_(2) end)
    ok, err = pcall(function() loss:backward() end)
    assert.is_false(ok)
    assert.matches("backward: argument 2 of 'linear' was changed in place", tostring(err), 1, true)
  end)

  it("calls a script's in_place.linear.run as it is, with the kept gradients", function()
    local ip = autograd.in_place.linear
    local run, calls = ip.run, 0
    ip.run = function(n, g)
      calls = calls + 1
      return run(n, g)
    end
    local ok, err = pcall(function()
      local lin = nn.Linear(3, 2, { generator = gen(2), dtype = "float64" })
      local x = T.tensor({ { 1, 2, 3 }, { -4, 0.5, 2 } }, { dtype = "float64" })
      lin(x):sum():backward()
      local gw = lin.weight.grad
      lin:zero_grad(false)
      lin(x):sum():backward()
      assert.is_true(rawequal(gw, lin.weight.grad))
      assert.are.same({ { -3, 2.5, 5 }, { -3, 2.5, 5 } }, gw:totable())
      assert.are.same({ 2, 2 }, lin.bias.grad:totable())
    end)
    ip.run = run
    assert(ok, err)
    assert.are.equal(2, calls)
  end)

  it("names a released leaf argument", function()
    local a = randn({ 3 }, 1):requires_grad_()
    local b = randn({ 3 }, 2)
    local y = (a + b):relu():sum()
    getmetatable(a).__close(a)
    local ok, err = pcall(function() y:backward() end)
    assert.is_false(ok)
    assert.are.equal("backward: argument 1 of 'add' has been released", tostring(err))
    -- a built-in op's leaf argument, given a fresh gradient
    local lin = nn.Linear(3, 2, { generator = gen(2), dtype = "float64" })
    local loss = lin(randn({ 4, 3 }, 3)):sum()
    getmetatable(lin.bias).__close(lin.bias)
    ok, err = pcall(function() loss:backward() end)
    assert.is_false(ok)
    assert.are.equal("backward: argument 3 of 'linear' has been released", tostring(err))
    -- and one that has a .grad the kernel cannot add into (a column: stride 2)
    lin = nn.Linear(3, 2, { generator = gen(2), dtype = "float64" })
    loss = lin(randn({ 4, 3 }, 3)):sum()
    lin.bias.grad = T.zeros(2, 2, { dtype = "float64" }):select(2, 1)
    getmetatable(lin.bias).__close(lin.bias)
    ok, err = pcall(function() loss:backward() end)
    assert.is_false(ok)
    assert.are.equal("backward: argument 3 of 'linear' has been released", tostring(err))
  end)

  it("refuses a setting of the wrong kind and a rule that gives a released tensor", function()
    local core = require("pbt.core")
    local ok, err = pcall(core.backward_env, { rules = {}, fresh = {}, in_place = {},
      reads_no_values = {}, builtin = 5, add_ = T.add_, clone = T.clone })
    assert.is_false(ok)
    assert.matches("backward_env: env.builtin must be a table, got number", err, 1, true)
    ok, err = pcall(core.backward_env, { rules = {} })
    assert.is_false(ok)
    assert.matches("backward_env: env.fresh must be a table, got nil", err, 1, true)
    autograd.rules.gone = function(n)
      local r = n.args[1]:clone()
      getmetatable(r).__close(r)
      return r
    end
    ok, err = pcall(function()
      local x = randn({ 3 }, 1):requires_grad_()
      local y = pbt.no_grad(function() return x * 1 end)
      autograd.record("gone", 1, y, x)
      y:sum():backward()
    end)
    autograd.rules.gone = nil
    assert.is_false(ok)
    assert.are.equal("backward: the rule of 'gone' gave a released tensor for its argument 1",
      tostring(err))
  end)

  it("names a released argument of a built-in op", function()
    local lin = nn.Linear(3, 2, { generator = gen(2), dtype = "float64" })
    local x = randn({ 4, 3 }, 3)
    local loss = lin(x):relu():sum()
    getmetatable(x).__close(x) -- released
    local ok, err = pcall(function() loss:backward() end)
    assert.is_false(ok)
    assert.are.equal("backward: argument 1 of 'linear' has been released", tostring(err))
  end)
end)

describe("nn.Sequential frees its layers' outputs once backward has used them", function()
  local released = pbt.core.is_released

  local function mlp(seed)
    local g = gen(seed or 1)
    return nn.Sequential(nn.Linear(3, 4, { generator = g, dtype = "float64" }), nn.ReLU(),
      nn.Linear(4, 4, { generator = g, dtype = "float64" }), nn.Tanh(),
      nn.Linear(4, 2, { generator = g, dtype = "float64" }))
  end

  -- the inputs of the ops of out's graph (out = linear(tanh(linear(linear_relu(x)))):
  -- the first Linear and its ReLU run as one op)
  local function inside(out)
    local a2 = out.grad_fn[1] -- tanh's output
    local h2 = a2.grad_fn[1]
    local a1 = h2.grad_fn[1]
    assert.are.equal("linear_relu", a1.grad_fn.op)
    return { a1, h2, a2 }
  end

  it("frees the outputs inside, not the input, the result or the loss", function()
    local m, x = mlp(), randn({ 5, 3 }, 2)
    local out = m(x)
    local mids = inside(out)
    local loss = out:sum()
    loss:backward()
    for i, t in ipairs(mids) do
      local gone, by_walk = released(t)
      assert.is_true(gone, "output " .. i)
      assert.is_true(by_walk, "output " .. i)
    end
    assert.is_false(released(x))
    assert.is_false(released(out))
    assert.is_false(released(loss))
    assert.are.equal(5 * 2, out:numel()) -- still readable
    local err = error_of(function() return mids[1] + 1 end)
    assert.truthy(err:find("released", 1, true), err)
  end)

  it("gives the gradients of a kept graph, to the bit", function()
    local m1, m2 = mlp(3), mlp(3)
    local x = randn({ 5, 3 }, 4)
    m1(x):sum():backward()
    m2(x):sum():backward({ retain_graph = true })
    local p1, p2 = m1:parameters(), m2:parameters()
    for i = 1, #p1 do assert.are.equal(0, (p1[i].grad - p2[i].grad):abs():max():item()) end
  end)

  it("names retain_graph on a second backward; with it, the second one adds up", function()
    local m, x = mlp(5), randn({ 5, 3 }, 6)
    local loss = m(x):sum()
    loss:backward()
    local err = error_of(function() loss:backward() end)
    assert.truthy(err:find("was freed by an earlier backward", 1, true), err)
    assert.truthy(err:find("retain_graph = true", 1, true), err)

    -- kept: a second backward gives twice the gradient of one (the graph is
    -- the same, the sums are of equal terms)
    local ref, twice = mlp(7), mlp(7)
    ref(x):sum():backward()
    local l2 = twice(x):sum()
    l2:backward(nil, { retain_graph = true })
    l2:backward()
    local pr, pt = ref:parameters(), twice:parameters()
    for i = 1, #pr do assert_close(pr[i].grad * 2, pt[i].grad, 1e-12) end
    -- then freed: a third one fails
    local third = error_of(function() l2:backward() end)
    assert.truthy(third:find("freed by an earlier backward", 1, true), third)
  end)

  it("refuses a second backward through a freed graph before it adds any gradient", function()
    local m, x = mlp(16), randn({ 5, 3 }, 17)
    local w = leaf({ 3 }, 18)
    -- mul's rule runs first: without the check before the walk, w.grad and
    -- the last layer's gradients were added to before the freed output was met
    local loss = m(x):sum() * (w * w):sum()
    loss:backward()
    local before = { w.grad:clone() }
    for _, p in ipairs(m:parameters()) do before[#before + 1] = p.grad:clone() end
    local err = error_of(function() loss:backward() end)
    assert.truthy(err:find("was freed by an earlier backward", 1, true), err)
    assert.are.same(before[1]:totable(), w.grad:totable())
    for i, p in ipairs(m:parameters()) do
      assert.are.same(before[i + 1]:totable(), p.grad:totable())
    end
  end)

  it("takes the options table in the place of grad or after it, and checks it", function()
    local m, x = mlp(8), randn({ 5, 3 }, 9)
    local out = m(x)
    out:backward(T.ones_like(out), { retain_graph = true })
    out:sum():backward({ retain_graph = false })
    local l = m(x):sum()
    assert.are.equal("backward: unknown option 'retain_grap' (did you mean 'retain_graph'?)",
      error_of(function() l:backward({ retain_grap = true }) end):gsub("^.-:%d+: ", ""))
    assert.are.equal("backward: retain_graph must be a boolean, got number",
      error_of(function() l:backward(nil, { retain_graph = 1 }) end):gsub("^.-:%d+: ", ""))
    -- a table of numbers is a mistaken grad, not options
    assert.are.equal("bad argument #1 to 'backward' (pbt.Tensor expected, got table)",
      error_of(function() out:backward({ 1, 1 }) end):gsub("^.-:%d+: ", ""))
  end)

  it("keeps what a script's layer may keep and what an identity layer hands on", function()
    local g = gen(10)
    local Keep = nn.Module:extend("Keep")
    function Keep:forward(x) self.seen = x return x:relu() end
    local keep = Keep()
    local lin = nn.Linear(4, 4, { generator = g, dtype = "float64" })
    local m = nn.Sequential(nn.Linear(3, 4, { generator = g, dtype = "float64" }), keep, lin,
      nn.Dropout(0.5))
    m:eval() -- the last layer hands its input on: the result is lin's output
    local x = randn({ 5, 3 }, 11)
    local out = m(x)
    local after_keep = out.grad_fn[1] -- keep's output, lin's input
    out:sum():backward()
    assert.is_false(released(keep.seen)) -- seen by a layer of the script's own
    assert.is_false(released(after_keep)) -- made by it
    assert.is_false(released(out)) -- the result, though an identity layer gave it
    assert.is_true(T.allclose(keep.seen:relu(), after_keep))

    -- a built-in layer with a forward of its own is the script's
    local lin2 = nn.Linear(3, 4, { generator = g, dtype = "float64" })
    local kept
    lin2.forward = function(self, x) kept = x return nn.linear(x, self.weight, self.bias) end
    local m2 = nn.Sequential(nn.Linear(3, 3, { generator = g, dtype = "float64" }), lin2, nn.ReLU())
    m2(x):sum():backward()
    assert.is_false(released(kept))

    -- an identity layer first hands on the Sequential's own input
    local m3 = nn.Sequential(nn.Dropout(0), nn.Linear(3, 2, { generator = g, dtype = "float64" }))
    m3(x):sum():backward()
    assert.is_false(released(x))
  end)

  it("frees a view of its input (not the input) and a nested Sequential's result", function()
    local g = gen(12)
    local x = leaf({ 2, 3, 2 }, 13)
    local inner = nn.Sequential(nn.Linear(6, 4, { generator = g, dtype = "float64" }), nn.ReLU())
    local m = nn.Sequential(nn.Flatten(), inner,
      nn.Linear(4, 1, { generator = g, dtype = "float64" }))
    local out = m(x)
    local relu_out = out.grad_fn[1] -- (inner's Linear and ReLU: one op, linear_relu)
    local view = relu_out.grad_fn[1]
    assert.are.equal("linear_relu", relu_out.grad_fn.op)
    out:sum():backward()
    assert.is_true(released(view))
    assert.is_true(released(relu_out)) -- the inner Sequential's result, inside the outer one
    assert.is_false(released(x))
    assert.are.same({ 2, 3, 2 }, x.grad:shape())
    assert.are.equal(12, x:numel())
  end)

  it("does not free the tensor backward starts from", function()
    local m, x = mlp(14), randn({ 5, 3 }, 15)
    local out = m(x)
    local a2 = out.grad_fn[1]
    a2:backward(T.ones_like(a2))
    assert.is_false(released(a2))
    assert.is_true(released(a2.grad_fn[1]))
  end)
end)

describe("pbt.nn argument errors name the function and the argument", function()
  local pbt = require("pbt")
  local nn, T = pbt.nn, pbt.tensor
  local l = T.randn(2, 3)
  local cases = {
    { function() nn.cross_entropy(l, { 1, "x" }) end, "cross_entropy: label 2 must be a number, got string" },
    { function() nn.cross_entropy(l, nil) end, "cross_entropy: labels must be a pbt.Tensor or a table, got nil" },
    { function() nn.cross_entropy(nil, { 1, 2 }) end, "cross_entropy: logits must be a pbt.Tensor, got nil" },
    { function() nn.linear(nil, T.randn(2, 3)) end, "linear: input must be a pbt.Tensor, got nil" },
    { function() nn.linear(T.tensor(1), T.randn(2, 3)) end,
      "linear: input must have at least 1 dimension, got a 0-d tensor" },
    { function() nn.linear(l, T.randn(3)) end, "linear: weight must be 2-d, got 1-d" },
    { function() nn.layer_norm(l) end, "layer_norm: normalized_shape must be a size or a table of sizes, got nil" },
    { function() nn.dropout(l) end, "dropout: p must be a number, got nil" },
    { function() nn.embedding({ 1 }, T.randn(3)) end, "embedding: weight must be 2-d, got 1-d" },
    { function() nn.accuracy(T.randn(3), { 1 }) end, "accuracy: logits must be 2-d, got 1-d" },
  }
  for k, c in ipairs(cases) do
    it("case " .. k .. ": " .. c[2], function() assert.has_error(c[1], c[2]) end)
  end
end)

describe("nn.Sequential runs a Linear and the ReLU after it as one op (linear_relu)", function()
  local optim = require("pbt.optim")
  local C = pbt.core.nn

  local function mlp(dt, seed)
    local g = gen(seed)
    return nn.Sequential(nn.Linear(6, 8, { generator = g, dtype = dt }), nn.ReLU(),
      nn.Linear(8, 8, { generator = g, dtype = dt }), nn.ReLU(),
      nn.Linear(8, 3, { generator = g, dtype = dt }))
  end
  -- the same layers called one after the other (no Sequential: nothing fused)
  local function by_layers(m, x)
    for i = 1, #m do x = m[i](x) end
    return x
  end

  for _, dt in ipairs(dtypes) do
    it("gives the two layers' values and gradients, to the bit (" .. dt .. ")", function()
      local function run(fused)
        local m = mlp(dt, 21)
        local x = randn({ 5, 6 }, 22, dt):requires_grad_()
        local opt = optim.SGD(m:parameters(), { lr = 0.1, momentum = 0.9 })
        local seen = {}
        for step = 1, 3 do
          if step < 3 then opt:zero_grad(false) else opt:zero_grad() end -- kept, then fresh
          x.grad = nil
          local out = fused and m(x) or by_layers(m, x)
          if fused then assert.are.equal("linear", out.grad_fn.op) end
          nn.cross_entropy(out, { 1, 3, 2, 1, 3 }):backward()
          seen[#seen + 1] = out:totable()
          seen[#seen + 1] = x.grad:totable()
          for _, p in ipairs(m:parameters()) do seen[#seen + 1] = p.grad:totable() end
          opt:step()
        end
        return seen
      end
      assert.are.same(run(false), run(true))
    end)
  end

  it("is one node: the Sequential's hidden layers are linear_relu, its result linear", function()
    local m = mlp("float64", 23)
    local out = m(randn({ 2, 6 }, 24))
    local h2 = out.grad_fn[1]
    local h1 = h2.grad_fn[1]
    assert.are.equal("linear_relu", h2.grad_fn.op)
    assert.are.equal("linear_relu", h1.grad_fn.op)
    assert.is_nil(h1.grad_fn[1].grad_fn) -- the input
    -- a Sequential that ends in the pair returns the fused op's result
    local last = nn.Sequential(nn.Linear(2, 2, { generator = gen(1), dtype = "float64" }),
      nn.ReLU())(randn({ 3, 2 }, 2))
    assert.are.equal("linear_relu", last.grad_fn.op)
  end)

  it("reads ReLU's gradient off its result (worked by hand)", function()
    -- x = [1, -1]; w = [[1, 0], [0, 1], [1, 1]], b = [0, 0, -1]: the product is
    -- [1, -1, -1], the result [1, 0, 0]; with an upstream gradient of ones the
    -- product's gradient is [1, 0, 0], so dw = [[1, -1], [0, 0], [0, 0]],
    -- db = [1, 0, 0], dx = [1, 0]
    local lin = nn.Linear(2, 3, { dtype = "float64" })
    pbt.no_grad(function()
      lin.weight:copy_(T.tensor({ { 1, 0 }, { 0, 1 }, { 1, 1 } }, { dtype = "float64" }))
      lin.bias:copy_(T.tensor({ 0, 0, -1 }, { dtype = "float64" }))
    end)
    local x = T.tensor({ { 1, -1 } }, { dtype = "float64" }):requires_grad_()
    local y = nn.Sequential(lin, nn.ReLU())(x)
    assert.are.same({ { 1, 0, 0 } }, y:totable())
    y:sum():backward()
    assert.are.same({ { 1, -1 }, { 0, 0 }, { 0, 0 } }, lin.weight.grad:totable())
    assert.are.same({ 1, 0, 0 }, lin.bias.grad:totable())
    assert.are.same({ { 1, 0 } }, x.grad:totable())
  end)

  it("passes gradcheck (x, weight and bias)", function()
    check(function(x, w, b) return C.linear_relu(x, w, b) end,
      { leaf({ 4, 3 }, 25), leaf({ 5, 3 }, 26), leaf({ 5 }, 27) })
    check(function(x, w) return C.linear_relu(x, w) end, { leaf({ 4, 3 }, 28), leaf({ 5, 3 }, 29) })
  end)

  it("is not used where the two layers would not be built-in ones on a 2-d input", function()
    local function last_op(m, x) return m(x).grad_fn.op end
    local g = gen(30)
    local x2, x3 = randn({ 4, 3 }, 31), randn({ 2, 4, 3 }, 32)
    local function lin() return nn.Linear(3, 3, { generator = g, dtype = "float64" }) end
    -- a ReLU with a forward of its own
    local r = nn.ReLU()
    r.forward = function(_, x) return x:relu() end
    assert.are.equal("relu", last_op(nn.Sequential(lin(), r), x2))
    -- a subclass of Linear
    local MyLinear = nn.Linear:extend("MyLinear")
    local my = MyLinear(3, 3, { generator = g, dtype = "float64" })
    assert.are.equal("relu", last_op(nn.Sequential(my, nn.ReLU()), x2))
    -- a 3-d input (Linear's batched path)
    assert.are.equal("relu", last_op(nn.Sequential(lin(), nn.ReLU()), x3))
    -- the pair the other way round
    assert.are.equal("linear", last_op(nn.Sequential(nn.ReLU(), lin()), x2))
    -- under no_grad: the fused values, and nothing recorded
    local m = nn.Sequential(lin(), nn.ReLU())
    local want = by_layers(m, x2)
    local got = pbt.no_grad(function() return m(x2) end)
    assert.is_nil(got.grad_fn)
    assert.are.same(want:totable(), got:totable())
  end)

  it("is not used while a script replaced what the two layers run", function()
    local autograd = require("pbt.autograd")
    local function straight_through(_, g) return g end -- a rule of the script's own
    local lin = nn.Linear(2, 2, { dtype = "float64" })
    pbt.no_grad(function()
      lin.weight:copy_(T.eye(2, { dtype = "float64" }))
      lin.bias:zero_()
    end)
    local m = nn.Sequential(lin, nn.ReLU())
    local x = T.tensor({ { 1, -1 } }, { dtype = "float64" }):requires_grad_()
    local function grad_of_x()
      x.grad = nil
      m(x):sum():backward()
      return x.grad:totable()
    end
    assert.are.same({ { 1, 0 } }, grad_of_x()) -- ReLU's own gradient
    local function with(tbl, key, value, fn)
      local was = tbl[key]
      tbl[key] = value
      local ok, err = pcall(fn)
      tbl[key] = was
      assert(ok, err)
    end
    -- relu's rule replaced: it is called, as for the layers one by one
    with(autograd.rules, "relu", straight_through, function()
      local out = m(x)
      assert.are.equal("relu", out.grad_fn.op)
      assert.are.same({ { 1, 1 } }, grad_of_x())
    end)
    -- linear's rule, its run for kept gradients, the tensors' relu
    local calls = 0
    local function counted(f) return function(...) calls = calls + 1; return f(...) end end
    with(autograd.rules, "linear", counted(autograd.rules.linear), function()
      assert.are.equal("relu", m(x).grad_fn.op)
    end)
    with(autograd.in_place.linear, "run", counted(autograd.in_place.linear.run), function()
      assert.are.equal("relu", m(x).grad_fn.op)
    end)
    with(pbt.core.Tensor, "relu", counted(pbt.core.Tensor.relu), function()
      assert.are.equal("relu", m(x).grad_fn.op)
    end)
    assert.are.equal(1, calls) -- (the tensors' relu, called by ReLU's forward)
    assert.are.equal("linear_relu", m(x).grad_fn.op) -- all back: fused again
  end)

  it("names the Linear in its errors", function()
    local m = nn.Sequential(nn.Linear(3, 2, { generator = gen(1) }), nn.ReLU())
    local err = error_of(function() return m(T.zeros(4, 5)) end)
    assert.truthy(err:find("linear: input of shape [4,5] does not fit weight of shape [2,3]", 1,
      true), err)
  end)
end)
