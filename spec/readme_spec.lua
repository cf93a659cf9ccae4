-- The README's Lua examples, each run as a separate script from the
-- checkout, the way a user pastes them: the README stays true.
local readfile = require("spec.helper").readfile

local ENV = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)

local function run(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local p = io.popen(ENV .. "lua5.4 " .. path .. " 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  os.remove(path)
  local status = tonumber(out:match("exit=(%d+)%s*$"))
  return out:gsub("exit=%d+%s*$", ""), status
end

-- The ```<lang> blocks of the README, in order, with the line each starts on.
local function blocks(lang)
  local list, cur, n = {}, nil, 0
  for line in (readfile("README.md") .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if cur then
      if line:match("^```") then
        list[#list + 1] = cur
        cur = nil
      else
        cur.code = cur.code .. line .. "\n"
      end
    elseif line == "```" .. lang then
      cur = { line = n, code = "" }
    end
  end
  return list
end

local build_dir = require("spec.helper").build_dir

describe("the README", function()
  local list = blocks("lua")

  it("has its examples", function()
    assert.is_true(#list >= 4)
  end)

  for _, b in ipairs(list) do
    it("runs the example at line " .. b.line, function()
      local code = b.code
      -- a fragment of the API section runs with pbt loaded, as in a script
      if not code:find('require("pbt")', 1, true) then
        code = 'local pbt = require("pbt")\n' .. code
      end
      local out, status = run(code)
      assert.are.equal(0, status, out)
      -- what the example says it prints, in a trailing comment ("-- 10",
      -- "-- 3, 12"), is a whole line of the output (a tensor's values: "[ 3, 12]")
      for expect in b.code:gmatch("print%b()%s*%-%-%s*([^\n]+)") do
        local values = {}
        for v in expect:gmatch("[^,%s]+") do values[#values + 1] = v end
        if #values > 0 and tonumber(values[1]) then
          for i, v in ipairs(values) do values[i] = v:gsub("%p", "%%%0") end
          local line = "^%[?%s*" .. table.concat(values, ",?%s+") .. "%s*%]?$"
          local found = false
          for l in out:gmatch("[^\n]+") do found = found or l:find(line) ~= nil end
          assert.is_true(found, ("line %d prints %s:\n%s"):format(b.line, expect, out))
        end
      end
    end)
  end

  it("compiles and runs its C example with its own command", function()
    local c, sh = blocks("c"), blocks("sh")
    assert.are.equal(1, #c)
    local cmd
    for _, b in ipairs(sh) do cmd = cmd or b.code:match("(cc [^\n]*example%.c[^\n]*)") end
    assert.is_truthy(cmd, "the README's cc command")
    local build = assert(build_dir(), "the build directory on package.cpath")
    local src = os.tmpname() .. ".c"
    local exe = src:gsub("%.c$", "")
    local f = assert(io.open(src, "w"))
    f:write(c[1].code)
    f:close()
    cmd = cmd:gsub("build/", (build:gsub("%%", "%%%%")) .. "/"):gsub("%S*example%.c", src)
      :gsub("%s+%-o%s+%S+", "") -- (its own output file: this test names one)
    if build:match("asan") then cmd = cmd .. " -fsanitize=address,undefined" end
    local p = io.popen(cmd .. " -o " .. exe .. " 2>&1 && " .. exe .. " 2>&1; echo \"exit=$?\"")
    local out = p:read("a")
    p:close()
    os.remove(src)
    os.remove(exe)
    assert.is_truthy(out:match("exit=0%s*$"), out)
    -- c[0][0] of a a^T: the sum of the squares of a's first row, > 0
    local v = tonumber(out:match("^(%S+)\n"))
    assert.is_truthy(v and v > 0, out)
  end)
end)
