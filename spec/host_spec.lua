-- examples/host.c: a program that embeds Lua 5.4 with pbt linked in
-- statically (build/libpbt_lua.a, luaopen_pbt_core preloaded), built by
-- `make test` (and by make check / make valgrind for their builds).
local pbt = require("pbt")

local build_dir = require("spec.helper").build_dir

local function run(cmd)
  -- the host loads no core.so: it must not find one through LUA_CPATH either
  local p = io.popen("env -u LUA_CPATH -u LUA_CPATH_5_4 " .. cmd .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return out:gsub("exit=%d+%s*$", ""), code
end

describe("the host program (examples/host.c)", function()
  local host = (build_dir() or "build") .. "/host"
  local f = io.open(host, "rb")
  if not f then
    it("is skipped: " .. host .. " is not built (make test builds it)", function() pending(host) end)
    return
  end
  f:close()

  it("runs an experiment file with pbt linked in, as lua5.4 with core.so runs it", function()
    local ref = pbt.load_experiment("spec/fixtures/linear.lua"):run{ workers = 1, progress = false }
    for _, workers in ipairs({ 1, 2 }) do -- (worker threads take pbt.core from the binary too)
      local out, code = run(("%s spec/fixtures/linear.lua lua %d"):format(host, workers))
      assert.are.equal(0, code, out)
      assert.are.equal(("best member %d, score %.17g\n"):format(ref.best.member, ref.best.score), out)
    end
  end)

  it("reports an error with its traceback and exit status 1", function()
    local out, code = run(host .. " /nonexistent/experiment.lua")
    assert.are.equal(1, code)
    assert.matches("^host: pbt: cannot open /nonexistent/experiment.lua", out)
    assert.matches("stack traceback:", out, 1, true)
    out, code = run(host)
    assert.are.equal(2, code)
    assert.matches("usage: .*host EXPERIMENT_FILE %[LUA_DIR%] %[WORKERS%]", out)
  end)
end)
