--- pbt.svg: small, dependency-free SVG charts of a run, drawn the way a
-- person reads them: round ticks (1, 2 or 5 times a power of ten; whole
-- steps on a step axis; decades on a log axis), one colour per member kept
-- across every picture, exploits drawn from donor to recipient.
--
--   svg.curves{title=, xlabel=, ylabel=, log_y=, categories=, members = n,
--              runs = {{member=, points = {{x, y}...}, from = {x, y, donor}}...}}
--       one polyline per run (a member's stretch between two exploits); a
--       run that began with an exploit starts with a dashed connector from
--       its donor's point `from` and a hollow circle in the donor's colour
--   svg.lines{title=, xlabel=, ylabel=, log_y=, series = {{name=, points=}}}
--       a plain line chart
--   svg.lineage{title=, members = n, steps = s,
--               bars = {{member=, root=, from=, to=}}, edges = {{member=, donor=, step=, root=}}}
--       a row per member slot across the steps, coloured by the member whose
--       initial weights its weights descend from; an exploit is a thin
--       line from the donor's row to the recipient's
-- return SVG documents as strings (well-formed XML; text is escaped).
local M = {}

local W, H = 760, 440
local L, R, TOP, B = 80, 120, 44, 52
-- 20 colours: Tableau's 10, then their lighter companions
local palette = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
  "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5" }

