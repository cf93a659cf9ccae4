-- pbt.json: the encoder and decoder of the run directory's files.
local json = require("pbt.json")

local function kinds(t)
  local out = {}
  for k, v in pairs(t) do out[k] = math.type(v) or type(v) end
  return out
end

describe("pbt.json", function()
  describe(".encode() / .decode()", function()
    it("keeps integers and floats apart, 2.0 included", function()
      assert.are.equal("[2.0,3,-0.5,1e+300,null]", json.encode({ 2.0, 3, -0.5, 1e300, 1 / 0 }):gsub("1.0000000000000001e%+300", "1e+300"))
      local back = json.decode("[2.0,3,-0.5,1e+300]")
      assert.are.same({ "float", "integer", "float", "float" },
        { math.type(back[1]), math.type(back[2]), math.type(back[3]), math.type(back[4]) })
    end)

    it("reads strings with and without escapes", function()
      assert.are.equal('ab"c\\dAe\n', json.decode([["ab\"c\\d\u0041e\n"]]))
      assert.are.equal("plain", json.decode([["plain"]]))
      assert.are.same({ k = "v", n = { 1, { z = "q" } } }, json.decode([[ { "k" : "v", "n" : [1, {"z":"q"}] } ]]))
    end)

    it("names what is wrong with bad text", function()
      for _, c in ipairs({
        { "[1,", "json: unexpected character at byte 4" },
        { '"abc', "json: unterminated string at byte 5" },
        { "{1:2}", "json: expected a key at byte 2" },
        { "[1] x", "json: trailing characters at byte 5" },
        { '"\\q"', "json: bad escape at byte 2" },
      }) do
        assert.has_error(function() json.decode(c[1]) end, c[2])
      end
    end)
  end)

  describe(".encode_object() / .decode_object()", function()
    it("writes the named fields in the order given", function()
      assert.are.equal('{"b":2,"a":0.5,"c":"x\\"y","d":false,"e":null,"f":"function: builtin"}',
        json.encode_object({ a = 0.5, b = 2, c = 'x"y', d = false, f = setmetatable({}, {
          __tostring = function() return "function: builtin" end }) }, { "b", "a", "c", "d", "e", "f" }))
    end)

    it("reads flat objects back with their kinds, and anything else through decode", function()
      local t = json.decode_object('{"a":1,"b":2.0,"c":"x,y}","d":true,"e":null,"f":-1e-05,"g":"q\\"z"}')
      assert.are.same({ a = 1, b = 2.0, c = "x,y}", d = true, f = -1e-05, g = 'q"z' }, t)
      assert.are.same({ a = "integer", b = "float", c = "string", d = "boolean", f = "float", g = "string" },
        kinds(t))
      assert.are.same({}, json.decode_object("{}"))
      assert.are.same({ n = { 1, 2 } }, json.decode_object('{"n":[1,2]}'))
      assert.has_error(function() json.decode_object('{"a":}') end)
    end)
  end)
end)
