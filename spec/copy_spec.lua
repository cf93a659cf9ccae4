-- Copies of transposed matrices take a tiled path: check it element by
-- element, on shapes that are not multiples of the tile, in both dtypes.
local pbt = require("pbt")
local T = pbt.tensor

describe("pbt.Tensor :contiguous() of a transposed matrix", function()
  for _, dtype in ipairs({ "float32", "float64" }) do
    for _, shape in ipairs({ { 70, 130 }, { 1, 65 }, { 65, 1 }, { 129, 3 } }) do
      it(("copies a [%d,%d] %s transpose"):format(shape[1], shape[2], dtype), function()
        local m = T.arange(shape[1] * shape[2], { dtype = dtype }):view(shape[1], shape[2])
        local t = m.T:contiguous()
        assert.is_true(t:is_contiguous())
        assert.are.same({ shape[2], shape[1] }, t:shape())
        for i = 1, shape[2] do
          for j = 1, shape[1] do
            -- m[j][i] = (j - 1) * cols + (i - 1), by construction
            assert.are.equal((j - 1) * shape[2] + (i - 1), t:get(i, j))
          end
        end
      end)
    end
    it("copies into a narrowed destination row by row " .. dtype, function()
      local m = T.arange(12, { dtype = dtype }):view(3, 4)
      local big = T.zeros(6, 5, { dtype = dtype })
      big:narrow(1, 2, 4):narrow(2, 2, 3):copy_(m.T)
      for i = 1, 4 do
        for j = 1, 3 do assert.are.equal((j - 1) * 4 + (i - 1), big:get(i + 1, j + 1)) end
      end
      assert.are.equal(0, big:get(1, 1))
      assert.are.equal(0, big:get(6, 5))
    end)
  end
end)
