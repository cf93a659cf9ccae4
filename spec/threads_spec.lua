-- pbt.core.threads (csrc/lpbt_threads.c, csrc/pbt_channel.c): channels, the
-- registry of shared values, CPU and BLAS thread counts; and pbt.shared
-- (lua/pbt/shared.lua), the Lua face of the registry.  Worker threads
-- (threads.start) are specified elsewhere.
-- Expected values are written by hand or read from the system (nproc).
local pbt = require("pbt")
local core = require("pbt.core")
local threads = core.threads
local T = pbt.tensor

-- The registry lives as long as the process (every spec file of a busted
-- run shares it): each test takes names of its own.
local serial = 0
local function fresh_name(what)
  serial = serial + 1
  return ("threads_spec/%s/%d"):format(what, serial)
end

-- the message of the error fn raises (fn called with the arguments given)
local function error_of(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert.is_false(ok)
  return msg
end

describe("pbt.core.threads", function()
  it("runs under Lua 5.4", function() assert.are.equal("Lua 5.4", _VERSION) end)

  describe("channel()", function()
    it("delivers messages in the order they were sent", function()
      local ch = threads.channel()
      assert.are.equal(0, ch:pending())
      local sent = { "first", "second", "third", "", "fifth" }
      for k, s in ipairs(sent) do
        ch:send(s)
        assert.are.equal(k, ch:pending())
      end
      for k, s in ipairs(sent) do
        assert.are.equal(s, ch:receive())
        assert.are.equal(#sent - k, ch:pending())
      end
    end)

    it("keeps messages as bytes: zero bytes, every byte value, long strings", function()
      local ch = threads.channel()
      local bytes = {}
      for b = 0, 255 do bytes[#bytes + 1] = string.char(b) end
      local cases = {
        "a\0b\0",
        "\0",
        table.concat(bytes),
        string.pack("<i8d", -7, 0.1),
        string.rep("xyz\0", 250000), -- a megabyte
      }
      for _, s in ipairs(cases) do ch:send(s) end
      for _, s in ipairs(cases) do
        local got = ch:receive(0)
        assert.are.equal(#s, #got)
        assert.is_true(s == got)
      end
      ch:send(string.pack("<i8d", -7, 0.1))
      local i, d = string.unpack("<i8d", ch:receive())
      assert.are.same({ -7, 0.1 }, { i, d })
    end)

    it("times out on an empty channel", function()
      local ch = threads.channel()
      for _, timeout in ipairs({ 0.05, 0, 0.001 }) do
        local got, why = ch:receive(timeout)
        assert.is_nil(got)
        assert.are.equal("timeout", why)
        assert.are.equal(2, select("#", ch:receive(timeout)))
      end
      ch:send("late")
      assert.are.equal("late", ch:receive(0.05)) -- a waiting message comes at once
      ch:send("x")
      assert.are.equal(1, select("#", ch:receive(0))) -- a message alone, no reason
    end)

    it("delivers what is left after close, then says closed", function()
      local ch = threads.channel()
      ch:send("one")
      ch:send("two\0")
      ch:close()
      assert.are.equal(2, ch:pending())
      assert.are.equal("one", ch:receive())
      assert.are.equal("two\0", ch:receive(0.05))
      assert.are.equal(0, ch:pending())
      for _, timeout in ipairs({ 0.05, 0 }) do
        local got, why = ch:receive(timeout)
        assert.is_nil(got)
        assert.are.equal("closed", why)
      end
      -- without a timeout too: a closed channel never blocks
      local got, why = ch:receive()
      assert.is_nil(got)
      assert.are.equal("closed", why)
      ch:close() -- closing twice is fine
      assert.are.equal("closed", select(2, ch:receive()))
    end)

    it("refuses to send on a closed channel", function()
      local ch = threads.channel()
      ch:send("kept")
      ch:close()
      assert.has_error(function() ch:send("x") end, "send: the channel is closed")
      assert.are.equal(1, ch:pending())
      assert.are.equal("kept", ch:receive())
    end)

    it("names its arguments in errors", function()
      local ch = threads.channel()
      assert.has_error(function() ch:send({}) end,
        "bad argument #1 to 'send' (string expected, got table)")
      assert.has_error(function() ch:send() end,
        "bad argument #1 to 'send' (string expected, got no value)")
      assert.has_error(function() ch:receive(0 / 0) end,
        "bad argument #1 to 'receive' (timeout is NaN)")
      assert.has_error(function() ch:receive("soon") end,
        "bad argument #1 to 'receive' (number expected, got string)")
      assert.has_error(function() ch.pending(3) end,
        "bad argument #1 to 'pending' (pbt.Channel expected, got number)")
      assert.are.equal(0, ch:pending())
    end)

    it("is released by <close>, after which it refuses every use", function()
      local ch = threads.channel()
      do
        local c <close> = ch
        c:send("x")
      end
      for _, use in ipairs({
        { function() ch:send("y") end, "send" },
        { function() ch:receive(0) end, "receive" },
        { function() ch:pending() end, "pending" },
        { function() ch:close() end, "close" },
      }) do
        assert.has_error(use[1], "calling '" .. use[2] .. "' on bad self (channel has been released)")
      end
      getmetatable(ch).__gc(ch) -- a second release is harmless
    end)
  end)

  describe("shared_get() / shared_put() / shared_abandon()", function()
    it("asks the first caller to make a value, then hands out views of it", function()
      local name = fresh_name("raw")
      assert.is_nil(threads.shared_get(name))
      local a, b = T({ 1, 2, 3 }), T({ { 1, 2 }, { 3, 4 } }, { dtype = "float64" })
      local bytes, views = threads.shared_put(name, "shape\0bytes", { a, b })
      assert.are.equal("shape\0bytes", bytes)
      assert.are.equal(2, #views)
      assert.are.same({ 1, 2, 3 }, views[1]:totable())
      assert.are.same({ { 1, 2 }, { 3, 4 } }, views[2]:totable())
      assert.are.equal("float64", views[2]:dtype())
      local bytes2, views2 = threads.shared_get(name)
      assert.are.equal("shape\0bytes", bytes2)
      assert.are.equal(2, #views2)
      -- views share the storages: no copy anywhere
      a:set(2, 20)
      assert.are.equal(20, views[1]:get(2))
      assert.are.equal(20, views2[1]:get(2))
      views2[2]:set(1, 1, -1)
      assert.are.equal(-1, b:get(1, 1))
      assert.are_not.equal(views[1], views2[1]) -- each call makes its own views
    end)

    it("keeps a value without tensors", function()
      local name = fresh_name("bytes only")
      assert.is_nil(threads.shared_get(name))
      threads.shared_put(name, "", {})
      local bytes, views = threads.shared_get(name)
      assert.are.equal("", bytes)
      assert.are.same({}, views)
    end)

    it("lets a maker give up, so that the next caller makes the value", function()
      local name = fresh_name("abandoned")
      assert.is_nil(threads.shared_get(name))
      threads.shared_abandon(name)
      assert.is_nil(threads.shared_get(name)) -- asked to make it again
      threads.shared_abandon(name)
      threads.shared_abandon(name) -- abandoning what nobody makes is harmless
      assert.is_nil(threads.shared_get(name))
      threads.shared_put(name, "made", {})
      threads.shared_abandon(name) -- a value that is there stays
      assert.are.equal("made", threads.shared_get(name))
    end)

    it("refuses a second put and a put of something that is not a tensor", function()
      local name = fresh_name("twice")
      assert.is_nil(threads.shared_get(name))
      threads.shared_put(name, "v1", { T.ones(2) })
      assert.has_error(function() threads.shared_put(name, "v2", {}) end,
        "shared: '" .. name .. "' is already there")
      assert.are.equal("v1", threads.shared_get(name))
      local other = fresh_name("not a tensor")
      assert.is_nil(threads.shared_get(other))
      assert.has_error(function() threads.shared_put(other, "v", { T.ones(1), "x" }) end,
        "bad argument #3 to 'shared_put' (item 2 is not a live pbt.Tensor)")
      -- the failed put gave the name up: it can be made again
      assert.is_nil(threads.shared_get(other))
      threads.shared_put(other, "v", { T.ones(1) })
      assert.are.equal("v", threads.shared_get(other))
      assert.has_error(function() threads.shared_get() end,
        "bad argument #1 to 'shared_get' (string expected, got no value)")
    end)
  end)

  describe("cpu_count()", function()
    it("is the number of CPUs this process may run on, as nproc counts them", function()
      local n = threads.cpu_count()
      assert.are.equal("integer", math.type(n))
      assert.is_true(n >= 1)
      -- nproc also reads the affinity mask (OMP_* variables would change it)
      local p = assert(io.popen("env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc"))
      local out = p:read("a")
      p:close()
      assert.are.equal(tonumber(out:match("^%s*(%d+)%s*$")), n)
    end)
  end)

  describe("blas_threads()", function()
    it("returns the count before the call, setting a new one when given", function()
      local before = threads.blas_threads()
      assert.are.equal("integer", math.type(before))
      assert.is_true(before >= 1)
      assert.are.equal(before, threads.blas_threads()) -- reading changes nothing
      assert.are.equal(before, threads.blas_threads(1))
      assert.are.equal(1, threads.blas_threads())
      local two = math.min(2, threads.cpu_count())
      assert.are.equal(1, threads.blas_threads(two))
      assert.are.equal(two, threads.blas_threads(before)) -- restore
      assert.are.equal(before, threads.blas_threads())
    end)

    it("refuses a count outside 1..1024", function()
      local before = threads.blas_threads()
      for _, n in ipairs({ 0, -1, 1025 }) do
        assert.has_error(function() threads.blas_threads(n) end,
          "bad argument #1 to 'blas_threads' (thread count must be in 1..1024)")
      end
      assert.has_error(function() threads.blas_threads(1.5) end,
        "bad argument #1 to 'blas_threads' (number has no integer representation)")
      assert.are.equal(before, threads.blas_threads())
    end)
  end)
end)

describe("pbt.shared", function()
  it("is exported as pbt.shared", function()
    assert.are.equal(require("pbt.shared").shared, pbt.shared)
  end)

  it("calls the loader once per name and gives equal values after", function()
    local name, calls = fresh_name("once"), 0
    local function loader()
      calls = calls + 1
      return { n = 3, f = 2.5, neg = -0.0625, s = "a\0b", yes = true, no = false,
        list = { 10, 20, { deep = { deeper = "x" } } }, [7] = "seven", big = math.maxinteger }
    end
    local want = { n = 3, f = 2.5, neg = -0.0625, s = "a\0b", yes = true, no = false,
      list = { 10, 20, { deep = { deeper = "x" } } }, [7] = "seven", big = math.maxinteger }
    local v1 = pbt.shared(name, loader)
    assert.are.equal(1, calls)
    assert.are.same(want, v1)
    local v2 = pbt.shared(name, function() error("called again") end)
    assert.are.same(want, v2)
    assert.are_not.equal(v1, v2) -- rebuilt for each call
    assert.are_not.equal(v1.list, v2.list)
    v1.list[1] = 99 -- so changing one changes nothing else
    assert.are.equal(10, v2.list[1])
    assert.are.same(want, pbt.shared(name, loader))
    assert.are.equal(1, calls)
  end)

  it("keeps integers integers and floats floats", function()
    local v = pbt.shared(fresh_name("numbers"), function()
      return { i = 3, f = 3.0, k = { [1] = 1.0, [2] = 2 }, min = math.mininteger }
    end)
    assert.are.equal("integer", math.type(v.i))
    assert.are.equal("float", math.type(v.f))
    assert.are.equal("float", math.type(v.k[1]))
    assert.are.equal("integer", math.type(v.k[2]))
    assert.are.equal(math.mininteger, v.min)
    for k in pairs(v.k) do assert.are.equal("integer", math.type(k)) end
  end)

  it("takes plain values as a whole", function()
    local cases = { 42, 0.5, "text\0", true, false, {} }
    for _, value in ipairs(cases) do
      local got = pbt.shared(fresh_name("plain"), function() return value end)
      assert.are.same(value, got)
      assert.are.equal(math.type(value), math.type(got))
    end
  end)

  it("shares tensors: a change through one value shows through every other", function()
    local name = fresh_name("tensors")
    local x = T({ { 1, 2, 3 }, { 4, 5, 6 } })
    local y = T({ 7, 8 }, { dtype = "float64" })
    local v1 = pbt.shared(name, function() return { x = x, parts = { y = y, label = "y" } } end)
    local v2 = pbt.shared(name, function() error("called again") end)
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, v2.x:totable())
    assert.are.same({ 2, 3 }, v2.x:shape())
    assert.are.equal("float64", v2.parts.y:dtype())
    assert.are.equal("y", v2.parts.label)
    v1.x:set(2, 3, 60)
    assert.are.equal(60, v2.x:get(2, 3))
    assert.are.equal(60, x:get(2, 3)) -- the loader's own tensor too
    v2.parts.y:fill_(0.5)
    assert.are.same({ 0.5, 0.5 }, v1.parts.y:totable())
    assert.are.same({ 0.5, 0.5 }, y:totable())
  end)

  it("names a bad name or a bad loader", function()
    local cases = {
      { { 1, function() end }, "pbt.shared: name must be a non-empty string without zero bytes, got number" },
      { { nil, function() end }, "pbt.shared: name must be a non-empty string without zero bytes, got nil" },
      { { "", function() end }, 'pbt.shared: name must be a non-empty string without zero bytes, got ""' },
      { { "a\0b", function() end }, 'pbt.shared: name must be a non-empty string without zero bytes, got "a\\0b"' },
      { { fresh_name("bad loader") }, "pbt.shared: loader must be a function, got nil" },
      { { fresh_name("bad loader"), {} }, "pbt.shared: loader must be a function, got table" },
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[2], error_of(pbt.shared, table.unpack(c[1], 1, 2)))
    end
  end)

  it("reports a loader's error and lets the name be loaded again", function()
    local name = fresh_name("failing")
    assert.are.equal("pbt.shared: loading '" .. name .. "' failed: disk on fire",
      error_of(pbt.shared, name, function() error("disk on fire", 0) end))
    assert.are.equal("pbt.shared: loading '" .. name .. "' failed: still broken",
      error_of(pbt.shared, name, function() error("still broken", 0) end))
    local calls = 0
    local v = pbt.shared(name, function()
      calls = calls + 1
      return { ok = true }
    end)
    assert.are.same({ ok = true }, v)
    assert.are.same({ ok = true }, pbt.shared(name, function() error("called again") end))
    assert.are.equal(1, calls)
  end)

  local refused = {
    { "a function", function() return { a = { f = print } } end,
      "NAME.a.f is a function: a shared value holds tables, tensors, numbers, strings and booleans" },
    { "a function in an array", function() return { list = { 1, 2, function() end } } end,
      "NAME.list.3 is a function: a shared value holds tables, tensors, numbers, strings and booleans" },
    { "a coroutine", function() return { co = coroutine.create(print) } end,
      "NAME.co is a thread: a shared value holds tables, tensors, numbers, strings and booleans" },
    { "a function as the value", function() return print end,
      "NAME is a function: a shared value holds tables, tensors, numbers, strings and booleans" },
    { "a float key", function() return { inner = { [1.5] = 1 } } end,
      "NAME.inner has a key of type number (strings and integers only)" },
    { "a boolean key", function() return { [true] = 1 } end,
      "NAME has a key of type boolean (strings and integers only)" },
    { "a cycle", function()
        local t = { child = {} }
        t.child.back = t
        return t
      end, "the value has a cycle at NAME.child.back" },
  }
  for _, c in ipairs(refused) do
    it("refuses " .. c[1] .. ", naming its path, and lets the name be loaded again", function()
      local name = fresh_name("refused")
      local inner = c[3]:gsub("NAME", function() return name end)
      assert.are.equal("pbt.shared: loading '" .. name .. "' failed: " .. inner,
        error_of(pbt.shared, name, c[2]))
      assert.are.same({ 1 }, pbt.shared(name, function() return { 1 } end))
    end)
  end

  it("refuses a released tensor as pbt.shared, naming its path", function()
    local name = fresh_name("released")
    local msg = error_of(pbt.shared, name, function()
      local t = T.ones(2)
      getmetatable(t).__close(t)
      return { x = { t } }
    end)
    assert.are.equal("pbt.shared: loading '" .. name .. "' failed: " .. name .. ".x.1 is a released tensor", msg)
    assert.are.same({ 2 }, pbt.shared(name, function() return { 2 } end))
  end)

  it("refuses names with a zero byte, here and in the binding", function()
    assert.has_error(function() pbt.core.threads.shared_get("a\0b") end,
      "bad argument #1 to 'shared_get' (name contains a zero byte)")
    assert.has_error(function() pbt.core.threads.shared_abandon("a\0b") end,
      "bad argument #1 to 'shared_abandon' (name contains a zero byte)")
  end)

  it("refuses a loader that asks for its own name (it would wait for itself)", function()
    local name = fresh_name("self")
    local msg = error_of(pbt.shared, name, function() return pbt.shared(name, function() return 1 end) end)
    assert.are.equal("pbt.shared: loading '" .. name .. "' failed: pbt.shared: the loader of '" .. name ..
      "' asks for '" .. name .. "' itself", msg)
    assert.are.same({ 3 }, pbt.shared(name, function() return { 3 } end))
  end)

  it("takes a table that appears twice (not a cycle) and rebuilds it twice", function()
    local shared_part = { 1, 2 }
    local v = pbt.shared(fresh_name("dag"), function() return { a = shared_part, b = shared_part } end)
    assert.are.same({ a = { 1, 2 }, b = { 1, 2 } }, v)
  end)
end)
