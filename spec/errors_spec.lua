-- Misuse raises, with the exact text a user sees (assert.has_error strips
-- the "file:line: " position that luaL_error adds for a Lua caller).
local pbt = require("pbt")
local T = pbt.tensor

-- each case: a label, a function that misuses the API, the exact message
local function check(cases)
  for _, c in ipairs(cases) do
    it(c[1], function() assert.has_error(c[2], c[3]) end)
  end
end

describe("pbt.Tensor misuse", function()
  local a = T.zeros(2, 3)

  describe("wrong argument types", function()
    check({
      { "zeros('a')", function() T.zeros("a") end,
        "bad argument #1 to 'zeros' (size or options table expected, got string)" },
      { "zeros(2, 'a')", function() T.zeros(2, "a") end,
        "bad argument #2 to 'zeros' (size or options table expected, got string)" },
      { "ones(true)", function() T.ones(true) end,
        "bad argument #1 to 'ones' (size or options table expected, got boolean)" },
      { "zeros(2, {}, 3)", function() T.zeros(2, {}, 3) end,
        "bad argument #3 to 'zeros' (unexpected argument after the options table)" },
      { "rand(2, {}, 3)", function() T.rand(2, {}, 3) end,
        "bad argument #3 to 'rand' (unexpected argument after the options table)" },
      { "full('x', 1)", function() T.full("x", 1) end,
        "bad argument #1 to 'full' (size or shape table expected, got string)" },
      { "full(2)", function() T.full(2) end,
        "bad argument #2 to 'full' (number expected, got no value)" },
      { "arange('a')", function() T.arange("a") end,
        "bad argument #1 to 'arange' (number expected, got string)" },
      { "eye('a')", function() T.eye("a") end,
        "bad argument #1 to 'eye' (integer expected, got string)" },
      { "zeros_like(5)", function() T.zeros_like(5) end,
        "bad argument #1 to 'zeros_like' (pbt.Tensor expected, got number)" },
      { "a:copy_(5)", function() a:copy_(5) end,
        "bad argument #1 to 'copy_' (pbt.Tensor expected, got number)" },
      { "a:fill_('x')", function() a:fill_("x") end,
        "bad argument #1 to 'fill_' (number expected, got string)" },
      { "a.numel(5)", function() a.numel(5) end,
        "bad argument #1 to 'numel' (pbt.Tensor expected, got number)" },
      { "a:get('x', 1)", function() a:get("x", 1) end,
        "bad argument #1 to 'get' (integer expected, got string)" },
      { "a:set(1, 1, 'x')", function() a:set(1, 1, "x") end,
        "bad argument #3 to 'set' (number expected, got string)" },
      { "a:view(2, 3, 'x')", function() a:view(2, 3, "x") end,
        "bad argument #3 to 'view' (size expected, got string)" },
      { "a:expand(2, 3, 'x')", function() a:expand(2, 3, "x") end,
        "bad argument #3 to 'expand' (size expected, got string)" },
      { "tensor('x')", function() T("x") end,
        "bad argument #1 to 'T' (table or number expected, got string)" },
      { "tensor({1, 'x'})", function() T({ 1, "x" }) end,
        "bad argument #1 to 'T' (number expected in nested table, got string)" },
      { "rand(2, {generator = 5})", function() T.rand(2, { generator = 5 }) end,
        "bad argument #2 to 'rand' (field 'generator' is not a pbt.Generator)" },
      { "a:uniform_(0, 1, 5)", function() a:uniform_(0, 1, 5) end,
        "bad argument #3 to 'uniform_' (pbt.Generator expected, got number)" },
      { "g.uniform(tensor)", function() pbt.Generator(1).uniform(a) end,
        "bad argument #1 to 'uniform' (pbt.Generator expected, got pbt.Tensor)" },
      { "Generator('x')", function() pbt.Generator("x") end,
        "bad argument #1 to 'Generator' (integer expected, got string)" },
      { "manual_seed()", function() pbt.manual_seed() end,
        "bad argument #1 to 'manual_seed' (integer expected, got no value)" },
      { "a:copy_(generator)", function() a:copy_(pbt.Generator(1)) end,
        "bad argument #1 to 'copy_' (pbt.Tensor expected, got pbt.Generator)" },
    })

    -- a tensor is known by its size and a tag inside, not by its metatable
    -- alone: another userdata that debug.setmetatable gave the tensor
    -- metatable is not read as a tensor (its memory is not one)
    it("a userdata given the tensor metatable by debug.setmetatable", function()
      local g = pbt.Generator(1)
      local own = debug.getmetatable(g)
      debug.setmetatable(g, debug.getmetatable(a))
      local results = {}
      for _, f in ipairs({
        function() return a + g end,
        function() return g:numel() end,
        function() return tostring(g) end,
        function() return a:copy_(g) end,
      }) do
        results[#results + 1] = table.pack(pcall(f))
      end
      debug.setmetatable(g, own)
      for i, r in ipairs(results) do -- (before: read as a tensor, no error)
        assert.is_false(r[1], "case " .. i)
      end
      -- the binding's check names it (the arithmetic path: not a tensor, not a number)
      for i = 2, 4 do
        local msg = tostring(results[i][2])
        assert.truthy(msg:find("not a pbt.Tensor (a userdata given its metatable)", 1, true), msg)
      end
      assert.is_number(g:uniform()) -- the generator itself is untouched
    end)

    -- the other userdata types are known by a tag after their bytes, not by
    -- their metatable alone: a tensor that debug.setmetatable gave one of
    -- theirs is refused by each of their methods and metamethods, and its
    -- own bytes are left as they were (before the tag, g:uniform() on such
    -- a tensor returned a number read off its header, and a generator
    -- option wrote a generator's state over it)
    it("a tensor given another pbt type's metatable by debug.setmetatable", function()
      local core = require("pbt.core")
      local threads = core.threads
      local db_path = os.tmpname()
      -- one of each type, so that its metatable is in the registry
      local keep = {
        pbt.Generator(1),
        core.gp.new({ { 0.1 }, { 0.5 } }, { 1, 2 },
          { variance = 1, lengthscale = 1, epsilon = 0.1, noise = 1 }),
        core.population.new({ size = 1, hparams = {}, window = 2 }),
        core.sql.open(db_path),
        core.sql.blob("x"),
        threads.channel(),
      }
      keep[4]:exec("CREATE TABLE t (x)") -- a statement (pbt.SQLStatement)
      keep[6]:send("x")
      assert.are.equal("x", keep[6]:receive()) -- a message buffer (pbt.Buffer)
      threads.shared_get("errors_spec/none") -- the state's registry (pbt.Shared)
      -- a start that fails after making its handle (pbt.Workers)
      assert.is_false((pcall(threads.start, { count = 1 })))
      local names = { "pbt.Generator", "pbt.GP", "pbt.Population", "pbt.SQL", "pbt.SQLStatement",
        "pbt.SQLBlob", "pbt.Channel", "pbt.Shared", "pbt.Workers", "pbt.Allocator",
        "pbt.Buffer" }
      local reg = debug.getregistry()
      local t = T.tensor({ 1, 2, 3 })
      local tensor_mt = debug.getmetatable(t)
      local calls = 0
      -- the C functions: methods written in Lua (pbt.population adds some)
      -- reach the memory only through them
      local function is_c(f) return type(f) == "function" and debug.getinfo(f, "S").what == "C" end
      for _, name in ipairs(names) do
        local mt = reg[name]
        assert.is_table(mt, name)
        local fns = {}
        for k, v in pairs(mt) do
          if is_c(v) then fns[#fns + 1] = { k, v } end
        end
        if type(mt.__index) == "table" then
          for k, v in pairs(mt.__index) do
            if is_c(v) then fns[#fns + 1] = { k, v } end
          end
        end
        assert.is_true(#fns > 0 or name == "pbt.SQLBlob", name) -- (a blob is a marker: no methods)
        for _, f in ipairs(fns) do
          debug.setmetatable(t, mt)
          local ok, msg = pcall(f[2], t)
          debug.setmetatable(t, tensor_mt)
          calls = calls + 1
          assert.is_false(ok, name .. ":" .. f[1])
          assert.truthy(tostring(msg):find("not a " .. name .. " (a userdata given its metatable)",
            1, true), name .. ":" .. f[1] .. ": " .. tostring(msg))
        end
      end
      assert.is_true(calls >= 30)
      assert.are.same({ 1, 2, 3 }, t:totable()) -- its header and data untouched
      -- as an option or a bound value, it is not taken for one either
      local function disguised(name, fn, ...)
        debug.setmetatable(t, reg[name])
        local ok, msg = pcall(fn, ...)
        debug.setmetatable(t, tensor_mt)
        assert.is_false(ok, name)
        return tostring(msg)
      end
      local msg = disguised("pbt.Generator", T.rand, 2, { generator = t })
      assert.truthy(msg:find("'generator' is not a pbt.Generator", 1, true), msg)
      local gp2 = core.gp.new({ { 0, 0.1 }, { 1, 0.5 } }, { 1, 2 },
        { variance = 1, lengthscale = 1, epsilon = 0.1, noise = 1 })
      msg = disguised("pbt.Generator", core.gp.ucb_max, gp2, gp2,
        { fixed = { 0.5 }, kappa = 1, generator = t })
      assert.truthy(msg:find("option 'generator' must be a pbt.Generator", 1, true), msg)
      local start = { count = 1, module = "none", path = "", cpath = "", population = keep[3],
        tasks = keep[6], results = keep[6] }
      for _, opt in ipairs({ { "population", "pbt.Population" }, { "tasks", "pbt.Channel" },
          { "results", "pbt.Channel" } }) do
        local was = start[opt[1]]
        start[opt[1]] = t
        msg = disguised(opt[2], threads.start, start)
        start[opt[1]] = was
        assert.truthy(msg:find("option '" .. opt[1] .. "' must be a live " .. opt[2], 1, true),
          msg)
      end
      disguised("pbt.SQLBlob", keep[4].exec, keep[4], "INSERT INTO t VALUES (?)", t)
      assert.are.same({ 1, 2, 3 }, t:totable())
      -- collected under another type's metatable, its __gc touches nothing
      -- (and its own __gc does not run: its storage is released first)
      local u = T.tensor({ 4, 5 })
      tensor_mt.__close(u)
      debug.setmetatable(u, reg["pbt.Population"])
      u = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      keep[4]:close()
      os.remove(db_path)
      assert.is_number(keep[1]:uniform())
    end)
  end)

  describe("negative and non-integer sizes", function()
    check({
      { "empty(-1)", function() T.empty(-1) end,
        "bad argument #1 to 'empty' (negative size -1)" },
      { "zeros({2, -2})", function() T.zeros({ 2, -2 }) end,
        "bad argument #1 to 'zeros' (negative size -2)" },
      { "ones(2.5)", function() T.ones(2.5) end,
        "bad argument #1 to 'ones' (size must be an integer)" },
      { "zeros({2, 'a'})", function() T.zeros({ 2, "a" }) end,
        "bad argument #1 to 'zeros' (size must be an integer)" },
      { "rand(-2)", function() T.rand(-2) end,
        "bad argument #1 to 'rand' (negative size -2)" },
      { "full(-1, 2)", function() T.full(-1, 2) end,
        "bad argument #1 to 'full' (negative size -1)" },
      { "eye(2.5)", function() T.eye(2.5) end,
        "bad argument #1 to 'eye' (number has no integer representation)" },
      { "eye(-1)", function() T.eye(-1) end,
        "bad argument #1 to 'eye' (negative size -1)" },
      { "linspace(0, 1, -1)", function() T.linspace(0, 1, -1) end,
        "bad argument #3 to 'linspace' (negative size -1)" },
      { "linspace(0, 1, 2.5)", function() T.linspace(0, 1, 2.5) end,
        "bad argument #3 to 'linspace' (number has no integer representation)" },
      { "a:view(-2, 3)", function() a:view(-2, 3) end,
        "bad argument #1 to 'view' (negative size -2)" },
      { "a:view(2.5)", function() a:view(2.5) end,
        "bad argument #1 to 'view' (size must be an integer)" },
      { "a:expand(2, -2)", function() a:expand(2, -2) end,
        "bad argument #2 to 'expand' (negative size -2)" },
      { "a:narrow(1, 1, -1)", function() a:narrow(1, 1, -1) end,
        "bad argument #3 to 'narrow' (negative size -1)" },
      { "a:narrow(1, 1.5, 1)", function() a:narrow(1, 1.5, 1) end,
        "bad argument #2 to 'narrow' (number has no integer representation)" },
      { "arange(0, 1, 0)", function() T.arange(0, 1, 0) end,
        "bad argument #3 to 'arange' (step must not be zero)" },
      { "arange(0 / 0)", function() T.arange(0 / 0) end,
        "arange: step must be non-zero and bounds finite" },
      { "Generator(1.5)", function() pbt.Generator(1.5) end,
        "bad argument #1 to 'Generator' (number has no integer representation)" },
    })
  end)

  describe("out-of-range dimensions", function()
    check({
      { "a:narrow(3, 1, 1)", function() a:narrow(3, 1, 1) end,
        "bad argument #1 to 'narrow' (dimension 3 out of range for a 2-d tensor)" },
      { "a:narrow(0, 1, 1)", function() a:narrow(0, 1, 1) end,
        "bad argument #1 to 'narrow' (dimension 0 out of range for a 2-d tensor)" },
      { "a:select(-3, 1)", function() a:select(-3, 1) end,
        "bad argument #1 to 'select' (dimension -3 out of range for a 2-d tensor)" },
      { "a:transpose(1, 3)", function() a:transpose(1, 3) end,
        "bad argument #2 to 'transpose' (dimension 3 out of range for a 2-d tensor)" },
      { "a:size(3)", function() a:size(3) end,
        "bad argument #1 to 'size' (dimension 3 out of range for a 2-d tensor)" },
      { "a:squeeze(3)", function() a:squeeze(3) end,
        "bad argument #1 to 'squeeze' (dimension 3 out of range for a 2-d tensor)" },
      { "a:unsqueeze(4)", function() a:unsqueeze(4) end,
        "bad argument #1 to 'unsqueeze' (dimension 4 out of range for unsqueezing a 2-d tensor)" },
      { "a:unsqueeze(-4)", function() a:unsqueeze(-4) end,
        "bad argument #1 to 'unsqueeze' (dimension -4 out of range for unsqueezing a 2-d tensor)" },
      { "a:flatten(3)", function() a:flatten(3) end,
        "bad argument #1 to 'flatten' (dimension 3 out of range for a 2-d tensor)" },
      { "a:flatten(2, 1)", function() a:flatten(2, 1) end,
        "bad argument #1 to 'flatten' (start dimension after end dimension)" },
      { "a:permute(1)", function() a:permute(1) end,
        "bad argument #1 to 'permute' (permutation of 1 dimensions for a 2-d tensor)" },
      { "a:permute(1, 3)", function() a:permute(1, 3) end,
        "bad argument #2 to 'permute' (dimension 3 out of range for a 2-d tensor)" },
      { "a:permute(2, 2)", function() a:permute(2, 2) end,
        "bad argument #2 to 'permute' (dimension 2 repeated in permutation)" },
      { "a:permute({1, 1})", function() a:permute({ 1, 1 }) end,
        "bad argument #2 to 'permute' (dimension 1 repeated in permutation)" },
      { "T of a 1-d tensor", function() return T.zeros(3).T end,
        "T: expects a 2-d tensor, got a 1-d tensor" },
      { "t() of a 3-d tensor", function() T.zeros(1, 2, 3):t() end,
        "calling 't' on bad self (expects a 2-d tensor, got a 3-d tensor)" },
    })
  end)

  describe("out-of-range indices", function()
    check({
      { "a:get(3, 1)", function() a:get(3, 1) end,
        "bad argument #1 to 'get' (index 3 out of range for size 2)" },
      { "a:get(1, -4)", function() a:get(1, -4) end,
        "bad argument #2 to 'get' (index -4 out of range for size 3)" },
      { "a:get(0, 1)", function() a:get(0, 1) end,
        "bad argument #1 to 'get' (index 0 out of range for size 2)" },
      { "a:get(1.5, 1)", function() a:get(1.5, 1) end,
        "bad argument #1 to 'get' (number has no integer representation)" },
      { "a:set(1, 4, 0)", function() a:set(1, 4, 0) end,
        "bad argument #2 to 'set' (index 4 out of range for size 3)" },
      { "a:select(1, 3)", function() a:select(1, 3) end,
        "bad argument #2 to 'select' (index 3 out of range for size 2)" },
      { "a:narrow(1, 4, 0)", function() a:narrow(1, 4, 0) end,
        "bad argument #2 to 'narrow' (start 4 out of range for size 2)" },
      { "a:narrow(2, -4, 1)", function() a:narrow(2, -4, 1) end,
        "bad argument #2 to 'narrow' (start -4 out of range for size 3)" },
      { "a:narrow(1, 2, 2)", function() a:narrow(1, 2, 2) end,
        "bad argument #3 to 'narrow' (length 2 from start 2 exceeds size 2)" },
      { "a:narrow(2, -1, 2)", function() a:narrow(2, -1, 2) end,
        "bad argument #3 to 'narrow' (length 2 from start -1 exceeds size 3)" },
    })
  end)

  describe("get/set with the wrong number of indices", function()
    check({
      { "a:get(1)", function() a:get(1) end, "get: expected 2 indices for a 2-d tensor, got 1" },
      { "a:get(1, 2, 3)", function() a:get(1, 2, 3) end,
        "get: expected 2 indices for a 2-d tensor, got 3" },
      { "0-d get(1)", function() T(1):get(1) end,
        "get: expected 0 indices for a 0-d tensor, got 1" },
      { "a:set(1, 1)", function() a:set(1, 1) end,
        "set: expected 2 indices and a value for a 2-d tensor, got 2 arguments" },
      { "a:set(1, 1, 1, 1)", function() a:set(1, 1, 1, 1) end,
        "set: expected 2 indices and a value for a 2-d tensor, got 4 arguments" },
      { "a:set()", function() a:set() end,
        "set: expected 2 indices and a value for a 2-d tensor, got 0 arguments" },
    })
  end)

  describe("item() of other than one element", function()
    check({
      { "6 elements", function() a:item() end,
        "item: tensor has 6 elements, expected exactly one" },
      { "no element", function() T.zeros(0):item() end,
        "item: tensor has 0 elements, expected exactly one" },
    })
  end)

  describe("shapes that do not fit", function()
    check({
      { "view of a non-contiguous tensor", function() a.T:view(6) end,
        "view: cannot view a non-contiguous tensor of shape [3,2] as [6] "
        .. "(use reshape or contiguous)" },
      { "view of an expanded tensor", function() T.ones(2, 1):expand(2, 3):view(6) end,
        "view: cannot view a non-contiguous tensor of shape [2,3] as [6] "
        .. "(use reshape or contiguous)" },
      { "view with the wrong count", function() a:view(4) end,
        "view: shape [4] is invalid for a tensor of shape [2,3] (6 elements)" },
      { "view with -1 that does not divide", function() a:view(4, -1) end,
        "view: shape [4,-1] is invalid for a tensor of shape [2,3] (6 elements)" },
      { "view with two -1", function() a:view(-1, -1) end,
        "view: only one size may be -1" },
      { "reshape with the wrong count", function() a:reshape(5) end,
        "reshape: shape [5] is invalid for a tensor of shape [2,3] (6 elements)" },
      { "expand of a size other than 1", function() a:expand(3, 3) end,
        "expand: cannot expand shape [2,3] to [3,3]" },
      { "expand to fewer dimensions", function() a:expand(3) end,
        "expand: cannot expand shape [2,3] to [3]" },
      { "expand_as", function() a:expand_as(T.zeros(3)) end,
        "expand_as: cannot expand shape [2,3] to [3]" },
      { "copy_ that does not broadcast", function() a:copy_(T.zeros(2)) end,
        "copy_: cannot copy a tensor of shape [2] into shape [2,3]" },
      { "ragged nested table", function() T({ { 1, 2 }, { 3 } }) end,
        "bad argument #1 to 'T' (ragged nested table: expected 2 entries at depth 2)" },
      { "table where a number belongs", function() T({ 1, { 2 } }) end,
        "bad argument #1 to 'T' (number expected in nested table, got table)" },
    })
  end)

  describe("unknown dtype", function()
    check({
      { "zeros", function() T.zeros(2, { dtype = "float16" }) end,
        "bad argument #2 to 'zeros' (unknown dtype 'float16' (float32 or float64))" },
      { "tensor", function() T({ 1 }, { dtype = "int32" }) end,
        "bad argument #2 to 'T' (unknown dtype 'int32' (float32 or float64))" },
      { "astype", function() a:astype("float16") end,
        "bad argument #1 to 'astype' (unknown dtype 'float16' (float32 or float64))" },
      { "astype without a name", function() a:astype() end,
        "bad argument #1 to 'astype' (string expected, got no value)" },
      { "ones_like", function() T.ones_like(a, { dtype = "x" }) end,
        "bad argument #2 to 'ones_like' (unknown dtype 'x' (float32 or float64))" },
      { "a number as dtype", function() T.rand(2, { dtype = 5 }) end,
        "bad argument #2 to 'rand' (unknown dtype '5' (float32 or float64))" },
    })
  end)

  describe("allocations too large for memory", function()
    -- each fails cleanly (no crash, nothing leaked) and the state stays usable.
    -- AddressSanitizer aborts on a huge malloc unless allowed to return NULL.
    local asan = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
    if asan and not (os.getenv("ASAN_OPTIONS") or ""):find("allocator_may_return_null=1", 1, true) then
      pending("under AddressSanitizer without allocator_may_return_null=1")
      return
    end
    check({
      { "empty(1e6, 1e6, 1e6)", function() T.empty(1e6, 1e6, 1e6) end,
        "empty: not enough memory" },
      { "zeros(1e6, 1e6, 1e6)", function() T.zeros(1e6, 1e6, 1e6) end,
        "zeros: not enough memory" },
      { "empty(maxinteger, 2): overflow", function() T.empty(math.maxinteger, 2) end,
        "empty: not enough memory" },
      { "empty(2^62)", function() T.empty(1 << 62) end, "empty: not enough memory" },
      -- empty, but strides of sizes whose product overflows cannot be computed
      { "empty(2^40, 2^40, 0)", function() T.empty(1 << 40, 1 << 40, 0) end,
        "empty: not enough memory" },
      { "empty(0, 2^40, 2^40)", function() T.empty(0, 1 << 40, 1 << 40) end,
        "empty: not enough memory" },
      { "ones(2^50)", function() T.ones(1 << 50, { dtype = "float64" }) end,
        "ones: not enough memory" },
      { "full", function() T.full({ 1 << 40, 1 << 40 }, 1) end, "full: not enough memory" },
      { "eye", function() T.eye(1 << 40) end, "eye: not enough memory" },
      { "linspace", function() T.linspace(0, 1, 1 << 62) end, "linspace: not enough memory" },
      { "arange", function() T.arange(1e15) end, "arange: not enough memory" },
      { "rand", function() T.rand(1e6, 1e6, 1e6) end, "rand: not enough memory" },
      { "randn", function() T.randn(1e6, 1e6, 1e6) end, "randn: not enough memory" },
      { "randint", function() T.randint(0, 1, 1e6, 1e6, 1e6) end,
        "randint: not enough memory" },
    })

    it("leaves the module usable", function()
      pcall(T.empty, 1e6, 1e6, 1e6)
      assert.are.same({ 1, 1 }, T.ones(2):totable())
    end)
  end)

  describe("too many dimensions (at most 8)", function()
    check({
      { "empty with 9 sizes", function() T.empty(1, 1, 1, 1, 1, 1, 1, 1, 1) end,
        "bad argument #9 to 'empty' (at most 8 dimensions allowed)" },
      { "empty with a table of 9", function() T.empty({ 1, 1, 1, 1, 1, 1, 1, 1, 1 }) end,
        "bad argument #1 to 'empty' (9 dimensions (at most 8 allowed))" },
      { "rand with 9 sizes", function() T.rand(1, 1, 1, 1, 1, 1, 1, 1, 1) end,
        "bad argument #9 to 'rand' (at most 8 dimensions allowed)" },
      { "view to 9", function() a:view(1, 1, 1, 1, 1, 1, 1, 2, 3) end,
        "bad argument #9 to 'view' (at most 8 dimensions allowed)" },
      { "expand to 9", function() a:expand(1, 1, 1, 1, 1, 1, 1, 2, 3) end,
        "bad argument #9 to 'expand' (at most 8 dimensions allowed)" },
      { "unsqueeze of an 8-d tensor", function() T.zeros(1, 1, 1, 1, 1, 1, 1, 1):unsqueeze(1) end,
        "calling 'unsqueeze' on bad self (a tensor has at most 8 dimensions)" },
      { "9 levels of nesting", function() T({ { { { { { { { { 1 } } } } } } } } }) end,
        "bad argument #1 to 'T' (more than 8 levels of nesting)" },
    })
  end)

  describe("a released tensor", function()
    local dead
    do
      local t <close> = T.zeros(2)
      dead = t
    end
    check({
      { "method", function() dead:numel() end,
        "calling 'numel' on bad self (tensor has been released)" },
      { "argument", function() T.zeros(2):copy_(dead) end,
        "bad argument #1 to 'copy_' (tensor has been released)" },
    })
  end)
end)

describe("pbt.Generator misuse", function()
  local g = pbt.Generator(1)
  check({
    { "integer(2, 1)", function() g:integer(2, 1) end,
      "bad argument #2 to 'integer' (empty interval [2, 1])" },
    { "integer(1.5, 2)", function() g:integer(1.5, 2) end,
      "bad argument #1 to 'integer' (number has no integer representation)" },
    { "normal with std < 0", function() g:normal(0, -1) end,
      "bad argument #2 to 'normal' (standard deviation must be >= 0)" },
    { "uniform('x')", function() g:uniform("x") end,
      "bad argument #1 to 'uniform' (number expected, got string)" },
    { "randint(5, 1, 2)", function() T.randint(5, 1, 2) end,
      "bad argument #2 to 'randint' (empty interval [5, 1])" },
    { "normal_ with std < 0", function() T.zeros(2):normal_(0, -1) end,
      "bad argument #2 to 'normal_' (standard deviation must be >= 0)" },
  })
end)