--- The colour of member m (the same in every picture and in index.html).
function M.color(m) return palette[(m - 1) % #palette + 1] end

local function esc(s)
  return (tostring(s):gsub("[<>&\"']", { ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;",
    ['"'] = "&quot;", ["'"] = "&apos;" }))
end
M.escape = esc

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

-- a "nice" number near x: 1, 2 or 5 times a power of ten (Heckbert)
local function nice(x, round)
  local e = math.floor(math.log(x, 10))
  local f = x / 10 ^ e
  local n
  if round then n = f < 1.5 and 1 or f < 3 and 2 or f < 7 and 5 or 10
  else n = f <= 1 and 1 or f <= 2 and 2 or f <= 5 and 5 or 10 end
  return n * 10 ^ e
end

--- Round ticks for [lo, hi]: returns the axis' ends (lo and hi widened to
-- ticks), the tick values and their labels.  integer: whole numbers only
-- (steps).  About n ticks.
function M.ticks(lo, hi, n, integer)
  n = n or 6
  if not finite(lo) or not finite(hi) then lo, hi = 0, 1 end
  if not (hi > lo) then
    local pad = lo == 0 and 1 or math.abs(lo) * 0.1
    lo, hi = lo - pad, hi + pad
  end
  -- a range too wide for doubles: its two ends only
  if not finite(hi - lo) then return lo, hi, { lo, hi }, { ("%g"):format(lo), ("%g"):format(hi) } end
  local step = nice(nice(hi - lo, false) / (n - 1), true)
  if not (step > 0) or not finite(step) then return lo, hi, { lo, hi }, { ("%g"):format(lo), ("%g"):format(hi) } end
  if integer then step = math.max(1, math.floor(step + 0.5)) end
  local first, last = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
  local decimals = math.max(0, -math.floor(math.log(step, 10) + 1e-9))
  local small = decimals > 4 -- then %g labels
  local values, labels = {}, {}
  local k = 0
  while k <= 4 * n do
    local v = first + k * step
    if v > last + step * 1e-9 then break end
    values[#values + 1] = v
    local a = math.abs(v)
    if math.abs(v) < step * 1e-9 then v, a = 0, 0 end
    if integer then labels[#labels + 1] = ("%d"):format(math.floor(v + 0.5))
    elseif small or (a ~= 0 and (a >= 1e5 or a < 1e-4)) then labels[#labels + 1] = ("%.3g"):format(v)
    else labels[#labels + 1] = ("%." .. decimals .. "f"):format(v) end
    if labels[#labels] == "-0" or labels[#labels]:match("^%-0%.0*$") then labels[#labels] = labels[#labels]:sub(2) end
    k = k + 1
  end
  return first, last, values, labels
end

--- Ticks of a log axis over [lo, hi] (both > 0): decades, with 2 and 5
-- between them when the range spans less than three.  Returns the ends,
-- the values and the labels.
function M.log_ticks(lo, hi)
  if not (hi > lo) then lo, hi = lo / 2, hi * 2 end
  local e0, e1 = math.floor(math.log(lo, 10) + 1e-9), math.ceil(math.log(hi, 10) - 1e-9)
  if e1 == e0 then e1 = e0 + 1 end
  local mults = (e1 - e0) < 3 and { 1, 2, 5 } or { 1 }
  local every = math.max(1, math.ceil((e1 - e0) / 8)) -- at most about 8 decades labelled
  local values, labels = {}, {}
  for e = e0, e1, every do
    for _, m in ipairs(mults) do
      local v = m * 10 ^ e
      if v >= 10 ^ e0 * (1 - 1e-9) and v <= 10 ^ e1 * (1 + 1e-9) then
        values[#values + 1] = v
        labels[#labels + 1] = (e >= -3 and e <= 4) and ("%g"):format(v) or ("%ge%d"):format(m, e)
      end
    end
  end
  return 10 ^ e0, 10 ^ e1, values, labels
end

local function header(out, title)
  out[#out + 1] = ('<?xml version="1.0" encoding="UTF-8"?>\n' ..
    '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" ' ..
    'font-family="sans-serif" font-size="12">'):format(W, H, W, H)
  out[#out + 1] = ('<rect width="%d" height="%d" fill="white"/>'):format(W, H)
  out[#out + 1] = ('<text x="%d" y="24" font-size="15" text-anchor="middle">%s</text>')
    :format(L + (W - L - R) // 2, esc(title or ""))
end

-- the legend: a swatch and a name per member (names[m], or "member m")
local function legend(out, members, title, names)
  local y = TOP + 4
  if title then
    out[#out + 1] = ('<text x="%d" y="%d" fill="#555">%s</text>'):format(W - R + 12, y + 8, esc(title))
    y = y + 16
  end
  local step = math.min(16, (H - B - y) / math.max(members, 1))
  for m = 1, members do
    if step < 9 and m > 1 and m < members then goto continue end -- (too many to list: ends only)
    out[#out + 1] = ('<rect x="%d" y="%.1f" width="12" height="8" fill="%s"/>'):format(W - R + 12,
      y + (m - 1) * step, M.color(m))
    out[#out + 1] = ('<text x="%d" y="%.1f">%s</text>'):format(W - R + 28, y + (m - 1) * step + 8,
      esc(names and names[m] or ("member " .. m)))
    ::continue::
  end
end

-- axes: the frame, the ticks and grid lines, the labels; returns px, py
local function axes(out, spec, x0, x1, xt, xl, y0, y1, yt, yl, log_y)
  local pw, ph = W - L - R, H - TOP - B
  local function px(x) return L + (x - x0) / (x1 - x0) * pw end
  local ly = log_y and function(y) return math.log(y, 10) end or function(y) return y end
  local function py(y) return TOP + ph - (ly(y) - ly(y0)) / (ly(y1) - ly(y0)) * ph end
  for k, v in ipairs(yt) do
    local y = py(v)
    out[#out + 1] = ('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>'):format(L, y, L + pw, y)
    out[#out + 1] = ('<text x="%d" y="%.1f" text-anchor="end" fill="#333">%s</text>'):format(L - 6, y + 4, esc(yl[k]))
  end
  for k, v in ipairs(xt) do
    local x = px(v)
    out[#out + 1] = ('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>'):format(x, TOP, x, TOP + ph)
    out[#out + 1] = ('<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>')
      :format(x, TOP + ph + 16, esc(xl[k]))
  end
  out[#out + 1] = ('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>'):format(L, TOP, pw, ph)
  out[#out + 1] = ('<text x="%d" y="%d" text-anchor="middle">%s</text>')
    :format(L + pw // 2, H - 14, esc(spec.xlabel or ""))
  -- the y label left of the widest tick label, never on one
  out[#out + 1] = ('<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>')
    :format(TOP + ph // 2, TOP + ph // 2, esc(spec.ylabel or ""))
  return px, py
end

--- Curves of the members' runs (see the top of this file).
function M.curves(spec)
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  local log_y, cats = spec.log_y, spec.categories
  local function take(x, y)
    if finite(x) and finite(y) and (not log_y or y > 0) then
      xmin, xmax = math.min(xmin, x), math.max(xmax, x)
      ymin, ymax = math.min(ymin, y), math.max(ymax, y)
    end
  end
  for _, run in ipairs(spec.runs) do
    for _, p in ipairs(run.points) do take(p[1], p[2]) end
    if run.from then take(run.from[1], run.from[2]) end
  end
  if xmin > xmax then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  local x0, x1, xt, xl = M.ticks(math.min(xmin, 0), xmax, 7, true)
  local y0, y1, yt, yl
  if cats then
    y0, y1 = 0.5, #cats + 0.5
    yt, yl = {}, {}
    for k, c in ipairs(cats) do yt[k], yl[k] = k, tostring(c) end
  elseif log_y then y0, y1, yt, yl = M.log_ticks(ymin, ymax)
  else y0, y1, yt, yl = M.ticks(ymin, ymax, 6) end
  local out = {}
  header(out, spec.title)
  local px, py = axes(out, spec, x0, x1, xt, xl, y0, y1, yt, yl, log_y)
  -- categories: each member a little apart, so equal values do not hide each other
  local members = spec.members or 1
  local function offset(m)
    if not cats or members < 2 then return 0 end
    return ((m - 1) / (members - 1) - 0.5) * 0.5
  end
  for _, run in ipairs(spec.runs) do
    local color, off = M.color(run.member), offset(run.member)
    local pts = {}
    for _, p in ipairs(run.points) do
      if finite(p[1]) and finite(p[2]) and (not log_y or p[2] > 0) then
        pts[#pts + 1] = ("%.1f,%.1f"):format(px(p[1]), py(p[2] + off))
      end
    end
    local f = run.from
    if f and finite(f[1]) and finite(f[2]) and (not log_y or f[2] > 0) and #pts > 0 then
      -- copied from the donor at its point: a dashed line from there
      out[#out + 1] = ('<polyline fill="none" stroke="%s" stroke-width="1.2" stroke-dasharray="3,3" ' ..
        'points="%.1f,%.1f %s"/>'):format(color, px(f[1]), py(f[2] + off), pts[1])
      out[#out + 1] = ('<circle cx="%.1f" cy="%.1f" r="3.5" fill="white" stroke="%s" stroke-width="1.5">' ..
        '<title>member %d copied member %d at step %s</title></circle>'):format(px(f[1]), py(f[2] + off),
        M.color(f[3]), run.member, f[3], tostring(f[1]))
    end
    if #pts > 1 then
      out[#out + 1] = ('<polyline fill="none" stroke="%s" stroke-width="1.6" stroke-opacity="0.9" ' ..
        'points="%s"/>'):format(color, table.concat(pts, " "))
    elseif #pts == 1 then
      local x, y = pts[1]:match("([^,]+),(.+)")
      out[#out + 1] = ('<circle cx="%s" cy="%s" r="2" fill="%s"/>'):format(x, y, color)
    end
  end
  legend(out, members, spec.legend, spec.names)
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

--- A plain line chart: svg.lines{title=, xlabel=, ylabel=, log_y=,
-- series = {{name=, points = {{x, y}...}}}}, a line and a colour per series.
function M.lines(spec)
  local runs, names = {}, {}
  for k, s in ipairs(spec.series) do
    runs[k] = { member = k, points = s.points }
    names[k] = s.name
  end
  return M.curves{ title = spec.title, xlabel = spec.xlabel, ylabel = spec.ylabel, log_y = spec.log_y,
    runs = runs, members = #runs, names = names }
end

--- The lineage (see the top of this file).
function M.lineage(spec)
  local out = {}
  header(out, spec.title)
  local rows = spec.members or 1
  local x0, x1, xt, xl = M.ticks(0, math.max(spec.steps or 1, 1), 7, true)
  local pw, ph = W - L - R, H - TOP - B
  local function px(s) return L + (s - x0) / (x1 - x0) * pw end
  local band = ph / rows
  local function py(m) return TOP + (m - 0.5) * band end
  for k, v in ipairs(xt) do
    out[#out + 1] = ('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>'):format(px(v), TOP, px(v), TOP + ph)
    out[#out + 1] = ('<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>')
      :format(px(v), TOP + ph + 16, esc(xl[k]))
  end
  -- member labels: every row when they fit, else every k-th
  local every = math.max(1, math.ceil(12 / band))
  for m = 1, rows do
    if (m - 1) % every == 0 or m == rows then
      out[#out + 1] = ('<text x="%d" y="%.1f" text-anchor="end" fill="#333">member %d</text>'):format(L - 6, py(m) + 4, m)
    end
  end
  local thick = math.max(1, math.min(10, band * 0.6))
  for _, b in ipairs(spec.bars) do
    out[#out + 1] = ('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f">' ..
      '<title>member %d, steps %d-%d: weights descending from member %d</title></line>')
      :format(px(b.from), py(b.member), px(math.max(b.to, b.from + 0.2)), py(b.member), M.color(b.root), thick,
        b.member, b.from, b.to, b.root)
  end
  -- exploits: from the donor's row to the recipient's, translucent when many
  local opacity = #spec.edges > 100 and 0.35 or 0.8
  for _, e in ipairs(spec.edges) do
    local x, y0, y1 = px(e.step), py(e.donor), py(e.member)
    out[#out + 1] = ('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1" ' ..
      'stroke-opacity="%.2f"><title>step %d: member %d copied member %d</title></line>')
      :format(x, y0, x, y1, M.color(e.root), opacity, e.step, e.member, e.donor)
    local dir = y1 > y0 and -1 or 1
    out[#out + 1] = ('<path d="M%.1f,%.1f l-3,%.1f l6,0 z" fill="%s" fill-opacity="%.2f"/>')
      :format(x, y1 + dir * thick / 2, dir * 5, M.color(e.root), opacity)
  end
  out[#out + 1] = ('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>'):format(L, TOP, pw, ph)
  out[#out + 1] = ('<text x="%d" y="%d" text-anchor="middle">step (a row\'s colour: the member whose ' ..
    'initial weights its weights descend from; a line: an exploit)</text>'):format(L + pw // 2, H - 14)
  legend(out, rows, "first weights of")
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

return M
