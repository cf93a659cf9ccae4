--- pbt.data: data sets from files, minibatches and validation splits.
--
--   data.idx(path [, opts])          -> tensor | nil, message
--   data.csv(path [, opts])          -> tensor [, names] | nil, message
--   data.fashion_mnist([dir] [, opts]) -> train, test
--   data.batches(x, y, opts)         -> iterator for `for xb, yb, i in ...`
--   data.split(x, y, {fraction =, generator =}) -> x_train, y_train, x_val, y_val
--   data.randperm(n [, {generator =}])   -> float64 tensor, a permutation of 1..n
--
-- Reading and converting the files is C (csrc/pbt_data.c): IDX and CSV,
-- gzipped or not (the gzip magic 1f 8b is detected).  As io.open does, idx
-- and csv return nil, message when the file cannot be opened or read
-- ("cannot open /d/x.gz: No such file or directory"); a malformed file
-- raises an error naming the file and the byte or line:
--   "idx: /d/x.idx: bad magic 0x00000123 at byte 0"
--   "csv: /d/x.csv: line 3 has 2 fields, expected 3"
local core = require("pbt.core")
local C = core.data

local options = require("pbt.options")
local M = {}

local function is_a(v, name)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == name
end

local function argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), (level or 2) + 1)
end

-- (the level arguments make errors point at the caller of the public function)
local function check_tensor(v, n, fname, optional)
  if v == nil and optional then return end
  if not is_a(v, "pbt.Tensor") then
    argerror(n, fname, "pbt.Tensor expected, got " .. (is_a(v, "pbt.Generator")
      and "pbt.Generator" or type(v)), 4)
  end
  if v:dim() < 1 then argerror(n, fname, "tensor of at least 1 dimension expected, got a 0-d tensor", 4) end
end

local function check_generator(g, n, fname, field)
  if g == nil then return core.default_generator() end
  if not is_a(g, "pbt.Generator") then
    argerror(n, fname, field and ("field 'generator' is not a pbt.Generator")
      or ("pbt.Generator expected, got " .. type(g)), 3)
  end
  return g
end

-- x and y (or nil) must agree in dimension 1.
local function check_pair(x, y, fname)
  check_tensor(x, 1, fname)
  check_tensor(y, 2, fname, true)
  if y and y:size(1) ~= x:size(1) then
    error(("%s: x and y differ in size in dimension 1 (%d and %d)")
      :format(fname, x:size(1), y:size(1)), 3)
  end
end

--- data.idx(path [, opts]) reads an IDX file (the MNIST format), gzipped or
-- not, into a new tensor of the file's shape holding the raw values.
-- opts: dtype ("float32" or "float64"), scale (1), shift (0): each element
-- becomes value * scale + shift, computed in C while converting; limit: the
-- most bytes the file may give once decompressed (a gzip bomb stops there).
M.idx = C.idx -- checks its options and names itself in C

--- data.csv(path [, opts]) reads a numeric CSV file (gzipped or not) into a
-- [rows, cols] tensor.  opts: dtype ("float32"), header (false: with true the
-- first line holds column names, returned as a second value, a table of
-- strings), delimiter (","), columns (a list of column numbers, 1-based, or
-- of names from the header: only those are kept, in that order, and their
-- names returned), limit (the most bytes the file may give once
-- decompressed).  Fields are numbers as strtod reads them, spaces around
-- them allowed; blank lines at the end are ignored.  In C, as data.idx.
M.csv = C.csv

-- the generator of an options table (the one convention: {generator = g});
-- a generator given in place of the table is named as the old form
local function opt_generator(opts, n, fname, known, example)
  if is_a(opts, "pbt.Generator") then
    error(("%s: the generator goes in an options table: %s"):format(fname, example), 3)
  end
  options.check(fname, opts, known, 4)
  local g = opts and opts.generator
  if g == nil then return core.default_generator() end
  if not is_a(g, "pbt.Generator") then argerror(n, fname, "field 'generator' is not a pbt.Generator", 3) end
  return g
end

--- data.randperm(n [, {generator = g}]) -> a float64 tensor holding a
-- random permutation of 1..n, drawn in C with the Fisher-Yates shuffle
--   for i = n, 2, -1 do local j = g:integer(1, i); p[i], p[j] = p[j], p[i] end
-- from the identity (the same draws as this loop).
function M.randperm(n, opts)
  return C.randperm(n, opt_generator(opts, 2, "randperm", { "generator" }, "data.randperm(n, {generator = g})"))
end

-- ---- Fashion-MNIST ---------------------------------------------------------

M.FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
local FASHION_PACKAGE = "dataset-fashion-mnist"

