-- pbt.core.gp: the Gaussian process of PB2 against numpy/scipy
-- (spec/gp_reference.py; its output is spec/fixtures/gp_cases.lua).
local pbt = require("pbt")
local gp = pbt.core.gp

local cases = dofile("spec/fixtures/gp_cases.lua")

local function theta_of(t)
  return { variance = t[1], lengthscale = t[2], epsilon = t[3], noise = t[4] }
end

local function u_of(t)
  local r = t.epsilon / 0.5
  return { math.log(t.variance), math.log(t.lengthscale), math.log(r / (1 - r)), math.log(t.noise) }
end

local function assert_close(got, want, tol, what)
  local err = math.abs(got - want) / math.max(1, math.abs(want))
  assert(err <= tol, ("%s: got %.17g, want %.17g (error %.3g > %.3g)"):format(what, got, want, err, tol))
end

describe("pbt.core.gp", function()
  describe("posterior and likelihood at a fixed theta (case A)", function()
    local A = cases.A
    local m = gp.new(A.X, A.y, theta_of(A.theta))

    it("gives scipy's posterior mean and variance", function()
      local mean, var = m:predict(A.Xs)
      assert.equal(#A.Xs, #mean)
      for k = 1, #A.Xs do
        assert_close(mean[k], A.mean[k], 1e-12, "mean " .. k)
        assert_close(var[k], A.var[k], 1e-12, "var " .. k)
      end
    end)

    it("gives the log marginal likelihood and its gradient", function()
      assert_close(m:lml(), A.lml, 1e-13, "lml")
      local g = m:grad()
      for k = 1, 4 do assert_close(g[k], A.grad[k], 1e-11, "grad " .. k) end
      assert.equal(0, m:jitter())
    end)

    it("predicts at its own points as regression does (the noise shrinks, never interpolates)", function()
      local mean, var = m:predict(A.X)
      for k = 1, #A.X do
        assert.is_true(var[k] > 0 and var[k] < A.theta[1])
        assert.is_true(math.abs(mean[k] - A.y[k]) < 0.5)
      end
    end)
  end)

  describe("fit (case B)", function()
    local B = cases.B

    it("starts where PB2 starts and reaches scipy's maximum", function()
      local start = gp.new(B.X, B.y, { variance = 1, lengthscale = 1, epsilon = 0.1, noise = 1 })
      assert_close(start:lml(), B.lml_u0, 1e-13, "lml at u0")
      local g0 = start:grad()
      for k = 1, 4 do assert_close(g0[k], B.grad_u0[k], 1e-11, "grad at u0 " .. k) end
      local theta, info = gp.fit(B.X, B.y)
      local u = u_of(theta)
      for k = 1, 4 do assert_close(u[k], B.u[k], 1e-5, "u " .. k) end
      assert_close(info.lml, B.lml, 1e-10, "lml at the fit")
      assert_close(gp.new(B.X, B.y, theta):lml(), info.lml, 1e-14, "lml of the returned theta")
      assert.is_true(info.iterations > 0 and info.evaluations >= info.iterations)
    end)

    it("takes another start", function()
      local theta, info = gp.fit(B.X, B.y, { variance = 0.5, lengthscale = 0.5, epsilon = 0.2, noise = 0.2 })
      assert_close(info.lml, B.lml, 1e-9, "lml from another start")
      assert_close(theta.lengthscale, B.theta[2], 1e-4, "lengthscale")
    end)
  end)

  describe("ucb_max (case C)", function()
    local B, C = cases.B, cases.C
    local theta = theta_of(C.theta)
    local mean_gp = gp.new(B.X, B.y, theta)
    local Xv = {}
    for k, row in ipairs(B.X) do Xv[k] = row end
    for _, row in ipairs(C.P) do Xv[#Xv + 1] = row end
    local var_gp = gp.new(Xv, nil, theta)

    it("finds scipy's maximum of mean + kappa sd with the batch's points", function()
      local x, a = gp.ucb_max(mean_gp, var_gp, { fixed = C.f, kappa = C.kappa,
        generator = pbt.Generator(1) })
      assert.equal(2, #x)
      assert_close(x[1], C.x[1], 1e-5, "x1")
      assert_close(x[2], C.x[2], 1e-5, "x2")
      assert_close(a, C.a, 1e-10, "a(x*)")
      local z = { C.f[1], C.f[2], x[1], x[2] }
      local mean, mvar = mean_gp:predict({ z })
      local _, var = var_gp:predict({ z })
      assert_close(mean[1], C.mean, 1e-6, "mean at x* (x found to 1e-6)")
      assert_close(mvar[1], C.mean_gp_var, 1e-6, "the mean GP's var at x*")
      assert_close(var[1], C.var, 1e-6, "var at x*")
      assert.is_true(var[1] < mvar[1]) -- the pending points took variance away
    end)

    it("finds it from a start alone, and from other draws", function()
      for seed = 2, 4 do
        local x = gp.ucb_max(mean_gp, var_gp, { fixed = C.f, kappa = C.kappa, generator = pbt.Generator(seed) })
        assert_close(x[1], C.x[1], 1e-5, "x1 seed " .. seed)
      end
      local x = gp.ucb_max(mean_gp, var_gp, { fixed = C.f, kappa = C.kappa, starts = { { 0.6, 0.5 } },
        candidates = 0, generator = pbt.Generator(1) })
      assert_close(x[2], C.x[2], 1e-5, "x2 from one start")
    end)

    it("is sent elsewhere by the batch: without the pending points it picks scipy's other point", function()
      local x = gp.ucb_max(mean_gp, mean_gp, { fixed = C.f, kappa = C.kappa, generator = pbt.Generator(1) })
      -- gp_reference.py: without P the maximum is at (0.7054, 0.4039)
      assert_close(x[1], 0.7054, 1e-3, "x1 without the batch")
      assert_close(x[2], 0.4039, 1e-3, "x2 without the batch")
    end)

    it("draws its candidates from the generator it is given (same seed, same point)", function()
      local function pick(seed)
        return gp.ucb_max(mean_gp, var_gp, { fixed = C.f, kappa = 0, candidates = 3,
          generator = pbt.Generator(seed) })
      end
      local a, b = pick(9), pick(9)
      assert.same(a, b)
      -- it draws exactly candidates * 2 uniforms (the free values) from it
      local g1, g2 = pbt.Generator(9), pbt.Generator(9)
      gp.ucb_max(mean_gp, var_gp, { fixed = C.f, kappa = 0, candidates = 3, generator = g1 })
      for _ = 1, 6 do g2:uniform() end
      assert.are.equal(g2:uniform(), g1:uniform())
    end)
  end)

  describe("edges", function()
    local X = { { 0, 0.5 }, { 0, 0.5 }, { 1, 0.2 } }
    local th = { variance = 1, lengthscale = 1, epsilon = 0.1, noise = 0 }

    it("adds a jitter when two points are the same and there is no noise, and says how much", function()
      local m = gp.new(X, { 1, 1, 0 }, th)
      assert.is_true(m:jitter() > 0 and m:jitter() <= 1e-2)
      local mean = m:predict({ { 0, 0.5 } })
      assert_close(mean[1], 1, 1e-3, "mean at the repeated point")
    end)

    it("names the function, the argument and what is wrong", function()
      assert.has_error(function() gp.new({}, {}, th) end, "gp.new: x is empty")
      assert.has_error(function() gp.new({ { 0, 1 }, { 0 } }, { 1, 2 }, th) end,
        "gp.new: x: point 2 has 1 values, expected 2")
      assert.has_error(function() gp.new(X, { 1, 2 }, th) end,
        "gp.new: y has 2 values, expected 3 (one per point)")
      assert.has_error(function() gp.new(X, { 1, 2, "a" }, th) end,
        "gp.new: y: item 3 is a string, not a number")
      assert.has_error(function() gp.new(X, { 1, 2, 0 / 0 }, th) end,
        "gp.new: a GP's data must be finite numbers")
      assert.has_error(function() gp.new(X, { 1, 2, 3 }, { variance = 1, lengthscale = 1, epsilon = 0.1 }) end,
        "gp.new: kernel parameters need the field 'noise'")
      assert.has_error(function()
        gp.new(X, { 1, 2, 3 }, { variance = 1, lenghtscale = 1, epsilon = 0.1, noise = 0 })
      end)
      local ok, msg = pcall(gp.new, X, { 1, 2, 3 }, { variance = 1, lenghtscale = 1, epsilon = 0.1, noise = 0 })
      assert.is_false(ok)
      assert.truthy(msg:find("unknown option 'lenghtscale' (did you mean 'lengthscale'?)", 1, true), msg)
      assert.has_error(function() gp.new(X, { 1, 2, 3 }, { variance = -1, lengthscale = 1, epsilon = 0.1, noise = 0 }) end,
        "gp.new: kernel parameters out of range: variance -1 and lengthscale 1 must be > 0, epsilon 0.1 in [0, 1), noise 0 >= 0")
      assert.has_error(function() gp.fit(X, { 1, 2, 3 }, { variance = 1, lengthscale = 1, epsilon = 0.7, noise = 1 }) end,
        "gp.fit: a fit's start needs 0 < epsilon < 0.5 and noise > 0, got 0.7 and 1")
      local m = gp.new(X, { 1, 2, 3 }, { variance = 1, lengthscale = 1, epsilon = 0.1, noise = 0.1 })
      assert.has_error(function() m:predict({ { 0, 1, 2 } }) end, "predict: xs: point 1 has 3 values, expected 2")
      assert.has_error(function() gp.ucb_max(m, m, { fixed = { 0 }, kappa = 1 }) end,
        "gp.ucb_max: option 'generator' is required (every random draw takes one)")
      assert.has_error(function() gp.ucb_max(m, m, { fixed = { 0, 1 }, kappa = 1, generator = pbt.Generator(1) }) end,
        "gp.ucb_max: option 'fixed' needs 1 to 1 values of a point's 2, got 2")
      assert.has_error(function() gp.ucb_max(m, m, { fixed = { 0 }, kappa = -1, generator = pbt.Generator(1) }) end,
        "gp.ucb_max: kappa must be a finite number >= 0, got -1")
      ok, msg = pcall(gp.ucb_max, m, m, { fixed = { 0 }, kappa = 1, candiates = 3, generator = pbt.Generator(1) })
      assert.is_false(ok)
      assert.truthy(msg:find("unknown option 'candiates' (did you mean 'candidates'?)", 1, true), msg)
      assert.has_error(function() gp.ucb_max(m, m, { fixed = { 0 }, kappa = 1, generator = 5 }) end,
        "gp.ucb_max: option 'generator' must be a pbt.Generator, got number")
      local m3 = gp.new({ { 0, 1, 2 } }, { 1 }, th)
      assert.has_error(function() gp.ucb_max(m, m3, { fixed = { 0 }, kappa = 1, generator = pbt.Generator(1) }) end,
        "gp.ucb_max: the two GPs' points differ in size (2 and 3 values)")
    end)

    it("refuses data whose likelihood overflows double precision instead of predicting NaN", function()
      local Xo = { { 0, 0.5 }, { 1, 0.2 }, { 2, 0.9 }, { 3, 0.3 } }
      assert.has_error(function()
        gp.new(Xo, { 1, -2, 3, 1e300 }, { variance = 1e-300, lengthscale = 1e-3, epsilon = 0.1, noise = 0 })
      end)
      local ok, msg = pcall(gp.new, Xo, { 1e308, -1e308, 1e308, -1e308 }, { variance = 1, lengthscale = 1, epsilon = 0.1, noise = 1 })
      assert.is_false(ok)
      assert.truthy(msg:find("the targets and kernel overflow double precision", 1, true), msg)
      ok, msg = pcall(gp.fit, Xo, { 1e308, -1e308, 1e308, -1e308 })
      assert.is_false(ok)
      assert.truthy(msg:find("overflow", 1, true), msg)
    end)

    it("frees a closed GP and refuses to use it", function()
      local m
      do
        local c <close> = gp.new(X, { 1, 2, 3 }, { variance = 1, lengthscale = 1, epsilon = 0.1, noise = 0.1 })
        m = c
        assert.equal("pbt.GP (3 points of 2 values)", tostring(m))
      end
      assert.equal("pbt.GP", getmetatable(m))
      local ok, msg = pcall(m.lml, m)
      assert.is_false(ok)
      assert.truthy(msg:find("the GP was closed", 1, true), msg)
      assert.equal("pbt.GP (closed)", tostring(m))
    end)
  end)
end)
