-- pbt.save / pbt.load, the file format, t:tobytes() and frombytes.
-- Expected bytes are assembled here with string.pack and a CRC-32 written
-- below in plain Lua, so the documented format is pinned independently of
-- the C code.
local pbt = require("pbt")
local T = pbt.tensor

-- ---- helpers --------------------------------------------------------------------

-- CRC-32 (IEEE 802.3, reflected, as zlib), bit by bit.
local function crc32(s)
  local crc = 0xFFFFFFFF
  for i = 1, #s do
    crc = crc ~ s:byte(i)
    for _ = 1, 8 do
      if crc & 1 == 1 then crc = (crc >> 1) ~ 0xEDB88320 else crc = crc >> 1 end
    end
  end
  return crc ~ 0xFFFFFFFF
end

-- A whole file around a body, as pbt_io.h documents it.
local function file_of(body, version)
  return string.pack("<c4 I4 I8 I4", "PBT\0", version or 1, #body, crc32(body)) .. body
end

local readfile, writefile = require("spec.helper").readfile, require("spec.helper").writefile

local function listdir(dir)
  local p = assert(io.popen("ls -A '" .. dir .. "'"))
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

local exists = require("spec.helper").exists

local function errmsg(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert(not ok, "expected an error")
  return msg
end

-- the bytes of the elements, row-major, little-endian
local function packed(fmt, values)
  local parts = {}
  for i, v in ipairs(values) do parts[i] = string.pack("<" .. fmt, v) end
  return table.concat(parts)
end

local dir
local function path(name) return dir .. "/" .. name end

local function roundtrip(value)
  local p = path("rt.pbt")
  assert.is_true(pbt.save(p, value))
  return pbt.load(p)
end

describe("pbt.save / pbt.load", function()
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir '" .. dir .. "'"))
  end)
  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("the CRC-32 of the spec is the standard one", function()
    assert.are.equal(0xCBF43926, crc32("123456789"))
  end)

  describe("tensors", function()
    local cases = {
      { name = "float32 [2,3]", make = function() return T.arange(6):view(2, 3) end,
        dtype = "float32", shape = { 2, 3 }, values = { { 0, 1, 2 }, { 3, 4, 5 } } },
      { name = "float64 [2,2,2]",
        make = function()
          return T.tensor({ { { 0, 0.25 }, { 0.5, 0.75 } }, { { 1, 1.25 }, { 1.5, 1.75 } } },
            { dtype = "float64" })
        end,
        dtype = "float64", shape = { 2, 2, 2 },
        values = { { { 0, 0.25 }, { 0.5, 0.75 } }, { { 1, 1.25 }, { 1.5, 1.75 } } } },
      { name = "0-d float32", make = function() return T.tensor(3.5) end,
        dtype = "float32", shape = {}, values = 3.5 },
      { name = "0-d float64", make = function() return T.tensor(-0.125, { dtype = "float64" }) end,
        dtype = "float64", shape = {}, values = -0.125 },
      { name = "empty [0,3]", make = function() return T.zeros(0, 3) end,
        dtype = "float32", shape = { 0, 3 }, values = {} },
      { name = "transposed float32", make = function() return T.arange(6):view(2, 3).T end,
        dtype = "float32", shape = { 3, 2 }, values = { { 0, 3 }, { 1, 4 }, { 2, 5 } } },
      { name = "transposed float64",
        make = function() return T.arange(6, { dtype = "float64" }):view(2, 3).T end,
        dtype = "float64", shape = { 3, 2 }, values = { { 0, 3 }, { 1, 4 }, { 2, 5 } } },
      { name = "narrowed", make = function() return T.arange(12):view(3, 4):narrow(2, 2, 2) end,
        dtype = "float32", shape = { 3, 2 }, values = { { 1, 2 }, { 5, 6 }, { 9, 10 } } },
      { name = "expanded", make = function() return T.arange(3):view(1, 3):expand(2, 3) end,
        dtype = "float32", shape = { 2, 3 }, values = { { 0, 1, 2 }, { 0, 1, 2 } } },
    }
    for _, c in ipairs(cases) do
      it("round trip: " .. c.name, function()
        local t = roundtrip(c.make())
        assert.are.equal(c.dtype, t:dtype())
        assert.are.same(c.shape, t:shape())
        assert.is_true(t:is_contiguous())
        if #c.shape == 0 then
          assert.are.equal(c.values, t:item())
        elseif t:numel() > 0 then
          assert.are.same(c.values, t:totable())
        end
      end)
    end

    it("float32 values keep their exact bits", function()
      local bits = string.pack("<fff", 0.1, -1e-30, 3.4e38)
      local t = roundtrip(T.frombytes(bits, "float32"))
      assert.are.equal(bits, t:tobytes())
    end)

    it("a loaded tensor is a fresh copy", function()
      local a = T.zeros(2)
      local b = roundtrip(a)
      b:fill_(7)
      assert.are.same({ 0, 0 }, a:totable())
    end)
  end)

  describe("values", function()
    it("keeps every kind of value, integers apart from floats", function()
      local v = roundtrip({
        i = 42, f = 42.0, neg = -7, maxi = math.maxinteger, mini = math.mininteger,
        half = 0.5, inf = math.huge, ninf = -math.huge, nz = -0.0, nan = 0 / 0,
        s = "a\0b\255", empty = "", yes = true, no = false,
        list = { 10, 20, 30 },
        nested = { deep = { deeper = { w = T.ones(2) } } },
        [1] = "one", [2.5] = "two and a half", [-1] = "minus one",
      })
      local kinds = {
        i = "integer", f = "float", neg = "integer", maxi = "integer",
        mini = "integer", half = "float", inf = "float", ninf = "float",
        nz = "float", nan = "float",
      }
      for k, kind in pairs(kinds) do assert.are.equal(kind, math.type(v[k]), k) end
      assert.are.equal(42, v.i)
      assert.are.equal(42.0, v.f)
      assert.are.equal(-7, v.neg)
      assert.are.equal(math.maxinteger, v.maxi)
      assert.are.equal(math.mininteger, v.mini)
      assert.are.equal(0.5, v.half)
      assert.are.equal(math.huge, v.inf)
      assert.are.equal(-math.huge, v.ninf)
      assert.are.equal(-math.huge, 1 / v.nz)
      assert.is_true(v.nan ~= v.nan)
      assert.are.equal("a\0b\255", v.s)
      assert.are.equal(4, #v.s)
      assert.are.equal("", v.empty)
      assert.is_true(v.yes)
      assert.is_false(v.no)
      assert.are.same({ 10, 20, 30 }, v.list)
      assert.are.same({ 1, 1 }, v.nested.deep.deeper.w:totable())
      assert.are.equal("one", v[1])
      assert.are.equal("two and a half", v[2.5])
      assert.are.equal("minus one", v[-1])
      assert.are.equal("float", math.type(next({ [2.5] = 1 })))
    end)

    local scalars = { 0, -1, 1.5, "", "\0\1\2", true, false }
    for _, s in ipairs(scalars) do
      it("a lone " .. tostring(math.type(s) or type(s)) .. " value", function()
        local v = roundtrip(s)
        assert.are.equal(s, v)
        assert.are.equal(math.type(s), math.type(v))
      end)
    end

    it("a large binary string", function()
      local parts = {}
      for i = 0, 65535 do parts[#parts + 1] = string.char(i % 256) end
      local s = table.concat(parts)
      assert.are.equal(s, roundtrip({ blob = s }).blob)
    end)

    it("writes a table referenced twice twice (two tables on load)", function()
      local shared = { 1, 2 }
      local v = roundtrip({ a = shared, b = shared })
      assert.are.same({ 1, 2 }, v.a)
      assert.are.same({ 1, 2 }, v.b)
      assert.are_not.equal(v.a, v.b)
    end)

    it("reads tables raw and does not save metatables", function()
      local t = setmetatable({ x = 1 }, { __index = function() return 9 end })
      local v = roundtrip(t)
      assert.is_nil(getmetatable(v))
      assert.is_nil(v.y)
      assert.are.equal(1, v.x)
    end)

    it("keeps 100 levels of nesting", function()
      local root = {}
      local t = root
      for _ = 2, 100 do t.a = {}; t = t.a end
      t.a = "bottom"
      local v = roundtrip(root)
      for _ = 1, 100 do v = v.a end
      assert.are.equal("bottom", v)
    end)

    it("overwrites an existing file", function()
      local p = path("x.pbt")
      assert.is_true(pbt.save(p, "first"))
      assert.is_true(pbt.save(p, { second = true }))
      assert.are.same({ second = true }, pbt.load(p))
    end)
  end)

  describe("the format", function()
    it("writes a tensor as documented", function()
      local p = path("t.pbt")
      assert.is_true(pbt.save(p, T.arange(6, { dtype = "float64" }):view(2, 3).T))
      local body = string.pack("<B B B I8 I8", 7, 1, 2, 3, 2)
        .. packed("d", { 0, 3, 1, 4, 2, 5 })
      assert.are.equal(file_of(body), readfile(p))
    end)

    it("writes a float32 0-d tensor as documented", function()
      local p = path("s.pbt")
      assert.is_true(pbt.save(p, T.tensor(1.5)))
      assert.are.equal(file_of(string.pack("<B B B f", 7, 0, 0, 1.5)), readfile(p))
    end)

    it("writes a table with its keys sorted", function()
      local p = path("tbl.pbt")
      local v = { b = "", a = 7, [2] = true, [1] = false, [0.5] = 1.0, ab = { 1.5 } }
      assert.is_true(pbt.save(p, v))
      local body = string.pack("<B I8", 6, 6)
        .. string.pack("<B i8 B", 3, 1, 1)                 -- [1] = false
        .. string.pack("<B i8 B", 3, 2, 2)                 -- [2] = true
        .. string.pack("<B d B d", 4, 0.5, 4, 1.0)         -- [0.5] = 1.0
        .. string.pack("<B s8 B i8", 5, "a", 3, 7)         -- a = 7
        .. string.pack("<B s8 B I8", 5, "ab", 6, 1)        -- ab = {
        .. string.pack("<B i8 B d", 3, 1, 4, 1.5)          --   [1] = 1.5 }
        .. string.pack("<B s8 B s8", 5, "b", 5, "")        -- b = ""
      assert.are.equal(file_of(body), readfile(p))
    end)

    it("gives the same bytes whatever the insertion order", function()
      local a, b = {}, {}
      for i = 1, 50 do a["k" .. i] = i end
      for i = 50, 1, -1 do b["k" .. i] = i end
      assert.is_true(pbt.save(path("a.pbt"), a))
      assert.is_true(pbt.save(path("b.pbt"), b))
      assert.are.equal(readfile(path("a.pbt")), readfile(path("b.pbt")))
    end)

    it("reads a file assembled by hand", function()
      local p = path("hand.pbt")
      local body = string.pack("<B I8", 6, 2)
        .. string.pack("<B d B s8", 4, 2.5, 5, "a float key")
        .. string.pack("<B s8 B B B I8", 5, "w", 7, 0, 1, 2) .. packed("f", { 0.5, -2 })
      writefile(p, file_of(body))
      local v = pbt.load(p)
      assert.are.same({ 0.5, -2 }, v.w:totable())
      assert.are.equal("float32", v.w:dtype())
      assert.are.equal("a float key", v[2.5])
    end)

    it("refuses keys that could lose a value: repeated, out of order, a float equal to an integer", function()
      local p = path("keys.pbt")
      -- each body: a table of two entries; the second key starts at byte 20 (the header) + 9 + 9 + 9
      local cases = {
        { string.pack("<B I8 B i8 B i8 B i8 B i8", 6, 2, 3, 1, 3, 10, 3, 1, 3, 20),
          "table key at byte 47 is the same as the key before it" },
        { string.pack("<B I8 B s8 B i8 B s8 B i8", 6, 2, 5, "b", 3, 1, 5, "a", 3, 2),
          "table key at byte 48 is out of order after the key before it" },
        { string.pack("<B I8 B s8 B i8 B i8 B i8", 6, 2, 5, "a", 3, 1, 3, 7, 3, 2),
          "table key at byte 48 is out of order after the key before it" },
        { string.pack("<B I8 B i8 B i8 B d B i8", 6, 2, 3, 1, 3, 10, 4, 2.0, 3, 20),
          "table key at byte 47 is the float 2, equal to an integer key" },
      }
      for _, c in ipairs(cases) do
        writefile(p, file_of(c[1]))
        assert.has_error(function() pbt.load(p) end, ("load: %s: %s"):format(p, c[2]))
      end
    end)
  end)

  describe("failures of the world", function()
    it("a missing file gives nil, message", function()
      local p = path("missing.pbt")
      local v, msg = pbt.load(p)
      assert.is_nil(v)
      assert.are.equal("cannot open " .. p .. ": No such file or directory", msg)
    end)

    it("a directory gives nil, message", function()
      local v, msg = pbt.load(dir)
      assert.is_nil(v)
      assert.are.equal("cannot read " .. dir .. ": Is a directory", msg)
    end)

    it("saving into a missing directory gives nil, message", function()
      local p = path("nodir/x.pbt")
      local ok, msg = pbt.save(p, 1)
      assert.is_nil(ok)
      assert.are.equal("cannot write " .. p .. ": No such file or directory", msg)
      assert.are.same({}, listdir(dir))
    end)

    it("saving over a directory gives nil, message and leaves no temporary file", function()
      assert(os.execute("mkdir '" .. path("sub") .. "'"))
      local ok, msg = pbt.save(path("sub"), { 1, 2, 3 })
      assert.is_nil(ok)
      assert.are.equal("cannot write " .. path("sub") .. ": Is a directory", msg)
      assert.are.same({ "sub" }, listdir(dir))
    end)

    it("leaves no temporary file after a success", function()
      assert.is_true(pbt.save(path("x.pbt"), { w = T.ones(3, 3) }))
      assert.is_true(pbt.save(path("x.pbt"), { w = T.ones(3, 3) }))
      assert.are.same({ "x.pbt" }, listdir(dir))
    end)
  end)

  describe("corrupt files raise", function()
    local function saved()
      local p = path("c.pbt")
      assert.is_true(pbt.save(p, { w = T.arange(10), name = "net" }))
      return p, readfile(p)
    end

    local function load_error(p) return errmsg(pbt.load, p) end

    it("a flipped byte in the payload", function()
      local p, s = saved()
      for _, at in ipairs({ 21, #s // 2, #s }) do
        local b = s:byte(at) ~ 0x10
        writefile(p, s:sub(1, at - 1) .. string.char(b) .. s:sub(at + 1))
        assert.matches("load: " .. p .. ": checksum mismatch (file is corrupted)",
          load_error(p), 1, true)
      end
    end)

    it("a flipped byte in the stored CRC", function()
      local p, s = saved()
      writefile(p, s:sub(1, 16) .. string.char(s:byte(17) ~ 1) .. s:sub(18))
      assert.matches("load: " .. p .. ": checksum mismatch (file is corrupted)",
        load_error(p), 1, true)
    end)

    it("a truncated file", function()
      local p, s = saved()
      for _, n in ipairs({ 0, 2, 4, 8, 19 }) do
        writefile(p, s:sub(1, n))
        assert.matches("load: " .. p .. ": truncated at byte " .. n
          .. " (the header is 20 bytes)", load_error(p), 1, true)
      end
      for _, n in ipairs({ 20, 21, #s // 2, #s - 1 }) do
        writefile(p, s:sub(1, n))
        assert.matches("load: " .. p .. ": truncated at byte " .. n
          .. " (expected " .. #s .. " bytes)", load_error(p), 1, true)
      end
    end)

    it("bytes after the end", function()
      local p, s = saved()
      writefile(p, s .. "xyz")
      assert.matches("load: " .. p .. ": 3 unexpected bytes after the end of the data at byte "
        .. #s, load_error(p), 1, true)
    end)

    it("wrong magic bytes", function()
      local p, s = saved()
      for _, bad in ipairs({ "PBX\0" .. s:sub(5), "hello, world", "X" }) do
        writefile(p, bad)
        assert.matches("load: " .. p .. ": not a pbt file (bad magic bytes)",
          load_error(p), 1, true)
      end
    end)

    it("an unknown version", function()
      local p, s = saved()
      writefile(p, s:sub(1, 4) .. string.pack("<I4", 2) .. s:sub(9))
      assert.matches("load: " .. p .. ": unsupported format version 2 (this build reads version 1)",
        load_error(p), 1, true)
    end)

    -- bodies with a valid CRC but bad records (a writer bug or a crafted file)
    local bodies = {
      { "unknown tag", string.pack("B", 9), "unknown record tag 0x09 at byte 20" },
      { "empty body", "", "value at byte 20 runs past the end of the data" },
      { "short integer", string.pack("<B I2", 3, 1), "integer at byte 20 runs past the end of the data" },
      { "short float", string.pack("<B", 4), "float at byte 20 runs past the end of the data" },
      { "long string", string.pack("<B I8", 5, 100) .. "abc",
        "string of 100 bytes at byte 20 runs past the end of the data" },
      { "huge string", string.pack("<B I8", 5, -1),
        "string of 18446744073709551615 bytes at byte 20 runs past the end of the data" },
      { "huge table", string.pack("<B I8", 6, 1 << 60),
        "table of 1152921504606846976 pairs at byte 20 runs past the end of the data" },
      { "short table", string.pack("<B I8", 6, 1) .. string.pack("<B i8", 3, 1),
        "table of 1 pairs at byte 20 runs past the end of the data" },
      { "boolean key", string.pack("<B I8 B B", 6, 1, 2, 2) .. string.rep("\0", 8),
        "bad table key at byte 29 (record tag 0x02; a key is an integer, a float or a string)" },
      { "NaN key", string.pack("<B I8 B d B", 6, 1, 4, 0 / 0, 1) .. string.rep("\0", 8),
        "bad table key at byte 29 (NaN)" },
      { "missing pair", string.pack("<B I8", 6, 2) .. string.pack("<B i8 B", 3, 1, 1)
        .. string.rep("\1", 10),
        "bad table key at byte 39 (record tag 0x01; a key is an integer, a float or a string)" },
      { "tensor dtype", string.pack("<B B B", 7, 2, 0) .. "\0\0\0\0",
        "tensor at byte 20 has an unknown dtype 2" },
      { "tensor ndim", string.pack("<B B B", 7, 0, 9) .. string.rep("\0", 72),
        "tensor at byte 20 has 9 dimensions (at most 8 allowed)" },
      { "tensor short shape", string.pack("<B B B I8", 7, 0, 2, 1),
        "tensor at byte 20 runs past the end of the data" },
      { "tensor huge shape", string.pack("<B B B I8 I8", 7, 0, 2, 1 << 40, 1 << 40),
        "tensor of shape [1099511627776,1099511627776] at byte 20 runs past the end of the data" },
      { "tensor overflowing shape", string.pack("<B B B I8 I8", 7, 1, 2, 1 << 62, 1 << 62),
        "tensor of shape [4611686018427387904,4611686018427387904] at byte 20 runs past the end of the data" },
      { "tensor negative size", string.pack("<B B B I8", 7, 0, 1, -1),
        "tensor at byte 20 has a size 18446744073709551615 out of range" },
      { "tensor short data", string.pack("<B B B I8 f", 7, 0, 1, 2, 1.0),
        "tensor of shape [2] at byte 20 runs past the end of the data" },
      { "two values", string.pack("B B", 1, 2), "1 unexpected bytes after the value at byte 21" },
    }
    for _, c in ipairs(bodies) do
      it("a bad record: " .. c[1], function()
        local p = path("bad.pbt")
        writefile(p, file_of(c[2]))
        local msg = load_error(p)
        if c[3] then
          assert.matches("load: " .. p .. ": " .. c[3], msg, 1, true)
        else
          assert.matches("load: " .. p .. ": ", msg, 1, true)
        end
      end)
    end

    it("tables nested deeper than 100 levels", function()
      local p = path("deep.pbt")
      local head = string.pack("<B I8 B s8", 6, 1, 5, "a")
      writefile(p, file_of(string.rep(head, 101) .. "\1"))
      assert.matches("load: " .. p .. ": tables nested deeper than 100 levels at byte "
        .. (20 + 100 * #head), load_error(p), 1, true)
      writefile(p, file_of(string.rep(head, 100) .. "\1"))
      local v = pbt.load(p)
      for _ = 1, 100 do v = v.a end
      assert.is_false(v)
    end)
  end)

  describe("values that cannot be saved raise", function()
    local co = coroutine.create(function() end)
    local released = T.ones(1)
    getmetatable(released).__close(released)
    local cases = {
      { print, "save: cannot save a value of type function" },
      { nil, "save: cannot save a value of type nil" },
      { { a = { b = print } }, "save: cannot save a value of type function (at key a.b)" },
      { { list = { 1, co } }, "save: cannot save a value of type thread (at key list[2])" },
      { { f = io.stdout }, "save: cannot save a value of type userdata (at key f)" },
      { { ["a b"] = { [1.5] = { x = print } } },
        'save: cannot save a value of type function (at key ["a b"][1.5].x)' },
      { { ["\0\n"] = print }, 'save: cannot save a value of type function (at key ["\\0\\10"])' },
      { { t = { [true] = 1 } }, "save: cannot save a table key of type boolean (at key t)" },
      { { [{}] = 1 }, "save: cannot save a table key of type table" },
      { { [T.ones(1)] = 1 }, "save: cannot save a table key of type pbt.Tensor" },
      { { w = released }, "save: cannot save a released tensor (at key w)" },
    }
    for i, c in ipairs(cases) do
      it("case " .. i .. ": " .. c[2], function()
        local p = path("x.pbt")
        assert.has_error(function() pbt.save(p, c[1]) end, c[2])
        assert.are.same({}, listdir(dir))
      end)
    end

    it("a table that contains itself", function()
      local t = { x = 1 }
      t.self = t
      assert.has_error(function() pbt.save(path("x.pbt"), t) end,
        "save: cannot save a table that contains itself (at key self)")
      local a = { b = { c = {} } }
      a.b.c.back = a
      assert.has_error(function() pbt.save(path("x.pbt"), { a }) end,
        "save: cannot save a table that contains itself (at key [1].b.c.back)")
      assert.are.same({}, listdir(dir))
    end)

    it("tables nested deeper than 100 levels", function()
      local root = {}
      local t = root
      for _ = 1, 101 do t.a = {}; t = t.a end
      local msg = errmsg(pbt.save, path("x.pbt"), root)
      assert.matches("save: tables nested deeper than 100 levels (at key a.a.a.", msg, 1, true)
      assert.are.same({}, listdir(dir))
    end)

    it("bad arguments", function()
      assert.has_error(function() pbt.save(nil, 1) end,
        "bad argument #1 to 'save' (string (a path) expected, got nil)")
      assert.has_error(function() pbt.save(path("x.pbt")) end,
        "bad argument #2 to 'save' (value expected)")
      assert.has_error(function() pbt.load({}) end,
        "bad argument #1 to 'load' (string (a path) expected, got table)")
    end)
  end)
end)

describe("pbt.Tensor", function()
  describe(":tobytes()", function()
    local cases = {
      { "float32 [2,3]", function() return T.arange(6):view(2, 3) end,
        packed("f", { 0, 1, 2, 3, 4, 5 }) },
      { "float64 [2,3]",
        function() return T.tensor({ { 0, 0.5, 1 }, { 1.5, 2, 2.5 } }, { dtype = "float64" }) end,
        packed("d", { 0, 0.5, 1, 1.5, 2, 2.5 }) },
      { "transposed float32", function() return T.arange(6):view(2, 3).T end,
        packed("f", { 0, 3, 1, 4, 2, 5 }) },
      { "transposed float64", function() return T.arange(6, { dtype = "float64" }):view(2, 3).T end,
        packed("d", { 0, 3, 1, 4, 2, 5 }) },
      { "narrowed", function() return T.arange(12):view(3, 4):narrow(2, 2, 2) end,
        packed("f", { 1, 2, 5, 6, 9, 10 }) },
      { "expanded", function() return T.arange(2):view(2, 1):expand(2, 3) end,
        packed("f", { 0, 0, 0, 1, 1, 1 }) },
      { "0-d", function() return T.tensor(-2.25, { dtype = "float64" }) end, packed("d", { -2.25 }) },
      { "empty", function() return T.zeros(0, 4) end, "" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        assert.are.equal(c[3], c[2]():tobytes())
        assert.are.equal(c[3], T.tobytes(c[2]()))
      end)
    end
  end)

  describe(".frombytes()", function()
    it("makes a tensor of the given shape (table or sizes)", function()
      local s = packed("f", { 1, 2, 3, 4, 5, 6 })
      for _, t in ipairs({ T.frombytes(s, "float32", { 2, 3 }), T.frombytes(s, "float32", 2, 3) }) do
        assert.are.equal("float32", t:dtype())
        assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, t:totable())
      end
    end)

    it("without a shape makes a 1-d tensor", function()
      local t = T.frombytes(packed("d", { 0.5, -1, 1e300 }), "float64")
      assert.are.same({ 3 }, t:shape())
      assert.are.same({ 0.5, -1, 1e300 }, t:totable())
    end)

    it("makes 0-d and empty tensors", function()
      local z = T.frombytes(packed("d", { 7.5 }), "float64", {})
      assert.are.same({}, z:shape())
      assert.are.equal(7.5, z:item())
      local e = T.frombytes("", "float32", { 0, 5 })
      assert.are.same({ 0, 5 }, e:shape())
      assert.are.same({ 0 }, T.frombytes("", "float64"):shape())
    end)

    it("round-trips with tobytes", function()
      local a = T.arange(24, { dtype = "float64" }):view(2, 3, 4):permute(3, 1, 2)
      local b = T.frombytes(a:tobytes(), "float64", a:shape())
      assert.are.same(a:totable(), b:totable())
    end)

    it("copies the string", function()
      local s = packed("f", { 1, 2 })
      local t = T.frombytes(s, "float32")
      t:fill_(0)
      assert.are.equal(packed("f", { 1, 2 }), s)
    end)

    local errors = {
      { { string.rep("x", 10), "float32", { 2, 3 } },
        "frombytes: 10 bytes do not hold a float32 tensor of shape [2,3] (24 bytes)" },
      { { string.rep("x", 24), "float64", { 2, 3 } },
        "frombytes: 24 bytes do not hold a float64 tensor of shape [2,3] (48 bytes)" },
      { { "", "float32", {} }, "frombytes: 0 bytes do not hold a float32 tensor of shape [] (4 bytes)" },
      { { "abcdef", "float32" },
        "frombytes: 6 bytes do not hold a whole number of float32 elements (4 bytes each)" },
      { { "", "float32", { 1 << 62, 1 << 62 } },
        "frombytes: 0 bytes do not hold a float32 tensor of shape [4611686018427387904,4611686018427387904] (too many bytes)" },
      { { "abcd", "int8" }, "bad argument #2 to 'frombytes' (unknown dtype 'int8' (float32 or float64))" },
      { { "abcd", "float32", "2" }, "bad argument #3 to 'frombytes' (table or size expected, got string)" },
      { { "abcd", "float32", { 1 }, {} }, "bad argument #4 to 'frombytes' (unexpected argument after the shape)" },
      { { "abcd", "float32", { -1 } }, "bad argument #3 to 'frombytes' (negative size -1)" },
      { { nil, "float32" }, "bad argument #1 to 'frombytes' (string expected, got nil)" },
    }
    for _, c in ipairs(errors) do
      it("raises: " .. c[2], function()
        local args = c[1]
        assert.has_error(function() T.frombytes(args[1], args[2], args[3], args[4]) end, c[2])
      end)
    end
  end)
end)

describe("pbt.encode / pbt.decode", function()
  it("gives the bytes pbt.save writes, and reads them back", function()
    local p = os.tmpname()
    local value = { w = T.arange(6, { dtype = "float64" }):view(2, 3), n = 3, x = 0.5, s = "a\0b",
      flags = { true, false } }
    assert.is_true(pbt.save(p, value))
    local f = assert(io.open(p, "rb"))
    local saved = f:read("a")
    f:close()
    os.remove(p)
    assert.are.equal(saved, pbt.encode(value))
    local back = pbt.decode(saved)
    assert.are.same({ { 0, 1, 2 }, { 3, 4, 5 } }, back.w:totable())
    assert.are.equal("float64", back.w:dtype())
    assert.are.same({ 3, "integer" }, { back.n, math.type(back.n) })
    assert.are.same({ 0.5, "a\0b", { true, false } }, { back.x, back.s, back.flags })
  end)

  it("names what it reads in the errors of a corrupt or truncated buffer", function()
    local bytes = pbt.encode({ w = T.ones(4) })
    assert.has_error(function() pbt.decode(bytes:sub(1, -2), "member 3's checkpoint") end,
      ("decode: member 3's checkpoint: truncated at byte %d (expected %d bytes)"):format(#bytes - 1, #bytes))
    local flipped = bytes:sub(1, 30) .. string.char((bytes:byte(31) + 1) % 256) .. bytes:sub(32)
    assert.has_error(function() pbt.decode(flipped) end, "decode: bytes: checksum mismatch (file is corrupted)")
    assert.has_error(function() pbt.encode(print) end, "encode: cannot save a value of type function")
    assert.has_error(function() pbt.encode({ f = print }) end,
      "encode: cannot save a value of type function (at key f)")
  end)
end)

describe("pbt.core.crc32 / pbt.core.remove_temporaries", function()
  it("gives the standard CRC-32 check value", function()
    assert.are.equal(0xCBF43926, pbt.core.crc32("123456789")) -- the catalogue's check value
    assert.are.equal(0, pbt.core.crc32(""))
  end)

  it("removes what an interrupted atomic write left, and nothing else", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(pbt.core.mkdir(dir))
    local names = { "a.pbt.tmp.123.0", "events.jsonl.tmp.9.12", "keep.tmp", "x.tmp.1.b", "run.db", "tmp.1.2" }
    for _, n in ipairs(names) do assert(io.open(dir .. "/" .. n, "w")):close() end
    assert.are.equal(2, pbt.core.remove_temporaries(dir))
    local left = {}
    for _, n in ipairs(names) do
      local f = io.open(dir .. "/" .. n)
      if f then f:close(); left[#left + 1] = n; os.remove(dir .. "/" .. n) end
    end
    assert.are.same({ "keep.tmp", "x.tmp.1.b", "run.db", "tmp.1.2" }, left)
    os.remove(dir)
    local none, msg = pbt.core.remove_temporaries(dir)
    assert.is_nil(none)
    assert.are.equal("cannot open directory " .. dir .. ": No such file or directory", msg)
  end)
end)
