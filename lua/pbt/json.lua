--- pbt.json: a small JSON encoder for logs (events.jsonl, schedules) and
-- the matching decoder for reading them back (replay).  Tables with keys
-- 1..n are arrays; other tables are objects with keys in sorted order, so
-- that the same value always gives the same text.
local M = {}

-- a float as text that reads back as a float (2.0 stays "2.0", not "2")
local function float_text(v)
  local t = ("%.17g"):format(v)
  if not t:find("[.eEn]") then t = t .. ".0" end
  return t
end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  if not s:find('[%c"\\]') then return '"' .. s .. '"' end
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do if t[i] == nil then return false end end
  return true, n
end

local function encode(v, out, depth)
  local ty = type(v)
  if depth > 100 then error("json: nested too deeply", 0) end
  if v == nil then out[#out + 1] = "null"
  elseif ty == "boolean" then out[#out + 1] = tostring(v)
  elseif ty == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif math.type(v) == "integer" then out[#out + 1] = tostring(v)
    else out[#out + 1] = float_text(v) end
  elseif ty == "string" then out[#out + 1] = encode_string(v)
  elseif ty == "table" then
    local arr, n = is_array(v)
    if arr and n > 0 then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        encode(val, out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    error("json: cannot encode a " .. ty, 0)
  end
end

M.encode_string = encode_string
M.float_text = float_text

--- A function(t) giving the text of the JSON object of t's fields named in
-- keys (in that order): numbers, strings and booleans as themselves, nil
-- as null, any other value as the string tostring gives.  The quick way for
-- flat records such as a member's hyperparameters (the keys are encoded
-- once).
function M.object_encoder(keys)
  local prefixes = {}
  for k, key in ipairs(keys) do prefixes[k] = encode_string(key) .. ":" end
  return function(t)
    local parts = {}
    for k, key in ipairs(keys) do
      local v, text = t[key], nil
      local mt = math.type(v)
      if mt == "float" then
        text = (v == v and v ~= math.huge and v ~= -math.huge) and float_text(v) or "null"
      elseif mt == "integer" or type(v) == "boolean" then text = tostring(v)
      elseif v == nil then text = "null"
      else text = encode_string(tostring(v)) end -- strings, and a choice of anything
      parts[k] = prefixes[k] .. text
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
end

--- The same for one object: encode_object(t, keys).
function M.encode_object(t, keys) return M.object_encoder(keys)(t) end

function M.encode(v)
  local out = {}
  encode(v, out, 0)
  return table.concat(out)
end

-- ---- decoding --------------------------------------------------------------

local function decode_error(s, i, what)
  error(("json: %s at byte %d"):format(what, i), 0)
end

local decode_value

local byte, find, sub = string.byte, string.find, string.sub

local function skip(s, i) return find(s, "[^ \t\r\n]", i) or #s + 1 end

local unescape = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\",
  ["/"] = "/" }

local function decode_string(s, i)
  local j = i + 1
  local k = find(s, '["\\]', j) -- the next quote or backslash
  if k and byte(s, k) == 34 then return sub(s, j, k - 1), k + 1 end -- no escapes
  local parts = {}
  while true do
    if not k then decode_error(s, #s + 1, "unterminated string") end
    if k > j then parts[#parts + 1] = sub(s, j, k - 1) end
    if byte(s, k) == 34 then return table.concat(parts), k + 1 end
    local e = sub(s, k + 1, k + 1)
    if unescape[e] then parts[#parts + 1] = unescape[e]; j = k + 2
    elseif e == "u" then
      local hex = sub(s, k + 2, k + 5)
      if not hex:match("^%x%x%x%x$") then decode_error(s, k, "bad \\u escape") end
      parts[#parts + 1] = utf8.char(tonumber(hex, 16)); j = k + 6
    else decode_error(s, k, "bad escape") end
    k = find(s, '["\\]', j)
  end
end

local LBRACE, RBRACE, LBRACKET, RBRACKET, QUOTE, COMMA, COLON = 123, 125, 91, 93, 34, 44, 58

function decode_value(s, i)
  i = skip(s, i)
  local c = byte(s, i)
  if c == LBRACE then
    local obj = {}
    i = skip(s, i + 1)
    if byte(s, i) == RBRACE then return obj, i + 1 end
    while true do
      if byte(s, i) ~= QUOTE then decode_error(s, i, "expected a key") end
      local k
      k, i = decode_string(s, i)
      i = skip(s, i)
      if byte(s, i) ~= COLON then decode_error(s, i, "expected ':'") end
      obj[k], i = decode_value(s, i + 1)
      i = skip(s, i)
      local d = byte(s, i)
      if d == RBRACE then return obj, i + 1 end
      if d ~= COMMA then decode_error(s, i, "expected ',' or '}'") end
      i = skip(s, i + 1)
    end
  elseif c == LBRACKET then
    local arr, n = {}, 0
    i = skip(s, i + 1)
    if byte(s, i) == RBRACKET then return arr, i + 1 end
    while true do
      n = n + 1
      arr[n], i = decode_value(s, i)
      i = skip(s, i)
      local d = byte(s, i)
      if d == RBRACKET then return arr, i + 1 end
      if d ~= COMMA then decode_error(s, i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == QUOTE then return decode_string(s, i)
  elseif sub(s, i, i + 3) == "true" then return true, i + 4
  elseif sub(s, i, i + 4) == "false" then return false, i + 5
  elseif sub(s, i, i + 3) == "null" then return nil, i + 4
  else
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num or num == "" then decode_error(s, i, "unexpected character") end
    if find(num, "[.eE]") then return tonumber(num) + 0.0, i + #num end
    return math.tointeger(tonumber(num)) or tonumber(num), i + #num
  end
end

--- The other way round of encode_object, quickly: a flat object of
-- numbers, strings without escapes, booleans and nulls; anything else goes
-- through decode.
function M.decode_object(s)
  if byte(s, 1) ~= LBRACE or byte(s, -1) ~= RBRACE or find(s, "\\", 1, true) then
    return M.decode(s)
  end
  local t, pos, last = {}, 2, #s - 1
  while pos <= last do
    local key, after = s:match('^"([^"]*)":()', pos)
    if not key then return M.decode(s) end
    local v
    if byte(s, after) == QUOTE then
      local close = find(s, '"', after + 1, true)
      if not close then return M.decode(s) end
      v, pos = sub(s, after + 1, close - 1), close + 1
    else
      local text = s:match("^[^,}]*", after)
      pos = after + #text
      if text == "true" then v = true
      elseif text == "false" then v = false
      elseif text ~= "null" then
        v = tonumber(text)
        if v == nil then return M.decode(s) end
        if find(text, "[.eEn]") then v = v + 0.0 else v = math.tointeger(v) or v end
      end
    end
    t[key] = v
    local c = byte(s, pos)
    if c == COMMA then pos = pos + 1 elseif pos <= last then return M.decode(s) end
  end
  return t
end

function M.decode(s)
  local v, i = decode_value(s, 1)
  i = skip(s, i)
  if i <= #s then decode_error(s, i, "trailing characters") end
  return v
end

return M
