-- pbt.core.sql on a real PostgreSQL server, which this spec starts itself
-- (Debian's postgresql: initdb and pg_ctl in a temporary directory, a Unix
-- socket, as the postgres user when run as root) and stops at the end.
local pbt = require("pbt")
local sql = pbt.core.sql

local helper = require("spec.helper")

local BIN = helper.postgres_bindir()
local DIR, PORT, SERVER
local URL

describe("pbt.core.sql on PostgreSQL", function()
  if not BIN then
    it("is skipped: no PostgreSQL server binaries (Debian's postgresql; the README's test command installs it)",
      function() pending("no /usr/lib/postgresql/*/bin/initdb") end)
    return
  end

  setup(function()
    SERVER = helper.postgres_server()
    DIR, PORT, URL = SERVER.dir, SERVER.port, SERVER.url
  end)

  teardown(function() SERVER.stop() end)

  it("keeps every type, NULL and a ? inside a string", function()
    local db = assert(sql.open(URL))
    db:exec("CREATE TABLE kinds (k BIGINT PRIMARY KEY, x DOUBLE PRECISION, s TEXT, b BYTEA, n BIGINT)")
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local blob = table.concat(bytes)
    local _, changed = db:exec("INSERT INTO kinds VALUES (?, ?, ?, ?, ?)", 1 << 62, 0.1, "a?b 'c'",
      sql.blob(blob), nil)
    assert.are.equal(1, changed)
    db:exec("INSERT INTO kinds VALUES (?, ?, '?', ?, ?)", math.mininteger, 1e300, sql.blob(""), 7)
    local rows = db:exec("SELECT * FROM kinds ORDER BY k")
    assert.are.same({ k = math.mininteger, x = 1e300, s = "?", b = "", n = 7 }, rows[1])
    assert.are.same({ k = 1 << 62, x = 0.1, s = "a?b 'c'", b = blob }, rows[2])
    assert.are.equal("integer", math.type(rows[2].k))
    db:close()
  end)

  it("reads every column type it knows in binary and the others as the server's text, run after run", function()
    local db = assert(sql.open(URL))
    db:exec("CREATE TABLE mixed (k SMALLINT, i INTEGER, b BOOLEAN, f REAL, v VARCHAR(8), c CHAR(3), " ..
      "n NUMERIC(10, 3), t DATE, o OID)")
    db:exec("INSERT INTO mixed VALUES (-7, -70000, true, 0.5, 'ab', 'x', 12.345, '2026-12-05', 4000000000)")
    local want = { k = -7, i = -70000, b = 1, f = 0.5, v = "ab", c = "x  ", o = 4000000000 }
    for _ = 1, 3 do -- prepared on the first run, reused after
      local r = db:exec("SELECT k, i, b, f, v, c, o FROM mixed")[1]
      assert.are.same(want, r)
      assert.are.equal("integer", math.type(r.k))
      -- a column whose type has no binary reader here: the whole row as text
      assert.are.same({ k = -7, n = "12.345", t = "2026-12-05", b = 1 },
        db:exec("SELECT k, n, t, b FROM mixed")[1])
    end
    -- past the 256 statements kept prepared, the others run unprepared, as right
    for k = 1, 300 do assert.are.same({ { x = k, s = "s" .. k } }, db:exec(("SELECT %d AS x, 's%d' AS s"):format(k, k))) end
    -- (1e300 as float8 and a bytea of every byte value: see "keeps every type")
    assert.are.same({ { x = 1 } }, db:exec("SELECT 1 AS x"))
    db:close()
  end)

  it("names what the server refuses", function()
    local db = assert(sql.open(URL))
    db:exec("CREATE TABLE once (k BIGINT PRIMARY KEY)")
    db:exec("INSERT INTO once VALUES (1)")
    assert.has_error(function() db:exec("SELEC 1") end, 'exec: syntax error at or near "SELEC"')
    assert.has_error(function() db:exec("INSERT INTO once VALUES (?)", 1) end,
      'exec: duplicate key value violates unique constraint "once_pkey"')
    assert.has_error(function() db:exec("SELECT 1; SELECT 2") end, "exec: one statement at a time")
    assert.has_error(function() db:exec("SELECT ?", 1, 2) end, "exec: the statement takes 1 parameter, 2 given")
    db:close()
    local none, msg = sql.open(("postgresql:///postgres?host=%s&port=%d&user=postgres"):format(DIR, PORT + 1))
    assert.is_nil(none)
    assert.matches("connection to server on socket", msg, 1, true)
  end)

  it("commits a transaction, rolls one back when it raises, and another connection sees the result", function()
    local a, b = assert(sql.open(URL)), assert(sql.open(URL))
    a:exec("CREATE TABLE acct (k BIGINT PRIMARY KEY, v BIGINT)")
    assert.are.equal(3, a:transaction(function()
      a:exec("INSERT INTO acct VALUES (1, 10)")
      a:exec("INSERT INTO acct VALUES (2, 20)")
      return 3
    end))
    local boom = {}
    local ok, err = pcall(a.transaction, a, function()
      a:exec("UPDATE acct SET v = 0")
      error(boom)
    end)
    assert.is_false(ok)
    assert.are.equal(boom, err)
    assert.are.same({ { k = 1, v = 10 }, { k = 2, v = 20 } }, b:exec("SELECT * FROM acct ORDER BY k"))
    assert.is_true(a:integrity())
    -- a statement that failed inside (its error caught) means nothing is written
    assert.has_error(function()
      a:transaction(function()
        a:exec("UPDATE acct SET v = 99")
        pcall(a.exec, a, "INSERT INTO acct VALUES (1, 1)")
      end)
    end, "transaction: a statement failed inside it, so nothing was written")
    assert.are.same({ { k = 1, v = 10 }, { k = 2, v = 20 } }, b:exec("SELECT * FROM acct ORDER BY k"))
    a:close()
    b:close()
  end)

  it("numbers any count of ? (past 999) and refuses past the protocol's 65535", function()
    local db = assert(sql.open(URL))
    local args = {}
    for k = 1, 1200 do args[k] = k end
    local row = db:exec("SELECT " .. ("?::bigint + "):rep(1199) .. "?::bigint AS total", table.unpack(args))[1]
    assert.are.equal(1200 * 1201 // 2, row.total)
    assert.has_error(function() db:exec("SELECT " .. ("?,"):rep(65535) .. "?") end,
      "exec: more than 65535 parameters")
    db:close()
  end)
end)
