--- pbt.svg: small, dependency-free SVG charts of a run.
--
--   svg.lines{title=, xlabel=, ylabel=, series = {{name=, points={{x,y},...}, marks={{x,y},...}}}, log_y=}
--   svg.lineage{title=, nodes = {{id=, parent=, step=, member=, label=}}}
-- return SVG documents as strings (well-formed XML; text is escaped).
local M = {}

local W, H = 720, 420
local L, R, TOP, B = 70, 150, 40, 50
local palette = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" }

local function esc(s)
  return (tostring(s):gsub("[<>&\"']", { ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;",
    ['"'] = "&quot;", ["'"] = "&apos;" }))
end
M.escape = esc

local function fmt(v)
  if v == 0 then return "0" end
  local a = math.abs(v)
  if a >= 1e4 or a < 1e-3 then return ("%.2e"):format(v) end
  return ("%.4g"):format(v)
end

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

local function header(out, title)
  out[#out + 1] = ('<?xml version="1.0" encoding="UTF-8"?>\n' ..
    '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" ' ..
    'font-family="sans-serif" font-size="12">'):format(W, H, W, H)
  out[#out + 1] = ('<rect width="%d" height="%d" fill="white"/>'):format(W, H)
  out[#out + 1] = ('<text x="%d" y="22" font-size="15" text-anchor="middle">%s</text>')
    :format(W // 2, esc(title or ""))
end

--- A line chart with one line per series; `marks` are drawn as circles
-- (exploits on a score chart).
function M.lines(spec)
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  local log_y = spec.log_y
  local function ty(y) return log_y and math.log(y, 10) or y end
  for _, s in ipairs(spec.series) do
    for _, p in ipairs(s.points) do
      local y = p[2]
      if finite(p[1]) and finite(y) and (not log_y or y > 0) then
        xmin, xmax = math.min(xmin, p[1]), math.max(xmax, p[1])
        ymin, ymax = math.min(ymin, ty(y)), math.max(ymax, ty(y))
      end
    end
  end
  if xmin > xmax then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  if xmin == xmax then xmax = xmin + 1 end
  if ymin == ymax then ymin, ymax = ymin - 0.5, ymax + 0.5 end
  local pw, ph = W - L - R, H - TOP - B
  local function px(x) return L + (x - xmin) / (xmax - xmin) * pw end
  local function py(y) return TOP + ph - (ty(y) - ymin) / (ymax - ymin) * ph end
  local out = {}
  header(out, spec.title)
  out[#out + 1] = ('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>')
    :format(L, TOP, pw, ph)
  for k = 0, 4 do
    local x = xmin + (xmax - xmin) * k / 4
    local yv = ymin + (ymax - ymin) * k / 4
    out[#out + 1] = ('<text x="%.1f" y="%d" text-anchor="middle">%s</text>')
      :format(px(x), TOP + ph + 16, esc(fmt(x)))
    local label = log_y and fmt(10 ^ yv) or fmt(yv)
    out[#out + 1] = ('<text x="%d" y="%.1f" text-anchor="end">%s</text>')
      :format(L - 6, TOP + ph - (yv - ymin) / (ymax - ymin) * ph + 4, esc(label))
  end
  out[#out + 1] = ('<text x="%d" y="%d" text-anchor="middle">%s</text>')
    :format(L + pw // 2, H - 12, esc(spec.xlabel or ""))
  out[#out + 1] = ('<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>')
    :format(TOP + ph // 2, TOP + ph // 2, esc(spec.ylabel or ""))
  for si, s in ipairs(spec.series) do
    local color = palette[(si - 1) % #palette + 1]
    local pts = {}
    for _, p in ipairs(s.points) do
      if finite(p[1]) and finite(p[2]) and (not log_y or p[2] > 0) then
        pts[#pts + 1] = ("%.1f,%.1f"):format(px(p[1]), py(p[2]))
      end
    end
    if #pts > 0 then
      out[#out + 1] = ('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>')
        :format(color, table.concat(pts, " "))
    end
    for _, m in ipairs(s.marks or {}) do
      if finite(m[1]) and finite(m[2]) and (not log_y or m[2] > 0) then
        out[#out + 1] = ('<circle cx="%.1f" cy="%.1f" r="3.5" fill="none" stroke="%s"/>')
          :format(px(m[1]), py(m[2]), color)
      end
    end
    out[#out + 1] = ('<text x="%d" y="%d" fill="%s">%s</text>')
      :format(W - R + 10, TOP + 14 * si, color, esc(s.name))
  end
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

--- A lineage tree: one row per member slot, time (steps) across; each
-- exploit draws an edge from the donor's row to the recipient's row.
function M.lineage(spec)
  local out = {}
  header(out, spec.title)
  local nodes = spec.nodes
  local rows, smax = spec.members or 1, 1
  for _, n in ipairs(nodes) do smax = math.max(smax, n.step or 0) end
  local pw, ph = W - L - R, H - TOP - B
  local function px(s) return L + (s / smax) * pw end
  local function py(m) return TOP + (rows == 1 and ph / 2 or (m - 1) / (rows - 1) * ph) end
  for m = 1, rows do
    out[#out + 1] = ('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>')
      :format(L, py(m), L + pw, py(m))
    out[#out + 1] = ('<text x="%d" y="%.1f" text-anchor="end">member %d</text>')
      :format(L - 6, py(m) + 4, m)
  end
  for _, n in ipairs(nodes) do
    local color = palette[(n.member - 1) % #palette + 1]
    if n.donor then
      out[#out + 1] = ('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.2"/>')
        :format(px(n.step), py(n.donor), px(n.step), py(n.member), color)
    end
    out[#out + 1] = ('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s</title></circle>')
      :format(px(n.step), py(n.member), color, esc(n.label or ""))
  end
  out[#out + 1] = ('<text x="%d" y="%d" text-anchor="middle">step (an edge: the member on the ' ..
    'dot copied the member it starts from)</text>'):format(L + pw // 2, H - 12)
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

return M
