-- pbt.data: IDX and CSV files (gzipped or not), Fashion-MNIST, batches, split.
-- IDX files are assembled here byte by byte with string.pack (big-endian),
-- gzip files are made by the gzip program, and expected values come from
-- string.unpack or plain Lua loops, never from the code under test.
local pbt = require("pbt")
local data = require("pbt.data")
local T = pbt.tensor

-- ---- helpers ------------------------------------------------------------------

local readfile, writefile = require("spec.helper").readfile, require("spec.helper").writefile

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- gzip -c path > path.gz; returns path.gz
local function gzip(path)
  assert(os.execute("gzip -c -n " .. sh_quote(path) .. " > " .. sh_quote(path .. ".gz")))
  return path .. ".gz"
end

-- The elements of t in row-major order, as a flat Lua table.
local function flat(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then
      for _, w in ipairs(v) do walk(w) end
    else
      out[#out + 1] = v
    end
  end
  walk(t:totable())
  return out
end

-- v rounded to float32 (Lua's string.pack "f" casts the double to float).
local function f32(v) return (string.unpack("f", string.pack("f", v))) end

-- The message of the error fn raises (nil if it does not).
local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  return tostring(err)
end

-- Asserts that fn raises an error whose message ends with msg (a Lua-side
-- error carries a "file:line: " position first).
local function assert_error_ends(fn, msg)
  local err = error_of(fn)
  assert.is_not_nil(err, "no error raised, expected: " .. msg)
  assert.are.equal(msg, err:sub(-#msg))
end

-- An IDX header: zero, zero, type, ndim, then big-endian u32 sizes.
local function idx_header(type_, shape)
  local s = string.pack(">BBBB", 0, 0, type_, #shape)
  for _, n in ipairs(shape) do s = s .. string.pack(">I4", n) end
  return s
end

local dir
local function path(name) return dir .. "/" .. name end

local function setup_dir()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. sh_quote(dir)))
end
local function teardown_dir()
  os.execute("rm -rf " .. sh_quote(dir))
end

-- ---- IDX ------------------------------------------------------------------------

describe("pbt.data", function()
  setup(setup_dir)
  teardown(teardown_dir)

  describe(".idx()", function()
    -- one case per IDX element type: its code, the string.pack format of one
    -- big-endian element and values that probe its range
    local cases = {
      { name = "unsigned byte", code = 0x08, fmt = ">B", values = { 0, 1, 127, 128, 254, 255 } },
      { name = "signed byte", code = 0x09, fmt = ">b", values = { -128, -1, 0, 1, 100, 127 } },
      { name = "short", code = 0x0B, fmt = ">i2", values = { -32768, -1, 0, 1, 1000, 32767 } },
      { name = "int", code = 0x0C, fmt = ">i4",
        values = { -2147483648, -1, 0, 16777217, 123456789, 2147483647 } },
      { name = "float", code = 0x0D, fmt = ">f", values = { 1.5, -2.25, 0.0, 3.0e38, 0.1, -1e-30 } },
      { name = "double", code = 0x0E, fmt = ">d",
        values = { 1 / 3, -2.25, 0.0, 1e300, 0.1, -1e-300 } },
    }

    -- the value an element of the file holds, exactly (the float type stores
    -- the float32 nearest to the number written)
    local function file_value(c, v) return (string.unpack(c.fmt, string.pack(c.fmt, v))) end

    for _, c in ipairs(cases) do
      local function write_case(name)
        local body = {}
        for k, v in ipairs(c.values) do body[k] = string.pack(c.fmt, v) end
        writefile(path(name), idx_header(c.code, { 2, 3 }) .. table.concat(body))
        return path(name)
      end

      it("reads type " .. c.name .. " as float64, value by value", function()
        local p = write_case("t64.idx")
        local t = data.idx(p, { dtype = "float64" })
        assert.are.equal("float64", t:dtype())
        assert.are.same({ 2, 3 }, t:shape())
        local got = flat(t)
        for k, v in ipairs(c.values) do assert.are.equal(file_value(c, v), got[k]) end
      end)

      it("reads type " .. c.name .. " as float32 (default), rounded to nearest", function()
        if c.code == 0x0E then
          -- 1e300 has no float32: use values in float32's range for this dtype
          c = { name = c.name, code = c.code, fmt = c.fmt, values = { 1 / 3, -2.25, 0.0, 1e30, 0.1, -1e-30 } }
        end
        local p = write_case("t32.idx")
        local t = data.idx(p)
        assert.are.equal("float32", t:dtype())
        local got = flat(t)
        for k, v in ipairs(c.values) do assert.are.equal(f32(file_value(c, v)), got[k]) end
      end)

      it("reads type " .. c.name .. " gzipped, the same values", function()
        local p = write_case("tgz.idx")
        local plain = flat(data.idx(p, { dtype = "float64" }))
        local gz = gzip(p)
        assert.are.equal("\31\139", readfile(gz):sub(1, 2))
        assert.are.same(plain, flat(data.idx(gz, { dtype = "float64" })))
      end)
    end

    it("keeps the shape of 1-d and 4-d files", function()
      writefile(path("a.idx"), idx_header(0x08, { 5 }) .. "\1\2\3\4\5")
      local t = data.idx(path("a.idx"))
      assert.are.same({ 5 }, t:shape())
      assert.are.same({ 1, 2, 3, 4, 5 }, flat(t))
      local bytes = {}
      for k = 1, 2 * 1 * 3 * 2 do bytes[k] = string.char(k * 10) end
      writefile(path("b.idx"), idx_header(0x08, { 2, 1, 3, 2 }) .. table.concat(bytes))
      t = data.idx(path("b.idx"))
      assert.are.same({ 2, 1, 3, 2 }, t:shape())
      assert.are.equal(70, t:get(2, 1, 1, 1))
      assert.are.equal(120, t:get(2, 1, 3, 2))
    end)

    it("reads an empty tensor (a size 0)", function()
      writefile(path("e.idx"), idx_header(0x0C, { 0, 4 }))
      assert.are.same({ 0, 4 }, data.idx(path("e.idx")):shape())
    end)

    it("applies scale and shift while converting", function()
      writefile(path("s.idx"), idx_header(0x08, { 4 }) .. "\0\1\128\255")
      local got = flat(data.idx(path("s.idx"), { dtype = "float64", scale = 1 / 255, shift = 1 }))
      for k, b in ipairs({ 0, 1, 128, 255 }) do assert.are.equal(b * (1 / 255) + 1, got[k]) end
      writefile(path("s16.idx"), idx_header(0x0B, { 2 }) .. string.pack(">i2i2", -300, 7))
      got = flat(data.idx(path("s16.idx"), { scale = 2, shift = -1 }))
      assert.are.same({ -601, 13 }, got)
    end)

    it("keeps -0.0, infinities and NaN of float files with the default scale", function()
      writefile(path("z.idx"), idx_header(0x0E, { 4 }) .. string.pack(">dddd", -0.0, 1 / 0, -1 / 0, 0 / 0))
      local got = flat(data.idx(path("z.idx"), { dtype = "float64" }))
      assert.are.equal(-math.huge, 1 / got[1])
      assert.are.equal(math.huge, got[2])
      assert.are.equal(-math.huge, got[3])
      assert.is_true(got[4] ~= got[4])
    end)

    it("reads files larger than its read and inflate chunks (256 KiB)", function()
      -- 700000 pseudo-random bytes (an LCG): gzip cannot shrink them much, so
      -- the compressed file also spans several chunks
      local n, x, parts, expected_sum = 700000, 12345, {}, 0
      local row = {}
      for k = 1, n do
        x = (x * 1103515245 + 12345) % 2147483648
        local b = (x >> 16) & 255
        expected_sum = expected_sum + b
        row[#row + 1] = b
        if #row == 1000 then
          parts[#parts + 1] = string.char(table.unpack(row))
          row = {}
        end
      end
      writefile(path("big.idx"), idx_header(0x08, { 700, 1000 }) .. table.concat(parts))
      local gz = gzip(path("big.idx"))
      assert.is_true(#readfile(gz) > 2 * 262144)
      for _, p in ipairs({ path("big.idx"), gz }) do
        local t = data.idx(p, { dtype = "float64" })
        assert.are.same({ 700, 1000 }, t:shape())
        assert.are.equal(expected_sum, t:sum():item())
        assert.are.equal(parts[700]:byte(1000), t:get(700, 1000))
        assert.are.equal(parts[351]:byte(1), t:get(351, 1))
      end
    end)

    it("reads a gzip file of several members (as `cat a.gz b.gz` makes)", function()
      writefile(path("m1"), idx_header(0x08, { 3 }) .. "\7")
      writefile(path("m2"), "\8\9")
      local s = readfile(gzip(path("m1"))) .. readfile(gzip(path("m2")))
      writefile(path("m.idx.gz"), s)
      assert.are.same({ 7, 8, 9 }, flat(data.idx(path("m.idx.gz"))))
    end)

    describe("on a missing or unreadable file", function()
      it("returns nil and a message, as io.open", function()
        local t, msg = data.idx(path("nothere.idx"))
        assert.is_nil(t)
        assert.are.equal("cannot open " .. path("nothere.idx") .. ": No such file or directory", msg)
      end)
      it("returns nil and a message for a directory", function()
        local t, msg = data.idx(dir)
        assert.is_nil(t)
        assert.are.equal("cannot read " .. dir .. ": Is a directory", msg)
      end)
    end)

    describe("on a malformed file raises an error naming the file and the byte", function()
      local cases = {
        { "bad magic (unknown type)", "\0\0\1\35\0\0\0\1\0", "bad magic 0x00000123 at byte 0" },
        { "bad magic (not zero)", "\1\2\8\1\0\0\0\1\0", "bad magic 0x01020801 at byte 0" },
        { "a short magic", "\0\0", "truncated: expected 4 bytes of magic number at byte 0, got 2" },
        { "an empty file", "", "truncated: expected 4 bytes of magic number at byte 0, got 0" },
        { "no dimensions", "\0\0\8\0", "0 dimensions at byte 3 (1 to 8 supported)" },
        { "9 dimensions", "\0\0\8\9" .. ("\0\0\0\1"):rep(9) .. "\0",
          "9 dimensions at byte 3 (1 to 8 supported)" },
        { "short sizes", "\0\0\8\3\0\0\39\16\0", "truncated: expected 12 bytes of sizes after byte 4, got 5" },
        { "short data (Fashion-MNIST sized)", idx_header(0x08, { 10000, 28, 28 }) .. ("x"):rep(123),
          "truncated: expected 7840000 bytes of data after byte 16, got 123" },
        { "short data (int)", idx_header(0x0C, { 3 }) .. ("\0"):rep(11),
          "truncated: expected 12 bytes of data after byte 8, got 11" },
        { "bytes after the data", idx_header(0x08, { 2 }) .. "\1\2\3\4\5",
          "3 unexpected bytes after the data, at byte 10" },
        { "sizes whose product overflows", idx_header(0x08, { 65536, 65536, 65536, 65536, 2 }),
          "sizes too large at byte 16" },
        { "sizes whose byte count overflows", idx_header(0x0E, { 4294967295, 4294967295 }),
          "sizes too large at byte 8" },
        { "huge sizes and no data", idx_header(0x0D, { 4294967295, 3 }),
          "truncated: expected 51539607540 bytes of data after byte 12, got 0" },
      }
      for _, c in ipairs(cases) do
        it(c[1], function()
          local p = path("bad.idx")
          writefile(p, c[2])
          assert.has_error(function() data.idx(p) end, "idx: " .. p .. ": " .. c[3])
        end)
      end

      it("the same errors inside a gzip file (bytes count decompressed bytes)", function()
        local p = path("badgz.idx")
        writefile(p, idx_header(0x08, { 10000, 28, 28 }) .. ("x"):rep(123))
        local gz = gzip(p)
        assert.has_error(function() data.idx(gz) end,
          "idx: " .. gz .. ": truncated: expected 7840000 bytes of data after byte 16, got 123")
      end)

      it("a truncated gzip stream", function()
        local p = path("cut.idx")
        writefile(p, idx_header(0x08, { 1000 }) .. ("abcdefgh"):rep(125))
        local s = readfile(gzip(p))
        writefile(p .. ".gz", s:sub(1, #s - 12))
        assert.has_error(function() data.idx(p .. ".gz") end,
          "idx: " .. p .. ".gz: corrupt gzip stream (unexpected end of data)")
        writefile(p .. ".gz", s:sub(1, 2))
        assert.has_error(function() data.idx(p .. ".gz") end,
          "idx: " .. p .. ".gz: corrupt gzip stream (unexpected end of data)")
      end)

      it("a gzip stream with a wrong CRC or length", function()
        local p = path("crc.idx")
        writefile(p, idx_header(0x08, { 4 }) .. "\1\2\3\4")
        local s = readfile(gzip(p))
        -- the trailer: CRC-32 (4 bytes), then the length (4 bytes), little-endian
        local crc, len = string.unpack("<I4I4", s, #s - 7)
        writefile(p .. ".gz", s:sub(1, #s - 8) .. string.pack("<I4I4", crc ~ 1, len))
        assert.has_error(function() data.idx(p .. ".gz") end,
          "idx: " .. p .. ".gz: corrupt gzip stream (incorrect data check)")
        writefile(p .. ".gz", s:sub(1, #s - 8) .. string.pack("<I4I4", crc, len + 1))
        assert.has_error(function() data.idx(p .. ".gz") end,
          "idx: " .. p .. ".gz: corrupt gzip stream (incorrect length check)")
      end)

      it("a gzip header with an unknown compression method", function()
        local p = path("method.gz")
        writefile(p, "\31\139\7\0\0\0\0\0\0\3" .. ("\0"):rep(20))
        assert.has_error(function() data.idx(p) end,
          "idx: " .. p .. ": corrupt gzip stream (unknown compression method)")
      end)

      it("garbage after a gzip member", function()
        local p = path("tail.idx")
        writefile(p, idx_header(0x08, { 1 }) .. "\1")
        local s = readfile(gzip(p))
        writefile(p .. ".gz", s .. "garbage!")
        assert.has_error(function() data.idx(p .. ".gz") end,
          "idx: " .. p .. ".gz: corrupt gzip stream (incorrect header check)")
      end)
    end)

    it("checks its arguments", function()
      assert.has_error(function() data.idx() end,
        "bad argument #1 to 'idx' (string (a path) expected, got no value)")
      writefile(path("ok.idx"), idx_header(0x08, { 1 }) .. "\1")
      assert.has_error(function() data.idx(path("ok.idx"), { dtype = "int8" }) end,
        "bad argument #2 to 'idx' (unknown dtype 'int8' (float32 or float64))")
      assert.has_error(function() data.idx(path("ok.idx"), { scale = "x" }) end,
        "bad argument #2 to 'idx' (field 'scale' must be a number)")
    end)
  end)

  -- ---- CSV ------------------------------------------------------------------------

  describe(".csv()", function()
    local function csv_file(name, text)
      writefile(path(name), text)
      return path(name)
    end

    it("reads numbers into a [rows, cols] float32 tensor", function()
      local p = csv_file("a.csv", "1,2,3\n4.5,-5,6e-2\n")
      local t, names = data.csv(p)
      assert.is_nil(names)
      assert.are.equal("float32", t:dtype())
      assert.are.same({ 2, 3 }, t:shape())
      assert.are.same({ 1, 2, 3, 4.5, -5, f32(6e-2) }, flat(t))
    end)

    it("reads float64 exactly", function()
      local p = csv_file("b.csv", "0.1,1e-300\n-3.25,12345678901234567\n")
      local t = data.csv(p, { dtype = "float64" })
      assert.are.same({ 0.1, 1e-300, -3.25, 12345678901234567.0 }, flat(t))
    end)

    it("returns the header's names with header = true", function()
      local p = csv_file("h.csv", 'x, "y" ,z z\n1,2,3\n')
      local t, names = data.csv(p, { header = true })
      assert.are.same({ "x", "y", "z z" }, names)
      assert.are.same({ { 1, 2, 3 } }, t:totable())
    end)

    it("accepts CRLF, spaces around numbers, no final newline and blank lines at the end", function()
      local cases = {
        { "1,2\r\n3,4\r\n", "CRLF" },
        { " 1 ,\t2\n3,  4  \n", "spaces" },
        { "1,2\n3,4", "no final newline" },
        { "1,2\n3,4\n\n  \n\r\n", "blank lines at the end" },
      }
      for _, c in ipairs(cases) do
        local t = data.csv(csv_file("w.csv", c[1]))
        assert.are.same({ { 1, 2 }, { 3, 4 } }, t:totable(), c[2])
      end
    end)

    it("takes another delimiter", function()
      assert.are.same({ { 1, 2.5 }, { 3, 4 } }, data.csv(csv_file("d.csv", "1;2.5\n3;4\n"), { delimiter = ";" }):totable())
      assert.are.same({ { 1, 2 } }, data.csv(csv_file("t.csv", "1\t2\n"), { delimiter = "\t" }):totable())
    end)

    it("reads gzipped CSV", function()
      local p = csv_file("g.csv", "a,b\n1,2\n3,4\n")
      local t, names = data.csv(gzip(p), { header = true })
      assert.are.same({ "a", "b" }, names)
      assert.are.same({ { 1, 2 }, { 3, 4 } }, t:totable())
    end)

    it("keeps the columns asked for, by number or by name", function()
      local p = csv_file("c.csv", "a,b,c\n1,2,3\n4,5,6\n")
      local t, names = data.csv(p, { header = true, columns = { 3, 1 } })
      assert.are.same({ "c", "a" }, names)
      assert.are.same({ { 3, 1 }, { 6, 4 } }, t:totable())
      t, names = data.csv(p, { header = true, columns = { "b" } })
      assert.are.same({ "b" }, names)
      assert.are.same({ { 2 }, { 5 } }, t:totable())
      assert_error_ends(function() data.csv(p, { header = true, columns = { "q" } }) end,
        "csv: " .. p .. ": no column named 'q'")
      assert_error_ends(function() data.csv(p, { header = true, columns = { 4 } }) end,
        "csv: " .. p .. ": column 4 out of range (3 columns)")
    end)

    it("reads empty files and a header alone", function()
      assert.are.same({ 0, 0 }, data.csv(csv_file("e.csv", "")):shape())
      local t, names = data.csv(csv_file("ho.csv", "p,q,r\n"), { header = true })
      assert.are.same({ 0, 3 }, t:shape())
      assert.are.same({ "p", "q", "r" }, names)
    end)

    it("reads a number longer than 64 characters", function()
      local s = "0." .. ("0"):rep(80) .. "1"
      local t = data.csv(csv_file("long.csv", s .. ",2\n"), { dtype = "float64" })
      assert.are.same({ 1e-81, 2 }, flat(t))
    end)

    it("returns nil and a message for a missing file", function()
      local t, msg = data.csv(path("none.csv"))
      assert.is_nil(t)
      assert.are.equal("cannot open " .. path("none.csv") .. ": No such file or directory", msg)
    end)

    describe("on a malformed file raises an error naming the file and the line", function()
      local cases = {
        { "a ragged row", "1,2,3\n4,5,6\n7,8\n", "line 3 has 2 fields, expected 3" },
        { "a row longer than the header", "a,b\n1,2\n3,4,5\n", "line 3 has 3 fields, expected 2", true },
        { "a non-numeric field", "1,2\n3,4\n5,6\n7,abc\n", "line 4, field 2: 'abc' is not a number" },
        { "trailing characters", "1,2x\n", "line 1, field 2: '2x' is not a number" },
        { "an empty field", "1,,3\n", "line 1, field 2: '' is not a number" },
        { "a blank line followed by data", "1,2\n\n3,4\n", "line 2 is empty" },
        { "a long non-number, shortened", "1," .. ("z"):rep(50) .. "\n",
          "line 1, field 2: '" .. ("z"):rep(40) .. "...' is not a number" },
      }
      for _, c in ipairs(cases) do
        it(c[1], function()
          local p = csv_file("bad.csv", c[2])
          assert.has_error(function() data.csv(p, { header = c[4] or false }) end, "csv: " .. p .. ": " .. c[3])
        end)
      end

      it("at the caller's line, as a C function's error", function()
        local p = csv_file("badpos.csv", "1,2\n3\n")
        local ok, err = pcall(function() local t = data.csv(p); return t end)
        assert.is_false(ok)
        assert.is_truthy(err:match("data_spec%.lua:%d+: csv: "), err)
      end)

      it("inside a gzip file too", function()
        local p = gzip(csv_file("badgz.csv", "1,2,3\n4,5,6\n7,8\n"))
        assert.has_error(function() data.csv(p) end, "csv: " .. p .. ": line 3 has 2 fields, expected 3")
      end)
    end)

    it("checks its options", function()
      local p = csv_file("o.csv", "1\n")
      assert.has_error(function() data.csv(p, { delimiter = ";;" }) end,
        "bad argument #2 to 'csv' (field 'delimiter' must be a one-character string)")
      assert.has_error(function() data.csv(p, { header = 1 }) end,
        "bad argument #2 to 'csv' (field 'header' must be a boolean)")
    end)
  end)

  -- ---- randperm, batches, split ------------------------------------------------

  -- Fisher-Yates in plain Lua with generator:integer, as randperm documents.
  local function lua_perm(n, g)
    local p = {}
    for i = 1, n do p[i] = i end
    for i = n, 2, -1 do
      local j = g:integer(1, i)
      p[i], p[j] = p[j], p[i]
    end
    return p
  end

  describe(".randperm()", function()
    it("draws the permutation of a plain Lua Fisher-Yates loop", function()
      for _, n in ipairs({ 0, 1, 2, 10, 1000 }) do
        local g = pbt.Generator(42)
        local expected = lua_perm(n, g:clone())
        local t = data.randperm(n, { generator = g })
        assert.are.equal("float64", t:dtype())
        assert.are.same(expected, flat(t))
      end
    end)

    it("uses the default generator when none is given", function()
      pbt.manual_seed(7)
      local expected = lua_perm(20, pbt.default_generator():clone())
      assert.are.same(expected, flat(data.randperm(20)))
    end)
  end)

  describe(".batches()", function()
    -- x: [n, 2] with row k = {k, -k}; y: [n] with y[k] = 10 k
    local function xy(n, dtype)
      local xs, ys = {}, {}
      for k = 1, n do xs[k] = { k, -k }; ys[k] = 10 * k end
      return T(xs, { dtype = dtype }), T(ys, { dtype = dtype })
    end

    -- the row numbers of the batches, and the batch sizes and counters
    local function run(x, y, opts)
      local rows, sizes, counters = {}, {}, {}
      for xb, yb, i in data.batches(x, y, opts) do
        counters[#counters + 1] = i
        sizes[#sizes + 1] = xb:size(1)
        local xt = xb:totable()
        local yt = yb and yb:totable()
        for r = 1, #xt do
          rows[#rows + 1] = xt[r][1]
          assert.are.equal(-xt[r][1], xt[r][2])
          if yt then assert.are.equal(10 * xt[r][1], yt[r]) end
        end
      end
      return rows, sizes, counters
    end

    it("goes through the rows in order without shuffle", function()
      local x, y = xy(10)
      local rows, sizes, counters = run(x, y, { batch_size = 4 })
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, rows)
      assert.are.same({ 4, 4, 2 }, sizes)
      assert.are.same({ 1, 2, 3 }, counters)
    end)

    it("drops a short last batch with drop_last", function()
      local x, y = xy(10)
      local rows, sizes = run(x, y, { batch_size = 3, drop_last = true })
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9 }, rows)
      assert.are.same({ 3, 3, 3 }, sizes)
      local _, sizes2 = run(x, y, { batch_size = 5, drop_last = true })
      assert.are.same({ 5, 5 }, sizes2)
      local _, sizes3 = run(x, y, { batch_size = 11, drop_last = true })
      assert.are.same({}, sizes3)
    end)

    for _, dtype in ipairs({ "float32", "float64" }) do
      it("with shuffle covers every row exactly once per epoch (" .. dtype .. ")", function()
        local x, y = xy(103, dtype)
        local g = pbt.Generator(5)
        for _ = 1, 3 do
          local rows, sizes = run(x, y, { batch_size = 10, shuffle = true, generator = g })
          assert.are.equal(11, #sizes)
          assert.are.equal(3, sizes[11])
          local seen = {}
          for _, r in ipairs(rows) do
            assert.is_nil(seen[r])
            seen[r] = true
          end
          for k = 1, 103 do assert.is_true(seen[k]) end
        end
      end)
    end

    it("draws its order from the generator: the Fisher-Yates permutation of the seed", function()
      local x, y = xy(50)
      local a = run(x, y, { batch_size = 7, shuffle = true, generator = pbt.Generator(99) })
      local b = run(x, y, { batch_size = 7, shuffle = true, generator = pbt.Generator(99) })
      local c = run(x, y, { batch_size = 7, shuffle = true, generator = pbt.Generator(100) })
      assert.are.same(a, b)
      assert.are.same(lua_perm(50, pbt.Generator(99)), a)
      assert.are_not.same(a, c)
      -- and successive epochs from one generator differ
      local g = pbt.Generator(99)
      local e1 = run(x, y, { batch_size = 7, shuffle = true, generator = g })
      local e2 = run(x, y, { batch_size = 7, shuffle = true, generator = g })
      assert.are.same(a, e1)
      assert.are_not.same(e1, e2)
    end)

    it("uses the default generator when none is given", function()
      local x, y = xy(30)
      pbt.manual_seed(3)
      local a = run(x, y, { batch_size = 4, shuffle = true })
      assert.are.same(lua_perm(30, pbt.Generator(3)), a)
    end)

    it("works with y = nil, shuffle and drop_last together", function()
      local x = xy(10)
      local rows, sizes = run(x, nil, { batch_size = 4, shuffle = true, drop_last = true,
                                        generator = pbt.Generator(1) })
      assert.are.same({ 4, 4 }, sizes)
      local p = lua_perm(10, pbt.Generator(1))
      assert.are.same({ p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8] }, rows)
      for _, yb in data.batches(x, nil, { batch_size = 4 }) do assert.is_nil(yb) end
    end)

    it("keeps the other dimensions and takes non-contiguous tensors", function()
      -- x3: [6, 2, 3] with x3[k][i][j] = 100 k + 10 i + j
      local t = {}
      for k = 1, 6 do
        t[k] = {}
        for i = 1, 2 do
          t[k][i] = {}
          for j = 1, 3 do t[k][i][j] = 100 * k + 10 * i + j end
        end
      end
      local x3 = T(t)
      local count = 0
      for xb, _, i in data.batches(x3, nil, { batch_size = 4, shuffle = true, generator = pbt.Generator(2) }) do
        assert.are.same(i == 1 and { 4, 2, 3 } or { 2, 2, 3 }, xb:shape())
        for r = 1, xb:size(1) do
          local k = (xb:get(r, 1, 1) - 11) // 100
          assert.are.equal(100 * k + 23, xb:get(r, 2, 3))
        end
        count = count + 1
      end
      assert.are.equal(2, count)
      -- a transposed x: rows of x.T are the columns of base
      local base = T({ { 1, 2, 3, 4, 5 }, { -1, -2, -3, -4, -5 } })
      local xt = base:t()
      assert.is_false(xt:is_contiguous())
      local y = T({ 10, 20, 30, 40, 50 })
      local rows = run(xt, y, { batch_size = 2, shuffle = true, generator = pbt.Generator(8) })
      assert.are.same(lua_perm(5, pbt.Generator(8)), rows)
    end)

    it("checks its arguments", function()
      local x, y = xy(5)
      local _, y4 = xy(4)
      local cases = {
        { function() data.batches(x, y4, { batch_size = 2 }) end,
          "batches: x and y differ in size in dimension 1 (5 and 4)" },
        { function() data.batches(x, y) end,
          "bad argument #3 to 'batches' (options table expected, got nil)" },
        { function() data.batches(x, y, {}) end,
          "bad argument #3 to 'batches' (field 'batch_size' must be a positive integer)" },
        { function() data.batches(x, y, { batch_size = 0 }) end,
          "bad argument #3 to 'batches' (field 'batch_size' must be a positive integer)" },
        { function() data.batches(x, y, { batch_size = 1.5 }) end,
          "bad argument #3 to 'batches' (field 'batch_size' must be a positive integer)" },
        { function() data.batches(x, y, { batch_size = 2, shuffle = true, generator = 3 }) end,
          "bad argument #3 to 'batches' (field 'generator' is not a pbt.Generator)" },
        { function() data.batches(x, y, { batch_size = 2, shuffle = "yes" }) end,
          "bad argument #3 to 'batches' (field 'shuffle' must be a boolean)" },
        { function() data.batches({}, y, { batch_size = 2 }) end,
          "bad argument #1 to 'batches' (pbt.Tensor expected, got table)" },
        { function() data.batches(x, 3, { batch_size = 2 }) end,
          "bad argument #2 to 'batches' (pbt.Tensor expected, got number)" },
        { function() data.batches(T(1), nil, { batch_size = 2 }) end,
          "bad argument #1 to 'batches' (tensor of at least 1 dimension expected, got a 0-d tensor)" },
      }
      for _, c in ipairs(cases) do assert_error_ends(c[1], c[2]) end
    end)
  end)

  describe(".split()", function()
    local function xy(n)
      local xs, ys = {}, {}
      for k = 1, n do xs[k] = { k, 2 * k }; ys[k] = -k end
      return T(xs, { dtype = "float64" }), T(ys, { dtype = "float64" })
    end

    local function firsts(t)
      local out = {}
      for k, row in ipairs(t:totable()) do out[k] = row[1] end
      return out
    end

    it("makes disjoint sets covering every row, of the right sizes", function()
      local cases = { { 100, 0.1, 10 }, { 10, 0.25, 3 }, { 7, 0.5, 4 }, { 5, 0, 0 }, { 5, 1, 5 } }
      for _, c in ipairs(cases) do
        local n, fraction, nval = c[1], c[2], c[3]
        local x, y = xy(n)
        local xtr, ytr, xva, yva = data.split(x, y, { fraction = fraction, generator = pbt.Generator(11) })
        assert.are.same({ n - nval, 2 }, xtr:shape())
        assert.are.same({ nval, 2 }, xva:shape())
        assert.are.same({ n - nval }, ytr:shape())
        assert.are.same({ nval }, yva:shape())
        local seen = {}
        for _, part in ipairs({ { xtr, ytr }, { xva, yva } }) do
          local xt, yt = part[1]:totable(), part[2]:totable()
          for r = 1, #xt do
            local k = xt[r][1]
            assert.is_nil(seen[k])
            seen[k] = true
            assert.are.equal(2 * k, xt[r][2])
            assert.are.equal(-k, yt[r])
          end
        end
        for k = 1, n do assert.is_true(seen[k]) end
      end
    end)

    it("is the Fisher-Yates permutation of the generator: validation first", function()
      local x, y = xy(20)
      local xtr, _, xva = data.split(x, y, { fraction = 0.2, generator = pbt.Generator(4) })
      local p = lua_perm(20, pbt.Generator(4))
      assert.are.same({ p[1], p[2], p[3], p[4] }, firsts(xva))
      assert.are.same({ table.unpack(p, 5, 20) }, firsts(xtr))
    end)

    it("is deterministic for a given generator, and y may be nil", function()
      local x = xy(30)
      local a1, _, a2 = data.split(x, nil, { fraction = 0.3, generator = pbt.Generator(9) })
      local b1, yb, b2, yv = data.split(x, nil, { fraction = 0.3, generator = pbt.Generator(9) })
      assert.is_nil(yb)
      assert.is_nil(yv)
      assert.are.same(firsts(a1), firsts(b1))
      assert.are.same(firsts(a2), firsts(b2))
      local c1 = data.split(x, nil, { fraction = 0.3, generator = pbt.Generator(10) })
      assert.are_not.same(firsts(a1), firsts(c1))
    end)

    it("checks its arguments", function()
      local x, y = xy(4)
      assert_error_ends(function() data.split(x, y, { fraction = 1.5 }) end,
        "bad argument #3 to 'split' (field 'fraction' must be a number in [0, 1], got 1.5)")
      assert_error_ends(function() data.split(x, y, { fraction = 0 / 0 }) end,
        "bad argument #3 to 'split' (field 'fraction' must be a number in [0, 1], got " .. tostring(0 / 0) .. ")")
      assert_error_ends(function() data.split(x, y, { fraction = 0.5, generator = {} }) end,
        "bad argument #3 to 'split' (field 'generator' is not a pbt.Generator)")
      assert_error_ends(function() data.split(x, y, { fracton = 0.5 }) end,
        "split: unknown option 'fracton' (did you mean 'fraction'?)")
      assert_error_ends(function() data.split(x, y) end,
        "bad argument #3 to 'split' (options table {fraction =, generator =} expected, got nil)")
      -- the options-table convention: the positional forms are named as such
      assert_error_ends(function() data.split(x, y, 0.5, pbt.Generator(1)) end,
        "split: the fraction and the generator go in an options table: data.split(x, y, {fraction = 0.1, generator = g})")
      assert_error_ends(function() data.randperm(4, pbt.Generator(1)) end,
        "randperm: the generator goes in an options table: data.randperm(n, {generator = g})")
      assert_error_ends(function() data.split(x, T({ 1, 2 }), { fraction = 0.5 }) end,
        "split: x and y differ in size in dimension 1 (4 and 2)")
    end)
  end)

  -- ---- Fashion-MNIST -------------------------------------------------------------

  describe(".fashion_mnist()", function()
    local D = data.FASHION_MNIST_DIR
    local installed = io.open(D .. "/train-images-idx3-ubyte.gz", "rb")
    if installed then installed:close() end

    it("names the Debian package when the files are missing", function()
      local where = path("no-fashion")
      assert_error_ends(function() data.fashion_mnist(where) end,
        "fashion_mnist: " .. where .. "/train-images-idx3-ubyte.gz not found " ..
        "(install the Debian package dataset-fashion-mnist: apt-get install dataset-fashion-mnist)")
    end)

    it("names the file when it is malformed", function()
      local where = path("fake-fashion")
      assert(os.execute("mkdir -p " .. sh_quote(where)))
      writefile(where .. "/train-images-idx3-ubyte.gz", idx_header(0x08, { 2, 28, 28 }) .. ("\0"):rep(2 * 784))
      writefile(where .. "/train-labels-idx1-ubyte.gz", idx_header(0x08, { 3 }) .. "\1\2\3")
      assert_error_ends(function() data.fashion_mnist(where) end,
        "fashion_mnist: " .. where .. "/train-labels-idx1-ubyte.gz: 3 labels for 2 images")
      writefile(where .. "/train-labels-idx1-ubyte.gz", idx_header(0x08, { 1, 2 }) .. "\1\2")
      assert_error_ends(function() data.fashion_mnist(where) end,
        "fashion_mnist: " .. where .. "/train-labels-idx1-ubyte.gz: expected labels of shape [N], got shape [1,2]")
    end)

    it("loads a small set laid out like Fashion-MNIST (files written here)", function()
      local where = path("mini-fashion")
      assert(os.execute("mkdir -p " .. sh_quote(where)))
      local function img(k) -- image k: pixel p = (k + p) % 256
        local b = {}
        for p = 0, 783 do b[p + 1] = string.char((k + p) % 256) end
        return table.concat(b)
      end
      for _, set in ipairs({ { "train", 3 }, { "t10k", 2 } }) do
        local imgs, labels = {}, {}
        for k = 1, set[2] do imgs[k] = img(k); labels[k] = string.char(k % 10) end
        writefile(where .. "/" .. set[1] .. "-images-idx3-ubyte", idx_header(0x08, { set[2], 28, 28 }) .. table.concat(imgs))
        writefile(where .. "/" .. set[1] .. "-labels-idx1-ubyte", idx_header(0x08, { set[2] }) .. table.concat(labels))
        gzip(where .. "/" .. set[1] .. "-images-idx3-ubyte")
        gzip(where .. "/" .. set[1] .. "-labels-idx1-ubyte")
      end
      local train, test = data.fashion_mnist(where)
      assert.are.same({ 3, 784 }, train.x:shape())
      assert.are.same({ 2, 784 }, test.x:shape())
      assert.are.same({ 2, 3, 4 }, flat(train.y))
      assert.are.same({ 2, 3 }, flat(test.y))
      assert.are.equal(f32(2 / 255), train.x:get(2, 1))
      assert.are.equal(f32(((2 + 783) % 256) / 255), train.x:get(2, 784))
      local tr4 = data.fashion_mnist(where, { flatten = false, dtype = "float64" })
      assert.are.same({ 3, 1, 28, 28 }, tr4.x:shape())
      assert.are.equal("float64", tr4.x:dtype())
      assert.are.equal(((3 + 28 + 5) % 256) / 255, tr4.x:get(3, 1, 2, 6))
    end)

    local loaded
    local function load()
      loaded = loaded or { data.fashion_mnist() }
      return loaded[1], loaded[2]
    end

    it("loads the installed data set: shapes, value and label ranges", function()
      if not installed then
        pending("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        return
      end
      local train, test = load()
      assert.are.same({ 60000, 784 }, train.x:shape())
      assert.are.same({ 60000 }, train.y:shape())
      assert.are.same({ 10000, 784 }, test.x:shape())
      assert.are.same({ 10000 }, test.y:shape())
      for _, s in ipairs({ train, test }) do
        assert.are.equal("float32", s.x:dtype())
        assert.are.equal("float32", s.y:dtype())
        assert.are.equal(0, s.x:min():item())
        assert.are.equal(1, s.x:max():item())
        assert.are.equal(1, s.y:min():item())
        assert.are.equal(10, s.y:max():item())
      end
    end)

    it("matches an independent read of the files (gzip -dc, string.unpack)", function()
      if not installed then
        pending("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        return
      end
      local train, test = load()
      local function head(name, n)
        local f = assert(io.popen("gzip -dc " .. D .. "/" .. name .. " | head -c " .. n))
        local s = f:read("a")
        f:close()
        return s
      end
      -- labels: magic 2049 (0x00000801), count, then one byte per label 0..9
      local magic, count, l1, l2, l3 = string.unpack(">I4I4BBB", head("train-labels-idx1-ubyte.gz", 11))
      assert.are.equal(2049, magic)
      assert.are.equal(60000, count)
      assert.are.same({ l1 + 1, l2 + 1, l3 + 1 }, { train.y:get(1), train.y:get(2), train.y:get(3) })
      local _, tcount, t1 = string.unpack(">I4I4B", head("t10k-labels-idx1-ubyte.gz", 9))
      assert.are.equal(10000, tcount)
      assert.are.equal(t1 + 1, test.y:get(1))
      -- images: magic 2051, count, 28, 28, then the pixels of image 1
      local s = head("train-images-idx3-ubyte.gz", 16 + 2 * 784)
      local imagic, icount, rows, cols = string.unpack(">I4I4I4I4", s)
      assert.are.same({ 2051, 60000, 28, 28 }, { imagic, icount, rows, cols })
      for _, p in ipairs({ 1, 100, 400, 784 }) do
        assert.are.equal(f32(s:byte(16 + p) / 255), train.x:get(1, p))
        assert.are.equal(f32(s:byte(16 + 784 + p) / 255), train.x:get(2, p))
      end
    end)
  end)
end)

describe("pbt.data on hostile or mistaken files", function()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  teardown(function() os.execute("rm -rf " .. sh_quote(dir)) end)

  it("names the line and field of a CSV number the dtype cannot hold", function()
    local p = dir .. "/big.csv"
    writefile(p, "a,b\n1,2\n3,1e39\n")
    assert.has_error(function() data.csv(p, { header = true }) end,
      ("csv: %s: line 3, field 2: '1e39' overflows float32"):format(p))
    assert.are.equal(1e39, data.csv(p, { header = true, dtype = "float64" }):get(2, 2))
    writefile(p, "1e400\n")
    assert.has_error(function() data.csv(p, { dtype = "float64" }) end,
      ("csv: %s: line 1, field 1: '1e400' overflows float64"):format(p))
    writefile(p, "inf,-Infinity\n") -- written as infinities: kept
    local t = data.csv(p)
    assert.are.same({ math.huge, -math.huge }, { t:get(1, 1), t:get(1, 2) })
  end)

  it("stops reading at the limit on the decompressed size", function()
    local p = dir .. "/zeros.csv"
    writefile(p, string.rep("0,0,0,0\n", 5000)) -- 40000 bytes
    gzip(p)
    local gz = p .. ".gz"
    assert.are.equal(5000, data.csv(gz):size(1))
    assert.are.equal(5000, data.csv(gz, { limit = 40000 }):size(1))
    assert.has_error(function() data.csv(gz, { limit = 39999 }) end,
      ("csv: %s: more than 39999 bytes once decompressed (the limit given)"):format(gz))
    assert.has_error(function() data.csv(p, { limit = 100 }) end,
      ("csv: %s: more than 100 bytes once decompressed (the limit given)"):format(p))
    assert.has_error(function() data.csv(p, { limit = 0 }) end,
      "bad argument #2 to 'csv' (field 'limit' must be a positive integer (bytes))")
    assert.has_error(function() data.idx(gz, { limit = 10 }) end,
      ("idx: %s: more than 10 bytes once decompressed (the limit given)"):format(gz))
    assert.has_error(function() data.idx(gz, { limt = 10 }) end,
      "bad argument #2 to 'idx' (unknown option 'limt' (did you mean 'limit'?))")
  end)
end)

describe("pbt.data's options", function()
  it("name a misspelt one, and take a limit written as a float", function()
    local x = T.ones(4, 1)
    assert.has_error(function() data.batches(x, nil, { batch_size = 2, shufle = true }) end,
      "batches: unknown option 'shufle' (did you mean 'shuffle'?)")
    assert.has_error(function() data.fashion_mnist({ flaten = false }) end,
      "fashion_mnist: unknown option 'flaten' (did you mean 'flatten'?)")
    local ok, err = pcall(T.one_hot, T({ 1, 2 }), 3, { dtyp = "float64" })
    assert.is_false(ok)
    assert.matches("unknown option 'dtyp' %(did you mean 'dtype'%?%)", err)
    local p = os.tmpname()
    writefile(p, "1,2\n")
    assert.are.equal(2, data.csv(p, { limit = 2 ^ 20 }):size(2))
    os.remove(p)
  end)
end)
