-- pbt.core.sql (csrc/lpbt_sql.c, csrc/pbt_sql.c): the SQLite database the
-- run store writes to.  Each test works in a fresh database under a
-- temporary directory.  Expected values are written by hand; error texts are
-- SQLite 3.40's.
local core = require("pbt.core")
local helper = require("spec.helper")
local sql = core.sql

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- every byte value once, 0 to 255
local all_bytes = {}
for b = 0, 255 do all_bytes[#all_bytes + 1] = string.char(b) end
all_bytes = table.concat(all_bytes)

describe("pbt.core.sql", function()
  local dir, db

  local function path(name) return dir .. "/" .. name end

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. sh_quote(dir)))
    db = assert(sql.open(path("test.db")))
    db:exec("CREATE TABLE v (id INTEGER PRIMARY KEY, x)")
    db:exec("CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, age INTEGER)")
  end)

  after_each(function()
    getmetatable(db).__gc(db) -- closes it unless a test did
    os.execute("rm -rf " .. sh_quote(dir))
  end)

  it("runs under Lua 5.4", function() assert.are.equal("Lua 5.4", _VERSION) end)

  describe("open()", function()
    it("makes a pbt.SQL in WAL mode, synchronous FULL, with foreign keys and a 10 s busy timeout", function()
      assert.are.equal("pbt.SQL", getmetatable(db).__name)
      assert.are.same({ { journal_mode = "wal" } }, db:exec("PRAGMA journal_mode"))
      assert.are.same({ { synchronous = 2 } }, db:exec("PRAGMA synchronous"))
      assert.are.same({ { foreign_keys = 1 } }, db:exec("PRAGMA foreign_keys"))
      assert.are.same({ { timeout = 10000 } }, db:exec("PRAGMA busy_timeout"))
      assert.is_true(helper.exists(path("test.db")))
    end)

    it("returns nil and a message naming the path when the directory does not exist", function()
      local where = path("missing/dir/run.db")
      local got, msg = sql.open(where)
      assert.is_nil(got)
      assert.are.equal(where .. ": unable to open database file", msg)
    end)

    it("opens a file that is not a database; its first exec says so", function()
      helper.writefile(path("garbage.db"), ("not a database, just bytes " .. all_bytes):rep(20))
      local g = assert(sql.open(path("garbage.db")))
      assert.has_error(function() g:exec("SELECT count(*) AS n FROM sqlite_schema") end,
        "exec: file is not a database")
      assert.has_error(function() g:exec("CREATE TABLE t (a)") end, "exec: file is not a database")
      assert.are.same({ false, "file is not a database" }, { g:integrity() })
      g:close()
    end)

    it("keeps what was committed for the next connection", function()
      db:exec("INSERT INTO person (name, age) VALUES (?, ?)", "ada", 36)
      local other = assert(sql.open(path("test.db")))
      assert.are.same({ { name = "ada", age = 36 } }, other:exec("SELECT name, age FROM person"))
      other:close()
      db:close()
      local again = assert(sql.open(path("test.db")))
      assert.are.same({ { name = "ada", age = 36 } }, again:exec("SELECT name, age FROM person"))
      again:close()
    end)

    it("names its arguments in errors", function()
      assert.has_error(function() sql.open() end, "bad argument #1 to 'open' (string (a path) expected, got no value)")
      assert.has_error(function() sql.open({}) end, "bad argument #1 to 'open' (string (a path) expected, got table)")
      assert.has_error(function() sql.open(path("a\0b")) end,
        "bad argument #1 to 'open' (the path contains a zero byte)")
    end)
  end)

  describe(":exec()", function()
    -- value bound, SQLite's typeof, the value read back (nil: absent)
    local cases = {
      { name = "integer 0", value = 0, type = "integer", back = 0 },
      { name = "integer -1", value = -1, type = "integer", back = -1 },
      { name = "integer 2^62", value = 1 << 62, type = "integer", back = 4611686018427387904 },
      { name = "integer -2^63", value = math.mininteger, type = "integer", back = math.mininteger },
      { name = "integer 2^63-1", value = math.maxinteger, type = "integer", back = math.maxinteger },
      { name = "float 0.1", value = 0.1, type = "real", back = 0.1 },
      { name = "float 1e300", value = 1e300, type = "real", back = 1e300 },
      { name = "float 1/3", value = 1 / 3, type = "real", back = 1 / 3 },
      { name = "float 2.0 stays a float", value = 2.0, type = "real", back = 2.0 },
      { name = "float -2.5e-310 (subnormal)", value = -2.5e-310, type = "real", back = -2.5e-310 },
      { name = "float inf", value = math.huge, type = "real", back = math.huge },
      { name = "true", value = true, type = "integer", back = 1 },
      { name = "false", value = false, type = "integer", back = 0 },
      { name = "text", value = "héllo, world", type = "text", back = "héllo, world" },
      { name = "empty text", value = "", type = "text", back = "" },
      { name = "text with a zero byte", value = "a\0b", type = "text", back = "a\0b" },
      { name = "blob of every byte", value = sql.blob(all_bytes), type = "blob", back = all_bytes },
      { name = "blob of zero bytes", value = sql.blob(""), type = "blob", back = "" },
      { name = "nil", value = nil, type = "null", back = nil },
    }
    for _, c in ipairs(cases) do
      it("stores and reads back " .. c.name, function()
        local rows, changed = db:exec("INSERT INTO v (x) VALUES (?)", c.value)
        assert.are.same({}, rows)
        assert.are.equal(1, changed)
        rows = db:exec("SELECT x, typeof(x) AS type FROM v")
        assert.are.equal(1, #rows)
        assert.are.equal(c.type, rows[1].type)
        assert.are.equal(c.back, rows[1].x)
        assert.are.equal(math.type(c.back), math.type(rows[1].x))
      end)
    end

    it("reads every type in one row, NULL as an absent field", function()
      db:exec("INSERT INTO v (id, x) VALUES (?, ?)", 7, sql.blob("\0\255"))
      local rows = db:exec("SELECT id, x, 0.5 AS half, 'txt' AS t, NULL AS missing FROM v")
      assert.are.same({ { id = 7, x = "\0\255", half = 0.5, t = "txt" } }, rows)
      assert.are.equal("integer", math.type(rows[1].id))
    end)

    it("returns the rows in order, and no rows as an empty array", function()
      for i, name in ipairs({ "ada", "bob", "cy" }) do
        db:exec("INSERT INTO person (name, age) VALUES (?, ?)", name, 30 + i)
      end
      assert.are.same({ { name = "ada", age = 31 }, { name = "bob", age = 32 }, { name = "cy", age = 33 } },
        db:exec("SELECT name, age FROM person ORDER BY id"))
      assert.are.same({ { name = "cy" } }, db:exec("SELECT name FROM person WHERE age > ?", 32.5))
      assert.are.same({}, db:exec("SELECT name FROM person WHERE age > ?", 99))
    end)

    it("counts the rows changed, and 0 for statements that change none", function()
      local function changed(...) return select(2, db:exec(...)) end
      assert.are.equal(3, changed("INSERT INTO person (name, age) VALUES ('a', 1), ('b', 2), ('c', 3)"))
      assert.are.equal(0, changed("SELECT * FROM person"))
      assert.are.equal(2, changed("UPDATE person SET age = age + 1 WHERE age < ?", 3))
      assert.are.equal(0, changed("UPDATE person SET age = 0 WHERE age > 100"))
      assert.are.equal(0, changed("CREATE TABLE other (a)"))
      assert.are.equal(3, changed("DELETE FROM person"))
      assert.are.equal(0, changed("SELECT 1 AS one"))
    end)

    it("accepts whitespace and comments after the statement", function()
      assert.are.same({ { one = 1 } }, db:exec("SELECT 1 AS one;  \n\t"))
      assert.are.same({ { one = 1 } }, db:exec("SELECT 1 AS one; -- a comment\n /* another */ "))
    end)

    -- statement, arguments, the error
    local errors = {
      { "a syntax error", { "SELEC 1" }, 'exec: near "SELEC": syntax error' },
      { "a missing table", { "SELECT * FROM nope" }, "exec: no such table: nope" },
      { "a NOT NULL constraint", { n = 2, "INSERT INTO person (name) VALUES (?)", nil },
        "exec: NOT NULL constraint failed: person.name" },
      { "a foreign key", { "INSERT INTO pet (owner) VALUES (?)", 42 }, "exec: FOREIGN KEY constraint failed" },
      { "too few parameters", { "SELECT ?, ?", 1 }, "exec: the statement takes 2 parameters, 1 given" },
      { "too many parameters", { "SELECT ?", 1, 2 }, "exec: the statement takes 1 parameter, 2 given" },
      { "parameters where none are taken", { "SELECT 1", "x" },
        "exec: the statement takes 0 parameters, 1 given" },
      { "a table parameter", { "SELECT ?", {} },
        "bad argument #2 to 'exec' (nil, boolean, number, string or blob expected, got table)" },
      { "a function parameter", { "SELECT ?, ?", 1, print },
        "bad argument #3 to 'exec' (nil, boolean, number, string or blob expected, got function)" },
      { "two statements", { "SELECT 1; SELECT 2" }, "exec: one statement at a time" },
      { "a statement after a comment", { "SELECT 1; /* c */ DROP TABLE v" }, "exec: one statement at a time" },
      { "an empty statement", { " ; " }, "exec: no statement" },
      { "no statement at all", { "" }, "exec: no statement" },
      { "a zero byte", { "SELECT 1\0" }, "exec: the statement contains a zero byte" },
      { "no SQL", {}, "bad argument #1 to 'exec' (string expected, got no value)" },
    }
    for _, e in ipairs(errors) do
      it("raises on " .. e[1], function()
        db:exec("CREATE TABLE pet (id INTEGER PRIMARY KEY, owner INTEGER REFERENCES person (id))")
        local args = e[2]
        assert.has_error(function() db:exec(table.unpack(args, 1, args.n or #args)) end, e[3])
        -- the connection is still usable (nothing was left open)
        db:exec("INSERT INTO person (name) VALUES ('after')")
        assert.are.same({ { n = 1 } }, db:exec("SELECT count(*) AS n FROM person"))
      end)
    end

    it("raises on a UNIQUE constraint, keeping the first row", function()
      db:exec("INSERT INTO person (name) VALUES (?)", "ada")
      assert.has_error(function() db:exec("INSERT INTO person (name) VALUES (?)", "ada") end,
        "exec: UNIQUE constraint failed: person.name")
      assert.are.same({ { n = 1 } }, db:exec("SELECT count(*) AS n FROM person"))
    end)

    it("names the type of a parameter it cannot bind", function()
      assert.has_error(function() db:exec("SELECT ?", db) end,
        "bad argument #2 to 'exec' (nil, boolean, number, string or blob expected, got pbt.SQL)")
    end)
  end)

  describe("blob()", function()
    it("needs a string", function()
      assert.has_error(function() sql.blob({}) end, "bad argument #1 to 'blob' (string expected, got table)")
      assert.has_error(function() sql.blob() end, "bad argument #1 to 'blob' (string expected, got no value)")
    end)
  end)

  describe(":transaction()", function()
    local function names()
      local out = {}
      for _, r in ipairs(db:exec("SELECT name FROM person ORDER BY id")) do out[#out + 1] = r.name end
      return out
    end

    it("commits when fn returns, passing its arguments and returning its results", function()
      local a, b, c, n = db:transaction(function(x, y)
        db:exec("INSERT INTO person (name) VALUES (?)", x)
        db:exec("INSERT INTO person (name) VALUES (?)", y)
        return "done", nil, 3
      end, "ada", "bob")
      assert.are.same({ "done", nil, 3 }, { a, b, c })
      assert.is_nil(n)
      assert.are.same({ "ada", "bob" }, names())
      local other <close> = assert(sql.open(path("test.db")))
      assert.are.same({ { n = 2 } }, other:exec("SELECT count(*) AS n FROM person"))
    end)

    it("rolls back when fn raises, raising the same error object", function()
      db:exec("INSERT INTO person (name) VALUES ('kept')")
      local boom = { reason = "boom" }
      local ok, e = pcall(db.transaction, db, function()
        db:exec("INSERT INTO person (name) VALUES ('lost')")
        error(boom)
      end)
      assert.is_false(ok)
      assert.are.equal(boom, e) -- the same table
      assert.are.same({ "kept" }, names())
      ok, e = pcall(db.transaction, db, function()
        db:exec("INSERT INTO person (name) VALUES ('lost')")
        db:exec("INSERT INTO person (name) VALUES ('kept')") -- UNIQUE fails
      end)
      assert.is_false(ok)
      assert.matches("exec: UNIQUE constraint failed: person.name$", e)
      assert.are.same({ "kept" }, names())
      -- a transaction works again after one that failed
      db:transaction(function() db:exec("INSERT INTO person (name) VALUES ('next')") end)
      assert.are.same({ "kept", "next" }, names())
    end)

    it("refuses to nest", function()
      local inner_ok, inner_err
      db:transaction(function()
        db:exec("INSERT INTO person (name) VALUES ('outer')")
        inner_ok, inner_err = pcall(db.transaction, db, function() end)
      end)
      assert.is_false(inner_ok)
      assert.are.equal("transaction: already in a transaction", inner_err)
      assert.are.same({ "outer" }, names())
    end)

    it("needs a function", function()
      assert.has_error(function() db:transaction() end,
        "bad argument #1 to 'transaction' (function expected, got no value)")
    end)
  end)

  describe(":integrity()", function()
    it("is true on a good database", function()
      db:exec("INSERT INTO person (name, age) VALUES ('ada', 36)")
      assert.are.same({ true }, { db:integrity() })
    end)
  end)

  describe(":close()", function()
    it("closes; every method then raises naming itself", function()
      db:close()
      for _, use in ipairs({
        { function() db:exec("SELECT 1") end, "exec" },
        { function() db:transaction(function() end) end, "transaction" },
        { function() db:integrity() end, "integrity" },
        { function() db:close() end, "close" },
      }) do
        assert.has_error(use[1], "bad argument #1 to '" .. use[2] .. "' (database is closed)")
      end
      getmetatable(db).__gc(db) -- closing again is harmless
      getmetatable(db).__close(db)
    end)

    it("is closed by <close>", function()
      local kept
      do
        local d <close> = assert(sql.open(path("other.db")))
        d:exec("CREATE TABLE t (a)")
        kept = d
      end
      assert.has_error(function() kept:exec("SELECT 1") end, "bad argument #1 to 'exec' (database is closed)")
    end)
  end)
end)
