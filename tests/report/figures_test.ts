import assert from "node:assert/strict";
import { barFigure, lineFigure, scatterFigure } from "../../lib/report/figures.ts";

Deno.test("scatterFigure() adds a y = x line over the joint range and writes NaN as a gap", () => {
  const { data, layout } = scatterFigure(
    [{ name: "s", x: Float32Array.of(1, 2, NaN), y: [0.5, 3.1234567891, 2] }],
    { identity: true, title: "T", xTitle: "x" },
  );
  assert.equal(data.length, 2);
  assert.deepEqual(data[0].x, [1, 2, null]);
  assert.deepEqual(data[0].y, [0.5, 3.12346, 2]);
  assert.deepEqual([data[1].x, data[1].y], [[0.5, 3.12346], [0.5, 3.12346]]);
  assert.deepEqual((layout as { title: unknown }).title, { text: "T" });
});

Deno.test("scatterFigure() with log axes keeps the identity line positive", () => {
  const { data } = scatterFigure([{ name: "s", x: [0, 1e-3], y: [1e-2, 10] }], {
    identity: true,
    xLog: true,
  });
  assert.deepEqual(data[1].x, [1e-3, 10]);
});

Deno.test("barFigure() groups series with error bars; lineFigure() sets log axes", () => {
  const bars = barFigure([{ name: "m", x: ["a", "b"], y: [1, 2], error: [0.1, 0.2] }]);
  assert.equal((bars.layout as { barmode: string }).barmode, "group");
  assert.deepEqual(bars.data[0].error_y, { type: "data", array: [0.1, 0.2], visible: true });
  const lines = lineFigure([{ name: "l", x: [1, 10], y: [1, 2] }], { xLog: true, yLog: true });
  assert.equal((lines.layout as { xaxis: { type: string } }).xaxis.type, "log");
  assert.equal(lines.data[0].mode, "lines+markers");
});

Deno.test("figure builders name the series whose lengths disagree", () => {
  assert.throws(
    () => lineFigure([{ name: "bad", x: [1, 2, 3], y: [1, 2] }]),
    { name: "RangeError", message: 'lineFigure: series "bad" has 3 x values but 2 y values' },
  );
});
