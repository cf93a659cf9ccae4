-- Helpers shared by the specs (require("spec.helper")); not a spec itself.
local M = {}

--- Calls fn(idx) for every multi-index of shape, in row-major order (idx is
-- reused: copy what you keep).
function M.each_index(shape, fn)
  local idx = {}
  local function walk(d)
    if d > #shape then return fn(idx) end
    for i = 1, shape[d] do
      idx[d] = i
      walk(d + 1)
    end
  end
  walk(1)
end

--- All elements of a tensor as a flat table in row-major order, read one by
-- one through t:get (independent of the kernels under test).
function M.flat(t)
  local out, shape = {}, t:shape()
  M.each_index(shape, function(idx) out[#out + 1] = t:get(table.unpack(idx, 1, #shape)) end)
  return out
end

--- A nested table of shape {n, m} with v(i, j) at [i][j].
function M.grid(n, m, v)
  local t = {}
  for i = 1, n do
    t[i] = {}
    for j = 1, m do t[i][j] = v(i, j) end
  end
  return t
end

--- The bytes of a file, and a file made of bytes (test fixtures).
function M.readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- The build the suite runs against: the directory of pbt/core.so on the
-- cpath (build, build/asan, build/debug), or nil.
function M.build_dir()
  for dir in package.cpath:gmatch("([^;]*)/%?%.so") do
    local f = io.open(dir .. "/pbt/core.so", "rb")
    if f then
      f:close()
      return dir
    end
  end
end

--- A fresh path in the temporary directory, nothing there yet.
function M.tmpname()
  local d = os.tmpname()
  os.remove(d)
  return d
end

--- Does a file exist (can it be opened)?
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- A run's event log without its wall-clock times, as JSON text (each event
-- must have a number `time`, the one field two runs of a seed may differ in).
function M.log_text(events)
  local json = require("pbt.json")
  local plain = {}
  for k, ev in ipairs(events) do
    assert(type(ev.time) == "number", "event " .. k .. " has no time")
    local c = {}
    for key, v in pairs(ev) do if key ~= "time" then c[key] = v end end
    plain[k] = c
  end
  return json.encode(plain)
end

--- x rounded to float32.
function M.f32(x) return (string.unpack("f", string.pack("f", x))) end

-- ---- a PostgreSQL server of the spec's own --------------------------------------------

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end
M.sh = sh

-- the server's commands run as the postgres user when root, and without the
-- sanitizer runtime this process may have been started with (make check
-- preloads it)
local function as_server_user(cmd)
  local _, uid = sh("id -u")
  if uid:match("^0") then cmd = ("su postgres -s /bin/sh -c %q"):format(cmd) end
  return "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS " .. cmd
end

--- The directory of the newest PostgreSQL server binaries installed, or nil.
function M.postgres_bindir()
  local ok, out = sh("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1")
  local dir = ok and out:match("^(%S+)") or nil
  if dir and io.open(dir .. "/initdb") then return dir end
  return nil
end

local port_offset = 0

--- Starts a PostgreSQL server (initdb and pg_ctl in a temporary directory,
-- a Unix socket only) and returns {url, dir, port, stop(), start(),
-- crash()}: crash stops it at once (immediate mode: the connections are cut
-- as if the server went away), start starts it again.
function M.postgres_server()
  local bin = assert(M.postgres_bindir(), "no PostgreSQL server binaries")
  local dir = os.tmpname()
  os.remove(dir)
  port_offset = port_offset + 1
  local port = 54000 + (os.time() + port_offset * 7) % 1000
  assert(os.execute("mkdir -p " .. dir .. " && chmod 777 " .. dir))
  local ok, out = sh(as_server_user(("%s/initdb -D %s/data -A trust -U postgres"):format(bin, dir)))
  assert(ok, out)
  local server = { dir = dir, port = port,
    url = ("postgresql:///postgres?host=%s&port=%d&user=postgres"):format(dir, port) }
  function server.start()
    local okc, o = sh(as_server_user(("%s/pg_ctl -D %s/data -o \"-k %s -p %d -c listen_addresses=''\" -l %s/log -w start")
      :format(bin, dir, dir, port, dir)))
    assert(okc, o)
  end
  function server.crash()
    sh(as_server_user(("%s/pg_ctl -D %s/data -m immediate -w stop"):format(bin, dir)))
  end
  function server.stop()
    sh(as_server_user(("%s/pg_ctl -D %s/data -m fast -w stop"):format(bin, dir)))
    os.execute("rm -rf " .. dir)
  end
  server.start()
  return server
end

return M
