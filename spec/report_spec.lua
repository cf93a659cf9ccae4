-- The run report: the pictures (pbt.svg) and DIR/index.html, checked for
-- what a reader needs (round ticks, values not indices, one colour per
-- member, an exploit drawn for every exploit event), and the page opened in
-- headless Chromium (Debian's chromium): it loads with no console message.
local pbt = require("pbt")
local svg = require("pbt.svg")
local helper = require("spec.helper")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function count(s, pattern)
  return select(2, s:gsub(pattern, ""))
end

describe("pbt.svg's ticks", function()
  it("are round numbers covering the data (worked out by hand)", function()
    local lo, hi, values, labels = svg.ticks(0, 0.3633, 6)
    assert.are.same({ 0, 0.4 }, { lo, hi })
    assert.are.same({ "0.0", "0.1", "0.2", "0.3", "0.4" }, labels)
    assert.are.equal(5, #values)
    -- steps: whole numbers only (no step 4.75)
    _, _, _, labels = svg.ticks(0, 4.75, 7, true)
    assert.are.same({ "0", "1", "2", "3", "4", "5" }, labels)
    _, _, _, labels = svg.ticks(1, 40, 7, true)
    assert.are.same({ "0", "10", "20", "30", "40" }, labels)
    _, _, _, labels = svg.ticks(-0.02, 0.07, 6)
    assert.are.same({ "-0.02", "0.00", "0.02", "0.04", "0.06", "0.08" }, labels)
    _, _, _, labels = svg.ticks(3, 3, 6) -- one value: a range around it
    assert.are.same({ "2.6", "2.8", "3.0", "3.2", "3.4" }, labels)
  end)

  it("on a log axis are decades, with 2 and 5 between them over a short range", function()
    local lo, hi, _, labels = svg.log_ticks(0.013, 0.7)
    assert.are.same({ 0.01, 1 }, { lo, hi })
    assert.are.same({ "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1" }, labels)
    _, _, _, labels = svg.log_ticks(2e-7, 3)
    assert.are.same({ "1e-7", "1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1", "10" }, labels)
  end)

  it("keeps one colour per member", function()
    assert.are.equal(svg.color(3), svg.color(3))
    assert.are_not.equal(svg.color(1), svg.color(2))
    assert.are.equal(svg.color(1), svg.color(21)) -- 20 colours, then again
  end)
end)

describe("a run's pictures and index.html", function()
  local dir, r, e
  setup(function()
    dir = helper.tmpname()
    local base = pbt.load_experiment("spec/fixtures/linear.lua", { population = 6, steps = 24, every = 4 })
    -- the same population with a choice among its hyperparameters
    e = pbt.experiment{ name = "linear", population = 6, seed = 7, mode = "min", sync = false,
      space = { lr = pbt.loguniform(0.05, 0.5), opt = pbt.choice{ "sgd", "adam" } },
      init = base.init, step = base.step, eval = base.eval, ready = base.ready, exploit = base.exploit,
      explore = pbt.explore.perturb_or_resample{ probability = 0.5 }, budget = base.budget }
    r = e:run{ out = dir, workers = 1, progress = false }
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("draw an exploit for every exploit event, and show choices by their values", function()
    local exploits = 0
    for _, ev in ipairs(r.events) do if ev.kind == "exploit" then exploits = exploits + 1 end end
    assert.is_true(exploits > 0)
    local scores, lineage = read(dir .. "/scores.svg"), read(dir .. "/lineage.svg")
    assert.are.equal(exploits, count(scores, "<title>member %d+ copied member %d+ at step %d+</title>"))
    assert.are.equal(exploits, count(lineage, "<title>step %d+: member %d+ copied member %d+</title>"))
    for m = 1, 6 do assert.matches(">member " .. m .. "<", lineage) end
    local opt = read(dir .. "/hparam_opt.svg")
    assert.matches(">sgd<", opt)
    assert.matches(">adam<", opt)
    -- every tick label of every picture is short: no 0.3633 or 4.75 on an axis
    for _, name in ipairs({ "scores.svg", "hparam_lr.svg", "hparam_opt.svg", "lineage.svg" }) do
      local s = read(dir .. "/" .. name)
      for label in s:gmatch('fill="#333">([^<]*)<') do
        if label:match("^%-?[%d.]+$") then
          assert.is_true(#label:gsub("^%-", ""):gsub("%.", "") <= 4, name .. " tick " .. label)
        end
      end
      if os.execute("command -v xmllint >/dev/null 2>&1") then
        assert.is_true(os.execute("xmllint --noout " .. dir .. "/" .. name), name .. " is well-formed XML")
      end
    end
  end)

  it("has a members table, the best member's schedule and every picture on one page", function()
    local html = read(dir .. "/index.html")
    assert.are.equal(6, count(html, '<tr[^>]*><td class="l"><span class="sw"'))
    assert.are.equal(1, count(html, '<tr class="best"><td class="l"><span class="sw" style="background:' ..
      svg.color(r.best.member):gsub("%p", "%%%0") .. '"></span>' .. r.best.member .. "<"))
    assert.are.equal(#r.best.schedule, count(html, "<tr><td>%d+</td><td>[^<]*</td><td>[^<]*</td></tr>"))
    for _, name in ipairs({ "scores.svg", "hparam_lr.svg", "hparam_opt.svg", "lineage.svg" }) do
      assert.matches('<img src="' .. name:gsub("%p", "%%%0") .. '"', html)
    end
    assert.is_nil(html:find("https?://"), "nothing is fetched from the network")
  end)

  local chromium
  for _, c in ipairs({ "/usr/bin/chromium", "/usr/bin/chromium-browser" }) do
    local f = io.open(c, "rb")
    if f then f:close(); chromium = chromium or c end
  end
  if not chromium then
    it("is opened in Chromium: skipped, no chromium (the README's test command installs it)", function()
      pending("no /usr/bin/chromium")
    end)
    return
  end

  -- chromium headless, without the sanitizer runtime this suite may run with
  local function browse(args)
    local p = io.popen(("env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS HOME=%s timeout 120 %s --headless=new " ..
      "--no-sandbox --disable-gpu --no-first-run --disable-background-networking --enable-logging=stderr " ..
      "--v=0 %s 2>%s/chromium.err"):format(dir, chromium, args, dir))
    local out = p:read("a")
    p:close()
    return out, read(dir .. "/chromium.err")
  end

  it("loads in headless Chromium with no console message, and takes a screenshot", function()
    local dom, log = browse("--dump-dom file://" .. dir .. "/index.html")
    assert.matches('data%-loaded="yes"', dom) -- its load handler ran
    assert.is_nil(log:match("CONSOLE[^\n]*"), log:match("CONSOLE[^\n]*"))
    browse(("--hide-scrollbars --window-size=1100,2000 --screenshot=%s/report.png file://%s/index.html")
      :format(dir, dir))
    local png = read(dir .. "/report.png")
    assert.are.equal("\137PNG\r\n\26\n", png:sub(1, 8))
    assert.is_true(#png > 20000)
    -- the check can fail: a picture gone is a console message
    os.rename(dir .. "/lineage.svg", dir .. "/lineage.svg.away")
    dom, log = browse("--dump-dom file://" .. dir .. "/index.html")
    os.rename(dir .. "/lineage.svg.away", dir .. "/lineage.svg")
    assert.matches('CONSOLE[^\n]*pbt report: picture missing: lineage.svg', log)
    assert.matches("missing picture: lineage.svg", dom)
  end)
end)

describe("pbt.svg on hostile ranges", function()
  it("draws axes for ranges at the ends of the doubles without hanging or failing", function()
    local lo, hi, values, labels = svg.ticks(-1e308, 1e308)
    assert.are.same({ -1e308, 1e308 }, { lo, hi })
    assert.are.equal(#values, #labels)
    _, _, values, labels = svg.ticks(0, 1e-120)
    assert.is_true(#values >= 2 and #values <= 30)
    for _, l in ipairs(labels) do assert.is_true(#l <= 10, l) end
    _, _, values = svg.ticks(0 / 0, 1)
    assert.is_true(#values >= 2)
    local doc = svg.curves{ title = "t", runs = { { member = 1, points = { { 1, 1.5e308 }, { 2, -1.5e308 } } } }, members = 1 }
    assert.matches("</svg>", doc)
  end)
end)