--- data.fashion_mnist([dir] [, opts]) -> train, test, each a table
-- { x = images, y = labels }: x is [N, 784] (or [N, 1, 28, 28] with
-- opts.flatten = false) scaled to [0, 1], y is [N] with the labels 1..10
-- (the file's 0..9 plus one, the class numbers that cross_entropy takes).
-- N is 60000 for train, 10000 for test.  opts.dtype: "float32" (default) or
-- "float64".  dir defaults to data.FASHION_MNIST_DIR, where Debian's package
-- dataset-fashion-mnist installs the files; a missing file raises an error
-- that names it and the package.
function M.fashion_mnist(dir, opts)
  if type(dir) == "table" and opts == nil then dir, opts = nil, dir end
  if dir ~= nil and type(dir) ~= "string" then
    argerror(1, "fashion_mnist", "string expected, got " .. type(dir))
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(2, "fashion_mnist", "table expected, got " .. type(opts))
  end
  options.check("fashion_mnist", opts, { "dtype", "flatten" }, 3)
  dir = dir or M.FASHION_MNIST_DIR
  opts = opts or {}
  local dtype = opts.dtype or "float32"
  local flatten = opts.flatten ~= false

  local function load(name, ndim, scale, shift)
    local path = dir .. "/" .. name
    local t, msg = C.idx(path, { dtype = dtype, scale = scale, shift = shift })
    if not t then
      local f, _, code = io.open(path, "rb")
      if f then f:close() end
      if code == 2 then -- ENOENT
        msg = ("%s not found (install the Debian package %s: apt-get install %s)")
          :format(path, FASHION_PACKAGE, FASHION_PACKAGE)
      end
      error("fashion_mnist: " .. msg, 4)
    end
    if t:dim() ~= ndim or (ndim == 3 and (t:size(2) ~= 28 or t:size(3) ~= 28)) then
      error(("fashion_mnist: %s: expected %s, got shape [%s]"):format(path,
        ndim == 3 and "images of shape [N,28,28]" or "labels of shape [N]",
        table.concat(t:shape(), ",")), 4)
    end
    return t, path
  end

  local function set(prefix)
    local x = load(prefix .. "-images-idx3-ubyte.gz", 3, 1 / 255, 0)
    local y, ypath = load(prefix .. "-labels-idx1-ubyte.gz", 1, 1, 1)
    local n = x:size(1)
    if y:size(1) ~= n then
      error(("fashion_mnist: %s: %d labels for %d images"):format(ypath, y:size(1), n), 3)
    end
    if n > 0 and (y:min():item() < 1 or y:max():item() > 10) then
      error(("fashion_mnist: %s: labels outside 0..9"):format(ypath), 3)
    end
    x = flatten and x:view(n, 28 * 28) or x:view(n, 1, 28, 28)
    return { x = x, y = y }
  end

  local train = set("train")
  local test = set("t10k")
  return train, test
end

-- ---- minibatches -------------------------------------------------------------

--- data.batches(x, y, opts) -> an iterator for
--   for xb, yb, i in data.batches(x, y, {batch_size = 64, shuffle = true}) do ... end
-- Minibatches of batch_size rows along dimension 1 (the last one smaller
-- unless drop_last); y may be nil (yb is then nil).  opts:
--   batch_size  (required) a positive integer
--   shuffle     (false) with true, the order is a random permutation drawn
--               once, when batches is called, from opts.generator (default:
--               pbt.default_generator()); the batches are then gathered with
--               index_select (copies).  Without shuffle the batches are
--               views of x and y (narrow: no copy, they share x's storage).
--   generator   a pbt.Generator
--   drop_last   (false) with true, a last batch smaller than batch_size is
--               left out
-- Call batches once per epoch for a new order.
function M.batches(x, y, opts)
  check_pair(x, y, "batches")
  if type(opts) ~= "table" then
    argerror(3, "batches", "options table expected, got " .. type(opts))
  end
  options.check("batches", opts, { "batch_size", "shuffle", "drop_last", "generator" }, 3)
  local bs = math.tointeger(opts.batch_size)
  if not bs or bs < 1 then
    argerror(3, "batches", "field 'batch_size' must be a positive integer")
  end
  if opts.shuffle ~= nil and type(opts.shuffle) ~= "boolean" then
    argerror(3, "batches", "field 'shuffle' must be a boolean")
  end
  if opts.drop_last ~= nil and type(opts.drop_last) ~= "boolean" then
    argerror(3, "batches", "field 'drop_last' must be a boolean")
  end
  local n = x:size(1)
  local count = opts.drop_last and n // bs or (n + bs - 1) // bs
  local perm
  if opts.shuffle then
    perm = C.randperm(n, check_generator(opts.generator, 3, "batches", true))
  elseif opts.generator ~= nil then
    check_generator(opts.generator, 3, "batches", true)
  end
  local i = 0
  return function()
    if i >= count then return nil end
    i = i + 1
    local start = (i - 1) * bs + 1
    local len = math.min(bs, n - start + 1)
    if perm then
      local idx = perm:narrow(1, start, len)
      return x:index_select(1, idx), y and y:index_select(1, idx), i
    end
    return x:narrow(1, start, len), y and y:narrow(1, start, len), i
  end
end

--- data.split(x, y, {fraction = f, generator = g}) -> x_train, y_train,
-- x_val, y_val.  A random split along dimension 1: round(n * fraction) rows
-- (fraction in [0, 1], required) go to the validation set, the others to
-- the training set, both in the order of a permutation drawn from generator
-- (default: pbt.default_generator()), so a given generator state gives the
-- same split.  y may be nil (y_train and y_val are then nil).  The results
-- are copies.
function M.split(x, y, opts, extra)
  check_pair(x, y, "split")
  if type(opts) == "number" or extra ~= nil then
    error("split: the fraction and the generator go in an options table: " ..
      "data.split(x, y, {fraction = 0.1, generator = g})", 2)
  end
  if type(opts) ~= "table" then
    argerror(3, "split", "options table {fraction =, generator =} expected, got " .. type(opts))
  end
  local g = opt_generator(opts, 3, "split", { "fraction", "generator" },
    "data.split(x, y, {fraction = 0.1, generator = g})")
  local fraction = opts.fraction
  if type(fraction) ~= "number" or not (fraction >= 0 and fraction <= 1) then
    argerror(3, "split", "field 'fraction' must be a number in [0, 1], got " .. tostring(fraction))
  end
  local n = x:size(1)
  local nval = math.floor(n * fraction + 0.5)
  local perm = C.randperm(n, g)
  local vidx = perm:narrow(1, 1, nval)
  local tidx = perm:narrow(1, nval + 1, n - nval)
  return x:index_select(1, tidx), y and y:index_select(1, tidx),
         x:index_select(1, vidx), y and y:index_select(1, vidx)
end

return M
