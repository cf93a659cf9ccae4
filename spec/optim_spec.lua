-- pbt.optim: SGD, Adam, AdamW, RMSprop.
-- Expected values are worked out from each optimizer's formula (PyTorch's
-- torch.optim) with plain Lua arithmetic on numbers, element by element.
local pbt = require("pbt")
local optim = require("pbt.optim")
local core = require("pbt.core")
local T = pbt.tensor

local DTYPES = { "float32", "float64" }

local function flat(t)
  local out = {}
  local function walk(x)
    if type(x) == "table" then
      for _, v in ipairs(x) do walk(v) end
    else
      out[#out + 1] = x
    end
  end
  walk(t:totable())
  return out
end

-- Asserts tensor t (or a flat table of numbers) holds the numbers of `want`
-- (a flat table), to float32 or float64 precision.
local function assert_values(t, want, dtype)
  local got = type(t) == "table" and t or flat(t)
  local tol = dtype == "float32" and 3e-6 or 1e-12
  assert.are.equal(#want, #got)
  for i = 1, #want do
    local err = math.abs(got[i] - want[i])
    if err > tol * math.max(1, math.abs(want[i])) then
      error(string.format("element %d: got %.17g, want %.17g (%s)", i, got[i], want[i], dtype), 2)
    end
  end
end

local function param(values, dtype)
  return T(values, { dtype = dtype }):requires_grad_()
end

-- The error message of fn (raised without a position).
local function error_of(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert.is_false(ok)
  return msg
end

-- Gradients of the three steps used below, for a parameter of two elements.
local P0 = { 1.0, -2.0 }
local G = { { 0.5, -1.0 }, { 0.25, 2.0 }, { -1.5, 0.75 } }

-- Runs opt over the steps of G on a fresh parameter; returns the parameter
-- after each step (flat tables).
local function run(make, dtype, nsteps, between)
  local p = param(P0, dtype)
  local opt = make({ p })
  local after = {}
  for s = 1, nsteps or #G do
    if between then between(opt, s) end
    p.grad = T(G[s], { dtype = dtype })
    opt:step()
    after[s] = flat(p)
  end
  return after, p, opt
end

-- ---- reference formulas, one element at a time ----------------------------------

-- SGD with PyTorch's momentum buffer (a copy of d on its first step).
local function sgd_ref(h, nsteps, hook)
  local p, buf = { P0[1], P0[2] }, {}
  local out = {}
  for s = 1, nsteps do
    if hook then hook(h, s) end
    for i = 1, 2 do
      local d = G[s][i] + h.weight_decay * p[i]
      if h.momentum ~= 0 then
        if buf[i] == nil then buf[i] = d
        else buf[i] = h.momentum * buf[i] + (1 - h.dampening) * d end
        if h.nesterov then d = d + h.momentum * buf[i] else d = buf[i] end
      end
      p[i] = p[i] - h.lr * d
    end
    out[s] = { p[1], p[2] }
  end
  return out
end

local function adam_ref(h, decoupled, nsteps, hook)
  local p, m, v = { P0[1], P0[2] }, { 0, 0 }, { 0, 0 }
  local out = {}
  for s = 1, nsteps do
    if hook then hook(h, s) end
    local b1, b2 = h.betas[1], h.betas[2]
    for i = 1, 2 do
      local g = G[s][i]
      if decoupled then p[i] = p[i] * (1 - h.lr * h.weight_decay)
      else g = g + h.weight_decay * p[i] end
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      local mhat = m[i] / (1 - b1 ^ s)
      local vhat = v[i] / (1 - b2 ^ s)
      p[i] = p[i] - h.lr * mhat / (math.sqrt(vhat) + h.eps)
    end
    out[s] = { p[1], p[2] }
  end
  return out
end

local function rmsprop_ref(h, nsteps, hook)
  local p, sq, ga, buf = { P0[1], P0[2] }, { 0, 0 }, { 0, 0 }, { 0, 0 }
  local out = {}
  for s = 1, nsteps do
    if hook then hook(h, s) end
    for i = 1, 2 do
      local g = G[s][i] + h.weight_decay * p[i]
      sq[i] = h.alpha * sq[i] + (1 - h.alpha) * g * g
      local avg
      if h.centered then
        ga[i] = h.alpha * ga[i] + (1 - h.alpha) * g
        avg = math.sqrt(sq[i] - ga[i] * ga[i]) + h.eps
      else
        avg = math.sqrt(sq[i]) + h.eps
      end
      if h.momentum > 0 then
        buf[i] = h.momentum * buf[i] + g / avg
        p[i] = p[i] - h.lr * buf[i]
      else
        p[i] = p[i] - h.lr * g / avg
      end
    end
    out[s] = { p[1], p[2] }
  end
  return out
end

local function with_defaults(defaults, opts)
  local h = {}
  for k, v in pairs(defaults) do h[k] = v end
  for k, v in pairs(opts) do h[k] = v end
  return h
end

local SGD_DEFAULTS = { momentum = 0, dampening = 0, nesterov = false, weight_decay = 0 }
local ADAM_DEFAULTS = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0 }
local ADAMW_DEFAULTS = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 1e-2 }
local RMSPROP_DEFAULTS = { lr = 1e-2, alpha = 0.99, eps = 1e-8, momentum = 0,
                           weight_decay = 0, centered = false }

describe("pbt.optim", function()
  it("runs under Lua 5.4", function() assert.are.equal("Lua 5.4", _VERSION) end)

  describe("first steps worked out by hand", function()
    for _, dtype in ipairs(DTYPES) do
      it("SGD, lr 0.1 (" .. dtype .. ")", function()
        local after = run(function(ps) return optim.SGD(ps, { lr = 0.1 }) end, dtype, 2)
        -- p = p - lr * g
        assert_values((after[1]), { 1 - 0.1 * 0.5, -2 - 0.1 * -1.0 }, dtype)
        assert_values((after[2]), { 1 - 0.1 * 0.5 - 0.1 * 0.25, -2 + 0.1 - 0.1 * 2.0 }, dtype)
      end)

      it("SGD, momentum 0.9 (" .. dtype .. ")", function()
        local after = run(function(ps) return optim.SGD(ps, { lr = 0.1, momentum = 0.9 }) end,
                          dtype, 2)
        -- step 1: buf = g1 = {0.5, -1}; step 2: buf = 0.9 * buf + g2
        local p1 = { 1 - 0.1 * 0.5, -2 - 0.1 * -1.0 }
        local b2 = { 0.9 * 0.5 + 0.25, 0.9 * -1.0 + 2.0 }
        assert_values((after[1]), p1, dtype)
        assert_values((after[2]), { p1[1] - 0.1 * b2[1], p1[2] - 0.1 * b2[2] }, dtype)
      end)

      it("Adam, step 1 (" .. dtype .. ")", function()
        local after = run(function(ps) return optim.Adam(ps, { lr = 0.1 }) end, dtype, 1)
        local b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
        local want = {}
        for i, g in ipairs(G[1]) do
          local m, v = (1 - b1) * g, (1 - b2) * g ^ 2
          local mhat, vhat = m / (1 - b1), v / (1 - b2)
          want[i] = P0[i] - lr * mhat / (math.sqrt(vhat) + eps)
        end
        -- the first step of Adam moves each element by about lr * sign(g)
        assert_values((after[1]), want, dtype)
        assert.is_true(math.abs(want[1] - 0.9) < 1e-6 and math.abs(want[2] + 1.9) < 1e-6)
      end)

      it("RMSprop, step 1 (" .. dtype .. ")", function()
        local after = run(function(ps) return optim.RMSprop(ps, { lr = 0.01 }) end, dtype, 1)
        local want = {}
        for i, g in ipairs(G[1]) do
          local sq = (1 - 0.99) * g * g
          want[i] = P0[i] - 0.01 * g / (math.sqrt(sq) + 1e-8)
        end
        assert_values((after[1]), want, dtype)
      end)
    end
  end)

  -- Every configuration against its reference over three steps, both dtypes.
  local cases = {
    { "SGD", { lr = 0.1 }, sgd_ref, SGD_DEFAULTS },
    { "SGD", { lr = 0.1, momentum = 0.9 }, sgd_ref, SGD_DEFAULTS },
    { "SGD", { lr = 0.1, momentum = 0.9, dampening = 0.3 }, sgd_ref, SGD_DEFAULTS },
    { "SGD", { lr = 0.05, momentum = 0.8, nesterov = true }, sgd_ref, SGD_DEFAULTS },
    { "SGD", { lr = 0.1, weight_decay = 0.2 }, sgd_ref, SGD_DEFAULTS },
    { "SGD", { lr = 0.1, momentum = 0.5, nesterov = true, weight_decay = 0.1 }, sgd_ref,
      SGD_DEFAULTS },
    { "Adam", {}, adam_ref, ADAM_DEFAULTS },
    { "Adam", { lr = 0.1, betas = { 0.8, 0.95 }, eps = 1e-3 }, adam_ref, ADAM_DEFAULTS },
    { "Adam", { lr = 0.1, weight_decay = 0.5 }, adam_ref, ADAM_DEFAULTS },
    { "AdamW", {}, adam_ref, ADAMW_DEFAULTS, true },
    { "AdamW", { lr = 0.1, weight_decay = 0.5 }, adam_ref, ADAMW_DEFAULTS, true },
    { "RMSprop", {}, rmsprop_ref, RMSPROP_DEFAULTS },
    { "RMSprop", { lr = 0.05, alpha = 0.9, eps = 1e-4 }, rmsprop_ref, RMSPROP_DEFAULTS },
    { "RMSprop", { lr = 0.05, momentum = 0.7 }, rmsprop_ref, RMSPROP_DEFAULTS },
    { "RMSprop", { lr = 0.05, centered = true }, rmsprop_ref, RMSPROP_DEFAULTS },
    { "RMSprop", { lr = 0.05, centered = true, momentum = 0.5, weight_decay = 0.1 },
      rmsprop_ref, RMSPROP_DEFAULTS },
  }

  local function describe_opts(opts)
    local keys, parts = {}, {}
    for k in pairs(opts) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = opts[k]
      if type(v) == "table" then v = "{" .. table.concat(v, ",") .. "}" end
      parts[#parts + 1] = k .. "=" .. tostring(v)
    end
    return table.concat(parts, " ")
  end

  local function reference(case, nsteps, hook)
    local name, opts, ref, defaults, decoupled = table.unpack(case)
    local h = with_defaults(defaults, opts)
    if ref == adam_ref then return ref(h, decoupled or name == "AdamW", nsteps, hook) end
    return ref(h, nsteps, hook)
  end

  describe("three steps against the formula", function()
    for _, case in ipairs(cases) do
      for _, dtype in ipairs(DTYPES) do
        it(case[1] .. " " .. describe_opts(case[2]) .. " (" .. dtype .. ")", function()
          local after = run(function(ps) return optim[case[1]](ps, case[2]) end, dtype, 3)
          local want = reference(case, 3)
          for s = 1, 3 do assert_values((after[s]), want[s], dtype) end
        end)
      end
    end
  end)

  describe("hyperparameters are plain fields", function()
    -- change hook: applied to the optimizer and to the reference's table
    local changes = {
      { "SGD lr", "SGD", { lr = 0.1 }, sgd_ref, SGD_DEFAULTS,
        function(h, s) if s == 2 then h.lr = 0.01 end end },
      { "SGD momentum", "SGD", { lr = 0.1, momentum = 0.9 }, sgd_ref, SGD_DEFAULTS,
        function(h, s) if s == 3 then h.momentum = 0.5 end end },
      { "SGD momentum from 0", "SGD", { lr = 0.1 }, sgd_ref, SGD_DEFAULTS,
        function(h, s) if s == 2 then h.momentum = 0.9 end end },
      { "SGD weight_decay", "SGD", { lr = 0.1 }, sgd_ref, SGD_DEFAULTS,
        function(h, s) if s == 2 then h.weight_decay = 0.3 end end },
      { "Adam lr and betas", "Adam", { lr = 0.1 }, adam_ref, ADAM_DEFAULTS,
        function(h, s) if s == 2 then h.lr = 0.05; h.betas = { 0.8, 0.99 } end end },
      { "AdamW weight_decay", "AdamW", { lr = 0.1 }, adam_ref, ADAMW_DEFAULTS,
        function(h, s) if s == 3 then h.weight_decay = 0.4 end end },
      { "RMSprop momentum and centered", "RMSprop", { lr = 0.05 }, rmsprop_ref, RMSPROP_DEFAULTS,
        function(h, s) if s == 2 then h.momentum = 0.6; h.centered = true end end },
    }
    for _, c in ipairs(changes) do
      local title, name, opts, _, _, hook = table.unpack(c)
      for _, dtype in ipairs(DTYPES) do
        it(title .. " changed between steps takes effect (" .. dtype .. ")", function()
          local after = run(function(ps) return optim[name](ps, opts) end, dtype, 3, hook)
          local want = reference({ name, opts, c[4], c[5] }, 3, hook)
          for s = 1, 3 do assert_values((after[s]), want[s], dtype) end
          -- and differs from the run without the change
          local plain = reference({ name, opts, c[4], c[5] }, 3)
          assert.are_not.equal(plain[3][1], want[3][1])
        end)
      end
    end

    it("are read and written as fields", function()
      local opt = optim.Adam({ param(P0) }, { lr = 0.01, betas = { 0.8, 0.9 } })
      assert.are.equal(0.01, opt.lr)
      assert.are.same({ 0.8, 0.9 }, opt.betas)
      assert.are.equal(1e-8, opt.eps)
      assert.are.equal(0, opt.weight_decay)
      opt.lr = 0.5
      assert.are.equal(0.5, opt:state_dict().lr)
    end)

    it("show in tostring", function()
      local opt = optim.SGD({ param(P0), param({ 1.0 }) }, { lr = 0.5, momentum = 0.9 })
      assert.are.equal("pbt.optim.SGD(lr=0.5, momentum=0.9, dampening=0, nesterov=false, "
                       .. "weight_decay=0; 2 parameters)", tostring(opt))
    end)

    it("are validated again at step()", function()
      local p = param(P0)
      local opt = optim.SGD({ p }, { lr = 0.1 })
      p.grad = T(G[1])
      opt.lr = -1
      assert.has_error(function() opt:step() end, "SGD: lr must be >= 0, got -1")
      assert_values(p, P0, "float32") -- untouched
      opt.lr, opt.nesterov = 0.1, true
      assert.has_error(function() opt:step() end,
                       "SGD: nesterov requires momentum > 0 and dampening = 0")
      local a = optim.Adam({ p })
      a.betas = { 1, 0.9 }
      assert.has_error(function() a:step() end, "Adam: betas[1] must be in [0, 1), got 1")
      a.betas = 0.9
      assert.has_error(function() a:step() end,
                       "Adam: betas must be a table of two numbers, got number")
      a.betas, a.lr = { 0.9, 0.99 }, "big"
      assert.has_error(function() a:step() end, "Adam: lr must be a number, got string")
    end)
  end)

  describe(":step() and :zero_grad()", function()
    it("skips parameters without a gradient", function()
      local a, b = param(P0), param({ 3.0, 4.0 })
      local opt = optim.Adam({ a, b }, { lr = 0.1 })
      b.grad = T({ 1.0, -1.0 })
      opt:step()
      assert_values(a, P0, "float32")
      assert.is_nil(opt.state[1])
      assert.are.equal(1, opt.state[2].step)
      assert_values(b, { 3 - 0.1, 4 + 0.1 }, "float32")
    end)

    it("zero_grad() drops the gradients, zero_grad(false) zeroes them", function()
      local a, b = param(P0), param({ 3.0 })
      local opt = optim.SGD({ a, b }, { lr = 0.1 })
      a.grad, b.grad = T({ 1.0, 2.0 }), T({ 3.0 })
      opt:zero_grad(false)
      assert_values(a.grad, { 0, 0 }, "float32")
      assert_values(b.grad, { 0 }, "float32")
      opt:zero_grad()
      assert.is_nil(a.grad)
      assert.is_nil(b.grad)
      local ok, err = pcall(opt.zero_grad, opt, "false")
      assert.is_false(ok)
      assert.are.equal("SGD: zero_grad's set_to_none must be a boolean, got string", err)
    end)

    it("updates parameters that require grad while grad mode is on", function()
      assert.is_true(pbt.is_grad_enabled())
      local p = param(P0)
      local loss = (p * p):sum()
      loss:backward()
      optim.SGD({ p }, { lr = 0.25 }):step()
      -- grad of sum(p^2) is 2p: p - 0.25 * 2p = p / 2
      assert_values(p, { 0.5, -1.0 }, "float32")
      assert.is_true(p.requires_grad)
    end)

    for _, dtype in ipairs(DTYPES) do
      for _, name in ipairs({ "SGD", "Adam", "AdamW", "RMSprop" }) do
        it(name .. " updates a transposed view and reads a transposed gradient (" .. dtype .. ")",
           function()
          local base = T({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = dtype })
          local pt = base.T -- 3x2 view, not contiguous
          assert.is_false(pt:is_contiguous())
          pt:requires_grad_()
          local gvals = { { 0.5, -1, 2 }, { 1.5, -0.25, 0.75 } } -- grad^T
          local ref = T({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = dtype }):requires_grad_()
          local opts = { lr = 0.1, momentum = name ~= "Adam" and name ~= "AdamW" and 0.9 or nil }
          local o1, o2 = optim[name]({ pt }, opts), optim[name]({ ref }, opts)
          local gvals_t = { { 0.5, 1.5 }, { -1, -0.25 }, { 2, 0.75 } }
          for s = 1, 3 do
            if s % 2 == 1 then -- strided parameter, contiguous gradient, and the reverse
              pt.grad = T(gvals_t, { dtype = dtype })
              ref.grad = T(gvals_t, { dtype = dtype }).T
            else -- both strided, and both contiguous
              pt.grad = T(gvals, { dtype = dtype }).T
              ref.grad = T(gvals, { dtype = dtype })
            end
            o1:step()
            o2:step()
          end
          -- the view's storage (base) matches the contiguous run, element for element
          assert.is_true(T.equal(base, ref:detach()))
          assert.is_false(T.equal(ref:detach(), T({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = dtype })))
          -- and the contiguous run matches the formula for element (1,2)
          local h = with_defaults(({ SGD = SGD_DEFAULTS, Adam = ADAM_DEFAULTS,
                                     AdamW = ADAMW_DEFAULTS, RMSprop = RMSPROP_DEFAULTS })[name], opts)
          local p, buf, m, v = 2.0, nil, 0, 0
          for s = 1, 3 do
            local g = gvals[1][2] -- = gvals_t[2][1]
            if name == "SGD" then
              buf = buf and h.momentum * buf + g or g
              p = p - h.lr * buf
            elseif name == "RMSprop" then
              m = h.alpha * m + (1 - h.alpha) * g * g
              v = h.momentum * v + g / (math.sqrt(m) + h.eps)
              p = p - h.lr * v
            else
              if name == "AdamW" then p = p * (1 - h.lr * h.weight_decay) end
              m = 0.9 * m + 0.1 * g
              v = 0.999 * v + 0.001 * g * g
              p = p - h.lr * (m / (1 - 0.9 ^ s)) / (math.sqrt(v / (1 - 0.999 ^ s)) + h.eps)
            end
          end
          assert_values(base:select(1, 1):narrow(1, 2, 1), { p }, dtype)
        end)
      end
    end
  end)

  describe(":state_dict() and :load_state_dict()", function()
    local configs = {
      { "SGD", { lr = 0.1, momentum = 0.9, dampening = 0.1, weight_decay = 0.01 } },
      { "SGD", { lr = 0.1 } },
      { "Adam", { lr = 0.05, weight_decay = 0.01 } },
      { "AdamW", { lr = 0.05 } },
      { "RMSprop", { lr = 0.05, momentum = 0.5, centered = true } },
    }
    local grads = { { 0.5, -1.0, 0.25, 2.0 }, { -1.5, 0.75, 1.0, -0.5 },
                    { 0.1, 0.2, -0.3, 0.4 }, { 2.0, -2.0, 1.5, -0.5 } }

    for _, c in ipairs(configs) do
      for _, dtype in ipairs(DTYPES) do
        it(c[1] .. " " .. describe_opts(c[2]) .. ": a loaded copy continues identically (" .. dtype .. ")",
           function()
          local pa = param({ { 1, -2 }, { 3, 0.5 } }, dtype)
          local a = optim[c[1]]({ pa }, c[2])
          for s = 1, 2 do
            pa.grad = T(grads[s], { dtype = dtype }):reshape(2, 2)
            a:step()
          end
          -- b: another member with other values, hyperparameters and state
          local pb = param({ { 9, 9 }, { 9, 9 } }, dtype)
          local b = optim[c[1]]({ pb }, { lr = 0.5 })
          pb.grad = T(grads[4], { dtype = dtype }):reshape(2, 2)
          b:step()
          local before = {}
          for k, t in pairs(b.state[1]) do before[k] = t end
          local sd = a:state_dict()
          b:load_state_dict(sd)
          pbt.no_grad(function() pb:copy_(pa) end)
          -- existing buffers are reused
          for k, t in pairs(b.state[1]) do
            if type(t) ~= "number" and before[k] then assert.are.equal(before[k], t) end
          end
          assert.are.equal(a.lr, b.lr)
          for s = 3, 4 do
            pa.grad = T(grads[s], { dtype = dtype }):reshape(2, 2)
            pb.grad = T(grads[s], { dtype = dtype }):reshape(2, 2)
            a:step()
            b:step()
          end
          assert.is_true(T.equal(pa:detach(), pb:detach()))
          for k, t in pairs(a.state[1]) do
            if type(t) == "number" then assert.are.equal(t, b.state[1][k])
            else assert.is_true(T.equal(t, b.state[1][k])) end
          end
        end)
      end
    end

    it("clones the buffers and copies the hyperparameters", function()
      local p = param(P0)
      local opt = optim.Adam({ p }, { lr = 0.1, betas = { 0.8, 0.9 } })
      p.grad = T(G[1])
      opt:step()
      local sd = opt:state_dict()
      assert.are.equal(0.1, sd.lr)
      assert.are.same({ 0.8, 0.9 }, sd.betas)
      assert.are.equal(1e-8, sd.eps)
      assert.are.equal(0, sd.weight_decay)
      assert.are.equal(1, sd.state[1].step)
      assert.are_not.equal(opt.state[1].exp_avg, sd.state[1].exp_avg)
      -- exp_avg after one step is (1 - b1) * g
      assert_values(sd.state[1].exp_avg, { 0.2 * 0.5, 0.2 * -1.0 }, "float32")
      assert_values(sd.state[1].exp_avg_sq, { 0.1 * 0.25, 0.1 * 1.0 }, "float32")
      sd.betas[1] = 0.5
      assert.are.equal(0.8, opt.betas[1])
      p.grad = T(G[2])
      opt:step()
      assert.are.equal(1, sd.state[1].step)
      assert_values(sd.state[1].exp_avg, { 0.2 * 0.5, 0.2 * -1.0 }, "float32")
    end)

    it("resets the state of a parameter the source has not updated", function()
      local a = optim.SGD({ param(P0) }, { lr = 0.1, momentum = 0.9 })
      local pb = param(P0)
      local b = optim.SGD({ pb }, { lr = 0.1, momentum = 0.9 })
      pb.grad = T(G[1])
      b:step()
      b:load_state_dict(a:state_dict())
      assert.is_nil(b.state[1])
      pb.grad = T(G[2])
      b:step() -- a fresh buffer: the first momentum step is plain SGD
      assert_values(pb, { 1 - 0.1 * 0.5 - 0.1 * 0.25, -2 + 0.1 - 0.1 * 2.0 }, "float32")
    end)

    it("raises on a missing, unexpected or mis-shaped entry and changes nothing", function()
      local p = param(P0)
      local opt = optim.Adam({ p }, { lr = 0.1 })
      p.grad = T(G[1])
      opt:step()
      local function sd_with(f)
        local sd = opt:state_dict()
        f(sd)
        return sd
      end
      local cases = {
        { function(sd) sd.lr = nil end, "Adam: load_state_dict: missing 'lr'" },
        { function(sd) sd.state = nil end, "Adam: load_state_dict: missing 'state'" },
        { function(sd) sd.momentum = 0.9 end, "Adam: load_state_dict: unexpected entry 'momentum'" },
        { function(sd) sd.betas = { 0.9, 1.5 } end,
          "Adam: load_state_dict: betas[2] must be in [0, 1), got 1.5" },
        { function(sd) sd.state[1].exp_avg_sq = nil end,
          "Adam: load_state_dict: missing 'state[1].exp_avg_sq'" },
        { function(sd) sd.state[1].momentum_buffer = T({ 1.0, 2.0 }) end,
          "Adam: load_state_dict: unexpected entry 'state[1].momentum_buffer'" },
        { function(sd) sd.state[1].exp_avg = T({ 1.0, 2.0, 3.0 }) end,
          "Adam: load_state_dict: state[1].exp_avg has shape [3] but parameter 1 has shape [2]" },
        { function(sd) sd.state[1].exp_avg = "x" end,
          "Adam: load_state_dict: state[1].exp_avg must be a pbt.Tensor, got string" },
        { function(sd) sd.state[1].step = 1.5 end,
          "Adam: load_state_dict: state[1].step must be an integer >= 0, got 1.5" },
        { function(sd) sd.state[2] = sd.state[1] end,
          "Adam: load_state_dict: state[2] does not match a parameter (there are 1)" },
      }
      local m_before = flat(opt.state[1].exp_avg)
      for _, c in ipairs(cases) do
        local sd = sd_with(c[1])
        sd.lr = sd.lr and 0.7
        assert.has_error(function() opt:load_state_dict(sd) end, c[2])
        assert.are.equal(0.1, opt.lr)
        assert.are.same(m_before, flat(opt.state[1].exp_avg))
      end
      assert.has_error(function() opt:load_state_dict(nil) end,
                       "Adam: load_state_dict: expected a table, got nil")
      -- an SGD state does not load into Adam
      assert.has_error(function()
        opt:load_state_dict(optim.SGD({ param(P0) }, { lr = 0.1 }):state_dict())
      end, "Adam: load_state_dict: unexpected entry 'dampening'")
    end)
  end)

  describe(":materialize()", function()
    local mat_cases = {
      { "SGD", { lr = 0.1, momentum = 0.9, dampening = 0.3 }, SGD_DEFAULTS },
      { "SGD", { lr = 0.05, momentum = 0.8, nesterov = true, weight_decay = 0.1 }, SGD_DEFAULTS },
      { "SGD", { lr = 0.1 }, SGD_DEFAULTS },
      { "Adam", { lr = 0.1, weight_decay = 0.5 }, ADAM_DEFAULTS },
      { "Adam", {}, ADAM_DEFAULTS },
      { "AdamW", { lr = 0.1, weight_decay = 0.5 }, ADAMW_DEFAULTS },
      { "RMSprop", { lr = 0.05, centered = true, momentum = 0.5 }, RMSPROP_DEFAULTS },
      { "RMSprop", { lr = 0.05, alpha = 0.9, weight_decay = 0.1 }, RMSPROP_DEFAULTS },
    }
    local BUFFERS = {
      SGD = { "momentum_buffer" },
      Adam = { "exp_avg", "exp_avg_sq" },
      AdamW = { "exp_avg", "exp_avg_sq" },
      RMSprop = { "square_avg", "grad_avg", "momentum_buffer" },
    }
    -- two parameters of other shapes; grads of three steps (the second
    -- parameter has none at step 2)
    local P, Q = { { 1, -2 }, { 3, 0.5 } }, { 0.25, -0.75, 2 }
    local GP = { { { 0.5, -1 }, { 0.25, 2 } }, { { -1.5, 0.75 }, { 1, -0.5 } },
                 { { 0.1, 0.2 }, { -0.3, 0.4 } } }
    local GQ = { { 1, -2, 0.5 }, false, { -0.25, 0.125, 3 } }

    local function params(dtype)
      return { param(P, dtype), param(Q, dtype) }
    end

    local function step(opt, ps, s, dtype)
      ps[1].grad = T(GP[s], { dtype = dtype })
      ps[2].grad = GQ[s] and T(GQ[s], { dtype = dtype }) or nil
      opt:step()
    end

    local function all_zero(t)
      for _, x in ipairs(flat(t)) do if x ~= 0 then return false end end
      return true
    end

    for _, c in ipairs(mat_cases) do
      local name, opts = c[1], c[2]
      local title = name .. " " .. describe_opts(opts)
      for _, dtype in ipairs(DTYPES) do
        it(title .. ": three steps after it give the same bits as without it (" .. dtype .. ")",
          function()
            local pa, pb, pc = params(dtype), params(dtype), params(dtype)
            local a = optim[name](pa, opts)
            local b = optim[name](pb, opts)
            assert.are.equal(b, b:materialize())
            local made = {}
            for i = 1, 2 do
              made[i] = {}
              for _, buf in ipairs(BUFFERS[name]) do made[i][buf] = b.state[i][buf] end
            end
            -- c: materialized after its first step
            local cc = optim[name](pc, opts)
            for s = 1, 3 do
              step(a, pa, s, dtype)
              step(b, pb, s, dtype)
              step(cc, pc, s, dtype)
              if s == 1 then cc:materialize() end
            end
            for i = 1, 2 do
              assert.is_true(T.equal(pa[i]:detach(), pb[i]:detach()))
              assert.is_true(T.equal(pa[i]:detach(), pc[i]:detach()))
              assert.are.equal(a.state[i].step, b.state[i].step)
              assert.are.equal(a.state[i].step, cc.state[i].step)
              for _, buf in ipairs(BUFFERS[name]) do
                local want = a.state[i][buf]
                -- the buffers materialize made are the ones the steps update
                assert.are.equal(made[i][buf], b.state[i][buf])
                if want then
                  assert.is_true(T.equal(want, b.state[i][buf]))
                  assert.is_true(T.equal(want, cc.state[i][buf]))
                else -- a buffer the configuration never uses stays zero
                  assert.is_true(all_zero(b.state[i][buf]))
                  assert.is_true(all_zero(cc.state[i][buf]))
                end
              end
            end
            assert.are.same({ 3, 2 }, { b.state[1].step, b.state[2].step })
          end)
      end

      it(title .. ": its state_dict() before any step is a fresh optimizer's", function()
        local fresh = optim[name](params("float32"), opts)
        local mat = optim[name](params("float32"), opts):materialize()
        local want = with_defaults(c[3], opts)
        want.state = {}
        assert.are.same(want, mat:state_dict())
        assert.are.same(fresh:state_dict(), mat:state_dict())
        -- and a fresh optimizer loads it: it still has no state
        fresh:load_state_dict(mat:state_dict())
        assert.are.same({}, fresh.state)
      end)
    end

    for _, name in ipairs({ "SGD", "Adam", "AdamW", "RMSprop" }) do
      it(name .. ": makes step 0 and zero buffers of each parameter's shape and dtype", function()
        local p = param({ { 1, 2 }, { 3, 4 } }, "float64")
        local q = param({ 5, 6, 7 }, "float32")
        local opt = optim[name]({ p, q }, { lr = 0.1 })
        assert.are.same({}, opt.state)
        opt:materialize()
        for i, x in ipairs({ p, q }) do
          local st = opt.state[i]
          local keys, want_keys = {}, { "step" }
          for k in pairs(st) do keys[#keys + 1] = k end
          for _, buf in ipairs(BUFFERS[name]) do want_keys[#want_keys + 1] = buf end
          if name == "SGD" then want_keys[#want_keys + 1] = "momentum_buffer_ready" end
          table.sort(keys)
          table.sort(want_keys)
          assert.are.same(want_keys, keys)
          assert.are.equal(0, st.step)
          assert.are.equal("integer", math.type(st.step))
          if name == "SGD" then assert.is_false(st.momentum_buffer_ready) end
          for _, buf in ipairs(BUFFERS[name]) do
            local t = st[buf]
            assert.are.same(x:shape(), t:shape())
            assert.are.equal(x:dtype(), t:dtype())
            assert.is_true(all_zero(t))
            assert.are_not.equal(x, t)
          end
          -- each buffer has memory of its own
          for _, buf in ipairs(BUFFERS[name]) do
            st[buf]:fill_(1)
            for _, other in ipairs(BUFFERS[name]) do
              if other ~= buf then assert.is_true(all_zero(st[other])) end
            end
            assert.are.same(i == 1 and { 1, 2, 3, 4 } or { 5, 6, 7 }, flat(x))
            st[buf]:fill_(0)
          end
          if i == 1 then
            for _, buf in ipairs(BUFFERS[name]) do
              assert.is_true(all_zero(opt.state[2][buf]))
            end
          end
        end
        -- a second call keeps what is there
        local first = opt.state[1][BUFFERS[name][1]]
        opt:materialize()
        assert.are.equal(first, opt.state[1][BUFFERS[name][1]])
      end)
    end

    it("SGD: momentum_buffer_ready turns true at the first step with momentum", function()
      local p = param(P0, "float64")
      local opt = optim.SGD({ p }, { lr = 0.1, momentum = 0.9 }):materialize()
      local buf = opt.state[1].momentum_buffer
      assert.is_false(opt.state[1].momentum_buffer_ready)
      p.grad = T(G[1], { dtype = "float64" })
      opt:step()
      assert.is_true(opt.state[1].momentum_buffer_ready)
      assert.are.equal(buf, opt.state[1].momentum_buffer)
      -- the first step copies the gradient into the buffer (PyTorch's rule)
      assert.are.same({ 0.5, -1.0 }, flat(buf))
      assert_values(p, { 1 - 0.1 * 0.5, -2 + 0.1 * 1.0 }, "float64")
      local sd = opt:state_dict() -- now the buffer is state
      assert.are.equal(1, sd.state[1].step)
      assert.are_not.equal(buf, sd.state[1].momentum_buffer) -- a clone
      assert.is_true(T.equal(buf, sd.state[1].momentum_buffer))
      p.grad = T(G[2], { dtype = "float64" })
      opt:step()
      assert.is_true(opt.state[1].momentum_buffer_ready)
      assert_values(buf, { 0.9 * 0.5 + 0.25, 0.9 * -1.0 + 2.0 }, "float64")
    end)

    it("SGD: steps only the parameters that have a gradient; a bad state is named", function()
      local pa, pb = param(P0, "float64"), param(P0, "float64")
      local opt = optim.SGD({ pa, pb }, { lr = 0.1, momentum = 0.9 })
      pb.grad = T(G[1], { dtype = "float64" })
      opt:step()
      assert.is_nil(opt.state[1])
      assert.are.same(P0, flat(pa))
      assert.are.equal(1, opt.state[2].step)
      assert_values(pb, { 1 - 0.1 * 0.5, -2 + 0.1 * 1.0 }, "float64")
      opt.state[2].momentum_buffer = 3
      assert.are.equal("SGD: the momentum_buffer of params[2] is not a pbt.Tensor (got number)",
        error_of(opt.step, opt))
      opt.state[2] = "x"
      assert.are.equal("SGD: state[2] must be a table, got string", error_of(opt.step, opt))
    end)

    it("SGD: without momentum the buffer waits, unready and left out of state_dict()", function()
      local pa, pb = param(P0, "float64"), param(P0, "float64")
      local a = optim.SGD({ pa }, { lr = 0.1 })
      local b = optim.SGD({ pb }, { lr = 0.1 }):materialize()
      local buf = b.state[1].momentum_buffer
      for s = 1, 3 do
        if s == 3 then a.momentum, b.momentum = 0.9, 0.9 end
        pa.grad = T(G[s], { dtype = "float64" })
        pb.grad = T(G[s], { dtype = "float64" })
        a:step()
        b:step()
        if s == 2 then
          assert.is_false(b.state[1].momentum_buffer_ready)
          assert.is_true(all_zero(buf))
          assert.are.same({ step = 2 }, b:state_dict().state[1])
          assert.are.same(a:state_dict(), b:state_dict())
        end
      end
      -- momentum switched on at step 3: its first momentum step copies d
      assert.is_true(b.state[1].momentum_buffer_ready)
      assert.are.equal(buf, b.state[1].momentum_buffer)
      assert.are.same({ -1.5, 0.75 }, flat(buf))
      assert.is_true(T.equal(pa:detach(), pb:detach()))
      assert.is_true(T.equal(a.state[1].momentum_buffer, buf))
    end)

    it("keeps the whole state through load_state_dict of a fresh optimizer's state_dict", function()
      local pa, pb = params("float64"), params("float64")
      local opts = { lr = 0.1, momentum = 0.9, dampening = 0.3 }
      local a = optim.SGD(pa, opts)          -- never materialized
      local b = optim.SGD(pb, opts):materialize()
      step(b, pb, 1, "float64")
      local buf = b.state[1].momentum_buffer
      b:load_state_dict(optim.SGD(params("float64"), opts):state_dict())
      -- the same buffer, zeroed, its first step to come again; step counts 0
      assert.are.equal(buf, b.state[1].momentum_buffer)
      assert.is_true(all_zero(buf))
      assert.is_false(b.state[1].momentum_buffer_ready)
      assert.are.equal(0, b.state[2].step)
      -- from there it steps as a fresh optimizer does (from b's parameters)
      pbt.no_grad(function() for k = 1, 2 do pa[k]:copy_(pb[k]) end end)
      for s = 2, 3 do
        step(a, pa, s, "float64")
        step(b, pb, s, "float64")
      end
      for k = 1, 2 do assert.are.same(flat(pa[k]), flat(pb[k])) end
    end)
  end)

  describe("errors", function()
    local p = param(P0)
    local cases = {
      { function() optim.SGD({ p }, { lr = -1 }) end, "SGD: lr must be >= 0, got -1" },
      { function() optim.SGD({ p }) end, "SGD: lr is required" },
      { function() optim.SGD({ p }, { lr = 0.1, momentum = -0.5 }) end,
        "SGD: momentum must be >= 0, got -0.5" },
      { function() optim.SGD({ p }, { lr = 0.1, weight_decay = -1e-4 }) end,
        "SGD: weight_decay must be >= 0, got -0.0001" },
      { function() optim.SGD({ p }, { lr = 0.1, nesterov = true }) end,
        "SGD: nesterov requires momentum > 0 and dampening = 0" },
      { function() optim.SGD({ p }, { lr = 0.1, momentum = 0.9, dampening = 0.1, nesterov = true }) end,
        "SGD: nesterov requires momentum > 0 and dampening = 0" },
      { function() optim.SGD({ p }, { lr = 0.1, nesterov = 1 }) end,
        "SGD: nesterov must be a boolean, got number" },
      { function() optim.SGD({ p }, { learning_rate = 0.1 }) end,
        "SGD: unknown option 'learning_rate'" },
      { function() optim.Adam({ p }, { betas = { 0.9, 1 } }) end,
        "Adam: betas[2] must be in [0, 1), got 1" },
      { function() optim.Adam({ p }, { betas = { -0.1, 0.9 } }) end,
        "Adam: betas[1] must be in [0, 1), got -0.1" },
      { function() optim.Adam({ p }, { betas = { 0.9 } }) end,
        "Adam: betas must be a table of two numbers, got a table of length 1" },
      { function() optim.Adam({ p }, { eps = -1 }) end, "Adam: eps must be >= 0, got -1" },
      { function() optim.AdamW({ p }, { lr = -0.001 }) end, "AdamW: lr must be >= 0, got -0.001" },
      { function() optim.AdamW({ p }, { weight_decay = -1 }) end,
        "AdamW: weight_decay must be >= 0, got -1" },
      { function() optim.RMSprop({ p }, { alpha = -0.5 }) end,
        "RMSprop: alpha must be >= 0, got -0.5" },
      { function() optim.RMSprop({ p }, { momentum = -1 }) end,
        "RMSprop: momentum must be >= 0, got -1" },
      { function() optim.RMSprop({ p }, { lr = 0 / 0 }) end, "RMSprop: lr must be >= 0, got" },
      { function() optim.SGD({}, { lr = 0.1 }) end, "SGD: params is empty" },
      { function() optim.SGD(p, { lr = 0.1 }) end,
        "SGD: params must be an array of tensors, got a tensor" },
      { function() optim.SGD(nil, { lr = 0.1 }) end,
        "SGD: params must be an array of tensors, got nil" },
      { function() optim.SGD({ p, 3 }, { lr = 0.1 }) end,
        "SGD: params[2] is not a pbt.Tensor (got number)" },
      { function() optim.SGD({ p, p }, { lr = 0.1 }) end,
        "SGD: params[2] is the same tensor as params[1]" },
      { function() optim.SGD({ p * 2 }, { lr = 0.1 }) end,
        "SGD: params[1] is not a leaf tensor (it was computed by mul)" },
      { function() optim.SGD({ p }, 0.1) end, "SGD: options must be a table, got number" },
    }
    for i, c in ipairs(cases) do
      it("case " .. i .. ": " .. c[2], function()
        local msg = error_of(c[1])
        assert.is_truthy(msg:find(c[2], 1, true) == 1, msg)
      end)
    end

    describe("with released tensors", function()
      local function released(t)
        getmetatable(t).__close(t)
        return t
      end
      for _, name in ipairs({ "SGD", "Adam", "AdamW", "RMSprop" }) do
        it(name .. " names a released parameter or grad", function()
          assert.are.equal(name .. ": params[1] has been released",
            error_of(optim[name], { released(param(P0)) }, { lr = 0.1 }))
          local q1, q2 = param(P0), param(P0)
          local opt = optim[name]({ q1, q2 }, { lr = 0.1 })
          q1.grad, q2.grad = T.ones(2), T.ones(2)
          released(q2.grad)
          assert.are.equal(name .. ": the grad of params[2] has been released",
            error_of(opt.step, opt))
          -- checked before any update: params[1] was not touched
          assert.are.same(P0, q1:detach():totable())
          assert.are.equal(name .. ": the grad of params[2] has been released",
            error_of(opt.zero_grad, opt, false))
          -- zero_grad(false) checks them all before zeroing any
          assert.are.same({ 1, 1 }, q1.grad:totable())
          released(q2)
          assert.are.equal(name .. ": params[2] has been released", error_of(opt.step, opt))
          assert.are.equal(name .. ": params[2] has been released", error_of(opt.zero_grad, opt))
          assert.is_not_nil(q1.grad) -- zero_grad() too
        end)

        it(name .. ": zero_grad(false) refuses a grad it cannot write before zeroing any",
          function()
            local q1, q2 = param(P0), param(P0)
            local opt = optim[name]({ q1, q2 }, { lr = 0.1 })
            q1.grad, q2.grad = T.ones(2), T.ones(1):expand(2)
            local msg = error_of(opt.zero_grad, opt, false)
            assert.is_truthy(msg:find("zero_: cannot write into an expanded tensor", 1, true), msg)
            assert.are.same({ 1, 1 }, q1.grad:totable())
          end)

        it(name .. " names a released state buffer before updating anything", function()
          local q1, q2 = param(P0), param(P0)
          local opt = optim[name]({ q1, q2 }, { lr = 0.1, momentum = name ~= "Adam" and
            name ~= "AdamW" and 0.9 or nil })
          q1.grad, q2.grad = T.ones(2), T.ones(2)
          opt:step()
          local key, buf = next(opt.state[2])
          while key ~= nil and not pbt.autograd.is_tensor(buf) do key, buf = next(opt.state[2], key) end
          released(buf)
          local before = q1:detach():totable()
          assert.are.equal(("%s: the %s of params[2] has been released"):format(name, key),
            error_of(opt.step, opt))
          assert.are.same(before, q1:detach():totable())
        end)
      end
    end)

    describe("of the C kernels", function()
      local C = core.optim
      for _, dtype in ipairs(DTYPES) do
        it("check shapes, dtypes and layouts (" .. dtype .. ")", function()
          local q = T.zeros(2, 2, { dtype = dtype })
          local g = T.ones(2, 2, { dtype = dtype })
          local z = T.zeros(2, 2, { dtype = dtype })
          local other = dtype == "float32" and "float64" or "float32"
          assert.has_error(function()
            C.adam_step(q, g, T.zeros(3, { dtype = dtype }), z, 1, 0.1, 0.9, 0.999, 1e-8, 0, false)
          end, ("adam_step: exp_avg is a %s tensor of shape [3] but the parameter is a %s "
                .. "tensor of shape [2,2]"):format(dtype, dtype))
          assert.has_error(function()
            C.adam_step(q, T.ones(2, 2, { dtype = other }), z, T.zeros(2, 2, { dtype = dtype }),
                        1, 0.1, 0.9, 0.999, 1e-8, 0, false)
          end, ("adam_step: the gradient is a %s tensor of shape [2,2] but the parameter is a "
                .. "%s tensor of shape [2,2]"):format(other, dtype))
          assert.has_error(function()
            C.sgd_step(q, g, T.zeros(2, 2, { dtype = dtype }).T, false, 0.1, 0.9, 0, 0, false)
          end, "sgd_step: momentum_buffer must be contiguous")
          assert.has_error(function()
            C.sgd_step(q, g, nil, false, 0.1, 0.9, 0, 0, false)
          end, "sgd_step: momentum_buffer is missing or released")
          assert.has_error(function()
            C.rmsprop_step(q, g, z, nil, nil, 0.1, 0.99, 1e-8, 0, 0, true)
          end, "rmsprop_step: grad_avg is missing or released")
          assert.has_error(function()
            C.sgd_step(T.zeros(1, 2, { dtype = dtype }):expand(3, 2), T.ones(3, 2, { dtype = dtype }),
                       nil, false, 0.1, 0, 0, 0, false)
          end, "sgd_step: the parameter is an expanded view (several elements share one "
               .. "memory location) and cannot be updated in place")
          assert.has_error(function()
            C.adam_step(q, g, z, T.zeros(2, 2, { dtype = dtype }), 0, 0.1, 0.9, 0.999, 1e-8, 0, false)
          end, "adam_step: step must be >= 1, got 0")
          assert.has_error(function()
            C.adam_step(q, g, z, T.zeros(2, 2, { dtype = dtype }), 1, 0.1, 1, 0.999, 1e-8, 0, false)
          end, "adam_step: beta1 must be in [0, 1), got 1")
          assert.has_error(function()
            C.sgd_step(q, g, nil, false, -1, 0, 0, 0, false)
          end, "sgd_step: lr must be >= 0, got -1")
          -- nothing was written
          assert.is_true(T.equal(q, T.zeros(2, 2, { dtype = dtype })))
        end)
      end

      it("updates an empty parameter without complaint", function()
        local q = T.zeros(0, 3)
        C.adam_step(q, T.zeros(0, 3), T.zeros(0, 3), T.zeros(0, 3), 1, 0.1, 0.9, 0.999, 1e-8, 0,
                    false)
        C.sgd_step(q:t(), T.zeros(3, 0), T.zeros(3, 0), true, 0.1, 0.9, 0, 0, false)
        assert.are.same({ 0, 3 }, q:shape())
      end)
    end)
  end)
end)

describe("pbt.optim betas", function()
  it("must be exactly two numbers, also when given to the constructor", function()
    local pbt = require("pbt")
    local p = pbt.tensor.ones(2):requires_grad_()
    assert.has_error(function() pbt.optim.Adam({ p }, { betas = { 0.9, 0.999, 5 } }) end,
      "Adam: betas must be a table of two numbers, got a table of length 3")
  end)
end)
