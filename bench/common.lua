--- bench/common.lua -- the helpers the benchmarks share (one home each):
-- order statistics of timings, a shell command's output, files, and the
-- "name<TAB>seconds" lines a peer script (numpy, PyTorch) prints.  The
-- benchmarks run from the repository root and load it with
--   local common = dofile("bench/common.lua")
local M = {}

--- A sorted copy of xs.
function M.sorted(xs)
  local s = { table.unpack(xs) }
  table.sort(s)
  return s
end

--- The median (the mean of the two middle values for an even count; NaN
-- for none); xs is left alone.
function M.median(xs)
  local s = M.sorted(xs)
  if #s == 0 then return 0 / 0 end
  if #s % 2 == 1 then return s[(#s + 1) // 2] end
  return (s[#s // 2] + s[#s // 2 + 1]) / 2
end

--- "min / median / max" of xs, each formatted with fmt.
function M.min_med_max(xs, fmt)
  local s = M.sorted(xs)
  return (fmt .. " / " .. fmt .. " / " .. fmt):format(s[1], M.median(xs), s[#s])
end

--- "median [min-max]" of xs, each formatted with fmt.
function M.med_range(xs, fmt)
  local s = M.sorted(xs)
  return (fmt .. " [" .. fmt .. "-" .. fmt .. "]"):format(M.median(xs), s[1], s[#s])
end

--- What a shell command printed on stdout.
function M.sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  return out
end

--- A file's size in bytes, nil when it does not exist.
function M.file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Runs cmd (a peer's timing script) and reads its "name<TAB>seconds"
-- lines: name -> seconds.
function M.read_timings(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for line in p:lines() do
    local name, secs = line:match("^(.-)\t(%S+)$")
    if name then out[name] = tonumber(secs) end
  end
  p:close()
  return out
end

--- A long-lived peer process (a numpy, PyTorch or C side of a benchmark)
-- spoken to a line at a time: cmd reads one request per line on stdin and
-- answers each with one line on stdout (a FIFO here, as io.popen gives one
-- direction only).  peer:ask(line) -> its answer (an error when the peer
-- has gone); peer:close() ends it (its stdin closes).
function M.peer(cmd)
  local fifo = os.tmpname()
  os.remove(fifo)
  assert(os.execute("mkfifo " .. fifo), "cannot make a FIFO at " .. fifo)
  local w = assert(io.popen(cmd .. " > " .. fifo, "w"))
  local r = assert(io.open(fifo, "r")) -- blocks until the peer opens it
  local self = {}
  function self:ask(line)
    w:write(line, "\n")
    w:flush()
    local answer = r:read("l")
    if not answer then error(("the peer %q ended before answering %q"):format(cmd, line), 2) end
    return answer
  end
  function self:close()
    w:close()
    r:close()
    os.remove(fifo)
  end
  return self
end

--- The plain-memcpy reference (bench/memcpy.c, built by make bench-tools
-- as build/bench/memcpy.so); exits saying so when it is not built.
function M.memcpy()
  package.cpath = "./build/bench/?.so;" .. package.cpath
  local ok, memcpy = pcall(require, "memcpy")
  if not ok then
    io.stderr:write("this benchmark needs build/bench/memcpy.so (the memcpy reference): run make bench-tools\n")
    os.exit(2)
  end
  return memcpy
end

--- The --quick flag of a benchmark's command line (anything else is a
-- usage error naming the script).
function M.quick_flag(script)
  local quick = false
  for _, a in ipairs(arg) do
    if a == "--quick" then quick = true
    else error(("usage: lua5.4 bench/%s [--quick]"):format(script), 0) end
  end
  return quick
end

--- What produced the figures: the command line, the UTC date, the cores.
function M.provenance()
  local command = "lua5.4 " .. arg[0] .. (#arg > 0 and " " .. table.concat(arg, " ") or "")
  return command, os.date("!%Y-%m-%d %H:%M UTC"), (M.sh("nproc"):gsub("%s+$", ""))
end

return M
